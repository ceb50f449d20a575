//! The `messages` table (one row per relayed copy) and its two indexes
//! for the API's listing: `message_recipients` (the `recipient=` filter;
//! retention's `forget` finds copies by it too) and `message_tags` (the
//! `tag=` filter). Both keep the copy's time, so their keys give the
//! listing's order.
//!
//! The listing's order is total: newest `relayed_at_ms` first, ties by id
//! (descending), so a position in it, `(relayed_at_ms, id)`, is a cursor.
//! Each query walks one index in that order (the recipient's, the tag's,
//! the tag's and route's, the route's or the time's) from the cursor on
//! and stops after `limit` rows.

use rusqlite::types::{ToSql, Type};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::{CopyStatus, RelayedCopy, StorageError};

/// Which copies to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only this route.
    pub route: Option<String>,
    /// Any recipient of the copy, compared without case.
    pub recipient: Option<String>,
    /// Only copies carrying this `X-LM-Tag` (exactly as it came).
    pub tag: Option<String>,
    /// Relayed at or after this time (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Relayed before this time.
    pub to_ms: Option<i64>,
    /// Only copies after this position of the order: `(relayed_at_ms, id)`
    /// of the last copy of the previous page.
    pub after: Option<(i64, Uuid)>,
    /// Most copies returned.
    pub limit: u32,
}

/// A copy's engagement from its counting events: 2 when clicked, 1 when
/// opened, NULL when neither. The status moves only on counting events.
const ENGAGEMENT: &str = "SELECT max(CASE e.kind WHEN 'click' THEN 2 ELSE 1 END) FROM events e
     WHERE e.message_id = m.id AND e.counts = 1";

/// Inserts one copy and its recipient index rows (inside the writer's
/// transaction).
pub(super) fn insert(conn: &Connection, copy: &RelayedCopy) -> rusqlite::Result<()> {
    let id = copy.id.to_string();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (id, route, sender, recipients, recipient_id, message_id_header,
                               tags, links, relayed_at_ms, upstream_reply, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    stmt.execute(params![
        id,
        copy.route,
        copy.sender,
        json(&copy.recipients),
        copy.recipient_id,
        copy.message_id_header,
        json(&copy.tags),
        json(&copy.links),
        copy.relayed_at_ms,
        copy.upstream_reply,
        copy.status,
    ])?;
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO message_recipients (address, message_id, relayed_at_ms)
         VALUES (?1, ?2, ?3)",
    )?;
    for address in &copy.recipients {
        stmt.execute(params![
            address.trim().to_lowercase(),
            id,
            copy.relayed_at_ms
        ])?;
    }
    // Rows go with the copy through the `message_tags_delete` trigger.
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO message_tags (tag, relayed_at_ms, message_id, route)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for tag in &copy.tags {
        stmt.execute(params![tag, copy.relayed_at_ms, id, copy.route])?;
    }
    Ok(())
}

/// Copies matching `filter`, newest first.
pub(super) fn list(
    conn: &Connection,
    filter: &MessageFilter,
) -> Result<Vec<RelayedCopy>, StorageError> {
    let (sql, values) = list_query(filter);
    let mut stmt = conn.prepare_cached(&sql)?;
    let params: Vec<(&str, &dyn ToSql)> = values.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let rows = stmt.query_map(params.as_slice(), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A named parameter of a statement and its value.
type Named = (&'static str, Box<dyn ToSql>);

/// The listing's SQL and its named parameters. Made of fixed fragments
/// only (values are always bound), so each shape of filter has one cached
/// statement. `CROSS JOIN` fixes the join order: the index chosen here
/// drives the loop, and the copy is looked up by id.
fn list_query(filter: &MessageFilter) -> (String, Vec<Named>) {
    let mut values: Vec<Named> = Vec::new();
    let mut clauses: Vec<&str> = Vec::new();
    let (source, at, id) = if let Some(address) = &filter.recipient {
        clauses.push("r.address = :recipient");
        values.push((":recipient", Box::new(address.trim().to_lowercase())));
        (
            "message_recipients r CROSS JOIN messages m ON m.id = r.message_id",
            "r.relayed_at_ms",
            "r.message_id",
        )
    } else if filter.tag.is_some() {
        clauses.push("t.tag = :tag");
        (
            "message_tags t CROSS JOIN messages m ON m.id = t.message_id",
            "t.relayed_at_ms",
            "t.message_id",
        )
    } else {
        ("messages m", "m.relayed_at_ms", "m.id")
    };
    if let Some(tag) = &filter.tag {
        if filter.recipient.is_some() {
            clauses.push("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = :tag)");
        }
        values.push((":tag", Box::new(tag.clone())));
    }
    if let Some(route) = &filter.route {
        // With a tag, on the tag's row: the (tag, route, time) index.
        clauses.push(if filter.tag.is_some() && filter.recipient.is_none() {
            "t.route = :route"
        } else {
            "m.route = :route"
        });
        values.push((":route", Box::new(route.clone())));
    }
    let mut bounds = Vec::new();
    if let Some(from) = filter.from_ms {
        bounds.push(format!("{at} >= :from"));
        values.push((":from", Box::new(from)));
    }
    if let Some(to) = filter.to_ms {
        bounds.push(format!("{at} < :to"));
        values.push((":to", Box::new(to)));
    }
    if let Some((after_at, after_id)) = filter.after {
        // A row value: the index walks on from the cursor's position.
        bounds.push(format!("({at}, {id}) < (:after_at, :after_id)"));
        values.push((":after_at", Box::new(after_at)));
        values.push((":after_id", Box::new(after_id.to_string())));
    }
    values.push((":limit", Box::new(filter.limit)));
    let mut conditions: Vec<String> = clauses.into_iter().map(str::to_owned).collect();
    conditions.extend(bounds);
    let condition = if conditions.is_empty() {
        "1".to_owned()
    } else {
        conditions.join(" AND ")
    };
    let sql = format!(
        "SELECT m.*, ({ENGAGEMENT}) AS engagement FROM {source}
         WHERE {condition}
         ORDER BY {at} DESC, {id} DESC
         LIMIT :limit"
    );
    (sql, values)
}

/// One copy by id.
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<RelayedCopy>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT m.*, ({ENGAGEMENT}) AS engagement FROM messages m WHERE m.id = ?1"
    ))?;
    Ok(stmt.query_row([id.to_string()], from_row).optional()?)
}

fn json(list: &[String]) -> String {
    // Serialising strings cannot fail.
    serde_json::to_string(list).expect("a list of strings serialises")
}

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<RelayedCopy> {
    Ok(RelayedCopy {
        id: super::uuid_column(row, "id")?,
        route: row.get("route")?,
        sender: row.get("sender")?,
        recipients: json_column(row, "recipients")?,
        recipient_id: row.get("recipient_id")?,
        message_id_header: row.get("message_id_header")?,
        tags: json_column(row, "tags")?,
        links: json_column(row, "links")?,
        relayed_at_ms: row.get("relayed_at_ms")?,
        upstream_reply: row.get("upstream_reply")?,
        status: match row.get::<_, Option<i64>>("engagement")? {
            Some(2) => CopyStatus::Clicked,
            Some(1) => CopyStatus::Opened,
            _ => row.get("status")?,
        },
    })
}

fn json_column(row: &Row<'_>, name: &str) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(name)?;
    serde_json::from_str(&text).map_err(|e| {
        let index = row.as_ref().column_index(name).unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn copy(route: &str, recipient: &str, tags: &[&str], at_ms: i64) -> RelayedCopy {
        RelayedCopy {
            id: Uuid::now_v7(),
            route: route.into(),
            sender: "s@example.com".into(),
            recipients: vec![recipient.into()],
            recipient_id: None,
            message_id_header: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            links: Vec::new(),
            relayed_at_ms: at_ms,
            upstream_reply: "250 ok".into(),
            status: CopyStatus::Relayed,
        }
    }

    fn plan(conn: &Connection, filter: &MessageFilter) -> String {
        let (sql, values) = list_query(filter);
        let params: Vec<(&str, &dyn ToSql)> =
            values.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params.as_slice(), |r| r.get::<_, String>("detail"))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// Each filter walks an index in the listing's order, from the cursor
    /// on, with no sort: a page costs about `limit` rows.
    #[test]
    fn listings_walk_an_index_without_sorting() {
        let conn = db();
        let after = Some((5, Uuid::now_v7()));
        let some = |s: &str| Some(s.to_owned());
        let cases = [
            (MessageFilter::default(), "messages_relayed_at"),
            (
                MessageFilter {
                    after,
                    from_ms: Some(1),
                    ..MessageFilter::default()
                },
                "messages_relayed_at",
            ),
            (
                MessageFilter {
                    route: some("news"),
                    after,
                    to_ms: Some(9),
                    ..MessageFilter::default()
                },
                "messages_route",
            ),
            (
                MessageFilter {
                    tag: some("t"),
                    route: some("news"),
                    after,
                    from_ms: Some(1),
                    ..MessageFilter::default()
                },
                "SEARCH t USING COVERING INDEX message_tags_route (tag=? AND route=?",
            ),
            (
                MessageFilter {
                    tag: some("t"),
                    after,
                    to_ms: Some(9),
                    ..MessageFilter::default()
                },
                "SEARCH t USING PRIMARY KEY (tag=?",
            ),
            (
                MessageFilter {
                    recipient: some("bob@example.com"),
                    tag: some("t"),
                    route: some("news"),
                    after,
                    ..MessageFilter::default()
                },
                "SEARCH r USING COVERING INDEX message_recipients_time (address=?",
            ),
        ];
        for (filter, index) in cases {
            let plan = plan(&conn, &filter);
            assert!(plan.contains(index), "{filter:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");
            assert!(!plan.contains("SCAN m\n"), "{filter:?}: {plan}");
        }
    }

    #[test]
    fn filters_and_pages_with_ties() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let mut all = Vec::new();
        for i in 0..30 {
            let route = if i % 2 == 0 { "news" } else { "default" };
            let tags: &[&str] = if i % 3 == 0 { &["a", "b"] } else { &["b"] };
            // Ten distinct times, three copies each: ties everywhere.
            let c = copy(route, &format!("r{}@x", i % 4), tags, 1_000 + (i / 3));
            insert(&tx, &c).unwrap();
            all.push(c);
        }
        tx.commit().unwrap();
        let expect = |keep: &dyn Fn(&RelayedCopy) -> bool| {
            let mut v: Vec<&RelayedCopy> = all.iter().filter(|c| keep(c)).collect();
            v.sort_by_key(|c| std::cmp::Reverse((c.relayed_at_ms, c.id.to_string())));
            v.into_iter().map(|c| c.id).collect::<Vec<_>>()
        };
        let pages = |base: MessageFilter| {
            let mut out = Vec::new();
            let mut filter = MessageFilter { limit: 4, ..base };
            loop {
                let page = list(&conn, &filter).unwrap();
                out.extend(page.iter().map(|c| c.id));
                match page.last() {
                    Some(last) if page.len() == 4 => {
                        filter.after = Some((last.relayed_at_ms, last.id))
                    }
                    _ => return out,
                }
            }
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(pages(MessageFilter::default()), expect(&|_| true));
        let tag_a = MessageFilter {
            tag: some("a"),
            ..MessageFilter::default()
        };
        assert_eq!(pages(tag_a), expect(&|c| c.tags.contains(&"a".into())));
        let news_a_range = MessageFilter {
            route: some("news"),
            tag: some("a"),
            from_ms: Some(1_002),
            to_ms: Some(1_008),
            ..MessageFilter::default()
        };
        assert_eq!(
            pages(news_a_range),
            expect(&|c| c.route == "news"
                && c.tags.contains(&"a".into())
                && (1_002..1_008).contains(&c.relayed_at_ms))
        );
        let r1_b = MessageFilter {
            recipient: some("R1@X"),
            tag: some("b"),
            to_ms: Some(1_005),
            ..MessageFilter::default()
        };
        assert_eq!(
            pages(r1_b),
            expect(&|c| c.recipients[0] == "r1@x" && c.relayed_at_ms < 1_005)
        );
        let none = MessageFilter {
            tag: some("A"),
            ..MessageFilter::default()
        };
        assert!(pages(none).is_empty(), "tags compare exactly");
    }

    #[test]
    fn a_deleted_copy_takes_its_tag_rows() {
        let conn = db();
        let c = copy("news", "bob@x", &["a", "b"], 7);
        insert(&conn, &c).unwrap();
        let count = || -> i64 {
            conn.query_row("SELECT count(*) FROM message_tags", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(), 2);
        conn.execute("DELETE FROM messages WHERE id = ?1", [c.id.to_string()])
            .unwrap();
        assert_eq!(count(), 0);
    }
}
