//! Periodic notifications (`timeInterval`, GS CIM 009 §5.8.1): every interval the
//! subscription's query runs against the store and the matching entities are notified, whether
//! they changed or not (for a context source registration subscription: the registrations it
//! matches). One timer task per subscription, cancelled when it changes or goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::matcher::Fired;
use super::subscription::Compiled;
use super::{Job, Notifier};
use crate::model::now_millis;
use crate::query::EntityQuery;

/// The largest number of entities one periodic notification carries.
const MAX_ENTITIES: usize = 1000;

#[derive(Default)]
pub struct Timers {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Timers {
    pub fn start(&self, n: Arc<Notifier>, k: String, c: Arc<Compiled>) {
        let Some(secs) = c.time_interval else { return };
        let period = Duration::from_secs_f64(secs.max(0.1));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !c.live(now_millis()) {
                    continue;
                }
                if c.csource.is_some() {
                    // A registration subscription is sent every registration it matches.
                    let data = n.csource_matching(&c);
                    if !data.is_empty() {
                        let p = super::csource::Payload { reason: super::csource::Reason::NewlyMatching, data };
                        n.queue.push_loose(Notifier::csource_job(&c, p)).await;
                    }
                    continue;
                }
                let query = EntityQuery {
                    selectors: c.selectors.clone(),
                    attrs: (!c.watched.is_empty()).then(|| c.watched.clone()),
                    q: c.q.clone(),
                    scope: c.scope.clone(),
                    order: None,
                    geo: c.geo.clone(),
                };
                let page = match n.store.query(&c.tenant, &query.into_filter(), 0, MAX_ENTITIES, false).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(sub = %c.id, error = %e, "periodic notification query failed");
                        continue;
                    }
                };
                if page.entities.is_empty() {
                    continue;
                }
                let fired = page.entities.into_iter().map(Fired::current).collect();
                n.queue
                    .push_loose(Job {
                        outbox: None,
                        tenant: c.tenant.clone(),
                        sub: c.id.clone(),
                        fired,
                        queued_at: now_millis(),
                        csource: None,
                    })
                    .await;
            }
        });
        if let Some(old) = self.tasks.lock().insert(k, task) {
            old.abort();
        }
    }

    pub fn cancel(&self, k: &str) {
        if let Some(t) = self.tasks.lock().remove(k) {
            t.abort();
        }
    }
}
