//! Stable event ids: what makes a second delivery of the same event harmless.

use sha2::{Digest, Sha256};

use crate::envelope::Origin;
use crate::parse::AuditEvent;

/// A 128-bit id, 32 lowercase hex digits. The same entry read from the same device always gets
/// the same id: from `request.id`, `type` and the device identity when Vault gave a request
/// id, else from the raw bytes.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// The id of `event` as read from the device `origin` names.
    pub fn of(event: &AuditEvent, origin: &Origin) -> EventId {
        let mut h = Sha256::new();
        // Every part is length-prefixed so that no two different inputs hash alike.
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        part(origin.node.as_bytes());
        part(origin.device.as_bytes());
        match event.entry().request_id() {
            Some(id) => {
                part(b"request-id");
                part(id.as_bytes());
                part(event.entry().kind.as_str().as_bytes());
            }
            None => {
                part(b"raw");
                part(event.raw());
            }
        }
        EventId(hex::encode(&h.finalize()[..16]))
    }

    /// The id of a bus message that is not (or not verifiably) an audit event: from its
    /// key and bytes.
    pub fn of_message(key: &str, payload: &[u8]) -> EventId {
        let mut h = Sha256::new();
        for bytes in [b"message".as_slice(), key.as_bytes(), payload] {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        EventId(hex::encode(&h.finalize()[..16]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::SourceKind;

    fn origin(device: &str) -> Origin {
        Origin::new("node-1", device, SourceKind::File)
    }

    #[test]
    fn ids_follow_request_id_type_and_device() {
        let req = AuditEvent::parse(
            br#"{"time":"2026-11-22T16:33:32Z","type":"request","request":{"id":"r1"}}"#,
        )
        .unwrap();
        let req_again = AuditEvent::parse(
            br#"{"time":"2026-11-22T16:33:33Z","type":"request","request":{"id":"r1","path":"x"}}"#,
        )
        .unwrap();
        let resp = AuditEvent::parse(
            br#"{"time":"2026-11-22T16:33:32Z","type":"response","request":{"id":"r1"}}"#,
        )
        .unwrap();
        let id = EventId::of(&req, &origin("main"));
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id, EventId::of(&req_again, &origin("main")));
        assert_ne!(id, EventId::of(&resp, &origin("main")));
        assert_ne!(id, EventId::of(&req, &origin("other")));
    }

    #[test]
    fn without_request_id_the_raw_bytes_decide() {
        let a = AuditEvent::parse(br#"{"time":"2026-11-22T16:33:32Z","type":"request"}"#).unwrap();
        let b = AuditEvent::parse(br#"{"time":"2026-11-22T16:33:33Z","type":"request"}"#).unwrap();
        assert_eq!(
            EventId::of(&a, &origin("main")),
            EventId::of(&a.clone(), &origin("main"))
        );
        assert_ne!(
            EventId::of(&a, &origin("main")),
            EventId::of(&b, &origin("main"))
        );
    }
}
