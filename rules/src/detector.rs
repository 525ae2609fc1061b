//! Anomaly detectors, for what Sigma cannot say: a value never seen before for a group
//! (an identity's remote address, an identity on a new mount) and a count far above the
//! group's own baseline.
//!
//! Detectors are YAML documents beside the rules, with the same metadata (title, id,
//! level, tags, falsepositives), an optional `filter` in Sigma `detection` syntax that
//! picks the events they see, and a `detector` block:
//!
//! ```yaml
//! detector:
//!   type: new_value            # or: spike
//!   group-by: [auth.entity_id]
//!   field: request.remote_address
//!   learning: {events: 50, duration: 7d}   # learned at whichever comes first
//!   # spike only: bucket: 1m, factor: 10, min-count: 100
//! ```
//!
//! A group learns silently until it has seen `learning.events` events or has existed for
//! `learning.duration` (event time), so a short file replayed through `vigil rules test`
//! behaves like a long-running `vigil run`.
//!
//! State is bounded: a group idle for [`DETECTOR_MAX_IDLE`] (event time) is forgotten (it
//! learns again if it comes back), and a detector holds at most [`MAX_DETECTOR_GROUPS`]
//! groups, the least recently seen tenth going when a new one would pass it (counted).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::correlation::parse_timespan;
use crate::error::Problem;
use crate::rule::{opt_str, str_list, Detection, RuleMeta};

/// Most distinct values a new_value group remembers; past it, no new value alerts for the
/// group (it is too diverse for "new" to mean anything) and memory stays bounded.
pub const MAX_VALUES_PER_GROUP: usize = 1024;

/// Most groups one detector tracks; past it the least recently seen tenth is evicted.
pub const MAX_DETECTOR_GROUPS: usize = 50_000;

/// A group unseen for this long (event time) is forgotten.
pub const DETECTOR_MAX_IDLE: Duration = Duration::days(30);

/// How often (event time) idle groups are swept.
const SWEEP_EVERY: Duration = Duration::days(1);

/// What a detector looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorKind {
    /// A value of `field` the group never had.
    NewValue {
        /// The field.
        field: String,
    },
    /// A bucket's count far above the group's average bucket.
    Spike {
        /// Bucket length.
        bucket: Duration,
        /// How many times the average a bucket must reach.
        factor: f64,
        /// And at least this many events, so quiet groups do not alert on a handful.
        min_count: u64,
    },
}

/// When a group counts as learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learning {
    /// After this many events of the group…
    pub events: u64,
    /// …or this long after its first event, whichever comes first.
    pub duration: Duration,
}

/// A loaded detector.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Title, level, tags, ….
    pub meta: RuleMeta,
    /// Which events it sees; all when absent.
    pub filter: Option<Detection>,
    /// What it looks for.
    pub kind: DetectorKind,
    /// The fields that make the group key.
    pub group_by: Vec<String>,
    /// When a group is learned.
    pub learning: Learning,
}

impl Detector {
    /// Compiles a document with a `detector:` block.
    pub(crate) fn compile(meta: RuleMeta, doc: &Mapping) -> Result<Detector, Problem> {
        let Some(Yaml::Mapping(d)) = doc.get("detector") else {
            return Err(Problem::new("`detector` must be a map"));
        };
        let filter = match doc.get("filter") {
            Some(f) => Some(Detection::compile(f)?),
            None => None,
        };
        let group_by = str_list(d, "group-by")?;
        if group_by.is_empty() {
            return Err(Problem::new("detector needs `group-by`"));
        }
        let learning = match d.get("learning") {
            Some(Yaml::Mapping(l)) => Learning {
                events: match l.get("events") {
                    Some(v) => v
                        .as_u64()
                        .ok_or_else(|| Problem::new("`learning.events` must be a count"))?,
                    None => u64::MAX,
                },
                duration: match opt_str(l, "duration")? {
                    Some(s) => parse_timespan(&s)?,
                    None => Duration::MAX,
                },
            },
            _ => {
                return Err(Problem::new(
                    "detector needs `learning: {events: N, duration: 7d}`",
                ))
            }
        };
        if learning.events == u64::MAX && learning.duration == Duration::MAX {
            return Err(Problem::new("`learning` needs `events` or `duration`"));
        }
        let kind = match opt_str(d, "type")?.as_deref() {
            Some("new_value") => DetectorKind::NewValue {
                field: opt_str(d, "field")?
                    .ok_or_else(|| Problem::new("new_value needs a `field`"))?,
            },
            Some("spike") => {
                let bucket = parse_timespan(
                    &opt_str(d, "bucket")?.ok_or_else(|| Problem::new("spike needs a `bucket`"))?,
                )?;
                let factor = d
                    .get("factor")
                    .and_then(Yaml::as_f64)
                    .filter(|f| *f > 1.0)
                    .ok_or_else(|| Problem::new("spike needs a `factor` above 1"))?;
                let min_count = d
                    .get("min-count")
                    .and_then(Yaml::as_u64)
                    .ok_or_else(|| Problem::new("spike needs a `min-count`"))?;
                DetectorKind::Spike {
                    bucket,
                    factor,
                    min_count,
                }
            }
            Some(other) => {
                return Err(Problem::new(format!(
                    "detector type {other:?} is not new_value or spike"
                )))
            }
            None => return Err(Problem::new("detector needs a `type`")),
        };
        Ok(Detector {
            meta,
            filter,
            kind,
            group_by,
            learning,
        })
    }
}

/// What a detector knows of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    first_seen: DateTime<Utc>,
    /// Newest event of the group; absent in state saved before it was kept.
    #[serde(default)]
    last_seen: Option<DateTime<Utc>>,
    events: u64,
    /// new_value: values seen.
    values: BTreeSet<String>,
    /// spike: start of the current bucket and its count.
    bucket_start: Option<DateTime<Utc>>,
    bucket_count: u64,
    /// spike: exponentially weighted mean of past bucket counts.
    mean: f64,
    /// spike: buckets folded into the mean.
    buckets: u64,
}

/// What a detector fires on, for the alert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub group_key: String,
}

/// A detector's groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorState {
    groups: BTreeMap<String, Group>,
    /// Groups evicted to stay under [`MAX_DETECTOR_GROUPS`], ever.
    #[serde(default)]
    evicted: u64,
    /// Event time of the next sweep of idle groups.
    #[serde(default)]
    next_sweep: Option<DateTime<Utc>>,
}

impl Group {
    fn last_seen(&self) -> DateTime<Utc> {
        self.last_seen.unwrap_or(self.first_seen)
    }
}

/// Weight of the newest bucket in the mean: about the last 20 buckets count.
const ALPHA: f64 = 0.1;

impl DetectorState {
    /// Feeds one event (already through the filter) with its group key and, for new_value,
    /// its values of the field. Returns a finding if the detector fires.
    pub(crate) fn update(
        &mut self,
        det: &Detector,
        group_key: &str,
        time: DateTime<Utc>,
        values: &[String],
    ) -> Option<Finding> {
        self.bound(group_key, time);
        let group = self
            .groups
            .entry(group_key.to_owned())
            .or_insert_with(|| Group {
                first_seen: time,
                last_seen: None,
                events: 0,
                values: BTreeSet::new(),
                bucket_start: None,
                bucket_count: 0,
                mean: 0.0,
                buckets: 0,
            });
        // Learned is judged before this event counts: the event that completes learning
        // is still part of the history.
        let learned = group.events >= det.learning.events
            || time.signed_duration_since(group.first_seen) >= det.learning.duration;
        group.events += 1;
        group.last_seen = Some(group.last_seen().max(time));
        match &det.kind {
            DetectorKind::NewValue { field } => {
                let mut new = Vec::new();
                for v in values {
                    if !group.values.contains(v) && group.values.len() < MAX_VALUES_PER_GROUP {
                        group.values.insert(v.clone());
                        new.push(v.as_str());
                    }
                }
                if learned && !new.is_empty() {
                    return Some(Finding {
                        group_key: format!("{group_key} {field}={}", new.join(",")),
                    });
                }
                None
            }
            DetectorKind::Spike {
                bucket,
                factor,
                min_count,
            } => {
                let start = group.bucket_start.get_or_insert(time);
                if time >= *start + *bucket {
                    // Fold the finished bucket, then the empty ones after it.
                    let elapsed = time.signed_duration_since(*start);
                    let n = (elapsed.num_milliseconds() / bucket.num_milliseconds().max(1)).max(1);
                    group.mean = fold(group.mean, group.bucket_count as f64, group.buckets);
                    group.buckets += 1;
                    let empty = (n - 1).min(10_000);
                    for _ in 0..empty {
                        group.mean = fold(group.mean, 0.0, group.buckets);
                        group.buckets += 1;
                    }
                    *start += *bucket * (n as i32);
                    group.bucket_count = 0;
                }
                group.bucket_count += 1;
                let count = group.bucket_count;
                // Fire once per bucket, when the count first crosses the bar.
                let bar = (*factor * group.mean).max(*min_count as f64);
                if learned && group.buckets > 0 && count as f64 >= bar && (count as f64) < bar + 1.0
                {
                    return Some(Finding {
                        group_key: group_key.to_owned(),
                    });
                }
                None
            }
        }
    }

    /// How many groups the detector tracks.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Groups evicted to stay under [`MAX_DETECTOR_GROUPS`] since the state began.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Before an event of `group_key` at `time`: forgets idle groups (at most once a day of
    /// event time) and makes room when a new group would pass the cap.
    fn bound(&mut self, group_key: &str, time: DateTime<Utc>) {
        if self.next_sweep.is_none_or(|t| time >= t) {
            let horizon = time - DETECTOR_MAX_IDLE;
            self.groups.retain(|_, g| g.last_seen() >= horizon);
            self.next_sweep = Some(time + SWEEP_EVERY);
        }
        if self.groups.len() >= MAX_DETECTOR_GROUPS && !self.groups.contains_key(group_key) {
            // A tenth at a time, so that a flood of new groups sorts once per many events.
            let mut by_age: Vec<(DateTime<Utc>, String)> = self
                .groups
                .iter()
                .map(|(k, g)| (g.last_seen(), k.clone()))
                .collect();
            by_age.sort_unstable();
            let n = (MAX_DETECTOR_GROUPS / 10).max(1);
            for (_, key) in by_age.into_iter().take(n) {
                self.groups.remove(&key);
                self.evicted += 1;
            }
        }
    }
}

fn fold(mean: f64, x: f64, n: u64) -> f64 {
    if n == 0 {
        x
    } else {
        mean + ALPHA * (x - mean)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn new_value_detector() -> Detector {
        let yaml = r#"
title: New address
id: d
level: medium
detector:
  type: new_value
  group-by: [auth.entity_id]
  field: request.remote_address
  learning: {events: 1}
"#;
        let doc: Mapping = serde_yaml_ng::from_str(yaml).expect("yaml");
        let meta = RuleMeta {
            id: "d".into(),
            name: None,
            title: "New address".into(),
            description: String::new(),
            status: None,
            level: crate::rule::Level::Medium,
            tags: Vec::new(),
            falsepositives: Vec::new(),
            file: "test".into(),
        };
        Detector::compile(meta, &doc).expect("compiles")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_795_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn groups_are_capped_oldest_first_and_idle_ones_forgotten() {
        let det = new_value_detector();
        let mut state = DetectorState::default();
        let values = ["10.0.0.1".to_owned()];
        for i in 0..MAX_DETECTOR_GROUPS {
            state.update(&det, &format!("g{i}"), at(i as i64), &values);
        }
        assert_eq!(state.groups(), MAX_DETECTOR_GROUPS);
        assert_eq!(state.evicted(), 0);
        // One more group: the least recently seen tenth goes, the newest stay.
        state.update(&det, "newcomer", at(MAX_DETECTOR_GROUPS as i64), &values);
        assert_eq!(state.evicted(), (MAX_DETECTOR_GROUPS / 10) as u64);
        assert!(!state.groups.contains_key("g0"));
        assert!(state
            .groups
            .contains_key(&format!("g{}", MAX_DETECTOR_GROUPS - 1)));
        assert!(state.groups.contains_key("newcomer"));

        // A month later only the group that is still active remains.
        let later = MAX_DETECTOR_GROUPS as i64 + DETECTOR_MAX_IDLE.num_seconds() + 1;
        state.update(&det, "newcomer", at(later), &values);
        assert_eq!(state.groups(), 1);
    }
}
