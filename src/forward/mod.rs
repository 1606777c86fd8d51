//! Distributed operations (GS CIM 009 §4.3.6, §5.6–5.7 "distributed"): requests on entities
//! that context source registrations cover are forwarded to the registered sources, and their
//! answers are merged with the broker's own data.
//!
//! What is forwarded, by registration mode: an exclusive or redirect registration takes the
//! attributes it names away from the broker (updates go only to the source, reads take the
//! source's values); an inclusive one adds to the broker's data (updates go to both, reads merge,
//! the most recent value winning); an auxiliary one only fills gaps in reads. A forwarded request
//! carries a `Via` header naming this broker, and a request that already names it is answered
//! 508 Loop Detected, so two brokers registered on each other cannot loop; `local=true` turns
//! forwarding off. Every forwarded request is bounded by the registration's `management.timeout` or the
//! configured default, so a source that is down does not hang the caller, and its outcome is
//! counted in the registration's status.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::resolver::Resolver;
use crate::jsonld::{CORE, Context};
use crate::model::Entity;
use crate::registry::Registrations;
use crate::registry::registration::{CompiledRegistration, Mode, Op};

const LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// The `NGSILD-Warning` values (GS CIM 009 §6.3.17) gathered while a request was distributed:
/// each `<code> <registration id> "<text>"`. Shared between the request's `Dist` and its
/// extensions, where the HTTP layer reads them into the response header; at most 32 are kept.
/// The default collects nothing (a request that cannot be distributed costs no allocation).
#[derive(Debug, Clone, Default)]
pub struct Warnings(Option<Arc<parking_lot::Mutex<Vec<String>>>>);

impl Warnings {
    /// Warnings that are recorded.
    pub fn collecting() -> Warnings {
        Warnings(Some(Arc::default()))
    }

    /// Records a warning about a registration's source (110/111 revalidation, 199, 299).
    pub fn add(&self, code: u16, registration: &str, text: &str) {
        let Some(w) = &self.0 else { return };
        let mut w = w.lock();
        if w.len() < 32 {
            w.push(format!("{code} {registration} \"{}\"", text.replace(['"', '\\', '\r', '\n'], "'")));
        }
    }

    /// The header value, if anything went wrong.
    pub fn header(&self) -> Option<String> {
        let w = self.0.as_ref()?.lock();
        (!w.is_empty()).then(|| w.join(", "))
    }
}

/// The largest answer read from a context source; a larger one is refused like an invalid
/// payload (warning 111), so a source cannot exhaust the broker's memory.
pub const MAX_SOURCE_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Whether and how a request may be distributed.
#[derive(Debug, Clone, Default)]
pub struct Dist {
    /// `local=true`: the request stays on this broker.
    pub local_only: bool,
    /// The request's `Via` header, extended when forwarding.
    pub via: Option<String>,
    /// The request's query string (forwarded as it is by Query Entities).
    pub query: Option<String>,
    /// The Query of `POST /entityOperations/query` (forwarded to `queryBatch` sources).
    pub query_body: Option<Value>,
    /// The triggering request's headers (lower-case names), for contextSourceInfo values of
    /// `urn:ngsi-ld:request` (GS CIM 009 §4.3.6.5).
    pub headers: Vec<(String, String)>,
    /// Warnings about the sources asked, for the response's `NGSILD-Warning` header.
    pub warnings: Warnings,
    /// A query's `csf`: only sources whose registration satisfies it are asked.
    pub csf: Option<Arc<crate::query::q::Query>>,
    /// A query's `splitEntities=true`: its `q` and `scopeQ` are not forwarded.
    pub split_entities: bool,
}

impl Dist {
    /// A request that is never forwarded (internal callers, tests).
    pub fn local() -> Dist {
        Dist { local_only: true, ..Dist::default() }
    }
}

/// A registration chosen for a request, with the attributes (expanded) to ask it for or send it
/// (`None`: all of them).
pub struct Target {
    pub reg: Arc<CompiledRegistration>,
    pub attrs: Option<Vec<String>>,
}

/// What forwarding an operation on one attribute did.
#[derive(Debug, Clone, Copy)]
pub struct AttrForward {
    /// Whether the broker applies the operation too (no exclusive or redirect source took it).
    pub keep_local: bool,
    /// Whether an inclusive source applied it.
    pub done_remotely: bool,
}

/// One part of a distributed operation on one entity: a source's answer, or a registration
/// the operation cannot reach (GS CIM 009 §5.6.6.4). A mix of failed and successful parts is a
/// partial success (207).
#[derive(Debug)]
pub struct Part {
    /// Whether an exclusive or redirect source did its part (then the broker's copy is not
    /// the whole entity, and its absence is no failure).
    pub proxied: bool,
    pub result: Result<(), NgsiError>,
}

/// What forwarding an entity fragment did.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// The fragment left for the broker (without what exclusive and redirect sources took).
    pub rest: Map<String, Value>,
    /// Attributes (expanded) a source accepted.
    pub sent: Vec<String>,
    /// Attributes (expanded) a source refused, with the reason.
    pub refused: Vec<(String, String)>,
    /// Whether any source was asked.
    pub forwarded: bool,
    /// Whether a redirect registration took the operation (the broker then keeps nothing).
    pub redirected: bool,
    /// Whether some source accepted its part.
    pub accepted: bool,
    /// One error per source that refused its part (the source's status kept where it has an
    /// NGSI-LD meaning, such as 409 AlreadyExists).
    pub errors: Vec<NgsiError>,
}

impl Forwarded {
    /// Whether attributes are left for the broker.
    pub fn attrs_left(&self) -> bool {
        self.rest.keys().any(|k| !matches!(k.as_str(), "id" | "type" | "@context"))
    }
}

/// The outcome of one forwarded request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
}

pub struct Forwarder {
    /// Built on the first forwarded request: building a client loads the system's root
    /// certificates, which a broker without registrations never needs.
    client: std::sync::OnceLock<reqwest::Client>,
    pub registry: Arc<Registrations>,
    resolver: Arc<Resolver>,
    timeout: Duration,
    /// This broker's name in `Via` headers.
    pub via_name: String,
}

impl Forwarder {
    pub fn new(registry: Arc<Registrations>, resolver: Arc<Resolver>, timeout: Duration) -> Forwarder {
        let via_name = format!("orbis-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Forwarder { client: std::sync::OnceLock::new(), registry, resolver, timeout, via_name }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                .pool_idle_timeout(Duration::from_secs(60))
                // Sources written against Orion-LD read header names as sent (`Via`, `Link`).
                .http1_title_case_headers()
                .build()
                .unwrap_or_default()
        })
    }

    /// Whether a `Via` header value names this broker (the request went round a loop).
    pub fn is_loop(&self, via: &str) -> bool {
        via.split(',').any(|hop| hop.split_whitespace().any(|t| t == self.via_name))
    }

    /// Whether anything in the tenant could be forwarded.
    pub fn active(&self, tenant: &str, dist: &Dist) -> bool {
        !dist.local_only && self.registry.has_any(tenant)
    }

    /// The registrations serving `op` on this entity and these attributes, with the attributes
    /// each provides among those asked for.
    pub fn targets(
        &self,
        tenant: &str,
        id: Option<&str>,
        types: &[String],
        attrs: Option<&[String]>,
        op: Op,
    ) -> Vec<Target> {
        self.registry
            .matching(tenant, id, types, attrs, op)
            .into_iter()
            .map(|reg| {
                let provided = reg.attributes_for(id, types);
                let attrs = match (provided, attrs) {
                    (None, None) => None,
                    (None, Some(a)) => Some(a.to_vec()),
                    (Some(p), None) => Some(p),
                    (Some(p), Some(a)) => Some(p.into_iter().filter(|n| a.contains(n)).collect()),
                };
                Target { reg, attrs }
            })
            .collect()
    }

    /// The context a source speaks: its `jsonldContext` (contextSourceInfo), else the context
    /// the registration was made with, else the core context.
    pub async fn context_of(&self, reg: &CompiledRegistration) -> Arc<Context> {
        let named = reg.context_source_info.iter().find(|(k, _)| k == "jsonldContext").map(|(_, v)| v.clone());
        let resolved = match (named, &reg.context) {
            (Some(url), _) => self.resolver.from_url(&url).await,
            (None, Value::Null) => return CORE.clone(),
            (None, v) => self.resolver.from_value(v).await,
        };
        resolved.unwrap_or_else(|e| {
            tracing::warn!(registration = %reg.id, error = %e, "the source's @context is unavailable; using the core context");
            CORE.clone()
        })
    }

    /// Sends one request to a source and records the outcome in the registration's status.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        t: &Target,
        tenant: &str,
        method: reqwest::Method,
        path_and_query: &str,
        ctx: &Context,
        body: Option<&Value>,
        dist: &Dist,
    ) -> Answer {
        let reg = &t.reg;
        let mut url = format!("{}{}", reg.endpoint.trim_end_matches('/'), path_and_query);
        // A localOnly registration serves only what the source holds itself (§4.3.6.4).
        if reg.management.local_only && !url.contains("local=true") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("local=true");
        }
        let via = dist.via.as_deref();
        let timeout =
            reg.management.timeout.map(|ms| Duration::from_millis(ms.max(1.0) as u64)).unwrap_or(self.timeout);
        let via_value = match via {
            Some(v) if !v.is_empty() => format!("{v}, 1.1 {}", self.via_name),
            _ => format!("1.1 {}", self.via_name),
        };
        let mut req = self.client().request(method, &url).timeout(timeout).header("Via", via_value);
        let remote_tenant = reg.remote_tenant.as_deref().unwrap_or(tenant);
        if !remote_tenant.is_empty() {
            req = req.header("NGSILD-Tenant", remote_tenant);
        }
        // The registration may ask for JSON-LD both ways (§4.3.6.6): `contentType`
        // application/ld+json sends the @context inside the payload (no Link then), `accept`
        // names the media type answers come in.
        let info = |key: &str| reg.context_source_info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let ld_body = body.is_some() && info("contentType").is_some_and(|v| v.starts_with("application/ld+json"));
        let link = ctx.link_url().unwrap_or(crate::jsonld::core::CORE_CONTEXT_URL);
        if !ld_body {
            req = req.header("Link", format!("<{link}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\""));
        }
        let accept = info("accept")
            .filter(|a| matches!(*a, "application/json" | "application/ld+json"))
            .unwrap_or("application/json");
        req = req.header("Accept", accept);
        // contextSourceInfo pairs travel as headers (§4.3.6.5); the tenant and what HTTP itself
        // decides are not theirs to set, and `urn:ngsi-ld:request` copies the triggering
        // request's header of that name, if it had one.
        for (k, v) in &reg.context_source_info {
            if matches!(k.as_str(), "jsonldContext" | "contentType" | "accept")
                || reserved_header(k)
                || reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            {
                continue;
            }
            let value = match v.as_str() {
                "urn:ngsi-ld:request" => {
                    let lower = k.to_ascii_lowercase();
                    match dist.headers.iter().find(|(n, _)| *n == lower) {
                        Some((_, v)) => v.as_str(),
                        None => continue,
                    }
                }
                v => v,
            };
            req = req.header(k.as_str(), value);
        }
        if let Some(b) = body {
            req = match ld_body {
                true => req.header("Content-Type", "application/ld+json").body(with_context(b, link).to_string()),
                false => req.header("Content-Type", "application/json").body(b.to_string()),
            };
        }
        // What goes wrong is reported in NGSILD-Warning (§6.3.17, Table 6.3.17-1): no answer
        // in time or no connection is 199, an error status (other than 404, which only means
        // the source has nothing) is 299, an answer that is no JSON or too large is 111.
        let answer = match req.send().await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut bytes: Vec<u8> = Vec::new();
                let mut read_ok = true;
                loop {
                    match resp.chunk().await {
                        Ok(Some(c)) if bytes.len() + c.len() <= MAX_SOURCE_ANSWER_BYTES => bytes.extend_from_slice(&c),
                        Ok(Some(_)) => {
                            dist.warnings.add(111, &reg.id, "the answer exceeds the size the broker accepts");
                            read_ok = false;
                            break;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            dist.warnings.add(199, &reg.id, &format!("the answer could not be read: {e}"));
                            read_ok = false;
                            break;
                        }
                    }
                }
                let body = match (read_ok, bytes.is_empty()) {
                    (false, _) => None,
                    (true, true) => Some(None),
                    (true, false) => match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) => Some(Some(v)),
                        Err(_) if status >= 300 => Some(None),
                        Err(_) => {
                            dist.warnings.add(111, &reg.id, "the answer is not a valid JSON document");
                            None
                        }
                    },
                };
                if status >= 400 && status != 404 {
                    dist.warnings.add(299, &reg.id, &format!("the context source answered {status}"));
                }
                match body {
                    Some(body) => Answer { status, body },
                    None => Answer { status: 502, body: None },
                }
            }
            Err(e) => {
                tracing::warn!(registration = %reg.id, url = %url, error = %e, "a context source did not answer");
                let what =
                    if e.is_timeout() { "no answer within the time-out" } else { "the context source is unreachable" };
                dist.warnings.add(199, &reg.id, what);
                Answer { status: if e.is_timeout() { 504 } else { 503 }, body: None }
            }
        };
        self.registry.record_outcome(&reg.tenant, &reg.id, answer.status < 500);
        answer
    }
}

/// Renames the top-level attribute keys of a fragment from one context to another (the client's
/// names to the source's).
pub fn recompact(fragment: &Map<String, Value>, from: &Context, to: &Context) -> Map<String, Value> {
    fragment
        .iter()
        .map(|(k, v)| {
            let key = if matches!(k.as_str(), "id" | "type" | "@context" | "scope") {
                k.clone()
            } else {
                to.compact(&from.expand(k))
            };
            (key, v.clone())
        })
        .collect()
}

/// Reads an entity a source answered (normalized, compacted with the source's context).
pub fn entity_from(v: &Value, ctx: &Context) -> Option<Entity> {
    let now = crate::model::now_millis();
    let input = crate::model::parse::parse_entity(v, ctx, crate::model::parse::Purpose::Create, now).ok()?;
    let id = input.id.clone()?;
    Some(input.into_entity(id, now))
}

/// Merges a source's entity into the broker's view of it (§4.3.6): attributes of a proxied
/// registration replace the broker's; inclusive ones win when more recent (observedAt, else
/// modifiedAt); auxiliary ones only fill gaps.
pub fn merge(into: &mut Entity, from: Entity, mode: Mode) {
    for t in from.types {
        if !into.types.contains(&t) {
            into.types.push(t);
        }
    }
    for (name, instances) in from.attrs {
        match (into.attrs.get(&name), mode) {
            (None, _) | (Some(_), Mode::Exclusive | Mode::Redirect) => {
                into.attrs.insert(name, instances);
            }
            (Some(_), Mode::Auxiliary) => {}
            (Some(mine), Mode::Inclusive) => {
                let stamp = |i: &crate::model::Instances| {
                    i.iter()
                        .map(|a| {
                            a.observed_at().and_then(|t| crate::model::parse_datetime(&t)).unwrap_or(a.modified_at)
                        })
                        .max()
                        .unwrap_or(0)
                };
                if stamp(&instances) > stamp(mine) {
                    into.attrs.insert(name, instances);
                }
            }
        }
    }
}

/// Why a source that answered 207 (partial success) did not update the attribute `name`
/// (expanded), `None` if it did: its UpdateResult's `notUpdated` entry, else its absence from
/// `updated`; a 207 that says neither confirms nothing.
fn not_updated(a: &Answer, name: &str, cs: &Context) -> Option<String> {
    let body = a.body.as_ref();
    let names = |key: &str| body.and_then(|b| b.get(key)).and_then(Value::as_array);
    if let Some(entries) = names("notUpdated") {
        return entries
            .iter()
            .find(|e| e.get("attributeName").and_then(Value::as_str).is_some_and(|n| cs.expand(n) == name))
            .map(|e| {
                e.get("reason").and_then(Value::as_str).unwrap_or("not updated by the context source").to_owned()
            });
    }
    match names("updated") {
        Some(updated) if updated.iter().any(|n| n.as_str().is_some_and(|n| cs.expand(n) == name)) => None,
        Some(_) => Some("not updated by the context source".to_owned()),
        None => Some("the context source answered 207 without saying what it updated".to_owned()),
    }
}

/// A failed forwarded request as an error for the caller.
pub fn failure(a: &Answer, what: &str) -> NgsiError {
    let detail = a
        .body
        .as_ref()
        .and_then(|b| b.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("the context source answered {}", a.status));
    let kind = match a.status {
        404 => ErrorKind::ResourceNotFound,
        400 => ErrorKind::BadRequestData,
        409 => ErrorKind::AlreadyExists,
        504 => ErrorKind::ContextSourceTimeout,
        _ => ErrorKind::ContextSourceFailed,
    };
    NgsiError::new(kind, format!("{what}: {detail}"))
}

/// A payload as JSON-LD: the context URL as the `@context` of the object, or of each object of
/// an array (a batch).
fn with_context(body: &Value, link: &str) -> Value {
    let mut b = body.clone();
    let put = |v: &mut Value| {
        if let Value::Object(m) = v {
            m.insert("@context".into(), Value::String(link.to_owned()));
        }
    };
    match &mut b {
        Value::Array(items) => items.iter_mut().for_each(put),
        other => put(other),
    }
    b
}

/// Headers a contextSourceInfo pair may not set: tenant headers (§4.3.6.5: tenant information
/// is not part of contextSourceInfo) and the binding's own interaction headers.
fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 14] = [
        "ngsild-tenant",
        "fiware-service",
        "fiware-servicepath",
        "via",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "link",
    ];
    RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// A query string as forwarded: the percent-escapes of the characters a query may hold as they
/// are (`:`, `/`, `@`, `,`, `;`, `!`, `*`, `'`, `(`, `)`, `$`) are decoded, so that a source sees
/// `id=urn:ngsi-ld:Vehicle:1` however the client escaped it (the meaning is the same to an
/// NGSI-LD server; sources that match requests literally, as Orion-LD writes them, need it).
pub fn plain_query(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = rest
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|b| b":/@,;!*'()$".contains(b));
        match decoded {
            Some(b) => {
                out.push(b as char);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A forwarded query string narrowed to a source's registration: `id` set to the registered
/// ids when the client asked for none (nor an `idPattern`), `attrs` replaced by the attributes
/// the source provides (already intersected with those asked for).
pub fn narrow_query(query: &str, ids: Option<&[String]>, attrs: Option<&[String]>) -> String {
    let key = |p: &str| p.split_once('=').map_or(p, |(k, _)| k).to_owned();
    let has = |k: &str| query.split('&').any(|p| key(p) == k);
    let add_ids = ids.filter(|_| !has("id") && !has("idPattern"));
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !(attrs.is_some() && key(p) == "attrs"))
        .map(str::to_owned)
        .collect();
    // `&`, `=` and `+` mean something in a query string, `,` separates the list.
    let value = |x: &str| segment(x).replace('&', "%26").replace('=', "%3D").replace('+', "%2B").replace(',', "%2C");
    let list = |v: &[String]| v.iter().map(|x| value(x)).collect::<Vec<_>>().join(",");
    if let Some(ids) = add_ids {
        parts.push(format!("id={}", list(ids)));
    }
    if let Some(attrs) = attrs {
        parts.push(format!("attrs={}", list(attrs)));
    }
    parts.join("&")
}

/// The filter parameters of a client's query string (what a source needs to apply the same
/// query; not paging, rendering, ids or entity map parameters), decoded.
fn map_filters(query: &str) -> Vec<(String, String)> {
    const FILTERS: &[&str] =
        &["type", "idPattern", "attrs", "q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty", "datasetId"];
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| FILTERS.contains(&k.as_str()))
        .collect()
}

/// A query string of `filters` and `extra`, encoded, with the characters of ids left plain.
fn with_params(filters: &[(String, String)], extra: &[(&str, String)]) -> String {
    let mut all: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    plain_query(&serde_urlencoded::to_string(all).unwrap_or_default())
}

/// Percent-encodes a path segment (entity ids are URIs and may hold `#`, `?` or `/`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Forwarder {
    /// The context to speak to a source with: its `jsonldContext` if it named one (IoT agents
    /// do), else the client's.
    pub async fn context_for(&self, reg: &CompiledRegistration, client: &Arc<Context>) -> Arc<Context> {
        match reg.context_source_info.iter().find(|(k, _)| k == "jsonldContext") {
            Some(_) => self.context_of(reg).await,
            None => client.clone(),
        }
    }

    /// Distributed Partial Attribute Update (§5.6.4): sends the fragment to the sources
    /// registered for the attribute. Returns whether the broker keeps the attribute locally too
    /// (no exclusive or redirect registration took it).
    #[allow(clippy::too_many_arguments)]
    pub async fn update_attr(
        &self,
        dist: &Dist,
        tenant: &str,
        id: &str,
        types: &[String],
        name: &str,
        body: &Value,
        ctx: &Arc<Context>,
    ) -> NgsiResult<AttrForward> {
        self.single_attr(dist, tenant, id, types, name, Some(body), ctx, Op::UpdateAttrs, reqwest::Method::PATCH, "")
            .await
    }

    /// An operation on one attribute (partial update, replace, delete), sent to the sources
    /// registered for it with `method` at `/entities/{id}/attrs/{attr}` plus `query`. Returns
    /// whether the broker keeps the attribute locally too, and whether an inclusive source did
    /// the operation (the broker not holding the attribute is then no error).
    #[allow(clippy::too_many_arguments)]
    pub async fn single_attr(
        &self,
        dist: &Dist,
        tenant: &str,
        id: &str,
        types: &[String],
        name: &str,
        body: Option<&Value>,
        ctx: &Arc<Context>,
        op: Op,
        method: reqwest::Method,
        query: &str,
    ) -> NgsiResult<AttrForward> {
        let mut out = AttrForward { keep_local: true, done_remotely: false };
        if !self.active(tenant, dist) {
            return Ok(out);
        }
        let targets = self.targets(tenant, Some(id), types, Some(&[name.to_owned()]), op);
        for t in targets.iter().filter(|t| t.attrs.as_ref().is_none_or(|a| !a.is_empty())) {
            let cs = self.context_for(&t.reg, ctx).await;
            let path = format!("/ngsi-ld/v1/entities/{}/attrs/{}{query}", segment(id), segment(&cs.compact(name)));
            let a = self.send(t, tenant, method.clone(), &path, &cs, body, dist).await;
            if t.reg.mode.is_proxied() {
                out.keep_local = false;
                if a.status >= 300 {
                    return Err(failure(&a, &format!("the context source of {name} refused the operation")));
                }
            } else if a.status < 300 {
                out.done_remotely = true;
            }
        }
        Ok(out)
    }

    /// An operation carrying an entity fragment (create, update, append, merge, replace): each
    /// source registered for `op` gets the attributes it is registered for, with `method` at
    /// `path` (relative to its endpoint); `with_identity` adds the entity's id and type to what
    /// it gets (create, replace).
    #[allow(clippy::too_many_arguments)]
    pub async fn fragment(
        &self,
        dist: &Dist,
        tenant: &str,
        id: &str,
        types: &[String],
        fragment: &Map<String, Value>,
        ctx: &Arc<Context>,
        op: Op,
        method: reqwest::Method,
        path: &str,
        with_identity: bool,
    ) -> Forwarded {
        let mut out = Forwarded { rest: fragment.clone(), ..Default::default() };
        if !self.active(tenant, dist) {
            return out;
        }
        let names: Vec<String> = fragment
            .keys()
            .filter(|k| !matches!(k.as_str(), "id" | "type" | "@context" | "scope"))
            .map(|k| ctx.expand(k))
            .collect();
        let targets = self.targets(tenant, Some(id), types, (!names.is_empty()).then_some(&names[..]), op);
        for t in &targets {
            let mine: Vec<&String> = names.iter().filter(|n| t.attrs.as_ref().is_none_or(|a| a.contains(n))).collect();
            if mine.is_empty() && !with_identity {
                continue;
            }
            let part: Map<String, Value> = fragment
                .iter()
                .filter(|(k, _)| {
                    (with_identity && matches!(k.as_str(), "id" | "type")) || mine.contains(&&ctx.expand(k))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let cs = self.context_for(&t.reg, ctx).await;
            let body = Value::Object(recompact(&part, ctx, &cs));
            let a = self.send(t, tenant, method.clone(), path, &cs, Some(&body), dist).await;
            out.forwarded = true;
            if t.reg.mode == Mode::Redirect {
                out.redirected = true;
            }
            if a.status < 300 {
                out.accepted = true;
            } else {
                out.errors.push(failure(&a, &format!("context source {}", t.reg.endpoint)));
            }
            for k in part.keys().filter(|k| !matches!(k.as_str(), "id" | "type")) {
                let n = ctx.expand(k);
                let partly = (a.status == 207).then(|| not_updated(&a, &n, &cs)).flatten();
                if let Some(why) = partly {
                    out.refused.push((n, why));
                } else if a.status < 300 {
                    if !out.sent.contains(&n) {
                        out.sent.push(n);
                    }
                } else {
                    out.refused.push((n, failure(&a, "context source").detail));
                }
                if t.reg.mode.is_proxied() {
                    out.rest.remove(k);
                }
            }
            if a.status >= 300 && part.keys().all(|k| matches!(k.as_str(), "id" | "type")) {
                out.refused.push((id.to_owned(), failure(&a, "context source").detail));
            }
        }
        out
    }

    /// Distributed Retrieve Entity (§5.7.1): asks the sources registered for the entity and
    /// merges their answers into the broker's own view (`local`, if it has the entity). A source
    /// registered for `queryEntity` or `queryBatch` but not `retrieveEntity` is asked with a
    /// query for the entity's id (and the types known for it).
    pub async fn retrieve(
        &self,
        dist: &Dist,
        tenant: &str,
        id: &str,
        local: Option<Arc<Entity>>,
        ctx: &Arc<Context>,
    ) -> Option<Arc<Entity>> {
        if !self.active(tenant, dist) {
            return local;
        }
        let types: Vec<String> = local.as_ref().map(|e| e.type_names()).unwrap_or_default();
        let mut targets: Vec<(Target, Op)> = self
            .targets(tenant, Some(id), &types, None, Op::RetrieveEntity)
            .into_iter()
            .map(|t| (t, Op::RetrieveEntity))
            .collect();
        for op in [Op::QueryEntity, Op::QueryBatch] {
            for t in self.targets(tenant, Some(id), &types, None, op) {
                if !targets.iter().any(|(x, _)| x.reg.id == t.reg.id) {
                    targets.push((t, op));
                }
            }
        }
        if targets.is_empty() {
            return local;
        }
        let mut merged: Option<Entity> = local.as_deref().cloned();
        for (t, op) in &targets {
            let cs = self.context_for(&t.reg, ctx).await;
            let attrs: Option<Vec<String>> =
                t.attrs.as_ref().filter(|a| !a.is_empty()).map(|a| a.iter().map(|a| cs.compact(a)).collect());
            let a = match op {
                Op::RetrieveEntity => {
                    let mut path = format!("/ngsi-ld/v1/entities/{}", segment(id));
                    if let Some(list) = &attrs {
                        path.push_str(&format!(
                            "?attrs={}",
                            list.iter().map(|a| segment(a)).collect::<Vec<_>>().join(",")
                        ));
                    }
                    self.send(t, tenant, reqwest::Method::GET, &path, &cs, None, dist).await
                }
                _ => {
                    // The entity's types: the broker's, else those the registration names.
                    let mut known: Vec<String> = Vec::new();
                    for ty in types.iter().chain(if types.is_empty() { t.reg.types().collect() } else { Vec::new() }) {
                        let c = cs.compact(ty);
                        if !known.contains(&c) {
                            known.push(c);
                        }
                    }
                    if *op == Op::QueryEntity {
                        let mut path = format!("/ngsi-ld/v1/entities?id={}", segment(id));
                        if !known.is_empty() {
                            path.push_str(&format!(
                                "&type={}",
                                known.iter().map(|t| segment(t)).collect::<Vec<_>>().join(",")
                            ));
                        }
                        if let Some(list) = &attrs {
                            path.push_str(&format!(
                                "&attrs={}",
                                list.iter().map(|a| segment(a)).collect::<Vec<_>>().join(",")
                            ));
                        }
                        self.send(t, tenant, reqwest::Method::GET, &path, &cs, None, dist).await
                    } else {
                        let mut selector = Map::new();
                        selector.insert("id".into(), Value::String(id.to_owned()));
                        if !known.is_empty() {
                            selector.insert("type".into(), Value::String(known.join(",")));
                        }
                        let mut query = Map::new();
                        query.insert("type".into(), Value::String("Query".into()));
                        query.insert("entities".into(), Value::Array(vec![Value::Object(selector)]));
                        if let Some(list) = attrs {
                            query.insert("attrs".into(), Value::Array(list.into_iter().map(Value::String).collect()));
                        }
                        let body = Value::Object(query);
                        let path = "/ngsi-ld/v1/entityOperations/query";
                        self.send(t, tenant, reqwest::Method::POST, path, &cs, Some(&body), dist).await
                    }
                }
            };
            // A query answers a list; the entity asked for is the one with this id.
            let found = match a.body.as_ref().filter(|_| a.status == 200) {
                Some(Value::Array(items)) => items.iter().find(|e| e.get("id").and_then(Value::as_str) == Some(id)),
                other => other,
            };
            let Some(remote) = found.and_then(|b| entity_from(b, &cs)) else {
                continue;
            };
            if *remote.id != *id {
                continue;
            }
            // Only what the registration provides counts.
            let mut remote = remote;
            if let Some(attrs) = &t.attrs {
                remote.attrs.retain(|k, _| attrs.iter().any(|a| a.as_str() == k.as_ref()));
            }
            match &mut merged {
                Some(m) => merge(m, remote, t.reg.mode),
                None => merged = Some(remote),
            }
        }
        merged.map(Arc::new)
    }

    /// Distributed Query Entities (§5.7.2): the same query (the client's query string and
    /// context) goes to every source registered for the types asked for; entities are merged
    /// by id with the broker's own page, which keeps its order, the others following. Paging is
    /// per source (entity maps, which fix the entities pages walk, go through `query_ids` and
    /// `fetch_ids` instead): a page holds at most `limit` entities. A Query of
    /// `POST /entityOperations/query` goes the same way to the sources registered for
    /// `queryBatch`, as that POST (its `@context` sent as a Link).
    #[allow(clippy::too_many_arguments)]
    pub async fn query(
        &self,
        dist: &Dist,
        tenant: &str,
        types: &[String],
        attrs: Option<&[String]>,
        local: Vec<Arc<Entity>>,
        limit: usize,
        ctx: &Arc<Context>,
    ) -> Vec<Arc<Entity>> {
        if !self.active(tenant, dist) {
            return local;
        }
        let op = if dist.query_body.is_some() { Op::QueryBatch } else { Op::QueryEntity };
        let mut targets = self.targets(tenant, None, types, attrs, op);
        // `csf` selects the sources by their registration's properties (§5.7.2.4).
        if let Some(csf) = &dist.csf {
            targets.retain(|t| csf.matches(&t.reg.props));
        }
        if targets.is_empty() {
            return local;
        }
        let mut out: Vec<Entity> = local.iter().map(|e| (**e).clone()).collect();
        // The source filter is this broker's business; with split entities the entity filters
        // are applied to the merged entities instead.
        let dropped: &[&str] = if dist.split_entities { &["csf", "splitEntities", "q", "scopeQ"] } else { &["csf"] };
        let query = dist
            .query
            .as_deref()
            .map(plain_query)
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !dropped.contains(&p.split_once('=').map_or(*p, |(k, _)| k)))
            .collect::<Vec<_>>()
            .join("&");
        let base = if op == Op::QueryBatch { "/ngsi-ld/v1/entityOperations/query" } else { "/ngsi-ld/v1/entities" };
        let path = if query.is_empty() { base.to_owned() } else { format!("{base}?{query}") };
        let (method, body) = match &dist.query_body {
            Some(Value::Object(q)) => {
                let mut q = q.clone();
                q.remove("@context");
                (reqwest::Method::POST, Some(Value::Object(q)))
            }
            _ => (reqwest::Method::GET, None),
        };
        // Each GET is narrowed to what the source is registered for (§5.7.2.4): the entity ids
        // it names, when the client named none, and the attributes it provides.
        let paths: Vec<String> = targets
            .iter()
            .map(|t| match method {
                reqwest::Method::GET => {
                    let ids = t.reg.ids_for(types);
                    let attrs: Option<Vec<String>> =
                        t.attrs.as_ref().filter(|a| !a.is_empty()).map(|a| a.iter().map(|a| ctx.compact(a)).collect());
                    let narrowed = narrow_query(&query, ids.as_deref(), attrs.as_deref());
                    if narrowed.is_empty() { base.to_owned() } else { format!("{base}?{narrowed}") }
                }
                _ => path.clone(),
            })
            .collect();
        // The sources are asked at once; their answers are merged in registration order.
        let answers = futures_util::future::join_all(
            targets
                .iter()
                .zip(&paths)
                .map(|(t, path)| self.send(t, tenant, method.clone(), path, ctx, body.as_ref(), dist)),
        )
        .await;
        for (t, a) in targets.iter().zip(answers) {
            let Some(Value::Array(items)) = a.body.filter(|_| a.status == 200) else { continue };
            for item in &items {
                let Some(mut remote) = entity_from(item, ctx) else { continue };
                if let Some(attrs) = &t.attrs {
                    remote.attrs.retain(|k, _| attrs.iter().any(|a| a.as_str() == k.as_ref()));
                }
                match out.iter_mut().find(|e| e.id == remote.id) {
                    Some(m) => merge(m, remote, t.reg.mode),
                    None => out.push(remote),
                }
            }
        }
        out.truncate(limit.max(local.len()));
        out.into_iter().map(Arc::new).collect()
    }

    /// The ids of every entity the sources registered for the query's types hold, by
    /// registration (for an entity map, §5.5.9.3): the query's filters go to each source,
    /// paged 1000 at a time, up to `max` ids in all. A source that fails adds nothing.
    pub async fn query_ids(
        &self,
        dist: &Dist,
        tenant: &str,
        types: &[String],
        attrs: Option<&[String]>,
        ctx: &Arc<Context>,
        max: usize,
    ) -> Vec<(String, Vec<String>)> {
        const PAGE: usize = 1000;
        if !self.active(tenant, dist) || dist.query_body.is_some() {
            return Vec::new();
        }
        let filters = map_filters(dist.query.as_deref().unwrap_or(""));
        let mut out = Vec::new();
        let mut total = 0;
        for t in self.targets(tenant, None, types, attrs, Op::QueryEntity) {
            let mut ids: Vec<String> = Vec::new();
            let mut offset = 0;
            while total + ids.len() <= max {
                let path = format!(
                    "/ngsi-ld/v1/entities?{}",
                    with_params(&filters, &[("limit", PAGE.to_string()), ("offset", offset.to_string())])
                );
                let a = self.send(&t, tenant, reqwest::Method::GET, &path, ctx, None, dist).await;
                let Some(Value::Array(items)) = a.body.filter(|_| a.status == 200) else { break };
                for item in &items {
                    if let Some(id) = item.get("id").and_then(Value::as_str)
                        && !ids.iter().any(|i| i == id)
                    {
                        ids.push(id.to_owned());
                    }
                }
                if items.len() < PAGE {
                    break;
                }
                offset += items.len();
            }
            total += ids.len();
            out.push((t.reg.id.clone(), ids));
        }
        out
    }

    /// The entities of an entity map one registration's source still holds among `ids`, with
    /// the registration's mode (for merging), the query's filters applied again; `None` when the
    /// source could not be asked (it failed or forwarding is off), `Some` of nothing when the
    /// registration no longer serves the query.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_ids(
        &self,
        dist: &Dist,
        tenant: &str,
        reg_id: &str,
        types: &[String],
        attrs: Option<&[String]>,
        ids: &[String],
        ctx: &Arc<Context>,
    ) -> Option<(Vec<Entity>, Mode)> {
        if !self.active(tenant, dist) || dist.query_body.is_some() {
            return None;
        }
        let Some(t) =
            self.targets(tenant, None, types, attrs, Op::QueryEntity).into_iter().find(|t| t.reg.id == reg_id)
        else {
            return Some((Vec::new(), Mode::Inclusive));
        };
        let filters = map_filters(dist.query.as_deref().unwrap_or(""));
        let path = format!(
            "/ngsi-ld/v1/entities?{}",
            with_params(&filters, &[("id", ids.join(",")), ("limit", ids.len().clamp(1, 1000).to_string())])
        );
        let a = self.send(&t, tenant, reqwest::Method::GET, &path, ctx, None, dist).await;
        let Some(Value::Array(items)) = a.body.filter(|_| a.status == 200) else { return None };
        let mut out = Vec::new();
        for item in &items {
            let Some(mut remote) = entity_from(item, ctx) else { continue };
            if !ids.iter().any(|i| **i == *remote.id) {
                continue;
            }
            if let Some(attrs) = &t.attrs {
                remote.attrs.retain(|k, _| attrs.iter().any(|a| a.as_str() == k.as_ref()));
            }
            out.push(remote);
        }
        Some((out, t.reg.mode))
    }

    /// Distributed Delete Entity (§5.6.6.4): the sources registered for the entity's
    /// `deleteEntity` delete it too, each answer one part of the outcome; an exclusive or
    /// redirect registration about the entity that does not serve `deleteEntity` is a Conflict
    /// part (what it holds cannot be deleted). Empty when no registration is concerned.
    pub async fn delete(&self, dist: &Dist, tenant: &str, id: &str, types: &[String]) -> Vec<Part> {
        if !self.active(tenant, dist) {
            return Vec::new();
        }
        let mut parts = Vec::new();
        for t in &self.targets(tenant, Some(id), types, None, Op::DeleteEntity) {
            let path = format!("/ngsi-ld/v1/entities/{}", segment(id));
            let a = self.send(t, tenant, reqwest::Method::DELETE, &path, &CORE, None, dist).await;
            let result = match a.status < 300 {
                true => Ok(()),
                false => Err(failure(&a, &format!("context source {} did not delete {id}", t.reg.id))),
            };
            parts.push(Part { proxied: t.reg.mode.is_proxied(), result });
        }
        for reg in self.registry.proxied_without(tenant, id, types, Op::DeleteEntity) {
            let conflict = crate::registry::Registrations::unserved(&reg, id, Op::DeleteEntity);
            parts.push(Part { proxied: false, result: Err(conflict) });
        }
        parts
    }
}

/// One element of a batch operation as the forwarding layer sees it: the entity it is about
/// (id, expanded types) and its fragment, in the element's own context.
pub struct BatchItem<'a> {
    pub id: &'a str,
    pub types: Vec<String>,
    pub fragment: &'a Map<String, Value>,
    pub ctx: Arc<Context>,
}

/// An element sent to a source in a batch: its index and the keys of its fragment it gets.
type Member<'a> = (usize, Vec<&'a String>);

/// What the sources did with one element of a batch.
#[derive(Debug, Default)]
pub struct ItemOutcome {
    /// Whether any source was sent the element.
    pub forwarded: bool,
    /// Whether a redirect registration took it (the broker then keeps nothing of it).
    pub redirected: bool,
    /// Whether a source answered that it created the entity.
    pub created: bool,
    /// The fragment left for the broker, when exclusive or redirect sources took attributes
    /// (`None`: the element stays whole).
    pub rest: Option<Map<String, Value>>,
    /// The first refusal of a source (the element's error).
    pub error: Option<NgsiError>,
    /// Whether an exclusive or redirect source took attributes of it.
    pub took_attrs: bool,
}

impl ItemOutcome {
    /// Whether attributes are left for the broker (`fragment` is the element as given).
    pub fn attrs_left(&self, fragment: &Map<String, Value>) -> bool {
        self.rest.as_ref().unwrap_or(fragment).keys().any(|k| !matches!(k.as_str(), "id" | "type" | "@context"))
    }
}

/// A source's answer to a batch request, entity by entity: `Ok(created)` or its refusal.
/// 207 carries a BatchOperationResult (an id in `errors` was refused, the others succeeded);
/// another success status covers every entity sent (201 with an array names those created);
/// any other status refuses them all.
fn batch_answers(a: &Answer, ids: &[&str]) -> Vec<Result<bool, NgsiError>> {
    match a.status {
        207 => {
            let errors = a.body.as_ref().and_then(|b| b.get("errors")).and_then(Value::as_array);
            ids.iter()
                .map(|id| {
                    let err =
                        errors.and_then(|es| es.iter().find(|e| e.get("entityId").and_then(Value::as_str) == Some(id)));
                    match err {
                        None => Ok(false),
                        Some(e) => {
                            let problem = e.get("error").cloned();
                            let status = problem
                                .as_ref()
                                .and_then(|p| p.get("status"))
                                .and_then(Value::as_u64)
                                .and_then(|s| u16::try_from(s).ok())
                                .unwrap_or(400);
                            Err(failure(&Answer { status, body: problem }, "context source"))
                        }
                    }
                })
                .collect()
        }
        s if s < 300 => {
            let listed = a.body.as_ref().and_then(Value::as_array);
            ids.iter()
                .map(|id| Ok(s == 201 && listed.is_none_or(|l| l.iter().any(|x| x.as_str() == Some(id)))))
                .collect()
        }
        _ => ids.iter().map(|_| Err(failure(a, "context source"))).collect(),
    }
}

impl Forwarder {
    /// Distributed batch create, upsert, update and merge (§5.6.7–5.6.9, §5.6.20 with §4.3.6):
    /// each element's attributes registered for `op` are grouped by registration, and each
    /// source gets one batch request (`POST` at `path`, relative to its endpoint) holding its
    /// part of every element, always with the element's id and type. Exclusive and redirect
    /// registrations take what they were sent away from the broker; inclusive ones get a copy.
    /// `whole` (create, upsert): a source registered for the entity gets it even when none of
    /// its attributes are given. The answers are merged element by element.
    pub async fn batch(
        &self,
        dist: &Dist,
        tenant: &str,
        items: &[BatchItem<'_>],
        op: Op,
        path: &str,
        whole: bool,
    ) -> Vec<ItemOutcome> {
        let mut out: Vec<ItemOutcome> = items.iter().map(|_| ItemOutcome::default()).collect();
        if !self.active(tenant, dist) {
            return out;
        }
        // Per registration: the target and, per element sent, its index and the keys it gets.
        let mut groups: Vec<(Target, Vec<Member<'_>>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let names: Vec<(&String, String)> = item
                .fragment
                .keys()
                .filter(|k| !matches!(k.as_str(), "id" | "type" | "@context" | "scope"))
                .map(|k| (k, item.ctx.expand(k)))
                .collect();
            let expanded: Vec<String> = names.iter().map(|(_, n)| n.clone()).collect();
            let asked = (!expanded.is_empty()).then_some(&expanded[..]);
            for t in self.targets(tenant, Some(item.id), &item.types, asked, op) {
                let mut keys: Vec<&String> = names
                    .iter()
                    .filter(|(_, n)| t.attrs.as_ref().is_none_or(|a| a.contains(n)))
                    .map(|(k, _)| *k)
                    .collect();
                if keys.is_empty() && !whole {
                    continue;
                }
                // A source registered for whole entities gets their scope too.
                if t.reg.attributes_for(Some(item.id), &item.types).is_none()
                    && let Some((k, _)) = item.fragment.get_key_value("scope")
                {
                    keys.push(k);
                }
                match groups.iter_mut().find(|(g, _)| g.reg.id == t.reg.id) {
                    Some((_, members)) => members.push((i, keys)),
                    None => groups.push((t, vec![(i, keys)])),
                }
            }
        }
        if groups.is_empty() {
            return out;
        }
        // The sources are asked at once, each with one request.
        let answers = futures_util::future::join_all(groups.iter().map(|(t, members)| async move {
            let first = members.first().map(|(i, _)| items[*i].ctx.clone()).unwrap_or_else(|| CORE.clone());
            let cs = self.context_for(&t.reg, &first).await;
            let body: Vec<Value> = members
                .iter()
                .map(|(i, keys)| {
                    let item = &items[*i];
                    let part: Map<String, Value> = item
                        .fragment
                        .iter()
                        .filter(|(k, _)| matches!(k.as_str(), "id" | "type") || keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Value::Object(recompact(&part, &item.ctx, &cs))
                })
                .collect();
            let body = Value::Array(body);
            self.send(t, tenant, reqwest::Method::POST, path, &cs, Some(&body), dist).await
        }))
        .await;
        for ((t, members), a) in groups.iter().zip(answers) {
            let ids: Vec<&str> = members.iter().map(|(i, _)| items[*i].id).collect();
            for ((i, keys), result) in members.iter().zip(batch_answers(&a, &ids)) {
                let o = &mut out[*i];
                o.forwarded = true;
                o.redirected |= t.reg.mode == Mode::Redirect;
                match result {
                    Ok(created) => o.created |= created,
                    Err(e) => {
                        o.error.get_or_insert(e);
                    }
                }
                if t.reg.mode.is_proxied() {
                    o.took_attrs |= keys.iter().any(|k| k.as_str() != "scope");
                    let rest = o.rest.get_or_insert_with(|| items[*i].fragment.clone());
                    for k in keys {
                        rest.remove(k.as_str());
                    }
                }
            }
        }
        out
    }

    /// Distributed Purge Entities (§5.6.21): the same request (the client's query string and
    /// context) goes to every source registered for `purgeEntity` on the types asked for, at
    /// once. Returns how many accepted it.
    pub async fn purge(&self, dist: &Dist, tenant: &str, types: &[String], ctx: &Context) -> usize {
        if !self.active(tenant, dist) {
            return 0;
        }
        let targets = self.targets(tenant, None, types, None, Op::PurgeEntity);
        let query = dist.query.as_deref().map(plain_query).unwrap_or_default();
        let path =
            if query.is_empty() { "/ngsi-ld/v1/entities".to_owned() } else { format!("/ngsi-ld/v1/entities?{query}") };
        let answers = futures_util::future::join_all(
            targets.iter().map(|t| self.send(t, tenant, reqwest::Method::DELETE, &path, ctx, None, dist)),
        )
        .await;
        answers.iter().filter(|a| a.status < 300).count()
    }

    /// Distributed Batch Entity Delete (§5.6.10): each source registered for `deleteBatch` on
    /// some of the entities (id, expanded types) gets one batch delete with their ids. Per
    /// entity: whether a source deleted it, and the refusal of an exclusive or redirect source
    /// (which holds the entity; an inclusive one may simply not have it).
    pub async fn batch_delete(
        &self,
        dist: &Dist,
        tenant: &str,
        entities: &[(&str, Vec<String>)],
    ) -> Vec<(bool, Option<NgsiError>)> {
        let mut out: Vec<(bool, Option<NgsiError>)> = entities.iter().map(|_| (false, None)).collect();
        if !self.active(tenant, dist) {
            return out;
        }
        let mut groups: Vec<(Target, Vec<usize>)> = Vec::new();
        for (i, (id, types)) in entities.iter().enumerate() {
            for t in self.targets(tenant, Some(id), types, None, Op::DeleteBatch) {
                match groups.iter_mut().find(|(g, _)| g.reg.id == t.reg.id) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((t, vec![i])),
                }
            }
        }
        let path = "/ngsi-ld/v1/entityOperations/delete";
        let answers = futures_util::future::join_all(groups.iter().map(|(t, members)| {
            let body = Value::Array(members.iter().map(|i| Value::String(entities[*i].0.to_owned())).collect());
            async move { self.send(t, tenant, reqwest::Method::POST, path, &CORE, Some(&body), dist).await }
        }))
        .await;
        for ((t, members), a) in groups.iter().zip(answers) {
            let ids: Vec<&str> = members.iter().map(|i| entities[*i].0).collect();
            for (i, result) in members.iter().zip(batch_answers(&a, &ids)) {
                match result {
                    Ok(_) => out[*i].0 = true,
                    Err(e) if t.reg.mode.is_proxied() => {
                        out[*i].1.get_or_insert(e);
                    }
                    Err(_) => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{narrow_query, plain_query};

    #[test]
    fn forwarded_queries_are_narrowed_to_the_registration() {
        let ids = vec!["urn:ngsi-ld:V:1".to_owned(), "urn:a&b".to_owned()];
        let attrs = vec!["speed".to_owned()];
        assert_eq!(
            narrow_query("type=Vehicle&attrs=speed,brand", Some(&ids), Some(&attrs)),
            "type=Vehicle&id=urn:ngsi-ld:V:1,urn:a%26b&attrs=speed"
        );
        // The client's own ids (or pattern) are kept; no attributes to narrow keeps its attrs.
        assert_eq!(narrow_query("id=urn:x&type=V", Some(&ids), None), "id=urn:x&type=V");
        assert_eq!(narrow_query("idPattern=.*&attrs=a", Some(&ids), None), "idPattern=.*&attrs=a");
        assert_eq!(narrow_query("", None, Some(&attrs)), "attrs=speed");
    }

    #[test]
    fn forwarded_queries_decode_only_what_a_query_holds_as_it_is() {
        assert_eq!(plain_query("id=urn%3Angsi-ld%3AV%3A1&type=Vehicle"), "id=urn:ngsi-ld:V:1&type=Vehicle");
        assert_eq!(plain_query("attrs=a%2Cb&q=x%3D%3D1%26y"), "attrs=a,b&q=x%3D%3D1%26y");
        // Escapes of separators stay; a stray or truncated `%` is kept as it is.
        assert_eq!(plain_query("q=a%25b%3"), "q=a%25b%3");
        assert_eq!(plain_query("q=%e2%82%ac%"), "q=%e2%82%ac%");
    }
}
