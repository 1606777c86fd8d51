//! A notification receiver for the subscription tests: the HTTP endpoint notifications
//! (GS CIM 009 §5.3.1) are POSTed to.
//!
//! [`Receiver::start`] listens on `127.0.0.1:0` (the broker under test runs on the same
//! machine), reads HTTP/1.1 requests (bodies delimited by `Content-Length`, or chunked), answers
//! each with `200` (or `500` while [`Receiver::set_failing`] is on) and hands every request to
//! the test, in arrival order, as a [`Notification`]: method, path, headers with lower-cased
//! names, the raw body and the body parsed as JSON.
//!
//! When the broker runs elsewhere (for example in a container), set
//! `NGSILD_NOTIFY_HOST` to the host name or address under which the broker reaches this
//! machine: the receiver then listens on all interfaces and advertises that host in its URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// How long a test waits for a notification it expects.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(5);

/// The largest request the receiver accepts (head plus body).
const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// One request received from the broker.
#[derive(Debug, Clone)]
pub struct Notification {
    pub method: String,
    pub path: String,
    /// `(name lower-cased, value)`, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub raw: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    /// When it arrived.
    pub received: Instant,
}

impl Notification {
    /// The first value of a header (the name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a header (the name in any case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The media type of the body, without parameters, lower-cased.
    pub fn media_type(&self) -> String {
        self.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
    }

    /// The `data` array of the notification (panics, showing the body, if there is none).
    pub fn data(&self) -> &Vec<Value> {
        self.body["data"].as_array().unwrap_or_else(|| panic!("a notification carries a data array: {}", self.raw))
    }

    /// The item of `data` about the entity `id`, if any.
    pub fn entity(&self, id: &str) -> Option<&Value> {
        self.body["data"].as_array()?.iter().find(|e| e["id"] == id)
    }

    /// The item of `data` about the entity `id` (panics, showing the body, if there is none).
    pub fn must_entity(&self, id: &str) -> &Value {
        self.entity(id).unwrap_or_else(|| panic!("the notification is about {id}: {}", self.raw))
    }

    /// The context URLs of the `Link` headers with the JSON-LD context relation.
    pub fn link_contexts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.header_all("link") {
            for part in v.split(',') {
                if part.contains(crate::LD_CONTEXT_REL)
                    && let (Some(s), Some(e)) = (part.find('<'), part.find('>'))
                    && s < e
                {
                    out.push(part[s + 1..e].to_owned());
                }
            }
        }
        out
    }
}

/// A local HTTP server that records notifications.
pub struct Receiver {
    url: String,
    rx: Mutex<mpsc::UnboundedReceiver<Notification>>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver on a free port (inside the test's runtime).
    pub async fn start() -> Receiver {
        let advertised = std::env::var("NGSILD_NOTIFY_HOST").ok().filter(|h| !h.trim().is_empty());
        let bind = if advertised.is_some() { "0.0.0.0:0" } else { "127.0.0.1:0" };
        let listener = TcpListener::bind(bind).await.expect("bind the notification receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let host = advertised.map(|h| h.trim().to_owned()).unwrap_or_else(|| "127.0.0.1".to_owned());
        let url = format!("http://{host}:{port}/notify");
        let (tx, rx) = mpsc::unbounded_channel();
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(serve(stream, tx.clone(), flag.clone()));
            }
        });
        Receiver { url, rx: Mutex::new(rx), failing, task }
    }

    /// The URL to put in `notification.endpoint.uri`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// While on, requests are answered `500 Internal Server Error` (they are still recorded).
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// The next request, waiting at most `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<Notification> {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(timeout, rx.recv()).await.ok().flatten()
    }

    /// The next request within [`NOTIFY_WAIT`]; panics, naming `what`, if none comes.
    pub async fn expect(&self, what: &str) -> Notification {
        self.next(NOTIFY_WAIT)
            .await
            .unwrap_or_else(|| panic!("no notification within {NOTIFY_WAIT:?}: expected one for {what}"))
    }

    /// Waits (at most [`NOTIFY_WAIT`]) for a request for which `pred` holds; returns it and the
    /// requests that came before it. Panics, naming `what`, if none comes.
    pub async fn expect_where(
        &self,
        what: &str,
        pred: impl Fn(&Notification) -> bool,
    ) -> (Notification, Vec<Notification>) {
        let deadline = Instant::now() + NOTIFY_WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(n) if pred(&n) => return (n, before),
                Some(n) => before.push(n),
                None => panic!(
                    "no notification for {what} within {NOTIFY_WAIT:?}; received instead: {:?}",
                    before.iter().map(|n| &n.raw).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Asserts that no request arrives within `window`; `why` says why none is expected.
    pub async fn expect_none(&self, window: Duration, why: &str) {
        if let Some(n) = self.next(window).await {
            panic!("unexpected notification ({why}): {}", n.raw);
        }
    }

    /// Every request already received, without waiting.
    pub async fn drain(&self) -> Vec<Notification> {
        let mut rx = self.rx.lock().await;
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n);
        }
        out
    }
}

/// Serves one connection: requests one after the other (keep-alive) until it closes.
async fn serve(stream: TcpStream, tx: mpsc::UnboundedSender<Notification>, failing: Arc<AtomicBool>) {
    let mut r = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut r).await else { return };
        let close = req.headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let status = if failing.load(Ordering::SeqCst) { "500 Internal Server Error" } else { "200 OK" };
        let _ = tx.send(req);
        let conn = if close { "Connection: close\r\n" } else { "" };
        let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n{conn}\r\n");
        if r.get_mut().write_all(resp.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

async fn read_line(r: &mut BufReader<TcpStream>, budget: &mut usize) -> Option<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await.ok()?;
    if n == 0 || n > *budget {
        return None;
    }
    *budget -= n;
    Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one request; `None` when the connection closes or the request is malformed.
async fn read_request(r: &mut BufReader<TcpStream>) -> Option<Notification> {
    let mut budget = MAX_REQUEST;
    let mut start = read_line(r, &mut budget).await?;
    while start.is_empty() {
        start = read_line(r, &mut budget).await?;
    }
    let mut parts = start.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget).await?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let has =
        |name: &str, value: &str| headers.iter().any(|(k, v)| k == name && v.to_ascii_lowercase().contains(value));
    if has("expect", "100-continue") {
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.ok()?;
    }
    let mut body = Vec::new();
    if has("transfer-encoding", "chunked") {
        loop {
            let size_line = read_line(r, &mut budget).await?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(r, &mut budget).await?.is_empty() {}
                break;
            }
            if size > budget {
                return None;
            }
            budget -= size;
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk).await.ok()?;
            body.extend_from_slice(&chunk);
            read_line(r, &mut budget).await?;
        }
    } else {
        let len = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>());
        let len = match len {
            Some(Ok(n)) => n,
            Some(Err(_)) => return None,
            None => 0,
        };
        if len > budget {
            return None;
        }
        body = vec![0u8; len];
        r.read_exact(&mut body).await.ok()?;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Some(Notification { method, path, headers, raw, body: json, received: Instant::now() })
}
