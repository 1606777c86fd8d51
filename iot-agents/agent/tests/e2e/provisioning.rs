//! The provisioning API through HTTP: every route, error names and statuses, listing and paging,
//! persistence across a restart, and the context-source registrations made on the broker.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, TestAgent, TestBroker, unique};

struct Env {
    broker: TestBroker,
    agent: TestAgent,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let broker = common::spawn_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = common::spawn_agent(common::agent_settings(&broker.url, dir.path())).await;
    Env { broker, agent, _dir: dir }
}

/// A request to the agent's northbound port with the two FIWARE headers.
fn call(agent: &TestAgent, method: Method, path: &str, service: &str, subservice: &str) -> RequestBuilder {
    agent
        .client
        .request(method, format!("{}{path}", agent.north))
        .header("fiware-service", service)
        .header("fiware-servicepath", subservice)
}

async fn send(rb: RequestBuilder) -> (StatusCode, Value) {
    let r = rb.send().await.expect("agent answers");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an error answer: status and `{name, message}`.
fn assert_error(got: (StatusCode, Value), status: u16, name: &str) {
    assert_eq!(got.0.as_u16(), status, "{name}: {}", got.1);
    assert_eq!(got.1["name"], name, "{}", got.1);
    assert!(got.1["message"].is_string(), "{}", got.1);
}

/// The entity id the agent gives a device of this type without an `entity_name` (the mapping
/// library decides it; the provisioning API must use the same).
fn default_entity_id(device_id: &str, entity_type: &str) -> String {
    let d = orbis_agent::model::Device {
        device_id: device_id.into(),
        entity_type: Some(entity_type.into()),
        ..Default::default()
    };
    orbis_agent::mapping::resolve(&d, None, &orbis_agent::config::Settings::default()).entity_id
}

fn group(apikey: &str, entity_type: &str) -> Value {
    json!({"apikey": apikey, "resource": "/iot/json", "entity_type": entity_type,
           "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}]})
}

#[tokio::test]
async fn groups_are_created_listed_updated_and_deleted() {
    let e = env().await;
    let (svc, key) = (unique("Svc"), unique("k"));
    let post =
        call(&e.agent, Method::POST, "/iot/groups", &svc, "/gardens").json(&json!({"groups": [group(&key, "Thermo")]}));
    assert_eq!(send(post).await, (StatusCode::CREATED, json!({})));

    let (st, body) = send(call(&e.agent, Method::GET, "/iot/groups", &svc, "/gardens")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["count"], 1);
    let g = &body["groups"][0];
    assert!(g["_id"].as_str().is_some_and(|s| !s.is_empty()), "{g}");
    assert_eq!(g["__v"], 0);
    assert_eq!(g["service"], svc.to_lowercase(), "the service is stored lower-cased");
    assert_eq!(g["subservice"], "/gardens");
    assert_eq!((g["apikey"].as_str(), g["resource"].as_str()), (Some(key.as_str()), Some("/iot/json")));
    assert_eq!(g["entity_type"], "Thermo");

    // The same {apikey, resource} is refused, even from another service.
    let dup = call(&e.agent, Method::POST, "/iot/groups/", "other", "/").json(&json!({"groups": [group(&key, "X")]}));
    assert_error(send(dup).await, 409, "DUPLICATE_GROUP");

    // Partial update: the query names the group; what the body leaves out stays.
    let put = call(&e.agent, Method::PUT, &format!("/iot/groups?resource=/iot/json&apikey={key}"), &svc, "/gardens")
        .json(&json!({"entity_type": "Thermometer", "timestamp": false}));
    assert_eq!(send(put).await.0, StatusCode::NO_CONTENT);
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups", &svc, "/gardens")).await;
    let g = &body["groups"][0];
    assert_eq!((g["entity_type"].as_str(), g["timestamp"].as_bool()), (Some("Thermometer"), Some(false)));
    assert_eq!(g["attributes"][0]["name"], "temperature");

    let put = call(&e.agent, Method::PUT, "/iot/groups?resource=/iot/json", &svc, "/gardens").json(&json!({}));
    assert_error(send(put).await, 400, "MISSING_HEADERS");
    let put =
        call(&e.agent, Method::PUT, "/iot/groups?resource=/iot/json&apikey=nope", &svc, "/gardens").json(&json!({}));
    assert_error(send(put).await, 404, "DEVICE_GROUP_NOT_FOUND");

    let del = call(&e.agent, Method::DELETE, &format!("/iot/groups?resource=/iot/json&apikey={key}"), &svc, "/other");
    assert_error(send(del).await, 403, "MISMATCHED_SERVICE");
    let del = call(&e.agent, Method::DELETE, "/iot/groups?resource=/iot/json&apikey=nope", &svc, "/gardens");
    assert_error(send(del).await, 404, "DEVICE_GROUP_NOT_FOUND");
    let del = call(&e.agent, Method::DELETE, "/iot/groups?apikey=x", &svc, "/gardens");
    assert_error(send(del).await, 400, "MISSING_HEADERS");
    let del = call(&e.agent, Method::DELETE, &format!("/iot/groups?resource=/iot/json&apikey={key}"), &svc, "/gardens");
    assert_eq!(send(del).await.0, StatusCode::NO_CONTENT);
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups", &svc, "/gardens")).await;
    assert_eq!(body, json!({"count": 0, "groups": []}));
}

#[tokio::test]
async fn group_bodies_are_validated() {
    let e = env().await;
    let svc = unique("s");
    let post = |body: Value| call(&e.agent, Method::POST, "/iot/groups", &svc, "/").json(&body);
    let no_type = json!({"groups": [{"apikey": unique("k"), "resource": "/iot/json"}]});
    assert_error(send(post(no_type)).await, 400, "MISSING_CONFIG_PARAMS");
    let no_key = json!({"groups": [{"resource": "/iot/json", "entity_type": "T"}]});
    assert_error(send(post(no_key)).await, 400, "WRONG_SYNTAX");
    let bad_name = json!({"groups": [{"apikey": unique("k"), "resource": "/iot/json", "entity_type": "T",
                                      "attributes": [{"name": "a=b"}]}]});
    assert_error(send(post(bad_name)).await, 400, "WRONG_SYNTAX");
    let bad_exp = json!({"groups": [{"apikey": unique("k"), "resource": "/iot/json", "entity_type": "T",
                                     "entityNameExp": "id +"}]});
    assert_error(send(post(bad_exp)).await, 400, "INVALID_EXPRESSION");
    // Unknown group fields (such as the tutorials' `cbroker`) are accepted and dropped.
    let k = unique("k");
    let extra = json!({"groups": [{"apikey": k, "resource": "/iot/json", "entity_type": "T", "cbroker": "http://x"}]});
    assert_eq!(send(post(extra)).await.0, StatusCode::CREATED);
    let del = call(&e.agent, Method::DELETE, &format!("/iot/groups?resource=/iot/json&apikey={k}"), &svc, "/");
    assert_eq!(send(del).await.0, StatusCode::NO_CONTENT);
    let not_json = call(&e.agent, Method::POST, "/iot/groups", &svc, "/").body("{nope");
    assert_error(send(not_json).await, 400, "WRONG_SYNTAX");
    // A batch is all or nothing.
    let k = unique("k");
    let mixed = json!({"groups": [group(&k, "T"), {"apikey": unique("k"), "resource": "/iot/json"}]});
    assert_error(send(post(mixed)).await, 400, "MISSING_CONFIG_PARAMS");
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups", &svc, "/")).await;
    assert_eq!(body["count"], 0);
}

#[tokio::test]
async fn services_alias_uses_its_own_key() {
    let e = env().await;
    let svc = unique("s");
    let post = call(&e.agent, Method::POST, "/iot/services", &svc, "/a")
        .json(&json!({"services": [group(&unique("k"), "T")]}));
    assert_eq!(send(post).await.0, StatusCode::CREATED);
    let (st, body) = send(call(&e.agent, Method::GET, "/iot/services/", &svc, "/a")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["count"], 1);
    assert_eq!(body["services"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(body.get("groups").is_none());
}

#[tokio::test]
async fn group_paging_applies_only_to_every_subservice() {
    let e = env().await;
    let svc = unique("s");
    for (path, n) in [("/a", 3), ("/b", 2)] {
        let groups: Vec<Value> = (0..n).map(|_| group(&unique("k"), "T")).collect();
        let post = call(&e.agent, Method::POST, "/iot/groups", &svc, path).json(&json!({ "groups": groups }));
        assert_eq!(send(post).await.0, StatusCode::CREATED);
    }
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups?limit=1", &svc, "/a")).await;
    assert_eq!((body["count"].as_u64(), body["groups"].as_array().map(Vec::len)), (Some(3), Some(3)));
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups?limit=2&offset=1", &svc, "/*")).await;
    assert_eq!((body["count"].as_u64(), body["groups"].as_array().map(Vec::len)), (Some(5), Some(2)));
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/groups", &svc, "/*")).await;
    assert_eq!(body["groups"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn every_provisioning_route_requires_both_headers() {
    let e = env().await;
    let routes = [
        (Method::POST, "/iot/groups"),
        (Method::GET, "/iot/groups"),
        (Method::PUT, "/iot/groups?resource=r&apikey=k"),
        (Method::DELETE, "/iot/groups?resource=r&apikey=k"),
        (Method::GET, "/iot/services"),
        (Method::POST, "/iot/services"),
        (Method::PUT, "/iot/services?resource=r&apikey=k"),
        (Method::DELETE, "/iot/services?resource=r&apikey=k"),
        (Method::POST, "/iot/devices"),
        (Method::GET, "/iot/devices"),
        (Method::GET, "/iot/devices/d1"),
        (Method::PUT, "/iot/devices/d1"),
        (Method::DELETE, "/iot/devices/d1"),
        (Method::POST, "/iot/op/delete"),
    ];
    for (m, p) in routes {
        let rb = e.agent.client.request(m.clone(), format!("{}{p}", e.agent.north)).header("fiware-service", "x");
        let got = send(rb.body("{}")).await;
        assert_error(got.clone(), 400, "MISSING_HEADERS");
        assert!(got.1["message"].as_str().is_some_and(|m| m.contains("fiware-servicepath")), "{m} {p}");
    }
}

fn device(id: &str, apikey: &str) -> Value {
    json!({"device_id": id, "apikey": apikey, "entity_type": "Sensor", "transport": "HTTP",
           "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
           "static_attributes": [{"name": "floor", "type": "Number", "value": 3}]})
}

#[tokio::test]
async fn devices_are_provisioned_read_updated_and_deleted() {
    let e = env().await;
    let (svc, key) = (unique("Smart"), unique("k"));
    let post = call(&e.agent, Method::POST, "/iot/devices", &svc, "/p").json(&json!({"devices": [device("d1", &key)]}));
    assert_eq!(send(post).await, (StatusCode::CREATED, json!({})));
    // Provisioning creates no entity.
    let id = default_entity_id("d1", "Sensor");
    assert!(common::broker_entity(&e.broker.url, Some(&svc.to_lowercase()), &id).await.is_none());

    let (st, d) = send(call(&e.agent, Method::GET, "/iot/devices/d1", &svc, "/p")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((d["device_id"].as_str(), d["apikey"].as_str()), (Some("d1"), Some(key.as_str())));
    assert_eq!((d["service"].as_str(), d["service_path"].as_str()), (Some(svc.to_lowercase().as_str()), Some("/p")));
    assert_eq!(d["attributes"][0]["object_id"], "t");
    assert_eq!(d["static_attributes"][0]["value"], 3);
    assert!(d.get("registrationId").is_none());

    let dup = call(&e.agent, Method::POST, "/iot/devices/", &svc, "/p").json(&json!({"devices": [device("d1", &key)]}));
    assert_error(send(dup).await, 409, "DUPLICATE_DEVICE_ID");
    assert_error(send(call(&e.agent, Method::GET, "/iot/devices/nope", &svc, "/p")).await, 404, "DEVICE_NOT_FOUND");
    assert_error(send(call(&e.agent, Method::GET, "/iot/devices/d1", &svc, "/other")).await, 404, "DEVICE_NOT_FOUND");

    // Partial update; the entity gets its id and type upserted, nothing else.
    let put = call(&e.agent, Method::PUT, "/iot/devices/d1/", &svc, "/p").json(&json!({"timezone": "Europe/Madrid"}));
    assert_eq!(send(put).await.0, StatusCode::NO_CONTENT);
    let (_, d) = send(call(&e.agent, Method::GET, "/iot/devices/d1", &svc, "/p")).await;
    assert_eq!(d["timezone"], "Europe/Madrid");
    assert_eq!(d["attributes"][0]["name"], "temperature");
    let entity = common::broker_entity(&e.broker.url, Some(&svc.to_lowercase()), &id).await.expect("entity upserted");
    assert_eq!(entity["type"], "Sensor");
    assert!(entity.get("temperature").is_none() && entity.get("floor").is_none(), "{entity}");

    let put = |b: Value| call(&e.agent, Method::PUT, "/iot/devices/d1", &svc, "/p").json(&b);
    assert_error(send(put(json!({"device_id": "d2"}))).await, 400, "BAD_REQUEST");
    assert_error(send(put(json!({"entity_type": "Other"}))).await, 400, "BAD_REQUEST");
    assert_error(send(put(json!({"entity_name": "urn:ngsi-ld:X:1"}))).await, 400, "BAD_REQUEST");
    assert_error(send(put(json!({"lazy": [{"name": "l", "unit": "x"}]}))).await, 400, "WRONG_SYNTAX");
    let put_unknown = call(&e.agent, Method::PUT, "/iot/devices/nope", &svc, "/p").json(&json!({"timezone": "UTC"}));
    assert_error(send(put_unknown).await, 404, "DEVICE_NOT_FOUND");

    let del = call(&e.agent, Method::DELETE, "/iot/devices/d1", &svc, "/p");
    assert_eq!(send(del).await.0, StatusCode::NO_CONTENT);
    assert_error(send(call(&e.agent, Method::GET, "/iot/devices/d1", &svc, "/p")).await, 404, "DEVICE_NOT_FOUND");
    let del = call(&e.agent, Method::DELETE, "/iot/devices/d1", &svc, "/p");
    assert_error(send(del).await, 404, "DEVICE_NOT_FOUND");
}

#[tokio::test]
async fn device_bodies_are_validated() {
    let e = env().await;
    let svc = unique("s");
    let post = |b: Value| call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&b);
    assert_error(send(post(json!({"devices": [{"entity_type": "T"}]}))).await, 400, "MISSING_ATTRIBUTES");
    let cases = [
        json!({"devices": [{"device_id": "a", "attributes": [{"name": "t", "unknown": 1}]}]}),
        json!({"devices": [{"device_id": "a", "lazy": [{"name": "l", "expression": "x"}]}]}),
        json!({"devices": [{"device_id": "a", "commands": [{"name": "c", "mqtt": {"qos": "5"}}]}]}),
        json!({"devices": [{"device_id": "a", "attributes": [{"name": "bad;name"}]}]}),
        json!({"devices": [{"device_id": "a"}], "extra": true}),
        json!({"devices": "a"}),
    ];
    for c in cases {
        assert_error(send(post(c.clone())).await, 400, "WRONG_SYNTAX");
    }
    let bad_exp = json!({"devices": [{"device_id": "a", "attributes": [{"name": "t", "expression": "t * * 2"}]}]});
    assert_error(send(post(bad_exp)).await, 400, "INVALID_EXPRESSION");
    let bad_explicit = json!({"devices": [{"device_id": "a", "explicitAttrs": "['a',"}]});
    assert_error(send(post(bad_explicit)).await, 400, "INVALID_EXPRESSION");
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/")).await;
    assert_eq!(body, json!({"count": 0, "devices": []}));
}

#[tokio::test]
async fn device_listing_pages_with_the_total_count() {
    let e = env().await;
    let (svc, key) = (unique("s"), unique("k"));
    for (path, ids) in [("/a", vec!["d1", "d2", "d3"]), ("/b", vec!["d4"])] {
        let devices: Vec<Value> = ids.iter().map(|i| device(i, &key)).collect();
        let post = call(&e.agent, Method::POST, "/iot/devices", &svc, path).json(&json!({ "devices": devices }));
        assert_eq!(send(post).await.0, StatusCode::CREATED);
    }
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/devices?limit=2&offset=1", &svc, "/a")).await;
    assert_eq!(body["count"], 3);
    let ids: Vec<&str> =
        body["devices"].as_array().into_iter().flatten().filter_map(|d| d["device_id"].as_str()).collect();
    assert_eq!(ids, vec!["d2", "d3"]);
    let (_, body) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/*")).await;
    assert_eq!(body["count"], 4);
    assert_error(send(call(&e.agent, Method::GET, "/iot/devices?limit=x", &svc, "/a")).await, 400, "BAD_REQUEST");
}

#[tokio::test]
async fn op_delete_removes_the_existing_devices_and_reports_the_missing() {
    let e = env().await;
    let (svc, key) = (unique("s"), unique("k"));
    let devices = json!({"devices": [device("d1", &key), device("d2", &key), device("d3", &key)]});
    assert_eq!(
        send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&devices)).await.0,
        StatusCode::CREATED
    );
    let body = json!({"devices": [{"deviceId": "d1", "apikey": key}, {"deviceId": "ghost", "apikey": key},
                                  {"deviceId": "d2", "apikey": key}]});
    assert_error(
        send(call(&e.agent, Method::POST, "/iot/op/delete", &svc, "/").json(&body)).await,
        404,
        "DEVICE_NOT_FOUND",
    );
    let (_, list) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/")).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["devices"][0]["device_id"], "d3");
    let body = json!({"devices": [{"deviceId": "d3", "apikey": key}]});
    assert_eq!(
        send(call(&e.agent, Method::POST, "/iot/op/delete/", &svc, "/").json(&body)).await.0,
        StatusCode::NO_CONTENT
    );
    let body = json!({"devices": [{"apikey": key}]});
    assert_error(
        send(call(&e.agent, Method::POST, "/iot/op/delete", &svc, "/").json(&body)).await,
        400,
        "WRONG_SYNTAX",
    );
}

#[tokio::test]
async fn deleting_a_group_with_device_deletes_the_devices_of_its_subservice() {
    let e = env().await;
    let (svc, key) = (unique("s"), unique("k"));
    let g = json!({"groups": [group(&key, "T")]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/groups", &svc, "/a").json(&g)).await.0, StatusCode::CREATED);
    for (path, id, k) in [("/a", "d1", key.clone()), ("/a", "d2", unique("other")), ("/b", "d3", key.clone())] {
        let d = json!({"devices": [device(id, &k)]});
        assert_eq!(
            send(call(&e.agent, Method::POST, "/iot/devices", &svc, path).json(&d)).await.0,
            StatusCode::CREATED
        );
    }
    let del =
        call(&e.agent, Method::DELETE, &format!("/iot/groups?resource=/iot/json&apikey={key}&device=true"), &svc, "/a");
    assert_eq!(send(del).await.0, StatusCode::NO_CONTENT);
    let (_, a) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/a")).await;
    assert_eq!(a["count"], 0, "every device of /a is gone, whatever its API key: {a}");
    let (_, b) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/b")).await;
    assert_eq!(b["count"], 1);
}

/// The registrations of an entity type in a tenant, as the broker lists them.
async fn registrations(broker: &str, tenant: &str, entity_type: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{broker}/ngsi-ld/v1/csourceRegistrations?type={entity_type}"))
        .header("NGSILD-Tenant", tenant)
        .send()
        .await
        .expect("broker answers");
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.expect("a list")
}

async fn registration(broker: &str, tenant: &str, id: &str) -> Option<Value> {
    let r = reqwest::Client::new()
        .get(format!("{broker}/ngsi-ld/v1/csourceRegistrations/{}", common::urlencode(id)))
        .header("NGSILD-Tenant", tenant)
        .send()
        .await
        .expect("broker answers");
    if r.status() == 404 {
        return None;
    }
    assert_eq!(r.status(), 200);
    Some(r.json().await.expect("JSON"))
}

#[tokio::test]
async fn commands_register_the_agent_as_an_exclusive_context_source() {
    let e = env().await;
    let (svc, key, ty) = (unique("s"), unique("k"), unique("Robot"));
    let tenant = svc.to_lowercase();
    let d = json!({"devices": [{"device_id": "r2d2", "apikey": key, "entity_type": ty,
        "commands": [{"name": "position", "type": "command"}],
        "lazy": [{"name": "battery", "type": "Number"}]}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await.0, StatusCode::CREATED);

    let regs = registrations(&e.broker.url, &tenant, &ty).await;
    assert_eq!(regs.len(), 1, "{regs:?}");
    let id = regs[0]["id"].as_str().expect("registration id").to_owned();
    let reg = registration(&e.broker.url, &tenant, &id).await.expect("registration stored");
    assert_eq!(reg["endpoint"], e.agent.settings.provider_url);
    assert_eq!(reg["mode"], "exclusive");
    assert_eq!(reg["operations"], json!(["updateOps", "retrieveOps"]));
    let info = &reg["information"][0];
    assert_eq!(info["entities"][0]["id"], default_entity_id("r2d2", &ty));
    assert_eq!(info["entities"][0]["type"], ty);
    let mut names: Vec<&str> =
        info["propertyNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    names.sort();
    assert_eq!(names, vec!["battery", "position"]);

    // Changing the commands replaces the registration.
    let put = call(&e.agent, Method::PUT, "/iot/devices/r2d2", &svc, "/").json(&json!({"lazy": []}));
    assert_eq!(send(put).await.0, StatusCode::NO_CONTENT);
    assert!(registration(&e.broker.url, &tenant, &id).await.is_none(), "the old registration is removed");
    let regs = registrations(&e.broker.url, &tenant, &ty).await;
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["operations"], json!(["updateOps"]));
    let new_id = regs[0]["id"].as_str().expect("id").to_owned();

    // Deleting the device removes it.
    assert_eq!(send(call(&e.agent, Method::DELETE, "/iot/devices/r2d2", &svc, "/")).await.0, StatusCode::NO_CONTENT);
    assert!(registration(&e.broker.url, &tenant, &new_id).await.is_none());
}

#[tokio::test]
async fn group_commands_are_registered_for_its_devices_and_devices_without_any_are_not() {
    let e = env().await;
    let (svc, key, ty) = (unique("s"), unique("k"), unique("Lamp"));
    let tenant = svc.to_lowercase();
    let g = json!({"groups": [{"apikey": key, "resource": "/iot/json", "entity_type": ty,
                               "commands": [{"name": "switch", "type": "command"}]}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/groups", &svc, "/").json(&g)).await.0, StatusCode::CREATED);
    let d = json!({"devices": [{"device_id": "l1", "apikey": key}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await.0, StatusCode::CREATED);
    let regs = registrations(&e.broker.url, &tenant, &ty).await;
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["information"][0]["entities"][0]["id"], default_entity_id("l1", &ty));
    assert_eq!(regs[0]["information"][0]["propertyNames"], json!(["switch"]));

    let other = unique("Plain");
    let d = json!({"devices": [{"device_id": "p1", "apikey": unique("k"), "entity_type": other}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await.0, StatusCode::CREATED);
    assert!(registrations(&e.broker.url, &tenant, &other).await.is_empty());
}

#[tokio::test]
async fn a_broker_refusal_leaves_no_device_behind() {
    let broker = common::spawn_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A broker that is not there: the registration cannot be made.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let mut settings = common::agent_settings(&broker.url, dir.path());
    settings.cb_url = format!("http://127.0.0.1:{port}");
    let agent = common::spawn_agent(settings).await;
    let svc = unique("s");
    let d = json!({"devices": [{"device_id": "c1", "entity_type": "T", "commands": [{"name": "go"}]},
                               {"device_id": "c2", "entity_type": "T"}]});
    let (st, body) = send(call(&agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await;
    assert!(st.is_server_error(), "{st} {body}");
    assert_eq!(body["name"], "ENTITY_GENERIC_ERROR");
    let (_, list) = send(call(&agent, Method::GET, "/iot/devices", &svc, "/")).await;
    assert_eq!(list["count"], 0, "the batch is refused as a whole");
    // And the agent is not ready.
    let r = agent.client.get(format!("{}/ready", agent.north)).send().await.expect("answer");
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn provisioning_survives_a_restart() {
    let broker = common::spawn_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (svc, key) = (unique("s"), unique("k"));
    {
        let agent = common::spawn_agent(common::agent_settings(&broker.url, dir.path())).await;
        let g = json!({"groups": [group(&key, "T")]});
        assert_eq!(send(call(&agent, Method::POST, "/iot/groups", &svc, "/").json(&g)).await.0, StatusCode::CREATED);
        let d = json!({"devices": [device("d1", &key)]});
        assert_eq!(send(call(&agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await.0, StatusCode::CREATED);
        agent.stop().await;
    }
    // The first agent releases its registry once its last task has ended.
    let settings = common::agent_settings(&broker.url, dir.path());
    let app = common::rebuild(&settings).await;
    let agent = common::start_app(app);
    let (_, groups) = send(call(&agent, Method::GET, "/iot/groups", &svc, "/")).await;
    assert_eq!(groups["groups"][0]["apikey"], key);
    let (st, d) = send(call(&agent, Method::GET, "/iot/devices/d1", &svc, "/")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d["attributes"][0]["name"], "temperature");
}

#[tokio::test]
async fn about_version_ready_and_metrics() {
    let e = env().await;
    for p in ["/iot/about", "/version"] {
        let r = e.agent.client.get(format!("{}{p}", e.agent.north)).send().await.expect("answer");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("JSON");
        assert!(body["libVersion"].is_string() && body["version"].is_string(), "{body}");
        let port = e.agent.north.rsplit(':').next().and_then(|p| p.parse::<u64>().ok());
        assert_eq!(body["port"].as_u64(), port);
        assert_eq!(body["baseRoot"], "/");
    }
    let r = e.agent.client.get(format!("{}/ready", e.agent.north)).send().await.expect("answer");
    assert_eq!(r.status(), 200);

    let r = e.agent.client.get(format!("{}/metrics", e.agent.north)).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/plain")));
    let text = r.text().await.expect("text");
    assert!(text.contains("# TYPE iota_messages_received counter"), "{text}");
    let r = e
        .agent
        .client
        .get(format!("{}/metrics", e.agent.north))
        .header("Accept", "application/openmetrics-text")
        .send()
        .await
        .expect("answer");
    assert!(r.text().await.expect("text").ends_with("# EOF\n"));
    let r = e
        .agent
        .client
        .get(format!("{}/metrics", e.agent.north))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn the_log_level_is_changed_at_run_time() {
    let e = env().await;
    let url = format!("{}/admin/log", e.agent.north);
    let r = e.agent.client.put(format!("{url}?level=debug")).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    let body: Value = e.agent.client.get(&url).send().await.expect("answer").json().await.expect("JSON");
    assert_eq!(body, json!({"level": "DEBUG"}));
    let r = e.agent.client.put(format!("{url}?level=WARNING")).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    let body: Value = e.agent.client.get(&url).send().await.expect("answer").json().await.expect("JSON");
    assert_eq!(body["level"], "WARNING");
    let r = e.agent.client.put(format!("{url}?level=loud")).send().await.expect("answer");
    assert_eq!(r.status(), 400);
    let r = e.agent.client.put(&url).send().await.expect("answer");
    assert_eq!(r.status(), 400);
    let body: Value = e.agent.client.get(&url).send().await.expect("answer").json().await.expect("JSON");
    assert_eq!(body["level"], "WARNING", "refused changes leave the level alone");
}

#[tokio::test]
async fn a_group_cb_host_receives_the_registrations_of_its_devices() {
    let e = env().await;
    let other = common::spawn_broker().await;
    let (svc, key, ty) = (unique("s"), unique("k"), unique("Valve"));
    let tenant = svc.to_lowercase();
    let g = json!({"groups": [{"apikey": key, "resource": "/iot/json", "entity_type": ty, "cbHost": other.url,
                               "commands": [{"name": "open"}]}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/groups", &svc, "/").json(&g)).await.0, StatusCode::CREATED);
    let d = json!({"devices": [{"device_id": "v1", "apikey": key}]});
    assert_eq!(send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await.0, StatusCode::CREATED);
    assert_eq!(registrations(&other.url, &tenant, &ty).await.len(), 1, "the group's broker has it");
    assert!(registrations(&e.broker.url, &tenant, &ty).await.is_empty(), "the agent's broker does not");
    assert_eq!(send(call(&e.agent, Method::DELETE, "/iot/devices/v1", &svc, "/")).await.0, StatusCode::NO_CONTENT);
    assert!(registrations(&other.url, &tenant, &ty).await.is_empty(), "deleting the device unregisters it there");
}

#[tokio::test]
async fn a_device_twice_in_one_batch_is_a_duplicate() {
    let e = env().await;
    let (svc, key) = (unique("s"), unique("k"));
    let d = json!({"devices": [{"device_id": "x", "apikey": key, "commands": [{"name": "go"}]},
                               {"device_id": "x", "apikey": key, "commands": [{"name": "go"}]}]});
    assert_error(
        send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await,
        409,
        "DUPLICATE_DEVICE_ID",
    );
    let (_, list) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/")).await;
    assert_eq!(list["count"], 0);
}

#[tokio::test]
async fn bad_broker_or_provider_urls_fail_the_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::agent_settings("orion:1026", dir.path());
    let err = orbis_agent::startup::Application::build(settings.clone()).await.err().expect("refused");
    assert!(err.contains("orion:1026"), "{err}");
    settings.cb_url = "http://127.0.0.1:1".into();
    settings.provider_url = "iota:4041".into();
    assert!(orbis_agent::startup::Application::build(settings).await.is_err());
}

#[tokio::test]
async fn a_refused_registration_rolls_back_the_ones_made_for_the_batch() {
    let e = env().await;
    let (svc, ty) = (unique("s"), unique("Door"));
    let tenant = svc.to_lowercase();
    let same = format!("urn:ngsi-ld:{ty}:shared");
    // Both devices claim the same command of the same entity: the broker refuses the second
    // exclusive registration.
    let d = json!({"devices": [
        {"device_id": "a", "entity_name": same, "entity_type": ty, "commands": [{"name": "lock"}]},
        {"device_id": "b", "entity_name": same, "entity_type": ty, "commands": [{"name": "lock"}]}]});
    let got = send(call(&e.agent, Method::POST, "/iot/devices", &svc, "/").json(&d)).await;
    assert_error(got, 409, "ENTITY_GENERIC_ERROR");
    assert!(registrations(&e.broker.url, &tenant, &ty).await.is_empty(), "the first registration is undone");
    let (_, list) = send(call(&e.agent, Method::GET, "/iot/devices", &svc, "/")).await;
    assert_eq!(list["count"], 0);
}
