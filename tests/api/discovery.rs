//! Discovery (`/types`, `/attributes`) and Purge Entities (GS CIM 009 §5.7.5–§5.7.10, §5.6.21).

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn types_and_attributes() {
    let app = spawn_app().await;
    let items = json!([
        {"id": "urn:v:1", "type": "Vehicle", "speed": 1, "owner": {"object": "urn:p:1"}},
        {"id": "urn:v:2", "type": "Vehicle", "speed": 2},
        {"id": "urn:s:1", "type": "Sensor", "temperature": 20, "location": {"type": "Point", "coordinates": [1, 2]}}
    ]);
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &items).await.status(), 201);
    let list: Value = app.get("/ngsi-ld/v1/types").await.json().await.unwrap();
    assert_eq!(list["type"], "EntityTypeList");
    assert_eq!(list["typeList"], json!(["Sensor", "Vehicle"]));
    let details: Vec<Value> = app.get("/ngsi-ld/v1/types?details=true").await.json().await.unwrap();
    let v = details.iter().find(|d| d["typeName"] == "Vehicle").unwrap();
    assert_eq!(v["type"], "EntityType");
    assert_eq!(v["attributeNames"], json!(["owner", "speed"]));
    let info: Value = app.get("/ngsi-ld/v1/types/Vehicle").await.json().await.unwrap();
    assert_eq!(info["type"], "EntityTypeInfo");
    assert_eq!(info["entityCount"], 2);
    let owner = info["attributeDetails"].as_array().unwrap().iter().find(|a| a["attributeName"] == "owner").unwrap();
    assert_eq!(owner["attributeTypes"], json!(["Relationship"]));
    assert_problem(app.get("/ngsi-ld/v1/types/Nothing").await, 404, "ResourceNotFound").await;

    let attrs: Value = app.get("/ngsi-ld/v1/attributes").await.json().await.unwrap();
    assert_eq!(attrs["type"], "AttributeList");
    assert_eq!(attrs["attributeList"], json!(["location", "owner", "speed", "temperature"]));
    let speed: Value = app.get("/ngsi-ld/v1/attributes/speed").await.json().await.unwrap();
    assert_eq!(speed["attributeCount"], 2);
    assert_eq!(speed["typeNames"], json!(["Vehicle"]));
    assert_eq!(speed["attributeTypes"], json!(["Property"]));
    let details: Vec<Value> = app.get("/ngsi-ld/v1/attributes?details=true").await.json().await.unwrap();
    assert!(details.iter().any(|d| d["attributeName"] == "location" && d["typeNames"] == json!(["Sensor"])));
    assert_problem(app.get("/ngsi-ld/v1/attributes/nothing").await, 404, "ResourceNotFound").await;

    // Deleting the last Sensor removes the type and its attributes from discovery.
    app.client.delete(app.url("/ngsi-ld/v1/entities/urn:s:1")).send().await.unwrap();
    let list: Value = app.get("/ngsi-ld/v1/types").await.json().await.unwrap();
    assert_eq!(list["typeList"], json!(["Vehicle"]));
}

#[tokio::test]
async fn purge_entities() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("urn:b:{i}"), "type": if i < 20 { "Building" } else { "Park" }, "name": format!("n{i}"), "floors": i}))
        .collect();
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &json!(items)).await.status(), 201);
    assert_problem(app.client.delete(app.url("/ngsi-ld/v1/entities")).send().await.unwrap(), 400, "BadRequestData")
        .await;
    let r =
        app.client.delete(app.url("/ngsi-ld/v1/entities?type=Building&keep=name&drop=floors")).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // drop removes attributes and keeps the entities.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities?type=Park&drop=floors")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["ngsild-results-count"], "10");
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:b:25").await.json().await.unwrap();
    assert!(e.get("floors").is_none() && e["name"].is_object());
    // keep keeps only the named attributes.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities?id=urn:b:1&keep=floors")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:b:1").await.json().await.unwrap();
    assert!(e.get("name").is_none() && e["floors"].is_object());
    // A query deletes exactly what it matches.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities?type=Building&q=floors%3E=10")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["ngsild-results-count"], "10");
    let r = app.get("/ngsi-ld/v1/entities?type=Building&count=true&limit=0").await;
    assert_eq!(r.headers()["ngsild-results-count"], "10");
    // local=true purges everything.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities?local=true")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get("/ngsi-ld/v1/entities?local=true&count=true&limit=0").await;
    assert_eq!(r.headers()["ngsild-results-count"], "0");
}
