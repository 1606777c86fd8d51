//! Replace Attribute (GS CIM 009 §5.6.19, PUT /entities/{id}/attrs/{attrId}): the instance is
//! replaced as a whole; it must exist.

use std::sync::Arc;

use serde_json::Value;

use super::{Broker, check_attr_name, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::parse_attribute;
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<Vec<NgsiError>> {
    check_entity_id(id)?;
    check_attr_name(attr)?;
    let mut done_remotely = false;
    if b.forwarder.active(tenant, dist) {
        let types = super::local_types(b, tenant, id).await?;
        let op = crate::registry::registration::Op::ReplaceAttrs;
        let name = ctx.expand(attr);
        let keep = b
            .forwarder
            .single_attr(dist, tenant, id, &types, &name, Some(body), ctx, op, reqwest::Method::PUT, "")
            .await?;
        if !keep.keep_local {
            return Ok(Vec::new());
        }
        done_remotely = keep.done_remotely;
    }
    // The broker's part; an attribute only an inclusive source holds was handled there.
    let local: NgsiResult<()> = async {
        b.require_tenant(tenant).await?;
        let now = now_millis();
        let parsed = parse_attribute(attr, body, ctx, now)?;
        let name = ctx.expand(attr);
        let (owned, attr) = (id.to_owned(), attr.to_owned());
        b.write_one(
            tenant,
            false,
            Write::new(id, move |cur| {
                let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
                if e.instance(&name, parsed.dataset_id()).is_none() {
                    return Err(NgsiError::not_found(format!("attribute {attr} not found in {owned}")));
                }
                e.put_instance(&name, parsed.clone());
                e.modified_at = now;
                Ok(Mutation::Put(e))
            }),
        )
        .await?;
        Ok(())
    }
    .await;
    super::with_local_part(local, done_remotely)
}
