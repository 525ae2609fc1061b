//! Alerts live in `vigil run`: the rules engine as a second consumer group, alerts stored and
//! listed by the API, and posted to a webhook that fails first (retried) and checks the body
//! signature.
//!
//! The signature is checked against an HMAC computed here, from the documented format
//! (`X-Vigil-Signature: sha256=<hex of HMAC-SHA256(secret, "<X-Vigil-Timestamp>.<body>")>`),
//! not with Vigil's own function, and a changed body or timestamp must not verify.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use vigil_testkit::corpus::{self, Manifest};
use vigil_testkit::vigil::VigilRun;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const SECRET: &str = "s3cret-for-tests";

/// Whether `header` is the signature of `body` sent at `timestamp` under `secret`,
/// computed independently of Vigil with the `hmac` crate (constant-time comparison).
fn signature_verifies(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[test]
fn the_independent_check_agrees_with_a_fixed_vector() {
    // Computed with Python: hmac.new(b"s3cret-for-tests", b'1700000000.{"rule_id":"x"}',
    // hashlib.sha256).hexdigest()
    let header = "sha256=16dc4c7fe0c6d30d77578126391155ea17c79799d00027c9c438e888a4ed8fd1";
    let body = br#"{"rule_id":"x"}"#;
    assert!(signature_verifies(SECRET, "1700000000", body, header));
    assert!(!signature_verifies(SECRET, "1700000001", body, header));
    assert!(!signature_verifies(
        SECRET,
        "1700000000",
        br#"{"rule_id":"y"}"#,
        header
    ));
    assert!(!signature_verifies("other", "1700000000", body, header));
}

struct Received {
    body: Vec<u8>,
    timestamp: String,
    signature: String,
}

/// A real HTTP server on loopback: answers 503 to the first request, 200 after.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut timestamp, mut signature) = (0usize, String::new(), String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                let value = line
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
                    .unwrap_or_default();
                if lower.starts_with("content-length:") {
                    length = value.parse().unwrap_or(0);
                } else if lower.starts_with("x-vigil-timestamp:") {
                    timestamp = value;
                } else if lower.starts_with("x-vigil-signature:") {
                    signature = value;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if !first {
                sink.lock().unwrap().push(Received {
                    body,
                    timestamp,
                    signature,
                });
            }
            first = false;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

#[test]
fn alerts_are_stored_listed_and_posted_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::load();
    let canary = manifest.main_hash("token:canary");
    let list = dir.path().join("honeytokens.txt");
    std::fs::write(&list, format!("{canary}\n")).unwrap();
    let (url, received) = webhook_receiver();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[[rules.watchlist]]\nname = \"honeytokens\"\nfile = \"{}\"\n\n[alerts]\nwebhook_url = \"{url}\"\nwebhook_secret = \"{SECRET}\"\n",
            list.display()
        ),
    )
    .unwrap();
    let run = VigilRun::start_with(
        VIGIL,
        &dir.path().join("data"),
        &[corpus::path("main.log")],
        &["--config".into(), config.display().to_string()],
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let honeytoken = loop {
        let (status, body) = run.get("/api/v1/alerts?limit=1000");
        assert_eq!(status, 200, "{body}");
        let found = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["title"]
                    .as_str()
                    .is_some_and(|t| t.to_lowercase().contains("honeytoken"))
            })
            .cloned();
        if let Some(alert) = found {
            break alert;
        }
        assert!(Instant::now() < deadline, "no honeytoken alert: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let canary_ids = manifest.request_ids("honeytoken_use");
    assert!(!canary_ids.is_empty());
    assert!(honeytoken["request_ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| canary_ids.contains(r.as_str().unwrap())));
    assert_eq!(run.get_with("/api/v1/alerts", None).0, 401);
    let (_, metrics) = run.get_with("/metrics", None);
    assert!(
        metrics.as_str().unwrap().contains("vigil_alerts_total"),
        "{metrics}"
    );

    // The webhook refused the first delivery; the retry and the rest arrive, signed.
    loop {
        let done = received.lock().unwrap().iter().any(|r| {
            String::from_utf8_lossy(&r.body)
                .to_lowercase()
                .contains("honeytoken")
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "honeytoken alert never reached the webhook"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let received = received.lock().unwrap();
    assert!(!received.is_empty());
    for r in received.iter() {
        let sent: i64 = r
            .timestamp
            .parse()
            .expect("X-Vigil-Timestamp is Unix seconds");
        assert!(
            (sent - unix_now()).abs() < 600,
            "timestamp {sent} is not now"
        );
        assert!(
            signature_verifies(SECRET, &r.timestamp, &r.body, &r.signature),
            "bad signature {:?} over timestamp {:?} and {}",
            r.signature,
            r.timestamp,
            String::from_utf8_lossy(&r.body)
        );
        // The signature covers the timestamp and every byte of the body.
        let mut changed = r.body.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(!signature_verifies(
            SECRET,
            &r.timestamp,
            &changed,
            &r.signature
        ));
        let later = format!("{}1", r.timestamp);
        assert!(!signature_verifies(SECRET, &later, &r.body, &r.signature));
        assert!(!signature_verifies(
            "not-the-secret",
            &r.timestamp,
            &r.body,
            &r.signature
        ));
        let alert: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(alert["rule_id"].is_string() && alert["request_ids"].is_array());
    }
}
