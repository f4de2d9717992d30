//! Another host, for the attacks that would send the tool off this one: a
//! network namespace joined to ours by a veth pair. Its address is reachable
//! from here but is not one of this host's, as a neighbour's would be, and a
//! listener there keeps every byte it is sent. A listener of the same kind
//! on this host stands for a port that a config file may lead us to.

use super::*;

/// A host next door with a TCP listener that records what reaches it.
pub struct OtherHost {
    namespace: String,
    our_end: String,
    pub address: String,
    pub port: u16,
    listener: Option<Child>,
    received: PathBuf,
}

/// Each one gets its own /30 of 10.77.(pid).0/24, and its own names.
static NEXT: AtomicUsize = AtomicUsize::new(0);

impl OtherHost {
    pub fn start(scratch: &Path) -> OtherHost {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 64, "more hosts next door than one /24 holds");
        let pid = std::process::id();
        let net = format!("10.77.{}", pid % 256);
        // Made before the first step, so that a step that fails (a panic)
        // still takes down whatever the steps before it set up.
        let mut host = OtherHost {
            namespace: format!("rbt-{pid}-{n}"),
            our_end: format!("rb{n}h{pid}"),
            address: format!("{net}.{}", 4 * n + 2),
            port: 6379,
            listener: None,
            received: scratch.join(format!("other-host-{n}.bytes")),
        };
        let (ours, their_end) = (format!("{net}.{}", 4 * n + 1), format!("rb{n}n{pid}"));
        let ip = |args: &[&str]| {
            Run::new("ip").args(args).run().ok();
        };
        let namespace = host.namespace.as_str();
        ip(&["netns", "add", namespace]);
        ip(&[
            "link",
            "add",
            &host.our_end,
            "type",
            "veth",
            "peer",
            "name",
            &their_end,
            "netns",
            namespace,
        ]);
        ip(&["addr", "add", &format!("{ours}/30"), "dev", &host.our_end]);
        ip(&["link", "set", &host.our_end, "up"]);
        let there = ["netns", "exec", namespace, "ip"];
        ip(&[
            &there[..],
            &[
                "addr",
                "add",
                &format!("{}/30", host.address),
                "dev",
                &their_end,
            ],
        ]
        .concat());
        ip(&[&there[..], &["link", "set", &their_end, "up"]].concat());

        let listener = Command::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                "/usr/bin/python3",
                "-c",
                LISTENER,
            ])
            .args([
                &host.address,
                &host.port.to_string(),
                &host.received.display().to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the listener on the host next door");
        host.listener = Some(listener);
        wait_for("the listener on the host next door", || {
            host.received.exists().then_some(())
        });
        host
    }

    /// Every byte any connection has sent it so far.
    pub fn received(&self) -> Vec<u8> {
        fs::read(&self.received).unwrap_or_default()
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        if let Some(listener) = &mut self.listener {
            let _ = listener.kill();
            let _ = listener.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        // The pair goes with the namespace, but not at once.
        let _ = Command::new("ip")
            .args(["link", "del", &self.our_end])
            .stderr(Stdio::null())
            .status();
    }
}

/// A listener on a port of this host (127.0.0.1), for a port a config file
/// may name: like the one next door, it keeps what it is sent.
pub struct LocalListener {
    pub port: u16,
    listener: Child,
    received: PathBuf,
}

impl LocalListener {
    /// On any free port, as the user running the tests.
    pub fn start(scratch: &Path) -> LocalListener {
        LocalListener::start_as(scratch, None, 0, 0)
    }

    /// On `port` (0: any free one), as `user` if given (its uid and
    /// primary group, in a folder of its own in `scratch`), accepting
    /// connections only `accept_after` seconds after it listens (what
    /// reached its queue meanwhile is read then).
    pub fn start_as(
        scratch: &Path,
        user: Option<&str>,
        port: u16,
        accept_after: u32,
    ) -> LocalListener {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let folder = scratch.join(format!("local-listener-{n}"));
        fs::create_dir(&folder).expect("a folder for the listener");
        let mut command = match user {
            Some(user) => {
                let (uid, gid) = user_ids(user);
                std::os::unix::fs::chown(&folder, Some(uid), Some(gid)).unwrap();
                let mut c = Command::new("setpriv");
                c.args(setpriv_args(user)).arg("/usr/bin/python3");
                c
            }
            None => Command::new("/usr/bin/python3"),
        };
        let received = folder.join("bytes");
        let listener = command
            .args(["-c", LISTENER, "127.0.0.1", &port.to_string()])
            .arg(&received)
            .arg(accept_after.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("start a listener on 127.0.0.1");
        let mut port_file = received.clone().into_os_string();
        port_file.push(".port");
        wait_for("the listener on 127.0.0.1", || {
            received.exists().then_some(())
        });
        let port = fs::read_to_string(&port_file)
            .expect("the listener's port")
            .trim()
            .parse()
            .expect("a port number");
        LocalListener {
            port,
            listener,
            received,
        }
    }

    /// Every byte any connection has sent it so far.
    pub fn received(&self) -> Vec<u8> {
        fs::read(&self.received).unwrap_or_default()
    }
}

impl Drop for LocalListener {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
    }
}

/// Accepts any number of connections and appends what they send to a file
/// (created once it listens, after a file beside it names the port it
/// listens on: port 0 is any free one); answers nothing. An optional fourth
/// argument: seconds to wait before the first accept.
const LISTENER: &str = r#"
import socket, sys, threading, time
address, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
accept_after = float(sys.argv[4]) if len(sys.argv) > 4 else 0
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, port))
server.listen(16)
with open(path + ".port", "w") as port_file:
    port_file.write(str(server.getsockname()[1]))
out = open(path, "ab", buffering=0)
lock = threading.Lock()
time.sleep(accept_after)
def serve(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        with lock:
            out.write(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;
