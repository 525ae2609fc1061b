//! Live: a real OpenBao dev server writes a file audit device; `vigil run` tails it, and the
//! requests a client makes are searchable through the API within two seconds.

use std::time::{Duration, Instant};

use serde_json::json;
use vigil_testkit::openbao::{AuditDevice, OpenBao};
use vigil_testkit::vigil::VigilRun;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

#[test]
fn requests_to_openbao_are_searchable_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let bao =
        OpenBao::start(dir.path(), &[AuditDevice::file("main", &audit)]).expect("start OpenBao");
    let run = VigilRun::start(
        VIGIL,
        &dir.path().join("vigil"),
        std::slice::from_ref(&audit),
    );

    bao.enable_userpass("userpass").unwrap();
    bao.write_policy(
        "reader",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    )
    .unwrap();
    bao.create_user("userpass", "alice", "correct-horse", &["reader"])
        .unwrap();
    bao.kv_put(None, "secret", "app/db", json!({"password": "hunter2"}))
        .unwrap();
    let token = bao.login("userpass", "alice", "correct-horse").unwrap();
    bao.kv_get(Some(&token), "secret", "app/db").unwrap();
    let (status, _) = bao
        .request_as(Some(&token), "GET", "secret/data/other/x", None)
        .unwrap();
    assert_eq!(status, 403);

    // From the moment the last request returned: each must be searchable within 2 s.
    let started = Instant::now();
    let queries = [
        "request.path:\"secret/data/app/db\" AND auth.display_name:userpass-alice AND type:response",
        "request.path.raw:\"secret/data/other/x\" AND outcome:denied",
        "request.path.raw:\"auth/userpass/login/alice\"",
    ];
    for q in queries {
        loop {
            if run.total(q) >= 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "not searchable within 2 s: {q}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The password and the token never reach the index in clear.
    for secret in ["hunter2", "correct-horse", token.as_str()] {
        assert_eq!(
            run.total(&format!("\"{secret}\"")),
            0,
            "{secret} is searchable"
        );
    }
    // Every line the device wrote is indexed.
    let lines = std::fs::read_to_string(&audit).unwrap().lines().count() as u64;
    assert!(run.wait_for_total("*", lines, Duration::from_secs(10)) >= lines);
}
