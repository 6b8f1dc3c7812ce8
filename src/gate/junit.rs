//! The JUnit XML rendering of a [`Report`] (through `quick-junit`): one `testsuite` per
//! endpoint, one `testcase` per check, and an error in a `run` suite when the run did
//! not complete. Every text is scrubbed of secrets before it goes in.

use super::checks::Check;
use super::report::{Failure, Report, RunEnd};
use std::fmt::Write as _;

impl Report {
    /// The JUnit XML rendering: one `testsuite` per endpoint, one `testcase` per check
    /// (skipped when not run); a run that did not complete is an error in a `run` suite.
    pub fn to_junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
        // Secrets never reach the XML, whatever a failure's text holds; the two
        // noncharacters XML 1.0 forbids are replaced (quick-junit drops control ones).
        let clean = |s: &str| crate::redact::scrub(s).replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}");
        let mut junit = quick_junit::Report::new("acs-harness contract");
        junit.set_time(self.elapsed);
        // A run that did not complete is an error in its own suite, so no dashboard
        // shows an interrupted or cut run (all `<skipped>`) as green.
        if let Some(reason) = self.end_reason() {
            let kind = match self.end {
                RunEnd::Interrupted => "interrupted",
                RunEnd::DeadlineReached => "budget_reached",
                _ => "not_run",
            };
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(clean(&reason))
                .set_type(kind)
                .set_description(clean(&self.not_run().join("\n")));
            let mut case = TestCase::new("run completed", status);
            case.set_classname("contract.run");
            let mut suite = TestSuite::new("run");
            suite.add_test_case(case);
            junit.add_test_suite(suite);
        }
        for e in &self.endpoints {
            let mut suite = TestSuite::new(e.name());
            suite.add_properties([
                Property::new("seed", self.seed.to_string()),
                Property::new("replay", clean(&self.replay)),
            ]);
            for check in Check::ALL {
                let cell = self.cells.get(&(*e, check)).cloned().unwrap_or_default();
                let status = if cell.failed > 0 {
                    let message = match cell.failures.first() {
                        Some(f) => format!(
                            "{} of {} cases failed; first: {}: expected {}, got {}",
                            cell.failed,
                            cell.failed + cell.passed,
                            f.case,
                            f.expected,
                            f.got
                        ),
                        None => format!("{} cases failed", cell.failed),
                    };
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(clean(&message))
                        .set_type(check.name())
                        .set_description(clean(&failure_text(&cell.failures)));
                    status
                } else if cell.passed == 0 {
                    let mut status = TestCaseStatus::skipped();
                    match self.not_run_reasons.get(&check) {
                        Some(reason) => status.set_message(clean(&format!("not run: {reason}"))),
                        None => status.set_message("not run"),
                    };
                    status
                } else {
                    TestCaseStatus::success()
                };
                let mut case = TestCase::new(check.name(), status);
                case.set_classname(format!("contract.{}", e.name()))
                    .set_assertions((cell.passed + cell.failed) as usize);
                suite.add_test_case(case);
            }
            // quick-junit counts not-run cases as `disabled`; `skipped` is what CI
            // dashboards read, so it is given too.
            let skipped = suite.disabled.to_string();
            suite.extra.insert("skipped".into(), skipped.into());
            junit.add_test_suite(suite);
        }
        junit.to_string().unwrap_or_else(|e| {
            // Serialising into memory has no I/O to fail; should it fail all the same,
            // the file still says so rather than being empty.
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"acs-harness contract\" tests=\"0\" failures=\"0\" errors=\"1\"><!-- the report could not be rendered: {} --></testsuites>\n",
                e.to_string().replace("--", "- -")
            )
        })
    }
}

fn failure_text(failures: &[Failure]) -> String {
    let mut out = String::new();
    for f in failures {
        let _ = writeln!(out, "{}: expected {}; got {}", f.case, f.expected, f.got);
        for v in &f.violations {
            let _ = writeln!(
                out,
                "  violated {} at {}: {}",
                v.rule,
                if v.path.is_empty() { "(body)" } else { &v.path },
                v.message
            );
        }
        if let Some(s) = &f.shrunk {
            let _ = writeln!(out, "  shrunk: {s}");
        }
        if let Some(c) = &f.send {
            let _ = writeln!(out, "  {c}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Endpoint;
    use std::collections::BTreeMap;

    /// Every element of a JUnit document with its attributes, in document order.
    fn elements(xml: &str) -> Vec<(String, BTreeMap<String, String>)> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let key = a.key.as_ref().to_string();
                            (
                                key,
                                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                    .unwrap()
                                    .into_owned(),
                            )
                        })
                        .collect();
                    out.push((e.name().as_ref().to_string(), attrs));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn junit_has_a_suite_per_endpoint_and_a_case_per_check() {
        let mut r = Report::new(
            "t".into(),
            true,
            7,
            1,
            vec![Endpoint::CreateCall, Endpoint::Hangup],
        );
        r.replay = "acs-harness contract --seed 7".into();
        for c in Check::ALL.into_iter().filter(|c| *c != Check::Lifecycle) {
            r.pass(Endpoint::CreateCall, c);
        }
        r.pass(Endpoint::Hangup, Check::AuthRequired);
        r.fail(Failure {
            check: Check::ErrorShape,
            endpoint: Endpoint::Hangup,
            case: "invalid: <x> & \"y\"".into(),
            expected: "400".into(),
            got: "500, bell \u{7} here".into(),
            violations: vec![],
            send: None,
            shrunk: None,
        });
        let xml = r.to_junit();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        let all = elements(&xml);
        let (name, top) = &all[0];
        assert_eq!(name, "testsuites");
        assert_eq!(top["name"], "acs-harness contract");
        assert_eq!(top["tests"], (2 * Check::ALL.len()).to_string());
        assert_eq!(top["failures"], "1");
        assert_eq!(top["errors"], "0");
        let suites: Vec<&BTreeMap<String, String>> = all
            .iter()
            .filter(|(n, _)| n == "testsuite")
            .map(|(_, a)| a)
            .collect();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0]["name"], "create-call");
        assert_eq!(suites[0]["skipped"], "1");
        assert_eq!(suites[1]["name"], "hangup");
        assert_eq!(suites[1]["failures"], "1");
        assert_eq!(suites[1]["skipped"], (Check::ALL.len() - 2).to_string());
        let cases = all.iter().filter(|(n, _)| n == "testcase").count();
        assert_eq!(cases, 2 * Check::ALL.len());
        let failure = all.iter().find(|(n, _)| n == "failure").unwrap();
        assert_eq!(failure.1["type"], "error_shape");
        // Markup in the texts is escaped, characters XML forbids are gone.
        assert!(
            failure.1["message"].starts_with("1 of 1 cases failed; first: invalid: <x> & \"y\""),
            "{:?}",
            failure.1
        );
        assert!(!xml.contains('\u{7}'));
        let replay = all
            .iter()
            .find(|(n, a)| n == "property" && a["name"] == "replay")
            .unwrap();
        assert_eq!(replay.1["value"], "acs-harness contract --seed 7");
        // A completed run has no error suite.
        assert!(!all.iter().any(|(n, _)| n == "error"));
    }
}
