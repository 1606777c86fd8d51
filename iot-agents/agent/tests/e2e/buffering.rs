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
    // The agent holds them (unacknowledged) and keeps retrying the unreachable broker.
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
