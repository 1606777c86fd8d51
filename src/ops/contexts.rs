//! The `@context` management API (GS CIM 009 §5.13): add (host), list, serve, delete, reload.
//! Hosted contexts are persisted in the store's `contexts` collection and reloaded at start.

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::resolver::{ContextEntry, ContextKind};

/// The store collection of hosted (and implicitly created) contexts.
pub const COLLECTION: &str = "contexts";

/// Loads persisted hosted contexts into the resolver.
pub async fn load(store: &dyn crate::store::Store, resolver: &crate::jsonld::resolver::Resolver) -> NgsiResult<()> {
    let mut entries = Vec::new();
    for (_, doc) in store.list_meta(COLLECTION).await? {
        match serde_json::from_value::<ContextEntry>(doc) {
            Ok(e) => entries.push(e),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored @context"),
        }
    }
    resolver.load(entries);
    Ok(())
}

/// Add @context: hosts the document and returns its entry.
pub async fn add(b: &Broker, document: Value, base_url: &str) -> NgsiResult<ContextEntry> {
    let entry = b.resolver.host(document, base_url).await?;
    let doc = serde_json::to_value(&entry).map_err(|e| NgsiError::internal(e.to_string()))?;
    if let Err(e) = b.store.put_meta(COLLECTION, &entry.id, doc).await {
        b.resolver.remove(&entry.id);
        return Err(e.into());
    }
    Ok(entry)
}

/// List @contexts, optionally of one kind.
pub fn list(b: &Broker, kind: Option<ContextKind>) -> Vec<ContextEntry> {
    b.resolver.list().into_iter().filter(|e| kind.is_none_or(|k| e.kind == k)).collect()
}

/// Serve @context: one entry by local id or URL.
pub fn get(b: &Broker, id: &str) -> NgsiResult<ContextEntry> {
    b.resolver.get(id).ok_or_else(|| NgsiError::not_found(format!("@context {id} not found")))
}

/// Delete @context, or with `reload` re-download a cached one.
pub async fn delete(b: &Broker, id: &str, reload: bool) -> NgsiResult<()> {
    // Only a known cached @context can be reloaded: asking for an unknown one is a bad request.
    let entry = match get(b, id) {
        Err(_) if reload => return Err(NgsiError::bad_data(format!("no cached @context {id} to reload"))),
        other => other?,
    };
    if reload {
        b.resolver.reload(&entry.id).await?;
        return Ok(());
    }
    if matches!(entry.kind, ContextKind::Hosted | ContextKind::ImplicitlyCreated) {
        b.store.delete_meta(COLLECTION, &entry.id).await?;
    }
    b.resolver.remove(&entry.id);
    Ok(())
}
