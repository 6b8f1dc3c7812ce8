//! The embedded OpenAPI document is a valid OpenAPI 3.1 document describing exactly the
//! six operations of the contract with their statuses, and its schemas agree with the
//! Rust validators on hand-picked bodies (the generator property tests cover the rest).

mod common;

use acs_harness::contract::{ERROR_STATUSES, Endpoint, OPENAPI, validate_request};
use common::openapi::{request_schema_name, schema_validator};
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[test]
fn document_is_valid_openapi_with_exactly_the_six_operations() {
    let spec = oas3::from_json(OPENAPI).expect("document parses as OpenAPI 3.1");
    spec.validate_version().expect("supported OpenAPI version");
    let ops: Vec<_> = spec.operations().collect();
    assert_eq!(ops.len(), 6, "exactly six operations");
    for e in Endpoint::ALL {
        let method: oas3::spec::Operation = spec
            .operation(&e.method().parse().unwrap(), e.path_template())
            .unwrap_or_else(|| panic!("{} is described", e.request_name()))
            .clone();
        let statuses: BTreeSet<u16> = method
            .responses
            .as_ref()
            .expect("responses")
            .keys()
            .map(|k| k.parse().expect("numeric status"))
            .collect();
        let expected: BTreeSet<u16> = std::iter::once(e.success_status())
            .chain(ERROR_STATUSES)
            .collect();
        assert_eq!(statuses, expected, "{}", e.request_name());
        assert_eq!(
            method.request_body.is_some(),
            e != Endpoint::RemoveParticipant
        );
        // every error response and every success body resolves
        for (_, r) in method.responses.as_ref().unwrap() {
            r.resolve(&spec).expect("response reference resolves");
        }
    }
}

#[test]
fn every_component_schema_compiles() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let names: Vec<String> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(names.len() >= 10);
    for n in names {
        schema_validator(&n);
    }
}

#[test]
fn schemas_and_validator_agree_on_examples() {
    let create = json!({
        "source": {"communicationUser": {"id": "8:acs:1_2"}, "phoneNumber": null},
        "targets": [{"phoneNumber": {"value": "+14251001000"}, "rawId": "4:+14251001000"},
                    {"microsoftTeamsUser": {"userId": "u", "cloud": "gcch", "isAnonymous": false}}],
        "callbackUri": "https://app.example.com/events?x=1",
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["dtmfReceived"],
        "subject": null
    });
    let mut bad_kinds = create.clone();
    bad_kinds["targets"][0]["communicationUser"] = json!({"id": "x"});
    let mut dup = create.clone();
    dup["requestedModalities"] = json!(["audio", "audio"]);
    let mut relative = create.clone();
    relative["callbackUri"] = json!("/events");
    let mut e164 = create.clone();
    e164["targets"][0]["phoneNumber"]["value"] = json!("+0123");
    let cases = [
        (Endpoint::CreateCall, create, true),
        (Endpoint::CreateCall, bad_kinds, false),
        (Endpoint::CreateCall, dup, false),
        (Endpoint::CreateCall, relative, false),
        (Endpoint::CreateCall, e164, false),
        (
            Endpoint::PlayAudio,
            json!({"audioFileUri": "https://cdn.example/a.wav", "loop": true}),
            true,
        ),
        (Endpoint::PlayAudio, json!({"audioFileUri": "a.wav"}), false),
        // A WHATWG parser would repair these into valid URLs; the contract does not
        // (`format: uri` is RFC 3986: ASCII only).
        (
            Endpoint::PlayAudio,
            json!({"audioFileUri": "https:///a.wav"}),
            false,
        ),
        (
            Endpoint::PlayAudio,
            json!({"audioFileUri": "https://cdn.example\\a.wav"}),
            false,
        ),
        (
            Endpoint::PlayAudio,
            json!({"audioFileUri": "http://ü.example/a.wav"}),
            false,
        ),
        (
            Endpoint::PlayAudio,
            json!({"audioFileUri": "https://cdn.example/a.wav", "loop": "yes"}),
            false,
        ),
        (Endpoint::CancelMediaProcessing, json!({}), true),
        (
            Endpoint::CancelMediaProcessing,
            json!({"operationContext": 3}),
            false,
        ),
        (
            Endpoint::InviteParticipants,
            json!({"participants": []}),
            false,
        ),
        (
            Endpoint::InviteParticipants,
            json!({"participants": [{"phoneNumber": {"value": "+4930123"}}]}),
            true,
        ),
    ];
    for (e, body, ok) in cases {
        let schema = schema_validator(request_schema_name(e).unwrap());
        let by_rust =
            validate_request(e, Some("application/json"), body.to_string().as_bytes()).is_ok();
        assert_eq!(schema.is_valid(&body), ok, "schema on {e}: {body}");
        assert_eq!(by_rust, ok, "validator on {e}: {body}");
    }
}

/// Generated bodies agree with the document: every valid body passes its schema and
/// every body with one planted property-level defect fails it.
#[test]
fn generated_bodies_agree_with_the_document() {
    use acs_harness::generate::{self, sample};
    for e in Endpoint::ALL {
        let Some(name) = request_schema_name(e) else {
            continue;
        };
        let schema = schema_validator(name);
        for r in sample(&generate::valid(e), 11, 300) {
            let Some(body) = r.body.as_deref() else {
                continue;
            };
            let v: Value = serde_json::from_slice(body).unwrap();
            let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{e}: {v} {errors:?}");
        }
        let Ok(invalid) = generate::invalid(e) else {
            continue;
        };
        for r in sample(&invalid, 12, 300) {
            let defect = r.defect.clone().unwrap();
            if defect.kind.is_body_level() {
                continue;
            }
            let v: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
            assert!(!schema.is_valid(&v), "{e}: schema accepts {defect}: {v}");
        }
    }
}
