//! Settings: compiled-in defaults (`config/default.toml`), then a config file, then `ORBIS_*`
//! and Orion-LD's `ORIONLD_*` environment variables, then command-line flags — Orbis's own
//! (`--port 1026`, `--port=1026`) and Orion-LD's single-dash ones (`-port 1026`).
//!
//! Orion-LD flags Orbis does not implement are accepted with a warning, never rejected:
//! existing compose files pass them.

use std::path::PathBuf;

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// The broker's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub multiservice: bool,
    pub log_level: String,
    pub page_size: usize,
    pub max_body_bytes: usize,
    pub cors_origin: String,
    pub cors_max_age: u64,
    pub context_timeout_ms: u64,
    pub public_url: String,
    pub workers: usize,
    /// Time-out of one notification attempt, in milliseconds (Orion-LD: -httpTimeout).
    pub notification_timeout_ms: u64,
    /// How long an undelivered notification is retried, in seconds.
    pub notification_retry_window_secs: u64,
    /// Notifications held in memory; more wait in the durable outbox.
    pub notification_queue: usize,
    /// Notifications in flight at once.
    pub notification_concurrency: usize,
    /// Time-out of a request forwarded to a context source, in milliseconds (Orion-LD:
    /// -distOpTimeout); a registration's management.timeout overrides it.
    pub forward_timeout_ms: u64,
    /// Lifetime of an entity map when the client asks for none, in seconds.
    pub entity_map_lifetime_secs: u64,
    /// Longest lifetime an entity map is granted, in seconds (longer requests are clamped).
    pub entity_map_max_lifetime_secs: u64,
    /// Entity maps held at once (the one expiring soonest is evicted beyond).
    pub entity_maps_max: usize,
    /// Entity ids in one entity map (a query matching more cannot make a map).
    pub entity_map_max_ids: usize,
    /// Largest log segment of the embedded store, in bytes (segments are zero-filled up front).
    pub store_segment_max_bytes: u64,
    /// Obsolete log records the embedded store keeps before it compacts, in bytes (it also waits
    /// until they are over half of the data directory).
    pub store_compact_min_bytes: u64,
    /// Records the entity API's writes as temporal evolution (Orion-LD: -troe, ORIONLD_TROE).
    pub troe: bool,
    /// The most attribute instances one temporal entity holds in an answer; beyond it the answer
    /// is 206 with a Content-Range the client continues from (GS CIM 009 §6.3.10).
    pub temporal_max_instances: usize,
}

/// Where a setting came from, for warnings.
#[derive(Debug, Default)]
pub struct Loaded {
    pub settings: Settings,
    /// Flags or variables accepted but not implemented, with what was given.
    pub ignored: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        toml::from_str(DEFAULTS).expect("config/default.toml is valid")
    }
}

/// Orion-LD flag → Orbis key, for flags Orbis implements. The bool says whether it takes a value.
const ORION_FLAGS: &[(&str, &str, bool)] = &[
    ("port", "port", true),
    ("localIp", "host", true),
    ("multiservice", "multiservice", false),
    ("logLevel", "log_level", true),
    ("pageSize", "page_size", true),
    ("inReqPayloadMaxSize", "max_body_bytes", true),
    ("corsOrigin", "cors_origin", true),
    ("corsMaxAge", "cors_max_age", true),
    ("ctxTimeout", "context_timeout_ms", true),
    ("httpTimeout", "notification_timeout_ms", true),
    ("distOpTimeout", "forward_timeout_ms", true),
    ("troe", "troe", false),
    ("configFile", "config", true),
    // Orbis always runs in the foreground: -fg changes nothing and needs no warning.
    ("fg", "foreground", false),
];

/// Orion-LD flags accepted and ignored; the bool says whether it takes a value.
const ORION_IGNORED: &[(&str, bool)] = &[
    ("ipv4", false),
    ("ipv6", false),
    ("dbhost", true),
    ("dbURI", true),
    ("db", true),
    ("dbuser", true),
    ("dbpwd", true),
    ("rplSet", true),
    ("dbAuthMech", true),
    ("dbAuthDb", true),
    ("dbSSL", false),
    ("dbCertFile", true),
    ("dbPoolSize", true),
    ("dbTimeout", true),
    ("writeConcern", true),
    ("experimental", false),
    ("mongocOnly", false),
    ("forwarding", false),
    ("distributed", false),
    ("wip", true),
    ("troeHost", true),
    ("troePort", true),
    ("troeUser", true),
    ("troePwd", true),
    ("troePoolSize", true),
    ("troeSslMode", true),
    ("pernot", false),
    ("subCacheIval", true),
    ("subCacheFlushIval", true),
    ("cSubCounters", true),
    ("noCache", false),
    ("notificationMode", true),
    ("reqTimeout", true),
    ("maxConnections", true),
    ("connectionMemory", true),
    ("reqPoolSize", true),
    ("outReqMsgMaxSize", true),
    ("https", false),
    ("key", true),
    ("cert", true),
    ("coreContext", true),
    ("ctxAttempts", true),
    ("duc", true),
    ("noNotifyFalseUpdate", false),
    ("triggerOperation", false),
    ("idIndex", false),
    ("brokerId", true),
    ("subordinateEndpoint", true),
    ("disableFileLog", false),
    ("logForHumans", false),
    ("ngsiv1Autocast", false),
    ("logDir", true),
    ("t", true),
    ("logAppend", false),
    ("insecureNotif", false),
    ("disableCustomNotifications", false),
    ("strictNgsiv1Ids", false),
    ("statCounters", false),
    ("promPort", true),
    ("ha", true),
    ("coreContextDir", true),
    ("socketService", false),
    ("ssPort", true),
    ("mongocOnly", false),
];

/// `ORIONLD_*` variables Orbis implements.
const ORION_ENV: &[(&str, &str)] = &[
    ("ORIONLD_PORT", "port"),
    ("ORIONLD_LOCALIP", "host"),
    ("ORIONLD_MULTI_SERVICE", "multiservice"),
    ("ORIONLD_LOG_LEVEL", "log_level"),
    ("ORIONLD_PAGE_SIZE", "page_size"),
    ("ORIONLD_IN_REQ_PAYLOAD_MAX_SIZE", "max_body_bytes"),
    ("ORIONLD_CORS_ALLOWED_ORIGIN", "cors_origin"),
    ("ORIONLD_CORS_MAX_AGE", "cors_max_age"),
    ("ORIONLD_CONTEXT_DOWNLOAD_TIMEOUT", "context_timeout_ms"),
    ("ORIONLD_TROE", "troe"),
];

impl Settings {
    /// Sets one key from its string form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let num = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("{key}: {v:?} is not a number"));
        match key {
            "host" => self.host = value.to_owned(),
            "port" => self.port = u16::try_from(num(value)?).map_err(|_| format!("port {value} is out of range"))?,
            "data_dir" => self.data_dir = PathBuf::from(value),
            "multiservice" => {
                self.multiservice = parse_bool(value).ok_or(format!("{key}: {value:?} is not a boolean"))?
            }
            "log_level" => {
                self.log_level = normalize_log_level(value).ok_or(format!("{key}: unknown level {value:?}"))?
            }
            "page_size" => self.page_size = num(value)? as usize,
            "max_body_bytes" => {
                self.max_body_bytes = parse_size(value).ok_or(format!("{key}: {value:?} is not a size"))?
            }
            "cors_origin" => self.cors_origin = value.to_owned(),
            "cors_max_age" => self.cors_max_age = num(value)?,
            "context_timeout_ms" => self.context_timeout_ms = num(value)?,
            "public_url" => self.public_url = value.to_owned(),
            "workers" => self.workers = num(value)? as usize,
            "notification_timeout_ms" => self.notification_timeout_ms = num(value)?.max(1),
            "notification_retry_window_secs" => self.notification_retry_window_secs = num(value)?,
            "notification_queue" => self.notification_queue = (num(value)? as usize).max(1),
            "forward_timeout_ms" => self.forward_timeout_ms = num(value)?.max(1),
            "notification_concurrency" => self.notification_concurrency = (num(value)? as usize).max(1),
            "entity_map_lifetime_secs" => self.entity_map_lifetime_secs = num(value)?.max(1),
            "entity_map_max_lifetime_secs" => self.entity_map_max_lifetime_secs = num(value)?.max(1),
            "entity_maps_max" => self.entity_maps_max = (num(value)? as usize).max(1),
            "entity_map_max_ids" => self.entity_map_max_ids = (num(value)? as usize).max(1),
            "store_segment_max_bytes" => {
                self.store_segment_max_bytes =
                    (parse_size(value).ok_or(format!("{key}: {value:?} is not a size"))? as u64).max(4096)
            }
            "temporal_max_instances" => self.temporal_max_instances = (num(value)? as usize).max(1),
            "troe" => self.troe = parse_bool(value).ok_or(format!("{key}: {value:?} is not a boolean"))?,
            "store_compact_min_bytes" => {
                self.store_compact_min_bytes =
                    parse_size(value).ok_or(format!("{key}: {value:?} is not a size"))? as u64
            }
            _ => return Err(format!("unknown setting {key}")),
        }
        Ok(())
    }

    /// The notifier's settings.
    pub fn notify_settings(&self) -> crate::notify::NotifySettings {
        crate::notify::NotifySettings {
            timeout: std::time::Duration::from_millis(self.notification_timeout_ms),
            retry_window: std::time::Duration::from_secs(self.notification_retry_window_secs),
            queue: self.notification_queue,
            concurrency: self.notification_concurrency,
        }
    }

    /// The bounds of the entity map store.
    pub fn entity_map_settings(&self) -> crate::entity_maps::EntityMapSettings {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        crate::entity_maps::EntityMapSettings {
            default_lifetime_ms: ms(self.entity_map_lifetime_secs.min(self.entity_map_max_lifetime_secs)),
            max_lifetime_ms: ms(self.entity_map_max_lifetime_secs),
            max_maps: self.entity_maps_max,
            max_ids: self.entity_map_max_ids,
        }
    }

    /// The embedded store's log sizes.
    pub fn log_config(&self) -> crate::store::log::LogConfig {
        let max_segment = self.store_segment_max_bytes;
        crate::store::log::LogConfig {
            first_segment: crate::store::log::LogConfig::default().first_segment.min(max_segment),
            max_segment,
            compact_min: self.store_compact_min_bytes,
        }
    }

    /// The base URL hosted contexts are published under.
    pub fn public_base(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://localhost:{}", self.port)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Accepts `1048576`, `1MB`, `64KB`, `2M`.
fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim().to_ascii_uppercase();
    let (digits, mult) = if let Some(d) = v.strip_suffix("MB").or_else(|| v.strip_suffix('M')) {
        (d, 1024 * 1024)
    } else if let Some(d) = v.strip_suffix("KB").or_else(|| v.strip_suffix('K')) {
        (d, 1024)
    } else {
        (v.as_str(), 1)
    };
    digits.trim().parse::<usize>().ok().map(|n| n * mult)
}

/// Maps Orion-LD's levels (NONE, FATAL, ERROR, WARN, INFO, DEBUG) and ours to tracing levels.
fn normalize_log_level(v: &str) -> Option<String> {
    Some(
        match v.to_ascii_lowercase().as_str() {
            "none" | "off" => "off",
            "fatal" | "error" => "error",
            "warn" | "warning" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            _ => return None,
        }
        .to_owned(),
    )
}

/// Loads settings from the environment and the given arguments (without the program name).
pub fn load(args: &[String], env: &[(String, String)]) -> Result<Loaded, String> {
    let mut ignored = Vec::new();
    // Pass 1: find a config file.
    let mut config_file = env.iter().find(|(k, _)| k == "ORBIS_CONFIG").map(|(_, v)| v.clone());
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim_start_matches('-');
        if let Some(v) = a.strip_prefix("config=").or_else(|| a.strip_prefix("configFile=")) {
            config_file = Some(v.to_owned());
        } else if (a == "config" || a == "configFile") && i + 1 < args.len() {
            config_file = Some(args[i + 1].clone());
        }
        i += 1;
    }
    let mut settings = Settings::default();
    if let Some(path) = &config_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {path}: {e}"))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| format!("config file {path}: {e}"))?;
        for (k, v) in table {
            let s = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            settings.set(&k, &s).map_err(|e| format!("config file {path}: {e}"))?;
        }
    }
    // Environment: Orion-LD names first, ours override.
    for (k, v) in env {
        if let Some((_, key)) = ORION_ENV.iter().find(|(name, _)| name == k) {
            settings.set(key, v)?;
        } else if k.starts_with("ORIONLD_") {
            ignored.push(format!("{k}={v}"));
        }
    }
    for (k, v) in env {
        if let Some(rest) = k.strip_prefix("ORBIS_") {
            let key = rest.to_ascii_lowercase();
            // `ORBIS_AGENT_*` belong to the IoT agent, which may share the environment;
            // `ORBIS_TEST_*` and `ORBIS_BIN` to the test harnesses that start the broker.
            if key == "config" || key == "bin" || key.starts_with("test_") || key.starts_with("agent_") {
                continue;
            }
            settings.set(&key, v)?;
        }
    }
    // Command line.
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (stripped, None),
        };
        let take_value = |i: &mut usize| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            *i += 1;
            args.get(*i).cloned().ok_or_else(|| format!("flag {arg} needs a value"))
        };
        if let Some((_, key, has_value)) = ORION_FLAGS.iter().find(|(f, _, _)| *f == name) {
            let value = if *has_value { take_value(&mut i)? } else { inline.clone().unwrap_or_else(|| "true".into()) };
            if *key != "config" && *key != "foreground" {
                settings.set(key, &value)?;
            }
        } else if let Some((_, has_value)) = ORION_IGNORED.iter().find(|(f, _)| *f == name) {
            let value = if *has_value { take_value(&mut i)? } else { String::new() };
            ignored.push(format!("-{name} {value}").trim_end().to_owned());
        } else {
            let key = name.replace('-', "_");
            let value = take_value(&mut i)?;
            settings.set(&key, &value).map_err(|e| format!("{e} (from {arg})"))?;
        }
        i += 1;
    }
    Ok(Loaded { settings, ignored })
}

/// Usage text for `--help`.
pub const HELP: &str = "orbis — NGSI-LD context broker (drop-in for Orion-LD)

Settings (defaults in config/default.toml), lowest precedence first:
  config file      -configFile FILE | --config FILE | ORBIS_CONFIG=FILE (TOML, same keys)
  environment      ORIONLD_PORT, ORIONLD_PAGE_SIZE, ... and ORBIS_<KEY> (ORBIS_DATA_DIR, ...)
  flags            --<key> VALUE | --<key>=VALUE, or Orion-LD's -port, -localIp, -multiservice,
                   -logLevel, -pageSize, -inReqPayloadMaxSize, -corsOrigin, -corsMaxAge, -ctxTimeout,
                   -httpTimeout, -troe

Keys: host, port, data_dir, multiservice, log_level, page_size, max_body_bytes, cors_origin,
      cors_max_age, context_timeout_ms, public_url, workers, notification_timeout_ms,
      notification_retry_window_secs, notification_queue, notification_concurrency, forward_timeout_ms,
      entity_map_lifetime_secs, entity_map_max_lifetime_secs, entity_maps_max, entity_map_max_ids,
      store_segment_max_bytes, store_compact_min_bytes, troe, temporal_max_instances
Other Orion-LD flags (-dbhost, -db, -experimental, ...) are accepted with a warning.";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_orion_compatible() {
        let s = Settings::default();
        assert_eq!(s.port, 1026);
        assert_eq!(s.page_size, 20);
        assert!(s.multiservice);
    }

    #[test]
    fn orion_flags_env_and_our_flags() {
        let env = vec![
            ("ORIONLD_PAGE_SIZE".to_string(), "50".to_string()),
            ("ORIONLD_TROE".to_string(), "TRUE".to_string()),
            ("ORIONLD_TROE_HOST".to_string(), "pg".to_string()),
            ("ORBIS_DATA_DIR".to_string(), "/tmp/x".to_string()),
            ("ORBIS_AGENT_MQTT_CONNECTIONS".to_string(), "8".to_string()),
            ("ORBIS_BIN".to_string(), "/usr/bin/orbis".to_string()),
            ("ORBIS_TEST_MONGO_URL".to_string(), "mongodb://x".to_string()),
        ];
        let l = load(
            &args(&["-port", "1234", "-fg", "-dbhost", "mongo", "-logLevel", "DEBUG", "--max-body-bytes=2MB"]),
            &env,
        )
        .unwrap();
        assert_eq!(l.settings.port, 1234);
        assert_eq!(l.settings.page_size, 50);
        assert_eq!(l.settings.log_level, "debug");
        assert_eq!(l.settings.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(l.settings.data_dir, PathBuf::from("/tmp/x"));
        assert!(l.ignored.iter().any(|i| i.contains("dbhost")));
        assert!(l.settings.troe);
        assert!(l.ignored.iter().any(|i| i.contains("ORIONLD_TROE_HOST")));
        assert!(load(&args(&["-port", "abc"]), &[]).is_err());
        assert!(load(&args(&["--no-such-thing", "1"]), &[]).is_err());
    }

    #[test]
    fn troe_flags() {
        assert!(!Settings::default().troe);
        assert!(load(&args(&["-troe"]), &[]).unwrap().settings.troe);
        assert!(load(&args(&["--troe"]), &[]).unwrap().settings.troe);
        assert!(!load(&args(&["--troe=false"]), &[]).unwrap().settings.troe);
        let env = vec![("ORBIS_TROE".to_string(), "true".to_string())];
        assert!(load(&[], &env).unwrap().settings.troe);
        let l = load(&args(&["-troe", "-troeHost", "pg"]), &[]).unwrap();
        assert!(l.settings.troe && l.ignored.iter().any(|i| i.contains("troeHost")));
    }

    #[test]
    fn config_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orbis.toml");
        std::fs::write(&path, "port = 4000\npage_size = 7\n").unwrap();
        let l = load(&args(&["-configFile", path.to_str().unwrap(), "-pageSize", "9"]), &[]).unwrap();
        assert_eq!(l.settings.port, 4000);
        assert_eq!(l.settings.page_size, 9);
    }
}
