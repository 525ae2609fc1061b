//! Vault's audit hash: HMAC-SHA256 keyed with an audit device's salt, written as
//! `hmac-sha256:` and 64 lowercase hex digits. The same value Vault's `sys/audit-hash/<device>`
//! endpoint returns.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix Vault writes before an HMAC'd value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Hashes values the way one audit device does.
#[derive(Clone)]
pub struct AuditHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for AuditHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The salt is a secret: never print it.
        f.write_str("AuditHasher { .. }")
    }
}

impl AuditHasher {
    /// A hasher keyed with the device's salt (its bytes as written, e.g. a UUID string).
    pub fn new(salt: &[u8]) -> AuditHasher {
        AuditHasher {
            // HMAC accepts keys of any length; this cannot fail.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// `hmac-sha256:<hex>` of `value`.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let mut out = String::with_capacity(HMAC_PREFIX.len() + 64);
        out.push_str(HMAC_PREFIX);
        out.push_str(&hex::encode(mac.finalize().into_bytes()));
        out
    }
}

/// What a string that should hold an HMAC holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacShape {
    /// `hmac-sha256:` and 64 lowercase hex digits.
    Valid,
    /// Starts with `hmac-sha256:` but the rest is not 64 lowercase hex digits.
    Malformed,
    /// Anything else: plaintext.
    Plaintext,
}

/// Classifies a value that Vault should have HMAC'd.
pub fn hmac_shape(value: &str) -> HmacShape {
    match value.strip_prefix(HMAC_PREFIX) {
        None => HmacShape::Plaintext,
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            HmacShape::Valid
        }
        Some(_) => HmacShape::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_a_known_pair() {
        let h = AuditHasher::new(b"cdca0b49-ec84-dcda-f425-1a248d0fc712");
        assert_eq!(
            h.hash("s.cCNrEKC1aBbog162djzX4FuB"),
            "hmac-sha256:c48ef5a6288ac6089e85748e10bd05936f011751420664f68a2d27541cfc0acf"
        );
    }

    #[test]
    fn shapes() {
        let h = AuditHasher::new(b"k").hash("v");
        assert_eq!(hmac_shape(&h), HmacShape::Valid);
        assert_eq!(
            hmac_shape(&h.to_uppercase().replace("HMAC-SHA256", "hmac-sha256")),
            HmacShape::Malformed
        );
        assert_eq!(hmac_shape(&h[..h.len() - 1]), HmacShape::Malformed);
        assert_eq!(hmac_shape("s.abc"), HmacShape::Plaintext);
        assert!(!format!("{:?}", AuditHasher::new(b"secret-salt")).contains("secret"));
    }
}
