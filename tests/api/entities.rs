//! Entity CRUD over HTTP (GS CIM 009 §5.6.1, §5.6.6, §5.6.17, §5.6.18, §5.7.1).

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

fn vehicle(id: &str) -> Value {
    json!({
        "id": id,
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 55, "unitCode": "KMH", "observedAt": "2024-01-01T10:00:00Z",
                  "accuracy": {"type": "Property", "value": 0.5}},
        "brand": "Mercedes",
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-8.5, 41.2]}},
        "name": {"type": "LanguageProperty", "languageMap": {"en": "car", "fr": "voiture"}},
        "category": {"type": "VocabProperty", "vocab": "sedan"},
        "config": {"type": "JsonProperty", "json": {"a": [1, 2]}},
        "readings": {"type": "ListProperty", "valueList": [1, 2, 3]},
        "owners": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Person:1"}]}
    })
}

#[tokio::test]
async fn create_then_retrieve_normalized() {
    let app = spawn_app().await;
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle("urn:ngsi-ld:Vehicle:A1")).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:A1");
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:A1").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["link"].to_str().unwrap().contains("ngsi-ld-core-context"));
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "Vehicle");
    assert_eq!(
        e["speed"],
        json!({"type": "Property", "value": 55, "unitCode": "KMH",
        "observedAt": "2024-01-01T10:00:00Z", "accuracy": {"type": "Property", "value": 0.5}})
    );
    assert_eq!(e["brand"], json!({"type": "Property", "value": "Mercedes"}));
    assert_eq!(e["isParked"]["object"], "urn:ngsi-ld:OffStreetParking:Downtown1");
    assert_eq!(e["location"]["value"]["coordinates"], json!([-8.5, 41.2]));
    assert_eq!(e["name"]["languageMap"]["fr"], "voiture");
    assert_eq!(e["category"], json!({"type": "VocabProperty", "vocab": "sedan"}));
    assert_eq!(e["config"]["json"], json!({"a": [1, 2]}));
    assert_eq!(e["readings"]["valueList"], json!([1, 2, 3]));
    assert_eq!(e["owners"]["type"], "ListRelationship");
    assert!(e.get("createdAt").is_none(), "no sysAttrs unless asked");
}

#[tokio::test]
async fn duplicate_create_is_409_and_bad_payloads_are_400() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:D1")).await;
    let r = app.post_json("/ngsi-ld/v1/entities", &vehicle("urn:ngsi-ld:Vehicle:D1")).await;
    assert_problem(r, 409, "AlreadyExists").await;
    for bad in [
        json!({"id": "not a uri", "type": "T"}),
        json!({"id": "urn:x:1"}),
        json!({"type": "T"}),
        json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property"}}),
        json!({"id": "urn:x:1", "type": "T", "p": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 1]}}}),
        json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": 7}}),
        json!({"id": "urn:x:1", "type": "T", "l": {"type": "LanguageProperty", "languageMap": {"en": 3}}}),
    ] {
        let r = app.post_json("/ngsi-ld/v1/entities", &bad).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
    // A body that is not an entity object at all is a malformed request (ETSI 001_02_02).
    let r = app.post_json("/ngsi-ld/v1/entities", &json!([1, 2])).await;
    assert_problem(r, 400, "InvalidRequest").await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    // Nothing of the rejected payloads was stored.
    let r = app.get("/ngsi-ld/v1/entities/urn:x:1").await;
    assert_problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn concise_key_values_sysattrs_pick_omit_lang() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:R1")).await;
    let get = |q: &'static str| {
        let url = app.url(&format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:R1?{q}"));
        let c = app.client.clone();
        async move { c.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let kv = get("options=keyValues").await;
    assert_eq!(kv["speed"], 55);
    assert_eq!(kv["isParked"], "urn:ngsi-ld:OffStreetParking:Downtown1");
    assert_eq!(kv["location"]["type"], "Point");
    assert_eq!(kv["category"], "sedan");
    let kv2 = get("format=simplified").await;
    assert_eq!(kv, kv2);
    let concise = get("options=concise").await;
    assert_eq!(concise["brand"], "Mercedes");
    assert_eq!(concise["speed"]["value"], 55);
    assert!(concise["speed"].get("type").is_none());
    assert_eq!(concise["speed"]["accuracy"], 0.5);
    assert_eq!(concise["isParked"], json!({"object": "urn:ngsi-ld:OffStreetParking:Downtown1"}));
    assert_eq!(concise["location"], json!({"type": "Point", "coordinates": [-8.5, 41.2]}));
    let sys = get("options=sysAttrs").await;
    assert!(sys["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(sys["speed"]["modifiedAt"].is_string());
    let picked = get("pick=id,speed").await;
    assert_eq!(picked.as_object().unwrap().len(), 2);
    assert!(picked["speed"].is_object());
    let attrs = get("attrs=brand").await;
    assert_eq!(attrs["type"], "Vehicle");
    assert!(attrs.get("speed").is_none() && attrs["brand"].is_object());
    let omitted = get("omit=speed,brand").await;
    assert!(omitted.get("speed").is_none() && omitted.get("brand").is_none() && omitted["isParked"].is_object());
    let fr = get("lang=fr").await;
    assert_eq!(fr["name"], json!({"type": "Property", "value": "voiture", "lang": "fr"}));
    let pref = get("lang=de,en;q=0.5").await;
    assert_eq!(pref["name"]["value"], "car");
    // `*` accepts any language: one of them is shown as a Property (ETSI 018_07_03).
    let any = get("lang=*").await;
    assert_eq!(any["name"]["type"], "Property");
    assert!(any["name"]["lang"].is_string());
}

#[tokio::test]
async fn compact_round_trip_with_concise_input() {
    let app = spawn_app().await;
    app.create(json!({"id": "urn:c:1", "type": "T", "n": 1, "s": "x", "o": {"value": {"k": "v"}},
        "g": {"type": "Point", "coordinates": [1, 2]}, "rel": {"object": "urn:a:b"}}))
        .await;
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:c:1").await.json().await.unwrap();
    assert_eq!(e["n"], json!({"type": "Property", "value": 1}));
    assert_eq!(e["o"], json!({"type": "Property", "value": {"k": "v"}}));
    assert_eq!(e["g"]["type"], "GeoProperty");
    assert_eq!(e["rel"]["type"], "Relationship");
    let c: Value = app.get("/ngsi-ld/v1/entities/urn:c:1?options=concise").await.json().await.unwrap();
    assert_eq!(c["o"], json!({"value": {"k": "v"}}), "object values keep their value wrapper");
}

#[tokio::test]
async fn geojson_feature_with_geometry_property() {
    let app = spawn_app().await;
    let mut v = vehicle("urn:ngsi-ld:Vehicle:G1");
    v["area"] =
        json!({"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}});
    app.create(v).await;
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:G1?geometryProperty=area&options=keyValues"))
        .header("Accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["type"], "Feature");
    assert_eq!(f["id"], "urn:ngsi-ld:Vehicle:G1");
    assert_eq!(f["geometry"]["type"], "Polygon");
    assert_eq!(f["properties"]["type"], "Vehicle");
    assert_eq!(f["properties"]["speed"], 55);
}

#[tokio::test]
async fn replace_merge_delete() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:M1")).await;
    let created: Value =
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1?options=sysAttrs").await.json().await.unwrap();

    // Merge: values change, sub-attributes merge, null deletes, new attributes appear.
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1"))
        .header("Content-Type", "application/merge-patch+json")
        .body(json!({"speed": {"value": 80}, "brand": "urn:ngsi-ld:null", "colour": "red"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1?options=sysAttrs").await.json().await.unwrap();
    assert_eq!(e["speed"]["value"], 80);
    assert_eq!(e["speed"]["unitCode"], "KMH", "merge keeps members not given");
    assert_eq!(e["speed"]["accuracy"]["value"], 0.5);
    assert!(e.get("brand").is_none());
    assert_eq!(e["colour"]["value"], "red");
    assert_eq!(e["createdAt"], created["createdAt"]);
    assert_eq!(e["speed"]["createdAt"], created["speed"]["createdAt"]);

    // Replace: only the body's attributes remain.
    let r = app
        .client
        .put(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1"))
        .json(&json!({"type": "Car", "wheels": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1?options=sysAttrs").await.json().await.unwrap();
    assert_eq!(e["type"], "Car");
    assert_eq!(e["wheels"]["value"], 4);
    assert!(e.get("speed").is_none());
    assert_eq!(e["createdAt"], created["createdAt"]);

    let r =
        app.client.put(app.url("/ngsi-ld/v1/entities/urn:nope:1")).json(&json!({"type": "T"})).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:M1")).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn multi_attributes_by_dataset_id_and_multi_type_and_scope() {
    let app = spawn_app().await;
    app.create(json!({
        "id": "urn:m:1", "type": ["Sensor", "Device"], "scope": ["/Madrid/Gardens", "/Company"],
        "temp": [{"type": "Property", "value": 20}, {"type": "Property", "value": 21, "datasetId": "urn:ds:b"}]
    }))
    .await;
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:m:1").await.json().await.unwrap();
    assert_eq!(e["type"], json!(["Sensor", "Device"]));
    assert_eq!(e["scope"], json!(["/Madrid/Gardens", "/Company"]));
    assert_eq!(e["temp"].as_array().unwrap().len(), 2);
    let only_b: Value = app.get("/ngsi-ld/v1/entities/urn:m:1?datasetId=urn:ds:b").await.json().await.unwrap();
    assert_eq!(only_b["temp"]["value"], 21);
    let r = app.get("/ngsi-ld/v1/entities?type=Device").await;
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn trailing_slashes_and_unknown_paths() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert/?options=update",
            &json!([{"id": "urn:t:1", "type": "T", "a": 1}]),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app.get("/ngsi-ld/v1/entities/urn:t:1/").await;
    assert_eq!(r.status(), 200);
    let r = app.get("/ngsi-ld/v1/nothing-here").await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.put(app.url("/ngsi-ld/v1/entities")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"));
}
