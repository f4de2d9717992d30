//! Running the binary under test with a clean environment, and its output.

use super::*;

/// The result of one run of the binary (or of any program run by the harness).
pub struct Output {
    pub program: String,
    pub args: Vec<String>,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {} {:?}", self.program, self.args)?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}--------------", self.stderr)
    }
}

impl Output {
    /// Fail (showing stdout and stderr) unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}, got {:?}\n{self}",
            self.code
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Output {
        self.code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{self}"))
    }

    /// The last non-empty line of stdout, trimmed.
    #[track_caller]
    pub fn last_line(&self) -> String {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("stdout is empty\n{self}"))
            .trim()
            .to_string()
    }

    /// Fail unless stderr contains `needle` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}\n{self}"
        );
        self
    }

    /// Fail unless stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Output {
        assert!(
            self.stdout.contains(needle),
            "stdout should have {needle:?}\n{self}"
        );
        self
    }

    /// Fail (showing the output) if stderr contains `text`.
    #[track_caller]
    pub fn stderr_lacks(&self, text: &str) -> &Output {
        assert!(!self.stderr.contains(text), "stderr has {text:?}\n{self}");
        self
    }

    /// The line of stdout that names `name`, which must be there.
    #[track_caller]
    pub fn line_with(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line names {name:?}\n{self}"))
    }

    /// Fail if `secret` occurs in stdout or stderr.
    #[track_caller]
    pub fn lacks(&self, secret: &str) -> &Output {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "output contains the secret {secret:?} (exit {:?}; output not shown)",
            self.code
        );
        self
    }
}

/// One run of a program with a scrubbed environment, built step by step.
pub struct Run {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    remove_env: Vec<String>,
}

impl Run {
    pub fn new(program: &str) -> Run {
        Run {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            remove_env: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Run {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Run {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Run {
        self.env.push((key.to_string(), value.as_ref().to_string()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Run {
        self.remove_env.push(key.to_string());
        self
    }

    /// The command with stdin closed, an environment cleaned of the
    /// caller's settings, and this run's own variables.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("REDIS_BACKUP_")
                || key.starts_with("OS_")
                || key.starts_with("ST_")
                || key == "RUST_LOG"
                || key == "SYSTEMCTL_SHIM_DIR"
            {
                command.env_remove(&*key);
            }
        }
        for key in &self.remove_env {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Start in the background (to be killed, or waited for with
    /// `wait_with_output`): stdout discarded, stderr piped.
    pub fn spawn(self) -> std::process::Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program))
    }

    /// Run to completion (killed after `RUN_DEADLINE`) with stdin closed.
    pub fn run(self) -> Output {
        self.run_within(RUN_DEADLINE)
    }

    /// `run`, but killed, and the test failed, once `bound` has passed.
    pub fn run_within(self, bound: Duration) -> Output {
        let mut command = self.command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let stdout_rx = read_all_in_background(out);
        let stderr_rx = read_all_in_background(err);
        // A process the child started and left running (a daemon, a private
        // redis-server) may keep the pipes open: then fail, do not hang.
        let collect = |rx: mpsc::Receiver<Vec<u8>>, what: &str| -> String {
            match rx.recv_timeout(DEADLINE) {
                Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                Err(_) => panic!(
                    "{} {:?}: its {what} was still open {DEADLINE:?} after it ended; \
                     a process it started is still running and holds it",
                    self.program, self.args
                ),
            }
        };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = collect(stdout_rx, "stdout");
                let stderr = collect(stderr_rx, "stderr");
                panic!(
                    "{} {:?} did not finish within {bound:?}; killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                    self.program, self.args
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let stdout = collect(stdout_rx, "stdout");
        let stderr = collect(stderr_rx, "stderr");
        Output {
            program: self.program,
            args: self.args,
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

/// Read `from` to its end on a thread of its own; the bytes arrive on the
/// returned channel.
fn read_all_in_background(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = from.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// A run of the binary whose stderr is read line by line while it runs, so
/// that a test can wait for the moment it logs something (instead of
/// sleeping and hoping it got there).
pub struct Watched {
    child: Child,
    program: String,
    args: Vec<String>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: mpsc::Receiver<Vec<u8>>,
}

impl Run {
    /// Start in the background with stdout and stderr read as it runs.
    pub fn watch(self) -> Watched {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program));
        let stdout = read_all_in_background(child.stdout.take().expect("stdout"));
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            program: self.program,
            args: self.args,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }
}

impl Watched {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended (not reaped for `finish`'s sake).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Send `signal` (`TERM`, `INT`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Wait (up to `DEADLINE`) for a line of stderr containing `text`.
    pub fn wait_for_line(&mut self, text: &str) {
        self.wait_for_line_within(text, DEADLINE);
    }

    /// Wait (up to `deadline`) for a line of stderr containing `text`.
    pub fn wait_for_line_within(&mut self, text: &str, deadline: Duration) {
        let start = Instant::now();
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{} {:?} did not log {text:?} within {deadline:?}; it logged:\n{}",
                    self.program,
                    self.args,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the end (up to `RUN_DEADLINE`) and collect the output.
    pub fn finish(mut self) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > RUN_DEADLINE {
                let _ = self.child.kill();
                panic!(
                    "{} {:?} did not finish within {RUN_DEADLINE:?}",
                    self.program, self.args
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.seen.extend(self.lines.iter());
        let stdout = self.stdout.recv_timeout(DEADLINE).unwrap_or_default();
        Output {
            program: self.program,
            args: self.args,
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: self.seen.join("\n") + "\n",
        }
    }
}
