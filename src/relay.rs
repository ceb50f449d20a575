//! One message end to end, once the client has sent it: route settings,
//! rewriting, one copy per recipient or one for all, the upstream's reply,
//! and a DSN when a later copy is refused after an earlier one was accepted.
//!
//! The promise (SPEC §1): the client hears 250 only after the upstream
//! accepted (every copy, or at least one with a DSN for the rest); any
//! upstream failure before that is a 4xx, so the client keeps the message.
//! The session (`inbound`) owns the SMTP dialogue; this module owns what
//! happens to the message.

mod dsn;
pub(crate) mod pool;
mod record;

use std::sync::Arc;

use uuid::Uuid;

use crate::config::{Config, Envelope, Route, RouteSettings};
use crate::maillog;
use crate::rewrite::{Outcome, Report, Request};
use crate::routes::Registry;
use crate::smtp::Reply;
use crate::storage::{CopyStatus, RelayedCopy, Storage};
use crate::upstream::{Connection, MailParams, Upstream};
use record::Recorder;

/// What the relay needs, shared by every session.
pub struct Relay {
    pub config: Arc<Config>,
    /// Where each relayed copy is recorded.
    records: Recorder,
    /// The routes in force (crate::routes).
    routes: Arc<Registry>,
    pub upstream: Upstream,
}

/// One client transaction: accepted so far by the upstream.
pub struct Transaction {
    pub sender: String,
    pub params: MailParams,
    pub route: Route,
    /// Recipients the upstream accepted, in order.
    pub recipients: Vec<String>,
    /// The mirrored upstream transaction (MAIL and RCPT already sent).
    pub upstream: Connection,
    /// Set when the session reads the message: for the Received field.
    pub trace: Trace,
    /// The sending API's `metadata` object, stored with each copy (SMTP:
    /// none; no `X-LM-*` header carries it, docs/send-api.md).
    pub metadata: Option<serde_json::Value>,
}

/// Who sent the message, for the Received field and logs.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub helo: String,
    pub peer: String,
    pub protocol: &'static str,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &self.upstream.describe())
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(config: Arc<Config>, storage: Storage, routes: Arc<Registry>) -> Self {
        let upstream = Upstream::new(
            config.upstream.clone(),
            config.limits.clone(),
            config.smtp.hostname.clone(),
        );
        Self {
            routes,
            config,
            records: Recorder::new(storage),
            upstream,
        }
    }

    /// Copies are stored with their webhook deliveries (`message.relayed`,
    /// `message.failed`) from `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Arc<crate::webhooks::Webhooks>) -> Self {
        self.records = self.records.with_webhooks(webhooks);
        self
    }

    /// The route for an envelope (a copy: later changes do not affect a
    /// transaction already under way).
    pub fn select_route(&self, envelope: &Envelope<'_>) -> Route {
        self.routes.snapshot().select(envelope).clone()
    }

    /// The buffer the client's message is read into, for [`Relay::deliver`]:
    /// it starts with the Received trace field (RFC 5321 §4.4) when the
    /// config adds one, so the message is not copied to prepend it.
    pub fn message_buffer(&self, txn: &Transaction) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(64 * 1024);
        if self.config.smtp.add_received {
            self.write_received(&txn.trace, &mut buffer);
        }
        buffer
    }

    /// Relays the message of `txn` (read into [`Relay::message_buffer`]);
    /// returns the reply for the client and gives the upstream connection
    /// back to the pool when it is healthy.
    pub async fn deliver(&self, mut txn: Transaction, message: Vec<u8>) -> Reply {
        // Shared with the rewrite pool's threads (moved, not copied).
        let message = Arc::new(message);
        let settings = &txn.route.settings;
        let split = settings.per_recipient && txn.recipients.len() > 1;
        // The first copy tells whether anything is tracked at all.
        let first_recipient = (settings.per_recipient || txn.recipients.len() == 1)
            .then(|| txn.recipients[0].clone());
        let first_id = Uuid::now_v7();
        let first = self
            .rewrite_off(&message, settings, first_id, first_recipient)
            .await;
        let tracked = first.report.pixels > 0 || !first.report.links.is_empty();
        let reply = if split && tracked {
            self.deliver_copies(&mut txn, &message, (first_id, first))
                .await
        } else {
            // Untracked mail goes through as one transaction, unchanged: the
            // first rewrite put no token in, so it serves every recipient.
            let mut outcome = first;
            if split {
                outcome.report.recipient_id = None;
            }
            self.deliver_one(&mut txn, first_id, outcome).await
        };
        // A broken connection is dropped, a healthy one goes back to the pool.
        if reply.upstream_ok {
            self.upstream.release(txn.upstream).await;
        }
        reply.reply
    }

    /// Rewrites one copy with the route's settings: the tokens carry `id`
    /// and `recipient` (`None`: message-level). The milter calls it too.
    pub(crate) fn rewrite(
        &self,
        message: &[u8],
        settings: &RouteSettings,
        id: Uuid,
        recipient: Option<&str>,
    ) -> Outcome {
        rewrite_copy(&self.config, message, settings, id, recipient)
    }

    /// [`Relay::rewrite`] on the rewrite pool (`pool`), off the async
    /// workers: a big message takes seconds of CPU.
    async fn rewrite_off(
        &self,
        message: &Arc<Vec<u8>>,
        settings: &RouteSettings,
        id: Uuid,
        recipient: Option<String>,
    ) -> Outcome {
        let (config, message, settings) = (self.config.clone(), message.clone(), settings.clone());
        pool::run(move || rewrite_copy(&config, &message, &settings, id, recipient.as_deref()))
            .await
    }

    /// One upstream transaction (the mirrored one) for all recipients.
    async fn deliver_one(&self, txn: &mut Transaction, id: Uuid, outcome: Outcome) -> Delivery {
        let Outcome { message, report } = outcome;
        let result = txn.upstream.data(message, id).await;
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                maillog::upstream_failed(id, &txn.route.id, &e);
                return Delivery::broken(Reply::upstream_unavailable(&e.to_string()));
            }
        };
        for recipient in &txn.recipients {
            maillog::relayed(id, &txn.route.id, &txn.sender, recipient, &reply, &report);
        }
        self.record(id, txn, &txn.recipients, &report, &reply);
        Delivery::ok(reply)
    }

    /// One upstream transaction per recipient, each copy with its own
    /// tokens. The mirrored transaction is reset first.
    async fn deliver_copies(
        &self,
        txn: &mut Transaction,
        message: &Arc<Vec<u8>>,
        first: (Uuid, Outcome),
    ) -> Delivery {
        if let Err(e) = txn.upstream.rset().await {
            return Delivery::broken(Reply::upstream_unavailable(&e.to_string()));
        }
        let recipients = txn.recipients.clone();
        let mut accepted: Option<Reply> = None;
        let mut refused: Vec<(String, Reply)> = Vec::new();
        let mut first = Some(first);
        for recipient in &recipients {
            let (id, outcome) = match first.take() {
                Some(f) => f,
                None => {
                    let id = Uuid::now_v7();
                    let to = Some(recipient.clone());
                    (
                        id,
                        self.rewrite_off(message, &txn.route.settings, id, to).await,
                    )
                }
            };
            let Outcome {
                message: copy,
                report,
            } = outcome;
            match self.send_copy(txn, recipient, id, copy).await {
                Ok(reply) if reply.is_positive() => {
                    maillog::relayed(id, &txn.route.id, &txn.sender, recipient, &reply, &report);
                    self.record(id, txn, std::slice::from_ref(recipient), &report, &reply);
                    accepted.get_or_insert(reply);
                }
                Ok(reply) => {
                    maillog::refused(id, &txn.route.id, recipient, &reply);
                    self.record(id, txn, std::slice::from_ref(recipient), &report, &reply);
                    refused.push((recipient.clone(), reply));
                }
                Err(e) if accepted.is_none() => {
                    maillog::upstream_failed(id, &txn.route.id, &e);
                    return Delivery::broken(Reply::upstream_unavailable(&e.to_string()));
                }
                Err(e) => {
                    // Earlier copies went out: we own the message now.
                    maillog::upstream_failed(id, &txn.route.id, &e);
                    refused.push((
                        recipient.clone(),
                        Reply::upstream_unavailable(&e.to_string()),
                    ));
                    break_remaining(&recipients, recipient, &mut refused, &e.to_string());
                    let reply = accepted.unwrap_or_else(|| Reply::ok("Ok"));
                    self.send_dsn(txn, &refused, message).await;
                    return Delivery::broken(reply);
                }
            }
        }
        let Some(reply) = accepted else {
            // Nothing went out: the client hears the first refusal as it is.
            return Delivery::ok(
                refused
                    .into_iter()
                    .next()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| Reply::internal("no copy")),
            );
        };
        if !refused.is_empty() {
            self.send_dsn(txn, &refused, message).await;
        }
        Delivery::ok(reply)
    }

    async fn send_copy(
        &self,
        txn: &mut Transaction,
        recipient: &str,
        id: Uuid,
        message: Vec<u8>,
    ) -> Result<Reply, crate::upstream::UpstreamError> {
        let reply = txn.upstream.mail_from(&txn.sender, txn.params).await?;
        if !reply.is_positive() {
            return Ok(reply);
        }
        let reply = txn.upstream.rcpt_to(recipient).await?;
        if !reply.is_positive() {
            txn.upstream.rset().await?;
            return Ok(reply);
        }
        txn.upstream.data(message, id).await
    }

    /// Tells the envelope sender which copies were refused (RFC 3464),
    /// through the upstream, on a fresh connection. A null sender gets none.
    async fn send_dsn(&self, txn: &Transaction, refused: &[(String, Reply)], message: &[u8]) {
        if txn.sender.is_empty() {
            return;
        }
        let dsn = dsn::build(&self.config.smtp.hostname, &txn.sender, refused, message);
        let id = Uuid::now_v7();
        let result = async {
            let (mut conn, r) = self.upstream.begin("", MailParams::default()).await?;
            if !r.is_positive() {
                self.upstream.release(conn).await;
                return Ok(r);
            }
            let r = conn.rcpt_to(&txn.sender).await?;
            if !r.is_positive() {
                return Ok(r);
            }
            let r = conn.data(dsn, id).await?;
            self.upstream.release(conn).await;
            Ok::<Reply, crate::upstream::UpstreamError>(r)
        }
        .await;
        maillog::dsn_sent(id, &txn.route.id, &txn.sender, refused.len(), &result);
    }

    /// Writes the Received trace field (RFC 5321 §4.4).
    fn write_received(&self, t: &Trace, out: &mut Vec<u8>) {
        use std::io::Write;
        let date = jiff::Zoned::now().strftime("%a, %d %b %Y %H:%M:%S %z");
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "Received: from {} ([{}])\r\n\tby {} (trackrelay) with {};\r\n\t{date}\r\n",
            if t.helo.is_empty() {
                "unknown"
            } else {
                &t.helo
            },
            // An address literal (RFC 5321 §4.1.3): IPv6 ones say so.
            if t.peer.contains(':') {
                format!("IPv6:{}", t.peer)
            } else {
                t.peer.clone()
            },
            self.config.smtp.hostname,
            t.protocol,
        );
    }
}

impl Relay {
    /// Records a copy the upstream answered, without holding up the client:
    /// it is handed to the writer with the others of the next few ms.
    fn record(
        &self,
        id: Uuid,
        txn: &Transaction,
        recipients: &[String],
        report: &Report,
        reply: &Reply,
    ) {
        let copy = CopyRecord {
            id,
            route: &txn.route.id,
            sender: &txn.sender,
            recipients,
            report,
        };
        let copy = self.relayed_copy(copy, reply.to_string(), reply.is_positive());
        self.records.record(copy, txn.metadata.clone());
    }

    /// Records one copy with the reply it got (`accepted`: relayed, else
    /// failed); the milter records its messages through this too.
    pub(crate) fn record_copy(&self, copy: CopyRecord<'_>, reply: String, accepted: bool) {
        let copy = self.relayed_copy(copy, reply, accepted);
        self.records.record(copy, None);
    }

    /// The stored form of a copy with the reply it got.
    fn relayed_copy(&self, copy: CopyRecord<'_>, reply: String, accepted: bool) -> RelayedCopy {
        let CopyRecord {
            id,
            route,
            sender,
            recipients,
            report,
        } = copy;
        RelayedCopy {
            id,
            route: route.to_owned(),
            sender: sender.to_owned(),
            recipients: recipients.to_vec(),
            recipient_id: report.recipient_id.clone(),
            message_id_header: report.message_id_header.clone(),
            tags: report.tags.clone(),
            links: report.links.clone(),
            relayed_at_ms: crate::time::now_ms(),
            upstream_reply: reply,
            status: if accepted {
                CopyStatus::Relayed
            } else {
                CopyStatus::Failed
            },
        }
    }

    /// Hands the copies still gathering to storage (at shutdown, once the
    /// sessions have ended).
    pub async fn flush_records(&self) {
        self.records.flush().await;
    }
}

/// One copy to record: its id, route, envelope and what the rewrite did.
pub(crate) struct CopyRecord<'a> {
    pub id: Uuid,
    pub route: &'a str,
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub report: &'a Report,
}

/// The client's reply, and whether the upstream connection can be reused.
struct Delivery {
    reply: Reply,
    upstream_ok: bool,
}

impl Delivery {
    fn ok(reply: Reply) -> Self {
        Self {
            reply,
            upstream_ok: true,
        }
    }

    fn broken(reply: Reply) -> Self {
        Self {
            reply,
            upstream_ok: false,
        }
    }
}

/// Rewrites one copy of `message` for `config`'s tracking settings (the
/// tokens carry `id` and `recipient`). The debug line says which thread
/// did it: the rewrite pool's, not an async worker.
fn rewrite_copy(
    config: &Config,
    message: &[u8],
    settings: &RouteSettings,
    id: Uuid,
    recipient: Option<&str>,
) -> Outcome {
    let sent_at = crate::time::now_secs();
    let expires_at = sent_at.saturating_add(config.tracking.token_ttl.as_secs());
    let request = Request {
        settings,
        base_url: config.tracking_base(settings),
        keys: &config.tracking.keys,
        message_id: id,
        recipient,
        expires_at: u32::try_from(expires_at).unwrap_or(u32::MAX),
    };
    // DKIM in the same job: the copy is signed after the rewrite.
    let outcome = crate::dkim::rewrite(&config.dkim, message, &request);
    tracing::debug!(%id, bytes = message.len(), links = outcome.report.links.len(),
        thread = %pool::thread_name(), "copy rewritten");
    outcome
}

/// After a broken connection, the remaining recipients were not sent either.
fn break_remaining(all: &[String], failed: &str, refused: &mut Vec<(String, Reply)>, why: &str) {
    let rest = all.iter().skip_while(|r| *r != failed).skip(1);
    for r in rest {
        refused.push((r.clone(), Reply::upstream_unavailable(why)));
    }
}
