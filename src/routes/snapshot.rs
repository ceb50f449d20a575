//! The routes in force, as one immutable [`Snapshot`], and the [`Table`]
//! of inputs it is built from: the config's routes, the settings changed at
//! run time through the API (SPEC §2) laid over them, and the tracking
//! domains remembered in the database.
//!
//! Which wins: a value set through `PATCH /v1/routes/{id}` wins over the
//! config's until it is cleared (PATCH with `null`); a reload (SIGHUP)
//! replaces the config's routes and keeps the API's values over them, and
//! says so in the log when they differ. Overrides of a route the config no
//! longer has are kept (it may come back) and ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use super::domains::{self, TrackingDomain};
use crate::config::{Envelope, Route, Webhook};
use crate::storage::{KnownDomain, RouteOverride};

/// The routes in force at one moment; never changes once built. Each
/// message, hit and request reads one, so a change made meanwhile never
/// shows half-applied.
#[derive(Debug)]
pub struct Snapshot {
    /// In matching order, run-time settings applied.
    routes: Vec<Route>,
    overrides: BTreeMap<String, RouteOverride>,
    domains: Vec<TrackingDomain>,
}

impl Snapshot {
    /// The routes in force, in matching order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Route `id`, if it is in force.
    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.id == id)
    }

    /// The route for an envelope: the first that matches, else the
    /// fallback (config validation guarantees one).
    pub fn select(&self, envelope: &Envelope<'_>) -> &Route {
        crate::config::routes::select(&self.routes, envelope)
    }

    /// The settings the API set on route `id`, if any.
    pub fn override_of(&self, id: &str) -> Option<&RouteOverride> {
        self.overrides.get(id)
    }

    /// The webhook endpoints of route `id` (none for an unknown route).
    pub fn webhooks(&self, id: &str) -> &[Webhook] {
        self.route(id).map_or(&[], |r| &r.webhooks)
    }

    /// The tracking domains answered (see `routes/domains.rs`).
    pub fn domains(&self) -> &[TrackingDomain] {
        &self.domains
    }
}

/// What a snapshot is built from; changed only by the registry.
#[derive(Debug)]
pub(super) struct Table {
    configured: Vec<Route>,
    overrides: BTreeMap<String, RouteOverride>,
    /// `tracking.base_url` of the running process.
    base_url: Url,
    /// Every tracking domain stored as configured, with when last.
    known: Vec<KnownDomain>,
    token_ttl: Duration,
}

impl Table {
    pub(super) fn new(configured: Vec<Route>, base_url: Url, token_ttl: Duration) -> Self {
        Self {
            configured,
            overrides: BTreeMap::new(),
            base_url,
            known: Vec::new(),
            token_ttl,
        }
    }

    pub(super) fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub(super) fn has_route(&self, id: &str) -> bool {
        self.configured.iter().any(|r| r.id == id)
    }

    pub(super) fn override_of(&self, id: &str) -> Option<&RouteOverride> {
        self.overrides.get(id)
    }

    /// The base URLs configured now: `tracking.base_url`, then each
    /// route's `tracking_domain`.
    pub(super) fn configured_urls(&self) -> Vec<&Url> {
        std::iter::once(&self.base_url)
            .chain(
                self.configured
                    .iter()
                    .filter_map(|r| r.settings.tracking_domain.as_ref()),
            )
            .collect()
    }

    /// Replaces the config's routes (reload); overrides stay on top.
    pub(super) fn set_configured(&mut self, configured: Vec<Route>) {
        self.configured = configured;
        for route in &self.configured {
            let Some(o) = self.overrides.get(&route.id) else {
                continue;
            };
            let masked = |set: Option<bool>, config: bool| set.is_some_and(|v| v != config);
            if masked(o.track_opens, route.settings.track_opens)
                || masked(o.track_clicks, route.settings.track_clicks)
            {
                tracing::info!(
                    route = %route.id, track_opens = ?o.track_opens, track_clicks = ?o.track_clicks,
                    "settings set through the API stay over the reloaded config"
                );
            }
        }
    }

    /// Sets (or, when it sets nothing, removes) one route's override.
    pub(super) fn set_override(&mut self, o: RouteOverride) {
        if o.is_empty() {
            self.overrides.remove(&o.route);
        } else {
            self.overrides.insert(o.route.clone(), o);
        }
    }

    /// Replaces every override with `all` (read back from the database).
    pub(super) fn set_overrides(&mut self, all: Vec<RouteOverride>) {
        self.overrides = all.into_iter().map(|o| (o.route.clone(), o)).collect();
    }

    /// Replaces the remembered domains with `known` (read back from the
    /// database).
    pub(super) fn set_known(&mut self, known: Vec<KnownDomain>) {
        self.known = known;
    }

    /// Notes that `urls` were configured at `at_ms` (what the database is
    /// told at the same time).
    pub(super) fn seen(&mut self, urls: &[String], at_ms: i64) {
        for url in urls {
            match self.known.iter_mut().find(|k| &k.url == url) {
                Some(k) => k.last_configured_ms = k.last_configured_ms.max(at_ms),
                None => self.known.push(KnownDomain {
                    url: url.clone(),
                    last_configured_ms: at_ms,
                }),
            }
        }
    }

    /// The routes in force from `now_ms` on.
    pub(super) fn snapshot(&self, now_ms: i64) -> Snapshot {
        let routes = self
            .configured
            .iter()
            .map(|route| {
                let mut route = route.clone();
                if let Some(o) = self.overrides.get(&route.id) {
                    if let Some(v) = o.track_opens {
                        route.settings.track_opens = v;
                    }
                    if let Some(v) = o.track_clicks {
                        route.settings.track_clicks = v;
                    }
                }
                route
            })
            .collect();
        let domains =
            domains::answered(&self.configured_urls(), &self.known, self.token_ttl, now_ms);
        Snapshot {
            routes,
            overrides: self.overrides.clone(),
            domains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, opens: bool, clicks: bool) -> Route {
        Route {
            id: id.into(),
            matcher: Default::default(),
            settings: crate::config::RouteSettings {
                track_opens: opens,
                track_clicks: clicks,
                ..Default::default()
            },
            webhooks: Vec::new(),
        }
    }

    fn table(routes: Vec<Route>) -> Table {
        let base = Url::parse("https://t.example.com").unwrap();
        Table::new(routes, base, Duration::from_secs(86_400))
    }

    fn set(route: &str, opens: Option<bool>, clicks: Option<bool>) -> RouteOverride {
        RouteOverride {
            route: route.into(),
            track_opens: opens,
            track_clicks: clicks,
            updated_at_ms: 1,
        }
    }

    fn settings(t: &Table, id: &str) -> (bool, bool) {
        let snapshot = t.snapshot(0);
        let r = snapshot.route(id).unwrap();
        (r.settings.track_opens, r.settings.track_clicks)
    }

    #[test]
    fn api_values_win_over_the_config_until_cleared() {
        let mut t = table(vec![route("news", true, true), route("bulk", false, false)]);
        t.set_override(set("news", Some(false), None));
        assert_eq!(settings(&t, "news"), (false, true));
        assert_eq!(settings(&t, "bulk"), (false, false));

        // A reload with other config values keeps the API's over them.
        t.set_configured(vec![route("news", true, false), route("bulk", true, true)]);
        assert_eq!(settings(&t, "news"), (false, false));
        assert_eq!(settings(&t, "bulk"), (true, true));

        // Cleared: the config stands again, and the row is gone.
        t.set_override(set("news", None, None));
        assert_eq!(settings(&t, "news"), (true, false));
        assert!(t.snapshot(0).override_of("news").is_none());
    }

    #[test]
    fn overrides_of_unknown_routes_are_kept_and_ignored() {
        let mut t = table(vec![route("news", false, false)]);
        t.set_override(set("gone", Some(true), Some(true)));
        assert_eq!(t.snapshot(0).routes().len(), 1);
        t.set_configured(vec![
            route("news", false, false),
            route("gone", false, false),
        ]);
        assert_eq!(settings(&t, "gone"), (true, true));
    }

    #[test]
    fn a_domain_the_reload_drops_stays_answered_for_the_token_lifetime() {
        let mut news = route("news", true, true);
        news.settings.tracking_domain = Some(Url::parse("https://n1.example.com").unwrap());
        let mut t = table(vec![news.clone()]);
        let urls: Vec<String> = t.configured_urls().iter().map(|u| u.to_string()).collect();
        t.seen(&urls, 1_000);
        news.settings.tracking_domain = Some(Url::parse("https://n2.example.com").unwrap());
        t.set_configured(vec![news]);
        let hosts = |now: i64| -> Vec<String> {
            t.snapshot(now)
                .domains()
                .iter()
                .filter(|d| d.answered_at(now))
                .map(|d| d.host().to_owned())
                .collect()
        };
        assert_eq!(
            hosts(2_000),
            ["t.example.com", "n2.example.com", "n1.example.com"]
        );
        let last = 1_000 + 86_400_000 + 3_600_000;
        assert_eq!(hosts(last).len(), 3);
        assert_eq!(hosts(last + 1), ["t.example.com", "n2.example.com"]);
    }
}
