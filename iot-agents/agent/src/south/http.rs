//! The HTTP southbound of iotagent-json (`/iot/json…`) and iotagent-ul (`/iot/d`): devices post
//! measures, command results and configuration requests, and poll their commands (`getCmd=1`).
//!
//! A measure is answered 200 only once the broker has accepted it; when the broker takes longer
//! than `cb_timeout_ms`, the answer is 503 but the measure stays queued and is still written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::{AgentError, Result};
use crate::mapping::{self, TypedMeasures};
use crate::metrics::Metrics;
use crate::model::CommandDef;
use crate::south::pipeline::{self, Parsed, Target};
use crate::south::topic::{Kind, Protocol};
use crate::startup::Agent;

const TRANSPORT: &str = "HTTP";

/// Registers the southbound routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/iot/json", web::post().to(json_measures))
        .route("/iot/json", web::get().to(json_get))
        .route("/iot/json/attrs/{attr}", web::post().to(json_attribute))
        .route("/iot/json/commands", web::post().to(json_results))
        .route("/iot/json/configuration", web::post().to(json_configuration))
        .route("/iot/json/configuration/commands", web::post().to(json_configuration))
        .route("/iot/d", web::get().to(ul_get))
        .route("/iot/d", web::post().to(ul_post));
}

/// The query parameters of a southbound request.
struct Params(HashMap<String, String>);

impl Params {
    fn of(req: &HttpRequest) -> Result<Params> {
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| Params(q.into_inner()))
            .map_err(|e| AgentError::bad_request(format!("unreadable query: {e}")))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The API key (`k`) and device id (`i`); `MANDATORY_PARAMS_NOT_FOUND` without them.
    fn device(&self) -> Result<(String, String)> {
        match (self.get("k"), self.get("i")) {
            (Some(k), Some(i)) => Ok((k.to_owned(), i.to_owned())),
            _ => Err(AgentError::mandatory_params("Some of the mandatory params weren't found in the request: i, k")),
        }
    }

    fn get_cmd(&self) -> bool {
        matches!(self.get("getCmd"), Some("1" | "true"))
    }
}

/// Reads the body, refusing more than `max_body_bytes`.
async fn read_body(agent: &Agent, mut payload: web::Payload) -> Result<Vec<u8>> {
    let limit = agent.settings.max_body_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AgentError::bad_request(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(AgentError::new("REQUEST_ENTITY_TOO_LARGE", 413, format!("the body exceeds {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The media type of the request, lower-cased and without parameters; `None` when absent.
fn media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Bodies the JSON routes read as JSON: JSON types, `text/plain`, or no type at all.
fn require_json_body(req: &HttpRequest) -> Result<()> {
    match media_type(req) {
        None => Ok(()),
        Some(m) if is_json(&m) || m == "text/plain" => Ok(()),
        Some(m) => Err(AgentError::unsupported_type(format!("unsupported content type: {m}"))),
    }
}

/// Adds the `X-Processing-Time` header and renders errors as the FIWARE agents do.
fn finish(start: Instant, result: Result<HttpResponse>) -> HttpResponse {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "southbound HTTP request refused");
            actix_web::ResponseError::error_response(&e)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&start.elapsed().as_millis().to_string()) {
        resp.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-processing-time"), v);
    }
    resp
}

/// Counts a request and its refusal.
async fn counted<F: Future<Output = Result<HttpResponse>>>(agent: &Agent, f: F) -> Result<HttpResponse> {
    Metrics::inc(&agent.metrics.messages_received);
    let r = f.await;
    if r.is_err() {
        Metrics::inc(&agent.metrics.messages_rejected);
    }
    r
}

/// Adds the `t` parameter to every measure group as its `TimeInstant`.
fn stamp(groups: &mut [TypedMeasures], params: &Params) {
    if let Some(t) = params.get("t") {
        for g in groups {
            g.measures.insert("TimeInstant".into(), Value::from(t));
        }
    }
}

/// Writes the parsed payload and waits for the broker up to `cb_timeout_ms`.
async fn deliver(agent: &Agent, target: &Target, parsed: Parsed) -> Result<()> {
    let accepted = pipeline::dispatch(agent, target, parsed).await?;
    match tokio::time::timeout(Duration::from_millis(agent.settings.cb_timeout_ms), accepted).await {
        Ok(r) => r,
        Err(_) => Err(AgentError::broker(
            503,
            "the context broker did not accept the measure in time; it stays queued and will be written",
        )),
    }
}

/// The answer to a device: its pending commands when it asked (`getCmd=1`), else nothing.
async fn answer(agent: &Agent, target: &Target, get_cmd: bool) -> Result<HttpResponse> {
    let commands = if get_cmd {
        crate::commands::poll(agent, &target.apikey, &target.device.device_id).await?
    } else {
        Vec::new()
    };
    match target.protocol {
        Protocol::Json => {
            let mut m = Map::new();
            for c in commands {
                m.insert(c.name, c.value);
            }
            Ok(HttpResponse::Ok().json(Value::Object(m)))
        }
        Protocol::Ul => {
            let resolved = mapping::resolve(&target.device, target.group.as_ref(), &agent.settings);
            let mut lines = Vec::new();
            for c in commands {
                let def = target
                    .device
                    .commands
                    .iter()
                    .chain(target.group.iter().flat_map(|g| g.commands.iter()))
                    .find(|d| d.name == c.name)
                    .cloned()
                    .unwrap_or_else(|| CommandDef { name: c.name.clone(), ..Default::default() });
                let payload = mapping::command_payload(&resolved, &def, &c.value, true)?;
                lines.push(String::from_utf8_lossy(&payload).into_owned());
            }
            Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(lines.join("#")))
        }
    }
}

/// Parses a payload after the group and device checks that need no writes, then locates the
/// device (autoprovisioning it), so a bad payload provisions nothing.
async fn receive(
    agent: &Agent,
    protocol: Protocol,
    params: &Params,
    kind: &Kind,
    body: &[u8],
) -> Result<(Target, Parsed)> {
    let (apikey, device_id) = params.device()?;
    let (protocol, group) = pipeline::find_group(agent, Some(protocol), &apikey).await?;
    let payload_type = group.as_ref().and_then(|g| g.payload_type.clone());
    let mut parsed = pipeline::parse(protocol, kind, body, payload_type.as_deref())?;
    if let Parsed::Measures { groups, .. } = &mut parsed {
        stamp(groups, params);
    }
    let target = pipeline::locate(agent, protocol, &apikey, &device_id, TRANSPORT).await?;
    Ok((target, parsed))
}

/// A JSON body posted by a device (measures, command results or a configuration request),
/// answered with the pending commands when `poll` and the device asks (`getCmd=1`).
async fn json_post(
    agent: web::Data<Agent>,
    req: HttpRequest,
    payload: web::Payload,
    kind: Kind,
    poll: bool,
) -> HttpResponse {
    let start = Instant::now();
    let r = counted(&agent, async {
        let params = Params::of(&req)?;
        params.device()?;
        require_json_body(&req)?;
        let body = read_body(&agent, payload).await?;
        let (target, parsed) = receive(&agent, Protocol::Json, &params, &kind, &body).await?;
        deliver(&agent, &target, parsed).await?;
        answer(&agent, &target, poll && params.get_cmd()).await
    });
    finish(start, r.await)
}

async fn json_measures(agent: web::Data<Agent>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    json_post(agent, req, payload, Kind::Measures, true).await
}

async fn json_results(agent: web::Data<Agent>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    json_post(agent, req, payload, Kind::CommandResult, false).await
}

async fn json_configuration(agent: web::Data<Agent>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    json_post(agent, req, payload, Kind::Configuration, false).await
}

/// A GET from a device: measures in `d=` (if any), answered with the pending commands when asked.
async fn measures_get(agent: web::Data<Agent>, req: HttpRequest, protocol: Protocol) -> HttpResponse {
    let start = Instant::now();
    let r = counted(&agent, async {
        let params = Params::of(&req)?;
        let (apikey, device_id) = params.device()?;
        let target = match params.get("d") {
            Some(d) => {
                let (target, parsed) = receive(&agent, protocol, &params, &Kind::Measures, d.as_bytes()).await?;
                deliver(&agent, &target, parsed).await?;
                target
            }
            None => pipeline::locate(&agent, protocol, &apikey, &device_id, TRANSPORT).await?,
        };
        answer(&agent, &target, params.get_cmd()).await
    });
    finish(start, r.await)
}

async fn json_get(agent: web::Data<Agent>, req: HttpRequest) -> HttpResponse {
    measures_get(agent, req, Protocol::Json).await
}

async fn ul_get(agent: web::Data<Agent>, req: HttpRequest) -> HttpResponse {
    measures_get(agent, req, Protocol::Ul).await
}

async fn json_attribute(
    agent: web::Data<Agent>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let start = Instant::now();
    let r = counted(&agent, async {
        let params = Params::of(&req)?;
        params.device()?;
        let attr = path.into_inner();
        let media = media_type(&req);
        let body = read_body(&agent, payload).await?;
        let value = match media.as_deref() {
            Some("text/plain") => {
                Value::from(String::from_utf8(body).map_err(|_| AgentError::bad_payload("the text body is not UTF-8"))?)
            }
            Some("application/octet-stream") => {
                Value::from(body.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            Some(m) if is_json(m) => serde_json::from_slice(&body)
                .map_err(|e| AgentError::bad_payload(format!("the body is not JSON: {e}")))?,
            Some(m) => return Err(AgentError::unsupported_type(format!("unsupported content type: {m}"))),
            None => return Err(AgentError::unsupported_type("a content type is required")),
        };
        let mut m = Map::new();
        m.insert(attr, value);
        let mut groups = vec![TypedMeasures::untyped(m)];
        stamp(&mut groups, &params);
        let (apikey, device_id) = params.device()?;
        let target = pipeline::locate(&agent, Protocol::Json, &apikey, &device_id, TRANSPORT).await?;
        deliver(&agent, &target, Parsed::Measures { groups, results: Vec::new() }).await?;
        answer(&agent, &target, false).await
    });
    finish(start, r.await)
}

async fn ul_post(agent: web::Data<Agent>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let start = Instant::now();
    let r = counted(&agent, async {
        let params = Params::of(&req)?;
        params.device()?;
        match media_type(&req).as_deref() {
            None | Some("text/plain") | Some("application/octet-stream") => {}
            Some(m) => return Err(AgentError::unsupported_type(format!("unsupported content type: {m}"))),
        }
        let body = read_body(&agent, payload).await?;
        let (target, parsed) = if body.iter().all(u8::is_ascii_whitespace) {
            let (apikey, device_id) = params.device()?;
            let target = pipeline::locate(&agent, Protocol::Ul, &apikey, &device_id, TRANSPORT).await?;
            (target, Parsed::Measures { groups: Vec::new(), results: Vec::new() })
        } else {
            receive(&agent, Protocol::Ul, &params, &Kind::Measures, &body).await?
        };
        deliver(&agent, &target, parsed).await?;
        answer(&agent, &target, params.get_cmd()).await
    });
    finish(start, r.await)
}
