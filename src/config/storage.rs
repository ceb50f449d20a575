//! Validation of `[storage]`: a SQLite file (`path`, the default) or a
//! PostgreSQL database several nodes share (`url`, libpq's URL or
//! `key=value` form; docs/scaling.md).

use std::path::PathBuf;

use super::{Collector, raw};
use crate::storage::{Location, PostgresSettings};

impl Collector {
    /// `[storage]`: `url` when set, else `path`.
    pub(super) fn storage(&mut self, raw: &raw::RawStorage) -> Location {
        let Some(url) = raw.url.as_deref() else {
            return Location::Sqlite(PathBuf::from(&raw.path));
        };
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains('='))
        {
            self.push(
                "storage.url",
                "must be a PostgreSQL URL (postgres://user@host:port/db) or key=value settings",
            );
            return Location::Sqlite(PathBuf::from(&raw.path));
        }
        match PostgresSettings::parse(url) {
            Ok(settings) => Location::Postgres(Box::new(settings)),
            Err(e) => {
                self.push("storage.url", e);
                Location::Sqlite(PathBuf::from(&raw.path))
            }
        }
    }
}
