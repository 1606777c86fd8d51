//! Subscriptions (§5.8.1–§5.8.5, the Subscription data type §5.2.12, NotificationParams
//! §5.2.14, Endpoint §5.2.15) and notifications (§5.3.1, notification behaviour §5.8.6),
//! observed through a local HTTP [`Receiver`].
//!
//! Every test subscribes to an entity type of its own ([`unique_type`]), so subscriptions of
//! tests running in parallel never fire on each other's entities; tests about listing or
//! tenants use their own tenants. Where a test checks that a change does *not* notify, it then
//! makes a change that does, and requires that the first notification received is that one:
//! a broken subscription cannot pass the negative check by never notifying at all.

use std::time::Duration;

use conformance_tests::*;

/// How long a test waits to be sure no notification comes (when nothing follows to prove it).
const QUIET: Duration = Duration::from_millis(1500);
/// The NGSI-LD Null (§4.5.14), the value of a deleted attribute in notifications.
const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

fn subs_path() -> String {
    format!("{API}/subscriptions")
}

fn sub_path(id: &str) -> String {
    format!("{API}/subscriptions/{}", encode(id))
}

/// An entity type no other test uses.
fn unique_type(prefix: &str) -> String {
    format!("{prefix}{}", unique_suffix())
}

/// A subscription to entities of type `ty`, notifying `uri` as `application/json`.
fn subscription(ty: &str, uri: &str) -> Value {
    json!({
        "id": unique_id("Subscription"),
        "type": "Subscription",
        "entities": [{"type": ty}],
        "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}
    })
}

/// `base` with the members of `extra` set (top level; `notification` members are merged one
/// level down, `notification.endpoint` members two levels down).
fn with(mut base: Value, extra: Value) -> Value {
    let (Value::Object(m), Value::Object(e)) = (&mut base, extra) else { panic!("objects expected") };
    for (k, v) in e {
        match (k.as_str(), m.get_mut(&k), v) {
            ("notification", Some(Value::Object(n)), Value::Object(nv)) => {
                for (nk, nv) in nv {
                    match (nk.as_str(), n.get_mut(&nk), nv) {
                        ("endpoint", Some(Value::Object(ep)), Value::Object(ev)) => ep.extend(ev),
                        (_, _, nv) => {
                            n.insert(nk, nv);
                        }
                    }
                }
            }
            (_, _, v) => {
                m.insert(k, v);
            }
        }
    }
    base
}

/// A vehicle of type `ty` with `speed` and `name`.
fn vehicle(id: &str, ty: &str, speed: i64) -> Value {
    json!({"id": id, "type": ty,
           "speed": {"type": "Property", "value": speed},
           "name": {"type": "Property", "value": "Beetle"}})
}

/// POST /subscriptions (application/json), insisting on 201; returns the subscription id.
async fn must_subscribe(b: &Broker, tenant: Option<&str>, body: &Value) -> String {
    let r = b.json(Method::POST, &subs_path(), tenant, body).await;
    assert_eq!(r.status, 201, "creating subscription {body}: {}", r.text);
    match body["id"].as_str() {
        Some(id) => id.to_owned(),
        None => location_id(&r),
    }
}

/// The subscription id named by the last segment of a Location header.
fn location_id(r: &Resp) -> String {
    let loc = r.header("location").expect("a Location header on 201");
    let path = location_path(loc);
    decode(path.rsplit('/').next().unwrap_or(""))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GET /subscriptions/{id} as application/json, insisting on 200.
async fn must_get_sub(b: &Broker, tenant: Option<&str>, id: &str) -> Value {
    let r = b.get_json(&sub_path(id), tenant).await;
    assert_eq!(r.status, 200, "retrieving subscription {id}: {}", r.text);
    r.json()
}

/// DELETE /subscriptions/{id}, whatever the answer (clean-up).
async fn unsubscribe(b: &Broker, tenant: Option<&str>, id: &str) {
    b.delete(&sub_path(id), tenant).await;
}

/// PATCH /entities/{id}/attrs, insisting on 204.
async fn must_update(b: &Broker, tenant: Option<&str>, id: &str, attrs: &Value) {
    let r = b.json(Method::PATCH, &format!("{API}/entities/{}/attrs", encode(id)), tenant, attrs).await;
    assert_eq!(r.status, 204, "updating {id} with {attrs}: {}", r.text);
}

async fn set_speed(b: &Broker, tenant: Option<&str>, id: &str, speed: i64) {
    must_update(b, tenant, id, &json!({"speed": {"type": "Property", "value": speed}})).await;
}

/// Whether the notification tells `id`'s speed as `speed` (normalized or keyValues).
fn tells_speed(n: &Notification, id: &str, speed: i64) -> bool {
    n.entity(id).is_some_and(|e| e["speed"]["value"] == json!(speed) || e["speed"] == json!(speed))
}

/// Asserts that `before` (what came before the expected notification) is empty.
fn nothing_before(before: &[Notification], why: &str) {
    assert!(
        before.is_empty(),
        "unexpected notification ({why}): {:?}",
        before.iter().map(|n| &n.raw).collect::<Vec<_>>()
    );
}

/// A DateTime as NGSI-LD renders it: `YYYY-MM-DDThh:mm:ss[.fff]Z`.
fn is_utc_datetime(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    s.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18].iter().all(|&i| b[i].is_ascii_digit())
}

/// The value of `expiresAt` without a zero fraction (`…:00.000Z` and `…:00Z` are the same).
fn same_instant(v: &Value) -> Value {
    json!(v.as_str().unwrap_or("").replace(".000Z", "Z"))
}

/// Polls GET /subscriptions/{id} until `pred` holds on the body (at most 5 s).
async fn poll_sub(b: &Broker, tenant: Option<&str>, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    loop {
        let s = must_get_sub(b, tenant, id).await;
        if pred(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "subscription {id} never showed {what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Create, retrieve, query, update, delete.

/// §5.8.1, §6.10.3.1 (ETSI TP 028_01, 5811_01_03): Create Subscription answers 201 with a
/// Location naming the subscription; with no id the broker assigns a URI; either is readable.
#[tokio::test]
async fn create_answers_201_with_location() {
    let b = Broker::get();
    let ty = unique_type("Car");
    let body = subscription(&ty, "http://127.0.0.1:9/notify");
    let id = body["id"].as_str().unwrap().to_owned();
    let r = b.json(Method::POST, &subs_path(), None, &body).await;
    r.expect(201);
    assert_eq!(location_id(&r), id, "Location names the subscription: {:?}", r.header("location"));
    assert!(location_path(r.header("location").unwrap()).starts_with(&format!("{API}/subscriptions/")));
    assert_eq!(must_get_sub(&b, None, &id).await["id"], json!(id));

    let mut anonymous = subscription(&ty, "http://127.0.0.1:9/notify");
    anonymous.as_object_mut().unwrap().remove("id");
    let r = b.json(Method::POST, &subs_path(), None, &anonymous).await;
    r.expect(201);
    let generated = location_id(&r);
    assert!(generated.contains(':') && !generated.contains('/'), "a generated id is a URI: {generated}");
    assert_eq!(must_get_sub(&b, None, &generated).await["id"], json!(generated));
    unsubscribe(&b, None, &id).await;
    unsubscribe(&b, None, &generated).await;
}

/// §5.8.3, §5.2.12 (ETSI TP 028_01, 028_06, 030_03): Retrieve Subscription returns the members
/// given, as given (arrays stay arrays), plus `status` (and the default `notificationTrigger`);
/// no other default is invented, and no delivery status appears before any delivery.
#[tokio::test]
async fn retrieve_echoes_the_members_given() {
    let b = Broker::get();
    let ty = unique_type("Car");
    let body = json!({
        "id": unique_id("Subscription"),
        "type": "Subscription",
        "subscriptionName": "echo",
        "description": "a subscription echoed as given",
        "entities": [{"type": ty, "idPattern": "urn:ngsi-ld:Car:.*"}],
        "watchedAttributes": ["speed"],
        "q": "speed>10",
        "expiresAt": "2099-01-01T00:00:00Z",
        "throttling": 5,
        "notification": {
            "attributes": ["speed"],
            "format": "keyValues",
            "endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}
        }
    });
    let id = must_subscribe(&b, None, &body).await;
    let mut got = must_get_sub(&b, None, &id).await;
    let g = got.as_object_mut().expect("a subscription is an object");
    assert_eq!(g.remove("status"), Some(json!("active")), "status");
    if let Some(t) = g.remove("notificationTrigger") {
        assert_eq!(t, json!(["attributeCreated", "attributeUpdated"]), "the default notificationTrigger");
    }
    g.remove("@context");
    if let Some(e) = g.get_mut("expiresAt") {
        *e = same_instant(e);
    }
    assert_eq!(got, body, "the subscription as given (plus status)");
    unsubscribe(&b, None, &id).await;
}

/// §5.8.4, §5.5.9 (ETSI TP 031_01, 031_02): Query Subscriptions lists the tenant's
/// subscriptions; `limit`/`offset` page through them, with `prev`/`next` Link headers where a
/// previous or next page exists.
#[tokio::test]
async fn query_pages_with_limit_offset_and_links() {
    let b = Broker::get();
    let t = unique_tenant();
    let ty = unique_type("Car");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(must_subscribe(&b, Some(&t), &subscription(&ty, "http://127.0.0.1:9/notify")).await);
    }
    let r = b.get_json(&subs_path(), Some(&t)).await;
    r.expect(200);
    let mut all: Vec<String> =
        r.json().as_array().expect("an array").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "exactly the tenant's subscriptions");

    let mut seen = Vec::new();
    for (offset, prev, next) in [(0, None, Some(1)), (1, Some(0), Some(2)), (2, Some(1), None)] {
        let r = b.get_json(&format!("{}?limit=1&offset={offset}", subs_path()), Some(&t)).await;
        r.expect(200);
        let page = r.json();
        let page = page.as_array().expect("an array");
        assert_eq!(page.len(), 1, "limit=1&offset={offset}: {page:?}");
        assert_eq!(page[0]["type"], json!("Subscription"));
        seen.push(page[0]["id"].as_str().expect("id").to_owned());
        let links = paging_links(&r);
        assert_eq!(links.get("prev").cloned(), prev.map(|o| (1, o)), "prev link at offset {offset}: {links:?}");
        assert_eq!(links.get("next").cloned(), next.map(|o| (1, o)), "next link at offset {offset}: {links:?}");
    }
    seen.sort();
    assert_eq!(seen, want, "paging visits each subscription once");
}

/// The `rel="prev"`/`rel="next"` Link entries of a response, as `rel → (limit, offset)`; also
/// checks that each points at the subscriptions resource.
fn paging_links(r: &Resp) -> std::collections::HashMap<String, (u64, u64)> {
    let mut out = std::collections::HashMap::new();
    for v in r.headers.get_all("link") {
        let s = v.to_str().expect("a text Link header");
        for entry in s.split(',') {
            let entry: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
            if entry.contains("json-ld#context") {
                continue;
            }
            let (Some(a), Some(z)) = (entry.find('<'), entry.find('>')) else { continue };
            let url = &entry[a + 1..z];
            let rel = entry[z..].split(';').find_map(|p| p.strip_prefix("rel=")).map(|x| x.trim_matches('"'));
            let Some(rel) = rel else { continue };
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            assert!(path.ends_with("/ngsi-ld/v1/subscriptions"), "a paging link points at /subscriptions: {entry}");
            let param = |k: &str| {
                query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).and_then(|x| x.parse::<u64>().ok())
            };
            out.insert(rel.to_owned(), (param("limit").unwrap_or(0), param("offset").unwrap_or(0)));
        }
    }
    out
}

/// §5.8.2 (ETSI TP 029_05, 029_06, 029_09, 029_07): Update Subscription answers 204 with no
/// body; each member given replaces the stored one whole (`notification` is not merged),
/// members not given are kept; `isActive: false` makes the status `paused`, `true` `active`.
#[tokio::test]
async fn update_replaces_members_and_pauses() {
    let b = Broker::get();
    let ty = unique_type("Car");
    let body = with(
        subscription(&ty, "http://127.0.0.1:9/notify"),
        json!({"throttling": 5, "notification": {"attributes": ["speed"], "format": "keyValues"}}),
    );
    let id = must_subscribe(&b, None, &body).await;

    let new_notification = json!({"endpoint": {"uri": "http://127.0.0.1:10/other", "accept": "application/json"}});
    let r = b.json(Method::PATCH, &sub_path(&id), None, &json!({"notification": new_notification})).await;
    r.expect(204);
    assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);
    let got = must_get_sub(&b, None, &id).await;
    assert_eq!(got["notification"], new_notification, "notification is replaced whole, not merged");
    assert_eq!(got["throttling"], json!(5), "members not given are kept");
    assert_eq!(got["entities"], body["entities"], "members not given are kept");
    assert_eq!(got["status"], json!("active"));

    b.json(Method::PATCH, &sub_path(&id), None, &json!({"isActive": false})).await.expect(204);
    let got = must_get_sub(&b, None, &id).await;
    assert_eq!(got["status"], json!("paused"), "isActive false pauses: {got}");
    assert_eq!(got["isActive"], json!(false), "isActive is shown as given: {got}");

    b.json(Method::PATCH, &sub_path(&id), None, &json!({"isActive": true})).await.expect(204);
    assert_eq!(must_get_sub(&b, None, &id).await["status"], json!("active"), "isActive true resumes");
    unsubscribe(&b, None, &id).await;
}

/// §5.8.2, §5.5.2 (ETSI TP 029_02, 029_03, 029_11): updating an unknown subscription is 404
/// ResourceNotFound; a fragment that leaves an invalid subscription (a `notification` without
/// an endpoint, an `expiresAt` in the past) is 400 BadRequestData and changes nothing.
#[tokio::test]
async fn update_errors() {
    let b = Broker::get();
    let r = b.json(Method::PATCH, &sub_path(&unique_id("Subscription")), None, &json!({"isActive": false})).await;
    r.expect_problem(404, "ResourceNotFound");
    let ty = unique_type("Car");
    let body = subscription(&ty, "http://127.0.0.1:9/notify");
    let id = must_subscribe(&b, None, &body).await;
    let r = b.json(Method::PATCH, &sub_path(&id), None, &json!({"notification": {"format": "keyValues"}})).await;
    r.expect_problem(400, "BadRequestData");
    let r = b.json(Method::PATCH, &sub_path(&id), None, &json!({"expiresAt": "2000-01-01T00:00:00Z"})).await;
    r.expect_problem(400, "BadRequestData");
    let got = must_get_sub(&b, None, &id).await;
    assert_eq!(got["notification"], body["notification"], "a rejected update changes nothing");
    assert!(got.get("expiresAt").is_none(), "a rejected update changes nothing: {got}");
    unsubscribe(&b, None, &id).await;
}

/// §5.8.5 (ETSI TP 032_02, 032_03): Delete Subscription answers 204 with no body; the
/// subscription is then gone: GET and DELETE are 404 ResourceNotFound and it is not listed.
#[tokio::test]
async fn delete_then_404() {
    let b = Broker::get();
    let t = unique_tenant();
    let id = must_subscribe(&b, Some(&t), &subscription(&unique_type("Car"), "http://127.0.0.1:9/notify")).await;
    let r = b.delete(&sub_path(&id), Some(&t)).await;
    r.expect(204);
    assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);
    b.get_json(&sub_path(&id), Some(&t)).await.expect_problem(404, "ResourceNotFound");
    b.delete(&sub_path(&id), Some(&t)).await.expect_problem(404, "ResourceNotFound");
    let r = b.get_json(&subs_path(), Some(&t)).await;
    r.expect(200);
    assert!(!r.text.contains(&id), "a deleted subscription is not listed: {}", r.text);
}

/// §5.8.3, §5.5.2 (ETSI TP 030_01, 030_02): retrieving a subscription by an id that is not a
/// URI is 400 BadRequestData; an unknown one is 404 ResourceNotFound.
#[tokio::test]
async fn retrieve_errors() {
    let b = Broker::get();
    b.get_json(&sub_path("InvalidUri"), None).await.expect_problem(400, "BadRequestData");
    b.get_json(&sub_path(&unique_id("Subscription")), None).await.expect_problem(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------------------------
// Validation on create (§5.8.1.4 error cases, §5.2.12 constraints).

/// POSTs `body` and expects 400 BadRequestData.
async fn rejected(body: Value, why: &str) {
    let b = Broker::get();
    let r = b.json(Method::POST, &subs_path(), None, &body).await;
    assert_eq!(r.status, 400, "{why}: expected 400 for {body}; got {}: {}", r.status, r.text);
    r.expect_problem(400, "BadRequestData");
}

fn valid() -> Value {
    subscription(&unique_type("Car"), "http://127.0.0.1:9/notify")
}

/// §5.2.12 (ETSI TP 028_02_02): `notification` is mandatory.
#[tokio::test]
async fn create_without_notification_is_400() {
    let mut s = valid();
    s.as_object_mut().unwrap().remove("notification");
    rejected(s, "no notification").await;
    rejected(json!({}), "an empty object").await;
}

/// §5.2.12: a subscription needs `entities` or `watchedAttributes` (unless it is periodic).
#[tokio::test]
async fn create_without_entities_or_watched_attributes_is_400() {
    let mut s = valid();
    s.as_object_mut().unwrap().remove("entities");
    rejected(s, "neither entities nor watchedAttributes").await;
}

/// §5.8.1, §5.2.12 (ETSI TP 028_03_01, 028_03_02): the id of a subscription is a URI.
#[tokio::test]
async fn create_with_an_id_that_is_not_a_uri_is_400() {
    rejected(with(valid(), json!({"id": "invalidId"})), "id invalidId").await;
    rejected(with(valid(), json!({"id": ""})), "an empty id").await;
}

/// §5.2.12 (ETSI TP 028_05_01): `throttling` and `timeInterval` cannot be used together.
#[tokio::test]
async fn create_with_throttling_and_time_interval_is_400() {
    rejected(with(valid(), json!({"timeInterval": 10, "throttling": 30})), "throttling with timeInterval").await;
}

/// §5.2.12 (ETSI TP 028_05_02): `throttling` is a positive number.
#[tokio::test]
async fn create_with_negative_throttling_is_400() {
    rejected(with(valid(), json!({"throttling": -30})), "negative throttling").await;
}

/// §5.8.1 (ETSI TP 5811_01_01): `expiresAt` must be in the future.
#[tokio::test]
async fn create_with_expires_at_in_the_past_is_400() {
    rejected(with(valid(), json!({"expiresAt": "2000-01-01T00:00:00Z"})), "expiresAt in the past").await;
}

/// §5.2.12 (ETSI TP 5811_02_01): `notificationTrigger` holds only the defined trigger names.
#[tokio::test]
async fn create_with_an_unknown_notification_trigger_is_400() {
    rejected(with(valid(), json!({"notificationTrigger": ["entityChanged"]})), "trigger entityChanged").await;
}

/// §5.2.12, §4.9: `q` must be a valid query.
#[tokio::test]
async fn create_with_a_bad_q_is_400() {
    rejected(with(valid(), json!({"q": "(speed>1"})), "q with an open parenthesis").await;
    rejected(with(valid(), json!({"q": "speed>"})), "q without a value").await;
}

/// §5.8.1, §5.5.2 (ETSI TP 028_02_01): a body that is not JSON is 400 InvalidRequest.
#[tokio::test]
async fn create_with_malformed_json_is_400_invalid_request() {
    let b = Broker::get();
    let rb = b
        .request(Method::POST, &subs_path())
        .header("Content-Type", "application/json")
        .body(r#"{"type": "Subscription",, "entities": [{"type": "Car"}]}"#);
    b.send(rb).await.expect_problem(400, "InvalidRequest");
}

/// §5.8.1, §5.5.2 (ETSI TP 028_04_01): creating a subscription whose id exists is 409
/// AlreadyExists.
#[tokio::test]
async fn create_with_a_duplicate_id_is_409() {
    let b = Broker::get();
    let s = valid();
    let id = must_subscribe(&b, None, &s).await;
    b.json(Method::POST, &subs_path(), None, &s).await.expect_problem(409, "AlreadyExists");
    unsubscribe(&b, None, &id).await;
}

// ---------------------------------------------------------------------------------------------
// Notifications.

/// §5.3.1 (ETSI TP 046_07_01, 046_01_01): a notification is `{id, type: "Notification",
/// subscriptionId, notifiedAt, data}`: `id` a URI, `notifiedAt` a UTC DateTime, `data` the
/// entities, in the normalized format by default.
#[tokio::test]
async fn notification_body_shape() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    set_speed(&b, None, &e, 20).await;
    let n = rx.expect("an attribute update").await;
    assert_eq!(n.method, "POST", "notifications are POSTed");
    let body = n.body.as_object().unwrap_or_else(|| panic!("the body is a JSON object: {}", n.raw));
    let nid = body.get("id").and_then(Value::as_str).unwrap_or("");
    assert!(nid.contains(':') && !nid.contains(' '), "the notification id is a URI: {}", n.raw);
    assert_eq!(body.get("type"), Some(&json!("Notification")), "{}", n.raw);
    assert_eq!(body.get("subscriptionId"), Some(&json!(sid)), "{}", n.raw);
    assert!(body.get("notifiedAt").is_some_and(is_utc_datetime), "notifiedAt is a UTC DateTime: {}", n.raw);
    let data = n.data();
    assert_eq!(data.len(), 1, "one entity changed: {}", n.raw);
    assert_eq!(data[0]["id"], json!(e));
    assert_eq!(data[0]["type"], json!(ty));
    assert_eq!(data[0]["speed"]["type"], json!("Property"), "normalized by default: {}", n.raw);
    assert_eq!(data[0]["speed"]["value"], json!(20));
    unsubscribe(&b, None, &sid).await;
}

/// §5.8.6: creating a subscription sends nothing by itself; the first notification is the one
/// a later change causes (ETSI TP 046_01, 046_11 rely on this).
#[tokio::test]
async fn no_notification_on_subscription_creation() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    rx.expect_none(Duration::from_secs(1), "a subscription was created, nothing changed").await;
    set_speed(&b, None, &e, 11).await;
    let (_, before) = rx.expect_where("the update", |n| tells_speed(n, &e, 11)).await;
    nothing_before(&before, "creating a subscription");
    unsubscribe(&b, None, &sid).await;
}

/// §5.3.1, §6.3.5 (ETSI TP 046_10_01): with `endpoint.accept` `application/json` the
/// notification is `application/json`, its `data` items carry no `@context`, and one `Link`
/// header names the subscription's context, the one `data` is compacted with.
#[tokio::test]
async fn json_notification_links_the_subscription_context() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let s = unique_suffix();
    let ty = format!("Car{s}");
    let (ctx_url, _) = b
        .host_context(&json!({
            ty.clone(): format!("https://example.org/conformance/{ty}"),
            "speedy": format!("https://example.org/conformance/speed{s}")
        }))
        .await;
    let link = link_header(&ctx_url);
    let e = unique_id("Car");
    let entity = json!({"id": e, "type": ty, "speedy": {"type": "Property", "value": 1}});
    let r = b
        .send(
            b.request(Method::POST, &format!("{API}/entities"))
                .header("Content-Type", "application/json")
                .header("Link", &link)
                .body(entity.to_string()),
        )
        .await;
    r.expect(201);
    let sub = subscription(&ty, rx.url());
    let r = b
        .send(
            b.request(Method::POST, &subs_path())
                .header("Content-Type", "application/json")
                .header("Link", &link)
                .body(sub.to_string()),
        )
        .await;
    r.expect(201);
    let sid = sub["id"].as_str().unwrap().to_owned();
    let r = b
        .send(
            b.request(Method::PATCH, &format!("{API}/entities/{}/attrs", encode(&e)))
                .header("Content-Type", "application/json")
                .header("Link", &link)
                .body(json!({"speedy": {"type": "Property", "value": 2}}).to_string()),
        )
        .await;
    r.expect(204);
    let n = rx.expect("an attribute update").await;
    assert_eq!(n.media_type(), "application/json", "Content-Type of the notification");
    assert_eq!(
        n.link_contexts(),
        vec![ctx_url.clone()],
        "exactly one context Link, the subscription's: {:?}",
        n.headers
    );
    let item = n.must_entity(&e);
    assert!(item.get("@context").is_none(), "no @context in data with application/json: {}", n.raw);
    assert_eq!(item["type"], json!(ty), "data compacted with the subscription's context: {}", n.raw);
    assert_eq!(item["speedy"]["value"], json!(2), "data compacted with the subscription's context: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.3.1, §6.3.5 (ETSI TP 046_14_01, 046_19): with `endpoint.accept` `application/ld+json`
/// the notification is `application/ld+json`, has no context `Link` header, and each `data`
/// item carries the subscription's `@context`.
#[tokio::test]
async fn ld_json_notification_carries_the_context_in_data() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let s = unique_suffix();
    let ty = format!("Car{s}");
    let (ctx_url, _) = b.host_context(&json!({ty.clone(): format!("https://example.org/conformance/{ty}")})).await;
    let e = unique_id("Car");
    let entity = json!({"id": e, "type": ty, "speed": {"type": "Property", "value": 1}, "@context": ctx_url});
    b.ld_json(Method::POST, &format!("{API}/entities"), None, &entity).await.expect(201);
    let mut sub =
        with(subscription(&ty, rx.url()), json!({"notification": {"endpoint": {"accept": "application/ld+json"}}}));
    sub["@context"] = json!(ctx_url);
    b.ld_json(Method::POST, &subs_path(), None, &sub).await.expect(201);
    let sid = sub["id"].as_str().unwrap().to_owned();
    set_speed_ld(&b, &e, &ctx_url, 2).await;
    let n = rx.expect("an attribute update").await;
    assert_eq!(n.media_type(), "application/ld+json", "Content-Type of the notification");
    assert!(n.link_contexts().is_empty(), "no context Link header with application/ld+json: {:?}", n.headers);
    let item = n.must_entity(&e);
    let ctx = item.get("@context").unwrap_or_else(|| panic!("@context in each data item: {}", n.raw));
    let names_ctx = ctx == &json!(ctx_url) || ctx.as_array().is_some_and(|a| a.contains(&json!(ctx_url)));
    assert!(names_ctx, "the data item's @context is the subscription's ({ctx_url}): {ctx}");
    assert_eq!(item["type"], json!(ty), "data compacted with the subscription's context: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

async fn set_speed_ld(b: &Broker, id: &str, ctx_url: &str, speed: i64) {
    let body = json!({"speed": {"type": "Property", "value": speed}, "@context": ctx_url});
    b.ld_json(Method::PATCH, &format!("{API}/entities/{}/attrs", encode(id)), None, &body).await.expect(204);
}

/// §4.14, §5.3.1: a notification of a subscription in a tenant carries the `NGSILD-Tenant`
/// header naming it.
#[tokio::test]
async fn notification_names_the_tenant() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let t = unique_tenant();
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(Some(&t), &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, Some(&t), &subscription(&ty, rx.url())).await;
    set_speed(&b, Some(&t), &e, 20).await;
    let n = rx.expect("an attribute update in a tenant").await;
    assert_eq!(n.header("ngsild-tenant").map(str::to_ascii_lowercase), Some(t.clone()), "{:?}", n.headers);
    assert!(tells_speed(&n, &e, 20), "{}", n.raw);
    unsubscribe(&b, Some(&t), &sid).await;
}

/// §5.2.15 (ETSI TP 046_09_01): each `endpoint.receiverInfo` key/value is sent as an HTTP
/// header of the notification.
#[tokio::test]
async fn receiver_info_becomes_headers() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    let token = format!("v-{}", unique_suffix());
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(
        subscription(&ty, rx.url()),
        json!({"notification": {"endpoint": {"receiverInfo": [
            {"key": "X-Conformance-Key", "value": token},
            {"key": "X-Second", "value": "two"}
        ]}}}),
    );
    let sid = must_subscribe(&b, None, &sub).await;
    set_speed(&b, None, &e, 20).await;
    let n = rx.expect("an attribute update").await;
    assert_eq!(n.header("x-conformance-key"), Some(token.as_str()), "{:?}", n.headers);
    assert_eq!(n.header("x-second"), Some("two"), "{:?}", n.headers);
    unsubscribe(&b, None, &sid).await;
}

// ---------------------------------------------------------------------------------------------
// Triggers and what they tell.

/// §5.8.6, §5.2.12 (ETSI TP 49_01_01): creating a matching entity notifies a subscription
/// with the default triggers (its attributes are created), with the whole entity.
#[tokio::test]
async fn entity_creation_fires_a_default_trigger_subscription() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let n = rx.expect("an entity creation").await;
    let item = n.must_entity(&e);
    assert_eq!(item["type"], json!(ty));
    assert_eq!(item["speed"]["value"], json!(10), "{}", n.raw);
    assert_eq!(item["name"]["value"], json!("Beetle"), "{}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.8.6 (ETSI TP 046_03_01, 046_08_01): updating an attribute notifies, with the entity in
/// its new state and all its attributes.
#[tokio::test]
async fn attribute_update_fires_with_the_whole_entity() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    set_speed(&b, None, &e, 30).await;
    let n = rx.expect("an attribute update").await;
    let item = n.must_entity(&e);
    assert_eq!(item["speed"]["value"], json!(30), "the new value: {}", n.raw);
    assert_eq!(item["name"]["value"], json!("Beetle"), "all attributes: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12, §5.8.6 (ETSI TP 046_04_01, 046_22_03): with `watchedAttributes`, a change of other
/// attributes does not notify; a change of a watched one does.
#[tokio::test]
async fn unwatched_attribute_changes_do_not_notify() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid =
        must_subscribe(&b, None, &with(subscription(&ty, rx.url()), json!({"watchedAttributes": ["speed"]}))).await;
    must_update(&b, None, &e, &json!({"name": {"type": "Property", "value": "Golf"}})).await;
    set_speed(&b, None, &e, 40).await;
    let (n, before) = rx.expect_where("the watched attribute's update", |n| tells_speed(n, &e, 40)).await;
    nothing_before(&before, "only an unwatched attribute changed");
    assert_eq!(n.must_entity(&e)["name"]["value"], json!("Golf"));
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `notificationTrigger` entityDeleted, §5.3.1 (ETSI TP 046_21_01): deleting the
/// entity notifies `{id, type, deletedAt}` and nothing else.
#[tokio::test]
async fn entity_deleted_tells_id_type_and_deleted_at() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(
        subscription(&ty, rx.url()),
        json!({"notificationTrigger": ["entityDeleted"], "notification": {"format": "keyValues"}}),
    );
    let sid = must_subscribe(&b, None, &sub).await;
    b.delete(&entity_path(&e, ""), None).await.expect(204);
    let n = rx.expect("an entity deletion").await;
    assert_eq!(n.data().len(), 1, "{}", n.raw);
    let item = n.data()[0].as_object().expect("an object");
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["deletedAt", "id", "type"], "a deleted entity is id, type and deletedAt: {}", n.raw);
    assert_eq!(item["id"], json!(e));
    assert_eq!(item["type"], json!(ty));
    assert!(is_utc_datetime(&item["deletedAt"]), "deletedAt is a UTC DateTime: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `notificationTrigger` attributeDeleted, §4.5.14 NGSI-LD Null (ETSI TP 046_22_04):
/// deleting an attribute notifies the entity with that attribute's value the NGSI-LD Null
/// `urn:ngsi-ld:null`, the other attributes as they are.
#[tokio::test]
async fn attribute_deleted_tells_the_ngsi_ld_null() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(subscription(&ty, rx.url()), json!({"notificationTrigger": ["attributeDeleted"]}));
    let sid = must_subscribe(&b, None, &sub).await;
    b.delete(&format!("{API}/entities/{}/attrs/name", encode(&e)), None).await.expect(204);
    let n = rx.expect("an attribute deletion").await;
    let item = n.must_entity(&e);
    assert_eq!(item["name"]["type"], json!("Property"), "{}", n.raw);
    assert_eq!(item["name"]["value"], json!(NGSI_LD_NULL), "the deleted attribute is the NGSI-LD Null: {}", n.raw);
    assert_eq!(item["speed"]["value"], json!(10), "the other attributes as they are: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.14 `showChanges` (ETSI TP 046_31_01): the changed attribute carries `previousValue`;
/// attributes that did not change do not.
#[tokio::test]
async fn show_changes_adds_previous_value() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid =
        must_subscribe(&b, None, &with(subscription(&ty, rx.url()), json!({"notification": {"showChanges": true}})))
            .await;
    set_speed(&b, None, &e, 25).await;
    let n = rx.expect("an attribute update").await;
    let item = n.must_entity(&e);
    assert_eq!(item["speed"]["value"], json!(25), "{}", n.raw);
    assert_eq!(item["speed"]["previousValue"], json!(10), "previousValue on the changed attribute: {}", n.raw);
    assert!(item["name"].get("previousValue").is_none(), "no previousValue on an unchanged attribute: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `q`, §4.9, §5.8.6 (ETSI TP 046_05_01): an entity whose new state does not match
/// `q` does not notify; one that matches does.
#[tokio::test]
async fn q_filters_notifications() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &with(subscription(&ty, rx.url()), json!({"q": "speed>50"}))).await;
    set_speed(&b, None, &e, 30).await;
    set_speed(&b, None, &e, 60).await;
    let (_, before) = rx.expect_where("an update matching q", |n| tells_speed(n, &e, 60)).await;
    nothing_before(&before, "speed 30 does not match speed>50");
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.14 `format`, §4.5.3 (ETSI TP 046_08_02): `keyValues` notifies attributes as their
/// bare values.
#[tokio::test]
async fn key_values_format() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(subscription(&ty, rx.url()), json!({"notification": {"format": "keyValues"}}));
    let sid = must_subscribe(&b, None, &sub).await;
    set_speed(&b, None, &e, 35).await;
    let n = rx.expect("an attribute update").await;
    let item = n.must_entity(&e);
    assert_eq!(item["type"], json!(ty));
    assert_eq!(item["speed"], json!(35), "keyValues: {}", n.raw);
    assert_eq!(item["name"], json!("Beetle"), "keyValues: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.14 `attributes` (ETSI TP 046_07_02): only the listed attributes are notified (with
/// the entity's id and type).
#[tokio::test]
async fn notification_attributes_select_what_is_sent() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(subscription(&ty, rx.url()), json!({"notification": {"attributes": ["speed"]}}));
    let sid = must_subscribe(&b, None, &sub).await;
    set_speed(&b, None, &e, 45).await;
    let n = rx.expect("an attribute update").await;
    let item = n.must_entity(&e);
    assert_eq!(item["type"], json!(ty));
    assert_eq!(item["speed"]["value"], json!(45), "{}", n.raw);
    assert!(item.get("name").is_none(), "an attribute not listed is not sent: {}", n.raw);
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `throttling` (ETSI TP 046_15_01): after a notification, none is sent within
/// `throttling` seconds; once the period is over, changes notify again.
#[tokio::test]
async fn throttling_spaces_notifications() {
    const THROTTLE: f64 = 3.0;
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &with(subscription(&ty, rx.url()), json!({"throttling": THROTTLE}))).await;
    set_speed(&b, None, &e, 1).await;
    let first = rx.expect("the first update").await;
    assert!(tells_speed(&first, &e, 1), "{}", first.raw);
    set_speed(&b, None, &e, 2).await;
    rx.expect_none(QUIET, "a second update within the throttling period").await;
    let wait = Duration::from_secs_f64(THROTTLE + 0.3).saturating_sub(first.received.elapsed());
    tokio::time::sleep(wait).await;
    set_speed(&b, None, &e, 3).await;
    let (last, between) = rx.expect_where("an update after the throttling period", |n| tells_speed(n, &e, 3)).await;
    let mut times = vec![first.received];
    times.extend(between.iter().map(|n| n.received));
    times.push(last.received);
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap.as_secs_f64() >= THROTTLE - 0.5,
            "notifications {gap:?} apart with throttling {THROTTLE} s: {:?}",
            between.iter().map(|n| &n.raw).collect::<Vec<_>>()
        );
    }
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `isActive`, §5.8.6 (ETSI TP 5212_01_01, 5212_01_02): a paused subscription
/// (`isActive: false`) does not notify; once resumed it does, at once.
#[tokio::test]
async fn paused_subscription_does_not_notify() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &with(subscription(&ty, rx.url()), json!({"isActive": false}))).await;
    set_speed(&b, None, &e, 11).await;
    b.must_create(None, &vehicle(&unique_id("Car"), &ty, 12)).await;
    rx.expect_none(QUIET, "the subscription is paused").await;
    b.json(Method::PATCH, &sub_path(&sid), None, &json!({"isActive": true})).await.expect(204);
    set_speed(&b, None, &e, 13).await;
    let (_, before) = rx.expect_where("an update after resuming", |n| tells_speed(n, &e, 13)).await;
    nothing_before(&before, "changes made while paused");
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.12 `timeInterval` (ETSI TP 046_02_01): a periodic subscription notifies every
/// `timeInterval` seconds, with no change needed, the matching entities in their current state.
#[tokio::test]
async fn time_interval_notifies_periodically() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sub = with(subscription(&ty, rx.url()), json!({"timeInterval": 1}));
    let sid = must_subscribe(&b, None, &sub).await;
    let first = rx.expect("a periodic notification").await;
    assert!(tells_speed(&first, &e, 10), "the current state: {}", first.raw);
    let second = rx.expect("a second periodic notification").await;
    assert!(tells_speed(&second, &e, 10), "the current state: {}", second.raw);
    let gap = second.received - first.received;
    assert!(gap >= Duration::from_millis(300), "periodic notifications {gap:?} apart with timeInterval 1 s");
    set_speed(&b, None, &e, 77).await;
    rx.expect_where("a periodic notification of the new state", |n| tells_speed(n, &e, 77)).await;
    unsubscribe(&b, None, &sid).await;
}

/// §4.14 (tenants), §5.8.6: a subscription sees only its own tenant: it is not readable from
/// another tenant, and changes in another tenant (or the default one) do not fire it.
#[tokio::test]
async fn tenants_are_isolated() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let (t1, t2) = (unique_tenant(), unique_tenant());
    let ty = unique_type("Car");
    b.must_create(Some(&t2), &vehicle(&unique_id("Car"), &ty, 1)).await;
    let sid = must_subscribe(&b, Some(&t1), &subscription(&ty, rx.url())).await;
    b.get_json(&sub_path(&sid), Some(&t2)).await.expect_problem(404, "ResourceNotFound");
    b.get_json(&sub_path(&sid), None).await.expect_problem(404, "ResourceNotFound");
    let r = b.get_json(&subs_path(), Some(&t2)).await;
    r.expect(200);
    assert!(!r.text.contains(&sid), "another tenant does not list it: {}", r.text);

    b.must_create(Some(&t2), &vehicle(&unique_id("Car"), &ty, 2)).await;
    b.must_create(None, &vehicle(&unique_id("Car"), &ty, 3)).await;
    let e = unique_id("Car");
    b.must_create(Some(&t1), &vehicle(&e, &ty, 4)).await;
    let (n, before) =
        rx.expect_where("an entity created in the subscription's tenant", |n| n.entity(&e).is_some()).await;
    nothing_before(&before, "entities created in other tenants");
    assert_eq!(n.data().len(), 1, "{}", n.raw);
    unsubscribe(&b, Some(&t1), &sid).await;
}

// ---------------------------------------------------------------------------------------------
// Delivery status.

/// §5.2.14 (ETSI TP 046_11_01, 046_12_01): after a successful delivery the subscription shows
/// `notification.timesSent`, `status: "ok"`, `lastNotification` and `lastSuccess`.
#[tokio::test]
async fn delivery_status_after_success() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    set_speed(&b, None, &e, 20).await;
    rx.expect("an attribute update").await;
    let s = poll_sub(&b, None, &sid, "status ok", |s| s["notification"]["status"] == json!("ok")).await;
    let n = &s["notification"];
    assert_eq!(n["timesSent"], json!(1), "one notification sent: {s}");
    assert!(is_utc_datetime(&n["lastNotification"]), "lastNotification: {s}");
    assert!(is_utc_datetime(&n["lastSuccess"]), "lastSuccess: {s}");
    assert_eq!(s["status"], json!("active"));
    unsubscribe(&b, None, &sid).await;
}

/// §5.2.14 (ETSI TP 046_13_01): when the receiver answers with an error the subscription
/// shows `notification.status: "failed"` and `lastFailure`, and stays active.
#[tokio::test]
async fn delivery_status_after_failure() {
    let b = Broker::get();
    let rx = Receiver::start().await;
    rx.set_failing(true);
    let ty = unique_type("Car");
    let e = unique_id("Car");
    b.must_create(None, &vehicle(&e, &ty, 10)).await;
    let sid = must_subscribe(&b, None, &subscription(&ty, rx.url())).await;
    set_speed(&b, None, &e, 20).await;
    rx.expect("an attribute update (answered 500)").await;
    let s = poll_sub(&b, None, &sid, "status failed", |s| s["notification"]["status"] == json!("failed")).await;
    assert!(is_utc_datetime(&s["notification"]["lastFailure"]), "lastFailure: {s}");
    assert_eq!(s["status"], json!("active"), "a failed delivery does not deactivate the subscription: {s}");
    unsubscribe(&b, None, &sid).await;
}
