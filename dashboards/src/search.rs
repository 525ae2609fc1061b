//! Handlers of the search and alert routes: parameters parsed and range-checked here (a bad
//! one is a 400 naming it; no parameter can make a handler panic), the work run on a
//! blocking thread under the query time limit and the concurrent-search limit.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;
use vigil_indexer::{IndexError, SearchRequest};

use crate::error::ApiError;
use crate::model::{AlertView, AlertsPage, ErrorBody, EventHit, Facets, Histogram, SearchPage};
use crate::Shared;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Default `limit` of `/search`.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Default `size` of `/facets`.
pub(crate) const DEFAULT_FACET_SIZE: usize = 10;
/// Default `limit` of `/alerts`.
pub(crate) const DEFAULT_ALERTS_LIMIT: usize = 100;
/// Longest histogram `interval`: a year (366 days), longer than any retention.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// How long a client told "busy" should wait before trying again, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The query string as a map; a query string that does not decode is a 400.
fn params(params: Params) -> Result<HashMap<String, String>, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad("query string", e.body_text()))
}

fn time_param(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    // Present but empty is an error, not "absent": the OpenAPI document says date-time.
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|e| ApiError::bad(name, format!("expected an RFC 3339 time: {e}")))?
        .with_timezone(&Utc);
    // The index keeps nanoseconds since 1970 in an i64; checked here so that the error names
    // this parameter rather than surfacing from the index without one.
    if time.timestamp_nanos_opt().is_none() {
        return Err(ApiError::bad(
            name,
            "outside the years 1677 to 2262 the index can represent",
        ));
    }
    Ok(Some(time))
}

/// `from` and `to`: the half-open range `[from, to)`, `from` before `to` when both are given.
type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn time_range(params: &HashMap<String, String>) -> Result<TimeRange, ApiError> {
    let from = time_param(params, "from")?;
    let to = time_param(params, "to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad("from", "must be before `to`"));
        }
    }
    Ok((from, to))
}

/// A whole number in `1..=max`, `default` when absent.
fn number_param(
    params: &HashMap<String, String>,
    name: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad(
            name,
            format!("expected a whole number from 1 to {max}"),
        )),
    }
}

/// `q`, `*` when absent or blank. Its shape (nesting, clauses, regexes) is checked by the
/// index before parsing ([`IndexError::QueryTooComplex`]).
fn query_param(params: &HashMap<String, String>) -> String {
    params
        .get("q")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
        .unwrap_or("*")
        .to_owned()
}

/// `interval`: a number and a unit (`ms`, `s` (default), `m`, `h`, `d`), from 1 ms to
/// [`MAX_INTERVAL`], computed with checked arithmetic.
fn interval_param(params: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = params.get("interval") else {
        return Ok(None);
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let out_of_range = || ApiError::bad("interval", "must be from 1ms to 366d");
    let n: u64 = number.parse().map_err(|e: std::num::ParseIntError| {
        if number.is_empty() {
            ApiError::bad(
                "interval",
                "expected a number and a unit, e.g. 30s, 5m, 1h, 1d",
            )
        } else if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            out_of_range()
        } else {
            ApiError::bad("interval", e.to_string())
        }
    })?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(ApiError::bad("interval", "unit must be ms, s, m, h or d")),
    };
    let millis = n.checked_mul(millis_per_unit).ok_or_else(out_of_range)?;
    let interval = Duration::from_millis(millis);
    if millis == 0 || interval > MAX_INTERVAL {
        return Err(out_of_range());
    }
    Ok(Some(interval))
}

/// Maps an index error on a request parameter to the parameter the client gave.
fn index_error(e: IndexError, parameter: &'static str) -> ApiError {
    match e {
        IndexError::Timeout(d) => {
            ApiError::Timeout(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        IndexError::Busy { .. } => ApiError::Busy(RETRY_AFTER_SECS),
        IndexError::InvalidCursor => ApiError::bad("cursor", e.to_string()),
        IndexError::QueryTooComplex { .. } => ApiError::bad("q", e.to_string()),
        IndexError::TooManyBuckets { .. } => ApiError::bad("interval", e.to_string()),
        // Handlers check `field` before the index sees it, so an unknown field is the query's.
        IndexError::InvalidQuery { .. } | IndexError::UnknownField(_) | IndexError::QueryFailed => {
            ApiError::bad("q", e.to_string())
        }
        IndexError::NotFacetable(_) => ApiError::bad("field", e.to_string()),
        e if e.is_client_error() => ApiError::bad(parameter, e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// A place among the searches allowed to run at once, waiting in order for up to the queue
/// timeout; 429 past it.
async fn search_slot(shared: &Shared) -> Result<OwnedSemaphorePermit, ApiError> {
    let acquire = std::sync::Arc::clone(&shared.searches).acquire_owned();
    match tokio::time::timeout(shared.limits.search_queue_timeout, acquire).await {
        Ok(Ok(permit)) => Ok(permit),
        // Timed out, or the semaphore closed (never done): the client should retry.
        Ok(Err(_)) | Err(_) => Err(ApiError::Busy(RETRY_AFTER_SECS)),
    }
}

/// Runs blocking work off the async threads, bounded by the query time limit. The work holds
/// a search place until it really ends, even when the client was answered 503 before.
async fn blocking<T: Send + 'static, E: Send + 'static>(
    shared: &Shared,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, ApiError> {
    let permit = search_slot(shared).await?;
    let timeout = shared.app()?.query_timeout;
    let task = tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(ApiError::Timeout(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        )),
        Ok(Err(join)) => Err(ApiError::Internal(join.to_string())),
        Ok(Ok(result)) => Ok(result),
    }
}

/// Blocking index work whose errors are mapped onto `parameter`.
async fn index_work<T: Send + 'static>(
    shared: &Shared,
    parameter: &'static str,
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(shared, work)
        .await?
        .map_err(|e| index_error(e, parameter))
}

/// Search events, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "events",
    params(
        ("q" = Option<String>, Query, description = "Query over the dotted field names (`*` or empty: everything)"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Inclusive lower bound on the event time (RFC 3339, years 1677 to 2262)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Exclusive upper bound on the event time (RFC 3339), after `from`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Hits per page (default 50; at most the index's `max_hits`, 1000 by default)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9a-f]{48}$", description = "The `cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of hits", body = SearchPage),
        (status = 400, description = "A parameter is invalid; the body names it", body = ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = ErrorBody),
        (status = 429, description = "Too many searches at once; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The query ran past its time limit, or the index is not open yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    State(shared): State<Shared>,
    query: Params,
) -> Result<Json<SearchPage>, ApiError> {
    let params = params(query)?;
    let app = shared.app()?;
    let max = app.searcher.limits().max_hits;
    let limit = number_param(&params, "limit", DEFAULT_LIMIT.min(max), max)?;
    let (from, to) = time_range(&params)?;
    // An empty cursor is refused by the index as not one it handed out.
    let cursor = params.get("cursor").cloned();
    let request = SearchRequest {
        query: query_param(&params),
        from,
        to,
        limit,
        cursor,
    };
    let searcher = app.searcher.clone();
    index_work(&shared, "limit", move || searcher.search(&request))
        .await
        .map(|r| Json(r.into()))
}

/// One event by its id.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{32}$", description = "Vigil's event id")),
    responses(
        (status = 200, description = "The event", body = EventHit),
        (status = 400, description = "Not an event id", body = ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No event with that id", body = ErrorBody),
        (status = 429, description = "Too many searches at once", body = ErrorBody),
        (status = 503, description = "The query ran past its time limit, or the index is not open yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn event(
    State(shared): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventHit>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad("id", e.body_text()))?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad("id", "an event id is 32 hex digits"));
    }
    let app = shared.app()?;
    let mut request = SearchRequest::new(format!("event_id:{}", id.to_ascii_lowercase()));
    request.limit = 1;
    let searcher = app.searcher.clone();
    let response = index_work(&shared, "id", move || searcher.search(&request)).await?;
    response
        .hits
        .into_iter()
        .next()
        .map(|h| Json(h.into()))
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// Matching events per time bucket.
#[utoipa::path(
    get,
    path = "/api/v1/histogram",
    tag = "events",
    params(
        ("q" = Option<String>, Query, description = "Query (`*` or empty: everything)"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Inclusive lower bound on the event time (RFC 3339)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Exclusive upper bound on the event time (RFC 3339), after `from`"),
        ("interval" = Option<String>, Query, pattern = "^[0-9]{1,12}(ms|s|m|h|d)?$", description = "Bucket width: a number and a unit (ms, s, m, h, d), 1ms to 366d; picked to fit the range when absent"),
    ),
    responses(
        (status = 200, description = "The buckets", body = Histogram),
        (status = 400, description = "A parameter is invalid (or asks for too many buckets); the body names it", body = ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = ErrorBody),
        (status = 429, description = "Too many searches at once", body = ErrorBody),
        (status = 503, description = "The query ran past its time limit, or the index is not open yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn histogram(
    State(shared): State<Shared>,
    query: Params,
) -> Result<Json<Histogram>, ApiError> {
    let params = params(query)?;
    let app = shared.app()?;
    let query = query_param(&params);
    let (from, to) = time_range(&params)?;
    let interval = interval_param(&params)?;
    let searcher = app.searcher.clone();
    index_work(&shared, "interval", move || {
        searcher.histogram(&query, from, to, interval)
    })
    .await
    .map(|r| Json(r.into()))
}

/// The most frequent values of one field among the matching events.
#[utoipa::path(
    get,
    path = "/api/v1/facets",
    tag = "events",
    params(
        ("field" = String, Query, description = "The field to count, e.g. `request.path`"),
        ("q" = Option<String>, Query, description = "Query (`*` or empty: everything)"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Inclusive lower bound on the event time (RFC 3339)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Exclusive upper bound on the event time (RFC 3339), after `from`"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many values (default 10; at most the index's `max_facet_values`, 1000 by default)"),
    ),
    responses(
        (status = 200, description = "The top values", body = Facets),
        (status = 400, description = "A parameter is invalid; the body names it", body = ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = ErrorBody),
        (status = 429, description = "Too many searches at once", body = ErrorBody),
        (status = 503, description = "The query ran past its time limit, or the index is not open yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn facets(
    State(shared): State<Shared>,
    query: Params,
) -> Result<Json<Facets>, ApiError> {
    let params = params(query)?;
    let app = shared.app()?;
    let field = params
        .get("field")
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad("field", "required, e.g. field=request.path"))?;
    if vigil_indexer::field_spec(&field).is_none() {
        return Err(ApiError::bad("field", format!("unknown field `{field}`")));
    }
    let max = app.searcher.limits().max_facet_values;
    let size = number_param(&params, "size", DEFAULT_FACET_SIZE.min(max), max)?;
    let query = query_param(&params);
    let (from, to) = time_range(&params)?;
    let searcher = app.searcher.clone();
    index_work(&shared, "size", move || {
        searcher.facets(&field, &query, from, to, size)
    })
    .await
    .map(|r| Json(r.into()))
}

/// The sort key of an alert in `/alerts`: newest `last_seen` first, then by id.
fn alert_key(alert: &vigil_rules::Alert) -> (i64, &str) {
    // Times outside what nanoseconds in an i64 hold (never written by the engine, which
    // takes event times the index accepted) sort at the ends.
    let nanos =
        alert
            .last_seen
            .timestamp_nanos_opt()
            .unwrap_or(if alert.last_seen.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            });
    (nanos, alert.id.as_str())
}

/// The `before` cursor naming an alert: its `last_seen` as 16 hex digits (sign bit flipped),
/// then its id.
fn alert_cursor(alert: &vigil_rules::Alert) -> String {
    let (nanos, id) = alert_key(alert);
    format!("{:016x}{id}", (nanos as u64) ^ (1 << 63))
}

fn parse_alert_cursor(text: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad("before", "not a cursor this API handed out");
    if !(17..=80).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let time = u64::from_str_radix(&text[..16], 16).map_err(|_| bad())?;
    Ok(((time ^ (1 << 63)) as i64, text[16..].to_owned()))
}

/// Stored alerts, most recently seen first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Alerts per page (default 100, at most 1000)"),
        ("before" = Option<String>, Query, pattern = "^[0-9a-f]{17,80}$", description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of alerts", body = AlertsPage),
        (status = 400, description = "A parameter is invalid; the body names it", body = ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = ErrorBody),
        (status = 404, description = "The rules engine does not run in this process", body = ErrorBody),
        (status = 429, description = "Too many searches at once", body = ErrorBody),
        (status = 503, description = "The store took too long, or the server is not ready yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn alerts(
    State(shared): State<Shared>,
    query: Params,
) -> Result<Json<AlertsPage>, ApiError> {
    let params = params(query)?;
    let max = shared.limits.max_alerts_page;
    let limit = number_param(&params, "limit", DEFAULT_ALERTS_LIMIT.min(max), max)?;
    let before = match params.get("before") {
        Some(text) => Some(parse_alert_cursor(text)?),
        None => None,
    };
    let Some(store) = shared.app()?.alerts.clone() else {
        return Err(ApiError::NotFound(
            "alerts (the rules engine does not run in this process)".into(),
        ));
    };
    let page = blocking(&shared, move || {
        // The store has no ordered index to seek in: read every alert and page here. The
        // alert table is bounded by the rules engine's retention.
        let mut all = store.alerts(usize::MAX)?;
        all.sort_by(|a, b| {
            let (ta, ia) = alert_key(a);
            let (tb, ib) = alert_key(b);
            tb.cmp(&ta).then_with(|| ia.cmp(ib))
        });
        let start = match &before {
            None => 0,
            Some((time, id)) => all.partition_point(|a| {
                let (t, i) = alert_key(a);
                t > *time || (t == *time && i <= id.as_str())
            }),
        };
        let mut page: Vec<vigil_rules::Alert> =
            all.into_iter().skip(start).take(limit + 1).collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(alert_cursor)
        } else {
            None
        };
        Ok::<_, vigil_rules::StoreError>((page, next))
    })
    .await?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (alerts, next) = page;
    Ok(Json(AlertsPage {
        count: alerts.len(),
        alerts: alerts.into_iter().map(AlertView::from).collect(),
        next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> HashMap<String, String> {
        HashMap::from([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn intervals_are_parsed_with_checked_arithmetic() {
        let ok = |text: &str| interval_param(&one("interval", text)).ok().flatten();
        assert_eq!(ok("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(ok("30"), Some(Duration::from_secs(30)));
        assert_eq!(ok("5m"), Some(Duration::from_secs(300)));
        assert_eq!(ok("366d"), Some(MAX_INTERVAL));
        for bad in [
            "0s",
            "0ms",
            "367d",
            "307445734561825861m",   // overflows u64 milliseconds
            "18446744073709551616s", // overflows u64
            "99999999999999999999999999999d",
            "5x",
            "m",
            "-5s",
            "1.5h",
            "",
            " 5m",
        ] {
            let e = interval_param(&one("interval", bad));
            assert!(
                matches!(
                    e,
                    Err(ApiError::BadParameter {
                        parameter: "interval",
                        ..
                    })
                ),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn numbers_are_range_checked() {
        let p = |text: &str| number_param(&one("limit", text), "limit", 5, 100);
        assert_eq!(p("1").ok(), Some(1));
        assert_eq!(p("100").ok(), Some(100));
        assert_eq!(number_param(&HashMap::new(), "limit", 5, 100).ok(), Some(5));
        for bad in [
            "0",
            "101",
            "-1",
            "1e3",
            "99999999999999999999999999",
            "",
            " 5",
        ] {
            assert!(
                matches!(
                    p(bad),
                    Err(ApiError::BadParameter {
                        parameter: "limit",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn index_limits_map_to_429_and_to_400s_naming_the_parameter() {
        assert!(matches!(
            index_error(IndexError::Busy { max: 2 }, "limit"),
            ApiError::Busy(RETRY_AFTER_SECS)
        ));
        let too_complex = IndexError::QueryTooComplex {
            what: vigil_indexer::error::QueryLimit::Depth,
            found: 33,
            max: 32,
        };
        assert!(matches!(
            index_error(too_complex, "limit"),
            ApiError::BadParameter { parameter: "q", .. }
        ));
        let buckets = IndexError::TooManyBuckets {
            buckets: 1 << 40,
            max: 10_000,
        };
        assert!(matches!(
            index_error(buckets, "size"),
            ApiError::BadParameter {
                parameter: "interval",
                ..
            }
        ));
        assert!(matches!(
            index_error(IndexError::Timeout(Duration::from_secs(2)), "q"),
            ApiError::Timeout(2000)
        ));
    }

    #[test]
    fn alert_cursors_round_trip_and_refuse_foreign_text() {
        let alert = vigil_rules::Alert {
            id: "0123456789abcdef0123456789abcdef".to_owned(),
            revision: 0,
            rule_id: "r".to_owned(),
            title: "t".to_owned(),
            severity: vigil_rules::Level::High,
            group_key: String::new(),
            first_seen: DateTime::from_timestamp(1_795_000_000, 5).expect("time"),
            last_seen: DateTime::from_timestamp(1_795_000_100, 7).expect("time"),
            count: 1,
            request_ids: vec![],
            event_ids: vec![],
            tags: vec![],
            description: String::new(),
        };
        let cursor = alert_cursor(&alert);
        let (time, id) = parse_alert_cursor(&cursor).expect("round trip");
        assert_eq!((time, id.as_str()), alert_key(&alert));
        for bad in ["", "abc", "zz", &"f".repeat(81), "0123456789abcdef"] {
            assert!(parse_alert_cursor(bad).is_err(), "{bad}");
        }
    }
}
