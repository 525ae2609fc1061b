//! The Kafka roles end to end, on a real Kafka-protocol broker (tansu, one per test):
//! `vigil collect` → Kafka → `vigil index` + `vigil rules`, searched through `vigil serve`.
//! They must find what `vigil run` finds on the same file, lose nothing and index nothing twice
//! across a kill -9 of the indexer or of the broker, and quarantine and alert on what was not
//! signed by a collector. Messages Vigil would never write, and what Vigil publishes, go through
//! confluent-kafka: a client that shares no code with Vigil's.
//!
//! Seen on tansu 0.6 with these tests running side by side (several brokers and a dozen
//! Vigil processes on 2 cores): a consumer group whose member was assigned every partition
//! but whose fetches never returned data, for minutes, while another group on the same topic
//! read it all; the process was idle in librdkafka's fetch loop, nothing committed. It did
//! not recur with one Kafka test at a time, which `.config/nextest.toml` enforces.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_testkit::corpus::{self, Manifest};
use vigil_testkit::tansu::{self, Tansu};
use vigil_testkit::vigil::{search_total, VigilRole, VigilRun};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// How long indexing a file may take (debug build, 2 cores, SQLite-backed broker).
const WAIT: Duration = Duration::from_secs(180);
/// How long one read of a topic may take.
const READ: Duration = Duration::from_secs(30);
const INDEXED: &str = "vigil_events_indexed_total";
const REPLACED: &str = "vigil_events_replaced_total";

/// `--metrics 127.0.0.1:0`, for a role whose counters the test reads.
fn metrics_args() -> Vec<String> {
    vec!["--metrics".into(), "127.0.0.1:0".into()]
}

/// Waits until `index` has added exactly `new` documents (indexed minus replaced) and
/// returns (indexed, replaced): a re-read event must be counted as replaced, never added.
fn wait_for_new_documents(index: &VigilRole, new: u64) -> (u64, u64) {
    wait_for("the indexer's counters", WAIT, || {
        let indexed = index.metric(INDEXED).expect(INDEXED);
        let replaced = index.metric(REPLACED).expect(REPLACED);
        if indexed >= new && indexed - replaced == new {
            Ok((indexed, replaced))
        } else {
            Err(format!(
                "{indexed} indexed, {replaced} replaced; {new} expected new"
            ))
        }
    })
}

/// A string no other test run produces, to find (or not find) one message.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Polls `check` until it returns `Some`, failing with `what` (and the last state it
/// described) after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) if Instant::now() > deadline => {
                panic!("{what}: not within {timeout:?}; last: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `--config FILE` as arguments.
fn config_args(config: &Path) -> Vec<String> {
    vec!["--config".into(), config.display().to_string()]
}

/// The (rule_id, group_key) of alerts as JSON.
fn alert_set<'a>(alerts: impl IntoIterator<Item = &'a Value>) -> BTreeSet<(String, String)> {
    alerts
        .into_iter()
        .map(|a| {
            (
                a["rule_id"].as_str().expect("rule_id").to_owned(),
                a["group_key"].as_str().expect("group_key").to_owned(),
            )
        })
        .collect()
}

/// The query for events that carry alice's token HMAC, and how many lines of main.log do.
fn alice_query() -> (String, u64) {
    let alice = Manifest::load().main_hash("token:alice").to_owned();
    let text = corpus::read("main.log");
    let n = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["auth"]["client_token"] == alice.as_str())
        .count() as u64;
    assert!(n > 10, "alice has {n} events");
    (format!("auth.client_token:\"{alice}\""), n)
}

/// A config with the honeytoken watch list, so that the watch-list rules have something to
/// fire on too.
fn write_config(dir: &Path) -> PathBuf {
    let canary = Manifest::load().main_hash("token:canary").to_owned();
    let list = dir.join("honeytokens.txt");
    std::fs::write(&list, format!("{canary}\n")).unwrap();
    let config = dir.join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[[rules.watchlist]]\nname = \"honeytokens\"\nfile = \"{}\"\n",
            list.display()
        ),
    )
    .unwrap();
    config
}

/// Appends lines to a file (created if need be).
fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for line in lines {
        buf.push_str(line);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// Checks the harness alone: tansu takes a record from confluent-kafka and gives back the
/// same bytes, also after a clean restart and after a kill -9.
#[test]
fn tansu_starts_and_takes_a_python_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Tansu::start(dir.path());
    broker.create_topic("harness", 3);
    let key = unique("key");
    // Not UTF-8, and a newline: bytes, not text, must survive.
    let mut value = unique("value").into_bytes();
    value.extend_from_slice(&[0xff, 0x00, b'\n', 0xfe]);
    let (partition, offset) = broker.produce_raw("harness", &key, &value);
    let expect = vec![tansu::Message {
        partition,
        offset,
        key: key.clone().into_bytes(),
        value: value.clone(),
    }];
    assert_eq!(broker.consume_all("harness", READ), expect);

    broker.restart();
    assert_eq!(
        broker.consume_all("harness", READ),
        expect,
        "after a restart"
    );
    broker.kill9();
    broker.restart();
    assert_eq!(broker.consume_all("harness", READ), expect, "after kill -9");
    assert!(broker.consume_all("no-such-topic", READ).is_empty());
    broker.stop();
}

/// collect → Kafka → index and rules find, on main.log, what `vigil run` finds: the same
/// search totals and the same alerts.
#[test]
fn kafka_roles_find_what_vigil_run_finds() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let log = corpus::path("main.log");
    let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    let (alice_q, alice_n) = alice_query();

    // The reference: everything in one process.
    let run = VigilRun::start_with(
        VIGIL,
        &dir.path().join("run-data"),
        std::slice::from_ref(&log),
        &config_args(&config),
    );
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);
    assert_eq!(run.total(&alice_q), alice_n);
    wait_for("vigil run evaluating every event", WAIT, || {
        match run.metric("vigil_rules_events_total") {
            Some(n) if n == lines => Ok(()),
            other => Err(format!("vigil_rules_events_total {other:?}")),
        }
    });
    // Alerts are stored about once a second after evaluation: read until two reads agree.
    let run_alerts = {
        let read = || {
            let (status, body) = run.get("/api/v1/alerts?limit=1000");
            assert_eq!(status, 200, "{body}");
            alert_set(body["alerts"].as_array().unwrap())
        };
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(2500));
            let now = read();
            if now == last {
                break now;
            }
            last = now;
        }
    };
    assert!(
        run_alerts.len() >= 3,
        "vigil run raised only {run_alerts:?}"
    );
    assert_eq!(run.metric(INDEXED), Some(lines), "vigil run: {INDEXED}");
    assert_eq!(run.metric(REPLACED), Some(0), "vigil run: {REPLACED}");
    assert!(run.stop(), "vigil run: clean exit on SIGTERM");

    // The same file through Kafka.
    let broker = Tansu::start(&dir.path().join("kafka"));
    let data = dir.path().join("kafka-data");
    let collect = VigilRole::start(
        VIGIL,
        "collect",
        &broker.brokers(),
        &data,
        &[
            "--file".into(),
            log.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ],
    );
    let index = VigilRole::start(
        VIGIL,
        "index",
        &broker.brokers(),
        &data,
        &[config_args(&config), metrics_args()].concat(),
    );
    let rules = VigilRole::start(
        VIGIL,
        "rules",
        &broker.brokers(),
        &data,
        &config_args(&config),
    );
    let serve = VigilRun::serve(VIGIL, &data, &[]);
    assert_eq!(serve.wait_for_total("*", lines, WAIT), lines);
    assert_eq!(serve.total(&alice_q), alice_n);
    // Nothing was delivered twice: every event was added once, none replaced.
    assert_eq!(wait_for_new_documents(&index, lines), (lines, 0));

    let topic_alerts = wait_for("the alerts of vigil run on vigil-alerts", WAIT, || {
        let records = broker.consume_all("vigil-alerts", READ);
        let alerts: Vec<Value> = records.iter().map(tansu::Message::json).collect();
        let got = alert_set(&alerts);
        if got == run_alerts {
            Ok(records)
        } else {
            Err(format!(
                "missing {:?}, extra {:?}",
                run_alerts.difference(&got).collect::<Vec<_>>(),
                got.difference(&run_alerts).collect::<Vec<_>>()
            ))
        }
    });
    for record in &topic_alerts {
        let alert = record.json();
        assert_eq!(record.key_str(), alert["id"].as_str().unwrap(), "key = id");
        assert!(alert["revision"].is_u64() && alert["count"].as_u64().unwrap() > 0);
        assert!(alert["request_ids"].is_array() && alert["title"].is_string());
    }
    // Nothing more comes: stop the rules role, then compare its store and the whole topic.
    assert!(rules.stop(), "vigil rules: clean exit on SIGTERM");
    let store = vigil_rules::AlertStore::open(&data.join("alerts.redb")).unwrap();
    let stored: Vec<Value> = store
        .alerts(10_000)
        .unwrap()
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(alert_set(&stored), run_alerts, "alerts.redb");
    let all: Vec<Value> = broker
        .consume_all("vigil-alerts", READ)
        .iter()
        .map(tansu::Message::json)
        .collect();
    assert_eq!(alert_set(&all), run_alerts, "vigil-alerts after the stop");
    assert_eq!(serve.total("*"), lines);
    assert!(collect.stop(), "vigil collect: clean exit on SIGTERM");
    assert!(index.stop(), "vigil index: clean exit on SIGTERM");
    assert!(serve.stop(), "vigil serve: clean exit on SIGTERM");
}

/// `vigil index` killed -9 while it works through a large topic, and restarted: every event
/// is indexed exactly once.
#[test]
fn index_kill_9_mid_stream_loses_nothing_and_indexes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut lines = 0u64;
    for copy in 0..20 {
        let copy_lines = corpus::distinct_copy(copy);
        lines += copy_lines.len() as u64;
        append(&log, &copy_lines);
    }
    let broker = Tansu::start(&dir.path().join("kafka"));
    let data = dir.path().join("data");
    let collect = VigilRole::start(
        VIGIL,
        "collect",
        &broker.brokers(),
        &data,
        &["--file".into(), log.display().to_string()],
    );
    let index = VigilRole::start(VIGIL, "index", &broker.brokers(), &data, &[]);
    let serve = VigilRun::serve(VIGIL, &data, &[]);
    wait_for("part of the file indexed", WAIT, || {
        let total = serve.total("*");
        assert!(
            total < lines,
            "indexed everything before the kill; make the file larger"
        );
        if total > 0 {
            eprintln!("killing vigil index at {total} of {lines} events");
            Ok(())
        } else {
            Err("nothing indexed".into())
        }
    });
    index.kill9();
    // What survived the kill: the events committed before it. What the restart reads again
    // (past the offsets committed to Kafka, but already in the index) it must count as
    // replaced; the rest it adds, once.
    let before = search_total(VIGIL, &data, "*");
    assert!(
        before < lines,
        "{before} of {lines} committed before the kill"
    );
    let index = VigilRole::start(VIGIL, "index", &broker.brokers(), &data, &metrics_args());
    assert_eq!(serve.wait_for_total("*", lines, WAIT), lines);
    let (indexed, replaced) = wait_for_new_documents(&index, lines - before);
    eprintln!(
        "{before} committed before the kill; the restart indexed {indexed}, {replaced} of them again"
    );
    assert!(
        replaced <= before,
        "{replaced} replaced, only {before} were there"
    );
    assert_eq!(serve.total("*"), lines);
    // One copy's request, by id: exactly its request and response.
    let copy = corpus::distinct_copy(7);
    let first: Value = serde_json::from_str(&copy[0]).unwrap();
    let id = first["request"]["id"]
        .as_str()
        .expect("first line of main.log has a request id");
    let expected = copy
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["request"]["id"] == id)
        .count() as u64;
    assert_eq!(serve.total(&format!("request.id:\"{id}\"")), expected);
    assert!(index.stop(), "vigil index: clean exit on SIGTERM");
    assert!(collect.stop(), "vigil collect: clean exit on SIGTERM");
}

/// A message on the audit topic that no collector signed (a raw audit line, and bytes that
/// are not even text) is quarantined, alerted on, and not indexed.
#[test]
fn unsigned_message_is_quarantined_alerted_and_not_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = corpus::path("main.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().count() as u64;
    let broker = Tansu::start(&dir.path().join("kafka"));
    let data = dir.path().join("data");
    // collect first: it creates the topics and the signing key the others read.
    let collect = VigilRole::start(
        VIGIL,
        "collect",
        &broker.brokers(),
        &data,
        &["--file".into(), log.display().to_string()],
    );
    let index = VigilRole::start(VIGIL, "index", &broker.brokers(), &data, &metrics_args());
    let rules = VigilRole::start(VIGIL, "rules", &broker.brokers(), &data, &[]);
    let serve = VigilRun::serve(VIGIL, &data, &[]);
    assert_eq!(serve.wait_for_total("*", lines, WAIT), lines);

    // A real audit entry with a request id of its own, as Vault would write it, but unsigned.
    let mut forged: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let real_id = forged["request"]["id"]
        .as_str()
        .expect("first line of main.log has a request id")
        .to_owned();
    // The query form finds what is there, so a 0 below means "not indexed".
    assert!(serve.total(&format!("request.id:\"{real_id}\"")) >= 1);
    let forged_id = unique("forged");
    forged["request"]["id"] = Value::String(forged_id.clone());
    let forged_bytes = forged.to_string().into_bytes();
    let forged_at = broker.produce_raw("vigil-audit", "intruder/file", &forged_bytes);
    let binary: Vec<u8> = [&[0xffu8, 0xfe, 0x00][..], unique("binary").as_bytes()].concat();
    let binary_at = broker.produce_raw("vigil-audit", "intruder/bytes", &binary);

    let quarantined = wait_for("both messages on vigil-quarantine", WAIT, || {
        let q: Vec<Value> = broker
            .consume_all("vigil-quarantine", READ)
            .iter()
            .map(tansu::Message::json)
            .collect();
        let text_q = q
            .iter()
            .find(|m| m["payload"].as_str() == Some(std::str::from_utf8(&forged_bytes).unwrap()))
            .cloned();
        let hex: String = binary.iter().map(|b| format!("{b:02x}")).collect();
        let bin_q = q
            .iter()
            .find(|m| m["payload_hex"].as_str() == Some(hex.as_str()))
            .cloned();
        match (text_q, bin_q) {
            (Some(t), Some(b)) => Ok((t, b)),
            _ => Err(format!("{} quarantined: {q:?}", q.len())),
        }
    });
    for (m, (partition, offset), key) in [
        (&quarantined.0, forged_at, "intruder/file"),
        (&quarantined.1, binary_at, "intruder/bytes"),
    ] {
        assert_eq!(m["key"], key, "{m}");
        assert_eq!(m["partition"].as_i64(), Some(i64::from(partition)), "{m}");
        assert_eq!(m["offset"].as_i64(), Some(offset), "{m}");
        assert!(m["reason"].as_str().is_some_and(|r| !r.is_empty()), "{m}");
    }

    wait_for("vigil-envelope-rejected on vigil-alerts", WAIT, || {
        let alerts: Vec<Value> = broker
            .consume_all("vigil-alerts", READ)
            .iter()
            .map(tansu::Message::json)
            .collect();
        if alerts
            .iter()
            .any(|a| a["rule_id"] == "vigil-envelope-rejected")
        {
            Ok(())
        } else {
            Err(format!("alerts: {:?}", alert_set(&alerts)))
        }
    });

    // The indexer has read past both: it counts them as rejected, and added nothing for them.
    let rejected = index.wait_for_metric("vigil_messages_rejected_total", WAIT, |n| n >= 2);
    assert_eq!(rejected, Some(2), "vigil_messages_rejected_total");
    assert_eq!(index.metric(INDEXED), Some(lines), "{INDEXED}");
    assert_eq!(index.metric(REPLACED), Some(0), "{REPLACED}");
    assert_eq!(serve.total(&format!("request.id:\"{forged_id}\"")), 0);
    assert_eq!(serve.total("*"), lines);
    assert!(rules.stop(), "vigil rules: clean exit on SIGTERM");
    assert!(index.stop(), "vigil index: clean exit on SIGTERM");
    assert!(collect.stop(), "vigil collect: clean exit on SIGTERM");
}

/// The broker killed -9 for 30 s while the audit file keeps growing, then restarted on the
/// same port and database: every line is indexed, once.
#[test]
fn broker_down_30_s_while_the_file_grows_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let first = corpus::distinct_copy(0);
    append(&log, &first);
    let mut broker = Tansu::start(&dir.path().join("kafka"));
    let data = dir.path().join("data");
    let mut collect = VigilRole::start(
        VIGIL,
        "collect",
        &broker.brokers(),
        &data,
        &["--file".into(), log.display().to_string()],
    );
    let mut index = VigilRole::start(VIGIL, "index", &broker.brokers(), &data, &metrics_args());
    let serve = VigilRun::serve(VIGIL, &data, &[]);
    let mut lines = first.len() as u64;
    assert_eq!(serve.wait_for_total("*", lines, WAIT), lines);

    broker.kill9();
    let down = Instant::now();
    // Three more copies of main.log, a chunk every 3 s while the broker is away.
    let more: Vec<String> = (1..=3).flat_map(corpus::distinct_copy).collect();
    lines += more.len() as u64;
    for chunk in more.chunks(more.len().div_ceil(10)) {
        append(&log, chunk);
        std::thread::sleep(Duration::from_secs(3));
    }
    if let Some(left) = Duration::from_secs(30).checked_sub(down.elapsed()) {
        std::thread::sleep(left);
    }
    // Nothing can have reached the index meanwhile: the broker really was away.
    assert_eq!(serve.total("*"), first.len() as u64);
    assert!(
        collect.running(),
        "vigil collect died while the broker was down"
    );
    assert!(
        index.running(),
        "vigil index died while the broker was down"
    );
    broker.restart();

    assert_eq!(serve.wait_for_total("*", lines, WAIT), lines);
    // One indexer process throughout: it added every line once. A batch the collector sent
    // again (its acknowledgement lost with the broker) is counted as replaced, not added.
    let (indexed, replaced) = wait_for_new_documents(&index, lines);
    eprintln!("{indexed} indexed, {replaced} of them delivered again");
    assert_eq!(serve.total("*"), lines, "indexed twice");
    assert!(index.stop(), "vigil index: clean exit on SIGTERM");
    assert!(collect.stop(), "vigil collect: clean exit on SIGTERM");
}
