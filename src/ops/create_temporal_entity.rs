//! Create or Update Temporal Representation of an Entity (GS CIM 009 §5.6.11): a new temporal
//! entity with its instances (created), or, when one with the id exists, its instances added
//! to it (updated). Creates the tenant's history on first use.

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::temporal::parse::parse;
use crate::temporal::{Delta, Header};

/// What the request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Appended,
}

pub async fn run(b: &Broker, tenant: &str, body: &Value, ctx: &Context) -> NgsiResult<(String, Outcome)> {
    let now = now_millis();
    let input = parse(body, ctx, true, now)?;
    let id = input.id.clone().ok_or_else(|| NgsiError::bad_data("a temporal entity needs an id"))?;
    let _writing = b.temporal.lock().await;
    let existing = b.temporal.with_entity(tenant, &id, |e| (e.created_at, e.types.clone(), e.scope.clone()));
    let outcome = if existing.is_some() { Outcome::Appended } else { Outcome::Created };
    let header = match existing {
        None => Header { id: id.clone(), types: input.types, scope: input.scope, created_at: now, modified_at: now },
        Some((created_at, mut types, scope)) => {
            for t in input.types {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            Header { id: id.clone(), types, scope: input.scope.or(scope), created_at, modified_at: now }
        }
    };
    let mut deltas = vec![Delta::Header { tenant: tenant.to_owned(), header }];
    for (attr, list) in input.attrs {
        for inst in b.temporal.placed(tenant, &id, &attr, list) {
            deltas.push(Delta::Put { tenant: tenant.to_owned(), id: id.clone(), attr: attr.clone(), inst });
        }
    }
    b.temporal.commit(deltas).await?;
    Ok((id, outcome))
}
