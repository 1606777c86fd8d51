//! Distributed operations through context source registrations, black-box: the IoT agent
//! command pattern against a recording stub, retrieval and query merged from a second broker,
//! loop prevention with `Via`, time-outs, `local=true` and deletion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// One request a stub context source received.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: std::collections::HashMap<String, String>,
    body: Value,
}

/// A context source that records requests and answers with a fixed status and body, after an
/// optional delay.
struct Stub {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

async fn stub(status: u16, answer: Value, delay: Duration) -> Stub {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let g = got.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (g, answer) = (g.clone(), answer.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (g, answer) = (g.clone(), answer.clone());
            async move {
                g.lock().push(Got {
                    method: req.method().to_string(),
                    path: req.uri().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                tokio::time::sleep(delay).await;
                let mut r = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                if answer.is_null() { r.finish() } else { r.content_type("application/json").body(answer.to_string()) }
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Stub { url: format!("http://127.0.0.1:{port}"), got }
}

async fn register(app: &TestApp, body: Value) -> String {
    let r = app.post_json("/ngsi-ld/v1/csourceRegistrations", &body).await;
    assert_eq!(r.status(), 201, "registration refused: {:?}", r.text().await);
    r.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

/// The device entity as an IoT agent provisions it: measures and command status, not the
/// command itself (which the agent registers exclusively).
fn robot() -> Value {
    json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot",
           "position_status": {"type": "Property", "value": "UNKNOWN"},
           "battery": {"type": "Property", "value": 80}})
}

/// The IoT agent pattern (FIWARE iotagent-node-lib, NGSI-LD mode): the agent registers itself
/// exclusively for a command attribute with updateOps; updating that attribute on the broker is
/// forwarded to the agent, which answers 204; the broker does not store it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_attribute_updates_go_to_the_registered_agent() {
    let app = spawn_app().await;
    let agent = stub(204, Value::Null, Duration::ZERO).await;
    app.create(robot()).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": agent.url, "mode": "exclusive",
               "operations": ["updateOps"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["position"]}]}),
    )
    .await;
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/position",
            &json!({"type": "Property", "value": [28, -104, 23]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    {
        let got = agent.got.lock();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].method, "PATCH");
        assert_eq!(got[0].path, "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/position");
        assert_eq!(got[0].body["value"], json!([28, -104, 23]));
        assert!(got[0].headers["via"].contains("orbis-"), "{:?}", got[0].headers);
    }
    // A request carrying this broker's own Via came round a loop: 508 Loop Detected (§6.3.18).
    let via = agent.got.lock()[0].headers["via"].clone();
    let r =
        app.client.get(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2")).header("Via", via).send().await.unwrap();
    crate::helpers::assert_problem(r, 508, "LoopDetected").await;
    // The broker does not store the command: it belongs to the agent.
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.json().await.unwrap();
    assert!(e.get("position").is_none(), "{e}");

    // PATCH /attrs splits: the command to the agent, the rest stays here.
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs",
            &json!({"position": {"type": "Property", "value": [1, 2, 3]}, "battery": {"type": "Property", "value": 70}}),
        )
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    {
        let got = agent.got.lock();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].path, "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs");
        assert_eq!(got[1].body, json!({"position": {"type": "Property", "value": [1, 2, 3]}}));
    }
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.json().await.unwrap();
    assert_eq!(e["battery"]["value"], 70);
    // local=true: not forwarded; the broker has no such attribute.
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/position?local=true",
            &json!({"type": "Property", "value": [9, 9, 9]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(agent.got.lock().len(), 2);
}

/// An agent that refuses or does not answer: the caller gets an error in time, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_slow_source_does_not_hang_the_caller() {
    let app = spawn_app().await;
    app.create(robot()).await;
    let refusing = stub(500, json!({"detail": "device offline"}), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": refusing.url, "mode": "exclusive",
               "operations": ["updateOps"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}], "propertyNames": ["position"]}]}),
    )
    .await;
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/position",
            &json!({"type": "Property", "value": 1}),
        )
        .await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("device offline"), "{p}");

    // A slow inclusive source with a 300 ms time-out: the retrieval answers with local data.
    let slow = stub(200, json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}), Duration::from_secs(5)).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": slow.url, "management": {"timeout": 300},
               "information": [{"entities": [{"type": "Robot"}], "propertyNames": ["temperature"]}]}),
    )
    .await;
    let t = Instant::now();
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2").await;
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["battery"]["value"], 80);
}

/// Retrieve and query merge a second broker's data (a federation): the registration says
/// which attributes it provides; the `Via` header stops a loop between two brokers registered
/// on each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_and_query_merge_a_second_broker_without_looping() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    a.create(json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "name": {"type": "Property", "value": "lab"}})).await;
    b.create(json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temperature": {"type": "Property", "value": 21.5}}))
        .await;
    b.create(json!({"id": "urn:ngsi-ld:Room:2", "type": "Room", "temperature": {"type": "Property", "value": 19}}))
        .await;
    register(
        &a,
        json!({"type": "ContextSourceRegistration", "endpoint": b.address,
               "information": [{"entities": [{"type": "Room"}], "propertyNames": ["temperature"]}]}),
    )
    .await;
    // And B points back at A: without loop prevention this would recurse.
    register(
        &b,
        json!({"type": "ContextSourceRegistration", "endpoint": a.address,
               "information": [{"entities": [{"type": "Room"}]}]}),
    )
    .await;
    let e: Value = a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1").await.json().await.unwrap();
    assert_eq!(e["name"]["value"], "lab");
    assert_eq!(e["temperature"]["value"], 21.5);
    let local: Value = a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1?local=true").await.json().await.unwrap();
    assert!(local.get("temperature").is_none(), "{local}");

    let rooms: Vec<Value> = a.get("/ngsi-ld/v1/entities?type=Room").await.json().await.unwrap();
    let mut ids: Vec<&str> = rooms.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:2"]);
    let r1 = rooms.iter().find(|r| r["id"] == "urn:ngsi-ld:Room:1").unwrap();
    assert_eq!(r1["temperature"]["value"], 21.5);
    assert_eq!(r1["name"]["value"], "lab");
    // An entity only the source has is found through the broker too.
    let e: Value = a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:2").await.json().await.unwrap();
    assert_eq!(e["temperature"]["value"], 19);
    let r = a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:2?local=true").await;
    assert_eq!(r.status(), 404);
}

/// Delete Entity goes to the sources registered for the entity as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_forwarded() {
    let app = spawn_app().await;
    let src = stub(204, Value::Null, Duration::ZERO).await;
    app.create(robot()).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "inclusive",
               "operations": ["deleteEntity"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}]}]}),
    )
    .await;
    assert_eq!(app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2").await.status(), 204);
    let got = src.got.lock().clone();
    assert!(
        got.iter().any(|g| g.method == "DELETE" && g.path == "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2"),
        "{got:?}"
    );
}

/// Create, append, merge, replace and attribute deletion send the registered attributes to an
/// exclusive source; the broker keeps the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carrying_registered_attributes_go_to_the_source() {
    let app = spawn_app().await;
    let src = stub(204, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["createEntity", "appendAttrs", "mergeEntity", "replaceEntity", "deleteAttrs"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:c3po", "type": "Robot"}],
                                "propertyNames": ["position"]}]}),
    )
    .await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:ngsi-ld:Robot:c3po", "type": "Robot",
                    "position": {"type": "Property", "value": 1}, "battery": {"type": "Property", "value": 9}}),
        )
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po?local=true").await.json().await.unwrap();
    assert!(e.get("position").is_none(), "the source holds position: {e}");
    assert_eq!(e["battery"]["value"], 9);
    let r = app
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po/attrs",
            &json!({"position": {"type": "Property", "value": 2}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po",
            &json!({"position": {"type": "Property", "value": 3}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po/attrs/position").await.status(), 204);
    let got = src.got.lock().clone();
    let seen: Vec<(String, String)> = got.iter().map(|g| (g.method.clone(), g.path.clone())).collect();
    assert_eq!(
        seen,
        vec![
            ("POST".to_owned(), "/ngsi-ld/v1/entities".to_owned()),
            ("POST".to_owned(), "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po/attrs".to_owned()),
            ("PATCH".to_owned(), "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po".to_owned()),
            ("DELETE".to_owned(), "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po/attrs/position".to_owned()),
        ]
    );
    assert_eq!(
        got[0].body,
        json!({"id": "urn:ngsi-ld:Robot:c3po", "type": "Robot", "position": {"type": "Property", "value": 1}})
    );
    assert_eq!(got[2].body, json!({"position": {"type": "Property", "value": 3}}));
}

fn vehicle(n: u32, speed: i64) -> Value {
    json!({"id": format!("urn:ngsi-ld:Vehicle:{n}"), "type": "Vehicle",
           "speed": {"type": "Property", "value": speed}, "brand": {"type": "Property", "value": "Mercedes"}})
}

/// The requests a stub got, as (method, path).
fn seen(s: &Stub) -> Vec<(String, String)> {
    s.got.lock().iter().map(|g| (g.method.clone(), g.path.clone())).collect()
}

/// Batch create, upsert, update and merge send an exclusive source one batch request each,
/// holding the registered attribute of the registered entities with their id and type; the
/// broker keeps the rest, and entities the registration does not name are not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_writes_send_registered_attributes_to_an_exclusive_source() {
    let app = spawn_app().await;
    let src = stub(204, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["createBatch", "upsertBatch", "updateBatch", "mergeBatch"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"},
                                             {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle"}],
                                "propertyNames": ["speed"]}]}),
    )
    .await;
    let r = app
        .post_json("/ngsi-ld/v1/entityOperations/create", &json!([vehicle(1, 10), vehicle(2, 20), vehicle(3, 30)]))
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    {
        let got = src.got.lock();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/ngsi-ld/v1/entityOperations/create"));
        assert_eq!(
            got[0].body,
            json!([{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": {"type": "Property", "value": 10}},
                   {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle", "speed": {"type": "Property", "value": 20}}])
        );
    }
    // The broker keeps what the source did not take: the brand, and all of vehicle 3.
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.json().await.unwrap();
    assert!(e.get("speed").is_none(), "the source holds speed: {e}");
    assert_eq!(e["brand"]["value"], "Mercedes");
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:3?local=true").await.json().await.unwrap();
    assert_eq!(e["speed"]["value"], 30);

    // Update: only vehicle 1's speed goes; an element without a registered attribute is not sent.
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/update?options=noOverwrite",
            &json!([{"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 11}},
                    {"id": "urn:ngsi-ld:Vehicle:2", "colour": {"type": "Property", "value": "red"}}]),
        )
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    // Upsert with update, and merge: the entity type comes from the broker when not given.
    let r = app.post_json("/ngsi-ld/v1/entityOperations/upsert?options=update", &json!([vehicle(2, 22)])).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/merge",
            &json!([{"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 12}}]),
        )
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let s = seen(&src);
    assert_eq!(
        s[1..].iter().map(|(m, p)| format!("{m} {p}")).collect::<Vec<_>>(),
        [
            "POST /ngsi-ld/v1/entityOperations/update?options=noOverwrite",
            "POST /ngsi-ld/v1/entityOperations/upsert?options=update",
            "POST /ngsi-ld/v1/entityOperations/merge",
        ]
    );
    let got = src.got.lock().clone();
    assert_eq!(got[1].body, json!([{"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 11}}]));
    assert_eq!(got[3].body, json!([{"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 12}}]));
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2?local=true").await.json().await.unwrap();
    assert!(e.get("speed").is_none(), "{e}");
    assert_eq!(e["brand"]["value"], "Mercedes");
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.json().await.unwrap();
    assert!(e.get("speed").is_none(), "{e}");

    // local=true: nothing is forwarded.
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/update?local=true",
            &json!([{"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 13}}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(src.got.lock().len(), 4);
}

/// A redirect registration takes whole entities: the broker stores none of them, and the batch
/// answers as if it had (201 with the ids for create).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_create_on_a_redirect_source_stores_nothing_here() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "redirect",
               "operations": ["createBatch", "updateBatch"],
               "information": [{"entities": [{"idPattern": "urn:ngsi-ld:Vehicle:.*", "type": "Vehicle"}]}]}),
    )
    .await;
    let r = app.post_json("/ngsi-ld/v1/entityOperations/create", &json!([vehicle(1, 10), vehicle(2, 20)])).await;
    assert_eq!(r.status(), 201);
    let ids: Value = r.json().await.unwrap();
    assert_eq!(ids, json!(["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]));
    let got = src.got.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, json!([vehicle(1, 10), vehicle(2, 20)]));
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 404);
    // An update of entities the broker does not hold, scope included, is the source's alone.
    let update = json!([{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "scope": "/Madrid",
                         "speed": {"type": "Property", "value": 11}}]);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/update", &update).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(src.got.lock()[1].body, update);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 404);
}

/// A source's refusal is the error of the entities it was sent: its 207 names which; a failed
/// request refuses them all. The other entities succeed: 207 for the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_refusing_batch_entities_makes_them_errors_in_a_207() {
    let app = spawn_app().await;
    let partial = stub(
        207,
        json!({"success": ["urn:ngsi-ld:Vehicle:1"],
               "errors": [{"entityId": "urn:ngsi-ld:Vehicle:2",
                           "error": {"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
                                     "title": "exists", "status": 409, "detail": "vehicle 2 exists there"}}]}),
        Duration::ZERO,
    )
    .await;
    let down = stub(500, json!({"detail": "source broken"}), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": partial.url, "operations": ["createBatch"],
               "information": [{"entities": [{"idPattern": "urn:ngsi-ld:Vehicle:[12]", "type": "Vehicle"}]}]}),
    )
    .await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": down.url, "operations": ["createBatch"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:3", "type": "Vehicle"}]}]}),
    )
    .await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/create",
            &json!([vehicle(1, 1), vehicle(2, 2), vehicle(3, 3), vehicle(4, 4)]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    let mut success: Vec<&str> = out["success"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    success.sort();
    assert_eq!(success, ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:4"], "{out}");
    let errors = out["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{out}");
    let e2 = errors.iter().find(|e| e["entityId"] == "urn:ngsi-ld:Vehicle:2").unwrap();
    assert!(e2["error"]["detail"].as_str().unwrap().contains("vehicle 2 exists there"), "{out}");
    assert_eq!(e2["error"]["status"], 409, "{out}");
    let e3 = errors.iter().find(|e| e["entityId"] == "urn:ngsi-ld:Vehicle:3").unwrap();
    assert!(e3["error"]["detail"].as_str().unwrap().contains("source broken"), "{out}");
    // Inclusive sources: the broker keeps a copy of what they accepted, nothing of what they refused.
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 200);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2?local=true").await.status(), 404);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:3?local=true").await.status(), 404);
    assert_eq!(partial.got.lock()[0].body.as_array().unwrap().len(), 2);
}

/// Batch upsert and delete through a second broker registered inclusively: both brokers hold
/// the entities, and deleting removes them from both; an entity only the source holds counts
/// as deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_upsert_and_delete_reach_a_second_broker() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    register(
        &a,
        json!({"type": "ContextSourceRegistration", "endpoint": b.address,
               "operations": ["upsertBatch", "deleteBatch"],
               "information": [{"entities": [{"type": "Vehicle"}]}]}),
    )
    .await;
    let r = a.post_json("/ngsi-ld/v1/entityOperations/upsert", &json!([vehicle(1, 10), vehicle(2, 20)])).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    for app in [&a, &b] {
        let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2?local=true").await.json().await.unwrap();
        assert_eq!(e["speed"]["value"], 20, "{e}");
    }
    b.create(vehicle(5, 50)).await;
    let r = a
        .post_json(
            "/ngsi-ld/v1/entityOperations/delete",
            &json!(["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:5", "urn:ngsi-ld:Vehicle:9"]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:5"]), "{out}");
    assert_eq!(out["errors"][0]["entityId"], "urn:ngsi-ld:Vehicle:9", "{out}");
    assert_eq!(out["errors"][0]["error"]["status"], 404, "{out}");
    for id in ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:5"] {
        for app in [&a, &b] {
            assert_eq!(app.get(&format!("/ngsi-ld/v1/entities/{id}?local=true")).await.status(), 404);
        }
    }
    assert_eq!(b.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2").await.status(), 200);
}

/// An exclusive source that refuses a batch delete makes it that entity's error; the broker
/// still deletes its own copy (each part goes on its own, §5.6.6.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_delete_refused_by_an_exclusive_source_is_that_entitys_error() {
    let app = spawn_app().await;
    let src = stub(503, json!({"detail": "maintenance"}), Duration::ZERO).await;
    app.create(vehicle(1, 1)).await;
    app.create(vehicle(2, 2)).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["deleteBatch"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}],
                                "propertyNames": ["fuel"]}]}),
    )
    .await;
    let r = app
        .post_json("/ngsi-ld/v1/entityOperations/delete", &json!(["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]))
        .await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:ngsi-ld:Vehicle:2"]), "{out}");
    assert_eq!(out["errors"][0]["entityId"], "urn:ngsi-ld:Vehicle:1");
    assert!(out["errors"][0]["error"]["detail"].as_str().unwrap().contains("maintenance"), "{out}");
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 404);
    assert_eq!(seen(&src), [("POST".to_owned(), "/ngsi-ld/v1/entityOperations/delete".to_owned())]);
    assert_eq!(src.got.lock()[0].body, json!(["urn:ngsi-ld:Vehicle:1"]));
}

/// A distributed query reaches the source with the ids as Orion-LD writes them (`urn:...`, not
/// `urn%3A...`), whatever escaping the client used; the source's entities join the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_forwarded_with_plain_ids() {
    let app = spawn_app().await;
    let src = stub(200, json!([vehicle(7, 70)]), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "operations": ["queryEntity"],
               "information": [{"entities": [{"type": "Vehicle"}]}]}),
    )
    .await;
    let out: Vec<Value> =
        app.get("/ngsi-ld/v1/entities?id=urn%3Angsi-ld%3AVehicle%3A7&type=Vehicle").await.json().await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["speed"]["value"], 70);
    assert_eq!(
        seen(&src),
        [("GET".to_owned(), "/ngsi-ld/v1/entities?id=urn:ngsi-ld:Vehicle:7&type=Vehicle".to_owned())]
    );
}

/// A malformed entity is refused (400) before any context source sees it, alone or in a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entities_are_not_forwarded() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "operations": ["createEntity", "createBatch"],
               "information": [{"entities": [{"type": "Vehicle"}]}]}),
    )
    .await;
    let bad = json!({"id": "urn:ngsi-ld:Vehicle:bad", "type": "Vehicle", "speed": {"type": "Property"}});
    let r = app.post_json("/ngsi-ld/v1/entities", &bad).await;
    assert_eq!(r.status(), 400);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/create", &json!([bad, vehicle(1, 10)])).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:ngsi-ld:Vehicle:1"]), "{out}");
    assert_eq!(out["errors"][0]["entityId"], "urn:ngsi-ld:Vehicle:bad", "{out}");
    assert_eq!(out["errors"][0]["error"]["status"], 400, "{out}");
    let got = src.got.lock().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, json!([vehicle(1, 10)]));
}

/// A distributed create whose parts fail on their own answers 207 with a BatchOperationResult
/// naming each failure (the source's 409 kept); one that fails in its only part answers that
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_failed_distributed_create_answers_207() {
    let app = spawn_app().await;
    let exists = stub(
        409,
        json!({"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists", "detail": "taken"}),
        Duration::ZERO,
    )
    .await;
    let accepts = stub(201, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": exists.url, "operations": ["createEntity"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}]}]}),
    )
    .await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": accepts.url, "operations": ["createEntity"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle"}]}]}),
    )
    .await;
    // The source has it, the broker creates it: 207, one error (the source's 409).
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle(1, 10)).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:ngsi-ld:Vehicle:1"]), "{out}");
    assert_eq!(out["errors"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["errors"][0]["entityId"], "urn:ngsi-ld:Vehicle:1");
    assert_eq!(out["errors"][0]["error"]["status"], 409, "{out}");
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 200);
    // Again: both the broker and the source have it: two errors, no success.
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle(1, 10)).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!([]), "{out}");
    let statuses: Vec<&Value> = out["errors"].as_array().unwrap().iter().map(|e| &e["error"]["status"]).collect();
    assert_eq!(statuses, [409, 409], "{out}");
    // The broker has it, the source creates it: 207 with the broker's 409.
    app.post_json("/ngsi-ld/v1/entities?local=true", &vehicle(2, 20)).await;
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle(2, 20)).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:ngsi-ld:Vehicle:2"]), "{out}");
    assert_eq!(out["errors"][0]["error"]["status"], 409, "{out}");
    assert_eq!(accepts.got.lock().len(), 1);
    // All went well: 201.
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle(3, 30)).await;
    assert_eq!(r.status(), 201);
}

/// A source answering 207 to a forwarded append did not take everything: what its UpdateResult
/// does not confirm is reported not updated (207), and the query options reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_partial_answer_to_an_append_is_a_207() {
    let app = spawn_app().await;
    app.create(robot()).await;
    let silent = stub(207, Value::Null, Duration::ZERO).await;
    let partial = stub(
        207,
        json!({"updated": ["mode"], "notUpdated": [{"attributeName": "speed", "reason": "speed exists"}]}),
        Duration::ZERO,
    )
    .await;
    for (src, attrs) in [(&silent, json!(["position"])), (&partial, json!(["mode", "speed"]))] {
        register(
            &app,
            json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
                   "operations": ["appendAttrs"],
                   "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                    "propertyNames": attrs}]}),
        )
        .await;
    }
    let r = app
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs?options=noOverwrite",
            &json!({"position": {"type": "Property", "value": 1}, "mode": {"type": "Property", "value": "auto"},
                    "speed": {"type": "Property", "value": 2}, "battery": {"type": "Property", "value": 50}}),
        )
        .await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    let mut not: Vec<&str> =
        out["notUpdated"].as_array().unwrap().iter().map(|e| e["attributeName"].as_str().unwrap()).collect();
    not.sort();
    // battery exists here and noOverwrite keeps it: not updated, by the broker.
    assert_eq!(not, ["battery", "position", "speed"], "{out}");
    assert_eq!(out["updated"], json!(["mode"]), "{out}");
    assert_eq!(seen(&silent)[0].1, "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs?options=noOverwrite");
}

/// Purge Entities goes to the sources registered for `purgeEntity` on the type asked for, with
/// the client's query: a second broker loses the matching entities too; a source registered
/// for another type is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_reaches_the_sources_of_the_type() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let other = stub(204, Value::Null, Duration::ZERO).await;
    register(
        &a,
        json!({"type": "ContextSourceRegistration", "endpoint": b.address, "operations": ["purgeEntity"],
               "information": [{"entities": [{"type": "Vehicle"}]}]}),
    )
    .await;
    register(
        &a,
        json!({"type": "ContextSourceRegistration", "endpoint": other.url, "operations": ["purgeEntity"],
               "information": [{"entities": [{"type": "Room"}]}]}),
    )
    .await;
    a.create(vehicle(1, 10)).await;
    b.create(vehicle(2, 20)).await;
    b.create(json!({"id": "urn:ngsi-ld:Room:1", "type": "Room"})).await;
    assert_eq!(a.delete("/ngsi-ld/v1/entities?type=Vehicle").await.status(), 204);
    assert_eq!(a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true").await.status(), 404);
    assert_eq!(b.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2").await.status(), 404);
    assert_eq!(b.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1").await.status(), 200);
    assert!(other.got.lock().is_empty());
    // local=true keeps the purge here.
    b.create(vehicle(3, 30)).await;
    assert_eq!(a.delete("/ngsi-ld/v1/entities?type=Vehicle&local=true").await.status(), 204);
    assert_eq!(b.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:3").await.status(), 200);
}

/// A source registered only for queries is asked for an entity being retrieved with a query
/// for its id: GET /entities?id=…&type=… (`queryEntity`) or POST /entityOperations/query
/// (`queryBatch`); the entity with that id in its answer joins the broker's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_asks_query_only_sources_with_a_query() {
    let app = spawn_app().await;
    let by_get = stub(200, json!([vehicle(6, 60), vehicle(7, 70)]), Duration::ZERO).await;
    let by_post = stub(
        200,
        json!([{"id": "urn:ngsi-ld:Vehicle:7", "type": "Vehicle", "colour": {"type": "Property", "value": "red"}}]),
        Duration::ZERO,
    )
    .await;
    for (src, op) in [(&by_get, "queryEntity"), (&by_post, "queryBatch")] {
        register(
            &app,
            json!({"type": "ContextSourceRegistration", "endpoint": src.url, "operations": [op],
                   "information": [{"entities": [{"type": "Vehicle"}]}]}),
        )
        .await;
    }
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:7").await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["speed"]["value"], 70, "{e}");
    assert_eq!(e["colour"]["value"], "red", "{e}");
    assert_eq!(
        seen(&by_get),
        [("GET".to_owned(), "/ngsi-ld/v1/entities?id=urn:ngsi-ld:Vehicle:7&type=Vehicle".to_owned())]
    );
    let got = by_post.got.lock().clone();
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/ngsi-ld/v1/entityOperations/query"));
    assert_eq!(got[0].body, json!({"type": "Query", "entities": [{"id": "urn:ngsi-ld:Vehicle:7", "type": "Vehicle"}]}));
}

/// `POST /entityOperations/query` goes to the sources registered for `queryBatch` as that POST
/// (not to those registered for `queryEntity` only, and not with local=true); their entities
/// join the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_batch_is_forwarded_to_query_batch_sources() {
    let app = spawn_app().await;
    app.create(vehicle(1, 10)).await;
    let batch = stub(200, json!([vehicle(7, 70)]), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": batch.url, "operations": ["queryBatch"],
               "information": [{"entities": [{"type": "Vehicle"}]}]}),
    )
    .await;
    let query = json!({"type": "Query", "entities": [{"type": "Vehicle"}]});
    let out: Vec<Value> =
        app.post_json("/ngsi-ld/v1/entityOperations/query?limit=10", &query).await.json().await.unwrap();
    let mut ids: Vec<&str> = out.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:7"]);
    {
        let got = batch.got.lock();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/ngsi-ld/v1/entityOperations/query?limit=10")
        );
        assert_eq!(got[0].body, query);
    }
    // A GET query is for queryEntity sources; local=true stays here.
    let out: Vec<Value> = app.get("/ngsi-ld/v1/entities?type=Vehicle").await.json().await.unwrap();
    assert_eq!(out.len(), 1);
    let out: Vec<Value> =
        app.post_json("/ngsi-ld/v1/entityOperations/query?local=true", &query).await.json().await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(batch.got.lock().len(), 1);
}

/// Creating an entity the broker already holds, with only attributes an exclusive source is
/// registered for, creates them there and leaves nothing to create here: 201, alone or in a
/// batch. With nothing taken, the broker's 409 stands (beside the source's success: 207).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_only_exclusive_attributes_of_a_held_entity_succeeds() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    app.post_json("/ngsi-ld/v1/entities?local=true", &robot()).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["createEntity", "createBatch"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["position"]}]}),
    )
    .await;
    let position =
        json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot", "position": {"type": "Property", "value": 1}});
    let r = app.post_json("/ngsi-ld/v1/entities", &position).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/create", &json!([position])).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(src.got.lock().len(), 2);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.json().await.unwrap();
    assert!(e.get("position").is_none(), "{e}");
    assert_eq!(e["battery"]["value"], 80);
    let r = app.post_json("/ngsi-ld/v1/entities", &json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"})).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["errors"][0]["error"]["status"], 409, "{out}");
}

/// An attribute only an inclusive source holds: a partial update, replace or delete of it that
/// the source applies is a partial success (207, GS CIM 009 §5.6.4.4, §5.6.19.4): the source's
/// part succeeded, the broker's part failed with 404 and is listed. One the source refuses is
/// the broker's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_operations_done_only_by_an_inclusive_source_are_partial_successes() {
    let app = spawn_app().await;
    app.create(robot()).await;
    let src = stub(204, Value::Null, Duration::ZERO).await;
    let refusing = stub(404, json!({"detail": "no such attribute"}), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url,
               "operations": ["updateAttrs", "replaceAttrs", "deleteAttrs"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["temperature"]}]}),
    )
    .await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": refusing.url, "operations": ["updateAttrs"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["humidity"]}]}),
    )
    .await;
    let path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/temperature";
    let attr = json!({"type": "Property", "value": 21});
    let partial = |v: Value| {
        assert_eq!(v["success"], json!(["urn:ngsi-ld:Robot:r2d2"]), "{v}");
        assert_eq!(v["errors"][0]["entityId"], "urn:ngsi-ld:Robot:r2d2", "{v}");
        assert_eq!(v["errors"][0]["error"]["status"], 404, "{v}");
    };
    let r = app.patch_json(path, &attr).await;
    assert_eq!(r.status(), 207);
    partial(r.json().await.unwrap());
    let r = app.client.put(app.url(path)).json(&attr).send().await.unwrap();
    assert_eq!(r.status(), 207);
    partial(r.json().await.unwrap());
    let r = app.delete(path).await;
    assert_eq!(r.status(), 207);
    partial(r.json().await.unwrap());
    assert_eq!(seen(&src).iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["PATCH", "PUT", "DELETE"]);
    let r = app.patch_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs/humidity", &attr).await;
    assert_eq!(r.status(), 404);
    assert_eq!(refusing.got.lock().len(), 1);
    // Once the broker holds the attribute too, both parts succeed: 204.
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs?local=true"))
        .json(&json!({"temperature": attr}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.patch_json(path, &attr).await.status(), 204);
}

/// Distributed Delete Entity (§5.6.6.4): every part is reported. An inclusive source that
/// does not have the entity makes a partial success (207) of the broker's deletion; a source
/// that deleted an entity the broker does not hold makes one too (the broker's part is a 404);
/// an exclusive registration that does not serve deleteEntity is not asked and is a Conflict
/// part, while the broker's copy is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_delete_entity_reports_each_part() {
    let app = spawn_app().await;
    let missing = stub(404, json!({"detail": "not here"}), Duration::ZERO).await;
    let reg = register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": missing.url, "operations": ["deleteEntity"],
               "information": [{"entities": [{"type": "Robot"}]}]}),
    )
    .await;
    app.create(robot()).await;
    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2").await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["error"]["status"], 404, "{v}");
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.status(), 404);
    // Found nowhere: every part failed, the answer is the failure.
    assert_eq!(app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2").await.status(), 404);
    assert_eq!(app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await.status(), 204);

    let deleting = stub(204, Value::Null, Duration::ZERO).await;
    let reg = register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": deleting.url, "operations": ["deleteEntity"],
               "information": [{"entities": [{"type": "Robot"}]}]}),
    )
    .await;
    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:c3po").await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["errors"][0]["error"]["status"], 404, "{v}");
    assert_eq!(deleting.got.lock().len(), 1);
    assert_eq!(app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await.status(), 204);

    let exclusive = stub(204, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": exclusive.url, "mode": "exclusive",
               "operations": ["updateOps"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["position"]}]}),
    )
    .await;
    app.create(robot()).await;
    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2").await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["error"]["status"], 409, "{v}");
    assert!(exclusive.got.lock().is_empty());
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.status(), 404);
}

/// A query forwarded to a source is narrowed to what its registration names (§5.7.2.4): the
/// registered entity ids when the client named none, and the registered attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_queries_are_narrowed_to_the_registration() {
    let app = spawn_app().await;
    let src = stub(200, json!([]), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["queryEntity"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["position"]}]}),
    )
    .await;
    assert_eq!(app.get("/ngsi-ld/v1/entities?type=Robot").await.status(), 200);
    assert_eq!(
        app.get("/ngsi-ld/v1/entities?type=Robot&id=urn:ngsi-ld:Robot:x&attrs=position,battery").await.status(),
        200
    );
    let got = seen(&src);
    assert_eq!(got[0].1, "/ngsi-ld/v1/entities?type=Robot&id=urn:ngsi-ld:Robot:r2d2&attrs=position");
    assert_eq!(got[1].1, "/ngsi-ld/v1/entities?type=Robot&id=urn:ngsi-ld:Robot:x&attrs=position");
}

/// contextSourceInfo pairs travel as headers (§4.3.6.5): `urn:ngsi-ld:request` copies the
/// triggering request's header (nothing when it had none); tenant and HTTP interaction headers
/// cannot be set that way. A localOnly registration (§4.3.6.4) is asked with `local=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_source_info_headers_and_local_only_registrations() {
    let app = spawn_app().await;
    let robot_answer =
        json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot", "speed": {"type": "Property", "value": 3}});
    let src = stub(200, robot_answer, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "localOnly": true,
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}]}],
               "contextSourceInfo": [{"key": "user", "value": "urn:ngsi-ld:request"},
                                     {"key": "X-Fixed", "value": "fixed"},
                                     {"key": "NGSILD-Tenant", "value": "hacker"},
                                     {"key": "Via", "value": "1.1 evil"}]}),
    )
    .await;
    let path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2";
    let r = app.client.get(app.url(path)).header("user", "abcd").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get(path).await.status(), 200);
    let got = src.got.lock().clone();
    assert_eq!(got.len(), 2);
    assert!(got[0].path.contains("local=true"), "{}", got[0].path);
    assert_eq!(got[0].headers.get("user").map(String::as_str), Some("abcd"));
    assert_eq!(got[1].headers.get("user"), None);
    for g in &got {
        assert_eq!(g.headers.get("x-fixed").map(String::as_str), Some("fixed"));
        assert_eq!(g.headers.get("ngsild-tenant"), None);
        assert!(!g.headers["via"].contains("evil"), "{:?}", g.headers);
    }
}

/// Entities merged from several sources have no common order: orderBy on a query that is
/// distributed is refused (§4.23), and allowed with local=true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_is_refused_for_a_distributed_query() {
    let app = spawn_app().await;
    app.create(robot()).await;
    let src = stub(200, json!([]), Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url,
               "information": [{"entities": [{"type": "Robot"}]}]}),
    )
    .await;
    let r = app.get("/ngsi-ld/v1/entities?type=Robot&orderBy=battery").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    assert_eq!(app.get("/ngsi-ld/v1/entities?type=Robot&orderBy=battery&local=true").await.status(), 200);
    assert_eq!(app.get("/ngsi-ld/v1/entities?type=Robot").await.status(), 200);
    assert!(src.got.lock().len() == 1);
}

/// Misbehaving sources are reported in NGSILD-Warning (§6.3.17): an error status is 299, an
/// answer that is no JSON is 111 (and is not used), an unreachable source is 199; a 404 is
/// normal and adds nothing. Each value names the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_sources_are_reported_in_ngsild_warning() {
    let app = spawn_app().await;
    let path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2";
    let reg_for = |url: &str| {
        json!({"type": "ContextSourceRegistration", "endpoint": url,
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}]}]})
    };
    let forbidden = stub(403, json!({"detail": "no"}), Duration::ZERO).await;
    let reg = register(&app, reg_for(&forbidden.url)).await;
    let r = app.get(path).await;
    assert_eq!(r.status(), 404);
    let w = r.headers()["ngsild-warning"].to_str().unwrap().to_owned();
    assert!(w.starts_with(&format!("299 {reg} \"")), "{w}");
    app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await;

    let missing = stub(404, Value::Null, Duration::ZERO).await;
    let reg = register(&app, reg_for(&missing.url)).await;
    let r = app.get(path).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("ngsild-warning").is_none());
    app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await;

    let reg = register(&app, reg_for(&format!("{}/notjson", raw_text_source().await))).await;
    let r = app.get(path).await;
    assert_eq!(r.status(), 404);
    let w = r.headers()["ngsild-warning"].to_str().unwrap().to_owned();
    assert!(w.starts_with(&format!("111 {reg} \"")), "{w}");
    app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await;

    let reg = register(&app, reg_for("http://127.0.0.1:9")).await;
    app.create(robot()).await;
    let r = app.get(path).await;
    assert_eq!(r.status(), 200);
    let w = r.headers()["ngsild-warning"].to_str().unwrap().to_owned();
    assert!(w.starts_with(&format!("199 {reg} \"")), "{w}");
}

/// A source that answers 200 with a body that is not JSON.
async fn raw_text_source() -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            HttpResponse::Ok().content_type("application/json").body("not a json document")
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// `csf` on a query selects the sources by their registration's properties, and is not sent to
/// them; `splitEntities=true` keeps `q` and `scopeQ` from the sources and applies them to the
/// merged entities instead (§5.7.2.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csf_selects_sources_and_split_entities_filters_after_merging() {
    let app = spawn_app().await;
    let slow = json!([{"id": "urn:ngsi-ld:Robot:slow", "type": "Robot", "speed": {"type": "Property", "value": 1}}]);
    let src = stub(200, slow, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "sourceType": "sensor",
               "information": [{"entities": [{"type": "Robot"}]}]}),
    )
    .await;
    let ids = |v: Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    let r = app.get("/ngsi-ld/v1/entities?type=Robot&csf=sourceType==%22archive%22").await;
    assert_eq!(r.status(), 200);
    assert!(ids(r.json().await.unwrap()).is_empty());
    assert!(src.got.lock().is_empty(), "a source the csf rules out is not asked");
    let r = app.get("/ngsi-ld/v1/entities?type=Robot&csf=sourceType==%22sensor%22").await;
    assert_eq!(ids(r.json().await.unwrap()), ["urn:ngsi-ld:Robot:slow"]);
    assert!(!seen(&src)[0].1.contains("csf"), "{:?}", seen(&src));
    // Without splitEntities the source filters (the stub ignores q and answers anyway).
    let r = app.get("/ngsi-ld/v1/entities?type=Robot&q=speed%3E5").await;
    assert_eq!(ids(r.json().await.unwrap()), ["urn:ngsi-ld:Robot:slow"]);
    assert!(seen(&src)[1].1.contains("q=speed"));
    let r = app.get("/ngsi-ld/v1/entities?type=Robot&q=speed%3E5&splitEntities=true").await;
    assert_eq!(r.status(), 200);
    assert!(ids(r.json().await.unwrap()).is_empty(), "the merged entity fails q");
    assert!(!seen(&src)[2].1.contains("q="), "{:?}", seen(&src));
}

/// A part of an entity held by an exclusive or redirect registration that does not serve the
/// operation cannot be written: create or update is a 409 Conflict, nothing is sent to the
/// source or stored (§5.6.1.4, §5.6.2.4); an inclusive registration without the operation is
/// simply not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_proxied_registration_does_not_serve_are_conflicts() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    let reg = register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "redirect",
               "operations": ["retrieveOps"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}]}]}),
    )
    .await;
    let r = app.post_json("/ngsi-ld/v1/entities", &robot()).await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "https://uri.etsi.org/ngsi-ld/errors/Conflict");
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.status(), 404);
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2/attrs",
            &json!({"battery": {"type": "Property", "value": 1}}),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(src.got.lock().is_empty());
    app.delete(&format!("/ngsi-ld/v1/csourceRegistrations/{reg}")).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "operations": ["retrieveOps"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}]}]}),
    )
    .await;
    assert_eq!(app.post_json("/ngsi-ld/v1/entities", &robot()).await.status(), 201);
    assert!(src.got.lock().is_empty());
}

/// contextSourceInfo `contentType` application/ld+json sends payloads with their @context
/// inline and no Link header; `accept` names the media type asked for (§4.3.6.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_and_accept_of_a_registration_steer_forwarded_requests() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "operations": ["redirectionOps"],
               "information": [{"entities": [{"type": "Robot"}]}],
               "contextSourceInfo": [{"key": "contentType", "value": "application/ld+json"},
                                     {"key": "accept", "value": "application/ld+json"}]}),
    )
    .await;
    assert_eq!(app.post_json("/ngsi-ld/v1/entities", &robot()).await.status(), 201);
    let got = src.got.lock().clone();
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].headers["content-type"], "application/ld+json");
    assert!(got[0].body.get("@context").is_some(), "{}", got[0].body);
    assert!(!got[0].headers.contains_key("link"));
    assert_eq!(got[0].headers["accept"], "application/ld+json");
    assert!(!got[0].headers.contains_key("contenttype"));
}

/// A created entity whose every attribute an exclusive source took is created there only: the
/// broker keeps no empty shell of it, and a retrieve is answered by the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_held_entirely_by_an_exclusive_source_leaves_no_local_shell() {
    let app = spawn_app().await;
    let src = stub(201, Value::Null, Duration::ZERO).await;
    register(
        &app,
        json!({"type": "ContextSourceRegistration", "endpoint": src.url, "mode": "exclusive",
               "operations": ["createEntity"],
               "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                "propertyNames": ["battery"]}]}),
    )
    .await;
    let body = json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot", "battery": {"type": "Property", "value": 3}});
    assert_eq!(app.post_json("/ngsi-ld/v1/entities", &body).await.status(), 201);
    assert_eq!(seen(&src), [("POST".to_owned(), "/ngsi-ld/v1/entities".to_owned())]);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.status(), 404);
    // With an attribute the source does not hold, the broker creates the rest.
    let body = json!({"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot", "battery": {"type": "Property", "value": 3},
                      "name": {"type": "Property", "value": "R2"}});
    assert_eq!(app.post_json("/ngsi-ld/v1/entities", &body).await.status(), 201);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Robot:r2d2?local=true").await.json().await.unwrap();
    assert_eq!(e["name"]["value"], "R2");
    assert!(e.get("battery").is_none());
}
