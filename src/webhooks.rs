//! Webhooks (SPEC §7): which events go to which endpoint, the durable
//! outbox and its delivery.
//!
//! - [`Webhooks::for_event`] / [`Webhooks::for_relayed`] turn one event
//!   into its deliveries (one per endpoint of the copy's route that asks
//!   for the type; machine events only with `include_machine`), with the
//!   body fixed once ([`payload`]). The caller hands them to storage in
//!   the same record as the event, so both are committed together.
//! - [`worker`] sends what is due, signed ([`sign`], or [`lettermint`]
//!   for endpoints in that format), through [`client`],
//!   and stores each try and what follows ([`retry`]): 2xx delivered, 410
//!   disables the endpoint, anything else is retried with backoff until
//!   `retry_for` has passed. Everything is in the database, so a restart
//!   resumes where it stopped: at least once, never zero.

pub mod address;
pub mod client;
mod connect;
pub mod lettermint;
pub mod payload;
pub mod retry;
pub mod sign;
pub mod worker;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{Webhook, WebhookFormat, WebhookSettings};
use crate::routes::Registry;
use crate::storage::{Event, NewDelivery, Observation, RelayedCopy, Storage};

/// The webhook side of the process; shared by the pipeline, the relay and
/// the worker.
pub struct Webhooks {
    storage: Storage,
    settings: WebhookSettings,
    /// The routes in force: each one's endpoints.
    routes: Arc<Registry>,
    /// (route, url) disabled by a 410; refreshed by the worker.
    disabled: RwLock<HashSet<(String, String)>>,
    /// Woken when new deliveries are committed.
    wake: Notify,
    /// One pooled client for every endpoint (keep-alive between tries).
    client: client::HttpClient,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Delivers for the endpoints of `routes`' routes (as they are at
    /// each event: a reload applies to the next one).
    pub fn new(settings: WebhookSettings, routes: Arc<Registry>, storage: Storage) -> Self {
        let client = client::HttpClient::new(
            settings.allow_private_networks,
            settings.timeout,
            concat!("trackrelay/", env!("CARGO_PKG_VERSION"), " webhooks"),
        );
        Self {
            storage,
            client,
            settings,
            routes,
            disabled: RwLock::default(),
            wake: Notify::new(),
        }
    }

    /// The deliveries of a classified hit on a copy of `copy` (none when
    /// the copy is not stored here: its route is unknown); `metadata` is
    /// the copy's sending API metadata.
    pub fn for_event(
        &self,
        obs: &Observation,
        event: &Event,
        copy: Option<&RelayedCopy>,
        metadata: Option<&Value>,
    ) -> Vec<NewDelivery> {
        let Some(copy) = copy else {
            return Vec::new();
        };
        let event_type = payload::engagement_type(event.kind);
        self.deliveries(&copy.route, event_type, event.id, event.machine, || {
            payload::engagement(obs, event, Some(copy), metadata)
        })
    }

    /// The deliveries of a relayed (or failed) copy without metadata.
    pub fn for_relayed(&self, copy: &RelayedCopy) -> Vec<NewDelivery> {
        self.for_relayed_with(copy, None)
    }

    /// The deliveries of a relayed (or failed) copy with its sending API
    /// `metadata`.
    pub fn for_relayed_with(
        &self,
        copy: &RelayedCopy,
        metadata: Option<&Value>,
    ) -> Vec<NewDelivery> {
        let event_type = payload::relay_type(copy);
        self.deliveries(&copy.route, event_type, copy.id, false, || {
            payload::relayed(copy, metadata)
        })
    }

    fn deliveries(
        &self,
        route: &str,
        event_type: &str,
        event_id: Uuid,
        machine: bool,
        body: impl FnOnce() -> serde_json::Value,
    ) -> Vec<NewDelivery> {
        let routes = self.routes.snapshot();
        let disabled = self.disabled.read().unwrap_or_else(|p| p.into_inner());
        let wanted: Vec<&Webhook> = routes
            .webhooks(route)
            .iter()
            .filter(|w| w.enabled && w.events.iter().any(|e| e == event_type))
            .filter(|w| !machine || w.include_machine)
            .filter(|w| !disabled.contains(&(route.to_owned(), w.url.to_string())))
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let payload = body();
        let standard = payload.to_string();
        let now = now_ms();
        wanted
            .into_iter()
            .map(|w| NewDelivery {
                id: Uuid::now_v7(),
                route: route.to_owned(),
                url: w.url.to_string(),
                event_type: event_type.to_owned(),
                event_id,
                payload: match w.format {
                    WebhookFormat::Standard => standard.clone(),
                    WebhookFormat::Lettermint => lettermint::body(payload.clone()),
                },
                created_at_ms: now,
            })
            .collect()
    }

    /// New deliveries were committed: the worker looks now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The format and secrets of an endpoint, if it is still configured
    /// and enabled.
    fn signing(&self, route: &str, url: &str) -> Option<(WebhookFormat, Vec<Vec<u8>>)> {
        self.routes
            .snapshot()
            .webhooks(route)
            .iter()
            .find(|w| w.url.as_str() == url && w.enabled)
            .map(|w| (w.format, w.secrets.clone()))
    }
}

pub use crate::time::now_ms;
