//! `prune --keep-last N`: per instance, the newest N backups stay, and the
//! archive windows that `--at` may still need; the rest goes, a base with
//! its chunks. Whatever cannot be judged now is kept, and said.

use super::catalog::records;
use super::Report;
use crate::archive;
use crate::codec::crypto::{self, MasterKey};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::record::Record;
use crate::storage::{self, Storage};
use crate::stored::Patience;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// How far ahead of this host's clock a record may be dated and still be
/// ordered by its date: clocks of hosts sharing a storage differ a little.
const CLOCK_SLACK_MICROS: u64 = 5 * 60 * 1_000_000;

/// Per instance, the backups but the newest `keep_last`, and the archive
/// windows but the newest `keep_last` that end before the oldest backup
/// kept (`surplus`, `bases_kept`), oldest first.
pub(super) fn prune(
    config: &Config,
    keep_last: usize,
    instance: Option<&str>,
    dry_run: bool,
) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let (records, mut refused) = records(&*storage, &key, instance)?;
    // An authentic record written to another storage (a copy of another
    // guest's backup that shares the key and the instance name) is not
    // ours to count or delete.
    // Nor is an archived chunk's record, wherever it was put: it restores
    // nothing, and counted as a backup it would push real ones out.
    // Nor is one dated later than this host's clock (a clock that was
    // ahead when it was made, or this one behind): ordered by that date it
    // would stay the newest, and push out every backup made after it.
    // (Format-1 dates bind nothing and order nothing: see `Record::age`.)
    let latest = crate::units::now_micros() + CLOCK_SLACK_MICROS;
    let ahead = |r: &Record| r.authenticated() && r.age().1 > latest;
    let (records, elsewhere): (Vec<Record>, Vec<Record>) = records.into_iter().partition(|r| {
        storage.is_location_of(&r.id, &r.location) && r.source != archive::CHUNK_SOURCE && !ahead(r)
    });
    for record in elsewhere {
        let e = if record.source == archive::CHUNK_SOURCE {
            Error::integrity("it is an archived chunk's record, not a backup")
        } else if ahead(&record) {
            Error::integrity(format!(
                "it is dated {}, later than this host's clock: a clock ahead when it was made, or this one behind",
                record.created_at
            ))
        } else {
            Error::integrity(format!(
                "it was written to {}, not to this storage",
                record.location
            ))
        };
        refused.push((record.id, e));
    }
    let mut by_instance: std::collections::BTreeMap<String, Vec<Record>> = Default::default();
    for record in records {
        by_instance
            .entry(record.instance.clone())
            .or_default()
            .push(record);
    }
    let mut patience = Patience::of(&*storage);
    for records in by_instance.values_mut() {
        refused.extend(not_whole_among_the_newest(
            &*storage,
            records,
            keep_last,
            &mut patience,
        )?);
    }
    // A record that does not authenticate says nothing true about age: it
    // neither counts towards what is kept nor is deleted.
    for (id, e) in &refused {
        log::warn!("prune ignores backup {id} (neither kept nor deleted): {e}");
    }
    // The newest archive window of an instance is the one its archiver
    // extends: pruning its base would silently end point-in-time recovery.
    let mut kept_bases: Vec<(BackupId, String)> = by_instance
        .values()
        .filter_map(|records| {
            records
                .iter()
                .filter(|r| is_base(r))
                .max_by(|a, b| a.age().cmp(&b.age()))
                .map(|r| {
                    (
                        r.id.clone(),
                        "the base of the newest archive window".to_string(),
                    )
                })
        })
        .collect();
    let stored = storage.stored_at()?;
    let mut reach = BTreeMap::new();
    let mut surplus_records = Vec::new();
    for (instance, records) in by_instance {
        let stored_last = stored_last(&records, &stored, keep_last);
        let (doomed, mut oldest_kept) = surplus(records, keep_last);
        for record in doomed {
            if !stored_last.contains(&record.id) {
                surplus_records.push(record);
                continue;
            }
            log::warn!(
                "keeping {} of {instance}: it is dated {}, before backups the storage had before it, so its clock was behind when it was made; it goes once {keep_last} backups are stored after it",
                record.id,
                record.created_at
            );
            let dated = record.age().1;
            oldest_kept = Some(oldest_kept.map_or(dated, |kept| kept.min(dated)));
        }
        if let Some(micros) = oldest_kept {
            reach.insert(instance, micros);
        }
    }
    // A listed record the storage cannot give now may be a backup prune
    // would keep: how far back the windows must reach is then unknown.
    let unsure = refused
        .iter()
        .find(|(_, e)| e.exit_code() == 4 && !matches!(e, Error::Missing(_)));
    let unsure = unsure.map(|(id, _)| id);
    kept_bases.extend(bases_kept(
        &*storage,
        &key,
        &surplus_records,
        &reach,
        unsure,
    )?);
    let doomed: Vec<Record> = surplus_records
        .into_iter()
        .filter(|r| match kept_bases.iter().find(|(id, _)| *id == r.id) {
            Some((_, why)) => {
                log::info!("keeping {} of {}: {why}", r.id, r.instance);
                false
            }
            None => true,
        })
        .collect();
    // A chunk is worth keeping only with its window's base.
    let chunks = storage.archive();
    let mut lines = Vec::new();
    let mut chunks_deleted = Vec::new();
    let mut deleted: Vec<&str> = Vec::new();
    let mut patience = Patience::of(&*storage);
    for record in &doomed {
        let of_base = match record.archive.is_some() {
            true => match archive::windows::chunks_of(&*chunks, &record.id)? {
                Some(of_base) => of_base,
                None => {
                    log::warn!("base {} is kept", record.id);
                    continue;
                }
            },
            false => Vec::new(),
        };
        if dry_run {
            deleted.push(record.id.as_str());
            lines.push(format!("would delete {}", record.summary_line()));
            if !of_base.is_empty() {
                lines.push(format!(
                    "would delete {} archived chunks of it",
                    of_base.len()
                ));
            }
        } else {
            let before = chunks_deleted.len();
            chunks_deleted.extend(archive::windows::delete_chunks(
                &*chunks,
                &of_base,
                &mut patience,
            )?);
            // Gone already: another prune or a delete (a cron job and an
            // operator, or another host sharing the storage) took it since
            // it was listed. What was asked is done; the rest goes on.
            let started = std::time::Instant::now();
            match storage.delete(&record.id) {
                Ok(()) => {
                    deleted.push(record.id.as_str());
                    log::info!("pruned backup {} of {}", record.id, record.instance);
                    lines.push(format!("deleted {}", record.summary_line()));
                }
                Err(e @ Error::Missing(_)) => {
                    patience.lost_to(started, &e)?;
                    log::warn!("{e}; it was deleted since it was listed (another prune or delete): skipped");
                    lines.push(format!("{} was deleted already", record.id));
                }
                Err(e) => return Err(e),
            }
            let deleted = chunks_deleted.len() - before;
            if deleted > 0 {
                lines.push(format!("deleted {deleted} archived chunks of it"));
            }
        }
    }
    if doomed.is_empty() {
        lines.push(format!(
            "nothing to prune: no instance has more than {keep_last} backups, nor archive windows older than the backups it keeps"
        ));
    }
    Ok(Report {
        lines,
        json: json!({
            "dry_run": dry_run,
            // What this run deleted (or would): not a base kept after all,
            // nor one another prune deleted first.
            "deleted": deleted,
            "ignored": refused.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            "chunks_deleted": chunks_deleted,
        }),
    })
}

/// Of the bases among `doomed`, those kept after all, and why. Beyond the
/// newest `keep_last`, a window is kept while it may hold a moment at or
/// after the oldest backup kept (`reach`, per instance): its end, not the
/// next base's start, says so, as an archiver may have gone on with an
/// older window. Kept too is the base of the window with the newest chunk:
/// an archiver goes on with the window it found newest as it started, and
/// whoever writes the storage could have hidden a newer base from it then.
/// The windows are read once, for all instances; if they cannot be read,
/// or a listed record (`unsure`) cannot be given now, every base among
/// `doomed` is kept (said), the rest pruned. So are an instance's bases if
/// one of its windows has records the storage cannot give now (a record
/// listed but not there is not such a failure: a listing of made-up names
/// would stop all pruning).
fn bases_kept(
    storage: &dyn Storage,
    key: &MasterKey,
    doomed: &[Record],
    reach: &std::collections::BTreeMap<String, u64>,
    unsure: Option<&BackupId>,
) -> Result<Vec<(BackupId, String)>> {
    let bases: Vec<&Record> = doomed.iter().filter(|r| is_base(r)).collect();
    let all_kept = |why: String| -> Vec<(BackupId, String)> {
        bases.iter().map(|r| (r.id.clone(), why.clone())).collect()
    };
    if bases.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(id) = unsure {
        log::warn!("record {id} cannot be read now: the bases are kept");
        return Ok(all_kept(format!("record {id} cannot be read now")));
    }
    let windows = match archive::windows::windows(storage, key, None) {
        Ok(windows) => windows,
        Err(e) => {
            log::warn!("the archive windows cannot be read ({e}): the bases are kept");
            return Ok(all_kept("the archive windows cannot be read".into()));
        }
    };
    let end = |w: &archive::windows::Window| w.last.span_micros().1;
    let mut newest: std::collections::BTreeMap<&str, &archive::windows::Window> =
        Default::default();
    for window in &windows {
        let slot = newest.entry(window.instance()).or_insert(window);
        if end(window) > end(slot) {
            *slot = window;
        }
    }
    // A window whose records the storage cannot give now has a newest
    // chunk nobody can tell: it may be the one an archiver extends.
    let mut unranked = std::collections::BTreeSet::new();
    for window in windows.iter().filter(|w| w.unreadable) {
        unranked.insert(window.instance());
    }
    let mut kept = Vec::new();
    for base in bases {
        let instance = base.instance.as_str();
        let window = windows.iter().find(|w| w.base.id == base.id);
        let why = if unranked.contains(instance) {
            log::warn!(
                "a window of instance {instance} cannot be read whole now: base {} is kept",
                base.id
            );
            "a window of its instance cannot be read whole now"
        } else if window.is_none() {
            // Read a moment ago, not now (windows leave out what they
            // cannot read): where its window ends is not known.
            log::warn!("base {} cannot be read now: it is kept", base.id);
            "its record cannot be read now"
        } else if newest.get(instance).is_some_and(|w| w.base.id == base.id) {
            "its window has the newest chunk: the one an archiver extends"
        } else if window.is_some_and(|w| reach.get(instance).is_some_and(|r| end(w) >= *r)) {
            "its window reaches the oldest backup kept"
        } else {
            continue;
        };
        kept.push((base.id.clone(), why.to_string()));
    }
    Ok(kept)
}

/// Of one instance's authenticated backups, the `keep_last` the storage
/// says it stored last. A backup made while the clock was behind is dated
/// before backups it came after: ordered by its date alone it went first,
/// the newest backup deleted by the prune that followed it. Kept by either
/// order, it stays; the storage's times are not authenticated, and only
/// ever keep more.
fn stored_last(
    records: &[Record],
    stored: &BTreeMap<BackupId, u64>,
    keep_last: usize,
) -> BTreeSet<BackupId> {
    let mut by_storage: Vec<(u64, &Record)> = records
        .iter()
        .filter(|r| r.authenticated() && !is_base(r))
        .filter_map(|r| Some((*stored.get(&r.id)?, r)))
        .collect();
    by_storage.sort_by_key(|(at, r)| (*at, r.age().1));
    by_storage
        .iter()
        .rev()
        .take(keep_last)
        .map(|(_, r)| r.id.clone())
        .collect()
}

/// Of one instance's records, oldest first, those prune would delete, and
/// the time (µs) of the oldest backup it keeps, if any. Backups and archive
/// bases are counted apart: bases come as often as the primary resyncs the
/// archiver, which whoever answers on its port decides (a Redis in a crash
/// loop too), and counted with the backups a burst of them would push every
/// backup out. Beyond the newest `keep_last` format-2 backups, backups go;
/// format-1 records bind nothing, so they never count towards what is kept
/// (records planted by whoever can write to the storage can then never push
/// a real backup out) and go only once `keep_last` format-2 backups are
/// kept. Beyond the newest `keep_last` bases, bases are named here; which of
/// them still reach the oldest backup kept, `bases_kept` tells.
fn surplus(records: Vec<Record>, keep_last: usize) -> (Vec<Record>, Option<u64>) {
    let (bases, backups): (Vec<Record>, Vec<Record>) = records.into_iter().partition(is_base);
    let (bound, unbound): (Vec<Record>, Vec<Record>) =
        backups.into_iter().partition(Record::authenticated);
    let old_backups = bound.len().saturating_sub(keep_last);
    let oldest_kept = bound.get(old_backups).map(|r| r.age().1);
    let old_bases = bases.len().saturating_sub(keep_last);
    let backups_go = match bound.len() < keep_last {
        true => Vec::new(),
        false => unbound
            .into_iter()
            .chain(bound.into_iter().take(old_backups))
            .collect(),
    };
    let mut doomed: Vec<Record> = backups_go
        .into_iter()
        .chain(bases.into_iter().take(old_bases))
        .collect();
    Record::sort_oldest_first(&mut doomed);
    (doomed, oldest_kept)
}

/// Of one instance's records (oldest first), newest first until
/// `keep_last` backups are found whole, those whose object is not there
/// whole, taken out: a record whose object is gone or cut short restores
/// nothing, and counted among the newest it would push out a backup that
/// does. Whole: the object's last byte, at the size recorded, is its last.
/// An object the storage cannot give now is taken out with that error
/// (exit 4: prune then keeps every window, as for a record it cannot give),
/// its time charged to `patience`. Those older than the backups kept are
/// not looked at: they go anyway.
fn not_whole_among_the_newest(
    storage: &dyn Storage,
    records: &mut Vec<Record>,
    keep_last: usize,
    patience: &mut Patience,
) -> Result<Vec<(BackupId, Error)>> {
    let (mut whole, mut broken) = (0, Vec::new());
    for at in (0..records.len()).rev() {
        if whole == keep_last {
            break;
        }
        let record = &records[at];
        if is_base(record) || !record.authenticated() {
            continue;
        }
        let started = std::time::Instant::now();
        let e = match bytes_from_the_last(storage, record) {
            Ok(1) => {
                whole += 1;
                continue;
            }
            Ok(_) | Err(Error::Missing(_)) => Error::integrity(
                "its object is not there whole (gone, or not of the size its record says)",
            ),
            Err(e) => {
                patience.lost_to(started, &e)?;
                e
            }
        };
        broken.push((records.remove(at).id, e));
    }
    Ok(broken)
}

/// How many bytes `record`'s object holds from its last recorded byte on,
/// at most 2: 1 if it is whole.
fn bytes_from_the_last(storage: &dyn Storage, record: &Record) -> Result<usize> {
    let Some(last) = record.stored_size.checked_sub(1) else {
        return Ok(0);
    };
    let mut tail = Vec::new();
    storage
        .open(&record.id, last)?
        .take(2)
        .read_to_end(&mut tail)
        .map_err(|e| Error::storage(format!("reading backup {}: {e}", record.id)))
}

/// A base of an archive window (listed like a backup).
fn is_base(record: &Record) -> bool {
    record.source == archive::BASE_SOURCE && record.archive.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units;
    use std::io;

    /// `b` for a backup, `a` for a base, `f` for a format-1 backup, then
    /// the minute it was made.
    fn records(names: &[&str]) -> Vec<Record> {
        names
            .iter()
            .map(|name| {
                let id = BackupId::parse(name).unwrap();
                let minute: u32 = name[1..].parse().unwrap();
                let created_at = format!("2026-11-25T03:{minute:02}:00.000000Z");
                let archive = name.starts_with('a').then(|| crate::record::ArchivePlace {
                    base: id.clone(),
                    replid: "r".repeat(40),
                    seq: 0,
                    start_offset: 0,
                    end_offset: 0,
                    first_at: created_at.clone(),
                    last_at: created_at.clone(),
                    session_start: true,
                    behind: Vec::new(),
                });
                Record {
                    id,
                    created_at,
                    source: match archive {
                        Some(_) => archive::BASE_SOURCE.into(),
                        None => "snapshot".into(),
                    },
                    format: if name.starts_with('f') { 1 } else { 2 },
                    archive,
                    ..Record::sample()
                }
            })
            .collect()
    }

    /// What `surplus` names, and the minute of the oldest backup kept.
    fn pruned(names: &[&str], keep_last: usize) -> (Vec<String>, Option<u64>) {
        let (doomed, oldest_kept) = surplus(records(names), keep_last);
        let minute = |micros: u64| (micros / 60_000_000) % 60;
        let ids = doomed.into_iter().map(|r| r.id.to_string()).collect();
        (ids, oldest_kept.map(minute))
    }

    #[test]
    fn backups_and_bases_are_counted_apart() {
        // A burst of bases after the backups pushes no backup out (counted
        // together, before, b1 and b2 went); the bases beyond the newest
        // two are named, for `bases_kept` to judge by where their windows
        // end against the oldest backup kept (b1).
        let burst = ["b1", "b2", "a3", "a4", "a5", "a6", "a7"];
        assert_eq!(
            pruned(&burst, 2),
            (vec!["a3".into(), "a4".into(), "a5".into()], Some(1))
        );
        assert_eq!(
            pruned(&burst, 1),
            (
                vec![
                    "b1".into(),
                    "a3".into(),
                    "a4".into(),
                    "a5".into(),
                    "a6".into()
                ],
                Some(2)
            )
        );
        // With no backup, nothing for windows to reach.
        assert_eq!(pruned(&["a1", "a2", "a3"], 2), (vec!["a1".into()], None));
        // Fewer backups than kept: all kept, the oldest is how far back.
        assert_eq!(
            pruned(&["a1", "a2", "b3", "a4"], 2),
            (vec!["a1".into()], Some(3))
        );
        // Format 1 counts for nothing, and goes once enough are bound.
        assert_eq!(
            pruned(&["f1", "b2", "b3", "a4"], 2),
            (vec!["f1".into()], Some(2))
        );
        assert_eq!(pruned(&["f1", "b2", "b3", "a4"], 3), (vec![], Some(2)));
    }

    #[test]
    fn the_backups_stored_last_are_named_whatever_their_dates() {
        let all = records(&["b1", "b2", "b3", "a4", "f5", "b6"]);
        let stored: BTreeMap<BackupId, u64> = [
            ("b1", 100),
            ("b2", 300),
            ("b3", 200),
            ("a4", 900),
            ("f5", 900),
            // b6 the storage says nothing of: not named.
        ]
        .into_iter()
        .map(|(id, at)| (BackupId::parse(id).unwrap(), at))
        .collect();
        let named = |keep_last| -> Vec<String> {
            let ids = stored_last(&all, &stored, keep_last);
            ids.into_iter().map(|id| id.to_string()).collect()
        };
        // Bases and format-1 backups (whose dates bind nothing) are not
        // backups this order keeps.
        assert_eq!(named(1), ["b2"]);
        assert_eq!(named(2), ["b2", "b3"]);
        assert_eq!(named(5), ["b1", "b2", "b3"]);
        assert!(stored_last(&all, &BTreeMap::new(), 2).is_empty());
    }

    /// A storage whose record of `failing` cannot be given now.
    struct Flaky {
        inner: storage::dir::DirStorage,
        failing: BackupId,
    }

    impl Storage for Flaky {
        fn location(&self, id: &BackupId) -> String {
            self.inner.location(id)
        }
        fn is_location_of(&self, id: &BackupId, location: &str) -> bool {
            self.inner.is_location_of(id, location)
        }
        fn prepare(&self, id: &BackupId) -> Result<()> {
            self.inner.prepare(id)
        }
        fn create(&self, id: &BackupId) -> Result<Box<dyn storage::ObjectWriter>> {
            self.inner.create(id)
        }
        fn open(&self, id: &BackupId, offset: u64) -> Result<Box<dyn io::Read + Send>> {
            self.inner.open(id, offset)
        }
        fn put_record(&self, id: &BackupId, json: &[u8]) -> Result<()> {
            self.inner.put_record(id, json)
        }
        fn get_record(&self, id: &BackupId) -> Result<Vec<u8>> {
            match *id == self.failing {
                true => Err(Error::storage("Swift answered 503")),
                false => self.inner.get_record(id),
            }
        }
        fn list(&self) -> Result<Vec<BackupId>> {
            self.inner.list()
        }
        fn delete(&self, id: &BackupId) -> Result<()> {
            self.inner.delete(id)
        }
        fn patience(&self) -> std::time::Duration {
            self.inner.patience()
        }
        fn archive(&self) -> Box<dyn Storage> {
            self.inner.archive()
        }
    }

    /// Found by a review: a base whose record was read for the count but
    /// not for the windows (a Swift 503 on that one request) had no window
    /// to judge, and went, though its window reached the oldest backup kept.
    #[test]
    fn a_base_whose_window_cannot_be_read_now_is_kept() {
        let dir = crate::testing::scratch_dir("prune-flaky");
        let key = MasterKey::from_bytes([7; 32]);
        let flaky = Flaky {
            inner: storage::dir::DirStorage::new(dir.clone()),
            failing: BackupId::parse("a01").unwrap(),
        };
        // a01, extended to 03:30, and a40; the backup kept was made at 03:20.
        let mut bases = records(&["a01", "a40"]);
        bases[0].archive.as_mut().unwrap().last_at = "2026-11-25T03:30:00.000000Z".into();
        for base in &mut bases {
            base.location = flaky.location(&base.id);
            let stored = base.to_stored(&key);
            flaky.inner.put_record(&base.id, &stored).unwrap();
        }
        let base = bases.remove(0);
        let reach = std::collections::BTreeMap::from([(
            base.instance.clone(),
            units::parse_rfc3339_micros("2026-11-25T03:20:00.000000Z").unwrap(),
        )]);
        let kept = |storage: &dyn Storage| -> Vec<String> {
            let kept = bases_kept(storage, &key, std::slice::from_ref(&base), &reach, None);
            kept.unwrap().into_iter().map(|(_, why)| why).collect()
        };
        assert_eq!(
            kept(&flaky.inner),
            ["its window reaches the oldest backup kept"]
        );
        assert_eq!(kept(&flaky), ["its record cannot be read now"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
