//! The audit logs the repository vendors under `testdata/corpus/` (captured from OpenBao 2.7.2
//! through five audit devices; `testdata/README.md` says how) and their manifest.
//!
//! The files are stored gzip-compressed. [`path`] decompresses one on first use into a
//! directory under the build's target directory and returns the copy's path; test processes
//! running side by side share that copy safely (each writes a temporary file and renames it
//! into place, so a reader never sees half a file).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

/// The five audit logs, one per device kind, in the manifest's order.
pub const LOGS: [&str; 5] = [
    "main.log",
    "noacc.log",
    "raw.log",
    "socket.log",
    "syslog.log",
];

/// Where the compressed files live in the repository.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus")
}

/// The build's target directory: `$CARGO_TARGET_DIR`, else the ancestor of the running test
/// binary that cargo marked with `CACHEDIR.TAG`, else `target/` of the workspace.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_owned();
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// FNV-1a: a stable digest of the compressed bytes, so that a changed corpus gets a fresh
/// directory instead of a stale copy.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Serialises decompression within one process (threads of one test binary); processes are
/// kept apart by the temporary name and the rename.
static DECOMPRESS: Mutex<()> = Mutex::new(());

/// The path of the decompressed corpus file `name` (`main.log`, `manifest.json`, …),
/// decompressing `testdata/corpus/<name>.gz` on first use. Panics when the file is not in
/// the repository.
pub fn path(name: &str) -> PathBuf {
    let gz = source_dir().join(format!("{name}.gz"));
    let compressed = std::fs::read(&gz).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the corpus is vendored in testdata/corpus/)",
            gz.display()
        )
    });
    let dir = target_dir()
        .join("vigil-testdata")
        .join(format!("{:016x}", digest(&compressed)));
    let out = dir.join(name);
    if out.is_file() {
        return out;
    }
    let _guard = DECOMPRESS.lock().unwrap_or_else(|e| e.into_inner());
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut decoder = flate2::read::GzDecoder::new(compressed.as_slice());
        let file = File::create(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
        let mut writer = BufWriter::new(file);
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = decoder
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("decompress {}: {e}", gz.display()));
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        }
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    }
    std::fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), out.display()));
    out
}

/// The text of corpus file `name`.
pub fn read(name: &str) -> String {
    let p = path(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The non-empty lines of corpus file `name`, as bytes (syslog lines keep their header).
pub fn lines(name: &str) -> Vec<Vec<u8>> {
    let p = path(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Copy number `copy` of main.log, one line per event, with request ids made unique to the
/// copy (lines without a request id get an extra field, so their id, the hash of their
/// bytes, changes too): appended to a file, each copy is that many new events.
pub fn distinct_copy(copy: usize) -> Vec<String> {
    read("main.log")
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).expect("main.log line is JSON");
            match v["request"]["id"].as_str() {
                Some(id) => v["request"]["id"] = Value::String(format!("{copy}-{id}")),
                None => v["test_copy"] = Value::from(copy),
            }
            v.to_string()
        })
        .collect()
}

/// `manifest.json`: what the capture did and what its logs hold.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// The OpenBao version captured.
    pub openbao_version: String,
    /// Audit devices by name (`main`, `noacc`, `raw`, `sock`, `sys`).
    pub devices: BTreeMap<String, Device>,
    /// Known plaintext → HMAC pairs, per device.
    pub hashes: Vec<HashPair>,
    /// The scenarios, in the order they ran.
    pub scenarios: Vec<Scenario>,
    /// Lines per log file.
    pub lines: BTreeMap<String, u64>,
}

/// One audit device of the capture.
#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    /// `file`, `socket` or `syslog`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The device's options as OpenBao was given them.
    pub options: BTreeMap<String, String>,
    /// The device's HMAC key: every `hmac-sha256:` value of its log is keyed with its bytes.
    pub salt: String,
}

/// A plaintext and its HMAC as one device writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct HashPair {
    /// The device (a key of [`Manifest::devices`]).
    pub device: String,
    /// What it is: `token:alice`, `accessor:canary`, `token:root`, …
    pub name: String,
    /// The plaintext.
    pub plaintext: String,
    /// `hmac-sha256:<hex>`.
    pub hash: String,
}

/// One labelled stretch of the capture.
#[derive(Debug, Clone, Deserialize)]
pub struct Scenario {
    /// `baseline`, `brute_force_login`, … (`baseline` appears twice).
    pub label: String,
    /// `alert`, `finding` or `none`.
    pub expect: String,
    /// What the scenario did.
    pub description: String,
    /// `request.id` of every entry it produced (request and response share one).
    pub request_ids: Vec<String>,
}

impl Manifest {
    /// Reads the vendored `manifest.json`.
    pub fn load() -> Manifest {
        serde_json::from_str(&read("manifest.json")).expect("manifest.json matches Manifest")
    }

    /// The HMAC device `device` writes for `name` (`token:canary`, say).
    pub fn hash(&self, device: &str, name: &str) -> &str {
        self.hashes
            .iter()
            .find(|h| h.device == device && h.name == name)
            .map(|h| h.hash.as_str())
            .unwrap_or_else(|| panic!("the manifest has no hash {name} for device {device}"))
    }

    /// The HMAC of `name` on the `main` device (the one main.log was written by).
    pub fn main_hash(&self, name: &str) -> &str {
        self.hash("main", name)
    }

    /// The salt (HMAC key) of `device`.
    pub fn salt(&self, device: &str) -> &str {
        &self
            .devices
            .get(device)
            .unwrap_or_else(|| panic!("the manifest has no device {device}"))
            .salt
    }

    /// The request ids of every scenario labelled `label` (both `baseline`s together).
    pub fn request_ids(&self, label: &str) -> BTreeSet<&str> {
        let ids: BTreeSet<&str> = self
            .scenarios
            .iter()
            .filter(|s| s.label == label)
            .flat_map(|s| s.request_ids.iter().map(String::as_str))
            .collect();
        assert!(
            self.scenarios.iter().any(|s| s.label == label),
            "the manifest has no scenario {label}"
        );
        ids
    }

    /// The label of the scenario each request id belongs to; ids of no scenario (setup
    /// traffic, OpenBao's own test entries) are absent.
    pub fn label_of(&self) -> HashMap<&str, &str> {
        self.scenarios
            .iter()
            .flat_map(|s| {
                s.request_ids
                    .iter()
                    .map(move |id| (id.as_str(), s.label.as_str()))
            })
            .collect()
    }
}
