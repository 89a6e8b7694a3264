//! `/v1/dashboards`: make, read, change, delete and share dashboards.
//!
//! Who may do what is [`Dashboard::access_for`]: view to open, edit to
//! change, owner (the owner, or an admin) to share or delete. Making one
//! needs the editor role. A dashboard the caller may not see is a 403, not
//! a 404, so a shared link says "ask its owner" rather than "gone".

use bytes::Bytes;
use serde_json::{json, Map, Value as Json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::accounts::require_store;
use super::auth::{Caller, Denied};
use super::replies::{json_with, kind, object, only};
use super::AppState;
use crate::store::{Access, Dashboard, DashboardInput, Role, Share, Sharing};

/// The longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// The largest spec, as JSON text.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// A dashboard as the API shows it to `caller`: with the caller's access.
fn shown(d: &Dashboard, access: Access) -> Json {
    let mut v = serde_json::to_value(d).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        m.insert("access".into(), json!(access));
        m.insert("link".into(), json!(format!("/#/d/{}", d.id)));
    }
    v
}

/// The dashboard `id` if `caller` has at least `needed` access to it.
fn with_access(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Access,
    doing: &str,
) -> Result<(Dashboard, Access), Denied> {
    let store = require_store(state)?;
    let d = store.dashboard(id).map_err(Denied::store)?.ok_or_else(|| {
        Denied::new(
            StatusCode::NOT_FOUND,
            "no_such_dashboard",
            format!("there is no dashboard {id:?}; it may have been deleted."),
        )
    })?;
    match d.access_for(&caller.user) {
        Some(a) if a >= needed => Ok((d, a)),
        Some(_) => Err(Denied::forbidden(format!(
            "{doing} dashboard {:?} needs {} access; {} has less. Ask its owner, {}.",
            d.title,
            match needed {
                Access::Owner => "owner",
                Access::Edit => "edit",
                Access::View => "view",
            },
            caller.user.name,
            d.owner
        ))),
        None => Err(Denied::forbidden(format!(
            "dashboard {id:?} is not shared with {}; ask its owner to share it.",
            caller.user.name
        ))),
    }
}

/// Title and spec from a body; absent fields come from `old`.
fn input(map: &Map<String, Json>, old: Option<&Dashboard>) -> Result<DashboardInput, Denied> {
    only(map, &["title", "spec"])?;
    let title = match map.get("title") {
        Some(Json::String(t)) => {
            let t = t.trim();
            if t.is_empty() || t.chars().count() > MAX_TITLE {
                return Err(Denied::bad_request(
                    "bad_title",
                    "title",
                    format!("a title has 1 to {MAX_TITLE} characters."),
                ));
            }
            t.to_string()
        }
        None | Some(Json::Null) => match old {
            Some(d) => d.title.clone(),
            None => {
                return Err(Denied::bad_request(
                    "missing_field",
                    "title",
                    "`title` is required.",
                ))
            }
        },
        Some(other) => {
            return Err(Denied::bad_request(
                "bad_type",
                "title",
                format!("`title` must be a string, not {}.", kind(other)),
            ))
        }
    };
    let spec = match map.get("spec") {
        Some(s @ Json::Object(_)) => {
            if s.to_string().len() > MAX_SPEC_BYTES {
                return Err(Denied::bad_request(
                    "spec_too_large",
                    "spec",
                    format!("a dashboard's spec holds at most {MAX_SPEC_BYTES} bytes of JSON."),
                ));
            }
            s.clone()
        }
        None | Some(Json::Null) => old.map_or_else(|| json!({}), |d| d.spec.clone()),
        Some(other) => {
            return Err(Denied::bad_request(
                "bad_type",
                "spec",
                format!("`spec` must be an object, not {}.", kind(other)),
            ))
        }
    };
    Ok(DashboardInput { title, spec })
}

/// `GET /v1/dashboards`: every dashboard the caller may open.
pub fn list(caller: Caller, state: AppState) -> Result<Response, Denied> {
    let store = require_store(&state)?;
    let all = store.dashboards_for(&caller.user).map_err(Denied::store)?;
    let shown: Vec<Json> = all
        .iter()
        .filter_map(|d| d.access_for(&caller.user).map(|a| shown(d, a)))
        .collect();
    Ok(json_with(StatusCode::OK, &json!({ "dashboards": shown })))
}

/// `POST /v1/dashboards {"title", "spec"}`: a new private dashboard (editors and admins).
pub fn create(caller: Caller, body: Bytes, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Editor, "Making dashboards")?;
    let store = require_store(&state)?;
    let input = input(&object(&body)?, None)?;
    let d = store
        .create_dashboard(&caller.user, &input)
        .map_err(Denied::store)?;
    Ok(json_with(StatusCode::CREATED, &shown(&d, Access::Owner)))
}

/// `GET /v1/dashboards/{id}`: one dashboard (view access).
pub fn get(caller: Caller, id: String, state: AppState) -> Result<Response, Denied> {
    let (d, access) = with_access(&state, &caller, &id, Access::View, "Opening")?;
    Ok(json_with(StatusCode::OK, &shown(&d, access)))
}

/// `PUT /v1/dashboards/{id} {"title"?, "spec"?}`: changes it (edit access).
pub fn update(
    caller: Caller,
    id: String,
    body: Bytes,
    state: AppState,
) -> Result<Response, Denied> {
    let (old, access) = with_access(&state, &caller, &id, Access::Edit, "Changing")?;
    let input = input(&object(&body)?, Some(&old))?;
    let store = require_store(&state)?;
    store.update_dashboard(&id, &input).map_err(Denied::store)?;
    let d = store.dashboard(&id).map_err(Denied::store)?.unwrap_or(old);
    Ok(json_with(StatusCode::OK, &shown(&d, access)))
}

/// `DELETE /v1/dashboards/{id}`: deletes it (owner or admin).
pub fn delete(caller: Caller, id: String, state: AppState) -> Result<Response, Denied> {
    with_access(&state, &caller, &id, Access::Owner, "Deleting")?;
    require_store(&state)?
        .delete_dashboard(&id)
        .map_err(Denied::store)?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// `PUT /v1/dashboards/{id}/sharing {"everyone", "users": [{"user", "access"}]}`:
/// replaces who may open it (owner or admin).
pub fn share(caller: Caller, id: String, body: Bytes, state: AppState) -> Result<Response, Denied> {
    with_access(&state, &caller, &id, Access::Owner, "Sharing")?;
    let map = object(&body)?;
    only(&map, &["everyone", "users"])?;
    let everyone = match map.get("everyone") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            return Err(Denied::bad_request(
                "bad_type",
                "everyone",
                format!("`everyone` must be true or false, not {}.", kind(other)),
            ))
        }
    };
    let mut users = Vec::new();
    match map.get("users") {
        None | Some(Json::Null) => {}
        Some(Json::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                users.push(share_item(item, &format!("users[{i}]"))?);
            }
        }
        Some(other) => {
            return Err(Denied::bad_request(
                "bad_type",
                "users",
                format!(
                    "`users` must be an array of {{\"user\", \"access\"}}, not {}.",
                    kind(other)
                ),
            ))
        }
    }
    let sharing = Sharing { everyone, users };
    let store = require_store(&state)?;
    let unknown = store.set_sharing(&id, &sharing).map_err(Denied::store)?;
    if let Some(&i) = unknown.first() {
        return Err(Denied::bad_request(
            "unknown_user",
            &format!("users[{i}].user"),
            format!("no user is named {:?}.", sharing.users[i].user),
        ));
    }
    let d = store
        .dashboard(&id)
        .map_err(Denied::store)?
        .ok_or_else(|| {
            Denied::new(
                StatusCode::NOT_FOUND,
                "no_such_dashboard",
                "the dashboard was deleted meanwhile.",
            )
        })?;
    Ok(json_with(StatusCode::OK, &shown(&d, Access::Owner)))
}

fn share_item(item: &Json, path: &str) -> Result<Share, Denied> {
    let Json::Object(m) = item else {
        return Err(Denied::bad_request(
            "bad_type",
            path,
            format!(
                "a share is {{\"user\": NAME, \"access\": \"view\" or \"edit\"}}, not {}.",
                kind(item)
            ),
        ));
    };
    let user = match m.get("user") {
        Some(Json::String(s)) => s.clone(),
        _ => {
            return Err(Denied::bad_request(
                "missing_field",
                &format!("{path}.user"),
                "each share names a `user`.",
            ))
        }
    };
    let access = match m.get("access").and_then(Json::as_str) {
        Some("view") | None => Access::View,
        Some("edit") => Access::Edit,
        Some(other) => {
            return Err(Denied::bad_request(
                "bad_access",
                &format!("{path}.access"),
                format!("{other:?} is not an access; write view or edit."),
            ))
        }
    };
    Ok(Share { user, access })
}
