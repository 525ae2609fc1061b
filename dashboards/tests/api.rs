//! The HTTP API driven through its router (no socket): authentication, search, pagination,
//! events, facets, histograms, alerts and their pages, parameter errors (hostile ones too),
//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document, over a real index in a
//! temporary directory.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vigil_dashboards::{
    ApiOptions, ApiToken, AppState, Health, Metrics, MetricsSource, Sample, SampleKind,
};
use vigil_event::{AuditEvent, Origin, SourceKind};
use vigil_indexer::{EventIndex, IndexConfig, IndexedEvent};
use vigil_rules::{AlertConfig, AlertStore, RulesEngine, Ruleset, WatchLists};

const TOKEN: &str = "test-api-token-0123456789";

/// (time, request id, display name, operation, path, error). Seven requests over four
/// minutes: alice three times on payments, bob denied twice, a CI role, and a root token.
const EVENTS: [(&str, &str, &str, &str, &str, &str); 7] = [
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
    (
        "2026-11-22T16:43:50Z",
        "r7",
        "root",
        "read",
        "sys/mounts",
        "",
    ),
];

fn line(time: &str, id: &str, who: &str, op: &str, path: &str, error: &str) -> String {
    let policies = if who == "root" {
        r#"["root"]"#
    } else {
        r#"["default"]"#
    };
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(r#","error":"{error}""#)
    };
    format!(
        r#"{{"time":"{time}","type":"request","auth":{{"display_name":"{who}","policies":{policies}}},"request":{{"id":"{id}","operation":"{op}","path":"{path}","remote_address":"10.4.2.17"}}{error}}}"#
    )
}

fn events() -> Vec<AuditEvent> {
    EVENTS
        .iter()
        .map(|(t, id, who, op, path, error)| {
            AuditEvent::parse(line(t, id, who, op, path, error).as_bytes()).expect("test line")
        })
        .collect()
}

fn origin() -> Origin {
    Origin::new("vault-0", "main", SourceKind::File)
}

/// A metrics source with one known counter, to find in `/metrics`.
#[derive(Debug)]
struct Fixed;

impl MetricsSource for Fixed {
    fn samples(&self, out: &mut Vec<Sample>) {
        out.push(Sample {
            name: "test_lines_read",
            help: "Lines read by the test source.",
            kind: SampleKind::Counter,
            labels: vec![("source", "vault-0/main".to_owned())],
            value: 42,
        });
    }
}

/// The router over an index holding [`EVENTS`]; the temp dir lives as long as the router.
struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

fn api(alerts: Option<Arc<AlertStore>>) -> Api {
    api_with(alerts, ApiOptions::default())
}

fn state(dir: &tempfile::TempDir, alerts: Option<Arc<AlertStore>>) -> AppState {
    let index = EventIndex::open(&dir.path().join("index"), IndexConfig::default()).expect("index");
    for event in events() {
        index.add(&IndexedEvent::new(event, origin())).expect("add");
    }
    index.commit().expect("commit");
    AppState {
        searcher: index.searcher().clone(),
        token: ApiToken::new(TOKEN).expect("non-empty token"),
        metrics: Arc::new(Metrics::new(vec![Arc::new(Fixed)])),
        query_timeout: Duration::from_secs(10),
        alerts,
    }
}

fn api_with(alerts: Option<Arc<AlertStore>>, options: ApiOptions) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir, alerts);
    Api {
        router: vigil_dashboards::router_with(state, options),
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a 400 naming `parameter`, and returns the message.
    fn bad_parameter(&self, parameter: &str) -> String {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{}", self.text());
        let body = self.json();
        assert_eq!(body["error"]["parameter"], parameter, "{body}");
        let message = body["error"]["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(message.contains(parameter), "{message}");
        message
    }
}

async fn call(router: &Router, uri: &str, authorization: Option<&str>) -> Answer {
    let mut request = Request::builder().uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// A request with the right token.
async fn get(router: &Router, uri: &str) -> Answer {
    call(router, uri, Some(&format!("Bearer {TOKEN}"))).await
}

fn request_ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["request_id"].as_str().expect("request_id").to_owned())
        .collect()
}

#[tokio::test]
async fn api_routes_refuse_a_missing_or_wrong_token() {
    let api = api(None);
    let routes = [
        "/api/v1/search?q=*",
        "/api/v1/events/00000000000000000000000000000000",
        "/api/v1/histogram",
        "/api/v1/facets?field=request.path",
        "/api/v1/alerts",
    ];
    let wrong = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for route in routes {
        for authorization in &wrong {
            let answer = call(&api.router, route, authorization.as_deref()).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{route} with {authorization:?}: {}",
                answer.text()
            );
            assert_eq!(
                answer
                    .headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..]),
                "{route}"
            );
            // The refusal says nothing about the index.
            assert!(!answer.text().contains("hits"), "{}", answer.text());
        }
    }
    // The same request with the token goes through.
    let answer = get(&api.router, "/api/v1/search?q=*").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn search_returns_hits_newest_first_and_the_total() {
    let api = api(None);
    let body = get(
        &api.router,
        "/api/v1/search?q=auth.display_name:userpass-alice",
    )
    .await
    .json();
    assert_eq!(body["total"], 3, "{body}");
    assert_eq!(request_ids(&body), ["r6", "r2", "r1"]);
    assert_eq!(body["cursor"], Value::Null, "one page holds them all");
    let hit = &body["hits"][0];
    assert_eq!(hit["path"], "secret/data/payments/db");
    assert_eq!(hit["origin"]["device"], "main");
    assert_eq!(
        hit["raw"]["request"]["id"], "r6",
        "the raw entry travels with the hit"
    );

    // No query is every event; a time range is [from, to).
    let all = get(&api.router, "/api/v1/search").await.json();
    assert_eq!(all["total"], EVENTS.len(), "{all}");
    let ranged = get(
        &api.router,
        "/api/v1/search?q=request.path:%22secret/data/payments/db%22&from=2026-11-22T16:40:00Z&to=2026-11-22T16:43:20Z",
    )
    .await
    .json();
    assert_eq!(request_ids(&ranged), ["r3", "r1"], "{ranged}");
    let denied = get(&api.router, "/api/v1/search?q=outcome:denied")
        .await
        .json();
    assert_eq!(request_ids(&denied), ["r4", "r3"], "{denied}");
}

#[tokio::test]
async fn bad_queries_and_parameters_are_400s_naming_the_parameter() {
    let api = api(None);
    let cases = [
        ("/api/v1/search?q=request.path:(", "q"),
        ("/api/v1/search?q=no_such_field:x", "q"),
        ("/api/v1/search?limit=0", "limit"),
        ("/api/v1/search?limit=ten", "limit"),
        ("/api/v1/search?limit=1000000", "limit"),
        ("/api/v1/search?from=yesterday", "from"),
        ("/api/v1/search?to=2026-13-01T00:00:00Z", "to"),
        ("/api/v1/search?cursor=not-a-cursor", "cursor"),
        (
            "/api/v1/search?from=2026-11-22T16:42:00Z&to=2026-11-22T16:41:00Z",
            "from",
        ),
        ("/api/v1/search?from=3000-01-01T00:00:00Z", "from"),
        ("/api/v1/histogram?q=no_such_field:x", "q"),
        (
            "/api/v1/histogram?from=2026-11-22T16:42:00Z&to=2026-11-22T16:42:00Z",
            "from",
        ),
        ("/api/v1/histogram?interval=5x", "interval"),
        ("/api/v1/histogram?interval=m", "interval"),
        ("/api/v1/histogram?from=last%20week", "from"),
        ("/api/v1/facets", "field"),
        ("/api/v1/facets?field=no.such.field", "field"),
        ("/api/v1/facets?field=time", "field"),
        ("/api/v1/facets?field=request.path&size=0", "size"),
        ("/api/v1/facets?field=request.path&q=request.path:(", "q"),
        ("/api/v1/events/not-an-id", "id"),
        ("/api/v1/events/%FF%FE", "id"),
        ("/api/v1/alerts?limit=-1", "limit"),
        // Hostile: overflowing and out-of-range numbers, deep nesting, oversized cursors,
        // tiny intervals over long ranges, a query string that is not UTF-8.
        ("/api/v1/search?limit=18446744073709551616", "limit"),
        (
            "/api/v1/search?limit=99999999999999999999999999999",
            "limit",
        ),
        ("/api/v1/facets?field=request.path&size=1001", "size"),
        (
            "/api/v1/facets?field=request.path&size=18446744073709551615",
            "size",
        ),
        ("/api/v1/alerts?limit=1001", "limit"),
        ("/api/v1/alerts?before=zz", "before"),
        // Present but empty is not absent: the document says what each one must be.
        ("/api/v1/search?from=", "from"),
        ("/api/v1/histogram?to=", "to"),
        ("/api/v1/histogram?interval=", "interval"),
        ("/api/v1/search?cursor=", "cursor"),
        ("/api/v1/alerts?before=", "before"),
        ("/api/v1/search?limit=%205", "limit"),
        ("/api/v1/histogram?interval=307445734561825861m", "interval"),
        (
            "/api/v1/histogram?interval=18446744073709551616s",
            "interval",
        ),
        ("/api/v1/histogram?interval=0ms", "interval"),
        ("/api/v1/histogram?interval=400d", "interval"),
        (
            "/api/v1/histogram?interval=1ms&from=1700-01-01T00:00:00Z&to=2200-01-01T00:00:00Z",
            "interval",
        ),
    ];
    let deep = format!("/api/v1/search?q={}x{}", "(".repeat(5000), ")".repeat(5000));
    let deep_facets = format!("/api/v1/facets?field=request.path&q={}", "%5B".repeat(3000));
    let long_cursor = format!("/api/v1/search?cursor={}", "a".repeat(50_000));
    let long_before = format!("/api/v1/alerts?before={}", "a".repeat(50_000));
    let hostile = [
        (deep.as_str(), "q"),
        (deep_facets.as_str(), "q"),
        (long_cursor.as_str(), "cursor"),
        (long_before.as_str(), "before"),
    ];
    for (uri, parameter) in cases.into_iter().chain(hostile) {
        let answer = get(&api.router, uri).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.text()
        );
        let message = answer.bad_parameter(parameter);
        assert!(!message.is_empty(), "{uri}");
    }
}

#[tokio::test]
async fn the_cursor_pages_through_every_event_once() {
    let api = api(None);
    let mut uri = "/api/v1/search?q=*&limit=2".to_owned();
    let mut pages = Vec::new();
    loop {
        let body = get(&api.router, &uri).await.json();
        assert_eq!(body["total"], EVENTS.len(), "every page states the total");
        let ids = request_ids(&body);
        assert!(!ids.is_empty(), "an empty page at {uri}");
        assert!(ids.len() <= 2, "{ids:?}");
        pages.push(ids);
        match body["cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/search?q=*&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages.len(), 4, "7 events, 2 a page: {pages:?}");
    let flat: Vec<String> = pages.concat();
    assert_eq!(flat, ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]);
    assert_eq!(flat.iter().collect::<HashSet<_>>().len(), flat.len());
}

#[tokio::test]
async fn an_event_is_found_by_its_id() {
    let api = api(None);
    let search = get(&api.router, "/api/v1/search?q=request.id:r5")
        .await
        .json();
    let id = search["hits"][0]["id"].as_str().expect("an id").to_owned();
    let event = get(&api.router, &format!("/api/v1/events/{id}")).await;
    assert_eq!(event.status, StatusCode::OK, "{}", event.text());
    let event = event.json();
    assert_eq!(event["request_id"], "r5");
    assert_eq!(event["raw"]["request"]["path"], "secret/data/ci/deploy");
    // Upper-case hex is the same id.
    let upper = get(
        &api.router,
        &format!("/api/v1/events/{}", id.to_uppercase()),
    )
    .await;
    assert_eq!(upper.status, StatusCode::OK);

    let missing = get(
        &api.router,
        "/api/v1/events/0123456789abcdef0123456789abcdef",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert!(missing.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not found")));
}

#[tokio::test]
async fn facets_count_the_top_values() {
    let api = api(None);
    let body = get(&api.router, "/api/v1/facets?field=auth.display_name&size=2")
        .await
        .json();
    assert_eq!(body["field"], "auth.display_name");
    assert_eq!(body["total"], 7, "{body}");
    let buckets: Vec<(String, u64)> = body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["value"].as_str().expect("value").to_owned(),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("userpass-alice".to_owned(), 3),
            ("userpass-bob".to_owned(), 2)
        ]
    );
    assert_eq!(
        body["other"], 2,
        "approle-ci and root are outside the top two"
    );
    assert_eq!(body["distinct"], 4);

    // Restricted by a query.
    let denied = get(
        &api.router,
        "/api/v1/facets?field=request.path&q=outcome:denied",
    )
    .await
    .json();
    let values: Vec<&str> = denied["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["value"].as_str())
        .collect();
    assert_eq!(
        values,
        ["secret/data/payments/db", "secret/metadata/"],
        "{denied}"
    );
}

#[tokio::test]
async fn the_histogram_counts_events_per_interval() {
    let api = api(None);
    let body = get(&api.router, "/api/v1/histogram?interval=1m")
        .await
        .json();
    assert_eq!(body["interval_ms"], 60_000, "{body}");
    assert_eq!(body["total"], 7, "{body}");
    let counts: Vec<(String, u64)> = body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["start"].as_str().expect("start").to_owned(),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect();
    let nonzero: Vec<(&str, u64)> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (&t[11..16], *n))
        .collect();
    assert_eq!(
        nonzero,
        [("16:40", 2), ("16:41", 2), ("16:42", 1), ("16:43", 2)],
        "{body}"
    );

    // With a query and a range, and without an interval (picked to fit the range).
    let body = get(
        &api.router,
        "/api/v1/histogram?q=auth.display_name:userpass-alice&from=2026-11-22T16:40:00Z&to=2026-11-22T16:44:00Z",
    )
    .await
    .json();
    assert_eq!(body["total"], 3, "{body}");
    let sum: u64 = body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .sum();
    assert_eq!(sum, 3, "{body}");
}

#[tokio::test]
async fn alerts_are_listed_when_the_rules_engine_runs_here() {
    // Without a store (`vigil serve`), the route says where alerts are not.
    let without = api(None);
    let answer = get(&without.router, "/api/v1/alerts").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());

    // With one: the built-in pack over the events stores a root-token alert for r7.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(AlertStore::open(&dir.path().join("alerts.redb")).expect("store"));
    let mut engine = RulesEngine::new(
        Ruleset::builtin().expect("pack"),
        WatchLists::new(),
        AlertConfig::default(),
    );
    let mut alerts = Vec::new();
    for event in events() {
        alerts.extend(engine.evaluate(&event, &origin()));
    }
    store
        .commit(&alerts, engine.state())
        .expect("commit alerts");
    let with = api(Some(store));
    let body = get(&with.router, "/api/v1/alerts?limit=50").await.json();
    assert_eq!(body["count"], alerts.len(), "{body}");
    assert_eq!(body["next"], Value::Null, "one page holds them all: {body}");
    let root = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["title"] == "Root token used")
        .unwrap_or_else(|| panic!("no root token alert in {body}"));
    assert_eq!(root["request_ids"], serde_json::json!(["r7"]));
}

#[tokio::test]
async fn healthz_and_metrics_are_open() {
    let api = api(None);
    let health = call(&api.router, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    let body = health.json();
    assert_eq!(body["alive"], true, "{body}");
    assert_eq!(body["stages"], serde_json::json!([]), "{body}");
    let ready = call(&api.router, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["ready"], true);

    let metrics = call(&api.router, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let content_type = metrics
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = metrics.text();
    assert!(
        text.contains("vigil_test_lines_read_total{source=\"vault-0/main\"} 42"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let unknown = call(
        &api.router,
        "/api/v2/search",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// An alert of rule `rule` last seen `minute` minutes after a fixed time.
fn synthetic_alert(n: usize, minute: i64) -> vigil_rules::Alert {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-22T16:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    vigil_rules::Alert {
        id: format!("{n:032x}"),
        revision: 0,
        rule_id: format!("rule-{n}"),
        title: format!("Alert {n}"),
        severity: vigil_rules::Level::Medium,
        group_key: String::new(),
        first_seen: base,
        last_seen: base + chrono::Duration::minutes(minute),
        count: 1,
        request_ids: vec![format!("r{n}")],
        event_ids: vec![],
        tags: vec!["attack.t1078".to_owned()],
        description: "synthetic".to_owned(),
    }
}

#[tokio::test]
async fn alerts_are_paged_newest_first_with_the_next_cursor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(AlertStore::open(&dir.path().join("alerts.redb")).expect("store"));
    // 25 alerts over 10 distinct minutes: ties on last_seen must not lose or repeat any.
    let alerts: Vec<vigil_rules::Alert> = (0..25)
        .map(|n| synthetic_alert(n, (n % 10) as i64))
        .collect();
    let engine = RulesEngine::new(
        Ruleset::builtin().expect("pack"),
        WatchLists::new(),
        AlertConfig::default(),
    );
    store.commit(&alerts, engine.state()).expect("commit");
    let api = api(Some(store));

    let mut uri = "/api/v1/alerts?limit=10".to_owned();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut pages = 0;
    loop {
        let answer = get(&api.router, &uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let body = answer.json();
        let page = body["alerts"].as_array().expect("alerts");
        assert_eq!(body["count"], page.len(), "{body}");
        assert!(!page.is_empty() && page.len() <= 10, "{body}");
        for alert in page {
            seen.push((
                alert["last_seen"].as_str().expect("last_seen").to_owned(),
                alert["id"].as_str().expect("id").to_owned(),
            ));
            assert_eq!(alert["severity"], "medium");
        }
        pages += 1;
        match body["next"].as_str() {
            Some(next) => uri = format!("/api/v1/alerts?limit=10&before={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25, "{seen:?}");
    let unique: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(unique.len(), 25, "an alert shown twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    assert_eq!(seen, sorted, "not newest first, then by id");

    // The default page is 100; a page over 1000 is refused rather than capped.
    let all = get(&api.router, "/api/v1/alerts").await.json();
    assert_eq!(all["count"], 25);
    get(&api.router, "/api/v1/alerts?limit=5000")
        .await
        .bad_parameter("limit");
}

#[tokio::test]
async fn healthz_and_readyz_report_each_stage() {
    let health = Health::new(Duration::from_millis(400));
    let indexer = health.register("indexer");
    let rules = health.register("rules");
    let api = api_with(
        None,
        ApiOptions {
            health: health.clone(),
            ..ApiOptions::default()
        },
    );
    let status = |path: &'static str| {
        let router = api.router.clone();
        async move {
            let answer = call(&router, path, None).await;
            (answer.status, answer.json())
        }
    };

    // Starting: alive, not ready.
    let (code, body) = status("/healthz").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = status("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["stages"][0]["name"], "indexer");
    assert_eq!(body["stages"][0]["status"], "starting");

    // Running, with progress: ready, and the commit age and lag are reported.
    indexer.set_running();
    rules.set_running();
    indexer.report_progress(Some(chrono::Utc::now()), 12);
    let (code, body) = status("/readyz").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["stages"][0]["lag"], 12);
    assert!(
        body["stages"][0]["commit_age_secs"].as_f64().is_some(),
        "{body}"
    );

    // Stuck: lag and no commit for longer than allowed. Alive, not ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rules.report_progress(Some(chrono::Utc::now()), 3);
    let (code, body) = status("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["stages"][0]["status"], "stuck");
    assert_eq!(status("/healthz").await.0, StatusCode::OK);

    // Dead: neither, with the reason.
    rules.set_dead("alert store: disk full");
    let (code, body) = status("/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["alive"], false);
    assert_eq!(body["stages"][1]["status"], "dead");
    assert_eq!(body["stages"][1]["reason"], "alert store: disk full");

    // The same through the metrics-only router of the other roles.
    let other = vigil_dashboards::health_router(Arc::new(Metrics::new(vec![])), health);
    assert_eq!(
        call(&other, "/healthz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&other, "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_server_waiting_for_its_index_answers_not_ready_then_serves() {
    let (router, slot) = vigil_dashboards::waiting_router(
        ApiToken::new(TOKEN).expect("token"),
        Arc::new(Metrics::new(vec![])),
        ApiOptions::default(),
    );
    let ready = call(&router, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.json();
    assert_eq!(body["stages"][0]["name"], "index", "{body}");
    assert_eq!(call(&router, "/healthz", None).await.status, StatusCode::OK);
    let search = get(&router, "/api/v1/search?q=*").await;
    assert_eq!(
        search.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        search.text()
    );
    // The token is checked even before the index is open.
    assert_eq!(
        call(&router, "/api/v1/search", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let dir = tempfile::tempdir().expect("temp dir");
    slot.open(state(&dir, None));
    assert_eq!(call(&router, "/readyz", None).await.status, StatusCode::OK);
    let search = get(&router, "/api/v1/search?q=*").await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text());
    assert_eq!(search.json()["total"], EVENTS.len());
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let api = api(None);
    let answer = call(&api.router, "/api/v1/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let doc = answer.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in [
        "/api/v1/search",
        "/api/v1/events/{id}",
        "/api/v1/histogram",
        "/api/v1/facets",
        "/api/v1/alerts",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{doc}"
    );
    assert!(
        doc["paths"]["/api/v1/search"]["get"]["security"].is_array(),
        "the API routes name the token"
    );
    // `field` of the facets lists exactly the facetable fields.
    let field = doc["paths"]["/api/v1/facets"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "field")
        .expect("field")
        .clone();
    let listed: Vec<&str> = field["schema"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(listed.contains(&"request.path"), "{field}");
    assert!(
        !listed.contains(&"time") && !listed.contains(&"raw"),
        "{field}"
    );
    // Every field a search hit carries is described, so the document is the wire shape.
    let hit = get(&api.router, "/api/v1/search?q=*&limit=1").await.json();
    let described = &doc["components"]["schemas"]["EventHit"]["properties"];
    for field in hit["hits"][0].as_object().expect("a hit").keys() {
        assert!(described[field].is_object(), "field {field} undescribed");
    }
}
