//! Request context of every `/iot/*` route: the mandatory `fiware-service` and
//! `fiware-servicepath` headers (the service lower-cased, as upstream's schema stores it), and
//! the query parameters, with missing ones reported as `MISSING_HEADERS` exactly as
//! iotagent-node-lib's `checkRequestAttributes` middleware does for headers and query alike.

use std::collections::HashMap;

use actix_web::HttpRequest;

use crate::error::{AgentError, Result};

/// The tenant a provisioning request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHeaders {
    /// `fiware-service`, lower-cased.
    pub service: String,
    /// `fiware-servicepath`, as sent (`/*` means every subservice when listing).
    pub subservice: String,
}

impl ServiceHeaders {
    /// True when the request asks for every subservice of the service.
    pub fn all_paths(&self) -> bool {
        self.subservice == "/*"
    }
}

fn missing(names: &[&str]) -> AgentError {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    AgentError::missing_headers(format!("Some headers were missing from the request: [{}]", list.join(",")))
}

/// Reads the two mandatory headers; an absent or empty one is `MISSING_HEADERS`.
pub fn service_headers(req: &HttpRequest) -> Result<ServiceHeaders> {
    let get = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let service = get("fiware-service");
    let subservice = get("fiware-servicepath");
    let absent: Vec<&str> = [("fiware-service", service.is_none()), ("fiware-servicepath", subservice.is_none())]
        .into_iter()
        .filter(|(_, gone)| *gone)
        .map(|(n, _)| n)
        .collect();
    match (service, subservice) {
        (Some(service), Some(subservice)) => Ok(ServiceHeaders { service: service.to_lowercase(), subservice }),
        _ => Err(missing(&absent)),
    }
}

/// The query parameters of a request; an unreadable query string counts as empty.
pub fn query(req: &HttpRequest) -> HashMap<String, String> {
    actix_web::web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

/// The named query parameters, all required (absent or empty → `MISSING_HEADERS`).
pub fn require_query<'a>(q: &'a HashMap<String, String>, names: &[&str]) -> Result<Vec<&'a str>> {
    let absent: Vec<&str> = names.iter().copied().filter(|n| q.get(*n).is_none_or(|v| v.is_empty())).collect();
    if !absent.is_empty() {
        return Err(missing(&absent));
    }
    Ok(names.iter().filter_map(|n| q.get(*n).map(String::as_str)).collect())
}

/// `limit` and `offset` of a listing. A value that is not a number is `BAD_REQUEST`.
pub fn paging(q: &HashMap<String, String>) -> Result<(Option<usize>, usize)> {
    let num = |k: &str| -> Result<Option<usize>> {
        match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                AgentError::bad_request(format!("the {k} query parameter must be a non-negative integer"))
            }),
        }
    };
    Ok((num("limit")?, num("offset")?.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn service_is_lower_cased_and_both_headers_are_required() {
        let req = TestRequest::default()
            .insert_header(("fiware-service", "SmartGondor"))
            .insert_header(("fiware-servicepath", "/gardens"))
            .to_http_request();
        let h = service_headers(&req).unwrap();
        assert_eq!(h, ServiceHeaders { service: "smartgondor".into(), subservice: "/gardens".into() });

        let req = TestRequest::default().insert_header(("fiware-service", "x")).to_http_request();
        let e = service_headers(&req).unwrap_err();
        assert_eq!((e.name, e.status), ("MISSING_HEADERS", 400));
        assert!(e.message.contains("fiware-servicepath") && !e.message.contains("\"fiware-service\""));
    }

    #[test]
    fn query_parameters_are_required_and_paging_is_checked() {
        let req = TestRequest::with_uri("/iot/groups?resource=/iot/json&limit=2").to_http_request();
        let q = query(&req);
        assert_eq!(require_query(&q, &["resource"]).unwrap(), vec!["/iot/json"]);
        assert!(require_query(&q, &["resource", "apikey"]).unwrap_err().message.contains("apikey"));
        assert_eq!(paging(&q).unwrap(), (Some(2), 0));
        let q = query(&TestRequest::with_uri("/x?offset=-1").to_http_request());
        assert_eq!(paging(&q).unwrap_err().name, "BAD_REQUEST");
    }
}
