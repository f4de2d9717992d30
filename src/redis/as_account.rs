//! The server's programs (a private redis-server, a replay server, the
//! check tools) as we start them under an account that is not root: with
//! nothing of ours in their environment, and tied to our life. A restore
//! killed with SIGKILL cannot stop its children itself; the kernel does it
//! for us (the parent-death signal), so a server of ours does not outlive
//! the run that started it by accident. A server that runs the account's
//! own code (a `loadmodule` in its redis.conf) can undo that, or fork; the
//! next restore ends the server it finds noted (`end_orphan`), and what it
//! forked is the account's own process, as it could start any.

use rustix::process::{getpid, getppid, set_parent_process_death_signal, Signal};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Their whole environment: an operator's OS_PASSWORD or REDIS_BACKUP_*
/// would be readable by that account (through /proc, or a module's getenv).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `program` to be run as `uid`:`gid` (std drops root's supplementary
/// groups as it sets the uid), stdin closed, killed when this process ends.
pub fn command(program: &str, uid: u32, gid: u32) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", PATH)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null());
    die_with(&mut command, getpid());
    command
}

/// The child gets SIGKILL when `parent` (the thread that forks it: ours
/// are started from the main thread) ends. Set after the uid changed, which
/// would clear it, and before exec, which keeps it for a program that is
/// not set-user-ID.
#[allow(unsafe_code)]
fn die_with(command: &mut Command, parent: rustix::process::Pid) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls belong: two system calls made by
    // rustix, and an error built from an errno, none of which allocates
    // or takes a lock.
    unsafe {
        command.pre_exec(move || {
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
