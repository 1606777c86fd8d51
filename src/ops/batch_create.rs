//! Batch Entity Creation (GS CIM 009 §5.6.7): each entity is created or reported on its own;
//! all valid ones are written in one store call. Entities and attributes registered for
//! `createBatch` are created on their context sources first (§4.3.6).

use super::create_entity::create_write;
use super::{BatchBody, BatchOutcome, Broker};
use crate::error::NgsiResult;
use crate::model::now_millis;

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &BatchBody<'_>,
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let op = crate::registry::registration::Op::CreateBatch;
    let path = "/ngsi-ld/v1/entityOperations/create";
    // A redirect source that took the entity created it.
    let inputs = super::batch_entities(b, tenant, body, dist, op, path, true, &mut out, now).await?;
    let writes: Vec<_> = inputs.into_iter().map(|(id, input)| create_write(input.into_entity(id, now))).collect();
    if !writes.is_empty() {
        let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
        for (id, r) in ids.into_iter().zip(b.store.write(tenant, true, writes).await?) {
            match r {
                Ok(_) => {
                    out.created.push(id.clone());
                    out.success.push(id);
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
    }
    Ok(out)
}
