//! Time in a query: the time window, the granularity of `__time`
//! buckets, and the time zone they follow.

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use serde_json::Value as Json;
use statflow_dataflow::timebucket;
use statflow_dsl::duration::parse_duration;
use statflow_dsl::{Duration, MetricPlan, Problem};

use super::validate::{hint, join_path, list, Checker, MetricRef, TIME_KEY};

/// The longest granularity a query may ask for (about ten years): longer
/// buckets would overflow bucket arithmetic without telling anyone more.
pub const MAX_GRANULARITY: Duration = Duration::from_millis(3_660 * 86_400_000);

/// Reads a time zone as the engine will (`Z`, `UTC`, `+08:00`, `-0530`,
/// `Asia/Shanghai`) and names it canonically: `None` for UTC, `+HH:MM` for
/// a fixed offset, the database's spelling for a named zone.
fn read_time_zone(text: &str) -> Result<(TimeZone, Option<String>), String> {
    let tz = timebucket::parse_time_zone(text)?;
    let name = match (tz.iana_name(), tz.to_fixed_offset()) {
        (_, Ok(offset)) if offset == Offset::UTC => None,
        (Some(name), _) => Some(name.to_string()),
        (None, Ok(offset)) => Some(format_offset(offset)),
        (None, Err(_)) => Some(text.trim().to_string()),
    };
    Ok((tz, name))
}

/// `+08:00`, `-05:30`.
fn format_offset(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The sentence for a duration that cannot be read, from the language's catalog.
fn duration_sentence(text: &str) -> Option<String> {
    match parse_duration(text) {
        Ok(_) => None,
        Err(why) => {
            let problem = Problem::BadDuration {
                found: text.to_string(),
                why,
            };
            Some(match problem.help() {
                Some(help) => format!("{}: {help}.", problem.message()),
                None => format!("{}.", problem.message()),
            })
        }
    }
}

/// A signed duration such as `-5h30m`, for offsets.
fn signed(ms: i64) -> String {
    let d = Duration::from_millis(ms.unsigned_abs()).to_string();
    if ms < 0 {
        format!("-{d}")
    } else {
        d
    }
}

impl Checker {
    // ---- time window -----------------------------------------------------

    pub(super) fn time_window(&mut self, v: Option<&Json>, now_ms: i64) -> Option<(i64, i64)> {
        const PATH: &str = "time_window";
        let Some(v) = v else {
            self.push(
                "missing_field",
                PATH,
                "A query needs `time_window`, such as {\"kind\": \"relative\", \"last\": \"6h\"} or {\"kind\": \"absolute\", \"from\": \"2024-08-20T09:00:00+08:00\", \"to\": \"2024-08-20T10:00:00+08:00\"}.",
            );
            return None;
        };
        let obj = self.object(
            PATH,
            v,
            "an object such as {\"kind\": \"relative\", \"last\": \"6h\"}",
        )?;
        const KEYS: [&str; 4] = ["kind", "from", "to", "last"];
        for key in obj.keys() {
            if !KEYS.contains(&key.as_str()) {
                self.unknown_field(&join_path(PATH, key), key, &KEYS, "time window");
            }
        }
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let kind = match get("kind") {
            Some(k) => match self.string("time_window.kind", k, "\"absolute\" or \"relative\"")? {
                "absolute" => "absolute",
                "relative" => "relative",
                other => {
                    let hint = hint(other, &["absolute", "relative"], "kinds");
                    self.push(
                        "bad_time",
                        "time_window.kind",
                        format!(
                            "A time window is \"absolute\" (with `from` and `to`) or \"relative\" (with `last`), not \"{other}\"{hint}"
                        ),
                    );
                    return None;
                }
            },
            None if get("last").is_some() => "relative",
            None => "absolute",
        };
        if kind == "relative" {
            for key in ["from", "to"] {
                if obj.contains_key(key) {
                    self.push(
                        "unknown_field",
                        join_path(PATH, key),
                        format!("A relative time window has only `last`, not `{key}`: give `last`, or make the window \"absolute\"."),
                    );
                }
            }
            let Some(last) = get("last") else {
                self.push(
                    "missing_field",
                    "time_window.last",
                    "A relative time window needs `last`, how far back from now it reaches, such as \"6h\".",
                );
                return None;
            };
            let text = self.string("time_window.last", last, "a duration such as \"6h\"")?;
            if let Some(sentence) = duration_sentence(text) {
                self.push("bad_time", "time_window.last", sentence);
                return None;
            }
            let back = parse_duration(text).ok()?.millis();
            let Some(from) = i64::try_from(back).ok().and_then(|b| now_ms.checked_sub(b)) else {
                self.push(
                    "bad_time",
                    "time_window.last",
                    format!("`{text}` reaches back further than time can be counted: use a shorter duration."),
                );
                return None;
            };
            Some((from, now_ms))
        } else {
            if obj.contains_key("last") {
                self.push(
                    "unknown_field",
                    "time_window.last",
                    "An absolute time window has `from` and `to`, not `last`: drop `last`, or make the window \"relative\".",
                );
            }
            let from = self.instant(get("from"), "from");
            let to = self.instant(get("to"), "to");
            let ((from, from_text), (to, to_text)) = (from?, to?);
            if from >= to {
                self.push(
                    "empty_window",
                    PATH,
                    format!(
                        "The time window is empty: `from` ({from_text}) must be before `to` ({to_text}), which is not included."
                    ),
                );
                return None;
            }
            Some((from, to))
        }
    }

    /// `from` or `to` of an absolute window: milliseconds and the text.
    fn instant(&mut self, v: Option<&Json>, key: &str) -> Option<(i64, String)> {
        let path = format!("time_window.{key}");
        let Some(v) = v else {
            self.push(
                "missing_field",
                &path,
                format!(
                    "An absolute time window needs `{key}`, such as \"2024-08-20T09:00:00+08:00\"."
                ),
            );
            return None;
        };
        let text = self.string(
            &path,
            v,
            "an RFC 3339 time such as \"2024-08-20T09:00:00+08:00\"",
        )?;
        match text.trim().parse::<Timestamp>() {
            Ok(ts) => Some((ts.as_millisecond(), text.to_string())),
            Err(_) => {
                let message = if text.trim().parse::<jiff::civil::DateTime>().is_ok() {
                    format!("`{text}` has no UTC offset: add one, as in \"2024-08-20T09:00:00+08:00\", or end it with `Z` for UTC.")
                } else {
                    format!("`{text}` is not a time: write an RFC 3339 time with its offset, such as \"2024-08-20T09:00:00+08:00\".")
                };
                self.push("bad_time", path, message);
                None
            }
        }
    }

    pub(super) fn granularity(&mut self, v: Option<&Json>, metric: MetricRef) -> Option<u64> {
        const PATH: &str = "granularity";
        let text = self.string(PATH, v?, "a duration such as \"5m\"")?;
        if let Some(sentence) = duration_sentence(text) {
            self.push("bad_granularity", PATH, sentence);
            return None;
        }
        let g = parse_duration(text).ok()?;
        if g > MAX_GRANULARITY {
            self.push(
                "bad_granularity",
                PATH,
                format!(
                    "A granularity of {g} is longer than the {MAX_GRANULARITY} a query may use."
                ),
            );
            return None;
        }
        if let Some((_, m)) = metric {
            let step = m.window.step();
            if g.millis() % step.millis() != 0 {
                let examples: Vec<String> = granularities(step)
                    .into_iter()
                    .take(4)
                    .map(|d| d.to_string())
                    .collect();
                let examples: Vec<&str> = examples.iter().map(String::as_str).collect();
                let what = if m.window.is_session() {
                    "which groups sessions by their start in whole minutes".to_string()
                } else {
                    format!("whose windows start every {step}")
                };
                self.push(
                    "bad_granularity",
                    PATH,
                    format!(
                        "A granularity of {g} does not fit metric `{}`, {what}: use a multiple of {step}, such as {}.",
                        m.name,
                        list(&examples).replace(" and ", " or ")
                    ),
                );
                return None;
            }
        }
        Some(g.millis())
    }

    pub(super) fn time_zone(&mut self, v: Option<&Json>) -> Option<(TimeZone, Option<String>)> {
        const PATH: &str = "time_zone";
        let text = self.string(
            PATH,
            v?,
            "a time zone such as \"+08:00\" or \"Asia/Shanghai\"",
        )?;
        match read_time_zone(text) {
            Ok(zone) => Some(zone),
            Err(message) => {
                let message = if message.ends_with('.') {
                    message
                } else {
                    format!("{message}.")
                };
                self.push("bad_time_zone", PATH, message);
                None
            }
        }
    }

    /// Every UTC offset the zone takes in `[from, to)` must be a whole
    /// number of window steps, or a bucket boundary would cut a pane.
    pub(super) fn zone_fits_window(
        &mut self,
        tz: &TimeZone,
        name: &Option<String>,
        m: &MetricPlan,
        from: i64,
        to: i64,
    ) {
        let Some(name) = name else { return };
        let step = m.window.step().millis() as i64;
        let misfit = |offset: Offset| {
            let ms = i64::from(offset.seconds()) * 1000;
            (ms % step != 0).then_some(ms)
        };
        let start = Timestamp::from_millisecond(from).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut bad = misfit(tz.to_offset(start)).map(|ms| (ms, None));
        if bad.is_none() {
            // Daylight-saving changes within the window; a window of
            // centuries is checked for its first thousand changes.
            for t in tz.following(start).take(1_000) {
                let at = t.timestamp();
                if at.as_millisecond() >= to {
                    break;
                }
                if let Some(ms) = misfit(t.offset()) {
                    bad = Some((ms, Some(at)));
                    break;
                }
            }
        }
        if let Some((ms, at)) = bad {
            let when = match at {
                Some(at) => format!(" from {at}"),
                None => String::new(),
            };
            let step = m.window.step();
            self.push(
                "bad_time_zone",
                "time_zone",
                format!(
                    "Time zone `{name}` is {} off UTC{when}, not a whole number of the {step} steps of metric `{}`'s windows, so its time buckets would cut windows in two: use a zone whose offset is a multiple of {step}, such as UTC, or leave `{TIME_KEY}` out of `group_by`.",
                    signed(ms),
                    m.name
                ),
            );
        }
    }
}

/// The granularities worth offering for a window step: the step and the
/// usual multiples of it, shortest first.
pub fn granularities(step: Duration) -> Vec<Duration> {
    // 1m 5m 15m 1h 6h 1d 1w 30d
    const USUAL: [u64; 8] = [
        60_000,
        300_000,
        900_000,
        3_600_000,
        21_600_000,
        86_400_000,
        604_800_000,
        2_592_000_000,
    ];
    let s = step.millis();
    let mut out = vec![step];
    out.extend(
        USUAL
            .iter()
            .filter(|g| **g > s && **g % s == 0)
            .map(|g| Duration::from_millis(*g)),
    );
    if out.len() < 4 {
        for k in [2, 5, 10, 30] {
            if let Some(g) = s.checked_mul(k).filter(|g| *g <= MAX_GRANULARITY.millis()) {
                out.push(Duration::from_millis(g));
            }
        }
        out.sort();
        out.dedup();
    }
    out.truncate(8);
    out
}

#[cfg(test)]
mod tests {
    use super::super::validate::fixtures::*;
    use super::*;
    use crate::query::validate::validate;
    use serde_json::json;

    #[test]
    fn granularity_follows_the_window_step() {
        let p = more();
        let q = |g: &str| json!({"metric": "hopping", "time_window": {"last": "1d"}, "group_by": ["__time"], "granularity": g});
        assert_eq!(
            validate(&q("15m"), &p, NOW).unwrap().granularity_ms,
            Some(900_000)
        );
        one_in(&p, q("7m"), "bad_granularity", "granularity");
        // Hourly panes: +05:30 cuts them, +08:00 does not, even for days.
        let z = |zone: &str, g: &str| json!({"metric": "typed", "time_window": {"last": "1d"}, "group_by": ["__time"], "granularity": g, "time_zone": zone});
        assert!(validate(&z("+08:00", "1d"), &p, NOW).is_ok());
        one_in(&p, z("Asia/Kolkata", "1d"), "bad_time_zone", "time_zone");
        // Without `__time` the zone only prints times, so any zone will do.
        assert!(validate(
            &json!({"metric": "typed", "time_window": {"last": "1d"}, "time_zone": "+05:30"}),
            &p,
            NOW
        )
        .is_ok());
        // Offsets that change within the window are checked too:
        // Pyongyang moved from +09:00 to +08:30 on 2015-08-15.
        let around = |to: &str| {
            json!({"metric": "typed", "group_by": ["__time"], "time_zone": "Asia/Pyongyang",
            "time_window": {"from": "2015-08-01T00:00:00Z", "to": to}})
        };
        assert!(validate(&around("2015-08-10T00:00:00Z"), &p, NOW).is_ok());
        let m = one_in(
            &p,
            around("2015-08-20T00:00:00Z"),
            "bad_time_zone",
            "time_zone",
        );
        assert!(m.contains("8h30m off UTC from 2015-08-14T15:00:00Z"), "{m}");
        let shown = |ms| {
            granularities(Duration::from_millis(ms))
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(60_000),
            ["1m", "5m", "15m", "1h", "6h", "1d", "1w", "30d"]
        );
        assert_eq!(shown(300_000), ["5m", "15m", "1h", "6h", "1d", "1w", "30d"]);
        assert_eq!(
            granularities(Duration::from_millis(7_000))
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>(),
            ["7s", "14s", "35s", "1m10s", "3m30s", "1w"]
        );
    }
}
