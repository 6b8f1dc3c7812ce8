//! Labelled invalid bodies (`negative_rejection`) get 400 (413 allowed for oversize),
//! with an error message that names the offending property; the first one sent without
//! authentication gets 401 (`auth_required`).

use super::{Family, Fixtures};
use crate::client::{AuthMode, Reply};
use crate::contract::{Endpoint, Rule, Violation};
use crate::gate::cases::{self, Case, DefectInfo};
use crate::gate::checks::{Check, Expect, Mismatch, describe_reply, names_offending_property};
use crate::gate::engine::{Ctx, Req};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Runs for every gated endpoint.
pub(crate) const FAMILY: Family = Family {
    once: None,
    per_endpoint: Some(|ctx, fixtures, e| Box::pin(run(ctx, fixtures, e))),
};

async fn run(ctx: Ctx, fixtures: Arc<Fixtures>, endpoint: Endpoint) {
    // One task per case: a slow target costs one timeout per wave, not per case.
    let mut set = JoinSet::new();
    for (i, case) in cases::invalid(endpoint, ctx.s.seed).into_iter().enumerate() {
        set.spawn(invalid_case(
            ctx.clone(),
            fixtures.clone(),
            endpoint,
            i,
            case,
        ));
    }
    while set.join_next().await.is_some() {}
}

async fn invalid_case(ctx: Ctx, fixtures: Arc<Fixtures>, endpoint: Endpoint, i: usize, case: Case) {
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
        ctx.pool_call(&fixtures.pool, i).await
    } else {
        Ok(String::new())
    };
    let call = match call {
        Ok(c) => c,
        Err(outcome) => {
            ctx.setup_failed(
                Check::NegativeRejection,
                endpoint,
                &label,
                &expect,
                &outcome,
            );
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
    let names = |reply: &Reply| names_the_property(endpoint, &expect, &defect, reply);
    let verdict = ctx
        .probe_then(Check::NegativeRejection, &label, &req, &expect, names)
        .await;
    // Nothing was sent: the run is stopping.
    if matches!(verdict, Ok(None)) {
        return;
    }
    if endpoint == Endpoint::Hangup {
        ctx.hang_up(&call).await;
    }
}

/// The validator's JSON path must appear in the error message (src/contract/CONTRACT.md:
/// "the error message names the offending property by its JSON path"; for a rule on a
/// whole array, naming the array is enough).
fn names_the_property(
    endpoint: Endpoint,
    expect: &Expect,
    defect: &DefectInfo,
    reply: &Reply,
) -> Result<(), Mismatch> {
    let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if names_offending_property(&message, defect.rule, &defect.path) {
        return Ok(());
    }
    let named = match defect.rule {
        Rule::EmptyArray | Rule::DuplicateItem => {
            format!("{} or the array that holds it", defect.path)
        }
        _ => defect.path.clone(),
    };
    Err(Mismatch {
        expected: format!("{} naming {named}", expect.describe(endpoint)),
        got: describe_reply(reply),
        violations: vec![Violation {
            path: "message".into(),
            rule: Rule::NamesOffendingProperty,
            message: format!("the error message does not name the offending property {named}"),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_message_that_does_not_name_the_property_breaks_its_own_rule() {
        let defect = DefectInfo {
            label: "bad-e164(targets[0].phoneNumber.value)".into(),
            rule: Rule::BadE164,
            path: "targets[0].phoneNumber.value".into(),
            oversize: false,
        };
        let reply = |message: &str| Reply {
            status: 400,
            content_type: Some("application/json".into()),
            allow: None,
            headers: Vec::new(),
            body: serde_json::json!({"code": "BadRequest", "message": message})
                .to_string()
                .into_bytes(),
            truncated: false,
            elapsed: Duration::ZERO,
            date: None,
        };
        let expect = Expect::Error(vec![400]);
        let e = Endpoint::CreateCall;
        let named = reply("targets[0].phoneNumber.value: not E.164");
        assert!(names_the_property(e, &expect, &defect, &named).is_ok());
        let m = names_the_property(e, &expect, &defect, &reply("bad request")).unwrap_err();
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.violations[0].rule, Rule::NamesOffendingProperty);
        assert_eq!(m.violations[0].path, "message");
        assert!(
            m.expected.ends_with("naming targets[0].phoneNumber.value"),
            "{m:?}"
        );
    }
}
