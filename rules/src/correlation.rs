//! Sigma correlation rules (`event_count`, `value_count`, `temporal`, `temporal_ordered`):
//! their loading and their windows, per group key, in event time.
//!
//! A window keeps the events of the referenced rules that fell within `timespan` of the
//! newest one. The condition is checked at each event that enters a window; the engine's
//! deduplication turns the hits of one burst into one alert.
//!
//! State is bounded: a group idle past the timespan is dropped, a window holds at most
//! [`MAX_WINDOW_EVENTS`], and a correlation at most [`MAX_CORRELATION_GROUPS`] groups, the
//! least recently active tenth evicted (and counted) when a new one would pass it.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::alert::HitEvent;
use crate::error::Problem;
use crate::rule::{str_list, RuleMeta};

/// Most events one group's window holds; older ones are dropped first. Bounds memory under
/// a flood; counts above it are capped (and any sane threshold fires long before).
pub const MAX_WINDOW_EVENTS: usize = 20_000;

/// Most groups with a window per correlation; past it the least recently active tenth is
/// evicted.
pub const MAX_CORRELATION_GROUPS: usize = 50_000;

/// What a correlation counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrelationKind {
    /// Events of the referenced rules.
    EventCount,
    /// Distinct values of a field among those events.
    ValueCount {
        /// The field whose distinct values are counted.
        field: String,
    },
    /// Every referenced rule matched within the timespan, in any order.
    Temporal,
    /// Every referenced rule matched within the timespan, in the order listed.
    TemporalOrdered,
}

/// A numeric condition: every bound given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Threshold {
    /// `gt`.
    pub gt: Option<f64>,
    /// `gte`.
    pub gte: Option<f64>,
    /// `lt`.
    pub lt: Option<f64>,
    /// `lte`.
    pub lte: Option<f64>,
    /// `eq`.
    pub eq: Option<f64>,
    /// `neq`.
    pub neq: Option<f64>,
}

impl Threshold {
    /// Whether `n` satisfies every bound.
    pub fn holds(&self, n: usize) -> bool {
        let n = n as f64;
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
            && self.eq.is_none_or(|b| n == b)
            && self.neq.is_none_or(|b| n != b)
    }
}

/// A loaded correlation rule.
#[derive(Debug, Clone)]
pub struct Correlation {
    /// Title, level, tags, ….
    pub meta: RuleMeta,
    /// What it counts.
    pub kind: CorrelationKind,
    /// The `rules:` references, as written (names or ids).
    pub rules: Vec<String>,
    /// `group-by` fields.
    pub group_by: Vec<String>,
    /// `timespan`.
    pub timespan: Duration,
    /// `condition` (temporal kinds: how many of the rules; all of them when absent).
    pub condition: Threshold,
    /// `generate`: whether the referenced rules also alert on their own.
    pub generate: bool,
}

impl Correlation {
    /// Compiles a document with a `correlation:` block.
    pub(crate) fn compile(meta: RuleMeta, doc: &Mapping) -> Result<Correlation, Problem> {
        let Some(Yaml::Mapping(c)) = doc.get("correlation") else {
            return Err(Problem::new("`correlation` must be a map"));
        };
        let kind_name = match c.get("type") {
            Some(Yaml::String(t)) => t.clone(),
            _ => return Err(Problem::new("correlation needs a `type`")),
        };
        let rules = str_list(c, "rules")?;
        if rules.is_empty() {
            return Err(Problem::new("correlation needs `rules`"));
        }
        let group_by = str_list(c, "group-by")?;
        let timespan = match c.get("timespan").or_else(|| c.get("timeframe")) {
            Some(Yaml::String(s)) => parse_timespan(s)?,
            _ => return Err(Problem::new("correlation needs a `timespan` like 5m")),
        };
        let (condition, cond_field) = match c.get("condition") {
            Some(Yaml::Mapping(m)) => parse_threshold(m)?,
            None => (Threshold::default(), None),
            Some(_) => return Err(Problem::new("correlation `condition` must be a map")),
        };
        let field = match c.get("field") {
            Some(Yaml::String(f)) => Some(f.clone()),
            _ => cond_field,
        };
        let kind = match kind_name.as_str() {
            "event_count" => CorrelationKind::EventCount,
            "value_count" => CorrelationKind::ValueCount {
                field: field.ok_or_else(|| {
                    Problem::new("value_count needs a `field` (in `condition` or beside it)")
                })?,
            },
            "temporal" => CorrelationKind::Temporal,
            "temporal_ordered" => CorrelationKind::TemporalOrdered,
            other => {
                return Err(Problem::new(format!(
                    "correlation type {other:?} is not event_count, value_count, temporal or temporal_ordered"
                )))
            }
        };
        let counting = matches!(
            kind,
            CorrelationKind::EventCount | CorrelationKind::ValueCount { .. }
        );
        if counting && condition == Threshold::default() {
            return Err(Problem::new(
                "correlation needs a `condition` such as {gte: 10}",
            ));
        }
        let condition = if counting || condition != Threshold::default() {
            condition
        } else {
            Threshold {
                gte: Some(rules.len() as f64),
                ..Threshold::default()
            }
        };
        let generate = match c.get("generate").or_else(|| doc.get("generate")) {
            None => false,
            Some(Yaml::Bool(b)) => *b,
            Some(_) => return Err(Problem::new("`generate` must be true or false")),
        };
        Ok(Correlation {
            meta,
            kind,
            rules,
            group_by,
            timespan,
            condition,
            generate,
        })
    }
}

fn parse_threshold(m: &Mapping) -> Result<(Threshold, Option<String>), Problem> {
    let mut t = Threshold::default();
    let mut field = None;
    for (k, v) in m {
        let Yaml::String(k) = k else {
            return Err(Problem::new("condition keys must be strings"));
        };
        if k == "field" {
            match v {
                Yaml::String(f) => field = Some(f.clone()),
                _ => return Err(Problem::new("condition `field` must be a string")),
            }
            continue;
        }
        let n = v
            .as_f64()
            .ok_or_else(|| Problem::new(format!("condition `{k}` must be a number")))?;
        let slot = match k.as_str() {
            "gt" => &mut t.gt,
            "gte" => &mut t.gte,
            "lt" => &mut t.lt,
            "lte" => &mut t.lte,
            "eq" => &mut t.eq,
            "neq" => &mut t.neq,
            other => {
                return Err(Problem::new(format!(
                    "condition operator {other:?} is not gt, gte, lt, lte, eq or neq"
                )))
            }
        };
        *slot = Some(n);
    }
    Ok((t, field))
}

/// `30s`, `5m`, `1h`, `7d`, `2w`.
pub fn parse_timespan(s: &str) -> Result<Duration, Problem> {
    let s = s.trim();
    let bad = || {
        Problem::new(format!(
            "timespan {s:?} is not a number and a unit (s, m, h, d, w)"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = s[..split].parse().map_err(|_| bad())?;
    let secs = match &s[split..] {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    Ok(Duration::seconds(secs))
}

/// One event in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    event: HitEvent,
    /// Which of the referenced rules matched (bit i = `rules[i]`).
    rules: u64,
    /// The value_count field's value.
    value: Option<String>,
}

/// The window of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Window {
    entries: VecDeque<Entry>,
    /// Occurrences of each value in `entries`, for value_count.
    values: BTreeMap<String, u32>,
}

impl Window {
    fn pop_front(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            if let Some(v) = old.value {
                if let Some(n) = self.values.get_mut(&v) {
                    *n -= 1;
                    if *n == 0 {
                        self.values.remove(&v);
                    }
                }
            }
        }
    }
}

/// The windows of one correlation, by group key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelationState {
    groups: BTreeMap<String, Window>,
    /// Event time of the next sweep of idle groups.
    next_sweep: Option<DateTime<Utc>>,
    /// Groups evicted to stay under [`MAX_CORRELATION_GROUPS`], ever.
    #[serde(default)]
    evicted: u64,
}

impl CorrelationState {
    /// Adds an event that matched the referenced rules in `rules_mask`; returns whether the
    /// condition now holds for its group (then [`window_events`](Self::window_events) has the
    /// events behind it).
    pub(crate) fn update(
        &mut self,
        corr: &Correlation,
        group_key: String,
        event: HitEvent,
        rules_mask: u64,
        value: Option<String>,
    ) -> bool {
        let now = event.time;
        self.sweep(corr.timespan, now);
        if self.groups.len() >= MAX_CORRELATION_GROUPS && !self.groups.contains_key(&group_key) {
            self.evict();
        }
        let window = self.groups.entry(group_key).or_default();
        let horizon = now - corr.timespan;
        while window
            .entries
            .front()
            .is_some_and(|e| e.event.time < horizon)
        {
            window.pop_front();
        }
        if window.entries.len() >= MAX_WINDOW_EVENTS {
            window.pop_front();
        }
        if let Some(v) = &value {
            *window.values.entry(v.clone()).or_default() += 1;
        }
        window.entries.push_back(Entry {
            event,
            rules: rules_mask,
            value,
        });
        let n = match &corr.kind {
            CorrelationKind::EventCount => window.entries.len(),
            CorrelationKind::ValueCount { .. } => window.values.len(),
            CorrelationKind::Temporal => {
                let all = window.entries.iter().fold(0u64, |acc, e| acc | e.rules);
                all.count_ones() as usize
            }
            CorrelationKind::TemporalOrdered => ordered_prefix(&window.entries, corr.rules.len()),
        };
        corr.condition.holds(n)
    }

    /// The events in the window of `group_key`. Copying a full window costs as much as
    /// thousands of evaluations, so callers ask only when an alert is new.
    pub(crate) fn window_events(&self, group_key: &str) -> Vec<HitEvent> {
        self.groups
            .get(group_key)
            .map(|w| w.entries.iter().map(|e| e.event.clone()).collect())
            .unwrap_or_default()
    }

    /// Drops groups idle for longer than the timespan, at most once per timespan.
    fn sweep(&mut self, timespan: Duration, now: DateTime<Utc>) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let horizon = now - timespan;
        self.groups
            .retain(|_, w| w.entries.back().is_some_and(|e| e.event.time >= horizon));
        self.next_sweep = Some(now + timespan);
    }

    /// How many groups have a window.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Groups evicted to stay under [`MAX_CORRELATION_GROUPS`] since the state began.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Drops the least recently active tenth of the groups: a tenth at a time, so that a
    /// flood of new groups sorts once per many events.
    fn evict(&mut self) {
        let mut by_age: Vec<(Option<DateTime<Utc>>, String)> = self
            .groups
            .iter()
            .map(|(k, w)| (w.entries.back().map(|e| e.event.time), k.clone()))
            .collect();
        by_age.sort_unstable();
        let n = (MAX_CORRELATION_GROUPS / 10).max(1);
        for (_, key) in by_age.into_iter().take(n) {
            self.groups.remove(&key);
            self.evicted += 1;
        }
    }
}

/// How many of the rules matched in order: rule 0, then rule 1 at or after it, ….
fn ordered_prefix(entries: &VecDeque<Entry>, n: usize) -> usize {
    let mut next = 0;
    for e in entries {
        while next < n && e.rules & (1 << next) != 0 {
            // One event may satisfy several steps only if it matches each of them.
            next += 1;
        }
        if next == n {
            break;
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5m").ok(), Some(Duration::seconds(300)));
        assert_eq!(parse_timespan("2h").ok(), Some(Duration::seconds(7200)));
        assert_eq!(parse_timespan("1w").ok(), Some(Duration::seconds(604_800)));
        for bad in ["", "m", "5", "5y", "0s", "-1m", "1.5h"] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds() {
        let t = Threshold {
            gte: Some(3.0),
            lt: Some(5.0),
            ..Threshold::default()
        };
        assert!(!t.holds(2));
        assert!(t.holds(3));
        assert!(t.holds(4));
        assert!(!t.holds(5));
    }
}
