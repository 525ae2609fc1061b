//! `vigil run` on a file audit device rotated by rename-and-create under write load, with a
//! kill -9 of vigil right after a rotation: after the restart, every line written is
//! searchable exactly once.
//!
//! The writer behaves like Vault: it appends one audit line at a time to the file it holds
//! open; logrotate renames the file and creates an empty one; the writer keeps writing to the
//! renamed file until its "SIGHUP", then reopens the path.
//!
//! "Exactly once" is checked on the indexer's counters, not only on the search total (which
//! cannot show a duplicate: the index replaces a document with the same id): after the last
//! restart, the documents it added are exactly those missing, and what it read again is
//! counted as replaced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_testkit::corpus;
use vigil_testkit::vigil::{search_total, VigilRun};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const WAIT: Duration = Duration::from_secs(40);
const INDEXED: &str = "vigil_events_indexed_total";
const REPLACED: &str = "vigil_events_replaced_total";

/// The number of events in the index under `data`, read by `vigil search` (no server).
fn committed(data: &Path) -> u64 {
    search_total(VIGIL, data, "*")
}

/// Corpus lines made distinct: each written line gets a request id of its own (or, without
/// one, an extra field), so that the search total counts lines.
struct Lines {
    templates: Vec<Value>,
}

impl Lines {
    fn load() -> Self {
        let text = corpus::read("main.log");
        let templates = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("corpus line is JSON"))
            .collect();
        Self { templates }
    }

    fn line(&self, n: u64) -> Vec<u8> {
        let index = usize::try_from(n).expect("fits") % self.templates.len();
        let mut event = self.templates[index].clone();
        match event["request"]["id"].as_str() {
            Some(id) => event["request"]["id"] = Value::String(format!("rot{n}-{id}")),
            None => event["test_line"] = Value::from(n),
        }
        let mut bytes = serde_json::to_vec(&event).expect("serialise");
        bytes.push(b'\n');
        bytes
    }
}

/// A Vault-like writer: one line at a time, to the file it holds, until stopped.
struct Writer {
    file: Arc<Mutex<File>>,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Writer {
    fn start(path: &Path) -> Self {
        let lines = Lines::load();
        let file = Arc::new(Mutex::new(append_to(path)));
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (file, written, stop) = (file.clone(), written.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10 {
                        let mut file = file.lock().expect("not poisoned");
                        let n = written.load(Ordering::Relaxed);
                        file.write_all(&lines.line(n)).expect("write");
                        written.store(n + 1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            file,
            written,
            stop,
            thread,
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// SIGHUP: reopen the path.
    fn reopen(&self, path: &Path) {
        *self.file.lock().expect("not poisoned") = append_to(path);
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer did not panic");
        self.written.load(Ordering::Relaxed)
    }
}

fn append_to(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log")
}

/// logrotate `create`: rename to `audit.log.N`, create an empty file.
fn rename_and_create(log: &Path, n: usize) {
    let mut rotated = log.as_os_str().to_owned();
    rotated.push(format!(".{n}"));
    std::fs::rename(log, PathBuf::from(rotated)).expect("rename");
    File::create(log).expect("create");
}

fn wait_until_indexed(run: &VigilRun, at_least: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    while run.total("*") < at_least {
        assert!(std::time::Instant::now() < deadline, "vigil keeps up");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_right_after_rotations_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let data = dir.path().join("data");
    let writer = Writer::start(&log);
    let mut run = VigilRun::start(VIGIL, &data, std::slice::from_ref(&log));
    let mut rotation = 0;
    let mut before = 0;
    for round in 0..3 {
        // Under load for a while, with one ordinary rotation.
        thread::sleep(Duration::from_millis(400));
        rotation += 1;
        rename_and_create(&log, rotation);
        thread::sleep(Duration::from_millis(50));
        writer.reopen(&log);
        wait_until_indexed(&run, writer.written() / 2);
        thread::sleep(Duration::from_millis(300));

        // Rotate and kill vigil at once: before Vault's SIGHUP on even rounds (the renamed
        // file still grows while vigil is down), just after it on odd ones.
        rotation += 1;
        rename_and_create(&log, rotation);
        if round % 2 == 0 {
            run.kill9();
            thread::sleep(Duration::from_millis(100));
            writer.reopen(&log);
        } else {
            thread::sleep(Duration::from_millis(20));
            writer.reopen(&log);
            run.kill9();
        }
        // What survived the kill (vigil is down: nothing commits while this reads).
        before = committed(&data);
        run = VigilRun::start(VIGIL, &data, std::slice::from_ref(&log));
    }
    thread::sleep(Duration::from_millis(300));
    let written = writer.finish();
    assert_eq!(
        run.wait_for_total("*", written, WAIT),
        written,
        "every line"
    );
    // The last run added exactly the lines missing after the last kill; whatever it read
    // again was counted as replaced, not added.
    let missing = written - before;
    let deadline = Instant::now() + WAIT;
    let (indexed, replaced) = loop {
        let indexed = run.metric(INDEXED).expect(INDEXED);
        let replaced = run.metric(REPLACED).expect(REPLACED);
        if indexed >= missing && indexed - replaced == missing {
            break (indexed, replaced);
        }
        assert!(
            Instant::now() < deadline,
            "last run: {indexed} indexed, {replaced} replaced; {missing} were missing"
        );
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "{before} committed before the last kill; the last run indexed {indexed}, {replaced} again"
    );
    assert!(
        replaced <= before,
        "{replaced} replaced, only {before} were there"
    );
    assert_eq!(run.total("*"), written, "nothing twice");
    assert!(run.stop(), "clean exit on SIGTERM");
}
