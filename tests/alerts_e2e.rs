//! Alerts live in `vigil run`: the rules engine as a second consumer group, alerts stored and
//! listed by the API, and posted to a webhook that fails first (retried) and checks the body
//! signature.

#[path = "support/vigil.rs"]
mod vigil;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil::{corpus, VigilRun};

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
    let manifest = vigil::manifest();
    let canary = vigil::main_device_hash(&manifest, "token:canary");
    let list = dir.path().join("honeytokens.txt");
    std::fs::write(&list, format!("{canary}\n")).unwrap();
    let (url, received) = webhook_receiver();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[[rules.watchlist]]\nname = \"honeytokens\"\nfile = \"{}\"\n\n[alerts]\nwebhook_url = \"{url}\"\nwebhook_secret = \"s3cret-for-tests\"\n",
            list.display()
        ),
    )
    .unwrap();
    let run = VigilRun::start_with(
        &dir.path().join("data"),
        &[corpus("main.log")],
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
    let canary_ids: Vec<&str> = manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "honeytoken_use")
        .unwrap()["request_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(honeytoken["request_ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| canary_ids.contains(&r.as_str().unwrap())));
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
    for r in received.lock().unwrap().iter() {
        let expected = vigil_rules::notify::signature("s3cret-for-tests", &r.timestamp, &r.body);
        assert_eq!(r.signature, expected, "bad signature");
        let alert: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(alert["rule_id"].is_string() && alert["request_ids"].is_array());
    }
}
