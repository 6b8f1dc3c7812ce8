//! acs-harness: contract tests, a stateful double and load runs for the Azure
//! Communication Services Call Automation API (2021 preview), from one contract.
//!
//! Most users run the `acs-harness` binary. As a library the crate offers the pieces a
//! Rust test suite needs to test an app or a service against the same contract:
//!
//! | Item | What it is for |
//! |---|---|
//! | [`Double`], [`DoubleConfig`] | the stateful fake service on a loopback port, for in-process tests of an app |
//! | [`Server`], [`RunningServer`] | the same double on a plain hyper server that keeps nothing per request (long runs, `acs-harness serve`) |
//! | [`run_gate`], [`GateConfig`] | the contract gate: checks a target and returns a [`gate::Report`] |
//! | [`Endpoint`], [`validate_request`], [`validate_response`] | the contract as data and its request/response rules ([`contract`]) |
//! | [`contract::events::validate_event`], [`contract::events::EventType`] | the rules of the events a service POSTs to a `callbackUri` |
//! | [`generate::valid`], [`generate::invalid`] | proptest strategies for valid requests and for requests with one labelled defect |
//! | [`generate::events::valid_event`], [`generate::events::invalid_event`] | the same for events |
//! | [`Receiver`] | a loopback server that collects the events a target sends to a `callbackUri` |
//! | [`Signer`], [`ConnectionString`] | ACS access-key (HMAC-SHA256) request signing ([`auth`]) |
//! | [`Client`] | a signed, size-capped, deadline-bound HTTP client for a target |
//! | [`shape()`] | the stable shape of a response, to pin in a snapshot for any target |
//! | [`request_key`] | the name of an endpoint's requests in a load report's metrics |
//! | [`run_cli`] | the `acs-harness` command line itself |
//!
//! ```
//! use acs_harness::generate::{sample, valid};
//! use acs_harness::{AuthMode, Client, Double, DoubleConfig, Endpoint, validate_request};
//! use std::time::Duration;
//!
//! // A generated request is valid by the contract...
//! let req = &sample(&valid(Endpoint::CreateCall), 1, 1)[0];
//! let (ct, body) = (req.content_type.as_deref(), req.body.as_deref());
//! assert!(validate_request(Endpoint::CreateCall, ct, body.unwrap_or_default()).is_ok());
//!
//! // ...and the double, on a loopback port, creates the call.
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let double = Double::start(DoubleConfig::default()).await?;
//!     let signer = double.connection_string().signer();
//!     let client = Client::new(&double.uri(), "", None, signer, Duration::from_secs(10))?;
//!     let reply = client.send("POST", "/calls", ct, body, AuthMode::Signed).await?;
//!     assert_eq!(reply.status, 200);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod auth;
pub(crate) mod cli;
mod client;
pub mod contract;
pub mod double;
pub(crate) mod duration;
pub mod gate;
pub mod generate;
pub(crate) mod load;
pub(crate) mod output;
pub mod receiver;
pub(crate) mod redact;
pub(crate) mod send;
mod shape;
pub(crate) mod slots;

pub use auth::{ConnectionString, Signer};
pub use client::{AuthMode, Client, ClientError, Reply};
pub use contract::{Endpoint, validate_request, validate_response};
pub use double::{Double, DoubleConfig, RunningServer, Server};
pub use gate::{GateConfig, run_gate};
pub use load::attack::request_key;
pub use receiver::Receiver;
pub use shape::{shape, value_shape};

/// Runs the `acs-harness` command line on the process's arguments: parses them, sets
/// up the log and runs the command. Exit code 1 means the target deviated from the
/// contract (or a load threshold was breached), 2 anything else that went wrong.
///
/// This is all `main` of the binary does; it is public so a wrapper binary can embed
/// the harness unchanged.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     acs_harness::run_cli()
/// }
/// ```
pub fn run_cli() -> std::process::ExitCode {
    use clap::Parser as _;
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli.command);
    cli::run(cli)
}
