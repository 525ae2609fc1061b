//! `vigil rules test` on the corpus, as a detection engineer runs it: every attack scenario
//! of the manifest is behind an alert, no alert is made of baseline traffic only.

#[path = "support/vigil.rs"]
mod vigil;

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;
use vigil::corpus;

#[test]
fn rules_test_catches_every_scenario_of_main_log() {
    let manifest = vigil::manifest();
    let canary = vigil::main_device_hash(&manifest, "token:canary");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("honeytokens.txt");
    std::fs::write(&list, format!("# canary\n{canary}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "test", "--format", "json", "--watchlist"])
        .arg(format!("honeytokens={}", list.display()))
        .arg(corpus("main.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for a in &alerts {
        for key in [
            "rule",
            "title",
            "severity",
            "request_ids",
            "first_seen",
            "last_seen",
        ] {
            assert!(!a[key].is_null(), "alert without {key}: {a}");
        }
    }
    let mut label_of: HashMap<String, String> = HashMap::new();
    for s in manifest["scenarios"].as_array().unwrap() {
        for id in s["request_ids"].as_array().unwrap() {
            label_of.insert(
                id.as_str().unwrap().to_owned(),
                s["label"].as_str().unwrap().to_owned(),
            );
        }
    }
    for s in manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["expect"] == "alert")
    {
        let ids: Vec<&str> = s["request_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            alerts.iter().any(|a| a["request_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| ids.contains(&r.as_str().unwrap()))),
            "scenario {} has no alert",
            s["label"]
        );
    }
    for a in &alerts {
        let ids = a["request_ids"].as_array().unwrap();
        let all_baseline = !ids.is_empty()
            && ids.iter().all(|r| {
                label_of
                    .get(r.as_str().unwrap())
                    .is_some_and(|l| l == "baseline")
            });
        assert!(
            !all_baseline,
            "false positive on baseline traffic: {} {}",
            a["rule"], a["title"]
        );
    }
}

#[test]
fn lint_names_the_file_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yml"),
        "title: Broken\nid: 3c1b7f4e-0000-4000-8000-000000000001\nlogsource: {product: vault, service: audit}\ndetection:\n  sel:\n    request.path|nosuchmodifier: x\n  condition: sel\nlevel: high\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "lint"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yml"), "{err}");
    assert!(err.contains("nosuchmodifier"), "{err}");
    let ok = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "lint"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
