//! The Kafka bus as the separate roles use it (`vigil collect`, `index`, `rules`): settings
//! from `[kafka]` and `--kafka`, topics created at start-up when allowed.

use std::time::Duration;

use anyhow::{bail, Context};
use vigil_bus::{create_topics, KafkaConfig, KafkaTransport, TopicSpec};

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
        Ok(KafkaBus {
            alerts: audit.with_topic(settings.alerts_topic.clone()),
            quarantine: audit.with_topic(settings.quarantine_topic.clone()),
            audit,
            brokers,
        })
    }
}
