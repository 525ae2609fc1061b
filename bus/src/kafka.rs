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
//!
//! Limits are agreed, not discovered: the producer sends records (key and payload) of up to
//! [`KafkaConfig::max_message_bytes`] (librdkafka's `message.max.bytes`) and
//! [`KafkaTransport::check_topic_limit`] verifies at start-up that the topic accepts that
//! plus framing. A record the producer or the broker refuses for good never stops a
//! producer: its receipt names it ([`Delivered::refused`]) for the producer to quarantine.
//!
//! A consumer that holds partitions with records left to read but receives nothing for
//! [`KafkaConfig::stall_timeout`] is stuck (a broker can assign partitions and never feed
//! them): it leaves and rejoins the group with a fresh client, logs it and counts it in
//! [`KafkaStats`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};

use crate::error::BusError;
use crate::error::RefusalReason;
use crate::receipt::{Delivered, DeliveryReceipt, Refusal};
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
    /// Largest record (key and payload) the producer sends, librdkafka's
    /// `message.max.bytes`: a larger one is refused without being sent. The topic must accept
    /// this plus framing ([`KafkaTransport::check_topic_limit`]); producers keep their records
    /// under it (the collector's `max_envelope_bytes`). Default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// How long a consumer holding partitions with records left to read may receive nothing
    /// before it rejoins the group with a fresh client. Default [`DEFAULT_STALL_TIMEOUT`].
    pub stall_timeout: Duration,
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
            .field("max_message_bytes", &self.max_message_bytes)
            .field("stall_timeout", &self.stall_timeout)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// [`KafkaConfig::max_message_bytes`] by default: librdkafka's own default, which with its
/// framing fits Kafka's default topic limit (1 048 588 bytes).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// [`KafkaConfig::stall_timeout`] by default.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Kafka's default `max.message.bytes` of a topic (broker `message.max.bytes`).
const KAFKA_DEFAULT_TOPIC_LIMIT: usize = 1_048_588;

impl KafkaConfig {
    /// Defaults for the given brokers: lz4, a 10 s session, no static membership, records
    /// up to [`DEFAULT_MAX_MESSAGE_BYTES`], a stall after [`DEFAULT_STALL_TIMEOUT`].
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "vigil".to_owned(),
            instance_id: None,
            compression: "lz4".to_owned(),
            session_timeout: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            properties: BTreeMap::new(),
        }
    }

    /// What a topic's `max.message.bytes` must be for every record the producer may send:
    /// [`max_message_bytes`](Self::max_message_bytes) plus the record batch's framing and
    /// what compression can add to data it cannot shrink (snappy up to a sixth, the others
    /// under a hundredth).
    pub fn topic_limit_needed(&self) -> usize {
        let n = self.max_message_bytes;
        let expansion = if self.compression.eq_ignore_ascii_case("snappy") {
            n / 6
        } else {
            n / 100
        };
        n.saturating_add(expansion).saturating_add(1024)
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
    // A topic made here accepts what the producer may send; Kafka's default is kept when it
    // is enough, so that an administrator's broker-wide setting still applies.
    let needed = config.topic_limit_needed();
    let limit = (needed > KAFKA_DEFAULT_TOPIC_LIMIT).then(|| needed.to_string());
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
            match &limit {
                Some(limit) => topic.set("max.message.bytes", limit),
                None => topic,
            }
        })
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

/// Counters of a [`KafkaTransport`] and every subscription made from it (and from its
/// [`with_topic`](KafkaTransport::with_topic) siblings), for metrics.
#[derive(Debug, Default)]
pub struct KafkaStats {
    stall_rejoins: AtomicU64,
    records_refused: AtomicU64,
}

impl KafkaStats {
    /// Times a consumer found itself stalled (partitions with records left, nothing received
    /// for the stall timeout) and rejoined its group.
    pub fn stall_rejoins(&self) -> u64 {
        self.stall_rejoins.load(Ordering::Relaxed)
    }

    /// Records refused for good (too large for the producer or refused by the broker) and
    /// reported in a receipt's [`Delivered::refused`].
    pub fn records_refused(&self) -> u64 {
        self.records_refused.load(Ordering::Relaxed)
    }
}

/// A Kafka topic as a [`Transport`]. Cloning is cheap; [`with_topic`](Self::with_topic)
/// shares the producer with another topic.
#[derive(Clone)]
pub struct KafkaTransport {
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
    topic: String,
    stats: Arc<KafkaStats>,
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
            .set("queue.buffering.max.kbytes", "65536")
            // The producer's side of the agreed limit; batches never grow past it either, so
            // that a batch of small records is not refused as a whole by the topic's limit.
            .set("message.max.bytes", config.max_message_bytes.to_string())
            .set("batch.size", config.max_message_bytes.to_string());
        let producer: FutureProducer = config
            .with_properties(c)
            .create()
            .map_err(kafka_error("creating the producer"))?;
        Ok(KafkaTransport {
            config: Arc::new(config),
            producer,
            topic: topic.into(),
            stats: Arc::new(KafkaStats::default()),
        })
    }

    /// The counters shared by this transport, its siblings and their subscriptions.
    pub fn stats(&self) -> Arc<KafkaStats> {
        Arc::clone(&self.stats)
    }

    /// Reads the topic's `max.message.bytes` from the brokers and checks that it accepts
    /// every record the producer may send ([`KafkaConfig::topic_limit_needed`]). Call it at
    /// start-up, after the topic exists: a smaller limit would refuse records the collector
    /// believes valid, so it is an error that says what to raise. Returns the topic's limit,
    /// or `None` when the brokers do not report one (tansu reports only what was set on the
    /// topic): then nothing can be checked, and the caller says so.
    pub async fn check_topic_limit(&self) -> Result<Option<usize>, BusError> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .with_properties(self.config.client())
            .create()
            .map_err(kafka_error("creating the admin client"))?;
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let resource = ResourceSpecifier::Topic(&self.topic);
        let results = admin
            .describe_configs([&resource], &opts)
            .await
            .map_err(kafka_error("describing the topic"))?;
        let not_described = |code| BusError::TopicNotDescribed {
            topic: self.topic.clone(),
            code,
        };
        let described = results
            .into_iter()
            .next()
            .ok_or_else(|| not_described(RDKafkaErrorCode::UnknownTopicOrPartition))?
            .map_err(not_described)?;
        let Some(entry) = described.get("max.message.bytes") else {
            return Ok(None);
        };
        let value = entry.value.clone();
        let topic_limit = value
            .as_deref()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| BusError::TopicLimitUnreadable {
                topic: self.topic.clone(),
                value: value.clone(),
            })?;
        check_limit(&self.config, &self.topic, topic_limit)?;
        Ok(Some(topic_limit))
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
        let client = self.config.with_properties(c);
        let consumer: StreamConsumer<ResumeContext> = client
            .create_with_context(context)
            .map_err(kafka_error("creating the consumer"))?;
        consumer
            .subscribe(&[&self.topic])
            .map_err(kafka_error("subscribing"))?;
        Ok(KafkaSubscription {
            consumer: Arc::new(consumer),
            client,
            group: group.to_owned(),
            topic: self.topic.clone(),
            positions,
            own_positions,
            delivered: HashMap::new(),
            stall_timeout: self.config.stall_timeout,
            stats: Arc::clone(&self.stats),
        })
    }
}

/// The topic's limit against what the producer may send.
fn check_limit(config: &KafkaConfig, topic: &str, topic_limit: usize) -> Result<(), BusError> {
    let needed = config.topic_limit_needed();
    if topic_limit < needed {
        return Err(BusError::TopicMessageLimitTooSmall {
            topic: topic.to_owned(),
            topic_limit,
            max_message_bytes: config.max_message_bytes,
            needed,
        });
    }
    Ok(())
}

/// Whether a produce error is about the record itself, so that no retry can change it: the
/// record is refused, its batch-mates go on. Anything else (authorization, a fatal producer
/// state, an unknown topic) is the transport's failure, not the record's.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::UnsupportedForMessageFormat
            | RDKafkaErrorCode::PolicyViolation
    )
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError> {
        let n = records.len();
        if n == 0 {
            return Ok(DeliveryReceipt::resolved(0, Ok(())));
        }
        let limit = self.config.max_message_bytes;
        let mut refused = Vec::new();
        let mut deliveries = Vec::with_capacity(n);
        for (index, record) in records.iter().enumerate() {
            if record.size() > limit {
                // librdkafka would refuse it too; saying so here keeps the sizes in the reason.
                let reason = RefusalReason::OverProducerLimit {
                    bytes: record.size(),
                    limit,
                };
                refused.push(Refusal { index, reason });
                continue;
            }
            loop {
                let message = FutureRecord::to(&self.topic)
                    .key(record.key.as_bytes())
                    .payload(&record.payload);
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push((index, delivery));
                        break;
                    }
                    // librdkafka's queue is full: wait for deliveries to make room.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((KafkaError::MessageProduction(code), _)) if refused_for_good(code) => {
                        let reason = RefusalReason::Kafka { code };
                        refused.push(Refusal { index, reason });
                        break;
                    }
                    Err((e, _)) => return Err(kafka_error("producing a record")(e)),
                }
            }
        }
        let (resolver, receipt) = DeliveryReceipt::pending(n);
        let (topic, stats) = (self.topic.clone(), Arc::clone(&self.stats));
        tokio::spawn(async move {
            let mut outcome = Ok(());
            for (index, delivery) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((KafkaError::MessageProduction(code), _))) if refused_for_good(code) => {
                        let reason = RefusalReason::Kafka { code };
                        refused.push(Refusal { index, reason });
                    }
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
            let outcome = outcome.map(|()| {
                refused.sort_by_key(|r| r.index);
                if !refused.is_empty() {
                    stats
                        .records_refused
                        .fetch_add(refused.len() as u64, Ordering::Relaxed);
                    for r in &refused {
                        tracing::warn!(topic = %topic, index = r.index, reason = %r.reason, "kafka: record refused for good; the producer quarantines it");
                    }
                }
                Delivered { refused }
            });
            resolver.resolve_delivered(outcome);
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
    /// The consumer's settings, to make a fresh client when it stalls.
    client: ClientConfig,
    group: String,
    topic: String,
    positions: Arc<Mutex<HashMap<PartitionId, Offset>>>,
    /// Whether acks move `positions` (a consumer keeping its own offsets). A group member
    /// without them follows the group's committed offsets when a partition comes back,
    /// so it never re-reads what another member processed meanwhile.
    own_positions: bool,
    /// Next offset to read per partition after what this member was handed: where the
    /// stall check measures lag from.
    delivered: HashMap<PartitionId, Offset>,
    stall_timeout: Duration,
    stats: Arc<KafkaStats>,
}

/// How long a stall check waits for the brokers' answers.
const STALL_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Partitions that have records past where the consumer stands: `(partition, next to read,
/// high watermark)` in, `(partition, records left)` out.
fn lagging(partitions: &[(PartitionId, Offset, Offset)]) -> Vec<(PartitionId, u64)> {
    partitions
        .iter()
        .filter(|(_, next, high)| high > next)
        .map(|&(p, next, high)| (p, high - next))
        .collect()
}

/// Reads, with blocking calls, where each assigned partition stands: the next offset to
/// read (`known`, else the group's committed offset, else the start of the partition) and
/// its high watermark.
fn partition_standing(
    consumer: &StreamConsumer<ResumeContext>,
    topic: &str,
    known: &HashMap<PartitionId, Offset>,
) -> Result<Vec<(PartitionId, Offset, Offset)>, KafkaError> {
    let assignment = consumer.assignment()?;
    let assigned: Vec<i32> = assignment
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    if assigned.is_empty() {
        return Ok(Vec::new());
    }
    let unknown = assigned.iter().any(|p| {
        PartitionId::try_from(*p)
            .map(|p| !known.contains_key(&p))
            .unwrap_or(true)
    });
    let committed = if unknown {
        Some(consumer.committed(STALL_CHECK_TIMEOUT)?)
    } else {
        None
    };
    let mut standing = Vec::with_capacity(assigned.len());
    for partition in assigned {
        let Ok(id) = PartitionId::try_from(partition) else {
            continue;
        };
        let (low, high) = consumer.fetch_watermarks(topic, partition, STALL_CHECK_TIMEOUT)?;
        let committed_next = committed
            .as_ref()
            .and_then(|tpl| tpl.find_partition(topic, partition))
            .and_then(|e| match e.offset() {
                KafkaOffset::Offset(o) => Offset::try_from(o).ok(),
                _ => None,
            });
        let next = known
            .get(&id)
            .copied()
            .or(committed_next)
            .unwrap_or_else(|| Offset::try_from(low).unwrap_or(0));
        standing.push((id, next, Offset::try_from(high).unwrap_or(0)));
    }
    Ok(standing)
}

impl KafkaSubscription {
    /// Called when nothing arrived for the stall timeout: rejoins the group with a fresh
    /// client if an assigned partition has records left to read. A check the brokers do not
    /// answer is logged and retried at the next timeout.
    async fn check_stall(&mut self) -> Result<(), BusError> {
        let mut known = self.delivered.clone();
        if self.own_positions {
            let positions = self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (&p, &next) in positions.iter() {
                let entry = known.entry(p).or_insert(next);
                *entry = (*entry).max(next);
            }
        }
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let standing =
            tokio::task::spawn_blocking(move || partition_standing(&consumer, &topic, &known))
                .await
                .map_err(|e| BusError::TaskFailed {
                    task: "stall check",
                    reason: e.to_string(),
                })?;
        let standing = match standing {
            Ok(standing) => standing,
            Err(e) => {
                tracing::warn!(group = %self.group, topic = %self.topic, error = %e, "kafka: stall check failed");
                return Ok(());
            }
        };
        let lagging = lagging(&standing);
        if lagging.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            group = %self.group,
            topic = %self.topic,
            idle = ?self.stall_timeout,
            lagging = ?lagging,
            "kafka: consumer stalled (records left on assigned partitions, none received); rejoining the group"
        );
        self.stats.stall_rejoins.fetch_add(1, Ordering::Relaxed);
        self.rejoin()
    }

    /// Replaces the consumer with a fresh one in the same group. Records handed out and not
    /// acknowledged may come again (at-least-once, as after any rebalance).
    ///
    /// Nothing here waits, so a caller that gives up on `next_batch` never leaves the
    /// subscription without a subscribed consumer.
    fn rejoin(&mut self) -> Result<(), BusError> {
        let context = ResumeContext {
            topic: self.topic.clone(),
            positions: Arc::clone(&self.positions),
        };
        let fresh: StreamConsumer<ResumeContext> = self
            .client
            .create_with_context(context)
            .map_err(kafka_error("creating the consumer"))?;
        fresh
            .subscribe(&[&self.topic])
            .map_err(kafka_error("subscribing"))?;
        let old = std::mem::replace(&mut self.consumer, Arc::new(fresh));
        // Closing blocks while the old member leaves the group, and a broker that stopped
        // feeding it may not answer soon: close it on a blocking thread, unawaited. With
        // static membership the fresh member takes its place at once.
        drop(tokio::task::spawn_blocking(move || drop(old)));
        Ok(())
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
            match tokio::time::timeout(self.stall_timeout, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.extend(delivery_of(&message)),
                // Broker and network trouble is retried inside librdkafka; what surfaces
                // here is worth a line, not the end of the consumer.
                Ok(Err(e)) => {
                    tracing::warn!(group = %self.group, error = %e, "kafka: receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_idle) => self.check_stall().await?,
            }
        }
        while batch.len() < max.max(1) {
            match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.extend(delivery_of(&message)),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        for d in &batch {
            let next = self.delivered.entry(d.partition).or_insert(0);
            *next = (*next).max(d.offset + 1);
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

    /// A member whose partitions stop being fed (paused here, as a broker that assigns and
    /// never feeds would leave it) rejoins after the stall timeout and reads the rest; a
    /// member with nothing left to read does not. Needs the tansu broker: it lives here
    /// because pausing the client takes the private consumer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_member_rejoins_and_an_idle_one_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = vigil_testkit::tansu::Tansu::start(dir.path());
        let mut config = KafkaConfig::new(broker.brokers());
        config.stall_timeout = Duration::from_secs(2);
        // Static membership, as the binary runs it: the fresh client takes the old one's
        // place in the group.
        config.instance_id = Some("indexer-0".to_owned());
        let spec = TopicSpec {
            partitions: 2,
            replication: 1,
        };
        create_topics(&config, &["stall"], spec)
            .await
            .expect("create topic");
        let transport = KafkaTransport::new(config, "stall").expect("transport");
        let n = 200u64;
        let batch: Vec<Record> = (0..n)
            .map(|i| Record::new(format!("k{}", i % 10), format!("record {i}")))
            .collect();
        transport
            .publish(batch)
            .await
            .expect("publish")
            .await
            .expect("delivered");

        let mut sub = transport.join("g", None).await.expect("subscribe");
        let first = tokio::time::timeout(Duration::from_secs(60), sub.next_batch(1))
            .await
            .expect("a first record within 60 s")
            .expect("next_batch");
        assert_eq!(first.len(), 1);
        let assignment = sub.consumer.assignment().expect("assignment");
        assert!(assignment.count() > 0, "assigned after the first record");
        sub.consumer.pause(&assignment).expect("pause");
        let stats = transport.stats();
        assert_eq!(stats.stall_rejoins(), 0);

        // Nothing acknowledged: the fresh member starts over, and every record comes.
        let mut seen = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while (seen.len() as u64) < n {
            let batch = tokio::time::timeout_at(deadline, sub.next_batch(1000))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} of {n} records within 90 s, {} rejoins",
                        seen.len(),
                        stats.stall_rejoins()
                    )
                })
                .expect("next_batch");
            seen.extend(batch.iter().map(|d| (d.partition, d.offset)));
        }
        let rejoins = stats.stall_rejoins();
        assert!(rejoins >= 1, "the paused member rejoined");

        // Caught up: idle past several stall timeouts without rejoining.
        let idle = tokio::time::timeout(Duration::from_secs(7), sub.next_batch(1000)).await;
        assert!(idle.is_err(), "nothing more to read: {idle:?}");
        assert_eq!(stats.stall_rejoins(), rejoins, "an idle member rejoined");
    }

    #[test]
    fn lagging_names_partitions_with_records_left() {
        let standing = [(0, 10, 10), (1, 3, 7), (2, 5, 0)];
        assert_eq!(lagging(&standing), vec![(1, 4)]);
        assert!(lagging(&[(0, 0, 0)]).is_empty());
    }

    #[test]
    fn the_topic_limit_must_cover_the_largest_record_and_its_framing() {
        let mut config = KafkaConfig::new("b:9092");
        // Kafka's default topic limit takes the default producer limit.
        assert!(config.topic_limit_needed() <= KAFKA_DEFAULT_TOPIC_LIMIT);
        assert_eq!(check_limit(&config, "t", KAFKA_DEFAULT_TOPIC_LIMIT), Ok(()));
        config.max_message_bytes = 2 * 1024 * 1024;
        let err = check_limit(&config, "audit", KAFKA_DEFAULT_TOPIC_LIMIT).unwrap_err();
        let needed = config.topic_limit_needed();
        assert!(needed > config.max_message_bytes);
        assert_eq!(
            err,
            BusError::TopicMessageLimitTooSmall {
                topic: "audit".to_owned(),
                topic_limit: KAFKA_DEFAULT_TOPIC_LIMIT,
                max_message_bytes: 2 * 1024 * 1024,
                needed,
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("max.message.bytes") && text.contains("audit"),
            "{text}"
        );
        // Snappy can grow incompressible data by a sixth.
        config.compression = "snappy".to_owned();
        assert!(
            config.topic_limit_needed() > config.max_message_bytes + config.max_message_bytes / 6
        );
    }

    #[test]
    fn only_errors_about_the_record_itself_refuse_it() {
        assert!(refused_for_good(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(refused_for_good(RDKafkaErrorCode::InvalidRecord));
        assert!(!refused_for_good(
            RDKafkaErrorCode::TopicAuthorizationFailed
        ));
        assert!(!refused_for_good(RDKafkaErrorCode::QueueFull));
        assert!(!refused_for_good(RDKafkaErrorCode::Fatal));
    }

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
