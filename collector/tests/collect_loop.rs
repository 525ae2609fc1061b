//! End-to-end tests of the collection loop: a real file, a real redb checkpoint, the embedded
//! bus with real consumer groups, and a pass-through processor.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::task::JoinHandle;
use vigil_bus::{
    BusError, BusLimits, DeliveryReceipt, EmbeddedBus, Record, Refusal, RefusalReason,
    Subscription, Transport,
};
use vigil_collector::{
    CancellationToken, Checkpoint, CollectorConfig, CollectorError, CollectorStats, FileCollector,
    FileQuarantine, LineOrigin, LineOutcome, LineProcessor, StartAt, TailerConfig,
};

/// Upper bound for anything that should happen; tests poll and return as soon as it does.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that must *not* happen.
const BRIEFLY: Duration = Duration::from_millis(150);

/// Publishes every line as is, keyed by source; rejects lines starting with `BAD`.
struct PassThrough;

impl LineProcessor for PassThrough {
    fn process(&self, line: &[u8], origin: &LineOrigin<'_>) -> LineOutcome {
        if line.starts_with(b"BAD") {
            LineOutcome::Reject {
                reason: "test rejects BAD lines".into(),
            }
        } else {
            LineOutcome::Publish(Record::new(origin.source, line.to_vec()))
        }
    }
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn quarantine(&self) -> PathBuf {
        self.dir.path().join("data").join("quarantine.jsonl")
    }

    fn append(&self, bytes: &[u8]) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open log");
        file.write_all(bytes).expect("append");
    }

    fn append_lines(&self, range: std::ops::Range<usize>) {
        let text: String = range.map(|i| format!("line {i:04}\n")).collect();
        self.append(text.as_bytes());
    }

    fn len(&self) -> u64 {
        std::fs::metadata(self.log()).expect("log exists").len()
    }
}

/// What a consumer group has seen, and how far it acknowledges.
#[derive(Clone, Default)]
struct Seen {
    payloads: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn get(&self) -> Vec<String> {
        self.payloads.lock().expect("not poisoned").clone()
    }
}

/// Consumes `group`, recording payloads and acknowledging offsets below `ack_below`.
fn consume(bus: &EmbeddedBus, group: &str, ack_below: Option<u64>) -> (Seen, JoinHandle<()>) {
    let seen = Seen::default();
    let mut subscription = bus.join_group(group).expect("join group");
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok(batch) = subscription.next_batch(64).await {
            let mut last = None;
            for delivery in batch {
                let payload = String::from_utf8_lossy(&delivery.record.payload).into_owned();
                record.payloads.lock().expect("not poisoned").push(payload);
                if ack_below.is_none_or(|limit| delivery.offset < limit) {
                    last = Some(delivery.offset);
                }
            }
            if let Some(offset) = last {
                subscription.ack(0, offset).await.expect("ack");
            }
        }
    });
    (seen, task)
}

/// A running collector.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), CollectorError>>,
    stats: Arc<CollectorStats>,
    checkpoint: Arc<Checkpoint>,
}

impl Running {
    async fn stop(self) -> Arc<Checkpoint> {
        self.shutdown.cancel();
        let outcome = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("collector stops in time")
            .expect("collector task did not panic");
        outcome.expect("collector ends cleanly");
        self.checkpoint
    }

    async fn wait_checkpoint(&self, offset: u64) {
        eventually(
            || self.stats.snapshot().checkpoint_offset == offset,
            || {
                format!(
                    "checkpoint should reach {offset}, stats {:?}",
                    self.stats.snapshot()
                )
            },
        )
        .await;
    }
}

fn start(
    ws: &Workspace,
    bus: &EmbeddedBus,
    configure: impl FnOnce(&mut CollectorConfig),
) -> Running {
    start_with(ws, Arc::new(bus.clone()), configure)
}

fn start_with(
    ws: &Workspace,
    transport: Arc<dyn Transport>,
    configure: impl FnOnce(&mut CollectorConfig),
) -> Running {
    let mut tailer = TailerConfig::new(ws.log());
    tailer.poll_interval = Duration::from_millis(10);
    let mut config = CollectorConfig::new("node-1/file", tailer);
    configure(&mut config);
    let checkpoint = Arc::new(Checkpoint::open(&ws.data_dir()).expect("checkpoint store"));
    let quarantine = Arc::new(FileQuarantine::open(ws.quarantine()).expect("quarantine"));
    let collector = FileCollector::new(
        config,
        Arc::clone(&checkpoint),
        transport,
        Arc::new(PassThrough),
        quarantine,
    );
    let stats = collector.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(collector.run(shutdown.clone()));
    Running {
        shutdown,
        task,
        stats,
        checkpoint,
    }
}

fn bus(groups: &[&str]) -> EmbeddedBus {
    EmbeddedBus::new(groups.iter().copied(), BusLimits::default()).expect("bus")
}

async fn eventually(mut condition: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_restart_delivers_every_line_exactly_once() {
    let ws = Workspace::new();
    ws.append_lines(0..50);

    let first_bus = bus(&["indexer", "rules"]);
    let (indexer_1, _) = consume(&first_bus, "indexer", None);
    let (rules_1, _) = consume(&first_bus, "rules", None);
    let running = start(&ws, &first_bus, |config| config.max_batch_lines = 7);
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;

    ws.append_lines(50..100);
    ws.append(b"line 0100 still being writ");

    let second_bus = bus(&["indexer", "rules"]);
    let (indexer_2, _) = consume(&second_bus, "indexer", None);
    let (rules_2, _) = consume(&second_bus, "rules", None);
    let running = start(&ws, &second_bus, |config| config.max_batch_lines = 7);
    let complete = ws.len() - b"line 0100 still being writ".len() as u64;
    running.wait_checkpoint(complete).await;
    let checkpoint = running.stop().await;

    for (first, second) in [(indexer_1, indexer_2), (rules_1, rules_2)] {
        assert_eq!(first.get(), expected(0..50));
        assert_eq!(
            second.get(),
            expected(50..100),
            "nothing read twice, nothing lost"
        );
    }
    // The store agrees with the stats: the next unread byte is the partial line.
    let mut file = std::fs::File::open(ws.log()).expect("log");
    let metadata = file.metadata().expect("metadata");
    let identity = vigil_collector::FileIdentity::of(&mut file, &metadata, 256)
        .expect("read head")
        .expect("fingerprintable");
    assert_eq!(
        checkpoint.offset(&identity).expect("read store"),
        Some(complete)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_batches_acknowledged_in_full_are_skipped_after_a_restart() {
    let ws = Workspace::new();
    ws.append_lines(0..30);
    let line_len = ws.len() / 30;

    // The consumer acknowledges offsets 0..=12 and then stops acknowledging, like a consumer
    // that crashed before its commit. Batches are 5 lines: 0-4 and 5-9 are acknowledged in
    // full, 10-14 only in part.
    let first_bus = bus(&["indexer"]);
    let (first, _) = consume(&first_bus, "indexer", Some(13));
    let running = start(&ws, &first_bus, |config| {
        config.max_batch_lines = 5;
        config.drain_timeout = Duration::from_millis(20);
    });
    running.wait_checkpoint(10 * line_len).await;
    eventually(
        || first.get().len() == 30,
        || "every line is delivered once".into(),
    )
    .await;
    // Give the collector a chance to (wrongly) move further.
    tokio::time::sleep(BRIEFLY).await;
    assert_eq!(running.stats.snapshot().checkpoint_offset, 10 * line_len);
    running.stop().await;

    let second_bus = bus(&["indexer"]);
    let (second, _) = consume(&second_bus, "indexer", None);
    let running = start(&ws, &second_bus, |config| config.max_batch_lines = 5);
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;

    assert_eq!(first.get(), expected(0..30));
    assert_eq!(
        second.get(),
        expected(10..30),
        "acknowledged batches are not read again; the partly acknowledged one is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_moves_only_after_every_group_acknowledges() {
    let ws = Workspace::new();
    ws.append_lines(0..3);
    let bus = bus(&["indexer", "rules"]);
    let mut indexer = bus.join_group("indexer").expect("join");
    let mut rules = bus.join_group("rules").expect("join");
    let running = start(&ws, &bus, |_| {});

    let got = tokio::time::timeout(PATIENCE, indexer.next_batch(10))
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(got.len(), 3);
    indexer.ack(0, 2).await.expect("ack");
    tokio::time::sleep(BRIEFLY).await;
    assert_eq!(
        running.stats.snapshot().checkpoint_offset,
        0,
        "one group acknowledging is not enough"
    );
    assert_eq!(running.stats.snapshot().events_published, 0);

    let got = tokio::time::timeout(PATIENCE, rules.next_batch(10))
        .await
        .expect("delivered")
        .expect("open");
    rules.ack(0, got[2].offset).await.expect("ack");
    running.wait_checkpoint(ws.len()).await;
    assert_eq!(running.stats.snapshot().events_published, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_last_line_waits_for_its_newline() {
    let ws = Workspace::new();
    ws.append(b"first\npart");
    let bus = bus(&["indexer"]);
    let (seen, _) = consume(&bus, "indexer", None);
    let running = start(&ws, &bus, |_| {});
    running.wait_checkpoint(6).await;
    tokio::time::sleep(BRIEFLY).await;
    assert_eq!(seen.get(), ["first"], "half a line is never published");

    ws.append(b"ial\n");
    running.wait_checkpoint(ws.len()).await;
    assert_eq!(seen.get(), ["first", "partial"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_oversize_lines_are_quarantined_and_passed() {
    let ws = Workspace::new();
    let long = "z".repeat(200);
    ws.append(format!("good one\nBAD line\n{long}\ngood two\n").as_bytes());
    let bus = bus(&["indexer"]);
    let (seen, _) = consume(&bus, "indexer", None);
    let running = start(&ws, &bus, |config| config.tailer.max_line_bytes = 64);
    running.wait_checkpoint(ws.len()).await;
    let stats = running.stats.snapshot();
    running.stop().await;

    assert_eq!(seen.get(), ["good one", "good two"]);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.oversize, 1);
    assert_eq!(stats.lines_read, 3);
    assert_eq!(stats.events_published, 2);
    assert_eq!(stats.bytes_read, ws.len());

    let entries = quarantined(&ws.quarantine());
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "rejected");
    assert_eq!(entries[0]["offset"], 9);
    assert_eq!(entries[0]["source"], "node-1/file");
    assert_eq!(entries[1]["kind"], "oversize");
    assert_eq!(entries[1]["offset"], 18);
    assert_eq!(entries[1]["length"], 200);
    assert_eq!(entries[1]["truncated"], true);
}

fn quarantined(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("quarantine file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_truncated_while_stopped_is_read_from_the_start() {
    let ws = Workspace::new();
    ws.append(b"header\n");
    ws.append_lines(0..20);
    let first_bus = bus(&["indexer"]);
    let (_first, _) = consume(&first_bus, "indexer", None);
    let running = start(&ws, &first_bus, |_| {});
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;

    // Same inode and same first line, hence the same identity, but shorter than the checkpoint.
    OpenOptions::new()
        .write(true)
        .open(ws.log())
        .expect("open")
        .set_len(0)
        .expect("truncate");
    ws.append(b"header\nafter truncation\n");

    let second_bus = bus(&["indexer"]);
    let (second, _) = consume(&second_bus, "indexer", None);
    let running = start(&ws, &second_bus, |_| {});
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;
    assert_eq!(second.get(), ["header", "after truncation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_truncated_while_tailing_is_read_again_from_the_start() {
    let ws = Workspace::new();
    ws.append_lines(0..10);
    let bus = bus(&["indexer"]);
    let (seen, _) = consume(&bus, "indexer", None);
    let running = start(&ws, &bus, |_| {});
    running.wait_checkpoint(ws.len()).await;

    OpenOptions::new()
        .write(true)
        .open(ws.log())
        .expect("open")
        .set_len(0)
        .expect("truncate");
    eventually(
        || running.stats.snapshot().truncations == 1,
        || "truncation is noticed".into(),
    )
    .await;
    ws.append(b"fresh start\n");
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;

    let mut want = expected(0..10);
    want.push("fresh start".into());
    assert_eq!(seen.get(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_file_is_read_from_the_start_even_when_starting_at_end() {
    let ws = Workspace::new();
    ws.append(b"old one\nold two\n");
    let first_bus = bus(&["indexer"]);
    let (first, _) = consume(&first_bus, "indexer", None);
    let running = start(&ws, &first_bus, |config| {
        config.tailer.start_at = StartAt::End
    });
    // Starting at the end of a file never seen: nothing is published, but new lines are.
    running.wait_checkpoint(ws.len()).await;
    ws.append(b"old three\n");
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;
    assert_eq!(first.get(), ["old three"]);

    // Rotation while stopped: the old file moves away and a new one takes the path.
    std::fs::rename(ws.log(), ws.dir.path().join("audit.log.1")).expect("rotate");
    ws.append(b"new one\nnew two\n");

    let second_bus = bus(&["indexer"]);
    let (second, _) = consume(&second_bus, "indexer", None);
    let running = start(&ws, &second_bus, |config| {
        config.tailer.start_at = StartAt::End
    });
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;
    assert_eq!(second.get(), ["new one", "new two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_slows_the_collector_without_losing_lines() {
    let ws = Workspace::new();
    ws.append_lines(0..200);
    let limits = BusLimits {
        max_records: 8,
        max_bytes: usize::MAX,
    };
    let bus = EmbeddedBus::new(["indexer"], limits).expect("bus");
    let (seen, _) = consume(&bus, "indexer", None);
    let running = start(&ws, &bus, |config| config.max_batch_lines = 4);
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;
    assert_eq!(seen.get(), expected(0..200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_bus_is_full_returns_promptly() {
    let ws = Workspace::new();
    ws.append_lines(0..50);
    let limits = BusLimits {
        max_records: 4,
        max_bytes: usize::MAX,
    };
    // A group that never consumes: the bus fills up and publishing waits.
    let bus = EmbeddedBus::new(["stuck"], limits).expect("bus");
    let running = start(&ws, &bus, |config| {
        config.max_batch_lines = 4;
        config.drain_timeout = Duration::from_millis(20);
    });
    eventually(|| bus.buffered_records() == 4, || "bus fills up".into()).await;
    let checkpoint = running.stop().await;
    let mut file = std::fs::File::open(ws.log()).expect("log");
    let metadata = file.metadata().expect("metadata");
    let identity = vigil_collector::FileIdentity::of(&mut file, &metadata, 256)
        .expect("read head")
        .expect("fingerprintable");
    assert_eq!(
        checkpoint.offset(&identity).expect("read store"),
        None,
        "nothing was acknowledged, so nothing is checkpointed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_while_tailing_loses_nothing() {
    let ws = Workspace::new();
    ws.append_lines(0..10);
    let bus = bus(&["indexer"]);
    let (seen, _) = consume(&bus, "indexer", None);
    let running = start(&ws, &bus, |config| config.tailer.start_at = StartAt::End);
    running.wait_checkpoint(ws.len()).await;

    // Lines written just before the rename are still read from the old file.
    ws.append_lines(10..20);
    std::fs::rename(ws.log(), ws.dir.path().join("audit.log.1")).expect("rotate");
    ws.append_lines(20..25);
    eventually(
        || running.stats.snapshot().rotations == 1,
        || "rotation is noticed".into(),
    )
    .await;
    running.wait_checkpoint(ws.len()).await;
    running.stop().await;
    assert_eq!(seen.get(), expected(10..25));
}

/// What [`Refusing`] says about the records it refuses.
const REFUSAL: RefusalReason = RefusalReason::OverProducerLimit {
    bytes: 2_000_000,
    limit: 1_000_000,
};

/// A bus that refuses for good every record whose payload starts with `REFUSE`, as Kafka does
/// with a record over its limit: the others go on to the embedded bus, and the receipt
/// resolves once they are acknowledged there, naming the refused ones by their index in the
/// batch.
struct Refusing {
    inner: EmbeddedBus,
}

impl Refusing {
    async fn publish_refusing(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError> {
        let batch = records.len();
        let mut refused = Vec::new();
        let mut sent = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            if record.payload.starts_with(b"REFUSE") {
                refused.push(Refusal {
                    index,
                    reason: REFUSAL,
                });
            } else {
                sent.push(record);
            }
        }
        let mut inner = self.inner.publish(sent).await?;
        let (resolver, receipt) = DeliveryReceipt::pending(batch);
        tokio::spawn(async move {
            let outcome = inner.delivered().await.map(|mut delivered| {
                delivered.refused = refused;
                delivered
            });
            resolver.resolve_delivered(outcome);
        });
        Ok(receipt)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Spelled out rather than with #[async_trait] (not a dependency of this crate): the same
// signatures the macro generates.
impl Transport for Refusing {
    fn publish<'life0, 'async_trait>(
        &'life0 self,
        records: Vec<Record>,
    ) -> BoxFuture<'async_trait, Result<DeliveryReceipt, BusError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.publish_refusing(records))
    }

    fn subscribe<'life0, 'life1, 'async_trait>(
        &'life0 self,
        group: &'life1 str,
    ) -> BoxFuture<'async_trait, Result<Box<dyn Subscription>, BusError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.subscribe(group)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_bus_refuses_is_quarantined_and_the_collector_moves_on() {
    let ws = Workspace::new();
    // Batches of 4 lines: the refused line sits in the middle of the second batch.
    ws.append(b"line 0000\nline 0001\nline 0002\nline 0003\n");
    let refused_at = ws.len();
    ws.append(b"line 0004\nREFUSE line 0005\nline 0006\nline 0007\n");
    ws.append(b"line 0008\nline 0009\n");
    let bus = bus(&["indexer"]);
    let (seen, _) = consume(&bus, "indexer", None);
    let transport = Arc::new(Refusing { inner: bus.clone() });
    let running = start_with(&ws, transport, |config| config.max_batch_lines = 4);
    running.wait_checkpoint(ws.len()).await;

    let mut published = expected(0..10);
    published.remove(5);
    assert_eq!(
        seen.get(),
        published,
        "the refused line's batch-mates are delivered"
    );
    let stats = running.stats.snapshot();
    assert_eq!(stats.lines_read, 10);
    assert_eq!(stats.envelopes_refused, 1);
    assert_eq!(
        stats.events_published, 9,
        "a refused record is not published"
    );
    assert_eq!(stats.rejected, 0);

    // The collector goes on: a batch whose only record is refused, then more lines.
    let second_refused_at = ws.len();
    ws.append(b"REFUSE line 0010\n");
    running.wait_checkpoint(ws.len()).await;
    ws.append(b"line 0011\n");
    running.wait_checkpoint(ws.len()).await;
    assert!(
        !running.task.is_finished(),
        "the collector is still running"
    );
    let stats = running.stats.snapshot();
    assert_eq!(stats.envelopes_refused, 2);
    assert_eq!(stats.events_published, 10);
    running.stop().await;
    published.push("line 0011".into());
    assert_eq!(seen.get(), published);

    // The quarantine was synced before the checkpoint passed the refused lines.
    let entries = quarantined(&ws.quarantine());
    assert_eq!(entries.len(), 2, "{entries:?}");
    let reason = format!("refused by the bus: {REFUSAL}");
    for (entry, offset, line) in [
        (&entries[0], refused_at + 10, "REFUSE line 0005"),
        (&entries[1], second_refused_at, "REFUSE line 0010"),
    ] {
        assert_eq!(entry["kind"], "rejected");
        assert_eq!(entry["reason"], reason.as_str());
        assert_eq!(entry["source"], "node-1/file");
        assert_eq!(entry["offset"], offset);
        assert_eq!(entry["length"], line.len());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(entry["bytes_base64"].as_str().expect("bytes"))
            .expect("base64");
        assert_eq!(bytes, line.as_bytes(), "the refused payload is kept");
    }
}
