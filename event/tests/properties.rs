//! Property tests: the parser and the framing helpers never panic on any input, and a parsed
//! event re-serializes to the same JSON.

use proptest::prelude::*;
use vigil_event::{parse_syslog, strip_prefix, unframe, AuditEvent, HmacChecker, ParseLimits};

const SAMPLE: &str = r#"{"time":"2026-11-22T16:33:32.499220896Z","type":"request","auth":{"client_token":"hmac-sha256:62864433918feea3e2221ab6b9f6d66ac119acb8cd6d4eb18408ccf1ef7b86f6","policies":["root"]},"request":{"id":"dev-gen-root","operation":"update","path":"auth/token/create","data":{"id":"s.cCNrEKC1aBbog162djzX4FuB"}}}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = AuditEvent::parse_with(&bytes, ParseLimits { max_line_bytes: 256 });
        let _ = unframe(&bytes);
        let _ = parse_syslog(&bytes);
        let _ = strip_prefix(&bytes, "vault:");
    }

    #[test]
    fn mutated_lines_never_panic(cut in 0..SAMPLE.len(), flip in 0..SAMPLE.len(), byte in any::<u8>()) {
        let mut bytes = SAMPLE.as_bytes().to_vec();
        bytes[flip] = byte;
        bytes.truncate(cut.max(1));
        if let Ok(ev) = AuditEvent::parse(&bytes) {
            let _ = HmacChecker::default().check(&ev);
        }
        let framed = [b"<38>Nov 22 16:33:32 vault[9226]: ".as_slice(), &bytes].concat();
        let _ = unframe(&framed);
    }

    #[test]
    fn unknown_fields_round_trip(key in "[a-z_]{1,12}", value in "[ -~]{0,40}", n in any::<i64>()) {
        let line = format!(
            r#"{{"time":"2026-11-22T16:33:32Z","type":"response","{key}_x":{{"v":{},"n":{n}}},"request":{{"id":"r","{key}_y":[1,true,null]}}}}"#,
            serde_json::to_string(&value).unwrap()
        );
        let ev = AuditEvent::parse(line.as_bytes()).unwrap();
        let back = serde_json::to_value(ev.entry()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(back, orig);
    }

    #[test]
    fn syslog_framing_returns_the_message(msg in "\\{[ -~]{0,60}\\}", pid in 1u32..99999, host in "[a-z]{1,8}") {
        for line in [
            format!("<38>Nov 22 16:33:32 vault[{pid}]: {msg}"),
            format!("<38>Nov 22 16:33:32 {host} vault[{pid}]: {msg}"),
            format!("<38>1 2026-11-22T16:33:32Z {host} vault {pid} - - {msg}"),
        ] {
            let (meta, got) = parse_syslog(line.as_bytes()).unwrap();
            prop_assert_eq!(got, msg.as_bytes());
            prop_assert_eq!(meta.pid, Some(pid.to_string()));
        }
    }
}
