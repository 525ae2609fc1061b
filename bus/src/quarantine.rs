//! [`QuarantinedMessage`]: what a consumer publishes about a message it refused, so that an
//! operator can see it, and nothing refused is silently dropped.
//!
//! The record carries the original key and bytes inside a JSON body rather than in record
//! headers (some Kafka-protocol brokers mishandle headers): the reason, where the message sat
//! on the bus, and the payload as text when it is UTF-8, as hex when it is not.

use serde::{Deserialize, Serialize};

use crate::record::{Delivery, Offset, PartitionId, Record};

/// A refused message, as published to a quarantine topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedMessage {
    /// Why it was refused (a bad signature, an unknown key, not an audit entry, …).
    pub reason: String,
    /// Partition it was read from.
    pub partition: PartitionId,
    /// Its offset there.
    pub offset: Offset,
    /// Its key.
    pub key: String,
    /// Its bytes, when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Its bytes in hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

impl QuarantinedMessage {
    /// Describes `delivery`, refused for `reason`.
    pub fn new(reason: impl Into<String>, delivery: Delivery) -> QuarantinedMessage {
        let (payload, payload_hex) = match String::from_utf8(delivery.record.payload) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(hex::encode(e.as_bytes()))),
        };
        QuarantinedMessage {
            reason: reason.into(),
            partition: delivery.partition,
            offset: delivery.offset,
            key: delivery.record.key,
            payload,
            payload_hex,
        }
    }

    /// The record to publish: same key, this description as JSON.
    pub fn to_record(&self) -> Record {
        // Serializing plain strings and integers cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        Record::new(self.key.clone(), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(payload: &[u8]) -> Delivery {
        Delivery {
            partition: 2,
            offset: 7,
            record: Record::new("node/main", payload),
        }
    }

    #[test]
    fn keeps_text_as_text_and_bytes_as_hex() {
        let m = QuarantinedMessage::new("bad signature", delivery(b"{\"type\":\"request\"}"));
        let back: QuarantinedMessage = serde_json::from_slice(&m.to_record().payload).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.payload.as_deref(), Some("{\"type\":\"request\"}"));
        assert_eq!(m.to_record().key, "node/main");

        let m = QuarantinedMessage::new("bad signature", delivery(&[0xff, 0x00, b'a']));
        assert_eq!(m.payload, None);
        assert_eq!(m.payload_hex.as_deref(), Some("ff0061"));
    }
}
