//! Runs the real `vigil` binary for end-to-end tests: `vigil run` (or `vigil serve`) as a
//! child process on a free loopback port with a small client of its HTTP API, and the Kafka
//! roles (`vigil collect`, `index`, `rules`) as child processes.
//!
//! Every function takes the binary's path first: only the tests of the package that builds
//! it know it (`env!("CARGO_BIN_EXE_vigil")`). Each wait has a time limit; a child that
//! overstays it is killed and the test fails with what it last said.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The API token the tests use.
pub const TOKEN: &str = "e2e-test-token-0123456789";

/// How long `vigil run` or `vigil serve` may take to say where its API listens, and a Kafka
/// role to say it started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `vigil run` (or `vigil serve`), killed on drop.
pub struct VigilRun {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl VigilRun {
    /// Starts `BIN run --data-dir DIR --file F… --listen 127.0.0.1:0 --api-token TOKEN` and
    /// waits for the line that says where the API listens.
    pub fn start(bin: impl AsRef<Path>, data_dir: &Path, files: &[PathBuf]) -> VigilRun {
        Self::start_with(bin, data_dir, files, &[])
    }

    /// Like [`start`](Self::start), with more arguments (`--socket ADDR`, `--syslog ADDR`, …).
    pub fn start_with(
        bin: impl AsRef<Path>,
        data_dir: &Path,
        files: &[PathBuf],
        extra: &[String],
    ) -> VigilRun {
        let mut cmd = Command::new(bin.as_ref());
        cmd.arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--api-token", TOKEN])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for f in files {
            cmd.arg("--file").arg(f);
        }
        cmd.args(extra);
        Self::spawn(cmd, "vigil run")
    }

    /// Starts `BIN serve --data-dir DIR --listen 127.0.0.1:0 --api-token TOKEN` (the API over
    /// the index another process writes) and waits until it is ready (`/readyz`), which is
    /// once that index exists: it listens before, answering 503.
    pub fn serve(bin: impl AsRef<Path>, data_dir: &Path, extra: &[String]) -> VigilRun {
        let mut cmd = Command::new(bin.as_ref());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--api-token", TOKEN])
            .args(extra)
            .env("VIGIL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let run = Self::spawn(cmd, "vigil serve");
        let deadline = Instant::now() + START_TIMEOUT;
        while run.get_with("/readyz", None).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "vigil serve not ready within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        run
    }

    fn spawn(mut cmd: Command, what: &str) -> VigilRun {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let lines = stdout_lines(&mut child);
        let deadline = Instant::now() + START_TIMEOUT;
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("API on ").nth(1) {
                        break rest.split_whitespace().next().expect("address").to_owned();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = crate::process::wait_within(&mut child, STOP_TIMEOUT);
                    panic!("{what} exited before listening: {status:?}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{what} did not say where it listens within {START_TIMEOUT:?}");
                }
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        VigilRun { child, base, agent }
    }

    /// GET `path_and_query` with the bearer token; status and JSON body.
    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        self.get_with(path_and_query, Some(TOKEN))
    }

    /// GET with the given token (or none).
    pub fn get_with(&self, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.get(format!("{}{}", self.base, path_and_query));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("HTTP request to vigil");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every hit of a search for `q` (up to 1000).
    pub fn hits(&self, q: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/search?limit=1000&q={}", encode(q)));
        assert_eq!(status, 200, "{body}");
        body["hits"].as_array().cloned().unwrap_or_default()
    }

    /// The total of a search for `q`.
    pub fn total(&self, q: &str) -> u64 {
        let (status, body) = self.get(&format!("/api/v1/search?limit=1&q={}", encode(q)));
        assert_eq!(status, 200, "{body}");
        body["total"].as_u64().expect("total")
    }

    /// Polls until the total of `q` is `want` or `timeout` passes; returns the last total.
    pub fn wait_for_total(&self, q: &str, want: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.total(q);
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of an unlabelled sample of `/metrics` (`vigil_rules_events_total`, say).
    pub fn metric(&self, name: &str) -> Option<u64> {
        let (status, body) = self.get_with("/metrics", None);
        assert_eq!(status, 200, "{body}");
        sample(body.as_str()?, name)
    }

    /// Polls `/metrics` until the sample `name` satisfies `done` or `timeout` passes; returns
    /// the last value read.
    pub fn wait_for_metric(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        poll_metric(|| self.metric(name), timeout, done)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (up to [`STOP_TIMEOUT`]) for it to exit; whether it exited
    /// successfully. One still running is killed, and that is a failure.
    pub fn stop(mut self) -> bool {
        terminate(&mut self.child, "vigil", String::new)
    }
}

impl Drop for VigilRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a metric with `read` until it satisfies `done` or `timeout` passes; the last value.
fn poll_metric(
    read: impl Fn() -> Option<u64>,
    timeout: Duration,
    done: impl Fn(u64) -> bool,
) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read();
        if got.is_some_and(&done) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// The child's stdout, line by line, read on a thread (which also keeps the pipe drained, so
/// the child never blocks on it).
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Nobody listening any more is fine: keep draining.
            let _ = tx.send(line);
        }
    });
    rx
}

/// SIGTERM, then waits up to [`STOP_TIMEOUT`]; kills it when it overstays. Whether it exited
/// successfully in time; otherwise says so on stderr with `log()`.
fn terminate(child: &mut Child, what: &str, log: impl Fn() -> String) -> bool {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    match crate::process::wait_within(child, STOP_TIMEOUT) {
        Some(status) if status.success() => true,
        Some(status) => {
            eprintln!("{what} exited with {status}:\n{}", log());
            false
        }
        None => {
            eprintln!(
                "{what} still running {STOP_TIMEOUT:?} after SIGTERM; killing it:\n{}",
                log()
            );
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// A running Kafka role: `vigil collect`, `vigil index` or `vigil rules`, started with
/// `--kafka BROKERS --data-dir DIR`. Its standard error (logs, librdkafka's among them) goes to
/// `vigil-<role>.log` beside the data dir, whose tail is printed when a test fails.
pub struct VigilRole {
    child: Child,
    role: String,
    log: PathBuf,
    /// Where this process's lines start in `log` (earlier processes of the role append there
    /// too).
    log_start: u64,
}

impl VigilRole {
    /// Starts `BIN ROLE --kafka BROKERS --data-dir DIR EXTRA…` and waits (up to
    /// [`START_TIMEOUT`]) for the line with which the role says it started
    /// (`vigil: collecting`, `vigil: indexing`, `vigil: evaluating rules`).
    pub fn start(
        bin: impl AsRef<Path>,
        role: &str,
        brokers: &str,
        data_dir: &Path,
        extra: &[String],
    ) -> VigilRole {
        let ready = match role {
            "collect" => "vigil: collecting",
            "index" => "vigil: indexing",
            "rules" => "vigil: evaluating rules",
            other => panic!("no Kafka role {other}"),
        };
        let log = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join(format!("vigil-{role}.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("role log");
        let log_start = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new(bin.as_ref())
            .arg(role)
            .args(["--kafka", brokers, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "VIGIL_LOG",
                std::env::var("VIGIL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn vigil {role}: {e}"));
        // Read stdout on a thread: the role may hang before its line, and must never block
        // on a full pipe after it.
        let rx = stdout_lines(&mut child);
        let mut role_process = VigilRole {
            child,
            role: role.to_owned(),
            log,
            log_start,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(ready) => return role_process,
                Ok(_) => {}
                Err(_) => {
                    let status = role_process.child.try_wait().ok().flatten();
                    panic!(
                        "vigil {role} never said {ready:?} (exit status {status:?}):\n{}",
                        role_process.log_tail(30)
                    );
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its standard error.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The value of an unlabelled sample of its `/metrics` (`vigil_events_indexed_total`,
    /// say). The role must have been started with `--metrics 127.0.0.1:0`: the address is
    /// read from the line it logs ("vigil: metrics on http://ADDR/metrics"), waiting up to
    /// [`START_TIMEOUT`] for it.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let url = self.metrics_url();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let text = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        sample(&text, name)
    }

    /// Polls its `/metrics` until the sample `name` satisfies `done` or `timeout` passes;
    /// returns the last value read.
    pub fn wait_for_metric(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        poll_metric(|| self.metric(name), timeout, done)
    }

    fn metrics_url(&self) -> String {
        const SAID: &str = "vigil: metrics on ";
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let bytes = std::fs::read(&self.log).unwrap_or_default();
            let start = usize::try_from(self.log_start)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let text = String::from_utf8_lossy(&bytes[start..]);
            if let Some(rest) = text.lines().find_map(|l| l.split(SAID).nth(1)) {
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "vigil {} never said {SAID:?} (started without --metrics 127.0.0.1:0?):\n{}",
                self.role,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, no chance to flush or commit anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (up to [`STOP_TIMEOUT`]) for it to exit; whether it exited
    /// successfully. One still running is killed, and that is a failure.
    pub fn stop(mut self) -> bool {
        let what = format!("vigil {}", self.role);
        let log = self.log.clone();
        terminate(&mut self.child, &what, || tail(&log, 30))
    }
}

impl Drop for VigilRole {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- vigil {} log (tail) ---\n{}",
                self.role,
                self.log_tail(40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The last `lines` lines of a file (empty when it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The total of `BIN search --data-dir DIR Q`: what the index under `data_dir` holds for
/// `q`, read without a server (`vigil search` prints "N of TOTAL matching" on stderr).
pub fn search_total(bin: impl AsRef<Path>, data_dir: &Path, q: &str) -> u64 {
    let out = crate::process::output_within(
        Command::new(bin.as_ref())
            .args(["search", "--limit", "1", "--data-dir"])
            .arg(data_dir)
            .arg(q),
        crate::process::COMMAND_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vigil search {q:?}: {err}");
    err.split(" of ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("vigil search {q:?}: no total in {err:?}"))
}
