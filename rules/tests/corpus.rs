//! The acceptance check on the vendored corpus: with the canary's HMAC as the `honeytokens`
//! watch list, every attack scenario of the manifest raises the alert of the rule written
//! for it (naming one of the scenario's requests), no alert stands on baseline traffic
//! alone, and the alerts standing on the capture's unlabelled setup traffic are counted.

use std::collections::BTreeMap;

use vigil_event::{AuditEvent, DeviceOptions, HmacChecker, Origin, SourceKind};
use vigil_rules::{Alert, AlertConfig, RulesEngine, Ruleset, WatchLists};
use vigil_testkit::acceptance::{self, AlertSummary};
use vigil_testkit::corpus::{self, Manifest};

/// Runs the pack over one log file as read from `device`, with the HMAC checks the
/// collector would run; returns the final revision of every alert.
fn run(file: &str, device: &str, lists: WatchLists) -> Vec<Alert> {
    let text = corpus::read(file);
    let mut events: Vec<AuditEvent> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| AuditEvent::parse(l.as_bytes()).expect("corpus lines parse"))
        .collect();
    events.sort_by_key(|e| e.time());
    let checker = HmacChecker::new(DeviceOptions::default());
    let ruleset = Ruleset::builtin().expect("built-in pack loads");
    let mut engine = RulesEngine::new(ruleset, lists, AlertConfig::default());
    let mut alerts: BTreeMap<String, Alert> = BTreeMap::new();
    for event in &events {
        let mut origin = Origin::new("node-1", device, SourceKind::File);
        origin.findings = checker.check(event);
        for a in engine.evaluate(event, &origin) {
            alerts.insert(a.id.clone(), a);
        }
    }
    for a in engine.flush() {
        alerts.insert(a.id.clone(), a);
    }
    alerts.into_values().collect()
}

fn honeytokens(m: &Manifest) -> WatchLists {
    let mut lists = WatchLists::new();
    lists
        .add_text(
            "honeytokens",
            Some("main"),
            "canary.txt",
            m.main_hash("token:canary"),
        )
        .expect("list");
    lists
}

#[test]
fn every_attack_raises_its_rule_and_baseline_stays_quiet() {
    let m = Manifest::load();
    let alerts = run("main.log", "main", honeytokens(&m));
    let summaries: Vec<AlertSummary> = alerts
        .iter()
        .map(|a| AlertSummary {
            rule_id: &a.rule_id,
            title: &a.title,
            group_key: &a.group_key,
            request_ids: a.request_ids.iter().map(String::as_str).collect(),
        })
        .collect();
    acceptance::check(&m, &summaries);
}

#[test]
fn without_the_watch_list_the_honeytoken_goes_unseen() {
    // Proves the honeytoken alert comes from the watch list, not from something else.
    let alerts = run("main.log", "main", WatchLists::new());
    assert!(alerts.len() > 5, "the pack ran: {} alerts", alerts.len());
    assert!(!alerts.iter().any(|a| a.title == "Honeytoken used"));
}

#[test]
fn the_raw_device_is_flagged_for_plaintext() {
    let alerts = run("raw.log", "raw", WatchLists::new());
    let plaintext: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.title == "Plaintext secret in the audit log")
        .collect();
    assert_eq!(plaintext.len(), 1, "one alert for the device, deduplicated");
    assert_eq!(plaintext[0].group_key, "raw");
    assert!(plaintext[0].count > 100, "count {}", plaintext[0].count);
    // The main device HMACs everything: no such alert there.
    let main = run("main.log", "main", WatchLists::new());
    assert!(!main
        .iter()
        .any(|a| a.title == "Plaintext secret in the audit log"));
}
