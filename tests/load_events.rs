//! `acs-harness load` with steps that await events (issue #13): against a tiny target
//! written here that answers the API and posts each operation's event to the call's
//! callbackUri a few milliseconds later (or never), the awaited events are measured as
//! requests `EVENT <name>`, judged by thresholds, merged across shards, and missing
//! events are failed requests in a run that stays bounded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::text;

const BIN: &str = env!("CARGO_BIN_EXE_acs-harness");

/// What the target does with events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Posts each operation's event a few milliseconds after answering.
    Events,
    /// Posts no event at all.
    Silent,
    /// Posts every PlayAudioResult as `Failed`.
    FailPlays,
}

/// What the target saw.
#[derive(Default)]
struct Seen {
    /// callbackUri of each created call.
    callbacks: Vec<String>,
    /// operationContext of each play.
    play_contexts: Vec<String>,
    /// Events the receiver answered with 2xx.
    delivered: usize,
}

struct TestTarget {
    uri: String,
    seen: Arc<Mutex<Seen>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self._task.abort();
    }
}

struct State {
    mode: Mode,
    seen: Arc<Mutex<Seen>>,
    /// callLegId → callbackUri.
    calls: Mutex<HashMap<String, String>>,
    next: std::sync::atomic::AtomicU64,
    client: reqwest::Client,
}

fn response(status: u16, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    let bytes = match body {
        Some(v) => {
            r = r.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    r.body(Full::new(bytes)).expect("response")
}

/// Posts `event` to the call's callbackUri after a short delay, as the service would.
fn post_event(state: &Arc<State>, call: &str, kind: &str, subject: &str, data: Value) {
    if state.mode == Mode::Silent {
        return;
    }
    let Some(callback) = state.calls.lock().unwrap().get(call).cloned() else {
        return;
    };
    let event = json!({
        "id": format!("{call}-{kind}-{}", state.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        "topic": null,
        "subject": format!("callLeg/{call}/{subject}"),
        "data": data,
        "eventType": format!("Microsoft.Communication.{kind}"),
        "eventTime": "2026-12-02T12:00:00Z",
        "metadataVersion": null,
        "dataVersion": null,
    });
    let state = state.clone();
    tokio::spawn(async move {
        // The operation "takes" a few milliseconds: the latency the run measures.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = state
            .client
            .post(callback)
            .json(&event)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            state.seen.lock().unwrap().delivered += 1;
        }
    });
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return response(400, None),
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let context = json.get("operationContext").cloned();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["calls"]) => {
            let id = format!(
                "leg-{}",
                state
                    .next
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let callback = json
                .get("callbackUri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            state.seen.lock().unwrap().callbacks.push(callback.clone());
            state.calls.lock().unwrap().insert(id.clone(), callback);
            post_event(
                &state,
                &id,
                "CallLegStateChanged",
                "callState",
                json!({"CallLegId": id, "ConversationId": "conv", "CallState": "Established"}),
            );
            response(200, Some(json!({ "callLegId": id })))
        }
        ("POST", ["calls", id, "PlayAudio"]) => {
            if let Some(c) = context.as_ref().and_then(Value::as_str) {
                state.seen.lock().unwrap().play_contexts.push(c.to_string());
            }
            let status = if state.mode == Mode::FailPlays {
                "Failed"
            } else {
                "Completed"
            };
            post_event(
                &state,
                id,
                "PlayAudioResult",
                "playAudio",
                json!({"CallLegId": id, "OperationContext": context, "Status": status,
                       "ResultInfo": {"Code": 200, "Subcode": 0, "Message": "the file could not be played"}}),
            );
            let mut op = json!({"id": "op", "status": "running"});
            if let Some(c) = context {
                op["operationContext"] = c;
            }
            response(202, Some(op))
        }
        ("POST", ["calls", _, "CancelMediaProcessing"]) => {
            let mut op = json!({"id": "op", "status": "completed"});
            if let Some(c) = context {
                op["operationContext"] = c;
            }
            response(202, Some(op))
        }
        ("POST", ["calls", id, "participants"]) => {
            post_event(
                &state,
                id,
                "InviteParticipantResult",
                "inviteParticipantResult",
                json!({"CallLegId": id, "OperationContext": context, "Status": "Completed", "ResultInfo": null, "Participants": []}),
            );
            response(202, None)
        }
        ("POST", ["calls", id, "Hangup"]) => {
            state.calls.lock().unwrap().remove(*id);
            response(202, None)
        }
        ("DELETE", ["calls", _, "participants", _]) => response(202, None),
        _ => response(
            405,
            Some(json!({"code": "MethodNotAllowed", "message": "not here"})),
        ),
    }
}

async fn target(mode: Mode) -> TestTarget {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Arc::new(State {
        mode,
        seen: seen.clone(),
        calls: Mutex::new(HashMap::new()),
        next: Default::default(),
        client: reqwest::Client::new(),
    });
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestTarget {
        uri,
        seen,
        _task: task,
    }
}

/// A fresh folder for one test's files.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acs-load-events-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A scenario whose every step that can await its event does, each within `timeout`.
fn awaiting_scenario(dir: &Path, timeout: &str) -> PathBuf {
    let path = dir.join("awaits.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[scenario]]
name = "awaits"
on_start = [{{ endpoint = "create-call", await = "CallLegStateChanged", await_timeout = "{timeout}" }}]
steps = [
    {{ endpoint = "play-audio", repeat = 2, await = "PlayAudioResult", await_timeout = "{timeout}" }},
    {{ endpoint = "invite-participants", await = "InviteParticipantResult", await_timeout = "{timeout}" }},
    {{ endpoint = "cancel-media-processing", think = "20ms" }},
]
on_stop = [{{ endpoint = "hangup" }}]
"#
        ),
    )
    .unwrap();
    path
}

/// Runs `acs-harness load` against `uri` with `extra` options after a small default load.
async fn load(uri: &str, extra: Vec<String>) -> (Output, Duration) {
    let mut args: Vec<String> = [
        "load",
        "--host",
        uri,
        "--connection-string",
        &format!("endpoint={uri}/;accesskey=a2V5LWZvci10aGUtZXZlbnRzLXRlc3Q="),
        "--users",
        "2",
        "--increase-rate",
        "100",
        "--run-time",
        "1s",
        "--seed",
        "7",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("ACS_CONNECTION_STRING")
            .output()
            .expect("run acs-harness")
    })
    .await
    .expect("join");
    (out, started.elapsed())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `raw_metrics.requests` of a goose JSON report.
fn requests(report: &Path) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(report).expect("the JSON report");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["raw_metrics"]["requests"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn counts(requests: &serde_json::Map<String, Value>, key: &str) -> (u64, u64) {
    let r = &requests[key];
    (
        r["success_count"].as_u64().unwrap_or(0),
        r["fail_count"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaited_events_are_measured_per_type_and_judged_by_thresholds() {
    let t = target(Mode::Events).await;
    let dir = folder("measured");
    let scenario = awaiting_scenario(&dir, "10s");
    let report = dir.join("r.json");
    let (out, _) = load(
        &t.uri,
        strings(&[
            "--scenario",
            scenario.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
            "--threshold",
            "EVENT PlayAudioResult:p95<5s",
            "--threshold",
            "EVENT CallLegStateChanged:error-rate<1%",
        ]),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("EVENT PlayAudioResult:p95<5s"),
        "{printed}"
    );
    assert!(printed.contains("awaiting "), "{printed}");
    let r = requests(&report);
    for key in [
        "EVENT CallLegStateChanged",
        "EVENT PlayAudioResult",
        "EVENT InviteParticipantResult",
    ] {
        let (ok, failed) = counts(&r, key);
        assert!(ok > 0 && failed == 0, "{key}: {ok} ok, {failed} failed");
    }
    // Each play awaits its own result: every request carried its own context.
    let seen = t.seen.lock().unwrap();
    let (ok, _) = counts(&r, "EVENT PlayAudioResult");
    assert!(seen.play_contexts.len() as u64 >= ok);
    let mut unique = seen.play_contexts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.play_contexts.len(), "{unique:?}");
    // Events went to the run's loopback receiver.
    assert!(!seen.callbacks.is_empty());
    for cb in &seen.callbacks {
        assert!(cb.starts_with("http://127.0.0.1:"), "{cb}");
    }
    assert!(seen.delivered > 0);
    drop(seen);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_events_are_failed_requests_and_the_run_stays_bounded() {
    let t = target(Mode::Silent).await;
    let dir = folder("missing");
    let scenario = awaiting_scenario(&dir, "300ms");
    let report = dir.join("r.json");
    let (out, took) = load(
        &t.uri,
        strings(&[
            "--scenario",
            scenario.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
            "--threshold",
            "error-rate<1%",
        ]),
    )
    .await;
    // Every wait missed: the error rate is breached.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(60), "{took:?}");
    let r = requests(&report);
    let (ok, failed) = counts(&r, "EVENT CallLegStateChanged");
    assert!(ok == 0 && failed > 0, "{ok} ok, {failed} failed");
    // The create-call itself succeeded; only its event is missing.
    let (created, _) = counts(&r, "POST /calls");
    assert!(created > 0);
    let printed = text(&out);
    assert!(
        printed.contains("no CallLegStateChanged within 300ms"),
        "{printed}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_result_is_a_failed_event_request() {
    let t = target(Mode::FailPlays).await;
    let dir = folder("failed");
    let scenario = awaiting_scenario(&dir, "10s");
    let report = dir.join("r.json");
    let (out, _) = load(
        &t.uri,
        strings(&[
            "--scenario",
            scenario.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
            "--threshold",
            "EVENT PlayAudioResult:error-rate<1%",
        ]),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = requests(&report);
    let (ok, failed) = counts(&r, "EVENT PlayAudioResult");
    assert!(ok == 0 && failed > 0, "{ok} ok, {failed} failed");
    let (ok, failed) = counts(&r, "EVENT InviteParticipantResult");
    assert!(ok > 0 && failed == 0, "{ok} ok, {failed} failed");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rows_merge_across_shards_and_their_thresholds_are_judged() {
    let t = target(Mode::Events).await;
    let dir = folder("merge");
    let scenario = awaiting_scenario(&dir, "10s");
    let mut shards = Vec::new();
    for i in 0..2 {
        let report = dir.join(format!("shard-{i}.json"));
        let (out, _) = load(
            &t.uri,
            strings(&[
                "--scenario",
                scenario.to_str().unwrap(),
                "--shard",
                &format!("{i}/2"),
                "--report-file",
                report.to_str().unwrap(),
            ]),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        shards.push(report);
    }
    let merged = dir.join("merged.json");
    let mut args = vec!["report".to_string(), "merge".to_string()];
    args.extend(shards.iter().map(|p| p.display().to_string()));
    args.extend(strings(&[
        "--report-file",
        merged.to_str().unwrap(),
        "--threshold",
        "EVENT PlayAudioResult:p95<5s",
    ]));
    let out = Command::new(BIN).args(&args).output().expect("merge");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let per_shard: u64 = shards
        .iter()
        .map(|s| counts(&requests(s), "EVENT PlayAudioResult").0)
        .sum();
    let (ok, failed) = counts(&requests(&merged), "EVENT PlayAudioResult");
    assert_eq!((ok, failed), (per_shard, 0));
    assert!(ok > 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_remote_target_without_a_callback_url_does_not_start() {
    let dir = folder("remote");
    let scenario = awaiting_scenario(&dir, "1s");
    // Never contacted: the check comes before any work.
    let (out, _) = load(
        "http://acs.invalid:8080",
        strings(&["--scenario", scenario.to_str().unwrap()]),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--callback-url"), "{}", text(&out));
    let (out, _) = load(
        "http://acs.invalid:8080",
        strings(&[
            "--scenario",
            "call-creation",
            "--callback-listen",
            "0.0.0.0:0",
        ]),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--callback-url"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_play_audio_scenario_awaits_each_result_from_the_double() {
    let dir = folder("double");
    let report = dir.join("r.json");
    let out = tokio::task::spawn_blocking({
        let report = report.clone();
        move || {
            Command::new(BIN)
                .args([
                    "load",
                    "--scenario",
                    "play-audio",
                    "--users",
                    "2",
                    "--increase-rate",
                    "100",
                    "--run-time",
                    "2s",
                    "--seed",
                    "7",
                    "--quiet",
                    "--report-file",
                    report.to_str().unwrap(),
                ])
                .env_remove("ACS_CONNECTION_STRING")
                .output()
                .expect("run acs-harness")
        }
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (ok, failed) = counts(&requests(&report), "EVENT PlayAudioResult");
    assert!(ok > 0 && failed == 0, "{ok} ok, {failed} failed");
    let _ = std::fs::remove_dir_all(dir);
}
