//! Alerts and their deduplication: one open alert per rule and group key, into which later
//! hits merge while it is suppressed.
//!
//! An alert is returned once when it fires. Hits during its suppression window are merged
//! into it (count, last seen, ids) and come out as a new revision with the same `id`: when
//! the window ends, or when the caller flushes. Consumers upsert by `id`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_event::EventId;

use crate::rule::{Level, RuleMeta};

/// How many request ids (and event ids) an alert keeps: the first ones.
pub const MAX_REQUEST_IDS: usize = 1000;

/// An alert: a rule, correlation or detector fired for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: the same alert keeps it across revisions.
    pub id: String,
    /// 0 when it fires, then one more at each update.
    pub revision: u32,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// The rule's level.
    pub severity: Level,
    /// The values of the rule's group-by fields, `|`-joined; empty for a rule without.
    pub group_key: String,
    /// Event time of the first event behind the alert.
    pub first_seen: DateTime<Utc>,
    /// Event time of the last event merged in.
    pub last_seen: DateTime<Utc>,
    /// Events behind the alert (every one, even past the id bound).
    pub count: u64,
    /// Vault `request.id`s of those events, first [`MAX_REQUEST_IDS`], no duplicates.
    pub request_ids: Vec<String>,
    /// Vigil event ids of those events, first [`MAX_REQUEST_IDS`].
    pub event_ids: Vec<EventId>,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// The rule's description.
    pub description: String,
}

/// Alert settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertConfig {
    /// After an alert fires, how long (event time, seconds) further hits of the same rule
    /// and group merge into it instead of firing anew.
    pub suppress_secs: i64,
    /// Bound on `request_ids` and `event_ids`.
    pub max_ids: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            suppress_secs: 3600,
            max_ids: MAX_REQUEST_IDS,
        }
    }
}

/// One event behind a hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitEvent {
    /// Event time.
    pub time: DateTime<Utc>,
    /// Vault request id, if any.
    pub request_id: Option<String>,
    /// Vigil event id.
    pub event_id: EventId,
}

/// A rule firing for a group, before deduplication.
#[derive(Debug, Clone)]
pub(crate) struct Hit<'a> {
    pub meta: &'a RuleMeta,
    pub group_key: String,
    /// Every event behind the hit (a correlation's whole window).
    pub events: Vec<HitEvent>,
    /// The event that made it fire: the only one new to an open alert it merges into.
    pub trigger: HitEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenAlert {
    alert: Alert,
    suppressed_until: DateTime<Utc>,
    /// Merged into since last returned.
    dirty: bool,
}

/// The open alerts, keyed by rule id and group key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBook {
    open: BTreeMap<String, BTreeMap<String, OpenAlert>>,
}

impl AlertBook {
    /// Records a hit; returns the alert if it fires (a new one), `None` if it merged into
    /// an open one. Revisions of alerts whose window ended are pushed to `out`.
    pub(crate) fn record(&mut self, hit: Hit<'_>, config: &AlertConfig, out: &mut Vec<Alert>) {
        let Some(last) = hit.events.iter().map(|e| e.time).max() else {
            return;
        };
        let by_group = self.open.entry(hit.meta.id.clone()).or_default();
        if let Some(open) = by_group.get_mut(&hit.group_key) {
            if last < open.suppressed_until {
                merge(&mut open.alert, std::slice::from_ref(&hit.trigger), config);
                open.dirty = true;
                return;
            }
            if let Some(old) = by_group.remove(&hit.group_key) {
                if old.dirty {
                    let mut a = old.alert;
                    a.revision += 1;
                    out.push(a);
                }
            }
        }
        let first = hit.events.iter().map(|e| e.time).min().unwrap_or(last);
        let mut alert = Alert {
            id: alert_id(&hit.meta.id, &hit.group_key, first),
            revision: 0,
            rule_id: hit.meta.id.clone(),
            title: hit.meta.title.clone(),
            severity: hit.meta.level,
            group_key: hit.group_key.clone(),
            first_seen: first,
            last_seen: last,
            count: 0,
            request_ids: Vec::new(),
            event_ids: Vec::new(),
            tags: hit.meta.tags.clone(),
            description: hit.meta.description.clone(),
        };
        merge(&mut alert, &hit.events, config);
        out.push(alert.clone());
        by_group.insert(
            hit.group_key,
            OpenAlert {
                alert,
                suppressed_until: last + chrono::Duration::seconds(config.suppress_secs),
                dirty: false,
            },
        );
    }

    /// Whether a hit of `rule_id` for `group_key` at `time` would merge into an open alert.
    pub(crate) fn suppresses(&self, rule_id: &str, group_key: &str, time: DateTime<Utc>) -> bool {
        self.open
            .get(rule_id)
            .and_then(|g| g.get(group_key))
            .is_some_and(|open| time < open.suppressed_until)
    }

    /// Closes alerts whose suppression ended before `now`, pushing the final revision of
    /// those that were merged into.
    pub(crate) fn expire(&mut self, now: DateTime<Utc>, out: &mut Vec<Alert>) {
        for by_group in self.open.values_mut() {
            by_group.retain(|_, open| {
                if now < open.suppressed_until {
                    return true;
                }
                if open.dirty {
                    let mut a = open.alert.clone();
                    a.revision += 1;
                    out.push(a);
                }
                false
            });
        }
        self.open.retain(|_, g| !g.is_empty());
    }

    /// The updated revision of every alert merged into since it was last returned.
    pub(crate) fn flush(&mut self, out: &mut Vec<Alert>) {
        for open in self.open.values_mut().flat_map(|g| g.values_mut()) {
            if open.dirty {
                open.alert.revision += 1;
                open.dirty = false;
                out.push(open.alert.clone());
            }
        }
    }

    /// Every open alert in its current state.
    pub fn open(&self) -> impl Iterator<Item = &Alert> {
        self.open
            .values()
            .flat_map(|g| g.values())
            .map(|o| &o.alert)
    }
}

fn merge(alert: &mut Alert, events: &[HitEvent], config: &AlertConfig) {
    for e in events {
        alert.count += 1;
        alert.first_seen = alert.first_seen.min(e.time);
        alert.last_seen = alert.last_seen.max(e.time);
        if let Some(rid) = &e.request_id {
            if alert.request_ids.len() < config.max_ids && !alert.request_ids.contains(rid) {
                alert.request_ids.push(rid.clone());
            }
        }
        if alert.event_ids.len() < config.max_ids && !alert.event_ids.contains(&e.event_id) {
            alert.event_ids.push(e.event_id.clone());
        }
    }
}

/// 32 hex digits from rule, group and first-seen time: stable across revisions and
/// restarts. FNV-1a, twice with different seeds; not a security boundary.
fn alert_id(rule: &str, group: &str, first: DateTime<Utc>) -> String {
    let nanos = first.timestamp_nanos_opt().unwrap_or(first.timestamp());
    let input = format!("{rule}\u{0}{group}\u{0}{nanos}");
    let fnv = |seed: u64| {
        input.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}
