//! The command line: one lexopt loop that turns argv into a plain `Invocation`.
//! Global options and setting flags are accepted before or after the command,
//! as CONTRACT.md asks. This module only parses; reading settings files and
//! acting on anything happens elsewhere, so a usage error never touches Redis.

use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::settings;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct GlobalOptions {
    pub config: Option<PathBuf>,
    pub json: bool,
    /// -1 with --quiet, +1 per --verbose.
    pub verbosity: i8,
}

#[derive(Debug)]
pub struct Invocation {
    pub global: GlobalOptions,
    /// Setting flags in the order given (`key` uses underscores).
    pub settings: Vec<(String, String)>,
    pub command: Command,
}

/// How `backup` gets the RDB: Redis's own BGSAVE, or a replica's sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Snapshot,
    Replication,
}

/// Where a command reads a backup from: storage by ID, or a hand-copied object.
#[derive(Debug, PartialEq)]
pub enum Target {
    Id(BackupId),
    File(PathBuf),
    /// A moment (µs since the epoch) of an instance's archived history.
    At {
        micros: u64,
        instance: Option<String>,
    },
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Help(String),
    Version,
    Backup {
        id: Option<BackupId>,
        instance: Option<String>,
        source: Source,
    },
    Restore {
        target: Target,
        keep_previous: bool,
        allow_format_1: bool,
    },
    Verify(Target),
    List {
        instance: Option<String>,
    },
    Show(BackupId),
    Delete(BackupId),
    Export {
        id: BackupId,
        out: PathBuf,
        allow_format_1: bool,
    },
    Keygen {
        out: Option<PathBuf>,
    },
    ExportAt {
        micros: u64,
        instance: Option<String>,
        out: PathBuf,
    },
    Archive {
        instance: Option<String>,
    },
    Timeline {
        instance: Option<String>,
    },
    Prune {
        keep_last: usize,
        instance: Option<String>,
        dry_run: bool,
    },
}

pub const MAIN_HELP: &str = "\
redis-backup: encrypted, verified backups of Redis

Usage: redis-backup [GLOBAL OPTIONS] COMMAND [OPTIONS]

Commands:
  backup   [--id ID] [--instance ID] [--source snapshot|replication]
                                  take a fresh snapshot and store it
  restore  ID | --from-file PATH [--keep-previous] [--allow-format-1]
                                  replace Redis's data with a backup (verified first)
  verify   ID | --from-file PATH  prove a backup is complete and restorable
  list     [--instance ID]        list backups, oldest first
  show     ID                     show one backup's record
  delete   ID                     delete a backup (object and record)
  prune    --keep-last N [--instance ID] [--dry-run]
                                  keep the newest N backups of each instance
  export   ID --out PATH [--allow-format-1]
                                  write the plain RDB of a backup to PATH
  keygen   [--out PATH]           write a new random key file (mode 0600)

Point-in-time recovery:
  archive  [--instance ID]        follow Redis as a replica and keep its write stream
                                  in storage until SIGTERM/SIGINT
  timeline [--instance ID]        the recoverable windows of each instance
  restore  --at TIME [--instance ID] [--keep-previous]
  export   --at TIME [--instance ID] --out PATH
                                  the data as it was at TIME (RFC 3339, e.g.
                                  2026-11-30T14:02:00.5Z or ...+01:00)

Global options:
  -c, --config PATH   settings file (default /etc/redis-backup/redis-backup.conf, if present)
      --json          machine-readable output on stdout (one JSON document)
  -v, --verbose       more log output (repeatable); RUST_LOG is honoured too
  -q, --quiet         errors only
  -h, --help          help for the binary or a command
  -V, --version       print the version

Settings (flag > REDIS_BACKUP_<KEY> environment > settings file):
{SETTINGS}  Secrets (redis_password, OS_PASSWORD, ...) are read only from the settings file
  or the environment, never from flags.

Exit status: 0 done, 2 usage, 3 Redis, 4 storage, 5 integrity, 6 restore rolled back,
7 restore could not be rolled back, 1 other.
";

const BACKUP_HELP: &str = "\
Usage: redis-backup backup [--id ID] [--instance ID] [--source snapshot|replication]

Ask Redis for a fresh snapshot (BGSAVE, waiting until our own save has
finished), then stream it compressed, encrypted and authenticated into storage.
Prints the new backup's ID as the last line (or the record with --json).

  --id ID          name of the new backup (default: UTC time plus a random suffix)
  --instance ID    instance name recorded with the backup (default: host name)
  --source snapshot      (default) Redis writes a fresh dump with BGSAVE and
                         the backup reads it from Redis's data dir
  --source replication   take the RDB as a replica would (REPLCONF + SYNC),
                         straight from the connection: no dump file needed,
                         and Redis may be on another host
";

const RESTORE_HELP: &str = "\
Usage: redis-backup restore ID | --from-file PATH [--keep-previous] [--allow-format-1]
       redis-backup restore --at TIME [--instance ID] [--keep-previous]

Replace this host's Redis data with a backup. The backup is fetched,
authenticated, decrypted and checked into the Redis data dir first; only then
is Redis stopped (systemctl stop), its files moved aside, the restored RDB put
in place (and, with appendonly yes, the AOF rebuilt in a private redis-server
no client can reach), Redis started and its key counts checked. Any failure
puts the previous files back and restarts Redis (exit 6); if even that fails,
exit 7 names the folder that holds them.

  --from-file PATH   restore a backup object copied by hand (needs only the key)
  --at TIME          restore the data as it was at TIME (RFC 3339), replayed
                     from the archive (see archive --help, timeline)
  --instance ID      with --at: whose archive (default: this host's instance)
  --keep-previous    keep the previous data files in the restore's work folder
  --allow-format-1   restore a backup written before format 2, whose object
                     does not say which backup it is: anyone who can write to
                     the storage could have put another one in its place
";

const VERIFY_HELP: &str = "\
Usage: redis-backup verify ID | --from-file PATH

Read a backup end to end: check every frame's MAC, decrypt, inflate, compare the
SHA-256 with the record and check the RDB's magic and CRC64 trailer. Nothing is
written. Exit 5 if the backup is tampered, truncated or encrypted with another key.
";

const LIST_HELP: &str = "\
Usage: redis-backup list [--instance ID]

List complete backups, oldest first (--json: an array of records).
";

const SHOW_HELP: &str = "\
Usage: redis-backup show ID

Show the record of one backup (--json: one object).
";

const DELETE_HELP: &str = "\
Usage: redis-backup delete ID

Delete a backup's record and object; a point-in-time base's archived chunks
too (refused while its archiver runs on this host).
";

const EXPORT_HELP: &str = "\
Usage: redis-backup export ID --out PATH [--allow-format-1]
       redis-backup export --at TIME [--instance ID] --out PATH

Write the plain RDB of a backup to PATH, for manual recovery. The backup is
authenticated as it is read; PATH must not exist and is removed if anything fails.

  --allow-format-1   export a backup written before format 2 (see restore --help)
  --at TIME          the data as it was at TIME (RFC 3339), replayed from the archive
  --instance ID      with --at: whose archive (default: this host's instance)
";

const PRUNE_HELP: &str = "\
Usage: redis-backup prune --keep-last N [--instance ID] [--dry-run]

Keep the newest N backups of each instance (or only of --instance) and delete
the older ones, oldest first, printing each. N is at least 1, so the newest
backup of an instance is never removed by pruning; delete it by ID if you
really mean to. Backups written before format 2 never count towards N (their
records bind nothing); they are deleted once N newer ones are kept. A record
that does not authenticate, was written to another storage, is dated ahead
of this host's clock, or whose object is not there whole, is neither kept
nor deleted, and named on stderr.

  --keep-last N    backups to keep per instance (1 or more)
  --instance ID    prune only this instance
  --dry-run        print what would be deleted, delete nothing
";

const KEYGEN_HELP: &str = "\
Usage: redis-backup keygen [--out PATH]

Write a new random 256-bit key as a key file with mode 0600 (default: the
key_file setting). An existing file is never overwritten. Keep a copy of the
key somewhere safe: without it no backup can be read.
";

const ARCHIVE_HELP: &str = "\
Usage: redis-backup archive [--instance ID]

Follow Redis as a replica (PSYNC) and keep its write stream in storage, for
restore --at and export --at. Runs in the foreground until SIGTERM or
SIGINT, then stores what it has received and exits 0 (see
vendor-notes/systemd/redis-backup-archive.service). The first time, and
whenever Redis cannot continue the archived history, the resync's RDB is
stored as the base backup of a new window. A chunk is stored every
archive_interval seconds, or sooner once archive_chunk_size bytes have come.
Redis hears REPLCONF ACK every second with the offset *stored*, so
`WAIT 1 0` on the primary returns once a write is archived. An ACL user
needs +psync +replconf +sync. Raise repl-backlog-size on the primary so that
an archiver restart goes on where it stopped instead of starting a new window.

  --instance ID    instance name recorded with the archive (default: host name)
";

const TIMELINE_HELP: &str = "\
Usage: redis-backup timeline [--instance ID]

The recoverable windows of each instance: per archiver session, from the
first command that session stored to the last, less the times the archiver
was behind the primary (a moment then would lack writes made before it).
With --json, an array of
{\"instance\", \"from\", \"to\", \"base\"}, times in RFC 3339 UTC to the millisecond.

  --instance ID    only this instance
";

/// Options a command may take, collected before we know they are all allowed.
#[derive(Default)]
struct CommandOptions {
    id: Option<String>,
    instance: Option<String>,
    source: Option<String>,
    out: Option<PathBuf>,
    from_file: Option<PathBuf>,
    keep_previous: bool,
    allow_format_1: bool,
    keep_last: Option<String>,
    dry_run: bool,
    at: Option<String>,
    seen: Vec<&'static str>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation> {
    parse_from(lexopt::Parser::from_iter(args))
}

fn parse_from(mut parser: lexopt::Parser) -> Result<Invocation> {
    let mut global = GlobalOptions::default();
    let mut settings = Vec::new();
    let mut options = CommandOptions::default();
    let mut words: Vec<String> = Vec::new();
    let mut help = false;
    let mut version = false;

    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('c') | Long("config") => match global.config {
                Some(_) => return Err(given_twice("--config")),
                None => global.config = Some(path_value(&mut parser)?),
            },
            Long("json") => global.json = true,
            Short('v') | Long("verbose") => global.verbosity = global.verbosity.max(0) + 1,
            Short('q') | Long("quiet") => global.verbosity = -1,
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") => version = true,
            Long("id") => options.set_id(text_value(&mut parser)?),
            Long("instance") => options.set_instance(text_value(&mut parser)?),
            Long("source") => options.set_source(text_value(&mut parser)?),
            Long("out") => options.set_out(path_value(&mut parser)?),
            Long("from-file") => options.set_from_file(path_value(&mut parser)?),
            Long("keep-previous") => {
                options.keep_previous = true;
                options.seen.push("keep-previous");
            }
            Long("allow-format-1") => {
                options.allow_format_1 = true;
                options.seen.push("allow-format-1");
            }
            Long("keep-last") => {
                options.keep_last = Some(text_value(&mut parser)?);
                options.seen.push("keep-last");
            }
            Long("at") => {
                options.at = Some(text_value(&mut parser)?);
                options.seen.push("at");
            }
            Long("dry-run") => {
                options.dry_run = true;
                options.seen.push("dry-run");
            }
            Long(flag) => {
                let key = flag.replace('-', "_");
                if settings::is_secret(&key) {
                    return Err(Error::usage(format!(
                        "--{flag} is not accepted on the command line, where it would show in `ps`; \
                         put {key} in the settings file (mode 0600) or set {} in the environment",
                        settings::env_name(&key)
                    )));
                }
                if !settings::is_flag(&key) {
                    return Err(Error::usage(format!(
                        "unknown option --{flag}; see redis-backup --help"
                    )));
                }
                if settings.iter().any(|(given, _)| *given == key) {
                    return Err(given_twice(&format!("--{flag}")));
                }
                let value = text_value(&mut parser)?;
                settings.push((key, value));
            }
            Value(word) => words.push(
                word.into_string()
                    .map_err(|_| Error::usage("arguments must be valid UTF-8"))?,
            ),
            other => return Err(usage(other.unexpected())),
        }
    }

    let command = if version {
        Command::Version
    } else if help {
        Command::Help(help_for(words.first().map(String::as_str))?)
    } else {
        build_command(words, options)?
    };
    Ok(Invocation {
        global,
        settings,
        command,
    })
}

/// The main help, its settings from the settings table.
pub fn main_help() -> String {
    MAIN_HELP.replace("{SETTINGS}", &settings::help_lines())
}

fn help_for(command: Option<&str>) -> Result<String> {
    Ok(match command {
        None => return Ok(main_help()),
        Some("backup") => BACKUP_HELP,
        Some("restore") => RESTORE_HELP,
        Some("verify") => VERIFY_HELP,
        Some("list") => LIST_HELP,
        Some("show") => SHOW_HELP,
        Some("delete") => DELETE_HELP,
        Some("export") => EXPORT_HELP,
        Some("keygen") => KEYGEN_HELP,
        Some("prune") => PRUNE_HELP,
        Some("archive") => ARCHIVE_HELP,
        Some("timeline") => TIMELINE_HELP,
        Some(other) => return Err(unknown_command(other)),
    }
    .to_string())
}

fn build_command(words: Vec<String>, options: CommandOptions) -> Result<Command> {
    let mut words = words.into_iter();
    let Some(name) = words.next() else {
        return Err(Error::usage("no command given; see redis-backup --help"));
    };
    let positional: Vec<String> = words.collect();
    let command = match name.as_str() {
        "backup" => {
            options.allow(&name, &["id", "instance", "source"])?;
            no_positional(&name, &positional)?;
            let source = match options.source.as_deref() {
                None | Some("snapshot") => Source::Snapshot,
                Some("replication") => Source::Replication,
                Some(other) => {
                    return Err(Error::usage(format!(
                    "--source {other:?}: use snapshot (BGSAVE) or replication (a replica's sync)"
                )))
                }
            };
            let id = options.id.as_deref().map(BackupId::parse).transpose()?;
            if let Some(id) = id.as_ref().filter(|id| id.chunk_parts().is_some()) {
                return Err(Error::usage(format!(
                    "--id {id}: names of this shape (BASE.cOFFSET-OFFSET) are archived chunks'; verify and delete would look for it among them: choose another"
                )));
            }
            Command::Backup {
                id,
                instance: instance_name(options.instance)?,
                source,
            }
        }
        "restore" if options.at.is_some() => {
            options.allow(&name, &["at", "instance", "keep-previous"])?;
            no_positional(&name, &positional)?;
            Command::Restore {
                target: Target::At {
                    micros: moment(options.at.as_deref())?,
                    instance: instance_name(options.instance)?,
                },
                keep_previous: options.keep_previous,
                allow_format_1: false,
            }
        }
        "export" if options.at.is_some() => {
            options.allow(&name, &["at", "instance", "out"])?;
            no_positional(&name, &positional)?;
            Command::ExportAt {
                micros: moment(options.at.as_deref())?,
                instance: instance_name(options.instance)?,
                out: options
                    .out
                    .ok_or_else(|| Error::usage("export needs --out PATH for the plain RDB"))?,
            }
        }
        "archive" | "timeline" => {
            options.allow(&name, &["instance"])?;
            no_positional(&name, &positional)?;
            let instance = instance_name(options.instance)?;
            match name.as_str() {
                "archive" => Command::Archive { instance },
                _ => Command::Timeline { instance },
            }
        }
        "restore" => {
            options.allow(&name, &["from-file", "keep-previous", "allow-format-1"])?;
            Command::Restore {
                target: target(&name, &positional, options.from_file)?,
                keep_previous: options.keep_previous,
                allow_format_1: options.allow_format_1,
            }
        }
        "verify" => {
            options.allow(&name, &["from-file"])?;
            Command::Verify(target(&name, &positional, options.from_file)?)
        }
        "list" => {
            options.allow(&name, &["instance"])?;
            no_positional(&name, &positional)?;
            Command::List {
                instance: instance_name(options.instance)?,
            }
        }
        "show" => {
            options.allow(&name, &[])?;
            Command::Show(one_id(&name, &positional)?)
        }
        "delete" => {
            options.allow(&name, &[])?;
            Command::Delete(one_id(&name, &positional)?)
        }
        "export" => {
            options.allow(&name, &["out", "allow-format-1"])?;
            let id = one_id(&name, &positional)?;
            let out = options
                .out
                .ok_or_else(|| Error::usage("export needs --out PATH for the plain RDB"))?;
            Command::Export {
                id,
                out,
                allow_format_1: options.allow_format_1,
            }
        }
        "keygen" => {
            options.allow(&name, &["out"])?;
            no_positional(&name, &positional)?;
            Command::Keygen { out: options.out }
        }
        "prune" => {
            options.allow(&name, &["keep-last", "instance", "dry-run"])?;
            no_positional(&name, &positional)?;
            let keep_last = options
                .keep_last
                .as_deref()
                .ok_or_else(|| Error::usage("prune needs --keep-last N"))?;
            let keep_last = keep_last.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::usage(format!(
                    "--keep-last {keep_last:?}: a whole number of backups per instance, at least 1 (delete the last one by ID if you mean it)"
                ))
            })?;
            Command::Prune {
                keep_last,
                instance: instance_name(options.instance)?,
                dry_run: options.dry_run,
            }
        }
        other => return Err(unknown_command(other)),
    };
    Ok(command)
}

/// `--at TIME`: RFC 3339, to the microsecond.
fn moment(text: Option<&str>) -> Result<u64> {
    let text = text.unwrap_or_default();
    crate::units::parse_rfc3339_any(text).ok_or_else(|| {
        Error::usage(format!(
            "--at {text:?} is not an RFC 3339 time; write e.g. 2026-11-30T14:02:00Z, 2026-11-30T14:02:00.250Z or 2026-11-30T15:02:00+01:00"
        ))
    })
}

/// Instance names follow the ID rules: they end up in records and listings.
fn instance_name(name: Option<String>) -> Result<Option<String>> {
    match name {
        Some(name) if BackupId::parse(&name).is_err() => Err(Error::usage(format!(
            "--instance {name:?}: an instance name uses only A-Z a-z 0-9 . _ -"
        ))),
        other => Ok(other),
    }
}

fn unknown_command(name: &str) -> Error {
    Error::usage(format!(
        "unknown command {name:?}; commands are backup, restore, verify, list, show, delete, prune, export, keygen, archive, timeline"
    ))
}

fn target(command: &str, positional: &[String], from_file: Option<PathBuf>) -> Result<Target> {
    match (positional, from_file) {
        ([], Some(path)) => Ok(Target::File(path)),
        ([id], None) => Ok(Target::Id(BackupId::parse(id)?)),
        (_, Some(_)) => Err(Error::usage(format!(
            "{command} takes either an ID or --from-file PATH, not both"
        ))),
        _ => Err(Error::usage(format!(
            "{command} needs one backup ID or --from-file PATH"
        ))),
    }
}

fn one_id(command: &str, positional: &[String]) -> Result<BackupId> {
    match positional {
        [id] => BackupId::parse(id),
        _ => Err(Error::usage(format!(
            "{command} needs exactly one backup ID"
        ))),
    }
}

fn no_positional(command: &str, positional: &[String]) -> Result<()> {
    match positional.first() {
        None => Ok(()),
        Some(extra) => Err(Error::usage(format!(
            "{command} takes no argument {extra:?}; see redis-backup {command} --help"
        ))),
    }
}

impl CommandOptions {
    fn set_id(&mut self, v: String) {
        self.id = Some(v);
        self.seen.push("id");
    }
    fn set_instance(&mut self, v: String) {
        self.instance = Some(v);
        self.seen.push("instance");
    }
    fn set_source(&mut self, v: String) {
        self.source = Some(v);
        self.seen.push("source");
    }
    fn set_out(&mut self, v: PathBuf) {
        self.out = Some(v);
        self.seen.push("out");
    }
    fn set_from_file(&mut self, v: PathBuf) {
        self.from_file = Some(v);
        self.seen.push("from-file");
    }

    /// Refuse options that belong to another command instead of ignoring them:
    /// `delete ID --dry-run`-style surprises are worse than an error.
    fn allow(&self, command: &str, allowed: &[&str]) -> Result<()> {
        if let Some(opt) = self.seen.iter().find(|opt| !allowed.contains(opt)) {
            return Err(Error::usage(format!(
                "{command} does not take --{opt}; see redis-backup {command} --help"
            )));
        }
        let switches = ["keep-previous", "allow-format-1", "dry-run"];
        match self
            .seen
            .iter()
            .enumerate()
            .find(|(i, opt)| !switches.contains(opt) && self.seen[..*i].contains(opt))
        {
            Some((_, opt)) => Err(given_twice(&format!("--{opt}"))),
            None => Ok(()),
        }
    }
}

/// Which of two values was meant is not ours to guess: the last one
/// winning made `--instance a ... --instance b` act on b unseen.
fn given_twice(option: &str) -> Error {
    Error::usage(format!("{option} is given twice; give it once"))
}

fn text_value(parser: &mut lexopt::Parser) -> Result<String> {
    parser
        .value()
        .map_err(usage)?
        .into_string()
        .map_err(|_| Error::usage("option values must be valid UTF-8"))
}

/// A path option's value; an empty one names no file (an `export` would
/// find out only after its whole replay).
fn path_value(parser: &mut lexopt::Parser) -> Result<PathBuf> {
    let value = parser.value().map_err(usage)?;
    if value.is_empty() {
        return Err(Error::usage(
            "an empty path was given; see redis-backup --help",
        ));
    }
    Ok(PathBuf::from(value))
}

fn usage(err: lexopt::Error) -> Error {
    Error::usage(format!("{err}; see redis-backup --help"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Invocation> {
        let argv = std::iter::once("redis-backup")
            .chain(args.iter().copied())
            .map(OsString::from);
        parse_from(lexopt::Parser::from_iter(argv))
    }

    #[test]
    fn global_options_and_settings_go_before_or_after_the_command() {
        let inv = parse_args(&[
            "--json",
            "backup",
            "--key-file",
            "/k",
            "-c",
            "/etc/x.conf",
            "-vv",
            "--id",
            "b1",
        ])
        .unwrap();
        assert!(inv.global.json);
        assert_eq!(inv.global.verbosity, 2);
        assert_eq!(inv.global.config, Some(PathBuf::from("/etc/x.conf")));
        assert_eq!(inv.settings, vec![("key_file".into(), "/k".into())]);
        assert_eq!(
            inv.command,
            Command::Backup {
                id: Some(BackupId::parse("b1").unwrap()),
                instance: None,
                source: Source::Snapshot,
            }
        );
    }

    #[test]
    fn secret_flags_are_refused_and_not_echoed() {
        let err = parse_args(&["backup", "--redis-password", "hunter2"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("REDIS_BACKUP_REDIS_PASSWORD"));
        assert!(!err.message().contains("hunter2"));
        let err = parse_args(&["list", "--os-password=x"]).unwrap_err();
        assert!(err.message().contains("OS_PASSWORD"));
    }

    #[test]
    fn commands_and_their_arguments() {
        let cmd = |args: &[&str]| parse_args(args).unwrap().command;
        assert_eq!(
            cmd(&["verify", "--from-file", "/x"]),
            Command::Verify(Target::File("/x".into()))
        );
        assert_eq!(
            cmd(&["export", "b1", "--out", "/o"]),
            Command::Export {
                id: BackupId::parse("b1").unwrap(),
                out: "/o".into(),
                allow_format_1: false,
            }
        );
        assert_eq!(
            cmd(&["export", "--allow-format-1", "b1", "--out", "/o"]),
            Command::Export {
                id: BackupId::parse("b1").unwrap(),
                out: "/o".into(),
                allow_format_1: true,
            }
        );
        assert_eq!(
            cmd(&["list", "--instance", "i1"]),
            Command::List {
                instance: Some("i1".into())
            }
        );
        assert_eq!(cmd(&["keygen"]), Command::Keygen { out: None });
        assert_eq!(
            cmd(&["prune", "--keep-last", "3", "--dry-run", "--instance", "i1"]),
            Command::Prune {
                keep_last: 3,
                instance: Some("i1".into()),
                dry_run: true
            }
        );
        assert_eq!(
            cmd(&["restore", "--keep-previous", "b1"]),
            Command::Restore {
                target: Target::Id(BackupId::parse("b1").unwrap()),
                keep_previous: true,
                allow_format_1: false,
            }
        );
        assert_eq!(
            cmd(&["restore", "b1", "--allow-format-1"]),
            Command::Restore {
                target: Target::Id(BackupId::parse("b1").unwrap()),
                keep_previous: false,
                allow_format_1: true,
            }
        );
        assert_eq!(cmd(&["show", "--help"]), Command::Help(SHOW_HELP.into()));
        assert_eq!(cmd(&["-V"]), Command::Version);
    }

    /// vendor-notes/install.md and the example settings say which keys
    /// have a flag: those `--help` lists, no OpenStack key and not
    /// `instance`, which is a command's option.
    #[test]
    fn only_the_keys_help_lists_have_flags() {
        for args in [
            &["list", "--os-auth-url", "https://k"][..],
            &["list", "--st-auth", "https://k"],
            &["show", "a", "--instance", "i"],
        ] {
            let err = parse_args(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let help = main_help();
        for flag in ["--os-", "--st-", "--instance ", "--redis-password"] {
            assert!(!help.contains(&format!("  {flag}")), "{flag}");
        }
    }

    #[test]
    fn usage_errors() {
        for args in [
            &[][..],
            &["frobnicate"],
            &["show"],
            &["show", "../x"],
            &["show", "a", "b"],
            &["export", "b1"],
            &["delete", "b1", "--out", "/x"],
            &["verify", "b1", "--from-file", "/x"],
            &["backup", "--source", "replica"],
            &[
                "backup",
                "--id",
                "x.c00000000000000000000-00000000000000000010",
            ],
            &["backup", "--no-such-flag", "1"],
            &["list", "extra"],
            &["list", "--instance", "a/b"],
            &["backup", "--instance", "x y"],
            &["restore"],
            &["restore", "b1", "--out", "/x"],
            &["backup", "--keep-previous"],
            &["prune"],
            &["prune", "--keep-last", "0"],
            &["prune", "--keep-last", "x"],
            &["prune", "--keep-last", "2", "extra"],
            &["list", "--dry-run"],
            &["export", "b1", "--out", ""],
            &["export", "--at", "2026-11-30T10:00:00Z", "--out", ""],
            &["keygen", "--out", ""],
            &["verify", "--from-file", ""],
            &["-c", "", "list"],
        ] {
            let err = parse_args(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn an_option_with_a_value_given_twice_is_a_usage_error() {
        for args in [
            &["list", "--instance", "a", "--instance", "b"][..],
            &[
                "--instance",
                "a",
                "prune",
                "--keep-last",
                "1",
                "--instance",
                "b",
            ],
            &["export", "b1", "--out", "/x", "--out", "/y"],
            &["prune", "--keep-last", "1", "--keep-last", "2"],
            &["list", "--storage", "file:///a", "--storage", "file:///b"],
            &["-c", "/a", "list", "--config", "/b"],
        ] {
            let err = parse_args(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert!(err.message().contains("given twice"), "{args:?}: {err}");
        }
        assert!(parse_args(&["restore", "b1", "--keep-previous", "--keep-previous"]).is_ok());
        assert!(parse_args(&["-v", "-v", "--json", "--json", "list"]).is_ok());
    }
}
