//! The signed envelope events travel in between the collector and the consumers: the raw line
//! and its origin, with an HMAC-SHA256 tag under a key from a keyring. The envelope is the
//! message itself, so it stays verifiable wherever the bytes go.
//!
//! Layout: `VGE1`, key id length (u8), key id, origin length (u16, big endian), origin as
//! JSON, the raw line, then the 32-byte tag over everything before it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::check::HmacFinding;
use crate::framing::SyslogMeta;
use crate::parse::{AuditEvent, ParseError};

const MAGIC: &[u8; 4] = b"VGE1";
const TAG_LEN: usize = 32;
/// Shortest secret a keyring accepts.
pub const MIN_KEY_BYTES: usize = 16;

/// Which kind of audit device an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A file audit device, tailed.
    File,
    /// A socket audit device.
    Socket,
    /// A syslog audit device.
    Syslog,
}

impl SourceKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Socket => "socket",
            SourceKind::Syslog => "syslog",
        }
    }
}

/// Where an event was read: node, device and source kind, the syslog header if any, and what
/// the collector's HMAC checks found on the line before it redacted it (the findings travel
/// signed with the event, so that rules can alert on a leak the index never sees).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The node (host or pod) the collector runs on.
    pub node: String,
    /// The audit device's name (or the file path when no name is configured).
    pub device: String,
    /// The kind of device.
    pub source: SourceKind,
    /// The syslog header the line arrived with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogMeta>,
    /// HMAC findings on the line as it was read (its leaks are redacted in the raw line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<HmacFinding>,
}

impl Origin {
    /// An origin without syslog metadata.
    pub fn new(node: impl Into<String>, device: impl Into<String>, source: SourceKind) -> Origin {
        Origin {
            node: node.into(),
            device: device.into(),
            source,
            syslog: None,
            findings: Vec::new(),
        }
    }

    /// The bus key of this origin: node and device, so each device's order holds.
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.device)
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The message does not start with the envelope's magic bytes.
    #[error("not a Vigil envelope (bad magic)")]
    BadMagic,
    /// The message ends inside the envelope's header or tag.
    #[error("truncated envelope")]
    Truncated,
    /// The key id is not in the keyring.
    #[error("unknown signing key id {0:?}")]
    UnknownKey(String),
    /// The tag does not match.
    #[error("bad signature (key id {0:?})")]
    BadSignature(String),
    /// The origin is not valid JSON of the expected shape.
    #[error("invalid origin: {0}")]
    InvalidOrigin(String),
    /// A keyring needs at least one key.
    #[error("the keyring is empty")]
    EmptyKeyring,
    /// A key id is empty, longer than 255 bytes, or used twice.
    #[error("invalid key id {0:?} (1 to 255 bytes, unique)")]
    InvalidKeyId(String),
    /// A secret is shorter than [`MIN_KEY_BYTES`].
    #[error("signing key {0:?} is shorter than {MIN_KEY_BYTES} bytes")]
    WeakKey(String),
    /// The origin is too large for the envelope.
    #[error("origin of {0} bytes is too large")]
    OriginTooLarge(usize),
}

/// A verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The id of the key that signed it.
    pub key_id: String,
    /// Where the event was read.
    pub origin: Origin,
    /// The raw audit line.
    pub raw: Vec<u8>,
}

/// Why a bus message is not a verified audit event.
#[derive(Debug, thiserror::Error)]
pub enum OpenEventError {
    /// The envelope is missing, altered, or signed by a key this keyring does not hold.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The envelope verifies but what it carries is not an audit entry.
    #[error("signed message is not an audit entry: {0}")]
    NotAnEntry(#[from] ParseError),
}

/// Signing keys by id. The last key signs; every key verifies, so keys can rotate.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Hmac<Sha256>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring of `(id, secret)` pairs, oldest first.
    pub fn new<I, S>(keys: I) -> Result<Keyring, EnvelopeError>
    where
        I: IntoIterator<Item = (S, Vec<u8>)>,
        S: Into<String>,
    {
        let mut out: Vec<(String, Hmac<Sha256>)> = Vec::new();
        for (id, secret) in keys {
            let id = id.into();
            if id.is_empty() || id.len() > 255 || out.iter().any(|(k, _)| *k == id) {
                return Err(EnvelopeError::InvalidKeyId(id));
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(EnvelopeError::WeakKey(id));
            }
            let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
                .map_err(|_| EnvelopeError::WeakKey(id.clone()))?;
            out.push((id, mac));
        }
        if out.is_empty() {
            return Err(EnvelopeError::EmptyKeyring);
        }
        Ok(Keyring { keys: out })
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> &str {
        self.keys
            .last()
            .map(|(id, _)| id.as_str())
            .unwrap_or_default()
    }

    /// Seals `raw` and its origin into an envelope signed with the newest key.
    pub fn seal(&self, origin: &Origin, raw: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let (id, mac) = self.keys.last().ok_or(EnvelopeError::EmptyKeyring)?;
        let origin =
            serde_json::to_vec(origin).map_err(|e| EnvelopeError::InvalidOrigin(e.to_string()))?;
        let origin_len =
            u16::try_from(origin.len()).map_err(|_| EnvelopeError::OriginTooLarge(origin.len()))?;
        let mut out =
            Vec::with_capacity(MAGIC.len() + 1 + id.len() + 2 + origin.len() + raw.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&origin_len.to_be_bytes());
        out.extend_from_slice(&origin);
        out.extend_from_slice(raw);
        let mut mac = mac.clone();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Ok(out)
    }

    /// Verifies `message` like [`open`](Self::open) and parses the audit entry it carries:
    /// what a consumer does with every message before indexing or evaluating it.
    pub fn open_event(&self, message: &[u8]) -> Result<(AuditEvent, Origin), OpenEventError> {
        let envelope = self.open(message)?;
        let event = AuditEvent::parse(&envelope.raw)?;
        Ok((event, envelope.origin))
    }

    /// Verifies an envelope (in constant time) and takes it apart.
    pub fn open(&self, message: &[u8]) -> Result<Envelope, EnvelopeError> {
        let rest = message.strip_prefix(MAGIC).ok_or(EnvelopeError::BadMagic)?;
        let (&id_len, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 2 + TAG_LEN {
            return Err(EnvelopeError::Truncated);
        }
        let key_id = String::from_utf8_lossy(&rest[..id_len]).into_owned();
        let origin_len = usize::from(u16::from_be_bytes([rest[id_len], rest[id_len + 1]]));
        let body = &rest[id_len + 2..];
        if body.len() < origin_len + TAG_LEN {
            return Err(EnvelopeError::Truncated);
        }
        let (signed, tag) = message.split_at(message.len() - TAG_LEN);
        let mac = self
            .keys
            .iter()
            .find(|(id, _)| *id == key_id)
            .map(|(_, mac)| mac)
            .ok_or_else(|| EnvelopeError::UnknownKey(key_id.clone()))?;
        let mut mac = mac.clone();
        mac.update(signed);
        mac.verify_slice(tag)
            .map_err(|_| EnvelopeError::BadSignature(key_id.clone()))?;
        let origin = serde_json::from_slice(&body[..origin_len])
            .map_err(|e| EnvelopeError::InvalidOrigin(e.to_string()))?;
        let raw = body[origin_len..body.len() - TAG_LEN].to_vec();
        Ok(Envelope {
            key_id,
            origin,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, &str)]) -> Keyring {
        Keyring::new(keys.iter().map(|(id, s)| (*id, s.as_bytes().to_vec()))).unwrap()
    }

    #[test]
    fn seal_then_open() {
        let k = ring(&[("k1", "0123456789abcdef0123")]);
        let origin = Origin::new("node-1", "main", SourceKind::File);
        let msg = k.seal(&origin, b"{\"a\":1}").unwrap();
        let env = k.open(&msg).unwrap();
        assert_eq!(
            env,
            Envelope {
                key_id: "k1".into(),
                origin,
                raw: b"{\"a\":1}".to_vec()
            }
        );
    }

    #[test]
    fn rotation_keeps_old_ids_verifiable() {
        let old = ring(&[("k1", "0123456789abcdef0123")]);
        let new = ring(&[
            ("k1", "0123456789abcdef0123"),
            ("k2", "fedcba9876543210fedc"),
        ]);
        let origin = Origin::new("n", "d", SourceKind::Socket);
        assert_eq!(
            new.open(&old.seal(&origin, b"x").unwrap()).unwrap().key_id,
            "k1"
        );
        assert_eq!(
            new.open(&new.seal(&origin, b"x").unwrap()).unwrap().key_id,
            "k2"
        );
        assert_eq!(
            old.open(&new.seal(&origin, b"x").unwrap()),
            Err(EnvelopeError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let k = ring(&[("k1", "0123456789abcdef0123")]);
        let msg = k
            .seal(&Origin::new("n", "d", SourceKind::File), b"{\"a\":1}")
            .unwrap();
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 0x01;
            assert!(k.open(&bad).is_err(), "flip at {i} accepted");
        }
        for len in 0..msg.len() {
            assert!(k.open(&msg[..len]).is_err(), "prefix of {len} accepted");
        }
        let other = ring(&[("k1", "another-secret-of-20")]);
        assert_eq!(
            other.open(&msg),
            Err(EnvelopeError::BadSignature("k1".into()))
        );
    }

    #[test]
    fn keyring_rules() {
        assert_eq!(
            Keyring::new(Vec::<(String, Vec<u8>)>::new()).unwrap_err(),
            EnvelopeError::EmptyKeyring
        );
        assert!(matches!(
            Keyring::new([("k", b"short".to_vec())]),
            Err(EnvelopeError::WeakKey(_))
        ));
        assert!(matches!(
            Keyring::new([("k", vec![1; 16]), ("k", vec![2; 16])]),
            Err(EnvelopeError::InvalidKeyId(_))
        ));
        assert!(!format!("{:?}", ring(&[("k1", "0123456789abcdef0123")])).contains("0123"));
    }
}
