//! The operator's log: one typed function per event, one short structured
//! line each, always with the message (copy) id. Debug tracing lives in
//! spans elsewhere; this is what an operator greps.

use uuid::Uuid;

use crate::rewrite::Report;
use crate::smtp::Reply;
use crate::upstream::UpstreamError;

/// A copy the upstream answered (accepted or refused by its reply).
pub fn relayed(
    id: Uuid,
    route: &str,
    sender: &str,
    recipient: &str,
    reply: &Reply,
    report: &Report,
) {
    tracing::info!(
        target: "maillog",
        %id, route, from = sender, to = recipient,
        reply = %reply,
        opens = report.pixels > 0,
        links = report.links.len(),
        untracked = report.untracked_reason.unwrap_or("-"),
        tags = %report.tags.join(","),
        dkim = report.dkim.as_deref().unwrap_or("-"),
        "relayed"
    );
    crate::metrics::relayed(route, reply.class());
}

/// A per-recipient copy the upstream refused.
pub fn refused(id: Uuid, route: &str, recipient: &str, reply: &Reply) {
    tracing::warn!(target: "maillog", %id, route, to = recipient, reply = %reply, "refused");
    crate::metrics::relayed(route, reply.class());
}

/// The upstream broke off or could not be reached.
pub fn upstream_failed(id: Uuid, route: &str, error: &UpstreamError) {
    tracing::warn!(target: "maillog", %id, route, error = %error, "upstream failed; client told 4xx");
    crate::metrics::relayed(route, "4xx");
}

/// A DSN for refused copies, and what became of it.
pub fn dsn_sent(
    id: Uuid,
    route: &str,
    to: &str,
    recipients: usize,
    result: &Result<Reply, UpstreamError>,
) {
    match result {
        Ok(reply) => {
            tracing::info!(target: "maillog", %id, route, to, recipients, reply = %reply, "dsn sent")
        }
        Err(e) => {
            tracing::error!(target: "maillog", %id, route, to, recipients, error = %e, "dsn not sent")
        }
    }
}

/// A client refused at RCPT because it may not relay.
pub fn relay_denied(peer: &str, sender: &str, recipient: &str) {
    tracing::warn!(target: "maillog", peer, from = sender, to = recipient, "relay denied (5.7.1)");
}

/// A message the milter rewrote (or left as it was) and let the MTA go on
/// with: one line per message, all its recipients.
pub fn milter_rewritten(
    id: Uuid,
    queue_id: &str,
    route: &str,
    sender: &str,
    recipients: &[String],
    report: &Report,
) {
    tracing::info!(
        target: "maillog",
        %id, queue_id, route, from = sender, to = %recipients.join(","),
        opens = report.pixels > 0,
        links = report.links.len(),
        untracked = report.untracked_reason.unwrap_or("-"),
        tags = %report.tags.join(","),
        "milter: rewritten"
    );
    crate::metrics::relayed(route, "2xx");
}

/// A message the milter could not rewrite, and what the MTA was told
/// (`accepted unchanged`, `tempfail`, or left to its default action).
pub fn milter_failed(queue_id: &str, why: &str, answered: &str) {
    tracing::warn!(target: "maillog", queue_id, error = why, answered, "milter: not rewritten");
}
