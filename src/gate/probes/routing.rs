//! Routing (`unknown_resource`, and wrong methods under `negative_rejection`): unknown
//! call ids, a hung-up call, an unknown participant, unknown and wrong-case paths all
//! get 404; wrong methods get 405 with `Allow`.

use super::{Family, Fixtures};
use crate::contract::Endpoint;
use crate::gate::cases;
use crate::gate::checks::{Check, Expect};
use crate::gate::engine::{Ctx, Req};
use std::sync::Arc;

/// Runs for every gated endpoint.
pub(crate) const FAMILY: Family = Family {
    once: None,
    per_endpoint: Some(|ctx, fixtures, e| Box::pin(run(ctx, fixtures, e))),
};

/// Paths near `endpoint`'s on `call` (a wrong case, a missing or extra segment) that
/// name no resource.
fn unknown_paths(endpoint: Endpoint, call: &str) -> Vec<String> {
    let call_seg = crate::contract::encode_segment(call);
    match endpoint {
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
    }
}

async fn run(ctx: Ctx, fixtures: Arc<Fixtures>, endpoint: Endpoint) {
    let canonical = cases::canonical(endpoint);
    let not_found = Expect::Error(vec![404]);
    let nf = Check::UnknownResource;
    if endpoint.needs_call() {
        let unknown = uuid::Uuid::new_v4().to_string();
        let req = Req::of(&canonical, &unknown);
        let _ = ctx
            .probe(nf, "never-created call id", &req, &not_found)
            .await;
        if let Some(dead) = &fixtures.dead_call {
            let req = Req::of(&canonical, dead);
            let _ = ctx.probe(nf, "hung-up call id", &req, &not_found).await;
        }
    }
    // A call of its own: a target that routes wrong-case paths or wrong methods to
    // an operation would otherwise change the state other cases rely on.
    let call = match ctx.create_call().await {
        Ok(c) => c,
        Err(outcome) => {
            ctx.setup_failed(nf, endpoint, "routing probes", &not_found, &outcome);
            return;
        }
    };
    let other = if endpoint.method() == "POST" {
        "DELETE"
    } else {
        "POST"
    };
    for method in ["GET", "PUT", "PATCH", other, "HEAD"] {
        let req = Req {
            method,
            ..Req::bare(endpoint, &call, Some("+14255550100"))
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
    for path in unknown_paths(endpoint, &call) {
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
