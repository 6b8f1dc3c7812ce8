//! `acs-harness generate` as a user runs it: the built binary, fixed seeds.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn same_seed_same_output() {
    let args = ["generate", "create-call", "--count", "20", "--seed", "42"];
    let (a, b) = (run(&args), run(&args));
    assert!(a.status.success());
    assert_eq!(stdout(&a), stdout(&b));
    assert_eq!(stdout(&a).lines().count(), 20);
    assert!(String::from_utf8_lossy(&a.stderr).contains("seed: 42"));
    let other = run(&["generate", "create-call", "--count", "20", "--seed", "43"]);
    assert_ne!(stdout(&a), stdout(&other));
}

#[test]
fn lines_have_the_documented_shape() {
    let o = run(&["generate", "play-audio", "--count", "5", "--seed", "1"]);
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["endpoint"], "play-audio");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/calls/{callId}/PlayAudio");
        assert_eq!(v["params"], serde_json::json!({}));
        assert!(v["body"].as_str().unwrap().contains("audioFileUri"));
        assert!(v.get("violation").is_none());
    }
    let o = run(&[
        "generate",
        "remove-participant",
        "--count",
        "3",
        "--seed",
        "1",
    ]);
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["path"], "/calls/{callId}/participants/{participantId}");
        assert!(v["params"]["participantId"].is_string());
        assert!(v.get("body").is_none());
    }
}

#[test]
fn random_seed_is_printed() {
    let o = run(&["generate", "hangup", "--count", "1"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let seed = err
        .lines()
        .find_map(|l| l.strip_prefix("seed: "))
        .expect("seed on stderr");
    assert!(seed.trim().parse::<u64>().is_ok());
}

#[test]
fn unknown_endpoint_lists_names_and_exits_2() {
    let o = run(&["generate", "make-call"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for name in [
        "create-call",
        "hangup",
        "play-audio",
        "cancel-media-processing",
        "invite-participants",
        "remove-participant",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert!(o.stdout.is_empty());
}

#[test]
fn count_zero_prints_nothing() {
    let o = run(&["generate", "create-call", "--count", "0", "--seed", "5"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
}

#[test]
fn invalid_lines_carry_a_violation() {
    let o = run(&[
        "generate",
        "create-call",
        "--invalid",
        "--count",
        "50",
        "--seed",
        "9",
    ]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 50);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(!v["violation"].as_str().unwrap().is_empty(), "{line}");
    }
}

#[test]
fn remove_participant_has_no_invalid_requests() {
    let o = run(&["generate", "remove-participant", "--invalid", "--seed", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ignores its request body"));
}

#[test]
fn help_has_an_example() {
    let o = run(&["generate", "--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("Example:"));
    assert!(out.contains("acs-harness generate create-call"));
}

#[test]
fn closed_pipe_is_a_clean_exit() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args([
            "generate",
            "create-call",
            "--count",
            "200000",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}
