//! Delete Attribute (GS CIM 009 §5.6.5): one instance (by `datasetId`, default instance
//! otherwise) or all instances with `deleteAll=true`. `scope` is addressed like an attribute
//! here (GS CIM 009 §4.18): deleting it removes the entity's scope.

use std::sync::Arc;

use super::{Broker, check_attr_name, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::store::{Mutation, Write};

#[allow(clippy::too_many_arguments)]
pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    ctx: &Arc<Context>,
    dataset_id: Option<String>,
    delete_all: bool,
    dist: &crate::forward::Dist,
) -> NgsiResult<Vec<NgsiError>> {
    check_entity_id(id)?;
    if attr != "scope" {
        check_attr_name(attr)?;
    }
    let mut done_remotely = false;
    if attr != "scope" && b.forwarder.active(tenant, dist) {
        let types = super::local_types(b, tenant, id).await?;
        let mut query = Vec::new();
        if let Some(d) = &dataset_id {
            query.push(format!("datasetId={}", crate::forward::segment(d)));
        }
        if delete_all {
            query.push("deleteAll=true".to_owned());
        }
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        let op = crate::registry::registration::Op::DeleteAttrs;
        let name = ctx.expand(attr);
        let keep = b
            .forwarder
            .single_attr(dist, tenant, id, &types, &name, None, ctx, op, reqwest::Method::DELETE, &query)
            .await?;
        if !keep.keep_local {
            return Ok(Vec::new());
        }
        done_remotely = keep.done_remotely;
    }
    // The broker's part; an attribute only an inclusive source holds was handled there.
    let local: NgsiResult<()> = async {
        b.require_tenant(tenant).await?;
        let name = ctx.expand(attr);
        let now = now_millis();
        let (owned, attr) = (id.to_owned(), attr.to_owned());
        b.write_one(
            tenant,
            false,
            Write::new(id, move |cur| {
                let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
                if attr == "scope" {
                    if e.scope.take().is_none() {
                        return Err(NgsiError::not_found(format!("entity {owned} has no scope")));
                    }
                } else if !e.remove_instance(&name, dataset_id.as_deref(), delete_all) {
                    return Err(NgsiError::not_found(format!("attribute {attr} not found in {owned}")));
                }
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
