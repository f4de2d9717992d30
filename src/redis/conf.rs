//! Reads Redis's own `redis.conf` the way Redis does, to learn where the data
//! lives (`dir`, `dbfilename`, the AOF names), whether persistence is on, how
//! to reach the server (`port`, `bind`, `unixsocket`, `requirepass`) and which
//! commands were renamed. It never touches the network: the live server may
//! know better (`CONFIG GET`), and callers prefer that when it is available.
//!
//! Redis semantics kept here: directive names are case-insensitive, a later
//! line overrides an earlier one, `save` lines accumulate until a `save ""`
//! resets them, `include` is applied where it appears, and arguments are
//! split like Redis's `sdssplitargs` (double quotes with C escapes and `\xHH`,
//! single quotes with `\'`). One deliberate difference: a relative `include`
//! path is resolved against the directory of the file that contains it, not
//! against Redis's working directory, which we cannot know; on Debian the two
//! are the same, since the shipped config uses absolute paths.
//!
//! The files are often writable by the account that owns Redis, so each one's
//! owner and mode are kept with the settings: the data dir they name is acted
//! on only if they could not have been written by someone else (`data_dir`).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::fs::acl;
use crate::fs::data_dir::Owner;
use crate::fs::writers::{folder_of_others, Folder, Writers, EVERYBODY};
use crate::secret::Secret;

/// How deep `include` may nest; the file given to `load` is depth 0.
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Most files one config may read, includes side by side counted too: the
/// depth cap alone lets 8 levels of 1,000 includes each ask for 10^24 reads.
pub const MAX_CONF_FILES: usize = 64;
/// Largest config file read; Debian's redis.conf is about 100 KiB.
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// The settings of one Redis config file and everything it includes.
#[derive(Debug, Clone)]
pub struct RedisConf {
    /// `dir` as written; a relative one is relative to Redis's working directory.
    pub dir: Option<PathBuf>,
    pub dbfilename: String,
    /// `None`: no `save` line, so Redis's built-in rules apply and RDB
    /// persistence is on. `Some("")`: `save ""`, off. Otherwise the rules,
    /// joined by spaces ("3600 1 300 100").
    pub save: Option<String>,
    pub appendonly: bool,
    pub appenddirname: String,
    pub appendfilename: String,
    /// Valkey's `rdb-version-check` (8.1 on), as written.
    pub rdb_version_check: Option<String>,
    /// Whether a `tls-port` is set (a server built without TLS refuses the
    /// directive, so it is only ever present where TLS is built in).
    pub tls_port_set: bool,
    /// 0 means Redis does not listen on TCP.
    pub port: u16,
    pub bind: Vec<String>,
    pub unixsocket: Option<PathBuf>,
    pub requirepass: Option<Secret>,
    /// Lower-case original name → new name; "" means the command is disabled.
    pub renamed_commands: HashMap<String, String>,
    /// `replicaof` (or `slaveof`) as written: "HOST PORT".
    pub replicaof: Option<String>,
    /// `aof-use-rdb-preamble` (yes unless it says no).
    pub aof_rdb_preamble: bool,
    /// `databases`: how many a server started on this config serves (16
    /// unless it says otherwise; not changeable at run time).
    pub databases: u64,
    /// `cluster-enabled yes`: the node's role (primary or replica) is in
    /// `cluster_config_file` (relative to `dir`), not here.
    pub cluster_enabled: bool,
    pub cluster_config_file: String,
    /// The file given to `load`.
    pub source: PathBuf,
    /// Every file read (`source` and its includes), with who could write it.
    pub files: Vec<ConfFile>,
}

/// One config file as it was read: who could have chosen what it says
/// decides whose word its settings are. That is its owner and mode, with
/// whoever its ACL lets write, and also whoever could have put another
/// file under its name: the owner of a
/// folder on the way (or of one holding a link on the way) that is not
/// root's alone (`folder_of_others`). A file of root's reached through the
/// account's folder is the account's word: the account can make root's
/// files say what it likes (`/proc/PID/cmdline` of a setuid program it
/// started) and link one there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// That folder, if any: its owner and write bits are in the above.
    pub via: Option<PathBuf>,
    /// The file's own owner, whoever may replace it: whose secrets it
    /// holds (`include`).
    pub owner: u32,
}

impl ConfFile {
    /// Nobody but root could have chosen what it says.
    pub fn is_roots_alone(&self) -> bool {
        self.uid == 0 && self.mode & 0o022 == 0
    }

    /// How messages name it.
    fn name(&self) -> String {
        match &self.via {
            Some(folder) => format!("{} (in {})", self.path.display(), folder.display()),
            None => self.path.display().to_string(),
        }
    }
}

impl RedisConf {
    /// Redis's own defaults, as if `source` were an empty file.
    pub fn defaults(source: &Path) -> RedisConf {
        RedisConf {
            dir: None,
            dbfilename: "dump.rdb".into(),
            save: None,
            appendonly: false,
            appenddirname: "appendonlydir".into(),
            appendfilename: "appendonly.aof".into(),
            rdb_version_check: None,
            tls_port_set: false,
            port: 6379,
            bind: Vec::new(),
            unixsocket: None,
            requirepass: None,
            renamed_commands: HashMap::new(),
            replicaof: None,
            aof_rdb_preamble: true,
            databases: 16,
            cluster_enabled: false,
            cluster_config_file: "nodes.conf".into(),
            source: source.to_path_buf(),
            files: Vec::new(),
        }
    }
}

/// Settings from a file that a third account could have written would let
/// that account choose which files root acts on. Accepted: files of root
/// (writable by no one else but root's group) and files of the data dir's
/// owner. Refused, as a usage error before anything is touched: files
/// writable by every user, files another account may write, and files
/// writable by a group other than the data dir's (who may write counts an
/// ACL's grants and the folders on the way, see `ConfFile`).
impl RedisConf {
    pub fn check_authority(&self, dir: &Path, owner: Owner) -> Result<()> {
        for file in &self.files {
            let name = file.name();
            let why = if file.mode & 0o002 != 0 {
                Some(format!(
                    "{name} is writable by every user, or by more than one account or group"
                ))
            } else if file.uid != 0 && file.uid != owner.uid {
                Some(format!(
                    "{name} may be written by uid {}, but the data dir it names, {}, belongs to uid {}",
                    file.uid,
                    dir.display(),
                    owner.uid
                ))
            } else if file.mode & 0o020 != 0 && file.gid != 0 && file.gid != owner.gid {
                Some(format!(
                "{name} is writable by group {}, but the data dir it names, {}, belongs to group {}",
                file.gid,
                dir.display(),
                owner.gid
            ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::usage(format!(
                "{why}; redis-backup acts in the data dir as its owner, and only root or that owner may choose it: fix the ownership of the config file or of the data dir"
            )));
            }
        }
        Ok(())
    }
}

/// Reads `path` and its includes. Every error is a usage error (exit 2) that
/// names the file and line; no error ever quotes a line, so a password on it
/// cannot leak.
pub fn load(path: &Path) -> Result<RedisConf> {
    let mut conf = RedisConf::defaults(path);
    let mut open_files = Vec::new();
    load_file(path, &mut conf, &mut open_files, None)?;
    Ok(conf)
}

/// At most `MAX_FILE_LEN + 1` bytes of `path`: enough to tell that it is too
/// big, without reading all of a runaway file. Only a regular file is read:
/// it is opened without blocking, so `include` of a FIFO or a device that
/// never answers is refused instead of hanging the run.
fn read_capped(path: &Path) -> std::io::Result<(Vec<u8>, ConfFile)> {
    let folder = folder_of_others(path, 0)?;
    let file = crate::fs::open_regular(path)?;
    let meta = file.metadata()?;
    let writers = Writers::of(&meta).with_acl(acl::of_file(&file)?);
    let mut written_by = ConfFile {
        path: path.to_path_buf(),
        uid: writers.uid,
        gid: writers.gid,
        mode: writers.mode,
        via: None,
        owner: meta.uid(),
    };
    if let Some(folder) = folder {
        written_by.add_folder(folder);
    }
    // Sized up front like `fs::read`, so a regular file is read without
    // reallocating: no stray copy of requirepass left in freed memory.
    let size = meta.len().min(MAX_FILE_LEN) + 1;
    let mut text = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut text)?;
    Ok((text, written_by))
}

impl ConfFile {
    /// Whoever may write in `folder` may also choose what this file says.
    fn add_folder(&mut self, folder: Folder) {
        let mut writers = Writers {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
        };
        writers.add_user(folder.writers.uid);
        if folder.writers.mode & 0o020 != 0 {
            writers.add_group(folder.writers.gid);
        }
        writers.mode |= folder.writers.mode & EVERYBODY;
        (self.uid, self.gid, self.mode) = (writers.uid, writers.gid, writers.mode);
        self.via = Some(folder.path);
    }
}

/// Where an `include` came from, for messages about the included file.
struct IncludedFrom<'a> {
    file: &'a Path,
    line: usize,
}

fn load_file(
    path: &Path,
    conf: &mut RedisConf,
    open_files: &mut Vec<PathBuf>,
    from: Option<IncludedFrom<'_>>,
) -> Result<()> {
    let at = |what: String| match &from {
        Some(f) => Error::usage(format!("{}:{}: {what}", f.file.display(), f.line)),
        None => Error::usage(what),
    };
    if open_files.len() > MAX_INCLUDE_DEPTH {
        return Err(at(format!(
            "includes nested deeper than {MAX_INCLUDE_DEPTH} levels at {}",
            path.display()
        )));
    }
    if conf.files.len() >= MAX_CONF_FILES {
        return Err(at(format!(
            "more than {MAX_CONF_FILES} files read for one Redis config at {}; are includes repeated?",
            path.display()
        )));
    }
    // Canonical names make `a.conf` and `./a.conf` the same file for the
    // cycle check; a file that cannot be canonicalised cannot be read either.
    let canonical = fs::canonicalize(path)
        .map_err(|e| at(format!("cannot read Redis config {}: {e}", path.display())))?;
    if open_files.contains(&canonical) {
        return Err(at(format!(
            "include cycle: {} includes itself",
            path.display()
        )));
    }
    let (mut text, written_by) = read_capped(path)
        .map_err(|e| at(format!("cannot read Redis config {}: {e}", path.display())))?;
    // A file others may write (Redis's account, or a group) may include
    // only files its writer owns: one of root's (another instance's
    // requirepass, say) would otherwise have its values sent wherever the
    // including file points us. What counts is the included file's own
    // owner, not who may replace it: a link in the account's folder to a
    // file only root may read is still root's file to read.
    let includer = from
        .as_ref()
        .and_then(|f| conf.files.iter().rev().find(|c| c.path == f.file));
    let refused =
        includer.filter(|i| !i.is_roots_alone() && (i.uid == 0 || written_by.owner != i.uid));
    if let Some(includer) = refused {
        text.zeroize();
        return Err(at(format!(
            "{} may be written by uid {}{}, but includes {} of uid {}; a config file may only include files of its own owner (or be root's alone)",
            includer.name(),
            includer.uid,
            if includer.mode & 0o020 != 0 { " and its group" } else { "" },
            path.display(),
            written_by.owner
        )));
    }
    conf.files.push(written_by);
    if text.len() as u64 > MAX_FILE_LEN {
        text.zeroize();
        return Err(at(format!(
            "Redis config {} is larger than {} MiB; is it the right file?",
            path.display(),
            MAX_FILE_LEN >> 20
        )));
    }
    open_files.push(canonical);
    let result = apply_lines(path, &text, conf, open_files);
    open_files.pop();
    // The file may hold requirepass; don't leave a copy in freed memory.
    text.zeroize();
    result
}

fn apply_lines(
    path: &Path,
    text: &[u8],
    conf: &mut RedisConf,
    open_files: &mut Vec<PathBuf>,
) -> Result<()> {
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let err = |what: &str| Error::usage(format!("{}:{line_no}: {what}", path.display()));
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut args = split_args(line).map_err(&err)?;
        if args.is_empty() {
            continue;
        }
        let name = args[0].to_ascii_lowercase();
        let result = apply_directive(&name, &args[1..], conf, path, line_no, open_files);
        args.iter_mut().for_each(Zeroize::zeroize);
        match result {
            Err(Directive::Bad(what)) => return Err(err(&format!("{name}: {what}"))),
            Err(Directive::Failed(e)) => return Err(e),
            Ok(()) => {}
        }
    }
    Ok(())
}

enum Directive {
    /// The line is wrong; the caller adds file and line.
    Bad(String),
    /// An error that already says where it happened (from an include).
    Failed(Error),
}

fn bad(what: impl Into<String>) -> Directive {
    Directive::Bad(what.into())
}

fn apply_directive(
    name: &str,
    args: &[String],
    conf: &mut RedisConf,
    path: &Path,
    line_no: usize,
    open_files: &mut Vec<PathBuf>,
) -> std::result::Result<(), Directive> {
    let one = || match args {
        [value] => Ok(value.clone()),
        _ => Err(bad("expects exactly one argument")),
    };
    match name {
        "include" => {
            let target = one()?;
            if target.contains('*') {
                return Err(bad(
                    "glob patterns in include are not supported; list the files one by one",
                ));
            }
            // Relative to the including file; see the module documentation.
            let target = Path::new(&target);
            let target = match path.parent() {
                Some(parent) if target.is_relative() => parent.join(target),
                _ => target.to_path_buf(),
            };
            let from = IncludedFrom {
                file: path,
                line: line_no,
            };
            load_file(&target, conf, open_files, Some(from)).map_err(Directive::Failed)?;
        }
        "dir" => conf.dir = Some(PathBuf::from(one()?)),
        "dbfilename" => conf.dbfilename = one()?,
        "appenddirname" => conf.appenddirname = one()?,
        "appendfilename" => conf.appendfilename = one()?,
        "rdb-version-check" => conf.rdb_version_check = Some(one()?),
        "tls-port" => conf.tls_port_set = one()? != "0",
        "appendonly" => {
            conf.appendonly = match one()?.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(bad("expects yes or no")),
            }
        }
        "aof-use-rdb-preamble" => {
            conf.aof_rdb_preamble = match one()?.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(bad("expects yes or no")),
            }
        }
        "cluster-enabled" => conf.cluster_enabled = one()?.eq_ignore_ascii_case("yes"),
        "cluster-config-file" => conf.cluster_config_file = one()?,
        "databases" => {
            conf.databases = one()?
                .parse()
                .map_err(|_| bad("expects a number of databases"))?
        }
        "port" => {
            conf.port = one()?
                .parse()
                .map_err(|_| bad("expects a port number 0-65535"))?
        }
        "bind" => {
            if args.is_empty() {
                return Err(bad("expects at least one address"));
            }
            conf.bind = args.to_vec();
        }
        "unixsocket" => {
            let socket = one()?;
            conf.unixsocket = (!socket.is_empty()).then(|| PathBuf::from(socket));
        }
        "requirepass" => {
            let mut pass = match args {
                [value] => value.clone(),
                _ => return Err(bad("expects exactly one argument")),
            };
            // An empty requirepass is how Redis spells "no password".
            conf.requirepass = (!pass.is_empty()).then(|| Secret::new(pass.clone()));
            pass.zeroize();
        }
        "rename-command" => match args {
            [original, new] => {
                conf.renamed_commands
                    .insert(original.to_ascii_lowercase(), new.clone());
            }
            _ => return Err(bad("expects a command name and its new name")),
        },
        "save" => apply_save(args, conf)?,
        // A later line wins, and `no one` makes it a primary again.
        "replicaof" | "slaveof" => match args {
            [no, one] if no.eq_ignore_ascii_case("no") && one.eq_ignore_ascii_case("one") => {
                conf.replicaof = None
            }
            [host, port] => conf.replicaof = Some(format!("{host} {port}")),
            _ => return Err(bad("expects a host and a port")),
        },
        _ => {}
    }
    Ok(())
}

/// Redis 7 in a config file: the first `save` line replaces the built-in
/// rules, later ones add to them, and `save ""` clears them all.
fn apply_save(args: &[String], conf: &mut RedisConf) -> std::result::Result<(), Directive> {
    if args.len() == 1 && args[0].is_empty() {
        conf.save = Some(String::new());
        return Ok(());
    }
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(bad("expects pairs of <seconds> <changes>"));
    }
    if args.iter().any(|a| a.parse::<u64>().is_err()) {
        return Err(bad("expects pairs of <seconds> <changes> as numbers"));
    }
    let rules = args.join(" ");
    conf.save = Some(match conf.save.take() {
        Some(old) if !old.is_empty() => format!("{old} {rules}"),
        _ => rules,
    });
    Ok(())
}

/// Splits one config line like Redis's `sdssplitargs`. A quote may also start
/// in the middle of a word (`a"b c"` is one argument, `ab c`), and a closing
/// quote must be followed by a space or the end of the line.
fn split_args(line: &[u8]) -> std::result::Result<Vec<String>, &'static str> {
    const UNBALANCED: &str = "unbalanced quotes in configuration line";
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                match line.get(i) {
                    None => return Err(UNBALANCED),
                    Some(b'\\') if i + 3 < line.len() && line[i + 1] == b'x' => {
                        match (hex(line[i + 2]), hex(line[i + 3])) {
                            (Some(h), Some(l)) => {
                                current.push(h * 16 + l);
                                i += 3;
                            }
                            _ => {
                                current.push(b'x');
                                i += 1;
                            }
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(UNBALANCED);
                        }
                        i += 1;
                        break;
                    }
                    Some(&b) => current.push(b),
                }
            } else if in_single {
                match line.get(i) {
                    None => return Err(UNBALANCED),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        current.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(UNBALANCED);
                        }
                        i += 1;
                        break;
                    }
                    Some(&b) => current.push(b),
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(&b) if is_space(b) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&b) => current.push(b),
                }
            }
            i += 1;
        }
        args.push(String::from_utf8_lossy(&current).into_owned());
        current.zeroize();
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("redis-backup-conf-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn load_text(text: &str) -> Result<RedisConf> {
        let dir = TempDir::new();
        load(&dir.write("redis.conf", text))
    }

    fn usage_message(result: Result<RedisConf>) -> String {
        match result {
            Err(e @ Error::Usage(_)) => e.message().to_string(),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    fn split(line: &str) -> std::result::Result<Vec<String>, &'static str> {
        split_args(line.as_bytes())
    }

    #[test]
    fn defaults_match_redis() {
        let conf = load_text("# nothing\n\n").unwrap();
        assert_eq!(conf.dir, None);
        assert_eq!(conf.dbfilename, "dump.rdb");
        assert_eq!(conf.save, None);
        assert!(!conf.appendonly);
        assert_eq!(conf.appenddirname, "appendonlydir");
        assert_eq!(conf.appendfilename, "appendonly.aof");
        assert_eq!(conf.port, 6379);
        assert!(conf.bind.is_empty());
        assert_eq!(conf.unixsocket, None);
        assert!(conf.requirepass.is_none());
        assert!(conf.renamed_commands.is_empty());
    }

    #[test]
    fn reads_debian_style_settings_case_insensitively() {
        let conf = load_text(
            "bind 127.0.0.1 -::1\nPORT 6380\r\n  Dir /var/lib/redis\n\
             dbfilename \"dump.rdb\"\nappendonly YES\nappendfilename \"appendonly.aof\"\n\
             appenddirname \"aofdir\"\nunixsocket /run/redis/redis.sock\nrequirepass s3cret\n\
             some-unknown-directive 1 2 3\n",
        )
        .unwrap();
        assert_eq!(conf.bind, ["127.0.0.1", "-::1"]);
        assert_eq!(conf.port, 6380);
        assert_eq!(conf.dir, Some(PathBuf::from("/var/lib/redis")));
        assert!(conf.appendonly);
        assert_eq!(conf.appenddirname, "aofdir");
        assert_eq!(
            conf.unixsocket,
            Some(PathBuf::from("/run/redis/redis.sock"))
        );
        assert_eq!(conf.requirepass.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{conf:?}").contains("s3cret"));
    }

    #[test]
    fn later_lines_override_earlier_ones() {
        let conf = load_text(
            "port 1\nport 2\ndir /a\ndir /b\nrequirepass one\nrequirepass two\nbind a b\nbind c\n",
        )
        .unwrap();
        assert_eq!(conf.port, 2);
        assert_eq!(conf.dir, Some(PathBuf::from("/b")));
        assert_eq!(conf.requirepass.unwrap().expose(), "two");
        assert_eq!(conf.bind, ["c"]);
        assert!(load_text("requirepass x\nrequirepass \"\"\n")
            .unwrap()
            .requirepass
            .is_none());
    }

    #[test]
    fn save_variants() {
        assert_eq!(load_text("").unwrap().save, None);
        assert_eq!(load_text("save \"\"\n").unwrap().save.as_deref(), Some(""));
        assert_eq!(load_text("save ''\n").unwrap().save.as_deref(), Some(""));
        assert_eq!(
            load_text("save 3600 1\nsave 300 100 60 10000\n")
                .unwrap()
                .save
                .as_deref(),
            Some("3600 1 300 100 60 10000")
        );
        assert_eq!(
            load_text("save 3600 1\nsave \"\"\nsave 60 5\n")
                .unwrap()
                .save
                .as_deref(),
            Some("60 5")
        );
        assert_eq!(
            load_text("save 3600 1\nsave \"\"\n")
                .unwrap()
                .save
                .as_deref(),
            Some("")
        );
        assert!(usage_message(load_text("save 3600\n")).contains("redis.conf:1: save"));
    }

    #[test]
    fn replicaof_and_its_no_one() {
        let replica = |text: &str| load_text(text).unwrap().replicaof;
        assert_eq!(replica(""), None);
        assert_eq!(
            replica("replicaof 10.0.0.1 6379\n").as_deref(),
            Some("10.0.0.1 6379")
        );
        assert_eq!(replica("slaveof h 1\n").as_deref(), Some("h 1"));
        assert_eq!(replica("replicaof no one\n"), None);
        assert_eq!(replica("replicaof h 1\nreplicaof NO ONE\n"), None);
        assert!(load_text("replicaof h\n").is_err());
    }

    #[test]
    fn rename_command() {
        let conf = load_text(
            "rename-command CONFIG \"\"\nrename-command BgSave my-bgsave\nrename-command flushall ''\n",
        )
        .unwrap();
        assert_eq!(conf.renamed_commands["config"], "");
        assert_eq!(conf.renamed_commands["bgsave"], "my-bgsave");
        assert_eq!(conf.renamed_commands["flushall"], "");
        let msg = usage_message(load_text("port 1\nrename-command CONFIG\n"));
        assert!(
            msg.ends_with("redis.conf:2: rename-command: expects a command name and its new name"),
            "{msg}"
        );
    }

    #[test]
    fn quoting_like_sdssplitargs() {
        assert_eq!(split("  a  b\t c ").unwrap(), ["a", "b", "c"]);
        assert_eq!(split(r#""a b" 'c d'"#).unwrap(), ["a b", "c d"]);
        assert_eq!(
            split(r#""\n\r\t\b\a\\\"\x41\x7a\xZZ\q""#).unwrap(),
            ["\n\r\t\u{8}\u{7}\\\"AzxZZq"]
        );
        assert_eq!(split(r"'it\'s' '\n'").unwrap(), ["it's", "\\n"]);
        assert_eq!(
            split(r#"a"b c"d"#),
            Err("unbalanced quotes in configuration line")
        );
        assert_eq!(split(r#"a"b c""#).unwrap(), ["ab c"]);
        assert_eq!(split(r#""" ''"#).unwrap(), ["", ""]);
        for bad in [r#""abc"#, "'abc", r#""a"b"#, "'a'b", r#""abc\""#] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_quoting_names_file_and_line_but_not_the_line() {
        let msg = usage_message(load_text("port 1\nrequirepass \"hunter2\n"));
        assert!(msg.contains("redis.conf:2: unbalanced quotes"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn includes_relative_to_the_including_file_and_nested() {
        let dir = TempDir::new();
        dir.write("conf.d/inner/last.conf", "dbfilename last.rdb\nsave 60 1\n");
        dir.write(
            "conf.d/middle.conf",
            "port 7000\nINCLUDE inner/last.conf\nsave 10 10\n",
        );
        let main = dir.write(
            "redis.conf",
            "port 6000\ndbfilename first.rdb\ninclude conf.d/middle.conf\nappendonly yes\n",
        );
        let conf = load(&main).unwrap();
        assert_eq!(conf.port, 7000);
        assert_eq!(conf.dbfilename, "last.rdb");
        assert_eq!(conf.save.as_deref(), Some("60 1 10 10"));
        assert!(conf.appendonly);
        assert_eq!(conf.source, main);

        // An include is applied where it stands: later lines still win.
        let abs = dir.0.join("conf.d/inner/last.conf");
        let main = dir.write(
            "second.conf",
            &format!("include {}\ndbfilename after.rdb\n", abs.display()),
        );
        assert_eq!(load(&main).unwrap().dbfilename, "after.rdb");
    }

    #[test]
    fn include_depth_is_capped() {
        let dir = TempDir::new();
        for i in 0..=MAX_INCLUDE_DEPTH + 1 {
            dir.write(&format!("{i}.conf"), &format!("include {}.conf\n", i + 1));
        }
        dir.write(&format!("{}.conf", MAX_INCLUDE_DEPTH + 2), "port 1\n");
        let msg = usage_message(load(&dir.0.join("0.conf")));
        assert!(msg.contains("nested deeper than 8"), "{msg}");
        assert!(msg.contains("8.conf:1:"), "{msg}");

        // Exactly at the cap is fine.
        let dir = TempDir::new();
        for i in 0..MAX_INCLUDE_DEPTH {
            dir.write(&format!("{i}.conf"), &format!("include {}.conf\n", i + 1));
        }
        dir.write(&format!("{MAX_INCLUDE_DEPTH}.conf"), "port 1\n");
        assert_eq!(load(&dir.0.join("0.conf")).unwrap().port, 1);
    }

    #[test]
    fn include_cycles_are_detected() {
        let dir = TempDir::new();
        dir.write("a.conf", "include ./b.conf\n");
        dir.write("b.conf", "port 5\ninclude a.conf\n");
        let msg = usage_message(load(&dir.0.join("a.conf")));
        assert!(msg.contains("b.conf:2: include cycle"), "{msg}");

        // The same file twice, side by side, is not a cycle.
        dir.write("c.conf", "save 1 1\n");
        dir.write("d.conf", "include c.conf\ninclude c.conf\n");
        assert_eq!(
            load(&dir.0.join("d.conf")).unwrap().save.as_deref(),
            Some("1 1 1 1")
        );
    }

    #[test]
    fn include_errors() {
        let dir = TempDir::new();
        let main = dir.write("redis.conf", "\ninclude /etc/redis/*.conf\n");
        let msg = usage_message(load(&main));
        assert!(msg.contains("redis.conf:2: include: glob"), "{msg}");

        let main = dir.write("missing.conf", "include nowhere.conf\n");
        let msg = usage_message(load(&main));
        assert!(
            msg.contains("missing.conf:1: cannot read Redis config"),
            "{msg}"
        );
        assert!(msg.contains("nowhere.conf"), "{msg}");

        let msg = usage_message(load(&dir.0.join("absent.conf")));
        assert!(msg.starts_with("cannot read Redis config"), "{msg}");
    }

    #[test]
    fn an_endless_or_huge_include_is_refused_without_reading_it_all() {
        let dir = TempDir::new();
        let main = dir.write("redis.conf", "port 1\ninclude /dev/zero\n");
        let msg = usage_message(load(&main));
        assert!(
            msg.contains("redis.conf:2: cannot read Redis config /dev/zero: not a regular file"),
            "{msg}"
        );

        let big = dir.write("big.conf", "");
        fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_LEN + 1)
            .unwrap();
        let msg = usage_message(load(&big));
        assert!(msg.contains("is larger than 16 MiB"), "{msg}");
    }

    #[test]
    fn a_fifo_include_is_refused_at_once_instead_of_hanging() {
        let dir = TempDir::new();
        let fifo = dir.0.join("pipe.conf");
        crate::testing::make_fifo(&fifo);
        let main = dir.write("redis.conf", &format!("include {}\n", fifo.display()));
        // Without O_NONBLOCK the open would wait for a writer forever.
        let msg = usage_message(load(&main));
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn includes_side_by_side_are_counted_not_only_nested() {
        // Each level includes the next 10 times: 8 levels would be 10^8
        // reads, each within the depth cap and none a cycle.
        let dir = TempDir::new();
        let mut next = dir.write("leaf.conf", "port 7\n");
        for level in 0..3 {
            let name = format!("fan-{level}.conf");
            let line = format!("include {}\n", next.display());
            next = dir.write(&name, &line.repeat(10));
        }
        let msg = usage_message(load(&next));
        assert!(
            msg.contains(&format!("more than {MAX_CONF_FILES} files")),
            "{msg}"
        );
        let few = dir.write(
            "few.conf",
            &format!("include {}\n", dir.0.join("fan-0.conf").display()),
        );
        assert_eq!(load(&few).unwrap().files.len(), 12);
    }

    #[test]
    fn every_file_read_is_kept_with_its_owner_and_mode() {
        let dir = TempDir::new();
        let inner = dir.write("inner.conf", "port 7\n");
        let main = dir.write("redis.conf", &format!("include {}\n", inner.display()));
        fs::set_permissions(&inner, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let conf = load(&main).unwrap();
        let paths: Vec<&Path> = conf.files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(paths, [main.as_path(), inner.as_path()]);
        assert_eq!(conf.files[1].mode, 0o640);
        assert_eq!(conf.files[1].uid, fs::metadata(&inner).unwrap().uid());
    }

    #[test]
    fn a_file_reached_through_a_folder_of_others_is_their_word() {
        // Only root can make folders of other owners.
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        use std::os::unix::fs::{chown, symlink, PermissionsExt};
        let dir = TempDir::new();
        let roots = dir.write("root/words.conf", "port 7\n");
        let load_one = |path: &Path| load(path).unwrap().files.remove(0);
        // Under /tmp (sticky), in root's own folders: root's alone.
        let file = load_one(&roots);
        assert_eq!((file.uid, file.mode & 0o022, file.via), (0, 0, None));
        // A link to it, in a folder of the account's: the account's word.
        let accounts = dir.0.join("etc-redis");
        fs::create_dir(&accounts).unwrap();
        chown(&accounts, Some(102), Some(105)).unwrap();
        symlink(&roots, accounts.join("redis.conf")).unwrap();
        let file = load_one(&accounts.join("redis.conf"));
        assert_eq!((file.uid, file.via), (102, Some(accounts.clone())));
        // A link of root's, in root's folder, into that folder: the same.
        symlink("etc-redis/redis.conf", dir.0.join("hop.conf")).unwrap();
        assert_eq!(load_one(&dir.0.join("hop.conf")).uid, 102);
        // A folder of root's that a group may write: that group's word.
        let shared = dir.0.join("shared");
        fs::create_dir(&shared).unwrap();
        chown(&shared, None, Some(105)).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o775)).unwrap();
        fs::write(shared.join("redis.conf"), "port 7\n").unwrap();
        let file = load_one(&shared.join("redis.conf"));
        assert_eq!((file.uid, file.gid, file.mode & 0o020), (0, 105, 0o020));
        // A file of a third account in the account's folder: two writers.
        let third = accounts.join("third.conf");
        fs::write(&third, "port 7\n").unwrap();
        chown(&third, Some(65534), None).unwrap();
        assert_ne!(load_one(&third).mode & 0o002, 0);
    }

    /// An access ACL, as `setfacl` stores it: the base entries, named
    /// users and groups with read and write, and a mask.
    fn set_acl(path: &Path, users: &[u32], groups: &[u32], group_obj: u16, mask: u16) {
        use crate::fs::acl::encode::*;
        let mut entries = vec![(TAG_USER_OBJ, 7, NO_ID)];
        entries.extend(users.iter().map(|&uid| (TAG_USER, 6, uid)));
        entries.push((TAG_GROUP_OBJ, group_obj, NO_ID));
        entries.extend(groups.iter().map(|&gid| (TAG_GROUP, 6, gid)));
        entries.extend([(TAG_MASK, mask, NO_ID), (TAG_OTHER, 4, NO_ID)]);
        rustix::fs::setxattr(
            path,
            "system.posix_acl_access",
            &acl(&entries),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap_or_else(|e| panic!("set an ACL on {}: {e}", path.display()));
    }

    /// A folder of root's whose ACL mask shows group write but whose
    /// entries let nobody else write is passed, not taken for the end of
    /// the walk: a folder of another account below it is still found.
    #[test]
    fn a_masked_acl_does_not_end_the_walk_of_folders() {
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let t = TempDir::new();
        let top = t.0.join("top");
        fs::create_dir_all(top.join("theirs")).unwrap();
        let file = t.write("top/theirs/x.conf", "port 1\n");
        // Only root may write in `top`; the mask (rwx) shows group write.
        set_acl(&top, &[], &[], 5, 7);
        std::os::unix::fs::chown(top.join("theirs"), Some(65534), None).unwrap();
        let found = crate::fs::writers::folder_of_others(&file, 0)
            .unwrap()
            .expect("the account's folder");
        assert_eq!(found.path, top.join("theirs"));
    }

    /// A file or folder of root's whose ACL lets an account or a group
    /// write is their word as much as a file of theirs would be; the
    /// mode's group bits are only the ACL's mask.
    #[test]
    fn whom_an_acl_lets_write_has_a_say_in_the_file() {
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let dir = TempDir::new();
        let file = dir.write("root/redis.conf", "port 7\n");
        let load_one = |path: &Path| load(path).unwrap().files.remove(0);
        // The account may write by its entry: its word.
        set_acl(&file, &[102], &[], 4, 6);
        let read = load_one(&file);
        assert_eq!((read.uid, read.owner, read.mode & 0o022), (102, 0, 0));
        assert!(!read.is_roots_alone());
        // Two accounts: as good as everybody.
        set_acl(&file, &[102, 65534], &[], 4, 6);
        assert_ne!(load_one(&file).mode & 0o002, 0);
        // A group by its entry, the owning group not (group::r--).
        set_acl(&file, &[], &[105], 4, 6);
        let read = load_one(&file);
        assert_eq!((read.uid, read.gid, read.mode & 0o022), (0, 105, 0o020));
        // A mask without write: nobody but root.
        set_acl(&file, &[102], &[105], 6, 4);
        assert!(load_one(&file).is_roots_alone());
        // A folder of root's the account may write by its ACL: its word.
        set_acl(&file, &[], &[], 4, 4);
        let folder = file.parent().unwrap();
        set_acl(folder, &[102], &[], 5, 7);
        let read = load_one(&file);
        assert_eq!((read.uid, read.via.as_deref()), (102, Some(folder)));
    }

    /// The account may not read root's secrets through an include by way
    /// of its own folder: a link there to a file only root may read, or a
    /// path through a folder of its own and back out with `..`; nor may a
    /// file of root's that its group may write include one of root's.
    #[test]
    fn an_include_reads_only_files_its_writer_owns() {
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        use std::os::unix::fs::{chown, symlink, PermissionsExt};
        let dir = TempDir::new();
        let secret = dir.write("root/other.conf", "requirepass other-instance-secret\n");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let folder = dir.0.join("etc-redis");
        fs::create_dir_all(folder.join("sub")).unwrap();
        for path in [&folder, &folder.join("sub")] {
            chown(path, Some(102), Some(105)).unwrap();
        }
        symlink(&secret, folder.join("steal.conf")).unwrap();
        let own = dir.write("etc-redis/own.conf", "port 7\n");
        chown(&own, Some(102), Some(105)).unwrap();
        let includer = |name: &str, included: &Path| {
            let path = dir.write(
                name,
                &format!("include {}\nport 7777\n", included.display()),
            );
            chown(&path, Some(102), Some(105)).unwrap();
            load(&path)
        };
        let refused = |result: Result<RedisConf>| {
            let msg = usage_message(result);
            assert!(
                msg.contains("may only include files of its own owner"),
                "{msg}"
            );
            assert!(!msg.contains("other-instance-secret"), "{msg}");
        };
        refused(includer("etc-redis/a.conf", &folder.join("steal.conf")));
        refused(includer(
            "etc-redis/b.conf",
            &folder.join("sub/../../root/other.conf"),
        ));
        assert!(includer("etc-redis/c.conf", &own).is_ok());
        // Root's file that the account's group may write: the group's word.
        let shared = dir.write("g/redis.conf", &format!("include {}\n", secret.display()));
        chown(&shared, Some(0), Some(105)).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o660)).unwrap();
        refused(load(&shared));
    }

    #[test]
    fn a_file_of_redis_may_not_include_one_of_root() {
        // Only root can make files of two owners.
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let dir = TempDir::new();
        let secret = dir.write("other.conf", "requirepass other-instance-secret\n");
        let main = dir.write(
            "redis.conf",
            &format!("include {}\nport 7777\n", secret.display()),
        );
        std::os::unix::fs::chown(&main, Some(65534), None).unwrap();
        let msg = usage_message(load(&main));
        assert!(
            msg.contains("may only include files of its own owner"),
            "{msg}"
        );
        assert!(!msg.contains("other-instance-secret"), "{msg}");
        // Root's file may include anyone's (root chose to).
        std::os::unix::fs::chown(&main, Some(0), None).unwrap();
        std::os::unix::fs::chown(&secret, Some(65534), None).unwrap();
        assert!(load(&main).is_ok());
    }

    fn conf_of(files: &[(u32, u32, u32)]) -> RedisConf {
        let mut conf = RedisConf::defaults(Path::new("/etc/redis/redis.conf"));
        conf.files = files
            .iter()
            .map(|&(uid, gid, mode)| ConfFile {
                path: "/etc/redis/redis.conf".into(),
                uid,
                gid,
                mode,
                via: None,
                owner: uid,
            })
            .collect();
        conf
    }

    #[test]
    fn config_files_must_be_roots_or_the_data_dir_owners_word() {
        let redis = Owner { uid: 102, gid: 105 };
        let root = Owner { uid: 0, gid: 0 };
        let dir = Path::new("/var/lib/redis");
        let ok =
            |files: &[(u32, u32, u32)], owner| conf_of(files).check_authority(dir, owner).is_ok();
        // Debian: redis.conf redis:redis 0640, data dir redis's.
        assert!(ok(&[(102, 105, 0o640)], redis));
        // Root's config naming any account's dir, or root's own.
        assert!(ok(&[(0, 0, 0o644)], redis));
        assert!(ok(&[(0, 0, 0o644)], root));
        assert!(ok(&[(0, 105, 0o660)], redis), "root's, group of the dir");
        // The redis account pointing root at root's (or another account's) dir.
        assert!(!ok(&[(102, 105, 0o640)], root));
        assert!(!ok(&[(0, 0, 0o644), (102, 105, 0o640)], root), "an include");
        assert!(!ok(&[(102, 105, 0o640)], Owner { uid: 110, gid: 110 }));
        assert!(!ok(&[(0, 105, 0o660)], root), "group-writable by redis");
        assert!(!ok(&[(0, 0, 0o666)], redis), "writable by everyone");
        let err = conf_of(&[(102, 105, 0o640)])
            .check_authority(dir, root)
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("uid 102"), "{err}");
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let msg = usage_message(load_text("port 70000\n"));
        assert!(
            msg.ends_with("redis.conf:1: port: expects a port number 0-65535"),
            "{msg}"
        );
        let msg = usage_message(load_text("\n\nappendonly maybe\n"));
        assert!(msg.contains("redis.conf:3: appendonly"), "{msg}");
        let msg = usage_message(load_text("requirepass a b\n"));
        assert!(!msg.contains(" a ") && !msg.ends_with('b'), "{msg}");
    }

    // ---- properties: any redis.conf is settings or a usage error ----

    mod properties {
        use super::*;
        use proptest::prelude::*;

        use crate::testing::proptest_config as config;

        /// Passwords use letters found in no file name or message of ours.
        const SECRET_LETTERS: &str = "жщяюф";

        /// Arguments with every kind of quoting, balanced or not.
        fn arg() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9./*-]{0,12}",
                "\"[a-z \\\\x0-9'\"]{0,12}\"?",
                "'[a-z \\\\'\"]{0,12}'?",
                "[\"'\\\\]{1,3}",
            ]
        }

        fn line() -> impl Strategy<Value = String> {
            let include =
                prop::sample::select(INCLUDE_TARGETS).prop_map(|t| format!("include {t}"));
            let directive = (
                prop::sample::select(DIRECTIVES),
                prop::collection::vec(arg(), 0..4),
            )
                .prop_map(|(d, args)| format!("{d} {}", args.join(" ")));
            let password = ("[жщяюф \"'\\\\]{1,12}", prop::sample::select(QUOTES))
                .prop_map(|(p, q)| format!("requirepass {q}{p}{q}"));
            prop_oneof![
                4 => directive,
                2 => include,
                2 => password,
                1 => "[ -~\t]{0,40}",
                1 => "\\PC{0,20}",
                1 => prop::sample::select(LONG_LINES)
                    .prop_map(|n| format!("dir {}", "x".repeat(n))),
                1 => Just(format!("requirepass \"{}", "\"".repeat(10_000))),
            ]
        }

        const QUOTES: &[&str] = &["", "\"", "'"];
        const LONG_LINES: &[usize] = &[1000, 70_000, 300_000];
        /// A lone CR is no line end for Redis (it is a space), so it would
        /// make a password an argument of the line before; arbitrary bytes
        /// cover it.
        const LINE_ENDS: &[&str] = &["\n", "\r\n"];
        const DIRECTIVES: &[&str] = &[
            "port",
            "PORT",
            "bind",
            "dir",
            "dbfilename",
            "save",
            "appendonly",
            "appenddirname",
            "appendfilename",
            "unixsocket",
            "requirepass",
            "rename-command",
            "include",
            "other",
        ];
        /// Includes of itself, each other, a directory, nothing and a glob.
        const INCLUDE_TARGETS: &[&str] = &[
            "redis.conf",
            "./redis.conf",
            "other.conf",
            "sub/../other.conf",
            ".",
            "sub",
            "missing.conf",
            "*.conf",
            "\"\"",
            "/dev/null",
        ];

        fn file() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                4 => (prop::collection::vec(line(), 0..10), prop::sample::select(LINE_ENDS))
                    .prop_map(|(lines, end)| lines.join(end).into_bytes()),
                1 => prop::collection::vec(any::<u8>(), 0..300),
            ]
        }

        proptest! {
            #![proptest_config(config(128))]

            #[test]
            fn any_file_is_settings_or_a_usage_error(main in file(), other in file()) {
                let dir = TempDir::new();
                fs::create_dir(dir.0.join("sub")).unwrap();
                fs::write(dir.0.join("other.conf"), &other).unwrap();
                let path = dir.0.join("redis.conf");
                fs::write(&path, &main).unwrap();
                match load(&path) {
                    Ok(conf) => {
                        let shown = format!("{conf:?}");
                        prop_assert!(!shown.chars().any(|c| SECRET_LETTERS.contains(c)), "{}", shown);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.exit_code(), 2, "{}", e);
                        prop_assert!(
                            !e.message().chars().any(|c| SECRET_LETTERS.contains(c)),
                            "secret in {:?}", e.message()
                        );
                    }
                }
            }

            #[test]
            fn split_args_never_panics(line in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = split_args(&line);
            }
        }
    }
}
