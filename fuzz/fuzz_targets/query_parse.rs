//! Arbitrary query text through `vigil_indexer`'s search, facets and histogram over a small
//! on-disk index: every input must give an answer or a client error (the HTTP API's 400) or a
//! time-out, never a panic, a stack overflow or an internal error. Each search runs on a
//! thread with a 1 MiB stack, so that a query the depth check let through too deep would
//! overflow it and be reported (the main thread's 8 MiB would hide a moderate excess).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexError, IndexedEvent, SearchRequest};

const LINES: &[&str] = &[
    r#"{"time":"2026-11-22T16:33:32Z","type":"request","auth":{"client_token":"hmac-sha256:0a0b","display_name":"userpass-alice","policies":["default","payments"]},"request":{"id":"r1","operation":"read","path":"secret/data/payments/db","remote_address":"10.4.2.7"}}"#,
    r#"{"time":"2026-11-22T16:33:33Z","type":"response","auth":{"display_name":"approle"},"request":{"id":"r1","operation":"read","path":"secret/data/payments/db","remote_address":"::1"},"error":"permission denied"}"#,
    r#"{"time":"2026-11-22T16:34:00Z","type":"request","request":{"id":"r2","operation":"update","path":"sys/audit/file","namespace":{"id":"root"}}}"#,
];

fn index() -> &'static EventIndex {
    static INDEX: OnceLock<EventIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        // libFuzzer's hook aborts on every panic, even one the indexer catches and turns into
        // `IndexError::QueryFailed` (a Tantivy bug some query shapes reach). Only a panic that
        // escapes the search must count as a crash: it still does, through `join` below.
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
        let dir = std::env::temp_dir().join(format!("vigil-fuzz-query-{}", std::process::id()));
        // A directory left by an earlier run of this pid would hold the same events: fine.
        let config = IndexConfig {
            writer_threads: 1,
            ..IndexConfig::default()
        };
        let index = EventIndex::open(&dir, config).expect("open the fuzz index");
        for line in LINES {
            let event = AuditEvent::parse(line.as_bytes()).expect("seed line");
            let origin = Origin::new("n1", "main", SourceKind::File);
            index.add(&IndexedEvent::new(event, origin)).expect("add");
        }
        index.commit().expect("commit");
        index
    })
}

fn acceptable(result: Result<(), IndexError>, what: &str, query: &str) {
    match result {
        Ok(()) => {}
        Err(e) if e.is_client_error() => {}
        Err(IndexError::Timeout(_)) => {}
        Err(e) => panic!("{what} of {query:?}: not a client error: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let index = index();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn_scoped(s, || {
                acceptable(index.searcher().validate_query(query), "validate", query);
                let request = SearchRequest {
                    limit: 10,
                    ..SearchRequest::new(query)
                };
                acceptable(index.search(&request).map(drop), "search", query);
                acceptable(
                    index.facets("request.path", query, None, None, 5).map(drop),
                    "facets",
                    query,
                );
                acceptable(
                    index.histogram(query, None, None, None).map(drop),
                    "histogram",
                    query,
                );
            })
            .expect("spawn")
            .join()
            .expect("the search thread panicked");
    });
});
