//! The double on its wiremock transport (and its handler directly): the contract's
//! order of checks, every wrong request of src/contract/CONTRACT.md, auth, state, options, bad input.

mod common;

use acs_harness::auth::{ConnectionString, Signer};
use acs_harness::contract::{Endpoint, validate_error_body, validate_response};
use acs_harness::double::{Double, DoubleConfig, DoubleRequest, DoubleResponse, Handler};
use common::{Client, Resp, create_body, invite_body, play_body};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

async fn start(config: DoubleConfig) -> (Double, Client) {
    let d = Double::start(config).await.unwrap();
    let c = Client::new(&d.uri(), &d.connection_string());
    (d, c)
}

#[tokio::test]
async fn lifecycle_follows_the_contract() {
    let (d, c) = start(DoubleConfig::default()).await;
    common::lifecycle(&c).await;
    let counts = d.handler().counters();
    assert_eq!(counts.by_endpoint[&Endpoint::CreateCall].success, 1);
    assert_eq!(counts.by_endpoint[&Endpoint::Hangup].success, 1);
    assert_eq!(counts.live_calls, 0);
    assert_eq!(counts.by_status.get(&500), None);
}

#[tokio::test]
async fn thousand_concurrent_creates_give_distinct_ids() {
    let (d, c) = start(DoubleConfig::default()).await;
    common::concurrent_creates(&c, 1000).await;
    assert_eq!(d.handler().counters().live_calls, 1000);
}

#[tokio::test]
async fn percent_encoded_participant_ids_keep_their_signature() {
    // wiremock and hyper must hand the double the path as sent (%2B, not +).
    let (d, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    c.post_json(
        &Endpoint::InviteParticipants.path(&call, None),
        &invite_body(),
    )
    .await;
    let path = Endpoint::RemoveParticipant.path(&call, Some("+14251001000"));
    assert!(path.contains("%2B14251001000"));
    let r = c.send("DELETE", &path, b"").await;
    assert_eq!(r.status, 202, "{}", r.message());
    assert_eq!(
        d.handler().participants(&call).unwrap(),
        vec!["8:acs:abc_def-raw", "teams-user-1"]
    );
}

// ---- authentication ------------------------------------------------------------

#[tokio::test]
async fn auth_cases_get_401_before_anything_else() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let body = serde_json::to_vec(&create_body()).unwrap();
    let now = SystemTime::now();
    let min16 = Duration::from_secs(16 * 60);
    let cases: Vec<(&str, Resp)> = vec![
        (
            "missing",
            c.send_with("POST", "/calls", &body, now, |p| p.remove("authorization"))
            .await,
        ),
        (
            "other scheme",
            c.send_with("POST", "/calls", &body, now, |p| {
                p.set("authorization", "Bearer eyJhbGciOi.x.y")
            })
            .await,
        ),
        (
            "bad signature",
            c.send_with("POST", "/calls", &body, now, |p| {
                p.set(
                    "authorization",
                    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                )
            })
            .await,
        ),
        (
            "body changed after signing",
            c.send_with("POST", "/calls", &body, now, |p| {
                p.body = serde_json::to_vec(&json!({"evil": true})).unwrap()
            })
            .await,
        ),
        (
            "16 minutes old",
            c.send_with("POST", "/calls", &body, now - min16, |_| {}).await,
        ),
        (
            "16 minutes ahead",
            c.send_with("POST", "/calls", &body, now + min16, |_| {}).await,
        ),
    ];
    for (name, r) in cases {
        let m = r.assert_error(401);
        assert!(!m.is_empty(), "{name}");
    }
    // An empty Authorization header is no better.
    let r = c
        .send_with("POST", "/calls", &body, now, |p| p.set("authorization", ""))
        .await;
    r.assert_error(401);
    // Unauthenticated requests learn nothing about routing or validation.
    for (m, p, b) in [
        ("GET", "/nowhere", &b""[..]),
        ("GET", "/calls", &b""[..]),
        ("POST", "/calls", &b"not json"[..]),
    ] {
        let r = c
            .send_with(m, p, b, now, |p| p.set("authorization", "Bearer x"))
            .await;
        r.assert_error(401);
        assert_eq!(r.allow, None);
    }
    // A different key is a bad signature too.
    let other: ConnectionString = format!("endpoint={}/;accesskey=b3RoZXIga2V5", c.base)
        .parse()
        .unwrap();
    let c2 = Client::new(&c.base, &other);
    c2.post_json("/calls", &create_body())
        .await
        .assert_error(401);
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/hmac-vectors.json")).unwrap()
}

fn vector_request(case: &Value) -> DoubleRequest {
    let s = |k: &str| case[k].as_str().unwrap();
    let url = url::Url::parse(s("url")).unwrap();
    let pq = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut r = DoubleRequest::new(s("method"), pq)
        .header("host", s("host"))
        .header("x-ms-date", s("x-ms-date"))
        .header("x-ms-content-sha256", s("x-ms-content-sha256"))
        .header("authorization", s("authorization"))
        .body(s("body").as_bytes().to_vec());
    if !s("body").is_empty() {
        r = r.header("content-type", "application/json");
    }
    r
}

#[test]
fn sdk_signed_requests_are_accepted_at_their_date() {
    let v = vectors();
    let cs: ConnectionString = v["connectionString"].as_str().unwrap().parse().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let date = httpdate::parse_http_date(case["x-ms-date"].as_str().unwrap()).unwrap();
        let url = case["url"].as_str().unwrap();
        let mut config = DoubleConfig::default()
            .access_key(cs.key.clone())
            .clock(date);
        if url.contains("/calling/") {
            config = config.prefix("/calling").api_version("2021-04-15-preview1");
        }
        let h = Handler::new(&config).unwrap();
        let req = vector_request(case);
        let r = h.handle(&req);
        match case["method"].as_str().unwrap() {
            // Authenticated and created.
            "POST" if url.ends_with("/calls") => assert_eq!(r.status, 200, "{url}"),
            // Authenticated, routed, validated: only the call `abc` is unknown.
            _ => {
                assert_eq!(r.status, 404, "{url}");
                assert!(
                    r.body_json().unwrap()["message"]
                        .as_str()
                        .unwrap()
                        .contains("call abc not found"),
                    "{url}"
                );
            }
        }
        // The same request 16 minutes later is stale.
        h.set_clock(Some(date + Duration::from_secs(16 * 60)));
        assert_eq!(h.handle(&req).status, 401, "{url}");
    }
}

#[tokio::test]
async fn sdk_vector_through_the_socket() {
    // The first vector signs host 127.0.0.1:8080; send it to our port with that Host.
    let v = vectors();
    let cs: ConnectionString = v["connectionString"].as_str().unwrap().parse().unwrap();
    let case = &v["cases"][0];
    let date = httpdate::parse_http_date(case["x-ms-date"].as_str().unwrap()).unwrap();
    let d = Double::start(
        DoubleConfig::default()
            .access_key(cs.key.clone())
            .clock(date),
    )
    .await
    .unwrap();
    let s = |k: &str| case[k].as_str().unwrap();
    let req = format!(
        "POST /calls HTTP/1.1\r\nhost: {}\r\nx-ms-date: {}\r\nx-ms-content-sha256: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        s("host"),
        s("x-ms-date"),
        s("x-ms-content-sha256"),
        s("authorization"),
        s("body").len(),
        s("body")
    );
    let r = common::raw(&d.address().to_string(), req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.message());
}

// ---- every wrong request of src/contract/CONTRACT.md's last table -------------------------------

#[tokio::test]
async fn wrong_bodies_get_400_naming_the_json_path() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = create_body();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "required missing",
            with(&|b| {
                b.as_object_mut().unwrap().remove("targets");
            }),
            "targets",
        ),
        (
            "required null",
            with(&|b| b["callbackUri"] = Value::Null),
            "callbackUri",
        ),
        (
            "wrong type",
            with(&|b| b["requestedModalities"] = json!("audio")),
            "requestedModalities",
        ),
        (
            "empty array",
            with(&|b| b["targets"] = json!([])),
            "targets",
        ),
        (
            "bad enum",
            with(&|b| b["requestedModalities"] = json!(["Audio"])),
            "requestedModalities[0]",
        ),
        (
            "bad E.164",
            with(
                &|b| b["targets"] = json!([{"phoneNumber": {"value": "+14251001000"}}, {"phoneNumber": {"value": "0042"}}]),
            ),
            "targets[1].phoneNumber.value",
        ),
        (
            "relative URI",
            with(&|b| b["callbackUri"] = json!("/events")),
            "callbackUri",
        ),
        (
            "duplicate",
            with(&|b| b["requestedCallEvents"] = json!(["dtmfReceived", "dtmfReceived"])),
            "requestedCallEvents",
        ),
        (
            "zero identifier kinds",
            with(&|b| b["source"] = json!({"rawId": "x"})),
            "source",
        ),
        (
            "two identifier kinds",
            with(&|b| b["targets"][0]["communicationUser"] = json!({"id": "8:acs:x"})),
            "targets[0]",
        ),
        (
            "alternate caller E.164",
            with(&|b| b["sourceAlternateIdentity"] = json!({"value": "123"})),
            "sourceAlternateIdentity.value",
        ),
    ];
    for (name, body, path) in cases {
        let r = c.post_json("/calls", &body).await;
        let m = r.assert_error(400);
        assert!(m.contains(path), "{name}: {m}");
    }
    // Other endpoints name their paths too.
    let r = c
        .post_json(
            &Endpoint::PlayAudio.path(&call, None),
            &json!({"audioFileUri": "media/x.wav"}),
        )
        .await;
    assert!(r.assert_error(400).contains("audioFileUri"));
    let r = c
        .post_json(
            &Endpoint::InviteParticipants.path(&call, None),
            &json!({"participants": [{"phoneNumber": {"value": "+1"}}]}),
        )
        .await;
    assert!(
        r.assert_error(400)
            .contains("participants[0].phoneNumber.value")
    );
    let r = c
        .post_json(
            &Endpoint::CancelMediaProcessing.path(&call, None),
            &json!({"operationContext": 5}),
        )
        .await;
    assert!(r.assert_error(400).contains("operationContext"));
}

#[tokio::test]
async fn non_json_bodies_and_content_types_get_400() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let good = serde_json::to_vec(&create_body()).unwrap();
    let now = SystemTime::now();
    let cases: Vec<(&str, Resp)> = vec![
        ("not JSON", c.send("POST", "/calls", b"{source: nope").await),
        ("not an object", c.send("POST", "/calls", b"[1,2]").await),
        (
            "not UTF-8",
            c.send("POST", "/calls", b"{\"subject\": \"\xff\xfe\"}")
                .await,
        ),
        ("empty body", c.send("POST", "/calls", b"").await),
        (
            "text/plain",
            c.send_with("POST", "/calls", &good, now, |p| {
                p.set("content-type", "text/plain")
            })
            .await,
        ),
    ];
    for (name, r) in cases {
        assert!(!r.assert_error(400).is_empty(), "{name}");
    }
    // No Content-Type at all on a body.
    let r = c
        .send_with("POST", "/calls", &good, now, |p| p.remove("content-type"))
        .await;
    assert!(r.assert_error(400).contains("Content-Type"));
    // Hang up accepts an empty body or {} but not other JSON.
    let call = c.create_call().await;
    c.send("POST", &Endpoint::Hangup.path(&call, None), b"[]")
        .await
        .assert_error(400);
    let r = c
        .send("POST", &Endpoint::Hangup.path(&call, None), b"{}")
        .await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn body_over_one_mib_gets_413() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let mut body = create_body();
    body["subject"] = json!("x".repeat(1024 * 1024));
    let r = c.post_json("/calls", &body).await;
    assert_eq!(r.json()["code"], "PayloadTooLarge");
    r.assert_error(413);
}

#[tokio::test]
async fn unknown_call_participant_and_path_get_404_wrong_method_405() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let never = uuid::Uuid::new_v4().to_string();
    let r = c
        .post_json(&Endpoint::PlayAudio.path(&never, None), &play_body(None))
        .await;
    assert!(r.assert_error(404).contains(&never));
    let r = c
        .send("POST", &Endpoint::Hangup.path("not-a-uuid", None), b"")
        .await;
    r.assert_error(404);
    let call = c.create_call().await;
    let r = c
        .send(
            "DELETE",
            &Endpoint::RemoveParticipant.path(&call, Some("+19999999999")),
            b"",
        )
        .await;
    assert!(r.assert_error(404).contains("participant"));
    for p in [
        "/",
        "/call",
        "/calls/",
        "/Calls",
        &format!("/calls/{call}/hangup"),
        "/calls/x/y/z/w",
    ] {
        c.send("POST", p, b"").await.assert_error(404);
    }
    // 405 after authentication, with Allow.
    let r = c.send("GET", "/calls", b"").await;
    r.assert_error(405);
    assert_eq!(r.allow.as_deref(), Some("POST"));
    let r = c
        .send("TRACE", &Endpoint::Hangup.path(&call, None), b"")
        .await;
    r.assert_error(405);
    let r = c
        .send(
            "POST",
            &Endpoint::RemoveParticipant.path(&call, Some("p")),
            b"{}",
        )
        .await;
    assert_eq!(r.allow.as_deref(), Some("DELETE"));
    r.assert_error(405);
    // HEAD: 405 without a body.
    let r = c.send("HEAD", "/calls", b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.allow.as_deref(), Some("POST"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn faults_are_500s_with_the_error_body_and_reproducible_by_seed() {
    async fn pattern(seed: u64) -> (Vec<u16>, u64) {
        let (d, c) = start(DoubleConfig::default().fail_rate(0.3).seed(seed)).await;
        let mut out = Vec::new();
        for _ in 0..60 {
            let r = c.post_json("/calls", &create_body()).await;
            if r.status == 500 {
                assert!(r.assert_error(500).contains("injected"));
            }
            out.push(r.status);
        }
        // Bad requests are never chosen: they stay 4xx.
        for _ in 0..20 {
            c.send("POST", "/calls", b"nope").await.assert_error(400);
        }
        (out, d.handler().counters().faults_injected)
    }
    let (a, fa) = pattern(42).await;
    let (b, fb) = pattern(42).await;
    let (other, _) = pattern(7).await;
    assert_eq!(a, b);
    assert_eq!(fa, fb);
    assert_ne!(a, other);
    let fails = a.iter().filter(|s| **s == 500).count();
    assert!((5..=35).contains(&fails), "{fails} of 60 at rate 0.3");
    assert!(a.iter().all(|s| *s == 200 || *s == 500));
}

#[tokio::test]
async fn a_failed_request_changes_no_state() {
    let (d, c) = start(DoubleConfig::default().fail_rate(1.0)).await;
    c.post_json("/calls", &create_body())
        .await
        .assert_error(500);
    let counts = d.handler().counters();
    assert_eq!((counts.live_calls, counts.faults_injected), (0, 1));
}

#[tokio::test]
async fn latency_is_applied() {
    let (_d, c) = start(DoubleConfig::default().latency(Duration::from_millis(150))).await;
    let t = std::time::Instant::now();
    c.create_call().await;
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn api_version_is_required_when_configured() {
    let (_d, c) = start(DoubleConfig::default().api_version("2021-04-15-preview1")).await;
    let m = c
        .post_json("/calls", &create_body())
        .await
        .assert_error(400);
    assert!(m.contains("api-version"), "{m}");
    let wrong = c.clone().with_query("?api-version=2020-01-01");
    assert!(
        wrong
            .post_json("/calls", &create_body())
            .await
            .assert_error(400)
            .contains("api-version")
    );
    let right = c.clone().with_query("?x=1&api-version=2021-04-15-preview1");
    let call = right.create_call().await;
    let r = right
        .send("POST", &Endpoint::Hangup.path(&call, None), b"")
        .await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn prefix_is_required_when_configured() {
    let (_d, c) = start(DoubleConfig::default().prefix("/calling/")).await;
    c.post_json("/calls", &create_body())
        .await
        .assert_error(404);
    c.clone()
        .with_prefix("/callingx")
        .post_json("/calls", &create_body())
        .await
        .assert_error(404);
    let p = c.clone().with_prefix("/calling");
    common::lifecycle(&p).await;
}

#[tokio::test]
async fn max_calls_evicts_the_oldest() {
    let (d, c) = start(DoubleConfig::default().max_calls(3)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(c.create_call().await);
    }
    let counts = d.handler().counters();
    assert_eq!((counts.live_calls, counts.calls_evicted), (3, 2));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(d.handler().has_call(id), i >= 2, "{i}");
    }
    // A hung-up call frees its slot: nothing is evicted for the next create.
    let r = c
        .send("POST", &Endpoint::Hangup.path(&ids[4], None), b"")
        .await;
    assert_eq!(r.status, 202);
    c.create_call().await;
    assert_eq!(d.handler().counters().calls_evicted, 2);
    assert!(d.handler().has_call(&ids[2]));
}

#[tokio::test]
async fn participants_per_call_are_bounded() {
    let (d, c) = start(DoubleConfig::default().max_participants(2)).await;
    let call = c.create_call().await;
    let r = c
        .post_json(
            &Endpoint::InviteParticipants.path(&call, None),
            &invite_body(),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        d.handler().participants(&call).unwrap(),
        vec!["8:acs:abc_def-raw", "teams-user-1"]
    );
}

#[tokio::test]
async fn tamper_hook_builds_broken_doubles() {
    let config = DoubleConfig::default().tamper(|_req, resp: &mut DoubleResponse| {
        if resp.status == 202 && !resp.body.is_empty() {
            let mut v = resp.body_json().unwrap();
            v.as_object_mut().unwrap().remove("operationContext");
            *resp = DoubleResponse::json(200, &v);
        }
    });
    let (d, c) = start(config).await;
    let call = c.create_call().await;
    let r = c
        .post_json(
            &Endpoint::PlayAudio.path(&call, None),
            &play_body(Some("ctx")),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = validate_response(
        Endpoint::PlayAudio,
        200,
        r.content_type.as_deref(),
        &r.body,
        Some("ctx"),
    );
    assert!(v.is_err());
    let r = c
        .post_json(
            &Endpoint::PlayAudio.path(&call, None),
            &play_body(Some("ctx")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(d.handler().counters().by_status.get(&200), Some(&3));
}

#[tokio::test]
async fn recording_is_off_unless_asked() {
    let (d, c) = start(DoubleConfig::default()).await;
    c.create_call().await;
    assert!(d.received_requests().await.is_none());
    let (d, c) = start(DoubleConfig::default().record_requests(true)).await;
    c.create_call().await;
    assert_eq!(d.received_requests().await.unwrap().len(), 1);
}

// ---- bad input ---------------------------------------------------------------------

#[tokio::test]
async fn hostile_bodies_get_4xx() {
    let (_d, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{{\"source\":{}}}", deep);
    let huge_number = r#"{"source": 1e999999, "targets": []}"#.to_string();
    let long_number = format!("{{\"subject\": {}}}", "9".repeat(500_000));
    let dup = r#"{"targets": [], "targets": "x", "callbackUri": "https://a.example"}"#.to_string();
    let ten_mb = vec![b'{'; 10 * 1024 * 1024];
    for (name, body, status) in [
        ("0 bytes", Vec::new(), 400),
        ("10 MB", ten_mb, 413),
        ("invalid UTF-8", vec![0xff, 0xfe, 0xfd], 400),
        ("deep array", deep.into_bytes(), 400),
        ("deep object", deep_obj.into_bytes(), 400),
        ("huge number", huge_number.into_bytes(), 400),
        ("long number", long_number.into_bytes(), 400),
        ("duplicate keys", dup.into_bytes(), 400),
    ] {
        let r = c.send("POST", "/calls", &body).await;
        r.assert_error(status);
        let _ = name;
        let r = c
            .send("POST", &Endpoint::PlayAudio.path(&call, None), &body)
            .await;
        assert!((400..500).contains(&r.status), "{name}");
    }
    // Duplicate keys: the last one wins, the body is otherwise judged normally.
    let mut dup_ok = serde_json::to_string(&create_body()).unwrap();
    dup_ok.insert_str(1, r#""subject": 5,"#);
    let r = c.send("POST", "/calls", dup_ok.as_bytes()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn dot_segments_and_encoded_slashes_get_4xx() {
    let (d, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let addr = d.address().to_string();
    for pq in [
        format!("/calls/{call}/../{call}/Hangup"),
        "/calls/..".to_string(),
        format!("/calls/%2E%2E/{call}/Hangup"),
        format!("/calls/{call}%2FHangup"),
        format!("/calls/{call}%2F..%2F/Hangup"),
        "/calls%2F".to_string(),
    ] {
        let r = common::raw(&addr, &common::raw_signed(&c, "POST", &pq, b"")).await;
        assert!((400..500).contains(&r.status), "{pq}: {}", r.status);
        validate_error_body(r.content_type.as_deref(), &r.body).unwrap();
    }
    assert!(
        d.handler().has_call(&call),
        "no path trick hung the call up"
    );
}

// ---- property tests: arbitrary input never panics and gets a 4xx error body --------

fn arb_request(signed: bool) -> impl Strategy<Value = DoubleRequest> {
    let method = prop_oneof![
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
        ".{0,8}",
    ];
    let path = prop_oneof![
        Just("/calls".to_string()),
        "/calls/[a-z0-9%./-]{0,40}/(Hangup|PlayAudio|CancelMediaProcessing|participants)",
        "/calls/[^/]{0,20}/participants/.{0,20}",
        "/[ -~]{0,60}",
        ".{0,60}",
    ];
    let header = (
        prop_oneof![
            Just("content-type".to_string()),
            Just("authorization".to_string()),
            Just("x-ms-date".to_string()),
            Just("x-ms-content-sha256".to_string()),
            Just("host".to_string()),
            "[a-z-]{1,12}",
        ],
        proptest::collection::vec(any::<u8>(), 0..60),
    );
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        Just(serde_json::to_vec(&create_body()).unwrap()),
        Just(serde_json::to_vec(&play_body(Some("x"))).unwrap()),
        "\\{.{0,80}\\}".prop_map(String::into_bytes),
    ];
    (
        method,
        path,
        proptest::collection::vec(header, 0..6),
        body,
        any::<bool>(),
    )
        .prop_map(move |(m, p, headers, body, json_ct)| {
            let mut r = DoubleRequest::new(m.clone(), p.clone()).body(body.clone());
            for (n, v) in headers {
                r = r.header(&n, v);
            }
            if signed {
                let key = acs_harness::double::dev_key();
                let s = Signer::new(&key).sign(&m, &p, "127.0.0.1:1", &body, SystemTime::now());
                for n in ["host", "x-ms-date", "x-ms-content-sha256", "authorization"] {
                    r.headers.remove(n);
                }
                r = r
                    .header("host", "127.0.0.1:1")
                    .header("x-ms-date", s.date)
                    .header("x-ms-content-sha256", s.content_sha256)
                    .header("authorization", s.authorization);
                if json_ct {
                    r.headers.remove("content-type");
                    r = r.header("content-type", "application/json");
                }
            }
            r
        })
}

fn assert_4xx_error(req: &DoubleRequest, r: &DoubleResponse) {
    assert!(
        (400..500).contains(&r.status),
        "{} {:?} got {}",
        req.method,
        req.path_and_query,
        r.status
    );
    if req.method.eq_ignore_ascii_case("HEAD") {
        assert!(r.body.is_empty());
    } else {
        validate_error_body(r.header("content-type"), &r.body).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_unsigned_requests_get_401(req in arb_request(false)) {
        let h = Handler::new(&DoubleConfig::default()).unwrap();
        let r = h.handle(&req);
        // Without Host (RFC 9110) nothing can be authenticated: 400, saying so.
        let want = if req.headers.contains_key("host") { 401 } else { 400 };
        prop_assert_eq!(r.status, want);
        if want == 400 && req.method != "HEAD" {
            prop_assert!(r.body_json().unwrap()["message"].as_str().unwrap().contains("Host"));
        }
        assert_4xx_error(&req, &r);
    }

    #[test]
    fn arbitrary_signed_requests_get_4xx_with_error_body(req in arb_request(true)) {
        // No call exists, so nothing can succeed except a create; creates are checked
        // by the validator, which this asserts too.
        let h = Handler::new(&DoubleConfig::default()).unwrap();
        let r = h.handle(&req);
        if r.status == 200 {
            prop_assert!(req.path_and_query == "/calls");
            validate_response(Endpoint::CreateCall, 200, r.header("content-type"), &r.body, None).unwrap();
        } else {
            assert_4xx_error(&req, &r);
        }
    }
}

#[tokio::test]
async fn arbitrary_requests_through_the_socket() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let (d, _c) = start(DoubleConfig::default()).await;
    let http = reqwest::Client::new();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = arb_request(false);
    let mut sent = 0;
    for _ in 0..100 {
        let req = strategy.new_tree(&mut runner).unwrap().current();
        let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
            continue;
        };
        if !req.path_and_query.starts_with('/')
            || req.path_and_query.contains(|c: char| !c.is_ascii_graphic())
        {
            continue;
        }
        let mut rb = http.request(method, format!("{}{}", d.uri(), req.path_and_query));
        for (n, v) in &req.headers {
            if n != "host" {
                rb = rb.header(n, v);
            }
        }
        let Ok(r) = rb.body(req.body.to_vec()).send().await else {
            continue;
        };
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = r.bytes().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{} {}: {status}",
            req.method,
            req.path_and_query
        );
        if req.method != "HEAD" {
            validate_error_body(ct.as_deref(), &body).unwrap();
        }
        sent += 1;
    }
    assert!(sent >= 30, "only {sent} requests were sendable");
}

#[tokio::test]
async fn targets_are_participants() {
    let (d, c) = start(DoubleConfig::default()).await;
    let mut body = create_body();
    body["targets"] = json!([
        {"phoneNumber": {"value": "+14251001000"}},
        {"communicationUser": {"id": "8:acs:target_user"}, "rawId": "8:acs:target_user-raw"},
        {"communicationUser": {"id": "8:acs:second_target"}},
        {"microsoftTeamsUser": {"userId": "teams-target", "cloud": "public"}}
    ]);
    let r = c.post_json("/calls", &body).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let call = r.json()["callLegId"].as_str().unwrap().to_string();
    let ids = [
        "+14251001000",
        "8:acs:target_user-raw",
        "8:acs:second_target",
        "teams-target",
    ];
    assert_eq!(d.handler().participants(&call).unwrap(), ids);
    // Invited participants come after the targets; a target invited again stays one.
    let r = c
        .post_json(
            &Endpoint::InviteParticipants.path(&call, None),
            &json!({"participants": [{"phoneNumber": {"value": "+14251001000"}}, {"phoneNumber": {"value": "+14251009999"}}]}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(d.handler().participants(&call).unwrap().len(), 5);
    // With a rawId the communicationUser id is not the participant id.
    let path = Endpoint::RemoveParticipant.path(&call, Some("8:acs:target_user"));
    c.send("DELETE", &path, b"").await.assert_error(404);
    for p in ids {
        let path = Endpoint::RemoveParticipant.path(&call, Some(p));
        let r = c.send("DELETE", &path, b"").await;
        assert_eq!(r.status, 202, "{p}: {}", r.message());
        assert!(
            c.send("DELETE", &path, b"")
                .await
                .assert_error(404)
                .contains("participant")
        );
    }
    assert_eq!(d.handler().participants(&call).unwrap(), ["+14251009999"]);
}

/// An invitation of `n` participants with ids of `len` characters, distinct per `tag`.
fn long_ids(tag: &str, n: usize, len: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| {
            let prefix = format!("8:acs:{tag}-{i}-");
            json!({"communicationUser": {"id": format!("{prefix}{}", "x".repeat(len - prefix.len()))}})
        })
        .collect();
    json!({ "participants": list })
}

#[tokio::test]
async fn state_is_bounded_in_bytes_and_evicted_calls_say_so() {
    const CAP: usize = 64 * 1024;
    let (d, c) = start(DoubleConfig::default().max_state_bytes(CAP)).await;
    let mut calls = Vec::new();
    // Each call takes about 20 KB: the fourth evicts the first.
    for tag in ["a", "b", "c", "d"] {
        let call = c.create_call().await;
        let r = c
            .post_json(
                &Endpoint::InviteParticipants.path(&call, None),
                &long_ids(tag, 20, 950),
            )
            .await;
        assert_eq!(r.status, 202);
        calls.push(call);
        let counts = d.handler().counters();
        assert!(counts.state_bytes <= CAP as u64, "{counts:?}");
    }
    let counts = d.handler().counters();
    assert!(counts.calls_evicted >= 1, "{counts:?}");
    assert!(!d.handler().has_call(&calls[0]));
    assert!(d.handler().has_call(&calls[3]), "the newest call is kept");
    assert!(
        counts.state_bytes >= 20 * 950,
        "an estimate, not zero: {counts:?}"
    );

    // The evicted call's 404 says why; a never-created call's does not.
    for e in [Endpoint::PlayAudio, Endpoint::Hangup] {
        let r = c
            .post_json(&e.path(&calls[0], None), &play_body(None))
            .await;
        let message = r.assert_error(404);
        assert!(
            message.contains("evicted") && message.contains("--max-state-bytes"),
            "{message}"
        );
    }
    let never = uuid::Uuid::new_v4().to_string();
    let r = c
        .post_json(&Endpoint::PlayAudio.path(&never, None), &play_body(None))
        .await;
    let message = r.assert_error(404);
    assert!(!message.contains("evicted"), "{message}");

    // One call alone larger than the bound keeps its newest participants only.
    let big = c.create_call().await;
    for tag in ["e", "f", "g", "h"] {
        let r = c
            .post_json(
                &Endpoint::InviteParticipants.path(&big, None),
                &long_ids(tag, 30, 950),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let counts = d.handler().counters();
    assert!(counts.state_bytes <= CAP as u64, "{counts:?}");
    let kept = d.handler().participants(&big).unwrap();
    assert!(!kept.is_empty() && kept.len() < 120, "{}", kept.len());
    assert!(kept.last().unwrap().starts_with("8:acs:h-29-"));
    // Hanging up gives the bytes back.
    let r = c
        .send("POST", &Endpoint::Hangup.path(&big, None), b"")
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(d.handler().counters().live_calls, 0);
    assert_eq!(d.handler().counters().state_bytes, 0);
}

#[test]
fn latency_beyond_an_hour_is_rejected_and_an_hour_is_not() {
    let absurd = Duration::from_secs(5_000_000_000_000_000 * 3600);
    for config in [
        DoubleConfig::default().latency(absurd),
        DoubleConfig::default().latency_jitter(absurd),
        DoubleConfig::default().latency(Duration::from_secs(3601)),
    ] {
        let e = Handler::new(&config).unwrap_err().to_string();
        assert!(e.contains("latency") && e.contains("1h"), "{e}");
    }
    // At the bound, latency and jitter add up without overflow.
    let h = Handler::new(
        &DoubleConfig::default()
            .latency(Duration::from_secs(3600))
            .latency_jitter(Duration::from_secs(3600)),
    )
    .unwrap();
    let r = h.handle(&DoubleRequest::new("GET", "/calls"));
    assert!(r.delay >= Duration::from_secs(3600) && r.delay <= Duration::from_secs(7200));
    assert!(Handler::new(&DoubleConfig::default().max_state_bytes(100)).is_err());
}

#[test]
fn a_request_without_host_gets_400_saying_authentication_was_not_attempted() {
    let h = Handler::new(&DoubleConfig::default()).unwrap();
    let key = acs_harness::double::dev_key();
    let body = serde_json::to_vec(&create_body()).unwrap();
    let s = Signer::new(&key).sign("POST", "/calls", "127.0.0.1:1", &body, SystemTime::now());
    let req = DoubleRequest::new("POST", "/calls")
        .header("x-ms-date", &s.date)
        .header("x-ms-content-sha256", &s.content_sha256)
        .header("authorization", &s.authorization)
        .header("content-type", "application/json")
        .body(body);
    let r = h.handle(&req);
    assert_eq!(r.status, 400);
    let message = r.body_json().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("Host") && message.contains("authentication"),
        "{message}"
    );
    validate_error_body(r.header("content-type"), &r.body).unwrap();
    // With the Host it was signed for, the same request is created.
    assert_eq!(h.handle(&req.header("host", "127.0.0.1:1")).status, 200);
}
