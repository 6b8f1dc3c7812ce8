//! `acs-harness load` end to end: short bounded runs of the binary against the double
//! started here, whose counters show what was sent.

use acs_harness::contract::Endpoint;
use acs_harness::double::DoubleConfig;
use acs_harness::double::{RunningServer, Server};
use std::process::{Command, Output};

#[path = "common/process.rs"]
mod process;
use process::text;

async fn double() -> RunningServer {
    Server::bind(DoubleConfig::default())
        .await
        .expect("bind the double")
        .spawn()
}

/// Runs `acs-harness load` against `server` with a short, small load; `extra` options
/// replace the defaults of the same name.
async fn load(server: &RunningServer, extra: &[&str]) -> Output {
    let defaults = [
        ("--users", "3"),
        ("--increase-rate", "100"),
        ("--run-time", "1s"),
        ("--seed", "7"),
    ];
    let mut args: Vec<String> = vec![
        "load".into(),
        "--host".into(),
        server.uri().into(),
        "--quiet".into(),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args.push("--connection-string".into());
    args.push(server.connection_string().expose());
    args.extend(extra.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_acs-harness"))
            .args(&args)
            .output()
            .expect("run acs-harness")
    })
    .await
    .expect("join")
}

fn successes(server: &RunningServer, e: Endpoint) -> u64 {
    server.handler().counters().by_endpoint[&e].success
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shipped_scenario_calls_each_of_its_endpoints() {
    for (scenario, endpoints) in [
        (
            "call-creation",
            vec![Endpoint::CreateCall, Endpoint::Hangup],
        ),
        // play-audio awaits the double's events: tests/load_events.rs runs it.
        (
            "play-audio-think",
            vec![
                Endpoint::CreateCall,
                Endpoint::PlayAudio,
                Endpoint::CancelMediaProcessing,
                Endpoint::Hangup,
            ],
        ),
        ("mixed", Endpoint::ALL.to_vec()),
    ] {
        let server = double().await;
        let users = if scenario == "mixed" { "6" } else { "3" };
        let out = load(
            &server,
            &["--scenario", scenario, "--users", users, "--run-time", "2s"],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{scenario}: {}", text(&out));
        for e in endpoints {
            assert!(
                successes(&server, e) > 0,
                "{scenario}: no successful {e}: {}",
                text(&out)
            );
        }
        let c = server.handler().counters();
        assert_eq!(
            c.by_status.get(&401),
            None,
            "{scenario}: signatures rejected"
        );
        assert!(text(&out).contains("Thresholds"), "{}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_decide_the_exit_status() {
    let server = double().await;
    let pass = load(
        &server,
        &[
            "--scenario",
            "call-creation",
            "--threshold",
            "POST /calls:p95<10s",
        ],
    )
    .await;
    assert_eq!(pass.status.code(), Some(0), "{}", text(&pass));
    let fail = load(
        &server,
        &[
            "--scenario",
            "call-creation",
            "--threshold",
            "POST /calls:max<1us",
        ],
    )
    .await;
    assert_eq!(fail.status.code(), Some(1), "{}", text(&fail));
    let t = text(&fail);
    assert!(
        t.contains("POST /calls:max<1us") && t.contains("FAIL"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scenarios_and_options_do_not_start() {
    let server = double().await;
    let dir = std::env::temp_dir().join(format!("acs-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "[[scenario]]\nname = \"a\"\nweight = 0\nsteps = [{ endpoint = \"create-call\" }]\n",
            ":3: ",
            "at least 1",
        ),
        (
            "[[scenario]]\nname = \"a\"\nsteps = [\n  { endpoint = \"create-cal\" },\n]\n",
            ":4: ",
            "unknown endpoint",
        ),
        (
            "users = 1\nramp = 2\n[[scenario]]\nname = \"a\"\nsteps = [{ endpoint = \"create-call\" }]\n",
            ":2: ",
            "ramp",
        ),
        (
            "[[scenario]]\nname = \"a\"\nsteps = [{ endpoint = \"create-call\", think = \"soon\" }]\n",
            ":3: ",
            "bad duration",
        ),
    ];
    for (i, (toml, line, reason)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = load(&server, &["--scenario", path.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(
            t.contains(&format!("bad{i}.toml{line}")) && t.contains(reason),
            "{t}"
        );
    }
    let out = load(&server, &["--threshold", "POST /calls:p95<<3"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        server.handler().counters().total,
        0,
        "no load before the checks"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_is_exit_2() {
    let server = double().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_acs-harness"))
            .args([
                "load",
                "--host",
                "http://127.0.0.1:1",
                "--run-time",
                "1s",
                "--quiet",
            ])
            .arg("--connection-string")
            .arg(server.connection_string().expose())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_file_is_replayed_exactly() {
    use acs_harness::generate::{sample, valid};
    let server = double().await;
    let lines: Vec<String> = sample(&valid(Endpoint::CreateCall), 11, 7)
        .iter()
        .map(|g| g.to_json_line())
        .collect();
    let path = std::env::temp_dir().join(format!("acs-load-bodies-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = load(
        &server,
        &[
            "--scenario",
            "call-creation",
            "--run-time",
            "10s",
            "--bodies",
            path.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = server.handler().counters();
    assert_eq!(
        c.by_endpoint[&Endpoint::CreateCall].requests,
        7,
        "{}",
        text(&out)
    );
    assert_eq!(c.by_endpoint[&Endpoint::CreateCall].success, 7);
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failure_and_a_rejected_key_are_exit_2_before_any_load() {
    let server = double().await;
    let https = server.uri().replacen("http://", "https://", 1);
    let wrong_key = server
        .connection_string()
        .expose()
        .split("accesskey=")
        .next()
        .unwrap()
        .to_string()
        + "accesskey=d3Jvbmcga2V5";
    for (host, cs, reason) in [
        (
            https.as_str(),
            server.connection_string().expose(),
            "cannot reach",
        ),
        (
            server.uri(),
            wrong_key,
            "rejected a signed request with 401",
        ),
    ] {
        let (host, cs) = (host.to_string(), cs.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_acs-harness"))
                .args(["load", "--host", &host, "--run-time", "1s", "--quiet"])
                .arg("--connection-string")
                .arg(cs)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains(reason), "{t}");
        assert!(
            !t.contains("d3Jvbmcga2V5"),
            "the key must not be printed: {t}"
        );
    }
    let c = server.handler().counters();
    assert_eq!(c.by_endpoint[&Endpoint::CreateCall].requests, 0, "no load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_writes_every_report_and_exits_2() {
    // The double says when the single user sends its second hang-up: goose runs its
    // users (its Ctrl-C handler is installed) and has the first hang-up's answer, so
    // every threshold of the scenario has samples and holds.
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
    let dir = std::env::temp_dir().join(format!("acs-load-ctrl-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = |ext: &str| dir.join(format!("report.{ext}"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"));
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
        cmd.arg("--report-file").arg(report(ext));
    }
    cmd.arg("--connection-string")
        .arg(server.connection_string().expose())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    rx.recv().await.expect("the load started");
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the run stops well before its 60 s")
        .unwrap();
    // Nothing breached, but a partial run passes nothing.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    for ext in ["html", "json", "md"] {
        let len = std::fs::metadata(report(ext)).map_or(0, |m| m.len());
        assert!(len > 0, "report.{ext} not written: {}", text(&out));
    }
    let beside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.thresholds.json")).unwrap())
            .unwrap();
    assert_eq!(beside["interrupted"], true, "{beside}");
    assert!(!beside["thresholds"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
