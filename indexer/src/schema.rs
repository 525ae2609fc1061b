//! The index schema: which fields an event document has, how each is indexed, and the
//! tokenizers they use.
//!
//! Field names are the dotted names of the audit JSON (`request.path`, `auth.client_token`),
//! used verbatim as Tantivy field names: Tantivy's schema looks a name up whole before it
//! tries to split it at dots, so `request.path` resolves to the field of that name and the
//! query parser accepts it as is. The catalogue [`FIELDS`] is the single list of what users
//! can query and facet; names starting with `_` are internal and never resolvable from a
//! query.

use std::path::Path;

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, IpAddrOptions, NumericOptions,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    LowerCaser, RegexTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::Index;

use crate::error::{IndexError, Result};

/// Tokenizer of `request.path`: one token per `/`-separated segment, lowercased.
pub const PATH_TOKENIZER: &str = "vigil_path";
/// Tokenizer of `error` and `raw`: alphanumeric runs, lowercased. Unlike Tantivy's default it
/// keeps tokens up to 256 bytes, so that the 64-hex-digit digests of HMAC values are indexed.
pub const TEXT_TOKENIZER: &str = "vigil_text";

/// How a field is indexed, which decides what queries and facets it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// The event time: a nanosecond fast date (sorting, ranges, histograms).
    Time,
    /// Exact, case-sensitive text (one term per value), also a fast column for facets.
    Keyword,
    /// Tokenized text with positions, for words and phrases. `exact` names the keyword field
    /// holding the same value whole, used for facets, `field:*` and wildcard queries.
    Text {
        /// The keyword companion field.
        exact: Option<&'static str>,
    },
    /// An IP address (IPv4 stored as IPv4-mapped IPv6), for terms, ranges and CIDR queries.
    /// `exact` names the keyword field holding the address as written.
    Ip {
        /// The keyword companion field.
        exact: &'static str,
    },
}

/// One user-visible field of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The name used in queries, as in the audit JSON.
    pub name: &'static str,
    /// How it is indexed.
    pub kind: FieldKind,
    /// What it holds.
    pub description: &'static str,
}

impl FieldSpec {
    /// The keyword field holding this field's values whole, if any: the field itself for
    /// keywords, the companion for text and IP fields.
    pub fn exact_field(&self) -> Option<&'static str> {
        match self.kind {
            FieldKind::Keyword => Some(self.name),
            FieldKind::Text { exact } => exact,
            FieldKind::Ip { exact } => Some(exact),
            FieldKind::Time => None,
        }
    }

    /// Whether [`crate::EventSearcher::facets`] can count this field's values.
    pub fn is_facetable(&self) -> bool {
        self.exact_field().is_some()
    }
}

const fn keyword(name: &'static str, description: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Keyword,
        description,
    }
}

/// Every field users can query, in the order of the schema.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "time",
        kind: FieldKind::Time,
        description: "entry time (RFC 3339 in queries), nanosecond precision",
    },
    keyword("type", "`request` or `response`"),
    keyword(
        "outcome",
        "`ok`, `denied` or `error`, derived from error and policy results",
    ),
    keyword("event_id", "Vigil's stable event id (32 hex digits)"),
    keyword(
        "request.id",
        "Vault's request id, shared by a request and its response",
    ),
    keyword("request.operation", "read, update, create, delete, list, …"),
    FieldSpec {
        name: "request.path",
        kind: FieldKind::Text {
            exact: Some("request.path.raw"),
        },
        description: "request path, one lowercased token per `/` segment; `a/b` is a phrase",
    },
    keyword("request.path.raw", "request path exactly as logged"),
    keyword("request.mount_point", "mount point, e.g. `secret/`"),
    keyword("request.mount_type", "mount type, e.g. `kv`, `userpass`"),
    keyword("request.namespace.id", "namespace id"),
    keyword("request.namespace.path", "namespace path"),
    FieldSpec {
        name: "request.remote_address",
        kind: FieldKind::Ip {
            exact: "request.remote_address.raw",
        },
        description: "client IP; supports ranges and CIDR (`10.4.0.0/16`)",
    },
    keyword("request.remote_address.raw", "client address as logged"),
    keyword("request.client_token", "HMAC of the client token"),
    keyword(
        "request.client_token_accessor",
        "HMAC of the client token's accessor",
    ),
    keyword("auth.client_token", "HMAC of the client token"),
    keyword("auth.accessor", "HMAC of the token accessor"),
    keyword(
        "auth.display_name",
        "token display name, e.g. `userpass-alice`",
    ),
    keyword("auth.entity_id", "identity entity id"),
    keyword(
        "auth.policies",
        "policies attached to the token (multi-valued)",
    ),
    keyword("auth.token_type", "`service`, `batch` or `default`"),
    keyword(
        "auth.metadata.username",
        "username from the auth method's metadata",
    ),
    keyword("response.mount_type", "mount type reported in the response"),
    keyword(
        "response.auth.client_token",
        "HMAC of a token issued by this request",
    ),
    keyword(
        "response.auth.accessor",
        "HMAC of the accessor of a token issued by this request",
    ),
    keyword(
        "response.auth.display_name",
        "display name of a token issued by this request",
    ),
    FieldSpec {
        name: "error",
        kind: FieldKind::Text {
            exact: Some("error.raw"),
        },
        description: "error message, tokenized",
    },
    keyword("error.raw", "error message exactly as logged"),
    keyword("origin.node", "node the collector read the event on"),
    keyword("origin.device", "audit device name"),
    keyword("origin.source", "`file`, `socket` or `syslog`"),
    keyword(
        "origin.syslog.facility",
        "syslog facility number (4 = auth, 10 = authpriv, …)",
    ),
    keyword(
        "origin.syslog.severity",
        "syslog severity number (0 = emergency … 7 = debug)",
    ),
    keyword("origin.syslog.host", "host name in the syslog header"),
    keyword("origin.syslog.tag", "tag or app name in the syslog header"),
    keyword("origin.syslog.pid", "process id in the syslog header"),
    keyword(
        "findings.kind",
        "HMAC findings of the collector, e.g. `plaintext_token` (multi-valued)",
    ),
    keyword(
        "findings.severity",
        "severity of those findings: info … critical (multi-valued)",
    ),
    keyword(
        "findings.field",
        "fields the findings are about, e.g. `auth.client_token` (multi-valued)",
    ),
    FieldSpec {
        name: "raw",
        kind: FieldKind::Text { exact: None },
        description: "the whole raw line, tokenized (bare words search it)",
    },
];

/// Fields searched by words given without a field name.
pub const DEFAULT_FIELDS: &[&str] = &["request.path", "auth.display_name", "error", "raw"];

/// High and low halves of the event id as a 128-bit number: the tie-breaker of the sort order
/// and the second half of a pagination cursor.
pub(crate) const ID_HI: &str = "_id_hi";
pub(crate) const ID_LO: &str = "_id_lo";

/// Looks up a user-visible field by name.
pub fn field_spec(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Resolved handles of every field, built once per open index.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub time: Field,
    pub kind: Field,
    pub outcome: Field,
    pub event_id: Field,
    pub request_id: Field,
    pub operation: Field,
    pub path: Field,
    pub path_raw: Field,
    pub mount_point: Field,
    pub mount_type: Field,
    pub namespace_id: Field,
    pub namespace_path: Field,
    pub remote_address: Field,
    pub remote_address_raw: Field,
    pub request_client_token: Field,
    pub request_client_token_accessor: Field,
    pub client_token: Field,
    pub accessor: Field,
    pub display_name: Field,
    pub entity_id: Field,
    pub policies: Field,
    pub token_type: Field,
    pub username: Field,
    pub response_mount_type: Field,
    pub response_client_token: Field,
    pub response_accessor: Field,
    pub response_display_name: Field,
    pub error: Field,
    pub error_raw: Field,
    pub origin_node: Field,
    pub origin_device: Field,
    pub origin_source: Field,
    pub syslog_facility: Field,
    pub syslog_severity: Field,
    pub syslog_host: Field,
    pub syslog_tag: Field,
    pub syslog_pid: Field,
    pub findings_kind: Field,
    pub findings_severity: Field,
    pub findings_field: Field,
    pub raw: Field,
    pub id_hi: Field,
    pub id_lo: Field,
}

impl Fields {
    pub(crate) fn resolve(schema: &Schema) -> Result<Fields> {
        let f = |name: &str| {
            schema
                .get_field(name)
                .map_err(|_| IndexError::UnknownField(name.to_string()))
        };
        Ok(Fields {
            time: f("time")?,
            kind: f("type")?,
            outcome: f("outcome")?,
            event_id: f("event_id")?,
            request_id: f("request.id")?,
            operation: f("request.operation")?,
            path: f("request.path")?,
            path_raw: f("request.path.raw")?,
            mount_point: f("request.mount_point")?,
            mount_type: f("request.mount_type")?,
            namespace_id: f("request.namespace.id")?,
            namespace_path: f("request.namespace.path")?,
            remote_address: f("request.remote_address")?,
            remote_address_raw: f("request.remote_address.raw")?,
            request_client_token: f("request.client_token")?,
            request_client_token_accessor: f("request.client_token_accessor")?,
            client_token: f("auth.client_token")?,
            accessor: f("auth.accessor")?,
            display_name: f("auth.display_name")?,
            entity_id: f("auth.entity_id")?,
            policies: f("auth.policies")?,
            token_type: f("auth.token_type")?,
            username: f("auth.metadata.username")?,
            response_mount_type: f("response.mount_type")?,
            response_client_token: f("response.auth.client_token")?,
            response_accessor: f("response.auth.accessor")?,
            response_display_name: f("response.auth.display_name")?,
            error: f("error")?,
            error_raw: f("error.raw")?,
            origin_node: f("origin.node")?,
            origin_device: f("origin.device")?,
            origin_source: f("origin.source")?,
            syslog_facility: f("origin.syslog.facility")?,
            syslog_severity: f("origin.syslog.severity")?,
            syslog_host: f("origin.syslog.host")?,
            syslog_tag: f("origin.syslog.tag")?,
            syslog_pid: f("origin.syslog.pid")?,
            findings_kind: f("findings.kind")?,
            findings_severity: f("findings.severity")?,
            findings_field: f("findings.field")?,
            raw: f("raw")?,
            id_hi: f(ID_HI)?,
            id_lo: f(ID_LO)?,
        })
    }
}

/// Fields whose values are kept in the document store (what a hit is rebuilt from).
const STORED: &[&str] = &[
    "event_id",
    "origin.node",
    "origin.device",
    "origin.source",
    "origin.syslog.facility",
    "origin.syslog.severity",
    "origin.syslog.host",
    "origin.syslog.tag",
    "origin.syslog.pid",
    "raw",
];

/// Builds the schema from [`FIELDS`].
pub fn build_schema() -> Schema {
    let mut builder = Schema::builder();
    for spec in FIELDS {
        let stored = STORED.contains(&spec.name);
        match spec.kind {
            FieldKind::Time => {
                // Indexed terms are second-precision in Tantivy; the fast column keeps
                // nanoseconds, and range queries on a fast date field use the column.
                let opts = DateOptions::default()
                    .set_indexed()
                    .set_fast()
                    .set_precision(DateTimePrecision::Nanoseconds);
                builder.add_date_field(spec.name, opts);
            }
            FieldKind::Keyword => {
                let mut opts = TextOptions::default()
                    .set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer("raw")
                            .set_fieldnorms(false)
                            .set_index_option(IndexRecordOption::Basic),
                    )
                    .set_fast("raw");
                if stored {
                    opts = opts.set_stored();
                }
                builder.add_text_field(spec.name, opts);
            }
            FieldKind::Text { .. } => {
                let tokenizer = if spec.name == "request.path" {
                    PATH_TOKENIZER
                } else {
                    TEXT_TOKENIZER
                };
                // Positions: every default field must support phrases, because a bare
                // `"permission denied"` or an HMAC value becomes a phrase on each of them.
                let mut opts = TextOptions::default().set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(tokenizer)
                        .set_fieldnorms(false)
                        .set_index_option(IndexRecordOption::WithFreqsAndPositions),
                );
                if stored {
                    opts = opts.set_stored();
                }
                builder.add_text_field(spec.name, opts);
            }
            FieldKind::Ip { .. } => {
                let opts = IpAddrOptions::default().set_indexed().set_fast();
                builder.add_ip_addr_field(spec.name, opts);
            }
        }
    }
    builder.add_u64_field(ID_HI, NumericOptions::default().set_fast());
    builder.add_u64_field(ID_LO, NumericOptions::default().set_fast());
    builder.build()
}

/// Fails unless `index` (opened from `dir`) has exactly the schema [`build_schema`] builds:
/// an index from another version would answer queries wrongly rather than fail.
pub(crate) fn check_schema(index: &Index, dir: &Path) -> Result<()> {
    let on_disk = serde_json::to_value(index.schema()).ok();
    let ours = serde_json::to_value(build_schema()).ok();
    if on_disk.is_none() || on_disk != ours {
        return Err(IndexError::SchemaMismatch(dir.to_path_buf()));
    }
    Ok(())
}

/// Registers the tokenizers the schema names on `index`; needed on every open, since
/// Tantivy does not persist custom tokenizers.
pub(crate) fn register_tokenizers(index: &Index) -> Result<()> {
    let path = RegexTokenizer::new("[^/]+")?;
    index.tokenizers().register(
        PATH_TOKENIZER,
        TextAnalyzer::builder(path)
            .filter(RemoveLongFilter::limit(256))
            .filter(LowerCaser)
            .build(),
    );
    index.tokenizers().register(
        TEXT_TOKENIZER,
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(256))
            .filter(LowerCaser)
            .build(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_and_schema_agree() {
        let schema = build_schema();
        assert!(Fields::resolve(&schema).is_ok());
        for spec in FIELDS {
            assert!(schema.get_field(spec.name).is_ok(), "{}", spec.name);
            if let Some(exact) = spec.exact_field() {
                let companion = field_spec(exact).map(|s| s.kind);
                assert_eq!(companion, Some(FieldKind::Keyword), "{}", spec.name);
            }
        }
        for name in DEFAULT_FIELDS {
            assert!(field_spec(name).is_some(), "{name}");
        }
    }

    #[test]
    fn check_schema_refuses_an_index_built_with_another_schema() {
        let dir = Path::new("/nonexistent/vigil-index");
        let ours = Index::create_in_ram(build_schema());
        assert!(check_schema(&ours, dir).is_ok());
        let mut builder = Schema::builder();
        builder.add_text_field("request.path", TextOptions::default());
        let other = Index::create_in_ram(builder.build());
        assert!(matches!(
            check_schema(&other, dir),
            Err(IndexError::SchemaMismatch(p)) if p == dir
        ));
    }

    #[test]
    fn dotted_names_resolve_whole() {
        // The premise of naming fields after the JSON: no split at the dots.
        let schema = build_schema();
        let (field, rest) = schema.find_field("request.path.raw").expect("field");
        assert_eq!(schema.get_field_name(field), "request.path.raw");
        assert_eq!(rest, "");
    }
}
