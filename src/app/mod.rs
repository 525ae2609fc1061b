//! Turns settings into running stages: opens what the data dir holds, builds each stage from
//! the library crates and spawns it into a [`TaskSet`](crate::tasks::TaskSet). Commands call
//! these; nothing here parses arguments or decides when to stop.

pub mod api;
pub mod index;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod secrets;
pub mod sources;

use anyhow::Context;
use vigil_event::{AuditHasher, Keyring, Redactor};

use crate::data_dir::DataDir;
use crate::settings::Settings;

/// Consumer group of the indexer, on the embedded bus and on Kafka.
pub const INDEXER_GROUP: &str = "vigil-indexer";
/// Consumer group of the rules engine, on the embedded bus and on Kafka.
pub const RULES_GROUP: &str = "vigil-rules";

/// The keyring that signs and verifies envelopes: the key in `signing_key_file`, else in
/// the data dir (generated on first start).
pub fn keyring(settings: &Settings, data_dir: &DataDir) -> anyhow::Result<Keyring> {
    let path = match &settings.signing_key_file {
        Some(path) if !path.exists() => anyhow::bail!(
            "signing_key_file {} does not exist (every role must share one key)",
            path.display()
        ),
        Some(path) => path.clone(),
        None => data_dir.signing_key(),
    };
    let key = secrets::load_or_create(&path)?;
    Keyring::new([("local".to_owned(), key.value.into_bytes())]).context("signing key")
}

/// The redactor that replaces leaked plaintext (in events, and in what is quarantined) with
/// an HMAC under the data dir's redaction key (generated on first start).
pub fn redactor(data_dir: &DataDir) -> anyhow::Result<Redactor> {
    let key = secrets::load_or_create(&data_dir.redaction_key())?;
    Ok(Redactor::new(AuditHasher::new(key.value.as_bytes())))
}
