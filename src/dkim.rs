//! DKIM: re-signing the copies we rewrite (issue 20, docs/dkim.md).
//!
//! A rewrite changes the body, so a signature made before it fails. This
//! module owns the two decisions around [`crate::rewrite::rewrite`]:
//!
//! - before it, [`rewrite_settings`]: a message signed only by domains we
//!   hold a key for may be rewritten (we re-sign it); one carrying another
//!   domain's signature keeps the route's rule (`rewrite_dkim_signed`);
//! - after it, [`sign`]: a rewritten copy (or any copy, with the route's
//!   `dkim_sign`) loses the signatures the rewrite broke and gets ours,
//!   made with the key of the From domain (exact, else the closest parent
//!   domain we hold a key for: `d=example.com` for `news.example.com`
//!   still aligns under DMARC's default relaxed alignment). When we hold
//!   none for it, the Sender domain's key, then the Return-Path's: such a
//!   signature does not align with From for DMARC, but a valid signature
//!   of a known domain still builds its reputation, unlike none.
//!
//! Canonicalization and signing are `mail-auth`'s; the header scan here
//! only finds field boundaries and the `d=` tag. No I/O.

pub mod header;
pub mod keys;
pub mod verify;

use std::borrow::Cow;

pub use keys::Key;

use crate::rewrite::{Outcome, Request, RouteSettings};

/// The signing keys of `[[dkim.keys]]`, in config order.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    pub fn new(keys: Vec<Key>) -> Self {
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when we hold a key for exactly this `d=` domain.
    pub fn holds(&self, domain: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.domain.eq_ignore_ascii_case(domain))
    }

    /// The key for a From domain: the exact domain first, then the
    /// closest parent domain (organizational alignment, RFC 7489 §3.1.1).
    pub fn for_from_domain(&self, domain: &str) -> Option<&Key> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        loop {
            if let Some(k) = self.keys.iter().find(|k| k.domain == candidate) {
                return Some(k);
            }
            // Never a top-level domain on its own.
            let (_, parent) = candidate.split_once('.')?;
            if !parent.contains('.') {
                return None;
            }
            candidate = parent;
        }
    }
}

/// [`crate::rewrite::rewrite`] with the DKIM steps around it: what the
/// relay, the milter and `trackrelay rewrite` send.
pub fn rewrite(keys: &Keys, message: &[u8], request: &Request<'_>) -> Outcome {
    let settings = rewrite_settings(keys, message, request.settings);
    let request = Request {
        settings: &settings,
        ..*request
    };
    let mut outcome = crate::rewrite::rewrite(message, &request);
    sign(keys, message, &mut outcome, &settings);
    outcome
}

/// The route settings the rewrite runs with: a message whose every
/// signature is ours (and whose From domain we can sign for) may be
/// rewritten, since [`sign`] replaces those signatures.
pub fn rewrite_settings<'a>(
    keys: &Keys,
    message: &[u8],
    settings: &'a RouteSettings,
) -> Cow<'a, RouteSettings> {
    if settings.rewrite_dkim_signed || keys.is_empty() {
        return Cow::Borrowed(settings);
    }
    let domains = header::signature_domains(message);
    let ours = !domains.is_empty() && domains.iter().all(|d| keys.holds(d));
    let signable = signer(keys, message).is_some();
    if ours && signable {
        Cow::Owned(RouteSettings {
            rewrite_dkim_signed: true,
            ..settings.clone()
        })
    } else {
        Cow::Borrowed(settings)
    }
}

/// The key to sign `message` with and the field whose domain chose it:
/// From, else Sender, else Return-Path ([`header::signer_domains`]).
fn signer<'k>(keys: &'k Keys, message: &[u8]) -> Option<(&'static str, &'k Key)> {
    header::signer_domains(message)
        .into_iter()
        .find_map(|(field, domain)| Some((field, keys.for_from_domain(&domain)?)))
}

/// Signs the rewritten copy when it changed (or always, with the route's
/// `dkim_sign`), and says in `report.dkim` what was done or why not.
///
/// A changed copy loses every incoming signature (each one is broken now:
/// ours are replaced, a foreign one is only here because the route says
/// `rewrite_dkim_signed`, and a failing signature is worse than none). An
/// unchanged copy keeps the foreign signatures, which still verify.
pub fn sign(keys: &Keys, original: &[u8], outcome: &mut Outcome, settings: &RouteSettings) {
    let changed = outcome.message != original;
    if !changed && !settings.dkim_sign {
        return;
    }
    if changed && !header::signature_domains(&outcome.message).is_empty() {
        outcome.message = header::strip_signatures(&outcome.message, |_| true);
    }
    if keys.is_empty() {
        if settings.dkim_sign {
            outcome.report.dkim = Some("unsigned: no [[dkim.keys]]".into());
        }
        return;
    }
    let Some((field, key)) = signer(keys, &outcome.message) else {
        outcome.report.dkim = Some(match header::from_domain(&outcome.message) {
            Some(from) => format!("unsigned: no key for {from} (nor Sender, Return-Path)"),
            None => "unsigned: no From domain".into(),
        });
        return;
    };
    let stripped = header::strip_signatures(&outcome.message, |d| keys.holds(d));
    match key.sign(&stripped) {
        Ok(signature) => {
            let mut signed = Vec::with_capacity(signature.len() + stripped.len());
            signed.extend_from_slice(&header::line_endings_like(signature, &stripped));
            signed.extend_from_slice(&stripped);
            outcome.message = signed;
            let by = if field == "From" {
                String::new()
            } else {
                format!(" by {field}")
            };
            outcome.report.dkim = Some(format!("signed d={} s={}{by}", key.domain, key.selector));
        }
        Err(e) => {
            tracing::warn!(key = %key.path.display(), error = %e, "dkim signing failed");
            outcome.report.dkim = Some(format!("unsigned: {e}"));
        }
    }
}
