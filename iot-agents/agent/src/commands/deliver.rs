//! Sends a command down to its device: HTTP push to the device's `endpoint`, a publish on MQTT
//! (`/{apikey}/{id}/cmd`) or AMQP (`.{apikey}.{id}.cmd`), or nothing for a polling device (the
//! command waits for `getCmd=1`). The route follows the device (else its group): an MQTT or
//! AMQP transport wins; then `polling: true` means polling; an endpoint means push; no endpoint
//! and no transport means MQTT when the agent has MQTT, else polling.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config::Settings;
use crate::mapping::{self, Resolved};
use crate::model::{CommandDef, CommandStatus, PendingCommand};
use crate::south::Downlink;
use crate::startup::Agent;

use super::target;

/// How long a delivery waits for a transport that is still connecting.
const TRANSPORT_WAIT: Duration = Duration::from_secs(10);
/// The largest device answer to a push kept as the command's result.
const MAX_ANSWER: usize = 64 * 1024;

/// The way a command reaches its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Push(String),
    Mqtt,
    Amqp,
    Poll,
}

/// What delivering a command did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handed to the transport; the result comes later.
    Sent,
    /// The device answered at once (HTTP push): the final status and the result.
    Answered(CommandStatus, Value),
    /// The command waits for the device to poll.
    Waiting,
    /// It could not be delivered; the reason.
    Failed(String),
}

/// Chooses the route of a device's commands.
pub fn route(resolved: &Resolved, settings: &Settings) -> Route {
    let d = &resolved.device;
    let g = resolved.group.as_ref();
    let transport = d.transport.clone().or_else(|| g.and_then(|g| g.transport.clone())).map(|t| t.to_ascii_uppercase());
    let endpoint = d.endpoint.clone().or_else(|| g.and_then(|g| g.endpoint.clone())).filter(|e| !e.is_empty());
    match (transport.as_deref(), endpoint) {
        (Some("MQTT"), _) => Route::Mqtt,
        (Some("AMQP"), _) => Route::Amqp,
        _ if d.polling == Some(true) => Route::Poll,
        (_, Some(e)) => Route::Push(e),
        (Some(_), None) => Route::Poll,
        (None, None) if settings.mqtt_host.is_some() => Route::Mqtt,
        (None, None) => Route::Poll,
    }
}

/// QoS and retain of an MQTT command: the command's `mqtt` options, else the agent's.
pub fn mqtt_options(def: Option<&CommandDef>, settings: &Settings) -> (u8, bool) {
    let opts = def.and_then(|d| d.mqtt.as_ref());
    let qos = opts
        .and_then(|o| o.qos.as_ref())
        .and_then(|q| match q {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .map(|q| q.min(2) as u8)
        .unwrap_or(settings.mqtt_qos);
    let retain = opts.and_then(|o| o.retain).unwrap_or(settings.mqtt_retain);
    (qos, retain)
}

/// The MQTT topic (or AMQP routing key, with dots) of a device's commands.
pub fn command_topic(apikey: &str, device_id: &str, amqp: bool) -> String {
    if amqp { format!(".{apikey}.{device_id}.cmd") } else { format!("/{apikey}/{device_id}/cmd") }
}

/// Delivers one recorded command.
pub async fn deliver(agent: &Agent, resolved: &Resolved, cmd: &PendingCommand) -> Outcome {
    let fallback = CommandDef { name: cmd.name.clone(), ..Default::default() };
    let def = target::command_def(resolved, &cmd.name).unwrap_or(&fallback);
    let ul = target::is_ultralight(resolved, &agent.settings.ul_resource);
    let route = route(resolved, &agent.settings);
    if route == Route::Poll {
        return Outcome::Waiting;
    }
    let payload = match mapping::command_payload(resolved, def, &cmd.value, ul) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e.message),
    };
    match route {
        Route::Push(endpoint) => push(agent, resolved, def, cmd, &endpoint, payload, ul).await,
        Route::Mqtt => {
            let (qos, retain) = mqtt_options(Some(def), &agent.settings);
            let topic = command_topic(&cmd.apikey, &cmd.device_id, false);
            publish(downlink(&agent.mqtt).await, "MQTT", &topic, payload, qos, retain).await
        }
        Route::Amqp => {
            let key = command_topic(&cmd.apikey, &cmd.device_id, true);
            publish(downlink(&agent.amqp).await, "AMQP", &key, payload, 1, false).await
        }
        Route::Poll => Outcome::Waiting,
    }
}

/// The transport, waiting a little for one that is still connecting.
pub async fn downlink(slot: &std::sync::OnceLock<Arc<dyn Downlink>>) -> Option<Arc<dyn Downlink>> {
    let deadline = tokio::time::Instant::now() + TRANSPORT_WAIT;
    loop {
        if let Some(d) = slot.get() {
            return Some(d.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish(
    link: Option<Arc<dyn Downlink>>,
    name: &str,
    topic: &str,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
) -> Outcome {
    let Some(link) = link else { return Outcome::Failed(format!("the {name} transport is not available")) };
    match link.publish(topic, payload, qos, retain).await {
        Ok(()) => Outcome::Sent,
        Err(e) => Outcome::Failed(format!("{name} publish failed: {}", e.message)),
    }
}

/// The URL of a device's `endpoint`: a URL as written, else a JEXL expression over the device
/// (`'http://gw:9001/' + id`, as iotagent-node-lib allows) that must give an http(s) URL.
fn endpoint_url(resolved: &Resolved, endpoint: &str) -> Result<String, String> {
    let trimmed = endpoint.trim();
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Ok(trimmed.to_owned());
    }
    let ctx = mapping::device_context(resolved);
    match mapping::jexl::apply(trimmed, &ctx) {
        Ok(Value::String(url)) if url.starts_with("http://") || url.starts_with("https://") => Ok(url),
        Ok(other) => Err(format!("the device endpoint {endpoint} does not give an http(s) URL: {other}")),
        Err(e) => Err(format!("the device endpoint {endpoint} is not a URL or a valid expression: {}", e.message)),
    }
}

/// POSTs the command to the device's endpoint; the device's answer is the result.
async fn push(
    agent: &Agent,
    resolved: &Resolved,
    def: &CommandDef,
    cmd: &PendingCommand,
    endpoint: &str,
    payload: Vec<u8>,
    ul: bool,
) -> Outcome {
    let endpoint = match endpoint_url(resolved, endpoint) {
        Ok(url) => url,
        Err(reason) => return Outcome::Failed(reason),
    };
    let content_type =
        def.content_type.clone().unwrap_or_else(|| (if ul { "text/plain" } else { "application/json" }).into());
    let mut rb = agent
        .commands
        .http
        .post(endpoint.as_str())
        .header("Content-Type", content_type)
        .header("fiware-service", &resolved.device.service)
        .header("fiware-servicepath", &resolved.device.service_path)
        .body(payload);
    if let Some(headers) = &def.headers {
        for (k, v) in headers {
            let value = header_value(resolved, cmd, v);
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(&value).is_ok()
            {
                rb = rb.header(k.as_str(), value);
            } else {
                tracing::warn!(header = %k, "skipping a command header that is not a valid HTTP header");
            }
        }
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("the device endpoint could not be reached: {e}")),
    };
    let status = resp.status();
    let body = match read_capped(resp, MAX_ANSWER).await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("the device answer could not be read: {e}")),
    };
    let result = answer(&body, ul);
    if status.is_success() {
        Outcome::Answered(CommandStatus::Ok, result)
    } else {
        let reason = match result {
            Value::String(s) if !s.is_empty() => s,
            Value::String(_) => String::new(),
            other => other.to_string(),
        };
        Outcome::Failed(format!(
            "the device answered {}{}",
            status.as_u16(),
            if reason.is_empty() { String::new() } else { format!(": {reason}") }
        ))
    }
}

/// Reads at most `cap` bytes of a response body; the rest is not read.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> reqwest::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(out)
}

/// A device's answer as a result: an UltraLight `dev@cmd|result` gives its result, JSON gives
/// itself, anything else the text.
fn answer(body: &[u8], ul: bool) -> Value {
    let text = String::from_utf8_lossy(body);
    if ul && let Ok((_, _, result)) = mapping::parse_ul_command_result(text.trim()) {
        return result;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| Value::from(text.into_owned()))
}

/// A custom header's value: a JEXL expression over the device and the command when it evaluates
/// to something, else the literal text.
fn header_value(resolved: &Resolved, cmd: &PendingCommand, v: &Value) -> String {
    let Value::String(text) = v else { return v.to_string() };
    let mut ctx = Map::new();
    ctx.insert("id".into(), json!(resolved.device.device_id));
    ctx.insert("deviceId".into(), json!(resolved.device.device_id));
    ctx.insert("entity_name".into(), json!(resolved.entity_id));
    ctx.insert("type".into(), json!(resolved.entity_type));
    ctx.insert("service".into(), json!(resolved.device.service));
    ctx.insert("subservice".into(), json!(resolved.device.service_path));
    ctx.insert("apikey".into(), json!(cmd.apikey));
    ctx.insert(cmd.name.clone(), cmd.value.clone());
    match crate::mapping::jexl::evaluate(text, &Value::Object(ctx)) {
        Ok(Value::String(s)) => s,
        Ok(Value::Null) | Err(_) => text.clone(),
        Ok(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, Group, MqttOptions};

    fn resolved(device: Device, group: Option<Group>, settings: &Settings) -> Resolved {
        mapping::resolve(&device, group.as_ref(), settings)
    }

    #[test]
    fn the_route_follows_transport_then_endpoint_then_mqtt_availability() {
        let mut s = Settings::default();
        let d = Device { device_id: "d".into(), ..Default::default() };
        assert_eq!(route(&resolved(d.clone(), None, &s), &s), Route::Mqtt);
        s.mqtt_host = None;
        assert_eq!(route(&resolved(d.clone(), None, &s), &s), Route::Poll);
        let pushed = Device { endpoint: Some("http://dev".into()), ..d.clone() };
        assert_eq!(route(&resolved(pushed.clone(), None, &s), &s), Route::Push("http://dev".into()));
        let g = Group { transport: Some("amqp".into()), ..Default::default() };
        assert_eq!(route(&resolved(d.clone(), Some(g.clone()), &s), &s), Route::Amqp);
        let http = Device { transport: Some("HTTP".into()), ..d.clone() };
        assert_eq!(route(&resolved(http, Some(g), &s), &s), Route::Poll);
        let polling = Device { polling: Some(true), ..pushed.clone() };
        assert_eq!(route(&resolved(polling, None, &s), &s), Route::Poll);
        let mqtt = Device { transport: Some("MQTT".into()), ..pushed };
        assert_eq!(route(&resolved(mqtt, None, &s), &s), Route::Mqtt);
    }

    #[test]
    fn command_mqtt_options_win_over_the_agent_settings() {
        let s = Settings { mqtt_qos: 1, mqtt_retain: true, ..Default::default() };
        assert_eq!(mqtt_options(None, &s), (1, true));
        let def = CommandDef {
            name: "c".into(),
            mqtt: Some(MqttOptions { qos: Some(json!("2")), retain: Some(false) }),
            ..Default::default()
        };
        assert_eq!(mqtt_options(Some(&def), &s), (2, false));
        let def = CommandDef { mqtt: Some(MqttOptions { qos: Some(json!(0)), retain: None }), ..def };
        assert_eq!(mqtt_options(Some(&def), &s), (0, true));
    }

    #[test]
    fn header_values_are_jexl_when_they_evaluate_and_literal_otherwise() {
        let s = Settings::default();
        let r = resolved(Device { device_id: "dev9".into(), service: "smart".into(), ..Default::default() }, None, &s);
        let cmd = PendingCommand {
            id: "1".into(),
            service: "smart".into(),
            subservice: "/".into(),
            device_id: "dev9".into(),
            apikey: "k".into(),
            name: "ping".into(),
            value: json!(3),
            status: CommandStatus::Pending,
            created_ms: 0,
            expires_ms: 0,
        };
        assert_eq!(header_value(&r, &cmd, &json!("'x-' + deviceId")), "x-dev9");
        assert_eq!(header_value(&r, &cmd, &json!("Bearer abc")), "Bearer abc");
        assert_eq!(header_value(&r, &cmd, &json!(12)), "12");
    }

    #[test]
    fn device_answers_become_results() {
        assert_eq!(answer(br#"{"ping":"ok"}"#, false), json!({"ping": "ok"}));
        assert_eq!(answer(b"done", false), json!("done"));
    }
}
