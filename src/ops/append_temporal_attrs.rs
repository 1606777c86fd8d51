//! Add Attributes to Temporal Representation of an Entity (GS CIM 009 §5.6.12): the instances
//! of a fragment are added to an existing temporal entity.

use serde_json::Value;

use super::{Broker, check_entity_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::temporal::parse::parse;
use crate::temporal::{Delta, Header, not_found};

pub async fn run(b: &Broker, tenant: &str, id: &str, body: &Value, ctx: &Context) -> NgsiResult<()> {
    check_entity_id(id)?;
    let now = now_millis();
    let input = parse(body, ctx, false, now)?;
    if input.id.as_deref().is_some_and(|given| given != id) {
        return Err(NgsiError::bad_data("the body's id differs from the id in the path"));
    }
    super::require_temporal_tenant(b, tenant).await?;
    let _writing = b.temporal.lock().await;
    let (created_at, mut types, scope) = b
        .temporal
        .with_entity(tenant, id, |e| (e.created_at, e.types.clone(), e.scope.clone()))
        .ok_or_else(|| not_found(id))?;
    for t in input.types {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let header = Header { id: id.to_owned(), types, scope: input.scope.or(scope), created_at, modified_at: now };
    let mut deltas = vec![Delta::Header { tenant: tenant.to_owned(), header }];
    for (attr, list) in input.attrs {
        for inst in b.temporal.placed(tenant, id, &attr, list) {
            deltas.push(Delta::Put { tenant: tenant.to_owned(), id: id.to_owned(), attr: attr.clone(), inst });
        }
    }
    b.temporal.commit(deltas).await
}
