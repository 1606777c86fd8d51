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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;

use crate::error::{AgentError, Result};
use crate::metrics::Metrics;
use crate::ngsi::writer::Accepted;
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

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes to devices through one of the agent's MQTT connections.
pub struct MqttDownlink {
    client: AsyncClient,
}

#[async_trait]
impl Downlink for MqttDownlink {
    /// Queues the message on the connection; the client library sends it (and, for QoS 1/2,
    /// resends it after a reconnection until the MQTT broker acknowledges it).
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos_level: u8, retain: bool) -> Result<()> {
        self.client
            .publish(topic, qos(qos_level), retain, payload)
            .await
            .map_err(|e| AgentError::new("MQTT_ERROR", 500, format!("cannot publish to the MQTT broker: {e}")))
    }
}

/// Starts the MQTT connections when `mqtt_host` is set; returns the downlink.
pub fn start(agent: &Arc<Agent>) -> Option<Arc<dyn Downlink>> {
    let host = agent.settings.mqtt_host.clone()?;
    let mut downlink = None;
    for i in 0..agent.settings.mqtt_connections.max(1) {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut options = MqttOptions::new(
            format!("{}-{i}-{suffix}", agent.settings.mqtt_client_id),
            host.clone(),
            agent.settings.mqtt_port,
        );
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_manual_acks(true)
            .set_max_packet_size(agent.settings.max_body_bytes.saturating_add(64 * 1024), 16 * 1024 * 1024);
        if let Some(user) = &agent.settings.mqtt_username {
            options.set_credentials(user.clone(), agent.settings.mqtt_password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(options, REQUESTS);
        if downlink.is_none() {
            downlink = Some(Arc::new(MqttDownlink { client: client.clone() }) as Arc<dyn Downlink>);
        }
        spawn_connection(agent.clone(), client, eventloop);
    }
    downlink
}

/// A received message with the session it arrived in (acknowledging a packet id of an earlier
/// session would acknowledge another message).
struct Received {
    session: u64,
    publish: Publish,
}

fn spawn_connection(agent: Arc<Agent>, client: AsyncClient, mut eventloop: rumqttc::EventLoop) {
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
    tokio::spawn(async move {
        let mut pause = RECONNECT_START;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    pause = RECONNECT_START;
                    loop_session.fetch_add(1, Ordering::SeqCst);
                    // `try_` because this task is the one that drains the request queue.
                    if let Err(e) = loop_client.try_subscribe_many(filters.clone()) {
                        tracing::error!(error = %e, "cannot subscribe to the MQTT topics");
                    }
                    tracing::info!("connected to the MQTT broker");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let received = Received { session: loop_session.load(Ordering::SeqCst), publish };
                    if to_process.send(received).await.is_err() {
                        return;
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
                    Err(e) if e.status >= 500 => {
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
