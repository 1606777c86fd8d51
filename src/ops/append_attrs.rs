//! Append Entity Attributes (GS CIM 009 §5.6.3, POST /entities/{id}/attrs): adds attributes,
//! overwriting existing instances unless `options=noOverwrite`.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{AttrOutcome, Broker, entity_not_found};
use crate::error::NgsiResult;
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::store::{Mutation, Write};

#[allow(clippy::too_many_arguments)]
pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    no_overwrite: bool,
    dist: &crate::forward::Dist,
) -> NgsiResult<AttrOutcome> {
    // Attributes registered by context sources go to them (§4.3.6); the broker appends the rest.
    let query = if no_overwrite { "?options=noOverwrite" } else { "" };
    let path = format!("/ngsi-ld/v1/entities/{}/attrs{query}", crate::forward::segment(id));
    let op = crate::registry::registration::Op::AppendAttrs;
    match super::forward_fragment(b, tenant, id, body, ctx, dist, op, reqwest::Method::POST, &path, false).await? {
        None => local(b, tenant, id, body, ctx, no_overwrite).await,
        Some(f) => {
            let mut result = match f.attrs_left() {
                true => local(b, tenant, id, &Value::Object(f.rest), ctx, no_overwrite).await?,
                false => AttrOutcome::default(),
            };
            result.updated.extend(f.sent);
            result.not_updated.extend(f.refused);
            Ok(result)
        }
    }
}

async fn local(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    no_overwrite: bool,
) -> NgsiResult<AttrOutcome> {
    let now = now_millis();
    let input = super::fragment_for(b, tenant, id, body, ctx, now).await?;
    let outcome = Arc::new(Mutex::new(AttrOutcome::default()));
    let out = outcome.clone();
    let owned = id.to_owned();
    b.write_one(
        tenant,
        false,
        Write::new(id, move |cur| {
            let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
            let mut result = AttrOutcome::default();
            e.add_types(&input.types);
            // With noOverwrite the scopes given join the existing ones (GS CIM 009 §4.18).
            match (&input.scope, &mut e.scope) {
                (Some(given), Some(existing)) if no_overwrite => {
                    for s in given {
                        if !existing.contains(s) {
                            existing.push(s.clone());
                        }
                    }
                }
                (Some(given), _) => e.scope = Some(Box::new(given.clone())),
                (None, _) => {}
            }
            for (name, instances) in &input.attrs {
                let mut wrote = false;
                for inst in instances {
                    if no_overwrite && e.instance(name, inst.dataset_id()).is_some() {
                        continue;
                    }
                    e.put_instance(name, inst.clone());
                    wrote = true;
                }
                if wrote {
                    result.updated.push(name.to_string());
                } else {
                    result.not_updated.push((name.to_string(), "attribute exists and noOverwrite was given".into()));
                }
            }
            e.modified_at = now;
            *out.lock() = result;
            Ok(Mutation::Put(e))
        }),
    )
    .await?;
    let result = outcome.lock().clone();
    Ok(result)
}
