//! The [`Transport`] and [`Subscription`] traits every bus implements.

use async_trait::async_trait;

use crate::error::BusError;
use crate::receipt::DeliveryReceipt;
use crate::record::{Delivery, Offset, PartitionId, Record};

/// A bus between stages: publish batches, subscribe as consumer groups.
///
/// The trait is object safe so that the binary can pick the embedded bus or Kafka at run
/// time and hand stages an `Arc<dyn Transport>`.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Publishes a batch of records, in order.
    ///
    /// Returns once the bus has accepted the batch; this may wait while the bus is full
    /// (backpressure). The returned receipt resolves once the batch is durable downstream, and
    /// a producer must move its own checkpoint only after that. An empty batch gets a receipt
    /// that is already resolved.
    async fn publish(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError>;

    /// Joins the named consumer group and returns the subscription that receives its records.
    ///
    /// Delivery resumes after the group's last acknowledged offset, so records delivered to a
    /// previous member but never acknowledged are delivered again (at-least-once).
    async fn subscribe(&self, group: &str) -> Result<Box<dyn Subscription>, BusError>;

    /// Joins the named consumer group like [`subscribe`](Self::subscribe), but a partition
    /// named in `resume` starts at the offset given there (the next one to read) rather than
    /// after the group's last acknowledgement: for a consumer that keeps its offsets with its
    /// own data, as the indexer does in its commit payload, so that the two never disagree.
    ///
    /// A bus that keeps nothing across restarts (the embedded bus) has nothing to resume and
    /// ignores `resume`.
    async fn subscribe_at(
        &self,
        group: &str,
        resume: &[(PartitionId, Offset)],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let _ = resume;
        self.subscribe(group).await
    }
}

/// One member of a consumer group.
#[async_trait]
pub trait Subscription: Send {
    /// The consumer group this subscription belongs to.
    fn group(&self) -> &str;

    /// Waits for records and returns between one and `max` of them, in offset order per
    /// partition.
    ///
    /// Returns [`BusError::Closed`] once the bus is closed and everything has been delivered.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError>;

    /// Acknowledges every delivered record of `partition` up to and including `offset`.
    ///
    /// Acknowledgements are cumulative: call this only once the records are durable on the
    /// consumer's side (committed to the index, for instance). Acknowledging an offset at or
    /// below an earlier acknowledgement does nothing; acknowledging one that was not delivered
    /// yet is an error.
    async fn ack(&mut self, partition: PartitionId, offset: Offset) -> Result<(), BusError>;
}
