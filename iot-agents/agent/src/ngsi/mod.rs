//! Northbound NGSI-LD: the HTTP client the agent uses to talk to any NGSI-LD broker (ours or
//! Orion-LD) and the batching writer that turns measures into upserts without losing any.

pub mod buffer;
pub mod client;
pub mod writer;
