//! Rotation under write load: a writer thread appends numbered lines without pause while the
//! test rotates the file the way logrotate does, with real files, a real redb checkpoint and
//! the embedded bus.
//!
//! - rename-and-create: logrotate renames the file and creates an empty one; the writer keeps
//!   writing to its old descriptor for a while, then reopens the path (Vault on SIGHUP);
//! - copytruncate: logrotate copies the file, then truncates it. Lines written between the
//!   copy and the truncate are in neither file, whatever reads them: that race is
//!   copytruncate's own. The test holds the writer during copy + truncate (as if the race had
//!   not struck) and asserts that the collector itself loses and repeats nothing;
//! - restarts in the middle of a rotation, graceful (every acknowledged line exactly once) and
//!   abrupt (the collector task is aborted with batches in flight: every line at least once,
//!   repeats bounded by what was in flight).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::task::JoinHandle;
use vigil_bus::{BusLimits, EmbeddedBus, Record, Subscription, Transport};
use vigil_collector::{
    CancellationToken, Checkpoint, CollectorConfig, CollectorError, CollectorStats, FileCollector,
    FileQuarantine, LineOrigin, LineOutcome, LineProcessor, TailerConfig,
};

const PATIENCE: Duration = Duration::from_secs(20);
const BATCH: usize = 50;
const IN_FLIGHT: usize = 4;

struct PassThrough;

impl LineProcessor for PassThrough {
    fn process(&self, line: &[u8], origin: &LineOrigin<'_>) -> LineOutcome {
        LineOutcome::Publish(Record::new(origin.source, line.to_vec()))
    }
}

/// Appends `line NNNNNNN` lines to whatever file it holds, until stopped. The file sits behind
/// a mutex so that the test can swap it (a reopen after SIGHUP) or hold the writer still.
struct Writer {
    file: Arc<Mutex<File>>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl Writer {
    fn start(path: &Path) -> Self {
        let file = Arc::new(Mutex::new(append_to(path)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (file, stop) = (Arc::clone(&file), Arc::clone(&stop));
            thread::spawn(move || {
                let mut written = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..20 {
                        let line = format!("line {written:07}\n");
                        file.lock()
                            .expect("not poisoned")
                            .write_all(line.as_bytes())
                            .expect("write");
                        written += 1;
                    }
                    thread::sleep(Duration::from_micros(500));
                }
                written
            })
        };
        Self { file, stop, thread }
    }

    /// What Vault does on SIGHUP: close the old file and open the path again.
    fn reopen(&self, path: &Path) {
        *self.file.lock().expect("not poisoned") = append_to(path);
    }

    /// Stops writing and returns how many lines were written.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer did not panic")
    }
}

fn append_to(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for append")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// logrotate `create`: rename, create empty; the writer still writes to the old descriptor
/// for `lag`, then reopens.
fn rotate_rename(path: &Path, suffix: &str, writer: &Writer, lag: Duration) {
    std::fs::rename(path, sibling(path, suffix)).expect("rename");
    File::create(path).expect("create");
    thread::sleep(lag);
    writer.reopen(path);
}

/// logrotate `copytruncate`, with the writer held still between copy and truncate.
fn rotate_copytruncate(path: &Path, suffix: &str, writer: &Writer) {
    let _held = writer.file.lock().expect("not poisoned");
    std::fs::copy(path, sibling(path, suffix)).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for truncate")
        .set_len(0)
        .expect("truncate");
}

/// Every payload a consumer group received, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn get(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}

fn consume(bus: &EmbeddedBus, seen: &Seen) -> JoinHandle<()> {
    let mut subscription = bus.join_group("indexer").expect("join group");
    let seen = seen.clone();
    tokio::spawn(async move {
        while let Ok(batch) = subscription.next_batch(256).await {
            let mut last = None;
            for delivery in batch {
                let payload = String::from_utf8_lossy(&delivery.record.payload).into_owned();
                seen.0.lock().expect("not poisoned").push(payload);
                last = Some(delivery.offset);
            }
            if let Some(offset) = last {
                subscription.ack(0, offset).await.expect("ack");
            }
        }
    })
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), CollectorError>>,
    stats: Arc<CollectorStats>,
    checkpoint: Arc<Checkpoint>,
    seen: Seen,
    consumer: JoinHandle<()>,
}

fn start(dir: &Path) -> Running {
    let mut tailer = TailerConfig::new(dir.join("audit.log"));
    tailer.poll_interval = Duration::from_millis(5);
    let mut config = CollectorConfig::new("node-1/file", tailer);
    config.max_batch_lines = BATCH;
    config.max_in_flight = IN_FLIGHT;
    let checkpoint = Arc::new(Checkpoint::open(&dir.join("data")).expect("checkpoint store"));
    let quarantine =
        Arc::new(FileQuarantine::open(dir.join("data/quarantine.jsonl")).expect("quarantine"));
    let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).expect("bus");
    let seen = Seen::default();
    let consumer = consume(&bus, &seen);
    let transport: Arc<dyn Transport> = Arc::new(bus);
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
        seen,
        consumer,
    }
}

impl Running {
    /// Graceful stop: batches in flight are drained and committed.
    async fn stop(self) -> Vec<String> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("collector stops in time")
            .expect("collector task did not panic")
            .expect("collector ends cleanly");
        self.consumer.abort();
        release(self.checkpoint).await;
        self.seen.get()
    }

    /// Abrupt stop, the nearest a test gets to kill -9: the task is dropped where it stands;
    /// what it committed is all that survives.
    async fn crash(self) -> Vec<String> {
        self.task.abort();
        let _ = self.task.await;
        self.consumer.abort();
        release(self.checkpoint).await;
        self.seen.get()
    }
}

/// Waits until no blocking task of a stopped collector holds the store, so that it can be
/// opened again (redb allows one opener per file).
async fn release(mut checkpoint: Arc<Checkpoint>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match Arc::try_unwrap(checkpoint) {
            Ok(store) => return drop(store),
            Err(shared) => checkpoint = shared,
        }
        assert!(tokio::time::Instant::now() < deadline, "store released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn eventually(mut condition: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn expected(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("line {i:07}")).collect()
}

/// Waits until `running` has delivered `count` lines.
async fn delivered(running: &Running, count: usize) {
    eventually(
        || running.seen.len() >= count,
        || {
            format!(
                "{count} lines delivered, got {}, stats {:?}",
                running.seen.len(),
                running.stats.snapshot()
            )
        },
    )
    .await;
}

/// Lets the writer write for a while.
async fn under_load(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_under_load_delivers_every_line_once_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let writer = Writer::start(&log);
    let running = start(dir.path());
    for rotation in 1..=5 {
        under_load(Duration::from_millis(60)).await;
        // The writer keeps writing to the renamed file for longer than a poll interval.
        rotate_rename(
            &log,
            &format!(".{rotation}"),
            &writer,
            Duration::from_millis(20),
        );
    }
    under_load(Duration::from_millis(60)).await;
    let written = writer.finish();
    delivered(&running, written).await;
    let stats = running.stats.snapshot();
    let seen = running.stop().await;
    assert_eq!(seen.len(), written, "nothing read twice");
    assert!(seen == expected(written), "every line once, in order");
    assert_eq!(stats.rotations, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_under_load_delivers_every_line_once_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let writer = Writer::start(&log);
    let running = start(dir.path());
    for rotation in 1..=5 {
        under_load(Duration::from_millis(60)).await;
        rotate_copytruncate(&log, &format!(".{rotation}"), &writer);
    }
    under_load(Duration::from_millis(60)).await;
    let written = writer.finish();
    delivered(&running, written).await;
    let stats = running.stats.snapshot();
    let seen = running.stop().await;
    assert_eq!(seen.len(), written, "nothing read twice");
    assert!(seen == expected(written), "every line once, in order");
    assert!(stats.truncations >= 1, "{stats:?}");
}

/// Restarts at different points of a rename-and-create rotation: right after the rename
/// (writer still on the old file), right after the reopen, and while the new file is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restarts_mid_rotation_deliver_every_line_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let writer = Writer::start(&log);
    let mut all = Vec::new();
    for rotation in 1..=4 {
        let running = start(dir.path());
        under_load(Duration::from_millis(40)).await;
        std::fs::rename(&log, sibling(&log, &format!(".{rotation}"))).expect("rename");
        File::create(&log).expect("create");
        if rotation % 2 == 0 {
            // Stopped before the writer reopened: the restart finds the renamed file.
            all.extend(running.stop().await);
            under_load(Duration::from_millis(10)).await;
            writer.reopen(&log);
        } else {
            under_load(Duration::from_millis(10)).await;
            writer.reopen(&log);
            all.extend(running.stop().await);
        }
        // Down for a while: the writer goes on.
        under_load(Duration::from_millis(30)).await;
    }
    let written = writer.finish();
    let running = start(dir.path());
    let missing = written - all.len().min(written);
    delivered(&running, missing).await;
    all.extend(running.stop().await);
    assert_eq!(all.len(), written, "nothing read twice");
    assert!(all == expected(written), "every line once, in order");
}

/// Aborted collectors at the same points: every line at least once; lines repeated only from
/// batches that were in flight (not acknowledged) when the collector died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_mid_rotation_lose_nothing_and_repeat_only_unacknowledged_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let writer = Writer::start(&log);
    let mut runs = Vec::new();
    let crashes = 4;
    for rotation in 1..=crashes {
        let running = start(dir.path());
        under_load(Duration::from_millis(40)).await;
        std::fs::rename(&log, sibling(&log, &format!("-2026112{rotation}"))).expect("rename");
        File::create(&log).expect("create");
        if rotation % 2 == 0 {
            runs.push(running.crash().await);
            under_load(Duration::from_millis(10)).await;
            writer.reopen(&log);
        } else {
            under_load(Duration::from_millis(10)).await;
            writer.reopen(&log);
            runs.push(running.crash().await);
        }
        under_load(Duration::from_millis(30)).await;
    }
    let written = writer.finish();
    let running = start(dir.path());
    let last = expected(written).pop().expect("lines were written");
    eventually(
        || running.seen.get().last() == Some(&last),
        || format!("last line delivered, stats {:?}", running.stats.snapshot()),
    )
    .await;
    runs.push(running.stop().await);

    let all: Vec<String> = runs.iter().flatten().cloned().collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert!(unique == expected(written), "every line at least once");
    for (run, seen) in runs.iter().enumerate() {
        let mut sorted = seen.clone();
        sorted.sort();
        assert!(&sorted == seen, "run {run} delivered in order");
    }
    let repeated = all.len() - written;
    assert!(
        repeated <= crashes * IN_FLIGHT * BATCH,
        "{repeated} lines repeated: more than the batches in flight"
    );
    // Each run starts exactly where the one before was acknowledged: a restart repeats a
    // suffix of what the crashed run delivered, never an older line.
    for pair in runs.windows(2) {
        let (Some(first_next), Some(last_before)) = (pair[1].first(), pair[0].last()) else {
            continue;
        };
        let from = pair[0].iter().position(|line| line == first_next);
        if let Some(from) = from {
            assert!(
                pair[0].len() - from <= IN_FLIGHT * BATCH,
                "restart at {first_next} repeats more than was in flight (last was {last_before})"
            );
        }
    }
}

/// A file that disappears while the collector is down and comes back: the same file (moved
/// away and back) resumes at its checkpoint; a different file at the path starts at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_gone_while_down_resumes_if_it_is_the_same_and_starts_over_if_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let away = dir.path().join("elsewhere");
    let mut file = append_to(&log);
    file.write_all(b"line 0000000\nline 0000001\n")
        .expect("write");
    let running = start(dir.path());
    delivered(&running, 2).await;
    assert_eq!(running.stop().await, expected(2));

    // Gone at start: nothing to read, no error; back with the same identity: resume.
    std::fs::rename(&log, &away).expect("move away");
    let running = start(dir.path());
    tokio::time::sleep(Duration::from_millis(50)).await;
    file.write_all(b"line 0000002\n").expect("write");
    std::fs::rename(&away, &log).expect("move back");
    delivered(&running, 1).await;
    assert_eq!(running.stop().await, ["line 0000002"]);

    // Deleted while down, a new file at the path: read from its start.
    std::fs::remove_file(&log).expect("delete");
    let running = start(dir.path());
    tokio::time::sleep(Duration::from_millis(50)).await;
    append_to(&log)
        .write_all(b"line 0000003\nline 0000004\n")
        .expect("write");
    delivered(&running, 2).await;
    assert_eq!(running.stop().await, ["line 0000003", "line 0000004"]);
}
