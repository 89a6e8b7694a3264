//! Time buckets of a query: panes re-bucketed into the query's granularity,
//! with day and week buckets following the query's time zone.

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

const DAY: i64 = 86_400_000;
const WEEK: i64 = 7 * DAY;

/// `ms` since the Unix epoch as RFC 3339 in UTC, such as `2024-08-20T02:00:00Z`.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Reads a time zone: `Z`/`UTC`, a fixed offset such as `+08:00` or
/// `-0530`, or an IANA name such as `Asia/Shanghai`.
pub fn parse_time_zone(text: &str) -> Result<TimeZone, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    if let Some(sign) = t.chars().next().filter(|c| *c == '+' || *c == '-') {
        let digits: String = t[1..].chars().filter(|c| *c != ':').collect();
        let ok =
            digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()) || digits.len() == 2;
        let hours: i32 = digits
            .get(..2)
            .and_then(|h| h.parse().ok())
            .filter(|_| ok)
            .ok_or_else(|| bad_offset(text))?;
        let minutes: i32 = if digits.len() == 4 {
            digits[2..].parse().map_err(|_| bad_offset(text))?
        } else {
            0
        };
        if hours > 18 || minutes > 59 {
            return Err(bad_offset(text));
        }
        let seconds = (hours * 3600 + minutes * 60) * if sign == '-' { -1 } else { 1 };
        let offset = Offset::from_seconds(seconds).map_err(|e| e.to_string())?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(t).map_err(|_| format!("`{text}` is not a time zone: write an offset such as \"+08:00\" or a name such as \"Asia/Shanghai\""))
}

fn bad_offset(text: &str) -> String {
    format!("`{text}` is not a UTC offset: write it as \"+08:00\" or \"-05:30\"")
}

/// The UTC offset of `tz` at `ms`, in milliseconds.
pub fn offset_ms(tz: &TimeZone, ms: i64) -> i64 {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    tz.to_offset(ts).seconds() as i64 * 1000
}

/// The start of the bucket of length `granularity` holding `ms`. Buckets of
/// whole days start at local midnight; buckets of whole weeks start on a
/// local Monday; shorter buckets are aligned in local time.
pub fn floor(ms: i64, granularity: i64, tz: &TimeZone) -> i64 {
    let granularity = granularity.max(1);
    let offset = offset_ms(tz, ms);
    let local = ms + offset;
    if granularity % DAY != 0 {
        return (local.div_euclid(granularity) * granularity) - offset;
    }
    let day = local.div_euclid(DAY);
    let days = granularity / DAY;
    let start_day = if granularity % WEEK == 0 {
        // 1970-01-05 was the first Monday after the epoch.
        (day - 4).div_euclid(days) * days + 4
    } else {
        day.div_euclid(days) * days
    };
    local_midnight(start_day, tz)
}

/// The instant of local midnight on the given day (days since 1970-01-01),
/// or the first instant of that day when midnight is skipped by a DST change.
fn local_midnight(day: i64, tz: &TimeZone) -> i64 {
    let naive = Timestamp::from_millisecond(day * DAY).unwrap_or(Timestamp::UNIX_EPOCH);
    let date = naive.to_zoned(TimeZone::UTC).date();
    match date.to_zoned(tz.clone()).and_then(|z| z.start_of_day()) {
        Ok(z) => z.timestamp().as_millisecond(),
        Err(_) => day * DAY - offset_ms(tz, day * DAY),
    }
}

/// The start of the bucket after the one starting at `start`.
pub fn next(start: i64, granularity: i64, tz: &TimeZone) -> i64 {
    if granularity % DAY != 0 {
        return start + granularity;
    }
    // Days vary in length across DST changes: step past the bucket and floor.
    floor(start + granularity + DAY / 2, granularity, tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn utc_and_offsets() {
        let utc = TimeZone::UTC;
        assert_eq!(floor(90 * 60_000, H, &utc), H);
        let plus8 = parse_time_zone("+08:00").unwrap();
        // 1970-01-01T17:00Z is 01:00 on the 2nd in +08:00: the day starts at 16:00Z.
        assert_eq!(floor(17 * H, DAY, &plus8), 16 * H);
        let minus0530 = parse_time_zone("-05:30").unwrap();
        assert_eq!(floor(0, H, &minus0530), -H / 2);
        assert!(parse_time_zone("+25:00").is_err());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn weeks_start_on_monday() {
        let utc = TimeZone::UTC;
        // 1970-01-08 (a Thursday) is in the week starting Monday 1970-01-05.
        assert_eq!(floor(7 * DAY + H, WEEK, &utc), 4 * DAY);
        assert_eq!(next(4 * DAY, WEEK, &utc), 11 * DAY);
    }

    #[test]
    fn days_follow_daylight_saving() {
        let tz = TimeZone::get("Europe/Berlin")
            .expect("the bundled time zone database has Europe/Berlin");
        // 2024-03-31 is 23 hours long in Berlin; its next day starts 23h later.
        let start = floor(1_711_872_000_000, DAY, &tz); // 2024-03-31T08:00Z
        assert_eq!(start, 1_711_839_600_000); // 2024-03-30T23:00Z
        assert_eq!(next(start, DAY, &tz) - start, 23 * H);
    }
}
