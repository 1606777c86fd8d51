//! UltraLight 2.0 (iotagent-ul `lib/ulParser.js`): measures `k|v|k|v` in `#`-separated groups
//! with an optional leading timestamp, command results `dev@cmd|result`, configuration requests
//! `configuration|a|b`, and the command syntax sent to devices `dev@cmd|value`.

use serde_json::{Map, Value};

use super::{Measures, js};
use crate::error::{AgentError, Result};

/// One `#`-separated group of an UltraLight message.
#[derive(Debug, Clone, PartialEq)]
pub enum UlMessage {
    Measures(Measures),
    /// `dev@cmd|result`: a device's answer to a command.
    CommandResult {
        device_id: String,
        command: String,
        result: Value,
    },
}

/// Parses every group of an UltraLight message, as iotagent-ul's `ulParser.parse` does: one
/// leading `|` of a group is ignored; a group with an `@` after its first character is a command
/// (`dev@cmd|value` or `dev@cmd|k=v|…`); otherwise an even number of `|` means the first field
/// is a timestamp (`TimeInstant`), and the rest are non-empty `key|value` pairs. Each value is
/// JSON when it parses, else text. `BAD_PAYLOAD`, naming the group and the byte offset, on a
/// syntax error. Unlike upstream, an empty group (a trailing `#`, a final newline) is ignored.
pub fn parse_ul(payload: &str) -> Result<Vec<UlMessage>> {
    let payload = payload.trim_end_matches(['\r', '\n']);
    let mut out = Vec::new();
    let mut offset = 0;
    for (g, raw) in payload.split('#').enumerate() {
        let mut start = offset;
        offset += raw.len() + 1;
        let group = match raw.strip_prefix('|') {
            Some(rest) => {
                start += 1;
                rest
            }
            None => raw,
        };
        if group.trim().is_empty() {
            continue;
        }
        if group.find('@').is_some_and(|i| i > 0) {
            out.push(command_group(group, g, start)?);
        } else {
            out.push(UlMessage::Measures(measure_group(group, g, start)?));
        }
    }
    if out.is_empty() {
        return Err(AgentError::bad_payload("empty UltraLight payload"));
    }
    Ok(out)
}

fn error(g: usize, at: usize, what: &str) -> AgentError {
    AgentError::bad_payload(format!("UltraLight group {} (byte {at}): {what}", g + 1))
}

fn measure_group(group: &str, g: usize, start: usize) -> Result<Measures> {
    let mut m = Map::new();
    let mut at = start;
    let mut rest = group;
    let bars = group.matches('|').count();
    let mut timestamp = None;
    if bars > 0 && bars.is_multiple_of(2) {
        let (ts, tail) = group.split_once('|').unwrap_or((group, ""));
        if !ts.is_empty() {
            timestamp = Some(ts);
        }
        at += ts.len() + 1;
        rest = tail;
    }
    let fields: Vec<&str> = rest.split('|').collect();
    if fields.len() % 2 == 1 {
        return Err(error(g, at, &format!("'{}' has no value", fields.last().copied().unwrap_or_default())));
    }
    for pair in fields.chunks(2) {
        let (k, v) = (pair[0], pair.get(1).copied().unwrap_or(""));
        if k.is_empty() {
            return Err(error(g, at, "empty measure name"));
        }
        if v.is_empty() {
            return Err(error(g, at + k.len() + 1, &format!("measure '{k}' has an empty value")));
        }
        m.insert(k.to_owned(), value(v));
        at += k.len() + v.len() + 2;
    }
    if let Some(ts) = timestamp {
        m.insert("TimeInstant".into(), Value::from(ts));
    }
    Ok(m)
}

fn command_group(group: &str, g: usize, start: usize) -> Result<UlMessage> {
    let fields: Vec<&str> = group.split('|').collect();
    let Some((device_id, command)) = fields[0].split_once('@') else {
        return Err(error(g, start, &format!("'{}' is neither a measure nor 'device@command'", fields[0])));
    };
    let command = command.split('@').next().unwrap_or_default();
    if command.is_empty() {
        return Err(error(g, start, "command without a name"));
    }
    let params = &fields[1..];
    let result = match params {
        [one] if !one.contains('=') => value(one),
        many => {
            let mut m = Map::new();
            let mut at = start + fields[0].len() + 1;
            for p in many {
                let mut parts = p.split('=');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(k), Some(v), None) => {
                        m.insert(k.to_owned(), value(v));
                    }
                    _ => return Err(error(g, at, &format!("'{p}' is not a 'name=value' parameter"))),
                }
                at += p.len() + 1;
            }
            Value::Object(m)
        }
    };
    Ok(UlMessage::CommandResult { device_id: device_id.to_owned(), command: command.to_owned(), result })
}

/// A field's value: JSON when it parses (numbers, booleans, arrays, objects), else the text.
fn value(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::from(v))
}

/// Measures only; a command group is a `BAD_PAYLOAD` here.
pub fn parse_ul_measures(payload: &str) -> Result<Vec<Measures>> {
    parse_ul(payload)?
        .into_iter()
        .map(|m| match m {
            UlMessage::Measures(m) => Ok(m),
            UlMessage::CommandResult { command, .. } => {
                Err(AgentError::bad_payload(format!("a command ('{command}') where measures were expected")))
            }
        })
        .collect()
}

/// A command result `dev@cmd|result` (iotagent-ul's `ulParser.result`): the result is the first
/// field after the command, JSON when it parses; further fields are ignored and a missing
/// result is `null`.
pub fn parse_ul_command_result(payload: &str) -> Result<(String, String, Value)> {
    let payload = payload.trim_end_matches(['\r', '\n']);
    let mut fields = payload.split('|');
    let head = fields.next().unwrap_or_default();
    let Some((device_id, command)) = head.split_once('@') else {
        return Err(AgentError::bad_payload("an UltraLight command result must be 'device@command|result'"));
    };
    let command = command.split('@').next().unwrap_or_default();
    if command.is_empty() {
        return Err(AgentError::bad_payload("an UltraLight command result names no command"));
    }
    let result = fields.next().map(value).unwrap_or(Value::Null);
    Ok((device_id.to_owned(), command.to_owned(), result))
}

/// A configuration request `configuration|a|b` (or `subscription|a|b`).
pub fn parse_configuration_request(payload: &str) -> Result<(String, Vec<String>)> {
    let payload = payload.trim();
    let mut fields = payload.split('|');
    let kind = fields.next().unwrap_or_default();
    if kind != "configuration" && kind != "subscription" {
        return Err(AgentError::bad_payload(format!(
            "an UltraLight configuration request starts with 'configuration' or 'subscription', not '{kind}'"
        )));
    }
    let names: Vec<String> = fields.map(str::to_owned).collect();
    if names.is_empty() || names.iter().any(String::is_empty) {
        return Err(AgentError::bad_payload("an UltraLight configuration request needs non-empty field names"));
    }
    Ok((kind.to_owned(), names))
}

/// A value as UltraLight text (JavaScript's `String(v)`, JSON for objects and arrays).
pub fn text(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => v.to_string(),
        other => js::to_js_string(other),
    }
}

/// `dev@cmd|value`, or `dev@cmd|k=v|k2=v2` for an object (an array by index).
pub fn format_command(device_id: &str, command: &str, value: &Value) -> String {
    let mut s = format!("{device_id}@{command}");
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                s.push('|');
                s.push_str(k);
                s.push('=');
                s.push_str(&text(v));
            }
        }
        // An array is an object to `Object.keys` upstream: its indexes become the names.
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                s.push_str(&format!("|{i}={}", text(v)));
            }
        }
        other => {
            s.push('|');
            s.push_str(&text(other));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn measures(p: &str) -> Vec<Value> {
        parse_ul_measures(p).unwrap_or_else(|e| panic!("{p}: {e}")).into_iter().map(Value::Object).collect()
    }

    fn err(p: &str) -> String {
        match parse_ul(p) {
            Err(e) => {
                assert_eq!(e.name, "BAD_PAYLOAD");
                e.message
            }
            Ok(v) => panic!("{p} parsed: {v:?}"),
        }
    }

    #[test]
    fn pairs_and_groups() {
        assert_eq!(measures("t|10|h|45.5"), vec![json!({"t": 10, "h": 45.5})]);
        assert_eq!(measures("gps|1.2/3.4#t|10"), vec![json!({"gps": "1.2/3.4"}), json!({"t": 10})]);
        assert_eq!(
            measures("s|on|b|true|a|[1,2]|o|{\"x\":1}\n"),
            vec![json!({"s": "on", "b": true, "a": [1, 2], "o": {"x": 1}})]
        );
        assert_eq!(measures("t|10#"), vec![json!({"t": 10})]);
    }

    #[test]
    fn even_pipe_count_means_a_leading_timestamp() {
        assert_eq!(
            measures("2016-06-13T00:35:30Z|lle|100"),
            vec![json!({"TimeInstant": "2016-06-13T00:35:30Z", "lle": 100})]
        );
        assert_eq!(measures("a|1"), vec![json!({"a": 1})]);
    }

    #[test]
    fn parse_errors_say_where() {
        assert!(err("t|").contains("empty value"));
        assert!(err("|10").contains("has no value"));
        assert!(err("t|1||x").contains("empty measure name"));
        assert!(err("t|1#h").contains("group 2"));
        assert!(err("t|1#h").contains("byte 4"));
        assert!(err("a|1|b|").contains("byte 6"));
        assert!(err("").contains("empty"));
        assert!(err("#").contains("empty"));
        assert!(err("t|user@example").contains("neither a measure"));
        assert!(err("dev@|1").contains("without a name"));
        assert!(err("dev@set|a=1|b").contains("'b' is not"));
        assert!(err("dev@set|a=1=2").contains("'a=1=2'"));
        assert!(parse_ul_measures("dev1@ping|ok").is_err());
    }

    #[test]
    fn a_leading_bar_is_ignored() {
        assert_eq!(measures("|t|1"), vec![json!({"t": 1})]);
        assert_eq!(measures("|2024-01-01T00:00:00Z|t|1"), vec![json!({"TimeInstant": "2024-01-01T00:00:00Z", "t": 1})]);
    }

    #[test]
    fn command_groups_in_a_message() {
        assert_eq!(
            parse_ul("t|1#dev1@ping|ok#dev1@move|x=1|y=a#dev1@reset").ok(),
            Some(vec![
                UlMessage::Measures(Map::from_iter([("t".to_owned(), json!(1))])),
                UlMessage::CommandResult { device_id: "dev1".into(), command: "ping".into(), result: json!("ok") },
                UlMessage::CommandResult {
                    device_id: "dev1".into(),
                    command: "move".into(),
                    result: json!({"x": 1, "y": "a"})
                },
                UlMessage::CommandResult { device_id: "dev1".into(), command: "reset".into(), result: json!({}) },
            ])
        );
    }

    #[test]
    fn command_results() {
        assert_eq!(parse_ul_command_result("dev1@ping|ok").ok(), Some(("dev1".into(), "ping".into(), json!("ok"))));
        assert_eq!(parse_ul_command_result("dev1@set|42\n").ok(), Some(("dev1".into(), "set".into(), json!(42))));
        assert_eq!(parse_ul_command_result("dev1@say|a|b").ok(), Some(("dev1".into(), "say".into(), json!("a"))));
        assert_eq!(parse_ul_command_result("dev1@ping").ok(), Some(("dev1".into(), "ping".into(), Value::Null)));
        assert!(parse_ul_command_result("t|1").is_err());
        assert!(parse_ul_command_result("dev1@|1").is_err());
    }

    #[test]
    fn configuration_requests() {
        assert_eq!(
            parse_configuration_request("configuration|pollingInterval|publishInterval").ok(),
            Some(("configuration".into(), vec!["pollingInterval".into(), "publishInterval".into()]))
        );
        assert_eq!(parse_configuration_request("subscription|a").ok(), Some(("subscription".into(), vec!["a".into()])));
        assert!(parse_configuration_request("configuration").is_err());
        assert!(parse_configuration_request("configuration||a").is_err());
        assert!(parse_configuration_request("other|a").is_err());
    }

    #[test]
    fn command_syntax() {
        assert_eq!(format_command("dev1", "ping", &json!("hi")), "dev1@ping|hi");
        assert_eq!(format_command("dev1", "set", &json!(5)), "dev1@set|5");
        assert_eq!(format_command("dev1", "move", &json!({"x": 1, "d": "up"})), "dev1@move|x=1|d=up");
        assert_eq!(format_command("dev1", "seq", &json!(["a", 2])), "dev1@seq|0=a|1=2");
    }
}
