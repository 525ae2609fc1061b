//! The index stage: the Tantivy index in the data dir, its consumer and its retention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_bus::Subscription;
use vigil_indexer::{EventIndex, IndexConfig, IndexConsumer, SearchLimits};

use crate::data_dir::DataDir;
use crate::settings::Settings;
use crate::tasks::TaskSet;

/// The search limits the settings ask for.
pub fn search_limits(settings: &Settings) -> SearchLimits {
    SearchLimits {
        max_hits: settings.api.max_results,
        query_timeout: Duration::from_millis(settings.api.query_timeout_ms),
        max_concurrent_searches: settings.api.concurrent_searches(),
        ..SearchLimits::default()
    }
}

/// The index in the data dir, opened for writing.
pub fn open_index(settings: &Settings, data_dir: &DataDir) -> anyhow::Result<Arc<EventIndex>> {
    let dir = data_dir.index();
    let index_config = IndexConfig {
        writer_memory_bytes: settings.index.writer_memory_mb * 1024 * 1024,
        limits: search_limits(settings),
        ..IndexConfig::default()
    };
    let index = EventIndex::open(&dir, index_config)
        .with_context(|| format!("opening index {}", dir.display()))?;
    Ok(Arc::new(index))
}

/// A consumer of the bus into `index`, committing as the settings say.
pub fn consumer(
    settings: &Settings,
    index: &Arc<EventIndex>,
    keyring: &vigil_event::Keyring,
) -> IndexConsumer {
    IndexConsumer::new(
        Arc::clone(index),
        keyring.clone(),
        Duration::from_millis(settings.index.commit_interval_ms),
    )
}

/// Spawns `consumer` on `subscription`, and the retention of `index`, into `tasks`. The
/// indexer's health reports its last commit, and `lag()` as its work left (0 when unknown):
/// with work left and no commit for a while, `/readyz` says it is stuck.
pub fn spawn(
    settings: &Settings,
    index: &Arc<EventIndex>,
    consumer: IndexConsumer,
    subscription: Box<dyn Subscription>,
    lag: impl Fn() -> u64 + Send + 'static,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) {
    let (token, stats) = (shutdown.clone(), consumer.stats());
    let stage = tasks.spawn("indexer", async move {
        consumer.run(subscription, token).await.context("indexer")
    });
    let token = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while tokio::select! {
            _ = token.cancelled() => false,
            _ = tick.tick() => true,
        } {
            let ms = stats.last_commit_unix_ms.load(Ordering::Relaxed);
            let last = (ms > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(ms as i64))
                .flatten();
            stage.report_progress(last, lag());
        }
    });
    let (index, days, token) = (
        Arc::clone(index),
        settings.index.retention_days,
        shutdown.clone(),
    );
    tasks.spawn("retention", async move {
        vigil_indexer::run_retention(index, days, token).await;
        Ok(())
    });
}
