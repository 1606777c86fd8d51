//! Orbis: an NGSI-LD context broker (ETSI GS CIM 009 v1.9.1), a drop-in replacement for
//! FIWARE Orion-LD. See ARCHITECTURE.md for the module map and its invariants.

pub mod config;
pub mod entity_maps;
pub mod error;
pub mod forward;
pub mod http;
pub mod jsonld;
pub mod model;
pub mod notify;
pub mod openapi;
pub mod ops;
pub mod query;
pub mod registry;
pub mod render;
pub mod startup;
pub mod store;
pub mod temporal;
