//! `statflow query`: sends a JSON or EDN query to a running statflow and
//! prints the answer as a table, JSON or EDN.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value as Json;

use super::{QueryArgs, QueryFormat};
use crate::query::decode::{decode_edn, looks_like_edn, BodyFormat};
use crate::query::MAX_BODY_BYTES;

/// The longest answer the client reads; a full answer of 100 000 rows with
/// long dimension values fits well within it.
const MAX_ANSWER_BYTES: u64 = 512 << 20;

/// Sends a query and prints the answer. Exits 1 when the server refuses
/// the query, after printing each problem with its path.
pub fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let body = read_query(&args.file)?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("STATFLOW_TOKEN").ok())
        .filter(|t| !t.trim().is_empty());
    match send(&args.url, &body, args.format, token.as_deref())? {
        Outcome::Answer(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Refused(problems) => {
            for line in problems {
                eprintln!("{line}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// What the server made of a query.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The answer, ready to print.
    Answer(String),
    /// The server refused the query (400): one line per problem.
    Refused(Vec<String>),
}

/// Posts a query to `{base}/v1/query` and reads the answer in `format`.
fn send(
    base: &str,
    body: &[u8],
    format: QueryFormat,
    token: Option<&str>,
) -> anyhow::Result<Outcome> {
    let sent_as = if looks_like_edn(body) {
        BodyFormat::Edn
    } else {
        BodyFormat::Json
    };
    let wanted = match format {
        QueryFormat::Edn => BodyFormat::Edn,
        QueryFormat::Json | QueryFormat::Table => BodyFormat::Json,
    };
    let url = format!("{}/v1/query", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let mut request = agent
        .post(&url)
        .header("Content-Type", sent_as.media_type())
        .header("Accept", wanted.media_type());
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {}", token.trim()));
    }
    let response = request.send(body);
    let mut response = match response {
        Ok(r) => r,
        Err(e) if refused(&e) => bail!(
            "nothing answers at {base}: start statflow with `statflow run TOPOLOGY.topo` (it serves HTTP on 127.0.0.1:8080 unless told otherwise), or point --url at where it runs"
        ),
        Err(e) => return Err(e).with_context(|| format!("could not send the query to {url}")),
    };
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .with_context(|| format!("could not read the answer from {url}"))?;
    match status {
        200..=299 => Ok(Outcome::Answer(match format {
            QueryFormat::Json | QueryFormat::Edn => with_newline(&text),
            QueryFormat::Table => {
                let answer: Json = serde_json::from_str(&text)
                    .with_context(|| format!("the answer from {url} is not JSON"))?;
                table(&answer)
            }
        })),
        400 => {
            let errors = parse_errors(&text);
            if errors.is_empty() {
                return Ok(Outcome::Refused(vec![format!(
                    "error: the server refused the query: {}",
                    text.trim()
                )]));
            }
            Ok(Outcome::Refused(
                errors
                    .into_iter()
                    .map(|(code, message, path)| {
                        if path.is_empty() {
                            format!("error[{code}]: {message}")
                        } else {
                            format!("error[{code}] at {path}: {message}")
                        }
                    })
                    .collect(),
            ))
        }
        413 => bail!(
            "the server refused the query as too large ({} bytes; it reads at most {MAX_BODY_BYTES})",
            body.len()
        ),
        404 => bail!("{url} is not a statflow query endpoint (404): check --url"),
        401 if token.is_none() => bail!(
            "the server wants a token: pass --token or set STATFLOW_TOKEN (statflow printed the first admin's token when it first started; `statflow user add` makes more)"
        ),
        401 => bail!("the server refused the token (401): it may have been rotated or its user removed"),
        403 => bail!("the server refused the query (403): {}", text.trim()),
        _ => bail!("the server answered {status}: {}", text.trim()),
    }
}

/// Reads the query from a file, or from standard input for `-`.
fn read_query(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    if file == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("reading a query from standard input; end it with Ctrl-D");
        }
        stdin
            .lock()
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut body)
            .context("could not read the query from standard input")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("could not open {file}"))?
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("could not read {file}"))?;
    }
    if body.len() as u64 > MAX_BODY_BYTES {
        bail!("the query is larger than the {MAX_BODY_BYTES} bytes a server reads");
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        bail!("the query is empty: write one such as {{\"metric\": \"reward_stats\", \"time_window\": {{\"kind\": \"relative\", \"last\": \"1h\"}}}}");
    }
    Ok(body)
}

/// True when the error means nothing listens at the address.
fn refused(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        ),
        ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// `(code, message, path)` of every error in a 400 answer, JSON or EDN.
fn parse_errors(text: &str) -> Vec<(String, String, String)> {
    let value = serde_json::from_str::<Json>(text)
        .ok()
        .or_else(|| decode_edn(text).ok());
    let Some(value) = value else {
        return Vec::new();
    };
    let list: Vec<&Json> = match value.get("errors").and_then(Json::as_array) {
        Some(all) => all.iter().collect(),
        None => value.get("error").into_iter().collect(),
    };
    let field = |e: &Json, k: &str| e.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    list.into_iter()
        .map(|e| (field(e, "code"), field(e, "message"), field(e, "path")))
        .collect()
}

/// The answer as an aligned table: numbers right-aligned, then a line
/// saying how many rows and what the answer reflects.
pub fn table(answer: &Json) -> String {
    let columns: Vec<String> = answer
        .get("columns")
        .and_then(Json::as_array)
        .map(|c| {
            c.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<(String, bool)>> = answer
        .get("rows")
        .and_then(Json::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    columns
                        .iter()
                        .map(|c| match row.get(c) {
                            None | Some(Json::Null) => ("-".to_string(), false),
                            Some(Json::String(s)) => (s.clone(), false),
                            Some(Json::Number(n)) => (n.to_string(), true),
                            Some(other) => (other.to_string(), false),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| width(&r[i].0))
                .chain([width(c)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r[i].1 || r[i].0 == "-"))
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let pad = " ".repeat(widths[i].saturating_sub(width(s)));
                if numeric[i] {
                    format!("{pad}{s}")
                } else {
                    format!("{s}{pad}")
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    if !columns.is_empty() {
        line(columns.iter().map(String::as_str).collect(), &mut out);
        line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect(),
            &mut out,
        );
        for row in &rows {
            line(row.iter().map(|(s, _)| s.as_str()).collect(), &mut out);
        }
    }
    let as_of = answer.get("as_of");
    let epoch = as_of
        .and_then(|a| a.get("epoch"))
        .map(|e| e.to_string())
        .unwrap_or_default();
    let watermark = as_of
        .and_then(|a| a.get("watermark"))
        .and_then(Json::as_str)
        .unwrap_or("none yet");
    let metric = answer.get("metric").and_then(Json::as_str).unwrap_or("");
    out.push_str(&format!(
        "({} row{} of {metric}, as of epoch {epoch}, watermark {watermark})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_say_what_they_reflect() {
        let answer = json!({
            "metric": "reward_stats",
            "as_of": {"epoch": 7, "watermark": "2024-08-20T10:00:00+08:00"},
            "columns": ["reward_type", "rewards"],
            "rows": [{"reward_type": "task", "rewards": 123}, {"reward_type": "jackpot", "rewards": 4}, {"reward_type": null, "rewards": null}],
        });
        let t = table(&answer);
        assert_eq!(
            t,
            "reward_type  rewards\n\
             -----------  -------\n\
             task             123\n\
             jackpot            4\n\
             -                  -\n\
             (3 rows of reward_stats, as of epoch 7, watermark 2024-08-20T10:00:00+08:00)\n"
        );
    }

    #[test]
    fn errors_are_read_from_json_and_edn() {
        let json = r#"{"error": {"code": "a", "message": "m", "path": "p"}, "errors": [{"code": "a", "message": "m", "path": "p"}, {"code": "b", "message": "n", "path": ""}]}"#;
        assert_eq!(parse_errors(json).len(), 2);
        let edn = r#"{:error {:code "a" :message "m" :path "p"} :errors [{:code "a" :message "m" :path "p"}]}"#;
        assert_eq!(
            parse_errors(edn),
            vec![("a".into(), "m".into(), "p".into())]
        );
        assert!(parse_errors("oops").is_empty());
    }

    /// A stand-in for the server's query route: decode, validate against
    /// a plan, answer one fixed row or the errors, in the format asked for.
    fn stand_in() -> (String, std::sync::mpsc::Sender<()>) {
        use crate::query;
        use statflow_dataflow::query::{Answer, AsOf, Cell};
        use warp::Filter;

        let plan = statflow_dsl::compile(
            "source events = generator()\n\
             metric reward_stats from events { dimensions game_id, seed_id, reward_type  window tumbling 1m  \
             measures { rewards = count()  players = distinct(user_id) } }",
            None,
        )
        .plan
        .expect("compiles");
        let route = warp::post()
            .and(warp::path!("v1" / "query"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::header::optional::<String>("accept"))
            .and(warp::body::bytes())
            .map(
                move |ct: Option<String>, accept: Option<String>, body: bytes::Bytes| {
                    let (text, ty, status) =
                        match query::parse(&body, ct.as_deref(), &plan, 1_724_119_200_000) {
                            Ok(q) => {
                                let answer = Answer {
                                    as_of: AsOf {
                                        epoch: 3,
                                        watermark_ms: Some(1_724_119_200_000),
                                        sources: Vec::new(),
                                        ..Default::default()
                                    },
                                    columns: vec![
                                        "reward_type".into(),
                                        "__time".into(),
                                        "rewards".into(),
                                    ],
                                    rows: vec![vec![
                                        Cell::Value(statflow_dataflow::value::Value::Str(
                                            "task".into(),
                                        )),
                                        Cell::Time(1_724_115_600_000),
                                        Cell::Int(123),
                                    ]],
                                };
                                let name = query::metric_name(&plan, &q);
                                let (text, ty) = query::render_for(
                                    accept.as_deref(),
                                    &answer,
                                    name,
                                    q.time_zone.as_deref(),
                                );
                                (text, ty, warp::http::StatusCode::OK)
                            }
                            Err(errors) => {
                                let (text, ty) =
                                    query::render_errors_for(accept.as_deref(), &errors);
                                (text, ty, warp::http::StatusCode::BAD_REQUEST)
                            }
                        };
                    warp::http::Response::builder()
                        .status(status)
                        .header("content-type", ty)
                        .body(text)
                        .expect("a response")
                },
            );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
                };
                warp::serve(route)
                    .incoming(listener)
                    .graceful(shutdown)
                    .run()
                    .await;
            });
        });
        (url, stop)
    }

    #[test]
    fn sends_json_and_edn_and_prints_answers_and_errors() {
        let (url, stop) = stand_in();
        let edn = br#"{:metric :reward-stats :time-window {:kind :absolute :from "2024-08-20T09:00:00+08:00" :to "2024-08-20T10:00:00+08:00"} :filters {:seed-id "fuc|tax-up" :reward-type #{:reward.type/task}} :group-by-keys [:reward-type :__time] :time-zone "+08:00"}"#;
        let Outcome::Answer(t) = send(&url, edn, QueryFormat::Table, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            t,
            "reward_type  __time                     rewards\n\
             -----------  -------------------------  -------\n\
             task         2024-08-20T09:00:00+08:00      123\n\
             (1 row of reward_stats, as of epoch 3, watermark 2024-08-20T10:00:00+08:00)\n"
        );
        let Outcome::Answer(e) = send(&url, edn, QueryFormat::Edn, None).unwrap() else {
            panic!()
        };
        assert!(e.starts_with("{:metric :reward-stats"), "{e}");
        let json =
            br#"{"metric": "reward_stats", "time_window": {"kind": "relative", "last": "1h"}}"#;
        let Outcome::Answer(j) = send(&url, json, QueryFormat::Json, None).unwrap() else {
            panic!()
        };
        assert!(j.starts_with(r#"{"metric":"reward_stats""#), "{j}");
        let bad =
            br#"{"metric": "reward_stat", "time_window": {"kind": "relative", "last": "1 h"}}"#;
        for format in [QueryFormat::Table, QueryFormat::Edn] {
            let Outcome::Refused(lines) = send(&url, bad, format, None).unwrap() else {
                panic!()
            };
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert!(lines[0].starts_with("error[unknown_metric] at metric: There is no metric `reward_stat`; did you mean `reward_stats`?"), "{lines:?}");
            assert!(
                lines[1].starts_with("error[bad_time] at time_window.last: "),
                "{lines:?}"
            );
        }
        let err = send(&format!("{url}/nowhere"), json, QueryFormat::Json, None).unwrap_err();
        assert!(err.to_string().contains("404"), "{err:#}");
        let _ = stop.send(());
    }

    #[test]
    fn a_closed_port_says_to_start_statflow() {
        // Bind and drop a listener to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.json");
        std::fs::write(&file, r#"{"metric": "m", "time_window": {"last": "1h"}}"#).unwrap();
        let err = query(QueryArgs {
            file: file.to_string_lossy().into_owned(),
            url: format!("http://127.0.0.1:{port}"),
            format: QueryFormat::Table,
            token: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("statflow run"), "{err:#}");
    }
}
