//! `vigil hash` and `vigil verify` as a user runs them, over the vendored corpus
//! (testdata/corpus).

use std::process::{Command, Output};

use serde_json::Value;
use vigil_testkit::corpus::{self, Manifest};
use vigil_testkit::process::{output_within, COMMAND_TIMEOUT};

fn vigil(args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_vigil")).args(args),
        COMMAND_TIMEOUT,
    )
}

fn verify_json(file: &str) -> (Vec<Value>, String) {
    let path = corpus::path(file);
    let out = vigil(&["verify", "--format", "json", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (findings, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn hash_reproduces_the_manifest_pairs() {
    let m = Manifest::load();
    assert!(m.hashes.len() > 50, "{} pairs", m.hashes.len());
    for pair in &m.hashes {
        let out = vigil(&["hash", "--salt", m.salt(&pair.device), &pair.plaintext]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            pair.hash,
            "{} on {}",
            pair.name,
            pair.device
        );
    }
}

#[test]
fn hash_reads_the_salt_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let salt = dir.path().join("salt");
    std::fs::write(&salt, "cdca0b49-ec84-dcda-f425-1a248d0fc712\n").unwrap();
    let out = vigil(&[
        "hash",
        "--salt-file",
        salt.to_str().unwrap(),
        "s.cCNrEKC1aBbog162djzX4FuB",
        "x",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        "hmac-sha256:c48ef5a6288ac6089e85748e10bd05936f011751420664f68a2d27541cfc0acf"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vigil(&["hash", "x"]).status.code(), Some(2), "no salt");
    assert_eq!(vigil(&["verify"]).status.code(), Some(2), "no file");
    let out = vigil(&["verify", "/nonexistent/audit.log"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/audit.log"));
}

#[test]
fn hmac_devices_have_no_findings() {
    for file in ["main.log", "socket.log", "syslog.log"] {
        let (findings, summary) = verify_json(file);
        assert!(findings.is_empty(), "{file}: {:?}", findings.first());
        assert!(
            summary.contains("3301 lines, 3301 events, 0 unparseable, 0 findings"),
            "{summary}"
        );
    }
}

#[test]
fn hmac_accessor_false_gives_only_info() {
    let (findings, _) = verify_json("noacc.log");
    assert!(!findings.is_empty());
    assert!(
        findings.iter().all(|f| f["severity"] == "info"),
        "{:?}",
        findings.iter().find(|f| f["severity"] != "info")
    );
}

#[test]
fn every_raw_entry_with_a_token_in_clear_has_a_leak_finding() {
    let (findings, _) = verify_json("raw.log");
    let text = corpus::read("raw.log");
    let tokens: Vec<String> = Manifest::load()
        .hashes
        .iter()
        .filter(|p| p.name.starts_with("token:") && p.plaintext.starts_with("s."))
        .map(|p| p.plaintext.clone())
        .collect();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let client_token = entry["auth"]["client_token"].as_str().unwrap_or("");
        if client_token.is_empty() && !tokens.iter().any(|t| line.contains(t.as_str())) {
            continue;
        }
        checked += 1;
        let n = (i + 1) as u64;
        assert!(
            findings.iter().any(|f| f["line"] == n
                && f["severity"] == "critical"
                && f["request_id"] == entry["request"]["id"]
                && f["field"].as_str().is_some_and(|s| !s.is_empty())),
            "raw.log:{n} has no leak finding"
        );
    }
    assert!(checked > 3000, "{checked}");
}

#[test]
fn bad_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.log");
    let good = corpus::read("main.log").lines().nth(1).unwrap().to_owned();
    let mut data = Vec::new();
    data.extend_from_slice(b"not json\n");
    data.extend_from_slice(&good.as_bytes()[..good.len() / 2]);
    data.extend_from_slice(b"\n\xff\xfe\n");
    data.extend_from_slice(good.as_bytes());
    data.push(b'\n');
    std::fs::write(&path, &data).unwrap();
    let out = vigil(&[
        "verify",
        "--max-line-bytes",
        "100000",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("4 lines, 1 events, 3 unparseable"), "{err}");
    assert!(err.contains(":3: unparseable: invalid UTF-8"), "{err}");
}
