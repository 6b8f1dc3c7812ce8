//! Authentication faults (`auth_required`): each gets 401, before anything else, on a
//! resource of its own where a wrongly accepted request would change state; a date
//! inside the 15-minute window is accepted.

use super::{Family, Fixtures};
use crate::client::AuthMode;
use crate::contract::Endpoint;
use crate::gate::cases;
use crate::gate::checks::{Check, Expect};
use crate::gate::engine::{Ctx, Req};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Runs for every gated endpoint.
pub(crate) const FAMILY: Family = Family {
    once: None,
    per_endpoint: Some(|ctx, fixtures, e| Box::pin(run(ctx, fixtures, e))),
};

/// How far `x-ms-date` may be off the service's clock (src/contract/CONTRACT.md).
const WINDOW: i64 = 15 * 60;

/// The faults: label, authentication sent, and whether the request is accepted.
const MODES: [(&str, AuthMode, bool); 12] = [
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

async fn run(ctx: Ctx, fixtures: Arc<Fixtures>, endpoint: Endpoint) {
    let canonical = cases::canonical(endpoint);
    let mut set = JoinSet::new();
    for (i, (label, mode, accepted)) in MODES.into_iter().enumerate() {
        set.spawn(auth_case(
            ctx.clone(),
            fixtures.clone(),
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
    let mut unknown = Req::of(&canonical, &unknown_call).auth(AuthMode::Missing);
    if !endpoint.needs_call() {
        unknown.path = "/calls/unknown-path".into();
    }
    let mut wrong_method = Req::of(&canonical, &unknown_call).auth(AuthMode::Missing);
    wrong_method.method = if endpoint.method() == "POST" {
        "PUT"
    } else {
        "POST"
    };
    let unauthenticated = [
        ("unknown resource without Authorization", unknown),
        ("wrong method without Authorization", wrong_method),
    ];
    for (label, req) in unauthenticated {
        let _ = ctx
            .probe(Check::AuthRequired, label, &req, &Expect::Error(vec![401]))
            .await;
    }
}

async fn auth_case(
    ctx: Ctx,
    fixtures: Arc<Fixtures>,
    endpoint: Endpoint,
    i: usize,
    label: &'static str,
    mode: AuthMode,
    accepted: bool,
) {
    if ctx.stopped() {
        return;
    }
    let expect = if accepted {
        Expect::Accepted
    } else {
        Expect::Error(vec![401])
    };
    let mut case = cases::canonical(endpoint);
    let call = match ctx.call_for(endpoint, &fixtures.pool, i).await {
        Ok(c) => c,
        Err(outcome) => {
            ctx.setup_failed(Check::AuthRequired, endpoint, label, &expect, &outcome);
            return;
        }
    };
    if endpoint == Endpoint::RemoveParticipant {
        let pid = ctx.unique("gate-auth");
        if let Err(outcome) = ctx.invite(&call, &pid).await {
            ctx.setup_failed(Check::AuthRequired, endpoint, label, &expect, &outcome);
            return;
        }
        case.participant_id = Some(pid);
    }
    let req = Req::of(&case, &call).auth(mode);
    let reply = ctx.probe(Check::AuthRequired, label, &req, &expect).await;
    if endpoint == Endpoint::CreateCall
        && let Ok(Some(r)) = reply
    {
        ctx.hang_up_created(&r).await;
    }
    if endpoint == Endpoint::Hangup && !accepted {
        ctx.hang_up(&call).await;
    }
}
