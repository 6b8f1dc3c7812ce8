//! Runs the gate: plans the cases, sends them with bounded concurrency, judges every
//! reply, shrinks failing valid cases through proptest's runner, and stops cleanly on
//! Ctrl-C or SIGTERM, when the run budget is spent, or when the target cannot be
//! reached, rejects the key, or answers nothing (the first wave tells).

use super::cases::{self, Case};
use super::checks::{
    Check, Expect, Mismatch, call_leg_id, describe_reply, error_shape, judge,
    names_offending_property, unusable_call_id,
};
use super::report::{Failure, Report, RunEnd, shell_quote};
use crate::auth::{Signer, content_hash};
use crate::client::{AuthMode, Client, ClientError, Reply};
use crate::contract::{Endpoint, Rule, Violation};
use crate::redact;
use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Valid cases drawn ahead of the ones running.
const CASE_QUEUE: usize = 64;

/// Valid-case tasks alive at once, per request allowed in flight: enough to keep the
/// semaphore busy while set-up requests wait, few enough to bound memory.
const TASKS_PER_PERMIT: usize = 4;

/// Shrinking stops after this many attempts; each attempt is one or more requests.
const MAX_SHRINK_ITERS: u32 = 2000;

/// Shrinking one endpoint's case stops after this long (proptest's `max_shrink_time`).
const MAX_SHRINK_MS: u32 = 20_000;

/// The default budget of a whole run: a default run against the double takes seconds and
/// against a real service well under a minute, so a run that takes longer is stuck on a
/// slow or trickling target and is cut rather than left to take the CI job's limit.
pub const DEFAULT_MAX_RUN_TIME: Duration = Duration::from_secs(180);

/// Set-up create-call requests sent at once before any case (at most; fewer with a lower
/// concurrency). They become the call pool, and their answers tell a rejected key or a
/// target that answers nothing before the cases run.
const FIRST_WAVE: usize = 8;

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
        }
    }
}

/// A request as the gate builds it (before signing).
#[derive(Debug, Clone)]
struct Req {
    endpoint: Endpoint,
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    auth: AuthMode,
}

impl Req {
    fn of(case: &Case, call_id: &str) -> Req {
        Req {
            endpoint: case.endpoint,
            method: case.endpoint.method(),
            path: case.endpoint.path(call_id, case.participant_id.as_deref()),
            content_type: case.content_type.clone(),
            body: case.body.clone(),
            auth: AuthMode::Signed,
        }
    }

    fn auth(mut self, auth: AuthMode) -> Req {
        self.auth = auth;
        self
    }
}

/// What sending produced.
enum Sent {
    Reply(Reply),
    /// No usable answer (timeout, connection closed mid-response): the reason.
    Failed(String),
    /// The run is stopping; nothing was sent.
    Stopped,
}

struct Shared {
    client: Client,
    sem: Semaphore,
    report: Mutex<Report>,
    requests: AtomicU64,
    fatal: Mutex<Option<String>>,
    stop: AtomicBool,
    seed: u64,
    cases: u32,
    endpoints: Vec<Endpoint>,
    first_valid_failure: Mutex<BTreeMap<Endpoint, usize>>,
    unique: AtomicU64,
    /// Where a printed `send` line sends to (see [`send_options`]).
    send_options: String,
}

/// A handle on the run; `record` is off while shrinking so attempts are not counted.
#[derive(Clone)]
struct Ctx {
    s: Arc<Shared>,
    record: bool,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.s.stop.load(Ordering::Relaxed)
    }

    fn abort(&self, reason: String) {
        if let Ok(mut f) = self.s.fatal.lock()
            && f.is_none()
        {
            *f = Some(reason);
        }
        self.s.stop.store(true, Ordering::Relaxed);
    }

    fn with_report(&self, f: impl FnOnce(&mut Report)) {
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

    fn unique(&self, prefix: &str) -> String {
        let n = self.s.unique.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}-{n}", self.s.seed & 0xffff_ffff)
    }

    /// Sends a request; every reply is checked by `not_a_server_error` and, when it
    /// is an error, by `error_shape`.
    async fn send(&self, req: &Req) -> Sent {
        match self.send_raw(req).await {
            None => Sent::Stopped,
            Some(Ok(reply)) => {
                self.global_checks(req, &reply);
                Sent::Reply(reply)
            }
            Some(Err(e)) if e.is_unreachable() => {
                self.abort(e.to_string());
                Sent::Stopped
            }
            Some(Err(ClientError::Timeout(d))) => {
                Sent::Failed(format!("{TIMEOUT} (no complete answer within {d:?})"))
            }
            Some(Err(e)) => Sent::Failed(e.to_string()),
        }
    }

    /// Sends a request under the concurrency limit; `None` when the run is stopping.
    async fn send_raw(&self, req: &Req) -> Option<Result<Reply, ClientError>> {
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
        let server_error = if reply.status >= 500 {
            Some(Mismatch {
                expected: "no 5xx for any request the gate sends".into(),
                got: describe_reply(reply),
                violations: Vec::new(),
            })
        } else {
            None
        };
        let shape = if reply.status >= 400 && req.method != "HEAD" {
            Some(error_shape(reply).map_err(|v| Mismatch {
                expected: "a JSON error body with non-empty string code and message".into(),
                got: describe_reply(reply),
                violations: v,
            }))
        } else {
            None
        };
        let case = format!("{} {}", req.method, req.endpoint.path_template());
        match server_error {
            Some(m) => self.record(Check::NotAServerError, req, &case, Err(m)),
            None => self.record(Check::NotAServerError, req, &case, Ok(())),
        }
        if let Some(res) = shape {
            self.record(Check::ErrorShape, req, &case, res);
        }
    }

    fn failure(&self, check: Check, req: &Req, case: &str, m: Mismatch) -> Failure {
        Failure {
            check,
            endpoint: req.endpoint,
            case: case.to_string(),
            expected: m.expected,
            got: m.got,
            violations: m.violations,
            send: Some(self.send_line(req)),
            shrunk: None,
        }
    }

    fn record(&self, check: Check, req: &Req, case: &str, result: Result<(), Mismatch>) {
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

    /// Sends `req`, judges the reply against `expect` and records it under `check`.
    async fn probe(
        &self,
        check: Check,
        case: &str,
        req: &Req,
        expect: &Expect,
    ) -> Result<Option<Reply>, Mismatch> {
        let verdict = match self.send(req).await {
            Sent::Stopped => return Ok(None),
            Sent::Failed(why) => Err(Mismatch {
                expected: expect.describe(req.endpoint),
                got: why,
                violations: Vec::new(),
            }),
            Sent::Reply(reply) => judge(req.endpoint, expect, &reply).map(|()| Some(reply)),
        };
        self.record(check, req, case, verdict.clone().map(|_| ()));
        verdict
    }

    /// The request as an `acs-harness send` line to paste: the same method, path,
    /// headers, body and authentication fault, signed afresh when run (the key comes
    /// from ACS_CONNECTION_STRING, never from this line).
    fn send_line(&self, req: &Req) -> String {
        send_line(&self.s.send_options, req)
    }

    /// Creates a call for a case to run on; lenient (any 2xx with a `callLegId`) so
    /// a deviation of create call does not hide the checks of the other endpoints.
    async fn create_call(&self) -> Result<String, String> {
        let req = Req::of(&cases::canonical(Endpoint::CreateCall), "");
        match self.send(&req).await {
            Sent::Reply(r) if (200..300).contains(&r.status) => usable_call(&r),
            Sent::Reply(r) => Err(format!("set-up create call failed: {}", describe_reply(&r))),
            Sent::Failed(why) => Err(format!("set-up create call failed: {why}")),
            Sent::Stopped => Err("stopped".into()),
        }
    }

    async fn hang_up(&self, call: &str) {
        let req = Req::of(&cases::canonical(Endpoint::Hangup), call);
        let _ = self.send(&req).await;
    }

    /// Invites one participant whose participantId is `pid` (given as its rawId).
    async fn invite(&self, call: &str, pid: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "participants": [{"communicationUser": {"id": "8:acs:gate-participant"}, "rawId": pid}]
        });
        let req = Req {
            endpoint: Endpoint::InviteParticipants,
            method: "POST",
            path: Endpoint::InviteParticipants.path(call, None),
            content_type: Some("application/json".into()),
            body: Some(body.to_string().into_bytes()),
            auth: AuthMode::Signed,
        };
        match self.send(&req).await {
            Sent::Reply(r) if (200..300).contains(&r.status) => Ok(()),
            Sent::Reply(r) => Err(format!("set-up invite failed: {}", describe_reply(&r))),
            Sent::Failed(why) => Err(format!("set-up invite failed: {why}")),
            Sent::Stopped => Err("stopped".into()),
        }
    }

    /// The call a case runs on: from the shared pool, or a new one.
    /// The call case `i` of `endpoint` runs on: none for create call, a fresh one for
    /// hang up (which ends it), a pooled one otherwise (cases that leave it live share).
    async fn call_for(
        &self,
        endpoint: Endpoint,
        pool: &[String],
        i: usize,
    ) -> Result<String, String> {
        match endpoint {
            Endpoint::CreateCall => Ok(String::new()),
            Endpoint::Hangup => self.create_call().await,
            _ => self.pool_call(pool, i).await,
        }
    }

    async fn pool_call(&self, pool: &[String], i: usize) -> Result<String, String> {
        match pool.get(i % pool.len().max(1)) {
            Some(c) => Ok(c.clone()),
            None => self.create_call().await,
        }
    }

    fn setup_failed(
        &self,
        check: Check,
        endpoint: Endpoint,
        case: &str,
        expect: &Expect,
        why: String,
    ) -> Mismatch {
        let m = Mismatch {
            expected: expect.describe(endpoint),
            got: format!("{NOT_RUN} {why}"),
            violations: Vec::new(),
        };
        if why != "stopped" {
            let req = Req::of(&cases::canonical(endpoint), "{callId}");
            self.record(check, &req, case, Err(m.clone()));
        }
        m
    }
}

/// Bodies up to this size go into a printed `send` line; larger ones are described.
const MAX_INLINE_BODY: usize = 64 * 1024;

/// The `acs-harness send` options that say where requests go: target, prefix,
/// api-version and, when not the default, the timeout.
fn send_options(config: &GateConfig) -> String {
    let mut s = format!(
        " --target {}",
        shell_quote(crate::redact::url(&config.target).as_bytes())
    );
    if !config.prefix.is_empty() {
        s.push_str(&format!(
            " --prefix {}",
            shell_quote(config.prefix.as_bytes())
        ));
    }
    if let Some(v) = &config.api_version {
        s.push_str(&format!(" --api-version {}", shell_quote(v.as_bytes())));
    }
    if config.timeout != Duration::from_secs(10) {
        s.push_str(&format!(
            " --timeout {}",
            super::format_duration(config.timeout)
        ));
    }
    s
}

/// `req` as an `acs-harness send` command line (see [`Ctx::send_line`]).
fn send_line(options: &str, req: &Req) -> String {
    let mut s = format!(
        "acs-harness send {} {}{options}",
        req.method,
        shell_quote(req.path.as_bytes())
    );
    if let Some(ct) = &req.content_type {
        s.push_str(&format!(
            " --header {}",
            shell_quote(format!("Content-Type: {ct}").as_bytes())
        ));
    }
    if req.auth != AuthMode::Signed {
        s.push_str(&format!(" --auth {}", crate::send::auth_name(req.auth)));
    }
    let body = req.body.as_deref().unwrap_or_default();
    let text = std::str::from_utf8(body)
        .ok()
        .filter(|t| !t.chars().any(char::is_control));
    match text {
        _ if body.is_empty() => {}
        Some(t) if t.len() <= MAX_INLINE_BODY => {
            s.push_str(&format!(" --body {}", shell_quote(t.as_bytes())));
        }
        None if body.len() <= MAX_INLINE_BODY / 4 * 3 => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(body);
            s.push_str(&format!(" --body-base64 {b64}"));
        }
        _ => {
            // Too long for a command line: the file to write is described instead.
            let start = &body[..body.len().min(120)];
            s.push_str(&format!(
                " --body @body.json  # {} bytes (SHA-256 {}), starting {}",
                body.len(),
                content_hash(body),
                shell_quote(start)
            ));
        }
    }
    s
}

/// Runs one valid case with whatever set-up it needs; records it unless shrinking.
async fn run_valid(
    ctx: &Ctx,
    pool: &[String],
    index: usize,
    case: Case,
) -> Result<(), (Req, Mismatch)> {
    let e = case.endpoint;
    let label = case_label(e, index, ctx.s.cases);
    let expect = Expect::Success(case.operation_context());
    let check = Check::PositiveAcceptance;
    let fail = |ctx: &Ctx, why: String| {
        let m = ctx.setup_failed(check, e, &label, &expect, why);
        (Req::of(&case, "{callId}"), m)
    };
    let (call, own_call) = match e {
        Endpoint::CreateCall => (String::new(), false),
        // Generated participant ids repeat (fiction ranges are small), so each remove
        // gets a call of its own: a concurrent case cannot remove its participant first.
        Endpoint::Hangup | Endpoint::RemoveParticipant => match ctx.create_call().await {
            Ok(c) => (c, true),
            Err(why) => return Err(fail(ctx, why)),
        },
        // Thousands of invitees would evict the participants other cases invited
        // on a shared call (a service keeps a bounded list): a call of its own.
        Endpoint::InviteParticipants if is_large(index, ctx.s.cases) => {
            match ctx.create_call().await {
                Ok(c) => (c, true),
                Err(why) => return Err(fail(ctx, why)),
            }
        }
        _ => match ctx.pool_call(pool, index).await {
            Ok(c) => (c, pool.is_empty()),
            Err(why) => return Err(fail(ctx, why)),
        },
    };
    if e == Endpoint::RemoveParticipant
        && let Some(pid) = &case.participant_id
        && let Err(why) = ctx.invite(&call, pid).await
    {
        return Err(fail(ctx, why));
    }
    let req = Req::of(&case, &call);
    let result = ctx.probe(check, &label, &req, &expect).await;
    if e == Endpoint::CreateCall
        && let Ok(Some(reply)) = &result
        && let Some(id) = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
    {
        ctx.hang_up(&id).await;
    }
    if own_call && e != Endpoint::Hangup {
        ctx.hang_up(&call).await;
    }
    result.map(|_| ()).map_err(|m| (req, m))
}

/// How valid case `index` is named in reports: `valid #3`, or for a large one
/// `valid #100 (large: near-limit)`.
fn case_label(endpoint: Endpoint, index: usize, cases: u32) -> String {
    if !is_large(index, cases) {
        return format!("valid #{index}");
    }
    let sizes = crate::generate::sizes(endpoint);
    match sizes.get((index - cases as usize) % sizes.len().max(1)) {
        Some(size) => format!("valid #{index} (large: {size})"),
        None => format!("valid #{index} (large)"),
    }
}

/// Whether a failure is the target's answer to the request itself (worth shrinking),
/// not a timeout or a failed set-up.
fn about_the_request(m: &Mismatch) -> bool {
    !(m.got.starts_with(TIMEOUT) || m.got.starts_with(NOT_RUN))
}

/// How a timeout is reported (`got`).
const TIMEOUT: &str = "timeout";

/// How a case whose set-up failed is reported (`got`).
const NOT_RUN: &str = "not run:";

fn rng_seed(seed: u64, endpoint: Endpoint, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!(
        "acs-harness gate {seed} {} {purpose}",
        endpoint.name()
    ));
    h.finalize().into()
}

/// The runner valid cases of `endpoint` are drawn from; the same seed draws the same cases.
fn case_runner(seed: u64, endpoint: Endpoint, cases: u32) -> TestRunner {
    runner_for(rng_seed(seed, endpoint, "valid"), cases)
}

fn runner_for(rng_seed: [u8; 32], cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: MAX_SHRINK_ITERS,
        max_shrink_time: MAX_SHRINK_MS,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed))
}

/// Large valid cases per size of an endpoint: one per size up to 100 cases, then one
/// more per hundred, at most three (each can be a body of 1 MiB).
fn large_rounds(cases: u32) -> usize {
    if cases == 0 {
        0
    } else {
        (cases as usize / 100).clamp(1, 3)
    }
}

/// How many large valid cases `endpoint` has in a run of `cases` typical ones; they
/// are numbered after the typical ones (`cases`, `cases + 1`, …).
fn large_count(endpoint: Endpoint, cases: u32) -> usize {
    crate::generate::sizes(endpoint).len() * large_rounds(cases)
}

/// Draws large case `k` of `endpoint`: its own runner (so it is drawn alone, again,
/// for shrinking) and its value tree.
fn draw_large(
    seed: u64,
    endpoint: Endpoint,
    cases: u32,
    k: usize,
) -> Option<(TestRunner, Box<dyn ValueTree<Value = Case>>)> {
    let sizes = crate::generate::sizes(endpoint);
    let size = *sizes.get(k % sizes.len().max(1))?;
    let round = k / sizes.len().max(1);
    let strategy = cases::valid_large(endpoint, size)?;
    let mut runner = runner_for(
        rng_seed(seed, endpoint, &format!("large {size} {round}")),
        cases,
    );
    let tree = strategy.new_tree(&mut runner).ok()?;
    Some((runner, Box::new(tree)))
}

/// Whether case `index` of a run of `cases` typical ones is a large one.
fn is_large(index: usize, cases: u32) -> bool {
    index >= cases as usize
}

/// The valid cases of `endpoints` for `seed`, drawn one at a time as they are asked
/// for, so memory does not grow with `--cases`: the few large ones of every endpoint
/// first, then the typical ones round-robin over the endpoints (an interrupted run
/// has covered each). Items are `(endpoint, case index, case)`.
pub fn valid_cases(
    endpoints: &[Endpoint],
    seed: u64,
    cases: u32,
) -> impl Iterator<Item = (Endpoint, usize, Case)> {
    let large = endpoints
        .iter()
        .copied()
        .flat_map(move |e| (0..large_count(e, cases)).map(move |k| (e, k)))
        .filter_map(move |(e, k)| {
            let (_, tree) = draw_large(seed, e, cases, k)?;
            Some((e, cases as usize + k, tree.current()))
        });
    let mut typical: Vec<(Endpoint, BoxedStrategy<Case>, TestRunner)> = endpoints
        .iter()
        .map(|&e| (e, cases::valid(e), case_runner(seed, e, cases)))
        .collect();
    let typical = (0..cases as usize).flat_map(move |i| {
        let drawn: Vec<(Endpoint, usize, Case)> = typical
            .iter_mut()
            .filter_map(|(e, strategy, runner)| {
                let case = strategy.new_tree(runner).ok()?.current();
                Some((*e, i, case))
            })
            .collect();
        drawn
    });
    large.chain(typical)
}

/// The `count` typical valid cases of `endpoint` for `seed`, in order.
pub fn sample_valid(endpoint: Endpoint, seed: u64, count: u32) -> Vec<Case> {
    valid_cases(&[endpoint], seed, count)
        .filter(|(_, i, _)| !is_large(*i, count))
        .map(|(_, _, c)| c)
        .collect()
}

/// Re-draws valid case `index` of `endpoint` and lets proptest's runner shrink it
/// against the target. Runs on a blocking thread; requests go through `handle`.
fn shrink(
    ctx: Ctx,
    handle: tokio::runtime::Handle,
    pool: Vec<String>,
    endpoint: Endpoint,
    index: usize,
) -> Option<Failure> {
    let cases = ctx.s.cases;
    let (mut runner, tree) = if is_large(index, cases) {
        draw_large(ctx.s.seed, endpoint, cases, index - cases as usize)?
    } else {
        let strategy = cases::valid(endpoint);
        let mut runner = case_runner(ctx.s.seed, endpoint, cases);
        let mut tree = None;
        for _ in 0..=index {
            tree = Some(strategy.new_tree(&mut runner).ok()?);
        }
        let tree: Box<dyn ValueTree<Value = Case>> = Box::new(tree?);
        (runner, tree)
    };
    let original_len = tree.current().body.as_ref().map_or(0, Vec::len);
    let quiet = Ctx {
        s: ctx.s.clone(),
        record: false,
    };
    let attempts = AtomicUsize::new(0);
    let outcome = runner.run_one(tree, |case| {
        if quiet.stopped() {
            return Ok(());
        }
        attempts.fetch_add(1, Ordering::Relaxed);
        match handle.block_on(run_valid(&quiet, &pool, index, case)) {
            Err((_, m)) if about_the_request(&m) => Err(TestCaseError::fail(m.got)),
            // A failed set-up or a timeout says nothing about this body: shrinking
            // must not drift towards it.
            _ => Ok(()),
        }
    });
    let minimal = match outcome {
        Err(TestError::Fail(_, minimal)) => minimal,
        _ => return None,
    };
    // One more run of the minimal case, to report exactly what it gets.
    let (req, m) = handle
        .block_on(run_valid(&quiet, &pool, index, minimal.clone()))
        .err()?;
    let mut f = quiet.failure(
        Check::PositiveAcceptance,
        &req,
        &format!("{}, shrunk", case_label(endpoint, index, ctx.s.cases)),
        m,
    );
    f.shrunk = Some(format!(
        "{} attempts; body {} → {} bytes (replay the run with the seed to see the original)",
        attempts.load(Ordering::Relaxed),
        original_len,
        minimal.body.as_ref().map_or(0, Vec::len)
    ));
    Some(f)
}

async fn lifecycle(ctx: Ctx) {
    let check = Check::Lifecycle;
    let step = |n: usize, what: &str| format!("lifecycle step {n}: {what}");
    let create_case = cases::canonical(Endpoint::CreateCall);
    // A call's participants include its targets (src/contract/CONTRACT.md): the first target, a
    // phone number, is removed by its number like any invited participant.
    let target = create_case
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| {
            v.pointer("/targets/0/phoneNumber/value")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    let create = Req::of(&create_case, "");
    let call = match ctx
        .probe(
            check,
            &step(1, "create call"),
            &create,
            &Expect::Success(None),
        )
        .await
    {
        Ok(Some(r)) => serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string)),
        _ => None,
    };
    let Some(call) = call else {
        return;
    };
    let json_req = |e: Endpoint, body: serde_json::Value, pid: Option<&str>| Req {
        endpoint: e,
        method: e.method(),
        path: e.path(&call, pid),
        content_type: Some("application/json".into()),
        body: Some(body.to_string().into_bytes()),
        auth: AuthMode::Signed,
    };
    let bare = |e: Endpoint, pid: Option<&str>| Req {
        endpoint: e,
        method: e.method(),
        path: e.path(&call, pid),
        content_type: None,
        body: None,
        auth: AuthMode::Signed,
    };
    let phone = "+14255550123";
    let raw = ctx.unique("gate-raw");
    let user = format!(
        "8:acs:b6aada1f-0b1d-47ac-866f-91aae00a1d01_{}",
        ctx.unique("gate-user")
    );
    let teams = ctx.unique("gate-teams-user");
    let not_found = Expect::Error(vec![404]);
    let steps: Vec<(String, Req, Expect)> = vec![
        (
            step(2, "play audio"),
            json_req(
                Endpoint::PlayAudio,
                serde_json::json!({"audioFileUri": "https://acsmedia.blob.core.windows.net/audio/hold.wav", "loop": true, "operationContext": "lifecycle-play"}),
                None,
            ),
            Expect::Success(Some("lifecycle-play".into())),
        ),
        (
            step(3, "cancel media processing"),
            json_req(
                Endpoint::CancelMediaProcessing,
                serde_json::json!({"operationContext": "lifecycle-cancel"}),
                None,
            ),
            Expect::Success(Some("lifecycle-cancel".into())),
        ),
        (
            step(4, "invite four participants"),
            json_req(
                Endpoint::InviteParticipants,
                serde_json::json!({"participants": [
                    {"phoneNumber": {"value": phone}},
                    {"communicationUser": {"id": "8:acs:b6aada1f-0b1d-47ac-866f-91aae00a1d01_gate"}, "rawId": raw},
                    {"communicationUser": {"id": user}},
                    {"microsoftTeamsUser": {"userId": teams, "cloud": "public"}}
                ], "operationContext": "lifecycle-invite"}),
                None,
            ),
            Expect::Success(None),
        ),
        (
            step(5, "remove the call's target (by its number)"),
            bare(Endpoint::RemoveParticipant, Some(&target)),
            Expect::Success(None),
        ),
        (
            step(6, "remove the call's target again"),
            bare(Endpoint::RemoveParticipant, Some(&target)),
            not_found.clone(),
        ),
        (
            step(5, "remove the phone participant (by its number)"),
            bare(Endpoint::RemoveParticipant, Some(phone)),
            Expect::Success(None),
        ),
        (
            step(5, "remove the participant with a rawId (by its rawId)"),
            bare(Endpoint::RemoveParticipant, Some(&raw)),
            Expect::Success(None),
        ),
        (
            step(5, "remove the ACS user (by its id)"),
            bare(Endpoint::RemoveParticipant, Some(&user)),
            Expect::Success(None),
        ),
        (
            step(5, "remove the Teams user (by its userId)"),
            bare(Endpoint::RemoveParticipant, Some(&teams)),
            Expect::Success(None),
        ),
        (
            step(6, "remove the phone participant again"),
            bare(Endpoint::RemoveParticipant, Some(phone)),
            not_found.clone(),
        ),
        (
            step(7, "hang up"),
            bare(Endpoint::Hangup, None),
            Expect::Success(None),
        ),
        (
            step(8, "play audio on the hung-up call"),
            json_req(
                Endpoint::PlayAudio,
                serde_json::json!({"audioFileUri": "https://acsmedia.blob.core.windows.net/audio/hold.wav"}),
                None,
            ),
            not_found.clone(),
        ),
        (
            step(9, "hang up again"),
            bare(Endpoint::Hangup, None),
            not_found,
        ),
    ];
    for (label, req, expect) in steps {
        if ctx.stopped() {
            return;
        }
        let _ = ctx.probe(check, &label, &req, &expect).await;
    }
}

/// Valid requests the generators do not draw: unknown properties (ignored), a body
/// just under the 1 MiB limit, `{}` on hang up, a body on remove participant (ignored).
async fn edge_cases(ctx: Ctx, pool: Vec<String>, endpoint: Endpoint) {
    let check = Check::PositiveAcceptance;
    let canonical = cases::canonical(endpoint);
    let object = canonical
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.as_object().cloned());
    let with_body = |body: Vec<u8>, content_type: &str| Case {
        content_type: Some(content_type.to_string()),
        body: Some(body),
        ..canonical.clone()
    };
    let mut cases: Vec<(&str, Case)> = Vec::new();
    if let Some(m) = &object {
        let mut m = m.clone();
        m.insert(
            "gateUnknownProperty".into(),
            serde_json::json!({"nested": [1, null, "x"]}),
        );
        let body = serde_json::Value::Object(m).to_string().into_bytes();
        cases.push((
            "unknown properties are ignored",
            with_body(body, "application/json"),
        ));
    }
    match (endpoint, &object) {
        (Endpoint::CreateCall, Some(m)) => {
            let mut m = m.clone();
            let base = serde_json::Value::Object(m.clone()).to_string().len();
            let room = crate::contract::MAX_BODY_BYTES.saturating_sub(base + 64);
            m.insert(
                "subject".into(),
                serde_json::Value::String("s".repeat(room)),
            );
            let body = serde_json::Value::Object(m).to_string().into_bytes();
            cases.push((
                "a body just under 1 MiB is accepted",
                with_body(body, "application/json"),
            ));
        }
        (Endpoint::Hangup, _) => {
            cases.push((
                "an empty JSON object is accepted",
                with_body(b"{}".to_vec(), "application/json"),
            ));
        }
        (Endpoint::RemoveParticipant, _) => {
            cases.push((
                "a body is ignored",
                with_body(b"ignored, not JSON".to_vec(), "text/plain"),
            ));
        }
        _ => {}
    }
    for (i, (label, mut case)) in cases.into_iter().enumerate() {
        let expect = Expect::Success(case.operation_context());
        let call = match ctx.call_for(endpoint, &pool, i).await {
            Ok(c) => c,
            Err(why) => {
                ctx.setup_failed(check, endpoint, label, &expect, why);
                continue;
            }
        };
        if endpoint == Endpoint::RemoveParticipant {
            let pid = ctx.unique("gate-edge");
            if let Err(why) = ctx.invite(&call, &pid).await {
                ctx.setup_failed(check, endpoint, label, &expect, why);
                continue;
            }
            case.participant_id = Some(pid);
        }
        let req = Req::of(&case, &call);
        if let Ok(Some(r)) = ctx.probe(check, label, &req, &expect).await
            && endpoint == Endpoint::CreateCall
            && let Some(id) = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
        {
            ctx.hang_up(&id).await;
        }
    }
}

/// Invalid bodies get 400 (413 allowed for oversize), naming the offending property;
/// the first one without auth gets 401.
async fn invalid_cases(ctx: Ctx, pool: Vec<String>, endpoint: Endpoint) {
    // One task per case: a slow target costs one timeout per wave, not per case.
    let mut set = JoinSet::new();
    for (i, case) in cases::invalid(endpoint, ctx.s.seed).into_iter().enumerate() {
        set.spawn(invalid_case(ctx.clone(), pool.clone(), endpoint, i, case));
    }
    while set.join_next().await.is_some() {}
}

async fn invalid_case(ctx: Ctx, pool: Vec<String>, endpoint: Endpoint, i: usize, case: Case) {
    let Some(defect) = case.defect.clone() else {
        return;
    };
    let statuses = if defect.oversize {
        vec![400, 413]
    } else {
        vec![400]
    };
    let expect = Expect::Error(statuses);
    let label = format!("invalid: {}", defect.label);
    let call = if endpoint == Endpoint::Hangup {
        ctx.create_call().await
    } else if endpoint.needs_call() {
        ctx.pool_call(&pool, i).await
    } else {
        Ok(String::new())
    };
    let call = match call {
        Ok(c) => c,
        Err(why) => {
            ctx.setup_failed(Check::NegativeRejection, endpoint, &label, &expect, why);
            return;
        }
    };
    let req = Req::of(&case, &call);
    if i == 0 {
        let unauth = req.clone().auth(AuthMode::Missing);
        let _ = ctx
            .probe(
                Check::AuthRequired,
                &format!("{label} without Authorization"),
                &unauth,
                &Expect::Error(vec![401]),
            )
            .await;
    }
    // The validator's JSON path must appear in the message (src/contract/CONTRACT.md: "the error
    // message names the offending property by its JSON path"; for a rule on a whole
    // array, naming the array is enough).
    let verdict = match ctx.send(&req).await {
        Sent::Stopped => return,
        Sent::Failed(why) => Err(Mismatch {
            expected: expect.describe(endpoint),
            got: why,
            violations: Vec::new(),
        }),
        Sent::Reply(reply) => judge(endpoint, &expect, &reply).and_then(|()| {
            let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_default();
            if names_offending_property(&message, defect.rule, &defect.path) {
                Ok(())
            } else {
                let named = match defect.rule {
                    Rule::EmptyArray | Rule::DuplicateItem => {
                        format!("{} or the array that holds it", defect.path)
                    }
                    _ => defect.path.clone(),
                };
                Err(Mismatch {
                    expected: format!("{} naming {named}", expect.describe(endpoint)),
                    got: describe_reply(&reply),
                    violations: vec![Violation {
                        path: "message".into(),
                        rule: Rule::Missing,
                        message: format!(
                            "the error message does not name the offending property {named}"
                        ),
                    }],
                })
            }
        }),
    };
    ctx.record(Check::NegativeRejection, &req, &label, verdict);
    if endpoint == Endpoint::Hangup {
        ctx.hang_up(&call).await;
    }
}

/// The authentication faults, each on a resource of its own where a wrongly accepted
/// request would change state.
async fn auth_cases(ctx: Ctx, pool: Vec<String>, endpoint: Endpoint) {
    const WINDOW: i64 = 15 * 60;
    let modes: [(&str, AuthMode, bool); 12] = [
        ("missing Authorization", AuthMode::Missing, false),
        ("another scheme (Bearer)", AuthMode::OtherScheme, false),
        ("wrong signature", AuthMode::BadSignature, false),
        (
            "body changed after signing",
            AuthMode::BodyChangedAfterSigning,
            false,
        ),
        (
            "x-ms-date 20 minutes old",
            AuthMode::DateOffset(-WINDOW - 5 * 60),
            false,
        ),
        (
            "x-ms-date 20 minutes ahead",
            AuthMode::DateOffset(WINDOW + 5 * 60),
            false,
        ),
        ("x-ms-date missing", AuthMode::MissingDate, false),
        (
            "x-ms-content-sha256 missing",
            AuthMode::MissingContentHash,
            false,
        ),
        ("signed for another host", AuthMode::OtherHost, false),
        ("signed for another path", AuthMode::OtherPath, false),
        ("signed for another method", AuthMode::OtherMethod, false),
        (
            "x-ms-date 10 minutes old is accepted",
            AuthMode::DateOffset(-10 * 60),
            true,
        ),
    ];
    let canonical = cases::canonical(endpoint);
    let mut set = JoinSet::new();
    for (i, (label, mode, accepted)) in modes.into_iter().enumerate() {
        set.spawn(auth_case(
            ctx.clone(),
            pool.clone(),
            endpoint,
            i,
            label,
            mode,
            accepted,
        ));
    }
    while set.join_next().await.is_some() {}
    // Authentication comes first: an unauthenticated request learns nothing about
    // routing (unknown call, wrong method) either.
    let unknown_call = ctx.unique("gate-unknown-call");
    let mut req = Req::of(&canonical, &unknown_call).auth(AuthMode::Missing);
    if !endpoint.needs_call() {
        req.path = "/calls/unknown-path".into();
    }
    let _ = ctx
        .probe(
            Check::AuthRequired,
            "unknown resource without Authorization",
            &req,
            &Expect::Error(vec![401]),
        )
        .await;
    let mut req = Req::of(&canonical, &unknown_call).auth(AuthMode::Missing);
    req.method = if endpoint.method() == "POST" {
        "PUT"
    } else {
        "POST"
    };
    let _ = ctx
        .probe(
            Check::AuthRequired,
            "wrong method without Authorization",
            &req,
            &Expect::Error(vec![401]),
        )
        .await;
}

async fn auth_case(
    ctx: Ctx,
    pool: Vec<String>,
    endpoint: Endpoint,
    i: usize,
    label: &'static str,
    mode: AuthMode,
    accepted: bool,
) {
    let canonical = cases::canonical(endpoint);
    if ctx.stopped() {
        return;
    }
    let expect = if accepted {
        Expect::Accepted
    } else {
        Expect::Error(vec![401])
    };
    let mut case = canonical.clone();
    let call = match ctx.call_for(endpoint, &pool, i).await {
        Ok(c) => c,
        Err(why) => {
            ctx.setup_failed(Check::AuthRequired, endpoint, label, &expect, why);
            return;
        }
    };
    if endpoint == Endpoint::RemoveParticipant {
        let pid = ctx.unique("gate-auth");
        if let Err(why) = ctx.invite(&call, &pid).await {
            ctx.setup_failed(Check::AuthRequired, endpoint, label, &expect, why);
            return;
        }
        case.participant_id = Some(pid);
    }
    let req = Req::of(&case, &call).auth(mode);
    let reply = ctx.probe(Check::AuthRequired, label, &req, &expect).await;
    if endpoint == Endpoint::CreateCall
        && let Ok(Some(r)) = reply
        && let Some(id) = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
    {
        ctx.hang_up(&id).await;
    }
    if endpoint == Endpoint::Hangup && !accepted {
        ctx.hang_up(&call).await;
    }
}

/// Unknown call ids, a hung-up call, an unknown participant, unknown and wrong-case
/// paths all get 404; wrong methods get 405 with `Allow`.
async fn routing_cases(ctx: Ctx, endpoint: Endpoint, dead_call: Option<String>) {
    let canonical = cases::canonical(endpoint);
    let not_found = Expect::Error(vec![404]);
    let nf = Check::UnknownResource;
    if endpoint.needs_call() {
        let unknown = uuid::Uuid::new_v4().to_string();
        let req = Req::of(&canonical, &unknown);
        let _ = ctx
            .probe(nf, "never-created call id", &req, &not_found)
            .await;
        if let Some(dead) = &dead_call {
            let req = Req::of(&canonical, dead);
            let _ = ctx.probe(nf, "hung-up call id", &req, &not_found).await;
        }
    }
    // A call of its own: a target that routes wrong-case paths or wrong methods to
    // an operation would otherwise change the state other cases rely on.
    let call = match ctx.create_call().await {
        Ok(c) => c,
        Err(why) => {
            ctx.setup_failed(nf, endpoint, "routing probes", &not_found, why);
            return;
        }
    };
    for method in [
        "GET",
        "PUT",
        "PATCH",
        if endpoint.method() == "POST" {
            "DELETE"
        } else {
            "POST"
        },
        "HEAD",
    ] {
        let req = Req {
            endpoint,
            method,
            path: endpoint.path(&call, Some("+14255550100")),
            content_type: None,
            body: None,
            auth: AuthMode::Signed,
        };
        let expect = Expect::MethodNotAllowed {
            allow: endpoint.method(),
            sent: method,
        };
        let _ = ctx
            .probe(
                Check::NegativeRejection,
                &format!("wrong method {method}"),
                &req,
                &expect,
            )
            .await;
    }
    let call_seg = crate::contract::encode_segment(&call);
    let paths: Vec<String> = match endpoint {
        Endpoint::CreateCall => vec![
            "/call".into(),
            "/Calls".into(),
            "/calls/".into(),
            format!("/calls/{call_seg}"),
            "/".into(),
        ],
        Endpoint::Hangup => vec![
            format!("/calls/{call_seg}/hangup"),
            format!("/calls/{call_seg}/HANGUP"),
            format!("/calls/{call_seg}/Hangup/"),
        ],
        Endpoint::PlayAudio => vec![
            format!("/calls/{call_seg}/playAudio"),
            format!("/calls/{call_seg}/Play"),
        ],
        Endpoint::CancelMediaProcessing => vec![format!("/calls/{call_seg}/cancelMediaProcessing")],
        Endpoint::InviteParticipants => vec![
            format!("/calls/{call_seg}/Participants"),
            format!("/CALLS/{call_seg}/participants"),
        ],
        Endpoint::RemoveParticipant => vec![
            format!("/calls/{call_seg}/Participants/%2B14255550100"),
            format!("/calls/{call_seg}/participants/%2B14255550100/extra"),
        ],
    };
    for path in paths {
        let req = Req {
            path: path.clone(),
            ..Req::of(&canonical, &call)
        };
        let _ = ctx
            .probe(nf, &format!("unknown path {path}"), &req, &not_found)
            .await;
    }
    if endpoint == Endpoint::RemoveParticipant {
        let mut case = canonical.clone();
        case.participant_id = Some(ctx.unique("gate-never-invited"));
        let req = Req::of(&case, &call);
        let _ = ctx
            .probe(nf, "never-invited participant id", &req, &not_found)
            .await;
    }
    ctx.hang_up(&call).await;
}

/// The id of a set-up create call's 2xx answer, if it can be used as a `{callId}`.
fn usable_call(r: &Reply) -> Result<String, String> {
    let id = call_leg_id(&r.body)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "set-up create call gave no callLegId: {}",
                describe_reply(r)
            )
        })?;
    match unusable_call_id(&id) {
        Some(why) => Err(format!("set-up create call gave an unusable id: {why}")),
        None => Ok(id),
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
    let endpoints = config.endpoints.clone();
    let shared = Arc::new(Shared {
        client,
        sem: Semaphore::new(config.concurrency.max(1)),
        report: Mutex::new(report),
        requests: AtomicU64::new(0),
        fatal: Mutex::new(None),
        stop: AtomicBool::new(false),
        seed: config.seed,
        cases: config.cases,
        endpoints,
        first_valid_failure: Mutex::new(BTreeMap::new()),
        unique: AtomicU64::new(0),
        send_options: send_options(&config),
    });
    let ctx = Ctx {
        s: shared.clone(),
        record: true,
    };
    let progress = config.progress.then(|| spawn_progress(shared.clone()));
    let signal = async {
        if config.handle_ctrl_c {
            crate::output::shutdown_signal().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let wave = config.concurrency.clamp(1, FIRST_WAVE);
    // Biased: the signal listeners are registered before the first request leaves, so
    // a SIGTERM that comes once the target sees traffic is never missed.
    let end = tokio::select! {
        biased;
        () = signal => Some(RunEnd::Interrupted),
        () = tokio::time::sleep(config.max_run_time) => Some(RunEnd::DeadlineReached),
        () = run_all(ctx.clone(), wave, config.timeout) => None,
    };
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
        if config.progress {
            eprint!("\r\x1b[2K");
        }
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

fn spawn_progress(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let failed: u64 = match shared.report.lock() {
                Ok(r) => r.cells.values().map(|c| c.failed).sum(),
                Err(_) => 0,
            };
            eprint!(
                "\r\x1b[2Kcontract: {} requests, {failed} failures…",
                shared.requests.load(Ordering::Relaxed)
            );
        }
    })
}

/// The first wave: `n` signed set-up create-call requests at once, before any case and
/// counted in no check. Their answers decide whether the run can go on: an unreachable
/// target, a rejected key (every answer a 401), a target that answered none of them in
/// time, or one that does not speak HTTP ends the run (exit 2) here. Otherwise the calls
/// they created are the pool the cases share.
async fn first_wave(ctx: &Ctx, n: usize, timeout: Duration) -> Vec<String> {
    let quiet = Ctx {
        s: ctx.s.clone(),
        record: false,
    };
    let mut set = JoinSet::new();
    for _ in 0..n {
        let q = quiet.clone();
        set.spawn(async move {
            let req = Req::of(&cases::canonical(Endpoint::CreateCall), "");
            q.send_raw(&req).await
        });
    }
    let mut replies = Vec::new();
    let mut errors = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Some(Ok(r))) => replies.push(r),
            Ok(Some(Err(e))) if e.is_unreachable() => {
                ctx.abort(e.to_string());
                return Vec::new();
            }
            Ok(Some(Err(e))) => errors.push(e),
            Ok(None) | Err(_) => {}
        }
    }
    if ctx.stopped() {
        return Vec::new();
    }
    let target = redact::url(ctx.s.client.base().as_str());
    // An answer that broke off after its head is an answer (judged by the cases); only
    // silence and non-HTTP on every request mean there is no service to gate.
    let answered_partly = errors
        .iter()
        .any(|e| matches!(e, ClientError::Interrupted(_)));
    if replies.is_empty() && !answered_partly {
        let sent = errors.len();
        let reason = match errors.iter().find(|e| matches!(e, ClientError::NotHttp(_))) {
            Some(e) => format!(
                "the target at {target} does not speak HTTP: none of {sent} requests got an HTTP answer ({e})"
            ),
            None => format!(
                "the target at {target} accepted connections but answered none of {sent} requests within {timeout:?}{}",
                errors
                    .first()
                    .map_or(String::new(), |e| format!(" (first: {e})"))
            ),
        };
        ctx.abort(reason);
        return Vec::new();
    }
    if let Some(first) = replies.first()
        && replies.iter().all(|r| r.status == 401)
    {
        ctx.abort(key_rejected(first));
        return Vec::new();
    }
    replies
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| usable_call(r).ok())
        .collect()
}

/// The message for a first wave answered with 401 only: the key, then the clock.
fn key_rejected(reply: &Reply) -> String {
    let skew = reply
        .date
        .as_deref()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .map(|theirs| {
            let ours = std::time::SystemTime::now();
            match ours.duration_since(theirs) {
                Ok(ahead) => ahead.as_secs() as i64,
                Err(behind) => -(behind.duration().as_secs() as i64),
            }
        });
    let clock = match skew {
        Some(s) if s.unsigned_abs() > 5 * 60 => format!(
            "this machine's clock is {}s {} the target's (its Date header), and x-ms-date is signed with this clock: fix the clock first",
            s.unsigned_abs(),
            if s > 0 { "ahead of" } else { "behind" }
        ),
        Some(s) => format!(
            "this machine's clock is within {}s of the target's, so x-ms-date is not the cause",
            s.unsigned_abs()
        ),
        None => "also check this machine's clock: x-ms-date is signed with it and must be within 15 minutes of the service's".to_string(),
    };
    format!(
        "the target rejected the access key: signed create-call requests got 401 ({}). Check that the accesskey in --connection-string / ACS_CONNECTION_STRING is this resource's key; {clock}",
        describe_reply(reply)
    )
}

async fn run_all(ctx: Ctx, wave: usize, timeout: Duration) {
    let endpoints = ctx.s.endpoints.clone();
    let concurrency = ctx.s.sem.available_permits().max(1);
    // The first wave stops the run before any case when the target cannot serve it.
    let pool = first_wave(&ctx, wave, timeout).await;
    if ctx.stopped() {
        return;
    }
    // The hung-up call the routing cases use.
    let dead_call = match ctx.create_call().await {
        Ok(c) => {
            ctx.hang_up(&c).await;
            Some(c)
        }
        Err(_) => None,
    };
    if ctx.stopped() {
        return;
    }

    let mut set = JoinSet::new();
    set.spawn(lifecycle(ctx.clone()));
    for &e in &endpoints {
        set.spawn(edge_cases(ctx.clone(), pool.clone(), e));
        set.spawn(invalid_cases(ctx.clone(), pool.clone(), e));
        set.spawn(auth_cases(ctx.clone(), pool.clone(), e));
        set.spawn(routing_cases(ctx.clone(), e, dead_call.clone()));
    }
    // Valid cases are drawn on a blocking thread and handed over through a small
    // channel, and only so many run at once: memory stays the same whatever
    // `--cases` is, and drawing never holds up the task that watches for Ctrl-C.
    let (tx, mut rx) = tokio::sync::mpsc::channel(CASE_QUEUE);
    let (seed, cases) = (ctx.s.seed, ctx.s.cases);
    let producer = tokio::task::spawn_blocking(move || {
        for item in valid_cases(&endpoints, seed, cases) {
            // The receiver is gone: the run stopped.
            if tx.blocking_send(item).is_err() {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(concurrency * TASKS_PER_PERMIT));
    // Large cases (up to 1 MiB each way) go one at a time, so they neither crowd out
    // the small requests nor multiply the memory a run needs.
    let large_lane = Arc::new(Semaphore::new(1));
    while let Some((e, i, case)) = rx.recv().await {
        if ctx.stopped() {
            break;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (ctx, pool) = (ctx.clone(), pool.clone());
        let lane = is_large(i, cases).then(|| large_lane.clone());
        set.spawn(async move {
            let _permit = permit;
            let _lane = match lane {
                Some(lane) => match lane.acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                None => None,
            };
            if let Err((_, m)) = run_valid(&ctx, &pool, i, case).await
                && about_the_request(&m)
                && let Ok(mut first) = ctx.s.first_valid_failure.lock()
            {
                let slot = first.entry(e).or_insert(i);
                *slot = (*slot).min(i);
            }
        });
        // Finished tasks are reaped as we go, so the set stays small too.
        while set.try_join_next().is_some() {}
    }
    drop(rx);
    // The producer only waits on the channel just closed, so this returns at once.
    let _ = producer.await;
    while set.join_next().await.is_some() {
        if ctx.stopped() {
            set.abort_all();
        }
    }
    let failing: Vec<(Endpoint, usize)> = match ctx.s.first_valid_failure.lock() {
        Ok(f) => f.iter().map(|(e, i)| (*e, *i)).collect(),
        Err(_) => Vec::new(),
    };
    let handle = tokio::runtime::Handle::current();
    let mut shrinks = JoinSet::new();
    for (e, i) in failing {
        let (c, h, p) = (ctx.clone(), handle.clone(), pool.clone());
        shrinks.spawn_blocking(move || (e, shrink(c, h, p, e, i)));
    }
    while let Some(done) = shrinks.join_next().await {
        if let Ok((e, Some(f))) = done {
            ctx.with_report(|r| {
                // The shrunk case goes first: it is the one worth reading.
                if let Some(cell) = r.cells.get_mut(&(e, Check::PositiveAcceptance)) {
                    cell.failures.insert(0, f);
                    cell.failures.truncate(super::report::MAX_FAILURES_PER_CELL);
                }
            });
        }
    }
    for c in &pool {
        ctx.hang_up(c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_cases_are_drawn_on_demand() {
        // With four billion cases per endpoint, anything that drew them all first
        // would never get here. (These two endpoints have no large cases.)
        let two = [Endpoint::Hangup, Endpoint::RemoveParticipant];
        let first: Vec<(Endpoint, usize, Case)> = valid_cases(&two, 7, u32::MAX).take(6).collect();
        // Round-robin over the endpoints, so an interrupted run has covered each.
        let order: Vec<(Endpoint, usize)> = first.iter().map(|(e, i, _)| (*e, *i)).collect();
        let expected: Vec<(Endpoint, usize)> = (0..3)
            .flat_map(|i| two.iter().map(move |e| (*e, i)))
            .collect();
        assert_eq!(order, expected);
        // The typical cases are those `sample_valid` draws, whatever the count.
        let drawn: Vec<&Case> = first
            .iter()
            .filter(|(e, _, _)| *e == Endpoint::RemoveParticipant)
            .map(|(_, _, c)| c)
            .collect();
        let sample = sample_valid(Endpoint::RemoveParticipant, 7, 3);
        assert_eq!(drawn, sample.iter().collect::<Vec<_>>());
    }

    #[test]
    fn large_cases_come_first_and_redraw_the_same_for_shrinking() {
        let cases = 8;
        let drawn: Vec<(Endpoint, usize, Case)> =
            valid_cases(&[Endpoint::CreateCall], 7, cases).collect();
        assert_eq!(drawn.len(), 4 + 8);
        for (k, (e, i, case)) in drawn[..4].iter().enumerate() {
            assert_eq!(*i, cases as usize + k);
            let (_, tree) = draw_large(7, *e, cases, k).unwrap();
            assert_eq!(&tree.current(), case);
        }
        assert!(drawn[4..].iter().all(|(_, i, _)| !is_large(*i, cases)));
        // Near-limit comes second (see `generate::sizes`): a body close to 1 MiB.
        let near = drawn[1].2.body.as_ref().unwrap().len();
        assert!(near > crate::contract::MAX_BODY_BYTES - 2048, "{near}");
    }

    #[test]
    fn send_lines_carry_what_reproduces_the_request() {
        let signer =
            crate::auth::Signer::new(&crate::auth::AccessKey::from_base64("c2VjcmV0").unwrap());
        let mut config = GateConfig::new("https://u:p@x.example:8443/?sig=s", signer);
        config.prefix = "/calling".into();
        config.api_version = Some("2021-06-15-preview".into());
        config.timeout = Duration::from_millis(2500);
        let options = send_options(&config);
        let req = |body: &[u8], auth| Req {
            endpoint: Endpoint::Hangup,
            method: "POST",
            path: "/calls/it's/Hangup".into(),
            content_type: Some("application/json".into()),
            body: Some(body.to_vec()),
            auth,
        };
        let line = send_line(
            &options,
            &req(br#"{"a":"b c"}"#, AuthMode::DateOffset(-1200)),
        );
        assert_eq!(
            line,
            "acs-harness send POST '/calls/it'\\''s/Hangup' --target 'https://x.example:8443/' \
             --prefix '/calling' --api-version '2021-06-15-preview' --timeout 2500ms \
             --header 'Content-Type: application/json' --auth date-offset=-1200 --body '{\"a\":\"b c\"}'"
        );
        let line = send_line(&options, &req(b"{\xff}", AuthMode::Signed));
        assert!(line.ends_with(" --body-base64 e/99"), "{line}");
        assert!(!line.contains("--auth"), "{line}");
        let big = vec![b'a'; MAX_INLINE_BODY + 1];
        let line = send_line(&options, &req(&big, AuthMode::Signed));
        assert!(line.contains(" --body @body.json  # 65537 bytes"), "{line}");
        assert!(line.len() < 600, "{}", line.len());
    }

    #[test]
    fn large_cases_per_size_and_labels() {
        assert_eq!(large_count(Endpoint::CreateCall, 0), 0);
        assert_eq!(large_count(Endpoint::CreateCall, 8), 4);
        assert_eq!(large_count(Endpoint::CreateCall, 100), 4);
        assert_eq!(large_count(Endpoint::PlayAudio, 250), 4);
        assert_eq!(large_count(Endpoint::InviteParticipants, 2_000_000), 12);
        assert_eq!(large_count(Endpoint::Hangup, 100), 0);
        assert_eq!(case_label(Endpoint::CreateCall, 3, 100), "valid #3");
        assert_eq!(
            case_label(Endpoint::CreateCall, 101, 100),
            "valid #101 (large: near-limit)"
        );
    }
}
