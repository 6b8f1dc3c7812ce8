//! Events in load runs: a step can await the event its request causes (issue #13), the
//! way a real application waits for a play's result before its next step.
//!
//! One event receiver ([`crate::receiver`]) runs per load process; every create-call
//! body carries its callbackUri. A step that awaits an event waits, up to its timeout,
//! for that event of the user's call and records the time from the request to the
//! event's arrival as a request of its own, `EVENT <name>` (method `EVENT`), through
//! goose's custom request metrics: it shows in goose's tables and reports, in the
//! thresholds (`EVENT PlayAudioResult:p95<1500ms`) and in `report merge`. An event that
//! does not arrive in time, or reports that the operation failed, is a failed request.

use crate::contract::Endpoint;
use crate::receiver::{Received, Receiver, ReceiverConfig};
use goose::goose::{GooseUser, TransactionError};
use goose::prelude::TransactionResult;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The method label of event requests in goose's metrics: `EVENT PlayAudioResult`.
pub const METHOD: &str = "EVENT";

/// How long a step awaits its event when the scenario gives no `await_timeout`.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `await_timeout`: a user waiting longer would hold up the end of a run.
pub const MAX_AWAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The last path segment of the load run's callbackUri (the receiver attributes events
/// by call id, so one callbackUri serves every user).
pub const CALLBACK_TAG: &str = "load";

/// How often a waiting user looks whether the run is being stopped.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The event types a step can await (src/contract/CONTRACT.md, Events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `CallLegStateChanged` with `CallState: Established`, after create-call.
    CallLegStateChanged,
    /// `PlayAudioResult` of the play that the step sent.
    PlayAudioResult,
    /// `InviteParticipantResult` of the invitation that the step sent.
    InviteParticipantResult,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 3] = [
        EventKind::CallLegStateChanged,
        EventKind::PlayAudioResult,
        EventKind::InviteParticipantResult,
    ];

    /// The short name, as scenarios and thresholds write it.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::CallLegStateChanged => "CallLegStateChanged",
            EventKind::PlayAudioResult => "PlayAudioResult",
            EventKind::InviteParticipantResult => "InviteParticipantResult",
        }
    }

    /// The `eventType` the envelope carries.
    #[cfg(test)]
    pub fn event_type(self) -> &'static str {
        match self {
            EventKind::CallLegStateChanged => "Microsoft.Communication.CallLegStateChanged",
            EventKind::PlayAudioResult => "Microsoft.Communication.PlayAudioResult",
            EventKind::InviteParticipantResult => "Microsoft.Communication.InviteParticipantResult",
        }
    }

    /// The kind by its short name or its full `eventType`.
    pub fn from_name(name: &str) -> Option<EventKind> {
        let name = name.trim();
        let short = name
            .strip_prefix("Microsoft.Communication.")
            .unwrap_or(name);
        EventKind::ALL.into_iter().find(|k| k.name() == short)
    }

    /// The endpoint whose request causes this event, so the only step that may await it.
    pub fn endpoint(self) -> Endpoint {
        match self {
            EventKind::CallLegStateChanged => Endpoint::CreateCall,
            EventKind::PlayAudioResult => Endpoint::PlayAudio,
            EventKind::InviteParticipantResult => Endpoint::InviteParticipants,
        }
    }

    /// The event a step on `e` can await, if any.
    pub fn for_endpoint(e: Endpoint) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.endpoint() == e)
    }

    /// The key of its requests in goose's metrics and reports: `EVENT PlayAudioResult`.
    pub fn request_key(self) -> String {
        format!("{METHOD} {}", self.name())
    }

    /// The kind a request name in a threshold means: `EVENT PlayAudioResult` (the
    /// `EVENT` may be written in any case, the name as a short or full event type).
    pub fn named(request: &str) -> Option<EventKind> {
        let (method, name) = request.trim().split_once(' ')?;
        if !method.eq_ignore_ascii_case(METHOD) {
            return None;
        }
        EventKind::from_name(name)
    }

    /// The request names of every kind, for messages.
    pub fn request_names() -> String {
        EventKind::ALL
            .iter()
            .map(|k| k.request_key())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a step awaits after its request was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Await {
    /// The event.
    pub event: EventKind,
    /// How long from the request to the event at most.
    pub timeout: Duration,
}

/// An accepted request whose event a user now awaits.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The event.
    pub event: EventKind,
    /// The call it belongs to (`data.CallLegId`).
    pub call_leg_id: String,
    /// The request's `operationContext`, which the result event echoes.
    pub context: Option<String>,
    /// When the request went out: the latency is measured from here, and only events
    /// that arrived after it can be its result.
    pub sent_at: Instant,
    /// How long from `sent_at` at most.
    pub timeout: Duration,
}

/// What became of an awaited event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It arrived and reports success, `latency` after the request.
    Arrived {
        /// From the request to the event's arrival.
        latency: Duration,
    },
    /// It arrived but reports that the operation failed (or the call ended instead).
    Failed {
        /// From the request to the event's arrival.
        latency: Duration,
        /// What the event says.
        reason: String,
    },
    /// It did not arrive within the timeout.
    Missed {
        /// The timeout.
        waited: Duration,
    },
    /// The run was stopped while waiting: nothing is measured.
    Stopped,
}

fn data_str<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get("data")?.get(key)?.as_str()
}

/// The event kind of an envelope, by its `eventType`.
fn kind_of(body: &Value) -> Option<EventKind> {
    EventKind::from_name(body.get("eventType")?.as_str()?)
}

/// Whether `r` is the event a request of `kind` sent at `sent_at` with `context` waits
/// for: its type, arrived after the request, echoing the context; for the call state,
/// one that settles the wait (established, or ending instead).
pub fn matches(kind: EventKind, r: &Received, context: Option<&str>, sent_at: Instant) -> bool {
    if r.at < sent_at || kind_of(&r.body) != Some(kind) {
        return false;
    }
    match kind {
        EventKind::CallLegStateChanged => matches!(
            data_str(&r.body, "CallState"),
            Some("Established" | "Terminating" | "Terminated")
        ),
        EventKind::PlayAudioResult | EventKind::InviteParticipantResult => {
            context.is_none_or(|c| data_str(&r.body, "OperationContext") == Some(c))
        }
    }
}

/// Whether a matching event reports success; why not, if it does not.
pub fn judge(kind: EventKind, r: &Received) -> Result<(), String> {
    match kind {
        EventKind::CallLegStateChanged => match data_str(&r.body, "CallState") {
            Some("Established") => Ok(()),
            other => Err(format!(
                "the call became {} instead of Established",
                other.unwrap_or("?")
            )),
        },
        EventKind::PlayAudioResult | EventKind::InviteParticipantResult => {
            match data_str(&r.body, "Status") {
                Some("Failed") => {
                    let message = r
                        .body
                        .get("data")
                        .and_then(|d| d.get("ResultInfo"))
                        .and_then(|i| i.get("Message"))
                        .and_then(Value::as_str)
                        .map(|m| format!(": {}", crate::redact::clip(m, 200)))
                        .unwrap_or_default();
                    Err(format!("{} Failed{message}", kind.name()))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Waits for the event `p` awaits, until its timeout or until the run is being stopped.
pub async fn await_event(receiver: &Receiver, p: &Pending) -> Outcome {
    let deadline = tokio::time::Instant::from_std(p.sent_at) + p.timeout;
    let (kind, context, sent_at) = (p.event, p.context.as_deref(), p.sent_at);
    let wait = receiver.wait_for(&p.call_leg_id, deadline, |r| {
        matches(kind, r, context, sent_at)
    });
    // A run that is stopped (Ctrl-C, a threshold abort, the last replayed body) must not
    // wait out every user's timeout, nor count the cut waits as missing events.
    let stopping = async {
        loop {
            tokio::time::sleep(STOP_POLL).await;
            if goose::is_killswitch_triggered() {
                break;
            }
        }
    };
    tokio::select! {
        got = wait => match got {
            Some(r) => {
                let latency = r.at.saturating_duration_since(sent_at);
                match judge(kind, &r) {
                    Ok(()) => Outcome::Arrived { latency },
                    Err(reason) => Outcome::Failed { latency, reason },
                }
            }
            None if goose::is_killswitch_triggered() => Outcome::Stopped,
            None => Outcome::Missed { waited: p.timeout },
        },
        () = stopping => Outcome::Stopped,
    }
}

/// Records an outcome as a request `EVENT <name>` in goose's metrics; a failed or
/// missing event also fails the step.
pub async fn record(user: &mut GooseUser, kind: EventKind, outcome: &Outcome) -> TransactionResult {
    let (latency, failure) = match outcome {
        Outcome::Arrived { latency } => (*latency, None),
        Outcome::Failed { latency, reason } => (*latency, Some(reason.clone())),
        Outcome::Missed { waited } => (
            *waited,
            Some(format!(
                "no {} within {}",
                kind.name(),
                super::scenario::format_duration(*waited)
            )),
        ),
        Outcome::Stopped => return Ok(()),
    };
    user.record_custom_request_duration(
        METHOD,
        kind.name(),
        latency,
        failure.is_none(),
        None,
        failure.as_deref(),
    )
    .await?;
    match failure {
        None => Ok(()),
        Some(reason) => Err(Box::new(TransactionError::Custom(format!(
            "{}: {reason}",
            kind.request_key()
        )))),
    }
}

/// The line a run prints when its receiver is up: where events go and what is awaited.
pub fn describe(receiver: &Receiver, callback_uri: &str, awaited: &[EventKind]) -> String {
    let awaits = if awaited.is_empty() {
        "no step awaits one".to_string()
    } else {
        let names: Vec<&str> = awaited.iter().map(|k| k.name()).collect();
        format!("awaiting {}", names.join(", "))
    };
    format!(
        "load: events to {} (receiver on {}), {awaits}",
        crate::redact::url(callback_uri),
        receiver.local_addr()
    )
}

/// The line a run prints at its end: what the receiver got.
pub fn summary(receiver: &Receiver) -> String {
    let stats = receiver.stats();
    let mut out = format!("events: {} received", stats.received);
    let unattributed = receiver.unattributed().len();
    if unattributed > 0 {
        out.push_str(&format!(", {unattributed} not attributable to a call"));
    }
    if stats.rejected_too_large > 0 {
        out.push_str(&format!(", {} too large", stats.rejected_too_large));
    }
    if stats.rejected_other > 0 {
        out.push_str(&format!(
            ", {} refused (not a POST, or its body late or broken)",
            stats.rejected_other
        ));
    }
    if stats.dropped_over_capacity > 0 {
        out.push_str(&format!(
            ", {} dropped over capacity",
            stats.dropped_over_capacity
        ));
    }
    out
}

/// The receiver's configuration from `--callback-url` and `--callback-listen`.
pub fn receiver_config(
    callback_url: Option<&str>,
    callback_listen: Option<&str>,
) -> Result<ReceiverConfig, String> {
    let mut config = ReceiverConfig::default();
    if let Some(listen) = callback_listen {
        config.listen = listen.trim().parse::<SocketAddr>().map_err(|_| {
            format!(
                "--callback-listen {}: not an address with a port, e.g. 0.0.0.0:8090 or 127.0.0.1:0",
                crate::redact::clip(listen, 100)
            )
        })?;
    }
    if let Some(text) = callback_url {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!(
                "--callback-url {}: not a URL: {e}",
                crate::redact::url(text)
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--callback-url {}: not an http(s) URL with a host",
                crate::redact::url(text)
            ));
        }
        config.public_url = Some(url);
    } else if config.listen.ip().is_unspecified() {
        return Err(format!(
            "--callback-listen {}: events cannot be sent to an unspecified address; give --callback-url with the URL the target reaches this receiver at",
            config.listen
        ));
    }
    Ok(config)
}

/// Whether a target at `host` can reach a receiver on this machine's loopback.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received(body: Value, at: Instant) -> Received {
        Received {
            at,
            path: "/load".into(),
            raw_len: 0,
            body,
            error: None,
        }
    }

    fn event(kind: &str, data: Value) -> Value {
        json!({
            "id": "1",
            "subject": "callLeg/c1/x",
            "eventType": format!("Microsoft.Communication.{kind}"),
            "data": data,
        })
    }

    #[test]
    fn names_keys_and_endpoints() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
            assert_eq!(EventKind::from_name(k.event_type()), Some(k));
            assert_eq!(EventKind::named(&k.request_key()), Some(k));
            assert_eq!(EventKind::for_endpoint(k.endpoint()), Some(k));
        }
        assert_eq!(
            EventKind::named("event PlayAudioResult"),
            Some(EventKind::PlayAudioResult)
        );
        assert_eq!(EventKind::named("POST PlayAudioResult"), None);
        assert_eq!(EventKind::named("EVENT DtmfReceived"), None);
        assert_eq!(EventKind::for_endpoint(Endpoint::Hangup), None);
        assert_eq!(
            EventKind::PlayAudioResult.request_key(),
            "EVENT PlayAudioResult"
        );
    }

    #[test]
    fn only_the_requests_own_result_after_it_matches() {
        let sent = Instant::now();
        let later = sent + Duration::from_millis(5);
        let k = EventKind::PlayAudioResult;
        let ok = event(
            "PlayAudioResult",
            json!({"CallLegId": "c1", "OperationContext": "a#1", "Status": "Completed"}),
        );
        assert!(matches(k, &received(ok.clone(), later), Some("a#1"), sent));
        // Another play's result, an earlier event, another type: not this request's.
        assert!(!matches(k, &received(ok.clone(), later), Some("a#2"), sent));
        let before = sent.checked_sub(Duration::from_millis(1)).unwrap_or(sent);
        if before < sent {
            assert!(!matches(
                k,
                &received(ok.clone(), before),
                Some("a#1"),
                sent
            ));
        }
        assert!(!matches(
            EventKind::InviteParticipantResult,
            &received(ok.clone(), later),
            Some("a#1"),
            sent
        ));
        // A request without a context takes any result of its call after it.
        assert!(matches(k, &received(ok, later), None, sent));
        assert!(!matches(
            k,
            &received(json!("not an event"), later),
            None,
            sent
        ));
    }

    #[test]
    fn failed_results_and_ended_calls_are_failures() {
        let at = Instant::now();
        let failed = event(
            "PlayAudioResult",
            json!({"Status": "Failed", "ResultInfo": {"Code": 500, "Subcode": 1, "Message": "no such file"}}),
        );
        let e = judge(EventKind::PlayAudioResult, &received(failed, at)).unwrap_err();
        assert!(e.contains("Failed: no such file"), "{e}");
        let k = EventKind::CallLegStateChanged;
        for (state, settles, ok) in [
            ("Establishing", false, false),
            ("Established", true, true),
            ("Terminated", true, false),
        ] {
            let r = received(
                event("CallLegStateChanged", json!({"CallState": state})),
                at,
            );
            assert_eq!(matches(k, &r, None, at), settles, "{state}");
            assert_eq!(judge(k, &r).is_ok(), ok, "{state}");
        }
    }

    #[test]
    fn callback_options_are_checked() {
        let c = receiver_config(None, None).unwrap();
        assert!(c.listen.ip().is_loopback() && c.public_url.is_none());
        let c = receiver_config(Some("https://cb.example/acs?k=1"), Some("0.0.0.0:0")).unwrap();
        assert_eq!(c.public_url.unwrap().host_str(), Some("cb.example"));
        for (url, listen) in [
            (Some("/relative"), None),
            (Some("ftp://x.example/"), None),
            (None, Some("nowhere")),
            (None, Some("0.0.0.0:8090")),
        ] {
            assert!(receiver_config(url, listen).is_err(), "{url:?} {listen:?}");
        }
        let e = receiver_config(Some("http://u:s3cr3tpass@cb.example/x y"), None);
        if let Err(e) = e {
            assert!(!e.contains("s3cr3tpass"), "{e}");
        }
        let loopback = |h: &str| is_loopback_host(&url::Url::parse(h).unwrap().host().unwrap());
        assert!(loopback("http://127.0.0.1:1") && loopback("http://[::1]:1"));
        assert!(loopback("http://localhost:1") && !loopback("http://acs.example"));
    }
}
