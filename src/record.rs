//! The backup record: the small JSON document stored beside each object and
//! printed by `backup --json`, `list --json` and `show --json`. Its field names
//! are fixed by CONTRACT.md; `keys` (key count per database) and `rdb_version`
//! are ours, used by restore to check what it brought back.
//! (`keys`, `keys_before` and `expires`, the keys with a TTL, per database,
//! from INFO keyspace.)
//!
//! From format 2 on a stored record carries `record_tag`, an HMAC of its
//! canonical form under a key of its own derived from the master key, so a
//! record edited by hand (a date moved to 2099, a hash swapped, an instance
//! renamed) is refused rather than believed. A format-1 record has no tag:
//! it is read, marked as such, and never ordered after a format-2 one.

use crate::codec::crypto::{hex, MasterKey};
use crate::error::{Error, Result};
use crate::id::BackupId;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

/// The record version this build writes (the same number as the format of
/// the object it describes).
pub const FORMAT: u64 = 2;
const TAG_FIELD: &str = "record_tag";

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: BackupId,
    pub instance: String,
    /// RFC 3339 UTC; to the microsecond from format 2 on.
    pub created_at: String,
    pub redis_version: String,
    /// "redis" or "valkey" ("redis" for format-1 records, which did not say).
    pub server_name: String,
    pub server_version: String,
    pub persistence: String,
    pub source: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub key_id: String,
    pub location: String,
    pub format: u64,
    /// The deflate level the object was written with (format 2 on).
    pub compression_level: Option<u8>,
    pub rdb_version: u64,
    pub keys: BTreeMap<String, u64>,
    /// Key counts just before the save started; with `keys` (just after it
    /// ended) they bracket what the snapshot holds on a busy server.
    pub keys_before: BTreeMap<String, u64>,
    /// Per database, how many of `keys` had a TTL: restore accepts those missing.
    pub expires: BTreeMap<String, u64>,
    /// For the bases and chunks of point-in-time recovery: where in the
    /// primary's replication stream this one sits.
    pub archive: Option<ArchivePlace>,
}

/// Where a base or a chunk sits in an archived replication history. A base
/// (`seq` 0) is the RDB at `start_offset`; chunk `seq` holds the stream's
/// bytes from `start_offset` (exclusive, as replication offsets count) to
/// `end_offset`, received from `first_at` to `last_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePlace {
    /// The base backup whose window this belongs to (a base names itself).
    pub base: BackupId,
    pub replid: String,
    pub seq: u64,
    pub start_offset: u64,
    pub end_offset: u64,
    /// RFC 3339 UTC to the microsecond.
    pub first_at: String,
    pub last_at: String,
    /// The first chunk an archiver session stored: nothing is known of the
    /// time between the chunk before and this one's `first_at`.
    pub session_start: bool,
    /// When, in this chunk's session up to its `last_at`, the archiver was
    /// behind the primary (µs since the epoch, from included, to left out):
    /// moments no replay gives exactly (`archive::behind`).
    pub behind: Vec<(u64, u64)>,
}

impl ArchivePlace {
    fn to_json(&self) -> Value {
        let mut value = json!({
            "base": self.base.as_str(),
            "replid": self.replid,
            "seq": self.seq,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "session_start": self.session_start,
        });
        // Left out when there is none, as archives written before it was
        // recorded have none.
        if !self.behind.is_empty() {
            let at =
                |micros: u64| crate::units::utc_micros(UNIX_EPOCH + Duration::from_micros(micros));
            let pairs = self
                .behind
                .iter()
                .map(|&(from, to)| json!([at(from), at(to)]));
            value["behind"] = Value::Array(pairs.collect());
        }
        value
    }

    fn parse(value: &Value) -> std::result::Result<ArchivePlace, String> {
        let text = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("no archive {name}"))
        };
        let number = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("no archive {name}"))
        };
        let time = |name: &str| {
            let t = text(name)?;
            match crate::units::parse_rfc3339_micros(&t) {
                Some(_) => Ok(t),
                None => Err(format!("bad archive {name}")),
            }
        };
        let place = ArchivePlace {
            base: BackupId::parse(&text("base")?).map_err(|_| "bad archive base".to_string())?,
            replid: text("replid")?,
            seq: number("seq")?,
            start_offset: number("start_offset")?,
            end_offset: number("end_offset")?,
            first_at: time("first_at")?,
            last_at: time("last_at")?,
            session_start: value
                .get("session_start")
                .and_then(Value::as_bool)
                .ok_or("no archive session_start")?,
            behind: match value.get("behind") {
                Some(pairs) => parse_behind(pairs)?,
                None => Vec::new(),
            },
        };
        if place.end_offset < place.start_offset {
            return Err("archive offsets out of order".into());
        }
        Ok(place)
    }

    /// Microseconds since the epoch of `first_at` and `last_at`.
    pub fn span_micros(&self) -> (u64, u64) {
        let at = |t: &str| crate::units::parse_rfc3339_micros(t).unwrap_or(0);
        (at(&self.first_at), at(&self.last_at))
    }
}

/// `behind`: pairs of RFC 3339 times, each from before to, in order.
fn parse_behind(pairs: &Value) -> std::result::Result<Vec<(u64, u64)>, String> {
    let bad = || "bad archive behind".to_string();
    let time = |v: &Value| v.as_str().and_then(crate::units::parse_rfc3339_micros);
    let mut behind: Vec<(u64, u64)> = Vec::new();
    for pair in pairs.as_array().ok_or_else(bad)? {
        let (from, to) = match pair.as_array().map(Vec::as_slice) {
            Some([from, to]) => (time(from).ok_or_else(bad)?, time(to).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if from >= to || behind.last().is_some_and(|last| last.1 > from) {
            return Err(bad());
        }
        behind.push((from, to));
    }
    Ok(behind)
}

impl Record {
    pub fn to_json(&self) -> Value {
        let mut value = json!({
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
        });
        if self.format >= 2 {
            let map = value.as_object_mut().expect("an object");
            map.insert(
                "server".into(),
                json!({"name": self.server_name, "version": self.server_version}),
            );
            map.insert("compression_level".into(), json!(self.compression_level));
            if let Some(place) = &self.archive {
                map.insert("archive".into(), place.to_json());
            }
        }
        value
    }

    /// The record as stored: `to_json` with its tag, pretty-printed.
    pub fn to_stored(&self, key: &MasterKey) -> Vec<u8> {
        let mut value = self.to_json();
        let tag = key.record_tag(&canonical(&value));
        value
            .as_object_mut()
            .expect("an object")
            .insert(TAG_FIELD.into(), Value::from(hex(&tag)));
        serde_json::to_vec_pretty(&value).expect("a JSON value always serializes")
    }

    /// `to_stored`, refused when larger than a reader takes (`max`, the
    /// storage's cap): stored, it would be a backup nothing lists,
    /// verifies or restores. Only what Redis reported (a count for each
    /// database) can make it so large.
    pub fn to_stored_within(&self, key: &MasterKey, max: usize) -> Result<Vec<u8>> {
        let stored = self.to_stored(key);
        if stored.len() > max {
            return Err(Error::redis(format!(
                "the record of backup {} would be {} bytes, more than the {max} a record may hold, with the {} databases Redis reported: not stored",
                self.id,
                stored.len(),
                self.keys.len().max(self.keys_before.len())
            )));
        }
        Ok(stored)
    }

    /// Whether the record's identity is bound by a tag (format 2 on).
    pub fn authenticated(&self) -> bool {
        self.format >= 2
    }

    /// What `list` and `prune` order by: a format-1 backup is older than any
    /// format-2 one whatever its unauthenticated date says (every format-1
    /// backup was made before this version wrote its first), then time to
    /// the microsecond, then the ID.
    pub fn age(&self) -> (bool, u64, &BackupId) {
        let micros = crate::units::parse_rfc3339_micros(&self.created_at).unwrap_or(0);
        (self.authenticated(), micros, &self.id)
    }

    /// Sort `records` by [`Record::age`], oldest first. Every such sort goes
    /// through here: each closure handed to `sort_by` is a copy of the whole
    /// sort in the binary (some 7 KB each).
    pub fn sort_oldest_first(records: &mut [Record]) {
        records.sort_by(|a, b| a.age().cmp(&b.age()));
    }

    /// Parse a stored record of backup `expected_id` and, from format 2 on,
    /// authenticate it with `key`; anything malformed, unauthentic or about
    /// another backup is an integrity error naming it.
    pub fn from_stored(bytes: &[u8], expected_id: &BackupId, key: &MasterKey) -> Result<Record> {
        let bad = |what: &str| {
            Error::integrity(format!(
                "record of backup {expected_id} is damaged ({what}); `verify --from-file` can still check the object"
            ))
        };
        let mut value: Value = serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        let map = value.as_object_mut().ok_or_else(|| bad("not an object"))?;
        let format = map
            .get("format")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no format"))?;
        if format > FORMAT {
            return Err(bad(&format!(
                "format {format}: written by a newer redis-backup"
            )));
        }
        if format == 0 {
            return Err(bad("format 0: no redis-backup writes it"));
        }
        if format >= 2 {
            authenticate(map, expected_id, key)?;
        }
        parse(map, expected_id, format).map_err(|what| bad(&what))
    }

    /// Short human form for `list` and `show`.
    pub fn summary_line(&self) -> String {
        // An archive's base is the RDB its primary sent: nobody counted
        // its keys, and "0 keys" would say it is empty.
        let keys = match self.archive.is_some() && self.keys.is_empty() {
            true => "keys not counted".to_string(),
            false => format!("{} keys", self.keys.values().sum::<u64>()),
        };
        format!(
            "{}  {}  {}  {}  {keys}{}",
            self.id,
            self.created_at,
            self.instance,
            crate::units::human_size(self.raw_size),
            if self.authenticated() {
                ""
            } else {
                "  (format 1: identity not bound)"
            }
        )
    }
}

/// Takes the tag out of `map` and checks it against the rest.
fn authenticate(map: &mut Map<String, Value>, id: &BackupId, key: &MasterKey) -> Result<()> {
    let ours = key.key_id();
    match map.get("key_id").and_then(Value::as_str) {
        Some(theirs) if theirs == ours => {}
        theirs => {
            return Err(Error::integrity(format!(
                "record of backup {id} is under key {}, but the key file has key {ours}: it cannot be authenticated with this key",
                theirs.unwrap_or("(none)")
            )))
        }
    }
    let tag = map
        .remove(TAG_FIELD)
        .and_then(|tag| tag.as_str().and_then(unhex))
        .filter(|tag| tag.len() == 32);
    let authentic =
        tag.is_some_and(|tag| key.record_tag_ok(&canonical(&Value::Object(map.clone())), &tag));
    if !authentic {
        return Err(Error::integrity(format!(
            "record of backup {id} failed authentication: edited by hand or forged"
        )));
    }
    Ok(())
}

fn parse(
    map: &Map<String, Value>,
    expected_id: &BackupId,
    format: u64,
) -> std::result::Result<Record, String> {
    let text = |name: &str| -> std::result::Result<String, String> {
        map.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no {name}"))
    };
    let number = |name: &str| -> std::result::Result<u64, String> {
        map.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no {name}"))
    };
    let id = BackupId::parse(&text("id")?).map_err(|_| "bad id".to_string())?;
    if &id != expected_id {
        return Err(format!("it names backup {id}"));
    }
    let redis_version = text("redis_version")?;
    let created_at = text("created_at")?;
    let (server_name, server_version, compression_level) = match format {
        1 => ("redis".to_string(), redis_version.clone(), None),
        _ => {
            let server = map.get("server").ok_or("no server")?;
            let field = |name: &str| {
                server
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("no server {name}"))
            };
            let level = number("compression_level")?;
            let level = u8::try_from(level)
                .ok()
                .filter(|l| *l <= crate::codec::format::MAX_LEVEL)
                .ok_or("bad compression_level")?;
            if crate::units::parse_rfc3339_micros(&created_at).is_none() {
                return Err("bad created_at".into());
            }
            (field("name")?, field("version")?, Some(level))
        }
    };
    Ok(Record {
        id,
        instance: text("instance")?,
        created_at,
        redis_version,
        server_name,
        server_version,
        persistence: text("persistence")?,
        source: text("source")?,
        raw_size: number("raw_size")?,
        raw_sha256: text("raw_sha256")?,
        stored_size: number("stored_size")?,
        key_id: text("key_id")?,
        location: text("location")?,
        format,
        compression_level,
        rdb_version: number("rdb_version").unwrap_or(0),
        keys: counts_of(map, "keys"),
        keys_before: counts_of(map, "keys_before"),
        expires: counts_of(map, "expires"),
        archive: match map.get("archive") {
            Some(place) if format >= 2 => Some(ArchivePlace::parse(place)?),
            _ => None,
        },
    })
}

/// The bytes a record's tag covers: its JSON (without the tag) with no
/// whitespace and every object's keys in code point order, as FORMAT.md
/// spells out. Written here rather than left to the JSON library's map
/// order, which a feature flag elsewhere could change.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            // A map's names are unique: an unstable sort orders them alike,
            // with less code than a stable one.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name).expect("writing to a Vec");
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec"),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn counts_of(map: &Map<String, Value>, name: &str) -> BTreeMap<String, u64> {
    // By insertion, not `collect()`: see `redis::per_db`.
    let mut counts = BTreeMap::new();
    for (db, n) in map
        .get(name)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(n) = n.as_u64() {
            counts.insert(db.clone(), n);
        }
    }
    counts
}

/// A backup's record to build tests on.
#[cfg(test)]
impl Record {
    pub fn sample() -> Record {
        Record {
            id: BackupId::parse("b1").unwrap(),
            instance: "host".into(),
            created_at: "2026-11-25T03:15:00.123456Z".into(),
            redis_version: "7.0.15".into(),
            server_name: "redis".into(),
            server_version: "7.0.15".into(),
            persistence: "rdb".into(),
            source: "snapshot".into(),
            raw_size: 10,
            raw_sha256: "ab".repeat(32),
            stored_size: 200,
            key_id: MasterKey::from_bytes([7; 32]).key_id(),
            location: "file:///x/b1.rbk".into(),
            format: 2,
            compression_level: Some(1),
            rdb_version: 10,
            keys: BTreeMap::from([("db0".into(), 3), ("db1".into(), 2)]),
            keys_before: BTreeMap::from([("db0".into(), 2), ("db1".into(), 2)]),
            expires: BTreeMap::from([("db0".into(), 1), ("db1".into(), 0)]),
            archive: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes([7; 32])
    }

    fn stored_value() -> Map<String, Value> {
        let bytes = Record::sample().to_stored(&key());
        serde_json::from_slice::<Value>(&bytes)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    }

    fn read(map: &Map<String, Value>) -> Result<Record> {
        let bytes = serde_json::to_vec(map).unwrap();
        Record::from_stored(&bytes, &BackupId::parse("b1").unwrap(), &key())
    }

    #[test]
    fn stored_round_trip_with_contract_field_names() {
        let record = Record::sample();
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
            "server",
            "compression_level",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        let bytes = record.to_stored(&key());
        assert_eq!(
            Record::from_stored(&bytes, &record.id, &key()).unwrap(),
            record
        );
    }

    /// A chunk's place, received at `at`, and when it was `behind`.
    fn chunk_place(at: &str, behind: Vec<(u64, u64)>) -> ArchivePlace {
        ArchivePlace {
            base: BackupId::parse("b1").unwrap(),
            replid: "r".repeat(40),
            seq: 3,
            start_offset: 10,
            end_offset: 20,
            first_at: at.to_string(),
            last_at: at.to_string(),
            session_start: false,
            behind,
        }
    }

    #[test]
    fn a_chunks_intervals_behind_round_trip_and_bad_ones_are_refused() {
        let mut record = Record::sample();
        let mut place = chunk_place("2026-11-30T10:15:00.000000Z", Vec::new());
        record.archive = Some(place.clone());
        assert!(
            record.to_json()["archive"].get("behind").is_none(),
            "none is left out, as before it was recorded"
        );
        place.behind = vec![(1_000_001, 2_000_000), (3_000_000, 3_000_001)];
        record.archive = Some(place.clone());
        let bytes = record.to_stored(&key());
        let read_back = Record::from_stored(&bytes, &record.id, &key()).unwrap();
        assert_eq!(read_back.archive, Some(place));
        let times = |pairs: &[[&str; 2]]| json!(pairs);
        let one = "1970-01-01T00:00:01.000000Z";
        let two = "1970-01-01T00:00:02.000000Z";
        let three = "1970-01-01T00:00:03.000000Z";
        assert!(parse_behind(&times(&[[one, two], [two, three]])).is_ok());
        for bad in [
            times(&[[two, one]]),
            times(&[[one, one]]),
            times(&[[one, three], [two, three]]),
            times(&[[one, "soon"]]),
            json!([[one]]),
            json!("x"),
        ] {
            assert!(parse_behind(&bad).is_err(), "{bad}");
        }
    }

    /// The storer closes an interval when it sees the reader wait on an
    /// empty socket after the read its chunk ends with (`Waiting`); a batch
    /// still queued behind that chunk carries what the reads saw before
    /// (behind since the same moment), and reopens it. With two batches
    /// stamped alike (the clock stepped back: stamps stay where they were)
    /// the next chunk's record then names two overlapping intervals, which
    /// its own reader refuses: the chunk, and every moment after it in the
    /// window, can no longer be restored.
    #[test]
    fn a_chunk_stored_after_the_storer_saw_the_reader_catch_up_reads_back() {
        use crate::archive::behind::{Intervals, Seen};
        let behind_since = |from| Seen {
            ended: None,
            behind_since: Some(from),
        };
        let mut intervals = Intervals::default();
        // Two batches, both stamped 1_000_000, both read while behind
        // since 100_000 (before the clock stepped back).
        intervals.saw(behind_since(100_000));
        // The storer stores the first: the reader has waited on an empty
        // socket since the read stamped 1_000_000.
        intervals.caught_up_at(1_000_000);
        assert_eq!(intervals.as_of(1_000_000), vec![(100_000, 1_000_000)]);
        // Then takes the second, and stores it (SIGTERM, or its chunk due).
        intervals.saw(behind_since(100_000));
        let mut record = Record::sample();
        record.archive = Some(chunk_place(
            "1970-01-01T00:00:01.000000Z",
            intervals.as_of(1_000_000),
        ));
        let bytes = record.to_stored(&key());
        if let Err(e) = Record::from_stored(&bytes, &record.id, &key()) {
            panic!(
                "the record written for {:?} is refused: {e}",
                record.archive.as_ref().map(|a| &a.behind)
            );
        }
    }

    #[test]
    fn every_edit_of_a_stored_record_is_refused() {
        let good = stored_value();
        read(&good).unwrap();
        let edits: Vec<(&str, Value)> = vec![
            ("created_at", "2099-01-01T00:00:00.000000Z".into()),
            ("instance", "someone-else".into()),
            ("raw_sha256", "cd".repeat(32).into()),
            ("raw_size", 11.into()),
            ("source", "replication".into()),
            ("keys", json!({"db0": 4})),
            ("server", json!({"name": "valkey", "version": "9.0.0"})),
            ("extra", "added".into()),
            ("record_tag", "00".repeat(32).into()),
            ("record_tag", "not hex".into()),
        ];
        for (field, value) in edits {
            let mut bad = good.clone();
            bad.insert(field.into(), value);
            let err = read(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 5, "{field}: {err}");
            assert!(err.message().contains("failed authentication"), "{err}");
        }
        let mut untagged = good.clone();
        untagged.remove("record_tag");
        assert!(read(&untagged)
            .unwrap_err()
            .message()
            .contains("failed authentication"));
    }

    #[test]
    fn a_record_under_another_key_says_so() {
        let theirs = MasterKey::from_bytes([8; 32]);
        let record = Record {
            key_id: theirs.key_id(),
            ..Record::sample()
        };
        let bytes = record.to_stored(&theirs);
        let mut map: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
        // Its key id is not ours: say that, not "forged".
        let err = read(&map).unwrap_err();
        assert!(err.message().contains("is under key"), "{err}");
        // Claiming our key id does not make its tag ours.
        map.insert("key_id".into(), key().key_id().into());
        assert!(read(&map)
            .unwrap_err()
            .message()
            .contains("failed authentication"));
    }

    #[test]
    fn format_1_records_are_read_unauthenticated_and_ordered_first() {
        let old = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/format1/20261130T080000Z-5a5a5a5a.json"
        ))
        .unwrap();
        let id = BackupId::parse("20261130T080000Z-5a5a5a5a").unwrap();
        let old = Record::from_stored(&old, &id, &key()).unwrap();
        assert!(!old.authenticated());
        assert_eq!((old.format, old.compression_level), (1, None));
        assert_eq!(old.server_name, "redis");
        assert!(old.summary_line().contains("format 1"));
        // Dated far in the future, it is still older than any format-2 backup.
        let mut future = old.clone();
        future.created_at = "2099-01-01T00:00:00Z".into();
        assert!(future.age() < Record::sample().age());
    }

    #[test]
    fn format_2_golden_record_authenticates() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let hex = std::fs::read_to_string(format!("{dir}/master.key")).unwrap();
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let golden_key = MasterKey::from_bytes(bytes.try_into().unwrap());
        let json = std::fs::read(format!("{dir}/format2/20261130T090000Z-a5a5a5a5.json")).unwrap();
        let id = BackupId::parse("20261130T090000Z-a5a5a5a5").unwrap();
        let record = Record::from_stored(&json, &id, &golden_key).unwrap();
        assert!(record.authenticated());
        assert_eq!(record.created_at, "2026-11-30T09:00:00.250000Z");
        assert!(Record::from_stored(&json, &id, &key()).is_err());
    }

    #[test]
    fn age_orders_within_a_second() {
        let at = |created_at: &str, id: &str| Record {
            created_at: created_at.into(),
            id: BackupId::parse(id).unwrap(),
            ..Record::sample()
        };
        let mut records = [
            at("2026-11-25T03:15:00.900000Z", "a"),
            at("2026-11-25T03:15:00.000001Z", "z"),
            at("2026-11-25T03:14:59.999999Z", "m"),
            at("2026-11-25T03:15:00.500000Z", "b"),
        ];
        Record::sort_oldest_first(&mut records);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["m", "z", "b", "a"]);
    }

    #[test]
    fn damaged_newer_or_foreign_records_are_refused() {
        let id = BackupId::parse("b1").unwrap();
        let err = Record::from_stored(b"{nope", &id, &key()).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        let other = BackupId::parse("b2").unwrap();
        let bytes = Record::sample().to_stored(&key());
        let err = Record::from_stored(&bytes, &other, &key()).unwrap_err();
        assert!(err.message().contains("names backup b1"), "{err}");
        let mut newer = stored_value();
        newer.insert("format".into(), 3.into());
        assert!(read(&newer).unwrap_err().message().contains("newer"));
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let value = json!({"b": [1, {"z": "\u{1}\"é", "a": null}], "a": true, "B": 2});
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            r#"{"B":2,"a":true,"b":[1,{"a":null,"z":"\u0001\"é"}]}"#
        );
    }

    // ---- properties: a stored record is a record or an integrity error ----

    mod properties {
        use super::*;
        use proptest::prelude::*;

        use crate::testing::{arbitrary_json as json, proptest_config as config};

        /// A good record with one field replaced by anything, or removed;
        /// unsigned (format 1) or with a tag that no longer fits.
        fn damaged_record() -> impl Strategy<Value = Value> {
            let field = prop::sample::select(
                Record::sample()
                    .to_json()
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            (field, prop::option::of(json()), any::<bool>()).prop_map(|(field, value, v1)| {
                let mut record: Value = match v1 {
                    true => json!(Record {
                        format: 1,
                        ..Record::sample()
                    }
                    .to_json()),
                    false => serde_json::from_slice(&Record::sample().to_stored(&key())).unwrap(),
                };
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
            match Record::from_stored(bytes, &id, &key()) {
                // Whatever was accepted reads back the same.
                Ok(record) => {
                    let again = record.to_stored(&key());
                    prop_assert_eq!(Record::from_stored(&again, &id, &key()).unwrap(), record);
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
