//! The agent's NGSI-LD client: the requests iotagent-node-lib sends in NGSI-LD mode, with both
//! header families (`NGSILD-Tenant`/`NGSILD-Path` and `fiware-service`/`fiware-servicepath`) and
//! the `@context` in the body (`application/ld+json`).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

use crate::error::{AgentError, Result};

/// The tenant (`fiware-service`) and path (`fiware-servicepath`) a request acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tenant {
    pub service: String,
    pub subservice: String,
}

impl Tenant {
    pub fn new(service: impl Into<String>, subservice: impl Into<String>) -> Self {
        Tenant { service: service.into(), subservice: subservice.into() }
    }
}

/// A client for one broker base URL (a group's `cbHost` gets its own).
#[derive(Debug, Clone)]
pub struct BrokerClient {
    http: Client,
    base: String,
}

impl BrokerClient {
    pub fn new(base: &str, timeout_ms: u64) -> Self {
        let http = Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|_| Client::new());
        BrokerClient { http, base: base.trim_end_matches('/').to_owned() }
    }

    /// The same connection pool, another broker (a group's `cbHost`).
    pub fn with_base(&self, base: &str) -> Self {
        BrokerClient { http: self.http.clone(), base: base.trim_end_matches('/').to_owned() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str, tenant: &Tenant) -> RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if !tenant.service.is_empty() {
            rb = rb.header("fiware-service", &tenant.service).header("NGSILD-Tenant", &tenant.service);
        }
        if !tenant.subservice.is_empty() {
            rb = rb.header("fiware-servicepath", &tenant.subservice).header("NGSILD-Path", &tenant.subservice);
        }
        rb
    }

    async fn send(rb: RequestBuilder) -> Result<Response> {
        rb.send().await.map_err(|e| AgentError::broker(503, format!("context broker unreachable: {e}")))
    }

    async fn refuse(resp: Response) -> AgentError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        AgentError::broker(status, format!("context broker answered {status}: {body}"))
    }

    /// `POST /ngsi-ld/v1/entityOperations/upsert/?options=update` with the entities (each
    /// carrying its `@context`). 200, 201 and 204 are success; a 207 is a partial failure.
    pub async fn upsert(&self, tenant: &Tenant, entities: &[Value]) -> Result<()> {
        let body = serde_json::to_vec(entities).map_err(|e| AgentError::bad_request(e.to_string()))?;
        let rb = self
            .request(Method::POST, "/ngsi-ld/v1/entityOperations/upsert/?options=update", tenant)
            .header(CONTENT_TYPE, "application/ld+json")
            .body(body);
        let resp = Self::send(rb).await?;
        match resp.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            _ => Err(Self::refuse(resp).await),
        }
    }

    /// `POST /ngsi-ld/v1/csourceRegistrations/`; returns the id from `Location`.
    pub async fn register(&self, tenant: &Tenant, registration: &Value) -> Result<String> {
        self.create("/ngsi-ld/v1/csourceRegistrations/", tenant, registration).await
    }

    /// `DELETE /ngsi-ld/v1/csourceRegistrations/{id}`; a 404 counts as done.
    pub async fn unregister(&self, tenant: &Tenant, id: &str) -> Result<()> {
        self.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{id}"), tenant).await
    }

    /// `POST /ngsi-ld/v1/subscriptions/`; returns the id from `Location`.
    pub async fn subscribe(&self, tenant: &Tenant, subscription: &Value) -> Result<String> {
        self.create("/ngsi-ld/v1/subscriptions/", tenant, subscription).await
    }

    /// `DELETE /ngsi-ld/v1/subscriptions/{id}`; a 404 counts as done.
    pub async fn unsubscribe(&self, tenant: &Tenant, id: &str) -> Result<()> {
        self.delete(&format!("/ngsi-ld/v1/subscriptions/{id}"), tenant).await
    }

    /// `GET /ngsi-ld/v1/entities/{id}?attrs=…&options=keyValues` with the given `@context`
    /// (a `Link` header); `ENTITY_NOT_FOUND` on 404.
    pub async fn entity_key_values(
        &self,
        tenant: &Tenant,
        id: &str,
        attrs: &[String],
        context: Option<&str>,
    ) -> Result<Value> {
        let mut path = format!("/ngsi-ld/v1/entities/{}?options=keyValues", encode(id));
        if !attrs.is_empty() {
            path.push_str("&attrs=");
            path.push_str(&encode(&attrs.join(",")));
        }
        let mut rb = self.request(Method::GET, &path, tenant).header("Accept", "application/json");
        if let Some(ctx) = context {
            rb = rb.header(
                "Link",
                format!("<{ctx}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
            );
        }
        let resp = Self::send(rb).await?;
        match resp.status().as_u16() {
            200 => resp.json().await.map_err(|e| AgentError::broker(500, format!("bad broker answer: {e}"))),
            404 => Err(AgentError::entity_not_found(format!("entity {id} not found in the context broker"))),
            _ => Err(Self::refuse(resp).await),
        }
    }

    async fn create(&self, path: &str, tenant: &Tenant, body: &Value) -> Result<String> {
        let rb = self.request(Method::POST, path, tenant).header(CONTENT_TYPE, "application/ld+json").json(body);
        let resp = Self::send(rb).await?;
        if !matches!(resp.status().as_u16(), 200 | 201) {
            return Err(Self::refuse(resp).await);
        }
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(location.rsplit('/').next().unwrap_or_default().to_owned())
    }

    async fn delete(&self, path: &str, tenant: &Tenant) -> Result<()> {
        let resp = Self::send(self.request(Method::DELETE, path, tenant)).await?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(Self::refuse(resp).await),
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
