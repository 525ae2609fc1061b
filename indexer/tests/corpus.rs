//! The index over the vendored corpus (main.log: 3301 lines from a real OpenBao), checked against counts
//! computed independently from the JSON with serde_json.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_indexer::{
    EventIndex, EventSearcher, IndexConfig, IndexError, IndexedEvent, SearchRequest,
};

fn lines() -> Vec<String> {
    vigil_testkit::corpus::read("main.log")
        .lines()
        .map(str::to_string)
        .collect()
}

fn json_lines() -> Vec<Value> {
    lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect()
}

fn events() -> Vec<IndexedEvent> {
    lines()
        .iter()
        .map(|l| {
            let event = AuditEvent::parse(l.as_bytes()).expect("corpus line parses");
            IndexedEvent::new(event, Origin::new("node-1", "main", SourceKind::File))
        })
        .collect()
}

fn config() -> IndexConfig {
    IndexConfig {
        writer_threads: 1,
        ..IndexConfig::default()
    }
}

/// An index of the whole corpus in a fresh directory.
fn corpus_index() -> (tempfile::TempDir, EventIndex) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EventIndex::open(dir.path(), config()).expect("open");
    for ev in events() {
        index.add(&ev).expect("add");
    }
    index.commit().expect("commit");
    (dir, index)
}

fn pointer<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

fn time_of(v: &Value) -> DateTime<Utc> {
    pointer(v, "/time")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("time")
        .with_timezone(&Utc)
}

fn total(index: &EventIndex, query: &str) -> u64 {
    let mut req = SearchRequest::new(query);
    req.limit = 0;
    index.search(&req).expect(query).total
}

#[test]
fn star_matches_every_line() {
    let (_dir, index) = corpus_index();
    assert_eq!(total(&index, "*"), 3301);
    assert_eq!(total(&index, ""), 3301);
    assert_eq!(index.num_docs(), 3301);
}

#[test]
fn client_token_finds_exactly_its_events() {
    let (_dir, index) = corpus_index();
    let json = json_lines();
    // The identity with the most events of one userpass login.
    let mut per_token: HashMap<&str, u64> = HashMap::new();
    for v in &json {
        if pointer(v, "/auth/display_name").is_some_and(|n| n.starts_with("userpass-")) {
            if let Some(t) = pointer(v, "/auth/client_token") {
                *per_token.entry(t).or_default() += 1;
            }
        }
    }
    let (token, _) = per_token
        .iter()
        .max_by_key(|(t, c)| (**c, *t))
        .expect("a userpass token");
    let expected = json
        .iter()
        .filter(|v| pointer(v, "/auth/client_token") == Some(token))
        .count() as u64;
    assert!(expected > 10);

    let quoted = format!("auth.client_token:\"{token}\"");
    let unquoted = format!("auth.client_token:{token}");
    assert_eq!(total(&index, &quoted), expected);
    assert_eq!(total(&index, &unquoted), expected);

    // Every hit carries the token.
    let mut req = SearchRequest::new(quoted);
    req.limit = 1000;
    let page = index.search(&req).expect("search");
    assert_eq!(page.hits.len() as u64, expected.min(1000));
    for hit in &page.hits {
        assert_eq!(pointer(&hit.raw, "/auth/client_token"), Some(*token));
    }

    // A bare HMAC searches the raw line: it also finds the events where the token appears
    // elsewhere (request.client_token, response.auth, data).
    let anywhere = json
        .iter()
        .filter(|v| v.to_string().contains(*token))
        .count() as u64;
    assert_eq!(total(&index, &format!("\"{token}\"")), anywhere);
    assert_eq!(total(&index, token), anywhere);
}

#[test]
fn redelivery_does_not_duplicate() {
    let (_dir, index) = corpus_index();
    for ev in events().iter().take(500) {
        index.add(ev).expect("add");
    }
    let stamp = index.commit().expect("commit");
    assert_eq!(stamp.added, 500);
    assert_eq!(stamp.num_docs, 3301);
    // Twice within one uncommitted batch, too.
    let all = events();
    for ev in all.iter().chain(all.iter()) {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");
    assert_eq!(total(&index, "*"), 3301);
}

#[test]
fn pagination_walks_every_hit_once_newest_first() {
    let (_dir, index) = corpus_index();
    let mut seen = HashSet::new();
    let mut last_time: Option<String> = None;
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let req = SearchRequest {
            query: "*".into(),
            from: None,
            to: None,
            limit: 97,
            cursor: cursor.clone(),
        };
        let page = index.search(&req).expect("page");
        assert_eq!(page.total, 3301);
        assert!(!page.hits.is_empty(), "page {} is empty", pages + 1);
        pages += 1;
        for hit in &page.hits {
            assert!(seen.insert(hit.id.clone()), "hit {} twice", hit.id);
            let t = DateTime::parse_from_rfc3339(&hit.time).expect("rfc3339");
            if let Some(prev) = &last_time {
                let prev = DateTime::parse_from_rfc3339(prev).expect("rfc3339");
                assert!(t <= prev, "{t} after {prev}");
            }
            last_time = Some(hit.time.clone());
        }
        match page.cursor {
            Some(c) => {
                assert_eq!(page.hits.len(), 97);
                cursor = Some(c);
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 3301);
    assert_eq!(pages, 3301usize.div_ceil(97));
}

#[test]
fn cursor_stays_valid_while_events_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EventIndex::open(dir.path(), config()).expect("open");
    let all = events();
    let (first, second) = all.split_at(2000);
    for ev in first {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");

    let mut req = SearchRequest::new("*");
    req.limit = 500;
    let page1 = index.search(&req).expect("page 1");
    // Index the rest (older and newer events mixed) between pages.
    for ev in second {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");
    req.cursor = page1.cursor.clone();
    let page2 = index.search(&req).expect("page 2");
    // Both pages full: at least 1500 events are older than the first page's last.
    assert_eq!(page1.hits.len(), 500);
    assert_eq!(page2.hits.len(), 500);
    let ids1: HashSet<_> = page1.hits.iter().map(|h| &h.id).collect();
    assert!(page2.hits.iter().all(|h| !ids1.contains(&h.id)));
    let last1 = &page1.hits.last().expect("hits").time;
    for hit in &page2.hits {
        assert!(
            DateTime::parse_from_rfc3339(&hit.time).ok()
                <= DateTime::parse_from_rfc3339(last1).ok()
        );
    }
}

#[test]
fn time_range_filters() {
    let (_dir, index) = corpus_index();
    let json = json_lines();
    let mut times: Vec<DateTime<Utc>> = json.iter().map(time_of).collect();
    times.sort();
    let from = times[1000];
    let to = times[2500];
    let expected = times.iter().filter(|t| **t >= from && **t < to).count() as u64;
    let req = SearchRequest {
        query: "*".into(),
        from: Some(from),
        to: Some(to),
        limit: 10,
        cursor: None,
    };
    let page = index.search(&req).expect("search");
    assert_eq!(page.total, expected);
    // Newest first: the first hit is the newest before `to`.
    let newest = times.iter().filter(|t| **t < to).max().expect("some");
    let first = DateTime::parse_from_rfc3339(&page.hits[0].time).expect("rfc3339");
    assert_eq!(first, *newest);

    // The same range written in the query language over the time field.
    let q = format!(
        "time:[{} TO {}}}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    );
    assert_eq!(total(&index, &q), expected);

    // from == to is refused, not silently empty.
    let bad = SearchRequest {
        from: Some(to),
        ..req
    };
    assert!(matches!(
        index.search(&bad),
        Err(IndexError::InvalidRequest(_))
    ));
}

#[test]
fn field_queries_match_independent_counts() {
    let (_dir, index) = corpus_index();
    let json = json_lines();
    let count = |f: &dyn Fn(&Value) -> bool| json.iter().filter(|v| f(v)).count() as u64;

    let path = "secret/data/payments/svc20";
    assert_eq!(
        total(&index, &format!("request.path:{path}")),
        count(&|v| pointer(v, "/request/path") == Some(path))
    );
    assert_eq!(
        total(&index, &format!("request.path.raw:\"{path}\"")),
        count(&|v| pointer(v, "/request/path") == Some(path))
    );
    // Wildcard over the exact path.
    assert_eq!(
        total(&index, "request.path:secret/data/payments/*"),
        count(&|v| pointer(v, "/request/path")
            .is_some_and(|p| p.starts_with("secret/data/payments/")))
    );
    // One segment of a path.
    assert_eq!(
        total(&index, "request.path:payments"),
        count(
            &|v| pointer(v, "/request/path").is_some_and(|p| p.split('/').any(|s| s == "payments"))
        )
    );
    assert_eq!(
        total(&index, "auth.display_name:userpass-alice"),
        count(&|v| pointer(v, "/auth/display_name") == Some("userpass-alice"))
    );
    assert_eq!(
        total(&index, "type:request AND outcome:denied"),
        count(&|v| {
            pointer(v, "/type") == Some("request")
                && (pointer(v, "/error").is_some_and(|e| e.contains("permission denied"))
                    || v.pointer("/auth/policy_results/allowed") == Some(&Value::Bool(false)))
        })
    );
    assert_eq!(
        total(&index, "error:\"permission denied\""),
        count(&|v| pointer(v, "/error").is_some_and(|e| e.contains("permission denied")))
    );
    assert_eq!(
        total(&index, "error:*"),
        count(&|v| pointer(v, "/error").is_some_and(|e| !e.is_empty()))
    );
    assert_eq!(
        total(&index, "request.remote_address:10.20.0.0/16"),
        count(&|v| pointer(v, "/request/remote_address").is_some_and(|a| a.starts_with("10.20.")))
    );
    assert_eq!(
        total(&index, "request.remote_address:203.0.113.66"),
        count(&|v| pointer(v, "/request/remote_address") == Some("203.0.113.66"))
    );
    assert_eq!(
        total(&index, "request.remote_address:[10.20.1.0 TO 10.20.1.255]"),
        count(&|v| pointer(v, "/request/remote_address").is_some_and(|a| a.starts_with("10.20.1.")))
    );
    assert_eq!(
        total(&index, "request.path:*"),
        count(&|v| pointer(v, "/request/path").is_some_and(|p| !p.is_empty()))
    );
    assert_eq!(
        total(&index, "-type:request"),
        count(&|v| pointer(v, "/type") != Some("request"))
    );
    // Bare words are ANDed over path, display name, error and the raw line.
    assert_eq!(
        total(&index, "alice lookup-self"),
        count(&|v| {
            let raw = v.to_string();
            raw.contains("alice") && raw.contains("lookup-self")
        })
    );
}

#[test]
fn facets_sum_to_totals() {
    let (_dir, index) = corpus_index();
    for field in [
        "request.path",
        "auth.display_name",
        "request.remote_address",
        "outcome",
        "type",
        "request.operation",
        "request.mount_point",
    ] {
        let f = index.facets(field, "*", None, None, 5).expect(field);
        let sum: u64 = f.buckets.iter().map(|b| b.count).sum();
        assert_eq!(sum + f.other + f.missing, 3301, "{field}");
        assert_eq!(f.total, 3301);
        assert!(
            f.buckets.windows(2).all(|w| w[0].count >= w[1].count),
            "{field}"
        );
    }
    let json = json_lines();
    let names = index
        .facets("auth.display_name", "type:request", None, None, 3)
        .expect("facets");
    let approle = json
        .iter()
        .filter(|v| pointer(v, "/type") == Some("request"))
        .filter(|v| pointer(v, "/auth/display_name") == Some("approle"))
        .count() as u64;
    assert_eq!(names.buckets[0].value, "approle");
    assert_eq!(names.buckets[0].count, approle);

    let outcome = index
        .facets("outcome", "*", None, None, 10)
        .expect("facets");
    assert_eq!(outcome.missing, 0);
    assert_eq!(outcome.other, 0);

    // Multi-valued: each event counts once per policy.
    let policies = index
        .facets("auth.policies", "*", None, None, 100)
        .expect("facets");
    let expected: u64 = json
        .iter()
        .filter_map(|v| v.pointer("/auth/policies").and_then(Value::as_array))
        .map(|a| a.len() as u64)
        .sum();
    let sum: u64 = policies.buckets.iter().map(|b| b.count).sum();
    assert_eq!(sum + policies.other, expected);

    assert!(matches!(
        index.facets("raw", "*", None, None, 5),
        Err(IndexError::NotFacetable(_))
    ));
    assert!(matches!(
        index.facets("nope", "*", None, None, 5),
        Err(IndexError::UnknownField(_))
    ));
}

#[test]
fn histogram_sums_to_totals() {
    let (_dir, index) = corpus_index();
    let h = index.histogram("*", None, None, None).expect("histogram");
    assert_eq!(h.total, 3301);
    assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), 3301);
    assert!(
        h.buckets.len() <= 100 && h.buckets.len() > 1,
        "{}",
        h.buckets.len()
    );
    assert!(h.buckets.windows(2).all(|w| w[0].start < w[1].start));

    let denied = total(&index, "outcome:denied");
    let h = index
        .histogram(
            "outcome:denied",
            None,
            None,
            Some(std::time::Duration::from_secs(10)),
        )
        .expect("histogram");
    assert_eq!(h.interval_ms, 10_000);
    assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), denied);

    // With a range: buckets cover it, empty ones included.
    let json = json_lines();
    let mut times: Vec<DateTime<Utc>> = json.iter().map(time_of).collect();
    times.sort();
    let (from, to) = (times[100], times[3000]);
    let h = index
        .histogram("*", Some(from), Some(to), None)
        .expect("histogram");
    let in_range = times.iter().filter(|t| **t >= from && **t < to).count() as u64;
    assert_eq!(h.total, in_range);
    assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), in_range);
    assert!(h.buckets[0].start <= from);

    let too_many = index.histogram("*", None, None, Some(std::time::Duration::from_millis(1)));
    assert!(matches!(too_many, Err(IndexError::TooManyBuckets { .. })));
}

#[test]
fn bad_queries_are_typed_errors() {
    let (_dir, index) = corpus_index();
    let search = |q: &str| index.search(&SearchRequest::new(q));
    for q in [
        "type:(request",
        "auth.display_name:\"unterminated",
        "a AND (b",
    ] {
        match search(q) {
            Err(IndexError::InvalidQuery { reason }) => assert!(!reason.is_empty()),
            other => panic!("{q}: {other:?}"),
        }
    }
    match search("no.such.field:x") {
        Err(IndexError::UnknownField(name)) => assert_eq!(name, "no.such.field"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        search("request.remote_address:not-an-ip"),
        Err(IndexError::InvalidQuery { .. })
    ));
    assert!(matches!(
        search("request.remote_address:10.0.0.0/40"),
        Err(IndexError::InvalidQuery { .. })
    ));
    let mut req = SearchRequest::new("*");
    req.limit = 5000;
    assert!(matches!(
        index.search(&req),
        Err(IndexError::InvalidRequest(_))
    ));
    req.limit = 10;
    req.cursor = Some("garbage".into());
    assert!(matches!(index.search(&req), Err(IndexError::InvalidCursor)));
    assert!(IndexError::InvalidCursor.is_client_error());
}

#[test]
fn retention_deletes_old_events() {
    let (_dir, index) = corpus_index();
    let json = json_lines();
    let mut times: Vec<DateTime<Utc>> = json.iter().map(time_of).collect();
    times.sort();
    let cutoff = times[1650];
    let older = times.iter().filter(|t| **t < cutoff).count() as u64;
    let reported = index.delete_older_than(cutoff).expect("delete");
    assert_eq!(reported, older);
    // Nothing changes before the commit.
    assert_eq!(total(&index, "*"), 3301);
    index.commit().expect("commit");
    assert_eq!(total(&index, "*"), 3301 - older);
    let h = index
        .histogram("*", None, Some(cutoff), None)
        .expect("histogram");
    assert_eq!(h.total, 0);
}

#[test]
fn payload_and_read_only_searcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EventIndex::open(dir.path(), config()).expect("open");
    assert_eq!(index.last_commit_payload().expect("payload"), None);
    let all = events();
    for ev in &all[..1000] {
        index.add(ev).expect("add");
    }
    index
        .commit_with_payload(r#"{"audit":{"0":1000}}"#)
        .expect("commit");

    let reader = EventSearcher::open_read_only(dir.path(), Default::default()).expect("reader");
    assert_eq!(reader.num_docs(), 1000);
    assert_eq!(
        reader.last_commit_payload().expect("payload").as_deref(),
        Some(r#"{"audit":{"0":1000}}"#)
    );
    // A second writer is refused while the first holds the lock.
    assert!(matches!(
        EventIndex::open(dir.path(), config()),
        Err(IndexError::Locked(_))
    ));

    for ev in &all[1000..] {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");
    reader.reload().expect("reload");
    assert_eq!(reader.num_docs(), 3301);
    let page = reader.search(&SearchRequest::new("*")).expect("search");
    assert_eq!(page.total, 3301);
    // A commit without payload clears it.
    assert_eq!(index.last_commit_payload().expect("payload"), None);

    index.close().expect("close");
    let reopened = EventIndex::open(dir.path(), config()).expect("reopen");
    assert_eq!(reopened.num_docs(), 3301);
}

#[test]
fn read_only_open_of_missing_index_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none");
    assert!(matches!(
        EventSearcher::open_read_only(&missing, Default::default()),
        Err(IndexError::NotFound(_))
    ));
    assert!(!missing.exists());
}

#[test]
fn hits_carry_the_event() {
    let (_dir, index) = corpus_index();
    let mut req = SearchRequest::new("request.path:auth/userpass/login/dave");
    req.limit = 1;
    let page = index.search(&req).expect("search");
    let hit = &page.hits[0];
    assert_eq!(hit.path.as_deref(), Some("auth/userpass/login/dave"));
    assert_eq!(hit.origin.node, "node-1");
    assert_eq!(hit.origin.device, "main");
    assert_eq!(hit.origin.source, "file");
    assert_eq!(hit.id.len(), 32);
    assert_eq!(pointer(&hit.raw, "/request/path"), hit.path.as_deref());
    let as_json = serde_json::to_value(hit).expect("serialize");
    assert_eq!(as_json["type"], hit.kind.as_str());
    // Nanoseconds survive: the hit's time is the line's time.
    let line_time =
        DateTime::parse_from_rfc3339(pointer(&hit.raw, "/time").expect("time")).expect("rfc3339");
    assert_eq!(
        DateTime::parse_from_rfc3339(&hit.time).ok(),
        Some(line_time)
    );
}

#[test]
fn searches_past_the_time_limit_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EventIndex::open(dir.path(), config()).expect("open");
    for ev in events().iter().take(100) {
        index.add(ev).expect("add");
    }
    index.commit().expect("commit");
    let limits = vigil_indexer::SearchLimits {
        query_timeout: std::time::Duration::ZERO,
        ..Default::default()
    };
    let reader = EventSearcher::open_read_only(dir.path(), limits).expect("reader");
    assert!(matches!(
        reader.search(&SearchRequest::new("*")),
        Err(IndexError::Timeout(_))
    ));
    assert!(matches!(
        reader.facets("type", "*", None, None, 5),
        Err(IndexError::Timeout(_))
    ));
}
