//! `/metrics`: the agent's counters in the Prometheus text format, or OpenMetrics when the
//! client asks for it, and 406 for any other `Accept`, as iotagent-node-lib's stats registry
//! answers.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};

use crate::metrics::Metrics;
use crate::startup::Agent;

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The format an `Accept` header asks for: `Some(true)` OpenMetrics, `Some(false)` Prometheus
/// text, `None` nothing this endpoint can produce.
pub fn negotiate(accept: Option<&str>) -> Option<bool> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Some(false);
    };
    let types: Vec<String> =
        accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).collect();
    if types.iter().any(|t| t == "application/openmetrics-text") {
        return Some(true);
    }
    if types.iter().any(|t| matches!(t.as_str(), "text/plain" | "text/*" | "*/*")) {
        return Some(false);
    }
    None
}

/// The counters as exposition text.
pub fn render(m: &Metrics, openmetrics: bool) -> String {
    let counters: [(&str, &str, &AtomicU64); 8] = [
        ("iota_messages_received", "Southbound messages received", &m.messages_received),
        ("iota_messages_rejected", "Southbound messages refused", &m.messages_rejected),
        ("iota_measures_accepted", "Measure groups accepted for the broker", &m.measures_accepted),
        ("iota_entities_upserted", "Entities the broker accepted in upserts", &m.entities_upserted),
        ("iota_upsert_retries", "Upsert requests retried", &m.upsert_retries),
        ("iota_entities_rejected", "Entities the broker refused", &m.entities_rejected),
        ("iota_commands_received", "Commands received from the broker", &m.commands_received),
        ("iota_commands_completed", "Commands answered by devices or expired", &m.commands_completed),
    ];
    let mut out = String::new();
    for (name, help, c) in counters {
        out.push_str(&format!("# HELP {name} {help}.\n# TYPE {name} counter\n"));
        out.push_str(&format!("{name}_total {}\n", c.load(Ordering::Relaxed)));
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

async fn metrics(req: HttpRequest, agent: web::Data<Agent>) -> HttpResponse {
    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok());
    match negotiate(accept) {
        Some(open) => HttpResponse::Ok()
            .content_type(if open { OPENMETRICS } else { PROMETHEUS })
            .body(render(&agent.metrics, open)),
        None => HttpResponse::NotAcceptable().finish(),
    }
}

/// Registers `/metrics`, with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for p in ["/metrics", "/metrics/"] {
        cfg.service(web::resource(p).route(web::get().to(metrics)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_negotiated() {
        assert_eq!(negotiate(None), Some(false));
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Some(false));
        assert_eq!(negotiate(Some("application/openmetrics-text; version=1.0.0, */*;q=0.1")), Some(true));
        assert_eq!(negotiate(Some("application/json")), None);
    }

    #[test]
    fn counters_are_rendered_with_their_values() {
        let m = Metrics::default();
        Metrics::add(&m.messages_received, 3);
        let text = render(&m, true);
        assert!(text.contains("# TYPE iota_messages_received counter\niota_messages_received_total 3\n"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!render(&m, false).contains("# EOF"));
    }
}
