//! A fake OpenStack Swift, TempAuth and Keystone v3, in the test process, for
//! the hostile-storage tests (issue 19): an HTTP/1.1 server on 127.0.0.1 (one
//! thread per connection, std only; https with a CA of `TlsFiles` when asked)
//! that records every request it receives (method, target, headers, body) and
//! answers from a per-test script:
//!
//! - `Answer::Normal`, the default: a small in-memory Swift that is enough for
//!   every command of the tool (containers, objects with `X-Object-Meta-*`,
//!   JSON listings with `prefix`, `marker` and `limit`, Static Large Objects
//!   with `?multipart-manifest=put|get|delete`, `Range`), TempAuth at
//!   `/auth/v1.0` and Keystone's `POST /v3/auth/tokens` with a catalog;
//! - anything a compromised or broken endpoint may send instead: a status of
//!   our choosing (a 3xx with a `Location`), crafted headers and bodies, a
//!   response or a body drip-fed one byte at a time, a body broken off, an
//!   endless chunked body.
//!
//! The script is a closure `Fn(&Request, &Store) -> Answer`, called with the
//! store locked (it must not call back into the `FakeSwift`).
//!
//! Also here: `run_bounded`, which runs the tool for at most a given time and
//! measures its peak RSS, and `TlsFiles`, a throw-away CA and a certificate
//! for 127.0.0.1 made with openssl.

use crate::harness::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The account path of the fake Swift.
pub const ACCOUNT: &str = "/v1/AUTH_test";
/// The TempAuth user (any key other than the fake's own is refused).
pub const USER: &str = "test:tester";
/// `run_bounded` kills a tool whose RSS grows past this (KiB): 1.5 GiB.
const RSS_CEILING_KIB: u64 = 1536 * 1024;
/// Largest request head the fake reads.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Requests

/// One request as the fake received it.
#[derive(Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query, percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        write!(
            f,
            "{} {} (headers {names:?}, {} bytes of body)",
            self.method,
            self.target,
            self.body.len()
        )
    }
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path as sent (percent-encoded), without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// The path, percent-decoded.
    pub fn decoded_path(&self) -> String {
        percent_decode(self.path())
    }

    /// The raw query (after `?`), if any.
    pub fn raw_query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.raw_query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// Container and object name (decoded) of a request under the account;
    /// `None` for the account itself or a request elsewhere.
    pub fn swift_path(&self) -> Option<(String, Option<String>)> {
        let rest = self.decoded_path();
        let rest = rest.strip_prefix(ACCOUNT)?.strip_prefix('/')?.to_string();
        if rest.is_empty() {
            return None;
        }
        Some(match rest.split_once('/') {
            Some((c, o)) => (c.to_string(), Some(o.to_string())),
            None => (rest, None),
        })
    }

    /// A GET listing of `container`.
    pub fn is_listing_of(&self, container: &str) -> bool {
        self.method == "GET" && matches!(self.swift_path(), Some((c, None)) if c == container)
    }

    /// A GET (without `?multipart-manifest`) of `container/object`.
    pub fn is_get_of(&self, container: &str, object: &str) -> bool {
        self.method == "GET"
            && self.query("multipart-manifest").is_none()
            && self.swift_path() == Some((container.into(), Some(object.into())))
    }
}

/// `%XX` decoded (bytes as UTF-8, lossily); `+` left alone, as Swift does in
/// paths.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Answers

/// What the fake sends back for one request.
pub enum Answer {
    /// What the in-memory Swift (or TempAuth, or Keystone) answers.
    Normal,
    /// This status, these headers and this body (`Content-Length` added).
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The whole response (status line, headers, body) one byte every
    /// `every`, then the connection closed.
    DripResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        every: Duration,
    },
    /// The head at once (with the full `Content-Length`), then the body one
    /// byte every `every`, then the connection closed.
    DripBody {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        every: Duration,
    },
    /// The head (with the full `Content-Length`) and the first `after` bytes
    /// of `body`, then the connection closed.
    BreakOff {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        after: usize,
    },
    /// A chunked body, chunk after chunk from `next`, until it returns
    /// `None`, the client goes away or the fake is dropped.
    Chunked {
        status: u16,
        headers: Vec<(String, String)>,
        next: Box<dyn FnMut() -> Option<Vec<u8>> + Send>,
    },
}

impl Answer {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Answer {
        Answer::Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` (a 3xx) pointing at `location`.
    pub fn redirect(status: u16, location: &str) -> Answer {
        Answer::status(status).header("Location", location)
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: &Value) -> Answer {
        Answer::bytes(status, serde_json::to_vec(body).expect("JSON"))
            .header("Content-Type", "application/json; charset=utf-8")
    }

    /// `status` with `body`.
    pub fn bytes(status: u16, body: Vec<u8>) -> Answer {
        Answer::Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        match &mut self {
            Answer::Normal => panic!("Answer::Normal takes no headers"),
            Answer::Reply { headers, .. }
            | Answer::DripResponse { headers, .. }
            | Answer::DripBody { headers, .. }
            | Answer::BreakOff { headers, .. }
            | Answer::Chunked { headers, .. } => headers.push((name.into(), value.into())),
        }
        self
    }
}

/// The per-test script: called for every request (with the store locked).
pub type Script = Arc<dyn Fn(&Request, &Store) -> Answer + Send + Sync>;

// ---------------------------------------------------------------------------
// The in-memory Swift

/// One object: plain bytes, or a Static Large Object (its manifest).
#[derive(Clone, Debug, Default)]
pub struct Object {
    pub data: Vec<u8>,
    pub content_type: String,
    /// `X-Object-Meta-*` headers as sent.
    pub meta: Vec<(String, String)>,
    /// The segments (`/container/name`, etag, size) of an SLO manifest.
    pub slo: Option<Vec<Segment>>,
}

#[derive(Clone, Debug)]
pub struct Segment {
    /// `/container/object`, unencoded.
    pub path: String,
    pub etag: String,
    pub size: u64,
}

/// Containers by name, objects by name.
#[derive(Default)]
pub struct Store {
    pub containers: BTreeMap<String, BTreeMap<String, Object>>,
}

impl Store {
    pub fn get(&self, container: &str, name: &str) -> Option<&Object> {
        self.containers.get(container)?.get(name)
    }

    /// The bytes a GET of the object returns: its own, or for an SLO its
    /// segments' one after the other (missing ones skipped).
    pub fn content(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let object = self.get(container, name)?;
        let Some(segments) = &object.slo else {
            return Some(object.data.clone());
        };
        let mut out = Vec::new();
        for s in segments {
            let path = s.path.trim_start_matches('/');
            if let Some((c, o)) = path.split_once('/') {
                if let Some(seg) = self.get(c, o) {
                    out.extend_from_slice(&seg.data);
                }
            }
        }
        Some(out)
    }

    /// A JSON listing page with `delimiter=/`: the names below a `/` after
    /// `prefix` rolled up in one `subdir` entry, as Swift does.
    pub fn rolled_up_listing(
        &self,
        container: &str,
        prefix: &str,
        marker: &str,
        limit: usize,
    ) -> Value {
        let Some(objects) = self.containers.get(container) else {
            return json!([]);
        };
        let mut entries: Vec<Value> = Vec::new();
        let mut last_subdir = String::new();
        for name in objects.keys() {
            if !name.starts_with(prefix) || name.as_str() <= marker || entries.len() >= limit {
                continue;
            }
            match name[prefix.len()..].find('/') {
                Some(at) => {
                    let subdir = name[..prefix.len() + at + 1].to_string();
                    if subdir != last_subdir && subdir.as_str() > marker {
                        entries.push(json!({ "subdir": subdir }));
                        last_subdir = subdir;
                    }
                }
                None => entries.push(json!({ "name": name, "bytes": 0 })),
            }
        }
        Value::Array(entries)
    }

    /// A JSON listing page of `container` as Swift sends it.
    pub fn listing(&self, container: &str, prefix: &str, marker: &str, limit: usize) -> Value {
        let Some(objects) = self.containers.get(container) else {
            return json!([]);
        };
        Value::Array(
            objects
                .iter()
                .filter(|(name, _)| name.starts_with(prefix) && name.as_str() > marker)
                .take(limit)
                .map(|(name, o)| {
                    json!({
                        "name": name,
                        "bytes": self.content(container, name).map_or(0, |c| c.len()),
                        "hash": md5_hex(&o.data),
                        "content_type": o.content_type,
                        "last_modified": "2026-01-01T00:00:00.000000",
                    })
                })
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------
// TLS

/// A throw-away CA and a server certificate it signed, made with openssl.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// In `dir`: a CA, and a certificate for `san` (e.g. `IP:127.0.0.1`).
    pub fn make(dir: &Path, san: &str) -> TlsFiles {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let made = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -e
                openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=fake-ca \\
                    -keyout ca.key -out ca.pem
                openssl req -newkey rsa:2048 -nodes -subj /CN=fake-swift -keyout key.pem -out req.csr
                printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' >ext.cnf
                openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \\
                    -extfile ext.cnf -out cert.pem"
            ))
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "openssl: {made:?}");
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("read cert.pem")
            .collect::<Result<_, _>>()
            .expect("parse cert.pem");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("read key.pem");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        Arc::new(config)
    }
}

// ---------------------------------------------------------------------------
// The server

struct Shared {
    requests: Mutex<Vec<Request>>,
    store: Mutex<Store>,
    script: Mutex<Option<Script>>,
    /// The token TempAuth and Keystone issue and Swift accepts.
    token: String,
    /// The TempAuth key and the Keystone password.
    key: String,
    /// Accept any token, any key (a sink that plays along).
    anything: AtomicBool,
    /// What TempAuth's `X-Storage-Url` and Keystone's catalog name.
    storage_url: Mutex<String>,
    stop: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Every open connection, to shut it down on drop.
    open: Mutex<BTreeMap<usize, TcpStream>>,
    /// Bodies of segment PUTs are read this many bytes at a time, with a
    /// pause before each read (`read_segments_slowly`).
    segment_pace: Mutex<Option<(usize, Duration)>>,
    /// When each paced body began to be read.
    paced: Mutex<Vec<Instant>>,
}

/// A fake Swift + TempAuth + Keystone on 127.0.0.1; stopped when dropped.
pub struct FakeSwift {
    pub port: u16,
    tls: bool,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FakeSwift {
    /// Over plain http.
    pub fn start() -> FakeSwift {
        FakeSwift::start_with(None)
    }

    /// Over https with the certificate of `tls`.
    pub fn start_tls(tls: &TlsFiles) -> FakeSwift {
        FakeSwift::start_with(Some(tls.server_config()))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> FakeSwift {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Swift");
        let port = listener.local_addr().expect("local addr").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            store: Mutex::new(Store::default()),
            script: Mutex::new(None),
            token: format!("tk-{port}-f4ke-t0ken-s3cret"),
            key: format!("k3y-{port}-f4ke-p4ssw0rd"),
            anything: AtomicBool::new(false),
            storage_url: Mutex::new(format!("{scheme}://127.0.0.1:{port}{ACCOUNT}")),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(BTreeMap::new()),
            segment_pace: Mutex::new(None),
            paced: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let id = s.accepted.fetch_add(1, Ordering::SeqCst);
                s.open.lock().expect("open lock").insert(id, clone);
                let shared = Arc::clone(&s);
                let tls = tls.clone();
                thread::spawn(move || {
                    match tls {
                        None => serve(&shared, Conn::new(stream)),
                        Some(config) => {
                            if let Ok(session) = rustls::ServerConnection::new(config) {
                                let stream = rustls::StreamOwned::new(session, stream);
                                serve(&shared, Conn::new(stream));
                            }
                        }
                    }
                    // Closed for good: the clone kept for `drop` would keep
                    // the connection open.
                    if let Some(clone) = shared.open.lock().expect("open lock").remove(&id) {
                        let _ = clone.shutdown(Shutdown::Both);
                    }
                });
            }
        });
        FakeSwift {
            port,
            tls: scheme == "https",
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The account URL: `BASE/v1/AUTH_test`.
    pub fn storage_url(&self) -> String {
        format!("{}{ACCOUNT}", self.base())
    }

    /// The TempAuth URL: `BASE/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("{}/auth/v1.0", self.base())
    }

    /// The token the fake issues and accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The TempAuth key, which is also the Keystone password.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// Accept any token and any key (a sink that plays along).
    pub fn accept_anything(&self) {
        self.shared.anything.store(true, Ordering::SeqCst);
    }

    /// Make TempAuth's `X-Storage-Url` and Keystone's catalog name `url`.
    pub fn hand_out_storage_url(&self, url: &str) {
        *self.shared.storage_url.lock().expect("url lock") = url.to_string();
    }

    /// Answer with `script` from now on.
    pub fn script(&self, script: impl Fn(&Request, &Store) -> Answer + Send + Sync + 'static) {
        *self.shared.script.lock().expect("script lock") = Some(Arc::new(script));
    }

    /// Back to plain Swift behaviour.
    pub fn normal(&self) {
        *self.shared.script.lock().expect("script lock") = None;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Read the body of every PUT into the segments container `bytes` at a
    /// time, pausing `every` before each read: a proxy that reads slowly, yet
    /// never slowly enough for one write of the client's to time out.
    pub fn read_segments_slowly(&self, bytes: usize, every: Duration) {
        *self.shared.segment_pace.lock().expect("pace lock") = Some((bytes, every));
    }

    /// When each slowly read segment body began to be read.
    pub fn paced_bodies(&self) -> Vec<Instant> {
        self.shared.paced.lock().expect("paced lock").clone()
    }

    /// Forget the requests received so far.
    pub fn forget_requests(&self) {
        self.shared.requests.lock().expect("requests lock").clear();
    }

    /// Requests that carried header `name`.
    pub fn requests_with(&self, name: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.header(name).is_some())
            .collect()
    }

    /// Run `f` on the store.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.shared.store.lock().expect("store lock"))
    }

    pub fn create_container(&self, container: &str) {
        self.with_store(|s| {
            s.containers.entry(container.to_string()).or_default();
        });
    }

    /// Store a plain object (its container created if needed).
    pub fn put(&self, container: &str, name: &str, data: &[u8]) {
        self.with_store(|s| {
            s.containers
                .entry(container.to_string())
                .or_default()
                .insert(
                    name.to_string(),
                    Object {
                        data: data.to_vec(),
                        content_type: "application/octet-stream".into(),
                        ..Object::default()
                    },
                );
        });
    }

    /// Store (or replace) an SLO manifest whose segments are `segments`
    /// (`container/name` each, existing or not).
    pub fn put_manifest(&self, container: &str, name: &str, segments: &[&str]) {
        self.with_store(|s| {
            let segs: Vec<Segment> = segments
                .iter()
                .map(|p| {
                    let (c, o) = p.split_once('/').expect("container/name");
                    let data = s.get(c, o).map(|o| o.data.clone()).unwrap_or_default();
                    Segment {
                        path: format!("/{p}"),
                        etag: md5_hex(&data),
                        size: data.len() as u64,
                    }
                })
                .collect();
            let old = s.get(container, name).cloned().unwrap_or_default();
            s.containers
                .entry(container.to_string())
                .or_default()
                .insert(
                    name.to_string(),
                    Object {
                        data: serde_json::to_vec(&manifest_get_body(&segs)).expect("JSON"),
                        content_type: "application/octet-stream".into(),
                        meta: old.meta,
                        slo: Some(segs),
                    },
                );
        });
    }

    pub fn exists(&self, container: &str, name: &str) -> bool {
        self.with_store(|s| s.get(container, name).is_some())
    }

    /// Object names in `container`, sorted.
    pub fn names(&self, container: &str) -> Vec<String> {
        self.with_store(|s| {
            s.containers
                .get(container)
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Settings for a pre-authenticated token at this fake.
    pub fn preauth_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("os_storage_url", self.storage_url()),
            ("os_auth_token", self.token().to_string()),
        ]
    }

    /// Settings for TempAuth at this fake.
    pub fn tempauth_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("st_auth", self.auth_url()),
            ("st_user", USER.to_string()),
            ("st_key", self.key().to_string()),
        ]
    }

    /// Settings for Keystone v3 (password) at this fake.
    pub fn keystone_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("os_auth_url", format!("{}/v3", self.base())),
            ("os_username", "demo".to_string()),
            ("os_password", self.key().to_string()),
            ("os_project_name", "demo".to_string()),
        ]
    }
}

impl Drop for FakeSwift {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.shared.open.lock().expect("open lock").values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// A connection: buffered reads, direct writes, over TCP or TLS.
struct Conn<S: Read + Write> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
    /// At most this many bytes a read, after this pause (a slow reader).
    pace: Option<(usize, Duration)>,
}

impl<S: Read + Write> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            pace: None,
        }
    }

    /// More bytes into the buffer; false at the end of the stream.
    fn fill(&mut self) -> bool {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        let most = match self.pace {
            Some((bytes, every)) => {
                thread::sleep(every);
                bytes.min(chunk.len())
            }
            None => chunk.len(),
        };
        match self.stream.read(&mut chunk[..most]) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// One line without its CRLF; `None` at the end of the stream.
    fn line(&mut self, max: usize) -> Option<String> {
        loop {
            if let Some(at) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.pos..self.pos + at];
                let line = String::from_utf8_lossy(line)
                    .trim_end_matches('\r')
                    .to_string();
                self.pos += at + 1;
                return Some(line);
            }
            if self.buf.len() - self.pos > max || !self.fill() {
                return None;
            }
        }
    }

    fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            if !self.fill() {
                return None;
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(out)
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok() && self.stream.flush().is_ok()
    }

    /// The next request, a segment PUT's body read at `segment_pace` (when
    /// it began noted in `paced`); `None` at the end of the stream or on
    /// garbage.
    fn request(&mut self, shared: &Shared) -> Option<Request> {
        let mut request = self.head()?;
        let to_segments = request.method == "PUT"
            && request
                .swift_path()
                .is_some_and(|(c, o)| c.ends_with("_segments") && o.is_some());
        self.pace = *shared.segment_pace.lock().expect("pace lock");
        match to_segments && self.pace.is_some() {
            true => shared
                .paced
                .lock()
                .expect("paced lock")
                .push(Instant::now()),
            false => self.pace = None,
        }
        let body = self.body(&request);
        self.pace = None;
        request.body = body?;
        Some(request)
    }

    /// A request's line and headers, its body still to read.
    fn head(&mut self) -> Option<Request> {
        let first = loop {
            let line = self.line(MAX_HEAD)?;
            if !line.is_empty() {
                break line;
            }
        };
        let mut parts = first.split(' ');
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.line(MAX_HEAD)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        Some(Request {
            method,
            target,
            headers,
            body: Vec::new(),
        })
    }

    /// The body of `request`, chunked or of its `Content-Length`.
    fn body(&mut self, request: &Request) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        let chunked = request
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let size_line = self.line(1024)?;
                let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    while !self.line(MAX_HEAD)?.is_empty() {}
                    break;
                }
                body.extend(self.exact(size)?);
                self.line(16)?;
            }
        } else if let Some(len) = request.header("Content-Length") {
            let len: usize = len.parse().ok()?;
            body = self.exact(len)?;
        }
        Some(body)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    }
}

/// Status line and headers, with `Content-Length: length` unless the
/// headers set one or `length` is `None`, and the `Date` every answer of a
/// server with a clock carries (RFC 9110) unless they set one.
fn head(status: u16, headers: &[(String, String)], length: Option<usize>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Date")) {
        out.push_str(&format!("Date: {}\r\n", http_date(now_secs())));
    }
    let has_length = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Content-Length"));
    if let (Some(n), false) = (length, has_length) {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `secs` since the epoch as an HTTP date ("Sun, 06 Nov 1994 08:49:37
/// GMT"), by Howard Hinnant's days-to-civil algorithm.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn http_dates_are_written_as_servers_write_them() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
}

/// Sleep `d` in small steps; false if the fake is being dropped.
fn pause(shared: &Shared, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    !shared.stop.load(Ordering::SeqCst)
}

fn serve<S: Read + Write>(shared: &Shared, mut conn: Conn<S>) {
    while let Some(request) = conn.request(shared) {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        shared
            .requests
            .lock()
            .expect("requests lock")
            .push(request.clone());
        let script = shared.script.lock().expect("script lock").clone();
        let answer = match script {
            Some(script) => script(&request, &shared.store.lock().expect("store lock")),
            None => Answer::Normal,
        };
        let is_head = request.method == "HEAD";
        match answer {
            Answer::Normal => {
                let (status, headers, body) = normal(shared, &request);
                let mut out = head(status, &headers, Some(body.len()));
                if !is_head {
                    out.extend_from_slice(&body);
                }
                let close = request
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if !conn.write(&out) || close {
                    return;
                }
            }
            Answer::Reply {
                status,
                headers,
                body,
            } => {
                let mut out = head(status, &headers, Some(body.len()));
                if !is_head {
                    out.extend_from_slice(&body);
                }
                if !conn.write(&out) {
                    return;
                }
            }
            Answer::DripResponse {
                status,
                headers,
                body,
                every,
            } => {
                let mut out = head(status, &headers, Some(body.len()));
                out.extend_from_slice(&body);
                for byte in out {
                    if !conn.write(&[byte]) || !pause(shared, every) {
                        return;
                    }
                }
                return;
            }
            Answer::DripBody {
                status,
                headers,
                body,
                every,
            } => {
                if !conn.write(&head(status, &headers, Some(body.len()))) {
                    return;
                }
                for byte in body {
                    if !pause(shared, every) || !conn.write(&[byte]) {
                        return;
                    }
                }
                return;
            }
            Answer::BreakOff {
                status,
                headers,
                body,
                after,
            } => {
                let mut out = head(status, &headers, Some(body.len()));
                out.extend_from_slice(&body[..after.min(body.len())]);
                conn.write(&out);
                return;
            }
            Answer::Chunked {
                status,
                mut headers,
                mut next,
            } => {
                headers.push(("Transfer-Encoding".into(), "chunked".into()));
                if !conn.write(&head(status, &headers, None)) {
                    return;
                }
                while let Some(chunk) = next() {
                    if shared.stop.load(Ordering::SeqCst) || chunk.is_empty() {
                        return;
                    }
                    let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(b"\r\n");
                    if !conn.write(&out) {
                        return;
                    }
                }
                conn.write(b"0\r\n\r\n");
                return;
            }
        }
    }
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn reply(status: u16) -> Reply {
    (status, Vec::new(), Vec::new())
}

fn json_reply(status: u16, body: &Value) -> Reply {
    (
        status,
        vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        serde_json::to_vec(body).expect("JSON"),
    )
}

/// A manifest as `GET ?multipart-manifest=get` shows it.
fn manifest_get_body(segments: &[Segment]) -> Value {
    Value::Array(
        segments
            .iter()
            .map(|s| {
                json!({
                    "name": s.path,
                    "hash": s.etag,
                    "bytes": s.size,
                    "content_type": "application/octet-stream",
                    "last_modified": "2026-01-01T00:00:00.000000",
                })
            })
            .collect(),
    )
}

/// What the in-memory Swift, TempAuth and Keystone answer.
fn normal(shared: &Shared, request: &Request) -> Reply {
    let anything = shared.anything.load(Ordering::SeqCst);
    let path = request.decoded_path();
    if path.starts_with("/auth/") {
        let ok = request.header("X-Auth-User").is_some()
            && (anything || request.header("X-Auth-Key") == Some(shared.key.as_str()));
        if !ok {
            return reply(401);
        }
        let url = shared.storage_url.lock().expect("url lock").clone();
        return (
            200,
            vec![
                ("X-Storage-Url".into(), url),
                ("X-Auth-Token".into(), shared.token.clone()),
                ("X-Auth-Token-Expires".into(), "86399".into()),
            ],
            Vec::new(),
        );
    }
    if path.ends_with("/v3/auth/tokens") && request.method == "POST" {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let password = &body["auth"]["identity"]["password"]["user"]["password"];
        if !anything && password.as_str() != Some(shared.key.as_str()) {
            return reply(401);
        }
        let url = shared.storage_url.lock().expect("url lock").clone();
        let (status, mut headers, body) = json_reply(201, &keystone_token(&url));
        headers.push(("X-Subject-Token".into(), shared.token.clone()));
        return (status, headers, body);
    }
    if !path.starts_with(ACCOUNT) {
        return reply(404);
    }
    let token_ok = request.header("X-Auth-Token") == Some(shared.token.as_str());
    if !token_ok && !anything {
        return reply(401);
    }
    let mut store = shared.store.lock().expect("store lock");
    let Some((container, object)) = request.swift_path() else {
        // The account itself.
        return match request.method.as_str() {
            "GET" => json_reply(200, &json!([])),
            "HEAD" => reply(204),
            _ => reply(403),
        };
    };
    let method = request.method.as_str();
    let Some(object) = object.filter(|o| !o.is_empty()) else {
        return match method {
            "PUT" => match store.containers.contains_key(&container) {
                true => reply(202),
                false => {
                    store.containers.insert(container, BTreeMap::new());
                    reply(201)
                }
            },
            "HEAD" | "POST" => match store.containers.contains_key(&container) {
                true => reply(204),
                false => reply(404),
            },
            "GET" => {
                if !store.containers.contains_key(&container) {
                    return reply(404);
                }
                let prefix = request.query("prefix").unwrap_or_default();
                let marker = request.query("marker").unwrap_or_default();
                let limit = request
                    .query("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(10_000usize)
                    .min(10_000);
                match request.query("delimiter").as_deref() {
                    Some("/") => json_reply(
                        200,
                        &store.rolled_up_listing(&container, &prefix, &marker, limit),
                    ),
                    _ => json_reply(200, &store.listing(&container, &prefix, &marker, limit)),
                }
            }
            "DELETE" => match store.containers.get(&container).map(|c| c.is_empty()) {
                None => reply(404),
                Some(false) => reply(409),
                Some(true) => {
                    store.containers.remove(&container);
                    reply(204)
                }
            },
            _ => reply(405),
        };
    };
    if !store.containers.contains_key(&container) {
        return reply(404);
    }
    let manifest = request.query("multipart-manifest");
    match method {
        "PUT" => {
            let meta: Vec<(String, String)> = request
                .headers
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-object-meta-"))
                .cloned()
                .collect();
            let content_type = request
                .header("Content-Type")
                .unwrap_or("application/octet-stream")
                .to_string();
            let etag = md5_hex(&request.body);
            let slo = if manifest.as_deref() == Some("put") {
                let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&request.body)
                else {
                    return reply(400);
                };
                let mut segs = Vec::new();
                for e in entries {
                    let Some(p) = e["path"].as_str() else {
                        return reply(400);
                    };
                    let exists = p
                        .trim_start_matches('/')
                        .split_once('/')
                        .is_some_and(|(c, o)| store.get(c, o).is_some());
                    if !exists {
                        return reply(400);
                    }
                    segs.push(Segment {
                        path: p.to_string(),
                        etag: e["etag"].as_str().unwrap_or_default().to_string(),
                        size: e["size_bytes"].as_u64().unwrap_or(0),
                    });
                }
                Some(segs)
            } else {
                None
            };
            let data = match &slo {
                Some(segs) => serde_json::to_vec(&manifest_get_body(segs)).expect("JSON"),
                None => request.body.clone(),
            };
            store
                .containers
                .get_mut(&container)
                .expect("container")
                .insert(
                    object,
                    Object {
                        data,
                        content_type,
                        meta,
                        slo,
                    },
                );
            (
                201,
                vec![("ETag".into(), format!("\"{etag}\""))],
                Vec::new(),
            )
        }
        "HEAD" | "GET" => {
            let Some(found) = store.get(&container, &object).cloned() else {
                return reply(404);
            };
            let mut headers: Vec<(String, String)> = found.meta.clone();
            headers.push(("Content-Type".into(), found.content_type.clone()));
            headers.push(("ETag".into(), format!("\"{}\"", md5_hex(&found.data))));
            headers.push(("Accept-Ranges".into(), "bytes".into()));
            if found.slo.is_some() {
                headers.push(("X-Static-Large-Object".into(), "True".into()));
                if manifest.as_deref() == Some("get") {
                    return (200, headers, found.data);
                }
            }
            let content = store.content(&container, &object).unwrap_or_default();
            let len = content.len();
            match request.header("Range").and_then(|r| parse_range(r, len)) {
                None if request.header("Range").is_some() => {
                    headers.push(("Content-Range".into(), format!("bytes */{len}")));
                    (416, headers, Vec::new())
                }
                None => (200, headers, content),
                Some((start, end)) => {
                    headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
                    (206, headers, content[start..=end].to_vec())
                }
            }
        }
        "DELETE" => {
            let Some(found) = store.get(&container, &object).cloned() else {
                return reply(404);
            };
            match (&found.slo, manifest.as_deref()) {
                (Some(segments), Some("delete")) => {
                    let mut deleted = 1;
                    for s in segments {
                        if let Some((c, o)) = s.path.trim_start_matches('/').split_once('/') {
                            if let Some(c) = store.containers.get_mut(c) {
                                deleted += c.remove(o).is_some() as usize;
                            }
                        }
                    }
                    store
                        .containers
                        .get_mut(&container)
                        .expect("container")
                        .remove(&object);
                    json_reply(
                        200,
                        &json!({"Number Deleted": deleted, "Number Not Found": 0,
                            "Errors": [], "Response Status": "200 OK", "Response Body": ""}),
                    )
                }
                _ => {
                    store
                        .containers
                        .get_mut(&container)
                        .expect("container")
                        .remove(&object);
                    reply(204)
                }
            }
        }
        "POST" => reply(202),
        _ => reply(405),
    }
}

/// `bytes=N-`, `bytes=N-M` or `bytes=-K` of a `len`-byte object: the first
/// and last byte, if satisfiable.
fn parse_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", k) => {
            let k: usize = k.parse().ok()?;
            (len.checked_sub(k.min(len))?, len.checked_sub(1)?)
        }
        (n, "") => (n.parse().ok()?, len.checked_sub(1)?),
        (n, m) => (
            n.parse().ok()?,
            m.parse::<usize>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && end < len).then_some((start, end))
}

/// A Keystone v3 token body whose catalog names `url` as the public
/// object-store of RegionOne.
pub fn keystone_token(url: &str) -> Value {
    json!({"token": {
        "methods": ["password"],
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "issued_at": "2026-01-01T00:00:00.000000Z",
        "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "catalog": [
            {"type": "identity", "name": "keystone", "id": "k1", "endpoints": []},
            {"type": "object-store", "name": "swift", "id": "s1", "endpoints": [
                {"id": "e1", "interface": "public", "region": "RegionOne",
                 "region_id": "RegionOne", "url": url}]}
        ]
    }})
}

// ---------------------------------------------------------------------------
// Running the tool with a bound on time, measuring its memory

/// The result of `run_bounded`.
pub struct Bounded {
    pub out: Output,
    /// Whether it ended by itself (false: killed at the bound).
    pub finished: bool,
    pub elapsed: Duration,
    pub bound: Duration,
    /// Peak resident set size in KiB, if it could be measured.
    pub peak_rss_kib: Option<u64>,
}

impl Bounded {
    /// The output, failing the test if the tool was still running at the
    /// bound (and was killed).
    #[track_caller]
    pub fn ended(&self) -> &Output {
        assert!(
            self.finished,
            "still running after {:?} (killed then: {}; peak RSS {}); stderr so far:\n{}",
            self.elapsed,
            match self.elapsed < self.bound {
                true => "its RSS passed the ceiling".to_string(),
                false => format!("the bound is {:?}", self.bound),
            },
            self.rss_text(),
            tail(&self.out.stderr, 3000)
        );
        &self.out
    }

    /// Fail unless the peak RSS was under `mib` MiB.
    #[track_caller]
    pub fn rss_below(&self, mib: u64) -> &Bounded {
        let peak = self.peak_rss_kib.expect("peak RSS measured");
        assert!(
            peak < mib * 1024,
            "peak RSS {} is not below {mib} MiB (finished: {}, after {:?})\n{}",
            self.rss_text(),
            self.finished,
            self.elapsed,
            self.out
        );
        self
    }

    pub fn rss_text(&self) -> String {
        match self.peak_rss_kib {
            Some(kib) => format!("{} MiB", kib / 1024),
            None => "unknown".into(),
        }
    }
}

/// The last `max` bytes of `text` (on a char boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut at = text.len().saturating_sub(max);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

/// Run `run` (stdin closed, stdout and stderr captured) for at most `bound`:
/// killed then (with everything it started), or as soon as its RSS passes
/// `RSS_CEILING_KIB`. Its peak RSS comes from GNU
/// time (`/usr/bin/time -f %M`) when installed, else from polling VmHWM in
/// `/proc/PID/status` while it runs (the larger of both when both are had).
pub fn run_bounded(run: Run, bound: Duration) -> Bounded {
    let inner = run.command();
    let time = Path::new("/usr/bin/time");
    let report = std::env::temp_dir().join(format!(
        "rb-time-{}-{:?}.txt",
        std::process::id(),
        thread::current().id()
    ));
    let _ = fs::remove_file(&report);
    let mut command = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&report);
        c.arg(inner.get_program()).args(inner.get_args());
        c
    } else {
        let mut c = Command::new(inner.get_program());
        c.args(inner.get_args());
        c
    };
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => command.env(k, v),
            None => command.env_remove(k),
        };
    }
    // Its own process group, to kill it with what it started.
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = inner.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = inner
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let pid = child.id();
    let stdout = read_in_background(child.stdout.take().expect("stdout"));
    let stderr = read_in_background(child.stderr.take().expect("stderr"));
    let mut polled: Option<u64> = None;
    let (status, finished) = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break (Some(status), true);
        }
        // The tool: the child itself, or the child of GNU time.
        let tool = match time.exists() {
            true => fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok()),
            false => Some(pid),
        };
        if let Some(kib) = tool.and_then(vm_hwm_kib) {
            polled = Some(polled.map_or(kib, |p| p.max(kib)));
        }
        // A tool that grows without end is stopped before it hurts the
        // machine (and counted as still running).
        let too_big = polled.is_some_and(|kib| kib > RSS_CEILING_KIB);
        if start.elapsed() > bound || too_big {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
            break (None, false);
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let timed = fs::read_to_string(&report).ok().and_then(|text| {
        text.lines()
            .rev()
            .find_map(|l| l.trim().parse::<u64>().ok())
    });
    let _ = fs::remove_file(&report);
    let peak_rss_kib = match (timed, polled) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        String::from_utf8_lossy(&rx.recv_timeout(DEADLINE).unwrap_or_default()).into_owned()
    };
    Bounded {
        out: Output {
            program,
            args,
            code: status.and_then(|s| s.code()),
            stdout: collect(stdout),
            stderr: collect(stderr),
        },
        finished,
        elapsed,
        bound,
        peak_rss_kib,
    }
}

/// VmHWM of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_in_background(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = from.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}
