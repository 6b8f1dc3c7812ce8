//! The generators against the validator: valid requests pass, invalid ones break exactly
//! the one rule their label names. Fixed seeds keep every run the same.

use acs_harness::contract::{Endpoint, Rule, validate_request};
use acs_harness::generate::{
    Defect, DefectKind, GenerateError, GeneratedRequest, defect_classes, invalid, invalid_of,
    sample, valid,
};
use std::collections::BTreeSet;

const CASES: usize = 256;

fn check_valid(r: &GeneratedRequest) {
    let body = r.body.as_deref().unwrap_or_default();
    if let Err(v) = validate_request(r.endpoint, r.content_type.as_deref(), body) {
        panic!("valid request rejected: {v:?}\n{}", r.to_json_line());
    }
}

fn check_invalid(r: &GeneratedRequest) {
    let defect = r.defect.as_ref().expect("invalid requests carry a defect");
    let body = r.body.as_deref().unwrap_or_default();
    let got: Vec<(Rule, String)> =
        match validate_request(r.endpoint, r.content_type.as_deref(), body) {
            Ok(_) => panic!("invalid request accepted: {}", r.to_json_line()),
            Err(v) => v.into_iter().map(|v| (v.rule, v.path)).collect(),
        };
    assert_eq!(got, vec![defect.expected()], "{}", r.to_json_line());
}

#[test]
fn valid_requests_pass_the_validator() {
    for (i, e) in Endpoint::ALL.into_iter().enumerate() {
        for r in sample(&valid(e), 1000 + i as u64, CASES) {
            assert_eq!(r.endpoint, e);
            assert!(r.defect.is_none());
            check_valid(&r);
        }
    }
}

#[test]
fn invalid_requests_break_exactly_their_rule() {
    for (i, e) in Endpoint::ALL.into_iter().enumerate() {
        let Ok(s) = invalid(e) else {
            assert_eq!(e, Endpoint::RemoveParticipant);
            continue;
        };
        for r in sample(&s, 2000 + i as u64, CASES) {
            check_invalid(&r);
        }
    }
}

#[test]
fn every_defect_class_of_every_endpoint() {
    for e in Endpoint::ALL {
        for class in defect_classes(e) {
            let s = invalid_of(e, &class).unwrap();
            for r in sample(&s, 3000, 24) {
                let d = r.defect.as_ref().unwrap();
                assert_eq!(d.kind, class.kind, "{class}");
                check_invalid(&r);
            }
        }
    }
}

#[test]
fn classes_cover_the_required_defects() {
    let labels = |e| -> BTreeSet<String> {
        defect_classes(e)
            .into_iter()
            .map(|c| c.to_string())
            .collect()
    };
    let create = labels(Endpoint::CreateCall);
    for want in [
        "missing-required(targets)",
        "null-required(callbackUri)",
        "wrong-type(requestedModalities)",
        "empty-array(targets)",
        "duplicate-enum-item(requestedModalities)",
        "unknown-enum-value(requestedModalities[*])",
        "unknown-enum-value(targets[*].microsoftTeamsUser.cloud)",
        "bad-e164(targets[*].phoneNumber.value)",
        "bad-e164(sourceAlternateIdentity.value)",
        "identifier-no-kind(source)",
        "identifier-two-kinds(targets[*])",
        "relative-uri(callbackUri)",
        "not-uri(callbackUri)",
        "wrong-type(subject)",
        "not-json",
        "not-object-array",
        "not-object-string",
        "not-utf8",
        "wrong-content-type",
    ] {
        assert!(create.contains(want), "create-call lacks {want}");
    }
    let play = labels(Endpoint::PlayAudio);
    for want in [
        "not-uri(audioFileUri)",
        "relative-uri(audioFileUri)",
        "wrong-type(loop)",
        "wrong-type(resourceId)",
    ] {
        assert!(play.contains(want), "play-audio lacks {want}");
    }
    assert!(labels(Endpoint::InviteParticipants).contains("bad-e164(alternateCallerId.value)"));
    assert_eq!(
        labels(Endpoint::Hangup),
        BTreeSet::from(
            [
                "not-json",
                "not-object-array",
                "not-object-string",
                "not-utf8",
                "wrong-content-type"
            ]
            .map(String::from)
        )
    );
    assert!(defect_classes(Endpoint::RemoveParticipant).is_empty());
    assert_eq!(
        invalid(Endpoint::RemoveParticipant).err(),
        Some(GenerateError::NoInvalidBodies(Endpoint::RemoveParticipant))
    );
}

#[test]
fn same_seed_same_sample() {
    for e in Endpoint::ALL {
        assert_eq!(sample(&valid(e), 7, 50), sample(&valid(e), 7, 50));
        assert_ne!(sample(&valid(e), 7, 50), sample(&valid(e), 8, 50));
    }
    let s = invalid(Endpoint::CreateCall).unwrap();
    assert_eq!(sample(&s, 42, 50), sample(&s, 42, 50));
}

#[test]
fn json_lines_round_trip() {
    for e in Endpoint::ALL {
        let mut all = sample(&valid(e), 11, 64);
        if let Ok(s) = invalid(e) {
            all.extend(sample(&s, 12, 128));
        }
        for r in all {
            let line = r.to_json_line();
            assert!(!line.contains('\n'));
            let back = GeneratedRequest::from_json_line(&line).unwrap();
            assert_eq!(back, r, "{line}");
        }
    }
}

#[test]
fn json_line_shape() {
    let r = &sample(&valid(Endpoint::RemoveParticipant), 1, 1)[0];
    let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    assert_eq!(v["method"], "DELETE");
    assert_eq!(v["path"], "/calls/{callId}/participants/{participantId}");
    assert!(v["params"]["participantId"].is_string());
    assert!(v.get("body").is_none() && v.get("contentType").is_none());

    let utf8 = invalid_of(
        Endpoint::PlayAudio,
        &defect_classes(Endpoint::PlayAudio)
            .into_iter()
            .find(|c| c.kind == DefectKind::NotUtf8)
            .unwrap(),
    )
    .unwrap();
    let r = &sample(&utf8, 1, 1)[0];
    let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    assert!(v.get("body").is_none());
    assert!(v["bodyBase64"].is_string());
    assert_eq!(v["violation"], "not-utf8");

    assert!(GeneratedRequest::from_json_line("{}").is_err());
    assert!("bad-e164".parse::<Defect>().is_err());
    assert!("nope(x)".parse::<Defect>().is_err());
    assert_eq!(
        "not-json".parse::<Defect>().unwrap().expected(),
        (Rule::NotJson, String::new())
    );
}

#[test]
fn valid_requests_look_like_traffic() {
    let lines: Vec<String> = sample(&valid(Endpoint::CreateCall), 5, 400)
        .iter()
        .map(|r| String::from_utf8(r.body.clone().unwrap()).unwrap())
        .collect();
    let all = lines.join("\n");
    for needle in [
        "\"communicationUser\"",
        "\"phoneNumber\"",
        "\"microsoftTeamsUser\"",
        "\"cloud\"",
        "\"isAnonymous\"",
        "\"rawId\"",
        "\"subject\"",
        "\"sourceAlternateIdentity\"",
        "\"requestedCallEvents\":[]",
        "ü",
        "8:acs:",
    ] {
        assert!(
            all.contains(needle),
            "no {needle} in 400 create-call bodies"
        );
    }
    assert!(lines.iter().any(|l| !l.contains("\"subject\"")));
}

#[test]
fn operation_context_is_read_from_the_body() {
    let found = sample(&valid(Endpoint::PlayAudio), 3, 100)
        .iter()
        .filter_map(GeneratedRequest::operation_context)
        .count();
    assert!(found > 10);
    assert_eq!(
        sample(&valid(Endpoint::Hangup), 3, 10)[0].operation_context(),
        None
    );
}

#[test]
fn valid_bodies_shrink_to_simple_ones() {
    use proptest::test_runner::{Config, TestError, TestRunner};
    let config = Config {
        cases: 256,
        // Unused parts of a choice shrink too (see values.rs), so allow more steps.
        max_shrink_iters: 20_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, acs_harness::generate::seeded_rng(77));
    // A property that fails on three or more targets: the shrunk counterexample should
    // be the smallest body that still has three.
    let result = runner.run(&valid(Endpoint::CreateCall), |r| {
        let v: serde_json::Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        proptest::prop_assert!(v["targets"].as_array().unwrap().len() < 3);
        Ok(())
    });
    let Err(TestError::Fail(_, minimal)) = result else {
        panic!("expected a failure, got {result:?}");
    };
    let v: serde_json::Value = serde_json::from_slice(minimal.body.as_deref().unwrap()).unwrap();
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{v}");
    for t in targets {
        assert!(
            t.get("communicationUser").is_some() && t.get("rawId").is_none(),
            "{v}"
        );
    }
    for gone in ["subject", "sourceAlternateIdentity"] {
        assert!(v.get(gone).is_none(), "{v}");
    }
    assert_eq!(v["requestedCallEvents"], serde_json::json!([]), "{v}");
    assert_eq!(minimal.content_type.as_deref(), Some("application/json"));
}

/// The array a large body of `e` is built around, or its longest string.
fn largest_part(e: Endpoint, v: &serde_json::Value) -> (usize, usize) {
    let key = if e == Endpoint::CreateCall {
        "targets"
    } else {
        "participants"
    };
    let items = v[key].as_array().map_or(0, Vec::len);
    let text = v
        .as_object()
        .unwrap()
        .values()
        .filter_map(|x| x.as_str())
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    (items, text)
}

#[test]
fn large_requests_pass_the_validator_at_every_size() {
    use acs_harness::contract::MAX_BODY_BYTES;
    use acs_harness::generate::{Size, sizes, valid_large};
    for e in Endpoint::ALL {
        for &size in sizes(e) {
            let s = valid_large(e, size).unwrap();
            for r in sample(&s, 31, 2) {
                check_valid(&r);
                let body = r.body.as_deref().unwrap();
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                let (items, text) = largest_part(e, &v);
                match size {
                    Size::Dozens => assert!((6..100).contains(&items), "{e} {size}: {items}"),
                    Size::Hundreds => assert!((100..1000).contains(&items), "{e} {size}: {items}"),
                    Size::NearLimit => {
                        assert!(body.len() <= MAX_BODY_BYTES, "{e}: {}", body.len());
                        assert!(body.len() > MAX_BODY_BYTES - 2048, "{e}: {}", body.len());
                    }
                    Size::LongText => assert!(text >= 1000, "{e} {size}: {text}"),
                }
                if size == Size::NearLimit
                    && matches!(e, Endpoint::CreateCall | Endpoint::InviteParticipants)
                {
                    assert!(
                        items > 3000,
                        "{e}: a near-limit body of many elements, got {items}"
                    );
                }
            }
        }
        assert_eq!(
            valid_large(e, Size::Dozens).is_some(),
            matches!(e, Endpoint::CreateCall | Endpoint::InviteParticipants)
        );
    }
    assert!(sizes(Endpoint::Hangup).is_empty() && sizes(Endpoint::RemoveParticipant).is_empty());
}

#[test]
fn large_arrays_shrink_to_the_size_that_fails() {
    use acs_harness::generate::{Size, valid_large};
    use proptest::test_runner::{Config, TestError, TestRunner};
    let config = Config {
        cases: 4,
        max_shrink_iters: 120,
        failure_persistence: None,
        ..Config::default()
    };
    // A property that fails beyond 50 targets: binary search on the size, not one
    // attempt per element, finds exactly 51 well within the iteration budget.
    for size in [Size::Hundreds, Size::NearLimit] {
        let mut runner =
            TestRunner::new_with_rng(config.clone(), acs_harness::generate::seeded_rng(5));
        let attempts = std::cell::Cell::new(0);
        let found_at = std::cell::Cell::new(None);
        let s = valid_large(Endpoint::CreateCall, size).unwrap();
        let result = runner.run(&s, |r| {
            attempts.set(attempts.get() + 1);
            let v: serde_json::Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
            let n = v["targets"].as_array().unwrap().len();
            if n == 51 && found_at.get().is_none() {
                found_at.set(Some(attempts.get()));
            }
            proptest::prop_assert!(n <= 50);
            Ok(())
        });
        let Err(TestError::Fail(_, minimal)) = result else {
            panic!("expected a failure, got {result:?}");
        };
        let v: serde_json::Value =
            serde_json::from_slice(minimal.body.as_deref().unwrap()).unwrap();
        assert_eq!(v["targets"].as_array().unwrap().len(), 51, "{size}");
        let found_at = found_at.get().unwrap();
        assert!(
            found_at < 60,
            "{size}: 51 targets after {found_at} attempts"
        );
    }
}
