//! The rule pack's acceptance check on the corpus, shared by the rules crate's test (the
//! engine in-process) and the binary's (`vigil rules test`): every attack scenario of the
//! manifest raises an alert of the rule written for it, naming one of the scenario's
//! requests; no alert stands on baseline traffic alone; and the alerts standing on the
//! capture's unlabelled setup traffic are counted, by rule.

use std::collections::{BTreeMap, BTreeSet};

use crate::corpus::Manifest;

/// Each attack scenario of the manifest and the rules of the built-in pack (rules/pack)
/// written to catch it, as (rule id, title).
pub const INTENDED_RULES: &[(&str, &[(&str, &str)])] = &[
    (
        "brute_force_login",
        &[
            (
                "b2c2895c-356c-5c2a-bcba-bde9e79f336c",
                "Brute-force login against one account",
            ),
            (
                "ff59eb57-e31c-514b-9934-e4df00afa209",
                "Brute-force or password spraying from one address",
            ),
        ],
    ),
    (
        "permission_denied_storm",
        &[(
            "21fcff33-d64d-5771-a957-25f156f3ad93",
            "Permission-denied storm",
        )],
    ),
    (
        "secret_enumeration",
        &[(
            "ffcc99cf-8cda-5282-8e9d-153a00c98ad9",
            "Secret enumeration (LIST sweep)",
        )],
    ),
    (
        "root_token_use",
        &[("7ad84e31-d422-5a25-9ccd-d49801706e80", "Root token used")],
    ),
    (
        "honeytoken_use",
        &[("00e58f65-9c70-5488-a725-670238eb6eb3", "Honeytoken used")],
    ),
    (
        "policy_broadened",
        &[(
            "f19a0350-06af-510a-bb81-d3fb9400ec21",
            "ACL policy created, changed or deleted",
        )],
    ),
    (
        "auth_or_engine_changed",
        &[(
            "bc1ad08e-a168-5f02-835a-0bc974e063bd",
            "Auth method or secrets engine enabled, disabled or moved",
        )],
    ),
    (
        "mass_secret_read",
        &[(
            "e12f10d3-845d-5c04-9661-ca965aa3535d",
            "Mass secret read by one identity",
        )],
    ),
];

/// Alerts of main.log standing only on requests of no scenario, by rule id: the capture's
/// setup (auth methods, engines and policies written with the root token before the
/// baseline, and its reads of `sys/raw`). They are true alerts (the root token really did
/// that), so they are counted, not forbidden: a change in the pack's behaviour shows here.
pub const ON_SETUP_TRAFFIC: &[(&str, usize)] = &[
    // Auth method or secrets engine enabled: approle, transit, userpass.
    ("bc1ad08e-a168-5f02-835a-0bc974e063bd", 3),
    // ACL policy written: payments, search.
    ("f19a0350-06af-510a-bb81-d3fb9400ec21", 2),
    // sys/raw storage access.
    ("5e24bbb3-bfcd-5ec8-abee-22434db3499b", 1),
    // Root token used: from 127.0.0.1, and once from no address.
    ("7ad84e31-d422-5a25-9ccd-d49801706e80", 2),
];

/// Alerts of main.log naming no request id at all (raised on entries without one).
pub const WITHOUT_REQUEST_IDS: usize = 2;

/// What the check needs of an alert, whichever way it was obtained.
#[derive(Debug, Clone)]
pub struct AlertSummary<'a> {
    /// The rule's id.
    pub rule_id: &'a str,
    /// The rule's title (for messages).
    pub title: &'a str,
    /// What the alert groups by (for messages).
    pub group_key: &'a str,
    /// The requests the alert names.
    pub request_ids: Vec<&'a str>,
}

/// Checks the alerts the pack raised over main.log (with the canary as `honeytokens` watch
/// list) against the manifest; panics listing every failure. Prints each alert with the
/// scenarios its requests belong to.
pub fn check(manifest: &Manifest, alerts: &[AlertSummary<'_>]) {
    let label_of = manifest.label_of();
    let mut failures = Vec::new();
    let mut on_setup: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut without_ids = 0;
    for a in alerts {
        let labels: BTreeSet<&str> = a
            .request_ids
            .iter()
            .map(|r| label_of.get(r).copied().unwrap_or("(setup)"))
            .collect();
        eprintln!(
            "{:<36} {:<45} ids={:<4} {labels:?} group={}",
            a.rule_id,
            a.title,
            a.request_ids.len(),
            a.group_key
        );
        if labels.is_empty() {
            without_ids += 1;
        } else if labels.iter().all(|l| *l == "baseline") {
            failures.push(format!(
                "false positive on baseline: {} ({})",
                a.title, a.group_key
            ));
        } else if labels.iter().all(|l| *l == "(setup)") {
            on_setup
                .entry(a.rule_id)
                .or_default()
                .push(format!("{} ({})", a.title, a.group_key));
        }
    }
    // Every scenario that should alert is in the table, and nothing else is.
    let expected: BTreeSet<&str> = manifest
        .scenarios
        .iter()
        .filter(|s| s.expect == "alert")
        .map(|s| s.label.as_str())
        .collect();
    let tabled: BTreeSet<&str> = INTENDED_RULES.iter().map(|(label, _)| *label).collect();
    if tabled != expected {
        failures.push(format!(
            "INTENDED_RULES lists {tabled:?}, the manifest's attack scenarios are {expected:?}"
        ));
    }
    for (label, rules) in INTENDED_RULES {
        let ids = manifest.request_ids(label);
        for (rule_id, title) in *rules {
            let caught = alerts
                .iter()
                .any(|a| a.rule_id == *rule_id && a.request_ids.iter().any(|r| ids.contains(r)));
            if !caught {
                failures.push(format!(
                    "scenario {label}: no alert of {title} ({rule_id}) on its requests"
                ));
            }
        }
    }
    let counts: BTreeMap<&str, usize> = on_setup.iter().map(|(r, a)| (*r, a.len())).collect();
    let want: BTreeMap<&str, usize> = ON_SETUP_TRAFFIC.iter().copied().collect();
    if counts != want {
        failures.push(format!(
            "alerts on setup traffic by rule: {counts:?}, expected {want:?}: {on_setup:#?}"
        ));
    }
    if without_ids != WITHOUT_REQUEST_IDS {
        failures.push(format!(
            "{without_ids} alerts name no request, expected {WITHOUT_REQUEST_IDS}"
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
