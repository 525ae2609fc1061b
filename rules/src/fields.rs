//! Field resolution: what a dotted Sigma field name means on one event.
//!
//! Owns [`EventView`], the per-event view that every rule, correlation and detector reads:
//! the event's raw JSON parsed once, plus the virtual fields Vigil adds (`outcome`,
//! `origin.*`, `findings.*`). Lists flatten: a field that crosses an array yields every
//! element, and a matcher matches if any of them does.

use std::borrow::Cow;

use serde_json::Value;
use vigil_event::{AuditEvent, Origin};

/// One value a field resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A string (JSON string, or a virtual field).
    Str(Cow<'a, str>),
    /// A JSON number.
    Num(f64),
    /// A JSON boolean.
    Bool(bool),
    /// JSON `null`.
    Null,
}

impl FieldValue<'_> {
    /// The value as text, as Sigma compares it: numbers and booleans in their JSON spelling.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            FieldValue::Str(s) => Cow::Borrowed(s.as_ref()),
            FieldValue::Num(n) => Cow::Owned(format_number(*n)),
            FieldValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            FieldValue::Null => Cow::Borrowed(""),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// An event as rules see it: typed entry, origin, and the raw JSON parsed once.
#[derive(Debug)]
pub struct EventView<'a> {
    event: &'a AuditEvent,
    origin: &'a Origin,
    json: Value,
}

impl<'a> EventView<'a> {
    /// Builds the view. The raw line was valid JSON when the event was parsed, so the
    /// fallback to `Null` only guards against a caller-built event that is not.
    pub fn new(event: &'a AuditEvent, origin: &'a Origin) -> EventView<'a> {
        let json = serde_json::from_str(event.raw_str()).unwrap_or(Value::Null);
        EventView {
            event,
            origin,
            json,
        }
    }

    /// The event.
    pub fn event(&self) -> &'a AuditEvent {
        self.event
    }

    /// Where the event was read.
    pub fn origin(&self) -> &'a Origin {
        self.origin
    }

    /// The raw line, for keyword selections.
    pub fn raw(&self) -> &'a str {
        self.event.raw_str()
    }

    /// Every value of a dotted field, appended to `out`. Nothing is appended when the field
    /// is absent.
    pub fn values<'s>(&'s self, field: &str, out: &mut Vec<FieldValue<'s>>) {
        match field {
            "outcome" => {
                out.push(FieldValue::Str(Cow::Borrowed(
                    self.event.entry().outcome().as_str(),
                )));
                return;
            }
            "origin.device" => {
                out.push(FieldValue::Str(Cow::Borrowed(&self.origin.device)));
                return;
            }
            "origin.node" => {
                out.push(FieldValue::Str(Cow::Borrowed(&self.origin.node)));
                return;
            }
            "origin.source" => {
                out.push(FieldValue::Str(Cow::Borrowed(self.origin.source.as_str())));
                return;
            }
            "findings.kind" => {
                for f in &self.origin.findings {
                    out.push(FieldValue::Str(Cow::Borrowed(f.kind.as_str())));
                }
                return;
            }
            "findings.severity" => {
                for f in &self.origin.findings {
                    out.push(FieldValue::Str(Cow::Borrowed(f.severity.as_str())));
                }
                return;
            }
            "findings.field" => {
                for f in &self.origin.findings {
                    out.push(FieldValue::Str(Cow::Borrowed(&f.field)));
                }
                return;
            }
            _ => {}
        }
        let parts: Vec<&str> = field.split('.').collect();
        walk(&self.json, &parts, out);
    }

    /// The first value of a field as text, or `None` when absent.
    pub fn first_text(&self, field: &str) -> Option<String> {
        let mut out = Vec::new();
        self.values(field, &mut out);
        out.first().map(|v| v.as_text().into_owned())
    }

    /// The key of a group: each field's first value, joined by `|`; an absent field is empty.
    pub fn group_key(&self, fields: &[String]) -> String {
        let mut key = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            if let Some(v) = self.first_text(f) {
                key.push_str(&v);
            }
        }
        key
    }
}

/// Walks `parts` down `value`. Arrays fan out. A key that itself contains dots (metadata
/// keys can) is found by trying the longest joined prefix of the remaining parts too.
fn walk<'v>(value: &'v Value, parts: &[&str], out: &mut Vec<FieldValue<'v>>) {
    if parts.is_empty() {
        push_leaf(value, out);
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, parts, out);
            }
        }
        Value::Object(map) => {
            if let Some(child) = map.get(parts[0]) {
                walk(child, &parts[1..], out);
            }
            // Rare: a key with dots in it. Only tried when more parts remain.
            for n in 2..=parts.len() {
                let joined = parts[..n].join(".");
                if let Some(child) = map.get(&joined) {
                    walk(child, &parts[n..], out);
                }
            }
        }
        _ => {}
    }
}

fn push_leaf<'v>(value: &'v Value, out: &mut Vec<FieldValue<'v>>) {
    match value {
        Value::String(s) => out.push(FieldValue::Str(Cow::Borrowed(s))),
        Value::Number(n) => out.push(FieldValue::Num(n.as_f64().unwrap_or(f64::NAN))),
        Value::Bool(b) => out.push(FieldValue::Bool(*b)),
        Value::Null => out.push(FieldValue::Null),
        Value::Array(items) => {
            for item in items {
                push_leaf(item, out);
            }
        }
        // An object as a leaf has no scalar value, but it exists: `exists` must see it.
        Value::Object(_) => out.push(FieldValue::Str(Cow::Borrowed(""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_event::{FindingKind, HmacFinding, Severity, SourceKind};

    fn ev(line: &str) -> AuditEvent {
        AuditEvent::parse(line.as_bytes()).expect("valid test line")
    }

    #[test]
    fn dotted_paths_lists_and_virtual_fields() {
        let e = ev(
            r#"{"time":"2026-01-01T00:00:00Z","type":"response","auth":{"policies":["default","root"],"metadata":{"username":"bob","a.b":"dotted"}},"request":{"path":"x","remote_port":5},"error":"permission denied"}"#,
        );
        let mut origin = Origin::new("n1", "main", SourceKind::File);
        origin.findings.push(HmacFinding {
            field: "request.client_token".into(),
            pointer: "/request/client_token".into(),
            kind: FindingKind::PlaintextToken,
            severity: Severity::Critical,
            span: None,
        });
        let view = EventView::new(&e, &origin);
        let texts = |f: &str| {
            let mut out = Vec::new();
            view.values(f, &mut out);
            out.iter()
                .map(|v| v.as_text().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts("auth.policies"), ["default", "root"]);
        assert_eq!(texts("auth.metadata.username"), ["bob"]);
        assert_eq!(texts("auth.metadata.a.b"), ["dotted"]);
        assert_eq!(texts("request.remote_port"), ["5"]);
        assert_eq!(texts("outcome"), ["denied"]);
        assert_eq!(texts("origin.device"), ["main"]);
        assert_eq!(texts("findings.severity"), ["critical"]);
        assert_eq!(texts("findings.kind"), ["plaintext_token"]);
        assert!(texts("request.nope").is_empty());
        assert_eq!(
            view.group_key(&["auth.metadata.username".into(), "missing".into()]),
            "bob|"
        );
    }
}
