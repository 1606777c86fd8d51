//! Context source registration subscriptions (GS CIM 009 §5.11) and their notifications
//! (§5.3.2 CsourceNotification).
//!
//! A client subscribes to registrations the way it subscribes to entities, and most of the
//! subscription is the same: the stored form ([`super::subscription::SubDoc`]), validation and
//! the compiled form ([`Compiled`]) are shared, and so are the delivery queue, the transports,
//! retries and statistics. What differs lives here: the filters apply to a registration (its
//! information items, its properties for `q` and `csf`, its `location` for `geoQ`, its
//! intervals for `temporalQ`), and the notification carries registrations with a
//! `triggerReason` instead of entities.
//!
//! These notifications are not kept in the durable outbox: the registry is not written through
//! the store's group commit, so a notification queued when a registration changes is lost if
//! the broker stops before it is delivered (a client can always query the registrations).

use serde_json::{Map, Value, json};

use super::sender::Outgoing;
use super::subscription::{self, Compiled, SubDoc};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::{format_millis, parse_datetime};
use crate::query::q;
use crate::registry::registration::{self, CompiledRegistration, RegDoc, TimeRel};

/// The store collection holding context source registration subscriptions (key: tenant NUL id).
pub const CSOURCE_SUBSCRIPTIONS: &str = "csourceSubscriptions";

/// Why a registration is notified (§5.3.2 `triggerReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NewlyMatching,
    Updated,
    NoLongerMatching,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::NewlyMatching => "newlyMatching",
            Reason::Updated => "updated",
            Reason::NoLongerMatching => "noLongerMatching",
        }
    }
}

/// What a CsourceNotification says: the reason and the registrations, already rendered with
/// the subscription's context.
#[derive(Debug, Clone)]
pub struct Payload {
    pub reason: Reason,
    pub data: Vec<Value>,
}

/// The filters only a context source registration subscription has.
#[derive(Debug)]
pub struct CsourceFilter {
    /// `csf`, over the registration's properties.
    pub csf: Option<q::Query>,
    /// `temporalQ`: the relation and whether it applies to the observation interval (rather
    /// than the management interval).
    pub time: Option<(TimeRel, bool)>,
}

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

fn datetime(o: &Map<String, Value>, k: &str) -> NgsiResult<Option<i64>> {
    match o.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(parse_datetime)
            .map(Some)
            .ok_or_else(|| bad(format!("temporalQ.{k} must be a DateTime"))),
    }
}

/// Reads `temporalQ` (§5.2.21 TemporalQuery): `timerel`, `timeAt`, `endTimeAt`, `timeproperty`.
fn temporal_q(v: &Value) -> NgsiResult<(TimeRel, bool)> {
    let o = v.as_object().ok_or_else(|| bad("temporalQ must be an object"))?;
    let at = datetime(o, "timeAt")?.ok_or_else(|| bad("temporalQ needs timeAt"))?;
    let end = datetime(o, "endTimeAt")?;
    let rel = match o.get("timerel").and_then(Value::as_str) {
        Some("before") => TimeRel::Before(at),
        Some("after") => TimeRel::After(at),
        Some("between") => match end {
            Some(end) if end > at => TimeRel::Between(at, end),
            Some(_) => return Err(bad("temporalQ.endTimeAt must be after timeAt")),
            None => return Err(bad("temporalQ with timerel between needs endTimeAt")),
        },
        _ => return Err(bad("temporalQ.timerel must be before, after or between")),
    };
    let observation = match o.get("timeproperty").map(Value::as_str) {
        None | Some(Some("observedAt")) => true,
        Some(Some("createdAt" | "modifiedAt")) => false,
        Some(_) => return Err(bad("temporalQ.timeproperty must be observedAt, createdAt or modifiedAt")),
    };
    Ok((rel, observation))
}

/// Compiles (and so validates) a context source registration subscription: everything an
/// entity subscription checks, plus `csf` and `temporalQ`.
pub fn compile(
    id: &str,
    tenant: &str,
    body: &Map<String, Value>,
    ctx: std::sync::Arc<Context>,
) -> NgsiResult<Compiled> {
    if body.contains_key("notificationTrigger") {
        return Err(bad("notificationTrigger is not a member of a context source registration subscription"));
    }
    let mut c = subscription::compile(id, tenant, body, ctx)?;
    let csf = match body.get("csf") {
        Some(Value::String(s)) => {
            Some(q::compile(&subscription::percent_decode(s), &c.ctx).map_err(|e| bad(format!("csf: {}", e.detail)))?)
        }
        Some(_) => return Err(bad("csf must be a string")),
        None => None,
    };
    let time = body.get("temporalQ").map(temporal_q).transpose()?;
    c.csource = Some(CsourceFilter { csf, time });
    Ok(c)
}

/// The information items (by position) of a registration that a subscription's entities and
/// watched attributes select.
fn matching_info(c: &Compiled, reg: &CompiledRegistration) -> Vec<bool> {
    let watched = (!c.watched.is_empty()).then_some(c.watched.as_slice());
    reg.information
        .iter()
        .map(|i| {
            let entities = c.selectors.is_empty()
                || i.entities.is_empty()
                || i.entities.iter().any(|e| {
                    c.selectors.iter().any(|s| e.meets(s.ids.as_deref(), s.id_pattern.as_ref(), s.types.as_ref()))
                });
            entities && i.covers_any(watched)
        })
        .collect()
}

/// Whether a registration matches a context source registration subscription at `now`
/// (§5.11.7): it is in force and, without `temporalQ`, provides latest information; some
/// information item is about the subscription's entities and watched attributes; its
/// properties satisfy `q` and `csf`, its scope `scopeQ`, its location `geoQ`, its intervals
/// `temporalQ`.
pub fn matches(c: &Compiled, reg: &CompiledRegistration, now: i64) -> bool {
    let Some(f) = &c.csource else { return false };
    if !reg.live(now) {
        return false;
    }
    match f.time {
        None if !reg.current(now) => return false,
        None => {}
        Some((rel, observation)) => {
            let iv = if observation { reg.observation_interval } else { reg.management_interval };
            if !iv.is_some_and(|i| i.meets(rel)) {
                return false;
            }
        }
    }
    matching_info(c, reg).into_iter().any(|m| m)
        && c.q.as_ref().is_none_or(|q| q.matches(&reg.props))
        && f.csf.as_ref().is_none_or(|q| q.matches(&reg.props))
        && c.scope.as_ref().is_none_or(|s| s.matches(reg.props.scopes()))
        && c.geo.as_ref().is_none_or(|g| g.matches(&reg.props))
}

/// A registration as the subscription's notifications show it: as a GET renders it, compacted
/// with the subscription's context, with only the information items the subscription selects
/// when some do (§5.11.7 recommends sending the relevant information only), and each entity
/// `type` as an array (either form is valid for EntityInfo; receivers written against the ETSI
/// suite read the array form, 047_03).
pub fn render_registration(c: &Compiled, doc: &RegDoc, reg: &CompiledRegistration) -> Value {
    let ctx: &Context = c.notify_ctx.as_ref().map(|(c, _)| c).unwrap_or(&c.ctx);
    let mut v = registration::render(doc, reg, ctx, false);
    let keep = matching_info(c, reg);
    if let Some(Value::Array(items)) = v.get_mut("information") {
        if keep.iter().any(|k| *k) && items.len() == keep.len() {
            let mut flags = keep.into_iter();
            items.retain(|_| flags.next().unwrap_or(true));
        }
        for e in items.iter_mut().filter_map(|i| i.get_mut("entities")).filter_map(Value::as_array_mut).flatten() {
            if let Some(t) = e.get_mut("type")
                && t.is_string()
            {
                *t = Value::Array(vec![t.take()]);
            }
        }
    }
    v
}

/// The subscription as a client sees it: as an entity subscription, without the entity
/// notification triggers, and without `timesFailed` while nothing failed (the member is
/// optional; ETSI 047_05 expects it absent).
pub fn render(doc: &SubDoc, c: &Compiled, ctx: &Context, now: i64, sys_attrs: bool) -> Value {
    let mut v = subscription::render(doc, c, ctx, now, sys_attrs);
    if let Value::Object(o) = &mut v {
        o.remove("notificationTrigger");
        if let Some(Value::Object(n)) = o.get_mut("notification")
            && n.get("timesFailed").and_then(Value::as_u64) == Some(0)
        {
            n.remove("timesFailed");
        }
    }
    v
}

/// The CsourceNotification (§5.3.2), ready to send.
pub fn build(c: &Compiled, p: &Payload, now: i64) -> Outgoing {
    let body = json!({
        "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
        "type": "ContextSourceNotification",
        "subscriptionId": c.id,
        "notifiedAt": format_millis(now),
        "triggerReason": p.reason.name(),
        "data": p.data,
    });
    super::payload::envelope(c, body, None)
}
