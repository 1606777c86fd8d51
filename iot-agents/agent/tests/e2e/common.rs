//! Spawns a broker and an agent for one test, each on port 0 with its own data directory.

#![allow(dead_code)]

use orbis_agent::config::Settings;
use orbis_agent::startup::Application;
use reqwest::Client;
use serde_json::Value;

/// An in-process `orbis` broker.
pub struct TestBroker {
    pub url: String,
    _dir: tempfile::TempDir,
}

pub async fn spawn_broker() -> TestBroker {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = orbis::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        data_dir: dir.path().to_owned(),
        workers: 2,
        context_timeout_ms: 1000,
        ..Default::default()
    };
    let app = orbis::startup::Application::build(settings).await.expect("broker builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestBroker { url, _dir: dir }
}

/// An in-process agent.
pub struct TestAgent {
    pub north: String,
    pub http: Option<String>,
    pub client: Client,
    pub settings: Settings,
    pub handles: Vec<actix_web::dev::ServerHandle>,
    pub dir: std::path::PathBuf,
}

/// A unique suffix for names that must not collide between tests running at once (API keys,
/// share groups, queues, tenants).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Settings for a test agent: ports 0, MQTT and AMQP off (tests that need them turn them on with
/// a unique share group and queue), a fresh data directory.
pub fn agent_settings(broker_url: &str, data_dir: &std::path::Path) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        north_port: 0,
        http_port: Some(0),
        cb_url: broker_url.to_owned(),
        provider_url: String::new(),
        mqtt_host: None,
        mqtt_share_prefix: unique("t"),
        amqp_url: None,
        amqp_queue: unique("iotaqueue-"),
        data_dir: data_dir.to_owned(),
        json_ld_context: vec!["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld".into()],
        ..Default::default()
    }
}

pub async fn spawn_agent(settings: Settings) -> TestAgent {
    start_app(Application::build(settings).await.expect("agent builds"))
}

/// Runs an agent already built.
pub fn start_app(app: Application) -> TestAgent {
    let dir = app.agent.settings.data_dir.clone();
    let north = format!("http://127.0.0.1:{}", app.north_port());
    let http = app.http_port().map(|p| format!("http://127.0.0.1:{p}"));
    let settings = app.agent.settings.clone();
    let handles = app.handles();
    tokio::spawn(app.run_until_stopped());
    TestAgent { north, http, client: Client::new(), settings, handles, dir }
}

impl TestAgent {
    /// Stops the agent's listeners (its background tasks end with the test's runtime).
    pub async fn stop(&self) {
        for h in &self.handles {
            h.stop(true).await;
        }
    }
}

/// GETs an entity from the broker (keyValues off) in a tenant; `None` on 404.
pub async fn broker_entity(broker: &str, tenant: Option<&str>, id: &str) -> Option<Value> {
    let mut rb = Client::new().get(format!("{broker}/ngsi-ld/v1/entities/{}", urlencode(id)));
    if let Some(t) = tenant {
        rb = rb.header("NGSILD-Tenant", t);
    }
    let r = rb.send().await.expect("broker GET");
    if r.status() == 404 {
        return None;
    }
    assert_eq!(r.status(), 200, "broker GET {id}");
    Some(r.json().await.expect("entity JSON"))
}

/// Polls until `f` returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn urlencode(s: &str) -> String {
    orbis_agent::ngsi::client::encode(s)
}

/// Stops an agent's listeners and waits until every task has let go of it (so its registry file
/// is free for the next agent on the same data directory).
pub async fn stop_and_release(
    handles: &[actix_web::dev::ServerHandle],
    agent: std::sync::Arc<orbis_agent::startup::Agent>,
) {
    for h in handles {
        h.stop(true).await;
    }
    let weak = std::sync::Arc::downgrade(&agent);
    drop(agent);
    eventually(10, "the stopped agent to be released", || {
        let gone = weak.upgrade().is_none();
        async move { gone.then_some(()) }
    })
    .await;
}

/// Builds an agent on a data directory an earlier agent may still be releasing.
pub async fn rebuild(settings: &Settings) -> Application {
    eventually(10, "the registry to be released", || async { Application::build(settings.clone()).await.ok() }).await
}

/// The broker's entity of a device the agent knows (by API key and device id), if both exist.
pub async fn device_entity(
    agent: &orbis_agent::startup::Agent,
    broker: &str,
    service: &str,
    apikey: &str,
    device_id: &str,
) -> Option<Value> {
    let device = agent.registry.find_device(Some(apikey), device_id).await.expect("registry")?;
    let group = agent.registry.find_group_by_apikey(apikey).await.expect("registry");
    let id = orbis_agent::mapping::resolve(&device, group.as_ref(), &agent.settings).entity_id;
    broker_entity(broker, Some(service), &id).await
}
