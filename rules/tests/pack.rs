//! Synthetic events for every rule class of the built-in pack, including those the public
//! corpus lacks, plus the engine's deduplication, state round trip and load errors.

use vigil_event::{AuditEvent, FindingKind, HmacFinding, Origin, Severity, SourceKind};
use vigil_rules::{Alert, AlertConfig, EngineState, LoadError, RulesEngine, Ruleset, WatchLists};

const T0: i64 = 1_795_000_000;

fn time(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let nanos = ((secs - secs.floor()) * 1e9) as u32;
    chrono::DateTime::from_timestamp(T0 + whole, nanos)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// One audit entry at `secs` after T0; `body` is the JSON after `time` and `type`.
fn ev(secs: f64, kind: &str, body: &str) -> AuditEvent {
    let line = format!(r#"{{"time":"{}","type":"{kind}",{body}}}"#, time(secs));
    AuditEvent::parse(line.as_bytes()).expect("valid synthetic line")
}

fn user(name: &str, entity: &str, token: &str) -> String {
    format!(
        r#""auth":{{"client_token":"hmac-sha256:{token}","accessor":"hmac-sha256:acc{token}","display_name":"userpass-{name}","policies":["default","team"],"policy_results":{{"allowed":true}},"metadata":{{"username":"{name}"}},"entity_id":"{entity}","token_type":"service"}}"#
    )
}

const ROOT: &str = r#""auth":{"client_token":"hmac-sha256:r00t","accessor":"hmac-sha256:racc","display_name":"token","policies":["root"],"policy_results":{"allowed":true},"token_type":"service"}"#;

fn req(id: &str, op: &str, path: &str, addr: &str, mount: &str, mount_type: &str) -> String {
    format!(
        r#""request":{{"id":"{id}","operation":"{op}","path":"{path}","remote_address":"{addr}","mount_point":"{mount}","mount_type":"{mount_type}"}}"#
    )
}

struct Run {
    engine: RulesEngine,
    alerts: Vec<Alert>,
}

impl Run {
    fn new() -> Run {
        Run::with_lists(WatchLists::new())
    }

    fn with_lists(lists: WatchLists) -> Run {
        let ruleset = Ruleset::builtin().expect("pack loads");
        Run {
            engine: RulesEngine::new(ruleset, lists, AlertConfig::default()),
            alerts: Vec::new(),
        }
    }

    fn feed(&mut self, event: &AuditEvent) {
        self.feed_from(event, Origin::new("n1", "main", SourceKind::File));
    }

    fn feed_from(&mut self, event: &AuditEvent, origin: Origin) {
        let out = self.engine.evaluate(event, &origin);
        self.alerts.extend(out);
    }

    fn titles(&self) -> Vec<&str> {
        self.alerts.iter().map(|a| a.title.as_str()).collect()
    }

    fn fired(&self, title: &str) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.title == title).collect()
    }
}

fn one(kind: &str, body: &str) -> Run {
    let mut run = Run::new();
    run.feed(&ev(0.0, kind, body));
    run
}

#[test]
fn sys_raw_access() {
    let run = one(
        "request",
        &format!(
            "{ROOT},{}",
            req(
                "r1",
                "read",
                "sys/raw/core/keyring",
                "10.0.0.1",
                "sys/",
                "system"
            )
        ),
    );
    assert!(
        run.titles().contains(&"sys/raw storage access"),
        "{:?}",
        run.titles()
    );
    let a = run.fired("sys/raw storage access")[0];
    assert_eq!(a.request_ids, ["r1"]);
    assert_eq!(a.severity.as_str(), "critical");
}

#[test]
fn generate_root_rekey_seal_step_down() {
    for path in [
        "sys/generate-root/attempt",
        "sys/rekey/init",
        "sys/seal",
        "sys/step-down",
        "sys/generate-root/update",
    ] {
        let run = one(
            "request",
            &format!(
                "{},{}",
                user("ops", "e1", "t1"),
                req("r", "update", path, "10.0.0.1", "sys/", "system")
            ),
        );
        assert!(
            run.titles()
                .contains(&"Root generation, rekey, seal or step-down"),
            "{path}: {:?}",
            run.titles()
        );
    }
    // Health checks read the seal status; reading the attempt status is not an attempt.
    for (op, path) in [
        ("read", "sys/seal-status"),
        ("read", "sys/generate-root/attempt"),
        ("update", "sys/sealwrap/rewrap"),
    ] {
        let run = one(
            "request",
            &format!(
                "{},{}",
                user("ops", "e1", "t1"),
                req("r", op, path, "10.0.0.1", "sys/", "system")
            ),
        );
        assert!(
            !run.titles()
                .contains(&"Root generation, rekey, seal or step-down"),
            "{op} {path}"
        );
    }
}

#[test]
fn audit_device_disabled_but_not_the_startup_test() {
    let run = one(
        "request",
        &format!(
            "{ROOT},{}",
            req(
                "r1",
                "delete",
                "sys/audit/file",
                "10.0.0.1",
                "sys/",
                "system"
            )
        ),
    );
    assert!(run
        .titles()
        .contains(&"Audit device enabled, changed or disabled"));
    // OpenBao's own start-up probe: no token anywhere.
    let run = one(
        "request",
        r#""auth":{"token_type":"default"},"request":{"id":"x","operation":"update","namespace":{"id":"root"},"path":"sys/audit/test"}"#,
    );
    assert!(run.alerts.is_empty(), "{:?}", run.titles());
    // The same path with a client token is someone's request.
    let run = one(
        "request",
        &format!(
            "{ROOT},{}",
            req(
                "r2",
                "update",
                "sys/audit/test",
                "10.0.0.1",
                "sys/",
                "system"
            )
        ),
    );
    assert!(run
        .titles()
        .contains(&"Audit device enabled, changed or disabled"));
    // sys/audit-hash is a hash lookup, not a device change.
    let run = one(
        "request",
        &format!(
            "{},{}",
            user("a", "e", "t"),
            req(
                "r3",
                "update",
                "sys/audit-hash/file",
                "10.0.0.1",
                "sys/",
                "system"
            )
        ),
    );
    assert!(run.alerts.is_empty(), "{:?}", run.titles());
}

#[test]
fn orphan_and_root_policy_tokens() {
    let title = "Root-policy or orphan token created";
    let u = user("ops", "e1", "t1");
    let run = one(
        "request",
        &format!(
            "{u},{}",
            req(
                "r1",
                "update",
                "auth/token/create-orphan",
                "10.0.0.1",
                "auth/token/",
                "token"
            )
        ),
    );
    assert!(run.titles().contains(&title));
    let run = one(
        "request",
        &format!(
            r#"{u},"request":{{"id":"r2","operation":"update","path":"auth/token/create","data":{{"no_parent":true}}}}"#
        ),
    );
    assert!(run.titles().contains(&title));
    let run = one(
        "response",
        &format!(
            r#"{u},"request":{{"id":"r3","operation":"update","path":"auth/token/create"}},"response":{{"auth":{{"policies":["root"]}}}}"#
        ),
    );
    assert!(run.titles().contains(&title));
    // An ordinary child token.
    let run = one(
        "response",
        &format!(
            r#"{u},"request":{{"id":"r4","operation":"update","path":"auth/token/create"}},"response":{{"auth":{{"policies":["default"]}}}}"#
        ),
    );
    assert!(!run.titles().contains(&title));
}

#[test]
fn plaintext_finding_alerts_once_per_device() {
    let mut run = Run::new();
    for i in 0..5 {
        let mut origin = Origin::new("n1", "raw", SourceKind::File);
        origin.findings.push(HmacFinding {
            field: "auth.client_token".into(),
            pointer: "/auth/client_token".into(),
            kind: FindingKind::PlaintextToken,
            severity: Severity::Critical,
            span: None,
        });
        run.feed_from(
            &ev(
                f64::from(i),
                "request",
                &format!(
                    "{},{}",
                    user("a", "e", "t"),
                    req(
                        &format!("r{i}"),
                        "read",
                        "secret/data/x",
                        "10.0.0.1",
                        "secret/",
                        "kv"
                    )
                ),
            ),
            origin,
        );
    }
    let hits = run.fired("Plaintext secret in the audit log");
    assert_eq!(hits.len(), 1, "deduplicated");
    assert_eq!(hits[0].group_key, "raw");
    let first_id = hits[0].id.clone();
    let merged = run.engine.flush();
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].count, 5);
    assert_eq!(merged[0].revision, 1);
    assert_eq!(merged[0].id, first_id);
    // A medium finding (a misconfiguration, not a secret) does not alert.
    let mut origin = Origin::new("n1", "main", SourceKind::File);
    origin.findings.push(HmacFinding {
        field: "auth.accessor".into(),
        pointer: "/auth/accessor".into(),
        kind: FindingKind::PlaintextAccessor,
        severity: Severity::Medium,
        span: None,
    });
    let mut run = Run::new();
    run.feed_from(
        &ev(
            0.0,
            "request",
            &format!(
                "{},{}",
                user("a", "e", "t"),
                req("q", "read", "secret/data/x", "10.0.0.1", "secret/", "kv")
            ),
        ),
        origin,
    );
    assert!(run.alerts.is_empty(), "{:?}", run.titles());
}

fn failed_login(i: usize, secs: f64, user: &str, addr: &str) -> AuditEvent {
    ev(
        secs,
        "response",
        &format!(
            r#""auth":{{"token_type":"default"}},"request":{{"id":"l{i}","operation":"update","path":"auth/userpass/login/{user}","remote_address":"{addr}"}},"error":"invalid credentials""#
        ),
    )
}

#[test]
fn brute_force_needs_many_failures_in_the_window() {
    let title = "Brute-force login against one account";
    // 19 failures: below the bar.
    let mut run = Run::new();
    for i in 0..19 {
        run.feed(&failed_login(i, i as f64 * 10.0, "dave", "198.51.100.7"));
    }
    assert!(!run.titles().contains(&title));
    // 20 failures spread over an hour never fill one ten-minute window.
    let mut run = Run::new();
    for i in 0..40 {
        run.feed(&failed_login(i, i as f64 * 60.0, "dave", "198.51.100.7"));
    }
    assert!(!run.titles().contains(&title), "{:?}", run.titles());
    // 25 in 50 seconds: one alert, with the ids of the window.
    let mut run = Run::new();
    for i in 0..25 {
        run.feed(&failed_login(i, i as f64 * 2.0, "dave", "198.51.100.7"));
    }
    let hits = run.fired(title);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].count, 20);
    assert_eq!(hits[0].group_key, "auth/userpass/login/dave");
    assert_eq!(run.engine.flush()[0].count, 25);
    // Spraying: 30 users from one address.
    let mut run = Run::new();
    for i in 0..30 {
        run.feed(&failed_login(i, i as f64, &format!("u{i}"), "198.51.100.7"));
    }
    assert_eq!(
        run.fired("Brute-force or password spraying from one address")
            .len(),
        1
    );
    assert!(run.fired(title).is_empty());
}

#[test]
fn permission_denied_storm() {
    let mut run = Run::new();
    for i in 0..25 {
        run.feed(&ev(
            i as f64,
            "response",
            &format!(
                r#""auth":{{"client_token":"hmac-sha256:t","accessor":"hmac-sha256:a","display_name":"userpass-bob","policies":["default"],"policy_results":{{"allowed":false}},"entity_id":"e-bob","token_type":"service"}},"request":{{"id":"d{i}","operation":"read","path":"secret/data/other/{i}","remote_address":"10.0.0.2"}},"error":"1 error occurred:\n\t* permission denied\n\n""#
            ),
        ));
    }
    let hits = run.fired("Permission-denied storm");
    assert_eq!(hits.len(), 1, "{:?}", run.titles());
    assert_eq!(hits[0].group_key, "e-bob|10.0.0.2");
}

#[test]
fn list_sweep_counts_distinct_paths() {
    let title = "Secret enumeration (LIST sweep)";
    let list = |i: usize, path: &str| {
        ev(
            i as f64,
            "response",
            &format!(
                "{},{}",
                user("eve", "e", "t"),
                req(&format!("l{i}"), "list", path, "10.0.0.9", "secret/", "kv")
            ),
        )
    };
    // The same folder listed 50 times is a dashboard refreshing, not a sweep.
    let mut run = Run::new();
    for i in 0..50 {
        run.feed(&list(i, "secret/metadata/app"));
    }
    assert!(!run.titles().contains(&title));
    let mut run = Run::new();
    for i in 0..20 {
        run.feed(&list(i, &format!("secret/metadata/app/{i}")));
    }
    assert_eq!(run.fired(title).len(), 1);
}

#[test]
fn mass_secret_read() {
    let title = "Mass secret read by one identity";
    let read = |i: usize, secs: f64| {
        ev(
            secs,
            "response",
            &format!(
                "{},{}",
                user("svc", "e-svc", "t"),
                req(
                    &format!("k{i}"),
                    "read",
                    &format!("secret/data/x/{}", i % 30),
                    "10.0.0.3",
                    "secret/",
                    "kv"
                )
            ),
        )
    };
    let mut run = Run::new();
    // 199 reads in five minutes: a busy service, not yet a dump.
    for i in 0..199 {
        run.feed(&read(i, i as f64));
    }
    assert!(!run.titles().contains(&title));
    run.feed(&read(199, 199.0));
    assert_eq!(run.fired(title).len(), 1);
}

#[test]
fn policy_and_mount_changes() {
    let u = user("ops", "e", "t");
    for (op, path, title) in [
        (
            "update",
            "sys/policies/acl/payments",
            "ACL policy created, changed or deleted",
        ),
        (
            "delete",
            "sys/policy/old",
            "ACL policy created, changed or deleted",
        ),
        (
            "update",
            "sys/auth/backdoor",
            "Auth method or secrets engine enabled, disabled or moved",
        ),
        (
            "delete",
            "sys/mounts/kv2",
            "Auth method or secrets engine enabled, disabled or moved",
        ),
        (
            "update",
            "sys/remount",
            "Auth method or secrets engine enabled, disabled or moved",
        ),
    ] {
        let run = one(
            "request",
            &format!("{u},{}", req("r", op, path, "10.0.0.1", "sys/", "system")),
        );
        assert!(
            run.titles().contains(&title),
            "{op} {path}: {:?}",
            run.titles()
        );
    }
    for (op, path) in [
        ("read", "sys/policies/acl/payments"),
        ("update", "sys/mounts/kv/tune"),
        ("read", "sys/auth"),
    ] {
        let run = one(
            "request",
            &format!("{u},{}", req("r", op, path, "10.0.0.1", "sys/", "system")),
        );
        assert!(run.alerts.is_empty(), "{op} {path}: {:?}", run.titles());
    }
}

#[test]
fn root_token_use_but_not_the_dev_bootstrap() {
    let run = one(
        "request",
        &format!(
            "{ROOT},{}",
            req("r1", "read", "secret/data/x", "10.0.0.1", "secret/", "kv")
        ),
    );
    assert_eq!(run.fired("Root token used").len(), 1);
    let run = one(
        "request",
        &format!(
            "{ROOT},{}",
            req(
                "dev-gen-root",
                "update",
                "auth/token/create",
                "",
                "auth/token/",
                "token"
            )
        ),
    );
    assert!(run.fired("Root token used").is_empty());
    // Another address is another alert; the same address again is merged.
    let mut run = Run::new();
    run.feed(&ev(
        0.0,
        "request",
        &format!(
            "{ROOT},{}",
            req("a", "read", "secret/data/x", "10.0.0.1", "secret/", "kv")
        ),
    ));
    run.feed(&ev(
        1.0,
        "request",
        &format!(
            "{ROOT},{}",
            req("b", "read", "secret/data/x", "10.0.0.1", "secret/", "kv")
        ),
    ));
    run.feed(&ev(
        2.0,
        "request",
        &format!(
            "{ROOT},{}",
            req("c", "read", "secret/data/x", "10.0.0.2", "secret/", "kv")
        ),
    ));
    assert_eq!(run.fired("Root token used").len(), 2);
    // After the suppression window, the same group fires again, and the merged
    // revision of the old alert comes out first.
    run.feed(&ev(
        4000.0,
        "request",
        &format!(
            "{ROOT},{}",
            req("d", "read", "secret/data/x", "10.0.0.1", "secret/", "kv")
        ),
    ));
    let root: Vec<&Alert> = run.fired("Root token used");
    // The 10.0.0.2 alert had nothing merged in: no second revision for it.
    assert_eq!(root.len(), 4, "{root:#?}");
    assert_eq!((root[2].revision, root[2].count), (1, 2));
    assert_eq!(root[2].request_ids, ["a", "b"]);
    assert_eq!((root[3].revision, root[3].count), (0, 1));
    assert_ne!(root[3].id, root[0].id);
}

#[test]
fn honeytoken_by_accessor_per_device() {
    let mut lists = WatchLists::new();
    lists
        .add_text(
            "honeytokens",
            Some("main"),
            "h.txt",
            "hmac-sha256:acccanary\n",
        )
        .expect("list");
    let body = format!(
        "{},{}",
        user("x", "e", "canary"),
        req(
            "h1",
            "read",
            "auth/token/lookup-self",
            "10.0.0.1",
            "auth/token/",
            "token"
        )
    );
    let mut run = Run::with_lists(lists.clone());
    run.feed(&ev(0.0, "request", &body));
    assert_eq!(run.fired("Honeytoken used").len(), 1);
    // Another device has another salt: the HMAC means nothing there.
    let mut run = Run::with_lists(lists);
    run.feed_from(
        &ev(0.0, "request", &body),
        Origin::new("n1", "other", SourceKind::File),
    );
    assert!(run.fired("Honeytoken used").is_empty());
}

fn use_from(i: usize, secs: f64, addr: &str, mount: &str) -> AuditEvent {
    ev(
        secs,
        "request",
        &format!(
            "{},{}",
            user("alice", "e-alice", "t"),
            req(
                &format!("u{i}"),
                "read",
                &format!("{mount}data/x"),
                addr,
                mount,
                "kv"
            )
        ),
    )
}

#[test]
fn new_address_after_learning_by_events() {
    let title = "Known identity from a new address";
    let mut run = Run::new();
    // Two addresses while learning: both become known, silently.
    for i in 0..50 {
        let addr = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
        run.feed(&use_from(i, i as f64, addr, "secret/"));
    }
    assert!(run.fired(title).is_empty());
    run.feed(&use_from(50, 50.0, "10.0.0.2", "secret/"));
    assert!(run.fired(title).is_empty());
    run.feed(&use_from(51, 51.0, "203.0.113.9", "secret/"));
    let hits = run.fired(title);
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].group_key,
        "e-alice request.remote_address=203.0.113.9"
    );
    assert_eq!(hits[0].request_ids, ["u51"]);
}

#[test]
fn new_address_after_learning_by_time() {
    let title = "Known identity from a new address";
    let mut run = Run::new();
    run.feed(&use_from(0, 0.0, "10.0.0.1", "secret/"));
    run.feed(&use_from(1, 3.0 * 86_400.0, "10.0.0.5", "secret/"));
    assert!(
        run.fired(title).is_empty(),
        "still learning after 3 days and 2 events"
    );
    run.feed(&use_from(2, 8.0 * 86_400.0, "10.0.0.6", "secret/"));
    assert_eq!(run.fired(title).len(), 1, "learned after 7 days");
}

#[test]
fn new_mount_for_identity() {
    let title = "Identity on a mount it never used";
    let mut run = Run::new();
    for i in 0..60 {
        run.feed(&use_from(i, i as f64, "10.0.0.1", "secret/"));
    }
    run.feed(&use_from(60, 60.0, "10.0.0.1", "database/"));
    assert_eq!(run.fired(title).len(), 1);
}

#[test]
fn spike_above_own_baseline() {
    let title = "Request rate far above the identity's own baseline";
    let mut run = Run::new();
    // A day and a half at 5 requests a minute: learned by time, mean about 5.
    let mut i = 0;
    for minute in 0..(36 * 60) {
        for k in 0..5 {
            run.feed(&use_from(
                i,
                minute as f64 * 60.0 + k as f64,
                "10.0.0.1",
                "secret/",
            ));
            i += 1;
        }
    }
    assert!(run.fired(title).is_empty());
    // Then 400 in one minute: ten times 5 is 50, but the floor is 300.
    let start = 36.0 * 3600.0 + 60.0;
    for k in 0..400 {
        run.feed(&use_from(i, start + k as f64 * 0.1, "10.0.0.1", "secret/"));
        i += 1;
    }
    let hits = run.fired(title);
    assert_eq!(hits.len(), 1, "{:?}", run.titles());
}

#[test]
fn state_round_trips_through_json() {
    let mut run = Run::new();
    for i in 0..15 {
        run.feed(&failed_login(i, i as f64, "dave", "198.51.100.7"));
    }
    let saved = serde_json::to_string(run.engine.state()).expect("serializes");
    let state: EngineState = serde_json::from_str(&saved).expect("deserializes");
    let mut resumed = RulesEngine::with_state(
        Ruleset::builtin().expect("pack"),
        WatchLists::new(),
        AlertConfig::default(),
        state,
    );
    let mut alerts = Vec::new();
    for i in 15..20 {
        alerts.extend(resumed.evaluate(
            &failed_login(i, i as f64, "dave", "198.51.100.7"),
            &Origin::new("n1", "main", SourceKind::File),
        ));
    }
    assert!(alerts
        .iter()
        .any(|a| a.title == "Brute-force login against one account" && a.count == 20));
}

#[test]
fn load_errors_name_file_and_rule() {
    let bad = "title: Broken\nid: broken-1\nlogsource: {product: vault, service: audit}\ndetection:\n  sel: {request.path|sideways: x}\n  condition: sel\n";
    let err = Ruleset::from_sources([("broken.yml", bad)]).expect_err("bad modifier");
    let msg = err.to_string();
    assert!(
        msg.contains("broken.yml") && msg.contains("broken-1") && msg.contains("sideways"),
        "{msg}"
    );
    let corr = "title: C\nid: c1\ncorrelation: {type: event_count, rules: [nope], timespan: 5m, condition: {gte: 3}}\n";
    let err = Ruleset::from_sources([("c.yml", corr)]).expect_err("unknown reference");
    assert!(matches!(err, LoadError::UnknownReference { .. }), "{err}");
    let err = Ruleset::from_sources([("y.yml", "title: [unclosed")]).expect_err("yaml");
    assert!(err.to_string().starts_with("y.yml: invalid YAML"), "{err}");
    let dup = "title: A\nid: same\nlogsource: {product: vault}\ndetection: {s: {type: request}, condition: s}\n";
    let err = Ruleset::from_sources([("a.yml", dup), ("b.yml", dup)]).expect_err("duplicate");
    assert!(matches!(err, LoadError::Duplicate { .. }), "{err}");
}

#[test]
fn a_directory_overrides_the_pack() {
    let dir = std::env::temp_dir().join(format!("vigil-rules-override-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Switch the root-token rule off and add a rule of our own.
    std::fs::write(dir.join("root_token_use.yml"), "").expect("write");
    std::fs::write(
        dir.join("mine.yml"),
        "title: Transit use\nid: mine-1\nlogsource: {product: openbao, service: audit}\ndetection: {s: {request.mount_type: transit}, condition: s}\n",
    )
    .expect("write");
    let rs = Ruleset::builtin_with_dir(&dir).expect("loads");
    let titles: Vec<&str> = rs.alerting().map(|m| m.title.as_str()).collect();
    assert!(titles.contains(&"Transit use"));
    assert!(!titles.contains(&"Root token used"));
    assert!(titles.contains(&"Honeytoken used"));
    let only = Ruleset::from_dir(&dir).expect("loads");
    assert_eq!(only.alerting().count(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_pack_rule_is_documented() {
    let rs = Ruleset::builtin().expect("pack");
    for meta in rs.alerting() {
        assert!(!meta.description.is_empty(), "{}", meta.title);
        assert!(!meta.falsepositives.is_empty(), "{}", meta.title);
        assert!(
            meta.tags.iter().any(|t| t.starts_with("attack.")),
            "{}",
            meta.title
        );
    }
    assert!(rs.alerting().count() >= 17);
}
