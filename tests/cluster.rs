//! Clusters of processes on loopback: the same input gives identical answers
//! (tumbling, hopping and session windows) under 1×1, 1×4, 2×2 and 3×2
//! (processes × workers), whichever process is asked; and a killed process
//! makes the others stop within a bounded time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

const TOPOLOGY: &str = r#"
source events = file("events.jsonl") {
  time = ts as epoch_millis
  late = 5m
}

metric rewards from events {
  where      kind = "reward"
  dimensions game_id, reward_type
  window     tumbling 1m
  measures {
    n       = count()
    amount  = sum(amount)
    low     = min(amount)
    high    = max(amount)
    mean    = avg(amount)
    players = distinct(user_id)
    p90     = quantile(amount, 0.9)
  }
}

metric sliding from events {
  dimensions kind
  window     hopping 10m every 2m
  measures {
    n       = count()
    players = distinct(user_id)
  }
}

metric streaks from events {
  dimensions reward_type
  window     session 5m by game_id
  measures {
    n       = count()
    amount  = sum(amount)
    players = distinct(user_id)
  }
}
"#;

/// 2024-08-20T00:00:00Z
const T0: i64 = 1_724_112_000_000;

pub(crate) fn write_input(dir: &Path) {
    let mut out = String::new();
    let mut state: u64 = 12345;
    let mut next = || {
        // A small LCG: the test needs varied but reproducible events, not randomness.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as i64
    };
    for i in 0..12_000i64 {
        let late = if next() % 20 == 0 {
            next() % 600_000
        } else {
            0
        };
        let ts = T0 + i * 5_000 - late;
        let kind = ["reward", "reward", "bet", "login"][(next() % 4) as usize];
        let types = ["task", "bonus", "jackpot", "daily", "fuc", "tax-up"];
        out.push_str(&format!(
            "{{\"ts\": {ts}, \"kind\": \"{kind}\", \"game_id\": \"g{}\", \"reward_type\": \"{}\", \"user_id\": \"u{}\", \"amount\": {}.{:02}}}\n",
            next() % 9,
            types[(next() % 6) as usize],
            next() % 700,
            next() % 500,
            next() % 100
        ));
        if i % 1000 == 0 {
            out.push_str("{not json\n");
        }
    }
    std::fs::write(dir.join("events.jsonl"), out).unwrap();
    std::fs::write(dir.join("cluster.topo"), TOPOLOGY).unwrap();
}

/// A minimal HTTP/1.1 client: one request per connection.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: keep it simple by taking the JSON between the first `{` and the last `}`.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b >= a => body[a..=b].to_string(),
        _ => body,
    };
    Ok((status, body))
}

/// A running cluster: the supervising process and where each process serves HTTP.
pub(crate) struct Cluster {
    pub(crate) child: Child,
    pub(crate) addresses: Vec<String>,
    pub(crate) pids: Vec<u32>,
    pub(crate) lines: mpsc::Receiver<String>,
}

/// A test that fails part way leaves no processes behind: they would hold
/// CPU and ports for the tests after it.
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

impl Cluster {
    pub(crate) fn start(dir: &Path, processes: usize, workers: usize, flags: &[&str]) -> Cluster {
        Self::start_in(
            dir,
            &format!("state-{processes}x{workers}"),
            processes,
            workers,
            flags,
        )
    }

    /// Starts `processes × workers` with `--state-dir DIR/STATE` and extra `flags`.
    ///
    /// A start in which some process has not said where it serves within a
    /// minute is stopped (as a crash would stop it) and tried once more,
    /// after printing what it said. What used to fail here about once in
    /// twenty starts: two processes opening one new state store got
    /// "database is locked", and the one that did hung on its way out, its
    /// workers already running (both fixed: the store is opened before the
    /// workers start, and tried again while locked). What can still fail:
    /// `--local-processes` picks free ports for the processes to find each
    /// other on, and another socket may take one before its process binds
    /// it ("Address already in use"); the process then stops with that
    /// error, and so does the start.
    pub(crate) fn start_in(
        dir: &Path,
        state: &str,
        processes: usize,
        workers: usize,
        flags: &[&str],
    ) -> Cluster {
        match Self::try_start_in(dir, state, processes, workers, flags) {
            Ok(cluster) => cluster,
            Err(said) => {
                eprintln!(
                    "a {processes}×{workers} cluster did not say where it serves within a minute; it said:\n{}\nstarting it again",
                    said.join("\n")
                );
                Self::try_start_in(dir, state, processes, workers, flags).unwrap_or_else(|said| {
                    panic!(
                        "every process says where it serves, twice running; it said:\n{}",
                        said.join("\n")
                    )
                })
            }
        }
    }

    /// One start; on a timeout, the cluster is killed and what it said returned.
    fn try_start_in(
        dir: &Path,
        state: &str,
        processes: usize,
        workers: usize,
        flags: &[&str],
    ) -> Result<Cluster, Vec<String>> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_statflow"));
        command.arg("run").arg(dir.join("cluster.topo"));
        if processes > 1 {
            command.args(["--local-processes", &processes.to_string()]);
        }
        command
            .args([
                "--workers",
                &workers.to_string(),
                "--http",
                "127.0.0.1:0",
                "--epoch-ms",
                "20",
                // Loopback only, so allowed: these tests are about answers.
                "--no-auth",
            ])
            .args(flags)
            .arg("--state-dir")
            .arg(dir.join(state))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("statflow starts");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = Cluster {
            child,
            addresses: vec![String::new(); processes],
            pids: Vec::new(),
            lines,
        };
        let started = regex::Regex::new(r"started process \d+ \(pid (\d+)\)").unwrap();
        let serving =
            regex::Regex::new(r"statflow (?:process (\d+) of \d+ )?is serving http://(\S+)")
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut said = Vec::new();
        while cluster.addresses.iter().any(String::is_empty) {
            let Ok(line) = cluster
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                // Dropping the cluster kills the supervisor and every process.
                return Err(said);
            };
            said.push(line.clone());
            // Processes share one stderr, so look for the messages anywhere in a line.
            if let Some(c) = started.captures(&line) {
                cluster.pids.push(c[1].parse().unwrap());
            }
            if let Some(c) = serving.captures(&line) {
                let process = c.get(1).map_or(0, |p| p.as_str().parse::<usize>().unwrap());
                cluster.addresses[process] = c[2].to_string();
            }
        }
        Ok(cluster)
    }

    pub(crate) fn wait_until_done(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, body) = http(&self.addresses[0], "GET", "/v1/status", "").unwrap();
            if status == 200 {
                let doc: Json = serde_json::from_str(&body).unwrap();
                if doc["done"] == json!(true) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not finish its input: {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the supervisor has exited, and every process with it.
    pub(crate) fn wait_for_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(
                Instant::now() < deadline,
                "statflow did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in &self.pids {
            while Path::new(&format!("/proc/{pid}")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
            {
                assert!(
                    Instant::now() < deadline,
                    "process {pid} did not stop within {within:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("statflow did not stop within 20s of SIGTERM");
    }
}

pub(crate) fn queries() -> Vec<Json> {
    let window =
        json!({"kind": "absolute", "from": "2024-08-19T23:00:00Z", "to": "2024-08-21T00:00:00Z"});
    vec![
        json!({"metric": "rewards", "time_window": window}),
        json!({"metric": "rewards", "time_window": window, "group_by": ["game_id", "reward_type"]}),
        json!({"metric": "rewards", "time_window": window, "group_by": ["__time"], "granularity": "1h", "time_zone": "+08:00"}),
        json!({"metric": "rewards", "time_window": window, "group_by": ["reward_type", "__time"], "granularity": "1d", "time_zone": "Asia/Shanghai",
               "filters": {"game_id": "g[1-4]", "reward_type": ["task", "fuc", "tax-up"]}}),
        json!({"metric": "rewards", "time_window": window, "group_by": ["game_id"], "order_by": [{"field": "amount", "desc": true}], "limit": 3}),
        json!({"metric": "sliding", "time_window": window, "group_by": ["__time", "kind"]}),
        json!({"metric": "sliding", "time_window": window, "group_by": ["kind"]}),
        json!({"metric": "streaks", "time_window": window, "group_by": ["reward_type"]}),
        json!({"metric": "streaks", "time_window": window, "group_by": ["__time"], "granularity": "1h", "time_zone": "+05:30"}),
    ]
}

/// Every query's columns and rows (not `as_of`, which differs between runs).
pub(crate) fn answers(addr: &str) -> Vec<Json> {
    queries()
        .iter()
        .map(|q| {
            let (status, body) = http(addr, "POST", "/v1/query", &q.to_string()).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            let doc: Json = serde_json::from_str(&body).unwrap();
            assert!(
                doc["rows"].as_array().is_some_and(|r| !r.is_empty()),
                "{q} has rows: {body}"
            );
            json!({"columns": doc["columns"], "rows": doc["rows"]})
        })
        .collect()
}

#[test]
fn every_shape_gives_the_same_answers_from_every_process() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let mut reference: Option<Vec<Json>> = None;
    // The last shape also keeps hourly rows, which then cross processes:
    // its hour-aligned `rewards` queries read them.
    let shapes: [(usize, usize, &[&str]); 4] = [
        (1, 1, &[]),
        (1, 4, &[]),
        (2, 2, &[]),
        (3, 2, &["--hourly-rollups"]),
    ];
    for (processes, workers, flags) in shapes {
        let cluster = Cluster::start(dir.path(), processes, workers, flags);
        cluster.wait_until_done();
        let (_, status) = http(&cluster.addresses[0], "GET", "/v1/status", "").unwrap();
        let status: Json = serde_json::from_str(&status).unwrap();
        assert_eq!(
            status["workers"].as_array().unwrap().len(),
            processes * workers,
            "{status}"
        );
        assert_eq!(
            status["sources"][0]["errors"],
            json!(12),
            "bad lines are counted once: {status}"
        );
        for addr in &cluster.addresses {
            let got = answers(addr);
            match &reference {
                None => reference = Some(got),
                Some(want) => {
                    for (i, (g, w)) in got.iter().zip(want).enumerate() {
                        assert_eq!(
                            g,
                            w,
                            "{processes}×{workers}, asking {addr}, query {i}: {}",
                            queries()[i]
                        );
                    }
                }
            }
        }
        cluster.stop();
    }
}

#[test]
fn a_killed_process_stops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let mut cluster = Cluster::start(dir.path(), 3, 1, &[]);
    cluster.wait_until_done();
    assert_eq!(cluster.pids.len(), 3);
    let victim = cluster.pids[1];
    Command::new("kill")
        .arg("-9")
        .arg(victim.to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = cluster.child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not stop within 30s of losing a process"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "the supervisor reports the failure with its exit status"
    );
    let said: Vec<String> = cluster.lines.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains("degraded") || l.contains("exited with")),
        "the processes say what happened: {said:?}"
    );
    for pid in &cluster.pids {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z");
        assert!(!alive, "process {pid} still runs");
    }
}

/// Two processes of one cluster, started by hand as on two machines, one
/// with `--hourly-rollups` and one without: both stop, and say why, without
/// first saying that they serve.
#[test]
fn processes_that_disagree_on_their_settings_stop_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let children: Vec<Child> = (0..2)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_statflow"))
                .arg("run")
                .arg(dir.path().join("cluster.topo"))
                .args(["--processes", "2", "--process", &i.to_string()])
                .arg("--hosts")
                .arg(&hosts)
                .args(["--workers", "1", "--http", "127.0.0.1:0", "--no-auth"])
                .args(if i == 1 {
                    &["--hourly-rollups"][..]
                } else {
                    &[]
                })
                .arg("--state-dir")
                .arg(dir.path().join(format!("process-{i}")))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("statflow starts")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, mut child) in children.into_iter().enumerate() {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {i} still runs a minute after it started");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut said = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut said)
            .unwrap();
        assert!(!status.success(), "process {i} stops with an error: {said}");
        let (them, me, theirs, mine) = if i == 0 {
            (1, 0, "with", "without")
        } else {
            (0, 1, "without", "with")
        };
        assert!(
            said.contains(&format!(
                "process {them} runs {theirs} --hourly-rollups, process {me} {mine}"
            )),
            "process {i} says what differs: {said}"
        );
        assert!(
            !said.contains("is serving"),
            "process {i} does not say it serves before it stops: {said}"
        );
    }
}
