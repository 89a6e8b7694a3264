//! `statflow run --local-processes P`: a single-node cluster for development.
//! Starts P copies of this binary as processes 0..P on loopback ports,
//! forwards Ctrl-C and SIGTERM to them, and exits non-zero if one dies.

use std::net::TcpListener;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::RunArgs;

/// Picks `n` free loopback ports for the processes to find each other on.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // Hold every listener until all are chosen, so that no port is picked twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Sends SIGTERM to a child, so it stops cleanly.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// Runs and supervises the processes.
pub fn run(args: &RunArgs, processes: usize) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(processes >= 1, "--local-processes needs at least 1 process");
    let ports =
        free_ports(processes).context("cannot find free loopback ports for the processes")?;
    let dir = args.state_dir.join("local-cluster");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let hosts = dir.join("hosts.txt");
    let lines: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::write(&hosts, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", hosts.display()))?;
    let exe = std::env::current_exe().context("cannot find the statflow binary to start")?;

    let mut children = Vec::new();
    for i in 0..processes {
        let mut http = args.http;
        if http.port() != 0 {
            http.set_port(http.port() + i as u16);
        }
        let mut command = Command::new(&exe);
        command
            .arg("run")
            .arg(&args.file)
            .args([
                "--processes",
                &processes.to_string(),
                "--process",
                &i.to_string(),
            ])
            .arg("--hosts")
            .arg(&hosts)
            .args(["--workers", &args.workers.to_string()])
            .args(["--http", &http.to_string()])
            .args(["--epoch-ms", &args.epoch_ms.to_string()])
            .args(["--epoch-records", &args.epoch_records.to_string()])
            .arg("--state-dir")
            .arg(args.state_dir.join(format!("process-{i}")))
            // Checkpoints are complete only when every process's shards are
            // in one folder: all of them write to the same one.
            .arg("--checkpoint-dir")
            .arg(
                args.checkpoint_dir
                    .clone()
                    .unwrap_or_else(|| args.state_dir.join("checkpoints")),
            )
            .args([
                "--checkpoint-interval",
                &format!("{}ms", args.checkpoint_interval.as_millis()),
            ]);
        if args.no_checkpoints {
            command.arg("--no-checkpoints");
        }
        if args.log_format == super::LogFormat::Json {
            command.args(["--log-format", "json"]);
        }
        if let Some(filter) = &args.log {
            command.args(["--log", filter]);
        }
        if let Some(brokers) = &args.kafka_brokers {
            command.args(["--kafka-brokers", brokers]);
        }
        if args.exit_when_done {
            command.arg("--exit-when-done");
        }
        // Every process reads and writes the same users and dashboards.
        command
            .arg("--store-file")
            .arg(args.state_dir.join(crate::store::FILE_NAME));
        if args.no_auth {
            command.arg("--no-auth");
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start process {i}"))?;
        // One write per line: the processes share this stderr.
        let line = format!("started process {i} (pid {}), HTTP on {http}\n", child.id());
        eprint!("{line}");
        children.push(child);
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook_like::SIGINT, signal_hook_like::SIGTERM] {
        signal_hook_like::on(signal, Arc::clone(&stop));
    }

    let mut failed: Option<String> = None;
    let mut exited = vec![false; processes];
    loop {
        if stop.load(Ordering::SeqCst) {
            eprintln!("stopping {processes} processes");
            break;
        }
        for (i, child) in children.iter_mut().enumerate() {
            if exited[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited[i] = true;
                if !status.success() && failed.is_none() {
                    failed = Some(format!("process {i} exited with {status}"));
                }
            }
        }
        if failed.is_some() || exited.iter().all(|e| *e) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, child) in children.iter().enumerate() {
        if !exited[i] {
            terminate(child);
        }
    }
    // Give them time to stop cleanly, then make sure.
    let deadline = Instant::now() + Duration::from_secs(10);
    for child in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    match failed {
        Some(reason) => {
            eprintln!("error: {reason}; the other processes were stopped");
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Signals noticed by the supervisor, through tokio's signal handling on a
/// small runtime of its own (no unsafe code).
mod signal_hook_like {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;

    /// Sets `flag` when `signal` arrives.
    pub fn on(signal: i32, flag: Arc<AtomicBool>) {
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let kind = tokio::signal::unix::SignalKind::from_raw(signal);
                if let Ok(mut s) = tokio::signal::unix::signal(kind) {
                    s.recv().await;
                    flag.store(true, Ordering::SeqCst);
                }
            });
        });
    }
}
