//! The recoverable windows of each instance, from records alone: a window
//! is a base backup and the chunks named after it; it runs from the base's
//! time to the last receive time of its newest chunk whose record
//! authenticates. Whether every chunk in between is there and unaltered is
//! proven by the replay that uses them, not here.

use super::{ChunkName, BASE_SOURCE};
use crate::codec::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::record::{ArchivePlace, Record};
use crate::storage::Storage;
use crate::stored::load_record;
use crate::units;
use log::warn;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct Window {
    pub base: Record,
    /// The chunks named after the base, in stream order.
    pub chunks: Vec<ChunkName>,
    /// Where the window ends: the base's place, or its newest chunk's.
    pub last: ArchivePlace,
    pub from_micros: u64,
    pub to_micros: u64,
}

impl Window {
    pub fn instance(&self) -> &str {
        &self.base.instance
    }

    pub fn holds(&self, micros: u64) -> bool {
        (self.from_micros..=self.to_micros).contains(&micros)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "instance": self.instance(),
            "from": units::utc_millis(ceil_millis(self.from_micros)),
            "to": units::utc_millis(self.to_micros),
            "base": self.base.id.as_str(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} from {} to {}",
            self.instance(),
            units::utc_millis(ceil_millis(self.from_micros)),
            units::utc_millis(self.to_micros)
        )
    }
}

fn ceil_millis(micros: u64) -> u64 {
    micros.div_ceil(1000) * 1000
}

/// Every window in `storage` (of `instance`, if given), oldest base first.
pub fn windows(
    storage: &dyn Storage,
    key: &MasterKey,
    instance: Option<&str>,
) -> Result<Vec<Window>> {
    let mut chunks: BTreeMap<BackupId, Vec<ChunkName>> = BTreeMap::new();
    let mut bases = Vec::new();
    for id in storage.list()? {
        if let Some(chunk) = ChunkName::parse(&id) {
            chunks.entry(chunk.base.clone()).or_default().push(chunk);
            continue;
        }
        let record = match load_record(storage, &id, key) {
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
            && record.location == storage.location(&record.id);
        if is_base && instance.is_none_or(|i| i == record.instance) {
            bases.push(record);
        }
    }
    bases.sort_by(|a, b| a.age().cmp(&b.age()));
    let mut windows = Vec::with_capacity(bases.len());
    for base in bases {
        let mut named = chunks.remove(&base.id).unwrap_or_default();
        named.sort_by_key(|c| (c.start, c.end));
        let place = base.archive.clone().expect("a base has its place");
        let from_micros = place.span_micros().0;
        let last = newest_chunk(storage, key, &base, &named).unwrap_or(place);
        // Shown to the millisecond, so rounded up to it: a TIME copied from
        // `timeline` must take in the last command, not stop short of it.
        let to_micros = ceil_millis(last.span_micros().1.max(from_micros));
        windows.push(Window {
            base,
            chunks: named,
            last,
            from_micros,
            to_micros,
        });
    }
    Ok(windows)
}

/// The place of the newest chunk of `base` whose record authenticates and
/// belongs to it.
fn newest_chunk(
    storage: &dyn Storage,
    key: &MasterKey,
    base: &Record,
    named: &[ChunkName],
) -> Option<ArchivePlace> {
    for chunk in named.iter().rev() {
        let id = chunk.id();
        match load_record(storage, &id, key) {
            Ok(record) => match record.archive {
                Some(place)
                    if place.base == base.id
                        && record.instance == base.instance
                        && record.location == storage.location(&id) =>
                {
                    return Some(place)
                }
                _ => warn!("chunk {id} does not belong to the window of {}", base.id),
            },
            Err(e) => warn!("chunk {id} is left out of the window: {e}"),
        }
    }
    None
}

/// The newest window of `instance` that holds `at`; exit 4 naming the
/// nearest window when none does.
pub fn holding(storage: &dyn Storage, key: &MasterKey, instance: &str, at: u64) -> Result<Window> {
    let mut all = windows(storage, key, Some(instance))?;
    if let Some(i) = all.iter().rposition(|w| w.holds(at)) {
        return Ok(all.swap_remove(i));
    }
    let distance = |w: &Window| match at < w.from_micros {
        true => w.from_micros - at,
        false => at.saturating_sub(w.to_micros),
    };
    let nearest = match all.iter().min_by_key(|w| distance(w)) {
        Some(w) => format!("the nearest window is {}", w.describe()),
        None => "there is no archive of it; `redis-backup archive` makes one".into(),
    };
    Err(Error::storage(format!(
        "no archive of instance {instance} covers {}; {nearest} (`redis-backup timeline` lists them)",
        units::utc_millis(at)
    )))
}
