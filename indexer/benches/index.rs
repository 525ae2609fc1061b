//! Indexing throughput: events per second added and committed, over the vendored corpus
//! (testdata/corpus/main.log).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexedEvent, SearchRequest};

fn corpus() -> Vec<IndexedEvent> {
    let text = vigil_testkit::corpus::read("main.log");
    text.lines()
        .map(|l| {
            let event = AuditEvent::parse(l.as_bytes()).expect("corpus line parses");
            IndexedEvent::new(event, Origin::new("node-1", "main", SourceKind::File))
        })
        .collect()
}

fn fresh_index() -> (tempfile::TempDir, EventIndex) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EventIndex::open(dir.path(), IndexConfig::default()).expect("open");
    (dir, index)
}

fn indexing(c: &mut Criterion) {
    let events = corpus();
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("add_and_commit_corpus", |b| {
        b.iter_batched(
            fresh_index,
            |(dir, index)| {
                for ev in &events {
                    index.add(ev).expect("add");
                }
                index.commit().expect("commit");
                (dir, index)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let (_dir, index) = fresh_index();
    for ev in &events {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");
    let mut group = c.benchmark_group("search");
    group.bench_function("first_page_of_star", |b| {
        b.iter(|| index.search(&SearchRequest::new("*")).expect("search"))
    });
    group.bench_function("client_token_term", |b| {
        let req = SearchRequest::new(
            "auth.client_token:hmac-sha256:c28dbf02466277b7ece6dff79110ca04e1370e78eec12382eeee0b46177233d8",
        );
        b.iter(|| index.search(&req).expect("search"))
    });
    group.bench_function("facet_request_path", |b| {
        b.iter(|| {
            index
                .facets("request.path", "*", None, None, 10)
                .expect("facets")
        })
    });
    group.finish();
}

criterion_group!(benches, indexing);
criterion_main!(benches);
