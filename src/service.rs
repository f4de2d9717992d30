//! The only place that runs `systemctl`, and only in the three forms of
//! CONTRACT.md: `stop UNIT`, `start UNIT`, `is-active --quiet UNIT`. No shell,
//! no string commands; a failure quotes systemctl's own stderr.

use crate::error::{Error, Result};
use log::info;
use std::process::{Command, Output, Stdio};

pub struct Service {
    unit: String,
}

impl Service {
    pub fn new(unit: &str) -> Service {
        Service {
            unit: unit.to_string(),
        }
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn is_active(&self) -> Result<bool> {
        let output = systemctl(&["is-active", "--quiet", &self.unit])?;
        Ok(output.status.success())
    }

    /// Stop the unit and confirm it is no longer active.
    pub fn stop(&self) -> Result<()> {
        info!("systemctl stop {}", self.unit);
        checked(systemctl(&["stop", &self.unit])?, "stop", &self.unit)?;
        if self.is_active()? {
            return Err(Error::other(format!(
                "systemctl stop {} returned, but the unit is still active",
                self.unit
            )));
        }
        Ok(())
    }

    pub fn start(&self) -> Result<()> {
        info!("systemctl start {}", self.unit);
        checked(systemctl(&["start", &self.unit])?, "start", &self.unit)
    }
}

/// The prefixes of the variables this tool takes settings and secrets from
/// (`REDIS_BACKUP_*`, OpenStack's `OS_*`, swiftclient's `ST_*`).
const OURS: [&str; 3] = ["REDIS_BACKUP_", "OS_", "ST_"];

fn systemctl(args: &[&str]) -> Result<Output> {
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
        .output()
        .map_err(|e| {
            Error::other(format!(
                "cannot run systemctl {}: {e}; is systemd's systemctl on PATH?",
                args.join(" ")
            ))
        })
}

fn checked(output: Output, verb: &str, unit: &str) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(Error::other(format!(
        "systemctl {verb} {unit} failed ({}): {said}",
        output.status
    )))
}
