//! The two storage backends for tests: a SQLite file in a temporary
//! directory, or a private PostgreSQL cluster (Debian's `postgresql`
//! package) started for the test and stopped when it ends.
//!
//! initdb refuses to run as root and the tests do, so the cluster belongs
//! to the `postgres` user (`runuser`), in a temporary directory that user
//! owns, listening only on a Unix socket in that directory.
//!
//! [`on_both_backends!`] turns `async fn name(db: Db)` into two tests,
//! `name::sqlite` and `name::postgres`: one suite, both backends.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use trackrelay::storage::{DEFAULT_QUEUE_CAPACITY, Location, PostgresSettings, Storage};
use uuid::Uuid;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database for one test; removed (the cluster stopped) on drop.
pub struct Db {
    pub kind: Kind,
    pub dir: TempDir,
    cluster: Option<Cluster>,
}

impl Db {
    pub fn new(kind: Kind) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let cluster = (kind == Kind::Postgres).then(Cluster::start);
        Db { kind, dir, cluster }
    }

    /// Where the records live, as `[storage]` would say.
    pub fn location(&self) -> Location {
        match &self.cluster {
            None => Location::Sqlite(self.dir.path().join("t.db")),
            Some(c) => Location::Postgres(Box::new(PostgresSettings::parse(&c.url()).unwrap())),
        }
    }

    /// The `[storage]` section of a config file for this database.
    pub fn config_section(&self) -> String {
        match &self.cluster {
            None => format!("[storage]\npath = {:?}\n", self.dir.path().join("t.db")),
            Some(c) => format!("[storage]\nurl = {:?}\n", c.url()),
        }
    }

    /// Opens (and migrates) the database with the default queue.
    pub async fn open(&self) -> Storage {
        Storage::connect(&self.location(), DEFAULT_QUEUE_CAPACITY)
            .await
            .unwrap()
    }

    /// The running cluster (PostgreSQL only).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }
}

/// A private PostgreSQL cluster in a temporary directory.
pub struct Cluster {
    /// Owned by `postgres`: data/, the socket, the log.
    dir: TempDir,
    bin: PathBuf,
}

impl Cluster {
    /// initdb and start; panics naming what failed (the log is printed).
    pub fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        run_as_postgres(
            Command::new(bin.join("initdb"))
                .args([
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "-U",
                ])
                .arg("postgres")
                .arg("-D")
                .arg(&data),
        );
        let cluster = Cluster { dir, bin };
        cluster.pg_ctl("start");
        cluster
    }

    /// libpq URL of the `postgres` database over the socket.
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@/postgres?host={}&sslmode=disable",
            self.dir.path().display()
        )
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A plain connection (no pool, no trackrelay code) for a test that
    /// reads the rows themselves.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// The ids one query returns (its first column, `uuid`).
    pub async fn ids(&self, sql: &str) -> HashSet<Uuid> {
        let rows = self.client().await.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Runs `sql` (see [`Cluster::ids`]) until `done` holds for its ids,
    /// for at most `limit`; returns the last ids (`done` or not: the caller
    /// asserts on them and so says what is missing).
    pub async fn wait_ids(
        &self,
        sql: &str,
        limit: std::time::Duration,
        done: impl Fn(&HashSet<Uuid>) -> bool,
    ) -> HashSet<Uuid> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let ids = self.ids(sql).await;
            if done(&ids) || std::time::Instant::now() > deadline {
                return ids;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// `pg_ctl stop` (fast) or `start`, waiting until done.
    pub fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!(
            "-k {} -c listen_addresses='' -F -c max_connections=200",
            self.dir.path().display()
        );
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-w", "-t", "120", "-m", "fast"]);
        if action != "stop" {
            cmd.arg("-l").arg(&log).arg("-o").arg(options);
        }
        cmd.arg(action);
        let out = as_postgres(&mut cmd).output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl {action}: {}\n{}\nlog:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-w", "-m", "immediate", "stop"]),
        )
        .output();
    }
}

/// Debian's server binaries: /usr/lib/postgresql/<version>/bin.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/packages: postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("an initdb under /usr/lib/postgresql")
}

fn chown_to_postgres(path: &Path) {
    let out = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chown postgres {}: {out:?}",
        path.display()
    );
}

/// `cmd` run as the `postgres` user (runuser keeps the environment out).
fn as_postgres(cmd: &mut Command) -> Command {
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", "postgres", "--"])
        .arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    wrapped.current_dir("/");
    wrapped
}

fn run_as_postgres(cmd: &mut Command) {
    let out = as_postgres(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}\n{}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `async fn $name(db: Db)` run as two tests, `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::support::db::Db::new(super::support::db::Kind::Sqlite)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::support::db::Db::new(super::support::db::Kind::Postgres)).await;
            }
        }
    )+};
}
