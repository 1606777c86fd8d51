//! `cargo xtask bench`: builds the broker in release, runs it pinned to core 0 on a fresh data
//! directory and measures it with `wrk` pinned to core 1. See BENCHMARKS.md for what each
//! workload does. Performance is measured here, never in timed tests.
//!
//! Two broker processes are used, each on its own fresh data directory:
//! * broker A: idle RSS, then the HTTP ceiling (`GET /version`), retrieve, update, batch upsert
//!   and — last, because it grows the store — create on an (almost) empty store;
//! * broker B: loads `--mem-entities` (100,000) five-attribute entities in batches of 1,000
//!   from this process, RSS, create throughput at that size; then, with `--grow-to`, loads more
//!   and measures create again (create flatness as the store grows);
//! * broker N: the notification workload ((10) and (11), `crate::notify_bench`).
//!
//! * broker G and an `orbis-agent`: MQTT measures through the IoT agent (`crate::agent_bench`).
//!
//! `--only core` runs brokers A and B, `--only notify` broker N, `--only agent` broker G.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::httpc;

const USAGE: &str = "usage: cargo xtask bench [options]
  --duration SECS      measured seconds per workload             (10)
  --warmup SECS        warm-up seconds before each workload       (2)
  --threads N          wrk threads                                (1)
  --connections N      wrk connections                            (32)
  --mem-entities N     entities loaded for the RSS figure         (100000)
  --grow-to N          also measure create after loading N        (= --mem-entities)
                       entities, e.g. --grow-to 1000000
  --only WHAT          all | core | notify | fanout | agent       (all)
                       core: workloads (0)-(9), RSS, create flatness;
                       notify: the notification workload (10)-(11)
  --notify-wait SECS   longest wait for the notifications after (11)  (300)
  --agent-rate N       MQTT measures/s published in (14)          (22000)
  --no-build           use the existing target/release/orbis and orbis-agent
Requires wrk (apt-get install -y wrk) and taskset (util-linux).";

/// Pre-created entities read and updated by the retrieve and update workloads.
const N_SMALL: u64 = 1000;
/// Pre-created entities rewritten by the batch upsert workload.
const UPSERT_POOL: u64 = 2000;
/// Entities per batch upsert request.
const UPSERT_BATCH: u64 = 20;
/// Entities per request when loading.
const LOAD_CHUNK: u64 = 1000;
const MIB: f64 = 1024.0 * 1024.0;

/// Which part of the benchmark runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Only {
    All,
    Core,
    Notify,
    Fanout,
    Agent,
}

pub(crate) struct Opts {
    pub(crate) duration: u64,
    pub(crate) warmup: u64,
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    mem_entities: u64,
    grow_to: u64,
    build: bool,
    pub(crate) only: Only,
    pub(crate) notify_wait: u64,
    pub(crate) agent_rate: u64,
}

pub(crate) fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        duration: 10,
        warmup: 2,
        threads: 1,
        connections: 32,
        mem_entities: 100_000,
        grow_to: 0,
        build: true,
        only: Only::All,
        notify_wait: 300,
        agent_rate: 22_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        if flag == "--no-build" {
            o.build = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        if flag == "--only" {
            o.only = match value.as_str() {
                "all" => Only::All,
                "core" => Only::Core,
                "notify" => Only::Notify,
                "fanout" => Only::Fanout,
                "agent" => Only::Agent,
                _ => return Err(format!("--only: all, core, notify, fanout or agent, not {value:?}\n{USAGE}")),
            };
            continue;
        }
        let n: u64 = value.replace('_', "").parse().map_err(|_| format!("{flag}: not a number: {value:?}\n{USAGE}"))?;
        let small = || u32::try_from(n).map_err(|_| format!("{flag}: too large"));
        match flag {
            "--duration" => o.duration = n.max(1),
            "--warmup" => o.warmup = n,
            "--threads" => o.threads = small()?.max(1),
            "--connections" => o.connections = small()?.max(1),
            "--mem-entities" => o.mem_entities = n.max(LOAD_CHUNK),
            "--grow-to" => o.grow_to = n,
            "--notify-wait" => o.notify_wait = n,
            "--agent-rate" => o.agent_rate = n.max(1),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if o.connections < o.threads {
        return Err("--connections must be at least --threads".into());
    }
    o.grow_to = o.grow_to.max(o.mem_entities);
    Ok(o)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn lua_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

fn tool_exists(cmd: &str, arg: &str) -> bool {
    match Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::NotFound,
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A running broker, killed (and its data directory removed) when dropped — also on errors.
pub(crate) struct Broker {
    child: Child,
    pid: u32,
    pub(crate) addr: String,
    dir: PathBuf,
}

impl Broker {
    pub(crate) fn start(bin: &Path, name: &str) -> Result<Broker, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("orbis-bench-{name}-{}-{stamp}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("orbis.log")).map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let port_s = port.to_string();
        let data_s = data.to_string_lossy().into_owned();
        let args = ["-c", "0", &bin.to_string_lossy(), "--port", &port_s, "--host", "127.0.0.1"];
        let args2 = ["--data-dir", &data_s, "--log-level", "warn"];
        eprintln!("+ taskset {} {}", args.join(" "), args2.join(" "));
        let child = Command::new("taskset")
            .args(args)
            .args(args2)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start the broker: {e}"))?;
        let pid = child.id();
        let mut b = Broker { child, pid, addr: format!("127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            b.check_alive()?;
            if let Ok(r) = httpc::request(&b.addr, "GET", "/version", None, Duration::from_secs(2))
                && r.status == 200
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("broker not answering GET /version on {} after 60 s", b.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(b)
    }

    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(self.dir.join("orbis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "the broker (pid {}) died: {status}\n--- broker log (tail) ---\n{}",
                    self.pid,
                    tail.join("\n")
                ))
            }
            Err(e) => Err(format!("cannot check the broker: {e}")),
        }
    }

    /// VmRSS in bytes.
    fn rss(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    }

    /// Total size of the files in the data directory, in bytes.
    fn disk(&self) -> Option<f64> {
        let rd = std::fs::read_dir(self.dir.join("data")).ok()?;
        Some(rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len() as f64).sum())
    }

    /// utime + stime in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One deterministic five-attribute Vehicle (~540 bytes), the shape the Lua workloads send too.
fn entity(id: &str, i: u64) -> String {
    const BRANDS: [&str; 8] =
        ["Mercedes-Benz", "Volkswagen", "Renault", "Toyota", "Peugeot", "Seat", "Ford", "Hyundai"];
    let frac = |salt: u64| {
        let mut x = i.wrapping_mul(6364136223846793005).wrapping_add(salt.wrapping_mul(1442695040888963407)) | 1;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 33;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let speed = (frac(1) * 1000.0).floor() / 10.0;
    let lon = -3.80 + frac(2) * 0.20;
    let lat = 40.35 + frac(3) * 0.15;
    let brand = BRANDS[(i % 8) as usize];
    format!(
        r#"{{"id":"{id}","type":"Vehicle","speed":{{"type":"Property","value":{speed:.1},"unitCode":"KMH","observedAt":"2026-01-15T10:00:00.000Z"}},"brandName":{{"type":"Property","value":"{brand}"}},"isParked":{{"type":"Relationship","object":"urn:ngsi-ld:OffStreetParking:{i}","observedAt":"2026-01-15T10:00:00.000Z"}},"location":{{"type":"GeoProperty","value":{{"type":"Point","coordinates":[{lon:.6},{lat:.6}]}},"observedAt":"2026-01-15T10:00:00.000Z"}},"category":{{"type":"Property","value":["commercial","municipalServices"]}}}}"#
    )
}

/// Loads entities `ids(from) .. ids(to-1)` with batch creates of LOAD_CHUNK, from two client
/// threads (so building and sending the next body overlaps with the broker's work). Returns the
/// wall time.
pub(crate) fn load(b: &Broker, from: u64, to: u64, ids: &(dyn Fn(u64) -> String + Sync)) -> Result<Duration, String> {
    let next = AtomicU64::new(from);
    let t0 = Instant::now();
    let worker = || -> Result<(), String> {
        loop {
            let start = next.fetch_add(LOAD_CHUNK, Ordering::Relaxed);
            if start >= to {
                return Ok(());
            }
            let end = (start + LOAD_CHUNK).min(to);
            let mut body = String::with_capacity(600 * LOAD_CHUNK as usize);
            body.push('[');
            for i in start..end {
                if i > start {
                    body.push(',');
                }
                body.push_str(&entity(&ids(i), i));
            }
            body.push(']');
            let r = httpc::request(
                &b.addr,
                "POST",
                "/ngsi-ld/v1/entityOperations/create",
                Some(&body),
                Duration::from_secs(300),
            )?;
            if r.status != 201 {
                let snippet: String = r.body.chars().take(400).collect();
                return Err(format!("batch create of {start}..{end} answered HTTP {}: {snippet}", r.status));
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(worker)).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err("loader thread panicked".into())))
    })?;
    Ok(t0.elapsed())
}

/// One wrk run's figures.
#[derive(Clone, Default)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) non2xx: u64,
    pub(crate) sock_errors: u64,
    /// Requests completed, warm-up included (for create: entities added to the store).
    pub(crate) total: u64,
    /// Broker process CPU during the measured run, % of one core.
    pub(crate) broker_cpu: Option<f64>,
    /// How busy cores 0 and 1 were during the measured run (all processes and the kernel), %.
    pub(crate) core_busy: [Option<f64>; 2],
}

pub(crate) struct Bench {
    pub(crate) opts: Opts,
    pub(crate) ticks_per_s: f64,
    pub(crate) pin_wrk: bool,
    tag: u64,
    /// The path `query.lua` requests.
    pub(crate) query_path: String,
    /// More environment variables for the Lua scripts.
    pub(crate) lua_env: Vec<(&'static str, String)>,
}

impl Bench {
    fn wrk_once(&mut self, b: &Broker, script: &str, secs: u64) -> Result<Run, String> {
        self.tag += 1;
        let run_tag = format!("{}x{}", std::process::id(), self.tag);
        let url = format!("http://{}", b.addr);
        let script_path = lua_dir().join(script);
        let wrk_args = [
            format!("-t{}", self.opts.threads),
            format!("-c{}", self.opts.connections),
            format!("-d{secs}s"),
            "--latency".into(),
            "--timeout".into(),
            "10s".into(),
            "-s".into(),
            script_path.to_string_lossy().into_owned(),
            url,
        ];
        let mut cmd = if self.pin_wrk {
            let mut c = Command::new("taskset");
            c.args(["-c", "1", "wrk"]);
            c
        } else {
            Command::new("wrk")
        };
        cmd.args(&wrk_args)
            .env("BENCH_LUA_DIR", lua_dir())
            .env("RUN_TAG", &run_tag)
            .env("RUN_SEQ", self.tag.to_string())
            .env("N_SMALL", N_SMALL.to_string())
            .env("UPSERT_POOL", UPSERT_POOL.to_string())
            .env("UPSERT_BATCH", UPSERT_BATCH.to_string())
            .env("QUERY_PATH", &self.query_path)
            .envs(self.lua_env.iter().map(|(k, v)| (k, v)));
        let cpu0 = b.cpu_ticks();
        let cores0 = core_ticks();
        let out = cmd.output().map_err(|e| format!("cannot run wrk: {e}"))?;
        let cpu1 = b.cpu_ticks();
        let cores1 = core_ticks();
        let busy = |k: usize| match (cores0[k], cores1[k]) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0),
            _ => None,
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with("RESULT ")).ok_or_else(|| {
            format!("wrk {script}: no RESULT line ({})\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
        })?;
        let field = |k: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let duration = field("duration").max(1e-9);
        let requests = field("requests");
        let broker_cpu = match (cpu0, cpu1) {
            (Some(a), Some(z)) => Some((z - a) as f64 / self.ticks_per_s / duration * 100.0),
            _ => None,
        };
        Ok(Run {
            rps: requests / duration,
            p50_us: field("p50"),
            p99_us: field("p99"),
            non2xx: field("non2xx") as u64,
            sock_errors: (field("connect") + field("read") + field("write") + field("timeout")) as u64,
            total: requests as u64,
            broker_cpu,
            core_busy: [busy(0), busy(1)],
        })
    }

    /// Warm-up (its errors are counted too), then the measured run.
    pub(crate) fn workload(&mut self, b: &mut Broker, label: &str, script: &str) -> Result<Run, String> {
        b.check_alive()?;
        let mut warm = Run::default();
        if self.opts.warmup > 0 {
            eprintln!("  {label}: warm-up {} s", self.opts.warmup);
            warm = self.wrk_once(b, script, self.opts.warmup)?;
        }
        eprintln!("  {label}: measuring {} s", self.opts.duration);
        let mut r = self.wrk_once(b, script, self.opts.duration)?;
        r.non2xx += warm.non2xx;
        r.sock_errors += warm.sock_errors;
        r.total += warm.total;
        b.check_alive()?;
        eprintln!(
            "  {label}: {:.0} req/s, p50 {}, p99 {}, non-2xx {}, socket errors {}, broker cpu {}, core0 busy {}, core1 busy {}",
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.non2xx,
            r.sock_errors,
            cpu(r.broker_cpu),
            cpu(r.core_busy[0]),
            cpu(r.core_busy[1])
        );
        Ok(r)
    }
}

/// (busy, total) clock ticks of cores 0 and 1 from /proc/stat.
fn core_ticks() -> [Option<(u64, u64)>; 2] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let one = |name: &str| {
        let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name))?;
        let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
        let total: u64 = v.iter().sum();
        let idle = v.get(3)? + v.get(4)?;
        Some((total - idle, total))
    };
    [one("cpu0"), one("cpu1")]
}

/// One request before a workload, so a failing endpoint is reported with its answer.
pub(crate) fn precheck(b: &Broker, method: &str, path: &str, body: Option<&str>, expect: &[u16]) -> Result<(), String> {
    let r = httpc::request(&b.addr, method, path, body, Duration::from_secs(30))?;
    if expect.contains(&r.status) {
        Ok(())
    } else {
        let snippet: String = r.body.chars().take(400).collect();
        Err(format!("{method} {path} answered HTTP {} (expected {expect:?}): {snippet}", r.status))
    }
}

pub(crate) fn ms(us: f64) -> String {
    if us >= 100_000.0 { format!("{:.0} ms", us / 1000.0) } else { format!("{:.2} ms", us / 1000.0) }
}

pub(crate) fn cpu(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.0}%")).unwrap_or_else(|| "?".into())
}

/// Broker CPU time per request, in microseconds.
fn per_req(r: &Run) -> String {
    match r.broker_cpu {
        Some(c) if r.rps > 0.0 => format!("{:.0} us", c / 100.0 / r.rps * 1e6),
        _ => "?".into(),
    }
}

fn mib(bytes: Option<f64>) -> String {
    bytes.map(|b| format!("{:.1} MiB", b / MIB)).unwrap_or_else(|| "?".into())
}

pub(crate) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// Everything measured, for the report.
#[derive(Default)]
struct Figures {
    ceiling: Run,
    create: Run,
    retrieve: Run,
    update: Run,
    upsert: Run,
    rss_idle: Option<f64>,
    rss_loaded: Option<f64>,
    /// Size of the data directory after loading.
    disk_loaded: Option<f64>,
    load_rate: f64,
    /// (store size before the run, create run)
    flatness: Vec<(u64, Run)>,
    /// (entities in the store, RSS, data directory size)
    rss_grown: Option<(u64, Option<f64>, Option<f64>)>,
    /// Query workloads: (label, store size, run).
    queries: Vec<(&'static str, u64, Run)>,
    problems: Vec<String>,
}

pub fn bench(args: &[String]) -> Result<(), String> {
    let opts = parse_opts(args)?;
    if opts.only != Only::Agent && !tool_exists("wrk", "-v") {
        return Err("wrk not found: install it with `apt-get install -y wrk`".into());
    }
    if !tool_exists("taskset", "-V") {
        return Err("taskset not found: install util-linux (`apt-get install -y util-linux`)".into());
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pin_wrk = cores >= 2;
    if !pin_wrk {
        eprintln!("warning: only one core: wrk is not pinned and shares core 0 with the broker");
    }
    let ticks_per_s = sh("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);

    let root = root();
    if opts.build {
        crate::run("cargo", &["build", "--release", "--bin", "orbis"])?;
        if matches!(opts.only, Only::All | Only::Agent) {
            crate::run("cargo", &["build", "--release", "-p", "orbis-agent", "--bin", "orbis-agent"])?;
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("orbis");
    if !bin.exists() {
        return Err(format!("{} not found (run without --no-build)", bin.display()));
    }

    let only = opts.only;
    let mut bench = Bench { opts, ticks_per_s, pin_wrk, tag: 0, query_path: String::new(), lua_env: Vec::new() };
    let mut f = Figures::default();
    let mut nf = crate::notify_bench::Figures::default();
    let mut complete = true;
    let mut ff = crate::fanout_bench::Figures::default();
    if matches!(only, Only::All | Only::Core)
        && let Err(e) = measure(&mut bench, &bin, &mut f)
    {
        f.problems.push(e);
        complete = false;
    }
    if matches!(only, Only::All | Only::Notify)
        && let Err(e) = crate::notify_bench::measure(&mut bench, &bin, &mut nf)
    {
        f.problems.push(e);
        complete = false;
    }
    if matches!(only, Only::All | Only::Fanout)
        && let Err(e) = crate::fanout_bench::measure(&mut bench, &bin, &mut ff)
    {
        f.problems.push(e);
        complete = false;
    }
    let mut af = crate::agent_bench::Figures::default();
    if matches!(only, Only::All | Only::Agent)
        && let Err(e) =
            crate::agent_bench::measure(&bench.opts, &bin, &target.join("release").join("orbis-agent"), &mut af)
    {
        f.problems.push(e);
        complete = false;
    }
    f.problems.append(&mut nf.problems);
    let loadavg_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg_end: Vec<&str> = loadavg_end.split_whitespace().take(3).collect();
    let mut runs = vec![
        ("ceiling", &f.ceiling),
        ("create", &f.create),
        ("retrieve", &f.retrieve),
        ("update", &f.update),
        ("batch upsert", &f.upsert),
    ];
    runs.extend(f.flatness.iter().skip(1).map(|(_, r)| ("create (grown store)", r)));
    runs.extend(f.queries.iter().map(|(label, _, r)| (*label, r)));
    let bad: Vec<String> = runs
        .iter()
        .filter(|(_, r)| r.non2xx + r.sock_errors > 0)
        .map(|(n, r)| format!("{n}: {} non-2xx responses, {} socket errors", r.non2xx, r.sock_errors))
        .collect();
    f.problems.extend(bad);
    let mut out = report(&bench.opts, &date, cores, &loadavg.join(" "), &loadavg_end.join(" "), complete);
    if matches!(only, Only::All | Only::Core) {
        report_core(&bench.opts, &f, &mut out);
    }
    if matches!(only, Only::All | Only::Notify) {
        crate::notify_bench::report(&bench.opts, &nf, &mut out);
    }
    crate::fanout_bench::report(&bench.opts, &ff, &mut out);
    crate::agent_bench::report(&af, &mut out);
    runs_fanout(&ff, &mut f.problems);
    print!("{out}");
    if f.problems.is_empty() { Ok(()) } else { Err(format!("benchmark failed:\n  {}", f.problems.join("\n  "))) }
}

/// Errors seen by the fan-out runs count as problems.
fn runs_fanout(ff: &crate::fanout_bench::Figures, problems: &mut Vec<String>) {
    for (n, r) in [("fan-out local", &ff.local), ("fan-out", &ff.fanout)] {
        if r.non2xx + r.sock_errors > 0 {
            problems.push(format!("{n}: {} non-2xx responses, {} socket errors", r.non2xx, r.sock_errors));
        }
    }
}

fn measure(bench: &mut Bench, bin: &Path, f: &mut Figures) -> Result<(), String> {
    // ---- broker A: workloads on a small store
    eprintln!("broker A: workloads (0)-(4)");
    let mut a = Broker::start(bin, "a")?;
    std::thread::sleep(Duration::from_millis(500));
    f.rss_idle = a.rss();
    load(&a, 0, N_SMALL, &|i| format!("urn:ngsi-ld:Vehicle:{i}"))?;
    load(&a, 0, UPSERT_POOL, &|i| format!("urn:ngsi-ld:Vehicle:u-{i}"))?;

    precheck(&a, "GET", "/version", None, &[200])?;
    f.ceiling = bench.workload(&mut a, "(0) ceiling GET /version", "version.lua")?;

    precheck(&a, "GET", "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:0", None, &[200])?;
    f.retrieve = bench.workload(&mut a, "(2) retrieve", "retrieve.lua")?;

    precheck(&a, "PATCH", "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:0/attrs/speed", Some(r#"{"value":42}"#), &[204])?;
    f.update = bench.workload(&mut a, "(3) update attr", "update.lua")?;

    let one = format!("[{}]", entity("urn:ngsi-ld:Vehicle:u-0", 0));
    precheck(&a, "POST", "/ngsi-ld/v1/entityOperations/upsert?options=update", Some(&one), &[204])?;
    f.upsert = bench.workload(&mut a, "(4) batch upsert", "upsert.lua")?;

    // create last: it is the only workload that grows the store
    let one = entity("urn:ngsi-ld:Vehicle:precheck", 0);
    precheck(&a, "POST", "/ngsi-ld/v1/entities", Some(&one), &[201])?;
    let before = N_SMALL + UPSERT_POOL + 1; // + the pre-check entity
    f.create = bench.workload(&mut a, "(1) create", "create.lua")?;
    f.flatness.push((before, f.create.clone()));
    drop(a);

    // ---- broker B: memory with N entities, create flatness
    eprintln!("broker B: memory and create flatness");
    let mut b = Broker::start(bin, "b")?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle_b = b.rss();
    eprintln!("  idle RSS {} (broker A: {})", mib(rss_idle_b), mib(f.rss_idle));
    let n = bench.opts.mem_entities;
    // The reference query: one page of a type query over a store of 100 entities.
    load_exact(&b, 0, SMALL_QUERY_STORE)?;
    query(bench, &mut b, f, "(5) type=Vehicle&limit=20", SMALL_QUERY_STORE, "type=Vehicle&limit=20")?;
    eprintln!("  loading {n} entities ({LOAD_CHUNK} per batch create)");
    let took = load(&b, SMALL_QUERY_STORE, n, &|i| format!("urn:ngsi-ld:Vehicle:{i}"))?;
    f.load_rate = (n - SMALL_QUERY_STORE) as f64 / took.as_secs_f64();
    eprintln!("  loaded in {:.1} s ({:.0} entities/s)", took.as_secs_f64(), f.load_rate);
    b.check_alive()?;
    std::thread::sleep(Duration::from_secs(1));
    f.rss_loaded = b.rss();
    f.disk_loaded = b.disk();
    eprintln!("  RSS after {n}: {} (data directory {})", mib(f.rss_loaded), mib(f.disk_loaded));
    // Queries at N entities: the same page, a selective and an unselective q, a near-query.
    query(bench, &mut b, f, "(6) type=Vehicle&limit=20", n, "type=Vehicle&limit=20")?;
    query(bench, &mut b, f, "(7) q=speed>95 (selective)", n, "type=Vehicle&q=speed%3E95&limit=20")?;
    query(bench, &mut b, f, "(8) q=speed>1 (unselective)", n, "type=Vehicle&q=speed%3E1&limit=20")?;
    query(
        bench,
        &mut b,
        f,
        "(9) near;maxDistance==500",
        n,
        "type=Vehicle&georel=near%3BmaxDistance%3D%3D500&geometry=Point&coordinates=%5B-3.70%2C40.42%5D&limit=20",
    )?;
    let r = bench.workload(&mut b, &format!("create at {n}"), "create.lua")?;
    let mut size = n + r.total;
    f.flatness.push((n, r));

    let grow = bench.opts.grow_to;
    if grow > n {
        // the create run above added entities too: load up to `grow` in total
        let more = grow.saturating_sub(size);
        eprintln!("  loading {more} more entities (store: {size})");
        let took = load(&b, n, n + more, &|i| format!("urn:ngsi-ld:Vehicle:{i}"))?;
        size += more;
        eprintln!("  loaded in {:.1} s ({:.0} entities/s)", took.as_secs_f64(), more as f64 / took.as_secs_f64());
        b.check_alive()?;
        std::thread::sleep(Duration::from_secs(1));
        f.rss_grown = Some((size, b.rss(), b.disk()));
        let r = bench.workload(&mut b, &format!("create at {size}"), "create.lua")?;
        f.flatness.push((size, r));
    }
    b.check_alive()?;
    Ok(())
}

/// Entities in the store of the reference query (5).
const SMALL_QUERY_STORE: u64 = 100;

/// Loads entities `from .. to` in one batch (fewer than a load chunk).
fn load_exact(b: &Broker, from: u64, to: u64) -> Result<(), String> {
    load(b, from, to, &|i| format!("urn:ngsi-ld:Vehicle:{i}")).map(|_| ())
}

/// Runs one query workload and records it.
fn query(
    bench: &mut Bench,
    b: &mut Broker,
    f: &mut Figures,
    label: &'static str,
    store: u64,
    qs: &str,
) -> Result<(), String> {
    bench.query_path = format!("/ngsi-ld/v1/entities?{qs}");
    precheck(b, "GET", &bench.query_path, None, &[200])?;
    let r = bench.workload(b, label, "query.lua")?;
    f.queries.push((label, store, r));
    Ok(())
}

/// The report's heading.
fn report(o: &Opts, date: &str, cores: usize, load0: &str, load1: &str, complete: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Orbis benchmark, {date}, {cores} cores, broker on core 0, wrk on core 1, wrk -t{} -c{}, {} s per workload (+{} s warm-up)",
        o.threads, o.connections, o.duration, o.warmup
    );
    let _ = writeln!(s, "load average before: {load0}, after: {load1}");
    if !complete {
        let _ = writeln!(s, "INCOMPLETE RUN: figures below are partial (see the error at the end)");
    }
    s
}

/// The report of workloads (0)-(9), RSS and create flatness.
fn report_core(o: &Opts, f: &Figures, out: &mut String) {
    let mut s = String::new();
    let ceiling = f.ceiling.rps.max(1e-9);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<28} {:>8} {:>9} {:>9} {:>8} {:>7} {:>7} {:>5} {:>5} {:>7}  target",
        "workload", "req/s", "p50", "p99", "vs ceil", "non-2xx", "brk cpu", "core0", "core1", "cpu/req"
    );
    let _ = writeln!(s, "{}", "-".repeat(128));
    let row = |s: &mut String, name: &str, r: &Run, target: &str| {
        let _ = writeln!(
            s,
            "{:<28} {:>8.0} {:>9} {:>9} {:>7.2}x {:>7} {:>7} {:>5} {:>5} {:>7}  {target}",
            name,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.rps / ceiling,
            r.non2xx + r.sock_errors,
            cpu(r.broker_cpu),
            cpu(r.core_busy[0]),
            cpu(r.core_busy[1]),
            per_req(r)
        );
    };
    let ratio = |r: &Run| r.rps / ceiling;
    row(&mut s, "(0) ceiling GET /version", &f.ceiling, "");
    row(&mut s, "(1) create entity", &f.create, &format!(">= 0.60x: {}", met(ratio(&f.create) >= 0.6)));
    row(&mut s, "(2) retrieve entity", &f.retrieve, &format!(">= 0.85x: {}", met(ratio(&f.retrieve) >= 0.85)));
    row(&mut s, "(3) update attr (durable)", &f.update, &format!(">= 0.70x: {}", met(ratio(&f.update) >= 0.7)));
    let ents = f.upsert.rps * UPSERT_BATCH as f64;
    row(
        &mut s,
        &format!("(4) batch upsert x{UPSERT_BATCH}"),
        &f.upsert,
        &format!(">= 100000 entities/s: {}", met(ents >= 100_000.0)),
    );
    let _ = writeln!(s, "{:<28} {:>8.0} entities/s", "    = entities", ents);
    let _ = writeln!(s, "non-2xx: wrk's HTTP errors plus socket errors, warm-up included; must be 0.");
    let _ = writeln!(
        s,
        "brk cpu: broker process CPU (% of one core); core0/core1: how busy each core was (any process + kernel)."
    );
    let _ = writeln!(s, "core0 well above brk cpu = other processes (or loopback softirq) on the broker's core.");
    let _ = writeln!(s, "cpu/req: broker CPU time per request (brk cpu / req/s).");

    let _ = writeln!(s);
    let idle_ok = f.rss_idle.is_some_and(|r| r <= 20.0 * MIB);
    let loaded_ok = f.rss_loaded.is_some_and(|r| r <= 150.0 * MIB);
    let _ =
        writeln!(s, "RSS idle (right after start)        {:>10}  target <= 20 MiB: {}", mib(f.rss_idle), met(idle_ok));
    let _ = writeln!(
        s,
        "RSS with {:>7} 5-attr entities    {:>10}  target <= 150 MiB: {}{}  (data directory {})",
        o.mem_entities,
        mib(f.rss_loaded),
        met(loaded_ok),
        if o.mem_entities == 100_000 { "" } else { " (target is for 100,000)" },
        mib(f.disk_loaded)
    );
    if let Some((n, rss, disk)) = f.rss_grown {
        let _ = writeln!(s, "RSS with {n:>7} 5-attr entities    {:>10}  (data directory {})", mib(rss), mib(disk));
    }
    let _ = writeln!(s, "load rate (batch create x{LOAD_CHUNK}, 2 client threads): {:.0} entities/s", f.load_rate);

    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "queries (GET /ngsi-ld/v1/entities; targets: (5) >= 8000 req/s per broker core; (7) and (9) within 2x of (5))"
    );
    let reference = f.queries.first().map(|(_, _, r)| r.rps).unwrap_or(0.0).max(1e-9);
    for (label, store, r) in &f.queries {
        let target = if label.starts_with("(5)") {
            format!(">= 8000 req/s: {}", met(r.rps >= 8000.0))
        } else if label.starts_with("(7)") || label.starts_with("(9)") {
            format!(">= 0.5x (5): {}", met(r.rps >= 0.5 * reference))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:<30} store {:>7}: {:>7.0} req/s  p50 {:>9}  p99 {:>9}  {:.2}x (5)  brk cpu {:>4}  cpu/req {:>7}  {target}",
            label,
            store,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.rps / reference,
            cpu(r.broker_cpu),
            per_req(r)
        );
    }
    let _ = writeln!(s);
    let _ =
        writeln!(s, "create flatness (POST /ngsi-ld/v1/entities; target: flat, i.e. >= 0.90x the empty-store rate)");
    if let Some((_, base)) = f.flatness.first() {
        for (n, r) in &f.flatness {
            let rel = r.rps / base.rps.max(1e-9);
            let _ = writeln!(
                s,
                "  store {:>8} entities: {:>7.0} req/s  p99 {:>9}  brk cpu {:>4} core0 {:>4}  {:.2}x empty{}",
                n,
                r.rps,
                ms(r.p99_us),
                cpu(r.broker_cpu),
                cpu(r.core_busy[0]),
                rel,
                if *n == f.flatness[0].0 { String::new() } else { format!("  {}", met(rel >= 0.9)) }
            );
        }
    }
    out.push_str(&s);
}
