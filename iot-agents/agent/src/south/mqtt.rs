//! The MQTT transport: `mqtt_connections` connections to the MQTT broker, each subscribed with
//! QoS 1 to the shared subscriptions of the JSON and UltraLight topics, and the downlink that
//! publishes commands and configuration values to devices.
//!
//! A message is acknowledged (PUBACK) only once the NGSI-LD broker has accepted its measures, so
//! while the broker is down the MQTT broker keeps the messages in flight or queued and none is
//! lost; the in-flight window bounds what the agent holds. Each connection has three tasks: the
//! event loop (kept polling so keep-alives and acknowledgements flow), the processing task (runs
//! the pipeline in arrival order, which is also the order of submission to the writer), and the
//! acknowledging task (waits for the writer in the same order and acknowledges).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::{mpsc, oneshot};

use crate::error::{AgentError, Result};
use crate::metrics::Metrics;
use crate::ngsi::writer::{self, Accepted};
use crate::south::Downlink;
use crate::south::pipeline;
use crate::south::topic::{self, Topic};
use crate::startup::Agent;

/// Messages of one connection between the event loop and the acknowledgement, at most. The MQTT
/// broker's own in-flight window (Mosquitto: 20) is normally the tighter bound.
const WINDOW: usize = 256;
/// Requests (acknowledgements, publishes, subscriptions) queued for one event loop.
const REQUESTS: usize = 1024;
const RECONNECT_START: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
const TRANSPORT: &str = "MQTT";
/// How long a downlink publish waits for the MQTT broker's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn mqtt_error(message: impl std::fmt::Display) -> AgentError {
    AgentError::new("MQTT_ERROR", 500, format!("MQTT: {message}"))
}

/// Matches downlink publishes to the MQTT broker's acknowledgements. The event loop reports each
/// publish it sends (`Outgoing::Publish(pkid)`) in the order the requests were queued, so the
/// waiting publishers form a FIFO until their packet id is known, then wait by packet id.
#[derive(Default)]
struct Acks {
    /// Publishers whose message the event loop has not sent yet, in request order.
    unsent: Mutex<VecDeque<(QoS, oneshot::Sender<()>)>>,
    /// Publishers waiting for the acknowledgement of a packet id.
    unacked: Mutex<HashMap<u16, oneshot::Sender<()>>>,
    /// Keeps requests and `unsent` in the same order.
    order: tokio::sync::Mutex<()>,
}

impl Acks {
    /// The event loop sent a publish (or resent it after a reconnection: then its publisher is
    /// already waiting by packet id).
    fn sent(&self, pkid: u16) {
        if pkid != 0 && self.unacked.lock().contains_key(&pkid) {
            return;
        }
        let Some((qos, tx)) = self.unsent.lock().pop_front() else { return };
        if qos == QoS::AtMostOnce {
            let _ = tx.send(());
        } else {
            self.unacked.lock().insert(pkid, tx);
        }
    }

    /// The MQTT broker acknowledged a publish (PUBACK for QoS 1, PUBCOMP for QoS 2).
    fn acked(&self, pkid: u16) {
        if let Some(tx) = self.unacked.lock().remove(&pkid) {
            let _ = tx.send(());
        }
    }
}

/// Publishes to devices through the agent's first MQTT connection.
pub struct MqttDownlink {
    client: AsyncClient,
    acks: Arc<Acks>,
}

#[async_trait]
impl Downlink for MqttDownlink {
    /// Publishes and waits until the MQTT broker acknowledged the message (QoS 1/2) or the
    /// connection sent it (QoS 0). The client library resends unacknowledged messages after a
    /// reconnection; after `PUBLISH_TIMEOUT` the caller gets an error.
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos_level: u8, retain: bool) -> Result<()> {
        let level = qos(qos_level);
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.acks.order.lock().await;
            self.acks.unsent.lock().push_back((level, tx));
            if let Err(e) = self.client.publish(topic, level, retain, payload).await {
                self.acks.unsent.lock().pop_back();
                return Err(mqtt_error(format!("cannot publish: {e}")));
            }
        }
        match tokio::time::timeout(PUBLISH_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(mqtt_error("the connection stopped before the message was acknowledged")),
            Err(_) => Err(mqtt_error("the MQTT broker did not acknowledge the message in time")),
        }
    }
}

/// Starts the MQTT connections when `mqtt_host` is set. The first connection's downlink is put
/// in `agent.mqtt` once it is connected (unless something else was put there first).
pub fn start(agent: &Arc<Agent>) {
    let Some(host) = agent.settings.mqtt_host.clone() else { return };
    let mut downlink: Option<Arc<MqttDownlink>> = None;
    for i in 0..agent.settings.mqtt_connections.max(1) {
        let clean = agent.settings.mqtt_clean;
        let id = if clean {
            format!("{}-{i}-{}", agent.settings.mqtt_client_id, &uuid::Uuid::new_v4().simple().to_string()[..8])
        } else {
            format!("{}-{i}", agent.settings.mqtt_client_id)
        };
        let mut options = MqttOptions::new(id, host.clone(), agent.settings.mqtt_port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(clean)
            .set_manual_acks(true)
            .set_max_packet_size(agent.settings.max_body_bytes.saturating_add(64 * 1024), 16 * 1024 * 1024);
        if let Some(user) = &agent.settings.mqtt_username {
            options.set_credentials(user.clone(), agent.settings.mqtt_password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUESTS);
        // Acknowledgements are tiny and each one releases the next message: Nagle's algorithm
        // would hold them back behind unacknowledged segments (with the peer's delayed ACK,
        // tens of milliseconds each), which stalls the whole in-flight window.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let link = if downlink.is_none() {
            let link = Arc::new(MqttDownlink { client: client.clone(), acks: Arc::new(Acks::default()) });
            downlink = Some(link.clone());
            Some(link)
        } else {
            None
        };
        spawn_connection(agent.clone(), client, eventloop, link);
    }
}

/// A received message with the session it arrived in (acknowledging a packet id of an earlier
/// session would acknowledge another message).
struct Received {
    session: u64,
    publish: Publish,
}

fn spawn_connection(
    agent: Arc<Agent>,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    downlink: Option<Arc<MqttDownlink>>,
) {
    let downlink_acks = downlink.as_ref().map(|d| d.acks.clone());
    let session = Arc::new(AtomicU64::new(0));
    let (to_process, mut processing) = mpsc::channel::<Received>(WINDOW);
    let (to_ack, mut acking) = mpsc::channel::<(Received, Option<Accepted>)>(WINDOW);
    let filters: Vec<SubscribeFilter> = topic::mqtt_subscriptions(&agent.settings.mqtt_share_prefix)
        .into_iter()
        .map(|path| SubscribeFilter::new(path, QoS::AtLeastOnce))
        .collect();

    // The event loop: connects, subscribes on every (re)connection, forwards publishes.
    let loop_client = client.clone();
    let loop_session = session.clone();
    let loop_agent = agent.clone();
    let stopping = agent.writer.stopping();
    tokio::spawn(async move {
        tokio::pin!(stopping);
        let mut pause = RECONNECT_START;
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = &mut stopping => {
                    // The agent stops: say goodbye so a persistent session keeps what is not
                    // acknowledged, and drop the tasks' hold on the agent.
                    let _ = loop_client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(ev) = eventloop.poll().await {
                            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                                break;
                            }
                        }
                    })
                    .await;
                    return;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    pause = RECONNECT_START;
                    loop_session.fetch_add(1, Ordering::SeqCst);
                    // `try_` because this task is the one that drains the request queue.
                    if let Err(e) = loop_client.try_subscribe_many(filters.clone()) {
                        tracing::error!(error = %e, "cannot subscribe to the MQTT topics");
                    }
                    if let Some(link) = &downlink {
                        let _ = loop_agent.mqtt.set(link.clone() as Arc<dyn Downlink>);
                    }
                    tracing::info!("connected to the MQTT broker");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let received = Received { session: loop_session.load(Ordering::SeqCst), publish };
                    if to_process.send(received).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(acks) = &downlink_acks {
                        acks.sent(pkid);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(acks) = &downlink_acks {
                        acks.acked(ack.pkid);
                    }
                }
                Ok(Event::Incoming(Packet::PubComp(comp))) => {
                    if let Some(acks) = &downlink_acks {
                        acks.acked(comp.pkid);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "MQTT connection lost");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX);
                }
            }
        }
    });

    // The processing task: the pipeline, in arrival order.
    let process_agent = agent.clone();
    tokio::spawn(async move {
        while let Some(received) = processing.recv().await {
            let accepted = process(&process_agent, &received.publish).await;
            if to_ack.send((received, accepted)).await.is_err() {
                return;
            }
        }
    });

    // The acknowledging task: waits for the writer, in order, then acknowledges.
    tokio::spawn(async move {
        while let Some((received, accepted)) = acking.recv().await {
            if let Some(accepted) = accepted {
                match accepted.await {
                    Ok(()) => {}
                    Err(e) if writer::is_stopped(&e) => {
                        // Only a stopping writer answers so: leave the message to the MQTT broker.
                        tracing::info!(topic = %received.publish.topic, "not acknowledging an unwritten message");
                        continue;
                    }
                    Err(e) => {
                        Metrics::inc(&agent.metrics.messages_rejected);
                        tracing::warn!(topic = %received.publish.topic, error = %e, "the context broker refused a measure");
                    }
                }
            }
            if received.session == session.load(Ordering::SeqCst)
                && let Err(e) = client.ack(&received.publish).await
            {
                tracing::warn!(error = %e, "cannot acknowledge an MQTT message");
            }
        }
    });
}

/// Runs one message through the pipeline; `None` when there is nothing to wait for (the message
/// was refused: logged, counted, and acknowledged since it will never become valid).
async fn process(agent: &Agent, publish: &Publish) -> Option<Accepted> {
    let Some(Topic { protocol, apikey, device_id, kind }) = topic::parse_mqtt(&publish.topic) else {
        Metrics::inc(&agent.metrics.messages_received);
        Metrics::inc(&agent.metrics.messages_rejected);
        tracing::warn!(topic = %publish.topic, "ignoring a message on an unknown topic");
        return None;
    };
    match pipeline::handle(agent, protocol, &apikey, &device_id, &kind, &publish.payload, TRANSPORT).await {
        Ok(accepted) => Some(accepted),
        Err(e) => {
            tracing::warn!(topic = %publish.topic, error = %e, "refusing an MQTT message");
            None
        }
    }
}
