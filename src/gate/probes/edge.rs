//! Valid requests the generators do not draw (`positive_acceptance`): unknown
//! properties (ignored), a body just under the 1 MiB limit, `{}` on hang up, a body on
//! remove participant (ignored).

use super::{Family, Fixtures};
use crate::contract::Endpoint;
use crate::gate::cases::{self, Case};
use crate::gate::checks::{Check, Expect};
use crate::gate::engine::{Ctx, Req};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Runs for every gated endpoint.
pub(crate) const FAMILY: Family = Family {
    once: None,
    per_endpoint: Some(|ctx, fixtures, e| Box::pin(run(ctx, fixtures, e))),
};

/// The edge cases of `endpoint`, labelled.
fn edge_cases(endpoint: Endpoint) -> Vec<(&'static str, Case)> {
    let canonical = cases::canonical(endpoint);
    let object: Option<Map<String, Value>> = canonical
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
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
        let body = Value::Object(m).to_string().into_bytes();
        cases.push((
            "unknown properties are ignored",
            with_body(body, "application/json"),
        ));
    }
    match (endpoint, &object) {
        (Endpoint::CreateCall, Some(m)) => {
            let mut m = m.clone();
            let base = Value::Object(m.clone()).to_string().len();
            let room = crate::contract::MAX_BODY_BYTES.saturating_sub(base + 64);
            m.insert("subject".into(), Value::String("s".repeat(room)));
            let body = Value::Object(m).to_string().into_bytes();
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
    cases
}

async fn run(ctx: Ctx, fixtures: Arc<Fixtures>, endpoint: Endpoint) {
    let check = Check::PositiveAcceptance;
    for (i, (label, mut case)) in edge_cases(endpoint).into_iter().enumerate() {
        let expect = Expect::Success(case.operation_context());
        let call = match ctx.call_for(endpoint, &fixtures.pool, i).await {
            Ok(c) => c,
            Err(outcome) => {
                ctx.setup_failed(check, endpoint, label, &expect, &outcome);
                continue;
            }
        };
        if endpoint == Endpoint::RemoveParticipant {
            let pid = ctx.unique("gate-edge");
            if let Err(outcome) = ctx.invite(&call, &pid).await {
                ctx.setup_failed(check, endpoint, label, &expect, &outcome);
                continue;
            }
            case.participant_id = Some(pid);
        }
        let req = Req::of(&case, &call);
        if let Ok(Some(r)) = ctx.probe(check, label, &req, &expect).await
            && endpoint == Endpoint::CreateCall
        {
            ctx.hang_up_created(&r).await;
        }
    }
}
