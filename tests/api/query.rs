//! Query Entities with the query language (GS CIM 009 §4.9, §4.17, §4.19, §5.7.2, §5.7.4).

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn seed(app: &TestApp) {
    let items = json!([
        {"id": "urn:v:1", "type": "Vehicle", "speed": 10, "brand": "Volvo", "scope": "/Madrid/Centre",
         "owner": {"object": "urn:p:1"}, "info": {"value": {"doors": 4}}},
        {"id": "urn:v:2", "type": "Vehicle", "speed": {"value": 96, "observedAt": "2024-05-01T10:00:00Z"}, "brand": "Saab",
         "scope": "/Madrid/North"},
        {"id": "urn:v:3", "type": ["Vehicle", "Truck"], "speed": 50, "scope": "/Lisbon"},
        {"id": "urn:b:1", "type": "Bike", "speed": 20, "name": {"languageMap": {"en": "bike", "fr": "vélo"}}}
    ]);
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &items).await.status(), 201);
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(&format!("/ngsi-ld/v1/entities?{query}")).await;
    assert_eq!(r.status(), 200, "{query}");
    let list: Vec<Value> = r.json().await.unwrap();
    let mut out: Vec<String> = list.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn q_filters_through_http() {
    let app = spawn_app().await;
    seed(&app).await;
    assert_eq!(ids(&app, "type=Vehicle&q=speed%3E40").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "q=speed%3E40").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "q=speed==10..20").await, ["urn:b:1", "urn:v:1"]);
    assert_eq!(ids(&app, "q=brand==%22Saab%22%7Cspeed%3C15").await, ["urn:v:1", "urn:v:2"]);
    assert_eq!(ids(&app, "q=(speed%3E5;brand)%3Bspeed%3C20").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=owner==urn:p:1").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=info%5Bdoors%5D==4").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=speed.observedAt%3E2024-01-01T00:00:00Z").await, ["urn:v:2"]);
    assert_eq!(ids(&app, "q=name==%22v%C3%A9lo%22").await, ["urn:b:1"]);
    assert_eq!(ids(&app, "q=brand~=%5ES").await, ["urn:v:2"]);
    assert_eq!(ids(&app, "type=Vehicle%3BTruck").await, ["urn:v:3"]);
    assert_eq!(ids(&app, "type=Bike%7CTruck").await, ["urn:b:1", "urn:v:3"]);
    assert_eq!(ids(&app, "scopeQ=/Madrid/%23").await, ["urn:v:1", "urn:v:2"]);
    assert_eq!(ids(&app, "type=Vehicle&scopeQ=/Madrid/North,/Lisbon").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "id=urn:v:1,urn:v:2&q=speed%3E40").await, ["urn:v:2"], "q applies together with id");
    let r = app.get("/ngsi-ld/v1/entities?q=speed%3E%3E3").await;
    let body = assert_problem(r, 400, "InvalidRequest").await;
    assert!(body["detail"].as_str().unwrap().contains("position"));
    assert_problem(app.get("/ngsi-ld/v1/entities?scopeQ=Madrid").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=(A").await, 400, "BadRequestData").await;
}

#[tokio::test]
async fn post_query_body() {
    let app = spawn_app().await;
    seed(&app).await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/query?count=true",
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}, {"id": "urn:b:1"}], "q": "speed<60", "attrs": ["speed"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let list: Vec<Value> = r.json().await.unwrap();
    assert!(list.iter().all(|e| e.get("brand").is_none() && e["speed"].is_object()));
    let r = app.post_json("/ngsi-ld/v1/entityOperations/query", &json!({"entities": []})).await;
    assert_problem(r, 400, "BadRequestData").await;
}
