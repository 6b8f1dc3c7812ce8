//! The requests the gate sends: valid cases (a proptest strategy per endpoint, so a
//! failing one shrinks), labelled invalid bodies, and a canonical valid body per
//! endpoint for the auth, routing and lifecycle probes.

use crate::contract::{Endpoint, Rule};
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

fn guid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())
}

fn e164() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["1", "44", "49", "33", "81", "353"]),
        prop::collection::vec(0u8..10, 8..11),
    )
        .prop_map(|(cc, digits)| {
            let mut s = format!("+{cc}");
            for (i, d) in digits.into_iter().enumerate() {
                // A national number never starts with 0 after the country code here.
                s.push(char::from(b'0' + if i == 0 { d.max(1) } else { d }));
            }
            s
        })
}

fn identifier() -> impl Strategy<Value = Value> {
    let user = (guid(), guid())
        .prop_map(|(r, u)| json!({"communicationUser": {"id": format!("8:acs:{r}_{u}")}}));
    let phone = e164().prop_map(|v| json!({"phoneNumber": {"value": v}}));
    let teams = (
        guid(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop::sample::select(vec!["public", "dod", "gcch"])),
    )
        .prop_map(|(id, anon, cloud)| {
            let mut t = json!({"userId": id});
            if let Some(a) = anon {
                t["isAnonymous"] = json!(a);
            }
            if let Some(c) = cloud {
                t["cloud"] = json!(c);
            }
            json!({"microsoftTeamsUser": t})
        });
    (
        prop_oneof![user, phone, teams],
        proptest::option::of(guid()),
    )
        .prop_map(|(mut v, raw)| {
            if let Some(r) = raw {
                v["rawId"] = json!(format!("8:raw:{r}"));
            }
            v
        })
}

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "Support call",
        "Rückruf wegen Ihrer Bestellung",
        "予約の確認",
        "ticket #4711 \"urgent\"",
        "emoji 📞 call",
    ])
    .prop_map(str::to_string)
}

fn uri(base: &'static str) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["/api/callbacks", "/events", "/x/y.wav", "/"]),
        proptest::option::of(guid()),
    )
        .prop_map(move |(path, q)| match q {
            Some(q) => format!("{base}{path}?id={q}"),
            None => format!("{base}{path}"),
        })
}

fn subset(items: &'static [&'static str], min: usize) -> impl Strategy<Value = Value> {
    prop::sample::subsequence(items.to_vec(), min..=items.len()).prop_map(|v| json!(v))
}

/// Valid requests for `endpoint`; a failing one shrinks to a smaller body.
pub fn valid(endpoint: Endpoint) -> BoxedStrategy<Case> {
    match endpoint {
        Endpoint::CreateCall => (
            identifier(),
            prop::collection::vec(identifier(), 1..4),
            uri("https://contoso.com"),
            subset(&["audio", "video"], 1),
            subset(&["participantsUpdated", "dtmfReceived"], 0),
            proptest::option::of(text()),
            proptest::option::of(e164()),
        )
            .prop_map(
                move |(source, targets, cb, modalities, events, subject, alt)| {
                    let mut b = json!({
                        "source": source, "targets": targets, "callbackUri": cb,
                        "requestedModalities": modalities, "requestedCallEvents": events,
                    });
                    if let Some(s) = subject {
                        b["subject"] = json!(s);
                    }
                    if let Some(a) = alt {
                        b["sourceAlternateIdentity"] = json!({"value": a});
                    }
                    Case::json(endpoint, &b)
                },
            )
            .boxed(),
        Endpoint::Hangup => prop_oneof![
            Just(None),
            Just(Some(json!({}))),
            Just(Some(json!({"reason": "ignored"})))
        ]
        .prop_map(move |b| match b {
            Some(b) => Case::json(endpoint, &b),
            None => Case {
                endpoint,
                participant_id: None,
                content_type: None,
                body: None,
                defect: None,
            },
        })
        .boxed(),
        Endpoint::PlayAudio => (
            uri("https://acsmedia.blob.core.windows.net"),
            proptest::option::of(any::<bool>()),
            proptest::option::of(text()),
            proptest::option::of(guid()),
        )
            .prop_map(move |(u, lp, ctx, rid)| {
                let mut b = json!({"audioFileUri": u});
                if let Some(l) = lp {
                    b["loop"] = json!(l);
                }
                if let Some(c) = ctx {
                    b["operationContext"] = json!(c);
                }
                if let Some(r) = rid {
                    b["resourceId"] = json!(r);
                }
                Case::json(endpoint, &b)
            })
            .boxed(),
        Endpoint::CancelMediaProcessing => proptest::option::of(text())
            .prop_map(move |ctx| {
                let b = match ctx {
                    Some(c) => json!({"operationContext": c}),
                    None => json!({}),
                };
                Case::json(endpoint, &b)
            })
            .boxed(),
        Endpoint::InviteParticipants => (
            prop::collection::vec(identifier(), 1..4),
            proptest::option::of(text()),
            proptest::option::of(e164()),
        )
            .prop_map(move |(p, ctx, alt)| {
                let mut b = json!({"participants": p});
                if let Some(c) = ctx {
                    b["operationContext"] = json!(c);
                }
                if let Some(a) = alt {
                    b["alternateCallerId"] = json!({"value": a});
                }
                Case::json(endpoint, &b)
            })
            .boxed(),
        Endpoint::RemoveParticipant => prop_oneof![
            e164(),
            (guid(), guid()).prop_map(|(r, u)| format!("8:acs:{r}_{u}")),
            guid().prop_map(|g| format!("8:raw:{g}")),
        ]
        .prop_map(move |p| Case {
            endpoint,
            participant_id: Some(p),
            content_type: None,
            body: None,
            defect: None,
        })
        .boxed(),
    }
}

/// One labelled invalid request per defect class of `endpoint` (none for remove
/// participant, whose body is ignored).
pub fn invalid(endpoint: Endpoint) -> Vec<Case> {
    let base = canonical(endpoint);
    let Some(body) = base.body.as_ref() else {
        return match endpoint {
            Endpoint::Hangup => body_level(endpoint),
            _ => Vec::new(),
        };
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut out = body_level(endpoint);
    let mutate = |label: &str, rule: Rule, path: &str, f: &dyn Fn(&mut Value)| {
        let mut v = Value::Object(obj.clone());
        f(&mut v);
        let mut c = Case::json(endpoint, &v);
        c.defect = Some(DefectInfo {
            label: format!("{label}({path})"),
            rule,
            path: path.to_string(),
            oversize: false,
        });
        c
    };
    let required: &[&str] = match endpoint {
        Endpoint::CreateCall => &[
            "source",
            "targets",
            "callbackUri",
            "requestedModalities",
            "requestedCallEvents",
        ],
        Endpoint::PlayAudio => &["audioFileUri"],
        Endpoint::InviteParticipants => &["participants"],
        _ => &[],
    };
    for key in required {
        out.push(mutate("missing-required", Rule::Missing, key, &|v| {
            if let Value::Object(m) = v {
                m.remove(*key);
            }
        }));
        out.push(mutate("null-required", Rule::Null, key, &|v| {
            v[*key] = Value::Null
        }));
        out.push(mutate("wrong-type", Rule::WrongType, key, &|v| {
            v[*key] = json!(42)
        }));
    }
    match endpoint {
        Endpoint::CreateCall => {
            out.push(mutate("empty-array", Rule::EmptyArray, "targets", &|v| {
                v["targets"] = json!([])
            }));
            out.push(mutate(
                "bad-e164",
                Rule::BadE164,
                "targets[0].phoneNumber.value",
                &|v| v["targets"][0]["phoneNumber"]["value"] = json!("004255550100"),
            ));
            out.push(mutate(
                "identifier-kinds",
                Rule::IdentifierKinds,
                "targets[0]",
                &|v| v["targets"][0]["communicationUser"] = json!({"id": "8:acs:x"}),
            ));
            out.push(mutate(
                "identifier-kinds",
                Rule::IdentifierKinds,
                "source",
                &|v| v["source"] = json!({}),
            ));
            out.push(mutate(
                "not-absolute-uri",
                Rule::NotAbsoluteUri,
                "callbackUri",
                &|v| v["callbackUri"] = json!("/api/callbacks"),
            ));
            out.push(mutate(
                "unknown-enum-value",
                Rule::UnknownEnumValue,
                "requestedModalities[0]",
                &|v| v["requestedModalities"] = json!(["Audio"]),
            ));
            out.push(mutate(
                "duplicate-item",
                Rule::DuplicateItem,
                "requestedCallEvents[1]",
                &|v| v["requestedCallEvents"] = json!(["dtmfReceived", "dtmfReceived"]),
            ));
            out.push(mutate(
                "empty-array",
                Rule::EmptyArray,
                "requestedModalities",
                &|v| v["requestedModalities"] = json!([]),
            ));
        }
        Endpoint::PlayAudio => {
            out.push(mutate(
                "not-absolute-uri",
                Rule::NotAbsoluteUri,
                "audioFileUri",
                &|v| v["audioFileUri"] = json!("welcome.wav"),
            ));
            out.push(mutate("wrong-type", Rule::WrongType, "loop", &|v| {
                v["loop"] = json!("yes")
            }));
        }
        Endpoint::CancelMediaProcessing => {
            out.push(mutate(
                "wrong-type",
                Rule::WrongType,
                "operationContext",
                &|v| v["operationContext"] = json!(7),
            ));
        }
        Endpoint::InviteParticipants => {
            out.push(mutate(
                "empty-array",
                Rule::EmptyArray,
                "participants",
                &|v| v["participants"] = json!([]),
            ));
            out.push(mutate(
                "bad-e164",
                Rule::BadE164,
                "alternateCallerId.value",
                &|v| v["alternateCallerId"] = json!({"value": "+0"}),
            ));
        }
        _ => {}
    }
    out
}

/// Defects of the body as a whole: not JSON, not an object, not UTF-8, wrong
/// content type, oversize.
fn body_level(endpoint: Endpoint) -> Vec<Case> {
    let raw = |label: &str, rule: Rule, ct: Option<&str>, body: Vec<u8>, oversize: bool| Case {
        endpoint,
        participant_id: None,
        content_type: ct.map(str::to_string),
        body: Some(body),
        defect: Some(DefectInfo {
            label: label.to_string(),
            rule,
            path: String::new(),
            oversize,
        }),
    };
    let json = Some("application/json");
    let mut big = b"{\"subject\":\"".to_vec();
    big.resize(crate::contract::MAX_BODY_BYTES + 16, b'a');
    big.extend_from_slice(b"\"}");
    vec![
        raw("not-json", Rule::NotJson, json, b"{\"a\":".to_vec(), false),
        raw(
            "not-object",
            Rule::NotObject,
            json,
            b"[1,2]".to_vec(),
            false,
        ),
        raw(
            "not-utf8",
            Rule::NotUtf8,
            json,
            b"{\"a\":\"\xff\xfe\"}".to_vec(),
            false,
        ),
        raw(
            "content-type",
            Rule::ContentType,
            Some("text/plain"),
            b"{}".to_vec(),
            false,
        ),
        raw("too-large", Rule::TooLarge, json, big, true),
    ]
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
            for c in invalid(e) {
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
