//! Handlers of the search routes: parameters parsed and checked here (a bad one is a 400
//! naming it), the query run on a blocking thread under the time limit.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use vigil_indexer::{FacetResponse, HistogramResponse, IndexError, SearchRequest, SearchResponse};

use crate::error::ApiError;
use crate::AppState;

type Params = Query<HashMap<String, String>>;

const DEFAULT_LIMIT: usize = 50;
const DEFAULT_FACET_SIZE: usize = 10;

fn time_param(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = params.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) else {
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

fn number_param(
    params: &HashMap<String, String>,
    name: &'static str,
    default: usize,
) -> Result<usize, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad(name, "expected a whole number of at least 1")),
        },
    }
}

fn query_param(params: &HashMap<String, String>) -> String {
    params
        .get("q")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
        .unwrap_or("*")
        .to_owned()
}

fn interval_param(params: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = params
        .get("interval")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        ApiError::bad(
            "interval",
            "expected a number and a unit, e.g. 30s, 5m, 1h, 1d",
        )
    })?;
    let secs = match unit {
        "ms" => return Ok(Some(Duration::from_millis(n))),
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(ApiError::bad("interval", "unit must be ms, s, m, h or d")),
    };
    Ok(Some(Duration::from_secs(secs)))
}

/// Maps an index error on a request parameter to the parameter the client gave.
fn index_error(e: IndexError, parameter: &'static str) -> ApiError {
    match e {
        IndexError::Timeout(d) => ApiError::Timeout(d.as_millis() as u64),
        IndexError::InvalidCursor => ApiError::bad("cursor", e.to_string()),
        // Handlers check `field` before the index sees it, so an unknown field is the query's.
        IndexError::InvalidQuery { .. } | IndexError::UnknownField(_) => {
            ApiError::bad("q", e.to_string())
        }
        IndexError::NotFacetable(_) => ApiError::bad("field", e.to_string()),
        e if e.is_client_error() => ApiError::bad(parameter, e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// Runs blocking index work off the async threads, bounded by the query time limit.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    parameter: &'static str,
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = state.query_timeout;
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Err(_) => Err(ApiError::Timeout(timeout.as_millis() as u64)),
        Ok(Err(join)) => Err(ApiError::Internal(join.to_string())),
        Ok(Ok(result)) => result.map_err(|e| index_error(e, parameter)),
    }
}

/// `GET /api/v1/search?q=&from=&to=&limit=&cursor=`
pub async fn search(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<SearchResponse>, ApiError> {
    let max = state.searcher.limits().max_hits;
    let limit = number_param(&params, "limit", DEFAULT_LIMIT)?;
    if limit > max {
        return Err(ApiError::bad("limit", format!("at most {max}")));
    }
    let (from, to) = time_range(&params)?;
    let request = SearchRequest {
        query: query_param(&params),
        from,
        to,
        limit,
        cursor: params.get("cursor").filter(|c| !c.is_empty()).cloned(),
    };
    let searcher = state.searcher.clone();
    blocking(&state, "limit", move || searcher.search(&request))
        .await
        .map(Json)
}

/// `GET /api/v1/events/{id}`
pub async fn event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<vigil_indexer::Hit>, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad("id", "an event id is 32 hex digits"));
    }
    let mut request = SearchRequest::new(format!("event_id:{}", id.to_ascii_lowercase()));
    request.limit = 1;
    let searcher = state.searcher.clone();
    let response = blocking(&state, "id", move || searcher.search(&request)).await?;
    response
        .hits
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// `GET /api/v1/histogram?q=&from=&to=&interval=`
pub async fn histogram(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<HistogramResponse>, ApiError> {
    let query = query_param(&params);
    let (from, to) = time_range(&params)?;
    let interval = interval_param(&params)?;
    let searcher = state.searcher.clone();
    blocking(&state, "interval", move || {
        searcher.histogram(&query, from, to, interval)
    })
    .await
    .map(Json)
}

/// `GET /api/v1/facets?field=&q=&from=&to=&size=`
pub async fn facets(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<FacetResponse>, ApiError> {
    let field = params
        .get("field")
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad("field", "required, e.g. field=request.path"))?;
    if vigil_indexer::field_spec(&field).is_none() {
        return Err(ApiError::bad("field", format!("unknown field `{field}`")));
    }
    let size = number_param(&params, "size", DEFAULT_FACET_SIZE)?;
    let query = query_param(&params);
    let (from, to) = time_range(&params)?;
    let searcher = state.searcher.clone();
    blocking(&state, "size", move || {
        searcher.facets(&field, &query, from, to, size)
    })
    .await
    .map(Json)
}

/// `GET /api/v1/alerts?limit=`: stored alerts, most recently seen first.
pub async fn alerts(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = number_param(&params, "limit", 100)?.min(1000);
    let Some(store) = state.alerts.clone() else {
        return Err(ApiError::NotFound(
            "alerts (the rules engine does not run in this process)".into(),
        ));
    };
    let alerts = tokio::task::spawn_blocking(move || store.alerts(limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "count": alerts.len(), "alerts": alerts }),
    ))
}
