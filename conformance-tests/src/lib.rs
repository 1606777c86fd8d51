//! Black-box NGSI-LD conformance harness (ETSI GS CIM 009 v1.9.1).
//!
//! The tests under `tests/` talk HTTP only. They run against the broker named by the
//! `NGSILD_BROKER_URL` environment variable (for example an Orion-LD on
//! `http://localhost:1026`), or, when it is unset, against an `orbis` binary this harness
//! starts once per test process on a free port with a temporary data directory.
//!
//! Starting and stopping orbis: the binary is built with `cargo build -p orbis --bin orbis`
//! (a no-op when it is up to date; when the build fails an existing binary is used), then run
//! under a small `sh` supervisor whose stdin is a pipe held open by the test process. When the
//! test process exits, for whatever reason, the pipe closes, the supervisor's `read` returns,
//! and it stops orbis and removes the temporary directory. No stray process is left behind.
//! `ORBIS_BIN` names a prebuilt binary and skips the build.
//!
//! Every test uses unique entity ids ([`unique_id`]) and, where it needs isolation, its own
//! tenant ([`unique_tenant`]), so tests run in parallel and against a shared broker.
//!
//! Subscription tests receive notifications through a local HTTP [`Receiver`].

pub mod receiver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use receiver::{NOTIFY_WAIT, Notification, Receiver};
pub use reqwest::Method;
use reqwest::header::HeaderMap;
pub use serde_json::{Value, json};

/// The NGSI-LD API prefix.
pub const API: &str = "/ngsi-ld/v1";
/// The ProblemDetails type prefix (§5.5.2).
pub const ERROR_PREFIX: &str = "https://uri.etsi.org/ngsi-ld/errors/";
/// The JSON-LD context link relation (§6.3.5).
pub const LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";
/// The default vocabulary terms fall back to when no context defines them.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

/// A spawned orbis and what keeps it alive.
struct Spawned {
    base: String,
    /// The supervisor shell; its stdin pipe closes when this process exits.
    _supervisor: Child,
}

static SPAWNED: OnceLock<Spawned> = OnceLock::new();

/// A handle on the broker under test: its base URL and an HTTP client.
///
/// A new client is made per handle because each `#[tokio::test]` has its own runtime and
/// reqwest's connection pool is tied to the runtime that opened the connections.
#[derive(Clone)]
pub struct Broker {
    pub base: String,
    pub client: reqwest::Client,
}

impl Broker {
    /// The broker of this test process: `NGSILD_BROKER_URL`, or an orbis started on first use.
    pub fn get() -> Broker {
        let base = match std::env::var("NGSILD_BROKER_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
            _ => SPAWNED.get_or_init(spawn_orbis).base.clone(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Broker { base, client }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with nothing set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends a request and records its status, headers and body.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("the broker answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("a readable body");
        Resp { status, headers, text }
    }

    /// A request with a JSON body sent as `application/json`.
    pub async fn json(&self, method: Method, path: &str, tenant: Option<&str>, body: &Value) -> Resp {
        let rb = with_tenant(self.request(method, path), tenant)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        self.send(rb).await
    }

    /// A request with a JSON-LD body (carrying its own `@context`).
    pub async fn ld_json(&self, method: Method, path: &str, tenant: Option<&str>, body: &Value) -> Resp {
        let rb = with_tenant(self.request(method, path), tenant)
            .header("Content-Type", "application/ld+json")
            .body(body.to_string());
        self.send(rb).await
    }

    /// GET with `Accept: application/json` and an optional tenant.
    pub async fn get_json(&self, path: &str, tenant: Option<&str>) -> Resp {
        let rb = with_tenant(self.request(Method::GET, path), tenant).header("Accept", "application/json");
        self.send(rb).await
    }

    /// DELETE with an optional tenant.
    pub async fn delete(&self, path: &str, tenant: Option<&str>) -> Resp {
        self.send(with_tenant(self.request(Method::DELETE, path), tenant)).await
    }

    /// POST /entities (application/json, core context).
    pub async fn create_entity(&self, tenant: Option<&str>, entity: &Value) -> Resp {
        self.json(Method::POST, &format!("{API}/entities"), tenant, entity).await
    }

    /// POST /entities and insists on 201.
    pub async fn must_create(&self, tenant: Option<&str>, entity: &Value) {
        let r = self.create_entity(tenant, entity).await;
        assert_eq!(r.status, 201, "creating {}: {}", entity["id"], r.text);
    }

    /// GET /entities/{id} as application/json (with a `?query` suffix if given).
    pub async fn retrieve(&self, tenant: Option<&str>, id: &str, query: &str) -> Resp {
        self.get_json(&entity_path(id, query), tenant).await
    }

    /// GET /entities/{id}, insisting on 200, returning the body.
    pub async fn must_retrieve(&self, tenant: Option<&str>, id: &str, query: &str) -> Value {
        let r = self.retrieve(tenant, id, query).await;
        assert_eq!(r.status, 200, "retrieving {id}{query}: {}", r.text);
        r.json()
    }

    /// POST /jsonldContexts with `{"@context": ctx}`; returns the context's URL (from
    /// `details=true`) and its Location path.
    pub async fn host_context(&self, ctx: &Value) -> (String, String) {
        let r = self.json(Method::POST, &format!("{API}/jsonldContexts"), None, &json!({"@context": ctx})).await;
        assert_eq!(r.status, 201, "adding a @context: {}", r.text);
        let location = r.header("location").expect("Location on 201").to_owned();
        let path = location_path(&location);
        let d = self.get_json(&format!("{path}?details=true"), None).await;
        assert_eq!(d.status, 200, "details of {path}: {}", d.text);
        let url = d.json()["URL"].as_str().expect("details carry URL").to_owned();
        (url, path)
    }
}

/// A recorded response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}: {:?}", self.status, self.text))
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of the body, without parameters, lower-cased.
    pub fn media_type(&self) -> String {
        self.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
    }

    /// Asserts the status, showing the body on failure.
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts an RFC 7807 ProblemDetails response of the given status and NGSI-LD error
    /// type (§5.5.2, §5.5.3): JSON body with `type` = prefix + kind, a string `title`, and a
    /// string `detail` when present; `status`, when present, equals the HTTP status.
    pub fn expect_problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        let mt = self.media_type();
        assert!(
            mt == "application/json" || mt == "application/problem+json" || mt == "application/ld+json",
            "ProblemDetails should be JSON, got Content-Type {mt:?}"
        );
        let b = self.json();
        assert_eq!(b["type"], json!(format!("{ERROR_PREFIX}{kind}")), "problem type; body: {b}");
        assert!(b["title"].is_string(), "problem title must be a string; body: {b}");
        if let Some(d) = b.get("detail") {
            assert!(d.is_string(), "problem detail must be a string; body: {b}");
        }
        if let Some(s) = b.get("status") {
            assert_eq!(s, &json!(status), "problem status member; body: {b}");
        }
        b
    }

    /// The context URL of a `Link` header with the JSON-LD context relation.
    pub fn link_context(&self) -> Option<String> {
        for v in self.headers.get_all("link") {
            let s = v.to_str().ok()?;
            for part in s.split(',') {
                let part = part.trim();
                if part.contains(LD_CONTEXT_REL) {
                    let start = part.find('<')? + 1;
                    let end = part.find('>')?;
                    return Some(part[start..end].to_owned());
                }
            }
        }
        None
    }
}

/// Adds `NGSILD-Tenant` when a tenant is given.
pub fn with_tenant(rb: reqwest::RequestBuilder, tenant: Option<&str>) -> reqwest::RequestBuilder {
    match tenant {
        Some(t) => rb.header("NGSILD-Tenant", t),
        None => rb,
    }
}

/// A `Link` header value pointing at a JSON-LD context.
pub fn link_header(url: &str) -> String {
    format!("<{url}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\"")
}

/// `/ngsi-ld/v1/entities/{id}` plus a query string (`""` or `"?…"`).
pub fn entity_path(id: &str, query: &str) -> String {
    format!("{API}/entities/{}{query}", encode(id))
}

/// Percent-encodes a path segment or query value (ids contain `:`; keep it readable).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The path part of a Location header (which may be absolute or relative).
pub fn location_path(location: &str) -> String {
    match location.find("://") {
        Some(i) => {
            let rest = &location[i + 3..];
            rest.find('/').map(|j| rest[j..].to_owned()).unwrap_or_else(|| "/".into())
        }
        None => location.to_owned(),
    }
}

/// A suffix unique in this run and across runs.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:04x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id() & 0xffff, n)
}

/// A unique entity id `urn:ngsi-ld:<kind>:<suffix>`.
pub fn unique_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", unique_suffix())
}

/// A unique tenant name (lower case, at most 50 characters of `[a-z0-9_-]`).
pub fn unique_tenant() -> String {
    format!("ct-{}", unique_suffix())
}

// ---------------------------------------------------------------------------------------------
// Starting orbis.

fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn orbis_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("ORBIS_BIN") {
        return PathBuf::from(bin);
    }
    let ws = workspace_dir();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => ws.join(t),
        None => ws.join("target"),
    };
    let bin = target.join("debug").join(if cfg!(windows) { "orbis.exe" } else { "orbis" });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("conformance-tests: cargo build -p orbis --bin orbis");
    let status = Command::new(&cargo)
        .args(["build", "-p", "orbis", "--bin", "orbis"])
        .current_dir(&ws)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            assert!(bin.exists(), "building orbis failed ({other:?}) and {} does not exist", bin.display());
            eprintln!("conformance-tests: building orbis failed ({other:?}); using the existing {}", bin.display());
        }
    }
    assert!(bin.exists(), "{} does not exist after building", bin.display());
    bin
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// GET /version over a plain socket; true on a 200.
fn version_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut got = Vec::new();
    while got.len() < 12 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"HTTP/1.1 200") || got.starts_with(b"HTTP/1.0 200")
}

/// The supervisor: runs orbis in the background, waits for EOF on stdin (the test process
/// exited and the pipe closed), then stops orbis (SIGTERM, SIGKILL after 5 s) and removes the
/// temporary directory. `$1` is the temporary directory, `$2…` the orbis command line.
const SUPERVISOR: &str = r#"
dir="$1"; shift
"$@" </dev/null >"$dir/orbis.log" 2>&1 &
pid=$!
echo "$pid" > "$dir/orbis.pid"
while read -r _; do :; done
kill "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

fn spawn_orbis() -> Spawned {
    let bin = orbis_binary();
    let dir = std::env::temp_dir().join(format!("orbis-conformance-{}", unique_suffix()));
    std::fs::create_dir_all(dir.join("data")).expect("create the temporary directory");
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("orbis-supervisor")
            .arg(&dir)
            .arg(&bin)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--log-level", "warn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sh");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if version_answers(port) {
                return Spawned { base: format!("http://127.0.0.1:{port}"), _supervisor: child };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let log = std::fs::read_to_string(dir.join("orbis.log")).unwrap_or_default();
            if log.contains("Address already in use") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last_err = std::fs::read_to_string(dir.join("orbis.log")).unwrap_or_default();
        // Closing stdin makes the supervisor stop orbis; then start over on another port.
        drop(child.stdin.take());
        let _ = child.wait();
        let _ = std::fs::create_dir_all(dir.join("data"));
    }
    panic!("orbis ({}) did not answer GET /version; its log:\n{last_err}", bin.display());
}
