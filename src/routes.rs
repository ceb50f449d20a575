//! Routes in force: the one owner of a route's live state (SPEC §2).
//!
//! The [`Registry`] holds the config's routes, the settings changed at run
//! time through the API (stored in the database) and the tracking domains
//! the database remembers, and hands out [`Snapshot`]s: immutable, swapped
//! whole on each change. Every consumer reads the current snapshot and
//! nothing else: the relay and the milter (the route of a message), the
//! webhooks (a route's endpoints), the tracking server (the Host names it
//! answers), the API and the dashboard (`/v1/routes`).
//!
//! Two ways to change it, both here and one at a time: a reload of the
//! config ([`Registry::reload`], from `App::reload` on SIGHUP) and an
//! override through the API ([`Registry::set_override`]). A reload also
//! reads the overrides and domains back from the database, so nodes sharing
//! one database pick up a change made through another node's API.
//!
//! A tracking domain the config drops keeps being answered for links
//! already sent (`routes/domains.rs` says how long, and why).

pub mod domains;
mod follow;
mod snapshot;

use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::storage::{DomainsSeen, RouteOverride, Storage, StorageError};
pub use domains::TrackingDomain;
pub use snapshot::Snapshot;
use snapshot::Table;

/// Why a route's settings were not changed.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("no route {0:?}")]
    UnknownRoute(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A change to a route's run-time settings. For each: `None` leaves it
/// as it is, `Some(None)` clears it (the config's value stands again),
/// `Some(Some(v))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub track_opens: Option<Option<bool>>,
    pub track_clicks: Option<Option<bool>>,
}

/// The owner of the routes in force; shared by every consumer.
#[derive(Debug)]
pub struct Registry {
    storage: Storage,
    /// Held while a change is made (reload, override, stamp), so each one
    /// reads, merges and stores the whole.
    table: tokio::sync::Mutex<Table>,
    /// The snapshot in force; replaced whole, read by cloning the `Arc`.
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    /// The config's routes as they are, nothing read from storage (tools
    /// and benchmarks; the server uses [`Registry::open`]).
    pub fn from_config(config: &Config, storage: Storage) -> Self {
        let table = Table::new(
            config.routes.clone(),
            config.tracking.base_url.clone(),
            config.tracking.token_ttl,
        );
        let snapshot = Arc::new(table.snapshot(crate::time::now_ms()));
        Self {
            storage,
            table: tokio::sync::Mutex::new(table),
            current: RwLock::new(snapshot),
        }
    }

    /// The config's routes with the stored overrides over them and the
    /// remembered tracking domains; records the configured domains as
    /// configured now.
    pub async fn open(config: &Config, storage: Storage) -> Result<Self, StorageError> {
        let registry = Self::from_config(config, storage.clone());
        {
            let mut table = registry.table.lock().await;
            table.set_overrides(storage.route_overrides().await?);
            table.set_known(storage.tracking_domains().await?);
            registry.stamp(&mut table, Vec::new());
            registry.publish(&table);
        }
        Ok(registry)
    }

    /// The routes in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes the routes of a reloaded `config`, with the overrides and
    /// domains read back from the database (a failed read keeps the ones in
    /// memory, logged). The domains configured until now are stamped, so a
    /// domain this drops stays answered for the mail already sent.
    pub async fn reload(&self, config: &Config) {
        let mut table = self.table.lock().await;
        let (overrides, known) = tokio::join!(
            self.storage.route_overrides(),
            self.storage.tracking_domains()
        );
        match known {
            Ok(known) => table.set_known(known),
            Err(e) => {
                tracing::error!("tracking domains not read back, keeping the known ones: {e}")
            }
        }
        let before = urls(&table);
        match overrides {
            Ok(all) => table.set_overrides(all),
            Err(e) => {
                tracing::error!("route settings not read back, keeping the running ones: {e}")
            }
        }
        table.set_configured(config.routes.clone());
        if &config.tracking.base_url != table.base_url() {
            tracing::warn!(
                running = %table.base_url(), file = %config.tracking.base_url,
                "tracking.base_url changed: it takes effect at the next start"
            );
        }
        self.stamp(&mut table, before);
        self.publish(&table);
    }

    /// Applies `change` to route `id`'s run-time settings: stored first, so
    /// what the next message gets survives a restart. Returns the snapshot
    /// it made.
    pub async fn set_override(
        &self,
        id: &str,
        change: Change,
    ) -> Result<Arc<Snapshot>, RoutesError> {
        let mut table = self.table.lock().await;
        if !table.has_route(id) {
            return Err(RoutesError::UnknownRoute(id.to_owned()));
        }
        let mut o = table
            .override_of(id)
            .cloned()
            .unwrap_or_else(|| RouteOverride {
                route: id.to_owned(),
                track_opens: None,
                track_clicks: None,
                updated_at_ms: 0,
            });
        if let Some(v) = change.track_opens {
            o.track_opens = v;
        }
        if let Some(v) = change.track_clicks {
            o.track_clicks = v;
        }
        o.updated_at_ms = crate::time::now_ms();
        self.storage.set_route_override(o.clone()).await?;
        tracing::info!(
            route = id, track_opens = ?o.track_opens, track_clicks = ?o.track_clicks,
            "route settings changed through the API"
        );
        table.set_override(o);
        Ok(self.publish(&table))
    }

    /// Stamps the configured domains every [`domains::REFRESH`] and once
    /// more at shutdown: the last time each was configured is what keeps
    /// it answered after it is dropped.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(domains::REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // The first tick is now: `open` stamped already.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mut table = self.table.lock().await;
            self.stamp(&mut table, Vec::new());
        }
        let mut table = self.table.lock().await;
        self.stamp(&mut table, Vec::new());
    }

    /// Records `also` and the domains configured now as configured at this
    /// moment, in memory and (queued) in the database.
    fn stamp(&self, table: &mut Table, also: Vec<String>) {
        let mut all = also;
        for url in urls(table) {
            if !all.contains(&url) {
                all.push(url);
            }
        }
        let urls = all;
        let at_ms = crate::time::now_ms();
        table.seen(&urls, at_ms);
        if let Err(e) = self
            .storage
            .tracking_domains_seen(DomainsSeen { urls, at_ms })
        {
            tracing::error!("tracking domains not recorded as configured: {e}");
        }
    }

    /// Builds the snapshot of `table` and puts it in force.
    fn publish(&self, table: &Table) -> Arc<Snapshot> {
        let snapshot = Arc::new(table.snapshot(crate::time::now_ms()));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = snapshot.clone();
        snapshot
    }
}

/// The configured base URLs of `table`, as stored.
fn urls(table: &Table) -> Vec<String> {
    table
        .configured_urls()
        .iter()
        .map(|u| u.as_str().to_owned())
        .collect()
}
