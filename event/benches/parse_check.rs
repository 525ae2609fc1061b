//! Parse + HMAC check throughput over corpus lines.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_event::{AuditEvent, HmacChecker};

fn corpus(file: &str) -> Vec<Vec<u8>> {
    vigil_testkit::corpus::lines(file)
}

fn bench(c: &mut Criterion) {
    let checker = HmacChecker::default();
    for file in ["main.log", "raw.log"] {
        let lines = corpus(file);
        let bytes: usize = lines.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("parse_check/{file}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("bytes", |b| {
            b.iter(|| {
                let mut n = 0;
                for l in &lines {
                    let ev = AuditEvent::parse(l).expect("corpus parses");
                    n += checker.check(&ev).len();
                }
                n
            })
        });
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function("events", |b| {
            b.iter(|| {
                lines
                    .iter()
                    .filter_map(|l| AuditEvent::parse(l).ok())
                    .map(|ev| checker.check(&ev).len())
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
