//! The goose wiring: scenario files become goose scenarios whose transactions send signed
//! requests named per endpoint, check the answers against the contract, and keep each
//! user's call and participants in its session data.

use super::bodies::{Bodies, Next, PreparedBody, index};
use super::events::{self, Await, Pending};
use super::scenario;
use crate::auth::{Signer, content_hash, format_date};
use crate::contract::{Endpoint, encode_segment, validate_response};
use crate::redact;
use bytes::Bytes;
use goose::goose::{GooseMethod, GooseUser, Scenario, Transaction, TransactionError};
use goose::prelude::{GooseRequest, TransactionFunction, TransactionResult};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header names the requests carry, parsed once.
static X_MS_DATE: HeaderName = HeaderName::from_static("x-ms-date");
static X_MS_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-ms-content-sha256");

/// A user that has to skip a step (no call yet, bodies used up) pauses at least this
/// long, so it never spins without awaiting anything.
const SKIP_PAUSE: Duration = Duration::from_millis(50);

/// Participants kept per user for later removal; older ones are forgotten.
const MAX_PENDING_PARTICIPANTS: usize = 64;

/// Response bodies are read up to this many bytes, as in the gate; a longer answer fails
/// the request and is not read further, so a hostile target cannot grow a user's memory.
pub const MAX_RESPONSE_BYTES: usize = crate::client::MAX_RESPONSE_BYTES;

/// Open calls remembered for the final hang-up; calls beyond it are counted as untracked.
/// Each user holds one call at a time, so only failed hang-ups make the set grow.
const MAX_TRACKED_CALLS: usize = 65_536;

/// Hang-ups sent at once at the end of the run.
const HANGUP_CONCURRENCY: usize = 64;

/// Where requests go and how they are signed.
pub struct Target {
    /// `scheme://host[:port]`, what goose calls the host.
    pub origin: String,
    /// The path prefix (`""` or `/calling`), no trailing slash.
    pub prefix: String,
    /// `""` or `?api-version=...`.
    pub query: String,
    /// The `Host` header as the client sends it (host, and port when not the default).
    pub host_header: String,
    /// Signs every request.
    pub signer: Signer,
    /// `origin` parsed, on first use: each request then parses only its own path, not
    /// the host again.
    pub parsed_origin: std::sync::OnceLock<Option<url::Url>>,
}

impl Target {
    /// The target of a run against `url` (its path first, then `prefix`), with the
    /// `api-version` query when given: built as the gate's client builds them.
    pub fn new(url: &url::Url, prefix: &str, api_version: Option<&str>, signer: Signer) -> Target {
        let host_header = crate::client::host_port(url);
        Target {
            origin: format!("{}://{host_header}", url.scheme()),
            prefix: crate::client::base_path(url, prefix),
            query: crate::client::api_version_query(api_version),
            host_header,
            signer,
            parsed_origin: Default::default(),
        }
    }

    /// The URL of a request to `path` (percent-encoded, with the prefix) and the path and
    /// query it is signed for, read back from that URL so both always agree.
    fn request_url(&self, path: &str) -> Result<(url::Url, String), String> {
        let mut url = match self
            .parsed_origin
            .get_or_init(|| url::Url::parse(&self.origin).ok())
        {
            Some(base) => base.clone(),
            None => url::Url::parse(&self.origin).map_err(|e| format!("the target URL: {e}"))?,
        };
        url.set_path(path);
        url.set_query(self.query.strip_prefix('?'));
        let path_and_query = crate::client::wire_path_and_query(&url);
        Ok((url, path_and_query))
    }
}

/// Everything a transaction needs, shared by all users.
pub struct Context {
    /// The target.
    pub target: Target,
    /// The bodies.
    pub bodies: Bodies,
    /// Set when the last `--bodies` body went out and this harness stopped the run, so
    /// that end is told apart from a Ctrl-C (both go through goose's killswitch).
    pub all_bodies_sent: AtomicBool,
    /// The calls the run created and has not hung up yet.
    pub calls: Calls,
    /// The run's event receiver: the callbackUri of every call, where awaited events arrive.
    pub receiver: crate::receiver::Receiver,
}

/// The calls a run created, kept so that every one of them is hung up before the run
/// ends, whatever stopped the users (run time, Ctrl-C, a threshold).
#[derive(Default)]
pub struct Calls {
    inner: Mutex<CallBook>,
}

#[derive(Default)]
struct CallBook {
    /// `{prefix}/calls/{callId}` of each open call.
    open: HashSet<Arc<str>>,
    created: u64,
    hung_up: u64,
    gone: u64,
    untracked: u64,
}

impl Calls {
    fn book(&self) -> std::sync::MutexGuard<'_, CallBook> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a call the target created.
    fn created(&self, call: &Arc<str>) {
        let mut book = self.book();
        book.created += 1;
        if book.open.len() < MAX_TRACKED_CALLS {
            book.open.insert(call.clone());
        } else {
            book.untracked += 1;
        }
    }

    /// Records that a call ended: hung up by the run (`hung_up`), or found gone (404).
    fn closed(&self, call: &str, hung_up: bool) {
        let mut book = self.book();
        if book.open.remove(call) {
            if hung_up {
                book.hung_up += 1;
            } else {
                book.gone += 1;
            }
        }
    }

    /// How many calls are open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.book().open.len()
    }
}

/// What became of the calls a run created; printed as the run's last summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallsSummary {
    /// Calls the target created for this run.
    pub created: u64,
    /// Calls the run hung up (during the run and at its end).
    pub hung_up: u64,
    /// Of those, hung up at the end of the run.
    pub hung_up_at_end: u64,
    /// Calls the target no longer knew (404) when the run sent a request on them.
    pub gone: u64,
    /// Calls still open: their hang-up failed or did not finish within the grace period.
    pub left_open: u64,
}

impl fmt::Display for CallsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "calls: {} created, {} hung up ({} at the end of the run)",
            self.created, self.hung_up, self.hung_up_at_end
        )?;
        if self.gone > 0 {
            write!(f, ", {} already gone (404)", self.gone)?;
        }
        if self.left_open > 0 {
            write!(f, ", {} left open", self.left_open)?;
        }
        Ok(())
    }
}

/// What one final hang-up achieved.
enum HangupOutcome {
    HungUp,
    Gone,
    Failed,
}

/// Hangs up every call the run created and did not hang up, all at once (at most
/// [`HANGUP_CONCURRENCY`] in flight), signed like every other request, within `grace`
/// in total; returns what became of the run's calls.
pub async fn hang_up_all(ctx: &Arc<Context>, grace: Duration) -> CallsSummary {
    let open: Vec<Arc<str>> = ctx.calls.book().open.iter().cloned().collect();
    let mut hung_up_at_end = 0;
    if !open.is_empty() {
        let client = reqwest::Client::builder().no_gzip().timeout(grace).build();
        if let Ok(client) = client {
            let deadline = tokio::time::Instant::now() + grace;
            let permits = Arc::new(tokio::sync::Semaphore::new(HANGUP_CONCURRENCY));
            let mut tasks = tokio::task::JoinSet::new();
            for call in open {
                let (ctx, client, permits) = (ctx.clone(), client.clone(), permits.clone());
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let outcome = hang_up(&ctx, &client, &call).await;
                    (call, outcome)
                });
            }
            loop {
                match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                    Ok(Some(Ok((call, outcome)))) => match outcome {
                        HangupOutcome::HungUp => {
                            ctx.calls.closed(&call, true);
                            hung_up_at_end += 1;
                        }
                        HangupOutcome::Gone => ctx.calls.closed(&call, false),
                        HangupOutcome::Failed => {}
                    },
                    Ok(Some(Err(_))) => {}
                    Ok(None) => break,
                    Err(_) => {
                        tasks.abort_all();
                        break;
                    }
                }
            }
        }
    }
    let book = ctx.calls.book();
    CallsSummary {
        created: book.created,
        hung_up: book.hung_up,
        hung_up_at_end,
        gone: book.gone,
        left_open: book.open.len() as u64 + book.untracked,
    }
}

/// Sends one signed Hangup for `call` (`{prefix}/calls/{callId}`).
async fn hang_up(ctx: &Context, client: &reqwest::Client, call: &str) -> HangupOutcome {
    let target = &ctx.target;
    let Ok((url, path_and_query)) = target.request_url(&format!("{call}/Hangup")) else {
        return HangupOutcome::Failed;
    };
    let hash = content_hash(b"");
    let (auth, date) = sign(
        &target.signer,
        "POST",
        &path_and_query,
        &target.host_header,
        &hash,
    );
    let sent = client
        .post(url)
        .header(&X_MS_DATE, date)
        .header(&X_MS_CONTENT_SHA256, hash)
        .header(AUTHORIZATION, auth)
        .send()
        .await;
    match sent.map(|r| r.status().as_u16()) {
        Ok(s) if (200..300).contains(&s) => HangupOutcome::HungUp,
        Ok(404) => HangupOutcome::Gone,
        _ => HangupOutcome::Failed,
    }
}

/// Collects a response body chunk by chunk and refuses to hold more than its cap: the
/// reading stops at the first chunk that would pass it.
pub struct CappedBody {
    cap: usize,
    /// The first chunk, kept as is: most answers arrive in one, so they are not copied.
    first: Option<Bytes>,
    rest: Vec<u8>,
}

/// A response body longer than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the response is larger than the {cap}-byte cap; the rest was not read")]
pub struct TooLarge {
    /// The cap in bytes.
    pub cap: usize,
}

impl CappedBody {
    /// An empty body that takes at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CappedBody {
            cap,
            first: None,
            rest: Vec::new(),
        }
    }

    /// Bytes collected so far.
    pub fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    /// Whether nothing was collected.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a chunk, or refuses it (keeping nothing of it) when it would pass the cap.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), TooLarge> {
        if chunk.len() > self.cap - self.len() {
            return Err(TooLarge { cap: self.cap });
        }
        match &self.first {
            None if self.rest.is_empty() => self.first = Some(chunk),
            _ => {
                if let Some(first) = self.first.take() {
                    self.rest.reserve(first.len() + chunk.len());
                    self.rest.extend_from_slice(&first);
                }
                self.rest.extend_from_slice(&chunk);
            }
        }
        Ok(())
    }

    /// The whole body.
    pub fn finish(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => Bytes::from(self.rest),
        }
    }
}

/// Reads a response body under [`MAX_RESPONSE_BYTES`]: an announced length past the cap
/// is refused before reading, a longer stream at the cap. Dropping the response on an
/// error closes the connection instead of draining it.
async fn read_body(response: &mut reqwest::Response) -> Result<Bytes, String> {
    let cap = MAX_RESPONSE_BYTES;
    if let Some(n) = response.content_length()
        && n > cap as u64
    {
        return Err(format!(
            "the response announces {n} bytes, more than the {cap}-byte cap; not read"
        ));
    }
    let mut body = CappedBody::new(cap);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.push(chunk).map_err(|e| e.to_string())?,
            Ok(None) => return Ok(body.finish()),
            Err(e) => {
                return Err(format!(
                    "reading the response failed: {}",
                    redact::clip(&e.to_string(), 300)
                ));
            }
        }
    }
}

/// A user's state between its requests.
#[derive(Clone, Default)]
struct UserState {
    /// `{prefix}/calls/{callId}` of the user's current call.
    call: Option<Arc<str>>,
    /// The `callLegId` of that call, as its events name it.
    call_leg_id: Option<Arc<str>>,
    /// Requests sent with a unique `operationContext` so far: the next one's serial.
    serial: u64,
    /// Participants invited and not yet removed, percent-encoded.
    participants: VecDeque<String>,
    /// The user's position in each endpoint's body pool.
    cursors: [usize; 6],
}

/// The name goose reports an endpoint's requests under. goose prefixes the method and
/// cuts the result to 24 characters in its console tables, so each name is short enough
/// to show in full and tell the endpoints apart.
pub fn request_label(e: Endpoint) -> &'static str {
    match e {
        Endpoint::CreateCall => "/calls",
        Endpoint::Hangup => "hangup",
        Endpoint::PlayAudio => "play-audio",
        Endpoint::CancelMediaProcessing => "cancel-media",
        Endpoint::InviteParticipants => "participants",
        Endpoint::RemoveParticipant => "participant",
    }
}

/// `METHOD label`, the key of an endpoint's requests in goose's metrics and reports.
///
/// Load reports (`--report-file report.json`) list each endpoint's requests and
/// response times under this key.
///
/// ```
/// use acs_harness::{Endpoint, request_key};
///
/// assert_eq!(request_key(Endpoint::CreateCall), "POST /calls");
/// assert_eq!(request_key(Endpoint::PlayAudio), "POST play-audio");
/// ```
pub fn request_key(e: Endpoint) -> String {
    format!("{} {}", e.method(), request_label(e))
}

/// The endpoint a request name in a threshold means: its goose key (`POST play-audio`),
/// its endpoint name (`play-audio`) or its contract name (`POST /calls/{callId}/PlayAudio`).
pub fn endpoint_named(name: &str) -> Option<Endpoint> {
    Endpoint::ALL
        .into_iter()
        .find(|&e| name == request_key(e) || name == e.name() || name == e.request_name())
}

/// Builds the goose scenario for one scenario of a file.
pub fn build(ctx: &Arc<Context>, s: &scenario::Scenario) -> Result<Scenario, goose::GooseError> {
    let mut out = Scenario::new(&s.name).set_weight(s.weight)?;
    let mut sequence = 0;
    for (steps, phase) in [(&s.on_start, 0), (&s.steps, 1), (&s.on_stop, 2)] {
        for step in steps {
            for _ in 0..step.repeat {
                sequence += 1;
                let mut t = Transaction::new(step_fn(ctx.clone(), *step))
                    .set_name(step.endpoint.name())
                    .set_sequence(sequence);
                t = match phase {
                    0 => t.set_on_start(),
                    2 => t.set_on_stop(),
                    _ => t,
                };
                out = out.register_transaction(t);
            }
        }
    }
    Ok(out)
}

fn step_fn(ctx: Arc<Context>, step: scenario::Step) -> TransactionFunction {
    let think = step.think;
    Arc::new(move |user| {
        let ctx = ctx.clone();
        Box::pin(async move {
            let (result, skipped) = match send(&ctx, user, step.endpoint, step.awaits).await {
                Sent::Skipped => (Ok(()), true),
                Sent::Done(r) => (r, false),
                Sent::Awaiting(pending) => {
                    let outcome = events::await_event(&ctx.receiver, &pending).await;
                    (events::record(user, pending.event, &outcome).await, false)
                }
            };
            let pause = if skipped {
                think.max(SKIP_PAUSE)
            } else {
                think
            };
            think_for(pause).await;
            result
        })
    })
}

/// Sleeps `d`, waking early when the run is being stopped (Ctrl-C, a threshold, the
/// last replayed body). Always sleeps at least one slice of a non-zero `d`, so a user
/// that skips steps yields even while the run stops.
async fn think_for(d: Duration) {
    let slice = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        let now = left.min(slice);
        tokio::time::sleep(now).await;
        left -= now;
        if goose::is_killswitch_triggered() {
            break;
        }
    }
}

enum Sent {
    Skipped,
    Done(TransactionResult),
    /// Accepted; the step awaits this event before it goes on.
    Awaiting(Pending),
}

thread_local! {
    /// `x-ms-date` changes once a second; formatting it once per second per thread
    /// keeps it off the per-request cost.
    static DATE: RefCell<(u64, String, HeaderValue)> =
        const { RefCell::new((u64::MAX, String::new(), HeaderValue::from_static(""))) };
}

/// The `Authorization` and `x-ms-date` values for a request sent now.
fn sign(
    signer: &Signer,
    method: &str,
    path_and_query: &str,
    host: &str,
    hash: &str,
) -> (HeaderValue, HeaderValue) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = format_date(now);
            let value =
                HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
            *cached = (secs, text, value);
        }
        let auth = signer.authorization(method, path_and_query, host, &cached.1, hash);
        let mut auth = HeaderValue::try_from(auth).unwrap_or_else(|_| HeaderValue::from_static(""));
        // Keeps the signature out of any header dump goose or reqwest may log.
        auth.set_sensitive(true);
        (auth, cached.2.clone())
    })
}

/// `METHOD /path/template` of an endpoint, written only when a reason needs it.
struct RequestName(Endpoint);

impl fmt::Display for RequestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.method(), self.0.path_template())
    }
}

fn error(reason: String) -> TransactionResult {
    Err(Box::new(TransactionError::Custom(reason)))
}

async fn send(
    ctx: &Context,
    user: &mut GooseUser,
    endpoint: Endpoint,
    awaits: Option<Await>,
) -> Sent {
    let user_index = user.weighted_users_index;
    if user.get_session_data::<UserState>().is_none() {
        user.set_session_data(UserState::default());
    }
    let target = &ctx.target;
    // Take what this request needs out of the session, so `user` is free to send it.
    let (call, path, body, last, unique) = {
        let Some(state) = user.get_session_data_mut::<UserState>() else {
            return Sent::Skipped;
        };
        let call = state.call.clone();
        let path = match (endpoint, &call) {
            (Endpoint::CreateCall, _) => format!("{}/calls", target.prefix),
            // A user without a call sends nothing on a call.
            (_, None) => return Sent::Skipped,
            (Endpoint::RemoveParticipant, Some(call)) => match state.participants.pop_front() {
                Some(p) => format!("{call}/participants/{p}"),
                None => return Sent::Skipped,
            },
            (e, Some(call)) => {
                let tail = e.path_template().rsplit('/').next().unwrap_or_default();
                format!("{call}/{tail}")
            }
        };
        let cursor = &mut state.cursors[index(endpoint)];
        let (body, last) = match ctx.bodies.next(user_index, endpoint, cursor) {
            Next::Body { body, last } => (body, last),
            Next::Exhausted => return Sent::Skipped,
        };
        // A body with a context slot gets this request's own operationContext, so its
        // result event cannot be mistaken for another request's. The user's index in the
        // high bits keeps contexts apart across the process's users, too.
        let unique = body.context_slot.and_then(|_| {
            state.serial = state.serial.wrapping_add(1) & 0xffff_ffff;
            body.with_serial(((user_index as u64) << 32) | state.serial)
        });
        (call, path, body, last, unique)
    };
    let (bytes, hash, context) = match &unique {
        Some(u) => (&u.bytes, &u.hash, Some(u.context.as_str())),
        None => (&body.bytes, &body.hash, body.context.as_deref()),
    };
    let (url, path_and_query) = match target.request_url(&path) {
        Ok(u) => u,
        Err(reason) => return Sent::Done(error(reason)),
    };
    let method = endpoint.method();
    let (auth, date) = sign(
        &target.signer,
        method,
        &path_and_query,
        &target.host_header,
        hash.to_str().unwrap_or_default(),
    );

    let (reqwest_method, goose_method) = if method == "DELETE" {
        (reqwest::Method::DELETE, GooseMethod::Delete)
    } else {
        (reqwest::Method::POST, GooseMethod::Post)
    };
    let mut rb = user
        .client
        .request(reqwest_method, url)
        .header(&X_MS_DATE, date)
        .header(&X_MS_CONTENT_SHA256, hash.clone())
        .header(AUTHORIZATION, auth);
    if let Some(ct) = &body.content_type {
        rb = rb.header(CONTENT_TYPE, ct.clone());
    }
    if !bytes.is_empty() {
        rb = rb.body(bytes.clone());
    }
    let request = GooseRequest::builder()
        .method(goose_method)
        .name(request_label(endpoint))
        .set_request_builder(rb)
        .build();
    let sent_at = std::time::Instant::now();
    let mut sent = match user.request(request).await {
        Ok(s) => s,
        Err(e) => return Sent::Done(Err(e)),
    };
    if last {
        // Every replayed body is out: end the run, which still writes the reports.
        ctx.all_bodies_sent.store(true, Ordering::Relaxed);
        goose::trigger_killswitch("every body of the --bodies file was sent");
    }
    let name = RequestName(endpoint);
    let mut response = match sent.response {
        Ok(r) => r,
        Err(e) => {
            return Sent::Done(error(format!(
                "{name}: {}",
                redact::clip(&e.to_string(), 300)
            )));
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers();
    let content_type = headers.get(CONTENT_TYPE).cloned();
    // No request asks for a compressed answer and none is decompressed (a small
    // compressed body can expand past any cap); an encoded answer cannot be checked.
    let encoding = headers
        .get(CONTENT_ENCODING)
        .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        .map(|v| redact::clip(&String::from_utf8_lossy(v.as_bytes()), 40));
    let answer = match encoding {
        Some(encoding) => Err(format!(
            "the response is {encoding}-encoded though the request accepts no encoding; not read"
        )),
        None => read_body(&mut response).await,
    };
    drop(response);
    let answer = match answer {
        Ok(b) => b,
        Err(reason) => {
            // A 2xx answer goose counted as a success; any other status goose already
            // counted as a failure, and the transaction error says why it is unreadable.
            if let (Some(state), Some(call)) =
                (user.get_session_data_mut::<UserState>(), call.as_ref())
            {
                forget_call(ctx, state, endpoint, status, call);
            }
            let reason = format!("{name}: {reason}");
            return Sent::Done(if (200..300).contains(&status) {
                user.set_failure(&reason, &mut sent.request, None, None)
            } else {
                error(reason)
            });
        }
    };
    let content_type = content_type.as_ref().and_then(|v| v.to_str().ok());
    let verdict = check(
        endpoint,
        body.expect_error,
        context,
        status,
        content_type,
        &answer,
    );
    let Some(state) = user.get_session_data_mut::<UserState>() else {
        return Sent::Done(verdict.map_err(|r| Box::new(TransactionError::Custom(r))));
    };
    // What the step awaits once the answer is right: the event of the call it is on.
    let mut awaited_call = state.call_leg_id.clone();
    if endpoint == Endpoint::CreateCall && status == 200 {
        awaited_call = None;
        // Tracked even when the answer breaks the contract: the call may exist all the same.
        if let Some(id) = call_leg_id(&answer) {
            let created: Arc<str> = format!("{path}/{}", encode_segment(&id)).into();
            ctx.calls.created(&created);
            if verdict.is_ok() {
                // A call the user leaves behind (its hang-up failed) no longer needs its events.
                if let Some(old) = state.call_leg_id.take() {
                    ctx.receiver.forget(&old);
                }
                let id: Arc<str> = id.into();
                state.call = Some(created);
                state.call_leg_id = Some(id.clone());
                state.participants.clear();
                awaited_call = Some(id);
            }
        }
    } else if let Some(call) = call.as_ref() {
        forget_call(ctx, state, endpoint, status, call);
        if verdict.is_ok() && endpoint == Endpoint::InviteParticipants {
            remember_participants(state, body);
        }
    }
    let pending = match (awaits, awaited_call) {
        // A looping play has no result until something stops it: nothing to await.
        (Some(a), Some(call)) if !body.never_ends && !body.expect_error => Some(Pending {
            event: a.event,
            call_leg_id: call.to_string(),
            context: match endpoint {
                Endpoint::CreateCall => None,
                _ => context.map(str::to_string),
            },
            sent_at,
            timeout: a.timeout,
        }),
        _ => None,
    };
    match verdict {
        Ok(()) => match pending {
            Some(p) => Sent::Awaiting(p),
            None => Sent::Done(Ok(())),
        },
        Err(reason) if (200..300).contains(&status) => {
            // goose counted a 2xx as a success; record it as the failure it is.
            Sent::Done(user.set_failure(
                &format!("{name}: {reason}"),
                &mut sent.request,
                None,
                None,
            ))
        }
        // goose already counted the error status; the transaction error says why.
        Err(reason) => Sent::Done(error(format!("{name}: {reason}"))),
    }
}

/// Ends the user's use of `call` when the answer says it ended: any 2xx to its Hangup,
/// or a 404 on it; the run's call book learns it too.
fn forget_call(
    ctx: &Context,
    state: &mut UserState,
    endpoint: Endpoint,
    status: u16,
    call: &Arc<str>,
) {
    let hung_up = endpoint == Endpoint::Hangup && (200..300).contains(&status);
    if !hung_up && status != 404 {
        return;
    }
    ctx.calls.closed(call, hung_up);
    if state.call.as_ref() == Some(call) {
        state.call = None;
        state.participants.clear();
        // The user is done with the call: its events need not be kept any longer.
        if let Some(id) = state.call_leg_id.take() {
            ctx.receiver.forget(&id);
        }
    }
}

/// The `callLegId` of a create call answer, if it has one.
fn call_leg_id(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct CallLeg {
        #[serde(rename = "callLegId")]
        call_leg_id: String,
    }
    serde_json::from_slice::<CallLeg>(bytes)
        .ok()
        .map(|leg| leg.call_leg_id)
        .filter(|id| !id.is_empty())
}

/// Whether the answer is what the contract promises for this request; the reason if not.
fn check(
    endpoint: Endpoint,
    expect_error: bool,
    context: Option<&str>,
    status: u16,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<(), String> {
    let expected = endpoint.success_status();
    let violations = |v: Vec<crate::contract::Violation>| {
        let list: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        format!(
            "response breaks the contract: {}",
            redact::clip(&list.join("; "), 300)
        )
    };
    if expect_error {
        if (400..500).contains(&status) {
            return validate_response(endpoint, status, content_type, bytes, None)
                .map_err(violations);
        }
        return Err(format!(
            "status {status} for a request that breaks the contract (expected 4xx)"
        ));
    }
    if status != expected {
        let message = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(|m| redact::clip(m, 200))
            });
        return Err(match message {
            Some(m) => format!("status {status}, expected {expected}: {m}"),
            None => format!("status {status}, expected {expected}"),
        });
    }
    validate_response(endpoint, status, content_type, bytes, context).map_err(violations)
}

fn remember_participants(state: &mut UserState, body: &PreparedBody) {
    for p in &body.participants {
        let id = encode_segment(p);
        // Invited twice is still one participant: removing it twice would 404.
        if state.participants.contains(&id) {
            continue;
        }
        if state.participants.len() >= MAX_PENDING_PARTICIPANTS {
            state.participants.pop_front();
        }
        state.participants.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_body_stops_at_the_cap_and_keeps_nothing_past_it() {
        let mut body = CappedBody::new(10);
        body.push(Bytes::from_static(b"0123")).unwrap();
        body.push(Bytes::from_static(b"4567")).unwrap();
        assert_eq!(body.len(), 8);
        // The chunk that would pass the cap is refused whole.
        assert_eq!(
            body.push(Bytes::from_static(b"89a")),
            Err(TooLarge { cap: 10 })
        );
        assert_eq!(body.len(), 8);
        body.push(Bytes::from_static(b"89")).unwrap();
        assert_eq!(
            body.push(Bytes::from_static(b"x")),
            Err(TooLarge { cap: 10 })
        );
        assert_eq!(&body.finish()[..], b"0123456789");
    }

    #[test]
    fn capped_body_keeps_a_single_chunk_without_copying() {
        let chunk = Bytes::from(vec![7u8; 100]);
        let mut body = CappedBody::new(MAX_RESPONSE_BYTES);
        body.push(chunk.clone()).unwrap();
        let out = body.finish();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert!(CappedBody::new(1).finish().is_empty());
        // A single chunk past the cap is refused.
        let mut body = CappedBody::new(99);
        assert!(body.push(chunk).is_err());
        assert!(body.is_empty());
    }

    #[test]
    fn calls_summary_counts_each_call_once() {
        let calls = Calls::default();
        let a: Arc<str> = "/calls/a".into();
        let b: Arc<str> = "/calls/b".into();
        calls.created(&a);
        calls.created(&b);
        calls.closed(&a, true);
        // A second answer on a call already closed changes nothing.
        calls.closed(&a, false);
        assert_eq!(calls.open(), 1);
        let book = calls.book();
        assert_eq!((book.created, book.hung_up, book.gone), (2, 1, 0));
    }

    #[test]
    fn request_names_show_in_full_in_goose_tables_and_differ() {
        let keys: HashSet<String> = Endpoint::ALL.into_iter().map(request_key).collect();
        assert_eq!(keys.len(), Endpoint::ALL.len());
        for e in Endpoint::ALL {
            let key = request_key(e);
            assert_eq!(goose::util::truncate_string(&key, 24), key);
            assert_eq!(endpoint_named(&key), Some(e));
            assert_eq!(endpoint_named(e.name()), Some(e));
            assert_eq!(endpoint_named(&e.request_name()), Some(e));
            assert_eq!(RequestName(e).to_string(), e.request_name());
        }
    }

    #[test]
    fn request_urls_carry_prefix_path_and_query_and_sign_what_is_sent() {
        let key = crate::auth::AccessKey::from_base64("a2V5").unwrap();
        let target = Target {
            origin: "http://127.0.0.1:8080".into(),
            prefix: "/calling".into(),
            query: "?api-version=2021-06-15-preview".into(),
            host_header: "127.0.0.1:8080".into(),
            signer: Signer::new(&key),
            parsed_origin: Default::default(),
        };
        for _ in 0..2 {
            let (url, signed) = target.request_url("/calling/calls/a%2Fb/Hangup").unwrap();
            assert_eq!(
                url.as_str(),
                "http://127.0.0.1:8080/calling/calls/a%2Fb/Hangup?api-version=2021-06-15-preview"
            );
            assert_eq!(
                signed,
                "/calling/calls/a%2Fb/Hangup?api-version=2021-06-15-preview"
            );
        }
        let plain = Target {
            query: String::new(),
            parsed_origin: Default::default(),
            ..target
        };
        let (url, signed) = plain.request_url("/calls").unwrap();
        assert_eq!(
            (url.as_str(), signed.as_str()),
            ("http://127.0.0.1:8080/calls", "/calls")
        );
    }

    #[test]
    fn api_version_travels_with_its_hyphens_unencoded() {
        let key = crate::auth::AccessKey::from_base64("a2V5").unwrap();
        let url = url::Url::parse("http://127.0.0.1:8080/base/").unwrap();
        let target = Target::new(
            &url,
            "calling/",
            Some("2021-04-15-preview1"),
            Signer::new(&key),
        );
        assert_eq!(target.origin, "http://127.0.0.1:8080");
        assert_eq!(target.host_header, "127.0.0.1:8080");
        let (url, signed) = target
            .request_url(&format!("{}/calls", target.prefix))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/base/calling/calls?api-version=2021-04-15-preview1"
        );
        assert_eq!(
            signed,
            "/base/calling/calls?api-version=2021-04-15-preview1"
        );
    }

    #[test]
    fn calls_summary_line_states_created_and_hung_up() {
        let s = CallsSummary {
            created: 5,
            hung_up: 4,
            hung_up_at_end: 2,
            gone: 0,
            left_open: 1,
        };
        assert_eq!(
            s.to_string(),
            "calls: 5 created, 4 hung up (2 at the end of the run), 1 left open"
        );
    }
}
