//! The rules engine: runs a [`Ruleset`] over events in event-time order, keeps the windows,
//! detector histories and open alerts, and returns alerts.
//!
//! Re-delivery is harmless: the bus delivers at least once, and after a restart the events
//! since the last acknowledgement come again although the saved state already counted them.
//! The state therefore keeps the ids of the events evaluated since the last acknowledgement
//! (the replay guard) and the engine skips an event whose id is among them, so that no
//! window, detector or alert counts it twice.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_event::{AuditEvent, EventId, Origin};

use crate::alert::{Alert, AlertBook, AlertConfig, Hit, HitEvent};
use crate::correlation::{CorrelationKind, CorrelationState};
use crate::detector::{DetectorKind, DetectorState};
use crate::fields::EventView;
use crate::modifiers::MatchCtx;
use crate::pack::Ruleset;
use crate::rule::{Level, RuleMeta};
use crate::watchlist::WatchLists;

/// Rule id of the built-in alert about bus messages that fail envelope verification.
pub const ENVELOPE_REJECTED: &str = "vigil-envelope-rejected";

/// Most event ids the replay guard holds. The consumer empties it at every acknowledgement
/// (about once a second), so this only bounds a long replay that is never acknowledged (a
/// file through `vigil rules test`); past it the oldest ids are forgotten.
pub const MAX_REPLAY_GUARD: usize = 100_000;

/// Ids of the events evaluated since the last acknowledgement, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "VecDeque<EventId>", into = "VecDeque<EventId>")]
struct ReplayGuard {
    order: VecDeque<EventId>,
    ids: HashSet<EventId>,
}

impl PartialEq for ReplayGuard {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl From<VecDeque<EventId>> for ReplayGuard {
    fn from(order: VecDeque<EventId>) -> Self {
        let ids = order.iter().cloned().collect();
        ReplayGuard { order, ids }
    }
}

impl From<ReplayGuard> for VecDeque<EventId> {
    fn from(guard: ReplayGuard) -> Self {
        guard.order
    }
}

impl ReplayGuard {
    /// Notes `id`; false if it was already there (a re-delivery).
    fn admit(&mut self, id: &EventId) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= MAX_REPLAY_GUARD {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.clone());
        self.order.push_back(id.clone());
        true
    }

    fn clear(&mut self) {
        self.order.clear();
        self.ids.clear();
    }
}

/// Everything the engine learns from events: serializable, so that it can be persisted and
/// restored across restarts. Keyed by rule id, so that a changed pack keeps what still
/// applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    correlations: std::collections::BTreeMap<String, CorrelationState>,
    detectors: std::collections::BTreeMap<String, DetectorState>,
    alerts: AlertBook,
    /// Newest event time seen.
    watermark: Option<DateTime<Utc>>,
    /// Events evaluated since the last acknowledgement; a state saved before an older one
    /// has none.
    #[serde(default)]
    replay_guard: ReplayGuard,
}

impl EngineState {
    /// Every open alert in its current state.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.open()
    }
}

/// Runs rules, correlations and detectors over events.
#[derive(Debug, Clone)]
pub struct RulesEngine {
    ruleset: Ruleset,
    lists: WatchLists,
    config: AlertConfig,
    state: EngineState,
    /// Re-delivered events skipped since this engine started.
    replays_skipped: u64,
}

impl RulesEngine {
    /// A fresh engine.
    pub fn new(ruleset: Ruleset, lists: WatchLists, config: AlertConfig) -> RulesEngine {
        RulesEngine::with_state(ruleset, lists, config, EngineState::default())
    }

    /// An engine resuming from saved state.
    pub fn with_state(
        ruleset: Ruleset,
        lists: WatchLists,
        config: AlertConfig,
        state: EngineState,
    ) -> RulesEngine {
        RulesEngine {
            ruleset,
            lists,
            config,
            state,
            replays_skipped: 0,
        }
    }

    /// The state, for persisting.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// The rule set.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Says that the state saved last is acknowledged on the bus: what it covers can no
    /// longer be delivered again, so the replay guard forgets it. Call it after the
    /// acknowledgement, never before (a crash in between would count the re-delivery twice).
    pub fn acknowledged(&mut self) {
        self.state.replay_guard.clear();
    }

    /// Groups evicted from correlation windows and detectors to stay under their caps,
    /// since the state began (it is saved with it).
    pub fn groups_evicted(&self) -> u64 {
        let correlations: u64 = self.state.correlations.values().map(|c| c.evicted()).sum();
        let detectors: u64 = self.state.detectors.values().map(|d| d.evicted()).sum();
        correlations + detectors
    }

    /// Re-delivered events (an id evaluated since the last acknowledgement) skipped since
    /// this engine started.
    pub fn replays_skipped(&self) -> u64 {
        self.replays_skipped
    }

    /// Notes `id` in the replay guard; false (and counted) if it was evaluated already.
    fn first_delivery(&mut self, id: &EventId) -> bool {
        let first = self.state.replay_guard.admit(id);
        if !first {
            self.replays_skipped += 1;
        }
        first
    }

    /// Evaluates one event. Returns the alerts that fired (revision 0) and the final
    /// revisions of alerts whose suppression ended with events merged in. Events should
    /// come in event-time order; a late event is still evaluated, against windows that may
    /// have moved past it. An event evaluated since the last
    /// [`acknowledged`](Self::acknowledged) (a re-delivery) is skipped and returns nothing.
    pub fn evaluate(&mut self, event: &AuditEvent, origin: &Origin) -> Vec<Alert> {
        let event_id = EventId::of(event, origin);
        if !self.first_delivery(&event_id) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let time = event.time();
        let watermark = self.state.watermark.map_or(time, |w| w.max(time));
        self.state.watermark = Some(watermark);
        self.state.alerts.expire(watermark, &mut out);

        let view = EventView::new(event, origin);
        let ctx = MatchCtx { lists: &self.lists };
        let hit_event = HitEvent {
            time,
            request_id: event.entry().request_id().map(str::to_owned),
            event_id,
        };
        let rs = &self.ruleset;

        let mut matched = vec![false; rs.rules.len()];
        for (i, rule) in rs.rules.iter().enumerate() {
            if !rule.detection.matches(&view, &ctx) {
                continue;
            }
            matched[i] = true;
            if rs.generates[i] {
                let hit = Hit {
                    meta: &rule.meta,
                    group_key: view.group_key(&rule.group_by),
                    events: vec![hit_event.clone()],
                    trigger: hit_event.clone(),
                };
                self.state.alerts.record(hit, &self.config, &mut out);
            }
        }

        for (corr, refs) in rs.correlations.iter().zip(&rs.correlation_rules) {
            let mask = refs
                .iter()
                .enumerate()
                .filter(|(_, r)| matched[**r])
                .fold(0u64, |m, (bit, _)| m | (1 << bit));
            if mask == 0 {
                continue;
            }
            let value = match &corr.kind {
                CorrelationKind::ValueCount { field } => match view.first_text(field) {
                    Some(v) => Some(v),
                    // No value: nothing to count distinctly.
                    None => continue,
                },
                _ => None,
            };
            let group_key = view.group_key(&corr.group_by);
            let state = self
                .state
                .correlations
                .entry(corr.meta.id.clone())
                .or_default();
            if state.update(corr, group_key.clone(), hit_event.clone(), mask, value) {
                // An open alert only takes the trigger; a new one gets the whole window.
                let events =
                    if self
                        .state
                        .alerts
                        .suppresses(&corr.meta.id, &group_key, hit_event.time)
                    {
                        vec![hit_event.clone()]
                    } else {
                        state.window_events(&group_key)
                    };
                let hit = Hit {
                    meta: &corr.meta,
                    group_key,
                    events,
                    trigger: hit_event.clone(),
                };
                self.state.alerts.record(hit, &self.config, &mut out);
            }
        }

        for det in &rs.detectors {
            if let Some(filter) = &det.filter {
                if !filter.matches(&view, &ctx) {
                    continue;
                }
            }
            // A detector's groups are identities: an event without any of the group fields
            // belongs to no one and teaches nothing.
            if det.group_by.iter().all(|f| view.first_text(f).is_none()) {
                continue;
            }
            let group_key = view.group_key(&det.group_by);
            let values: Vec<String> = match &det.kind {
                DetectorKind::NewValue { field } => {
                    let mut vals = Vec::new();
                    view.values(field, &mut vals);
                    if vals.is_empty() {
                        continue;
                    }
                    vals.iter().map(|v| v.as_text().into_owned()).collect()
                }
                DetectorKind::Spike { .. } => Vec::new(),
            };
            let state = self.state.detectors.entry(det.meta.id.clone()).or_default();
            if let Some(f) = state.update(det, &group_key, time, &values) {
                let hit = Hit {
                    meta: &det.meta,
                    group_key: f.group_key,
                    events: vec![hit_event.clone()],
                    trigger: hit_event.clone(),
                };
                self.state.alerts.record(hit, &self.config, &mut out);
            }
        }
        out
    }

    /// Raises the built-in [`ENVELOPE_REJECTED`] alert for a bus message from `source` that
    /// failed verification at `time` (when it was seen: it has no trustworthy event time).
    /// One alert per source, merging later refusals while it is suppressed.
    pub fn envelope_rejected(
        &mut self,
        source: &str,
        message: EventId,
        time: DateTime<Utc>,
    ) -> Vec<Alert> {
        if !self.first_delivery(&message) {
            return Vec::new();
        }
        let meta = RuleMeta {
            id: ENVELOPE_REJECTED.to_owned(),
            name: None,
            title: "Bus message failed signature verification".to_owned(),
            description: "A message on the audit topic did not carry a valid envelope signed by \
                a Vigil collector: it was forged, altered in transit, or signed with a key this \
                consumer does not trust. It was quarantined and not indexed or evaluated."
                .to_owned(),
            status: Some("stable".to_owned()),
            level: Level::High,
            tags: vec![
                "attack.defense_evasion".to_owned(),
                "attack.t1565".to_owned(),
            ],
            falsepositives: vec!["A signing key rotated on the collectors but not here".to_owned()],
            file: "built-in".to_owned(),
        };
        let event = HitEvent {
            time,
            request_id: None,
            event_id: message,
        };
        let mut out = Vec::new();
        let hit = Hit {
            meta: &meta,
            group_key: source.to_owned(),
            events: vec![event.clone()],
            trigger: event,
        };
        self.state.alerts.record(hit, &self.config, &mut out);
        out
    }

    /// The new revision of every open alert merged into since it was last returned: call
    /// at the end of a file, or periodically, and upsert by alert id.
    pub fn flush(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        self.state.alerts.flush(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use vigil_event::SourceKind;

    use super::*;
    use crate::store::AlertStore;

    fn engine_over(store: &AlertStore) -> RulesEngine {
        let ruleset = Ruleset::builtin().expect("built-in pack loads");
        RulesEngine::resume(ruleset, WatchLists::new(), AlertConfig::default(), store)
            .expect("store readable")
    }

    #[test]
    fn resume_starts_fresh_on_an_empty_store_and_carries_on_from_a_saved_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AlertStore::open(&dir.path().join("alerts.redb")).expect("store opens");
        let mut engine = engine_over(&store);
        assert_eq!(engine.state(), &EngineState::default());

        let line = br#"{"time":"2026-11-22T16:33:32Z","type":"request","request":{"id":"r1","path":"secret/data/x"}}"#;
        let event = AuditEvent::parse(line).expect("valid line");
        engine.evaluate(&event, &Origin::new("n1", "main", SourceKind::File));
        assert_ne!(
            engine.state(),
            &EngineState::default(),
            "the watermark moved"
        );
        store.commit(&[], engine.state()).expect("state saved");

        let resumed = engine_over(&store);
        assert_eq!(resumed.state(), engine.state());
    }

    /// A response refused by policy for `entity`: twenty in five minutes make a
    /// permission-denied storm (a correlation of the built-in pack).
    fn denied(entity: &str, i: u32) -> AuditEvent {
        let line = format!(
            r#"{{"time":"2026-11-22T16:{:02}:{:02}Z","type":"response","auth":{{"entity_id":"{entity}","policies":["default"]}},"request":{{"id":"{entity}-{i}","operation":"read","path":"secret/data/x/{i}","remote_address":"10.0.0.9"}},"error":"permission denied"}}"#,
            30 + i / 60,
            i % 60
        );
        AuditEvent::parse(line.as_bytes()).expect("valid line")
    }

    #[test]
    fn events_delivered_again_after_a_restart_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AlertStore::open(&dir.path().join("alerts.redb")).expect("store opens");
        let origin = Origin::new("n1", "main", SourceKind::File);
        let mut engine = engine_over(&store);
        let events: Vec<AuditEvent> = (0..30).map(|i| denied("e-1", i)).collect();

        // Nineteen denials: one short of the storm. Saved and acknowledged.
        for e in &events[..19] {
            assert!(engine.evaluate(e, &origin).is_empty());
        }
        store.commit(&[], engine.state()).expect("saved");
        engine.acknowledged();
        // Five more, saved, then a crash before the acknowledgement: the storm fired.
        let fired: Vec<Alert> = events[19..24]
            .iter()
            .flat_map(|e| engine.evaluate(e, &origin))
            .collect();
        assert_eq!(fired.len(), 1, "{fired:?}");
        store.commit(&fired, engine.state()).expect("saved");
        let saved = engine.state().clone();
        drop(engine);

        // The restarted engine gets the unacknowledged five again: nothing changes.
        let mut resumed = engine_over(&store);
        for e in &events[19..24] {
            assert!(resumed.evaluate(e, &origin).is_empty(), "a replay alerted");
        }
        assert_eq!(resumed.replays_skipped(), 5);
        assert_eq!(resumed.state(), &saved, "a replay changed the windows");
        // New events still count; an id acknowledged long ago is new again only after the
        // acknowledgement forgot it, which is when the bus can no longer bring it back.
        resumed.acknowledged();
        let mut merged: Vec<Alert> = events[24..]
            .iter()
            .flat_map(|e| resumed.evaluate(e, &origin))
            .collect();
        merged.extend(resumed.flush());
        assert_eq!(resumed.replays_skipped(), 5);
        let storm = merged
            .iter()
            .find(|a| a.id == fired[0].id)
            .expect("the storm alert took the new events");
        // Each of the thirty denials once: the five replayed ones would have made 35.
        assert_eq!(storm.count, 30, "{storm:?}");
        assert_eq!(storm.event_ids.len(), 30);
    }
}
