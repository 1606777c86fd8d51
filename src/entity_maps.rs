//! Entity maps (GS CIM 009 §5.2.39, §5.5.9.3, §5.14): the set of entity ids a paginated,
//! possibly distributed query walks, fixed when the map is created, each id with where it is
//! held (`@none` for this broker, else the ids of the registrations whose sources answered it).
//!
//! Maps are short-lived (an hour by default), so they live in memory only: a restart forgets
//! them and a client presenting a forgotten map simply gets a new one. With several broker
//! instances behind one address a map is known only to the instance that made it. Every bound
//! is a setting: the number of maps (the map expiring soonest is evicted beyond it), the ids in
//! one map, and the lifetime; expired maps are never served and are swept on every creation.

use std::collections::HashMap;

use indexmap::IndexMap;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::model::{format_millis, now_millis};

/// Where an entity held by this broker is marked in a map.
pub const LOCAL: &str = "@none";

/// The bounds of the map store.
#[derive(Debug, Clone, Copy)]
pub struct EntityMapSettings {
    /// The lifetime of a map when the client asks for none, in milliseconds.
    pub default_lifetime_ms: i64,
    /// The longest lifetime granted, in milliseconds (longer requests are clamped).
    pub max_lifetime_ms: i64,
    /// The most maps held at once (all tenants).
    pub max_maps: usize,
    /// The most entity ids in one map.
    pub max_ids: usize,
}

impl Default for EntityMapSettings {
    fn default() -> Self {
        EntityMapSettings {
            default_lifetime_ms: 3_600_000,
            max_lifetime_ms: 86_400_000,
            max_maps: 1000,
            max_ids: 10_000,
        }
    }
}

/// One entity map.
#[derive(Debug, Clone)]
pub struct EntityMap {
    pub id: String,
    /// Milliseconds since the epoch; the map is not served from then on.
    pub expires_at: i64,
    /// Entity id → where it is held (`@none` and/or registration ids), in the query's order.
    pub entries: IndexMap<String, Vec<String>>,
    /// The maps context sources made for their part, by registration id.
    pub linked: Map<String, Value>,
}

impl EntityMap {
    /// The map as GS CIM 009 §5.2.39 shows it.
    pub fn to_json(&self) -> Value {
        let entries: Map<String, Value> = self.entries.iter().map(|(id, at)| (id.clone(), json!(at))).collect();
        json!({
            "id": self.id,
            "type": "EntityMap",
            "expiresAt": format_millis(self.expires_at),
            "entityMap": entries,
            "linkedMaps": self.linked,
        })
    }
}

/// Every live map, by tenant and id.
pub struct EntityMaps {
    pub settings: EntityMapSettings,
    maps: Mutex<HashMap<(String, String), EntityMap>>,
}

impl EntityMaps {
    pub fn new(settings: EntityMapSettings) -> EntityMaps {
        EntityMaps { settings, maps: Mutex::new(HashMap::new()) }
    }

    /// The expiry of a map asked to live `lifetime_ms` from now (the default when `None`),
    /// clamped to the maximum lifetime.
    pub fn expiry(&self, lifetime_ms: Option<i64>) -> i64 {
        let wanted = lifetime_ms.unwrap_or(self.settings.default_lifetime_ms);
        now_millis().saturating_add(wanted.clamp(0, self.settings.max_lifetime_ms))
    }

    /// Stores a new map and returns it. Expired maps are swept first; when the store is still
    /// full, the map expiring soonest makes room.
    pub fn insert(
        &self,
        tenant: &str,
        entries: IndexMap<String, Vec<String>>,
        linked: Map<String, Value>,
        lifetime_ms: Option<i64>,
    ) -> EntityMap {
        let map = EntityMap {
            id: format!("urn:ngsi-ld:entitymap:{}", uuid::Uuid::new_v4()),
            expires_at: self.expiry(lifetime_ms),
            entries,
            linked,
        };
        let now = now_millis();
        let mut maps = self.maps.lock();
        maps.retain(|_, m| m.expires_at > now);
        while maps.len() >= self.settings.max_maps.max(1) {
            let Some(key) = maps.iter().min_by_key(|(_, m)| m.expires_at).map(|(k, _)| k.clone()) else { break };
            maps.remove(&key);
        }
        maps.insert((tenant.to_owned(), map.id.clone()), map.clone());
        map
    }

    /// A live map of the tenant (an expired one is forgotten).
    pub fn get(&self, tenant: &str, id: &str) -> Option<EntityMap> {
        let key = (tenant.to_owned(), id.to_owned());
        let mut maps = self.maps.lock();
        match maps.get(&key) {
            Some(m) if m.expires_at > now_millis() => Some(m.clone()),
            Some(_) => {
                maps.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Sets when a live map expires, clamped to the maximum lifetime from now; false when there
    /// is no such live map.
    pub fn set_expiry(&self, tenant: &str, id: &str, at: i64) -> bool {
        let now = now_millis();
        let mut maps = self.maps.lock();
        match maps.get_mut(&(tenant.to_owned(), id.to_owned())) {
            Some(m) if m.expires_at > now => {
                m.expires_at = at.min(now.saturating_add(self.settings.max_lifetime_ms));
                true
            }
            _ => false,
        }
    }

    /// Deletes a live map; false when there is none.
    pub fn remove(&self, tenant: &str, id: &str) -> bool {
        let now = now_millis();
        self.maps.lock().remove(&(tenant.to_owned(), id.to_owned())).is_some_and(|m| m.expires_at > now)
    }

    /// What a walk over a map learnt: entities no longer matching leave it, and an entity that
    /// only some of its holders still answered keeps only those.
    pub fn prune(&self, tenant: &str, id: &str, gone: &[String], holders: Vec<(String, Vec<String>)>) {
        if gone.is_empty() && holders.is_empty() {
            return;
        }
        let mut maps = self.maps.lock();
        let Some(m) = maps.get_mut(&(tenant.to_owned(), id.to_owned())) else { return };
        for g in gone {
            m.entries.shift_remove(g);
        }
        for (entity, at) in holders {
            if let Some(slot) = m.entries.get_mut(&entity) {
                *slot = at;
            }
        }
    }
}

/// Reads an ISO 8601 duration (`PT1H`, `P1D`, `P1DT12H30M5.5S`, `P2W`) as milliseconds. Years
/// count 365 days and months 30, as a lifetime needs no calendar.
pub fn parse_duration(s: &str) -> NgsiResult<i64> {
    let bad = || NgsiError::bad_data(format!("{s:?} is not an ISO 8601 duration such as PT1H or P1D"));
    let rest = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    const DAY: f64 = 86_400_000.0;
    let mut total = 0.0f64;
    let mut parts = 0;
    let mut read = |text: &str, units: &[(char, f64)]| -> NgsiResult<()> {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in text.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            let at = units[next_unit..].iter().position(|(u, _)| *u == c).ok_or_else(bad)? + next_unit;
            let n: f64 = number.parse().map_err(|_| bad())?;
            total += n * units[at].1;
            parts += 1;
            next_unit = at + 1;
            number.clear();
        }
        if number.is_empty() { Ok(()) } else { Err(bad()) }
    };
    read(date, &[('Y', 365.0 * DAY), ('M', 30.0 * DAY), ('W', 7.0 * DAY), ('D', DAY)])?;
    if let Some(t) = time {
        read(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    }
    if parts == 0 || !total.is_finite() {
        return Err(bad());
    }
    Ok(total.min(i64::MAX as f64) as i64)
}

/// The map id a client names: the id itself, or the URI of the map resource (its last path
/// segment, percent-decoded).
pub fn id_from_reference(r: &str) -> String {
    let r = r.trim();
    let last = if r.contains("/entityMaps/") { r.rsplit('/').next().unwrap_or(r) } else { r };
    let last = last.split(['?', '#']).next().unwrap_or(last);
    let mut out = Vec::with_capacity(last.len());
    let bytes = last.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| last.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H").unwrap(), 3_600_000);
        assert_eq!(parse_duration("P1D").unwrap(), 86_400_000);
        assert_eq!(parse_duration("P1DT2H3M4.5S").unwrap(), 86_400_000 + 7_200_000 + 180_000 + 4500);
        assert_eq!(parse_duration("P2W").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_duration("P3650D").unwrap(), 3650 * 86_400_000);
        for bad in ["1hour", "P", "PT", "P1H", "PT1D", "P1DT", "PT1M1H", "P-1D", "", "PT1.2.3S"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(id_from_reference("urn:ngsi-ld:entitymap:1"), "urn:ngsi-ld:entitymap:1");
        assert_eq!(
            id_from_reference("http://h:1/ngsi-ld/v1/entityMaps/urn:ngsi-ld:entitymap:1"),
            "urn:ngsi-ld:entitymap:1"
        );
        assert_eq!(
            id_from_reference("/ngsi-ld/v1/entityMaps/urn%3Angsi-ld%3Aentitymap%3A1"),
            "urn:ngsi-ld:entitymap:1"
        );
    }

    #[test]
    fn maps_expire_are_bounded_and_pruned() {
        let maps = EntityMaps::new(EntityMapSettings { max_maps: 2, ..Default::default() });
        let entries: IndexMap<String, Vec<String>> =
            [("a".to_owned(), vec![LOCAL.to_owned()]), ("b".to_owned(), vec!["r".to_owned()])].into_iter().collect();
        let first = maps.insert("", entries.clone(), Map::new(), Some(1000));
        let second = maps.insert("", entries.clone(), Map::new(), Some(10_000_000_000));
        assert!(second.expires_at <= now_millis() + 86_400_000, "clamped");
        assert!(maps.get("other", &second.id).is_none(), "tenants are separate");
        let third = maps.insert("", entries, Map::new(), None);
        assert!(maps.get("", &first.id).is_none(), "the map expiring soonest made room");
        assert!(maps.get("", &second.id).is_some() && maps.get("", &third.id).is_some());
        maps.prune("", &third.id, &["a".to_owned()], vec![("b".to_owned(), vec!["s".to_owned()])]);
        let m = maps.get("", &third.id).unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.entries["b"], vec!["s".to_owned()]);
        assert!(maps.set_expiry("", &third.id, 0));
        assert!(maps.get("", &third.id).is_none(), "a past expiry makes it expired");
        assert!(!maps.remove("", &third.id));
        assert!(maps.remove("", &second.id));
    }
}
