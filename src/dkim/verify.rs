//! Checking every DKIM signature of a message (`trackrelay dkim verify`):
//! against given key records (no network), or, when asked, against DNS.
//! Verification is `mail-auth`'s; given records are fed to it as its TXT
//! cache, so a lookup for a known name never leaves the process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

/// Key records by name (`selector._domainkey.domain`).
#[derive(Default)]
pub struct Records(HashMap<String, Txt>);

impl Records {
    /// Adds the TXT record (`v=DKIM1; k=…; p=…`) of `selector` at `domain`.
    pub fn add(&mut self, domain: &str, selector: &str, txt: &str) -> Result<(), String> {
        let key = DomainKey::parse(txt.trim().trim_matches('"').as_bytes())
            .map_err(|e| format!("not a DKIM key record: {e}"))?;
        let name = format!("{selector}._domainkey.{}.", domain.trim_end_matches('.'));
        self.0
            .insert(name.to_ascii_lowercase(), Txt::DomainKey(Arc::new(key)));
        Ok(())
    }
}

impl ResolverCache<String, Txt> for Records {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        String: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: String, _: Txt, _: Instant) {}
}

/// One signature's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub domain: String,
    pub selector: String,
    /// `pass`, or `fail`/`neutral`/`permerror`/`temperror` with the reason.
    pub result: String,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }
}

/// Verifies every signature of `message`. A name missing from `records` is
/// looked up in DNS only when `dns` is true; otherwise it is a permerror.
pub async fn verify(message: &[u8], records: &Records, dns: bool) -> Result<Vec<Verdict>, String> {
    let parsed = AuthenticatedMessage::parse(message).ok_or("cannot parse the message")?;
    let resolver = if dns {
        MessageAuthenticator::new_system_conf().map_err(|e| format!("DNS resolver: {e}"))?
    } else {
        // Never asked: every record comes from `records`, and a missing
        // one fails below before any lookup.
        MessageAuthenticator::new_cloudflare().map_err(|e| format!("resolver: {e}"))?
    };
    let mut verdicts = Vec::new();
    for header in &parsed.dkim_headers {
        let (domain, selector) = match &header.header {
            Ok(s) => (s.d.clone(), s.s.clone()),
            Err(_) => (String::new(), String::new()),
        };
        let name = format!("{selector}._domainkey.{domain}.").to_ascii_lowercase();
        if !dns && header.header.is_ok() && records.get(name.as_str()).is_none() {
            verdicts.push(Verdict {
                domain,
                selector,
                result: "permerror (no key given for this selector and domain)".into(),
            });
            continue;
        }
        let one = AuthenticatedMessage {
            dkim_headers: vec![header.clone()],
            ..parsed.clone()
        };
        let outputs = resolver
            .verify_dkim(Parameters::new(&one).with_txt_cache(records))
            .await;
        let result = outputs
            .first()
            .map_or("none".into(), |o| describe(o.result()));
        verdicts.push(Verdict {
            domain,
            selector,
            result,
        });
    }
    Ok(verdicts)
}

fn describe(result: &DkimResult) -> String {
    match result {
        DkimResult::Pass => "pass".into(),
        DkimResult::Neutral(e) => format!("neutral ({e})"),
        DkimResult::Fail(e) => format!("fail ({e})"),
        DkimResult::PermError(e) => format!("permerror ({e})"),
        DkimResult::TempError(e) => format!("temperror ({e})"),
        DkimResult::None => "none".into(),
    }
}
