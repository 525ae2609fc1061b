//! [`RulesConsumer`]: the rules engine as a consumer group of the bus. It verifies each
//! envelope, evaluates the event, stores the alerts and the engine's state in one
//! transaction, and only then acknowledges, so that a crash replays at most the batch in
//! flight (and alerts keep their ids, so a replay revises rather than duplicates), and the
//! engine's replay guard skips the events of that batch it already counted.
//!
//! No single event stops the consumer: one whose evaluation panics is counted
//! ([`RulesStats::failed`]), logged and skipped with the rest of its batch going on. (The
//! indexer quarantines what cannot be stored; the rules have nothing to keep of it.)

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusError, Delivery, PartitionPositions, Record, Subscription, Transport};
use vigil_event::{EventId, Keyring};

use crate::alert::Alert;
use crate::engine::RulesEngine;
use crate::store::{AlertStore, StoreError};

/// Counters of the rules consumer.
#[derive(Debug, Default)]
pub struct RulesStats {
    /// Events evaluated.
    pub events: AtomicU64,
    /// Alert revisions stored.
    pub alerts: AtomicU64,
    /// Messages refused (bad signature, not an audit entry).
    pub rejected: AtomicU64,
    /// Events whose evaluation failed (panicked); skipped.
    pub failed: AtomicU64,
    /// Re-delivered events the engine had already counted; skipped.
    pub replays_skipped: AtomicU64,
    /// Correlation and detector groups evicted to stay under their caps (a total kept with
    /// the engine state, so it survives restarts).
    pub groups_evicted: AtomicU64,
}

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum RulesConsumerError {
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task that writes the store panicked or was cancelled.
    #[error("the alert store task failed: {0}")]
    StoreTask(#[from] tokio::task::JoinError),
    /// An alert could not be encoded as JSON for the alert topic.
    #[error("cannot encode alert {id} for the alert topic: {source}")]
    EncodeAlert {
        /// The alert's id.
        id: String,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

/// Evaluates what arrives on the bus.
pub struct RulesConsumer {
    engine: RulesEngine,
    store: Arc<AlertStore>,
    keyring: Keyring,
    flush_interval: Duration,
    stats: Arc<RulesStats>,
    alert_topic: Option<Arc<dyn Transport>>,
}

impl RulesConsumer {
    /// A consumer running `engine` (see [`RulesEngine::resume`] to carry on from the state in
    /// `store`), storing its alerts and state in `store`.
    pub fn new(engine: RulesEngine, store: Arc<AlertStore>, keyring: Keyring) -> RulesConsumer {
        RulesConsumer {
            engine,
            store,
            keyring,
            flush_interval: Duration::from_secs(1),
            stats: Arc::new(RulesStats::default()),
            alert_topic: None,
        }
    }

    /// Also publishes every stored alert revision to `topic`, as JSON keyed by alert id.
    pub fn with_alert_topic(mut self, topic: Arc<dyn Transport>) -> RulesConsumer {
        self.alert_topic = Some(topic);
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<RulesStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown` or until the bus closes. The state is saved (and what it
    /// covers acknowledged) at most once per interval: saving it per batch would cost more
    /// than evaluating the batch.
    pub async fn run(
        mut self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<(), RulesConsumerError> {
        let mut tick = tokio::time::interval(self.flush_interval);
        let mut alerts: Vec<Alert> = Vec::new();
        let mut positions = PartitionPositions::new();
        let mut last_save = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                batch = subscription.next_batch(4096) => match batch {
                    Ok(batch) => {
                        positions.record_batch(&batch);
                        self.evaluate(&batch, &mut alerts);
                    }
                    Err(BusError::Closed) => break,
                    Err(e) => return Err(e.into()),
                },
            }
            if last_save.elapsed() >= self.flush_interval {
                self.save(&mut *subscription, &mut alerts, &mut positions)
                    .await?;
                last_save = Instant::now();
            }
        }
        self.save(&mut *subscription, &mut alerts, &mut positions)
            .await
    }

    fn evaluate(&mut self, batch: &[Delivery], alerts: &mut Vec<Alert>) {
        let replays = self.engine.replays_skipped();
        for delivery in batch {
            match self.keyring.open_event(&delivery.record.payload) {
                Ok((event, origin)) => {
                    let engine = &mut self.engine;
                    // A panic is a bug on one event's path: the state it leaves is at worst
                    // one event's update short, which beats a consumer that stops for good.
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        engine.evaluate(&event, &origin)
                    }));
                    let Ok(fired) = outcome else {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            partition = delivery.partition,
                            offset = delivery.offset,
                            key = %delivery.record.key,
                            "rules: evaluating an event panicked; event skipped"
                        );
                        continue;
                    };
                    for alert in fired {
                        tracing::warn!(rule = %alert.rule_id, title = %alert.title, group = %alert.group_key, "alert");
                        alerts.push(alert);
                    }
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(reason = %reason, key = %delivery.record.key, "rules: refused message");
                    let record = &delivery.record;
                    let id = EventId::of_message(&record.key, &record.payload);
                    alerts.extend(self.engine.envelope_rejected(
                        &record.key,
                        id,
                        chrono::Utc::now(),
                    ));
                }
            }
        }
        self.stats.replays_skipped.fetch_add(
            self.engine.replays_skipped().saturating_sub(replays),
            Ordering::Relaxed,
        );
        self.stats
            .groups_evicted
            .store(self.engine.groups_evicted(), Ordering::Relaxed);
    }

    /// Stores new and revised alerts with the engine state in one transaction, then
    /// acknowledges what they cover.
    async fn save(
        &mut self,
        subscription: &mut dyn Subscription,
        alerts: &mut Vec<Alert>,
        positions: &mut PartitionPositions,
    ) -> Result<(), RulesConsumerError> {
        alerts.extend(self.engine.flush());
        if alerts.is_empty() && !positions.has_pending() {
            return Ok(());
        }
        let batch = Arc::new(std::mem::take(alerts));
        let n = batch.len() as u64;
        let store = Arc::clone(&self.store);
        let state = self.engine.state().clone();
        let stored = Arc::clone(&batch);
        tokio::task::spawn_blocking(move || store.commit(&stored, &state)).await??;
        self.stats.alerts.fetch_add(n, Ordering::Relaxed);
        if let Some(topic) = &self.alert_topic {
            let records = batch
                .iter()
                .map(|a| match serde_json::to_vec(a) {
                    Ok(body) => Ok(Record::new(a.id.clone(), body)),
                    Err(source) => Err(RulesConsumerError::EncodeAlert {
                        id: a.id.clone(),
                        source,
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            topic.publish(records).await?.await?;
        }
        positions.ack(subscription).await?;
        // Only now can the bus no longer bring these events back.
        self.engine.acknowledged();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_bus::{BusLimits, EmbeddedBus};
    use vigil_event::{Origin, SourceKind};

    use crate::{AlertConfig, Ruleset, WatchLists, ENVELOPE_REJECTED};

    #[tokio::test]
    async fn a_forged_message_raises_one_alert_per_source_and_reaches_the_alert_topic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(AlertStore::open(&dir.path().join("alerts.redb")).unwrap());
        let keyring = Keyring::new([("k".to_owned(), b"0123456789abcdef".to_vec())]).unwrap();
        let engine = RulesEngine::new(
            Ruleset::builtin().unwrap(),
            WatchLists::new(),
            AlertConfig::default(),
        );
        let alert_topic = EmbeddedBus::new(["siem"], BusLimits::default()).unwrap();
        let mut siem = alert_topic.subscribe("siem").await.unwrap();
        // The alert topic's receipts resolve once read: read it while the rules run.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(batch) = siem.next_batch(100).await {
                let last = batch.last().unwrap().offset;
                siem.ack(0, last).await.unwrap();
                got.extend(batch);
            }
            got
        });
        let consumer = RulesConsumer::new(engine, Arc::clone(&store), keyring.clone())
            .with_alert_topic(Arc::new(alert_topic.clone()));
        let stats = consumer.stats();

        let origin = Origin::new("n1", "main", SourceKind::File);
        let line = br#"{"time":"2026-11-22T16:33:32Z","type":"request","request":{"id":"r1","path":"secret/data/x"}}"#;
        let records = vec![
            Record::new(origin.key(), keyring.seal(&origin, line).unwrap()),
            Record::new("evil", line.to_vec()),
            Record::new("evil", b"not even json".to_vec()),
        ];
        let bus = EmbeddedBus::new(["rules"], BusLimits::default()).unwrap();
        let subscription = bus.subscribe("rules").await.unwrap();
        let receipt = bus.publish(records).await.unwrap();
        let task = tokio::spawn(consumer.run(subscription, CancellationToken::new()));
        receipt.await.unwrap();
        bus.close();
        task.await.unwrap().unwrap();
        alert_topic.close();

        assert_eq!(stats.events.load(Ordering::Relaxed), 1);
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 2);
        let rejected: Vec<Alert> = store
            .alerts(100)
            .unwrap()
            .into_iter()
            .filter(|a| a.rule_id == ENVELOPE_REJECTED)
            .collect();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].group_key, "evil");
        assert_eq!(rejected[0].count, 2);

        let published = reader.await.unwrap();
        let alerts: Vec<Alert> = published
            .iter()
            .map(|d| serde_json::from_slice(&d.record.payload).unwrap())
            .collect();
        assert!(alerts
            .iter()
            .any(|a| a.rule_id == ENVELOPE_REJECTED && a.id == published[0].record.key));
    }
}
