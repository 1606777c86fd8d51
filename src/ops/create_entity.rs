//! Create Entity (GS CIM 009 §5.6.1): stores a new entity; 409 when the id is taken. Creates
//! the tenant on first use.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::{Mutation, Write};

/// Returns the id of the created entity.
pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<String> {
    let now = now_millis();
    let mut body = std::borrow::Cow::Borrowed(body);
    // Attributes registered by context sources are created there (§4.3.6); a redirect
    // registration takes the whole entity.
    if b.forwarder.active(tenant, dist)
        && let Some(fragment) = body.as_object()
        && let Some(Value::String(id)) = fragment.get("id")
    {
        // A malformed entity is refused before any source sees it.
        parse_entity(&body, ctx, Purpose::Create, now)?;
        let id = id.clone();
        let types = match fragment.get("type") {
            Some(t) => crate::model::parse::parse_types(t, ctx)?,
            None => Vec::new(),
        };
        let op = crate::registry::registration::Op::CreateEntity;
        let f = b
            .forwarder
            .fragment(dist, tenant, &id, &types, fragment, ctx, op, reqwest::Method::POST, "/ngsi-ld/v1/entities", true)
            .await;
        super::refused(&f)?;
        if f.redirected && !f.attrs_left() {
            return Ok(id);
        }
        if f.forwarded {
            body = std::borrow::Cow::Owned(Value::Object(f.rest));
        }
    }
    let input = parse_entity(&body, ctx, Purpose::Create, now)?;
    let id = input.id.clone().ok_or_else(|| NgsiError::bad_data("an entity needs an id"))?;
    let entity = input.into_entity(id.clone(), now);
    b.write_one(tenant, true, create_write(entity)).await?;
    Ok(id)
}

/// The write that creates `entity` unless its id exists.
pub fn create_write(entity: crate::model::Entity) -> Write {
    Write::new(entity.id.clone(), move |cur| match cur {
        Some(_) => Err(NgsiError::new(ErrorKind::AlreadyExists, format!("entity {} already exists", entity.id))),
        None => Ok(Mutation::Put(entity.clone())),
    })
}
