//! Live, every audit device kind at once: a real OpenBao server with a file device, a socket
//! device pointed at Vigil's TCP receiver and a syslog device writing to Vigil's unix datagram
//! socket (as `/var/run/syslog` in OpenBao's own mount namespace). The same requests must
//! arrive through all three, with the same request ids, none missing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_testkit::openbao::{AuditDevice, OpenBao};
use vigil_testkit::vigil::VigilRun;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn file_socket_and_syslog_devices_deliver_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, "").unwrap();
    let port = free_port();
    let syslog_socket = dir.path().join("log.sock");
    let run = VigilRun::start_with(
        VIGIL,
        &dir.path().join("vigil"),
        std::slice::from_ref(&audit),
        &[
            "--socket".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--syslog".into(),
            format!("unixgram://{}", syslog_socket.display()),
        ],
    );
    let bao = OpenBao::start(
        dir.path(),
        &[
            AuditDevice::file("main", &audit),
            AuditDevice::socket("sock", format!("127.0.0.1:{port}")),
            AuditDevice::syslog("sys", "vault", &syslog_socket),
        ],
    )
    .expect("start OpenBao with three audit devices");

    bao.enable_userpass("userpass").unwrap();
    bao.create_user("userpass", "carol", "pw-carol-123", &["default"])
        .unwrap();
    for i in 0..20 {
        bao.kv_put(None, "secret", &format!("app/k{i}"), json!({"v": i}))
            .unwrap();
    }
    let token = bao.login("userpass", "carol", "pw-carol-123").unwrap();
    let (status, _) = bao
        .request_as(Some(&token), "GET", "secret/data/app/k1", None)
        .unwrap();
    assert_eq!(status, 403);

    // The file device is the reference: every request id it wrote must come through each kind
    // (except OpenBao's start-up test entry, which each device gets with an id of its own).
    let text = std::fs::read_to_string(&audit).unwrap();
    let expected: BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["request"]["path"] != "sys/audit/test")
        .filter_map(|e| e["request"]["id"].as_str().map(str::to_owned))
        .collect();
    assert!(expected.len() > 20, "{} request ids", expected.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    for source in ["file", "socket", "syslog"] {
        loop {
            let got: BTreeSet<String> = run
                .hits(&format!("origin.source:{source}"))
                .iter()
                .filter_map(|h| h["request_id"].as_str().map(str::to_owned))
                .collect();
            let missing: Vec<_> = expected.difference(&got).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{source}: {} request ids missing, e.g. {:?}",
                missing.len(),
                missing.first()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The syslog header stays with the event: facility AUTH (4), severity INFO (6), the tag.
    let hit = &run.hits("origin.source:syslog AND origin.syslog.tag:vault")[0];
    assert_eq!(hit["origin"]["device"], "syslog");
    assert_eq!(hit["origin"]["syslog"]["facility"], 4);
    assert_eq!(hit["origin"]["syslog"]["severity"], 6);
    assert!(hit["origin"]["syslog"]["pid"]
        .as_str()
        .is_some_and(|p| p.parse::<u32>().is_ok()));
    drop(bao);
}
