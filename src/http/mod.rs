//! The HTTP edge: the only module that imports actix-web or knows status codes. Routes map to
//! handlers grouped by resource (`entities`, `attrs`, `batch`, `contexts`, `subscriptions`,
//! `registrations`, `csource_subscriptions`, `entity_maps`, `discovery`, `temporal`, `admin`); each handler parses and checks the request with
//! `extract`, calls one operation in `ops`, and answers through `respond`/`render`. Errors of every layer become ProblemDetails in `error`.

pub mod admin;
pub mod attrs;
pub mod batch;
pub mod contexts;
pub mod csource_subscriptions;
pub mod discovery;
pub mod entities;
pub mod entity_maps;
pub mod error;
pub mod extract;

pub mod registrations;
pub mod respond;
pub mod subscriptions;
pub mod temporal;

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};

use crate::config::Settings;
use crate::error::NgsiError;
use crate::ops::Broker;
use error::ApiError;

/// Shared state of every handler.
pub struct AppState {
    pub broker: Broker,
    pub settings: Settings,
    pub started: Instant,
}

pub type State = web::Data<AppState>;

/// A resource with its routes; other methods get 405 with `Allow` (OPTIONS gets 204 + `Allow`).
fn resource(path: &str, routes: Vec<(Method, Route)>) -> Resource {
    let allowed: Vec<&'static str> = routes.iter().map(|(m, _)| method_name(m)).collect();
    let mut r = web::resource(path);
    for (_, route) in routes {
        r = r.route(route);
    }
    r.default_service(web::to(move |req: HttpRequest| {
        let allowed = allowed.clone();
        async move {
            if req.method() == Method::OPTIONS {
                let mut resp = HttpResponse::NoContent();
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    resp.insert_header((header::ALLOW, v));
                }
                return Ok(resp.finish());
            }
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allowed))
        }
    }))
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OPTIONS",
    }
}

/// Rejects NGSI-LD paths with an empty segment (`/entities//attrs`) before `NormalizePath`
/// merges the slashes and the request lands on another resource: an empty segment is a
/// missing identifier, which is bad request data, not an unknown resource.
pub async fn reject_empty_segments(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    if path.starts_with("/ngsi-ld/") && path.trim_end_matches('/').contains("//") {
        let err = ApiError::from(NgsiError::bad_data(format!("{path} has an empty identifier")));
        let resp = actix_web::ResponseError::error_response(&err);
        return Ok(req.into_response(resp).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// The API version a `Prefer: ngsi-ld=<version>` header asks for (GS CIM 009 §6.3.6), if any.
fn preferred_version(req: &ServiceRequest) -> Option<String> {
    for v in req.headers().get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for pref in v.split(',') {
            let token = pref.split(';').next().unwrap_or("").trim();
            if let Some((k, val)) = token.split_once('=')
                && k.trim().eq_ignore_ascii_case("ngsi-ld")
            {
                let val = val.trim().trim_matches('"');
                if !val.is_empty() && val.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return Some(val.to_owned());
                }
            }
        }
    }
    None
}

/// Honours `Prefer: ngsi-ld=<version>` by answering `Preference-Applied` (every version up to
/// the one implemented is served by the same API).
pub async fn prefer_version(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let wanted = preferred_version(&req);
    let mut resp = next.call(req).await?;
    if let Some(v) = wanted
        && let Ok(h) = HeaderValue::from_str(&format!("ngsi-ld={v}"))
    {
        resp.headers_mut().insert(header::HeaderName::from_static("preference-applied"), h);
    }
    Ok(resp)
}

/// Adds the `NGSILD-Warning` header (GS CIM 009 §6.3.17) to the answer of a distributed request
/// when a context source it asked misbehaved, to successes and errors alike.
pub async fn forward_warnings(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut resp = next.call(req).await?;
    let warning =
        actix_web::HttpMessage::extensions(resp.request()).get::<crate::forward::Warnings>().and_then(|w| w.header());
    if let Some(w) = warning
        && let Ok(h) = HeaderValue::from_str(&w)
    {
        resp.headers_mut().insert(header::HeaderName::from_static("ngsild-warning"), h);
    }
    Ok(resp)
}

/// Answers paths no resource serves.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(NgsiError::not_found(format!("no service at {} {}", req.method(), req.path())).into())
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use Method as M;
    let v1 = "/ngsi-ld/v1";
    cfg.service(resource(
        &format!("{v1}/entities"),
        vec![
            (M::POST, web::post().to(entities::create)),
            (M::GET, web::get().to(entities::query)),
            (M::DELETE, web::delete().to(entities::purge)),
        ],
    ))
    .service(resource(
        &format!("{v1}/entities/{{entityId}}"),
        vec![
            (M::GET, web::get().to(entities::retrieve)),
            (M::PUT, web::put().to(entities::replace)),
            (M::PATCH, web::patch().to(entities::merge)),
            (M::DELETE, web::delete().to(entities::delete)),
        ],
    ))
    .service(resource(
        &format!("{v1}/entities/{{entityId}}/attrs"),
        vec![(M::POST, web::post().to(attrs::append)), (M::PATCH, web::patch().to(attrs::update))],
    ))
    .service(resource(
        &format!("{v1}/entities/{{entityId}}/attrs/{{attrId}}"),
        vec![
            (M::PATCH, web::patch().to(attrs::partial_update)),
            (M::PUT, web::put().to(attrs::replace)),
            (M::DELETE, web::delete().to(attrs::delete)),
        ],
    ))
    .service(resource(&format!("{v1}/entityOperations/create"), vec![(M::POST, web::post().to(batch::create))]))
    .service(resource(&format!("{v1}/entityOperations/upsert"), vec![(M::POST, web::post().to(batch::upsert))]))
    .service(resource(&format!("{v1}/entityOperations/update"), vec![(M::POST, web::post().to(batch::update))]))
    .service(resource(&format!("{v1}/entityOperations/delete"), vec![(M::POST, web::post().to(batch::delete))]))
    .service(resource(&format!("{v1}/entityOperations/merge"), vec![(M::POST, web::post().to(batch::merge))]))
    .service(resource(&format!("{v1}/entityOperations/query"), vec![(M::POST, web::post().to(entities::query_post))]))
    .service(resource(&format!("{v1}/entityMaps"), vec![(M::GET, web::get().to(entity_maps::create))]))
    .service(resource(
        &format!("{v1}/entityMaps/{{entityMapId}}"),
        vec![
            (M::GET, web::get().to(entity_maps::retrieve)),
            (M::PATCH, web::patch().to(entity_maps::update)),
            (M::DELETE, web::delete().to(entity_maps::delete)),
        ],
    ))
    .service(resource(
        &format!("{v1}/jsonldContexts"),
        vec![(M::GET, web::get().to(contexts::list)), (M::POST, web::post().to(contexts::add))],
    ))
    .service(resource(
        &format!("{v1}/jsonldContexts/{{contextId}}"),
        vec![(M::GET, web::get().to(contexts::serve)), (M::DELETE, web::delete().to(contexts::delete))],
    ))
    .service(resource(
        &format!("{v1}/subscriptions"),
        vec![(M::GET, web::get().to(subscriptions::query)), (M::POST, web::post().to(subscriptions::create))],
    ))
    .service(resource(
        &format!("{v1}/subscriptions/{{subscriptionId}}"),
        vec![
            (M::GET, web::get().to(subscriptions::retrieve)),
            (M::PATCH, web::patch().to(subscriptions::update)),
            (M::DELETE, web::delete().to(subscriptions::delete)),
        ],
    ))
    .service(resource(
        &format!("{v1}/csourceSubscriptions"),
        vec![
            (M::GET, web::get().to(csource_subscriptions::query)),
            (M::POST, web::post().to(csource_subscriptions::create)),
        ],
    ))
    .service(resource(
        &format!("{v1}/csourceSubscriptions/{{subscriptionId}}"),
        vec![
            (M::GET, web::get().to(csource_subscriptions::retrieve)),
            (M::PATCH, web::patch().to(csource_subscriptions::update)),
            (M::DELETE, web::delete().to(csource_subscriptions::delete)),
        ],
    ))
    .service(resource(
        &format!("{v1}/csourceRegistrations"),
        vec![(M::GET, web::get().to(registrations::query)), (M::POST, web::post().to(registrations::create))],
    ))
    .service(resource(
        &format!("{v1}/csourceRegistrations/{{registrationId}}"),
        vec![
            (M::GET, web::get().to(registrations::retrieve)),
            (M::PATCH, web::patch().to(registrations::update)),
            (M::DELETE, web::delete().to(registrations::delete)),
        ],
    ))
    .service(resource(
        &format!("{v1}/temporal/entities"),
        vec![(M::POST, web::post().to(temporal::create)), (M::GET, web::get().to(temporal::query))],
    ))
    .service(resource(
        &format!("{v1}/temporal/entityOperations/query"),
        vec![(M::POST, web::post().to(temporal::query_post))],
    ))
    .service(resource(
        &format!("{v1}/temporal/entities/{{entityId}}"),
        vec![(M::GET, web::get().to(temporal::retrieve)), (M::DELETE, web::delete().to(temporal::delete))],
    ))
    .service(resource(
        &format!("{v1}/temporal/entities/{{entityId}}/attrs"),
        vec![(M::POST, web::post().to(temporal::append))],
    ))
    .service(resource(
        &format!("{v1}/temporal/entities/{{entityId}}/attrs/{{attrId}}"),
        vec![(M::DELETE, web::delete().to(temporal::delete_attr))],
    ))
    .service(resource(
        &format!("{v1}/temporal/entities/{{entityId}}/attrs/{{attrId}}/{{instanceId}}"),
        vec![
            (M::PATCH, web::patch().to(temporal::update_instance)),
            (M::DELETE, web::delete().to(temporal::delete_instance)),
        ],
    ))
    .service(resource(&format!("{v1}/types"), vec![(M::GET, web::get().to(discovery::types))]))
    .service(resource(&format!("{v1}/types/{{type}}"), vec![(M::GET, web::get().to(discovery::one_type))]))
    .service(resource(&format!("{v1}/attributes"), vec![(M::GET, web::get().to(discovery::attributes))]))
    .service(resource(&format!("{v1}/attributes/{{attrId}}"), vec![(M::GET, web::get().to(discovery::one_attribute))]))
    .service(resource("/version", vec![(M::GET, web::get().to(admin::version))]))
    .service(resource("/ngsi-ld/ex/v1/version", vec![(M::GET, web::get().to(admin::ex_version))]))
    .service(resource("/ngsi-ld/ex/v1/ping", vec![(M::GET, web::get().to(admin::ping))]))
    .service(resource("/ngsi-ld/ex/v1/tenants", vec![(M::GET, web::get().to(admin::tenants))]))
    .service(resource("/openapi.json", vec![(M::GET, web::get().to(admin::openapi))]))
    .default_service(web::to(not_found));
}
