//! Commands in NGSI-LD mode: the broker forwards updates of command attributes to the agent's
//! context-provider endpoints; the agent answers 204, records the command (`<cmd>_status`
//! PENDING), delivers it (MQTT, AMQP, HTTP push, or HTTP polling), and records the device's answer
//! (`OK`/`ERROR` with `<cmd>_info`) or the expiry.
//!
//! The functions below are the contract the southbound transports call. The work is split by
//! concern: `target` finds the device behind an entity or an API key, `state` is the command
//! state machine over the registry's pending commands, `status` writes `<cmd>_status`/`<cmd>_info`
//! to the broker in order, `deliver` sends commands down, `expiry` sweeps the expired ones,
//! `configuration` serves configuration retrieval, and `provider` holds the HTTP routes.

mod configuration;
mod deliver;
mod expiry;
mod provider;
mod state;
mod status;
mod target;

use std::sync::Arc;

use serde_json::Value;

use crate::error::Result;
use crate::model::PendingCommand;
use crate::startup::Agent;

pub use status::StatusWriter;

/// What the commands module keeps for the agent's lifetime: the ordered status writer, the
/// HTTP client used to push commands and configuration to devices, and the entity → device index.
pub struct Commands {
    pub(crate) status: StatusWriter,
    pub(crate) http: reqwest::Client,
    pub(crate) entities: target::EntityIndex,
}

impl Commands {
    pub fn new(settings: &crate::config::Settings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(settings.cb_timeout_ms))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Commands { status: StatusWriter::new(), http, entities: target::EntityIndex::default() }
    }
}

/// A device answered commands (`cmdexe`, `/iot/json/commands`, UltraLight `dev@cmd|result`):
/// records `<cmd>_status` OK and `<cmd>_info` for each and forgets the pending command.
pub async fn on_results(agent: &Agent, apikey: &str, device_id: &str, results: Vec<(String, Value)>) -> Result<()> {
    state::on_results(agent, apikey, device_id, results).await
}

/// A polling device asks for its commands (`getCmd=1`): returns them oldest first and marks them
/// DELIVERED.
pub async fn poll(agent: &Agent, apikey: &str, device_id: &str) -> Result<Vec<PendingCommand>> {
    state::poll(agent, apikey, device_id).await
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
    configuration::on_request(agent, apikey, device_id, kind, fields).await
}

/// Registers the context-provider routes (`/ngsi-ld/v1/entities/{id}/attrs[/{attr}]`, `/notify`).
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    provider::configure(cfg);
}

/// Starts the background work of commands: the ordered writer of `<cmd>_status`/`<cmd>_info`,
/// the expiry sweep, and the delivery of commands recorded before a restart but never sent.
pub fn start(agent: Arc<Agent>) {
    agent.commands.status.start(Arc::downgrade(&agent));
    expiry::spawn(Arc::downgrade(&agent));
    tokio::spawn(async move { state::redeliver(&agent).await });
}
