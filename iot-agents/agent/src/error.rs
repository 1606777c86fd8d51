//! The agent's one error type. Every failure a client can see carries the iotagent-node-lib error
//! name and its HTTP status, so the provisioning API answers `{name, message}` exactly as the
//! FIWARE agents do, and the context-provider routes answer `{error, description}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// An error with the FIWARE name (`DEVICE_NOT_FOUND`, …), the HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct AgentError {
    pub name: &'static str,
    pub status: u16,
    pub message: String,
}

impl AgentError {
    pub fn new(name: &'static str, status: u16, message: impl Into<String>) -> Self {
        AgentError { name, status, message: message.into() }
    }

    pub fn missing_headers(message: impl Into<String>) -> Self {
        Self::new("MISSING_HEADERS", 400, message)
    }
    pub fn wrong_syntax(message: impl Into<String>) -> Self {
        Self::new("WRONG_SYNTAX", 400, message)
    }
    pub fn missing_attributes(message: impl Into<String>) -> Self {
        Self::new("MISSING_ATTRIBUTES", 400, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("BAD_REQUEST", 400, message)
    }
    pub fn missing_config_params(message: impl Into<String>) -> Self {
        Self::new("MISSING_CONFIG_PARAMS", 400, message)
    }
    pub fn bad_timestamp(message: impl Into<String>) -> Self {
        Self::new("BAD_TIMESTAMP", 400, message)
    }
    pub fn bad_payload(message: impl Into<String>) -> Self {
        Self::new("BAD_PAYLOAD", 400, message)
    }
    pub fn invalid_expression(message: impl Into<String>) -> Self {
        Self::new("INVALID_EXPRESSION", 400, message)
    }
    pub fn mandatory_params(message: impl Into<String>) -> Self {
        Self::new("MANDATORY_PARAMS_NOT_FOUND", 400, message)
    }
    pub fn unsupported_type(message: impl Into<String>) -> Self {
        Self::new("UNSUPPORTED_TYPE", 400, message)
    }
    pub fn command_not_found(message: impl Into<String>) -> Self {
        Self::new("COMMAND_NOT_FOUND", 400, message)
    }
    pub fn mismatched_service(message: impl Into<String>) -> Self {
        Self::new("MISMATCHED_SERVICE", 403, message)
    }
    pub fn device_not_found(message: impl Into<String>) -> Self {
        Self::new("DEVICE_NOT_FOUND", 404, message)
    }
    pub fn group_not_found(message: impl Into<String>) -> Self {
        Self::new("DEVICE_GROUP_NOT_FOUND", 404, message)
    }
    pub fn entity_not_found(message: impl Into<String>) -> Self {
        Self::new("ENTITY_NOT_FOUND", 404, message)
    }
    pub fn duplicate_device(message: impl Into<String>) -> Self {
        Self::new("DUPLICATE_DEVICE_ID", 409, message)
    }
    pub fn duplicate_group(message: impl Into<String>) -> Self {
        Self::new("DUPLICATE_GROUP", 409, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new("METHOD_NOT_IMPLEMENTED", 501, message)
    }
    pub fn internal_db(message: impl Into<String>) -> Self {
        Self::new("INTERNAL_DB_ERROR", 500, message)
    }
    /// The broker refused or could not be reached (`status` is the broker's, or 500).
    pub fn broker(status: u16, message: impl Into<String>) -> Self {
        Self::new("ENTITY_GENERIC_ERROR", status, message)
    }

    /// The body of the context-provider routes: `{error, description}`, with the characters
    /// iotagent-node-lib strips from descriptions removed.
    pub fn ld_body(&self) -> serde_json::Value {
        let description: String = self.message.chars().filter(|c| !"<>\"'=;()".contains(*c)).collect();
        json!({ "error": self.name, "description": description })
    }
}

impl ResponseError for AgentError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "name": self.name, "message": self.message }))
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
