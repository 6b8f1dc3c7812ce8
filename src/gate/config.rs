//! What a gate run is given: the target, its key, and the options of the run.

use super::engine::DEFAULT_MAX_RUN_TIME;
use crate::auth::Signer;
use crate::contract::Endpoint;
use std::time::Duration;

/// Everything a gate run needs, already validated (the CLI builds it from its options).
/// [`GateConfig::new`] gives the CLI's defaults; set the public fields to narrow a run
/// (fewer cases, some endpoints, a shorter budget).
///
/// ```
/// use acs_harness::{ConnectionString, Endpoint, GateConfig};
/// use std::time::Duration;
///
/// let cs: ConnectionString =
///     "endpoint=https://res.communication.azure.com/;accesskey=c2VjcmV0".parse()?;
/// let mut config = GateConfig::new(cs.endpoint.as_str(), cs.signer());
/// assert_eq!(config.cases, 100);
/// assert_eq!(config.endpoints, Endpoint::ALL);
/// config.cases = 10;
/// config.endpoints = vec![Endpoint::CreateCall, Endpoint::Hangup];
/// config.max_run_time = Duration::from_secs(60);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Base URL of the target (`http://127.0.0.1:PORT`).
    pub target: String,
    /// Signs requests with the target's access key.
    pub signer: Signer,
    /// Path prefix before `/calls`.
    pub prefix: String,
    /// `api-version` query parameter, if any.
    pub api_version: Option<String>,
    /// Valid generated cases per endpoint.
    pub cases: u32,
    /// Seed of every generated case.
    pub seed: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// A connect that has not completed by then makes the target unreachable.
    pub connect_timeout: Duration,
    /// The whole run (set-up, cases, shrinking) stops after this long; what did not run
    /// is reported as not run and the run as stopped by its budget.
    pub max_run_time: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// The endpoints gated (all by default).
    pub endpoints: Vec<Endpoint>,
    /// Whether the target is the embedded double (reports say so).
    pub embedded: bool,
    /// The command line that replays the run, for reports.
    pub replay: String,
    /// Stop on Ctrl-C or SIGTERM and report what was found (the CLI sets it; tests do not).
    pub handle_ctrl_c: bool,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// How long the `events` check waits for each expected event.
    pub event_timeout: Duration,
    /// Public URL the target sends events to (a tunnel or ingress); for remote targets.
    pub callback_url: Option<url::Url>,
    /// Where the event receiver listens (what `callback_url` forwards to).
    pub callback_listen: Option<std::net::SocketAddr>,
}

impl GateConfig {
    /// A configuration with the defaults of the CLI for `target`.
    pub fn new(target: impl Into<String>, signer: Signer) -> GateConfig {
        GateConfig {
            target: target.into(),
            signer,
            prefix: String::new(),
            api_version: None,
            cases: 100,
            seed: 0,
            timeout: Duration::from_secs(10),
            connect_timeout: crate::client::DEFAULT_CONNECT_TIMEOUT,
            max_run_time: DEFAULT_MAX_RUN_TIME,
            concurrency: 8,
            endpoints: Endpoint::ALL.to_vec(),
            embedded: false,
            replay: String::new(),
            handle_ctrl_c: false,
            progress: false,
            event_timeout: super::events::DEFAULT_EVENT_TIMEOUT,
            callback_url: None,
            callback_listen: None,
        }
    }
}
