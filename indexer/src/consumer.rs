//! [`IndexConsumer`]: the indexer's side of the bus. It opens each envelope (refusing what is
//! not signed by a known key), indexes the event, commits about every interval, and only then
//! acknowledges, so that what the collector's checkpoint passes is durable in the index.
//! Commits come at most once per `commit_interval`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusError, Offset, PartitionId, Subscription};
use vigil_event::{AuditEvent, Keyring};

use crate::document::IndexedEvent;
use crate::error::IndexError;
use crate::writer::EventIndex;

/// Counters of the consumer, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct IndexStats {
    /// Events added to the index (a re-delivery counts again).
    pub events_indexed: AtomicU64,
    /// Messages refused: bad signature, unknown key, or not an audit entry.
    pub rejected: AtomicU64,
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
}

/// Reads the bus into the index.
#[derive(Debug)]
pub struct IndexConsumer {
    index: Arc<EventIndex>,
    keyring: Keyring,
    commit_interval: Duration,
    max_batch: usize,
    stats: Arc<IndexStats>,
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
        }
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<IndexStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown` or until the bus closes; commits and acknowledges what it
    /// holds before returning.
    pub async fn run(
        self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<(), ConsumerError> {
        let mut pending: Vec<(PartitionId, Offset)> = Vec::new();
        // Commits come at most once per interval, but an event arriving after a quiet spell
        // is committed at once: low latency when idle, few commits under load.
        let mut last_commit = Instant::now()
            .checked_sub(self.commit_interval)
            .unwrap_or_else(Instant::now);
        let mut next_commit = Instant::now();
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_commit), if !pending.is_empty() => None,
                batch = subscription.next_batch(self.max_batch) => match batch {
                    Ok(batch) => Some(batch),
                    Err(BusError::Closed) => break,
                    Err(e) => return Err(e.into()),
                },
            };
            if let Some(batch) = batch {
                if pending.is_empty() {
                    next_commit = Instant::now().max(last_commit + self.commit_interval);
                }
                for delivery in &batch {
                    note_offset(&mut pending, delivery.partition, delivery.offset);
                }
                let index = Arc::clone(&self.index);
                let keyring = self.keyring.clone();
                let stats = Arc::clone(&self.stats);
                tokio::task::spawn_blocking(move || add_batch(&index, &keyring, &stats, &batch))
                    .await
                    .map_err(|e| IndexError::Config(format!("indexing task failed: {e}")))??;
            }
            if !pending.is_empty() && Instant::now() >= next_commit {
                self.commit_and_ack(&mut *subscription, &mut pending)
                    .await?;
                last_commit = Instant::now();
            }
        }
        if !pending.is_empty() {
            self.commit_and_ack(&mut *subscription, &mut pending)
                .await?;
        }
        Ok(())
    }

    async fn commit_and_ack(
        &self,
        subscription: &mut dyn Subscription,
        pending: &mut Vec<(PartitionId, Offset)>,
    ) -> Result<(), ConsumerError> {
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || index.commit())
            .await
            .map_err(|e| IndexError::Config(format!("commit task failed: {e}")))??;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.stats
            .last_commit_unix_ms
            .store(now_ms, Ordering::Relaxed);
        for (partition, offset) in pending.drain(..) {
            subscription.ack(partition, offset).await?;
        }
        Ok(())
    }
}

fn note_offset(pending: &mut Vec<(PartitionId, Offset)>, partition: PartitionId, offset: Offset) {
    match pending.iter_mut().find(|(p, _)| *p == partition) {
        Some((_, o)) => *o = (*o).max(offset),
        None => pending.push((partition, offset)),
    }
}

fn add_batch(
    index: &EventIndex,
    keyring: &Keyring,
    stats: &IndexStats,
    batch: &[vigil_bus::Delivery],
) -> Result<(), IndexError> {
    for delivery in batch {
        let envelope = match keyring.open(&delivery.record.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, key = %delivery.record.key, offset = delivery.offset, "refused message");
                continue;
            }
        };
        let event = match AuditEvent::parse(&envelope.raw) {
            Ok(event) => event,
            Err(e) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, key = %delivery.record.key, offset = delivery.offset, "signed message is not an audit entry");
                continue;
            }
        };
        index.add(&IndexedEvent::new(event, envelope.origin))?;
        stats.events_indexed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
