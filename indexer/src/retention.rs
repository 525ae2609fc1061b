//! Retention: deleting events older than the retention period, once an hour.
//!
//! A pass that deletes anything commits at once, with
//! [`EventIndex::commit_keeping_payload`]: waiting for the consumer's next commit would keep
//! the deletes staged forever on an idle node (and every pass would find and log the same
//! events again), and a plain commit would drop the bus positions the consumer keeps in the
//! commit payload.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::writer::EventIndex;

/// How often old events are looked for.
const PERIOD: Duration = Duration::from_secs(3600);

/// Deletes events older than `days` days from `index`, now and then hourly, until
/// `shutdown`. With `days == 0` events are kept forever and this only waits for `shutdown`.
/// Failures are logged and retried at the next hour: losing one pass of retention is not a
/// reason to stop indexing.
pub async fn run_retention(index: Arc<EventIndex>, days: u64, shutdown: CancellationToken) {
    if days == 0 {
        shutdown.cancelled().await;
        return;
    }
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff =
            chrono::Utc::now() - chrono::Duration::days(i64::try_from(days).unwrap_or(i64::MAX));
        let index = Arc::clone(&index);
        let pass = move || -> crate::error::Result<u64> {
            let n = index.delete_older_than(cutoff)?;
            if n > 0 {
                index.commit_keeping_payload()?;
            }
            Ok(n)
        };
        match tokio::task::spawn_blocking(pass).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(
                deleted = n,
                "retention: deleted events older than {days} days"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("retention: {e}"),
            Err(e) => tracing::error!("retention task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use vigil_event::{AuditEvent, Origin, SourceKind};

    use super::*;
    use crate::config::IndexConfig;
    use crate::document::IndexedEvent;

    fn event(time: &str, id: &str) -> IndexedEvent {
        let line = format!(r#"{{"time":"{time}","type":"request","request":{{"id":"{id}"}}}}"#);
        let event = AuditEvent::parse(line.as_bytes()).expect("valid line");
        IndexedEvent::new(event, Origin::new("n1", "main", SourceKind::File))
    }

    #[tokio::test]
    async fn the_first_pass_deletes_and_commits_by_itself_keeping_the_payload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Arc::new(EventIndex::open(dir.path(), IndexConfig::default()).expect("open"));
        let recent = chrono::Utc::now().to_rfc3339();
        index
            .add(&event("2001-01-01T00:00:00Z", "old"))
            .expect("add");
        index.add(&event(&recent, "new")).expect("add");
        let payload = r#"{"bus_positions":{"0":42}}"#;
        index.commit_with_payload(payload).expect("commit");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_retention(Arc::clone(&index), 30, shutdown.clone()));
        // The first tick fires at once. Nobody else commits: retention must, by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while index.num_docs() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "retention never committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.expect("retention task");
        assert_eq!(
            index.last_commit_payload().expect("payload").as_deref(),
            Some(payload)
        );
        let page = index
            .search(&crate::SearchRequest::new("request.id:new"))
            .expect("search");
        assert_eq!(page.total, 1);
        // The next pass finds nothing left to delete.
        let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
        assert_eq!(index.delete_older_than(cutoff).expect("delete"), 0);
    }

    #[test]
    fn a_commit_keeping_the_payload_without_one_stores_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = EventIndex::open(dir.path(), IndexConfig::default()).expect("open");
        index.add(&event("2026-01-01T00:00:00Z", "a")).expect("add");
        index.commit_keeping_payload().expect("commit");
        assert_eq!(index.num_docs(), 1);
        assert_eq!(index.last_commit_payload().expect("payload"), None);
        index.commit_with_payload("p1").expect("commit");
        index.add(&event("2026-01-01T00:00:01Z", "b")).expect("add");
        let stamp = index.commit_keeping_payload().expect("commit");
        assert_eq!(stamp.num_docs, 2);
        assert_eq!(
            index.last_commit_payload().expect("payload").as_deref(),
            Some("p1")
        );
    }

    #[tokio::test]
    async fn zero_days_waits_only_for_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Arc::new(EventIndex::open(dir.path(), IndexConfig::default()).expect("open"));
        index
            .add(&event("2001-01-01T00:00:00Z", "old"))
            .expect("add");
        index.commit().expect("commit");
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        tokio::time::timeout(
            Duration::from_secs(10),
            run_retention(Arc::clone(&index), 0, shutdown),
        )
        .await
        .expect("returns on shutdown");
        index.commit().expect("commit");
        assert_eq!(index.num_docs(), 1);
    }
}
