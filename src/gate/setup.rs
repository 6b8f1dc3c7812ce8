//! Set-up the cases need but no check counts: the first wave (which also tells whether
//! the target can be gated at all), the pool of calls cases share, a hung-up call for
//! the routing probes, and the calls and participants single cases create.

use super::cases;
use super::checks::{call_leg_id, describe_reply, unusable_call_id};
use super::engine::{Ctx, Outcome, Req};
use crate::client::{ClientError, Reply};
use crate::contract::Endpoint;
use crate::redact;
use std::time::Duration;
use tokio::task::JoinSet;

/// Set-up create-call requests sent at once before any case (at most; fewer with a lower
/// concurrency). They become the call pool, and their answers tell a rejected key or a
/// target that answers nothing before the cases run.
pub(crate) const FIRST_WAVE: usize = 8;

impl Ctx {
    /// Creates a call for a case to run on; lenient (any 2xx with a `callLegId`) so
    /// a deviation of create call does not hide the checks of the other endpoints.
    /// Fails with [`Outcome::NotRun`], or [`Outcome::Stopped`] when the run is stopping.
    pub async fn create_call(&self) -> Result<String, Outcome> {
        let req = Req::of(&cases::canonical(Endpoint::CreateCall), "");
        match self.send(&req).await {
            Outcome::Reply(r) if (200..300).contains(&r.status) => {
                usable_call(&r).map_err(Outcome::NotRun)
            }
            Outcome::Stopped => Err(Outcome::Stopped),
            other => Err(Outcome::NotRun(format!(
                "set-up create call failed: {}",
                other.describe()
            ))),
        }
    }

    /// Hangs up `call`, whatever the answer.
    pub async fn hang_up(&self, call: &str) {
        let req = Req::of(&cases::canonical(Endpoint::Hangup), call);
        let _ = self.send(&req).await;
    }

    /// Hangs up the call a create-call `reply` created, if it names one, so probes that
    /// create calls leave none behind.
    pub async fn hang_up_created(&self, reply: &Reply) {
        if let Some(id) = call_leg_id(&reply.body) {
            self.hang_up(&id).await;
        }
    }

    /// Invites one participant whose participantId is `pid` (given as its rawId).
    pub async fn invite(&self, call: &str, pid: &str) -> Result<(), Outcome> {
        let body = serde_json::json!({
            "participants": [{"communicationUser": {"id": "8:acs:gate-participant"}, "rawId": pid}]
        });
        let req = Req::json(Endpoint::InviteParticipants, call, None, body);
        match self.send(&req).await {
            Outcome::Reply(r) if (200..300).contains(&r.status) => Ok(()),
            Outcome::Stopped => Err(Outcome::Stopped),
            other => Err(Outcome::NotRun(format!(
                "set-up invite failed: {}",
                other.describe()
            ))),
        }
    }

    /// The call case `i` of `endpoint` runs on: none for create call, a fresh one for
    /// hang up (which ends it), a pooled one otherwise (cases that leave it live share).
    pub async fn call_for(
        &self,
        endpoint: Endpoint,
        pool: &[String],
        i: usize,
    ) -> Result<String, Outcome> {
        match endpoint {
            Endpoint::CreateCall => Ok(String::new()),
            Endpoint::Hangup => self.create_call().await,
            _ => self.pool_call(pool, i).await,
        }
    }

    /// Pooled call `i` (round-robin), or a new one when the pool is empty.
    pub async fn pool_call(&self, pool: &[String], i: usize) -> Result<String, Outcome> {
        match pool.get(i % pool.len().max(1)) {
            Some(c) => Ok(c.clone()),
            None => self.create_call().await,
        }
    }
}

/// The hung-up call the routing probes use, if one could be created.
pub(crate) async fn dead_call(ctx: &Ctx) -> Option<String> {
    let call = ctx.create_call().await.ok()?;
    ctx.hang_up(&call).await;
    Some(call)
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

/// The first wave: `n` signed set-up create-call requests at once, before any case and
/// counted in no check. Their answers decide whether the run can go on: an unreachable
/// target, a rejected key (every answer a 401), a target that answered none of them in
/// time, or one that does not speak HTTP ends the run (exit 2) here. Otherwise the calls
/// they created are the pool the cases share.
pub(crate) async fn first_wave(ctx: &Ctx, n: usize, timeout: Duration) -> Vec<String> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let q = ctx.quiet();
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
