//! `--log-format json`: every line `statflow run` writes to standard error
//! is one JSON object with a level and a message, and the notable events
//! (start, sources finished, checkpoint complete, stop) are among them.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

#[test]
fn json_logs_are_one_object_per_line_with_the_notable_events() {
    let dir = tempfile::tempdir().unwrap();
    crate::cluster::write_input(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_statflow"))
        .arg("run")
        .arg(dir.path().join("cluster.topo"))
        .args(["--http", "127.0.0.1:0", "--no-auth", "--exit-when-done"])
        .args(["--log-format", "json", "--log", "info"])
        .args(["--epoch-ms", "20", "--checkpoint-interval", "100ms"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "statflow stops when done"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let lines: Vec<Json> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let said = |message: &str| {
        lines
            .iter()
            .any(|l| l["fields"]["message"].as_str() == Some(message))
    };
    assert!(said("statflow is running"), "{stderr}");
    assert!(said("this worker's sources have finished"), "{stderr}");
    assert!(said("every source has finished: stopping"), "{stderr}");
}
