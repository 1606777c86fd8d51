//! The HTTP southbound (`/iot/json…`, `/iot/d`) against a real broker, and the helpers the
//! transport tests share: an agent whose registry the test can provision directly (the
//! provisioning API is another module's), groups, and the entity id a device maps to.

use std::sync::Arc;

use orbis_agent::config::Settings;
use orbis_agent::model::Group;
use orbis_agent::startup::{Agent, Application};
use reqwest::Client;
use serde_json::{Value, json};

use crate::common::{self, TestAgent, unique};

/// An agent, with its shared state for direct provisioning.
pub struct South {
    pub test: TestAgent,
    pub agent: Arc<Agent>,
    pub _dir: tempfile::TempDir,
}

/// Spawns an agent for `broker_url`, with the test's changes to the settings.
pub async fn spawn_south(broker_url: &str, tweak: impl FnOnce(&mut Settings)) -> South {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::agent_settings(broker_url, dir.path());
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("agent builds");
    let agent = app.agent.clone();
    let test = TestAgent {
        north: format!("http://127.0.0.1:{}", app.north_port()),
        http: app.http_port().map(|p| format!("http://127.0.0.1:{p}")),
        client: Client::new(),
        settings: agent.settings.clone(),
        handles: app.handles(),
        dir: dir.path().to_owned(),
    };
    tokio::spawn(app.run_until_stopped());
    South { test, agent, _dir: dir }
}

/// A group of `Thing`s in `service` (`/` path), timestamps off so bodies are exact.
pub fn group(apikey: &str, service: &str, resource: &str) -> Group {
    Group {
        service: service.to_owned(),
        subservice: "/".to_owned(),
        apikey: apikey.to_owned(),
        resource: resource.to_owned(),
        entity_type: Some("Thing".to_owned()),
        timestamp: Some(false),
        ..Default::default()
    }
}

impl South {
    pub async fn add_group(&self, group: Group) {
        self.agent.registry.create_groups(vec![group]).await.expect("group stored");
    }

    /// The entity id the agent writes the device's measures to, once the device exists.
    pub async fn entity_id(&self, apikey: &str, device_id: &str) -> Option<String> {
        let device = self.agent.registry.find_device(Some(apikey), device_id).await.expect("registry")?;
        let group = self.agent.registry.find_group_by_apikey(apikey).await.expect("registry");
        Some(orbis_agent::mapping::resolve(&device, group.as_ref(), &self.agent.settings).entity_id)
    }

    /// Waits for the device's entity in the broker until `ready` holds for it.
    pub async fn entity_when(
        &self,
        broker: &str,
        service: &str,
        apikey: &str,
        device_id: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        common::eventually(20, &format!("entity of {device_id}"), || async {
            let id = self.entity_id(apikey, device_id).await?;
            let e = common::broker_entity(broker, Some(service), &id).await?;
            ready(&e).then_some(e)
        })
        .await
    }

    pub fn http(&self) -> String {
        self.test.http.clone().expect("HTTP southbound on")
    }
}

/// A fresh tenant name (services are lower-case).
pub fn tenant() -> String {
    unique("south").to_ascii_lowercase()
}

#[tokio::test]
async fn a_json_measure_over_http_reaches_the_broker_before_the_answer() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;

    let r = south
        .test
        .client
        .post(format!("{}/iot/json?k={key}&i=dev1", south.http()))
        .header("content-type", "application/json")
        .body(r#"{"temperature": 21.5, "status": "ok"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-processing-time"));
    // 200 means written: the entity is there without waiting.
    let id = south.entity_id(&key, "dev1").await.expect("device autoprovisioned");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity written before 200");
    assert_eq!(e["temperature"]["value"], json!(21.5));
    assert_eq!(e["status"]["value"], json!("ok"));
    assert_eq!(e["type"], json!("Thing"));
}

#[tokio::test]
async fn a_single_attribute_is_read_by_content_type() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let post = |attr: &str, ct: &str, body: Vec<u8>| {
        south
            .test
            .client
            .post(format!("{}/iot/json/attrs/{attr}?k={key}&i=dev2", south.http()))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_eq!(post("label", "text/plain", b"hello".to_vec()).await.expect("POST").status(), 200);
    assert_eq!(post("raw", "application/octet-stream", vec![0x01, 0xab]).await.expect("POST").status(), 200);
    assert_eq!(post("level", "application/json", b"42".to_vec()).await.expect("POST").status(), 200);
    let r = post("x", "image/png", vec![1]).await.expect("POST");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.expect("JSON")["name"], "UNSUPPORTED_TYPE");

    let id = south.entity_id(&key, "dev2").await.expect("device");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity");
    assert_eq!(e["label"]["value"], json!("hello"));
    assert_eq!(e["raw"]["value"], json!("01ab"));
    assert_eq!(e["level"]["value"], json!(42));
}

#[tokio::test]
async fn refused_requests_say_why_and_write_nothing() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |s| s.max_body_bytes = 1024).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let mut closed = group(&unique("k"), &service, "/iot/json");
    closed.autoprovision = Some(false);
    let closed_key = closed.apikey.clone();
    south.add_group(closed).await;
    let http = south.http();
    let c = &south.test.client;
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("error JSON");
        (status, body["name"].as_str().unwrap_or_default().to_owned())
    };

    let r = c.post(format!("{http}/iot/json?i=dev")).body("{}").send().await.expect("POST");
    assert_eq!(error(r).await, (400, "MANDATORY_PARAMS_NOT_FOUND".to_owned()));
    let r = c.post(format!("{http}/iot/json?k={key}&i=bad")).body("{not json").send().await.expect("POST");
    assert_eq!(error(r).await, (400, "BAD_PAYLOAD".to_owned()));
    let r = c.post(format!("{http}/iot/json?k={key}&i=bad")).body("[1, 2]").send().await.expect("POST");
    assert_eq!(error(r).await, (400, "BAD_PAYLOAD".to_owned()));
    let r = c
        .post(format!("{http}/iot/json?k={key}&i=bad"))
        .header("content-type", "application/xml")
        .body("<a/>")
        .send()
        .await
        .expect("POST");
    assert_eq!(error(r).await, (400, "UNSUPPORTED_TYPE".to_owned()));
    let r = c.post(format!("{http}/iot/json?k={}&i=dev", unique("nokey"))).body("{}").send().await.expect("POST");
    assert_eq!(error(r).await, (404, "DEVICE_GROUP_NOT_FOUND".to_owned()));
    let r = c.post(format!("{http}/iot/json?k={closed_key}&i=dev")).body(r#"{"a": 1}"#).send().await.expect("POST");
    assert_eq!(error(r).await, (404, "DEVICE_NOT_FOUND".to_owned()));
    let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(south.agent.settings.max_body_bytes));
    let r = c.post(format!("{http}/iot/json?k={key}&i=bad")).body(big).send().await.expect("POST");
    assert_eq!(r.status(), 413);

    // Nothing was provisioned for the refused payloads, and the agent keeps serving.
    assert!(south.agent.registry.find_device(Some(&key), "bad").await.expect("registry").is_none());
    let r = c.post(format!("{http}/iot/json?k={key}&i=good")).body(r#"{"n": 1}"#).send().await.expect("POST");
    assert_eq!(r.status(), 200);
    let id = south.entity_id(&key, "good").await.expect("device");
    assert_eq!(common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity")["n"]["value"], json!(1));
}

#[tokio::test]
async fn a_burst_of_first_measures_provisions_one_device() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let http = south.http();
    let sends = (0..20).map(|i| {
        let c = south.test.client.clone();
        let url = format!("{http}/iot/json?k={key}&i=burst");
        async move { c.post(url).body(format!(r#"{{"n": {i}}}"#)).send().await.expect("POST").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let page = south
        .agent
        .registry
        .list_devices(orbis_agent::registry::Scope::One { service: &service, subservice: "/" }, None, 0)
        .await
        .expect("registry");
    assert_eq!(page.count, 1);
    assert_eq!(page.items[0].device_id, "burst");
    assert_eq!(page.items[0].transport.as_deref(), Some("HTTP"));
}

#[tokio::test]
async fn store_last_measure_keeps_the_last_measure_on_the_device() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    let mut g = group(&key, &service, "/iot/json");
    g.store_last_measure = Some(true);
    south.add_group(g).await;
    for body in [r#"{"a": 1}"#, r#"{"a": 2, "b": "x"}"#] {
        let r = south
            .test
            .client
            .post(format!("{}/iot/json?k={key}&i=keeper", south.http()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
    }
    let device = south.agent.registry.find_device(Some(&key), "keeper").await.expect("registry").expect("device");
    let last = device.last_measure.expect("last measure kept");
    assert_eq!(last["measure"], json!({"a": 2, "b": "x"}));
    assert!(last["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn a_group_with_cb_host_writes_to_its_own_broker() {
    let default_broker = common::spawn_broker().await;
    let group_broker = common::spawn_broker().await;
    let south = spawn_south(&default_broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    let mut g = group(&key, &service, "/iot/json");
    // `host:port`, as iotagent-node-lib accepts it.
    g.cb_host = Some(group_broker.url.trim_start_matches("http://").to_owned());
    south.add_group(g).await;
    let r = south
        .test
        .client
        .post(format!("{}/iot/json?k={key}&i=routed", south.http()))
        .header("content-type", "application/json")
        .body(r#"{"v": 3}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = south.entity_id(&key, "routed").await.expect("device");
    let e = common::broker_entity(&group_broker.url, Some(&service), &id).await.expect("entity in the group's broker");
    assert_eq!(e["v"]["value"], json!(3));
    assert!(common::broker_entity(&default_broker.url, Some(&service), &id).await.is_none());
}

#[tokio::test]
async fn a_polling_device_gets_an_empty_answer_without_commands() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let r = south
        .test
        .client
        .get(format!("{}/iot/json?k={key}&i=poller&getCmd=1", south.http()))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("JSON"), json!({}));
}

#[tokio::test]
async fn the_t_parameter_becomes_observed_at() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    let mut g = group(&key, &service, "/iot/json");
    g.timestamp = Some(true);
    south.add_group(g).await;
    let r = south
        .test
        .client
        .post(format!("{}/iot/json?k={key}&i=dev&t=2024-01-02T03:04:05.000Z", south.http()))
        .header("content-type", "application/json")
        .body(r#"{"temperature": 20}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = south.entity_id(&key, "dev").await.expect("device");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity");
    assert_eq!(e["temperature"]["value"], json!(20));
    assert_eq!(e["temperature"]["observedAt"], json!("2024-01-02T03:04:05.000Z"));
}

#[tokio::test]
async fn ultralight_measures_over_http_reach_the_broker() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/d")).await;
    let http = south.http();
    let r = south.test.client.get(format!("{http}/iot/d?k={key}&i=ul1&d=t|21|s|on")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let r = south
        .test
        .client
        .post(format!("{http}/iot/d?k={key}&i=ul2"))
        .header("content-type", "text/plain")
        .body("h|40")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = south.entity_id(&key, "ul1").await.expect("device");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity");
    assert_eq!(e["t"]["value"], json!(21));
    assert_eq!(e["s"]["value"], json!("on"));
    let id = south.entity_id(&key, "ul2").await.expect("device");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity");
    assert_eq!(e["h"]["value"], json!(40));
    let r = south
        .test
        .client
        .post(format!("{http}/iot/d?k={key}&i=ul3"))
        .header("content-type", "text/plain")
        .body("a||b")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400);
    let r = south.test.client.get(format!("{http}/iot/d?k={key}&i=ul2&getCmd=1")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/plain"));
}

/// A group with `payloadType: ngsild`: the device reports an NGSI-LD entity and its attribute
/// kinds survive (a Relationship stays a Relationship, a GeoProperty a GeoProperty).
#[tokio::test]
async fn an_ngsi_ld_payload_keeps_its_attribute_kinds() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service) = (unique("k"), tenant());
    let mut g = group(&key, &service, "/iot/json");
    g.payload_type = Some("ngsild".into());
    south.add_group(g).await;

    let body = json!({
        "id": "urn:ngsi-ld:Thing:ignored", "type": "Thing",
        "temperature": {"type": "Property", "value": 19},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:ann"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}}
    });
    let r = south
        .test
        .client
        .post(format!("{}/iot/json?k={key}&i=ld1", south.http()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let id = south.entity_id(&key, "ld1").await.expect("device autoprovisioned");
    let e = common::broker_entity(&broker.url, Some(&service), &id).await.expect("entity written");
    assert_eq!(e["temperature"]["value"], json!(19));
    assert_eq!(e["owner"]["type"], json!("Relationship"));
    assert_eq!(e["owner"]["object"], json!("urn:ngsi-ld:Person:ann"));
    assert_eq!(e["location"]["type"], json!("GeoProperty"));
    assert_eq!(e["location"]["value"]["coordinates"], json!([2.1, 41.4]));
}

/// Polling end to end: a device provisioned for HTTP without an endpoint gets the command a client
/// sets on the broker when it polls (`getCmd=1`), the broker shows DELIVERED, and the result the
/// device posts to `/iot/json/commands` ends the command.
#[tokio::test]
async fn a_polling_device_fetches_its_command_and_posts_the_result() {
    let broker = common::spawn_broker().await;
    let south = spawn_south(&broker.url, |_| {}).await;
    let (key, service, dev) = (unique("k"), tenant(), unique("poller"));
    let provision = json!({"devices": [{"device_id": dev, "apikey": key, "entity_type": "Valve",
        "transport": "HTTP", "timestamp": false, "commands": [{"name": "open", "type": "command"}]}]});
    let r = south
        .test
        .client
        .post(format!("{}/iot/devices", south.test.north))
        .header("fiware-service", &service)
        .header("fiware-servicepath", "/")
        .json(&provision)
        .send()
        .await
        .expect("provision");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let measure = |body: &'static str| {
        south
            .test
            .client
            .post(format!("{}/iot/json?k={key}&i={dev}", south.http()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(measure(r#"{"pressure": 2}"#).await.expect("measure").status(), 200);
    let entity = format!("urn:ngsi-ld:Valve:{dev}");
    let broker_status = |want: &'static str| {
        let (url, service, entity) = (broker.url.clone(), service.clone(), entity.clone());
        async move {
            common::eventually(10, want, || async {
                let e = common::broker_entity(&url, Some(&service), &entity).await?;
                (e["open_status"]["value"] == want).then_some(e)
            })
            .await
        }
    };

    let r = reqwest::Client::new()
        .patch(format!("{}/ngsi-ld/v1/entities/{entity}/attrs/open", broker.url))
        .header("NGSILD-Tenant", &service)
        .json(&json!({"type": "Property", "value": 75}))
        .send()
        .await
        .expect("PATCH command");
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    broker_status("PENDING").await;

    let polled = south
        .test
        .client
        .get(format!("{}/iot/json?k={key}&i={dev}&getCmd=1", south.http()))
        .send()
        .await
        .expect("poll");
    assert_eq!(polled.status(), 200);
    assert_eq!(polled.json::<serde_json::Value>().await.expect("JSON"), json!({"open": 75}));
    broker_status("DELIVERED").await;
    // A second poll has nothing new.
    let again = south.test.client.get(format!("{}/iot/json?k={key}&i={dev}&getCmd=1", south.http())).send().await;
    assert_eq!(again.expect("poll").json::<serde_json::Value>().await.expect("JSON"), json!({}));

    let r = south
        .test
        .client
        .post(format!("{}/iot/json/commands?k={key}&i={dev}", south.http()))
        .header("content-type", "application/json")
        .body(r#"{"open": "opened to 75"}"#)
        .send()
        .await
        .expect("result");
    assert_eq!(r.status(), 200);
    let e = broker_status("OK").await;
    assert_eq!(e["open_info"]["value"], "opened to 75");
    assert_eq!(e["pressure"]["value"], 2);
}
