//! Progress lines for long transfers: one `info!` line every few seconds with
//! how much has moved, how fast and for how long, so an operator watching a
//! multi-gigabyte backup at 3 a.m. can tell it is alive. Only when someone
//! watches (stderr is a terminal, or `-v`): a journal from a timer stays short.

use crate::units::human_size;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static SHOWN: AtomicBool = AtomicBool::new(false);

/// Turn progress lines on (set once by `main`).
pub fn show(on: bool) {
    SHOWN.store(on, Ordering::Relaxed);
}

const EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_report: Instant,
}

impl Progress {
    /// `total` is the expected size in bytes, 0 if unknown.
    pub fn new(what: &'static str, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            total,
            done: 0,
            started: now,
            last_report: now,
        }
    }

    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.last_report.elapsed() >= EVERY && SHOWN.load(Ordering::Relaxed) {
            self.last_report = Instant::now();
            log::info!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let millis = elapsed.as_millis().max(1);
        let rate = human_size((u128::from(self.done) * 1000 / millis) as u64);
        let secs = elapsed.as_secs();
        match self.total {
            0 => format!(
                "{}: {} so far, {rate}/s, {secs}s",
                self.what,
                human_size(self.done)
            ),
            total => format!(
                "{}: {} of {} ({}%), {rate}/s, {secs}s",
                self.what,
                human_size(self.done),
                human_size(total),
                self.done * 100 / total
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_share_of_total() {
        let mut p = Progress::new("backup", 4 * 1024 * 1024);
        p.advance(1024 * 1024);
        assert!(
            p.line().starts_with("backup: 1.0 MiB of 4.0 MiB (25%)"),
            "{}",
            p.line()
        );
    }
}
