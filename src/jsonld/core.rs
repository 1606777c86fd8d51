//! The NGSI-LD core context, built into the binary so the broker never needs the network to
//! start or to understand core terms.
//!
//! One document (v1.9, from `ngsi-schemas/`) answers for every published core context URL:
//! later versions only add terms, so serving v1.9 for a v1.6 or v1.8 URL expands every term
//! those versions define to the same IRI.

use std::sync::LazyLock;

use serde_json::Value;

use super::TermMap;

/// The core context document as shipped.
pub const CORE_CONTEXT_V1_9: &str = include_str!("../../ngsi-schemas/ngsi-ld-core-context-v1.9.jsonld");

/// The core context URL responses advertise.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld";

/// The versions whose URLs resolve to the built-in document.
const KNOWN_VERSIONS: &[&str] = &["1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9"];

/// The parsed core context document.
pub static DOCUMENT: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(CORE_CONTEXT_V1_9).expect("the built-in core context is valid JSON"));

/// The compiled core terms.
pub static TERMS: LazyLock<TermMap> = LazyLock::new(|| {
    let obj =
        DOCUMENT.get("@context").and_then(Value::as_object).expect("the built-in core context has an @context object");
    TermMap::compile(&[obj]).expect("the built-in core context compiles")
});

pub fn default_url() -> String {
    CORE_CONTEXT_URL.to_owned()
}

/// True when `url` names a published NGSI-LD core context this binary carries.
pub fn is_core_url(url: &str) -> bool {
    if url == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld" {
        return true;
    }
    let Some(rest) = url
        .strip_prefix("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v")
        .or_else(|| url.strip_prefix("http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v"))
    else {
        return false;
    };
    let Some(version) = rest.strip_suffix(".jsonld") else {
        return false;
    };
    KNOWN_VERSIONS.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_context_compiles_and_expands_core_terms() {
        assert!(TERMS.len() > 50);
        assert!(is_core_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"));
        assert!(is_core_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"));
        assert!(!is_core_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld"));
    }
}
