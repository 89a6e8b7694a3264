//! Users, their roles and their tokens.
//!
//! A user has one token at a time: `rotate` replaces it (and ends the
//! user's browser sessions, which were opened with the old one).

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now_ms, secret, Store, StoreError};

/// What a user may do. Each role may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Query, and view what is shared with them.
    Viewer,
    /// Also create dashboards and share their own.
    Editor,
    /// Also manage users, and see and change every dashboard.
    Admin,
}

impl Role {
    /// The role's name, as the store, the API and the command line write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user, without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The row id; dashboards and sessions refer to it.
    #[serde(skip)]
    pub id: i64,
    /// The unique name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// When the user was added, in Unix milliseconds.
    pub created_ms: i64,
}

/// The longest user name.
pub const MAX_NAME: usize = 64;

/// Checks a user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(format!(
            "{name:?} is not a user name: use 1 to {MAX_NAME} letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        // The table's CHECK constraint admits only the three names.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_ms: r.get(3)?,
    })
}

const COLUMNS: &str = "id, name, role, created_ms";

impl Store {
    /// Adds a user; returns it with its token, which is shown only now.
    pub fn add_user(&self, name: &str, role: Role) -> Result<(User, String), StoreError> {
        check_name(name)?;
        let minted = secret::mint()?;
        let conn = self.conn();
        let now = now_ms();
        let added = conn.execute(
            "INSERT INTO users (name, role, token_id, token_hash, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
            params![name, role.as_str(), minted.id, minted.hash, now],
        )?;
        if added == 0 {
            return Err(StoreError::UserExists(name.to_string()));
        }
        let user = User {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            role,
            created_ms: now,
        };
        Ok((user, minted.token))
    }

    /// Adds an admin named `name` only when the store has no user at all;
    /// returns it with its token, or `None` when users exist. Safe when
    /// several processes start at once on one file: one of them adds it.
    pub fn first_admin(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        check_name(name)?;
        let minted = secret::mint()?;
        let conn = self.conn();
        let now = now_ms();
        let added = conn.execute(
            "INSERT INTO users (name, role, token_id, token_hash, created_ms)
             SELECT ?1, 'admin', ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM users)",
            params![name, minted.id, minted.hash, now],
        )?;
        if added == 0 {
            return Ok(None);
        }
        let user = User {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            role: Role::Admin,
            created_ms: now,
        };
        Ok(Some((user, minted.token)))
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let users = stmt
            .query_map([], row_to_user)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(users)
    }

    /// The user named `name`, if any.
    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE name = ?1"),
                [name],
                row_to_user,
            )
            .optional()?)
    }

    /// Removes a user, their sessions and the dashboards they own.
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let removed = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        if removed == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Gives a user a new token (the old one stops working at once, and so
    /// do the user's browser sessions); returns the new token.
    pub fn rotate_token(&self, name: &str) -> Result<String, StoreError> {
        let minted = secret::mint()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE users SET token_id = ?1, token_hash = ?2 WHERE name = ?3",
            params![minted.id, minted.hash, name],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        tx.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )?;
        tx.commit()?;
        Ok(minted.token)
    }

    /// The user a token belongs to; `None` for anything else.
    pub fn authenticate_token(&self, token: &str) -> Result<Option<User>, StoreError> {
        let Some((id, presented)) = secret::split(token) else {
            return Ok(None);
        };
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("SELECT {COLUMNS}, token_hash FROM users WHERE token_id = ?1"),
                [id],
                |r| Ok((row_to_user(r)?, r.get::<_, Vec<u8>>(4)?)),
            )
            .optional()?;
        Ok(found.and_then(|(user, hash)| secret::matches(presented, &hash).then_some(user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_and_go_and_tokens_rotate() {
        let store = Store::in_memory().unwrap();
        let (admin, token) = store.first_admin("admin").unwrap().unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert!(store.first_admin("other").unwrap().is_none());
        assert_eq!(store.authenticate_token(&token).unwrap(), Some(admin));

        let (bob, bob_token) = store.add_user("bob", Role::Viewer).unwrap();
        assert!(matches!(
            store.add_user("bob", Role::Editor),
            Err(StoreError::UserExists(_))
        ));
        assert!(matches!(
            store.add_user("no spaces", Role::Editor),
            Err(StoreError::BadName(_))
        ));
        let new = store.rotate_token("bob").unwrap();
        assert_eq!(store.authenticate_token(&bob_token).unwrap(), None);
        assert_eq!(store.authenticate_token(&new).unwrap(), Some(bob));
        store.remove_user("bob").unwrap();
        assert_eq!(store.authenticate_token(&new).unwrap(), None);
        assert!(matches!(
            store.remove_user("bob"),
            Err(StoreError::NoSuchUser(_))
        ));
        assert_eq!(store.users().unwrap().len(), 1);
    }
}
