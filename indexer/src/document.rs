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

/// The finding kind of an event whose own time the index cannot store (outside the years
/// 1677–2262 that nanoseconds in an `i64` cover): it is indexed at receive time instead, with
/// this finding on `time`, and its raw line keeps the time as written.
pub const TIME_OUT_OF_RANGE: &str = "time_out_of_range";
/// The severity of that finding: Vault never writes such a time, so whoever wrote the line
/// was not Vault, or Vault's clock is badly wrong; either deserves a look.
pub const TIME_FINDING_SEVERITY: &str = "medium";

/// The time an event is indexed at, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexTime {
    /// The entry's own time.
    Own(i64),
    /// The entry's time is out of range; this is the receive time used instead.
    Received(i64),
}

impl IndexTime {
    pub(crate) fn nanos(self) -> i64 {
        match self {
            IndexTime::Own(t) | IndexTime::Received(t) => t,
        }
    }
}

/// The entry's time in nanoseconds since the epoch when an `i64` of nanoseconds holds it
/// (years 1677–2262); otherwise the receive time: the syslog header's time when the event
/// came with one that is in range, else now (the indexer receives it now).
pub(crate) fn index_time(ev: &IndexedEvent) -> IndexTime {
    if let Some(t) = ev.event.time().timestamp_nanos_opt() {
        return IndexTime::Own(t);
    }
    let header = ev
        .origin
        .syslog
        .as_ref()
        .and_then(|s| s.timestamp.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt());
    // `now` is in range until 2262.
    let now = || chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    IndexTime::Received(header.unwrap_or_else(now))
}

/// Builds the document for `ev`, and says which time it is indexed at.
pub(crate) fn to_document(fields: &Fields, ev: &IndexedEvent) -> (TantivyDocument, IndexTime) {
    let entry: &AuditEntry = ev.event.entry();
    let time = index_time(ev);
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
    if let IndexTime::Received(_) = time {
        text(fields.findings_kind, Some(TIME_OUT_OF_RANGE));
        text(fields.findings_severity, Some(TIME_FINDING_SEVERITY));
        text(fields.findings_field, Some("time"));
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
        tantivy::DateTime::from_timestamp_nanos(time.nanos()),
    );
    let key = id_key(ev.id.as_str());
    doc.add_u64(fields.id_hi, (key >> 64) as u64);
    doc.add_u64(fields.id_lo, key as u64);
    (doc, time)
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
