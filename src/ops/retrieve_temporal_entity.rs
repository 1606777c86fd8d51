//! Retrieve Temporal Evolution of an Entity (GS CIM 009 §5.7.3): the instances of one entity's
//! attributes the selection keeps (time relation, lastN, attrs, datasetId).

use super::{Broker, check_entity_id};
use crate::error::{NgsiError, NgsiResult};
use crate::temporal::not_found;
use crate::temporal::query::{Selection, View};

pub async fn run(b: &Broker, tenant: &str, id: &str, sel: &Selection) -> NgsiResult<View> {
    check_entity_id(id)?;
    super::require_temporal_tenant(b, tenant).await?;
    let (view, has_attrs) = b
        .temporal
        .with_entity(tenant, id, |e| {
            let has = sel.attrs.as_ref().is_none_or(|a| a.iter().any(|n| e.attrs.contains_key(n)));
            (sel.select(e), has)
        })
        .ok_or_else(|| not_found(id))?;
    // attrs naming no attribute the entity ever had selects nothing (as Retrieve Entity).
    if !has_attrs {
        return Err(NgsiError::not_found(format!("temporal entity {id} has none of the attributes asked for")));
    }
    Ok(view)
}
