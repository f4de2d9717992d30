//! redis-backup: back up and restore Redis. `main` parses the command line,
//! sets up logging, loads the settings, runs the command and maps the one
//! `Error` type to the exit codes of CONTRACT.md. Nothing else happens here.
// One audited exception, allowed where it is: the carry-less multiply
// intrinsics of crc64's folding loop (see vendor-notes/dependencies.md).
#![deny(unsafe_code)]

mod archive;
mod backup;
mod bounded;
mod cli;
mod codec;
mod commands;
mod config;
mod error;
mod fs;
mod id;
mod progress;
mod queue;
mod record;
mod redis;
mod restore;
mod secret;
mod service;
mod settings;
mod signals;
mod status;
mod storage;
mod stored;
#[cfg(test)]
mod testing;
mod units;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Straight to stderr, not through the logger: the one error line
            // must show even with RUST_LOG=off. Escaped, as every log line:
            // it may quote Redis, a record or a server's log, which others wrote.
            // A stderr gone (`| tee` after the SSH session dropped) must not
            // turn the exit code into an abort's: eprintln! would panic.
            let line = format!("error: {}\n", units::printable(&err.to_string()));
            let _ = std::io::stderr().write_all(line.as_bytes());
            ExitCode::from(err.exit_code())
        }
    }
}

fn run() -> error::Result<()> {
    secret::keep_out_of_core_dumps();
    secret::keep_inherited_descriptors_from_children();
    let invocation = cli::parse(std::env::args_os())?;
    init_logging(invocation.global.verbosity);
    progress::show(
        invocation.global.verbosity >= 1
            || (invocation.global.verbosity == 0 && std::io::stderr().is_terminal()),
    );
    match invocation.command {
        cli::Command::Help(text) => print!("{text}"),
        cli::Command::Version => match invocation.global.json {
            true => println!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION")),
            false => println!("redis-backup {}", env!("CARGO_PKG_VERSION")),
        },
        command => {
            let config =
                config::Config::load(invocation.global.config.as_deref(), &invocation.settings)?;
            let report = commands::run(&config, command)?;
            commands::print(&report, invocation.global.json);
        }
    }
    Ok(())
}

/// Logs go to stderr: `-q` errors only, default one line per step, `-v`
/// protocol detail, `-vv` everything. RUST_LOG, when set, wins over all but
/// `-q`, except that the HTTP and TLS crates never log above warnings: their
/// debug lines could carry Swift tokens and keys, and a RUST_LOG naming one
/// of their modules (`ureq::unit=debug`) must not bring them back.
fn init_logging(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => log::LevelFilter::Error,
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    // -q is asked for on this command line, as a flag beats the environment
    // for settings: a RUST_LOG left in a unit or a profile must not undo it.
    if verbosity >= 0 {
        builder.parse_env("RUST_LOG");
    }
    let logger = builder
        // Our own line format (env_logger's, without its time and colour
        // crates): `[2026-11-25T03:15:00Z INFO ] message`, UTC like the IDs,
        // control characters escaped: a message may quote what Redis, a
        // record or a server's log said, and those are others' words.
        .format(|out, line| {
            let (now, _) = units::utc_timestamps(std::time::SystemTime::now());
            let text = units::printable(&line.args().to_string());
            writeln!(out, "[{now} {:<5}] {text}", line.level())
        })
        .build();
    log::set_max_level(logger.filter());
    let _ = log::set_boxed_logger(Box::new(NoHttpSecrets(logger)));
}

/// The logger, with every record of the HTTP and TLS crates above warnings
/// dropped, whatever filter let it through.
struct NoHttpSecrets(env_logger::Logger);

impl NoHttpSecrets {
    fn hidden(metadata: &log::Metadata) -> bool {
        let target = metadata.target();
        metadata.level() > log::Level::Warn
            && ["ureq", "rustls"].iter().any(|krate| {
                target == *krate
                    || target
                        .strip_prefix(krate)
                        .is_some_and(|r| r.starts_with("::"))
            })
    }
}

impl log::Log for NoHttpSecrets {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        !Self::hidden(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, line: &log::Record) {
        if self.enabled(line.metadata()) {
            self.0.log(line);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::NoHttpSecrets;

    #[test]
    fn http_and_tls_records_above_warnings_are_hidden_by_any_filter() {
        let hidden = |target: &str, level: log::Level| {
            NoHttpSecrets::hidden(&log::Metadata::builder().target(target).level(level).build())
        };
        assert!(hidden("ureq::unit", log::Level::Debug));
        assert!(hidden("ureq", log::Level::Trace));
        assert!(hidden("rustls::client", log::Level::Info));
        assert!(!hidden("ureq::unit", log::Level::Warn));
        assert!(!hidden("ureqx", log::Level::Debug));
        assert!(!hidden("redis_backup::storage", log::Level::Trace));
    }
}
