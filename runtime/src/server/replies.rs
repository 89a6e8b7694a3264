//! Small helpers shared by the JSON routes: reading a body, and turning a
//! result into a response.

use bytes::Bytes;
use serde_json::{json, Value as Json};
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use super::auth::Denied;

/// A refusal as `{"error": {code, message, path}}` with its status.
pub fn denied(d: &Denied) -> Response {
    let body = json!({"error": {"code": d.code, "message": d.message, "path": d.path}});
    let mut response = reply::with_status(reply::json(&body), d.status).into_response();
    if d.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            warp::http::header::WWW_AUTHENTICATE,
            warp::http::HeaderValue::from_static("Bearer realm=\"statflow\""),
        );
    }
    response
}

/// The response for a handler's result.
pub fn respond(result: Result<Response, Denied>) -> Response {
    result.unwrap_or_else(|d| denied(&d))
}

/// JSON with a status.
pub fn json_with(status: StatusCode, body: &Json) -> Response {
    reply::with_status(reply::json(body), status).into_response()
}

/// A body that must be a JSON object.
pub fn object(body: &Bytes) -> Result<serde_json::Map<String, Json>, Denied> {
    let value: Json = serde_json::from_slice(body).map_err(|e| {
        Denied::bad_request(
            "bad_json",
            "",
            format!("the body is not JSON ({e}); send a JSON object."),
        )
    })?;
    match value {
        Json::Object(map) => Ok(map),
        other => Err(Denied::bad_request(
            "bad_type",
            "",
            format!("the body must be a JSON object, not {}.", kind(&other)),
        )),
    }
}

/// A required string field.
pub fn string_field<'a>(
    map: &'a serde_json::Map<String, Json>,
    name: &str,
) -> Result<&'a str, Denied> {
    match map.get(name) {
        Some(Json::String(s)) => Ok(s),
        None | Some(Json::Null) => Err(Denied::bad_request(
            "missing_field",
            name,
            format!("`{name}` is required."),
        )),
        Some(other) => Err(Denied::bad_request(
            "bad_type",
            name,
            format!("`{name}` must be a string, not {}.", kind(other)),
        )),
    }
}

/// Refuses fields outside `known`.
pub fn only(map: &serde_json::Map<String, Json>, known: &[&str]) -> Result<(), Denied> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Denied::bad_request(
            "unknown_field",
            k,
            format!(
                "`{k}` is not a field here; the fields are {}.",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// "a number", "an array", ... for messages.
pub fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
