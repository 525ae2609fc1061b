//! [`EmbeddedBus`]: the in-process bus for the single-binary deployment.
//!
//! The bus is one in-memory log with a single partition (`0`). Every consumer group has its
//! own committed offset (everything below it is acknowledged) and each live subscription has
//! its own read position. A record is dropped from memory once every group has acknowledged
//! it, and a publisher's [`DeliveryReceipt`] resolves at that moment: with the embedded bus,
//! "durable downstream" means "every consumer has made it durable on its side".
//!
//! Memory is bounded by [`BusLimits`]: a publish that does not fit waits until acknowledgements
//! free room (backpressure, never loss). Nothing here is durable: after a crash the producer
//! re-reads from its own checkpoint, which only ever moved after receipts resolved.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::error::BusError;
use crate::receipt::{DeliveryReceipt, ReceiptResolver};
use crate::record::{Delivery, Offset, PartitionId, Record};
use crate::transport::{Subscription, Transport};

/// The only partition of the embedded bus.
const PARTITION: PartitionId = 0;

/// How much the embedded bus holds in memory before publishers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusLimits {
    /// Most records held (published but not yet acknowledged by every group).
    pub max_records: usize,
    /// Most bytes held, counted as key plus payload of each record.
    pub max_bytes: usize,
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            max_records: 65_536,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// An in-process bus with consumer groups, offsets and end-to-end acknowledgement.
///
/// Cloning is cheap and every clone is the same bus.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

/// A member of one consumer group of an [`EmbeddedBus`].
///
/// Dropping it leaves the group: a later subscription of the same group resumes after the
/// group's last acknowledged offset, so unacknowledged records are delivered again.
#[derive(Debug)]
pub struct EmbeddedSubscription {
    shared: Arc<Shared>,
    group: String,
    group_index: usize,
    /// Offset of the next record to deliver to this member.
    position: Offset,
}

#[derive(Debug)]
struct Shared {
    limits: BusLimits,
    state: Mutex<State>,
    /// Woken when acknowledgements free room or the bus closes; publishers wait on it.
    room: Notify,
    /// Woken when records arrive or the bus closes; subscriptions wait on it.
    arrivals: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Records not yet acknowledged by every group; `log[0]` has offset `base`.
    log: VecDeque<Record>,
    base: Offset,
    /// Bytes held in `log`, as counted by [`Record::size`].
    bytes: usize,
    groups: Vec<GroupState>,
    /// Receipts of published batches, in offset order, each with the offset just past its
    /// last record.
    receipts: VecDeque<(Offset, ReceiptResolver)>,
    /// Set on the first publish; groups may no longer be registered after it.
    published: bool,
    closed: bool,
}

#[derive(Debug)]
struct GroupState {
    name: String,
    /// Every offset below this one is acknowledged by the group.
    committed: Offset,
    subscribed: bool,
}

impl State {
    /// Offset the next published record gets.
    fn end(&self) -> Offset {
        self.base + self.log.len() as Offset
    }

    /// Lowest committed offset over all groups: everything below is acknowledged by all.
    fn all_committed(&self) -> Offset {
        self.groups
            .iter()
            .map(|group| group.committed)
            .min()
            .unwrap_or(self.base)
    }

    /// Drops records every group acknowledged and resolves the receipts they complete.
    /// Returns whether room was freed.
    fn release_acknowledged(&mut self) -> bool {
        let committed = self.all_committed();
        let mut freed = false;
        while self.base < committed {
            match self.log.pop_front() {
                Some(record) => {
                    self.bytes -= record.size();
                    self.base += 1;
                    freed = true;
                }
                None => break,
            }
        }
        while self
            .receipts
            .front()
            .is_some_and(|(end, _)| *end <= committed)
        {
            if let Some((_, resolver)) = self.receipts.pop_front() {
                resolver.resolve(Ok(()));
            }
        }
        freed
    }

    fn fits(&self, limits: &BusLimits, records: usize, bytes: usize) -> bool {
        // An empty log takes any batch, even one above the limits: otherwise that batch
        // would wait forever.
        self.log.is_empty()
            || (self.log.len() + records <= limits.max_records
                && self.bytes + bytes <= limits.max_bytes)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics halfway through a state change, so a poisoned lock still holds
        // a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EmbeddedBus {
    /// Creates a bus whose receipts wait for every one of `groups`.
    pub fn new<I, S>(groups: I, limits: BusLimits) -> Result<Self, BusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let bus = Self {
            shared: Arc::new(Shared {
                limits,
                state: Mutex::new(State::default()),
                room: Notify::new(),
                arrivals: Notify::new(),
            }),
        };
        for group in groups {
            bus.register_group(group)?;
        }
        Ok(bus)
    }

    /// Registers another consumer group whose acknowledgement every receipt will wait for.
    ///
    /// Only allowed before the first publish, so that a group never misses a record.
    pub fn register_group(&self, group: impl Into<String>) -> Result<(), BusError> {
        let group = group.into();
        let mut state = self.shared.lock();
        if state.groups.iter().any(|known| known.name == group) {
            return Err(BusError::DuplicateGroup(group));
        }
        if state.published {
            return Err(BusError::GroupsFrozen(group));
        }
        let committed = state.base;
        state.groups.push(GroupState {
            name: group,
            committed,
            subscribed: false,
        });
        Ok(())
    }

    /// Joins `group`; the same as [`Transport::subscribe`] without the boxing.
    pub fn join_group(&self, group: &str) -> Result<EmbeddedSubscription, BusError> {
        let mut state = self.shared.lock();
        let group_index = state
            .groups
            .iter()
            .position(|known| known.name == group)
            .ok_or_else(|| BusError::UnknownGroup(group.to_owned()))?;
        let member = &mut state.groups[group_index];
        if member.subscribed {
            return Err(BusError::GroupBusy(group.to_owned()));
        }
        member.subscribed = true;
        Ok(EmbeddedSubscription {
            shared: Arc::clone(&self.shared),
            group: group.to_owned(),
            group_index,
            position: member.committed,
        })
    }

    /// Closes the bus: publishing fails from now on and subscriptions end once they have
    /// delivered what is left.
    ///
    /// Receipts of batches already published stay pending: they still resolve when the groups
    /// acknowledge, or resolve to [`BusError::Closed`] when the bus is dropped.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.room.notify_waiters();
        self.shared.arrivals.notify_waiters();
    }

    /// The offset below which `group` has acknowledged everything, if the group exists.
    pub fn committed(&self, group: &str) -> Option<Offset> {
        let state = self.shared.lock();
        state
            .groups
            .iter()
            .find(|known| known.name == group)
            .map(|known| known.committed)
    }

    /// Records held in memory, waiting for some group's acknowledgement.
    pub fn buffered_records(&self) -> usize {
        self.shared.lock().log.len()
    }

    /// Bytes held in memory, waiting for some group's acknowledgement.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Publishes `records`, waiting for room while the bus is full.
    async fn publish_batch(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError> {
        let count = records.len();
        if count == 0 {
            return Ok(DeliveryReceipt::resolved(0, Ok(())));
        }
        let bytes: usize = records.iter().map(Record::size).sum();
        loop {
            // Register for a wake-up before looking at the state, so that room freed between
            // the look and the wait is not missed.
            let mut room = pin!(self.shared.room.notified());
            room.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(BusError::Closed);
                }
                if state.groups.is_empty() {
                    return Err(BusError::NoConsumerGroups);
                }
                if state.fits(&self.shared.limits, count, bytes) {
                    state.published = true;
                    state.bytes += bytes;
                    state.log.extend(records);
                    let end = state.end();
                    let (resolver, receipt) = DeliveryReceipt::pending(count);
                    state.receipts.push_back((end, resolver));
                    drop(state);
                    self.shared.arrivals.notify_waiters();
                    return Ok(receipt);
                }
            }
            room.await;
        }
    }
}

#[async_trait]
impl Transport for EmbeddedBus {
    async fn publish(&self, records: Vec<Record>) -> Result<DeliveryReceipt, BusError> {
        self.publish_batch(records).await
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.join_group(group)?))
    }
}

impl EmbeddedSubscription {
    /// Offset of the next record this member will be handed.
    pub fn position(&self) -> Offset {
        self.position
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    fn group(&self) -> &str {
        &self.group
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        loop {
            let mut arrivals = pin!(self.shared.arrivals.notified());
            arrivals.as_mut().enable();
            {
                let state = self.shared.lock();
                let end = state.end();
                if self.position < end {
                    // `position` never falls below `base`: records are only dropped once this
                    // group acknowledged them, and acknowledgement needs delivery first.
                    let first = usize::try_from(self.position - state.base).unwrap_or(usize::MAX);
                    let batch: Vec<Delivery> = state
                        .log
                        .iter()
                        .skip(first)
                        .take(max)
                        .zip(self.position..)
                        .map(|(record, offset)| Delivery {
                            partition: PARTITION,
                            offset,
                            record: record.clone(),
                        })
                        .collect();
                    self.position += batch.len() as Offset;
                    return Ok(batch);
                }
                if state.closed {
                    return Err(BusError::Closed);
                }
            }
            arrivals.await;
        }
    }

    async fn ack(&mut self, partition: PartitionId, offset: Offset) -> Result<(), BusError> {
        if partition != PARTITION {
            return Err(BusError::UnknownPartition(partition));
        }
        if offset >= self.position {
            return Err(BusError::AckBeyondDelivered {
                group: self.group.clone(),
                offset,
            });
        }
        let freed = {
            let mut state = self.shared.lock();
            let group = &mut state.groups[self.group_index];
            if offset < group.committed {
                return Ok(());
            }
            group.committed = offset + 1;
            state.release_acknowledged()
        };
        if freed {
            self.shared.room.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(group) = state.groups.get_mut(self.group_index) {
            group.subscribed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    /// Long enough for anything that should happen to happen on a loaded machine.
    const PATIENCE: Duration = Duration::from_secs(5);
    /// Short wait used to check that something does *not* happen.
    const BRIEFLY: Duration = Duration::from_millis(50);

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::new("node-a/file", format!("event {i}")))
            .collect()
    }

    async fn next(sub: &mut EmbeddedSubscription, max: usize) -> Vec<Delivery> {
        timeout(PATIENCE, sub.next_batch(max))
            .await
            .expect("records should arrive")
            .expect("bus is open")
    }

    #[tokio::test]
    async fn receipt_resolves_only_after_every_group_acks() {
        let bus = EmbeddedBus::new(["indexer", "rules"], BusLimits::default()).unwrap();
        let mut indexer = bus.join_group("indexer").unwrap();
        let mut rules = bus.join_group("rules").unwrap();

        let mut receipt = bus.publish(records(3)).await.unwrap();
        assert_eq!(receipt.records(), 3);

        let got = next(&mut indexer, 10).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].offset, 2);
        indexer.ack(0, 2).await.unwrap();
        assert_eq!(receipt.try_result(), None, "rules has not acked yet");

        let got = next(&mut rules, 10).await;
        rules.ack(0, got[1].offset).await.unwrap();
        assert_eq!(
            receipt.try_result(),
            None,
            "rules acked only part of the batch"
        );

        rules.ack(0, 2).await.unwrap();
        assert_eq!(timeout(PATIENCE, receipt).await.unwrap(), Ok(()));
        assert_eq!(bus.buffered_records(), 0, "acked records leave memory");
    }

    #[tokio::test]
    async fn receipts_resolve_in_order_as_acks_advance() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let mut sub = bus.join_group("only").unwrap();
        let mut first = bus.publish(records(2)).await.unwrap();
        let mut second = bus.publish(records(2)).await.unwrap();
        let got = next(&mut sub, 10).await;
        assert_eq!(
            got.iter().map(|d| d.offset).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );

        sub.ack(0, 1).await.unwrap();
        assert_eq!(first.try_result(), Some(Ok(())));
        assert_eq!(second.try_result(), None);
        // Acking an older offset again is harmless.
        sub.ack(0, 0).await.unwrap();
        assert_eq!(second.try_result(), None);
        sub.ack(0, 3).await.unwrap();
        assert_eq!(second.try_result(), Some(Ok(())));
        assert_eq!(bus.committed("only"), Some(4));
    }

    #[tokio::test]
    async fn ack_beyond_delivery_is_refused() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let mut sub = bus.join_group("only").unwrap();
        let _receipt = bus.publish(records(3)).await.unwrap();
        next(&mut sub, 1).await;
        assert!(matches!(
            sub.ack(0, 1).await,
            Err(BusError::AckBeyondDelivered { offset: 1, .. })
        ));
        assert_eq!(sub.ack(7, 0).await, Err(BusError::UnknownPartition(7)));
        assert_eq!(bus.committed("only"), Some(0));
    }

    #[tokio::test]
    async fn publish_waits_while_full_and_resumes_after_acks() {
        let limits = BusLimits {
            max_records: 2,
            max_bytes: usize::MAX,
        };
        let bus = EmbeddedBus::new(["a", "b"], limits).unwrap();
        let mut a = bus.join_group("a").unwrap();
        let mut b = bus.join_group("b").unwrap();
        let _first = bus.publish(records(2)).await.unwrap();

        let publisher = bus.clone();
        let mut blocked = tokio::spawn(async move { publisher.publish(records(1)).await });
        assert!(
            timeout(BRIEFLY, &mut blocked).await.is_err(),
            "a full bus makes the publisher wait"
        );

        next(&mut a, 10).await;
        a.ack(0, 1).await.unwrap();
        assert!(
            timeout(BRIEFLY, &mut blocked).await.is_err(),
            "room is freed only when every group acked"
        );
        next(&mut b, 10).await;
        b.ack(0, 1).await.unwrap();
        let receipt = timeout(PATIENCE, blocked).await.unwrap().unwrap().unwrap();
        assert_eq!(receipt.records(), 1);
        assert_eq!(next(&mut a, 10).await[0].offset, 2, "nothing was lost");
    }

    #[tokio::test]
    async fn byte_limit_applies_but_a_lone_large_batch_passes() {
        let limits = BusLimits {
            max_records: 100,
            max_bytes: 4,
        };
        let bus = EmbeddedBus::new(["only"], limits).unwrap();
        let _receipt = timeout(PATIENCE, bus.publish(records(2)))
            .await
            .expect("an empty bus takes any batch")
            .unwrap();
        assert!(timeout(BRIEFLY, bus.publish(records(1))).await.is_err());
    }

    #[tokio::test]
    async fn a_new_member_gets_unacknowledged_records_again() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let _receipt = bus.publish(records(4)).await.unwrap();
        let mut sub = bus.join_group("only").unwrap();
        assert_eq!(
            bus.join_group("only").unwrap_err(),
            BusError::GroupBusy("only".into())
        );
        next(&mut sub, 10).await;
        sub.ack(0, 1).await.unwrap();
        drop(sub);

        let mut again = bus.subscribe("only").await.unwrap();
        let got = timeout(PATIENCE, again.next_batch(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.iter().map(|d| d.offset).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(got[0].record.payload, b"event 2");
    }

    #[tokio::test]
    async fn groups_are_fixed_before_the_first_publish() {
        let bus = EmbeddedBus::new(Vec::<String>::new(), BusLimits::default()).unwrap();
        assert!(matches!(
            bus.publish(records(1)).await,
            Err(BusError::NoConsumerGroups)
        ));
        bus.register_group("late-but-in-time").unwrap();
        assert_eq!(
            bus.register_group("late-but-in-time"),
            Err(BusError::DuplicateGroup("late-but-in-time".into()))
        );
        let _receipt = bus.publish(records(1)).await.unwrap();
        assert_eq!(
            bus.register_group("too-late"),
            Err(BusError::GroupsFrozen("too-late".into()))
        );
        assert_eq!(
            bus.join_group("nope").unwrap_err(),
            BusError::UnknownGroup("nope".into())
        );
    }

    #[tokio::test]
    async fn empty_batch_is_acknowledged_at_once() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let mut receipt = bus.publish(Vec::new()).await.unwrap();
        assert_eq!(receipt.try_result(), Some(Ok(())));
    }

    #[tokio::test]
    async fn close_drains_then_ends_subscriptions() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let mut sub = bus.join_group("only").unwrap();
        let receipt = bus.publish(records(2)).await.unwrap();
        bus.close();
        assert!(matches!(
            bus.publish(records(1)).await,
            Err(BusError::Closed)
        ));
        assert_eq!(next(&mut sub, 10).await.len(), 2);
        assert_eq!(sub.next_batch(10).await, Err(BusError::Closed));
        sub.ack(0, 1).await.unwrap();
        assert_eq!(timeout(PATIENCE, receipt).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn waiting_subscription_wakes_on_publish() {
        let bus = EmbeddedBus::new(["only"], BusLimits::default()).unwrap();
        let mut sub = bus.join_group("only").unwrap();
        let waiter = tokio::spawn(async move { sub.next_batch(10).await });
        tokio::task::yield_now().await;
        let _receipt = bus.publish(records(1)).await.unwrap();
        let got = timeout(PATIENCE, waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(got.len(), 1);
    }
}
