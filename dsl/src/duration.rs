//! Durations written as `500ms`, `30s`, `5m`, `1h30m`, `7d`, `2w`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A length of time in milliseconds, the unit of every window, lateness bound and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration {
    millis: u64,
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationProblem {
    /// A unit that is not one of `ms s m h d w`, with a close one if there is.
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// A known unit that is close to it.
        suggestion: Option<&'static str>,
    },
    /// Digits with no unit after them (`5` where `5s` was meant).
    MissingUnit,
    /// A duration of length zero.
    Zero,
    /// More milliseconds than fit in 64 bits.
    TooLong,
    /// A number with a fraction before its unit (`1.5m`): durations are
    /// whole numbers of a unit.
    Fraction {
        /// The same length in whole units, when there is one (`1m30s`).
        exact: Option<Duration>,
    },
}

/// The units a duration may use, with their length in milliseconds.
pub const UNITS: [(&str, u64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

impl Duration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// The length in milliseconds.
    pub const fn millis(self) -> u64 {
        self.millis
    }
}

impl fmt::Display for Duration {
    /// Prints the shortest exact form, largest units first (`90m` prints `1h30m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return write!(f, "0s");
        }
        let mut rest = self.millis;
        // Weeks are only used when they are exact, since `1w2d` reads oddly.
        for (unit, len) in UNITS.iter().rev() {
            if *unit == "w" && !rest.is_multiple_of(*len) {
                continue;
            }
            if rest >= *len {
                write!(f, "{}{}", rest / len, unit)?;
                rest %= len;
            }
        }
        Ok(())
    }
}

/// Reads a duration such as `1h30m`. The text must start with a digit.
pub fn parse_duration(text: &str) -> Result<Duration, DurationProblem> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '_')
            .unwrap_or(rest.len());
        if digits_len == 0 {
            // Letters where digits were expected, e.g. `5mx`: report the whole unit.
            return Err(unknown_unit(rest));
        }
        let digits: String = rest[..digits_len].chars().filter(|c| *c != '_').collect();
        rest = &rest[digits_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(DurationProblem::MissingUnit);
        }
        let Some((_, len)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(unknown_unit(unit));
        };
        let n: u64 = digits.parse().map_err(|_| DurationProblem::TooLong)?;
        total = n
            .checked_mul(*len)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationProblem::TooLong)?;
    }
    if total == 0 {
        return Err(DurationProblem::Zero);
    }
    Ok(Duration::from_millis(total))
}

/// What is wrong with `text`, a number with a fraction or an exponent
/// followed by a unit, such as `1.5m` or `0.5s`.
pub fn fraction_problem(text: &str) -> DurationProblem {
    let unit_start = text
        .find(|c: char| c.is_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_start);
    let exact = UNITS.iter().find(|(u, _)| *u == unit).and_then(|(_, len)| {
        let n: f64 = number.replace('_', "").parse().ok()?;
        let millis = n * *len as f64;
        // Only an exact whole number of milliseconds is worth suggesting.
        (millis.is_finite() && millis >= 1.0 && millis.fract() == 0.0 && millis < 1e18)
            .then(|| Duration::from_millis(millis as u64))
    });
    DurationProblem::Fraction { exact }
}

fn unknown_unit(unit: &str) -> DurationProblem {
    let lower = unit.to_ascii_lowercase();
    let suggestion = match lower.as_str() {
        "sec" | "secs" | "second" | "seconds" => Some("s"),
        "min" | "mins" | "minute" | "minutes" => Some("m"),
        "hr" | "hrs" | "hour" | "hours" => Some("h"),
        "day" | "days" => Some("d"),
        "week" | "weeks" | "wk" => Some("w"),
        "msec" | "millis" | "milliseconds" => Some("ms"),
        other => UNITS.iter().map(|(u, _)| *u).find(|u| *u == other),
    };
    DurationProblem::UnknownUnit {
        unit: unit.to_string(),
        suggestion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, millis, shown) in [
            ("500ms", 500, "500ms"),
            ("5m", 300_000, "5m"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90m", 5_400_000, "1h30m"),
            ("7d", 604_800_000, "1w"),
            ("8d", 691_200_000, "8d"),
            ("1_000ms", 1000, "1s"),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d.millis(), millis, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(parse_duration("0s"), Err(DurationProblem::Zero));
        assert_eq!(
            parse_duration("5mins"),
            Err(DurationProblem::UnknownUnit {
                unit: "mins".into(),
                suggestion: Some("m")
            })
        );
        assert_eq!(
            parse_duration("99999999999999999999d"),
            Err(DurationProblem::TooLong)
        );
        assert!(matches!(
            parse_duration("5x"),
            Err(DurationProblem::UnknownUnit { .. })
        ));
    }

    #[test]
    fn fractions_suggest_the_exact_whole_form() {
        let exact = |text| match fraction_problem(text) {
            DurationProblem::Fraction { exact } => exact.map(|d| d.to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(exact("1.5m").as_deref(), Some("1m30s"));
        assert_eq!(exact("0.5s").as_deref(), Some("500ms"));
        assert_eq!(exact("1e3ms").as_deref(), Some("1s"));
        // Less than a millisecond, or an unknown unit: no suggestion.
        assert_eq!(exact("0.0001s"), None);
        assert_eq!(exact("1.5x"), None);
    }
}
