//! Discovery (GS CIM 009 §5.7.5–§5.7.10): the entity types and attributes present in a tenant,
//! from the store's catalogue counters (no entity scan). The four operations (list types, one
//! type, list attributes, one attribute) share this file because each is a lookup in the same
//! catalogue; rendering with the request context is the HTTP layer's.

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::store::Catalogue;

/// Retrieve Available Entity Types / Attributes (lists, with or without details).
pub async fn catalogue(b: &Broker, tenant: &str) -> NgsiResult<Catalogue> {
    b.require_tenant(tenant).await?;
    Ok(b.store.catalogue(tenant).await?)
}

/// Retrieve Available Entity Type Information: 404 when no entity has the type.
pub async fn one_type(b: &Broker, tenant: &str, type_iri: &str) -> NgsiResult<Catalogue> {
    let cat = catalogue(b, tenant).await?;
    if !cat.types.contains_key(type_iri) {
        return Err(NgsiError::not_found(format!("no entity of type {type_iri}")));
    }
    Ok(cat)
}

/// Retrieve Available Attribute Information: 404 when no entity has the attribute.
pub async fn one_attribute(b: &Broker, tenant: &str, attr_iri: &str) -> NgsiResult<Catalogue> {
    let cat = catalogue(b, tenant).await?;
    if !cat.attrs.contains_key(attr_iri) {
        return Err(NgsiError::not_found(format!("no entity has attribute {attr_iri}")));
    }
    Ok(cat)
}
