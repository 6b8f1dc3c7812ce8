//! `acs-harness serve`: the double's [`Handler`] behind a plain hyper 1 server.
//!
//! Unlike wiremock, this transport keeps nothing per request (a body is read with a
//! limit, handled, dropped), so a load run of millions of requests keeps a flat memory.

use super::{DEFAULT_MAX_CALLS, DoubleConfig, DoubleError, DoubleRequest, DoubleResponse, Handler};
use crate::auth::{AccessKey, ConnectionString};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// Largest body the transport reads (16 MiB). The handler answers 413 above 1 MiB after
/// authentication; beyond this the transport stops reading and the handler answers from
/// the headers alone (401, 404, 405 or 413), so memory stays bounded.
pub const TRANSPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How long a client may take to send its request head before the connection closes.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The double bound to its socket but not yet serving: read the address, then [`run`](Server::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    handler: Arc<Handler>,
    key: AccessKey,
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
        let handler = Arc::new(Handler::new(&config)?);
        let std_listener = super::bind_loopback(config.port)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        Ok(Server {
            listener,
            addr,
            handler,
            key: config.access_key,
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

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (up to 5 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DoubleError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Latency matters more than packet count for small answers.
                        let _ = stream.set_nodelay(true);
                        connections.spawn(connection(stream, self.handler.clone(), stop_rx.clone()));
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
            // Reap finished connections so the set does not grow with their number.
            while connections.try_join_next().is_some() {}
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
        Ok(())
    }

    /// Serves in a background task until [`RunningServer::stop`] or drop.
    pub fn spawn(self) -> RunningServer {
        let (tx, rx) = oneshot::channel::<()>();
        let uri = self.uri();
        let connection_string = self.connection_string();
        let handler = self.handler();
        let task = tokio::spawn(self.run(async {
            let _ = rx.await;
        }));
        RunningServer {
            uri,
            connection_string,
            handler,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

/// A server serving in the background (see [`Server::spawn`]); stops when dropped.
pub struct RunningServer {
    uri: String,
    connection_string: ConnectionString,
    handler: Arc<Handler>,
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

    /// The handler, for counters and state inspection.
    pub fn handler(&self) -> &Handler {
        &self.handler
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

/// Binds and serves `config` until `shutdown` completes.
pub async fn serve(
    config: DoubleConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DoubleError> {
    Server::bind(config).await?.run(shutdown).await
}

async fn connection(
    stream: tokio::net::TcpStream,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| respond(handler.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

async fn respond(
    handler: Arc<Handler>,
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
    if hyper::body::Body::size_hint(&body).lower() > TRANSPORT_BODY_LIMIT as u64 {
        return Ok(to_hyper(
            handler.handle_unread_body(&req, TRANSPORT_BODY_LIMIT),
        ));
    }
    req.body = match Limited::new(body, TRANSPORT_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(to_hyper(
                handler.handle_unread_body(&req, TRANSPORT_BODY_LIMIT),
            ));
        }
        Err(_) => {
            // The client broke off or garbled the framing: nothing to authenticate.
            return Ok(to_hyper(DoubleResponse::error(
                400,
                "BadRequest",
                "the request body could not be read",
            )));
        }
    };
    let resp = handler.handle(&req);
    drop(req);
    if !resp.delay.is_zero() {
        tokio::time::sleep(resp.delay).await;
    }
    Ok(to_hyper(resp))
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

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// Options of `acs-harness serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Prints `listening on http://127.0.0.1:PORT` and `connection string: ...` as soon as it
accepts connections; point an app or `acs-harness contract --target` at them.

Examples:
  acs-harness serve --port 0
  acs-harness serve --port 8080 --prefix /calling --fail-rate 0.01 --seed 7 --latency 20ms")]
pub struct ServeArgs {
    /// Port on 127.0.0.1 to listen on (0: any free port; the real one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Base64 access key requests must be signed with [default: the documented
    /// development key, printed in the connection string at start].
    #[arg(long, env = "ACS_HARNESS_ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,
    /// Path prefix before `/calls`, e.g. `/calling`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Require this `api-version` query parameter on every request (400 without).
    #[arg(long)]
    pub api_version: Option<String>,
    /// Share (0..1) of otherwise-good requests answered 500 with the error body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
    /// Latency added to every answer, e.g. `20ms`.
    #[arg(long, default_value = "0", value_parser = crate::duration::parse)]
    pub latency: Duration,
    /// Up to this much extra latency per answer, drawn uniformly, e.g. `10ms`.
    #[arg(long, default_value = "0", value_parser = crate::duration::parse)]
    pub latency_jitter: Duration,
    /// Seed of the fault and jitter draws (the same seed fails the same requests).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Live calls held at most; creating beyond it evicts the oldest call.
    #[arg(long, default_value_t = DEFAULT_MAX_CALLS)]
    pub max_calls: usize,
}

impl ServeArgs {
    /// The double configuration these options describe.
    pub fn config(&self) -> anyhow::Result<DoubleConfig> {
        let mut config = DoubleConfig::default()
            .port(self.port)
            .prefix(self.prefix.clone())
            .fail_rate(self.fail_rate)
            .latency(self.latency)
            .latency_jitter(self.latency_jitter)
            .seed(self.seed)
            .max_calls(self.max_calls);
        config.api_version = self.api_version.clone();
        if let Some(key) = &self.access_key {
            // The error names the option, never echoes the value (it is a secret).
            config.access_key = AccessKey::from_base64(key)
                .map_err(|_| anyhow::anyhow!("--access-key is not a base64 access key"))?;
        }
        Ok(config)
    }
}

/// Runs `acs-harness serve` on its own tokio runtime until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

/// Like [`run`], for callers already inside a tokio runtime.
pub async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file or pipe gets plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
    let server = Server::bind(args.config()?).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.uri())?;
        // The documented exception to "never print a key": the key the user chose or
        // the public development key, so clients can connect.
        writeln!(
            out,
            "connection string: {}",
            server.connection_string().expose()
        )?;
        out.flush()?;
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
    fn rates() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err() && parse_rate("x").is_err());
    }
}
