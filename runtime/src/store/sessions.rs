//! Browser sessions: opened by signing in with a token, carried in an
//! `HttpOnly` cookie, ended by signing out, by expiry, or by rotating the
//! user's token.
//!
//! A session holds a CSRF token that the app sends back in `X-CSRF-Token`
//! with every state-changing request: a page on another site can make the
//! browser send the cookie (where `SameSite` does not stop it) but cannot
//! read the CSRF token.

use rusqlite::{params, OptionalExtension};

use super::users::{Role, User};
use super::{now_ms, secret, Store, StoreError};

/// How long a session lasts after signing in.
pub const LIFETIME_MS: i64 = 7 * 24 * 3_600_000;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's lookup id (the cookie's first part).
    pub id: String,
    /// Who signed in.
    pub user: User,
    /// What the app must send in `X-CSRF-Token`.
    pub csrf: String,
    /// When the session ends, in Unix milliseconds.
    pub expires_ms: i64,
}

impl Store {
    /// Opens a session for `user`; returns it and the cookie value, which is
    /// shown only now.
    pub fn open_session(&self, user: &User) -> Result<(Session, String), StoreError> {
        let minted = secret::mint()?;
        let csrf = secret::random_hex(secret::SECRET_BYTES)?;
        let now = now_ms();
        let expires_ms = now + LIFETIME_MS;
        let conn = self.conn();
        // Expired sessions are swept whenever a new one opens.
        conn.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now])?;
        conn.execute(
            "INSERT INTO sessions (id, secret_hash, user_id, csrf, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![minted.id, minted.hash, user.id, csrf, now, expires_ms],
        )?;
        let session = Session {
            id: minted.id,
            user: user.clone(),
            csrf,
            expires_ms,
        };
        Ok((session, minted.token))
    }

    /// The live session a cookie value belongs to; `None` for anything else.
    pub fn session(&self, cookie: &str) -> Result<Option<Session>, StoreError> {
        let Some((id, presented)) = secret::split(cookie) else {
            return Ok(None);
        };
        let conn = self.conn();
        let found = conn
            .query_row(
                "SELECT s.secret_hash, s.csrf, s.expires_ms, u.id, u.name, u.role, u.created_ms
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
                [id],
                |r| {
                    let role: String = r.get(5)?;
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        Session {
                            id: id.to_string(),
                            csrf: r.get(1)?,
                            expires_ms: r.get(2)?,
                            user: User {
                                id: r.get(3)?,
                                name: r.get(4)?,
                                role: Role::parse(&role).unwrap_or(Role::Viewer),
                                created_ms: r.get(6)?,
                            },
                        },
                    ))
                },
            )
            .optional()?;
        Ok(found.and_then(|(hash, session)| {
            (secret::matches(presented, &hash) && session.expires_ms > now_ms()).then_some(session)
        }))
    }

    /// Ends a session.
    pub fn close_session(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_authenticate_and_close() {
        let store = Store::in_memory().unwrap();
        let (user, _) = store.add_user("ann", Role::Editor).unwrap();
        let (session, cookie) = store.open_session(&user).unwrap();
        assert_eq!(store.session(&cookie).unwrap(), Some(session.clone()));
        assert_eq!(store.session("sf_nonsense").unwrap(), None);
        store.close_session(&session.id).unwrap();
        assert_eq!(store.session(&cookie).unwrap(), None);
    }

    #[test]
    fn rotating_the_token_ends_the_sessions() {
        let store = Store::in_memory().unwrap();
        let (user, _) = store.add_user("ann", Role::Editor).unwrap();
        let (_, cookie) = store.open_session(&user).unwrap();
        store.rotate_token("ann").unwrap();
        assert_eq!(store.session(&cookie).unwrap(), None);
    }
}
