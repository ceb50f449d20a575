//! Leases on work one node at a time does (the classification pipeline):
//! one row per kind of work in `work_leases` (migration 4) with its holder,
//! until when it holds it, and the work's checkpoint.
//!
//! A holder renews its lease before each round of work and stores its
//! checkpoint with it; another node takes the lease only once it has run
//! out, and continues from the stored checkpoint. Times are the database's
//! clock (`clock_timestamp()`), so nodes whose clocks disagree still agree
//! on when a lease ends. A row of its own, not columns on the work's
//! tables: the lease is about the work, and those tables are partitioned.

use tokio_postgres::GenericClient;

use crate::storage::StorageError;

/// The database's clock in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// A node asking for (or keeping) a lease.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The work: one lease per name.
    pub name: &'a str,
    /// Who asks: unique per process.
    pub holder: &'a str,
    /// How long the lease lasts from now if granted.
    pub lease_ms: i64,
    /// The holder's checkpoint to store (kept as it is when `None`); never
    /// stored by a node that takes the lease over.
    pub cursor_ms: Option<i64>,
}

/// A lease granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// The checkpoint stored with the lease, if any.
    pub cursor_ms: Option<i64>,
    /// Who held it before this claim (the claimant itself when renewing;
    /// `None` for the first claim ever).
    pub previous: Option<String>,
}

/// Grants `c` the lease when it holds it already, nobody does, or its
/// holder's lease ran out; `None` while another node holds it.
pub(super) async fn claim(
    client: &impl GenericClient,
    c: &Claim<'_>,
) -> Result<Option<Held>, StorageError> {
    let sql = format!(
        "WITH before AS (SELECT holder FROM work_leases WHERE name = $1)
         INSERT INTO work_leases AS l (name, holder, lease_until_ms, cursor_ms)
         VALUES ($1, $2, {NOW_MS} + $3, $4)
         ON CONFLICT (name) DO UPDATE SET
             holder = excluded.holder,
             lease_until_ms = excluded.lease_until_ms,
             cursor_ms = CASE WHEN l.holder = excluded.holder
                              THEN coalesce(excluded.cursor_ms, l.cursor_ms)
                              ELSE l.cursor_ms END
           WHERE l.holder = excluded.holder OR l.lease_until_ms < {NOW_MS}
         RETURNING l.cursor_ms, (SELECT holder FROM before)"
    );
    let row = client
        .query_opt(&sql, &[&c.name, &c.holder, &c.lease_ms, &c.cursor_ms])
        .await?;
    Ok(row.map(|r| Held {
        cursor_ms: r.get(0),
        previous: r.get(1),
    }))
}

/// Ends `holder`'s lease on `name` now, if it has it.
pub(super) async fn release(
    client: &impl GenericClient,
    name: &str,
    holder: &str,
) -> Result<(), StorageError> {
    client
        .execute(
            "UPDATE work_leases SET lease_until_ms = 0 WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
    Ok(())
}
