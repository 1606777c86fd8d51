//! MQTT delivery of notifications, for subscriptions whose endpoint is `mqtt://` or `mqtts://`.
//! Orion-LD users point subscriptions at MQTT brokers, so Orbis must publish the same messages
//! to the same topics as Orion-LD does.
//!
//! # Endpoint URI
//!
//! `mqtt[s]://[user[:password]@]host[:port]/topic`, default port 1883 (`mqtt`) or 8883
//! (`mqtts`). As in Orion-LD (`mqttParse.cpp`), the topic is everything after the first `/`
//! that follows the host and port, taken verbatim: `mqtt://b:1883/room/1` publishes to
//! `room/1`, `mqtt://b//x` to `/x`. A URI without that `/` or with an empty topic is an error,
//! and so is a topic with the MQTT wildcards `+` or `#`. User and password may be
//! percent-encoded; the topic is not decoded.
//!
//! # Options (`notifierInfo`)
//!
//! `MQTT-Version` is `mqtt3.1.1` (the default) or `mqtt5.0`; `MQTT-QoS` is `0` (the default), `1`
//! or `2`. Messages are never retained.
//!
//! # Payload
//!
//! The Orion-LD envelope: `{"metadata": {<header>: <value>, …}, "body": <notification>}`, where
//! `metadata` holds every header HTTP would send except `Content-Length`, and `Link` is reduced
//! to the bare context URL between `<` and `>`.
//!
//! # Connections and acknowledgements
//!
//! One connection per (TLS or not, host, port, user, password, MQTT version) is opened on first
//! use and shared by all subscriptions. Each connection's rumqttc event loop runs in its own task,
//! which matches the broker's acknowledgements to waiting senders: rumqttc reports each publish
//! as it is written (with the packet id it chose) in the order requests were queued, so a queue
//! of waiters in submission order gives every publish its packet id, and the PUBACK (QoS 1) or
//! PUBCOMP (QoS 2) with that id completes it. A QoS 0 publish completes once it has been written
//! to the socket. When the connection fails, every waiter fails with the reason and the
//! connection is dropped (nothing is replayed); the next send opens a new one. A publish that
//! is not acknowledged within the time-out (5 s by default) fails and also drops the
//! connection, since a broker that does not answer in that time is treated as unreachable.
//! The request queue is bounded: when it is full, a send fails at once instead of waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, PubCompReason, PubRecReason};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::sender::{Outgoing, SendError, Sender};

/// How long a send waits for its acknowledgement (connecting included) when no other time-out
/// is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many publishes may wait in one connection's request queue before sends fail at once.
const REQUEST_QUEUE: usize = 256;

/// The largest packet MQTT can carry (the maximum of the remaining-length field).
const MAX_PACKET: usize = 268_435_455;

/// Publishes notifications to MQTT brokers; see the module documentation.
pub struct MqttSender {
    pool: Mutex<HashMap<ConnKey, Arc<Connection>>>,
    timeout: Duration,
}

impl MqttSender {
    /// A sender with the default 5 s time-out. Opens no connection until the first send.
    pub fn new() -> Self {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// A sender whose sends fail when the broker has not acknowledged within `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { pool: Mutex::new(HashMap::new()), timeout }
    }

    /// The pooled connection for `key`, opened anew when there is none or the last one failed.
    fn connection(&self, key: &ConnKey) -> Result<Arc<Connection>, SendError> {
        let mut pool = self.pool.lock();
        if let Some(conn) = pool.get(key)
            && !conn.is_dead()
        {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Connection::open(key)?);
        pool.insert(key.clone(), conn.clone());
        Ok(conn)
    }
}

impl Default for MqttSender {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Sender for MqttSender {
    async fn send(&self, n: &Outgoing) -> Result<(), SendError> {
        let endpoint = Endpoint::parse(&n.uri)?;
        let (version, qos) = notifier_options(&n.notifier_info)?;
        let payload = envelope(n)?;
        let key = ConnKey {
            tls: endpoint.tls,
            host: endpoint.host,
            port: endpoint.port,
            user: endpoint.user,
            password: endpoint.password,
            version,
        };
        let conn = self.connection(&key)?;
        let acked = conn.publish(&endpoint.topic, qos, payload)?;
        match tokio::time::timeout(self.timeout, acked).await {
            Ok(Ok(result)) => result.map_err(SendError),
            Ok(Err(_)) => Err(SendError(format!("MQTT broker {}:{}: connection closed", key.host, key.port))),
            Err(_) => {
                let reason = format!(
                    "MQTT broker {}:{}: no acknowledgement within {} ms",
                    key.host,
                    key.port,
                    self.timeout.as_millis()
                );
                conn.kill(&reason);
                Err(SendError(reason))
            }
        }
    }
}

/// The MQTT protocol version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Version {
    V311,
    V5,
}

/// What identifies a pooled connection, as in Orion-LD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    tls: bool,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    version: Version,
}

/// A parsed `mqtt://` or `mqtts://` endpoint.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    topic: String,
}

impl Endpoint {
    fn parse(uri: &str) -> Result<Self, SendError> {
        let bad = |why: &str| SendError(format!("invalid MQTT endpoint {uri:?}: {why}"));
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(uri, "mqtt://") {
            (false, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(uri, "mqtts://") {
            (true, rest)
        } else {
            return Err(bad("the scheme must be mqtt or mqtts"));
        };
        let (authority, topic) = rest.split_once('/').ok_or_else(|| bad("no '/' between the broker and the topic"))?;
        if topic.is_empty() {
            return Err(bad("the topic is empty"));
        }
        if topic.contains(['+', '#', '\0']) {
            return Err(bad("the topic contains a wildcard ('+' or '#') or NUL"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let user = percent_decode(user).ok_or_else(|| bad("bad percent-encoding in the user name"))?;
                let password = match password {
                    Some(p) => Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding in the password"))?),
                    None => None,
                };
                (Some(user), password)
            }
        };
        // A port follows the last ':' unless that ':' is inside an IPv6 literal such as "[::1]".
        let (host, port) = match hostport.rfind(':') {
            Some(i) if !hostport[i..].contains(']') => {
                let port = &hostport[i + 1..];
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the port must be a number"));
                }
                (&hostport[..i], port.parse::<u16>().map_err(|_| bad("the port is out of range"))?)
            }
            _ => (hostport, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self { tls, host: host.to_owned(), port, user, password, topic: topic.to_owned() })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads `MQTT-Version` and `MQTT-QoS` from the endpoint's `notifierInfo`.
fn notifier_options(info: &[(String, String)]) -> Result<(Version, u8), SendError> {
    let mut version = Version::V311;
    let mut qos = 0;
    for (key, value) in info {
        if key.eq_ignore_ascii_case("MQTT-Version") {
            version = match value.as_str() {
                "mqtt3.1.1" => Version::V311,
                "mqtt5.0" => Version::V5,
                other => {
                    return Err(SendError(format!("MQTT-Version {other:?} is neither \"mqtt3.1.1\" nor \"mqtt5.0\"")));
                }
            };
        } else if key.eq_ignore_ascii_case("MQTT-QoS") {
            qos = match value.as_str() {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                other => return Err(SendError(format!("MQTT-QoS {other:?} is not 0, 1 or 2"))),
            };
        }
    }
    Ok((version, qos))
}

/// The message Orion-LD publishes: the HTTP headers as `metadata`, the notification as `body`.
#[derive(Serialize)]
struct Envelope<'a> {
    metadata: serde_json::Map<String, serde_json::Value>,
    body: &'a RawValue,
}

fn envelope(n: &Outgoing) -> Result<Vec<u8>, SendError> {
    let body = std::str::from_utf8(&n.body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .ok_or_else(|| SendError("the notification body is not JSON".to_owned()))?;
    let mut metadata = serde_json::Map::new();
    for (name, value) in &n.headers {
        if name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        let value = if name.eq_ignore_ascii_case("Link") { link_target(value) } else { value.as_str() };
        metadata.insert(name.clone(), serde_json::Value::String(value.to_owned()));
    }
    serde_json::to_vec(&Envelope { metadata, body }).map_err(|e| SendError(format!("rendering the MQTT message: {e}")))
}

/// The URL between `<` and `>` of a `Link` header, or the whole value when it has no brackets.
fn link_target(link: &str) -> &str {
    link.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map_or(link.trim(), |(url, _)| url.trim())
}

/// The TLS settings for `mqtts`: the system's root certificates and the aws-lc-rs provider
/// (named here so rustls never has to pick a process default). Built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, SendError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = system_roots()?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(SendError)
}

/// Loads the system's trusted root certificates from the PEM bundle named by `SSL_CERT_FILE` or
/// found at one of the usual places.
fn system_roots() -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    const BUNDLES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let mut store = rustls::RootCertStore::empty();
    for path in from_env.iter().map(String::as_str).chain(BUNDLES) {
        if let Ok(certs) = CertificateDer::pem_file_iter(path) {
            store.add_parsable_certificates(certs.flatten());
            if !store.is_empty() {
                return Ok(store);
            }
        }
    }
    Err("mqtts: no trusted root certificates found (set SSL_CERT_FILE to a PEM bundle)".to_owned())
}

/// Someone waiting for a publish to be acknowledged.
type Waiter = oneshot::Sender<Result<(), String>>;

/// What the event-loop task and the senders share about one connection.
#[derive(Default)]
struct Tracker {
    /// Why the connection failed; once set, the connection takes no more publishes.
    dead: Option<String>,
    /// Publishes queued to rumqttc but not yet written, in submission order, with their QoS.
    unwritten: VecDeque<(u8, Waiter)>,
    /// Written QoS 1 and 2 publishes by packet id, waiting for PUBACK or PUBCOMP.
    unacked: HashMap<u16, Waiter>,
}

/// What the event loop reported, reduced to what the tracker needs.
enum Report {
    Written(u16),
    Acked(u16),
    Refused(u16, String),
    Closed(String),
}

impl Tracker {
    /// Applies one report; returns false once the connection is finished.
    fn apply(&mut self, report: Report) -> bool {
        match report {
            Report::Written(pkid) => {
                if let Some((qos, waiter)) = self.unwritten.pop_front() {
                    if qos == 0 {
                        let _ = waiter.send(Ok(()));
                    } else {
                        self.unacked.insert(pkid, waiter);
                    }
                }
            }
            Report::Acked(pkid) => {
                if let Some(waiter) = self.unacked.remove(&pkid) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Report::Refused(pkid, why) => {
                if let Some(waiter) = self.unacked.remove(&pkid) {
                    let _ = waiter.send(Err(why));
                }
            }
            Report::Closed(why) => {
                self.fail(why);
                return false;
            }
        }
        true
    }

    fn fail(&mut self, why: String) {
        for (_, waiter) in self.unwritten.drain(..) {
            let _ = waiter.send(Err(why.clone()));
        }
        for (_, waiter) in self.unacked.drain() {
            let _ = waiter.send(Err(why.clone()));
        }
        self.dead.get_or_insert(why);
    }
}

enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// One broker connection: the rumqttc client, the task driving its event loop, and the waiters.
struct Connection {
    client: Client,
    /// The MQTT client identifier this connection presents to the broker.
    client_id: String,
    tracker: Arc<Mutex<Tracker>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // rumqttc's event loop keeps its own handle on the request queue, so it would run (and
        // ping the broker) forever; ending the task closes the connection.
        self.task.abort();
    }
}

impl Connection {
    /// Starts connecting; publishes queue up until the broker accepts the connection.
    fn open(key: &ConnKey) -> Result<Self, SendError> {
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let peer = format!("{}:{}", key.host, key.port);
        let client_id = format!("orbis-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let transport = if key.tls {
            Some(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls_config()?)))
        } else {
            None
        };
        let connect_timeout = DEFAULT_TIMEOUT.as_secs();
        let (client, task) = match key.version {
            Version::V311 => {
                let mut options = rumqttc::MqttOptions::new(client_id.clone(), key.host.clone(), key.port);
                options
                    .set_keep_alive(Duration::from_secs(30))
                    .set_clean_session(true)
                    .set_max_packet_size(1 << 20, MAX_PACKET);
                if let Some(user) = &key.user {
                    options.set_credentials(user.clone(), key.password.clone().unwrap_or_default());
                }
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, mut event_loop) = rumqttc::AsyncClient::new(options, REQUEST_QUEUE);
                let mut network = rumqttc::NetworkOptions::new();
                network.set_connection_timeout(connect_timeout);
                event_loop.set_network_options(network);
                (Client::V311(client), tokio::spawn(drive_v311(event_loop, tracker.clone(), peer)))
            }
            Version::V5 => {
                let mut options = rumqttc::v5::MqttOptions::new(client_id.clone(), key.host.clone(), key.port);
                options
                    .set_keep_alive(Duration::from_secs(30))
                    .set_clean_start(true)
                    .set_connection_timeout(connect_timeout);
                if let Some(user) = &key.user {
                    options.set_credentials(user.clone(), key.password.clone().unwrap_or_default());
                }
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, event_loop) = rumqttc::v5::AsyncClient::new(options, REQUEST_QUEUE);
                (Client::V5(client), tokio::spawn(drive_v5(event_loop, tracker.clone(), peer)))
            }
        };
        Ok(Self { client, client_id, tracker, task: task.abort_handle() })
    }

    fn is_dead(&self) -> bool {
        self.tracker.lock().dead.is_some()
    }

    /// Queues one publish; the receiver yields its outcome.
    fn publish(
        &self,
        topic: &str,
        qos: u8,
        payload: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, SendError> {
        // The tracker stays locked from the liveness check until the waiter is queued, so the
        // event-loop task cannot report this publish as written before its waiter is in place,
        // and a connection failing in between cannot miss the waiter.
        let mut tracker = self.tracker.lock();
        if let Some(why) = &tracker.dead {
            return Err(SendError(why.clone()));
        }
        let queued = match &self.client {
            Client::V311(client) => {
                let qos = match qos {
                    0 => rumqttc::QoS::AtMostOnce,
                    1 => rumqttc::QoS::AtLeastOnce,
                    _ => rumqttc::QoS::ExactlyOnce,
                };
                client.try_publish(topic, qos, false, payload).map_err(|e| e.to_string())
            }
            Client::V5(client) => {
                let qos = match qos {
                    0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                    1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
                };
                client.try_publish(topic, qos, false, payload).map_err(|e| e.to_string())
            }
        };
        queued.map_err(|e| SendError(format!("MQTT publish not queued (queue full or connection closed): {e}")))?;
        let (tx, rx) = oneshot::channel();
        tracker.unwritten.push_back((qos, tx));
        Ok(rx)
    }

    /// Fails every waiter and closes the connection; the next send opens a new one.
    fn kill(&self, why: &str) {
        tracing::debug!(client_id = %self.client_id, why, "dropping the MQTT connection");
        self.tracker.lock().fail(why.to_owned());
        self.task.abort();
    }
}

async fn drive_v311(mut event_loop: rumqttc::EventLoop, tracker: Arc<Mutex<Tracker>>, peer: String) {
    use rumqttc::{Event, Packet};
    loop {
        let report = match event_loop.poll().await {
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Report::Written(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => Report::Acked(ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(comp))) => Report::Acked(comp.pkid),
            Ok(_) => continue,
            Err(e) => Report::Closed(format!("MQTT broker {peer}: {e}")),
        };
        if !tracker.lock().apply(report) {
            tracing::debug!(%peer, "MQTT connection closed");
            return;
        }
    }
}

async fn drive_v5(mut event_loop: rumqttc::v5::EventLoop, tracker: Arc<Mutex<Tracker>>, peer: String) {
    use rumqttc::v5::{Event, mqttbytes::v5::Packet};
    loop {
        let report = match event_loop.poll().await {
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Report::Written(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => match ack.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Report::Acked(ack.pkid),
                reason => Report::Refused(ack.pkid, format!("MQTT broker {peer} refused the publish: {reason:?}")),
            },
            Ok(Event::Incoming(Packet::PubRec(rec))) => match rec.reason {
                PubRecReason::Success | PubRecReason::NoMatchingSubscribers => continue,
                reason => Report::Refused(rec.pkid, format!("MQTT broker {peer} refused the publish: {reason:?}")),
            },
            Ok(Event::Incoming(Packet::PubComp(comp))) => match comp.reason {
                PubCompReason::Success => Report::Acked(comp.pkid),
                reason => Report::Refused(comp.pkid, format!("MQTT broker {peer} refused the publish: {reason:?}")),
            },
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                Report::Closed(format!("MQTT broker {peer} disconnected: {:?}", d.reason_code))
            }
            Ok(_) => continue,
            Err(e) => Report::Closed(format!("MQTT broker {peer}: {e}")),
        };
        if !tracker.lock().apply(report) {
            tracing::debug!(%peer, "MQTT connection closed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const BROKER: &str = "127.0.0.1:1883";

    fn outgoing(uri: &str, info: &[(&str, &str)], body: &serde_json::Value) -> Outgoing {
        Outgoing {
            uri: uri.to_owned(),
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Content-Length".to_owned(), "123".to_owned()),
                (
                    "Link".to_owned(),
                    "<https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; \
                     type=\"application/ld+json\""
                        .to_owned(),
                ),
                ("NGSILD-Tenant".to_owned(), "t1".to_owned()),
            ],
            body: serde_json::to_vec(body).unwrap(),
            notifier_info: info.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn unique_topic() -> String {
        format!("orbis-test/{}", uuid::Uuid::new_v4().simple())
    }

    /// Subscribes a separate rumqttc client to `topic`; returns once the broker confirmed the
    /// subscription, with a receiver of the payloads published there.
    async fn subscribe(topic: &str) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let id = format!("orbis-sub-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let options = rumqttc::MqttOptions::new(id, "127.0.0.1", 1883);
        let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 10);
        client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let (subscribed_tx, subscribed_rx) = oneshot::channel();
        tokio::spawn(async move {
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            while let Ok(event) = event_loop.poll().await {
                match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                        if let Some(s) = subscribed_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))
                        if tx.send(p.payload.to_vec()).await.is_err() =>
                    {
                        return;
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(3), subscribed_rx).await.expect("SUBACK in time").unwrap();
        rx
    }

    async fn received(rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>) -> serde_json::Value {
        let payload = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("message in time").unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    async fn round_trip(info: &[(&str, &str)]) {
        let topic = unique_topic();
        let mut rx = subscribe(&topic).await;
        let sender = MqttSender::new();
        let body = serde_json::json!({"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "data": [{"n": 1}]});
        sender.send(&outgoing(&format!("mqtt://{BROKER}/{topic}"), info, &body)).await.unwrap();
        let message = received(&mut rx).await;
        assert_eq!(
            message,
            serde_json::json!({
                "metadata": {
                    "Content-Type": "application/json",
                    "Link": "https://example.org/ctx.jsonld",
                    "NGSILD-Tenant": "t1"
                },
                "body": body
            })
        );
        // The envelope keeps Orion-LD's member order: metadata first.
        let raw = serde_json::to_string(&message).unwrap();
        assert!(raw.starts_with("{\"metadata\":"), "{raw}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos0_publish_reaches_a_subscriber_in_the_orion_ld_envelope() {
        round_trip(&[]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos1_publish_is_acknowledged_and_delivered() {
        round_trip(&[("MQTT-QoS", "1")]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos2_publish_is_acknowledged_and_delivered() {
        round_trip(&[("MQTT-QoS", "2"), ("MQTT-Version", "mqtt3.1.1")]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt5_publishes_at_qos0_1_and_2() {
        round_trip(&[("MQTT-Version", "mqtt5.0")]).await;
        round_trip(&[("MQTT-Version", "mqtt5.0"), ("MQTT-QoS", "1")]).await;
        round_trip(&[("MQTT-Version", "mqtt5.0"), ("MQTT-QoS", "2")]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_connection_serves_concurrent_sends_and_a_broken_one_is_replaced() {
        let topic = unique_topic();
        let mut rx = subscribe(&topic).await;
        let sender = MqttSender::new();
        let uri = format!("mqtt://{BROKER}/{topic}");
        let sends = (0..20).map(|i| {
            let n = outgoing(&uri, &[("MQTT-QoS", if i % 2 == 0 { "1" } else { "2" })], &serde_json::json!({"i": i}));
            let sender = &sender;
            async move { sender.send(&n).await }
        });
        for result in futures_util::future::join_all(sends).await {
            result.unwrap();
        }
        let mut seen: Vec<i64> = Vec::new();
        for _ in 0..20 {
            seen.push(received(&mut rx).await["body"]["i"].as_i64().unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert_eq!(sender.pool.lock().len(), 1);

        // Make the broker drop the pooled connection: a second client presenting the same
        // client identifier takes the session over, and the broker closes the first one.
        let first = sender.pool.lock().values().next().unwrap().clone();
        let options = rumqttc::MqttOptions::new(first.client_id.clone(), "127.0.0.1", 1883);
        let (_intruder, mut intruder_loop) = rumqttc::AsyncClient::new(options, 10);
        let _intruder_task = tokio::spawn(async move { while intruder_loop.poll().await.is_ok() {} });
        let deadline = Instant::now() + Duration::from_secs(3);
        while !first.is_dead() {
            assert!(Instant::now() < deadline, "the broker did not close the taken-over connection");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The next send goes out over a new connection.
        let n = outgoing(&uri, &[("MQTT-QoS", "1")], &serde_json::json!({"after": "reconnect"}));
        sender.send(&n).await.unwrap();
        assert_eq!(received(&mut rx).await["body"]["after"], "reconnect");
        let second = sender.pool.lock().values().next().unwrap().clone();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(!second.is_dead());
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast() {
        let sender = MqttSender::new();
        for info in [&[("MQTT-QoS", "1")][..], &[("MQTT-Version", "mqtt5.0")][..]] {
            let started = Instant::now();
            let n = outgoing("mqtt://127.0.0.1:1/orbis-test/closed", info, &serde_json::json!({}));
            let err = sender.send(&n).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
            assert!(err.0.contains("127.0.0.1:1"), "{err}");
        }
    }

    #[tokio::test]
    async fn mqtts_speaks_tls_and_fails_fast_against_a_plain_listener() {
        // Mosquitto's 1883 listener is plain TCP, so the TLS handshake (aws-lc-rs, system roots)
        // must start and then fail quickly instead of hanging or panicking.
        let sender = MqttSender::new();
        let started = Instant::now();
        let err =
            sender.send(&outgoing(&format!("mqtts://{BROKER}/t"), &[], &serde_json::json!({}))).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(err.0.contains("TLS"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_broker_times_out() {
        // A listener that accepts the TCP connection but never answers CONNECT.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let sender = MqttSender::with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let n = outgoing(&format!("mqtt://127.0.0.1:{port}/t"), &[], &serde_json::json!({}));
        let err = sender.send(&n).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(err.0.contains("no acknowledgement"), "{err}");
        assert!(sender.pool.lock().values().all(|c| c.is_dead()));
    }

    #[test]
    fn endpoint_topic_is_everything_after_the_first_slash_as_in_orion_ld() {
        let e = Endpoint::parse("mqtt://broker:1884/room/1").unwrap();
        assert_eq!(
            e,
            Endpoint {
                tls: false,
                host: "broker".into(),
                port: 1884,
                user: None,
                password: None,
                topic: "room/1".into()
            }
        );
        assert_eq!(Endpoint::parse("mqtt://broker//abs").unwrap().topic, "/abs");
        assert_eq!(Endpoint::parse("mqtt://broker/a%20b").unwrap().topic, "a%20b");
        assert_eq!(Endpoint::parse("mqtt://broker/t").unwrap().port, 1883);
        let e = Endpoint::parse("MQTTS://u%40x:p%3Aw@[::1]/t").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 8883));
        assert_eq!((e.user.as_deref(), e.password.as_deref()), (Some("u@x"), Some("p:w")));
        assert_eq!(Endpoint::parse("mqtt://[::1]:99/t").unwrap().port, 99);
        assert_eq!(Endpoint::parse("mqtt://only-user@h/t").unwrap().user.as_deref(), Some("only-user"));
    }

    #[test]
    fn malformed_endpoints_are_rejected() {
        for uri in [
            "http://broker/t",
            "mqtt://broker",
            "mqtt://broker/",
            "mqtt://broker/a/+",
            "mqtt://broker/#",
            "mqtt://broker:/t",
            "mqtt://broker:x/t",
            "mqtt://broker:70000/t",
            "mqtt:///t",
            "mqtt://u%zz:p@broker/t",
        ] {
            assert!(Endpoint::parse(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn notifier_info_selects_version_and_qos() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(notifier_options(&[]).unwrap(), (Version::V311, 0));
        assert_eq!(
            notifier_options(&pairs(&[("MQTT-Version", "mqtt5.0"), ("MQTT-QoS", "2")])).unwrap(),
            (Version::V5, 2)
        );
        assert!(notifier_options(&pairs(&[("MQTT-Version", "mqtt4")])).is_err());
        assert!(notifier_options(&pairs(&[("MQTT-QoS", "3")])).is_err());
    }

    #[test]
    fn link_headers_are_reduced_to_the_context_url() {
        assert_eq!(link_target("<https://a/b.jsonld>; rel=\"x\""), "https://a/b.jsonld");
        assert_eq!(link_target(" https://a/b.jsonld "), "https://a/b.jsonld");
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        let mut n = outgoing("mqtt://h/t", &[], &serde_json::json!({}));
        n.body = b"{not json".to_vec();
        assert!(envelope(&n).is_err());
    }
}
