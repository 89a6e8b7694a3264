//! Dashboards and their sharing.
//!
//! A dashboard belongs to the user who made it. It is private, shared with
//! named users (each with view or edit access), visible to everyone signed
//! in, or both. What a caller may do with one is [`Dashboard::access_for`]:
//! the one rule the HTTP routes apply.
//!
//! The store keeps a dashboard's layout (`spec`: panels, their queries, the
//! time range and refresh) as JSON it does not interpret; the app owns its
//! shape, and the server checks only that it is an object of bounded size.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::users::{Role, User};
use super::{now_ms, secret, Store, StoreError};

/// What a caller may do with a dashboard; each level includes the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Open it and run its queries.
    View,
    /// Also change its title and panels.
    Edit,
    /// Also share, unshare and delete it: its owner, and admins.
    Owner,
}

/// One named user a dashboard is shared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The user's name.
    pub user: String,
    /// `view` or `edit` (never `owner`).
    pub access: Access,
}

/// Who besides the owner may open a dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharing {
    /// Everyone signed in may view it.
    #[serde(default)]
    pub everyone: bool,
    /// Named users, by name.
    #[serde(default)]
    pub users: Vec<Share>,
}

/// A dashboard as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dashboard {
    /// A random id; the dashboard's link is `/#/d/<id>`.
    pub id: String,
    /// The title.
    pub title: String,
    /// The owner's name.
    pub owner: String,
    /// The owner's row id.
    #[serde(skip)]
    pub owner_id: i64,
    /// Panels, time range, refresh: the app's JSON.
    pub spec: Json,
    /// Who else may open it.
    pub sharing: Sharing,
    /// When it was made, in Unix milliseconds.
    pub created_ms: i64,
    /// When it last changed, in Unix milliseconds.
    pub updated_ms: i64,
}

/// What a caller sends to make or change a dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardInput {
    /// The title.
    pub title: String,
    /// The app's JSON.
    pub spec: Json,
}

impl Dashboard {
    /// What `user` may do with this dashboard; `None` when they may not see it.
    pub fn access_for(&self, user: &User) -> Option<Access> {
        if user.id == self.owner_id || user.role == Role::Admin {
            return Some(Access::Owner);
        }
        let named = self
            .sharing
            .users
            .iter()
            .filter(|s| s.user == user.name)
            .map(|s| s.access.min(Access::Edit))
            .max();
        let everyone = self.sharing.everyone.then_some(Access::View);
        named.max(everyone)
    }
}

const SELECT: &str = "SELECT d.id, d.title, u.name, d.owner_id, d.spec, d.everyone,
                             d.created_ms, d.updated_ms
                      FROM dashboards d JOIN users u ON u.id = d.owner_id";

fn row_to_dashboard(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dashboard> {
    let spec: String = r.get(4)?;
    Ok(Dashboard {
        id: r.get(0)?,
        title: r.get(1)?,
        owner: r.get(2)?,
        owner_id: r.get(3)?,
        spec: serde_json::from_str(&spec).unwrap_or(Json::Null),
        sharing: Sharing {
            everyone: r.get::<_, i64>(5)? != 0,
            users: Vec::new(),
        },
        created_ms: r.get(6)?,
        updated_ms: r.get(7)?,
    })
}

impl Store {
    /// Makes a private dashboard owned by `owner`.
    pub fn create_dashboard(
        &self,
        owner: &User,
        input: &DashboardInput,
    ) -> Result<Dashboard, StoreError> {
        let id = secret::random_hex(8)?;
        let now = now_ms();
        self.conn().execute(
            "INSERT INTO dashboards (id, owner_id, title, everyone, spec, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5)",
            params![id, owner.id, input.title, input.spec.to_string(), now],
        )?;
        Ok(Dashboard {
            id,
            title: input.title.clone(),
            owner: owner.name.clone(),
            owner_id: owner.id,
            spec: input.spec.clone(),
            sharing: Sharing::default(),
            created_ms: now,
            updated_ms: now,
        })
    }

    /// The dashboard with this id, with its sharing.
    pub fn dashboard(&self, id: &str) -> Result<Option<Dashboard>, StoreError> {
        let conn = self.conn();
        let found = conn
            .query_row(&format!("{SELECT} WHERE d.id = ?1"), [id], row_to_dashboard)
            .optional()?;
        let Some(mut d) = found else {
            return Ok(None);
        };
        d.sharing.users = shares(&conn, &d.id)?;
        Ok(Some(d))
    }

    /// Every dashboard `user` may see, most recently changed first.
    pub fn dashboards_for(&self, user: &User) -> Result<Vec<Dashboard>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{SELECT} WHERE ?2 = 'admin' OR d.owner_id = ?1 OR d.everyone = 1
               OR d.id IN (SELECT dashboard_id FROM dashboard_shares WHERE user_id = ?1)
             ORDER BY d.updated_ms DESC, d.id"
        ))?;
        let mut all = stmt
            .query_map(params![user.id, user.role.as_str()], row_to_dashboard)?
            .collect::<Result<Vec<_>, _>>()?;
        for d in &mut all {
            d.sharing.users = shares(&conn, &d.id)?;
        }
        Ok(all)
    }

    /// Changes a dashboard's title and spec; `false` when there is no such dashboard.
    pub fn update_dashboard(&self, id: &str, input: &DashboardInput) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE dashboards SET title = ?2, spec = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, input.title, input.spec.to_string(), now_ms()],
        )?;
        Ok(changed > 0)
    }

    /// Deletes a dashboard; `false` when there was none.
    pub fn delete_dashboard(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM dashboards WHERE id = ?1", [id])?
            > 0)
    }

    /// Replaces a dashboard's sharing. Every named user must exist: the
    /// names that do not come back (by their index in `sharing.users`) and
    /// nothing changes.
    pub fn set_sharing(&self, id: &str, sharing: &Sharing) -> Result<Vec<usize>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ids = Vec::new();
        let mut unknown = Vec::new();
        for (i, share) in sharing.users.iter().enumerate() {
            let found: Option<i64> = tx
                .query_row("SELECT id FROM users WHERE name = ?1", [&share.user], |r| {
                    r.get(0)
                })
                .optional()?;
            match found {
                Some(user) => ids.push((user, share.access.min(Access::Edit))),
                None => unknown.push(i),
            }
        }
        if !unknown.is_empty() {
            return Ok(unknown);
        }
        tx.execute(
            "UPDATE dashboards SET everyone = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, sharing.everyone, now_ms()],
        )?;
        tx.execute("DELETE FROM dashboard_shares WHERE dashboard_id = ?1", [id])?;
        for (user, access) in ids {
            let access = if access == Access::Edit {
                "edit"
            } else {
                "view"
            };
            tx.execute(
                "INSERT INTO dashboard_shares (dashboard_id, user_id, access) VALUES (?1, ?2, ?3)
                 ON CONFLICT (dashboard_id, user_id) DO UPDATE SET access = excluded.access",
                params![id, user, access],
            )?;
        }
        tx.commit()?;
        Ok(Vec::new())
    }
}

fn shares(conn: &rusqlite::Connection, id: &str) -> Result<Vec<Share>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT u.name, s.access FROM dashboard_shares s JOIN users u ON u.id = s.user_id
         WHERE s.dashboard_id = ?1 ORDER BY u.name",
    )?;
    let shares = stmt
        .query_map([id], |r| {
            let access: String = r.get(1)?;
            Ok(Share {
                user: r.get(0)?,
                access: if access == "edit" {
                    Access::Edit
                } else {
                    Access::View
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sharing_decides_who_sees_what() {
        let store = Store::in_memory().unwrap();
        let (ann, _) = store.add_user("ann", Role::Editor).unwrap();
        let (bob, _) = store.add_user("bob", Role::Viewer).unwrap();
        let (cat, _) = store.add_user("cat", Role::Viewer).unwrap();
        let (root, _) = store.add_user("root", Role::Admin).unwrap();
        let input = DashboardInput {
            title: "Rewards".into(),
            spec: json!({"panels": []}),
        };
        let d = store.create_dashboard(&ann, &input).unwrap();
        assert_eq!(d.access_for(&ann), Some(Access::Owner));
        assert_eq!(d.access_for(&root), Some(Access::Owner));
        assert_eq!(d.access_for(&bob), None);
        assert!(store.dashboards_for(&bob).unwrap().is_empty());

        let sharing = Sharing {
            everyone: false,
            users: vec![Share {
                user: "bob".into(),
                access: Access::Edit,
            }],
        };
        assert!(store.set_sharing(&d.id, &sharing).unwrap().is_empty());
        let d = store.dashboard(&d.id).unwrap().unwrap();
        assert_eq!(d.access_for(&bob), Some(Access::Edit));
        assert_eq!(d.access_for(&cat), None);
        assert_eq!(store.dashboards_for(&bob).unwrap().len(), 1);

        let unknown = Sharing {
            everyone: true,
            users: vec![Share {
                user: "nobody".into(),
                access: Access::View,
            }],
        };
        assert_eq!(store.set_sharing(&d.id, &unknown).unwrap(), vec![0]);
        let everyone = Sharing {
            everyone: true,
            users: Vec::new(),
        };
        store.set_sharing(&d.id, &everyone).unwrap();
        let d = store.dashboard(&d.id).unwrap().unwrap();
        assert_eq!(d.access_for(&cat), Some(Access::View));
        assert_eq!(d.access_for(&bob), Some(Access::View));

        assert!(store.delete_dashboard(&d.id).unwrap());
        assert!(store.dashboard(&d.id).unwrap().is_none());
    }
}
