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
            crate::units::human_size(self.raw_size),
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

#[cfg(test)]
mod tests {
    use super::*;

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
                let _ = crate::units::parse_rfc3339(&text);
            }
        }
    }
}
