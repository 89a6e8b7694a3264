//! Who is asking: bearer tokens, session cookies, CSRF, and the rule for
//! running without authentication.
//!
//! Every `/v1` route but `POST /v1/session` (signing in) runs [`caller`]
//! after its path matched, so an unknown path is still a 404 and a known
//! one without credentials a 401.
//!
//! - `Authorization: Bearer <token>` is how programs ask. Such requests are
//!   exempt from CSRF checks: a browser never attaches that header by itself.
//! - The browser signs in with its token at `POST /v1/session` and gets the
//!   `statflow_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`)
//!   and a CSRF token; every request that changes something (any method but
//!   GET and HEAD) made with the cookie must carry that token in
//!   `X-CSRF-Token`, or it is refused with 403 `csrf`.
//! - With authentication off (`--no-auth`, loopback only), a request with
//!   no credentials acts as the built-in admin [`LOCAL_USER`].

use std::net::SocketAddr;

use warp::http::{Method, StatusCode};
use warp::Filter;

use super::AppState;
use crate::store::{secret, Role, User};

/// The session cookie's name.
pub const COOKIE: &str = "statflow_session";

/// The user every unauthenticated request acts as when authentication is off.
pub const LOCAL_USER: &str = "local";

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An `Authorization: Bearer` token.
    Bearer,
    /// The session cookie (its session id and CSRF token).
    Cookie {
        /// The session's id.
        session: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// Nothing: authentication is off.
    Open,
}

/// Who is asking, and how they proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// How.
    pub via: Via,
}

impl Caller {
    /// A 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role, doing: &str) -> Result<(), Denied> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(Denied::forbidden(format!(
                "{doing} needs the {role} role; {} is a {}.",
                self.user.name, self.user.role
            )))
        }
    }
}

/// A refused request: becomes `{"error": {code, message, path}}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// 400, 401, 403, 404, 409 or 503.
    pub status: StatusCode,
    /// A stable code.
    pub code: &'static str,
    /// One sentence for a person.
    pub message: String,
    /// The offending field, or empty.
    pub path: String,
}

impl warp::reject::Reject for Denied {}

impl Denied {
    /// A refusal with this status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Denied {
        Denied {
            status,
            code,
            message: message.into(),
            path: String::new(),
        }
    }

    /// The same refusal, about the field at `path`.
    pub fn at(mut self, path: impl Into<String>) -> Denied {
        self.path = path.into();
        self
    }

    /// 401: no valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Denied {
        Denied::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: known, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Denied {
        Denied::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400: a malformed body.
    pub fn bad_request(code: &'static str, path: &str, message: impl Into<String>) -> Denied {
        Denied::new(StatusCode::BAD_REQUEST, code, message).at(path)
    }

    /// 500: the state store failed.
    pub fn store(e: impl std::fmt::Display) -> Denied {
        Denied::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            e.to_string(),
        )
    }
}

/// Refuses `--no-auth` on any address but loopback: without authentication
/// anyone who can reach the port may read every number and change every
/// dashboard.
pub fn check_no_auth(address: SocketAddr) -> Result<(), String> {
    if address.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--no-auth is only allowed on a loopback address (127.0.0.1 or [::1]), not {address}: \
             anyone who can reach it could read and change everything. Drop --no-auth and sign in \
             with a token, or serve on --http 127.0.0.1:{}.",
            address.port()
        ))
    }
}

/// The caller of a request, or the rejection that refuses it.
pub fn caller(
    state: AppState,
) -> impl Filter<Extract = (Caller,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::cookie::optional::<String>(COOKIE))
        .and(warp::header::optional::<String>("x-csrf-token"))
        .and(warp::any().map(move || state.clone()))
        .and_then(
            |method: Method,
             authorization: Option<String>,
             cookie: Option<String>,
             csrf: Option<String>,
             state: AppState| async move {
                identify(&state, &method, authorization, cookie, csrf).map_err(warp::reject::custom)
            },
        )
}

/// The rules of [`caller`], on plain values.
pub fn identify(
    state: &AppState,
    method: &Method,
    authorization: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
) -> Result<Caller, Denied> {
    if let Some(header) = authorization {
        let Some(store) = &state.store else {
            return Err(Denied::unauthenticated(
                "this server keeps no users, so it takes no tokens.",
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Denied::unauthenticated("the Authorization header must read `Bearer <token>`.")
            })?;
        return match store.authenticate_token(token).map_err(Denied::store)? {
            Some(user) => Ok(Caller {
                user,
                via: Via::Bearer,
            }),
            None => Err(Denied::unauthenticated(
                "this token is not valid (it may have been rotated or its user removed); ask an admin for a new one.",
            )),
        };
    }
    if let (Some(value), Some(store)) = (cookie, &state.store) {
        if let Some(session) = store.session(&value).map_err(Denied::store)? {
            let changes = !(method == Method::GET || method == Method::HEAD);
            if changes && !csrf.is_some_and(|c| secret::same(&c, &session.csrf)) {
                return Err(Denied::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "this request changes something and came with the session cookie but without the session's X-CSRF-Token header; reload the app.",
                ));
            }
            return Ok(Caller {
                user: session.user,
                via: Via::Cookie {
                    session: session.id,
                    csrf: session.csrf,
                },
            });
        }
        if state.auth_required {
            return Err(Denied::unauthenticated(
                "your session has ended (signed out, expired, or the token was rotated); sign in again.",
            ));
        }
    }
    if !state.auth_required {
        return Ok(Caller {
            user: state.local_user.clone().unwrap_or(User {
                id: 0,
                name: LOCAL_USER.to_string(),
                role: Role::Admin,
                created_ms: 0,
            }),
            via: Via::Open,
        });
    }
    Err(Denied::unauthenticated(
        "sign in first: send `Authorization: Bearer <token>`, or sign in at / with your token.",
    ))
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn session_cookie(value: &str, max_age_s: i64) -> String {
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_auth_is_refused_off_loopback() {
        assert!(check_no_auth("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(check_no_auth("[::1]:8080".parse().unwrap()).is_ok());
        for addr in ["0.0.0.0:8080", "192.0.2.1:80", "[::]:8080"] {
            let e = check_no_auth(addr.parse().unwrap()).unwrap_err();
            assert!(e.contains("loopback"), "{e}");
        }
    }
}
