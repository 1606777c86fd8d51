//! The OpenAPI description of the HTTP API, generated with utoipa from the handlers'
//! annotations; `openapi/openapi.json` holds the committed copy (`cargo xtask codegen`) and a
//! test fails when it is stale.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orbis NGSI-LD context broker",
        description = "ETSI GS CIM 009 NGSI-LD API (v1.9.1), drop-in for FIWARE Orion-LD",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::http::entities::create,
        crate::http::entities::query,
        crate::http::entities::query_post,
        crate::http::entities::purge,
        crate::http::discovery::types,
        crate::http::discovery::one_type,
        crate::http::discovery::attributes,
        crate::http::discovery::one_attribute,
        crate::http::entities::retrieve,
        crate::http::entities::replace,
        crate::http::entities::merge,
        crate::http::entities::delete,
        crate::http::entity_maps::create,
        crate::http::entity_maps::retrieve,
        crate::http::entity_maps::update,
        crate::http::entity_maps::delete,
        crate::http::attrs::append,
        crate::http::attrs::update,
        crate::http::attrs::partial_update,
        crate::http::attrs::replace,
        crate::http::attrs::delete,
        crate::http::batch::create,
        crate::http::batch::upsert,
        crate::http::batch::update,
        crate::http::batch::delete,
        crate::http::batch::merge,
        crate::http::subscriptions::create,
        crate::http::subscriptions::query,
        crate::http::subscriptions::retrieve,
        crate::http::subscriptions::update,
        crate::http::subscriptions::delete,
        crate::http::registrations::create,
        crate::http::registrations::query,
        crate::http::registrations::retrieve,
        crate::http::registrations::update,
        crate::http::registrations::delete,
        crate::http::csource_subscriptions::create,
        crate::http::csource_subscriptions::query,
        crate::http::csource_subscriptions::retrieve,
        crate::http::csource_subscriptions::update,
        crate::http::csource_subscriptions::delete,
        crate::http::temporal::create,
        crate::http::temporal::query,
        crate::http::temporal::query_post,
        crate::http::temporal::retrieve,
        crate::http::temporal::delete,
        crate::http::temporal::append,
        crate::http::temporal::delete_attr,
        crate::http::temporal::update_instance,
        crate::http::temporal::delete_instance,
        crate::http::contexts::list,
        crate::http::contexts::add,
        crate::http::contexts::serve,
        crate::http::contexts::delete,
        crate::http::admin::version,
        crate::http::admin::ex_version,
        crate::http::admin::ping,
        crate::http::admin::tenants,
        crate::http::admin::openapi
    ),
    components(schemas(crate::http::error::ProblemDetails))
)]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_openapi_document_is_fresh() {
        let committed = include_str!("../openapi/openapi.json");
        assert!(
            committed.trim() == super::document().trim(),
            "openapi/openapi.json is stale: run `cargo xtask codegen` and commit the result"
        );
    }
}
