//! `GET /v1/stats` (issue 17): the figures of a route, of a route's copies
//! carrying a tag, of a tag across routes, or of a message as sent (its
//! copies sharing one Message-ID header): `route=`, `route=&tag=`, `tag=`
//! or `message=`, with `from`, `to`, `interval=hour|day` and
//! `include_machine` as for `/v1/routes/{id}/stats`. The answer is the
//! serialised [`crate::report::Report`], the JSON `trackrelay stats
//! --json` prints.
//!
//! Also the parameter parsing every statistics path shares (the routes'
//! `/stats` and `/links`, the dashboard's pages): unknown parameters are
//! a 400 naming the known ones.

use serde_json::Value;

use super::ApiError;
use crate::report::{self, Interval, Query, QueryError, Scope};
use crate::storage::{CopyCounts, Storage};
use crate::time::rfc3339;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::UnknownRoute(_) => ApiError::NotFound(e.to_string()),
            QueryError::Invalid(text) => ApiError::BadRequest(text),
        }
    }
}

/// The statistics parameters of a query string, as given.
#[derive(Debug, Default)]
pub(super) struct Params {
    pub route: Option<String>,
    pub tag: Option<String>,
    pub message: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub interval: Option<Interval>,
    pub include_machine: bool,
}

/// Reads `query`; a parameter not in `known` is a 400.
pub(super) fn params(query: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter {key:?} ({})",
                known.join(", ")
            )));
        }
        match key.as_ref() {
            "route" => p.route = Some(value.into_owned()),
            "tag" => p.tag = Some(value.into_owned()),
            "message" => p.message = Some(value.into_owned()),
            "from" => p.from_ms = Some(super::time("from", &value)?),
            "to" => p.to_ms = Some(super::time("to", &value)?),
            "interval" => p.interval = Some(value.parse()?),
            "include_machine" => {
                p.include_machine = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "include_machine must be true or false, not {other:?}"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

impl Params {
    /// The checked query of `scope` over these parameters' range.
    pub(super) fn query(self, scope: Scope, routes: &[String]) -> Result<Query, ApiError> {
        let interval = self.interval.unwrap_or(Interval::Day);
        Ok(Query::new(
            scope,
            self.from_ms,
            self.to_ms,
            interval,
            self.include_machine,
            routes,
        )?)
    }

    /// The scope `route`, `tag` and `message` name together.
    pub(super) fn scope(&self) -> Result<Scope, ApiError> {
        match (&self.route, &self.tag, &self.message) {
            (None, None, Some(m)) => Ok(Scope::Message(m.clone())),
            (_, _, Some(_)) => Err(ApiError::BadRequest(
                "message cannot be combined with route or tag".into(),
            )),
            (Some(id), tag, None) => Ok(Scope::Route {
                id: id.clone(),
                tag: tag.clone(),
            }),
            (None, Some(t), None) => Ok(Scope::Tag(t.clone())),
            (None, None, None) => Err(ApiError::BadRequest(
                "give route, tag (or both) or message".into(),
            )),
        }
    }
}

/// Every parameter of `/v1/stats`.
pub(super) const STATS_PARAMETERS: &[&str] = &[
    "route",
    "tag",
    "message",
    "from",
    "to",
    "interval",
    "include_machine",
];

/// `GET /v1/stats`.
pub async fn stats(
    storage: &Storage,
    routes: &[String],
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let p = params(query, STATS_PARAMETERS)?;
    let scope = p.scope()?;
    let q = p.query(scope, routes)?;
    Ok(to_json(&report::run(storage, &q).await?))
}

/// A report as the API sends it.
pub(super) fn to_json(r: &report::Report) -> Value {
    // Numbers, strings and options only (no map with non-string keys):
    // serialising cannot fail.
    serde_json::to_value(r).expect("a report serialises")
}

/// A copy's JSON with its own counts (counting events only): `opens`,
/// `clicks`, `first_open_at`, `first_click_at` (null before any).
pub(super) fn with_counts(mut copy: Value, n: &CopyCounts) -> Value {
    copy["opens"] = n.opens.into();
    copy["clicks"] = n.clicks.into();
    copy["first_open_at"] = n.first_open_ms.map(rfc3339).into();
    copy["first_click_at"] = n.first_click_ms.map(rfc3339).into();
    copy
}
