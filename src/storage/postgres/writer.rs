//! The group-commit writer's PostgreSQL side: its own connection, on its
//! own thread with a small runtime (the writer is a thread, as for
//! SQLite). A batch is one transaction: every hit in one multi-row insert,
//! the other records one after the other. When the database refuses a row
//! for good, PostgreSQL aborts the whole transaction (unlike SQLite), so
//! the batch is written again with a savepoint per record to find it and
//! commit the rest. A lost connection is opened again at the next try;
//! meanwhile the batch waits in the queue (storage/writer.rs). Before the
//! commit, the hourly rollups get the batch's sums (`rollups.rs`), and
//! the per-address counts its hits (`addresses.rs`); last, the events the
//! batch stored get their feed positions (`feed.rs` says why last).

use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::{
    PostgresSettings, addresses, events, feed, messages, observations, rollups, routes, sending,
    webhooks,
};
use crate::storage::writer::{Record, Sink};
use crate::storage::{Fault, Observation, StorageError, WebhookWrite};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

/// PostgreSQL's sink for the writer.
pub struct PgSink {
    settings: PostgresSettings,
    tls: MakeRustlsConnect,
    runtime: Runtime,
    client: Option<Client>,
    /// The test fault to apply to every new connection.
    read_only: bool,
}

impl PgSink {
    /// A sink that connects at its first batch.
    pub fn new(settings: &PostgresSettings) -> Result<PgSink, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::Task(e.to_string()))?;
        Ok(PgSink {
            settings: settings.clone(),
            tls: settings.tls().map_err(StorageError::Connect)?,
            runtime,
            client: None,
            read_only: false,
        })
    }

    async fn connect(
        settings: &PostgresSettings,
        tls: &MakeRustlsConnect,
        read_only: bool,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = settings.config.connect(tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "storage writer's PostgreSQL connection closed");
            }
        });
        if read_only {
            client
                .batch_execute("SET default_transaction_read_only = on")
                .await?;
        }
        Ok(client)
    }
}

impl Sink for PgSink {
    fn write_batch(&mut self, batch: &[&Record]) -> Result<Vec<(usize, String)>, String> {
        let PgSink {
            settings,
            tls,
            runtime,
            client,
            read_only,
        } = self;
        runtime.block_on(async {
            if client.as_ref().is_none_or(Client::is_closed) {
                *client = Some(
                    Self::connect(settings, tls, *read_only)
                        .await
                        .map_err(|e| format!("connecting: {e}"))?,
                );
            }
            // Just set above.
            let conn = client.as_mut().expect("a connection");
            match write_all(conn, batch).await {
                Ok(()) => Ok(Vec::new()),
                Err(e) if is_permanent(&e) => {
                    write_each(conn, batch).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn fault(&mut self, fault: Option<Fault>) {
        self.read_only = matches!(fault, Some(Fault::ReadOnly));
        // The next batch connects again with the fault applied.
        self.client = None;
    }
}

/// What a batch stored that the rollups count.
#[derive(Default)]
struct Written {
    /// Events stored (not those judged twice), in order.
    events: Vec<Uuid>,
    /// Copies stored.
    copies: Vec<Uuid>,
}

impl Written {
    fn append(&mut self, other: Written) {
        self.events.extend(other.events);
        self.copies.extend(other.copies);
    }
}

/// The batch in one transaction, the hits in one statement (also
/// `trackrelay migrate-storage`'s way in: postgres/import.rs).
pub(super) async fn write_all(
    client: &mut Client,
    batch: &[&Record],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let hits: Vec<&Observation> = batch
        .iter()
        .filter_map(|r| match r {
            Record::Observation(o) => Some(&**o),
            _ => None,
        })
        .collect();
    // Independent statements: sent together, pipelined on the connection
    // (the hit path waits for one round trip, not two).
    tokio::try_join!(
        observations::insert_all(&tx, &hits),
        addresses::add(&tx, &hits)
    )?;
    let mut written = Written::default();
    for record in batch {
        write_one(&tx, record, &mut written).await?;
    }
    rollups::add_written(&tx, &written.events, &written.copies).await?;
    feed::append(&tx, &written.events).await?;
    tx.commit().await
}

/// The batch again, each record under its own savepoint: the refused ones
/// are rolled back and reported, the rest committed.
async fn write_each(
    client: &mut Client,
    batch: &[&Record],
) -> Result<Vec<(usize, String)>, tokio_postgres::Error> {
    let mut tx = client.transaction().await?;
    let mut refused = Vec::new();
    let mut written = Written::default();
    let mut hits = Vec::new();
    for (i, record) in batch.iter().enumerate() {
        let sp = tx.savepoint("record").await?;
        let mut mine = Written::default();
        let result = match record {
            Record::Observation(o) => observations::insert_all(&sp, &[&**o]).await,
            other => write_one(&sp, other, &mut mine).await,
        };
        match result {
            Ok(()) => {
                sp.commit().await?;
                written.append(mine);
                if let Record::Observation(o) = record {
                    hits.push(&**o);
                }
            }
            // Dropping the savepoint rolls it back.
            Err(e) if is_permanent(&e) => refused.push((i, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    addresses::add(&tx, &hits).await?;
    rollups::add_written(&tx, &written.events, &written.copies).await?;
    feed::append(&tx, &written.events).await?;
    tx.commit().await?;
    Ok(refused)
}

/// One record other than a hit (hits go in one statement); notes in
/// `written` what the rollups count.
async fn write_one(
    client: &impl GenericClient,
    record: &Record,
    written: &mut Written,
) -> Result<(), tokio_postgres::Error> {
    match record {
        Record::Observation(_) => Ok(()),
        Record::Relayed(c) => {
            messages::insert(client, c).await?;
            written.copies.push(c.id);
            Ok(())
        }
        Record::Event(e) => {
            if events::insert(client, e).await? {
                written.events.push(e.id);
            }
            Ok(())
        }
        Record::Webhook(w) => {
            if webhooks::write(client, w).await? {
                match &**w {
                    WebhookWrite::Event(e, _) => written.events.push(e.id),
                    WebhookWrite::Relayed(c, _) => written.copies.push(c.id),
                    _ => {}
                }
            }
            Ok(())
        }
        Record::RouteOverride(o) => routes::write(client, o).await,
        Record::TrackingDomains(d) => routes::seen(client, d).await,
        Record::Idempotent(r, keep_ms) => sending::write_idempotent(client, r, *keep_ms).await,
        Record::Metadata(m) => sending::write_metadata(client, m).await,
    }
}

/// Errors retrying cannot fix: the row itself is wrong (SQLSTATE classes
/// 22 data exception and 23 integrity constraint violation).
fn is_permanent(e: &tokio_postgres::Error) -> bool {
    e.code()
        .map(SqlState::code)
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}
