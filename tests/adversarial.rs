//! Hostile input, as an attacker who wants to blind Vigil would send it: through each device
//! kind (file, socket, syslog) and through the API. After each attack every valid event before
//! and after it is searchable, the process still answers, and the quarantine holds what was
//! refused, with no plaintext token in it.

use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use vigil_testkit::vigil::{encode, VigilRun};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const WAIT: Duration = Duration::from_secs(60);
/// A Vault service token in clear, as a leak in a garbage line would carry it.
const PLAINTEXT_TOKEN: &str = "hvs.CAESIJlU2ZWd0a2VuLXRoYXQtbXVzdC1uZXZlci1sZWFr";

/// One audit entry with `id`, as Vault writes a request.
fn entry(id: &str, time: &str) -> Value {
    json!({
        "time": time,
        "type": "request",
        "auth": {"client_token": "hmac-sha256:8f3b2a1c9d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
                 "display_name": "userpass-alice", "policies": ["default"]},
        "request": {"id": id, "operation": "read", "path": "secret/data/app",
                    "remote_address": "10.1.2.3"}
    })
}

fn line(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// What an attacker writes, each with the request id it carries when it is an audit entry
/// Vigil should still index (`Some`), or `None` for input that can only be quarantined.
fn attacks(tag: &str) -> Vec<(&'static str, Option<String>, Vec<u8>)> {
    let id = |what: &str| format!("{tag}-{what}");
    let mut huge = entry(&id("huge-field"), "2026-11-30T10:00:00Z");
    huge["request"]["data"] = json!({ "blob": "h".repeat(300_000) });
    let mut nul = entry(&id("nul-in-value"), "2026-11-30T10:00:00Z");
    nul["request"]["path"] = json!("secret/\u{0}data");
    vec![
        (
            "time in year 9999",
            Some(id("year-9999")),
            line(&entry(&id("year-9999"), "9999-12-31T23:59:59Z")),
        ),
        (
            "time in year 1000",
            Some(id("year-1000")),
            line(&entry(&id("year-1000"), "1000-01-01T00:00:00Z")),
        ),
        ("a huge single field", Some(id("huge-field")), line(&huge)),
        (
            "an escaped NUL in a value",
            Some(id("nul-in-value")),
            line(&nul),
        ),
        ("invalid UTF-8", None, {
            let mut l = line(&entry(&id("utf8"), "2026-11-30T10:00:00Z"));
            let at = l.len() - 5;
            l.splice(at..at, [0xff, 0xfe, 0xc3]);
            l
        }),
        ("deep JSON nesting", None, {
            let mut l = b"{\"a\":".to_vec();
            l.extend(std::iter::repeat_n(b'[', 50_000));
            l.extend(std::iter::repeat_n(b']', 50_000));
            l.push(b'}');
            l
        }),
        ("a JSON array", None, b"[1,2,3]".to_vec()),
        ("a JSON string", None, b"\"just a string\"".to_vec()),
        ("a JSON number", None, b"42".to_vec()),
        ("raw NUL bytes", None, b"{\"time\":\0\0\0}".to_vec()),
        (
            "a plaintext token in garbage",
            None,
            format!("not an audit entry {PLAINTEXT_TOKEN} trailing").into_bytes(),
        ),
        ("over the line limit", None, {
            let mut big = entry(&id("too-long"), "2026-11-30T10:00:00Z");
            big["request"]["data"] = json!({ "blob": "x".repeat(1_200_000) });
            line(&big)
        }),
    ]
}

/// Valid entries around the attack: `n` before, `n` after.
fn around(tag: &str, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let make = |side: &str| {
        (0..n)
            .map(|i| line(&entry(&format!("{tag}-{side}-{i}"), "2026-11-30T09:00:00Z")))
            .collect()
    };
    (make("before"), make("after"))
}

/// Checks what must hold after `tag`'s attack reached `run`.
fn assert_survived(run: &VigilRun, data_dir: &Path, tag: &str, n: usize) {
    let (status, health) = run.get_with("/healthz", None);
    assert_eq!(status, 200, "vigil must stay healthy: {health}");
    let stages = health["stages"].as_array().expect("stages in /healthz");
    for stage in ["indexer", "rules engine", "API server"] {
        assert!(
            stages
                .iter()
                .any(|s| s["name"] == stage && s["status"] == "running"),
            "{stage} running: {health}"
        );
    }
    for side in ["before", "after"] {
        let q = format!("request.id:{tag}-{side}-*");
        assert_eq!(
            run.wait_for_total(&q, n as u64, WAIT),
            n as u64,
            "valid events {side} the attack ({tag})"
        );
    }
    for (what, id, _) in attacks(tag) {
        if let Some(id) = id {
            let q = format!("request.id:\"{id}\"");
            assert_eq!(
                run.wait_for_total(&q, 1, WAIT),
                1,
                "{what} ({tag}) must stay searchable"
            );
        }
    }
    let quarantine = std::fs::read(data_dir.join("quarantine.jsonl")).unwrap_or_default();
    let text = String::from_utf8_lossy(&quarantine);
    assert!(
        !text.contains(PLAINTEXT_TOKEN),
        "the quarantine must not hold the plaintext token"
    );
    let refused = attacks(tag)
        .iter()
        .filter(|(_, id, _)| id.is_none())
        .count();
    let quarantined = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        quarantined >= refused,
        "{refused} refused inputs, {quarantined} quarantine records ({tag})"
    );
}

#[test]
fn hostile_lines_in_a_file_device_blind_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (before, after) = around("file", 20);
    let mut out = Vec::new();
    for l in before
        .iter()
        .chain(attacks("file").iter().map(|(_, _, l)| l))
        .chain(&after)
    {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(&log, out).unwrap();
    let data = dir.path().join("data");
    let run = VigilRun::start(VIGIL, &data, &[log]);
    assert_survived(&run, &data, "file", 20);
    assert!(run.stop(), "vigil run exits cleanly after the attack");
    assert_private(&data);
}

/// Every file under `dir` is readable by its owner only (0600), every directory 0700: the
/// index, stores, quarantine and keys hold audit data and secrets.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 5, "only {seen} files under {}", dir.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn hostile_lines_through_socket_and_syslog_receivers_blind_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tcp, udp) = (free_port(), free_port());
    let run = VigilRun::start_with(
        VIGIL,
        &data,
        &[],
        &[
            "--socket".into(),
            format!("tcp://127.0.0.1:{tcp}"),
            "--syslog".into(),
            format!("udp://127.0.0.1:{udp}"),
        ],
    );

    let (before, after) = around("socket", 20);
    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    for l in before
        .iter()
        .chain(attacks("socket").iter().map(|(_, _, l)| l))
        .chain(&after)
    {
        stream.write_all(l).unwrap();
        stream.write_all(b"\n").unwrap();
    }
    stream.flush().unwrap();
    drop(stream);

    // Syslog over UDP: one datagram a message, RFC 3164 framing as Vault's device writes it.
    let (before, after) = around("syslog", 20);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for l in before
        .iter()
        .chain(attacks("syslog").iter().map(|(_, _, l)| l))
        .chain(&after)
    {
        let mut datagram = b"<38>Nov 30 10:00:00 vault[9226]: ".to_vec();
        datagram.extend_from_slice(l);
        // A datagram over UDP's size cannot be sent at all: that attack needs a stream.
        if datagram.len() < 65_000 {
            socket.send_to(&datagram, ("127.0.0.1", udp)).unwrap();
        }
        // Loopback drops datagrams the receiver has no room for yet: pace them.
        std::thread::sleep(Duration::from_millis(2));
    }

    for tag in ["socket", "syslog"] {
        let n = 20;
        for side in ["before", "after"] {
            let q = format!("request.id:{tag}-{side}-*");
            assert_eq!(run.wait_for_total(&q, n, WAIT), n, "{tag} {side}");
        }
        for (what, id, l) in attacks(tag) {
            if let Some(id) = id.filter(|_| tag == "socket" || l.len() < 65_000) {
                let q = format!("request.id:\"{id}\"");
                assert_eq!(run.wait_for_total(&q, 1, WAIT), 1, "{what} via {tag}");
            }
        }
    }
    let quarantine = std::fs::read(data.join("quarantine.jsonl")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&quarantine).contains(PLAINTEXT_TOKEN));
    let (status, _) = run.get_with("/healthz", None);
    assert_eq!(status, 200);
    assert!(run.stop());
}

#[test]
fn hostile_requests_get_a_client_error_and_the_service_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (before, _) = around("api", 50);
    let mut out = Vec::new();
    for l in &before {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(&log, out).unwrap();
    let run = VigilRun::start(VIGIL, &dir.path().join("data"), &[log]);
    assert_eq!(run.wait_for_total("*", 50, WAIT), 50);

    // Both under the query size limit; each overflowed a worker's stack before depth limits.
    let deep = format!("{}a{}", "(a AND ".repeat(1500), ")".repeat(1500));
    let nots = format!("{}a", "NOT ".repeat(3000));
    let hostile: Vec<(&str, String)> = vec![
        (
            "deep nesting",
            format!("/api/v1/search?q={}", encode(&deep)),
        ),
        (
            "a long NOT chain",
            format!("/api/v1/search?q={}", encode(&nots)),
        ),
        (
            "a pathological regex",
            format!(
                "/api/v1/search?q={}",
                encode("request.path:/(a+)+(b+)+(c+)+(d+)+(e+)+$/")
            ),
        ),
        (
            "a huge facet size on a unique field",
            "/api/v1/facets?field=request.id&size=100000000".to_owned(),
        ),
        (
            "a tiny histogram interval over a long range",
            "/api/v1/histogram?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z&interval=1ms"
                .to_owned(),
        ),
        (
            "an overflowing limit",
            "/api/v1/search?limit=99999999999999999999999".to_owned(),
        ),
        ("a negative limit", "/api/v1/search?limit=-1".to_owned()),
        (
            "an oversized cursor",
            format!("/api/v1/search?cursor={}", "A".repeat(60_000)),
        ),
        (
            "an alerts limit out of range",
            "/api/v1/alerts?limit=18446744073709551616".to_owned(),
        ),
    ];
    for (what, path) in &hostile {
        let (status, body) = run.get(path);
        assert!(
            (400..500).contains(&status),
            "{what}: expected a 4xx, got {status}: {body}"
        );
        // The service answers the next ordinary request at once.
        assert_eq!(run.total("request.id:api-before-1"), 1, "after {what}");
    }
    let (status, _) = run.get_with("/healthz", None);
    assert_eq!(status, 200);
    assert!(run.stop(), "vigil run exits cleanly");
}

/// A stage that cannot write (here: a file size limit, as a full disk would) stops
/// `vigil run` with a non-zero exit rather than leaving it up and blind; once the fault is
/// gone, a restart indexes everything, exactly once.
#[test]
fn a_stage_that_cannot_write_stops_vigil_and_nothing_is_lost_after_the_fault() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use vigil_testkit::corpus;
    use vigil_testkit::process::wait_within;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut text = String::new();
    for copy in 0..4 {
        for l in corpus::distinct_copy(copy) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    std::fs::write(&log, &text).unwrap();
    let lines = text.lines().count() as u64;
    let data = dir.path().join("data");

    let mut cmd = Command::new(VIGIL);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(&data)
        .arg("--file")
        .arg(&log)
        .args(["--listen", "127.0.0.1:0", "--api-token", "t"])
        .env("VIGIL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Writes past 3 MiB fail with EFBIG (instead of the signal that would kill the
            // process before Vigil could say anything).
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 3 << 20,
                rlim_max: 3 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let status = wait_within(&mut child, Duration::from_secs(120));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("vigil run kept running while it could not write its index");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "a failed stage must exit non-zero");
    assert!(
        stderr.contains("failed"),
        "the failing stage is named in the log: {stderr}"
    );

    // The fault removed: everything is there, each event once.
    let run = VigilRun::start(VIGIL, &data, &[log]);
    assert_eq!(run.wait_for_total("*", lines, WAIT), lines);
    assert!(run.stop());
}
