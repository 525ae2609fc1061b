//! The Kafka bus as the separate roles use it (`vigil collect`, `index`, `rules`): settings
//! from `[kafka]` and `--kafka`, topics created at start-up when allowed.

use std::time::Duration;

use anyhow::{bail, Context};
use vigil_bus::{create_topics, BusError, KafkaConfig, KafkaTransport, TopicSpec};

use crate::settings::{RoleArgs, Settings};

/// The three topics of a deployment, over one producer.
pub struct KafkaBus {
    /// Signed audit events.
    pub audit: KafkaTransport,
    /// Alert revisions.
    pub alerts: KafkaTransport,
    /// Messages consumers refused.
    pub quarantine: KafkaTransport,
    /// Where they are, for start-up lines.
    pub brokers: String,
}

impl KafkaBus {
    /// The largest envelope the collector may publish: the producer's record limit less
    /// room for the key and librdkafka's framing.
    pub fn max_envelope_bytes(settings: &Settings) -> usize {
        match settings.collector.max_envelope_bytes {
            0 => settings.kafka.max_message_bytes.saturating_sub(1024),
            n => n.min(settings.kafka.max_message_bytes.saturating_sub(1024)),
        }
    }

    /// What `/metrics` reports of the Kafka client: refused records and stall re-joins.
    pub fn metrics(&self) -> std::sync::Arc<dyn vigil_dashboards::MetricsSource> {
        std::sync::Arc::new(crate::app::metrics::KafkaMetrics(self.audit.stats()))
    }
}

impl KafkaBus {
    /// Connects to the configured brokers (`--kafka` first) and creates missing topics when
    /// `kafka.create_topics` allows. A broker that cannot be reached to create topics is a
    /// warning, not an error: the collector must start and spool while Kafka is away.
    pub async fn connect(config: &Settings, args: &RoleArgs) -> anyhow::Result<KafkaBus> {
        let settings = &config.kafka;
        let brokers = args
            .brokers
            .clone()
            .or_else(|| settings.brokers.clone())
            .unwrap_or_default()
            .trim()
            .to_owned();
        if brokers.is_empty() {
            bail!("no Kafka brokers: pass --kafka HOST:PORT or set kafka.brokers");
        }
        let mut kafka = KafkaConfig::new(&brokers);
        kafka.client_id = format!("vigil-{}", config.node_name);
        kafka.instance_id = Some(
            settings
                .instance_id
                .clone()
                .unwrap_or_else(|| config.node_name.clone()),
        );
        kafka.compression = settings.compression.as_str().to_owned();
        kafka.properties = settings.properties.clone();
        kafka.max_message_bytes = settings.max_message_bytes;
        kafka.stall_timeout = Duration::from_secs(settings.stall_timeout_secs);
        if settings.create_topics {
            let topics = [
                settings.topic.as_str(),
                &settings.alerts_topic,
                &settings.quarantine_topic,
            ];
            let spec = TopicSpec {
                partitions: settings.partitions,
                replication: settings.replication,
            };
            match tokio::time::timeout(
                Duration::from_secs(15),
                create_topics(&kafka, &topics, spec),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!("kafka: topics not created ({e}); using them as they are")
                }
                Err(_) => tracing::warn!(
                    "kafka: brokers {brokers} did not answer within 15 s; topics not created"
                ),
            }
        }
        let audit = KafkaTransport::new(kafka, settings.topic.clone()).context("Kafka producer")?;
        // A topic that refuses what the producer may send would quarantine valid events:
        // refuse to start. Brokers that cannot be asked are a warning, as above.
        match tokio::time::timeout(Duration::from_secs(15), audit.check_topic_limit()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => tracing::warn!(
                "kafka: topic {} reports no max.message.bytes; records up to {} bytes assumed accepted",
                settings.topic,
                settings.max_message_bytes
            ),
            Ok(Err(e @ BusError::TopicMessageLimitTooSmall { .. })) => {
                return Err(e).context("kafka.max_message_bytes")
            }
            Ok(Err(e)) => tracing::warn!("kafka: topic limit not checked ({e})"),
            Err(_) => tracing::warn!(
                "kafka: brokers {brokers} did not answer within 15 s; topic limit not checked"
            ),
        }
        Ok(KafkaBus {
            alerts: audit.with_topic(settings.alerts_topic.clone()),
            quarantine: audit.with_topic(settings.quarantine_topic.clone()),
            audit,
            brokers,
        })
    }
}
