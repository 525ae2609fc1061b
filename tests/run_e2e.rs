//! `vigil run` end to end: a file audit device in, searchable events out, nothing lost or
//! indexed twice across a kill -9.

#[path = "support/vigil.rs"]
mod vigil;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use vigil::{corpus, VigilRun};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn main_log_is_fully_searchable_and_token_queries_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = corpus("main.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().count() as u64;
    let run = VigilRun::start(dir.path(), &[log]);
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);

    // Count independently the events that carry alice's token HMAC.
    let manifest = vigil::manifest();
    let alice = vigil::main_device_hash(&manifest, "token:alice");
    let expected: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["auth"]["client_token"] == alice.as_str())
        .map(|e| {
            format!(
                "{}/{}",
                e["request"]["id"].as_str().unwrap(),
                e["type"].as_str().unwrap()
            )
        })
        .collect();
    assert!(expected.len() > 10, "alice has {} events", expected.len());
    let q = format!("auth.client_token:\"{alice}\"");
    let (status, body) = run.get(&format!(
        "/api/v1/search?limit=1000&q={}",
        vigil::encode(&q)
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"].as_u64().unwrap(), expected.len() as u64);
    let mut got: Vec<String> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}/{}",
                h["request_id"].as_str().unwrap(),
                h["type"].as_str().unwrap()
            )
        })
        .collect();
    let mut expected = expected;
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // One event by id, the API's auth, and a bad parameter.
    let id = body["hits"][0]["id"].as_str().unwrap().to_owned();
    let (status, event) = run.get(&format!("/api/v1/events/{id}"));
    assert_eq!(status, 200);
    assert_eq!(event["raw"]["auth"]["client_token"], alice.as_str());
    assert_eq!(run.get_with("/api/v1/search?q=*", None).0, 401);
    assert_eq!(run.get_with("/api/v1/search?q=*", Some("wrong")).0, 401);
    let (status, err) = run.get("/api/v1/search?q=*&from=yesterday");
    assert_eq!(status, 400);
    assert_eq!(err["error"]["parameter"], "from");
    let (status, facets) = run.get("/api/v1/facets?field=outcome");
    assert_eq!(status, 200, "{facets}");
    let sum: u64 = facets["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, lines);
    let (status, metrics) = run.get_with("/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(&format!("vigil_events_indexed_total {lines}")),
        "{metrics}"
    );

    // `vigil search` reads the same index while `vigil run` writes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "search",
            "--format",
            "json",
            "--limit",
            "1000",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg(&q)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        expected.len()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("of {} matching", expected.len()))
    );
    assert!(run.stop(), "clean exit on SIGTERM");
}

/// Builds a file of `copies` × main.log with request ids made unique per copy, so that each
/// line is a distinct event (lines without a request id get an extra field: their id is the
/// hash of their bytes).
fn large_log(path: &std::path::Path, copies: usize) -> u64 {
    let text = std::fs::read_to_string(corpus("main.log")).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut n = 0;
    for copy in 0..copies {
        for line in text.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            match v["request"]["id"].as_str() {
                Some(id) => v["request"]["id"] = Value::String(format!("{copy}-{id}")),
                None => v["test_copy"] = Value::from(copy),
            }
            serde_json::to_writer(&mut out, &v).unwrap();
            out.write_all(b"\n").unwrap();
            n += 1;
        }
    }
    out.flush().unwrap();
    n
}

#[test]
fn kill_9_halfway_loses_nothing_and_indexes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let lines = large_log(&log, 20);
    let data = dir.path().join("data");
    let run = VigilRun::start(&data, std::slice::from_ref(&log));
    // Wait until part of the file is indexed, then kill without warning.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let total = run.total("*");
        if total > 0 && total < lines {
            break;
        }
        assert!(
            total < lines,
            "indexed everything before the kill; make the file larger"
        );
        assert!(std::time::Instant::now() < deadline, "nothing indexed");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill9();
    let run = VigilRun::start(&data, std::slice::from_ref(&log));
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);
    // Stay a little longer: a duplicate would show up as a total above the line count.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(run.total("*"), lines);
}
