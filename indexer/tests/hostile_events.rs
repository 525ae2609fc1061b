//! Issue 12: no single event can stop the index consumer. Events whose time the index cannot
//! store (years 1000 and 9999), oversized values and envelopes that do not open are fed
//! through an [`IndexConsumer`] over an [`EmbeddedBus`] between good events: every good event
//! before and after stays searchable, the odd ones are searchable with a finding that says
//! what happened (or quarantined with a reason), and the consumer keeps running.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_bus::{BusLimits, EmbeddedBus, QuarantinedMessage, Record, Transport};
use vigil_event::{AuditHasher, Keyring, Origin, Redactor, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexConsumer, SearchRequest};

fn keyring() -> Keyring {
    Keyring::new([("k".to_owned(), b"0123456789abcdef".to_vec())]).expect("keyring")
}

fn origin() -> Origin {
    Origin::new("n1", "main", SourceKind::Socket)
}

fn line(time: &str, id: &str) -> Vec<u8> {
    format!(
        r#"{{"time":"{time}","type":"request","request":{{"id":"{id}","path":"secret/data/x"}}}}"#
    )
    .into_bytes()
}

fn sealed(raw: &[u8]) -> Record {
    Record::new(
        origin().key(),
        keyring().seal(&origin(), raw).expect("seal"),
    )
}

fn config() -> IndexConfig {
    IndexConfig {
        writer_threads: 1,
        ..IndexConfig::default()
    }
}

fn total(index: &EventIndex, query: &str) -> u64 {
    index
        .search(&SearchRequest::new(query))
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .total
}

/// Publishes `records`, then waits (bounded) until the consumer has committed `expected`
/// documents, and checks that it is still running before shutting it down.
async fn feed(consumer: IndexConsumer, index: &EventIndex, records: Vec<Record>, expected: u64) {
    let bus = EmbeddedBus::new(["indexer"], BusLimits::default()).expect("bus");
    let subscription = bus.subscribe("indexer").await.expect("subscribe");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(subscription, shutdown.clone()));
    let receipt = bus.publish(records).await.expect("publish");
    tokio::time::timeout(Duration::from_secs(30), receipt)
        .await
        .expect("every record acknowledged within 30 s")
        .expect("receipt");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while index.num_docs() < expected {
        assert!(!task.is_finished(), "the consumer stopped");
        assert!(std::time::Instant::now() < deadline, "not all indexed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything is acknowledged and the consumer still runs: it did not die on the odd ones.
    assert!(!task.is_finished(), "the consumer stopped");
    shutdown.cancel();
    task.await
        .expect("join")
        .expect("the consumer ends cleanly");
}

#[tokio::test]
async fn times_the_index_cannot_store_are_indexed_at_receive_time_with_a_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(EventIndex::open(dir.path(), config()).expect("open"));
    let consumer = IndexConsumer::new(Arc::clone(&index), keyring(), Duration::ZERO);
    let stats = consumer.stats();
    let before = chrono::Utc::now();
    let records = vec![
        sealed(&line("2026-11-22T16:33:32Z", "good-1")),
        sealed(&line("9999-12-31T23:59:59Z", "far-future")),
        sealed(&line("2026-11-22T16:33:33Z", "good-2")),
        sealed(&line("1000-01-01T00:00:00Z", "far-past")),
        sealed(&line("2026-11-22T16:33:34Z", "good-3")),
    ];
    feed(consumer, &index, records, 5).await;
    let after = chrono::Utc::now();

    for id in ["good-1", "good-2", "good-3", "far-future", "far-past"] {
        assert_eq!(total(&index, &format!("request.id:{id}")), 1, "{id}");
    }
    assert_eq!(total(&index, "findings.kind:time_out_of_range"), 2);
    assert_eq!(
        total(
            &index,
            "findings.kind:time_out_of_range AND request.id:far-future"
        ),
        1
    );
    assert_eq!(total(&index, "findings.field:time"), 2);
    // Good events keep their own time; the odd ones are at receive time, and their raw line
    // still holds the time as written.
    let good = index
        .search(&SearchRequest::new("request.id:good-2"))
        .expect("search");
    assert_eq!(good.hits[0].time, "2026-11-22T16:33:33Z");
    let odd = index
        .search(&SearchRequest::new("request.id:far-future"))
        .expect("search");
    let at: chrono::DateTime<chrono::Utc> = odd.hits[0].time.parse().expect("rfc3339");
    assert!(
        before <= at && at <= after,
        "{at} not in [{before}, {after}]"
    );
    assert_eq!(odd.hits[0].raw["time"], "9999-12-31T23:59:59Z");
    assert_eq!(total(&index, "\"9999-12-31T23:59:59Z\""), 1);
    assert_eq!(stats.events_indexed.load(Ordering::Relaxed), 5);
    assert_eq!(stats.time_out_of_range.load(Ordering::Relaxed), 2);
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn huge_values_and_unopenable_envelopes_do_not_take_their_batch_mates_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(EventIndex::open(dir.path(), config()).expect("open"));
    let quarantine = EmbeddedBus::new(["ops"], BusLimits::default()).expect("bus");
    let mut quarantined = quarantine.subscribe("ops").await.expect("subscribe");
    let redactor = Redactor::new(AuditHasher::new(b"quarantine-key"));
    let consumer = IndexConsumer::new(Arc::clone(&index), keyring(), Duration::ZERO)
        .with_quarantine(Arc::new(quarantine.clone()), redactor);
    let stats = consumer.stats();
    // A keyword value far over Tantivy's 65 530-byte term limit, a long path, and a raw line
    // of 1 MiB: the index must take them (or skip the oversized term), not stop.
    let big_name = "n".repeat(100_000);
    let big_path = "p/".repeat(200_000);
    let huge = format!(
        r#"{{"time":"2026-11-22T16:33:35Z","type":"request","auth":{{"display_name":"{big_name}"}},"request":{{"id":"huge","path":"{big_path}"}}}}"#
    );
    let token = "hvs.CAESIJlWh9HMVhUdDLMYj3k6sbN3LwzSJ0C9SEnbCZTtjpdDGh4KHGh2cy5QNUNXNXhGWlZjc1pHTmNFZ3pSVU5GdHg";
    let forged = format!(
        r#"{{"time":"2026-11-22T16:33:36Z","type":"request","auth":{{"client_token":"{token}"}}}}"#
    );
    // The quarantine's receipt resolves once it is read: read it while indexing runs.
    let reader = tokio::spawn(async move {
        let got = quarantined.next_batch(10).await.expect("quarantine batch");
        let last = got.last().expect("one").offset;
        quarantined.ack(0, last).await.expect("ack");
        got
    });
    let records = vec![
        sealed(&line("2026-11-22T16:33:32Z", "good-1")),
        sealed(huge.as_bytes()),
        Record::new("forger", forged.into_bytes()),
        sealed(&line("2026-11-22T16:33:37Z", "good-2")),
    ];
    feed(consumer, &index, records, 3).await;

    for id in ["good-1", "good-2", "huge"] {
        assert_eq!(total(&index, &format!("request.id:{id}")), 1, "{id}");
    }
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(stats.quarantined.load(Ordering::Relaxed), 1);
    let got = reader.await.expect("reader");
    assert_eq!(got.len(), 1);
    let message: QuarantinedMessage =
        serde_json::from_slice(&got[0].record.payload).expect("quarantine JSON");
    let payload = message.payload.expect("UTF-8 payload");
    assert!(
        !payload.contains(token),
        "plaintext token on the quarantine"
    );
    assert!(!payload.contains("hvs."), "{payload}");
    let hmac = AuditHasher::new(b"quarantine-key").hash(token);
    assert!(payload.contains(&hmac), "{payload}");
    assert!(message.reason.contains("bad magic"), "{}", message.reason);
}
