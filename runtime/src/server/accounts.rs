//! Signing in and out (`/v1/session`) and managing users (`/v1/users`, admins only).

use bytes::Bytes;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::auth::{self, Caller, Denied, Via};
use super::replies::{json_with, object, only, string_field};
use super::AppState;
use crate::store::{sessions, Role, StoreError};

fn store(state: &AppState) -> Result<&crate::store::Store, Denied> {
    state.store.as_deref().ok_or_else(|| {
        Denied::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_store",
            "this server runs without a state store, so it keeps no users or dashboards.",
        )
    })
}

/// The store's error as a refusal: name problems are the caller's, the rest the server's.
fn refused(e: StoreError, path: &str) -> Denied {
    match e {
        StoreError::UserExists(_) => {
            Denied::new(StatusCode::CONFLICT, "user_exists", e.to_string()).at(path)
        }
        StoreError::NoSuchUser(_) => {
            Denied::new(StatusCode::NOT_FOUND, "no_such_user", e.to_string()).at(path)
        }
        StoreError::BadName(_) => Denied::bad_request("bad_name", path, e.to_string()),
        other => Denied::store(other),
    }
}

/// `POST /v1/session {"token": "..."}`: the session cookie and the CSRF token.
pub fn sign_in(body: Bytes, state: AppState) -> Result<Response, Denied> {
    let store = store(&state)?;
    let map = object(&body)?;
    only(&map, &["token"])?;
    let token = string_field(&map, "token")?;
    let user = store
        .authenticate_token(token)
        .map_err(Denied::store)?
        .ok_or_else(|| {
            Denied::unauthenticated(
                "this token is not valid (it may have been rotated or its user removed); ask an admin for a new one.",
            )
            .at("token")
        })?;
    let (session, cookie) = store.open_session(&user).map_err(Denied::store)?;
    let body = json!({"user": user, "csrf": session.csrf, "expires_ms": session.expires_ms});
    let mut response = json_with(StatusCode::OK, &body);
    let value = auth::session_cookie(&cookie, sessions::LIFETIME_MS / 1000);
    if let Ok(v) = warp::http::HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(warp::http::header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /v1/session`: who is signed in, and the CSRF token of a cookie session.
pub fn whoami(caller: Caller, state: AppState) -> Result<Response, Denied> {
    let (via, csrf) = match &caller.via {
        Via::Bearer => ("token", None),
        Via::Cookie { csrf, .. } => ("cookie", Some(csrf.clone())),
        Via::Open => ("none", None),
    };
    Ok(json_with(
        StatusCode::OK,
        &json!({"user": caller.user, "via": via, "csrf": csrf, "auth": state.auth_required}),
    ))
}

/// `DELETE /v1/session`: signs out (ends the session and clears the cookie).
pub fn sign_out(caller: Caller, state: AppState) -> Result<Response, Denied> {
    if let (Via::Cookie { session, .. }, Some(store)) = (&caller.via, &state.store) {
        store.close_session(session).map_err(Denied::store)?;
    }
    let mut response =
        warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
    if let Ok(v) = warp::http::HeaderValue::from_str(&auth::cleared_cookie()) {
        response
            .headers_mut()
            .insert(warp::http::header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /v1/users`: every user (admins).
pub fn list(caller: Caller, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Admin, "Listing users")?;
    let users = store(&state)?.users().map_err(Denied::store)?;
    Ok(json_with(StatusCode::OK, &json!({ "users": users })))
}

/// `POST /v1/users {"name", "role"}`: adds a user and returns its token, once (admins).
pub fn add(caller: Caller, body: Bytes, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Admin, "Adding users")?;
    let store = store(&state)?;
    let map = object(&body)?;
    only(&map, &["name", "role"])?;
    let name = string_field(&map, "name")?;
    let role = string_field(&map, "role")?;
    let role = Role::parse(role).ok_or_else(|| {
        Denied::bad_request(
            "bad_role",
            "role",
            format!("{role:?} is not a role; write viewer, editor or admin."),
        )
    })?;
    let (user, token) = store.add_user(name, role).map_err(|e| refused(e, "name"))?;
    Ok(json_with(
        StatusCode::CREATED,
        &json!({"user": user, "token": token}),
    ))
}

/// `DELETE /v1/users/{name}`: removes a user, their sessions and dashboards (admins).
pub fn remove(caller: Caller, name: String, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Admin, "Removing users")?;
    if name == caller.user.name {
        return Err(Denied::new(
            StatusCode::CONFLICT,
            "removing_yourself",
            "you cannot remove yourself; ask another admin.",
        ));
    }
    store(&state)?
        .remove_user(&name)
        .map_err(|e| refused(e, ""))?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// `POST /v1/users/{name}/token`: a new token for a user, once; the old one stops working (admins).
pub fn rotate(caller: Caller, name: String, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Admin, "Rotating tokens")?;
    let token = store(&state)?
        .rotate_token(&name)
        .map_err(|e| refused(e, ""))?;
    Ok(json_with(
        StatusCode::OK,
        &json!({"name": name, "token": token}),
    ))
}

/// The state store of `state`, or 503.
pub fn require_store(state: &AppState) -> Result<&crate::store::Store, Denied> {
    store(state)
}
