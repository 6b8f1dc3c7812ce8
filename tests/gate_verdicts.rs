//! Issue #10, the gate's side: verdicts a CI owner can trust. The user's mistakes and
//! outages are exit 2 with the reason, fast; hostile answers cost bounded time; no
//! secret reaches stdout, stderr, JUnit or JSON. Hostile targets are built in-process.

use acs_harness::auth::{AccessKey, Signer};
use acs_harness::contract::{Endpoint, Route, route};
use acs_harness::double::{Double, DoubleConfig, DoubleRequest, DoubleResponse};
use acs_harness::gate::{Check, GateConfig, Report, RunEnd, run_gate};
use serde_json::json;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/process.rs"]
mod process;
use process::text;

const BIN: &str = env!("CARGO_BIN_EXE_acs-harness");
const SEED: u64 = 20_261_202;
/// A valid base64 key that no target here signs with.
const WRONG_KEY: &str = "d3Jvbmcta2V5LWZvci10aGUtZ2F0ZS12ZXJkaWN0cy10ZXN0";

fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("ACS_CONNECTION_STRING")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the command finished in time")
        .expect("the binary ran")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("acs-verdicts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(target: String, signer: Signer) -> GateConfig {
    let mut c = GateConfig::new(target, signer);
    c.cases = 2;
    c.seed = SEED;
    c.timeout = Duration::from_secs(5);
    c
}

fn dev_signer() -> Signer {
    Signer::new(&acs_harness::double::dev_key())
}

fn endpoint_of(req: &DoubleRequest) -> Option<Endpoint> {
    let path = req.path_and_query.split('?').next().unwrap_or_default();
    match route(&req.method, path) {
        Route::Found { endpoint, .. } => Some(endpoint),
        _ => None,
    }
}

/// A loopback listener whose accepted connections get `answer` (or nothing, when it
/// is `None`) after their request head, and are then held open until the test ends.
async fn raw_target(answer: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                if let Some(bytes) = answer {
                    let _ = s.write_all(bytes).await;
                }
                // Hold the connection: the client must give up by itself.
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://{addr}")
}

/// Reads up to the end of a request head (or 64 KiB, or EOF); returns the head.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

// Item 1: a connection string pasted as --target, and secrets in a --target query, are
// never echoed: not in "cannot connect" messages, not in the first line, not anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_secrets_are_never_echoed() {
    let key = "c2VjcmV0LWtleS1wYXN0ZWQtYXMtdGFyZ2V0LWl0ZW0tMQ==";
    let cs = format!("endpoint=https://contoso.communication.azure.com/;accesskey={key}");
    let o = run(command(&[
        "contract",
        "--target",
        &cs,
        "--connection-string",
        &cs,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains(key), "the key leaked: {all}");
    assert!(all.contains("connection string"), "{all}");
    assert!(all.contains("contoso.communication.azure.com"), "{all}");

    // A query string with a key and a signature, on an unreachable target.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target =
        format!("http://{addr}/base?accesskey=cXVlcnkta2V5LXNlY3JldA%3D%3D&sig=s1gn4ture-s3cret");
    let o = run(command(&[
        "contract",
        "--target",
        &target,
        "--connection-string",
        &format!("endpoint=http://{addr}/;accesskey=a2V5"),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("cannot connect"), "{all}");
    assert!(all.contains(&format!("http://{addr}/base")), "{all}");
    for secret in ["cXVlcnkta2V5", "s1gn4ture-s3cret", "accesskey=", "sig="] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

/// Signatures, dates and content hashes a target received, to look for in output.
#[derive(Default)]
struct Seen {
    signatures: Vec<String>,
    dates: Vec<String>,
    hashes: Vec<String>,
}

// Item 2: a target that echoes the request's headers in its error bodies must not put
// signatures, hashes or dates into stdout, stderr, JUnit or JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_signatures_never_reach_any_output() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let double = Double::start(DoubleConfig::default().tamper(move |req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) {
            return;
        }
        let h = |n: &str| {
            req.headers
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let (auth, date, hash) = (h("authorization"), h("x-ms-date"), h("x-ms-content-sha256"));
        if let Ok(mut s) = record.lock() {
            if let Some((_, sig)) = auth.split_once("Signature=") {
                s.signatures.push(sig.to_string());
            }
            s.dates.push(date.clone());
            s.hashes.push(hash.clone());
        }
        let sig = auth.split_once("Signature=").map_or("", |(_, s)| s);
        // The secrets first, so that they fall within any excerpt of the body.
        *resp = DoubleResponse::json(
            401,
            &json!({"code": "E", "message": format!(
                "bad signature {sig} for {date} and {hash}; authorization: {auth}; x-ms-date: {date}"
            )}),
        );
    }))
    .await
    .unwrap();
    let dir = temp_dir("echo");
    let (junit, json_path) = (dir.join("c.xml"), dir.join("c.json"));
    let cs = double.connection_string().expose();
    let key = double.connection_string().key.to_base64();
    let o = run(command(&[
        "contract",
        "--target",
        &double.uri(),
        "--connection-string",
        &cs,
        "--cases",
        "2",
        "--only",
        "hangup,play-audio",
        "--seed",
        "7",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]))
    .await;
    // The echoing target is a deviation (401 to signed requests): exit 1.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let outputs = [
        text(&o),
        std::fs::read_to_string(&junit).unwrap(),
        std::fs::read_to_string(&json_path).unwrap(),
    ];
    assert!(outputs[0].contains("bad signature"), "{}", outputs[0]);
    let seen = seen.lock().unwrap();
    assert!(!seen.signatures.is_empty() && !seen.dates.is_empty());
    for out in &outputs {
        assert!(!out.contains(&key), "the key leaked");
        for s in &seen.signatures {
            assert!(!out.contains(s.as_str()), "a signature leaked: {s}");
        }
        for d in seen.dates.iter().filter(|d| !d.is_empty()) {
            assert!(!out.contains(d.as_str()), "a request date leaked: {d}");
        }
        for h in seen.hashes.iter().filter(|h| !h.is_empty()) {
            assert!(!out.contains(h.as_str()), "a content hash leaked: {h}");
        }
    }
    // The reports are still well-formed after scrubbing.
    serde_json::from_str::<serde_json::Value>(&outputs[2]).unwrap();
    assert_junit_well_formed(&outputs[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_junit_well_formed(xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("bad XML ({e}): {xml}"),
        }
    }
}

// Item 3: a rejected key is exit 2 after the first wave, naming the key and the clock,
// not hundreds of "signature is not valid" failures and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_exit_2_naming_the_key_and_the_clock() {
    let double = Double::start(DoubleConfig::default()).await.unwrap();
    let wrong = AccessKey::from_base64(WRONG_KEY).unwrap();
    let started = Instant::now();
    let r = run_gate(config(double.uri(), Signer::new(&wrong))).await;
    let table = r.render_terminal(false);
    let RunEnd::Aborted(why) = &r.end else {
        panic!("{table}");
    };
    assert!(why.contains("rejected the access key"), "{why}");
    assert!(why.contains("clock"), "{why}");
    assert_eq!(r.exit_code(), 2);
    assert!(!r.has_failures(), "{table}");
    assert!(r.requests <= 8, "{} requests", r.requests);
    assert!(started.elapsed() < Duration::from_secs(5));

    // The CLI says so on stderr in one line and writes nothing but the target line.
    let cs = format!("endpoint={}/;accesskey={WRONG_KEY}", double.uri());
    let o = run(command(&[
        "contract",
        "--target",
        &double.uri(),
        "--connection-string",
        &cs,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("access key") && stderr.contains("ACS_CONNECTION_STRING"),
        "{stderr}"
    );
    assert!(!text(&o).contains(WRONG_KEY));
}

// Item 4a: a connect that never completes (a listener whose backlog is full) is
// "unreachable": exit 2 within the connect timeout, not one timeout per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connect_is_unreachable_within_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted): further SYNs are dropped.
    let mut fillers = Vec::new();
    let mut black_holed = false;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect failed outright: {e}"),
            Err(_) => {
                black_holed = true;
                break;
            }
        }
    }
    assert!(black_holed, "the backlog never filled");
    let mut c = config(format!("http://{addr}"), dev_signer());
    c.timeout = Duration::from_secs(30);
    c.connect_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let r = run_gate(c).await;
    let elapsed = started.elapsed();
    let RunEnd::Aborted(why) = &r.end else {
        panic!("{}", r.render_terminal(false));
    };
    assert!(
        why.contains("cannot connect") && why.contains("no connection within 500ms"),
        "{why}"
    );
    assert_eq!(r.exit_code(), 2);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    drop((listener, fillers));
}

// Item 4b: a target that trickles its answer (a byte at a time, never completing) is
// the same outage as silence: exit 2 within one request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_target_is_exit_2_within_one_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                // Bounded: a status line, then header bytes, for at most 30 s.
                let trickle = b"HTTP/1.1 200 OK\r\nx-slow: "
                    .iter()
                    .chain([b'a'; 600].iter());
                for b in trickle {
                    tick.tick().await;
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut c = config(format!("http://{addr}"), dev_signer());
    c.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let r = run_gate(c).await;
    let elapsed = started.elapsed();
    let RunEnd::Aborted(why) = &r.end else {
        panic!("{}", r.render_terminal(false));
    };
    assert!(
        why.contains("answered none of 8 requests within 500ms"),
        "{why}"
    );
    assert_eq!(r.exit_code(), 2);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

// Item 4c: a target that answers some requests but hangs on others is cut by the run
// budget, says what did not run, and is an error in JUnit (item 8 for the budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_budget_cuts_a_hanging_run_and_reports_what_did_not_run() {
    let double = Double::start(DoubleConfig::default().tamper(|req, resp| {
        if endpoint_of(req) != Some(Endpoint::CreateCall) {
            resp.delay = Duration::from_secs(60);
        }
    }))
    .await
    .unwrap();
    let mut c = config(double.uri(), dev_signer());
    c.timeout = Duration::from_secs(30);
    c.max_run_time = Duration::from_millis(1500);
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), run_gate(c))
        .await
        .expect("the budget ended the run");
    let elapsed = started.elapsed();
    assert_eq!(
        r.end,
        RunEnd::DeadlineReached,
        "{}",
        r.render_terminal(false)
    );
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    assert_eq!(r.exit_code(), 2);
    let table = r.render_terminal(false);
    assert!(table.contains("--max-run-time 1.5s"), "{table}");
    assert!(table.contains("not run: "), "{table}");
    let junit = r.to_junit();
    assert!(
        junit.contains("<error message=\"run stopped by its budget"),
        "{junit}"
    );
    assert_junit_well_formed(&junit);
    let json = r.to_json();
    assert!(
        json["not_run"].as_array().is_some_and(|a| !a.is_empty()),
        "{json}"
    );
}

// Item 5: a peer that does not speak HTTP is an unreachable service (exit 2), not a
// contract violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_speak_http_is_exit_2() {
    let target = raw_target(Some(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")).await;
    let started = Instant::now();
    let r = run_gate(config(target, dev_signer())).await;
    let RunEnd::Aborted(why) = &r.end else {
        panic!("{}", r.render_terminal(false));
    };
    assert!(why.contains("does not speak HTTP"), "{why}");
    assert_eq!(r.exit_code(), 2);
    assert!(!r.has_failures());
    assert!(started.elapsed() < Duration::from_secs(5));
}

// Item 6: no --target means the embedded double, even with ACS_CONNECTION_STRING set
// (here to an address where nothing listens); the first line names the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_target_means_the_embedded_double_named_on_the_first_line() {
    let key = "ZW52LWtleS1tdXN0LW5vdC1iZS11c2VkLWhlcmU=";
    let mut cmd = command(&["contract", "--cases", "2", "--only", "hangup"]);
    cmd.env(
        "ACS_CONNECTION_STRING",
        format!("endpoint=http://127.0.0.1:9/;accesskey={key}"),
    );
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("acs-harness contract: target the embedded double at http://127.0.0.1:"),
        "{first}"
    );
    assert!(!text(&o).contains(key));
}

/// Starts `contract` against a target that never answers, with both reports asked
/// for, and returns once the target has read a request head (the run is under way).
async fn a_run_in_flight(
    dir: &std::path::Path,
) -> (
    tokio::process::Child,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                if head.contains("\r\n\r\n") {
                    let _ = tx.try_send(());
                }
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let target = format!("http://{addr}");
    let (junit, json_path) = (dir.join("run.xml"), dir.join("run.json"));
    let mut cmd = command(&[
        "contract",
        "--target",
        &target,
        "--timeout",
        "30s",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    cmd.env(
        "ACS_CONNECTION_STRING",
        format!("endpoint={target}/;accesskey=a2V5"),
    );
    let child = cmd.spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the gate sent a request")
        .unwrap();
    (child, junit, json_path)
}

// Items 7 and 8: SIGTERM (then a second signal at once) stops the run like Ctrl-C: exit
// 2, both reports whole, and the JUnit marks the run as an error, not green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_ctrl_c_leave_whole_reports_that_are_not_green() {
    let dir = temp_dir("sigterm");
    let (child, junit, json_path) = a_run_in_flight(&dir).await;
    let pid = child.id().unwrap().to_string();
    let started = Instant::now();
    for sig in ["-TERM", "-INT"] {
        let kill = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(kill.success());
    }
    let o = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("stopped promptly")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("run interrupted"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report was written");
    assert_junit_well_formed(&xml);
    assert!(xml.contains("errors=\"1\""), "{xml}");
    assert!(xml.contains("<error message=\"run interrupted"), "{xml}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["end"]["kind"], "interrupted");
    // No temporary file is left beside the reports.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 8, in the report itself: an interrupted run with nothing found is an error in
// JUnit, never a suite of `<skipped>` with no errors.
#[test]
fn an_interrupted_report_is_an_error_in_junit() {
    let mut r = Report::new(
        "http://127.0.0.1:1/".into(),
        false,
        1,
        1,
        vec![Endpoint::Hangup],
    );
    r.end = RunEnd::Interrupted;
    let xml = r.to_junit();
    assert_junit_well_formed(&xml);
    let head = xml.lines().nth(1).unwrap_or_default();
    assert!(head.contains("errors=\"1\""), "{head}");
    assert!(xml.contains("<error message=\"run interrupted"), "{xml}");
    r.end = RunEnd::Completed;
    r.pass(Endpoint::Hangup, Check::Lifecycle);
    assert!(!r.to_junit().contains("<error"));
}

// Item 9: errors knowable before work come before work: an unwritable report path is
// exit 2 before the first request (the target never sees a connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_report_paths_fail_before_any_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let cs = format!("endpoint={target}/;accesskey=a2V5");
    for flag in ["--json", "--junit"] {
        let o = run(command(&[
            "contract",
            "--target",
            &target,
            "--connection-string",
            &cs,
            flag,
            "/nonexistent-acs-harness-dir/report",
        ]))
        .await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(o.stdout.is_empty(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("/nonexistent-acs-harness-dir/report"),
            "{}",
            text(&o)
        );
        // The process has exited: a connection it made would be waiting here.
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the gate connected before failing: {other:?}"),
        }
    }
    // A target that is no URL is refused before any work too, without echoing it.
    let o = run(command(&[
        "contract",
        "--target",
        "not a url sig=c2VjcmV0",
        "--connection-string",
        &cs,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("c2VjcmV0"), "{}", text(&o));
}

// Item 10: a closed stdout ends `contract`, `spec` and `generate` quietly with the exit
// code the run would have had; never a panic (101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly_with_the_runs_exit_code() {
    for (args, want) in [
        (&["contract", "--cases", "2", "--only", "hangup"][..], 0),
        (&["spec"], 0),
        (
            &["generate", "create-call", "--count", "2000", "--seed", "1"],
            0,
        ),
    ] {
        let mut child = command(args).spawn().unwrap();
        // The reader goes away before anything is written (`| head -0`).
        drop(child.stdout.take());
        let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("finished")
            .unwrap();
        assert_eq!(o.status.code(), Some(want), "{args:?}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// Item 12: a megabyte callLegId is a contract violation (exit 1) shown cut with its
// size, not "cannot connect … builder error" (exit 2) and not the megabyte in output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_call_leg_id_is_a_violation_shown_cut() {
    let huge = "L".repeat(1 << 20);
    let double = Double::start(DoubleConfig::default().tamper(move |req, resp| {
        if endpoint_of(req) == Some(Endpoint::CreateCall) && resp.status == 200 {
            *resp = DoubleResponse::json(200, &json!({"callLegId": huge}));
        }
    }))
    .await
    .unwrap();
    let mut c = config(double.uri(), Signer::new(&acs_harness::double::dev_key()));
    c.endpoints = vec![Endpoint::CreateCall, Endpoint::PlayAudio];
    let r = run_gate(c).await;
    let table = r.render_terminal(false);
    assert_eq!(
        r.end,
        RunEnd::Completed,
        "{}",
        &table[..table.len().min(4000)]
    );
    assert_eq!(r.exit_code(), 1);
    let cell = r
        .cell(Endpoint::CreateCall, Check::PositiveAcceptance)
        .unwrap();
    assert!(cell.failed > 0, "{}", &table[..table.len().min(4000)]);
    let f = &cell.failures[0];
    assert!(
        f.violations
            .iter()
            .any(|v| v.path == "callLegId" && v.message.contains("1048576 bytes in all")),
        "{f:?}"
    );
    assert!(table.len() < 200_000, "{} bytes of output", table.len());
    assert!(!table.contains(&"L".repeat(5000)));
    let json = serde_json::to_string(&r.to_json()).unwrap();
    assert!(json.len() < 500_000, "{} bytes of JSON", json.len());
}
