//! A real Kafka-protocol broker for the Kafka tests: one [tansu](https://github.com/tansu-io/tansu)
//! process per test, on a free loopback port, storing into SQLite in the test's directory; and
//! a client independent of Vigil's (confluent-kafka, from Python) to put on the bus what Vigil
//! would never write and to read what it published.
//!
//! Quirks of tansu 0.6 these helpers are shaped around:
//! - only SQLite storage: its memory storage loses data;
//! - record headers break its fetch, so nothing here sends any;
//! - a group member that was killed -9 is never expired; Vigil's consumers use static
//!   membership, and the helpers here read by assigning partitions, never by joining a group,
//!   so that they leave no member behind;
//! - when its port is taken it panics in a worker thread and exits, so a start is checked by
//!   the process still running once the port answers.

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd broker may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a confluent-kafka snippet may run beyond its own time limits (Python's start-up,
/// librdkafka's connection) before it is killed.
const SNIPPET_SLACK: Duration = Duration::from_secs(60);

/// The tansu binary: `$VIGIL_TANSU`, else where scripts/install-test-deps.sh installs it,
/// else `tansu` on PATH.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VIGIL_TANSU") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let installed = Path::new(&home).join(".cache/vigil/tansu/bin/tansu");
        if installed.is_file() {
            return installed;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no tansu broker: run `bash scripts/install-test-deps.sh` (installs it under \
         ~/.cache/vigil/tansu), or point $VIGIL_TANSU at a tansu binary"
    );
}

/// A running (or stopped, restartable) tansu broker.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free loopback port with its SQLite database and log in `dir`.
    pub fn start(dir: &Path) -> Tansu {
        std::fs::create_dir_all(dir).expect("broker dir");
        // A free port can be taken by someone else between probing and binding: try again
        // with another.
        let mut last = String::new();
        for _ in 0..5 {
            let mut broker = Tansu {
                child: None,
                port: free_port(),
                dir: dir.to_owned(),
                log: dir.join("tansu.log"),
            };
            match broker.spawn() {
                Ok(()) => return broker,
                Err(e) => last = e,
            }
        }
        panic!("tansu did not start: {last}");
    }

    /// `127.0.0.1:PORT`, for `--kafka` and `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then SIGKILL if it has not exited within a few seconds.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("tansu: no exit {STOP_TIMEOUT:?} after SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port over the same database (stopping it first if it
    /// still runs).
    pub fn restart(&mut self) {
        self.stop();
        // The port may linger a moment after the old process; the database is what matters,
        // so keep trying that port for a while rather than moving.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("tansu did not restart on {}: {e}", self.brokers())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// The last `lines` lines of the broker's log (every start appends to it).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Creates `topic` with `partitions` partitions; one that exists already is fine.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.python(
            CREATE_TOPIC,
            &[topic, &partitions.to_string()],
            Duration::from_secs(30),
        );
    }

    /// Produces one record (no headers) with confluent-kafka, `acks=all`, and waits for the
    /// broker's acknowledgement. Returns its (partition, offset).
    pub fn produce_raw(&self, topic: &str, key: &str, value: &[u8]) -> (i32, i64) {
        let out = self.python(
            PRODUCE,
            &[topic, &hex(key.as_bytes()), &hex(value)],
            Duration::from_secs(30),
        );
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("producer said {out:?}: {e}"));
        (
            v["partition"].as_i64().expect("partition") as i32,
            v["offset"].as_i64().expect("offset"),
        )
    }

    /// Every record of `topic` up to its current end, read with confluent-kafka from the
    /// beginning of every partition (partitions assigned, no consumer group joined). Empty when
    /// the topic does not exist.
    pub fn consume_all(&self, topic: &str, timeout: Duration) -> Vec<Message> {
        let out = self.python(
            CONSUME_ALL,
            &[topic, &format!("{:.1}", timeout.as_secs_f64())],
            timeout,
        );
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("consumer said {l:?}: {e}"));
                Message {
                    partition: v["partition"].as_i64().expect("partition") as i32,
                    offset: v["offset"].as_i64().expect("offset"),
                    key: unhex(v["key"].as_str().expect("key")),
                    value: unhex(v["value"].as_str().expect("value")),
                }
            })
            .collect()
    }

    /// Runs a confluent-kafka snippet with the brokers as its first argument; its stdout.
    /// A failing snippet fails the test with its stderr and the broker's log.
    /// Every snippet bounds its own waits (30 s, or the timeout it is given); a snippet
    /// still running [`SNIPPET_SLACK`] after that is killed and fails the test.
    fn python(&self, script: &str, args: &[&str], limit: Duration) -> String {
        let out = crate::process::output_within(
            Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(self.brokers())
                .args(args),
            limit + SNIPPET_SLACK,
        );
        assert!(
            out.status.success(),
            "confluent-kafka snippet failed ({}):\n{}\n--- tansu log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        );
        String::from_utf8(out.stdout).expect("snippet output is UTF-8")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("tansu log file");
        let url = format!("tcp://{}", self.brokers());
        let mut cmd = Command::new(binary());
        cmd.arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Relative to current_dir: the database lives with the test.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // tansu reads every flag from the environment too; a stray one must not change the
        // broker under test.
        for var in [
            "CLUSTER_ID",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "STORAGE_ENGINE",
            "SCHEMA_REGISTRY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary().display()))?;
        let addr: SocketAddr = self.brokers().parse().expect("address");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "tansu exited ({status}) on {}:\n{}",
                    self.brokers(),
                    self.log_tail(30)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // The port answering might be another process's: tansu exits when it cannot
                // bind, so it must still be running a moment later.
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "tansu exited ({status}) on {}:\n{}",
                        self.brokers(),
                        self.log_tail(30)
                    ));
                }
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "tansu not listening on {} after {START_TIMEOUT:?}:\n{}",
                    self.brokers(),
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- tansu {} log (tail) ---\n{}",
                self.brokers(),
                self.log_tail(40)
            );
        }
        self.kill9();
    }
}

/// A record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key (empty when it had none).
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

impl Message {
    /// The value as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| {
            panic!(
                "record {}@{} is not JSON ({e}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.value)
            )
        })
    }

    /// The key as text.
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// The last `lines` lines of a file, or why not.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// A file to append to, created if need be (for logs of child processes).
pub fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from the snippet"))
        .collect()
}

/// argv: brokers, topic, partitions.
const CREATE_TOPIC: &str = r#"
import sys
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
brokers, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": brokers})
for name, future in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
    try:
        future.result(30)
    except KafkaException as e:
        if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise
"#;

/// argv: brokers, topic, key (hex), value (hex). Prints {"partition", "offset"}.
const PRODUCE: &str = r#"
import json, sys
from confluent_kafka import Producer
brokers, topic, key, value = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
result = []
producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: result.append((err, msg)))
left = producer.flush(30)
if left or not result:
    sys.exit(f"not delivered within 30 s ({left} in queue)")
err, msg = result[0]
if err is not None:
    sys.exit(f"delivery failed: {err}")
print(json.dumps({"partition": msg.partition(), "offset": msg.offset()}))
"#;

/// argv: brokers, topic, timeout (s). Prints one JSON line per record, key and value in hex.
/// Reads every partition from its start to the end it had when the snippet began.
const CONSUME_ALL: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
brokers, topic, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "vigil-tests-reader",
                     "enable.auto.commit": False, "allow.auto.create.topics": False})
meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
if meta is None or meta.error is not None or not meta.partitions:
    sys.exit(0)
ends = {}
for p in meta.partitions:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
    if high > low:
        ends[p] = high
if not ends:
    sys.exit(0)
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
while ends:
    if time.monotonic() > deadline:
        sys.exit(f"read {topic} only partly within {timeout} s; still to read: {ends}")
    msg = consumer.poll(0.5)
    if msg is None:
        continue
    if msg.error():
        sys.exit(f"consume: {msg.error()}")
    p = msg.partition()
    if p in ends and msg.offset() < ends[p]:
        print(json.dumps({"partition": p, "offset": msg.offset(),
                          "key": (msg.key() or b"").hex(), "value": (msg.value() or b"").hex()}))
    if p in ends and msg.offset() + 1 >= ends[p]:
        del ends[p]
consumer.close()
"#;
