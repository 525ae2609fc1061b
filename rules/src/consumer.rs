//! [`RulesConsumer`]: the rules engine as a consumer group of the bus. It verifies each
//! envelope, evaluates the event, stores the alerts and the engine's state in one
//! transaction, and only then acknowledges, so that a crash replays at most the batch in
//! flight (and alerts keep their ids, so a replay revises rather than duplicates).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusError, Delivery, Offset, PartitionId, Record, Subscription, Transport};
use vigil_event::{AuditEvent, EventId, Keyring};

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
    /// A consumer resuming from the state in `store`.
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
        let mut acks: Vec<(PartitionId, Offset)> = Vec::new();
        let mut last_save = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                batch = subscription.next_batch(4096) => match batch {
                    Ok(batch) => self.evaluate(&batch, &mut alerts, &mut acks),
                    Err(BusError::Closed) => break,
                    Err(e) => return Err(e.into()),
                },
            }
            if last_save.elapsed() >= self.flush_interval {
                self.save(&mut *subscription, &mut alerts, &mut acks)
                    .await?;
                last_save = Instant::now();
            }
        }
        self.save(&mut *subscription, &mut alerts, &mut acks).await
    }

    fn evaluate(
        &mut self,
        batch: &[Delivery],
        alerts: &mut Vec<Alert>,
        acks: &mut Vec<(PartitionId, Offset)>,
    ) {
        for delivery in batch {
            match acks.iter_mut().find(|(p, _)| *p == delivery.partition) {
                Some((_, o)) => *o = delivery.offset,
                None => acks.push((delivery.partition, delivery.offset)),
            }
            let opened = self
                .keyring
                .open(&delivery.record.payload)
                .map_err(|e| e.to_string())
                .and_then(|envelope| {
                    AuditEvent::parse(&envelope.raw)
                        .map(|event| (event, envelope.origin))
                        .map_err(|e| format!("signed message is not an audit entry: {e}"))
                });
            match opened {
                Ok((event, origin)) => {
                    for alert in self.engine.evaluate(&event, &origin) {
                        tracing::warn!(rule = %alert.rule_id, title = %alert.title, group = %alert.group_key, "alert");
                        alerts.push(alert);
                    }
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%reason, key = %delivery.record.key, "rules: refused message");
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
    }

    /// Stores new and revised alerts with the engine state in one transaction, then
    /// acknowledges what they cover.
    async fn save(
        &mut self,
        subscription: &mut dyn Subscription,
        alerts: &mut Vec<Alert>,
        acks: &mut Vec<(PartitionId, Offset)>,
    ) -> Result<(), RulesConsumerError> {
        alerts.extend(self.engine.flush());
        if alerts.is_empty() && acks.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(std::mem::take(alerts));
        let n = batch.len() as u64;
        let store = Arc::clone(&self.store);
        let state = self.engine.state().clone();
        let stored = Arc::clone(&batch);
        tokio::task::spawn_blocking(move || store.commit(&stored, &state))
            .await
            .map_err(|e| StoreError::Db(format!("store task: {e}")))??;
        self.stats.alerts.fetch_add(n, Ordering::Relaxed);
        if let Some(topic) = &self.alert_topic {
            let records = batch
                .iter()
                .map(|a| serde_json::to_vec(a).map(|body| Record::new(a.id.clone(), body)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Db(format!("encoding an alert: {e}")))?;
            topic.publish(records).await?.await?;
        }
        for (partition, offset) in acks.drain(..) {
            subscription.ack(partition, offset).await?;
        }
        Ok(())
    }
}
