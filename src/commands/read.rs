//! Reading a backup back: `verify` (every frame authenticated and
//! decoded, nothing written), `export` (the plain RDB to a new file) and
//! `export --at` (the replay of an archive window to a moment, written the
//! same way). A file appears at PATH only complete and checked.

use super::Report;
use crate::archive;
use crate::cli::Target;
use crate::codec::crypto;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fs::AtomicFile;
use crate::id::BackupId;
use crate::storage;
use crate::stored::Stored;
use crate::units::{self, human_size};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

pub(super) fn verify(config: &Config, target: Target) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let started = Instant::now();
    let stored = match &target {
        // Read-only, and its report says plainly when a backup is format 1.
        Target::Id(id) => {
            let storage = storage::open(config)?;
            // A chunk's ID names its base and offsets: it is in the archive.
            let storage = match archive::ChunkName::parse(id) {
                Some(_) => storage.archive(),
                None => storage,
            };
            Stored::open(&*storage, id, &key, true)?
        }
        Target::File(path) => Stored::from_file(path, &key, true)?,
        Target::At { .. } => return Err(Error::usage("verify takes an ID or --from-file PATH")),
    };
    let name = stored.name().to_string();
    let is_chunk = stored
        .record()
        .is_some_and(|r| r.source == archive::CHUNK_SOURCE);
    if is_chunk {
        // Its bytes are a stretch of the write stream, not an RDB.
        let raw_size = stored.decode_stream_into(&mut io::sink(), &key)?;
        return Ok(Report {
            lines: vec![format!(
                "{name}: OK, an archived chunk of {} of write stream",
                human_size(raw_size)
            )],
            json: json!({ "verified": name, "chunk": true, "raw_size": raw_size }),
        });
    }
    let summary = stored.decode_into(&mut io::sink(), &key, config.threads)?;
    log::info!(
        "verified {name} in {}s",
        crate::units::seconds(started.elapsed(), 1)
    );
    // Which backup this is, as the object itself says (and has proven):
    // what a file copied by hand is, in particular.
    let identity = summary.header.identity.as_ref();
    let which = match identity {
        Some(i) => format!(
            "backup {} of {} made {} from {} {} ({})",
            i.backup_id, i.instance, i.created_at, i.server_name, i.server_version, i.source
        ),
        None => "format 1: identity not bound".into(),
    };
    Ok(Report {
        lines: vec![format!(
            "{name}: OK, {} RDB (version {}), sha256 {}; {which}",
            human_size(summary.raw_size),
            summary.rdb.version,
            summary.raw_sha256
        )],
        json: json!({
            "verified": name,
            "format": summary.header.version,
            "identity": identity.map(|i| json!({
                "id": i.backup_id.as_str(),
                "instance": i.instance,
                "created_at": i.created_at,
                "server": {"name": i.server_name, "version": i.server_version},
                "source": i.source,
            })),
            "raw_size": summary.raw_size,
            "raw_sha256": summary.raw_sha256,
            "rdb_version": summary.rdb.version,
        }),
    })
}

pub(super) fn export(
    config: &Config,
    id: &BackupId,
    out: &Path,
    allow_format_1: bool,
) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let stored = Stored::open(&*storage::open(config)?, id, &key, allow_format_1)?;
    refuse_out(out)?;
    let summary = write_new_file(out, |writer| {
        stored.decode_into(writer, &key, config.threads)
    })?;
    Ok(Report {
        lines: vec![format!(
            "exported {id} to {} ({}, sha256 {})",
            out.display(),
            human_size(summary.raw_size),
            summary.raw_sha256
        )],
        json: json!({
            "exported": id.as_str(),
            "out": out.display().to_string(),
            "raw_size": summary.raw_size,
            "raw_sha256": summary.raw_sha256,
        }),
    })
}

/// `export --at`: the replayed RDB, to PATH as `export` writes a backup's.
pub(super) fn export_at(
    config: &Config,
    at: u64,
    instance: Option<&str>,
    out: &Path,
) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let instance = instance.unwrap_or(&config.instance);
    let window = archive::windows::holding(&*storage, &key, instance, at)?;
    refuse_out(out)?;
    let binary = crate::redis::server::ServerBinary::ask(&config.redis_server)?;
    let mut replayed =
        archive::replay::replay(&*storage, &key, &binary, &window, at, config.save_timeout)?;
    let (raw_size, sha) = write_new_file(out, |writer| {
        let mut hashed = Hashed {
            inner: writer,
            hasher: Sha256::new(),
            size: 0,
        };
        io::copy(replayed.rdb(), &mut hashed)
            .map_err(|e| Error::other(format!("writing {}: {e}", out.display())))?;
        Ok((
            hashed.size,
            crate::codec::crypto::hex(&hashed.hasher.finalize()),
        ))
    })?;
    let until = units::utc_millis(replayed.applied_until);
    Ok(Report {
        lines: vec![format!(
            "exported instance {instance} as at {} to {} ({}, sha256 {sha}): base {} and {} commands up to {until}",
            units::utc_millis(at),
            out.display(),
            human_size(raw_size),
            replayed.base,
            replayed.commands
        )],
        json: json!({
            "exported_at": units::utc_millis(at),
            "instance": instance,
            "base": replayed.base,
            "commands": replayed.commands,
            "applied_until": until,
            "out": out.display().to_string(),
            "raw_size": raw_size,
            "raw_sha256": sha,
        }),
    })
}

/// Refuse early a PATH that exists (the final link refuses again if it
/// appears meanwhile), or that another account could replace.
fn refuse_out(out: &Path) -> Result<()> {
    super::refuse_folder_of_others(out)?;
    match fs::symlink_metadata(out) {
        Ok(_) => Err(exists(out)),
        Err(_) => Ok(()),
    }
}

/// `write` fills a new file at `out`, written under a temporary name and
/// linked into place only when complete and checked, so not even a killed
/// export leaves a partial RDB at PATH.
fn write_new_file<T>(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<AtomicFile>) -> Result<T>,
) -> Result<T> {
    // What an export killed before it finished left beside PATH (as large
    // as the RDB): its temporary name ends in PATH's own.
    if let (Some(folder), Some(name)) = (out.parent(), out.file_name()) {
        let ending = format!("-{}.tmp", name.to_string_lossy());
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        for left in crate::fs::remove_dead_temps(folder, &ending) {
            log::info!("removed {left}, left by an export that was killed");
        }
    }
    let file = AtomicFile::create(out).map_err(|e| {
        Error::other(format!(
            "cannot create a file beside {}: {e}",
            out.display()
        ))
    })?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let written = write(&mut writer)?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::other(format!("writing {}: {}", out.display(), e.error())))?;
    file.commit(true).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => exists(out),
        _ => Error::other(format!("writing {}: {e}", out.display())),
    })?;
    Ok(written)
}

/// A writer that hashes and counts what goes through it.
struct Hashed<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn exists(out: &Path) -> Error {
    Error::usage(format!(
        "{} already exists; export never overwrites a file, choose another --out",
        out.display()
    ))
}
