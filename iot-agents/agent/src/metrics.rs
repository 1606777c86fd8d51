//! Counters the agent exposes on `/metrics` (Prometheus text). Plain atomics: incremented on the
//! measure path, read only when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// The agent's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Southbound messages received (any transport).
    pub messages_received: AtomicU64,
    /// Southbound messages refused (bad payload, unknown device, …).
    pub messages_rejected: AtomicU64,
    /// Measure groups accepted for the broker.
    pub measures_accepted: AtomicU64,
    /// Entities the broker accepted in upserts.
    pub entities_upserted: AtomicU64,
    /// Entities the broker refused (a 4xx answer); their messages were rejected.
    pub entities_rejected: AtomicU64,
    /// Upsert requests that failed and were retried.
    pub upsert_retries: AtomicU64,
    /// Commands received from the broker.
    pub commands_received: AtomicU64,
    /// Commands answered by devices (OK or ERROR) or expired.
    pub commands_completed: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
