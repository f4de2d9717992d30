//! The recoverable windows of each instance, from records alone. A window
//! is a base backup and the chunks named after it (in `Storage::archive`).
//! The times it can restore to are its spans: one per archiver session,
//! from the first command that session stored to the last, less the
//! intervals it was behind the primary (`behind`); between two sessions
//! nothing was being received, and what was written then arrived later,
//! stamped later, so a moment there is not held. Whether every chunk
//! is there and unaltered is proven by the replay that uses them, not here.

use super::{behind, ChunkName, BASE_SOURCE};
use crate::codec::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::record::{ArchivePlace, Record};
use crate::storage::Storage;
use crate::stored::{load_record, Patience};
use crate::units;
use log::warn;
use serde_json::{json, Value};
use std::cell::RefCell;

pub struct Window {
    pub base: Record,
    /// The chunks named after the base, in stream order.
    pub chunks: Vec<ChunkName>,
    /// Where the window ends: the base's place, or its newest chunk's.
    pub last: ArchivePlace,
    /// The moments it holds (µs since the epoch, both ends included).
    pub spans: Vec<(u64, u64)>,
    /// Where each span's session ends in `chunks` (the index after it).
    span_ends: Vec<usize>,
    /// Chunks read for the spans whose record failed, and why: the spans
    /// may be shorter than what was archived.
    pub damaged: Vec<String>,
    /// Whether one of those failures was the storage's (exit 4: it may
    /// answer later), not the record's. A listed record that is not there
    /// is not such a failure: a listing may name anything.
    pub unreadable: bool,
}

impl Window {
    pub fn instance(&self) -> &str {
        &self.base.instance
    }

    pub fn holds(&self, micros: u64) -> bool {
        self.spans
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&micros))
    }

    /// The chunks a replay to `micros` reads: those up to the end of the
    /// newest session holding it. A later session's commands were received
    /// later, stamped later, so none of them is needed, and one whose
    /// record fails must not stop the replay of a moment held before it.
    pub fn chunks_to(&self, micros: u64) -> &[ChunkName] {
        let end = self
            .spans
            .iter()
            .zip(&self.span_ends)
            .rev()
            .find(|((from, to), _)| (*from..=*to).contains(&micros))
            .map_or(self.chunks.len(), |(_, end)| *end);
        &self.chunks[..end]
    }

    /// One timeline entry per span.
    pub fn to_json(&self) -> Vec<Value> {
        self.spans
            .iter()
            .map(|(from, to)| {
                json!({
                    "instance": self.instance(),
                    "from": units::utc_millis(*from),
                    "to": units::utc_millis(*to),
                    "base": self.base.id.as_str(),
                })
            })
            .collect()
    }

    pub fn describe(&self) -> Vec<String> {
        self.spans
            .iter()
            .map(|span| describe(self.instance(), *span))
            .collect()
    }

    /// How far `micros` is from the nearest moment held, and that span.
    fn distance(&self, micros: u64) -> Option<(u64, (u64, u64))> {
        self.spans
            .iter()
            .map(|&(from, to)| {
                let d = match micros < from {
                    true => from - micros,
                    false => micros.saturating_sub(to),
                };
                (d, (from, to))
            })
            .min()
    }
}

fn describe(instance: &str, (from, to): (u64, u64)) -> String {
    format!(
        "{instance} from {} to {}",
        units::utc_millis(from),
        units::utc_millis(to)
    )
}

/// Every window in `storage` (of `instance`, if given), oldest base first.
pub fn windows(
    storage: &dyn Storage,
    key: &MasterKey,
    instance: Option<&str>,
) -> Result<Vec<Window>> {
    let chunk_storage = storage.archive();
    let patience = RefCell::new(Patience::of(storage));
    let mut bases = Vec::new();
    for id in storage.list()? {
        let loaded = patience
            .borrow_mut()
            .try_load(&|| load_authentic(storage, &id, key))?;
        let record = match loaded {
            Ok(record) => record,
            Err(e) => {
                warn!("backup {id} is left out of the windows: {e}");
                continue;
            }
        };
        // An authentic base written to another storage (another guest's,
        // sharing the key and the instance name, copied here) is not ours.
        let is_base = record.source == BASE_SOURCE
            && record.archive.as_ref().is_some_and(|a| a.base == record.id)
            && storage.is_location_of(&record.id, &record.location);
        if is_base && instance.is_none_or(|i| i == record.instance) {
            bases.push(record);
        }
    }
    Record::sort_oldest_first(&mut bases);
    let mut windows = Vec::with_capacity(bases.len());
    for base in bases {
        let (mut named, too_many) = match listed_chunks(&*chunk_storage, &base.id)? {
            Ok(named) => (named, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        named.sort_by_key(|c| (c.start, c.end));
        let chunks = Chunks {
            storage: &*chunk_storage,
            key,
            base: &base,
            damaged: Default::default(),
            unreadable: Default::default(),
            patience: &patience,
            gave_up: Default::default(),
        };
        let start = base.archive.as_ref().map_or(0, |a| a.start_offset);
        let mut break_at = named.len();
        if let Some(why) = too_many {
            // Not one of its records is read: each would cost a request,
            // and the listing may answer as it should later.
            chunks.unreadable.set(true);
            chunks.damaged(format!("window {}: {why}", base.id));
            break_at = 0;
        } else if let Some((at, why)) = first_break(start, &named) {
            break_at = at;
            chunks.damaged(format!("window {}: {why}", base.id));
        }
        // The replay starts at the base and cannot pass a break in the
        // offsets, nor a chunk whose record fails: no moment after either
        // is held. Where the window ends (prune's reach, an archiver's
        // place) is its newest chunk that reads, all the same: a chunk a
        // listing left out for now must not make it end sooner.
        let mut holds_moments = true;
        let mut spans = Vec::new();
        let mut span_ends = Vec::new();
        let mut last = None;
        for range in sessions(&named) {
            let session = &named[range.clone()];
            // Each record is read once: a listing may name thousands of
            // chunks, each a session of its own, that cannot be read.
            let first = session.first().and_then(|c| chunks.place(c));
            let newest = session[1..]
                .iter()
                .rev()
                .find_map(|c| chunks.place(c))
                .or_else(|| first.clone());
            let (Some(first), Some(newest)) = (first, newest) else {
                holds_moments = false;
                continue;
            };
            if holds_moments && range.start < break_at {
                let (from, _) = first.span_micros();
                let (_, to) = newest.span_micros();
                // The newest record carries the session's intervals behind.
                for span in behind::held(from, to.max(from), &newest.behind) {
                    spans.push(span);
                    span_ends.push(range.end);
                }
            }
            last = Some(newest);
        }
        if let Some(gave_up) = chunks.gave_up.into_inner() {
            return Err(gave_up);
        }
        let last = last.unwrap_or_else(|| base.archive.clone().expect("a base has its place"));
        let damaged = chunks.damaged.into_inner();
        let unreadable = chunks.unreadable.get();
        windows.push(Window {
            base,
            chunks: named,
            last,
            spans,
            span_ends,
            damaged,
            unreadable,
        });
    }
    Ok(windows)
}

/// The chunks listed under `base`'s name that are named as its chunks: what
/// its window is made of, and what prune deletes with it. A chunk's name
/// holds its base's, and its record is bound to that name, so nothing named
/// so belongs to another window; the listing, whoever answers it, may name
/// anything else. A window holds at most `MAX_WINDOW_CHUNKS` chunks (twice
/// that allows for sessions a kill left stored twice): more are made up,
/// and the inner `Err` says so.
fn listed_chunks(
    chunk_storage: &dyn Storage,
    base: &BackupId,
) -> Result<std::result::Result<Vec<ChunkName>, String>> {
    let named: Vec<ChunkName> = chunk_storage
        .list_prefix(&format!("{base}."))?
        .iter()
        .filter_map(ChunkName::parse)
        .filter(|c| c.base == *base)
        .collect();
    if named.len() as u64 > 2 * super::MAX_WINDOW_CHUNKS {
        return Ok(Err(format!(
            "{} chunks are listed for base {base}, more than a window holds: the storage is misbehaving",
            named.len(),
        )));
    }
    Ok(Ok(named))
}

/// The chunks stored for `base`, which prune and delete delete with it;
/// `None` (said) when the listing names more than a window holds, as each
/// would cost a request of its own.
pub fn chunks_of(chunk_storage: &dyn Storage, base: &BackupId) -> Result<Option<Vec<BackupId>>> {
    match listed_chunks(chunk_storage, base)? {
        Ok(named) => Ok(Some(named.iter().map(ChunkName::id).collect())),
        Err(why) => {
            warn!("{why}; its chunks are kept");
            Ok(None)
        }
    }
}

/// Delete `chunks` (of a base being deleted), skipping those that are
/// listed but gone (another prune, a listing not yet up to date, or a name
/// whoever answers made up); the names deleted. Each of those costs
/// requests of its own, and a listing may name thousands: the time they
/// lose is bounded by `patience`, past which the command ends (exit 4).
pub fn delete_chunks(
    chunk_storage: &dyn Storage,
    chunks: &[BackupId],
    patience: &mut Patience,
) -> Result<Vec<String>> {
    let mut deleted = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let started = std::time::Instant::now();
        match chunk_storage.delete(chunk) {
            Ok(()) => deleted.push(chunk.to_string()),
            Err(e @ Error::Missing(_)) => {
                patience.lost_to(started, &e)?;
                warn!("{e}; skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The chunks of a window cut where an archiver session starts, or where
/// the offsets do not follow on (what was between is not there: a span
/// must not reach over it); each as its range in `named`.
fn sessions(named: &[ChunkName]) -> Vec<std::ops::Range<usize>> {
    let mut sessions = Vec::new();
    let mut start = 0;
    for i in 1..=named.len() {
        if i == named.len() || named[i].session_start || named[i].start != named[i - 1].end {
            if start < i {
                sessions.push(start..i);
            }
            start = i;
        }
    }
    sessions
}

/// Where the chunks' offsets, in stream order from the base's, first fail
/// to follow on (as the replay requires): a chunk missing, or a name out
/// of place. Whoever removed or planted it, the archive there is not what
/// was archived. The index of the chunk there, and why.
fn first_break(start: u64, named: &[ChunkName]) -> Option<(usize, String)> {
    let mut offset = start;
    for (i, chunk) in named.iter().enumerate() {
        if chunk.start != offset {
            let what = match chunk.start > offset {
                true => "chunks are missing",
                false => "a chunk is out of place",
            };
            return Some((
                i,
                format!(
                    "the stream is at offset {offset} and the next chunk starts at {}: {what}",
                    chunk.start
                ),
            ));
        }
        offset = chunk.end;
    }
    None
}

/// A record that authenticates: no base or chunk is of format 1, whose
/// records bind nothing, so a listed one is a name that gave nothing.
fn load_authentic(storage: &dyn Storage, id: &BackupId, key: &MasterKey) -> Result<Record> {
    let record = load_record(storage, id, key)?;
    match record.authenticated() {
        true => Ok(record),
        false => Err(Error::integrity(format!(
            "{id} has a record of format {}, which no archive has",
            record.format
        ))),
    }
}

/// The chunk records of one window.
struct Chunks<'a> {
    storage: &'a dyn Storage,
    key: &'a MasterKey,
    base: &'a Record,
    damaged: RefCell<Vec<String>>,
    unreadable: std::cell::Cell<bool>,
    patience: &'a RefCell<Patience>,
    /// Set once the patience ran out: no more records are loaded.
    gave_up: RefCell<Option<Error>>,
}

impl Chunks<'_> {
    fn damaged(&self, why: String) -> Option<ArchivePlace> {
        warn!("{why}; the window's times may end sooner");
        self.damaged.borrow_mut().push(why);
        None
    }

    /// The place of chunk `name` if its record authenticates and belongs here.
    fn place(&self, name: &ChunkName) -> Option<ArchivePlace> {
        if self.gave_up.borrow().is_some() {
            return None;
        }
        let id = name.id();
        let loaded = self
            .patience
            .borrow_mut()
            .try_load(&|| load_authentic(self.storage, &id, self.key));
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(gave_up) => {
                *self.gave_up.borrow_mut() = Some(gave_up);
                return None;
            }
        };
        match loaded {
            Ok(record) => match record.archive {
                Some(place)
                    if place.base == self.base.id
                        && record.instance == self.base.instance
                        && self.storage.is_location_of(&id, &record.location) =>
                {
                    Some(place)
                }
                _ => self.damaged(format!(
                    "chunk {id} does not belong to the window of {}",
                    self.base.id
                )),
            },
            Err(e) => {
                let for_now = e.exit_code() == 4 && !matches!(e, Error::Missing(_));
                self.unreadable.set(self.unreadable.get() || for_now);
                self.damaged(format!("chunk {id}: {e}"))
            }
        }
    }
}

/// The newest window of `instance` that holds `at`; exit 4 naming the
/// nearest span when none does.
pub fn holding(storage: &dyn Storage, key: &MasterKey, instance: &str, at: u64) -> Result<Window> {
    let mut all = windows(storage, key, Some(instance))?;
    if let Some(i) = all.iter().rposition(|w| w.holds(at)) {
        return Ok(all.swap_remove(i));
    }
    // A span cut short by a chunk that fails is the storage's doing, not a
    // moment never archived: an integrity error, as the replay would say,
    // for a time where the damaged window may have gone on (from what it
    // holds to the next window, or now). Elsewhere, the nearest is named.
    let now = units::now_micros();
    for (i, window) in all.iter().enumerate() {
        let Some(why) = window.damaged.first() else {
            continue;
        };
        let held_to = window.spans.iter().map(|s| s.1).max();
        let from = held_to.or_else(|| units::parse_rfc3339_micros(&window.base.created_at));
        let to = all[i + 1..]
            .iter()
            .filter_map(|w| w.spans.first().map(|s| s.0))
            .min()
            .unwrap_or(now);
        if from.is_none_or(|from| (from..=to).contains(&at)) {
            return Err(Error::integrity(format!(
                "no archive of instance {instance} covers {} as it stands, and {why}: the archive was tampered with or damaged",
                units::utc_millis(at)
            )));
        }
    }
    let nearest = match all.iter().filter_map(|w| w.distance(at)).min() {
        Some((_, span)) => format!("the nearest window is {}", describe(instance, span)),
        // Its windows hold no moment yet: a base alone, or chunks all
        // stored while the archiver was behind the primary.
        None if !all.is_empty() => format!(
            "its {} window(s) (the newest based on {}) hold no moment yet: a window holds the moments its archiver stored commands at while it had caught up with the primary",
            all.len(),
            all.last().expect("not empty").base.id
        ),
        None => no_windows_of(storage, key, instance)?,
    };
    Err(Error::storage(format!(
        "no archive of instance {instance} covers {}; {nearest} (`redis-backup timeline` lists them)",
        units::utc_millis(at)
    )))
}

/// Why `instance` has no window: on a host that replaced the archived
/// one, its name is another; the instances that have windows are named.
fn no_windows_of(storage: &dyn Storage, key: &MasterKey, instance: &str) -> Result<String> {
    let mut others: Vec<&str> = Vec::new();
    let all = windows(storage, key, None)?;
    for window in all.iter().filter(|w| !w.spans.is_empty()) {
        if window.instance() != instance && !others.contains(&window.instance()) {
            others.push(window.instance());
        }
    }
    Ok(match others.is_empty() {
        // Records under another key are left out, each with a warning: an
        // operator with the wrong key_file sees them named there.
        true => "there is no archive of it this host's key reads (records it cannot authenticate are left out, each named in a warning); `redis-backup archive` makes one".into(),
        false => format!(
            "there is no archive of it, but there are of instance {} (`--instance NAME` chooses one)",
            others.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BackupId;

    #[test]
    fn sessions_are_cut_where_one_starts() {
        let base = BackupId::parse("b").unwrap();
        let chunk = |start, session_start| ChunkName {
            base: base.clone(),
            start,
            end: start + 1,
            session_start,
        };
        let named = [
            chunk(0, true),
            chunk(1, false),
            chunk(2, true),
            chunk(3, false),
            chunk(4, false),
        ];
        let cut: Vec<Vec<u64>> = sessions(&named)
            .into_iter()
            .map(|s| named[s].iter().map(|c| c.start).collect())
            .collect();
        assert_eq!(cut, [vec![0, 1], vec![2, 3, 4]]);
        assert!(sessions(&[]).is_empty());
        assert_eq!(first_break(0, &named), None);
    }

    #[test]
    fn a_hole_in_the_offsets_cuts_a_session_and_is_named() {
        let base = BackupId::parse("b").unwrap();
        let chunk = |start, end| ChunkName {
            base: base.clone(),
            start,
            end,
            session_start: start == 0,
        };
        let named = [chunk(0, 10), chunk(10, 20), chunk(30, 40), chunk(40, 50)];
        let cut: Vec<Vec<u64>> = sessions(&named)
            .into_iter()
            .map(|s| named[s].iter().map(|c| c.start).collect())
            .collect();
        assert_eq!(cut, [vec![0, 10], vec![30, 40]]);
        let (at, why) = first_break(0, &named).expect("a hole");
        assert_eq!(at, 2, "the replay stops before the third chunk");
        assert!(
            why.contains("offset 20") && why.contains("missing"),
            "{why}"
        );
        let doubled = [chunk(0, 10), chunk(5, 15)];
        let (at, why) = first_break(0, &doubled).expect("out of place");
        assert_eq!(at, 1);
        assert!(why.contains("out of place"), "{why}");
        assert!(
            first_break(3, &named[..1]).is_some(),
            "not from the base's offset"
        );
    }
}
