//! Batch entity operations: Create (§5.6.7), Upsert (§5.6.8), Update (§5.6.9), Delete
//! (§5.6.10) and Merge (§5.6.20) Batch of Entities, over the HTTP binding of §6.14–§6.18 and
//! §6.31, with BatchOperationResult bodies (§5.2.16, §5.2.17).

use conformance_tests::*;

fn op(name: &str, query: &str) -> String {
    format!("{API}/entityOperations/{name}{query}")
}

fn room(id: &str, temp: f64) -> Value {
    json!({"id": id, "type": "Room", "temperature": {"type": "Property", "value": temp}})
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_owned())
        .collect();
    out.sort();
    out
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// Checks a 207 BatchOperationResult (§5.2.16): `success` lists exactly `ok`, `errors` lists
/// exactly `failed` with a BatchEntityError (§5.2.17) whose error is ProblemDetails of `kind`.
fn check_batch_result(r: &Resp, ok: &[&str], failed: &[&str], kind: &str) {
    r.expect(207);
    let body = r.json();
    assert_eq!(sorted_strings(&body["success"]), sorted(ok), "success of {body}");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("errors array in {body}"));
    let mut ids: Vec<String> = errors.iter().map(|e| e["entityId"].as_str().unwrap_or("").to_owned()).collect();
    ids.sort();
    assert_eq!(ids, sorted(failed), "errors of {body}");
    for e in errors {
        assert_eq!(e["error"]["type"], json!(format!("{ERROR_PREFIX}{kind}")), "BatchEntityError {e}");
        assert!(e["error"]["title"].is_string(), "BatchEntityError title {e}");
    }
}

/// §5.6.7, §6.14.3.1: Batch Create of new entities answers 201 with the array of their ids.
#[tokio::test]
async fn batch_create_is_201_with_ids() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    let r = b.json(Method::POST, &op("create", ""), None, &json!([room(&x, 20.0), room(&y, 21.0)])).await;
    r.expect(201);
    assert_eq!(sorted_strings(&r.json()), sorted(&[&x, &y]));
    assert_eq!(b.must_retrieve(None, &y, "").await["temperature"]["value"], json!(21.0));
}

/// §5.6.7.4: Batch Create where one entity exists answers 207; the new one is created and
/// the existing one is reported with AlreadyExists.
#[tokio::test]
async fn batch_create_with_existing_entity_is_207() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    let r = b.json(Method::POST, &op("create", ""), None, &json!([room(&x, 2.0), room(&y, 3.0)])).await;
    check_batch_result(&r, &[&y], &[&x], "AlreadyExists");
    assert_eq!(b.must_retrieve(None, &x, "").await["temperature"]["value"], json!(1.0), "existing untouched");
    b.must_retrieve(None, &y, "").await;
}

/// §5.6.7.4: an invalid entity inside a batch is reported with BadRequestData in a 207; the
/// valid ones are created.
#[tokio::test]
async fn batch_create_with_invalid_entity_is_207() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    let bad = json!({"id": y, "type": "Room", "temperature": {"type": "Property"}});
    let r = b.json(Method::POST, &op("create", ""), None, &json!([room(&x, 2.0), bad])).await;
    check_batch_result(&r, &[&x], &[&y], "BadRequestData");
    b.retrieve(None, &y, "").await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.7.4: a batch body that is not an array of entities is 400 BadRequestData.
#[tokio::test]
async fn batch_create_with_non_array_body_is_400() {
    let b = Broker::get();
    b.json(Method::POST, &op("create", ""), None, &room(&unique_id("Room"), 1.0))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §5.6.8, §6.15.3.1: Batch Upsert of new entities answers 201 with the created ids.
#[tokio::test]
async fn batch_upsert_new_entities_is_201() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    let r = b.json(Method::POST, &op("upsert", ""), None, &json!([room(&x, 1.0), room(&y, 2.0)])).await;
    r.expect(201);
    assert_eq!(sorted_strings(&r.json()), sorted(&[&x, &y]));
}

/// §5.6.8, §6.15.3.1: Batch Upsert where every entity exists answers 204.
#[tokio::test]
async fn batch_upsert_existing_entities_is_204() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    b.must_create(None, &room(&y, 1.0)).await;
    let r = b.json(Method::POST, &op("upsert", ""), None, &json!([room(&x, 5.0), room(&y, 6.0)])).await;
    r.expect(204);
    assert_eq!(b.must_retrieve(None, &x, "").await["temperature"]["value"], json!(5.0));
    assert_eq!(b.must_retrieve(None, &y, "").await["temperature"]["value"], json!(6.0));
}

/// §5.6.8, §6.15.3.1: a mixed Batch Upsert answers 201 listing only the created ids.
#[tokio::test]
async fn batch_upsert_mixed_is_201_with_created_ids() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    let r = b.json(Method::POST, &op("upsert", ""), None, &json!([room(&x, 5.0), room(&y, 6.0)])).await;
    r.expect(201);
    assert_eq!(sorted_strings(&r.json()), sorted(&[&y]));
    assert_eq!(b.must_retrieve(None, &x, "").await["temperature"]["value"], json!(5.0));
}

/// §5.6.8: Batch Upsert replaces existing entities by default (`options=replace`): attributes
/// not in the new version are gone.
#[tokio::test]
async fn batch_upsert_replace_is_the_default() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &json!({"id": x, "type": "Room", "temperature": {"type": "Property", "value": 1}, "name": {"type": "Property", "value": "old"}})).await;
    b.json(Method::POST, &op("upsert", ""), None, &json!([room(&x, 5.0)])).await.expect(204);
    let e = b.must_retrieve(None, &x, "").await;
    assert!(e.get("name").is_none(), "replace drops attributes: {e}");
    b.json(
        Method::POST,
        &op("upsert", "?options=replace"),
        None,
        &json!([{"id": x, "type": "Room", "name": {"type": "Property", "value": "n"}}]),
    )
    .await
    .expect(204);
    let e = b.must_retrieve(None, &x, "").await;
    assert!(e.get("temperature").is_none(), "options=replace drops attributes: {e}");
}

/// §5.6.8: with `options=update` Batch Upsert updates existing entities, keeping the
/// attributes not given.
#[tokio::test]
async fn batch_upsert_update_keeps_other_attributes() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &json!({"id": x, "type": "Room", "temperature": {"type": "Property", "value": 1}, "name": {"type": "Property", "value": "old"}})).await;
    b.json(Method::POST, &op("upsert", "?options=update"), None, &json!([room(&x, 5.0)])).await.expect(204);
    let e = b.must_retrieve(None, &x, "").await;
    assert_eq!(e["temperature"]["value"], json!(5.0));
    assert_eq!(e["name"]["value"], json!("old"));
}

/// §5.6.8.4: an invalid entity in an upsert batch is reported in a 207.
#[tokio::test]
async fn batch_upsert_with_invalid_entity_is_207() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    let bad = json!({"id": y, "type": "Room", "temperature": {"type": "Property"}});
    let r = b.json(Method::POST, &op("upsert", ""), None, &json!([room(&x, 2.0), bad])).await;
    check_batch_result(&r, &[&x], &[&y], "BadRequestData");
}

/// §5.6.9, §6.16.3.1: Batch Update of existing entities answers 204 and updates (appends)
/// their attributes.
#[tokio::test]
async fn batch_update_is_204() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    b.must_create(None, &room(&y, 1.0)).await;
    let r = b
        .json(
            Method::POST,
            &op("update", ""),
            None,
            &json!([room(&x, 7.0), {"id": y, "type": "Room", "name": {"type": "Property", "value": "y"}}]),
        )
        .await;
    r.expect(204);
    assert_eq!(b.must_retrieve(None, &x, "").await["temperature"]["value"], json!(7.0));
    let e = b.must_retrieve(None, &y, "").await;
    assert_eq!(e["name"]["value"], json!("y"));
    assert_eq!(e["temperature"]["value"], json!(1.0));
}

/// §5.6.9: with `options=noOverwrite` Batch Update leaves existing attributes alone and only
/// adds new ones.
#[tokio::test]
async fn batch_update_no_overwrite_keeps_existing_values() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &room(&x, 1.0)).await;
    let frag = json!([{"id": x, "type": "Room", "temperature": {"type": "Property", "value": 9}, "name": {"type": "Property", "value": "n"}}]);
    let r = b.json(Method::POST, &op("update", "?options=noOverwrite"), None, &frag).await;
    assert!(r.status == 204 || r.status == 207, "204 or 207 expected, got {}: {}", r.status, r.text);
    let e = b.must_retrieve(None, &x, "").await;
    assert_eq!(e["temperature"]["value"], json!(1.0), "noOverwrite keeps the value: {e}");
    assert_eq!(e["name"]["value"], json!("n"), "noOverwrite still adds new attributes: {e}");
}

/// §5.6.9 (ETSI TP 005_02_03): a Batch Update with `options=noOverwrite` that leaves an
/// existing attribute unwritten answers 207, not 204.
#[tokio::test]
async fn batch_update_no_overwrite_with_existing_attribute_is_207() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &room(&x, 1.0)).await;
    let frag = json!([{"id": x, "type": "Room", "temperature": {"type": "Property", "value": 9}, "name": {"type": "Property", "value": "n"}}]);
    b.json(Method::POST, &op("update", "?options=noOverwrite"), None, &frag).await.expect(207);
}

/// §5.6.9 (ETSI TP 005_02_02): Batch Update with `options=noOverwrite` that only adds new
/// attributes answers 204.
#[tokio::test]
async fn batch_update_no_overwrite_with_only_new_attributes_is_204() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &room(&x, 1.0)).await;
    let frag = json!([{"id": x, "type": "Room", "name": {"type": "Property", "value": "n"}}]);
    b.json(Method::POST, &op("update", "?options=noOverwrite"), None, &frag).await.expect(204);
    assert_eq!(b.must_retrieve(None, &x, "").await["name"]["value"], json!("n"));
}

/// §5.6.8 (ETSI TP 004_07): an upsert batch naming the same new id twice creates it once
/// (201) with both fragments applied.
#[tokio::test]
async fn batch_upsert_with_duplicate_ids_is_201() {
    let b = Broker::get();
    let x = unique_id("Room");
    let r = b
        .json(
            Method::POST,
            &op("upsert", "?options=update"),
            None,
            &json!([room(&x, 1.0), {"id": x, "type": "Room", "name": {"type": "Property", "value": "n"}}]),
        )
        .await;
    r.expect(201);
    let e = b.must_retrieve(None, &x, "").await;
    assert_eq!(e["name"]["value"], json!("n"), "{e}");
    assert_eq!(e["temperature"]["value"], json!(1.0), "{e}");
}

/// §5.6.10, §6.17.3.1: Batch Delete of existing ids answers 204 and the entities are gone.
#[tokio::test]
async fn batch_delete_is_204() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    b.must_create(None, &room(&y, 1.0)).await;
    b.json(Method::POST, &op("delete", ""), None, &json!([x, y])).await.expect(204);
    b.retrieve(None, &x, "").await.expect_problem(404, "ResourceNotFound");
    b.retrieve(None, &y, "").await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.10.4: Batch Delete with an unknown id answers 207 with ResourceNotFound for it.
#[tokio::test]
async fn batch_delete_with_unknown_id_is_207() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    let r = b.json(Method::POST, &op("delete", ""), None, &json!([x, y])).await;
    check_batch_result(&r, &[&x], &[&y], "ResourceNotFound");
    b.retrieve(None, &x, "").await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.20, §6.31.3.1: Batch Merge answers 204; given attributes are merged, others kept.
#[tokio::test]
async fn batch_merge_is_204() {
    let b = Broker::get();
    let x = unique_id("Room");
    b.must_create(None, &json!({"id": x, "type": "Room", "temperature": {"type": "Property", "value": 1}, "name": {"type": "Property", "value": "old"}})).await;
    b.json(Method::POST, &op("merge", ""), None, &json!([room(&x, 4.0)])).await.expect(204);
    let e = b.must_retrieve(None, &x, "").await;
    assert_eq!(e["temperature"]["value"], json!(4.0));
    assert_eq!(e["name"]["value"], json!("old"));
}

/// §5.6.20.4: Batch Merge of an entity that does not exist answers 207 with
/// ResourceNotFound for it.
#[tokio::test]
async fn batch_merge_with_unknown_entity_is_207() {
    let b = Broker::get();
    let (x, y) = (unique_id("Room"), unique_id("Room"));
    b.must_create(None, &room(&x, 1.0)).await;
    let r = b.json(Method::POST, &op("merge", ""), None, &json!([room(&x, 2.0), room(&y, 2.0)])).await;
    check_batch_result(&r, &[&x], &[&y], "ResourceNotFound");
}
