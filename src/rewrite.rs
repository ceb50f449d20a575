//! One message in, the message to relay out: the rewriting policy.
//!
//! Decides what to track (route settings, `X-LM-*` overrides, the DKIM
//! rule), signs the tokens, and drives `mime` (parsing, which parts,
//! decoding and encoding them, splicing) and `html` (pixel and links) over
//! each HTML part. The relay, the milter and `trackrelay rewrite` all call
//! [`rewrite`], so they do the same thing. No MIME or encoding code here.
//!
//! Never fails: a message or part that cannot be handled safely is relayed
//! as it came (minus our `X-LM-*` headers), and the [`Report`] says why.

pub mod overrides;
mod settings;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mail_parser::HeaderName;
use url::Url;
use uuid::Uuid;

use crate::html::{self, Plan};
use crate::mime::{self, Edited, HtmlPart, PartSkip, Splice};
use crate::token::{Claims, KeyRing, Kind};
pub use settings::RouteSettings;

/// Everything one rewrite needs besides the message.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub settings: &'a RouteSettings,
    /// Base of tracking URLs (the route's tracking domain or the default).
    pub base_url: &'a Url,
    pub keys: &'a KeyRing,
    /// Id of this relayed copy; tokens carry it.
    pub message_id: Uuid,
    /// The recipient of this copy; `None` for message-level tokens.
    pub recipient: Option<&'a str>,
    /// Seconds since the epoch when the token expires.
    pub expires_at: u32,
}

/// The message to relay and what was done to it.
#[derive(Debug)]
pub struct Outcome {
    pub message: Vec<u8>,
    pub report: Report,
}

/// What a rewrite did, for the log line, the database and the CLI.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub track_opens: bool,
    pub track_clicks: bool,
    /// Why nothing was tracked although the route asked for it.
    pub untracked_reason: Option<&'static str>,
    pub tags: Vec<String>,
    /// The Message-ID header field's value, for the database and logs.
    pub message_id_header: Option<String>,
    /// The opaque recipient id the tokens carry (base64url), if any.
    pub recipient_id: Option<String>,
    pub html_parts: usize,
    pub parts_rewritten: usize,
    pub pixels: usize,
    /// Parts with opens tracked but no place where a pixel would be an
    /// image of its own (a document ending inside a tag or an unclosed
    /// `<title>`): left without one rather than with broken markup.
    pub parts_without_pixel: usize,
    /// Tracked destinations; the position is the link index in tokens.
    pub links: Vec<String>,
    pub links_skipped: BTreeMap<&'static str, usize>,
    pub parts_skipped: BTreeMap<&'static str, usize>,
    /// Override headers that were not understood.
    pub ignored_headers: Vec<String>,
    /// Parts re-encoded as quoted-printable to keep lines within 998 octets.
    pub reencoded_parts: usize,
    /// What DKIM signing did (`signed d=… s=…`, or why not); `None` when
    /// the copy needed no signature (see `dkim::sign`).
    pub dkim: Option<String>,
}

/// Rewrites one message for one recipient (or for all, message-level).
///
/// A panic below (in our code or a parser's) must not lose the message: it
/// is caught and the message goes out as it came, with the reason reported.
pub fn rewrite(raw: &[u8], req: &Request<'_>) -> Outcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rewrite_inner(raw, req)))
        .unwrap_or_else(|_| Outcome {
            message: raw.to_vec(),
            report: Report {
                untracked_reason: Some("internal_error"),
                ..Report::default()
            },
        })
}

fn rewrite_inner(raw: &[u8], req: &Request<'_>) -> Outcome {
    let mut report = Report::default();
    let message = match mime::parse(raw) {
        Ok(message) => message,
        Err(why) => {
            report.untracked_reason = Some(why.as_str());
            return Outcome {
                message: raw.to_vec(),
                report,
            };
        }
    };
    let o = overrides::read(&message);
    let mut splice = Splice::default();
    for range in &o.remove {
        splice.remove(range.clone());
    }
    report.tags = o.tags;
    report.ignored_headers = o.ignored;
    report.message_id_header = message.parts[0]
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("message-id"))
        .and_then(|h| h.value.as_text())
        .map(|v| v.trim().to_owned());
    report.track_opens = o.track_opens.unwrap_or(req.settings.track_opens);
    report.track_clicks = o.track_clicks.unwrap_or(req.settings.track_clicks);
    let dkim_signed = message.parts[0]
        .headers
        .iter()
        .any(|h| h.name == HeaderName::DkimSignature);
    if dkim_signed
        && !req.settings.rewrite_dkim_signed
        && (report.track_opens || report.track_clicks)
    {
        // Rewriting would break the sender's signature (PITFALLS P7).
        report.untracked_reason = Some("dkim_signed");
        report.track_opens = false;
        report.track_clicks = false;
    }
    if report.track_opens || report.track_clicks {
        let facts = MessageFacts {
            unsubscribe: list_unsubscribe_urls(raw, &message),
            delimiters: mime::delimiters(&message),
        };
        let (parts, skips) = mime::html_parts(&message);
        report.html_parts = parts.len() + skips.len();
        for skip in skips {
            *report.parts_skipped.entry(skip.as_str()).or_default() += 1;
        }
        let mut signer = Signer::new(req);
        report.recipient_id = signer.recipient_id.map(|id| URL_SAFE_NO_PAD.encode(id));
        for part in &parts {
            match rewrite_part(raw, part, req, &mut signer, &facts, &mut report) {
                Ok(edits) => edits.into_iter().for_each(|(r, b)| splice.replace(r, b)),
                Err(skip) => *report.parts_skipped.entry(skip.as_str()).or_default() += 1,
            }
        }
        report.links = signer.links;
        if report.html_parts == 0 {
            report.untracked_reason = Some("no_html_part");
        }
    }
    let message = if splice.is_empty() {
        raw.to_vec()
    } else {
        splice.apply(raw)
    };
    Outcome { message, report }
}

/// Makes tracking URLs for one copy and remembers the tracked links.
struct Signer<'a> {
    req: &'a Request<'a>,
    recipient_id: Option<[u8; crate::token::RECIPIENT_ID_LEN]>,
    base: String,
    links: Vec<String>,
    pixel_markup: Option<String>,
}

impl<'a> Signer<'a> {
    fn new(req: &'a Request<'a>) -> Self {
        Self {
            req,
            recipient_id: req.recipient.map(|r| req.keys.recipient_id(r)),
            base: req.base_url.as_str().trim_end_matches('/').to_owned(),
            links: Vec::new(),
            pixel_markup: None,
        }
    }

    fn claims(&self, kind: Kind, link: Option<u16>, url: Option<&str>) -> Claims {
        Claims {
            kind,
            message_id: self.req.message_id,
            recipient_id: self.recipient_id,
            expires_at: self.req.expires_at,
            link,
            url: url.map(str::to_owned),
        }
    }

    /// The pixel markup; one open token per copy, shared by its HTML parts.
    fn pixel(&mut self) -> &str {
        if self.pixel_markup.is_none() {
            let token = self.req.keys.sign(&self.claims(Kind::Open, None, None));
            self.pixel_markup = Some(html::pixel_markup(&format!("{}/o/{token}", self.base)));
        }
        self.pixel_markup.as_deref().unwrap_or_default()
    }

    fn click_url(&mut self, url: &str) -> String {
        // Indexes past u16::MAX share the last one; the URL is still signed.
        let index = u16::try_from(self.links.len()).unwrap_or(u16::MAX);
        self.links.push(url.to_owned());
        let token = self
            .req
            .keys
            .sign(&self.claims(Kind::Click, Some(index), Some(url)));
        format!("{}/c/{token}", self.base)
    }
}

/// Rewrites one HTML part; returns the splices that put it back.
fn rewrite_part(
    raw: &[u8],
    part: &HtmlPart,
    req: &Request<'_>,
    signer: &mut Signer<'_>,
    facts: &MessageFacts,
    report: &mut Report,
) -> Result<Vec<mime::Edit>, PartSkip> {
    let pixel = report
        .track_opens
        .then(|| (signer.pixel().to_owned(), req.settings.pixel_position));
    let plan = Plan {
        pixel: pixel.as_ref().map(|(m, p)| (m.as_str(), *p)),
        clicks: report.track_clicks,
        unsubscribe: &facts.unsubscribe,
    };
    let links_before = signer.links.len();
    let (mut placed, mut skipped) = (false, Vec::new());
    let edited = mime::edit_html_part(raw, part, &facts.delimiters, |content, encoding| {
        let mut sign = |url: &str| signer.click_url(url);
        let r =
            html::rewrite(content, encoding, &plan, &mut sign).map_err(|_| PartSkip::Unparsable)?;
        (placed, skipped) = (r.pixel, r.skipped);
        Ok(Edited {
            html: r.html,
            changes: r.changes,
        })
    });
    let edited = edited.inspect_err(|_| {
        // This part's links are not in the message after all.
        signer.links.truncate(links_before);
    })?;
    report.parts_rewritten += 1;
    report.reencoded_parts += usize::from(edited.reencoded);
    report.pixels += usize::from(placed);
    report.parts_without_pixel += usize::from(report.track_opens && !placed);
    for skip in &skipped {
        *report.links_skipped.entry(skip.as_str()).or_default() += 1;
    }
    Ok(edited.edits)
}

/// What every part of one message is checked against.
struct MessageFacts {
    /// URLs of the List-Unsubscribe header: never tracked.
    unsubscribe: Vec<String>,
    /// `--boundary` of every multipart: a rewritten body must not hold one.
    delimiters: Vec<Vec<u8>>,
}

/// URLs named in List-Unsubscribe (RFC 2369: `<url>, <url>`), which must
/// never be tracked: a scanner following them would unsubscribe people.
fn list_unsubscribe_urls(raw: &[u8], message: &mail_parser::Message<'_>) -> Vec<String> {
    let mut urls = Vec::new();
    for h in &message.parts[0].headers {
        if !h.name.as_str().eq_ignore_ascii_case("list-unsubscribe") {
            continue;
        }
        let value = String::from_utf8_lossy(&raw[h.offset_start as usize..h.offset_end as usize]);
        for piece in value.split('<').skip(1) {
            if let Some((url, _)) = piece.split_once('>') {
                let url: String = url.chars().filter(|c| !c.is_whitespace()).collect();
                urls.push(url);
            }
        }
    }
    urls
}
