//! Error answers: ProblemDetails shapes and statuses for bad input (GS CIM 009 §5.5.2).

use serde_json::json;

use crate::helpers::{assert_problem, settings, spawn_app, spawn_with};

#[tokio::test]
async fn oversized_bodies_are_413_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_body_bytes = 512;
    let app = spawn_with(s, Some(dir)).await;
    let big = "x".repeat(1000);
    let r = app.post_json("/ngsi-ld/v1/entities", &json!({"id": "urn:big:1", "type": "T", "p": big})).await;
    assert_eq!(r.status(), 413);
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:big:1").await.status(), 404);
}

#[tokio::test]
async fn query_parameter_errors() {
    let app = spawn_app().await;
    app.create(json!({"id": "urn:q:1", "type": "T"})).await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=T&limit=5000").await, 403, "TooManyResults").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=T&limit=abc").await, 400, "BadRequestData").await;
    // Unknown parameters and option values are malformed requests (GS CIM 009 §6.3.20).
    assert_problem(app.get("/ngsi-ld/v1/entities?type=T&bogus=1").await, 400, "InvalidRequest").await;
    assert_problem(app.get("/ngsi-ld/v1/entities").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=T&options=fancy").await, 400, "InvalidRequest").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=T&limit=0").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?idPattern=(").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities/not-a-uri").await, 400, "BadRequestData").await;
    let r = app.get("/ngsi-ld/v1/entities?type=T&limit=0&count=true").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "1");
}

#[tokio::test]
async fn query_paging_is_stable() {
    let app = spawn_app().await;
    let batch: Vec<_> = (0..45).map(|i| json!({"id": format!("urn:p:{i:03}"), "type": "P"})).collect();
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &json!(batch)).await.status(), 201);
    let mut seen = Vec::new();
    for page in 0..3 {
        let r = app.get(&format!("/ngsi-ld/v1/entities?type=P&limit=20&offset={}&count=true", page * 20)).await;
        assert_eq!(r.headers()["ngsild-results-count"], "45");
        let items: Vec<serde_json::Value> = r.json().await.unwrap();
        seen.extend(items.into_iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 45);
    assert_eq!(seen.len(), 45);
    let r: Vec<serde_json::Value> =
        app.get("/ngsi-ld/v1/entities?id=urn:p:003,urn:p:001&type=P").await.json().await.unwrap();
    assert_eq!(r.len(), 2);
    let r: Vec<serde_json::Value> =
        app.get("/ngsi-ld/v1/entities?idPattern=urn:p:00.*&type=P").await.json().await.unwrap();
    assert_eq!(r.len(), 10);
}
