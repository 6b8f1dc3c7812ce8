//! Threshold rules: `[REQUEST:]METRIC<VALUE`, e.g. `POST /calls:p95<300ms` or
//! `error-rate<1%`, translated into goose's own threshold rules so goose judges them,
//! keeps their results in its metrics and writes them into its reports.
//!
//! The harness only adds its syntax (request name first, as the issue asks), checks the
//! request name against the six endpoints and the awaited events (`EVENT PlayAudioResult`,
//! see [`super::events`]) before any load starts, and prints the table.

use super::events::EventKind;
use crate::contract::Endpoint;
use goose::threshold::{Threshold, ThresholdResult};
use std::fmt::Write as _;

/// A rule that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold {rule:?}: {reason}")]
pub struct ThresholdError {
    /// The rule as given.
    pub rule: String,
    /// Why it is refused.
    pub reason: String,
}

/// A checked rule: the text as given and the goose rule it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// As the user wrote it.
    pub text: String,
    /// In goose's syntax (`p95<300ms for POST /calls`).
    pub goose: String,
}

impl Rule {
    /// Parses `[REQUEST:]METRIC OP VALUE` (METRIC: `pNN`, `avg`, `max`, `error-rate`,
    /// `rps`; OP: `<`, `<=`, `>`, `>=`), or goose's own `METRIC OP VALUE for REQUEST`.
    pub fn parse(text: &str) -> Result<Rule, ThresholdError> {
        let text = text.trim();
        let fail = |reason: String| ThresholdError {
            rule: text.to_string(),
            reason,
        };
        let (request, rule) = if let Some((rule, request)) = text.split_once(" for ") {
            (Some(request.trim()), rule.trim())
        } else if let Some((request, rule)) = text.rsplit_once(':') {
            (Some(request.trim()), rule.trim())
        } else {
            (None, text)
        };
        let request = match request {
            Some(name) => match (super::attack::endpoint_named(name), EventKind::named(name)) {
                (Some(e), _) => Some(super::attack::request_key(e)),
                (None, Some(k)) => Some(k.request_key()),
                (None, None) => {
                    let names: Vec<String> =
                        Endpoint::ALL.iter().map(|e| e.request_name()).collect();
                    return Err(fail(format!(
                        "no request is named {name:?}; requests are named {} (or by their endpoint name, e.g. play-audio), awaited events {}",
                        names.join(", "),
                        EventKind::request_names()
                    )));
                }
            },
            None => None,
        };
        let goose = match request {
            Some(r) => format!("{rule} for {r}"),
            None => rule.to_string(),
        };
        goose.parse::<Threshold>().map_err(|e| {
            let reason = match e {
                goose::GooseError::InvalidOption { detail, .. } => detail
                    .split_once(": ")
                    .map(|(_, d)| d.to_string())
                    .unwrap_or(detail),
                other => other.to_string(),
            };
            fail(format!(
                "{reason} (syntax: [REQUEST:]METRIC<VALUE, e.g. 'POST /calls:p95<300ms', 'error-rate<1%', 'rps>=100')"
            ))
        })?;
        Ok(Rule {
            text: text.to_string(),
            goose,
        })
    }
}

/// The table printed after the run: each rule, what was measured, PASS or FAIL.
pub fn table(rules: &[Rule], results: &[ThresholdResult]) -> String {
    let rows: Vec<(String, String, &str)> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            // goose keeps results in the order rules were given.
            let result = results.get(i).filter(|r| r.rule == rule.goose);
            match result {
                Some(r) => (
                    rule.text.clone(),
                    r.observed.clone(),
                    if r.passed { "PASS" } else { "FAIL" },
                ),
                None => (rule.text.clone(), "not judged".into(), "FAIL"),
            }
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).chain([9]).max().unwrap_or(9);
    let w1 = rows.iter().map(|r| r.1.len()).chain([8]).max().unwrap_or(8);
    let mut out = String::new();
    let _ = writeln!(out, "{:<w0$}  {:<w1$}  result", "threshold", "measured");
    let _ = writeln!(out, "{}  {}  ------", "-".repeat(w0), "-".repeat(w1));
    for (rule, measured, verdict) in rows {
        let _ = writeln!(out, "{rule:<w0$}  {measured:<w1$}  {verdict}");
    }
    out
}

/// How a run ended, as the thresholds file states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Written when the load starts: a file still saying so belongs to a run that was
    /// killed outright, and passes nothing.
    Running,
    /// The run stopped before any load (unreachable target, rejected key).
    NotStarted,
    /// Ctrl-C or SIGTERM cut the run short.
    Interrupted,
    /// The run ended by itself (run time over, every replayed body sent, or a threshold
    /// abort).
    Finished,
}

impl RunState {
    fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::NotStarted => "not-started",
            RunState::Interrupted => "interrupted",
            RunState::Finished => "finished",
        }
    }
}

/// A `--bodies` replay that ended before every body was sent: how many were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    /// Bodies never sent.
    pub unsent: usize,
    /// Bodies the file holds.
    pub total: usize,
}

/// The thresholds and their outcome as JSON, written beside each JSON report (goose's
/// report holds them too, in goose's syntax, under `raw_metrics.thresholds`). `passed`
/// is true only for a finished run whose every rule held and, in a replay, whose every
/// body was sent: thresholds that held over a partial run pass nothing.
pub fn json(
    rules: &[Rule],
    results: &[ThresholdResult],
    state: RunState,
    unsent: Option<Unsent>,
) -> String {
    let rows: Vec<serde_json::Value> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let result = results.get(i).filter(|r| r.rule == rule.goose);
            serde_json::json!({
                "threshold": rule.text,
                "gooseRule": rule.goose,
                "measured": result.map(|r| r.observed.as_str()),
                "value": result.and_then(|r| r.value),
                "passed": result.is_some_and(|r| r.passed),
            })
        })
        .collect();
    let all = rows
        .iter()
        .all(|r| r["passed"] == serde_json::Value::Bool(true));
    let mut doc = serde_json::json!({
        "passed": all && state == RunState::Finished && unsent.is_none(),
        "state": state.name(),
        "interrupted": state != RunState::Finished,
        "thresholds": rows,
    });
    if let Some(u) = unsent {
        doc["bodiesNotSent"] = u.unsent.into();
        doc["bodiesInFile"] = u.total.into();
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    crate::redact::scrub(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_syntax_becomes_goose_syntax() {
        let r = Rule::parse("POST /calls:p95<300ms").unwrap();
        assert_eq!(r.goose, "p95<300ms for POST /calls");
        // The contract's name, the endpoint name and goose's key of a request are one.
        for name in [
            "POST /calls/{callId}/PlayAudio",
            "play-audio",
            "POST play-audio",
        ] {
            let r = Rule::parse(&format!(" {name} : max<=2s ")).unwrap();
            assert_eq!(r.goose, "max<=2s for POST play-audio");
        }
        // An awaited event's latency is a request of its own.
        for name in [
            "EVENT PlayAudioResult",
            "event PlayAudioResult",
            "EVENT Microsoft.Communication.PlayAudioResult",
        ] {
            let r = Rule::parse(&format!("{name}:p95<1500ms")).unwrap();
            assert_eq!(r.goose, "p95<1500ms for EVENT PlayAudioResult");
        }
        assert_eq!(
            Rule::parse("error-rate<1% for EVENT CallLegStateChanged")
                .unwrap()
                .goose,
            "error-rate<1% for EVENT CallLegStateChanged"
        );
        assert_eq!(Rule::parse("error-rate<1%").unwrap().goose, "error-rate<1%");
        assert_eq!(Rule::parse("rps>=100").unwrap().goose, "rps>=100");
        assert_eq!(
            Rule::parse("p50<10ms for POST /calls").unwrap().goose,
            "p50<10ms for POST /calls"
        );
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for bad in [
            "",
            "p95",
            "p95<",
            "p100<1s",
            "POST /call:p95<1s",
            "GET /calls:p95<1s",
            "EVENT DtmfReceived:p95<1s",
            "PlayAudioResult:p95<1s",
            "p95<fast",
            "error-rate<150%",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
        let e = Rule::parse("POST /call:p95<1s").unwrap_err();
        assert!(e.reason.contains("POST /calls/{callId}/PlayAudio"), "{e}");
        assert!(e.reason.contains("EVENT PlayAudioResult"), "{e}");
    }

    #[test]
    fn table_shows_rule_measure_and_verdict() {
        let rules = vec![Rule::parse("POST /calls:p95<300ms").unwrap()];
        let results = vec![ThresholdResult {
            rule: rules[0].goose.clone(),
            observed: "12ms".into(),
            value: Some(12.0),
            passed: true,
            aborted: false,
        }];
        let t = table(&rules, &results);
        assert!(t.contains("POST /calls:p95<300ms  12ms"), "{t}");
        assert!(t.contains("PASS"));
        assert!(table(&rules, &[]).contains("FAIL"));
    }

    #[test]
    fn thresholds_file_passes_only_a_finished_complete_run() {
        let rules = vec![Rule::parse("POST /calls:p95<300ms").unwrap()];
        let results = vec![ThresholdResult {
            rule: rules[0].goose.clone(),
            observed: "12ms".into(),
            value: Some(12.0),
            passed: true,
            aborted: false,
        }];
        let parse = |t: String| serde_json::from_str::<serde_json::Value>(&t).unwrap();
        let done = parse(json(&rules, &results, RunState::Finished, None));
        assert_eq!(done["passed"], true);
        assert_eq!(done["interrupted"], false);
        for state in [
            RunState::Running,
            RunState::NotStarted,
            RunState::Interrupted,
        ] {
            let v = parse(json(&rules, &results, state, None));
            assert_eq!(v["passed"], false, "{v}");
            assert_eq!(v["interrupted"], true, "{v}");
        }
        let short = parse(json(
            &rules,
            &results,
            RunState::Finished,
            Some(Unsent {
                unsent: 3,
                total: 10,
            }),
        ));
        assert_eq!(short["passed"], false);
        assert_eq!(short["bodiesNotSent"], 3);
    }
}
