//! Recognising Vault and OpenBao tokens in clear text.
//!
//! Service tokens: `hvs.` (Vault ≥ 1.10, long) and `s.` + 24 base62 characters (OpenBao and
//! older Vault). Batch tokens: `hvb.` and `b.`. Recovery tokens: `hvr.` and `r.`. Tokens from
//! before Vault 1.0 are bare UUIDs; those are only recognised in fields that hold tokens,
//! since request ids are UUIDs too.

/// A token-shaped run found in a string: byte range within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMatch {
    /// Start of the token (its prefix) in bytes.
    pub start: usize,
    /// End of the token in bytes, exclusive.
    pub end: usize,
}

fn is_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Finds every token-shaped run in `s`.
pub fn find_tokens(s: &str) -> Vec<TokenMatch> {
    find_tokens_in_bytes(s.as_bytes())
}

/// Finds every token-shaped run in `bytes`, which need not be UTF-8 (quarantined input is
/// often not). Tokens are ASCII, so in valid UTF-8 every match starts and ends on a character
/// boundary; bytes that are not ASCII simply end a token like any other separator.
pub fn find_tokens_in_bytes(bytes: &[u8]) -> Vec<TokenMatch> {
    let mut found = Vec::new();
    let mut i = 0;
    // Look for the `.` of a prefix; the rarity of `.` keeps this a fast scan.
    while let Some(dot) = bytes[i..].iter().position(|&b| b == b'.').map(|p| p + i) {
        i = dot + 1;
        let Some((start, min_body, base62_only)) = prefix_before(bytes, dot) else {
            continue;
        };
        let body_end = bytes[dot + 1..]
            .iter()
            .position(|&b| !is_body_byte(b))
            .map_or(bytes.len(), |p| p + dot + 1);
        let body = &bytes[dot + 1..body_end];
        if body.len() < min_body || (base62_only && !body.iter().all(u8::is_ascii_alphanumeric)) {
            continue;
        }
        // Short-prefix tokens are exactly 24 characters; longer runs are something else
        // (a base64 blob, a hostname label) unless the body is long and mixed like a batch token.
        if base62_only && body.len() != 24 {
            continue;
        }
        if !mixed_case_and_digits(body) {
            continue;
        }
        found.push(TokenMatch {
            start,
            end: body_end,
        });
        i = body_end;
    }
    found
}

/// For the `.` at `dot`, the token prefix before it: (start, minimum body length, whether the
/// body is plain base62 of fixed length).
fn prefix_before(bytes: &[u8], dot: usize) -> Option<(usize, usize, bool)> {
    let boundary_ok =
        |start: usize| start == 0 || !is_body_byte(bytes[start - 1]) && bytes[start - 1] != b'.';
    if dot >= 3
        && bytes[dot - 3] == b'h'
        && bytes[dot - 2] == b'v'
        && matches!(bytes[dot - 1], b's' | b'b' | b'r')
        && boundary_ok(dot - 3)
    {
        return Some((dot - 3, 24, false));
    }
    if dot >= 1 && boundary_ok(dot - 1) {
        return match bytes[dot - 1] {
            b's' | b'r' => Some((dot - 1, 24, true)),
            b'b' => Some((dot - 1, 24, false)),
            _ => None,
        };
    }
    None
}

/// Real tokens are random: upper case, lower case and digits all appear in 24+ characters
/// (the chance that one is missing is about 10⁻⁴), words and identifiers rarely mix all three.
fn mixed_case_and_digits(body: &[u8]) -> bool {
    body.iter().any(u8::is_ascii_uppercase)
        && body.iter().any(u8::is_ascii_lowercase)
        && body.iter().any(u8::is_ascii_digit)
}

/// Whether `s` is, as a whole, a token of any known form, legacy UUID tokens included.
pub fn is_token(s: &str) -> bool {
    matches!(find_tokens(s).as_slice(), [m] if m.start == 0 && m.end == s.len()) || is_uuid(s)
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_form() {
        for t in [
            "s.cCNrEKC1aBbog162djzX4FuB",
            "r.cCNrEKC1aBbog162djzX4FuB",
            "hvs.CAESIJrq3lYpG2cBkuw9Yn7ZbVoQs4V1wlV0Do5qaUhpRQTJGh4KHGh2cy5YRGVVdzFyTnZyU3M1YzV6d0xBdzNvbm8",
            "hvb.AAAAAQJzLm9QMXFhc3hDV3VzbHFsVmo3Mk5oQmc",
            "b.AAAAAQKoQmBpqeUq8Nk2eXcm1xYz5r7G2Qd",
        ] {
            assert!(is_token(t), "{t}");
            let text = format!("token={t}, ok");
            assert_eq!(find_tokens(&text), vec![TokenMatch { start: 6, end: 6 + t.len() }]);
        }
        assert!(is_token("6f1c3a52-2d0b-4a8e-9c3e-0a1b2c3d4e5f"));
    }

    #[test]
    fn ignores_look_alikes() {
        for s in [
            "secret/data/payments/db",
            "hmac-sha256:c48ef5a6288ac6089e85748e10bd05936f011751420664f68a2d27541cfc0acf",
            "vault.s.cCNrEKC1aBbog162djzX4FuB",
            "s.short",
            "s.aaaaaaaaaaaaaaaaaaaaaaaa",
            "s.cCNrEKC1aBbog162djzX4FuBx",
            "v2.7.2+builtin.bao",
            "is.cCNrEKC1aBbog162djzX4FuB",
        ] {
            assert!(find_tokens(s).is_empty(), "{s}");
        }
        assert!(!is_token("dev-gen-root"));
    }
}
