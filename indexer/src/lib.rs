//! The Tantivy index: schema, writer, retention, and the search and aggregation queries.
