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
    /// The database file could not be opened or created.
    #[error("alert store: cannot open the database: {0}")]
    Open(#[from] redb::DatabaseError),
    /// A read or write transaction could not begin.
    #[error("alert store: cannot begin a transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("alert store: cannot open a table: {0}")]
    Table(#[from] redb::TableError),
    /// Reading or writing the database file failed.
    #[error("alert store: storage failure: {0}")]
    Storage(#[from] redb::StorageError),
    /// A write transaction could not be committed.
    #[error("alert store: commit failed: {0}")]
    Commit(#[from] redb::CommitError),
    /// An alert or the engine state could not be encoded for storing.
    #[error("alert store: cannot encode a value: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored value does not decode.
    #[error("alert store: corrupt value: {0}")]
    Corrupt(#[from] serde_json::Error),
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
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(ALERTS)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(STATE)?;
        tx.commit()?;
        Ok(AlertStore { db })
    }

    /// The engine state saved last, if any.
    pub fn engine_state(&self) -> Result<Option<EngineState>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        match table.get(ENGINE_KEY)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Saves `alerts` (upserted by id, newest revision wins), queues each for delivery, and
    /// saves `state`, atomically.
    pub fn commit(&self, alerts: &[Alert], state: &EngineState) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(ALERTS)?;
            let mut outbox = tx.open_table(OUTBOX)?;
            let first = outbox.last()?.map_or(0, |(k, _)| k.value() + 1);
            for (seq, alert) in (first..).zip(alerts) {
                let newer = match table.get(alert.id.as_str())? {
                    Some(old) => {
                        serde_json::from_slice::<Alert>(old.value())?.revision <= alert.revision
                    }
                    None => true,
                };
                let bytes = serde_json::to_vec(alert).map_err(StoreError::Encode)?;
                if newer {
                    table.insert(alert.id.as_str(), bytes.as_slice())?;
                }
                outbox.insert(seq, bytes.as_slice())?;
            }
            let mut st = tx.open_table(STATE)?;
            let state = serde_json::to_vec(state).map_err(StoreError::Encode)?;
            st.insert(ENGINE_KEY, state.as_slice())?;
        }
        Ok(tx.commit()?)
    }

    /// Alerts, newest `last_seen` first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ALERTS)?;
        let mut all = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            all.push(serde_json::from_slice::<Alert>(v.value())?);
        }
        all.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// The oldest `limit` alerts waiting for delivery.
    pub fn pending(&self, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.iter()?.take(limit) {
            let (k, v) = entry?;
            out.push(Pending {
                seq: k.value(),
                alert: serde_json::from_slice(v.value())?,
            });
        }
        Ok(out)
    }

    /// Removes a delivered alert from the outbox.
    pub fn delivered(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(OUTBOX)?.remove(seq)?;
        Ok(tx.commit()?)
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
