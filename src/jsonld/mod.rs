//! JSON-LD term handling: NGSI-LD only renames keys and `type` values, so a full JSON-LD
//! processor is not needed on the request path.
//!
//! A context is compiled once into a [`TermMap`] (term → IRI, IRI → term, `@vocab`, `@type`
//! coercions) and shared behind an `Arc`; expansion and compaction are hash look-ups. The
//! NGSI-LD core context is built in and always wins over user terms, which emulates its
//! `@protected` flag. `resolver` turns request contexts (Link header, inline, URLs) into
//! compiled maps and owns every cache; this module does no I/O.

pub mod core;
pub mod resolver;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;

use serde_json::{Map, Value};

use crate::error::{NgsiError, NgsiResult};

/// The default vocabulary the core context maps unknown terms to.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// The namespace of NGSI-LD core terms.
pub const NGSI_LD_NS: &str = "https://uri.etsi.org/ngsi-ld/";

/// How a term's values are coerced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coercion {
    None,
    /// `@type: @vocab`: string values are terms to expand (VocabProperty values, type lists).
    Vocab,
    /// `@type: @id`.
    Id,
}

#[derive(Debug, Clone)]
struct TermDef {
    iri: String,
    coercion: Coercion,
}

/// One compiled set of term definitions (the core context, or the user part of a request's
/// context).
#[derive(Debug, Clone, Default)]
pub struct TermMap {
    terms: HashMap<String, TermDef>,
    reverse: HashMap<String, String>,
    /// Prefix terms (IRIs ending in `/`, `#` or `:`), longest first, used for CURIE compaction.
    prefixes: Vec<(String, String)>,
    vocab: Option<String>,
}

impl TermMap {
    /// Compiles a list of context objects (already dereferenced), later ones overriding earlier ones.
    pub fn compile(objects: &[&Map<String, Value>]) -> NgsiResult<TermMap> {
        let mut raw: Vec<(String, Value)> = Vec::new();
        let mut vocab: Option<String> = None;
        for obj in objects {
            for (k, v) in obj.iter() {
                match k.as_str() {
                    "@vocab" => vocab = v.as_str().map(str::to_owned),
                    "@version" | "@protected" | "@language" | "@base" | "@direction" => {}
                    "@import" | "@propagate" => {
                        return Err(NgsiError::bad_data(format!("@context keyword {k} is not supported")));
                    }
                    _ if k.starts_with('@') => {}
                    _ => {
                        raw.retain(|(t, _)| t != k);
                        raw.push((k.clone(), v.clone()));
                    }
                }
            }
        }
        // First pass: plain definitions; second pass resolves CURIEs against the first.
        let mut first: HashMap<String, TermDef> = HashMap::with_capacity(raw.len());
        for (term, def) in &raw {
            let (iri, coercion) = match def {
                Value::String(s) => (s.clone(), Coercion::None),
                Value::Object(o) => {
                    let iri = match o.get("@id") {
                        Some(Value::String(s)) => s.clone(),
                        Some(_) => {
                            return Err(NgsiError::bad_data(format!("@context term {term} has an invalid @id")));
                        }
                        None => match &vocab {
                            Some(v) => format!("{v}{term}"),
                            None => continue,
                        },
                    };
                    let coercion = match o.get("@type").and_then(Value::as_str) {
                        Some("@vocab") => Coercion::Vocab,
                        Some("@id") => Coercion::Id,
                        _ => Coercion::None,
                    };
                    (iri, coercion)
                }
                Value::Null => continue,
                _ => {
                    return Err(NgsiError::bad_data(format!("@context term {term} must map to a string or an object")));
                }
            };
            first.insert(term.clone(), TermDef { iri, coercion });
        }
        let snapshot: HashMap<String, String> = first.iter().map(|(k, d)| (k.clone(), d.iri.clone())).collect();
        let mut map = TermMap { vocab, ..Default::default() };
        for (term, mut def) in first {
            if let Some(expanded) = expand_curie(&def.iri, &snapshot) {
                def.iri = expanded;
            } else if !def.iri.contains(':') && !def.iri.starts_with('@') {
                // A relative IRI: JSON-LD resolves it against @vocab (keyword aliases such as
                // `type: @type` stay keywords).
                if let Some(v) = &map.vocab {
                    def.iri = format!("{v}{}", def.iri);
                }
            }
            map.terms.insert(term, def);
        }
        for (term, def) in &map.terms {
            // Shortest term wins for the reverse map, ties broken lexicographically, so the
            // choice does not depend on hash order.
            let better = match map.reverse.get(&def.iri) {
                Some(existing) => (term.len(), term.as_str()) < (existing.len(), existing.as_str()),
                None => true,
            };
            if better {
                map.reverse.insert(def.iri.clone(), term.clone());
            }
            if def.iri.ends_with('/') || def.iri.ends_with('#') || def.iri.ends_with(':') {
                map.prefixes.push((term.clone(), def.iri.clone()));
            }
        }
        map.prefixes.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        Ok(map)
    }

    fn lookup(&self, term: &str) -> Option<&TermDef> {
        self.terms.get(term)
    }

    /// Number of terms, for the jsonldContexts details.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Expands `prefix:suffix` when `prefix` is a known term; `None` for anything else.
fn expand_curie(s: &str, terms: &HashMap<String, String>) -> Option<String> {
    let (prefix, suffix) = s.split_once(':')?;
    if suffix.starts_with("//") || prefix == "urn" || prefix.is_empty() {
        return None;
    }
    terms.get(prefix).map(|iri| format!("{iri}{suffix}"))
}

/// True for strings that are already absolute IRIs and must never be expanded.
pub fn is_absolute_iri(s: &str) -> bool {
    s.contains("://") || s.starts_with("urn:")
}

/// The active context of one request: the built-in core context plus the user's terms.
#[derive(Debug)]
pub struct Context {
    user: TermMap,
    /// What the client gave, for echoing back (`@context` member or `Link` header).
    pub original: Value,
    /// Compaction results, since every response compacts the same few names again.
    compacted: RwLock<HashMap<Box<str>, Box<str>, foldhash::fast::RandomState>>,
    /// Expansions to interned names, since every write expands the same few terms again.
    expanded: RwLock<HashMap<Box<str>, crate::model::Name, foldhash::fast::RandomState>>,
}

/// How many compaction results a context remembers before it starts over.
const COMPACT_CACHE: usize = 4096;

/// The core-only context, shared by every request that brings none.
pub static CORE: LazyLock<Arc<Context>> =
    LazyLock::new(|| Arc::new(Context::new(TermMap::default(), Value::String(core::default_url()))));

impl Context {
    pub fn new(user: TermMap, original: Value) -> Context {
        Context {
            user,
            original,
            compacted: RwLock::new(HashMap::default()),
            expanded: RwLock::new(HashMap::default()),
        }
    }

    /// The context a response should advertise: the one the client used, or the core URL.
    pub fn link_url(&self) -> Option<&str> {
        match &self.original {
            Value::String(s) => Some(s),
            Value::Array(a) if a.len() == 1 => a[0].as_str(),
            _ => None,
        }
    }

    fn find(&self, term: &str) -> Option<&TermDef> {
        core::TERMS.lookup(term).or_else(|| self.user.lookup(term))
    }

    /// Expands an attribute name, entity type or other vocabulary term to an IRI.
    pub fn expand(&self, term: &str) -> String {
        if let Some(def) = self.find(term) {
            return def.iri.clone();
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if is_absolute_iri(term) {
                return term.to_owned();
            }
            if let Some(def) = self.find(prefix) {
                return format!("{}{}", def.iri, suffix);
            }
            // An unknown scheme: already an IRI (e.g. `http:`, `tag:`).
            return term.to_owned();
        }
        match &self.user.vocab {
            Some(v) => format!("{v}{term}"),
            None => format!("{DEFAULT_VOCAB}{term}"),
        }
    }

    /// Whether a term's values are vocabulary terms (`@type: @vocab`).
    pub fn coercion(&self, term: &str) -> Coercion {
        self.find(term).map(|d| d.coercion).unwrap_or(Coercion::None)
    }

    /// Compacts an IRI back to the shortest term the context offers.
    pub fn compact(&self, iri: &str) -> String {
        self.with_compact(iri, str::to_owned)
    }

    /// [`Context::expand`] as the interned name stored entities share, remembered per term.
    pub fn expand_name(&self, term: &str) -> crate::model::Name {
        if let Some(hit) = self.expanded.read().get(term) {
            return hit.clone();
        }
        let name = crate::model::intern(&self.expand(term));
        let mut cache = self.expanded.write();
        if cache.len() >= COMPACT_CACHE {
            cache.clear();
        }
        cache.insert(term.into(), name.clone());
        name
    }

    /// Hands the compacted form of an IRI to `f` without allocating when it is cached (the
    /// direct renderer writes it straight into the response).
    pub fn with_compact<R>(&self, iri: &str, f: impl FnOnce(&str) -> R) -> R {
        if let Some(hit) = self.compacted.read().get(iri) {
            return f(hit);
        }
        f(&self.compact_fresh(iri))
    }

    fn compact_fresh(&self, iri: &str) -> String {
        let out = self.compact_uncached(iri);
        let mut cache = self.compacted.write();
        if cache.len() >= COMPACT_CACHE {
            cache.clear();
        }
        cache.insert(iri.into(), out.as_str().into());
        out
    }

    fn compact_uncached(&self, iri: &str) -> String {
        // Every candidate must expand back to the same IRI, or the client would read another term.
        let round_trips = |term: &str| self.expand(term) == iri;
        if let Some(t) = self.user.reverse.get(iri)
            && round_trips(t)
        {
            return t.clone();
        }
        if let Some(t) = core::TERMS.reverse.get(iri) {
            return t.clone();
        }
        let vocab = self.user.vocab.as_deref().unwrap_or(DEFAULT_VOCAB);
        if let Some(rest) = iri.strip_prefix(vocab)
            && !rest.is_empty()
            && !rest.contains(':')
            && round_trips(rest)
        {
            return rest.to_owned();
        }
        // Compact IRIs with the user's prefixes, then the core context's (`ngsi-ld:`), as JSON-LD
        // compaction does: a default-vocabulary IRI whose term the user context redefines
        // becomes `ngsi-ld:default-context/<term>` (ETSI 001_05_02, 003_05_02, 033_05_01).
        for (term, prefix) in self.user.prefixes.iter().chain(&core::TERMS.prefixes) {
            if let Some(rest) = iri.strip_prefix(prefix.as_str())
                && !rest.is_empty()
            {
                let curie = format!("{term}:{rest}");
                if round_trips(&curie) {
                    return curie;
                }
            }
        }
        iri.to_owned()
    }

    /// Expands a value of a `@vocab`-typed term (VocabProperty values).
    pub fn expand_vocab_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.expand(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.expand_vocab_value(x)).collect()),
            other => other.clone(),
        }
    }

    /// Compacts a value of a `@vocab`-typed term.
    pub fn compact_vocab_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.compact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.compact_vocab_value(x)).collect()),
            other => other.clone(),
        }
    }

    /// The user part of the term map (for tests and the contexts API).
    pub fn user_terms(&self) -> &TermMap {
        &self.user
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Context {
        let obj = v.as_object().unwrap().clone();
        Context::new(TermMap::compile(&[&obj]).unwrap(), Value::Null)
    }

    #[test]
    fn unknown_terms_go_to_the_default_vocab_and_back() {
        let c = &**CORE;
        assert_eq!(c.expand("speed"), "https://uri.etsi.org/ngsi-ld/default-context/speed");
        assert_eq!(c.compact("https://uri.etsi.org/ngsi-ld/default-context/speed"), "speed");
    }

    #[test]
    fn core_terms_win_over_user_terms() {
        let c = ctx(json!({"location": "http://example.org/myLocation"}));
        assert_eq!(c.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
    }

    #[test]
    fn user_terms_curies_and_vocab() {
        let c = ctx(json!({
            "ex": "http://example.org/",
            "Vehicle": "ex:Vehicle",
            "brand": {"@id": "http://example.org/brandName"},
            "colour": {"@id": "ex:colour", "@type": "@vocab"}
        }));
        assert_eq!(c.expand("Vehicle"), "http://example.org/Vehicle");
        assert_eq!(c.expand("brand"), "http://example.org/brandName");
        assert_eq!(c.expand("ex:other"), "http://example.org/other");
        assert_eq!(c.coercion("colour"), Coercion::Vocab);
        assert_eq!(c.compact("http://example.org/Vehicle"), "Vehicle");
        assert_eq!(c.compact("http://example.org/other"), "ex:other");
        assert_eq!(c.expand("urn:ngsi-ld:x"), "urn:ngsi-ld:x");
        assert_eq!(c.expand("http://a.b/c"), "http://a.b/c");
        let v = ctx(json!({"@vocab": "http://v.org/"}));
        assert_eq!(v.expand("thing"), "http://v.org/thing");
        assert_eq!(v.compact("http://v.org/thing"), "thing");
    }

    #[test]
    fn compaction_never_yields_a_term_meaning_something_else() {
        let c = ctx(json!({"name": "http://example.org/name"}));
        let default_name = "https://uri.etsi.org/ngsi-ld/default-context/name";
        assert_eq!(c.compact(default_name), "ngsi-ld:default-context/name");
        assert_eq!(c.expand("ngsi-ld:default-context/name"), default_name);
        assert_eq!(c.compact("http://example.org/name"), "name");
    }

    #[test]
    fn unsupported_keywords_are_rejected() {
        let obj = json!({"@import": "http://x"});
        assert!(TermMap::compile(&[obj.as_object().unwrap()]).is_err());
    }
}
