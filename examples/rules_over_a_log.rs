//! Run the built-in rule pack over a handful of audit lines and print the alerts: what
//! `vigil rules test FILE` does, and what the rules stage does to every event it is handed.
//!
//! The lines are an ordinary secret read, a request made with a root token, and a read of
//! `sys/raw` (Vault's storage under the barrier, bypassing every policy). The pack should stay
//! quiet on the first and alert on the other two.
//!
//! Run: `cargo run --example rules_over_a_log`

use anyhow::{ensure, Context};
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_rules::{AlertConfig, RulesEngine, Ruleset, WatchLists};

const ALICE_TOKEN: &str =
    "hmac-sha256:1111111111111111111111111111111111111111111111111111111111111111";
const ROOT_TOKEN: &str =
    "hmac-sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// One audit request line: who (token HMAC, display name, policies), what and from where.
fn request(
    time: &str,
    id: &str,
    token: &str,
    name: &str,
    policies: &str,
    op: &str,
    path: &str,
) -> String {
    format!(
        r#"{{"time":"{time}","type":"request","auth":{{"client_token":"{token}","accessor":"{token}","display_name":"{name}","policies":{policies},"token_type":"service"}},"request":{{"id":"{id}","operation":"{op}","path":"{path}","client_token":"{token}","remote_address":"10.4.2.17"}}}}"#
    )
}

fn run() -> anyhow::Result<()> {
    // The pack compiled into the binary (`rules/pack/*.yml`): Sigma rules, correlations and
    // anomaly detectors. `Ruleset::builtin_with_dir` lays a directory of your own over it.
    let ruleset = Ruleset::builtin().context("loading the built-in pack")?;
    println!(
        "built-in pack: {} rules, {} correlations, {} detectors",
        ruleset.rules().len(),
        ruleset.correlations().len(),
        ruleset.detectors().len()
    );

    // No watch lists here (the honeytoken rule reads one named `honeytokens`); alerts of one
    // rule and group merge for an hour after they fire.
    let mut engine = RulesEngine::new(ruleset, WatchLists::new(), AlertConfig::default());

    let lines = [
        request(
            "2026-11-22T16:40:00Z",
            "req-ordinary-read",
            ALICE_TOKEN,
            "userpass-alice",
            r#"["default","payments-read"]"#,
            "read",
            "secret/data/payments/db",
        ),
        request(
            "2026-11-22T16:41:00Z",
            "req-root-token",
            ROOT_TOKEN,
            "token",
            r#"["root"]"#,
            "read",
            "sys/mounts",
        ),
        request(
            "2026-11-22T16:42:00Z",
            "req-sys-raw",
            ALICE_TOKEN,
            "userpass-alice",
            r#"["default","payments-read"]"#,
            "read",
            "sys/raw/core/audit",
        ),
    ];

    // Every event carries where it was read; rules can match on `origin.*` too.
    let origin = Origin::new("vault-0", "main", SourceKind::File);
    let mut alerts = Vec::new();
    for line in &lines {
        let event = AuditEvent::parse(line.as_bytes()).context("parsing an example line")?;
        // Events go in event-time order: correlation windows and detectors depend on it.
        alerts.extend(engine.evaluate(&event, &origin));
    }
    // Alerts that merged later hits come out as new revisions on flush; none expected here.
    alerts.extend(engine.flush());

    for a in &alerts {
        println!(
            "ALERT [{:?}] {} (rule {}) group={:?} requests={:?}",
            a.severity, a.title, a.rule_id, a.group_key, a.request_ids
        );
    }

    let fired_on = |request_id: &str| -> Vec<&str> {
        alerts
            .iter()
            .filter(|a| a.request_ids.iter().any(|r| r == request_id))
            .map(|a| a.title.as_str())
            .collect()
    };
    ensure!(
        fired_on("req-ordinary-read").is_empty(),
        "an ordinary read raised {:?}",
        fired_on("req-ordinary-read")
    );
    ensure!(
        fired_on("req-root-token").contains(&"Root token used"),
        "the root token request raised {:?}, not `Root token used`",
        fired_on("req-root-token")
    );
    ensure!(
        fired_on("req-sys-raw").contains(&"sys/raw storage access"),
        "the sys/raw read raised {:?}, not `sys/raw storage access`",
        fired_on("req-sys-raw")
    );
    Ok(())
}

// A failure prints the whole error chain and exits 1.
fn main() -> anyhow::Result<()> {
    run()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        super::run().unwrap();
    }
}
