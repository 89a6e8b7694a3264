//! Dashboards and their sharing.
//!
//! A dashboard belongs to the user who made it. It is private, shared with
//! named users (each with view or edit access), visible to everyone signed
//! in, or both. What a caller may do with one is [`Dashboard::access_for`]:
//! the one rule the HTTP routes apply.
//!
//! statflow keeps a few dashboards itself ([`Store::keep_builtin`]): it
//! makes them, upgrades them while nobody has edited them, and leaves them
//! alone once someone has.
//!
//! The store keeps a dashboard's layout (`spec`: panels, their queries, the
//! time range and refresh) as JSON it does not interpret; the app owns its
//! shape, and the server checks only that it is an object of bounded size.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
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
    /// Which dashboard statflow keeps this one as (`statflow-health`);
    /// `None` for the ones people made.
    pub builtin: Option<String>,
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
                             d.created_ms, d.updated_ms, d.builtin
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
        builtin: r.get(8)?,
    })
}

/// What [`Store::keep_builtin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Made it, owned by the admin named here and viewable by everyone signed in.
    Created {
        /// Its id.
        id: String,
        /// Its owner.
        owner: String,
    },
    /// It was as statflow last wrote it; it now has the new title and spec.
    Upgraded {
        /// Its id.
        id: String,
    },
    /// It already has the title and spec wanted.
    Current {
        /// Its id.
        id: String,
    },
    /// Someone changed it since statflow wrote it: left as it is.
    Edited {
        /// Its id.
        id: String,
    },
    /// Not wanted any more and never edited: deleted.
    Removed {
        /// Its id.
        id: String,
    },
    /// Neither wanted nor there.
    Absent,
    /// Wanted, but no admin exists to own it.
    NoOwner,
}

/// The title and spec statflow writes, as `builtin_written` holds them.
fn written(input: &DashboardInput) -> String {
    serde_json::json!({"title": input.title, "spec": input.spec}).to_string()
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
            builtin: None,
        })
    }

    /// Keeps the dashboard statflow knows as `key` in line with `wanted`,
    /// in one write transaction (the processes of a local cluster share the
    /// store and start together; one of them does the work):
    ///
    /// - missing and wanted: made, owned by the oldest admin, viewable by
    ///   everyone signed in (admins may edit it; others may duplicate it);
    /// - as statflow last wrote it: upgraded to `wanted`, or deleted when
    ///   nothing is wanted any more;
    /// - changed by someone (title or spec): never touched again.
    ///
    /// Sharing is not compared: sharing it differently is not editing it.
    pub fn keep_builtin(
        &self,
        key: &str,
        wanted: Option<&DashboardInput>,
    ) -> Result<Kept, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(String, String, String, Option<String>)> = tx
            .query_row(
                "SELECT id, title, spec, builtin_written FROM dashboards WHERE builtin = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let kept = match (found, wanted) {
            (None, None) => Kept::Absent,
            (None, Some(input)) => {
                let admin: Option<(i64, String)> = tx
                    .query_row(
                        "SELECT id, name FROM users WHERE role = 'admin' ORDER BY id LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((owner_id, owner)) = admin else {
                    return Ok(Kept::NoOwner);
                };
                let id = secret::random_hex(8)?;
                tx.execute(
                    "INSERT INTO dashboards (id, owner_id, title, everyone, spec, created_ms,
                                             updated_ms, builtin, builtin_written)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?5, ?6, ?7)",
                    params![
                        id,
                        owner_id,
                        input.title,
                        input.spec.to_string(),
                        now_ms(),
                        key,
                        written(input)
                    ],
                )?;
                Kept::Created { id, owner }
            }
            (Some((id, title, spec, last)), wanted) => {
                let now: Json = serde_json::json!({
                    "title": title,
                    "spec": serde_json::from_str::<Json>(&spec).unwrap_or(Json::Null),
                });
                let last: Option<Json> = last.and_then(|l| serde_json::from_str(&l).ok());
                if last.as_ref() != Some(&now) {
                    Kept::Edited { id }
                } else {
                    match wanted {
                        None => {
                            tx.execute("DELETE FROM dashboards WHERE id = ?1", [&id])?;
                            Kept::Removed { id }
                        }
                        Some(input)
                            if input.title == title && Some(&input.spec) == now.get("spec") =>
                        {
                            Kept::Current { id }
                        }
                        Some(input) => {
                            tx.execute(
                                "UPDATE dashboards SET title = ?2, spec = ?3, updated_ms = ?4,
                                                       builtin_written = ?5
                                 WHERE id = ?1",
                                params![
                                    id,
                                    input.title,
                                    input.spec.to_string(),
                                    now_ms(),
                                    written(input)
                                ],
                            )?;
                            Kept::Upgraded { id }
                        }
                    }
                }
            }
        };
        tx.commit()?;
        Ok(kept)
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

    #[test]
    fn a_builtin_dashboard_follows_statflow_until_someone_edits_it() {
        let store = Store::in_memory().unwrap();
        let v1 = DashboardInput {
            title: "statflow health".into(),
            spec: json!({"panels": [{"id": "records"}]}),
        };
        let v2 = DashboardInput {
            title: "statflow health".into(),
            spec: json!({"panels": [{"id": "records"}, {"id": "lag"}]}),
        };
        assert_eq!(
            store.keep_builtin("health", Some(&v1)).unwrap(),
            Kept::NoOwner
        );
        let (ann, _) = store.add_user("ann", Role::Editor).unwrap();
        let (root, _) = store.add_user("root", Role::Admin).unwrap();
        store.add_user("second", Role::Admin).unwrap();
        let Kept::Created { id, owner } = store.keep_builtin("health", Some(&v1)).unwrap() else {
            panic!("made")
        };
        assert_eq!(owner, "root", "the oldest admin owns it");
        let d = store.dashboard(&id).unwrap().unwrap();
        assert_eq!(d.builtin.as_deref(), Some("health"));
        assert_eq!(
            d.access_for(&ann),
            Some(Access::View),
            "everyone may view it"
        );
        assert_eq!(d.access_for(&root), Some(Access::Owner));
        assert_eq!(
            store.keep_builtin("health", Some(&v1)).unwrap(),
            Kept::Current { id: id.clone() }
        );
        assert_eq!(
            store.keep_builtin("health", Some(&v2)).unwrap(),
            Kept::Upgraded { id: id.clone() }
        );
        assert_eq!(store.dashboard(&id).unwrap().unwrap().spec, v2.spec);
        // Sharing it differently is not editing it.
        store.set_sharing(&id, &Sharing::default()).unwrap();
        assert_eq!(
            store.keep_builtin("health", Some(&v2)).unwrap(),
            Kept::Current { id: id.clone() }
        );
        // Not wanted and never edited: gone; wanted again: back.
        assert_eq!(
            store.keep_builtin("health", None).unwrap(),
            Kept::Removed { id: id.clone() }
        );
        assert_eq!(store.keep_builtin("health", None).unwrap(), Kept::Absent);
        let Kept::Created { id, .. } = store.keep_builtin("health", Some(&v1)).unwrap() else {
            panic!("made again")
        };
        // Someone renames it: statflow never touches it again.
        let renamed = DashboardInput {
            title: "our health".into(),
            spec: v1.spec.clone(),
        };
        store.update_dashboard(&id, &renamed).unwrap();
        for wanted in [Some(&v2), None] {
            assert_eq!(
                store.keep_builtin("health", wanted).unwrap(),
                Kept::Edited { id: id.clone() }
            );
        }
        assert_eq!(store.dashboard(&id).unwrap().unwrap().title, "our health");
        assert_eq!(
            store.dashboards_for(&ann).unwrap().len(),
            1,
            "made again, it is shared with everyone again"
        );
    }
}
