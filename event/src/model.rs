//! The typed shape of one Vault/OpenBao audit entry.
//!
//! Fields that detections and the index rely on are typed; everything else is kept in the
//! `extra` map of the struct it belongs to, so that an entry written by a newer Vault
//! serializes back to the JSON it came from (key order aside).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One audit entry: a request or a response as Vault's audit device writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's timestamp, RFC 3339 with nanoseconds, exactly as written.
    pub time: String,
    /// `request` or `response`.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// The token and identity that made the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// The request as Vault received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// The response, on `response` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// The error Vault returned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Whether an entry logs a request or its response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Written before Vault handles the request.
    Request,
    /// Written after Vault handled the request.
    Response,
    /// A type this model does not know, kept verbatim.
    Other(String),
}

impl EntryKind {
    /// The name as Vault writes it.
    pub fn as_str(&self) -> &str {
        match self {
            EntryKind::Request => "request",
            EntryKind::Response => "response",
            EntryKind::Other(s) => s,
        }
    }
}

impl Serialize for EntryKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EntryKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(match s.as_str() {
            "request" => EntryKind::Request,
            "response" => EntryKind::Response,
            _ => EntryKind::Other(s),
        })
    }
}

/// The `auth` block: who made the request (also `response.auth` for logins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    /// HMAC of the client token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// HMAC of the token's accessor (clear when the device has `hmac_accessor=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessor: Option<String>,
    /// The token's display name, e.g. `userpass-alice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Every policy attached to the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Policies attached to the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_policies: Option<Vec<String>>,
    /// Policies inherited from the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_policies: Option<Vec<String>>,
    /// Whether the ACL allowed the request and which policies granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_results: Option<PolicyResults>,
    /// Auth method metadata (username, role, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The identity entity behind the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// `service`, `batch` or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `policy_results` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyResults {
    /// Whether the ACL allowed the request.
    #[serde(default)]
    pub allowed: bool,
    /// Fields this model does not know (granting policies, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A namespace reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// Namespace id; `root` for the root namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Namespace path, e.g. `team-a/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `request` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Vault's request id; request and response entries of one request share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `read`, `update`, `create`, `delete`, `list`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The request path, e.g. `secret/data/payments/db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mount point the path falls under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
    /// Mount type (`kv`, `userpass`, `token`, `system`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_type: Option<String>,
    /// The namespace of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
    /// HMAC of the client token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// HMAC of the client token's accessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_accessor: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    /// Request body, string values HMAC'd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `response` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The token a login or token creation issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Response body, string values HMAC'd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Response wrapping: token and accessors are HMAC'd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_info: Option<Map<String, Value>>,
    /// Fields this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AuditEntry {
    /// `request.id`, if present and non-empty.
    pub fn request_id(&self) -> Option<&str> {
        self.request
            .as_ref()
            .and_then(|r| r.id.as_deref())
            .filter(|id| !id.is_empty())
    }

    /// `request.path`.
    pub fn path(&self) -> Option<&str> {
        self.request.as_ref().and_then(|r| r.path.as_deref())
    }

    /// `request.operation`.
    pub fn operation(&self) -> Option<&str> {
        self.request.as_ref().and_then(|r| r.operation.as_deref())
    }

    /// How the request ended: denied by policy, failed, or ok.
    pub fn outcome(&self) -> Outcome {
        let denied = self
            .auth
            .as_ref()
            .and_then(|a| a.policy_results.as_ref())
            .is_some_and(|p| !p.allowed);
        match &self.error {
            Some(e) if denied || e.contains("permission denied") => Outcome::Denied,
            Some(e) if !e.is_empty() => Outcome::Error,
            _ if denied => Outcome::Denied,
            _ => Outcome::Ok,
        }
    }
}

/// How a request ended, derived from `error` and `auth.policy_results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No error.
    Ok,
    /// Refused by policy.
    Denied,
    /// Any other error (invalid credentials, bad request, …).
    Error,
}

impl Outcome {
    /// The lowercase name used in the index and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}
