//! Authorization end to end: the permission matrix (anonymous, viewer,
//! editor, owner, admin × every route), dashboard CRUD and sharing,
//! sessions with their cookie flags and CSRF, token rotation, the no-auth
//! mode and its refusal off loopback, the first admin printed at start and
//! the `statflow user` and `statflow query --token` commands.

mod cli;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::server::{self, AppState, AuthMode};
use statflow::runtime::store::{Role, Store};

const TOPOLOGY: &str = r#"
source s = file("events.jsonl") { time = ts as epoch_millis }
metric hits from s {
  dimensions game_id
  window     tumbling 1m
  measures { n = count() }
}
"#;

pub(crate) const QUERY: &str = r#"{"metric": "hits", "time_window": {"from": "2024-08-20T00:00:00Z", "to": "2024-08-20T01:00:00Z"}, "group_by": ["game_id"]}"#;

pub(crate) fn write_events(dir: &Path) {
    let mut file = std::fs::File::create(dir.join("events.jsonl")).unwrap();
    for i in 0..60i64 {
        let line = json!({"game_id": format!("g{}", i % 3), "ts": 1_724_112_000_000 + i * 1_000});
        writeln!(file, "{line}").unwrap();
    }
    std::fs::write(dir.join("hits.topo"), TOPOLOGY).unwrap();
}

fn engine(dir: &Path) -> (Arc<Engine>, Arc<statflow::dsl::Plan>) {
    write_events(dir);
    let plan = statflow::dsl::compile(TOPOLOGY, Some(dir))
        .plan
        .expect("compiles");
    let config = EngineConfig {
        workers: 1,
        epoch_interval: Duration::from_millis(20),
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    engine.wait_until_done().unwrap();
    (Arc::new(engine), Arc::new(plan))
}

/// Who asks, in the matrix's column order.
const CALLERS: [&str; 5] = ["anonymous", "viewer", "editor", "owner", "admin"];

/// A server with users `vic` (viewer), `eve` (editor), `ann` (editor, owner
/// of the dashboards under test) and `root` (admin), and their tokens.
struct Fixture {
    state: AppState,
    store: Arc<Store>,
    /// Token per caller of [`CALLERS`]; `None` for anonymous.
    tokens: Vec<Option<String>>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (engine, plan) = engine(dir.path());
        let store = Arc::new(Store::open_dir(&dir.path().join("state")).unwrap());
        let mut tokens = vec![None];
        for (name, role) in [
            ("vic", Role::Viewer),
            ("eve", Role::Editor),
            ("ann", Role::Editor),
            ("root", Role::Admin),
        ] {
            tokens.push(Some(store.add_user(name, role).unwrap().1));
        }
        let state =
            AppState::with_store(engine, plan, Arc::clone(&store), AuthMode::Required).unwrap();
        Fixture {
            state,
            store,
            tokens,
            _dir: dir,
        }
    }

    fn token(&self, caller: &str) -> Option<&str> {
        let i = CALLERS.iter().position(|c| *c == caller).unwrap();
        self.tokens[i].as_deref()
    }

    async fn send(&self, caller: &str, method: &str, path: &str, body: Option<Json>) -> Reply {
        let mut request = warp::test::request().method(method).path(path);
        if let Some(token) = self.token(caller) {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        send(&self.state, request, body).await
    }

    /// A dashboard owned by `ann`, private.
    async fn dashboard(&self, title: &str) -> String {
        let reply = self
            .send(
                "owner",
                "POST",
                "/v1/dashboards",
                Some(json!({"title": title, "spec": {"panels": []}})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["id"].as_str().unwrap().to_string()
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: warp::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    /// The error code of a JSON error, checking the error's shape.
    fn code(&self) -> String {
        let e = &self.json()["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()) && e["path"].is_string(),
            "not an error document: {}",
            self.text()
        );
        e["code"].as_str().unwrap_or("").to_string()
    }
}

async fn send(state: &AppState, request: warp::test::RequestBuilder, body: Option<Json>) -> Reply {
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => request,
    };
    let response = request.reply(&server::routes(state.clone())).await;
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.body().to_vec(),
    }
}

/// One row of the matrix: the status every caller gets. `route` makes the
/// request for a caller (fresh objects where the request destroys one).
async fn row<F, Fut>(fx: &Fixture, name: &str, want: [u16; 5], route: F) -> Vec<String>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = (String, String, Option<Json>)>,
{
    let mut wrong = Vec::new();
    for (caller, want) in CALLERS.iter().zip(want) {
        let (method, path, body) = route(caller).await;
        let reply = fx.send(caller, &method, &path, body).await;
        if reply.status != want {
            wrong.push(format!(
                "{name} as {caller}: {} instead of {want}: {}",
                reply.status,
                reply.text()
            ));
        } else if want >= 400 {
            let code = reply.code();
            let expected = match want {
                401 => "unauthenticated",
                403 => "forbidden",
                _ => "",
            };
            if !expected.is_empty() && code != expected {
                wrong.push(format!("{name} as {caller}: code {code}, not {expected}"));
            }
        }
    }
    wrong
}

fn r(method: &str, path: impl Into<String>, body: Option<Json>) -> (String, String, Option<Json>) {
    (method.to_string(), path.into(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_matrix_says() {
    let fx = Fixture::start();
    let shared = fx.dashboard("Private to ann").await;
    let mut wrong = Vec::new();
    let q: Json = serde_json::from_str(QUERY).unwrap();
    let fx = &fx;

    wrong.extend(
        row(fx, "POST /v1/query", [401, 200, 200, 200, 200], |_| {
            let q = q.clone();
            async move { r("POST", "/v1/query", Some(q)) }
        })
        .await,
    );
    // The stream never ends, so only its refusal is asked here; the stream
    // itself is events_stream_epochs.
    let events = fx.send("anonymous", "GET", "/v1/events", None).await;
    if events.status != 401 {
        wrong.push(format!("GET /v1/events as anonymous: {}", events.status));
    }
    for path in ["/v1/catalog", "/v1/status", "/v1/session", "/v1/dashboards"] {
        wrong.extend(
            row(
                fx,
                &format!("GET {path}"),
                [401, 200, 200, 200, 200],
                |_| async move { r("GET", path, None) },
            )
            .await,
        );
    }
    for path in ["/metrics", "/health", "/", "/assets/app.js"] {
        wrong.extend(
            row(
                fx,
                &format!("GET {path} (open)"),
                [200; 5],
                |_| async move { r("GET", path, None) },
            )
            .await,
        );
    }
    wrong.extend(
        row(fx, "GET /v1/users", [401, 403, 403, 403, 200], |_| async {
            r("GET", "/v1/users", None)
        })
        .await,
    );
    wrong.extend(
        row(
            fx,
            "POST /v1/users",
            [401, 403, 403, 403, 201],
            |caller| async move {
                r(
                    "POST",
                    "/v1/users",
                    Some(json!({"name": format!("new-{caller}"), "role": "viewer"})),
                )
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "DELETE /v1/users/{name}",
            [401, 403, 403, 403, 204],
            |caller| async move {
                let name = format!("gone-{caller}");
                fx.store.add_user(&name, Role::Viewer).unwrap();
                r("DELETE", format!("/v1/users/{name}"), None)
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "POST /v1/users/{name}/token",
            [401, 403, 403, 403, 200],
            |caller| async move {
                let name = format!("rot-{caller}");
                fx.store.add_user(&name, Role::Viewer).unwrap();
                r("POST", format!("/v1/users/{name}/token"), None)
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "POST /v1/dashboards",
            [401, 403, 201, 201, 201],
            |_| async { r("POST", "/v1/dashboards", Some(json!({"title": "Mine"}))) },
        )
        .await,
    );
    let path = format!("/v1/dashboards/{shared}");
    wrong.extend(
        row(
            fx,
            "GET /v1/dashboards/{id}",
            [401, 403, 403, 200, 200],
            |_| {
                let path = path.clone();
                async move { r("GET", path, None) }
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "PUT /v1/dashboards/{id}",
            [401, 403, 403, 200, 200],
            |caller| {
                let path = path.clone();
                async move {
                    r(
                        "PUT",
                        path,
                        Some(json!({"title": format!("Renamed by {caller}")})),
                    )
                }
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "PUT /v1/dashboards/{id}/sharing",
            [401, 403, 403, 200, 200],
            |_| {
                let path = format!("{path}/sharing");
                async move { r("PUT", path, Some(json!({"everyone": false, "users": []}))) }
            },
        )
        .await,
    );
    wrong.extend(
        row(
            fx,
            "DELETE /v1/dashboards/{id}",
            [401, 403, 403, 204, 204],
            |_| async move {
                let id = fx.dashboard("To delete").await;
                r("DELETE", format!("/v1/dashboards/{id}"), None)
            },
        )
        .await,
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A 401 says how to sign in, and names the scheme.
    let reply = fx.send("anonymous", "GET", "/v1/catalog", None).await;
    assert!(reply.header("www-authenticate").starts_with("Bearer"));
    // Unknown paths stay 404 for everyone, known paths with a wrong method 405.
    assert_eq!(
        fx.send("anonymous", "GET", "/v1/nothing", None)
            .await
            .status,
        404
    );
    assert_eq!(
        fx.send("admin", "PATCH", "/v1/dashboards", None)
            .await
            .status,
        405
    );
    // A token of the wrong shape, or an unknown one, is a 401.
    for header in [
        "Bearer nope",
        "Basic YWxhZGRpbjpvcGVu",
        "Bearer sf_0011223344556677_00",
    ] {
        let request = warp::test::request()
            .path("/v1/status")
            .header("authorization", header);
        let reply = send(&fx.state, request, None).await;
        assert_eq!(reply.status, 401, "{header}");
        assert_eq!(reply.code(), "unauthenticated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_are_made_read_changed_shared_and_deleted() {
    let fx = Fixture::start();
    let made = fx
        .send(
            "owner",
            "POST",
            "/v1/dashboards",
            Some(json!({"title": "  Rewards  ", "spec": {"panels": [{"title": "p"}]}})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let d = made.json();
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["title"], "Rewards");
    assert_eq!(d["owner"], "ann");
    assert_eq!(d["access"], "owner");
    assert_eq!(d["link"], format!("/#/d/{id}"));
    assert_eq!(d["sharing"], json!({"everyone": false, "users": []}));
    let path = format!("/v1/dashboards/{id}");

    // Changing the title keeps the spec.
    let changed = fx
        .send(
            "owner",
            "PUT",
            &path,
            Some(json!({"title": "Rewards by game"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["spec"]["panels"][0]["title"], "p");
    assert_eq!(changed.json()["title"], "Rewards by game");

    // Bad bodies are refused with their field paths.
    for (body, code, at) in [
        (json!({"spec": {}}), "missing_field", "title"),
        (json!({"title": ""}), "bad_title", "title"),
        (json!({"title": "x", "spec": []}), "bad_type", "spec"),
        (
            json!({"title": "x", "colour": 1}),
            "unknown_field",
            "colour",
        ),
    ] {
        let reply = fx
            .send("owner", "POST", "/v1/dashboards", Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(
            (reply.code(), reply.json()["error"]["path"].clone()),
            (code.to_string(), json!(at))
        );
    }
    let reply = fx
        .send(
            "owner",
            "PUT",
            &format!("{path}/sharing"),
            Some(json!({"users": [{"user": "nobody"}]})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (400, "unknown_user".to_string())
    );
    assert_eq!(reply.json()["error"]["path"], "users[0].user");
    let reply = fx
        .send(
            "owner",
            "PUT",
            &format!("{path}/sharing"),
            Some(json!({"users": [{"user": "vic", "access": "own"}]})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json()["error"]["path"].clone()),
        (400, json!("users[0].access"))
    );

    let listed = |caller: &'static str| {
        let fx = &fx;
        async move {
            let reply = fx.send(caller, "GET", "/v1/dashboards", None).await;
            assert_eq!(reply.status, 200);
            reply.json()["dashboards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["title"].as_str().unwrap().to_string(),
                        d["access"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert!(listed("viewer").await.is_empty());
    assert_eq!(
        listed("admin").await,
        vec![("Rewards by game".to_string(), "owner".to_string())]
    );

    // Shared with vic to view and eve to edit.
    let shared = fx
        .send("owner", "PUT", &format!("{path}/sharing"), Some(json!({"users": [{"user": "vic", "access": "view"}, {"user": "eve", "access": "edit"}]})))
        .await;
    assert_eq!(shared.status, 200, "{}", shared.text());
    assert_eq!(
        listed("viewer").await,
        vec![("Rewards by game".to_string(), "view".to_string())]
    );
    assert_eq!(fx.send("viewer", "GET", &path, None).await.status, 200);
    assert_eq!(
        fx.send("viewer", "PUT", &path, Some(json!({"title": "no"})))
            .await
            .status,
        403
    );
    assert_eq!(
        fx.send(
            "editor",
            "PUT",
            &path,
            Some(json!({"title": "Edited by eve"}))
        )
        .await
        .status,
        200
    );
    // Edit access does not let eve reshare or delete.
    assert_eq!(
        fx.send(
            "editor",
            "PUT",
            &format!("{path}/sharing"),
            Some(json!({"everyone": true}))
        )
        .await
        .status,
        403
    );
    assert_eq!(fx.send("editor", "DELETE", &path, None).await.status, 403);

    // Everyone signed in: a new viewer sees it; anonymous still does not.
    fx.send(
        "owner",
        "PUT",
        &format!("{path}/sharing"),
        Some(json!({"everyone": true})),
    )
    .await;
    let (_, other) = fx.store.add_user("otto", Role::Viewer).unwrap();
    let request = warp::test::request()
        .path(&path)
        .header("authorization", format!("Bearer {other}"));
    let reply = send(&fx.state, request, None).await;
    assert_eq!(
        (reply.status, reply.json()["access"].clone()),
        (200, json!("view"))
    );
    assert_eq!(fx.send("anonymous", "GET", &path, None).await.status, 401);
    // vic's named share was replaced: view access through everyone only.
    assert_eq!(
        fx.send("viewer", "GET", &path, None).await.json()["access"],
        "view"
    );
    assert_eq!(
        fx.send("editor", "PUT", &path, Some(json!({"title": "again"})))
            .await
            .status,
        403
    );

    assert_eq!(fx.send("owner", "DELETE", &path, None).await.status, 204);
    let gone = fx.send("owner", "GET", &path, None).await;
    assert_eq!(
        (gone.status, gone.code()),
        (404, "no_such_dashboard".to_string())
    );
}

/// `GET /v1/events` streams an `epoch` event once a newer epoch completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_epochs() {
    let fx = Fixture::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::run(listener, fx.state.clone(), async move {
        let _ = stopped.await;
    }));
    let token = fx.token("viewer").unwrap().to_string();
    let read = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 1024];
        while !seen.contains("\"complete\"") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    })
    .await
    .unwrap();
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(read.contains("text/event-stream"), "{read}");
    assert!(read.contains("event:epoch"), "{read}");
    stop.send(()).unwrap();
    serving.abort();
}

fn cookie_of(reply: &Reply) -> String {
    let set = reply.header("set-cookie");
    set.split(';').next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_have_safe_cookies_and_need_csrf_to_change_things() {
    let fx = Fixture::start();
    let sign_in = |token: Json| {
        let request = warp::test::request().method("POST").path("/v1/session");
        send(&fx.state, request, Some(json!({ "token": token })))
    };
    let bad = sign_in(json!("sf_0011223344556677_0000")).await;
    assert_eq!(
        (bad.status, bad.code()),
        (401, "unauthenticated".to_string())
    );
    assert!(bad.header("set-cookie").is_empty());

    let ok = sign_in(json!(fx.token("owner").unwrap())).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let set = ok.header("set-cookie");
    for flag in [
        "statflow_session=sf_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(flag), "{flag} missing from {set}");
    }
    assert_eq!(ok.json()["user"]["name"], "ann");
    let csrf = ok.json()["csrf"].as_str().unwrap().to_string();
    assert!(
        !ok.text().contains(fx.token("owner").unwrap()),
        "the token is not echoed"
    );
    let cookie = cookie_of(&ok);

    let with_cookie = |method: &str, path: &str, csrf: Option<&str>, body: Option<Json>| {
        let mut request = warp::test::request()
            .method(method)
            .path(path)
            .header("cookie", cookie.clone());
        if let Some(c) = csrf {
            request = request.header("x-csrf-token", c);
        }
        send(&fx.state, request, body)
    };
    // Reading needs no CSRF token; the session tells the app its token again.
    let me = with_cookie("GET", "/v1/session", None, None).await;
    assert_eq!((me.status, me.json()["csrf"].clone()), (200, json!(csrf)));
    assert_eq!(
        with_cookie("GET", "/v1/dashboards", None, None)
            .await
            .status,
        200
    );
    // Changing needs it, and the right one.
    let body = Some(json!({"title": "From the browser"}));
    for token in [None, Some("wrong")] {
        let reply = with_cookie("POST", "/v1/dashboards", token, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (403, "csrf".to_string()));
    }
    let q: Json = serde_json::from_str(QUERY).unwrap();
    assert_eq!(
        with_cookie("POST", "/v1/query", None, Some(q.clone()))
            .await
            .status,
        403
    );
    assert_eq!(
        with_cookie("POST", "/v1/query", Some(&csrf), Some(q))
            .await
            .status,
        200
    );
    assert_eq!(
        with_cookie("POST", "/v1/dashboards", Some(&csrf), body)
            .await
            .status,
        201
    );

    // Signing out clears the cookie and ends the session.
    assert_eq!(
        with_cookie("DELETE", "/v1/session", None, None)
            .await
            .status,
        403
    );
    let out = with_cookie("DELETE", "/v1/session", Some(&csrf), None).await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = with_cookie("GET", "/v1/dashboards", None, None).await;
    assert_eq!(
        (after.status, after.code()),
        (401, "unauthenticated".to_string())
    );

    // Rotating a token ends that user's sessions and the old token.
    let again = sign_in(json!(fx.token("viewer").unwrap())).await;
    let cookie = cookie_of(&again);
    let rotated = fx.send("admin", "POST", "/v1/users/vic/token", None).await;
    let new = rotated.json()["token"].as_str().unwrap().to_string();
    let request = warp::test::request()
        .path("/v1/status")
        .header("cookie", cookie);
    assert_eq!(send(&fx.state, request, None).await.status, 401);
    assert_eq!(
        fx.send("viewer", "GET", "/v1/status", None).await.status,
        401
    );
    let request = warp::test::request()
        .path("/v1/status")
        .header("authorization", format!("Bearer {new}"));
    assert_eq!(send(&fx.state, request, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_requests_act_as_the_local_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = engine(dir.path());
    let store = Arc::new(Store::in_memory().unwrap());
    let state = AppState::with_store(engine, plan, store, AuthMode::Off).unwrap();
    let me = send(&state, warp::test::request().path("/v1/session"), None).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(
        me.json()["user"],
        json!({"name": "local", "role": "admin", "created_ms": me.json()["user"]["created_ms"]})
    );
    let made = send(
        &state,
        warp::test::request().method("POST").path("/v1/dashboards"),
        Some(json!({"title": "t"})),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    // Credentials, when sent, are still checked.
    let request = warp::test::request()
        .path("/v1/status")
        .header("authorization", "Bearer sf_0011223344556677_00");
    assert_eq!(send(&state, request, None).await.status, 401);
}
