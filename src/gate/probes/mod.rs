//! The probe families: each module sends one kind of request and judges the replies
//! under its check(s). The engine starts every family listed in its `FAMILIES`; the
//! valid cases (drawn from a stream, then shrunk) are driven by the engine itself.
//!
//! To add a family: a module here exposing `pub(crate) const FAMILY: Family` (with
//! `once` for probes that run once per run, `per_endpoint` for those that run for
//! every gated endpoint), a line in the engine's `FAMILIES`, and, if it judges a new
//! property, its column in [`super::checks::Check::ALL`].

pub(crate) mod auth;
pub(crate) mod edge;
pub(crate) mod invalid;
pub(crate) mod lifecycle;
pub(crate) mod routing;
pub(crate) mod valid;

use super::engine::Ctx;
use crate::contract::Endpoint;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What the set-up made for the probes to share.
#[derive(Debug, Default)]
pub(crate) struct Fixtures {
    /// Live calls cases that leave their call live share (created by the first wave).
    pub pool: Vec<String>,
    /// A call created and hung up, if that worked: every operation on it is a 404.
    pub dead_call: Option<String>,
}

/// A probe family's work, spawned on the run's task set.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Starts a family's probes that run once per run.
pub(crate) type Once = fn(Ctx, Arc<Fixtures>) -> Task;

/// Starts a family's probes for one endpoint.
pub(crate) type PerEndpoint = fn(Ctx, Arc<Fixtures>, Endpoint) -> Task;

/// One probe family: what it runs once per run and what it runs per gated endpoint.
pub(crate) struct Family {
    /// The family's probes that run once per run.
    pub once: Option<Once>,
    /// The family's probes for one endpoint; started for every gated endpoint.
    pub per_endpoint: Option<PerEndpoint>,
}
