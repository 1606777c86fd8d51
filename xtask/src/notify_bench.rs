//! The notification workload of `cargo xtask bench` ((10) and (11), `--only notify` runs it
//! alone; see BENCHMARKS.md).
//!
//! One fresh broker (pinned to core 0 like the others) holds 100 Vehicles. A notification
//! receiver runs inside this process (plain `std::net`, a thread per connection, HTTP/1.1
//! keep-alive); the whole xtask process is pinned to core 1, where wrk runs too.
//!
//! * (10) wrk PATCHes `speed` of a random one of the 100 Vehicles, with no subscription: the
//!   baseline update rate.
//! * Then 10,000 subscriptions are created: subscription j watches `speed` of Vehicle j % 100,
//!   so each update fires exactly 100 of them (1%). They ask for normalized entities with
//!   sysAttrs and only `speed`, so every notified item carries the broker's write time
//!   (`speed.modifiedAt`) and the receiver computes end-to-end latency = receipt − modifiedAt.
//! * (11) the same wrk load again: the update rate with 10,000 subscriptions. Then the run waits
//!   until every notification has arrived, or 120 s pass with none arriving, or `--notify-wait`
//!   seconds pass: expected items = 100 × updates applied; delivered/s over the whole phase (start
//!   of the warm-up to the last arrival); loss; latency percentiles over every item.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::bench::{Bench, Broker, Opts, Run, cpu, load, met, ms, precheck};
use crate::httpc;

/// Vehicles updated; each update fires SUBS / VEHICLES subscriptions.
const VEHICLES: u64 = 100;
const SUBS: u64 = 10_000;
const FANOUT: u64 = SUBS / VEHICLES;
/// Client threads creating the subscriptions.
const SUB_THREADS: u64 = 8;
/// The wait for the last notifications ends after this long without one arriving.
const STALL: Duration = Duration::from_secs(120);
/// How long the receiver must stay quiet, with every expected notification in, to end the wait.
const QUIET: Duration = Duration::from_secs(3);
/// Latencies are counted per millisecond up to this (longer ones in the last bucket).
const MAX_LATENCY_MS: usize = 600_000;
const SUB_PREFIX: &str = "urn:ngsi-ld:Subscription:nbench-";

/// What the notification workload measured.
#[derive(Default)]
pub(crate) struct Figures {
    /// (10): updates without subscriptions.
    pub(crate) base: Run,
    /// (12): updates with SUBS subscriptions that never match them (the matching cost alone).
    pub(crate) unmatched: Run,
    /// (11): updates with SUBS subscriptions (`total` includes the warm-up).
    pub(crate) loaded: Run,
    pub(crate) ran: bool,
    /// Seconds taken to create the subscriptions.
    pub(crate) sub_setup_s: f64,
    /// Updates answered 2xx during (11), warm-up included.
    pub(crate) acked: u64,
    /// Updates that notified at least once, by the receiver's count (≥ acked when requests
    /// in flight when wrk stopped were applied too).
    pub(crate) applied: u64,
    pub(crate) expected: u64,
    /// Data items (one per update and matching subscription) and HTTP POSTs received.
    pub(crate) items: u64,
    pub(crate) posts: u64,
    /// Items whose entity is not the one the subscription names, or that cannot be read.
    pub(crate) wrong: u64,
    /// From the start of (11) (warm-up included) to the last item.
    pub(crate) span_s: f64,
    /// Whether every expected item arrived before the wait ended.
    pub(crate) complete: bool,
    /// Broker CPU from the start of (11) until every item had arrived, % of one core.
    pub(crate) broker_cpu: Option<f64>,
    pub(crate) broker_cpu_s: Option<f64>,
    pub(crate) p50_ms: u64,
    pub(crate) p99_ms: u64,
    pub(crate) max_ms: u64,
    /// The broker's own counts over all subscriptions: (timesSent, timesFailed).
    pub(crate) broker_counts: Option<(u64, u64)>,
    pub(crate) receiver_pinned: bool,
    pub(crate) problems: Vec<String>,
}

/// The receiver's counts.
struct State {
    posts: u64,
    items: u64,
    /// Items per subscription (index j of `urn:ngsi-ld:Subscription:nbench-j`).
    per_sub: Vec<u64>,
    wrong: u64,
    /// Items per latency in milliseconds.
    latency: Vec<u64>,
    last: Option<Instant>,
    /// The first malformed request, for the report.
    first_error: Option<String>,
}

impl State {
    fn new() -> State {
        State {
            posts: 0,
            items: 0,
            per_sub: vec![0; SUBS as usize],
            wrong: 0,
            latency: vec![0; MAX_LATENCY_MS + 1],
            last: None,
            first_error: None,
        }
    }

    /// Updates seen: per Vehicle, the most items any of its subscriptions received.
    fn applied(&self) -> u64 {
        let mut max = vec![0u64; VEHICLES as usize];
        for (j, n) in self.per_sub.iter().enumerate() {
            let v = j % VEHICLES as usize;
            max[v] = max[v].max(*n);
        }
        max.iter().sum()
    }

    fn percentile(&self, p: f64) -> u64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        MAX_LATENCY_MS as u64
    }

    fn max_latency(&self) -> u64 {
        self.latency.iter().rposition(|n| *n > 0).unwrap_or(0) as u64
    }

    fn error(&mut self, e: String) {
        self.wrong += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    /// Counts one notification body received at `now_ms`.
    fn notification(&mut self, body: &[u8], now_ms: i64) {
        self.posts += 1;
        self.last = Some(Instant::now());
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return self.error(format!("not JSON: {e}")),
        };
        let sub = v["subscriptionId"].as_str().and_then(|s| s.strip_prefix(SUB_PREFIX)).and_then(|j| j.parse().ok());
        let Some(j) = sub.filter(|j: &usize| *j < SUBS as usize) else {
            return self.error(format!("unknown subscriptionId {}", v["subscriptionId"]));
        };
        if v["type"] != "Notification" {
            return self.error(format!("type {} instead of Notification", v["type"]));
        }
        let Some(data) = v["data"].as_array() else { return self.error("no data array".into()) };
        let want = format!("urn:ngsi-ld:Vehicle:{}", j as u64 % VEHICLES);
        for item in data {
            self.items += 1;
            self.per_sub[j] += 1;
            if item["id"].as_str() != Some(want.as_str()) {
                self.error(format!("subscription {j} was told about {} instead of {want}", item["id"]));
                continue;
            }
            match item["speed"]["modifiedAt"].as_str().and_then(parse_millis) {
                Some(t) => self.latency[(now_ms - t).clamp(0, MAX_LATENCY_MS as i64) as usize] += 1,
                None => self.error(format!("no speed.modifiedAt in {item}")),
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (what the broker writes) to milliseconds since the epoch.
fn parse_millis(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms = match frac.len() {
        0 => 0,
        n => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            if n > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<i64>().ok()?
        }
    };
    // Days from 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The notification receiver: answers every request `200 OK` and counts what it gets.
struct Receiver {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("receiver: {e}"))?;
        let port = listener.local_addr().map_err(|e| format!("receiver: {e}"))?.port();
        let state = Arc::new(Mutex::new(State::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Acquire) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Ok(Receiver { port, state, stop })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/notify", self.port)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st)
    }

    fn reset(&self) {
        self.with(|s| *s = State::new());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One keep-alive connection: requests in a loop until the peer closes it.
fn serve(conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else { return };
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        // Request line and headers.
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        let mut first = true;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                if first {
                    continue; // stray CRLF between requests
                }
                break;
            }
            if first {
                first = false;
                close = l.ends_with("HTTP/1.0");
                continue;
            }
            let Some((k, v)) = l.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        body.clear();
        let read =
            if chunked { read_chunked(&mut r, &mut body) } else { read_exact(&mut r, &mut body, length.unwrap_or(0)) };
        if read.is_err() {
            return;
        }
        let now = now_millis();
        state.lock().unwrap_or_else(|p| p.into_inner()).notification(&body, now);
        if out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() || close {
            return;
        }
    }
}

fn read_exact(r: &mut impl Read, body: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    body.resize(n, 0);
    r.read_exact(body)
}

fn read_chunked(r: &mut impl BufRead, body: &mut Vec<u8>) -> std::io::Result<()> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk");
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| bad())?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        line.clear();
        r.read_line(&mut line)?;
    }
}

/// Pins every thread of this process to core 1 (threads started later inherit it).
fn pin_self_to_core1() -> bool {
    let pid = std::process::id().to_string();
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A subscription on a Vehicle the load never updates (phase (12)).
fn idle_sub_body(j: u64, url: &str) -> String {
    format!(
        r#"{{"id":"{SUB_PREFIX}idle-{j}","type":"Subscription","entities":[{{"id":"urn:ngsi-ld:Vehicle:idle-{j}","type":"Vehicle"}}],"watchedAttributes":["speed"],"notification":{{"endpoint":{{"uri":"{url}"}}}}}}"#
    )
}

fn sub_body(j: u64, url: &str) -> String {
    format!(
        r#"{{"id":"{SUB_PREFIX}{j}","type":"Subscription","entities":[{{"id":"urn:ngsi-ld:Vehicle:{}","type":"Vehicle"}}],"watchedAttributes":["speed"],"notification":{{"format":"normalized","sysAttrs":true,"attributes":["speed"],"endpoint":{{"uri":"{url}","accept":"application/json"}}}}}}"#,
        j % VEHICLES
    )
}

/// Creates the SUBS subscriptions from several client threads.
fn create_subscriptions(b: &Broker, url: &str) -> Result<(), String> {
    create_with(b, url, &sub_body)
}

fn create_with(b: &Broker, url: &str, body: &(dyn Fn(u64, &str) -> String + Sync)) -> Result<(), String> {
    let next = AtomicU64::new(0);
    let worker = || -> Result<(), String> {
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            if j >= SUBS {
                return Ok(());
            }
            let r = httpc::request(
                &b.addr,
                "POST",
                "/ngsi-ld/v1/subscriptions",
                Some(&body(j, url)),
                Duration::from_secs(60),
            )?;
            if r.status != 201 {
                let snippet: String = r.body.chars().take(400).collect();
                return Err(format!("creating subscription {j} answered HTTP {}: {snippet}", r.status));
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..SUB_THREADS).map(|_| s.spawn(worker)).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err("subscription thread panicked".into())))
    })
}

/// The broker's own delivery counts, summed over all subscriptions: (timesSent, timesFailed).
fn broker_counts(b: &Broker) -> Option<(u64, u64)> {
    let (mut sent, mut failed, mut seen) = (0, 0, 0);
    let mut offset = 0;
    while offset < 2 * SUBS {
        let path = format!("/ngsi-ld/v1/subscriptions?limit=1000&offset={offset}");
        let r = httpc::request(&b.addr, "GET", &path, None, Duration::from_secs(30)).ok()?;
        let page: Value = serde_json::from_str(&r.body).ok()?;
        let page = page.as_array()?;
        if page.is_empty() {
            break;
        }
        for s in page {
            sent += s["notification"]["timesSent"].as_u64().unwrap_or(0);
            failed += s["notification"]["timesFailed"].as_u64().unwrap_or(0);
        }
        seen += page.len() as u64;
        offset += 1000;
    }
    (seen == 2 * SUBS).then_some((sent, failed))
}

pub(crate) fn measure(bench: &mut Bench, bin: &Path, f: &mut Figures) -> Result<(), String> {
    eprintln!("broker N: notifications (10)-(11)");
    f.ran = true;
    if bench.pin_wrk {
        f.receiver_pinned = pin_self_to_core1();
        if !f.receiver_pinned {
            eprintln!("warning: could not pin the xtask process (notification receiver) to core 1");
        }
    }
    let rx = Receiver::start()?;
    let mut b = Broker::start(bin, "n")?;
    load(&b, 0, VEHICLES, &|i| format!("urn:ngsi-ld:Vehicle:{i}"))?;
    bench.lua_env = vec![("N_VEHICLES", VEHICLES.to_string())];
    let result = phases(bench, &mut b, &rx, f);
    bench.lua_env.clear();
    result
}

fn phases(bench: &mut Bench, b: &mut Broker, rx: &Receiver, f: &mut Figures) -> Result<(), String> {
    let patch0 = "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:0/attrs/speed";
    precheck(b, "PATCH", patch0, Some(r#"{"value":42}"#), &[204])?;
    f.base = bench.workload(b, "(10) update, no subscriptions", "notify_update.lua")?;

    // (12): as many subscriptions that never match: what matching costs the write path.
    eprintln!("  creating {SUBS} subscriptions on other Vehicles");
    create_with(b, &rx.url(), &idle_sub_body)?;
    f.unmatched = bench.workload(b, &format!("(12) update, {SUBS} non-matching subs"), "notify_update.lua")?;
    rx.reset();

    eprintln!("  creating {SUBS} subscriptions ({SUB_THREADS} client threads)");
    let t = Instant::now();
    create_subscriptions(b, &rx.url())?;
    f.sub_setup_s = t.elapsed().as_secs_f64();
    eprintln!("  created in {:.1} s", f.sub_setup_s);
    b.check_alive()?;

    // One update must bring FANOUT notifications about Vehicle 0.
    precheck(b, "PATCH", patch0, Some(r#"{"value":43}"#), &[204])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (items, wrong, err) = rx.with(|s| (s.items, s.wrong, s.first_error.clone()));
        if wrong > 0 {
            return Err(format!("the receiver got a malformed notification: {}", err.unwrap_or_default()));
        }
        if items >= FANOUT {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("one update of Vehicle 0 brought {items} notifications in 30 s, not {FANOUT}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    rx.reset();

    // (11): the same load with the subscriptions, then the wait for every notification.
    let t0 = Instant::now();
    let cpu0 = b.cpu_ticks();
    let r = bench.workload(b, &format!("(11) update, {SUBS} subscriptions"), "notify_update.lua")?;
    f.acked = r.total.saturating_sub(r.non2xx);
    f.loaded = r;
    eprintln!("  waiting for the notifications of {} updates", f.acked);
    let mut last_items = 0;
    let mut last_progress = Instant::now();
    let mut last_print = Instant::now();
    let cap = Instant::now() + Duration::from_secs(bench.opts.notify_wait);
    let cpu1 = loop {
        std::thread::sleep(Duration::from_millis(100));
        b.check_alive()?;
        let (items, applied) = rx.with(|s| (s.items, s.applied()));
        let expected = FANOUT * f.acked.max(applied);
        let now = Instant::now();
        // Done once everything expected arrived and nothing more is coming: notifications of
        // updates still in flight raise `expected` when they arrive.
        if items >= expected && items == last_items && now - last_progress > QUIET {
            f.complete = true;
            break b.cpu_ticks().map(|c| (c, last_progress - t0));
        }
        if items > last_items {
            last_items = items;
            last_progress = now;
        } else if now - last_progress > STALL {
            eprintln!("  no notification for {} s: giving up ({items} of {expected})", STALL.as_secs());
            break b.cpu_ticks().map(|c| (c, last_progress - t0));
        }
        if now > cap {
            eprintln!("  --notify-wait {} s over: giving up ({items} of {expected})", bench.opts.notify_wait);
            break b.cpu_ticks().map(|c| (c, now - t0));
        }
        if now - last_print > Duration::from_secs(5) {
            last_print = now;
            eprintln!("  {items} of {expected} notifications after {:.0} s", t0.elapsed().as_secs_f64());
        }
    };
    // Anything late (duplicates, updates that were in flight when wrk stopped) still counts.
    std::thread::sleep(Duration::from_secs(1));
    b.check_alive()?;
    rx.with(|s| {
        f.items = s.items;
        f.posts = s.posts;
        f.wrong = s.wrong;
        f.applied = s.applied();
        f.span_s = s.last.map(|l| (l - t0).as_secs_f64()).unwrap_or(0.0);
        f.p50_ms = s.percentile(50.0);
        f.p99_ms = s.percentile(99.0);
        f.max_ms = s.max_latency();
        if let Some(e) = &s.first_error {
            f.problems.push(format!("notifications: {} malformed items, the first: {e}", s.wrong));
        }
    });
    f.expected = FANOUT * f.acked.max(f.applied);
    if let (Some(c0), Some((c1, wall))) = (cpu0, cpu1) {
        let secs = (c1 - c0) as f64 / bench.ticks_per_s;
        f.broker_cpu_s = Some(secs);
        f.broker_cpu = Some(secs / wall.as_secs_f64().max(1e-9) * 100.0);
    }
    f.broker_counts = broker_counts(b);
    if f.items < f.expected {
        f.problems.push(format!(
            "notifications: {} of {} did not arrive ({})",
            f.expected - f.items,
            f.expected,
            if f.complete { "lost" } else { "the wait ended first" }
        ));
    }
    for (label, r) in [("(10) update, no subscriptions", &f.base), ("(11) update with subscriptions", &f.loaded)] {
        if r.non2xx + r.sock_errors > 0 {
            f.problems.push(format!("{label}: {} non-2xx responses, {} socket errors", r.non2xx, r.sock_errors));
        }
    }
    b.check_alive()
}

pub(crate) fn report(o: &Opts, f: &Figures, s: &mut String) {
    if !f.ran {
        return;
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "notifications: {SUBS} subscriptions, each update fires {FANOUT} (1%); PATCH speed of one of {VEHICLES} Vehicles, wrk -t{} -c{}",
        o.threads, o.connections
    );
    let _ = writeln!(
        s,
        "receiver: in the xtask process, {} (shares it with wrk)",
        if f.receiver_pinned { "pinned to core 1" } else { "NOT pinned" }
    );
    let base = f.base.rps.max(1e-9);
    let row = |s: &mut String, name: &str, r: &Run, target: &str| {
        let _ = writeln!(
            s,
            "  {:<36} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  brk cpu {:>4}  core0 {:>4}  core1 {:>4}  {target}",
            name,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            cpu(r.broker_cpu),
            cpu(r.core_busy[0]),
            cpu(r.core_busy[1])
        );
    };
    row(s, "(10) update, no subscriptions", &f.base, "");
    let idle = f.unmatched.rps / base;
    row(
        s,
        &format!("(12) update, {SUBS} non-matching subs"),
        &f.unmatched,
        &format!("{idle:.2}x (10): the matching cost alone, target >= 0.80x: {}", met(idle >= 0.8)),
    );
    let ratio = f.loaded.rps / base;
    row(
        s,
        &format!("(11) update, {SUBS} subscriptions"),
        &f.loaded,
        &format!("{ratio:.2}x (10), target >= 0.80x: {}", met(ratio >= 0.8)),
    );
    let _ = writeln!(
        s,
        "  subscriptions created in {:.1} s ({SUB_THREADS} client threads, one connection per request)",
        f.sub_setup_s
    );
    let _ = writeln!(
        s,
        "  updates in (11), warm-up included: {} answered 2xx, {} notified (seen by the receiver); expected {} x {} = {} notifications",
        f.acked,
        f.applied,
        f.acked.max(f.applied),
        FANOUT,
        f.expected
    );
    let rate = f.items as f64 / f.span_s.max(1e-9);
    let _ = writeln!(
        s,
        "  delivered {} notifications (data items) in {} HTTP POSTs, {:.1} s from the start of (11) to the last one{}",
        f.items,
        f.posts,
        f.span_s,
        if f.complete { "" } else { " (INCOMPLETE: the wait ended before all arrived)" }
    );
    let per_core = f.broker_cpu_s.map(|c| f.items as f64 / c.max(1e-9));
    let _ = writeln!(
        s,
        "  delivered/s {:>10.0} notifications/s; broker cpu {} over that time = {} per broker-CPU-second  target >= 5000 per broker core: {}",
        rate,
        cpu(f.broker_cpu),
        per_core.map(|p| format!("{p:.0}")).unwrap_or_else(|| "?".into()),
        met(per_core.is_some_and(|p| p >= 5000.0))
    );
    let _ = writeln!(
        s,
        "  end-to-end latency (receipt - speed.modifiedAt, 1 ms resolution): p50 {} ms  p99 {} ms  max {} ms",
        f.p50_ms, f.p99_ms, f.max_ms
    );
    let lost = f.expected.saturating_sub(f.items);
    let _ = writeln!(
        s,
        "  loss {lost}{} (+ {} malformed or about the wrong entity)  target 0: {}",
        if f.complete { "" } else { " (not arrived when the wait ended)" },
        f.wrong,
        met(lost == 0 && f.wrong == 0 && f.complete)
    );
    match f.broker_counts {
        Some((sent, failed)) => {
            let _ = writeln!(
                s,
                "  the broker's count (subscription status, incl. 100 from the pre-check): timesSent {sent}, timesFailed {failed}"
            );
        }
        None => {
            let _ = writeln!(s, "  the broker's count: could not be read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_timestamps() {
        assert_eq!(parse_millis("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_millis("2026-01-15T10:00:00.123Z"), Some(1_768_471_200_123));
        assert_eq!(parse_millis("2000-02-29T23:59:59Z"), Some(951_868_799_000));
        assert_eq!(parse_millis("2026-01-15T10:00:00.1Z"), Some(1_768_471_200_100));
        assert_eq!(parse_millis("2026-01-15 10:00:00Z"), None);
    }

    #[test]
    fn counts_items_and_latency() {
        let mut st = State::new();
        let body = format!(
            r#"{{"id":"urn:ngsi-ld:Notification:x","type":"Notification","subscriptionId":"{SUB_PREFIX}101","notifiedAt":"2026-01-15T10:00:00.010Z","data":[{{"id":"urn:ngsi-ld:Vehicle:1","type":"Vehicle","speed":{{"type":"Property","value":3,"modifiedAt":"2026-01-15T10:00:00.000Z"}}}},{{"id":"urn:ngsi-ld:Vehicle:1","type":"Vehicle","speed":{{"type":"Property","value":4,"modifiedAt":"2026-01-15T10:00:00.004Z"}}}}]}}"#
        );
        st.notification(body.as_bytes(), 1_768_471_200_012);
        assert_eq!((st.posts, st.items, st.wrong, st.applied()), (1, 2, 0, 2));
        assert_eq!((st.percentile(50.0), st.max_latency()), (8, 12));
        st.notification(b"nope", 0);
        assert_eq!(st.wrong, 1);
    }

    #[test]
    fn reports() {
        let o = crate::bench::parse_opts(&[]).unwrap();
        let f = Figures {
            ran: true,
            acked: 10,
            applied: 12,
            expected: 1200,
            items: 1200,
            complete: true,
            ..Default::default()
        };
        let mut s = String::new();
        report(&o, &f, &mut s);
        assert!(s.contains("core0") && s.contains("loss 0 ") && s.contains("target 0: met"), "{s}");
    }
}
