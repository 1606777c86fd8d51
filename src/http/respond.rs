//! Response building shared by handlers: where the `@context` goes (Link header or body
//! member), content types, and the render options common to retrieve and query.

use std::collections::HashSet;

use actix_web::HttpResponse;
use actix_web::http::header;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Accept, LD_CONTEXT_REL, Params};
use crate::error::NgsiError;
use crate::jsonld::{Context, core};
use crate::model::Entity;
use crate::render::{self, Join, Projection, RenderOpts, parse_lang, parse_projection};

/// The `options` values the read operations know.
pub const READ_OPTIONS: &[&str] = &["keyValues", "simplified", "concise", "normalized", "sysAttrs"];

/// Builds render options from the common query parameters.
pub fn render_opts(p: &Params, ctx: &Context) -> Result<RenderOpts, ApiError> {
    let mut o = RenderOpts::default();
    let options = p.options(READ_OPTIONS)?;
    o.apply_options(&options, p.get("format"))?;
    if let Some(l) = p.get("lang") {
        o.lang = Some(parse_lang(l)?);
    }
    let names = |list: Vec<String>| -> HashSet<String> {
        list.into_iter().map(|n| if n == "id" || n == "type" || n == "scope" { n } else { ctx.expand(&n) }).collect()
    };
    let expand = |n: &str| ctx.expand(n);
    // pick/omit are expressions with nested braces, so they are parsed whole, not split on commas.
    let pick_tree = p.get("pick").map(|v| parse_projection(v, &expand)).transpose()?;
    let omit_tree = p.get("omit").map(|v| parse_projection(v, &expand)).transpose()?;
    if pick_tree.is_some() && omit_tree.is_some() {
        return Err(NgsiError::bad_data("pick and omit cannot be used together").into());
    }
    // attrs is the older form of pick (GS CIM 009 §4.21): the two cannot be combined.
    if p.get("attrs").is_some() && (pick_tree.is_some() || omit_tree.is_some()) {
        return Err(NgsiError::bad_data("attrs cannot be combined with pick or omit").into());
    }
    o.pick = pick_tree.as_ref().map(Projection::names);
    if let Some(attrs) = p.list("attrs") {
        let mut set = names(attrs);
        set.insert("id".into());
        set.insert("type".into());
        set.insert("scope".into());
        o.pick = Some(set);
    }
    o.omit = omit_tree.as_ref().map(Projection::leaves);
    o.pick_tree = pick_tree;
    o.omit_tree = omit_tree;
    o.join = match p.get("join") {
        None | Some("@none") => None,
        Some("inline") => Some(Join::Inline),
        Some("flat") => Some(Join::Flat),
        Some(other) => {
            return Err(NgsiError::invalid(format!("join must be flat, inline or @none, not {other:?}")).into());
        }
    };
    o.join_level = match p.usize("joinLevel")? {
        Some(0) => return Err(NgsiError::bad_data("joinLevel must be at least 1").into()),
        Some(n) => n,
        None => 1,
    };
    o.contained_by = p.list("containedBy").unwrap_or_default();
    o.dataset_ids = p.list("datasetId");
    o.geometry_property = p.get("geometryProperty").map(|g| ctx.expand(g));
    Ok(o)
}

/// The Link header value announcing a context.
pub fn link_value(ctx: &Context) -> String {
    let url = ctx.link_url().unwrap_or(core::CORE_CONTEXT_URL);
    format!("<{url}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\"")
}

fn context_member(ctx: &Context) -> Value {
    match &ctx.original {
        Value::Null => json!(core::CORE_CONTEXT_URL),
        other => other.clone(),
    }
}

/// A 200 with one rendered entity (or Feature) in the negotiated media type.
pub fn entity(e: &Entity, ctx: &Context, accept: Accept, o: &RenderOpts) -> HttpResponse {
    if accept != Accept::GeoJson && render::direct(o) {
        // The common case is written directly, without a JSON tree.
        let mut body = Vec::with_capacity(1024);
        if accept == Accept::LdJson {
            render::write_entity(e, ctx, o, Some(("@context", &context_member(ctx))), &mut body);
            return HttpResponse::Ok().content_type("application/ld+json").body(body);
        }
        render::write_entity(e, ctx, o, None, &mut body);
        return HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::LINK, link_value(ctx)))
            .body(body);
    }
    let mut body = render::entity(e, ctx, o);
    match accept {
        Accept::GeoJson => {
            // GeoJSON has no Link convention of its own: like JSON-LD, the Feature carries its
            // @context as a member (GS CIM 009 §6.3.15), the Link header stays for JSON clients.
            body = render::feature(e, body, o);
            if let Value::Object(m) = &mut body {
                m.insert("@context".into(), context_member(ctx));
            }
            HttpResponse::Ok()
                .content_type("application/geo+json")
                .insert_header((header::LINK, link_value(ctx)))
                .body(body.to_string())
        }
        Accept::LdJson => {
            if let Value::Object(m) = &mut body {
                m.insert("@context".into(), context_member(ctx));
            }
            HttpResponse::Ok().content_type("application/ld+json").body(body.to_string())
        }
        Accept::Json => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::LINK, link_value(ctx)))
            .body(body.to_string()),
    }
}

/// A 200 with already rendered entities (`join=flat` answers), JSON or JSON-LD.
pub fn rendered_list(items: Vec<Value>, ctx: &Context, accept: Accept, count: Option<usize>) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    if let Some(n) = count {
        resp.insert_header(("NGSILD-Results-Count", n.to_string()));
    }
    match accept {
        Accept::LdJson => {
            let c = context_member(ctx);
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut v| {
                    if let Value::Object(m) = &mut v {
                        m.insert("@context".into(), c.clone());
                    }
                    v
                })
                .collect();
            resp.content_type("application/ld+json").body(Value::Array(items).to_string())
        }
        _ => resp
            .content_type("application/json")
            .insert_header((header::LINK, link_value(ctx)))
            .body(Value::Array(items).to_string()),
    }
}

/// False for an entity pick/omit left without any member: such an entity is not returned
/// (GS CIM 009 §4.21), as Retrieve Entity answers 404 for it.
fn has_members(v: &Value) -> bool {
    v.as_object().is_none_or(|m| !m.is_empty())
}

/// A 200 with a list of rendered entities (or a FeatureCollection).
pub fn entities(
    list: &[std::sync::Arc<Entity>],
    ctx: &Context,
    accept: Accept,
    o: &RenderOpts,
    count: Option<usize>,
) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    if let Some(n) = count {
        resp.insert_header(("NGSILD-Results-Count", n.to_string()));
    }
    if accept != Accept::GeoJson && render::direct(o) {
        // The common case is written directly, without a JSON tree; every entity has members.
        let mut body = Vec::with_capacity(list.len() * 640 + 2);
        let c = (accept == Accept::LdJson).then(|| context_member(ctx));
        body.push(b'[');
        for (i, e) in list.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            render::write_entity(e, ctx, o, c.as_ref().map(|c| ("@context", c)), &mut body);
        }
        body.push(b']');
        if accept == Accept::LdJson {
            return resp.content_type("application/ld+json").body(body);
        }
        return resp.content_type("application/json").insert_header((header::LINK, link_value(ctx))).body(body);
    }
    match accept {
        Accept::GeoJson => {
            let features: Vec<Value> = list.iter().map(|e| render::feature(e, render::entity(e, ctx, o), o)).collect();
            resp.content_type("application/geo+json").insert_header((header::LINK, link_value(ctx))).body(
                json!({"type": "FeatureCollection", "features": features, "@context": context_member(ctx)}).to_string(),
            )
        }
        Accept::LdJson => {
            let c = context_member(ctx);
            let items: Vec<Value> = list
                .iter()
                .map(|e| render::entity(e, ctx, o))
                .filter(has_members)
                .map(|mut v| {
                    if let Value::Object(m) = &mut v {
                        m.insert("@context".into(), c.clone());
                    }
                    v
                })
                .collect();
            resp.content_type("application/ld+json").body(Value::Array(items).to_string())
        }
        Accept::Json => {
            let items: Vec<Value> = list.iter().map(|e| render::entity(e, ctx, o)).filter(has_members).collect();
            resp.content_type("application/json")
                .insert_header((header::LINK, link_value(ctx)))
                .body(Value::Array(items).to_string())
        }
    }
}

/// 204, or 207 with `{updated, notUpdated}` when some attributes were not written.
pub fn attr_outcome(out: &crate::ops::AttrOutcome, ctx: &Context) -> HttpResponse {
    if out.not_updated.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    let updated: Vec<Value> = out.updated.iter().map(|n| json!(ctx.compact(n))).collect();
    let not_updated: Vec<Value> =
        out.not_updated.iter().map(|(n, reason)| json!({"attributeName": ctx.compact(n), "reason": reason})).collect();
    HttpResponse::MultiStatus()
        .content_type("application/json")
        .body(json!({"updated": updated, "notUpdated": not_updated}).to_string())
}

/// 204, or a 207 BatchOperationResult for one entity when some parts of a distributed
/// operation failed (GS CIM 009 §5.6.6.4: a partial success).
pub fn parts(id: &str, failed: Vec<crate::error::NgsiError>) -> HttpResponse {
    if failed.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    let out = crate::ops::BatchOutcome {
        success: vec![id.to_owned()],
        created: Vec::new(),
        errors: failed.into_iter().map(|e| (id.to_owned(), e)).collect(),
    };
    batch_207(&out)
}

/// A 207 BatchOperationResult.
pub fn batch_207(out: &crate::ops::BatchOutcome) -> HttpResponse {
    let errors: Vec<Value> =
        out.errors.iter().map(|(id, e)| json!({"entityId": id, "error": super::error::problem(e)})).collect();
    HttpResponse::MultiStatus()
        .content_type("application/json")
        .body(json!({"success": out.success, "errors": errors}).to_string())
}

/// A 200 with any JSON document, its context in a Link header (JSON) or `@context` (JSON-LD).
pub fn document(mut body: Value, ctx: &Context, accept: Accept) -> HttpResponse {
    match accept {
        Accept::LdJson => {
            let c = context_member(ctx);
            match &mut body {
                Value::Object(m) => {
                    m.insert("@context".into(), c);
                }
                Value::Array(items) => {
                    for i in items {
                        if let Value::Object(m) = i {
                            m.insert("@context".into(), c.clone());
                        }
                    }
                }
                _ => {}
            }
            HttpResponse::Ok().content_type("application/ld+json").body(body.to_string())
        }
        _ => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::LINK, link_value(ctx)))
            .body(body.to_string()),
    }
}

/// A page of a collection (subscriptions, registrations): the documents, `NGSILD-Results-Count`
/// when counted, and `Link` headers to the previous and the next page (GS CIM 009 §5.5.9,
/// §6.3.20) that repeat the query's other parameters (`query`, already encoded, may be empty).
#[allow(clippy::too_many_arguments)]
pub fn page(
    items: Vec<Value>,
    ctx: &Context,
    accept: Accept,
    base: &str,
    query: &str,
    offset: usize,
    limit: usize,
    total: usize,
    count: bool,
) -> HttpResponse {
    let mut resp = document(Value::Array(items), ctx, accept);
    if count && let Ok(v) = header::HeaderValue::from_str(&total.to_string()) {
        resp.headers_mut().insert(header::HeaderName::from_static("ngsild-results-count"), v);
    }
    let prefix = if query.is_empty() { String::new() } else { format!("{query}&") };
    let link = |o: usize, rel: &str| {
        format!("<{base}?{prefix}limit={limit}&offset={o}>;rel=\"{rel}\";type=\"application/ld+json\"")
    };
    let mut links = Vec::new();
    if limit > 0 && offset > 0 {
        links.push(link(offset.saturating_sub(limit), "prev"));
    }
    if limit > 0 && offset + limit < total {
        links.push(link(offset + limit, "next"));
    }
    for l in links {
        if let Ok(v) = header::HeaderValue::from_str(&l) {
            resp.headers_mut().append(header::LINK, v);
        }
    }
    resp
}

/// Adds the `prev` and `next` Link headers of a page of entities (GS CIM 009 §4.12, §6.3.10):
/// the request's own parameters (`params`, without `limit` and `offset`) and the page's,
/// sorted by name and written as given, so a link reads like the query it continues; `next` is
/// the next page's offset when elements remain; `media` the answer's media type.
pub fn entity_page_links(
    resp: &mut HttpResponse,
    base: &str,
    params: &[(String, String)],
    offset: usize,
    limit: usize,
    next: Option<usize>,
    media: &str,
) {
    if limit == 0 {
        return;
    }
    let link = |o: usize, rel: &str| {
        let mut all: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        all.push(("limit", limit.to_string()));
        all.push(("offset", o.to_string()));
        all.sort_by(|a, b| a.0.cmp(b.0));
        let query: Vec<String> = all.iter().map(|(k, v)| format!("{}={}", link_escape(k), link_escape(v))).collect();
        format!("<{base}?{}>; rel=\"{rel}\";type=\"{media}\"", query.join("&"))
    };
    let mut links = Vec::new();
    if offset > 0 {
        links.push(link(offset.saturating_sub(limit), "prev"));
    }
    if let Some(o) = next {
        links.push(link(o, "next"));
    }
    for l in links {
        if let Ok(v) = header::HeaderValue::from_str(&l) {
            resp.headers_mut().append(header::LINK, v);
        }
    }
}

/// Escapes what cannot stay as it is in a query value inside a Link header (separators of the
/// query and of the header's list, spaces, non-ASCII); the rest of a query (`:`, `/`, `*`, `.`,
/// …) is left readable.
fn link_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"%&=#+<>\",;\\".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
