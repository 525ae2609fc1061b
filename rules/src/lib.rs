//! Rules: the alerting stage of Vigil. Sigma rules and correlations, anomaly detectors, watch
//! lists and alerts over Vault/OpenBao audit events.
//!
//! [`Ruleset::load`] loads the built-in pack (`rules/pack/`) with an optional directory laid
//! over it; [`WatchLists`] hold the values rules look up, read from `NAME[@DEVICE]=FILE`
//! specs ([`WatchListSpec`]). [`RulesEngine`] runs a ruleset over events in event-time order
//! and returns [`Alert`]s, deduplicated and suppressed per rule and group; its state is
//! serializable, and [`RulesEngine::resume`] carries on from what the [`AlertStore`] saved.
//! [`RulesConsumer`] runs the engine on the bus, storing alerts and state together before it
//! acknowledges; [`WebhookNotifier`] delivers the store's outbox.

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
pub use correlation::{Correlation, CorrelationKind, MAX_CORRELATION_GROUPS};
pub use detector::{Detector, DetectorKind, DETECTOR_MAX_IDLE, MAX_DETECTOR_GROUPS};
pub use engine::{EngineState, RulesEngine, ENVELOPE_REJECTED, MAX_REPLAY_GUARD};
pub use error::{LoadError, Problem};
pub use fields::EventView;
pub use notify::{
    NotifyStats, WebhookConfig, WebhookError, WebhookNotifier, DEFAULT_WEBHOOK_MAX_ATTEMPTS,
};
pub use pack::{Ruleset, PACK};
pub use rule::{Level, RuleMeta, SigmaRule};
pub use store::{
    AlertStore, DeadLetter, Pending, Pruned, StoreError, StoreOptions, DEFAULT_ALERT_RETENTION,
};
pub use watchlist::{BadWatchListSpec, WatchList, WatchListSpec, WatchLists};
