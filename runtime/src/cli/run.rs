//! `statflow run`: workers, sources and the HTTP endpoint in this process.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{LogFormat, RunArgs};
use crate::checkpoint::CheckpointConfig;
use crate::engine::{Engine, EngineConfig};
use crate::server::{self, AppState, AuthMode};
use crate::store::Store;

/// Set once this process has decided to stop: a peer closing its connection
/// after that is a peer stopping too, not a failure.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Set when the workers stopped on their own (a lost peer, a worker error).
static FAILED: AtomicBool = AtomicBool::new(false);

/// How long a cluster process keeps serving its peers after deciding to stop.
const LINGER: Duration = Duration::from_secs(1);

/// Runs a topology until Ctrl-C (or until its sources finish, with `--exit-when-done`).
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, args.log.as_deref());
    crate::engine::small_pages();
    if args.no_auth {
        server::auth::check_no_auth(args.http).map_err(anyhow::Error::msg)?;
    }
    if let Some(processes) = args.local_processes {
        return super::local::run(&args, processes);
    }
    let cluster = cluster_config(&args)?;
    if cluster.is_some() {
        stop_when_a_peer_is_lost();
    }
    let name = args.file.display().to_string();
    let (text, compiled) =
        super::check::load(&args.file).with_context(|| format!("cannot read {name}"))?;
    let color = std::io::stderr().is_terminal();
    for d in &compiled.diagnostics {
        eprint!("{}", d.render(&name, &text, color));
    }
    let Some(plan) = compiled.plan else {
        eprintln!(
            "{name} has errors; fix them and run again (`statflow check {name}` lists them)."
        );
        return Ok(ExitCode::from(1));
    };
    let config = EngineConfig {
        workers: args.workers.max(1),
        epoch_interval: Duration::from_millis(args.epoch_ms.max(1)),
        epoch_records: args.epoch_records.max(1),
        dead_letter_dir: args.state_dir.join("dead-letters"),
        cluster: cluster.clone(),
        checkpoints: (!args.no_checkpoints).then(|| CheckpointConfig {
            dir: args
                .checkpoint_dir
                .clone()
                .unwrap_or_else(|| args.state_dir.join("checkpoints")),
            ..CheckpointConfig::under(&args.state_dir, args.checkpoint_interval)
        }),
        hourly_rollups: args.hourly_rollups,
        query_cache_bytes: args.query_cache_mib.saturating_mul(1 << 20),
        ..EngineConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.http))
        .with_context(|| {
            format!(
                "cannot listen on {}; is another statflow running? (choose another with --http)",
                args.http
            )
        })?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // Everything that can fail is done before the workers start: once they
    // run in a cluster, leaving means joining threads that read from the
    // other processes, which never end while those live (a store that failed
    // to open after the start hung its process, unseen, instead of saying why).
    let store_file = args
        .store_file
        .clone()
        .unwrap_or_else(|| args.state_dir.join(crate::store::FILE_NAME));
    if let Some(parent) = store_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the state folder {}", parent.display()))?;
    }
    let store = Arc::new(
        Store::open(&store_file)
            .with_context(|| format!("cannot open the state store {}", store_file.display()))?,
    );
    let mode = if args.no_auth {
        AuthMode::Off
    } else {
        AuthMode::Required
    };
    let first_admin = match mode {
        AuthMode::Required => store
            .first_admin("admin")
            .context("cannot add the first user")?,
        AuthMode::Off => None,
    };
    let engine = Arc::new(Engine::start(
        plan.clone(),
        config,
        crate::source::readers_with(
            crate::source::SourceOptions::for_plan(&plan)
                .with_kafka_brokers(args.kafka_brokers.clone()),
        ),
    )?);
    let state = match AppState::with_store(
        Arc::clone(&engine),
        Arc::new(plan.clone()),
        Arc::clone(&store),
        mode,
    ) {
        Ok(state) => state,
        Err(e) => {
            // Not `?`: see above; the workers are running.
            eprintln!("error: cannot prepare the state store: {e}");
            std::process::exit(1);
        }
    };

    // Processes of a cluster that disagree stop here, before saying they
    // serve (see `engine::agreement`).
    if let Err(e) = engine.wait_agreed() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    tracing::info!(topology = %name, workers = args.workers, http = %address, "statflow is running");
    // One write per line: the processes of a local cluster share one stderr.
    let serving = match &cluster {
        Some(c) => format!(
            "statflow process {} of {} is serving http://{address} with {} worker(s)\n",
            c.process,
            c.addresses.len(),
            args.workers.max(1)
        ),
        None => format!(
            "statflow is serving http://{address} with {} worker(s)\n",
            args.workers.max(1)
        ),
    };
    if args.log_format == LogFormat::Human {
        eprint!("{serving}");
    }
    let mut hint = sign_in_text(
        &address,
        mode,
        first_admin.as_ref(),
        store_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(&args.state_dir),
    );
    if let Some(metric) = plan.metrics.first() {
        let header = match mode {
            AuthMode::Required => " -H \"Authorization: Bearer $STATFLOW_TOKEN\"",
            AuthMode::Off => "",
        };
        hint += &format!(
            "try: curl -s{header} http://{address}/v1/query -d '{{\"metric\": \"{}\", \"time_window\": {{\"kind\": \"relative\", \"last\": \"1h\"}}}}'\n",
            metric.name
        );
    }
    let text = format!("{hint}press Ctrl-C to stop\n");
    match args.log_format {
        LogFormat::Human => eprint!("{text}"),
        // Standard error carries only JSON lines; the sign-in hint (which
        // may hold a token shown once) goes to standard output, not to the
        // log collector.
        LogFormat::Json => print!("{text}"),
    }

    let exit_when_done = args.exit_when_done;
    let in_cluster = cluster.is_some();
    let watcher = Arc::clone(&engine);
    let stop = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let sigterm = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("Ctrl-C: stopping");
                    break;
                }
                _ = sigterm => {
                    tracing::info!("SIGTERM: stopping");
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if watcher.error().is_some() || watcher.workers_died() {
                        FAILED.store(true, Ordering::SeqCst);
                        break;
                    }
                    if exit_when_done {
                        let asked = tokio::time::timeout(Duration::from_secs(2), watcher.status()).await;
                        if asked.is_ok_and(|s| s.is_ok_and(|s| s.done())) {
                            tracing::info!("every source has finished: stopping");
                            break;
                        }
                    }
                }
            }
        }
        if FAILED.load(Ordering::SeqCst) {
            return;
        }
        STOPPING.store(true, Ordering::SeqCst);
        if in_cluster {
            // The other processes stop for the same reason within a poll or
            // two; keep answering them until they know, so that nobody takes
            // our leaving for a failure.
            tokio::time::sleep(LINGER).await;
        }
    };
    runtime.block_on(server::run(listener, state, stop));
    if in_cluster {
        // Tearing down timely's network with peers that are leaving at the
        // same moment can block; nothing is left to save (state since the
        // last checkpoint is read again on restart), so a cluster process
        // leaves without waiting.
        engine.shared().shutdown.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        if FAILED.load(Ordering::SeqCst) {
            let why = engine
                .error()
                .or_else(|| crate::server::degraded().map(str::to_string))
                .unwrap_or_else(|| "a worker stopped".into());
            eprintln!("statflow: the cluster is degraded ({why}); exiting");
            std::process::exit(3);
        }
        if let Some(e) = engine.error() {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    engine.shutdown();
    if let Some(e) = engine.error() {
        anyhow::bail!(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// What to tell the person who started statflow about signing in.
fn sign_in_text(
    address: &std::net::SocketAddr,
    mode: AuthMode,
    first_admin: Option<&(crate::store::User, String)>,
    state_dir: &std::path::Path,
) -> String {
    match (mode, first_admin) {
        (AuthMode::Off, _) => format!(
            "authentication is off (--no-auth): anyone on this machine may use http://{address}/ as the admin `local`\n"
        ),
        (AuthMode::Required, Some((user, token))) => format!(
            "statflow added the first user, {name} (admin); its token is shown only this once:\n    {token}\n\
             sign in: http://{address}/#token={token}\n",
            name = user.name
        ),
        (AuthMode::Required, None) => format!(
            "sign in at http://{address}/ with your token (new users: statflow user add NAME --role viewer --state-dir {})\n",
            state_dir.display()
        ),
    }
}

/// Logs to stderr: human lines on a terminal, levels from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat, filter: Option<&str>) {
    let filter = match filter {
        Some(f) => tracing_subscriber::EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("--log {f:?} is not a log filter ({e}); using `info`");
            tracing_subscriber::EnvFilter::new("info")
        }),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// The cluster this process belongs to, from `--processes`, `--process` and `--hosts`.
fn cluster_config(args: &RunArgs) -> anyhow::Result<Option<crate::engine::ClusterConfig>> {
    let (Some(processes), Some(process), Some(hosts)) = (args.processes, args.process, &args.hosts)
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(hosts)
        .with_context(|| format!("cannot read the host file {}", hosts.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        addresses.len() == processes,
        "the host file {} lists {} host(s) but --processes is {processes}: write one host:port per process",
        hosts.display(),
        addresses.len()
    );
    anyhow::ensure!(
        process < processes,
        "--process {process} must be less than --processes {processes}"
    );
    Ok(Some(crate::engine::ClusterConfig { process, addresses }))
}

/// In a cluster, timely's network threads panic when a peer process goes
/// away. Rather than leave the workers waiting forever, say what happened and
/// exit, so a supervisor (or `--local-processes`) can act.
fn stop_when_a_peer_is_lost() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        let message = info.to_string();
        if thread.starts_with("timely") || message.contains("timely communication") {
            if STOPPING.load(Ordering::SeqCst) {
                // A peer closed its connection because it is stopping too.
                std::process::exit(0);
            }
            let detail = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let reason = format!("a peer process stopped or cannot be reached ({detail})");
            if crate::server::degraded().is_none() {
                eprintln!("statflow: the cluster is degraded: {reason}; exiting");
            }
            crate::server::mark_degraded(reason);
            // Leave a moment for /v1/status to say so, then stop.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(2));
                std::process::exit(3);
            });
            return;
        }
        default(info);
    }));
}
