//! The acceptance check on the public corpus: with the canary's HMAC as the `honeytokens`
//! watch list, every attack scenario raises an alert naming one of its requests, and no
//! alert stands on baseline traffic alone.

use std::collections::{BTreeMap, BTreeSet};

use vigil_event::{AuditEvent, DeviceOptions, HmacChecker, Origin, SourceKind};
use vigil_rules::{Alert, AlertConfig, RulesEngine, Ruleset, WatchLists};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/public");

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{DIR}/manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Runs the pack over one log file as read from `device`, with the HMAC checks the
/// collector would run; returns the final revision of every alert.
fn run(file: &str, device: &str, lists: WatchLists) -> Vec<Alert> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).expect("log file");
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

fn honeytokens(m: &serde_json::Value) -> WatchLists {
    let canary = m["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .find(|h| h["name"] == "token:canary" && h["device"] == "main")
        .and_then(|h| h["hash"].as_str())
        .expect("canary hash");
    let mut lists = WatchLists::new();
    lists
        .add_text("honeytokens", Some("main"), "canary.txt", canary)
        .expect("list");
    lists
}

#[test]
fn every_attack_alerts_and_baseline_stays_quiet() {
    let m = manifest();
    let alerts = run("main.log", "main", honeytokens(&m));
    let scenarios = m["scenarios"].as_array().expect("scenarios");
    let mut baseline: BTreeSet<&str> = BTreeSet::new();
    for s in scenarios {
        if s["label"] == "baseline" {
            for r in s["request_ids"].as_array().expect("ids") {
                baseline.insert(r.as_str().expect("id"));
            }
        }
    }
    let mut failures = Vec::new();
    for a in &alerts {
        eprintln!(
            "{:<45} {:<9} n={:<4} ids={:<4} group={}",
            a.title,
            a.severity.as_str(),
            a.count,
            a.request_ids.len(),
            a.group_key
        );
        if !a.request_ids.is_empty() && a.request_ids.iter().all(|r| baseline.contains(r.as_str()))
        {
            failures.push(format!(
                "false positive on baseline: {} ({})",
                a.title, a.group_key
            ));
        }
    }
    for s in scenarios.iter().filter(|s| s["expect"] == "alert") {
        let ids: BTreeSet<&str> = s["request_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let caught: Vec<&str> = alerts
            .iter()
            .filter(|a| a.request_ids.iter().any(|r| ids.contains(r.as_str())))
            .map(|a| a.title.as_str())
            .collect();
        eprintln!("{}: {:?}", s["label"], caught);
        if caught.is_empty() {
            failures.push(format!("scenario {} raised no alert", s["label"]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn without_the_watch_list_the_honeytoken_goes_unseen() {
    // Proves the honeytoken alert comes from the watch list, not from something else.
    let alerts = run("main.log", "main", WatchLists::new());
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
