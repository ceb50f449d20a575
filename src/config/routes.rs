//! Routes: which messages get which tracking settings (SPEC §2).
//!
//! A message is matched to the first route whose every given condition
//! holds (AUTH user, envelope sender glob, client network); a route with no
//! condition is a fallback. Matching is a pure function of the envelope.
//! `[[routes]]` are checked here too, each problem named by its key path.

use std::net::IpAddr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use super::raw::RawRoute;
use super::{Collector, Webhook};
use crate::html::PixelPosition;
// What a route does is the rewrite policy's input, so `rewrite` owns it.
pub use crate::rewrite::RouteSettings;

/// One route from the config.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    pub matcher: Matcher,
    pub settings: RouteSettings,
    pub webhooks: Vec<Webhook>,
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

impl Collector {
    pub(super) fn routes(&mut self, raw: &[RawRoute]) -> Vec<Route> {
        let mut routes: Vec<Route> = raw
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r))
            .collect();
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.id == r.id) {
                self.push(
                    format!("routes[{i}].id"),
                    format!("{:?} is used by an earlier route", r.id),
                );
            }
        }
        // Without a fallback, unmatched mail goes through untracked (tracking
        // is off by default, SPEC §9) under an implicit route "default".
        if !routes.iter().any(|r| r.matcher.is_fallback()) {
            if routes.iter().any(|r| r.id == "default") {
                self.push("routes", "no route is a fallback (without match) but one is named \"default\"; add a fallback");
            }
            routes.push(Route {
                id: "default".into(),
                matcher: Matcher::default(),
                settings: RouteSettings::default(),
                webhooks: Vec::new(),
            });
        }
        routes
    }

    fn route(&mut self, i: usize, r: &RawRoute) -> Route {
        let key = format!("routes[{i}]");
        let id_ok = !r.id.is_empty()
            && r.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            self.push(
                format!("{key}.id"),
                format!("{:?}: letters, digits, '-', '_' or '.' required", r.id),
            );
        }
        let pixel_position = match r.pixel_position.as_str() {
            "end" => PixelPosition::End,
            "start" => PixelPosition::Start,
            other => {
                self.push(
                    format!("{key}.pixel_position"),
                    format!("{other:?} is neither \"start\" nor \"end\""),
                );
                PixelPosition::End
            }
        };
        let senders = sender_globs(&r.matcher.senders).unwrap_or_else(|(j, e)| {
            self.push(format!("{key}.match.senders[{j}]"), e);
            None
        });
        let matcher = Matcher {
            auth_users: r.matcher.auth_users.clone(),
            senders,
            networks: self.nets(&format!("{key}.match.networks"), &r.matcher.networks),
        };
        let tracking_domain = r
            .tracking_domain
            .as_deref()
            .map(|d| self.base_url(&format!("{key}.tracking_domain"), d));
        let webhooks = r
            .webhooks
            .iter()
            .enumerate()
            .map(|(j, w)| self.webhook(&format!("{key}.webhooks[{j}]"), w))
            .collect();
        Route {
            id: r.id.clone(),
            matcher,
            settings: RouteSettings {
                track_opens: r.track_opens,
                track_clicks: r.track_clicks,
                tracking_domain,
                per_recipient: r.per_recipient,
                pixel_position,
                rewrite_dkim_signed: r.rewrite_dkim_signed,
                dkim_sign: r.dkim_sign,
            },
            webhooks,
        }
    }
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
