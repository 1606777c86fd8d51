//! Context source registration subscriptions, black-box: the `/csourceSubscriptions` API
//! (create, retrieve, query with paging, update, delete), validation errors, and the
//! notifications sent when registrations are created, updated and deleted (trigger reasons,
//! filters, tenants, statistics).

use serde_json::{Value, json};

use crate::helpers::{LD_CONTEXT_REL, Receiver, TestApp, assert_problem, spawn_app};

const CSUBS: &str = "/ngsi-ld/v1/csourceSubscriptions";
const REGS: &str = "/ngsi-ld/v1/csourceRegistrations";

/// A registration subscription to `Vehicle` registrations notifying `rx`, plus `extra` members.
fn csub(uri: &str, extra: Value) -> Value {
    let mut s = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": uri}}});
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        m.extend(e);
    }
    s
}

/// A registration of `Vehicle` entities with `speed`, plus `extra` members.
fn reg(extra: Value) -> Value {
    let mut r = json!({"type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
        "endpoint": "http://source.example.org:1026"});
    if let (Value::Object(m), Value::Object(e)) = (&mut r, extra) {
        m.extend(e);
    }
    r
}

async fn post(app: &TestApp, path: &str, tenant: Option<&str>, body: &Value) -> reqwest::Response {
    let mut rb = app.client.post(app.url(path)).json(body);
    if let Some(t) = tenant {
        rb = rb.header("NGSILD-Tenant", t);
    }
    rb.send().await.expect("request")
}

/// Creates a resource, insisting on 201; returns its id (the last segment of Location).
async fn must_create(app: &TestApp, path: &str, tenant: Option<&str>, body: &Value) -> String {
    let r = post(app, path, tenant, body).await;
    assert_eq!(r.status(), 201, "refused: {:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    loc.strip_prefix(&format!("{path}/")).expect("Location names the resource").to_owned()
}

/// Asserts a CsourceNotification for the subscription with this reason and registrations.
fn assert_csource_notification(n: &Value, sub: &str, reason: &str, regs: &[&str]) {
    assert_eq!(n["type"], "ContextSourceNotification", "{n}");
    assert_eq!(n["subscriptionId"], sub, "{n}");
    assert_eq!(n["triggerReason"], reason, "{n}");
    assert!(n["id"].as_str().is_some_and(|i| i.starts_with("urn:ngsi-ld:Notification:")));
    assert!(n["notifiedAt"].is_string());
    let ids: Vec<&str> = n["data"].as_array().expect("data").iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, regs, "{n}");
}

#[tokio::test]
async fn csource_subscription_crud_round_trip() {
    let app = spawn_app().await;
    let body = csub(
        "http://localhost:1111/notify",
        json!({"id": "urn:ngsi-ld:Subscription:cs1", "watchedAttributes": ["speed"],
               "q": "mode==\"inclusive\"", "csf": "endpoint==\"http://a.example.org\"",
               "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}}),
    );
    let id = must_create(&app, CSUBS, None, &body).await;
    assert_eq!(id, "urn:ngsi-ld:Subscription:cs1");
    let r = app.get(&format!("{CSUBS}/{id}")).await;
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains(LD_CONTEXT_REL));
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["type"], "Subscription");
    assert_eq!(got["status"], "active");
    assert_eq!(got["entities"], json!([{"type": "Vehicle"}]));
    assert_eq!(got["watchedAttributes"], json!(["speed"]));
    assert!(got.get("notificationTrigger").is_none(), "{got}");
    // The two kinds of subscription are apart.
    assert_eq!(app.get(&format!("/ngsi-ld/v1/subscriptions/{id}")).await.status(), 404);
    assert_eq!(app.get("/ngsi-ld/v1/subscriptions").await.json::<Value>().await.unwrap(), json!([]));
    // The same id again: 409.
    assert_problem(post(&app, CSUBS, None, &body).await, 409, "AlreadyExists").await;
    // Update: members replace, null removes.
    let r = app.patch_json(&format!("{CSUBS}/{id}"), &json!({"isActive": false, "q": null})).await;
    assert_eq!(r.status(), 204);
    let got: Value = app.get(&format!("{CSUBS}/{id}")).await.json().await.unwrap();
    assert_eq!(got["status"], "paused");
    assert!(got.get("q").is_none());
    let r = app.patch_json(&format!("{CSUBS}/{id}"), &json!({"throttling": -1})).await;
    assert_problem(r, 400, "BadRequestData").await;
    assert_problem(
        app.patch_json(&format!("{CSUBS}/urn:x:none"), &json!({"isActive": true})).await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Query with paging and the count.
    for i in 2..=3 {
        must_create(&app, CSUBS, None, &csub("http://localhost:1111/notify", json!({"id": format!("urn:cs:{i}")})))
            .await;
    }
    let r = app.get(&format!("{CSUBS}?limit=1&offset=1&count=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let links: Vec<String> = r.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(links.iter().any(|l| l.contains("offset=0>;rel=\"prev\"")), "{links:?}");
    assert!(links.iter().any(|l| l.contains("offset=2>;rel=\"next\"")), "{links:?}");
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], "urn:cs:2");
    assert_problem(app.get(&format!("{CSUBS}?limit=-1")).await, 400, "BadRequestData").await;
    // Delete.
    assert_eq!(app.delete(&format!("{CSUBS}/{id}")).await.status(), 204);
    assert_problem(app.get(&format!("{CSUBS}/{id}")).await, 404, "ResourceNotFound").await;
    assert_problem(app.delete(&format!("{CSUBS}/{id}")).await, 404, "ResourceNotFound").await;
    assert_problem(app.delete(&format!("{CSUBS}/not-a-uri")).await, 400, "BadRequestData").await;
    // A generated id.
    let r = post(&app, CSUBS, None, &csub("http://localhost:1111/notify", json!({}))).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&format!("{CSUBS}/urn:ngsi-ld:Subscription:")));
}

#[tokio::test]
async fn invalid_csource_subscriptions_are_refused() {
    let app = spawn_app().await;
    let uri = "http://localhost:1111/notify";
    let cases = [
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}]}),
        csub(uri, json!({"type": "ContextSourceRegistration"})),
        csub(uri, json!({"q": "speed>>"})),
        csub(uri, json!({"csf": "(("})),
        csub(uri, json!({"watchedAttributes": []})),
        csub(uri, json!({"entities": [{"id": "urn:v:1"}]})),
        csub(uri, json!({"expiresAt": "2000-01-01T00:00:00Z"})),
        csub(uri, json!({"isActive": "yes"})),
        csub(uri, json!({"throttling": 0})),
        csub(uri, json!({"notificationTrigger": ["entityCreated"]})),
        csub(uri, json!({"temporalQ": {"timerel": "between", "timeAt": "2020-01-01T00:00:00Z"}})),
        csub(uri, json!({"temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z", "timeproperty": "x"}})),
        csub(uri, json!({"geoQ": {"geometry": "Point", "coordinates": [1, 2]}})),
        csub("ftp://x.example.org/", json!({})),
    ];
    for body in cases {
        let r = post(&app, CSUBS, None, &body).await;
        assert_eq!(r.status(), 400, "{body} was accepted");
    }
    let list: Value = app.get(CSUBS).await.json().await.unwrap();
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn registration_changes_notify_with_trigger_reasons() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let sub = must_create(&app, CSUBS, None, &csub(&rx.url, json!({}))).await;
    // Nothing matches yet: no initial notification.
    rx.expect_none(300).await;
    let other =
        must_create(&app, REGS, None, &reg(json!({"information": [{"entities": [{"type": "Building"}]}]}))).await;
    let car = must_create(&app, REGS, None, &reg(json!({"registrationName": "cars"}))).await;
    let n = rx.expect().await;
    assert_csource_notification(&n.body, &sub, "newlyMatching", &[&car]);
    assert_eq!(n.body["data"][0]["type"], "ContextSourceRegistration");
    assert_eq!(n.body["data"][0]["registrationName"], "cars");
    assert_eq!(n.body["data"][0]["information"][0]["entities"][0]["type"], json!(["Vehicle"]));
    assert!(n.header("link").is_some_and(|l| l.contains(LD_CONTEXT_REL)));
    // Updated and still matching.
    let r = app.patch_json(&format!("{REGS}/{car}"), &json!({"registrationName": "autos"})).await;
    assert_eq!(r.status(), 204);
    let n = rx.expect().await;
    assert_csource_notification(&n.body, &sub, "updated", &[&car]);
    assert_eq!(n.body["data"][0]["registrationName"], "autos");
    // Updated out of the subscription.
    let r = app.patch_json(&format!("{REGS}/{car}"), &json!({"information": [{"entities": [{"type": "Ship"}]}]})).await;
    assert_eq!(r.status(), 204);
    assert_csource_notification(&rx.expect().await.body, &sub, "noLongerMatching", &[&car]);
    // Changes to registrations that never match say nothing.
    app.patch_json(&format!("{REGS}/{other}"), &json!({"registrationName": "b"})).await;
    app.delete(&format!("{REGS}/{car}")).await;
    rx.expect_none(300).await;
    // Deleting a matching registration.
    let car2 = must_create(&app, REGS, None, &reg(json!({}))).await;
    assert_csource_notification(&rx.expect().await.body, &sub, "newlyMatching", &[&car2]);
    assert_eq!(app.delete(&format!("{REGS}/{car2}")).await.status(), 204);
    assert_csource_notification(&rx.expect().await.body, &sub, "noLongerMatching", &[&car2]);
    // The delivery statistics (counted once the receiver has answered).
    let mut got = Value::Null;
    for _ in 0..50 {
        got = app.get(&format!("{CSUBS}/{sub}")).await.json().await.unwrap();
        if got["notification"]["timesSent"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got["notification"]["timesSent"], 5, "{got}");
    assert_eq!(got["notification"]["status"], "ok");
    assert!(got["notification"].get("timesFailed").is_none(), "{got}");
    assert!(got["notification"]["lastSuccess"].is_string());
}

#[tokio::test]
async fn created_and_updated_subscriptions_get_the_current_registrations() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let car = must_create(&app, REGS, None, &reg(json!({}))).await;
    let bus = must_create(&app, REGS, None, &reg(json!({"information": [{"entities": [{"type": "Bus"}]}]}))).await;
    let sub = must_create(&app, CSUBS, None, &csub(&rx.url, json!({}))).await;
    assert_csource_notification(&rx.expect().await.body, &sub, "newlyMatching", &[&car]);
    let r =
        app.patch_json(&format!("{CSUBS}/{sub}"), &json!({"entities": [{"type": "Vehicle"}, {"type": "Bus"}]})).await;
    assert_eq!(r.status(), 204);
    assert_csource_notification(&rx.expect().await.body, &sub, "newlyMatching", &[&car, &bus]);
    // A paused subscription is told nothing.
    app.patch_json(&format!("{CSUBS}/{sub}"), &json!({"isActive": false})).await;
    must_create(&app, REGS, None, &reg(json!({}))).await;
    rx.expect_none(300).await;
}

#[tokio::test]
async fn filters_select_registrations() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let uri = rx.url.clone();
    let by_attr = must_create(&app, CSUBS, None, &csub(&uri, json!({"watchedAttributes": ["speed"]}))).await;
    let by_id =
        must_create(&app, CSUBS, None, &csub(&uri, json!({"entities": [{"id": "urn:v:1", "type": "Vehicle"}]}))).await;
    let by_q = must_create(&app, CSUBS, None, &csub(&uri, json!({"q": "registrationName==\"fast\""}))).await;
    let by_csf = must_create(&app, CSUBS, None, &csub(&uri, json!({"csf": "owner==\"acme\""}))).await;
    let by_geo = must_create(
        &app,
        CSUBS,
        None,
        &csub(
            &uri,
            json!({"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2]}}),
        ),
    )
    .await;
    // Matches every subscription but by_attr (relationships only), by_q and by_csf.
    let r = reg(
        json!({"information": [{"entities": [{"id": "urn:v:1", "type": "Vehicle"}], "relationshipNames": ["owner"]}],
        "location": {"type": "Point", "coordinates": [-8.521, 41.2]}}),
    );
    must_create(&app, REGS, None, &r).await;
    let mut want = vec![by_id.clone(), by_geo.clone()];
    want.sort();
    assert_eq!(received(&rx, 2).await, want);
    rx.expect_none(300).await;
    // Matches by_attr, by_q and by_csf (a pattern may describe urn:v:1 too).
    let r = reg(
        json!({"information": [{"entities": [{"idPattern": "urn:v:.*", "type": "Vehicle"}], "propertyNames": ["speed"]}],
        "registrationName": "fast", "owner": "acme", "location": {"type": "Point", "coordinates": [10, 10]}}),
    );
    must_create(&app, REGS, None, &r).await;
    let mut want = vec![by_attr, by_id, by_q, by_csf];
    want.sort();
    assert_eq!(received(&rx, 4).await, want);
    rx.expect_none(300).await;
}

/// The subscriptions of the next `n` notifications, sorted.
async fn received(rx: &Receiver, n: usize) -> Vec<String> {
    let mut subs = Vec::new();
    for _ in 0..n {
        subs.push(rx.expect().await.body["subscriptionId"].as_str().unwrap_or_default().to_owned());
    }
    subs.sort();
    subs
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let sub = must_create(&app, CSUBS, Some("acme"), &csub(&rx.url, json!({}))).await;
    let list: Value = app.get(CSUBS).await.json().await.unwrap();
    assert_eq!(list, json!([]));
    assert_eq!(app.get(&format!("{CSUBS}/{sub}")).await.status(), 404);
    must_create(&app, REGS, None, &reg(json!({}))).await;
    rx.expect_none(300).await;
    let id = must_create(&app, REGS, Some("acme"), &reg(json!({}))).await;
    let n = rx.expect().await;
    assert_csource_notification(&n.body, &sub, "newlyMatching", &[&id]);
    assert_eq!(n.header("ngsild-tenant"), Some("acme"));
}

#[tokio::test]
async fn only_matching_information_is_sent_and_time_intervals_repeat() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let both = reg(json!({"information": [{"entities": [{"type": "Bus"}]}, {"entities": [{"type": "Vehicle"}]}]}));
    let id = must_create(&app, REGS, None, &both).await;
    let sub = must_create(&app, CSUBS, None, &csub(&rx.url, json!({"timeInterval": 1}))).await;
    // Initially, then every second, with the Vehicle information item only.
    for _ in 0..2 {
        let n = rx.expect().await;
        assert_csource_notification(&n.body, &sub, "newlyMatching", &[&id]);
        assert_eq!(n.body["data"][0]["information"], json!([{"entities": [{"type": ["Vehicle"]}]}]));
    }
}

#[tokio::test]
async fn failed_deliveries_are_counted() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let sub = must_create(&app, CSUBS, None, &csub(&rx.url, json!({}))).await;
    must_create(&app, REGS, None, &reg(json!({}))).await;
    let mut got = Value::Null;
    for _ in 0..50 {
        got = app.get(&format!("{CSUBS}/{sub}")).await.json().await.unwrap();
        if got["notification"]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got["notification"]["status"], "failed", "{got}");
    assert!(got["notification"]["timesFailed"].as_u64().is_some_and(|n| n >= 1), "{got}");
    assert!(got["notification"]["lastFailure"].is_string(), "{got}");
    // Once the receiver is back, the retry succeeds.
    rx.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(rx.expect().await.body["triggerReason"], "newlyMatching");
}
