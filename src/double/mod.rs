//! The double: a stateful fake of the Call Automation service that enforces src/contract/CONTRACT.md.
//!
//! All behaviour lives in the transport-free [`Handler`]. [`Double`] mounts it on a
//! wiremock `MockServer` for in-process tests (where requests are few: wiremock keeps a
//! clone of every request a mock matched); [`Server`] puts the same handler behind a
//! plain hyper server that retains nothing per request, for `acs-harness serve` and
//! long load runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), acs_harness::double::DoubleError> {
//! use acs_harness::double::{Double, DoubleConfig};
//! let double = Double::start(DoubleConfig::default().prefix("/calling")).await?;
//! let target = double.uri(); // http://127.0.0.1:PORT
//! let signer = double.connection_string().signer();
//! # let _ = (target, signer); Ok(()) }
//! ```

pub(crate) mod control;
pub mod events;
mod handler;
pub(crate) mod serve;

pub use events::{
    CallState, CallbackHosts, ControlError, Delivery, EventCounters, EventRecord, EventType,
    EventsConfig, RunningPlay,
};
pub use handler::{CallView, ClassCounts, Counters, DoubleRequest, DoubleResponse, Handler};
pub use serve::{RunningServer, Server};

use crate::auth::{AccessKey, ConnectionString};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The fixed development access key, base64 of `acs-harness development key, not a secret`.
/// It is public on purpose: the double is a local fake, and a fixed key lets app
/// developers keep one connection string across runs.
pub const DEV_ACCESS_KEY: &str = "YWNzLWhhcm5lc3MgZGV2ZWxvcG1lbnQga2V5LCBub3QgYSBzZWNyZXQ=";

/// Default bound on live calls; creating beyond it evicts the oldest call.
pub const DEFAULT_MAX_CALLS: usize = 100_000;

/// Default bound on participants per call; inviting beyond it evicts the oldest.
pub const DEFAULT_MAX_PARTICIPANTS: usize = 1_000;

/// Default bound on the estimated bytes of all calls and participants (256 MiB, fits a
/// laptop): beyond it the oldest calls are evicted.
pub const DEFAULT_MAX_STATE_BYTES: usize = 256 * 1024 * 1024;

/// The smallest `max_state_bytes` accepted: room for a call with a few participants.
pub const MIN_STATE_BYTES: usize = 4096;

/// The longest `latency` or `latency_jitter` accepted: beyond it an answer would outlive
/// any client's timeout, and an absurd value must not overflow when they are added.
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// Default deadline for a request's whole body once its head is read (`serve` only).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A test hook that may rewrite any response after the double produced it; the gate's
/// and snapshot tests use it to build "broken doubles" (drop `resultInfo`, answer 200
/// instead of 202, ...). Never set in production use of the double.
pub type Tamper = Arc<dyn Fn(&DoubleRequest, &mut DoubleResponse) + Send + Sync>;

/// The development key, decoded.
pub fn dev_key() -> AccessKey {
    // The constant is valid base64 of a non-empty string (checked by a unit test).
    AccessKey::from_base64(DEV_ACCESS_KEY)
        .unwrap_or_else(|_| unreachable!("DEV_ACCESS_KEY is valid base64"))
}

/// Why the double could not start.
///
/// The message includes the underlying I/O error, which is therefore not also exposed
/// as [`std::error::Error::source`]: a caller printing the chain (`{:#}` of anyhow)
/// would otherwise say it twice.
#[derive(Debug, thiserror::Error)]
pub enum DoubleError {
    /// An option is out of range.
    #[error("invalid double configuration: {0}")]
    Config(String),
    /// The listening socket could not be set up.
    #[error("cannot listen on 127.0.0.1:{port}: {cause}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// The cause.
        cause: std::io::Error,
    },
    /// Serving failed.
    #[error("the double's server failed: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for DoubleError {
    fn from(e: std::io::Error) -> Self {
        DoubleError::Io(e)
    }
}

/// How the double behaves: port, key, prefix, api-version, faults, latency, bounds.
/// Start from [`DoubleConfig::default`] (any free port, the [`DEV_ACCESS_KEY`], no
/// faults) and change what a test needs with the builder methods; out-of-range values
/// are refused when the double starts, with [`DoubleError::Config`].
///
/// ```
/// use acs_harness::{AuthMode, Client, Double, DoubleConfig, Endpoint};
/// use acs_harness::double::DoubleError;
/// use acs_harness::generate::{sample, valid};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A service behind a path prefix that fails every request: how does the app cope?
/// let config = DoubleConfig::default().prefix("/calling").fail_rate(1.0).seed(1);
/// let double = Double::start(config).await?;
/// let signer = double.connection_string().signer();
/// let client = Client::new(&double.uri(), "/calling", None, signer, Duration::from_secs(10))?;
/// let req = &sample(&valid(Endpoint::CreateCall), 1, 1)[0];
/// let ct = req.content_type.as_deref();
/// let reply = client.send("POST", "/calls", ct, req.body.as_deref(), AuthMode::Signed).await?;
/// assert_eq!(reply.status, 500);
///
/// // A share outside 0..=1 is a configuration error, not a panic.
/// let bad = Double::start(DoubleConfig::default().fail_rate(2.0)).await;
/// assert!(matches!(bad, Err(DoubleError::Config(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct DoubleConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The key requests must be signed with.
    pub access_key: AccessKey,
    /// Path prefix before `/calls` (e.g. `/calling`); empty for none.
    pub prefix: String,
    /// When set, requests without `api-version=<this>` in the query get 400.
    pub api_version: Option<String>,
    /// Share (0..=1) of otherwise-successful requests answered 500 instead.
    pub fail_rate: f64,
    /// Latency added to every answer.
    pub latency: Duration,
    /// Up to this much extra latency, uniformly drawn per answer.
    pub latency_jitter: Duration,
    /// Seed of the fault and jitter draws, for reproducible runs.
    pub seed: u64,
    /// Live calls held at most; the oldest is evicted beyond it.
    pub max_calls: usize,
    /// Participants per call held at most; the oldest is evicted beyond it.
    pub max_participants: usize,
    /// Estimated bytes of all calls and participants held at most; the oldest call is
    /// evicted beyond it.
    pub max_state_bytes: usize,
    /// How long a client may take to send a request's whole body once its head is
    /// read; the connection closes after (`serve` only).
    pub body_timeout: Duration,
    /// Keep-alive connections served at once; a quarter as many more are answered once
    /// and closed, beyond those new connections wait in the listen queue while idle ones
    /// are closed (`serve` only; `None`: derived from the descriptor limit, at most 1024).
    pub max_connections: Option<usize>,
    /// Keep wiremock's request recording on ([`Double::received_requests`]); off by
    /// default because it grows without bound. Ignored by [`Server`].
    pub record_requests: bool,
    /// A fixed clock for signature dates (`None`: the system clock).
    pub clock: Option<SystemTime>,
    /// Test hook applied to every response; see [`Tamper`].
    pub tamper: Option<Tamper>,
    /// Events to the calls' `callbackUri`s: on/off, timing, allowed hosts, bounds.
    pub events: EventsConfig,
    /// Port of the control API on 127.0.0.1 (0: any free port; `None`: no control
    /// API server, the same operations stay methods of the double).
    pub control_port: Option<u16>,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            port: 0,
            access_key: dev_key(),
            prefix: String::new(),
            api_version: None,
            fail_rate: 0.0,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            seed: 0,
            max_calls: DEFAULT_MAX_CALLS,
            max_participants: DEFAULT_MAX_PARTICIPANTS,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: None,
            record_requests: false,
            clock: None,
            tamper: None,
            events: EventsConfig::default(),
            control_port: None,
        }
    }
}

impl std::fmt::Debug for DoubleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleConfig")
            .field("port", &self.port)
            .field("access_key", &self.access_key)
            .field("prefix", &self.prefix)
            .field("api_version", &self.api_version)
            .field("fail_rate", &self.fail_rate)
            .field("latency", &self.latency)
            .field("latency_jitter", &self.latency_jitter)
            .field("seed", &self.seed)
            .field("max_calls", &self.max_calls)
            .field("max_participants", &self.max_participants)
            .field("max_state_bytes", &self.max_state_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .field("record_requests", &self.record_requests)
            .field("clock", &self.clock)
            .field("tamper", &self.tamper.as_ref().map(|_| "<hook>"))
            .field("events", &self.events)
            .field("control_port", &self.control_port)
            .finish()
    }
}

impl DoubleConfig {
    /// Sets the port (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets the access key.
    pub fn access_key(mut self, key: AccessKey) -> Self {
        self.access_key = key;
        self
    }
    /// Sets the path prefix (e.g. `/calling`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Requires `api-version=<version>` on every request.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }
    /// Sets the share of otherwise-good requests answered 500.
    pub fn fail_rate(mut self, rate: f64) -> Self {
        self.fail_rate = rate;
        self
    }
    /// Sets the added latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// Sets the latency jitter.
    pub fn latency_jitter(mut self, jitter: Duration) -> Self {
        self.latency_jitter = jitter;
        self
    }
    /// Sets the seed of fault and jitter draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the bound on live calls.
    pub fn max_calls(mut self, n: usize) -> Self {
        self.max_calls = n;
        self
    }
    /// Sets the bound on participants per call.
    pub fn max_participants(mut self, n: usize) -> Self {
        self.max_participants = n;
        self
    }
    /// Sets the bound on the estimated bytes of all calls and participants.
    pub fn max_state_bytes(mut self, n: usize) -> Self {
        self.max_state_bytes = n;
        self
    }
    /// Sets the deadline for a request's whole body (`serve` only).
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }
    /// Sets the bound on connections served at once (`serve` only).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }
    /// Turns wiremock's request recording on (tests that inspect requests only).
    pub fn record_requests(mut self, on: bool) -> Self {
        self.record_requests = on;
        self
    }
    /// Fixes the clock signatures are checked against.
    pub fn clock(mut self, t: SystemTime) -> Self {
        self.clock = Some(t);
        self
    }
    /// Sets the pause between `Establishing` and `Established` after create call.
    pub fn answer_delay(mut self, d: Duration) -> Self {
        self.events.answer_delay = d;
        self
    }
    /// Sets how long a non-looping play audio plays before its `Completed` result.
    pub fn play_duration(mut self, d: Duration) -> Self {
        self.events.play_duration = d;
        self
    }
    /// Sets the hosts besides loopback events may be sent to.
    pub fn callback_hosts(mut self, hosts: CallbackHosts) -> Self {
        self.events.callback_hosts = hosts;
        self
    }
    /// Turns events on (the default) or off.
    pub fn events_enabled(mut self, on: bool) -> Self {
        self.events.enabled = on;
        self
    }
    /// Serves the control API on 127.0.0.1:`port` (0: any free port).
    pub fn control_port(mut self, port: u16) -> Self {
        self.control_port = Some(port);
        self
    }
    /// Installs a tamper hook (tests only; see [`Tamper`]).
    pub fn tamper(
        mut self,
        f: impl Fn(&DoubleRequest, &mut DoubleResponse) + Send + Sync + 'static,
    ) -> Self {
        self.tamper = Some(Arc::new(f));
        self
    }
}

/// Binds 127.0.0.1:`port` (0: any free port), for either transport.
pub(crate) fn bind_loopback(port: u16) -> Result<TcpListener, DoubleError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|cause| DoubleError::Bind { port, cause })?;
    listener
        .set_nonblocking(true)
        .map_err(|cause| DoubleError::Bind { port, cause })?;
    Ok(listener)
}

/// The connection string that signs for a double at `addr` with `key`.
pub(crate) fn connection_string_for(addr: SocketAddr, key: &AccessKey) -> ConnectionString {
    let endpoint = url::Url::parse(&format!("http://{addr}/"))
        .unwrap_or_else(|_| unreachable!("a socket address makes a valid URL"));
    ConnectionString::new(endpoint, key.clone())
}

/// The double on a wiremock `MockServer`, for in-process tests and snapshots.
/// Stops when dropped.
///
/// An app under test gets [`Double::uri`] as its endpoint and
/// [`Double::connection_string`] as its credentials; the double checks every request
/// against the contract and keeps calls and participants as the service would.
///
/// ```
/// use acs_harness::{AuthMode, Client, Double, DoubleConfig, Endpoint, validate_response};
/// use acs_harness::generate::{sample, valid};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let double = Double::start(DoubleConfig::default()).await?;
/// let signer = double.connection_string().signer();
/// let client = Client::new(&double.uri(), "", None, signer, Duration::from_secs(10))?;
///
/// // Create a call with a generated valid body; the answer follows the contract.
/// let req = &sample(&valid(Endpoint::CreateCall), 7, 1)[0];
/// let path = Endpoint::CreateCall.path("", None);
/// let ct = req.content_type.as_deref();
/// let reply = client.send("POST", &path, ct, req.body.as_deref(), AuthMode::Signed).await?;
/// assert_eq!(reply.status, 200);
/// let ct = reply.content_type.as_deref();
/// assert!(validate_response(Endpoint::CreateCall, 200, ct, &reply.body, None).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Double {
    server: wiremock::MockServer,
    handler: Arc<Handler>,
    key: AccessKey,
    control: Option<control::ControlServer>,
}

impl Drop for Double {
    fn drop(&mut self) {
        // The engine's timers and deliveries end with the double.
        self.handler.shutdown_events();
    }
}

impl std::fmt::Debug for Double {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Double")
            .field("uri", &self.server.uri())
            .finish_non_exhaustive()
    }
}

/// Adapts the handler to wiremock's `Respond`.
struct Responder(Arc<Handler>);

impl wiremock::Respond for Responder {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let url = &request.url;
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let req = DoubleRequest {
            method: request.method.as_str().to_string(),
            path_and_query,
            headers: request.headers.clone(),
            body: bytes::Bytes::copy_from_slice(&request.body),
        };
        to_template(self.0.handle(&req))
    }
}

fn to_template(resp: DoubleResponse) -> wiremock::ResponseTemplate {
    use hyper::header::{HeaderName, HeaderValue};
    // Only a tamper hook can produce an invalid status; answer 500 rather than panic.
    let status = hyper::StatusCode::from_u16(resp.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut t = wiremock::ResponseTemplate::new(status);
    let mut mime = String::new();
    for (name, value) in &resp.headers {
        if name.eq_ignore_ascii_case("content-type") {
            mime = value.clone();
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            t = t.append_header(n, v);
        }
    }
    if !resp.body.is_empty() || !mime.is_empty() {
        t = t.set_body_raw(resp.body.to_vec(), &mime);
    }
    if !resp.delay.is_zero() {
        t = t.set_delay(resp.delay);
    }
    t
}

impl Double {
    /// Starts the double on 127.0.0.1 (`config.port`, 0 for any free port).
    pub async fn start(config: DoubleConfig) -> Result<Double, DoubleError> {
        let handler = Arc::new(Handler::new(&config)?);
        let listener = bind_loopback(config.port)?;
        let mut builder = wiremock::MockServer::builder().listener(listener);
        if !config.record_requests {
            builder = builder.disable_request_recording();
        }
        let server = builder.start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(Responder(handler.clone()))
            .named("acs-harness double")
            .mount(&server)
            .await;
        let control = match config.control_port {
            Some(port) => Some(control::ControlServer::spawn(port, handler.clone())?),
            None => None,
        };
        Ok(Double {
            server,
            handler,
            key: config.access_key,
            control,
        })
    }

    /// The control API's base URL, `http://127.0.0.1:PORT`, when `control_port` was set.
    pub fn control_uri(&self) -> Option<String> {
        self.control.as_ref().map(|c| c.uri())
    }

    /// Simulates a participant pressing `tones`; see [`Handler::press_keys`].
    pub fn press_keys(&self, call_leg_id: &str, tones: &str) -> Result<usize, ControlError> {
        self.handler.press_keys(call_leg_id, tones)
    }

    /// The live calls (at most `limit`) and their number; see [`Handler::calls`].
    pub fn calls(&self, limit: usize) -> (usize, Vec<CallView>) {
        self.handler.calls(limit)
    }

    /// The recent events of a call with their delivery status; see [`Handler::events`].
    pub fn events(&self, call_leg_id: &str) -> Option<Vec<EventRecord>> {
        self.handler.events(call_leg_id)
    }

    /// The base URL, `http://127.0.0.1:PORT` (without the prefix).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        *self.server.address()
    }

    /// The connection string that signs for this double.
    pub fn connection_string(&self) -> ConnectionString {
        connection_string_for(self.address(), &self.key)
    }

    /// The handler, for counters and state inspection.
    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    /// The requests received, when `record_requests` was on.
    pub async fn received_requests(&self) -> Option<Vec<wiremock::Request>> {
        self.server.received_requests().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_key_is_documented_text() {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(DEV_ACCESS_KEY)
            .unwrap();
        assert_eq!(raw, b"acs-harness development key, not a secret");
        assert_eq!(dev_key().to_base64(), DEV_ACCESS_KEY);
    }
}
