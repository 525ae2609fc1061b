//! [`KafkaTransport`]: the bus between separate processes, over Kafka with librdkafka.
//!
//! The producer is idempotent with `acks=all`, so a [`DeliveryReceipt`] resolves once every
//! in-sync replica has the batch, and retries never duplicate or reorder a partition. Records
//! are keyed by source (node and device): each device keeps its order on one partition. The
//! message value is the signed envelope and nothing else; no record headers, so that the
//! bytes stay verifiable wherever they travel and brokers without header support still work.
//!
//! A consumer group member never commits on its own (`enable.auto.commit=false`): it commits
//! what [`Subscription::ack`] names, which callers do after their own durable commit. A
//! consumer that keeps its offsets with its data (the indexer, in its commit payload) passes
//! them to [`Transport::subscribe_at`] and starts there whenever the partition is assigned to
//! it, whatever the group's committed offset says. Membership is static when
//! [`KafkaConfig::instance_id`] is set (`group.instance.id`): a member killed and restarted
//! under the same id takes its partitions back without waiting for a session timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};

use crate::error::BusError;
use crate::receipt::DeliveryReceipt;
use crate::record::{Delivery, Offset, PartitionId, Record};
use crate::transport::{Subscription, Transport};

/// Settings of a Kafka bus. Every librdkafka property can be passed through
/// [`properties`](Self::properties) (TLS: `security.protocol`, `ssl.ca.location`, …; SASL:
/// `sasl.mechanism`, `sasl.username`, …); those win over Vigil's defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// `client.id`, shown in broker logs: the node or pod name.
    pub client_id: String,
    /// Static membership (`group.instance.id`, suffixed with the group's name), usually the
    /// pod name of a StatefulSet. `None` joins as a dynamic member.
    pub instance_id: Option<String>,
    /// Producer compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Consumer session timeout: how long the group waits for a silent member.
    pub session_timeout: Duration,
    /// Extra librdkafka properties, passed as they are.
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    // Properties carry SASL passwords and key locations: show their names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("instance_id", &self.instance_id)
            .field("compression", &self.compression)
            .field("session_timeout", &self.session_timeout)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaConfig {
    /// Defaults for the given brokers: lz4, a 10 s session, no static membership.
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "vigil".to_owned(),
            instance_id: None,
            compression: "lz4".to_owned(),
            session_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        c
    }

    fn with_properties(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// How topics are created when Vigil may create them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions of a new topic.
    pub partitions: u32,
    /// Replication factor of a new topic.
    pub replication: u32,
}

/// Names what the Kafka client was doing when it failed.
fn kafka_error(during: &'static str) -> impl FnOnce(KafkaError) -> BusError {
    move |source| BusError::Kafka { during, source }
}

/// Creates the named topics that do not exist yet. A topic that exists is fine; a broker
/// that refuses (no permission to create, say) is reported so that the caller can go on
/// with topics made by an administrator.
pub async fn create_topics(
    config: &KafkaConfig,
    topics: &[&str],
    spec: TopicSpec,
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = config
        .with_properties(config.client())
        .create()
        .map_err(kafka_error("creating the admin client"))?;
    let out_of_range = |what, value| BusError::TopicSpecOutOfRange { what, value };
    let partitions =
        i32::try_from(spec.partitions).map_err(|_| out_of_range("partitions", spec.partitions))?;
    let replication = i32::try_from(spec.replication)
        .map_err(|_| out_of_range("replication", spec.replication))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(kafka_error("creating topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(BusError::TopicNotCreated { topic, code }),
        }
    }
    Ok(())
}

/// A Kafka topic as a [`Transport`]. Cloning is cheap; [`with_topic`](Self::with_topic)
/// shares the producer with another topic.
#[derive(Clone)]
pub struct KafkaTransport {
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// A transport for `topic`. Creating it does not contact the brokers: a broker that is
    /// down delays deliveries (they queue in librdkafka and in the producer's spool) rather
    /// than failing start-up.
    pub fn new(config: KafkaConfig, topic: impl Into<String>) -> Result<KafkaTransport, BusError> {
        let mut c = config.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            .set("linger.ms", "5")
            // Never give up on a message: while the brokers are away, deliveries wait and
            // the collector stops reading once its in-flight bound is reached; its spool
            // (or the audit file) holds the rest. A timed-out message would stop it.
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.kbytes", "65536");
        let producer: FutureProducer = config
            .with_properties(c)
            .create()
            .map_err(kafka_error("creating the producer"))?;
        Ok(KafkaTransport {
            config: Arc::new(config),
            producer,
            topic: topic.into(),
        })
    }

    /// The same brokers and producer, another topic.
    pub fn with_topic(&self, topic: impl Into<String>) -> KafkaTransport {
        KafkaTransport {
            topic: topic.into(),
            ..self.clone()
        }
    }

    /// The topic this transport publishes to and subscribes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Joins `group`. With `resume` (even empty), the subscription keeps its own positions:
    /// those given, then every acknowledged one, and starts assigned partitions there.
    async fn join(
        &self,
        group: &str,
        resume: Option<&[(PartitionId, Offset)]>,
    ) -> Result<KafkaSubscription, BusError> {
        let mut c = self.config.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.config.session_timeout.as_millis().to_string(),
            );
        if let Some(id) = &self.config.instance_id {
            // One process may be a member of several groups (and several roles may share a
            // node name): the id names the member within its group, so make it per group.
            c.set("group.instance.id", format!("{id}-{group}"));
        }
        let own_positions = resume.is_some();
        let positions = Arc::new(Mutex::new(
            resume
                .unwrap_or_default()
                .iter()
                .copied()
                .collect::<HashMap<_, _>>(),
        ));
        let context = ResumeContext {
            topic: self.topic.clone(),
            positions: Arc::clone(&positions),
        };
        let consumer: StreamConsumer<ResumeContext> = self
            .config
            .with_properties(c)
            .create_with_context(context)
            .map_err(kafka_error("creating the consumer"))?;
        consumer
            .subscribe(&[&self.topic])
            .map_err(kafka_error("subscribing"))?;
        Ok(KafkaSubscription {
            consumer: Arc::new(consumer),
            group: group.to_owned(),
            topic: self.topic.clone(),
            positions,
            own_positions,
        })
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError> {
        let n = records.len();
        if n == 0 {
            return Ok(DeliveryReceipt::resolved(0, Ok(())));
        }
        let mut deliveries = Vec::with_capacity(n);
        for record in &records {
            loop {
                let message = FutureRecord::to(&self.topic)
                    .key(record.key.as_bytes())
                    .payload(&record.payload);
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    // librdkafka's queue is full: wait for deliveries to make room.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => return Err(kafka_error("producing a record")(e)),
                }
            }
        }
        let (resolver, receipt) = DeliveryReceipt::pending(n);
        tokio::spawn(async move {
            let mut outcome = Ok(());
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        outcome = Err(kafka_error("delivering a record")(e));
                        break;
                    }
                    Err(_canceled) => {
                        outcome = Err(BusError::Closed);
                        break;
                    }
                }
            }
            resolver.resolve(outcome);
        });
        Ok(receipt)
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.join(group, None).await?))
    }

    async fn subscribe_at(
        &self,
        group: &str,
        resume: &[(PartitionId, Offset)],
    ) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.join(group, Some(resume)).await?))
    }
}

/// Starts assigned partitions at the consumer's own positions, where it has them.
struct ResumeContext {
    topic: String,
    /// Next offset to read per partition: given at subscription, moved by every ack.
    positions: Arc<Mutex<HashMap<PartitionId, Offset>>>,
}

impl ClientContext for ResumeContext {}

impl ConsumerContext for ResumeContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resume: Vec<(i32, Offset)> = {
                    let positions = self
                        .positions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    tpl.elements_for_topic(&self.topic)
                        .iter()
                        .filter_map(|e| {
                            let p = PartitionId::try_from(e.partition()).ok()?;
                            positions.get(&p).map(|&next| (e.partition(), next))
                        })
                        .collect()
                };
                for (partition, next) in resume {
                    let offset = KafkaOffset::Offset(next as i64);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, partition, offset) {
                        tracing::warn!(partition, error = %e, "kafka: cannot resume");
                    }
                }
                tracing::info!(topic = %self.topic, partitions = ?partition_ids(tpl), "kafka: partitions assigned");
                consumer.assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(topic = %self.topic, partitions = ?partition_ids(tpl), "kafka: partitions revoked");
                consumer.unassign()
            }
            other => {
                tracing::warn!(error = ?other, "kafka: rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "kafka: applying a rebalance failed");
        }
    }
}

fn partition_ids(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// A member of a consumer group of a Kafka topic.
pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer<ResumeContext>>,
    group: String,
    topic: String,
    positions: Arc<Mutex<HashMap<PartitionId, Offset>>>,
    /// Whether acks move `positions` (a consumer keeping its own offsets). A group member
    /// without them follows the group's committed offsets when a partition comes back,
    /// so it never re-reads what another member processed meanwhile.
    own_positions: bool,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn delivery_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<Delivery> {
    let partition = PartitionId::try_from(message.partition()).ok()?;
    let offset = Offset::try_from(message.offset()).ok()?;
    Some(Delivery {
        partition,
        offset,
        record: Record {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            payload: message.payload().unwrap_or_default().to_vec(),
        },
    })
}

#[async_trait]
impl Subscription for KafkaSubscription {
    fn group(&self) -> &str {
        &self.group
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            match self.consumer.recv().await {
                Ok(message) => batch.extend(delivery_of(&message)),
                // Broker and network trouble is retried inside librdkafka; what surfaces
                // here is worth a line, not the end of the consumer.
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "kafka: receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        while batch.len() < max.max(1) {
            match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.extend(delivery_of(&message)),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self, partition: PartitionId, offset: Offset) -> Result<(), BusError> {
        let next = offset + 1;
        if self.own_positions {
            self.positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(partition, next);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            i32::try_from(partition).map_err(|_| BusError::UnknownPartition(partition))?,
            KafkaOffset::Offset(next as i64),
        )
        .map_err(kafka_error("naming the offset to commit"))?;
        let consumer = Arc::clone(&self.consumer);
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| BusError::TaskFailed {
                    task: "offset commit",
                    reason: e.to_string(),
                })?;
        if let Err(e) = committed {
            // The partition may have moved to another member meanwhile; it re-reads from the
            // group's last committed offset, and consumers are idempotent. Say so and go on.
            tracing::warn!(group = %self.group, partition, offset, error = %e, "kafka: offset commit failed; records may be delivered again");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_properties_but_never_their_values() {
        let mut config = KafkaConfig::new("b:9092");
        config
            .properties
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        let shown = format!("{config:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
