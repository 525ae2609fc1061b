//! [`AlertStore`]: alerts, the delivery outbox and the engine's state, in one redb database,
//! written in one transaction per batch so that what is acknowledged to the bus is durable
//! together: windows and detector state survive restarts, and every alert is delivered at
//! least once to every notifier.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::alert::Alert;
use crate::engine::EngineState;

const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const ENGINE_KEY: &str = "engine";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("alert store: {0}")]
    Db(String),
    /// A stored value does not decode.
    #[error("alert store: corrupt value: {0}")]
    Corrupt(#[from] serde_json::Error),
}

fn db_error<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// An alert waiting to be delivered, by its place in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Position in the outbox.
    pub seq: u64,
    /// The alert revision to deliver.
    pub alert: Alert,
}

/// Alerts, outbox and engine state on disk.
#[derive(Debug)]
pub struct AlertStore {
    db: Database,
}

impl AlertStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<AlertStore, StoreError> {
        let db = Database::create(path).map_err(db_error)?;
        let tx = db.begin_write().map_err(db_error)?;
        tx.open_table(ALERTS).map_err(db_error)?;
        tx.open_table(OUTBOX).map_err(db_error)?;
        tx.open_table(STATE).map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(AlertStore { db })
    }

    /// The engine state saved last, if any.
    pub fn engine_state(&self) -> Result<Option<EngineState>, StoreError> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(STATE).map_err(db_error)?;
        match table.get(ENGINE_KEY).map_err(db_error)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Saves `alerts` (upserted by id, newest revision wins), queues each for delivery, and
    /// saves `state`, atomically.
    pub fn commit(&self, alerts: &[Alert], state: &EngineState) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = tx.open_table(ALERTS).map_err(db_error)?;
            let mut outbox = tx.open_table(OUTBOX).map_err(db_error)?;
            let first = outbox
                .last()
                .map_err(db_error)?
                .map_or(0, |(k, _)| k.value() + 1);
            for (seq, alert) in (first..).zip(alerts) {
                let newer = match table.get(alert.id.as_str()).map_err(db_error)? {
                    Some(old) => {
                        serde_json::from_slice::<Alert>(old.value())?.revision <= alert.revision
                    }
                    None => true,
                };
                let bytes = serde_json::to_vec(alert)?;
                if newer {
                    table
                        .insert(alert.id.as_str(), bytes.as_slice())
                        .map_err(db_error)?;
                }
                outbox.insert(seq, bytes.as_slice()).map_err(db_error)?;
            }
            let mut st = tx.open_table(STATE).map_err(db_error)?;
            st.insert(ENGINE_KEY, serde_json::to_vec(state)?.as_slice())
                .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)
    }

    /// Alerts, newest `last_seen` first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(ALERTS).map_err(db_error)?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (_, v) = entry.map_err(db_error)?;
            all.push(serde_json::from_slice::<Alert>(v.value())?);
        }
        all.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// The oldest `limit` alerts waiting for delivery.
    pub fn pending(&self, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(OUTBOX).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_error)?.take(limit) {
            let (k, v) = entry.map_err(db_error)?;
            out.push(Pending {
                seq: k.value(),
                alert: serde_json::from_slice(v.value())?,
            });
        }
        Ok(out)
    }

    /// Removes a delivered alert from the outbox.
    pub fn delivered(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_error)?;
        tx.open_table(OUTBOX)
            .map_err(db_error)?
            .remove(seq)
            .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::rule::Level;

    fn alert(id: &str, revision: u32, count: u64) -> Alert {
        let t = Utc
            .timestamp_opt(1_795_365_213, 0)
            .single()
            .unwrap_or_default();
        Alert {
            id: id.into(),
            revision,
            rule_id: "r".into(),
            title: "t".into(),
            severity: Level::High,
            group_key: String::new(),
            first_seen: t,
            last_seen: t,
            count,
            request_ids: vec!["req".into()],
            event_ids: Vec::new(),
            tags: Vec::new(),
            description: String::new(),
        }
    }

    #[test]
    fn newest_revision_wins_and_every_revision_is_queued_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.redb");
        let store = AlertStore::open(&path).unwrap();
        let state = EngineState::default();
        store.commit(&[alert("a", 1, 5)], &state).unwrap();
        store
            .commit(&[alert("a", 0, 1), alert("b", 0, 2)], &state)
            .unwrap();
        let listed = store.alerts(10).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed.iter().find(|x| x.id == "a").unwrap().count,
            5,
            "an older revision replaced a newer one"
        );
        let pending = store.pending(10).unwrap();
        assert_eq!(pending.len(), 3);
        store.delivered(pending[0].seq).unwrap();
        drop(store);
        // Reopened: the outbox and the engine state survive.
        let store = AlertStore::open(&path).unwrap();
        assert_eq!(store.pending(10).unwrap().len(), 2);
        assert_eq!(store.engine_state().unwrap(), Some(EngineState::default()));
    }
}
