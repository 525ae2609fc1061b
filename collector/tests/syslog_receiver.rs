//! The syslog receiver over a unix datagram socket, UDP and TCP (both RFC 6587 framings),
//! with RFC 3164 and RFC 5424 headers, writing to a real spool; the spooled lines then go
//! through `vigil_event::unframe` as the audit processor does.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use vigil_collector::{
    CancellationToken, FileQuarantine, FsyncPolicy, Receiver, ReceiverConfig, ReceiverKind,
    ReceiverStats, SourceAddress, Spool, SpoolConfig,
};

const PATIENCE: Duration = Duration::from_secs(10);
const RFC3164: &str = r#"<38>Nov 22 16:33:32 vault[9226]: {"request":{"id":"r-3164"}}"#;
const RFC5424: &str =
    r#"<86>1 2026-11-22T16:33:32Z node-1 vault 9226 - - {"request":{"id":"r-5424"}}"#;

struct Harness {
    dir: tempfile::TempDir,
    spool: Spool,
    shutdown: CancellationToken,
    stats: Arc<ReceiverStats>,
    local: Option<std::net::SocketAddr>,
}

impl Harness {
    async fn start(address: impl FnOnce(&Path) -> String, max_line: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool_config = SpoolConfig::new(dir.path().join("syslog.spool"));
        spool_config.fsync = FsyncPolicy::Never;
        let spool = Spool::open(spool_config, None).expect("spool");
        let quarantine = Arc::new(
            FileQuarantine::open(dir.path().join("quarantine.jsonl")).expect("quarantine"),
        );
        let address = SourceAddress::parse_syslog(&address(dir.path())).expect("address");
        let mut config = ReceiverConfig::new("node-1/syslog", address);
        config.max_line_bytes = max_line;
        let receiver = Receiver::bind(ReceiverKind::Syslog, config, spool.clone(), quarantine)
            .await
            .expect("bind");
        let stats = receiver.stats();
        let local = receiver.local_addr();
        let shutdown = CancellationToken::new();
        tokio::spawn(receiver.run(shutdown.clone()));
        Self {
            dir,
            spool,
            shutdown,
            stats,
            local,
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
        std::fs::read_to_string(self.dir.path().join("quarantine.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect()
    }

    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Both headers survive in the spool, and unframe gets facility, severity, host, tag, pid.
fn assert_headers_kept(lines: &[String]) {
    assert_eq!(lines, [RFC3164, RFC5424]);
    let (meta, json) = vigil_event::unframe(lines[0].as_bytes()).expect("3164");
    let meta = meta.expect("syslog meta");
    assert_eq!((meta.facility, meta.severity), (4, 6));
    assert_eq!(
        (meta.tag.as_deref(), meta.pid.as_deref()),
        (Some("vault"), Some("9226"))
    );
    assert_eq!(json, br#"{"request":{"id":"r-3164"}}"#);
    let (meta, _) = vigil_event::unframe(lines[1].as_bytes()).expect("5424");
    let meta = meta.expect("syslog meta");
    assert_eq!((meta.facility, meta.severity), (10, 6));
    assert_eq!(meta.host.as_deref(), Some("node-1"));
}

#[tokio::test]
async fn unix_datagram_like_dev_log() {
    let harness = Harness::start(
        |dir| format!("unixgram://{}", dir.join("log").display()),
        4096,
    )
    .await;
    let client = UnixDatagram::unbound().expect("socket");
    let path = harness.dir.path().join("log");
    // Go's log/syslog ends each message with a newline.
    client
        .send_to(format!("{RFC3164}\n").as_bytes(), &path)
        .await
        .expect("send");
    client
        .send_to(RFC5424.as_bytes(), &path)
        .await
        .expect("send");
    client
        .send_to(b"no header here", &path)
        .await
        .expect("send");
    client
        .send_to(format!("<13>{}", "x".repeat(5000)).as_bytes(), &path)
        .await
        .expect("send");
    harness
        .until("quarantine", |h| h.quarantined().len() == 2)
        .await;
    harness.until("two lines", |h| h.spooled().len() == 2).await;
    assert_headers_kept(&harness.spooled());
    let quarantined = harness.quarantined();
    assert_eq!(quarantined[0]["kind"], "malformed");
    assert_eq!(quarantined[1]["kind"], "oversize");
    let stats = harness.stats.snapshot();
    assert_eq!((stats.lines, stats.malformed, stats.oversize), (2, 1, 1));
}

#[tokio::test]
async fn udp() {
    let harness = Harness::start(|_| "udp://127.0.0.1:0".into(), 4096).await;
    let target = harness.local.expect("udp address");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    for message in [RFC3164, RFC5424] {
        client
            .send_to(message.as_bytes(), target)
            .await
            .expect("send");
        // Keep the order observable: UDP on loopback keeps it, but give the receiver its turn.
        harness
            .until("message", |h| {
                h.spooled().last().map(String::as_str) == Some(message)
            })
            .await;
    }
    assert_headers_kept(&harness.spooled());
}

#[tokio::test]
async fn tcp_octet_counting_and_newline_framing() {
    let harness = Harness::start(|_| "tcp://127.0.0.1:0".into(), 4096).await;
    let target = harness.local.expect("tcp address");
    let mut octets = TcpStream::connect(target).await.expect("connect");
    let framed = format!("{} {RFC3164}", RFC3164.len());
    // Split mid-count and mid-message.
    octets
        .write_all(&framed.as_bytes()[..1])
        .await
        .expect("write");
    octets.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(20)).await;
    octets
        .write_all(&framed.as_bytes()[1..20])
        .await
        .expect("write");
    octets
        .write_all(&framed.as_bytes()[20..])
        .await
        .expect("write");
    harness.until("first", |h| h.spooled().len() == 1).await;
    let mut newline = TcpStream::connect(target).await.expect("connect");
    newline
        .write_all(format!("{RFC5424}\n").as_bytes())
        .await
        .expect("write");
    harness.until("second", |h| h.spooled().len() == 2).await;
    assert_headers_kept(&harness.spooled());
    // A frame cut by the disconnect is quarantined as truncated.
    octets.write_all(b"100 <13>abc").await.expect("write");
    drop(octets);
    harness
        .until("truncated", |h| h.quarantined().len() == 1)
        .await;
    assert_eq!(harness.quarantined()[0]["kind"], "truncated");
    assert_eq!(harness.spooled().len(), 2);
}
