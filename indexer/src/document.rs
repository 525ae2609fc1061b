//! Turning an audit event into the Tantivy document that represents it.
//!
//! This module owns the mapping from the typed [`AuditEntry`] to index fields, including the
//! derived ones (`outcome`, the id tie-breaker). The reverse direction, a stored document back
//! into a search hit, lives in `search.rs` and reads the stored raw line.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use serde_json::Value;
use tantivy::TantivyDocument;
use vigil_event::{AuditEntry, AuditEvent, EventId, Origin};

use crate::error::{IndexError, Result};
use crate::schema::Fields;

/// One event as the indexer receives it: the parsed event, where it was read, and its id.
#[derive(Debug, Clone)]
pub struct IndexedEvent {
    /// The stable id; a second event with the same id replaces the first.
    pub id: EventId,
    /// Node, device and source kind the event was read from.
    pub origin: Origin,
    /// The parsed event with its raw line.
    pub event: AuditEvent,
}

impl IndexedEvent {
    /// Wraps `event` read from `origin`, computing its id with [`EventId::of`].
    pub fn new(event: AuditEvent, origin: Origin) -> IndexedEvent {
        IndexedEvent {
            id: EventId::of(&event, &origin),
            origin,
            event,
        }
    }
}

/// The 128-bit sort tie-breaker of an event id. Vigil's ids are 32 hex digits and map to
/// their own value, so the order is the ids' order and two events never tie. Ids of another
/// shape are hashed; the key is stored in the index, so the hash only needs to be stable for
/// the life of one document.
pub(crate) fn id_key(id: &str) -> u128 {
    if id.len() == 32 {
        if let Ok(v) = u128::from_str_radix(id, 16) {
            return v;
        }
    }
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Nanoseconds since the epoch, or an error for times outside what an `i64` of nanoseconds
/// holds (years 1677–2262).
pub(crate) fn time_nanos(event: &AuditEvent) -> Result<i64> {
    event
        .time()
        .timestamp_nanos_opt()
        .ok_or_else(|| IndexError::TimeOutOfRange(event.entry().time.clone()))
}

/// Builds the document for `ev`.
pub(crate) fn to_document(fields: &Fields, ev: &IndexedEvent) -> Result<TantivyDocument> {
    let entry: &AuditEntry = ev.event.entry();
    let mut doc = TantivyDocument::new();
    let mut text = |field, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            doc.add_text(field, v);
        }
    };

    text(fields.event_id, Some(ev.id.as_str()));
    text(fields.kind, Some(entry.kind.as_str()));
    text(fields.outcome, Some(entry.outcome().as_str()));
    text(fields.origin_node, Some(&ev.origin.node));
    text(fields.origin_device, Some(&ev.origin.device));
    text(fields.origin_source, Some(ev.origin.source.as_str()));
    if let Some(syslog) = &ev.origin.syslog {
        text(fields.syslog_facility, Some(&syslog.facility.to_string()));
        text(fields.syslog_severity, Some(&syslog.severity.to_string()));
        text(fields.syslog_host, syslog.host.as_deref());
        text(fields.syslog_tag, syslog.tag.as_deref());
        text(fields.syslog_pid, syslog.pid.as_deref());
    }
    for finding in &ev.origin.findings {
        text(fields.findings_kind, Some(finding.kind.as_str()));
        text(fields.findings_severity, Some(finding.severity.as_str()));
        text(fields.findings_field, Some(&finding.field));
    }

    if let Some(req) = &entry.request {
        text(fields.request_id, req.id.as_deref());
        text(fields.operation, req.operation.as_deref());
        text(fields.path, req.path.as_deref());
        text(fields.path_raw, req.path.as_deref());
        text(fields.mount_point, req.mount_point.as_deref());
        text(fields.mount_type, req.mount_type.as_deref());
        if let Some(ns) = &req.namespace {
            text(fields.namespace_id, ns.id.as_deref());
            text(fields.namespace_path, ns.path.as_deref());
        }
        text(fields.remote_address_raw, req.remote_address.as_deref());
        text(fields.request_client_token, req.client_token.as_deref());
        text(
            fields.request_client_token_accessor,
            req.client_token_accessor.as_deref(),
        );
    }
    if let Some(auth) = &entry.auth {
        text(fields.client_token, auth.client_token.as_deref());
        text(fields.accessor, auth.accessor.as_deref());
        text(fields.display_name, auth.display_name.as_deref());
        text(fields.entity_id, auth.entity_id.as_deref());
        text(fields.token_type, auth.token_type.as_deref());
        text(
            fields.username,
            auth.metadata
                .as_ref()
                .and_then(|m| m.get("username"))
                .and_then(Value::as_str),
        );
        for policy in auth.policies.iter().flatten() {
            text(fields.policies, Some(policy));
        }
    }
    if let Some(resp) = &entry.response {
        text(
            fields.response_mount_type,
            resp.extra.get("mount_type").and_then(Value::as_str),
        );
        if let Some(auth) = &resp.auth {
            text(fields.response_client_token, auth.client_token.as_deref());
            text(fields.response_accessor, auth.accessor.as_deref());
            text(fields.response_display_name, auth.display_name.as_deref());
        }
    }
    text(fields.error, entry.error.as_deref());
    text(fields.error_raw, entry.error.as_deref());
    text(fields.raw, Some(ev.event.raw_str()));

    // Not every remote_address is an IP (a unix socket, a proxy's placeholder): those keep
    // only the raw text.
    if let Some(ip) = entry
        .request
        .as_ref()
        .and_then(|r| r.remote_address.as_deref())
        .and_then(|a| a.parse::<IpAddr>().ok())
    {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        doc.add_ip_addr(fields.remote_address, v6);
    }

    doc.add_date(
        fields.time,
        tantivy::DateTime::from_timestamp_nanos(time_nanos(&ev.event)?),
    );
    let key = id_key(ev.id.as_str());
    doc.add_u64(fields.id_hi, (key >> 64) as u64);
    doc.add_u64(fields.id_lo, key as u64);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_keep_their_order() {
        let a = "00000000000000000000000000000001";
        let b = "0000000000000000000000000000000f";
        let c = "f0000000000000000000000000000000";
        assert!(id_key(a) < id_key(b));
        assert!(id_key(b) < id_key(c));
        assert_eq!(id_key(a), 1);
    }

    #[test]
    fn other_ids_hash_deterministically() {
        assert_eq!(id_key("custom-id"), id_key("custom-id"));
        assert_ne!(id_key("custom-id"), id_key("custom-id-2"));
    }
}
