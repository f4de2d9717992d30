//! RESP2, the wire format of Redis: encoding a command as an array of bulk
//! strings and decoding one reply. This module knows nothing about what the
//! commands mean. Every length that comes from the server is checked against a
//! cap before anything is allocated for it, so a confused or hostile peer cannot
//! make us reserve gigabytes or recurse without end; and a whole reply is
//! held to a budget, so many values each within its cap cannot add up to
//! gigabytes either.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// Largest bulk string we accept. Redis allows 512 MiB, but the replies this
/// tool reads (INFO, CONFIG GET, LASTSAVE) are tiny; the RDB of a replication
/// sync is streamed elsewhere and never goes through `read_value`.
pub const MAX_BULK_LEN: usize = 64 * 1024 * 1024;
/// Largest array we accept.
pub const MAX_ARRAY_LEN: usize = 1_048_576;
/// Deepest nesting of arrays we accept; a top-level array is depth 1.
pub const MAX_DEPTH: usize = 16;
/// Longest simple string, error or integer line, without its CRLF.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Most memory one decoded reply may take, counted as `Budget` charges it.
/// The replies this tool reads (PING, AUTH, INFO of one section, CONFIG GET
/// of one parameter, LASTSAVE, TIME, BGSAVE, SAVE, REPLCONF) are a few KiB;
/// the largest any of them could be is one bulk at `MAX_BULK_LEN` (an INFO
/// text), so one such bulk and 1 MiB of other values fit, and nothing more.
pub const MAX_REPLY_BYTES: usize = MAX_BULK_LEN + 1024 * 1024;
/// What each value is charged besides its bytes: a `Value` is 32 bytes, and
/// the array that holds it may have reserved as much again (it doubles).
const VALUE_CHARGE: usize = 2 * std::mem::size_of::<Value>();

/// Elements reserved up front for an array: the declared length is only a
/// promise, so memory grows with what actually arrives.
const ARRAY_PREALLOC: usize = 1024;

/// One RESP2 value. `Bulk(None)` and `Array(None)` are the nil replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum RespError {
    /// The transport failed. A read timeout keeps its `WouldBlock`/`TimedOut`
    /// kind, and a reply cut short is `UnexpectedEof`.
    Io(io::Error),
    /// The bytes are not RESP2 or break one of the caps.
    Protocol(String),
}

impl RespError {
    /// True when the read gave up because the socket timeout expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RespError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "{e}"),
            RespError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for RespError {}

impl From<io::Error> for RespError {
    fn from(e: io::Error) -> RespError {
        RespError::Io(e)
    }
}

fn protocol(msg: impl Into<String>) -> RespError {
    RespError::Protocol(msg.into())
}

fn truncated() -> RespError {
    RespError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of a reply",
    ))
}

/// Writes `args` as one RESP array of bulk strings. The whole command is built
/// in memory first so that it leaves in a single `write_all`: a command split
/// over several small writes costs a packet each with Nagle disabled.
pub fn write_command(out: &mut impl Write, args: &[&[u8]]) -> io::Result<()> {
    let payload: usize = args.iter().map(|a| a.len() + 16).sum();
    let mut buf = Vec::with_capacity(16 + payload);
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        buf.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
    out.write_all(&buf)?;
    out.flush()
}

/// Reads exactly one value. After an error the stream position is unknown, so
/// the caller must not read from the same stream again.
pub fn read_value(input: &mut impl BufRead) -> Result<Value, RespError> {
    read_at_depth(input, 0, &mut Budget::new(MAX_REPLY_BYTES))
}

/// What is left of one reply's `MAX_REPLY_BYTES`. Each cap alone (elements,
/// bulk length, depth) still lets a reply of 2^20 arrays of 2^20 values
/// through; the budget is what bounds the reply as a whole.
struct Budget {
    left: usize,
}

impl Budget {
    fn new(bytes: usize) -> Budget {
        Budget { left: bytes }
    }

    /// Takes `bytes` from what is left, before they are read or allocated.
    fn charge(&mut self, bytes: usize) -> Result<(), RespError> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            protocol(format!(
                "the reply is larger than {} MiB, the limit for one reply",
                MAX_REPLY_BYTES >> 20
            ))
        })?;
        Ok(())
    }
}

// Recursion is bounded by MAX_DEPTH, checked before descending.
fn read_at_depth(
    input: &mut impl BufRead,
    depth: usize,
    budget: &mut Budget,
) -> Result<Value, RespError> {
    let line = read_line(input)?;
    // The line's bytes cover what a simple string or an error keeps.
    budget.charge(VALUE_CHARGE + line.len())?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| protocol("empty line where a reply was expected"))?;
    match kind {
        b'+' => Ok(Value::Simple(text(rest, "simple string")?)),
        b'-' => Ok(Value::Error(text(rest, "error")?)),
        b':' => Ok(Value::Integer(parse_int(rest, "integer")?)),
        b'$' => read_bulk(input, parse_int(rest, "bulk length")?, budget),
        b'*' => {
            let len = parse_int(rest, "array length")?;
            if len == -1 {
                return Ok(Value::Array(None));
            }
            let len = length(len, MAX_ARRAY_LEN, "array")?;
            if depth + 1 > MAX_DEPTH {
                return Err(protocol(format!(
                    "arrays nested deeper than {MAX_DEPTH} levels"
                )));
            }
            let mut items = Vec::with_capacity(len.min(ARRAY_PREALLOC));
            for _ in 0..len {
                items.push(read_at_depth(input, depth + 1, budget)?);
            }
            Ok(Value::Array(Some(items)))
        }
        other => Err(protocol(format!(
            "unexpected type byte 0x{other:02x} at the start of a reply"
        ))),
    }
}

fn read_bulk(input: &mut impl BufRead, len: i64, budget: &mut Budget) -> Result<Value, RespError> {
    if len == -1 {
        return Ok(Value::Bulk(None));
    }
    let len = length(len, MAX_BULK_LEN, "bulk string")?;
    // Charged as declared: a bulk that would not fit is refused unread.
    budget.charge(len)?;
    // `take` + `read_to_end` grows the buffer with the bytes that really
    // arrive instead of trusting the declared length for the allocation.
    let mut data = Vec::with_capacity(len.min(64 * 1024));
    let got = input.by_ref().take(len as u64).read_to_end(&mut data)?;
    if got < len {
        return Err(truncated());
    }
    let mut crlf = [0u8; 2];
    input.read_exact(&mut crlf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => truncated(),
        _ => RespError::Io(e),
    })?;
    if &crlf != b"\r\n" {
        return Err(protocol("bulk string not followed by CRLF"));
    }
    Ok(Value::Bulk(Some(data)))
}

/// One CRLF-terminated line without its terminator, at most MAX_LINE_LEN long.
fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    let limit = (MAX_LINE_LEN + 2) as u64;
    input.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        if line.len() as u64 >= limit {
            return Err(protocol(format!(
                "reply line longer than {MAX_LINE_LEN} bytes"
            )));
        }
        return Err(truncated());
    }
    line.pop();
    if line.pop() != Some(b'\r') {
        return Err(protocol("line ends in LF without CR"));
    }
    Ok(line)
}

fn text(bytes: &[u8], what: &str) -> Result<String, RespError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| protocol(format!("{what} is not UTF-8")))
}

/// Strict integer: an optional minus sign and ASCII digits, nothing else
/// (`str::parse` would also take a leading `+`).
fn parse_int(bytes: &[u8], what: &str) -> Result<i64, RespError> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(protocol(format!("{what} is not a number")));
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol(format!("{what} is out of range")))
}

fn length(len: i64, max: usize, what: &str) -> Result<usize, RespError> {
    if len < 0 {
        return Err(protocol(format!("negative {what} length {len}")));
    }
    if len as u64 > max as u64 {
        return Err(protocol(format!(
            "{what} of {len} elements/bytes exceeds the limit of {max}"
        )));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Value, RespError> {
        read_value(&mut &bytes[..])
    }

    fn protocol_error(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(RespError::Protocol(m)) => m,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    fn is_truncated(bytes: &[u8]) -> bool {
        matches!(parse(bytes), Err(RespError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
    }

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &[b"SET", b"k", b"a\r\nb", b""]).unwrap();
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Value::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Value::Error("ERR no".into())
        );
        assert_eq!(parse(b":42\r\n").unwrap(), Value::Integer(42));
        assert_eq!(parse(b":-7\r\n").unwrap(), Value::Integer(-7));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").unwrap(),
            Value::Bulk(Some(b"a\r\nbc".to_vec()))
        );
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Value::Bulk(Some(vec![])));
        assert_eq!(parse(b"*0\r\n").unwrap(), Value::Array(Some(vec![])));
    }

    #[test]
    fn decodes_nil() {
        assert_eq!(parse(b"$-1\r\n").unwrap(), Value::Bulk(None));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Value::Array(None));
    }

    #[test]
    fn decodes_nested_arrays_and_leaves_the_rest_unread() {
        let mut input: &[u8] = b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n+s\r\n+next\r\n";
        let v = read_value(&mut input).unwrap();
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Integer(1),
                Value::Array(Some(vec![
                    Value::Bulk(Some(b"x".to_vec())),
                    Value::Bulk(None)
                ])),
                Value::Simple("s".into()),
            ]))
        );
        assert_eq!(
            read_value(&mut input).unwrap(),
            Value::Simple("next".into())
        );
    }

    #[test]
    fn accepts_nesting_up_to_the_cap_and_refuses_deeper() {
        let at_cap = format!("{}:1\r\n", "*1\r\n".repeat(MAX_DEPTH));
        assert!(parse(at_cap.as_bytes()).is_ok());
        let too_deep = format!("{}:1\r\n", "*1\r\n".repeat(MAX_DEPTH + 1));
        assert!(protocol_error(too_deep.as_bytes()).contains("nested"));
        // Far deeper than the cap must fail the same way, not overflow the stack.
        let very_deep = "*1\r\n".repeat(100_000);
        assert!(protocol_error(very_deep.as_bytes()).contains("nested"));
    }

    #[test]
    fn refuses_a_bulk_over_the_cap_before_reading_it() {
        let header = format!("${}\r\n", MAX_BULK_LEN + 1);
        assert!(protocol_error(header.as_bytes()).contains("exceeds"));
    }

    #[test]
    fn refuses_an_array_over_the_cap_before_reading_it() {
        let header = format!("*{}\r\n", MAX_ARRAY_LEN + 1);
        assert!(protocol_error(header.as_bytes()).contains("exceeds"));
        let huge = format!("*{}\r\n", i64::MAX);
        assert!(protocol_error(huge.as_bytes()).contains("exceeds"));
    }

    #[test]
    fn a_reply_of_values_each_within_the_caps_is_refused_past_the_budget() {
        // A million integers: 4 MiB on the wire, 32 MiB and more decoded.
        let mut many = format!("*{MAX_ARRAY_LEN}\r\n").into_bytes();
        many.extend(b":0\r\n".repeat(MAX_ARRAY_LEN));
        assert!(protocol_error(&many).contains("the limit for one reply"));
        // Bulks are charged as declared: the second is refused unread.
        let mut input: &[u8] = b"*3\r\n$6\r\nabcdef\r\n$6\r\n";
        let err = read_at_depth(&mut input, 0, &mut Budget::new(2 * VALUE_CHARGE + 20));
        assert!(matches!(err, Err(RespError::Protocol(m)) if m.contains("limit")));
    }

    #[test]
    fn the_largest_bulk_still_fits_in_one_reply() {
        let mut info = format!("*1\r\n${MAX_BULK_LEN}\r\n").into_bytes();
        info.resize(info.len() + MAX_BULK_LEN, b'i');
        info.extend_from_slice(b"\r\n");
        assert!(parse(&info).is_ok());
    }

    #[test]
    fn refuses_a_line_over_the_cap() {
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 10));
        long.extend_from_slice(b"\r\n");
        assert!(protocol_error(&long).contains("longer than"));
        let mut at_cap = b"+".to_vec();
        at_cap.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN - 1));
        at_cap.extend_from_slice(b"\r\n");
        assert!(parse(&at_cap).is_ok());
    }

    #[test]
    fn a_declared_length_is_not_trusted_for_allocation() {
        // Declares 64 MiB, sends 3 bytes: must end as truncated, cheaply.
        let bytes = format!("${MAX_BULK_LEN}\r\nabc");
        assert!(is_truncated(bytes.as_bytes()));
        let bytes = format!("*{MAX_ARRAY_LEN}\r\n:1\r\n");
        assert!(is_truncated(bytes.as_bytes()));
    }

    #[test]
    fn truncated_input_is_unexpected_eof() {
        for bytes in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b":12",
            b"$5\r\nab",
            b"$5\r\nabcde",
            b"$5\r\nabcde\r",
            b"*2\r\n:1\r\n",
        ] {
            assert!(is_truncated(bytes), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for bytes in [
            &b"hello\r\n"[..],
            b"\r\n",
            b"_\r\n",
            b"%1\r\n",
            b":abc\r\n",
            b":+5\r\n",
            b":\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$x\r\n",
            b"*-5\r\n",
            b"$3\r\nabcXY",
            b"+OK\n",
            b"+\xff\r\n",
        ] {
            protocol_error(bytes);
        }
    }

    #[test]
    fn timeouts_stay_recognisable() {
        struct Stalled;
        impl Read for Stalled {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"))
            }
        }
        let err = read_value(&mut io::BufReader::new(Stalled)).unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    // ---- properties: hostile bytes from a confused or malicious server ----

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::time::{Duration, Instant};

        /// Few cases each (the suite must stay quick), and no regression files
        /// written into the source tree: a failure found here becomes a named
        /// test above instead.
        use crate::testing::proptest_config as config;

        /// Reads one value through a buffer of `capacity` bytes, so replies
        /// arrive in pieces the way they do from a socket.
        fn parse_chunked(bytes: &[u8], capacity: usize) -> Result<Value, RespError> {
            read_value(&mut io::BufReader::with_capacity(capacity, bytes))
        }

        /// The same reply must give the same answer however it is split.
        fn same_outcome(a: &Result<Value, RespError>, b: &Result<Value, RespError>) -> bool {
            match (a, b) {
                (Ok(x), Ok(y)) => x == y,
                (Err(RespError::Protocol(_)), Err(RespError::Protocol(_))) => true,
                (Err(RespError::Io(x)), Err(RespError::Io(y))) => x.kind() == y.kind(),
                _ => false,
            }
        }

        /// Memory a decoded value holds is bounded by what arrived, never by
        /// what was declared: each buffer is within the up-front reservation
        /// or twice its real length (amortised growth).
        fn assert_bounded(value: &Value) {
            match value {
                Value::Bulk(Some(data)) => {
                    let bound = (64 * 1024).max(2 * data.len());
                    assert!(
                        data.capacity() <= bound,
                        "bulk of {} reserved {}",
                        data.len(),
                        data.capacity()
                    );
                }
                Value::Array(Some(items)) => {
                    let bound = ARRAY_PREALLOC.max(2 * items.len());
                    assert!(
                        items.capacity() <= bound,
                        "array of {} reserved {}",
                        items.len(),
                        items.capacity()
                    );
                    items.iter().for_each(assert_bounded);
                }
                _ => {}
            }
        }

        /// A length the way a hostile server might write it.
        fn length_text() -> impl Strategy<Value = String> {
            prop_oneof![
                (-3i64..70).prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                Just(i32::MAX.to_string()),
                Just((MAX_BULK_LEN as i64 + 1).to_string()),
                Just((MAX_ARRAY_LEN as i64 + 1).to_string()),
                Just(MAX_ARRAY_LEN.to_string()),
                Just("99999999999".to_string()),
                Just("99999999999999999999999".to_string()),
                Just("-0".to_string()),
                Just("+5".to_string()),
                Just(String::new()),
            ]
        }

        const ODD_PIECES: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"*1\r\n", b"$-1\r\n", b"*-1\r\n"];

        /// Pieces of RESP, well and badly formed, to be strung together.
        fn token() -> impl Strategy<Value = Vec<u8>> {
            let typed = (
                prop::sample::select(&[b'*', b'$', b':', b'+', b'-'][..]),
                length_text(),
            )
                .prop_map(|(t, n)| format!("{}{n}\r\n", t as char).into_bytes());
            prop_oneof![
                4 => typed,
                2 => "[a-z\r\n]{0,12}".prop_map(String::into_bytes),
                1 => prop::collection::vec(any::<u8>(), 0..16),
                1 => prop::sample::select(ODD_PIECES).prop_map(<[u8]>::to_vec),
            ]
        }

        fn adversarial() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(token(), 0..40).prop_map(|t| t.concat())
        }

        /// Any RESP2 value within the caps (strings without CR or LF, as
        /// Redis sends them).
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                "[^\r\n]{0,20}".prop_map(Value::Simple),
                "[^\r\n]{0,20}".prop_map(Value::Error),
                any::<i64>().prop_map(Value::Integer),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..40)).prop_map(Value::Bulk),
                Just(Value::Array(None)),
            ];
            leaf.prop_recursive(6, 64, 8, |inner| {
                prop::collection::vec(inner, 0..8).prop_map(|v| Value::Array(Some(v)))
            })
        }

        fn encode(value: &Value, out: &mut Vec<u8>) {
            match value {
                Value::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
                Value::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
                Value::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
                Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
                Value::Bulk(Some(data)) => {
                    out.extend_from_slice(format!("${}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
                Value::Array(Some(items)) => {
                    out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                    items.iter().for_each(|item| encode(item, out));
                }
            }
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..512),
                capacity in 1usize..64,
            ) {
                let whole = parse(&bytes);
                if let Ok(v) = &whole {
                    assert_bounded(v);
                }
                prop_assert!(same_outcome(&whole, &parse_chunked(&bytes, capacity)));
            }

            #[test]
            fn adversarial_resp_is_refused_quickly_and_cheaply(
                bytes in adversarial(),
                capacity in 1usize..64,
            ) {
                let started = Instant::now();
                let whole = parse(&bytes);
                prop_assert!(started.elapsed() < Duration::from_secs(1));
                if let Ok(v) = &whole {
                    assert_bounded(v);
                }
                prop_assert!(same_outcome(&whole, &parse_chunked(&bytes, capacity)));
            }

            #[test]
            fn a_declared_length_over_the_cap_is_refused_before_the_body(
                kind in prop::sample::select(&[b'$', b'*'][..]),
                excess in prop_oneof![1i64..1000, Just(i64::MAX - MAX_BULK_LEN as i64), any::<u32>().prop_map(i64::from)],
                body in prop::collection::vec(any::<u8>(), 0..16),
            ) {
                let cap = if kind == b'$' { MAX_BULK_LEN } else { MAX_ARRAY_LEN } as i64;
                let mut bytes = format!("{}{}\r\n", kind as char, cap.saturating_add(excess)).into_bytes();
                bytes.extend_from_slice(&body);
                let started = Instant::now();
                match parse(&bytes) {
                    Err(RespError::Protocol(m)) => prop_assert!(m.contains("exceeds"), "{}", m),
                    other => prop_assert!(false, "expected a protocol error, got {:?}", other),
                }
                prop_assert!(started.elapsed() < Duration::from_millis(100));
            }

            #[test]
            fn a_declared_length_within_the_cap_is_not_trusted(
                kind in prop::sample::select(&[b'$', b'*'][..]),
                declared in prop_oneof![17i64..1000, Just(MAX_ARRAY_LEN as i64), Just(MAX_BULK_LEN as i64)],
                body in "[a-z]{0,16}",
            ) {
                let declared = if kind == b'*' { declared.min(MAX_ARRAY_LEN as i64) } else { declared };
                // Fewer than `declared` bytes or elements follow.
                let bytes = match kind {
                    b'$' => format!("${declared}\r\n{body}"),
                    _ => format!("*{declared}\r\n{}", ":1\r\n".repeat(body.len())),
                };
                let started = Instant::now();
                let err = parse(bytes.as_bytes()).unwrap_err();
                prop_assert!(
                    matches!(&err, RespError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
                    "{:?}", err
                );
                prop_assert!(started.elapsed() < Duration::from_millis(100));
            }

            #[test]
            fn negative_lengths_other_than_nil_are_refused(
                kind in prop::sample::select(&[b'$', b'*'][..]),
                len in prop_oneof![i64::MIN..-1, -1000i64..-1],
            ) {
                let bytes = format!("{}{len}\r\n", kind as char);
                match parse(bytes.as_bytes()) {
                    Err(RespError::Protocol(m)) => prop_assert!(m.contains("negative"), "{}", m),
                    other => prop_assert!(false, "expected a protocol error, got {:?}", other),
                }
            }

            #[test]
            fn nesting_is_capped_at_any_depth(depth in prop_oneof![0usize..40, 40usize..20_000]) {
                let bytes = format!("{}:1\r\n", "*1\r\n".repeat(depth));
                match parse(bytes.as_bytes()) {
                    Ok(_) => prop_assert!(depth <= MAX_DEPTH),
                    Err(RespError::Protocol(m)) => {
                        prop_assert!(depth > MAX_DEPTH);
                        prop_assert!(m.contains("nested"), "{}", m);
                    }
                    Err(e) => prop_assert!(false, "depth {}: {:?}", depth, e),
                }
            }

            #[test]
            fn values_round_trip_and_every_prefix_is_truncated(v in value(), cut in any::<prop::sample::Index>()) {
                let mut bytes = Vec::new();
                encode(&v, &mut bytes);
                bytes.extend_from_slice(b"+next\r\n");
                let mut input = &bytes[..];
                prop_assert_eq!(&read_value(&mut input).unwrap(), &v);
                prop_assert_eq!(input, &b"+next\r\n"[..], "the next reply is left unread");

                let mut whole = Vec::new();
                encode(&v, &mut whole);
                let cut = cut.index(whole.len());
                prop_assert!(is_truncated(&whole[..cut]), "cut at {} of {}", cut, whole.len());
            }

            #[test]
            fn a_bulk_without_its_crlf_is_refused(
                data in prop::collection::vec(any::<u8>(), 0..40),
                end in prop::array::uniform2(any::<u8>()),
            ) {
                prop_assume!(&end != b"\r\n");
                let mut bytes = format!("${}\r\n", data.len()).into_bytes();
                bytes.extend_from_slice(&data);
                bytes.extend_from_slice(&end);
                prop_assert!(matches!(parse(&bytes), Err(RespError::Protocol(_))));
            }
        }
    }
}
