//! `acs-harness load`'s orchestration, end to end with the binary: the target it picks,
//! what it refuses before any work, signals, a closed stdout, secrets a target echoes,
//! `--bodies` replays and the thresholds table.

use acs_harness::contract::Endpoint;
use acs_harness::double::DoubleConfig;
use acs_harness::double::{RunningServer, Server};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::text;

const BIN: &str = env!("CARGO_BIN_EXE_acs-harness");

/// Bounds every wait on a child process.
const WAIT: Duration = Duration::from_secs(60);

async fn double() -> RunningServer {
    Server::bind(DoubleConfig::default())
        .await
        .expect("bind the double")
        .spawn()
}

/// Runs the binary with `args` (and `env`), ACS_CONNECTION_STRING removed unless given.
async fn run(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args).env_remove("ACS_CONNECTION_STRING");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run acs-harness")
    })
    .await
    .expect("join")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A fresh folder for one test's files.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acs-load-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether a report is whole: JSON parses, HTML ends its document, Markdown has text.
fn whole(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
        Some("html") => String::from_utf8_lossy(&bytes)
            .trim_end()
            .ends_with("</html>"),
        _ => !bytes.is_empty(),
    }
}

/// The staging folders a process left in the temporary folder.
fn staging_left(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("acs-harness-load-{pid}-")))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_string_as_host_or_a_query_in_host_is_never_echoed() {
    let server = double().await;
    let cs = server.connection_string().expose();
    let key = cs.split("accesskey=").nth(1).unwrap().to_string();
    let out = run(
        strings(&["load", "--host", &cs, "--connection-string", &cs, "--quiet"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(!t.contains(&key), "the key was printed: {t}");
    assert!(t.contains("--connection-string"), "{t}");

    let host = format!(
        "{}?accesskey=UXVlcnlTZWNyZXQx&sig=c2lnU2VjcmV0Mg",
        server.uri()
    );
    let out = run(
        strings(&[
            "load",
            "--host",
            &host,
            "--connection-string",
            &cs,
            "--scenario",
            "call-creation",
            "--users",
            "1",
            "--increase-rate",
            "100",
            "--run-time",
            "1s",
            "--quiet",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    for secret in ["UXVlcnlTZWNyZXQx", "c2lnU2VjcmV0Mg", key.as_str()] {
        assert!(!t.contains(secret), "{secret} was printed: {t}");
    }
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.starts_with("load: target ") && first.contains(&server.uri().replace("http://", "")),
        "{first}"
    );
}

/// A target that answers the probe (405) and every create-call with an error whose
/// message echoes one of the request's secrets, in turn: the signature, the content
/// hash, the date.
struct Echo(std::sync::atomic::AtomicUsize);

impl wiremock::Respond for Echo {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (status, message) = match n % 3 {
            0 => (
                401,
                format!("bad signature: authorization: {}", header("authorization")),
            ),
            1 => (
                400,
                format!(
                    "bad request: x-ms-content-sha256: {}",
                    header("x-ms-content-sha256")
                ),
            ),
            _ => (
                400,
                format!("bad request: x-ms-date: {}", header("x-ms-date")),
            ),
        };
        wiremock::ResponseTemplate::new(status).set_body_json(serde_json::json!({
            "code": "BadRequest",
            "message": message,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_target_echoes_reach_no_report_and_no_output() {
    use wiremock::matchers::{method, path};
    let target = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path("/calls"))
        .respond_with(wiremock::ResponseTemplate::new(405))
        .mount(&target)
        .await;
    wiremock::Mock::given(method("POST"))
        .and(path("/calls"))
        .respond_with(Echo(Default::default()))
        .mount(&target)
        .await;
    let key = "ZWNob2VkLWtleS1mb3ItdGhlLWxvYWQtdGVzdA==";
    let cs = format!("endpoint={}/;accesskey={key}", target.uri());
    let dir = folder("echo");
    let report = |ext: &str| dir.join(format!("r.{ext}"));
    let mut args = strings(&[
        "load",
        "--host",
        &target.uri(),
        "--connection-string",
        &cs,
        "--scenario",
        "call-creation",
        "--users",
        "2",
        "--increase-rate",
        "100",
        "--run-time",
        "1s",
        "--seed",
        "7",
    ]);
    for ext in ["json", "html", "md"] {
        args.push("--report-file".into());
        args.push(report(ext).display().to_string());
    }
    let out = run(args, vec![]).await;
    // Every create-call failed: the error-rate threshold is breached.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let requests = target.received_requests().await.unwrap_or_default();
    let mut secrets = vec![key.to_string()];
    for r in requests.iter().filter(|r| r.method.as_str() == "POST") {
        let h = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        secrets.push(
            h("authorization")
                .rsplit("Signature=")
                .next()
                .unwrap()
                .to_string(),
        );
        secrets.push(h("x-ms-content-sha256").to_string());
        secrets.push(h("x-ms-date").to_string());
    }
    assert!(secrets.len() > 3, "no create-call was sent: {}", text(&out));
    secrets.retain(|s| !s.is_empty());
    let mut texts = vec![("output".to_string(), text(&out))];
    for name in ["r.json", "r.html", "r.md", "r.thresholds.json"] {
        let body =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        texts.push((name.to_string(), body));
    }
    // The echoed messages did reach the reports; only their secrets are gone.
    for (name, body) in &texts[1..4] {
        assert!(
            body.contains("bad signature"),
            "{name} holds no echoed error"
        );
    }
    for (name, body) in &texts {
        for secret in &secrets {
            assert!(!body.contains(secret.as_str()), "{name} holds {secret}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_host_the_load_goes_to_the_embedded_double_even_with_a_connection_string() {
    // Stands for the paid service ACS_CONNECTION_STRING points at.
    let paid = double().await;
    let out = run(
        strings(&[
            "load",
            "--scenario",
            "call-creation",
            "--users",
            "1",
            "--increase-rate",
            "100",
            "--run-time",
            "1s",
            "--quiet",
        ]),
        vec![(
            "ACS_CONNECTION_STRING".into(),
            paid.connection_string().expose(),
        )],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        paid.handler().counters().total,
        0,
        "load reached the connection string's endpoint: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("load: target http://127.0.0.1:") && first.contains("embedded double"),
        "{first}"
    );
    assert!(
        !first.contains(&paid.uri().replace("http://", "")),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_knowable_before_work_are_reported_before_any_work() {
    let dir = folder("early");
    let unwritable = dir.join("missing/r.json").display().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["--users", "0"], "--users must be at least 1"),
        (
            &["--test-plan", "10,30s;x"],
            "--test-plan \"10,30s;x\": step 2",
        ),
        (&["--test-plan", "0,10s"], "no step starts a user"),
        (
            &["--co-mitigation", "bogus"],
            "--co-mitigation must be one of",
        ),
        (&["--report-file", &unwritable], "cannot write"),
        (&["--report-file", "r.pdf"], ".html, .json or .md"),
        (
            &["--increase-rate", "abc"],
            "--increase-rate must be a number",
        ),
    ];
    for (extra, message) in cases {
        let mut args = strings(&["load", "--run-time", "1s", "--quiet"]);
        args.extend(strings(extra));
        let out = run(args, vec![]).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {t}");
        // The double never started: nothing names a target.
        assert!(out.stdout.is_empty(), "{extra:?}: work started: {t}");
        assert_eq!(t.matches(message).count(), 1, "{extra:?}: {t}");
        let errors = t
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("error"))
            .count();
        assert_eq!(errors, 1, "{extra:?}: said twice: {t}");
        for goose_words in ["configuration.", "feature", "GooseError"] {
            assert!(!t.contains(goose_words), "{extra:?}: {t}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `load` against a double that says when its single user sends its second
/// hang-up (goose runs its users), with reports in `dir`; returns the child and the
/// double.
async fn start_long_run(dir: &Path) -> (tokio::process::Child, RunningServer) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let hangups = std::sync::atomic::AtomicU64::new(0);
    let server = Server::bind(DoubleConfig::default().tamper(move |req, _resp| {
        if req.path_and_query.ends_with("/Hangup")
            && hangups.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1
        {
            let _ = tx.try_send(());
        }
    }))
    .await
    .expect("bind the double")
    .spawn();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args([
        "load",
        "--host",
        server.uri(),
        "--scenario",
        "call-creation",
        "--users",
        "1",
        "--run-time",
        "60s",
        "--seed",
        "7",
        "--quiet",
    ]);
    for ext in ["html", "json", "md"] {
        cmd.arg("--report-file")
            .arg(dir.join(format!("report.{ext}")));
    }
    cmd.arg("--connection-string")
        .arg(server.connection_string().expose())
        .env_remove("ACS_CONNECTION_STRING")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the load started in time")
        .expect("the load started");
    (child, server)
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_run_like_ctrl_c_with_whole_reports() {
    let dir = folder("sigterm");
    // What an earlier run left: a passing thresholds file and a truncated report.
    std::fs::write(
        dir.join("report.thresholds.json"),
        r#"{"passed": true, "interrupted": false}"#,
    )
    .unwrap();
    std::fs::write(dir.join("report.json"), "").unwrap();
    let (child, _server) = start_long_run(&dir).await;
    let pid = child.id().unwrap();
    let sent = Instant::now();
    signal(pid, "TERM");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the run stops well before its 60 s")
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    for ext in ["html", "json", "md"] {
        assert!(
            whole(&dir.join(format!("report.{ext}"))),
            "report.{ext} not whole: {}",
            text(&out)
        );
    }
    let beside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.thresholds.json")).unwrap())
            .unwrap();
    assert_eq!(beside["interrupted"], true, "{beside}");
    assert_eq!(beside["passed"], false, "{beside}");
    assert_eq!(beside["state"], "interrupted", "{beside}");
    assert!(!beside["thresholds"].as_array().unwrap().is_empty());
    assert!(staging_left(pid).is_empty(), "{:?}", staging_left(pid));
    eprintln!("SIGTERM to exit: {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_leaving_whole_files_or_none() {
    let dir = folder("twice");
    std::fs::write(dir.join("report.thresholds.json"), r#"{"passed": true}"#).unwrap();
    let (child, _server) = start_long_run(&dir).await;
    let pid = child.id().unwrap();
    signal(pid, "INT");
    signal(pid, "TERM");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the run stops")
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for ext in ["html", "json", "md"] {
        let p = dir.join(format!("report.{ext}"));
        assert!(
            !p.exists() || whole(&p),
            "report.{ext} is cut: {}",
            text(&out)
        );
    }
    let beside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.thresholds.json")).unwrap())
            .unwrap();
    assert_eq!(beside["passed"], false, "{beside}");
    assert_eq!(beside["interrupted"], true, "{beside}");
    assert!(staging_left(pid).is_empty(), "{:?}", staging_left(pid));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly_with_the_exit_code_it_would_have_had() {
    for (threshold, code) in [("POST /calls:p95<30s", 0), ("POST /calls:max<1us", 1)] {
        let out = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(BIN)
                .args([
                    "load",
                    "--scenario",
                    "call-creation",
                    "--users",
                    "2",
                    "--increase-rate",
                    "100",
                    "--run-time",
                    "1s",
                    "--threshold",
                    threshold,
                ])
                .env_remove("ACS_CONNECTION_STRING")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // `| head -1`: read one line, then close the pipe.
            let mut first = String::new();
            {
                let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
                reader.read_line(&mut first).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            (first, out)
        })
        .await
        .unwrap();
        let (first, out) = out;
        assert!(first.starts_with("load: target"), "{first}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{threshold}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A scenario of one user that creates a call, thinks `think`, and hangs up; its run
/// time (1 s) is far shorter than a replay of many bodies takes.
fn slow_scenario(dir: &Path) -> PathBuf {
    let path = dir.join("slow.toml");
    std::fs::write(
        &path,
        "users = 1\nincrease_rate = 100\nrun_time = \"1s\"\n\n[[scenario]]\nname = \"slow\"\nsteps = [\n  { endpoint = \"create-call\", think = \"100ms\" },\n  { endpoint = \"hangup\" },\n]\n",
    )
    .unwrap();
    path
}

fn bodies_file(dir: &Path, count: usize) -> PathBuf {
    use acs_harness::generate::{sample, valid};
    let lines: Vec<String> = sample(&valid(Endpoint::CreateCall), 11, count)
        .iter()
        .map(|g| g.to_json_line())
        .collect();
    let path = dir.join(format!("bodies-{count}.jsonl"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_lasts_until_every_body_was_sent() {
    let dir = folder("replay");
    let server = double().await;
    let scenario = slow_scenario(&dir);
    let bodies = bodies_file(&dir, 25);
    let out = run(
        vec![
            "load".into(),
            "--host".into(),
            server.uri().into(),
            "--connection-string".into(),
            server.connection_string().expose(),
            "--scenario".into(),
            scenario.display().to_string(),
            "--bodies".into(),
            bodies.display().to_string(),
            "--quiet".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = server.handler().counters();
    assert_eq!(
        c.by_endpoint[&Endpoint::CreateCall].requests,
        25,
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cut_by_its_time_limit_fails_saying_how_many_were_not_sent() {
    let dir = folder("replay-limit");
    let server = double().await;
    let scenario = slow_scenario(&dir);
    let bodies = bodies_file(&dir, 60);
    let report = dir.join("r.json");
    let out = run(
        vec![
            "load".into(),
            "--host".into(),
            server.uri().into(),
            "--connection-string".into(),
            server.connection_string().expose(),
            "--scenario".into(),
            scenario.display().to_string(),
            "--bodies".into(),
            bodies.display().to_string(),
            "--run-time".into(),
            "1s".into(),
            "--report-file".into(),
            report.display().to_string(),
            "--quiet".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let sent = server.handler().counters().by_endpoint[&Endpoint::CreateCall].requests as usize;
    assert!(sent > 0 && sent < 60, "{sent}: {t}");
    assert!(
        t.contains(&format!("{} of 60 bodies", 60 - sent)) && t.contains("were not sent"),
        "{sent} sent: {t}"
    );
    let beside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("r.thresholds.json")).unwrap()).unwrap();
    assert_eq!(beside["passed"], false, "{beside}");
    assert_eq!(beside["bodiesNotSent"], 60 - sent, "{beside}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thresholds_table_is_printed_once_in_the_harness_syntax() {
    let out = run(
        strings(&[
            "load",
            "--scenario",
            "call-creation",
            "--users",
            "2",
            "--increase-rate",
            "100",
            "--run-time",
            "1s",
            "--threshold",
            "POST /calls:max<1us",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert_eq!(t.matches("POST /calls:max<1us").count(), 1, "{t}");
    assert_eq!(t.matches("max<1us for POST /calls").count(), 0, "{t}");
    assert!(!t.contains("THRESHOLDS"), "goose's own table: {t}");
    // goose's other tables are still there.
    assert!(t.contains("PER REQUEST METRICS"), "{t}");
}
