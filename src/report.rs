//! Statistics as users read them (SPEC §8, issue 17): one typed query and
//! one typed result, shared by the API (`/v1/stats`,
//! `/v1/routes/{id}/stats`, which serialise the [`Report`]), the dashboard
//! and `trackrelay stats` (which prints it as a table, or the same JSON).
//!
//! A query names what to count ([`Scope`]: a route, a route's copies
//! carrying a tag, a tag across routes, or a message as sent), a time
//! range, hourly or daily buckets and whether machine activity counts.
//! The figures come from storage's rollups (`storage/stats.rs` for routes,
//! `storage/scoped_stats.rs` for tags and messages); this module only
//! chooses which, checks the query and shapes the answer.

use serde::Serialize;

use crate::storage::{Counts, Group, GroupQuery, LinkClicks, StatsQuery, Storage, StorageError};
use crate::time::rfc3339;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The default range: this many days up to `to`.
const DEFAULT_DAYS: i64 = 30;
/// Most buckets one answer holds.
pub const BUCKETS_MAX: i64 = 24 * 400;

/// Which copies a report counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A route's copies; only those carrying `tag` when given.
    Route { id: String, tag: Option<String> },
    /// Every copy carrying this `X-LM-Tag` value, whatever its route.
    Tag(String),
    /// Every copy of one message as sent: one Message-ID header (with or
    /// without its angle brackets).
    Message(String),
}

/// The bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn ms(self) -> i64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
        }
    }
}

impl std::str::FromStr for Interval {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Interval, QueryError> {
        match s {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            other => Err(QueryError::Invalid(format!(
                "interval must be hour or day, not {other:?}"
            ))),
        }
    }
}

/// What is wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The route is not one of the config's.
    #[error("no route {0:?}")]
    UnknownRoute(String),
    /// A value or combination that makes no query.
    #[error("{0}")]
    Invalid(String),
}

/// One checked statistics query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub scope: Scope,
    /// `[from_ms, to_ms)`, ms since the Unix epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    pub interval: Interval,
    pub include_machine: bool,
}

impl Query {
    /// A query over `[from_ms, to_ms)`; without `to`, up to the end of the
    /// current hour (so the default range is whole hours, answered from
    /// the rollups alone), without `from`, 30 days before `to`. `routes`
    /// are the config's: a route scope must name one.
    pub fn new(
        scope: Scope,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        interval: Interval,
        include_machine: bool,
        routes: &[String],
    ) -> Result<Query, QueryError> {
        if let Scope::Route { id, .. } = &scope
            && !routes.iter().any(|r| r == id)
        {
            return Err(QueryError::UnknownRoute(id.clone()));
        }
        let empty = match &scope {
            Scope::Route { tag: Some(t), .. } | Scope::Tag(t) => t.is_empty(),
            Scope::Message(m) => m.trim_matches([' ', '<', '>']).is_empty(),
            Scope::Route { tag: None, .. } => false,
        };
        if empty {
            return Err(QueryError::Invalid("an empty tag or message id".into()));
        }
        let to_ms = to_ms.unwrap_or_else(|| default_to(crate::time::now_ms()));
        let from_ms = from_ms.unwrap_or(to_ms - DEFAULT_DAYS * DAY_MS);
        if from_ms >= to_ms {
            return Err(QueryError::Invalid("from must be before to".into()));
        }
        if (to_ms - from_ms) / interval.ms() > BUCKETS_MAX {
            return Err(QueryError::Invalid(format!(
                "at most {BUCKETS_MAX} buckets: use interval=day or a shorter range"
            )));
        }
        Ok(Query {
            scope,
            from_ms,
            to_ms,
            interval,
            include_machine,
        })
    }

    /// The route query of a route scope without a tag, as the dashboard's
    /// other route reads take it.
    pub fn route_query(&self) -> Option<StatsQuery> {
        match self.source() {
            Source::Route(q) => Some(q),
            Source::Group(_) => None,
        }
    }

    /// Which rollups answer: a route's, or a group's (a tag's, possibly
    /// within a route, or a message's).
    fn source(&self) -> Source {
        let (group, key, route) = match &self.scope {
            Scope::Route { id, tag: None } => {
                return Source::Route(StatsQuery {
                    route: id.clone(),
                    from_ms: self.from_ms,
                    to_ms: self.to_ms,
                    bucket_ms: self.interval.ms(),
                    include_machine: self.include_machine,
                });
            }
            Scope::Route { id, tag: Some(t) } => (Group::Tag, t, Some(id.clone())),
            Scope::Tag(t) => (Group::Tag, t, None),
            Scope::Message(m) => (Group::Message, m, None),
        };
        Source::Group(GroupQuery {
            group,
            key: key.clone(),
            route,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            bucket_ms: self.interval.ms(),
            include_machine: self.include_machine,
        })
    }
}

/// The storage query that answers a [`Query`].
enum Source {
    Route(StatsQuery),
    Group(GroupQuery),
}

/// The end of a range given without `to`: the end of the current hour.
pub fn default_to(now_ms: i64) -> i64 {
    (now_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS
}

/// The figures of SPEC §8 for a bucket or a whole range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Copies the upstream accepted (delivered copies; failed ones are
    /// not counted).
    pub relayed: u64,
    pub opens: u64,
    /// One per copy and recipient, in the bucket of their first open.
    pub unique_opens: u64,
    pub clicks: u64,
    pub unique_clicks: u64,
    /// Unique opens over relayed copies; null without any copy.
    pub open_rate: Option<f64>,
    /// Unique clicks over relayed copies; null without any copy.
    pub click_rate: Option<f64>,
}

impl From<Counts> for Figures {
    fn from(c: Counts) -> Figures {
        let rate = |n: u64| (c.relayed > 0).then(|| n as f64 / c.relayed as f64);
        Figures {
            relayed: c.relayed,
            opens: c.opens,
            unique_opens: c.unique_opens,
            clicks: c.clicks,
            unique_clicks: c.unique_clicks,
            open_rate: rate(c.unique_opens),
            click_rate: rate(c.unique_clicks),
        }
    }
}

/// One bucket that has anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Its start (RFC 3339, UTC).
    pub start: String,
    /// The same, ms since the epoch (for charts; not serialised).
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Clicks on one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub url: String,
    pub clicks: u64,
    pub unique_clicks: u64,
}

/// The answer to a [`Query`]: what the API sends and the CLI prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The route counted (absent for a tag or message across routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The tag counted, if the scope is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The Message-ID counted, if the scope is a message as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub from: String,
    pub to: String,
    pub interval: Interval,
    pub include_machine: bool,
    pub totals: Figures,
    /// Oldest first; buckets with nothing are left out.
    pub buckets: Vec<Bucket>,
    /// Clicks per destination, most clicked first.
    pub links: Vec<Link>,
}

/// Counts what `q` asks for.
pub async fn run(storage: &Storage, q: &Query) -> Result<Report, StorageError> {
    let ((buckets, totals), links) = match q.source() {
        Source::Route(rq) => {
            tokio::try_join!(storage.route_stats(rq.clone()), storage.route_links(rq))?
        }
        Source::Group(gq) => {
            tokio::try_join!(storage.group_stats(gq.clone()), storage.group_links(gq))?
        }
    };
    Ok(report(q, buckets, totals, links))
}

fn report(
    q: &Query,
    buckets: Vec<(i64, Counts)>,
    totals: Counts,
    links: Vec<LinkClicks>,
) -> Report {
    let (route, tag, message_id) = match &q.scope {
        Scope::Route { id, tag } => (Some(id.clone()), tag.clone(), None),
        Scope::Tag(t) => (None, Some(t.clone()), None),
        Scope::Message(m) => (None, None, Some(m.trim_matches([' ', '<', '>']).to_owned())),
    };
    Report {
        route,
        tag,
        message_id,
        from: rfc3339(q.from_ms),
        to: rfc3339(q.to_ms),
        interval: q.interval,
        include_machine: q.include_machine,
        totals: totals.into(),
        buckets: buckets
            .into_iter()
            .map(|(start, c)| Bucket {
                start: rfc3339(start),
                start_ms: start,
                figures: c.into(),
            })
            .collect(),
        links: links
            .into_iter()
            .map(|l| Link {
                url: l.url,
                clicks: l.clicks,
                unique_clicks: l.unique_clicks,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_is_whole_hours_up_to_the_end_of_this_one() {
        // 2026-11-27T08:37:06.5Z → 09:00:00Z; on the hour → the next hour.
        let now = 1_795_768_626_500;
        let to = default_to(now);
        assert_eq!(rfc3339(to), "2026-11-27T09:00:00Z");
        assert_eq!(default_to(to), to + HOUR_MS);
        let route = Scope::Route {
            id: "r".into(),
            tag: None,
        };
        let q = Query::new(route, None, None, Interval::Day, false, &["r".into()]).unwrap();
        assert_eq!(q.to_ms % HOUR_MS, 0);
        assert_eq!(q.to_ms - q.from_ms, 30 * DAY_MS);
        assert!(q.to_ms > crate::time::now_ms());
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let routes = ["r".to_owned()];
        let new = |scope, from, to, interval| Query::new(scope, from, to, interval, false, &routes);
        let route = |id: &str, tag: Option<&str>| Scope::Route {
            id: id.into(),
            tag: tag.map(str::to_owned),
        };
        assert_eq!(
            new(route("x", None), None, None, Interval::Day),
            Err(QueryError::UnknownRoute("x".into()))
        );
        assert!(new(route("r", Some("")), None, None, Interval::Day).is_err());
        assert!(new(Scope::Message("<>".into()), None, None, Interval::Day).is_err());
        assert!(new(Scope::Tag("t".into()), Some(5), Some(5), Interval::Day).is_err());
        let year = 365 * DAY_MS;
        assert!(
            new(
                Scope::Tag("t".into()),
                Some(0),
                Some(2 * year),
                Interval::Hour
            )
            .is_err()
        );
        assert!(
            new(
                Scope::Tag("t".into()),
                Some(0),
                Some(2 * year),
                Interval::Day
            )
            .is_ok()
        );
    }

    #[test]
    fn rates_are_unique_counts_over_relayed_copies() {
        let c = Counts {
            relayed: 4,
            opens: 9,
            unique_opens: 2,
            clicks: 1,
            unique_clicks: 1,
        };
        let f = Figures::from(c);
        assert_eq!((f.open_rate, f.click_rate), (Some(0.5), Some(0.25)));
        assert_eq!(Figures::from(Counts::default()).open_rate, None);
    }
}
