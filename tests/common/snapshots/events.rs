//! Event shapes in live mode. With `ACS_HARNESS_CALLBACK_URL` (the public URL of a
//! tunnel or ingress) and `ACS_HARNESS_CALLBACK_LISTEN` (the local address it forwards
//! to), a call runs with its `callbackUri` at a receiver on this machine, and the shape
//! of the first event of each type (per call state for `CallLegStateChanged`) is pinned
//! in `snapshots/live/` as `events.<Type>[.<State>].shape`.

use super::{Failure, Kind, Target};
use acs_harness::contract::Endpoint;
use acs_harness::receiver::{Receiver, ReceiverConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the suite waits for the call's `Terminated` after hanging up.
const EVENTS_WAIT: Duration = Duration::from_secs(60);

const SOURCE_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000e1";
const TARGET_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000e2";
const INVITED_USER: &str =
    "8:acs:11111111-2222-4333-8444-555555555555_00000000-0000-4000-8000-0000000000e3";

/// Where a live target sends events, as the environment describes it.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// `ACS_HARNESS_CALLBACK_URL`.
    pub url: url::Url,
    /// `ACS_HARNESS_CALLBACK_LISTEN`.
    pub listen: SocketAddr,
}

impl CallbackConfig {
    /// `Ok(None)` when `ACS_HARNESS_CALLBACK_URL` is unset or empty (no event shapes).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Failure> {
        let Some(raw) = var("ACS_HARNESS_CALLBACK_URL").filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let url = url::Url::parse(raw.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Failure("ACS_HARNESS_CALLBACK_URL is not an http(s) URL".into()))?;
        let listen = var("ACS_HARNESS_CALLBACK_LISTEN")
            .ok_or_else(|| {
                Failure(
                    "ACS_HARNESS_CALLBACK_URL is set but ACS_HARNESS_CALLBACK_LISTEN is not; set it \
                     to the address the URL forwards to (e.g. 0.0.0.0:8081)"
                        .into(),
                )
            })
            .and_then(|l| {
                l.trim().parse::<std::net::SocketAddr>().map_err(|e| {
                    Failure(format!("ACS_HARNESS_CALLBACK_LISTEN is not IP:PORT: {e}"))
                })
            })?;
        Ok(Some(CallbackConfig { url, listen }))
    }
}

/// The snapshot name of an event: its type, and the state of a `CallLegStateChanged`.
pub fn event_name(body: &Value) -> String {
    let ty = body["eventType"].as_str().unwrap_or("unknown");
    let ty = ty.strip_prefix("Microsoft.Communication.").unwrap_or(ty);
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(48)
            .collect()
    };
    match body["data"]["CallState"].as_str() {
        Some(state) => format!("events.{}.{}", clean(ty), clean(state)),
        None => format!("events.{}", clean(ty)),
    }
}

/// Runs a call whose events go to the receiver and pins the shape of each kind.
pub async fn events(t: &Target) -> Result<(), Failure> {
    if t.kind() != Kind::Live {
        t.skip(
            "events",
            "event shapes are pinned against a live target only",
        );
        return Ok(());
    }
    let Some(cb) = CallbackConfig::from_vars(|k| std::env::var(k).ok())? else {
        t.skip(
            "events",
            "set ACS_HARNESS_CALLBACK_URL and ACS_HARNESS_CALLBACK_LISTEN to pin event shapes",
        );
        return Ok(());
    };
    let rx = Receiver::start(ReceiverConfig {
        listen: cb.listen,
        public_url: Some(cb.url),
        ..ReceiverConfig::default()
    })
    .await
    .map_err(|e| Failure(format!("cannot listen for events on {}: {e}", cb.listen)))?;
    let create = json!({
        "source": { "communicationUser": { "id": SOURCE_USER } },
        "targets": [ { "communicationUser": { "id": TARGET_USER } } ],
        "callbackUri": rx.callback_uri("snapshot-suite"),
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["participantsUpdated", "dtmfReceived"],
    });
    let reply = t.json("POST", "/calls", &create).await?;
    let call = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["callLegId"].as_str().map(str::to_string))
        .ok_or_else(|| Failure(format!("{}: POST /calls: no callLegId", t.label())))?;
    t.remember_call(&call);
    let play = json!({"audioFileUri": "https://media.example/prompts/hold.wav", "loop": true, "operationContext": "snapshot-events"});
    let steps: [(Endpoint, Option<&str>, Option<Value>); 5] = [
        (Endpoint::PlayAudio, None, Some(play)),
        (
            Endpoint::CancelMediaProcessing,
            None,
            Some(json!({"operationContext": "snapshot-cancel"})),
        ),
        (
            Endpoint::InviteParticipants,
            None,
            Some(
                json!({"participants": [{"communicationUser": {"id": INVITED_USER}}], "operationContext": "snapshot-invite"}),
            ),
        ),
        (Endpoint::RemoveParticipant, Some(INVITED_USER), None),
        (Endpoint::Hangup, None, None),
    ];
    for (e, pid, body) in steps {
        let path = e.path(&call, pid);
        match body {
            Some(b) => t.json(e.method(), &path, &b).await?,
            None => {
                t.send(e.method(), &path, None, None, acs_harness::AuthMode::Signed)
                    .await?
            }
        };
    }
    let deadline = tokio::time::Instant::now() + EVENTS_WAIT;
    let terminated = rx
        .wait_for(&call, deadline, |r| {
            r.body["data"]["CallState"] == "Terminated"
        })
        .await;
    let events = rx.events_for(&call);
    if terminated.is_none() {
        return Err(Failure(format!(
            "{}: no Terminated event within {EVENTS_WAIT:?} at the callback URL ({} events for the call)",
            t.label(),
            events.len()
        )));
    }
    let mut pinned = std::collections::BTreeSet::new();
    for r in events {
        let name = event_name(&r.body);
        if pinned.insert(name.clone()) {
            let shape = acs_harness::value_shape(&r.body);
            t.pin_shape(
                &name,
                "an event the live target sent to the call's callbackUri",
                shape,
            );
        }
    }
    Ok(())
}
