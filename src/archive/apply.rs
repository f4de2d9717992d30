//! Which archived commands a replay applies, and as what. Whatever
//! answered on Redis's port chose the stream, and a server loading an AOF
//! runs what it is given without the checks a replica makes. So a command
//! a primary never sends, or one with a number of arguments the target's
//! server does not take, is refused here (exit 5); a transaction goes in
//! whole or not at all, as a replica applies it; and a command a replica
//! applies but a loading server cannot is written in a form it can.

use super::field_ttls::{FieldTtls, Note};
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
/// The policy: the replay server loads the stream as an AOF, and a server
/// loading an AOF runs every command in it, whatever its flags. So every
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
    // Scripts, which may call MIGRATE.
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// A command a replica applies as its primary sent it but a server loading
/// an AOF cannot, in a form with the same effect that it can; `None` where
/// the command stands as it is. `VADD … CAS` (Redis 8) would block the
/// loading client, which aborts the server; CAS only asks for the threaded
/// path. Only the option is dropped: an element, or an option's value, may
/// be the word CAS.
fn loadable_form(name: &str, args: &[&[u8]]) -> Option<Vec<u8>> {
    if name != "VADD" {
        return None;
    }
    // As Redis compares them (strcasecmp): up to a first NUL byte.
    let word = |at: usize, w: &str| {
        args.get(at).is_some_and(|a| {
            let c_string = a.split(|&b| b == 0).next().unwrap_or_default();
            c_string.eq_ignore_ascii_case(w.as_bytes())
        })
    };
    // VADD key [REDUCE dim] (FP32 blob | VALUES n v1..vn) element [options]
    let mut at = 2;
    if word(at, "REDUCE") {
        at += 2;
    }
    if word(at, "FP32") {
        at += 2;
    } else if word(at, "VALUES") {
        let n: usize = std::str::from_utf8(args.get(at + 1)?).ok()?.parse().ok()?;
        at = at.checked_add(2)?.checked_add(n)?;
    } else {
        return None;
    }
    at += 1; // the element
    let mut kept: Vec<&[u8]> = args.get(..at)?.to_vec();
    let mut dropped = false;
    while at < args.len() {
        if word(at, "CAS") {
            dropped = true;
            at += 1;
        } else if word(at, "EF") || word(at, "SETATTR") || word(at, "M") {
            kept.extend(args.get(at..at + 2)?);
            at += 2;
        } else {
            kept.push(args[at]);
            at += 1;
        }
    }
    if !dropped {
        return None;
    }
    let mut command = Vec::new();
    crate::redis::resp::write_command(&mut command, &kept).ok()?;
    Some(command)
}

/// Where the replayed commands go. A transaction's commands are held until
/// its EXEC, up to `HELD_MAX`, then written as they come: a primary may
/// send one that never ends, and holding it all would let it take root's
/// memory. What was written of one that is discarded, or still open at the
/// moment asked for, is cut off again.
pub(super) trait ReplayOut: Write {
    /// Bytes written so far.
    fn position(&mut self) -> std::io::Result<u64>;
    /// Forget everything written after `position`.
    fn cut_at(&mut self, position: u64) -> std::io::Result<()>;
}

/// How much of an open transaction is held in memory.
const HELD_MAX: usize = 1 << 20;

impl ReplayOut for BufWriter<File> {
    fn position(&mut self) -> std::io::Result<u64> {
        let buffered = self.buffer().len() as u64;
        Ok(self.get_mut().stream_position()? + buffered)
    }

    fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
        self.flush()?;
        let file = self.get_mut();
        file.set_len(position)?;
        file.seek(SeekFrom::Start(position)).map(drop)
    }
}

impl ReplayOut for Vec<u8> {
    fn position(&mut self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
        self.truncate(position as usize);
        Ok(())
    }
}

fn write_failed(e: std::io::Error) -> Error {
    Error::other(format!("writing the replay: {e}"))
}

/// A transaction from its MULTI on, until its EXEC or DISCARD.
#[derive(Default)]
struct OpenTransaction {
    /// Its commands, while they are at most `HELD_MAX` bytes.
    held: Vec<u8>,
    /// Where its MULTI was written, once it outgrew `held`.
    written_from: Option<u64>,
    /// What its commands would add to the replay's field-TTL tally.
    field_ttls: FieldTtls,
}

impl OpenTransaction {
    fn push(&mut self, command: &[u8], out: &mut impl ReplayOut) -> Result<()> {
        if self.written_from.is_none() && self.held.len() + command.len() > HELD_MAX {
            self.written_from = Some(out.position().map_err(write_failed)?);
            out.write_all(&self.held).map_err(write_failed)?;
            self.held = Vec::new();
        }
        match self.written_from {
            Some(_) => out.write_all(command).map_err(write_failed),
            None => {
                self.held.extend_from_slice(command);
                Ok(())
            }
        }
    }

    /// Its EXEC came: it is applied whole.
    fn commit(self, exec: &[u8], out: &mut impl ReplayOut, tally: &mut FieldTtls) -> Result<()> {
        out.write_all(&self.held).map_err(write_failed)?;
        out.write_all(exec).map_err(write_failed)?;
        tally.merge(self.field_ttls);
        Ok(())
    }

    /// It is discarded, or still open at the end: none of it is applied.
    fn abandon(self, out: &mut impl ReplayOut) -> Result<()> {
        match self.written_from {
            Some(multi) => out.cut_at(multi).map_err(write_failed),
            None => Ok(()),
        }
    }
}

/// Writes the commands received at or before `at`, whole transactions only.
pub(super) struct Applier {
    at: u64,
    /// The replay server's commands: one with the wrong number of
    /// arguments is refused here, since a server loading an AOF does not
    /// count them (a replica refuses it).
    arities: Arities,
    transaction: Option<OpenTransaction>,
    pub(super) commands: u64,
    pub(super) applied_until: Option<u64>,
    /// What the replayed commands did with hash-field TTLs.
    pub(super) field_ttls: FieldTtls,
}

impl Applier {
    pub(super) fn new(at: u64, arities: Arities) -> Applier {
        Applier {
            at,
            arities,
            transaction: None,
            commands: 0,
            applied_until: None,
            field_ttls: FieldTtls::default(),
        }
    }

    /// Apply `batches`; false once a batch came after `at`.
    pub(super) fn apply(&mut self, batches: &[Batch], out: &mut impl ReplayOut) -> Result<bool> {
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
                if !self.arities.take(&name, &args) {
                    return Err(Error::integrity(format!(
                        "the archived stream holds {name} with {} arguments, which no server takes: whatever answered on Redis's port sent it; not replayed",
                        args.len() - 1
                    )));
                }
                let loadable = loadable_form(&name, &args);
                let command = loadable.as_deref().unwrap_or(command);
                match name.as_str() {
                    "PING" | "REPLCONF" => continue,
                    // As a replica's server takes them: a MULTI inside a
                    // transaction is refused and the transaction goes on;
                    // a DISCARD drops what was queued (outside one, it is
                    // refused).
                    "MULTI" if self.transaction.is_some() => continue,
                    "MULTI" => {
                        let mut open = OpenTransaction::default();
                        open.push(command, out)?;
                        self.transaction = Some(open);
                    }
                    "DISCARD" => self.abandon_transaction(out)?,
                    "EXEC" => match self.transaction.take() {
                        Some(open) => {
                            open.commit(command, out, &mut self.field_ttls)?;
                            self.commands += 1;
                        }
                        None => {
                            return Err(Error::integrity(
                                "the archived stream has an EXEC without MULTI",
                            ))
                        }
                    },
                    _ => {
                        let note = Note::of(&name, &args);
                        match &mut self.transaction {
                            Some(open) => {
                                open.push(command, out)?;
                                open.field_ttls.add_all(note);
                            }
                            None => {
                                out.write_all(command).map_err(write_failed)?;
                                self.commands += 1;
                                self.field_ttls.add_all(note);
                            }
                        }
                    }
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
    pub(super) fn finish(&mut self, out: &mut impl ReplayOut) -> Result<()> {
        if self.transaction.is_some() {
            debug!("a transaction open at the moment asked for is left out");
        }
        self.abandon_transaction(out)
    }

    fn abandon_transaction(&mut self, out: &mut impl ReplayOut) -> Result<()> {
        match self.transaction.take() {
            Some(open) => open.abandon(out),
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

    /// Whether command `name` takes `args` (its name included); one the
    /// server does not know is its to refuse as it loads.
    fn take(&self, name: &str, args: &[&[u8]]) -> bool {
        let sub = match (self.subcommands.get(name), args.get(1)) {
            (Some(subs), Some(sub)) => subs.get(&String::from_utf8_lossy(sub).to_ascii_uppercase()),
            _ => None,
        };
        let count = args.len() as i64;
        match sub.or_else(|| self.commands.get(name)) {
            Some(&arity) if arity >= 0 => count == arity,
            Some(&arity) => count >= -arity,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::stream::tests::cmd;
    use crate::redis::server::ServerBinary;

    fn batch(at: u64, commands: &[&[&str]]) -> Batch {
        Batch {
            at_micros: at,
            bytes: commands.iter().flat_map(|c| cmd(c)).collect(),
        }
    }

    /// A Vec that counts the cuts made in it.
    #[derive(Default)]
    struct CountedCuts {
        bytes: Vec<u8>,
        cuts: usize,
    }

    impl Write for CountedCuts {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ReplayOut for CountedCuts {
        fn position(&mut self) -> std::io::Result<u64> {
            self.bytes.position()
        }

        fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
            self.cuts += 1;
            self.bytes.cut_at(position)
        }
    }

    /// A transaction is held until its EXEC while it is small (a DISCARD
    /// then costs no file work), written as it comes once it is not, and
    /// cut off again if it is discarded or left open.
    #[test]
    fn transactions_are_held_while_small_and_cut_off_once_written() {
        let big = "v".repeat(HELD_MAX);
        let run = |batches: &[Batch]| {
            let mut out = CountedCuts::default();
            let mut applier = Applier::new(100, Arities::default());
            applier.apply(batches, &mut out).unwrap();
            applier.finish(&mut out).unwrap();
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
        assert_eq!(small_discarded.bytes, cmd(&["SET", "a", "1"]));
        assert_eq!(small_discarded.cuts, 0);
        let big_discarded = run(&[
            batch(10, &[&["SET", "a", "1"], &["MULTI"], &["SET", "b", &big]]),
            batch(20, &[&["SET", "c", "3"], &["DISCARD"], &["SET", "d", "4"]]),
        ]);
        let kept = [cmd(&["SET", "a", "1"]), cmd(&["SET", "d", "4"])].concat();
        assert_eq!(big_discarded.bytes, kept);
        assert_eq!(big_discarded.cuts, 1);
        let big_open = run(&[batch(10, &[&["MULTI"], &["SET", "b", &big]])]);
        assert_eq!((big_open.bytes.len(), big_open.cuts), (0, 1));
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
        assert_eq!(big_applied.bytes, whole);
    }

    /// Only what is replayed is counted: not a discarded transaction, nor
    /// one still open at the moment, nor what came after it.
    #[test]
    fn only_the_commands_replayed_count_for_the_field_ttl_warning() {
        let redis = ServerBinary {
            program: "redis-server".into(),
            flavor: crate::redis::server::Flavor::Redis,
            version: "7.4.1".into(),
        };
        let persist = |key| ["HPERSIST", key, "FIELDS", "1", "f"];
        let batches = [
            batch(10, &[&["MULTI"], &persist("discarded"), &["DISCARD"]]),
            batch(20, &[&["MULTI"], &persist("kept"), &["EXEC"]]),
            batch(30, &[&["MULTI"], &persist("open")]),
            batch(60, &[&persist("late")]),
        ];
        let mut applier = Applier::new(50, Arities::default());
        applier.apply(&batches, &mut Vec::new()).unwrap();
        applier.finish(&mut Vec::new()).unwrap();
        let warning = applier.field_ttls.warning(&redis, 1).expect("one replayed");
        assert!(warning.contains(": 1 commands replayed"), "{warning}");
        assert!(warning.ends_with("wrong in \"kept\""), "{warning}");
    }

    #[test]
    fn vadd_is_loaded_without_cas_and_nothing_else_changes() {
        let form = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            loadable_form(&stream::name(&args), &args)
        };
        assert_eq!(
            form(&["VADD", "v", "VALUES", "2", "1", "2", "e", "CAS", "SETATTR", "CAS"]),
            Some(cmd(&[
                "VADD", "v", "VALUES", "2", "1", "2", "e", "SETATTR", "CAS"
            ]))
        );
        assert_eq!(
            form(&["vadd", "v", "REDUCE", "2", "FP32", "blob", "CAS", "cas", "EF", "5"]),
            Some(cmd(&[
                "vadd", "v", "REDUCE", "2", "FP32", "blob", "CAS", "EF", "5"
            ]))
        );
        assert_eq!(form(&["VADD", "v", "VALUES", "1", "1", "CAS"]), None);
        assert_eq!(form(&["VADD", "v", "VALUES", "9", "1", "CAS"]), None);
        let huge = u64::MAX.to_string();
        assert_eq!(form(&["VADD", "v", "VALUES", &huge, "1", "e", "CAS"]), None);
        // Redis reads its words as C strings: up to a NUL byte.
        assert_eq!(
            form(&["VADD", "v", "VALUES", "1", "1", "e", "SETATTR\0x", "CAS"]),
            None,
            "CAS is SETATTR's value here"
        );
        assert_eq!(
            form(&["VADD", "v", "VALUES", "1", "1", "e", "CAS\0x", "Q8"]),
            Some(cmd(&["VADD", "v", "VALUES", "1", "1", "e", "Q8"]))
        );
        assert_eq!(form(&["SET", "CAS", "CAS"]), None);
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
        assert!(takes(&["GET", "k"]) && !takes(&["GET", "k", "x"]));
        assert!(takes(&["SET", "k", "v"]) && takes(&["set", "k", "v", "NX", "GET"]));
        assert!(!takes(&["SET", "k"]));
        assert!(takes(&["XGROUP", "destroy", "k", "g"]));
        assert!(!takes(&["XGROUP", "DESTROY", "k", "g", "extra"]));
        assert!(takes(&["XGROUP", "NEWSUB", "k"]), "the command's own count");
        assert!(takes(&["MODULE.CMD"]), "the server's to judge");
        let batches = [batch(10, &[&["SET", "a"]])];
        let err = Applier::new(100, arities.clone())
            .apply(&batches, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().contains("SET with 1 arguments"), "{err}");
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
            let mut applier = Applier::new(at, Arities::default());
            applier.apply(&batches, &mut out).unwrap();
            applier.finish(&mut out).unwrap();
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
        let mut applier = Applier::new(100, Arities::default());
        applier.apply(&batches, &mut out).unwrap();
        applier.finish(&mut out).unwrap();
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
            let err = Applier::new(100, Arities::default())
                .apply(&batches, &mut Vec::new())
                .unwrap_err();
            assert_eq!(err.exit_code(), 5, "{bad:?}");
        }
    }
}
