//! Registration of the agent as the context source of a device's commands and lazy attributes
//! (`cmdMode` legacy or unset), as iotagent-node-lib's `registrationUtils` does in NGSI-LD mode:
//! one exclusive `csourceRegistrations` entry per device, `updateOps` for commands and
//! `retrieveOps` for lazy attributes, pointing at `providerUrl`. The broker answers with the id
//! the device record keeps as `registrationId`, so deleting or changing the device can undo it.

use serde_json::{Value, json};

use crate::config::Settings;
use crate::error::Result;
use crate::model::{Device, Group};
use crate::ngsi::client::{BrokerClient, Tenant};
use crate::registry::Scope;
use crate::startup::Agent;

/// Serialises the provisioning writes that pair a broker registration with a registry record
/// (check, register, store), so two concurrent requests for the same device cannot both pass
/// the duplicate check. Provisioning is rare; one at a time costs nothing.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the provisioning write lock for the rest of the caller's scope.
pub async fn write_lock() -> tokio::sync::MutexGuard<'static, ()> {
    WRITES.lock().await
}

/// The names registered for a device: its commands and lazy attributes plus its group's,
/// without duplicates (upstream merges the lists before registering).
pub fn registered_names(device: &Device, group: Option<&Group>) -> (Vec<String>, Vec<String>) {
    fn merge<'a>(own: impl Iterator<Item = &'a str>, inherited: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in own.chain(inherited) {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_owned());
            }
        }
        out
    }
    let commands = merge(
        device.commands.iter().map(|c| c.name.as_str()),
        group.into_iter().flat_map(|g| g.commands.iter().map(|c| c.name.as_str())),
    );
    let lazy = merge(
        device.lazy.iter().map(|l| l.name.as_str()),
        group.into_iter().flat_map(|g| g.lazy.iter().map(|l| l.name.as_str())),
    );
    (commands, lazy)
}

/// Whether the device's commands are registered (legacy mode) rather than subscribed.
fn legacy_mode(device: &Device, group: Option<&Group>) -> bool {
    let mode = device.cmd_mode.as_deref().or(group.and_then(|g| g.cmd_mode.as_deref()));
    mode.is_none_or(|m| m.is_empty() || m.eq_ignore_ascii_case("legacy"))
}

/// The registration body for a device, or `None` when it has nothing to register.
pub fn registration_body(device: &Device, group: Option<&Group>, settings: &Settings) -> Option<Value> {
    if !legacy_mode(device, group) {
        return None;
    }
    let (commands, lazy) = registered_names(device, group);
    if commands.is_empty() && lazy.is_empty() {
        return None;
    }
    let resolved = crate::mapping::resolve(device, group, settings);
    let context_url = match &resolved.context {
        Value::Array(a) => a.iter().find_map(Value::as_str).map(str::to_owned).unwrap_or_default(),
        Value::String(s) => s.clone(),
        _ => settings.json_ld_context.first().cloned().unwrap_or_default(),
    };
    let mut operations = Vec::new();
    if !commands.is_empty() {
        operations.push("updateOps");
    }
    if !lazy.is_empty() {
        operations.push("retrieveOps");
    }
    let names: Vec<String> = commands.into_iter().chain(lazy).collect();
    Some(json!({
        "@context": resolved.context,
        "type": "ContextSourceRegistration",
        "endpoint": settings.provider_url,
        "contextSourceInfo": [{"key": "jsonldContext", "value": context_url}],
        "information": [{
            "entities": [{"id": resolved.entity_id, "type": resolved.entity_type}],
            "propertyNames": names,
        }],
        "mode": "exclusive",
        "operations": operations,
    }))
}

/// The broker a group's devices talk to (`cbHost`, else the agent's).
pub fn broker_for(agent: &Agent, group: Option<&Group>) -> BrokerClient {
    match group.and_then(|g| g.cb_host.as_deref()).filter(|h| !h.is_empty()) {
        Some(host) => agent.broker.with_base(host),
        None => agent.broker.clone(),
    }
}

/// The tenant of a device's requests to the broker.
pub fn tenant_of(device: &Device) -> Tenant {
    Tenant::new(device.service.clone(), device.service_path.clone())
}

/// The config group a device belongs to: same service and subservice, same API key.
pub async fn group_of(agent: &Agent, device: &Device) -> Result<Option<Group>> {
    let scope = Scope::One { service: &device.service, subservice: &device.service_path };
    let groups = agent.registry.list_groups(scope, None, 0).await?;
    Ok(groups.items.into_iter().find(|g| device.apikey.as_deref().is_none_or(|k| g.apikey == k)))
}

/// Registers the device's commands and lazy attributes on the broker; returns the registration
/// id, or `None` when there is nothing to register.
pub async fn register(agent: &Agent, device: &Device, group: Option<&Group>) -> Result<Option<String>> {
    let Some(body) = registration_body(device, group, &agent.settings) else {
        return Ok(None);
    };
    let id = broker_for(agent, group).register(&tenant_of(device), &body).await?;
    Ok(Some(id))
}

/// Removes the device's registration, if it has one (a registration already gone is fine).
pub async fn unregister(agent: &Agent, device: &Device, group: Option<&Group>) -> Result<()> {
    match device.registration_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => broker_for(agent, group).unregister(&tenant_of(device), id).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CommandDef, LazyAttribute};

    fn settings() -> Settings {
        Settings {
            provider_url: "http://iota:4041".into(),
            json_ld_context: vec!["http://context.json-ld".into()],
            ..Default::default()
        }
    }

    fn robot() -> Device {
        Device {
            device_id: "r2d2".into(),
            entity_name: Some("urn:ngsi-ld:Robot:r2d2".into()),
            entity_type: Some("Robot".into()),
            commands: vec![CommandDef { name: "position".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn commands_register_update_operations_exactly_as_upstream() {
        let body = registration_body(&robot(), None, &settings()).unwrap();
        assert_eq!(
            body,
            json!({
                "@context": "http://context.json-ld",
                "type": "ContextSourceRegistration",
                "endpoint": "http://iota:4041",
                "contextSourceInfo": [{"key": "jsonldContext", "value": "http://context.json-ld"}],
                "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                                 "propertyNames": ["position"]}],
                "mode": "exclusive",
                "operations": ["updateOps"]
            })
        );
    }

    #[test]
    fn lazy_attributes_add_retrieve_operations_and_group_lists_merge() {
        let mut d = robot();
        d.commands.clear();
        d.lazy = vec![LazyAttribute { name: "luminosity".into(), ..Default::default() }];
        let body = registration_body(&d, None, &settings()).unwrap();
        assert_eq!(body["operations"], json!(["retrieveOps"]));

        let g = Group {
            commands: vec![CommandDef { name: "ping".into(), ..Default::default() }],
            lazy: vec![LazyAttribute { name: "luminosity".into(), ..Default::default() }],
            ..Default::default()
        };
        let body = registration_body(&d, Some(&g), &settings()).unwrap();
        assert_eq!(body["operations"], json!(["updateOps", "retrieveOps"]));
        assert_eq!(body["information"][0]["propertyNames"], json!(["ping", "luminosity"]));
    }

    #[test]
    fn nothing_is_registered_without_commands_or_in_notification_mode() {
        let mut d = robot();
        d.cmd_mode = Some("notification".into());
        assert!(registration_body(&d, None, &settings()).is_none());
        d.cmd_mode = None;
        d.commands.clear();
        assert!(registration_body(&d, None, &settings()).is_none());
    }
}
