//! Error reporting: ProblemDetails bodies (§5.5.3, RFC 7807) with the NGSI-LD error types of
//! §5.5.2 and the HTTP statuses of §6.3.2.

use conformance_tests::*;

/// §5.5.3, §6.3.2: a body that is not valid JSON is 400 InvalidRequest, answered as a
/// ProblemDetails JSON object (type, title, detail).
#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let b = Broker::get();
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/json")
                .body("{\"id\": \"urn:ngsi-ld:X:1\", \"type\": "),
        )
        .await;
    let p = r.expect_problem(400, "InvalidRequest");
    assert!(p["detail"].is_string(), "a detail explains the error: {p}");
}

/// §5.5.2, §5.6.1.4: an entity id that is not a URI is 400 BadRequestData.
#[tokio::test]
async fn entity_id_not_uri_is_400_bad_request_data() {
    let b = Broker::get();
    b.create_entity(None, &json!({"id": "not a uri", "type": "T"})).await.expect_problem(400, "BadRequestData");
}

/// §5.7.1.4: an entity id in the path that is not a URI is 400 BadRequestData.
#[tokio::test]
async fn path_id_not_uri_is_400() {
    let b = Broker::get();
    b.get_json(&format!("{API}/entities/notAUri"), None).await.expect_problem(400, "BadRequestData");
}

/// §5.5.2, §5.7.1.4: an unknown entity is 404 ResourceNotFound with ProblemDetails.
#[tokio::test]
async fn unknown_entity_is_404_resource_not_found() {
    let b = Broker::get();
    let p = b.retrieve(None, &unique_id("Ghost"), "").await.expect_problem(404, "ResourceNotFound");
    assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
}

/// §5.5.2, §5.6.1.4: creating an existing entity is 409 AlreadyExists.
#[tokio::test]
async fn existing_entity_is_409_already_exists() {
    let b = Broker::get();
    let id = unique_id("Twin");
    b.must_create(None, &json!({"id": id, "type": "T"})).await;
    b.create_entity(None, &json!({"id": id, "type": "T"})).await.expect_problem(409, "AlreadyExists");
}

/// §6.3.20 / §5.5.2: a URI parameter the operation does not define makes the request malformed:
/// 400 InvalidRequest (as the ETSI suite's 059_01 and 018_16 check; Orion-LD says BadRequestData).
#[tokio::test]
async fn unknown_uri_parameter_is_400() {
    let b = Broker::get();
    let id = unique_id("Thing");
    b.must_create(None, &json!({"id": id, "type": "T"})).await;
    b.retrieve(None, &id, "?noSuchParam=1").await.expect_problem(400, "InvalidRequest");
    b.get_json(&format!("{API}/entities?type=T&noSuchParam=1"), None).await.expect_problem(400, "InvalidRequest");
}

/// §5.7.2.4, §6.3.10: asking for more than the broker's maximum page (1000 per Orion-LD and
/// Orbis) is 403 TooManyResults.
#[tokio::test]
async fn limit_above_maximum_is_403_too_many_results() {
    let b = Broker::get();
    b.get_json(&format!("{API}/entities?type=T&limit=1001"), None).await.expect_problem(403, "TooManyResults");
}

/// §6.3.10: a `limit` that is not a non-negative integer is 400 BadRequestData.
#[tokio::test]
async fn invalid_limit_is_400() {
    let b = Broker::get();
    b.get_json(&format!("{API}/entities?type=T&limit=-1"), None).await.expect_problem(400, "BadRequestData");
    b.get_json(&format!("{API}/entities?type=T&limit=abc"), None).await.expect_problem(400, "BadRequestData");
}

/// §6.3.7, §6.3.20: an unknown value of `options` is 400 InvalidRequest (ETSI 018_16_02).
#[tokio::test]
async fn unknown_option_is_400() {
    let b = Broker::get();
    let id = unique_id("Thing");
    b.must_create(None, &json!({"id": id, "type": "T"})).await;
    b.retrieve(None, &id, "?options=noSuchOption").await.expect_problem(400, "InvalidRequest");
}

/// §4.6.2: an attribute whose `type` is not an NGSI-LD attribute type is 400 BadRequestData.
#[tokio::test]
async fn unknown_attribute_type_is_400() {
    let b = Broker::get();
    b.create_entity(None, &json!({"id": unique_id("Thing"), "type": "T", "a": {"type": "Bogus", "value": 1}}))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §4.6.2: attribute names that are not valid (e.g. containing forbidden characters) are 400
/// BadRequestData.
#[tokio::test]
async fn invalid_attribute_name_is_400() {
    let b = Broker::get();
    b.create_entity(
        None,
        &json!({"id": unique_id("Thing"), "type": "T", "bad<name>": {"type": "Property", "value": 1}}),
    )
    .await
    .expect_problem(400, "BadRequestData");
}

/// §5.7.2.4: Query Entities without any selector (type, id, idPattern, attrs, q, geo) is 400
/// BadRequestData.
#[tokio::test]
async fn too_broad_query_is_400() {
    let b = Broker::get();
    b.get_json(&format!("{API}/entities"), None).await.expect_problem(400, "BadRequestData");
}

/// §6.3.2 (HTTP semantics): a verb a resource does not support is 405 with an `Allow` header.
#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let b = Broker::get();
    let r = b.send(b.request(Method::PUT, &format!("{API}/entityOperations/create"))).await;
    assert_eq!(r.status, 405, "{}", r.text);
    let allow = r.header("allow").unwrap_or_else(|| panic!("Allow header; headers {:?}", r.headers));
    assert!(allow.contains("POST"), "Allow: {allow}");
}

/// §5.5.3: an empty body where one is required is 400 (InvalidRequest or BadRequestData).
#[tokio::test]
async fn empty_body_is_400() {
    let b = Broker::get();
    let r = b
        .send(b.request(Method::POST, &format!("{API}/entities")).header("Content-Type", "application/json").body(""))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let t = r.json()["type"].as_str().unwrap_or("").to_owned();
    assert!(t == format!("{ERROR_PREFIX}InvalidRequest") || t == format!("{ERROR_PREFIX}BadRequestData"), "type {t}");
}

/// §5.5.3: every error body has the same ProblemDetails members, whatever the operation.
#[tokio::test]
async fn problem_details_shape_is_uniform() {
    let b = Broker::get();
    let id = unique_id("Ghost");
    let cases = [
        b.delete(&entity_path(&id, ""), None).await,
        b.json(
            Method::PATCH,
            &format!("{API}/entities/{}/attrs", encode(&id)),
            None,
            &json!({"a": {"type": "Property", "value": 1}}),
        )
        .await,
        b.delete(&format!("{API}/entities/{}/attrs/a", encode(&id)), None).await,
    ];
    for r in &cases {
        r.expect_problem(404, "ResourceNotFound");
    }
}
