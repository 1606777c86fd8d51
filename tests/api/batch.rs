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

/// An application/json batch is read straight from its text (model::text): each element is
/// still judged on its own, with the errors a parsed body gives.
#[tokio::test]
async fn json_batch_elements_are_judged_one_by_one() {
    let app = spawn_app().await;
    let good = json!({"id": "urn:j:1", "type": "T",
        "speed": {"type": "Property", "value": 1.5, "unitCode": "KMH", "observedAt": "2026-01-15T10:00:00.000Z"},
        "owner": {"type": "Relationship", "object": "urn:o:1", "datasetId": "urn:ds:1"}});
    let body = json!([
        good,
        {"id": "urn:j:2", "type": "T", "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"},
        7,
        {"id": "urn:j:3", "type": "T", "speed": {"type": "Property", "value": null}},
        {"id": "urn:j:4", "type": "T", "speed": {"type": "Property", "value": 1, "observedAt": "noon"}},
        {"type": "T"},
        {"id": "urn:j:\u{e9}", "type": "T", "name": {"type": "Property", "value": "caf\u{e9}"}}
    ]);
    let r = app.post_json("/ngsi-ld/v1/entityOperations/upsert", &body).await;
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["success"], json!(["urn:j:1", "urn:j:\u{e9}"]));
    let errors: Vec<(String, String)> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["entityId"].as_str().unwrap().to_owned(), e["error"]["detail"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert_eq!(errors[0], ("urn:j:2".into(), "a body with @context must be sent as application/ld+json".into()));
    assert_eq!(errors[1], ("".into(), "an entity must be a JSON object".into()));
    assert_eq!(errors[2], ("urn:j:3".into(), "attribute speed: value must not be null".into()));
    assert_eq!(errors[3], ("urn:j:4".into(), "attribute speed: observedAt must be a DateTime".into()));
    assert_eq!(errors[4], ("".into(), "an entity needs an id".into()));
    for id in ["urn:j:2", "urn:j:3", "urn:j:4"] {
        assert_eq!(app.get(&format!("/ngsi-ld/v1/entities/{id}")).await.status(), 404);
    }
    // What the text reader stored is what the parsed (JSON-LD) path stores for the same entity.
    let mut ld = good.clone();
    ld["id"] = json!("urn:j:ld");
    ld["@context"] = json!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld");
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entityOperations/create"))
        .header("Content-Type", "application/ld+json")
        .body(json!([ld]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let get = |id: &'static str| {
        let app = &app;
        async move {
            let mut e: Value = app.get(&format!("/ngsi-ld/v1/entities/{id}")).await.json().await.unwrap();
            e.as_object_mut().unwrap().remove("id");
            e
        }
    };
    let (text, tree) = (get("urn:j:1").await, get("urn:j:ld").await);
    assert_eq!(text["speed"]["unitCode"], "KMH");
    assert_eq!(text, tree);
}

/// A Link header whose context cannot be fetched fails every element of a JSON batch (207),
/// and a malformed body is refused whole.
#[tokio::test]
async fn json_batch_with_an_unavailable_context_or_bad_text() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entityOperations/upsert"))
        .header("Content-Type", "application/json")
        .header("Link", r#"<http://127.0.0.1:9/none.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#)
        .body(r#"[{"id":"urn:k:1","type":"T"},{"id":"urn:k:2","type":"T"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["errors"].as_array().unwrap().len(), 2);
    assert_eq!(out["errors"][1]["entityId"], "urn:k:2");
    assert_eq!(out["errors"][1]["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable");
    for (text, detail) in [
        (r#"[{"id":"urn:k:3","type":"T"},"#, "not valid JSON"),
        ("[]", "at least one element"),
        (r#"{"id":"urn:k:3"}"#, "must be a JSON array"),
    ] {
        let r = app
            .client
            .post(app.url("/ngsi-ld/v1/entityOperations/create"))
            .header("Content-Type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{text}");
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains(detail), "{p}");
    }
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:k:3").await.status(), 404);
}
