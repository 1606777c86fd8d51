//! Durability of the embedded store, through the real `orbis` binary: data survives a restart,
//! and every acknowledged write survives `kill -9` in the middle of concurrent writes.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

struct Broker {
    child: Child,
    url: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(dir: &std::path::Path) -> Broker {
    start_with(dir, &[]).await
}

async fn start_with(dir: &std::path::Path, args: &[&str]) -> Broker {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_orbis"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orbis starts");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{url}/version")).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "orbis did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Broker { child, url }
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let b = start(dir.path()).await;
    let r = client
        .post(format!("{}/ngsi-ld/v1/entities", b.url))
        .header("NGSILD-Tenant", "city")
        .json(&json!({"id": "urn:s:1", "type": "T", "a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{}/ngsi-ld/v1/jsonldContexts", b.url))
        .json(&json!({"@context": {"X": "http://x.org/X"}}))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    drop(b);
    let b = start(dir.path()).await;
    let e: Value = client
        .get(format!("{}/ngsi-ld/v1/entities/urn:s:1", b.url))
        .header("NGSILD-Tenant", "city")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["a"]["value"], 1);
    let r = client.get(format!("{}{location}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 200, "hosted contexts persist");
    let t: Value = client.get(format!("{}/ngsi-ld/ex/v1/tenants", b.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(t, json!(["city"]));
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = start(dir.path()).await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (client, url, acked) = (client.clone(), b.url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let id = format!("urn:k:{w}:{i}");
                let r = client
                    .post(format!("{url}/ngsi-ld/v1/entities"))
                    .json(&json!({"id": id, "type": "K", "n": i}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => acked.lock().push(id),
                    _ => return,
                }
            }
        }));
    }
    // Let the writers run, then kill the broker without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.child.kill().expect("SIGKILL");
    b.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() > 50, "the writers got going ({} acknowledged)", acked.len());
    eprintln!("kill -9 after {} acknowledged creates", acked.len());
    drop(b);
    let b = start(dir.path()).await;
    let r = client.get(format!("{}/ngsi-ld/v1/entities?type=K&limit=0&count=true", b.url)).send().await.unwrap();
    let count: usize = r.headers()["ngsild-results-count"].to_str().unwrap().parse().unwrap();
    assert!(count >= acked.len(), "{count} stored < {} acknowledged", acked.len());
    for id in &acked {
        let r = client.get(format!("{}/ngsi-ld/v1/entities/{id}", b.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged entity {id} was lost");
    }
}

/// The same with a log so small that segments rotate and compactions run all the time, under
/// updates (which make records obsolete) as well as creates: `kill -9` may land in the middle of
/// a rotation or a snapshot, and still every acknowledged write is there.
#[tokio::test]
async fn acknowledged_writes_survive_kill_9_during_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = ["--store-segment-max-bytes", "8192", "--store-compact-min-bytes", "16384"];
    let mut b = start_with(dir.path(), &tiny).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    // Per writer: its number, the entities it created, and the last value of its counter entity
    // it saw acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<(usize, Vec<String>, i64)>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, url, acked) = (client.clone(), b.url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let counter = format!("urn:c:{w}");
            let r = client
                .post(format!("{url}/ngsi-ld/v1/entities"))
                .json(&json!({"id": counter, "type": "C", "n": 0}))
                .send()
                .await;
            if !matches!(r, Ok(ref r) if r.status() == 201) {
                return;
            }
            let (mut created, mut last) = (Vec::new(), 0i64);
            for i in 1..100_000i64 {
                let r = if i % 4 == 0 {
                    let id = format!("urn:k:{w}:{i}");
                    let r = client
                        .post(format!("{url}/ngsi-ld/v1/entities"))
                        .json(&json!({"id": id, "type": "K"}))
                        .send()
                        .await;
                    if matches!(r, Ok(ref r) if r.status() == 201) {
                        created.push(id);
                    }
                    r
                } else {
                    let r = client
                        .patch(format!("{url}/ngsi-ld/v1/entities/{counter}/attrs/n"))
                        .json(&json!({"value": i, "pad": {"type": "Property", "value": "x".repeat(200)}}))
                        .send()
                        .await;
                    if matches!(r, Ok(ref r) if r.status() == 204) {
                        last = i;
                    }
                    r
                };
                if !matches!(r, Ok(ref r) if r.status().is_success()) {
                    break;
                }
            }
            acked.lock().push((w, created, last));
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    b.child.kill().expect("SIGKILL");
    b.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    drop(b);
    let snapshots = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".snap"))
        .count();
    assert!(snapshots >= 1, "the log was compacted before the kill");
    let acked = acked.lock().clone();
    let updates: i64 = acked.iter().map(|(_, _, last)| last).sum();
    assert!(updates > 100, "the writers got going ({updates} acknowledged updates)");
    let b = start_with(dir.path(), &tiny).await;
    for (w, created, last) in &acked {
        for id in created {
            let r = client.get(format!("{}/ngsi-ld/v1/entities/{id}", b.url)).send().await.unwrap();
            assert_eq!(r.status(), 200, "acknowledged entity {id} was lost");
        }
        let e: Value =
            client.get(format!("{}/ngsi-ld/v1/entities/urn:c:{w}", b.url)).send().await.unwrap().json().await.unwrap();
        let n = e["n"]["value"].as_i64().unwrap();
        assert!(n >= *last, "writer {w}: value {n} stored, {last} was acknowledged");
    }
}

/// Notifications matched before a crash are delivered after the restart: the outbox entry is
/// logged with the write that caused it, so `kill -9` between the write and the delivery
/// loses nothing.
#[tokio::test]
async fn pending_notifications_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let receiver_port = free_port();
    let b = start(dir.path()).await;
    let sub = json!({"id": "urn:ngsi-ld:Subscription:durable", "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": format!("http://127.0.0.1:{receiver_port}/notify")}, "format": "keyValues"}});
    let r = client.post(format!("{}/ngsi-ld/v1/subscriptions", b.url)).json(&sub).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // The receiver is down: every notification fails and waits for a retry.
    for i in 0..5 {
        let r = client
            .post(format!("{}/ngsi-ld/v1/entities", b.url))
            .json(&json!({"id": format!("urn:ngsi-ld:Vehicle:k{i}"), "type": "Vehicle", "speed": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    drop(b); // SIGKILL
    let rx = crate::helpers::Receiver::start_on(receiver_port).await;
    let b = start(dir.path()).await;
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 5 {
        let n = rx.next(20).await.expect("the pending notifications arrive after the restart");
        assert_eq!(n.body["subscriptionId"], "urn:ngsi-ld:Subscription:durable");
        for d in n.body["data"].as_array().unwrap() {
            got.insert(d["id"].as_str().unwrap().to_owned());
        }
    }
    let want: std::collections::BTreeSet<String> = (0..5).map(|i| format!("urn:ngsi-ld:Vehicle:k{i}")).collect();
    assert_eq!(got, want);
    rx.expect_none(500).await;
    // The subscription itself survived, with its statistics.
    let s: Value = client
        .get(format!("{}/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:durable", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["notification"]["format"], "keyValues");
    assert_eq!(s["notification"]["status"], "ok");
}

/// Context source registrations are durable: a registration acknowledged with 201 is served
/// after `kill -9` and a restart, updates included, deleted ones stay deleted, per tenant.
#[tokio::test]
async fn registrations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let regs = |url: &str| format!("{url}/ngsi-ld/v1/csourceRegistrations");
    let b = start(dir.path()).await;
    for (id, tenant) in
        [("urn:ngsi-ld:ContextSourceRegistration:kept", "iot"), ("urn:ngsi-ld:ContextSourceRegistration:gone", "iot")]
    {
        let body = json!({"id": id, "type": "ContextSourceRegistration", "endpoint": "http://iota:4041",
            "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}],
                             "propertyNames": [if id.ends_with("kept") { "position" } else { "orientation" }]}],
            "mode": "exclusive", "operations": ["updateOps"]});
        let r = client.post(regs(&b.url)).header("NGSILD-Tenant", tenant).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = client
        .patch(format!("{}/urn:ngsi-ld:ContextSourceRegistration:kept", regs(&b.url)))
        .header("NGSILD-Tenant", "iot")
        .json(&json!({"registrationName": "r2d2 commands"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .delete(format!("{}/urn:ngsi-ld:ContextSourceRegistration:gone", regs(&b.url)))
        .header("NGSILD-Tenant", "iot")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    drop(b); // SIGKILL
    let b = start(dir.path()).await;
    let found: Value = client
        .get(format!("{}?type=Robot", regs(&b.url)))
        .header("NGSILD-Tenant", "iot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["id"], "urn:ngsi-ld:ContextSourceRegistration:kept");
    assert_eq!(found[0]["registrationName"], "r2d2 commands");
    assert_eq!(found[0]["mode"], "exclusive");
    // Its conflict rules hold after the restart too.
    let again = json!({"type": "ContextSourceRegistration", "endpoint": "http://other:4041", "mode": "exclusive",
        "information": [{"entities": [{"id": "urn:ngsi-ld:Robot:r2d2", "type": "Robot"}], "propertyNames": ["position"]}]});
    let r = client.post(regs(&b.url)).header("NGSILD-Tenant", "iot").json(&again).send().await.unwrap();
    assert_eq!(r.status(), 409);
}

/// Context source registration subscriptions are durable: one acknowledged with 201 is served
/// after `kill -9` and a restart, in its tenant, updates included, a deleted one stays deleted,
/// and it is notified of registrations made after the restart.
#[tokio::test]
async fn csource_subscriptions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let rx = crate::helpers::Receiver::start().await;
    let csubs = |url: &str| format!("{url}/ngsi-ld/v1/csourceSubscriptions");
    let b = start(dir.path()).await;
    for id in ["urn:ngsi-ld:Subscription:kept", "urn:ngsi-ld:Subscription:gone"] {
        let body = json!({"id": id, "type": "Subscription", "entities": [{"type": "Robot"}],
            "notification": {"endpoint": {"uri": rx.url}}});
        let r = client.post(csubs(&b.url)).header("NGSILD-Tenant", "iot").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let kept = format!("{}/urn:ngsi-ld:Subscription:kept", csubs(&b.url));
    let r = client.patch(&kept).header("NGSILD-Tenant", "iot").json(&json!({"description": "robots"})).send().await;
    assert_eq!(r.unwrap().status(), 204);
    let gone = format!("{}/urn:ngsi-ld:Subscription:gone", csubs(&b.url));
    assert_eq!(client.delete(&gone).header("NGSILD-Tenant", "iot").send().await.unwrap().status(), 204);
    drop(b); // SIGKILL
    let b = start(dir.path()).await;
    let found: Value =
        client.get(csubs(&b.url)).header("NGSILD-Tenant", "iot").send().await.unwrap().json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["id"], "urn:ngsi-ld:Subscription:kept");
    assert_eq!(found[0]["description"], "robots");
    let reg = json!({"id": "urn:ngsi-ld:ContextSourceRegistration:r", "type": "ContextSourceRegistration",
        "endpoint": "http://iota:4041", "information": [{"entities": [{"type": "Robot"}]}]});
    let url = format!("{}/ngsi-ld/v1/csourceRegistrations", b.url);
    assert_eq!(client.post(url).header("NGSILD-Tenant", "iot").json(&reg).send().await.unwrap().status(), 201);
    let n = rx.expect().await;
    assert_eq!(n.body["subscriptionId"], "urn:ngsi-ld:Subscription:kept");
    assert_eq!(n.body["triggerReason"], "newlyMatching");
    rx.expect_none(300).await;
}
