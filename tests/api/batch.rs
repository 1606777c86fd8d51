//! Batch entity operations (GS CIM 009 §5.6.7–§5.6.10, §5.6.20).

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn batch_create_reports_each_entity() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/create",
            &json!([{"id": "urn:b:1", "type": "T"}, {"id": "urn:b:2", "type": "T"}]),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!(["urn:b:1", "urn:b:2"]));
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/create",
            &json!([{"id": "urn:b:1", "type": "T"}, {"id": "urn:b:3", "type": "T"}, {"id": "bad id", "type": "T"}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], json!(["urn:b:3"]));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    let dup = errors.iter().find(|e| e["entityId"] == "urn:b:1").unwrap();
    assert_eq!(dup["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists");
    assert_eq!(dup["error"]["status"], 409);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:b:3").await.status(), 200);
}

#[tokio::test]
async fn batch_upsert_update_and_replace() {
    let app = spawn_app().await;
    let r = app
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &json!([{"id": "urn:u:1", "type": "T", "a": 1, "b": 1}]))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!(["urn:u:1"]));
    // options=update keeps attributes not given.
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert?options=update",
            &json!([{"id": "urn:u:1", "type": "T", "a": 2}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:u:1?options=keyValues").await.json().await.unwrap();
    assert_eq!((e["a"].clone(), e["b"].clone()), (json!(2), json!(1)));
    // The default (replace) drops them; a new entity in the same batch makes it a 201.
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert",
            &json!([{"id": "urn:u:1", "type": "T", "a": 3}, {"id": "urn:u:2", "type": "T"}]),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!(["urn:u:2"]));
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:u:1?options=keyValues").await.json().await.unwrap();
    assert_eq!(e["a"], 3);
    assert!(e.get("b").is_none());
    let r = app
        .post_json("/ngsi-ld/v1/entityOperations/upsert?options=sideways", &json!([{"id": "urn:u:3", "type": "T"}]))
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn batch_update_merge_delete() {
    let app = spawn_app().await;
    app.post_json(
        "/ngsi-ld/v1/entityOperations/create",
        &json!([{"id": "urn:d:1", "type": "T", "a": 1}, {"id": "urn:d:2", "type": "T", "a": 1}]),
    )
    .await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/update?options=noOverwrite",
            &json!([{"id": "urn:d:1", "a": 5, "n": 1}, {"id": "urn:d:9", "a": 1}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    // urn:d:1 kept its existing "a", so it was not updated in full (ETSI 005_02_03).
    assert_eq!(body["success"], json!([]));
    assert_eq!(body["errors"][0]["entityId"], "urn:d:9");
    assert_eq!(body["errors"][0]["error"]["status"], 404);
    assert_eq!(body["errors"][1]["entityId"], "urn:d:1");
    assert_eq!(body["errors"][1]["error"]["status"], 400);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:d:1?options=keyValues").await.json().await.unwrap();
    assert_eq!((e["a"].clone(), e["n"].clone()), (json!(1), json!(1)));
    let r = app.post_json("/ngsi-ld/v1/entityOperations/update", &json!([{"id": "urn:d:1", "a": 5}])).await;
    assert_eq!(r.status(), 204);
    let r = app
        .post_json("/ngsi-ld/v1/entityOperations/merge", &json!([{"id": "urn:d:2", "a": "urn:ngsi-ld:null", "m": 2}]))
        .await;
    assert_eq!(r.status(), 204);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:d:2?options=keyValues").await.json().await.unwrap();
    assert!(e.get("a").is_none());
    assert_eq!(e["m"], 2);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/delete", &json!(["urn:d:1", "urn:d:404"])).await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], json!(["urn:d:1"]));
    let r = app.post_json("/ngsi-ld/v1/entityOperations/delete", &json!(["urn:d:2"])).await;
    assert_eq!(r.status(), 204);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/delete", &json!([])).await;
    assert_eq!(r.status(), 400);
}
