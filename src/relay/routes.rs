//! The routes the relay uses: the config's, with the settings changed at
//! run time through the API (SPEC §2) laid over them.
//!
//! Which wins: a value set through `PATCH /v1/routes/{id}` wins over the
//! config's until it is cleared (PATCH with `null`); a reload (SIGHUP)
//! replaces the config's routes and keeps the API's values over them, and
//! says so in the log when they differ. Overrides of a route the config no
//! longer has are kept (it may come back) and ignored. A reload also reads
//! the overrides back from the database, so nodes sharing one database pick
//! up a change made through another node's API.

use std::collections::BTreeMap;

use crate::config::Route;
use crate::storage::RouteOverride;

/// The config's routes, the run-time overrides, and the two combined.
#[derive(Debug, Default)]
pub struct RouteTable {
    configured: Vec<Route>,
    overrides: BTreeMap<String, RouteOverride>,
    effective: Vec<Route>,
}

impl RouteTable {
    pub fn new(configured: Vec<Route>) -> Self {
        let mut table = Self {
            configured,
            ..Self::default()
        };
        table.combine();
        table
    }

    /// The routes in force, in matching order.
    pub fn effective(&self) -> &[Route] {
        &self.effective
    }

    /// The override of route `id`, if the API set one.
    pub fn override_of(&self, id: &str) -> Option<&RouteOverride> {
        self.overrides.get(id)
    }

    /// Replaces the config's routes (reload); overrides stay on top.
    pub fn set_configured(&mut self, configured: Vec<Route>) {
        self.configured = configured;
        self.combine();
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
    pub fn set_override(&mut self, o: RouteOverride) {
        if o.is_empty() {
            self.overrides.remove(&o.route);
        } else {
            self.overrides.insert(o.route.clone(), o);
        }
        self.combine();
    }

    /// Replaces every override with `all` (read back from the database).
    pub fn set_overrides(&mut self, all: Vec<RouteOverride>) {
        self.overrides = all.into_iter().map(|o| (o.route.clone(), o)).collect();
        self.combine();
    }

    fn combine(&mut self) {
        self.effective = self
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

    fn set(route: &str, opens: Option<bool>, clicks: Option<bool>) -> RouteOverride {
        RouteOverride {
            route: route.into(),
            track_opens: opens,
            track_clicks: clicks,
            updated_at_ms: 1,
        }
    }

    fn settings(t: &RouteTable, id: &str) -> (bool, bool) {
        let r = t.effective().iter().find(|r| r.id == id).unwrap();
        (r.settings.track_opens, r.settings.track_clicks)
    }

    #[test]
    fn api_values_win_over_the_config_until_cleared() {
        let mut t = RouteTable::new(vec![route("news", true, true), route("bulk", false, false)]);
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
        assert!(t.override_of("news").is_none());
    }

    #[test]
    fn overrides_of_unknown_routes_are_kept_and_ignored() {
        let mut t = RouteTable::new(vec![route("news", false, false)]);
        t.set_override(set("gone", Some(true), Some(true)));
        assert_eq!(t.effective().len(), 1);
        t.set_configured(vec![
            route("news", false, false),
            route("gone", false, false),
        ]);
        assert_eq!(settings(&t, "gone"), (true, true));
    }
}
