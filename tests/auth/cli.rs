//! The binary: the first start prints an admin's token and sign-in link
//! once, `statflow user` manages users, `statflow query` sends a token, and
//! `--no-auth` is refused off loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{write_events, QUERY};

/// The binary, with its standard error read line by line.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(dir: &Path, extra: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_statflow"))
            .arg("run")
            .arg(dir.join("hits.topo"))
            .args(["--http", "127.0.0.1:0", "--workers", "1"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Lines until one contains `what`; returns them all.
    fn until(&self, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let done = line.contains(what);
                seen.push(line);
                if done {
                    return seen;
                }
            }
        }
        panic!("no line with {what:?} in {seen:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn first_start_prints_an_admin_token_and_the_user_commands_manage_users() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let running = Running::start(dir.path(), &[]);
    let lines = running.until("sign in: http://");
    let link = lines.last().unwrap();
    let (addr, token) = link
        .trim_start_matches("sign in: http://")
        .split_once("/#token=")
        .expect("a sign-in link");
    assert!(
        lines.iter().any(|l| l.trim() == token),
        "the token on its own line: {lines:?}"
    );
    assert_eq!(http(addr, "GET", "/v1/status", None), 401);
    assert_eq!(http(addr, "GET", "/v1/status", Some(token)), 200);

    let statflow = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_statflow"))
            .args(args)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let bob = statflow(&["user", "add", "bob", "--role", "viewer"]);
    assert!(bob.starts_with("sf_"), "{bob}");
    assert_eq!(http(addr, "GET", "/v1/status", Some(&bob)), 200);
    assert_eq!(http(addr, "GET", "/v1/users", Some(&bob)), 403);
    let list = statflow(&["user", "list"]);
    assert!(
        list.contains("admin") && list.contains("bob") && list.contains("viewer"),
        "{list}"
    );

    // statflow query takes the token from --token or STATFLOW_TOKEN.
    let query_file = dir.path().join("q.json");
    std::fs::write(&query_file, QUERY).unwrap();
    let url = format!("http://{addr}");
    let query = |token: Option<&str>, env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_statflow"));
        c.arg("query")
            .arg(&query_file)
            .args(["--url", &url, "--format", "json"]);
        c.env_remove("STATFLOW_TOKEN");
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        if let Some(t) = env {
            c.env("STATFLOW_TOKEN", t);
        }
        c.output().unwrap()
    };
    let refused = query(None, None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("STATFLOW_TOKEN"));
    assert!(query(Some(&bob), None).status.success());
    assert!(query(None, Some(&bob)).status.success());

    let new = statflow(&["user", "rotate", "bob"]);
    assert_eq!(http(addr, "GET", "/v1/status", Some(&bob)), 401);
    assert_eq!(http(addr, "GET", "/v1/status", Some(&new)), 200);
    statflow(&["user", "remove", "bob"]);
    assert_eq!(http(addr, "GET", "/v1/status", Some(&new)), 401);
    drop(running);

    // A second start finds the admin and prints no token.
    let again = Running::start(dir.path(), &[]);
    let lines = again.until("sign in at http://");
    assert!(!lines.iter().any(|l| l.contains("sf_")), "{lines:?}");
}

#[test]
fn no_auth_is_refused_off_loopback_and_allowed_on_it() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_statflow"))
        .arg("run")
        .arg(dir.path().join("hits.topo"))
        .args(["--no-auth", "--http", "0.0.0.0:0"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--no-auth is only allowed on a loopback address"),
        "{stderr}"
    );

    let running = Running::start(dir.path(), &["--no-auth"]);
    let lines = running.until("authentication is off");
    let addr = lines
        .iter()
        .find_map(|l| l.strip_prefix("statflow is serving http://"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the serving line")
        .to_string();
    assert_eq!(http(&addr, "GET", "/v1/status", None), 200);
}
