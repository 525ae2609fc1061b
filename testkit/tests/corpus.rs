//! The vendored corpus as the tests see it: every file decompresses to what the manifest
//! says, concurrent first uses agree, and the manifest's helpers find what they name.

use std::collections::BTreeSet;

use vigil_testkit::corpus::{self, Manifest, LOGS};

#[test]
fn every_log_has_the_lines_the_manifest_counts() {
    let m = Manifest::load();
    assert_eq!(m.openbao_version, "2.7.2");
    for file in LOGS {
        let lines = corpus::lines(file);
        assert_eq!(lines.len() as u64, m.lines[file], "{file}");
        assert!(corpus::path(file).is_file());
    }
}

#[test]
fn threads_decompressing_at_once_get_one_whole_file() {
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| corpus::path("syslog.log")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
    let text = std::fs::read_to_string(&paths[0]).unwrap();
    assert_eq!(text.lines().count(), 3301);
    assert!(text.ends_with('\n'));
    // No temporary file left beside it.
    let dir = paths[0].parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn manifest_helpers_find_what_they_name() {
    let m = Manifest::load();
    assert_eq!(
        m.main_hash("token:canary"),
        "hmac-sha256:c48ef5a6288ac6089e85748e10bd05936f011751420664f68a2d27541cfc0acf"
    );
    assert_eq!(m.salt("main"), "cdca0b49-ec84-dcda-f425-1a248d0fc712");
    assert_eq!(m.request_ids("honeytoken_use").len(), 1);
    // Both baselines together.
    let baseline = m.request_ids("baseline");
    assert_eq!(baseline.len(), 703 + 342);
    let label_of = m.label_of();
    assert!(baseline.iter().all(|id| label_of[id] == "baseline"));
    let labels: BTreeSet<&str> = m.scenarios.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels.len(), 10, "{labels:?}");
}

#[test]
fn distinct_copies_do_not_share_request_ids() {
    let ids = |copy| -> BTreeSet<String> {
        corpus::distinct_copy(copy)
            .iter()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["request"]["id"].as_str().map(str::to_owned)
            })
            .collect()
    };
    let (a, b) = (ids(0), ids(1));
    assert!(!a.is_empty());
    assert!(a.is_disjoint(&b));
}
