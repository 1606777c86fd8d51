//! Writes `<cmd>_status` and `<cmd>_info` to the broker off the request's critical path, without
//! losing or reordering them: every change goes through one bounded queue drained by one task,
//! so a later status (OK) can never be overwritten by an earlier one (PENDING) that happened to
//! be sent later. Changes waiting together are merged per entity into one upsert per tenant, and
//! a failed upsert is retried with back-off before it is logged and counted as lost.

use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::mapping::Resolved;
use crate::metrics::Metrics;
use crate::model::CommandStatus;
use crate::ngsi::client::Tenant;
use crate::startup::Agent;

/// Status changes waiting for the broker, at most; beyond, producers wait.
const QUEUE: usize = 10_000;
/// Changes merged into one round of upserts, at most.
const BATCH: usize = 200;
/// Attempts of one upsert before the change is given up (and logged).
const ATTEMPTS: u32 = 5;

/// One change of a command's attributes in the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub tenant: Tenant,
    /// The group's `cbHost`, when it has one.
    pub cb_host: Option<String>,
    /// The entity fragment: `@context`, `id`, `type`, `<cmd>_status` and maybe `<cmd>_info`.
    pub entity: Value,
}

impl StatusUpdate {
    /// The change setting `<cmd>_status` (and `<cmd>_info` when given) on the device's entity.
    pub fn new(resolved: &Resolved, command: &str, status: CommandStatus, info: Option<Value>) -> StatusUpdate {
        let mut e = Map::new();
        e.insert("@context".into(), resolved.context.clone());
        e.insert("id".into(), Value::from(resolved.entity_id.clone()));
        e.insert("type".into(), Value::from(resolved.entity_type.clone()));
        e.insert(format!("{command}_status"), json!({"type": "Property", "value": status.as_str()}));
        if let Some(info) = info {
            // NGSI-LD has no null property value; an empty answer is recorded as an empty string.
            let info = if info.is_null() { Value::from("") } else { info };
            e.insert(format!("{command}_info"), json!({"type": "Property", "value": info}));
        }
        StatusUpdate {
            tenant: Tenant::new(resolved.device.service.clone(), resolved.device.service_path.clone()),
            cb_host: resolved.group.as_ref().and_then(|g| g.cb_host.clone()),
            entity: Value::Object(e),
        }
    }
}

/// The queue of status changes and, until started, its receiving end.
pub struct StatusWriter {
    tx: mpsc::Sender<StatusUpdate>,
    rx: Mutex<Option<mpsc::Receiver<StatusUpdate>>>,
}

impl Default for StatusWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusWriter {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        StatusWriter { tx, rx: Mutex::new(Some(rx)) }
    }

    /// Queues a change; waits while the queue is full.
    pub async fn send(&self, update: StatusUpdate) {
        if self.tx.send(update).await.is_err() {
            tracing::error!("the command status writer has stopped; a status change is lost");
        }
    }

    /// Starts the task draining the queue (once; later calls do nothing). The task ends when the
    /// agent is dropped.
    pub fn start(&self, agent: Weak<Agent>) {
        let Some(mut rx) = self.rx.lock().take() else { return };
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let Some(agent) = agent.upgrade() else { break };
                for (tenant, cb_host, entities) in merge(std::mem::take(&mut batch)) {
                    write(&agent, &tenant, cb_host.as_deref(), &entities).await;
                }
            }
        });
    }
}

/// Groups changes by tenant and broker, merging the changes of one entity in arrival order (a
/// later value of an attribute replaces an earlier one).
fn merge(updates: Vec<StatusUpdate>) -> Vec<(Tenant, Option<String>, Vec<Value>)> {
    let mut groups: Vec<(Tenant, Option<String>, Vec<Value>)> = Vec::new();
    for u in updates {
        let idx = match groups.iter().position(|(t, c, _)| *t == u.tenant && *c == u.cb_host) {
            Some(i) => i,
            None => {
                groups.push((u.tenant.clone(), u.cb_host.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let entities = &mut groups[idx].2;
        let id = u.entity.get("id").cloned();
        match entities.iter_mut().find(|e| e.get("id") == id.as_ref()) {
            Some(Value::Object(existing)) => {
                if let Value::Object(m) = u.entity {
                    existing.extend(m);
                }
            }
            _ => entities.push(u.entity),
        }
    }
    groups
}

/// Upserts with retries; a change that still fails is logged and counted.
async fn write(agent: &Agent, tenant: &Tenant, cb_host: Option<&str>, entities: &[Value]) {
    let broker = match cb_host {
        Some(h) if !h.is_empty() => agent.broker.with_base(h),
        _ => agent.broker.clone(),
    };
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match broker.upsert(tenant, entities).await {
            Ok(()) => return,
            Err(e) if attempt < ATTEMPTS && (e.status >= 500 || e.status == 429) => {
                tracing::warn!(error = %e, attempt, "command status upsert failed; retrying");
                Metrics::inc(&agent.metrics.upsert_retries);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, tenant = %tenant.service, entities = ?entities, "command status lost");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(tenant: &str, id: &str, attr: &str, v: &str) -> StatusUpdate {
        StatusUpdate {
            tenant: Tenant::new(tenant, "/"),
            cb_host: None,
            entity: json!({"id": id, "type": "T", attr: {"type": "Property", "value": v}}),
        }
    }

    #[test]
    fn later_changes_of_an_entity_replace_earlier_ones_and_tenants_stay_apart() {
        let groups = merge(vec![
            update("a", "e1", "x_status", "PENDING"),
            update("b", "e1", "x_status", "PENDING"),
            update("a", "e2", "y_status", "PENDING"),
            update("a", "e1", "x_status", "OK"),
            update("a", "e1", "x_info", "done"),
        ]);
        assert_eq!(groups.len(), 2);
        let (t, _, a) = &groups[0];
        assert_eq!(t.service, "a");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0]["x_status"]["value"], "OK");
        assert_eq!(a[0]["x_info"]["value"], "done");
        assert_eq!(a[1]["y_status"]["value"], "PENDING");
        assert_eq!(groups[1].2[0]["x_status"]["value"], "PENDING");
    }
}
