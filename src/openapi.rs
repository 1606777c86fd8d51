//! The OpenAPI description of the HTTP API, generated with utoipa from the handlers'
//! annotations; `openapi/openapi.json` holds the committed copy and a test keeps it fresh.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "Orbis NGSI-LD context broker",
    description = "ETSI GS CIM 009 NGSI-LD API (v1.9.1)",
    license(name = "Apache-2.0")
))]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into())
}
