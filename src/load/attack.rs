//! The goose wiring: scenario files become goose scenarios whose transactions send signed
//! requests named per endpoint, check the answers against the contract, and keep each
//! user's call and participants in its session data.

use super::bodies::{Bodies, Next, PreparedBody, index};
use super::scenario;
use crate::auth::{Signer, format_date};
use crate::contract::{Endpoint, encode_segment, validate_response};
use goose::goose::{GooseMethod, GooseUser, Scenario, Transaction, TransactionError};
use goose::prelude::{GooseRequest, TransactionFunction, TransactionResult};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A user that has to skip a step (no call yet, bodies used up) pauses at least this
/// long, so it never spins without awaiting anything.
const SKIP_PAUSE: Duration = Duration::from_millis(50);

/// Participants kept per user for later removal; older ones are forgotten.
const MAX_PENDING_PARTICIPANTS: usize = 64;

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
}

/// A user's state between its requests.
#[derive(Clone, Default)]
struct UserState {
    /// `{prefix}/calls/{callId}` of the user's current call.
    call: Option<String>,
    /// Participants invited and not yet removed, percent-encoded.
    participants: VecDeque<String>,
    /// The user's position in each endpoint's body pool.
    cursors: [usize; 6],
}

/// Builds the goose scenario for one scenario of a file.
pub fn build(ctx: &Arc<Context>, s: &scenario::Scenario) -> Result<Scenario, goose::GooseError> {
    let mut out = Scenario::new(&s.name).set_weight(s.weight)?;
    let mut sequence = 0;
    for (steps, phase) in [(&s.on_start, 0), (&s.steps, 1), (&s.on_stop, 2)] {
        for step in steps {
            for _ in 0..step.repeat {
                sequence += 1;
                let mut t = Transaction::new(step_fn(ctx.clone(), step.endpoint, step.think))
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

fn step_fn(ctx: Arc<Context>, endpoint: Endpoint, think: Duration) -> TransactionFunction {
    Arc::new(move |user| {
        let ctx = ctx.clone();
        Box::pin(async move {
            let (result, skipped) = match send(&ctx, user, endpoint).await {
                Sent::Skipped => (Ok(()), true),
                Sent::Done(r) => (r, false),
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

fn error(reason: String) -> TransactionResult {
    Err(Box::new(TransactionError::Custom(reason)))
}

/// At most `n` characters of `s`, for reasons that quote a response.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

async fn send(ctx: &Context, user: &mut GooseUser, endpoint: Endpoint) -> Sent {
    let user_index = user.weighted_users_index;
    if user.get_session_data::<UserState>().is_none() {
        user.set_session_data(UserState::default());
    }
    let target = &ctx.target;
    // Take what this request needs out of the session, so `user` is free to send it.
    let (path, body, last, participant) = {
        let Some(state) = user.get_session_data_mut::<UserState>() else {
            return Sent::Skipped;
        };
        let mut participant = None;
        let path = match (endpoint, &state.call) {
            (Endpoint::CreateCall, _) => format!("{}/calls", target.prefix),
            // A user without a call sends nothing on a call.
            (_, None) => return Sent::Skipped,
            (Endpoint::RemoveParticipant, Some(call)) => match state.participants.pop_front() {
                Some(p) => {
                    let path = format!("{call}/participants/{p}");
                    participant = Some(p);
                    path
                }
                None => return Sent::Skipped,
            },
            (e, Some(call)) => {
                let tail = e.path_template().rsplit('/').next().unwrap_or_default();
                format!("{call}/{tail}")
            }
        };
        let cursor = &mut state.cursors[index(endpoint)];
        let (body, last) = match ctx.bodies.next(user_index, endpoint, cursor) {
            Next::Body { body, last } => (body.clone(), last),
            Next::Exhausted => return Sent::Skipped,
        };
        (path, body, last, participant)
    };
    let _ = participant;
    let path_and_query = format!("{path}{}", target.query);
    let url = format!("{}{}", target.origin, path_and_query);
    let method = endpoint.method();
    let hash = body.hash.to_str().unwrap_or_default();
    let (auth, date) = sign(
        &target.signer,
        method,
        &path_and_query,
        &target.host_header,
        hash,
    );

    let (reqwest_method, goose_method) = if method == "DELETE" {
        (reqwest::Method::DELETE, GooseMethod::Delete)
    } else {
        (reqwest::Method::POST, GooseMethod::Post)
    };
    let mut rb = user
        .client
        .request(reqwest_method, url)
        .header("x-ms-date", date)
        .header("x-ms-content-sha256", body.hash.clone())
        .header(AUTHORIZATION, auth);
    if let Some(ct) = &body.content_type {
        rb = rb.header(CONTENT_TYPE, ct.clone());
    }
    if !body.bytes.is_empty() {
        rb = rb.body(body.bytes.clone());
    }
    let request = GooseRequest::builder()
        .method(goose_method)
        .name(endpoint.path_template())
        .set_request_builder(rb)
        .build();
    let mut sent = match user.request(request).await {
        Ok(s) => s,
        Err(e) => return Sent::Done(Err(e)),
    };
    if last {
        // Every replayed body is out: end the run, which still writes the reports.
        ctx.all_bodies_sent.store(true, Ordering::Relaxed);
        goose::trigger_killswitch("every body of the --bodies file was sent");
    }
    let name = endpoint.request_name();
    let response = match sent.response {
        Ok(r) => r,
        Err(e) => return Sent::Done(error(format!("{name}: {e}"))),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let reason = format!("{name}: reading the response failed: {e}");
            return Sent::Done(user.set_failure(&reason, &mut sent.request, None, None));
        }
    };
    let verdict = check(endpoint, &body, status, content_type.as_deref(), &bytes);
    let state = user.get_session_data_mut::<UserState>();
    match verdict {
        Ok(()) => {
            if let Some(state) = state {
                update(state, endpoint, &body, &path, &bytes);
            }
            Sent::Done(Ok(()))
        }
        Err(reason) => {
            if let Some(state) = state
                && status == 404
                && endpoint.needs_call()
            {
                // The call is gone: stop sending requests on it.
                state.call = None;
                state.participants.clear();
            }
            if (200..300).contains(&status) {
                // goose counted a 2xx as a success; record it as the failure it is.
                Sent::Done(user.set_failure(
                    &format!("{name}: {reason}"),
                    &mut sent.request,
                    None,
                    None,
                ))
            } else {
                // goose already counted the error status; the transaction error says why.
                Sent::Done(error(format!("{name}: {reason}")))
            }
        }
    }
}

/// Whether the answer is what the contract promises for this request; the reason if not.
fn check(
    endpoint: Endpoint,
    body: &PreparedBody,
    status: u16,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<(), String> {
    let expected = endpoint.success_status();
    let violations = |v: Vec<crate::contract::Violation>| {
        let list: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        format!(
            "response breaks the contract: {}",
            clip(&list.join("; "), 300)
        )
    };
    if body.expect_error {
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
                    .map(|m| clip(m, 200))
            });
        return Err(match message {
            Some(m) => format!("status {status}, expected {expected}: {m}"),
            None => format!("status {status}, expected {expected}"),
        });
    }
    validate_response(
        endpoint,
        status,
        content_type,
        bytes,
        body.context.as_deref(),
    )
    .map_err(violations)
}

fn update(
    state: &mut UserState,
    endpoint: Endpoint,
    body: &PreparedBody,
    path: &str,
    bytes: &[u8],
) {
    match endpoint {
        Endpoint::CreateCall => {
            #[derive(serde::Deserialize)]
            struct CallLeg {
                #[serde(rename = "callLegId")]
                call_leg_id: String,
            }
            if let Ok(leg) = serde_json::from_slice::<CallLeg>(bytes) {
                state.call = Some(format!("{path}/{}", encode_segment(&leg.call_leg_id)));
                state.participants.clear();
            }
        }
        Endpoint::Hangup => {
            state.call = None;
            state.participants.clear();
        }
        Endpoint::InviteParticipants => {
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
        Endpoint::PlayAudio | Endpoint::CancelMediaProcessing | Endpoint::RemoveParticipant => {}
    }
}
