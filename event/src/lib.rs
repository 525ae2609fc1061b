//! The audit event model of Vigil: parsing one Vault/OpenBao audit line into a typed event,
//! the framing around it (syslog headers, file prefixes, receivers' stream framing), the checks on its HMAC'd fields,
//! redaction of leaked plaintext, stable event ids, and the signed envelope events travel in.
//!
//! Pure: no I/O, no clocks, no global state.

#![deny(missing_docs)]

pub mod audit_hash;
pub mod check;
pub mod envelope;
pub mod framing;
pub mod id;
pub mod model;
pub mod parse;
pub mod stream;
pub mod token;

pub use audit_hash::{hmac_shape, AuditHasher, HmacShape, HMAC_PREFIX};
pub use check::{
    redact_tokens_in_bytes, DeviceOptions, FindingKind, HmacChecker, HmacFinding, Redactor,
    Severity,
};
pub use envelope::{Envelope, EnvelopeError, Keyring, OpenEventError, Origin, SourceKind};
pub use framing::{
    parse_line, parse_syslog, strip_prefix, unframe, FramingError, LineError, SyslogMeta,
};
pub use id::EventId;
pub use model::{
    AuditEntry, Auth, EntryKind, Namespace, Outcome, PolicyResults, Request, Response,
};
pub use parse::{AuditEvent, ParseError, ParseLimits, DEFAULT_MAX_LINE_BYTES};
pub use stream::{Framed, LineFramer, Refused, RefusedKind, SyslogFrame, SyslogFramer};
