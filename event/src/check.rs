//! The HMAC checks on one event: where Vault should have written an HMAC but wrote something
//! else, and Vault tokens in clear anywhere in the line. Also the redaction that replaces
//! leaked plaintext with an HMAC before the event leaves the collector.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit_hash::{hmac_shape, AuditHasher, HmacShape};
use crate::model::{AuditEntry, Auth};
use crate::parse::{AuditEvent, ParseError};
use crate::token::{find_tokens, find_tokens_in_bytes, is_token};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Explained by the device's options; nothing leaked that the operator did not choose.
    Info,
    /// Worth a look.
    Low,
    /// Probably a misconfiguration that exposes data.
    Medium,
    /// Sensitive data in clear.
    High,
    /// A credential in clear.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A token field holds plaintext instead of an HMAC.
    PlaintextToken,
    /// An accessor field holds plaintext instead of an HMAC.
    PlaintextAccessor,
    /// A string in request or response data holds plaintext instead of an HMAC.
    PlaintextValue,
    /// A token-shaped plaintext somewhere Vault would not HMAC (a path, an error, a header…).
    TokenInClear,
    /// A value starts with `hmac-sha256:` but is not 64 lowercase hex digits.
    MalformedHmac,
}

impl FindingKind {
    /// The snake_case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::PlaintextToken => "plaintext_token",
            FindingKind::PlaintextAccessor => "plaintext_accessor",
            FindingKind::PlaintextValue => "plaintext_value",
            FindingKind::TokenInClear => "token_in_clear",
            FindingKind::MalformedHmac => "malformed_hmac",
        }
    }

    /// Whether the finding means a secret is in clear, so redaction applies.
    pub fn is_leak(self) -> bool {
        !matches!(self, FindingKind::MalformedHmac)
    }
}

/// One problem with the HMAC'd fields of an event. Holds where, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmacFinding {
    /// Dotted path of the field, e.g. `request.client_token` or `request.data.policies.0`.
    pub field: String,
    /// JSON Pointer to the field, unambiguous where keys contain dots.
    pub pointer: String,
    /// What is wrong.
    pub kind: FindingKind,
    /// How serious it is.
    pub severity: Severity,
    /// For a token inside a longer string: its byte range in that string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<(usize, usize)>,
}

/// What the checker knows of the device that wrote the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceOptions {
    /// The device's `hmac_accessor` option; `None` infers it per event (an accessor in clear
    /// beside an HMAC'd token can only come from `hmac_accessor=false`).
    pub hmac_accessor: Option<bool>,
}

/// Checks the HMAC'd fields of events from one device.
#[derive(Debug, Clone, Default)]
pub struct HmacChecker {
    options: DeviceOptions,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Token,
    Accessor,
}

struct Path {
    field: String,
    pointer: String,
}

impl Path {
    fn root(name: &str) -> Path {
        Path {
            field: name.to_owned(),
            pointer: format!("/{name}"),
        }
    }

    fn child(&self, key: &str) -> Path {
        Path {
            field: format!("{}.{key}", self.field),
            pointer: format!(
                "{}/{}",
                self.pointer,
                key.replace('~', "~0").replace('/', "~1")
            ),
        }
    }
}

impl HmacChecker {
    /// A checker for a device with these options.
    pub fn new(options: DeviceOptions) -> HmacChecker {
        HmacChecker { options }
    }

    /// Every finding on one event.
    pub fn check(&self, event: &AuditEvent) -> Vec<HmacFinding> {
        let entry = event.entry();
        let mut findings = Vec::new();
        let accessor_severity = self.accessor_severity(entry);
        let mut push = |path: Path, kind, severity, span| {
            findings.push(HmacFinding {
                field: path.field,
                pointer: path.pointer,
                kind,
                severity,
                span,
            })
        };

        let mut secret_fields: Vec<SecretField<'_>> = Vec::new();
        if let Some(auth) = &entry.auth {
            auth_fields(Path::root("auth"), auth, &mut secret_fields);
        }
        if let Some(req) = &entry.request {
            token_fields(
                &Path::root("request"),
                ("client_token", req.client_token.as_deref()),
                (
                    "client_token_accessor",
                    req.client_token_accessor.as_deref(),
                ),
                &mut secret_fields,
            );
        }
        if let Some(resp) = &entry.response {
            let p = Path::root("response");
            if let Some(auth) = &resp.auth {
                auth_fields(p.child("auth"), auth, &mut secret_fields);
            }
            if let Some(wrap) = &resp.wrap_info {
                let w = p.child("wrap_info");
                for (key, secret) in [
                    ("token", Secret::Token),
                    ("accessor", Secret::Accessor),
                    ("wrapped_accessor", Secret::Accessor),
                ] {
                    secret_fields.push((
                        w.child(key),
                        wrap.get(key).and_then(Value::as_str),
                        secret,
                    ));
                }
            }
        }
        let mut reported: Vec<String> = Vec::new();
        for (path, value, secret) in secret_fields {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            match (hmac_shape(value), secret) {
                (HmacShape::Valid, _) => continue,
                (HmacShape::Malformed, _) => {
                    push(path, FindingKind::MalformedHmac, Severity::Medium, None)
                }
                (HmacShape::Plaintext, Secret::Token) => {
                    reported.push(path.pointer.clone());
                    push(path, FindingKind::PlaintextToken, Severity::Critical, None)
                }
                (HmacShape::Plaintext, Secret::Accessor) => {
                    reported.push(path.pointer.clone());
                    push(
                        path,
                        FindingKind::PlaintextAccessor,
                        accessor_severity,
                        None,
                    )
                }
            }
        }

        let mut data_findings = Vec::new();
        if let Some(data) = entry.request.as_ref().and_then(|r| r.data.as_ref()) {
            walk_data(
                Path::root("request").child("data"),
                data,
                &mut data_findings,
            );
        }
        if let Some(data) = entry.response.as_ref().and_then(|r| r.data.as_ref()) {
            walk_data(
                Path::root("response").child("data"),
                data,
                &mut data_findings,
            );
        }
        for (path, kind, value) in data_findings {
            // A whole token in a data value is a credential in clear.
            let (kind, severity) = match kind {
                FindingKind::PlaintextValue if is_token(value) => {
                    (FindingKind::PlaintextToken, Severity::Critical)
                }
                FindingKind::PlaintextValue => (kind, Severity::Medium),
                _ => (kind, Severity::Medium),
            };
            if kind.is_leak() {
                reported.push(path.pointer.clone());
            }
            push(path, kind, severity, None);
        }

        // Tokens hidden anywhere else: tokens need no JSON escaping, so a scan of the raw
        // line finds every one; only then is the line walked to say where.
        if !find_tokens(event.raw_str()).is_empty() {
            if let Ok(value) = serde_json::from_str::<Value>(event.raw_str()) {
                let mut hits = Vec::new();
                walk_strings(
                    Path {
                        field: String::new(),
                        pointer: String::new(),
                    },
                    &value,
                    &mut hits,
                );
                for (path, s) in hits {
                    if reported.contains(&path.pointer) {
                        continue;
                    }
                    for m in find_tokens(s) {
                        let whole = m.start == 0 && m.end == s.len();
                        let span = (!whole).then_some((m.start, m.end));
                        push(
                            Path {
                                field: path.field.clone(),
                                pointer: path.pointer.clone(),
                            },
                            FindingKind::TokenInClear,
                            Severity::Critical,
                            span,
                        );
                    }
                }
            }
        }
        findings
    }

    fn accessor_severity(&self, entry: &AuditEntry) -> Severity {
        let explained = match self.options.hmac_accessor {
            Some(hmac_accessor) => !hmac_accessor,
            None => {
                // With `hmac_accessor=false` tokens are still HMAC'd; with `log_raw` they are not.
                let tokens = [
                    entry.auth.as_ref().and_then(|a| a.client_token.as_deref()),
                    entry
                        .request
                        .as_ref()
                        .and_then(|r| r.client_token.as_deref()),
                    entry
                        .response
                        .as_ref()
                        .and_then(|r| r.auth.as_ref())
                        .and_then(|a| a.client_token.as_deref()),
                ];
                let mut present = tokens.iter().flatten().filter(|t| !t.is_empty()).peekable();
                present.peek().is_some() && present.all(|t| hmac_shape(t) == HmacShape::Valid)
            }
        };
        if explained {
            Severity::Info
        } else {
            Severity::High
        }
    }
}

type SecretField<'a> = (Path, Option<&'a str>, Secret);

fn auth_fields<'a>(p: Path, auth: &'a Auth, out: &mut Vec<SecretField<'a>>) {
    token_fields(
        &p,
        ("client_token", auth.client_token.as_deref()),
        ("accessor", auth.accessor.as_deref()),
        out,
    );
}

/// A token field and its accessor field under `p`.
fn token_fields<'a>(
    p: &Path,
    (token_key, token): (&str, Option<&'a str>),
    (accessor_key, accessor): (&str, Option<&'a str>),
    out: &mut Vec<SecretField<'a>>,
) {
    out.push((p.child(token_key), token, Secret::Token));
    out.push((p.child(accessor_key), accessor, Secret::Accessor));
}

/// String values in request/response data that are not HMACs. Vault leaves `time.Time`
/// values in clear (they are not strings when it hashes), so RFC 3339 timestamps are fine.
fn walk_data<'a>(path: Path, value: &'a Value, out: &mut Vec<(Path, FindingKind, &'a str)>) {
    match value {
        Value::String(s) => match hmac_shape(s) {
            HmacShape::Valid => {}
            HmacShape::Malformed => out.push((path, FindingKind::MalformedHmac, s)),
            HmacShape::Plaintext => {
                if !s.is_empty() && chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    out.push((path, FindingKind::PlaintextValue, s))
                }
            }
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_data(path.child(&i.to_string()), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk_data(path.child(k), v, out);
            }
        }
        _ => {}
    }
}

fn walk_strings<'a>(path: Path, value: &'a Value, out: &mut Vec<(Path, &'a str)>) {
    let child = |k: &str| {
        if path.field.is_empty() {
            Path::root(k)
        } else {
            path.child(k)
        }
    };
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_strings(child(&i.to_string()), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk_strings(child(k), v, out);
            }
        }
        _ => {}
    }
}

/// Replaces leaked plaintext with its HMAC under a key the collector holds, so that the
/// plaintext never leaves the node.
#[derive(Debug, Clone)]
pub struct Redactor {
    hasher: AuditHasher,
}

impl Redactor {
    /// A redactor hashing with `hasher`.
    pub fn new(hasher: AuditHasher) -> Redactor {
        Redactor { hasher }
    }

    /// The event with every leak above `Info` replaced by its HMAC, or `None` when there is
    /// nothing to redact.
    pub fn redact(
        &self,
        event: &AuditEvent,
        findings: &[HmacFinding],
    ) -> Result<Option<AuditEvent>, ParseError> {
        let leaks: Vec<&HmacFinding> = findings
            .iter()
            .filter(|f| f.kind.is_leak() && f.severity > Severity::Info)
            .collect();
        if leaks.is_empty() {
            return Ok(None);
        }
        let mut value: Value =
            serde_json::from_str(event.raw_str()).map_err(|e| ParseError::InvalidEntry {
                reason: e.to_string(),
            })?;
        // Spans inside one string are replaced from the end so earlier offsets stay valid.
        let mut ordered = leaks;
        ordered.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(b.span.cmp(&a.span)));
        for finding in ordered {
            let Some(Value::String(s)) = value.pointer_mut(&finding.pointer) else {
                continue;
            };
            match finding.span {
                Some((start, end))
                    if end <= s.len() && s.is_char_boundary(start) && s.is_char_boundary(end) =>
                {
                    let hashed = self.hasher.hash(&s[start..end]);
                    s.replace_range(start..end, &hashed);
                }
                Some(_) => {}
                None => *s = self.hasher.hash(s),
            }
        }
        let entry: AuditEntry =
            serde_json::from_value(value).map_err(|e| ParseError::InvalidEntry {
                reason: e.to_string(),
            })?;
        AuditEvent::from_entry(entry).map(Some)
    }

    /// `bytes` with every plaintext token replaced by its HMAC; see [`redact_tokens_in_bytes`].
    pub fn redact_tokens_in_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        redact_tokens_in_bytes(bytes, self)
    }
}

/// `bytes` with every token-shaped run (`hvs.`, `hvb.`, `hvr.`, `s.`, `b.`, `r.`; see
/// [`crate::token::find_tokens_in_bytes`]) replaced by its HMAC under the redactor's key, the
/// same value [`Redactor::redact`] writes into events, so a quarantined line and the event
/// it became can still be matched up. Works on any bytes: input refused for not being JSON or
/// not UTF-8 is exactly what quarantine holds, and it must not keep a plaintext token either.
/// Borrowed when there is nothing to replace.
///
/// Legacy tokens that are bare UUIDs are not recognised here: outside a field known to hold
/// a token they cannot be told from request ids.
pub fn redact_tokens_in_bytes<'a>(bytes: &'a [u8], redactor: &Redactor) -> Cow<'a, [u8]> {
    let found = find_tokens_in_bytes(bytes);
    if found.is_empty() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + found.len() * 64);
    let mut copied = 0;
    for token in found {
        out.extend_from_slice(&bytes[copied..token.start]);
        // A match is ASCII by construction; the lossy conversion never replaces anything.
        let text = String::from_utf8_lossy(&bytes[token.start..token.end]);
        out.extend_from_slice(redactor.hasher.hash(&text).as_bytes());
        copied = token.end;
    }
    out.extend_from_slice(&bytes[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s.cCNrEKC1aBbog162djzX4FuB";
    const LONG: &str = "hvs.CAESIJrq3lYpG2cBkuw9Yn7ZbVoQs4V1wlV0Do5qaUhpRQTJGh4KHGh2cy5YRGVVdzFyTnZyU3M1YzV6d0xBdzNvbm8";

    fn redactor() -> Redactor {
        Redactor::new(AuditHasher::new(b"quarantine-key"))
    }

    #[test]
    fn tokens_in_bytes_that_are_not_utf8_nor_json_are_replaced_by_their_hmac() {
        let r = redactor();
        let mut line = b"\xff\xfe{not json ".to_vec();
        line.extend_from_slice(TOKEN.as_bytes());
        line.extend_from_slice(b"\x00,");
        line.extend_from_slice(LONG.as_bytes());
        line.extend_from_slice(b"\x80 tail");
        let redacted = redact_tokens_in_bytes(&line, &r);
        assert!(matches!(redacted, Cow::Owned(_)));
        let text = String::from_utf8_lossy(&redacted);
        assert!(
            !text.contains(TOKEN) && !text.contains("hvs.CAES"),
            "{text}"
        );
        let expected = [
            &b"\xff\xfe{not json "[..],
            AuditHasher::new(b"quarantine-key").hash(TOKEN).as_bytes(),
            b"\x00,",
            AuditHasher::new(b"quarantine-key").hash(LONG).as_bytes(),
            b"\x80 tail",
        ]
        .concat();
        assert_eq!(redacted.as_ref(), expected.as_slice());
        // The method and the function agree.
        assert_eq!(r.redact_tokens_in_bytes(&line), redacted);
    }

    #[test]
    fn bytes_without_tokens_are_borrowed_unchanged() {
        let line =
            br#"{"request":{"id":"6f1c3a52-2d0b-4a8e-9c3e-0a1b2c3d4e5f","path":"secret/data/x"}}"#;
        let redacted = redact_tokens_in_bytes(line, &redactor());
        assert!(matches!(redacted, Cow::Borrowed(_)));
        assert_eq!(redacted.as_ref(), &line[..]);
    }
}
