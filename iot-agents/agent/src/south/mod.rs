//! Southbound transports: devices talk JSON or UltraLight 2.0 over MQTT, HTTP and AMQP. Each
//! transport parses its framing and hands measures, command results and configuration requests
//! to the shared pipeline here.

pub mod amqp;
pub mod http;
pub mod mqtt;
pub mod pipeline;
pub mod topic;

use async_trait::async_trait;

use crate::error::Result;

/// A way to send bytes down to devices on a topic (MQTT) or routing key (AMQP). Set by the
/// transports at start; commands and configuration push use it.
#[async_trait]
pub trait Downlink: Send + Sync {
    /// Publishes and waits until the transport has taken the message (for QoS 1/2, acknowledged).
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8, retain: bool) -> Result<()>;
}
