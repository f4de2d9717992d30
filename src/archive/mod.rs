//! Point-in-time recovery. `archive` follows the primary as a replica and
//! keeps its write stream in storage (`follow`): a base backup from the
//! resync's RDB, then chunks of the stream, each an ordinary authenticated
//! object with a record that says where in the history it sits. A window
//! is one base and the chunks that continue it without a gap (`windows`).
//! `restore --at` and `export --at` replay a window up to a moment into a
//! private server, made the replica of this process (`primary`), and take
//! the RDB it saves (`replay`): the commands it is sent, and as what, are
//! `apply`'s choice. How the stream's bytes are cut and laid out is
//! `stream`'s business.

pub mod apply;
pub mod behind;
pub mod follow;
mod primary;
pub mod replay;
pub mod stream;
pub mod windows;

use crate::id::BackupId;

/// The most chunks a window holds (`follow::Position::is_full`).
pub const MAX_WINDOW_CHUNKS: u64 = 8640;

/// The `source` of a base backup (listed like any backup) and of a chunk
/// (never listed).
pub const BASE_SOURCE: &str = "archive";
pub const CHUNK_SOURCE: &str = "archive-stream";

/// A chunk's ID says which window it continues, which bytes of the stream
/// it holds, and whether it is the first of an archiver session (see
/// `BackupId::chunk`). Chunks live in a storage of their own
/// (`Storage::archive`), so listing backups never pages through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkName {
    pub base: BackupId,
    pub start: u64,
    pub end: u64,
    pub session_start: bool,
}

impl ChunkName {
    pub fn id(&self) -> BackupId {
        BackupId::chunk(&self.base, self.start, self.end, self.session_start)
    }

    pub fn parse(id: &BackupId) -> Option<ChunkName> {
        let (base, start, end, session_start) = id.chunk_parts()?;
        Some(ChunkName {
            base,
            start,
            end,
            session_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_round_trip() {
        let base = BackupId::parse("20261130T101500Z-ab12cd34").unwrap();
        for session_start in [false, true] {
            let name = ChunkName {
                base: base.clone(),
                start: 9,
                end: 1000,
                session_start,
            };
            assert_eq!(ChunkName::parse(&name.id()), Some(name));
        }
        for id in [
            "b1",
            "x.1-2",
            "x.c00000000000000000001-2",
            "nightly.2026-11-30",
        ] {
            assert_eq!(
                ChunkName::parse(&BackupId::parse(id).unwrap()),
                None,
                "{id}"
            );
        }
    }
}
