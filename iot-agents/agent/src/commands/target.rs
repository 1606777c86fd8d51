//! Finds the device a command concerns, with its group and effective configuration: by the entity
//! the broker names (context-provider requests, notifications) or by the API key and device id a
//! device reports with (results, polls, configuration requests).

use std::collections::HashMap;

use crate::error::{AgentError, Result};
use crate::mapping::{self, Resolved};
use crate::model::{CommandDef, Device, Group};
use crate::ngsi::client::Tenant;
use crate::registry::Scope;
use crate::startup::Agent;

/// The group a device belongs to: the one with its API key, on the resource of its protocol
/// first (UltraLight or JSON), then on the other.
pub async fn group_of(agent: &Agent, device: &Device) -> Result<Option<Group>> {
    let Some(apikey) = device.apikey.as_deref() else { return Ok(None) };
    let s = &agent.settings;
    let ul_first = device.protocol.as_deref().is_some_and(|p| p.to_ascii_uppercase().contains("UL"));
    let order = if ul_first { [&s.ul_resource, &s.default_resource] } else { [&s.default_resource, &s.ul_resource] };
    for resource in order {
        if let Some(g) = agent.registry.find_group(resource, apikey).await? {
            return Ok(Some(g));
        }
    }
    Ok(None)
}

/// Whether a device speaks UltraLight: its group serves the UltraLight resource, or its protocol
/// names UL.
pub fn is_ultralight(resolved: &Resolved, ul_resource: &str) -> bool {
    resolved.group.as_ref().is_some_and(|g| g.resource == ul_resource)
        || resolved.device.protocol.as_deref().is_some_and(|p| p.to_ascii_uppercase().contains("UL"))
}

/// The command definition of `name`: the device's, else its group's.
pub fn command_def<'a>(resolved: &'a Resolved, name: &str) -> Option<&'a CommandDef> {
    resolved
        .device
        .commands
        .iter()
        .find(|c| c.name == name)
        .or_else(|| resolved.group.as_ref().and_then(|g| g.commands.iter().find(|c| c.name == name)))
}

/// The device's tenant as the broker client takes it.
pub fn tenant_of(device: &Device) -> Tenant {
    Tenant::new(device.service.clone(), device.service_path.clone())
}

/// Resolves a device's configuration with its group.
pub async fn resolve(agent: &Agent, device: &Device) -> Result<Resolved> {
    let group = group_of(agent, device).await?;
    Ok(mapping::resolve(device, group.as_ref(), &agent.settings))
}

/// Entities remembered by [`EntityIndex`], at most; beyond, it starts afresh.
const INDEX_CAPACITY: usize = 10_000;

/// Remembers which device an entity belongs to, so a command does not scan every device of the
/// tenant. An entry is only a hint: it is checked against the registry on every use.
#[derive(Default)]
pub struct EntityIndex(parking_lot::Mutex<HashMap<(String, String), DeviceKey>>);

/// Where a device is in the registry.
#[derive(Debug, Clone)]
pub struct DeviceKey {
    subservice: String,
    device_id: String,
    apikey: Option<String>,
}

impl EntityIndex {
    fn get(&self, service: &str, entity_id: &str) -> Option<DeviceKey> {
        self.0.lock().get(&(service.to_owned(), entity_id.to_owned())).cloned()
    }

    fn put(&self, service: &str, entity_id: &str, device: &Device) {
        let mut m = self.0.lock();
        if m.len() >= INDEX_CAPACITY {
            m.clear();
        }
        let key = DeviceKey {
            subservice: device.service_path.clone(),
            device_id: device.device_id.clone(),
            apikey: device.apikey.clone(),
        };
        m.insert((service.to_owned(), entity_id.to_owned()), key);
    }

    fn forget(&self, service: &str, entity_id: &str) {
        self.0.lock().remove(&(service.to_owned(), entity_id.to_owned()));
    }
}

/// The device whose entity is `entity_id` in the service (any subservice): the broker forwards
/// only the tenant, not the path.
pub async fn by_entity(agent: &Agent, service: &str, entity_id: &str) -> Result<Option<Resolved>> {
    let index = &agent.commands.entities;
    if let Some(k) = index.get(service, entity_id) {
        let device = agent.registry.get_device(service, &k.subservice, &k.device_id, k.apikey.as_deref()).await?;
        if let Some(d) = device {
            let r = resolve(agent, &d).await?;
            if r.entity_id == entity_id {
                return Ok(Some(r));
            }
        }
        index.forget(service, entity_id);
    }
    let devices = agent.registry.list_devices(Scope::AllPaths { service }, None, 0).await?;
    // Devices of one API key share a group: look each group up once.
    let mut groups: HashMap<(Option<String>, bool), Option<Group>> = HashMap::new();
    for d in devices.items {
        let ul = d.protocol.as_deref().is_some_and(|p| p.to_ascii_uppercase().contains("UL"));
        let group = match groups.get(&(d.apikey.clone(), ul)) {
            Some(g) => g.clone(),
            None => {
                let g = group_of(agent, &d).await?;
                groups.insert((d.apikey.clone(), ul), g.clone());
                g
            }
        };
        let r = mapping::resolve(&d, group.as_ref(), &agent.settings);
        if r.entity_id == entity_id {
            index.put(service, entity_id, &d);
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// The device a southbound message comes from; the default API key looks it up by id alone.
pub async fn by_key(agent: &Agent, apikey: &str, device_id: &str) -> Result<Resolved> {
    let mut device = agent.registry.find_device(Some(apikey), device_id).await?;
    if device.is_none() && agent.settings.default_key.as_deref() == Some(apikey) {
        device = agent.registry.find_device(None, device_id).await?;
    }
    let Some(device) = device else {
        return Err(AgentError::device_not_found(format!("No device was found with id:{device_id}")));
    };
    resolve(agent, &device).await
}
