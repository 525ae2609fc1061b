//! Value modifiers: how one `field|mod|mod: value` entry of a detection becomes a matcher.
//!
//! Owns the Sigma value semantics: plain strings compare case-insensitively with `*` and
//! `?` wildcards (`\` escapes them), `contains`/`startswith`/`endswith` move the wildcards,
//! `re` is a case-sensitive regular expression (flags `i`, `m`, `s` as further modifiers),
//! `cidr` matches IP addresses, `all` turns a list's OR into AND, `exists` tests presence,
//! `expand` fills `%name%` placeholders from watch lists, `lt`/`lte`/`gt`/`gte` compare
//! numbers, `cased` makes a comparison case-sensitive.

use std::net::IpAddr;

use regex::Regex;
use serde_yaml_ng::Value as Yaml;

use crate::error::Problem;
use crate::fields::{EventView, FieldValue};
use crate::watchlist::WatchLists;

/// What a matcher needs besides the event: the watch lists, for `expand`.
#[derive(Debug, Clone, Copy)]
pub struct MatchCtx<'a> {
    /// Watch lists for `%name%` placeholders.
    pub lists: &'a WatchLists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// An IP network for `cidr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: u128,
    prefix: u8,
    v4: bool,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let ip: IpAddr = addr.trim().parse().ok()?;
        let (bits, v4, max) = ip_bits(ip);
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr {
            net: bits & mask(prefix, max),
            prefix,
            v4,
        })
    }

    fn contains(&self, candidate: &str) -> bool {
        let Ok(ip) = candidate.trim().parse::<IpAddr>() else {
            return false;
        };
        let (bits, v4, max) = ip_bits(ip);
        v4 == self.v4 && bits & mask(self.prefix, max) == self.net
    }
}

fn ip_bits(ip: IpAddr) -> (u128, bool, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            // A v4-mapped address is the v4 address: Vault may log either form.
            Some(v4) => (u128::from(u32::from(v4)), true, 32),
            None => (u128::from(a), false, 128),
        },
    }
}

fn mask(prefix: u8, max: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all: u128 = if max == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all & !((1u128 << (max - prefix)) - 1)
    }
}

/// One value to compare against.
#[derive(Debug, Clone)]
enum Pattern {
    /// Case-insensitive (lowercased needle) or, with `cased`, exact comparison.
    Text {
        op: TextOp,
        needle: String,
        cased: bool,
    },
    /// A value with wildcards, as an anchored regex.
    Glob(Regex),
    /// `re`.
    Re(Regex),
    /// `cidr`.
    Cidr(Cidr),
    /// `lt`, `lte`, `gt`, `gte`.
    Num(NumOp, f64),
    /// `expand` with a value that is exactly one placeholder: set membership.
    List { name: String, op: TextOp },
    /// `null`: the field is absent or null.
    Null,
}

impl Pattern {
    fn matches(&self, v: &FieldValue<'_>, ctx: &MatchCtx<'_>, device: &str) -> bool {
        match self {
            Pattern::Null => matches!(v, FieldValue::Null),
            Pattern::Num(op, n) => {
                let x = match v {
                    FieldValue::Num(x) => *x,
                    FieldValue::Str(s) => match s.trim().parse::<f64>() {
                        Ok(x) => x,
                        Err(_) => return false,
                    },
                    _ => return false,
                };
                match op {
                    NumOp::Lt => x < *n,
                    NumOp::Lte => x <= *n,
                    NumOp::Gt => x > *n,
                    NumOp::Gte => x >= *n,
                }
            }
            _ => {
                if matches!(v, FieldValue::Null) {
                    return false;
                }
                let text = v.as_text();
                match self {
                    Pattern::Text { op, needle, cased } => {
                        if *cased {
                            text_op(*op, &text, needle)
                        } else {
                            text_op(*op, &fold(&text), needle)
                        }
                    }
                    Pattern::Glob(re) | Pattern::Re(re) => re.is_match(&text),
                    Pattern::Cidr(c) => c.contains(&text),
                    Pattern::List { name, op } => {
                        let Some(list) = ctx.lists.get(name) else {
                            return false;
                        };
                        if *op == TextOp::Equals {
                            list.contains(device, &text)
                        } else {
                            let text = fold(&text);
                            list.entries(device)
                                .any(|e| text_op(*op, &text, &e.to_lowercase()))
                        }
                    }
                    Pattern::Null | Pattern::Num(..) => false,
                }
            }
        }
    }
}

/// Lowercases only when needed: most audit values are already lowercase ASCII.
fn fold(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn text_op(op: TextOp, hay: &str, needle: &str) -> bool {
    match op {
        TextOp::Equals => hay == needle,
        TextOp::Contains => hay.contains(needle),
        TextOp::StartsWith => hay.starts_with(needle),
        TextOp::EndsWith => hay.ends_with(needle),
    }
}

/// What a field matcher tests.
#[derive(Debug, Clone)]
enum Test {
    Exists(bool),
    Values { patterns: Vec<Pattern>, all: bool },
}

/// One `field|modifiers: value(s)` entry of a selection.
#[derive(Debug, Clone)]
pub struct FieldMatcher {
    field: String,
    test: Test,
}

impl FieldMatcher {
    /// Compiles the entry `key: value` (`key` is `field|mod|…`).
    pub(crate) fn compile(key: &str, value: &Yaml) -> Result<FieldMatcher, Problem> {
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or_default().trim().to_owned();
        if field.is_empty() {
            return Err(Problem::new(format!(
                "detection key {key:?} has no field name"
            )));
        }
        let mut op = TextOp::Equals;
        let mut re = false;
        let mut re_flags = String::new();
        let mut cidr = false;
        let mut all = false;
        let mut exists = false;
        let mut expand = false;
        let mut cased = false;
        let mut num = None;
        for m in parts {
            match m.trim() {
                "contains" => op = TextOp::Contains,
                "startswith" => op = TextOp::StartsWith,
                "endswith" => op = TextOp::EndsWith,
                "re" => re = true,
                "i" | "m" | "s" if re => re_flags.push_str(m.trim()),
                "cidr" => cidr = true,
                "all" => all = true,
                "exists" => exists = true,
                "expand" => expand = true,
                "cased" => cased = true,
                "lt" => num = Some(NumOp::Lt),
                "lte" => num = Some(NumOp::Lte),
                "gt" => num = Some(NumOp::Gt),
                "gte" => num = Some(NumOp::Gte),
                other => {
                    return Err(Problem::new(format!(
                        "unknown or unsupported modifier {other:?} on field {field:?}"
                    )))
                }
            }
        }
        if exists {
            return match value {
                Yaml::Bool(b) => Ok(FieldMatcher {
                    field,
                    test: Test::Exists(*b),
                }),
                _ => Err(Problem::new(format!(
                    "field {field:?}: `exists` takes true or false"
                ))),
            };
        }
        let values: Vec<&Yaml> = match value {
            Yaml::Sequence(items) => items.iter().collect(),
            Yaml::Mapping(_) => {
                return Err(Problem::new(format!(
                    "field {field:?}: a value cannot be a map"
                )))
            }
            other => vec![other],
        };
        if values.is_empty() {
            return Err(Problem::new(format!(
                "field {field:?}: empty list of values"
            )));
        }
        let mut patterns = Vec::with_capacity(values.len());
        for v in values {
            let text = match v {
                Yaml::Null => {
                    patterns.push(Pattern::Null);
                    continue;
                }
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                Yaml::Bool(b) => b.to_string(),
                _ => {
                    return Err(Problem::new(format!(
                        "field {field:?}: values must be strings, numbers, booleans or null"
                    )))
                }
            };
            let pattern = if let Some(nop) = num {
                let n: f64 = text.parse().map_err(|_| {
                    Problem::new(format!("field {field:?}: {text:?} is not a number"))
                })?;
                Pattern::Num(nop, n)
            } else if re {
                let flags = if re_flags.is_empty() {
                    String::new()
                } else {
                    format!("(?{re_flags})")
                };
                Pattern::Re(Regex::new(&format!("{flags}{text}")).map_err(|e| {
                    Problem::new(format!("field {field:?}: bad regular expression: {e}"))
                })?)
            } else if cidr {
                Pattern::Cidr(Cidr::parse(&text).ok_or_else(|| {
                    Problem::new(format!("field {field:?}: {text:?} is not a CIDR network"))
                })?)
            } else if expand {
                expand_pattern(&field, &text, op)?
            } else {
                text_pattern(&text, op, cased)?
            };
            patterns.push(pattern);
        }
        Ok(FieldMatcher {
            field,
            test: Test::Values { patterns, all },
        })
    }

    /// The field this matcher reads.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Whether the event matches.
    pub fn matches(&self, view: &EventView<'_>, ctx: &MatchCtx<'_>) -> bool {
        let mut values = Vec::new();
        view.values(&self.field, &mut values);
        match &self.test {
            Test::Exists(want) => values.is_empty() != *want,
            Test::Values { patterns, all } => {
                let device = view.origin().device.as_str();
                let one = |p: &Pattern| {
                    if matches!(p, Pattern::Null) && values.is_empty() {
                        return true;
                    }
                    values.iter().any(|v| p.matches(v, ctx, device))
                };
                if *all {
                    patterns.iter().all(one)
                } else {
                    patterns.iter().any(one)
                }
            }
        }
    }
}

/// A keyword selection: a plain value searched for anywhere in the raw line.
#[derive(Debug, Clone)]
pub struct Keyword(Pattern);

impl Keyword {
    /// Compiles a keyword (a contains match, case-insensitive, wildcards allowed).
    pub(crate) fn compile(value: &Yaml) -> Result<Keyword, Problem> {
        let text = match value {
            Yaml::String(s) => s.clone(),
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            _ => return Err(Problem::new("keywords must be strings")),
        };
        Ok(Keyword(text_pattern(&text, TextOp::Contains, false)?))
    }

    /// Whether the raw line contains the keyword.
    pub fn matches(&self, view: &EventView<'_>, ctx: &MatchCtx<'_>) -> bool {
        let raw = FieldValue::Str(std::borrow::Cow::Borrowed(view.raw()));
        self.0.matches(&raw, ctx, &view.origin().device)
    }
}

/// `%name%` as the whole value becomes a set lookup; anything else around it is refused,
/// because a watch list of HMACs has no use inside a longer string.
fn expand_pattern(field: &str, text: &str, op: TextOp) -> Result<Pattern, Problem> {
    let inner = text
        .strip_prefix('%')
        .and_then(|t| t.strip_suffix('%'))
        .filter(|n| !n.is_empty() && !n.contains('%'));
    match inner {
        Some(name) => Ok(Pattern::List {
            name: name.to_owned(),
            op,
        }),
        None => Err(Problem::new(format!(
            "field {field:?}: `expand` needs a value that is one placeholder like %honeytokens%, got {text:?}"
        ))),
    }
}

/// A plain Sigma string: wildcards `*` and `?`, `\` escaping them and itself.
fn text_pattern(text: &str, op: TextOp, cased: bool) -> Result<Pattern, Problem> {
    let mut literal = String::new();
    let mut regex = String::new();
    let mut has_wildcard = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                let next = chars.next().unwrap_or('\\');
                literal.push(next);
                regex.push_str(&regex::escape(&next.to_string()));
            }
            '*' => {
                has_wildcard = true;
                regex.push_str(".*");
            }
            '?' => {
                has_wildcard = true;
                regex.push('.');
            }
            c => {
                literal.push(c);
                regex.push_str(&regex::escape(&c.to_string()));
            }
        }
    }
    if !has_wildcard {
        let needle = if cased {
            literal
        } else {
            literal.to_lowercase()
        };
        return Ok(Pattern::Text { op, needle, cased });
    }
    let (pre, post) = match op {
        TextOp::Equals => ("", ""),
        TextOp::Contains => (".*", ".*"),
        TextOp::StartsWith => ("", ".*"),
        TextOp::EndsWith => (".*", ""),
    };
    let flags = if cased { "(?s)" } else { "(?is)" };
    Regex::new(&format!("{flags}^{pre}{regex}{post}$"))
        .map(Pattern::Glob)
        .map_err(|e| Problem::new(format!("value {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_event::{AuditEvent, Origin, SourceKind};

    const LINE: &str = r#"{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"client_token":"hmac-sha256:aa","policies":["default","Root"]},"request":{"path":"auth/userpass/login/Dave","operation":"update","remote_address":"203.0.113.66","remote_port":50772}}"#;

    fn check(key: &str, value: &str) -> bool {
        check_with(key, value, &WatchLists::new())
    }

    fn check_with(key: &str, value: &str, lists: &WatchLists) -> bool {
        let event = AuditEvent::parse(LINE.as_bytes()).expect("valid line");
        let origin = Origin::new("n", "main", SourceKind::File);
        let view = EventView::new(&event, &origin);
        let yaml: Yaml = serde_yaml_ng::from_str(value).expect("valid yaml");
        let m = FieldMatcher::compile(key, &yaml).expect("compiles");
        m.matches(&view, &MatchCtx { lists })
    }

    #[test]
    fn plain_values_are_case_insensitive_with_wildcards() {
        assert!(check("request.path", "auth/USERPASS/login/dave"));
        assert!(check("request.path", "auth/*/login/*"));
        assert!(check("request.path", "auth/?serpass/*"));
        assert!(!check("request.path", "auth/*/logout/*"));
        assert!(check("auth.policies", "root"));
        assert!(!check("auth.policies|cased", "root"));
        assert!(check("request.operation", "[read, update]"));
        assert!(check("request.remote_port", "50772"));
        assert!(!check("request.path", "auth\\*"));
    }

    #[test]
    fn modifiers() {
        assert!(check("request.path|startswith", "auth/"));
        assert!(check("request.path|endswith", "/DAVE"));
        assert!(check("request.path|contains", "LOGIN"));
        assert!(check("request.path|contains|all", "[login, userpass]"));
        assert!(!check("request.path|contains|all", "[login, token]"));
        assert!(check("request.path|re", "^auth/[a-z]+/login/D"));
        assert!(!check("request.path|re", "^auth/[a-z]+/login/d"));
        assert!(check("request.path|re|i", "^auth/[a-z]+/login/d"));
        assert!(check("request.remote_address|cidr", "203.0.113.0/24"));
        assert!(!check("request.remote_address|cidr", "10.0.0.0/8"));
        assert!(check(
            "request.remote_address|cidr",
            "[10.0.0.0/8, 203.0.0.0/8]"
        ));
        assert!(check("request.remote_port|gte", "50000"));
        assert!(!check("request.remote_port|lt", "50000"));
        assert!(check("request.client_token|exists", "false"));
        assert!(check("auth.client_token|exists", "true"));
        assert!(check("request.data", "null"));
        assert!(!check("request.path", "null"));
    }

    #[test]
    fn expand_reads_watch_lists_per_device() {
        let mut lists = WatchLists::new();
        assert!(!check_with(
            "auth.client_token|expand",
            "'%honeytokens%'",
            &lists
        ));
        lists.insert("honeytokens", Some("other"), "hmac-sha256:aa");
        assert!(!check_with(
            "auth.client_token|expand",
            "'%honeytokens%'",
            &lists
        ));
        lists.insert("honeytokens", Some("main"), "hmac-sha256:aa");
        assert!(check_with(
            "auth.client_token|expand",
            "'%honeytokens%'",
            &lists
        ));
    }

    #[test]
    fn bad_entries_are_refused() {
        let compile = |k: &str, v: &str| {
            let yaml: Yaml = serde_yaml_ng::from_str(v).expect("yaml");
            FieldMatcher::compile(k, &yaml).map(|_| ())
        };
        assert!(compile("a|nope", "x").is_err());
        assert!(compile("a|re", "'('").is_err());
        assert!(compile("a|cidr", "10.0.0.0/33").is_err());
        assert!(compile("a|exists", "yes please").is_err());
        assert!(compile("a|expand", "x%list%").is_err());
        assert!(compile("a|gt", "many").is_err());
        assert!(compile("a", "{b: c}").is_err());
        assert!(compile("|contains", "x").is_err());
    }

    #[test]
    fn cidr_v6_and_mapped() {
        let c = Cidr::parse("2001:db8::/32").expect("v6 net");
        assert!(c.contains("2001:db8::1"));
        assert!(!c.contains("2001:db9::1"));
        let c4 = Cidr::parse("10.0.0.0/8").expect("v4 net");
        assert!(c4.contains("::ffff:10.1.2.3"));
        assert!(Cidr::parse("0.0.0.0/0").expect("all").contains("1.2.3.4"));
    }
}
