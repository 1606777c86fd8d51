//! MQTT topics and AMQP routing keys of the FIWARE JSON and UltraLight agents: the filters the
//! agent subscribes to and the parsing of the topic a message arrived on into (protocol, API key,
//! device id, kind of message).
//!
//! Topics look like `[/][json|ul/]{apikey}/{deviceId}/attrs[/{attr}]`, `…/cmdexe` and
//! `…/configuration/commands`; AMQP routing keys are the same with `.` for `/`
//! (`.{apikey}.{deviceId}.attrs`).

/// The payload syntax of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Json,
    Ul,
}

impl Protocol {
    /// The first topic segment naming the protocol.
    pub fn segment(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Ul => "ul",
        }
    }
}

/// What a message carries, by the end of its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `…/attrs`: one measure group or a multi-measure.
    Measures,
    /// `…/attrs/{attr}`: the raw value of one attribute.
    Attribute(String),
    /// `…/cmdexe`: command results.
    CommandResult,
    /// `…/configuration/commands`: a configuration request.
    Configuration,
}

/// A parsed topic. `protocol` is `None` when the topic does not name one (`/{apikey}/{id}/attrs`):
/// the API key's group then decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub protocol: Option<Protocol>,
    pub apikey: String,
    pub device_id: String,
    pub kind: Kind,
}

/// Parses the segments of a topic (or routing key) into a [`Topic`]; `None` when it is none of the
/// agent's forms.
fn from_segments(segments: &[&str]) -> Option<Topic> {
    let named = match segments.first() {
        Some(&"json") => Some(Protocol::Json),
        Some(&"ul") => Some(Protocol::Ul),
        _ => None,
    };
    // A first segment `json`/`ul` names the protocol, unless the rest does not parse, in which
    // case it is an API key that happens to be spelled so.
    if let Some(p) = named
        && let Some(mut t) = unprefixed(&segments[1..])
    {
        t.protocol = Some(p);
        return Some(t);
    }
    unprefixed(segments)
}

fn unprefixed(segments: &[&str]) -> Option<Topic> {
    let (apikey, device_id, rest) = match segments {
        [apikey, device_id, rest @ ..] => (*apikey, *device_id, rest),
        _ => return None,
    };
    if apikey.is_empty() || device_id.is_empty() {
        return None;
    }
    let kind = match rest {
        ["attrs"] => Kind::Measures,
        ["attrs", attr] if !attr.is_empty() => Kind::Attribute((*attr).to_owned()),
        ["cmdexe"] => Kind::CommandResult,
        ["configuration", "commands"] => Kind::Configuration,
        _ => return None,
    };
    Some(Topic { protocol: None, apikey: apikey.to_owned(), device_id: device_id.to_owned(), kind })
}

/// Parses an MQTT topic; the leading `/` is optional.
pub fn parse_mqtt(topic: &str) -> Option<Topic> {
    let topic = topic.strip_prefix('/').unwrap_or(topic);
    let segments: Vec<&str> = topic.split('/').collect();
    from_segments(&segments)
}

/// Parses an AMQP routing key (`.{apikey}.{deviceId}.attrs`); the leading `.` is optional.
pub fn parse_amqp(key: &str) -> Option<Topic> {
    let key = key.strip_prefix('.').unwrap_or(key);
    let segments: Vec<&str> = key.split('.').collect();
    from_segments(&segments)
}

/// The ends of the topics the agent listens on, after `{apikey}/{deviceId}/`.
const ENDS: [&str; 4] = ["attrs", "attrs/+", "cmdexe", "configuration/commands"];

/// The shared-subscription filters: group `<prefix>json` takes the `json/…` topics and the topics
/// that name no protocol, group `<prefix>ul` the `ul/…` topics, each with and without the leading
/// `/`. Un-prefixed topics are in one group only, so that a message reaches the agent once.
pub fn mqtt_subscriptions(share_prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for end in ENDS {
        for slash in ["/", ""] {
            out.push(format!("$share/{share_prefix}json/{slash}json/+/+/{end}"));
            out.push(format!("$share/{share_prefix}json/{slash}+/+/{end}"));
            out.push(format!("$share/{share_prefix}ul/{slash}ul/+/+/{end}"));
        }
    }
    out
}

/// The AMQP binding keys of the queue (`*.*.*.attrs` matches `.{apikey}.{id}.attrs`, whose first
/// word is empty).
pub const AMQP_BINDINGS: [&str; 4] = ["*.*.*.attrs", "*.*.*.attrs.*", "*.*.*.cmdexe", "*.*.*.configuration.commands"];

/// The topic a command goes down on: `/{apikey}/{deviceId}/cmd`, always with the leading `/`.
pub fn command_topic(apikey: &str, device_id: &str) -> String {
    format!("/{apikey}/{device_id}/cmd")
}

/// The AMQP routing key of a command: `.{apikey}.{deviceId}.cmd`.
pub fn command_routing_key(apikey: &str, device_id: &str) -> String {
    format!(".{apikey}.{device_id}.cmd")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(protocol: Option<Protocol>, kind: Kind) -> Option<Topic> {
        Some(Topic { protocol, apikey: "key".into(), device_id: "dev".into(), kind })
    }

    #[test]
    fn every_mqtt_form_parses() {
        assert_eq!(parse_mqtt("/json/key/dev/attrs"), t(Some(Protocol::Json), Kind::Measures));
        assert_eq!(parse_mqtt("json/key/dev/attrs"), t(Some(Protocol::Json), Kind::Measures));
        assert_eq!(parse_mqtt("/key/dev/attrs"), t(None, Kind::Measures));
        assert_eq!(parse_mqtt("key/dev/attrs"), t(None, Kind::Measures));
        assert_eq!(parse_mqtt("/ul/key/dev/attrs/temp"), t(Some(Protocol::Ul), Kind::Attribute("temp".into())));
        assert_eq!(parse_mqtt("/json/key/dev/cmdexe"), t(Some(Protocol::Json), Kind::CommandResult));
        assert_eq!(parse_mqtt("ul/key/dev/configuration/commands"), t(Some(Protocol::Ul), Kind::Configuration));
        assert_eq!(parse_mqtt("/key/dev/configuration/commands"), t(None, Kind::Configuration));
    }

    #[test]
    fn an_api_key_named_json_is_an_api_key_when_the_rest_does_not_parse() {
        assert_eq!(
            parse_mqtt("/json/dev/attrs"),
            Some(Topic { protocol: None, apikey: "json".into(), device_id: "dev".into(), kind: Kind::Measures })
        );
    }

    #[test]
    fn other_topics_are_refused() {
        for topic in
            ["/key/dev", "/key/dev/cmd", "/key/dev/attrs/a/b", "//dev/attrs", "/key//attrs", "/json/key/dev/x", ""]
        {
            assert_eq!(parse_mqtt(topic), None, "{topic}");
        }
    }

    #[test]
    fn amqp_routing_keys_parse() {
        assert_eq!(parse_amqp(".key.dev.attrs"), t(None, Kind::Measures));
        assert_eq!(parse_amqp(".key.dev.attrs.temp"), t(None, Kind::Attribute("temp".into())));
        assert_eq!(parse_amqp(".key.dev.cmdexe"), t(None, Kind::CommandResult));
        assert_eq!(parse_amqp(".key.dev.configuration.commands"), t(None, Kind::Configuration));
        assert_eq!(parse_amqp("key.dev.attrs"), t(None, Kind::Measures));
        assert_eq!(parse_amqp(".key.dev.cmd"), None);
    }

    #[test]
    fn subscriptions_cover_each_form_once_per_group() {
        let subs = mqtt_subscriptions("p-");
        assert_eq!(subs.len(), 24);
        assert!(subs.contains(&"$share/p-json//json/+/+/attrs".to_owned()));
        assert!(subs.contains(&"$share/p-json/json/+/+/attrs/+".to_owned()));
        assert!(subs.contains(&"$share/p-json//+/+/cmdexe".to_owned()));
        assert!(subs.contains(&"$share/p-json/+/+/configuration/commands".to_owned()));
        assert!(subs.contains(&"$share/p-ul//ul/+/+/attrs".to_owned()));
        assert!(subs.contains(&"$share/p-ul/ul/+/+/cmdexe".to_owned()));
        assert!(!subs.iter().any(|s| s.starts_with("$share/p-ul//+/")), "un-prefixed topics are in one group");
        let unique: std::collections::HashSet<_> = subs.iter().collect();
        assert_eq!(unique.len(), subs.len());
    }

    #[test]
    fn commands_go_down_with_a_leading_separator() {
        assert_eq!(command_topic("key", "dev"), "/key/dev/cmd");
        assert_eq!(command_routing_key("key", "dev"), ".key.dev.cmd");
    }
}
