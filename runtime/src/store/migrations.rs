//! The store's schema, as an ordered list of migrations.
//!
//! The file's `PRAGMA user_version` is the number of steps applied. Opening
//! a store applies every later step in one write transaction together with
//! the version bump, so a crash leaves the file at a whole version, and
//! processes opening one new file at once migrate it once: the first takes
//! the write lock, the others wait and then find nothing left to do.
//! Steps are only ever appended: a released step is never edited, since
//! files in the field already ran it.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Every migration, in order; step `i` takes the file to version `i + 1`.
pub const STEPS: &[&str] = &[
    // 1: users with hashed tokens, sessions, dashboards and their sharing.
    "CREATE TABLE users (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        role        TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
        token_id    TEXT NOT NULL UNIQUE,
        token_hash  BLOB NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        secret_hash BLOB NOT NULL,
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE dashboards (
        id          TEXT PRIMARY KEY,
        owner_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        title       TEXT NOT NULL,
        everyone    INTEGER NOT NULL DEFAULT 0,
        spec        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE dashboard_shares (
        dashboard_id TEXT NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
        user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        access       TEXT NOT NULL CHECK (access IN ('view', 'edit')),
        PRIMARY KEY (dashboard_id, user_id)
    );
    CREATE INDEX shares_by_user ON dashboard_shares (user_id);",
    // 2: dashboards statflow keeps itself (the statflow health dashboard):
    // which one (`builtin`, at most one row each) and the title and spec
    // statflow last wrote (`builtin_written`), to tell a dashboard someone
    // edited from one statflow may still upgrade.
    "ALTER TABLE dashboards ADD COLUMN builtin TEXT;
    ALTER TABLE dashboards ADD COLUMN builtin_written TEXT;
    CREATE UNIQUE INDEX dashboards_by_builtin ON dashboards (builtin) WHERE builtin IS NOT NULL;",
];

/// The version a fully migrated file is at.
pub fn latest() -> i64 {
    STEPS.len() as i64
}

/// Applies every step the file has not seen.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            found,
            known: latest(),
        });
    }
    if found == latest() {
        return Ok(());
    }
    for step in STEPS.iter().skip(found.max(0) as usize) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", latest())?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_reaches_the_latest_version_and_stays_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
    }

    #[test]
    fn a_version_1_file_keeps_its_dashboards() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(STEPS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users VALUES (1, 'ann', 'admin', 't', x'00', 0);
             INSERT INTO dashboards (id, owner_id, title, spec, created_ms, updated_ms)
             VALUES ('d1', 1, 'Mine', '{}', 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (title, builtin): (String, Option<String>) = conn
            .query_row("SELECT title, builtin FROM dashboards", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((title.as_str(), builtin), ("Mine", None));
    }

    #[test]
    fn a_newer_file_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::TooNew { .. })));
    }
}
