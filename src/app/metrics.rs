//! The binary's bridges from each stage's counters to the `/metrics` endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vigil_bus::KafkaStats;
use vigil_collector::{CollectorStats, QuarantineStats, ReceiverStats, SpoolStats};
use vigil_dashboards::{MetricsSource, Sample, SampleKind};
use vigil_indexer::IndexStats;
use vigil_rules::{NotifyStats, RulesStats};

/// A sample named `name`, labelled with `labels`.
fn sample(
    (name, help, kind): (&'static str, &'static str, SampleKind),
    labels: &[(&'static str, &str)],
    value: u64,
) -> Sample {
    Sample {
        name,
        help,
        kind,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        value: i64::try_from(value).unwrap_or(i64::MAX),
    }
}

fn load(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

const COUNTER: SampleKind = SampleKind::Counter;
const GAUGE: SampleKind = SampleKind::Gauge;

/// The counters of every source, labelled by source (node/device): each collector, and each
/// receiver with its spool; and the quarantine they share.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Collectors by source.
    pub collectors: Vec<(String, Arc<CollectorStats>)>,
    /// Receivers and their spools by source.
    pub receivers: Vec<(String, Arc<ReceiverStats>, Arc<SpoolStats>)>,
    /// The quarantine file's writer.
    pub quarantine: Option<Arc<QuarantineStats>>,
}

impl MetricsSource for SourceMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        for (source, receiver, spool) in &self.receivers {
            let (r, sp) = (receiver.snapshot(), spool.snapshot());
            let labels = [("source", source.as_str())];
            for (meta, value) in [
                (
                    (
                        "received_bytes",
                        "Bytes received by socket and syslog receivers.",
                        COUNTER,
                    ),
                    r.bytes_received,
                ),
                (
                    ("received_lines", "Lines or messages received.", COUNTER),
                    r.lines,
                ),
                (
                    ("receiver_connections", "Open connections.", GAUGE),
                    r.connections_active,
                ),
                (
                    (
                        "receiver_connections_refused",
                        "Connections refused over the total limit.",
                        COUNTER,
                    ),
                    r.connections_refused,
                ),
                (
                    (
                        "receiver_connections_refused_per_peer",
                        "Connections refused over the per-peer limit.",
                        COUNTER,
                    ),
                    r.connections_refused_per_peer,
                ),
                (
                    (
                        "receiver_refused_not_allowed",
                        "Connections or datagrams from peers outside the allow-list.",
                        COUNTER,
                    ),
                    r.refused_not_allowed,
                ),
                (
                    (
                        "receiver_idle_closed",
                        "Connections closed after the idle timeout.",
                        COUNTER,
                    ),
                    r.connections_idle_closed,
                ),
                (
                    (
                        "receiver_rejected",
                        "Oversize, truncated or malformed input, quarantined.",
                        COUNTER,
                    ),
                    r.oversize + r.truncated + r.malformed,
                ),
                (
                    (
                        "spool_bytes",
                        "Bytes in the spool not yet acknowledged.",
                        GAUGE,
                    ),
                    sp.spool_bytes,
                ),
                (
                    (
                        "spool_dropped_lines",
                        "Lines dropped because the spool was full.",
                        COUNTER,
                    ),
                    sp.dropped_lines,
                ),
            ] {
                out.push(sample(meta, &labels, value));
            }
        }
        for (source, stats) in &self.collectors {
            let s = stats.snapshot();
            let labels = [("source", source.as_str())];
            for (meta, value) in [
                (
                    ("lines_read", "Audit lines read from files.", COUNTER),
                    s.lines_read,
                ),
                (
                    ("bytes_read", "Bytes read from files.", COUNTER),
                    s.bytes_read,
                ),
                (
                    (
                        "events_published",
                        "Events published and acknowledged downstream.",
                        COUNTER,
                    ),
                    s.events_published,
                ),
                (
                    (
                        "parse_errors",
                        "Lines that are not audit entries, quarantined.",
                        COUNTER,
                    ),
                    s.rejected,
                ),
                (
                    (
                        "oversize_lines",
                        "Lines over the size limit, quarantined.",
                        COUNTER,
                    ),
                    s.oversize,
                ),
                (
                    (
                        "oversize_envelopes",
                        "Lines whose signed envelope is over what the bus takes, quarantined.",
                        COUNTER,
                    ),
                    s.envelopes_oversize,
                ),
                (
                    (
                        "refused_envelopes",
                        "Records the bus refused for good after they were published, quarantined.",
                        COUNTER,
                    ),
                    s.envelopes_refused,
                ),
                (
                    ("rotations", "File rotations followed.", COUNTER),
                    s.rotations,
                ),
                (
                    ("lag_bytes", "Bytes in the file past the checkpoint.", GAUGE),
                    s.lag_bytes,
                ),
            ] {
                out.push(sample(meta, &labels, value));
            }
        }
        if let Some(q) = &self.quarantine {
            let q = q.snapshot();
            for (meta, value) in [
                (
                    (
                        "quarantine_written",
                        "Records written to the quarantine file.",
                        COUNTER,
                    ),
                    q.entries_written,
                ),
                (
                    (
                        "quarantine_redacted",
                        "Quarantined records in which plaintext tokens were replaced.",
                        COUNTER,
                    ),
                    q.entries_redacted,
                ),
                (
                    (
                        "quarantine_dropped_rate",
                        "Quarantine records dropped over the rate limit.",
                        COUNTER,
                    ),
                    q.dropped_rate,
                ),
                (
                    (
                        "quarantine_dropped_queue_full",
                        "Quarantine records dropped because the writer was behind.",
                        COUNTER,
                    ),
                    q.dropped_queue_full,
                ),
                (
                    (
                        "quarantine_write_errors",
                        "Quarantine records that could not be written.",
                        COUNTER,
                    ),
                    q.write_errors,
                ),
            ] {
                out.push(sample(meta, &[], value));
            }
        }
    }
}

/// The indexer's counters.
#[derive(Debug)]
pub struct IndexMetrics(pub Arc<IndexStats>);

impl MetricsSource for IndexMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        let s = &self.0;
        for (meta, value) in [
            (("events_indexed", "Events added to the index.", COUNTER), &s.events_indexed),
            (("events_replaced", "Events whose id was already in the index (re-deliveries), replaced in place.", COUNTER), &s.events_replaced),
            (("events_time_out_of_range", "Events indexed at receive time: their own time is outside what the index stores.", COUNTER), &s.time_out_of_range),
            (("events_unindexable", "Events the index could not take, refused alone.", COUNTER), &s.unindexable),
            (("messages_rejected", "Bus messages refused by the indexer (bad signature, not an entry).", COUNTER), &s.rejected),
            (("messages_quarantined", "Refused bus messages published to the quarantine topic.", COUNTER), &s.quarantined),
            (("index_commits", "Index commits.", COUNTER), &s.commits),
        ] {
            out.push(sample(meta, &[], load(value)));
        }
        let last = load(&s.last_commit_unix_ms) as i64;
        let now = chrono::Utc::now().timestamp_millis();
        out.push(Sample {
            name: "index_commit_age_ms",
            help: "Milliseconds since the last index commit.",
            kind: GAUGE,
            labels: vec![],
            value: if last == 0 { -1 } else { now - last },
        });
    }
}

/// The rules engine's counters, and its webhook notifier's.
#[derive(Debug)]
pub struct RulesMetrics(pub Arc<RulesStats>, pub Option<Arc<NotifyStats>>);

impl MetricsSource for RulesMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        if let Some(n) = &self.1 {
            for (meta, value) in [
                (
                    (
                        "webhook_delivered",
                        "Alert revisions the webhook accepted.",
                        COUNTER,
                    ),
                    &n.delivered,
                ),
                (
                    (
                        "webhook_failures",
                        "Failed webhook attempts (retried).",
                        COUNTER,
                    ),
                    &n.failures,
                ),
                (
                    (
                        "webhook_dead_lettered",
                        "Alert revisions the webhook refused for good, kept as dead letters.",
                        COUNTER,
                    ),
                    &n.dead_lettered,
                ),
            ] {
                out.push(sample(meta, &[], load(value)));
            }
        }
        let s = &self.0;
        for (meta, value) in [
            (
                (
                    "rules_events",
                    "Events evaluated by the rules engine.",
                    COUNTER,
                ),
                &s.events,
            ),
            (
                (
                    "alerts",
                    "Alert revisions stored (new alerts and updates).",
                    COUNTER,
                ),
                &s.alerts,
            ),
            (
                (
                    "rules_rejected",
                    "Bus messages refused by the rules engine.",
                    COUNTER,
                ),
                &s.rejected,
            ),
        ] {
            out.push(sample(meta, &[], load(value)));
        }
    }
}

/// The Kafka client's counters.
#[derive(Debug)]
pub struct KafkaMetrics(pub Arc<KafkaStats>);

impl MetricsSource for KafkaMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        for (meta, value) in [
            (
                (
                    "kafka_records_refused",
                    "Records the producer or broker refused for good, quarantined.",
                    COUNTER,
                ),
                self.0.records_refused(),
            ),
            (
                (
                    "kafka_stall_rejoins",
                    "Consumers that held partitions with lag, received nothing, and re-joined.",
                    COUNTER,
                ),
                self.0.stall_rejoins(),
            ),
        ] {
            out.push(sample(meta, &[], value));
        }
    }
}
