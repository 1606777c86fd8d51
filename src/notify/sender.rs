//! The delivery boundary: one notification, ready to send, and the transports that carry it.
//! The notifier decides what to send and when; a sender only moves bytes to one endpoint and
//! says whether the receiver took them, so HTTP, MQTT and AMQP share retries and counters.

use async_trait::async_trait;

/// A notification ready to go: the endpoint, the headers HTTP would carry (MQTT wraps them in
/// its `metadata` member), the body, and the endpoint's `notifierInfo` pairs.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The endpoint URI as the subscription gives it (`http://…`, `mqtt://…`, `amqp://…`).
    pub uri: String,
    /// Header name and value pairs, e.g. `Content-Type`, `Link`, `NGSILD-Tenant`, and the
    /// `receiverInfo` headers.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// `notifierInfo` key and value pairs (`MQTT-Version`, `MQTT-QoS`, …).
    pub notifier_info: Vec<(String, String)>,
}

/// Why a delivery failed; every failure counts in the subscription's status and is retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// A transport for one family of URI schemes.
#[async_trait]
pub trait Sender: Send + Sync {
    /// Delivers one notification. Returns once the receiver has accepted it (a 2xx response, an
    /// MQTT PUBACK for QoS 1 and 2 or a flushed QoS 0 publish, an AMQP publisher confirm), or
    /// fails within the sender's time-out.
    async fn send(&self, n: &Outgoing) -> Result<(), SendError>;
}
