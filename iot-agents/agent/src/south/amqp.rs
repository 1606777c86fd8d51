//! The AMQP transport (RabbitMQ): a durable queue bound to the exchange with the routing keys of
//! the FIWARE agents, consumed with a bounded prefetch, and the downlink that publishes commands
//! with publisher confirms.
//!
//! A delivery is acknowledged only once the NGSI-LD broker has accepted its measures; a malformed
//! message is acknowledged (it will never become valid) and counted; a message left unwritten at
//! shutdown is rejected with requeue so another agent (or this one, restarted) takes it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{RwLock, mpsc};

use crate::error::{AgentError, Result};
use crate::metrics::Metrics;
use crate::ngsi::writer::{self, Accepted};
use crate::south::Downlink;
use crate::south::pipeline;
use crate::south::topic::{self, Topic};
use crate::startup::Agent;

/// Deliveries the broker sends before we acknowledge, at most.
const PREFETCH: u16 = 64;
const RECONNECT_START: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
const TRANSPORT: &str = "AMQP";

fn amqp_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::new("AMQP_ERROR", 500, format!("AMQP: {e}"))
}

/// Publishes to devices through the exchange, on a channel in confirm mode.
pub struct AmqpDownlink {
    exchange: String,
    channel: RwLock<Option<Channel>>,
}

#[async_trait]
impl Downlink for AmqpDownlink {
    /// Publishes to the exchange with the routing key `topic` (`.{apikey}.{id}.cmd`) and waits
    /// for RabbitMQ's confirm. `qos` and `retain` mean nothing to AMQP; messages are persistent.
    async fn publish(&self, topic: &str, payload: Vec<u8>, _qos: u8, _retain: bool) -> Result<()> {
        let channel = self.channel.read().await.clone().ok_or_else(|| amqp_error("not connected"))?;
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                topic.into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .map_err(amqp_error)?;
        let confirmation = confirm.await.map_err(amqp_error)?;
        if confirmation.is_nack() {
            return Err(amqp_error("the AMQP broker refused the message"));
        }
        Ok(())
    }
}

/// Starts the AMQP consumer when `amqp_url` is set (connecting, and reconnecting, in the
/// background). The downlink is put in `agent.amqp` once connected (unless something else was
/// put there first).
pub fn start(agent: &Arc<Agent>) {
    let Some(url) = agent.settings.amqp_url.clone() else { return };
    let downlink =
        Arc::new(AmqpDownlink { exchange: agent.settings.amqp_exchange.clone(), channel: RwLock::new(None) });
    let agent = agent.clone();
    let dl = downlink.clone();
    let stopping = agent.writer.stopping();
    tokio::spawn(async move {
        tokio::pin!(stopping);
        let mut pause = RECONNECT_START;
        loop {
            tokio::select! {
                outcome = session(&agent, &url, &dl) => match outcome {
                    Ok(()) => pause = RECONNECT_START,
                    Err(e) => tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "AMQP connection failed"),
                },
                // The agent stops: dropping the connection hands unacknowledged messages back to
                // the queue (RabbitMQ requeues them), and releases the agent.
                _ = &mut stopping => {
                    *dl.channel.write().await = None;
                    return;
                }
            }
            *dl.channel.write().await = None;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    });
}

/// One connection: declares the topology, consumes until the connection ends.
async fn session(agent: &Arc<Agent>, url: &str, downlink: &Arc<AmqpDownlink>) -> Result<()> {
    let s = &agent.settings;
    let connection = Connection::connect(url, ConnectionProperties::default()).await.map_err(amqp_error)?;
    let channel = connection.create_channel().await.map_err(amqp_error)?;
    if !s.amqp_exchange.starts_with("amq.") {
        channel
            .exchange_declare(
                s.amqp_exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error)?;
    }
    channel
        .queue_declare(s.amqp_queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await
        .map_err(amqp_error)?;
    for key in topic::AMQP_BINDINGS {
        channel
            .queue_bind(
                s.amqp_queue.as_str().into(),
                s.amqp_exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error)?;
    }
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(amqp_error)?;
    let publisher = connection.create_channel().await.map_err(amqp_error)?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(amqp_error)?;
    *downlink.channel.write().await = Some(publisher);
    let _ = agent.amqp.set(downlink.clone() as Arc<dyn Downlink>);

    let tag = format!("{}-{}", s.mqtt_client_id, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut consumer = channel
        .basic_consume(
            s.amqp_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_error)?;
    tracing::info!(queue = %s.amqp_queue, "consuming from the AMQP broker");

    // Deliveries wait here, in order, for their measures to be written; the prefetch bounds it.
    let (to_ack, mut acking) = mpsc::channel::<(lapin::message::Delivery, Option<Accepted>)>(PREFETCH as usize);
    let ack_agent = agent.clone();
    let acker = tokio::spawn(async move {
        while let Some((delivery, accepted)) = acking.recv().await {
            let written = match accepted {
                None => true,
                Some(accepted) => match accepted.await {
                    Ok(()) => true,
                    Err(e) if writer::is_stopped(&e) => false,
                    Err(e) => {
                        Metrics::inc(&ack_agent.metrics.messages_rejected);
                        tracing::warn!(key = %delivery.routing_key, error = %e, "the context broker refused a measure");
                        true
                    }
                },
            };
            let r = if written {
                delivery.acker.ack(BasicAckOptions::default()).await
            } else {
                delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot settle an AMQP delivery");
            }
        }
    });

    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(amqp_error)?;
        let accepted = process(agent, delivery.routing_key.as_str(), &delivery.data).await;
        if to_ack.send((delivery, accepted)).await.is_err() {
            break;
        }
    }
    drop(to_ack);
    let _ = acker.await;
    Ok(())
}

/// Runs one delivery through the pipeline; `None` when it was refused (logged and counted).
async fn process(agent: &Agent, key: &str, data: &[u8]) -> Option<Accepted> {
    if data.len() > agent.settings.max_body_bytes {
        Metrics::inc(&agent.metrics.messages_received);
        Metrics::inc(&agent.metrics.messages_rejected);
        tracing::warn!(key, bytes = data.len(), "ignoring a message larger than the body limit");
        return None;
    }
    let Some(Topic { protocol, apikey, device_id, kind }) = topic::parse_amqp(key) else {
        Metrics::inc(&agent.metrics.messages_received);
        Metrics::inc(&agent.metrics.messages_rejected);
        tracing::warn!(key, "ignoring a message with an unknown routing key");
        return None;
    };
    match pipeline::handle(agent, protocol, &apikey, &device_id, &kind, data, TRANSPORT).await {
        Ok(accepted) => Some(accepted),
        Err(e) => {
            tracing::warn!(key, error = %e, "refusing an AMQP message");
            None
        }
    }
}
