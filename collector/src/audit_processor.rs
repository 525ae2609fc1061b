//! [`AuditLineProcessor`]: the [`LineProcessor`] of real audit devices. It removes framing,
//! parses the entry, runs the HMAC checks, redacts leaked plaintext with the collector's own
//! key (so it never leaves the node), and seals the line into a signed envelope.

use std::sync::atomic::{AtomicU64, Ordering};

use vigil_bus::Record;
use vigil_event::{
    parse_line, AuditEvent, HmacChecker, Keyring, Origin, ParseLimits, Redactor, Severity,
};

use crate::processor::{LineOrigin, LineOutcome, LineProcessor};

/// Turns audit lines of one device into signed records.
#[derive(Debug)]
pub struct AuditLineProcessor {
    origin: Origin,
    prefix: Option<String>,
    limits: ParseLimits,
    checker: HmacChecker,
    redactor: Redactor,
    keyring: Keyring,
    leaks: AtomicU64,
    findings: AtomicU64,
}

impl AuditLineProcessor {
    /// A processor for lines of the device `origin` names.
    pub fn new(
        origin: Origin,
        checker: HmacChecker,
        redactor: Redactor,
        keyring: Keyring,
    ) -> AuditLineProcessor {
        AuditLineProcessor {
            origin,
            prefix: None,
            limits: ParseLimits::default(),
            checker,
            redactor,
            keyring,
            leaks: AtomicU64::new(0),
            findings: AtomicU64::new(0),
        }
    }

    /// Removes the file device's `prefix` option from each line.
    pub fn with_prefix(mut self, prefix: Option<String>) -> Self {
        self.prefix = prefix.filter(|p| !p.is_empty());
        self
    }

    /// Parses under these limits.
    pub fn with_limits(mut self, limits: ParseLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bus key of this device's records.
    pub fn source_key(&self) -> String {
        self.origin.key()
    }

    /// HMAC findings seen so far, and how many of them were leaks that were redacted.
    pub fn finding_counts(&self) -> (u64, u64) {
        (
            self.findings.load(Ordering::Relaxed),
            self.leaks.load(Ordering::Relaxed),
        )
    }

    fn seal(&self, line: &[u8]) -> Result<Vec<u8>, String> {
        let (syslog, event) =
            parse_line(line, self.prefix.as_deref(), self.limits).map_err(|e| e.to_string())?;
        let findings = self.checker.check(&event);
        let mut origin = self.origin.clone();
        origin.syslog = syslog;
        let raw = if findings.is_empty() {
            event.into_raw()
        } else {
            self.findings
                .fetch_add(findings.len() as u64, Ordering::Relaxed);
            let redacted = self
                .redactor
                .redact(&event, &findings)
                .map_err(|e| e.to_string())?;
            if redacted.is_some() {
                self.leaks.fetch_add(1, Ordering::Relaxed);
                // Say where, never what: the finding holds the field, not the value.
                let worst = findings
                    .iter()
                    .map(|f| f.severity)
                    .max()
                    .unwrap_or(Severity::Info);
                tracing::warn!(
                    device = %self.origin.device,
                    request_id = event.entry().request_id().unwrap_or("-"),
                    fields = ?findings.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(),
                    severity = worst.as_str(),
                    "plaintext in audit entry; redacted before publishing"
                );
            }
            origin.findings = findings;
            redacted.map_or_else(|| event.into_raw(), AuditEvent::into_raw)
        };
        self.keyring
            .seal(&origin, raw.as_bytes())
            .map_err(|e| e.to_string())
    }
}

impl LineProcessor for AuditLineProcessor {
    fn process(&self, line: &[u8], origin: &LineOrigin<'_>) -> LineOutcome {
        match self.seal(line) {
            Ok(payload) => LineOutcome::Publish(Record::new(origin.source, payload)),
            Err(reason) => LineOutcome::Reject { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigil_event::{AuditHasher, SourceKind};

    use super::*;
    use crate::identity::FileIdentity;

    fn processor() -> (AuditLineProcessor, Keyring) {
        let keyring = Keyring::new([("k1", b"0123456789abcdef".to_vec())]).unwrap();
        let p = AuditLineProcessor::new(
            Origin::new("node-1", "main", SourceKind::File),
            HmacChecker::default(),
            Redactor::new(AuditHasher::new(b"redaction-key")),
            keyring.clone(),
        );
        (p, keyring)
    }

    fn origin() -> LineOrigin<'static> {
        LineOrigin {
            source: "node-1/main",
            path: Path::new("/x"),
            file: FileIdentity::from_key("1:2:3").unwrap_or_else(|| panic!("identity key")),
            offset: 0,
        }
    }

    #[test]
    fn seals_a_line_and_redacts_a_leak() {
        let (p, keyring) = processor();
        let line = br#"<38>Nov 22 16:33:32 vault[1]: {"time":"2026-11-22T16:33:32Z","type":"request","auth":{"client_token":"s.cCNrEKC1aBbog162djzX4FuB"},"request":{"id":"r1"}}"#;
        let LineOutcome::Publish(record) = p.process(line, &origin()) else {
            panic!("rejected")
        };
        assert_eq!(record.key, "node-1/main");
        let env = keyring.open(&record.payload).unwrap();
        let raw = String::from_utf8(env.raw).unwrap();
        assert!(!raw.contains("s.cCNrEKC1aBbog162djzX4FuB"), "{raw}");
        assert!(raw.contains("hmac-sha256:"));
        assert_eq!(env.origin.findings.len(), 1);
        assert_eq!(env.origin.syslog.unwrap().pid.as_deref(), Some("1"));
        assert_eq!(p.finding_counts(), (1, 1));
    }

    #[test]
    fn rejects_what_is_not_an_entry() {
        let (p, _) = processor();
        for line in [&b"not json"[..], b"{\"time\":", b"\xff\xfe"] {
            assert!(matches!(
                p.process(line, &origin()),
                LineOutcome::Reject { .. }
            ));
        }
    }
}
