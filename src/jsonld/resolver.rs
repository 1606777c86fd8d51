//! Turns the `@context` a request brings (a `Link` URL, an inline value, or nothing) into a
//! compiled [`Context`], and owns the caches that make that cheap.
//!
//! * Compiled contexts are cached by the exact JSON of the request's `@context`, so a term map
//!   is built once per distinct context, never per request.
//! * Remote documents are fetched with a timeout, a size bound and a bounded number of nested
//!   URLs, and cached by URL; they are never needed at start-up.
//! * Hosted contexts (`/ngsi-ld/v1/jsonldContexts`) are resolved locally whatever host their URL
//!   names, so a broker never downloads from itself.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use moka::sync::Cache;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CORE, Context, TermMap, core};
use crate::error::{ErrorKind, NgsiError, NgsiResult};

/// The largest remote `@context` document accepted.
const MAX_REMOTE_BYTES: usize = 2 * 1024 * 1024;
/// How deep `@context` documents may refer to further documents.
const MAX_DEPTH: usize = 8;
/// The path under which hosted contexts are served.
pub const HOSTED_PATH: &str = "/ngsi-ld/v1/jsonldContexts/";

/// The kinds of `@context` the broker knows about (GS CIM 009 §5.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContextKind {
    Hosted,
    Cached,
    ImplicitlyCreated,
}

impl ContextKind {
    pub fn parse(s: &str) -> Option<ContextKind> {
        match s {
            "Hosted" => Some(ContextKind::Hosted),
            "Cached" => Some(ContextKind::Cached),
            "ImplicitlyCreated" => Some(ContextKind::ImplicitlyCreated),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::Hosted => "Hosted",
            ContextKind::Cached => "Cached",
            ContextKind::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }
}

/// One known `@context`: hosted by this broker or cached from elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextEntry {
    pub id: String,
    pub url: String,
    pub kind: ContextKind,
    /// The document as served: `{"@context": ...}`.
    pub document: Value,
    pub created_at: i64,
    #[serde(default)]
    pub last_usage: Option<i64>,
    #[serde(default)]
    pub hits: u64,
}

/// Settings for fetching remote contexts.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    pub fetch_timeout: Duration,
    pub cache_entries: u64,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings { fetch_timeout: Duration::from_secs(5), cache_entries: 1024 }
    }
}

/// The context resolver shared by all requests.
pub struct Resolver {
    compiled: Cache<String, Arc<Context>>,
    entries: RwLock<IndexMap<String, ContextEntry>>,
    fetch_timeout: Duration,
    /// Built on the first download: building a client loads the system's root certificates.
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Resolver {
    pub fn new(settings: ResolverSettings) -> Resolver {
        Resolver {
            compiled: Cache::new(settings.cache_entries),
            entries: RwLock::new(IndexMap::new()),
            fetch_timeout: settings.fetch_timeout,
            client: std::sync::OnceLock::new(),
        }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.fetch_timeout)
                .connect_timeout(self.fetch_timeout)
                .build()
                .unwrap_or_default()
        })
    }

    /// Loads persisted hosted contexts at start-up.
    pub fn load(&self, entries: Vec<ContextEntry>) {
        let mut map = self.entries.write();
        for e in entries {
            map.insert(e.id.clone(), e);
        }
    }

    /// The context of a request that gave a `Link` header URL.
    pub async fn from_url(&self, url: &str) -> NgsiResult<Arc<Context>> {
        if core::is_core_url(url) {
            return Ok(CORE.clone());
        }
        self.from_value(&Value::String(url.to_owned())).await
    }

    /// The context of a request that gave an inline `@context` (any JSON-LD form).
    pub async fn from_value(&self, value: &Value) -> NgsiResult<Arc<Context>> {
        let key = value.to_string();
        // Every use of a known context counts, compiled before or not (numberOfHits, §5.13.3).
        if let Some(c) = self.compiled.get(&key) {
            self.touch(value);
            return Ok(c);
        }
        let mut objects: Vec<Map<String, Value>> = Vec::new();
        self.collect(value, 0, &mut objects).await?;
        let refs: Vec<&Map<String, Value>> = objects.iter().collect();
        let terms = TermMap::compile(&refs)?;
        let ctx = Arc::new(Context::new(terms, value.clone()));
        self.compiled.insert(key, ctx.clone());
        // After compiling, a downloaded context has its entry and this first use counts too.
        self.touch(value);
        Ok(ctx)
    }

    /// Counts a use of every hosted or cached context `value` names by URL.
    fn touch(&self, value: &Value) {
        let urls: Vec<&str> = match value {
            Value::String(url) => vec![url.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        let mut map = self.entries.write();
        for url in urls {
            let id = match hosted_id(url) {
                Some(id) => Some(id.to_owned()),
                None => map.values().find(|e| e.url == url).map(|e| e.id.clone()),
            };
            if let Some(e) = id.and_then(|id| map.get_mut(&id)) {
                e.hits += 1;
                e.last_usage = Some(crate::model::now_millis());
            }
        }
    }

    fn collect<'a>(
        &'a self,
        value: &'a Value,
        depth: usize,
        out: &'a mut Vec<Map<String, Value>>,
    ) -> futures_util::future::BoxFuture<'a, NgsiResult<()>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(NgsiError::bad_data("@context documents are nested too deeply"));
            }
            match value {
                Value::Null => Ok(()),
                Value::String(url) => {
                    if core::is_core_url(url) {
                        return Ok(());
                    }
                    let doc = self.document(url).await?;
                    match doc.get("@context") {
                        Some(inner) => self.collect(inner, depth + 1, out).await,
                        None => Err(NgsiError::new(
                            ErrorKind::LdContextNotAvailable,
                            format!("{url} is not a JSON-LD context document (no @context member)"),
                        )),
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        self.collect(item, depth + 1, out).await?;
                    }
                    Ok(())
                }
                Value::Object(obj) => {
                    out.push(obj.clone());
                    Ok(())
                }
                _ => Err(NgsiError::bad_data("@context must be a string, an object or an array")),
            }
        })
    }

    /// The document at `url`: hosted locally, cached, or downloaded now.
    async fn document(&self, url: &str) -> NgsiResult<Value> {
        if let Some(id) = hosted_id(url) {
            if let Some(e) = self.entries.read().get(id) {
                return Ok(e.document.clone());
            }
            return Err(NgsiError::new(ErrorKind::LdContextNotAvailable, format!("no hosted @context {id}")));
        }
        if let Some(e) = self.entries.read().values().find(|e| e.url == url) {
            return Ok(e.document.clone());
        }
        let doc = self.download(url).await?;
        let entry = ContextEntry {
            id: uuid::Uuid::new_v4().simple().to_string(),
            url: url.to_owned(),
            kind: ContextKind::Cached,
            document: doc.clone(),
            created_at: crate::model::now_millis(),
            last_usage: None,
            hits: 0,
        };
        let mut map = self.entries.write();
        if map.len() < 10_000 {
            map.insert(entry.id.clone(), entry);
        }
        Ok(doc)
    }

    async fn download(&self, url: &str) -> NgsiResult<Value> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(NgsiError::new(
                ErrorKind::LdContextNotAvailable,
                format!("@context URL {url} is not an http(s) URL"),
            ));
        }
        let unavailable = |e: String| {
            NgsiError::new(ErrorKind::LdContextNotAvailable, format!("@context {url} could not be retrieved: {e}"))
        };
        let resp =
            self.client().get(url).header("Accept", "application/ld+json, application/json").send().await.map_err(
                |e| {
                    if e.is_timeout() {
                        NgsiError::new(ErrorKind::GatewayTimeout, format!("@context {url} did not arrive in time"))
                    } else {
                        unavailable(e.to_string())
                    }
                },
            )?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("status {}", resp.status())));
        }
        if resp.content_length().is_some_and(|l| l as usize > MAX_REMOTE_BYTES) {
            return Err(unavailable("document too large".into()));
        }
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_REMOTE_BYTES {
            return Err(unavailable("document too large".into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("invalid JSON: {e}")))
    }

    /// Registers a hosted context; the caller persists the returned entry.
    pub async fn host(&self, document: Value, base_url: &str) -> NgsiResult<ContextEntry> {
        self.host_as(document, base_url, ContextKind::Hosted).await
    }

    /// Hosts a context a client gave inline where a URL is kept (a subscription's `@context`):
    /// an ImplicitlyCreated entry (GS CIM 009 §5.13.2).
    pub async fn host_implicit(&self, context: Value, base_url: &str) -> NgsiResult<ContextEntry> {
        self.host_as(serde_json::json!({ "@context": context }), base_url, ContextKind::ImplicitlyCreated).await
    }

    async fn host_as(&self, document: Value, base_url: &str, kind: ContextKind) -> NgsiResult<ContextEntry> {
        let inner = document
            .get("@context")
            .ok_or_else(|| NgsiError::invalid("a hosted @context document must have an @context member"))?;
        match inner {
            Value::Object(_) | Value::Array(_) | Value::String(_) => {}
            _ => {
                return Err(NgsiError::invalid("@context must be an object, array or URL"));
            }
        }
        // Compiling now rejects broken contexts before they are stored.
        self.from_value(inner).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let entry = ContextEntry {
            url: format!("{}{HOSTED_PATH}{id}", base_url.trim_end_matches('/')),
            id: id.clone(),
            kind,
            document,
            created_at: crate::model::now_millis(),
            last_usage: None,
            hits: 0,
        };
        self.entries.write().insert(id, entry.clone());
        Ok(entry)
    }

    /// Finds an entry by local id or by URL.
    pub fn get(&self, id_or_url: &str) -> Option<ContextEntry> {
        let map = self.entries.read();
        map.get(id_or_url)
            .or_else(|| hosted_id(id_or_url).and_then(|id| map.get(id)))
            .or_else(|| map.values().find(|e| e.url == id_or_url))
            .cloned()
    }

    pub fn list(&self) -> Vec<ContextEntry> {
        self.entries.read().values().cloned().collect()
    }

    /// Removes an entry; returns it so the caller can unpersist it.
    pub fn remove(&self, id: &str) -> Option<ContextEntry> {
        let removed = self.entries.write().shift_remove(id);
        if removed.is_some() {
            self.compiled.invalidate_all();
        }
        removed
    }

    /// Re-downloads a cached context (DELETE with `reload=true`).
    pub async fn reload(&self, id: &str) -> NgsiResult<ContextEntry> {
        let entry = self.get(id).ok_or_else(|| NgsiError::not_found(format!("@context {id}")))?;
        if entry.kind != ContextKind::Cached {
            return Err(NgsiError::bad_data(format!(
                "only a cached @context can be reloaded, not a {} one",
                entry.kind.as_str()
            )));
        }
        let doc = self.download(&entry.url).await?;
        let mut map = self.entries.write();
        let e = map.get_mut(&entry.id).ok_or_else(|| NgsiError::not_found(id.to_owned()))?;
        e.document = doc;
        let out = e.clone();
        drop(map);
        self.compiled.invalidate_all();
        Ok(out)
    }
}

/// The local id in a hosted-context URL, whatever its host.
pub fn hosted_id(url: &str) -> Option<&str> {
    let pos = url.find(HOSTED_PATH)?;
    let id = &url[pos + HOSTED_PATH.len()..];
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn hosted_contexts_resolve_without_network() {
        let r = Resolver::new(ResolverSettings::default());
        let e = r.host(json!({"@context": {"Car": "http://example.org/Car"}}), "http://broker:1026").await.unwrap();
        let c = r.from_url(&e.url).await.unwrap();
        assert_eq!(c.expand("Car"), "http://example.org/Car");
        // Another host name for the same broker resolves locally too.
        let other = format!("http://127.0.0.1:9{HOSTED_PATH}{}", e.id);
        assert_eq!(r.from_url(&other).await.unwrap().expand("Car"), "http://example.org/Car");
    }

    #[tokio::test]
    async fn unreachable_urls_are_ld_context_not_available() {
        let r = Resolver::new(ResolverSettings { fetch_timeout: Duration::from_millis(500), cache_entries: 8 });
        let err = r.from_url("http://127.0.0.1:1/nothing.jsonld").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LdContextNotAvailable);
    }
}
