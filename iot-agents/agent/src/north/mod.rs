//! The provisioning (northbound) API of iotagent-node-lib, on the northbound port: config groups,
//! devices (with their context-source registrations on the broker), bulk deletion, and the
//! operational routes (`/iot/about`, `/version`, `/ready`, `/metrics`, `/admin/log`). Errors are
//! answered `{name, message}` with the FIWARE names and statuses.

pub mod about;
pub mod admin;
pub mod devices;
pub mod groups;
pub mod headers;
pub mod metrics;
pub mod op_delete;
pub mod registration;
pub mod validate;

/// Registers every provisioning route, each with and without a trailing slash.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    groups::configure(cfg);
    devices::configure(cfg);
    op_delete::configure(cfg);
    about::configure(cfg);
    metrics::configure(cfg);
    admin::configure(cfg);
}

/// Refuses settings the provisioning API cannot work with: the broker and the provider URL
/// (where the broker forwards commands) must be HTTP(S) URLs.
pub fn check_settings(settings: &crate::config::Settings) -> Result<(), String> {
    let is_http = |u: &str| {
        let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
        rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
    };
    if !is_http(&settings.cb_url) {
        return Err(format!("the context broker URL {:?} is not an http(s) URL", settings.cb_url));
    }
    if !settings.provider_url.is_empty() && !is_http(&settings.provider_url) {
        return Err(format!("the provider URL {:?} is not an http(s) URL", settings.provider_url));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn broker_and_provider_urls_must_be_http() {
        assert!(super::check_settings(&Settings::default()).is_ok());
        let bad = Settings { cb_url: "orion:1026".into(), ..Default::default() };
        assert!(super::check_settings(&bad).unwrap_err().contains("orion:1026"));
        let bad = Settings { provider_url: "ftp://x".into(), ..Default::default() };
        assert!(super::check_settings(&bad).is_err());
        let empty = Settings { provider_url: String::new(), ..Default::default() };
        assert!(super::check_settings(&empty).is_ok());
    }
}
