//! The gate's `events` check against a fake target that POSTs events to each call's
//! callbackUri: right ones pass every cell of the column, and each broken rule of the
//! contract's Events section fails the cell it belongs to.
//!
//! The fake answers every request as a lenient service would (its other checks are not
//! judged here) and sends events in order from one task, so a call's events arrive in
//! the order it queued them.

use acs_harness::auth::{AccessKey, Signer};
use acs_harness::contract::Endpoint;
use acs_harness::gate::{Check, GateConfig, Report, RunEnd, run_gate};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

const SEED: u64 = 20_261_202;

/// One way the fake breaks the Events section (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// `Established` before `Establishing`.
    WrongOrder,
    /// No `Terminated` after hang up.
    NoTerminated,
    /// A `ParticipantsUpdated` after `Terminated`.
    AfterTerminated,
    /// `data` keys in camelCase.
    CamelCase,
    /// Two `PlayAudioResult` for one play.
    TwoPlayResults,
    /// The looped play's result says it completed (200), not that it was cancelled.
    LoopCompletes,
    /// `ParticipantsUpdated` to a call that did not subscribe.
    UnsubscribedUpdates,
    /// `DtmfReceived` to a call that did not subscribe.
    UnsubscribedDtmf,
    /// Two `InviteParticipantResult` for one invitation.
    TwoInviteResults,
    /// `data.CallLegId` of another call.
    WrongCallLegId,
    /// `ParticipantsUpdated` without the call's targets.
    NoTargets,
    /// No event at all.
    Silent,
}

struct Call {
    callback: String,
    subscribed: bool,
    participants: Vec<Value>,
    looping: Option<String>,
}

struct Fake {
    fault: Fault,
    calls: Mutex<HashMap<String, Call>>,
    next: Mutex<u64>,
    events: UnboundedSender<(String, Value)>,
}

fn participant_id(p: &Value) -> String {
    [
        "/rawId",
        "/communicationUser/id",
        "/phoneNumber/value",
        "/microsoftTeamsUser/userId",
    ]
    .iter()
    .find_map(|ptr| p.pointer(ptr)?.as_str())
    .unwrap_or_default()
    .to_string()
}

/// A request's identifier with PascalCase keys, as events carry it.
fn pascal_identifier(p: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(raw) = p.get("rawId") {
        out.insert("RawId".into(), raw.clone());
    }
    if let Some(id) = p.pointer("/communicationUser/id") {
        out.insert("CommunicationUser".into(), json!({"Id": id}));
    }
    if let Some(v) = p.pointer("/phoneNumber/value") {
        out.insert("PhoneNumber".into(), json!({"Value": v}));
    }
    if let Some(u) = p.pointer("/microsoftTeamsUser/userId") {
        out.insert("MicrosoftTeamsUser".into(), json!({"UserId": u}));
    }
    Value::Object(out)
}

fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let k = match c.next() {
                        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                        None => String::new(),
                    };
                    (k, camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}

impl Fake {
    fn id(&self) -> u64 {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        *n
    }

    /// Queues one event of `call` (sent in queue order by one task).
    fn emit(&self, call: &str, callback: &str, ty: &str, kind: &str, mut data: Value) {
        if self.fault == Fault::Silent {
            return;
        }
        data["CallLegId"] = json!(call);
        if self.fault == Fault::WrongCallLegId {
            data["CallLegId"] = json!("some-other-call");
        }
        if self.fault == Fault::CamelCase {
            data = camel(&data);
        }
        let event = json!({
            "id": format!("ev-{}", self.id()),
            "topic": null,
            "subject": format!("callLeg/{call}/{kind}"),
            "data": data,
            "eventType": format!("Microsoft.Communication.{ty}"),
            "eventTime": "2021-05-05T20:38:22.0476663Z",
            "metadataVersion": null,
            "dataVersion": null,
        });
        let _ = self.events.send((callback.to_string(), event));
    }

    fn state(&self, call: &str, cb: &str, state: &str) {
        let conversation = if state == "Establishing" {
            Value::Null
        } else {
            json!("conversation-1")
        };
        self.emit(
            call,
            cb,
            "CallLegStateChanged",
            "callState",
            json!({"ConversationId": conversation, "CallState": state}),
        );
    }

    fn participants(&self, call: &str, c: &Call) {
        let list: Vec<Value> = c
            .participants
            .iter()
            .skip(usize::from(self.fault == Fault::NoTargets))
            .map(|p| {
                json!({"Identifier": pascal_identifier(p), "ParticipantId": participant_id(p), "IsMuted": false})
            })
            .collect();
        self.emit(
            call,
            &c.callback,
            "ParticipantsUpdated",
            "participantsUpdated",
            json!({ "Participants": list }),
        );
    }

    fn play_result(&self, call: &str, cb: &str, ctx: Option<&str>, code: i64, sub: i64, msg: &str) {
        let mut data = json!({"Status": "Completed", "ResultInfo": {"Code": code, "Subcode": sub, "Message": msg}});
        if let Some(ctx) = ctx {
            data["OperationContext"] = json!(ctx);
        }
        self.emit(call, cb, "PlayAudioResult", "playAudio", data);
    }

    fn handle(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_found = (404, json!({"code": "NotFound", "message": "no such call"}));
        match (method, segments.as_slice()) {
            ("POST", ["calls"]) => {
                let id = format!("call-{}", self.id());
                let callback = body["callbackUri"].as_str().unwrap_or_default().to_string();
                // Only the gate's own receiver gets events.
                if !callback.starts_with("http://127.0.0.1") {
                    return (200, json!({ "callLegId": id }));
                }
                let events: Vec<&str> = body["requestedCallEvents"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let call = Call {
                    callback: callback.clone(),
                    subscribed: events.contains(&"participantsUpdated"),
                    participants: body["targets"].as_array().cloned().unwrap_or_default(),
                    looping: None,
                };
                if self.fault == Fault::WrongOrder {
                    self.state(&id, &callback, "Established");
                    self.state(&id, &callback, "Establishing");
                } else {
                    self.state(&id, &callback, "Establishing");
                    self.state(&id, &callback, "Established");
                }
                if call.subscribed || self.fault == Fault::UnsubscribedUpdates {
                    self.participants(&id, &call);
                }
                if self.fault == Fault::UnsubscribedDtmf {
                    self.emit(
                        &id,
                        &callback,
                        "DtmfReceived",
                        "dtmf",
                        json!({"ToneInfo": {"SequenceId": 0, "Tone": "Tone1"}}),
                    );
                }
                self.calls.lock().unwrap().insert(id.clone(), call);
                (200, json!({ "callLegId": id }))
            }
            ("POST", ["calls", id, op]) => {
                let mut calls = self.calls.lock().unwrap();
                let ctx = body["operationContext"].as_str();
                let media = json!({"id": format!("op-{}", self.id()), "status": "running", "operationContext": ctx});
                let Some(c) = calls.get_mut(*id) else {
                    return match *op {
                        "PlayAudio" | "CancelMediaProcessing" => (202, media),
                        _ => (202, Value::Null),
                    };
                };
                let cb = c.callback.clone();
                match *op {
                    "PlayAudio" => {
                        if body["loop"] == json!(true) {
                            c.looping = Some(ctx.unwrap_or_default().to_string());
                        } else {
                            self.play_result(
                                id,
                                &cb,
                                ctx,
                                200,
                                0,
                                "Action completed successfully.",
                            );
                            if self.fault == Fault::TwoPlayResults {
                                self.play_result(
                                    id,
                                    &cb,
                                    ctx,
                                    200,
                                    0,
                                    "Action completed successfully.",
                                );
                            }
                        }
                        (202, media)
                    }
                    "CancelMediaProcessing" => {
                        if let Some(l) = c.looping.take() {
                            if self.fault == Fault::LoopCompletes {
                                self.play_result(
                                    id,
                                    &cb,
                                    Some(&l),
                                    200,
                                    0,
                                    "Action completed successfully.",
                                );
                            } else {
                                self.play_result(
                                    id,
                                    &cb,
                                    Some(&l),
                                    400,
                                    8508,
                                    "Action falied, the operation was cancelled.",
                                );
                            }
                        }
                        (202, media)
                    }
                    "participants" => {
                        let invited = body["participants"].as_array().cloned().unwrap_or_default();
                        let result = json!({
                            "OperationContext": ctx,
                            "Status": "Completed",
                            "ResultInfo": null,
                            "Participants": invited.iter().map(pascal_identifier).collect::<Vec<_>>(),
                        });
                        self.emit(
                            id,
                            &cb,
                            "InviteParticipantResult",
                            "inviteParticipantResult",
                            result.clone(),
                        );
                        if self.fault == Fault::TwoInviteResults {
                            self.emit(
                                id,
                                &cb,
                                "InviteParticipantResult",
                                "inviteParticipantResult",
                                result,
                            );
                        }
                        c.participants.extend(invited);
                        if c.subscribed || self.fault == Fault::UnsubscribedUpdates {
                            self.participants(id, c);
                        }
                        (202, Value::Null)
                    }
                    "Hangup" => {
                        let c = calls.remove(*id).unwrap();
                        if let Some(l) = &c.looping {
                            self.play_result(id, &cb, Some(l), 400, 8508, "cancelled");
                        }
                        self.state(id, &cb, "Terminating");
                        if self.fault != Fault::NoTerminated {
                            self.state(id, &cb, "Terminated");
                        }
                        if self.fault == Fault::AfterTerminated {
                            self.participants(id, &c);
                        }
                        (202, Value::Null)
                    }
                    _ => not_found,
                }
            }
            ("DELETE", ["calls", id, "participants", pid]) => {
                let mut calls = self.calls.lock().unwrap();
                if let Some(c) = calls.get_mut(*id) {
                    let pid = percent_encoding::percent_decode_str(pid)
                        .decode_utf8_lossy()
                        .to_string();
                    c.participants.retain(|p| participant_id(p) != pid);
                    if c.subscribed {
                        self.participants(id, c);
                    }
                }
                (202, Value::Null)
            }
            _ => not_found,
        }
    }
}

struct Responder(Arc<Fake>);

impl wiremock::Respond for Responder {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let (status, out) = self
            .0
            .handle(request.method.as_str(), request.url.path(), &body);
        let t = wiremock::ResponseTemplate::new(status);
        if out.is_null() {
            t
        } else {
            t.set_body_raw(out.to_string().into_bytes(), "application/json")
        }
    }
}

/// Runs the gate against a fake with `fault`; `event_timeout` bounds each wait.
async fn gate(fault: Fault, event_timeout: Duration) -> Report {
    let (tx, mut rx) = unbounded_channel::<(String, Value)>();
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Some((url, event)) = rx.recv().await {
            let _ = http
                .post(&url)
                .timeout(Duration::from_secs(10))
                .json(&event)
                .send()
                .await;
        }
    });
    let fake = Arc::new(Fake {
        fault,
        calls: Mutex::new(HashMap::new()),
        next: Mutex::new(0),
        events: tx,
    });
    let server = wiremock::MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(Responder(fake))
        .mount(&server)
        .await;
    let signer = Signer::new(&AccessKey::from_base64("Z2F0ZS1ldmVudHMta2V5").unwrap());
    let mut config = GateConfig::new(server.uri(), signer);
    config.cases = 0;
    config.seed = SEED;
    config.timeout = Duration::from_secs(5);
    config.event_timeout = event_timeout;
    let report = run_gate(config).await;
    drop(server);
    sender.abort();
    report
}

fn events_cell(report: &Report, e: Endpoint) -> (u64, u64) {
    let c = report.cell(e, Check::Events).unwrap();
    (c.passed, c.failed)
}

/// The `events` failures of an endpoint, as text.
fn failures(report: &Report, e: Endpoint) -> String {
    report
        .cell(e, Check::Events)
        .unwrap()
        .failures
        .iter()
        .map(|f| {
            format!(
                "{} | {} | {} | {:?}\n",
                f.case, f.expected, f.got, f.violations
            )
        })
        .collect()
}

/// Asserts the run completed and that `endpoint`'s events cell failed on a case
/// containing `case`; returns the failures' text.
#[track_caller]
fn assert_events_fail(report: &Report, endpoint: Endpoint, case: &str) -> String {
    let table = report.render_terminal(false);
    assert_eq!(report.end, RunEnd::Completed, "{table}");
    let text = failures(report, endpoint);
    assert!(
        events_cell(report, endpoint).1 > 0,
        "{endpoint} events should fail:\n{table}"
    );
    assert!(text.contains(case), "{case:?} not in:\n{text}");
    text
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_right_pass_every_cell_of_the_column() {
    let report = gate(Fault::None, TIMEOUT).await;
    let table = report.render_terminal(false);
    assert_eq!(report.end, RunEnd::Completed, "{table}");
    for e in Endpoint::ALL {
        let (passed, failed) = events_cell(&report, e);
        assert!(
            passed > 0 && failed == 0,
            "{e}:\n{}\n{table}",
            failures(&report, e)
        );
    }
    assert!(table.contains("events"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_before_establishing_fails() {
    let r = gate(Fault::WrongOrder, TIMEOUT).await;
    assert_events_fail(&r, Endpoint::CreateCall, "order: Establishing first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_terminated_fails_and_shows_the_events_so_far() {
    let r = gate(Fault::NoTerminated, Duration::from_secs(2)).await;
    let text = assert_events_fail(&r, Endpoint::Hangup, "Terminated after hang up");
    assert!(text.contains("events received for the call:"), "{text}");
    assert!(text.contains("CallLegStateChanged Terminating"), "{text}");
    // The receiver's path (the callbackUri) is never shown.
    assert!(!text.contains("gate-events-a"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_after_terminated_fails() {
    let r = gate(Fault::AfterTerminated, TIMEOUT).await;
    assert_events_fail(&r, Endpoint::Hangup, "nothing after Terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camel_case_data_keys_fail() {
    let r = gate(Fault::CamelCase, Duration::from_secs(2)).await;
    let text = assert_events_fail(&r, Endpoint::CreateCall, "shape and call");
    assert!(text.contains("PascalCase"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_results_for_one_play_fail() {
    let r = gate(Fault::TwoPlayResults, TIMEOUT).await;
    let text = assert_events_fail(&r, Endpoint::PlayAudio, "exactly one PlayAudioResult");
    assert!(text.contains("2 PlayAudioResult events"), "{text}");
    assert_eq!(events_cell(&r, Endpoint::CancelMediaProcessing).1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_play_that_completes_instead_of_cancelled_fails() {
    let r = gate(Fault::LoopCompletes, TIMEOUT).await;
    let text = assert_events_fail(
        &r,
        Endpoint::CancelMediaProcessing,
        "after cancel media processing",
    );
    assert!(text.contains("Subcode"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_updated_without_subscription_fails() {
    let r = gate(Fault::UnsubscribedUpdates, TIMEOUT).await;
    let text = assert_events_fail(
        &r,
        Endpoint::CreateCall,
        "ParticipantsUpdated only when subscribed",
    );
    assert!(text.contains("call B"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_without_subscription_fails() {
    let r = gate(Fault::UnsubscribedDtmf, TIMEOUT).await;
    assert_events_fail(
        &r,
        Endpoint::CreateCall,
        "DtmfReceived only when subscribed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_results_for_one_invitation_fail() {
    let r = gate(Fault::TwoInviteResults, TIMEOUT).await;
    assert_events_fail(
        &r,
        Endpoint::InviteParticipants,
        "exactly one InviteParticipantResult",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_naming_another_call_fail() {
    let r = gate(Fault::WrongCallLegId, Duration::from_secs(2)).await;
    let text = assert_events_fail(
        &r,
        Endpoint::CreateCall,
        "every event names a call the gate made",
    );
    assert!(text.contains("some-other-call"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_without_the_targets_fail() {
    let r = gate(Fault::NoTargets, TIMEOUT).await;
    let text = assert_events_fail(
        &r,
        Endpoint::CreateCall,
        "ParticipantsUpdated when the call is established",
    );
    assert!(text.contains("+14255550140"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_sends_nothing_fails_once_per_call_in_bounded_time() {
    let started = Instant::now();
    let r = gate(Fault::Silent, Duration::from_secs(1)).await;
    let text = assert_events_fail(&r, Endpoint::CreateCall, "Establishing after create call");
    assert!(text.contains("no event received for the call"), "{text}");
    // One wait per call, not one per step: seconds, not a minute.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(events_cell(&r, Endpoint::CreateCall).1, 2, "{text}");
    for e in [
        Endpoint::Hangup,
        Endpoint::PlayAudio,
        Endpoint::InviteParticipants,
    ] {
        assert_eq!(events_cell(&r, e), (0, 0), "{e}");
    }
}

#[test]
fn a_check_not_run_says_why_in_every_rendering() {
    let mut r = Report::new(
        "https://x.example".into(),
        false,
        1,
        1,
        vec![Endpoint::Hangup],
    );
    r.pass(Endpoint::Hangup, Check::Lifecycle);
    r.not_run_because(Check::Events, "pass --callback-url".into());
    let table = r.render_terminal(false);
    assert!(
        table.contains("events: not run: pass --callback-url"),
        "{table}"
    );
    assert_eq!(r.exit_code(), 0, "a check not run is never a failure");
    let json = r.to_json();
    let checks = json["endpoints"][0]["checks"].as_array().unwrap();
    let events = checks.iter().find(|c| c["check"] == "events").unwrap();
    assert_eq!(events["status"], "not_run");
    assert_eq!(events["reason"], "pass --callback-url");
    assert!(
        r.to_junit()
            .contains("<skipped message=\"not run: pass --callback-url\"/>")
    );
}
