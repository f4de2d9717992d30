//! A program we run and wait for only until a deadline: whoever it runs as
//! (the redis account), or whatever it waits on (a Redis that will not
//! stop), may keep it from ending. Its output is read in a thread of its
//! own, some of it kept: what it started may hold the pipe open after it.

use crate::queue::{self, Receiver};
use std::io::Read;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// What is kept of what a program says: enough for its last words.
pub const MAX_SAID: u64 = 64 << 10;
const POLL: Duration = Duration::from_millis(20);

/// Read `pipe` apart; what it said (at most `MAX_SAID`) once it closes.
pub fn read_apart(pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (said_tx, said_rx) = queue::unbounded();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut pipe = pipe;
        let _ = (&mut pipe).take(MAX_SAID).read_to_end(&mut said);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        let _ = said_tx.send(said);
    });
    said_rx
}

/// `child`'s status once it ends, or `None` once `deadline` has passed
/// with it still running (the caller ends it: it is not reaped, so its
/// pid, and group, are still its own).
pub fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}
