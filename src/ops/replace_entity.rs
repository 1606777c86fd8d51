//! Replace Entity (GS CIM 009 §5.6.18): the entity's types and attributes become the body's;
//! `createdAt` is kept.

use std::sync::Arc;

use serde_json::Value;

use super::{Broker, entity_not_found};
use crate::error::NgsiResult;
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<()> {
    let now = now_millis();
    let mut body = std::borrow::Cow::Borrowed(body);
    let path = format!("/ngsi-ld/v1/entities/{}", crate::forward::segment(id));
    let op = crate::registry::registration::Op::ReplaceEntity;
    if let Some(f) =
        super::forward_fragment(b, tenant, id, &body, ctx, dist, op, reqwest::Method::PUT, &path, true).await?
    {
        super::refused(&f)?;
        if f.redirected && !f.attrs_left() {
            return Ok(());
        }
        body = std::borrow::Cow::Owned(Value::Object(f.rest));
    }
    let input = super::fragment_for(b, tenant, id, &body, ctx, now).await?;
    let owned = id.to_owned();
    b.write_one(
        tenant,
        false,
        Write::new(id, move |cur| {
            let cur = cur.ok_or_else(|| entity_not_found(&owned))?;
            let mut e = input.clone().into_entity(owned.clone(), now);
            if e.types.is_empty() {
                e.types = cur.types.clone();
            }
            e.created_at = cur.created_at;
            // The store's index keys share the stored id's allocation.
            e.id = cur.id.clone();
            Ok(Mutation::Put(e))
        }),
    )
    .await?;
    Ok(())
}
