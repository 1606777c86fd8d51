//! Commands end to end: a client updates a command attribute on the real broker, the broker
//! forwards it to the agent (a context source registered for the command), and the agent
//! delivers it to a device (HTTP push to a stub device, MQTT through the machine's Mosquitto,
//! AMQP, or polling) and reports `<cmd>_status`/`<cmd>_info` back to the broker. Also expiry,
//! restart survival, the 501 routes and configuration retrieval.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orbis_agent::commands;
use orbis_agent::config::Settings;
use orbis_agent::error::AgentError;
use orbis_agent::model::{CommandDef, CommandStatus, Device, MqttOptions, PendingCommand};
use orbis_agent::ngsi::client::Tenant;
use orbis_agent::south::Downlink;
use orbis_agent::startup::{Agent, Application};
use parking_lot::Mutex;
use reqwest::Client;
use serde_json::{Value, json};

use crate::common::{self, TestBroker, unique, urlencode};

const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// A broker and an agent whose `Agent` the test can reach (registry, transports).
struct Env {
    broker: TestBroker,
    agent: Option<Arc<Agent>>,
    north: String,
    handles: Vec<actix_web::dev::ServerHandle>,
    dir: tempfile::TempDir,
    tenant: String,
}

async fn start_agent(settings: Settings) -> (Arc<Agent>, String, Vec<actix_web::dev::ServerHandle>) {
    let app = Application::build(settings).await.expect("agent builds");
    let agent = app.agent.clone();
    let north = format!("http://127.0.0.1:{}", app.north_port());
    let handles = app.handles();
    tokio::spawn(app.run_until_stopped());
    (agent, north, handles)
}

impl Env {
    async fn new(tune: impl FnOnce(&mut Settings)) -> Env {
        let broker = common::spawn_broker().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = common::agent_settings(&broker.url, dir.path());
        tune(&mut settings);
        let (agent, north, handles) = start_agent(settings).await;
        Env { broker, agent: Some(agent), north, handles, dir, tenant: unique("cmd") }
    }

    fn agent(&self) -> &Arc<Agent> {
        self.agent.as_ref().expect("agent running")
    }

    /// Stops the agent and builds a new one on the same data directory.
    async fn restart(&mut self, tune: impl FnOnce(&mut Settings)) {
        for h in &self.handles {
            h.stop(true).await;
        }
        let weak = Arc::downgrade(&self.agent.take().expect("agent running"));
        common::eventually(10, "the old agent to be dropped", || {
            let gone = weak.upgrade().is_none();
            async move { gone.then_some(()) }
        })
        .await;
        let mut settings = common::agent_settings(&self.broker.url, self.dir.path());
        tune(&mut settings);
        let (agent, north, handles) = start_agent(settings).await;
        self.agent = Some(agent);
        self.north = north;
        self.handles = handles;
    }

    fn tenant(&self) -> Tenant {
        Tenant::new(self.tenant.clone(), "/")
    }

    /// Provisions a device with the given commands straight into the registry, creates its
    /// entity, and registers the agent as the context source of the commands (§4.6).
    async fn provision(&self, device: Device) -> String {
        let agent = self.agent();
        let device = Device { service: self.tenant.clone(), service_path: "/".into(), ..device };
        let resolved = orbis_agent::mapping::resolve(&device, None, &agent.settings);
        agent.registry.create_devices(vec![device.clone()]).await.expect("device stored");
        let entity = json!({"@context": CORE, "id": resolved.entity_id, "type": resolved.entity_type,
            "temperature": {"type": "Property", "value": 20}});
        agent.broker.upsert(&self.tenant(), &[entity]).await.expect("entity created");
        let names: Vec<&str> = device.commands.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            return resolved.entity_id;
        }
        let registration = json!({
            "@context": CORE,
            "type": "ContextSourceRegistration",
            "endpoint": agent.settings.provider_url,
            "contextSourceInfo": [{"key": "jsonldContext", "value": CORE}],
            "information": [{"entities": [{"id": resolved.entity_id, "type": resolved.entity_type}],
                "propertyNames": names}],
            "mode": "exclusive",
            "operations": ["updateOps"]
        });
        agent.broker.register(&self.tenant(), &registration).await.expect("registration");
        resolved.entity_id
    }

    /// A client's update of a command attribute on the broker; returns the broker's status.
    async fn command(&self, entity: &str, cmd: &str, value: Value) -> u16 {
        Client::new()
            .patch(format!("{}/ngsi-ld/v1/entities/{}/attrs/{cmd}", self.broker.url, urlencode(entity)))
            .header("NGSILD-Tenant", &self.tenant)
            .header("Content-Type", "application/json")
            .body(json!({"type": "Property", "value": value}).to_string())
            .send()
            .await
            .expect("broker PATCH")
            .status()
            .as_u16()
    }

    /// Waits until the broker shows `<cmd>_status` with the given value; returns the entity.
    async fn status(&self, entity: &str, cmd: &str, want: &str) -> Value {
        let what = format!("{cmd}_status = {want}");
        common::eventually(10, &what, || async {
            let e = common::broker_entity(&self.broker.url, Some(&self.tenant), entity).await?;
            (e[format!("{cmd}_status")]["value"] == want).then_some(e)
        })
        .await
    }

    async fn pending(&self, device_id: &str) -> Vec<PendingCommand> {
        self.agent().registry.device_commands(&self.tenant, "/", device_id).await.expect("commands")
    }
}

fn device(id: &str, apikey: &str, commands: &[&str]) -> Device {
    Device {
        device_id: id.into(),
        apikey: Some(apikey.into()),
        entity_name: Some(format!("urn:ngsi-ld:Robot:{id}")),
        entity_type: Some("Robot".into()),
        commands: commands.iter().map(|c| CommandDef { name: (*c).into(), ..Default::default() }).collect(),
        ..Default::default()
    }
}

/// What a stub device received: path, headers (lower-cased names) and body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A device with an HTTP endpoint: records every request and answers `status` with `answer`.
async fn stub_device(status: u16, answer: &'static str) -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let record = seen.clone();
    let server = actix_web::HttpServer::new(move || {
        let record = record.clone();
        actix_web::App::new().default_service(actix_web::web::to(
            move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                let record = record.clone();
                async move {
                    record.lock().push(Received {
                        path: req.path().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                        .body(answer)
                }
            },
        ))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("stub binds");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), seen)
}

/// One publish: topic (or routing key), payload, QoS, retain.
type Published = (String, Vec<u8>, u8, bool);

/// Messages an MQTT client received: topic, payload, retain flag.
type Inbox = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// A downlink that records what it is asked to publish.
#[derive(Default)]
struct Recorder(Mutex<Vec<Published>>);

#[async_trait]
impl Downlink for Recorder {
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8, retain: bool) -> Result<(), AgentError> {
        self.0.lock().push((topic.to_owned(), payload, qos, retain));
        Ok(())
    }
}

/// A downlink through the machine's Mosquitto (the southbound MQTT transport is another
/// engineer's; this stands in for it with the same contract).
struct MqttLink(rumqttc::AsyncClient);

#[async_trait]
impl Downlink for MqttLink {
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8, retain: bool) -> Result<(), AgentError> {
        let qos = match qos {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            _ => rumqttc::QoS::ExactlyOnce,
        };
        self.0.publish(topic, qos, retain, payload).await.map_err(|e| AgentError::new("MQTT", 500, e.to_string()))
    }
}

/// An MQTT client on Mosquitto; incoming publishes (topic, payload, retain) go to the returned list.
async fn mqtt_client(subscribe: Option<&str>) -> (rumqttc::AsyncClient, Inbox) {
    let opts = rumqttc::MqttOptions::new(unique("test-"), "127.0.0.1", 1883);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
    let got: Inbox = Arc::default();
    let sink = got.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let want_suback = subscribe.is_some();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    sink.lock().push((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) if want_suback => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) if !want_suback => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    if let Some(topic) = subscribe {
        client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.expect("subscribe");
    }
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await.expect("MQTT ready").expect("MQTT ready");
    (client, got)
}

#[tokio::test]
async fn a_push_command_reaches_the_device_endpoint_and_its_answer_becomes_the_result() {
    let env = Env::new(|_| {}).await;
    let (endpoint, seen) = stub_device(200, r#"{"ping":"pong"}"#).await;
    let id = unique("dev");
    let mut d = device(&id, &unique("key"), &["ping"]);
    d.endpoint = Some(format!("{endpoint}/cmd"));
    d.commands[0].headers =
        Some(serde_json::from_value(json!({"x-device": "'dev-' + deviceId", "x-static": "Bearer t"})).expect("map"));
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "ping", json!({"data": 22})).await, 204);

    let e = env.status(&entity, "ping", "OK").await;
    assert_eq!(e["ping_info"]["value"], json!({"ping": "pong"}));
    let got = seen.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/cmd");
    assert_eq!(serde_json::from_str::<Value>(&got[0].body).expect("JSON body"), json!({"ping": {"data": 22}}));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("fiware-service"), Some(env.tenant.as_str()));
    assert_eq!(got[0].header("fiware-servicepath"), Some("/"));
    assert_eq!(got[0].header("x-device"), Some(format!("dev-{id}").as_str()));
    assert_eq!(got[0].header("x-static"), Some("Bearer t"));
    assert!(env.pending(&id).await.is_empty(), "an answered command is forgotten");
}

/// A device `endpoint` may be a JEXL expression over the device (iotagent-node-lib allows it).
#[tokio::test]
async fn a_push_endpoint_given_as_an_expression_is_evaluated() {
    let env = Env::new(|_| {}).await;
    let (endpoint, seen) = stub_device(200, "\"ok\"").await;
    let id = unique("dev");
    let mut d = device(&id, &unique("key"), &["ping"]);
    d.endpoint = Some(format!("'{endpoint}/devices/' + id"));
    let entity = env.provision(d).await;
    assert_eq!(env.command(&entity, "ping", json!(1)).await, 204);
    env.status(&entity, "ping", "OK").await;
    assert_eq!(seen.lock()[0].path, format!("/devices/{id}"));

    // An expression that gives no URL ends the command in ERROR with the reason.
    let id = unique("dev");
    let mut d = device(&id, &unique("key"), &["ping"]);
    d.endpoint = Some("id + 1".into());
    let entity = env.provision(d).await;
    assert_eq!(env.command(&entity, "ping", json!(1)).await, 204);
    let e = env.status(&entity, "ping", "ERROR").await;
    assert!(e["ping_info"]["value"].as_str().is_some_and(|s| s.contains("http(s) URL")), "{e}");
}

#[tokio::test]
async fn a_push_the_device_refuses_ends_in_error_with_the_reason() {
    let env = Env::new(|_| {}).await;
    let (endpoint, _seen) = stub_device(500, "motor jammed").await;
    let id = unique("dev");
    let mut d = device(&id, &unique("key"), &["ping"]);
    d.endpoint = Some(endpoint);
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "ping", json!("go")).await, 204);

    let e = env.status(&entity, "ping", "ERROR").await;
    let info = e["ping_info"]["value"].as_str().expect("info text").to_owned();
    assert!(info.contains("500") && info.contains("motor jammed"), "{info}");
    assert!(env.pending(&id).await.is_empty());
}

#[tokio::test]
async fn an_mqtt_command_is_published_with_its_qos_and_the_device_result_is_recorded() {
    let env = Env::new(|s| s.mqtt_host = Some("127.0.0.1".into())).await;
    let (publisher, _) = mqtt_client(None).await;
    let _ = env.agent().mqtt.set(Arc::new(MqttLink(publisher)));
    let id = unique("dev");
    let apikey = unique("key");
    let (_device, got) = mqtt_client(Some(&format!("/{apikey}/{id}/cmd"))).await;
    let mut d = device(&id, &apikey, &["turn"]);
    d.commands[0].mqtt = Some(MqttOptions { qos: Some(json!("1")), retain: Some(false) });
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "turn", json!("left")).await, 204);

    env.status(&entity, "turn", "PENDING").await;
    let (topic, payload, _) = common::eventually(10, "the command on MQTT", || {
        let first = got.lock().first().cloned();
        async move { first }
    })
    .await;
    assert_eq!(topic, format!("/{apikey}/{id}/cmd"));
    assert_eq!(serde_json::from_slice::<Value>(&payload).expect("JSON"), json!({"turn": "left"}));
    let waiting = env.pending(&id).await;
    assert_eq!(waiting.len(), 1);
    common::eventually(5, "the command recorded as delivered", || async {
        (env.pending(&id).await.first()?.status == CommandStatus::Delivered).then_some(())
    })
    .await;

    // The result through the commands contract (the MQTT `cmdexe` path is tested below).
    commands::on_results(env.agent(), &apikey, &id, vec![("turn".into(), json!("turned"))]).await.expect("result");
    let e = env.status(&entity, "turn", "OK").await;
    assert_eq!(e["turn_info"]["value"], "turned");
    assert!(env.pending(&id).await.is_empty());
}

#[tokio::test]
async fn a_retained_mqtt_command_is_cleared_once_answered() {
    let env = Env::new(|s| s.mqtt_host = Some("127.0.0.1".into())).await;
    let link = Arc::new(Recorder::default());
    let _ = env.agent().mqtt.set(link.clone());
    let id = unique("dev");
    let apikey = unique("key");
    let mut d = device(&id, &apikey, &["open"]);
    d.commands[0].mqtt = Some(MqttOptions { qos: Some(json!(2)), retain: Some(true) });
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "open", json!(1)).await, 204);
    common::eventually(10, "the publish", || async { (!link.0.lock().is_empty()).then_some(()) }).await;
    commands::on_results(env.agent(), &apikey, &id, vec![("open".into(), json!("ERROR: stuck"))])
        .await
        .expect("result");

    let e = env.status(&entity, "open", "ERROR").await;
    assert_eq!(e["open_info"]["value"], "ERROR: stuck");
    let published = link.0.lock().clone();
    let topic = format!("/{apikey}/{id}/cmd");
    assert_eq!(published[0], (topic.clone(), br#"{"open":1}"#.to_vec(), 2, true));
    assert_eq!(published[1], (topic, Vec::new(), 2, true), "the retained command is cleared");
}

#[tokio::test]
async fn an_amqp_command_goes_to_the_device_routing_key() {
    let env = Env::new(|_| {}).await;
    let link = Arc::new(Recorder::default());
    let _ = env.agent().amqp.set(link.clone());
    let id = unique("dev");
    let apikey = unique("key");
    let mut d = device(&id, &apikey, &["beep"]);
    d.transport = Some("AMQP".into());
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "beep", json!(3)).await, 204);

    common::eventually(10, "the AMQP publish", || async { (!link.0.lock().is_empty()).then_some(()) }).await;
    let (key, payload, _, _) = link.0.lock()[0].clone();
    assert_eq!(key, format!(".{apikey}.{id}.cmd"));
    assert_eq!(serde_json::from_slice::<Value>(&payload).expect("JSON"), json!({"beep": 3}));
    env.status(&entity, "beep", "PENDING").await;
}

#[tokio::test]
async fn a_polling_command_waits_and_is_handed_out_once() {
    let env = Env::new(|_| {}).await;
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &["move", "stop"])).await;

    assert_eq!(env.command(&entity, "move", json!(20)).await, 204);
    assert_eq!(env.command(&entity, "stop", json!(true)).await, 204);
    env.status(&entity, "stop", "PENDING").await;
    env.status(&entity, "move", "PENDING").await;

    let polled = commands::poll(env.agent(), &apikey, &id).await.expect("poll");
    let got: Vec<(String, Value)> = polled.iter().map(|c| (c.name.clone(), c.value.clone())).collect();
    assert_eq!(got, vec![("move".into(), json!(20)), ("stop".into(), json!(true))], "oldest first");
    env.status(&entity, "move", "DELIVERED").await;
    env.status(&entity, "stop", "DELIVERED").await;
    assert!(commands::poll(env.agent(), &apikey, &id).await.expect("poll").is_empty(), "handed out once");

    commands::on_results(env.agent(), &apikey, &id, vec![("move".into(), json!({"at": 20}))]).await.expect("result");
    let e = env.status(&entity, "move", "OK").await;
    assert_eq!(e["move_info"]["value"], json!({"at": 20}));
    assert_eq!(env.pending(&id).await.len(), 1, "stop still waits for its result");
}

#[tokio::test]
async fn an_unanswered_command_expires_with_error_expired() {
    let env = Env::new(|s| {
        s.polling_expiration_ms = 300;
        s.polling_daemon_frequency_ms = 100;
    })
    .await;
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &["ping"])).await;

    assert_eq!(env.command(&entity, "ping", json!(1)).await, 204);

    let e = env.status(&entity, "ping", "ERROR").await;
    assert_eq!(e["ping_info"]["value"], "EXPIRED");
    assert!(env.pending(&id).await.is_empty());
    assert!(commands::poll(env.agent(), &apikey, &id).await.expect("poll").is_empty());
}

#[tokio::test]
async fn commands_survive_a_restart_and_undelivered_pushes_are_delivered() {
    let mut env = Env::new(|_| {}).await;
    let polled_id = unique("dev");
    let apikey = unique("key");
    let polled_entity = env.provision(device(&polled_id, &apikey, &["move"])).await;
    assert_eq!(env.command(&polled_entity, "move", json!("up")).await, 204);
    env.status(&polled_entity, "move", "PENDING").await;

    // A push command recorded but not delivered when the agent stopped.
    let (endpoint, seen) = stub_device(200, "\"done\"").await;
    let pushed_id = unique("dev");
    let mut pushed = device(&pushed_id, &apikey, &["ring"]);
    pushed.endpoint = Some(endpoint);
    let pushed_entity = env.provision(pushed).await;
    let now = chrono::Utc::now().timestamp_millis();
    env.agent()
        .registry
        .put_command(PendingCommand {
            id: format!("{now:013}-restart"),
            service: env.tenant.clone(),
            subservice: "/".into(),
            device_id: pushed_id.clone(),
            apikey: apikey.clone(),
            name: "ring".into(),
            value: json!(2),
            status: CommandStatus::Pending,
            created_ms: now,
            expires_ms: now + 60_000,
        })
        .await
        .expect("recorded");
    assert!(seen.lock().is_empty());

    env.restart(|_| {}).await;

    let e = env.status(&pushed_entity, "ring", "OK").await;
    assert_eq!(e["ring_info"]["value"], "done");
    assert_eq!(seen.lock().len(), 1);
    let polled = commands::poll(env.agent(), &apikey, &polled_id).await.expect("poll");
    assert_eq!(polled.len(), 1);
    assert_eq!((polled[0].name.as_str(), &polled[0].value), ("move", &json!("up")));
    env.status(&polled_entity, "move", "DELIVERED").await;
}

#[tokio::test]
async fn the_context_provider_routes_answer_as_upstream() {
    let env = Env::new(|s| s.fallback_tenant = None).await;
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &["move"])).await;
    let c = Client::new();
    let url = |p: &str| format!("{}/ngsi-ld/v1/entities{p}", env.north);
    let enc = urlencode(&entity);

    for (method, path) in [
        (reqwest::Method::POST, String::new()),
        (reqwest::Method::DELETE, format!("/{enc}")),
        (reqwest::Method::DELETE, format!("/{enc}/attrs/move")),
    ] {
        let r = c
            .request(method.clone(), url(&path))
            .header("NGSILD-Tenant", &env.tenant)
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 501, "{method} {path}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["error"], "METHOD_NOT_IMPLEMENTED");
        assert!(body["description"].is_string());
    }

    // An attribute that is not a command, and an entity without a device.
    let r = c
        .patch(url(&format!("/{enc}/attrs/temperature")))
        .header("NGSILD-Tenant", &env.tenant)
        .body(r#"{"type":"Property","value":1}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.expect("JSON")["error"], "COMMAND_NOT_FOUND");
    let r = c
        .patch(url("/urn:ngsi-ld:Robot:nobody/attrs/move"))
        .header("NGSILD-Tenant", &env.tenant)
        .body(r#"{"type":"Property","value":1}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.expect("JSON")["error"], "DEVICE_NOT_FOUND");
    // The tenant decides: the same entity in another tenant has no device.
    let r = c.patch(url(&format!("/{enc}/attrs/move"))).body(r#"{"value":1}"#).send().await.expect("send");
    assert_eq!(r.status(), 404);

    // Several instances (datasetId) through PATCH …/attrs/ with a trailing slash and the
    // fiware-service header, then a merge-patch of the entity.
    let r = c
        .patch(url(&format!("/{enc}/attrs/")))
        .header("fiware-service", &env.tenant)
        .body(
            json!({"move": [{"type": "Property", "value": 1, "datasetId": "urn:a"},
                            {"type": "Property", "value": 2, "datasetId": "urn:b"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = c
        .patch(url(&format!("/{enc}")))
        .header("NGSILD-Tenant", &env.tenant)
        .body(json!({"id": entity, "type": "Robot", "move": {"type": "Property", "value": 3}}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let values: Vec<Value> =
        commands::poll(env.agent(), &apikey, &id).await.expect("poll").into_iter().map(|c| c.value).collect();
    assert_eq!(values, vec![json!(1), json!(2), json!(3)]);

    // Lazy reads: what the agent knows.
    let r = c.get(url(&format!("/{enc}"))).header("NGSILD-Tenant", &env.tenant).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("JSON"), json!({"id": entity, "type": "Robot"}));
    let r =
        c.get(url(&format!("?type=Robot&id={enc}"))).header("NGSILD-Tenant", &env.tenant).send().await.expect("send");
    assert_eq!(r.json::<Value>().await.expect("JSON"), json!([{"id": entity, "type": "Robot"}]));
    let r = c.get(url("/urn:ngsi-ld:Robot:nobody")).header("NGSILD-Tenant", &env.tenant).send().await.expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_fallback_tenant_serves_requests_that_name_none() {
    let tenant = unique("fb");
    let t = tenant.clone();
    let mut env = Env::new(move |s| s.fallback_tenant = Some(t)).await;
    env.tenant = tenant;
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &["move"])).await;
    let r = Client::new()
        .put(format!("{}/ngsi-ld/v1/entities/{}/attrs/move", env.north, urlencode(&entity)))
        .body(r#"{"type":"Property","value":"x"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    assert_eq!(env.pending(&id).await.len(), 1);
}

async fn set_attr(env: &Env, entity: &str, attr: &str, value: Value) {
    let e = json!({"@context": CORE, "id": entity, "type": "Robot", attr: {"type": "Property", "value": value}});
    env.agent().broker.upsert(&env.tenant(), &[e]).await.expect("upsert");
}

#[tokio::test]
async fn configuration_is_read_from_the_broker_and_pushed_to_the_device() {
    let env = Env::new(|s| s.config_retrieval = true).await;
    let (endpoint, seen) = stub_device(200, "").await;
    let id = unique("dev");
    let apikey = unique("key");
    let mut d = device(&id, &apikey, &[]);
    d.endpoint = Some(format!("{endpoint}/"));
    let entity = env.provision(d).await;
    set_attr(&env, &entity, "sleepTime", json!(200)).await;
    set_attr(&env, &entity, "warningLevel", json!("80")).await;

    commands::on_configuration_request(
        env.agent(),
        &apikey,
        &id,
        "configuration",
        vec!["sleepTime".into(), "warningLevel".into()],
    )
    .await
    .expect("configuration");

    let got = seen.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/configuration");
    let body: Value = serde_json::from_str(&got[0].body).expect("JSON");
    assert_eq!(body["sleepTime"], 200);
    assert_eq!(body["warningLevel"], "80");
    assert!(body["dt"].is_string());
    assert!(body.get("temperature").is_none());
}

#[tokio::test]
async fn configuration_values_go_over_mqtt_without_leading_slash_when_asked() {
    let env = Env::new(|s| {
        s.config_retrieval = true;
        s.mqtt_host = Some("127.0.0.1".into());
        s.mqtt_avoid_leading_slash = true;
    })
    .await;
    let link = Arc::new(Recorder::default());
    let _ = env.agent().mqtt.set(link.clone());
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &[])).await;
    set_attr(&env, &entity, "sleepTime", json!(5)).await;

    commands::on_configuration_request(env.agent(), &apikey, &id, "configuration", vec!["sleepTime".into()])
        .await
        .expect("configuration");

    let (topic, payload, _, _) = link.0.lock()[0].clone();
    assert_eq!(topic, format!("{apikey}/{id}/configuration/values"));
    assert_eq!(serde_json::from_slice::<Value>(&payload).expect("JSON")["sleepTime"], 5);
}

#[tokio::test]
async fn a_configuration_subscription_pushes_every_change_and_is_not_duplicated() {
    let env = Env::new(|s| s.config_retrieval = true).await;
    let (endpoint, seen) = stub_device(200, "").await;
    let id = unique("dev");
    let apikey = unique("key");
    let mut d = device(&id, &apikey, &[]);
    d.endpoint = Some(endpoint);
    let entity = env.provision(d).await;
    set_attr(&env, &entity, "sleepTime", json!(1)).await;

    for _ in 0..2 {
        commands::on_configuration_request(env.agent(), &apikey, &id, "subscription", vec!["sleepTime".into()])
            .await
            .expect("subscription");
    }
    let stored = env.agent().registry.get_device(&env.tenant, "/", &id, None).await.expect("read").expect("device");
    assert_eq!(stored.subscriptions.len(), 1, "a repeated request does not subscribe again");
    let sub_url = format!("{}/ngsi-ld/v1/subscriptions/{}", env.broker.url, urlencode(&stored.subscriptions[0].id));
    let client = reqwest::Client::new();
    let r = client.get(&sub_url).header("NGSILD-Tenant", &env.tenant).send().await.expect("GET subscription");
    assert_eq!(r.status(), 200, "the subscription is on the broker");

    set_attr(&env, &entity, "sleepTime", json!(42)).await;
    common::eventually(10, "the pushed change", || {
        let pushed = seen.lock().iter().any(|r| {
            r.path == "/configuration"
                && serde_json::from_str::<Value>(&r.body).is_ok_and(|b| b["sleepTime"] == 42 && b["dt"].is_string())
        });
        async move { pushed.then_some(()) }
    })
    .await;

    // Deleting the device through the provisioning API removes its subscription from the broker.
    let r = client
        .delete(format!("{}/iot/devices/{id}", env.north))
        .header("fiware-service", &env.tenant)
        .header("fiware-servicepath", "/")
        .send()
        .await
        .expect("DELETE device");
    assert_eq!(r.status(), 204);
    let r = client.get(&sub_url).header("NGSILD-Tenant", &env.tenant).send().await.expect("GET subscription");
    assert_eq!(r.status(), 404, "the device's subscription went with it");
}

#[tokio::test]
async fn configuration_requests_are_ignored_when_retrieval_is_off() {
    let env = Env::new(|s| s.config_retrieval = false).await;
    let (endpoint, seen) = stub_device(200, "").await;
    let id = unique("dev");
    let apikey = unique("key");
    let mut d = device(&id, &apikey, &[]);
    d.endpoint = Some(endpoint);
    let entity = env.provision(d).await;
    set_attr(&env, &entity, "sleepTime", json!(1)).await;
    commands::on_configuration_request(env.agent(), &apikey, &id, "configuration", vec!["sleepTime".into()])
        .await
        .expect("ignored");
    assert!(seen.lock().is_empty());
}

#[tokio::test]
async fn a_device_that_changes_entity_is_found_under_its_new_entity_only() {
    let env = Env::new(|_| {}).await;
    let id = unique("dev");
    let apikey = unique("key");
    let entity = env.provision(device(&id, &apikey, &["move"])).await;
    let c = Client::new();
    let patch = |e: String| {
        c.patch(format!("{}/ngsi-ld/v1/entities/{}/attrs/move", env.north, urlencode(&e)))
            .header("NGSILD-Tenant", &env.tenant)
            .body(r#"{"type":"Property","value":1}"#)
            .send()
    };
    assert_eq!(patch(entity.clone()).await.expect("send").status(), 204);

    let mut stored = env.agent().registry.get_device(&env.tenant, "/", &id, None).await.expect("read").expect("device");
    stored.entity_name = Some(format!("urn:ngsi-ld:Robot:{id}-renamed"));
    env.agent().registry.update_device(stored).await.expect("update");

    assert_eq!(patch(entity.clone()).await.expect("send").status(), 404, "the old entity is no longer the device's");
    assert_eq!(patch(format!("{entity}-renamed")).await.expect("send").status(), 204);
    assert_eq!(env.pending(&id).await.len(), 2);
}

#[tokio::test]
async fn an_ultralight_device_gets_its_push_command_in_ultralight() {
    let env = Env::new(|_| {}).await;
    let (endpoint, seen) = stub_device(200, "ok").await;
    let id = unique("dev");
    let mut d = device(&id, &unique("key"), &["ping"]);
    d.endpoint = Some(endpoint);
    d.protocol = Some("PDI-IoTA-UltraLight".into());
    let entity = env.provision(d).await;

    assert_eq!(env.command(&entity, "ping", json!("hello")).await, 204);

    env.status(&entity, "ping", "OK").await;
    let got = seen.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, format!("{id}@ping|hello"));
    assert_eq!(got[0].header("content-type"), Some("text/plain"));
}

/// The whole loop through the real transports: the broker forwards the command, the agent
/// publishes it on Mosquitto, the simulated device answers on `cmdexe` (JSON) or with an
/// UltraLight `dev@cmd|result`, and the agent's MQTT consumer records the result in the broker.
#[tokio::test]
async fn an_mqtt_device_answers_on_cmdexe_in_json_and_ultralight() {
    let env = Env::new(|s| {
        s.mqtt_host = Some("127.0.0.1".into());
        s.mqtt_connections = 2;
    })
    .await;
    common::eventually(10, "the agent's MQTT downlink", || {
        let up = env.agent().mqtt.get().is_some();
        async move { up.then_some(()) }
    })
    .await;
    // The downlink is set on the CONNACK; give the subscriptions a moment to be acknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for ultralight in [false, true] {
        let id = unique("dev");
        let apikey = unique("key");
        let (simulated, got) = mqtt_client(Some(&format!("/{apikey}/{id}/cmd"))).await;
        let mut d = device(&id, &apikey, &["turn"]);
        if ultralight {
            d.protocol = Some("PDI-IoTA-UltraLight".into());
        }
        let entity = env.provision(d).await;

        assert_eq!(env.command(&entity, "turn", json!("left")).await, 204);
        let (_, payload, _) = common::eventually(10, "the command on MQTT", || {
            let first = got.lock().first().cloned();
            async move { first }
        })
        .await;
        let (topic, answer) = if ultralight {
            assert_eq!(String::from_utf8_lossy(&payload), format!("{id}@turn|left"));
            (format!("/ul/{apikey}/{id}/cmdexe"), format!("{id}@turn|done"))
        } else {
            assert_eq!(serde_json::from_slice::<Value>(&payload).expect("JSON"), json!({"turn": "left"}));
            (format!("/json/{apikey}/{id}/cmdexe"), r#"{"turn": "done"}"#.to_owned())
        };
        simulated.publish(topic, rumqttc::QoS::AtLeastOnce, false, answer.into_bytes()).await.expect("publish result");
        let e = env.status(&entity, "turn", "OK").await;
        assert_eq!(e["turn_info"]["value"], "done", "ultralight: {ultralight}");
        assert!(env.pending(&id).await.is_empty());
    }
}
