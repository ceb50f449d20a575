//! The PostgreSQL backend: the same records and reads as SQLite's, for
//! several nodes sharing one database (docs/scaling.md).
//!
//! Writes go through the same group-commit writer as SQLite's
//! (storage/writer.rs), on its own thread with its own connection
//! (`writer.rs` here): a batch of hits is one multi-row insert in one
//! transaction. Reads take a connection from a small deadpool pool, on
//! the caller's runtime. One file per table, as for SQLite; migrations run
//! under an advisory lock (`schema.rs`).

mod addresses;
mod events;
mod feed;
pub mod import;
pub mod lease;
mod messages;
mod observations;
mod partitions;
pub mod retention;
mod rollups;
mod routes;
pub mod schema;
mod sending;
mod settings;
mod stats;
mod webhooks;
pub(super) mod writer;

use std::collections::HashMap;
use std::net::IpAddr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub use addresses::WINDOW_MS as ADDRESS_WINDOW_MS;
pub use settings::{PostgresSettings, SslMode};

use super::{
    Attempt, ClassCounts, CopyContext, CopyCounts, Counts, Delivery, DisabledEndpoint, Event,
    FeedFilter, FeedItem, GroupQuery, IdempotentResponse, KnownDomain, LinkClicks, MessageFilter,
    Observation, RelayedCopy, RouteEvent, RouteOverride, StatsQuery, StorageError,
};

/// Connections kept for reads.
const READERS_MAX: usize = 8;

/// The read side: a pool of connections.
pub struct Postgres {
    pool: Pool,
}

impl Postgres {
    /// Opens the pool and brings the schema up to date (once across nodes:
    /// the migration lock).
    pub(super) async fn connect(settings: &PostgresSettings) -> Result<Postgres, StorageError> {
        let tls = settings.tls().map_err(StorageError::Connect)?;
        let manager = Manager::from_config(
            settings.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(READERS_MAX)
            .build()
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        let pg = Postgres { pool };
        let mut client = pg.client().await?;
        schema::migrate(&mut client).await?;
        // Not fatal: hits of a month not made yet go to the default
        // partition, and the retention pass tries again.
        if let Err(e) = partitions::ensure(&client, crate::time::now_ms()).await {
            tracing::warn!(error = %e, "time partitions not made at start");
        }
        Ok(pg)
    }

    async fn client(&self) -> Result<Object, StorageError> {
        self.pool
            .get()
            .await
            .map_err(|e| StorageError::Connect(e.to_string()))
    }

    pub(super) async fn messages(
        &self,
        filter: &MessageFilter,
    ) -> Result<Vec<RelayedCopy>, StorageError> {
        messages::list(&**self.client().await?, filter).await
    }

    pub(super) async fn message(&self, id: Uuid) -> Result<Option<RelayedCopy>, StorageError> {
        messages::get(&**self.client().await?, id).await
    }

    pub(super) async fn observations(&self, id: Uuid) -> Result<Vec<Observation>, StorageError> {
        observations::for_message(&**self.client().await?, id).await
    }

    pub(super) async fn metadata(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Value>, StorageError> {
        sending::metadata(&**self.client().await?, ids).await
    }

    pub(super) async fn idempotent(
        &self,
        token_digest: [u8; 32],
        key: &str,
    ) -> Result<Option<IdempotentResponse>, StorageError> {
        sending::idempotent(&**self.client().await?, token_digest, key).await
    }

    pub(super) async fn copy_counts(
        &self,
        ids: &[Uuid],
        include_machine: bool,
    ) -> Result<Vec<CopyCounts>, StorageError> {
        sending::copy_counts(&**self.client().await?, ids, include_machine).await
    }

    pub(super) async fn observation_count(&self) -> Result<u64, StorageError> {
        observations::count(&**self.client().await?).await
    }

    pub(super) async fn events(&self, id: Uuid) -> Result<Vec<Event>, StorageError> {
        events::for_message(&**self.client().await?, id).await
    }

    pub(super) async fn copy_contexts(
        &self,
        wanted: &[(Uuid, i64, i64)],
    ) -> Result<Vec<CopyContext>, StorageError> {
        events::contexts(&**self.client().await?, wanted).await
    }

    pub(super) async fn unclassified(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<Observation>, StorageError> {
        events::unclassified(&**self.client().await?, from_ms, to_ms, limit).await
    }

    pub(super) async fn route_stats(
        &self,
        q: &StatsQuery,
    ) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
        stats::route_stats(&**self.client().await?, q).await
    }

    pub(super) async fn route_links(
        &self,
        q: &StatsQuery,
    ) -> Result<Vec<LinkClicks>, StorageError> {
        stats::route_links(&**self.client().await?, q).await
    }

    pub(super) async fn group_stats(
        &self,
        q: &GroupQuery,
    ) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
        stats::group_stats(&**self.client().await?, q).await
    }

    pub(super) async fn group_links(
        &self,
        q: &GroupQuery,
    ) -> Result<Vec<LinkClicks>, StorageError> {
        stats::group_links(&**self.client().await?, q).await
    }

    pub(super) async fn recipients_from_ips(
        &self,
        hits: &[(IpAddr, i64)],
    ) -> Result<Vec<u32>, StorageError> {
        addresses::recipients(&**self.client().await?, hits).await
    }

    /// Counts the hourly rollups again from every stored copy and event
    /// (after rows were written around the writer, e.g. a bulk copy).
    pub async fn rebuild_rollups(&self) -> Result<(), StorageError> {
        let mut client = self.client().await?;
        rollups::rebuild(&mut client).await
    }

    pub(super) async fn route_classifications(
        &self,
        q: &StatsQuery,
    ) -> Result<Vec<ClassCounts>, StorageError> {
        stats::classifications(&**self.client().await?, q).await
    }

    pub(super) async fn route_events(
        &self,
        q: &StatsQuery,
        limit: u32,
    ) -> Result<Vec<RouteEvent>, StorageError> {
        stats::recent_events(&**self.client().await?, q, limit).await
    }

    pub(super) async fn feed(&self, filter: &FeedFilter) -> Result<Vec<FeedItem>, StorageError> {
        feed::page(&**self.client().await?, filter).await
    }

    pub(super) async fn feed_end(&self) -> Result<Option<i64>, StorageError> {
        feed::last_seq(&**self.client().await?).await
    }

    pub(super) async fn claim(
        &self,
        claim: &lease::Claim<'_>,
    ) -> Result<Option<lease::Held>, StorageError> {
        lease::claim(&**self.client().await?, claim).await
    }

    pub(super) async fn release(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        lease::release(&**self.client().await?, name, holder).await
    }

    pub(super) async fn route_overrides(&self) -> Result<Vec<RouteOverride>, StorageError> {
        routes::all(&**self.client().await?).await
    }

    pub(super) async fn tracking_domains(&self) -> Result<Vec<KnownDomain>, StorageError> {
        routes::domains(&**self.client().await?).await
    }

    pub(super) async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        webhooks::due(&**self.client().await?, now_ms, limit, lease).await
    }

    pub(super) async fn next_delivery_at(&self) -> Result<Option<i64>, StorageError> {
        webhooks::next_due(&**self.client().await?).await
    }

    pub(super) async fn deliveries_after(
        &self,
        status: Option<&str>,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StorageError> {
        webhooks::list(&**self.client().await?, status, after, limit).await
    }

    pub(super) async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StorageError> {
        webhooks::get(&**self.client().await?, id).await
    }

    pub(super) async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<Attempt>, StorageError> {
        webhooks::attempts(&**self.client().await?, id).await
    }

    pub(super) async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StorageError> {
        webhooks::disabled(&**self.client().await?).await
    }
}

/// A text column holding an enum's word (the owner's `FromStr`).
fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, StorageError> {
    text.parse().map_err(StorageError::Corrupt)
}

/// An `ip` column: empty once minimised.
fn parse_ip(text: String) -> Result<Option<IpAddr>, StorageError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| StorageError::Corrupt(format!("ip {text:?}: {e}")))
}

/// The values bound to a statement made of fixed fragments, in order.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Binds `value`; returns its placeholder (`$n`).
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `conditions` joined with AND (`true` when there is none).
fn all_of(conditions: &[String]) -> String {
    if conditions.is_empty() {
        "true".to_owned()
    } else {
        conditions.join(" AND ")
    }
}
