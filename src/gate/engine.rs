//! The execution engine of the gate: sends requests under the concurrency limit, turns
//! what came back into an [`Outcome`], judges and records it, and runs the probe
//! families, the valid cases and shrinking until the run completes, is interrupted
//! (Ctrl-C or SIGTERM), spends its budget, or is aborted by the first wave.

use super::checks::{Check, Expect, Mismatch, describe_reply, error_shape, judge};
use super::config::GateConfig;
use super::probes::{self, Family, Fixtures};
use super::report::{Failure, Report, RunEnd};
use super::{cases::Case, progress, replay, setup, shrink};
use crate::client::{AuthMode, Client, ClientError, Reply};
use crate::contract::Endpoint;
use crate::redact;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The default budget of a whole run (`--max-run-time`). A default run against the
/// double takes seconds and against a real service well under a minute, so a run that
/// takes longer is stuck on a slow or trickling target: it is cut, and what did not run
/// is reported as not run, rather than left to take the CI job's own time limit.
pub const DEFAULT_MAX_RUN_TIME: Duration = Duration::from_secs(180);

/// The probe families, in the order their tasks start: each is one module under
/// `probes/`. Adding a family is a new module and one line here.
const FAMILIES: [Family; 5] = [
    probes::lifecycle::FAMILY,
    probes::edge::FAMILY,
    probes::invalid::FAMILY,
    probes::auth::FAMILY,
    probes::routing::FAMILY,
];

/// A request as the gate builds it (before signing).
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub endpoint: Endpoint,
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    pub auth: AuthMode,
}

impl Req {
    /// `case` sent on the call `call_id`, signed.
    pub fn of(case: &Case, call_id: &str) -> Req {
        Req {
            endpoint: case.endpoint,
            method: case.endpoint.method(),
            path: case.endpoint.path(call_id, case.participant_id.as_deref()),
            content_type: case.content_type.clone(),
            body: case.body.clone(),
            auth: AuthMode::Signed,
        }
    }

    /// A signed request of `endpoint` on `call` with a JSON body.
    pub fn json(endpoint: Endpoint, call: &str, pid: Option<&str>, body: serde_json::Value) -> Req {
        Req {
            content_type: Some("application/json".into()),
            body: Some(body.to_string().into_bytes()),
            ..Req::bare(endpoint, call, pid)
        }
    }

    /// A signed request of `endpoint` on `call` with neither body nor content type.
    pub fn bare(endpoint: Endpoint, call: &str, pid: Option<&str>) -> Req {
        Req {
            endpoint,
            method: endpoint.method(),
            path: endpoint.path(call, pid),
            content_type: None,
            body: None,
            auth: AuthMode::Signed,
        }
    }

    /// The request with another authentication (fault).
    pub fn auth(mut self, auth: AuthMode) -> Req {
        self.auth = auth;
        self
    }
}

/// What became of one request, or of the set-up a case needed before it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The target answered.
    Reply(Reply),
    /// No complete answer within the per-request timeout.
    Timeout(Duration),
    /// No usable answer for another reason (connection closed mid-response…).
    NoAnswer(String),
    /// The case's set-up (its call, its participant) failed: the request was not sent.
    NotRun(String),
    /// The run is stopping; nothing was sent.
    Stopped,
}

impl Outcome {
    /// The outcome in one line, as a failure's `got`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Reply(r) => describe_reply(r),
            Outcome::Timeout(d) => format!("timeout (no complete answer within {d:?})"),
            Outcome::NoAnswer(why) => why.clone(),
            Outcome::NotRun(why) => format!("not run: {why}"),
            Outcome::Stopped => "stopped".into(),
        }
    }
}

/// A probe that did not pass.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    /// How the outcome differs from the expectation.
    pub mismatch: Mismatch,
    /// Whether the failure says something about the request itself (not a timeout, a
    /// failed set-up or a stopping run), so that shrinking the request is worth it.
    pub about_the_request: bool,
}

impl Failed {
    fn of(mismatch: Mismatch, outcome: &Outcome) -> Failed {
        Failed {
            mismatch,
            about_the_request: matches!(outcome, Outcome::Reply(_) | Outcome::NoAnswer(_)),
        }
    }
}

/// The state of a run every task shares.
pub(crate) struct Shared {
    pub client: Client,
    pub sem: Semaphore,
    pub report: Mutex<Report>,
    pub requests: AtomicU64,
    fatal: Mutex<Option<String>>,
    pub stop: AtomicBool,
    pub seed: u64,
    pub cases: u32,
    pub endpoints: Vec<Endpoint>,
    /// The first valid case of each endpoint that failed on its request: shrunk at the end.
    pub first_valid_failure: Mutex<BTreeMap<Endpoint, usize>>,
    unique: AtomicU64,
    /// Where a printed `send` line sends to (see [`replay::send_options`]).
    send_options: String,
}

/// A handle on the run; `record` is off while shrinking so attempts are not counted.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub s: Arc<Shared>,
    pub record: bool,
}

impl Ctx {
    /// The same run, recording nothing (first wave, shrinking attempts).
    pub fn quiet(&self) -> Ctx {
        Ctx {
            s: self.s.clone(),
            record: false,
        }
    }

    /// Whether the run is stopping.
    pub fn stopped(&self) -> bool {
        self.s.stop.load(Ordering::Relaxed)
    }

    /// Stops the run: the gate could not run, for `reason` (the first reason wins).
    pub fn abort(&self, reason: String) {
        if let Ok(mut f) = self.s.fatal.lock()
            && f.is_none()
        {
            *f = Some(reason);
        }
        self.s.stop.store(true, Ordering::Relaxed);
    }

    /// Changes the report, unless this handle records nothing.
    pub fn with_report(&self, f: impl FnOnce(&mut Report)) {
        if !self.record {
            return;
        }
        // A poisoned lock means a panic elsewhere; the report is still usable.
        let mut r = match self.s.report.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        f(&mut r);
    }

    /// An id no other probe of this run uses (participant ids, unknown call ids).
    pub fn unique(&self, prefix: &str) -> String {
        let n = self.s.unique.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}-{n}", self.s.seed & 0xffff_ffff)
    }

    /// Sends a request; every reply is checked by `not_a_server_error` and, when it
    /// is an error, by `error_shape`. An unreachable target aborts the run.
    pub async fn send(&self, req: &Req) -> Outcome {
        match self.send_raw(req).await {
            None => Outcome::Stopped,
            Some(Ok(reply)) => {
                self.global_checks(req, &reply);
                Outcome::Reply(reply)
            }
            Some(Err(e)) if e.is_unreachable() => {
                self.abort(e.to_string());
                Outcome::Stopped
            }
            Some(Err(ClientError::Timeout(d))) => Outcome::Timeout(d),
            Some(Err(e)) => Outcome::NoAnswer(e.to_string()),
        }
    }

    /// Sends a request under the concurrency limit; `None` when the run is stopping.
    pub async fn send_raw(&self, req: &Req) -> Option<Result<Reply, ClientError>> {
        if self.stopped() {
            return None;
        }
        let Ok(_permit) = self.s.sem.acquire().await else {
            return None;
        };
        if self.stopped() {
            return None;
        }
        let result = self
            .s
            .client
            .send(
                req.method,
                &req.path,
                req.content_type.as_deref(),
                req.body.as_deref(),
                req.auth,
            )
            .await;
        self.s.requests.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    fn global_checks(&self, req: &Req, reply: &Reply) {
        let case = format!("{} {}", req.method, req.endpoint.path_template());
        let server_error = (reply.status >= 500).then(|| Mismatch {
            expected: "no 5xx for any request the gate sends".into(),
            got: describe_reply(reply),
            violations: Vec::new(),
        });
        self.record(
            Check::NotAServerError,
            req,
            &case,
            server_error.map_or(Ok(()), Err),
        );
        if reply.status >= 400 && req.method != "HEAD" {
            let shape = error_shape(reply).map_err(|v| Mismatch {
                expected: "a JSON error body with non-empty string code and message".into(),
                got: describe_reply(reply),
                violations: v,
            });
            self.record(Check::ErrorShape, req, &case, shape);
        }
    }

    /// A failure of `check` on `req`, with the request's `send` line.
    pub fn failure(&self, check: Check, req: &Req, case: &str, m: Mismatch) -> Failure {
        Failure {
            check,
            endpoint: req.endpoint,
            case: case.to_string(),
            expected: m.expected,
            got: m.got,
            violations: m.violations,
            send: Some(replay::send_line(&self.s.send_options, req)),
            shrunk: None,
        }
    }

    /// Records a verdict of `check` on `req`.
    pub fn record(&self, check: Check, req: &Req, case: &str, result: Result<(), Mismatch>) {
        if !self.record {
            return;
        }
        match result {
            Ok(()) => self.with_report(|r| r.pass(req.endpoint, check)),
            Err(m) => {
                let f = self.failure(check, req, case, m);
                self.with_report(|r| r.fail(f));
            }
        }
    }

    /// Sends `req`, judges the reply against `expect` and records it under `check`;
    /// `Ok(None)` when the run is stopping.
    pub async fn probe(
        &self,
        check: Check,
        case: &str,
        req: &Req,
        expect: &Expect,
    ) -> Result<Option<Reply>, Failed> {
        self.probe_then(check, case, req, expect, |_| Ok(())).await
    }

    /// [`Ctx::probe`] with a further judgement `more` on a reply that met `expect`.
    pub async fn probe_then(
        &self,
        check: Check,
        case: &str,
        req: &Req,
        expect: &Expect,
        more: impl FnOnce(&Reply) -> Result<(), Mismatch>,
    ) -> Result<Option<Reply>, Failed> {
        let outcome = self.send(req).await;
        let verdict = match &outcome {
            Outcome::Stopped => return Ok(None),
            Outcome::Reply(reply) => judge(req.endpoint, expect, reply).and_then(|()| more(reply)),
            other => Err(Mismatch {
                expected: expect.describe(req.endpoint),
                got: other.describe(),
                violations: Vec::new(),
            }),
        };
        self.record(check, req, case, verdict.clone());
        match (verdict, outcome) {
            (Ok(()), Outcome::Reply(reply)) => Ok(Some(reply)),
            (Ok(()), _) => Ok(None),
            (Err(m), outcome) => Err(Failed::of(m, &outcome)),
        }
    }

    /// Records that a case of `check` could not be set up (unless the run is stopping)
    /// and returns its failure; `outcome` is what the set-up came to.
    pub fn setup_failed(
        &self,
        check: Check,
        endpoint: Endpoint,
        case: &str,
        expect: &Expect,
        outcome: &Outcome,
    ) -> Failed {
        let m = Mismatch {
            expected: expect.describe(endpoint),
            got: outcome.describe(),
            violations: Vec::new(),
        };
        if !matches!(outcome, Outcome::Stopped) {
            let req = Req::of(&super::cases::canonical(endpoint), "{callId}");
            self.record(check, &req, case, Err(m.clone()));
        }
        Failed::of(m, outcome)
    }
}

/// Runs the gate against `config.target` and returns what it found. Never panics on
/// anything the target does; an unreachable target ends the run as
/// [`RunEnd::Aborted`].
///
/// The [`Report`] holds a cell per endpoint and check, each failure with a replayable
/// case, and renders for a terminal ([`Report::render_terminal`]) or as JSON
/// ([`Report::to_json`]); [`Report::exit_code`] is the CLI's verdict.
///
/// ```
/// use acs_harness::gate::RunEnd;
/// use acs_harness::{Double, DoubleConfig, Endpoint, GateConfig, run_gate};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // Gate the double itself: it conforms, so the run passes.
/// let double = Double::start(DoubleConfig::default()).await?;
/// let mut config = GateConfig::new(double.uri(), double.connection_string().signer());
/// config.cases = 3;
/// config.endpoints = vec![Endpoint::CreateCall, Endpoint::Hangup];
/// let report = run_gate(config).await;
/// assert_eq!(report.end, RunEnd::Completed);
/// assert!(!report.has_failures(), "{}", report.render_terminal(false));
/// assert_eq!(report.exit_code(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn run_gate(config: GateConfig) -> Report {
    let started = Instant::now();
    let mut report = Report::new(
        redact::url(&config.target),
        config.embedded,
        config.seed,
        config.cases,
        config.endpoints.clone(),
    );
    report.replay = config.replay.clone();
    report.budget = config.max_run_time;
    // The events check needs its receiver listening before the first call is created.
    let events = match super::events::prepare(
        &config.target,
        config.embedded,
        config.callback_url.as_ref(),
        config.callback_listen,
        config.event_timeout,
    )
    .await
    {
        Ok(super::events::Setup::Ready(probe)) => Some(probe),
        Ok(super::events::Setup::NotRun(reason)) => {
            report.not_run_because(Check::Events, reason);
            None
        }
        Err(e) => {
            report.end = RunEnd::Aborted(e);
            return report;
        }
    };
    let client = match Client::with_timeouts(
        &config.target,
        &config.prefix,
        config.api_version.as_deref(),
        config.signer.clone(),
        config.timeout,
        config.connect_timeout,
    ) {
        Ok(c) => c,
        Err(e) => {
            report.end = RunEnd::Aborted(e.to_string());
            return report;
        }
    };
    let shared = Arc::new(Shared {
        client,
        sem: Semaphore::new(config.concurrency.max(1)),
        report: Mutex::new(report),
        requests: AtomicU64::new(0),
        fatal: Mutex::new(None),
        stop: AtomicBool::new(false),
        seed: config.seed,
        cases: config.cases,
        endpoints: config.endpoints.clone(),
        first_valid_failure: Mutex::new(BTreeMap::new()),
        unique: AtomicU64::new(0),
        send_options: replay::send_options(&config),
    });
    let ctx = Ctx {
        s: shared.clone(),
        record: true,
    };
    let progress = config.progress.then(|| progress::spawn(shared.clone()));
    let signal = async {
        if config.handle_ctrl_c {
            crate::output::shutdown_signal().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let wave = config.concurrency.clamp(1, setup::FIRST_WAVE);
    // Biased: the signal listeners are registered before the first request leaves, so
    // a SIGTERM that comes once the target sees traffic is never missed.
    let end = tokio::select! {
        biased;
        () = signal => Some(RunEnd::Interrupted),
        () = tokio::time::sleep(config.max_run_time) => Some(RunEnd::DeadlineReached),
        () = run_all(ctx.clone(), wave, config.timeout, events) => None,
    };
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        progress::finish(p);
    }
    let fatal = shared.fatal.lock().ok().and_then(|f| f.clone());
    let mut report = match shared.report.lock() {
        Ok(r) => r.clone(),
        Err(p) => p.into_inner().clone(),
    };
    report.requests = shared.requests.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    report.end = match (fatal, end) {
        (Some(reason), _) => RunEnd::Aborted(reason),
        (None, Some(end)) => end,
        (None, None) => RunEnd::Completed,
    };
    report
}

/// The whole run: first wave, fixtures, every probe family and the valid cases at
/// once, then shrinking, then hanging up the pooled calls.
async fn run_all(ctx: Ctx, wave: usize, timeout: Duration, events: Option<super::events::Probe>) {
    // The first wave stops the run before any case when the target cannot serve it.
    let pool = setup::first_wave(&ctx, wave, timeout).await;
    if ctx.stopped() {
        return;
    }
    let dead_call = setup::dead_call(&ctx).await;
    if ctx.stopped() {
        return;
    }
    let fixtures = Arc::new(Fixtures { pool, dead_call });
    let mut set = JoinSet::new();
    if let Some(probe) = events {
        let ctx = ctx.clone();
        set.spawn(async move {
            let verdicts = probe.run(&ctx.s.client, &ctx.s.requests).await;
            ctx.with_report(|r| super::events::record(r, verdicts));
        });
    }
    for family in &FAMILIES {
        if let Some(once) = family.once {
            set.spawn(once(ctx.clone(), fixtures.clone()));
        }
    }
    for &e in &ctx.s.endpoints {
        for family in &FAMILIES {
            if let Some(per_endpoint) = family.per_endpoint {
                set.spawn(per_endpoint(ctx.clone(), fixtures.clone(), e));
            }
        }
    }
    probes::valid::run_all(&ctx, &fixtures.pool, &mut set).await;
    while set.join_next().await.is_some() {
        if ctx.stopped() {
            set.abort_all();
        }
    }
    shrink::shrink_failures(&ctx, &fixtures.pool).await;
    for c in &fixtures.pool {
        ctx.hang_up(c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_before_and_only_answers_are_worth_shrinking() {
        let m = || Mismatch {
            expected: String::new(),
            got: String::new(),
            violations: Vec::new(),
        };
        let timeout = Outcome::Timeout(Duration::from_millis(1500));
        assert_eq!(
            timeout.describe(),
            "timeout (no complete answer within 1.5s)"
        );
        let not_run = Outcome::NotRun("set-up create call failed: 503".into());
        assert_eq!(
            not_run.describe(),
            "not run: set-up create call failed: 503"
        );
        let broken = Outcome::NoAnswer("the response broke off: eof".into());
        assert_eq!(broken.describe(), "the response broke off: eof");
        assert!(!Failed::of(m(), &timeout).about_the_request);
        assert!(!Failed::of(m(), &not_run).about_the_request);
        assert!(!Failed::of(m(), &Outcome::Stopped).about_the_request);
        assert!(Failed::of(m(), &broken).about_the_request);
    }
}
