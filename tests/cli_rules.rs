//! `vigil rules test` on the corpus, as a detection engineer runs it: every attack scenario
//! of the manifest raises the alert of the rule written for it, no alert is made of baseline
//! traffic only, and the alerts on setup traffic are counted (`vigil_testkit::acceptance`).

use std::process::Command;

use serde_json::Value;
use vigil_testkit::acceptance::{self, AlertSummary};
use vigil_testkit::corpus::{self, Manifest};
use vigil_testkit::process::{output_within, COMMAND_TIMEOUT};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

#[test]
fn rules_test_raises_the_intended_rule_for_every_scenario_of_main_log() {
    let manifest = Manifest::load();
    let canary = manifest.main_hash("token:canary");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("honeytokens.txt");
    std::fs::write(&list, format!("# canary\n{canary}\n")).unwrap();
    let out = output_within(
        Command::new(VIGIL)
            .args(["rules", "test", "--format", "json", "--watchlist"])
            .arg(format!("honeytokens={}", list.display()))
            .arg(corpus::path("main.log")),
        COMMAND_TIMEOUT,
    );
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
    let summaries: Vec<AlertSummary> = alerts
        .iter()
        .map(|a| AlertSummary {
            rule_id: a["rule"].as_str().expect("rule"),
            title: a["title"].as_str().expect("title"),
            group_key: a["group_key"].as_str().unwrap_or(""),
            request_ids: a["request_ids"]
                .as_array()
                .expect("request_ids")
                .iter()
                .map(|r| r.as_str().expect("request id"))
                .collect(),
        })
        .collect();
    acceptance::check(&manifest, &summaries);
}

#[test]
fn lint_names_the_file_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yml"),
        "title: Broken\nid: 3c1b7f4e-0000-4000-8000-000000000001\nlogsource: {product: vault, service: audit}\ndetection:\n  sel:\n    request.path|nosuchmodifier: x\n  condition: sel\nlevel: high\n",
    )
    .unwrap();
    let out = output_within(
        Command::new(VIGIL).args(["rules", "lint"]).arg(dir.path()),
        COMMAND_TIMEOUT,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yml"), "{err}");
    assert!(err.contains("nosuchmodifier"), "{err}");
    let ok = output_within(Command::new(VIGIL).args(["rules", "lint"]), COMMAND_TIMEOUT);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
