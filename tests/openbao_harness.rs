//! The OpenBao test harness (`vigil_testkit::openbao`) against a real
//! `bao server`: each audit device kind delivers the requests the test made.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_testkit::openbao::{AuditDevice, OpenBao};

const PASSWORD: &str = "correct-horse-battery-staple";

/// Realistic traffic: userpass login of a user who then writes, reads and
/// lists KV secrets. Returns the paths the requests went to.
fn traffic(bao: &OpenBao) -> Vec<&'static str> {
    bao.enable_userpass("userpass").unwrap();
    bao.write_policy(
        "app",
        r#"path "secret/data/app/*" { capabilities = ["create", "update", "read"] }
path "secret/metadata/app/*" { capabilities = ["list"] }"#,
    )
    .unwrap();
    bao.create_user("userpass", "alice", PASSWORD, &["app"])
        .unwrap();
    let token = bao.login("userpass", "alice", PASSWORD).unwrap();
    assert!(!token.is_empty());
    bao.kv_put(
        Some(&token),
        "secret",
        "app/db",
        json!({ "username": "app", "password": "s3cr3t-db-pass" }),
    )
    .unwrap();
    let data = bao.kv_get(Some(&token), "secret", "app/db").unwrap();
    assert_eq!(data["username"], "app");
    let (status, listed) = bao
        .request_as(Some(&token), "LIST", "secret/metadata/app", None)
        .unwrap();
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"]["keys"], json!(["db"]));
    // A denied read: alice's policy does not cover it.
    let (status, _) = bao
        .request_as(Some(&token), "GET", "secret/data/other/x", None)
        .unwrap();
    assert_eq!(status, 403);
    vec![
        "sys/auth/userpass",
        "sys/policies/acl/app",
        "auth/userpass/users/alice",
        "auth/userpass/login/alice",
        "secret/data/app/db",
        "secret/metadata/app/", // OpenBao logs a LIST with a trailing slash
        "secret/data/other/x",
    ]
}

/// (type, request.path) of each audit entry.
fn entries(lines: &[Value]) -> HashSet<(String, String)> {
    lines
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap_or_default().to_string(),
                v["request"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn assert_logged(lines: &[Value], paths: &[&str]) {
    let seen = entries(lines);
    for path in paths {
        for kind in ["request", "response"] {
            assert!(
                seen.contains(&(kind.to_string(), path.to_string())),
                "no audit {kind} entry for {path}; entries: {seen:?}"
            );
        }
    }
}

#[test]
fn file_audit_device_logs_every_request_and_response() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let bao = OpenBao::start(dir.path(), &[AuditDevice::file("main", &log)]).unwrap();
    let (status, health) = bao.request("GET", "sys/health", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(health["sealed"], false);

    let (status, devices) = bao.request("GET", "sys/audit", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(devices["data"]["main/"]["type"], "file", "{devices}");

    let paths = traffic(&bao);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines[0]["request"]["path"], "sys/audit/test");
    assert_logged(&lines, &paths);

    // The denied read is logged with its error.
    assert!(lines.iter().any(|v| v["type"] == "response"
        && v["request"]["path"] == "secret/data/other/x"
        && v["error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied"))));
    // Secrets and tokens are HMAC'd, never written in the clear.
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains("s3cr3t-db-pass"));
    assert!(!text.contains(bao.root_token()));
    assert!(text.contains("hmac-sha256:"));
}

#[test]
fn socket_audit_device_streams_json_lines_to_a_tcp_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let bao = OpenBao::start(dir.path(), &[AuditDevice::socket("sock", address)]).unwrap();
    let paths = traffic(&bao);

    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(v);
            continue;
        }
        let seen = entries(&lines);
        if paths
            .iter()
            .all(|p| seen.contains(&("response".to_string(), p.to_string())))
        {
            break;
        }
    }
    assert_logged(&lines, &paths);
}

#[test]
fn socket_audit_device_without_a_listener_stops_the_server_from_starting() {
    // A port that was free a moment ago: nothing listens there.
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = match OpenBao::start(dir.path(), &[AuditDevice::socket("sock", address)]) {
        Ok(_) => panic!("OpenBao started with an unreachable socket audit device"),
        Err(e) => e,
    };
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn syslog_audit_device_sends_datagrams_to_the_given_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("syslog.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // Read while the traffic runs: a Unix datagram queue holds only a few
    // messages, and when it is full OpenBao's write times out, the audit
    // fails and so does the request (HTTP 500).
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let bao = OpenBao::start(
        dir.path(),
        &[AuditDevice::syslog("sys", "vigil-test", &socket_path)],
    )
    .unwrap();
    let paths = traffic(&bao);

    let mut lines = Vec::new();
    while let Ok(msg) = rx.recv_timeout(Duration::from_millis(500)) {
        // <38>Nov 22 22:55:37 vigil-test[PID]: {json}
        assert!(msg.starts_with("<38>"), "{msg}");
        let (header, json) = msg.split_once(": ").expect("syslog header");
        assert!(
            header.contains(&format!("vigil-test[{}]", bao.pid())),
            "{header}"
        );
        lines.push(serde_json::from_str(json.trim_end()).unwrap());
    }
    assert_logged(&lines, &paths);
}
