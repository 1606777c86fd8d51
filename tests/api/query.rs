//! Query Entities with the query language (GS CIM 009 §4.9, §4.17, §4.19, §5.7.2, §5.7.4).

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn seed(app: &TestApp) {
    let items = json!([
        {"id": "urn:v:1", "type": "Vehicle", "speed": 10, "brand": "Volvo", "scope": "/Madrid/Centre",
         "owner": {"object": "urn:p:1"}, "info": {"value": {"doors": 4}}},
        {"id": "urn:v:2", "type": "Vehicle", "speed": {"value": 96, "observedAt": "2024-05-01T10:00:00Z"}, "brand": "Saab",
         "scope": "/Madrid/North"},
        {"id": "urn:v:3", "type": ["Vehicle", "Truck"], "speed": 50, "scope": "/Lisbon"},
        {"id": "urn:b:1", "type": "Bike", "speed": 20, "name": {"languageMap": {"en": "bike", "fr": "vélo"}}}
    ]);
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &items).await.status(), 201);
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(&format!("/ngsi-ld/v1/entities?{query}")).await;
    assert_eq!(r.status(), 200, "{query}");
    let list: Vec<Value> = r.json().await.unwrap();
    let mut out: Vec<String> = list.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn q_filters_through_http() {
    let app = spawn_app().await;
    seed(&app).await;
    assert_eq!(ids(&app, "type=Vehicle&q=speed%3E40").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "q=speed%3E40").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "q=speed==10..20").await, ["urn:b:1", "urn:v:1"]);
    assert_eq!(ids(&app, "q=brand==%22Saab%22%7Cspeed%3C15").await, ["urn:v:1", "urn:v:2"]);
    assert_eq!(ids(&app, "q=(speed%3E5;brand)%3Bspeed%3C20").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=owner==urn:p:1").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=info%5Bdoors%5D==4").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "q=speed.observedAt%3E2024-01-01T00:00:00Z").await, ["urn:v:2"]);
    assert_eq!(ids(&app, "q=name==%22v%C3%A9lo%22").await, ["urn:b:1"]);
    assert_eq!(ids(&app, "q=brand~=%5ES").await, ["urn:v:2"]);
    assert_eq!(ids(&app, "type=Vehicle%3BTruck").await, ["urn:v:3"]);
    assert_eq!(ids(&app, "type=Bike%7CTruck").await, ["urn:b:1", "urn:v:3"]);
    assert_eq!(ids(&app, "scopeQ=/Madrid/%23").await, ["urn:v:1", "urn:v:2"]);
    assert_eq!(ids(&app, "type=Vehicle&scopeQ=/Madrid/North,/Lisbon").await, ["urn:v:2", "urn:v:3"]);
    assert_eq!(ids(&app, "id=urn:v:1,urn:v:2&q=speed%3E40").await, ["urn:v:2"], "q applies together with id");
    let r = app.get("/ngsi-ld/v1/entities?q=speed%3E%3E3").await;
    let body = assert_problem(r, 400, "InvalidRequest").await;
    assert!(body["detail"].as_str().unwrap().contains("position"));
    assert_problem(app.get("/ngsi-ld/v1/entities?scopeQ=Madrid").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=(A").await, 400, "BadRequestData").await;
}

#[tokio::test]
async fn post_query_body() {
    let app = spawn_app().await;
    seed(&app).await;
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/query?count=true",
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}, {"id": "urn:b:1"}], "q": "speed<60", "attrs": ["speed"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let list: Vec<Value> = r.json().await.unwrap();
    assert!(list.iter().all(|e| e.get("brand").is_none() && e["speed"].is_object()));
    let r = app.post_json("/ngsi-ld/v1/entityOperations/query", &json!({"entities": []})).await;
    assert_problem(r, 400, "BadRequestData").await;
}

#[tokio::test]
async fn geo_queries_and_order_by() {
    let app = spawn_app().await;
    // Berlin landmarks (the ETSI suite's 019_10 data) and one far away.
    let items = json!([
        {"id": "urn:g:1", "type": "Building", "name": "c", "location": {"type": "Point", "coordinates": [13.3986, 52.5547]}},
        {"id": "urn:g:2", "type": "Building", "name": "a", "location": {"type": "Point", "coordinates": [13.3903, 52.5075]}},
        {"id": "urn:g:3", "type": "Building", "name": "b", "location": {"type": "Point", "coordinates": [2.3522, 48.8566]}},
        {"id": "urn:g:4", "type": "Building", "name": "d"}
    ]);
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &items).await.status(), 201);
    let geo = |rel: &str, geom: &str, coords: &str| {
        format!("type=Building&georel={rel}&geometry={geom}&coordinates={}", urlencode(coords))
    };
    assert_eq!(
        ids(&app, &geo("near;maxDistance==15000", "Point", "[13.388930,52.534473]")).await,
        ["urn:g:1", "urn:g:2"]
    );
    assert_eq!(ids(&app, &geo("near;minDistance==15000", "Point", "[13.388930,52.534473]")).await, ["urn:g:3"]);
    let berlin = "[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],[13.142395,52.386428],[13.1616211,52.5438124]]]";
    assert_eq!(ids(&app, &geo("within", "Polygon", berlin)).await, ["urn:g:2"]);
    assert_eq!(ids(&app, &geo("disjoint", "Polygon", berlin)).await, ["urn:g:1", "urn:g:3"]);
    assert_eq!(ids(&app, &geo("equals", "Point", "[13.3986,52.5547]")).await, ["urn:g:1"]);
    assert_eq!(ids(&app, &geo("intersects", "Point", "[13.3986,52.5547]")).await, ["urn:g:1"]);
    // A ring crossing itself is accepted in an entity and in a query (ETSI 019_11_01, 019_11_06).
    let crossing = "[[[13.2865906,52.5648645],[13.2879639,52.5648645],[13.2797241,52.4988679],[13.477478,52.4712703],[13.5049438,52.5373084],[13.2865906,52.5648645]]]";
    let area: Value = serde_json::from_str(crossing).unwrap();
    app.create(json!({"id": "urn:g:5", "type": "Area", "location": {"type": "Polygon", "coordinates": area}})).await;
    assert_eq!(ids(&app, &geo("equals", "Polygon", crossing).replace("Building", "Area")).await, ["urn:g:5"]);
    assert_eq!(ids(&app, &geo("within", "Polygon", crossing)).await, ["urn:g:2"]);
    // Near answers nearest first.
    let r: Vec<Value> = app
        .get(&format!("/ngsi-ld/v1/entities?{}", geo("near;maxDistance==2000000", "Point", "[2.35,48.85]")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r[0]["id"], "urn:g:3");
    assert_problem(
        app.get(&format!("/ngsi-ld/v1/entities?{}", geo("near", "Point", "[1,2]"))).await,
        400,
        "BadRequestData",
    )
    .await;
    assert_problem(
        app.get("/ngsi-ld/v1/entities?type=Building&georel=within&geometry=Polygon").await,
        400,
        "BadRequestData",
    )
    .await;
    assert_problem(
        app.get(&format!("/ngsi-ld/v1/entities?{}", geo("within", "Polygon", "[[[0,0],[1,1]]]"))).await,
        400,
        "BadRequestData",
    )
    .await;
    // POST query with geoQ.
    let r = app
        .post_json(
            "/ngsi-ld/v1/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Building"}],
                    "geoQ": {"georel": "within", "geometry": "Polygon", "coordinates": serde_json::from_str::<Value>(berlin).unwrap()}}),
        )
        .await;
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 1);

    // orderBy, with entities lacking the member last, and paging over the sorted order.
    let order = |spec: &str| {
        let url = app.url(&format!("/ngsi-ld/v1/entities?type=Building&orderBy={spec}"));
        let c = app.client.clone();
        async move {
            let list: Vec<Value> = c.get(url).send().await.unwrap().json().await.unwrap();
            list.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(order("name").await, ["urn:g:2", "urn:g:3", "urn:g:1", "urn:g:4"]);
    assert_eq!(order("name;desc").await, ["urn:g:4", "urn:g:1", "urn:g:3", "urn:g:2"]);
    assert_eq!(order("id;desc").await, ["urn:g:4", "urn:g:3", "urn:g:2", "urn:g:1"]);
    let page: Vec<Value> =
        app.get("/ngsi-ld/v1/entities?type=Building&orderBy=name&limit=2&offset=1").await.json().await.unwrap();
    assert_eq!(page[0]["id"], "urn:g:3");
    assert_problem(app.get("/ngsi-ld/v1/entities?type=Building&orderBy=name;up").await, 400, "BadRequestData").await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Query parameter validation (GS CIM 009 §5.7.2.4; ETSI 019_03_02, 019_03_03, 019_03_05).
#[tokio::test]
async fn query_parameters_are_validated() {
    let app = spawn_app().await;
    seed(&app).await;
    // Ids or an id pattern alone do not say what to look for; local=true or a type does.
    assert_problem(app.get("/ngsi-ld/v1/entities?id=urn:v:1,urn:v:2").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?idPattern=urn:v:.*").await, 400, "BadRequestData").await;
    assert_eq!(ids(&app, "id=urn:v:1,urn:b:1&local=true").await, ["urn:b:1", "urn:v:1"]);
    assert_eq!(ids(&app, "id=urn:v:1,urn:b:1&type=Vehicle").await, ["urn:v:1"]);
    assert_eq!(ids(&app, "idPattern=urn:v:%5B12%5D&attrs=brand").await, ["urn:v:1", "urn:v:2"]);
    // A repetition of a repetition is not a regular expression POSIX defines.
    assert_problem(app.get("/ngsi-ld/v1/entities?type=Vehicle&idPattern=urn:v**").await, 400, "BadRequestData").await;
    // In q, as every other q syntax error, it is an invalid request.
    assert_problem(app.get("/ngsi-ld/v1/entities?type=Vehicle&q=brand~=V%2B*").await, 400, "InvalidRequest").await;
    assert_eq!(ids(&app, "type=Vehicle&idPattern=urn:v:%5B12%5D%2B?").await, ["urn:v:1", "urn:v:2"]);
    // id and type are entity members, never attribute names.
    assert_problem(app.get("/ngsi-ld/v1/entities?attrs=id,type").await, 400, "BadRequestData").await;
    assert_problem(app.get("/ngsi-ld/v1/entities?type=Vehicle&attrs=speed,type").await, 400, "BadRequestData").await;
    let body = json!({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["id"]});
    assert_problem(app.post_json("/ngsi-ld/v1/entityOperations/query", &body).await, 400, "BadRequestData").await;
}

/// Paging while other clients write: every entity that existed before paging started is seen
/// exactly once, because pages follow creation order and updates do not move an entity.
#[tokio::test]
async fn pagination_is_stable_under_concurrent_writes() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..120).map(|i| json!({"id": format!("urn:pg:{i:03}"), "type": "P", "n": i})).collect();
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &json!(items)).await.status(), 201);
    let writer = {
        let (client, url) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            for i in 0..200 {
                // New entities of the same type, and updates of existing ones.
                let _ = client
                    .post(format!("{url}/ngsi-ld/v1/entities"))
                    .json(&json!({"id": format!("urn:pg:new:{i}"), "type": "P", "n": 1000 + i}))
                    .send()
                    .await;
                let _ = client
                    .patch(format!("{url}/ngsi-ld/v1/entities/urn:pg:{:03}/attrs/n", i % 120))
                    .json(&json!({"value": -1}))
                    .send()
                    .await;
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut offset = 0;
    loop {
        let page: Vec<Value> =
            app.get(&format!("/ngsi-ld/v1/entities?type=P&limit=7&offset={offset}")).await.json().await.unwrap();
        if page.is_empty() {
            break;
        }
        offset += page.len();
        seen.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let originals: Vec<&String> = seen.iter().filter(|id| !id.starts_with("urn:pg:new:")).collect();
    assert_eq!(originals.len(), 120, "every original entity exactly once");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no entity twice");
}

/// Linked entity retrieval (§4.5.23): `join=inline` embeds the target; `containedBy` names
/// entities already present higher up, which are not joined in again.
#[tokio::test]
async fn join_inline_flat_and_contained_by() {
    let app = spawn_app().await;
    let items = json!([
        {"id": "urn:j:building", "type": "Building", "locatedAt": {"type": "Relationship", "object": "urn:j:city"}},
        {"id": "urn:j:city", "type": "City", "name": "Paris"}
    ]);
    assert_eq!(app.post_json("/ngsi-ld/v1/entityOperations/create", &items).await.status(), 201);
    let e: Value = app.get("/ngsi-ld/v1/entities/urn:j:building?join=inline").await.json().await.unwrap();
    assert_eq!(e["locatedAt"]["entity"]["name"]["value"], "Paris");
    let flat: Vec<Value> = app.get("/ngsi-ld/v1/entities?type=Building&join=flat").await.json().await.unwrap();
    assert_eq!(flat.len(), 2);
    let e: Value =
        app.get("/ngsi-ld/v1/entities/urn:j:building?join=inline&containedBy=urn:j:city").await.json().await.unwrap();
    assert!(e["locatedAt"].get("entity").is_none(), "{e}");
}

/// Pagination links (§4.12, §6.3.10): `next` while matches remain, `prev` past the first page,
/// each the query as given with its parameters sorted; none with `limit=0`.
#[tokio::test]
async fn query_pages_carry_prev_and_next_links() {
    let app = spawn_app().await;
    seed(&app).await;
    let pagination = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("link")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .filter(|l| !l.contains("json-ld#context"))
            .collect()
    };
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&idPattern=urn:v:.*&limit=1&count=true").await;
    assert_eq!(
        pagination(&r),
        [
            "</ngsi-ld/v1/entities?count=true&idPattern=urn:v:.*&limit=1&offset=1&type=Vehicle>; rel=\"next\";type=\"application/json\""
        ]
    );
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&limit=1&offset=1").await;
    assert_eq!(
        pagination(&r),
        [
            "</ngsi-ld/v1/entities?limit=1&offset=0&type=Vehicle>; rel=\"prev\";type=\"application/json\"",
            "</ngsi-ld/v1/entities?limit=1&offset=2&type=Vehicle>; rel=\"next\";type=\"application/json\""
        ]
    );
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&limit=2&offset=2").await;
    assert_eq!(
        pagination(&r),
        ["</ngsi-ld/v1/entities?limit=2&offset=0&type=Vehicle>; rel=\"prev\";type=\"application/json\""]
    );
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&limit=3").await;
    assert!(pagination(&r).is_empty(), "one page holds them all");
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&limit=0&count=true").await;
    assert!(pagination(&r).is_empty());
    // Values that would break the link are escaped, the rest stays readable.
    let r = app
        .client
        .get(app.url("/ngsi-ld/v1/entities?type=Vehicle,Bike&q=brand%3D%3D%22Saab%22%7Cspeed%3C20&limit=1"))
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pagination(&r),
        [
            "</ngsi-ld/v1/entities?limit=1&offset=1&q=brand%3D%3D%22Saab%22|speed%3C20&type=Vehicle%2CBike>; rel=\"next\";type=\"application/ld+json\""
        ]
    );
}

/// Page parameters of any size are answered, not overflowed: an offset past every entity gives
/// an empty page (entities, temporal entities, subscriptions).
#[tokio::test]
async fn huge_offsets_give_empty_pages() {
    let app = spawn_app().await;
    app.create(json!({"id": "urn:o:1", "type": "T"})).await;
    let huge = "18446744073709551615";
    for path in [
        format!("/ngsi-ld/v1/entities?type=T&offset={huge}"),
        format!("/ngsi-ld/v1/entities?type=T&offset={huge}&orderBy=id&count=true"),
        format!("/ngsi-ld/v1/temporal/entities?type=T&offset={huge}"),
        format!("/ngsi-ld/v1/temporal/entities?type=T&offset={huge}&orderBy=id"),
        format!("/ngsi-ld/v1/subscriptions?offset={huge}"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!([]), "{path}");
    }
    let r = app.get("/ngsi-ld/v1/entities?type=T&offset=99999999999999999999999").await;
    assert_eq!(r.status(), 400);
}
