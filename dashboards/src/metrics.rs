//! `/metrics`: Prometheus exposition of the counters every stage keeps. Stages keep plain
//! atomics; a [`MetricsSource`] reads them at scrape time, so the hot paths never touch the
//! metrics library.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Whether a sample only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// Monotonic (exposed with a `_total` suffix).
    Counter,
    /// Any value.
    Gauge,
}

/// One value of one metric, with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name without the `vigil_` prefix, e.g. `lines_read`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: SampleKind,
    /// Label pairs, e.g. `("source", "node-1/main")`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: i64,
}

/// Something that has numbers to report.
pub trait MetricsSource: Send + Sync + Debug + 'static {
    /// Appends the current values.
    fn samples(&self, out: &mut Vec<Sample>);
}

#[derive(Debug)]
struct Sources(Vec<Arc<dyn MetricsSource>>);

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut samples = Vec::new();
        for source in &self.0 {
            source.samples(&mut samples);
        }
        let mut by_name: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            by_name.entry(s.name).or_default().push(s);
        }
        for (name, group) in by_name {
            let kind = group[0].kind;
            let metric_type = match kind {
                SampleKind::Counter => MetricType::Counter,
                SampleKind::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(name, group[0].help, None, metric_type)?;
            // A lone sample without labels is written as `name value`, not `name{} value`.
            if let [single] = group.as_slice() {
                if single.labels.is_empty() {
                    match kind {
                        SampleKind::Counter => {
                            ConstCounter::new(single.value.max(0) as u64).encode(family)?
                        }
                        SampleKind::Gauge => ConstGauge::new(single.value).encode(family)?,
                    }
                    continue;
                }
            }
            for s in group {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let enc = family.encode_family(&labels)?;
                match kind {
                    SampleKind::Counter => ConstCounter::new(s.value.max(0) as u64).encode(enc)?,
                    SampleKind::Gauge => ConstGauge::new(s.value).encode(enc)?,
                }
            }
        }
        Ok(())
    }
}

/// The metrics the server exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics read from `sources` at each scrape.
    pub fn new(sources: Vec<Arc<dyn MetricsSource>>) -> Metrics {
        let mut registry = Registry::with_prefix("vigil");
        registry.register_collector(Box::new(Sources(sources)));
        Metrics { registry }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl MetricsSource for Fixed {
        fn samples(&self, out: &mut Vec<Sample>) {
            for (source, value) in [("a", 3), ("b", 4)] {
                out.push(Sample {
                    name: "lines_read",
                    help: "Lines read.",
                    kind: SampleKind::Counter,
                    labels: vec![("source", source.into())],
                    value,
                });
            }
            out.push(Sample {
                name: "lag_bytes",
                help: "Lag.",
                kind: SampleKind::Gauge,
                labels: vec![],
                value: 7,
            });
        }
    }

    #[test]
    fn renders_counters_and_gauges() {
        let text = Metrics::new(vec![Arc::new(Fixed)]).render();
        assert!(text.contains("# TYPE vigil_lines_read counter"), "{text}");
        assert!(
            text.contains("vigil_lines_read_total{source=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("vigil_lines_read_total{source=\"b\"} 4"),
            "{text}"
        );
        assert!(text.contains("vigil_lag_bytes 7"), "{text}");
    }
}
