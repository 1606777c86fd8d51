//! Delete Attribute from Temporal Representation of an Entity (GS CIM 009 §5.6.13): the
//! instances of the default attribute (no datasetId), of one datasetId, or with `deleteAll`
//! all of them.

use super::{Broker, check_attr_name, check_entity_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::temporal::{Delta, Header, not_found};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    ctx: &Context,
    dataset_id: Option<&str>,
    delete_all: bool,
) -> NgsiResult<()> {
    check_entity_id(id)?;
    check_attr_name(attr)?;
    if delete_all && dataset_id.is_some() {
        return Err(NgsiError::bad_data("deleteAll and datasetId cannot be used together"));
    }
    let name = ctx.expand(attr);
    super::require_temporal_tenant(b, tenant).await?;
    let _writing = b.temporal.lock().await;
    let found = b
        .temporal
        .with_entity(tenant, id, |e| {
            let gone: Option<Vec<String>> = e.attrs.get(&name).map(|list| {
                list.iter()
                    .filter(|i| delete_all || i.attr.dataset_id() == dataset_id)
                    .map(|i| i.instance_id.clone())
                    .collect()
            });
            let header = Header {
                id: e.id.clone(),
                types: e.types.clone(),
                scope: e.scope.clone(),
                created_at: e.created_at,
                modified_at: now_millis(),
            };
            (gone, header)
        })
        .ok_or_else(|| not_found(id))?;
    let (gone, header) = found;
    let gone = match gone {
        Some(g) if !g.is_empty() => g,
        Some(_) => {
            return Err(NgsiError::not_found(format!(
                "attribute {attr} of temporal entity {id} has no instance of datasetId {}",
                dataset_id.unwrap_or("@none")
            )));
        }
        None => return Err(NgsiError::not_found(format!("temporal entity {id} has no attribute {attr}"))),
    };
    let mut deltas: Vec<Delta> = gone
        .into_iter()
        .map(|instance_id| Delta::Remove {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            attr: name.clone(),
            instance_id,
        })
        .collect();
    deltas.push(Delta::Header { tenant: tenant.to_owned(), header });
    b.temporal.commit(deltas).await
}
