//! The domain error every layer below HTTP speaks.
//!
//! Each NGSI-LD problem type of ETSI GS CIM 009 §5.5.2 is one [`ErrorKind`]. Lower layers
//! (`jsonld`, `model`, `ops`) build an [`NgsiError`] with a kind and a human detail; only
//! `http/error.rs` decides which HTTP status a kind becomes.

use std::fmt;

/// The ETSI NGSI-LD error types (GS CIM 009 §5.5.2, table 5.5.2-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    BadRequestData,
    AlreadyExists,
    OperationNotSupported,
    ResourceNotFound,
    InternalError,
    TooComplexQuery,
    TooManyResults,
    LdContextNotAvailable,
    NoMultiTenantSupport,
    NonexistentTenant,
    /// A remote `@context` (or another upstream) did not answer in time.
    GatewayTimeout,
    /// A context source a request was forwarded to refused it or was unreachable (502).
    ContextSourceFailed,
    /// A context source a request was forwarded to did not answer in time (504).
    ContextSourceTimeout,
    /// A forwarded request came back to this broker (508).
    LoopDetected,
    /// A distributed operation cannot reach a part of the entity held by an exclusive or
    /// redirect registration that does not serve it (GS CIM 009 §5.6.1.4, §5.6.2.4, §5.6.6.4
    /// call this error Conflict; 409).
    Conflict,
}

impl ErrorKind {
    /// The last segment of the problem type URI.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "InvalidRequest",
            ErrorKind::BadRequestData => "BadRequestData",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::OperationNotSupported => "OperationNotSupported",
            ErrorKind::ResourceNotFound => "ResourceNotFound",
            ErrorKind::InternalError => "InternalError",
            ErrorKind::TooComplexQuery => "TooComplexQuery",
            ErrorKind::TooManyResults => "TooManyResults",
            ErrorKind::LdContextNotAvailable | ErrorKind::GatewayTimeout => "LdContextNotAvailable",
            ErrorKind::NoMultiTenantSupport => "NoMultiTenantSupport",
            ErrorKind::NonexistentTenant => "NonexistentTenant",
            // GS CIM 009 has no type of its own for a failed distributed operation.
            ErrorKind::ContextSourceFailed | ErrorKind::ContextSourceTimeout => "InternalError",
            ErrorKind::LoopDetected => "LoopDetected",
            ErrorKind::Conflict => "Conflict",
        }
    }

    /// A short title for ProblemDetails.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "Invalid request",
            ErrorKind::BadRequestData => "Bad request data",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::OperationNotSupported => "Operation not supported",
            ErrorKind::ResourceNotFound => "Resource not found",
            ErrorKind::InternalError => "Internal error",
            ErrorKind::TooComplexQuery => "Too complex query",
            ErrorKind::TooManyResults => "Too many results",
            ErrorKind::LdContextNotAvailable => "@context not available",
            ErrorKind::GatewayTimeout => "@context download timed out",
            ErrorKind::NoMultiTenantSupport => "No multi-tenant support",
            ErrorKind::NonexistentTenant => "Nonexistent tenant",
            ErrorKind::ContextSourceFailed => "Context source failed",
            ErrorKind::ContextSourceTimeout => "Context source timed out",
            ErrorKind::LoopDetected => "Loop detected",
            ErrorKind::Conflict => "Conflict",
        }
    }
}

/// An error with an NGSI-LD kind and a detail that tells the client what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgsiError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl NgsiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        NgsiError { kind, detail: detail.into() }
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    /// A request body that is not JSON.
    pub fn not_json(e: serde_json::Error) -> Self {
        Self::invalid(format!("the body is not valid JSON: {e}"))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }
}

impl fmt::Display for NgsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

impl std::error::Error for NgsiError {}

pub type NgsiResult<T> = Result<T, NgsiError>;
