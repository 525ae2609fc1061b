//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and the
//! response types of [`crate::model`] and [`crate::health`], served open at
//! `/api/v1/openapi.json` (it describes the API, it holds no data).

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::health::{HealthReport, StageReport, StageStatus};
use crate::model::{
    AlertView, AlertsPage, ErrorBody, ErrorDetail, EventHit, EventOrigin, FacetCount, Facets,
    Histogram, SearchPage, Severity, SyslogHeader, TimeBucket,
};

/// The document's root: every route and schema.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil API",
        description = "Search the audit events Vigil indexed, read the alerts its rules raised, \
                       and ask for the health of its stages. `/api/v1/*` requires \
                       `Authorization: Bearer <token>`."
    ),
    paths(
        crate::search::search,
        crate::search::event,
        crate::search::histogram,
        crate::search::facets,
        crate::search::alerts,
        crate::healthz,
        crate::readyz,
        crate::render_metrics,
    ),
    components(schemas(
        SearchPage, EventHit, EventOrigin, SyslogHeader, Facets, FacetCount, Histogram,
        TimeBucket, AlertsPage, AlertView, Severity, ErrorBody, ErrorDetail, HealthReport,
        StageReport, StageStatus
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Search the index"),
        (name = "alerts", description = "Alerts raised by the rules"),
        (name = "health", description = "Liveness, readiness and metrics (no token)"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the API routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    facetable_fields(&mut doc);
    doc
}

/// Narrows `field` of `/api/v1/facets` to the fields that can be faceted, read from the
/// index schema so that the document follows it.
fn facetable_fields(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let fields: Vec<&str> = vigil_indexer::FIELDS
        .iter()
        .filter(|f| f.is_facetable())
        .map(|f| f.name)
        .collect();
    let Some(operation) = doc
        .paths
        .paths
        .get_mut("/api/v1/facets")
        .and_then(|item| item.get.as_mut())
    else {
        return;
    };
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.name == "field" {
            parameter.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(fields.clone()))
                    .into(),
            );
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve() -> impl IntoResponse {
    Json(document())
}
