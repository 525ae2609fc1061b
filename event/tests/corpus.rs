//! The event model and the HMAC checks over the audit logs captured from OpenBao 2.7.2,
//! vendored in `testdata/corpus/`.

use serde_json::Value;
use vigil_event::{unframe, AuditEvent, AuditHasher, FindingKind, HmacChecker, Redactor, Severity};
use vigil_testkit::corpus::{self, Manifest, LOGS};

fn events(file: &str) -> Vec<AuditEvent> {
    corpus::lines(file)
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let (_, json) = unframe(line).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
            AuditEvent::parse(json).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn every_line_round_trips() {
    let m = Manifest::load();
    for file in LOGS {
        let evs = events(file);
        assert_eq!(evs.len() as u64, m.lines[file], "{file}");
        for (i, ev) in evs.iter().enumerate() {
            let original: Value = serde_json::from_slice(ev.raw()).unwrap();
            let reserialized = serde_json::to_value(ev.entry()).unwrap();
            assert_eq!(original, reserialized, "{file}:{}", i + 1);
        }
    }
}

#[test]
fn audit_hash_reproduces_every_manifest_pair() {
    let m = Manifest::load();
    assert_eq!(m.hashes.len(), 75);
    for pair in &m.hashes {
        let got = AuditHasher::new(m.salt(&pair.device).as_bytes()).hash(&pair.plaintext);
        assert_eq!(got, pair.hash, "{} on {}", pair.name, pair.device);
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
    let m = Manifest::load();
    // Tokens and accessors; the dev root token's id `root` is also a policy name, so it is
    // checked through the token fields instead.
    let plaintexts: Vec<&str> = m
        .hashes
        .iter()
        .map(|p| p.plaintext.as_str())
        .filter(|p| p.len() >= 20)
        .collect();
    assert!(plaintexts.len() > 20, "{} plaintexts", plaintexts.len());
    let raw = events("raw.log");
    let (mut redacted, mut untouched) = (0, 0);
    for (i, ev) in raw.iter().enumerate() {
        let fs = checker.check(ev);
        let Some(clean) = redactor.redact(ev, &fs).unwrap() else {
            // Nothing to redact: then nothing above Info was found, and no token is there.
            untouched += 1;
            assert!(
                fs.iter().all(|f| f.severity <= Severity::Info),
                "raw.log:{}: not redacted despite {fs:?}",
                i + 1
            );
            assert!(
                vigil_event::token::find_tokens(ev.raw_str()).is_empty()
                    && !plaintexts.iter().any(|p| ev.raw_str().contains(p)),
                "raw.log:{}: a token, not redacted",
                i + 1
            );
            continue;
        };
        redacted += 1;
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
    // Every line was checked one way or the other; most of raw.log carries a token.
    assert_eq!(redacted + untouched, raw.len());
    assert!(
        redacted > 3000,
        "only {redacted} of {} lines redacted",
        raw.len()
    );
}
