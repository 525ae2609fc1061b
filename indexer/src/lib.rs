//! The Tantivy index of audit events: the indexer stage of Vigil. It reads signed envelopes
//! from the bus into the index ([`IndexConsumer`]), deletes events past the retention period
//! ([`run_retention`]), and answers the search, facet and histogram queries behind
//! `vigil search` and the HTTP API ([`EventSearcher`]).
//!
//! One document per event, fields named as in the audit JSON (see [`schema::FIELDS`]), keyed
//! by the event id: a re-delivered event replaces its document, and [`EventIndex::add`] says
//! whether it did ([`Added`]), so that re-deliveries are counted rather than invisible.
//! [`EventIndex`] owns the single writer of an index directory and is also a searcher;
//! [`EventSearcher::open_read_only`] opens the same directory from another process to search
//! while the writer runs.
//!
//! ```no_run
//! # fn main() -> Result<(), vigil_indexer::IndexError> {
//! use vigil_event::{AuditEvent, Origin, SourceKind};
//! use vigil_indexer::{EventIndex, IndexConfig, IndexedEvent, SearchRequest};
//!
//! let index = EventIndex::open("/var/lib/vigil/index".as_ref(), IndexConfig::default())?;
//! let line = br#"{"time":"2026-11-22T16:33:32Z","type":"request","request":{"id":"r1","path":"secret/data/db"}}"#;
//! let event = AuditEvent::parse(line).expect("valid line");
//! index.add(&IndexedEvent::new(event, Origin::new("node-1", "main", SourceKind::File)))?;
//! index.commit()?;
//! let page = index.search(&SearchRequest::new("request.path:secret/data/db"))?;
//! assert_eq!(page.total, 1);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod collect;
pub mod config;
#[cfg(feature = "consumer")]
mod consumer;
mod cursor;
mod document;
pub mod error;
mod query;
pub mod retention;
pub mod schema;
pub mod search;
pub mod writer;

pub use config::{IndexConfig, SearchLimits};
#[cfg(feature = "consumer")]
pub use consumer::{ConsumerError, IndexConsumer, IndexStats};
pub use document::{IndexedEvent, TIME_FINDING_SEVERITY, TIME_OUT_OF_RANGE};
pub use error::{IndexError, QueryLimit};
pub use retention::run_retention;
pub use schema::{field_spec, FieldKind, FieldSpec, DEFAULT_FIELDS, FIELDS};
pub use search::{
    EventSearcher, FacetBucket, FacetResponse, HistogramBucket, HistogramResponse, Hit, HitOrigin,
    SearchRequest, SearchResponse,
};
pub use writer::{Added, CommitStamp, EventIndex};
