//! Create Entity (GS CIM 009 §5.6.1): stores a new entity; 409 when the id is taken. Creates
//! the tenant on first use. With context sources registered for it (§4.3.6), the parts of a
//! distributed create succeed or fail on their own: when some fail and others succeed, or
//! several fail, the outcome lists each failure (207).

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{EntityInput, Purpose, parse_entity};
use crate::store::{Mutation, Write};

/// What a create did.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    /// The failed parts of a distributed create that partly succeeded, or failed in several
    /// places (the broker's own failure included); empty when it all succeeded.
    pub errors: Vec<NgsiError>,
    /// Whether some part of it was created (here or on a source).
    pub succeeded: bool,
}

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<Created> {
    let now = now_millis();
    // Attributes registered by context sources are created there (§4.3.6); a redirect
    // registration takes the whole entity.
    if b.forwarder.active(tenant, dist)
        && let Some(fragment) = body.as_object()
        && let Some(Value::String(id)) = fragment.get("id")
    {
        // A malformed entity is refused before any source sees it.
        parse_entity(body, ctx, Purpose::Create, now)?;
        let id = id.clone();
        let types = match fragment.get("type") {
            Some(t) => crate::model::parse::parse_types(t, ctx)?,
            None => Vec::new(),
        };
        let op = crate::registry::registration::Op::CreateEntity;
        super::check_unserved(b, tenant, &id, &types, fragment, ctx, op)?;
        let f = b
            .forwarder
            .fragment(dist, tenant, &id, &types, fragment, ctx, op, reqwest::Method::POST, "/ngsi-ld/v1/entities", true)
            .await;
        if f.forwarded {
            // Exclusive or redirect sources that took every attribute leave the broker nothing
            // to create: it keeps no empty shell of an entity held elsewhere (its retrieval and
            // queries go to those sources).
            let keep_local = f.attrs_left() || (!f.redirected && f.sent.is_empty());
            let (mut errors, mut succeeded) = (f.errors, f.accepted);
            if keep_local {
                match local(b, tenant, &Value::Object(f.rest), ctx, now).await {
                    Ok(_) => succeeded = true,
                    Err(e) => errors.push(e),
                }
            }
            return match (errors.len(), succeeded) {
                (1, false) => Err(errors.remove(0)),
                _ => Ok(Created { id, errors, succeeded }),
            };
        }
    }
    let id = local(b, tenant, body, ctx, now).await?;
    Ok(Created { id, errors: Vec::new(), succeeded: true })
}

/// Creates the entity of an `application/json` body read as text ([`crate::model::text`]), for
/// a tenant with no context sources; returns its id.
pub async fn run_json(
    b: &Broker,
    tenant: &str,
    item: &crate::model::text::Element<'_>,
    ctx: &NgsiResult<Arc<Context>>,
) -> NgsiResult<String> {
    let now = now_millis();
    store(b, tenant, crate::model::text::parse_json_entity(item, ctx, Purpose::Create, now)?, now).await
}

/// Creates the entity in the broker; returns its id.
async fn local(b: &Broker, tenant: &str, body: &Value, ctx: &Context, now: i64) -> NgsiResult<String> {
    store(b, tenant, parse_entity(body, ctx, Purpose::Create, now)?, now).await
}

async fn store(b: &Broker, tenant: &str, input: EntityInput, now: i64) -> NgsiResult<String> {
    let id = input.id.clone().ok_or_else(|| NgsiError::bad_data("an entity needs an id"))?;
    let entity = input.into_entity(id.clone(), now);
    b.write_one(tenant, true, create_write(entity)).await?;
    Ok(id)
}

/// The write that creates `entity` unless its id exists.
pub fn create_write(entity: crate::model::Entity) -> Write {
    Write::new(entity.id.to_string(), move |cur| match cur {
        Some(_) => Err(NgsiError::new(ErrorKind::AlreadyExists, format!("entity {} already exists", entity.id))),
        None => {
            // The mutation runs on the store's writer thread: a copy made there keeps the stored
            // entity out of the request thread's memory, among the request's garbage, where it
            // would keep whole pages resident after the request.
            let mut e = entity.clone();
            e.id = std::sync::Arc::from(&*entity.id);
            Ok(Mutation::Put(e))
        }
    })
}
