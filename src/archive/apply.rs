//! Which archived commands a replay sends its server, and as what.
//! Whatever answered on Redis's port chose the stream, and a server runs
//! whatever its primary sends it, without the permissions a client needs.
//! So a command a primary never sends, one the target's server does not
//! know or would refuse for its number of arguments or its database, is
//! refused here (exit 5), where the server would leave it out; a
//! transaction goes in whole or not at all, as a replica applies it; and a
//! command whose effect would depend on the replay's clock is sent in a
//! form that does not.

use super::stream::{self, Batch};
use crate::error::{Error, Result};
use log::debug;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// Commands a primary never sends its replicas, and that would act on the
/// replay server rather than on the data. Whatever answered on Redis's port
/// chose the stream, so a stream that holds one is refused, not replayed.
///
/// The policy: the replay server applies the stream from its master link,
/// and runs every command that comes by it, whatever its flags. So every
/// command that reaches beyond the keys is listed here: the network
/// (MIGRATE connects where it says and pushes keys; replication, cluster,
/// failover), the file system (saves and rewrites, CONFIG, MODULE, ACL
/// SAVE/LOAD, DEBUG), the server itself (CLIENT, SHUTDOWN) — and the
/// scripts, because a script may call MIGRATE (Redis refuses CONFIG or
/// DEBUG in a script, not MIGRATE) and the tool cannot judge a script.
/// A primary never sends its replicas any of these: a MIGRATE reaches
/// them as the DEL of what left, and a script (EVAL, FCALL) as its
/// effects (Redis 7 and Valkey always; Redis 6.2 unless configured with
/// `lua-replicate-commands no`, whose streams are therefore refused).
/// FUNCTION and SCRIPT stay: a primary does send FUNCTION LOAD, and a
/// library's code loaded cannot call commands; only FCALL would run it.
/// Allowing only a list of known write commands instead would refuse the
/// streams of modules and of every new release.
const NEVER_REPLICATED: &[&str] = &[
    // The network.
    "CLUSTER",
    "FAILOVER",
    "MIGRATE",
    "MONITOR",
    "PSYNC",
    "REPLICAOF",
    "SLAVEOF",
    "SYNC",
    // The file system and the server's own settings.
    "ACL",
    "BGREWRITEAOF",
    "BGSAVE",
    "CONFIG",
    "DEBUG",
    "MODULE",
    "SAVE",
    // Other clients and the server's life.
    "CLIENT",
    "SHUTDOWN",
    "UNWATCH",
    "WATCH",
    // Seconds of the server's CPU for a few bytes.
    "PFSELFTEST",
    // Scripts, which may call MIGRATE.
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// The databases the replay server has: Redis's default. A primary of more
/// whose base holds keys past them sends a base the server cannot load.
pub(super) const DATABASES: &str = "16";

/// Whether every database a command names (`SELECT`, `MOVE`, `SWAPDB`,
/// `COPY … DB`) is one of the replay server's, written as Redis reads a
/// number (no sign, no leading zero): it would refuse another, and Redis
/// 6.2 (which has no panic setting) would leave the command out, or put
/// the commands after a `SELECT` into the database before.
fn names_only_our_databases(name: &str, args: &[&[u8]]) -> bool {
    let named: Vec<&[u8]> = match name {
        "SELECT" => args.get(1..2).unwrap_or(&[]).to_vec(),
        "MOVE" => args.get(2..3).unwrap_or(&[]).to_vec(),
        "SWAPDB" => args.get(1..3).unwrap_or(&[]).to_vec(),
        "COPY" => args
            .windows(2)
            .skip(3)
            .filter(|w| w[0].eq_ignore_ascii_case(b"DB"))
            .map(|w| w[1])
            .collect(),
        _ => return true,
    };
    // 0 to 15: DATABASES.
    named
        .iter()
        .all(|db| matches!(db, [b'0'..=b'9'] | [b'1', b'0'..=b'5']))
}

/// A command in the form the replay server applies as the primary ran
/// it; `None` where it stands as it is.
///
/// `HPERSIST`: Redis 7.4 and 8 judge by the clock, even from a master
/// link, whether the field it names has lived past its TTL, and that TTL
/// may have passed since the primary ran it: the fields are first given
/// the latest TTL there is, which `HPERSIST` then removes.
fn replica_form(name: &str, args: &[&[u8]]) -> Option<Vec<u8>> {
    if name == "HPERSIST" && args.len() > 2 {
        // 2^46 - 1 ms, the latest Redis takes (HFE_MAX_ABS_TIME_MSEC).
        let latest: &[u8] = b"70368744177663";
        let expire = [&[b"HPEXPIREAT".as_slice(), args[1], latest], &args[2..]].concat();
        let mut both = Vec::new();
        crate::redis::resp::write_command(&mut both, &expire).ok()?;
        crate::redis::resp::write_command(&mut both, args).ok()?;
        return Some(both);
    }
    None
}

/// A transaction's commands are held until its EXEC, up to `HELD_MAX` in
/// memory, then in the `Spill`: a primary may send one that never ends,
/// and holding it all would let it take root's memory; and the replay
/// server, sent one, would queue it all in its own until the end.
const HELD_MAX: usize = 1 << 20;

fn write_failed(e: std::io::Error) -> Error {
    Error::other(format!("writing the replay: {e}"))
}

/// Where a transaction that outgrew `HELD_MAX` waits for its EXEC: a file
/// without a name, in a folder of root's, emptied after each.
pub(super) struct Spill(BufWriter<File>);

impl Spill {
    pub(super) fn new(file: File) -> Spill {
        Spill(BufWriter::with_capacity(1 << 20, file))
    }

    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.write_all(bytes).map_err(write_failed)
    }

    /// Send what it holds to `out`, and empty it.
    fn send(&mut self, out: &mut impl Write) -> Result<()> {
        self.0.flush().map_err(write_failed)?;
        let file = self.0.get_mut();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| std::io::copy(file, out))
            .map_err(write_failed)?;
        self.empty()
    }

    fn empty(&mut self) -> Result<()> {
        self.0.flush().map_err(write_failed)?;
        let file = self.0.get_mut();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .map(drop)
            .map_err(write_failed)
    }
}

/// A transaction from its MULTI on, until its EXEC or DISCARD.
#[derive(Default)]
struct OpenTransaction {
    /// Its commands, while they are at most `HELD_MAX` bytes.
    held: Vec<u8>,
    /// Whether it went to the spill, once it outgrew `held`.
    spilled: bool,
}

impl OpenTransaction {
    fn push(&mut self, command: &[u8], spill: &mut Spill) -> Result<()> {
        if !self.spilled && self.held.len() + command.len() > HELD_MAX {
            self.spilled = true;
            spill.push(&std::mem::take(&mut self.held))?;
        }
        match self.spilled {
            true => spill.push(command),
            false => {
                self.held.extend_from_slice(command);
                Ok(())
            }
        }
    }

    /// Its EXEC came: it is applied whole.
    fn commit(self, exec: &[u8], spill: &mut Spill, out: &mut impl Write) -> Result<()> {
        match self.spilled {
            true => spill.send(out)?,
            false => out.write_all(&self.held).map_err(write_failed)?,
        }
        out.write_all(exec).map_err(write_failed)
    }

    /// It is discarded, or still open at the end: none of it is applied.
    fn abandon(self, spill: &mut Spill) -> Result<()> {
        match self.spilled {
            true => spill.empty(),
            false => Ok(()),
        }
    }
}

/// Writes the commands received at or before `at`, whole transactions only.
pub(super) struct Applier {
    pub(super) at: u64,
    /// The replay server's commands: one it does not know, or with the
    /// wrong number of arguments, stops the replay here, where the server
    /// would only leave it out and go on.
    arities: Arities,
    transaction: Option<OpenTransaction>,
    spill: Spill,
    pub(super) commands: u64,
    pub(super) applied_until: Option<u64>,
}

impl Applier {
    pub(super) fn new(at: u64, arities: Arities, spill: Spill) -> Applier {
        Applier {
            at,
            arities,
            transaction: None,
            spill,
            commands: 0,
            applied_until: None,
        }
    }

    /// Apply `batches`; false once a batch came after `at`.
    pub(super) fn apply(&mut self, batches: &[Batch], out: &mut impl Write) -> Result<bool> {
        for batch in batches {
            if batch.at_micros > self.at {
                return Ok(false);
            }
            for command in stream::commands(&batch.bytes) {
                let args = stream::arguments(command);
                let name = stream::name(&args);
                if NEVER_REPLICATED.contains(&name.as_str()) {
                    return Err(Error::integrity(format!(
                        "the archived stream holds {name}, which a primary never sends its replicas: whatever answered on Redis's port sent it; not replayed"
                    )));
                }
                match self.arities.take(&name, &args) {
                    Some(true) => {}
                    Some(false) => {
                        return Err(Error::integrity(format!(
                            "the archived stream holds {name} with {} arguments, which no server takes: whatever answered on Redis's port sent it; not replayed",
                            args.len() - 1
                        )))
                    }
                    None => {
                        return Err(Error::integrity(format!(
                            "the archived stream holds {name}, which the target's server does not know (a module's command, a newer server's, or one renamed on the primary): not replayed"
                        )))
                    }
                }
                if !names_only_our_databases(&name, &args) {
                    return Err(Error::integrity(format!(
                        "the archived stream holds {name}, naming a database the replay server does not have (it has {DATABASES}): not replayed"
                    )));
                }
                let replica_form = replica_form(&name, &args);
                let command = replica_form.as_deref().unwrap_or(command);
                match name.as_str() {
                    "PING" | "REPLCONF" => continue,
                    // As a replica's server takes them: a MULTI inside a
                    // transaction is refused and the transaction goes on;
                    // a DISCARD drops what was queued (outside one, it is
                    // refused).
                    "MULTI" if self.transaction.is_some() => continue,
                    "MULTI" => {
                        let mut open = OpenTransaction::default();
                        open.push(command, &mut self.spill)?;
                        self.transaction = Some(open);
                    }
                    "DISCARD" => self.abandon_transaction()?,
                    "EXEC" => match self.transaction.take() {
                        Some(open) => {
                            open.commit(command, &mut self.spill, out)?;
                            self.commands += 1;
                        }
                        None => {
                            return Err(Error::integrity(
                                "the archived stream has an EXEC without MULTI",
                            ))
                        }
                    },
                    _ => match &mut self.transaction {
                        Some(open) => open.push(command, &mut self.spill)?,
                        None => {
                            out.write_all(command).map_err(write_failed)?;
                            self.commands += 1;
                        }
                    },
                }
            }
            if self.transaction.is_none() {
                self.applied_until = Some(batch.at_micros);
            }
        }
        Ok(true)
    }

    /// A transaction still open at `at` was not applied on the primary
    /// either: it is dropped, never half written.
    pub(super) fn finish(&mut self) -> Result<()> {
        if self.transaction.is_some() {
            debug!("a transaction open at the moment asked for is left out");
        }
        self.abandon_transaction()
    }

    fn abandon_transaction(&mut self) -> Result<()> {
        match self.transaction.take() {
            Some(open) => open.abandon(&mut self.spill),
            None => Ok(()),
        }
    }
}

/// Each command's arity as COMMAND gives it: the number of arguments,
/// name included, or at least minus that if negative; and, from Redis 7
/// on, its subcommands' (which count the command's name too).
#[derive(Debug, Default, Clone)]
pub(super) struct Arities {
    commands: HashMap<String, i64>,
    /// By command, then by upper-case subcommand.
    subcommands: HashMap<String, HashMap<String, i64>>,
}

impl Arities {
    /// Those of a COMMAND reply: each entry is name, arity, …, and its
    /// subcommands' entries (named `command|sub`) as the tenth field.
    pub(super) fn of(reply: &crate::redis::resp::Value) -> Arities {
        use crate::redis::resp::Value;
        let name_and_arity = |entry: &Value| match entry {
            Value::Array(Some(fields)) => match fields.as_slice() {
                [Value::Bulk(Some(name)), Value::Integer(arity), ..] => {
                    Some((String::from_utf8_lossy(name).to_ascii_uppercase(), *arity))
                }
                _ => None,
            },
            _ => None,
        };
        let mut arities = Arities::default();
        let Value::Array(Some(entries)) = reply else {
            return arities;
        };
        for entry in entries {
            let Some((name, arity)) = name_and_arity(entry) else {
                continue;
            };
            if let Value::Array(Some(fields)) = entry {
                if let Some(Value::Array(Some(subcommands))) = fields.get(9) {
                    let subs = subcommands
                        .iter()
                        .filter_map(name_and_arity)
                        .filter_map(|(full, arity)| {
                            Some((full.split_once('|')?.1.to_string(), arity))
                        })
                        .collect::<HashMap<_, _>>();
                    if !subs.is_empty() {
                        arities.subcommands.insert(name.clone(), subs);
                    }
                }
            }
            arities.commands.insert(name, arity);
        }
        arities
    }

    /// Whether command `name` takes `args` (its name included): `None`
    /// if the server does not know it.
    fn take(&self, name: &str, args: &[&[u8]]) -> Option<bool> {
        let sub = match (self.subcommands.get(name), args.get(1)) {
            (Some(subs), Some(sub)) => subs.get(&String::from_utf8_lossy(sub).to_ascii_uppercase()),
            _ => None,
        };
        let count = args.len() as i64;
        let arity = *sub.or_else(|| self.commands.get(name))?;
        Some(match arity >= 0 {
            true => count == arity,
            false => count >= -arity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::stream::tests::cmd;

    fn batch(at: u64, commands: &[&[&str]]) -> Batch {
        Batch {
            at_micros: at,
            bytes: commands.iter().flat_map(|c| cmd(c)).collect(),
        }
    }

    /// Arities that take the commands these tests send, with any count.
    fn lenient() -> Arities {
        let names = [
            "SELECT", "SET", "PING", "REPLCONF", "MULTI", "EXEC", "DISCARD", "HPERSIST",
        ];
        Arities {
            commands: names.iter().map(|n| (n.to_string(), -1)).collect(),
            subcommands: HashMap::new(),
        }
    }

    /// An unnamed file of the test's.
    fn spill() -> Spill {
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::TMPFILE;
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        let fd = rustix::fs::open(std::env::temp_dir(), flags, mode).expect("a temporary file");
        Spill::new(File::from(fd))
    }

    /// A transaction is held until its EXEC, in memory while it is small
    /// and in the spill once it is not; one discarded or left open is
    /// never sent, and the spill serves the next.
    #[test]
    fn transactions_are_sent_only_whole_however_large() {
        let big = "v".repeat(HELD_MAX);
        let run = |batches: &[Batch]| {
            let mut out = Vec::new();
            let mut applier = Applier::new(100, lenient(), spill());
            applier.apply(batches, &mut out).unwrap();
            applier.finish().unwrap();
            out
        };
        let small_discarded = run(&[batch(
            10,
            &[
                &["SET", "a", "1"],
                &["MULTI"],
                &["SET", "b", "2"],
                &["DISCARD"],
            ],
        )]);
        assert_eq!(small_discarded, cmd(&["SET", "a", "1"]));
        let big_discarded = run(&[
            batch(10, &[&["SET", "a", "1"], &["MULTI"], &["SET", "b", &big]]),
            batch(20, &[&["SET", "c", "3"], &["DISCARD"], &["SET", "d", "4"]]),
            batch(30, &[&["MULTI"], &["SET", "e", &big], &["EXEC"]]),
        ]);
        let kept = [
            cmd(&["SET", "a", "1"]),
            cmd(&["SET", "d", "4"]),
            cmd(&["MULTI"]),
            cmd(&["SET", "e", &big]),
            cmd(&["EXEC"]),
        ]
        .concat();
        assert_eq!(big_discarded, kept);
        let big_open = run(&[batch(10, &[&["MULTI"], &["SET", "b", &big]])]);
        assert_eq!(big_open.len(), 0);
        let big_applied = run(&[batch(
            10,
            &[
                &["MULTI"],
                &["SET", "b", &big],
                &["SET", "c", "3"],
                &["EXEC"],
            ],
        )]);
        let whole = [
            cmd(&["MULTI"]),
            cmd(&["SET", "b", &big]),
            cmd(&["SET", "c", "3"]),
            cmd(&["EXEC"]),
        ]
        .concat();
        assert_eq!(big_applied, whole);
    }

    /// The fields `HPERSIST` names are first given the latest TTL, whose
    /// time no clock has reached; nothing else changes.
    #[test]
    fn hpersist_is_sent_after_the_latest_ttl_of_its_fields() {
        let form = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            replica_form(&stream::name(&args), &args)
        };
        let persist = ["hpersist", "h", "FIELDS", "2", "f", "g"];
        let latest = ["HPEXPIREAT", "h", "70368744177663", "FIELDS", "2", "f", "g"];
        assert_eq!(form(&persist), Some([cmd(&latest), cmd(&persist)].concat()));
        assert_eq!(form(&["HPERSIST"]), None);
        assert_eq!(form(&["HPEXPIRE", "h", "1", "FIELDS", "1", "f"]), None);
        assert_eq!(form(&["VADD", "v", "VALUES", "1", "1", "e", "CAS"]), None);
    }

    #[test]
    fn arities_are_read_off_command_and_judge_the_arguments() {
        use crate::redis::resp::Value;
        let entry = |name: &str, arity, subcommands: Vec<Value>| {
            let mut fields = vec![
                Value::Bulk(Some(name.as_bytes().to_vec())),
                Value::Integer(arity),
            ];
            fields.extend((2..9).map(|_| Value::Array(Some(vec![]))));
            fields.push(Value::Array(Some(subcommands)));
            Value::Array(Some(fields))
        };
        let reply = Value::Array(Some(vec![
            entry("get", 2, vec![]),
            entry("set", -3, vec![]),
            entry("xgroup", -2, vec![entry("xgroup|destroy", 4, vec![])]),
            Value::Integer(7),
        ]));
        let arities = Arities::of(&reply);
        assert_eq!(arities.commands.len(), 3);
        let takes = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            arities.take(&stream::name(&args), &args)
        };
        let (yes, no) = (Some(true), Some(false));
        assert!(takes(&["GET", "k"]) == yes && takes(&["GET", "k", "x"]) == no);
        assert!(takes(&["SET", "k", "v"]) == yes && takes(&["set", "k", "v", "NX", "GET"]) == yes);
        assert_eq!(takes(&["SET", "k"]), no);
        assert_eq!(takes(&["XGROUP", "destroy", "k", "g"]), yes);
        assert_eq!(takes(&["XGROUP", "DESTROY", "k", "g", "extra"]), no);
        assert_eq!(
            takes(&["XGROUP", "NEWSUB", "k"]),
            yes,
            "the command's own count"
        );
        assert_eq!(takes(&["MODULE.CMD"]), None);
        let refusal = |command: &[&str]| {
            let batches = [batch(10, &[command])];
            let err = Applier::new(100, arities.clone(), spill())
                .apply(&batches, &mut Vec::new())
                .unwrap_err();
            assert_eq!(err.exit_code(), 5);
            err.message().to_string()
        };
        assert!(refusal(&["SET", "a"]).contains("SET with 1 arguments"));
        assert!(refusal(&["JSON.SET", "d", "$", "1"])
            .contains("JSON.SET, which the target's server does not know"));
    }

    #[test]
    fn commands_up_to_the_moment_and_only_whole_transactions() {
        let batches = [
            batch(10, &[&["SELECT", "0"], &["SET", "a", "1"], &["PING"]]),
            batch(20, &[&["MULTI"], &["SET", "b", "2"]]),
            batch(30, &[&["EXEC"], &["REPLCONF", "GETACK", "*"]]),
            batch(40, &[&["MULTI"], &["SET", "c", "3"]]),
            batch(50, &[&["EXEC"]]),
        ];
        let run = |at| {
            let mut out = Vec::new();
            let mut applier = Applier::new(at, lenient(), spill());
            applier.apply(&batches, &mut out).unwrap();
            applier.finish().unwrap();
            (out, applier.applied_until)
        };
        let (out, until) = run(25);
        assert_eq!(
            out,
            [cmd(&["SELECT", "0"]), cmd(&["SET", "a", "1"])].concat()
        );
        assert_eq!(until, Some(10));
        let (out, until) = run(45);
        let whole_b = [cmd(&["MULTI"]), cmd(&["SET", "b", "2"]), cmd(&["EXEC"])].concat();
        assert_eq!(
            out,
            [cmd(&["SELECT", "0"]), cmd(&["SET", "a", "1"]), whole_b].concat()
        );
        assert_eq!(until, Some(30));
        assert_eq!(run(5).0, b"");
    }

    /// What a replica's server does with them: a MULTI inside a
    /// transaction is refused and the transaction goes on; a DISCARD drops
    /// what was queued, and outside a transaction is refused.
    #[test]
    fn nested_multi_and_discard_as_a_replica_applies_them() {
        let batches = [batch(
            10,
            &[
                &["MULTI"],
                &["SET", "c", "discarded"],
                &["DISCARD"],
                &["SET", "d", "1"],
                &["DISCARD"],
                &["MULTI"],
                &["SET", "a", "1"],
                &["MULTI"],
                &["SET", "b", "2"],
                &["EXEC"],
            ],
        )];
        let mut out = Vec::new();
        let mut applier = Applier::new(100, lenient(), spill());
        applier.apply(&batches, &mut out).unwrap();
        applier.finish().unwrap();
        let transaction = [
            cmd(&["MULTI"]),
            cmd(&["SET", "a", "1"]),
            cmd(&["SET", "b", "2"]),
            cmd(&["EXEC"]),
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&[cmd(&["SET", "d", "1"]), transaction].concat())
        );
        assert_eq!(applier.applied_until, Some(10));
    }

    /// A database the replay server lacks would be refused by it, and the
    /// commands after a SELECT written into the database before.
    #[test]
    fn a_database_the_server_lacks_is_refused() {
        let applies = |index: &str| {
            let batches = [batch(10, &[&["SELECT", index], &["SET", "a", "1"]])];
            Applier::new(100, lenient(), spill())
                .apply(&batches, &mut Vec::new())
                .map(drop)
        };
        assert!(applies("0").is_ok() && applies("15").is_ok());
        for bad in ["16", "20", "-1", "x", "+5", "05", ""] {
            let err = applies(bad).unwrap_err();
            assert_eq!(err.exit_code(), 5);
            assert!(err
                .message()
                .contains("a database the replay server does not have"));
        }
        let names = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            names_only_our_databases(&stream::name(&args), &args)
        };
        assert!(names(&["MOVE", "k", "15"]) && !names(&["move", "k", "20"]));
        assert!(names(&["SWAPDB", "0", "1"]) && !names(&["SWAPDB", "0", "20"]));
        assert!(!names(&["SWAPDB", "16", "0"]));
        assert!(names(&["COPY", "a", "b", "db", "3", "REPLACE"]));
        assert!(!names(&["COPY", "a", "b", "REPLACE", "DB", "20"]));
        assert!(names(&["COPY", "db", "db"]), "keys named db");
        assert!(names(&["SET", "k", "99"]));
    }

    #[test]
    fn a_stream_with_commands_no_primary_sends_is_refused() {
        for bad in [
            &["CONFIG", "SET", "dir", "/etc"][..],
            &["module", "load", "/x.so"],
            &["SAVE"],
            &["migrate", "127.0.0.1", "6379", "k", "0", "1000", "COPY"],
            &[
                "EVAL",
                "return redis.call('MIGRATE', '10.0.0.1', 1, 'k', 0, 9)",
                "0",
            ],
            &["fcall_ro", "f", "0"],
        ] {
            let batches = [batch(10, &[&["SET", "a", "1"], bad])];
            let err = Applier::new(100, lenient(), spill())
                .apply(&batches, &mut Vec::new())
                .unwrap_err();
            assert_eq!(err.exit_code(), 5, "{bad:?}");
        }
    }
}
