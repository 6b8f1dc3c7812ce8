//! The requests the gate sends: valid cases (a proptest strategy per endpoint, so a
//! failing one shrinks), labelled invalid bodies, and a canonical valid body per
//! endpoint for the auth, routing and lifecycle probes.

use crate::contract::{Endpoint, Rule};
use crate::generate::{self, GeneratedRequest};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One request of a case, independent of the call it is sent on.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The operation.
    pub endpoint: Endpoint,
    /// `{participantId}` for remove participant.
    pub participant_id: Option<String>,
    /// `Content-Type` sent, if any.
    pub content_type: Option<String>,
    /// Body sent, if any.
    pub body: Option<Vec<u8>>,
    /// What is wrong with the request, for invalid cases: a label such as
    /// `missing-required(targets)` and the rule and JSON path a validator reports.
    pub defect: Option<DefectInfo>,
}

/// The label of a deliberately invalid request and what the validator says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct DefectInfo {
    /// Human label, e.g. `bad-e164(targets[0].phoneNumber.value)`.
    pub label: String,
    /// The rule broken.
    pub rule: Rule,
    /// JSON path of the offending value; empty for the body as a whole.
    pub path: String,
    /// Whether 413 is an acceptable answer (oversize bodies).
    pub oversize: bool,
}

impl Case {
    /// The `operationContext` of the body, which a media operation must echo.
    pub fn operation_context(&self) -> Option<String> {
        let body = self.body.as_ref()?;
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("operationContext")?.as_str().map(str::to_string)
    }

    fn json(endpoint: Endpoint, body: &Value) -> Case {
        Case {
            endpoint,
            participant_id: None,
            content_type: Some("application/json".into()),
            body: Some(body.to_string().into_bytes()),
            defect: None,
        }
    }
}

/// A known-good request for `endpoint`, used where the body is not what is tested.
pub fn canonical(endpoint: Endpoint) -> Case {
    let body = match endpoint {
        Endpoint::CreateCall => json!({
            "source": {"communicationUser": {"id": "8:acs:b6aada1f-0b1d-47ac-866f-91aae00a1d01_00000010-aaaa-bbbb-cccc-000000000001"}},
            "targets": [{"phoneNumber": {"value": "+14255550100"}}],
            "callbackUri": "https://contoso.com/api/callbacks",
            "requestedModalities": ["audio"],
            "requestedCallEvents": ["participantsUpdated"]
        }),
        Endpoint::PlayAudio => json!({
            "audioFileUri": "https://acsmedia.blob.core.windows.net/audio/welcome.wav",
            "operationContext": "gate-play"
        }),
        Endpoint::CancelMediaProcessing => json!({"operationContext": "gate-cancel"}),
        Endpoint::InviteParticipants => json!({
            "participants": [{"phoneNumber": {"value": "+14255550199"}}],
            "operationContext": "gate-invite"
        }),
        Endpoint::Hangup => {
            return Case {
                endpoint,
                participant_id: None,
                content_type: None,
                body: None,
                defect: None,
            };
        }
        Endpoint::RemoveParticipant => {
            return Case {
                endpoint,
                participant_id: Some("+14255550199".into()),
                content_type: None,
                body: None,
                defect: None,
            };
        }
    };
    Case::json(endpoint, &body)
}

impl From<GeneratedRequest> for Case {
    fn from(g: GeneratedRequest) -> Case {
        let participant_id = g.participant_id().map(str::to_string);
        let defect = g.defect.as_ref().map(|d| {
            let (rule, path) = d.expected();
            DefectInfo {
                label: d.to_string(),
                rule,
                path,
                oversize: false,
            }
        });
        Case {
            endpoint: g.endpoint,
            participant_id,
            content_type: g.content_type,
            body: g.body,
            defect,
        }
    }
}

/// Valid requests for `endpoint` from the generators; a failing one shrinks.
pub fn valid(endpoint: Endpoint) -> BoxedStrategy<Case> {
    generate::valid(endpoint).prop_map(Case::from).boxed()
}

/// Valid requests of `endpoint` at a large `size` (see [`generate::sizes`]); `None`
/// where the endpoint has no body of that size.
pub fn valid_large(endpoint: Endpoint, size: generate::Size) -> Option<BoxedStrategy<Case>> {
    Some(
        generate::valid_large(endpoint, size)?
            .prop_map(Case::from)
            .boxed(),
    )
}

/// One labelled invalid request per defect class of `endpoint`, drawn with `seed`,
/// plus an oversize body (none for remove participant, whose body is ignored).
pub fn invalid(endpoint: Endpoint, seed: u64) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, class) in generate::defect_classes(endpoint).iter().enumerate() {
        let Ok(strategy) = generate::invalid_of(endpoint, class) else {
            continue;
        };
        let class_seed = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        out.extend(
            generate::sample(&strategy, class_seed, 1)
                .into_iter()
                .map(Case::from),
        );
    }
    if endpoint.request_body() != crate::contract::RequestBody::Ignored {
        out.push(oversize(endpoint));
    }
    out
}

/// A JSON body just over 1 MiB: 413 (or 400) whatever else it holds.
fn oversize(endpoint: Endpoint) -> Case {
    let mut big = b"{\"operationContext\":\"".to_vec();
    big.resize(crate::contract::MAX_BODY_BYTES + 16, b'a');
    big.extend_from_slice(b"\"}");
    Case {
        endpoint,
        participant_id: None,
        content_type: Some("application/json".into()),
        body: Some(big),
        defect: Some(DefectInfo {
            label: "too-large".into(),
            rule: Rule::TooLarge,
            path: String::new(),
            oversize: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::validate_request;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn valid_cases_pass_and_invalid_fail_for_their_reason() {
        let mut runner = TestRunner::deterministic();
        for e in Endpoint::ALL {
            let s = valid(e);
            for _ in 0..50 {
                let c = s.new_tree(&mut runner).unwrap().current();
                let r = validate_request(
                    e,
                    c.content_type.as_deref(),
                    c.body.as_deref().unwrap_or_default(),
                );
                assert!(r.is_ok(), "{e}: {r:?}");
            }
            let c = canonical(e);
            assert!(
                validate_request(
                    e,
                    c.content_type.as_deref(),
                    c.body.as_deref().unwrap_or_default()
                )
                .is_ok()
            );
            for c in invalid(e, 7) {
                let d = c.defect.clone().unwrap();
                let errs = validate_request(
                    e,
                    c.content_type.as_deref(),
                    c.body.as_deref().unwrap_or_default(),
                )
                .unwrap_err();
                assert!(
                    errs.iter().any(|v| v.rule == d.rule && v.path == d.path),
                    "{e} {}: {errs:?}",
                    d.label
                );
            }
        }
    }
}
