//! `vigil bench`: measures the embedded pipeline (file → collector → bus → index) on a file
//! built from corpus lines: events/s indexed, and event→searchable latency.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vigil_indexer::SearchRequest;

use crate::app::pipeline::EmbeddedPipeline;
use crate::data_dir::DataDir;
use crate::settings::{FileSource, Settings};
use crate::tasks::{runtime, TaskSet};

/// Arguments of `vigil bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Size of the generated audit log, in MB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Audit log whose lines are repeated (request ids made unique per copy); gzip-compressed
    /// when its name ends in `.gz`.
    #[arg(long, default_value = "testdata/corpus/main.log.gz")]
    corpus: PathBuf,
    /// Working directory (the generated file and the data dir); a temporary one by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Latency samples: single events appended one at a time after the backfill.
    #[arg(long, default_value_t = 100)]
    samples: usize,
}

/// Runs the benchmark and prints the figures.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile_dir()?,
    };
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("audit.log");
    let (lines, bytes, template) = build_log(&args.corpus, &log, args.size_mb * 1_000_000)?;
    eprintln!(
        "vigil bench: {} events, {:.0} MB in {}",
        lines,
        bytes as f64 / 1e6,
        log.display()
    );

    let mut settings = Settings {
        data_dir: dir.join("data"),
        ..Settings::default()
    };
    settings.sources.file.push(FileSource::new(log.clone()));
    let data_dir = DataDir::create(&settings.data_dir)?;
    let shutdown = CancellationToken::new();
    let mut tasks = TaskSet::new();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    // Exactly what `vigil run` runs: sources, embedded bus, index and rules engine.
    let pipeline = EmbeddedPipeline::start(&settings, &data_dir, &mut tasks, &shutdown).await?;
    let (index, stats) = (pipeline.index, pipeline.index_stats);
    let Some(rules) = pipeline.rules else {
        bail!("the rules engine is off");
    };
    let searcher = index.searcher().clone();
    while searcher.num_docs() < lines || rules.stats.events.load(Ordering::Relaxed) < lines {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("backfill did not finish within an hour");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "backfill: {lines} events, {:.0} MB in {secs:.1} s: {:.0} events/s, {:.1} MB/s, {:.1} CPU s ({:.1} CPU s per million events)",
        bytes as f64 / 1e6,
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs,
        cpu,
        cpu / (lines as f64 / 1e6)
    );

    // Latency: one event at a time, appended and flushed, then searched for until visible,
    // and waited for in the alert store. Each is a `sys/raw` read, which the pack alerts on
    // (the first fires an alert; the rest merge into it and are published within the
    // engine's 1 s flush).
    let mut file = std::fs::OpenOptions::new().append(true).open(&log)?;
    let mut latencies = Vec::with_capacity(args.samples);
    let mut alert_latencies = Vec::with_capacity(args.samples);
    for n in 0..args.samples {
        let id = format!("bench-latency-{n}");
        let mut event = template.clone();
        event["request"]["id"] = Value::String(id.clone());
        event["type"] = Value::String("request".into());
        event["request"]["path"] = Value::String("sys/raw/logical".into());
        event["request"]["operation"] = Value::String("read".into());
        let mut line = serde_json::to_vec(&event)?;
        line.push(b'\n');
        let mut request = SearchRequest::new(format!("request.id:\"{id}\""));
        request.limit = 1;
        let t0 = Instant::now();
        file.write_all(&line)?;
        file.flush()?;
        loop {
            if searcher.search(&request)?.total > 0 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("event {id} not searchable after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t0.elapsed());
        loop {
            let store = Arc::clone(&rules.store);
            let alerts = tokio::task::spawn_blocking(move || store.alerts(1000)).await??;
            if alerts.iter().any(|a| a.request_ids.contains(&id)) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("event {id} raised no alert after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        alert_latencies.push(t0.elapsed());
        // Pause a varying time so that samples land at every phase of the commit cycle, as
        // events of a live stream do, instead of always just after a commit.
        tokio::time::sleep(Duration::from_millis((n as u64 * 379) % 1500)).await;
    }
    let pct = |sorted: &[Duration], p: f64| {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    latencies.sort();
    alert_latencies.sort();
    println!(
        "event->searchable: {} samples, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (commit interval {} ms)",
        latencies.len(),
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
        settings.index.commit_interval_ms
    );
    println!(
        "event->alert: {} samples, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        alert_latencies.len(),
        pct(&alert_latencies, 0.5),
        pct(&alert_latencies, 0.99),
        pct(&alert_latencies, 1.0)
    );
    println!(
        "indexed {} events in {} commits",
        stats.events_indexed.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed)
    );
    shutdown.cancel();
    if !tasks.join().await {
        bail!("a stage failed (see the log above)");
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("vigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes copies of the corpus with request ids unique per copy until `target` bytes.
/// Returns lines, bytes, and one entry to use as a template.
fn build_log(corpus: &Path, out: &Path, target: u64) -> anyhow::Result<(u64, u64, Value)> {
    let mut text = String::new();
    let file =
        std::fs::File::open(corpus).with_context(|| format!("opening {}", corpus.display()))?;
    if corpus.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_string(&mut text)
    }
    .with_context(|| format!("reading {}", corpus.display()))?;
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let template = entries
        .iter()
        .find(|e| e["type"] == "response" && e["request"]["path"].is_string())
        .cloned();
    let Some(template) = template else {
        bail!("{} has no response entries", corpus.display());
    };
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let (mut lines, mut bytes, mut copy) = (0u64, 0u64, 0u64);
    while bytes < target {
        for entry in &entries {
            let mut e = entry.clone();
            match e["request"]["id"].as_str() {
                Some(id) => e["request"]["id"] = Value::String(format!("{copy}-{id}")),
                None => e["bench_copy"] = Value::from(copy),
            }
            let mut line = serde_json::to_vec(&e)?;
            line.push(b'\n');
            file.write_all(&line)?;
            bytes += line.len() as u64;
            lines += 1;
        }
        copy += 1;
    }
    file.flush()?;
    Ok((lines, bytes, template))
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
