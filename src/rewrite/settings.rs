//! [`RouteSettings`]: what a route does to the messages it takes. The
//! config's `[[routes]]` and the API's overrides produce it; the rewrite
//! policy, DKIM and the relay read it. It lives here so that `rewrite` and
//! `dkim` need nothing from `config`.

use url::Url;

use crate::html::PixelPosition;

/// What a route does to the messages it takes. Run-time changes (PATCH
/// /v1/routes/{id}) replace this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    pub track_opens: bool,
    pub track_clicks: bool,
    /// Base URL of tracking links for this route; `None` uses
    /// `tracking.base_url`.
    pub tracking_domain: Option<Url>,
    /// One copy per recipient with its own tokens (SPEC §1).
    pub per_recipient: bool,
    pub pixel_position: PixelPosition,
    /// Rewrite messages that already carry a DKIM-Signature (breaks it).
    pub rewrite_dkim_signed: bool,
    /// Sign every copy with the From domain's `[[dkim.keys]]` key, not
    /// only the rewritten ones.
    pub dkim_sign: bool,
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self {
            track_opens: false,
            track_clicks: false,
            tracking_domain: None,
            per_recipient: true,
            pixel_position: PixelPosition::End,
            rewrite_dkim_signed: false,
            dkim_sign: false,
        }
    }
}
