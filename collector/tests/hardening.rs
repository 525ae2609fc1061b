//! Issue 12 at the receivers: hostile input and hostile peers never blind the collector.
//! Adversarial lines through the socket receiver and the real audit processor are
//! quarantined redacted and counted while the valid lines around them are delivered; a
//! datagram flood leaves the syslog receiver alive with every datagram accounted for;
//! idle connections from one peer cannot lock another out; peers outside the allow-list are
//! refused and counted; a unix socket gets its configured mode.
//!
//! Run with `--no-capture` to see the flood figures.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use vigil_bus::{BusLimits, EmbeddedBus, Subscription, Transport};
use vigil_collector::{
    AuditLineProcessor, CancellationToken, Checkpoint, CollectorConfig, FileCollector,
    FileQuarantine, FsyncPolicy, PeerNet, QuarantineConfig, QuarantineStats, Receiver,
    ReceiverConfig, ReceiverKind, ReceiverPipeline, ReceiverStats, SourceAddress, Spool,
    SpoolConfig,
};
use vigil_event::{AuditHasher, HmacChecker, Keyring, Origin, Redactor, SourceKind};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "s.cCNrEKC1aBbog162djzX4FuB";

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn redactor() -> Redactor {
    Redactor::new(AuditHasher::new(b"collector-redaction-key"))
}

fn quarantine(path: &Path) -> Arc<FileQuarantine> {
    Arc::new(
        FileQuarantine::open_with(QuarantineConfig::new(path).with_redactor(redactor()))
            .expect("quarantine"),
    )
}

/// The entries of a quarantine file, with their bytes decoded.
fn quarantined(path: &Path) -> Vec<(serde_json::Value, Vec<u8>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("entry is JSON");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(entry["bytes_base64"].as_str().expect("bytes"))
                .expect("base64");
            (entry, bytes)
        })
        .collect()
}

fn assert_no_plaintext_token(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        !text.contains(TOKEN),
        "plaintext token in {}",
        path.display()
    );
    for (entry, bytes) in quarantined(path) {
        let bytes = String::from_utf8_lossy(&bytes);
        assert!(!bytes.contains(TOKEN), "plaintext token in {entry}");
    }
}

fn entry(id: &str, extra: &str) -> String {
    format!(
        r#"{{"time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"{id}","path":"secret/data/x"{extra}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_lines_are_quarantined_redacted_and_counted_and_their_neighbours_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let quarantine_path = data.join("quarantine.jsonl");
    let checkpoint = Arc::new(Checkpoint::open(&data).expect("checkpoint"));
    let mut spool_config = SpoolConfig::new(data.join("socket.spool"));
    spool_config.fsync = FsyncPolicy::Every(Duration::from_millis(20));
    spool_config.trim_interval = Duration::from_millis(20);
    let spool = Spool::open(spool_config, Some(&checkpoint)).expect("spool");
    let quarantine = quarantine(&quarantine_path);
    let address =
        SourceAddress::parse_for(ReceiverKind::Socket, "tcp://127.0.0.1:0").expect("address");
    let pipeline = ReceiverPipeline::bind(
        ReceiverKind::Socket,
        ReceiverConfig::new("node-1/socket", address),
        spool.clone(),
        quarantine.clone(),
    )
    .await
    .expect("bind");
    let address = pipeline.local_addr().expect("tcp");
    let keyring = Keyring::new([("k1", b"0123456789abcdef0123".to_vec())]).expect("keyring");
    let processor = AuditLineProcessor::new(
        Origin::new("node-1", "socket", SourceKind::Socket),
        HmacChecker::default(),
        redactor(),
        keyring.clone(),
    );
    let mut tailer = pipeline.tailer_config();
    tailer.poll_interval = Duration::from_millis(5);
    let mut config = CollectorConfig::new("node-1/socket", tailer);
    config.max_envelope_bytes = 64 * 1024;
    let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).expect("bus");
    let transport: Arc<dyn Transport> = Arc::new(bus.clone());
    let collector = FileCollector::new(
        config,
        Arc::clone(&checkpoint),
        transport,
        Arc::new(processor),
        quarantine.clone(),
    );
    let collector_stats = collector.stats();
    let shutdown = CancellationToken::new();
    let receiving = tokio::spawn(pipeline.run(Arc::clone(&checkpoint), shutdown.clone()));
    let collecting = tokio::spawn(collector.run(shutdown.clone()));

    // Every line below but the first and the last is refused, and most hold a token.
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
    // Under the line limit, over the envelope limit: a path no HMAC check touches.
    let huge_field = format!(
        r#"{{"time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"huge","path":"secret/data/{}","note":"{TOKEN}"}}}}"#,
        "x".repeat(200_000)
    );
    let mut stream_bytes = Vec::new();
    let hostile: Vec<Vec<u8>> = vec![
        entry("before", "").into_bytes(),
        format!("{{\"time\":\"2026-11-22T16:33:32Z\",\0\"auth\":\"{TOKEN}\"}}").into_bytes(),
        [&b"\xff\xfe{\"auth\":\""[..], TOKEN.as_bytes(), b"\"}"].concat(),
        deep_array.into_bytes(),
        deep_object.into_bytes(),
        b"[1,2,3]".to_vec(),
        format!("\"{TOKEN}\"").into_bytes(),
        b"42".to_vec(),
        huge_field.into_bytes(),
        entry("after", "").into_bytes(),
    ];
    for line in &hostile {
        stream_bytes.extend_from_slice(line);
        stream_bytes.push(b'\n');
    }
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(&stream_bytes).await.expect("write");
    stream.shutdown().await.expect("shutdown");

    let mut subscription = bus.join_group("indexer").expect("join");
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let batch = tokio::time::timeout(PATIENCE, subscription.next_batch(100))
            .await
            .expect("valid lines delivered in time")
            .expect("batch");
        for delivery in batch {
            let envelope = keyring.open(&delivery.record.payload).expect("signed");
            let raw = String::from_utf8(envelope.raw).expect("utf-8");
            delivered.push(raw);
            subscription.ack(0, delivery.offset).await.expect("ack");
        }
    }
    assert!(delivered[0].contains(r#""id":"before""#), "{delivered:?}");
    assert!(delivered[1].contains(r#""id":"after""#), "{delivered:?}");

    let stats = Arc::clone(&collector_stats);
    eventually("every line handled", || {
        let s = stats.snapshot();
        s.lines_read == hostile.len() as u64 && s.events_published == 2
    })
    .await;
    eventually("checkpoint past everything", || {
        spool.stats().snapshot().spool_bytes == 0
    })
    .await;
    let snapshot = collector_stats.snapshot();
    assert_eq!((snapshot.rejected, snapshot.envelopes_oversize), (7, 1));

    shutdown.cancel();
    receiving.await.expect("no panic").expect("receiver");
    collecting.await.expect("no panic").expect("collector");
    let quarantine_stats = quarantine.stats();
    drop(quarantine);
    let entries = quarantined(&quarantine_path);
    assert_eq!(entries.len(), 8, "one entry per refused line");
    let reasons: Vec<&str> = entries
        .iter()
        .map(|(entry, _)| entry["reason"].as_str().expect("reason"))
        .collect();
    assert!(reasons[1].contains("invalid UTF-8"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not an object")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .last()
            .expect("last")
            .starts_with("envelope over 65536 bytes"),
        "{reasons:?}"
    );
    assert_no_plaintext_token(&quarantine_path);
    assert!(quarantine_stats.snapshot().entries_redacted >= 4);
    // The refused bytes are kept (redacted where they held a token), not just the reason.
    for i in [3, 4, 5, 7] {
        assert_eq!(entries[i - 1].1, hostile[i], "line {i} kept as it was");
    }
}

/// A receiver of `kind` on `address` with its own spool and quarantine, running until the
/// returned token is cancelled.
struct Running {
    dir: tempfile::TempDir,
    address: Option<SocketAddr>,
    stats: Arc<ReceiverStats>,
    quarantine: Arc<QuarantineStats>,
    spool: Spool,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn run_receiver(
    kind: ReceiverKind,
    address: &str,
    tune: impl FnOnce(&mut ReceiverConfig),
) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool_config = SpoolConfig::new(dir.path().join("r.spool"));
    spool_config.fsync = FsyncPolicy::Never;
    let spool = Spool::open(spool_config, None).expect("spool");
    let quarantine = quarantine(&dir.path().join("quarantine.jsonl"));
    let quarantine_stats = quarantine.stats();
    let address = address.replace("DIR", &dir.path().display().to_string());
    let mut config = ReceiverConfig::new(
        "node-1/test",
        SourceAddress::parse_for(kind, &address).expect("address"),
    );
    tune(&mut config);
    let receiver = Receiver::bind(kind, config, spool.clone(), quarantine)
        .await
        .expect("bind");
    let stats = receiver.stats();
    let local = receiver.local_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { receiver.run(token).await.expect("receiver") });
    Running {
        dir,
        address: local,
        stats,
        quarantine: quarantine_stats,
        spool,
        shutdown,
        task,
    }
}

impl Running {
    fn spooled(&self) -> Vec<String> {
        String::from_utf8_lossy(&std::fs::read(self.spool.path()).unwrap_or_default())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("stops in time")
            .expect("no panic");
        self.dir
    }
}

/// Drops the kernel counted for the UDP socket bound to `port` (`/proc/net/udp`), if known.
fn kernel_udp_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        local
            .ends_with(&wanted)
            .then(|| fields.last()?.parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_of_garbage_leaves_the_syslog_receiver_alive_and_counted() {
    const DATAGRAMS: u64 = 100_000;
    let running = run_receiver(ReceiverKind::Syslog, "udp://127.0.0.1:0", |_| {}).await;
    let address = running.address.expect("udp");
    let started = Instant::now();
    // One in ten is a valid syslog message; the rest is garbage holding a token.
    let sent = tokio::task::spawn_blocking(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        let mut valid = 0u64;
        for i in 0..DATAGRAMS {
            let datagram = if i % 10 == 0 {
                valid += 1;
                format!(r#"<38>Nov 22 16:33:32 vault[1]: {{"n":{i}}}"#)
            } else {
                format!("garbage {i} {TOKEN}")
            };
            // A full socket buffer on loopback is an error on some kernels: not ours to judge.
            let _ = socket.send_to(datagram.as_bytes(), address);
        }
        valid
    })
    .await
    .expect("sender");
    let send_time = started.elapsed();

    let stats = Arc::clone(&running.stats);
    let port = address.port();
    let accounted = || {
        let s = stats.snapshot();
        s.lines + s.malformed + s.spool_dropped + kernel_udp_drops(port).unwrap_or(0)
    };
    // Everything sent is either received or dropped by the kernel; wait until it is counted.
    let deadline = Instant::now() + PATIENCE;
    while accounted() < DATAGRAMS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_time = started.elapsed();
    let s = running.stats.snapshot();
    let kernel_drops = kernel_udp_drops(port);
    let q = running.quarantine.snapshot();
    eprintln!(
        "udp flood: {DATAGRAMS} datagrams ({sent} valid) sent in {send_time:?} ({:.0}/s), \
         handled in {drain_time:?}; spooled {}, malformed {}, spool dropped {}, kernel drops \
         {kernel_drops:?}; quarantine written {}, dropped over the rate {}, dropped queue full {}",
        DATAGRAMS as f64 / send_time.as_secs_f64(),
        s.lines,
        s.malformed,
        s.spool_dropped,
        q.entries_written,
        q.dropped_rate,
        q.dropped_queue_full
    );
    match kernel_drops {
        Some(drops) => assert_eq!(s.lines + s.malformed + s.spool_dropped + drops, DATAGRAMS),
        None => assert!(s.lines + s.malformed + s.spool_dropped <= DATAGRAMS),
    }
    assert!(s.lines <= sent && s.lines > 0, "{s:?}");
    // Every malformed datagram was offered to quarantine: written or dropped, and counted
    // (the quarantine's writer thread counts what it takes off its queue a moment later).
    let offered = |q: &vigil_collector::QuarantineStatsSnapshot| {
        q.entries_written + q.dropped_rate + q.dropped_queue_full
    };
    let deadline = Instant::now() + PATIENCE;
    while offered(&running.quarantine.snapshot()) < s.malformed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let q = running.quarantine.snapshot();
    assert_eq!(
        q.entries_written + q.dropped_rate + q.dropped_queue_full,
        s.malformed
    );
    if s.malformed > 20_000 {
        // More than the burst and a second's worth: the rate limit must have held some back.
        assert!(
            q.dropped_rate > 0,
            "the rate limit held the flood back: {q:?}"
        );
    }
    let spooled = running.spooled();
    assert_eq!(spooled.len() as u64, s.lines);
    assert!(spooled.iter().all(|line| line.starts_with("<38>")));

    // Still alive: one more valid datagram goes through.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    socket
        .send_to(br#"<38>Nov 22 16:33:32 vault[1]: {"n":"last"}"#, address)
        .expect("send");
    let stats = Arc::clone(&running.stats);
    let before = s.lines;
    eventually("the receiver still receives", || {
        stats.snapshot().lines > before
    })
    .await;
    let dir = running.stop().await;
    assert_no_plaintext_token(&dir.path().join("quarantine.jsonl"));
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind source");
    socket.connect(to).await.expect("connect")
}

/// Whether the receiver closed `stream` (a read returns end of stream or an error).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_peer_cannot_lock_another_out() {
    let running = run_receiver(ReceiverKind::Socket, "tcp://127.0.0.1:0", |config| {
        config.max_connections = 16;
        config.max_connections_per_peer = 4;
        config.idle_timeout = Some(Duration::from_millis(800));
    })
    .await;
    let address = running.address.expect("tcp");
    let stats = Arc::clone(&running.stats);

    // One peer opens its share of idle connections, and one more.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.1", address).await);
    }
    eventually("four accepted", || {
        stats.snapshot().connections_accepted == 4
    })
    .await;
    let mut extra = connect_from("127.0.0.1", address).await;
    assert!(
        closed(&mut extra).await,
        "the fifth from one peer is closed"
    );
    assert_eq!(stats.snapshot().connections_refused_per_peer, 1);

    // Another peer (another loopback address) still gets in and is heard.
    let mut other = connect_from("127.0.0.2", address).await;
    other
        .write_all(b"{\"from\":\"other\"}\n")
        .await
        .expect("write");
    eventually("the other peer's line spooled", || {
        stats.snapshot().lines == 1
    })
    .await;

    // The idle ones are closed after the timeout, counted, and their slots freed.
    for stream in &mut idle {
        assert!(closed(stream).await, "an idle connection is closed");
    }
    eventually("idle closes counted", || {
        stats.snapshot().connections_idle_closed >= 4
    })
    .await;
    let mut again = connect_from("127.0.0.1", address).await;
    again
        .write_all(b"{\"from\":\"first\"}\n")
        .await
        .expect("write");
    eventually("the first peer is heard again", || {
        stats.snapshot().lines == 2
    })
    .await;
    drop((again, other));
    assert_eq!(
        running.spooled(),
        [r#"{"from":"other"}"#, r#"{"from":"first"}"#]
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_the_allow_list_are_refused_and_counted() {
    let allow: Vec<PeerNet> = vec!["127.0.0.2/32".parse().expect("net")];
    let tcp = run_receiver(ReceiverKind::Syslog, "tcp://127.0.0.1:0", |config| {
        config.allow = allow.clone();
    })
    .await;
    let address = tcp.address.expect("tcp");
    let mut refused = connect_from("127.0.0.1", address).await;
    let _ = refused.write_all(b"<38>refused: {}\n").await;
    assert!(
        closed(&mut refused).await,
        "a peer outside the list is closed"
    );
    let mut allowed = connect_from("127.0.0.2", address).await;
    allowed
        .write_all(b"<38>Nov 22 16:33:32 vault[1]: {\"ok\":1}\n")
        .await
        .expect("write");
    let stats = Arc::clone(&tcp.stats);
    eventually("the allowed peer's message spooled", || {
        stats.snapshot().lines == 1
    })
    .await;
    assert_eq!(stats.snapshot().refused_not_allowed, 1);
    assert_eq!(stats.snapshot().connections_accepted, 1);
    drop(allowed);
    assert_eq!(tcp.spooled(), [r#"<38>Nov 22 16:33:32 vault[1]: {"ok":1}"#]);
    tcp.stop().await;

    let udp = run_receiver(ReceiverKind::Syslog, "udp://127.0.0.1:0", |config| {
        config.allow = allow.clone();
    })
    .await;
    let address = udp.address.expect("udp");
    let outside = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    let inside = std::net::UdpSocket::bind("127.0.0.2:0").expect("client");
    outside
        .send_to(b"<38>Nov 22 16:33:32 vault[1]: {\"no\":1}", address)
        .expect("send");
    inside
        .send_to(b"<38>Nov 22 16:33:32 vault[1]: {\"yes\":1}", address)
        .expect("send");
    let stats = Arc::clone(&udp.stats);
    eventually("both datagrams seen", || {
        let s = stats.snapshot();
        s.lines == 1 && s.refused_not_allowed == 1
    })
    .await;
    assert_eq!(
        udp.spooled(),
        [r#"<38>Nov 22 16:33:32 vault[1]: {"yes":1}"#]
    );
    udp.stop().await;
}

#[tokio::test]
async fn unix_socket_mode_and_owner_are_set_right_after_bind() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Our own uid and gid: chown to them needs no privilege and still goes through the call.
    let probe = tempfile::tempfile().expect("probe");
    let metadata = probe.metadata().expect("metadata");
    let owner = (metadata.uid(), metadata.gid());
    let running = run_receiver(ReceiverKind::Socket, "unix://DIR/vigil.sock", |config| {
        config.unix_mode = Some(0o660);
        config.unix_owner = Some(owner);
    })
    .await;
    let path = running.dir.path().join("vigil.sock");
    let metadata = std::fs::metadata(&path).expect("socket file");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!((metadata.uid(), metadata.gid()), owner);
    // A unix peer has no address: an allow-list does not apply to it.
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    stream.write_all(b"{\"unix\":1}\n").await.expect("write");
    let stats = Arc::clone(&running.stats);
    eventually("line spooled", || stats.snapshot().lines == 1).await;
    running.stop().await;
}

#[test]
fn files_the_collector_writes_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoint = Checkpoint::open(dir.path()).expect("checkpoint");
    let spool = Spool::open(
        SpoolConfig::new(dir.path().join("s.spool")),
        Some(&checkpoint),
    )
    .expect("spool");
    let quarantine = FileQuarantine::open(dir.path().join("q.jsonl")).expect("quarantine");
    for path in [
        dir.path().join(Checkpoint::FILE_NAME),
        spool.path().to_owned(),
        quarantine.path().to_owned(),
    ] {
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}
