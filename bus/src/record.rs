//! The unit the bus carries ([`Record`]) and the unit a consumer receives ([`Delivery`]).

/// Position of a record inside one partition of the bus.
///
/// Offsets start at 0, grow by one per record and are never reused within a partition.
pub type Offset = u64;

/// Identifier of a partition.
///
/// The embedded bus has a single partition, `0`. A Kafka topic has several, and a record's
/// partition is chosen from its key so that each source keeps its order.
pub type PartitionId = u32;

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The source the record comes from (node and audit device). Records with the same key
    /// keep their relative order from producer to every consumer.
    pub key: String,
    /// The signed envelope bytes; the bus never looks inside.
    pub payload: Vec<u8>,
}

impl Record {
    /// Creates a record from a key and a payload.
    pub fn new(key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            payload: payload.into(),
        }
    }

    /// The bytes this record accounts for in a memory bound: key plus payload.
    pub fn size(&self) -> usize {
        self.key.len() + self.payload.len()
    }
}

/// A record handed to a consumer group, with the position to acknowledge it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Partition the record was read from.
    pub partition: PartitionId,
    /// Offset of the record inside its partition.
    pub offset: Offset,
    /// The record itself.
    pub record: Record,
}
