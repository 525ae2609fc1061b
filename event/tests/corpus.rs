//! The event model and the HMAC checks over the audit logs captured from OpenBao 2.7.2 in
//! `../shared/corpus/public`.

use std::path::PathBuf;

use serde_json::Value;
use vigil_event::{unframe, AuditEvent, AuditHasher, FindingKind, HmacChecker, Redactor, Severity};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/public")
}

fn lines(file: &str) -> Vec<Vec<u8>> {
    let path = corpus_dir().join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn events(file: &str) -> Vec<AuditEvent> {
    lines(file)
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let (_, json) = unframe(line).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
            AuditEvent::parse(json).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1))
        })
        .collect()
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

const FILES: [&str; 5] = [
    "main.log",
    "noacc.log",
    "raw.log",
    "socket.log",
    "syslog.log",
];

#[test]
fn every_line_round_trips() {
    for file in FILES {
        let evs = events(file);
        assert_eq!(
            evs.len() as u64,
            manifest()["lines"][file].as_u64().unwrap(),
            "{file}"
        );
        for (i, ev) in evs.iter().enumerate() {
            let original: Value = serde_json::from_slice(ev.raw()).unwrap();
            let reserialized = serde_json::to_value(ev.entry()).unwrap();
            assert_eq!(original, reserialized, "{file}:{}", i + 1);
        }
    }
}

#[test]
fn audit_hash_reproduces_every_manifest_pair() {
    let m = manifest();
    let pairs = m["hashes"].as_array().unwrap();
    assert!(!pairs.is_empty());
    for pair in pairs {
        let device = pair["device"].as_str().unwrap();
        let salt = m["devices"][device]["salt"].as_str().unwrap();
        let got = AuditHasher::new(salt.as_bytes()).hash(pair["plaintext"].as_str().unwrap());
        assert_eq!(got, pair["hash"].as_str().unwrap(), "{}", pair["name"]);
    }
}

fn findings(file: &str) -> Vec<(usize, Vec<vigil_event::HmacFinding>)> {
    let checker = HmacChecker::default();
    events(file)
        .iter()
        .map(|ev| checker.check(ev))
        .enumerate()
        .collect()
}

#[test]
fn hmac_devices_have_no_findings() {
    for file in ["main.log", "socket.log", "syslog.log"] {
        let bad: Vec<_> = findings(file)
            .into_iter()
            .filter(|(_, f)| !f.is_empty())
            .collect();
        assert!(bad.is_empty(), "{file}: {:?}", bad.first());
    }
}

#[test]
fn hmac_accessor_false_gives_only_info() {
    let all = findings("noacc.log");
    let infos = all
        .iter()
        .flat_map(|(_, f)| f)
        .filter(|f| f.severity == Severity::Info)
        .count();
    assert!(infos > 1000, "only {infos} info findings");
    for (line, fs) in &all {
        for f in fs {
            assert_eq!(
                (f.kind, f.severity),
                (FindingKind::PlaintextAccessor, Severity::Info),
                "line {}",
                line + 1
            );
        }
    }
}

#[test]
fn log_raw_entries_with_a_token_in_clear_are_leaks() {
    let evs = events("raw.log");
    let checker = HmacChecker::default();
    let mut with_token = 0;
    for (i, ev) in evs.iter().enumerate() {
        let fs = checker.check(ev);
        let has_token = vigil_event::token::find_tokens(ev.raw_str()).len()
            + [ev
                .entry()
                .auth
                .as_ref()
                .and_then(|a| a.client_token.as_deref())]
            .iter()
            .flatten()
            .filter(|t| !t.is_empty())
            .count()
            > 0;
        if has_token {
            with_token += 1;
            assert!(
                fs.iter().any(|f| f.severity == Severity::Critical),
                "raw.log:{} carries a token but no critical finding: {fs:?}",
                i + 1
            );
        }
    }
    assert!(with_token > 3000, "{with_token}");
}

#[test]
fn redaction_removes_every_token_from_raw_log() {
    let redactor = Redactor::new(AuditHasher::new(b"collector-key"));
    let checker = HmacChecker::default();
    let m = manifest();
    // Tokens and accessors; the dev root token's id `root` is also a policy name, so it is
    // checked through the token fields instead.
    let plaintexts: Vec<&str> = m["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plaintext"].as_str().unwrap())
        .filter(|p| p.len() >= 20)
        .collect();
    for (i, ev) in events("raw.log").iter().enumerate() {
        let fs = checker.check(ev);
        let Some(clean) = redactor.redact(ev, &fs).unwrap() else {
            continue;
        };
        assert!(
            vigil_event::token::find_tokens(clean.raw_str()).is_empty(),
            "raw.log:{}",
            i + 1
        );
        for p in &plaintexts {
            assert!(!clean.raw_str().contains(p), "raw.log:{}", i + 1);
        }
        let after = checker.check(&clean);
        assert!(
            after.iter().all(|f| f.severity <= Severity::Info),
            "raw.log:{}: {after:?}",
            i + 1
        );
        assert_eq!(clean.entry().request_id(), ev.entry().request_id());
        let token = clean
            .entry()
            .auth
            .as_ref()
            .and_then(|a| a.client_token.as_deref());
        assert!(
            token.is_none_or(|t| t.is_empty() || t.starts_with("hmac-sha256:")),
            "raw.log:{}",
            i + 1
        );
    }
}
