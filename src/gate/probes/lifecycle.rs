//! The `lifecycle` check: one call created, used, its participants removed by each kind
//! of id, hung up, and then used again, in order, with the ids the target returned.

use super::Family;
use crate::contract::Endpoint;
use crate::gate::cases;
use crate::gate::checks::{Check, Expect, call_leg_id};
use crate::gate::engine::{Ctx, Req};
use serde_json::json;

/// Runs once per run.
pub(crate) const FAMILY: Family = Family {
    once: Some(|ctx, _| Box::pin(run(ctx))),
    per_endpoint: None,
};

fn step(n: usize, what: &str) -> String {
    format!("lifecycle step {n}: {what}")
}

async fn run(ctx: Ctx) {
    let check = Check::Lifecycle;
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
        Ok(Some(r)) => call_leg_id(&r.body),
        _ => None,
    };
    let Some(call) = call else {
        return;
    };
    let json_req = |e: Endpoint, body: serde_json::Value| Req::json(e, &call, None, body);
    let bare = |e: Endpoint, pid: Option<&str>| Req::bare(e, &call, pid);
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
                json!({"audioFileUri": "https://acsmedia.blob.core.windows.net/audio/hold.wav", "loop": true, "operationContext": "lifecycle-play"}),
            ),
            Expect::Success(Some("lifecycle-play".into())),
        ),
        (
            step(3, "cancel media processing"),
            json_req(
                Endpoint::CancelMediaProcessing,
                json!({"operationContext": "lifecycle-cancel"}),
            ),
            Expect::Success(Some("lifecycle-cancel".into())),
        ),
        (
            step(4, "invite four participants"),
            json_req(
                Endpoint::InviteParticipants,
                json!({"participants": [
                    {"phoneNumber": {"value": phone}},
                    {"communicationUser": {"id": "8:acs:b6aada1f-0b1d-47ac-866f-91aae00a1d01_gate"}, "rawId": raw},
                    {"communicationUser": {"id": user}},
                    {"microsoftTeamsUser": {"userId": teams, "cloud": "public"}}
                ], "operationContext": "lifecycle-invite"}),
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
                json!({"audioFileUri": "https://acsmedia.blob.core.windows.net/audio/hold.wav"}),
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
