//! Turns an HTTP request into what operations need: the tenant, the compiled `@context`, the
//! parsed JSON body, the query parameters, and the negotiated response media type. Every
//! protocol rule about headers (tenant headers, Link, Content-Type, Accept) lives here.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::{CORE, Context};
use crate::store::DEFAULT_TENANT;

/// The JSON-LD `Link` relation for contexts.
pub const LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// The tenant of a request: `NGSILD-Tenant` or `Fiware-Service` (equivalent; both with
/// different values is an error), lower-cased as Orion-LD does.
pub fn tenant(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    let get = |name: &str| -> Result<Option<String>, ApiError> {
        match req.headers().get(name) {
            None => Ok(None),
            Some(v) => {
                let s = v.to_str().map_err(|_| NgsiError::bad_data(format!("{name} is not valid text")))?.trim();
                Ok((!s.is_empty()).then(|| s.to_ascii_lowercase()))
            }
        }
    };
    let ngsild = get("NGSILD-Tenant")?;
    let fiware = get("Fiware-Service")?;
    let t = match (ngsild, fiware) {
        (Some(a), Some(b)) if a != b => {
            return Err(NgsiError::bad_data(format!("NGSILD-Tenant ({a}) and Fiware-Service ({b}) disagree")).into());
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Ok(DEFAULT_TENANT.to_owned()),
    };
    if !state.settings.multiservice {
        return Err(NgsiError::new(
            ErrorKind::NoMultiTenantSupport,
            "this broker runs without tenants (-multiservice is off)",
        )
        .into());
    }
    if t.len() > 50 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(
            NgsiError::bad_data(format!("{t:?} is not a valid tenant name (at most 50 of A-Z a-z 0-9 _ -)")).into()
        );
    }
    Ok(t)
}

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMedia {
    Json,
    LdJson,
}

fn media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// Checks the request's Content-Type: JSON or JSON-LD, merge-patch where allowed.
pub fn body_media(req: &HttpRequest, merge_patch: bool) -> Result<BodyMedia, ApiError> {
    match media_type(req).as_deref() {
        Some("application/json") => Ok(BodyMedia::Json),
        Some("application/ld+json") => Ok(BodyMedia::LdJson),
        Some("application/merge-patch+json") if merge_patch => Ok(BodyMedia::Json),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!("Content-Type {other} is not supported here"))),
        None => Err(ApiError::UnsupportedMediaType("a Content-Type header is required".into())),
    }
}

/// Reads the body up to `limit` bytes (413 beyond) and parses it as JSON (400 InvalidRequest).
pub async fn read_json(payload: Payload, limit: usize) -> Result<Value, ApiError> {
    let buf = read_body(payload, limit).await?;
    serde_json::from_slice(&buf).map_err(|e| NgsiError::not_json(e).into())
}

/// A request body of at most `limit` bytes, not empty.
pub async fn read_body(mut payload: Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk: Bytes = chunk.map_err(|e| NgsiError::invalid(format!("reading the body failed: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Err(NgsiError::invalid("the request body is empty").into());
    }
    Ok(buf)
}

/// The context URL from a `Link` header with the JSON-LD context relation.
pub fn link_context(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    for v in req.headers().get_all(header::LINK) {
        let s = v.to_str().map_err(|_| NgsiError::bad_data("the Link header is not valid text"))?;
        for part in split_links(s) {
            let part = part.trim();
            let Some(rest) = part.strip_prefix('<') else {
                return Err(NgsiError::bad_data(format!("malformed Link header: {part}")).into());
            };
            let Some((url, params)) = rest.split_once('>') else {
                return Err(NgsiError::bad_data(format!("malformed Link header: {part}")).into());
            };
            let is_ctx = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|r| r.trim_matches('"') == LD_CONTEXT_REL)
            });
            if is_ctx {
                return Ok(Some(url.trim().to_owned()));
            }
        }
    }
    Ok(None)
}

/// Splits a Link header on the commas that separate links (not those inside `<…>` or quotes).
fn split_links(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut in_angle, mut in_quote) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The context of a request without a body (GET, DELETE): the Link header or the core context.
pub async fn header_context(req: &HttpRequest, state: &AppState) -> Result<Arc<Context>, ApiError> {
    match link_context(req)? {
        Some(url) => Ok(state.broker.resolver.from_url(&url).await?),
        None => Ok(CORE.clone()),
    }
}

/// The context of a request body (an object): Link with JSON, `@context` with JSON-LD.
pub async fn body_context(
    req: &HttpRequest,
    state: &AppState,
    media: BodyMedia,
    body: &Value,
) -> Result<Arc<Context>, ApiError> {
    let link = link_context(req)?;
    let inline = body.get("@context");
    match media {
        BodyMedia::Json => {
            if inline.is_some() {
                return Err(NgsiError::bad_data(crate::model::text::CONTEXT_IN_JSON).into());
            }
            match link {
                Some(url) => Ok(state.broker.resolver.from_url(&url).await?),
                None => Ok(CORE.clone()),
            }
        }
        BodyMedia::LdJson => {
            if link.is_some() {
                return Err(NgsiError::bad_data(
                    "with application/ld+json the @context goes in the body, not in a Link header",
                )
                .into());
            }
            match inline {
                Some(c) => Ok(state.broker.resolver.from_value(c).await?),
                None => Err(NgsiError::bad_data("an application/ld+json body needs an @context member").into()),
            }
        }
    }
}

/// One context per element of a batch body. A malformed Link header fails the request; an
/// element whose own context is wrong or unavailable only fails that element (207).
pub async fn batch_contexts(
    req: &HttpRequest,
    state: &AppState,
    media: BodyMedia,
    body: &Value,
) -> Result<Vec<NgsiResult<Arc<Context>>>, ApiError> {
    let Some(items) = body.as_array() else {
        return Err(NgsiError::bad_data("a batch body must be a JSON array").into());
    };
    if items.is_empty() {
        return Err(NgsiError::bad_data("a batch must contain at least one element").into());
    }
    if link_context(req)?.is_some() && media == BodyMedia::LdJson {
        return Err(NgsiError::bad_data(
            "with application/ld+json the @context goes in the body, not in a Link header",
        )
        .into());
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let ctx = if item.is_object() {
            body_context(req, state, media, item).await
        } else {
            header_context(req, state).await
        };
        out.push(ctx.map_err(element_error));
    }
    Ok(out)
}

/// Whether an entity body is read straight from its text ([`crate::model::text`]):
/// `application/json` with a well-formed (or no) `Link` header, for a tenant with no context
/// source registrations (forwarding works on the parsed tree).
pub fn reads_as_text(req: &HttpRequest, state: &AppState, media: BodyMedia, tenant: &str) -> bool {
    media == BodyMedia::Json && link_context(req).is_ok() && !state.broker.forwarder.registry.has_any(tenant)
}

/// The error of a batch element whose context failed.
pub fn element_error(e: ApiError) -> NgsiError {
    match e {
        ApiError::Ngsi(e) => e,
        other => NgsiError::bad_data(other.to_string()),
    }
}

/// Whether a request may be forwarded to context sources: not with `local=true`, and not when
/// its `Via` header shows it already went through this broker (a loop).
pub fn dist(req: &HttpRequest, state: &AppState, local: bool) -> Result<crate::forward::Dist, ApiError> {
    let via: Vec<String> = req.headers().get_all("via").filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
    let via = (!via.is_empty()).then(|| via.join(", "));
    // A request that already went through this broker came round a loop (GS CIM 009 §6.3.18).
    if via.as_deref().is_some_and(|v| state.broker.forwarder.is_loop(v)) {
        return Err(NgsiError::new(
            ErrorKind::LoopDetected,
            "the Via header shows this request already went through this broker",
        )
        .into());
    }
    // Only a request that may be distributed (some registration exists, no local=true) keeps
    // the headers contextSourceInfo values may copy and collects the sources' warnings, which
    // the response middleware reads (`NGSILD-Warning`).
    let (headers, warnings) = match !local && state.broker.registry.count() > 0 {
        true => {
            let headers = req
                .headers()
                .iter()
                .take(64)
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let warnings = crate::forward::Warnings::collecting();
            req.extensions_mut().insert(warnings.clone());
            (headers, warnings)
        }
        false => (Vec::new(), crate::forward::Warnings::default()),
    };
    Ok(crate::forward::Dist {
        local_only: local,
        via,
        query: Some(req.query_string().to_owned()),
        query_body: None,
        headers,
        warnings,
        ..Default::default()
    })
}

/// Response media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    LdJson,
    GeoJson,
}

/// Negotiates the response type from `Accept` (q-values honoured); 406 when nothing fits.
pub fn accept(req: &HttpRequest, allow_geo: bool) -> Result<Accept, ApiError> {
    let Some(raw) = req.headers().get(header::ACCEPT) else {
        return Ok(Accept::Json);
    };
    let raw = raw.to_str().map_err(|_| ApiError::NotAcceptable("the Accept header is not valid text".into()))?;
    if raw.trim().is_empty() {
        return Ok(Accept::Json);
    }
    let mut best: Option<(f32, usize, Accept)> = None;
    for (pos, item) in raw.split(',').enumerate() {
        let mut parts = item.split(';');
        let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if q <= 0.0 {
            continue;
        }
        let candidate = match mt.as_str() {
            "application/json" | "*/*" | "application/*" => Some(Accept::Json),
            "application/ld+json" => Some(Accept::LdJson),
            "application/geo+json" if allow_geo => Some(Accept::GeoJson),
            _ => None,
        };
        if let Some(c) = candidate {
            let better = match best {
                None => true,
                Some((bq, _, _)) => q > bq,
            };
            if better {
                best = Some((q, pos, c));
            }
        }
    }
    best.map(|(_, _, a)| a).ok_or_else(|| ApiError::NotAcceptable(format!("none of {raw} can be produced")))
}

/// Query parameters of a request, checked against what the operation accepts.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses the query string and rejects parameters the operation does not list.
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| NgsiError::bad_data(format!("malformed query string: {e}")))?;
        for (k, v) in &pairs {
            if !allowed.contains(&k.as_str()) && k != "prettyPrint" && k != "spaces" {
                // An unknown parameter makes the request itself malformed (GS CIM 009 §6.3.20).
                return Err(NgsiError::invalid(format!("unsupported URI parameter {k}")).into());
            }
            if v.is_empty() {
                return Err(NgsiError::bad_data(format!("URI parameter {k} has an empty value")).into());
            }
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every parameter, in request order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// A comma-separated list parameter (repeated parameters are joined).
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        (!items.is_empty()).then_some(items)
    }

    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(NgsiError::bad_data(format!("{name} must be true or false, not {v:?}")).into()),
        }
    }

    /// A non-negative integer parameter. Values beyond 2^48 (more than any store holds) count
    /// as 2^48, so that page arithmetic (`offset + limit`) cannot overflow.
    pub fn usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        const CAP: u64 = 1 << 48;
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(|n| Some(n.min(CAP) as usize))
                .map_err(|_| NgsiError::bad_data(format!("{name} must be a non-negative integer, not {v:?}")).into()),
        }
    }

    /// The `options` values, each checked against `known`.
    pub fn options(&self, known: &[&str]) -> Result<Vec<String>, ApiError> {
        let opts = self.list("options").unwrap_or_default();
        for o in &opts {
            if !known.contains(&o.as_str()) {
                return Err(NgsiError::invalid(format!("unknown option {o:?}")).into());
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn link_headers_are_parsed() {
        let req = TestRequest::default()
            .insert_header((
                header::LINK,
                "<http://a/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
            ))
            .to_http_request();
        assert_eq!(link_context(&req).unwrap().as_deref(), Some("http://a/ctx.jsonld"));
        let req = TestRequest::default().insert_header((header::LINK, "<http://a/x>; rel=\"next\"")).to_http_request();
        assert_eq!(link_context(&req).unwrap(), None);
    }

    #[test]
    fn accept_negotiation() {
        let r = |a: &str| TestRequest::default().insert_header((header::ACCEPT, a)).to_http_request();
        assert_eq!(accept(&r("application/ld+json"), false).unwrap(), Accept::LdJson);
        assert_eq!(accept(&r("application/json;q=0.5, application/ld+json"), false).unwrap(), Accept::LdJson);
        assert_eq!(accept(&r("*/*"), false).unwrap(), Accept::Json);
        assert_eq!(accept(&r("application/geo+json"), true).unwrap(), Accept::GeoJson);
        assert!(accept(&r("application/geo+json"), false).is_err());
        assert!(accept(&r("text/html"), false).is_err());
    }
}
