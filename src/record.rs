//! The backup record: the small JSON document stored beside each object and
//! printed by `backup --json`, `list --json` and `show --json`. Its field names
//! are fixed by CONTRACT.md; `keys` (key count per database) and `rdb_version`
//! are ours, used by restore to check what it brought back.
//! (`keys`, `keys_before` and `expires`, the keys with a TTL, per database,
//! from INFO keyspace.)

use crate::error::{Error, Result};
use crate::id::BackupId;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: BackupId,
    pub instance: String,
    pub created_at: String,
    pub redis_version: String,
    pub persistence: String,
    pub source: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub key_id: String,
    pub location: String,
    pub format: u64,
    pub rdb_version: u64,
    pub keys: BTreeMap<String, u64>,
    /// Key counts just before the save started; with `keys` (just after it
    /// ended) they bracket what the snapshot holds on a busy server.
    pub keys_before: BTreeMap<String, u64>,
    /// Per database, how many of `keys` had a TTL: restore accepts those missing.
    pub expires: BTreeMap<String, u64>,
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "instance": self.instance,
            "created_at": self.created_at,
            "redis_version": self.redis_version,
            "persistence": self.persistence,
            "source": self.source,
            "raw_size": self.raw_size,
            "raw_sha256": self.raw_sha256,
            "stored_size": self.stored_size,
            "key_id": self.key_id,
            "location": self.location,
            "format": self.format,
            "rdb_version": self.rdb_version,
            "keys": self.keys,
            "keys_before": self.keys_before,
            "expires": self.expires,
        })
    }

    /// Parse a stored record; anything malformed is an integrity error naming it.
    pub fn from_json(bytes: &[u8], expected_id: &BackupId) -> Result<Record> {
        let bad = |what: &str| {
            Error::integrity(format!(
                "record of backup {expected_id} is damaged ({what}); `verify --from-file` can still check the object"
            ))
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        let map = value.as_object().ok_or_else(|| bad("not an object"))?;
        let text = |name: &str| -> Result<String> {
            map.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no {name}")))
        };
        let number = |name: &str| -> Result<u64> {
            map.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(&format!("no {name}")))
        };
        let id = BackupId::parse(&text("id")?).map_err(|_| bad("bad id"))?;
        if &id != expected_id {
            return Err(bad(&format!("it names backup {id}")));
        }
        Ok(Record {
            id,
            instance: text("instance")?,
            created_at: text("created_at")?,
            redis_version: text("redis_version")?,
            persistence: text("persistence")?,
            source: text("source")?,
            raw_size: number("raw_size")?,
            raw_sha256: text("raw_sha256")?,
            stored_size: number("stored_size")?,
            key_id: text("key_id")?,
            location: text("location")?,
            format: number("format")?,
            rdb_version: number("rdb_version").unwrap_or(0),
            keys: counts_of(map, "keys"),
            keys_before: counts_of(map, "keys_before"),
            expires: counts_of(map, "expires"),
        })
    }

    /// Short human form for `list` and `show`.
    pub fn summary_line(&self) -> String {
        format!(
            "{}  {}  {}  {}  {} keys",
            self.id,
            self.created_at,
            self.instance,
            human_size(self.raw_size),
            self.keys.values().sum::<u64>()
        )
    }
}

fn counts_of(map: &Map<String, Value>, name: &str) -> BTreeMap<String, u64> {
    map.get(name)
        .and_then(Value::as_object)
        .map(|keys| {
            keys.iter()
                .filter_map(|(db, n)| n.as_u64().map(|n| (db.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

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
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days as i64);
    (
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z"),
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time such as Keystone's
/// `2026-11-25T03:15:00.000000Z` (fractions ignored); `None` if malformed.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
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
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Record {
        Record {
            id: BackupId::parse("b1").unwrap(),
            instance: "host".into(),
            created_at: "2026-11-25T03:15:00Z".into(),
            redis_version: "7.0.15".into(),
            persistence: "rdb".into(),
            source: "snapshot".into(),
            raw_size: 10,
            raw_sha256: "ab".repeat(32),
            stored_size: 200,
            key_id: "0123456789abcdef".into(),
            location: "file:///x/b1.rbk".into(),
            format: 1,
            rdb_version: 10,
            keys: BTreeMap::from([("db0".into(), 3), ("db1".into(), 2)]),
            keys_before: BTreeMap::from([("db0".into(), 2), ("db1".into(), 2)]),
            expires: BTreeMap::from([("db0".into(), 1), ("db1".into(), 0)]),
        }
    }

    #[test]
    fn json_round_trip_with_contract_field_names() {
        let record = sample();
        let json = record.to_json();
        for field in [
            "id",
            "instance",
            "created_at",
            "redis_version",
            "persistence",
            "source",
            "raw_size",
            "raw_sha256",
            "stored_size",
            "key_id",
            "location",
            "format",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        let bytes = serde_json::to_vec(&json).unwrap();
        assert_eq!(Record::from_json(&bytes, &record.id).unwrap(), record);
    }

    #[test]
    fn damaged_or_foreign_records_are_refused() {
        let id = BackupId::parse("b1").unwrap();
        assert_eq!(Record::from_json(b"{nope", &id).unwrap_err().exit_code(), 5);
        let other = BackupId::parse("b2").unwrap();
        let bytes = serde_json::to_vec(&sample().to_json()).unwrap();
        assert_eq!(
            Record::from_json(&bytes, &other).unwrap_err().exit_code(),
            5
        );
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        let at = |s: u64| utc_timestamps(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400).0, "2000-02-29T00:00:00Z");
        let (rfc, compact) = at(1_795_576_500);
        assert_eq!(rfc, "2026-11-25T03:15:00Z");
        assert_eq!(compact, "20261125T031500Z");
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

    // ---- properties: a stored record is a record or an integrity error ----

    mod properties {
        use super::*;
        use proptest::prelude::*;

        use crate::testing::{arbitrary_json as json, proptest_config as config};

        /// A good record with one field replaced by anything, or removed.
        fn damaged_record() -> impl Strategy<Value = Value> {
            let field = prop::sample::select(
                sample()
                    .to_json()
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            (field, prop::option::of(json())).prop_map(|(field, value)| {
                let mut record = sample().to_json();
                let map = record.as_object_mut().unwrap();
                match value {
                    Some(v) => map.insert(field, v),
                    None => map.remove(&field),
                };
                record
            })
        }

        fn check(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
            let id = BackupId::parse("b1").unwrap();
            match Record::from_json(bytes, &id) {
                // Whatever was accepted reads back the same.
                Ok(record) => {
                    let again = serde_json::to_vec(&record.to_json()).unwrap();
                    prop_assert_eq!(Record::from_json(&again, &id).unwrap(), record);
                }
                Err(e) => prop_assert_eq!(e.exit_code(), 5, "{}", e),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                check(&bytes)?;
            }

            #[test]
            fn arbitrary_json(value in json()) {
                check(&serde_json::to_vec(&value).unwrap())?;
            }

            #[test]
            fn records_with_a_damaged_field(value in damaged_record()) {
                check(&serde_json::to_vec(&value).unwrap())?;
            }

            #[test]
            fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..100_000, open in "[\\[{]") {
                let bytes = if open == "[" {
                    "[".repeat(depth)
                } else {
                    "{\"a\":".repeat(depth)
                };
                check(bytes.as_bytes())?;
            }

            #[test]
            fn rfc3339_never_panics(text in "\\PC{0,30}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,12}Z?") {
                let _ = parse_rfc3339(&text);
            }
        }
    }
}
