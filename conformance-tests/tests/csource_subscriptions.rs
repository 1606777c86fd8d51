//! Context source registration subscriptions (§5.11.2–§5.11.6, the Subscription data type
//! §5.2.12 applied to registrations) and CsourceNotifications (§5.3.2, behaviour §5.11.7),
//! observed through a local HTTP [`Receiver`].
//!
//! Every test subscribes to an entity type of its own and works in its own tenant, so tests
//! running in parallel, or a broker holding other registrations, never interfere. The sources
//! registered are never contacted.

use std::time::Duration;

use conformance_tests::*;

/// How long a test waits to be sure no notification comes.
const QUIET: Duration = Duration::from_millis(1500);

fn csubs_path() -> String {
    format!("{API}/csourceSubscriptions")
}

fn csub_path(id: &str) -> String {
    format!("{API}/csourceSubscriptions/{}", encode(id))
}

fn regs_path() -> String {
    format!("{API}/csourceRegistrations")
}

/// A registration subscription to registrations of entities of type `ty`, notifying `uri`.
fn csub(ty: &str, uri: &str, extra: Value) -> Value {
    let mut s = json!({
        "id": unique_id("Subscription"),
        "type": "Subscription",
        "entities": [{"type": ty}],
        "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        m.extend(e);
    }
    s
}

/// A registration of entities of type `ty` with the property `speed`.
fn registration(ty: &str, extra: Value) -> Value {
    let mut r = json!({
        "id": unique_id("ContextSourceRegistration"),
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": ty}], "propertyNames": ["speed"]}],
        "endpoint": "http://127.0.0.1:9/source"
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut r, extra) {
        m.extend(e);
    }
    r
}

async fn must_post(b: &Broker, path: &str, tenant: &str, body: &Value) -> String {
    let r = b.json(Method::POST, path, Some(tenant), body).await;
    assert_eq!(r.status, 201, "POST {path} {body}: {}", r.text);
    body["id"].as_str().unwrap_or_default().to_owned()
}

/// Checks a CsourceNotification (§5.3.2): its type, subscription, trigger reason and the ids of
/// the registrations it carries.
fn check(n: &Notification, sub: &str, reason: &str, regs: &[&str]) {
    let body = &n.body;
    assert_eq!(body["type"], "ContextSourceNotification", "{body}");
    assert_eq!(body["subscriptionId"], sub, "{body}");
    assert_eq!(body["triggerReason"], reason, "{body}");
    assert!(body["notifiedAt"].is_string() && body["id"].is_string(), "{body}");
    let ids: Vec<&str> = n.data().iter().map(|r| r["id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, regs, "{body}");
    for r in n.data() {
        assert_eq!(r["type"], "ContextSourceRegistration", "{body}");
    }
}

/// §5.11.2–§5.11.6 (ETSI TP 038_01, 039_01, 040_01, 041_01, 042_01): create answers 201 with a
/// Location, retrieve gives the members back with `status`, query lists the tenant's
/// registration subscriptions, update answers 204, delete 204 and then 404.
#[tokio::test]
async fn csource_subscription_lifecycle() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let body = csub("Building", "http://127.0.0.1:9/notify", json!({}));
    let id = must_post(&b, &csubs_path(), &tenant, &body).await;
    let r = b.get_json(&csub_path(&id), Some(&tenant)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = r.json();
    assert_eq!(got["id"], id);
    assert_eq!(got["type"], "Subscription");
    assert_eq!(got["status"], "active");
    assert_eq!(got["entities"], json!([{"type": "Building"}]));
    b.json(Method::POST, &csubs_path(), Some(&tenant), &body).await.expect_problem(409, "AlreadyExists");
    let r = b.get_json(&csubs_path(), Some(&tenant)).await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    b.json(Method::PATCH, &csub_path(&id), Some(&tenant), &json!({"isActive": false})).await.expect(204);
    assert_eq!(b.get_json(&csub_path(&id), Some(&tenant)).await.json()["status"], "paused");
    b.delete(&csub_path(&id), Some(&tenant)).await.expect(204);
    b.get_json(&csub_path(&id), Some(&tenant)).await.expect_problem(404, "ResourceNotFound");
}

/// §5.11.2 with §5.2.12 (ETSI TP 038_08, 038_09): a subscription without a notification, of
/// another type, with a malformed `q`, empty `watchedAttributes` or an `expiresAt` in the
/// past is refused with BadRequestData.
#[tokio::test]
async fn invalid_csource_subscriptions_are_refused() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let uri = "http://127.0.0.1:9/notify";
    let mut no_notification = csub("Building", uri, json!({}));
    no_notification.as_object_mut().map(|o| o.remove("notification"));
    for body in [
        no_notification,
        csub("Building", uri, json!({"type": "ContextSourceRegistration"})),
        csub("Building", uri, json!({"q": "speed>>"})),
        csub("Building", uri, json!({"watchedAttributes": []})),
        csub("Building", uri, json!({"expiresAt": "2000-01-01T00:00:00Z"})),
    ] {
        b.json(Method::POST, &csubs_path(), Some(&tenant), &body).await.expect_problem(400, "BadRequestData");
    }
}

/// §5.11.7 (ETSI TP 047_02, 047_09, 047_16): a registration subscription is notified when a
/// matching registration is created (`newlyMatching`), updated (`updated`), updated so that it
/// no longer matches or deleted (`noLongerMatching`); on creation it is sent the registrations
/// that already match.
#[tokio::test]
async fn registration_changes_are_notified_with_their_trigger_reason() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let ty = format!("Vehicle{}", unique_suffix());
    let rx = Receiver::start().await;
    let first = must_post(&b, &regs_path(), &tenant, &registration(&ty, json!({}))).await;
    let sub = must_post(&b, &csubs_path(), &tenant, &csub(&ty, rx.url(), json!({}))).await;
    check(&rx.expect("the initial notification").await, &sub, "newlyMatching", &[&first]);
    let second = must_post(&b, &regs_path(), &tenant, &registration(&ty, json!({}))).await;
    check(&rx.expect("a new registration").await, &sub, "newlyMatching", &[&second]);
    let path = format!("{}/{}", regs_path(), encode(&second));
    b.json(Method::PATCH, &path, Some(&tenant), &json!({"registrationName": "renamed"})).await.expect(204);
    let n = rx.expect("an updated registration").await;
    check(&n, &sub, "updated", &[&second]);
    assert_eq!(n.data()[0]["registrationName"], "renamed");
    let other = json!({"information": [{"entities": [{"type": format!("Other{}", unique_suffix())}]}]});
    b.json(Method::PATCH, &path, Some(&tenant), &other).await.expect(204);
    check(&rx.expect("a registration that no longer matches").await, &sub, "noLongerMatching", &[&second]);
    b.delete(&format!("{}/{}", regs_path(), encode(&first)), Some(&tenant)).await.expect(204);
    check(&rx.expect("a deleted registration").await, &sub, "noLongerMatching", &[&first]);
    b.delete(&path, Some(&tenant)).await.expect(204);
    rx.expect_none(QUIET, "the deleted registration did not match").await;
}

/// §5.11.7 with §5.2.12 (ETSI TP 047_12, 047_14): `watchedAttributes` select registrations by
/// the attributes they name, `geoQ` by their `location`.
#[tokio::test]
async fn watched_attributes_and_geo_queries_select_registrations() {
    let b = Broker::get();
    let tenant = unique_tenant();
    let ty = format!("Vehicle{}", unique_suffix());
    let rx = Receiver::start().await;
    let geo = json!({"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2]}});
    let by_geo = must_post(&b, &csubs_path(), &tenant, &csub(&ty, rx.url(), geo)).await;
    let by_attr =
        must_post(&b, &csubs_path(), &tenant, &csub(&ty, rx.url(), json!({"watchedAttributes": ["brand"]}))).await;
    let far = json!({"location": {"type": "Point", "coordinates": [10.0, 10.0]}});
    must_post(&b, &regs_path(), &tenant, &registration(&ty, far)).await;
    rx.expect_none(QUIET, "the registration is far away and does not name brand").await;
    let near = json!({"location": {"type": "Point", "coordinates": [-8.521, 41.2]},
                      "information": [{"entities": [{"type": ty}], "propertyNames": ["brand"]}]});
    let reg = must_post(&b, &regs_path(), &tenant, &registration(&ty, near)).await;
    let mut got = [rx.expect("a near registration").await, rx.expect("a registration naming brand").await];
    got.sort_by_key(|n| n.body["subscriptionId"].as_str().unwrap_or("").to_owned());
    let mut want = [by_geo, by_attr];
    want.sort();
    for (n, sub) in got.iter().zip(&want) {
        check(n, sub, "newlyMatching", &[&reg]);
    }
}
