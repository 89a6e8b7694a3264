//! The state store: users, their tokens, browser sessions, dashboards and
//! their sharing, in one SQLite file (`<state-dir>/statflow.db`).
//!
//! SQLite is compiled into statflow (rusqlite's `bundled` feature), so no
//! system library is needed. The schema is versioned with SQLite's own
//! `PRAGMA user_version`: [`migrations`] holds an ordered list of SQL steps,
//! and opening a store applies, in one transaction each, every step above
//! the file's version. A file written by a newer statflow (a version above
//! the list) is refused rather than guessed at.
//!
//! One connection serves the whole process behind a mutex: every statement
//! here is a point lookup or a small write that takes microseconds, far less
//! than the HTTP round trip around it. Processes of a cluster on one machine
//! may share the file: it is opened in WAL mode with a busy timeout.
//!
//! Secrets never reach the file: tokens and session cookies are stored as
//! SHA-256 digests of their secret part (see [`secret`]).

pub mod dashboards;
pub mod migrations;
pub mod secret;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

pub use dashboards::{Access, Dashboard, DashboardInput, Kept, Share, Sharing};
pub use sessions::Session;
pub use users::{Role, User};

/// The name of the store's file inside the state folder.
pub const FILE_NAME: &str = "statflow.db";

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("the state store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state folder cannot be created.
    #[error("cannot create the state folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file was written by a newer statflow.
    #[error("the state store is at schema version {found}, newer than this statflow knows ({known}); run a newer statflow")]
    TooNew {
        /// The file's version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A user name is already taken.
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    /// No user has this name.
    #[error("no user is named {0:?}")]
    NoSuchUser(String),
    /// A user name that cannot be used.
    #[error("{0}")]
    BadName(String),
    /// Randomness from the operating system was not available.
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The state store: one SQLite connection.
pub struct Store {
    /// The connection; a mutex because `rusqlite::Connection` is not `Sync`
    /// and every use is short.
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating when needed) the store in `state_dir`, and migrates it.
    pub fn open_dir(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Folder {
            path: state_dir.display().to_string(),
            source,
        })?;
        Store::open(&state_dir.join(FILE_NAME))
    }

    /// Opens (creating when needed) the store file at `path`, and migrates it.
    ///
    /// The processes of a local cluster open one file at the same moment.
    /// Switching a new file to WAL, and recovering one a killed process
    /// left, need the file to themselves, and SQLite answers "database is
    /// locked" at once rather than wait; so the opening is tried again for
    /// up to [`OPEN_PATIENCE`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match Store::open_once(path) {
                Err(StoreError::Sqlite(e)) if is_busy(&e) && started.elapsed() < OPEN_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets the processes of a local cluster read while one writes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Store::with_connection(conn)
    }

    /// A store that lives in memory only (tests, `--no-auth` demos).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// The connection, for one short use. A panic while holding it cannot
    /// leave SQLite inconsistent (transactions roll back), so a poisoned
    /// lock is simply taken over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// How long [`Store::open`] tries again while another process holds the file.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// True for SQLite's "database is locked" (and "table is locked").
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Milliseconds since the Unix epoch, now (the engine's clock).
pub use statflow_dataflow::ingest::wall_ms as now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    /// The processes of a local cluster open one new file at once; each
    /// must get it (before, one of two sometimes got "database is locked"
    /// and stopped).
    #[test]
    fn many_openers_of_one_new_file_all_get_it() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let path = dir.path().join(format!("store-{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, barrier) = (path.clone(), std::sync::Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|s| s.schema_version())
                    })
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap().unwrap().unwrap();
                assert_eq!(version, migrations::latest(), "round {round}");
            }
        }
    }
}
