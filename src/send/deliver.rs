//! One built email through the SMTP path: the route, then the same
//! upstream transaction an SMTP session mirrors (MAIL, each RCPT) and
//! [`Relay::deliver`] for rewriting, per-recipient copies, the upstream's
//! reply and the records. Only the dialogue differs: the recipients are
//! all known up front, so one refused RCPT fails the whole email before
//! anything is sent (the API has no per-recipient answer).

use std::net::IpAddr;

use crate::config::{Envelope, Route};
use crate::relay::{Relay, Trace, Transaction};
use crate::smtp::Reply;
use crate::upstream::MailParams;

use super::build::Built;
use super::reply::SendError;

/// Relays `built` through `route`; `Ok` once the upstream accepted it.
pub async fn send(
    relay: &Relay,
    route: Route,
    built: Built,
    peer: IpAddr,
) -> Result<(), SendError> {
    let Built {
        sender,
        recipients,
        bytes,
        metadata,
        ..
    } = built;
    let params = MailParams {
        body_8bitmime: false,
        // mail-builder writes 7-bit bodies; an address may still be UTF-8.
        smtputf8: !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
        size: Some(bytes.len() as u64),
    };
    let (mut upstream, reply) = relay
        .upstream
        .begin(&sender, params)
        .await
        .map_err(|e| SendError::Unavailable(e.to_string()))?;
    if !reply.is_positive() {
        relay.upstream.release(upstream).await;
        return Err(refusal(&reply));
    }
    for r in &recipients {
        let reply = upstream
            .rcpt_to(r)
            .await
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        if !reply.is_positive() {
            // Nothing was sent: the connection is clean after RSET.
            if upstream.rset().await.is_ok() {
                relay.upstream.release(upstream).await;
            }
            return Err(refusal(&Reply {
                text: format!("{r}: {}", reply.text),
                ..reply
            }));
        }
    }
    let txn = Transaction {
        sender,
        params,
        route,
        recipients,
        upstream,
        trace: Trace {
            helo: "send-api".into(),
            peer: peer.to_canonical().to_string(),
            protocol: "HTTP",
        },
        metadata,
    };
    let mut message = relay.message_buffer(&txn);
    message.extend_from_slice(&bytes);
    let reply = relay.deliver(txn, message).await;
    if reply.is_positive() {
        Ok(())
    } else {
        Err(refusal(&reply))
    }
}

/// The route for a sender when the request names none and the token
/// allows any: as for SMTP, by envelope (no AUTH user).
pub fn select_by_envelope(relay: &Relay, sender: &str, peer: IpAddr) -> Route {
    relay.select_route(&Envelope {
        auth_user: None,
        sender,
        client_ip: peer.to_canonical(),
    })
}

/// A negative reply: temporary (4xx) → 503, permanent → 422.
fn refusal(reply: &Reply) -> SendError {
    if reply.is_transient() {
        SendError::Unavailable(reply.to_string())
    } else {
        SendError::Refused(reply.to_string())
    }
}
