//! [`IndexConsumer`]: the indexer's side of the bus. It opens each envelope (refusing what is
//! not signed by a known key), indexes the event, commits about every interval, and only then
//! acknowledges, so that what the collector's checkpoint passes is durable in the index.
//! Commits come at most once per `commit_interval`.
//!
//! With a durable bus (Kafka) the consumer also writes the bus positions it has indexed into
//! each Tantivy commit's payload, as Quickwit keeps its checkpoints with its splits: after a
//! crash, [`IndexConsumer::resume_positions`] names where the index ends, and the
//! subscription starts there, so the index and its offsets never disagree. Refused messages
//! go to a quarantine transport when one is given, before their offsets are acknowledged.
//!
//! No single message can stop the consumer (issue 12): an event whose time the index cannot
//! store is indexed at receive time with a `time_out_of_range` finding (see
//! [`crate::TIME_OUT_OF_RANGE`]); a message that does not open, or whose indexing fails on
//! its own (a panic in building its document), is refused: counted, logged and quarantined
//! with its reason, while its batch-mates are indexed. Only failures of the index or the bus
//! themselves stop the consumer. Refused bytes, their key and the reason go through the
//! token scanner first, so neither the quarantine topic nor the log holds a plaintext token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_bus::{
    BusError, Delivery, DeliveryReceipt, Offset, PartitionId, PartitionPositions,
    QuarantinedMessage, Subscription, Transport,
};
use vigil_event::{Keyring, Redactor};

use crate::document::{index_time, IndexTime, IndexedEvent};
use crate::error::IndexError;
use crate::writer::{Added, EventIndex};

/// Counters of the consumer, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct IndexStats {
    /// Events added to the index, re-deliveries included: each add is counted once here,
    /// and also in `events_replaced` when it replaced a document with the same id.
    pub events_indexed: AtomicU64,
    /// Of `events_indexed`, the events whose id the index already held (committed, or added
    /// since the last commit): re-deliveries, replaced in place. `events_indexed -
    /// events_replaced` is how many events the index gained.
    pub events_replaced: AtomicU64,
    /// Of `events_indexed`, the events whose own time the index cannot store (outside the
    /// years 1677–2262), indexed at receive time with a `time_out_of_range` finding.
    pub time_out_of_range: AtomicU64,
    /// Messages refused: bad signature, unknown key, not an audit entry, or (counted in
    /// `unindexable` too) an event whose indexing failed on its own.
    pub rejected: AtomicU64,
    /// Of `rejected`, the verified events whose indexing failed on its own (their document
    /// could not be built); quarantined like the other refused messages.
    pub unindexable: AtomicU64,
    /// Refused messages written to the quarantine transport.
    pub quarantined: AtomicU64,
    /// Commits made.
    pub commits: AtomicU64,
    /// Unix time in milliseconds of the last commit.
    pub last_commit_unix_ms: AtomicU64,
}

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The index failed.
    #[error("index: {0}")]
    Index(#[from] IndexError),
    /// The payload of the index's last commit is not the consumer's positions.
    #[error("the index's commit payload is unreadable: {0}")]
    UnreadablePayload(#[source] serde_json::Error),
    /// The bus positions could not be encoded as a commit payload.
    #[error("cannot encode the commit payload: {0}")]
    EncodePayload(#[source] serde_json::Error),
    /// A blocking task that indexes a batch or commits panicked or was cancelled.
    #[error("the {task} task failed: {source}")]
    TaskFailed {
        /// `indexing` or `commit`.
        task: &'static str,
        /// Why it did not finish.
        source: tokio::task::JoinError,
    },
}

/// The commit payload: the next bus offset to read, per partition, for what the commit holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CommitPayload {
    bus_positions: BTreeMap<PartitionId, Offset>,
}

/// Reads the bus into the index.
pub struct IndexConsumer {
    index: Arc<EventIndex>,
    keyring: Keyring,
    commit_interval: Duration,
    max_batch: usize,
    stats: Arc<IndexStats>,
    /// Delivered, acknowledged and resumed-from offsets per partition.
    positions: PartitionPositions,
    /// Whether the positions go into each commit's payload (and were resumed from it).
    positions_in_commits: bool,
    quarantine: Option<Arc<dyn Transport>>,
    /// Replaces plaintext tokens in what is quarantined and logged about refused messages.
    redactor: Option<Redactor>,
}

impl std::fmt::Debug for IndexConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexConsumer")
            .field("index", &self.index)
            .field("commit_interval", &self.commit_interval)
            .field("positions", &self.positions)
            .field("positions_in_commits", &self.positions_in_commits)
            .finish_non_exhaustive()
    }
}

impl IndexConsumer {
    /// A consumer writing to `index`, trusting envelopes signed by `keyring`.
    pub fn new(
        index: Arc<EventIndex>,
        keyring: Keyring,
        commit_interval: Duration,
    ) -> IndexConsumer {
        IndexConsumer {
            index,
            keyring,
            commit_interval,
            max_batch: 4096,
            stats: Arc::new(IndexStats::default()),
            positions: PartitionPositions::new(),
            positions_in_commits: false,
            quarantine: None,
            redactor: None,
        }
    }

    /// Keeps the bus positions in every commit's payload, starting from those of the last
    /// commit. For a bus that keeps its records across restarts (Kafka); the embedded bus
    /// numbers its offsets anew in each process, so there they would mean nothing.
    pub fn with_positions_in_commits(mut self) -> Result<IndexConsumer, ConsumerError> {
        let payload = self.index.last_commit_payload()?;
        let positions = match payload.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(text) => {
                serde_json::from_str::<CommitPayload>(text)
                    .map_err(ConsumerError::UnreadablePayload)?
                    .bus_positions
            }
        };
        self.positions = PartitionPositions::resuming_at(positions);
        self.positions_in_commits = true;
        Ok(self)
    }

    /// Where the index ends on the bus: the next offset to read per partition, from the last
    /// commit (empty unless [`with_positions_in_commits`](Self::with_positions_in_commits)).
    pub fn resume_positions(&self) -> Vec<(PartitionId, Offset)> {
        if self.positions_in_commits {
            self.positions.positions()
        } else {
            Vec::new()
        }
    }

    /// Publishes refused messages to `quarantine` (as [`QuarantinedMessage`] JSON) before their
    /// offsets are acknowledged. Every plaintext token in a refused message (its bytes, its
    /// key, the reason) is first replaced by its HMAC under `redactor` (the data directory's
    /// redaction key, the same as the collector's, so a quarantined message can be matched to
    /// the event it would have been); the log of refusals is redacted the same way.
    pub fn with_quarantine(
        mut self,
        quarantine: Arc<dyn Transport>,
        redactor: Redactor,
    ) -> IndexConsumer {
        self.quarantine = Some(quarantine);
        self.redactor = Some(redactor);
        self
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<IndexStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown` or until the bus closes; commits and acknowledges what it
    /// holds before returning.
    pub async fn run(
        mut self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<(), ConsumerError> {
        let mut quarantined: Vec<DeliveryReceipt> = Vec::new();
        // Commits come at most once per interval, but an event arriving after a quiet spell
        // is committed at once: low latency when idle, few commits under load.
        let mut last_commit = Instant::now()
            .checked_sub(self.commit_interval)
            .unwrap_or_else(Instant::now);
        let mut next_commit = Instant::now();
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_commit), if self.positions.has_pending() => None,
                batch = subscription.next_batch(self.max_batch) => match batch {
                    Ok(batch) => Some(batch),
                    Err(BusError::Closed) => break,
                    Err(e) => return Err(e.into()),
                },
            };
            if let Some(batch) = batch {
                if !self.positions.has_pending() {
                    next_commit = Instant::now().max(last_commit + self.commit_interval);
                }
                self.positions.record_batch(&batch);
                let index = Arc::clone(&self.index);
                let keyring = self.keyring.clone();
                let stats = Arc::clone(&self.stats);
                let redactor = self.redactor.clone();
                let refused = tokio::task::spawn_blocking(move || {
                    add_batch(&index, &keyring, &stats, redactor.as_ref(), batch)
                })
                .await
                .map_err(|source| ConsumerError::TaskFailed {
                    task: "indexing",
                    source,
                })??;
                if !refused.is_empty() {
                    quarantined.push(self.quarantine(refused).await?);
                }
            }
            if self.positions.has_pending() && Instant::now() >= next_commit {
                self.commit_and_ack(&mut *subscription, &mut quarantined)
                    .await?;
                last_commit = Instant::now();
            }
        }
        if self.positions.has_pending() {
            self.commit_and_ack(&mut *subscription, &mut quarantined)
                .await?;
        }
        Ok(())
    }

    /// Publishes refused messages to the quarantine transport (or only logs them, without
    /// one); the receipt is awaited before their offsets are acknowledged.
    async fn quarantine(
        &self,
        refused: Vec<QuarantinedMessage>,
    ) -> Result<DeliveryReceipt, ConsumerError> {
        let n = refused.len();
        let Some(quarantine) = &self.quarantine else {
            return Ok(DeliveryReceipt::resolved(n, Ok(())));
        };
        let records = refused.iter().map(QuarantinedMessage::to_record).collect();
        let receipt = quarantine.publish(records).await?;
        self.stats
            .quarantined
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(receipt)
    }

    async fn commit_and_ack(
        &mut self,
        subscription: &mut dyn Subscription,
        quarantined: &mut Vec<DeliveryReceipt>,
    ) -> Result<(), ConsumerError> {
        for receipt in quarantined.drain(..) {
            receipt.await?;
        }
        let payload = if self.positions_in_commits {
            let payload = CommitPayload {
                bus_positions: self.positions.positions_after_pending(),
            };
            Some(serde_json::to_string(&payload).map_err(ConsumerError::EncodePayload)?)
        } else {
            None
        };
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || match payload {
            Some(payload) => index.commit_with_payload(&payload),
            None => index.commit(),
        })
        .await
        .map_err(|source| ConsumerError::TaskFailed {
            task: "commit",
            source,
        })??;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.stats
            .last_commit_unix_ms
            .store(now_ms, Ordering::Relaxed);
        self.positions.ack(subscription).await?;
        Ok(())
    }
}

/// What became of one message of a batch.
enum Outcome {
    Indexed {
        added: Added,
        time: IndexTime,
    },
    /// The message is not a verified audit event.
    Refused(String),
    /// A verified event whose indexing failed on its own.
    Unindexable(String),
}

/// Indexes every message of `batch` that opens and parses; returns the others, redacted.
/// Fails only when the index itself fails (its writer is gone, its storage errs): then no
/// later message could be indexed either.
fn add_batch(
    index: &EventIndex,
    keyring: &Keyring,
    stats: &IndexStats,
    redactor: Option<&Redactor>,
    batch: Vec<Delivery>,
) -> Result<Vec<QuarantinedMessage>, IndexError> {
    let mut refused = Vec::new();
    for delivery in batch {
        let outcome = match add_one(index, keyring, &delivery.record.payload)? {
            Outcome::Indexed { added, time } => {
                stats.events_indexed.fetch_add(1, Ordering::Relaxed);
                if added == Added::Replaced {
                    stats.events_replaced.fetch_add(1, Ordering::Relaxed);
                }
                if let IndexTime::Received(_) = time {
                    stats.time_out_of_range.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        key = %scrub(redactor, &delivery.record.key),
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "event time outside the index's range: indexed at receive time"
                    );
                }
                continue;
            }
            Outcome::Refused(reason) => reason,
            Outcome::Unindexable(reason) => {
                stats.unindexable.fetch_add(1, Ordering::Relaxed);
                reason
            }
        };
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        let reason = scrub(redactor, &outcome);
        let mut delivery = delivery;
        delivery.record.key = scrub(redactor, &delivery.record.key);
        if let Some(r) = redactor {
            if let std::borrow::Cow::Owned(clean) =
                r.redact_tokens_in_bytes(&delivery.record.payload)
            {
                delivery.record.payload = clean;
            }
        }
        tracing::warn!(%reason, key = %delivery.record.key, partition = delivery.partition, offset = delivery.offset, "refused message");
        refused.push(QuarantinedMessage::new(reason, delivery));
    }
    Ok(refused)
}

/// Opens and indexes one message. Building a document is plain code over the event, but a
/// panic there (a bug an odd event finds) must cost that event only, not the stage: it is
/// caught and the event refused. A panic inside Tantivy's own writer is not caught here (its
/// threads end, and the next add fails as an index failure).
fn add_one(index: &EventIndex, keyring: &Keyring, payload: &[u8]) -> Result<Outcome, IndexError> {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keyring.open_event(payload).map(|(event, origin)| {
            let event = IndexedEvent::new(event, origin);
            let time = index_time(&event);
            (event, time)
        })
    }));
    let (event, time) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return Ok(Outcome::Refused(e.to_string())),
        Err(_) => return Ok(Outcome::Unindexable("opening the event panicked".into())),
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| index.add(&event))) {
        Ok(Ok(added)) => Ok(Outcome::Indexed { added, time }),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Outcome::Unindexable(
            "building the event's document panicked".into(),
        )),
    }
}

/// `text` with every plaintext token replaced by its HMAC, or by a placeholder without a
/// redactor: refusal reasons can quote what was refused (an unknown key id), and keys come
/// from whoever wrote to the bus.
fn scrub(redactor: Option<&Redactor>, text: &str) -> String {
    let found = vigil_event::token::find_tokens(text);
    if found.is_empty() {
        return text.to_string();
    }
    match redactor {
        Some(r) => String::from_utf8_lossy(&r.redact_tokens_in_bytes(text.as_bytes())).into_owned(),
        None => {
            let mut out = String::with_capacity(text.len());
            let mut copied = 0;
            for token in found {
                out.push_str(&text[copied..token.start]);
                out.push_str("[token]");
                copied = token.end;
            }
            out.push_str(&text[copied..]);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_bus::{BusLimits, EmbeddedBus, Record};
    use vigil_event::{Origin, SourceKind};

    use crate::config::IndexConfig;

    fn line(id: &str) -> Vec<u8> {
        format!(r#"{{"time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"{id}","path":"secret/data/x"}}}}"#).into_bytes()
    }

    /// Publishes `records`, closes the bus, and lets `consumer` index everything.
    async fn consume(consumer: IndexConsumer, records: Vec<Record>) {
        let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).unwrap();
        let subscription = bus.subscribe("indexer").await.unwrap();
        let receipt = bus.publish(records).await.unwrap();
        let task = tokio::spawn(consumer.run(subscription, CancellationToken::new()));
        receipt.await.unwrap();
        bus.close();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn keeps_positions_in_the_commit_and_quarantines_what_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::new([("k".to_owned(), b"0123456789abcdef".to_vec())]).unwrap();
        let origin = Origin::new("n1", "main", SourceKind::File);
        let index = Arc::new(EventIndex::open(dir.path(), IndexConfig::default()).unwrap());
        let quarantine = EmbeddedBus::new(["ops"], BusLimits::default()).unwrap();
        let mut quarantined = quarantine.subscribe("ops").await.unwrap();
        // The quarantine's receipt resolves once it is read: read it while indexing runs.
        let reader = tokio::spawn(async move {
            let got = quarantined.next_batch(10).await.unwrap();
            let last = got.last().unwrap().offset;
            quarantined.ack(0, last).await.unwrap();
            got
        });
        let consumer = IndexConsumer::new(Arc::clone(&index), keyring.clone(), Duration::ZERO)
            .with_positions_in_commits()
            .unwrap()
            .with_quarantine(
                Arc::new(quarantine.clone()),
                Redactor::new(vigil_event::AuditHasher::new(b"quarantine-key")),
            );
        assert!(consumer.resume_positions().is_empty());
        let stats = consumer.stats();
        let mut records: Vec<Record> = ["r1", "r2", "r3"]
            .iter()
            .map(|id| Record::new(origin.key(), keyring.seal(&origin, &line(id)).unwrap()))
            .collect();
        // An audit line that nobody signed, in the middle.
        records.insert(1, Record::new("forger", line("forged")));
        consume(consumer, records).await;

        assert_eq!(index.num_docs(), 3);
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
        assert_eq!(stats.quarantined.load(Ordering::Relaxed), 1);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 1);
        let message: QuarantinedMessage = serde_json::from_slice(&got[0].record.payload).unwrap();
        assert_eq!((message.key.as_str(), message.offset), ("forger", 1));
        assert_eq!(
            message.payload.as_deref().map(str::as_bytes),
            Some(&line("forged")[..])
        );

        // A consumer on the same index resumes after the last record it committed.
        let again = IndexConsumer::new(Arc::clone(&index), keyring, Duration::ZERO)
            .with_positions_in_commits()
            .unwrap();
        assert_eq!(again.resume_positions(), vec![(0, 4)]);
    }

    #[tokio::test]
    async fn a_redelivered_event_is_counted_as_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::new([("k".to_owned(), b"0123456789abcdef".to_vec())]).unwrap();
        let origin = Origin::new("n1", "main", SourceKind::File);
        let index = Arc::new(EventIndex::open(dir.path(), IndexConfig::default()).unwrap());
        let consumer = IndexConsumer::new(Arc::clone(&index), keyring.clone(), Duration::ZERO);
        let stats = consumer.stats();
        let sealed =
            |id: &str| Record::new(origin.key(), keyring.seal(&origin, &line(id)).unwrap());
        consume(consumer, vec![sealed("r1"), sealed("r2"), sealed("r1")]).await;
        assert_eq!(index.num_docs(), 2);
        assert_eq!(stats.events_indexed.load(Ordering::Relaxed), 3);
        assert_eq!(stats.events_replaced.load(Ordering::Relaxed), 1);

        // Delivered again to a later consumer, after the commit: replaced again.
        let again = IndexConsumer::new(Arc::clone(&index), keyring.clone(), Duration::ZERO);
        let stats = again.stats();
        consume(again, vec![sealed("r2"), sealed("r3")]).await;
        assert_eq!(index.num_docs(), 3);
        assert_eq!(stats.events_indexed.load(Ordering::Relaxed), 2);
        assert_eq!(stats.events_replaced.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn without_positions_the_commit_carries_no_payload() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::new([("k".to_owned(), b"0123456789abcdef".to_vec())]).unwrap();
        let origin = Origin::new("n1", "main", SourceKind::File);
        let index = Arc::new(EventIndex::open(dir.path(), IndexConfig::default()).unwrap());
        let consumer = IndexConsumer::new(Arc::clone(&index), keyring.clone(), Duration::ZERO);
        let record = Record::new(origin.key(), keyring.seal(&origin, &line("r1")).unwrap());
        consume(consumer, vec![record]).await;
        assert_eq!(index.num_docs(), 1);
        assert_eq!(index.last_commit_payload().unwrap(), None);
    }
}
