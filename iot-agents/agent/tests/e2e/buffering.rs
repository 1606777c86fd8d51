//! No measure is lost while the broker is down: the agent starts pointing at a broker that is not
//! up yet, devices report over MQTT (QoS 1) and HTTP, then the broker starts on that address and
//! every measure arrives.

use std::time::Duration;

use serde_json::json;

use crate::common::{self, unique};
use crate::http_south::{group, spawn_south, tenant};
use crate::mqtt::{Device, spawn_mqtt, wait_subscribed};

/// A port nothing listens on (taken from the OS, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts an `orbis` broker on a fixed port (the one the agent was given); keeps its data
/// directory alive for the test.
async fn start_broker_on(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = orbis::config::Settings {
        host: "127.0.0.1".into(),
        port,
        data_dir: dir.path().to_owned(),
        workers: 2,
        context_timeout_ms: 1000,
        ..Default::default()
    };
    let app = orbis::startup::Application::build(settings).await.expect("broker builds on the reserved port");
    tokio::spawn(app.run_until_stopped());
    dir
}

#[tokio::test]
async fn mqtt_measures_published_while_the_broker_is_down_all_arrive() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let south = spawn_mqtt(&url, 2).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&south, &mut device).await;

    const N: usize = 60;
    for i in 0..N {
        device.publish(&format!("/json/{key}/d{i}/attrs"), format!(r#"{{"seq": {i}}}"#).as_bytes()).await;
    }
    // The agent holds them (in its buffer) and keeps retrying the unreachable broker.
    common::eventually(20, "the writer retrying", || async {
        (south.agent.metrics.upsert_retries.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _dir = start_broker_on(port).await;
    for i in 0..N {
        let e = south.entity_when(&url, &service, &key, &format!("d{i}"), |e| e.get("seq").is_some()).await;
        assert_eq!(e["seq"]["value"], json!(i));
    }
}

#[tokio::test]
async fn an_http_measure_is_answered_503_while_the_broker_is_down_and_written_later() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let south = spawn_south(&url, |s| s.cb_timeout_ms = 300).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;

    let r = south
        .test
        .client
        .post(format!("{}/iot/json?k={key}&i=late", south.http()))
        .header("content-type", "application/json")
        .body(r#"{"v": 11}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["name"], "ENTITY_GENERIC_ERROR");

    let _dir = start_broker_on(port).await;
    let e = south.entity_when(&url, &service, &key, "late", |e| e.get("v").is_some()).await;
    assert_eq!(e["v"]["value"], json!(11));
}

/// With persistent MQTT sessions (`IOTA_MQTT_CLEAN=false`), measures published while the agent
/// is stopped are kept by Mosquitto for its session and written once it is back.
#[tokio::test]
async fn mqtt_measures_sent_while_the_agent_is_down_arrive_after_it_restarts() {
    let broker = common::spawn_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::agent_settings(&broker.url, dir.path());
    settings.mqtt_host = Some("127.0.0.1".into());
    settings.mqtt_connections = 1;
    settings.mqtt_clean = false;
    settings.mqtt_client_id = unique("persist");
    let (key, service) = (unique("k"), tenant());
    let mut device = Device::connect().await;

    let app = orbis_agent::startup::Application::build(settings.clone()).await.expect("agent builds");
    app.agent.registry.create_groups(vec![group(&key, &service, "/iot/json")]).await.expect("group stored");
    let agent = app.agent.clone();
    let handles = app.handles();
    tokio::spawn(app.run_until_stopped());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while agent.metrics.entities_upserted.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the agent never wrote the first measure");
        device.publish(&format!("/json/{key}/first/attrs"), br#"{"seq": 0}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stop the agent and wait until every task let go of it.
    common::stop_and_release(&handles, agent).await;

    const N: usize = 20;
    for i in 0..N {
        device.publish(&format!("/json/{key}/d{i}/attrs"), format!(r#"{{"seq": {i}}}"#).as_bytes()).await;
    }

    let app = common::rebuild(&settings).await;
    let agent = app.agent.clone();
    tokio::spawn(app.run_until_stopped());
    for i in 0..N {
        let id = format!("d{i}");
        let entity = common::eventually(20, "a measure sent while the agent was down", || {
            common::device_entity(&agent, &broker.url, &service, &key, &id)
        })
        .await;
        assert_eq!(entity["seq"]["value"], json!(i));
    }
}

/// More measures than Mosquitto queues for a subscriber (1,000 by default, beyond its in-flight
/// window) while the broker is down: the durable buffer takes them all, so none is dropped.
/// With the buffer off (`buffer_max_bytes = 0`) Mosquitto would drop what exceeds its queue.
#[tokio::test]
async fn more_measures_than_mosquitto_queues_survive_a_broker_outage() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let south = spawn_mqtt(&url, 1).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&south, &mut device).await;

    const DEVICES: usize = 100;
    const N: usize = 1200;
    let m = &south.agent.metrics;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..N {
        let topic = format!("/json/{key}/b{}/attrs", i % DEVICES);
        device.publish(&topic, format!(r#"{{"seq": {i}}}"#).as_bytes()).await;
        // Keep the burst within what Mosquitto queues, whatever the machine's speed: the point is
        // an outage longer than Mosquitto's queue, not a publisher faster than the agent.
        if i >= 200 {
            let want = (i - 200) as u64;
            common::eventually(20, "the agent taking measures while the broker is down", || {
                let ok = count(&m.measures_accepted) >= want;
                async move { ok.then_some(()) }
            })
            .await;
        }
    }
    assert_eq!(count(&m.entities_upserted), 0, "the broker is still down");
    let _dir = start_broker_on(port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    for d in 0..DEVICES {
        let last = N - DEVICES + d;
        loop {
            let e = match south.entity_id(&key, &format!("b{d}")).await {
                Some(id) => common::broker_entity(&url, Some(&service), &id).await,
                None => None,
            };
            let seq = e.as_ref().map(|e| e["seq"]["value"].clone());
            if seq == Some(json!(last)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "b{d}: seq {seq:?}, want {last}; received {}, accepted {}, written {}, retries {}",
                count(&m.messages_received),
                count(&m.measures_accepted),
                count(&m.entities_upserted),
                count(&m.upsert_retries),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let written = count(&m.entities_upserted);
    assert!(written >= N as u64, "written {written}, accepted {}", count(&m.measures_accepted));
}

/// Measures acknowledged into the buffer while the broker is down survive an agent restart: the
/// new agent replays the buffer, with clean MQTT sessions and nothing published again.
#[tokio::test]
async fn buffered_measures_survive_an_agent_restart() {
    let broker = common::spawn_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let down = format!("http://127.0.0.1:{}", free_port());
    let mut settings = common::agent_settings(&down, dir.path());
    settings.mqtt_host = Some("127.0.0.1".into());
    settings.mqtt_connections = 1;
    let (key, service) = (unique("k"), tenant());
    let mut device = Device::connect().await;

    let app = orbis_agent::startup::Application::build(settings.clone()).await.expect("agent builds");
    app.agent.registry.create_groups(vec![group(&key, &service, "/iot/json")]).await.expect("group stored");
    let agent = app.agent.clone();
    let handles = app.handles();
    tokio::spawn(app.run_until_stopped());
    const N: usize = 30;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while agent.metrics.messages_received.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the agent never subscribed");
        device.publish(&format!("/json/{}/probe/attrs", unique("probe")), b"{}").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..N {
        device.publish(&format!("/json/{key}/r{i}/attrs"), format!(r#"{{"seq": {i}}}"#).as_bytes()).await;
    }
    // Every measure is on the agent's disk (accepted) though the broker never saw one.
    common::eventually(20, "the measures accepted into the buffer", || async {
        (agent.metrics.measures_accepted.load(std::sync::atomic::Ordering::Relaxed) >= N as u64).then_some(())
    })
    .await;
    assert_eq!(agent.metrics.entities_upserted.load(std::sync::atomic::Ordering::Relaxed), 0);

    common::stop_and_release(&handles, agent).await;

    // The new agent talks to a live broker and has nothing new to read from Mosquitto.
    settings.cb_url = broker.url.clone();
    settings.mqtt_host = None;
    let app = common::rebuild(&settings).await;
    let agent = app.agent.clone();
    tokio::spawn(app.run_until_stopped());
    for i in 0..N {
        let id = format!("r{i}");
        let entity = common::eventually(20, "a buffered measure", || {
            common::device_entity(&agent, &broker.url, &service, &key, &id)
        })
        .await;
        assert_eq!(entity["seq"]["value"], json!(i));
    }
}
