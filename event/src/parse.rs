//! Turning one line of bytes into an [`AuditEvent`], with typed errors for every way a line
//! can be bad.

use chrono::{DateTime, Utc};
use serde_json::error::Category;

use crate::model::AuditEntry;

/// Lines larger than this are refused unless the caller sets another limit.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

/// Why a line is not an audit entry. Each variant says where it went wrong; none holds the
/// line's content, so an error can be logged without leaking a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty or only white space.
    #[error("empty line")]
    Empty,
    /// The line is longer than the configured limit.
    #[error("line of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Length of the line.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The line is not valid UTF-8.
    #[error("invalid UTF-8 at byte {valid_up_to}")]
    InvalidUtf8 {
        /// Bytes before the first invalid sequence.
        valid_up_to: usize,
    },
    /// The line ends before the JSON value does.
    #[error("truncated JSON: input ends at column {column}")]
    Truncated {
        /// Column (1-based, in bytes) where input ended.
        column: usize,
    },
    /// The line is not JSON.
    #[error("not JSON at column {column}: {reason}")]
    NotJson {
        /// Column (1-based, in bytes) of the syntax error.
        column: usize,
        /// What the JSON parser expected.
        reason: String,
    },
    /// The line is JSON but not an object.
    #[error("JSON value is not an object")]
    NotObject,
    /// A field has the wrong type or is missing.
    #[error("invalid audit entry: {reason}")]
    InvalidEntry {
        /// What serde reported (names the field, never its value).
        reason: String,
    },
    /// `time` is not an RFC 3339 timestamp.
    #[error("field `time` is not an RFC 3339 timestamp")]
    InvalidTime,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Maximum line length in bytes, newline excluded.
    pub max_line_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// A parsed audit entry together with the exact bytes it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    // Kept as a String: `parse_with` has checked it is UTF-8.
    raw: String,
    entry: AuditEntry,
    time: DateTime<Utc>,
}

impl AuditEvent {
    /// Parses one line (without its trailing newline; a trailing `\r\n` or `\n` is trimmed).
    pub fn parse(line: &[u8]) -> Result<AuditEvent, ParseError> {
        Self::parse_with(line, ParseLimits::default())
    }

    /// Parses one line under the given limits.
    pub fn parse_with(line: &[u8], limits: ParseLimits) -> Result<AuditEvent, ParseError> {
        let line = trim_line_end(line);
        if line.len() > limits.max_line_bytes {
            return Err(ParseError::TooLarge {
                len: line.len(),
                limit: limits.max_line_bytes,
            });
        }
        let text = std::str::from_utf8(line).map_err(|e| ParseError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Err(ParseError::Empty);
        }
        if !trimmed.starts_with('{') {
            // Distinguish "valid JSON, wrong kind" from "not JSON" for a clearer error.
            return Err(match serde_json::from_str::<serde_json::Value>(text) {
                Ok(_) => ParseError::NotObject,
                Err(e) => json_error(e),
            });
        }
        let entry: AuditEntry = serde_json::from_str(text).map_err(json_error)?;
        let time = DateTime::parse_from_rfc3339(&entry.time)
            .map_err(|_| ParseError::InvalidTime)?
            .with_timezone(&Utc);
        Ok(AuditEvent {
            raw: text.to_owned(),
            entry,
            time,
        })
    }

    /// Builds an event from an entry, serializing it to get its raw bytes.
    pub fn from_entry(entry: AuditEntry) -> Result<AuditEvent, ParseError> {
        let raw = serde_json::to_vec(&entry).map_err(|e| ParseError::InvalidEntry {
            reason: e.to_string(),
        })?;
        Self::parse(&raw)
    }

    /// The exact bytes of the line, without its newline.
    pub fn raw(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    /// The raw line as text.
    pub fn raw_str(&self) -> &str {
        &self.raw
    }

    /// The typed entry.
    pub fn entry(&self) -> &AuditEntry {
        &self.entry
    }

    /// The entry's time.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// Consumes the event, returning its raw bytes.
    pub fn into_raw(self) -> String {
        self.raw
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn json_error(e: serde_json::Error) -> ParseError {
    match e.classify() {
        Category::Eof => ParseError::Truncated { column: e.column() },
        Category::Syntax | Category::Io => ParseError::NotJson {
            column: e.column(),
            reason: syntax_reason(&e),
        },
        Category::Data => {
            if e.to_string().contains("expected struct AuditEntry") {
                ParseError::NotObject
            } else {
                ParseError::InvalidEntry {
                    reason: data_reason(&e),
                }
            }
        }
    }
}

/// serde_json's syntax messages name the token kind, never the content.
fn syntax_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    msg.split(" at line ").next().unwrap_or(&msg).to_string()
}

/// serde_json's data errors can quote the offending value (`invalid type: string "s.abc"`),
/// which may be a secret: keep the message up to the quoted value.
fn data_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    match msg.find('"') {
        Some(i) if msg.starts_with("invalid type") || msg.starts_with("invalid value") => {
            format!("{}…", &msg[..i])
        }
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"time":"2026-11-22T16:33:32.476393665Z","type":"request","auth":{"token_type":"default"},"request":{"id":"2ab67327","operation":"update","namespace":{"id":"root"},"path":"sys/audit/test"}}"#;

    #[test]
    fn parses_a_request_line() {
        let ev = AuditEvent::parse(format!("{LINE}\n").as_bytes()).expect("parses");
        assert_eq!(ev.entry().request_id(), Some("2ab67327"));
        assert_eq!(ev.entry().path(), Some("sys/audit/test"));
        assert_eq!(ev.raw(), LINE.as_bytes());
        assert_eq!(ev.time().timestamp_subsec_nanos(), 476_393_665);
    }

    #[test]
    fn bad_lines_get_typed_errors() {
        type Check = fn(&ParseError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (b"", |e| matches!(e, ParseError::Empty)),
            (b"   ", |e| matches!(e, ParseError::Empty)),
            (b"hello", |e| matches!(e, ParseError::NotJson { .. })),
            (b"[1,2]", |e| matches!(e, ParseError::NotObject)),
            (b"\"x\"", |e| matches!(e, ParseError::NotObject)),
            (br#"{"time":"2026-11-22T16"#, |e| {
                matches!(e, ParseError::Truncated { .. })
            }),
            (b"{\"time\":\"\xff\"}", |e| {
                matches!(e, ParseError::InvalidUtf8 { valid_up_to: 9 })
            }),
            (br#"{"type":"request"}"#, |e| {
                matches!(e, ParseError::InvalidEntry { .. })
            }),
            (br#"{"time":"yesterday","type":"request"}"#, |e| {
                matches!(e, ParseError::InvalidTime)
            }),
        ];
        for (input, check) in cases {
            let err = AuditEvent::parse(input).expect_err("must fail");
            assert!(
                check(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn size_limit_is_enforced() {
        let limits = ParseLimits { max_line_bytes: 10 };
        let err = AuditEvent::parse_with(LINE.as_bytes(), limits).expect_err("too large");
        assert_eq!(
            err,
            ParseError::TooLarge {
                len: LINE.len(),
                limit: 10
            }
        );
    }

    #[test]
    fn type_errors_do_not_quote_values() {
        let err = AuditEvent::parse(
            br#"{"time":"2026-11-22T16:33:32Z","type":"request","auth":{"client_token":["s.SECRETSECRETSECRETSECRET12"]}}"#,
        )
        .expect_err("wrong type");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = AuditEvent::parse(
            br#"{"time":"2026-11-22T16:33:32Z","type":"request","auth":{"policies":"s.SECRETSECRETSECRETSECRET12"}}"#,
        )
        .expect_err("wrong type");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
