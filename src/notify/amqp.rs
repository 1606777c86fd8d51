//! AMQP 0-9-1 delivery of notifications, for subscriptions whose endpoint is `amqp://` or
//! `amqps://`. Orion-LD has no AMQP notifier; this transport lets deployments built around
//! RabbitMQ receive notifications without an HTTP-to-AMQP bridge.
//!
//! # Endpoint URI
//!
//! `amqp[s]://[user:password@]host[:port][/vhost][?exchange=X&routingKey=Y]`:
//!
//! * user, password and vhost follow the RabbitMQ URI specification (percent-encoded; the
//!   default user is `guest`, the default port 5672 or 5671). A missing or empty vhost is `/`,
//!   written `%2F` when it must be spelled out.
//! * `exchange` (default `""`, RabbitMQ's default exchange, which routes to the queue named by
//!   the routing key) and `routingKey` (default `orbis.notifications`) say where each message goes,
//!   e.g. `amqp://rabbit/?exchange=amq.topic&routingKey=building1.rooms`.
//! * The connection parameters lapin understands (`heartbeat`, `connection_timeout`,
//!   `frame_max`, `channel_max`, `auth_mechanism`) pass through; other parameters are ignored.
//!
//! # Message
//!
//! The body is the notification JSON. The `Content-Type` header becomes the AMQP `content_type`
//! property; every other header (`Link`, `NGSILD-Tenant`, `receiverInfo` headers, …) goes
//! unchanged into the `headers` table as a long string. Messages are persistent (delivery mode
//! 2) and published with the `mandatory` flag.
//!
//! # Acknowledgement
//!
//! A send succeeds only when the broker confirms the message (publisher confirms). A negative
//! confirm fails the send, and so does a message the broker returns as unroutable (no queue
//! is bound for its routing key): such a message would be lost, so it counts as a failed
//! notification rather than a delivered one. The whole send, connecting included, is bounded by
//! a time-out (5 s by default).
//!
//! # Connections
//!
//! One connection with one confirm-mode channel per (scheme, host, port, user, password, vhost
//! and connection parameters), opened on first use and shared by all subscriptions. A channel
//! the broker closed (for instance after a publish to a missing exchange) is replaced on the next
//! send, a lost connection is reopened, and a send that timed out drops the connection so the
//! next one starts afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use parking_lot::Mutex;

use super::sender::{Outgoing, SendError, Sender};

/// How long a send waits for the broker's confirm (connecting included) when no other time-out
/// is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The routing key used when the endpoint names none.
pub const DEFAULT_ROUTING_KEY: &str = "orbis.notifications";

/// AMQP's persistent delivery mode.
const PERSISTENT: u8 = 2;

/// Publishes notifications to AMQP 0-9-1 brokers; see the module documentation.
pub struct AmqpSender {
    pool: Mutex<HashMap<String, Arc<Slot>>>,
    timeout: Duration,
}

/// The pooled connection for one broker; the async lock makes concurrent sends share one
/// connection attempt.
type Slot = tokio::sync::Mutex<Option<Link>>;

/// An open connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
    /// Tells this link apart from its replacements, so a failed send drops only the link it used.
    generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

impl AmqpSender {
    /// A sender with the default 5 s time-out. Opens no connection until the first send.
    pub fn new() -> Self {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// A sender whose sends fail when the broker has not confirmed within `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { pool: Mutex::new(HashMap::new()), timeout }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        self.pool.lock().entry(key.to_owned()).or_default().clone()
    }

    /// The channel to publish on, with the generation of its link; opens the connection or the
    /// channel again when the pooled one is no longer usable.
    async fn channel(&self, slot: &Slot, endpoint: &Endpoint) -> Result<(Channel, u64), SendError> {
        let mut link = slot.lock().await;
        if let Some(l) = link.as_mut() {
            if l.connection.status().connected() {
                if l.channel.status().connected() {
                    return Ok((l.channel.clone(), l.generation));
                }
                // The broker closed the channel (a channel error); the connection is still good.
                match open_channel(&l.connection).await {
                    Ok(channel) => {
                        l.channel = channel;
                        return Ok((l.channel.clone(), l.generation));
                    }
                    Err(e) => tracing::debug!(error = %e.0, "AMQP channel could not be reopened; reconnecting"),
                }
            }
            *link = None;
        }
        let connection = Connection::connect_uri(
            endpoint.uri.clone(),
            ConnectionProperties::default().with_connection_name("orbis notifications".into()),
        )
        .await
        .map_err(|e| SendError(format!("AMQP broker {}: {e}", endpoint.peer)))?;
        let channel = open_channel(&connection).await?;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        *link = Some(Link { connection, channel: channel.clone(), generation });
        Ok((channel, generation))
    }

    /// Drops the slot's link if it is still the one of `generation`, closing its connection.
    async fn discard(slot: &Slot, generation: u64) {
        let mut link = slot.lock().await;
        if link.as_ref().is_some_and(|l| l.generation == generation)
            && let Some(old) = link.take()
        {
            tokio::spawn(async move {
                let closing = old.connection.close(320, "orbis: connection replaced".into());
                let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
            });
        }
    }

    async fn publish(&self, slot: &Slot, endpoint: &Endpoint, n: &Outgoing) -> Result<(), (SendError, Option<u64>)> {
        let (channel, generation) = self.channel(slot, endpoint).await.map_err(|e| (e, None))?;
        let failed = |what: &str, e: lapin::Error| {
            (SendError(format!("AMQP broker {}: {what}: {e}", endpoint.peer)), Some(generation))
        };
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirm = channel
            .basic_publish(
                endpoint.exchange.clone(),
                endpoint.routing_key.clone(),
                options,
                &n.body,
                properties(&n.headers),
            )
            .await
            .map_err(|e| failed("publish failed", e))?;
        let confirmation = confirm.await.map_err(|e| failed("no publisher confirm", e))?;
        let refused = |why: String| Err((SendError(format!("AMQP broker {}: {why}", endpoint.peer)), None));
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => refused(format!(
                "message returned as unroutable ({} {}) from exchange {:?} with routing key {:?}",
                returned.reply_code,
                returned.reply_text.as_str(),
                endpoint.exchange.as_str(),
                endpoint.routing_key.as_str()
            )),
            Confirmation::Nack(None) => refused("the broker refused the message (nack)".to_owned()),
            Confirmation::NotRequested => refused("publisher confirms are not enabled on the channel".to_owned()),
        }
    }
}

impl Default for AmqpSender {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Sender for AmqpSender {
    async fn send(&self, n: &Outgoing) -> Result<(), SendError> {
        let endpoint = Endpoint::parse(&n.uri)?;
        let slot = self.slot(&endpoint.key);
        match tokio::time::timeout(self.timeout, self.publish(&slot, &endpoint, n)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((e, generation))) => {
                // A failed publish or confirm means the channel or the connection is in doubt.
                if let Some(generation) = generation {
                    Self::discard(&slot, generation).await;
                }
                Err(e)
            }
            Err(_) => {
                // Whatever link is pooled now did not deliver in time: start afresh next time.
                let current = slot.try_lock().ok().and_then(|l| l.as_ref().map(|l| l.generation));
                if let Some(generation) = current {
                    Self::discard(&slot, generation).await;
                }
                Err(SendError(format!(
                    "AMQP broker {}: no publisher confirm within {} ms",
                    endpoint.peer,
                    self.timeout.as_millis()
                )))
            }
        }
    }
}

async fn open_channel(connection: &Connection) -> Result<Channel, SendError> {
    let channel = connection.create_channel().await.map_err(|e| SendError(format!("AMQP channel: {e}")))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| SendError(format!("AMQP publisher confirms: {e}")))?;
    Ok(channel)
}

/// The AMQP properties for a notification's headers.
fn properties(headers: &[(String, String)]) -> BasicProperties {
    let mut table = FieldTable::default();
    let mut props = BasicProperties::default().with_delivery_mode(PERSISTENT);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("Content-Type") {
            props = props.with_content_type(ShortString::from(value.as_str()));
        } else {
            table.insert(ShortString::from(name.as_str()), AMQPValue::LongString(LongString::from(value.as_str())));
        }
    }
    props.with_headers(table)
}

/// A parsed `amqp://` or `amqps://` endpoint.
#[derive(Debug)]
struct Endpoint {
    /// What lapin connects to.
    uri: AMQPUri,
    /// The pool key: the normalised connection URI (credentials included, never logged).
    key: String,
    /// `host:port` for messages.
    peer: String,
    exchange: ShortString,
    routing_key: ShortString,
}

impl Endpoint {
    fn parse(uri: &str) -> Result<Self, SendError> {
        let bad = |why: String| SendError(format!("invalid AMQP endpoint: {why}"));
        let without_fragment = uri.split_once('#').map_or(uri, |(u, _)| u);
        let (base, query) = without_fragment.split_once('?').unwrap_or((without_fragment, ""));
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| bad(format!("query string: {e}")))?;
        let mut exchange = String::new();
        let mut routing_key = DEFAULT_ROUTING_KEY.to_owned();
        let mut connection_params = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                "exchange" => exchange = value,
                "routingKey" => routing_key = value,
                _ => connection_params.push((name, value)),
            }
        }
        for (what, value) in [("exchange", &exchange), ("routingKey", &routing_key)] {
            if value.len() > 255 {
                return Err(bad(format!("{what} is longer than 255 bytes")));
            }
        }
        let connection_query =
            serde_urlencoded::to_string(&connection_params).map_err(|e| bad(format!("query string: {e}")))?;
        let connection_uri =
            if connection_query.is_empty() { base.to_owned() } else { format!("{base}?{connection_query}") };
        let mut parsed: AMQPUri = connection_uri.parse().map_err(|e: String| bad(e))?;
        if parsed.vhost.is_empty() {
            parsed.vhost = "/".to_owned();
        }
        let peer = format!("{}:{}", parsed.authority.host, parsed.authority.port);
        Ok(Self {
            key: parsed.to_string(),
            uri: parsed,
            peer,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use std::time::Instant;

    const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672";

    fn outgoing(uri: &str, body: &serde_json::Value) -> Outgoing {
        Outgoing {
            uri: uri.to_owned(),
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "Link".to_owned(),
                    "<https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"".to_owned(),
                ),
                ("NGSILD-Tenant".to_owned(), "t1".to_owned()),
            ],
            body: serde_json::to_vec(body).unwrap(),
            notifier_info: Vec::new(),
        }
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
    }

    /// A test consumer: its own connection and an exclusive, auto-deleted queue.
    struct Consumer {
        _connection: Connection,
        channel: Channel,
        queue: ShortString,
    }

    impl Consumer {
        /// A server-named queue bound to `exchange` with `routing_key`, or, when `exchange` is
        /// the default exchange, a queue named `routing_key`.
        async fn bound(exchange: &str, routing_key: &str) -> Self {
            let connection = Connection::connect(BROKER, ConnectionProperties::default()).await.unwrap();
            let channel = connection.create_channel().await.unwrap();
            let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
            let name = if exchange.is_empty() { routing_key } else { "" };
            let queue = channel.queue_declare(name.into(), options, FieldTable::default()).await.unwrap();
            let queue = queue.name().clone();
            if !exchange.is_empty() {
                channel
                    .queue_bind(
                        queue.clone(),
                        exchange.into(),
                        routing_key.into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
            }
            Self { _connection: connection, channel, queue }
        }

        async fn next(&self) -> lapin::message::Delivery {
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let got = self.channel.basic_get(self.queue.clone(), BasicGetOptions { no_ack: true }).await.unwrap();
                if let Some(message) = got {
                    return message.delivery;
                }
                assert!(Instant::now() < deadline, "no message in {}", self.queue.as_str());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn header<'a>(delivery: &'a lapin::message::Delivery, name: &str) -> Option<&'a AMQPValue> {
        delivery.properties.headers().as_ref()?.inner().get(&ShortString::from(name))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_to_a_topic_exchange_with_properties_and_headers() {
        let key = unique("orbis.test");
        let consumer = Consumer::bound("amq.topic", &key).await;
        let sender = AmqpSender::new();
        let body = serde_json::json!({"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "data": []});
        sender.send(&outgoing(&format!("{BROKER}/?exchange=amq.topic&routingKey={key}"), &body)).await.unwrap();

        let delivery = consumer.next().await;
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&delivery.data).unwrap(), body);
        assert_eq!(delivery.routing_key.as_str(), key);
        assert_eq!(delivery.exchange.as_str(), "amq.topic");
        let props = &delivery.properties;
        assert_eq!(props.content_type().as_ref().map(ShortString::as_str), Some("application/json"));
        assert_eq!(*props.delivery_mode(), Some(PERSISTENT));
        let link = "<https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"";
        assert_eq!(header(&delivery, "Link"), Some(&AMQPValue::LongString(link.into())));
        assert_eq!(header(&delivery, "NGSILD-Tenant"), Some(&AMQPValue::LongString("t1".into())));
        assert_eq!(header(&delivery, "Content-Type"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_default_exchange_routes_to_the_queue_named_by_the_routing_key() {
        let queue = unique("orbis.test.q");
        let consumer = Consumer::bound("", &queue).await;
        let sender = AmqpSender::new();
        // The vhost "/" spelled out, and a connection parameter lapin understands.
        let uri = format!("{BROKER}/%2F?routingKey={queue}&heartbeat=30");
        for i in 0..3 {
            sender.send(&outgoing(&uri, &serde_json::json!({"i": i}))).await.unwrap();
        }
        for i in 0..3 {
            let delivery = consumer.next().await;
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&delivery.data).unwrap()["i"], i);
        }
        assert_eq!(sender.pool.lock().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unroutable_messages_and_missing_exchanges_fail_and_the_channel_recovers() {
        let sender = AmqpSender::new();
        let nowhere = unique("orbis.test.nobody");
        let err = sender
            .send(&outgoing(&format!("{BROKER}/?exchange=amq.topic&routingKey={nowhere}"), &serde_json::json!({})))
            .await
            .unwrap_err();
        assert!(err.0.contains("unroutable"), "{err}");

        // Publishing to an exchange that does not exist makes the broker close the channel.
        let missing = unique("orbis.test.missing");
        let err = sender
            .send(&outgoing(&format!("{BROKER}/?exchange={missing}&routingKey=x"), &serde_json::json!({})))
            .await
            .unwrap_err();
        assert!(err.0.contains("NOT_FOUND") || err.0.contains("404"), "{err}");

        // The same broker connection key is used again and delivers.
        let key = unique("orbis.test");
        let consumer = Consumer::bound("amq.topic", &key).await;
        sender
            .send(&outgoing(&format!("{BROKER}/?exchange=amq.topic&routingKey={key}"), &serde_json::json!({"ok": 1})))
            .await
            .unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&consumer.next().await.data).unwrap()["ok"], 1);
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast() {
        let sender = AmqpSender::new();
        let started = Instant::now();
        let err = sender.send(&outgoing("amqp://guest:guest@127.0.0.1:1/", &serde_json::json!({}))).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(err.0.contains("127.0.0.1:1"), "{err}");
    }

    #[test]
    fn endpoint_defaults_and_parameters() {
        let e = Endpoint::parse("amqp://rabbit").unwrap();
        assert_eq!((e.exchange.as_str(), e.routing_key.as_str()), ("", DEFAULT_ROUTING_KEY));
        assert_eq!(e.uri.vhost, "/");
        assert_eq!(e.peer, "rabbit:5672");
        assert_eq!(e.uri.authority.userinfo.username, "guest");

        let e = Endpoint::parse("amqps://u:p%40ss@rabbit:1234/prod?exchange=amq.topic&routingKey=a.b&heartbeat=10")
            .unwrap();
        assert_eq!((e.exchange.as_str(), e.routing_key.as_str()), ("amq.topic", "a.b"));
        assert_eq!(e.uri.vhost, "prod");
        assert_eq!(e.uri.authority.userinfo.password, "p@ss");
        assert_eq!(e.uri.query.heartbeat, Some(10));
        assert_eq!(e.peer, "rabbit:1234");

        assert_eq!(Endpoint::parse("amqp://rabbit/").unwrap().uri.vhost, "/");
        assert_eq!(Endpoint::parse("amqps://rabbit/").unwrap().peer, "rabbit:5671");

        // Exchange and routing key do not split the pool; vhost and credentials do.
        let key = |uri: &str| Endpoint::parse(uri).unwrap().key;
        assert_eq!(key("amqp://h/?exchange=a"), key("amqp://h/?routingKey=b"));
        assert_ne!(key("amqp://h/v1"), key("amqp://h/v2"));
        assert_ne!(key("amqp://a:b@h/"), key("amqp://a:c@h/"));
    }

    #[test]
    fn malformed_endpoints_are_rejected() {
        for uri in ["http://rabbit/", "amqp://rabbit:x/", &format!("amqp://h/?routingKey={}", "k".repeat(256))] {
            assert!(Endpoint::parse(uri).is_err(), "{uri}");
        }
    }
}
