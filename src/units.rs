//! Units for people: sizes (`1.5 MiB`), durations (`1.2` seconds) and UTC
//! times (RFC 3339, and the compact form in backup IDs), written with integer
//! arithmetic so that no float formatting is linked, and without a date
//! crate: the calendar is one well-known algorithm (Howard Hinnant's). Also
//! text from outside made safe for a terminal (`printable`).

use std::time::{SystemTime, UNIX_EPOCH};

/// `1.5 MiB`, to a tenth. Integer arithmetic only: the binary then needs no
/// float formatting code (see vendor-notes/dependencies.md).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 1)) > 0 {
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => {
            let size = 1u128 << (10 * unit);
            let tenths = (u128::from(bytes) * 10 + size / 2) / size;
            format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
        }
    }
}

/// A duration in seconds with `decimals` (0 to 3) digits after the point,
/// rounded: `seconds(1234 ms, 1)` is `1.2`. Integer arithmetic only.
pub fn seconds(duration: std::time::Duration, decimals: u32) -> String {
    let decimals = decimals.min(3);
    let step = 10u128.pow(3 - decimals);
    let units = (duration.as_millis() + step / 2) / step;
    match decimals {
        0 => units.to_string(),
        _ => {
            let one = 10u128.pow(decimals);
            format!(
                "{}.{:0width$}",
                units / one,
                units % one,
                width = decimals as usize
            )
        }
    }
}

/// UTC date and time of `at` as (RFC 3339 "2026-11-25T03:15:00Z", compact
/// "20261125T031500Z" for IDs). Written out here rather than pulling in a date
/// crate: it is one well-known algorithm (days to civil date, Howard Hinnant).
pub fn utc_timestamps(at: SystemTime) -> (String, String) {
    let (date, time, _) = utc_parts(at);
    (
        format!(
            "{}-{}-{}T{}:{}:{}Z",
            date.0, date.1, date.2, time.0, time.1, time.2
        ),
        format!(
            "{}{}{}T{}{}{}Z",
            date.0, date.1, date.2, time.0, time.1, time.2
        ),
    )
}

/// RFC 3339 UTC to the microsecond, "2026-11-25T03:15:00.123456Z": a
/// backup's `created_at`, which must order backups made in one second.
pub fn utc_micros(at: SystemTime) -> String {
    let (date, time, micros) = utc_parts(at);
    format!(
        "{}-{}-{}T{}:{}:{}.{micros:06}Z",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

type Digits = (String, String, String);

/// Zero-padded (year, month, day), (hour, minute, second), and microseconds.
fn utc_parts(at: SystemTime) -> (Digits, Digits, u32) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days as i64);
    (
        (
            format!("{year:04}"),
            format!("{month:02}"),
            format!("{day:02}"),
        ),
        (
            format!("{hour:02}"),
            format!("{minute:02}"),
            format!("{second:02}"),
        ),
        since.subsec_micros(),
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time such as Keystone's
/// `2026-11-25T03:15:00.000000Z` (what follows the seconds is ignored);
/// `None` if malformed.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    if text.len() < 20 {
        return None;
    }
    utc_seconds(text, 0)
}

/// Seconds since the epoch of an HTTP date in its one current form,
/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110): what Swift's
/// `Date` says. `None` for anything else, the two obsolete forms included.
pub fn parse_http_date(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let words: Vec<&str> = text.split(' ').collect();
    let [weekday, day, month, year, time, "GMT"] = words[..] else {
        return None;
    };
    if weekday.len() != 4 || !weekday.ends_with(',') || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let month = MONTHS.iter().position(|name| *name == month)? + 1;
    if time.len() != 8 {
        return None;
    }
    utc_seconds(&format!("{year}-{month:02}-{day}T{time}"), 0)
}

/// Microseconds since the epoch of an RFC 3339 UTC time ending in `Z`, with
/// an optional fraction of 1 to 9 digits (past the sixth, truncated): the
/// form of a backup's `created_at`, which orders backups.
pub fn parse_rfc3339_micros(text: &str) -> Option<u64> {
    let micros = match text.get(19..)? {
        "Z" => 0,
        rest => {
            let fraction = rest.strip_prefix('.')?.strip_suffix('Z')?;
            if !(1..=9).contains(&fraction.len()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("{:0<6}", &fraction[..fraction.len().min(6)])
                .parse::<u64>()
                .ok()?
        }
    };
    utc_seconds(text, 0)?
        .checked_mul(1_000_000)?
        .checked_add(micros)
}

/// Microseconds since the epoch of any RFC 3339 time an operator may type:
/// `T` or a space between date and time, a fraction of any length (past the
/// sixth digit, truncated), and `Z` or an offset `+HH:MM`/`-HH:MM`.
pub fn parse_rfc3339_any(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.len() < 20 || !text.is_char_boundary(19) {
        return None;
    }
    let (head, mut rest) = text.split_at(19);
    let head = head.replacen(' ', "T", 1);
    let mut micros = 0u64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        micros = format!("{:0<6}", &fraction[..digits.min(6)]).parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let b = rest.as_bytes();
            if b.len() != 6 || b[3] != b':' {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    utc_seconds(&head.replace('t', "T"), offset)?
        .checked_mul(1_000_000)?
        .checked_add(micros)
}

/// RFC 3339 UTC to the millisecond of `micros` since the epoch.
pub fn utc_millis(micros: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_micros(micros);
    let (date, time, sub) = utc_parts(at);
    format!(
        "{}-{}-{}T{}:{}:{}.{:03}Z",
        date.0,
        date.1,
        date.2,
        time.0,
        time.1,
        time.2,
        sub / 1000
    )
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The seconds since the epoch of `YYYY-MM-DDTHH:MM:SS` at the start of
/// `text`, a local time `offset` seconds ahead of UTC: a day that exists
/// (no November 31st: it would be taken for December 1st) and a second 60
/// only where it is 23:59 in UTC, where leap seconds are inserted (read as
/// the next day's first, as Unix time does).
fn utc_seconds(text: &str, offset: i64) -> Option<u64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        digits.parse().ok()
    };
    let bytes = text.as_bytes();
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if civil_from_days(days) != (year, month as u32, day as u32) {
        return None;
    }
    let utc = (days * 86_400 + hour * 3600 + minute * 60 + second).checked_sub(offset)?;
    // The second after 23:59:59 UTC's is the next day's first.
    if second == 60 && utc.rem_euclid(86_400) != 0 {
        return None;
    }
    u64::try_from(utc).ok()
}

/// Howard Hinnant's inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A line for a terminal: fields from records, which whoever can write to
/// storage may have edited, or from a log the Redis account wrote. Control
/// characters (escape sequences that would rewrite the screen or the title)
/// and the marks that reorder bidirectional text (which can show a line's
/// words in another order than they are) are shown escaped, not sent.
/// Backslashes are left as they are: messages quote outside text with `{:?}`,
/// whose escapes are already backslashed, and a line must read the same
/// however many times it is made printable (an error quoting a log line is
/// escaped once with it and again when written).
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            c if c.is_control() || reorders_text(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// JSON text made safe for a terminal: serde_json writes C1 controls, DEL
/// and bidirectional formatting characters as they are (it escapes only
/// what JSON must), so they go out as `\uXXXX` escapes, which read back as
/// the same string. They can only stand inside strings: JSON's own syntax
/// is ASCII.
pub fn printable_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            c if (c.is_control() && !c.is_ascii_whitespace()) || reorders_text(c) => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode's explicit bidirectional formatting characters (UAX #9): the
/// embeddings, overrides and isolates, and the three marks.
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn printable_json_escapes_what_serde_leaves_and_reads_back_the_same() {
        let hostile = "a\u{202e}b\u{9b}2J\u{7f}\u{2066}\u{1b}c\n";
        let json = serde_json::to_string_pretty(&serde_json::json!({ "s": hostile })).unwrap();
        let safe = printable_json(&json);
        assert!(
            !safe
                .chars()
                .any(|c| (c.is_control() && c != '\n') || reorders_text(c)),
            "{safe:?}"
        );
        assert!(
            safe.contains("\\u202e") && safe.contains("\\u009b"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["s"], hostile);
    }

    #[test]
    fn printable_escapes_controls_and_reordering_marks_once() {
        assert_eq!(printable("plain, ünïcode"), "plain, ünïcode");
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        // "exe.txt" shown as "txt.exe" by a right-to-left override.
        assert_eq!(printable("a\u{202e}txt.exe"), "a\\u{202e}txt.exe");
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}',
        ] {
            assert!(printable(&c.to_string()).starts_with("\\u{"), "{c:?}");
        }
        // Twice is once.
        let once = printable("a\x1b\u{202e}\\b");
        assert_eq!(printable(&once), once);
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        let at = |s: u64| utc_timestamps(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400).0, "2000-02-29T00:00:00Z");
        let (rfc, compact) = at(1_795_576_500);
        assert_eq!(rfc, "2026-11-25T03:15:00Z");
        assert_eq!(compact, "20261125T031500Z");
        let later = UNIX_EPOCH + Duration::from_micros(1_795_576_500_123_456);
        assert_eq!(utc_micros(later), "2026-11-25T03:15:00.123456Z");
        assert_eq!(utc_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn microseconds_order_times_within_a_second() {
        let parse = parse_rfc3339_micros;
        assert_eq!(parse("2026-11-25T03:15:00Z"), Some(1_795_576_500_000_000));
        assert_eq!(parse("2026-11-25T03:15:00.1Z"), Some(1_795_576_500_100_000));
        assert_eq!(
            parse("2026-11-25T03:15:00.123456Z"),
            Some(1_795_576_500_123_456)
        );
        assert_eq!(
            parse("2026-11-25T03:15:00.123456789Z"),
            Some(1_795_576_500_123_456)
        );
        for bad in [
            "2026-11-25T03:15:00",
            "2026-11-25T03:15:00.Z",
            "2026-11-25T03:15:00.1234567890Z",
            "2026-11-25T03:15:00+00:00",
            "2026-11-25T03:15:00.12a4Z",
            "2026-11-25T03:15:+0Z",
            "2026-11-25 03:15:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for micros in [0, 1, 999_999, 1_795_576_500_654_321] {
            let rfc = utc_micros(UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(parse(&rfc), Some(micros), "{rfc}");
        }
    }

    #[test]
    fn rfc3339_parses_back_what_we_format() {
        for secs in [0, 951_782_400, 1_795_576_500, 4_102_444_799] {
            let (rfc, _) = utc_timestamps(UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(parse_rfc3339(&rfc), Some(secs), "{rfc}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-25T03:15:00.000000Z"),
            Some(1_795_576_500)
        );
        assert_eq!(parse_rfc3339("2026-13-25T03:15:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_size(391_330_497), "373.2 MiB");
        // Rounds to the nearest tenth, carrying into the units.
        assert_eq!(human_size(1024 * 1024 - 1), "1024.0 KiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn seconds_read_well() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(seconds(ms(1234), 1), "1.2");
        assert_eq!(seconds(ms(1250), 1), "1.3");
        assert_eq!(seconds(ms(1623), 3), "1.623");
        assert_eq!(seconds(ms(5), 2), "0.01");
        assert_eq!(seconds(ms(61_499), 0), "61");
        assert_eq!(seconds(Duration::from_secs(20), 1), "20.0");
        assert_eq!(seconds(ms(7), 9), "0.007", "at most milliseconds");
    }

    #[test]
    fn operator_times_with_offsets_and_fractions() {
        let z = parse_rfc3339_any("2026-11-30T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339_any("2026-11-30T11:00:00+01:00"), Some(z));
        assert_eq!(parse_rfc3339_any("2026-11-30 09:30:00-00:30"), Some(z));
        assert_eq!(
            parse_rfc3339_any("2026-11-30T10:00:00.5Z"),
            Some(z + 500_000)
        );
        assert_eq!(
            parse_rfc3339_any("2026-11-30T10:00:00.123456789Z"),
            Some(z + 123_456)
        );
        for bad in [
            "2026-11-30T10:00:00",
            "2026-11-30T10:00:00.Z",
            "yesterday",
            "2026-11-30T10:00:00+1:00",
        ] {
            assert_eq!(parse_rfc3339_any(bad), None, "{bad}");
        }
        assert_eq!(utc_millis(z + 1_234_567), "2026-11-30T10:00:01.234Z");
    }

    #[test]
    fn http_dates_are_read_in_their_current_form_only() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Thu, 03 Dec 2026 05:46:00 GMT"),
            parse_rfc3339("2026-12-03T05:46:00Z")
        );
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 30 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            "Sun, 06 Nov 1994 8:49:370 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_and_seconds_that_do_not_exist_are_refused() {
        for bad in [
            "2026-11-31T22:48:22Z",
            "2026-02-29T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-30T22:48:60Z",
            "2026-11-30T23:58:60Z",
        ] {
            assert_eq!(parse_rfc3339_any(bad), None, "{bad}");
            assert_eq!(parse_rfc3339_micros(bad), None, "{bad}");
        }
        let leap_day = parse_rfc3339_any("2028-02-29T12:00:00Z").unwrap();
        assert_eq!(utc_millis(leap_day), "2028-02-29T12:00:00.000Z");
        // The last leap second, as Unix time reads it: the next day's first.
        assert_eq!(
            parse_rfc3339_any("2016-12-31T23:59:60Z"),
            parse_rfc3339_any("2017-01-01T00:00:00Z")
        );
        // The same second typed in New York's time or Paris's: 23:59:60
        // there is no leap second.
        for typed in ["2016-12-31T18:59:60-05:00", "2017-01-01 00:59:60+01:00"] {
            assert_eq!(
                parse_rfc3339_any(typed),
                parse_rfc3339_any("2017-01-01T00:00:00Z"),
                "{typed}"
            );
        }
        for bad in ["2016-12-31T23:59:60+01:00", "2016-12-31T23:59:60-05:00"] {
            assert_eq!(parse_rfc3339_any(bad), None, "{bad}");
        }
    }
}
