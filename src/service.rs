//! The only place that runs `systemctl`, and only in the three forms of
//! CONTRACT.md: `stop UNIT`, `start UNIT`, `is-active --quiet UNIT`. No shell,
//! no string commands; a failure quotes systemctl's own stderr.
//!
//! None is waited for without end: a stop lasts as long as Redis's save as
//! it stops, which the account can keep from ending (a data dir it may not
//! write), and Debian's unit never kills it (`TimeoutStopSec=0`). Past the
//! deadline (`save_timeout`) systemctl is killed; the job it asked for goes
//! on in systemd, and the run ends saying so.

use crate::bounded;
use crate::error::{Error, Result};
use log::info;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Service {
    unit: String,
    /// How long any one systemctl may take.
    within: Duration,
}

/// What systemctl said: its status and the first line of its stderr.
struct Said {
    status: ExitStatus,
    first_line: String,
}

impl Service {
    pub fn new(unit: &str, within: Duration) -> Service {
        Service {
            unit: unit.to_string(),
            within,
        }
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn is_active(&self) -> Result<bool> {
        let said = self.systemctl(&["is-active", "--quiet", &self.unit])?;
        Ok(said.status.success())
    }

    /// Stop the unit and confirm it is no longer active.
    pub fn stop(&self) -> Result<()> {
        self.stop_unless_refused()?
    }

    /// The same; `Ok(Err(refusal))` when systemctl answered that the unit
    /// is not loaded (one systemd does not know: its exit code 5), as
    /// against any other failure: one that did not answer in time, was
    /// killed (a SIGTERM to every process of a unit) or was canceled,
    /// whose unit may still be stopping.
    pub fn stop_unless_refused(&self) -> Result<Result<()>> {
        info!("systemctl stop {}", self.unit);
        let said = self.systemctl(&["stop", &self.unit])?;
        let not_loaded = said.status.code() == Some(NOT_LOADED);
        if let Err(failed) = checked(said, "stop", &self.unit) {
            return match not_loaded {
                true => Ok(Err(failed)),
                false => Err(failed),
            };
        }
        if self.is_active()? {
            return Err(Error::other(format!(
                "systemctl stop {} returned, but the unit is still active",
                self.unit
            )));
        }
        Ok(Ok(()))
    }

    pub fn start(&self) -> Result<()> {
        info!("systemctl start {}", self.unit);
        checked(self.systemctl(&["start", &self.unit])?, "start", &self.unit)
    }

    /// Run systemctl with `args`, waiting at most `within`.
    fn systemctl(&self, args: &[&str]) -> Result<Said> {
        let shown = args.join(" ");
        let mut child = command(args).spawn().map_err(|e| {
            Error::other(format!(
                "cannot run systemctl {shown}: {e}; is systemd's systemctl on PATH?"
            ))
        })?;
        // Read apart: what systemctl started may hold its stderr open.
        let said_rx = bounded::read_apart(child.stderr.take().expect("piped"));
        let waited = bounded::wait_until(&mut child, Instant::now() + self.within)
            .map_err(|e| Error::other(format!("cannot wait for systemctl {shown}: {e}")))?;
        let status = match waited {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::other(format!(
                    "systemctl {shown} did not return within {}s (save_timeout); the job goes on in systemd{}",
                    self.within.as_secs(),
                    match args.first() {
                        Some(&"stop") => ": Redis may be unable to save as it stops (its log says why: a full disk, a data dir it may not write); it stops once that save works, or when systemd kills it (TimeoutStopSec; never, with Debian's redis-server.service)",
                        Some(&"start") => ": a stop job may still be running before it, or Redis still loading",
                        _ => "",
                    }
                )));
            }
        };
        let said = said_rx
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        let said = String::from_utf8_lossy(&said);
        let first_line = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Ok(Said {
            status,
            first_line: first_line.to_string(),
        })
    }
}

/// systemctl's exit code for a unit that is not loaded (LSB's "program is
/// not installed"), which `stop` of a unit systemd does not know returns.
const NOT_LOADED: i32 = 5;

/// The prefixes of the variables this tool takes settings and secrets from
/// (`REDIS_BACKUP_*`, OpenStack's `OS_*`, swiftclient's `ST_*`).
const OURS: [&str; 3] = ["REDIS_BACKUP_", "OS_", "ST_"];

fn command(args: &[&str]) -> Command {
    let mut command = Command::new("systemctl");
    // systemd's systemctl hands the unit none of its environment; a
    // replacement that starts the service itself would, and the service
    // runs as the redis account.
    for (name, _) in std::env::vars_os() {
        if OURS
            .iter()
            .any(|p| name.as_encoded_bytes().starts_with(p.as_bytes()))
        {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Out of our process group: a Ctrl-C at the terminal goes to the
        // whole group, and a systemctl it killed would fail the step (its
        // job goes on in systemd) while we hold the signal until the step
        // is over (`signals`).
        .process_group(0);
    command
}

fn checked(said: Said, verb: &str, unit: &str) -> Result<()> {
    if said.status.success() {
        return Ok(());
    }
    Err(Error::other(format!(
        "systemctl {verb} {unit} failed ({}): {}",
        said.status, said.first_line
    )))
}
