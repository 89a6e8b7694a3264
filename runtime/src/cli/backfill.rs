//! `statflow backfill`: orders a running statflow to fill in the history of
//! a metric that joined its topology at a restart, then follows it with a
//! progress bar and an ETA until the history is in.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};

use super::BackfillArgs;
use crate::server::backfill::{BackfillProgress, BackfillState};

/// How often the progress is asked for.
const POLL: Duration = Duration::from_millis(500);

/// Orders the backfill and waits for it. Exits 1 when the server refuses.
pub fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let (text, compiled) =
        super::check::load(&args.file).with_context(|| format!("cannot read {name}"))?;
    let Some(plan) = compiled.plan else {
        let color = std::io::stderr().is_terminal();
        for d in &compiled.diagnostics {
            eprint!("{}", d.render(&name, &text, color));
        }
        return Ok(ExitCode::from(1));
    };
    if !plan.metrics.iter().any(|m| m.name == args.metric) {
        bail!("{name} has no metric `{}`", args.metric);
    }
    let client = Client::new(&args.url, args.token.clone());
    let body = json!({"metric": args.metric, "from": args.from, "to": args.to});
    let (status, reply) = client.send("POST", &body)?;
    if !(200..300).contains(&status) {
        let error = &reply["error"];
        let code = error["code"].as_str().unwrap_or("error");
        let message = error["message"]
            .as_str()
            .unwrap_or("the server refused the order");
        eprintln!("error[{code}]: {message}");
        return Ok(ExitCode::from(1));
    }
    let mut progress: BackfillProgress = serde_json::from_value(reply["backfill"].clone())
        .context("the server's answer has no backfill progress")?;
    if status == 200 {
        eprintln!(
            "`{}` was ordered backfilled already; following it",
            args.metric
        );
    }
    if args.no_wait {
        println!("{}", serde_json::to_string_pretty(&progress)?);
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar(progress.total);
    while progress.state != BackfillState::Done {
        bar.set_length(progress.total);
        bar.set_position(progress.read);
        bar.set_message(format!("{} records", progress.records));
        std::thread::sleep(POLL);
        let (_, reply) = client.send("GET", &Json::Null)?;
        progress = reply["backfills"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| serde_json::from_value::<BackfillProgress>(p.clone()).ok())
            .find(|p| p.metric == args.metric)
            .with_context(|| {
                format!(
                    "the server no longer reports a backfill of `{}` (was it restarted with another topology?)",
                    args.metric
                )
            })?;
    }
    bar.set_position(progress.total);
    bar.finish_and_clear();
    println!(
        "backfilled `{}`: {} records read over {} partitions, {} could not be counted",
        progress.metric, progress.records, progress.partitions, progress.errors
    );
    Ok(ExitCode::SUCCESS)
}

/// Positions read of the total, with an ETA; hidden when standard error is
/// not a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{wide_bar} {percent:>3}%  {msg}  ETA {eta}")
        .expect("the template is valid");
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style)
}

/// A JSON client of `/v1/backfill`.
struct Client {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(base: &str, token: Option<String>) -> Self {
        Client {
            url: format!("{}/v1/backfill", base.trim_end_matches('/')),
            token: token
                .or_else(|| std::env::var("STATFLOW_TOKEN").ok())
                .filter(|t| !t.trim().is_empty()),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
        }
    }

    /// Sends a request; returns the status and the JSON body.
    fn send(&self, method: &str, body: &Json) -> anyhow::Result<(u16, Json)> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {}", t.trim()));
        let result = if method == "POST" {
            let mut request = self.agent.post(&self.url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes())
        } else {
            let mut request = self.agent.get(&self.url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        };
        let mut response = result.with_context(|| {
            format!(
                "nothing answers at {}: is statflow running there? (point --url at it)",
                self.url
            )
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("could not read the answer from {}", self.url))?;
        if status == 401 {
            bail!("statflow wants a token: pass --token or set STATFLOW_TOKEN");
        }
        let json = serde_json::from_str(&text)
            .with_context(|| format!("the answer from {} is not JSON: {text}", self.url))?;
        Ok((status, json))
    }
}
