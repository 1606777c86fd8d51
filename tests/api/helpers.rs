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

/// One notification as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    #[allow(dead_code)]
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// A local HTTP receiver of notifications: records every POST; answers 500 while `fail` is set.
pub struct Receiver {
    pub url: String,
    pub fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Received>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on(0).await
    }

    /// A receiver on a given port (0: any free port).
    pub async fn start_on(port: u16) -> Receiver {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Received>();
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx2, fail2) = (tx.clone(), fail.clone());
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let server = HttpServer::new(move || {
            let (tx, fail) = (tx2.clone(), fail2.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (tx, fail) = (tx.clone(), fail.clone());
                async move {
                    if fail.load(std::sync::atomic::Ordering::SeqCst) {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send(Received { path: req.uri().to_string(), headers, body });
                    HttpResponse::Ok().finish()
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        drop(tx);
        Receiver { url: format!("http://127.0.0.1:{port}/notify"), fail, rx: tokio::sync::Mutex::new(rx) }
    }

    /// The next notification, waiting at most `secs`.
    pub async fn next(&self, secs: u64) -> Option<Received> {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(std::time::Duration::from_secs(secs), rx.recv()).await.ok().flatten()
    }

    /// The next notification; fails the test if none comes within 10 s.
    pub async fn expect(&self) -> Received {
        self.next(10).await.expect("a notification arrives within 10 s")
    }

    /// Asserts that nothing arrives within `millis`.
    pub async fn expect_none(&self, millis: u64) {
        let mut rx = self.rx.lock().await;
        if let Ok(Some(n)) = tokio::time::timeout(std::time::Duration::from_millis(millis), rx.recv()).await {
            panic!("unexpected notification: {:?}", n.body);
        }
    }
}

impl TestApp {
    pub async fn patch_json(&self, path: &str, body: &Value) -> Response {
        self.client.patch(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.expect("request")
    }

    /// Creates a subscription and returns its id.
    pub async fn subscribe(&self, body: Value) -> String {
        let r = self.post_json("/ngsi-ld/v1/subscriptions", &body).await;
        assert_eq!(r.status(), 201, "subscription refused: {:?}", r.text().await);
        let loc = r.headers()["location"].to_str().expect("location").to_owned();
        loc.rsplit('/').next().expect("id").to_owned()
    }
}
