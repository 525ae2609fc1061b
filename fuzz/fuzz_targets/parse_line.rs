//! `vigil_event::parse_line` on arbitrary bytes, without a prefix and with the file device's
//! prefix option: it must return an error or an event, never panic, and an event must hold
//! exactly the JSON it was parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_event::{parse_line, AuditEvent, ParseLimits};

fuzz_target!(|data: &[u8]| {
    // A small limit now and then, so the size check is exercised too.
    let limits = ParseLimits {
        max_line_bytes: if data.first() == Some(&b'L') { 64 } else { 1 << 20 },
    };
    for prefix in [None, Some("vault-audit: "), Some("")] {
        if let Ok((_syslog, event)) = parse_line(data, prefix, limits) {
            // What was accepted parses again the same way from its own raw bytes.
            let again = AuditEvent::parse_with(event.raw(), limits).expect("raw reparses");
            assert_eq!(again.entry(), event.entry());
        }
    }
});
