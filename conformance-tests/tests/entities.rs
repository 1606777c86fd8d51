//! Entity provision and consumption: Create (§5.6.1), Retrieve (§5.7.1), Query (§5.7.2),
//! Replace (§5.6.18), Merge (§5.6.17) and Delete (§5.6.6) Entity, over the HTTP binding of
//! §6.4 and §6.5.

use conformance_tests::*;

fn vehicle(id: &str) -> Value {
    json!({
        "id": id,
        "type": "Vehicle",
        "brandName": {"type": "Property", "value": "Mercedes"},
        "speed": {"type": "Property", "value": 80, "unitCode": "KMH", "observedAt": "2024-01-01T10:00:00Z"},
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-8.5, 41.2]}}
    })
}

/// §5.6.1 / §6.4.3.1: Create Entity answers 201 Created with a Location header naming the
/// new entity, and no body.
#[tokio::test]
async fn create_entity_answers_201_with_location() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    let r = b.create_entity(None, &vehicle(&id)).await;
    r.expect(201);
    let loc = r.header("location").expect("Location header");
    assert!(
        location_path(loc) == format!("{API}/entities/{id}") || location_path(loc) == entity_path(&id, ""),
        "Location {loc} should name /ngsi-ld/v1/entities/{id}"
    );
    assert!(r.text.is_empty(), "201 of Create Entity has no body, got {:?}", r.text);
}

/// §5.6.1, §5.7.1, §4.5.2: what was created is retrieved, in normalized form, with every
/// Property, Relationship and GeoProperty and their sub-attributes.
#[tokio::test]
async fn created_entity_is_retrieved_normalized() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["id"], json!(id));
    assert_eq!(e["type"], json!("Vehicle"));
    assert_eq!(e["brandName"], json!({"type": "Property", "value": "Mercedes"}));
    assert_eq!(e["speed"]["type"], json!("Property"));
    assert_eq!(e["speed"]["value"], json!(80));
    assert_eq!(e["speed"]["unitCode"], json!("KMH"));
    let observed = e["speed"]["observedAt"].as_str().expect("observedAt");
    assert!(observed.starts_with("2024-01-01T10:00:00"), "observedAt {observed}");
    assert_eq!(e["isParked"], json!({"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"}));
    assert_eq!(e["location"]["type"], json!("GeoProperty"));
    assert_eq!(e["location"]["value"], json!({"type": "Point", "coordinates": [-8.5, 41.2]}));
    assert!(e.get("createdAt").is_none(), "no system attributes without options=sysAttrs");
}

/// §5.6.1: an entity with several types keeps all of them (§4.16, multi-typed entities).
#[tokio::test]
async fn entity_with_several_types_keeps_them() {
    let b = Broker::get();
    let id = unique_id("Multi");
    b.must_create(None, &json!({"id": id, "type": ["Vehicle", "Asset"], "name": {"type": "Property", "value": "x"}}))
        .await;
    let e = b.must_retrieve(None, &id, "").await;
    let mut types: Vec<String> =
        e["type"].as_array().expect("type array").iter().map(|t| t.as_str().unwrap_or("").to_owned()).collect();
    types.sort();
    assert_eq!(types, vec!["Asset".to_owned(), "Vehicle".to_owned()]);
}

/// §5.6.1.4: creating an entity whose id exists answers 409 AlreadyExists.
#[tokio::test]
async fn create_existing_entity_is_409() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    b.create_entity(None, &vehicle(&id)).await.expect_problem(409, "AlreadyExists");
}

/// §5.6.1.4, §4.6.2: an entity without a type is invalid: 400 BadRequestData.
#[tokio::test]
async fn create_entity_without_type_is_400() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.create_entity(None, &json!({"id": id, "brandName": {"type": "Property", "value": "x"}}))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §5.6.1.4, §4.5.2: a Property without a value is invalid: 400 BadRequestData.
#[tokio::test]
async fn create_entity_with_property_without_value_is_400() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.create_entity(None, &json!({"id": id, "type": "Vehicle", "speed": {"type": "Property"}}))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §5.6.1.4, §4.5.3: a Relationship whose object is not a URI is invalid: 400 BadRequestData.
#[tokio::test]
async fn create_entity_with_relationship_object_not_uri_is_400() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.create_entity(
        None,
        &json!({"id": id, "type": "Vehicle", "owner": {"type": "Relationship", "object": "not a uri"}}),
    )
    .await
    .expect_problem(400, "BadRequestData");
}

/// §5.6.1.4, §4.7: a GeoProperty whose value is not valid GeoJSON is 400 BadRequestData.
#[tokio::test]
async fn create_entity_with_invalid_geojson_is_400() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.create_entity(
        None,
        &json!({"id": id, "type": "Vehicle", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": "x"}}}),
    )
    .await
    .expect_problem(400, "BadRequestData");
}

/// §5.7.1.4: retrieving an entity that does not exist answers 404 ResourceNotFound.
#[tokio::test]
async fn retrieve_unknown_entity_is_404() {
    let b = Broker::get();
    b.retrieve(None, &unique_id("Nothing"), "").await.expect_problem(404, "ResourceNotFound");
}

/// §5.7.1 / §6.5.3.1: `type` on Retrieve Entity selects; an entity of another type is not
/// found (404).
#[tokio::test]
async fn retrieve_with_non_matching_type_is_404() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    b.must_retrieve(None, &id, "?type=Vehicle").await;
    b.retrieve(None, &id, "?type=Building").await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.18: Replace Entity answers 204 and the entity afterwards holds exactly the new
/// attributes.
#[tokio::test]
async fn replace_entity_replaces_all_attributes() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    let r = b
        .json(
            Method::PUT,
            &entity_path(&id, ""),
            None,
            &json!({"id": id, "type": "Vehicle", "color": {"type": "Property", "value": "red"}}),
        )
        .await;
    r.expect(204);
    assert!(r.text.is_empty());
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["color"]["value"], json!("red"));
    for gone in ["brandName", "speed", "isParked", "location"] {
        assert!(e.get(gone).is_none(), "{gone} should be gone after Replace Entity: {e}");
    }
}

/// §5.6.18.4: replacing an entity that does not exist answers 404 ResourceNotFound.
#[tokio::test]
async fn replace_unknown_entity_is_404() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.json(
        Method::PUT,
        &entity_path(&id, ""),
        None,
        &json!({"type": "Vehicle", "a": {"type": "Property", "value": 1}}),
    )
    .await
    .expect_problem(404, "ResourceNotFound");
}

/// §5.6.17: Merge Entity answers 204; given attributes are merged, others are kept.
#[tokio::test]
async fn merge_entity_updates_and_keeps_the_rest() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    let r = b
        .json(
            Method::PATCH,
            &entity_path(&id, ""),
            None,
            &json!({"speed": {"type": "Property", "value": 90}, "color": {"type": "Property", "value": "blue"}}),
        )
        .await;
    r.expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["speed"]["value"], json!(90));
    assert_eq!(e["color"]["value"], json!("blue"));
    assert_eq!(e["brandName"]["value"], json!("Mercedes"));
    assert_eq!(e["isParked"]["object"], json!("urn:ngsi-ld:OffStreetParking:Downtown1"));
}

/// §5.6.17.3: in Merge Entity the value `urn:ngsi-ld:null` deletes the attribute.
#[tokio::test]
async fn merge_entity_with_ngsi_ld_null_deletes_attribute() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    b.json(
        Method::PATCH,
        &entity_path(&id, ""),
        None,
        &json!({"brandName": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
    )
    .await
    .expect(204);
    let e = b.must_retrieve(None, &id, "").await;
    assert!(e.get("brandName").is_none(), "brandName should be deleted: {e}");
    assert_eq!(e["speed"]["value"], json!(80));
}

/// §5.6.17 / §6.5.3.4: Merge Entity accepts `application/merge-patch+json`.
#[tokio::test]
async fn merge_entity_accepts_merge_patch_json() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    let r = b
        .send(
            b.request(Method::PATCH, &entity_path(&id, ""))
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({"speed": {"type": "Property", "value": 12}}).to_string()),
        )
        .await;
    r.expect(204);
    assert_eq!(b.must_retrieve(None, &id, "").await["speed"]["value"], json!(12));
}

/// §5.6.17.4: merging into an entity that does not exist answers 404 ResourceNotFound.
#[tokio::test]
async fn merge_unknown_entity_is_404() {
    let b = Broker::get();
    b.json(
        Method::PATCH,
        &entity_path(&unique_id("Vehicle"), ""),
        None,
        &json!({"a": {"type": "Property", "value": 1}}),
    )
    .await
    .expect_problem(404, "ResourceNotFound");
}

/// §5.6.6: Delete Entity answers 204; the entity is gone afterwards (404).
#[tokio::test]
async fn delete_entity_then_it_is_gone() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    let r = b.delete(&entity_path(&id, ""), None).await;
    r.expect(204);
    assert!(r.text.is_empty());
    b.retrieve(None, &id, "").await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.6.4: deleting an entity that does not exist answers 404 ResourceNotFound.
#[tokio::test]
async fn delete_unknown_entity_is_404() {
    let b = Broker::get();
    b.delete(&entity_path(&unique_id("Vehicle"), ""), None).await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.6: after Delete Entity the id can be created again (201).
#[tokio::test]
async fn deleted_entity_id_can_be_reused() {
    let b = Broker::get();
    let id = unique_id("Vehicle");
    b.must_create(None, &vehicle(&id)).await;
    b.delete(&entity_path(&id, ""), None).await.expect(204);
    b.must_create(None, &vehicle(&id)).await;
}

/// §5.7.2: Query Entities by type and id answers 200 with a JSON array of the matching
/// entities only.
#[tokio::test]
async fn query_entities_by_type_and_id() {
    let b = Broker::get();
    let t = unique_tenant();
    let (a, c) = (unique_id("Vehicle"), unique_id("Vehicle"));
    b.must_create(Some(&t), &vehicle(&a)).await;
    b.must_create(Some(&t), &vehicle(&c)).await;
    b.must_create(Some(&t), &json!({"id": unique_id("Building"), "type": "Building"})).await;
    let r = b.get_json(&format!("{API}/entities?type=Vehicle"), Some(&t)).await;
    r.expect(200);
    let list = r.json();
    let mut ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|e| e["id"].as_str()).collect();
    ids.sort();
    let mut want = vec![a.as_str(), c.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&id={}", encode(&a)), Some(&t)).await;
    r.expect(200);
    assert_eq!(r.json().as_array().expect("array").len(), 1);
    assert_eq!(r.json()[0]["id"], json!(a));
}

/// §5.7.2, §5.5.9 / §6.3.13: `limit`/`offset` page through results and `count=true` puts the
/// total in `NGSILD-Results-Count`.
#[tokio::test]
async fn query_entities_paging_and_count() {
    let b = Broker::get();
    let t = unique_tenant();
    for _ in 0..5 {
        b.must_create(Some(&t), &json!({"id": unique_id("Pager"), "type": "Pager"})).await;
    }
    let r = b.get_json(&format!("{API}/entities?type=Pager&limit=2&count=true"), Some(&t)).await;
    r.expect(200);
    assert_eq!(r.json().as_array().expect("array").len(), 2);
    assert_eq!(r.header("ngsild-results-count"), Some("5"));
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let r = b.get_json(&format!("{API}/entities?type=Pager&limit=2&offset={offset}"), Some(&t)).await;
        r.expect(200);
        for e in r.json().as_array().expect("array") {
            seen.push(e["id"].as_str().expect("id").to_owned());
        }
    }
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((total, seen.len()), (5, 5), "paging must visit each entity exactly once");
}
