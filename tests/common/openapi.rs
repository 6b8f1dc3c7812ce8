//! Compiles the component schemas of the embedded OpenAPI document into JSON Schema
//! validators, so tests can check bodies against the document as well as the validator.

use acs_harness::contract::{Endpoint, OPENAPI};
use serde_json::{Value, json};

/// The component schema of an endpoint's request body, if it has one.
pub fn request_schema_name(e: Endpoint) -> Option<&'static str> {
    Some(match e {
        Endpoint::CreateCall => "CreateCallRequest",
        Endpoint::Hangup => "HangupRequest",
        Endpoint::PlayAudio => "PlayAudioRequest",
        Endpoint::CancelMediaProcessing => "CancelMediaProcessingRequest",
        Endpoint::InviteParticipants => "InviteParticipantsRequest",
        Endpoint::RemoveParticipant => return None,
    })
}

/// A validator for `#/components/schemas/<name>` of the embedded document.
pub fn schema_validator(name: &str) -> jsonschema::Validator {
    let doc: Value = serde_json::from_str(OPENAPI).expect("OpenAPI document is JSON");
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": format!("#/components/schemas/{name}"),
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name} compiles: {e}"))
}
