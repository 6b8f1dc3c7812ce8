//! `acs-harness serve`: the double's [`Handler`] behind a plain hyper 1 server.
//!
//! Unlike wiremock, this transport keeps nothing per request (a body is read with a
//! limit, handled, dropped), so a load run of millions of requests keeps a flat memory.
//! It is also meant to run for hours next to an app, so no client can starve it: the
//! head is authenticated before a byte of the body is read, the body must arrive
//! within a deadline, connections are bounded, and running out of descriptors slows
//! accepting down instead of flooding the log.

use super::{DoubleConfig, DoubleError, DoubleRequest, DoubleResponse, Handler};
use crate::auth::{AccessKey, ConnectionString};
use crate::slots::{Slot, Slots, counted};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Digest as _;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// Largest body the transport reads: the contract's 1 MiB. A body declared or found
/// larger is not read further; the handler answers from the headers alone (401, 404,
/// 405 or 413) and the connection closes, so memory stays bounded per connection.
pub const TRANSPORT_BODY_LIMIT: usize = crate::contract::MAX_BODY_BYTES;

/// Connections served at once when the descriptor limit leaves room for them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Descriptors kept free besides connections: listener, runtime, stdio, log files.
const RESERVED_DESCRIPTORS: u64 = 64;

/// How long a client may take to send its request head before the connection closes
/// (also how long an idle keep-alive connection is kept).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one line per this interval about the connection limit or failed accepts.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after a failed accept (e.g. out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The keep-alive connection bound when none is configured: 1024, or fewer when the
/// soft descriptor limit (`ulimit -n`) would run out first, reserve included.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        });
    match soft {
        Some(soft) => {
            // The single-request reserve (a quarter of the bound, crate::slots) must
            // fit in the descriptors too.
            let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(16) * 4 / 5;
            usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(DEFAULT_MAX_CONNECTIONS)
        }
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// Lets one log line through per interval and counts the ones held back.
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn new() -> Self {
        Throttle {
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

fn held_note(held: u64, what: &str) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more {what} since the last line)")
    }
}

/// A connection's share of the open-connection count.
struct Open(Arc<watch::Sender<usize>>);

impl Open {
    fn new(open: Arc<watch::Sender<usize>>) -> Self {
        open.send_modify(|n| *n += 1);
        Open(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The double bound to its socket but not yet serving: read the address, then
/// [`run`](Server::run) it until a shutdown future completes, or [`spawn`](Server::spawn)
/// it in the background. Unlike [`Double`](crate::Double) it keeps nothing per request,
/// so it suits long load runs (`acs-harness serve` uses it).
///
/// ```
/// use acs_harness::{AuthMode, Client, DoubleConfig, Server};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let server = Server::bind(DoubleConfig::default()).await?; // 127.0.0.1, a free port
/// assert_eq!(server.local_addr().ip().to_string(), "127.0.0.1");
/// let running = server.spawn();
/// let signer = running.connection_string().signer();
/// let client = Client::new(running.uri(), "", None, signer, Duration::from_secs(10))?;
/// // Hanging up a call that does not exist is the contract's 404.
/// let reply = client.send("POST", "/calls/nope/Hangup", None, None, AuthMode::Signed).await?;
/// assert_eq!(reply.status, 404);
/// running.stop().await?; // drains open connections
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    handler: Arc<Handler>,
    key: AccessKey,
    body_timeout: Duration,
    max_connections: usize,
    open: Arc<watch::Sender<usize>>,
    control: Option<super::control::ControlServer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds 127.0.0.1:`config.port` (0: any free port). Call inside a tokio runtime.
    pub async fn bind(config: DoubleConfig) -> Result<Server, DoubleError> {
        if config.body_timeout.is_zero() {
            return Err(DoubleError::Config(
                "body timeout must be more than 0".into(),
            ));
        }
        if config.max_connections == Some(0) {
            return Err(DoubleError::Config(
                "max connections must be at least 1".into(),
            ));
        }
        let handler = Arc::new(Handler::new(&config)?);
        let std_listener = super::bind_loopback(config.port)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let control = match config.control_port {
            Some(port) => Some(super::control::ControlServer::spawn(port, handler.clone())?),
            None => None,
        };
        Ok(Server {
            control,
            listener,
            addr,
            handler,
            key: config.access_key,
            body_timeout: config.body_timeout,
            max_connections: config
                .max_connections
                .unwrap_or_else(default_max_connections),
            open: Arc::new(watch::channel(0).0),
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The connection string that signs for this server.
    pub fn connection_string(&self) -> ConnectionString {
        super::connection_string_for(self.addr, &self.key)
    }

    /// The handler, for counters and state inspection.
    pub fn handler(&self) -> Arc<Handler> {
        self.handler.clone()
    }

    /// The control API's base URL, when `control_port` was set.
    pub fn control_uri(&self) -> Option<String> {
        self.control.as_ref().map(|c| c.uri())
    }

    /// The bound on connections served at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The number of connections open now, updated as they open and close.
    pub fn open_connections(&self) -> watch::Receiver<usize> {
        self.open.subscribe()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (up to 5 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DoubleError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let slots = Slots::new(self.max_connections);
        let mut limit_log = Throttle::new();
        let mut accept_log = Throttle::new();
        tokio::pin!(shutdown);
        loop {
            // Reap finished connections so the set does not grow with their number.
            while connections.try_join_next().is_some() {}
            let slot = match slots.try_acquire() {
                Some(slot) => slot,
                None => {
                    // Further clients wait in the kernel's listen queue: nothing is
                    // accepted that could not be served, and no descriptor is spent.
                    if let Some(held) = limit_log.ready() {
                        tracing::warn!(
                            "connection limit reached: {} keep-alive connections and {} \
                             single-request ones open (--max-connections); new connections \
                             wait until one closes{}",
                            self.max_connections,
                            slots.single(),
                            held_note(held, "times")
                        );
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        slot = slots.acquire() => match slot {
                            Some(slot) => slot,
                            None => break,
                        },
                    }
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Latency matters more than packet count for small answers.
                        let _ = stream.set_nodelay(true);
                        let open = Open::new(self.open.clone());
                        connections.spawn(connection(
                            stream,
                            self.handler.clone(),
                            self.body_timeout,
                            stop_rx.clone(),
                            (slot, open),
                        ));
                    }
                    Err(e) => {
                        // E.g. out of descriptors (EMFILE): the pending connection stays
                        // queued; back off instead of spinning, and say so once a while.
                        if let Some(held) = accept_log.ready() {
                            tracing::warn!(
                                "accept failed: {e}; retrying every {}ms{}",
                                ACCEPT_BACKOFF.as_millis(),
                                held_note(held, "failures")
                            );
                        }
                        drop(slot);
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                },
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
        // Events end with the double; the control API stops when `self` drops here.
        self.handler.shutdown_events();
        Ok(())
    }

    /// Serves in a background task until [`RunningServer::stop`] or drop.
    pub fn spawn(self) -> RunningServer {
        let (tx, rx) = oneshot::channel::<()>();
        let uri = self.uri();
        let control_uri = self.control_uri();
        let connection_string = self.connection_string();
        let handler = self.handler();
        let open = self.open_connections();
        let task = tokio::spawn(self.run(async {
            let _ = rx.await;
        }));
        RunningServer {
            uri,
            control_uri,
            connection_string,
            handler,
            open,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

/// A server serving in the background (see [`Server::spawn`]); stops when dropped.
pub struct RunningServer {
    uri: String,
    control_uri: Option<String>,
    connection_string: ConnectionString,
    handler: Arc<Handler>,
    open: watch::Receiver<usize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), DoubleError>>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The connection string that signs for this server.
    pub fn connection_string(&self) -> ConnectionString {
        self.connection_string.clone()
    }

    /// The control API's base URL, when `control_port` was set.
    pub fn control_uri(&self) -> Option<&str> {
        self.control_uri.as_deref()
    }

    /// The handler, for counters and state inspection.
    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    /// The number of connections open now, updated as they open and close (tests wait
    /// on it instead of sleeping).
    pub fn open_connections(&self) -> watch::Receiver<usize> {
        self.open.clone()
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) -> Result<(), DoubleError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| DoubleError::Io(std::io::Error::other(e)))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    handler: Arc<Handler>,
    body_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    (slot, open): (Slot, Open),
) {
    let service = counted(slot.busy(), move |req| {
        respond(handler.clone(), body_timeout, req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(slot.keep_alive())
        .serve_connection(TokioIo::new(ErrorBodies::new(stream)), service_fn(service));
    let stopped = async move {
        let _ = stop.changed().await;
    };
    slot.drive(conn, stopped).await;
    drop(open);
}

/// An authenticated body declared at most this large past the limit is read and dropped
/// before its 413 (a "lingering close"): a client still writing it would otherwise meet
/// a reset instead of the answer, and report no answer at all.
const LINGER_BYTES: u64 = 2 * TRANSPORT_BODY_LIMIT as u64;

/// How long a lingering read may take at most.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads and drops `body`, bounded by [`LINGER_BYTES`] and [`LINGER_TIMEOUT`].
async fn linger(mut body: Incoming) {
    let mut read = 0u64;
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Why a body was not read whole.
enum BodyError {
    /// More than the limit arrived.
    TooLarge,
    /// The client broke off or garbled the framing.
    Broken,
}

/// Reads a body of at most `limit` bytes, hashing it on the way; returns it and
/// whether its base64 SHA-256 is `declared`.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    declared: Option<&str>,
) -> Result<(Bytes, bool), BodyError> {
    let hint = hyper::body::Body::size_hint(&body).lower();
    let mut hasher = sha2::Sha256::new();
    let mut buf = BytesMut::new();
    let mut single: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue; // trailers: not part of the hash
        };
        if buf.len() + single.as_ref().map_or(0, Bytes::len) + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        hasher.update(&data);
        // The usual body is one frame: keep it as is rather than copy it.
        match single.take() {
            None if buf.is_empty() => single = Some(data),
            first => {
                if buf.is_empty() {
                    buf.reserve(usize::try_from(hint).unwrap_or(limit).min(limit));
                }
                if let Some(first) = first {
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    let bytes = single.unwrap_or_else(|| buf.freeze());
    let hash = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        hasher.finalize(),
    );
    Ok((bytes, declared == Some(hash.as_str())))
}

async fn respond(
    handler: Arc<Handler>,
    body_timeout: Duration,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let path_and_query = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_string(),
        None => parts.uri.to_string(),
    };
    let mut req = DoubleRequest {
        method: parts.method.as_str().to_string(),
        path_and_query,
        headers: parts.headers,
        body: Bytes::new(),
    };
    // A declared length beyond the limit is refused before reading a byte of it; the
    // handler still checks authentication and routing first (on the headers alone).
    let declared_len = hyper::body::Body::size_hint(&body).lower();
    if declared_len > TRANSPORT_BODY_LIMIT as u64 {
        let resp = handler.handle_unread_body(&req, TRANSPORT_BODY_LIMIT);
        if resp.status == 413 && declared_len <= LINGER_BYTES {
            linger(body).await;
        }
        return Ok(closing(to_hyper(resp)));
    }
    // The head says whether the body is worth reading: no Host, no valid signature
    // over the declared hash, no read. The client learns nothing more, at no cost.
    if let Some(resp) = handler.check_head(&req) {
        let unread = !hyper::body::Body::is_end_stream(&body);
        let resp = to_hyper(delayed(resp).await);
        return Ok(if unread { closing(resp) } else { resp });
    }
    let declared = req.header_str("x-ms-content-sha256").map(str::to_string);
    let mut reading = std::pin::pin!(read_body(body, TRANSPORT_BODY_LIMIT, declared.as_deref()));
    // A small body has usually arrived with the head: a first poll reads it without
    // arming a timer, which would cost every request a trip through the timer wheel.
    let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout(body_timeout, reading).await,
    };
    let resp = match read {
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {:?} (--body-timeout); the connection is closed",
                body_timeout
            );
            return Ok(closing(to_hyper(DoubleResponse::error(
                408,
                "RequestTimeout",
                &message,
            ))));
        }
        Ok(Err(BodyError::TooLarge)) => {
            let resp = handler.handle_unread_body(&req, TRANSPORT_BODY_LIMIT);
            return Ok(closing(to_hyper(resp)));
        }
        Ok(Err(BodyError::Broken)) => {
            // The client broke off or garbled the framing: nothing to authenticate.
            return Ok(closing(to_hyper(DoubleResponse::error(
                400,
                "BadRequest",
                "the request body could not be read",
            ))));
        }
        Ok(Ok((body, hash_matches))) => {
            req.body = body;
            if hash_matches {
                handler.handle_verified(&req)
            } else {
                // Verified in full, which answers 401 naming the hash mismatch.
                handler.handle(&req)
            }
        }
    };
    drop(req);
    Ok(to_hyper(delayed(resp).await))
}

/// Waits out the response's injected latency.
async fn delayed(resp: DoubleResponse) -> DoubleResponse {
    if !resp.delay.is_zero() {
        tokio::time::sleep(resp.delay).await;
    }
    resp
}

fn to_hyper(resp: DoubleResponse) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(resp.body));
    // Only a tamper hook can produce an invalid status or header; answer rather than panic.
    *out.status_mut() = hyper::StatusCode::from_u16(resp.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    out
}

/// Marks an answer given before the body was read whole: the connection closes after
/// it, since what remains of the body cannot be told from a next request.
fn closing(mut resp: hyper::Response<Full<Bytes>>) -> hyper::Response<Full<Bytes>> {
    resp.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The connection's stream, with the contract's error body added to the answers hyper
/// writes on its own for a request it cannot parse (400 malformed, 414 URI too long,
/// 431 head too large): those come as a bare head `content-length: 0` and `date`,
/// before the connection closes. Everything else passes through untouched.
struct ErrorBodies<S> {
    inner: S,
    pending: Vec<u8>,
    written: usize,
}

impl<S> ErrorBodies<S> {
    fn new(inner: S) -> Self {
        ErrorBodies {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = with_error_body(buf) {
            this.pending = answer;
            // Taken whole; what the socket does not take now goes out on flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    // Unvectored, so hyper hands over each answer's head in one buffer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The answer hyper wrote itself (`head`, a whole bodiless 400, 414 or 431 head), with
/// the contract's JSON error body; `None` for anything else.
fn with_error_body(head: &[u8]) -> Option<Vec<u8>> {
    let (code, message) = match head.get(..13)? {
        b"HTTP/1.1 400 " => (
            "BadRequest",
            "the request is not valid HTTP/1.1 (malformed request line, header or framing); \
             it was not authenticated or routed",
        ),
        b"HTTP/1.1 414 " => (
            "UriTooLong",
            "the request target (path and query) is longer than this server accepts; \
             it was not authenticated or routed",
        ),
        b"HTTP/1.1 431 " => (
            "RequestHeaderFieldsTooLarge",
            "the request head is too large (too many or too long header fields); \
             it was not authenticated or routed",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            empty = true;
        } else if lower.starts_with("date: ") {
            kept.push(line);
        } else if lower == "connection: close" {
            // Hyper closes after its own answers; ours says so too, below.
        } else {
            // Another header: an answer of the handler's, not hyper's own.
            return None;
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

/// Create call's answer delay in the embedded double (`serve` defaults to 200ms).
pub const EMBEDDED_ANSWER_DELAY: Duration = Duration::from_millis(20);
/// How long a play runs in the embedded double (`serve` defaults to 1s).
pub const EMBEDDED_PLAY_DURATION: Duration = Duration::from_millis(100);

/// The embedded double `contract` and `load` run against when no target is given:
/// the hyper server (which retains nothing per request) on a free loopback port, with
/// the run's prefix and api-version. Dropping it stops it.
pub async fn start_embedded(
    prefix: &str,
    api_version: Option<&str>,
) -> Result<RunningServer, DoubleError> {
    let mut config = DoubleConfig::default().prefix(crate::client::normalise_prefix(prefix));
    config.events.callback_hosts = super::events::CallbackHosts::Exactly(vec!["127.0.0.1".into()]);
    // Short but not zero: the events check still sees Establishing before Established
    // and a play that runs, without the gate's default run waiting a second per play.
    config.events.answer_delay = EMBEDDED_ANSWER_DELAY;
    config.events.play_duration = EMBEDDED_PLAY_DURATION;
    if let Some(v) = api_version {
        config = config.api_version(v);
    }
    Ok(Server::bind(config).await?.spawn())
}

/// Runs the double of `acs-harness serve` on its own tokio runtime until Ctrl-C or
/// SIGTERM.
pub fn run(config: DoubleConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(config))
}

/// Like [`run`], for callers already inside a tokio runtime.
pub async fn run_async(config: DoubleConfig) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    // The documented exception to "never print a key": the key the user chose or the
    // public development key, so clients can connect. One write: a reader that stops
    // after the lines it needs (`| head -2`) must not stop the double.
    let mut banner = format!(
        "listening on {}\nconnection string: {}\n",
        server.uri(),
        server.connection_string().expose()
    );
    if let Some(control) = server.control_uri() {
        banner.push_str(&format!("control: {control}\n"));
    }
    {
        let mut out = std::io::stdout().lock();
        match out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

pub use crate::output::shutdown_signal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let mut t = Throttle::new();
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        t.last = t.last.and_then(|l| l.checked_sub(LOG_INTERVAL));
        assert_eq!(t.ready(), Some(2));
    }

    #[test]
    fn hypers_own_error_answers_get_the_error_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 11:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(with_error_body(head).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("date: Wed"), "{head}");
        assert_eq!(head.matches("connection: close").count(), 1, "{head}");
        crate::contract::validate_error_body(Some("application/json"), body.as_bytes()).unwrap();
        // The handler's answers carry other headers (or a body) and pass untouched.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(with_error_body(other).is_none());
        }
    }
}
