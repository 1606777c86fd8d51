//! The query engine's pure parts: the `q` language, and later `scopeQ`, geo-queries and the
//! type selection language. Parsers keep positions for their errors; evaluators work on a
//! stored entity; nothing here does I/O, so subscriptions and registrations reuse it.

pub mod q;
pub mod scope;
pub mod types;
