//! The cases: per endpoint its success and each error family of src/contract/CONTRACT.md, named
//! `<endpoint>.<status>[-<what>]`. Redactions sit beside the case they belong to.
//!
//! Where an endpoint has no required property (hang up, cancel media processing) there
//! is no "missing" case; a body that is not a JSON object stands in for the bad value.
//! Remove participant ignores its body, so it has no 400 or oversize case.

use super::{Failure, Kind, Target};
use acs_harness::contract::{Endpoint, MAX_BODY_BYTES};
use acs_harness::double::DoubleConfig;
use acs_harness::{AuthMode, Reply};
use serde_json::{Value, json};

/// A call id no service has handed out (a well-formed UUID, so only existence fails).
pub const UNKNOWN_CALL: &str = "00000000-0000-4000-8000-000000000404";

/// The caller, an ACS user of a made-up resource.
const SOURCE_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000a1";

/// The callee of created calls and the invited participant: ACS users rather than phone
/// numbers, so a live run dials no one.
const TARGET_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000b2";
const INVITED_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000c3";

/// The `operationContext` the media cases send; the double echoes it.
const CONTEXT: &str = "snapshot-suite";

/// A valid create call body.
pub fn create_call_body() -> Value {
    json!({
        "source": { "communicationUser": { "id": SOURCE_USER } },
        "targets": [ { "communicationUser": { "id": TARGET_USER } } ],
        "callbackUri": "https://app.example/acs/callbacks",
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["participantsUpdated", "dtmfReceived"],
        "subject": "acs-harness snapshot suite"
    })
}

fn play_audio_body() -> Value {
    json!({
        "audioFileUri": "https://media.example/prompts/welcome.wav",
        "loop": false,
        "operationContext": CONTEXT
    })
}

fn invite_body() -> Value {
    json!({ "participants": [ { "communicationUser": { "id": INVITED_USER } } ] })
}

/// `body` with `key` removed.
fn without(mut body: Value, key: &str) -> Value {
    if let Some(m) = body.as_object_mut() {
        m.remove(key);
    }
    body
}

/// `body` with `key` set to `value`.
fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// `body` padded past the 1 MiB limit through `key` (a string property, or an unknown
/// one the service ignores).
fn oversize(body: Value, key: &str) -> Vec<u8> {
    with(body, key, Value::String("x".repeat(MAX_BODY_BYTES + 1)))
        .to_string()
        .into_bytes()
}

/// Sends raw bytes as JSON, signed.
async fn raw(t: &Target, method: &str, path: &str, body: &[u8]) -> Result<Reply, Failure> {
    t.send(
        method,
        path,
        Some("application/json"),
        Some(body),
        AuthMode::Signed,
    )
    .await
}

/// The case every endpoint shares: the same request as its success case, unsigned.
async fn unauthenticated(
    t: &Target,
    e: Endpoint,
    path: &str,
    body: Option<&Value>,
) -> Result<(), Failure> {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = t
        .send(
            e.method(),
            path,
            bytes.as_ref().map(|_| "application/json"),
            bytes.as_deref(),
            AuthMode::Missing,
        )
        .await?;
    t.pin(
        &format!("{e}.401"),
        &format!("{} without Authorization", e.request_name()),
        &r,
        &[],
    );
    Ok(())
}

/// The 500 case: a second double that fails every other request (seeded), asked until
/// the request of `e` is the one that fails. Skipped against a live target, which
/// cannot be told to fail.
async fn injected_fault(t: &Target, e: Endpoint) -> Result<(), Failure> {
    let name = format!("{e}.500");
    if t.kind() == Kind::Live {
        t.skip(&name, "a 500 needs the double's fault injection");
        return Ok(());
    }
    let faulty = Target::double(
        DoubleConfig::default()
            .fail_rate(0.5)
            .seed(super::FAULT_SEED),
        "unused",
    )
    .await?;
    // Setup requests (create, invite) may draw a fault too; those are simply retried.
    // The double's generator is seeded, so the same requests fail on every run.
    for _ in 0..64 {
        let path = if e.needs_call() {
            let r = faulty.json("POST", "/calls", &create_call_body()).await?;
            let Some(call) = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
            else {
                continue;
            };
            if e == Endpoint::RemoveParticipant {
                let path = Endpoint::InviteParticipants.path(&call, None);
                if faulty.json("POST", &path, &invite_body()).await?.status != 202 {
                    continue;
                }
            }
            e.path(&call, Some(INVITED_USER))
        } else {
            e.path("", None)
        };
        let r = match e {
            Endpoint::CreateCall => faulty.json("POST", &path, &create_call_body()).await?,
            Endpoint::PlayAudio => faulty.json("POST", &path, &play_audio_body()).await?,
            Endpoint::InviteParticipants => faulty.json("POST", &path, &invite_body()).await?,
            Endpoint::CancelMediaProcessing => {
                faulty
                    .json("POST", &path, &json!({ "operationContext": CONTEXT }))
                    .await?
            }
            Endpoint::Hangup | Endpoint::RemoveParticipant => {
                faulty
                    .send(e.method(), &path, None, None, AuthMode::Signed)
                    .await?
            }
        };
        if r.status == 500 {
            t.pin(
                &name,
                &format!("{} to a double with --fail-rate", e.request_name()),
                &r,
                &[],
            );
            return Ok(());
        }
    }
    Err(Failure(format!(
        "{}: {}: no injected 500 in 64 tries at fail rate 0.5",
        faulty.label(),
        e.request_name()
    )))
}

/// `POST /calls`.
pub async fn create_call(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::CreateCall;
    let (r, _) = t.create_call_reply().await?;
    t.pin(
        "create-call.200",
        "POST /calls",
        &r,
        &[(".body.callLegId", "[callLegId]")],
    );

    let r = t
        .json("POST", "/calls", &without(create_call_body(), "targets"))
        .await?;
    t.pin(
        "create-call.400-missing-targets",
        "POST /calls without targets",
        &r,
        &[],
    );

    let body = with(create_call_body(), "callbackUri", json!(42));
    let r = t.json("POST", "/calls", &body).await?;
    t.pin(
        "create-call.400-wrong-type",
        "POST /calls, callbackUri: 42",
        &r,
        &[],
    );

    let body = with(
        create_call_body(),
        "requestedModalities",
        json!(["audio", "smell"]),
    );
    let r = t.json("POST", "/calls", &body).await?;
    t.pin(
        "create-call.400-bad-value",
        "POST /calls, requestedModalities: [audio, smell]",
        &r,
        &[],
    );

    let body = create_call_body().to_string().into_bytes();
    let r = t
        .send(
            "POST",
            "/calls",
            Some("text/plain"),
            Some(&body),
            AuthMode::Signed,
        )
        .await?;
    t.pin(
        "create-call.400-content-type",
        "POST /calls as text/plain",
        &r,
        &[],
    );

    let r = raw(t, "POST", "/calls", b"{\"source\": ").await?;
    t.pin(
        "create-call.400-not-json",
        "POST /calls, truncated JSON",
        &r,
        &[],
    );

    unauthenticated(t, e, "/calls", Some(&create_call_body())).await?;

    let r = raw(
        t,
        "POST",
        "/calls",
        &oversize(create_call_body(), "subject"),
    )
    .await?;
    t.pin(
        "create-call.413-oversize",
        "POST /calls, subject past 1 MiB",
        &r,
        &[],
    );

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// `POST /calls/{callId}/Hangup`.
pub async fn hangup(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::Hangup;
    let call = t.create_call().await?;
    let path = e.path(&call, None);

    let r = raw(t, "POST", &path, b"[]").await?;
    t.pin(
        "hangup.400-not-an-object",
        "POST /calls/{callId}/Hangup, body []",
        &r,
        &[],
    );

    let r = raw(t, "POST", &path, &oversize(json!({}), "padding")).await?;
    t.pin(
        "hangup.413-oversize",
        "POST /calls/{callId}/Hangup, body past 1 MiB",
        &r,
        &[],
    );

    unauthenticated(t, e, &path, None).await?;

    let r = t.send("POST", &path, None, None, AuthMode::Signed).await?;
    t.pin("hangup.202", "POST /calls/{callId}/Hangup", &r, &[]);

    let r = t.send("POST", &path, None, None, AuthMode::Signed).await?;
    t.pin(
        "hangup.404-after-hangup",
        "POST /calls/{callId}/Hangup, a second time",
        &r,
        &[],
    );

    let r = t
        .send(
            "POST",
            &e.path(UNKNOWN_CALL, None),
            None,
            None,
            AuthMode::Signed,
        )
        .await?;
    t.pin(
        "hangup.404-unknown-call",
        "POST /calls/{unknown}/Hangup",
        &r,
        &[],
    );

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// `POST /calls/{callId}/PlayAudio`.
pub async fn play_audio(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::PlayAudio;
    let call = t.create_call().await?;
    let path = e.path(&call, None);

    let r = t.json("POST", &path, &play_audio_body()).await?;
    t.pin(
        "play-audio.202",
        "POST /calls/{callId}/PlayAudio",
        &r,
        &[(".body.id", "[operationId]")],
    );

    let r = t
        .json("POST", &path, &without(play_audio_body(), "audioFileUri"))
        .await?;
    t.pin(
        "play-audio.400-missing-audioFileUri",
        "PlayAudio without audioFileUri",
        &r,
        &[],
    );

    let r = t
        .json(
            "POST",
            &path,
            &with(play_audio_body(), "loop", json!("yes")),
        )
        .await?;
    t.pin(
        "play-audio.400-wrong-type",
        "PlayAudio, loop: \"yes\"",
        &r,
        &[],
    );

    let body = with(
        play_audio_body(),
        "audioFileUri",
        json!("/prompts/welcome.wav"),
    );
    let r = t.json("POST", &path, &body).await?;
    t.pin(
        "play-audio.400-bad-value",
        "PlayAudio, relative audioFileUri",
        &r,
        &[],
    );

    unauthenticated(t, e, &path, Some(&play_audio_body())).await?;

    let r = raw(
        t,
        "POST",
        &path,
        &oversize(play_audio_body(), "operationContext"),
    )
    .await?;
    t.pin(
        "play-audio.413-oversize",
        "PlayAudio, operationContext past 1 MiB",
        &r,
        &[],
    );

    let r = t
        .json("POST", &e.path(UNKNOWN_CALL, None), &play_audio_body())
        .await?;
    t.pin(
        "play-audio.404-unknown-call",
        "POST /calls/{unknown}/PlayAudio",
        &r,
        &[],
    );

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// `POST /calls/{callId}/CancelMediaProcessing`.
pub async fn cancel_media_processing(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::CancelMediaProcessing;
    let call = t.create_call().await?;
    let path = e.path(&call, None);
    let body = json!({ "operationContext": CONTEXT });

    let r = t.json("POST", &path, &body).await?;
    let what = "POST /calls/{callId}/CancelMediaProcessing";
    t.pin(
        "cancel-media-processing.202",
        what,
        &r,
        &[(".body.id", "[operationId]")],
    );

    let r = t
        .json("POST", &path, &json!({ "operationContext": 42 }))
        .await?;
    let what = "CancelMediaProcessing, operationContext: 42";
    t.pin("cancel-media-processing.400-wrong-type", what, &r, &[]);

    let r = raw(t, "POST", &path, b"\"cancel\"").await?;
    let what = "CancelMediaProcessing, body \"cancel\"";
    t.pin("cancel-media-processing.400-not-an-object", what, &r, &[]);

    unauthenticated(t, e, &path, Some(&body)).await?;

    let r = raw(
        t,
        "POST",
        &path,
        &oversize(body.clone(), "operationContext"),
    )
    .await?;
    let what = "CancelMediaProcessing, operationContext past 1 MiB";
    t.pin("cancel-media-processing.413-oversize", what, &r, &[]);

    let r = t.json("POST", &e.path(UNKNOWN_CALL, None), &body).await?;
    let what = "POST /calls/{unknown}/CancelMediaProcessing";
    t.pin("cancel-media-processing.404-unknown-call", what, &r, &[]);

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// `POST /calls/{callId}/participants`.
pub async fn invite_participants(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::InviteParticipants;
    let call = t.create_call().await?;
    let path = e.path(&call, None);

    let r = t.json("POST", &path, &invite_body()).await?;
    t.pin(
        "invite-participants.202",
        "POST /calls/{callId}/participants",
        &r,
        &[],
    );

    let r = t
        .json("POST", &path, &json!({ "operationContext": CONTEXT }))
        .await?;
    let what = "invite without participants";
    t.pin(
        "invite-participants.400-missing-participants",
        what,
        &r,
        &[],
    );

    let r = t
        .json("POST", &path, &json!({ "participants": INVITED_USER }))
        .await?;
    t.pin(
        "invite-participants.400-wrong-type",
        "invite, participants: a string",
        &r,
        &[],
    );

    let body = json!({ "participants": [ { "phoneNumber": { "value": "4251001000" } } ] });
    let r = t.json("POST", &path, &body).await?;
    t.pin(
        "invite-participants.400-bad-value",
        "invite, phone number not E.164",
        &r,
        &[],
    );

    unauthenticated(t, e, &path, Some(&invite_body())).await?;

    let r = raw(
        t,
        "POST",
        &path,
        &oversize(invite_body(), "operationContext"),
    )
    .await?;
    t.pin(
        "invite-participants.413-oversize",
        "invite, operationContext past 1 MiB",
        &r,
        &[],
    );

    let r = t
        .json("POST", &e.path(UNKNOWN_CALL, None), &invite_body())
        .await?;
    let what = "POST /calls/{unknown}/participants";
    t.pin("invite-participants.404-unknown-call", what, &r, &[]);

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// `DELETE /calls/{callId}/participants/{participantId}`.
pub async fn remove_participant(t: &Target) -> Result<(), Failure> {
    let e = Endpoint::RemoveParticipant;
    let call = t.create_call().await?;
    t.invite(&call, invite_body()["participants"].clone())
        .await?;
    let path = e.path(&call, Some(INVITED_USER));
    let del = |p: String| async move { t.send("DELETE", &p, None, None, AuthMode::Signed).await };

    unauthenticated(t, e, &path, None).await?;

    let r = del(path.clone()).await?;
    let what = "DELETE /calls/{callId}/participants/{participantId}";
    t.pin("remove-participant.202", what, &r, &[]);

    let r = del(path.clone()).await?;
    let what = "DELETE …/participants/{participantId}, a second time";
    t.pin("remove-participant.404-after-remove", what, &r, &[]);

    let r = del(e.path(&call, Some("8:acs:never-invited"))).await?;
    let what = "DELETE …/participants/{never invited}";
    t.pin("remove-participant.404-unknown-participant", what, &r, &[]);

    let r = del(e.path(UNKNOWN_CALL, Some(INVITED_USER))).await?;
    let what = "DELETE /calls/{unknown}/participants/{participantId}";
    t.pin("remove-participant.404-unknown-call", what, &r, &[]);

    // A call's targets are its participants too (src/contract/CONTRACT.md, invite participants).
    let r = del(e.path(&call, Some(TARGET_USER))).await?;
    let what = "DELETE …/participants/{a target of the call}";
    t.pin("remove-participant.202-target", what, &r, &[]);

    injected_fault(t, e).await?;
    t.hang_up_all().await;
    Ok(())
}

/// Paths and methods outside the six operations.
pub async fn routing(t: &Target) -> Result<(), Failure> {
    let call = t.create_call().await?;

    let path = format!(
        "/calls/{}/StartRecording",
        acs_harness::contract::encode_segment(&call)
    );
    let r = t.json("POST", &path, &json!({})).await?;
    t.pin(
        "routing.404-unknown-path",
        "POST /calls/{callId}/StartRecording",
        &r,
        &[],
    );

    let r = t
        .send("GET", "/calls", None, None, AuthMode::Signed)
        .await?;
    t.pin("routing.405-method-not-allowed", "GET /calls", &r, &[]);

    let r = t
        .send("GET", "/calls", None, None, AuthMode::Missing)
        .await?;
    t.pin(
        "routing.401-before-routing",
        "GET /calls without Authorization",
        &r,
        &[],
    );

    t.hang_up_all().await;
    Ok(())
}
