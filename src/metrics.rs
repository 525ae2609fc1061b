//! The binary's bridges from each stage's counters to the `/metrics` endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vigil_collector::CollectorStats;
use vigil_dashboards::{MetricsSource, Sample, SampleKind};
use vigil_indexer::IndexStats;

/// The counters of every file collector, labelled by source (node/device).
#[derive(Debug)]
pub struct CollectorMetrics(pub Vec<(String, Arc<CollectorStats>)>);

impl MetricsSource for CollectorMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        for (source, stats) in &self.0 {
            let s = stats.snapshot();
            let mut push = |name, help, kind, value: u64| {
                out.push(Sample {
                    name,
                    help,
                    kind,
                    labels: vec![("source", source.clone())],
                    value: i64::try_from(value).unwrap_or(i64::MAX),
                })
            };
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
            name: "messages_rejected",
            help: "Bus messages refused by the indexer (bad signature, not an entry).",
            kind: SampleKind::Counter,
            labels: vec![],
            value: load(&self.0.rejected),
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
