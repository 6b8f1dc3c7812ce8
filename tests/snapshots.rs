//! Pinned snapshots of every endpoint's success and error responses.
//!
//! Without `ACS_HARNESS_TARGET` the suite runs against a fresh double per test and pins
//! full responses and shapes in `snapshots/`; with `ACS_HARNESS_TARGET` and
//! `ACS_CONNECTION_STRING` it runs the same cases against that target and pins shapes
//! in `snapshots/live/`. Review changes with `cargo insta test --review`.

mod common;

use common::snapshots::{Failure, Target, suite};

#[tokio::test]
async fn create_call() -> Result<(), Failure> {
    suite::create_call(&Target::from_env().await?).await
}

#[tokio::test]
async fn hangup() -> Result<(), Failure> {
    suite::hangup(&Target::from_env().await?).await
}

#[tokio::test]
async fn play_audio() -> Result<(), Failure> {
    suite::play_audio(&Target::from_env().await?).await
}

#[tokio::test]
async fn cancel_media_processing() -> Result<(), Failure> {
    suite::cancel_media_processing(&Target::from_env().await?).await
}

#[tokio::test]
async fn invite_participants() -> Result<(), Failure> {
    suite::invite_participants(&Target::from_env().await?).await
}

#[tokio::test]
async fn remove_participant() -> Result<(), Failure> {
    suite::remove_participant(&Target::from_env().await?).await
}

#[tokio::test]
async fn routing() -> Result<(), Failure> {
    suite::routing(&Target::from_env().await?).await
}

/// Event shapes: only against a live target with a callback URL (see
/// `common/snapshots/events.rs`); skipped, saying so, otherwise.
#[tokio::test]
async fn events() -> Result<(), Failure> {
    common::snapshots::events::events(&Target::from_env().await?).await
}

// Live mode's bad input: what a user sees with a wrong environment or a broken target.

use common::snapshots::LiveConfig;
use std::collections::HashMap;

const TEST_CONNECTION: &str = "endpoint=https://res.example/;accesskey=c25hcHNob3Qgc3VpdGUga2V5";

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn never_written() -> std::path::PathBuf {
    std::env::temp_dir().join("acs-harness-snapshots-never-written")
}

#[test]
fn live_mode_only_with_a_target() {
    assert!(LiveConfig::from_vars(vars(&[])).unwrap().is_none());
    let empty = vars(&[("ACS_HARNESS_TARGET", " "), ("ACS_CONNECTION_STRING", "x")]);
    assert!(LiveConfig::from_vars(empty).unwrap().is_none());
    let cfg = LiveConfig::from_vars(vars(&[
        ("ACS_HARNESS_TARGET", "https://res.example"),
        ("ACS_CONNECTION_STRING", TEST_CONNECTION),
        ("ACS_HARNESS_PREFIX", "/calling"),
        ("ACS_HARNESS_API_VERSION", "2021-04-15-preview1"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(cfg.target, "https://res.example");
    assert_eq!(cfg.prefix, "/calling");
    assert_eq!(cfg.api_version.as_deref(), Some("2021-04-15-preview1"));
    assert!(!format!("{cfg:?}").contains("c25hcHNob3Qgc3VpdGUga2V5"));
}

#[test]
fn live_mode_configuration_errors_name_the_target_not_the_key() {
    let e = LiveConfig::from_vars(vars(&[("ACS_HARNESS_TARGET", "https://u:pw@res.example/")]))
        .unwrap_err()
        .0;
    assert!(e.starts_with("live target https://res.example/:"), "{e}");
    assert!(e.contains("ACS_CONNECTION_STRING is not"), "{e}");
    assert!(!e.contains("pw"), "{e}");

    let e = LiveConfig::from_vars(vars(&[
        ("ACS_HARNESS_TARGET", "https://res.example"),
        (
            "ACS_CONNECTION_STRING",
            "endpoint=https://res.example/;accesskey=!!secret!!",
        ),
    ]))
    .unwrap_err()
    .0;
    assert!(e.contains("ACS_CONNECTION_STRING"), "{e}");
    assert!(!e.contains("secret"), "{e}");

    let cfg = LiveConfig::from_vars(vars(&[
        ("ACS_HARNESS_TARGET", "ftp://res.example"),
        ("ACS_CONNECTION_STRING", TEST_CONNECTION),
    ]))
    .unwrap()
    .unwrap();
    let e = Target::live(&cfg, never_written()).err().unwrap().0;
    assert!(
        e.starts_with("live target ftp://res.example: invalid target"),
        "{e}"
    );
}

#[tokio::test]
async fn unreachable_live_target_fails_naming_target_and_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = LiveConfig::from_vars(vars(&[
        ("ACS_HARNESS_TARGET", &format!("http://{addr}")),
        ("ACS_CONNECTION_STRING", TEST_CONNECTION),
    ]))
    .unwrap()
    .unwrap();
    let t = Target::live(&cfg, never_written()).unwrap();
    let e = suite::play_audio(&t).await.unwrap_err().0;
    assert!(
        e.starts_with(&format!(
            "live target http://{addr}: POST /calls: cannot connect"
        )),
        "{e}"
    );
    assert!(
        !e.contains("c25hcHNob3Qgc3VpdGUga2V5") && !e.contains("Signature"),
        "{e}"
    );
    assert!(!never_written().exists());
}

#[tokio::test]
async fn garbage_answering_live_target_fails_naming_target_request_and_answer() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("<html><body>It works!</body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let cfg = LiveConfig::from_vars(vars(&[
        ("ACS_HARNESS_TARGET", &server.uri()),
        ("ACS_CONNECTION_STRING", TEST_CONNECTION),
    ]))
    .unwrap()
    .unwrap();
    let t = Target::live(&cfg, never_written()).unwrap();
    for result in [suite::create_call(&t).await, suite::routing(&t).await] {
        let e = result.unwrap_err().0;
        assert!(
            e.starts_with(&format!(
                "live target {}: POST /calls: expected 200",
                server.uri()
            )),
            "{e}"
        );
        assert!(
            e.contains("got 200 text/html, 35 bytes: \"<html><body>It works!</body></html>\""),
            "{e}"
        );
    }
    assert!(!never_written().exists());
}

#[test]
fn event_shapes_need_both_callback_variables() {
    use common::snapshots::events::{CallbackConfig, event_name};
    assert!(CallbackConfig::from_vars(vars(&[])).unwrap().is_none());
    let e = CallbackConfig::from_vars(vars(&[(
        "ACS_HARNESS_CALLBACK_URL",
        "https://t.example/h?secret=s3cr3t",
    )]))
    .unwrap_err()
    .0;
    assert!(e.contains("ACS_HARNESS_CALLBACK_LISTEN"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
    let e = CallbackConfig::from_vars(vars(&[("ACS_HARNESS_CALLBACK_URL", "ftp://t.example")]))
        .unwrap_err()
        .0;
    assert!(e.contains("not an http(s) URL"), "{e}");
    let c = CallbackConfig::from_vars(vars(&[
        ("ACS_HARNESS_CALLBACK_URL", "https://t.example/h"),
        ("ACS_HARNESS_CALLBACK_LISTEN", "0.0.0.0:8081"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(c.listen.port(), 8081);
    let state = serde_json::json!({"eventType": "Microsoft.Communication.CallLegStateChanged", "data": {"CallState": "Terminated"}});
    assert_eq!(event_name(&state), "events.CallLegStateChanged.Terminated");
    let play =
        serde_json::json!({"eventType": "Microsoft.Communication.PlayAudioResult", "data": {}});
    assert_eq!(event_name(&play), "events.PlayAudioResult");
}
