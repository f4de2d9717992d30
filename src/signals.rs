//! Signals held off while a step must not be cut short. A restore stops
//! Redis, moves its files and starts it again: an operator's Ctrl-C, a
//! dropped SSH session (SIGHUP) or systemd stopping the caller (SIGTERM)
//! arriving then ended the process with Redis down, its data in a work
//! folder that only the next run put back. While a `Held` lives, those
//! signals are noted, not acted on; the step finishes (or rolls back), and
//! the caller asks `arrived` whether to go on to anything new. SIGKILL
//! cannot be held: the journal is for that.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signals a terminal, a shell or systemd sends to end a run, and
/// Ctrl-Z's, which would leave Redis down for as long as the run is
/// suspended: that one is passed over, not noted (it asks for a pause,
/// not an end).
const HELD: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGTSTP,
];

/// The last held signal that arrived, 0 for none.
static ARRIVED: AtomicI32 = AtomicI32::new(0);

/// Said at once, not only once the step is over: that may take as long as
/// Redis's save or start, and an operator who saw nothing would reach for
/// `kill -9`.
const NOTED: &[u8] = b"redis-backup: signal noted; it takes effect once the step under way is over, which must not be cut short (Redis would be left down)\n";

#[allow(unsafe_code)]
extern "C" fn note(signal: libc::c_int) {
    // An atomic store and write(2): both async-signal-safe. errno is put
    // back: the code interrupted may be about to read it.
    ARRIVED.store(signal, Ordering::Relaxed);
    // SAFETY: errno is this thread's; a static buffer of its own length,
    // written to stderr.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(2, NOTED.as_ptr().cast(), NOTED.len());
        *libc::__errno_location() = errno;
    }
}

/// Ctrl-Z's handler while held: nothing. Not SIG_IGN, which the programs
/// started meanwhile (systemctl, what it starts) would inherit; a handler
/// is reset to the default as they are exec'd.
extern "C" fn not_now(_signal: libc::c_int) {}

/// The held signals' dispositions before; put back when dropped.
pub struct Held {
    why: &'static str,
    before: [libc::sighandler_t; HELD.len()],
}

impl Held {
    /// Hold the signals for as long as the result lives; `why` says, in the
    /// line logged for a signal that arrived, what it waited for.
    #[allow(unsafe_code)]
    pub fn during(why: &'static str) -> Held {
        let handler = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let pause = not_now as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let mut before = [libc::SIG_DFL; HELD.len()];
        for (signal, before) in HELD.iter().zip(before.iter_mut()) {
            let to = match *signal {
                libc::SIGTSTP => pause,
                _ => handler,
            };
            // SAFETY: `note` only stores to an atomic, which is
            // async-signal-safe, and `not_now` does nothing; `signal` has
            // no other precondition.
            *before = unsafe { libc::signal(*signal, to) };
        }
        Held { why, before }
    }

    /// The signal that arrived while held, if one did: the run was asked
    /// to end, and starts nothing new.
    pub fn arrived(&self) -> Option<i32> {
        Some(ARRIVED.load(Ordering::Relaxed)).filter(|&signal| signal != 0)
    }
}

/// Whether a held signal has arrived: for a step that can stop cleanly
/// where it is (staging, which then removes what it wrote).
pub fn pending() -> bool {
    ARRIVED.load(Ordering::Relaxed) != 0
}

impl Drop for Held {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for (signal, before) in HELD.iter().zip(self.before) {
            if before != libc::SIG_ERR {
                // SAFETY: puts back the disposition `signal` gave us.
                unsafe { libc::signal(*signal, before) };
            }
        }
        let arrived = ARRIVED.swap(0, Ordering::Relaxed);
        if arrived != 0 {
            log::warn!(
                "signal {arrived} arrived while {}: it was held until that was over",
                self.why
            );
        }
    }
}
