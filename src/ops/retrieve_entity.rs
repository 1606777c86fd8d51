//! Retrieve Entity (GS CIM 009 §5.7.1): one entity by id; rendering options are applied by the
//! HTTP layer. For linked entity retrieval (`join`, §4.5.23) it also fetches the entities the
//! relationships point at, level by level, so that rendering needs no store access.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{Broker, check_entity_id, entity_not_found};
use crate::error::NgsiResult;
use crate::model::{AttrKind, Entity};

/// The most linked entities one retrieval fetches, so a dense graph cannot make it unbounded.
const MAX_LINKED: usize = 1000;

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    ctx: &Arc<crate::jsonld::Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<Arc<Entity>> {
    check_entity_id(id)?;
    let local = b.store.get(tenant, id).await?;
    // Context sources registered for the entity add their attributes (§4.3.6).
    if let Some(e) = b.forwarder.retrieve(dist, tenant, id, local, ctx).await {
        return Ok(e);
    }
    // Only a miss needs to know whether the tenant exists (404 NonexistentTenant or not found).
    b.require_tenant(tenant).await?;
    Err(entity_not_found(id))
}

/// The entity map a Retrieve Entity asks for (§5.7.1.4): a live map the client presents is
/// used as it is; otherwise (`entityMap=true`, or a map unknown or expired) a new one lists the
/// entity under `@none` when the broker holds it and under the registrations that serve it.
/// Returns the map's id.
pub async fn entity_map(
    b: &Broker,
    tenant: &str,
    e: &Entity,
    dist: &crate::forward::Dist,
    map: &super::query_entities::MapUse,
    lifetime: Option<&str>,
) -> NgsiResult<String> {
    use crate::registry::registration::Op;
    if let super::query_entities::MapUse::Walk(id) = map
        && b.entity_maps.get(tenant, id).is_some()
    {
        return Ok(id.clone());
    }
    let lifetime = lifetime.map(crate::entity_maps::parse_duration).transpose()?;
    let mut holders = Vec::new();
    if b.store.get(tenant, &e.id).await?.is_some() {
        holders.push(crate::entity_maps::LOCAL.to_owned());
    }
    if b.forwarder.active(tenant, dist) {
        for op in [Op::RetrieveEntity, Op::QueryEntity, Op::QueryBatch] {
            for t in b.forwarder.targets(tenant, Some(&e.id), &e.type_names(), None, op) {
                if !holders.contains(&t.reg.id) {
                    holders.push(t.reg.id.clone());
                }
            }
        }
    }
    let entries = [(e.id.to_string(), holders)].into_iter().collect();
    Ok(b.entity_maps.insert(tenant, entries, serde_json::Map::new(), lifetime).id)
}

/// The entities reachable from `roots` through Relationship attributes within `levels` hops,
/// by id; targets that do not exist, and those listed in `contained_by` (already present
/// higher up, §4.5.23), are skipped.
pub async fn linked(
    store: &dyn crate::store::Store,
    tenant: &str,
    roots: &[&Entity],
    levels: usize,
    contained_by: &[String],
) -> NgsiResult<HashMap<String, Arc<Entity>>> {
    let mut found: HashMap<String, Arc<Entity>> = HashMap::new();
    // Roots are not pre-seeded: a matched entity can also be the target of another one's
    // relationship, and inline rendering then needs it in the map.
    let mut seen: HashSet<String> = contained_by.iter().cloned().collect();
    let mut frontier: Vec<String> = roots.iter().flat_map(|e| targets(e)).collect();
    for _ in 0..levels {
        let mut next = Vec::new();
        for id in frontier {
            if found.len() >= MAX_LINKED || !seen.insert(id.clone()) {
                continue;
            }
            if let Some(e) = store.get(tenant, &id).await? {
                next.extend(targets(&e));
                found.insert(id, e);
            }
        }
        frontier = next;
    }
    Ok(found)
}

/// The entity ids an entity's relationships point at.
fn targets(e: &Entity) -> Vec<String> {
    let mut out = Vec::new();
    for a in e.attrs.values().flatten().filter(|a| a.kind == AttrKind::Relationship) {
        match &a.value() {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
    }
    out
}
