//! Events per second through the whole built-in pack: the vendored corpus's main device,
//! with the HMAC findings already attached as the collector would send them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_event::{AuditEvent, DeviceOptions, HmacChecker, Origin, SourceKind};
use vigil_rules::{AlertConfig, RulesEngine, Ruleset, WatchLists};

fn corpus() -> Vec<(AuditEvent, Origin)> {
    let text = vigil_testkit::corpus::read("main.log");
    let checker = HmacChecker::new(DeviceOptions::default());
    text.lines()
        .filter_map(|l| AuditEvent::parse(l.as_bytes()).ok())
        .map(|e| {
            let mut o = Origin::new("node-1", "main", SourceKind::File);
            o.findings = checker.check(&e);
            (e, o)
        })
        .collect()
}

fn pack(c: &mut Criterion) {
    let events = corpus();
    let ruleset = Ruleset::builtin().expect("pack loads");
    let mut lists = WatchLists::new();
    lists.insert("honeytokens", Some("main"), "hmac-sha256:00");
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("pack_over_main_log", |b| {
        b.iter(|| {
            // A fresh engine per pass so that every pass does the same work.
            let mut engine =
                RulesEngine::new(ruleset.clone(), lists.clone(), AlertConfig::default());
            let mut n = 0usize;
            for (e, o) in &events {
                n += engine.evaluate(e, o).len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, pack);
criterion_main!(benches);
