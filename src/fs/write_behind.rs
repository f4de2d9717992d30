//! Write-behind for the long files we write (a backup object on local storage,
//! an exported RDB, a restore's staging file): every 16 MiB a flusher thread
//! fsyncs what is written so far and, unless redis-server is about to read the
//! file, drops it from the page cache. The disk works while the pipeline
//! decodes instead of all at the final fsync; the page cache we fill next to
//! Redis stays a few windows deep whatever the size of the file; and the pages
//! we free are the ones we reuse. On a guest whose hypervisor takes free memory
//! back, touching fresh pages costs about as much CPU as inflating into them.

use crate::fs::cache as page_cache;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

/// Bytes written between two flushes. The writer waits while the previous
/// flush runs, so at most two windows of the file are dirty at any time.
const WINDOW: u64 = 16 << 20;

/// What becomes of the pages a flush made clean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Drop them: nobody reads the file soon (a backup object, an export).
    Forget,
    /// Keep them: redis-server is about to load the file (a staged restore),
    /// and reading it back from disk would lengthen the outage.
    Keep,
}

pub struct WriteBehind {
    file: File,
    cache: Cache,
    written: u64,
    next_flush: u64,
    flusher: Option<(Arc<Flushes>, JoinHandle<()>)>,
    /// The flusher's error once the writer has seen it: every later write
    /// and the drain return it, so the file is never committed.
    failed: Option<io::Error>,
}

/// What the writer asked of the flusher and how far it got, under one lock.
#[derive(Default)]
struct Flushes {
    state: Mutex<FlushState>,
    changed: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// The length written when the last flush was asked for: all of it is
    /// clean once the fsync that follows returns, and can be dropped.
    asked_upto: u64,
    done_upto: u64,
    closed: bool,
    error: Option<io::Error>,
}

impl WriteBehind {
    pub fn new(file: File, cache: Cache) -> WriteBehind {
        WriteBehind {
            file,
            cache,
            written: 0,
            next_flush: WINDOW,
            flusher: None,
            failed: None,
        }
    }

    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Stop the flusher and return its error, if it had one. This must come
    /// before the final fsync: the kernel reports a failed writeback to one
    /// fsync of the open file only, and that may have been the flusher's.
    pub fn drain(&mut self) -> io::Result<()> {
        if let Some((flushes, thread)) = self.flusher.take() {
            flushes.lock().closed = true;
            flushes.changed.notify_all();
            // It cannot panic: nothing in it unwraps, and a panic aborts.
            let _ = thread.join();
            if let Some(e) = flushes.lock().error.take() {
                self.failed = Some(e);
            }
        }
        self.failed.as_ref().map_or(Ok(()), |e| Err(copy_of(e)))
    }

    /// Ask for a flush of everything written so far, once the previous one
    /// is done. A failure is kept for the next write: this write's bytes are
    /// already in the file, and `Write` callers take an error to mean none
    /// were.
    fn flush_behind(&mut self) {
        if self.flusher.is_none() {
            // Without a flusher (no descriptor or thread to spare) the final
            // fsync does all the work, as it would have anyway.
            self.flusher = self
                .file
                .try_clone()
                .and_then(|file| start_flusher(file, self.cache))
                .ok();
        }
        let Some((flushes, _)) = &self.flusher else {
            return;
        };
        let mut state = flushes.lock();
        // The writer waits for the disk rather than pile up dirty pages.
        while state.done_upto < state.asked_upto && state.error.is_none() {
            state = flushes.wait(state);
        }
        if let Some(e) = &state.error {
            self.failed = Some(copy_of(e));
            return;
        }
        state.asked_upto = self.written;
        flushes.changed.notify_all();
    }
}

/// The same error again, for every caller that must see it; never as
/// `Interrupted`, which `write_all` would retry for ever.
fn copy_of(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) if e.kind() != io::ErrorKind::Interrupted => {
            io::Error::from_raw_os_error(errno)
        }
        _ => io::Error::other("writing the file back to disk failed"),
    }
}

impl Flushes {
    fn lock(&self) -> MutexGuard<'_, FlushState> {
        // Nothing panics while holding it (and panics abort the process).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, FlushState>) -> MutexGuard<'a, FlushState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn start_flusher(file: File, cache: Cache) -> io::Result<(Arc<Flushes>, JoinHandle<()>)> {
    let flushes = Arc::new(Flushes::default());
    let shared = Arc::clone(&flushes);
    let thread = thread::Builder::new()
        .name("write-behind".into())
        .spawn(move || flush_until_closed(&file, cache, &shared))?;
    Ok((flushes, thread))
}

fn flush_until_closed(file: &File, cache: Cache, flushes: &Flushes) {
    loop {
        let mut state = flushes.lock();
        while state.done_upto == state.asked_upto && !state.closed {
            state = flushes.wait(state);
        }
        if state.done_upto == state.asked_upto {
            return;
        }
        let upto = state.asked_upto;
        drop(state);
        let synced = file.sync_data();
        if synced.is_ok() && cache == Cache::Forget {
            page_cache::forget(file, upto);
        }
        let mut state = flushes.lock();
        match synced {
            Ok(()) => state.done_upto = upto,
            Err(e) => state.error = Some(e),
        }
        flushes.changed.notify_all();
        if state.error.is_some() {
            return;
        }
    }
}

impl Drop for WriteBehind {
    /// An unfinished file (a failed write) still stops its flusher, so no
    /// thread outlives it holding the descriptor and its lock.
    fn drop(&mut self) {
        let _ = self.drain();
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(copy_of(e));
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written >= self.next_flush {
            self.next_flush = self.written + WINDOW;
            self.flush_behind();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};

    fn window_and_a_bit() -> Vec<u8> {
        (0..WINDOW + 4097).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn everything_written_across_windows_is_in_the_file() {
        let path = std::env::temp_dir().join(format!("rb-write-behind-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let mut out = WriteBehind::new(file, Cache::Forget);
        let data = window_and_a_bit();
        for _ in 0..3 {
            out.write_all(&data).unwrap();
        }
        assert!(out.flusher.is_some(), "three windows written, no flusher");
        out.drain().unwrap();
        out.get_ref().sync_all().unwrap();
        let back = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(back.len(), 3 * data.len());
        assert!(back.chunks(data.len()).all(|c| c == data));
    }

    #[test]
    fn a_failed_flush_fails_the_writes_after_it_and_the_drain() {
        // A character device takes writes but cannot be fsynced.
        let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
        assert!(null.sync_data().is_err(), "/dev/null fsyncs here");
        let mut out = WriteBehind::new(null, Cache::Keep);
        let data = window_and_a_bit();
        let mut failed = None;
        for n in 0..4 {
            if let Err(e) = out.write_all(&data) {
                failed = Some((n, e));
                break;
            }
        }
        let (n, _) = failed.expect("no write failed after the flush did");
        assert!(n >= 1, "the first window cannot have been flushed yet");
        assert!(out.drain().is_err(), "drain forgot the flusher's error");
    }

    #[test]
    fn the_drain_reports_a_failed_flush_even_when_every_write_succeeded() {
        let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
        let mut out = WriteBehind::new(null, Cache::Forget);
        out.write_all(&window_and_a_bit()).unwrap();
        assert!(out.drain().is_err());
    }
}
