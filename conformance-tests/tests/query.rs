//! Query Entities and discovery (§4.9 q, §4.10 geo-queries, §4.17 type selection, §4.19
//! scopeQ, §4.23 orderBy, §5.7.2, §5.7.4, §5.7.5–§5.7.10, §5.6.21 purge). Each test uses its
//! own tenant, so results are exact whatever else the broker holds.

use conformance_tests::*;

async fn seed(b: &Broker, t: &str) {
    let items = json!([
        {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": {"type": "Property", "value": 10},
         "brand": {"type": "Property", "value": "Volvo"}, "scope": "/Madrid/Centre",
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.3986, 52.5547]}}},
        {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle", "speed": {"type": "Property", "value": 96, "observedAt": "2024-05-01T10:00:00Z"},
         "brand": {"type": "Property", "value": "Saab"}, "scope": "/Madrid/North",
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.3903, 52.5075]}}},
        {"id": "urn:ngsi-ld:Vehicle:3", "type": ["Vehicle", "Truck"], "speed": {"type": "Property", "value": 50},
         "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}, "scope": "/Lisbon",
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.3522, 48.8566]}}}
    ]);
    b.json(Method::POST, &format!("{API}/entityOperations/create"), Some(t), &items).await.expect(201);
}

async fn ids(b: &Broker, t: &str, query: &str) -> Vec<String> {
    let r = b.get_json(&format!("{API}/entities?{query}"), Some(t)).await;
    r.expect(200);
    let mut out: Vec<String> =
        r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

/// §4.9: comparisons, ranges, lists, regular expressions, logical operators and parentheses.
#[tokio::test]
async fn q_language() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("speed>40"))).await,
        ["urn:ngsi-ld:Vehicle:2", "urn:ngsi-ld:Vehicle:3"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("speed==10..50"))).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:3"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("speed==10,96"))).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("brand==\"Saab\"|speed<20"))).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("(speed>5;brand);speed<20"))).await,
        ["urn:ngsi-ld:Vehicle:1"]
    );
    assert_eq!(ids(&b, &t, &format!("type=Vehicle&q={}", encode("brand~=^S"))).await, ["urn:ngsi-ld:Vehicle:2"]);
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("owner==\"urn:ngsi-ld:Person:1\""))).await,
        ["urn:ngsi-ld:Vehicle:3"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("speed.observedAt>2024-01-01T00:00:00Z"))).await,
        ["urn:ngsi-ld:Vehicle:2"]
    );
    assert_eq!(
        ids(&b, &t, &format!("type=Vehicle&q={}", encode("brand"))).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
}

/// §4.9: a malformed q is 400.
#[tokio::test]
async fn malformed_q_is_400() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    for bad in ["speed>", "(speed>1", "speed>1)", "speed==\"x"] {
        let r = b.get_json(&format!("{API}/entities?type=Vehicle&q={}", encode(bad)), Some(&t)).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// §4.17: the type selection language (`,`/`|` or, `;` and).
#[tokio::test]
async fn type_selection() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    assert_eq!(ids(&b, &t, &format!("type={}", encode("Vehicle;Truck"))).await, ["urn:ngsi-ld:Vehicle:3"]);
    assert_eq!(ids(&b, &t, &format!("type={}", encode("Truck|Bus"))).await, ["urn:ngsi-ld:Vehicle:3"]);
    assert_eq!(ids(&b, &t, "type=Truck,Bus").await, ["urn:ngsi-ld:Vehicle:3"]);
}

/// §4.19: scopeQ with `#` and `+`.
#[tokio::test]
async fn scope_queries() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    assert_eq!(
        ids(&b, &t, &format!("scopeQ={}", encode("/Madrid/#"))).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
    assert_eq!(ids(&b, &t, &format!("scopeQ={}", encode("/+/North"))).await, ["urn:ngsi-ld:Vehicle:2"]);
    assert_eq!(ids(&b, &t, &format!("scopeQ={}", encode("/Lisbon"))).await, ["urn:ngsi-ld:Vehicle:3"]);
}

/// §4.10: near with maxDistance/minDistance and within a polygon.
#[tokio::test]
async fn geo_queries() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    let q = |rel: &str, geom: &str, coords: &str| {
        format!("type=Vehicle&georel={}&geometry={geom}&coordinates={}", encode(rel), encode(coords))
    };
    assert_eq!(
        ids(&b, &t, &q("near;maxDistance==15000", "Point", "[13.388930,52.534473]")).await,
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
    assert_eq!(
        ids(&b, &t, &q("near;minDistance==15000", "Point", "[13.388930,52.534473]")).await,
        ["urn:ngsi-ld:Vehicle:3"]
    );
    let berlin = "[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],[13.142395,52.386428],[13.1616211,52.5438124]]]";
    assert_eq!(ids(&b, &t, &q("within", "Polygon", berlin)).await, ["urn:ngsi-ld:Vehicle:2"]);
    let r = b.get_json(&format!("{API}/entities?{}", q("near", "Point", "[1,2]")), Some(&t)).await;
    r.expect_problem(400, "BadRequestData");
}

/// §4.23 (v1.9.1): orderBy ascending and descending.
#[tokio::test]
async fn order_by() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&orderBy={}", encode("speed;desc")), Some(&t)).await;
    r.expect(200);
    let order: Vec<String> =
        r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(order, ["urn:ngsi-ld:Vehicle:2", "urn:ngsi-ld:Vehicle:3", "urn:ngsi-ld:Vehicle:1"]);
}

/// §5.7.4: Query Entities via POST with a Query body.
#[tokio::test]
async fn post_query() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    let r = b
        .json(
            Method::POST,
            &format!("{API}/entityOperations/query?count=true"),
            Some(&t),
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>40"}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.header("ngsild-results-count"), Some("2"));
}

/// §5.7.5–§5.7.10: discovery of types and attributes.
#[tokio::test]
async fn discovery() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    let types = b.get_json(&format!("{API}/types"), Some(&t)).await;
    types.expect(200);
    assert_eq!(types.json()["type"], "EntityTypeList");
    assert_eq!(types.json()["typeList"], json!(["Truck", "Vehicle"]));
    let info = b.get_json(&format!("{API}/types/Vehicle"), Some(&t)).await;
    assert_eq!(info.json()["entityCount"], 3);
    let attrs = b.get_json(&format!("{API}/attributes"), Some(&t)).await;
    assert_eq!(attrs.json()["attributeList"], json!(["brand", "location", "owner", "speed"]));
    let speed = b.get_json(&format!("{API}/attributes/speed"), Some(&t)).await;
    assert_eq!(speed.json()["attributeCount"], 3);
    b.get_json(&format!("{API}/types/Nothing"), Some(&t)).await.expect_problem(404, "ResourceNotFound");
}

/// §5.6.21 (v1.9.1): purge by query; without a query it is 400.
#[tokio::test]
async fn purge() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    b.delete(&format!("{API}/entities"), Some(&t)).await.expect_problem(400, "BadRequestData");
    b.delete(&format!("{API}/entities?type=Vehicle&q={}", encode("speed>40")), Some(&t)).await.expect(204);
    assert_eq!(ids(&b, &t, "type=Vehicle").await, ["urn:ngsi-ld:Vehicle:1"]);
}

/// §4.12, §6.3.10: a page of a query links to the previous page past the first and to the next
/// while matches remain.
#[tokio::test]
async fn query_pagination_links() {
    let b = Broker::get();
    let t = unique_tenant();
    seed(&b, &t).await;
    let links = |r: &Resp| -> String {
        r.headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ")
    };
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&limit=1"), Some(&t)).await;
    r.expect(200);
    let l = links(&r);
    assert!(l.contains("rel=\"next\"") && l.contains("offset=1") && !l.contains("rel=\"prev\""), "{l}");
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&limit=1&offset=1"), Some(&t)).await;
    let l = links(&r);
    assert!(l.contains("rel=\"next\"") && l.contains("offset=2") && l.contains("rel=\"prev\""), "{l}");
    let r = b.get_json(&format!("{API}/entities?type=Vehicle&limit=1&offset=2"), Some(&t)).await;
    let l = links(&r);
    assert!(!l.contains("rel=\"next\"") && l.contains("rel=\"prev\"") && l.contains("offset=1"), "{l}");
}
