//! Attribute operations (GS CIM 009 §5.6.2–§5.6.5, §5.6.19).

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn setup() -> TestApp {
    let app = spawn_app().await;
    app.create(json!({"id": "urn:a:1", "type": "T", "speed": {"type": "Property", "value": 1, "unitCode": "KMH"},
        "temp": [{"value": 10}, {"value": 11, "datasetId": "urn:ds:2"}]}))
        .await;
    app
}

async fn entity(app: &TestApp) -> Value {
    app.get("/ngsi-ld/v1/entities/urn:a:1").await.json().await.unwrap()
}

#[tokio::test]
async fn append_with_and_without_no_overwrite() {
    let app = setup().await;
    let r = app.post_json("/ngsi-ld/v1/entities/urn:a:1/attrs", &json!({"speed": 2, "new": 3})).await;
    assert_eq!(r.status(), 204);
    let e = entity(&app).await;
    assert_eq!(e["speed"]["value"], 2);
    assert_eq!(e["new"]["value"], 3);
    let r =
        app.post_json("/ngsi-ld/v1/entities/urn:a:1/attrs?options=noOverwrite", &json!({"speed": 9, "other": 4})).await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["updated"], json!(["other"]));
    assert_eq!(body["notUpdated"][0]["attributeName"], "speed");
    assert_eq!(entity(&app).await["speed"]["value"], 2);
    let r = app.post_json("/ngsi-ld/v1/entities/urn:a:404/attrs", &json!({"x": 1})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn update_attrs_appends_missing_ones_and_reports_missing_deletions() {
    let app = setup().await;
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs"))
        .json(&json!({"speed": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs"))
        .json(&json!({"speed": 6, "added": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = entity(&app).await;
    assert_eq!(e["speed"]["value"], 6);
    assert_eq!(e["added"]["value"], 1);
    // Deleting (NGSI-LD null) what does not exist is reported.
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs"))
        .json(&json!({"speed": 7, "missing": {"type": "Property", "value": "urn:ngsi-ld:null"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["updated"], json!(["speed"]));
    assert_eq!(body["notUpdated"][0]["attributeName"], "missing");
    assert!(entity(&app).await.get("missing").is_none());
}

#[tokio::test]
async fn partial_update_replace_and_delete_attribute() {
    let app = setup().await;
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/speed"))
        .json(&json!({"value": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = entity(&app).await;
    assert_eq!(e["speed"]["value"], 42);
    assert_eq!(e["speed"]["unitCode"], "KMH", "partial update keeps other members");
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/temp"))
        .json(&json!({"value": 99, "datasetId": "urn:ds:2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let temps = entity(&app).await["temp"].clone();
    assert!(temps.as_array().unwrap().iter().any(|t| t["value"] == 99 && t["datasetId"] == "urn:ds:2"));
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/nope"))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;

    let r = app
        .client
        .put(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/speed"))
        .json(&json!({"type": "Property", "value": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = entity(&app).await;
    assert_eq!(e["speed"], json!({"type": "Property", "value": 7}), "replace drops old members");

    let r =
        app.client.delete(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/temp?datasetId=urn:ds:2")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(entity(&app).await["temp"]["value"], 10);
    app.post_json("/ngsi-ld/v1/entities/urn:a:1/attrs", &json!({"temp": {"value": 3, "datasetId": "urn:ds:3"}})).await;
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/temp?deleteAll=true")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(entity(&app).await.get("temp").is_none());
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:a:1/attrs/temp")).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
}
