//! The AMQP transport through the machine's RabbitMQ (127.0.0.1:5672, guest/guest): simulated
//! devices publish to `amq.topic` with the FIWARE routing keys; the agent consumes its own
//! (unique, deleted afterwards) queue and writes the entities to a real broker.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::json;

use crate::common::{self, unique};
use crate::http_south::{South, group, spawn_south, tenant};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A device side: a channel in confirm mode, and the test queue declared and bound up front so
/// nothing published before the agent is consuming is lost.
struct Rabbit {
    channel: Channel,
    queue: String,
    _connection: Connection,
}

impl Rabbit {
    async fn connect(queue: &str) -> Rabbit {
        let connection = Connection::connect(URL, ConnectionProperties::default()).await.expect("RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), FieldTable::default())
            .await
            .expect("queue");
        for key in orbis_agent::south::topic::AMQP_BINDINGS {
            channel
                .queue_bind(
                    queue.into(),
                    "amq.topic".into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
        }
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        Rabbit { channel, queue: queue.to_owned(), _connection: connection }
    }

    async fn publish(&self, key: &str, payload: &[u8]) {
        self.channel
            .basic_publish(
                "amq.topic".into(),
                key.into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }

    /// A device's own queue (exclusive, deleted with the connection) bound to its command key.
    async fn device_queue(&self, routing: &str) -> String {
        let queue = unique("device-");
        self.channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("device queue");
        self.channel
            .queue_bind(
                queue.as_str().into(),
                "amq.topic".into(),
                routing.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        queue
    }

    /// Deletes the test's queue, so it does not keep collecting every test's messages.
    async fn delete_queue(&self) {
        let _ = self.channel.queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
}

async fn spawn_amqp(broker_url: &str, queue: &str) -> South {
    let queue = queue.to_owned();
    spawn_south(broker_url, move |s| {
        s.amqp_url = Some(URL.into());
        s.amqp_queue = queue;
    })
    .await
}

#[tokio::test]
async fn json_measures_over_amqp_reach_the_broker_and_malformed_ones_are_dropped() {
    let broker = common::spawn_broker().await;
    let queue = unique("iotaqueue-");
    let rabbit = Rabbit::connect(&queue).await;
    let (key, service) = (unique("k"), tenant());
    // Published before the agent starts: the durable queue keeps them.
    rabbit.publish(&format!(".{key}.bad.attrs"), b"{oops").await;
    rabbit.publish(&format!(".{key}.a1.attrs"), br#"{"temperature": 18, "door": "open"}"#).await;

    let south = spawn_amqp(&broker.url, &queue).await;
    south.add_group(group(&key, &service, "/iot/json")).await;
    rabbit.publish(&format!(".{key}.a2.attrs.level"), b"3").await;

    // The first two may have been consumed before the group existed (refused as unknown), so
    // a1 is published again once it does.
    rabbit.publish(&format!(".{key}.a1.attrs"), br#"{"temperature": 18, "door": "open"}"#).await;
    let e = south.entity_when(&broker.url, &service, &key, "a1", |e| e.get("temperature").is_some()).await;
    assert_eq!(e["temperature"]["value"], json!(18));
    assert_eq!(e["door"]["value"], json!("open"));
    let e = south.entity_when(&broker.url, &service, &key, "a2", |e| e.get("level").is_some()).await;
    assert_eq!(e["level"]["value"], json!(3));
    rabbit.publish(&format!(".{key}.bad.attrs"), b"{oops").await;
    rabbit.publish(&format!(".{key}.a3.attrs"), br#"{"n": 1}"#).await;
    let e = south.entity_when(&broker.url, &service, &key, "a3", |e| e.get("n").is_some()).await;
    assert_eq!(e["n"]["value"], json!(1));
    assert!(south.agent.registry.find_device(Some(&key), "bad").await.expect("registry").is_none());

    // Every message was settled: nothing is left in the queue.
    let left = common::eventually(10, "an empty queue", || async {
        let q = rabbit
            .channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .ok()?;
        (q.message_count() == 0).then_some(0)
    })
    .await;
    assert_eq!(left, 0);
    rabbit.delete_queue().await;
}

#[tokio::test]
async fn commands_go_down_through_the_amqp_downlink() {
    let broker = common::spawn_broker().await;
    let queue = unique("iotaqueue-");
    let rabbit = Rabbit::connect(&queue).await;
    let south = spawn_amqp(&broker.url, &queue).await;
    // A device queue bound to its command key.
    let (key, dev) = (unique("k"), "cmddev");
    let routing = orbis_agent::south::topic::command_routing_key(&key, dev);
    let device_queue = rabbit.device_queue(&routing).await;
    // The downlink is there once the agent is connected.
    let downlink = common::eventually(20, "the AMQP downlink", || async { south.agent.amqp.get().cloned() }).await;
    downlink.publish(&routing, br#"{"ping": {}}"#.to_vec(), 1, false).await.expect("confirmed");
    let got = common::eventually(10, "the command at the device", || async {
        rabbit
            .channel
            .basic_get(device_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(got.delivery.data, br#"{"ping": {}}"#.to_vec());
    assert_eq!(got.delivery.routing_key.as_str(), format!(".{key}.{dev}.cmd"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    rabbit.delete_queue().await;
}

/// End to end over AMQP: a device provisioned through the agent's API (which registers the agent
/// for its command on the broker) reports over RabbitMQ, a client updates the command attribute on
/// the broker, the device gets the command on its routing key and answers on `cmdexe`, and the
/// broker shows the result.
#[tokio::test]
async fn an_amqp_device_provisioned_through_the_api_gets_its_command_and_answers() {
    let broker = common::spawn_broker().await;
    let queue = unique("iotaqueue-");
    let rabbit = Rabbit::connect(&queue).await;
    let south = spawn_amqp(&broker.url, &queue).await;
    let (key, service, dev) = (unique("k"), tenant(), unique("lamp"));
    let routing = orbis_agent::south::topic::command_routing_key(&key, &dev);
    let device_queue = rabbit.device_queue(&routing).await;

    let provision = json!({"devices": [{"device_id": dev, "apikey": key, "entity_type": "Lamp",
        "transport": "AMQP", "timestamp": false, "commands": [{"name": "switch", "type": "command"}]}]});
    let r = south
        .test
        .client
        .post(format!("{}/iot/devices", south.test.north))
        .header("fiware-service", &service)
        .header("fiware-servicepath", "/")
        .json(&provision)
        .send()
        .await
        .expect("provision");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    common::eventually(20, "the AMQP downlink", || async { south.agent.amqp.get().cloned() }).await;

    // The first measure creates the entity.
    rabbit.publish(&format!(".{key}.{dev}.attrs"), br#"{"on": false}"#).await;
    let entity = format!("urn:ngsi-ld:Lamp:{dev}");
    common::eventually(20, "the lamp entity", || common::broker_entity(&broker.url, Some(&service), &entity)).await;

    let r = reqwest::Client::new()
        .patch(format!("{}/ngsi-ld/v1/entities/{entity}/attrs/switch", broker.url))
        .header("NGSILD-Tenant", &service)
        .json(&json!({"type": "Property", "value": "on"}))
        .send()
        .await
        .expect("PATCH command");
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let got = common::eventually(10, "the command at the device", || async {
        rabbit
            .channel
            .basic_get(device_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&got.delivery.data).expect("JSON"), json!({"switch": "on"}));

    rabbit.publish(&format!(".{key}.{dev}.cmdexe"), br#"{"switch": "switched"}"#).await;
    let e = common::eventually(20, "the command result", || async {
        let e = common::broker_entity(&broker.url, Some(&service), &entity).await?;
        (e["switch_status"]["value"] == "OK").then_some(e)
    })
    .await;
    assert_eq!(e["switch_info"]["value"], "switched");
    assert_eq!(e["on"]["value"], false);
    rabbit.delete_queue().await;
}
