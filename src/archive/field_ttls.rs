//! Which replayed commands a server may get wrong because of hash-field
//! TTLs. Redis from 7.4 on decides by the clock, even as it loads an AOF,
//! whether a field's TTL has passed (`ServerBinary::judges_field_ttls_by_the_clock`):
//! a replay after a TTL takes a field for gone where the primary, at the
//! moment of its command, did not. No setting of the server's turns that
//! off, so the replay goes on and says which keys to look at. What a
//! primary sends decides it, so all that is kept is bounded: a count, and
//! the first few keys, each cut short.

use crate::redis::server::ServerBinary;
use crate::units;

/// Commands that can give hash fields TTLs, as a primary sends them (its
/// `HEXPIRE` reaches replicas as `HPEXPIREAT`; `HSETEX`, `HGETEX` from Redis
/// 8.0; `RESTORE` of a hash whose fields have TTLs).
const SETTERS: &[&str] = &[
    "HEXPIRE",
    "HEXPIREAT",
    "HGETEX",
    "HPEXPIRE",
    "HPEXPIREAT",
    "RESTORE",
    "RESTORE-ASKING",
];
/// Commands whose effect depends on whether a field's TTL has passed.
const CLOCK_BOUND: &[&str] = &[
    "HEXPIRE",
    "HEXPIREAT",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HSETNX",
    "RESTORE",
    "RESTORE-ASKING",
];
/// How many keys are kept to be named, and how much of each.
const KEYS_KEPT: usize = 5;
const KEY_BYTES_KEPT: usize = 256;

/// What one command means here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Note {
    sets_ttls: bool,
    /// The key (cut short) whose fields it may get wrong, if it may.
    clock_bound: Option<Vec<u8>>,
}

impl Note {
    /// Of the command `args` (its name upper-cased in `name`); `None` if it
    /// has nothing to do with field TTLs.
    pub fn of(name: &str, args: &[&[u8]]) -> Option<Note> {
        // HSETEX's options: between its key and `FIELDS`.
        let has = |words: &[&str]| {
            args.iter()
                .skip(2)
                .take_while(|a| !a.eq_ignore_ascii_case(b"FIELDS"))
                .any(|a| words.iter().any(|w| a.eq_ignore_ascii_case(w.as_bytes())))
        };
        let (sets_ttls, clock_bound) = match name {
            // Redis 8 sends HINCRBYFLOAT as `HSETEX key KEEPTTL ...`, which
            // sets no TTL: only a TTL given, or a condition, counts.
            "HSETEX" => (
                has(&["EX", "PX", "EXAT", "PXAT"]),
                has(&["FNX", "FXX"]).then_some(1),
            ),
            // A SORT reading fields (`BY`/`GET h*->f`) stores what it read.
            "SORT" => (
                false,
                args.iter()
                    .any(|a| contains(a, b"->"))
                    .then(|| store_key(args)),
            ),
            name => (
                SETTERS.contains(&name),
                CLOCK_BOUND.contains(&name).then_some(1),
            ),
        };
        let clock_bound = clock_bound.and_then(|at| args.get(at)).map(|key| cut(key));
        (sets_ttls || clock_bound.is_some()).then_some(Note {
            sets_ttls,
            clock_bound,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where a SORT stores: the argument after `STORE` (its key otherwise).
fn store_key(args: &[&[u8]]) -> usize {
    args.iter()
        .position(|a| a.eq_ignore_ascii_case(b"STORE"))
        .map_or(1, |at| at + 1)
}

fn cut(key: &[u8]) -> Vec<u8> {
    key[..key.len().min(KEY_BYTES_KEPT)].to_vec()
}

/// What the replayed commands did with field TTLs.
#[derive(Debug, Default)]
pub struct FieldTtls {
    /// Whether a command gave a field a TTL.
    pub set: bool,
    /// Commands that may be got wrong, their first keys, and whether there
    /// were others.
    commands: u64,
    first: Vec<Vec<u8>>,
    others: bool,
}

impl FieldTtls {
    /// Count the commands of `notes`, which were replayed.
    pub fn add_all(&mut self, notes: impl IntoIterator<Item = Note>) {
        for note in notes {
            self.add(note);
        }
    }

    /// Count what `other` counted (a transaction's, at its EXEC).
    pub fn merge(&mut self, other: FieldTtls) {
        self.set |= other.set;
        self.commands += other.commands;
        for key in other.first {
            self.keep(key);
        }
        self.others |= other.others;
    }

    /// Count `note`'s command, which was replayed.
    pub fn add(&mut self, note: Note) {
        self.set |= note.sets_ttls;
        let Some(key) = note.clock_bound else {
            return;
        };
        self.commands += 1;
        self.keep(key);
    }

    fn keep(&mut self, key: Vec<u8>) {
        let known = self.first.contains(&key);
        if !known && self.first.len() < KEYS_KEPT {
            self.first.push(key);
        } else if !known {
            self.others = true;
        }
    }

    /// The warning for a replay by `binary` of a base with
    /// `hashes_with_ttls` hashes whose fields have TTLs, if one is owed.
    pub fn warning(&self, binary: &ServerBinary, hashes_with_ttls: u64) -> Option<String> {
        let owed = binary.judges_field_ttls_by_the_clock()
            && (hashes_with_ttls > 0 || self.set)
            && self.commands > 0;
        if !owed {
            return None;
        }
        let named: Vec<String> = self
            .first
            .iter()
            .map(|key| {
                let text = String::from_utf8_lossy(key);
                let short: String = text.chars().take(64).collect();
                format!("{:?}", units::printable(&short))
            })
            .collect();
        let others = if self.others { " and other keys" } else { "" };
        Some(format!(
            "{} {} judges hash-field TTLs by the clock as it replays: {} commands replayed \
             (HPERSIST, HPEXPIREAT, HINCRBY, HSETNX and the like) take a field whose TTL has \
             passed since the primary ran them for gone; fields with TTLs may be missing or \
             wrong in {}{others}",
            binary.flavor.name(),
            binary.version,
            self.commands,
            named.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::server::Flavor;

    fn note(args: &[&str]) -> Option<Note> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        Note::of(
            &String::from_utf8_lossy(args[0]).to_ascii_uppercase(),
            &args,
        )
    }

    fn binary(flavor: Flavor, version: &str) -> ServerBinary {
        ServerBinary {
            program: "redis-server".into(),
            flavor,
            version: version.into(),
        }
    }

    fn replayed(commands: &[&[&str]]) -> FieldTtls {
        let mut ttls = FieldTtls::default();
        for command in commands {
            if let Some(n) = note(command) {
                ttls.add(n);
            }
        }
        ttls
    }

    #[test]
    fn what_each_command_means() {
        assert_eq!(note(&["SET", "k", "v"]), None);
        assert_eq!(note(&["HSET", "h", "f", "v"]), None);
        let bound = |key: &str| Note {
            sets_ttls: false,
            clock_bound: Some(key.as_bytes().to_vec()),
        };
        assert_eq!(note(&["hincrby", "h", "f", "1"]), Some(bound("h")));
        assert_eq!(note(&["HSETNX", "h", "f", "v"]), Some(bound("h")));
        let expire = note(&["HPEXPIREAT", "h", "99", "FIELDS", "1", "f"]).unwrap();
        assert!(expire.sets_ttls && expire.clock_bound.is_some());
        assert!(note(&["RESTORE", "h", "0", "payload"]).unwrap().sets_ttls);
        // Redis 8's form of HINCRBYFLOAT sets no TTL and checks none.
        assert_eq!(
            note(&["HSETEX", "p", "KEEPTTL", "FIELDS", "1", "a", "2.5"]),
            None
        );
        let given = note(&["HSETEX", "p", "PX", "100", "FIELDS", "1", "a", "1"]).unwrap();
        assert!(given.sets_ttls && given.clock_bound.is_none());
        assert_eq!(
            note(&["HSETEX", "p", "FNX", "FIELDS", "1", "a", "1"]),
            Some(bound("p"))
        );
        // A key, field or value that is also one of its words is not one.
        assert_eq!(note(&["HSETEX", "PX", "FIELDS", "1", "FNX", "EX"]), None);
        assert_eq!(
            note(&["SORT", "ids", "BY", "nosort", "GET", "h*->f", "STORE", "dst"]),
            Some(bound("dst"))
        );
        assert_eq!(note(&["SORT", "ids", "STORE", "dst"]), None);
    }

    #[test]
    fn keys_are_kept_few_and_short() {
        let long = "k".repeat(10_000);
        let mut commands: Vec<Vec<&str>> = vec![vec!["HPERSIST", &long]];
        for key in ["a", "b", "a", "c", "d", "e", "f"] {
            commands.push(vec!["HPERSIST", key]);
        }
        let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
        let ttls = replayed(&commands);
        assert_eq!(ttls.commands, 8);
        assert_eq!(ttls.first.len(), KEYS_KEPT);
        assert_eq!(ttls.first[0].len(), KEY_BYTES_KEPT);
        assert!(ttls.others, "e and f were left out");
    }

    #[test]
    fn a_transactions_tally_merges_into_the_replays() {
        let mut tally = replayed(&[&["HPERSIST", "a"], &["HPERSIST", "b"]]);
        tally.merge(replayed(&[
            &["HPEXPIREAT", "b", "99", "FIELDS", "1", "f"],
            &["HPERSIST", "c"],
            &["HPERSIST", "d"],
            &["HPERSIST", "e"],
            &["HPERSIST", "f"],
        ]));
        assert!(tally.set);
        assert_eq!(tally.commands, 7);
        assert_eq!(tally.first, [b"a", b"b", b"c", b"d", b"e"]);
        assert!(tally.others);
    }

    #[test]
    fn a_warning_only_where_field_ttls_and_a_clock_judging_server_meet() {
        let redis = binary(Flavor::Redis, "7.4.1");
        let counted = replayed(&[&["HINCRBY", "h", "f", "1"]]);
        assert_eq!(counted.warning(&redis, 0), None, "no TTL anywhere");
        let warning = counted.warning(&redis, 1).expect("the base has field TTLs");
        assert!(warning.contains("Redis 7.4.1") && warning.contains("in \"h\""));
        let set_in_stream = replayed(&[
            &["HPEXPIREAT", "t", "99", "FIELDS", "1", "f"],
            &["HINCRBY", "h", "f", "1"],
        ]);
        assert!(set_in_stream.warning(&redis, 0).is_some());
        for other in [
            binary(Flavor::Redis, "7.2.4"),
            binary(Flavor::Valkey, "9.0.0"),
        ] {
            assert_eq!(set_in_stream.warning(&other, 1), None);
        }
        assert_eq!(replayed(&[]).warning(&redis, 5), None, "nothing to name");
        let escaped = replayed(&[&["HPERSIST", "\u{1b}[31m\u{202e}"]]);
        let warning = escaped.warning(&redis, 1).unwrap();
        assert!(!warning.contains('\u{1b}') && !warning.contains('\u{202e}'));
    }
}
