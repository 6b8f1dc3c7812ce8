//! The event receiver: a small hyper 1 server that takes the events a target POSTs to
//! a call's `callbackUri` (see the contract's Events section), keeps them per call and
//! lets a gate check or a load user wait for one.
//!
//! It answers 200 at once with an empty body, reads every body under a size cap and a
//! deadline, keeps a bounded number of events (oldest dropped first, counted) and never
//! panics on what a peer sends. Shared by the gate's `events` check and load runs.

use crate::slots::{Slots, counted};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

/// Largest event body kept when none is configured: far above any contract event.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// Events kept in total when none is configured (per-call lists and unattributed).
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// How long a sender may take to deliver one request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a sender may take to send a request head (also the keep-alive idle time).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive connections served at once (plus a single-request reserve and closing of
/// idle ones beyond it, crate::slots); more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;

/// Pause after a failed accept (e.g. out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One event as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// Arrival time.
    pub at: Instant,
    /// Request path and query as received (may hold a secret: redact when shown).
    pub path: String,
    /// The parsed JSON body (`Value::Null` if it was not JSON).
    pub body: serde_json::Value,
    /// Size of the body in bytes.
    pub raw_len: usize,
    /// Why it could not be parsed or attributed to a call, if so.
    pub error: Option<String>,
}

/// Where the receiver listens, what URL it tells targets, and its bounds.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Address to listen on; 127.0.0.1:0 by default.
    pub listen: SocketAddr,
    /// What a `callbackUri` points at (a tunnel or ingress for a remote target);
    /// `None` means `http://<bound address>/`.
    pub public_url: Option<url::Url>,
    /// Largest body read; a larger one gets 413 and is counted.
    pub max_body_bytes: usize,
    /// Events kept in total; the oldest are dropped (and counted) beyond it.
    pub max_events: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// What the receiver has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Requests whose body was read and kept (attributed or not).
    pub received: u64,
    /// Requests refused with 413 for a body over `max_body_bytes`.
    pub rejected_too_large: u64,
    /// Kept events dropped because `max_events` was reached.
    pub dropped_over_capacity: u64,
    /// Requests refused for another reason: not POST, body late or broken.
    pub rejected_other: u64,
}

/// The events of one call, and the wake-up for those waiting on them.
struct CallEntry {
    /// Tells this entry from an earlier one of the same id (after `forget`), so the
    /// eviction queue never drops a newer entry's events for an older one.
    generation: u64,
    events: VecDeque<Received>,
    notify: Arc<Notify>,
}

/// Which list an event in the eviction queue sits in.
enum Slot {
    Call(Arc<str>, u64),
    Unattributed,
}

#[derive(Default)]
struct Store {
    calls: HashMap<Arc<str>, CallEntry>,
    unattributed: VecDeque<Received>,
    /// Every kept event in arrival order (plus stale slots of forgotten calls).
    fifo: VecDeque<Slot>,
    kept: usize,
    next_generation: u64,
}

impl Store {
    fn entry(&mut self, id: &str) -> &mut CallEntry {
        if !self.calls.contains_key(id) {
            self.next_generation += 1;
            let entry = CallEntry {
                generation: self.next_generation,
                events: VecDeque::new(),
                notify: Arc::new(Notify::new()),
            };
            self.calls.insert(Arc::from(id), entry);
        }
        // Inserted just above when it was missing.
        self.calls.get_mut(id).unwrap_or_else(|| unreachable!())
    }

    /// Drops the oldest kept event; false when there is none left.
    fn evict_one(&mut self) -> bool {
        while let Some(slot) = self.fifo.pop_front() {
            match slot {
                Slot::Unattributed => {
                    if self.unattributed.pop_front().is_some() {
                        self.kept -= 1;
                        return true;
                    }
                }
                Slot::Call(id, generation) => {
                    let Some(entry) = self.calls.get_mut(&id) else {
                        continue; // forgotten
                    };
                    if entry.generation != generation || entry.events.pop_front().is_none() {
                        continue;
                    }
                    self.kept -= 1;
                    if entry.events.is_empty() && Arc::strong_count(&entry.notify) == 1 {
                        self.calls.remove(&id);
                    }
                    return true;
                }
            }
        }
        false
    }

    /// Removes slots of forgotten calls once they outnumber the kept events, so the
    /// queue stays proportional to what is kept over a long load run.
    fn compact(&mut self) {
        if self.fifo.len() <= 2 * self.kept + 1024 {
            return;
        }
        let calls = &self.calls;
        self.fifo.retain(|slot| match slot {
            Slot::Unattributed => true,
            Slot::Call(id, generation) => calls
                .get(id)
                .is_some_and(|e| e.generation == *generation && !e.events.is_empty()),
        });
    }
}

struct Shared {
    store: Mutex<Store>,
    max_events: usize,
    max_body_bytes: usize,
    received: AtomicU64,
    rejected_too_large: AtomicU64,
    dropped_over_capacity: AtomicU64,
    rejected_other: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic elsewhere while holding the lock leaves the lists consistent enough
        // to read; keep serving rather than poison every later request.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, mut event: Received) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if self.max_events == 0 {
            self.dropped_over_capacity.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let call = if event.error.is_none() {
            match call_leg_id(&event.body) {
                Ok(id) => Some(id),
                Err(why) => {
                    event.error = Some(why);
                    None
                }
            }
        } else {
            None
        };
        let mut store = self.lock();
        while store.kept >= self.max_events && store.evict_one() {
            self.dropped_over_capacity.fetch_add(1, Ordering::Relaxed);
        }
        match call {
            Some(id) => {
                let entry = store.entry(&id);
                entry.events.push_back(event);
                let generation = entry.generation;
                entry.notify.notify_waiters();
                // The map's key, shared rather than copied per event.
                let key = store
                    .calls
                    .get_key_value(id.as_str())
                    .map(|(k, _)| Arc::clone(k))
                    .unwrap_or_else(|| Arc::from(id.as_str()));
                store.fifo.push_back(Slot::Call(key, generation));
            }
            None => {
                store.unattributed.push_back(event);
                store.fifo.push_back(Slot::Unattributed);
            }
        }
        store.kept += 1;
        store.compact();
    }
}

/// The call an event belongs to: `data.CallLegId`, else the `<id>` of a subject
/// `callLeg/<id>/...`.
fn call_leg_id(body: &serde_json::Value) -> Result<String, String> {
    let Some(object) = body.as_object() else {
        return Err(format!(
            "the body is a JSON {}, not an event object",
            kind(body)
        ));
    };
    if let Some(id) = object
        .get("data")
        .and_then(|d| d.get("CallLegId"))
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty())
    {
        return Ok(id.to_string());
    }
    if let Some(id) = object
        .get("subject")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.strip_prefix("callLeg/"))
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
    {
        return Ok(id.to_string());
    }
    Err("no data.CallLegId and no subject callLeg/<id>/...: the call is unknown".to_string())
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Stops the server when the last [`Receiver`] clone is dropped.
struct Handle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    base_url: url::Url,
    server: AbortHandle,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A running receiver; clones share it (an `Arc` inside).
///
/// ```
/// use acs_harness::Receiver;
/// use acs_harness::contract::events::EventType;
/// use acs_harness::generate::events::valid_event;
/// use acs_harness::receiver::ReceiverConfig;
/// use proptest::strategy::{Strategy, ValueTree};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let receiver = Receiver::start(ReceiverConfig::default()).await?; // 127.0.0.1, a free port
/// let callback = receiver.callback_uri("test-1"); // goes in a create-call body
///
/// // What a target does once a call's state changes: POST an event to the callbackUri.
/// let mut runner = acs_harness::generate::runner(3);
/// let event = valid_event(EventType::CallLegStateChanged).new_tree(&mut runner).unwrap().current();
/// let call = event["data"]["CallLegId"].as_str().unwrap_or_default().to_string();
/// let answer = reqwest::Client::new().post(&callback).json(&event).send().await?;
/// assert_eq!(answer.status(), 200);
///
/// // Wait (bounded) for the call's event.
/// let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
/// let got = receiver.wait_for(&call, deadline, |_| true).await.expect("the event");
/// assert_eq!(got.body, event);
/// assert_eq!(receiver.stats().received, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Receiver {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("local_addr", &self.handle.local_addr)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: ReceiverConfig) -> std::io::Result<Receiver> {
        if let Some(public) = &config.public_url
            && (!matches!(public.scheme(), "http" | "https") || public.cannot_be_a_base())
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the callback URL {} is not an http(s) URL",
                    crate::redact::url(public.as_str())
                ),
            ));
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let base_url = match config.public_url {
            Some(url) => url,
            None => url::Url::parse(&format!("http://{local_addr}/"))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            max_events: config.max_events,
            max_body_bytes: config.max_body_bytes,
            received: AtomicU64::new(0),
            rejected_too_large: AtomicU64::new(0),
            dropped_over_capacity: AtomicU64::new(0),
            rejected_other: AtomicU64::new(0),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&shared))).abort_handle();
        Ok(Receiver {
            handle: Arc::new(Handle {
                shared,
                local_addr,
                base_url,
                server,
            }),
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr
    }

    /// The callbackUri to put in a create-call body; `tag` becomes the last path
    /// segment (percent-encoded), so a test or load user can tell its calls apart.
    /// The public URL's query (e.g. an application secret) is kept.
    pub fn callback_uri(&self, tag: &str) -> String {
        let mut url = self.handle.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(tag);
        }
        url.into()
    }

    /// Events attributed to a call (by `data.CallLegId`, else by the subject's
    /// `callLeg/<id>/...`), in arrival order.
    pub fn events_for(&self, call_leg_id: &str) -> Vec<Received> {
        let store = self.handle.shared.lock();
        store
            .calls
            .get(call_leg_id)
            .map(|e| e.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until an event for `call_leg_id` matching `pred` is there (already or
    /// later) or the deadline passes; returns it or None. Many concurrent waiters are
    /// fine. `pred` runs under the receiver's lock: it must not call the receiver.
    pub async fn wait_for(
        &self,
        call_leg_id: &str,
        deadline: tokio::time::Instant,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let shared = &self.handle.shared;
        let notify = Arc::clone(&shared.lock().entry(call_leg_id).notify);
        let found = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an event kept in between still wakes us.
            notified.as_mut().enable();
            let hit = shared
                .lock()
                .calls
                .get(call_leg_id)
                .and_then(|e| e.events.iter().find(|r| pred(r)).cloned());
            if hit.is_some() {
                break hit;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break None;
            }
        };
        // The entry made only for this wait goes again when nobody else needs it.
        let mut store = shared.lock();
        drop(notify);
        if let Some(entry) = store.calls.get(call_leg_id)
            && entry.events.is_empty()
            && Arc::strong_count(&entry.notify) == 1
        {
            store.calls.remove(call_leg_id);
        }
        found
    }

    /// The ids of the calls that have events kept (lets a gate spot events attributed
    /// to a call it never made, e.g. a wrong `CallLegId`).
    pub fn calls(&self) -> Vec<String> {
        let store = self.handle.shared.lock();
        store
            .calls
            .iter()
            .filter(|(_, e)| !e.events.is_empty())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Events that could not be attributed to a call (not JSON, no call id), newest last.
    pub fn unattributed(&self) -> Vec<Received> {
        self.handle
            .shared
            .lock()
            .unattributed
            .iter()
            .cloned()
            .collect()
    }

    /// Counters: received, rejected_too_large, dropped_over_capacity, rejected_other.
    pub fn stats(&self) -> ReceiverStats {
        let s = &self.handle.shared;
        ReceiverStats {
            received: s.received.load(Ordering::Relaxed),
            rejected_too_large: s.rejected_too_large.load(Ordering::Relaxed),
            dropped_over_capacity: s.dropped_over_capacity.load(Ordering::Relaxed),
            rejected_other: s.rejected_other.load(Ordering::Relaxed),
        }
    }

    /// Stops listening and drops open connections (also done when the last clone is
    /// dropped). The events kept so far stay readable.
    pub fn shutdown(&self) {
        self.handle.server.abort();
    }

    /// Forgets the events of a call, so a long load run keeps a bounded memory.
    pub fn forget(&self, call_leg_id: &str) {
        let mut store = self.handle.shared.lock();
        let Some(entry) = store.calls.get_mut(call_leg_id) else {
            return;
        };
        let n = entry.events.len();
        entry.events.clear();
        // A waiter keeps its wake-up: later events of the call still reach it.
        if Arc::strong_count(&entry.notify) == 1 {
            store.calls.remove(call_leg_id);
        }
        store.kept -= n;
        store.compact();
    }
}

/// The accept loop; its connections are aborted with it (they live in its JoinSet).
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Slots::new(MAX_CONNECTIONS);
    let mut connections = JoinSet::new();
    loop {
        // Finished connections are reaped so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let Some(slot) = slots.acquire().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = counted(slot.busy(), move |req| respond(Arc::clone(&shared), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(slot.keep_alive())
                .serve_connection(TokioIo::new(stream), service_fn(service));
            slot.drive(conn, std::future::pending()).await;
        });
    }
}

fn answer(status: u16, close: bool) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if close {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

enum BodyError {
    TooLarge,
    Broken,
}

async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    let mut single: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue; // trailers
        };
        if buf.len() + single.as_ref().map_or(0, Bytes::len) + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        // The usual body is one frame: keep it as is rather than copy it.
        match single.take() {
            None if buf.is_empty() => single = Some(data),
            first => {
                if let Some(first) = first {
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(single.unwrap_or_else(|| buf.freeze()))
}

async fn respond(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let unread = !hyper::body::Body::is_end_stream(&body);
    if parts.method != hyper::Method::POST {
        shared.rejected_other.fetch_add(1, Ordering::Relaxed);
        let mut resp = answer(405, unread);
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("POST"),
        );
        return Ok(resp);
    }
    if hyper::body::Body::size_hint(&body).lower() > shared.max_body_bytes as u64 {
        shared.rejected_too_large.fetch_add(1, Ordering::Relaxed);
        return Ok(answer(413, true));
    }
    let at = Instant::now();
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, read_body(body, shared.max_body_bytes)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(BodyError::TooLarge)) => {
                shared.rejected_too_large.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(413, true));
            }
            Ok(Err(BodyError::Broken)) => {
                shared.rejected_other.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(400, true));
            }
            Err(_) => {
                shared.rejected_other.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(408, true));
            }
        };
    let path = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_string(),
        None => parts.uri.to_string(),
    };
    let (body, error) = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) => (value, None),
        Err(e) => (
            serde_json::Value::Null,
            Some(format!("the body is not JSON: {e}")),
        ),
    };
    shared.keep(Received {
        at,
        path,
        body,
        raw_len: bytes.len(),
        error,
    });
    Ok(answer(200, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, state: &str) -> serde_json::Value {
        json!({
            "id": format!("{id}-{state}"),
            "subject": format!("callLeg/{id}/callState"),
            "eventType": "Microsoft.Communication.CallLegStateChanged",
            "data": {"CallLegId": id, "CallState": state},
        })
    }

    async fn post(addr: SocketAddr, path: &str, body: Vec<u8>) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    fn deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn keeps_events_per_call_in_order_and_wakes_waiters() {
        let rx = Receiver::start(ReceiverConfig::default()).await.unwrap();
        let addr = rx.local_addr();
        let waiter = {
            let rx = rx.clone();
            tokio::spawn(async move {
                rx.wait_for("a", deadline(), |r| {
                    r.body["data"]["CallState"] == "Terminated"
                })
                .await
            })
        };
        for state in ["Establishing", "Established", "Terminated"] {
            assert_eq!(
                post(
                    addr,
                    "/cb/a?secret=s",
                    event("a", state).to_string().into_bytes()
                )
                .await,
                200
            );
        }
        assert_eq!(
            post(
                addr,
                "/cb/b",
                event("b", "Establishing").to_string().into_bytes()
            )
            .await,
            200
        );
        let got = waiter.await.unwrap().expect("the waiter saw Terminated");
        assert_eq!(got.path, "/cb/a?secret=s");
        let states: Vec<_> = rx
            .events_for("a")
            .iter()
            .map(|r| r.body["data"]["CallState"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(states, ["Establishing", "Established", "Terminated"]);
        assert_eq!(rx.events_for("b").len(), 1);
        assert_eq!(rx.stats().received, 4);
        // Already there: found at once.
        assert!(rx.wait_for("b", deadline(), |_| true).await.is_some());
    }

    #[tokio::test]
    async fn attributes_by_subject_and_keeps_the_rest_apart() {
        let rx = Receiver::start(ReceiverConfig::default()).await.unwrap();
        let addr = rx.local_addr();
        let by_subject = json!({"subject": "callLeg/c1/playAudio", "data": {"callLegId": "c1"}});
        assert_eq!(
            post(addr, "/", by_subject.to_string().into_bytes()).await,
            200
        );
        assert_eq!(post(addr, "/", b"not json".to_vec()).await, 200);
        assert_eq!(post(addr, "/", b"[1,2]".to_vec()).await, 200);
        assert_eq!(post(addr, "/", b"{\"data\":{}}".to_vec()).await, 200);
        assert_eq!(rx.events_for("c1").len(), 1);
        let rest = rx.unattributed();
        assert_eq!(rest.len(), 3);
        assert!(rest.iter().all(|r| r.error.is_some()));
        assert!(rest[0].body.is_null());
    }

    #[tokio::test]
    async fn bounds_body_size_events_and_methods() {
        let rx = Receiver::start(ReceiverConfig {
            max_body_bytes: 1024,
            max_events: 3,
            ..ReceiverConfig::default()
        })
        .await
        .unwrap();
        let addr = rx.local_addr();
        assert_eq!(post(addr, "/", vec![b' '; 4096]).await, 413);
        let get = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(get.status().as_u16(), 405);
        for (i, id) in ["x", "y", "x", "z", "y"].iter().enumerate() {
            let state = format!("S{i}");
            assert_eq!(
                post(addr, "/", event(id, &state).to_string().into_bytes()).await,
                200
            );
        }
        let stats = rx.stats();
        assert_eq!(stats.rejected_too_large, 1);
        assert_eq!(stats.rejected_other, 1);
        assert_eq!(stats.received, 5);
        assert_eq!(stats.dropped_over_capacity, 2);
        // The two oldest (x S0, y S1) went.
        assert_eq!(rx.events_for("x").len(), 1);
        assert_eq!(rx.events_for("x")[0].body["data"]["CallState"], "S2");
        assert_eq!(rx.events_for("y")[0].body["data"]["CallState"], "S4");
        rx.forget("x");
        assert!(rx.events_for("x").is_empty());
        // After forget, capacity is free again and nothing of z or y is dropped.
        assert_eq!(
            post(addr, "/", event("w", "S5").to_string().into_bytes()).await,
            200
        );
        assert_eq!(rx.stats().dropped_over_capacity, 2);
        assert_eq!(rx.events_for("z").len(), 1);
    }

    #[tokio::test]
    async fn wait_for_gives_up_at_the_deadline() {
        let rx = Receiver::start(ReceiverConfig::default()).await.unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(rx.wait_for("nobody", soon, |_| true).await.is_none());
        // The wait's own entry is gone again.
        assert!(rx.handle.shared.lock().calls.is_empty());
    }

    #[tokio::test]
    async fn callback_uri_keeps_the_query_and_encodes_the_tag() {
        let rx = Receiver::start(ReceiverConfig {
            public_url: Some(url::Url::parse("https://tunnel.example/hooks?secret=k").unwrap()),
            ..ReceiverConfig::default()
        })
        .await
        .unwrap();
        assert_eq!(
            rx.callback_uri("call 1/x"),
            "https://tunnel.example/hooks/call%201%2Fx?secret=k"
        );
        let local = Receiver::start(ReceiverConfig::default()).await.unwrap();
        assert_eq!(
            local.callback_uri("t"),
            format!("http://{}/t", local.local_addr())
        );
        let bad = Receiver::start(ReceiverConfig {
            public_url: Some(url::Url::parse("mailto:a@b.c").unwrap()),
            ..ReceiverConfig::default()
        })
        .await;
        assert!(bad.is_err());
    }
}
