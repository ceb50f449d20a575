//! The `route_overrides` table: route settings changed at run time through
//! `PATCH /v1/routes/{id}` (SPEC §2). A row holds only what the API set;
//! a NULL column leaves the config's value in force. A row with nothing
//! left set is deleted.
//!
//! And the `tracking_domains` table: each tracking domain (base URL) a
//! node was configured with, and when last, so that links already sent on
//! a domain the config dropped keep answering (`crate::routes`).

use rusqlite::{Connection, params};

use super::StorageError;

/// The run-time settings of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOverride {
    pub route: String,
    /// `None`: the config's `track_opens` stands.
    pub track_opens: Option<bool>,
    /// `None`: the config's `track_clicks` stands.
    pub track_clicks: Option<bool>,
    /// When the API last changed it, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

impl RouteOverride {
    /// True when it sets nothing (the config's settings stand).
    pub fn is_empty(&self) -> bool {
        self.track_opens.is_none() && self.track_clicks.is_none()
    }
}

/// Stores `o` (inside the writer's transaction), or removes the route's
/// row when `o` sets nothing.
pub(super) fn write(conn: &Connection, o: &RouteOverride) -> rusqlite::Result<()> {
    if o.is_empty() {
        conn.prepare_cached("DELETE FROM route_overrides WHERE route = ?1")?
            .execute([&o.route])?;
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO route_overrides (route, track_opens, track_clicks, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (route) DO UPDATE SET track_opens = excluded.track_opens,
             track_clicks = excluded.track_clicks, updated_at_ms = excluded.updated_at_ms",
    )?
    .execute(params![
        o.route,
        o.track_opens,
        o.track_clicks,
        o.updated_at_ms
    ])?;
    Ok(())
}

/// Every stored override, by route id.
pub(super) fn all(conn: &Connection) -> Result<Vec<RouteOverride>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT route, track_opens, track_clicks, updated_at_ms FROM route_overrides ORDER BY route",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RouteOverride {
            route: r.get(0)?,
            track_opens: r.get(1)?,
            track_clicks: r.get(2)?,
            updated_at_ms: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tracking domains configured at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainsSeen {
    /// Base URLs, as `Url::as_str` writes them.
    pub urls: Vec<String>,
    /// When they were configured, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A tracking domain and when it was last configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDomain {
    pub url: String,
    pub last_configured_ms: i64,
}

/// Moves each domain's `last_configured_ms` up to `d.at_ms` (never back:
/// another node may have written a later time).
pub(super) fn seen(conn: &Connection, d: &DomainsSeen) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO tracking_domains (url, last_configured_ms) VALUES (?1, ?2)
         ON CONFLICT (url) DO UPDATE SET last_configured_ms =
             max(last_configured_ms, excluded.last_configured_ms)",
    )?;
    for url in &d.urls {
        stmt.execute(params![url, d.at_ms])?;
    }
    Ok(())
}

/// Every tracking domain ever configured, by URL.
pub(super) fn domains(conn: &Connection) -> Result<Vec<KnownDomain>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT url, last_configured_ms FROM tracking_domains ORDER BY url")?;
    let rows = stmt.query_map([], |r| {
        Ok(KnownDomain {
            url: r.get(0)?,
            last_configured_ms: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
