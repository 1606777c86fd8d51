//! Golden tests of the whole mapping: device + group + measures → the exact entities sent.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Measures, Resolved, entity_id_for, measures_to_entities, measures_to_entities_typed, parse_json_measures_typed,
    parse_ul_measures, resolve,
};
use crate::config::Settings;
use crate::model::{Device, Group};

const CTX: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").map(|d| d.with_timezone(&Utc)).unwrap_or_default()
}

fn device(v: Value) -> Device {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("device: {e}"))
}

fn group(v: Value) -> Group {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("group: {e}"))
}

fn measures(v: Value) -> Vec<Measures> {
    match v {
        Value::Array(a) => a.into_iter().filter_map(|m| m.as_object().cloned()).collect(),
        Value::Object(m) => vec![m],
        _ => Vec::new(),
    }
}

fn map(r: &Resolved, m: Value) -> Value {
    Value::Array(measures_to_entities(r, &measures(m), now()).unwrap_or_else(|e| panic!("{e}")))
}

fn thermometer_group() -> Group {
    group(json!({
        "apikey": "k1", "resource": "/iot/json", "entity_type": "Thermometer",
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number",
             "metadata": {"unitCode": {"type": "Text", "value": "CEL"}, "accuracy": {"type": "Number", "value": 0.5}}}
        ],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "40.4, -3.7"}]
    }))
}

#[test]
fn a_measure_with_a_time_instant() {
    let g = thermometer_group();
    let r = resolve(
        &device(json!({"device_id": "dev1", "service": "smart", "service_path": "/"})),
        Some(&g),
        &Settings::default(),
    );
    let at = "2024-01-02T03:04:05.000Z";
    assert_eq!(
        map(&r, json!({"t": "21.5", "h": 40, "TimeInstant": "2024-01-02T04:04:05+01:00"})),
        json!([{
            "@context": CTX,
            "id": "urn:ngsi-ld:Thermometer:dev1",
            "type": "Thermometer",
            "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL",
                            "accuracy": {"type": "Property", "value": 0.5}, "observedAt": at},
            "h": {"type": "Property", "value": 40, "observedAt": at},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [40.4, -3.7]}, "observedAt": at}
        }])
    );
}

#[test]
fn without_a_time_instant_observed_at_is_now() {
    let r = resolve(&device(json!({"device_id": "d"})), None, &Settings::default());
    assert_eq!(
        map(&r, json!({"a": "x"})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
                "a": {"type": "Property", "value": "x", "observedAt": "2024-05-01T12:00:00.000Z"}}])
    );
}

#[test]
fn with_timestamps_off_the_time_instant_is_dropped() {
    let r = resolve(&device(json!({"device_id": "d", "timestamp": false})), None, &Settings::default());
    assert_eq!(
        map(&r, json!({"a": 1, "TimeInstant": "2024-01-01T00:00:00Z"})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing", "a": {"type": "Property", "value": 1}}])
    );
    // Not even an invalid one is looked at.
    assert_eq!(map(&r, json!({"TimeInstant": "garbage"})), json!([]));
}

#[test]
fn a_time_instant_that_is_not_iso_8601_is_refused() {
    let r = resolve(&device(json!({"device_id": "d"})), None, &Settings::default());
    for bad in [json!("yesterday"), json!(1_700_000_000_000u64), json!("01/02/2024"), json!("2024-01-02T03:04:05+2")] {
        let e = measures_to_entities(&r, &measures(json!({"a": 1, "TimeInstant": bad})), now()).err();
        assert_eq!(e.map(|e| e.name), Some("BAD_TIMESTAMP"), "{bad}");
    }
    // A measure mapped to TimeInstant counts as the TimeInstant.
    let d = device(
        json!({"device_id": "d", "attributes": [{"object_id": "ts", "name": "TimeInstant", "type": "DateTime"}]}),
    );
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(
        map(&r, json!({"a": 1, "ts": "2024-02-02T00:00:00Z"})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
                "a": {"type": "Property", "value": 1, "observedAt": "2024-02-02T00:00:00.000Z"}}])
    );
    assert!(measures_to_entities(&r, &measures(json!({"a": 1, "ts": "x"})), now()).is_err());
}

#[test]
fn expressions_run_in_order_and_see_earlier_results() {
    let d = device(json!({
        "device_id": "d", "timestamp": false, "service": "smart", "entity_type": "Meter",
        "attributes": [
            {"object_id": "c", "name": "count", "type": "Integer", "expression": "c * 2"},
            {"name": "next", "type": "Number", "expression": "count + 1"},
            {"name": "label", "type": "Text", "expression": "service + ':' + id + ':' + type + ':' + entity_name"},
            {"object_id": "s", "name": "state", "type": "Text", "skipValue": "ignore"},
            {"name": "nothing", "type": "Number", "expression": "missing * 2"},
            {"name": "echo", "type": "Text", "expression": "missing"},
            {"object_id": "f", "name": "broken", "type": "Text", "expression": "f|nosuch"}
        ]
    }));
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(
        map(&r, json!({"c": "4", "s": "ignore", "f": 1})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Meter:d", "type": "Meter",
                "count": {"type": "Property", "value": 8},
                "next": {"type": "Property", "value": 9},
                "label": {"type": "Property", "value": "smart:d:Meter:urn:ngsi-ld:Meter:d"},
                // Upstream's applyExpression yields the expression's text when the result is
                // undefined; NaN (undefined * 2) drops the attribute.
                "echo": {"type": "Property", "value": "missing"}}])
    );
    assert_eq!(map(&r, json!({"c": 1, "s": "on"}))[0]["state"], json!({"type": "Property", "value": "on"}));
}

#[test]
fn expressions_see_static_attributes_and_metadata() {
    let d = device(json!({
        "device_id": "d", "timestamp": false,
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
            {"name": "desc", "type": "Text", "expression": "floor + '/' + metadata.temperature.unitCode + '/' + staticAttributes[0].name"}
        ],
        "static_attributes": [{"name": "floor", "type": "Number", "value": 3}]
    }));
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(map(&r, json!({"t": 1}))[0]["desc"], json!({"type": "Property", "value": "3/CEL/floor"}));
}

#[test]
fn null_and_nan_are_dropped() {
    let d = device(json!({"device_id": "d", "timestamp": false,
        "attributes": [{"object_id": "n", "name": "num", "type": "Number"}]}));
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(
        map(&r, json!({"n": "abc", "x": null, "y": 2})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing", "y": {"type": "Property", "value": 2}}])
    );
}

#[test]
fn id_and_type_measures_are_renamed() {
    let r = resolve(&device(json!({"device_id": "d", "timestamp": false})), None, &Settings::default());
    assert_eq!(
        map(&r, json!({"id": "x", "type": "y"})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
                "measure_id": {"type": "Property", "value": "x"}, "measure_type": {"type": "Property", "value": "y"}}])
    );
}

#[test]
fn explicit_attrs_true_keeps_provisioned_and_static_attributes() {
    let mut g = thermometer_group();
    g.explicit_attrs = Some(json!(true));
    g.timestamp = Some(false);
    let r = resolve(&device(json!({"device_id": "d"})), Some(&g), &Settings::default());
    let out = map(&r, json!({"t": 20, "h": 1}));
    let keys: Vec<&String> = out[0].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    // Static attributes come first, as upstream processes them first.
    assert_eq!(keys, ["@context", "id", "type", "location", "temperature"]);
}

#[test]
fn explicit_attrs_as_a_list_or_an_expression() {
    let settings = Settings::default();
    let with = |e: Value| {
        let d = device(json!({"device_id": "d", "explicitAttrs": e,
            "attributes": [{"object_id": "t", "name": "temperature"}],
            "static_attributes": [{"name": "s", "type": "Text", "value": "v"}]}));
        resolve(&d, None, &settings)
    };
    let keys = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().flat_map(|e| e.as_object().into_iter().flat_map(|o| o.keys().cloned())).collect())
            .unwrap_or_default()
    };
    let m = json!({"t": 30, "h": 1, "x": 2});
    // A list keeps the provisioned attributes it names; unmapped measures never pass.
    assert_eq!(keys(map(&with(json!("['temperature', 'h']")), m.clone())), ["@context", "id", "type", "temperature"]);
    assert_eq!(
        keys(map(&with(json!("[{object_id: 't'}, 's']")), m.clone())),
        ["@context", "id", "type", "s", "temperature"]
    );
    assert_eq!(keys(map(&with(json!("['t']")), m.clone())), Vec::<String>::new());
    // An expression yielding a boolean acts as the boolean.
    assert_eq!(keys(map(&with(json!("t > 20")), m.clone())), ["@context", "id", "type", "s", "temperature"]);
    assert_eq!(keys(map(&with(json!("t > 40")), m.clone())), ["@context", "id", "type", "s", "temperature", "h", "x"]);
    // An expression yielding neither sends nothing; one that fails sends everything.
    assert_eq!(map(&with(json!("missing")), m.clone()), json!([]));
    assert_eq!(keys(map(&with(json!("t|nosuch")), m.clone())).len(), 7);
    // An empty list sends nothing at all, not even the timestamp.
    assert_eq!(map(&with(json!("t > 20 ? [] : ['h']")), m.clone()), json!([]));
    assert_eq!(map(&with(json!("[]")), m.clone()), json!([]));
    // A non-empty list keeps the timestamp when timestamps are on.
    let out = map(&with(json!("['temperature']")), json!({"t": 1, "TimeInstant": "2024-01-01T00:00:00Z"}));
    assert_eq!(out[0]["temperature"]["observedAt"], json!("2024-01-01T00:00:00.000Z"));
}

#[test]
fn multi_entity_attributes_go_to_their_own_entities() {
    let d = device(json!({
        "device_id": "d", "entity_type": "Station", "timestamp": false,
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number"},
            {"object_id": "p", "name": "power", "type": "Number", "entity_name": "urn:ngsi-ld:Meter:m1", "entity_type": "Meter"},
            {"object_id": "q", "name": "flow", "type": "Number", "entity_name": "room2", "entity_type": "Room"},
            {"object_id": "v", "name": "voltage", "type": "Number", "entity_name": "urn:ngsi-ld:Meter:m1", "entity_type": "Meter"}
        ],
        "static_attributes": [{"name": "owner", "type": "Relationship", "value": "urn:ngsi-ld:Person:p"}]
    }));
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(
        map(&r, json!({"t": 1, "p": 2, "q": 3, "v": 4})),
        json!([
            {"@context": CTX, "id": "urn:ngsi-ld:Station:d", "type": "Station",
             "temperature": {"type": "Property", "value": 1},
             "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p"}},
            {"@context": CTX, "id": "urn:ngsi-ld:Meter:m1", "type": "Meter",
             "power": {"type": "Property", "value": 2}, "voltage": {"type": "Property", "value": 4}},
            {"@context": CTX, "id": "urn:ngsi-ld:Room:room2", "type": "Room", "flow": {"type": "Property", "value": 3}}
        ])
    );
    // Only the multi-entity measure arrives: the device's entity still carries the static
    // attribute, the other entities without attributes are not sent.
    assert_eq!(map(&r, json!({"p": 2})).as_array().map(Vec::len), Some(2));
}

#[test]
fn bad_geo_coordinates_refuse_the_update() {
    let d =
        device(json!({"device_id": "d", "attributes": [{"object_id": "p", "name": "location", "type": "geo:point"}]}));
    let r = resolve(&d, None, &Settings::default());
    let e = measures_to_entities(&r, &measures(json!({"p": "1,2,3"})), now()).err().map(|e| (e.name, e.status));
    assert_eq!(e, Some(("BAD_GEOCOORDINATES", 400)));
    assert_eq!(
        map(&r, json!({"p": "1.5, 2"}))[0]["location"]["value"],
        json!({"type": "Point", "coordinates": [1.5, 2]})
    );
}

#[test]
fn an_entity_with_only_id_and_type_is_not_sent() {
    let r = resolve(&device(json!({"device_id": "d"})), None, &Settings::default());
    assert_eq!(map(&r, json!({})), json!([]));
    assert_eq!(map(&r, json!({"x": null})), json!([]));
}

#[test]
fn a_multi_measure_is_ordered_by_time_instant() {
    let r = resolve(&device(json!({"device_id": "d"})), None, &Settings::default());
    let out = map(
        &r,
        json!([
            {"v": 3, "TimeInstant": "2024-01-03T00:00:00Z"},
            {"v": 1, "TimeInstant": "2024-01-01T00:00:00Z"},
            {"v": 2, "TimeInstant": "2024-01-02T00:00:00Z"}
        ]),
    );
    let order: Vec<Value> =
        out.as_array().map(|a| a.iter().map(|e| e["v"]["value"].clone()).collect()).unwrap_or_default();
    assert_eq!(order, [json!(1), json!(2), json!(3)]);
    assert!(out.as_array().is_some_and(|a| a.iter().all(|e| e["@context"] == json!(CTX))));
}

#[test]
fn ultralight_measures_map_end_to_end() {
    let d = device(json!({"device_id": "ul1", "entity_name": "urn:ngsi-ld:Lamp:ul1", "entity_type": "Lamp",
        "attributes": [{"object_id": "l", "name": "luminosity", "type": "Integer"}]}));
    let r = resolve(&d, None, &Settings::default());
    let groups = parse_ul_measures("2024-03-01T10:00:00Z|l|80#s|on").unwrap_or_default();
    let out = measures_to_entities(&r, &groups, now()).unwrap_or_default();
    assert_eq!(
        Value::Array(out),
        json!([
            {"@context": CTX, "id": "urn:ngsi-ld:Lamp:ul1", "type": "Lamp",
             "luminosity": {"type": "Property", "value": 80, "observedAt": "2024-03-01T10:00:00.000Z"}},
            {"@context": CTX, "id": "urn:ngsi-ld:Lamp:ul1", "type": "Lamp",
             "s": {"type": "Property", "value": "on", "observedAt": "2024-05-01T12:00:00.000Z"}}
        ])
    );
}

#[test]
fn entity_name_expressions_use_the_measures() {
    let g = group(json!({"apikey": "k", "resource": "/iot/json", "entity_type": "Sensor",
        "entityNameExp": "id + '__' + sn", "timestamp": false}));
    let r = resolve(&device(json!({"device_id": "d1"})), Some(&g), &Settings::default());
    let m = measures(json!({"sn": "S7", "v": 1})).pop().unwrap_or_default();
    assert_eq!(entity_id_for(&r, &m), "urn:ngsi-ld:Sensor:d1__S7");
    assert_eq!(map(&r, json!({"sn": "S7", "v": 1}))[0]["id"], json!("urn:ngsi-ld:Sensor:d1__S7"));
    // Without the measure an undefined result is the expression's text, as upstream; a falsy
    // result keeps the default id.
    let empty = Measures::new();
    let with_exp = |e: &str| {
        let g = group(json!({"apikey": "k", "resource": "/r", "entity_type": "Sensor", "entityNameExp": e}));
        resolve(&device(json!({"device_id": "d1"})), Some(&g), &Settings::default())
    };
    assert_eq!(entity_id_for(&with_exp("sn"), &empty), "urn:ngsi-ld:Sensor:sn");
    assert_eq!(entity_id_for(&with_exp("sn ? sn : ''"), &empty), "urn:ngsi-ld:Sensor:d1");
    assert_eq!(entity_id_for(&with_exp("id + '-' + sn"), &empty), "urn:ngsi-ld:Sensor:d1-undefined");
}

#[test]
fn resolution_prefers_device_then_group_then_settings() {
    let g = group(json!({
        "apikey": "k", "resource": "/iot/json", "entity_type": "GroupType", "timestamp": true,
        "explicitAttrs": true, "autoprovision": false, "defaultEntityNameConjunction": "-",
        "jsonLdContext": ["http://a", "http://b"], "transport": "HTTP", "endpoint": "http://g", "cmdMode": "legacy",
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}, {"object_id": "h", "name": "humidity"}],
        "commands": [{"name": "ping"}],
        "static_attributes": [{"name": "s", "value": 1}]
    }));
    let d = device(json!({
        "device_id": "d", "timestamp": false, "transport": "MQTT",
        "attributes": [{"object_id": "temp", "name": "temperature", "type": "Integer"}],
        "static_attributes": [{"name": "s2", "value": 2}]
    }));
    let r = resolve(&d, Some(&g), &Settings::default());
    assert_eq!(r.entity_type, "GroupType");
    assert_eq!(r.entity_id, "urn:ngsi-ld:GroupType-d");
    assert!(!r.timestamp);
    assert!(!r.autoprovision);
    assert_eq!(r.explicit_attrs, json!(true));
    assert_eq!(r.context, json!(["http://a", "http://b"]));
    let attrs: Vec<(&str, Option<&str>)> =
        r.attributes.iter().map(|a| (a.name.as_str(), a.object_id.as_deref())).collect();
    assert_eq!(attrs, [("temperature", Some("temp")), ("humidity", Some("h"))]);
    assert_eq!(r.static_attributes.len(), 2);
    assert_eq!(r.commands.len(), 1);
    assert_eq!(r.transport.as_deref(), Some("MQTT"));
    assert_eq!(r.endpoint.as_deref(), Some("http://g"));
    assert_eq!(r.cmd_mode.as_deref(), Some("legacy"));

    let named = device(json!({"device_id": "d", "entity_name": "Room:1", "entity_type": "Room"}));
    let settings = Settings {
        json_ld_context: vec!["http://one".into()],
        timestamp: false,
        explicit_attrs: true,
        ..Settings::default()
    };
    let r = resolve(&named, None, &settings);
    assert_eq!(r.entity_id, "urn:ngsi-ld:Room:Room:1");
    assert_eq!(r.context, json!("http://one"));
    assert!(!r.timestamp);
    assert_eq!(r.explicit_attrs, json!(true));
    let urn = device(json!({"device_id": "d", "entity_name": "urn:ngsi-ld:X:9"}));
    assert_eq!(resolve(&urn, None, &settings).entity_id, "urn:ngsi-ld:X:9");
    let several = Settings { json_ld_context: vec!["http://a".into(), "http://b".into()], ..Settings::default() };
    assert_eq!(resolve(&urn, None, &several).context, json!(["http://a", "http://b"]));
}

#[test]
fn expressions_see_their_own_measure_under_the_attribute_name() {
    let d = device(json!({"device_id": "d", "timestamp": false, "attributes": [
        {"object_id": "t", "name": "temperature", "type": "Number", "expression": "temperature * 2"},
        {"name": "id_seen", "type": "Text", "expression": "measure_id + '/' + id"}
    ]}));
    let r = resolve(&d, None, &Settings::default());
    let out = map(&r, json!({"t": 21, "id": "m1"}));
    assert_eq!(out[0]["temperature"]["value"], json!(42));
    assert_eq!(out[0]["id_seen"]["value"], json!("m1/d"));
    assert_eq!(out[0]["measure_id"]["value"], json!("m1"));
    // Without its measure the attribute's name is undefined while its expression runs, even if
    // a measure of that name arrived (which the attribute consumes): NaN, nothing sent.
    let out = map(&r, json!({"temperature": 5, "x": 1}));
    assert!(out[0].get("temperature").is_none());
    assert_eq!(out[0]["x"]["value"], json!(1));
}

#[test]
fn provisioned_names_consume_measures() {
    let d = device(json!({"device_id": "d", "timestamp": false,
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
        "lazy": [{"name": "luminosity", "type": "Number"}],
        "static_attributes": [{"name": "zone", "type": "Text", "value": "A"}]}));
    let r = resolve(&d, None, &Settings::default());
    // A measure named like an attribute (not its object_id) is not passed through; a lazy
    // attribute's measure is sent with the lazy attribute's type; a static attribute keeps its
    // value over a measure of the same name.
    assert_eq!(
        map(&r, json!({"temperature": 99, "luminosity": "5", "zone": "B"})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
                "zone": {"type": "Property", "value": "A"},
                "luminosity": {"type": "Property", "value": 5}}])
    );
}

#[test]
fn a_falsy_skip_value_skips_nothing() {
    let d = device(json!({"device_id": "d", "timestamp": false, "attributes": [
        {"object_id": "a", "name": "a", "skipValue": 0},
        {"object_id": "b", "name": "b", "skipValue": "off"},
        {"object_id": "c", "name": "c", "skipValue": [1], "expression": "c"}
    ]}));
    let r = resolve(&d, None, &Settings::default());
    let out = map(&r, json!({"a": 0, "b": "off", "c": [1]}));
    assert_eq!(out[0]["a"]["value"], json!(0));
    assert!(out[0].get("b").is_none());
    // An array is never === another array upstream: an array skipValue skips nothing.
    assert_eq!(out[0]["c"]["value"], json!([1]));
}

#[test]
fn metadata_expressions_and_time_instant_expressions() {
    let d = device(json!({"device_id": "d", "attributes": [
        {"object_id": "t", "name": "temperature", "type": "Number",
         "metadata": {"accuracy": {"type": "Number", "expression": "t / 10"}, "unitCode": {"type": "Text", "value": "CEL"}}},
        {"object_id": "ts", "name": "TimeInstant", "type": "DateTime", "expression": "ts|toisodate"}
    ]}));
    let r = resolve(&d, None, &Settings::default());
    assert_eq!(
        map(&r, json!({"t": 25, "ts": 1_700_000_000_000u64})),
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
                "temperature": {"type": "Property", "value": 25, "accuracy": {"type": "Property", "value": 2.5},
                                "unitCode": "CEL", "observedAt": "2023-11-14T22:13:20.000Z"}}])
    );
}

#[test]
fn multi_entity_names_may_be_expressions() {
    let d = device(json!({"device_id": "d", "entity_type": "Hub", "timestamp": false, "attributes": [
        {"object_id": "v", "name": "value", "type": "Number", "entity_name": "'Room:' + room", "entity_type": "Room"},
        {"object_id": "w", "name": "other", "entity_name": "plainName"}
    ]}));
    let r = resolve(&d, None, &Settings::default());
    let out = map(&r, json!({"v": 1, "w": 2, "room": "r7"}));
    let ids: Vec<Value> = out.as_array().map(|a| a.iter().map(|e| e["id"].clone()).collect()).unwrap_or_default();
    assert_eq!(
        ids,
        [json!("urn:ngsi-ld:Hub:d"), json!("urn:ngsi-ld:Room:Room:r7"), json!("urn:ngsi-ld:Hub:plainName")]
    );
}

#[test]
fn an_ngsi_ld_payload_keeps_relationships_and_geo_properties() {
    let d = device(json!({"device_id": "d", "payloadType": "ngsild"}));
    let r = resolve(&d, None, &Settings::default());
    let body = json!({
        "id": "urn:ngsi-ld:X:1", "type": "X",
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"},
        "where": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [0, 0]]]}},
        "name": {"type": "LanguageProperty", "languageMap": {"en": "hi"}},
        "t": {"type": "Property", "value": 21, "observedAt": "2024-01-01T00:00:00Z"}
    });
    let typed = parse_json_measures_typed(body.to_string().as_bytes(), Some("ngsild")).unwrap_or_default();
    let out = Value::Array(measures_to_entities_typed(&r, &typed, now()).unwrap_or_default());
    let at = "2024-01-01T00:00:00.000Z";
    assert_eq!(
        out,
        json!([{"@context": CTX, "id": "urn:ngsi-ld:Thing:d", "type": "Thing",
            "measure_id": {"type": "Property", "value": "urn:ngsi-ld:X:1", "observedAt": at},
            "measure_type": {"type": "Property", "value": "X", "observedAt": at},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "observedAt": at},
            "where": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [0, 0]]]}, "observedAt": at},
            "name": {"type": "LanguageProperty", "languageMap": {"en": "hi"}, "observedAt": at},
            "t": {"type": "Property", "value": 21, "observedAt": at}}])
    );
}
