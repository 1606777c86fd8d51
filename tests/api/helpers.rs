//! Spawns an in-process broker on port 0 with a fresh data directory, and a client for it.

use orbis::config::Settings;
use orbis::startup::Application;
use reqwest::{Client, Response};
use serde_json::Value;

pub const LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

pub struct TestApp {
    pub address: String,
    pub client: Client,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    /// Creates an entity and asserts 201.
    pub async fn create(&self, body: Value) {
        let r = self.post_json("/ngsi-ld/v1/entities", &body).await;
        assert_eq!(r.status(), 201, "create failed: {:?}", r.text().await);
    }
}

pub fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port: 0,
        data_dir: dir.to_owned(),
        workers: 2,
        context_timeout_ms: 1000,
        ..Default::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    spawn_with(settings(&path), Some(dir)).await
}

pub async fn spawn_with(s: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    let app = Application::build(s).await.expect("broker builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp { address: format!("http://127.0.0.1:{port}"), client: Client::new(), _dir: dir }
}

/// Asserts a ProblemDetails body with the given status and ETSI type name.
pub async fn assert_problem(r: Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status(), status, "unexpected status");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/json"), "problem content type {ct}");
    let body: Value = r.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"), "body: {body}");
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(body["status"], status);
    body
}
