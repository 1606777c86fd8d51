//! Batch Entity Delete (GS CIM 009 §5.6.10): the body is a list of entity ids.

use serde_json::Value;

use super::delete_entity::delete_write;
use super::{BatchOutcome, Broker, batch_items};
use crate::error::{NgsiError, NgsiResult};
use crate::model::parse::is_uri;

pub async fn run(b: &Broker, tenant: &str, body: &Value) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    b.require_tenant(tenant).await?;
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    for item in items {
        match item.as_str() {
            Some(id) if is_uri(id) => writes.push(delete_write(id)),
            Some(id) => out.errors.push((id.to_owned(), NgsiError::bad_data(format!("{id:?} is not a URI")))),
            None => out.errors.push((String::new(), NgsiError::bad_data("batch delete takes a list of entity ids"))),
        }
    }
    super::batch_merge::collect(b, tenant, writes, out).await
}
