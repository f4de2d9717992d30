//! A string that must never be shown: passwords, tokens. Its `Debug` and
//! `Display` print `***`, and its bytes are zeroed when it is dropped, so a
//! secret cannot leak through a log line, an error message or a core dump left
//! lying around longer than needed; and the process is kept out of core dumps
//! altogether (`panic = abort` would otherwise write the keys and passwords it
//! holds to disk).

use std::fmt;
use zeroize::Zeroize;

/// No core dump of this process, and no other process of the same user
/// reading its memory through ptrace or /proc: it holds the master key and
/// passwords. Best effort: a refusal is not a reason to refuse to work.
pub fn keep_out_of_core_dumps() {
    use rustix::process::{set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit};
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
}

/// Descriptors this process inherited (a wrapper's `3</root/secrets.env`, a
/// log a cron job left open) are closed at every exec: otherwise each child
/// would inherit them, and the children that run as the redis account
/// (the private servers, redis-check-aof) would hand them to that account,
/// which may take a descriptor from a process of its own (`pidfd_getfd`).
/// Ours are all opened close-on-exec already. Best effort, as above.
pub fn keep_inherited_descriptors_from_children() {
    if !close_range_on_exec() {
        // Linux before 5.11: one at a time.
        close_each_on_exec();
    }
}

#[allow(unsafe_code)]
fn close_range_on_exec() -> bool {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors in the range; no memory is read or written.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    done == 0
}

#[allow(unsafe_code)]
fn close_each_on_exec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in open {
        // SAFETY: fcntl(F_SETFD) sets a flag on a descriptor number, open
        // or not (the listing's own is closed by now: EBADF, harmless).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (AUTH, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_core_dump_is_written_of_a_process_holding_secrets() {
        super::keep_out_of_core_dumps();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        let fields: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(&fields[4..6], ["0", "0"], "{core}");
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    /// Both ways of marking inherited descriptors close-on-exec reach a
    /// descriptor that is not (as a wrapper's `3<file` would be).
    #[test]
    fn inherited_descriptors_are_closed_at_exec() {
        use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
        for (how, mark) in [
            ("close_range", (|| assert!(close_range_on_exec())) as fn()),
            ("one at a time", close_each_on_exec),
        ] {
            let file = std::fs::File::open("/proc/self/status").unwrap();
            fcntl_setfd(&file, FdFlags::empty()).unwrap();
            assert!(!fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
            mark();
            assert!(
                fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC),
                "{how} left a descriptor to be inherited"
            );
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
