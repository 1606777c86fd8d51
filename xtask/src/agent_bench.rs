//! The IoT agent workload of `cargo xtask bench` ((14), `--only agent`): MQTT JSON measures per
//! second from publish to entity updated in the broker, with QoS 1 and zero loss.
//!
//! A fresh broker (pinned to core 0 like the others) and a fresh `orbis-agent` (not pinned) run
//! against the machine's Mosquitto. One config group maps `t` and `s` of 1,000 autoprovisioned
//! devices. Publisher threads in this process send QoS 1 measures at a fixed total rate
//! (`--agent-rate`, 22,000/s: above the issue's target of 20,000, so the figure is the
//! agent's rate and not the publishers' pacing) for `--duration` seconds: measure i goes to
//! device i % 1,000 with `s` = its sequence number on that device. Then the run waits until
//! the agent reports every measure written (its `/metrics`), and reads every entity back: each
//! device must show its last sequence number. A probe device gets one measure every 10 ms during
//! the run and a poller reads it back from the broker: the time from publish to the new value
//! being readable gives the p50/p99 latency under load.
//!
//! The rate is fixed rather than "as fast as possible" because Mosquitto keeps at most
//! `max_queued_messages` (1,000 by default) QoS 1 messages per subscriber beyond its in-flight
//! window and drops the rest: a publisher faster than the agent would measure Mosquitto's
//! drops, not the agent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::bench::{Broker, Opts, cpu};
use crate::httpc;

/// Devices the measures are spread over.
const DEVICES: u64 = 1000;
/// Publisher threads (one MQTT connection each).
const PUBLISHERS: u64 = 4;
const APIKEY: &str = "benchkey";
const PROBE: &str = "probe";

/// The figures of (14).
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) ran: bool,
    pub(crate) rate_target: u64,
    /// Measures published (each acknowledged by Mosquitto) during the measured run.
    pub(crate) published: u64,
    pub(crate) publish_s: f64,
    /// From the first publish to the last measure written by the agent.
    pub(crate) span_s: f64,
    /// Measures the agent wrote during the run (its counter, warm-up and probes excluded).
    pub(crate) written: u64,
    /// Devices whose entity does not show its last sequence number.
    pub(crate) stale: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) probes: usize,
    pub(crate) agent_cpu: Option<f64>,
    pub(crate) broker_cpu: Option<f64>,
    pub(crate) agent_rss_mib: Option<f64>,
    /// The agent's counters at the end: messages received and refused (all phases).
    pub(crate) received: u64,
    pub(crate) rejected: u64,
    /// Upserts the agent retried (the broker unreachable, 5xx or 429).
    pub(crate) retries: u64,
}

/// A running `orbis-agent`, killed when dropped.
struct Agent {
    child: Child,
    pid: u32,
    north: String,
    dir: PathBuf,
}

impl Agent {
    fn start(bin: &Path, broker: &str) -> Result<Agent, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir = std::env::temp_dir().join(format!("orbis-bench-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("agent.log")).map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        eprintln!("+ {} (north port {port}, broker {broker})", bin.display());
        let child = Command::new(bin)
            .env("IOTA_NORTH_PORT", port.to_string())
            .env("IOTA_HTTP_PORT", "off")
            .env("IOTA_CB_URL", format!("http://{broker}"))
            .env("IOTA_MQTT_HOST", "127.0.0.1")
            .env("IOTA_MQTT_PORT", "1883")
            .env("ORBIS_AGENT_MQTT_SHARE_PREFIX", format!("bench{}-", std::process::id()))
            .env("ORBIS_AGENT_DATA_DIR", dir.join("data"))
            .env("IOTA_LOG_LEVEL", "WARNING")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start the agent: {e}"))?;
        let pid = child.id();
        let mut a = Agent { child, pid, north: format!("127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = a.child.try_wait() {
                let log = std::fs::read_to_string(a.dir.join("agent.log")).unwrap_or_default();
                return Err(format!("the agent died: {status}\n{log}"));
            }
            if let Ok(r) = httpc::request(&a.north, "GET", "/iot/about", None, Duration::from_secs(2))
                && r.status == 200
            {
                return Ok(a);
            }
            if Instant::now() > deadline {
                return Err("the agent does not answer GET /iot/about after 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter from the agent's `/metrics` (the sum over its label sets).
    fn counter(&self, name: &str) -> Result<u64, String> {
        let accept = [("Accept", "text/plain")];
        let r = httpc::request_with(&self.north, "GET", "/metrics", None, &accept, Duration::from_secs(5))?;
        if r.status != 200 {
            return Err(format!("GET /metrics answered HTTP {}", r.status));
        }
        Ok(r.body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn rss_mib(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kb: f64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The counter of entities the agent's upserts wrote.
const WRITTEN: &str = "iota_entities_upserted_total";

/// A QoS 1 publisher whose acknowledgements are counted.
struct Publisher {
    client: Client,
    acked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn connect(name: &str) -> Publisher {
        let mut o = MqttOptions::new(format!("{name}-{}", std::process::id()), "127.0.0.1", 1883);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(200);
        let (client, mut connection) = Client::new(o, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let a = acked.clone();
        let thread = std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("  publisher {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
        Publisher { client, acked, thread: Some(thread) }
    }

    fn publish(&self, device: &str, payload: String) -> Result<(), String> {
        self.client
            .publish(format!("/json/{APIKEY}/{device}/attrs"), QoS::AtLeastOnce, false, payload)
            .map_err(|e| format!("publish: {e}"))
    }

    /// Waits until `n` publishes were acknowledged, then disconnects.
    fn finish(mut self, n: u64, wait: Duration) -> u64 {
        let deadline = Instant::now() + wait;
        while self.acked.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acked.load(Ordering::Relaxed)
    }
}

fn provision(agent: &Agent) -> Result<(), String> {
    let body = format!(
        r#"{{"groups":[{{"apikey":"{APIKEY}","resource":"/iot/json","entity_type":"BenchSensor","timestamp":true,"transport":"MQTT","attributes":[{{"object_id":"t","name":"temperature","type":"Number"}},{{"object_id":"s","name":"seq","type":"Integer"}}]}}]}}"#
    );
    let headers = [("fiware-service", "bench"), ("fiware-servicepath", "/")];
    let r = httpc::request_with(&agent.north, "POST", "/iot/groups", Some(&body), &headers, Duration::from_secs(10))?;
    if r.status != 201 {
        return Err(format!("provisioning the group answered HTTP {}: {}", r.status, r.body));
    }
    Ok(())
}

/// Waits until the agent's written counter reaches `n`, or `stall` passes without progress.
fn wait_written(agent: &Agent, n: u64, stall: Duration) -> Result<(u64, Instant), String> {
    let mut last = (agent.counter(WRITTEN)?, Instant::now());
    loop {
        let now = agent.counter(WRITTEN)?;
        if now >= n {
            return Ok((now, Instant::now()));
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > stall {
            return Ok((now, last.1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads every bench entity back: how many devices do not show `expected(device)`.
fn stale_devices(broker: &str, expected: &dyn Fn(u64) -> Option<u64>) -> Result<u64, String> {
    let mut seen = std::collections::HashMap::new();
    let mut offset = 0;
    loop {
        let path =
            format!("/ngsi-ld/v1/entities?type=BenchSensor&options=keyValues&attrs=seq&limit=1000&offset={offset}");
        let r =
            httpc::request_with(broker, "GET", &path, None, &[("NGSILD-Tenant", "bench")], Duration::from_secs(30))?;
        if r.status != 200 {
            return Err(format!("reading the entities back answered HTTP {}: {}", r.status, r.body));
        }
        let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| format!("entities: {e}"))?;
        let items = v.as_array().cloned().unwrap_or_default();
        for e in &items {
            if let (Some(id), Some(seq)) = (e["id"].as_str(), e["seq"].as_u64()) {
                seen.insert(id.to_owned(), seq);
            }
        }
        if items.len() < 1000 {
            break;
        }
        offset += 1000;
    }
    Ok((0..DEVICES)
        .filter(|d| {
            let Some(want) = expected(*d) else { return false };
            seen.get(&format!("urn:ngsi-ld:BenchSensor:dev{d}")) != Some(&want)
        })
        .count() as u64)
}

/// Publishes a probe measure every 10 ms and reads it back from the broker until seen; returns
/// the latencies in milliseconds and how many probe measures were published.
fn probe(broker: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<f64>, u64)> {
    std::thread::spawn(move || {
        let p = Publisher::connect("orbis-bench-probe");
        let mut lat = Vec::new();
        let mut k = 0u64;
        let path = format!("/ngsi-ld/v1/entities/urn:ngsi-ld:BenchSensor:{PROBE}?options=keyValues&attrs=seq");
        let tenant = [("NGSILD-Tenant", "bench")];
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            if p.publish(PROBE, format!(r#"{{"t":1,"s":{}}}"#, k + 1)).is_err() {
                break;
            }
            k += 1;
            loop {
                let r = httpc::request_with(&broker, "GET", &path, None, &tenant, Duration::from_secs(5));
                let seen = r.ok().and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok());
                if seen.and_then(|v| v["seq"].as_u64()) == Some(k) {
                    lat.push(sent.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if sent.elapsed() > Duration::from_secs(30) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let acked = p.finish(k, Duration::from_secs(10));
        (lat, acked)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn measure(o: &Opts, broker_bin: &Path, agent_bin: &Path, f: &mut Figures) -> Result<(), String> {
    eprintln!("broker G + orbis-agent: MQTT JSON measures through the agent (14)");
    f.ran = true;
    f.rate_target = o.agent_rate;
    let mut broker = Broker::start(broker_bin, "g")?;
    let agent = Agent::start(agent_bin, &broker.addr)?;
    provision(&agent)?;

    // Warm-up: one measure per device autoprovisions the devices and creates their entities.
    let warm = Publisher::connect("orbis-bench-warm");
    for d in 0..DEVICES {
        warm.publish(&format!("dev{d}"), r#"{"t":0,"s":0}"#.into())?;
    }
    warm.finish(DEVICES, Duration::from_secs(30));
    let (w, _) = wait_written(&agent, DEVICES, Duration::from_secs(30))?;
    if w < DEVICES {
        return Err(format!("warm-up: the agent wrote {w} of {DEVICES} measures"));
    }

    let n = o.agent_rate * o.duration;
    let per = n / PUBLISHERS;
    let n = per * PUBLISHERS;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(broker.addr.clone(), stop.clone());
    let a0 = agent.cpu_ticks();
    let b0 = broker.cpu_ticks();
    let start = Instant::now();
    let threads: Vec<_> = (0..PUBLISHERS)
        .map(|t| {
            let rate = o.agent_rate as f64 / PUBLISHERS as f64;
            std::thread::spawn(move || -> Result<u64, String> {
                let p = Publisher::connect(&format!("orbis-bench-pub{t}"));
                let t0 = Instant::now();
                for j in 0..per {
                    let i = j * PUBLISHERS + t;
                    let due = t0 + Duration::from_secs_f64(j as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (d, seq) = (i % DEVICES, i / DEVICES + 1);
                    p.publish(&format!("dev{d}"), format!(r#"{{"t":{}.5,"s":{seq}}}"#, seq % 40))?;
                }
                Ok(p.finish(per, Duration::from_secs(120)))
            })
        })
        .collect();
    let mut published = 0;
    for t in threads {
        published += t.join().map_err(|_| "a publisher thread panicked".to_string())??;
    }
    f.publish_s = start.elapsed().as_secs_f64();
    f.published = published;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, probes) = prober.join().map_err(|_| "the probe thread panicked".to_string())?;
    let (written, done) = wait_written(&agent, DEVICES + n + probes, Duration::from_secs(60))?;
    let ticks = 100.0;
    let span = done.duration_since(start).as_secs_f64().max(1e-9);
    f.agent_cpu = agent.cpu_ticks().zip(a0).map(|(z, a)| (z - a) as f64 / ticks / span * 100.0);
    f.broker_cpu = broker.cpu_ticks().zip(b0).map(|(z, a)| (z - a) as f64 / ticks / span * 100.0);
    f.agent_rss_mib = agent.rss_mib();
    f.span_s = span;
    f.written = written.saturating_sub(DEVICES + probes);
    f.received = agent.counter("iota_messages_received_total")?.saturating_sub(DEVICES + probes);
    f.rejected = agent.counter("iota_messages_rejected_total")?;
    f.retries = agent.counter("iota_upsert_retries_total")?;
    lat.sort_by(f64::total_cmp);
    f.p50_ms = percentile(&lat, 0.5);
    f.p99_ms = percentile(&lat, 0.99);
    f.probes = lat.len();
    // The last sequence number published to device d is the number of measures it got.
    let last = |d: u64| -> Option<u64> { Some(n / DEVICES + u64::from(d < n % DEVICES)) };
    f.stale = stale_devices(&broker.addr, &last)?;
    broker.check_alive()?;
    Ok(())
}

pub(crate) fn report(f: &Figures, s: &mut String) {
    if !f.ran {
        return;
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "IoT agent: MQTT JSON (QoS 1) → orbis-agent → broker G (core 0), {DEVICES} devices, publishers in this process"
    );
    let rate = f.written as f64 / f.span_s.max(1e-9);
    let loss = f.published.saturating_sub(f.written);
    let _ = writeln!(
        s,
        "  (14) target {} measures/s: published {} in {:.1} s, written {} in {:.1} s = {:.0} measures/s, loss {}, stale devices {}",
        f.rate_target, f.published, f.publish_s, f.written, f.span_s, rate, loss, f.stale
    );
    let _ = writeln!(
        s,
        "       the agent received {} of the run's messages (the rest were dropped before it), refused {}, retried {} upserts",
        f.received, f.rejected, f.retries
    );
    let _ = writeln!(
        s,
        "       publish → readable in the broker (probe, {} samples): p50 {:.1} ms, p99 {:.1} ms; agent cpu {}, broker cpu {}, agent RSS {:.1} MiB",
        f.probes,
        f.p50_ms,
        f.p99_ms,
        cpu(f.agent_cpu),
        cpu(f.broker_cpu),
        f.agent_rss_mib.unwrap_or(0.0)
    );
    let met = rate >= 20_000.0 && loss == 0 && f.stale == 0;
    let _ = writeln!(s, "       ≥ 20,000 measures/s with zero loss: {}", if met { "met" } else { "not met" });
}
