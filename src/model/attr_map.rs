//! An entity's attributes by expanded name, in insertion order: a plain vector of entries.
//!
//! Entities hold a handful of attributes, and every stored entity keeps its map for as long
//! as it lives, so the map is one exactly sized allocation (64 bytes an attribute) with no hash
//! table beside it. A lookup compares lengths first, then bytes: names are interned, so the
//! pointer of an interned name is tried before its text.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Instances, Name, intern};

#[derive(Clone, Default)]
pub struct AttrMap {
    entries: Vec<(Name, Instances)>,
}

#[inline]
fn same(k: &Name, name: &str) -> bool {
    k.len() == name.len() && (std::ptr::eq(k.as_ptr(), name.as_ptr()) || **k == *name)
}

type Pair<'a> = &'a (Name, Instances);
type PairMut<'a> = &'a mut (Name, Instances);

impl AttrMap {
    pub fn new() -> AttrMap {
        AttrMap::default()
    }

    pub fn with_capacity(n: usize) -> AttrMap {
        AttrMap { entries: Vec::with_capacity(n) }
    }

    #[inline]
    fn position(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| same(k, name))
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<&Instances> {
        self.entries.iter().find(|(k, _)| same(k, name)).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Instances> {
        self.entries.iter_mut().find(|(k, _)| same(k, name)).map(|(_, v)| v)
    }

    pub fn get_key_value(&self, name: &str) -> Option<(&Name, &Instances)> {
        self.entries.iter().find(|(k, _)| same(k, name)).map(|(k, v)| (k, v))
    }

    #[inline]
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets the instances of `name`, keeping its place when present; returns the old ones.
    pub fn insert(&mut self, name: Name, v: Instances) -> Option<Instances> {
        match self.position(&name) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            None => {
                self.entries.push((name, v));
                None
            }
        }
    }

    /// The instances of `name`, an empty list added last when absent.
    pub fn entry(&mut self, name: Name) -> Entry<'_> {
        Entry { map: self, name }
    }

    /// Removes `name`, keeping the others in order.
    pub fn shift_remove(&mut self, name: &str) -> Option<Instances> {
        let i = self.position(name)?;
        Some(self.entries.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Name, &mut Instances) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> Iter<'_> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Name, &mut Instances)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> Keys<'_> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> Values<'_> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Instances> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Drops the growth slack. A fresh allocation of the exact size, not a `realloc`: the
    /// allocator keeps a block that shrinks by less than half where it is.
    pub fn shrink_to_fit(&mut self) {
        if self.entries.capacity() > self.entries.len() {
            let mut exact = Vec::with_capacity(self.entries.len());
            exact.append(&mut self.entries);
            self.entries = exact;
        }
        for (_, list) in &mut self.entries {
            list.shrink_to_fit();
        }
    }
}

pub type Iter<'a> = std::iter::Map<std::slice::Iter<'a, (Name, Instances)>, fn(Pair<'a>) -> (&'a Name, &'a Instances)>;

pub type Keys<'a> = std::iter::Map<std::slice::Iter<'a, (Name, Instances)>, fn(Pair<'a>) -> &'a Name>;
pub type Values<'a> = std::iter::Map<std::slice::Iter<'a, (Name, Instances)>, fn(Pair<'a>) -> &'a Instances>;

pub struct Entry<'a> {
    map: &'a mut AttrMap,
    name: Name,
}

impl<'a> Entry<'a> {
    pub fn or_default(self) -> &'a mut Instances {
        let i = match self.map.position(&self.name) {
            Some(i) => i,
            None => {
                self.map.entries.push((self.name, Instances::new()));
                self.map.entries.len() - 1
            }
        };
        &mut self.map.entries[i].1
    }
}

impl<'a> IntoIterator for &'a AttrMap {
    type Item = (&'a Name, &'a Instances);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut AttrMap {
    type Item = (&'a Name, &'a mut Instances);
    type IntoIter =
        std::iter::Map<std::slice::IterMut<'a, (Name, Instances)>, fn(PairMut<'a>) -> (&'a Name, &'a mut Instances)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }
}

impl IntoIterator for AttrMap {
    type Item = (Name, Instances);
    type IntoIter = std::vec::IntoIter<(Name, Instances)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(Name, Instances)> for AttrMap {
    fn from_iter<I: IntoIterator<Item = (Name, Instances)>>(iter: I) -> AttrMap {
        let mut m = AttrMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl std::ops::Index<&str> for AttrMap {
    type Output = Instances;
    fn index(&self, name: &str) -> &Instances {
        self.get(name).unwrap_or_else(|| panic!("no attribute {name}"))
    }
}

/// Equal when the same names hold the same instances, whatever the order (as `IndexMap`).
impl PartialEq for AttrMap {
    fn eq(&self, other: &AttrMap) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl fmt::Debug for AttrMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A JSON object of name to instances, as the `IndexMap` it replaces was written.
impl Serialize for AttrMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for AttrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AttrMap, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttrMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attribute names to instances")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<AttrMap, A::Error> {
                let mut m = AttrMap::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    let v: Instances = a.next_value()?;
                    m.insert(intern(&k), v);
                }
                m.shrink_to_fit();
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}
