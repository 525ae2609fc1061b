//! The socket receiver against real TCP and unix-socket clients, writing to a real spool and
//! a real quarantine file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use vigil_collector::{
    CancellationToken, FileQuarantine, FsyncPolicy, Receiver, ReceiverConfig, ReceiverError,
    ReceiverKind, ReceiverStats, SourceAddress, Spool, SpoolConfig,
};

const PATIENCE: Duration = Duration::from_secs(10);

struct Harness {
    dir: tempfile::TempDir,
    spool: Spool,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ReceiverError>>>,
    stats: Arc<ReceiverStats>,
    tcp: Option<std::net::SocketAddr>,
}

impl Harness {
    async fn start(
        address: impl FnOnce(&Path) -> String,
        configure: impl FnOnce(&mut ReceiverConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool_config = SpoolConfig::new(dir.path().join("socket.spool"));
        spool_config.fsync = FsyncPolicy::Never;
        let spool = Spool::open(spool_config, None).expect("spool");
        let quarantine = Arc::new(
            FileQuarantine::open(dir.path().join("quarantine.jsonl")).expect("quarantine"),
        );
        let address = SourceAddress::parse_socket(&address(dir.path())).expect("address");
        let mut config = ReceiverConfig::new("node-1/socket", address);
        configure(&mut config);
        let receiver = Receiver::bind(ReceiverKind::Socket, config, spool.clone(), quarantine)
            .await
            .expect("bind");
        let stats = receiver.stats();
        let tcp = receiver.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(receiver.run(shutdown.clone()));
        Self {
            dir,
            spool,
            shutdown,
            task: Some(task),
            stats,
            tcp,
        }
    }

    fn spooled(&self) -> Vec<String> {
        let bytes = std::fs::read(self.spool.path()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn quarantined(&self) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("quarantine.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("quarantine entry is JSON"))
            .collect()
    }

    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Self {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("receiver stops")
                .expect("no panic")
                .expect("no error");
        }
        self
    }
}

fn unix_path(dir: &Path) -> PathBuf {
    dir.join("vigil.sock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tcp_clients_each_line_once() {
    let harness = Harness::start(|_| "tcp://127.0.0.1:0".into(), |_| {}).await;
    let addr = harness.tcp.expect("tcp address");
    const CLIENTS: usize = 8;
    const LINES: usize = 500;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            for line in 0..LINES {
                // Small, uneven writes: lines are split across writes and interleave with
                // the other clients' lines on the receiving side.
                let text = format!("{{\"client\":{client},\"line\":{line}}}\n");
                let (a, b) = text.as_bytes().split_at(line % text.len());
                stream.write_all(a).await.expect("write");
                stream.write_all(b).await.expect("write");
            }
            stream.shutdown().await.expect("shutdown");
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    harness
        .until("every line spooled", |h| {
            h.spooled().len() >= CLIENTS * LINES
        })
        .await;
    let harness = harness.stop().await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in harness.spooled() {
        *counts.entry(line).or_default() += 1;
    }
    assert_eq!(counts.len(), CLIENTS * LINES);
    assert!(counts.values().all(|&count| count == 1));
    let stats = harness.stats.snapshot();
    assert_eq!(stats.lines, (CLIENTS * LINES) as u64);
    assert_eq!(stats.connections_accepted, CLIENTS as u64);
    assert_eq!(stats.connections_active, 0);
    assert!(harness.quarantined().is_empty());
}

#[tokio::test]
async fn unix_socket_client_and_reconnect() {
    let harness =
        Harness::start(|dir| format!("unix://{}", unix_path(dir).display()), |_| {}).await;
    let path = unix_path(harness.dir.path());
    for round in 0..3 {
        let mut stream = UnixStream::connect(&path).await.expect("connect");
        stream
            .write_all(format!("{{\"round\":{round}}}\n").as_bytes())
            .await
            .expect("write");
        drop(stream);
    }
    harness
        .until("three lines", |h| h.spooled().len() == 3)
        .await;
    let harness = harness.stop().await;
    assert_eq!(
        harness.spooled(),
        ["{\"round\":0}", "{\"round\":1}", "{\"round\":2}"]
    );
    assert!(!path.exists(), "socket file removed on shutdown");
}

#[tokio::test]
async fn oversize_line_is_quarantined_by_its_head() {
    let harness = Harness::start(
        |_| "tcp://127.0.0.1:0".into(),
        |config| {
            config.max_line_bytes = 64;
            config.read_buffer_bytes = 16;
        },
    )
    .await;
    let mut stream = TcpStream::connect(harness.tcp.expect("tcp"))
        .await
        .expect("connect");
    let long = "x".repeat(1000);
    stream
        .write_all(format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n").as_bytes())
        .await
        .expect("write");
    harness.until("two lines", |h| h.spooled().len() == 2).await;
    harness
        .until("quarantine", |h| h.quarantined().len() == 1)
        .await;
    let harness = harness.stop().await;
    assert_eq!(harness.spooled(), ["{\"a\":1}", "{\"b\":2}"]);
    let entry = &harness.quarantined()[0];
    assert_eq!(entry["kind"], "oversize");
    assert_eq!(entry["length"], 1000);
    assert_eq!(entry["offset"], 8);
    assert_eq!(entry["truncated"], true);
    assert_eq!(harness.stats.snapshot().oversize, 1);
}

#[tokio::test]
async fn partial_line_at_disconnect_is_quarantined_not_glued() {
    let harness = Harness::start(|_| "tcp://127.0.0.1:0".into(), |_| {}).await;
    let addr = harness.tcp.expect("tcp");
    let mut first = TcpStream::connect(addr).await.expect("connect");
    first
        .write_all(b"{\"whole\":1}\n{\"half\":")
        .await
        .expect("write");
    drop(first);
    harness
        .until("quarantine", |h| h.quarantined().len() == 1)
        .await;
    let mut second = TcpStream::connect(addr).await.expect("connect");
    second.write_all(b"2}\n").await.expect("write");
    drop(second);
    harness.until("two lines", |h| h.spooled().len() == 2).await;
    let harness = harness.stop().await;
    assert_eq!(harness.spooled(), ["{\"whole\":1}", "2}"]);
    let entry = &harness.quarantined()[0];
    assert_eq!(entry["kind"], "truncated");
    assert_eq!(entry["offset"], 12);
    assert_eq!(entry["length"], 8);
    assert_eq!(harness.stats.snapshot().truncated, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let harness = Harness::start(
        |_| "tcp://127.0.0.1:0".into(),
        |config| {
            config.max_connections = 1;
        },
    )
    .await;
    let addr = harness.tcp.expect("tcp");
    let mut first = TcpStream::connect(addr).await.expect("connect");
    first.write_all(b"{\"one\":1}\n").await.expect("write");
    harness
        .until("first line", |h| h.spooled().len() == 1)
        .await;
    let _second = TcpStream::connect(addr).await.expect("connect");
    harness
        .until("refusal", |h| h.stats.snapshot().connections_refused == 1)
        .await;
    first.write_all(b"{\"two\":2}\n").await.expect("write");
    harness
        .until("second line", |h| h.spooled().len() == 2)
        .await;
    harness.stop().await;
}

#[tokio::test]
async fn wrong_address_kind_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(SpoolConfig::new(dir.path().join("s")), None).expect("spool");
    let quarantine = Arc::new(FileQuarantine::open(dir.path().join("q")).expect("quarantine"));
    let config = ReceiverConfig::new(
        "n/s",
        SourceAddress::parse("udp://127.0.0.1:0").expect("address"),
    );
    assert!(matches!(
        Receiver::bind(ReceiverKind::Socket, config, spool, quarantine).await,
        Err(ReceiverError::UnsupportedAddress { .. })
    ));
}
