//! The gate against the embedded double (everything passes) and against broken
//! doubles, each with one behaviour changed: the right check must catch it.

use acs_harness::contract::{Endpoint, Route, route};
use acs_harness::double::{Double, DoubleConfig, DoubleRequest, DoubleResponse, Handler};
use acs_harness::gate::{Check, GateConfig, Report, RunEnd, run_gate};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SEED: u64 = 20_261_125;

fn config(uri: &str, double: &Double, cases: u32) -> GateConfig {
    let mut c = GateConfig::new(uri, double.connection_string().signer());
    c.cases = cases;
    c.seed = SEED;
    c.timeout = Duration::from_secs(5);
    c
}

async fn gate_with(
    tamper: impl Fn(&DoubleRequest, &mut DoubleResponse) + Send + Sync + 'static,
) -> Report {
    let double = Double::start(DoubleConfig::default().tamper(tamper))
        .await
        .unwrap();
    run_gate(config(&double.uri(), &double, 8)).await
}

fn endpoint_of(req: &DoubleRequest) -> Option<Endpoint> {
    let path = req.path_and_query.split('?').next().unwrap_or_default();
    match route(&req.method, path) {
        Route::Found { endpoint, .. } => Some(endpoint),
        _ => None,
    }
}

fn set_json(resp: &mut DoubleResponse, status: u16, body: serde_json::Value) {
    *resp = DoubleResponse::json(status, &body);
}

/// A service that lets a request through on a 401 the broken rule would not have given.
fn accept_instead(req: &DoubleRequest, resp: &mut DoubleResponse) {
    *resp = match endpoint_of(req) {
        Some(Endpoint::CreateCall) => DoubleResponse::json(200, &json!({"callLegId": "lax"})),
        Some(Endpoint::PlayAudio | Endpoint::CancelMediaProcessing) => {
            DoubleResponse::json(202, &json!({"id": "op", "status": "running"}))
        }
        _ => DoubleResponse::empty(202),
    };
}

/// Asserts the run ended normally with exit 1, that every `(endpoint, check)` in
/// `caught` failed, and that every check in `clean` passed on every endpoint.
#[track_caller]
fn assert_caught(report: &Report, caught: &[(Endpoint, Check)], clean: &[Check]) {
    let table = report.render_terminal(false);
    if std::env::var_os("SHOW_REPORT").is_some() {
        eprintln!("{table}");
    }
    assert_eq!(report.end, RunEnd::Completed, "{table}");
    assert_eq!(report.exit_code(), 1, "{table}");
    for (e, c) in caught {
        let cell = report.cell(*e, *c).unwrap();
        assert!(cell.failed > 0, "{e} × {c} should fail:\n{table}");
        assert!(!cell.failures.is_empty());
    }
    for c in clean {
        for e in Endpoint::ALL {
            let cell = report.cell(e, *c).unwrap();
            assert_eq!(cell.failed, 0, "{e} × {c} should pass:\n{table}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_passes_every_check() {
    let double = Double::start(DoubleConfig::default()).await.unwrap();
    let report = run_gate(config(&double.uri(), &double, 20)).await;
    let table = report.render_terminal(false);
    assert_eq!(report.exit_code(), 0, "{table}");
    for e in Endpoint::ALL {
        for c in Check::ALL {
            let cell = report.cell(e, c).unwrap();
            assert!(cell.passed > 0 && cell.failed == 0, "{e} × {c}:\n{table}");
        }
    }
    assert!(report.requests > 300);
    assert!(!table.contains("hint:"), "{table}");
    // No secret in any rendering.
    let key = double.connection_string().key.to_base64();
    for text in [table, report.to_junit(), report.to_json().to_string()] {
        assert!(!text.contains(&key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_passes_with_a_prefix_and_api_version() {
    let double = Double::start(
        DoubleConfig::default()
            .prefix("/calling")
            .api_version("2021-04-15-preview1"),
    )
    .await
    .unwrap();
    let mut c = config(&double.uri(), &double, 3);
    c.prefix = "/calling".into();
    c.api_version = Some("2021-04-15-preview1".into());
    let report = run_gate(c).await;
    assert_eq!(report.exit_code(), 0, "{}", report.render_terminal(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_call_answering_201() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) && resp.status == 200 {
            resp.status = 201;
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::CreateCall, PositiveAcceptance),
            (Endpoint::CreateCall, Lifecycle),
        ],
        &[
            NegativeRejection,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            ErrorShape,
        ],
    );
    // Other endpoints still get their calls (set-up is lenient) and pass.
    assert_eq!(
        r.cell(Endpoint::PlayAudio, PositiveAcceptance)
            .unwrap()
            .failed,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_call_leg_id() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) && resp.status == 200 {
            set_json(resp, 200, json!({"callLegId": ""}));
        }
    })
    .await;
    assert_caught(
        &r,
        &[(Endpoint::CreateCall, Check::PositiveAcceptance)],
        &[],
    );
    let f = &r
        .cell(Endpoint::CreateCall, Check::PositiveAcceptance)
        .unwrap()
        .failures[0];
    assert!(f.violations.iter().any(|v| v.path == "callLegId"), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_context_not_echoed() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::PlayAudio)
            && resp.status == 202
            && let Some(mut v) = resp.body_json()
        {
            v.as_object_mut().unwrap().remove("operationContext");
            set_json(resp, 202, v);
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::PlayAudio, PositiveAcceptance),
            (Endpoint::PlayAudio, Lifecycle),
        ],
        &[
            NegativeRejection,
            NotAServerError,
            UnknownResource,
            ErrorShape,
        ],
    );
    let cell = r.cell(Endpoint::PlayAudio, PositiveAcceptance).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.violations.iter().any(|v| v.path == "operationContext"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_status_outside_the_enum() {
    let r = gate_with(|req, resp| {
        if matches!(
            endpoint_of(req),
            Some(Endpoint::PlayAudio | Endpoint::CancelMediaProcessing)
        ) && resp.status == 202
            && let Some(mut v) = resp.body_json()
        {
            v["status"] = json!("Running");
            set_json(resp, 202, v);
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::PlayAudio, PositiveAcceptance),
            (Endpoint::CancelMediaProcessing, PositiveAcceptance),
        ],
        &[
            NegativeRejection,
            NotAServerError,
            UnknownResource,
            ErrorShape,
        ],
    );
    // The shrunk case comes first and says how it was minimised.
    let f = &r
        .cell(Endpoint::PlayAudio, PositiveAcceptance)
        .unwrap()
        .failures[0];
    assert!(f.shrunk.is_some(), "{f:?}");
    assert!(
        f.send
            .as_deref()
            .unwrap()
            .starts_with("acs-harness send POST '/calls/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_on_hangups_202() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::Hangup) && resp.status == 202 {
            set_json(resp, 202, json!({}));
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::Hangup, PositiveAcceptance),
            (Endpoint::Hangup, Lifecycle),
        ],
        &[
            NegativeRejection,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_targets_accepted() {
    let r = gate_with(|req, resp| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if endpoint_of(req) == Some(Endpoint::CreateCall) && body["targets"] == json!([]) {
            set_json(resp, 200, json!({"callLegId": "accepted-empty-targets"}));
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[(Endpoint::CreateCall, NegativeRejection)],
        &[
            PositiveAcceptance,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
    let cell = r.cell(Endpoint::CreateCall, NegativeRejection).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("empty-array(targets)")),
        "{cell:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_for_a_bad_e164() {
    let r = gate_with(|_req, resp| {
        if resp.status == 400 && String::from_utf8_lossy(&resp.body).contains("E.164") {
            *resp = DoubleResponse::error(500, "InternalError", "phone number parser crashed");
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::CreateCall, NegativeRejection),
            (Endpoint::CreateCall, NotAServerError),
        ],
        &[
            PositiveAcceptance,
            AuthRequired,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_without_authentication() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::Hangup) && resp.status == 401 {
            *resp = DoubleResponse::empty(202);
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[(Endpoint::Hangup, AuthRequired)],
        &[
            PositiveAcceptance,
            NegativeRejection,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
    for e in Endpoint::ALL.into_iter().filter(|e| *e != Endpoint::Hangup) {
        assert_eq!(r.cell(e, AuthRequired).unwrap().failed, 0, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_window_not_enforced() {
    let r = gate_with(|req, resp| {
        let skew = req
            .header_str("x-ms-date")
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .map(|d| match d.duration_since(SystemTime::now()) {
                Ok(ahead) => ahead,
                Err(e) => e.duration(),
            });
        if resp.status == 401 && skew.is_some_and(|s| s > Duration::from_secs(15 * 60)) {
            accept_instead(req, resp);
        }
    })
    .await;
    use Check::*;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, AuthRequired)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[
            PositiveAcceptance,
            NegativeRejection,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
    let cell = r.cell(Endpoint::CreateCall, AuthRequired).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("20 minutes old"))
    );
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("20 minutes ahead"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_call_gets_202() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::PlayAudio) && resp.status == 404 {
            set_json(resp, 202, json!({"id": "op", "status": "notStarted"}));
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::PlayAudio, UnknownResource),
            (Endpoint::PlayAudio, Lifecycle),
        ],
        &[
            PositiveAcceptance,
            NegativeRejection,
            AuthRequired,
            NotAServerError,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_removed_twice() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::RemoveParticipant) && resp.status == 404 {
            *resp = DoubleResponse::empty(202);
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::RemoveParticipant, Lifecycle),
            (Endpoint::RemoveParticipant, UnknownResource),
        ],
        &[
            PositiveAcceptance,
            NegativeRejection,
            AuthRequired,
            NotAServerError,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_body_without_code() {
    let r = gate_with(|_req, resp| {
        if resp.status >= 400
            && let Some(mut v) = resp.body_json()
        {
            v.as_object_mut().unwrap().remove("code");
            let status = resp.status;
            let allow = resp.header("allow").map(str::to_string);
            set_json(resp, status, v);
            if let Some(a) = allow {
                resp.headers.push(("allow".into(), a));
            }
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::ErrorShape)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[Check::PositiveAcceptance, Check::NotAServerError],
    );
    let f = &r
        .cell(Endpoint::Hangup, Check::ErrorShape)
        .unwrap()
        .failures[0];
    assert!(f.violations.iter().any(|v| v.path == "code"), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_as_text_plain() {
    let r = gate_with(|_req, resp| {
        if resp.status >= 400 {
            for (name, value) in &mut resp.headers {
                if name.eq_ignore_ascii_case("content-type") {
                    *value = "text/plain".into();
                }
            }
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::ErrorShape)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[Check::PositiveAcceptance, Check::NotAServerError],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_without_allow_header() {
    let r = gate_with(|_req, resp| {
        if resp.status == 405 {
            resp.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("allow"));
        }
    })
    .await;
    use Check::*;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, NegativeRejection)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[
            PositiveAcceptance,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_routed_case_insensitively() {
    let r = gate_with(|req, resp| {
        if req.method == "POST" && req.path_and_query.ends_with("/hangup") && resp.status == 404 {
            *resp = DoubleResponse::empty(202);
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[(Endpoint::Hangup, UnknownResource)],
        &[
            PositiveAcceptance,
            NegativeRejection,
            AuthRequired,
            NotAServerError,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_media_answers_503() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::CancelMediaProcessing) && resp.status == 202 {
            *resp = DoubleResponse::error(503, "ServiceUnavailable", "media processor busy");
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::CancelMediaProcessing, NotAServerError),
            (Endpoint::CancelMediaProcessing, PositiveAcceptance),
            (Endpoint::CancelMediaProcessing, Lifecycle),
        ],
        &[NegativeRejection, UnknownResource, ErrorShape],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_leaks_before_authentication() {
    let r = gate_with(|req, resp| {
        let path = req.path_and_query.split('?').next().unwrap_or_default();
        if resp.status == 401 && route(&req.method, path) == Route::NotFound {
            *resp = DoubleResponse::error(404, "NotFound", "no such path");
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[(Endpoint::CreateCall, AuthRequired)],
        &[
            PositiveAcceptance,
            NegativeRejection,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_non_json_bodies_are_violations() {
    let r = gate_with(|req, resp| match endpoint_of(req) {
        Some(Endpoint::Hangup) if resp.status == 202 => {
            resp.body = vec![b' '; 10 * 1024 * 1024].into();
        }
        Some(Endpoint::PlayAudio) if resp.status == 202 => {
            resp.body = "operation started".into();
            resp.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        }
        _ => {}
    })
    .await;
    assert_caught(
        &r,
        &[
            (Endpoint::Hangup, Check::PositiveAcceptance),
            (Endpoint::PlayAudio, Check::PositiveAcceptance),
        ],
        &[Check::NotAServerError, Check::ErrorShape],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinks_a_failing_valid_case() {
    // Rejects create-call bodies with more than one target: the minimal failing
    // case has exactly two.
    let r = gate_with(|req, resp| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if endpoint_of(req) == Some(Endpoint::CreateCall)
            && body["targets"].as_array().is_some_and(|t| t.len() > 1)
            && resp.status == 200
        {
            *resp = DoubleResponse::error(400, "TooManyTargets", "targets");
        }
    })
    .await;
    let cell = r
        .cell(Endpoint::CreateCall, Check::PositiveAcceptance)
        .unwrap();
    let f = &cell.failures[0];
    assert!(f.shrunk.is_some(), "{f:?}");
    let line = f.send.as_deref().unwrap();
    let v = body_of(line);
    assert_eq!(v["targets"].as_array().unwrap().len(), 2, "{line}");
}

/// The JSON body of a printed `acs-harness send` line (`--body '…'`).
fn body_of(line: &str) -> serde_json::Value {
    let quoted = line
        .split(" --body '")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    let body = quoted.trim_end_matches('\'').replace(r"'\''", "'");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// A handler mounted on a plain wiremock server next to misbehaving mocks.
struct Mounted(Arc<Handler>);

impl wiremock::Respond for Mounted {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let path_and_query = match request.url.query() {
            Some(q) => format!("{}?{q}", request.url.path()),
            None => request.url.path().to_string(),
        };
        let req = DoubleRequest {
            method: request.method.as_str().to_string(),
            path_and_query,
            headers: request.headers.clone(),
            body: request.body.clone().into(),
        };
        let resp = self.0.handle(&req);
        let mut t = wiremock::ResponseTemplate::new(resp.status);
        let mut mime = String::new();
        for (n, v) in &resp.headers {
            if n.eq_ignore_ascii_case("content-type") {
                mime = v.clone();
            } else {
                t = t.insert_header(n.as_str(), v.as_str());
            }
        }
        if !resp.body.is_empty() {
            t = t.set_body_raw(resp.body.to_vec(), &mime);
        }
        t
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_fails_as_timeout_and_the_run_goes_on() {
    let config = DoubleConfig::default();
    let handler = Arc::new(Handler::new(&config).unwrap());
    let server = wiremock::MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    wiremock::Mock::given(wiremock::matchers::path_regex("/CancelMediaProcessing$"))
        .respond_with(wiremock::ResponseTemplate::new(202).set_delay(Duration::from_secs(20)))
        .with_priority(1)
        .mount(&server)
        .await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(Mounted(handler))
        .with_priority(2)
        .mount(&server)
        .await;
    let cs = acs_harness::auth::ConnectionString::new(
        url::Url::parse(&server.uri()).unwrap(),
        config.access_key.clone(),
    );
    let mut c = GateConfig::new(server.uri(), cs.signer());
    c.cases = 4;
    c.seed = SEED;
    // Far from both the 20 s delay and a healthy answer, even on a busy CI machine.
    c.timeout = Duration::from_millis(1500);
    c.concurrency = 16;
    let started = Instant::now();
    let r = run_gate(c).await;
    let table = r.render_terminal(false);
    assert_eq!(r.end, RunEnd::Completed, "{table}");
    assert_eq!(r.exit_code(), 1);
    let cell = r
        .cell(Endpoint::CancelMediaProcessing, Check::PositiveAcceptance)
        .unwrap();
    assert!(
        cell.failures.iter().all(|f| f.got.starts_with("timeout")),
        "{table}"
    );
    assert_eq!(
        r.cell(Endpoint::PlayAudio, Check::PositiveAcceptance)
            .unwrap()
            .failed,
        0,
        "{table}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_body_is_a_violation_not_a_panic() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"callLe")
                    .await;
                // Dropping the socket closes it mid-body.
            });
        }
    });
    let key = acs_harness::double::dev_key();
    let mut c = GateConfig::new(
        format!("http://{addr}"),
        acs_harness::auth::Signer::new(&key),
    );
    c.cases = 2;
    c.seed = SEED;
    c.timeout = Duration::from_secs(2);
    let r = run_gate(c).await;
    assert_eq!(r.end, RunEnd::Completed, "{}", r.render_terminal(false));
    assert_eq!(r.exit_code(), 1);
    assert!(
        r.failures().any(|f| f.got.contains("broke off")),
        "{}",
        r.render_terminal(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_aborts_within_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = acs_harness::double::dev_key();
    let c = GateConfig::new(
        format!("http://{addr}"),
        acs_harness::auth::Signer::new(&key),
    );
    let started = Instant::now();
    let r = run_gate(c).await;
    assert!(matches!(r.end, RunEnd::Aborted(_)), "{:?}", r.end);
    assert_eq!(r.exit_code(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_ends_in_bounded_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let key = acs_harness::double::dev_key();
    let mut c = GateConfig::new(
        format!("http://{addr}"),
        acs_harness::auth::Signer::new(&key),
    );
    c.cases = 2;
    c.seed = SEED;
    c.timeout = Duration::from_millis(200);
    c.concurrency = 64;
    let started = Instant::now();
    let r = run_gate(c).await;
    let table = r.render_terminal(false);
    // Silence on the whole first wave is an outage, not a contract violation: exit 2
    // within one request timeout, nothing counted against the target.
    match &r.end {
        RunEnd::Aborted(why) => assert!(
            why.contains("accepted connections but answered none of 8 requests within 200ms"),
            "{why}"
        ),
        other => panic!("{other:?}\n{table}"),
    }
    assert_eq!(r.exit_code(), 2);
    assert!(!r.has_failures(), "{table}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_header_listing_the_refused_method() {
    let r = gate_with(|_req, resp| {
        if resp.status == 405 {
            resp.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("allow"));
            resp.headers
                .push(("allow".into(), "GET, HEAD, POST, PUT, PATCH, DELETE".into()));
        }
    })
    .await;
    use Check::*;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, NegativeRejection)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[
            PositiveAcceptance,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_date_accepted() {
    let r = gate_with(|req, resp| {
        if resp.status == 401
            && req.header_str("x-ms-date").is_none()
            && req
                .header_str("authorization")
                .is_some_and(|a| a.starts_with("HMAC-SHA256 "))
        {
            accept_instead(req, resp);
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::AuthRequired)).to_vec();
    assert_caught(&r, &caught, &[Check::PositiveAcceptance, Check::Lifecycle]);
    let cell = r.cell(Endpoint::PlayAudio, Check::AuthRequired).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("x-ms-date missing"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_not_bound_to_the_host() {
    // Verifies as if the request had been sent to the host it was signed for.
    let handler = Arc::new(Handler::new(&DoubleConfig::default()).unwrap());
    let r = gate_with(move |req, resp| {
        if resp.status != 401 {
            return;
        }
        let mut moved = req.clone();
        moved
            .headers
            .insert("host", "attacker.example".parse().unwrap());
        if handler.handle(&moved).status != 401 {
            accept_instead(req, resp);
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::AuthRequired)).to_vec();
    assert_caught(&r, &caught, &[Check::PositiveAcceptance, Check::Lifecycle]);
    let cell = r.cell(Endpoint::Hangup, Check::AuthRequired).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("another host"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_as_problem_json() {
    // RFC 9457's media type is JSON too, but the contract says application/json.
    let r = gate_with(|_req, resp| {
        if resp.status >= 400 {
            for (name, value) in &mut resp.headers {
                if name.eq_ignore_ascii_case("content-type") {
                    *value = "application/problem+json".into();
                }
            }
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::ErrorShape)).to_vec();
    assert_caught(
        &r,
        &caught,
        &[Check::PositiveAcceptance, Check::NotAServerError],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_leg_id_not_a_string() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) && resp.status == 200 {
            set_json(resp, 200, json!({"callLegId": 4711}));
        }
    })
    .await;
    use Check::*;
    assert_caught(
        &r,
        &[
            (Endpoint::CreateCall, PositiveAcceptance),
            (Endpoint::CreateCall, Lifecycle),
        ],
        &[NotAServerError, ErrorShape],
    );
    let f = &r
        .cell(Endpoint::CreateCall, PositiveAcceptance)
        .unwrap()
        .failures[0];
    assert!(f.violations.iter().any(|v| v.path == "callLegId"), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_answered_422() {
    let r = gate_with(|_req, resp| {
        if resp.status == 400 {
            resp.status = 422;
        }
    })
    .await;
    use Check::*;
    let caught: Vec<(Endpoint, Check)> = [
        Endpoint::CreateCall,
        Endpoint::PlayAudio,
        Endpoint::InviteParticipants,
    ]
    .map(|e| (e, NegativeRejection))
    .to_vec();
    assert_caught(
        &r,
        &caught,
        &[
            PositiveAcceptance,
            AuthRequired,
            NotAServerError,
            UnknownResource,
            Lifecycle,
            ErrorShape,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_leg_in_latin_1() {
    let r = gate_with(|req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) && resp.status == 200 {
            for (name, value) in &mut resp.headers {
                if name.eq_ignore_ascii_case("content-type") {
                    *value = "application/json; charset=iso-8859-1".into();
                }
            }
        }
    })
    .await;
    assert_caught(
        &r,
        &[(Endpoint::CreateCall, Check::PositiveAcceptance)],
        &[Check::NotAServerError, Check::ErrorShape],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_not_bound_to_path_or_method() {
    // A lax verifier that also takes a signature made for another path or method.
    let handler = Arc::new(Handler::new(&DoubleConfig::default()).unwrap());
    let r = gate_with(move |req, resp| {
        if resp.status != 401 {
            return;
        }
        let mut other_path = req.clone();
        other_path.path_and_query = format!("/calls/replayed{}", req.path_and_query);
        let mut other_method = req.clone();
        other_method.method = if req.method == "GET" { "POST" } else { "GET" }.into();
        if [other_path, other_method]
            .iter()
            .any(|r| handler.handle(r).status != 401)
        {
            accept_instead(req, resp);
        }
    })
    .await;
    let caught: Vec<(Endpoint, Check)> = Endpoint::ALL.map(|e| (e, Check::AuthRequired)).to_vec();
    assert_caught(&r, &caught, &[Check::PositiveAcceptance, Check::Lifecycle]);
    let cell = r.cell(Endpoint::PlayAudio, Check::AuthRequired).unwrap();
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("another path"))
    );
    assert!(
        cell.failures
            .iter()
            .any(|f| f.case.contains("another method"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_prefix_gets_a_hint() {
    let double = Double::start(DoubleConfig::default().prefix("/calling"))
        .await
        .unwrap();
    let report = run_gate(config(&double.uri(), &double, 3)).await;
    let table = report.render_terminal(false);
    assert_eq!(report.exit_code(), 1, "{table}");
    assert!(
        table.contains("hint: no valid create-call request succeeded"),
        "{table}"
    );
    assert!(table.contains("--prefix"), "{table}");
}

/// Rewrites the message of a duplicate-item error to `message_for(array)`, where
/// `array` is the array holding the repeated item.
fn rename_duplicate_errors(
    message_for: fn(&str) -> String,
) -> impl Fn(&DoubleRequest, &mut DoubleResponse) + Send + Sync + 'static {
    move |_req, resp| {
        let Some(body) = resp.body_json() else {
            return;
        };
        let message = body["message"].as_str().unwrap_or_default();
        if resp.status != 400 || !message.contains("appears more than once") {
            return;
        }
        let array = ["requestedModalities", "requestedCallEvents"]
            .into_iter()
            .find(|a| message.contains(&format!("{a}[")))
            .unwrap_or("requestedModalities");
        set_json(
            resp,
            400,
            json!({"code": "InvalidRequest", "message": message_for(array)}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_item_error_may_name_the_array() {
    // src/contract/CONTRACT.md: for a rule on a whole array, naming the array satisfies it.
    let r = gate_with(rename_duplicate_errors(|array| {
        format!("{array}: duplicate items")
    }))
    .await;
    let table = r.render_terminal(false);
    assert_eq!(r.exit_code(), 0, "{table}");
    let cell = r
        .cell(Endpoint::CreateCall, Check::NegativeRejection)
        .unwrap();
    assert!(cell.passed > 0 && cell.failed == 0, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_item_error_naming_nothing_fails() {
    let r = gate_with(rename_duplicate_errors(|_| "duplicate items".into())).await;
    assert_caught(
        &r,
        &[(Endpoint::CreateCall, Check::NegativeRejection)],
        &[Check::PositiveAcceptance, Check::ErrorShape],
    );
    let cell = r
        .cell(Endpoint::CreateCall, Check::NegativeRejection)
        .unwrap();
    assert!(
        cell.failures
            .iter()
            .all(|f| f.case.contains("duplicate-enum-item")),
        "{:?}",
        cell.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_only_beyond_fifty_targets_fails_and_shrinks_to_51() {
    // Fine for every typical size; a 500 only for more than 50 targets.
    let r = gate_with(|req, resp| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if endpoint_of(req) == Some(Endpoint::CreateCall)
            && body["targets"].as_array().is_some_and(|t| t.len() > 50)
            && resp.status == 200
        {
            *resp = DoubleResponse::error(500, "TooManyTargets", "targets");
        }
    })
    .await;
    assert_caught(
        &r,
        &[
            (Endpoint::CreateCall, Check::PositiveAcceptance),
            (Endpoint::CreateCall, Check::NotAServerError),
        ],
        &[
            Check::NegativeRejection,
            Check::AuthRequired,
            Check::Lifecycle,
        ],
    );
    let cell = r
        .cell(Endpoint::CreateCall, Check::PositiveAcceptance)
        .unwrap();
    let f = &cell.failures[0];
    assert!(f.shrunk.is_some() && f.case.contains("large"), "{f:?}");
    let line = f.send.as_deref().unwrap();
    let v = body_of(line);
    assert_eq!(v["targets"].as_array().unwrap().len(), 51, "{line}");
}
