//! A tiny RESP2 client, independent of the crate's own; its encoder also
//! speaks for the fake Redis (`fake_redis`).

use super::*;

#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "(nil)"),
            Reply::Array(a) => f.debug_list().entries(a).finish(),
        }
    }
}

impl Reply {
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        match self.bytes() {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => panic!("expected a string reply, got {self:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The bytes Redis would send for this reply: what the fake Redis
    /// answers, and (an array of bulk strings) what the client sends.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode_into(out);
                }
            }
        }
    }
}

/// Build one command (an array of bulk strings) from anything byte-like.
pub fn cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_ref().to_vec()).collect()
}

pub struct Resp {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
}

impl Resp {
    pub fn tcp(port: u16) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(DEADLINE))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Resp {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        })
    }

    pub fn unix(path: &Path) -> std::io::Result<Resp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        let writer = stream.try_clone()?;
        Ok(Resp {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        })
    }

    /// A command as Redis reads it: an array of bulk strings.
    fn encode(out: &mut Vec<u8>, args: &[Vec<u8>]) {
        Reply::Array(args.iter().cloned().map(Reply::Bulk).collect()).encode_into(out);
    }

    /// Send one command and read its reply (which may be an error reply).
    pub fn try_call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Reply> {
        let mut out = Vec::new();
        Self::encode(&mut out, &cmd(args));
        self.writer.write_all(&out)?;
        self.writer.flush()?;
        self.read_reply(0)
    }

    /// Send one command; panic on I/O errors, return error replies as values.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let shown: Vec<String> = args
            .iter()
            .take(2)
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .collect();
        self.try_call(args)
            .unwrap_or_else(|e| panic!("RESP I/O error on {shown:?}: {e}"))
    }

    /// Like `call`, but an error reply fails the test.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let reply = self.call(args);
        if reply.is_error() {
            let shown: Vec<String> = args
                .iter()
                .take(2)
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect();
            panic!("Redis refused {shown:?}: {reply:?}");
        }
        reply
    }

    /// Send many commands at once, then read all replies; error replies fail.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut out = Vec::new();
        for c in cmds {
            Self::encode(&mut out, c);
        }
        self.writer.write_all(&out).expect("write pipeline");
        self.writer.flush().expect("flush pipeline");
        let replies: Vec<Reply> = (0..cmds.len())
            .map(|_| self.read_reply(0).expect("read pipeline reply"))
            .collect();
        for (c, r) in cmds.iter().zip(&replies) {
            assert!(
                !r.is_error(),
                "Redis refused {:?}: {r:?}",
                String::from_utf8_lossy(&c[0])
            );
        }
        replies
    }

    fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by Redis",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::other("RESP line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_reply(&mut self, depth: usize) -> std::io::Result<Reply> {
        let bad = |what: &str| std::io::Error::other(format!("bad RESP: {what}"));
        if depth > 16 {
            return Err(bad("nested too deep"));
        }
        let line = self.read_line()?;
        let (&kind, rest) = line.split_first().ok_or_else(|| bad("empty line"))?;
        let rest = String::from_utf8_lossy(rest).into_owned();
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad("number"));
        Ok(match kind {
            b'+' => Reply::Status(rest),
            b'-' => Reply::Error(rest),
            b':' => Reply::Int(num(&rest)?),
            b'$' => {
                let len = num(&rest)?;
                if len < 0 {
                    Reply::Nil
                } else {
                    let mut buf = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len as usize);
                    Reply::Bulk(buf)
                }
            }
            b'*' => {
                let len = num(&rest)?;
                if len < 0 {
                    Reply::Nil
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.read_reply(depth + 1)?);
                    }
                    Reply::Array(items)
                }
            }
            _ => return Err(bad("unknown type byte")),
        })
    }

    /// `INFO section` as a map of `field -> value`.
    pub fn info(&mut self, section: &str) -> BTreeMap<String, String> {
        let text = self.ok(&["INFO", section]).text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    pub fn info_field(&mut self, section: &str, field: &str) -> String {
        self.info(section)
            .remove(field)
            .unwrap_or_else(|| panic!("INFO {section} has no field {field}"))
    }

    /// `rdb_saves` of `INFO persistence`: saves since start-up.
    pub fn rdb_saves(&mut self) -> u64 {
        self.info_field("persistence", "rdb_saves")
            .parse()
            .expect("rdb_saves")
    }

    /// `DEBUG DIGEST` and the key count of every non-empty database.
    pub fn state(&mut self) -> DbState {
        self.state_via("CONFIG")
    }

    /// `state`, on a server whose CONFIG command is called `config`
    /// (`rename-command CONFIG ...`).
    pub fn state_via(&mut self, config: &str) -> DbState {
        let digest = self.ok(&["DEBUG", "DIGEST"]).text();
        let databases: u32 = match self.ok(&[config, "GET", "databases"]) {
            Reply::Array(a) if a.len() == 2 => a[1].text().parse().expect("databases"),
            other => panic!("{config} GET databases: {other:?}"),
        };
        let mut cmds = Vec::new();
        for db in 0..databases {
            cmds.push(cmd(&["SELECT".to_string(), db.to_string()]));
            cmds.push(cmd(&["DBSIZE"]));
        }
        cmds.push(cmd(&["SELECT", "0"]));
        let replies = self.pipeline(&cmds);
        let mut keys = BTreeMap::new();
        for db in 0..databases {
            let n = replies[db as usize * 2 + 1].int() as u64;
            if n > 0 {
                keys.insert(db, n);
            }
        }
        DbState { digest, keys }
    }

    /// Wait until no RDB save runs (e.g. one started by someone else).
    pub fn wait_no_save(&mut self) {
        wait_for("the running BGSAVE to finish", || {
            (self.info_field("persistence", "rdb_bgsave_in_progress") == "0").then_some(())
        })
    }
}

/// The `id` of a backup record as printed by `--json`.
pub fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record has an id").to_string()
}

/// A small tmpfs mounted on `path` (needs root, as `make test` has),
/// unmounted lazily when dropped (a Redis may still have its cwd there).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, options: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What a dataset looks like: `DEBUG DIGEST` and `DBSIZE` per non-empty db.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbState {
    pub digest: String,
    pub keys: BTreeMap<u32, u64>,
}

/// The `keys` object of a backup record (`{"db0": 120, "db1": 40}`) as a map,
/// leaving out empty databases.
pub fn keys_of_record(record: &Value) -> BTreeMap<u32, u64> {
    let obj = record["keys"]
        .as_object()
        .unwrap_or_else(|| panic!("record has no `keys` object: {record}"));
    obj.iter()
        .map(|(name, n)| {
            let db: u32 = name
                .strip_prefix("db")
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("bad db name {name:?} in keys"));
            (db, n.as_u64().unwrap_or_else(|| panic!("bad count {n}")))
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}
