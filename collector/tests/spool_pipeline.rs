//! The whole receiving path: socket receiver → spool (one `ReceiverPipeline`) →
//! `FileCollector` → embedded bus → consumer group, with the spool trimmed behind the
//! checkpoint.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use vigil_bus::{BusLimits, EmbeddedBus, Record, Subscription, Transport};
use vigil_collector::{
    CancellationToken, Checkpoint, CollectorConfig, FileCollector, FileQuarantine, FsyncPolicy,
    LineOrigin, LineOutcome, LineProcessor, Receiver, ReceiverConfig, ReceiverKind,
    ReceiverPipeline, ReceiverStats, SourceAddress, Spool, SpoolConfig,
};

const PATIENCE: Duration = Duration::from_secs(20);

struct PassThrough;

impl LineProcessor for PassThrough {
    fn process(&self, line: &[u8], origin: &LineOrigin<'_>) -> LineOutcome {
        LineOutcome::Publish(Record::new(origin.source, line.to_vec()))
    }
}

/// Everything one run of the pipeline holds.
struct Pipeline {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    spool: Spool,
    receiver_stats: Arc<ReceiverStats>,
    address: std::net::SocketAddr,
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

async fn start(dir: &Path, bus: &EmbeddedBus) -> Pipeline {
    let checkpoint = Arc::new(Checkpoint::open(&data_dir(dir)).expect("checkpoint"));
    let mut spool_config = SpoolConfig::new(data_dir(dir).join("spool").join("socket.spool"));
    spool_config.fsync = FsyncPolicy::Every(Duration::from_millis(20));
    spool_config.trim_interval = Duration::from_millis(20);
    let spool = Spool::open(spool_config, Some(&checkpoint)).expect("spool");
    let quarantine =
        Arc::new(FileQuarantine::open(data_dir(dir).join("quarantine.jsonl")).expect("quarantine"));
    let receiver = ReceiverPipeline::bind(
        ReceiverKind::Socket,
        ReceiverConfig::new(
            "node-1/socket",
            SourceAddress::parse_for(ReceiverKind::Socket, "tcp://127.0.0.1:0").expect("address"),
        ),
        spool.clone(),
        quarantine.clone(),
    )
    .await
    .expect("bind");
    let address = receiver.local_addr().expect("tcp address");
    let receiver_stats = receiver.receiver_stats();
    let mut tailer = receiver.tailer_config();
    tailer.poll_interval = Duration::from_millis(5);
    let mut config = CollectorConfig::new("node-1/socket", tailer);
    config.max_batch_lines = 64;
    let transport: Arc<dyn Transport> = Arc::new(bus.clone());
    let collector = FileCollector::new(
        config,
        Arc::clone(&checkpoint),
        transport,
        Arc::new(PassThrough),
        quarantine,
    );
    let shutdown = CancellationToken::new();
    let tasks = vec![
        tokio::spawn({
            let shutdown = shutdown.clone();
            let checkpoint = Arc::clone(&checkpoint);
            async move {
                receiver
                    .run(checkpoint, shutdown)
                    .await
                    .expect("receiver and spool maintenance");
            }
        }),
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                collector.run(shutdown).await.expect("collector");
            }
        }),
    ];
    Pipeline {
        shutdown,
        tasks,
        spool,
        receiver_stats,
        address,
    }
}

impl Pipeline {
    async fn stop(self) -> Spool {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("stops in time")
                .expect("no panic");
        }
        self.spool
    }
}

/// Consumes `group`, recording payloads and acknowledging each batch.
fn consume(bus: &EmbeddedBus, group: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut subscription = bus.join_group(group).expect("join");
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok(batch) = subscription.next_batch(100).await {
            let mut last = None;
            for delivery in batch {
                let payload = String::from_utf8_lossy(&delivery.record.payload).into_owned();
                record.lock().expect("lock").push(payload);
                last = Some(delivery.offset);
            }
            if let Some(offset) = last {
                subscription.ack(0, offset).await.expect("ack");
            }
        }
    });
    seen
}

async fn send(address: std::net::SocketAddr, range: std::ops::Range<usize>) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let text: String = range.map(|i| format!("{{\"n\":{i}}}\n")).collect();
    stream.write_all(text.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("shutdown");
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{{\"n\":{i}}}")).collect()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");

    let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).expect("bus");
    let seen_1 = consume(&bus, "indexer");
    let pipeline = start(dir.path(), &bus).await;
    send(pipeline.address, 0..300).await;
    eventually("first run delivered", || {
        seen_1.lock().expect("lock").len() >= 300
    })
    .await;
    let spool = pipeline.spool.clone();
    eventually("spool acknowledged", || {
        spool.stats().snapshot().spool_bytes == 0
    })
    .await;
    let spool = pipeline.stop().await;
    drop(spool);
    assert_eq!(*seen_1.lock().expect("lock"), expected(0..300));

    let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).expect("bus");
    let seen_2 = consume(&bus, "indexer");
    let pipeline = start(dir.path(), &bus).await;
    assert_eq!(
        pipeline.spool.stats().snapshot().spool_bytes,
        0,
        "the reopened spool knows what was acknowledged"
    );
    send(pipeline.address, 300..600).await;
    eventually("second run delivered", || {
        seen_2.lock().expect("lock").len() >= 300
    })
    .await;
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    pipeline.stop().await;
    assert_eq!(
        *seen_2.lock().expect("lock"),
        expected(300..600),
        "nothing read twice, nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_keeps_accepting_while_downstream_is_stopped() {
    const LINES: usize = 20_000;
    let dir = tempfile::tempdir().expect("temp dir");
    // A small bus: the collector blocks on it almost at once while nobody consumes.
    let limits = BusLimits {
        max_records: 100,
        ..BusLimits::default()
    };
    let bus = EmbeddedBus::new(["indexer"], limits).expect("bus");
    let pipeline = start(dir.path(), &bus).await;

    // The client writes everything at full rate; it must never wait for downstream.
    tokio::time::timeout(Duration::from_secs(10), send(pipeline.address, 0..LINES))
        .await
        .expect("the client is never blocked");
    let stats = Arc::clone(&pipeline.receiver_stats);
    eventually("every line spooled", || {
        stats.snapshot().lines == LINES as u64
    })
    .await;
    assert!(
        pipeline.spool.stats().snapshot().spool_bytes > 0,
        "nothing acknowledged while downstream is stopped"
    );

    // Downstream comes back: everything arrives, once, in order.
    let seen = consume(&bus, "indexer");
    eventually("caught up", || seen.lock().expect("lock").len() >= LINES).await;
    let spool = pipeline.spool.clone();
    eventually("spool trimmed to nothing pending", || {
        spool.stats().snapshot().spool_bytes == 0
    })
    .await;
    pipeline.stop().await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), LINES);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), LINES);
    assert_eq!(seen, expected(0..LINES));
    assert_eq!(spool.stats().snapshot().dropped_lines, 0);
}

#[tokio::test]
async fn full_spool_counts_drops_and_never_blocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = SpoolConfig::new(dir.path().join("small.spool"));
    config.max_bytes = 1000;
    config.fsync = FsyncPolicy::Never;
    let spool = Spool::open(config, None).expect("spool");
    let quarantine = Arc::new(FileQuarantine::open(dir.path().join("q.jsonl")).expect("q"));
    let receiver = Receiver::bind(
        ReceiverKind::Socket,
        ReceiverConfig::new(
            "node-1/socket",
            SourceAddress::parse_socket("tcp://127.0.0.1:0").expect("address"),
        ),
        spool.clone(),
        quarantine,
    )
    .await
    .expect("bind");
    let address = receiver.local_addr().expect("addr");
    let stats = receiver.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(receiver.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), send(address, 0..500))
        .await
        .expect("never blocks");
    eventually("all lines handled", || {
        let s = stats.snapshot();
        s.lines + s.spool_dropped == 500
    })
    .await;
    let spool_stats = spool.stats().snapshot();
    assert!(spool_stats.spool_bytes <= 1000);
    assert!(spool_stats.dropped_lines > 0);
    assert_eq!(spool_stats.dropped_lines, stats.snapshot().spool_dropped);
    // The oldest lines are kept: the spool holds a prefix of what was sent.
    let kept: Vec<String> = std::fs::read_to_string(spool.path())
        .expect("spool")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(kept, expected(0..kept.len()));
    shutdown.cancel();
    task.await.expect("no panic").expect("no error");
}
