//! `route_overrides` and `tracking_domains` on PostgreSQL (what they hold:
//! storage/routes.rs). Every node reads them back (`crate::routes`), so a
//! change made through one node's API reaches the others.

use tokio_postgres::GenericClient;

use crate::storage::{DomainsSeen, KnownDomain, RouteOverride, StorageError};

/// Stores `o`, or removes the route's row when it sets nothing.
pub(super) async fn write(
    client: &impl GenericClient,
    o: &RouteOverride,
) -> Result<(), tokio_postgres::Error> {
    if o.is_empty() {
        client
            .execute("DELETE FROM route_overrides WHERE route = $1", &[&o.route])
            .await?;
        return Ok(());
    }
    client
        .execute(
            "INSERT INTO route_overrides (route, track_opens, track_clicks, updated_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (route) DO UPDATE SET track_opens = excluded.track_opens,
                 track_clicks = excluded.track_clicks, updated_at_ms = excluded.updated_at_ms",
            &[&o.route, &o.track_opens, &o.track_clicks, &o.updated_at_ms],
        )
        .await?;
    Ok(())
}

/// Every stored override, by route id.
pub(super) async fn all(client: &impl GenericClient) -> Result<Vec<RouteOverride>, StorageError> {
    let rows = client
        .query(
            "SELECT route, track_opens, track_clicks, updated_at_ms FROM route_overrides
             ORDER BY route",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RouteOverride {
                route: r.try_get(0)?,
                track_opens: r.try_get(1)?,
                track_clicks: r.try_get(2)?,
                updated_at_ms: r.try_get(3)?,
            })
        })
        .collect()
}

/// Moves each domain's `last_configured_ms` up to `d.at_ms`, never back.
pub(super) async fn seen(
    client: &impl GenericClient,
    d: &DomainsSeen,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO tracking_domains (url, last_configured_ms)
             SELECT u, $2 FROM unnest($1::text[]) u
             ON CONFLICT (url) DO UPDATE SET last_configured_ms =
                 greatest(tracking_domains.last_configured_ms, excluded.last_configured_ms)",
            &[&d.urls, &d.at_ms],
        )
        .await?;
    Ok(())
}

/// Every tracking domain ever configured, by URL.
pub(super) async fn domains(client: &impl GenericClient) -> Result<Vec<KnownDomain>, StorageError> {
    let rows = client
        .query(
            "SELECT url, last_configured_ms FROM tracking_domains ORDER BY url",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(KnownDomain {
                url: r.try_get(0)?,
                last_configured_ms: r.try_get(1)?,
            })
        })
        .collect()
}
