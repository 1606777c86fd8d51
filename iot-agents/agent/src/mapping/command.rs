//! The payload of a command sent to a device: `{"cmd": value}` or the command's JEXL
//! `expression` result (JSON), `dev@cmd|value` (UltraLight), then serialised per the command's
//! `payloadType` (`json`, `text`, `binaryfromstring`, `binaryfromhex`, `binaryfromjson`).

use serde_json::{Map, Value};

use super::{Resolved, jexl, js, resolve, ultralight};
use crate::error::Result;
use crate::model::CommandDef;

/// See [`super::command_payload`].
pub fn command_payload(resolved: &Resolved, command: &CommandDef, value: &Value, ultralight: bool) -> Result<Vec<u8>> {
    let payload = match command.expression.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(exp) => {
            let mut ctx = resolve::device_context(resolved);
            ctx.insert(command.name.clone(), value.clone());
            // As iotagent-json does, an expression that does not parse, fails, or yields a falsy
            // value is sent as its own text: a literal payload needs no quoting.
            let result = jexl::compile(exp).ok().and_then(|node| jexl::eval(&node, &ctx).ok());
            match result {
                Some(v) if js::truthy(&v) => v,
                _ => Value::String(exp.to_owned()),
            }
        }
        None if ultralight => value.clone(),
        None => {
            let mut m = Map::new();
            m.insert(command.name.clone(), value.clone());
            Value::Object(m)
        }
    };
    if ultralight {
        return Ok(ultralight::format_command(&resolved.device.device_id, &command.name, &payload).into_bytes());
    }
    let kind = command.payload_type.as_deref().map(str::to_ascii_lowercase);
    Ok(match kind.as_deref() {
        Some("text") | Some("binaryfromstring") => ultralight::text(&payload).into_bytes(),
        Some("binaryfromhex") => from_hex(&ultralight::text(&payload)),
        _ => payload.to_string().into_bytes(),
    })
}

/// Bytes from hexadecimal text; like Node's `Buffer.from(s, 'hex')`, decoding stops at the first
/// pair that is not hexadecimal.
fn from_hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .map_while(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::mapping::resolve;
    use crate::model::{Device, StaticAttribute};
    use serde_json::json;

    fn resolved() -> Resolved {
        let device = Device {
            device_id: "dev1".into(),
            service: "smart".into(),
            service_path: "/g".into(),
            entity_type: Some("Robot".into()),
            static_attributes: vec![StaticAttribute { name: "zone".into(), value: json!("A"), ..Default::default() }],
            ..Default::default()
        };
        resolve(&device, None, &Settings::default())
    }

    fn cmd(expression: Option<&str>, payload_type: Option<&str>) -> CommandDef {
        CommandDef {
            name: "ping".into(),
            expression: expression.map(str::to_owned),
            payload_type: payload_type.map(str::to_owned),
            ..Default::default()
        }
    }

    fn text(b: Result<Vec<u8>>) -> String {
        String::from_utf8_lossy(&b.unwrap_or_else(|e| panic!("{e}"))).into_owned()
    }

    #[test]
    fn json_commands_wrap_the_value() {
        let r = resolved();
        assert_eq!(
            text(command_payload(&r, &cmd(None, None), &json!({"data": "22"}), false)),
            r#"{"ping":{"data":"22"}}"#
        );
        assert_eq!(text(command_payload(&r, &cmd(None, Some("binaryfromjson")), &json!(1), false)), r#"{"ping":1}"#);
    }

    #[test]
    fn expressions_see_the_value_and_the_device() {
        let r = resolved();
        let c = cmd(Some("{set: id + '_' + ping, t: type, s: service, z: zone}"), None);
        let out: Value = serde_json::from_str(&text(command_payload(&r, &c, &json!(5), false))).unwrap_or_default();
        assert_eq!(out, json!({"set": "dev1_5", "t": "Robot", "s": "smart", "z": "A"}));
        // An expression that does not parse, fails or yields nothing is sent as text.
        assert_eq!(text(command_payload(&r, &cmd(Some("ping +"), None), &json!(1), false)), "\"ping +\"");
        assert_eq!(text(command_payload(&r, &cmd(Some("ping|nosuch"), None), &json!(1), false)), "\"ping|nosuch\"");
        assert_eq!(text(command_payload(&r, &cmd(Some("reboot"), Some("text")), &json!(1), false)), "reboot");
    }

    #[test]
    fn payload_types() {
        let r = resolved();
        assert_eq!(text(command_payload(&r, &cmd(Some("'on'"), None), &json!(1), false)), "\"on\"");
        assert_eq!(text(command_payload(&r, &cmd(Some("'on'"), Some("text")), &json!(1), false)), "on");
        assert_eq!(
            text(command_payload(&r, &cmd(Some("ping"), Some("binaryfromstring")), &json!("abc"), false)),
            "abc"
        );
        assert_eq!(
            command_payload(&r, &cmd(Some("ping"), Some("binaryfromhex")), &json!("48690g"), false).ok(),
            Some(b"Hi".to_vec())
        );
    }

    #[test]
    fn ultralight_commands_use_the_device_id() {
        let r = resolved();
        assert_eq!(text(command_payload(&r, &cmd(None, None), &json!("hi"), true)), "dev1@ping|hi");
        assert_eq!(text(command_payload(&r, &cmd(None, None), &json!({"a": 1, "b": "x"}), true)), "dev1@ping|a=1|b=x");
        assert_eq!(text(command_payload(&r, &cmd(Some("ping * 2"), None), &json!(4), true)), "dev1@ping|8");
    }
}
