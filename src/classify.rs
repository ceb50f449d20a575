//! The classifier (SPEC §6): one observation and its context in, one
//! [`Verdict`] out: human or machine, which class, how likely, why, and the
//! device and client.
//!
//! [`classify`] is a pure function: no I/O, no clock, no allocation beyond
//! the verdict's reference-counted client name. What it knows of the world
//! is in [`Lists`] (user-agent patterns and families, address ranges and
//! the thresholds of the behaviour rules), loaded once from the files the
//! config names and swapped whole on reload. What it knows of the message
//! is in [`Context`] (its other hits, the time since it was relayed, how
//! many recipients the address has hit), which the server fills from the
//! database after waiting `classifier.wait_seconds` so bursts are visible.
//!
//! - [`ua`]: bot patterns, user-agent families, device type.
//! - [`networks`]: address ranges and their lookup.
//! - [`behaviour`]: HEAD, prefetch, browser headers, bursts, timing.
//! - [`lists`]: loading the data files; [`Rules`], the thresholds.
//! - `settings`: [`Settings`], what `[classifier]` configures (read by
//!   `config`).
//! - [`input`]: the JSON lines `trackrelay classify` reads.
//! - [`verdict`]: the bot object and the client fields.
//!
//! The signals are combined in a fixed order (docs/classify.md): how the
//! request was made, who the agent says it is, where it comes from, whether
//! it looks like a bot, and how it behaves; the first decisive signal
//! settles the class, weaker ones add reasons.

pub mod behaviour;
pub mod input;
pub mod lists;
pub mod networks;
mod settings;
pub mod snapshot;
pub mod ua;
pub mod verdict;

use std::net::IpAddr;

pub use lists::{ListAge, ListError, Lists, Loaded, Rules};
pub use settings::{RangeSource, Settings};
pub use verdict::{
    Bot, Classification, ClientType, DeviceType, ProxyType, Reason, Reasons, Verdict,
};

use crate::token::Kind;
use Classification as C;
use networks::NetworkClass;
use ua::{Family, FamilyKind};

/// One hit as the classifier sees it (borrowed from the stored observation
/// by `events`).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub kind: Kind,
    /// When it arrived, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `GET` or `HEAD`.
    pub method: &'a str,
    /// The client's address; `None` when unknown or unparsable.
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    /// Request headers as recorded, in order; empty when not recorded.
    pub headers: &'a [(String, String)],
    /// Link index (clicks).
    pub link: Option<u16>,
}

/// Another hit on the same relayed copy (before or after this one: the
/// classifier waits a little so that later hits of a burst are seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub at_ms: i64,
    pub kind: Kind,
    pub ip: Option<IpAddr>,
    pub link: Option<u16>,
}

/// What is known around one observation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The copy's other hits, excluding this one.
    pub hits: &'a [Hit],
    /// Seconds from relaying the copy to this hit, when known.
    pub seconds_after_send: Option<f64>,
    /// Distinct recipients this address has hit recently (1 = only this one).
    pub recipients_from_ip: u32,
}

/// Classifies one observation.
pub fn classify(obs: &Observation<'_>, ctx: &Context<'_>, lists: &Lists) -> Verdict {
    let ua = obs.user_agent.unwrap_or("").trim();
    let family = if ua.is_empty() {
        None
    } else {
        lists.families.find(ua)
    };
    let s = Signals {
        obs,
        ctx,
        lists,
        ua,
        family: family.map(|(_, f)| f),
        family_network: family.and_then(|(i, _)| lists.family_networks[i]),
        net: obs
            .ip
            .map(|ip| lists.networks.lookup(ip))
            .unwrap_or_default(),
    };
    let mut reasons = Reasons::default();
    if obs.ip.is_none() {
        reasons.add(Reason::NoAddress);
    }
    let mut v = s
        .by_request(&mut reasons)
        .or_else(|| s.by_family(&mut reasons))
        .or_else(|| s.by_network(&mut reasons))
        .or_else(|| s.by_agent(&mut reasons))
        .or_else(|| s.by_behaviour(&mut reasons))
        .unwrap_or_else(|| s.human(&mut reasons));
    s.fill_client(&mut v);
    v
}

/// Everything looked up once for one observation.
struct Signals<'a> {
    obs: &'a Observation<'a>,
    ctx: &'a Context<'a>,
    lists: &'a Lists,
    ua: &'a str,
    family: Option<&'a Family>,
    /// Index of the network the family must come from, if loaded.
    family_network: Option<usize>,
    net: networks::Hits,
}

impl Signals<'_> {
    fn in_class(&self, class: NetworkClass) -> bool {
        self.lists.in_class(self.net, class)
    }

    fn class_of_family(&self) -> Option<Classification> {
        match self.family?.kind {
            FamilyKind::Class(c) => Some(c),
            _ => None,
        }
    }

    fn is_client(&self, kind: FamilyKind) -> bool {
        self.family.is_some_and(|f| f.kind == kind)
    }

    /// HEAD and prefetch requests.
    fn by_request(&self, r: &mut Reasons) -> Option<Verdict> {
        if behaviour::is_head(self.obs) {
            r.add(Reason::HeadRequest);
            let c = if self.class_of_family() == Some(C::LinkPreviewBot) {
                C::LinkPreviewBot
            } else {
                C::SecurityScanner
            };
            return Some(Verdict::new(c, 95, None, *r));
        }
        if behaviour::is_prefetch(self.obs) {
            r.add(Reason::PrefetchHeader);
            return Some(Verdict::new(C::PrivacyProxy, 85, None, *r));
        }
        None
    }

    /// Agents that name a proxy, preview bot, scanner or tool.
    fn by_family(&self, r: &mut Reasons) -> Option<Verdict> {
        let family = self.family?;
        let class = self.class_of_family()?;
        let (reason, probability) = match class {
            C::ImageProxy => return Some(self.image_proxy(family, r)),
            C::PrivacyProxy => (Reason::PrivacyProxyUserAgent, 90),
            C::LinkPreviewBot => (Reason::PreviewUserAgent, 99),
            C::SecurityScanner => (Reason::ScannerUserAgent, 95),
            C::GenericBot => (Reason::BotUserAgent, 95),
            _ => (Reason::ProxyUserAgent, 50),
        };
        r.add(reason);
        Some(Verdict::new(class, probability, family.proxy_type, *r))
    }

    /// A mailbox image proxy's agent: human behind it if it comes from the
    /// proxy's network (when that is known) and it is an open.
    fn image_proxy(&self, family: &Family, r: &mut Reasons) -> Verdict {
        r.add(Reason::ProxyUserAgent);
        if family.network.is_some() {
            match (self.family_network, self.obs.ip) {
                (Some(i), Some(_)) if !self.net.contains(i) => {
                    r.add(Reason::ProxyWrongNetwork);
                    return Verdict::new(C::Suspicious, 80, None, *r);
                }
                (Some(_), Some(_)) => r.add(Reason::ProxyNetworkVerified),
                _ => r.add(Reason::ProxyNetworkUnverified),
            }
        }
        if self.obs.kind == Kind::Click {
            // Proxies fetch images; one that follows a link is prefetching.
            r.add(Reason::ProxyFetchedLink);
            return Verdict::new(C::GenericBot, 90, None, *r);
        }
        Verdict::new(C::ImageProxy, 20, family.proxy_type, *r)
    }

    /// Networks that settle the class: Apple's relay for opens, scanners,
    /// crawlers, preview fetchers.
    fn by_network(&self, r: &mut Reasons) -> Option<Verdict> {
        if self.in_class(NetworkClass::AppleRelay) {
            r.add(Reason::AppleNetwork);
            if self.obs.kind == Kind::Open {
                return Some(Verdict::new(
                    C::PrivacyProxy,
                    90,
                    Some(ProxyType::AppleMpp),
                    *r,
                ));
            }
        }
        let click = self.obs.kind == Kind::Click;
        let (class, reason, probability) = if self.in_class(NetworkClass::SecurityScanner) {
            (C::SecurityScanner, Reason::SecurityNetwork, 90)
        } else if click && self.in_class(NetworkClass::MailProvider) {
            // Safe Links and the like follow links from the provider's
            // cloud; its opens are image fetches for a reader (human()).
            (C::SecurityScanner, Reason::MailProviderNetwork, 85)
        } else if self.in_class(NetworkClass::Crawler) {
            (C::GenericBot, Reason::CrawlerNetwork, 90)
        } else if self.in_class(NetworkClass::LinkPreview) {
            (C::LinkPreviewBot, Reason::PreviewNetwork, 85)
        } else {
            return None;
        };
        r.add(reason);
        Some(Verdict::new(class, probability, None, *r))
    }

    /// Empty and bare agents (suspicious: a real client names itself, and
    /// a bare `Mozilla/5.0` is Apple's relay only from Apple's network,
    /// which by_network has seen), then the generic bot patterns (a known
    /// email client's agent is never taken for a bot: isbot lists some).
    fn by_agent(&self, r: &mut Reasons) -> Option<Verdict> {
        if self.ua.is_empty() {
            r.add(Reason::EmptyUserAgent);
            return Some(Verdict::new(C::Suspicious, 85, None, *r));
        }
        if ua::is_bare(self.ua) {
            r.add(Reason::BareUserAgent);
            return Some(Verdict::new(C::Suspicious, 85, None, *r));
        }
        if !self.is_client(FamilyKind::EmailClient) && self.lists.bots.is_match(self.ua) {
            r.add(Reason::BotUserAgent);
            return Some(Verdict::new(C::GenericBot, 95, None, *r));
        }
        None
    }

    /// Bursts, timing, shared addresses and weak signals for agents that
    /// look human.
    fn by_behaviour(&self, r: &mut Reasons) -> Option<Verdict> {
        let rules = &self.lists.rules;
        let click = self.obs.kind == Kind::Click;
        let window_ms = u64::try_from(rules.burst_window.as_millis()).unwrap_or(u64::MAX);
        if click
            && behaviour::links_within(self.obs, self.ctx, window_ms, rules.burst_links)
                >= rules.burst_links
        {
            r.add(Reason::LinkBurst);
            return Some(Verdict::new(C::SecurityScanner, 90, None, *r));
        }
        let after_send = self.ctx.seconds_after_send;
        if click && after_send.is_some_and(|s| s < rules.scanner_click_seconds) {
            r.add(Reason::ClickSecondsAfterSend);
            return Some(Verdict::new(C::SecurityScanner, 85, None, *r));
        }
        let apple = self.in_class(NetworkClass::AppleRelay);
        if !apple && self.ctx.recipients_from_ip >= rules.max_recipients_per_ip {
            r.add(Reason::ManyRecipientsFromIp);
            return Some(Verdict::new(C::Suspicious, 75, None, *r));
        }
        let mut weak = false;
        // An open from a mailbox provider's cloud is its image fetch.
        let provider_open = !click && self.in_class(NetworkClass::MailProvider);
        if !provider_open && self.in_class(NetworkClass::Hosting) {
            r.add(Reason::HostingNetwork);
            weak = true;
        }
        if click && behaviour::missing_browser_headers(self.obs) {
            r.add(Reason::MissingBrowserHeaders);
            weak = true;
        }
        if click && after_send.is_some_and(|s| s < rules.early_click_seconds) {
            r.add(Reason::EarlyClick);
            weak = true;
        }
        weak.then(|| Verdict::new(C::Suspicious, 70, None, *r))
    }

    /// Nothing speaks against a person. A click through a VPN, a privacy
    /// gateway or a proxy browser counts but is unverified: the address
    /// says nothing about who clicked.
    fn human(&self, r: &mut Reasons) -> Verdict {
        let apple = self.in_class(NetworkClass::AppleRelay);
        // Apple's relay runs partly in Cloudflare's space: Apple wins.
        let vpn = !apple && self.in_class(NetworkClass::Vpn);
        if vpn {
            r.add(Reason::VpnNetwork);
        }
        let kind = self.family.map(|f| f.kind);
        let known = match kind {
            Some(FamilyKind::EmailClient) => Some(Reason::EmailClient),
            Some(FamilyKind::Browser) => Some(Reason::Browser),
            Some(FamilyKind::ProxyBrowser) => Some(Reason::ProxyBrowser),
            _ => None,
        };
        r.add(known.unwrap_or(Reason::UnknownClient));
        if self.obs.kind == Kind::Open {
            if kind != Some(FamilyKind::EmailClient) && self.in_class(NetworkClass::MailProvider) {
                r.add(Reason::MailProviderNetwork);
                return Verdict::new(C::ImageProxy, 20, None, *r);
            }
            let p = if known.is_some() { 5 } else { 30 };
            return Verdict::new(C::Genuine, p, None, *r);
        }
        let relay = apple.then_some(ProxyType::ApplePrivateRelay);
        r.add(if behaviour::earlier_open(self.obs, self.ctx) {
            Reason::EarlierOpen
        } else {
            Reason::NoEarlierOpen
        });
        match known {
            Some(Reason::EmailClient | Reason::Browser) if !vpn => {
                Verdict::new(C::Genuine, 10, relay, *r)
            }
            _ => Verdict::new(C::UnverifiedClick, 40, relay, *r),
        }
    }

    /// client_type, client_name and device_type.
    fn fill_client(&self, v: &mut Verdict) {
        let c = v.bot.classification;
        if let Some(f) = self.family {
            v.client_name = f.client_name.clone();
            v.client_type = Some(match f.kind {
                FamilyKind::EmailClient => ClientType::EmailClient,
                // A mailbox provider's image fetch with a browser's agent.
                _ if c == C::ImageProxy && v.bot.proxy_type.is_none() => ClientType::Proxy,
                FamilyKind::Browser | FamilyKind::ProxyBrowser => ClientType::Browser,
                FamilyKind::Class(C::ImageProxy | C::PrivacyProxy) => ClientType::Proxy,
                FamilyKind::Class(_) => ClientType::Bot,
            });
        } else if c == C::GenericBot && !self.ua.is_empty() {
            v.client_type = Some(ClientType::Bot);
        }
        let person = matches!(c, C::Genuine | C::UnverifiedClick | C::Suspicious);
        let client = !matches!(self.family.map(|f| f.kind), Some(FamilyKind::Class(_)));
        if person && client {
            v.device_type = ua::device_type(self.ua);
        }
    }
}
