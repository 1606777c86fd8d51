//! Entity representations in responses: normalized (§4.5.1), concise (§4.5.2 / §6.3.7),
//! keyValues / simplified (§4.5.3 / §6.3.7), system attributes (§6.3.11), projection with
//! `attrs`, `pick` and `omit` (§4.21), `lang` on LanguageProperty (§4.15), `datasetId`
//! (§4.5.5), media types (§6.3.5, §6.3.6) and GeoJSON (§4.5.16 / §6.3.15).

use conformance_tests::*;

async fn car(b: &Broker) -> String {
    let id = unique_id("Car");
    b.must_create(
        None,
        &json!({
            "id": id,
            "type": "Car",
            "brandName": {"type": "Property", "value": "Volvo"},
            "speed": {"type": "Property", "value": 55, "unitCode": "KMH"},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"},
            "description": {"type": "LanguageProperty", "languageMap": {"en": "A car", "fr": "Une voiture"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.35, 48.85]}},
            "parking": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.30, 48.80]}}
        }),
    )
    .await;
    id
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("object expected: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// §4.5.1: the normalized representation carries `type` and `value` / `object` /
/// `languageMap` for each attribute.
#[tokio::test]
async fn normalized_is_the_default() {
    let b = Broker::get();
    let id = car(&b).await;
    for q in ["", "?options=normalized", "?format=normalized"] {
        let e = b.must_retrieve(None, &id, q).await;
        assert_eq!(e["brandName"], json!({"type": "Property", "value": "Volvo"}), "{q}");
        assert_eq!(e["owner"], json!({"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"}), "{q}");
        assert_eq!(
            e["description"],
            json!({"type": "LanguageProperty", "languageMap": {"en": "A car", "fr": "Une voiture"}}),
            "{q}"
        );
        assert_eq!(e["speed"], json!({"type": "Property", "value": 55, "unitCode": "KMH"}), "{q}");
    }
}

/// §4.5.3, §6.3.7: `options=keyValues` renders each attribute as its value only.
#[tokio::test]
async fn key_values_renders_values_only() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?options=keyValues").await;
    assert_eq!(e["id"], json!(id));
    assert_eq!(e["type"], json!("Car"));
    assert_eq!(e["brandName"], json!("Volvo"));
    assert_eq!(e["speed"], json!(55));
    assert_eq!(e["owner"], json!("urn:ngsi-ld:Person:Bob"));
    assert_eq!(e["location"], json!({"type": "Point", "coordinates": [2.35, 48.85]}));
}

/// §6.3.7 (v1.8+): `format=simplified` is the same as keyValues.
#[tokio::test]
async fn format_simplified_equals_key_values() {
    let b = Broker::get();
    let id = car(&b).await;
    let a = b.must_retrieve(None, &id, "?format=simplified").await;
    let k = b.must_retrieve(None, &id, "?options=keyValues").await;
    assert_eq!(a, k);
}

/// §4.5.2 (concise): `type` is dropped; a Property with only a value becomes the bare value;
/// a Relationship keeps `object`; sub-attributes are kept.
#[tokio::test]
async fn concise_drops_types() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?format=concise").await;
    assert_eq!(e["type"], json!("Car"), "the entity type stays");
    assert_eq!(e["brandName"], json!("Volvo"));
    assert_eq!(e["speed"], json!({"value": 55, "unitCode": "KMH"}));
    assert_eq!(e["owner"], json!({"object": "urn:ngsi-ld:Person:Bob"}));
    assert_eq!(e["description"], json!({"languageMap": {"en": "A car", "fr": "Une voiture"}}));
    let c2 = b.must_retrieve(None, &id, "?options=concise").await;
    assert_eq!(e, c2, "options=concise and format=concise agree");
}

/// §4.5.2: a concise body can be sent back to create an equivalent entity.
#[tokio::test]
async fn concise_input_is_accepted() {
    let b = Broker::get();
    let id = unique_id("Car");
    b.must_create(
        None,
        &json!({"id": id, "type": "Car", "brandName": "Saab", "speed": {"value": 40, "unitCode": "KMH"}, "owner": {"object": "urn:ngsi-ld:Person:Al"}}),
    )
    .await;
    let e = b.must_retrieve(None, &id, "").await;
    assert_eq!(e["brandName"], json!({"type": "Property", "value": "Saab"}));
    assert_eq!(e["speed"], json!({"type": "Property", "value": 40, "unitCode": "KMH"}));
    assert_eq!(e["owner"], json!({"type": "Relationship", "object": "urn:ngsi-ld:Person:Al"}));
}

/// §6.3.11: `options=sysAttrs` adds `createdAt` and `modifiedAt` (DateTime) to the entity and
/// to every attribute; without it they are absent.
#[tokio::test]
async fn sys_attrs_adds_timestamps() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?options=sysAttrs").await;
    for v in [&e, &e["brandName"], &e["owner"], &e["speed"]] {
        let c = v["createdAt"].as_str().unwrap_or_else(|| panic!("createdAt in {v}"));
        let m = v["modifiedAt"].as_str().unwrap_or_else(|| panic!("modifiedAt in {v}"));
        assert!(c.len() >= 20 && c.contains('T') && c.ends_with('Z'), "DateTime {c}");
        assert!(m >= c, "modifiedAt {m} >= createdAt {c}");
    }
    let plain = b.must_retrieve(None, &id, "").await;
    assert!(plain.get("createdAt").is_none() && plain["brandName"].get("createdAt").is_none());
}

/// §6.3.11: `modifiedAt` moves forward on update while `createdAt` stays.
#[tokio::test]
async fn sys_attrs_modified_at_moves_on_update() {
    let b = Broker::get();
    let id = car(&b).await;
    let before = b.must_retrieve(None, &id, "?options=sysAttrs").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    b.json(
        Method::PATCH,
        &format!("{API}/entities/{}/attrs", encode(&id)),
        None,
        &json!({"speed": {"type": "Property", "value": 56}}),
    )
    .await
    .expect(204);
    let after = b.must_retrieve(None, &id, "?options=sysAttrs").await;
    assert_eq!(before["createdAt"], after["createdAt"]);
    assert!(after["modifiedAt"].as_str() > before["modifiedAt"].as_str(), "{before} -> {after}");
    assert!(after["speed"]["modifiedAt"].as_str() > before["speed"]["modifiedAt"].as_str());
}

/// §5.7.1, §4.21: `attrs` keeps only the listed attributes (plus id and type).
#[tokio::test]
async fn attrs_projects_attributes() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?attrs=brandName,owner").await;
    assert_eq!(keys(&e), vec!["brandName", "id", "owner", "type"]);
}

/// §4.21 (v1.8+): `pick` keeps only the listed members, `id` and `type` included only when
/// listed.
#[tokio::test]
async fn pick_keeps_listed_members() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?pick=id,speed").await;
    assert_eq!(keys(&e), vec!["id", "speed"]);
}

/// §4.21 (v1.8+): `omit` drops the listed members.
#[tokio::test]
async fn omit_drops_listed_members() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?omit=type,speed,location,parking").await;
    assert_eq!(keys(&e), vec!["brandName", "description", "id", "owner"]);
}

/// §4.15, §5.7.1: with `lang`, a LanguageProperty is rendered as a Property holding the
/// string of the chosen language, with a `lang` member.
#[tokio::test]
async fn lang_selects_language_property_string() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?lang=fr").await;
    assert_eq!(e["description"], json!({"type": "Property", "value": "Une voiture", "lang": "fr"}));
    let e = b.must_retrieve(None, &id, "?lang=fr&options=keyValues").await;
    assert_eq!(e["description"], json!("Une voiture"));
    // Ranked preferences (ETSI TP 018_07_04): fr-CH is absent, fr is next.
    let e = b.must_retrieve(None, &id, "?lang=fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5").await;
    assert_eq!(e["description"], json!({"type": "Property", "value": "Une voiture", "lang": "fr"}));
}

/// §4.15, §5.7.1 (ETSI TP 018_07_03 / 018_07_06): `lang=*` accepts any language: the
/// LanguageProperty is rendered as a Property with one of its strings and its `lang`.
#[tokio::test]
async fn lang_any_picks_one_language() {
    let b = Broker::get();
    let id = car(&b).await;
    let e = b.must_retrieve(None, &id, "?lang=*").await;
    let d = &e["description"];
    assert_eq!(d["type"], json!("Property"), "{e}");
    let ok = (d["lang"] == json!("en") && d["value"] == json!("A car"))
        || (d["lang"] == json!("fr") && d["value"] == json!("Une voiture"));
    assert!(ok, "one language with its lang: {e}");
    let e = b.must_retrieve(None, &id, "?lang=*&options=keyValues").await;
    assert!(e["description"] == json!("A car") || e["description"] == json!("Une voiture"), "{e}");
}

/// §5.7.1 / §4.5.5 (v1.8+): `datasetId` keeps only the instances with the listed datasetIds.
#[tokio::test]
async fn dataset_id_filters_instances() {
    let b = Broker::get();
    let id = unique_id("Car");
    b.must_create(
        None,
        &json!({
            "id": id, "type": "Car",
            "speed": [
                {"type": "Property", "value": 1},
                {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:obd"}
            ]
        }),
    )
    .await;
    let e = b.must_retrieve(None, &id, "?datasetId=urn:ngsi-ld:Dataset:gps").await;
    let speed = &e["speed"];
    let instances = if speed.is_array() { speed.as_array().unwrap().clone() } else { vec![speed.clone()] };
    assert_eq!(instances.len(), 1, "only the gps instance: {e}");
    assert_eq!(instances[0]["value"], json!(2));
    assert_eq!(instances[0]["datasetId"], json!("urn:ngsi-ld:Dataset:gps"));
}

/// §6.3.5, §6.3.6: `Accept: application/json` gives a JSON body without `@context` and the
/// context in a `Link` header.
#[tokio::test]
async fn accept_json_puts_context_in_link() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b.retrieve(None, &id, "").await;
    r.expect(200);
    assert_eq!(r.media_type(), "application/json");
    assert!(r.link_context().is_some(), "Link header with the context; headers {:?}", r.headers);
    assert!(r.json().get("@context").is_none());
}

/// §6.3.5, §6.3.6: `Accept: application/ld+json` gives a JSON-LD body carrying `@context`
/// and no context `Link` header.
#[tokio::test]
async fn accept_ld_json_puts_context_in_body() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, "")).header("Accept", "application/ld+json")).await;
    r.expect(200);
    assert_eq!(r.media_type(), "application/ld+json");
    assert!(r.link_context().is_none(), "no context Link with ld+json");
    let e = r.json();
    assert!(e.get("@context").is_some(), "@context in body: {e}");
    assert_eq!(e["brandName"]["value"], json!("Volvo"));
}

/// §6.3.6: a request without Accept is answered as application/json (or JSON-LD).
#[tokio::test]
async fn no_accept_is_json() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, ""))).await;
    r.expect(200);
    let mt = r.media_type();
    assert!(mt == "application/json" || mt == "application/ld+json", "got {mt}");
}

/// §4.5.16, §6.3.15: `Accept: application/geo+json` renders a Feature: `id`, `type`
/// "Feature", `geometry` from `location`, and the other members under `properties`.
#[tokio::test]
async fn geo_json_feature_shape() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, "")).header("Accept", "application/geo+json")).await;
    r.expect(200);
    assert_eq!(r.media_type(), "application/geo+json");
    let f = r.json();
    assert_eq!(f["type"], json!("Feature"));
    assert_eq!(f["id"], json!(id));
    assert_eq!(f["geometry"], json!({"type": "Point", "coordinates": [2.35, 48.85]}));
    let p = &f["properties"];
    assert_eq!(p["type"], json!("Car"));
    assert_eq!(p["brandName"], json!({"type": "Property", "value": "Volvo"}));
    assert!(p.get("id").is_none(), "id is a Feature member, not a property: {f}");
}

/// §6.3.15: `geometryProperty` chooses the GeoProperty used as the Feature's geometry.
#[tokio::test]
async fn geo_json_geometry_property() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, "?geometryProperty=parking"))
                .header("Accept", "application/geo+json"),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json()["geometry"], json!({"type": "Point", "coordinates": [2.30, 48.80]}));
}

/// §6.3.15 (ETSI TP 018_05_04): a `geometryProperty` the entity lacks gives `geometry: null`.
#[tokio::test]
async fn geo_json_missing_geometry_property_is_null() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b
        .send(
            b.request(Method::GET, &entity_path(&id, "?geometryProperty=nowhere"))
                .header("Accept", "application/geo+json"),
        )
        .await;
    r.expect(200);
    let f = r.json();
    assert!(f.get("geometry").is_some_and(Value::is_null), "geometry member, null: {f}");
}

/// §4.5.16, §6.3.15 (ETSI TP 018_05 and 019_05 expectations): a GeoJSON Feature or
/// FeatureCollection carries the JSON-LD `@context` as a top-level member.
#[tokio::test]
async fn geo_json_carries_context_member() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b.send(b.request(Method::GET, &entity_path(&id, "")).header("Accept", "application/geo+json")).await;
    r.expect(200);
    assert!(r.json().get("@context").is_some(), "Feature @context: {}", r.text);
    let r = b
        .send(
            b.request(Method::GET, &format!("{API}/entities?type=Car&id={}", encode(&id)))
                .header("Accept", "application/geo+json"),
        )
        .await;
    r.expect(200);
    assert!(r.json().get("@context").is_some(), "FeatureCollection @context: {}", r.text);
}

/// §6.3.15: GeoJSON with keyValues gives Feature properties as plain values.
#[tokio::test]
async fn geo_json_key_values() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b
        .send(b.request(Method::GET, &entity_path(&id, "?options=keyValues")).header("Accept", "application/geo+json"))
        .await;
    r.expect(200);
    let f = r.json();
    assert_eq!(f["type"], json!("Feature"));
    assert_eq!(f["properties"]["brandName"], json!("Volvo"));
}

/// §5.7.2, §6.3.15: Query Entities with `Accept: application/geo+json` answers a
/// FeatureCollection of Features.
#[tokio::test]
async fn geo_json_query_is_feature_collection() {
    let b = Broker::get();
    let id = car(&b).await;
    let r = b
        .send(
            b.request(Method::GET, &format!("{API}/entities?type=Car&id={}", encode(&id)))
                .header("Accept", "application/geo+json"),
        )
        .await;
    r.expect(200);
    assert_eq!(r.media_type(), "application/geo+json");
    let fc = r.json();
    assert_eq!(fc["type"], json!("FeatureCollection"));
    let features = fc["features"].as_array().expect("features array");
    assert_eq!(features.len(), 1);
    assert_eq!(features[0]["type"], json!("Feature"));
    assert_eq!(features[0]["id"], json!(id));
}

/// §5.7.2: the representation options apply to every entity of a query result.
#[tokio::test]
async fn query_applies_key_values_and_attrs() {
    let b = Broker::get();
    let id = car(&b).await;
    let r =
        b.get_json(&format!("{API}/entities?type=Car&id={}&options=keyValues&attrs=speed", encode(&id)), None).await;
    r.expect(200);
    assert_eq!(r.json(), json!([{"id": id, "type": "Car", "speed": 55}]));
}
