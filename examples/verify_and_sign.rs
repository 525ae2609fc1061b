//! Verify and sign one audit line: what the collector does to every line before it leaves the
//! node.
//!
//! 1. parse the line into an `AuditEvent`;
//! 2. check the fields Vault should have HMAC'd: here the client token is in clear, as a
//!    device with `log_raw=true` writes it;
//! 3. redact: replace the plaintext with an HMAC under a key of our own;
//! 4. seal the redacted line in an envelope signed with a `Keyring`, open it again, and see
//!    that a changed byte is refused.
//!
//! Run: `cargo run --example verify_and_sign`

use anyhow::{ensure, Context};
use vigil_event::{
    AuditEvent, AuditHasher, DeviceOptions, EnvelopeError, FindingKind, HmacChecker, Keyring,
    Origin, Redactor, Severity, SourceKind,
};

/// A request whose client token is plaintext (`s.` and 24 base62 characters, OpenBao's
/// service-token shape) where Vault should have written `hmac-sha256:…`.
const LEAKY_LINE: &str = r#"{"time":"2026-11-22T16:40:00Z","type":"request","auth":{"client_token":"s.Ab3De5Gh7Jk9Lm1Np3Qr5St7","display_name":"userpass-alice","policies":["default"]},"request":{"id":"6f1c2b9e-0d1a-4c55-9a27-3b8e5f0c7d21","operation":"read","path":"secret/data/payments/db","client_token":"s.Ab3De5Gh7Jk9Lm1Np3Qr5St7","remote_address":"10.4.2.17"}}"#;
const PLAINTEXT_TOKEN: &str = "s.Ab3De5Gh7Jk9Lm1Np3Qr5St7";

fn run() -> anyhow::Result<()> {
    // 1. Parse. The event keeps the raw line beside the typed entry.
    let event = AuditEvent::parse(LEAKY_LINE.as_bytes()).context("parsing the audit line")?;
    println!(
        "parsed a {} on {} at {}",
        event.entry().kind.as_str(),
        event.entry().path().unwrap_or("?"),
        event.time()
    );

    // 2. Check. `hmac_accessor: None` lets the checker infer the device's option per event.
    let checker = HmacChecker::new(DeviceOptions {
        hmac_accessor: None,
    });
    let findings = checker.check(&event);
    for f in &findings {
        println!(
            "finding: {} at {} ({})",
            f.kind.as_str(),
            f.field,
            f.severity.as_str()
        );
    }
    ensure!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::PlaintextToken && f.field == "auth.client_token"),
        "expected a plaintext_token finding on auth.client_token, got {findings:?}"
    );

    // 3. Redact. The collector's redaction key (`<data-dir>/redaction.key`) is its own, not
    //    Vault's salt: a redacted value can be matched across events, never reversed.
    let redactor = Redactor::new(AuditHasher::new(b"example redaction key, 32 bytes!"));
    let redacted = redactor
        .redact(&event, &findings)?
        .context("a leak was found, so redaction must produce a new event")?;
    ensure!(
        !redacted.raw_str().contains(PLAINTEXT_TOKEN),
        "the plaintext token survived redaction"
    );
    ensure!(
        checker
            .check(&redacted)
            .iter()
            .all(|f| !f.kind.is_leak() || f.severity <= Severity::Info),
        "the redacted event still leaks"
    );
    println!("redacted: {}", redacted.raw_str());

    // 4. Sign. The findings travel inside the signed origin, so the rules can alert on a leak
    //    the index never sees.
    let keyring = Keyring::new([("k1", b"a signing secret of 16+ bytes".to_vec())])?;
    let mut origin = Origin::new("vault-0", "main", SourceKind::File);
    origin.findings = findings;
    let envelope = keyring.seal(&origin, redacted.raw())?;
    println!(
        "sealed {} bytes with key {}",
        envelope.len(),
        keyring.signing_key_id()
    );

    // A consumer opens it: the signature verifies and the event parses.
    let (opened, opened_origin) = keyring.open_event(&envelope)?;
    ensure!(opened.raw() == redacted.raw(), "the opened line differs");
    ensure!(opened_origin == origin, "the opened origin differs");
    println!(
        "opened: {} finding(s) from {}",
        opened_origin.findings.len(),
        opened_origin.key()
    );

    // One flipped byte in the line is a bad signature, not an event.
    let mut forged = envelope.clone();
    let middle = forged.len() / 2;
    forged[middle] ^= 0x01;
    match keyring.open(&forged) {
        Err(EnvelopeError::BadSignature(id)) => println!("forged copy refused (key {id})"),
        other => anyhow::bail!("a forged envelope must be refused, got {other:?}"),
    }

    // A keyring that does not hold `k1` cannot verify it either.
    let stranger = Keyring::new([("k2", b"another secret of 16+ bytes".to_vec())])?;
    ensure!(
        matches!(stranger.open(&envelope), Err(EnvelopeError::UnknownKey(_))),
        "an unknown key id must be refused"
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
