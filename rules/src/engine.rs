//! The rules engine: runs a [`Ruleset`] over events in event-time order, keeps the windows,
//! detector histories and open alerts, and returns alerts.

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
use crate::store::{AlertStore, StoreError};
use crate::watchlist::WatchLists;

/// Rule id of the built-in alert about bus messages that fail envelope verification.
pub const ENVELOPE_REJECTED: &str = "vigil-envelope-rejected";

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
        }
    }

    /// An engine that carries on from the state `store` saved last, or a fresh one when the
    /// store has none (a first start): what `vigil run` and `vigil rules` start with.
    pub fn resume(
        ruleset: Ruleset,
        lists: WatchLists,
        config: AlertConfig,
        store: &AlertStore,
    ) -> Result<RulesEngine, StoreError> {
        let state = store.engine_state()?.unwrap_or_default();
        Ok(RulesEngine::with_state(ruleset, lists, config, state))
    }

    /// The state, for persisting.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// The rule set.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Evaluates one event. Returns the alerts that fired (revision 0) and the final
    /// revisions of alerts whose suppression ended with events merged in. Events should
    /// come in event-time order; a late event is still evaluated, against windows that may
    /// have moved past it.
    pub fn evaluate(&mut self, event: &AuditEvent, origin: &Origin) -> Vec<Alert> {
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
            event_id: EventId::of(event, origin),
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
}
