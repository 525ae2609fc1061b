//! Framing around the JSON of an audit entry: the syslog header Vault's syslog device adds
//! (RFC 3164 as `/dev/log` receives it, and RFC 5424), and the file device's `prefix` option.

use serde::{Deserialize, Serialize};

/// Why a frame could not be taken apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A syslog line must start with `<PRI>`.
    #[error("syslog header: missing `<PRI>`")]
    MissingPriority,
    /// PRI is not a number from 0 to 191.
    #[error("syslog header: invalid PRI")]
    InvalidPriority,
    /// The header ends before the message starts.
    #[error("syslog header: truncated {0}")]
    Truncated(&'static str),
    /// The line does not start with the device's configured prefix.
    #[error("line does not start with the configured prefix")]
    PrefixMismatch,
}

/// The parts of a syslog header that stay with the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyslogMeta {
    /// Facility number (4 = auth, 10 = authpriv, 16..23 = local0..7).
    pub facility: u8,
    /// Severity number (0 = emergency … 7 = debug).
    pub severity: u8,
    /// The header's timestamp as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Host name, when the header carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Tag (RFC 3164) or APP-NAME (RFC 5424).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
}

/// Splits a syslog line into its header and its message (RFC 5424 when the version `1`
/// follows PRI, RFC 3164 otherwise).
pub fn parse_syslog(line: &[u8]) -> Result<(SyslogMeta, &[u8]), FramingError> {
    let rest = line
        .strip_prefix(b"<")
        .ok_or(FramingError::MissingPriority)?;
    let close = rest
        .iter()
        .take(4)
        .position(|&b| b == b'>')
        .ok_or(FramingError::InvalidPriority)?;
    let pri: u8 = std::str::from_utf8(&rest[..close])
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .filter(|&p| p <= 191)
        .ok_or(FramingError::InvalidPriority)?;
    let rest = &rest[close + 1..];
    let mut meta = SyslogMeta {
        facility: pri / 8,
        severity: pri % 8,
        ..SyslogMeta::default()
    };
    let msg = if let Some(after) = rest.strip_prefix(b"1 ") {
        parse_5424(after, &mut meta)?
    } else {
        parse_3164(rest, &mut meta)
    };
    Ok((meta, msg))
}

fn field(s: &[u8]) -> Option<String> {
    (s != b"-" && !s.is_empty()).then(|| String::from_utf8_lossy(s).into_owned())
}

fn split_token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = s.iter().position(|&b| b == b' ')?;
    Some((&s[..sp], &s[sp + 1..]))
}

fn parse_5424<'a>(s: &'a [u8], meta: &mut SyslogMeta) -> Result<&'a [u8], FramingError> {
    let (ts, s) = split_token(s).ok_or(FramingError::Truncated("timestamp"))?;
    let (host, s) = split_token(s).ok_or(FramingError::Truncated("hostname"))?;
    let (app, s) = split_token(s).ok_or(FramingError::Truncated("app-name"))?;
    let (pid, s) = split_token(s).ok_or(FramingError::Truncated("procid"))?;
    let (_msgid, s) = split_token(s).ok_or(FramingError::Truncated("msgid"))?;
    meta.timestamp = field(ts);
    meta.host = field(host);
    meta.tag = field(app);
    meta.pid = field(pid);
    let msg = skip_structured_data(s)?;
    // RFC 5424 allows a UTF-8 byte order mark before the message.
    Ok(msg.strip_prefix("\u{feff}".as_bytes()).unwrap_or(msg))
}

/// Skips `-` or one or more `[id k="v" …]` elements, honouring `\]` and `\"` escapes.
fn skip_structured_data(s: &[u8]) -> Result<&[u8], FramingError> {
    if let Some(rest) = s.strip_prefix(b"-") {
        return Ok(rest.strip_prefix(b" ").unwrap_or(rest));
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut in_quotes = false;
        i += 1;
        loop {
            match s.get(i) {
                None => return Err(FramingError::Truncated("structured data")),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    i += 1
                }
                Some(b']') if !in_quotes => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    let rest = s.get(i..).unwrap_or_default();
    Ok(rest.strip_prefix(b" ").unwrap_or(rest))
}

fn parse_3164<'a>(s: &'a [u8], meta: &mut SyslogMeta) -> &'a [u8] {
    // "Mmm dd hh:mm:ss " is 16 bytes; a header without a timestamp is tolerated.
    let s = if s.len() >= 16 && s[3] == b' ' && s[6] == b' ' && s[9] == b':' && s[15] == b' ' {
        meta.timestamp = field(&s[..15]);
        &s[16..]
    } else {
        s
    };
    // What follows is `[HOST ]TAG[PID]: MSG`; the message of an audit entry starts with `{`.
    let Some(colon) = find_tag_end(s) else {
        return s;
    };
    let header = &s[..colon];
    let msg = &s[colon + 1..];
    let msg = msg.strip_prefix(b" ").unwrap_or(msg);
    let (host, tag) = match header.iter().rposition(|&b| b == b' ') {
        Some(sp) => (Some(&header[..sp]), &header[sp + 1..]),
        None => (None, header),
    };
    meta.host = host.and_then(field);
    match tag.iter().position(|&b| b == b'[') {
        Some(open) if tag.ends_with(b"]") => {
            meta.tag = field(&tag[..open]);
            meta.pid = field(&tag[open + 1..tag.len() - 1]);
        }
        _ => meta.tag = field(tag),
    }
    msg
}

/// The `:` that ends the tag: the first one before any `{`, in a run without spaces beyond
/// one (host and tag).
fn find_tag_end(s: &[u8]) -> Option<usize> {
    let brace = s.iter().position(|&b| b == b'{').unwrap_or(s.len());
    let colon = s[..brace].iter().position(|&b| b == b':')?;
    let spaces = s[..colon].iter().filter(|&&b| b == b' ').count();
    (spaces <= 1).then_some(colon)
}

/// Removes a file audit device's `prefix` from a line.
pub fn strip_prefix<'a>(line: &'a [u8], prefix: &str) -> Result<&'a [u8], FramingError> {
    line.strip_prefix(prefix.as_bytes())
        .ok_or(FramingError::PrefixMismatch)
}

/// Why a line as read from a device is not an audit entry: its framing, or its JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The syslog header or the file prefix is wrong.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The entry itself does not parse.
    #[error(transparent)]
    Parse(#[from] crate::parse::ParseError),
}

/// Parses a line as it comes from any device: a syslog header is removed (and returned), then
/// the file device's `prefix` when one is configured, then the entry is parsed.
pub fn parse_line(
    line: &[u8],
    prefix: Option<&str>,
    limits: crate::parse::ParseLimits,
) -> Result<(Option<SyslogMeta>, crate::parse::AuditEvent), LineError> {
    let (syslog, json) = unframe(line)?;
    let json = match prefix {
        Some(p) => strip_prefix(json, p)?,
        None => json,
    };
    Ok((syslog, crate::parse::AuditEvent::parse_with(json, limits)?))
}

/// Takes a line as it comes from any device: a syslog header is removed when the line starts
/// with `<`, anything else is returned as is.
pub fn unframe(line: &[u8]) -> Result<(Option<SyslogMeta>, &[u8]), FramingError> {
    if line.first() == Some(&b'<') {
        let (meta, msg) = parse_syslog(line)?;
        Ok((Some(meta), msg))
    } else {
        Ok((None, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_as_dev_log_receives_it() {
        let (meta, msg) = parse_syslog(b"<38>Nov 22 16:33:32 vault[9226]: {\"a\":1}").unwrap();
        assert_eq!((meta.facility, meta.severity), (4, 6));
        assert_eq!(meta.timestamp.as_deref(), Some("Nov 22 16:33:32"));
        assert_eq!(meta.host, None);
        assert_eq!(meta.tag.as_deref(), Some("vault"));
        assert_eq!(meta.pid.as_deref(), Some("9226"));
        assert_eq!(msg, b"{\"a\":1}");
    }

    #[test]
    fn rfc3164_with_host_and_no_pid() {
        let (meta, msg) =
            parse_syslog(b"<86>Nov  2 06:03:02 node-1 bao: {\"a\":\"x: y\"}").unwrap();
        assert_eq!((meta.facility, meta.severity), (10, 6));
        assert_eq!(meta.host.as_deref(), Some("node-1"));
        assert_eq!(meta.tag.as_deref(), Some("bao"));
        assert_eq!(meta.pid, None);
        assert_eq!(msg, b"{\"a\":\"x: y\"}");
    }

    #[test]
    fn rfc5424_with_structured_data_and_bom() {
        let line = "<38>1 2026-11-22T16:33:32.1Z node-1 vault 9226 - [x@1 k=\"a\\]b\"][y@2] \u{feff}{\"a\":1}";
        let (meta, msg) = parse_syslog(line.as_bytes()).unwrap();
        assert_eq!(meta.host.as_deref(), Some("node-1"));
        assert_eq!(meta.tag.as_deref(), Some("vault"));
        assert_eq!(meta.pid.as_deref(), Some("9226"));
        assert_eq!(meta.timestamp.as_deref(), Some("2026-11-22T16:33:32.1Z"));
        assert_eq!(msg, b"{\"a\":1}");
        let (_, msg) = parse_syslog(b"<38>1 - - - - - - {}").unwrap();
        assert_eq!(msg, b"{}");
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(parse_syslog(b"{}"), Err(FramingError::MissingPriority));
        assert_eq!(parse_syslog(b"<abc>x"), Err(FramingError::InvalidPriority));
        assert_eq!(parse_syslog(b"<999>x"), Err(FramingError::InvalidPriority));
        assert_eq!(parse_syslog(b"<38"), Err(FramingError::InvalidPriority));
        assert!(matches!(
            parse_syslog(b"<38>1 2026"),
            Err(FramingError::Truncated(_))
        ));
        assert!(matches!(
            parse_syslog(b"<38>1 t h a p m [x"),
            Err(FramingError::Truncated(_))
        ));
    }

    #[test]
    fn parse_line_unframes_strips_and_parses() {
        let limits = crate::parse::ParseLimits::default();
        let entry = r#"{"time":"2026-11-22T16:33:32Z","type":"request"}"#;
        let line = format!("<38>Nov 22 16:33:32 vault[1]: p:{entry}");
        let (meta, ev) = parse_line(line.as_bytes(), Some("p:"), limits).unwrap();
        assert_eq!(meta.unwrap().pid.as_deref(), Some("1"));
        assert_eq!(ev.raw_str(), entry);
        assert!(matches!(
            parse_line(entry.as_bytes(), Some("p:"), limits),
            Err(LineError::Framing(FramingError::PrefixMismatch))
        ));
        assert!(matches!(
            parse_line(b"{", None, limits),
            Err(LineError::Parse(_))
        ));
    }

    #[test]
    fn prefix_and_unframe() {
        assert_eq!(strip_prefix(b"vault: {}", "vault: "), Ok(&b"{}"[..]));
        assert_eq!(
            strip_prefix(b"{}", "vault: "),
            Err(FramingError::PrefixMismatch)
        );
        assert_eq!(unframe(b"{}").unwrap(), (None, &b"{}"[..]));
        assert!(unframe(b"<13>Nov 22 16:33:32 t: {}").unwrap().0.is_some());
    }
}
