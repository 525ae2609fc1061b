//! Runs the real `vigil` binary for end-to-end tests: `vigil run` (or `vigil serve`) as a
//! child process on a free loopback port with a small client of its HTTP API, and the Kafka
//! roles (`vigil collect`, `index`, `rules`) as child processes.
//!
//! ```ignore
//! #[path = "support/vigil.rs"]
//! mod vigil;
//! ```

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The API token the tests use.
pub const TOKEN: &str = "e2e-test-token-0123456789";

/// A running `vigil run`.
pub struct VigilRun {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl VigilRun {
    /// Starts `vigil run --data-dir DIR --file F… --listen 127.0.0.1:0 --api-token TOKEN` and
    /// waits for the line that says where the API listens.
    pub fn start(data_dir: &Path, files: &[PathBuf]) -> VigilRun {
        Self::start_with(data_dir, files, &[])
    }

    /// Like [`start`](Self::start), with more arguments (`--socket ADDR`, `--syslog ADDR`, …).
    pub fn start_with(data_dir: &Path, files: &[PathBuf], extra: &[String]) -> VigilRun {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--api-token", TOKEN])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for f in files {
            cmd.arg("--file").arg(f);
        }
        cmd.args(extra);
        Self::spawn(cmd, "vigil run")
    }

    /// Starts `vigil serve --data-dir DIR --listen 127.0.0.1:0 --api-token TOKEN` (the API over
    /// the index another process writes) and waits until it listens, which is once that index
    /// exists.
    pub fn serve(data_dir: &Path, extra: &[String]) -> VigilRun {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--api-token", TOKEN])
            .args(extra)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::spawn(cmd, "vigil serve")
    }

    fn spawn(mut cmd: Command, what: &str) -> VigilRun {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let status = child.wait().ok();
                    panic!("{what} exited before listening: {status:?}");
                }
            };
            if let Some(rest) = line.split("API on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
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
        body.as_str()?.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
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

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        // SAFETY: kill(2) with a pid we own.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for VigilRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Kafka role: `vigil collect`, `vigil index` or `vigil rules`, started with
/// `--kafka BROKERS --data-dir DIR`. Its standard error (logs, librdkafka's among them) goes to
/// `vigil-<role>.log` beside the data dir, whose tail is printed when a test fails.
pub struct VigilRole {
    child: Child,
    role: String,
    log: PathBuf,
}

impl VigilRole {
    /// Starts `vigil ROLE --kafka BROKERS --data-dir DIR EXTRA…` and waits for the line with
    /// which the role says it started (`vigil: collecting`, `vigil: indexing`,
    /// `vigil: evaluating rules`).
    pub fn start(role: &str, brokers: &str, data_dir: &Path, extra: &[String]) -> VigilRole {
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
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
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut role_process = VigilRole {
            child,
            role: role.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
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
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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

    /// SIGTERM and wait (up to 30 s) for it to exit; whether it exited successfully.
    pub fn stop(mut self) -> bool {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    eprintln!(
                        "vigil {} exited with {status}:\n{}",
                        self.role,
                        self.log_tail(30)
                    );
                }
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "vigil {} still running 30 s after SIGTERM:\n{}",
            self.role,
            self.log_tail(30)
        );
        false
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

/// Copy number `copy` of main.log, one line per event, with request ids made unique to the
/// copy (lines without a request id get an extra field, their id being the hash of their
/// bytes): appended to a file, each copy is that many new events.
pub fn corpus_copy(copy: usize) -> Vec<String> {
    let text = std::fs::read_to_string(corpus("main.log")).expect("main.log");
    text.lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).expect("main.log line is JSON");
            match v["request"]["id"].as_str() {
                Some(id) => v["request"]["id"] = Value::String(format!("{copy}-{id}")),
                None => v["test_copy"] = Value::from(copy),
            }
            v.to_string()
        })
        .collect()
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

/// The public corpus file `name`.
pub fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/public")
        .join(name)
}

/// `manifest.json` of the public corpus.
pub fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(corpus("manifest.json")).expect("manifest.json"))
        .expect("manifest is JSON")
}

/// The HMAC the manifest records for `name` (e.g. `token:canary`) on the `main` device.
pub fn main_device_hash(manifest: &Value, name: &str) -> String {
    manifest["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .find(|h| h["name"] == name && h["device"] == "main")
        .and_then(|h| h["hash"].as_str())
        .unwrap_or_else(|| panic!("no hash {name} for device main"))
        .to_owned()
}
