//! The embedded pipeline of `vigil run` (and of `vigil bench`, which measures it): sources →
//! in-process bus → index, and the rules engine as the bus's second consumer group.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vigil_bus::{BusLimits, EmbeddedBus, Transport};
use vigil_dashboards::MetricsSource;
use vigil_indexer::{EventIndex, IndexStats};

use crate::app::rules::RulesStage;
use crate::app::sources::Sources;
use crate::app::{index, keyring, metrics, rules, sources, INDEXER_GROUP, RULES_GROUP};
use crate::data_dir::DataDir;
use crate::settings::Settings;
use crate::tasks::TaskSet;

/// The running embedded pipeline.
pub struct EmbeddedPipeline {
    /// The index, written by the pipeline and searched by the API.
    pub index: Arc<EventIndex>,
    /// The indexer's counters.
    pub index_stats: Arc<IndexStats>,
    /// The rules engine, when `rules.enabled`.
    pub rules: Option<RulesStage>,
    /// The sources.
    pub sources: Sources,
}

impl EmbeddedPipeline {
    /// Opens the index and starts the rules engine, the indexer and every source into `tasks`.
    pub async fn start(
        settings: &Settings,
        data_dir: &DataDir,
        tasks: &mut TaskSet,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<EmbeddedPipeline> {
        let keyring = keyring(settings, data_dir)?;
        let index = index::open_index(settings, data_dir)?;
        let groups: &[&str] = if settings.rules.enabled {
            &[INDEXER_GROUP, RULES_GROUP]
        } else {
            &[INDEXER_GROUP]
        };
        let bus = EmbeddedBus::new(groups.iter().copied(), BusLimits::default())?;
        let transport: Arc<dyn Transport> = Arc::new(bus);
        let rules = match settings.rules.enabled {
            true => Some(rules::spawn(
                settings,
                data_dir,
                transport.subscribe(RULES_GROUP).await?,
                None,
                &keyring,
                tasks,
                shutdown,
            )?),
            false => None,
        };
        let consumer = index::consumer(settings, &index, &keyring);
        let index_stats = consumer.stats();
        let subscription = transport.subscribe(INDEXER_GROUP).await?;
        // The embedded bus takes any size: leave room for a line of `max_line_bytes` and the
        // envelope around it (origin, findings, redacted tokens longer than the plaintext).
        let max_envelope = match settings.collector.max_envelope_bytes {
            0 => settings.collector.max_line_bytes.saturating_add(256 * 1024),
            n => n,
        };
        let sources = sources::spawn(
            settings,
            data_dir,
            transport,
            max_envelope,
            &keyring,
            tasks,
            shutdown,
        )
        .await?;
        // The indexer's work left: what the collectors have read past their checkpoints.
        let collectors: Vec<_> = sources
            .metrics
            .collectors
            .iter()
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let lag = move || {
            collectors
                .iter()
                .map(|s| s.lag_bytes.load(std::sync::atomic::Ordering::Relaxed))
                .sum()
        };
        index::spawn(
            settings,
            &index,
            consumer,
            subscription,
            lag,
            tasks,
            shutdown,
        );
        Ok(EmbeddedPipeline {
            index,
            index_stats,
            rules,
            sources,
        })
    }

    /// What `/metrics` reports of the pipeline.
    pub fn metrics(&mut self) -> Vec<Arc<dyn MetricsSource>> {
        let mut all: Vec<Arc<dyn MetricsSource>> = vec![
            Arc::new(std::mem::take(&mut self.sources.metrics)),
            Arc::new(metrics::IndexMetrics(Arc::clone(&self.index_stats))),
        ];
        if let Some(rules) = &self.rules {
            all.push(Arc::new(metrics::RulesMetrics(
                Arc::clone(&rules.stats),
                rules.notify.clone(),
            )));
        }
        all
    }
}
