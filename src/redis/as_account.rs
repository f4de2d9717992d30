//! The server's programs (a private redis-server, a replay server, the
//! check tools) as we start them under an account that is not root: with
//! nothing of ours in their environment, and tied to our life. A restore
//! killed with SIGKILL cannot stop its children itself; the kernel does it
//! for us (the parent-death signal), so a server of ours does not outlive
//! the run that started it by accident. A server that runs the account's
//! own code (a `loadmodule` in its redis.conf) can undo that, or fork; the
//! next restore ends the server it finds noted (`end_orphan`), and what it
//! forked is the account's own process, as it could start any.
//!
//! Nor do they share the session of whoever started us: an operator runs a
//! restore in a terminal, and a server in that session could type into it
//! (TIOCSTI) for root's shell to run, write escape sequences to it or read
//! what is typed; and it would possess root's session keyring and read the
//! keys in it. Each starts in a session of its own, with no controlling
//! terminal, and a new session keyring.

use rustix::process::{getpid, getppid, set_parent_process_death_signal, Signal};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Their whole environment: an operator's OS_PASSWORD or REDIS_BACKUP_*
/// would be readable by that account (through /proc, or a module's getenv).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `keyctl(2)`'s operation that gives the caller a new session keyring.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// `program` to be run as `uid`:`gid` (std drops root's supplementary
/// groups as it sets the uid), stdin closed, in a session of its own (the
/// leader of its own process group, whose id is its pid), killed when this
/// process ends.
pub fn command(program: &str, uid: u32, gid: u32) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", PATH)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null());
    apart_and_dying_with(&mut command, getpid());
    command
}

/// The child leaves our session and session keyring, and gets SIGKILL when
/// `parent` (the thread that forks it: ours are started from the main
/// thread) ends. Set after the uid changed, which would clear the signal
/// and makes the new keyring the account's, and before exec, which keeps
/// them for a program that is not set-user-ID.
#[allow(unsafe_code)]
fn apart_and_dying_with(command: &mut Command, parent: rustix::process::Pid) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls belong: four system calls (three made by
    // rustix, one by libc's syscall()), reading errno, and errors built
    // from an errno, none of which allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            rustix::process::setsid()?;
            let joined = libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            );
            if joined < 0 {
                let e = std::io::Error::last_os_error();
                // No keyrings here (a kernel without them, or a filter that
                // refuses keyctl to us and so to the child): nothing to
                // reach. Any other failure (the account's key quota used
                // up on purpose) must not leave it ours.
                if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                    return Err(e);
                }
            }
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // Killed between the fork and the line above, the parent sent
            // nothing, and this child now belongs to init.
            if getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}
