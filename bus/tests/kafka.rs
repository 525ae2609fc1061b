//! `vigil_bus::KafkaTransport` on a real Kafka-protocol broker (tansu, SQLite storage): every
//! record of a large batch arrives once and in order per key, acknowledgements resume a group
//! exactly, `subscribe_at` starts where the consumer says, and two static members of one group
//! split the partitions between them; a record over the producer's limit is refused alone
//! (named in the receipt) while its batch-mates arrive, and the topic's message limit is read
//! and checked at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use vigil_bus::{
    create_topics, BusError, Delivery, KafkaConfig, KafkaTransport, Record, RefusalReason,
    Subscription, TopicSpec, Transport,
};
use vigil_testkit::tansu::Tansu;

const PARTITIONS: u32 = 3;

async fn topic(broker: &Tansu, name: &str, instance: &str) -> KafkaTransport {
    let mut config = KafkaConfig::new(broker.brokers());
    config.instance_id = Some(instance.to_owned());
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    create_topics(&config, &[name], spec)
        .await
        .expect("create topic");
    KafkaTransport::new(config, name).expect("transport")
}

/// A record the size of a typical audit line, numbered per key.
fn record(key: &str, n: usize) -> Record {
    let body = format!(
        r#"{{"seq":{n},"key":"{key}","time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"{key}-{n}","path":"secret/data/app/{n}","remote_address":"10.0.0.1"}},"pad":"{}"}}"#,
        "x".repeat(600)
    );
    Record::new(key, body)
}

fn seq(delivery: &Delivery) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&delivery.record.payload).expect("json");
    v["seq"].as_u64().expect("seq") as usize
}

/// Reads until `want` records arrived (acknowledging them), or fails after `limit`.
async fn read(sub: &mut dyn Subscription, want: usize, limit: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < want {
        let batch = tokio::time::timeout_at(deadline, sub.next_batch(2048))
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} records within {limit:?}", got.len()))
            .expect("next_batch");
        let mut last = BTreeMap::new();
        for d in &batch {
            last.insert(d.partition, d.offset);
        }
        for (p, o) in last {
            sub.ack(p, o).await.expect("ack");
        }
        got.extend(batch);
    }
    got
}

/// Keys of the marker records: thirty keys land on every one of the few partitions.
const MARKERS: usize = 30;

/// Proves that nothing more was pending for `sub` by a positive signal rather than by a quiet
/// wait: publishes one marker record per key `marker-0..29` and reads (acknowledging) until
/// all have arrived. Within a partition a pending record would arrive before that partition's
/// marker, and the markers cover every partition (asserted): so any record read that is not a
/// marker was pending. Returns those.
async fn pending_before_markers(
    transport: &KafkaTransport,
    sub: &mut dyn Subscription,
) -> Vec<Delivery> {
    let markers: Vec<Record> = (0..MARKERS)
        .map(|i| record(&format!("marker-{i}"), i))
        .collect();
    transport
        .publish(markers)
        .await
        .expect("publish markers")
        .await
        .expect("the broker confirmed the markers");
    let (mut pending, mut seen, mut partitions) = (Vec::new(), 0, BTreeSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < MARKERS {
        let batch = tokio::time::timeout_at(deadline, sub.next_batch(2048))
            .await
            .unwrap_or_else(|_| panic!("only {seen} of {MARKERS} markers within 60 s"))
            .expect("next_batch");
        let mut last = BTreeMap::new();
        for d in batch {
            last.insert(d.partition, d.offset);
            if d.record.key.starts_with("marker-") {
                seen += 1;
                partitions.insert(d.partition);
            } else {
                pending.push(d);
            }
        }
        for (p, o) in last {
            sub.ack(p, o).await.expect("ack");
        }
    }
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "markers on every partition: {partitions:?}"
    );
    pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_records_arrive_once_in_order_per_key_and_the_group_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    let transport = topic(&broker, "volume", "node-a").await;

    // Several sources, as several audit devices would be; 50,000 records at volume, because
    // small counts hide broker fetch bugs.
    let keys = ["n1/main", "n1/socket", "n2/main", "n3/syslog", "n4/main"];
    let per_key = 10_000;
    let mut receipts = Vec::new();
    for chunk in 0..(per_key / 1000) {
        let batch: Vec<Record> = (chunk * 1000..(chunk + 1) * 1000)
            .flat_map(|n| keys.iter().map(move |k| record(k, n)))
            .collect();
        receipts.push(transport.publish(batch).await.expect("publish"));
    }
    for receipt in receipts {
        receipt.await.expect("the broker confirmed the batch");
    }

    let total = keys.len() * per_key;
    let mut sub = transport.subscribe("g").await.expect("subscribe");
    let got = read(sub.as_mut(), total, Duration::from_secs(300)).await;
    assert_eq!(got.len(), total, "{}", broker.log_tail(20));
    let mut next: BTreeMap<&str, usize> = keys.iter().map(|k| (*k, 0)).collect();
    let mut partitions_of: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for d in &got {
        let key = keys
            .iter()
            .find(|k| **k == d.record.key)
            .expect("a known key");
        assert_eq!(seq(d), next[key], "key {key}: out of order or repeated");
        *next.get_mut(key).unwrap() += 1;
        partitions_of.entry(key).or_default().insert(d.partition);
    }
    assert!(
        partitions_of.values().all(|p| p.len() == 1),
        "one key, one partition: {partitions_of:?}"
    );
    drop(sub);

    // Everything was acknowledged: the group resumes after it and sees only what is new.
    transport
        .publish(vec![record("n1/main", per_key)])
        .await
        .unwrap()
        .await
        .unwrap();
    let mut again = transport.subscribe("g").await.expect("resubscribe");
    let more = read(again.as_mut(), 1, Duration::from_secs(60)).await;
    assert_eq!(seq(&more[0]), per_key);
    assert_eq!(more[0].record.key, "n1/main");
    let pending = pending_before_markers(&transport, again.as_mut()).await;
    assert!(pending.is_empty(), "read again after the ack: {pending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_at_starts_where_the_consumer_says_and_two_members_split_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    let a = topic(&broker, "split", "indexer-0").await;
    create_topics(
        &KafkaConfig::new(broker.brokers()),
        &["pair"],
        TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        },
    )
    .await
    .expect("create topic");
    let n = 3000;
    let batch: Vec<Record> = (0..n).map(|i| record(&format!("k{}", i % 30), i)).collect();
    a.publish(batch).await.unwrap().await.unwrap();

    // One member reads everything; note where each partition ends.
    let mut sub = a.subscribe("first").await.unwrap();
    let got = read(sub.as_mut(), n, Duration::from_secs(120)).await;
    drop(sub);
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    for d in &got {
        let end = ends.entry(d.partition).or_default();
        *end = (*end).max(d.offset + 1);
    }
    assert!(ends.len() > 1, "keys spread over partitions: {ends:?}");

    // A new group told to resume ten records before each partition's end gets exactly those.
    let resume: Vec<(u32, u64)> = ends.iter().map(|(&p, &end)| (p, end - 10)).collect();
    let mut resumed = a.subscribe_at("second", &resume).await.unwrap();
    let tail = read(resumed.as_mut(), 10 * ends.len(), Duration::from_secs(60)).await;
    for d in &tail {
        assert!(
            d.offset + 10 >= ends[&d.partition],
            "{d:?} is before the resume point"
        );
    }
    let pending = pending_before_markers(&a, resumed.as_mut()).await;
    assert!(pending.is_empty(), "before the resume point: {pending:?}");
    drop(resumed);

    // Two static members of one group share the partitions: together they see every record
    // once, and neither sees all partitions. Both join (and the group settles) before
    // anything is published, so no record is read by a member that then loses its partition.
    let a = a.with_topic("pair");
    let b = topic(&broker, "pair", "indexer-1").await;
    let mut one = a.subscribe("pair").await.unwrap();
    let mut two = b.subscribe("pair").await.unwrap();
    for _ in 0..10 {
        for sub in [&mut one, &mut two] {
            let _ = tokio::time::timeout(Duration::from_millis(500), sub.next_batch(1)).await;
        }
    }
    let batch: Vec<Record> = (0..n).map(|i| record(&format!("k{}", i % 30), i)).collect();
    a.publish(batch).await.unwrap().await.unwrap();
    let (mut seen, mut parts) = (BTreeSet::new(), [BTreeSet::new(), BTreeSet::new()]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < n && tokio::time::Instant::now() < deadline {
        for (i, sub) in [&mut one, &mut two].into_iter().enumerate() {
            if let Ok(Ok(batch)) =
                tokio::time::timeout(Duration::from_millis(500), sub.next_batch(1000)).await
            {
                for d in batch {
                    assert!(seen.insert(seq(&d)), "record {} delivered twice", seq(&d));
                    parts[i].insert(d.partition);
                }
            }
        }
    }
    assert_eq!(seen.len(), n, "{}", broker.log_tail(20));
    assert!(
        parts[0].is_disjoint(&parts[1]) && !parts[0].is_empty() && !parts[1].is_empty(),
        "members should split the partitions: {parts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_limit_is_refused_alone_and_its_batch_mates_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    let mut config = KafkaConfig::new(broker.brokers());
    config.max_message_bytes = 4096;
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    create_topics(&config, &["limits"], spec)
        .await
        .expect("create topic");
    let transport = KafkaTransport::new(config, "limits").expect("transport");

    // The topic takes what this producer may send (tansu reports no default limit).
    let topic_limit = transport
        .check_topic_limit()
        .await
        .expect("topic limit checked");
    assert!(topic_limit.is_none_or(|l| l >= 4096), "{topic_limit:?}");

    let big = Record::new("n1/main", vec![b'x'; 5000]);
    let batch = vec![record("n1/main", 0), big.clone(), record("n1/main", 2)];
    let mut receipt = transport.publish(batch).await.expect("publish");
    let delivered = receipt.delivered().await.expect("the batch is settled");
    assert_eq!(delivered.refused.len(), 1, "{delivered:?}");
    assert_eq!(delivered.refused[0].index, 1);
    assert_eq!(
        delivered.refused[0].reason,
        RefusalReason::OverProducerLimit {
            bytes: big.size(),
            limit: 4096
        }
    );
    assert_eq!(transport.stats().records_refused(), 1);

    // Awaited as a whole, the same refusal fails the batch (for producers that cannot
    // quarantine), naming the record.
    let strict = transport.publish(vec![big]).await.expect("publish").await;
    assert!(
        matches!(strict, Err(BusError::Refused { index: 0, .. })),
        "{strict:?}"
    );

    let mut sub = transport.subscribe("g").await.expect("subscribe");
    let got = read(sub.as_mut(), 2, Duration::from_secs(60)).await;
    let seqs: Vec<usize> = got.iter().map(seq).collect();
    assert_eq!(seqs, vec![0, 2]);
    let pending = pending_before_markers(&transport, sub.as_mut()).await;
    assert!(
        pending.is_empty(),
        "the refused record arrived: {pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_smaller_than_the_producer_limit_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    // A producer allowed 2 MiB makes its topic with room for them (over Kafka's default).
    let mut config = KafkaConfig::new(broker.brokers());
    config.max_message_bytes = 2 * 1024 * 1024;
    let spec = TopicSpec {
        partitions: 1,
        replication: 1,
    };
    create_topics(&config, &["sized"], spec)
        .await
        .expect("create topic");
    let fits = KafkaTransport::new(config.clone(), "sized").expect("transport");
    let limit = fits
        .check_topic_limit()
        .await
        .expect("the topic takes 2 MiB");
    assert_eq!(limit, Some(config.topic_limit_needed()));

    // A producer allowed more than the topic takes is told so before it sends anything.
    let mut bigger = config.clone();
    bigger.max_message_bytes = 4 * 1024 * 1024;
    let transport = KafkaTransport::new(bigger, "sized").expect("transport");
    match transport.check_topic_limit().await {
        Err(BusError::TopicMessageLimitTooSmall {
            topic,
            topic_limit,
            needed,
            ..
        }) => {
            assert_eq!(topic, "sized");
            assert_eq!(topic_limit, config.topic_limit_needed());
            assert!(topic_limit < needed, "{topic_limit} {needed}");
        }
        other => panic!("expected the topic to be too small: {other:?}"),
    }
}
