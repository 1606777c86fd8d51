//! Domain operations, one file per NGSI-LD API operation. They take validated request inputs
//! (tenant, compiled context, JSON body, parsed options), talk to the store, and return
//! domain values or [`NgsiError`]s. No HTTP types here.

pub mod append_attrs;
pub mod append_temporal_attrs;
pub mod batch_create;
pub mod batch_delete;
pub mod batch_merge;
pub mod batch_update;
pub mod batch_upsert;
pub mod contexts;
pub mod create_csource_subscription;
pub mod create_entity;
pub mod create_entity_map;
pub mod create_registration;
pub mod create_subscription;
pub mod create_temporal_entity;
pub mod delete_attr;
pub mod delete_csource_subscription;
pub mod delete_entity;
pub mod delete_entity_map;
pub mod delete_registration;
pub mod delete_subscription;
pub mod delete_temporal_attr;
pub mod delete_temporal_entity;
pub mod delete_temporal_instance;
pub mod discover;
pub mod merge_entity;
pub mod purge_entities;
pub mod query_csource_subscriptions;
pub mod query_entities;
pub mod query_registrations;
pub mod query_subscriptions;
pub mod query_temporal_entities;
pub mod replace_attr;
pub mod replace_entity;
pub mod retrieve_csource_subscription;
pub mod retrieve_entity;
pub mod retrieve_entity_map;
pub mod retrieve_registration;
pub mod retrieve_subscription;
pub mod retrieve_temporal_entity;
pub mod update_attr;
pub mod update_attrs;
pub mod update_csource_subscription;
pub mod update_entity_map;
pub mod update_registration;
pub mod update_subscription;
pub mod update_temporal_instance;

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::jsonld::resolver::Resolver;
use crate::model::parse::{EntityInput, Purpose, is_uri, parse_entity, valid_name};
use crate::store::{Change, Store, Write};

/// What every operation needs: the store, the context resolver, the notifier and the registry
/// of context sources.
pub struct Broker {
    pub store: Arc<dyn Store>,
    pub resolver: Arc<Resolver>,
    pub notifier: Arc<crate::notify::Notifier>,
    pub registry: Arc<crate::registry::Registrations>,
    /// Distributed operations through the registrations.
    pub forwarder: Arc<crate::forward::Forwarder>,
    /// Entity maps of paginated queries (memory only).
    pub entity_maps: Arc<crate::entity_maps::EntityMaps>,
    /// The temporal evolution of entities.
    pub temporal: Arc<crate::temporal::TemporalStore>,
}

impl Broker {
    pub fn notifier(&self) -> &Arc<crate::notify::Notifier> {
        &self.notifier
    }

    /// Fails with NonexistentTenant unless the tenant exists.
    pub async fn require_tenant(&self, tenant: &str) -> NgsiResult<()> {
        if self.store.tenant_exists(tenant).await? {
            Ok(())
        } else {
            Err(NgsiError::new(ErrorKind::NonexistentTenant, format!("tenant {tenant:?} does not exist")))
        }
    }

    /// Runs one write and returns its own result.
    pub async fn write_one(&self, tenant: &str, create_tenant: bool, w: Write) -> NgsiResult<Change> {
        let mut results = self.store.write(tenant, create_tenant, vec![w]).await?;
        results.pop().unwrap_or_else(|| Err(NgsiError::internal("the store returned no result")))
    }
}

/// Fails with NonexistentTenant unless the tenant has temporal entities or entities.
pub async fn require_temporal_tenant(b: &Broker, tenant: &str) -> NgsiResult<()> {
    if b.temporal.has_tenant(tenant) {
        return Ok(());
    }
    b.require_tenant(tenant).await
}

/// The common start of the operations on one entity with a body (append, update, merge,
/// replace): checks the id and the tenant, parses the body as a fragment, and refuses a body
/// whose `id` names another entity.
pub async fn fragment_for(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &crate::jsonld::Context,
    now: i64,
) -> NgsiResult<crate::model::parse::EntityInput> {
    check_entity_id(id)?;
    b.require_tenant(tenant).await?;
    let input = crate::model::parse::parse_entity(body, ctx, crate::model::parse::Purpose::Fragment, now)?;
    if input.id.as_deref().is_some_and(|given| given != id) {
        return Err(NgsiError::bad_data("the body's id differs from the id in the path"));
    }
    Ok(input)
}

/// The types of an entity the broker holds (to match registrations), none if it holds none.
pub async fn local_types(b: &Broker, tenant: &str, id: &str) -> NgsiResult<Vec<String>> {
    Ok(b.store.get(tenant, id).await?.map(|e| e.type_names()).unwrap_or_default())
}

/// The distributed part of an operation carrying a fragment of an existing entity (§4.3.6):
/// the attributes of `body` that context sources are registered for `op` are sent to them with
/// `method` at `path` (relative to each source's endpoint). `None` when nothing was forwarded;
/// otherwise what was, with the fragment left for the broker (`rest`).
#[allow(clippy::too_many_arguments)]
pub async fn forward_fragment(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
    op: crate::registry::registration::Op,
    method: reqwest::Method,
    path: &str,
    with_identity: bool,
) -> NgsiResult<Option<crate::forward::Forwarded>> {
    let Some(fragment) = body.as_object().filter(|_| b.forwarder.active(tenant, dist)) else {
        return Ok(None);
    };
    check_entity_id(id)?;
    let types = local_types(b, tenant, id).await?;
    check_unserved(b, tenant, id, &types, fragment, ctx, op)?;
    let f = b.forwarder.fragment(dist, tenant, id, &types, fragment, ctx, op, method, path, with_identity).await;
    Ok(f.forwarded.then_some(f))
}

/// A part held by an exclusive or redirect registration that does not serve the operation
/// cannot be done: the whole request is a Conflict and nothing is sent (GS CIM 009 §5.6.1.4,
/// §5.6.2.4). A registration about all attributes clashes with any fragment; one naming
/// attributes only with a fragment holding one of them.
pub fn check_unserved(
    b: &Broker,
    tenant: &str,
    id: &str,
    types: &[String],
    fragment: &serde_json::Map<String, Value>,
    ctx: &Context,
    op: crate::registry::registration::Op,
) -> NgsiResult<()> {
    let names: Vec<String> = fragment
        .keys()
        .filter(|k| !k.starts_with('@') && !matches!(k.as_str(), "id" | "type" | "scope"))
        .map(|k| ctx.expand(k))
        .collect();
    for reg in b.registry.proxied_without(tenant, id, types, op) {
        let clash = match reg.attributes_for(Some(id), types) {
            None => true,
            Some(held) => names.iter().any(|n| held.contains(n)),
        };
        if clash {
            return Err(crate::registry::Registrations::unserved(&reg, id, op));
        }
    }
    Ok(())
}

/// The outcome of a single-attribute operation once the broker did its own part: when an
/// inclusive source applied the operation, the broker's failure makes a partial success (207,
/// the failure listed) rather than the answer.
pub fn with_local_part(local: NgsiResult<()>, done_remotely: bool) -> NgsiResult<Vec<NgsiError>> {
    match local {
        Ok(()) => Ok(Vec::new()),
        Err(e) if done_remotely => Ok(vec![e]),
        Err(e) => Err(e),
    }
}

/// One batch element after the distributed part of a batch operation (§4.3.6).
pub enum Element<'a> {
    /// For the broker: the element as given, or what exclusive and redirect sources left of it.
    Local(std::borrow::Cow<'a, Value>),
    /// The sources took all of it: a success without a local write (`created` when a source
    /// said it created the entity).
    Remote { created: bool },
    /// A source refused it: the element's error.
    Failed(NgsiError),
}

/// The distributed part of a batch create, upsert, update or merge: the elements' attributes
/// registered for `op` go to their sources in one batch request per source (`path`, relative
/// to each endpoint); what is left of each element is for the broker. `whole` (create,
/// upsert): the entity's id and type stay with the broker unless a redirect registration took
/// it. An element that cannot be read (no id, a bad `@context`) is left for the broker, whose
/// parsing reports it.
#[allow(clippy::too_many_arguments)]
pub async fn distribute_batch<'a>(
    b: &Broker,
    tenant: &str,
    items: &'a [Value],
    contexts: &[NgsiResult<Arc<Context>>],
    dist: &crate::forward::Dist,
    op: crate::registry::registration::Op,
    path: &str,
    whole: bool,
) -> NgsiResult<Vec<Element<'a>>> {
    let mut out: Vec<Element<'a>> = items.iter().map(|v| Element::Local(std::borrow::Cow::Borrowed(v))).collect();
    if !b.forwarder.active(tenant, dist) {
        return Ok(out);
    }
    let now = crate::model::now_millis();
    let (mut index, mut batch): (Vec<usize>, Vec<crate::forward::BatchItem<'a>>) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let Some(fragment) = item.as_object() else { continue };
        let Some(id) = fragment.get("id").and_then(Value::as_str).filter(|id| is_uri(id)) else { continue };
        let Ok(ctx) = element_context(contexts, i) else { continue };
        // A malformed element is refused before any source sees it (the broker's parsing reports it).
        let purpose = if whole { Purpose::Create } else { Purpose::Fragment };
        if crate::model::parse::parse_entity(item, ctx, purpose, now).is_err() {
            continue;
        }
        let types = match fragment.get("type") {
            Some(t) => match crate::model::parse::parse_types(t, ctx) {
                Ok(types) => types,
                Err(_) => continue,
            },
            None => local_types(b, tenant, id).await?,
        };
        index.push(i);
        batch.push(crate::forward::BatchItem { id, types, fragment, ctx: ctx.clone() });
    }
    let outcomes = b.forwarder.batch(dist, tenant, &batch, op, path, whole).await;
    for ((i, item), o) in index.into_iter().zip(&batch).zip(outcomes) {
        if let Some(e) = o.error {
            out[i] = Element::Failed(e);
        } else if o.forwarded
            && !o.attrs_left(item.fragment)
            && (o.redirected || !whole || (o.took_attrs && b.store.get(tenant, item.id).await?.is_some()))
        {
            // Taken whole (redirect), all that was given taken (update, merge), or all the
            // attributes of an entity the broker already holds taken (create, upsert).
            out[i] = Element::Remote { created: o.created };
        } else if let Some(rest) = o.rest {
            out[i] = Element::Local(std::borrow::Cow::Owned(Value::Object(rest)));
        }
    }
    Ok(out)
}

/// The first refusal of a context source as the operation's error.
pub fn refused(f: &crate::forward::Forwarded) -> NgsiResult<()> {
    match f.refused.first() {
        Some((name, why)) => Err(NgsiError::new(ErrorKind::ContextSourceFailed, format!("{name}: {why}"))),
        None => Ok(()),
    }
}

/// Checks an entity id taken from a path or a list.
pub fn check_entity_id(id: &str) -> NgsiResult<()> {
    check_id(id, "entity")
}

/// Checks the id of a `what` (entity, registration, …) taken from a path or a list.
pub fn check_id(id: &str, what: &str) -> NgsiResult<()> {
    if is_uri(id) { Ok(()) } else { Err(NgsiError::bad_data(format!("{what} id {id:?} is not a URI"))) }
}

/// Checks an attribute name taken from a path: a valid name that is not an entity member
/// (`id`, `type`, `scope`, …), which the attribute operations cannot address.
pub fn check_attr_name(attr: &str) -> NgsiResult<()> {
    if !valid_name(attr) {
        return Err(NgsiError::bad_data(format!("{attr:?} is not a valid attribute name")));
    }
    if matches!(attr, "id" | "type" | "scope" | "createdAt" | "modifiedAt" | "deletedAt") {
        return Err(NgsiError::bad_data(format!("{attr} is an entity member, not an attribute")));
    }
    Ok(())
}

/// The outcome of append/update attribute operations (204 when `not_updated` is empty, else 207).
#[derive(Debug, Default, Clone)]
pub struct AttrOutcome {
    /// Expanded names of the attributes written.
    pub updated: Vec<String>,
    /// Expanded names with the reason they were not written.
    pub not_updated: Vec<(String, String)>,
}

/// The outcome of a batch operation, entity by entity.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    pub success: Vec<String>,
    /// Entities the operation created (batch upsert answers 201 with these).
    pub created: Vec<String>,
    pub errors: Vec<(String, NgsiError)>,
}

impl BatchOutcome {
    /// Records a batch element the sources answered for (a success or an error) and returns
    /// `None`; returns what is left for the broker otherwise. `created`: an element the sources
    /// took counts as created.
    pub fn settle<'a>(
        &mut self,
        given: &Value,
        element: Element<'a>,
        created: bool,
    ) -> Option<std::borrow::Cow<'a, Value>> {
        match element {
            Element::Local(item) => Some(item),
            Element::Remote { created: said } => {
                let id = element_id(given);
                if (created || said) && !self.created.contains(&id) {
                    self.created.push(id.clone());
                }
                self.success.push(id);
                None
            }
            Element::Failed(e) => {
                self.errors.push((element_id(given), e));
                None
            }
        }
    }
}

/// Reads the `id` of a batch element for error reports, whatever else is wrong with it.
pub fn element_id(v: &Value) -> String {
    v.get("id").and_then(Value::as_str).unwrap_or("").to_owned()
}

/// A batch body of entities (create, upsert) as its handler read it.
pub enum BatchBody<'a> {
    /// Parsed, with each element's context; elements may go to context sources.
    Tree(&'a Value, &'a [NgsiResult<Arc<Context>>]),
    /// The elements' text and the one context of an `application/json` body, when no context
    /// source can be concerned: read straight into the model ([`crate::model::text`]).
    Text(Vec<crate::model::text::Element<'a>>, NgsiResult<Arc<Context>>),
}

/// The entities of a batch create or upsert, with their ids, in order. Elements that cannot
/// be read, and those that context sources answered for (`created`: those count as created),
/// are settled in `out`.
#[allow(clippy::too_many_arguments)]
pub async fn batch_entities(
    b: &Broker,
    tenant: &str,
    body: &BatchBody<'_>,
    dist: &crate::forward::Dist,
    op: crate::registry::registration::Op,
    path: &str,
    created: bool,
    out: &mut BatchOutcome,
    now: i64,
) -> NgsiResult<Vec<(String, EntityInput)>> {
    fn take(
        inputs: &mut Vec<(String, EntityInput)>,
        out: &mut BatchOutcome,
        parsed: NgsiResult<EntityInput>,
        reported: impl Fn() -> String,
    ) {
        match parsed {
            Ok(input) => match input.id.clone() {
                Some(id) => inputs.push((id, input)),
                None => out.errors.push((reported(), NgsiError::bad_data("an entity needs an id"))),
            },
            Err(e) => out.errors.push((reported(), e)),
        }
    }
    let mut inputs = Vec::new();
    match body {
        BatchBody::Text(items, ctx) => {
            for item in items {
                let parsed = crate::model::text::parse_json_entity(item, ctx, Purpose::Create, now);
                take(&mut inputs, out, parsed, || crate::model::text::element_id(item));
            }
        }
        BatchBody::Tree(body, contexts) => {
            let items = batch_items(body)?;
            let elements = distribute_batch(b, tenant, items, contexts, dist, op, path, true).await?;
            for (i, (given, element)) in items.iter().zip(elements).enumerate() {
                let Some(item) = out.settle(given, element, created) else { continue };
                let parsed =
                    element_context(contexts, i).and_then(|ctx| parse_entity(&item, ctx, Purpose::Create, now));
                take(&mut inputs, out, parsed, || element_id(&item));
            }
        }
    }
    Ok(inputs)
}

/// Parses a batch body: a non-empty JSON array.
pub fn batch_items(body: &Value) -> NgsiResult<&Vec<Value>> {
    match body.as_array() {
        Some(a) if !a.is_empty() => Ok(a),
        Some(_) => Err(NgsiError::bad_data("a batch must contain at least one element")),
        None => Err(NgsiError::bad_data("a batch body must be a JSON array")),
    }
}

/// The `@context` of batch element `i`: each element resolves its own, and one that cannot
/// (bad or unavailable context) fails only that element.
pub fn element_context(contexts: &[NgsiResult<Arc<Context>>], i: usize) -> NgsiResult<&Arc<Context>> {
    match contexts.get(i).or_else(|| contexts.last()) {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(e.clone()),
        None => Err(NgsiError::internal("no @context for a batch element")),
    }
}

/// An entity not found error for `id`.
pub fn entity_not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity {id} not found"))
}
