//! HTTP and HTTPS delivery: one pooled, keep-alive client for every endpoint; a 2xx answer is
//! success, anything else (or no answer within the time-out) a failure.

use std::time::Duration;

use async_trait::async_trait;

use super::sender::{Outgoing, SendError, Sender};

pub struct HttpSender {
    timeout: Duration,
    /// Built on the first notification: building a client loads the system's root
    /// certificates, which a broker without HTTP subscriptions never needs.
    client: std::sync::OnceLock<reqwest::Client>,
}

impl HttpSender {
    pub fn new(timeout: Duration) -> HttpSender {
        HttpSender { timeout, client: std::sync::OnceLock::new() }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                // Receivers written against Orion-LD read header names as sent (`Link`, `Ngsild-Tenant`).
                .http1_title_case_headers()
                .build()
                .unwrap_or_default()
        })
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, n: &Outgoing) -> Result<(), SendError> {
        let mut req = self.client().post(&n.uri).body(n.body.clone());
        for (k, v) in &n.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(SendError(format!("the receiver answered {}", resp.status()))),
            Err(e) => Err(SendError(format!("cannot reach the receiver: {e}"))),
        }
    }
}
