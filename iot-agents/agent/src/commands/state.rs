//! The command state machine over the registry's pending commands:
//!
//! * accepted → PENDING (recorded, `<cmd>_status` PENDING);
//! * PENDING → delivered: published on MQTT/AMQP (kept, waiting for the result) or fetched by a
//!   polling device (`<cmd>_status` DELIVERED);
//! * PENDING/delivered → OK or ERROR: the device's result, an HTTP push answer, a failed delivery,
//!   or the expiry (ERROR, `EXPIRED`); the command is then forgotten.
//!
//! A command is recorded before it is acknowledged, so it survives a restart: at start, commands
//! recorded but never handed to a transport are delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::error::{AgentError, Result};
use crate::mapping::Resolved;
use crate::metrics::Metrics;
use crate::model::{CommandStatus, PendingCommand};
use crate::startup::Agent;

use super::deliver::{self, Outcome, Route};
use super::status::StatusUpdate;
use super::target;

/// Commands waiting for one device, at most; more are refused until some are answered.
pub const MAX_PENDING_PER_DEVICE: usize = 100;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A command id that sorts in creation order, so commands created in the same millisecond still
/// come out oldest first.
fn new_id(now: i64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{now:013}-{seq:012}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The API key a device's commands are addressed with: its own, else its group's, else the
/// agent's default key.
fn apikey_of(resolved: &Resolved, default_key: Option<&str>) -> String {
    resolved
        .device
        .apikey
        .clone()
        .or_else(|| resolved.group.as_ref().map(|g| g.apikey.clone()))
        .or_else(|| default_key.map(str::to_owned))
        .unwrap_or_default()
}

/// Records commands for a device (PENDING) and returns them, in order. Nothing is recorded when
/// the device already has too many waiting.
pub async fn accept(agent: &Agent, resolved: &Resolved, commands: Vec<(String, Value)>) -> Result<Vec<PendingCommand>> {
    let d = &resolved.device;
    let waiting = agent.registry.device_commands(&d.service, &d.service_path, &d.device_id).await?.len();
    if waiting + commands.len() > MAX_PENDING_PER_DEVICE {
        return Err(AgentError::new(
            "TOO_MANY_COMMANDS",
            429,
            format!("device {} already has {waiting} commands waiting", d.device_id),
        ));
    }
    let apikey = apikey_of(resolved, agent.settings.default_key.as_deref());
    let mut out = Vec::with_capacity(commands.len());
    for (name, value) in commands {
        let now = now_ms();
        let cmd = PendingCommand {
            id: new_id(now),
            service: d.service.clone(),
            subservice: d.service_path.clone(),
            device_id: d.device_id.clone(),
            apikey: apikey.clone(),
            name,
            value,
            status: CommandStatus::Pending,
            created_ms: now,
            expires_ms: now.saturating_add(i64::try_from(agent.settings.polling_expiration_ms).unwrap_or(i64::MAX)),
        };
        // The PENDING change is queued before the command becomes visible to pollers, so a
        // DELIVERED queued by a fast poll always comes after it.
        agent.commands.status.send(StatusUpdate::new(resolved, &cmd.name, CommandStatus::Pending, None)).await;
        if let Err(e) = agent.registry.put_command(cmd.clone()).await {
            let info = Value::from(format!("the command could not be recorded: {}", e.message));
            agent.commands.status.send(StatusUpdate::new(resolved, &cmd.name, CommandStatus::Error, Some(info))).await;
            return Err(e);
        }
        Metrics::inc(&agent.metrics.commands_received);
        out.push(cmd);
    }
    Ok(out)
}

/// Delivers accepted commands in order and records what came of each.
pub async fn dispatch(agent: &Agent, resolved: &Resolved, commands: Vec<PendingCommand>) {
    for cmd in commands {
        let outcome = deliver::deliver(agent, resolved, &cmd).await;
        apply(agent, resolved, cmd, outcome).await;
    }
}

async fn apply(agent: &Agent, resolved: &Resolved, mut cmd: PendingCommand, outcome: Outcome) {
    match outcome {
        Outcome::Waiting => {}
        Outcome::Sent => {
            // The device may have answered already; only a command still waiting is updated.
            let still = agent
                .registry
                .device_commands(&cmd.service, &cmd.subservice, &cmd.device_id)
                .await
                .is_ok_and(|cs| cs.iter().any(|c| c.id == cmd.id));
            if still {
                cmd.status = CommandStatus::Delivered;
                if let Err(e) = agent.registry.put_command(cmd).await {
                    tracing::error!(error = %e, "could not record a command as delivered");
                }
            }
        }
        Outcome::Answered(status, result) => complete(agent, resolved, &cmd, status, result).await,
        Outcome::Failed(reason) => {
            tracing::warn!(device = %cmd.device_id, command = %cmd.name, %reason, "command delivery failed");
            complete(agent, resolved, &cmd, CommandStatus::Error, Value::from(reason)).await
        }
    }
}

/// Ends a command: forgets it, records the final status and result, and clears a retained MQTT
/// command so a device reconnecting later does not run it again.
pub async fn complete(agent: &Agent, resolved: &Resolved, cmd: &PendingCommand, status: CommandStatus, info: Value) {
    if let Err(e) = agent.registry.remove_command(&cmd.id).await {
        tracing::error!(error = %e, "could not forget a finished command");
    }
    agent.commands.status.send(StatusUpdate::new(resolved, &cmd.name, status, Some(info))).await;
    Metrics::inc(&agent.metrics.commands_completed);
    clear_retained(agent, resolved, &cmd.apikey, &cmd.name).await;
}

async fn clear_retained(agent: &Agent, resolved: &Resolved, apikey: &str, name: &str) {
    if deliver::route(resolved, &agent.settings) != Route::Mqtt {
        return;
    }
    let (qos, retain) = deliver::mqtt_options(target::command_def(resolved, name), &agent.settings);
    if !retain {
        return;
    }
    if let Some(link) = agent.mqtt.get() {
        let topic = deliver::command_topic(apikey, &resolved.device.device_id, false);
        if let Err(e) = link.publish(&topic, Vec::new(), qos, true).await {
            tracing::warn!(error = %e, %topic, "could not clear a retained command");
        }
    }
}

/// Whether a device's result reports a failure: a text result `ERROR` or starting `ERROR:`.
fn is_error(result: &Value) -> bool {
    result.as_str().is_some_and(|s| {
        let s = s.trim_start().to_ascii_uppercase();
        s == "ERROR" || s.starts_with("ERROR:") || s.starts_with("ERROR ")
    })
}

/// Results reported by a device.
pub async fn on_results(agent: &Agent, apikey: &str, device_id: &str, results: Vec<(String, Value)>) -> Result<()> {
    let resolved = target::by_key(agent, apikey, device_id).await?;
    let d = &resolved.device;
    let mut waiting = agent.registry.device_commands(&d.service, &d.service_path, &d.device_id).await?;
    for (name, result) in results {
        let pos = waiting.iter().position(|c| c.name == name);
        if pos.is_none() && target::command_def(&resolved, &name).is_none() {
            tracing::warn!(device = %device_id, command = %name, "a result for a command the device does not have");
            continue;
        }
        let status = if is_error(&result) { CommandStatus::Error } else { CommandStatus::Ok };
        let cmd = match pos {
            Some(i) => waiting.remove(i),
            None => PendingCommand {
                id: String::new(),
                service: d.service.clone(),
                subservice: d.service_path.clone(),
                device_id: d.device_id.clone(),
                apikey: apikey.to_owned(),
                name,
                value: Value::Null,
                status,
                created_ms: 0,
                expires_ms: 0,
            },
        };
        complete(agent, &resolved, &cmd, status, result).await;
    }
    Ok(())
}

/// Hands a polling device its waiting commands, oldest first, and records them DELIVERED.
pub async fn poll(agent: &Agent, apikey: &str, device_id: &str) -> Result<Vec<PendingCommand>> {
    let resolved = target::by_key(agent, apikey, device_id).await?;
    if deliver::route(&resolved, &agent.settings) != Route::Poll {
        return Ok(Vec::new());
    }
    let d = &resolved.device;
    let mut out = Vec::new();
    for mut cmd in agent.registry.device_commands(&d.service, &d.service_path, &d.device_id).await? {
        if cmd.status != CommandStatus::Pending {
            continue;
        }
        cmd.status = CommandStatus::Delivered;
        agent.registry.put_command(cmd.clone()).await?;
        agent.commands.status.send(StatusUpdate::new(&resolved, &cmd.name, CommandStatus::Delivered, None)).await;
        out.push(cmd);
    }
    Ok(out)
}

/// Delivers the commands recorded before a restart but never handed to a transport.
pub async fn redeliver(agent: &Arc<Agent>) {
    let commands = match agent.registry.all_commands().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "could not read the pending commands");
            return;
        }
    };
    let now = now_ms();
    let mut todo: Vec<PendingCommand> =
        commands.into_iter().filter(|c| c.status == CommandStatus::Pending && c.expires_ms > now).collect();
    todo.sort_by(|a, b| a.id.cmp(&b.id));
    for cmd in todo {
        let device = agent.registry.get_device(&cmd.service, &cmd.subservice, &cmd.device_id, None).await;
        let resolved = match device {
            Ok(Some(d)) => match target::resolve(agent, &d).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "could not resolve a device with a pending command");
                    continue;
                }
            },
            Ok(None) => {
                // The device is gone: nobody can receive or answer the command.
                let _ = agent.registry.remove_command(&cmd.id).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read a device with a pending command");
                continue;
            }
        };
        let outcome = deliver::deliver(agent, &resolved, &cmd).await;
        apply(agent, &resolved, cmd, outcome).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_sort_in_creation_order() {
        let a = new_id(5);
        let b = new_id(5);
        let c = new_id(6);
        assert!(a < b && b < c);
    }

    #[test]
    fn only_explicit_error_texts_are_failures() {
        assert!(is_error(&json!("ERROR")));
        assert!(is_error(&json!("error: motor jammed")));
        assert!(!is_error(&json!("ok")));
        assert!(!is_error(&json!("errors=0")));
        assert!(!is_error(&json!({"error": 1})));
    }
}
