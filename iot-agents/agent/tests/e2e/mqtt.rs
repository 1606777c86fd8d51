//! The MQTT transport through the machine's Mosquitto (127.0.0.1:1883): simulated devices publish
//! with QoS 1, the agent (its own share-group prefix) writes the entities to a real broker.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::{self, unique};
use crate::http_south::{South, group, spawn_south, tenant};

/// A simulated device: a QoS 1 publisher whose event loop runs in the background. `publish`
/// returns once Mosquitto acknowledged the message.
pub struct Device {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<()>,
    subacks: mpsc::UnboundedReceiver<()>,
    received: mpsc::UnboundedReceiver<rumqttc::Publish>,
}

impl Device {
    pub async fn connect() -> Device {
        let mut options = MqttOptions::new(unique("dev-"), "127.0.0.1", 1883);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, acks) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        let (msg_tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = msg_tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Device { client, acks, subacks, received }
    }

    /// Subscribes (QoS 1) and waits for the subscription to be in place.
    pub async fn subscribe(&mut self, topic: &str) {
        self.client.subscribe(topic, QoS::AtLeastOnce).await.expect("subscribe queued");
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .expect("Mosquitto acknowledged the subscription in time")
            .expect("device event loop running");
    }

    /// The next message the device receives.
    pub async fn next_message(&mut self) -> rumqttc::Publish {
        tokio::time::timeout(Duration::from_secs(10), self.received.recv())
            .await
            .expect("a message in time")
            .expect("device event loop running")
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).await.expect("publish queued");
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("Mosquitto acknowledged in time")
            .expect("device event loop running");
    }
}

/// Publishes probes on a topic nobody is provisioned for until the agent has received one, so
/// that its shared subscriptions are in place before the test's messages are sent.
pub async fn wait_subscribed(south: &South, device: &mut Device) {
    let probe = format!("/json/{}/probe/attrs", unique("probe"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while south.agent.metrics.messages_received.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the agent never subscribed");
        device.publish(&probe, b"{}").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An agent with MQTT on (its own share-group prefix, from `agent_settings`).
pub async fn spawn_mqtt(broker_url: &str, connections: usize) -> South {
    spawn_south(broker_url, |s| {
        s.mqtt_host = Some("127.0.0.1".into());
        s.mqtt_port = 1883;
        s.mqtt_connections = connections;
    })
    .await
}

#[tokio::test]
async fn json_measures_over_mqtt_reach_the_broker_on_every_topic_form() {
    let broker = common::spawn_broker().await;
    let south = spawn_mqtt(&broker.url, 2).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&south, &mut device).await;

    device.publish(&format!("/json/{key}/m1/attrs"), br#"{"temperature": 19.5, "mode": "eco"}"#).await;
    device.publish(&format!("json/{key}/m2/attrs"), br#"{"n": 2}"#).await;
    device.publish(&format!("/{key}/m3/attrs"), br#"{"n": 3}"#).await;
    device.publish(&format!("/json/{key}/m4/attrs/level"), b"7").await;

    let e = south.entity_when(&broker.url, &service, &key, "m1", |e| e.get("temperature").is_some()).await;
    assert_eq!(e["temperature"]["value"], json!(19.5));
    assert_eq!(e["mode"]["value"], json!("eco"));
    let e = south.entity_when(&broker.url, &service, &key, "m2", |e| e.get("n").is_some()).await;
    assert_eq!(e["n"]["value"], json!(2));
    let e = south.entity_when(&broker.url, &service, &key, "m3", |e| e.get("n").is_some()).await;
    assert_eq!(e["n"]["value"], json!(3));
    let e = south.entity_when(&broker.url, &service, &key, "m4", |e| e.get("level").is_some()).await;
    assert_eq!(e["level"]["value"], json!(7));
    let device = south.agent.registry.find_device(Some(&key), "m1").await.expect("registry").expect("device");
    assert_eq!(device.transport.as_deref(), Some("MQTT"));
}

#[tokio::test]
async fn a_malformed_mqtt_message_is_dropped_and_the_next_one_is_written() {
    let broker = common::spawn_broker().await;
    let south = spawn_mqtt(&broker.url, 1).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/json")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&south, &mut device).await;
    let rejected_before = south.agent.metrics.messages_rejected.load(Ordering::Relaxed);

    device.publish(&format!("/json/{key}/bad/attrs"), b"{not json").await;
    device.publish(&format!("/json/{key}/bad/attrs"), b"42").await;
    device.publish(&format!("/json/{key}/good/attrs"), br#"{"ok": true}"#).await;

    let e = south.entity_when(&broker.url, &service, &key, "good", |e| e.get("ok").is_some()).await;
    assert_eq!(e["ok"]["value"], json!(true));
    // One connection handles messages in order: both bad ones were seen before the good one.
    assert!(south.agent.metrics.messages_rejected.load(Ordering::Relaxed) >= rejected_before + 2);
    assert!(south.agent.registry.find_device(Some(&key), "bad").await.expect("registry").is_none());
}

#[tokio::test]
async fn agents_with_different_share_prefixes_each_get_every_message() {
    let broker = common::spawn_broker().await;
    let first = spawn_mqtt(&broker.url, 1).await;
    let other_broker = common::spawn_broker().await;
    let second = spawn_mqtt(&other_broker.url, 1).await;
    let (key, service) = (unique("k"), tenant());
    first.add_group(group(&key, &service, "/iot/json")).await;
    second.add_group(group(&key, &service, "/iot/json")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&first, &mut device).await;
    wait_subscribed(&second, &mut device).await;
    device.publish(&format!("/json/{key}/both/attrs"), br#"{"v": 5}"#).await;
    let e = first.entity_when(&broker.url, &service, &key, "both", |e| e.get("v").is_some()).await;
    assert_eq!(e["v"]["value"], json!(5));
    let e = second.entity_when(&other_broker.url, &service, &key, "both", |e| e.get("v").is_some()).await;
    assert_eq!(e["v"]["value"], json!(5));
}

#[tokio::test]
async fn the_mqtt_downlink_publishes_commands_and_waits_for_the_acknowledgement() {
    let broker = common::spawn_broker().await;
    let south = spawn_mqtt(&broker.url, 2).await;
    let (key, dev) = (unique("k"), "cmd-dev");
    let topic = orbis_agent::south::topic::command_topic(&key, dev);
    let mut device = Device::connect().await;
    device.subscribe(&topic).await;
    wait_subscribed(&south, &mut device).await;
    let downlink = south.agent.mqtt.get().expect("MQTT downlink set").clone();

    downlink.publish(&topic, br#"{"ping": {"data": "22"}}"#.to_vec(), 1, false).await.expect("acknowledged");
    let got = device.next_message().await;
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], br#"{"ping": {"data": "22"}}"#);
    assert_eq!(got.qos, QoS::AtLeastOnce);

    // Several at once, mixed QoS: each caller is answered, and all arrive.
    let sends = (0..5u8).map(|i| {
        let downlink = downlink.clone();
        let topic = topic.clone();
        async move { downlink.publish(&topic, vec![b'0' + i], i % 2, false).await }
    });
    for r in futures_util::future::join_all(sends).await {
        r.expect("published");
    }
    let mut payloads = Vec::new();
    for _ in 0..5 {
        payloads.push(device.next_message().await.payload[0]);
    }
    payloads.sort_unstable();
    assert_eq!(payloads, b"01234".to_vec());
}

#[tokio::test]
async fn ultralight_measures_over_mqtt_reach_the_broker() {
    let broker = common::spawn_broker().await;
    let south = spawn_mqtt(&broker.url, 1).await;
    let (key, service) = (unique("k"), tenant());
    south.add_group(group(&key, &service, "/iot/d")).await;
    let mut device = Device::connect().await;
    wait_subscribed(&south, &mut device).await;
    device.publish(&format!("/ul/{key}/u1/attrs"), b"t|23|s|on").await;
    device.publish(&format!("/{key}/u2/attrs"), b"t|24").await;
    let e = south.entity_when(&broker.url, &service, &key, "u1", |e| e.get("t").is_some()).await;
    assert_eq!(e["t"]["value"], json!(23));
    assert_eq!(e["s"]["value"], json!("on"));
    let e = south.entity_when(&broker.url, &service, &key, "u2", |e| e.get("t").is_some()).await;
    assert_eq!(e["t"]["value"], json!(24));
}
