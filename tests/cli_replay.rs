//! `vigil replay` then `vigil search`: a backfill is complete, a second one adds nothing, and
//! bad lines are quarantined, not lost.

use std::process::Command;

use vigil_testkit::corpus;
use vigil_testkit::process::{output_within, COMMAND_TIMEOUT};
use vigil_testkit::vigil::search_total;

fn vigil(args: &[&str], data: &std::path::Path) -> std::process::Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .arg("--data-dir")
            .arg(data),
        COMMAND_TIMEOUT,
    )
}

fn total(data: &std::path::Path, q: &str) -> u64 {
    search_total(env!("CARGO_BIN_EXE_vigil"), data, q)
}

#[test]
fn replay_twice_indexes_each_event_once_and_quarantines_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = corpus::read("main.log");
    let mut lines: Vec<&str> = text.lines().take(500).collect();
    lines.insert(10, "this is not an audit entry");
    lines.insert(20, r#"{"time":"2026-11-22T16:33:32Z","type":"#);
    let log = dir.path().join("audit.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    for _ in 0..2 {
        let out = vigil(&["replay", log.to_str().unwrap()], &data);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("500 events indexed, 2 lines quarantined"),
            "{err}"
        );
    }
    assert_eq!(total(&data, "*"), 500);
    let quarantine = std::fs::read_to_string(data.join("quarantine.jsonl")).unwrap();
    assert_eq!(quarantine.lines().count(), 4, "two bad lines, two replays");
}

#[test]
fn leaks_are_redacted_and_their_findings_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = corpus::read("raw.log");
    let lines: Vec<&str> = text.lines().take(200).collect();
    let log = dir.path().join("raw.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = vigil(&["replay", log.to_str().unwrap()], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_token = lines
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["auth"]["client_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count() as u64;
    assert!(with_token > 100);
    assert!(total(&data, "findings.kind:plaintext_token") >= with_token);
    assert_eq!(
        total(&data, "auth.client_token:root"),
        0,
        "a plaintext token reached the index"
    );
    // The dev root token of the capture is `root`; every other token is `s.` + 24 characters.
    let leaked: Vec<&str> = text
        .split('"')
        .filter(|s| s.len() == 26 && s.starts_with("s."))
        .take(5)
        .collect();
    assert!(!leaked.is_empty());
    for token in leaked {
        assert_eq!(
            total(&data, &format!("\"{token}\"")),
            0,
            "{token} is searchable"
        );
    }
}
