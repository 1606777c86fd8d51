//! The instances of one attribute: usually one, held inline in 48 bytes (the size of the
//! attribute itself: the enum's tag lives in a niche of the attribute's kind), several in a
//! vector. A `SmallVec<[Attribute; 1]>` took 56, and an attribute map entry 72 instead of 64.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Attribute;

#[derive(Clone)]
enum Repr {
    One(Attribute),
    Many(Vec<Attribute>),
}

#[derive(Clone)]
pub struct Instances(Repr);

const _: () = assert!(std::mem::size_of::<Instances>() == std::mem::size_of::<Attribute>());

impl Default for Instances {
    fn default() -> Instances {
        Instances(Repr::Many(Vec::new()))
    }
}

impl Instances {
    pub fn new() -> Instances {
        Instances::default()
    }

    pub fn with_capacity(n: usize) -> Instances {
        Instances(Repr::Many(Vec::with_capacity(n)))
    }

    pub fn one(a: Attribute) -> Instances {
        Instances(Repr::One(a))
    }

    fn from_vec(mut v: Vec<Attribute>) -> Instances {
        if v.len() == 1
            && let Some(a) = v.pop()
        {
            return Instances(Repr::One(a));
        }
        Instances(Repr::Many(v))
    }

    fn into_vec(self) -> Vec<Attribute> {
        match self.0 {
            Repr::One(a) => vec![a],
            Repr::Many(v) => v,
        }
    }

    pub fn push(&mut self, a: Attribute) {
        match &mut self.0 {
            Repr::Many(v) if v.is_empty() => self.0 = Repr::One(a),
            Repr::Many(v) => v.push(a),
            Repr::One(_) => {
                let v = std::mem::take(self).into_vec();
                let mut v2 = Vec::with_capacity(2);
                v2.extend(v);
                v2.push(a);
                self.0 = Repr::Many(v2);
            }
        }
    }

    /// Puts an instance: it replaces the one with the same datasetId, keeping that one's
    /// `createdAt` (returns true), or goes last.
    pub fn put(&mut self, mut attr: Attribute) -> bool {
        match self.iter_mut().find(|a| a.dataset_id() == attr.dataset_id()) {
            Some(existing) => {
                attr.created_at = existing.created_at;
                *existing = attr;
                true
            }
            None => {
                self.push(attr);
                false
            }
        }
    }

    pub fn retain(&mut self, f: impl FnMut(&Attribute) -> bool) {
        let mut v = std::mem::take(self).into_vec();
        v.retain(f);
        *self = Instances::from_vec(v);
    }

    pub fn clear(&mut self) {
        *self = Instances::default();
    }

    /// Drops the growth slack of several instances (a fresh allocation of the exact size).
    pub fn shrink_to_fit(&mut self) {
        if let Repr::Many(v) = &mut self.0
            && v.capacity() > v.len()
        {
            let mut exact = Vec::with_capacity(v.len());
            exact.append(v);
            *v = exact;
        }
    }
}

impl Deref for Instances {
    type Target = [Attribute];
    fn deref(&self) -> &[Attribute] {
        match &self.0 {
            Repr::One(a) => std::slice::from_ref(a),
            Repr::Many(v) => v,
        }
    }
}

impl DerefMut for Instances {
    fn deref_mut(&mut self) -> &mut [Attribute] {
        match &mut self.0 {
            Repr::One(a) => std::slice::from_mut(a),
            Repr::Many(v) => v,
        }
    }
}

impl PartialEq for Instances {
    fn eq(&self, other: &Instances) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<Attribute> for Instances {
    fn from_iter<I: IntoIterator<Item = Attribute>>(iter: I) -> Instances {
        Instances::from_vec(iter.into_iter().collect())
    }
}

impl IntoIterator for Instances {
    type Item = Attribute;
    type IntoIter = std::vec::IntoIter<Attribute>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Instances {
    type Item = &'a Attribute;
    type IntoIter = std::slice::Iter<'a, Attribute>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Instances {
    type Item = &'a mut Attribute;
    type IntoIter = std::slice::IterMut<'a, Attribute>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl Extend<Attribute> for Instances {
    fn extend<I: IntoIterator<Item = Attribute>>(&mut self, iter: I) {
        for a in iter {
            self.push(a);
        }
    }
}

/// A JSON array, as the `SmallVec` it replaces was written.
impl Serialize for Instances {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Instances, D::Error> {
        Ok(Instances::from_vec(Vec::deserialize(d)?))
    }
}
