//! A subscription as stored and as compiled for matching (GS CIM 009 §5.2.12).
//!
//! The stored form keeps the API members as the client gave them (validated, compacted with the
//! client's context) together with that context, so a GET returns what was sent and a restart
//! recompiles exactly the same filters. The compiled form holds the parsed `q`, `geoQ`,
//! `scopeQ`, selectors and expanded attribute names that matching and rendering use.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::parse::{is_uri, valid_name};
use crate::model::{format_millis, parse_datetime};
use crate::query::{Selector, geo, pattern, q, scope, types};
use crate::render::{Format, RenderOpts};

/// Delivery statistics of a subscription (the `notification` status members).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_notification: Option<i64>,
    pub last_success: Option<i64>,
    pub last_failure: Option<i64>,
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_errors: u64,
}

/// A subscription as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubDoc {
    pub id: String,
    pub tenant: String,
    /// The API members as given (without `@context`), validated.
    pub body: Map<String, Value>,
    /// The client's `@context` (`null` = the core context only).
    pub context: Value,
    pub created_at: i64,
    pub modified_at: i64,
    #[serde(default)]
    pub stats: Stats,
}

/// Notification triggers (GS CIM 009 §5.2.12, `notificationTrigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Triggers {
    pub entity_created: bool,
    pub entity_updated: bool,
    pub entity_deleted: bool,
    pub attribute_created: bool,
    pub attribute_updated: bool,
    pub attribute_deleted: bool,
}

impl Triggers {
    /// The default when `notificationTrigger` is absent.
    pub const DEFAULT: Triggers = Triggers {
        entity_created: false,
        entity_updated: false,
        entity_deleted: false,
        attribute_created: true,
        attribute_updated: true,
        attribute_deleted: false,
    };

    fn parse(v: &Value) -> NgsiResult<Triggers> {
        let items = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| NgsiError::bad_data("notificationTrigger must be a non-empty array of trigger names"))?;
        let mut t = Triggers::default();
        for item in items {
            match item.as_str() {
                Some("entityCreated") => t.entity_created = true,
                Some("entityUpdated") => t.entity_updated = true,
                Some("entityDeleted") => t.entity_deleted = true,
                Some("attributeCreated") => t.attribute_created = true,
                Some("attributeUpdated") => t.attribute_updated = true,
                Some("attributeDeleted") => t.attribute_deleted = true,
                _ => return Err(NgsiError::bad_data(format!("unknown notificationTrigger {item}"))),
            }
        }
        Ok(t)
    }
}

/// Where and how notifications go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: String,
    pub accept: String,
    pub receiver_info: Vec<(String, String)>,
    pub notifier_info: Vec<(String, String)>,
}

/// A subscription compiled for matching and rendering.
#[derive(Debug)]
pub struct Compiled {
    pub id: String,
    pub tenant: String,
    /// The context the subscription was made with (its names are compacted with it).
    pub ctx: Arc<Context>,
    /// The `jsonldContext` notifications are compacted with, when it differs from `ctx`, and
    /// its URL as given (announced in the Link header or the `@context` member).
    pub notify_ctx: Option<(Arc<Context>, String)>,
    pub selectors: Vec<Selector>,
    /// Entity ids that every selector names exactly (the matcher's index keys), if all do.
    pub exact_ids: Option<Vec<String>>,
    /// Candidate types (expanded) if every selector has a plain type list.
    pub types: Option<Vec<String>>,
    pub watched: Vec<String>,
    pub triggers: Triggers,
    pub q: Option<q::Query>,
    pub geo: Option<geo::ResolvedGeo>,
    pub scope: Option<scope::ScopeQ>,
    /// Attributes to notify (expanded); empty = all.
    pub attributes: Vec<String>,
    pub render: RenderOpts,
    pub show_changes: bool,
    pub endpoint: Endpoint,
    pub is_active: bool,
    pub expires_at: Option<i64>,
    pub throttling: Option<f64>,
    pub time_interval: Option<f64>,
    /// The filters of a context source registration subscription (None for an entity one).
    pub csource: Option<super::csource::CsourceFilter>,
}

impl Compiled {
    /// Whether the subscription is active now (not paused, not expired).
    pub fn live(&self, now: i64) -> bool {
        self.is_active && self.expires_at.is_none_or(|t| t > now)
    }

    /// The status member shown to clients.
    pub fn status(&self, now: i64) -> &'static str {
        if self.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else if self.is_active {
            "active"
        } else {
            "paused"
        }
    }
}

/// Decodes `%XX` escapes: a `q` is written as in a URL, and clients copy it into subscriptions
/// still encoded (`name=="Eiffel%20Tower"`).
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

fn string_list(v: &Value, what: &str) -> NgsiResult<Vec<String>> {
    let items =
        v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad(format!("{what} must be a non-empty array")))?;
    items
        .iter()
        .map(|i| {
            i.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{what} must contain non-empty strings")))
        })
        .collect()
}

fn attr_names(v: &Value, what: &str) -> NgsiResult<Vec<String>> {
    let names = string_list(v, what)?;
    if let Some(n) = names.iter().find(|n| !valid_name(n) && !is_uri(n)) {
        return Err(bad(format!("{what} holds an invalid attribute name {n:?}")));
    }
    Ok(names)
}

fn key_values(v: &Value, what: &str) -> NgsiResult<Vec<(String, String)>> {
    let items = v.as_array().ok_or_else(|| bad(format!("{what} must be an array of {{key, value}} objects")))?;
    items
        .iter()
        .map(|i| match (i.get("key").and_then(Value::as_str), i.get("value").and_then(Value::as_str)) {
            (Some(k), Some(v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(bad(format!("{what} entries need a string key and a string value"))),
        })
        .collect()
}

fn positive(v: &Value, what: &str) -> NgsiResult<f64> {
    match v.as_f64() {
        Some(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(bad(format!("{what} must be a positive number"))),
    }
}

/// The members a client may set; anything else (including the read-only status members) is
/// dropped, never stored or echoed.
const MEMBERS: &[&str] = &[
    "id",
    "type",
    "subscriptionName",
    "description",
    "entities",
    "watchedAttributes",
    "notificationTrigger",
    "timeInterval",
    "q",
    "geoQ",
    "scopeQ",
    "csf",
    "lang",
    "isActive",
    "expiresAt",
    "throttling",
    "notification",
    "jsonldContext",
    "temporalQ",
    "datasetId",
];

/// The members of `notification` a client may set.
const NOTIFICATION_MEMBERS: &[&str] =
    &["attributes", "format", "sysAttrs", "showChanges", "endpoint", "pick", "omit", "join", "joinLevel"];

/// Applies `f` to every type name of a type selection expression (`A,B`, `(A|B);C`).
fn map_type_names(expr: &str, f: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut name = String::new();
    for ch in expr.chars() {
        if matches!(ch, ',' | ';' | '|' | '(' | ')') {
            if !name.is_empty() {
                out.push_str(&f(name.trim()));
                name.clear();
            }
            out.push(ch);
        } else {
            name.push(ch);
        }
    }
    if !name.is_empty() {
        out.push_str(&f(name.trim()));
    }
    out
}

/// Maps the names in an array member (attribute names; `id`, `type` and `scope` stay).
fn map_names(v: &mut Value, f: &dyn Fn(&str) -> String) {
    if let Value::Array(items) = v {
        for i in items {
            if let Value::String(s) = i
                && !matches!(s.as_str(), "id" | "type" | "scope")
            {
                *s = f(s);
            }
        }
    }
}

/// Rewrites the names a subscription holds (types, attribute names, geoproperty) with `f`:
/// expansion before storing, compaction for a client.
fn map_subscription_names(body: &mut Map<String, Value>, f: &dyn Fn(&str) -> String) {
    if let Some(Value::Array(ents)) = body.get_mut("entities") {
        for e in ents {
            if let Some(Value::String(t)) = e.get_mut("type") {
                *t = map_type_names(t, f);
            }
        }
    }
    if let Some(w) = body.get_mut("watchedAttributes") {
        map_names(w, f);
    }
    if let Some(Value::Object(g)) = body.get_mut("geoQ")
        && let Some(Value::String(p)) = g.get_mut("geoproperty")
    {
        *p = f(p);
    }
    if let Some(Value::Object(n)) = body.get_mut("notification") {
        for k in ["attributes", "pick", "omit"] {
            if let Some(v) = n.get_mut(k) {
                map_names(v, f);
            }
        }
    }
}

/// The body to store: known members only, names expanded with the client's context.
pub fn normalize(mut body: Map<String, Value>, ctx: &Context) -> Map<String, Value> {
    body.retain(|k, _| MEMBERS.contains(&k.as_str()));
    if let Some(Value::Object(n)) = body.get_mut("notification") {
        n.retain(|k, _| NOTIFICATION_MEMBERS.contains(&k.as_str()));
    }
    map_subscription_names(&mut body, &|n| ctx.expand(n));
    body
}

fn projection_set(n: &Map<String, Value>, k: &str) -> NgsiResult<Option<std::collections::HashSet<String>>> {
    match n.get(k) {
        None => Ok(None),
        Some(v) => Ok(Some(string_list(v, &format!("notification.{k}"))?.into_iter().collect())),
    }
}

/// Compiles (and so validates) a subscription body with its context.
pub fn compile(id: &str, tenant: &str, body: &Map<String, Value>, ctx: Arc<Context>) -> NgsiResult<Compiled> {
    match body.get("type") {
        Some(Value::String(t)) if t == "Subscription" => {}
        Some(_) => return Err(bad("the type of a subscription must be \"Subscription\"")),
        None => return Err(bad("a subscription needs \"type\": \"Subscription\"")),
    }
    for k in ["subscriptionName", "description"] {
        if body.get(k).is_some_and(|v| !v.is_string()) {
            return Err(bad(format!("{k} must be a string")));
        }
    }
    let mut selectors = Vec::new();
    let mut exact: Vec<String> = Vec::new();
    let mut all_exact = true;
    let mut type_candidates: Vec<String> = Vec::new();
    let mut all_typed = true;
    if let Some(ents) = body.get("entities") {
        let items =
            ents.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("entities must be a non-empty array"))?;
        for item in items {
            let o = item.as_object().ok_or_else(|| bad("each entities item must be an object"))?;
            let ty = match o.get("type") {
                Some(Value::String(t)) if !t.is_empty() => t,
                Some(_) => return Err(bad("entities[].type must be a non-empty string")),
                None => return Err(bad("each entities item needs a type")),
            };
            let types = types::parse(ty, &ctx)?;
            match types.candidates() {
                Some(c) => type_candidates.extend(c),
                None => all_typed = false,
            }
            let ids = match o.get("id") {
                None => None,
                Some(Value::String(i)) if is_uri(i) => Some(vec![i.clone()]),
                Some(_) => return Err(bad("entities[].id must be a URI")),
            };
            let id_pattern = match o.get("idPattern") {
                None => None,
                Some(Value::String(p)) => Some(
                    pattern::compile(p)
                        .map_err(|e| bad(format!("entities[].idPattern is not a valid regular expression: {e}")))?,
                ),
                Some(_) => return Err(bad("entities[].idPattern must be a string")),
            };
            match &ids {
                Some(i) => exact.extend(i.iter().cloned()),
                None => all_exact = false,
            }
            selectors.push(Selector { ids, id_pattern, types: Some(types) });
        }
    }
    let watched = match body.get("watchedAttributes") {
        Some(v) => attr_names(v, "watchedAttributes")?.iter().map(|n| ctx.expand(n)).collect(),
        None => Vec::new(),
    };
    let time_interval = body.get("timeInterval").map(|v| positive(v, "timeInterval")).transpose()?;
    let throttling = body.get("throttling").map(|v| positive(v, "throttling")).transpose()?;
    if selectors.is_empty() && watched.is_empty() && time_interval.is_none() {
        return Err(bad("a subscription needs entities or watchedAttributes"));
    }
    if time_interval.is_some() && !watched.is_empty() {
        return Err(bad("timeInterval and watchedAttributes cannot be used together"));
    }
    if time_interval.is_some() && throttling.is_some() {
        return Err(bad("timeInterval and throttling cannot be used together"));
    }
    let triggers = match body.get("notificationTrigger") {
        Some(v) => Triggers::parse(v)?,
        None => Triggers::DEFAULT,
    };
    let q = match body.get("q") {
        Some(Value::String(s)) => {
            Some(q::compile(&percent_decode(s), &ctx).map_err(|e| bad(format!("q: {}", e.detail)))?)
        }
        Some(_) => return Err(bad("q must be a string")),
        None => None,
    };
    let geo = body.get("geoQ").map(|g| geo::from_json(g).map(|g| g.resolve(&ctx))).transpose()?;
    let scope = match body.get("scopeQ") {
        Some(Value::String(s)) => Some(scope::parse(s)?),
        Some(_) => return Err(bad("scopeQ must be a string")),
        None => None,
    };
    let lang = match body.get("lang") {
        Some(Value::String(s)) => Some(crate::render::parse_lang(s)?),
        Some(_) => return Err(bad("lang must be a string")),
        None => None,
    };
    let is_active = match body.get("isActive") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("isActive must be a boolean")),
        None => true,
    };
    let expires_at = match body.get("expiresAt") {
        Some(Value::String(s)) => Some(parse_datetime(s).ok_or_else(|| bad("expiresAt must be a DateTime"))?),
        Some(_) => return Err(bad("expiresAt must be a DateTime string")),
        None => None,
    };
    if body.get("jsonldContext").is_some_and(|v| !v.as_str().is_some_and(is_uri)) {
        return Err(bad("jsonldContext must be a URI"));
    }
    let n = body
        .get("notification")
        .ok_or_else(|| bad("a subscription needs a notification member"))?
        .as_object()
        .ok_or_else(|| bad("notification must be an object"))?;
    let attributes = match n.get("attributes") {
        Some(v) => attr_names(v, "notification.attributes")?.iter().map(|a| ctx.expand(a)).collect(),
        None => Vec::new(),
    };
    let format = match n.get("format").map(|f| f.as_str()) {
        None | Some(Some("normalized")) => Format::Normalized,
        Some(Some("keyValues" | "simplified")) => Format::KeyValues,
        Some(Some("concise")) => Format::Concise,
        Some(_) => return Err(bad("notification.format must be normalized, concise, keyValues or simplified")),
    };
    let flag = |k: &str| -> NgsiResult<bool> {
        match n.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(format!("notification.{k} must be a boolean"))),
        }
    };
    let sys_attrs = flag("sysAttrs")?;
    let show_changes = flag("showChanges")?;
    let ep = n
        .get("endpoint")
        .ok_or_else(|| bad("notification needs an endpoint"))?
        .as_object()
        .ok_or_else(|| bad("notification.endpoint must be an object"))?;
    let uri = match ep.get("uri") {
        Some(Value::String(u)) if is_uri(u) => u.clone(),
        _ => return Err(bad("notification.endpoint.uri must be a URI")),
    };
    let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "mqtt" | "mqtts" | "amqp" | "amqps") {
        return Err(bad(format!(
            "notification.endpoint.uri scheme {scheme:?} is not supported (http, https, mqtt, mqtts, amqp)"
        )));
    }
    if !uri.split_once("://").is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/')) {
        return Err(bad("notification.endpoint.uri needs a host"));
    }
    let accept = match ep.get("accept").map(|a| a.as_str()) {
        None => "application/json".to_owned(),
        Some(Some(a @ ("application/json" | "application/ld+json" | "application/geo+json"))) => a.to_owned(),
        Some(_) => {
            return Err(bad(
                "notification.endpoint.accept must be application/json, application/ld+json or application/geo+json",
            ));
        }
    };
    let receiver_info = ep.get("receiverInfo").map(|v| key_values(v, "receiverInfo")).transpose()?.unwrap_or_default();
    let notifier_info = ep.get("notifierInfo").map(|v| key_values(v, "notifierInfo")).transpose()?.unwrap_or_default();
    for (k, v) in &notifier_info {
        match k.as_str() {
            "MQTT-QoS" if !matches!(v.as_str(), "0" | "1" | "2") => {
                return Err(bad("notifierInfo MQTT-QoS must be 0, 1 or 2"));
            }
            "MQTT-Version" if !matches!(v.as_str(), "mqtt3.1.1" | "mqtt5.0") => {
                return Err(bad("notifierInfo MQTT-Version must be mqtt3.1.1 or mqtt5.0"));
            }
            _ => {}
        }
    }
    if show_changes && format == Format::KeyValues {
        return Err(bad("showChanges cannot be used with the keyValues (simplified) format"));
    }
    let mut pick = projection_set(n, "pick")?;
    let omit = projection_set(n, "omit")?;
    if (pick.is_some() || omit.is_some()) && n.contains_key("attributes") {
        return Err(bad("notification.attributes cannot be combined with pick or omit"));
    }
    if let (Some(p), Some(o)) = (&pick, &omit)
        && p.iter().any(|m| o.contains(m))
    {
        return Err(bad("pick and omit name the same member"));
    }
    if !attributes.is_empty() {
        let mut set: std::collections::HashSet<String> = attributes.iter().cloned().collect();
        set.extend(["id".to_owned(), "type".to_owned(), "scope".to_owned()]);
        pick = Some(set);
    }
    let join = match n.get("join").map(|j| j.as_str()) {
        None | Some(Some("none")) => None,
        Some(Some("flat")) => Some(crate::render::Join::Flat),
        Some(Some("inline")) => Some(crate::render::Join::Inline),
        Some(_) => return Err(bad("notification.join must be flat, inline or none")),
    };
    let join_level = match n.get("joinLevel") {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(l) if l >= 1 => l as usize,
            _ => return Err(bad("notification.joinLevel must be a positive integer")),
        },
    };
    let dataset_ids = body.get("datasetId").map(|v| string_list(v, "datasetId")).transpose()?;
    let render =
        RenderOpts { format, sys_attrs, lang, pick, omit, join, join_level, dataset_ids, ..RenderOpts::default() };
    type_candidates.sort();
    type_candidates.dedup();
    Ok(Compiled {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        ctx,
        notify_ctx: None,
        exact_ids: (all_exact && !selectors.is_empty()).then_some(exact),
        types: (all_typed && !selectors.is_empty()).then_some(type_candidates),
        selectors,
        watched,
        triggers,
        q,
        geo,
        scope,
        attributes,
        render,
        show_changes,
        endpoint: Endpoint { uri, accept, receiver_info, notifier_info },
        is_active,
        expires_at,
        throttling,
        time_interval,
        csource: None,
    })
}

/// The subscription as a client sees it: the members given (names compacted with the
/// request's context), `status`, the default `notificationTrigger`, and the delivery status
/// once a notification has been attempted.
pub fn render(doc: &SubDoc, c: &Compiled, ctx: &Context, now: i64, sys_attrs: bool) -> Value {
    let mut body = doc.body.clone();
    map_subscription_names(&mut body, &|n| ctx.compact(n));
    let mut out = Map::new();
    out.insert("id".into(), json!(doc.id));
    out.insert("type".into(), json!("Subscription"));
    for (k, v) in body {
        if matches!(k.as_str(), "id" | "type") {
            continue;
        }
        out.insert(k, v);
    }
    if !out.contains_key("notificationTrigger") {
        out.insert("notificationTrigger".into(), json!(["attributeCreated", "attributeUpdated"]));
    }
    out.insert("status".into(), json!(c.status(now)));
    if let Some(Value::Object(n)) = out.get_mut("notification") {
        let s = &doc.stats;
        if s.times_sent > 0 {
            n.insert("timesSent".into(), json!(s.times_sent));
            n.insert("timesFailed".into(), json!(s.times_failed));
            n.insert("status".into(), json!(if s.consecutive_errors == 0 { "ok" } else { "failed" }));
        }
        if let Some(t) = s.last_notification {
            n.insert("lastNotification".into(), json!(format_millis(t)));
        }
        if let Some(t) = s.last_success {
            n.insert("lastSuccess".into(), json!(format_millis(t)));
        }
        if let Some(t) = s.last_failure {
            n.insert("lastFailure".into(), json!(format_millis(t)));
        }
    }
    if sys_attrs {
        out.insert("createdAt".into(), json!(format_millis(doc.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(doc.modified_at)));
    }
    Value::Object(out)
}
