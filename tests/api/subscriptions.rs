//! Subscriptions and notifications, black-box: the subscription API, then every trigger,
//! format and filter observed through a local HTTP receiver.

use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, assert_problem, spawn_app};

const SUBS: &str = "/ngsi-ld/v1/subscriptions";

fn vehicle(id: &str, speed: f64) -> Value {
    json!({"id": id, "type": "Vehicle", "speed": {"type": "Property", "value": speed},
           "brand": {"type": "Property", "value": "Mercedes"}})
}

fn sub(rx: &Receiver, extra: Value) -> Value {
    let mut s = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
                       "notification": {"endpoint": {"uri": rx.url}}});
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        for (k, v) in e {
            if k == "notification" {
                let n = m["notification"].as_object_mut().unwrap();
                for (nk, nv) in v.as_object().unwrap() {
                    n.insert(nk.clone(), nv.clone());
                }
            } else {
                m.insert(k, v);
            }
        }
    }
    s
}

async fn set_speed(app: &TestApp, id: &str, speed: f64) {
    let r = app
        .patch_json(
            &format!("/ngsi-ld/v1/entities/{id}/attrs"),
            &json!({"speed": {"type": "Property", "value": speed}}),
        )
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn subscription_crud_round_trip() {
    let app = spawn_app().await;
    let body = json!({"id": "urn:ngsi-ld:Subscription:crud", "type": "Subscription",
        "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"], "q": "speed>50",
        "notification": {"endpoint": {"uri": "http://127.0.0.1:1/notify"}, "format": "keyValues"},
        "status": "expired", "__context": "http://hijacked"});
    let r = app.post_json(SUBS, &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:crud");

    let got: Value = app.get(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud")).await.json().await.unwrap();
    assert_eq!(
        got,
        json!({"id": "urn:ngsi-ld:Subscription:crud", "type": "Subscription", "entities": [{"type": "Vehicle"}],
               "watchedAttributes": ["speed"], "q": "speed>50",
               "notification": {"endpoint": {"uri": "http://127.0.0.1:1/notify"}, "format": "keyValues"},
               "notificationTrigger": ["attributeCreated", "attributeUpdated"], "status": "active"})
    );
    // The same id again is a conflict.
    assert_problem(app.post_json(SUBS, &body).await, 409, "AlreadyExists").await;

    // PATCH replaces members whole; isActive=false pauses.
    let r = app.patch_json(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud"), &json!({"isActive": false})).await;
    assert_eq!(r.status(), 204);
    let got: Value = app.get(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud")).await.json().await.unwrap();
    assert_eq!(got["status"], "paused");
    assert_eq!(got["isActive"], false);
    let r = app
        .patch_json(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud"), &json!({"notification": {"format": "concise"}}))
        .await;
    assert_problem(r, 400, "BadRequestData").await;

    // Listing with paging links and a count.
    let r2 = json!({"type": "Subscription", "entities": [{"type": "Car"}],
                    "notification": {"endpoint": {"uri": "http://127.0.0.1:1/notify"}}});
    app.subscribe(r2.clone()).await;
    app.subscribe(r2).await;
    let r = app.get(&format!("{SUBS}?limit=1&offset=1&count=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let links: Vec<String> = r.headers().get_all("link").iter().map(|v| v.to_str().unwrap().replace(' ', "")).collect();
    assert!(
        links
            .contains(&"</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel=\"prev\";type=\"application/ld+json\"".into())
    );
    assert!(
        links
            .contains(&"</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel=\"next\";type=\"application/ld+json\"".into())
    );
    let page: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page.len(), 1);

    let r = app.delete(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud")).await;
    assert_eq!(r.status(), 204);
    assert_problem(app.get(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud")).await, 404, "ResourceNotFound").await;
    assert_problem(app.delete(&format!("{SUBS}/urn:ngsi-ld:Subscription:crud")).await, 404, "ResourceNotFound").await;
    assert_problem(app.get(&format!("{SUBS}/not-a-uri")).await, 400, "BadRequestData").await;
}

#[tokio::test]
async fn invalid_subscriptions_are_rejected_with_problem_details() {
    let app = spawn_app().await;
    let ep = json!({"endpoint": {"uri": "http://127.0.0.1:1/n"}});
    let cases = [
        json!({}),
        json!({"type": "Subscription", "notification": ep}),
        json!({"type": "Subscription", "entities": [{"type": "V"}]}),
        json!({"id": "", "type": "Subscription", "entities": [{"type": "V"}], "notification": ep}),
        json!({"id": "nope", "type": "Subscription", "entities": [{"type": "V"}], "notification": ep}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "timeInterval": 10, "throttling": 5}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "throttling": -30}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "expiresAt": "2000-01-01T00:00:00Z"}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "notificationTrigger": ["entityChanged"]}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "q": "speed>>"}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "geoQ": {"georel": "near", "geometry": "Point", "coordinates": [1, 2]}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": ep, "jsonldContext": "unknownContext"}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "ftp://x/y"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/y"}, "format": "keyValues", "showChanges": true}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/y"}, "attributes": []}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/y", "receiverInfo": [{"key": "a", "value": 42}]}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/y"}, "pick": ["id"], "omit": ["id"]}}),
    ];
    for c in cases {
        let r = app.post_json(SUBS, &c).await;
        assert_eq!(r.status(), 400, "accepted: {c}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "{c}: {p}");
    }
    let r =
        app.client.post(app.url(SUBS)).header("content-type", "application/json").body("{,,}").send().await.unwrap();
    assert_problem(r, 400, "InvalidRequest").await;
    // Nothing was stored.
    let all: Vec<Value> = app.get(SUBS).await.json().await.unwrap();
    assert!(all.is_empty(), "{all:?}");
}

#[tokio::test]
async fn creation_and_updates_notify_with_context_tenant_and_changes() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let id = app
        .subscribe(sub(
            &rx,
            json!({"watchedAttributes": ["speed"],
                   "notification": {"showChanges": true, "endpoint": {"uri": rx.url, "receiverInfo": [{"key": "X-Api-Key", "value": "k1"}]}}}),
        ))
        .await;
    // No notification at subscription time.
    rx.expect_none(300).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:n1", 10.0)).await;
    let n = rx.expect().await;
    assert_eq!(n.body["type"], "Notification");
    assert_eq!(n.body["subscriptionId"], id.as_str());
    assert!(n.body["notifiedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(n.body["data"][0]["speed"], json!({"type": "Property", "value": 10.0}));
    assert!(n.header("link").unwrap().contains("ngsi-ld-core-context"), "{:?}", n.headers);
    assert_eq!(n.header("content-type"), Some("application/json"));
    assert_eq!(n.header("x-api-key"), Some("k1"));

    set_speed(&app, "urn:ngsi-ld:Vehicle:n1", 20.0).await;
    let n = rx.expect().await;
    assert_eq!(n.body["data"][0]["speed"], json!({"type": "Property", "value": 20.0, "previousValue": 10.0}));
    assert!(n.body["data"][0]["brand"].get("previousValue").is_none());

    // An attribute the subscription does not watch fires nothing.
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:n1/attrs",
            &json!({"brand": {"type": "Property", "value": "BMW"}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    rx.expect_none(500).await;

    // Statistics.
    let got: Value = app.get(&format!("{SUBS}/{id}")).await.json().await.unwrap();
    assert_eq!(got["notification"]["timesSent"], 2);
    assert_eq!(got["notification"]["status"], "ok");
    assert!(got["notification"]["lastSuccess"].is_string());
}

#[tokio::test]
async fn formats_attributes_and_accept_shape_the_notification() {
    let app = spawn_app().await;
    let rx_kv = Receiver::start().await;
    let rx_ld = Receiver::start().await;
    let rx_concise = Receiver::start().await;
    app.subscribe(sub(
        &rx_kv,
        json!({"notification": {"format": "keyValues", "attributes": ["speed"], "sysAttrs": true}}),
    ))
    .await;
    app.subscribe(sub(
        &rx_ld,
        json!({"notification": {"endpoint": {"uri": rx_ld.url, "accept": "application/ld+json"}}}),
    ))
    .await;
    app.subscribe(sub(&rx_concise, json!({"notification": {"format": "concise"}}))).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:f1", 33.0)).await;

    let kv = rx_kv.expect().await;
    let d = &kv.body["data"][0];
    assert_eq!(d["speed"], 33.0);
    assert!(d.get("brand").is_none(), "attributes filter: {d}");
    // sysAttrs asked for: the entity's timestamps, in keyValues too (ETSI 046_17_01).
    assert!(d["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{d}");
    assert!(d["modifiedAt"].is_string(), "{d}");
    assert_eq!(kv.header("ngsild-attribute-format"), Some("Simplified"));

    let ld = rx_ld.expect().await;
    assert!(ld.header("link").is_none());
    assert_eq!(ld.header("content-type"), Some("application/ld+json"));
    assert!(ld.body["data"][0]["@context"].is_string() || ld.body["data"][0]["@context"].is_array());

    let c = rx_concise.expect().await;
    assert_eq!(c.body["data"][0]["speed"], json!(33.0));
    assert_eq!(c.header("ngsild-attribute-format"), Some("Concise"));
}

#[tokio::test]
async fn deletions_notify_with_ngsi_ld_null_markers() {
    let app = spawn_app().await;
    let rx_entity = Receiver::start().await;
    let rx_attr = Receiver::start().await;
    app.subscribe(sub(
        &rx_entity,
        json!({"notificationTrigger": ["entityDeleted"], "notification": {"format": "keyValues"}}),
    ))
    .await;
    app.subscribe(sub(
        &rx_attr,
        json!({"notificationTrigger": ["attributeDeleted"], "watchedAttributes": ["brand"],
                                       "notification": {"showChanges": true}}),
    ))
    .await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:d1", 1.0)).await;
    rx_entity.expect_none(300).await;
    rx_attr.expect_none(1).await;

    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:d1/attrs/brand").await;
    assert_eq!(r.status(), 204);
    let n = rx_attr.expect().await;
    assert_eq!(
        n.body["data"][0]["brand"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": "Mercedes"})
    );
    assert_eq!(n.body["data"][0]["speed"]["value"], 1.0);

    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:d1").await;
    assert_eq!(r.status(), 204);
    let n = rx_entity.expect().await;
    let d = n.body["data"][0].as_object().unwrap();
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!(d["id"], "urn:ngsi-ld:Vehicle:d1");
    assert_eq!(d["type"], "Vehicle");
    assert!(d["deletedAt"].as_str().unwrap().ends_with('Z'));
    // The attribute subscription no longer watches anything the entity had.
    rx_attr.expect_none(300).await;
}

#[tokio::test]
async fn q_geo_and_scope_filters_decide_on_the_new_state() {
    let app = spawn_app().await;
    let rx_q = Receiver::start().await;
    let rx_geo = Receiver::start().await;
    let rx_scope = Receiver::start().await;
    app.subscribe(sub(&rx_q, json!({"q": "speed>50"}))).await;
    app.subscribe(sub(
        &rx_geo,
        json!({"geoQ": {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": [-3.7, 40.4]}}),
    ))
    .await;
    app.subscribe(sub(&rx_scope, json!({"scopeQ": "/Madrid/#"}))).await;

    let mut e = vehicle("urn:ngsi-ld:Vehicle:g1", 10.0);
    e["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.7001, 40.4001]}});
    e["scope"] = json!("/Madrid/Centro");
    app.create(e).await;
    assert!(rx_geo.expect().await.body["data"][0]["id"] == "urn:ngsi-ld:Vehicle:g1");
    assert!(rx_scope.expect().await.body["data"][0]["id"] == "urn:ngsi-ld:Vehicle:g1");
    rx_q.expect_none(300).await;

    set_speed(&app, "urn:ngsi-ld:Vehicle:g1", 80.0).await;
    assert_eq!(rx_q.expect().await.body["data"][0]["speed"]["value"], 80.0);
    rx_geo.expect().await;

    // Moving the entity far away: the geo subscription stops matching.
    let r = app
        .patch_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:g1/attrs",
            &json!({"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.17, 41.38]}}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    rx_q.expect().await;
    rx_geo.expect_none(500).await;
    // Another entity type never matches.
    app.create(json!({"id": "urn:ngsi-ld:Bike:b1", "type": "Bike", "speed": {"type": "Property", "value": 99}})).await;
    rx_q.expect_none(300).await;
}

#[tokio::test]
async fn throttling_expiry_and_pause_hold_notifications_back() {
    let app = spawn_app().await;
    let rx_t = Receiver::start().await;
    let rx_p = Receiver::start().await;
    let rx_e = Receiver::start().await;
    app.subscribe(sub(&rx_t, json!({"throttling": 2}))).await;
    let paused = app.subscribe(sub(&rx_p, json!({"isActive": false}))).await;
    let expires = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let exp = app.subscribe(sub(&rx_e, json!({"expiresAt": expires}))).await;

    app.create(vehicle("urn:ngsi-ld:Vehicle:t1", 1.0)).await;
    rx_t.expect().await;
    rx_e.expect().await;
    rx_p.expect_none(200).await;
    set_speed(&app, "urn:ngsi-ld:Vehicle:t1", 2.0).await;
    // Not expired yet.
    assert_eq!(rx_e.expect().await.body["data"][0]["speed"]["value"], 2.0);
    rx_t.expect_none(500).await;
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    set_speed(&app, "urn:ngsi-ld:Vehicle:t1", 3.0).await;
    assert_eq!(rx_t.expect().await.body["data"][0]["speed"]["value"], 3.0);
    rx_e.expect_none(300).await;
    let got: Value = app.get(&format!("{SUBS}/{exp}")).await.json().await.unwrap();
    assert_eq!(got["status"], "expired");

    // Resuming the paused one: it fires on the next change.
    let r = app.patch_json(&format!("{SUBS}/{paused}"), &json!({"isActive": true})).await;
    assert_eq!(r.status(), 204);
    set_speed(&app, "urn:ngsi-ld:Vehicle:t1", 4.0).await;
    assert_eq!(rx_p.expect().await.body["data"][0]["speed"]["value"], 4.0);
}

#[tokio::test]
async fn time_interval_sends_the_current_state_periodically() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:p1", 7.0)).await;
    let id = app.subscribe(sub(&rx, json!({"timeInterval": 1}))).await;
    // Nothing before the first interval has passed.
    rx.expect_none(700).await;
    let a = rx.next(3).await.expect("first periodic notification");
    let b = rx.next(3).await.expect("second periodic notification");
    for n in [a, b] {
        assert_eq!(n.body["subscriptionId"], id.as_str());
        assert_eq!(n.body["data"][0]["speed"]["value"], 7.0);
    }
    app.delete(&format!("{SUBS}/{id}")).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    while rx.next(0).await.is_some() {}
    rx.expect_none(1500).await;
}

#[tokio::test]
async fn a_receiver_that_fails_gets_every_notification_once_it_recovers() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let id = app.subscribe(sub(&rx, json!({}))).await;
    rx.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    for i in 0..5 {
        app.create(vehicle(&format!("urn:ngsi-ld:Vehicle:r{i}"), i as f64)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let got: Value = app.get(&format!("{SUBS}/{id}")).await.json().await.unwrap();
    assert_eq!(got["notification"]["status"], "failed", "{got}");
    assert!(got["notification"]["timesFailed"].as_u64().unwrap() >= 1);
    assert!(got["notification"]["lastFailure"].is_string());
    assert_eq!(got["status"], "active", "a failing receiver never pauses the subscription");

    rx.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let n = rx.next(15).await.expect("retried notification");
        ids.push(n.body["data"][0]["id"].as_str().unwrap().to_owned());
    }
    // In order, each once.
    let want: Vec<String> = (0..5).map(|i| format!("urn:ngsi-ld:Vehicle:r{i}")).collect();
    assert_eq!(ids, want);
    rx.expect_none(300).await;
    let got: Value = app.get(&format!("{SUBS}/{id}")).await.json().await.unwrap();
    let n = &got["notification"];
    assert_eq!(n["status"], "ok");
    // Notifications are counted, not attempts: five sent, the first of them failed at least.
    assert_eq!(n["timesSent"], 5, "{n}");
    let failed = n["timesFailed"].as_u64().unwrap();
    assert!((1..=5).contains(&failed), "{n}");
}

#[tokio::test]
async fn tenants_are_isolated_and_named_in_notifications() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let r =
        app.client.post(app.url(SUBS)).header("NGSILD-Tenant", "acme").json(&sub(&rx, json!({}))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // The default tenant does not see it, and its writes do not fire it.
    let all: Vec<Value> = app.get(SUBS).await.json().await.unwrap();
    assert!(all.is_empty());
    app.create(vehicle("urn:ngsi-ld:Vehicle:x1", 1.0)).await;
    rx.expect_none(400).await;
    let r = app
        .client
        .post(app.url("/ngsi-ld/v1/entities"))
        .header("NGSILD-Tenant", "acme")
        .json(&vehicle("urn:ngsi-ld:Vehicle:x1", 2.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let n = rx.expect().await;
    assert_eq!(n.header("ngsild-tenant"), Some("acme"));
    assert_eq!(n.body["data"][0]["speed"]["value"], 2.0);
}

#[tokio::test]
async fn batch_operations_notify_once_per_subscription_and_group() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.subscribe(sub(&rx, json!({"notification": {"format": "keyValues"}}))).await;
    let batch: Vec<Value> = (0..3).map(|i| vehicle(&format!("urn:ngsi-ld:Vehicle:b{i}"), i as f64)).collect();
    let r = app.post_json("/ngsi-ld/v1/entityOperations/create", &json!(batch)).await;
    assert_eq!(r.status(), 201);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        let n = rx.expect().await;
        for d in n.body["data"].as_array().unwrap() {
            assert!(seen.insert(d["id"].as_str().unwrap().to_owned()), "notified twice: {d}");
        }
    }
    // Merge, replace and purge notify too.
    let r = app
        .patch_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b0", &json!({"speed": {"type": "Property", "value": 9}}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(rx.expect().await.body["data"][0]["speed"], 9);
    let r = app
        .client
        .put(app.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b1"))
        .json(&json!({"type": "Vehicle", "speed": {"type": "Property", "value": 11}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(rx.expect().await.body["data"][0]["speed"], 11);
}

/// Subscribes a client of the local Mosquitto to `topic`; the payloads published there.
async fn mqtt_listen(topic: &str) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let id = format!("orbis-api-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (client, mut event_loop) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(id, "127.0.0.1", 1883), 10);
    client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        while let Ok(event) = event_loop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) if tx.send(p.payload.to_vec()).await.is_err() => {
                    return;
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(5), ready_rx).await.expect("SUBACK").unwrap();
    rx
}

/// MQTT notifications through the real Mosquitto: topic from the URI path, QoS and version from
/// notifierInfo, Orion-LD's `{metadata, body}` envelope with the receiverInfo headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_notifications_reach_the_topic() {
    let app = spawn_app().await;
    for version in ["mqtt3.1.1", "mqtt5.0"] {
        let topic = format!("orbis-api/{}", uuid::Uuid::new_v4().simple());
        let mut rx = mqtt_listen(&topic).await;
        let s = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
            "notification": {"format": "keyValues", "endpoint": {"uri": format!("mqtt://127.0.0.1:1883/{topic}"),
                "receiverInfo": [{"key": "test-receiver-key", "value": "test-receiver-info"}],
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}, {"key": "MQTT-Version", "value": version}]}}});
        let id = app.subscribe(s).await;
        let vid = format!("urn:ngsi-ld:Vehicle:{}", uuid::Uuid::new_v4().simple());
        app.create(vehicle(&vid, 5.0)).await;
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("an MQTT notification within 10 s")
            .unwrap();
        let msg: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(msg["metadata"]["Content-Type"], "application/json", "{msg}");
        assert!(msg["metadata"]["Link"].as_str().unwrap().contains("ngsi-ld-core-context"), "{msg}");
        assert_eq!(msg["metadata"]["test-receiver-key"], "test-receiver-info");
        assert_eq!(msg["body"]["subscriptionId"], id.as_str());
        assert_eq!(msg["body"]["data"][0]["id"], vid.as_str());
        assert_eq!(msg["body"]["data"][0]["speed"], 5.0);
        app.delete(&format!("{SUBS}/{id}")).await;
    }
}

/// AMQP notifications through the real RabbitMQ (an Orbis extension): exchange and routing key
/// from the URI, the notification as a persistent message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_notifications_reach_the_exchange() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let app = spawn_app().await;
    let conn = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672", lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let key = format!("orbis.api.{}", uuid::Uuid::new_v4().simple());
    ch.queue_bind(
        q.name().clone(),
        "amq.topic".into(),
        key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let s = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": format!("amqp://guest:guest@127.0.0.1:5672?exchange=amq.topic&routingKey={key}")}}});
    let id = app.subscribe(s).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:amqp1", 8.0)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let delivery = loop {
        if let Some(m) = ch.basic_get(q.name().clone(), BasicGetOptions { no_ack: true }).await.unwrap() {
            break m.delivery;
        }
        assert!(std::time::Instant::now() < deadline, "no AMQP notification within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let body: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body["subscriptionId"], id.as_str());
    assert_eq!(body["data"][0]["speed"]["value"], 8.0);
    assert_eq!(delivery.properties.delivery_mode(), &Some(2));
    let got: Value = app.get(&format!("{SUBS}/{id}")).await.json().await.unwrap();
    assert_eq!(got["notification"]["status"], "ok");
}

/// `jsonldContext` decides the context of notifications and is announced as given (ETSI 046_20).
#[tokio::test]
async fn jsonld_context_is_announced_as_given() {
    let app = spawn_app().await;
    let rx_ld = Receiver::start().await;
    let rx_json = Receiver::start().await;
    let v18 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
    app.subscribe(sub(&rx_ld, json!({"jsonldContext": v18, "notification": {"endpoint": {"uri": rx_ld.url, "accept": "application/ld+json"}}})))
        .await;
    app.subscribe(sub(&rx_json, json!({"jsonldContext": v18}))).await;
    app.create(vehicle("urn:ngsi-ld:Vehicle:j1", 1.0)).await;
    assert_eq!(rx_ld.expect().await.body["data"][0]["@context"], v18);
    let n = rx_json.expect().await;
    assert!(n.header("link").unwrap().starts_with(&format!("<{v18}>")), "{:?}", n.header("link"));
}

/// An inline @context of a subscription is hosted as an ImplicitlyCreated context, named in
/// `jsonldContext` and listed by the @context API (GS CIM 009 §5.13.2, ETSI 050_03).
#[tokio::test]
async fn inline_contexts_become_implicitly_created_contexts() {
    let app = spawn_app().await;
    let body = json!({"type": "Subscription", "entities": [{"type": "Car"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:1/n"}},
        "@context": [{"Car": "http://example.org/Car"}, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]});
    let r = app
        .client
        .post(app.url(SUBS))
        .header("content-type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let got: Value = app.get(&format!("{SUBS}/{id}")).await.json().await.unwrap();
    let url = got["jsonldContext"].as_str().expect("jsonldContext names the implicit context").to_owned();
    // Compacted with the request's (core) context, the type shows expanded.
    assert_eq!(got["entities"][0]["type"], "http://example.org/Car");
    let list: Vec<Value> =
        app.get("/ngsi-ld/v1/jsonldContexts?details=true&kind=ImplicitlyCreated").await.json().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["URL"], url.as_str());
    assert_eq!(list[0]["numberOfHits"], 1);
    // Only cached contexts can be reloaded; an implicit one can be deleted.
    let local_id = list[0]["localId"].as_str().unwrap().to_owned();
    let r = app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{local_id}?reload=true")).await;
    crate::helpers::assert_problem(r, 400, "BadRequestData").await;
    assert_eq!(app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{local_id}")).await.status(), 204);
    // A single context URL is kept as it is.
    let plain = json!({"type": "Subscription", "entities": [{"type": "Car"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:1/n"}}});
    let id2 = app.subscribe(plain).await;
    let got: Value = app.get(&format!("{SUBS}/{id2}")).await.json().await.unwrap();
    assert!(got.get("jsonldContext").is_none(), "{got}");
}

/// With a tiny in-memory queue, notifications that do not fit wait in the durable outbox and
/// are all delivered once the receiver takes them: memory stays bounded and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_beyond_the_queue_wait_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = crate::helpers::settings(dir.path());
    s.notification_queue = 2;
    let app = crate::helpers::spawn_with(s, Some(dir)).await;
    let rx = Receiver::start().await;
    rx.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    app.subscribe(sub(&rx, json!({"notification": {"format": "keyValues"}}))).await;
    for i in 0..20 {
        app.create(vehicle(&format!("urn:ngsi-ld:Vehicle:q{i}"), i as f64)).await;
    }
    rx.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 20 {
        let n = rx.next(20).await.expect("every notification arrives");
        for d in n.body["data"].as_array().unwrap() {
            got.insert(d["id"].as_str().unwrap().to_owned());
        }
    }
    rx.expect_none(500).await;
}
