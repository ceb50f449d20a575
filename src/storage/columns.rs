//! How typed values cross the storage boundary: each enum is stored as the
//! word its owner gives it (`as_str`, read back with `FromStr`), an IP
//! address as its text, empty once minimised (SPEC §9). The words are
//! defined once, by the owner; this file only says they are TEXT columns.

use std::net::IpAddr;

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::CopyStatus;
use crate::classify::{Classification, ClientType, DeviceType};
use crate::token::Kind;

/// A TEXT column holding an enum's word.
macro_rules! text_column {
    ($($ty:ty),+ $(,)?) => {$(
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    )+};
}

text_column!(Kind, Classification, DeviceType, ClientType, CopyStatus);

/// The text of an `ip` column: the address, or empty when minimised.
pub(super) fn ip_text(ip: Option<IpAddr>) -> String {
    ip.map(|ip| ip.to_string()).unwrap_or_default()
}

/// An `ip` column: `None` when minimised (empty).
pub(super) fn ip_column(row: &Row<'_>, name: &str) -> rusqlite::Result<Option<IpAddr>> {
    let value = row.get_ref(name)?;
    let text = match value {
        ValueRef::Null => return Ok(None),
        v => v.as_str()?,
    };
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        let index = row.as_ref().column_index(name).unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn enums_are_stored_as_their_words_and_read_back() {
        let conn = Connection::open_in_memory().unwrap();
        let word: String = conn
            .query_row("SELECT ?1", [Classification::ImageProxy], |r| r.get(0))
            .unwrap();
        assert_eq!(word, "image_proxy");
        let kind: Kind = conn.query_row("SELECT 'click'", [], |r| r.get(0)).unwrap();
        assert_eq!(kind, Kind::Click);
        let bad: rusqlite::Result<Kind> = conn.query_row("SELECT 'view'", [], |r| r.get(0));
        assert!(bad.is_err());
    }

    #[test]
    fn a_minimised_ip_reads_as_none() {
        let conn = Connection::open_in_memory().unwrap();
        let read = |sql: &str| conn.query_row(sql, [], |r| ip_column(r, "ip"));
        assert_eq!(read("SELECT '' AS ip").unwrap(), None);
        assert_eq!(read("SELECT NULL AS ip").unwrap(), None);
        assert_eq!(
            read("SELECT '2001:db8::1' AS ip").unwrap(),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(read("SELECT 'x' AS ip").is_err());
        assert_eq!(ip_text(None), "");
    }
}
