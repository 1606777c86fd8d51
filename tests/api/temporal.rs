//! The temporal API (GS CIM 009 §5.6.11–5.6.16, §5.7.3–5.7.4): temporal entities created,
//! amended, retrieved and queried over HTTP; TRoE recording from the entity API; durability
//! across a restart of the binary.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, settings, spawn_app, spawn_with};

const T: &str = "/ngsi-ld/v1/temporal/entities";

fn vehicle(id: &str) -> Value {
    json!({
        "id": id,
        "type": "Vehicle",
        "speed": [
            {"type": "Property", "value": 120, "observedAt": "2020-08-01T12:03:00Z"},
            {"type": "Property", "value": 80, "observedAt": "2020-08-01T12:05:00Z"},
            {"type": "Property", "value": 100, "observedAt": "2020-08-01T12:07:00Z"}
        ],
        "fuelLevel": [
            {"type": "Property", "value": 67, "observedAt": "2020-08-01T12:03:00Z"},
            {"type": "Property", "value": 53, "observedAt": "2020-08-01T13:05:00Z"},
            {"type": "Property", "value": 40, "observedAt": "2020-08-01T14:07:00Z", "datasetId": "urn:ngsi-ld:Dataset:fuel"}
        ]
    })
}

async fn create(app: &TestApp, body: &Value) {
    let r = app.post_json(T, body).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

fn values(attr: &Value) -> Vec<i64> {
    attr.as_array().unwrap().iter().map(|i| i["value"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn create_append_retrieve_and_delete() {
    let app = spawn_app().await;
    let r = app.post_json(T, &vehicle("urn:ngsi-ld:Vehicle:1")).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:1");
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:1")).await;
    assert_eq!(e["type"], "Vehicle");
    assert_eq!(values(&e["speed"]), vec![120, 80, 100]);
    assert_eq!(e["fuelLevel"].as_array().unwrap().len(), 3);
    let first = e["speed"][0]["instanceId"].as_str().unwrap().to_owned();
    assert!(first.starts_with("urn:ngsi-ld:attribute:instance:"));
    assert!(e.get("createdAt").is_none());

    // Posting the same id again adds instances (204).
    let more = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle",
        "speed": {"type": "Property", "value": 90, "observedAt": "2020-08-01T12:09:00Z"}});
    let r = app.post_json(T, &more).await;
    assert_eq!(r.status(), 204);
    // Add Attributes.
    let r = app
        .post_json(
            &format!("{T}/urn:ngsi-ld:Vehicle:1/attrs"),
            &json!({"brand": [{"type": "Property", "value": "BMW", "observedAt": "2020-08-01T12:00:00Z"}]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:1?options=sysAttrs")).await;
    assert_eq!(values(&e["speed"]), vec![120, 80, 100, 90]);
    assert_eq!(e["brand"][0]["value"], "BMW");
    assert!(e["createdAt"].is_string() && e["speed"][0]["modifiedAt"].is_string());

    // Modify one instance: same instanceId, new value.
    let r = app
        .client
        .patch(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/speed/{first}")))
        .json(&json!({"type": "Property", "value": 129, "observedAt": "2020-08-01T12:03:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:1")).await;
    assert_eq!(values(&e["speed"]), vec![129, 80, 100, 90]);
    assert_eq!(e["speed"][0]["instanceId"], first.as_str());

    // Delete one instance, then the default instances of fuelLevel (the datasetId one stays).
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/speed/{first}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/speed/{first}"))).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/fuelLevel"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:1")).await;
    assert_eq!(values(&e["speed"]), vec![80, 100, 90]);
    assert_eq!(values(&e["fuelLevel"]), vec![40]);
    // deleteAll removes the rest of the attribute.
    let r = app
        .client
        .delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/fuelLevel?deleteAll=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:1")).await;
    assert!(e.get("fuelLevel").is_none());
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1/attrs/fuelLevel"))).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;

    // Delete the temporal entity.
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(app.get(&format!("{T}/urn:ngsi-ld:Vehicle:1")).await, 404, "ResourceNotFound").await;
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:1"))).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn time_relations_last_n_and_temporal_values() {
    let app = spawn_app().await;
    create(&app, &vehicle("urn:ngsi-ld:Vehicle:t")).await;
    let base = format!("{T}/urn:ngsi-ld:Vehicle:t");
    let e = get_json(&app, &format!("{base}?timerel=after&timeAt=2020-08-01T12:04:00Z")).await;
    assert_eq!(values(&e["speed"]), vec![80, 100]);
    assert_eq!(values(&e["fuelLevel"]), vec![53, 40]);
    let e = get_json(&app, &format!("{base}?timerel=before&timeAt=2020-08-01T12:05:00Z")).await;
    assert_eq!(values(&e["speed"]), vec![120]);
    let e =
        get_json(&app, &format!("{base}?timerel=between&timeAt=2020-08-01T12:04:00Z&endTimeAt=2020-08-01T13:06:00Z"))
            .await;
    assert_eq!(values(&e["speed"]), vec![80, 100]);
    assert_eq!(values(&e["fuelLevel"]), vec![53]);
    let e = get_json(&app, &format!("{base}?lastN=2")).await;
    assert_eq!(values(&e["speed"]), vec![80, 100]);
    let e = get_json(&app, &format!("{base}?options=temporalValues&attrs=speed")).await;
    assert_eq!(
        e["speed"],
        json!({"type": "Property", "values": [[120, "2020-08-01T12:03:00Z"], [80, "2020-08-01T12:05:00Z"], [100, "2020-08-01T12:07:00Z"]]})
    );
    assert!(e.get("fuelLevel").is_none());
    let e = get_json(&app, &format!("{base}?format=temporalValues&datasetId=urn:ngsi-ld:Dataset:fuel")).await;
    assert_eq!(
        e["fuelLevel"],
        json!({"type": "Property", "values": [[40, "2020-08-01T14:07:00Z"]], "datasetId": "urn:ngsi-ld:Dataset:fuel"})
    );
    // attrs naming nothing the entity has: 404.
    assert_problem(app.get(&format!("{base}?attrs=unknown")).await, 404, "ResourceNotFound").await;
    // Bad time parameters.
    for q in [
        "timerel=after",
        "timerel=between&timeAt=2020-08-01T12:00:00Z",
        "timerel=during&timeAt=2020-08-01T12:00:00Z",
        "timerel=after&timeAt=noon",
        "timeAt=2020-08-01T12:00:00Z",
        "timeproperty=updatedAt",
        "lastN=0",
    ] {
        assert_problem(app.get(&format!("{base}?{q}")).await, 400, "BadRequestData").await;
    }
    assert_problem(app.get(&format!("{base}?format=keyValuesX")).await, 400, "InvalidRequest").await;
    // The aggregated representation needs aggrMethods.
    assert_problem(app.get(&format!("{base}?options=aggregatedValues")).await, 400, "BadRequestData").await;
}

#[tokio::test]
async fn queries_select_entities_and_page() {
    let app = spawn_app().await;
    for i in 1..=3 {
        create(&app, &vehicle(&format!("urn:ngsi-ld:Vehicle:q{i}"))).await;
    }
    let mut slow = vehicle("urn:ngsi-ld:Vehicle:slow");
    slow["speed"] = json!([{"type": "Property", "value": 10, "observedAt": "2020-08-01T12:03:00Z"}]);
    create(&app, &slow).await;
    create(
        &app,
        &json!({"id": "urn:ngsi-ld:Bus:1", "type": "Bus",
            "speed": [{"type": "Property", "value": 50, "observedAt": "2020-08-01T12:03:00Z"}]}),
    )
    .await;

    let list = get_json(&app, &format!("{T}?type=Vehicle&timerel=after&timeAt=2020-07-01T00:00:00Z")).await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    let list = get_json(&app, &format!("{T}?type=Vehicle&q=speed>90&timerel=after&timeAt=2020-07-01T00:00:00Z")).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:q1", "urn:ngsi-ld:Vehicle:q2", "urn:ngsi-ld:Vehicle:q3"]);
    // Every instance of a matching entity is returned, not only those satisfying q.
    assert_eq!(values(&list[0]["speed"]), vec![120, 80, 100]);
    let list = get_json(&app, &format!("{T}?type=Bus,Vehicle&attrs=fuelLevel&lastN=1")).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "the bus has no fuelLevel");
    assert!(list[0].get("speed").is_none());
    assert_eq!(values(&list[0]["fuelLevel"]), vec![40]);
    let list = get_json(&app, &format!("{T}?idPattern=.*Bus.*&type=Bus,Vehicle")).await;
    assert_eq!(list[0]["id"], "urn:ngsi-ld:Bus:1");
    let list = get_json(&app, &format!("{T}?id=urn:ngsi-ld:Vehicle:q2&type=Vehicle")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Instances outside the time relation leave an entity out.
    let list = get_json(&app, &format!("{T}?type=Vehicle&timerel=after&timeAt=2020-08-01T12:04:00Z&attrs=speed")).await;
    assert_eq!(list.as_array().unwrap().len(), 3);

    // Paging: limit, offset, count and the next link.
    let r = app.get(&format!("{T}?type=Vehicle&limit=2&count=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "4");
    let links: Vec<String> = r.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(links.iter().any(|l| l.contains("rel=\"next\"") && l.contains("offset=2")), "{links:?}");
    assert!(links.iter().any(|l| l.contains("json-ld#context")), "{links:?}");
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let page = get_json(&app, &format!("{T}?type=Vehicle&limit=2&offset=2")).await;
    assert_eq!(page[1]["id"], "urn:ngsi-ld:Vehicle:slow");

    // Too broad or malformed queries.
    assert_problem(app.get(&format!("{T}?timerel=after&timeAt=2020-07-01T00:00:00Z")).await, 400, "BadRequestData")
        .await;
    assert_problem(app.get(&format!("{T}?id=urn:ngsi-ld:Vehicle:q1")).await, 400, "BadRequestData").await;
    assert_problem(app.get(&format!("{T}?type=Vehicle&foo=bar")).await, 400, "InvalidRequest").await;
    assert_problem(app.get(&format!("{T}?type=Vehicle&q=speed>>")).await, 400, "InvalidRequest").await;
    let all = get_json(&app, &format!("{T}?local=true")).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn long_histories_are_cut_with_a_content_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.temporal_max_instances = 4;
    let app = spawn_with(s, Some(dir)).await;
    let speeds: Vec<Value> = (1..=5)
        .map(|m| json!({"type": "Property", "value": m, "observedAt": format!("2020-01-01T00:0{m}:00Z")}))
        .collect();
    let fuel: Vec<Value> = (1..=5)
        .map(|m| json!({"type": "Property", "value": 10 * m, "observedAt": format!("2020-01-02T00:0{m}:00Z")}))
        .collect();
    create(&app, &json!({"id": "urn:ngsi-ld:Vehicle:long", "type": "Vehicle", "speed": speeds, "fuel": fuel})).await;
    let r = app.get(&format!("{T}/urn:ngsi-ld:Vehicle:long")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "date-time 2020-01-01T00:01:00.000Z-2020-01-01T00:04:00.000Z/*");
    let e: Value = r.json().await.unwrap();
    assert_eq!(values(&e["speed"]), vec![1, 2, 3, 4]);
    assert_eq!(e["fuel"], json!([]), "the cut came before any fuel instance");
    // The client continues after the cut.
    let r = app.get(&format!("{T}/urn:ngsi-ld:Vehicle:long?timerel=after&timeAt=2020-01-01T00:04:30Z")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "date-time 2020-01-01T00:04:30.000Z-2020-01-02T00:03:00.000Z/*");
    // lastN takes the most recent instances first.
    let r = app.get(&format!("{T}/urn:ngsi-ld:Vehicle:long?lastN=3")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "date-time 2020-01-02T00:05:00.000Z-2020-01-01T00:05:00.000Z/3");
    let e: Value = r.json().await.unwrap();
    assert_eq!(values(&e["fuel"]), vec![30, 40, 50]);
    let r = app.get(&format!("{T}/urn:ngsi-ld:Vehicle:long?lastN=2")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-range").is_none());
    // Queries cut each entity the same way.
    let r = app.get(&format!("{T}?type=Vehicle")).await;
    assert_eq!(r.status(), 206);
}

/// A history for aggregation: `p` numbers across two hours, `name` strings.
fn sensor(id: &str) -> Value {
    json!({
        "id": id,
        "type": "Sensor",
        "p": [
            {"type": "Property", "value": 1, "observedAt": "2020-08-01T12:00:00Z"},
            {"type": "Property", "value": 3, "observedAt": "2020-08-01T12:20:00Z"},
            {"type": "Property", "value": 3, "observedAt": "2020-08-01T12:40:00Z"},
            {"type": "Property", "value": 5, "observedAt": "2020-08-01T13:10:00Z"}
        ],
        "name": [
            {"type": "Property", "value": "b", "observedAt": "2020-08-01T12:00:00Z"},
            {"type": "Property", "value": "a", "observedAt": "2020-08-01T12:30:00Z"}
        ]
    })
}

#[tokio::test]
async fn aggregated_values_per_method_and_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    // Aggregation reads the whole history, whatever the cut of instance reads.
    s.temporal_max_instances = 2;
    let app = spawn_with(s, Some(dir)).await;
    create(&app, &sensor("urn:ngsi-ld:Sensor:1")).await;
    let base = format!("{T}/urn:ngsi-ld:Sensor:1");
    assert_eq!(app.get(&base).await.status(), 206);

    let all = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq";
    let r = app.get(&format!("{base}?options=aggregatedValues&aggrMethods={all}&aggrPeriodDuration=PT1H")).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    let p = &e["p"];
    assert_eq!(p["type"], "Property");
    let (h1, h2, h3) = ("2020-08-01T12:00:00Z", "2020-08-01T13:00:00Z", "2020-08-01T14:00:00Z");
    assert_eq!(p["totalCount"], json!([[3, h1, h2], [1, h2, h3]]));
    assert_eq!(p["distinctCount"], json!([[2, h1, h2], [1, h2, h3]]));
    assert_eq!(p["sum"], json!([[7.0, h1, h2], [5.0, h2, h3]]));
    assert_eq!(p["min"], json!([[1.0, h1, h2], [5.0, h2, h3]]));
    assert_eq!(p["max"], json!([[3.0, h1, h2], [5.0, h2, h3]]));
    assert_eq!(p["sumsq"], json!([[19.0, h1, h2], [25.0, h2, h3]]));
    let avg = p["avg"][0][0].as_f64().unwrap();
    assert!((avg - 7.0 / 3.0).abs() < 1e-9);
    let stddev = p["stddev"][0][0].as_f64().unwrap();
    assert!((stddev - (8.0f64 / 9.0).sqrt()).abs() < 1e-9);
    assert_eq!(p["stddev"][1], json!([0.0, h2, h3]));
    // Strings: counted, ordered by min and max, no number to add up.
    let name = &e["name"];
    assert_eq!(name["totalCount"], json!([[2, h1, h2]]));
    assert_eq!(name["min"], json!([["a", h1, h2]]));
    assert_eq!(name["max"], json!([["b", h1, h2]]));
    assert_eq!(name["avg"], json!([[null, h1, h2]]));
    assert!(e["p"].get("values").is_none() && e.get("createdAt").is_none());

    // Without a duration the whole range is one period, from the first to the last instance.
    let e = get_json(&app, &format!("{base}?format=aggregatedValues&aggrMethods=sum&attrs=p")).await;
    assert_eq!(e["p"]["sum"], json!([[12.0, h1, "2020-08-01T13:10:00Z"]]));
    assert!(e.get("name").is_none());
    // Periods start at timeAt; `between` ends the whole range at endTimeAt.
    let e = get_json(
        &app,
        &format!("{base}?options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=PT1H&timerel=after&timeAt=2020-08-01T11:30:00Z"),
    )
    .await;
    assert_eq!(
        e["p"]["sum"],
        json!([
            [4.0, "2020-08-01T11:30:00Z", "2020-08-01T12:30:00Z"],
            [8.0, "2020-08-01T12:30:00Z", "2020-08-01T13:30:00Z"]
        ])
    );
    let e = get_json(
        &app,
        &format!("{base}?aggrMethods=max&timerel=between&timeAt=2020-08-01T12:10:00Z&endTimeAt=2020-08-01T13:00:00Z"),
    )
    .await;
    assert_eq!(
        e["p"]["max"],
        json!([[3.0, "2020-08-01T12:10:00Z", "2020-08-01T13:00:00Z"]]),
        "aggrMethods alone asks for it"
    );
    // format wins over options (the instance read is cut at two instances).
    let r = app.get(&format!("{base}?format=temporalValues&options=aggregatedValues&aggrMethods=sum")).await;
    assert_eq!(r.status(), 206);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["p"]["values"].as_array().map(Vec::len), Some(1));

    // Queries, by GET and by POST (aggrMethods in temporalQ or in aggrParams).
    create(&app, &sensor("urn:ngsi-ld:Sensor:2")).await;
    let list =
        get_json(&app, &format!("{T}?type=Sensor&options=aggregatedValues&aggrMethods=min&aggrPeriodDuration=P1D"))
            .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[1]["p"]["min"], json!([[1.0, h1, "2020-08-02T12:00:00Z"]]));
    let post = "/ngsi-ld/v1/temporal/entityOperations/query";
    let q = json!({"type": "Query", "entities": [{"type": "Sensor"}],
        "temporalQ": {"timerel": "after", "timeAt": "2020-08-01T12:00:00Z", "aggrMethods": ["avg"], "aggrPeriodDuration": "PT1H"}});
    let r = app.post_json(post, &q).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list[0]["p"]["avg"][1], json!([5.0, h2, h3]));
    let q = json!({"type": "Query", "entities": [{"type": "Sensor"}],
        "aggrParams": {"aggrMethods": "max,totalCount", "aggrPeriodDuration": "PT0S"}});
    let list: Value = app.post_json(post, &q).await.json().await.unwrap();
    assert_eq!(list[0]["p"]["totalCount"], json!([[4, h1, "2020-08-01T13:10:00Z"]]));

    // Errors.
    for q in [
        "options=aggregatedValues",
        "format=aggregatedValues&aggrPeriodDuration=PT1H",
        "options=aggregatedValues&aggrMethods=median",
        "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=bogus",
        "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=P1H",
        "aggrMethods=avg,bogus",
        "aggrPeriodDuration=PT",
    ] {
        assert_problem(app.get(&format!("{base}?{q}")).await, 400, "BadRequestData").await;
    }
    for bad in [
        json!({"aggrParams": {"aggrMethods": ["bogus"]}}),
        json!({"aggrParams": {"aggrMethods": ["avg"], "aggrPeriodDuration": "bogus"}}),
        json!({"temporalQ": {"aggrMethods": 5}}),
    ] {
        let mut q = json!({"type": "Query", "entities": [{"type": "Sensor"}]});
        for (k, v) in bad.as_object().unwrap() {
            q[k] = v.clone();
        }
        assert_problem(app.post_json(post, &q).await, 400, "BadRequestData").await;
    }
}

#[tokio::test]
async fn query_by_post_and_orderby() {
    let app = spawn_app().await;
    for (id, speed) in [("urn:ngsi-ld:Vehicle:b", 5), ("urn:ngsi-ld:Vehicle:a", 7), ("urn:ngsi-ld:Vehicle:c", 6)] {
        create(
            &app,
            &json!({"id": id, "type": "Vehicle",
                "speed": [{"type": "Property", "value": speed, "observedAt": "2020-08-01T12:00:00Z"}]}),
        )
        .await;
    }
    let q = json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>5",
        "temporalQ": {"timerel": "before", "timeAt": "2020-08-02T00:00:00Z"}});
    let r = app.post_json("/ngsi-ld/v1/temporal/entityOperations/query", &q).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:a", "urn:ngsi-ld:Vehicle:c"]);
    let bad = json!({"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": {"timerel": "after"}});
    let r = app.post_json("/ngsi-ld/v1/temporal/entityOperations/query", &bad).await;
    assert_problem(r, 400, "BadRequestData").await;
    let list = get_json(&app, &format!("{T}?type=Vehicle&orderBy=id")).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:a", "urn:ngsi-ld:Vehicle:b", "urn:ngsi-ld:Vehicle:c"]);
    let list = get_json(&app, &format!("{T}?type=Vehicle&orderBy=speed;desc&limit=2")).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:a", "urn:ngsi-ld:Vehicle:c"]);
}

#[tokio::test]
async fn an_observation_posted_again_replaces_the_recorded_one() {
    let app = spawn_app().await;
    create(&app, &vehicle("urn:ngsi-ld:Vehicle:again")).await;
    let mut again = vehicle("urn:ngsi-ld:Vehicle:again");
    again["speed"][0]["value"] = json!(121);
    let r = app.post_json(T, &again).await;
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:again")).await;
    assert_eq!(values(&e["speed"]), vec![121, 80, 100]);
    assert_eq!(e["fuelLevel"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn contexts_compact_names_and_answer_json_ld() {
    let app = spawn_app().await;
    let ctx = json!({"speed": "https://example.org/vocab#speed", "Vehicle": "https://example.org/vocab#Vehicle"});
    let mut body = vehicle("urn:ngsi-ld:Vehicle:c");
    body["@context"] = json!([ctx, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]);
    let r = app
        .client
        .post(app.url(T))
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Without the context, names stay expanded.
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:c")).await;
    assert_eq!(e["type"], "https://example.org/vocab#Vehicle");
    assert!(e["https://example.org/vocab#speed"].is_array());
    // JSON-LD answers carry the context in the body; JSON ones in a Link header.
    let r = app
        .client
        .get(app.url(&format!("{T}?type=https://example.org/vocab%23Vehicle")))
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/ld+json"));
    let list: Value = r.json().await.unwrap();
    assert!(list[0]["@context"].is_string() || list[0]["@context"].is_array());
    // A JSON body with @context, and a JSON-LD body with a Link header, are refused.
    let r = app.post_json(T, &body).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = app
        .client
        .post(app.url(T))
        .header("Content-Type", "application/ld+json")
        .header("Link", "<http://127.0.0.1:9/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // A context that cannot be fetched.
    let r = app
        .client
        .get(app.url(&format!("{T}?type=Vehicle")))
        .header("Link", "<http://127.0.0.1:9/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"")
        .send()
        .await
        .unwrap();
    assert_problem(r, 503, "LdContextNotAvailable").await;
}

#[tokio::test]
async fn tenants_keep_histories_apart() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url(T))
        .header("NGSILD-Tenant", "fleet")
        .json(&vehicle("urn:ngsi-ld:Vehicle:tn"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["ngsild-tenant"], "fleet");
    let r = app
        .client
        .get(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:tn")))
        .header("Fiware-Service", "fleet")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_problem(app.get(&format!("{T}/urn:ngsi-ld:Vehicle:tn")).await, 404, "ResourceNotFound").await;
    let r = app
        .client
        .get(app.url(&format!("{T}?type=Vehicle")))
        .header("NGSILD-Tenant", "nosuchtenant")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
    let r = app
        .client
        .get(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:tn")))
        .header("NGSILD-Tenant", "nosuchtenant")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
}

#[tokio::test]
async fn protocol_errors() {
    let app = spawn_app().await;
    create(&app, &vehicle("urn:ngsi-ld:Vehicle:e")).await;
    // 415, 406.
    let r = app
        .client
        .post(app.url(T))
        .header("Content-Type", "application/xml")
        .body(vehicle("urn:ngsi-ld:Vehicle:x").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    for accept in ["application/xml", "application/geo+json"] {
        let r = app
            .client
            .get(app.url(&format!("{T}?type=Vehicle&timerel=after&timeAt=2020-08-01T12:05:00Z")))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406, "{accept}");
    }
    let r = app.client.get(app.url(&format!("{T}?type=Vehicle"))).header("Accept", "*/*").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(r.headers().get("link").is_some());
    // 400s: bodies.
    let r = app.client.post(app.url(T)).header("Content-Type", "application/json").body("{,").send().await.unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    let r = app.client.post(app.url(T)).header("Content-Type", "application/json").send().await.unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    let mut no_id = vehicle("x");
    no_id.as_object_mut().unwrap().remove("id");
    assert_problem(app.post_json(T, &no_id).await, 400, "BadRequestData").await;
    assert_problem(app.post_json(T, &vehicle("notauri")).await, 400, "BadRequestData").await;
    assert_problem(app.post_json(&format!("{T}?foo=1"), &vehicle("urn:x:1")).await, 400, "InvalidRequest").await;
    // Nothing is stored from a rejected request: one bad instance refuses the whole entity.
    let mut bad = vehicle("urn:ngsi-ld:Vehicle:bad");
    bad["speed"][2] = json!({"type": "Property", "value": 1, "observedAt": "not a time"});
    assert_problem(app.post_json(T, &bad).await, 400, "BadRequestData").await;
    assert_problem(app.get(&format!("{T}/urn:ngsi-ld:Vehicle:bad")).await, 404, "ResourceNotFound").await;
    // 400s: ids and names in paths.
    assert_problem(app.get(&format!("{T}/notauri")).await, 400, "BadRequestData").await;
    let r = app.client.delete(app.url(&format!("{T}/notauri"))).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:e/attrs/bad(name"))).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:e/attrs/speed/notauri"))).send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    // 404s.
    let r = app
        .post_json(
            &format!("{T}/urn:ngsi-ld:Vehicle:none/attrs"),
            &json!({"speed": [{"type": "Property", "value": 1}]}),
        )
        .await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app
        .client
        .patch(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:e/attrs/speed/urn:ngsi-ld:nothing")))
        .json(&json!({"type": "Property", "value": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = app.client.delete(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:e/attrs/nothing"))).send().await.unwrap();
    assert_problem(r, 404, "ResourceNotFound").await;
    // 405 on a known path with another method.
    let r = app.client.put(app.url(&format!("{T}/urn:ngsi-ld:Vehicle:e"))).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn troe_records_entity_api_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.troe = true;
    let app = spawn_with(s, Some(dir)).await;
    app.create(json!({"id": "urn:ngsi-ld:Vehicle:r", "type": "Vehicle", "speed": 10, "brand": "X"})).await;
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r/attrs"))
        .json(&json!({"speed": {"type": "Property", "value": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .patch(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r/attrs/speed"))
        .json(&json!({"value": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = get_json(&app, &format!("{T}/urn:ngsi-ld:Vehicle:r")).await;
    assert_eq!(values(&e["speed"]), vec![10, 20, 30]);
    assert_eq!(e["brand"][0]["value"], "X");
    assert_eq!(e["brand"].as_array().unwrap().len(), 1, "an unchanged attribute is recorded once");
    // The entity's history is queryable by time of recording.
    let list = get_json(
        &app,
        &format!("{T}?type=Vehicle&timeproperty=modifiedAt&timerel=after&timeAt=2000-01-01T00:00:00Z&lastN=1"),
    )
    .await;
    assert_eq!(values(&list[0]["speed"]), vec![30]);
    // A deleted attribute leaves a tombstone with deletedAt.
    let r = app.client.delete(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:r/attrs/brand")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let e = get_json(
        &app,
        &format!("{T}/urn:ngsi-ld:Vehicle:r?timeproperty=deletedAt&timerel=after&timeAt=2000-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(e["brand"][0]["value"], "urn:ngsi-ld:null");
    assert!(e["brand"][0]["deletedAt"].is_string());
    assert!(e.get("speed").is_none());
}

#[tokio::test]
async fn without_troe_the_entity_api_records_nothing() {
    let app = spawn_app().await;
    app.create(json!({"id": "urn:ngsi-ld:Vehicle:n", "type": "Vehicle", "speed": 10})).await;
    assert_problem(app.get(&format!("{T}/urn:ngsi-ld:Vehicle:n")).await, 404, "ResourceNotFound").await;
}

/// What a 2xx acknowledged survives a restart of the binary.
#[tokio::test]
async fn history_survives_a_restart() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_orbis"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn", "-troe"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("orbis starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/version")).await.is_err() {
            assert!(Instant::now() < deadline, "orbis did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (child, url)
    };
    let client = reqwest::Client::new();
    let (mut child, url) = start().await;
    let r = client
        .post(format!("{url}{T}"))
        .header("NGSILD-Tenant", "keep")
        .json(&vehicle("urn:ngsi-ld:Vehicle:p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e: Value = client
        .get(format!("{url}{T}/urn:ngsi-ld:Vehicle:p"))
        .header("NGSILD-Tenant", "keep")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = e["speed"][0]["instanceId"].as_str().unwrap().to_owned();
    let second = e["speed"][1]["instanceId"].as_str().unwrap().to_owned();
    let r = client
        .patch(format!("{url}{T}/urn:ngsi-ld:Vehicle:p/attrs/speed/{first}"))
        .header("NGSILD-Tenant", "keep")
        .json(&json!({"value": 121}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .delete(format!("{url}{T}/urn:ngsi-ld:Vehicle:p/attrs/speed/{second}"))
        .header("NGSILD-Tenant", "keep")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .post(format!("{url}/ngsi-ld/v1/entities"))
        .json(&json!({"id": "urn:ngsi-ld:Vehicle:live", "type": "Vehicle", "speed": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // SIGKILL: nothing gets a chance to flush.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, url) = start().await;
    let e: Value = client
        .get(format!("{url}{T}/urn:ngsi-ld:Vehicle:p"))
        .header("NGSILD-Tenant", "keep")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(values(&e["speed"]), vec![121, 100]);
    assert_eq!(e["speed"][0]["instanceId"], first.as_str());
    assert_eq!(e["fuelLevel"].as_array().unwrap().len(), 3);
    let live: Value =
        client.get(format!("{url}{T}/urn:ngsi-ld:Vehicle:live")).send().await.unwrap().json().await.unwrap();
    assert_eq!(values(&live["speed"]), vec![5]);
    child.kill().unwrap();
    child.wait().unwrap();
}
