//! `vigil run` end to end: a file audit device in, searchable events out, nothing lost or
//! indexed twice across a kill -9.
//!
//! "Indexed twice" cannot show in a search total: the index replaces a document with the
//! same id. The indexer counts those replacements (`vigil_events_replaced_total`), so the
//! tests assert how many documents were new and how many replaced.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_testkit::corpus::{self, Manifest};
use vigil_testkit::process::{output_within, COMMAND_TIMEOUT};
use vigil_testkit::vigil::{encode, search_total, VigilRun};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const WAIT: Duration = Duration::from_secs(60);
const INDEXED: &str = "vigil_events_indexed_total";
const REPLACED: &str = "vigil_events_replaced_total";

/// The number of events in the index under `data`, read by `vigil search` (no server).
fn committed(data: &Path) -> u64 {
    search_total(VIGIL, data, "*")
}

#[test]
fn main_log_is_fully_searchable_and_token_queries_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = corpus::path("main.log");
    let text = corpus::read("main.log");
    let lines = text.lines().count() as u64;
    let run = VigilRun::start(VIGIL, dir.path(), &[log]);
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);

    // Count independently the events that carry alice's token HMAC.
    let manifest = Manifest::load();
    let alice = manifest.main_hash("token:alice");
    let expected: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["auth"]["client_token"] == alice)
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
    let (status, body) = run.get(&format!("/api/v1/search?limit=1000&q={}", encode(&q)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"].as_u64().unwrap(), expected.len() as u64);
    assert_eq!(
        body["hits"].as_array().unwrap().len(),
        expected.len(),
        "one page"
    );
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
    assert_eq!(event["raw"]["auth"]["client_token"], alice);
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
    // Read once, from the start: every line was new, none replaced.
    assert_eq!(run.metric(INDEXED), Some(lines), "{INDEXED}");
    assert_eq!(run.metric(REPLACED), Some(0), "{REPLACED}");

    // `vigil search` reads the same index while `vigil run` writes it.
    let out = output_within(
        Command::new(VIGIL)
            .args([
                "search",
                "--format",
                "json",
                "--limit",
                "1000",
                "--data-dir",
            ])
            .arg(dir.path())
            .arg(&q),
        COMMAND_TIMEOUT,
    );
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
fn large_log(path: &Path, copies: usize) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut n = 0;
    for copy in 0..copies {
        for line in corpus::distinct_copy(copy) {
            out.write_all(line.as_bytes()).unwrap();
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
    let run = VigilRun::start(VIGIL, &data, std::slice::from_ref(&log));
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
    // What survived the kill: the events committed before it.
    let before = committed(&data);
    assert!(
        before < lines,
        "{before} of {lines} committed before the kill"
    );
    let run = VigilRun::start(VIGIL, &data, std::slice::from_ref(&log));
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);
    // The restart indexes up to the last line: wait until its counters say it read it.
    let missing = lines - before;
    let deadline = std::time::Instant::now() + WAIT;
    let (indexed, replaced) = loop {
        let indexed = run.metric(INDEXED).expect(INDEXED);
        let replaced = run.metric(REPLACED).expect(REPLACED);
        if indexed >= missing && indexed - replaced == missing {
            break (indexed, replaced);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the restart: {indexed} indexed, {replaced} replaced; {missing} were missing"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every event missing after the kill was added once, and whatever the restart read again
    // (past the checkpoint, already committed) was counted as a replacement, not added.
    eprintln!(
        "{before} committed before the kill; the restart indexed {indexed}, {replaced} of them again"
    );
    assert!(
        replaced <= before,
        "{replaced} replaced, only {before} were there"
    );
    assert_eq!(run.total("*"), lines);
    assert!(run.stop(), "clean exit on SIGTERM");
}
