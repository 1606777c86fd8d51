//! The query engine's pure parts: the `q` language, `scopeQ`, geo-queries, the type selection
//! language, `orderBy` and client regular expressions. Parsers keep positions for their errors;
//! evaluators work on a stored entity; nothing here does I/O, so subscriptions and
//! registrations reuse it.

pub mod geo;
pub mod order;
pub mod pattern;
pub mod q;
pub mod scope;
pub mod types;

use std::sync::Arc;

use regex::Regex;

use crate::error::{NgsiError, NgsiResult};
use crate::model::Entity;
use crate::store::EntityFilter;

/// Entity members that are never attributes, so naming them in `attrs` is an error.
const NOT_ATTRIBUTES: &[&str] = &["id", "type", "@id", "@type", "@context"];

/// Checks the names of an `attrs` list (GS CIM 009 §5.7.2.4): `id` and `type` are entity
/// members, not attributes, and a list made of them is a malformed query (ETSI 019_03_03).
pub fn check_attr_names(names: &[String]) -> NgsiResult<()> {
    match names.iter().find(|n| NOT_ATTRIBUTES.contains(&n.as_str())) {
        Some(n) => Err(NgsiError::bad_data(format!("attrs names {n:?}, which is not an attribute name"))),
        None => Ok(()),
    }
}

/// One entity selector: ids, an id pattern and a type selection, all of which must hold.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<Regex>,
    pub types: Option<types::TypeSel>,
}

impl Selector {
    pub fn matches(&self, e: &Entity) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.iter().any(|i| **i == *e.id))
            && self.id_pattern.as_ref().is_none_or(|p| p.is_match(&e.id))
            && self.types.as_ref().is_none_or(|t| t.matches(&e.types))
    }
}

/// A compiled entity query: selectors (any of), attribute presence, `q`, `scopeQ`.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub selectors: Vec<Selector>,
    /// Entities having any of these expanded attributes.
    pub attrs: Option<Vec<String>>,
    pub q: Option<q::Query>,
    pub scope: Option<scope::ScopeQ>,
    pub order: Option<order::OrderBy>,
    pub geo: Option<geo::ResolvedGeo>,
}

impl EntityQuery {
    /// Whether the entity satisfies every part of the query.
    pub fn matches(&self, e: &Entity) -> bool {
        self.matches_but_geo(e) && self.geo.as_ref().is_none_or(|g| g.matches(e))
    }

    /// Everything but the geo-query (which a near-query's sort key decides).
    fn matches_but_geo(&self, e: &Entity) -> bool {
        (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(e)))
            && self.attrs.as_ref().is_none_or(|a| a.iter().any(|n| e.attrs.contains_key(n.as_str())))
            && self.q.as_ref().is_none_or(|q| q.matches(e))
            && self.scope.as_ref().is_none_or(|s| s.matches(e.scopes()))
    }

    /// Whether the query says what kind of entities it looks for, as Query Entities requires
    /// (GS CIM 009 §5.7.2.4): entity types, attribute names, a q query, a scopeQ or a
    /// geo-query. Entity ids or an id pattern alone are not enough (ETSI 019_03_05): fetching
    /// known entities is Retrieve Entity's job, and a pattern can match everything. Orion-LD
    /// accepts them alone; clients relying on that add `local=true`.
    pub fn names_what_to_find(&self) -> bool {
        self.selectors.iter().any(|s| s.types.is_some())
            || self.attrs.is_some()
            || self.q.is_some()
            || self.scope.is_some()
            || self.geo.is_some()
    }

    /// True when nothing restricts the query.
    pub fn is_unrestricted(&self) -> bool {
        self.selectors.is_empty()
            && self.attrs.is_none()
            && self.q.is_none()
            && self.scope.is_none()
            && self.geo.is_none()
    }

    /// The store filter: what the store can use from its indexes, plus this query as the
    /// in-memory refinement.
    pub fn into_filter(self) -> EntityFilter {
        let mut f = EntityFilter::default();
        if let [only] = self.selectors.as_slice() {
            f.ids = only.ids.clone();
            f.id_pattern = only.id_pattern.clone();
            f.types = only.types.as_ref().and_then(|t| t.candidates());
        } else if !self.selectors.is_empty() {
            let mut types = Vec::new();
            let mut all_typed = true;
            for s in &self.selectors {
                match s.types.as_ref().and_then(|t| t.candidates()) {
                    Some(c) => types.extend(c),
                    None => all_typed = false,
                }
            }
            if all_typed {
                types.sort();
                types.dedup();
                f.types = Some(types);
            }
            if self.selectors.iter().all(|s| s.ids.is_some()) {
                f.ids = Some(self.selectors.iter().flat_map(|s| s.ids.clone().unwrap_or_default()).collect());
            }
        }
        f.attrs = self.attrs.clone();
        if let Some(order) = self.order.clone() {
            f.sort = Some(Arc::new(move |a: &Entity, b: &Entity| order.compare(a, b)));
        } else if let Some(g) = self.geo.clone().filter(|g| matches!(g.rel(), geo::GeoRel::Near { .. })) {
            // Near-queries answer nearest first, as MongoDB's $nearSphere does; the distance is
            // computed once per candidate and decides the match too.
            f.near = g.near_params().map(|(point, max, min)| crate::store::NearFilter {
                geoproperty: g.geoproperty().to_owned(),
                point,
                max,
                min,
            });
            f.sort_key = Some(Arc::new(move |e: &Entity| g.near_distance(e)));
        }
        f.range = self.q.as_ref().and_then(q::Query::numeric_range);
        if let Some(g) = &self.geo {
            f.geo_box = g.search_box().map(|b| (g.geoproperty().to_owned(), b));
        }
        let near = f.sort_key.is_some();
        let q = Arc::new(self);
        f.predicate = Some(if near {
            Arc::new(move |e: &Entity| q.matches_but_geo(e))
        } else {
            Arc::new(move |e: &Entity| q.matches(e))
        });
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn id_and_type_are_not_attribute_names() {
        assert!(check_attr_names(&names(&["speed", "https://example.org/name"])).is_ok());
        for bad in [&["id", "type"][..], &["speed", "type"], &["@id"], &["@context"]] {
            assert!(check_attr_names(&names(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_alone_do_not_name_what_to_find() {
        let by_id = Selector { ids: Some(names(&["urn:a:1"])), ..Default::default() };
        let q = EntityQuery { selectors: vec![by_id.clone()], ..Default::default() };
        assert!(!q.names_what_to_find());
        assert!(!q.is_unrestricted());
        let by_pattern = Selector { id_pattern: regex::Regex::new(".*").ok(), ..Default::default() };
        assert!(!EntityQuery { selectors: vec![by_pattern], ..Default::default() }.names_what_to_find());
        let with_attrs = EntityQuery { selectors: vec![by_id], attrs: Some(names(&["speed"])), ..Default::default() };
        assert!(with_attrs.names_what_to_find());
        let typed =
            Selector { types: Some(types::TypeSel::Is("https://example.org/T".to_owned())), ..Default::default() };
        assert!(EntityQuery { selectors: vec![typed], ..Default::default() }.names_what_to_find());
    }
}
