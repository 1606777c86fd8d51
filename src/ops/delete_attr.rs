//! Delete Attribute (GS CIM 009 §5.6.5): one instance (by `datasetId`, default instance
//! otherwise) or all instances with `deleteAll=true`. `scope` is addressed like an attribute
//! here (GS CIM 009 §4.18): deleting it removes the entity's scope.

use std::sync::Arc;

use super::{Broker, check_attr_name, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    ctx: &Arc<Context>,
    dataset_id: Option<String>,
    delete_all: bool,
) -> NgsiResult<()> {
    check_entity_id(id)?;
    if attr != "scope" {
        check_attr_name(attr)?;
    }
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
