//! Entity maps (GS CIM 009 §5.2.39, §5.5.9.3, §5.14, §6.32, §6.34) on one broker: made by
//! `GET /entityMaps` and by a query with `entityMap=true`, retrieved, updated and deleted per
//! tenant, and walked page by page. Each test uses its own tenant.

use conformance_tests::*;

async fn seed(b: &Broker, t: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = unique_id("Vehicle");
        let speed = 10 * (i + 1);
        b.must_create(Some(t), &json!({"id": id, "type": "Vehicle", "speed": {"type": "Property", "value": speed}}))
            .await;
        ids.push(id);
    }
    ids
}

/// The map id named by an NGSILD-EntityMap header (its last path segment).
fn map_id(r: &Resp) -> String {
    let h = r.header("ngsild-entitymap").unwrap_or_else(|| panic!("an NGSILD-EntityMap header: {:?}", r.headers));
    h.rsplit('/').next().unwrap().to_owned()
}

fn map_path(id: &str) -> String {
    format!("{API}/entityMaps/{}", encode(id))
}

fn ids_of(r: &Resp) -> Vec<String> {
    r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

async fn walk(b: &Broker, t: &str, query: &str, map: &str) -> Resp {
    let rb = with_tenant(b.request(Method::GET, &format!("{API}/entities?{query}")), Some(t))
        .header("NGSILD-EntityMap", map)
        .header("Accept", "application/json");
    b.send(rb).await
}

fn links(r: &Resp) -> String {
    r.headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ")
}

/// §5.14.4, §6.34.3.1: 201, the map in the body, its URI in NGSILD-EntityMap; local entities
/// under `@none`; `q` narrows; a too broad query and a lifetime that is no duration are 400.
#[tokio::test]
async fn create_entity_map_for_a_query() {
    let b = Broker::get();
    let t = unique_tenant();
    let ids = seed(&b, &t, 2).await;
    let r = b.get_json(&format!("{API}/entityMaps?type=Vehicle"), Some(&t)).await;
    r.expect(201);
    let m = r.json();
    assert_eq!(m["type"], "EntityMap");
    assert_eq!(m["id"], map_id(&r));
    assert!(m["expiresAt"].is_string());
    assert!(m["linkedMaps"].is_object());
    for id in &ids {
        assert_eq!(m["entityMap"][id], json!(["@none"]), "{m}");
    }
    let r = b.get_json(&format!("{API}/entityMaps?type=Vehicle&q={}", encode("speed>15")), Some(&t)).await;
    r.expect(201);
    let m = r.json();
    assert!(m["entityMap"].get(&ids[0]).is_none() && m["entityMap"].get(&ids[1]).is_some(), "{m}");

    b.get_json(&format!("{API}/entityMaps?id={}", encode(&ids[0])), Some(&t))
        .await
        .expect_problem(400, "BadRequestData");
    b.get_json(&format!("{API}/entityMaps?type=Vehicle&entityMapLifetime=1hour"), Some(&t))
        .await
        .expect_problem(400, "BadRequestData");
}

/// §5.14.1–§5.14.3: retrieve (200, 400 for an id that is no URI, 404 unknown or another
/// tenant's), update expiresAt (output-only members ignored, a past instant expires the map),
/// delete (204, then 404).
#[tokio::test]
async fn retrieve_update_delete_entity_map() {
    let b = Broker::get();
    let t = unique_tenant();
    let ids = seed(&b, &t, 1).await;
    let r = b.get_json(&format!("{API}/entityMaps?type=Vehicle"), Some(&t)).await;
    r.expect(201);
    let id = map_id(&r);
    let r = b.get_json(&map_path(&id), Some(&t)).await;
    r.expect(200);
    assert_eq!(r.json()["entityMap"], json!({(ids[0].clone()): ["@none"]}));
    b.get_json(&format!("{API}/entityMaps/not%20a%20uri"), Some(&t)).await.expect_problem(400, "BadRequestData");
    b.get_json(&map_path("urn:ngsi-ld:entitymap:unknown"), Some(&t)).await.expect_problem(404, "ResourceNotFound");
    let other = unique_tenant();
    b.get_json(&map_path(&id), Some(&other)).await.expect_problem(404, "ResourceNotFound");
    b.delete(&map_path(&id), Some(&other)).await.expect_problem(404, "ResourceNotFound");

    let fragment =
        json!({"expiresAt": "2099-01-01T00:00:00Z", "entityMap": {"urn:ngsi-ld:Vehicle:injected": ["@none"]}});
    b.json(Method::PATCH, &map_path(&id), Some(&t), &fragment).await.expect(204);
    let m = b.get_json(&map_path(&id), Some(&t)).await.json();
    assert!(m["expiresAt"].as_str().unwrap() < "2099-01-01T00:00:00Z", "bounded by the broker: {m}");
    assert!(m["entityMap"].get("urn:ngsi-ld:Vehicle:injected").is_none(), "{m}");
    b.json(Method::PATCH, &map_path(&id), Some(&t), &json!({"expiresAt": "tomorrow"}))
        .await
        .expect_problem(400, "BadRequestData");
    b.json(
        Method::PATCH,
        &map_path("urn:ngsi-ld:entitymap:unknown"),
        Some(&t),
        &json!({"expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect_problem(404, "ResourceNotFound");

    let d = b.delete(&map_path(&id), Some(&t)).await;
    d.expect(204);
    assert!(d.text.is_empty());
    b.delete(&map_path(&id), Some(&t)).await.expect_problem(404, "ResourceNotFound");

    let r = b.get_json(&format!("{API}/entityMaps?type=Vehicle"), Some(&t)).await;
    let id = map_id(&r);
    b.json(Method::PATCH, &map_path(&id), Some(&t), &json!({"expiresAt": "2000-01-01T00:00:00Z"})).await.expect(204);
    b.get_json(&map_path(&id), Some(&t)).await.expect_problem(404, "ResourceNotFound");
}

/// §5.5.9.3: `entityMap=true` answers 201 with the usual page; pages over the map are full,
/// linked with the original query, pruned of entities that no longer match, and counted over
/// the whole map; an unknown map gives a new one.
#[tokio::test]
async fn paginate_over_an_entity_map() {
    let b = Broker::get();
    let t = unique_tenant();
    let ids = seed(&b, &t, 5).await;
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&entityMap=true&limit=2"), Some(&t)).await;
    r.expect(201);
    assert_eq!(ids_of(&r), ids[..2]);
    let map = r.header("ngsild-entitymap").unwrap().to_owned();

    let r = walk(&b, &t, "type=Vehicle&limit=2", &map).await;
    r.expect(200);
    assert_eq!(r.header("ngsild-entitymap"), Some(map.as_str()));
    let l = links(&r);
    assert!(l.contains("rel=\"next\"") && l.contains("offset=2"), "{l}");
    assert!(!ids.iter().any(|id| l.contains(id.as_str())), "{l}");
    let r = walk(&b, &t, "type=Vehicle&limit=2&offset=4", &map).await;
    let l = links(&r);
    assert_eq!(ids_of(&r), ids[4..]);
    assert!(!l.contains("rel=\"next\"") && l.contains("rel=\"prev\""), "{l}");

    b.delete(&entity_path(&ids[1], ""), Some(&t)).await.expect(204);
    let r = walk(&b, &t, "type=Vehicle&limit=3&count=true", &map).await;
    r.expect(200);
    assert_eq!(ids_of(&r), [ids[0].clone(), ids[2].clone(), ids[3].clone()]);
    assert_eq!(r.header("ngsild-results-count"), Some("4"));
    let m = b.get_json(&map_path(map.rsplit('/').next().unwrap()), Some(&t)).await.json();
    assert!(m["entityMap"].get(&ids[1]).is_none(), "{m}");

    let r = walk(&b, &t, "type=Vehicle&limit=2", "urn:ngsi-ld:entitymap:unknown").await;
    r.expect(201);
    assert_ne!(map_id(&r), "urn:ngsi-ld:entitymap:unknown");
}

/// §5.7.1.4: Retrieve Entity with `entityMap=true` makes a map holding the entity (200, the
/// entity as body); a live map presented is echoed, an unknown one replaced.
#[tokio::test]
async fn retrieve_entity_with_an_entity_map() {
    let b = Broker::get();
    let t = unique_tenant();
    let ids = seed(&b, &t, 1).await;
    let r = b.retrieve(Some(&t), &ids[0], "?entityMap=true").await;
    r.expect(200);
    assert_eq!(r.json()["id"], json!(ids[0]));
    let map = r.header("ngsild-entitymap").unwrap().to_owned();
    let m = b.get_json(&map_path(&map_id(&r)), Some(&t)).await.json();
    assert_eq!(m["entityMap"][&ids[0]], json!(["@none"]));
    let rb = with_tenant(b.request(Method::GET, &entity_path(&ids[0], "")), Some(&t)).header("NGSILD-EntityMap", &map);
    let r = b.send(rb).await;
    r.expect(200);
    assert_eq!(r.header("ngsild-entitymap"), Some(map.as_str()));
    let rb = with_tenant(b.request(Method::GET, &entity_path(&ids[0], "")), Some(&t))
        .header("NGSILD-EntityMap", "urn:ngsi-ld:entitymap:unknown");
    let r = b.send(rb).await;
    r.expect(200);
    assert_ne!(map_id(&r), "urn:ngsi-ld:entitymap:unknown");
}
