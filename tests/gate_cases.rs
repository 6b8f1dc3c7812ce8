//! The gate's cases and reproducible failures through the binary: a printed failure
//! line replayed with `acs-harness send` gets the same answer, `send` itself, and a
//! run with a huge `--cases` that still stops at once on Ctrl-C.

use acs_harness::double::{Double, DoubleConfig, DoubleResponse};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[path = "common/process.rs"]
mod process;
use process::text;

const BIN: &str = env!("CARGO_BIN_EXE_acs-harness");

/// Generous bound on a whole command: a hang fails the test instead of blocking CI.
const BOUND: Duration = Duration::from_secs(120);

/// Runs the binary with `args`, the connection string in ACS_CONNECTION_STRING.
async fn run(args: &[&str], cs: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("ACS_CONNECTION_STRING")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    if let Some(cs) = cs {
        cmd.env("ACS_CONNECTION_STRING", cs);
    }
    tokio::time::timeout(BOUND, cmd.output())
        .await
        .expect("the command finished in time")
        .expect("the binary ran")
}

/// Runs a printed line through `sh`, with `acs-harness` being this build's binary.
async fn run_line(line: &str, cs: &str) -> Output {
    let script = format!("{BIN}{}", line.strip_prefix("acs-harness").unwrap());
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("ACS_CONNECTION_STRING", cs)
        .kill_on_drop(true);
    tokio::time::timeout(BOUND, cmd.output())
        .await
        .expect("the line finished in time")
        .expect("sh ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printed_failure_line_reproduces_the_failure() {
    // Create call answers 500 for more than one target.
    let double = Double::start(DoubleConfig::default().tamper(|req, resp| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if req.method == "POST"
            && req.path_and_query.trim_end_matches('/') == "/calls"
            && body["targets"].as_array().is_some_and(|t| t.len() > 1)
        {
            *resp = DoubleResponse::error(500, "Internal", "boom");
        }
    }))
    .await
    .unwrap();
    let cs = double.connection_string().expose();
    let uri = double.uri();
    let o = run(
        &[
            "contract",
            "--target",
            &uri,
            "--only",
            "create-call",
            "--cases",
            "6",
            "--seed",
            "3",
            "--timeout",
            "7s",
        ],
        Some(&cs),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!stdout.contains("curl "), "{stdout}");
    // The replay line names every option that changed the run, and the key by name.
    let replay = stdout
        .lines()
        .find(|l| l.contains("replay: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    for part in [
        "--connection-string \"$ACS_CONNECTION_STRING\"",
        "--only create-call",
        "--cases 6",
        "--timeout 7s",
        "--seed 3",
    ] {
        assert!(replay.contains(part), "{part} not in {replay}");
    }
    let line = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("request:"))
        .map(str::trim)
        .find(|l| l.starts_with("acs-harness send POST '/calls'") && l.contains("--body"))
        .unwrap_or_else(|| panic!("no send line for create call:\n{stdout}"));
    assert!(line.contains("--timeout 7s"), "{line}");
    assert!(!line.contains(&cs) && !stdout.contains(&cs));
    let replayed = run_line(line, &cs).await;
    let out = String::from_utf8_lossy(&replayed.stdout);
    assert_eq!(replayed.status.code(), Some(0), "{}", text(&replayed));
    assert!(out.starts_with("HTTP 500\n"), "{}", text(&replayed));
    assert!(out.contains("\"Internal\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_and_prints_status_headers_and_body() {
    let double = Double::start(DoubleConfig::default().prefix("/calling"))
        .await
        .unwrap();
    let cs = double.connection_string().expose();
    let uri = double.uri();
    let dir = std::env::temp_dir().join(format!("acs-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("create.json");
    std::fs::write(
        &file,
        r#"{"source":{"communicationUser":{"id":"8:acs:x"}},"targets":[{"phoneNumber":{"value":"+14255550100"}}],"callbackUri":"https://contoso.com/cb","requestedModalities":["audio"],"requestedCallEvents":[]}"#,
    )
    .unwrap();
    let body = format!("@{}", file.display());
    let create = [
        "send",
        "POST",
        "/calls",
        "--target",
        &uri,
        "--prefix",
        "/calling",
        "--header",
        "Content-Type: application/json",
        "--body",
        &body,
    ];
    let o = run(&create, Some(&cs)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("HTTP 200\n"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{out}"
    );
    assert!(out.contains("callLegId"), "{out}");
    // The authentication faults the gate prints are modes of `send`.
    let mut unsigned = create.to_vec();
    unsigned.extend(["--auth", "none"]);
    let o = run(&unsigned, Some(&cs)).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("HTTP 401\n"),
        "{}",
        text(&o)
    );
    let mut old = create.to_vec();
    old.extend(["--auth", "date-offset=-1200"]);
    let o = run(&old, Some(&cs)).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("HTTP 401\n"),
        "{}",
        text(&o)
    );
    // Bytes that are not text go as base64.
    let o = run(
        &[
            "send",
            "POST",
            "/calls",
            "--target",
            &uri,
            "--prefix",
            "/calling",
            "--header",
            "Content-Type: application/json",
            "--body-base64",
            "e/8=",
        ],
        Some(&cs),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("HTTP 400\n"),
        "{}",
        text(&o)
    );
    // No key: exit 2 with the reason, before anything is sent.
    let o = run(&create, None).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ACS_CONNECTION_STRING"));
    // A missing body file and an unreachable target are exit 2 too.
    let o = run(
        &[
            "send",
            "POST",
            "/calls",
            "--target",
            &uri,
            "--body",
            "@/nonexistent/x.json",
        ],
        Some(&cs),
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    drop(double);
    let o = run(&create, Some(&cs)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains(&cs));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_cases_run_stops_at_once_on_ctrl_c() {
    // The double counts requests, so the test knows the run is under way without
    // sleeping: the second request goes out once the first set-up call was answered
    // (Ctrl-C is watched by then), just before the valid cases are drawn — where two
    // million cases per endpoint used to hold up Ctrl-C for many seconds.
    let seen = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (s, n) = (seen.clone(), notify.clone());
    let double = Double::start(DoubleConfig::default().tamper(move |_req, _resp| {
        s.fetch_add(1, Ordering::SeqCst);
        n.notify_one();
    }))
    .await
    .unwrap();
    let cs = double.connection_string().expose();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "contract",
            "--target",
            &double.uri(),
            "--cases",
            "2000000",
            "--seed",
            "1",
        ])
        .env("ACS_CONNECTION_STRING", &cs)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(BOUND, async {
        while seen.load(Ordering::SeqCst) < 2 {
            notify.notified().await;
        }
    })
    .await
    .expect("the run started");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    // Well below the time the old code spent drawing cases before it looked at Ctrl-C.
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the run stopped promptly after Ctrl-C")
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    // Interrupted before finding anything: exit 2, with the partial report.
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("interrupted") || stderr.contains("interrupted"),
        "{stdout}\n{stderr}"
    );
}
