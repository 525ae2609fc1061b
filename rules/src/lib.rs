//! Rules: Sigma rules and correlations, anomaly detectors, watch lists and alerts over
//! Vault/OpenBao audit events.
//!
//! [`Ruleset`] loads Sigma YAML (the built-in pack in `rules/pack/`, or a directory) and
//! detector documents; [`RulesEngine`] runs a ruleset over events in event-time order and
//! returns [`Alert`]s, deduplicated and suppressed per rule and group. All state lives in
//! serializable structs so that it can be persisted between runs.

#![deny(missing_docs)]

pub mod alert;
pub mod condition;
pub mod consumer;
pub mod correlation;
pub mod detector;
pub mod engine;
pub mod error;
pub mod fields;
pub mod modifiers;
pub mod notify;
pub mod pack;
pub mod rule;
pub mod store;
pub mod watchlist;

pub use alert::{Alert, AlertConfig, MAX_REQUEST_IDS};
pub use consumer::{RulesConsumer, RulesConsumerError, RulesStats};
pub use correlation::{Correlation, CorrelationKind};
pub use detector::{Detector, DetectorKind};
pub use engine::{EngineState, RulesEngine, ENVELOPE_REJECTED};
pub use error::{LoadError, Problem};
pub use fields::EventView;
pub use notify::{NotifyStats, WebhookConfig, WebhookNotifier};
pub use pack::{Ruleset, PACK};
pub use rule::{Level, RuleMeta, SigmaRule};
pub use store::{AlertStore, Pending, StoreError};
pub use watchlist::{WatchList, WatchLists};
