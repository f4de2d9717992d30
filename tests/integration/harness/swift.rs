//! A real OpenStack Swift (tests/support/swift-aio.sh), an HTTP client for
//! it, and a test Redis whose tool stores there.

use super::*;

/// How long one request of the harness to Swift may take.
const SWIFT_REQUEST_TIMEOUT_SECS: u32 = 60;

/// The segment size the Swift tests use: the smallest the tool accepts.
pub const SEGMENT: u64 = 1_048_576;

/// A Redis, started, whose tool stores in `swift://container` with
/// `SEGMENT`-sized segments.
pub fn redis_on_swift(container: &str) -> TestRedis {
    TestRedis::builder()
        .setting("storage", &format!("swift://{container}"))
        // The test stack is a test cloud on plain http (TLS where a test says).
        .setting("swift_allow_http", "yes")
        .setting("segment_size", &SEGMENT.to_string())
        .start()
}

/// One HTTP response, as curl got it.
pub struct HttpResponse {
    pub status: u16,
    /// Headers of the final response (not of a `100 Continue`), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        if self.body.len() <= 2000 {
            write!(f, "\n{}", String::from_utf8_lossy(&self.body))
        } else {
            write!(f, "\n({} bytes of body)", self.body.len())
        }
    }
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name`, which must be present.
    #[track_caller]
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no header {name} in\n{self:?}"))
    }

    /// Fail unless the status is one of `codes`.
    #[track_caller]
    pub fn expect(&self, codes: &[u16]) -> &HttpResponse {
        assert!(
            codes.contains(&self.status),
            "expected HTTP {codes:?}, got\n{self:?}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self:?}"))
    }
}

/// Percent-encode a Swift path or query value (`/` kept when `keep_slash`).
pub fn url_encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request with curl: `method` on `url` with `headers` and an optional
/// body. Panics only if curl itself fails (no connection, timeout).
pub fn http(
    work: &Path,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    http_with(work, None, method, url, headers, body)
}

/// `http`, trusting the CA certificates in `cacert` (PEM) for `https` URLs.
pub fn http_with(
    work: &Path,
    cacert: Option<&Path>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    fs::create_dir_all(work).unwrap_or_else(|e| panic!("mkdir {}: {e}", work.display()));
    let head_file = work.join(format!("{n}.head"));
    let body_file = work.join(format!("{n}.body"));
    let req_file = work.join(format!("{n}.req"));
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", &SWIFT_REQUEST_TIMEOUT_SECS.to_string()])
        .arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        // No `Expect: 100-continue` round trip for large bodies.
        .args(["-H", "Expect:"]);
    if let Some(ca) = cacert {
        c.arg("--cacert").arg(ca);
    }
    match method {
        "HEAD" => {
            c.arg("-I");
        }
        "GET" => {}
        m => {
            c.args(["-X", m]);
        }
    }
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(body) = body {
        fs::write(&req_file, body).expect("write request body");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            c.args(["-H", "Content-Type: application/octet-stream"]);
        }
        c.arg("--data-binary")
            .arg(format!("@{}", req_file.display()));
    }
    c.arg(url);
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (apt-get install curl): {e}"));
    assert!(
        out.status.success(),
        "curl {method} {url} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let head = fs::read_to_string(&head_file).unwrap_or_default();
    let body = fs::read(&body_file).unwrap_or_default();
    for f in [&head_file, &body_file, &req_file] {
        let _ = fs::remove_file(f);
    }
    let mut status = 0;
    let mut parsed = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            // A new response (after a 100 Continue or a redirect): start over.
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad status line {line:?}"));
            parsed.clear();
        } else if let Some((k, v)) = line.split_once(':') {
            parsed.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    assert!(status != 0, "curl {method} {url}: no response headers");
    HttpResponse {
        status,
        headers: parsed,
        body,
    }
}

/// Options for a `SwiftStack`: `SwiftStack::builder()...start()`. Every knob
/// of `swift-aio.sh` that is not set here is removed from its environment, so
/// nothing from the caller's environment leaks into a stack.
#[derive(Debug, Clone, Default)]
pub struct SwiftBuilder {
    keystone: bool,
    tls: bool,
    token_life: Option<u32>,
    listing_limit: Option<u32>,
    movable_clock: bool,
}

impl SwiftBuilder {
    /// Also run Keystone v3 and a second proxy (authtoken + keystoneauth)
    /// that Keystone's catalog names (`WITH_KEYSTONE=1`, ~14 s to start).
    pub fn keystone(mut self) -> SwiftBuilder {
        self.keystone = true;
        self
    }

    /// The proxies serve HTTPS with a throw-away CA (`SWIFT_TLS=1`); the CA
    /// is `SwiftStack::cacert`.
    pub fn tls(mut self) -> SwiftBuilder {
        self.tls = true;
        self
    }

    /// TempAuth tokens live `secs` seconds (`SWIFT_TOKEN_LIFE`).
    pub fn token_life(mut self, secs: u32) -> SwiftBuilder {
        self.token_life = Some(secs);
        self
    }

    /// At most `names` names per listing page (`SWIFT_LISTING_LIMIT`).
    pub fn listing_limit(mut self, names: u32) -> SwiftBuilder {
        self.listing_limit = Some(names);
        self
    }

    /// The proxies' clock can be moved (`SwiftStack::move_clock`): it
    /// stamps each object and dates each answer (`SWIFT_PROXY_CLOCK_FILE`).
    pub fn movable_clock(mut self) -> SwiftBuilder {
        self.movable_clock = true;
        self
    }

    /// Start the stack (twice if the first start fails: a free port may in
    /// theory be taken before a server binds it); panics with the logs' tails.
    pub fn start(self) -> SwiftStack {
        let scratch = Scratch::new("swift");
        let dir = scratch.join("aio");
        let clock = self.movable_clock.then(|| scratch.join("proxy-clock"));
        let started = Instant::now();
        let mut out = None;
        for attempt in 1..=2 {
            let mut run = Run::new(&SwiftStack::script().display().to_string())
                .arg("start")
                .arg(dir.display().to_string())
                .env("WITH_KEYSTONE", if self.keystone { "1" } else { "0" });
            for knob in [
                "SWIFT_TLS",
                "SWIFT_TOKEN_LIFE",
                "KEYSTONE_TOKEN_LIFE",
                "SWIFT_LISTING_LIMIT",
                "SWIFT_PROXY_CLOCK_FILE",
                "SWIFT_AIO_PROXY_PORT",
                "SWIFT_AIO_KEYSTONE_PROXY_PORT",
                "SWIFT_AIO_KEYSTONE_PORT",
                "SWIFT_AIO_CATALOG_URL",
                "START_TIMEOUT",
            ] {
                run = run.env_remove(knob);
            }
            if self.tls {
                run = run.env("SWIFT_TLS", "1");
            }
            if let Some(secs) = self.token_life {
                run = run.env("SWIFT_TOKEN_LIFE", secs.to_string());
            }
            if let Some(limit) = self.listing_limit {
                run = run.env("SWIFT_LISTING_LIMIT", limit.to_string());
            }
            if let Some(clock) = &clock {
                fs::write(clock, "0").expect("write the proxies' clock");
                run = run.env("SWIFT_PROXY_CLOCK_FILE", clock.display().to_string());
            }
            let o = run.run();
            if o.code == Some(0) {
                out = Some(o);
                break;
            }
            let _ = Command::new(SwiftStack::script())
                .arg("stop")
                .arg(&dir)
                .status();
            if attempt == 2 {
                let logs: String = dir_entries(&dir.join("log"))
                    .iter()
                    .map(|name| {
                        let text =
                            fs::read_to_string(dir.join("log").join(name)).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!("--- {name} (tail) ---\n{}\n", tail.join("\n"))
                    })
                    .collect();
                panic!("could not start Swift (swift-aio.sh, {self:?})\n{o}\n{logs}");
            }
        }
        let out = out.expect("started");
        eprintln!(
            "swift-aio started in {:.1} s in {} ({self:?})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        let vars: BTreeMap<String, String> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let var = |k: &str| -> String {
            vars.get(k)
                .unwrap_or_else(|| panic!("swift-aio.sh printed no {k}\n{out}"))
                .clone()
        };
        let st_auth = var("ST_AUTH");
        let base_url = st_auth
            .strip_suffix("/auth/v1.0")
            .unwrap_or_else(|| panic!("ST_AUTH {st_auth} does not end in /auth/v1.0"))
            .to_string();
        let mut stack = SwiftStack {
            st_user: var("ST_USER"),
            st_key: var("ST_KEY"),
            proxy_port: var("SWIFT_PROXY_PORT").parse().expect("SWIFT_PROXY_PORT"),
            cacert: self.tls.then(|| PathBuf::from(var("SWIFT_CACERT"))),
            st_auth,
            base_url,
            storage_url: String::new(),
            token: String::new(),
            current_token: Mutex::new(String::new()),
            vars,
            dir,
            clock,
            scratch,
        };
        let (url, token) = stack.auth();
        stack.storage_url = url;
        stack.token = token.clone();
        stack.current_token = Mutex::new(token);
        stack
    }
}

/// A Swift account to look at directly: its URL and a token for it.
#[derive(Debug, Clone)]
pub struct SwiftAccount {
    pub storage_url: String,
    pub token: String,
}

/// A real Swift all-in-one (proxy with TempAuth, account, container and object
/// servers, memcached; optionally Keystone v3 with a second proxy) on
/// 127.0.0.1, started by `tests/support/swift-aio.sh` in a scratch directory of
/// its own; stopped when dropped. The helpers that look at Swift directly use a
/// TempAuth token of `st_user` on the TempAuth proxy, renewed when Swift says
/// it expired (stacks with a short `token_life`).
pub struct SwiftStack {
    /// Every KEY=VALUE line the start printed (ST_AUTH, ports, OS_*, ...).
    pub vars: BTreeMap<String, String>,
    pub st_auth: String,
    pub st_user: String,
    pub st_key: String,
    /// The TempAuth proxy's port.
    pub proxy_port: u16,
    /// The CA that signed the proxies' certificate (`tls()` stacks).
    pub cacert: Option<PathBuf>,
    /// `http[s]://127.0.0.1:PROXY_PORT` (ST_AUTH without `/auth/v1.0`).
    pub base_url: String,
    /// The account URL (`http://127.0.0.1:PORT/v1/AUTH_test`) and the token
    /// the stack got at start (see `account` for a current one).
    pub storage_url: String,
    pub token: String,
    current_token: Mutex<String>,
    dir: PathBuf,
    clock: Option<PathBuf>,
    scratch: Scratch,
}

impl SwiftStack {
    /// `tests/support/swift-aio.sh`.
    pub fn script() -> PathBuf {
        support_dir().join("swift-aio.sh")
    }

    /// Options for a stack (Keystone, TLS, token lives, ...).
    pub fn builder() -> SwiftBuilder {
        SwiftBuilder::default()
    }

    /// Start a stack (without Keystone); `listing_limit` sets the names per
    /// listing page (Swift's default is 10000).
    pub fn start(listing_limit: Option<u32>) -> SwiftStack {
        let mut b = SwiftStack::builder();
        if let Some(limit) = listing_limit {
            b = b.listing_limit(limit);
        }
        b.start()
    }

    /// Set the proxies' clock `secs` from the host's (negative: behind);
    /// only on a stack started with `movable_clock`. TempAuth tokens given
    /// while it was behind expire that much sooner.
    pub fn move_clock(&self, secs: i64) {
        let clock = self.clock.as_ref().expect("a stack with a movable clock");
        fs::write(clock, secs.to_string()).expect("move the proxies' clock");
    }

    /// The stack's directory (logs in `log/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value the start printed, which must be there (e.g. `OS_AUTH_URL`).
    #[track_caller]
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("swift-aio.sh printed no {key}: {:?}", self.vars.keys()))
    }

    /// `GET /info` of the proxy (no auth): Swift's capabilities and limits,
    /// e.g. `["swift"]["container_listing_limit"]`.
    pub fn info(&self) -> Value {
        let url = format!("{}/info", self.base_url);
        let r = self.http(&url, "GET", &[], None);
        r.expect(&[200]);
        r.json()
    }

    /// One request with the harness's client, trusting the stack's CA.
    pub fn http(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http_with(
            &self.work(),
            self.cacert.as_deref(),
            method,
            url,
            headers,
            body,
        )
    }

    /// `GET ST_AUTH` with `X-Auth-User`/`X-Auth-Key`: the raw response.
    pub fn tempauth(&self, user: &str, key: &str) -> HttpResponse {
        self.http(
            &self.st_auth,
            "GET",
            &[("X-Auth-User", user), ("X-Auth-Key", key)],
            None,
        )
    }

    /// A fresh TempAuth login as ST_USER/ST_KEY: (X-Storage-Url, X-Auth-Token).
    pub fn auth(&self) -> (String, String) {
        // TempAuth hands back the user's cached token with whatever life it
        // has left; on stacks with a short `token_life` that can be a few
        // milliseconds, so wait that out rather than use a dying token.
        loop {
            let r = self.tempauth(&self.st_user, &self.st_key);
            r.expect(&[200]);
            let left = r
                .header("X-Auth-Token-Expires")
                .and_then(|s| s.parse::<f64>().ok());
            match left {
                Some(secs) if secs < 1.0 => {
                    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0) + 0.05))
                }
                _ => {
                    return (
                        r.must_header("X-Storage-Url").to_string(),
                        r.must_header("X-Auth-Token").to_string(),
                    )
                }
            }
        }
    }

    /// ST_AUTH, ST_USER, ST_KEY for `Run::env`.
    pub fn tempauth_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ST_AUTH", self.st_auth.clone()),
            ("ST_USER", self.st_user.clone()),
            ("ST_KEY", self.st_key.clone()),
        ];
        env.extend(self.allow_http_env());
        env
    }

    /// `st_auth`, `st_user`, `st_key` for the settings file.
    pub fn tempauth_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("st_auth", self.st_auth.clone()),
            ("st_user", self.st_user.clone()),
            ("st_key", self.st_key.clone()),
        ];
        if self.is_plain_http() {
            settings.push(("swift_allow_http", "yes".into()));
        }
        settings
    }

    /// Whether this stack is reached over plain http (the tool then needs
    /// `swift_allow_http`, as a test cloud would).
    pub fn is_plain_http(&self) -> bool {
        self.st_auth.starts_with("http://")
    }

    /// `REDIS_BACKUP_SWIFT_ALLOW_HTTP=yes` when the stack is plain http.
    pub fn allow_http_env(&self) -> Vec<(&'static str, String)> {
        match self.is_plain_http() {
            true => vec![("REDIS_BACKUP_SWIFT_ALLOW_HTTP", "yes".into())],
            false => Vec::new(),
        }
    }

    /// The Keystone v3 password credentials of the demo user, as printed:
    /// OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME,
    /// OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME, OS_REGION_NAME,
    /// OS_INTERFACE (for `Run::env`).
    pub fn keystone_env(&self) -> Vec<(&'static str, String)> {
        [
            "OS_AUTH_URL",
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_PROJECT_NAME",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_REGION_NAME",
            "OS_INTERFACE",
        ]
        .into_iter()
        .map(|k| (k, self.var(k).to_string()))
        .chain(self.allow_http_env())
        .collect()
    }

    /// `keystone_env` as settings-file keys (lower case).
    pub fn keystone_settings(&self) -> Vec<(String, String)> {
        self.keystone_env()
            .into_iter()
            .map(|(k, v)| {
                let key = k.strip_prefix("REDIS_BACKUP_").unwrap_or(k);
                (key.to_lowercase(), v)
            })
            .collect()
    }

    /// OS_AUTH_URL, OS_APPLICATION_CREDENTIAL_ID and
    /// OS_APPLICATION_CREDENTIAL_SECRET of the demo user's application
    /// credential (for `Run::env`).
    pub fn app_credential_env(&self) -> Vec<(&'static str, String)> {
        [
            "OS_AUTH_URL",
            "OS_APPLICATION_CREDENTIAL_ID",
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ]
        .into_iter()
        .map(|k| (k, self.var(k).to_string()))
        .chain(self.allow_http_env())
        .collect()
    }

    /// A Keystone v3 password login (user and project in domain Default),
    /// with the harness's client: the token and the public `object-store`
    /// URL of region `RegionOne` from its catalog.
    pub fn keystone_login(&self, user: &str, password: &str, project: &str) -> SwiftAccount {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        let url = format!("{}/auth/tokens", self.var("OS_AUTH_URL"));
        let r = http(
            &self.work(),
            "POST",
            &url,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        r.expect(&[201]);
        let token = r.must_header("X-Subject-Token").to_string();
        let catalog = r.json()["token"]["catalog"].clone();
        let storage_url = catalog
            .as_array()
            .into_iter()
            .flatten()
            .filter(|service| service["type"] == "object-store")
            .flat_map(|service| service["endpoints"].as_array().cloned().unwrap_or_default())
            .find(|e| e["interface"] == "public" && e["region_id"] == "RegionOne")
            .and_then(|e| e["url"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no public object-store endpoint in {catalog}"));
        SwiftAccount { storage_url, token }
    }

    fn work(&self) -> PathBuf {
        self.scratch.join("http")
    }

    /// The TempAuth account of ST_USER with a current token.
    pub fn account(&self) -> SwiftAccount {
        SwiftAccount {
            storage_url: self.storage_url.clone(),
            token: self.current_token.lock().expect("token lock").clone(),
        }
    }

    /// A request in `account`; `path_and_query` is already encoded (use
    /// `url_encode`), relative to the account URL. No renewal.
    pub fn request_in(
        &self,
        account: &SwiftAccount,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let mut h = vec![("X-Auth-Token", account.token.as_str())];
        h.extend_from_slice(headers);
        self.http(
            &format!("{}/{path_and_query}", account.storage_url),
            method,
            &h,
            body,
        )
    }

    /// A request with the stack's TempAuth token; `path_and_query` is already
    /// encoded (use `url_encode`), relative to the account URL. A 401 (the
    /// token expired) logs in again and sends the request again, a few
    /// times: TempAuth hands out the same token until it has expired, so a
    /// log-in in the token's last moments (a life of 2 s in some tests, a
    /// busy machine) gets one that expires on the way.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let mut r = self.request_in(&self.account(), method, path_and_query, headers, body);
        for _ in 0..4 {
            if r.status != 401 {
                break;
            }
            let (_, token) = self.auth();
            *self.current_token.lock().expect("token lock") = token;
            r = self.request_in(&self.account(), method, path_and_query, headers, body);
        }
        r
    }

    /// HEAD `CONTAINER/OBJECT` (or a container): status and headers.
    pub fn head(&self, path: &str) -> HttpResponse {
        self.request("HEAD", &url_encode(path, true), &[], None)
    }

    /// GET `CONTAINER/OBJECT` (an SLO manifest: its segments' bytes).
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", &url_encode(path, true), &[], None)
    }

    /// PUT `CONTAINER/OBJECT` (or a container, with an empty body).
    pub fn put(&self, path: &str, body: &[u8]) -> HttpResponse {
        self.request("PUT", &url_encode(path, true), &[], Some(body))
    }

    /// Every entry (`name`, `bytes`, `hash`, ...) of `container` whose name
    /// starts with `prefix`, following `marker` page after page. A missing
    /// container lists as empty.
    pub fn list(&self, container: &str, prefix: &str) -> Vec<Value> {
        Self::list_with(container, prefix, |query| {
            self.request("GET", query, &[], None)
        })
    }

    /// `list` in another account (e.g. a Keystone project's).
    pub fn list_in(&self, account: &SwiftAccount, container: &str, prefix: &str) -> Vec<Value> {
        Self::list_with(container, prefix, |query| {
            self.request_in(account, "GET", query, &[], None)
        })
    }

    fn list_with(container: &str, prefix: &str, get: impl Fn(&str) -> HttpResponse) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut marker = String::new();
        for _page in 0..100_000 {
            let query = format!(
                "{}?format=json&prefix={}&marker={}",
                url_encode(container, false),
                url_encode(prefix, false),
                url_encode(&marker, false)
            );
            let r = get(&query);
            if r.status == 404 && marker.is_empty() {
                return all;
            }
            r.expect(&[200, 204]);
            let page = if r.body.is_empty() {
                Vec::new()
            } else {
                match r.json() {
                    Value::Array(items) => items,
                    other => panic!("listing of {container} is not an array: {other}"),
                }
            };
            let Some(last) = page.last() else {
                return all;
            };
            marker = last["name"]
                .as_str()
                .unwrap_or_else(|| panic!("listing entry without a name: {last}"))
                .to_string();
            all.extend(page);
        }
        panic!("listing of {container} never ended");
    }

    /// The names of `list(container, prefix)`.
    pub fn names(&self, container: &str, prefix: &str) -> Vec<String> {
        Self::names_of(&self.list(container, prefix))
    }

    /// The names of `list_in(account, container, prefix)`.
    pub fn names_in(&self, account: &SwiftAccount, container: &str, prefix: &str) -> Vec<String> {
        Self::names_of(&self.list_in(account, container, prefix))
    }

    fn names_of(entries: &[Value]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e["name"].as_str().expect("name").to_string())
            .collect()
    }
}

impl Drop for SwiftStack {
    fn drop(&mut self) {
        match Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "swift-aio.sh stop {} failed ({}): {}",
                self.dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run swift-aio.sh stop: {e}"),
        }
    }
}

/// MD5 of `data` as lower-case hex (what Swift puts in ETags and listings).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex(&Md5::digest(data))
}

/// `n` keys `noise:i` of 1 KiB of noise each in db 0, which deflate cannot
/// shrink: a backup of about `n` KiB in storage.
pub fn add_noise_keys(conn: &mut Resp, n: usize, seed: u64) {
    for start in (0..n).step_by(500) {
        let cmds: Vec<_> = (start..n.min(start + 500))
            .map(|i| {
                cmd(&[
                    b"SET".to_vec(),
                    format!("noise:{i}").into_bytes(),
                    noise(1024, seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                ])
            })
            .collect();
        conn.pipeline(&cmds);
    }
}

/// A segment's name as it was before each upload had its own:
/// `ID.rbk/NNNNNNNN` for `ID.rbk/<16 hex digits>/NNNNNNNN`.
pub fn segment_shape(name: &str) -> String {
    match name.rsplit_once('/') {
        Some((upload, number)) => match upload.rsplit_once('/') {
            Some((object, token)) if token.len() == 16 => format!("{object}/{number}"),
            _ => format!("{upload}/{number}"),
        },
        None => name.to_string(),
    }
}

/// The segments among `names` by the upload that wrote them (all of a
/// name but its number), each upload's as `segment_shape` gives them.
pub fn by_upload(names: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut uploads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let upload = name.rsplit_once('/').map_or("", |(upload, _)| upload);
        uploads
            .entry(upload.to_string())
            .or_default()
            .push(segment_shape(name));
    }
    uploads
}
