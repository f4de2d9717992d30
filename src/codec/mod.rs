//! The bytes of a backup, and nothing about where they come from or go: the
//! pipeline that turns an RDB into the stored format and back on worker
//! threads (`pipeline`, `ring`), deflate (`compress`), keys and ciphers
//! (`crypto`), the byte layout of format 1 (`format`, the only module that
//! knows it), and the RDB's own checks (`rdb`, `crc64`).

pub mod compress;
pub mod crc64;
pub mod crypto;
pub mod format;
pub mod pipeline;
pub mod rdb;
pub mod ring;
