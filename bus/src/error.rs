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
    /// The underlying transport failed (a broker error, for instance).
    #[error("transport failure: {0}")]
    Transport(String),
}
