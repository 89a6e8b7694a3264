//! The web app in a real browser: `tests/browser/dashboards.mjs` drives
//! headless Chromium (Debian's `/usr/bin/chromium`, through `playwright-core`
//! from npm) against a `statflow run` of the example topology: sign in, build
//! a panel, see a chart with data drawn, save, reload, share with a second
//! user who sees it, a third user refused, and that user opening the
//! statflow health dashboard made from the example's telemetry metric, its
//! chart drawn. Screenshots land in
//! `target/browser-artifacts/`.
//!
//! Never skipped: `.ci/run` installs Chromium and runs `npm ci` in
//! `tests/browser`; when either is missing this test fails and says how to
//! install it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `statflow run` on a free loopback port, killed when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    admin: String,
}

impl Server {
    fn start(state: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_statflow"))
            .arg("run")
            .arg(repo().join("examples/topologies/game_stats.topo"))
            .args(["--http", "127.0.0.1:0", "--workers", "1"])
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("statflow starts");
        let stderr = child.stderr.take().unwrap();
        // Killed by Drop, on success and on a panic below alike.
        let mut server = Server {
            child,
            url: String::new(),
            admin: String::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some((url, token)) = line
                .strip_prefix("sign in: ")
                .and_then(|l| l.split_once("/#token="))
            {
                server.url = url.to_string();
                server.admin = token.to_string();
                return server;
            }
        }
        panic!("statflow printed no sign-in link");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn add_user(state: &Path, name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_statflow"))
        .args(["user", "add", name, "--role", "viewer", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sign_in_build_save_reload_share_and_refuse_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install it with `apt-get install -y chromium` (bash .ci/run does)"
    );
    let scripts = repo().join("tests/browser");
    assert!(
        scripts.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (bash .ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let server = Server::start(&state);
    let bob = add_user(&state, "bob");
    let cat = add_user(&state, "cat");
    let artifacts = repo().join("target/browser-artifacts");
    let status = Command::new("node")
        .arg(scripts.join("dashboards.mjs"))
        .current_dir(&scripts)
        .env("STATFLOW_URL", &server.url)
        .env("ADMIN_TOKEN", &server.admin)
        .env("BOB_TOKEN", bob)
        .env("CAT_TOKEN", cat)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs (install Node.js)");
    assert!(
        status.success(),
        "the browser test failed; screenshots are in {}",
        artifacts.display()
    );
}
