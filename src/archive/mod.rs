//! Point-in-time recovery. `archive` follows the primary as a replica and
//! keeps its write stream in storage (`follow`): a base backup from the
//! resync's RDB, then chunks of the stream, each an ordinary authenticated
//! object with a record that says where in the history it sits. A window
//! is one base and the chunks that continue it without a gap (`windows`).
//! `restore --at` and `export --at` replay a window up to a moment into a
//! private server and take the RDB it saves (`replay`). How the stream's
//! bytes are cut and laid out is `stream`'s business.

pub mod follow;
pub mod replay;
pub mod stream;
pub mod windows;

use crate::id::BackupId;

/// The `source` of a base backup (listed like any backup) and of a chunk
/// (never listed).
pub const BASE_SOURCE: &str = "archive";
pub const CHUNK_SOURCE: &str = "archive-stream";

/// A chunk's ID says which window it continues and which bytes of the
/// stream it holds: `BASE.START-END`, offsets zero-padded to 20 digits so
/// that names sort in stream order. `list` and `prune` tell chunks from
/// backups by name alone, without reading a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkName {
    pub base: BackupId,
    pub start: u64,
    pub end: u64,
}

impl ChunkName {
    pub fn id(&self) -> BackupId {
        BackupId::chunk(&self.base, self.start, self.end)
    }

    pub fn parse(id: &BackupId) -> Option<ChunkName> {
        let (base, start, end) = id.chunk_parts()?;
        Some(ChunkName { base, start, end })
    }
}

/// Whether `id` is shaped like a chunk's (so no backup may take it).
pub fn is_chunk(id: &BackupId) -> bool {
    ChunkName::parse(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_round_trip_and_sort_in_stream_order() {
        let base = BackupId::parse("20261130T101500Z-ab12cd34").unwrap();
        let name = |start, end| ChunkName {
            base: base.clone(),
            start,
            end,
        };
        let a = name(9, 1000);
        let b = name(1000, 20_000);
        assert_eq!(ChunkName::parse(&a.id()), Some(a.clone()));
        assert!(a.id().as_str() < b.id().as_str());
        assert!(is_chunk(&b.id()));
        for id in [
            "b1",
            "x.1-2",
            "x.00000000000000000001-2",
            "nightly.2026-11-30",
        ] {
            assert!(!is_chunk(&BackupId::parse(id).unwrap()), "{id}");
        }
    }
}
