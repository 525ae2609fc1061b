//! Tail a file into an index: the pipeline of `vigil run --file PATH`, in one short main.
//!
//! ```text
//! audit.log ─▶ FileCollector (tail, parse, check, redact, sign) ─▶ EmbeddedBus ─▶ IndexConsumer ─▶ EventIndex
//!                  │ moves its Checkpoint only after the index committed        (verify, add, commit, ack)
//!                  └─▶ FileQuarantine: lines that are not audit entries
//! ```
//!
//! It writes two audit lines and a line of garbage, starts the stages, appends two more lines
//! while they run, waits until all four events are searchable, then stops everything and
//! shows the checkpoint and the quarantine.
//!
//! Run: `cargo run --example tail_into_index`

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusLimits, EmbeddedBus, Transport};
use vigil_collector::{
    AuditLineProcessor, Checkpoint, CollectorConfig, FileCollector, FileQuarantine, QuarantineSink,
    TailerConfig,
};
use vigil_event::{AuditHasher, DeviceOptions, HmacChecker, Keyring, Origin, Redactor, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexConsumer, SearchRequest};

/// The consumer group the indexer reads the bus as (the same name on Kafka).
const INDEXER_GROUP: &str = "vigil-indexer";

fn audit_line(n: u32) -> String {
    format!(
        r#"{{"time":"2026-11-22T16:40:{n:02}Z","type":"request","auth":{{"display_name":"userpass-alice"}},"request":{{"id":"req-{n}","operation":"read","path":"secret/data/app/{n}"}}}}"#
    )
}

fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(pipeline())
}

async fn pipeline() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let log_path = data.path().join("audit.log");
    let mut log = std::fs::File::create(&log_path)?;
    writeln!(log, "{}", audit_line(1))?;
    writeln!(log, "this line is not an audit entry")?;
    writeln!(log, "{}", audit_line(2))?;

    // Keys: the signing keyring (collector signs, consumers verify; every stage shares it)
    // and the redaction key (the collector's own HMAC for leaked plaintext).
    let keyring = Keyring::new([("local", b"example signing key, 32 bytes..".to_vec())])?;
    let redactor = Redactor::new(AuditHasher::new(b"example redaction key"));

    // The index, and the bus with one consumer group: a batch the collector publishes is
    // acknowledged once every registered group has acknowledged it.
    let index = Arc::new(EventIndex::open(
        &data.path().join("index"),
        IndexConfig::default(),
    )?);
    let bus = EmbeddedBus::new([INDEXER_GROUP], BusLimits::default())?;
    let transport: Arc<dyn Transport> = Arc::new(bus);
    let shutdown = CancellationToken::new();

    // The indexer: verifies each envelope, adds the event, commits at most every 200 ms
    // here (a second by default), and only then acknowledges.
    let consumer = IndexConsumer::new(
        Arc::clone(&index),
        keyring.clone(),
        Duration::from_millis(200),
    );
    let index_stats = consumer.stats();
    let subscription = transport.subscribe(INDEXER_GROUP).await?;
    let indexer = tokio::spawn(consumer.run(subscription, shutdown.clone()));

    // The collector: tails the file, turns each line into a signed record (parse, HMAC
    // checks, redaction, envelope), publishes batches, and moves its checkpoint (in redb,
    // under the data dir) only when the bus says the index has them.
    let checkpoint = Arc::new(Checkpoint::open(data.path())?);
    let quarantine_path = data.path().join("quarantine.jsonl");
    let quarantine: Arc<dyn QuarantineSink> = Arc::new(FileQuarantine::open(&quarantine_path)?);
    let origin = Origin::new("vault-0", "main", SourceKind::File);
    let processor = AuditLineProcessor::new(
        origin.clone(),
        HmacChecker::new(DeviceOptions::default()),
        redactor,
        keyring,
    );
    let mut tailer = TailerConfig::new(&log_path);
    tailer.poll_interval = Duration::from_millis(20);
    let collector = FileCollector::new(
        CollectorConfig::new(origin.key(), tailer),
        Arc::clone(&checkpoint),
        Arc::clone(&transport),
        Arc::new(processor),
        Arc::clone(&quarantine),
    );
    let collector_stats = collector.stats();
    let collecting = tokio::spawn(collector.run(shutdown.clone()));

    // The file grows while it is tailed.
    writeln!(log, "{}", audit_line(3))?;
    writeln!(log, "{}", audit_line(4))?;
    log.flush()?;

    // Wait for a positive signal (all four searchable), with a deadline so that a broken
    // pipeline fails instead of hanging.
    let request = SearchRequest::new("auth.display_name:userpass-alice");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let total = loop {
        let total = index.search(&request)?.total;
        if total == 4 || tokio::time::Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("searchable: {total} event(s)");

    // Stop: the collector drains what is in flight, the indexer commits what it holds.
    shutdown.cancel();
    collecting.await?.context("collector")?;
    indexer.await?.context("indexer")?;
    ensure!(total == 4, "expected 4 searchable events, found {total}");

    let collected = collector_stats.snapshot();
    println!(
        "collector: {} lines read, {} events published, {} rejected",
        collected.lines_read, collected.events_published, collected.rejected
    );
    println!(
        "indexer: {} events indexed in {} commit(s)",
        index_stats.events_indexed.load(Ordering::Relaxed),
        index_stats.commits.load(Ordering::Relaxed)
    );

    // The checkpoint stands at the end of the file: a restart reads nothing twice.
    let file_len = std::fs::metadata(&log_path)?.len();
    let identity = checkpoint
        .identity_at(&log_path)?
        .context("no checkpoint recorded for the file")?;
    let offset = checkpoint.offset(&identity)?;
    println!("checkpoint: {identity:?} at offset {offset:?} of {file_len}");
    ensure!(
        offset == Some(file_len),
        "checkpoint at {offset:?}, not at the end ({file_len})"
    );

    // The garbage line was kept, with its reason, instead of being dropped.
    let quarantined = std::fs::read_to_string(&quarantine_path)?;
    println!("quarantine: {}", quarantined.trim());
    ensure!(
        quarantined.lines().count() == 1 && collected.rejected == 1,
        "expected one quarantined line"
    );
    Ok(())
}

// A failure prints the whole error chain and exits 1.
fn main() -> anyhow::Result<()> {
    run()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        super::run().unwrap();
    }
}
