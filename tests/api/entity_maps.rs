//! Entity maps (GS CIM 009 §5.5.9.3, §5.14), black-box: maps made by a query
//! (`entityMap=true`) or by `GET /entityMaps`, retrieved, updated and deleted per tenant, and
//! walked page by page with the filters checked again, pruned, counted and linked; and a map
//! over a second broker registered as a context source.

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

const MAPS: &str = "/ngsi-ld/v1/entityMaps";

fn vehicle(id: &str, speed: i64) -> Value {
    json!({"id": id, "type": "Vehicle", "speed": {"type": "Property", "value": speed}})
}

/// The `NGSILD-EntityMap` header of an answer.
fn map_header(r: &Response) -> String {
    r.headers().get("ngsild-entitymap").expect("an NGSILD-EntityMap header").to_str().unwrap().to_owned()
}

/// The map id a header names (its last path segment, as the ETSI suite reads it).
fn map_id(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_owned()
}

/// The URL of one map.
fn map_url(app: &TestApp, id: &str) -> String {
    app.url(&format!("{MAPS}/{}", id.replace(':', "%3A")))
}

async fn retrieve(app: &TestApp, id: &str) -> Response {
    app.client.get(map_url(app, id)).send().await.unwrap()
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Response {
    app.client
        .patch(map_url(app, id))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Creates a map with `GET /entityMaps?<query>`, asserts 201 and returns (header, body).
async fn create_map(app: &TestApp, query: &str) -> (String, Value) {
    let r = app.get(&format!("{MAPS}?{query}")).await;
    assert_eq!(r.status(), 201, "map creation");
    let h = map_header(&r);
    (h, r.json().await.unwrap())
}

/// A query presenting a map in the NGSILD-EntityMap header.
async fn walk(app: &TestApp, query: &str, location: &str) -> Response {
    app.client
        .get(app.url(&format!("/ngsi-ld/v1/entities?{query}")))
        .header("NGSILD-EntityMap", location)
        .send()
        .await
        .unwrap()
}

fn ids(body: &Value) -> Vec<String> {
    body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// The Link header values of an answer, joined.
fn links(r: &Response) -> String {
    r.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>().join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_entity_map_true_answers_201_with_the_page_and_the_map_header() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:slow", 30)).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:fast", 90)).await;
    let plain: Value = app.get("/ngsi-ld/v1/entities?type=Vehicle").await.json().await.unwrap();
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&entityMap=true").await;
    assert_eq!(r.status(), 201);
    let location = map_header(&r);
    assert!(location.starts_with(&app.address), "an absolute URL from the request's host: {location}");
    assert!(location.contains("/ngsi-ld/v1/entityMaps/urn:ngsi-ld:entitymap:"), "{location}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, plain, "the page is the ordinary query answer");

    let m: Value = retrieve(&app, &map_id(&location)).await.json().await.unwrap();
    assert_eq!(m["entityMap"]["urn:ngsi-ld:Vehicle:slow"], json!(["@none"]));
    assert_eq!(m["entityMap"]["urn:ngsi-ld:Vehicle:fast"], json!(["@none"]));

    // Presenting the map: 200, the header echoed.
    let r = walk(&app, "type=Vehicle", &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(map_header(&r), location);
    let mut got = ids(&r.json().await.unwrap());
    got.sort();
    assert_eq!(got, ["urn:ngsi-ld:Vehicle:fast", "urn:ngsi-ld:Vehicle:slow"]);
    // The map id alone in the entityMap parameter names it too.
    let r = app.get(&format!("/ngsi-ld/v1/entities?type=Vehicle&entityMap={}", map_id(&location))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(map_header(&r), location);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_entity_maps_makes_a_map_narrowed_by_the_query() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:slow", 30)).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:fast", 90)).await;
    let (location, m) = create_map(&app, "type=Vehicle").await;
    assert_eq!(m["type"], "EntityMap");
    assert_eq!(m["id"], map_id(&location));
    assert!(m["expiresAt"].as_str().is_some_and(|s| s.ends_with('Z')), "{m}");
    assert_eq!(m["linkedMaps"], json!({}));
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:slow": ["@none"], "urn:ngsi-ld:Vehicle:fast": ["@none"]}));
    assert!(m.get("speed").is_none());

    let (_, m) = create_map(&app, "type=Vehicle&q=speed%3E50").await;
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:fast": ["@none"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_creation_refuses_too_broad_queries_and_bad_lifetimes_and_bounds_lifetimes() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:1", 30)).await;
    assert_problem(app.get(&format!("{MAPS}?id=urn:ngsi-ld:Vehicle:1")).await, 400, "BadRequestData").await;
    for bad in ["1hour", "P", "PT", "-PT1H", "P1H"] {
        let r = app.get(&format!("{MAPS}?type=Vehicle&entityMapLifetime={bad}")).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&entityMap=true&entityMapLifetime=soon").await;
    assert_problem(r, 400, "BadRequestData").await;

    let now = chrono_now();
    let (_, m) = create_map(&app, "type=Vehicle&entityMapLifetime=P3650D").await;
    let ahead = expiry(&m) - now;
    assert!(ahead > 0 && ahead <= 86_400_000 + 5_000, "clamped to a day: {ahead}");
    let (_, m) = create_map(&app, "type=Vehicle&entityMapLifetime=PT1M").await;
    let ahead = expiry(&m) - now;
    assert!((55_000..=65_000).contains(&ahead), "a minute: {ahead}");
    let (_, m) = create_map(&app, "type=Vehicle").await;
    let ahead = expiry(&m) - now;
    assert!((3_590_000..=3_610_000).contains(&ahead), "an hour by default: {ahead}");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A map's expiresAt in milliseconds.
fn expiry(m: &Value) -> i64 {
    orbis::model::parse_datetime(m["expiresAt"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_update_and_delete_a_map_per_tenant() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:1", 30)).await;
    let (location, _) = create_map(&app, "type=Vehicle").await;
    let id = map_id(&location);

    let r = retrieve(&app, &id).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:1": ["@none"]}));
    assert_problem(app.get(&format!("{MAPS}/not%20a%20uri")).await, 400, "BadRequestData").await;
    assert_problem(retrieve(&app, "urn:ngsi-ld:entitymap:nothing").await, 404, "ResourceNotFound").await;

    // Another tenant sees no map, and cannot delete it.
    let other = |m: reqwest::Method| app.client.request(m, map_url(&app, &id)).header("NGSILD-Tenant", "other");
    let r = other(reqwest::Method::GET).send().await.unwrap();
    let body = assert_problem(r, 404, "ResourceNotFound").await;
    assert!(!body.to_string().contains("urn:ngsi-ld:Vehicle:1"));
    let r = other(reqwest::Method::DELETE).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = other(reqwest::Method::GET).header("Fiware-Service", "other").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(retrieve(&app, &id).await.status(), 200, "the owner's map survives");

    // PATCH: expiresAt is bounded by the maximum lifetime; output-only members are ignored.
    let r = patch(
        &app,
        &id,
        json!({"expiresAt": "2099-01-01T00:00:00Z", "id": "urn:x:y", "type": "Other",
               "entityMap": {"urn:ngsi-ld:Vehicle:injected": ["@none"]}, "linkedMaps": {"r": "x"}}),
    )
    .await;
    assert_eq!(r.status(), 204);
    let m: Value = retrieve(&app, &id).await.json().await.unwrap();
    assert!(expiry(&m) <= chrono_now() + 86_400_000, "clamped: {m}");
    assert!(expiry(&m) > chrono_now() + 86_000_000, "applied: {m}");
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:1": ["@none"]}));
    assert_eq!(m["linkedMaps"], json!({}));
    assert_eq!(m["id"], id);
    assert_eq!(m["type"], "EntityMap");
    let soon = orbis::model::format_millis(chrono_now() + 600_000);
    assert_eq!(patch(&app, &id, json!({"expiresAt": soon})).await.status(), 204);
    let m: Value = retrieve(&app, &id).await.json().await.unwrap();
    assert!((expiry(&m) - (chrono_now() + 600_000)).abs() < 5_000, "{m}");
    assert_problem(patch(&app, &id, json!({"expiresAt": "tomorrow"})).await, 400, "BadRequestData").await;
    assert_problem(patch(&app, &id, json!({"expiresAt": 5})).await, 400, "BadRequestData").await;
    assert_problem(patch(&app, &id, json!([1])).await, 400, "BadRequestData").await;
    let r = patch(&app, "urn:ngsi-ld:entitymap:nothing", json!({"expiresAt": "2099-01-01T00:00:00Z"})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.patch(map_url(&app, &id)).header("Content-Type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);
    // A past instant expires the map.
    assert_eq!(patch(&app, &id, json!({"expiresAt": "2000-01-01T00:00:00Z"})).await.status(), 204);
    assert_problem(retrieve(&app, &id).await, 404, "ResourceNotFound").await;
    let r = patch(&app, &id, json!({"expiresAt": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(r.status(), 404, "an expired map cannot be revived");

    // DELETE: 204 with no body, then 404.
    let (location, _) = create_map(&app, "type=Vehicle").await;
    let id = map_id(&location);
    let r = app.client.delete(map_url(&app, &id)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    assert_problem(retrieve(&app, &id).await, 404, "ResourceNotFound").await;
    let r = app.client.delete(map_url(&app, &id)).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.delete(app.url(&format!("{MAPS}/not%20a%20uri"))).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_over_a_map_are_full_linked_pruned_and_counted() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create(vehicle(&format!("urn:ngsi-ld:Vehicle:p{i}"), 50)).await;
    }
    // Not in the map: created after it.
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&entityMap=true&limit=2").await;
    assert_eq!(r.status(), 201);
    let location = map_header(&r);
    let l = links(&r);
    assert!(l.contains("rel=\"next\"") && l.contains("offset=2"), "{l}");
    assert!(!l.contains("rel=\"prev\""), "{l}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p1"]);
    app.create(vehicle("urn:ngsi-ld:Vehicle:late", 50)).await;

    let r = walk(&app, "type=Vehicle&limit=2", &location).await;
    assert_eq!(r.status(), 200);
    let l = links(&r);
    assert!(l.contains("rel=\"next\"") && l.contains("offset=2") && l.contains("type=Vehicle"), "{l}");
    assert!(!l.contains("urn:ngsi-ld:Vehicle"), "the links carry the query, not the ids: {l}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p1"]);

    let r = walk(&app, "type=Vehicle&limit=2&offset=2", &location).await;
    let l = links(&r);
    assert!(l.contains("rel=\"prev\"") && l.contains("offset=0") && l.contains("offset=4"), "{l}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p2", "urn:ngsi-ld:Vehicle:p3"]);

    let r = walk(&app, "type=Vehicle&limit=2&offset=4", &location).await;
    let l = links(&r);
    assert!(!l.contains("rel=\"next\""), "the last page has no next link: {l}");
    assert!(l.contains("rel=\"prev\"") && l.contains("offset=2"), "{l}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p4"], "the late entity is not in the map");

    // A deleted entity is skipped, the page still filled, and the map no longer lists it.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:p1")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = walk(&app, "type=Vehicle&limit=3", &location).await;
    assert_eq!(
        ids(&r.json().await.unwrap()),
        ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p2", "urn:ngsi-ld:Vehicle:p3"]
    );
    let m: Value = retrieve(&app, &map_id(&location)).await.json().await.unwrap();
    let listed: Vec<&String> = m["entityMap"].as_object().unwrap().keys().collect();
    assert_eq!(
        listed,
        ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p2", "urn:ngsi-ld:Vehicle:p3", "urn:ngsi-ld:Vehicle:p4"]
    );

    // An entity changed so that it no longer matches is pruned too (the filters are checked
    // again on every page); count covers the whole map.
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:p4/attrs/speed"))
        .json(&json!({"value": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = walk(&app, "type=Vehicle&q=speed%3E20&limit=1&count=true", &location).await;
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p0"]);
    let m: Value = retrieve(&app, &map_id(&location)).await.json().await.unwrap();
    assert!(m["entityMap"].get("urn:ngsi-ld:Vehicle:p4").is_none(), "{m}");
    let r = walk(&app, "type=Vehicle&limit=0&count=true", &location).await;
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_expired_map_gives_a_new_one() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:1", 30)).await;
    let unknown = format!("{}{MAPS}/urn:ngsi-ld:entitymap:gone", app.address);
    let r = walk(&app, "type=Vehicle", &unknown).await;
    assert_eq!(r.status(), 201);
    let fresh = map_header(&r);
    assert_ne!(fresh, unknown);
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:1"]);
    assert_eq!(retrieve(&app, &map_id(&fresh)).await.status(), 200);

    assert_eq!(patch(&app, &map_id(&fresh), json!({"expiresAt": "2000-01-01T00:00:00Z"})).await.status(), 204);
    let r = walk(&app, "type=Vehicle", &fresh).await;
    assert_eq!(r.status(), 201);
    assert_ne!(map_header(&r), fresh);
    // Another tenant's map is unknown here too.
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities?type=Vehicle"))
        .header("NGSILD-EntityMap", map_header(&r))
        .header("NGSILD-Tenant", "other")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
}

async fn register(app: &TestApp, body: Value) -> String {
    let r = app.post_json("/ngsi-ld/v1/csourceRegistrations", &body).await;
    assert_eq!(r.status(), 201, "registration refused: {:?}", r.text().await);
    r.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_over_a_context_source_lists_its_entities_under_the_registration() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    a.create(json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "name": {"type": "Property", "value": "lab"}})).await;
    for (i, t) in [(2, 19), (3, 20), (4, 21)] {
        b.create(json!({"id": format!("urn:ngsi-ld:Room:{i}"), "type": "Room",
                        "temperature": {"type": "Property", "value": t}}))
            .await;
    }
    // Room:1 is held by both.
    b.create(json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temperature": {"type": "Property", "value": 22}}))
        .await;
    let reg = register(
        &a,
        json!({"type": "ContextSourceRegistration", "endpoint": b.address,
               "information": [{"entities": [{"type": "Room"}]}]}),
    )
    .await;

    let (location, m) = create_map(&a, "type=Room").await;
    assert_eq!(m["entityMap"]["urn:ngsi-ld:Room:1"], json!(["@none", reg]));
    for i in 2..=4 {
        assert_eq!(m["entityMap"][format!("urn:ngsi-ld:Room:{i}")], json!([reg]), "{m}");
    }
    let r = a.get("/ngsi-ld/v1/entities?type=Room&entityMap=true&limit=2").await;
    assert_eq!(r.status(), 201);
    let page: Value = r.json().await.unwrap();
    assert_eq!(ids(&page), ["urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:2"]);
    assert_eq!(page[0]["name"]["value"], "lab", "merged with the local part: {page}");
    assert_eq!(page[0]["temperature"]["value"], 22);

    // Retrieve Entity with a new map names where the entity is held.
    let r = a.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:3?entityMap=true").await;
    assert_eq!(r.status(), 200);
    let m: Value = retrieve(&a, &map_id(&map_header(&r))).await.json().await.unwrap();
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Room:3": [reg]}));

    // Paging over the map returns the local and the remote entities.
    let r = walk(&a, "type=Room&limit=2&offset=2&count=true", &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "4");
    let page: Value = r.json().await.unwrap();
    assert_eq!(ids(&page), ["urn:ngsi-ld:Room:3", "urn:ngsi-ld:Room:4"]);
    assert_eq!(page[1]["temperature"]["value"], 21);

    // An entity deleted at the source mid-walk is dropped silently; the page stays full.
    let r = b.client.delete(b.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:2")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = walk(&a, "type=Room&limit=3", &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:3", "urn:ngsi-ld:Room:4"]);
    let m: Value = retrieve(&a, &map_id(&location)).await.json().await.unwrap();
    assert!(m["entityMap"].get("urn:ngsi-ld:Room:2").is_none(), "{m}");
    // The source's copy of Room:1 gone, the broker's own stays: only @none is left.
    let r = b.client.delete(b.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = walk(&a, "type=Room&limit=1", &location).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(ids(&page), ["urn:ngsi-ld:Room:1"]);
    assert!(page[0].get("temperature").is_none(), "{page}");
    let m: Value = retrieve(&a, &map_id(&location)).await.json().await.unwrap();
    assert_eq!(m["entityMap"]["urn:ngsi-ld:Room:1"], json!(["@none"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_query_makes_and_walks_a_map_of_local_entities() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.create(vehicle(&format!("urn:ngsi-ld:Vehicle:q{i}"), 10 * i)).await;
    }
    let query = json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>5"});
    let r = app.post_json("/ngsi-ld/v1/entityOperations/query?entityMap=true&limit=1", &query).await;
    assert_eq!(r.status(), 201);
    let location = map_header(&r);
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:q1"]);
    let m: Value = retrieve(&app, &map_id(&location)).await.json().await.unwrap();
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:q1": ["@none"], "urn:ngsi-ld:Vehicle:q2": ["@none"]}));
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entityOperations/query?limit=1&offset=1&count=true"))
        .header("NGSILD-EntityMap", &location)
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(map_header(&r), location);
    assert_eq!(r.headers()["ngsild-results-count"], "2");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:q2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_matching_more_than_a_map_holds_makes_no_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = crate::helpers::settings(dir.path());
    s.entity_map_max_ids = 2;
    let app = crate::helpers::spawn_with(s, Some(dir)).await;
    for i in 0..3 {
        app.create(vehicle(&format!("urn:ngsi-ld:Vehicle:m{i}"), 50)).await;
    }
    assert_problem(app.get(&format!("{MAPS}?type=Vehicle")).await, 403, "TooManyResults").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=Vehicle&entityMap=true").await, 403, "TooManyResults").await;
    let (_, m) = create_map(&app, "type=Vehicle&q=speed%3E50").await;
    assert_eq!(m["entityMap"], json!({}));
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle").await;
    assert_eq!(r.status(), 200, "an ordinary query is not bounded by the map size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_entity_makes_or_keeps_a_map() {
    let app = spawn_app().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:r", 30)).await;
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r?entityMap=true").await;
    assert_eq!(r.status(), 200);
    let location = map_header(&r);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["id"], "urn:ngsi-ld:Vehicle:r");
    assert!(e.get("entityMap").is_none());
    let m: Value = retrieve(&app, &map_id(&location)).await.json().await.unwrap();
    assert_eq!(m["entityMap"], json!({"urn:ngsi-ld:Vehicle:r": ["@none"]}));
    let with = |h: &str| {
        app.client.get(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r")).header("NGSILD-EntityMap", h.to_owned())
    };
    let r = with(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(map_header(&r), location, "a live map is echoed");
    let r = with("urn:ngsi-ld:entitymap:dead").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fresh = map_header(&r);
    assert!(!fresh.contains("dead") && fresh != location, "{fresh}");
    assert_eq!(app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r").await.headers().get("ngsild-entitymap"), None);
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r?entityMap=true&entityMapLifetime=soon").await;
    assert_problem(r, 400, "BadRequestData").await;
}
