//! Configuration retrieval (`IOTA_CONFIG_RETRIEVAL`): a device asks for some of its entity's
//! attributes, once (`configuration`: read from the broker and pushed) or on every change
//! (`subscription`: the agent subscribes on the broker, and each notification on `/notify` is
//! pushed). Values go down the way commands do: `<endpoint>/configuration` over HTTP,
//! `/{apikey}/{id}/configuration/values` over MQTT, `.{apikey}.{id}.configuration.values` over AMQP.

use serde_json::{Map, Value, json};

use crate::error::{AgentError, Result};
use crate::mapping::{self, Resolved};
use crate::model::DeviceSubscription;
use crate::ngsi::client::BrokerClient;
use crate::startup::Agent;

use super::deliver::{self, Route};
use super::target;

/// A device's request.
pub async fn on_request(agent: &Agent, apikey: &str, device_id: &str, kind: &str, fields: Vec<String>) -> Result<()> {
    if !agent.settings.config_retrieval {
        tracing::debug!(device = %device_id, "configuration retrieval is off; request ignored");
        return Ok(());
    }
    let resolved = target::by_key(agent, apikey, device_id).await?;
    match kind {
        "configuration" => {
            let values = read(agent, &resolved, &fields).await?;
            push(agent, &resolved, &values).await
        }
        "subscription" => subscribe(agent, resolved, fields).await,
        other => Err(AgentError::bad_payload(format!("unknown configuration request type {other}"))),
    }
}

fn broker_of(agent: &Agent, resolved: &Resolved) -> BrokerClient {
    match resolved.group.as_ref().and_then(|g| g.cb_host.as_deref()) {
        Some(h) if !h.is_empty() => agent.broker.with_base(h),
        _ => agent.broker.clone(),
    }
}

/// The first URL of the device's `@context`, for the `Link` header of a read.
fn context_url(resolved: &Resolved) -> Option<&str> {
    match &resolved.context {
        Value::String(s) => Some(s.as_str()),
        Value::Array(a) => a.iter().find_map(Value::as_str),
        _ => None,
    }
}

/// Reads the fields from the device's entity (simplified values).
async fn read(agent: &Agent, resolved: &Resolved, fields: &[String]) -> Result<Map<String, Value>> {
    let entity = broker_of(agent, resolved)
        .entity_key_values(&target::tenant_of(&resolved.device), &resolved.entity_id, fields, context_url(resolved))
        .await?;
    Ok(values_of(&entity, fields))
}

/// The requested attributes of an entity (key-values or normalized), without `id`, `type` and
/// `@context`; every attribute when no field is named.
fn values_of(entity: &Value, fields: &[String]) -> Map<String, Value> {
    let Some(m) = entity.as_object() else { return Map::new() };
    m.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "@context"))
        .filter(|(k, _)| fields.is_empty() || fields.contains(k))
        .map(|(k, v)| {
            let v = match v {
                Value::Object(a) if a.contains_key("value") => a["value"].clone(),
                Value::Object(a) if a.contains_key("object") => a["object"].clone(),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Subscribes to the fields, once per set of fields.
async fn subscribe(agent: &Agent, resolved: Resolved, fields: Vec<String>) -> Result<()> {
    let mut triggers = fields;
    triggers.sort();
    triggers.dedup();
    if resolved.device.subscriptions.iter().any(|s| s.triggers == triggers) {
        return Ok(());
    }
    let subscription = json!({
        "@context": resolved.context,
        "type": "Subscription",
        "entities": [{"id": resolved.entity_id, "type": resolved.entity_type}],
        "watchedAttributes": triggers,
        "notification": {
            "endpoint": {"uri": format!("{}/notify", agent.settings.provider_url), "accept": "application/json"},
            "attributes": triggers,
            "format": "keyValues"
        }
    });
    let id = broker_of(agent, &resolved).subscribe(&target::tenant_of(&resolved.device), &subscription).await?;
    let mut device = resolved.device;
    device.subscriptions.push(DeviceSubscription { id, triggers });
    agent.registry.update_device(device).await
}

/// A broker notification for a configuration subscription: pushes the new values to each device
/// concerned. Notifications for unknown subscriptions are ignored.
pub async fn on_notification(agent: &Agent, service: &str, body: &Value) -> Result<()> {
    let sub = body.get("subscriptionId").and_then(Value::as_str).unwrap_or_default();
    let data = body.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    for entity in &data {
        let Some(id) = entity.get("id").and_then(Value::as_str) else { continue };
        let Some(resolved) = target::by_entity(agent, service, id).await? else {
            tracing::debug!(entity = %id, "a notification for an entity without a device");
            continue;
        };
        let Some(s) = resolved.device.subscriptions.iter().find(|s| s.id == sub || sub.ends_with(&s.id)) else {
            tracing::debug!(subscription = %sub, "a notification for a subscription the device does not have");
            continue;
        };
        let values = values_of(entity, &s.triggers);
        push(agent, &resolved, &values).await?;
    }
    Ok(())
}

/// Pushes configuration values to a device.
pub async fn push(agent: &Agent, resolved: &Resolved, values: &Map<String, Value>) -> Result<()> {
    let ul = target::is_ultralight(resolved, &agent.settings.ul_resource);
    let payload = mapping::configuration_payload(&resolved.device.device_id, values, ul, chrono::Utc::now());
    let apikey = resolved
        .device
        .apikey
        .clone()
        .or_else(|| resolved.group.as_ref().map(|g| g.apikey.clone()))
        .unwrap_or_default();
    let id = &resolved.device.device_id;
    let unreachable = |m: String| AgentError::new("DEVICE_UNREACHABLE", 502, m);
    match deliver::route(resolved, &agent.settings) {
        Route::Push(endpoint) => {
            let url = format!("{}/configuration", endpoint.trim_end_matches('/'));
            let resp = agent
                .commands
                .http
                .post(&url)
                .header("Content-Type", if ul { "text/plain" } else { "application/json" })
                .header("fiware-service", &resolved.device.service)
                .header("fiware-servicepath", &resolved.device.service_path)
                .body(payload)
                .send()
                .await
                .map_err(|e| unreachable(format!("configuration push to {url} failed: {e}")))?;
            if !resp.status().is_success() {
                return Err(unreachable(format!("the device answered {} to the configuration push", resp.status())));
            }
            Ok(())
        }
        Route::Mqtt => {
            let slash = if agent.settings.mqtt_avoid_leading_slash { "" } else { "/" };
            let topic = format!("{slash}{apikey}/{id}/configuration/values");
            let link = deliver::downlink(&agent.mqtt)
                .await
                .ok_or_else(|| unreachable("the MQTT transport is not available".into()))?;
            link.publish(&topic, payload, agent.settings.mqtt_qos, false).await
        }
        Route::Amqp => {
            let key = format!(".{apikey}.{id}.configuration.values");
            let link = deliver::downlink(&agent.amqp)
                .await
                .ok_or_else(|| unreachable("the AMQP transport is not available".into()))?;
            link.publish(&key, payload, 1, false).await
        }
        Route::Poll => Err(unreachable(format!("device {id} has no endpoint and no MQTT or AMQP transport"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_simplified_and_limited_to_the_fields() {
        let e =
            json!({"id": "x", "type": "T", "@context": "c", "a": {"type": "Property", "value": 1}, "b": "two", "c": 3});
        let v = values_of(&e, &["a".into(), "b".into()]);
        assert_eq!(Value::Object(v), json!({"a": 1, "b": "two"}));
        assert_eq!(values_of(&e, &[]).len(), 3);
    }
}
