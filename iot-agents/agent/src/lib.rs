//! Orbis IoT agent: a drop-in replacement for FIWARE's iotagent-json and iotagent-ul in NGSI-LD
//! mode. Devices report measures in JSON or UltraLight 2.0 over MQTT, HTTP or AMQP; the agent maps
//! them to NGSI-LD entities and upserts them into any NGSI-LD broker over HTTP, and carries
//! commands the broker forwards back down to the devices.

pub mod commands;
pub mod config;
pub mod error;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod ngsi;
pub mod north;
pub mod registry;
pub mod south;
pub mod startup;
