//! [`RulesConsumer`]: the rules engine as a consumer group of the bus. It verifies each
//! envelope, evaluates the event, stores the alerts and the engine's state in one
//! transaction, and only then acknowledges, so that a crash replays at most the batch in
//! flight (and alerts keep their ids, so a replay revises rather than duplicates).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_bus::{BusError, Subscription};
use vigil_event::{AuditEvent, Keyring};

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
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<RulesStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown` or until the bus closes.
    pub async fn run(
        mut self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<(), RulesConsumerError> {
        let mut flush = tokio::time::interval(self.flush_interval);
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = flush.tick() => {
                    // Revisions of alerts that kept growing since they fired.
                    let revised = self.engine.flush();
                    if !revised.is_empty() {
                        self.store.commit(&revised, self.engine.state())?;
                        self.stats.alerts.fetch_add(revised.len() as u64, Ordering::Relaxed);
                    }
                    continue;
                }
                batch = subscription.next_batch(4096) => match batch {
                    Ok(batch) => batch,
                    Err(BusError::Closed) => break,
                    Err(e) => return Err(e.into()),
                },
            };
            let mut alerts = Vec::new();
            let mut last = Vec::new();
            for delivery in &batch {
                match last.iter_mut().find(|(p, _)| *p == delivery.partition) {
                    Some((_, o)) => *o = delivery.offset,
                    None => last.push((delivery.partition, delivery.offset)),
                }
                let envelope = match self.keyring.open(&delivery.record.payload) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, key = %delivery.record.key, "rules: refused message");
                        continue;
                    }
                };
                match AuditEvent::parse(&envelope.raw) {
                    Ok(event) => {
                        alerts.extend(self.engine.evaluate(&event, &envelope.origin));
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "rules: signed message is not an audit entry");
                    }
                }
            }
            for alert in &alerts {
                tracing::warn!(rule = %alert.rule_id, title = %alert.title, group = %alert.group_key, count = alert.count, "alert");
            }
            let store = Arc::clone(&self.store);
            let state = self.engine.state().clone();
            let n = alerts.len() as u64;
            tokio::task::spawn_blocking(move || store.commit(&alerts, &state))
                .await
                .map_err(|e| StoreError::Db(format!("store task: {e}")))??;
            self.stats.alerts.fetch_add(n, Ordering::Relaxed);
            for (partition, offset) in last {
                subscription.ack(partition, offset).await?;
            }
        }
        let revised = self.engine.flush();
        self.store.commit(&revised, self.engine.state())?;
        Ok(())
    }
}
