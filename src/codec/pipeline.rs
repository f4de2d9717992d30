//! Turns a plain RDB stream into a backup stream and back, in parallel and in
//! flat memory. One thread reads frames, a few workers compress, encrypt and
//! MAC them (or verify, decrypt and inflate them), and the caller's thread
//! writes them out in order; a decode also has a checker thread that hashes
//! the plain RDB behind the writer. A fixed ring of buffers bounds the frames
//! in flight: a frame takes a buffer when it is read and gives it back when
//! it has been written (and, decoding, hashed), so a slow writer slows the
//! reader instead of filling memory, and no stage ever waits for a buffer
//! that a later frame holds.
//!
//! Failure anywhere stops everything: the writer raises a stop flag and drops
//! its ends of the channels, which wakes every blocked thread; a failing
//! reader or worker drops its ends, which lets the writer's loop end. The
//! error reported is the earliest one in stream order.

use crate::queue::{self, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use sha2::{Digest, Sha256};

use crate::codec::compress::{Deflater, Inflater};
use crate::codec::crypto::{hex, random_bytes, BackupKeys, MasterKey};
use crate::codec::format::{self, Compression, FrameKind, Header, Identity, Trailer};
use crate::codec::rdb::{RdbCheck, RdbInfo};
use crate::codec::ring::{ring, Sink, Source};
use crate::error::{Error, Result};

/// Buffers per worker, plus a couple for the reader and writer, so workers
/// rarely wait on I/O and I/O rarely waits on workers.
const SLOTS_PER_WORKER: usize = 2;
const EXTRA_SLOTS: usize = 2;
/// More threads than this would only add memory: past a few cores the reader,
/// the writer or the storage link is the bottleneck.
const MAX_WORKERS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Which backup this is; authenticated in the header, and the backup's
    /// keys are derived from its ID.
    pub identity: Identity,
    /// Deflate level 1..=9, or 0 for no compression.
    pub level: u8,
    /// Plaintext bytes per frame, within `format::MIN_FRAME_SIZE..=MAX_FRAME_SIZE`.
    pub frame_size: usize,
    /// Threads that compress and encrypt.
    pub workers: usize,
    /// The header's salt; `None` draws a fresh one. Encoding the same input
    /// again with the salt of an earlier run gives the same bytes (frames are
    /// deflated and encrypted independently and deterministically), which is
    /// how a storage upload that failed part way is resumed.
    pub salt: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSummary {
    /// Bytes of plain RDB read.
    pub raw_size: u64,
    /// SHA-256 of the plain RDB, lowercase hex.
    pub raw_sha256: String,
    /// Bytes of backup written.
    pub stored_size: u64,
    /// Fingerprint of the master key that encrypted it.
    pub key_id: String,
}

/// The salt `encode` is about to use, so a retry can pass it back in.
pub fn fresh_salt() -> Result<[u8; 32]> {
    random_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeSummary {
    /// The authenticated header: the format version and, from format 2 on,
    /// which backup this is.
    pub header: Header,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub rdb: RdbInfo,
}

/// A frame index with its buffer, on the way to a worker.
type Job = (u64, Vec<u8>);
/// A frame index with what a worker made of it, on the way to the writer.
type Done<T> = (u64, Result<T>);

/// Reads `input` to its end and writes it to `output` as a backup.
pub fn encode(
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    key: &MasterKey,
    opts: &EncodeOptions,
) -> Result<EncodeSummary> {
    if opts.level > format::MAX_LEVEL {
        return Err(Error::usage(format!(
            "compression level {} is outside 0..={}",
            opts.level,
            format::MAX_LEVEL
        )));
    }
    if !format::frame_size_ok(opts.frame_size) {
        return Err(Error::usage(format!(
            "frame size {} is outside {}..={}",
            opts.frame_size,
            format::MIN_FRAME_SIZE,
            format::MAX_FRAME_SIZE
        )));
    }
    let frame_size = opts.frame_size;
    let header = Header {
        version: format::VERSION,
        compression: if opts.level == 0 {
            Compression::None
        } else {
            Compression::Deflate
        },
        level: opts.level,
        frame_size: frame_size as u32,
        salt: match opts.salt {
            Some(salt) => salt,
            None => random_bytes()?,
        },
        key_id: key.key_id_bytes(),
        identity: Some(opts.identity.clone()),
    };
    let keys = header.keys(key);
    let header_bytes = header.to_bytes(&keys)?;
    output
        .write_all(&header_bytes)
        .map_err(write_backup_error)?;

    let keys = &keys;
    let stages = Stages::new(opts.workers);
    let (source, sink) = stages.ring(format::max_frame_bytes(frame_size));
    let out = &mut *output;
    let (read, written) = stages.run(
        |jobs, stop| {
            let totals = read_chunks(input, source, jobs, frame_size, stop)?;
            Ok((totals.frames, totals))
        },
        || {
            let mut deflater = (opts.level > 0).then(|| Deflater::new(opts.level));
            let mut payload = Vec::with_capacity(format::max_frame_bytes(frame_size));
            move |index, chunk| seal_chunk(deflater.as_mut(), keys, index, chunk, &mut payload)
        },
        // `move`, so that dropping it drops the sink, which wakes a reader
        // blocked waiting for a buffer (see ring.rs).
        move |frame: Vec<u8>| {
            out.write_all(&frame).map_err(write_backup_error)?;
            let len = frame.len() as u64;
            sink.give(frame);
            Ok(len)
        },
    )?;

    let trailer = Trailer {
        raw_size: read.raw_size,
        raw_sha256: read.raw_sha256,
    };
    let mut last = Vec::with_capacity(format::max_frame_bytes(format::TRAILER_LEN));
    format::seal_frame(
        keys,
        read.frames,
        FrameKind::Final,
        &trailer.to_bytes(),
        &mut last,
    );
    output.write_all(&last).map_err(write_backup_error)?;
    output.flush().map_err(write_backup_error)?;

    Ok(EncodeSummary {
        raw_size: read.raw_size,
        raw_sha256: hex(&read.raw_sha256),
        stored_size: (header_bytes.len() + last.len()) as u64 + written.bytes,
        key_id: key.key_id(),
    })
}

/// Reads a backup from `input`, checks it completely and writes the plain RDB
/// to `output`. `expected` sees the authenticated header before any frame is
/// read, and may refuse it (a backup that is not the one asked for). What
/// reaches `output` is authenticated frame by frame, but the backup as a
/// whole (its end, its size, its hash, the RDB checksum) is only known good
/// when this returns `Ok`: callers must not use the output before.
pub fn decode(
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    key: &MasterKey,
    workers: usize,
    expected: &dyn Fn(&Header) -> Result<()>,
) -> Result<DecodeSummary> {
    let (header, keys) = format::read_header(input, key)?;
    expected(&header)?;
    let (raw_size, raw_sha256, rdb) = decode_frames(
        input,
        output,
        &header,
        &keys,
        workers,
        Some(RdbCheck::new()),
    )?;
    Ok(DecodeSummary {
        header,
        raw_size,
        raw_sha256,
        rdb: rdb.expect("an RDB check was requested"),
    })
}

/// `decode` for an object whose plain bytes are not an RDB (a chunk of an
/// archived replication stream): every frame authenticated, the trailer's
/// size and hash checked, nothing else. Returns the authenticated header,
/// the plain size and its SHA-256.
pub fn decode_stream(
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    key: &MasterKey,
    workers: usize,
    expected: &dyn Fn(&Header) -> Result<()>,
) -> Result<(Header, u64, String)> {
    let (header, keys) = format::read_header(input, key)?;
    expected(&header)?;
    let (raw_size, raw_sha256, _) = decode_frames(input, output, &header, &keys, workers, None)?;
    Ok((header, raw_size, raw_sha256))
}

/// The frames after the header, with the RDB check optional so that tests
/// can round-trip bytes that are not an RDB.
/// (Chunks of an archived stream are not RDBs either.)
fn decode_frames(
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    header: &Header,
    keys: &BackupKeys,
    workers: usize,
    rdb: Option<RdbCheck>,
) -> Result<(u64, String, Option<RdbInfo>)> {
    let frame_size = header.frame_size as usize;
    let stages = Stages::new(workers);
    let (source, sink) = stages.ring(format::max_frame_bytes(frame_size));
    let mut trailer = None;
    let checked = thread::scope(|s| {
        // Writing the RDB and hashing it are the serial part of a decode:
        // this thread writes each frame, then hands it to the checker, which
        // hashes it while the next one is written. The checker gives the
        // buffers back to the ring (and, by ending, wakes the reader up).
        let (to_check, frames) = queue::bounded::<Plain>(stages.slots);
        let checker = s.spawn(move || check_plain(frames, sink, rdb));
        let (trailer, output) = (&mut trailer, &mut *output);
        let run = stages.run(
            |jobs, stop| Ok((read_frames(input, header, source, jobs, stop)?, ())),
            || {
                let mut inflater = Inflater::new();
                let mut scratch = Vec::with_capacity(format::max_frame_bytes(frame_size));
                move |index, frame| {
                    open_frame(&mut inflater, keys, header, index, frame, &mut scratch)
                }
            },
            // `move`, so that dropping it drops the sender and ends the checker.
            move |plain: Plain| {
                let bytes = &plain.buf[plain.range.clone()];
                match plain.kind {
                    FrameKind::Final => *trailer = Some(Trailer::from_bytes(bytes)?),
                    FrameKind::Data { .. } => output.write_all(bytes).map_err(write_rdb_error)?,
                }
                // It only ends once this sender is dropped.
                let _ = to_check.send(plain);
                Ok(0)
            },
        );
        // `run` has dropped the sender, so the checker is ending.
        let checked = join(checker);
        run?;
        Ok(checked)
    })?;
    let Checked {
        hasher,
        raw_size,
        rdb,
    } = checked;

    let Some(trailer) = trailer else {
        return Err(Error::integrity("backup is truncated"));
    };
    let raw_sha256: [u8; 32] = hasher.finalize().into();
    if trailer.raw_size != raw_size || trailer.raw_sha256 != raw_sha256 {
        return Err(Error::integrity(format!(
            "backup content does not match its trailer ({raw_size} bytes with SHA-256 {}, \
             trailer says {} bytes with SHA-256 {}): tampered or corrupt backup",
            hex(&raw_sha256),
            trailer.raw_size,
            hex(&trailer.raw_sha256)
        )));
    }
    let info = rdb.map(RdbCheck::finish).transpose()?;
    output.flush().map_err(write_rdb_error)?;
    Ok((raw_size, hex(&raw_sha256), info))
}

/// What the decode checker saw of the plain RDB.
struct Checked {
    hasher: Sha256,
    raw_size: u64,
    rdb: Option<RdbCheck>,
}

/// Hashes (and checks, if asked) the plain RDB frames in stream order, then
/// gives their buffers back to the ring.
fn check_plain(frames: Receiver<Plain>, sink: Sink, mut rdb: Option<RdbCheck>) -> Checked {
    let mut hasher = Sha256::new();
    let mut raw_size = 0u64;
    for plain in frames {
        if let FrameKind::Data { .. } = plain.kind {
            let bytes = &plain.buf[plain.range.clone()];
            hasher.update(bytes);
            if let Some(check) = rdb.as_mut() {
                check.update(bytes);
            }
            raw_size += bytes.len() as u64;
        }
        sink.give(plain.buf);
    }
    Checked {
        hasher,
        raw_size,
        rdb,
    }
}

/// What the encode reader saw.
struct ReadTotals {
    frames: u64,
    raw_size: u64,
    raw_sha256: [u8; 32],
}

/// Cuts the input into frame-size chunks and hashes it on the way: hashing
/// here, in stream order, is what keeps the workers free to finish in any
/// order.
fn read_chunks(
    input: &mut (dyn Read + Send),
    source: Source,
    jobs: Sender<Job>,
    frame_size: usize,
    stop: &AtomicBool,
) -> Result<ReadTotals> {
    let mut hasher = Sha256::new();
    let (mut frames, mut raw_size) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let Some(mut buf) = source.take() else { break };
        buf.resize(frame_size, 0);
        let n = fill(input, &mut buf).map_err(read_rdb_error)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        hasher.update(&buf);
        raw_size += n as u64;
        if jobs.send((frames, buf)).is_err() {
            break;
        }
        frames += 1;
        // A short chunk means end of input; reading on could block a pipe or
        // a terminal for nothing.
        if n < frame_size {
            break;
        }
    }
    Ok(ReadTotals {
        frames,
        raw_size,
        raw_sha256: hasher.finalize().into(),
    })
}

/// Reads `buf.len()` bytes unless the input ends first; returns how many.
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Compresses (if worthwhile) and seals one chunk, reusing the chunk's buffer
/// for the frame. Buffers are swapped, never allocated, so the number of
/// buffers in the pipeline stays fixed.
fn seal_chunk(
    deflater: Option<&mut Deflater>,
    keys: &BackupKeys,
    index: u64,
    mut chunk: Vec<u8>,
    payload: &mut Vec<u8>,
) -> Result<Vec<u8>> {
    let kind = match deflater {
        Some(d) => {
            if d.deflate(&chunk, payload)? {
                FrameKind::Data { stored: false }
            } else {
                std::mem::swap(payload, &mut chunk);
                FrameKind::Data { stored: true }
            }
        }
        None => {
            std::mem::swap(payload, &mut chunk);
            FrameKind::Data { stored: false }
        }
    };
    format::seal_frame(keys, index, kind, payload, &mut chunk);
    Ok(chunk)
}

/// Reads frames up to and including the final one, then makes sure nothing
/// follows. Returns how many frames it read.
fn read_frames(
    input: &mut (dyn Read + Send),
    header: &Header,
    source: Source,
    jobs: Sender<Job>,
    stop: &AtomicBool,
) -> Result<u64> {
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut buf) = source.take() else { break };
        let kind = format::read_frame(input, header, &mut buf)?;
        if jobs.send((index, buf)).is_err() {
            break;
        }
        index += 1;
        if kind == FrameKind::Final {
            format::expect_end(input)?;
            break;
        }
    }
    Ok(index)
}

/// A decrypted frame: its plaintext is `buf[range]`.
struct Plain {
    kind: FrameKind,
    buf: Vec<u8>,
    range: Range<usize>,
}

/// Authenticates, decrypts and (if needed) inflates one frame, in that order.
fn open_frame(
    inflater: &mut Inflater,
    keys: &BackupKeys,
    header: &Header,
    index: u64,
    mut buf: Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<Plain> {
    let frame_size = header.frame_size as usize;
    let (kind, range) = format::open_frame(keys, index, &mut buf)?;
    match kind {
        FrameKind::Data { stored: false } if header.compression == Compression::Deflate => {
            inflater
                .inflate(&buf[range], scratch, frame_size)
                .map_err(|e| e.context(format!("frame {index}")))?;
            std::mem::swap(scratch, &mut buf);
            let len = buf.len();
            // No writer makes an empty data frame; the spec forbids one.
            if len == 0 {
                return Err(Error::integrity(format!(
                    "frame {index} inflates to nothing: tampered or corrupt backup"
                )));
            }
            Ok(Plain {
                kind,
                buf,
                range: 0..len,
            })
        }
        FrameKind::Data { .. } if range.len() > frame_size => Err(Error::integrity(format!(
            "frame {index} holds {} bytes, more than the frame size {frame_size}",
            range.len()
        ))),
        _ => Ok(Plain { kind, buf, range }),
    }
}

/// The threads both directions share: a reader numbers frames and hands
/// them out, `workers` threads turn each into a result, and the caller's
/// thread takes the results in frame order.
struct Stages {
    workers: usize,
    /// Buffers in flight, and so the most frames any channel holds.
    slots: usize,
}

impl Stages {
    fn new(workers: usize) -> Stages {
        let workers = workers.clamp(1, MAX_WORKERS);
        Stages {
            workers,
            slots: workers * SLOTS_PER_WORKER + EXTRA_SLOTS,
        }
    }

    fn ring(&self, buffer_size: usize) -> (Source, Sink) {
        ring(self.slots, buffer_size)
    }

    /// Runs `read` on a thread of its own and `make_worker()` on each worker
    /// thread, and gives their results to `write` in frame order. `read`
    /// returns how many frames it sent with what else it learned; `write`,
    /// how many bytes it wrote. `write` is dropped before the reader is
    /// joined, so whatever it owns that a blocked reader waits on (the ring's
    /// sink, or the channel to whoever holds it) wakes the reader when the
    /// writer stops early.
    fn run<R, T, W>(
        &self,
        read: impl FnOnce(Sender<Job>, &AtomicBool) -> Result<(u64, R)> + Send,
        make_worker: impl Fn() -> W + Sync,
        mut write: impl FnMut(T) -> Result<u64>,
    ) -> Result<(R, Written)>
    where
        R: Send,
        T: Send,
        W: FnMut(u64, Vec<u8>) -> Result<T>,
    {
        let (job_tx, job_rx) = queue::bounded::<Job>(self.slots);
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = queue::unbounded::<Done<T>>();
        let stop = AtomicBool::new(false);
        let (stop, jobs, make_worker) = (&stop, &job_rx, &make_worker);
        thread::scope(|s| {
            let reader = s.spawn(move || read(job_tx, stop));
            for _ in 0..self.workers {
                let done = done_tx.clone();
                s.spawn(move || {
                    let mut work = make_worker();
                    while let Some((index, input)) = next_job(jobs) {
                        if stop.load(Ordering::Relaxed)
                            || done.send((index, work(index, input))).is_err()
                        {
                            return;
                        }
                    }
                });
            }
            // Only the workers may hold this, or the loop below would never end.
            drop(done_tx);
            let written = in_order(done_rx, &mut write);
            if written.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            drop(write);
            let written = written?;
            let (frames, read) = join(reader)?;
            if written.frames != frames {
                return Err(lost_frame(written.frames));
            }
            Ok((read, written))
        })
    }
}

fn next_job(jobs: &Mutex<Receiver<Job>>) -> Option<Job> {
    // A worker that panicked cannot leave the receiver inconsistent, so a
    // poisoned lock is still usable.
    let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
    jobs.recv()
}

/// How much the writer got through.
struct Written {
    frames: u64,
    bytes: u64,
}

/// Feeds worker results to `each` in frame order, holding early arrivals
/// aside (at most the ring size of them). Stops at the first error in stream
/// order, so the message is about the earliest bad frame.
fn in_order<T>(done: Receiver<Done<T>>, mut each: impl FnMut(T) -> Result<u64>) -> Result<Written> {
    let mut pending = BTreeMap::new();
    let mut written = Written {
        frames: 0,
        bytes: 0,
    };
    for (index, result) in done {
        pending.insert(index, result);
        while let Some(result) = pending.remove(&written.frames) {
            written.bytes += each(result?)?;
            written.frames += 1;
        }
    }
    Ok(written)
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn lost_frame(index: u64) -> Error {
    Error::other(format!(
        "frame {index} was lost between threads; this is a bug in redis-backup"
    ))
}

/// A failure of the reader or writer we were given. One that carries an
/// error of ours (a replication stream too slow, storage that failed: see
/// `storage::StorageIo`) keeps its kind; the caller's wrapper knows better
/// than the codec what its bytes are.
fn io_error(doing: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::from_io(e).unwrap_or_else(|e| Error::other(format!("{doing}: {e}")))
}

fn write_backup_error(e: std::io::Error) -> Error {
    io_error("writing the backup")(e)
}

fn read_rdb_error(e: std::io::Error) -> Error {
    io_error("reading the RDB")(e)
}

fn write_rdb_error(e: std::io::Error) -> Error {
    io_error("writing the RDB")(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::format::{FRAME_PREFIX_LEN, MIN_FRAME_SIZE};
    use crate::codec::rdb::crc64;
    use crate::storage::StorageIo;
    use std::io;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const FS: usize = MIN_FRAME_SIZE;

    fn key() -> MasterKey {
        MasterKey::from_bytes([0x11; 32])
    }

    fn opts(level: u8, workers: usize) -> EncodeOptions {
        EncodeOptions {
            identity: Identity::for_tests(),
            level,
            frame_size: FS,
            workers,
            salt: None,
        }
    }

    /// The options a backup uses by default.
    fn default_opts() -> EncodeOptions {
        EncodeOptions {
            frame_size: format::DEFAULT_FRAME_SIZE,
            ..opts(1, crate::settings::default_threads())
        }
    }

    /// For decodes that expect any backup.
    fn anything(_: &Header) -> Result<()> {
        Ok(())
    }

    /// Bytes before the first frame of the backups these tests make.
    fn header_total_len() -> usize {
        let (backup, _) = encode_vec(b"", &opts(0, 1));
        backup.len() - (FRAME_PREFIX_LEN + format::TRAILER_LEN + crate::codec::crypto::TAG_LEN)
    }

    /// Alternating runs of compressible text and noise, deterministic.
    fn mixed(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let run = 1000 + (x % 30_000) as usize;
            if x.is_multiple_of(3) {
                out.extend((0..run).map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8 ^ (i as u8)
                }));
            } else {
                let word = format!("key:{:08}:value-{} ", x % 100_000, x % 7);
                out.extend(word.bytes().cycle().take(run));
            }
        }
        out.truncate(len);
        out
    }

    /// An RDB-shaped input of exactly `len` (>= 18) bytes.
    fn rdb_of_len(len: usize, seed: u64) -> Vec<u8> {
        let mut rdb = b"REDIS0011".to_vec();
        rdb.extend(mixed(len - 18, seed));
        rdb.push(0xff);
        let crc = crc64(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    fn encode_vec(data: &[u8], opts: &EncodeOptions) -> (Vec<u8>, EncodeSummary) {
        let mut out = Vec::new();
        let summary = encode(&mut &data[..], &mut out, &key(), opts).unwrap();
        (out, summary)
    }

    fn decode_raw(backup: &[u8], key: &MasterKey, workers: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut input = backup;
        let (header, keys) = format::read_header(&mut input, key)?;
        decode_frames(&mut input, &mut out, &header, &keys, workers, None)?;
        Ok(out)
    }

    fn decode_err(backup: &[u8]) -> Error {
        let mut out = Vec::new();
        decode(&mut &backup[..], &mut out, &key(), 2, &anything).unwrap_err()
    }

    /// Offsets of the frames in a backup: (start, len of the whole frame).
    fn frames(backup: &[u8]) -> Vec<(usize, usize)> {
        let mut at = header_total_len();
        let mut out = Vec::new();
        while at < backup.len() {
            let len = u32::from_le_bytes(backup[at + 1..at + 5].try_into().unwrap()) as usize;
            let whole = FRAME_PREFIX_LEN + len + 32;
            out.push((at, whole));
            at += whole;
        }
        out
    }

    /// Runs `f` on a thread and fails the test if it does not finish in time,
    /// so a deadlock shows up as a failure rather than a stuck test run.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(secs))
            .expect("pipeline did not finish: hang or deadlock")
    }

    #[test]
    fn round_trips_sizes_around_the_frame_size() {
        for len in [0, 1, 17, FS - 1, FS, FS + 1, 3 * FS, 5 * FS + 77] {
            for level in [0, 1] {
                let data = mixed(len, len as u64);
                let (backup, summary) = encode_vec(&data, &opts(level, 3));
                assert_eq!(summary.raw_size, len as u64);
                assert_eq!(summary.stored_size, backup.len() as u64);
                assert_eq!(summary.key_id, key().key_id());
                let expected = hex(&Sha256::digest(&data));
                assert_eq!(summary.raw_sha256, expected);
                assert_eq!(decode_raw(&backup, &key(), 2).unwrap(), data, "len {len}");
                assert_eq!(frames(&backup).len(), len.div_ceil(FS) + 1);
            }
        }
    }

    #[test]
    fn decode_checks_the_rdb_and_reports_it() {
        for len in [18, FS - 1, FS, FS + 1, 4 * FS] {
            let data = rdb_of_len(len, 3);
            let (backup, enc) = encode_vec(&data, &opts(1, 2));
            let mut out = Vec::new();
            let dec = decode(&mut &backup[..], &mut out, &key(), 3, &anything).unwrap();
            assert_eq!(out, data);
            assert_eq!(dec.raw_size, len as u64);
            assert_eq!(dec.raw_sha256, enc.raw_sha256);
            assert_eq!(dec.rdb.version, 11);
            assert!(dec.rdb.checksum.is_some());
        }
        // Authentic backups of something that is not an RDB still fail.
        for data in [&b""[..], b"x", b"REDIS0011 but no trailer at all"] {
            let (backup, _) = encode_vec(data, &opts(1, 1));
            assert_eq!(decode_err(&backup).exit_code(), 5);
        }
        let mut bad_crc = rdb_of_len(FS * 2, 4);
        bad_crc[100] ^= 1;
        let (backup, _) = encode_vec(&bad_crc, &opts(1, 1));
        assert!(decode_err(&backup)
            .message()
            .contains("RDB checksum mismatch"));
    }

    #[test]
    fn every_level_round_trips_and_compresses() {
        let data = mixed(3 * FS + 1234, 99);
        let mut sizes = Vec::new();
        for level in 0..=9 {
            let (backup, summary) = encode_vec(&data, &opts(level, 2));
            assert_eq!(backup[10], u8::from(level > 0));
            assert_eq!(backup[11], level);
            assert_eq!(
                decode_raw(&backup, &key(), 1).unwrap(),
                data,
                "level {level}"
            );
            sizes.push(summary.stored_size);
        }
        assert!(sizes[1] < sizes[0] && sizes[9] <= sizes[1], "{sizes:?}");
    }

    #[test]
    fn several_mib_at_the_default_frame_size() {
        let data = rdb_of_len(7 * 1024 * 1024 + 4321, 7);
        let mut backup = Vec::new();
        let enc = encode(&mut &data[..], &mut backup, &key(), &default_opts()).unwrap();
        assert!(enc.stored_size < enc.raw_size);
        let mut out = Vec::new();
        let dec = decode(&mut &backup[..], &mut out, &key(), 4, &anything).unwrap();
        assert_eq!(out, data);
        assert_eq!(dec.raw_sha256, enc.raw_sha256);
    }

    #[test]
    fn stored_size_matches_the_worked_example_in_format_md() {
        let data = vec![0u8; 2 * 1024 * 1024 + 512 * 1024];
        let o = EncodeOptions {
            level: 0,
            ..default_opts()
        };
        let (backup, summary) = encode_vec(&data, &o);
        // The example's identity is the one these tests use: 90 bytes.
        assert_eq!(header_total_len(), 60 + 90 + 32);
        assert_eq!(summary.stored_size, 2_621_810);
        assert_eq!(backup.len(), 2_621_810);
    }

    #[test]
    fn incompressible_frames_are_stored() {
        let noise = crate::codec::compress::tests::noise(10 * FS);
        let (backup, _) = encode_vec(&noise, &opts(9, 2));
        let flags: Vec<u8> = frames(&backup).iter().map(|&(at, _)| backup[at]).collect();
        assert!(flags.contains(&0b10), "{flags:?}");
        assert_eq!(decode_raw(&backup, &key(), 2).unwrap(), noise);
    }

    #[test]
    fn same_input_twice_gives_different_backups() {
        let data = mixed(1000, 1);
        let (a, _) = encode_vec(&data, &opts(1, 1));
        let (b, _) = encode_vec(&data, &opts(1, 1));
        assert_ne!(a, b, "the salt must be fresh per backup");
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for o in [
            EncodeOptions {
                level: 10,
                ..opts(1, 1)
            },
            EncodeOptions {
                frame_size: FS - 1,
                ..opts(1, 1)
            },
            EncodeOptions {
                frame_size: 16 * 1024 * 1024 + 1,
                ..opts(1, 1)
            },
        ] {
            let err = encode(&mut &b""[..], &mut Vec::new(), &key(), &o).unwrap_err();
            assert_eq!(err.exit_code(), 2);
        }
    }

    // ---- attacks: every one must be an integrity error (exit 5) ----

    fn sample_backup() -> Vec<u8> {
        encode_vec(&rdb_of_len(3 * FS + 500, 42), &opts(1, 2)).0
    }

    fn assert_integrity(backup: &[u8], what: &str) -> Error {
        let err = decode_err(backup);
        assert_eq!(err.exit_code(), 5, "{what}: {err}");
        err
    }

    #[test]
    fn wrong_key_is_refused_with_both_key_ids() {
        let backup = sample_backup();
        let other = MasterKey::from_bytes([0x22; 32]);
        let err = decode_raw(&backup, &other, 2).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().ends_with(": wrong key"), "{err}");
        assert!(err.message().contains(&other.key_id()), "{err}");
    }

    #[test]
    fn flipped_bits_anywhere_are_refused() {
        let backup = sample_backup();
        let fr = frames(&backup);
        assert_eq!(fr.len(), 5);
        let mut spots = vec![0, 9, 10, 12, 20, 50, 59, 60, 91];
        for &(at, len) in &fr {
            // flags, length, first and last ciphertext byte, tag.
            spots.extend([
                at,
                at + 1,
                at + 4,
                at + 5,
                at + len - 33,
                at + len - 32,
                at + len - 1,
            ]);
        }
        for at in spots {
            let mut bad = backup.clone();
            bad[at] ^= 0x01;
            assert_integrity(&bad, &format!("bit flip at {at}"));
        }
    }

    #[test]
    fn tampered_frame_is_named() {
        let backup = sample_backup();
        let (at, _) = frames(&backup)[2];
        let mut bad = backup.clone();
        bad[at + 100] ^= 0x80;
        let err = assert_integrity(&bad, "ciphertext");
        assert_eq!(
            err.message(),
            "frame 2 failed authentication: tampered, reordered or truncated backup"
        );
    }

    #[test]
    fn swapped_and_dropped_frames_are_refused() {
        let backup = sample_backup();
        let fr = frames(&backup);
        let piece = |i: usize| &backup[fr[i].0..fr[i].0 + fr[i].1];
        let head = &backup[..header_total_len()];

        let swapped = [head, piece(1), piece(0), piece(2), piece(3), piece(4)].concat();
        assert!(assert_integrity(&swapped, "swap")
            .message()
            .starts_with("frame 0 "));
        let dropped = [head, piece(0), piece(2), piece(3), piece(4)].concat();
        assert!(assert_integrity(&dropped, "drop")
            .message()
            .starts_with("frame 1 "));
        let final_early = [head, piece(0), piece(4)].concat();
        assert_integrity(&final_early, "final frame moved up");
        let repeated = [head, piece(0), piece(0), piece(1)].concat();
        assert_integrity(&repeated, "repeat");

        // A frame spliced in from another backup made with the same key.
        let other = sample_backup();
        let ofr = frames(&other);
        let spliced = [
            head,
            piece(0),
            &other[ofr[1].0..ofr[1].0 + ofr[1].1],
            piece(2),
            piece(3),
            piece(4),
        ]
        .concat();
        assert_integrity(&spliced, "splice");
    }

    #[test]
    fn truncation_anywhere_is_refused() {
        let backup = sample_backup();
        let fr = frames(&backup);
        let before_final = fr[fr.len() - 1].0;
        let mut cuts = vec![0, 1, 59, 91, 92, 93, 97, before_final, before_final + 5];
        cuts.extend(fr.iter().map(|&(at, len)| at + len / 2));
        cuts.push(backup.len() - 1);
        for cut in cuts {
            let err = assert_integrity(&backup[..cut], &format!("cut at {cut}"));
            if cut >= header_total_len() {
                assert_eq!(err.message(), "backup is truncated", "cut at {cut}");
            }
        }
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut backup = sample_backup();
        backup.push(0);
        let err = assert_integrity(&backup, "trailing byte");
        assert!(err.message().contains("after the final frame"), "{err}");
    }

    #[test]
    fn a_4_gib_length_fails_fast() {
        let mut backup = sample_backup();
        let (at, _) = frames(&backup)[1];
        backup[at + 1..at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let started = Instant::now();
        let err = assert_integrity(&backup, "4 GiB length");
        assert!(err.message().contains("claims 4294967295 bytes"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn header_attacks_are_refused() {
        let backup = sample_backup();
        let mut version = backup.clone();
        version[8] = 3;
        assert!(assert_integrity(&version, "version")
            .message()
            .contains("version 3"));
        let mut frame_size = backup.clone();
        frame_size[14] = 0xff;
        assert_integrity(&frame_size, "frame size");
        let mut magic = backup.clone();
        magic[0] = b'X';
        assert_integrity(&magic, "magic");
    }

    // ---- golden vectors: backups in the field keep decoding ----

    const GOLDEN_SHA256: &str = "ab144c11db50f29cef709cfec88e81e7d822b314caf7b43873478ab02b432fa4";

    fn golden(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn golden_key() -> MasterKey {
        let hex = String::from_utf8(golden("master.key")).unwrap();
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        MasterKey::from_bytes(bytes.try_into().unwrap())
    }

    fn golden_identity() -> Identity {
        Identity {
            backup_id: crate::id::BackupId::parse("20261130T090000Z-a5a5a5a5").unwrap(),
            instance: "golden".into(),
            created_at: "2026-11-30T09:00:00.250000Z".into(),
            server_name: "redis".into(),
            server_version: "7.0.15".into(),
            source: "snapshot".into(),
        }
    }

    #[test]
    fn format_1_golden_vector_decodes() {
        let backup = golden("format1/20261130T080000Z-5a5a5a5a.rbk");
        let mut rdb = Vec::new();
        let summary = decode(&mut &backup[..], &mut rdb, &golden_key(), 2, &anything).unwrap();
        assert_eq!(summary.raw_sha256, GOLDEN_SHA256);
        assert_eq!((summary.raw_size, summary.rdb.version), (94565, 10));
        assert_eq!((summary.header.version, summary.header.identity), (1, None));
    }

    #[test]
    fn format_2_golden_vector_decodes_and_is_what_we_write() {
        let backup = golden("format2/20261130T090000Z-a5a5a5a5.rbk");
        let mut rdb = Vec::new();
        let summary = decode(&mut &backup[..], &mut rdb, &golden_key(), 2, &anything).unwrap();
        assert_eq!(summary.raw_sha256, GOLDEN_SHA256);
        assert_eq!(summary.header.version, 2);
        assert_eq!(summary.header.identity, Some(golden_identity()));
        let o = EncodeOptions {
            identity: golden_identity(),
            level: 1,
            frame_size: 65536,
            workers: 2,
            salt: Some([0x5a; 32]),
        };
        let mut again = Vec::new();
        encode(&mut &rdb[..], &mut again, &golden_key(), &o).unwrap();
        assert!(
            again == backup,
            "the encoder no longer writes the golden bytes"
        );
    }

    // ---- failures of the surroundings ----

    /// Yields `good` bytes of data, then fails.
    struct FailingReader {
        good: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.good).min(10_000);
            buf[..n].fill(b'a');
            self.good -= n;
            Ok(n)
        }
    }

    /// Accepts `room` bytes, then fails.
    struct FailingWriter {
        room: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("no space left"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn encode_reader_failure_is_reported_without_hanging() {
        for good in [0, 5, FS, 7 * FS + 3] {
            let err = within(60, move || {
                let mut input = FailingReader { good };
                encode(&mut input, &mut io::sink(), &key(), &opts(1, 3)).unwrap_err()
            });
            assert_eq!(err.exit_code(), 1, "{err}");
            assert!(err.message().starts_with("reading the RDB: "), "{err}");
        }
    }

    #[test]
    fn a_reader_failing_with_an_error_of_ours_keeps_its_kind() {
        struct TooLong;
        impl Read for TooLong {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(Error::redis("the RDB is longer than max_rdb_size").into())
            }
        }
        let err = encode(&mut TooLong, &mut io::sink(), &key(), &opts(1, 2)).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert_eq!(err.message(), "the RDB is longer than max_rdb_size");
    }

    #[test]
    fn encode_writer_failure_stops_an_endless_input() {
        for room in [0, 10, 100, 3 * FS] {
            let err = within(60, move || {
                // io::repeat never ends: only a working stop can finish this.
                let mut input = io::repeat(7);
                let mut output = FailingWriter { room };
                encode(&mut input, &mut output, &key(), &opts(1, 3)).unwrap_err()
            });
            assert_eq!(err.exit_code(), 1, "{err}");
            assert!(err.message().starts_with("writing the backup: "), "{err}");
        }
    }

    #[test]
    fn the_caller_says_what_kind_of_failure_its_io_is() {
        // Storage marks its objects' failures as storage errors; the codec
        // passes the kind on, for writes while encoding and reads decoding.
        let err = within(60, || {
            let mut output = StorageIo(FailingWriter { room: 100 });
            encode(&mut io::repeat(7), &mut output, &key(), &opts(1, 2)).unwrap_err()
        });
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(err.message().starts_with("writing the backup: "), "{err}");
        let backup = sample_backup();
        let err = within(60, move || {
            let mut input = StorageIo((&backup[..100]).chain(FailingReader { good: 0 }));
            decode(&mut input, &mut Vec::new(), &key(), 2, &anything).unwrap_err()
        });
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(err.message().starts_with("reading the backup: "), "{err}");
    }

    #[test]
    fn decode_reader_failure_is_reported_without_hanging() {
        let backup = sample_backup();
        for good in [10, 100, backup.len() / 2, backup.len() - 1] {
            let backup = backup.clone();
            let err = within(60, move || {
                let mut input = (&backup[..good]).chain(FailingReader { good: 0 });
                decode(&mut input, &mut Vec::new(), &key(), 2, &anything).unwrap_err()
            });
            assert_eq!(err.exit_code(), 1, "{err}");
            assert!(err.message().starts_with("reading the backup: "), "{err}");
        }
    }

    #[test]
    fn decode_writer_failure_is_reported_without_hanging() {
        let backup = encode_vec(&rdb_of_len(40 * FS, 8), &opts(1, 2)).0;
        for room in [0, 1000, 5 * FS] {
            let backup = backup.clone();
            let err = within(60, move || {
                let mut output = FailingWriter { room };
                decode(&mut &backup[..], &mut output, &key(), 3, &anything).unwrap_err()
            });
            assert_eq!(err.exit_code(), 1, "{err}");
            assert!(err.message().starts_with("writing the RDB: "), "{err}");
        }
    }

    #[test]
    fn memory_stays_bounded_by_the_ring() {
        use std::sync::atomic::AtomicUsize;
        // A fast, long input and a slow writer: the reader must wait for ring
        // buffers instead of queueing frames, so at every write it is at most
        // the ring size ahead of the writer.
        struct Counting<'a>(&'a AtomicUsize);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.load(Ordering::SeqCst) >= 200 * FS {
                    return Ok(0);
                }
                buf.fill(1);
                self.0.fetch_add(buf.len(), Ordering::SeqCst);
                Ok(buf.len())
            }
        }
        struct Slow<'a> {
            consumed: &'a AtomicUsize,
            writes: usize,
            max_lead: usize,
        }
        impl Write for Slow<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                thread::sleep(Duration::from_millis(1));
                // The first write is the header; after it, one write per frame.
                let frames_written = self.writes.saturating_sub(1);
                let frames_read = self.consumed.load(Ordering::SeqCst).div_ceil(FS);
                self.max_lead = self
                    .max_lead
                    .max(frames_read.saturating_sub(frames_written));
                self.writes += 1;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let consumed = AtomicUsize::new(0);
        let mut output = Slow {
            consumed: &consumed,
            writes: 0,
            max_lead: 0,
        };
        let workers = 2;
        let summary = encode(
            &mut Counting(&consumed),
            &mut output,
            &key(),
            &opts(0, workers),
        )
        .unwrap();
        assert_eq!(summary.raw_size, 200 * FS as u64);
        let slots = workers * SLOTS_PER_WORKER + EXTRA_SLOTS;
        assert!(
            output.max_lead <= slots,
            "reader ran {} frames ahead",
            output.max_lead
        );
        assert!(
            output.max_lead >= 2,
            "the pipeline should overlap reading and writing"
        );
    }

    /// Throughput on a real dump stretched to about 200 MB: run with
    /// `REDIS_BACKUP_BENCH_RDB=dump.rdb cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let Ok(path) = std::env::var("REDIS_BACKUP_BENCH_RDB") else {
            return;
        };
        let dump = std::fs::read(path).unwrap();
        // Repeat the body (the RDB check only reads header and trailer).
        let body = &dump[9..dump.len() - 9];
        let mut data = dump[..9].to_vec();
        while data.len() < 200_000_000 {
            data.extend_from_slice(body);
        }
        data.push(0xff);
        let crc = crc64(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        let mb = data.len() as f64 / 1e6;
        for level in [0, 1, 6] {
            let o = EncodeOptions {
                level,
                ..default_opts()
            };
            // Pre-touched, so page faults of a fresh buffer are not counted.
            let mut backup = vec![0u8; data.len() + 1024];
            backup.clear();
            let t = Instant::now();
            let enc = encode(&mut &data[..], &mut backup, &key(), &o).unwrap();
            let e = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let dec = decode(
                &mut &backup[..],
                &mut io::sink(),
                &key(),
                o.workers,
                &anything,
            )
            .unwrap();
            let d = t.elapsed().as_secs_f64();
            assert_eq!(dec.raw_sha256, enc.raw_sha256);
            println!(
                "level {level}, {} workers: {mb:.0} MB -> {:.0} MB; encode {:.0} MB/s, decode {:.0} MB/s",
                o.workers,
                enc.stored_size as f64 / 1e6,
                mb / e,
                mb / d
            );
        }
    }

    #[test]
    fn the_same_salt_gives_the_same_bytes() {
        let data = crate::codec::compress::tests::noise(3 * FS + 17);
        let salt = fresh_salt().unwrap();
        let with_salt = EncodeOptions {
            salt: Some(salt),
            ..opts(1, 2)
        };
        let (first, _) = encode_vec(&data, &with_salt);
        let (second, _) = encode_vec(
            &data,
            &EncodeOptions {
                workers: 1,
                ..with_salt
            },
        );
        assert_eq!(first, second, "a resumed upload relies on this");
        let (fresh, _) = encode_vec(&data, &opts(1, 2));
        assert_ne!(first, fresh);
    }

    #[test]
    fn a_repeated_salt_under_two_ids_shares_no_keystream() {
        // A cloned image with a poor RNG at first boot could draw one salt
        // twice. Two backups of the same data with that salt must still
        // differ in every frame, and no frame of one may open in the other.
        let data = vec![0u8; 3 * FS];
        let salt = Some([0x42; 32]);
        let with_id = |id: &str| EncodeOptions {
            identity: Identity {
                backup_id: crate::id::BackupId::parse(id).unwrap(),
                ..opts(0, 2).identity
            },
            salt,
            ..opts(0, 2)
        };
        let (one, _) = encode_vec(&data, &with_id("20261130T080000Z-00000001"));
        let (two, _) = encode_vec(&data, &with_id("20261130T080000Z-00000002"));
        let (f1, f2) = (frames(&one), frames(&two));
        assert_eq!(f1.len(), f2.len());
        for ((a, len), (b, _)) in f1.iter().zip(&f2) {
            // Zeros in, so the ciphertext is the keystream itself.
            let body = FRAME_PREFIX_LEN..len - crate::codec::crypto::TAG_LEN;
            let (ka, kb) = (
                &one[a + body.start..a + body.end],
                &two[b + body.start..b + body.end],
            );
            assert_ne!(ka, kb, "keystream repeated across backups");
        }
        let mut spliced = one.clone();
        let ((a, len), (b, _)) = (f1[1], f2[1]);
        spliced[a..a + len].copy_from_slice(&two[b..b + len]);
        assert!(decode_err(&spliced)
            .message()
            .contains("frame 1 failed authentication"));
    }

    // ---- properties: a damaged backup is exit 5, never wrong data ----

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;

        /// Each case encodes and decodes whole backups on threads: few cases,
        /// and no regression files written into the source tree.
        use crate::testing::proptest_config as config;

        /// What an attacker or a bad disk does to a backup.
        #[derive(Debug, Clone)]
        enum Damage {
            /// Flip bit `bit` of the byte at each index.
            Flip(Vec<(Index, u8)>),
            Truncate(Index),
            /// Replace one of our frames by one of the other backup's.
            Splice(Index, Index),
            Swap(Index, Index),
            Drop(Index),
            Repeat(Index),
            Append(Vec<u8>),
            Insert(Index, Vec<u8>),
            /// Rewrite the length field of a frame.
            Relength(Index, u32),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            let index = any::<Index>;
            prop_oneof![
                3 => prop::collection::vec((index(), 0u8..8), 1..4).prop_map(Damage::Flip),
                2 => index().prop_map(Damage::Truncate),
                2 => (index(), index()).prop_map(|(a, b)| Damage::Splice(a, b)),
                1 => (index(), index()).prop_map(|(a, b)| Damage::Swap(a, b)),
                1 => index().prop_map(Damage::Drop),
                1 => index().prop_map(Damage::Repeat),
                1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
                1 => (index(), prop::collection::vec(any::<u8>(), 1..64))
                    .prop_map(|(at, b)| Damage::Insert(at, b)),
                1 => (index(), prop_oneof![any::<u32>(), 0u32..100]).prop_map(|(at, n)| Damage::Relength(at, n)),
            ]
        }

        fn apply(damage: &Damage, ours: &[u8], theirs: &[u8]) -> Vec<u8> {
            let fr = frames(ours);
            let piece = |b: &[u8], (at, len): (usize, usize)| b[at..at + len].to_vec();
            // The header, then every frame as its own piece.
            let mut pieces: Vec<Vec<u8>> = vec![ours[..header_total_len()].to_vec()];
            pieces.extend(fr.iter().map(|&f| piece(ours, f)));
            let frame = |i: &Index| 1 + i.index(fr.len());
            match damage {
                Damage::Flip(spots) => {
                    let mut bad = ours.to_vec();
                    for (at, bit) in spots {
                        bad[at.index(ours.len())] ^= 1 << bit;
                    }
                    return bad;
                }
                Damage::Truncate(at) => return ours[..at.index(ours.len())].to_vec(),
                Damage::Splice(mine, other) => {
                    let ofr = frames(theirs);
                    pieces[frame(mine)] = piece(theirs, ofr[other.index(ofr.len())]);
                }
                Damage::Swap(a, b) => pieces.swap(frame(a), frame(b)),
                Damage::Drop(at) => {
                    pieces.remove(frame(at));
                }
                Damage::Repeat(at) => {
                    let at = frame(at);
                    pieces.insert(at, pieces[at].clone());
                }
                Damage::Append(bytes) => pieces.push(bytes.clone()),
                Damage::Insert(at, bytes) => {
                    let mut bad = ours.to_vec();
                    let at = at.index(ours.len() + 1);
                    bad.splice(at..at, bytes.iter().copied());
                    return bad;
                }
                Damage::Relength(at, len) => {
                    let at = frame(at);
                    pieces[at][1..5].copy_from_slice(&len.to_le_bytes());
                }
            }
            pieces.concat()
        }

        /// Decodes, with the RDB check when the data is an RDB, on a few workers.
        fn decode_any(backup: &[u8], rdb: bool, workers: usize) -> Result<Vec<u8>> {
            if !rdb {
                return decode_raw(backup, &key(), workers);
            }
            let mut out = Vec::new();
            decode(&mut &backup[..], &mut out, &key(), workers, &anything)?;
            Ok(out)
        }

        /// Inputs that make 0 to 4 frames of a few kinds: compressible,
        /// noise (stored frames), and RDB-shaped.
        fn input() -> impl Strategy<Value = (Vec<u8>, bool)> {
            (0usize..3 * FS + 100, any::<u64>(), any::<bool>()).prop_map(|(len, seed, rdb)| {
                if rdb {
                    (rdb_of_len(len.max(18), seed), true)
                } else {
                    (mixed(len, seed), false)
                }
            })
        }

        proptest! {
            #![proptest_config(config(128))]

            #[test]
            fn damaged_backups_are_integrity_errors_or_exact(
                (data, rdb) in input(),
                level in prop::sample::select(&[0u8, 1, 6][..]),
                same_data in any::<bool>(),
                workers in 1usize..4,
                damage in damage(),
            ) {
                let (ours, _) = encode_vec(&data, &opts(level, 2));
                // Another backup with the same key: of the same data (so the
                // frames at each index carry the same plaintext), or not.
                let other_data = if same_data { data.clone() } else { mixed(data.len() + 1, 7) };
                let (theirs, _) = encode_vec(&other_data, &opts(level, 1));
                let bad = apply(&damage, &ours, &theirs);
                match decode_any(&bad, rdb, workers) {
                    Ok(out) => {
                        prop_assert_eq!(&bad, &ours, "a changed backup was accepted");
                        prop_assert!(out == data, "decoded to different data");
                    }
                    Err(e) => {
                        prop_assert_ne!(&bad, &ours, "an intact backup was refused: {}", e);
                        prop_assert_eq!(e.exit_code(), 5, "{:?}: {}", damage, e);
                    }
                }
            }

            #[test]
            fn arbitrary_bytes_are_integrity_errors(
                bytes in prop::collection::vec(any::<u8>(), 0..400),
                authentic_header in any::<bool>(),
                rdb in any::<bool>(),
            ) {
                // With a real header in front the frames themselves are parsed.
                let mut backup = Vec::new();
                if authentic_header {
                    let (sample, _) = encode_vec(b"", &opts(1, 1));
                    backup.extend_from_slice(&sample[..header_total_len()]);
                }
                backup.extend_from_slice(&bytes);
                let err = decode_any(&backup, rdb, 2).unwrap_err();
                prop_assert_eq!(err.exit_code(), 5, "{}", err);
            }
        }
    }
}
