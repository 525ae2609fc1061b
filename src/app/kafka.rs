//! The Kafka bus as the separate roles use it (`vigil collect`, `index`, `rules`): settings
//! from `[kafka]` and `--kafka`, topics created at start-up when allowed.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use vigil_bus::{create_topics, KafkaConfig, KafkaTransport, TopicSpec};

use crate::config::Config;

/// Consumer group of `vigil index`.
pub const INDEXER_GROUP: &str = "vigil-indexer";
/// Consumer group of `vigil rules`.
pub const RULES_GROUP: &str = "vigil-rules";

/// The flags every Kafka role takes.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…] (default: kafka.brokers, VIGIL_KAFKA_BROKERS).
    #[arg(long = "kafka", value_name = "BROKERS")]
    pub brokers: Option<String>,
    /// Serve `/metrics` and `/healthz` on this address (none by default).
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// Serves `/metrics` and `/healthz` of `sources` on `addr` until `shutdown`, when asked to.
pub async fn spawn_metrics(
    addr: Option<&str>,
    sources: Vec<std::sync::Arc<dyn vigil_dashboards::MetricsSource>>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: listening on {addr}"))?;
    eprintln!(
        "vigil: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    let router = vigil_dashboards::metrics_router(std::sync::Arc::new(
        vigil_dashboards::Metrics::new(sources),
    ));
    let shutdown = shutdown.clone();
    Ok(Some(tokio::spawn(async move {
        vigil_dashboards::serve_router(listener, router, shutdown)
            .await
            .context("metrics server")
    })))
}

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
    pub async fn connect(config: &Config, args: &RoleArgs) -> anyhow::Result<KafkaBus> {
        let settings = &config.kafka;
        let brokers = args
            .brokers
            .clone()
            .unwrap_or_else(|| settings.brokers.clone())
            .trim()
            .to_owned();
        if brokers.is_empty() {
            bail!("no Kafka brokers: pass --kafka HOST:PORT or set kafka.brokers");
        }
        let mut kafka = KafkaConfig::new(&brokers);
        kafka.client_id = format!("vigil-{}", config.node_name);
        kafka.instance_id = Some(if settings.instance_id.is_empty() {
            config.node_name.clone()
        } else {
            settings.instance_id.clone()
        });
        kafka.compression = settings.compression.clone();
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
