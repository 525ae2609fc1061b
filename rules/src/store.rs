//! [`AlertStore`]: alerts, the delivery outbox and the engine's state, in one redb database,
//! written in one transaction per batch so that what is acknowledged to the bus is durable
//! together: windows and detector state survive restarts, and every alert is delivered at
//! least once to every notifier.
//!
//! What it holds is bounded ([`StoreOptions`]): the outbox is kept only when a notifier
//! delivers it, an entry a notifier gives up on moves to a dead-letter table, and alerts,
//! dead letters and undelivered entries older than the retention are pruned (at most once an
//! hour, on a commit, or by [`AlertStore::prune`]).

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::alert::AlertConfig;
use crate::engine::{EngineState, RulesEngine};
use crate::pack::Ruleset;
use crate::watchlist::WatchLists;

const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const ENGINE_KEY: &str = "engine";

/// [`StoreOptions::retention`] by default: 30 days.
pub const DEFAULT_ALERT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How often a commit prunes what is past the retention.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// What the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Whether alert revisions are queued for delivery: only when a notifier is configured.
    /// Without one, nothing would ever empty the queue; an existing queue is dropped at open.
    pub outbox: bool,
    /// How long alerts (by their last event), dead letters and undelivered revisions are
    /// kept. Default [`DEFAULT_ALERT_RETENTION`].
    pub retention: Duration,
}

impl Default for StoreOptions {
    /// An outbox, and [`DEFAULT_ALERT_RETENTION`].
    fn default() -> Self {
        StoreOptions {
            outbox: true,
            retention: DEFAULT_ALERT_RETENTION,
        }
    }
}

/// What one pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Alerts whose last event is older than the retention.
    pub alerts: u64,
    /// Undelivered outbox entries older than the retention.
    pub outbox: u64,
    /// Dead letters older than the retention.
    pub dead_letters: u64,
}

/// An alert revision a notifier gave up on, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its place in the outbox it left.
    pub seq: u64,
    /// The revision that was not delivered.
    pub alert: Alert,
    /// The notifier's last failure.
    pub reason: String,
    /// When it was given up on.
    pub at: DateTime<Utc>,
}

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
    options: StoreOptions,
    /// When the last pruning ran, if it did.
    last_prune: Mutex<Option<Instant>>,
}

impl AlertStore {
    /// Opens or creates the store at `path` with the default options (an outbox, 30 days).
    pub fn open(path: &Path) -> Result<AlertStore, StoreError> {
        AlertStore::open_with(path, StoreOptions::default())
    }

    /// Opens or creates the store at `path`. Without an outbox, entries queued by an earlier
    /// run that had a notifier are dropped: nothing will deliver them.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<AlertStore, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(ALERTS)?;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            if !options.outbox {
                let dropped = outbox.len()?;
                if dropped > 0 {
                    outbox.retain(|_, _| false)?;
                    tracing::warn!(
                        dropped,
                        "alert store: no notifier configured; undelivered alerts dropped from the outbox"
                    );
                }
            }
        }
        tx.open_table(DEAD_LETTERS)?;
        tx.open_table(STATE)?;
        tx.commit()?;
        Ok(AlertStore {
            db,
            options,
            last_prune: Mutex::new(None),
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
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

    /// Saves `alerts` (upserted by id, newest revision wins), queues each for delivery (with
    /// an outbox), and saves `state`, atomically. At most once an hour it then prunes what
    /// is past the retention.
    pub fn commit(&self, alerts: &[Alert], state: &EngineState) -> Result<(), StoreError> {
        self.commit_only(alerts, state)?;
        let due = {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|t| t.elapsed() >= PRUNE_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let pruned = self.prune(Utc::now())?;
            if pruned != Pruned::default() {
                tracing::info!(?pruned, "alert store: pruned what is past the retention");
            }
        }
        Ok(())
    }

    fn commit_only(&self, alerts: &[Alert], state: &EngineState) -> Result<(), StoreError> {
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
                if self.options.outbox {
                    outbox.insert(seq, bytes.as_slice())?;
                }
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

    /// The oldest `limit` alerts waiting for delivery from outbox position `from` on: a
    /// notifier pages past entries it is holding back.
    pub fn pending_from(&self, from: u64, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(limit) {
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

    /// Moves an outbox entry a notifier gave up on to the dead letters, with `reason`.
    /// Returns false if the entry was not in the outbox.
    pub fn dead_letter(&self, seq: u64, reason: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let moved = {
            let mut outbox = tx.open_table(OUTBOX)?;
            let removed = outbox.remove(seq)?;
            match removed {
                Some(bytes) => {
                    let letter = DeadLetter {
                        seq,
                        alert: serde_json::from_slice(bytes.value())?,
                        reason: reason.to_owned(),
                        at: Utc::now(),
                    };
                    let bytes = serde_json::to_vec(&letter).map_err(StoreError::Encode)?;
                    tx.open_table(DEAD_LETTERS)?.insert(seq, bytes.as_slice())?;
                    true
                }
                None => false,
            }
        };
        tx.commit()?;
        Ok(moved)
    }

    /// The dead letters, oldest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.take(limit) {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Removes what is past the retention: alerts and undelivered revisions whose last event
    /// is older than the newest alert's last event less the retention (event time, like the
    /// engine, so that replaying an old log keeps its alerts), and dead letters given up on
    /// before `now` less the retention.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let retention =
            chrono::Duration::from_std(self.options.retention).unwrap_or(chrono::Duration::MAX);
        let before = |t: DateTime<Utc>| {
            t.checked_sub_signed(retention)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let mut pruned = Pruned::default();
        let tx = self.db.begin_write()?;
        {
            let mut alerts = tx.open_table(ALERTS)?;
            let mut seen: Vec<(String, DateTime<Utc>)> = Vec::new();
            for entry in alerts.iter()? {
                let (k, v) = entry?;
                let last_seen = serde_json::from_slice::<Alert>(v.value())?.last_seen;
                seen.push((k.value().to_owned(), last_seen));
            }
            let newest = seen.iter().map(|(_, t)| *t).max();
            let cutoff = newest.map_or(DateTime::<Utc>::MIN_UTC, before);
            let old: Vec<&String> = seen
                .iter()
                .filter(|(_, t)| *t < cutoff)
                .map(|(id, _)| id)
                .collect();
            for id in &old {
                alerts.remove(id.as_str())?;
            }
            pruned.alerts = old.len() as u64;

            let mut outbox = tx.open_table(OUTBOX)?;
            let mut old: Vec<u64> = Vec::new();
            for entry in outbox.iter()? {
                let (k, v) = entry?;
                if serde_json::from_slice::<Alert>(v.value())?.last_seen < cutoff {
                    old.push(k.value());
                }
            }
            for seq in &old {
                outbox.remove(seq)?;
            }
            pruned.outbox = old.len() as u64;

            let mut letters = tx.open_table(DEAD_LETTERS)?;
            let mut old: Vec<u64> = Vec::new();
            let cutoff = before(now);
            for entry in letters.iter()? {
                let (k, v) = entry?;
                if serde_json::from_slice::<DeadLetter>(v.value())?.at < cutoff {
                    old.push(k.value());
                }
            }
            for seq in &old {
                letters.remove(seq)?;
            }
            pruned.dead_letters = old.len() as u64;
        }
        tx.commit()?;
        Ok(pruned)
    }
}

/// Resuming lives beside the store that saved the state, so that the engine does not
/// depend on the store (the store keeps the engine's state, not the other way round).
impl RulesEngine {
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
}

#[cfg(test)]
mod tests_support {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::rule::Level;

    pub(super) fn alert_at(id: &str, revision: u32, count: u64, secs: i64) -> Alert {
        let t = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
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
}

#[cfg(test)]
mod tests {
    use super::tests_support::alert_at;
    use super::*;

    fn alert(id: &str, revision: u32, count: u64) -> Alert {
        alert_at(id, revision, count, 1_795_365_213)
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

#[cfg(test)]
mod bounded {
    use chrono::Utc;

    use super::tests_support::alert_at;
    use super::*;

    #[test]
    fn without_a_notifier_nothing_is_queued_and_an_old_queue_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.redb");
        let state = EngineState::default();
        let store = AlertStore::open(&path).unwrap();
        store
            .commit_only(&[alert_at("a", 0, 1, 1_000)], &state)
            .unwrap();
        assert_eq!(store.pending(10).unwrap().len(), 1);
        drop(store);

        let options = StoreOptions {
            outbox: false,
            ..StoreOptions::default()
        };
        let store = AlertStore::open_with(&path, options).unwrap();
        assert!(
            store.pending(10).unwrap().is_empty(),
            "the old queue stayed"
        );
        store
            .commit_only(&[alert_at("b", 0, 1, 1_000)], &state)
            .unwrap();
        assert!(
            store.pending(10).unwrap().is_empty(),
            "queued without a notifier"
        );
        assert_eq!(store.alerts(10).unwrap().len(), 2, "alerts are still kept");
    }

    #[test]
    fn prune_removes_what_is_past_the_retention_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            outbox: true,
            retention: Duration::from_secs(86_400),
        };
        let store = AlertStore::open_with(&dir.path().join("alerts.redb"), options).unwrap();
        let old = alert_at("old", 0, 1, 10 * 86_400 - 2 * 86_400);
        let recent = alert_at("recent", 0, 1, 10 * 86_400 - 3600);
        store
            .commit_only(&[old.clone(), recent.clone(), old], &EngineState::default())
            .unwrap();
        let queued = store.pending(10).unwrap();
        assert_eq!(queued.len(), 3);
        assert!(store.dead_letter(queued[2].seq, "HTTP 404").unwrap());
        assert!(!store.dead_letter(queued[2].seq, "again").unwrap());
        assert_eq!(store.dead_letters(10).unwrap()[0].reason, "HTTP 404");

        // "Now" is the newest alert's time: the engine's clock is event time.
        let pruned = store.prune(Utc::now()).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                alerts: 1,
                outbox: 1,
                dead_letters: 0
            }
        );
        let kept: Vec<String> = store
            .alerts(10)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(kept, ["recent"]);
        assert_eq!(store.pending(10).unwrap().len(), 1);
        // The dead letter is dated when it was given up on (now, in wall time): a retention
        // later it goes too.
        let later = Utc::now() + chrono::Duration::days(2);
        assert_eq!(store.prune(later).unwrap().dead_letters, 1);
        assert!(store.dead_letters(10).unwrap().is_empty());
    }
}
