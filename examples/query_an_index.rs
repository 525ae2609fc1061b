//! Query an index: open an `EventIndex` in a temporary directory, add a few events, commit,
//! then search with a query and a time range, page with a cursor, count the top values of a
//! field (a facet) and the events per minute (a histogram). The HTTP API's search, facets
//! and histogram routes are these calls.
//!
//! Run: `cargo run --example query_an_index`

use std::time::Duration;

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexedEvent, SearchRequest};

/// (time, request id, who, operation, path, error): one request entry each.
const EVENTS: [(&str, &str, &str, &str, &str, &str); 6] = [
    (
        "2026-11-22T16:40:05Z",
        "r1",
        "userpass-alice",
        "read",
        "secret/data/payments/db",
        "",
    ),
    (
        "2026-11-22T16:40:40Z",
        "r2",
        "userpass-alice",
        "read",
        "secret/data/payments/api",
        "",
    ),
    (
        "2026-11-22T16:41:10Z",
        "r3",
        "userpass-bob",
        "read",
        "secret/data/payments/db",
        "permission denied",
    ),
    (
        "2026-11-22T16:41:30Z",
        "r4",
        "userpass-bob",
        "list",
        "secret/metadata/",
        "permission denied",
    ),
    (
        "2026-11-22T16:42:00Z",
        "r5",
        "approle-ci",
        "update",
        "secret/data/ci/deploy",
        "",
    ),
    (
        "2026-11-22T16:43:20Z",
        "r6",
        "userpass-alice",
        "read",
        "secret/data/payments/db",
        "",
    ),
];

fn line(time: &str, id: &str, who: &str, op: &str, path: &str, error: &str) -> String {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(r#","error":"{error}""#)
    };
    format!(
        r#"{{"time":"{time}","type":"request","auth":{{"display_name":"{who}"}},"request":{{"id":"{id}","operation":"{op}","path":"{path}","remote_address":"10.4.2.17"}}{error}}}"#
    )
}

fn time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One writer per directory; the index is also a searcher. `vigil search` and `vigil serve`
    // open the same directory read-only with `EventSearcher::open_read_only`.
    let index = EventIndex::open(&dir.path().join("index"), IndexConfig::default())?;

    let origin = Origin::new("vault-0", "main", SourceKind::File);
    for (t, id, who, op, path, error) in EVENTS {
        let event = AuditEvent::parse(line(t, id, who, op, path, error).as_bytes())
            .context("parsing an example line")?;
        // The document id is the event id (request id, type and device), so adding the same
        // event again replaces it: a re-delivery is harmless.
        index.add(&IndexedEvent::new(event, origin.clone()))?;
    }
    // Nothing is searchable before a commit; the indexer commits about every second.
    let stamp = index.commit()?;
    println!("committed: {} documents in the index", stamp.num_docs);
    ensure!(
        index.num_docs() == EVENTS.len() as u64,
        "expected 6 documents"
    );

    // Tantivy's query language over the event's own dotted field names, plus a time range
    // [from, to). Hits come newest first.
    let mut request = SearchRequest::new(r#"request.path:"secret/data/payments/db""#);
    request.from = Some(time("2026-11-22T16:40:00Z")?);
    request.to = Some(time("2026-11-22T16:42:00Z")?);
    let page = index.search(&request)?;
    println!("payments/db between 16:40 and 16:42: {} hit(s)", page.total);
    for hit in &page.hits {
        println!(
            "  {} {} {} by {} -> {}",
            hit.time,
            hit.kind,
            hit.path.as_deref().unwrap_or("-"),
            hit.display_name.as_deref().unwrap_or("-"),
            hit.outcome
        );
    }
    // r1 and r3; r6 is after the range.
    ensure!(page.total == 2, "expected 2 hits, got {}", page.total);

    // Outcome is derived from the entry: `denied` for a permission error.
    let denied = index.search(&SearchRequest::new("outcome:denied"))?;
    println!("denied: {} event(s)", denied.total);
    ensure!(denied.total == 2, "expected 2 denied events");

    // Pagination: a page of two, then the cursor for the next, until no cursor comes back.
    let mut request = SearchRequest::new("*");
    request.limit = 2;
    let mut seen = Vec::new();
    loop {
        let page = index.search(&request)?;
        seen.extend(page.hits.iter().filter_map(|h| h.request_id.clone()));
        match page.cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    println!("all events, two per page, newest first: {seen:?}");
    ensure!(
        seen == ["r6", "r5", "r4", "r3", "r2", "r1"],
        "pages out of order: {seen:?}"
    );

    // A facet: the most frequent values of one field among the matching events.
    let facets = index.facets("auth.display_name", "type:request", None, None, 2)?;
    println!("top display names of requests:");
    for bucket in &facets.buckets {
        println!("  {:<16} {}", bucket.value, bucket.count);
    }
    ensure!(
        facets.buckets.first().map(|b| (b.value.as_str(), b.count)) == Some(("userpass-alice", 3)),
        "expected userpass-alice first with 3 events, got {:?}",
        facets.buckets
    );
    ensure!(facets.other == 1, "one event falls outside the top two");

    // A histogram: events per minute.
    let histogram = index.histogram("*", None, None, Some(Duration::from_secs(60)))?;
    println!("events per minute:");
    for bucket in &histogram.buckets {
        println!("  {} {}", bucket.start.format("%H:%M"), bucket.count);
    }
    let counts: Vec<u64> = histogram.buckets.iter().map(|b| b.count).collect();
    ensure!(
        counts.iter().sum::<u64>() == 6 && counts.first() == Some(&2),
        "expected 6 events, 2 in the first minute: {counts:?}"
    );
    Ok(())
}

// A failure prints the whole error chain and exits 1.
fn main() -> anyhow::Result<()> {
    run()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        super::run().unwrap();
    }
}
