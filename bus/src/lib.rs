//! The transport between Vigil's stages.
//!
//! Stages talk through one object-safe trait, [`Transport`]: a producer publishes batches of
//! [`Record`]s and gets a [`DeliveryReceipt`] that resolves once the batch is durable
//! downstream; consumers subscribe as named consumer groups and acknowledge what they have
//! made durable themselves. Producers move their own checkpoints only after a receipt resolves,
//! which is what makes the pipeline lossless end to end.
//!
//! Two implementations sit behind the trait:
//!
//! - [`EmbeddedBus`]: in process, no broker, for the single-binary deployment. A receipt
//!   resolves when *every* registered consumer group has acknowledged the batch.
//! - [`KafkaTransport`]: one Kafka topic, for separate processes. A receipt resolves when
//!   the brokers confirm the batch with `acks=all`; consumer groups commit offsets after
//!   their own durable commit.
//!
//! Consumers track what they were delivered per partition with [`PartitionPositions`] (what
//! to acknowledge after their durable write, and the positions to keep with their data), and
//! publish what they refuse as [`QuarantinedMessage`]s.

#![warn(missing_docs)]

mod embedded;
mod error;
mod kafka;
mod positions;
mod quarantine;
mod receipt;
mod record;
mod transport;

pub use embedded::{BusLimits, EmbeddedBus, EmbeddedSubscription};
pub use error::{BusError, RefusalReason};
pub use kafka::{
    create_topics, KafkaConfig, KafkaStats, KafkaSubscription, KafkaTransport, TopicSpec,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_STALL_TIMEOUT,
};
pub use positions::PartitionPositions;
pub use quarantine::QuarantinedMessage;
pub use receipt::{Delivered, DeliveryReceipt, ReceiptResolver, Refusal};
pub use record::{Delivery, Offset, PartitionId, Record};
pub use transport::{Subscription, Transport};
