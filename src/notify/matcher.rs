//! Which subscriptions a change fires, found through an index so that subscriptions that cannot
//! match cost nothing: per tenant, subscriptions are filed under the entity ids they name, else
//! under their entity types, else under their watched attributes; only the few left (type
//! patterns such as `A|B;C`) are tried on every change of the tenant.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::subscription::Compiled;
use crate::model::Entity;

/// The index of one tenant's subscriptions (values are subscription ids).
#[derive(Default)]
pub struct TenantIndex {
    by_id: HashMap<String, Vec<String>>,
    by_type: HashMap<String, Vec<String>>,
    by_attr: HashMap<String, Vec<String>>,
    rest: Vec<String>,
}

fn file(map: &mut HashMap<String, Vec<String>>, key: &str, sub: &str) {
    map.entry(key.to_owned()).or_default().push(sub.to_owned());
}

fn unfile(map: &mut HashMap<String, Vec<String>>, key: &str, sub: &str) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|s| s != sub);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl TenantIndex {
    /// Files a subscription under its most selective key.
    pub fn add(&mut self, c: &Compiled) {
        if c.time_interval.is_some() {
            // Periodic subscriptions are not fired by changes.
            return;
        }
        if let Some(ids) = &c.exact_ids {
            ids.iter().for_each(|i| file(&mut self.by_id, i, &c.id));
        } else if let Some(types) = &c.types {
            types.iter().for_each(|t| file(&mut self.by_type, t, &c.id));
        } else if c.selectors.is_empty() && !c.watched.is_empty() {
            c.watched.iter().for_each(|a| file(&mut self.by_attr, a, &c.id));
        } else {
            self.rest.push(c.id.clone());
        }
    }

    pub fn remove(&mut self, c: &Compiled) {
        if let Some(ids) = &c.exact_ids {
            ids.iter().for_each(|i| unfile(&mut self.by_id, i, &c.id));
        }
        if let Some(types) = &c.types {
            types.iter().for_each(|t| unfile(&mut self.by_type, t, &c.id));
        }
        c.watched.iter().for_each(|a| unfile(&mut self.by_attr, a, &c.id));
        self.rest.retain(|s| s != &c.id);
    }

    /// The subscriptions that may match a change of this entity (old and new states).
    pub fn candidates<'a>(&'a self, old: Option<&Entity>, new: Option<&Entity>, out: &mut HashSet<&'a str>) {
        for e in [old, new].into_iter().flatten() {
            if let Some(v) = self.by_id.get(&*e.id) {
                out.extend(v.iter().map(String::as_str));
            }
            for t in &e.types {
                if let Some(v) = self.by_type.get(&**t) {
                    out.extend(v.iter().map(String::as_str));
                }
            }
            if !self.by_attr.is_empty() {
                for a in e.attrs.keys() {
                    if let Some(v) = self.by_attr.get(a.as_ref()) {
                        out.extend(v.iter().map(String::as_str));
                    }
                }
            }
        }
        out.extend(self.rest.iter().map(String::as_str));
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.by_type.is_empty() && self.by_attr.is_empty() && self.rest.is_empty()
    }
}

/// How attributes differ between two states of an entity (restricted to some names, if given).
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

pub fn diff(old: &Entity, new: &Entity, only: &[String]) -> Diff {
    let mut d = Diff::default();
    let watched = |n: &str| only.is_empty() || only.iter().any(|w| w == n);
    for (name, inst) in &new.attrs {
        if !watched(name) {
            continue;
        }
        match old.attrs.get(name) {
            None => d.created.push(name.to_string()),
            Some(prev) if prev != inst => d.updated.push(name.to_string()),
            Some(_) => {}
        }
    }
    for name in old.attrs.keys() {
        if watched(name) && !new.attrs.contains_key(name) {
            d.deleted.push(name.to_string());
        }
    }
    d
}

/// What happened to the entity, as a subscription sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Created,
    Updated,
    /// The entity was deleted and the subscription asked for `entityDeleted`.
    EntityDeleted,
    /// The entity was deleted and the subscription is told its watched attributes went.
    AttributesDeleted,
}

/// What a firing subscription is told about an entity.
#[derive(Debug, Clone)]
pub struct Fired {
    pub old: Option<Arc<Entity>>,
    pub new: Option<Arc<Entity>>,
    pub event: Event,
    /// Attribute instances the change deleted and the subscription watches, by attribute name
    /// and datasetId (`None`: the whole attribute when it is gone, else the default instance).
    pub deleted: Vec<(String, Option<String>)>,
}

impl Fired {
    /// A notification about an entity as it is now (periodic notifications, read-back).
    pub fn current(e: Arc<Entity>) -> Fired {
        Fired { old: None, new: Some(e), event: Event::Created, deleted: Vec::new() }
    }
}

/// Whether the entity passes the subscription's selectors, `q`, `geoQ` and `scopeQ`.
pub fn selects(c: &Compiled, e: &Entity) -> bool {
    (c.selectors.is_empty() || c.selectors.iter().any(|s| s.matches(e)))
        && c.q.as_ref().is_none_or(|q| q.matches(e))
        && c.scope.as_ref().is_none_or(|s| s.matches(e.scopes()))
        && c.geo.as_ref().is_none_or(|g| g.matches(e))
}

/// The attribute instances present in `old` and gone in `new`, among the watched attributes.
fn deleted_instances(old: &Entity, new: &Entity, watched: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (name, before) in &old.attrs {
        if !(watched.is_empty() || watched.iter().any(|w| w.as_str() == name.as_ref())) {
            continue;
        }
        match new.attrs.get(name) {
            None => out.push((name.to_string(), None)),
            Some(after) => {
                for i in before {
                    let ds = i.dataset_id();
                    if !after.iter().any(|a| a.dataset_id() == ds) {
                        out.push((name.to_string(), ds.map(str::to_owned)));
                    }
                }
            }
        }
    }
    out
}

/// Whether a change fires the subscription (GS CIM 009 §5.8.6 and `notificationTrigger`), and
/// what to tell it. Filters are evaluated on the new state, on the old one for a deletion.
pub fn fires(c: &Compiled, old: Option<&Arc<Entity>>, new: Option<&Arc<Entity>>) -> Option<Fired> {
    let t = &c.triggers;
    let watches = |e: &Entity| c.watched.is_empty() || c.watched.iter().any(|w| e.attrs.contains_key(w.as_str()));
    match (old, new) {
        (None, Some(n)) => (selects(c, n) && watches(n) && (t.entity_created || t.attribute_created)).then(|| Fired {
            old: None,
            new: Some(n.clone()),
            event: Event::Created,
            deleted: Vec::new(),
        }),
        (Some(o), None) => {
            if !selects(c, o) {
                return None;
            }
            if t.entity_deleted && watches(o) {
                return Some(Fired {
                    old: Some(o.clone()),
                    new: None,
                    event: Event::EntityDeleted,
                    deleted: Vec::new(),
                });
            }
            let gone: Vec<(String, Option<String>)> = o
                .attrs
                .keys()
                .filter(|a| c.watched.is_empty() || c.watched.iter().any(|w| w.as_str() == a.as_ref()))
                .map(|a| (a.to_string(), None))
                .collect();
            (t.attribute_deleted && !gone.is_empty()).then(|| Fired {
                old: Some(o.clone()),
                new: None,
                event: Event::AttributesDeleted,
                deleted: gone,
            })
        }
        (Some(o), Some(n)) => {
            if !selects(c, n) {
                return None;
            }
            let d = diff(o, n, &c.watched);
            let deleted = deleted_instances(o, n, &c.watched);
            let fired = (t.attribute_created && !d.created.is_empty())
                || (t.attribute_updated && !d.updated.is_empty())
                || (t.attribute_deleted && !deleted.is_empty())
                || (t.entity_updated && (!d.created.is_empty() || !d.updated.is_empty() || !d.deleted.is_empty()));
            fired.then(|| Fired {
                old: Some(o.clone()),
                new: Some(n.clone()),
                event: Event::Updated,
                deleted: if t.attribute_deleted { deleted } else { Vec::new() },
            })
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};
    use serde_json::json;

    fn compiled(id: &str, body: serde_json::Value) -> Compiled {
        crate::notify::subscription::compile(id, "", body.as_object().unwrap(), CORE.clone()).unwrap()
    }

    fn entity(v: serde_json::Value) -> Entity {
        let input = parse_entity(&v, &CORE, Purpose::Create, 1).unwrap();
        let id = input.id.clone().unwrap();
        input.into_entity(id, 1)
    }

    /// Subscriptions on other entities, types or attributes are not even looked at.
    #[test]
    fn candidates_come_from_the_index_only() {
        let ep = json!({"endpoint": {"uri": "http://x/y"}});
        let mut ix = TenantIndex::default();
        let mut subs = Vec::new();
        for i in 0..10_000 {
            let body = match i % 3 {
                0 => {
                    json!({"type": "Subscription", "entities": [{"id": format!("urn:e:{i}"), "type": "T"}], "notification": ep})
                }
                1 => json!({"type": "Subscription", "entities": [{"type": format!("Type{i}")}], "notification": ep}),
                _ => json!({"type": "Subscription", "watchedAttributes": [format!("attr{i}")], "notification": ep}),
            };
            subs.push(compiled(&format!("urn:s:{i}"), body));
        }
        subs.iter().for_each(|c| ix.add(c));
        let e = entity(json!({"id": "urn:e:3", "type": "Type4", "attr5": 1, "other": 2}));
        let mut out = HashSet::new();
        ix.candidates(None, Some(&e), &mut out);
        let mut got: Vec<&str> = out.into_iter().collect();
        got.sort();
        assert_eq!(got, vec!["urn:s:3", "urn:s:4", "urn:s:5"]);
        subs.iter().for_each(|c| ix.remove(c));
        assert!(ix.is_empty());
    }

    #[test]
    fn triggers_decide_on_the_change() {
        let ep = json!({"endpoint": {"uri": "http://x/y"}});
        let c = compiled(
            "urn:s:t",
            json!({"type": "Subscription", "entities": [{"type": "T"}], "watchedAttributes": ["a"],
                   "notificationTrigger": ["attributeUpdated", "attributeDeleted"], "notification": ep}),
        );
        let v1 = Arc::new(entity(json!({"id": "urn:e:1", "type": "T", "a": 1, "b": 1})));
        let v2 = Arc::new(entity(json!({"id": "urn:e:1", "type": "T", "a": 2, "b": 1})));
        let v3 = Arc::new(entity(json!({"id": "urn:e:1", "type": "T", "b": 1})));
        assert!(fires(&c, None, Some(&v1)).is_none(), "creation is not a watched trigger");
        assert_eq!(fires(&c, Some(&v1), Some(&v2)).map(|f| f.event), Some(Event::Updated));
        let gone = fires(&c, Some(&v2), Some(&v3)).expect("attribute deleted");
        assert_eq!(gone.deleted, vec![("https://uri.etsi.org/ngsi-ld/default-context/a".to_owned(), None)]);
        assert!(fires(&c, Some(&v3), Some(&v3)).is_none(), "nothing changed");
        assert_eq!(fires(&c, Some(&v2), None).map(|f| f.event), Some(Event::AttributesDeleted));
    }
}
