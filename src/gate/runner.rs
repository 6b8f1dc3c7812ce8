//! Runs the gate: plans the cases, sends them with bounded concurrency, judges every
//! reply, shrinks failing valid cases through proptest's runner, and stops cleanly on
//! Ctrl-C, on the deadline, or when the target cannot be reached.

use super::cases::{self, Case};
use super::checks::{Check, Expect, Mismatch, describe_reply, error_shape, judge};
use super::report::{Failure, Report, RunEnd, shell_quote};
use crate::auth::{Signer, content_hash};
use crate::client::{AuthMode, Client, ClientError, Reply};
use crate::contract::{Endpoint, Rule, Violation};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Shrinking stops after this many attempts; each attempt is one or more requests.
const MAX_SHRINK_ITERS: u32 = 2000;

/// Shrinking one endpoint's case stops after this long (proptest's `max_shrink_time`).
const MAX_SHRINK_MS: u32 = 20_000;

/// Everything a gate run needs, already validated (the CLI builds it from its options).
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
    /// Requests in flight at most.
    pub concurrency: usize,
    /// The endpoints gated (all by default).
    pub endpoints: Vec<Endpoint>,
    /// Whether the target is the embedded double (reports say so).
    pub embedded: bool,
    /// The command line that replays the run, for reports.
    pub replay: String,
    /// Stop on Ctrl-C and report what was found (the CLI sets it; tests do not).
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
        if self.stopped() {
            return Sent::Stopped;
        }
        let Ok(_permit) = self.s.sem.acquire().await else {
            return Sent::Stopped;
        };
        if self.stopped() {
            return Sent::Stopped;
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
        match result {
            Ok(reply) => {
                self.global_checks(req, &reply);
                Sent::Reply(reply)
            }
            Err(e) if e.is_unreachable() => {
                self.abort(e.to_string());
                Sent::Stopped
            }
            Err(ClientError::Timeout(d)) => {
                Sent::Failed(format!("{TIMEOUT} (no complete answer within {d:?})"))
            }
            Err(e) => Sent::Failed(e.to_string()),
        }
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
            curl: Some(self.curl(req)),
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

    /// The request as a `curl` command; the signature is never shown.
    fn curl(&self, req: &Req) -> String {
        let body = req.body.as_deref().unwrap_or_default();
        let mut s = format!(
            "curl -X {} {}",
            req.method,
            shell_quote(self.s.client.url(&req.path).as_bytes())
        );
        if let Some(ct) = &req.content_type {
            s.push_str(&format!(
                " -H {}",
                shell_quote(format!("Content-Type: {ct}").as_bytes())
            ));
        }
        let date = match req.auth {
            AuthMode::DateOffset(secs) if secs < 0 => format!("<now - {}s>", secs.unsigned_abs()),
            AuthMode::DateOffset(secs) => format!("<now + {secs}s>"),
            _ => "<now>".to_string(),
        };
        if req.auth != AuthMode::MissingDate {
            s.push_str(&format!(" -H 'x-ms-date: {date}'"));
        }
        if req.auth != AuthMode::MissingContentHash {
            s.push_str(&format!(
                " -H 'x-ms-content-sha256: {}'",
                content_hash(body)
            ));
        }
        match req.auth {
            AuthMode::Signed | AuthMode::DateOffset(_) => {
                s.push_str(" -H 'Authorization: <signed>'")
            }
            AuthMode::Missing => {}
            AuthMode::OtherScheme => s.push_str(" -H 'Authorization: Bearer <token>'"),
            AuthMode::BadSignature => {
                s.push_str(" -H 'Authorization: <signed with a wrong signature>'")
            }
            AuthMode::BodyChangedAfterSigning => {
                s.push_str(" -H 'Authorization: <signed; last body byte changed after signing>'")
            }
            AuthMode::MissingDate | AuthMode::MissingContentHash => {
                s.push_str(" -H 'Authorization: <signed>'")
            }
            AuthMode::OtherHost => {
                s.push_str(" -H 'Authorization: <signed for host attacker.example>'")
            }
            AuthMode::OtherPath => s.push_str(" -H 'Authorization: <signed for another path>'"),
            AuthMode::OtherMethod => s.push_str(" -H 'Authorization: <signed for another method>'"),
        }
        if !body.is_empty() {
            if body.len() > 4096 {
                s.push_str(&format!(
                    " --data-binary @body.json  # {} bytes, starting {}",
                    body.len(),
                    shell_quote(&body[..120])
                ));
            } else {
                s.push_str(&format!(" --data-binary {}", shell_quote(body)));
            }
        }
        s
    }

    /// Creates a call for a case to run on; lenient (any 2xx with a `callLegId`) so
    /// a deviation of create call does not hide the checks of the other endpoints.
    async fn create_call(&self) -> Result<String, String> {
        let req = Req::of(&cases::canonical(Endpoint::CreateCall), "");
        match self.send(&req).await {
            Sent::Reply(r) if (200..300).contains(&r.status) => {
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "set-up create call gave no callLegId: {}",
                            describe_reply(&r)
                        )
                    })
            }
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

/// Runs one valid case with whatever set-up it needs; records it unless shrinking.
async fn run_valid(
    ctx: &Ctx,
    pool: &[String],
    index: usize,
    case: Case,
) -> Result<(), (Req, Mismatch)> {
    let e = case.endpoint;
    let label = format!("valid #{index}");
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
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: MAX_SHRINK_ITERS,
        max_shrink_time: MAX_SHRINK_MS,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed(seed, endpoint, "valid")),
    )
}

/// The `count` valid cases of `endpoint` for `seed`, in order.
pub fn sample_valid(endpoint: Endpoint, seed: u64, count: u32) -> Vec<Case> {
    let strategy = cases::valid(endpoint);
    let mut runner = case_runner(seed, endpoint, count);
    (0..count)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
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
    let strategy = cases::valid(endpoint);
    let mut runner = case_runner(ctx.s.seed, endpoint, ctx.s.cases);
    let mut tree = None;
    for _ in 0..=index {
        tree = Some(strategy.new_tree(&mut runner).ok()?);
    }
    let tree = tree?;
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
        &format!("valid #{index}, shrunk"),
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
    // A call's participants include its targets (CONTRACT.md): the first target, a
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
    // The validator's JSON path must appear in the message (CONTRACT.md: "the error
    // message names the offending property by its JSON path").
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
            if defect.path.is_empty() || message.contains(&defect.path) {
                Ok(())
            } else {
                Err(Mismatch {
                    expected: format!("{} naming {}", expect.describe(endpoint), defect.path),
                    got: describe_reply(&reply),
                    violations: vec![Violation {
                        path: "message".into(),
                        rule: Rule::Missing,
                        message: format!(
                            "the error message does not name the offending property {}",
                            defect.path
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

/// The bound on a whole run: every request the plan can send, each taking the full
/// timeout, in waves of `concurrency`, plus the shrinking time. A run that takes
/// longer is cut and reported as [`RunEnd::DeadlineReached`].
fn deadline(config: &GateConfig) -> Duration {
    // Per endpoint: a valid case costs at most four requests (set-up, case, clean-up),
    // an invalid class three, plus the auth, routing and lifecycle probes.
    let planned: u64 = config
        .endpoints
        .iter()
        .map(|e| {
            let classes = crate::generate::defect_classes(*e).len() as u64 + 1;
            u64::from(config.cases) * 4 + classes * 3 + 80
        })
        .sum::<u64>()
        + 2 * 8;
    let waves = planned.div_ceil(config.concurrency.max(1) as u64) + 16;
    config
        .timeout
        .saturating_mul(u32::try_from(waves).unwrap_or(u32::MAX))
        .saturating_add(Duration::from_millis(u64::from(MAX_SHRINK_MS)))
        .saturating_add(config.timeout)
}

/// Runs the gate against `config.target` and returns what it found. Never panics on
/// anything the target does; an unreachable target ends the run as
/// [`RunEnd::Aborted`].
pub async fn run_gate(config: GateConfig) -> Report {
    let started = Instant::now();
    let mut report = Report::new(
        redact_url(&config.target),
        config.embedded,
        config.seed,
        config.cases,
        config.endpoints.clone(),
    );
    report.replay = config.replay.clone();
    let client = match Client::new(
        &config.target,
        &config.prefix,
        config.api_version.as_deref(),
        config.signer.clone(),
        config.timeout,
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
    });
    let ctx = Ctx {
        s: shared.clone(),
        record: true,
    };
    let deadline = deadline(&config);
    let progress = config.progress.then(|| spawn_progress(shared.clone()));
    let ctrl_c = async {
        if config.handle_ctrl_c {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let end = tokio::select! {
        () = run_all(ctx.clone()) => None,
        () = ctrl_c => Some(RunEnd::Interrupted),
        () = tokio::time::sleep(deadline) => Some(RunEnd::DeadlineReached),
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

async fn run_all(ctx: Ctx) {
    let endpoints = ctx.s.endpoints.clone();
    let pool_size = ctx.s.sem.available_permits().clamp(1, 8);
    // One call first: an unreachable target stops the run here, within one connect.
    let mut pool = Vec::with_capacity(pool_size);
    match ctx.create_call().await {
        Ok(c) => pool.push(c),
        Err(_) if ctx.stopped() => return,
        // The cases that need a call create their own, and report why they could not.
        Err(_) => {}
    }
    // The rest of the pool and the hung-up call, concurrently: against a target that
    // hangs, set-up costs one timeout, not one per call.
    let mut setup = JoinSet::new();
    if !pool.is_empty() {
        for _ in 1..pool_size {
            let ctx = ctx.clone();
            setup.spawn(async move { (false, ctx.create_call().await) });
        }
    }
    let dead = ctx.clone();
    setup.spawn(async move {
        let call = dead.create_call().await;
        if let Ok(c) = &call {
            dead.hang_up(c).await;
        }
        (true, call)
    });
    let mut dead_call = None;
    while let Some(done) = setup.join_next().await {
        match done {
            Ok((true, Ok(c))) => dead_call = Some(c),
            Ok((false, Ok(c))) => pool.push(c),
            _ => {}
        }
    }
    if ctx.stopped() {
        return;
    }
    let mut set = JoinSet::new();
    set.spawn(lifecycle(ctx.clone()));
    for &e in &endpoints {
        for (i, case) in sample_valid(e, ctx.s.seed, ctx.s.cases)
            .into_iter()
            .enumerate()
        {
            let (ctx, pool) = (ctx.clone(), pool.clone());
            set.spawn(async move {
                if let Err((_, m)) = run_valid(&ctx, &pool, i, case).await
                    && about_the_request(&m)
                    && let Ok(mut first) = ctx.s.first_valid_failure.lock()
                {
                    let slot = first.entry(e).or_insert(i);
                    *slot = (*slot).min(i);
                }
            });
        }
        set.spawn(edge_cases(ctx.clone(), pool.clone(), e));
        set.spawn(invalid_cases(ctx.clone(), pool.clone(), e));
        set.spawn(auth_cases(ctx.clone(), pool.clone(), e));
        set.spawn(routing_cases(ctx.clone(), e, dead_call.clone()));
    }
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

/// The URL without userinfo, for reports.
pub(crate) fn redact_url(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => target.to_string(),
    }
}
