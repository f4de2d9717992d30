//! The archived write stream, as bytes: how what a primary sends its replicas
//! is cut into whole commands, stamped with the time it arrived, and laid out
//! in a chunk. A chunk's plain bytes are the magic, then batches: the receive
//! time (µs since the epoch, u64 LE), a length (u32 LE) and that many bytes
//! of whole RESP commands, exactly as the primary sent them (PINGs and
//! REPLCONFs included: replication offsets count every byte).

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"RBKSTRM1";
const BATCH_HEAD: usize = 12;
/// Redis's own `proto-max-bulk-len` default: one argument is at most this.
const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Arguments of one command (MSET of a million keys fits).
const MAX_ARGS: u64 = 16 * 1024 * 1024;
/// One length line (`*N` or `$N`) with its CRLF.
const MAX_LINE: usize = 24;

/// Whole commands that arrived together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub at_micros: u64,
    pub bytes: Vec<u8>,
}

/// A chunk's plain bytes.
pub fn encode_chunk(batches: &[Batch]) -> Vec<u8> {
    let size: usize = batches.iter().map(|b| BATCH_HEAD + b.bytes.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size);
    out.extend_from_slice(MAGIC);
    for batch in batches {
        out.extend_from_slice(&batch.at_micros.to_le_bytes());
        let len = u32::try_from(batch.bytes.len()).expect("batches are cut below 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&batch.bytes);
    }
    out
}

/// The batches of a chunk's plain bytes (already authenticated: a malformed
/// one is still refused, never half read).
pub fn decode_chunk(payload: &[u8]) -> Result<Vec<Batch>> {
    let bad = |what: &str| Error::integrity(format!("an archived chunk is malformed: {what}"));
    let mut rest = payload
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("no magic"))?;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        if rest.len() < BATCH_HEAD {
            return Err(bad("a batch header is cut"));
        }
        let at_micros = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
        let bytes = rest[BATCH_HEAD..]
            .get(..len)
            .ok_or_else(|| bad("a batch is cut"))?;
        batches.push(Batch {
            at_micros,
            bytes: bytes.to_vec(),
        });
        rest = &rest[BATCH_HEAD + len..];
    }
    Ok(batches)
}

/// The length of the whole command at the start of `buf`: `Ok(None)` when
/// more bytes are needed, an error when it is not a RESP array of bulk
/// strings (all a primary sends once the stream has begun).
pub fn command_len(buf: &[u8]) -> std::result::Result<Option<usize>, String> {
    let Some((count, mut at)) = length_line(buf, 0, b'*')? else {
        return Ok(None);
    };
    if count > MAX_ARGS {
        return Err(format!("a command of {count} arguments"));
    }
    for _ in 0..count {
        let Some((len, next)) = length_line(buf, at, b'$')? else {
            return Ok(None);
        };
        if len > MAX_BULK {
            return Err(format!("an argument of {len} bytes"));
        }
        let end = next + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err("an argument not followed by CRLF".into());
        }
        at = end + 2;
    }
    Ok(Some(at))
}

/// `<prefix><digits>\r\n` at `at`: the number and where the line ends.
fn length_line(
    buf: &[u8],
    at: usize,
    prefix: u8,
) -> std::result::Result<Option<(u64, usize)>, String> {
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    if first != prefix {
        return Err(format!(
            "expected {:?}, found byte {first:#04x}",
            prefix as char
        ));
    }
    let window = &buf[at..buf.len().min(at + MAX_LINE)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return match window.len() == MAX_LINE {
            true => Err("a length line too long".into()),
            false => Ok(None),
        };
    };
    match window.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err("a length line without LF".into()),
    }
    let digits = std::str::from_utf8(&window[1..cr]).map_err(|_| "a bad length".to_string())?;
    let n = digits
        .parse::<u64>()
        .map_err(|_| format!("a bad length {digits:?}"))?;
    Ok(Some((n, at + cr + 2)))
}

/// The arguments of one whole command (as `command_len` measured it).
pub fn arguments(command: &[u8]) -> Vec<&[u8]> {
    let mut args = Vec::new();
    let Ok(Some((count, mut at))) = length_line(command, 0, b'*') else {
        return args;
    };
    for _ in 0..count {
        let Ok(Some((len, next))) = length_line(command, at, b'$') else {
            break;
        };
        let end = next + len as usize;
        args.push(&command[next..end]);
        at = end + 2;
    }
    args
}

/// The name, upper-cased, of the command whose `arguments` these are.
pub fn name(arguments: &[&[u8]]) -> String {
    arguments
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Collects bytes as they arrive and hands back the whole commands among
/// them, keeping a command cut by a read until the rest comes. One command
/// may be at most `max` bytes: the length it announces is checked before
/// its bytes are waited for, so a primary cannot make us hold more.
pub struct Splitter {
    buf: Vec<u8>,
    max: u64,
    /// Bytes the command being received needs at least: no use parsing it
    /// again before (a large value arrives in many reads).
    need: usize,
    /// How far the command at the start of `buf` is parsed.
    progress: Progress,
}

/// The parse of one incomplete command, kept across pushes so that each
/// argument is parsed once: a primary may send a command of a million empty
/// arguments one per read, and parsing it again from its first argument at
/// every read made the work grow with the square of its length.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Its argument count, once its `*N` line has arrived and passed.
    count: Option<u64>,
    /// Arguments whole so far.
    done: u64,
    /// Where the next argument starts, from the command's first byte.
    at: usize,
}

/// A command longer than a splitter takes.
#[derive(Debug)]
pub struct TooLong {
    pub max: u64,
}

impl Splitter {
    pub fn new(max: u64) -> Splitter {
        Splitter {
            buf: Vec::new(),
            max,
            need: 0,
            progress: Progress::default(),
        }
    }

    /// Whether a command is half received.
    pub fn holds_part(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Add `bytes`; returns the whole commands now complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<std::result::Result<Vec<u8>, TooLong>> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < self.need {
            return Ok(Ok(Vec::new()));
        }
        let mut whole = 0;
        loop {
            let rest = &self.buf[whole..];
            match measure(rest, self.max, &mut self.progress)
                .map_err(|e| Error::redis(format!("the replication stream is not RESP: {e}")))?
            {
                Measured::Whole(len) => whole += len,
                Measured::Needs(at_least) => {
                    self.need = at_least;
                    break;
                }
                Measured::TooLong => return Ok(Err(TooLong { max: self.max })),
            }
        }
        if whole == 0 {
            return Ok(Ok(Vec::new()));
        }
        let rest = self.buf.split_off(whole);
        Ok(Ok(std::mem::replace(&mut self.buf, rest)))
    }
}

enum Measured {
    Whole(usize),
    /// Not complete; at least this many bytes are needed.
    Needs(usize),
    TooLong,
}

/// `command_len` with a cap on the command's size and a hint of what an
/// incomplete one needs, resuming where `progress` left the command at the
/// start of `buf` (and leaving it there again when it is not whole yet).
fn measure(buf: &[u8], max: u64, progress: &mut Progress) -> std::result::Result<Measured, String> {
    let incomplete = |at: usize| Ok(Measured::Needs(at.max(buf.len() + 1)));
    let count = match progress.count {
        Some(count) => count,
        None => {
            let Some((count, at)) = length_line(buf, 0, b'*')? else {
                return incomplete(0);
            };
            // Every argument takes at least `$0\r\n\r\n`.
            if count > MAX_ARGS || count.saturating_mul(6) > max {
                return Ok(Measured::TooLong);
            }
            *progress = Progress {
                count: Some(count),
                done: 0,
                at,
            };
            count
        }
    };
    while progress.done < count {
        let Some((len, next)) = length_line(buf, progress.at, b'$')? else {
            return incomplete(0);
        };
        let end = (next as u64).saturating_add(len).saturating_add(2);
        if len > MAX_BULK || end > max {
            return Ok(Measured::TooLong);
        }
        let end = end as usize;
        if buf.len() < end {
            return incomplete(end);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err("an argument not followed by CRLF".into());
        }
        progress.at = end;
        progress.done += 1;
    }
    let whole = progress.at;
    *progress = Progress::default();
    Ok(Measured::Whole(whole))
}

/// Each whole command in `bytes`, in order.
pub fn commands(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = command_len(&bytes[at..]).ok()??;
        let command = &bytes[at..at + len];
        at += len;
        Some(command)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `args` as a primary sends a command (RESP's own encoder).
    pub(crate) fn cmd(args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        crate::redis::resp::write_command(&mut out, &args).expect("writing to a Vec");
        out
    }

    #[test]
    fn whole_commands_are_found_however_the_bytes_arrive() {
        let stream = [
            cmd(&["SELECT", "0"]),
            cmd(&["SET", "k", "v\r\nwith crlf"]),
            cmd(&["PING"]),
        ]
        .concat();
        for step in [1, 2, 3, 7, stream.len()] {
            let mut splitter = Splitter::new(1 << 20);
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                got.extend(splitter.push(piece).unwrap().unwrap());
            }
            assert_eq!(got, stream, "step {step}");
            assert!(splitter.buf.is_empty());
        }
        let names: Vec<String> = commands(&stream).map(|c| name(&arguments(c))).collect();
        assert_eq!(names, ["SELECT", "SET", "PING"]);
        assert_eq!(
            arguments(&cmd(&["SET", "k", "v"])),
            [b"SET".as_slice(), b"k", b"v"]
        );
    }

    #[test]
    fn a_command_over_the_cap_is_refused_before_its_bytes_are_held() {
        let mut splitter = Splitter::new(64);
        assert!(splitter.push(&cmd(&["SET", "k", "v"])).unwrap().is_ok());
        // Announced, not sent: refused at once.
        let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n";
        assert!(splitter.push(head).unwrap().is_err());
        let mut splitter = Splitter::new(64);
        assert!(splitter.push(b"*99999\r\n").unwrap().is_err());
        // A large value in many pieces is parsed once it is all there.
        let big = cmd(&["SET", "k", &"x".repeat(100_000)]);
        let mut splitter = Splitter::new(1 << 20);
        let mut got = Vec::new();
        for piece in big.chunks(1000) {
            got.extend(splitter.push(piece).unwrap().unwrap());
        }
        assert_eq!(got, big);
    }

    #[test]
    fn a_command_arriving_one_argument_per_read_is_parsed_once() {
        // A primary may send a command of many empty arguments one per read;
        // parsing it again from its first argument at every read would take
        // minutes here (quadratic), once it takes milliseconds.
        const ARGS: usize = 200_000;
        let mut splitter = Splitter::new(8 << 20);
        let head = format!("*{ARGS}\r\n");
        assert!(splitter.push(head.as_bytes()).unwrap().unwrap().is_empty());
        let started = std::time::Instant::now();
        let bound = std::time::Duration::from_secs(5);
        for i in 0..ARGS {
            let got = splitter.push(b"$0\r\n\r\n").unwrap().unwrap();
            assert_eq!(got.is_empty(), i + 1 < ARGS, "argument {i}");
            assert!(
                started.elapsed() < bound,
                "only {i} of {ARGS} arguments after {bound:?}"
            );
        }
        assert!(splitter.buf.is_empty());
        // The next command is found as before.
        let ping = cmd(&["PING"]);
        assert_eq!(splitter.push(&ping).unwrap().unwrap(), ping);
    }

    mod properties {
        use super::*;
        use crate::testing::proptest_config as config;
        use proptest::prelude::*;

        fn command() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..6).prop_map(
                |args| {
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    let mut out = Vec::new();
                    crate::redis::resp::write_command(&mut out, &args).expect("to a Vec");
                    out
                },
            )
        }

        proptest! {
            #![proptest_config(config(128))]

            /// Where the reads cut the stream changes nothing, whatever
            /// part of a command the splitter kept from the read before.
            #[test]
            fn any_cut_of_the_stream_gives_the_same_commands(
                commands in prop::collection::vec(command(), 1..8),
                cuts in prop::collection::vec(1usize..9, 1..64),
            ) {
                let stream = commands.concat();
                let mut splitter = Splitter::new(1 << 20);
                let mut got = Vec::new();
                let mut at = 0;
                for size in cuts.iter().cycle() {
                    if at == stream.len() {
                        break;
                    }
                    let end = (at + size).min(stream.len());
                    got.extend(splitter.push(&stream[at..end]).unwrap().unwrap());
                    at = end;
                }
                prop_assert_eq!(got, stream);
                prop_assert!(splitter.buf.is_empty());
            }
        }
    }

    #[test]
    fn what_is_not_a_command_is_refused() {
        for bad in [
            &b"+OK\r\n"[..],
            b"*1\r\n+PING\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*x\r\n",
            b"*99999999999999999999999\r\n",
            b"*1\r\n$999999999999\r\n",
        ] {
            assert!(command_len(bad).is_err(), "{bad:?}");
        }
        assert_eq!(command_len(b"*1\r\n$4\r\nPI").unwrap(), None);
        assert_eq!(command_len(b"*1\r").unwrap(), None);
    }

    #[test]
    fn chunks_round_trip_and_a_cut_one_is_refused() {
        let batches = vec![
            Batch {
                at_micros: 1,
                bytes: cmd(&["SET", "a", "1"]),
            },
            Batch {
                at_micros: 2,
                bytes: cmd(&["PING"]),
            },
        ];
        let payload = encode_chunk(&batches);
        assert_eq!(decode_chunk(&payload).unwrap(), batches);
        for cut in [0, 5, MAGIC.len() + 3, payload.len() - 1] {
            assert_eq!(
                decode_chunk(&payload[..cut]).unwrap_err().exit_code(),
                5,
                "cut at {cut}"
            );
        }
        assert_eq!(decode_chunk(MAGIC).unwrap(), vec![]);
    }
}
