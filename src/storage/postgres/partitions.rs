//! Time partitions of `observations` and `events` on PostgreSQL: one range
//! partition of `at_ms` per UTC month (`observations_p202612`), and a
//! DEFAULT partition for any row no month holds (a clock far off, a month
//! not made yet, rows imported from long ago), so no hit is ever refused
//! for its time. Retention drops the months wholly past its deletion
//! horizon instead of deleting their rows (docs/scaling.md says why
//! monthly, and what stays row by row).
//!
//! One SQL function makes a month's partition, `trackrelay_month_partition`
//! ([`MIGRATION`]), used by the migration itself and by every node: under
//! an advisory lock, the month's table is created beside its parent, that
//! month's rows are moved out of the default partition, and the table is
//! attached. ATTACH takes SHARE UPDATE EXCLUSIVE on the parent, which the
//! writers' inserts do not wait for; only the default partition (kept
//! nearly empty by [`tidy`]) is locked while it is checked.
//!
//! Dropping a month takes ACCESS EXCLUSIVE on its parent, which waits for
//! the writers' open transactions and holds new ones back meanwhile; so a
//! drop waits at most [`DROP_LOCK_TIMEOUT`], and when it cannot have the
//! lock the month's rows are deleted row by row instead (the caller's
//! next step), the empty table dropped at a later pass. A month of events
//! leaves the hourly rollups in the transaction that drops it. A hit written
//! while its month is dropped is either dropped with it (committed
//! before: it was past the horizon) or lands in the default partition.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::storage::StorageError;

/// The partitioned tables.
pub(super) const TABLES: [&str; 2] = ["observations", "events"];

/// How long dropping a partition may hold the writers back.
const DROP_LOCK_TIMEOUT: &str = "1s";

/// The migration turning both tables into partitioned ones, their rows,
/// indexes and triggers kept (`trackrelay_partition_by_month`; unique keys
/// must hold the partition key, so the primary keys become `(id, at_ms)`).
/// It works on whatever the tables are when it runs, so indexes and
/// triggers added by earlier migrations come along.
///
/// `(id, at_ms)` is as exact as `id` was: an observation's id and time
/// are both taken when the hit is answered, and its event carries the
/// hit's id and time (`crate::events`), so the same hit always has the same
/// pair and a hit judged twice still meets `ON CONFLICT (id, at_ms)`.
pub(super) const MIGRATION: &str = r#"
    -- The first millisecond of the UTC month holding `at_ms`, `months` later.
    CREATE FUNCTION trackrelay_month_start(at_ms bigint, months integer DEFAULT 0)
    RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS $$
        SELECT (extract(epoch FROM date_trunc('month', to_timestamp(at_ms / 1000.0)
                                               AT TIME ZONE 'UTC')
                       + make_interval(months => months)) * 1000)::bigint
    $$;

    -- The partition of `parent` for the month of `at_ms`, made unless it
    -- exists: created beside the parent, the month's rows moved out of the
    -- default partition (locked against new ones meanwhile), attached.
    -- One caller at a time (the advisory lock "trackpar"); waits for a
    -- lock at most 5 s, then fails and is tried again later.
    CREATE FUNCTION trackrelay_month_partition(parent text, at_ms bigint)
    RETURNS text LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
    DECLARE
        low  bigint := trackrelay_month_start(at_ms);
        high bigint := trackrelay_month_start(at_ms, 1);
        part text := parent || '_p'
                     || to_char(to_timestamp(low / 1000) AT TIME ZONE 'UTC', 'YYYYMM');
    BEGIN
        PERFORM pg_advisory_xact_lock(8390876135376839026);
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', parent || '_default');
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           part, parent);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE at_ms >= %s AND at_ms < %s
                                           RETURNING *)
                            INSERT INTO %I SELECT * FROM moved',
                           parent || '_default', low, high, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                           parent, part, low, high);
        END IF;
        RETURN part;
    END $$;

    -- Turns `parent` into a table partitioned by month of `at_ms`, in
    -- place: renamed, the new table created under its name with the same
    -- columns, its primary key `(id, at_ms)`, the old table's other
    -- indexes made again under their names, a partition made for each
    -- month (1970 to next month) holding rows, the rows copied, then the
    -- old table's triggers made again (after the copy: copied rows are
    -- not new), the old table dropped. A unique index other than the
    -- primary key cannot be carried (it would need `at_ms`): it stops the
    -- migration, naming it.
    CREATE FUNCTION trackrelay_partition_by_month(parent text)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        old      text := parent || '_unpartitioned';
        on_new   text := ' ON ' || quote_ident(parent) || ' ';
        indexes  text[];
        triggers text[];
        item     text;
    BEGIN
        EXECUTE format('ALTER TABLE %I RENAME TO %I', parent, old);
        SELECT coalesce(array_agg(pg_get_indexdef(indexrelid)), '{}') INTO indexes
        FROM pg_index WHERE indrelid = old::regclass AND NOT indisprimary;
        SELECT coalesce(array_agg(pg_get_triggerdef(oid)), '{}') INTO triggers
        FROM pg_trigger WHERE tgrelid = old::regclass AND NOT tgisinternal;
        -- Their names are wanted for the new table's.
        FOR item IN SELECT indexrelid::regclass::text FROM pg_index
                    WHERE indrelid = old::regclass AND NOT indisprimary LOOP
            EXECUTE 'DROP INDEX ' || item;
        END LOOP;
        FOR item IN SELECT conname FROM pg_constraint
                    WHERE conrelid = old::regclass AND contype = 'p' LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', old, item);
        END LOOP;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                                         PRIMARY KEY (id, at_ms))
                        PARTITION BY RANGE (at_ms)', parent, old);
        FOREACH item IN ARRAY indexes LOOP
            EXECUTE regexp_replace(item, ' ON (ONLY )?\S+ ', on_new);
        END LOOP;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', parent || '_default', parent);
        EXECUTE format(
            'SELECT trackrelay_month_partition(%L, month)
             FROM (SELECT DISTINCT trackrelay_month_start(at_ms) AS month FROM %I
                   WHERE at_ms >= 0 AND at_ms < trackrelay_month_start(
                             (extract(epoch FROM now()) * 1000)::bigint, 2)) months',
            parent, old);
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', parent, old);
        FOREACH item IN ARRAY triggers LOOP
            EXECUTE regexp_replace(item, ' ON \S+ ', on_new);
        END LOOP;
        EXECUTE format('DROP TABLE %I', old);
    END $$;

    SELECT trackrelay_partition_by_month('observations');
    SELECT trackrelay_partition_by_month('events');
    DROP FUNCTION trackrelay_partition_by_month(text);
"#;

/// Makes this month's and next month's partitions of both tables (as of
/// `now_ms`), each in its own short transaction.
pub(super) async fn ensure(client: &Client, now_ms: i64) -> Result<(), tokio_postgres::Error> {
    for table in TABLES {
        for months in [0, 1] {
            client
                .execute(
                    "SELECT trackrelay_month_partition($1, trackrelay_month_start($2, $3))",
                    &[&table, &now_ms, &months],
                )
                .await?;
        }
    }
    Ok(())
}

/// Moves the rows of the default partitions from `from_ms` to the end of
/// next month into their months' partitions (made as needed): rows
/// imported, or written while their month did not exist. Rows before
/// `from_ms` stay (retention deletes them), and so do rows of later months
/// (moved when their month is made).
pub(super) async fn tidy(client: &Client, from_ms: i64) -> Result<(), tokio_postgres::Error> {
    for table in TABLES {
        // `table` is one of our two names, never input.
        let months: Vec<i64> = client
            .query(
                &format!(
                    "SELECT DISTINCT trackrelay_month_start(at_ms) FROM {table}_default
                     WHERE at_ms >= greatest($1::bigint, 0)
                       AND at_ms < trackrelay_month_start(
                               (extract(epoch FROM now()) * 1000)::bigint, 2)"
                ),
                &[&from_ms],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for month in months {
            client
                .execute(
                    "SELECT trackrelay_month_partition($1, $2)",
                    &[&table, &month],
                )
                .await?;
        }
    }
    Ok(())
}

/// A month partition as the catalog has it.
#[derive(Debug, Clone)]
pub(super) struct Month {
    pub table: &'static str,
    pub name: String,
    /// Its bounds: `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The month partitions of `table` (not the default) whose every row is
/// before `before_ms`: their upper bound, read from the catalog, is at
/// most `before_ms`.
pub(super) async fn expired(
    client: &Client,
    table: &'static str,
    before_ms: i64,
) -> Result<Vec<Month>, tokio_postgres::Error> {
    let rows = client
        .query(
            r"SELECT name, from_ms, to_ms FROM (
                  SELECT c.relname::text AS name,
                         substring(pg_get_expr(c.relpartbound, c.oid)
                                   FROM 'FROM \(''(-?[0-9]+)''\)')::bigint AS from_ms,
                         substring(pg_get_expr(c.relpartbound, c.oid)
                                   FROM 'TO \(''(-?[0-9]+)''\)')::bigint AS to_ms
                  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = to_regclass($1)) p
              WHERE to_ms <= $2 AND from_ms IS NOT NULL
              ORDER BY name",
            &[&table, &before_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Month {
            table,
            name: r.get(0),
            from_ms: r.get(1),
            to_ms: r.get(2),
        })
        .collect())
}

/// Drops `month` with its rows; returns how many it held, or `None` when
/// the lock was not had in time (or a writer deadlocked with it): the
/// partition stays, for the row-by-row delete. A month of events leaves
/// the hourly rollups in the same transaction (rollups.rs), as deleted
/// events do.
pub(super) async fn drop_partition(
    client: &mut Client,
    month: &Month,
) -> Result<Option<u64>, StorageError> {
    let quoted = format!("\"{}\"", month.name.replace('"', "\"\""));
    let result: Result<u64, StorageError> = async {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}';
             LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"
        ))
        .await?;
        // Counted under the lock: no row comes or goes before the drop.
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
            .await?
            .get(0);
        if month.table == "events" {
            super::rollups::take_out_events_between(&tx, month.from_ms, month.to_ms).await?;
        }
        tx.batch_execute(&format!("DROP TABLE {quoted}")).await?;
        tx.commit().await?;
        Ok(rows.unsigned_abs())
    }
    .await;
    match result {
        Ok(rows) => Ok(Some(rows)),
        Err(StorageError::Postgres(e)) if is_lock_wait(&e) => {
            tracing::warn!(partition = %month.name, error = %e,
                "partition not dropped (busy); its rows are deleted instead");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A lock not had within `lock_timeout`, or a deadlock broken.
fn is_lock_wait(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}
