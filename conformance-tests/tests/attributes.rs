//! Entity attribute operations: Append (§5.6.3), Update (§5.6.2), Partial Attribute Update
//! (§5.6.4), Replace Attribute (§5.6.19) and Delete Attribute (§5.6.5), over the HTTP binding
//! of §6.6 and §6.7.

use conformance_tests::*;

fn attrs_path(id: &str, query: &str) -> String {
    format!("{API}/entities/{}/attrs{query}", encode(id))
}

fn attr_path(id: &str, attr: &str, query: &str) -> String {
    format!("{API}/entities/{}/attrs/{}{query}", encode(id), encode(attr))
}

async fn sensor(b: &Broker) -> String {
    let id = unique_id("Sensor");
    b.must_create(
        None,
        &json!({
            "id": id,
            "type": "Sensor",
            "temperature": {
                "type": "Property", "value": 20.5, "unitCode": "CEL",
                "accuracy": {"type": "Property", "value": 0.5}
            },
            "name": {"type": "Property", "value": "first"}
        }),
    )
    .await;
    id
}

/// §5.6.3: Append Entity Attributes with new attributes answers 204 and adds them.
#[tokio::test]
async fn append_new_attributes_is_204() {
    let b = Broker::get();
    let id = sensor(&b).await;
    let r = b
        .json(
            Method::POST,
            &attrs_path(&id, ""),
            None,
            &json!({"humidity": {"type": "Property", "value": 60}, "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}}),
        )
        .await;
    r.expect(204);
    assert!(r.text.is_empty());
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["humidity"]["value"], json!(60));
    assert_eq!(e["owner"]["object"], json!("urn:ngsi-ld:Person:1"));
    assert_eq!(e["temperature"]["value"], json!(20.5));
}

/// §5.6.3: without `noOverwrite`, Append overwrites an existing attribute (204).
#[tokio::test]
async fn append_overwrites_by_default() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::POST, &attrs_path(&id, ""), None, &json!({"name": {"type": "Property", "value": "second"}}))
        .await
        .expect(204);
    assert_eq!(b.must_retrieve(None, &id, "").await["name"]["value"], json!("second"));
}

/// §5.6.3, §6.6.3.1: with `options=noOverwrite`, existing attributes are left alone and the
/// answer is 207 with an UpdateResult naming the updated and the not updated attributes.
#[tokio::test]
async fn append_no_overwrite_is_207_with_update_result() {
    let b = Broker::get();
    let id = sensor(&b).await;
    let r = b
        .json(
            Method::POST,
            &attrs_path(&id, "?options=noOverwrite"),
            None,
            &json!({"name": {"type": "Property", "value": "second"}, "humidity": {"type": "Property", "value": 61}}),
        )
        .await;
    r.expect(207);
    let body = r.json();
    assert_eq!(body["updated"], json!(["humidity"]), "UpdateResult: {body}");
    let not_updated = body["notUpdated"].as_array().expect("notUpdated array");
    assert_eq!(not_updated.len(), 1, "UpdateResult: {body}");
    assert_eq!(not_updated[0]["attributeName"], json!("name"));
    assert!(not_updated[0]["reason"].is_string(), "NotUpdatedDetails.reason: {body}");
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["name"]["value"], json!("first"));
    assert_eq!(e["humidity"]["value"], json!(61));
}

/// §5.6.3.4: appending to an entity that does not exist answers 404 ResourceNotFound.
#[tokio::test]
async fn append_to_unknown_entity_is_404() {
    let b = Broker::get();
    b.json(Method::POST, &attrs_path(&unique_id("Sensor"), ""), None, &json!({"a": {"type": "Property", "value": 1}}))
        .await
        .expect_problem(404, "ResourceNotFound");
}

/// §5.6.2: Update Entity Attributes of existing attributes answers 204 and replaces them.
#[tokio::test]
async fn update_attributes_is_204() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PATCH, &attrs_path(&id, ""), None, &json!({"name": {"type": "Property", "value": "renamed"}}))
        .await
        .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["name"]["value"], json!("renamed"));
    assert_eq!(e["temperature"]["value"], json!(20.5));
}

/// §5.6.2 as the ETSI suite reads it (TP 011_01_03): Update Entity Attributes appends the
/// attributes the entity lacks (204); deleting one that does not exist with the NGSI-LD Null is
/// reported in `notUpdated` of a 207 UpdateResult, the others are updated.
#[tokio::test]
async fn update_attributes_appends_and_reports_impossible_deletions() {
    let b = Broker::get();
    let id = sensor(&b).await;
    let r = b
        .json(
            Method::PATCH,
            &attrs_path(&id, ""),
            None,
            &json!({"name": {"type": "Property", "value": "renamed"}, "added": {"type": "Property", "value": 1}}),
        )
        .await;
    r.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["name"]["value"], json!("renamed"));
    assert_eq!(e["added"]["value"], json!(1), "Update appends: {e}");
    let r = b
        .json(
            Method::PATCH,
            &attrs_path(&id, ""),
            None,
            &json!({"name": {"type": "Property", "value": "again"}, "nothere": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
        )
        .await;
    r.expect(207);
    let body = r.json();
    assert_eq!(body["updated"], json!(["name"]), "UpdateResult: {body}");
    assert_eq!(body["notUpdated"][0]["attributeName"], json!("nothere"), "UpdateResult: {body}");
}

/// §5.6.2 with NGSI-LD Null (ETSI TP 011_07): in Update Entity Attributes, an attribute
/// whose value is `urn:ngsi-ld:null` is deleted (204).
#[tokio::test]
async fn update_attributes_with_ngsi_ld_null_deletes() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(
        Method::PATCH,
        &attrs_path(&id, ""),
        None,
        &json!({"name": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
    )
    .await
    .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert!(e.get("name").is_none(), "name deleted: {e}");
    assert!(e.get("temperature").is_some());
}

/// §5.6.3 (ETSI TP 010_04_02): Append with `noOverwrite` of a new datasetId instance of an
/// existing attribute adds it and answers 204.
#[tokio::test]
async fn append_no_overwrite_new_dataset_id_is_204() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(
        Method::POST,
        &attrs_path(&id, "?options=noOverwrite"),
        None,
        &json!({"temperature": {"type": "Property", "value": 19, "datasetId": "urn:ngsi-ld:Dataset:second"}}),
    )
    .await
    .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(dataset_ids(&e["temperature"]), vec!["@default", "urn:ngsi-ld:Dataset:second"]);
}

/// §5.6.2.4: updating attributes of an entity that does not exist is 404 ResourceNotFound.
#[tokio::test]
async fn update_attributes_of_unknown_entity_is_404() {
    let b = Broker::get();
    b.json(Method::PATCH, &attrs_path(&unique_id("Sensor"), ""), None, &json!({"a": {"type": "Property", "value": 1}}))
        .await
        .expect_problem(404, "ResourceNotFound");
}

/// §5.6.4: Partial Attribute Update answers 204; only the given members change, the other
/// sub-attributes are kept.
#[tokio::test]
async fn partial_attribute_update_keeps_sub_attributes() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PATCH, &attr_path(&id, "temperature", ""), None, &json!({"type": "Property", "value": 25}))
        .await
        .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["temperature"]["value"], json!(25));
    assert_eq!(e["temperature"]["accuracy"]["value"], json!(0.5), "sub-attribute kept: {e}");
    assert_eq!(e["temperature"]["unitCode"], json!("CEL"), "unitCode kept: {e}");
}

/// §5.6.4: Partial Attribute Update with only a value (no type) is allowed.
#[tokio::test]
async fn partial_attribute_update_with_value_only() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PATCH, &attr_path(&id, "name", ""), None, &json!({"value": "patched"})).await.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["name"], json!({"type": "Property", "value": "patched"}));
}

/// §5.6.4.4: a partial update of an attribute the entity lacks is 404 ResourceNotFound.
#[tokio::test]
async fn partial_update_of_unknown_attribute_is_404() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PATCH, &attr_path(&id, "nothere", ""), None, &json!({"type": "Property", "value": 1}))
        .await
        .expect_problem(404, "ResourceNotFound");
}

/// §5.6.19: Replace Attribute answers 204 and the attribute is exactly the new one (its old
/// sub-attributes are gone).
#[tokio::test]
async fn replace_attribute_drops_old_sub_attributes() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PUT, &attr_path(&id, "temperature", ""), None, &json!({"type": "Property", "value": 30}))
        .await
        .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["temperature"], json!({"type": "Property", "value": 30}));
}

/// §5.6.19.4: replacing an attribute the entity lacks is 404 ResourceNotFound.
#[tokio::test]
async fn replace_unknown_attribute_is_404() {
    let b = Broker::get();
    let id = sensor(&b).await;
    b.json(Method::PUT, &attr_path(&id, "nothere", ""), None, &json!({"type": "Property", "value": 1}))
        .await
        .expect_problem(404, "ResourceNotFound");
}

/// §5.6.5: Delete Attribute answers 204; the attribute is gone and deleting it again is 404.
#[tokio::test]
async fn delete_attribute_then_404() {
    let b = Broker::get();
    let id = sensor(&b).await;
    let r = b.delete(&attr_path(&id, "name", ""), None).await;
    r.expect(204);
    assert!(r.text.is_empty());
    let e = b.must_retrieve(None, &id, "").await;
    assert!(e.get("name").is_none(), "name should be deleted: {e}");
    assert!(e.get("temperature").is_some());
    b.delete(&attr_path(&id, "name", ""), None).await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.5.4: deleting an attribute of an entity that does not exist is 404.
#[tokio::test]
async fn delete_attribute_of_unknown_entity_is_404() {
    let b = Broker::get();
    b.delete(&attr_path(&unique_id("Sensor"), "name", ""), None).await.expect_problem(404, "ResourceNotFound");
}

async fn multi_instance(b: &Broker) -> String {
    let id = unique_id("Sensor");
    b.must_create(
        None,
        &json!({
            "id": id,
            "type": "Sensor",
            "reading": [
                {"type": "Property", "value": 1},
                {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:a"},
                {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:b"}
            ]
        }),
    )
    .await;
    id
}

fn dataset_ids(attr: &Value) -> Vec<String> {
    let list = match attr {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![attr.clone()],
        _ => vec![],
    };
    let mut out: Vec<String> =
        list.iter().map(|i| i.get("datasetId").and_then(Value::as_str).unwrap_or("@default").to_owned()).collect();
    out.sort();
    out
}

/// §4.5.5: a multi-attribute is created with one instance per datasetId and retrieved as an
/// array of instances.
#[tokio::test]
async fn multi_attribute_instances_are_kept() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(dataset_ids(&e["reading"]), vec!["@default", "urn:ngsi-ld:Dataset:a", "urn:ngsi-ld:Dataset:b"]);
}

/// §5.6.5, §6.7.3.2: `datasetId` deletes only that instance of the attribute.
#[tokio::test]
async fn delete_attribute_instance_by_dataset_id() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    b.delete(&attr_path(&id, "reading", "?datasetId=urn:ngsi-ld:Dataset:a"), None).await.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(dataset_ids(&e["reading"]), vec!["@default", "urn:ngsi-ld:Dataset:b"]);
}

/// §5.6.5: without `datasetId` only the default instance is deleted.
#[tokio::test]
async fn delete_attribute_without_dataset_id_deletes_default_instance() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    b.delete(&attr_path(&id, "reading", ""), None).await.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(dataset_ids(&e["reading"]), vec!["urn:ngsi-ld:Dataset:a", "urn:ngsi-ld:Dataset:b"]);
}

/// §5.6.5, §6.7.3.2: `deleteAll=true` deletes every instance of the attribute.
#[tokio::test]
async fn delete_attribute_delete_all() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    b.delete(&attr_path(&id, "reading", "?deleteAll=true"), None).await.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert!(e.get("reading").is_none(), "every instance should be gone: {e}");
}

/// §5.6.5.4: deleting an unknown datasetId instance is 404 ResourceNotFound.
#[tokio::test]
async fn delete_unknown_dataset_id_is_404() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    b.delete(&attr_path(&id, "reading", "?datasetId=urn:ngsi-ld:Dataset:zzz"), None)
        .await
        .expect_problem(404, "ResourceNotFound");
}

/// §5.6.3, §4.5.5: appending an instance with a new datasetId adds it next to the others.
#[tokio::test]
async fn append_instance_with_new_dataset_id() {
    let b = Broker::get();
    let id = multi_instance(&b).await;
    b.json(
        Method::POST,
        &attrs_path(&id, ""),
        None,
        &json!({"reading": {"type": "Property", "value": 4, "datasetId": "urn:ngsi-ld:Dataset:c"}}),
    )
    .await
    .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(
        dataset_ids(&e["reading"]),
        vec!["@default", "urn:ngsi-ld:Dataset:a", "urn:ngsi-ld:Dataset:b", "urn:ngsi-ld:Dataset:c"]
    );
}
