//! Handlers of `/ngsi-ld/v1/types[/{type}]` and `/ngsi-ld/v1/attributes[/{attrId}]`
//! (GS CIM 009 §5.7.5–§5.7.10): discovery documents compacted with the request's context.

use actix_web::web::Path;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Params, accept, header_context, tenant};
use super::{State, respond};
use crate::ops::discover;

fn kinds(set: &std::collections::BTreeSet<crate::model::AttrKind>) -> Value {
    json!(set.iter().map(|k| k.name()).collect::<Vec<_>>())
}

/// Compacts names and sorts them as the client will read them.
fn compacted<'a>(names: impl Iterator<Item = &'a String>, ctx: &crate::jsonld::Context) -> Vec<String> {
    let mut out: Vec<String> = names.map(|n| ctx.compact(n)).collect();
    out.sort();
    out
}

fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", uuid::Uuid::new_v4().simple())
}

/// What every discovery handler reads first: parameters, response type, tenant, context.
async fn input(
    req: &HttpRequest,
    state: &State,
    allowed: &[&str],
) -> Result<(Params, super::extract::Accept, String, std::sync::Arc<crate::jsonld::Context>), ApiError> {
    let p = Params::parse(req, allowed)?;
    let acc = accept(req, false)?;
    let t = tenant(req, state)?;
    let ctx = header_context(req, state).await?;
    Ok((p, acc, t, ctx))
}

/// Retrieve Available Entity Types (§5.7.5) and their details (§5.7.6).
#[utoipa::path(get, path = "/ngsi-ld/v1/types", tag = "Discovery", params(("details" = Option<String>, Query, description = "true: EntityType objects")), responses((status = 200, description = "EntityTypeList or EntityType array", body = serde_json::Value)))]
pub async fn types(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (p, acc, t, ctx) = input(&req, &state, &["details", "local"]).await?;
    let cat = discover::catalogue(&state.broker, &t).await?;
    let body = if p.bool("details")? {
        Value::Array(
            cat.types
                .iter()
                .map(|(iri, s)| {
                    json!({"id": iri, "type": "EntityType", "typeName": ctx.compact(iri),
                           "attributeNames": compacted(s.attrs.keys(), &ctx)})
                })
                .collect(),
        )
    } else {
        json!({"id": list_id("EntityTypeList"), "type": "EntityTypeList",
               "typeList": compacted(cat.types.keys(), &ctx)})
    };
    Ok(respond::document(body, &ctx, acc))
}

/// Retrieve Available Entity Type Information (§5.7.7).
#[utoipa::path(get, path = "/ngsi-ld/v1/types/{type}", tag = "Discovery", params(("type" = String, Path, description = "Entity type")), responses((status = 200, description = "EntityTypeInfo", body = serde_json::Value), (status = 404, description = "No entity of that type", body = crate::http::error::ProblemDetails)))]
pub async fn one_type(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let (_, acc, t, ctx) = input(&req, &state, &["local"]).await?;
    let iri = ctx.expand(&path);
    let cat = discover::one_type(&state.broker, &t, &iri).await?;
    let s = &cat.types[&iri];
    let details: Vec<Value> = s
        .attrs
        .iter()
        .map(
            |(a, k)| json!({"id": a, "type": "Attribute", "attributeName": ctx.compact(a), "attributeTypes": kinds(k)}),
        )
        .collect();
    let body = json!({"id": iri, "type": "EntityTypeInfo", "typeName": ctx.compact(&iri),
                      "entityCount": s.entities, "attributeDetails": details});
    Ok(respond::document(body, &ctx, acc))
}

/// Retrieve Available Attributes (§5.7.8) and their details (§5.7.9).
#[utoipa::path(get, path = "/ngsi-ld/v1/attributes", tag = "Discovery", params(("details" = Option<String>, Query, description = "true: Attribute objects")), responses((status = 200, description = "AttributeList or Attribute array", body = serde_json::Value)))]
pub async fn attributes(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (p, acc, t, ctx) = input(&req, &state, &["details", "local"]).await?;
    let cat = discover::catalogue(&state.broker, &t).await?;
    let body = if p.bool("details")? {
        Value::Array(
            cat.attrs
                .iter()
                .map(|(iri, s)| {
                    json!({"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri),
                           "typeNames": compacted(s.types.iter(), &ctx)})
                })
                .collect(),
        )
    } else {
        json!({"id": list_id("AttributeList"), "type": "AttributeList",
               "attributeList": compacted(cat.attrs.keys(), &ctx)})
    };
    Ok(respond::document(body, &ctx, acc))
}

/// Retrieve Available Attribute Information (§5.7.10).
#[utoipa::path(get, path = "/ngsi-ld/v1/attributes/{attrId}", tag = "Discovery", params(("attrId" = String, Path, description = "Attribute name")), responses((status = 200, description = "Attribute", body = serde_json::Value), (status = 404, description = "No entity has it", body = crate::http::error::ProblemDetails)))]
pub async fn one_attribute(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let (_, acc, t, ctx) = input(&req, &state, &["local"]).await?;
    let iri = ctx.expand(&path);
    let cat = discover::one_attribute(&state.broker, &t, &iri).await?;
    let s = &cat.attrs[&iri];
    let body = json!({"id": iri, "type": "Attribute", "attributeName": ctx.compact(&iri), "attributeCount": s.entities,
                      "attributeTypes": kinds(&s.kinds),
                      "typeNames": compacted(s.types.iter(), &ctx)});
    Ok(respond::document(body, &ctx, acc))
}
