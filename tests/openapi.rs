//! The embedded OpenAPI document is a valid OpenAPI 3.1 document describing exactly the
//! six operations of the contract with their statuses and the five events as webhooks,
//! it agrees with the schema table (src/contract/schema.rs) field by field, and its
//! schemas agree with the Rust validators on hand-picked and generated bodies.

mod common;

use acs_harness::contract::events::EventType;
use acs_harness::contract::schema::{self, Case, Field, IDENTIFIER_KINDS, RAW_ID, Ty};
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

/// The document's schema at `s`, with a `$ref` followed and a nullable
/// `anyOf: [X, {type: null}]` unwrapped to `X`.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && any.len() == 2
        && any[1] == json!({"type": "null"})
    {
        return resolve(doc, &any[0]);
    }
    s
}

fn types(s: &Value) -> BTreeSet<String> {
    match &s["type"] {
        Value::String(t) => [t.clone()].into(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the document's object schema `s` has exactly the table's fields (plus
/// `extra` optional ones), the same required ones, and agreeing types and rules.
fn agree_object(doc: &Value, s: &Value, fields: &[Field], case: Case, at: &str, extra: &[&str]) {
    let s = resolve(doc, s);
    let props: BTreeSet<String> = s["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut want: BTreeSet<String> = fields
        .iter()
        .map(|f| case.key(f.name).into_owned())
        .collect();
    want.extend(extra.iter().map(|e| e.to_string()));
    assert_eq!(props, want, "properties of {at}");
    let required: BTreeSet<String> = strings(&s["required"]).into_iter().collect();
    let want: BTreeSet<String> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| case.key(f.name).into_owned())
        .collect();
    assert_eq!(required, want, "required of {at}");
    for f in fields {
        let key = case.key(f.name);
        agree(
            doc,
            &s["properties"][key.as_ref()],
            f.ty,
            case,
            &format!("{at}.{key}"),
        );
    }
}

/// Asserts the document's schema `s` describes a value of type `ty`.
fn agree(doc: &Value, s: &Value, ty: Ty, case: Case, at: &str) {
    let s = resolve(doc, s);
    let has = |t: &str| types(s).contains(t);
    match ty {
        Ty::String { non_empty } => {
            assert!(has("string"), "{at} is a string: {s}");
            assert_eq!(s["minLength"] == json!(1), non_empty, "{at} minLength");
        }
        Ty::Uri => {
            assert!(has("string") && s["format"] == "uri", "{at} is a URI: {s}")
        }
        Ty::E164 => assert_eq!(s["pattern"], r"^\+[1-9][0-9]{1,14}$", "{at} is E.164"),
        Ty::Enum(e) => {
            let values: Vec<String> = strings(&s["enum"]);
            assert_eq!(values, e.values, "{at} enumeration");
        }
        Ty::Bool => assert!(has("boolean"), "{at} is a boolean: {s}"),
        Ty::Integer { min } => {
            assert!(has("integer"), "{at} is an integer: {s}");
            assert_eq!(s["minimum"].as_i64(), min, "{at} minimum");
        }
        Ty::Timestamp => assert!(s["format"] == "date-time", "{at} is a date-time: {s}"),
        // The envelope's `data`: its fields depend on `eventType`, checked per event.
        Ty::Object([]) => assert!(has("object"), "{at} is an object: {s}"),
        Ty::Object(fields) => agree_object(doc, s, fields, case, at, &[]),
        Ty::Identifier => {
            let mut fields = vec![RAW_ID];
            fields.extend(IDENTIFIER_KINDS.iter().map(|k| k.field()));
            agree_object(doc, s, &fields, case, at, &[]);
            let one_of: Vec<Vec<String>> = s["oneOf"]
                .as_array()
                .map(|a| a.iter().map(|o| strings(&o["required"])).collect())
                .unwrap_or_default();
            let kinds: Vec<Vec<String>> = IDENTIFIER_KINDS
                .iter()
                .map(|k| vec![case.key(k.name).into_owned()])
                .collect();
            assert_eq!(one_of, kinds, "{at}: exactly one kind");
        }
        Ty::Array {
            items,
            non_empty,
            unique,
        } => {
            assert!(has("array"), "{at} is an array: {s}");
            assert_eq!(s["minItems"] == json!(1), non_empty, "{at} minItems");
            assert_eq!(s["uniqueItems"] == json!(true), unique, "{at} uniqueItems");
            agree(doc, &s["items"], *items, case, &format!("{at}[*]"));
        }
    }
}

/// The document and the schema table (src/contract/schema.rs) say the same thing:
/// every request, response and event body has the table's properties, required
/// ones, types and rules.
#[test]
fn document_agrees_with_the_schema_table() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let component = |n: &str| doc["components"]["schemas"][n].clone();
    for e in Endpoint::ALL {
        match (request_schema_name(e), schema::request_fields(e)) {
            (Some(name), Some(fields)) => {
                agree_object(&doc, &component(name), fields, Case::Camel, name, &[])
            }
            (None, None) => {}
            other => panic!("{e}: document and table disagree on a body: {other:?}"),
        }
    }
    agree_object(
        &doc,
        &component("CreateCallResponse"),
        schema::CALL_LEG,
        Case::Camel,
        "CreateCallResponse",
        &[],
    );
    agree_object(
        &doc,
        &component("MediaOperationResponse"),
        schema::MEDIA_OPERATION,
        Case::Camel,
        "MediaOperationResponse",
        &[],
    );
    // The contract lets an error body carry these too; the harness checks only the two.
    agree_object(
        &doc,
        &component("CommunicationError"),
        schema::ERROR_BODY,
        Case::Camel,
        "CommunicationError",
        &["target", "details", "innererror"],
    );
    let webhooks = doc["webhooks"].as_object().expect("webhooks");
    assert_eq!(webhooks.len(), EventType::ALL.len());
    for t in EventType::ALL {
        let body =
            &webhooks[t.name()]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let envelope = resolve(&doc, body);
        agree_object(
            &doc,
            envelope,
            schema::EVENT_ENVELOPE,
            Case::Camel,
            t.name(),
            &[],
        );
        assert_eq!(envelope["properties"]["eventType"]["const"], t.event_type());
        let pattern = format!("^callLeg/[^/]+/{}$", t.subject_kind());
        assert_eq!(
            envelope["properties"]["subject"]["pattern"],
            pattern.as_str()
        );
        agree_object(
            &doc,
            &envelope["properties"]["data"],
            t.schema().data,
            Case::Pascal,
            &format!("{}.data", t.name()),
            &[],
        );
    }
}

/// Generated events agree with the document: every valid event passes its webhook's
/// schema, and every invalid one whose defect a JSON Schema can see fails it.
#[test]
fn generated_events_agree_with_the_document() {
    use acs_harness::generate::events::{invalid_event, valid_event};
    use proptest::strategy::{Strategy, ValueTree};
    for t in EventType::ALL {
        let schema = schema_validator(&format!("{}Event", t.name()));
        let mut runner = acs_harness::generate::runner(60 + t as u64);
        let valid = valid_event(t);
        for _ in 0..100 {
            let v = valid.new_tree(&mut runner).unwrap().current();
            let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{t}: {v} {errors:?}");
        }
        let invalid = invalid_event(t);
        for _ in 0..200 {
            let (v, label) = invalid.new_tree(&mut runner).unwrap().current();
            // A schema cannot compare subject with data.CallLegId, and it ignores
            // unknown keys.
            if label.starts_with("bad-subject") || label.starts_with("key-case") {
                continue;
            }
            assert!(!schema.is_valid(&v), "{t}: schema accepts {label}: {v}");
        }
    }
}
