//! The double's events (src/contract/CONTRACT.md, "Events"): what each request causes,
//! in which order, delivery with retries and bounds, allowed hosts, the control API,
//! and the pinned body and shape of every event type (snapshots/event.*.snap).

mod common;

use acs_harness::contract::Endpoint;
use acs_harness::double::{
    CallState, ControlError, Delivery, Double, DoubleConfig, DoubleRequest, Handler,
};
use common::Client;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// How long a test waits for one event before it fails (generous: a busy machine).
const WAIT: Duration = Duration::from_secs(20);

/// A test receiver on 127.0.0.1:0: every POST goes into a channel, answered with the
/// next status of a plan (then 200).
struct Receiver {
    server: wiremock::MockServer,
    rx: mpsc::UnboundedReceiver<Value>,
}

struct Record {
    tx: mpsc::UnboundedSender<Value>,
    plan: Arc<Mutex<VecDeque<u16>>>,
}

impl wiremock::Respond for Record {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        // The callbackUri is used exactly as given, secret query included; a request
        // that breaks a rule reaches the test as a string that `check_event` rejects.
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        let body = if request.method.as_str() != "POST"
            || content_type != Some("application/json")
            || request.url.query() != Some("secret=s3cr3t")
        {
            Value::String(format!("bad delivery: {} {}", request.method, request.url))
        } else {
            serde_json::from_slice(&request.body).unwrap_or(Value::Null)
        };
        let _ = self.tx.send(body);
        let status = self.plan.lock().unwrap().pop_front().unwrap_or(200);
        wiremock::ResponseTemplate::new(status)
    }
}

impl Receiver {
    async fn start(plan: &[u16]) -> Receiver {
        let server = wiremock::MockServer::start().await;
        let (tx, rx) = mpsc::unbounded_channel();
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(Record {
                tx,
                plan: Arc::new(Mutex::new(plan.iter().copied().collect())),
            })
            .mount(&server)
            .await;
        Receiver { server, rx }
    }

    fn url(&self) -> String {
        format!("{}/events/cb?secret=s3cr3t", self.server.uri())
    }

    async fn next(&mut self) -> Value {
        let e = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an event within the deadline")
            .expect("the receiver is running");
        check_event(&e);
        e
    }

    /// The next event, which must be of type `ty`.
    async fn expect(&mut self, ty: &str) -> Value {
        let e = self.next().await;
        assert_eq!(
            e["eventType"],
            format!("Microsoft.Communication.{ty}"),
            "{e:#}"
        );
        e
    }

    fn nothing_yet(&mut self) {
        if let Ok(e) = self.rx.try_recv() {
            panic!("unexpected event {e:#}");
        }
    }
}

/// The envelope and data checks of src/contract/CONTRACT.md, by hand.
/// Every event the double sends passes the contract's event schema; beyond the schema,
/// the call states carry a conversation id exactly once established.
fn check_event(e: &Value) {
    if let Err(v) = acs_harness::contract::events::validate_event(e) {
        panic!("{v:?}: {e:#}");
    }
    let call = e["data"]["CallLegId"].as_str().expect("CallLegId");
    let subject = e["subject"].as_str().unwrap();
    let kind = match e["eventType"].as_str().unwrap() {
        "Microsoft.Communication.CallLegStateChanged" => {
            let state = e["data"]["CallState"].as_str().unwrap();
            assert!(["Establishing", "Established", "Terminating", "Terminated"].contains(&state));
            if state == "Establishing" {
                assert!(e["data"]["ConversationId"].is_null());
            } else {
                assert!(e["data"]["ConversationId"].is_string(), "{e:#}");
            }
            "callState"
        }
        "Microsoft.Communication.ParticipantsUpdated" => {
            for p in e["data"]["Participants"].as_array().unwrap() {
                assert!(p["ParticipantId"].is_string() && p["IsMuted"].is_boolean());
                assert!(p["Identifier"].is_object());
            }
            "participantsUpdated"
        }
        "Microsoft.Communication.DtmfReceived" => {
            assert!(e["data"]["ToneInfo"]["SequenceId"].is_u64());
            assert!(e["data"]["ToneInfo"]["Tone"].is_string());
            "dtmf"
        }
        "Microsoft.Communication.PlayAudioResult" => {
            assert!(["Completed", "Failed"].contains(&e["data"]["Status"].as_str().unwrap()));
            assert!(e["data"]["ResultInfo"]["Code"].is_i64());
            "playAudio"
        }
        "Microsoft.Communication.InviteParticipantResult" => {
            assert!(e["data"]["Participants"].is_array());
            assert!(
                e["data"]
                    .as_object()
                    .unwrap()
                    .contains_key("OperationContext")
            );
            "inviteParticipantResult"
        }
        other => panic!("unknown event type {other}"),
    };
    assert_eq!(subject, format!("callLeg/{call}/{kind}"));
}

fn create_body(callback: &str, events: &[&str]) -> Value {
    json!({
        "source": {"communicationUser": {"id": "8:acs:11111111-1111-1111-1111-111111111111_22222222-2222-2222-2222-222222222222"}},
        "targets": [{"phoneNumber": {"value": "+14251001000"}}, {"communicationUser": {"id": "8:acs:target"}, "rawId": "raw-target"}],
        "callbackUri": callback,
        "requestedModalities": ["audio"],
        "requestedCallEvents": events,
    })
}

async fn create(c: &Client, callback: &str, events: &[&str]) -> String {
    let r = c.post_json("/calls", &create_body(callback, events)).await;
    assert_eq!(r.status, 200, "{}", r.message());
    r.json()["callLegId"].as_str().unwrap().to_string()
}

fn fast() -> DoubleConfig {
    DoubleConfig::default()
        .answer_delay(Duration::ZERO)
        .play_duration(Duration::ZERO)
}

/// Pins an event's full body (ids, times and the call id redacted) and its shape.
fn pin(name: &str, event: &Value, call: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(common::snapshots::DOUBLE_SNAPSHOTS);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_sort_maps(true);
    settings.set_omit_expression(true);
    settings.set_description(format!("event {}", event["eventType"].as_str().unwrap()));
    settings.add_filter(&regex::escape(call), "[callId]");
    settings.bind(|| {
        let mut full = settings.clone();
        full.add_redaction(".id", "[eventId]");
        full.add_redaction(".eventTime", "[eventTime]");
        full.add_redaction(".data.ConversationId", "[conversationId]");
        full.bind(|| insta::assert_json_snapshot!(name, event));
        let mut shape = acs_harness::value_shape(event);
        // The literals that tell events apart stay, as the media operation `status` does.
        shape["eventType"] = event["eventType"].clone();
        for literal in ["CallState", "Status"] {
            if let Some(v) = event["data"].get(literal) {
                shape["data"][literal] = v.clone();
            }
        }
        insta::assert_json_snapshot!(format!("{name}.shape"), shape);
    });
}

#[tokio::test]
async fn a_call_sends_its_events_in_order_and_pins_every_type() {
    let mut rx = Receiver::start(&[]).await;
    let d = Double::start(fast()).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &["participantsUpdated", "dtmfReceived"]).await;

    let establishing = rx.expect("CallLegStateChanged").await;
    assert_eq!(establishing["data"]["CallState"], "Establishing");
    let established = rx.expect("CallLegStateChanged").await;
    assert_eq!(established["data"]["CallState"], "Established");
    assert_eq!(established["data"]["CallLegId"], call.as_str());
    pin("event.CallLegStateChanged", &established, &call);
    let conversation = established["data"]["ConversationId"].clone();
    let targets = rx.expect("ParticipantsUpdated").await;
    let ids: Vec<&str> = targets["data"]["Participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ParticipantId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["+14251001000", "raw-target"]);
    assert_eq!(
        targets["data"]["Participants"][1]["Identifier"],
        json!({"CommunicationUser": {"Id": "8:acs:target"}, "RawId": "raw-target"})
    );

    // Invite: its result once, then the whole list.
    let invite = json!({
        "participants": [{"phoneNumber": {"value": "+14251002000"}}],
        "operationContext": "invite-ctx",
    });
    let r = c
        .post_json(&Endpoint::InviteParticipants.path(&call, None), &invite)
        .await;
    assert_eq!(r.status, 202);
    let result = rx.expect("InviteParticipantResult").await;
    assert_eq!(result["data"]["OperationContext"], "invite-ctx");
    assert_eq!(
        result["data"]["Participants"],
        json!([{"PhoneNumber": {"Value": "+14251002000"}}])
    );
    pin("event.InviteParticipantResult", &result, &call);
    let after_invite = rx.expect("ParticipantsUpdated").await;
    assert_eq!(
        after_invite["data"]["Participants"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    pin("event.ParticipantsUpdated", &after_invite, &call);

    // Remove: the list without them.
    let path = Endpoint::RemoveParticipant.path(&call, Some("+14251001000"));
    assert_eq!(c.send("DELETE", &path, b"").await.status, 202);
    let after_remove = rx.expect("ParticipantsUpdated").await;
    assert_eq!(
        after_remove["data"]["Participants"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Play: the 202 says running, the result comes after, exactly once.
    let play =
        json!({"audioFileUri": "https://media.example.com/a.wav", "operationContext": "play-ctx"});
    let r = c
        .post_json(&Endpoint::PlayAudio.path(&call, None), &play)
        .await;
    assert_eq!(r.json()["status"], "running");
    let done = rx.expect("PlayAudioResult").await;
    assert_eq!(done["data"]["Status"], "Completed");
    assert_eq!(done["data"]["ResultInfo"]["Code"], 200);
    assert_eq!(done["data"]["OperationContext"], "play-ctx");
    pin("event.PlayAudioResult", &done, &call);

    // A looping play ends only when cancelled: then the cancelled result.
    let looped = json!({"audioFileUri": "https://media.example.com/a.wav", "loop": true});
    let r = c
        .post_json(&Endpoint::PlayAudio.path(&call, None), &looped)
        .await;
    let op = r.json()["id"].as_str().unwrap().to_string();
    let (_, calls) = d.calls(10);
    assert_eq!(calls[0].plays.len(), 1);
    assert_eq!(calls[0].plays[0].id, op);
    assert_eq!(calls[0].state, Some(CallState::Established));
    rx.nothing_yet();
    let r = c
        .post_json(
            &Endpoint::CancelMediaProcessing.path(&call, None),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202);
    let cancelled = rx.expect("PlayAudioResult").await;
    assert_eq!(cancelled["data"]["ResultInfo"]["Code"].as_i64(), Some(400));
    assert_eq!(
        cancelled["data"]["ResultInfo"]["Subcode"].as_i64(),
        Some(8508)
    );
    assert!(cancelled["data"].get("OperationContext").is_none());
    pin("event.PlayAudioResult-cancelled", &cancelled, &call);

    // Key presses: one event per key, SequenceId counting from 0.
    assert_eq!(d.press_keys(&call, "1#"), Ok(2));
    let one = rx.expect("DtmfReceived").await;
    let pound = rx.expect("DtmfReceived").await;
    assert_eq!(
        one["data"]["ToneInfo"],
        json!({"SequenceId": 0, "Tone": "Tone1"})
    );
    assert_eq!(
        pound["data"]["ToneInfo"],
        json!({"SequenceId": 1, "Tone": "Pound"})
    );
    pin("event.DtmfReceived", &one, &call);
    assert!(matches!(
        d.press_keys(&call, "1x"),
        Err(ControlError::BadTones(_))
    ));

    // Hang up with a looping play: cancelled first, then Terminating, Terminated.
    c.post_json(&Endpoint::PlayAudio.path(&call, None), &looped)
        .await;
    assert_eq!(
        c.send("POST", &Endpoint::Hangup.path(&call, None), b"")
            .await
            .status,
        202
    );
    let stopped = rx.expect("PlayAudioResult").await;
    assert_eq!(
        stopped["data"]["ResultInfo"]["Subcode"].as_i64(),
        Some(8508)
    );
    let terminating = rx.expect("CallLegStateChanged").await;
    assert_eq!(terminating["data"]["CallState"], "Terminating");
    assert_eq!(terminating["data"]["ConversationId"], conversation);
    let terminated = rx.expect("CallLegStateChanged").await;
    assert_eq!(terminated["data"]["CallState"], "Terminated");
    assert!(matches!(
        d.press_keys(&call, "1"),
        Err(ControlError::UnknownCall(_))
    ));

    // The history holds every event, delivered, ending with Terminated (the last
    // status lands once the receiver's answer is back).
    let history = wait_for(|| {
        d.events(&call)
            .filter(|h| h.iter().all(|r| r.delivery == Delivery::Delivered))
    })
    .await;
    assert_eq!(history.len(), 13);
    assert!(history.iter().all(|r| r.attempts == 1));
    assert_eq!(
        history.last().unwrap().id,
        terminated["id"].as_str().unwrap()
    );
    let counters = d.handler().event_counters().unwrap();
    assert_eq!((counters.produced, counters.delivered), (13, 13));
    rx.nothing_yet();
}

#[tokio::test]
async fn unsubscribed_calls_get_state_and_results_only() {
    let mut rx = Receiver::start(&[]).await;
    let d = Double::start(fast()).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &[]).await;
    assert_eq!(
        rx.expect("CallLegStateChanged").await["data"]["CallState"],
        "Establishing"
    );
    assert_eq!(
        rx.expect("CallLegStateChanged").await["data"]["CallState"],
        "Established"
    );
    let r = c
        .post_json(
            &Endpoint::InviteParticipants.path(&call, None),
            &json!({"participants": [{"phoneNumber": {"value": "+14251002000"}}]}),
        )
        .await;
    assert_eq!(r.status, 202);
    let result = rx.expect("InviteParticipantResult").await;
    assert!(result["data"]["OperationContext"].is_null());
    assert_eq!(d.press_keys(&call, "123"), Ok(0));
    c.send("POST", &Endpoint::Hangup.path(&call, None), b"")
        .await;
    // Straight from the invitation's result to the end: no list, no keys.
    assert_eq!(
        rx.expect("CallLegStateChanged").await["data"]["CallState"],
        "Terminating"
    );
    assert_eq!(
        rx.expect("CallLegStateChanged").await["data"]["CallState"],
        "Terminated"
    );
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_then_given_up() {
    // Two failures, then success: three attempts of the same event.
    let mut rx = Receiver::start(&[503, 500]).await;
    let mut config = fast().answer_delay(Duration::from_secs(3600));
    config.events.retry_pause = Duration::from_millis(1);
    let d = Double::start(config.clone()).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &[]).await;
    let first = rx.expect("CallLegStateChanged").await;
    let second = rx.expect("CallLegStateChanged").await;
    let third = rx.expect("CallLegStateChanged").await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["id"], third["id"]);
    let h = wait_for(|| {
        d.events(&call)
            .filter(|h| h[0].delivery == Delivery::Delivered)
    })
    .await;
    assert_eq!(h[0].attempts, 3);
    assert_eq!(h[0].last_result.as_deref(), Some("200"));

    // A receiver that always fails: given up after the attempts, counted.
    let mut rx = Receiver::start(&[500; 16]).await;
    config.events.attempts = 2;
    let d = Double::start(config).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &[]).await;
    rx.expect("CallLegStateChanged").await;
    rx.expect("CallLegStateChanged").await;
    let h = wait_for(|| {
        d.events(&call)
            .filter(|h| h[0].delivery == Delivery::GivenUp)
    })
    .await;
    assert_eq!(
        (h[0].attempts, h[0].last_result.as_deref()),
        (2, Some("500"))
    );
    let counters = d.handler().event_counters().unwrap();
    assert_eq!((counters.given_up, counters.failed_attempts), (1, 2));
}

/// Polls `f` until it gives `Some`, within [`WAIT`].
async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn events_for_hosts_nobody_allowed_are_recorded_not_sent() {
    let d = Double::start(fast()).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(
        &c,
        "https://contoso.com/api/callbacks",
        &["participantsUpdated"],
    )
    .await;
    let h = wait_for(|| d.events(&call).filter(|h| h.len() == 3)).await;
    assert!(
        h.iter()
            .all(|r| r.delivery == Delivery::NotAllowed && r.attempts == 0)
    );
    let counters = d.handler().event_counters().unwrap();
    assert_eq!((counters.not_allowed, counters.delivered), (3, 0));
    assert_eq!(counters.failed_attempts, 0, "nothing was attempted");
}

fn signed(method: &str, path: &str, body: &Value) -> DoubleRequest {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let host = "127.0.0.1:1";
    let s = acs_harness::double::dev_key();
    let signer = acs_harness::auth::Signer::new(&s);
    let sig = signer.sign(method, path, host, &bytes, SystemTime::now());
    DoubleRequest::new(method, path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("x-ms-date", &sig.date)
        .header("x-ms-content-sha256", &sig.content_sha256)
        .header("authorization", &sig.authorization)
        .body(bytes)
}

#[tokio::test]
async fn the_queue_is_bounded_and_overflow_counted() {
    // The handler alone, on a single-threaded runtime: no delivery task runs between
    // these calls, so every event waits in the queue and the bound decides.
    let mut config = DoubleConfig::default().answer_delay(Duration::from_secs(3600));
    config.events.max_queued = 3;
    let h = Handler::new(&config).unwrap();
    assert!(h.events_enabled());
    for _ in 0..5 {
        let r = h.handle(&signed(
            "POST",
            "/calls",
            &create_body("http://127.0.0.1:9/cb", &[]),
        ));
        assert_eq!(r.status, 200);
    }
    let counters = h.event_counters().unwrap();
    assert_eq!(
        (counters.produced, counters.queued, counters.dropped),
        (5, 3, 2)
    );
    let (total, calls) = h.calls(100);
    assert_eq!(total, 5);
    let dropped: usize = calls
        .iter()
        .map(|c| {
            h.events(&c.call_leg_id)
                .unwrap()
                .iter()
                .filter(|r| r.delivery == Delivery::Dropped)
                .count()
        })
        .sum();
    assert_eq!(dropped, 2);
    h.shutdown_events();
}

#[tokio::test]
async fn events_off_sends_nothing_and_says_so() {
    let h = Handler::new(&DoubleConfig::default().events_enabled(false)).unwrap();
    let r = h.handle(&signed(
        "POST",
        "/calls",
        &create_body("http://127.0.0.1:9/cb", &["dtmfReceived"]),
    ));
    let call = r.body_json().unwrap()["callLegId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!h.events_enabled() && h.event_counters().is_none());
    assert_eq!(h.press_keys(&call, "1"), Err(ControlError::EventsOff));
    assert!(h.events(&call).is_none());
    // The calls listing works without events.
    let (total, calls) = h.calls(10);
    assert_eq!((total, calls[0].state), (1, None));
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_control_api_presses_keys_and_lists_calls_and_events() {
    let mut rx = Receiver::start(&[]).await;
    let d = Double::start(fast().control_port(0)).await.unwrap();
    let control = d.control_uri().unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &["dtmfReceived"]).await;
    rx.expect("CallLegStateChanged").await;
    rx.expect("CallLegStateChanged").await;
    let http = reqwest::Client::new();

    let r = http
        .post(format!("{control}/calls/{call}/dtmf"))
        .json(&json!({"tones": "9*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"events": 2}));
    assert_eq!(
        rx.expect("DtmfReceived").await["data"]["ToneInfo"]["Tone"],
        "Tone9"
    );
    assert_eq!(
        rx.expect("DtmfReceived").await["data"]["ToneInfo"]["Tone"],
        "Star"
    );

    let calls: Value = get_json(&http, format!("{control}/calls")).await;
    assert_eq!(calls["total"], 1);
    assert_eq!(calls["calls"][0]["callLegId"], call.as_str());
    assert_eq!(calls["calls"][0]["state"], "Established");
    assert_eq!(
        calls["calls"][0]["participants"],
        json!(["+14251001000", "raw-target"])
    );

    let events: Value = get_json(&http, format!("{control}/events?callLegId={call}")).await;
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[2]["eventType"], "Microsoft.Communication.DtmfReceived");
    assert_eq!(list[2]["body"]["data"]["ToneInfo"]["Tone"], "Tone9");
    assert!(list[0]["delivery"].is_string());

    // Wrong requests get the error body, never a panic.
    for (method, path, body, status) in [
        (
            "POST",
            format!("/calls/{call}/dtmf"),
            r#"{"tones": "x"}"#,
            400,
        ),
        ("POST", format!("/calls/{call}/dtmf"), "not json", 400),
        (
            "POST",
            "/calls/nope/dtmf".to_string(),
            r#"{"tones": "1"}"#,
            404,
        ),
        ("GET", "/events".to_string(), "", 400),
        ("GET", "/events?callLegId=nope".to_string(), "", 404),
        ("DELETE", "/calls".to_string(), "", 405),
        ("GET", "/elsewhere".to_string(), "", 404),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{control}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let e: Value = r.json().await.unwrap();
        assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    }
    let stats: Value = get_json(&http, format!("{control}/stats")).await;
    assert_eq!(stats["events"], true);
    assert_eq!(stats["liveCalls"], 1);
}

#[tokio::test]
async fn key_presses_before_the_call_is_established_are_refused() {
    let rx = Receiver::start(&[]).await;
    let d = Double::start(DoubleConfig::default().answer_delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    let call = create(&c, &rx.url(), &["dtmfReceived"]).await;
    assert!(matches!(
        d.press_keys(&call, "1"),
        Err(ControlError::NotEstablished(_))
    ));
    assert!(matches!(
        d.press_keys("not-a-call", "1"),
        Err(ControlError::UnknownCall(_))
    ));
}

#[test]
fn serve_prints_the_control_api_and_accepts_event_options() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args([
            "serve",
            "--port",
            "0",
            "--answer-delay",
            "0",
            "--play-duration",
            "50ms",
            "--callback-hosts",
            "app.test,10.0.0.5",
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let _listening = lines.next().unwrap().unwrap();
    let _cs = lines.next().unwrap().unwrap();
    let control = lines.next().unwrap().unwrap();
    let uri = control.strip_prefix("control: ").unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stats: Value = rt.block_on(async {
        reqwest::get(format!("{uri}/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(stats["events"], true);
    let _ = child.kill();
    let _ = child.wait();

    // A bad host list is refused at start with a clear message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(["serve", "--port", "0", "--callback-hosts", "http://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("callback-hosts"));
}
