//! The JSON bodies the API answers with. The handlers convert the index's and the alert
//! store's types into these, so that the OpenAPI document (derived from these types) is the
//! exact shape on the wire: a field the index adds is not served until it is added here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// One page of hits, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    /// How many events match the query in the time range (all pages together).
    pub total: u64,
    /// This page.
    pub hits: Vec<EventHit>,
    /// Pass this back as `cursor` for the next page; null on the last page.
    pub cursor: Option<String>,
}

impl From<vigil_indexer::SearchResponse> for SearchPage {
    fn from(r: vigil_indexer::SearchResponse) -> Self {
        SearchPage {
            total: r.total,
            hits: r.hits.into_iter().map(EventHit::from).collect(),
            cursor: r.cursor,
        }
    }
}

/// One event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventHit {
    /// Vigil's event id (32 hex digits).
    pub id: String,
    /// The event time, RFC 3339 in UTC.
    pub time: String,
    /// `request` or `response`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `request.id`.
    pub request_id: Option<String>,
    /// `request.operation`.
    pub operation: Option<String>,
    /// `request.path`.
    pub path: Option<String>,
    /// `request.mount_point`.
    pub mount_point: Option<String>,
    /// `auth.display_name`.
    pub display_name: Option<String>,
    /// `request.remote_address`.
    pub remote_address: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// `error`.
    pub error: Option<String>,
    /// Where the event was read.
    pub origin: EventOrigin,
    /// The raw audit entry as JSON (a JSON string if it no longer parses).
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

impl From<vigil_indexer::Hit> for EventHit {
    fn from(h: vigil_indexer::Hit) -> Self {
        EventHit {
            id: h.id,
            time: h.time,
            kind: h.kind,
            request_id: h.request_id,
            operation: h.operation,
            path: h.path,
            mount_point: h.mount_point,
            display_name: h.display_name,
            remote_address: h.remote_address,
            outcome: h.outcome,
            error: h.error,
            origin: EventOrigin {
                node: h.origin.node,
                device: h.origin.device,
                source: h.origin.source,
                syslog: h.origin.syslog.map(SyslogHeader::from),
            },
            raw: h.raw,
        }
    }
}

/// Where an event was read.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOrigin {
    /// Collector node.
    pub node: String,
    /// Audit device.
    pub device: String,
    /// `file`, `socket` or `syslog`.
    pub source: String,
    /// The syslog header the event arrived with (syslog devices only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogHeader>,
}

/// The parts of a syslog header kept with an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyslogHeader {
    /// Facility number.
    pub facility: u8,
    /// Severity number.
    pub severity: u8,
    /// The header's timestamp as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Tag or APP-NAME.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
}

impl From<vigil_event::SyslogMeta> for SyslogHeader {
    fn from(m: vigil_event::SyslogMeta) -> Self {
        SyslogHeader {
            facility: m.facility,
            severity: m.severity,
            timestamp: m.timestamp,
            host: m.host,
            tag: m.tag,
            pid: m.pid,
        }
    }
}

/// The most frequent values of one field among the matching events.
#[derive(Debug, Serialize, ToSchema)]
pub struct Facets {
    /// The field, as asked.
    pub field: String,
    /// Matching events.
    pub total: u64,
    /// Matching events without a value for the field.
    pub missing: u64,
    /// Distinct values among the matching events.
    pub distinct: u64,
    /// Occurrences of the values not in `buckets`.
    pub other: u64,
    /// Whether the counts are approximate: the field had more distinct values than the
    /// index keeps while counting.
    pub approximate: bool,
    /// The top values, most frequent first.
    pub buckets: Vec<FacetCount>,
}

/// One value and how many matching events carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetCount {
    /// The value.
    pub value: String,
    /// How many matching events have it.
    pub count: u64,
}

impl From<vigil_indexer::FacetResponse> for Facets {
    fn from(r: vigil_indexer::FacetResponse) -> Self {
        Facets {
            field: r.field,
            total: r.total,
            missing: r.missing,
            distinct: r.distinct,
            other: r.other,
            approximate: r.approximate,
            buckets: r
                .buckets
                .into_iter()
                .map(|b| FacetCount {
                    value: b.value,
                    count: b.count,
                })
                .collect(),
        }
    }
}

/// Matching events per time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Histogram {
    /// Bucket width in milliseconds.
    pub interval_ms: u64,
    /// Matching events (the sum of the buckets).
    pub total: u64,
    /// Consecutive buckets, oldest first, empty ones included.
    pub buckets: Vec<TimeBucket>,
}

/// One histogram bucket: `[start, start + interval)`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeBucket {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Matching events in the bucket.
    pub count: u64,
}

impl From<vigil_indexer::HistogramResponse> for Histogram {
    fn from(r: vigil_indexer::HistogramResponse) -> Self {
        Histogram {
            interval_ms: r.interval_ms,
            total: r.total,
            buckets: r
                .buckets
                .into_iter()
                .map(|b| TimeBucket {
                    start: b.start,
                    count: b.count,
                })
                .collect(),
        }
    }
}

/// One page of stored alerts, most recently seen first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsPage {
    /// Alerts on this page.
    pub count: usize,
    /// This page.
    pub alerts: Vec<AlertView>,
    /// Pass this back as `before` for the next page; null on the last page.
    pub next: Option<String>,
}

/// The severity of an alert (the rule's Sigma level).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl From<vigil_rules::Level> for Severity {
    fn from(l: vigil_rules::Level) -> Self {
        match l {
            vigil_rules::Level::Informational => Severity::Informational,
            vigil_rules::Level::Low => Severity::Low,
            vigil_rules::Level::Medium => Severity::Medium,
            vigil_rules::Level::High => Severity::High,
            vigil_rules::Level::Critical => Severity::Critical,
        }
    }
}

/// A stored alert (its newest revision).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Stable id across revisions.
    pub id: String,
    /// 0 when it fired, one more at each update.
    pub revision: u32,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// The rule's level.
    pub severity: Severity,
    /// The values of the rule's group-by fields, `|`-joined.
    pub group_key: String,
    /// Event time of the first event behind the alert.
    pub first_seen: DateTime<Utc>,
    /// Event time of the last event merged in.
    pub last_seen: DateTime<Utc>,
    /// Events behind the alert.
    pub count: u64,
    /// Vault `request.id`s of the first of those events.
    pub request_ids: Vec<String>,
    /// Vigil event ids of the first of those events.
    pub event_ids: Vec<String>,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// The rule's description.
    pub description: String,
}

impl From<vigil_rules::Alert> for AlertView {
    fn from(a: vigil_rules::Alert) -> Self {
        AlertView {
            id: a.id,
            revision: a.revision,
            rule_id: a.rule_id,
            title: a.title,
            severity: a.severity.into(),
            group_key: a.group_key,
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            count: a.count,
            request_ids: a.request_ids,
            event_ids: a.event_ids.iter().map(|e| e.as_str().to_owned()).collect(),
            tags: a.tags,
            description: a.description,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A sentence for a person.
    pub message: String,
    /// The request parameter at fault, for a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}
