//! The error type shared by every transport.

use crate::record::{Offset, PartitionId};

/// What can go wrong when publishing to, subscribing to or acknowledging on a bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus was closed; nothing more can be published, and a subscription has nothing
    /// left to deliver.
    #[error("the bus is closed")]
    Closed,
    /// Records were published while no consumer group was registered: nobody would ever
    /// acknowledge them, so the bus refuses them rather than pretend they were delivered.
    #[error("no consumer group is registered, so nobody would acknowledge published records")]
    NoConsumerGroups,
    /// The named consumer group was never registered.
    #[error("unknown consumer group `{0}`")]
    UnknownGroup(String),
    /// The named consumer group is registered twice.
    #[error("consumer group `{0}` is already registered")]
    DuplicateGroup(String),
    /// A consumer group was registered after the first publish; it would have missed records
    /// that the bus may already have dropped.
    #[error("consumer group `{0}` must be registered before the first publish")]
    GroupsFrozen(String),
    /// The consumer group already has an active subscription; the embedded bus has a single
    /// partition, so a group has at most one member.
    #[error("consumer group `{0}` already has an active subscription")]
    GroupBusy(String),
    /// The partition does not exist on this bus.
    #[error("unknown partition {0}")]
    UnknownPartition(PartitionId),
    /// A consumer acknowledged an offset it has not been delivered yet.
    #[error(
        "consumer group `{group}` acknowledged offset {offset}, beyond the last delivered offset"
    )]
    AckBeyondDelivered {
        /// The acknowledging group.
        group: String,
        /// The offset it tried to acknowledge.
        offset: Offset,
    },
    /// The Kafka client failed; `during` says at what (creating a client, producing a
    /// record, a delivery, subscribing, committing an offset).
    #[error("kafka: {during}: {source}")]
    Kafka {
        /// What the transport was doing.
        during: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers refused to create a topic (no permission to create, say).
    #[error("kafka: creating topic {topic}: {code}")]
    TopicNotCreated {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: rdkafka::error::RDKafkaErrorCode,
    },
    /// A topic was asked for with more partitions or replicas than Kafka can count.
    #[error("kafka: {what} of {value} is out of range")]
    TopicSpecOutOfRange {
        /// `partitions` or `replication`.
        what: &'static str,
        /// The value asked for.
        value: u32,
    },
    /// A record of the batch was refused for good, and the producer awaited the receipt
    /// as a whole ([`DeliveryReceipt::delivered`](crate::DeliveryReceipt::delivered) reports
    /// refusals without failing the batch).
    #[error("record {index} of the batch was refused for good: {reason}")]
    Refused {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// Why it was refused.
        reason: RefusalReason,
    },
    /// A topic accepts smaller messages than the producer may send: a record between the
    /// two would be refused by the broker.
    #[error(
        "kafka: topic {topic} accepts messages of up to {topic_limit} bytes (its \
         max.message.bytes), but the producer may send {needed} bytes (max_message_bytes \
         {max_message_bytes} plus framing): raise the topic's max.message.bytes to at least \
         {needed}, or lower max_message_bytes (and the collector's max_envelope_bytes)"
    )]
    TopicMessageLimitTooSmall {
        /// The topic.
        topic: String,
        /// The topic's `max.message.bytes`.
        topic_limit: usize,
        /// The producer's limit on key and payload.
        max_message_bytes: usize,
        /// What the topic must accept: the producer's limit plus batch framing.
        needed: usize,
    },
    /// The brokers did not report a topic's configuration.
    #[error("kafka: describing topic {topic}: {code}")]
    TopicNotDescribed {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: rdkafka::error::RDKafkaErrorCode,
    },
    /// A topic's `max.message.bytes` is missing or not a number.
    #[error("kafka: topic {topic} reports no usable max.message.bytes ({value:?})")]
    TopicLimitUnreadable {
        /// The topic.
        topic: String,
        /// What the broker reported, if anything.
        value: Option<String>,
    },
    /// A background task of the transport panicked or was cancelled.
    #[error("{task} task failed: {reason}")]
    TaskFailed {
        /// What the task was for.
        task: &'static str,
        /// The join error, as text: it cannot be cloned, and receipts hand errors out.
        reason: String,
    },
}

/// Why the bus refused one record of a batch for good: retrying it would only be refused
/// again, so the producer quarantines it (with this reason) rather than stop on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The record (key and payload) is larger than the producer may send
    /// ([`KafkaConfig::max_message_bytes`](crate::KafkaConfig::max_message_bytes)); it was
    /// never sent.
    #[error("record of {bytes} bytes is over the producer's limit of {limit} bytes")]
    OverProducerLimit {
        /// Key and payload bytes of the record.
        bytes: usize,
        /// The producer's limit.
        limit: usize,
    },
    /// Kafka refused the record with an error that no retry changes (the topic's message
    /// size limit, a record the broker calls invalid, …).
    #[error("kafka refused the record: {code}")]
    Kafka {
        /// The error Kafka answered with.
        code: rdkafka::error::RDKafkaErrorCode,
    },
}
