//! The provisioning (northbound) API: placeholder until the provisioning module lands.

/// Registers the provisioning routes.
pub fn configure(_cfg: &mut actix_web::web::ServiceConfig) {}
