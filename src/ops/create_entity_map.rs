//! Create EntityMap for Query Entities (GS CIM 009 §5.14.4, GET /entityMaps): runs a query
//! and keeps the ids of every entity it matches, here and at the registered context sources,
//! as an entity map that later queries page through (§5.5.9.3).

use std::sync::Arc;

use super::Broker;
use super::query_entities::{QueryParams, make_map};
use crate::entity_maps::EntityMap;
use crate::error::NgsiResult;
use crate::jsonld::Context;

/// Makes the map, living as long as the query's `entityMapLifetime` asks, within bounds.
pub async fn run(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<EntityMap> {
    make_map(b, tenant, p, ctx, dist).await
}
