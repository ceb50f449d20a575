//! The verdict on one observation: the bot object of SPEC §6 and the
//! device and client fields. Plain values, serialised with the field names
//! and values the spec fixes.

use std::sync::Arc;

use serde::Serialize;

/// Gives a field-less enum its spec word: `as_str` and `FromStr` (used by
/// the data files and by storage), from one list.
macro_rules! words {
    ($name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $name {
            /// The word SPEC §6 uses (as serialised and stored).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok(Self::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}"),
                        other
                    )),
                }
            }
        }
    };
}

/// What kind of hit it was (SPEC §6 `bot.classification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// A human; counts.
    Genuine,
    /// A mailbox image proxy (Gmail, Yahoo) fetching for a human; counts.
    ImageProxy,
    /// A privacy proxy or prefetch (Apple Mail Privacy Protection); does not count.
    PrivacyProxy,
    /// Corporate, mailbox or security scanning; does not count.
    SecurityScanner,
    /// Chat or social link preview; does not count.
    LinkPreviewBot,
    /// Crawler, script, headless or synthetic client; does not count.
    GenericBot,
    /// Not confidently human; does not count.
    Suspicious,
    /// A browser-like click that needs more context; counts.
    UnverifiedClick,
}

words!(Classification {
    Genuine => "genuine",
    ImageProxy => "image_proxy",
    PrivacyProxy => "privacy_proxy",
    SecurityScanner => "security_scanner",
    LinkPreviewBot => "link_preview_bot",
    GenericBot => "generic_bot",
    Suspicious => "suspicious",
    UnverifiedClick => "unverified_click",
});

impl Classification {
    /// Counts for default opens, clicks, statuses and reports (SPEC §6).
    pub fn counts_for_metrics(self) -> bool {
        matches!(
            self,
            Self::Genuine | Self::ImageProxy | Self::UnverifiedClick
        )
    }

    /// `bot.detected`: automated, privacy, preview, scanner or suspicious.
    /// A mailbox image proxy fetches for a human and an unverified click is
    /// browser-like, so neither is "detected" (docs/classify.md).
    pub fn detected(self) -> bool {
        !self.counts_for_metrics()
    }
}

/// Which proxy a hit came through (SPEC §6 `bot.proxy_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyType {
    Gmail,
    Yahoo,
    AppleMpp,
    ApplePrivateRelay,
}

words!(ProxyType {
    Gmail => "gmail",
    Yahoo => "yahoo",
    AppleMpp => "apple_mpp",
    ApplePrivateRelay => "apple_private_relay",
});

/// `device_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    Desktop,
    Mobile,
    Tablet,
}

words!(DeviceType {
    Desktop => "desktop",
    Mobile => "mobile",
    Tablet => "tablet",
});

/// `client_type`: what sort of software made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Browser,
    EmailClient,
    /// A mailbox or privacy proxy fetching for someone.
    Proxy,
    /// A crawler, preview bot, scanner or tool.
    Bot,
}

words!(ClientType {
    Browser => "browser",
    EmailClient => "email_client",
    Proxy => "proxy",
    Bot => "bot",
});

/// Why a verdict was reached: diagnostic, not a stable enum (SPEC §6). Kept
/// as bits of a `u64` so a verdict costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    HeadRequest,
    PrefetchHeader,
    EmptyUserAgent,
    BotUserAgent,
    CrawlerNetwork,
    HostingNetwork,
    VpnNetwork,
    SecurityNetwork,
    PreviewNetwork,
    AppleNetwork,
    ProxyUserAgent,
    ProxyNetworkVerified,
    ProxyNetworkUnverified,
    ProxyWrongNetwork,
    ProxyFetchedLink,
    PreviewUserAgent,
    ScannerUserAgent,
    PrivacyProxyUserAgent,
    EmailClient,
    Browser,
    UnknownClient,
    LinkBurst,
    ClickSecondsAfterSend,
    EarlyClick,
    ManyRecipientsFromIp,
    MissingBrowserHeaders,
    NoEarlierOpen,
    EarlierOpen,
    NoAddress,
    BareUserAgent,
    MailProviderNetwork,
    ProxyBrowser,
}

impl Reason {
    const ALL: [Reason; 32] = [
        Self::HeadRequest,
        Self::PrefetchHeader,
        Self::EmptyUserAgent,
        Self::BotUserAgent,
        Self::CrawlerNetwork,
        Self::HostingNetwork,
        Self::VpnNetwork,
        Self::SecurityNetwork,
        Self::PreviewNetwork,
        Self::AppleNetwork,
        Self::ProxyUserAgent,
        Self::ProxyNetworkVerified,
        Self::ProxyNetworkUnverified,
        Self::ProxyWrongNetwork,
        Self::ProxyFetchedLink,
        Self::PreviewUserAgent,
        Self::ScannerUserAgent,
        Self::PrivacyProxyUserAgent,
        Self::EmailClient,
        Self::Browser,
        Self::UnknownClient,
        Self::LinkBurst,
        Self::ClickSecondsAfterSend,
        Self::EarlyClick,
        Self::ManyRecipientsFromIp,
        Self::MissingBrowserHeaders,
        Self::NoEarlierOpen,
        Self::EarlierOpen,
        Self::NoAddress,
        Self::BareUserAgent,
        Self::MailProviderNetwork,
        Self::ProxyBrowser,
    ];

    /// The string written in `bot.reason_codes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadRequest => "head_request",
            Self::PrefetchHeader => "prefetch_header",
            Self::EmptyUserAgent => "empty_user_agent",
            Self::BotUserAgent => "bot_user_agent",
            Self::CrawlerNetwork => "crawler_network",
            Self::HostingNetwork => "hosting_network",
            Self::VpnNetwork => "vpn_network",
            Self::SecurityNetwork => "security_scanner_network",
            Self::PreviewNetwork => "link_preview_network",
            Self::AppleNetwork => "apple_relay_network",
            Self::ProxyUserAgent => "proxy_user_agent",
            Self::ProxyNetworkVerified => "proxy_network_verified",
            Self::ProxyNetworkUnverified => "proxy_network_unverified",
            Self::ProxyWrongNetwork => "proxy_user_agent_from_other_network",
            Self::ProxyFetchedLink => "proxy_fetched_link",
            Self::PreviewUserAgent => "link_preview_user_agent",
            Self::ScannerUserAgent => "scanner_user_agent",
            Self::PrivacyProxyUserAgent => "privacy_proxy_user_agent",
            Self::EmailClient => "email_client",
            Self::Browser => "browser",
            Self::UnknownClient => "unknown_client",
            Self::LinkBurst => "link_burst",
            Self::ClickSecondsAfterSend => "click_seconds_after_send",
            Self::EarlyClick => "early_click",
            Self::ManyRecipientsFromIp => "many_recipients_from_ip",
            Self::MissingBrowserHeaders => "missing_browser_headers",
            Self::NoEarlierOpen => "no_earlier_open",
            Self::EarlierOpen => "earlier_open",
            Self::NoAddress => "no_address",
            Self::BareUserAgent => "bare_user_agent",
            Self::MailProviderNetwork => "mail_provider_network",
            Self::ProxyBrowser => "proxy_browser",
        }
    }
}

/// A set of [`Reason`]s, in the order they are listed above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons(u64);

impl Reasons {
    pub fn add(&mut self, r: Reason) {
        self.0 |= 1 << r as u8;
    }

    pub fn contains(self, r: Reason) -> bool {
        self.0 & (1 << r as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reasons, as strings.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        Reason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
            .map(Reason::as_str)
    }
}

impl Serialize for Reasons {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// The bot object of SPEC §6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bot {
    pub detected: bool,
    /// 0–100, higher = more likely non-human.
    pub probability: u8,
    pub classification: Classification,
    pub proxy_type: Option<ProxyType>,
    pub reason_codes: Reasons,
    /// Excluded from default human metrics and webhooks.
    pub machine: bool,
    pub counts_for_metrics: bool,
}

/// Everything the classifier says about one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub bot: Bot,
    pub device_type: Option<DeviceType>,
    pub client_type: Option<ClientType>,
    /// Chrome, Safari, Outlook, Apple Mail, Gmail, …
    pub client_name: Option<Arc<str>>,
}

impl Verdict {
    /// A verdict of this class; the flags follow from the class.
    pub(super) fn new(
        classification: Classification,
        probability: u8,
        proxy_type: Option<ProxyType>,
        reasons: Reasons,
    ) -> Verdict {
        let counts = classification.counts_for_metrics();
        Verdict {
            bot: Bot {
                detected: classification.detected(),
                probability: probability.min(100),
                classification,
                proxy_type,
                reason_codes: reasons,
                machine: !counts,
                counts_for_metrics: counts,
            },
            device_type: None,
            client_type: None,
            client_name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_client_words_are_the_serialised_ones() {
        for d in [DeviceType::Desktop, DeviceType::Mobile, DeviceType::Tablet] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for c in [
            ClientType::Browser,
            ClientType::EmailClient,
            ClientType::Proxy,
            ClientType::Bot,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn flags_follow_the_class() {
        let v = Verdict::new(Classification::PrivacyProxy, 90, None, Reasons::default());
        assert!(v.bot.detected && v.bot.machine && !v.bot.counts_for_metrics);
        let v = Verdict::new(Classification::ImageProxy, 20, None, Reasons::default());
        assert!(!v.bot.detected && !v.bot.machine && v.bot.counts_for_metrics);
    }

    #[test]
    fn reasons_serialise_as_strings_in_order() {
        let mut r = Reasons::default();
        r.add(Reason::LinkBurst);
        r.add(Reason::HeadRequest);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"["head_request","link_burst"]"#
        );
        assert!(r.contains(Reason::LinkBurst) && !r.contains(Reason::Browser));
    }

    #[test]
    fn every_reason_is_listed_once() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.as_str());
        }
    }
}
