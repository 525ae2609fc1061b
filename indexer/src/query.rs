//! From the user's query text to a Tantivy [`Query`].
//!
//! The language is Tantivy's (`field:value`, `AND`/`OR`/`NOT`, `+`/`-`, quotes, ranges,
//! `IN [...]`, `field:*`, `/regex/`), over the dotted field names of [`crate::schema::FIELDS`].
//! Three things are added on top, each by rewriting before or after Tantivy's grammar runs:
//!
//! 1. Colons inside a value need no quoting. Tantivy reads a second `:` as the start of
//!    another field, so `auth.client_token:hmac-sha256:ab…` would not parse; before parsing,
//!    colons after a known field's `name:` (and in a bare word starting `hmac-sha256:`) are
//!    escaped. Quoted values are left alone and work either way.
//! 2. `request.remote_address:10.4.0.0/16` (CIDR) becomes the inclusive address range.
//! 3. `*` in an unquoted value of a field with an exact form (keywords, `request.path`,
//!    `error`) is a wildcard over the exact value, e.g. `request.path:secret/data/payments/*`
//!    matches every path under that prefix. `field:*` on a text field tests its exact form.
//!
//! Field names are checked against the catalogue first, so that a misspelt field is an
//! [`IndexError::UnknownField`] rather than a query that silently matches nothing.
//!
//! One request must not hurt the service (issue 12), and Tantivy's grammar, the rewrite here,
//! query building and scoring all recurse once per level of nesting: a few thousand `(`
//! overflow a thread's stack, which aborts the process. So before any of them runs,
//! [`check_shape`] measures the text with a flat loop and refuses what is nested deeper than
//! [`SearchLimits::max_query_depth`] or has more than [`SearchLimits::max_query_clauses`]
//! terms; regexes and wildcards are bounded after parsing (Tantivy's regex compiler bounds
//! its automaton by itself: 10 MB and 1000 DFA states).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tantivy::query::{AllQuery, Query, QueryParser, QueryParserError};
use tantivy::query_grammar::{self, Occur, UserInputAst, UserInputBound, UserInputLeaf};
use tantivy::Index;

use crate::config::SearchLimits;
use crate::error::{IndexError, QueryLimit, Result};
use crate::schema::{field_spec, FieldKind, DEFAULT_FIELDS};

/// Compiles query text against one index's schema and tokenizers.
#[derive(Clone)]
pub(crate) struct QueryCompiler {
    parser: QueryParser,
    shape: ShapeLimits,
}

/// The limits [`QueryCompiler::compile`] applies, from [`SearchLimits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShapeLimits {
    pub depth: usize,
    pub clauses: usize,
    pub regex_bytes: usize,
    pub wildcards: usize,
}

impl From<&SearchLimits> for ShapeLimits {
    fn from(l: &SearchLimits) -> ShapeLimits {
        ShapeLimits {
            depth: l.max_query_depth,
            clauses: l.max_query_clauses,
            regex_bytes: l.max_regex_bytes,
            wildcards: l.max_wildcards,
        }
    }
}

impl QueryCompiler {
    pub(crate) fn new(index: &Index, limits: &SearchLimits) -> Result<QueryCompiler> {
        let schema = index.schema();
        let defaults = DEFAULT_FIELDS
            .iter()
            .map(|name| {
                schema
                    .get_field(name)
                    .map_err(|_| IndexError::UnknownField((*name).to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut parser = QueryParser::for_index(index, defaults);
        // Investigators narrow down: `alice payments` means both words.
        parser.set_conjunction_by_default();
        // Wildcards are compiled to regexes (see the module doc), so regexes must be on;
        // users may also write `/…/` themselves.
        parser.allow_regexes();
        Ok(QueryCompiler {
            parser,
            shape: ShapeLimits::from(limits),
        })
    }

    /// Compiles `text`; empty text and `*` match every document.
    pub(crate) fn compile(&self, text: &str) -> Result<Box<dyn Query>> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(Box::new(AllQuery));
        }
        // First, before anything recursive sees the text.
        check_shape(text, self.shape.depth, self.shape.clauses)?;
        let escaped = escape_value_colons(text);
        let ast = query_grammar::parse_query(&escaped.text).map_err(|_| syntax_error(&escaped))?;
        let ast = rewrite(ast, &self.shape)?;
        self.parser
            .build_query_from_user_input_ast(ast)
            .map_err(parser_error)
    }
}

/// The query text after colon escaping, and where backslashes were inserted (offsets in
/// `text`), to report error positions in the user's own text.
struct Escaped {
    text: String,
    inserted: Vec<usize>,
}

impl Escaped {
    fn original_offset(&self, pos: usize) -> usize {
        pos - self.inserted.iter().filter(|&&i| i < pos).count()
    }
}

fn syntax_error(escaped: &Escaped) -> IndexError {
    let (_, errors) = query_grammar::parse_query_lenient(&escaped.text);
    match errors.first() {
        Some(e) => IndexError::invalid_query(format!(
            "syntax error at character {}: {}",
            escaped.original_offset(e.pos),
            e.message
        )),
        None => IndexError::invalid_query("syntax error"),
    }
}

fn parser_error(e: QueryParserError) -> IndexError {
    match e {
        QueryParserError::FieldDoesNotExist(name) => IndexError::UnknownField(name),
        other => IndexError::invalid_query(other.to_string()),
    }
}

/// Escapes the colons that belong to values (see the module doc, point 1). Quoted strings
/// and range brackets are copied untouched: colons are already literal there.
fn escape_value_colons(query: &str) -> Escaped {
    let mut out = Escaped {
        text: String::with_capacity(query.len() + 8),
        inserted: Vec::new(),
    };
    let mut token = String::new();
    let mut quote: Option<char> = None;
    let mut range_depth = 0usize;
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.text.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.text.push(next);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if range_depth > 0 {
            out.text.push(c);
            match c {
                '[' | '{' => range_depth += 1,
                ']' | '}' => range_depth -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                flush_token(&mut token, &mut out);
                quote = Some(c);
                out.text.push(c);
            }
            '[' | '{' => {
                flush_token(&mut token, &mut out);
                range_depth = 1;
                out.text.push(c);
            }
            '(' | ')' => {
                flush_token(&mut token, &mut out);
                out.text.push(c);
            }
            c if c.is_whitespace() => {
                flush_token(&mut token, &mut out);
                out.text.push(c);
            }
            '\\' => {
                token.push(c);
                if let Some(next) = chars.next() {
                    token.push(next);
                }
            }
            c => token.push(c),
        }
    }
    flush_token(&mut token, &mut out);
    out
}

fn flush_token(token: &mut String, out: &mut Escaped) {
    let unsigned = token.trim_start_matches(['+', '-', '!']);
    let sign_len = token.len() - unsigned.len();
    let colons = unescaped_colons(unsigned);
    // Which colons are literal: all after a known field's name; all of them when the word is
    // itself a value such as `hmac-sha256:…` or an IPv6 address; none otherwise (so that an
    // unknown field name still reaches the parser and is reported).
    let literal_from = match colons.first() {
        None => None,
        Some(&first) => {
            let name = &unsigned[..first];
            if field_spec(name).is_some() {
                Some(1)
            } else if name.eq_ignore_ascii_case("hmac-sha256")
                || (colons.len() >= 2
                    && name.len() <= 4
                    && name.chars().all(|c| c.is_ascii_hexdigit()))
            {
                Some(0)
            } else {
                None
            }
        }
    };
    match literal_from {
        Some(skip) if colons.len() > skip => {
            let mut last = 0;
            out.text.push_str(&token[..sign_len]);
            for &pos in &colons[skip..] {
                out.text.push_str(&unsigned[last..pos]);
                out.inserted.push(out.text.len());
                out.text.push('\\');
                last = pos;
            }
            out.text.push_str(&unsigned[last..]);
        }
        _ => out.text.push_str(token),
    }
    token.clear();
}

fn unescaped_colons(s: &str) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ':' => positions.push(i),
            _ => {}
        }
    }
    positions
}

fn rewrite(ast: UserInputAst, limits: &ShapeLimits) -> Result<UserInputAst> {
    Ok(match ast {
        UserInputAst::Clause(clauses) => {
            let mut clauses = clauses
                .into_iter()
                .map(|(occur, sub)| rewrite(sub, limits).map(|sub| (occur, sub)))
                .collect::<Result<Vec<_>>>()?;
            // A group of exclusions alone (`-type:request`, `x AND NOT (a OR b)` is fine, but
            // `(-a)` is not) matches nothing in Tantivy; users mean "everything except".
            if !clauses.is_empty() && clauses.iter().all(|(o, _)| *o == Some(Occur::MustNot)) {
                clauses.push((
                    Some(Occur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(inner, boost) => {
            UserInputAst::Boost(Box::new(rewrite(*inner, limits)?), boost)
        }
        UserInputAst::Leaf(leaf) => UserInputAst::Leaf(Box::new(rewrite_leaf(*leaf, limits)?)),
    })
}

fn rewrite_leaf(leaf: UserInputLeaf, limits: &ShapeLimits) -> Result<UserInputLeaf> {
    Ok(match leaf {
        UserInputLeaf::Literal(literal) => {
            let Some(name) = literal.field_name.as_deref() else {
                return Ok(UserInputLeaf::Literal(literal));
            };
            let spec = known(name)?;
            let unquoted = literal.delimiter == query_grammar::Delimiter::None;
            if let (FieldKind::Ip { .. }, true) = (spec.kind, literal.phrase.contains('/')) {
                let (lower, upper) = cidr_range(&literal.phrase)?;
                UserInputLeaf::Range {
                    field: Some(spec.name.to_string()),
                    lower: UserInputBound::Inclusive(lower.to_string()),
                    upper: UserInputBound::Inclusive(upper.to_string()),
                }
            } else if unquoted && literal.phrase.contains('*') {
                let stars = literal.phrase.matches('*').count();
                if stars > limits.wildcards {
                    return Err(too_complex(QueryLimit::Wildcards, stars, limits.wildcards));
                }
                match spec.exact_field() {
                    Some(exact) => UserInputLeaf::Regex {
                        field: Some(exact.to_string()),
                        pattern: wildcard_to_regex(&literal.phrase),
                    },
                    None => UserInputLeaf::Literal(literal),
                }
            } else {
                UserInputLeaf::Literal(literal)
            }
        }
        UserInputLeaf::Exists { field } => {
            let spec = known(&field)?;
            match spec.kind {
                // Only fast fields answer `exists`; text fields defer to their exact form,
                // and `raw` is on every document.
                FieldKind::Text { exact: Some(exact) } => UserInputLeaf::Exists {
                    field: exact.to_string(),
                },
                FieldKind::Text { exact: None } => UserInputLeaf::All,
                _ => UserInputLeaf::Exists { field },
            }
        }
        UserInputLeaf::Range {
            field,
            lower,
            upper,
        } => {
            // Ranges over a text field compare its exact values (`request.path:[a TO b]`).
            let field = match field {
                Some(name) => {
                    let spec = known(&name)?;
                    Some(match spec.kind {
                        FieldKind::Text { exact: Some(exact) } => exact.to_string(),
                        _ => name,
                    })
                }
                None => None,
            };
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            }
        }
        UserInputLeaf::Set { field, elements } => {
            if let Some(name) = &field {
                known(name)?;
            }
            UserInputLeaf::Set { field, elements }
        }
        UserInputLeaf::Regex { field, pattern } => {
            if pattern.len() > limits.regex_bytes {
                return Err(too_complex(
                    QueryLimit::RegexBytes,
                    pattern.len(),
                    limits.regex_bytes,
                ));
            }
            if let Some(name) = &field {
                known(name)?;
            }
            UserInputLeaf::Regex { field, pattern }
        }
        UserInputLeaf::All => UserInputLeaf::All,
    })
}

fn too_complex(what: QueryLimit, found: usize, max: usize) -> IndexError {
    IndexError::QueryTooComplex { what, found, max }
}

/// Refuses query text nested deeper than `max_depth` or with more than `max_clauses` terms,
/// with one flat pass over it: nothing here recurses, whatever the input.
///
/// The depth counted is an upper bound on how deep Tantivy's grammar (the strict parser and
/// the lenient one that reports errors) recurses: one level per `(` and per `NOT` of a chain
/// (`NOT NOT a` nests). It must never be lower than the grammar's, or a crafted query could
/// still overflow the stack; it may be higher for odd queries, which only means a clean
/// error. Hence the asymmetry: every `(` counts, even inside quotes or a regex (the lenient
/// grammar reads `a"b ((` as a word and then groups); a `)` closes a level only where it
/// certainly closes one for the grammar: outside quotes, regexes and ranges, which can only
/// be told apart for sure before the first `"`, `'`, `/`, `[`, `{`, `<` or `>`. After one of
/// those, groups are counted as if never closed: a query with a path or a phrase can still
/// have `max_depth` groups in all.
///
/// Clauses are runs of characters other than whitespace and parentheses: every word,
/// operator, set element and word of a phrase counts, an upper bound on the clauses a query
/// builds.
pub(crate) fn check_shape(text: &str, max_depth: usize, max_clauses: usize) -> Result<()> {
    // Levels opened by `(`, each with the `NOT`s pending when it opened (they stay open
    // until the group closes), and the `NOT`s pending before the next leaf.
    let mut groups: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut pending_nots = 0usize;
    let mut clauses = 0usize;
    let mut closes_are_certain = true;
    let mut in_token = false;
    let mut token_start = 0usize;
    let mut chars = text.char_indices().peekable();
    let check_depth = |depth: usize| {
        if depth > max_depth {
            Err(too_complex(QueryLimit::Depth, depth, max_depth))
        } else {
            Ok(())
        }
    };
    // Ends the token at `end`: a `NOT` keeps its level open until the next leaf; any other
    // word is a leaf, which closes the pending `NOT`s.
    let end_token = |start: usize, end: usize, depth: &mut usize, pending: &mut usize| {
        let token = &text[start..end];
        if token == "NOT" {
            *pending += 1;
            *depth += 1;
        } else if token.chars().all(|c| matches!(c, '+' | '-' | '!')) {
            // An occur sign before a group: not yet the leaf.
        } else {
            *depth -= *pending;
            *pending = 0;
        }
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '(' | ')' => {
                if in_token {
                    end_token(token_start, i, &mut depth, &mut pending_nots);
                    check_depth(depth)?;
                    in_token = false;
                }
                if c == '(' {
                    groups.push(pending_nots);
                    pending_nots = 0;
                    depth += 1;
                    check_depth(depth)?;
                } else if closes_are_certain {
                    if let Some(nots) = groups.pop() {
                        // The group was the leaf of the `NOT`s pending before it.
                        depth -= 1 + nots;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_token {
                    end_token(token_start, i, &mut depth, &mut pending_nots);
                    check_depth(depth)?;
                    in_token = false;
                }
            }
            c => {
                if !in_token {
                    in_token = true;
                    token_start = i;
                    clauses += 1;
                    if clauses > max_clauses {
                        return Err(too_complex(QueryLimit::Clauses, clauses, max_clauses));
                    }
                }
                match c {
                    // An escaped character is part of the word, except that an escaped `(`
                    // is still counted as opening a level: every `(` counts (see above).
                    '\\' if chars.peek().map(|&(_, next)| next) != Some('(') => {
                        chars.next();
                    }
                    '"' | '\'' | '/' | '[' | '{' | '<' | '>' => closes_are_certain = false,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn known(name: &str) -> Result<&'static crate::schema::FieldSpec> {
    field_spec(name).ok_or_else(|| IndexError::UnknownField(name.to_string()))
}

/// `*` matches any run of characters; everything else is literal.
fn wildcard_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '\\' | '.' | '+' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '#'
            | '&' | '-' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The first and last address of a CIDR block, e.g. `10.4.0.0/16`.
fn cidr_range(text: &str) -> Result<(IpAddr, IpAddr)> {
    let bad = || IndexError::invalid_query(format!("`{text}` is not an IP address or CIDR block"));
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    Ok(match addr {
        IpAddr::V4(v4) => {
            if len > 32 {
                return Err(bad());
            }
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            let start = u32::from(v4) & mask;
            (
                IpAddr::V4(Ipv4Addr::from(start)),
                IpAddr::V4(Ipv4Addr::from(start | !mask)),
            )
        }
        IpAddr::V6(v6) => {
            if len > 128 {
                return Err(bad());
            }
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            let start = u128::from(v6) & mask;
            (
                IpAddr::V6(Ipv6Addr::from(start)),
                IpAddr::V6(Ipv6Addr::from(start | !mask)),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colons_in_values_are_escaped() {
        let e = escape_value_colons("auth.client_token:hmac-sha256:abc AND type:request");
        assert_eq!(
            e.text,
            r"auth.client_token:hmac-sha256\:abc AND type:request"
        );
        let e = escape_value_colons("hmac-sha256:abc");
        assert_eq!(e.text, r"hmac-sha256\:abc");
        let e = escape_value_colons("-request.remote_address:::1");
        assert_eq!(e.text, r"-request.remote_address:\:\:1");
        assert_eq!(e.inserted.len(), 2);
    }

    #[test]
    fn quotes_ranges_and_unknown_fields_are_untouched() {
        for q in [
            r#"auth.client_token:"hmac-sha256:abc""#,
            "time:[2026-01-01T00:00:00Z TO *]",
            "nosuch:a:b",
            "(type:request)",
        ] {
            assert_eq!(escape_value_colons(q).text, q);
        }
    }

    #[test]
    fn cidr_blocks() {
        let (a, b) = cidr_range("10.4.0.0/16").unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("10.4.0.0".into(), "10.4.255.255".into())
        );
        let (a, b) = cidr_range("10.4.3.2/0").unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("0.0.0.0".into(), "255.255.255.255".into())
        );
        let (a, b) = cidr_range("fd00::/8").unwrap();
        assert_eq!(a.to_string(), "fd00::");
        assert_eq!(b.to_string(), "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert!(cidr_range("10.0.0.0/33").is_err());
        assert!(cidr_range("nope/8").is_err());
    }

    #[test]
    fn shape_counts_depth_nots_and_clauses_without_recursion() {
        let depth = |q: &str| match check_shape(q, 1000, 100_000) {
            Ok(()) => 0,
            Err(_) => unreachable!(),
        };
        assert_eq!(depth("(a)"), 0);
        let over = |q: &str, max: usize| {
            matches!(
                check_shape(q, max, 100_000),
                Err(IndexError::QueryTooComplex {
                    what: QueryLimit::Depth,
                    ..
                })
            )
        };
        assert!(!over("((a))", 2) && over("(((a)))", 2));
        assert!(!over("(a) (b) (c) (d)", 1));
        assert!(!over("NOT NOT a", 2) && over("NOT NOT NOT a", 2));
        // `NOT a AND NOT b`: siblings.
        assert!(!over("NOT a AND NOT b AND NOT c", 1));
        // A NOT before a group stays open until the group closes.
        assert!(over("NOT (NOT (a))", 3) && !over("NOT (NOT (a))", 4));
        // After a quote, slash or bracket, closes are not trusted: groups add up.
        assert!(over("\"x\" (a) (b) (c)", 2) && !over("(a) (b) (c) \"x\"", 1));
        assert!(over("p/q (a) (b) (c)", 2));
        // Every `(` counts, even quoted or escaped.
        assert!(over("\"(((\" a", 2) && over("a\\(\\(\\( b", 2));
        let clauses = |q: &str, max: usize| {
            matches!(
                check_shape(q, 100, max),
                Err(IndexError::QueryTooComplex {
                    what: QueryLimit::Clauses,
                    ..
                })
            )
        };
        assert!(!clauses("a AND b", 3) && clauses("a AND b OR c", 3));
        assert!(clauses("\"a b c d\"", 3));
    }

    #[test]
    fn wildcards() {
        assert_eq!(wildcard_to_regex("secret/data/*"), "secret/data/.*");
        assert_eq!(wildcard_to_regex("a.b*c"), r"a\.b.*c");
    }
}
