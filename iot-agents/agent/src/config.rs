//! Settings of the agent: defaults as iotagent-json ships them, overridden by the `IOTA_*`
//! environment variables the FIWARE agents read (so existing compose files work unchanged), then
//! by Orbis's own `ORBIS_AGENT_*` variables for what upstream has no name for.

use std::path::PathBuf;

/// Everything the agent reads at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Interface every listener binds.
    pub host: String,
    /// Provisioning (northbound) API and context-provider endpoints (`IOTA_NORTH_PORT`, 4041).
    pub north_port: u16,
    /// HTTP southbound (`IOTA_HTTP_PORT`, 7896); `None` disables it.
    pub http_port: Option<u16>,
    /// The NGSI-LD broker (`IOTA_CB_URL`, or `IOTA_CB_HOST` + `IOTA_CB_PORT`).
    pub cb_url: String,
    /// Where the broker reaches this agent for commands (`IOTA_PROVIDER_URL`); empty means
    /// `http://127.0.0.1:<northbound port>`.
    pub provider_url: String,
    /// The `@context` sent with every entity (`IOTA_JSON_LD_CONTEXT`, comma-separated).
    pub json_ld_context: Vec<String>,
    /// Global `timestamp` flag (`IOTA_TIMESTAMP`; iotagent-json ships `true`).
    pub timestamp: bool,
    /// Global `autoprovision` (`IOTA_AUTOPROVISION`, default true).
    pub autoprovision: bool,
    /// Global `explicitAttrs` (`IOTA_EXPLICIT_ATTRS`, default false).
    pub explicit_attrs: bool,
    /// The API key under which devices are looked up by id alone (`IOTA_DEFAULT_KEY`).
    pub default_key: Option<String>,
    /// Resource of JSON groups (`IOTA_DEFAULT_RESOURCE`, `/iot/json`).
    pub default_resource: String,
    /// Resource of UltraLight groups (`/iot/d`).
    pub ul_resource: String,
    /// Tenant and path for inbound NGSI-LD requests that name none.
    pub fallback_tenant: Option<String>,
    pub fallback_path: Option<String>,
    /// MQTT broker (`IOTA_MQTT_HOST`, `IOTA_MQTT_PORT`); `None` host disables MQTT.
    pub mqtt_host: Option<String>,
    pub mqtt_port: u16,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// Default QoS and retain of commands sent to devices (`IOTA_MQTT_QOS`, `IOTA_MQTT_RETAIN`).
    pub mqtt_qos: u8,
    pub mqtt_retain: bool,
    /// Publish configuration values without the leading `/` (`IOTA_MQTT_AVOID_LEADING_SLASH`).
    pub mqtt_avoid_leading_slash: bool,
    /// Client id prefix (`IOTA_MQTT_CLIENT_ID`); each connection appends its number, and a random
    /// suffix when sessions are clean.
    pub mqtt_client_id: String,
    /// Clean MQTT sessions (`IOTA_MQTT_CLEAN`, default true). With `false` the connections keep
    /// persistent sessions under stable client ids (`<client id>-<n>`, so give each agent instance
    /// its own `IOTA_MQTT_CLIENT_ID`): messages Mosquitto holds for a connection that dropped are
    /// delivered when it comes back instead of being discarded.
    pub mqtt_clean: bool,
    /// MQTT connections sharing the subscriptions (`ORBIS_AGENT_MQTT_CONNECTIONS`, 16): each
    /// has its own in-flight window at the MQTT broker (Mosquitto: 20 QoS 1 messages for MQTT
    /// 3.1.1), and a message is acknowledged only once written, so the windows together bound the
    /// throughput (`cargo xtask bench --only agent`: 4 connections ≈ 6,000 measures/s, 16 ≈ 25,000).
    pub mqtt_connections: usize,
    /// Prefix of the shared-subscription group names (`ORBIS_AGENT_MQTT_SHARE_PREFIX`): the
    /// groups are `<prefix>json` and `<prefix>ul`, so agents with the same prefix split the load
    /// and agents with different prefixes each get every message.
    pub mqtt_share_prefix: String,
    /// AMQP broker URL (`IOTA_AMQP_HOST`/`PORT`/`USERNAME`/`PASSWORD`/`VHOST`); `None` disables AMQP.
    pub amqp_url: Option<String>,
    pub amqp_exchange: String,
    pub amqp_queue: String,
    /// Lifetime of a command waiting for its answer, in ms (`IOTA_POLLING_EXPIRATION`).
    pub polling_expiration_ms: u64,
    /// How often expired commands are swept, in ms (`IOTA_POLLING_DAEMON_FREQ`).
    pub polling_daemon_frequency_ms: u64,
    /// Configuration retrieval (`IOTA_CONFIG_RETRIEVAL`).
    pub config_retrieval: bool,
    /// Where the embedded registry and the measure buffer live (`ORBIS_AGENT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Log filter (`IOTA_LOG_LEVEL`: DEBUG, INFO, WARNING, ERROR, FATAL).
    pub log_level: String,
    /// Largest HTTP body accepted, in bytes (`IOTA_EXPRESS_LIMIT`, 1 MB).
    pub max_body_bytes: usize,
    /// Entities per upsert sent to the broker (`ORBIS_AGENT_BATCH_MAX`).
    pub batch_max: usize,
    /// Measures waiting for the broker, at most (`ORBIS_AGENT_QUEUE`); beyond, producers wait.
    pub queue_capacity: usize,
    /// Time-out of one request to the broker, in ms (`ORBIS_AGENT_CB_TIMEOUT_MS`).
    pub cb_timeout_ms: u64,
    /// Disk budget of the durable measure buffer, in bytes (`ORBIS_AGENT_BUFFER_MB`, 1024 MiB;
    /// 0 turns the buffer off: MQTT and AMQP messages are then acknowledged only once the broker
    /// accepted them).
    pub buffer_max_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "0.0.0.0".into(),
            north_port: 4041,
            http_port: Some(7896),
            cb_url: "http://localhost:1026".into(),
            provider_url: "http://localhost:4041".into(),
            json_ld_context: vec!["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld".into()],
            timestamp: true,
            autoprovision: true,
            explicit_attrs: false,
            default_key: Some("1234".into()),
            default_resource: "/iot/json".into(),
            ul_resource: "/iot/d".into(),
            fallback_tenant: None,
            fallback_path: None,
            mqtt_host: Some("localhost".into()),
            mqtt_port: 1883,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_qos: 0,
            mqtt_retain: false,
            mqtt_avoid_leading_slash: false,
            mqtt_client_id: "orbis-agent".into(),
            mqtt_clean: true,
            mqtt_connections: 16,
            mqtt_share_prefix: String::new(),
            amqp_url: None,
            amqp_exchange: "amq.topic".into(),
            amqp_queue: "iotaqueue".into(),
            polling_expiration_ms: 200_000,
            polling_daemon_frequency_ms: 20_000,
            config_retrieval: false,
            data_dir: PathBuf::from("orbis-agent-data"),
            log_level: "INFO".into(),
            max_body_bytes: 1024 * 1024,
            batch_max: 500,
            queue_capacity: 20_000,
            cb_timeout_ms: 10_000,
            buffer_max_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// A variable that was set but could not be read, for a warning at start.
#[derive(Debug, Clone, PartialEq)]
pub struct BadVar {
    pub name: String,
    pub value: String,
}

impl Settings {
    /// Defaults overridden by the process environment. Unreadable values keep the default and
    /// are returned for a warning.
    pub fn from_env() -> (Settings, Vec<BadVar>) {
        Self::from_vars(std::env::vars())
    }

    /// Defaults overridden by the given variables (testable without touching the environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> (Settings, Vec<BadVar>) {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let mut s = Settings::default();
        let mut bad = Vec::new();
        let get = |k: &str| vars.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let num = |k: &str, bad: &mut Vec<BadVar>| -> Option<u64> {
            let v = get(k)?;
            match v.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    bad.push(BadVar { name: k.into(), value: v });
                    None
                }
            }
        };
        let flag = |k: &str| get(k).map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));

        if let Some(h) = get("ORBIS_AGENT_HOST") {
            s.host = h;
        }
        if let Some(p) = num("IOTA_NORTH_PORT", &mut bad) {
            s.north_port = p as u16;
        }
        if let Some(v) = get("IOTA_HTTP_PORT") {
            if v.eq_ignore_ascii_case("off") {
                s.http_port = None;
            } else if let Ok(p) = v.parse::<u16>() {
                s.http_port = Some(p);
            } else {
                bad.push(BadVar { name: "IOTA_HTTP_PORT".into(), value: v });
            }
        }
        if let Some(u) = get("IOTA_CB_URL") {
            s.cb_url = u.trim_end_matches('/').to_owned();
        } else if let Some(h) = get("IOTA_CB_HOST") {
            let port = get("IOTA_CB_PORT").unwrap_or_else(|| "1026".into());
            s.cb_url = format!("http://{h}:{port}");
        }
        if let Some(u) = get("IOTA_PROVIDER_URL") {
            s.provider_url = u.trim_end_matches('/').to_owned();
        }
        if let Some(c) = get("IOTA_JSON_LD_CONTEXT") {
            s.json_ld_context = c.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect();
        }
        if let Some(b) = flag("IOTA_TIMESTAMP") {
            s.timestamp = b;
        }
        if let Some(b) = flag("IOTA_AUTOPROVISION") {
            s.autoprovision = b;
        }
        if let Some(b) = flag("IOTA_EXPLICIT_ATTRS") {
            s.explicit_attrs = b;
        }
        if let Some(k) = get("IOTA_DEFAULT_KEY") {
            s.default_key = Some(k);
        }
        if let Some(r) = get("IOTA_DEFAULT_RESOURCE") {
            s.default_resource = r;
        }
        s.fallback_tenant = get("IOTA_FALLBACK_TENANT");
        s.fallback_path = get("IOTA_FALLBACK_PATH");
        if let Some(h) = get("IOTA_MQTT_HOST") {
            s.mqtt_host = if h.eq_ignore_ascii_case("off") { None } else { Some(h) };
        }
        if let Some(p) = num("IOTA_MQTT_PORT", &mut bad) {
            s.mqtt_port = p as u16;
        }
        s.mqtt_username = get("IOTA_MQTT_USERNAME");
        s.mqtt_password = get("IOTA_MQTT_PASSWORD");
        if let Some(q) = num("IOTA_MQTT_QOS", &mut bad) {
            s.mqtt_qos = q.min(2) as u8;
        }
        if let Some(b) = flag("IOTA_MQTT_RETAIN") {
            s.mqtt_retain = b;
        }
        if let Some(b) = flag("IOTA_MQTT_AVOID_LEADING_SLASH") {
            s.mqtt_avoid_leading_slash = b;
        }
        if let Some(c) = get("IOTA_MQTT_CLIENT_ID") {
            s.mqtt_client_id = c;
        }
        if let Some(b) = flag("IOTA_MQTT_CLEAN") {
            s.mqtt_clean = b;
        }
        if let Some(n) = num("ORBIS_AGENT_MQTT_CONNECTIONS", &mut bad) {
            s.mqtt_connections = (n as usize).clamp(1, 64);
        }
        if let Some(p) = get("ORBIS_AGENT_MQTT_SHARE_PREFIX") {
            s.mqtt_share_prefix = p;
        }
        if let Some(url) = get("ORBIS_AGENT_AMQP_URL") {
            s.amqp_url = Some(url);
        } else if let Some(h) = get("IOTA_AMQP_HOST") {
            let port = get("IOTA_AMQP_PORT").unwrap_or_else(|| "5672".into());
            let user = get("IOTA_AMQP_USERNAME").unwrap_or_else(|| "guest".into());
            let pass = get("IOTA_AMQP_PASSWORD").unwrap_or_else(|| "guest".into());
            let vhost = get("IOTA_AMQP_VHOST").map(|v| v.trim_start_matches('/').to_owned()).unwrap_or_default();
            s.amqp_url = Some(format!("amqp://{user}:{pass}@{h}:{port}/{vhost}"));
        }
        if let Some(e) = get("IOTA_AMQP_EXCHANGE") {
            s.amqp_exchange = e;
        }
        if let Some(q) = get("IOTA_AMQP_QUEUE") {
            s.amqp_queue = q;
        }
        if let Some(n) = num("IOTA_POLLING_EXPIRATION", &mut bad) {
            s.polling_expiration_ms = n;
        }
        if let Some(n) = num("IOTA_POLLING_DAEMON_FREQ", &mut bad) {
            s.polling_daemon_frequency_ms = n.max(10);
        }
        if let Some(b) = flag("IOTA_CONFIG_RETRIEVAL") {
            s.config_retrieval = b;
        }
        if let Some(d) = get("ORBIS_AGENT_DATA_DIR") {
            s.data_dir = PathBuf::from(d);
        }
        if let Some(l) = get("IOTA_LOG_LEVEL") {
            s.log_level = l;
        }
        if let Some(n) = num("IOTA_EXPRESS_LIMIT", &mut bad) {
            s.max_body_bytes = n as usize;
        }
        if let Some(n) = num("ORBIS_AGENT_BATCH_MAX", &mut bad) {
            s.batch_max = (n as usize).clamp(1, 10_000);
        }
        if let Some(n) = num("ORBIS_AGENT_QUEUE", &mut bad) {
            s.queue_capacity = (n as usize).max(1);
        }
        if let Some(n) = num("ORBIS_AGENT_BUFFER_MB", &mut bad) {
            s.buffer_max_bytes = n.saturating_mul(1024 * 1024);
        }
        if let Some(n) = num("ORBIS_AGENT_CB_TIMEOUT_MS", &mut bad) {
            s.cb_timeout_ms = n.max(1);
        }
        (s, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn iota_variables_override_defaults() {
        let (s, bad) = Settings::from_vars(vars(&[
            ("IOTA_NORTH_PORT", "5041"),
            ("IOTA_CB_HOST", "orion"),
            ("IOTA_CB_PORT", "1027"),
            ("IOTA_TIMESTAMP", "false"),
            ("IOTA_JSON_LD_CONTEXT", "http://a/ctx.jsonld, http://b/ctx.jsonld"),
            ("IOTA_AMQP_HOST", "rabbit"),
            ("IOTA_MQTT_HOST", "off"),
        ]));
        assert!(bad.is_empty());
        assert_eq!(s.north_port, 5041);
        assert_eq!(s.cb_url, "http://orion:1027");
        assert!(!s.timestamp);
        assert_eq!(s.json_ld_context, vec!["http://a/ctx.jsonld", "http://b/ctx.jsonld"]);
        assert_eq!(s.amqp_url.as_deref(), Some("amqp://guest:guest@rabbit:5672/"));
        assert_eq!(s.mqtt_host, None);
    }

    #[test]
    fn unreadable_numbers_keep_the_default_and_are_reported() {
        let (s, bad) = Settings::from_vars(vars(&[("IOTA_NORTH_PORT", "abc")]));
        assert_eq!(s.north_port, 4041);
        assert_eq!(bad, vec![BadVar { name: "IOTA_NORTH_PORT".into(), value: "abc".into() }]);
    }
}
