//! Routes: which messages get which tracking settings (SPEC §2).
//!
//! A message is matched to the first route whose every given condition
//! holds (AUTH user, envelope sender glob, client network); a route with no
//! condition is a fallback. Matching is a pure function of the envelope.

use std::net::IpAddr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use url::Url;

use super::Webhook;
use crate::html::PixelPosition;

/// One route from the config.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    pub matcher: Matcher,
    pub settings: RouteSettings,
    pub webhooks: Vec<Webhook>,
}

/// What a route does to the messages it takes. Run-time changes (PATCH
/// /v1/routes/{id}) replace this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    pub track_opens: bool,
    pub track_clicks: bool,
    /// Base URL of tracking links for this route; `None` uses
    /// `tracking.base_url`.
    pub tracking_domain: Option<Url>,
    /// One copy per recipient with its own tokens (SPEC §1).
    pub per_recipient: bool,
    pub pixel_position: PixelPosition,
    /// Rewrite messages that already carry a DKIM-Signature (breaks it).
    pub rewrite_dkim_signed: bool,
    /// Sign every copy with the From domain's `[[dkim.keys]]` key, not
    /// only the rewritten ones.
    pub dkim_sign: bool,
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self {
            track_opens: false,
            track_clicks: false,
            tracking_domain: None,
            per_recipient: true,
            pixel_position: PixelPosition::End,
            rewrite_dkim_signed: false,
            dkim_sign: false,
        }
    }
}

/// The conditions of a route; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub auth_users: Vec<String>,
    pub senders: Option<GlobSet>,
    pub networks: Vec<IpNet>,
}

/// What a route is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub auth_user: Option<&'a str>,
    pub sender: &'a str,
    pub client_ip: IpAddr,
}

impl Matcher {
    /// True when the route has no condition.
    pub fn is_fallback(&self) -> bool {
        self.auth_users.is_empty() && self.senders.is_none() && self.networks.is_empty()
    }

    pub fn matches(&self, envelope: &Envelope<'_>) -> bool {
        let user_ok = self.auth_users.is_empty()
            || envelope
                .auth_user
                .is_some_and(|user| self.auth_users.iter().any(|u| u == user));
        let sender_ok = self
            .senders
            .as_ref()
            .is_none_or(|set| set.is_match(envelope.sender.to_lowercase()));
        let network_ok = self.networks.is_empty()
            || self
                .networks
                .iter()
                .any(|n| n.contains(&envelope.client_ip));
        user_ok && sender_ok && network_ok
    }
}

/// Builds the sender glob set. A pattern without `@` names a domain:
/// `example.com` means `*@example.com`, `*.example.com` its subdomains.
pub fn sender_globs(patterns: &[String]) -> Result<Option<GlobSet>, (usize, String)> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let pattern = pattern.trim().to_lowercase();
        let full = if pattern.contains('@') {
            pattern
        } else {
            format!("*@{pattern}")
        };
        let glob = Glob::new(&full).map_err(|e| (i, e.kind().to_string()))?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| (0, e.to_string()))
}

/// Returns the first route matching `envelope`; config validation ensures
/// the last route is a fallback, so there always is one.
pub fn select<'r>(routes: &'r [Route], envelope: &Envelope<'_>) -> &'r Route {
    routes
        .iter()
        .find(|r| r.matcher.matches(envelope))
        .or_else(|| routes.last())
        .expect("config always has a fallback route")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, matcher: Matcher) -> Route {
        Route {
            id: id.into(),
            matcher,
            settings: RouteSettings::default(),
            webhooks: Vec::new(),
        }
    }

    fn env<'a>(user: Option<&'a str>, sender: &'a str, ip: &str) -> Envelope<'a> {
        Envelope {
            auth_user: user,
            sender,
            client_ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = vec![
            route(
                "news",
                Matcher {
                    senders: sender_globs(&["news.example.com".into()]).unwrap(),
                    ..Matcher::default()
                },
            ),
            route(
                "app",
                Matcher {
                    auth_users: vec!["app".into()],
                    networks: vec!["10.0.0.0/8".parse().unwrap()],
                    ..Matcher::default()
                },
            ),
            route("default", Matcher::default()),
        ];
        assert_eq!(
            select(&routes, &env(None, "Bob@News.Example.com", "1.2.3.4")).id,
            "news"
        );
        assert_eq!(
            select(&routes, &env(Some("app"), "a@b.c", "10.1.2.3")).id,
            "app"
        );
        // Both conditions must hold.
        assert_eq!(
            select(&routes, &env(Some("app"), "a@b.c", "11.1.2.3")).id,
            "default"
        );
        assert_eq!(
            select(&routes, &env(None, "a@b.c", "10.1.2.3")).id,
            "default"
        );
    }

    #[test]
    fn domain_and_subdomain_globs() {
        let set = sender_globs(&["*.example.com".into(), "ceo@corp.test".into()])
            .unwrap()
            .unwrap();
        assert!(set.is_match("x@mail.example.com"));
        assert!(!set.is_match("x@example.com"));
        assert!(set.is_match("ceo@corp.test"));
        assert!(!set.is_match("cfo@corp.test"));
    }
}
