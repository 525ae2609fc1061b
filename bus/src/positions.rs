//! [`PartitionPositions`]: what a consumer has been delivered per partition, what it may
//! acknowledge once that is durable on its side, and the positions it stands at.
//!
//! Every consumer of the bus follows the same cycle: note each delivery, make the batch
//! durable (an index commit, a store transaction), then acknowledge the highest offset per
//! partition. Consumers that keep their offsets with their own data (the indexer, in its
//! commit payload) also need the positions the durable write will stand for, *before* they
//! acknowledge. Positions are "the next offset to read", as Kafka commits them.

use std::collections::BTreeMap;

use crate::error::BusError;
use crate::record::{Delivery, Offset, PartitionId};
use crate::transport::Subscription;

/// Per-partition offsets of one consumer: delivered but not yet acknowledged, and the
/// position (next offset to read) of what it has acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionPositions {
    /// Highest offset delivered per partition since the last acknowledgement.
    pending: BTreeMap<PartitionId, Offset>,
    /// Next offset to read per partition, for what has been acknowledged (or resumed from).
    next: BTreeMap<PartitionId, Offset>,
}

impl PartitionPositions {
    /// No partition seen yet.
    pub fn new() -> PartitionPositions {
        PartitionPositions::default()
    }

    /// Starting at `next` (the next offset to read per partition), as saved by an earlier
    /// run with the consumer's own data.
    pub fn resuming_at(
        next: impl IntoIterator<Item = (PartitionId, Offset)>,
    ) -> PartitionPositions {
        PartitionPositions {
            pending: BTreeMap::new(),
            next: next.into_iter().collect(),
        }
    }

    /// Notes that `delivery` was handed to the consumer.
    pub fn record(&mut self, delivery: &Delivery) {
        self.record_offset(delivery.partition, delivery.offset);
    }

    /// Notes every delivery of `batch`.
    pub fn record_batch(&mut self, batch: &[Delivery]) {
        for delivery in batch {
            self.record(delivery);
        }
    }

    /// Notes that `offset` of `partition` was handed to the consumer. Offsets arrive in order
    /// per partition, but keeping the highest makes the order of calls irrelevant.
    pub fn record_offset(&mut self, partition: PartitionId, offset: Offset) {
        let highest = self.pending.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }

    /// Whether anything was delivered since the last acknowledgement.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The position per partition once what is pending is durable: what a consumer stores
    /// with its own data in the same write that makes the pending deliveries durable.
    pub fn positions_after_pending(&self) -> BTreeMap<PartitionId, Offset> {
        let mut next = self.next.clone();
        for (&partition, &offset) in &self.pending {
            next.insert(partition, offset + 1);
        }
        next
    }

    /// The position per partition of what has been acknowledged (or resumed from), to
    /// pass to [`Transport::subscribe_at`](crate::Transport::subscribe_at).
    pub fn positions(&self) -> Vec<(PartitionId, Offset)> {
        self.next.iter().map(|(&p, &o)| (p, o)).collect()
    }

    /// Takes what is pending as durable: returns the highest delivered offset per partition,
    /// to pass to [`Subscription::ack`], and moves the positions past them.
    pub fn take_acks(&mut self) -> Vec<(PartitionId, Offset)> {
        let acks: Vec<(PartitionId, Offset)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        for &(partition, offset) in &acks {
            self.next.insert(partition, offset + 1);
        }
        acks
    }

    /// [`take_acks`](Self::take_acks) and acknowledges each on `subscription`. Call it only
    /// once what was delivered is durable on the consumer's side.
    pub async fn ack(&mut self, subscription: &mut dyn Subscription) -> Result<(), BusError> {
        for (partition, offset) in self.take_acks() {
            subscription.ack(partition, offset).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{BusLimits, EmbeddedBus};
    use crate::record::Record;
    use crate::transport::Transport;

    fn delivery(partition: PartitionId, offset: Offset) -> Delivery {
        Delivery {
            partition,
            offset,
            record: Record::new("k", b"v".to_vec()),
        }
    }

    #[test]
    fn acknowledges_the_highest_offset_per_partition_once() {
        let mut positions = PartitionPositions::new();
        assert!(!positions.has_pending());
        positions.record_batch(&[delivery(0, 4), delivery(1, 9), delivery(0, 5)]);
        positions.record_offset(1, 7);
        assert!(positions.has_pending());
        assert_eq!(positions.take_acks(), vec![(0, 5), (1, 9)]);
        assert!(!positions.has_pending());
        assert_eq!(positions.take_acks(), vec![]);
        assert_eq!(positions.positions(), vec![(0, 6), (1, 10)]);
    }

    #[test]
    fn positions_after_pending_lay_the_batch_over_where_it_resumed() {
        let mut positions = PartitionPositions::resuming_at([(0, 100), (2, 7)]);
        assert_eq!(positions.positions(), vec![(0, 100), (2, 7)]);
        positions.record(&delivery(0, 100));
        positions.record(&delivery(1, 0));
        let after = positions.positions_after_pending();
        assert_eq!(
            after.into_iter().collect::<Vec<_>>(),
            vec![(0, 101), (1, 1), (2, 7)]
        );
        // Only acknowledging moves the positions themselves.
        assert_eq!(positions.positions(), vec![(0, 100), (2, 7)]);
        positions.take_acks();
        assert_eq!(positions.positions(), vec![(0, 101), (1, 1), (2, 7)]);
    }

    #[tokio::test]
    async fn ack_acknowledges_on_the_subscription() {
        let bus = EmbeddedBus::new(["g"], BusLimits::default()).expect("bus");
        let mut sub = bus.subscribe("g").await.expect("subscribe");
        let receipt = bus
            .publish(vec![
                Record::new("k", b"a".to_vec()),
                Record::new("k", b"b".to_vec()),
            ])
            .await
            .expect("publish");
        let mut positions = PartitionPositions::new();
        let mut seen = 0;
        while seen < 2 {
            let batch = sub.next_batch(10).await.expect("batch");
            seen += batch.len();
            positions.record_batch(&batch);
        }
        positions.ack(&mut *sub).await.expect("ack");
        // The receipt resolves only once the only group acknowledged both records.
        assert_eq!(receipt.await, Ok(()));
        assert!(!positions.has_pending());
    }
}
