//! The binary's bridges from each stage's counters to the `/metrics` endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vigil_collector::{CollectorStats, ReceiverStats, SpoolStats};
use vigil_dashboards::{MetricsSource, Sample, SampleKind};
use vigil_indexer::IndexStats;
use vigil_rules::RulesStats;

/// One sample of `source`, labelled with it.
fn source_sample(
    source: &str,
    name: &'static str,
    help: &'static str,
    kind: SampleKind,
    value: u64,
) -> Sample {
    Sample {
        name,
        help,
        kind,
        labels: vec![("source", source.to_owned())],
        value: i64::try_from(value).unwrap_or(i64::MAX),
    }
}

/// The counters of every source, labelled by source (node/device): each collector, and each
/// receiver with its spool.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Collectors by source.
    pub collectors: Vec<(String, Arc<CollectorStats>)>,
    /// Receivers and their spools by source.
    pub receivers: Vec<(String, Arc<ReceiverStats>, Arc<SpoolStats>)>,
}

impl MetricsSource for SourceMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        for (source, receiver, spool) in &self.receivers {
            let r = receiver.snapshot();
            let sp = spool.snapshot();
            let mut push =
                |name, help, kind, value| out.push(source_sample(source, name, help, kind, value));
            push(
                "received_bytes",
                "Bytes received by socket and syslog receivers.",
                SampleKind::Counter,
                r.bytes_received,
            );
            push(
                "received_lines",
                "Lines or messages received.",
                SampleKind::Counter,
                r.lines,
            );
            push(
                "receiver_connections",
                "Open connections.",
                SampleKind::Gauge,
                r.connections_active,
            );
            push(
                "receiver_connections_refused",
                "Connections refused over the limit.",
                SampleKind::Counter,
                r.connections_refused,
            );
            push(
                "receiver_rejected",
                "Oversize, truncated or malformed input, quarantined.",
                SampleKind::Counter,
                r.oversize + r.truncated + r.malformed,
            );
            push(
                "spool_bytes",
                "Bytes in the spool not yet acknowledged.",
                SampleKind::Gauge,
                sp.spool_bytes,
            );
            push(
                "spool_dropped_lines",
                "Lines dropped because the spool was full.",
                SampleKind::Counter,
                sp.dropped_lines,
            );
        }
        for (source, stats) in &self.collectors {
            let s = stats.snapshot();
            let mut push =
                |name, help, kind, value| out.push(source_sample(source, name, help, kind, value));
            push(
                "lines_read",
                "Audit lines read from files.",
                SampleKind::Counter,
                s.lines_read,
            );
            push(
                "bytes_read",
                "Bytes read from files.",
                SampleKind::Counter,
                s.bytes_read,
            );
            push(
                "events_published",
                "Events published and acknowledged downstream.",
                SampleKind::Counter,
                s.events_published,
            );
            push(
                "parse_errors",
                "Lines that are not audit entries, quarantined.",
                SampleKind::Counter,
                s.rejected,
            );
            push(
                "oversize_lines",
                "Lines over the size limit, quarantined.",
                SampleKind::Counter,
                s.oversize,
            );
            push(
                "rotations",
                "File rotations followed.",
                SampleKind::Counter,
                s.rotations,
            );
            push(
                "lag_bytes",
                "Bytes in the file past the checkpoint.",
                SampleKind::Gauge,
                s.lag_bytes,
            );
        }
    }
}

/// The indexer's counters.
#[derive(Debug)]
pub struct IndexMetrics(pub Arc<IndexStats>);

impl MetricsSource for IndexMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        let load = |v: &std::sync::atomic::AtomicU64| {
            i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        out.push(Sample {
            name: "events_indexed",
            help: "Events added to the index.",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.events_indexed),
        });
        out.push(Sample {
            name: "events_replaced",
            help: "Events whose id was already in the index (re-deliveries), replaced in place.",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.events_replaced),
        });
        out.push(Sample {
            name: "messages_rejected",
            help: "Bus messages refused by the indexer (bad signature, not an entry).",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.rejected),
        });
        out.push(Sample {
            name: "messages_quarantined",
            help: "Refused bus messages published to the quarantine topic.",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.quarantined),
        });
        out.push(Sample {
            name: "index_commits",
            help: "Index commits.",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.commits),
        });
        let last = load(&self.0.last_commit_unix_ms);
        let now = chrono::Utc::now().timestamp_millis();
        out.push(Sample {
            name: "index_commit_age_ms",
            help: "Milliseconds since the last index commit.",
            kind: SampleKind::Gauge,
            labels: vec![],
            value: if last == 0 { -1 } else { now - last },
        });
    }
}

/// The rules engine's counters.
#[derive(Debug)]
pub struct RulesMetrics(pub Arc<RulesStats>);

impl MetricsSource for RulesMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        let load = |v: &std::sync::atomic::AtomicU64| {
            i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        for (name, help, value) in [
            (
                "rules_events",
                "Events evaluated by the rules engine.",
                &self.0.events,
            ),
            (
                "alerts",
                "Alert revisions stored (new alerts and updates).",
                &self.0.alerts,
            ),
            (
                "rules_rejected",
                "Bus messages refused by the rules engine.",
                &self.0.rejected,
            ),
        ] {
            out.push(Sample {
                name,
                help,
                kind: SampleKind::Counter,
                labels: vec![],
                value: load(value),
            });
        }
    }
}
