//! The one place that decides HTTP statuses: every error of every layer arrives here as an
//! [`ApiError`] and leaves as an RFC 7807 ProblemDetails body with an ETSI problem type.
//! Internal errors are logged with their cause and answered without internals.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::{ErrorKind, NgsiError};

/// The problem type URI prefix of GS CIM 009 §5.5.2.
pub const ERROR_PREFIX: &str = "https://uri.etsi.org/ngsi-ld/errors/";

/// Errors at the HTTP edge: domain errors plus the protocol-level ones.
#[derive(Debug)]
pub enum ApiError {
    Ngsi(NgsiError),
    /// 415: a request body in a media type the operation does not take.
    UnsupportedMediaType(String),
    /// 406: no acceptable response media type.
    NotAcceptable(String),
    /// 413: the body is larger than the configured maximum.
    PayloadTooLarge(usize),
    /// 405 with an `Allow` header.
    MethodNotAllowed(Vec<&'static str>),
}

impl From<NgsiError> for ApiError {
    fn from(e: NgsiError) -> Self {
        ApiError::Ngsi(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Ngsi(e.into())
    }
}

/// The status table: the only mapping of error kinds to HTTP statuses.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::BadRequestData => StatusCode::BAD_REQUEST,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::OperationNotSupported => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::ResourceNotFound | ErrorKind::NonexistentTenant => StatusCode::NOT_FOUND,
        ErrorKind::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::TooComplexQuery | ErrorKind::TooManyResults => StatusCode::FORBIDDEN,
        ErrorKind::LdContextNotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::NoMultiTenantSupport => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::ContextSourceFailed => StatusCode::BAD_GATEWAY,
        ErrorKind::ContextSourceTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::LoopDetected => StatusCode::LOOP_DETECTED,
    }
}

/// The ProblemDetails body of a domain error (also used inside 207 batch results).
pub fn problem(e: &NgsiError) -> serde_json::Value {
    let status = status_of(e.kind);
    let detail = if e.kind == ErrorKind::InternalError {
        "an internal error occurred; see the broker log"
    } else {
        e.detail.as_str()
    };
    json!({
        "type": format!("{ERROR_PREFIX}{}", e.kind.name()),
        "title": e.kind.title(),
        "status": status.as_u16(),
        "detail": detail,
    })
}

impl ApiError {
    fn parts(&self) -> (StatusCode, serde_json::Value) {
        match self {
            ApiError::Ngsi(e) => (status_of(e.kind), problem(e)),
            ApiError::UnsupportedMediaType(d) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, body(ErrorKind::InvalidRequest, "Unsupported media type", 415, d))
            }
            ApiError::NotAcceptable(d) => {
                (StatusCode::NOT_ACCEPTABLE, body(ErrorKind::InvalidRequest, "Not acceptable", 406, d))
            }
            ApiError::PayloadTooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(
                    ErrorKind::BadRequestData,
                    "Payload too large",
                    413,
                    &format!("the request body exceeds {max} bytes"),
                ),
            ),
            ApiError::MethodNotAllowed(allowed) => (
                StatusCode::METHOD_NOT_ALLOWED,
                body(ErrorKind::InvalidRequest, "Method not allowed", 405, &format!("allowed: {}", allowed.join(", "))),
            ),
        }
    }
}

fn body(kind: ErrorKind, title: &str, status: u16, detail: &str) -> serde_json::Value {
    json!({"type": format!("{ERROR_PREFIX}{}", kind.name()), "title": title, "status": status, "detail": detail})
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, body) = self.parts();
        write!(f, "{status}: {}", body["detail"])
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, body) = self.parts();
        if let ApiError::Ngsi(e) = self
            && e.kind == ErrorKind::InternalError
        {
            tracing::error!(cause = %e.detail, "internal error");
        }
        let mut resp = HttpResponse::build(status);
        resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        if let ApiError::MethodNotAllowed(allowed) = self
            && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
        {
            resp.insert_header((header::ALLOW, v));
        }
        resp.body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_spec_status() {
        assert_eq!(status_of(ErrorKind::BadRequestData), 400);
        assert_eq!(status_of(ErrorKind::AlreadyExists), 409);
        assert_eq!(status_of(ErrorKind::ResourceNotFound), 404);
        assert_eq!(status_of(ErrorKind::TooManyResults), 403);
        assert_eq!(status_of(ErrorKind::LdContextNotAvailable), 503);
        let p = problem(&NgsiError::internal("secret path /var/x"));
        assert!(!p["detail"].as_str().unwrap().contains("secret"));
    }
}

/// The ProblemDetails body (RFC 7807) every error answer carries, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProblemDetails {
    /// `https://uri.etsi.org/ngsi-ld/errors/<Kind>`.
    #[schema(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}
