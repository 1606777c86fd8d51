//! The expiry sweep: every `polling_daemon_frequency_ms`, a command past its expiry without a
//! result is ended with `<cmd>_status` ERROR and `<cmd>_info` `EXPIRED`, so no command stays
//! PENDING forever (iotagent-node-lib#460, #509).

use std::sync::Weak;
use std::time::Duration;

use serde_json::Value;

use crate::model::CommandStatus;
use crate::startup::Agent;

use super::{state, target};

/// Starts the sweep; it ends when the agent is dropped.
pub fn spawn(agent: Weak<Agent>) {
    tokio::spawn(async move {
        loop {
            let period = match agent.upgrade() {
                Some(a) => a.settings.polling_daemon_frequency_ms.max(10),
                None => return,
            };
            tokio::time::sleep(Duration::from_millis(period)).await;
            let Some(a) = agent.upgrade() else { return };
            sweep(&a).await;
        }
    });
}

/// Ends every expired command; returns how many.
pub async fn sweep(agent: &Agent) -> usize {
    let now = state::now_ms();
    let expired: Vec<_> = match agent.registry.all_commands().await {
        Ok(all) => all.into_iter().filter(|c| c.expires_ms <= now).collect(),
        Err(e) => {
            tracing::error!(error = %e, "could not read the pending commands");
            return 0;
        }
    };
    let mut n = 0;
    for cmd in expired {
        let device = agent.registry.get_device(&cmd.service, &cmd.subservice, &cmd.device_id, None).await;
        match device {
            Ok(Some(d)) => match target::resolve(agent, &d).await {
                Ok(resolved) => {
                    state::complete(agent, &resolved, &cmd, CommandStatus::Error, Value::from("EXPIRED")).await;
                    n += 1;
                }
                Err(e) => tracing::error!(error = %e, "could not resolve a device with an expired command"),
            },
            Ok(None) => {
                // The device was deleted: there is no entity to report on.
                let _ = agent.registry.remove_command(&cmd.id).await;
                n += 1;
            }
            Err(e) => tracing::error!(error = %e, "could not read a device with an expired command"),
        }
    }
    n
}
