//! The RDB a replica would receive: after `REPLCONF capa eof` (and
//! `rdb-only 1` where the server knows it), `SYNC` answers with either
//! `$<length>\r\n` and that many bytes, or, for a diskless sync,
//! `$EOF:<40 characters>\r\n`, the RDB, and the same 40 characters. Lone
//! `\n` keep-alives may come first. This module turns that into a plain
//! `Read` of the RDB, so backup streams it without a file on Redis's disk.
//! The RDB is capped (`max_rdb_size`): a longer length is refused before a
//! byte of it is read, and an end-marked stream is cut at the cap. Time is
//! the transport's business (see `redis::Timed`): its errors pass through.

use crate::error::{Error, Result};
use std::io::{self, BufRead, Read};

const EOF_MARK_LEN: usize = 40;
/// A reply line before the payload: `$EOF:` + 40 characters, or a length.
const MAX_PREAMBLE_LINE: usize = 128;

/// The RDB part of a SYNC reply, read straight from the connection.
pub struct SyncReader<R> {
    input: R,
    ending: Ending,
    /// Bytes held back from the caller until we know they are not the mark.
    held: Vec<u8>,
    done: bool,
    /// The most RDB bytes we hand on (`max_rdb_size`), and how many we have.
    max: u64,
    delivered: u64,
}

enum Ending {
    Length { remaining: u64 },
    Mark([u8; EOF_MARK_LEN]),
}

impl<R: BufRead> SyncReader<R> {
    /// Read the preamble of a SYNC reply (keep-alives, then `$...`) and
    /// refuse an RDB announced longer than `max_rdb_size`.
    pub fn start(mut input: R, max_rdb_size: u64) -> Result<SyncReader<R>> {
        let line = loop {
            let mut line = Vec::new();
            (&mut input)
                .take(MAX_PREAMBLE_LINE as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| {
                    Error::from_io(e)
                        .unwrap_or_else(|e| Error::redis(format!("reading the SYNC reply: {e}")))
                })?;
            if line.is_empty() {
                return Err(Error::redis(
                    "Redis closed the connection instead of sending the RDB",
                ));
            }
            if line != b"\n" {
                break line;
            }
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Some(error) = text.strip_prefix('-') {
            return Err(Error::redis(format!("Redis refused SYNC: {error}")));
        }
        let ending = match text.strip_prefix("$EOF:") {
            Some(mark) if mark.len() == EOF_MARK_LEN => {
                let mut bytes = [0u8; EOF_MARK_LEN];
                bytes.copy_from_slice(mark.as_bytes());
                Ending::Mark(bytes)
            }
            Some(_) => return Err(Error::redis("Redis sent a malformed $EOF: mark")),
            None => {
                let remaining = text
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Error::redis(format!("Redis answered SYNC with {text:?}, not an RDB"))
                    })?;
                if remaining > max_rdb_size {
                    return Err(Error::redis(format!(
                        "Redis announced an RDB of {remaining} bytes, more than max_rdb_size \
                         ({max_rdb_size} bytes); {RAISE}"
                    )));
                }
                Ending::Length { remaining }
            }
        };
        Ok(SyncReader {
            input,
            ending,
            held: Vec::new(),
            done: false,
            max: max_rdb_size,
            delivered: 0,
        })
    }
}

const RAISE: &str = "raise max_rdb_size if the dataset really is that large";

impl<R: BufRead> Read for SyncReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match &mut self.ending {
            Ending::Length { remaining } => {
                if *remaining == 0 {
                    self.done = true;
                    return Ok(0);
                }
                let want = buf
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = self.input.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "Redis closed the replication stream before the end of the RDB",
                    ));
                }
                *remaining -= n as u64;
                Ok(n)
            }
            Ending::Mark(mark) => {
                let mark = *mark;
                loop {
                    // Everything before the mark is the RDB; what follows it
                    // (a server that streams commands after) is not ours.
                    if let Some(at) = find(&self.held, &mark) {
                        if at == 0 {
                            self.done = true;
                            return Ok(0);
                        }
                        return self.release(at, buf);
                    }
                    // The last 40 bytes may be the start of the mark: keep them.
                    if self.held.len() > EOF_MARK_LEN {
                        return self.release(self.held.len() - EOF_MARK_LEN, buf);
                    }
                    let available = self.input.fill_buf()?;
                    if available.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "Redis closed the replication stream before the end mark",
                        ));
                    }
                    let take = available.len().min(buf.len().max(4096) + EOF_MARK_LEN);
                    self.held.extend_from_slice(&available[..take]);
                    self.input.consume(take);
                }
            }
        }
    }
}

impl<R> SyncReader<R> {
    /// After the RDB's end: the stream bytes read past an end mark (a
    /// follower of the primary needs them; they are the first commands).
    pub fn leftover(self) -> Vec<u8> {
        match self.ending {
            Ending::Mark(mark) if self.done => match find(&self.held, &mark) {
                Some(at) => self.held[at + EOF_MARK_LEN..].to_vec(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Hand up to `ready` held bytes to the caller, unless they would take
    /// the RDB past the cap.
    fn release(&mut self, ready: usize, buf: &mut [u8]) -> io::Result<usize> {
        let n = ready.min(buf.len());
        if self.delivered + n as u64 > self.max {
            return Err(Error::redis(format!(
                "the RDB is longer than max_rdb_size ({} bytes); {RAISE}",
                self.max
            ))
            .into());
        }
        buf[..n].copy_from_slice(&self.held[..n]);
        self.held.drain(..n);
        self.delivered += n as u64;
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const NO_CAP: u64 = u64::MAX;

    fn read_all(bytes: &[u8]) -> Result<Vec<u8>> {
        read_capped(bytes, NO_CAP)
    }

    fn read_capped(bytes: &[u8], max: u64) -> Result<Vec<u8>> {
        let mut reader = SyncReader::start(Cursor::new(bytes.to_vec()), max)?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|e| Error::from_io(e).unwrap_or_else(|e| Error::other(e.to_string())))?;
        Ok(out)
    }

    #[test]
    fn length_prefixed_after_keepalives() {
        let reply = b"\n\n$5\r\nREDISthe replication stream goes on";
        assert_eq!(read_all(reply).unwrap(), b"REDIS");
    }

    #[test]
    fn diskless_with_end_mark() {
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut reply = format!("$EOF:{mark}\r\n").into_bytes();
        reply.extend_from_slice(&body);
        reply.extend_from_slice(mark.as_bytes());
        assert_eq!(read_all(&reply).unwrap(), body);
        // Read in tiny pieces too.
        let mut reader = SyncReader::start(Cursor::new(reply), NO_CAP).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, body);
    }

    #[test]
    fn what_follows_the_end_mark_is_not_rdb() {
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let reply = format!("$EOF:{mark}\r\nREDIS0010 body{mark}*1\r\n$4\r\nPING\r\n");
        assert_eq!(read_all(reply.as_bytes()).unwrap(), b"REDIS0010 body");
        // ... but it is kept for whoever follows the stream.
        let mut reader = SyncReader::start(Cursor::new(reply.into_bytes()), NO_CAP).unwrap();
        reader.read_to_end(&mut Vec::new()).unwrap();
        assert_eq!(reader.leftover(), b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn truncated_or_refused_streams_are_errors() {
        assert!(read_all(b"$10\r\nREDIS").is_err());
        let mark = "0123456789abcdef0123456789abcdef01234567";
        assert!(read_all(format!("$EOF:{mark}\r\nREDIS0010").as_bytes()).is_err());
        assert_eq!(read_all(b"-NOPERM no\r\n").unwrap_err().exit_code(), 3);
        assert!(read_all(b"+FULLRESYNC x 0\r\n").is_err());
        assert!(read_all(b"").is_err());
    }

    #[test]
    fn an_rdb_longer_than_the_cap_is_refused() {
        // Announced: refused before a byte is read.
        let err = read_capped(b"$1099511627776\r\nREDIS", 1 << 20).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.message()
                .contains("more than max_rdb_size (1048576 bytes)"),
            "{err}"
        );
        // Exactly at the cap is fine, either way.
        assert_eq!(read_capped(b"$5\r\nREDIS", 5).unwrap(), b"REDIS");
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let body = vec![7u8; 10_000];
        let mut reply = format!("$EOF:{mark}\r\n").into_bytes();
        reply.extend_from_slice(&body);
        reply.extend_from_slice(mark.as_bytes());
        assert_eq!(read_capped(&reply, 10_000).unwrap(), body);
        // End-marked: cut at the cap, with an error of Redis's kind.
        let err = read_capped(&reply, 9_999).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.message()
                .starts_with("the RDB is longer than max_rdb_size (9999 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn an_endless_end_marked_stream_stops_at_the_cap() {
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let preamble = Cursor::new(format!("$EOF:{mark}\r\n").into_bytes());
        let endless = io::BufReader::new(preamble.chain(io::repeat(0)));
        let mut reader = SyncReader::start(endless, 1 << 20).unwrap();
        let mut read = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let err = loop {
            match reader.read(&mut buf) {
                Ok(n) => read += n as u64,
                Err(e) => break Error::from_io(e).unwrap(),
            }
            assert!(read <= 1 << 20, "read past the cap");
        };
        assert_eq!(err.exit_code(), 3);
        assert!(read > (1 << 20) - 64 * 1024, "stopped early, at {read}");
    }
}
