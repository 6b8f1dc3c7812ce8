//! `acs-harness contract` as CI runs it: exit codes, the JUnit and JSON files, and
//! no secret anywhere in the output.

use acs_harness::double::{Double, DoubleConfig};
use quick_xml::events::Event;
use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::text;

const BIN: &str = env!("CARGO_BIN_EXE_acs-harness");

async fn contract(args: &[&str], env: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("contract")
        .args(args)
        .env_remove("ACS_CONNECTION_STRING")
        .env("NO_COLOR", "1");
    if let Some(cs) = env {
        cmd.env("ACS_CONNECTION_STRING", cs);
    }
    cmd.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the gate finished in time")
        .expect("the binary ran")
}

/// Test cases of a JUnit file: (suite, case) → failure message, if any.
fn parse_junit(xml: &str) -> BTreeMap<(String, String), Option<String>> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = BTreeMap::new();
    let (mut suite, mut case) = (String::new(), String::new());
    let attr = |e: &quick_xml::events::BytesStart, name: &str| -> String {
        e.try_get_attribute(name)
            .unwrap()
            .map(|a| {
                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .unwrap()
                    .into_owned()
            })
            .unwrap_or_default()
    };
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                "testsuite" => suite = attr(&e, "name"),
                "testcase" => {
                    case = attr(&e, "name");
                    out.insert((suite.clone(), case.clone()), None);
                }
                "failure" => {
                    out.insert((suite.clone(), case.clone()), Some(attr(&e, "message")));
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_against_the_embedded_double_with_reports() {
    let dir = std::env::temp_dir().join(format!("acs-gate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("contract.xml");
    let json = dir.join("contract.json");
    let o = contract(
        &[
            "--cases",
            "3",
            "--seed",
            "11",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert!(stdout.contains("--seed 11"), "{stdout}");
    assert!(!stdout.contains("\x1b["), "no colour off a TTY");
    let cases = parse_junit(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(cases.len(), 6 * 8, "{cases:?}");
    assert!(cases.values().all(Option::is_none), "{cases:?}");
    assert!(cases.contains_key(&("remove-participant".to_string(), "lifecycle".to_string())));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["seed"], 11);
    assert_eq!(report["checks"].as_array().unwrap().len(), 8);
    assert_eq!(report["endpoints"][0]["checks"][0]["status"], "pass");
    assert!(report["requests"].as_u64().unwrap() > 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_target_exits_1_and_junit_names_the_check() {
    // Hang up answers 200 instead of 202.
    let double = Double::start(DoubleConfig::default().tamper(|req, resp| {
        if req.path_and_query.contains("/Hangup") && resp.status == 202 {
            resp.status = 200;
        }
    }))
    .await
    .unwrap();
    let cs = double.connection_string().expose();
    let key = double.connection_string().key.to_base64();
    let dir = std::env::temp_dir().join(format!("acs-gate-cli-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("contract.xml");
    let json = dir.join("contract.json");
    let target = double.uri();
    // The connection string comes from the environment.
    let o = contract(
        &[
            "--target",
            &target,
            "--cases",
            "3",
            "--seed",
            "5",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Some(&cs),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = parse_junit(&xml);
    let failed: Vec<&(String, String)> = cases
        .iter()
        .filter(|(_, f)| f.is_some())
        .map(|(k, _)| k)
        .collect();
    assert!(
        failed.contains(&&("hangup".to_string(), "positive_acceptance".to_string())),
        "{failed:?}"
    );
    assert!(
        failed.contains(&&("hangup".to_string(), "lifecycle".to_string())),
        "{failed:?}"
    );
    assert!(failed.iter().all(|(s, _)| s == "hangup"), "{failed:?}");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        stdout.contains("acs-harness send POST '/calls/"),
        "{stdout}"
    );
    // Never the key, in any output.
    let json_text = std::fs::read_to_string(&json).unwrap();
    for t in [
        &stdout,
        &String::from_utf8_lossy(&o.stderr).into_owned(),
        &xml,
        &json_text,
    ] {
        assert!(!t.contains(&key), "the access key leaked");
        assert!(!t.contains("accesskey="), "the connection string leaked");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_exits_2_within_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target = format!("http://{addr}");
    let started = Instant::now();
    let o = contract(
        &[
            "--target",
            &target,
            "--connection-string",
            &format!("endpoint={target}/;accesskey=a2V5"),
        ],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_connection_string_exits_2() {
    let o = contract(&["--target", "http://127.0.0.1:9"], None).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--connection-string") && stderr.contains("ACS_CONNECTION_STRING"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_exit_2() {
    for args in [
        &["--cases", "many"][..],
        &["--only", "dial"],
        &["--timeout", "soon"],
        &[
            "--target",
            "http://127.0.0.1:9",
            "--connection-string",
            "endpoint=http://x/",
        ],
        &[
            "--target",
            "ftp://x",
            "--connection-string",
            "endpoint=http://x/;accesskey=a2V5",
        ],
    ] {
        let o = contract(args, None).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_and_still_reports() {
    // A target that accepts connections and never answers; it says when the gate
    // has connected, so the interrupt comes while requests are in flight.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            let _ = tx.try_send(());
        }
    });
    let target = format!("http://{addr}");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["contract", "--target", &target, "--timeout", "30s"])
        .env(
            "ACS_CONNECTION_STRING",
            format!("endpoint={target}/;accesskey=a2V5"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    rx.recv().await.unwrap();
    let pid = child.id().unwrap().to_string();
    let started = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("stopped promptly")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing was found before the interrupt: exit 2, with the (empty) table printed.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains("positive_acceptance"), "{stdout}");
}
