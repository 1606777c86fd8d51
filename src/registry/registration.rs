//! A context source registration as stored and as compiled for lookups (GS CIM 009 §5.2.9
//! CSourceRegistration, §5.2.10 RegistrationInfo, §5.2.8 EntityInfo, §4.20 operations).
//!
//! The stored form ([`RegDoc`]) keeps the members a client gave, validated, with the names it
//! holds (entity types, property and relationship names, the names of additional Context Source
//! Properties) expanded with the client's `@context`, plus that context; a GET compacts them
//! with the request's context. The compiled form ([`CompiledRegistration`]) is what lookups
//! use: parsed entity selectors, expanded attribute names, the mode, the set of operations the
//! source serves, intervals and expiry, and the registration's own properties as an entity so
//! that `q`, `csf`, `scopeQ` and geo-queries run through the query engine unchanged.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::{CORE, Context};
use crate::model::parse::{is_uri, parse_scope, valid_name};
use crate::model::{AttrKind, Attribute, Entity, format_millis, parse_datetime};
use crate::query::{geo, pattern, q, scope, types};

/// The `type` of every registration.
pub const REG_TYPE: &str = "ContextSourceRegistration";

/// Delivery statistics of a registration: the outcome of the distributed operations the
/// forwarding layer sent to the source (the status members of §5.2.9).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegStats {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_success: Option<i64>,
    pub last_failure: Option<i64>,
    /// Failures since the last success.
    pub consecutive_errors: u64,
}

/// A registration as persisted (collection `registrations`, key tenant NUL id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegDoc {
    pub id: String,
    pub tenant: String,
    /// The members as given (without `@context`), validated, names expanded.
    pub body: Map<String, Value>,
    /// The client's `@context` (`null` = the core context only).
    pub context: Value,
    pub created_at: i64,
    pub modified_at: i64,
    #[serde(default)]
    pub stats: RegStats,
}

/// How a registered source relates to the broker's own data (§4.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// The source holds exactly the registered attributes of the registered entity; the broker
    /// holds none of them and forwards every operation on them to the source.
    Exclusive,
    /// The broker holds nothing for what is registered and redirects to the source(s).
    Redirect,
    /// The default: the source's data adds to the broker's own.
    Inclusive,
    /// The source only fills gaps: its data never overrides the broker's own, and only
    /// retrieval operations go to it.
    Auxiliary,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inclusive => "inclusive",
            Mode::Exclusive => "exclusive",
            Mode::Redirect => "redirect",
            Mode::Auxiliary => "auxiliary",
        }
    }

    fn parse(v: &Value) -> NgsiResult<Mode> {
        match v.as_str() {
            Some("inclusive") => Ok(Mode::Inclusive),
            Some("exclusive") => Ok(Mode::Exclusive),
            Some("redirect") => Ok(Mode::Redirect),
            Some("auxiliary") => Ok(Mode::Auxiliary),
            _ => Err(bad("mode must be inclusive, exclusive, redirect or auxiliary")),
        }
    }

    /// Exclusive and redirect registrations take data away from the broker (§4.3.6.3).
    pub fn is_proxied(self) -> bool {
        matches!(self, Mode::Exclusive | Mode::Redirect)
    }
}

/// The operations a source can serve (GS CIM 009 Table 4.20-1). The forwarding layer asks for
/// registrations serving the operation it is about to distribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// §5.6.1 Create Entity.
    CreateEntity,
    /// §5.6.2 Update Entity Attributes (PATCH /entities/{id}/attrs).
    UpdateEntity,
    /// §5.6.3 Append Entity Attributes.
    AppendAttrs,
    /// §5.6.4 Partial Attribute Update (PATCH /entities/{id}/attrs/{attrId}).
    UpdateAttrs,
    /// §5.6.5 Delete Entity Attribute.
    DeleteAttrs,
    /// §5.6.6 Delete Entity.
    DeleteEntity,
    CreateBatch,
    UpsertBatch,
    UpdateBatch,
    DeleteBatch,
    UpsertTemporal,
    AppendAttrsTemporal,
    DeleteAttrsTemporal,
    UpdateAttrInstanceTemporal,
    DeleteAttrInstanceTemporal,
    DeleteTemporal,
    /// §5.6.17 Merge Entity.
    MergeEntity,
    /// §5.6.18 Replace Entity.
    ReplaceEntity,
    /// §5.6.19 Replace Attribute.
    ReplaceAttrs,
    MergeBatch,
    PurgeEntity,
    /// §5.7.1 Retrieve Entity.
    RetrieveEntity,
    /// §5.7.2 Query Entities.
    QueryEntity,
    /// §5.7.2 through POST /entityOperations/query.
    QueryBatch,
    RetrieveTemporal,
    QueryTemporal,
    RetrieveEntityTypes,
    RetrieveEntityTypeDetails,
    RetrieveEntityTypeInfo,
    RetrieveAttrTypes,
    RetrieveAttrTypeDetails,
    RetrieveAttrTypeInfo,
    CreateSubscription,
    UpdateSubscription,
    RetrieveSubscription,
    QuerySubscription,
    DeleteSubscription,
    RetrieveEntityMap,
    UpdateEntityMap,
    DeleteEntityMap,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 40] = [
        Op::CreateEntity,
        Op::UpdateEntity,
        Op::AppendAttrs,
        Op::UpdateAttrs,
        Op::DeleteAttrs,
        Op::DeleteEntity,
        Op::CreateBatch,
        Op::UpsertBatch,
        Op::UpdateBatch,
        Op::DeleteBatch,
        Op::UpsertTemporal,
        Op::AppendAttrsTemporal,
        Op::DeleteAttrsTemporal,
        Op::UpdateAttrInstanceTemporal,
        Op::DeleteAttrInstanceTemporal,
        Op::DeleteTemporal,
        Op::MergeEntity,
        Op::ReplaceEntity,
        Op::ReplaceAttrs,
        Op::MergeBatch,
        Op::PurgeEntity,
        Op::RetrieveEntity,
        Op::QueryEntity,
        Op::QueryBatch,
        Op::RetrieveTemporal,
        Op::QueryTemporal,
        Op::RetrieveEntityTypes,
        Op::RetrieveEntityTypeDetails,
        Op::RetrieveEntityTypeInfo,
        Op::RetrieveAttrTypes,
        Op::RetrieveAttrTypeDetails,
        Op::RetrieveAttrTypeInfo,
        Op::CreateSubscription,
        Op::UpdateSubscription,
        Op::RetrieveSubscription,
        Op::QuerySubscription,
        Op::DeleteSubscription,
        Op::RetrieveEntityMap,
        Op::UpdateEntityMap,
        Op::DeleteEntityMap,
    ];

    /// The name of Table 4.20-1.
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateEntity => "createEntity",
            Op::UpdateEntity => "updateEntity",
            Op::AppendAttrs => "appendAttrs",
            Op::UpdateAttrs => "updateAttrs",
            Op::DeleteAttrs => "deleteAttrs",
            Op::DeleteEntity => "deleteEntity",
            Op::CreateBatch => "createBatch",
            Op::UpsertBatch => "upsertBatch",
            Op::UpdateBatch => "updateBatch",
            Op::DeleteBatch => "deleteBatch",
            Op::UpsertTemporal => "upsertTemporal",
            Op::AppendAttrsTemporal => "appendAttrsTemporal",
            Op::DeleteAttrsTemporal => "deleteAttrsTemporal",
            Op::UpdateAttrInstanceTemporal => "updateAttrInstanceTemporal",
            Op::DeleteAttrInstanceTemporal => "deleteAttrInstanceTemporal",
            Op::DeleteTemporal => "deleteTemporal",
            Op::MergeEntity => "mergeEntity",
            Op::ReplaceEntity => "replaceEntity",
            Op::ReplaceAttrs => "replaceAttrs",
            Op::MergeBatch => "mergeBatch",
            Op::PurgeEntity => "purgeEntity",
            Op::RetrieveEntity => "retrieveEntity",
            Op::QueryEntity => "queryEntity",
            Op::QueryBatch => "queryBatch",
            Op::RetrieveTemporal => "retrieveTemporal",
            Op::QueryTemporal => "queryTemporal",
            Op::RetrieveEntityTypes => "retrieveEntityTypes",
            Op::RetrieveEntityTypeDetails => "retrieveEntityTypeDetails",
            Op::RetrieveEntityTypeInfo => "retrieveEntityTypeInfo",
            Op::RetrieveAttrTypes => "retrieveAttrTypes",
            Op::RetrieveAttrTypeDetails => "retrieveAttrTypeDetails",
            Op::RetrieveAttrTypeInfo => "retrieveAttrTypeInfo",
            Op::CreateSubscription => "createSubscription",
            Op::UpdateSubscription => "updateSubscription",
            Op::RetrieveSubscription => "retrieveSubscription",
            Op::QuerySubscription => "querySubscription",
            Op::DeleteSubscription => "deleteSubscription",
            Op::RetrieveEntityMap => "retrieveEntityMap",
            Op::UpdateEntityMap => "updateEntityMap",
            Op::DeleteEntityMap => "deleteEntityMap",
        }
    }

    /// An operation by name; Orion-LD's spellings `updateAttrsTemporal` and `replaceAttr` are
    /// accepted too.
    pub fn from_name(s: &str) -> Option<Op> {
        match s {
            "updateAttrsTemporal" => Some(Op::UpdateAttrInstanceTemporal),
            "replaceAttr" => Some(Op::ReplaceAttrs),
            _ => Op::ALL.into_iter().find(|o| o.name() == s),
        }
    }

    fn bit(self) -> u64 {
        1 << (self as u64)
    }
}

/// A set of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpSet(u64);

impl OpSet {
    pub const fn empty() -> OpSet {
        OpSet(0)
    }

    pub fn of(ops: &[Op]) -> OpSet {
        OpSet(ops.iter().fold(0, |m, o| m | o.bit()))
    }

    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }

    pub fn union(self, other: OpSet) -> OpSet {
        OpSet(self.0 | other.0)
    }

    /// Whether every operation of `self` is in `other`.
    pub fn is_subset(self, other: OpSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |o| self.contains(*o))
    }

    /// `federationOps` (Table 4.20-2): the consumption operations and subscriptions.
    pub fn federation() -> OpSet {
        OpSet::association().union(OpSet::of(&[Op::RetrieveEntityMap, Op::UpdateEntityMap, Op::DeleteEntityMap]))
    }

    /// `associationOps`: what `federationOps` holds but the EntityMap operations.
    pub fn association() -> OpSet {
        OpSet::of(&[
            Op::RetrieveEntity,
            Op::QueryEntity,
            Op::QueryBatch,
            Op::RetrieveEntityTypes,
            Op::RetrieveEntityTypeDetails,
            Op::RetrieveEntityTypeInfo,
            Op::RetrieveAttrTypes,
            Op::RetrieveAttrTypeDetails,
            Op::RetrieveAttrTypeInfo,
            Op::CreateSubscription,
            Op::UpdateSubscription,
            Op::RetrieveSubscription,
            Op::QuerySubscription,
            Op::DeleteSubscription,
        ])
    }

    /// `updateOps`: the four update operations of Table 4.20-2 (IoT agents register commands
    /// with it). Merge and append are not in it.
    pub fn update() -> OpSet {
        OpSet::of(&[Op::UpdateEntity, Op::UpdateAttrs, Op::ReplaceEntity, Op::ReplaceAttrs])
    }

    /// `retrieveOps`: Retrieve Entity and Query Entities.
    pub fn retrieve() -> OpSet {
        OpSet::of(&[Op::RetrieveEntity, Op::QueryEntity])
    }

    /// `redirectionOps`: every single-entity provision and consumption operation and discovery.
    pub fn redirection() -> OpSet {
        OpSet::of(&[
            Op::CreateEntity,
            Op::UpdateEntity,
            Op::AppendAttrs,
            Op::UpdateAttrs,
            Op::DeleteAttrs,
            Op::DeleteEntity,
            Op::MergeEntity,
            Op::ReplaceEntity,
            Op::ReplaceAttrs,
            Op::RetrieveEntity,
            Op::QueryEntity,
            Op::PurgeEntity,
            Op::RetrieveEntityTypes,
            Op::RetrieveEntityTypeDetails,
            Op::RetrieveEntityTypeInfo,
            Op::RetrieveAttrTypes,
            Op::RetrieveAttrTypeDetails,
            Op::RetrieveAttrTypeInfo,
            Op::RetrieveEntityMap,
            Op::UpdateEntityMap,
            Op::DeleteEntityMap,
        ])
    }

    /// A group or a single operation by name.
    pub fn from_name(s: &str) -> Option<OpSet> {
        match s {
            "federationOps" => Some(OpSet::federation()),
            "associationOps" => Some(OpSet::association()),
            "updateOps" => Some(OpSet::update()),
            "retrieveOps" => Some(OpSet::retrieve()),
            "redirectionOps" => Some(OpSet::redirection()),
            other => Op::from_name(other).map(|o| OpSet::of(&[o])),
        }
    }
}

/// A `[startAt, endAt)` interval (§5.2.11 TimeInterval); no `endAt` = open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: i64,
    pub end: Option<i64>,
}

/// A temporal relation of a discovery query (§4.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    Before(i64),
    After(i64),
    Between(i64, i64),
}

impl Interval {
    /// Whether part of the interval lies in the time the relation names.
    pub fn meets(&self, rel: TimeRel) -> bool {
        match rel {
            TimeRel::Before(t) => self.start < t,
            TimeRel::After(t) => self.end.is_none_or(|e| e > t),
            TimeRel::Between(a, b) => self.start < b && self.end.is_none_or(|e| e > a),
        }
    }
}

/// One EntityInfo (§5.2.8): an entity id or an id pattern (or neither: every entity) of the
/// given types. Types are expanded.
#[derive(Debug, Clone)]
pub struct EntityInfo {
    pub id: Option<String>,
    /// Ignored when `id` is given.
    pub id_pattern: Option<Regex>,
    pub types: Vec<String>,
}

impl EntityInfo {
    /// Whether an entity with this id (`None`: any id, as for a query) and these expanded
    /// types (empty: type unknown) may be one this EntityInfo describes.
    pub fn matches(&self, entity_id: Option<&str>, types: &[String]) -> bool {
        let id_ok = match (entity_id, &self.id, &self.id_pattern) {
            (None, _, _) | (Some(_), None, None) => true,
            (Some(e), Some(id), _) => e == id,
            (Some(e), None, Some(p)) => p.is_match(e),
        };
        id_ok && (types.is_empty() || self.types.iter().any(|t| types.contains(t)))
    }

    /// Whether an entity selector (of a discovery query or a context source registration
    /// subscription) may describe some entity of this info: its types select one of the info's
    /// types, and its ids (any of) or its pattern fit the info's id or pattern. A registered
    /// pattern, or no id at all, is assumed to describe some id the selector names.
    pub fn meets(&self, ids: Option<&[String]>, id_pattern: Option<&Regex>, types: Option<&types::TypeSel>) -> bool {
        if let Some(sel) = types
            && !sel.matches(&self.types)
        {
            return false;
        }
        if let Some(ids) = ids {
            let ok = match (&self.id, &self.id_pattern) {
                (Some(id), _) => ids.contains(id),
                (None, Some(p)) => ids.iter().any(|i| p.is_match(i)),
                (None, None) => true,
            };
            if !ok {
                return false;
            }
        }
        // Only a registered id can be tested against the selector's pattern.
        !matches!((id_pattern, &self.id), (Some(p), Some(id)) if !p.is_match(id))
    }

    /// Whether some entity may be described by both (used for proxied-registration conflicts).
    fn overlaps(&self, other: &EntityInfo) -> bool {
        if !self.types.iter().any(|t| other.types.contains(t)) {
            return false;
        }
        match (&self.id, &other.id) {
            (Some(a), Some(b)) => a == b,
            (Some(a), None) => other.id_pattern.as_ref().is_none_or(|p| p.is_match(a)),
            (None, Some(b)) => self.id_pattern.as_ref().is_none_or(|p| p.is_match(b)),
            // Two patterns: whether they share a match is not decidable cheaply; assume they do.
            (None, None) => true,
        }
    }
}

/// One RegistrationInfo (§5.2.10) with expanded names. Empty `entities`: any entity; no names
/// at all: every attribute.
#[derive(Debug, Clone, Default)]
pub struct RegInfo {
    pub entities: Vec<EntityInfo>,
    pub property_names: Vec<String>,
    pub relationship_names: Vec<String>,
}

impl RegInfo {
    /// Whether the info may describe an entity with this id and these types (see
    /// [`EntityInfo::matches`]).
    pub fn matches_entity(&self, entity_id: Option<&str>, types: &[String]) -> bool {
        self.entities.is_empty() || self.entities.iter().any(|e| e.matches(entity_id, types))
    }

    /// Whether the info names no attribute (so it stands for all of them).
    pub fn all_attrs(&self) -> bool {
        self.property_names.is_empty() && self.relationship_names.is_empty()
    }

    /// The attribute names (properties, then relationships).
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.property_names.iter().chain(&self.relationship_names)
    }

    /// Whether the info covers any of `attrs` (`None`: no restriction).
    pub fn covers_any(&self, attrs: Option<&[String]>) -> bool {
        match attrs {
            None => true,
            Some(a) => self.all_attrs() || self.names().any(|n| a.contains(n)),
        }
    }

    fn attrs_overlap(&self, other: &RegInfo) -> bool {
        self.all_attrs() || other.all_attrs() || self.names().any(|n| other.names().any(|m| m == n))
    }

    fn overlaps(&self, other: &RegInfo) -> bool {
        let entities = self.entities.is_empty()
            || other.entities.is_empty()
            || self.entities.iter().any(|a| other.entities.iter().any(|b| a.overlaps(b)));
        entities && self.attrs_overlap(other)
    }
}

/// The `management` member (§5.2.34 RegistrationManagementInfo).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Management {
    pub local_only: bool,
    /// Seconds.
    pub cache_duration: Option<f64>,
    /// Milliseconds.
    pub timeout: Option<f64>,
    /// Milliseconds.
    pub cooldown: Option<f64>,
}

/// A registration compiled for lookups.
#[derive(Debug)]
pub struct CompiledRegistration {
    pub id: String,
    pub tenant: String,
    /// Where the source's NGSI-LD API is (the base URL the forwarding layer appends paths to).
    pub endpoint: String,
    pub mode: Mode,
    /// What the source serves (groups expanded; the default `federationOps`, `retrieveOps` for
    /// an auxiliary registration without `operations`).
    pub operations: OpSet,
    pub information: Vec<RegInfo>,
    pub expires_at: Option<i64>,
    pub observation_interval: Option<Interval>,
    pub management_interval: Option<Interval>,
    pub scope: Option<Vec<String>>,
    /// `contextSourceInfo` pairs (headers to send, `jsonldContext`, …).
    pub context_source_info: Vec<(String, String)>,
    /// The tenant to use at the source (the `tenant` member).
    pub remote_tenant: Option<String>,
    pub management: Management,
    /// The client's `@context` when it registered (`null` = core only).
    pub context: Value,
    pub created_at: i64,
    /// The order of registration among those created in the same millisecond (set by the
    /// registry; oldest first means by `created_at`, then by this).
    pub seq: u64,
    /// The registration's properties as an entity (expanded names; GeoProperties for
    /// `location`, `observationSpace`, `operationSpace`) for `q`, `csf`, `scopeQ` and geo-queries.
    pub props: Entity,
}

impl CompiledRegistration {
    /// Whether the registration is in force at `now` (not expired).
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    /// Whether the source provides latest information at `now`: live, and its
    /// `observationInterval`, if any, has not ended (a source about the past only is not asked
    /// about current state).
    pub fn current(&self, now: i64) -> bool {
        self.live(now) && self.observation_interval.is_none_or(|i| i.end.is_none_or(|e| e > now))
    }

    /// Whether it serves `op` for an entity with this id and types and any of `attrs` (see
    /// [`super::Registrations::matching`]).
    pub fn serves(&self, op: Op, entity_id: Option<&str>, types: &[String], attrs: Option<&[String]>) -> bool {
        self.operations.contains(op)
            && self.information.iter().any(|i| i.matches_entity(entity_id, types) && i.covers_any(attrs))
    }

    /// The attributes (expanded) this registration provides for the entity: `None` when it
    /// provides all of them (an information item naming no attribute matches), else the union
    /// of the names of the matching information items (empty when none matches).
    pub fn attributes_for(&self, entity_id: Option<&str>, types: &[String]) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for i in self.information.iter().filter(|i| i.matches_entity(entity_id, types)) {
            if i.all_attrs() {
                return None;
            }
            for n in i.names() {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        Some(out)
    }

    /// The entity ids the registration names for entities of these types (empty types: any),
    /// or `None` when a matching information item is about a pattern, a type or any entity, so
    /// that a query forwarded to the source cannot be narrowed to ids.
    pub fn ids_for(&self, types: &[String]) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for i in self.information.iter().filter(|i| i.matches_entity(None, types)) {
            if i.entities.is_empty() {
                return None;
            }
            for e in i.entities.iter().filter(|e| e.matches(None, types)) {
                let id = e.id.as_ref()?;
                if !out.contains(id) {
                    out.push(id.clone());
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether two registrations may cover the same attribute of the same entity.
    pub fn overlaps(&self, other: &CompiledRegistration) -> bool {
        self.information.iter().any(|a| other.information.iter().any(|b| a.overlaps(b)))
    }

    /// The expanded entity types the registration names.
    pub fn types(&self) -> impl Iterator<Item = &String> {
        self.information.iter().flat_map(|i| i.entities.iter().flat_map(|e| e.types.iter()))
    }

    /// Whether some information item names no entity (it may be about any entity type).
    pub fn untyped(&self) -> bool {
        self.information.iter().any(|i| i.entities.is_empty())
    }
}

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

/// The members of §5.2.9 (besides `id` and `type`); any other member is a Context Source
/// Property, stored under its expanded name.
const MEMBERS: &[&str] = &[
    "registrationName",
    "description",
    "information",
    "tenant",
    "observationInterval",
    "managementInterval",
    "location",
    "observationSpace",
    "operationSpace",
    "expiresAt",
    "endpoint",
    "contextSourceInfo",
    "scope",
    "mode",
    "operations",
    "refreshRate",
    "management",
];

/// Members the broker sets, dropped from client bodies.
const READ_ONLY: &[&str] =
    &["createdAt", "modifiedAt", "status", "timesSent", "timesFailed", "lastSuccess", "lastFailure", "@context"];

/// Applies `f` to the names of a string or an array of strings.
fn map_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(items) => {
            for i in items {
                if let Value::String(s) = i {
                    *s = f(s);
                }
            }
        }
        _ => {}
    }
}

/// Rewrites the names a registration holds with `f`: entity types, property and relationship
/// names, and the names of Context Source Properties.
fn map_names(body: Map<String, Value>, f: &dyn Fn(&str) -> String) -> Map<String, Value> {
    let mut out = Map::with_capacity(body.len());
    for (k, mut v) in body {
        if k == "information"
            && let Value::Array(items) = &mut v
        {
            for info in items.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::Array(ents)) = info.get_mut("entities") {
                    for e in ents.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(t) = e.get_mut("type") {
                            map_strings(t, f);
                        }
                    }
                }
                for n in ["propertyNames", "relationshipNames"] {
                    if let Some(names) = info.get_mut(n) {
                        map_strings(names, f);
                    }
                }
            }
        }
        let k = if k == "id" || k == "type" || MEMBERS.contains(&k.as_str()) { k } else { f(&k) };
        out.insert(k, v);
    }
    out
}

/// Checks the names a client gives before they are expanded.
fn check_names(body: &Map<String, Value>) -> NgsiResult<()> {
    let name_ok = |n: &str| valid_name(n) || is_uri(n);
    for (k, v) in body {
        if !MEMBERS.contains(&k.as_str()) && k != "id" && k != "type" && !name_ok(k) {
            return Err(bad(format!("{k:?} is not a valid member name")));
        }
        if k != "information" {
            continue;
        }
        for info in v.as_array().into_iter().flatten().filter_map(Value::as_object) {
            for n in ["propertyNames", "relationshipNames"] {
                for name in info.get(n).and_then(Value::as_array).into_iter().flatten() {
                    if let Some(s) = name.as_str()
                        && !name_ok(s)
                    {
                        return Err(bad(format!("information[].{n} holds an invalid attribute name {s:?}")));
                    }
                }
            }
            for e in info.get("entities").and_then(Value::as_array).into_iter().flatten() {
                let names: Vec<&str> = match e.get("type") {
                    Some(Value::String(s)) => vec![s.as_str()],
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if let Some(t) = names.into_iter().find(|t| !name_ok(t)) {
                    return Err(bad(format!("information[].entities[].type {t:?} is not a valid type name")));
                }
            }
        }
    }
    Ok(())
}

/// The body to store: read-only members dropped, `type` normalised, names checked and expanded
/// with the client's context.
pub fn normalize(mut body: Map<String, Value>, ctx: &Context) -> NgsiResult<Map<String, Value>> {
    body.retain(|k, _| !READ_ONLY.contains(&k.as_str()));
    if let Some(t) = body.get_mut("type")
        && t.as_str().is_some_and(|s| ctx.expand(s) == CORE.expand(REG_TYPE))
    {
        *t = json!(REG_TYPE);
    }
    check_names(&body)?;
    Ok(map_names(body, &|n| ctx.expand(n)))
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

fn datetime(v: &Value, what: &str) -> NgsiResult<i64> {
    v.as_str().and_then(parse_datetime).ok_or_else(|| bad(format!("{what} must be a DateTime")))
}

fn interval(v: &Value, what: &str) -> NgsiResult<Interval> {
    let o = v.as_object().ok_or_else(|| bad(format!("{what} must be an object with startAt and endAt")))?;
    let start =
        datetime(o.get("startAt").ok_or_else(|| bad(format!("{what} needs startAt")))?, &format!("{what}.startAt"))?;
    let end = o.get("endAt").map(|e| datetime(e, &format!("{what}.endAt"))).transpose()?;
    if end.is_some_and(|e| e < start) {
        return Err(bad(format!("{what}.endAt is before its startAt")));
    }
    Ok(Interval { start, end })
}

/// Reads an ISO 8601 duration (`PnYnMnWnDTnHnMnS`, fractional seconds allowed) as seconds
/// (years and months counted as 365 and 30 days).
pub fn parse_duration(s: &str) -> Option<f64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    let mut any = false;
    let mut read = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let pos = units.iter().position(|(u, _)| *u == c)?;
            if pos < next_unit || num.is_empty() {
                return None;
            }
            let n: f64 = num.parse().ok()?;
            total += n * units[pos].1;
            any = true;
            num.clear();
            next_unit = pos + 1;
        }
        num.is_empty().then_some(())
    };
    read(date, &[('Y', 365.0 * 86400.0), ('M', 30.0 * 86400.0), ('W', 7.0 * 86400.0), ('D', 86400.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        read(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    any.then_some(total)
}

fn positive(v: &Value, what: &str) -> NgsiResult<f64> {
    match v.as_f64() {
        Some(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(bad(format!("{what} must be a number greater than 0"))),
    }
}

fn management(v: &Value) -> NgsiResult<Management> {
    let o = v.as_object().ok_or_else(|| bad("management must be an object"))?;
    let local_only = match o.get("localOnly") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("management.localOnly must be a boolean")),
    };
    let cache_duration = match o.get("cacheDuration") {
        None => None,
        Some(Value::String(s)) => {
            Some(parse_duration(s).ok_or_else(|| bad("management.cacheDuration must be an ISO 8601 duration"))?)
        }
        Some(_) => return Err(bad("management.cacheDuration must be an ISO 8601 duration")),
    };
    let timeout = o.get("timeout").map(|t| positive(t, "management.timeout")).transpose()?;
    let cooldown = o.get("cooldown").map(|t| positive(t, "management.cooldown")).transpose()?;
    Ok(Management { local_only, cache_duration, timeout, cooldown })
}

fn key_values(v: &Value) -> NgsiResult<Vec<(String, String)>> {
    let items = v.as_array().ok_or_else(|| bad("contextSourceInfo must be an array of {key, value} objects"))?;
    items
        .iter()
        .map(|i| match (i.get("key").and_then(Value::as_str), i.get("value").and_then(Value::as_str)) {
            (Some(k), Some(v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(bad("contextSourceInfo entries need a string key and a string value")),
        })
        .collect()
}

fn entity_info(v: &Value) -> NgsiResult<EntityInfo> {
    let o = v.as_object().ok_or_else(|| bad("each information[].entities item must be an object"))?;
    let types = match o.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.clone()],
        Some(a @ Value::Array(_)) => string_list(a, "information[].entities[].type")?,
        Some(_) => return Err(bad("information[].entities[].type must be a type name")),
        None => return Err(bad("each information[].entities item needs a type")),
    };
    let id = match o.get("id") {
        None => None,
        Some(Value::String(i)) if is_uri(i) => Some(i.clone()),
        Some(_) => return Err(bad("information[].entities[].id must be a URI")),
    };
    let id_pattern =
        match o.get("idPattern") {
            None => None,
            Some(Value::String(p)) => Some(pattern::compile(p).map_err(|e| {
                bad(format!("information[].entities[].idPattern is not a valid regular expression: {e}"))
            })?),
            Some(_) => return Err(bad("information[].entities[].idPattern must be a string")),
        };
    Ok(EntityInfo { id, id_pattern, types })
}

fn reg_info(v: &Value) -> NgsiResult<RegInfo> {
    let o = v.as_object().ok_or_else(|| bad("each information item must be an object"))?;
    let entities = match o.get("entities") {
        None => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() => a.iter().map(entity_info).collect::<NgsiResult<_>>()?,
        Some(_) => return Err(bad("information[].entities must be a non-empty array")),
    };
    let names = |k: &str| -> NgsiResult<Vec<String>> {
        o.get(k).map(|v| string_list(v, &format!("information[].{k}"))).transpose().map(Option::unwrap_or_default)
    };
    let info =
        RegInfo { entities, property_names: names("propertyNames")?, relationship_names: names("relationshipNames")? };
    if info.entities.is_empty() && info.all_attrs() {
        return Err(bad("an information item needs entities, propertyNames or relationshipNames"));
    }
    Ok(info)
}

fn geometry(v: &Value, what: &str) -> NgsiResult<()> {
    crate::model::geo::validate_geometry(v).map_err(|e| bad(format!("{what} is not a valid GeoJSON geometry: {e}")))
}

/// The value a member contributes to the properties entity: an NGSI-LD Property object gives
/// its value, anything else is the value itself.
fn prop_value(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Property") && o.contains_key("value") => {
            &o["value"]
        }
        other => other,
    }
}

/// Compiles (and so validates) a stored registration body: names already expanded.
pub fn compile(
    doc_id: &str,
    tenant: &str,
    body: &Map<String, Value>,
    context: Value,
    created_at: i64,
) -> NgsiResult<CompiledRegistration> {
    match body.get("type") {
        Some(Value::String(t)) if t == REG_TYPE => {}
        Some(_) => return Err(bad(format!("the type of a registration must be \"{REG_TYPE}\""))),
        None => return Err(bad(format!("a registration needs \"type\": \"{REG_TYPE}\""))),
    }
    for k in ["registrationName", "description", "tenant"] {
        if body.get(k).is_some_and(|v| v.as_str().is_none_or(str::is_empty)) {
            return Err(bad(format!("{k} must be a non-empty string")));
        }
    }
    let information: Vec<RegInfo> = match body.get("information") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().map(reg_info).collect::<NgsiResult<_>>()?,
        Some(_) => return Err(bad("information must be a non-empty array of RegistrationInfo")),
        None => return Err(bad("a registration needs information")),
    };
    let endpoint = match body.get("endpoint") {
        Some(Value::String(u)) if is_uri(u) => u.clone(),
        Some(_) => return Err(bad("endpoint must be a URI")),
        None => return Err(bad("a registration needs an endpoint")),
    };
    let observation_interval =
        body.get("observationInterval").map(|v| interval(v, "observationInterval")).transpose()?;
    let management_interval = body.get("managementInterval").map(|v| interval(v, "managementInterval")).transpose()?;
    for k in ["location", "observationSpace", "operationSpace"] {
        if let Some(g) = body.get(k) {
            geometry(g, k)?;
        }
    }
    let expires_at = body.get("expiresAt").map(|v| datetime(v, "expiresAt")).transpose()?;
    let context_source_info = body.get("contextSourceInfo").map(key_values).transpose()?.unwrap_or_default();
    let scope = body.get("scope").map(parse_scope).transpose()?;
    let mode = body.get("mode").map(Mode::parse).transpose()?.unwrap_or(Mode::Inclusive);
    let operations = match body.get("operations") {
        None if mode == Mode::Auxiliary => OpSet::retrieve(),
        None => OpSet::federation(),
        Some(v) => {
            let mut set = OpSet::empty();
            for name in string_list(v, "operations")? {
                set = set.union(OpSet::from_name(&name).ok_or_else(|| {
                    bad(format!("{name:?} is not an operation name or operation group of GS CIM 009 §4.20"))
                })?);
            }
            set
        }
    };
    if let Some(r) = body.get("refreshRate")
        && r.as_str().is_none_or(|s| parse_duration(s).is_none())
    {
        return Err(bad("refreshRate must be an ISO 8601 duration"));
    }
    let mut management = body.get("management").map(management).transpose()?.unwrap_or_default();
    // Some clients (and the ETSI suite, 436_04) give `localOnly` as a member of the
    // registration itself rather than of its management info; a boolean true there counts too.
    let flag = |v: Option<&Value>| v == Some(&Value::Bool(true));
    if flag(body.get("localOnly")) || flag(body.get("https://uri.etsi.org/ngsi-ld/localOnly")) {
        management.local_only = true;
    }
    // §4.3.6.3: an exclusive registration is about specific attributes of specific entities.
    if mode == Mode::Exclusive {
        for i in &information {
            if i.entities.is_empty() || i.entities.iter().any(|e| e.id.is_none()) {
                return Err(bad(
                    "an exclusive registration names entity ids (an idPattern or a type alone is not allowed)",
                ));
            }
            if i.all_attrs() {
                return Err(bad("an exclusive registration names the attributes it takes over"));
            }
        }
    }
    // §5.9.2.4: an auxiliary source only answers retrievals.
    if mode == Mode::Auxiliary && !operations.is_subset(OpSet::retrieve()) {
        return Err(bad("an auxiliary registration only allows retrieveOps, retrieveEntity and queryEntity"));
    }
    let props = properties(doc_id, body, created_at);
    Ok(CompiledRegistration {
        id: doc_id.to_owned(),
        tenant: tenant.to_owned(),
        endpoint,
        mode,
        operations,
        information,
        expires_at,
        observation_interval,
        management_interval,
        scope,
        context_source_info,
        remote_tenant: body.get("tenant").and_then(Value::as_str).map(str::to_owned),
        management,
        context,
        created_at,
        seq: 0,
        props,
    })
}

/// The registration's own properties as an entity: core members under their core IRIs, Context
/// Source Properties under their stored (expanded) names, geometries as GeoProperties.
fn properties(id: &str, body: &Map<String, Value>, now: i64) -> Entity {
    let mut e = Entity {
        id: id.into(),
        types: [crate::model::intern(&CORE.expand(REG_TYPE))].into_iter().collect(),
        scope: body.get("scope").and_then(|s| parse_scope(s).ok()).map(Box::new),
        attrs: Default::default(),
        created_at: now,
        modified_at: now,
    };
    for (k, v) in body {
        if matches!(k.as_str(), "id" | "type" | "information" | "scope") {
            continue;
        }
        let kind = if matches!(k.as_str(), "location" | "observationSpace" | "operationSpace") {
            AttrKind::GeoProperty
        } else {
            AttrKind::Property
        };
        let name = if MEMBERS.contains(&k.as_str()) { CORE.expand(k) } else { k.clone() };
        e.put_instance(&name, Attribute::new(kind, prop_value(v), now));
    }
    if !body.contains_key("mode") {
        e.put_instance(&CORE.expand("mode"), Attribute::new(AttrKind::Property, &json!("inclusive"), now));
    }
    e
}

/// The registration as a client sees it: the members given (names compacted with the request's
/// context), the default `mode` and `operations`, the status members once the forwarding layer
/// has used the source, and `createdAt`/`modifiedAt` with `sysAttrs`.
pub fn render(doc: &RegDoc, c: &CompiledRegistration, ctx: &Context, sys_attrs: bool) -> Value {
    let body = map_names(doc.body.clone(), &|n| ctx.compact(n));
    let mut out = Map::new();
    out.insert("id".into(), json!(doc.id));
    out.insert("type".into(), json!(REG_TYPE));
    for (k, v) in body {
        if !matches!(k.as_str(), "id" | "type") {
            out.insert(k, v);
        }
    }
    if !out.contains_key("mode") {
        out.insert("mode".into(), json!(c.mode.name()));
    }
    if !out.contains_key("operations") {
        let group = if c.mode == Mode::Auxiliary { "retrieveOps" } else { "federationOps" };
        out.insert("operations".into(), json!([group]));
    }
    let s = &doc.stats;
    if s.times_sent > 0 {
        out.insert("status".into(), json!(if s.consecutive_errors == 0 { "ok" } else { "failed" }));
        out.insert("timesSent".into(), json!(s.times_sent));
        out.insert("timesFailed".into(), json!(s.times_failed));
    }
    if let Some(t) = s.last_success {
        out.insert("lastSuccess".into(), json!(format_millis(t)));
    }
    if let Some(t) = s.last_failure {
        out.insert("lastFailure".into(), json!(format_millis(t)));
    }
    if sys_attrs {
        out.insert("createdAt".into(), json!(format_millis(doc.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(doc.modified_at)));
    }
    Value::Object(out)
}

/// A compiled Query Context Source Registrations request (§5.10.2): every part given must hold.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Entity ids the registration must be able to provide (any of).
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<Regex>,
    pub types: Option<types::TypeSel>,
    /// Expanded attribute names (any of).
    pub attrs: Option<Vec<String>>,
    /// `q` and `csf`, both over the registration's properties.
    pub q: Option<q::Query>,
    pub csf: Option<q::Query>,
    pub scope: Option<scope::ScopeQ>,
    /// A geo-query on `location`, `observationSpace` or `operationSpace`.
    pub geo: Option<geo::ResolvedGeo>,
    /// A temporal query on the observation interval (`timeproperty=observedAt`, the default)
    /// or the management interval (`createdAt`, `modifiedAt`).
    pub time: Option<(TimeRel, bool)>,
}

impl Discovery {
    /// Whether the request restricts anything (a query without any filter is refused).
    pub fn is_unrestricted(&self) -> bool {
        self.ids.is_none()
            && self.id_pattern.is_none()
            && self.types.is_none()
            && self.attrs.is_none()
            && self.q.is_none()
            && self.csf.is_none()
            && self.scope.is_none()
            && self.geo.is_none()
            && self.time.is_none()
    }

    fn entity_matches(&self, e: &EntityInfo) -> bool {
        e.meets(self.ids.as_deref(), self.id_pattern.as_ref(), self.types.as_ref())
    }

    fn info_matches(&self, i: &RegInfo) -> bool {
        let entities_ok = i.entities.is_empty() || i.entities.iter().any(|e| self.entity_matches(e));
        entities_ok && i.covers_any(self.attrs.as_deref())
    }

    /// Whether the registration answers the query at `now`: expired registrations never do, and
    /// without a temporal query only those providing latest information do (§5.10.2.4).
    pub fn matches(&self, c: &CompiledRegistration, now: i64) -> bool {
        if !c.live(now) || (self.time.is_none() && !c.current(now)) {
            return false;
        }
        if (self.ids.is_some() || self.id_pattern.is_some() || self.types.is_some() || self.attrs.is_some())
            && !c.information.iter().any(|i| self.info_matches(i))
        {
            return false;
        }
        if let Some((rel, observation)) = self.time {
            let iv = if observation { c.observation_interval } else { c.management_interval };
            if !iv.is_some_and(|i| i.meets(rel)) {
                return false;
            }
        }
        self.q.as_ref().is_none_or(|q| q.matches(&c.props))
            && self.csf.as_ref().is_none_or(|q| q.matches(&c.props))
            && self.scope.as_ref().is_none_or(|s| s.matches(c.props.scopes()))
            && self.geo.as_ref().is_none_or(|g| g.matches(&c.props))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(body: Value) -> NgsiResult<CompiledRegistration> {
        let mut b = body.as_object().unwrap().clone();
        b.insert("type".into(), json!(REG_TYPE));
        b.entry("endpoint").or_insert(json!("http://source.example.org"));
        b.entry("information").or_insert(json!([{"entities": [{"type": "T"}]}]));
        let b = normalize(b, &CORE)?;
        compile("urn:r:1", "", &b, Value::Null, 0)
    }

    fn err(body: Value) -> String {
        compiled(body).expect_err("the registration should be refused").detail
    }

    #[test]
    fn durations_are_iso_8601() {
        assert_eq!(parse_duration("PT5M"), Some(300.0));
        assert_eq!(parse_duration("P1DT1H0.5S"), Some(90_000.5));
        assert_eq!(parse_duration("P2W"), Some(1_209_600.0));
        for bad in ["", "P", "PT", "5M", "PT5", "PM5", "P1H", "PT1D", "bogus", "PT1M2H"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn operation_groups_expand_to_their_members() {
        let set = |s: &str| OpSet::from_name(s).unwrap();
        assert!(set("updateOps").contains(Op::UpdateAttrs) && !set("updateOps").contains(Op::MergeEntity));
        assert!(set("retrieveOps").is_subset(set("federationOps")));
        assert!(set("retrieveOps").is_subset(set("redirectionOps")));
        assert!(!set("federationOps").contains(Op::CreateEntity));
        assert_eq!(set("replaceAttr"), set("replaceAttrs"));
        assert!(OpSet::from_name("fly").is_none());
        assert_eq!(Op::ALL.iter().filter(|o| Op::from_name(o.name()) == Some(**o)).count(), Op::ALL.len());
        let c = compiled(json!({"operations": ["retrieveOps", "createEntity"]})).unwrap();
        assert_eq!(c.operations.iter().collect::<Vec<_>>(), [Op::CreateEntity, Op::RetrieveEntity, Op::QueryEntity]);
        assert_eq!(compiled(json!({})).unwrap().operations, OpSet::federation());
    }

    #[test]
    fn intervals_meet_temporal_relations() {
        let i = Interval { start: 10, end: Some(20) };
        assert!(i.meets(TimeRel::Before(11)) && !i.meets(TimeRel::Before(10)));
        assert!(i.meets(TimeRel::After(19)) && !i.meets(TimeRel::After(20)));
        assert!(i.meets(TimeRel::Between(0, 11)) && i.meets(TimeRel::Between(19, 30)));
        assert!(!i.meets(TimeRel::Between(20, 30)) && !i.meets(TimeRel::Between(0, 10)));
        assert!(Interval { start: 10, end: None }.meets(TimeRel::After(1_000)));
    }

    #[test]
    fn invalid_registrations_are_refused() {
        assert!(err(json!({"information": []})).contains("information"));
        assert!(err(json!({"information": [{}]})).contains("information item"));
        assert!(err(json!({"information": [{"entities": [{"id": "urn:x:1"}]}]})).contains("type"));
        assert!(err(json!({"information": [{"entities": [{"type": "T", "id": "not a uri"}]}]})).contains("URI"));
        assert!(err(json!({"information": [{"entities": [{"type": "T", "idPattern": "a**"}]}]})).contains("idPattern"));
        assert!(err(json!({"information": [{"propertyNames": ["a b"]}]})).contains("invalid attribute name"));
        assert!(err(json!({"endpoint": "no uri"})).contains("endpoint"));
        assert!(err(json!({"mode": "sometimes"})).contains("mode"));
        assert!(err(json!({"operations": ["fly"]})).contains("fly"));
        assert!(err(json!({"operations": []})).contains("operations"));
        assert!(err(json!({"expiresAt": "tomorrow"})).contains("expiresAt"));
        assert!(err(json!({"location": {"type": "Point", "coordinates": [200, 0]}})).contains("location"));
        assert!(err(json!({"observationInterval": {"endAt": "2020-01-01T00:00:00Z"}})).contains("startAt"));
        let backwards = json!({"startAt": "2021-01-01T00:00:00Z", "endAt": "2020-01-01T00:00:00Z"});
        assert!(err(json!({"managementInterval": backwards})).contains("before"));
        assert!(err(json!({"contextSourceInfo": [{"key": "k", "value": 1}]})).contains("contextSourceInfo"));
        assert!(err(json!({"scope": "no-slash"})).contains("scope"));
        assert!(err(json!({"refreshRate": 5})).contains("refreshRate"));
        assert!(err(json!({"management": {"timeout": -5}})).contains("timeout"));
        assert!(err(json!({"management": {"cooldown": 0}})).contains("cooldown"));
        assert!(err(json!({"management": {"cacheDuration": "bogus"}})).contains("cacheDuration"));
        assert!(err(json!({"management": {"localOnly": "yes"}})).contains("localOnly"));
        assert!(err(json!({"registrationName": 3})).contains("registrationName"));
        // Exclusive: entity ids and attributes (§4.3.6.3); auxiliary: retrievals only (§5.9.2.4).
        let typed = json!([{"entities": [{"type": "T"}], "propertyNames": ["p"]}]);
        assert!(err(json!({"mode": "exclusive", "information": typed})).contains("entity ids"));
        let bare = json!([{"entities": [{"id": "urn:x:1", "type": "T"}]}]);
        assert!(err(json!({"mode": "exclusive", "information": bare})).contains("attributes"));
        assert!(err(json!({"mode": "auxiliary", "operations": ["updateOps"]})).contains("auxiliary"));
        assert!(compiled(json!({"mode": "auxiliary", "operations": ["retrieveEntity"]})).is_ok());
    }

    #[test]
    fn names_are_expanded_for_storage_and_compacted_for_clients() {
        let ctx = Context::new(
            crate::jsonld::TermMap::compile(&[json!({"Robot": "http://x.org/Robot", "pos": "http://x.org/pos"})
                .as_object()
                .unwrap()])
            .unwrap(),
            json!({}),
        );
        let body = json!({"id": "urn:r:1", "type": "ContextSourceRegistration", "endpoint": "http://s.org",
            "information": [{"entities": [{"type": "Robot"}], "propertyNames": ["pos"], "relationshipNames": ["rel"]}],
            "myProp": "x", "status": "ok", "createdAt": "2020-01-01T00:00:00Z"});
        let stored = normalize(body.as_object().unwrap().clone(), &ctx).unwrap();
        assert_eq!(stored["information"][0]["entities"][0]["type"], "http://x.org/Robot");
        assert_eq!(stored["information"][0]["propertyNames"][0], "http://x.org/pos");
        assert_eq!(stored["information"][0]["relationshipNames"][0], format!("{}rel", crate::jsonld::DEFAULT_VOCAB));
        assert!(stored.contains_key(&format!("{}myProp", crate::jsonld::DEFAULT_VOCAB)));
        assert!(!stored.contains_key("status") && !stored.contains_key("createdAt"));
        let c = compile("urn:r:1", "", &stored, Value::Null, 0).unwrap();
        let doc = RegDoc {
            id: "urn:r:1".into(),
            tenant: String::new(),
            body: stored,
            context: Value::Null,
            created_at: 0,
            modified_at: 0,
            stats: RegStats::default(),
        };
        let shown = render(&doc, &c, &ctx, false);
        assert_eq!(shown["information"][0]["entities"][0]["type"], "Robot");
        assert_eq!(shown["information"][0]["propertyNames"], json!(["pos"]));
        assert_eq!(shown["myProp"], "x");
        assert_eq!(shown["mode"], "inclusive");
        assert_eq!(shown["operations"], json!(["federationOps"]));
        assert!(shown.get("status").is_none() && shown.get("createdAt").is_none());
        let core = render(&doc, &c, &CORE, true);
        assert_eq!(core["information"][0]["entities"][0]["type"], "http://x.org/Robot");
        assert!(core["createdAt"].is_string());
    }

    #[test]
    fn discovery_filters_on_properties_scope_and_geometry() {
        let c = compiled(
            json!({"scope": "/Madrid/Centro", "csp": "a", "location": {"type": "Point", "coordinates": [8.68, 49.41]},
            "information": [{"entities": [{"type": "T", "id": "urn:e:1"}], "propertyNames": ["p"]}]}),
        )
        .unwrap();
        let q = |s: &str| Some(q::compile(s, &CORE).unwrap());
        let d = |f: &dyn Fn(&mut Discovery)| {
            let mut d = Discovery::default();
            f(&mut d);
            d.matches(&c, 0)
        };
        assert!(d(&|d| d.q = q("csp==\"a\"")) && !d(&|d| d.q = q("csp==\"b\"")));
        assert!(d(&|d| d.csf = q("endpoint==\"http://source.example.org\"")));
        assert!(d(&|d| d.csf = q("mode==\"inclusive\"")));
        assert!(d(&|d| d.scope = Some(scope::parse("/Madrid/#").unwrap())));
        assert!(!d(&|d| d.scope = Some(scope::parse("/Berlin").unwrap())));
        let near = geo::parse("near;maxDistance==2000", "Point", "[8.681,49.411]", None).unwrap().resolve(&CORE);
        let far = geo::parse("near;maxDistance==2000", "Point", "[9.68,49.41]", None).unwrap().resolve(&CORE);
        assert!(d(&|d| d.geo = Some(near.clone())) && !d(&|d| d.geo = Some(far.clone())));
        assert!(d(&|d| d.ids = Some(vec!["urn:e:1".into()])) && !d(&|d| d.ids = Some(vec!["urn:e:2".into()])));
        assert!(d(&|d| d.types = Some(types::parse("T,U", &CORE).unwrap())));
        assert!(!d(&|d| d.types = Some(types::parse("U", &CORE).unwrap())));
        assert!(d(&|d| d.attrs = Some(vec![CORE.expand("p")])) && !d(&|d| d.attrs = Some(vec![CORE.expand("z")])));
        assert!(!d(&|d| d.time = Some((TimeRel::Before(1), true))), "no observationInterval");
    }
}
