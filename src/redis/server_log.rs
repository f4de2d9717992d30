//! What a server we start (the AOF rebuild's, a check's load, the replay's)
//! says on its stdout and stderr, read from a pipe as it comes, only its
//! gist kept, in constant memory: never written to a file. A library's
//! load-time Lua (`redis.log` in a loop, in an RDB or a FUNCTION LOAD) may
//! log gigabytes from a few hundred bytes: in a file they filled the disk
//! the file was on (/var/tmp, or Redis's own data disk for the AOF
//! rebuild), and reading it back for a message took as much memory.

use crate::units;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Of a line the server writes, what is looked at: the start.
const LINE_KEPT: usize = 1024;
/// Of a line quoted in a message, at most this many characters.
const QUOTED: usize = 300;
/// How long a failure waits for the rest of what an ended server said.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// A server's output, being read.
pub struct ServerLog(Arc<Mutex<Gist>>);

/// What a server said that tells why it ended.
#[derive(Default, Clone)]
pub struct Gist {
    /// The error it sent its primary, which a panic then follows with
    /// pages of report (cut before the arguments it quotes: the data).
    refused: Option<String>,
    /// Its words for an RDB of a version it does not know.
    pub unloadable: Option<String>,
    /// Since the last "Loading RDB produced by": its first warning, and
    /// whether it was told to stop (a signal, a shutdown) meanwhile.
    loading: Option<(Option<String>, bool)>,
    last: String,
    pub disk_full: bool,
    /// Where it refused its config ("at line N"), if it did: a line that
    /// starts "*** FATAL CONFIG FILE ERROR" before it said its config was
    /// loaded (after that, a line can be the data's: a key named so).
    pub config_refused: Option<String>,
    config_loaded: bool,
    ended: bool,
}

impl ServerLog {
    /// Read `pipe` to its end in a thread of its own, line by line, each
    /// line's first `LINE_KEPT` bytes looked at, the rest passed over.
    pub fn read_from(pipe: impl Read + Send + 'static) -> ServerLog {
        let gist = Arc::new(Mutex::new(Gist::default()));
        let shared = Arc::clone(&gist);
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(64 << 10, pipe);
            let mut line = Vec::with_capacity(LINE_KEPT);
            let note = |line: &[u8]| {
                if let Ok(mut gist) = shared.lock() {
                    gist.note(&String::from_utf8_lossy(line));
                }
            };
            loop {
                let buf = match reader.fill_buf() {
                    Ok([]) => break,
                    Ok(buf) => buf,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let end = buf.iter().position(|&b| b == b'\n');
                let part = &buf[..end.unwrap_or(buf.len())];
                let room = LINE_KEPT - line.len();
                line.extend_from_slice(&part[..part.len().min(room)]);
                let used = end.map_or(buf.len(), |end| end + 1);
                reader.consume(used);
                if end.is_some() {
                    note(&line);
                    line.clear();
                }
            }
            note(&line);
            if let Ok(mut gist) = shared.lock() {
                gist.ended = true;
            }
        });
        ServerLog(gist)
    }

    /// What was said, once the pipe ended (the server has ended, or does
    /// as it fails), or what was said by then.
    pub fn said(&self) -> Gist {
        let deadline = Instant::now() + LAST_WORDS_WAIT;
        loop {
            let gist = self.0.lock().map(|g| g.clone()).unwrap_or_default();
            if gist.ended || Instant::now() >= deadline {
                return gist;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Gist {
    fn note(&mut self, line: &str) {
        if self.refused.is_none() {
            if let Some((_, error)) = line.split_once("is sending an error to its master: ") {
                let error = error.split(", with args").next().unwrap_or(error);
                self.refused = Some(quoted(error));
            }
        }
        if self.unloadable.is_none() && line.contains("Can't handle RDB format version") {
            self.unloadable = Some(quoted(line));
        }
        if line.contains("No space left on device") || line.contains("Disk quota exceeded") {
            self.disk_full = true;
        }
        if !self.config_loaded {
            self.config_loaded = line.contains("Configuration loaded");
            if line.starts_with("*** FATAL CONFIG FILE ERROR") {
                self.config_refused = Some(String::new());
            }
            // Not the line itself: it quotes the directive, a password's
            // too.
            if let Some(at) = line.split_once("configuration file, ").map(|(_, at)| at) {
                if self.config_refused.is_some() {
                    self.config_refused = Some(format!(" ({})", quoted(at)));
                }
            }
        }
        if line.contains("Loading RDB produced by") {
            self.loading = Some((None, false));
        } else if let Some((warning, stopped)) = &mut self.loading {
            *stopped |= line.contains("Received SIG") || line.contains("shutdown");
            if warning.is_none() {
                *warning = line.split_once(" # ").map(|(_, w)| quoted(w));
            }
        }
        if !line.trim().is_empty() {
            self.last = quoted(line);
        }
    }

    /// Why it ended: the error it sent its primary, else its last line.
    pub fn last_words(&self) -> String {
        self.refused.clone().unwrap_or_else(|| self.last.clone())
    }

    /// Why a server that exited had refused an RDB, if it had begun to
    /// read one: its first warning (`#`) after "Loading RDB produced by"
    /// ("Can't handle foreign type or opcode 25 …", "Internal error in RDB
    /// reading … no matching module type 'vectorset'"). Redis 7.4 and 8.0
    /// then check the file as redis-check-rdb does and print that report
    /// last, which skips what they cannot read and calls the file fine.
    /// Told to stop while loading (a signal of the account's, which it
    /// runs as), it exits 0 too, and that says nothing of the RDB.
    pub fn load_refusal(&self) -> Option<String> {
        match &self.loading {
            Some((_, true)) | None => None,
            Some((warning, false)) => Some(
                warning
                    .clone()
                    .unwrap_or_else(|| "it logged no reason".to_string()),
            ),
        }
    }
}

/// A line of a server's output as we quote it: at most `QUOTED`
/// characters, trimmed, control characters escaped (its output may be the
/// words of whoever wrote to Redis).
fn quoted(text: &str) -> String {
    units::printable(&text.trim().chars().take(QUOTED).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(bytes: &[u8]) -> Gist {
        let log = ServerLog::read_from(std::io::Cursor::new(bytes.to_vec()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log.0.lock().unwrap().ended {
            assert!(Instant::now() < deadline, "never read to its end");
            std::thread::sleep(POLL);
        }
        log.said()
    }

    /// A panic's report runs for pages after the line that says why; the
    /// arguments that line quotes are the data, and are left out.
    #[test]
    fn last_words_are_the_error_it_sent_its_primary() {
        let log = "1:S * MASTER <-> REPLICA sync: Finished with success\n\
            1:S # == CRITICAL == This replica is sending an error to its master: 'unknown command 'JSON.SET', with args beginning with: 'doc' '$' '{\"card\":\"4111\"}' ' after processing the command '<unknown>'\n\
            1:S # ------------------------------------------------\n\
            1:S # !!! Software Failure. Press left mouse button to continue\n\
            \n  Some other issues could be detected by redis-server --check-system\n\n";
        assert_eq!(
            said(log.as_bytes()).last_words(),
            "'unknown command 'JSON.SET'"
        );
        let plain = "1:M * Ready\n1:M # Bad directive\n\n";
        assert_eq!(said(plain.as_bytes()).last_words(), "1:M # Bad directive");
        assert_eq!(said(b"").last_words(), "");
    }

    /// Whatever it writes, a line quoted is short, and what is kept small.
    #[test]
    fn a_flood_is_passed_over_and_long_lines_are_cut() {
        let mut flood = Vec::new();
        for _ in 0..64 {
            flood.extend_from_slice(&[b'x'; 1 << 20]);
        }
        flood.extend_from_slice(b" No space left on device\n1:M # last\n");
        let gist = said(&flood);
        assert!(
            !gist.disk_full,
            "past the first {LINE_KEPT} bytes of a line"
        );
        assert_eq!(gist.last_words(), "1:M # last");
        let long = format!("{}\n", "é".repeat(5000));
        let words = said(long.as_bytes()).last_words();
        assert_eq!(words.chars().count(), QUOTED, "{words}");
        assert!(said(b"1:S # Failed: No space left on device\n").disk_full);
        let newer = said(b"1:S # Can't handle RDB format version 12\n1:S * Retrying\n");
        assert_eq!(
            newer.unloadable.as_deref(),
            Some("1:S # Can't handle RDB format version 12")
        );
    }

    // Logs of real servers (pids and dates shortened) that loaded a backup
    // they could not, and of one told to stop while loading.
    const REDIS_7_4: &str = "\
1:M 01 Dec * Loading RDB produced by version 8.2.3
1:M 01 Dec * RDB memory usage when created 0.71 Mb
1:M 01 Dec # Internal error in RDB reading offset 0, function at rdb.c:3107 -> The RDB file contains module data I can't load: no matching module type 'vectorset'
[offset 161] \\o/ RDB looks OK! \\o/
[info] 0 subexpires
";
    const VALKEY_9_1: &str = "\
1:M 01 Dec * Loading RDB produced by Redis version 7.4.1
1:M 01 Dec # Can't handle foreign type or opcode 25 in RDB with version 12
1:M 01 Dec # Fatal error loading the DB, check server logs. Exiting.
";
    const STOPPED: &str = "\
1:M 01 Dec * Loading RDB produced by version 7.0.15
1:signal-handler (1796168220) Received shutdown signal during loading, scheduling shutdown.
1:M 01 Dec * User requested shutdown...
1:M 01 Dec # Redis is now ready to exit, bye bye...
";

    #[test]
    fn a_refusal_is_the_first_warning_after_the_load_began() {
        let refusal = said(REDIS_7_4.as_bytes()).load_refusal().unwrap();
        assert!(
            refusal.ends_with("no matching module type 'vectorset'"),
            "{refusal}"
        );
        assert_eq!(
            said(VALKEY_9_1.as_bytes()).load_refusal().unwrap(),
            "Can't handle foreign type or opcode 25 in RDB with version 12"
        );
        let silent = "1:M * Loading RDB produced by version 7.0.15\n";
        assert_eq!(
            said(silent.as_bytes()).load_refusal().as_deref(),
            Some("it logged no reason")
        );
    }

    #[test]
    fn a_server_stopped_while_loading_or_before_it_refused_nothing() {
        assert_eq!(said(STOPPED.as_bytes()).load_refusal(), None);
        let config = said(b"*** FATAL CONFIG FILE ERROR ***\n");
        assert_eq!(config.load_refusal(), None);
        assert!(config.config_refused.is_some());
        assert!(said(STOPPED.as_bytes()).config_refused.is_none());
        // The line and not the directive, which may hold a password.
        let at = said(b"*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line 3\n>>> 'requirepass a b'\nwrong number of arguments\n");
        assert_eq!(at.config_refused.as_deref(), Some(" (at line 3)"));
        // After the config is loaded, such a line is the data's (a key's
        // name in a warning).
        let data = said(b"1:M * Configuration loaded\n*** FATAL CONFIG FILE ERROR\n");
        assert!(data.config_refused.is_none());
    }
}
