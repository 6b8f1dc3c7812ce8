//! What a gate run found, and its three renderings: the terminal table with each
//! failure and its replayable `acs-harness send` line, JUnit XML for CI, and JSON.
//!
//! No rendering ever contains the access key, a signature or the connection string:
//! failures carry an `acs-harness send` line, which signs when it is run; every text a
//! failure carries is scrubbed ([`crate::redact::scrub`]) and cut ([`MAX_TEXT_CHARS`])
//! when it is recorded, and every rendering is scrubbed again.

use super::checks::Check;
use crate::contract::{Endpoint, Violation};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Failure details kept per endpoint × check; counts go on beyond it.
pub const MAX_FAILURES_PER_CELL: usize = 20;

/// Failure details the terminal shows per endpoint × check (the shrunk case first).
pub const TERMINAL_FAILURES_PER_CELL: usize = 3;

/// Characters kept of any text a failure carries (server-supplied text mostly); the
/// rest is cut with the full size stated.
pub const MAX_TEXT_CHARS: usize = 2000;

/// One failed case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The check that failed.
    pub check: Check,
    /// The endpoint the request was for.
    #[serde(serialize_with = "endpoint_name")]
    pub endpoint: Endpoint,
    /// Which case: `valid #12`, `missing-required(targets)`, `auth: missing Authorization`…
    pub case: String,
    /// What the contract says the request gets.
    pub expected: String,
    /// What it got (`timeout` when no answer came in time).
    pub got: String,
    /// The rules the reply broke, with JSON paths.
    pub violations: Vec<Violation>,
    /// The request as an `acs-harness send` line to paste (signed when run; no
    /// signature or key in it).
    pub send: Option<String>,
    /// For shrunk valid cases: how the case was minimised.
    pub shrunk: Option<String>,
}

fn endpoint_name<S: serde::Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.name())
}

/// Pass and fail counts of one endpoint × check, with the first failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    /// Cases that passed.
    pub passed: u64,
    /// Cases that failed.
    pub failed: u64,
    /// The first 20 (`MAX_FAILURES_PER_CELL`) failures.
    pub failures: Vec<Failure>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum RunEnd {
    /// Every planned case ran.
    Completed,
    /// Ctrl-C stopped it; results are partial.
    Interrupted,
    /// The run budget (`--max-run-time`) was spent; results are partial.
    DeadlineReached,
    /// The gate could not run (target unreachable…); the reason in one line.
    Aborted(String),
}

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target URL (userinfo removed).
    pub target: String,
    /// Whether the target was the embedded double.
    pub embedded: bool,
    /// The seed that replays the run.
    pub seed: u64,
    /// Valid cases per endpoint.
    pub cases: u32,
    /// The endpoints gated.
    pub endpoints: Vec<Endpoint>,
    /// Results per endpoint × check.
    pub cells: BTreeMap<(Endpoint, Check), Cell>,
    /// Requests sent (including set-up and shrinking).
    pub requests: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// How the run ended.
    pub end: RunEnd,
    /// The command line that replays the run.
    pub replay: String,
    /// The run budget (`--max-run-time`), named when the run is cut by it.
    pub budget: Duration,
    /// Checks that could not run against this target, with why (e.g. `events` against a
    /// remote target without a callback URL); they are reported, never failed.
    pub not_run_reasons: BTreeMap<Check, String>,
}

impl Report {
    /// An empty report for these endpoints: every endpoint × check cell present.
    pub fn new(
        target: String,
        embedded: bool,
        seed: u64,
        cases: u32,
        endpoints: Vec<Endpoint>,
    ) -> Report {
        let mut cells = BTreeMap::new();
        for e in &endpoints {
            for c in Check::ALL {
                cells.insert((*e, c), Cell::default());
            }
        }
        Report {
            target,
            embedded,
            seed,
            cases,
            endpoints,
            cells,
            requests: 0,
            elapsed: Duration::ZERO,
            end: RunEnd::Completed,
            replay: String::new(),
            budget: Duration::ZERO,
            not_run_reasons: BTreeMap::new(),
        }
    }

    /// Marks a check as not run against this target, with the reason reports show.
    pub fn not_run_because(&mut self, check: Check, reason: String) {
        self.not_run_reasons.insert(check, reason);
    }

    /// Records a pass; ignored for endpoints not gated (`--only`).
    pub fn pass(&mut self, endpoint: Endpoint, check: Check) {
        if let Some(c) = self.cells.get_mut(&(endpoint, check)) {
            c.passed += 1;
        }
    }

    /// Records a failure, its texts scrubbed and cut; ignored for endpoints not gated
    /// (`--only`).
    pub fn fail(&mut self, failure: Failure) {
        if let Some(c) = self.cells.get_mut(&(failure.endpoint, failure.check)) {
            c.failed += 1;
            if c.failures.len() < MAX_FAILURES_PER_CELL {
                c.failures.push(failure.cleaned());
            }
        }
    }

    /// The endpoint × check cells that got no verdict (not run), as `endpoint/check`.
    pub fn not_run(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|(_, c)| c.passed == 0 && c.failed == 0)
            .map(|((e, k), _)| format!("{}/{}", e.name(), k.name()))
            .collect()
    }

    /// Why the run did not complete, in one line; `None` when it did.
    pub fn end_reason(&self) -> Option<String> {
        let not_run = self.not_run();
        let unrun = if not_run.is_empty() {
            "every check got at least one verdict".to_string()
        } else {
            format!(
                "{} of {} endpoint × check cells not run",
                not_run.len(),
                self.cells.len()
            )
        };
        match &self.end {
            RunEnd::Completed => None,
            RunEnd::Interrupted => Some(format!("run interrupted: results are partial; {unrun}")),
            RunEnd::DeadlineReached => Some(format!(
                "run stopped by its budget (--max-run-time {:?}): results are partial; {unrun}",
                self.budget
            )),
            RunEnd::Aborted(r) => Some(format!("gate could not run: {r}")),
        }
    }

    /// The cell of an endpoint × check.
    pub fn cell(&self, endpoint: Endpoint, check: Check) -> Option<&Cell> {
        self.cells.get(&(endpoint, check))
    }

    /// Whether any case failed.
    pub fn has_failures(&self) -> bool {
        self.cells.values().any(|c| c.failed > 0)
    }

    /// The checks that failed on at least one endpoint.
    pub fn failed_checks(&self) -> Vec<Check> {
        let mut out: Vec<Check> = self
            .cells
            .iter()
            .filter(|(_, c)| c.failed > 0)
            .map(|((_, k), _)| *k)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// All failures, in table order.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.cells.values().flat_map(|c| c.failures.iter())
    }

    /// 0 when every check passed, 1 on any violation, 2 when the gate could not run
    /// (or was interrupted before it found anything).
    pub fn exit_code(&self) -> u8 {
        match &self.end {
            RunEnd::Aborted(_) => 2,
            _ if self.has_failures() => 1,
            RunEnd::Completed => 0,
            RunEnd::Interrupted | RunEnd::DeadlineReached => 2,
        }
    }

    /// Requests per second over the whole run.
    pub fn requests_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    /// The terminal rendering: table, failures, summary. ANSI colour when `color`.
    pub fn render_terminal(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        let name_w = self
            .endpoints
            .iter()
            .map(|e| e.name().len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = write!(out, "{:name_w$}", "endpoint");
        for c in Check::ALL {
            let _ = write!(out, "  {}", c.name());
        }
        out.push('\n');
        for e in &self.endpoints {
            let _ = write!(out, "{:name_w$}", e.name());
            for c in Check::ALL {
                let w = c.name().len();
                let cell = self.cells.get(&(*e, c)).cloned().unwrap_or_default();
                let (text, code) = if cell.failed > 0 {
                    (
                        format!("FAIL {}/{}", cell.failed, cell.failed + cell.passed),
                        "31",
                    )
                } else if cell.passed > 0 {
                    (format!("ok {}", cell.passed), "32")
                } else {
                    ("-".to_string(), "33")
                };
                let padded = format!("{text:w$}");
                let _ = write!(out, "  {}", paint(code, &padded));
            }
            out.push('\n');
        }
        for (check, reason) in &self.not_run_reasons {
            let _ = writeln!(
                out,
                "{} {reason}",
                paint("33", &format!("{check}: not run:"))
            );
        }
        let shown = self
            .cells
            .values()
            .flat_map(|c| c.failures.iter().take(TERMINAL_FAILURES_PER_CELL));
        for f in shown {
            out.push('\n');
            let _ = writeln!(
                out,
                "{} {} · {} · {} · seed {}",
                paint("1;31", "FAIL"),
                f.check,
                f.endpoint,
                f.case,
                self.seed
            );
            let _ = writeln!(out, "  expected: {}", f.expected);
            let _ = writeln!(out, "  got:      {}", f.got);
            for v in &f.violations {
                let path = if v.path.is_empty() { "(body)" } else { &v.path };
                let _ = writeln!(out, "  violated: {} at {path}: {}", v.rule, v.message);
            }
            if let Some(s) = &f.shrunk {
                let _ = writeln!(out, "  shrunk:   {s}");
            }
            if let Some(c) = &f.send {
                let _ = writeln!(out, "  request:  {c}");
                if f.endpoint.needs_call() && f.check != Check::UnknownResource {
                    let _ = writeln!(
                        out,
                        "            (the call id is one the gate created; to replay, create a call with POST /calls and use its callLegId)"
                    );
                }
            }
        }
        let hidden: u64 = self
            .cells
            .values()
            .map(|c| {
                c.failed
                    .saturating_sub(c.failures.len().min(TERMINAL_FAILURES_PER_CELL) as u64)
            })
            .sum();
        if hidden > 0 {
            let _ = writeln!(
                out,
                "\n… and {hidden} more failures (counted in the table; up to {MAX_FAILURES_PER_CELL} per cell in --json and --junit)"
            );
        }
        out.push('\n');
        match &self.end {
            RunEnd::Completed => {}
            RunEnd::Interrupted | RunEnd::DeadlineReached => {
                let _ = writeln!(
                    out,
                    "{}",
                    paint("33", &self.end_reason().unwrap_or_default())
                );
                let not_run = self.not_run();
                if !not_run.is_empty() {
                    let _ = writeln!(out, "not run: {}", not_run.join(", "));
                }
            }
            RunEnd::Aborted(r) => {
                let _ = writeln!(out, "{} {r}", paint("31", "gate could not run:"));
            }
        }
        if let Some(hint) = self.hint() {
            let _ = writeln!(out, "{} {hint}", paint("33", "hint:"));
        }
        let failed: u64 = self.cells.values().map(|c| c.failed).sum();
        let passed: u64 = self.cells.values().map(|c| c.passed).sum();
        let verdict = if self.has_failures() {
            paint("1;31", "FAILED")
        } else if self.end == RunEnd::Completed {
            paint("1;32", "PASSED")
        } else {
            paint("1;33", "INCOMPLETE")
        };
        let _ = writeln!(
            out,
            "{verdict}: {passed} passed, {failed} failed; {} requests in {:.2}s ({:.0} req/s) against {}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_second(),
            if self.embedded {
                "the embedded double"
            } else {
                &self.target
            }
        );
        if self.replay.is_empty() {
            let _ = writeln!(out, "seed {}", self.seed);
        } else {
            let _ = writeln!(out, "seed {} — replay: {}", self.seed, self.replay);
        }
        out
    }

    /// A likely common cause when no call could be created: then most other cases could
    /// not even be set up, and the table alone hides why.
    fn hint(&self) -> Option<String> {
        let create = self
            .cells
            .get(&(Endpoint::CreateCall, Check::PositiveAcceptance))?;
        (create.passed == 0 && create.failed > 0).then(|| {
            "no valid create-call request succeeded, so the cases that need a call could not run; \
             check --target, --prefix and --api-version"
                .to_string()
        })
    }

    /// The JSON rendering (same content as the terminal, machine-readable).
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct CheckOut<'a> {
            check: Check,
            /// `pass`, `fail` or `not_run`.
            status: &'static str,
            passed: u64,
            failed: u64,
            failures: &'a [Failure],
            /// Why the check could not run against this target, when it could not.
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct EndpointOut<'a> {
            endpoint: &'static str,
            checks: Vec<CheckOut<'a>>,
        }
        let endpoints: Vec<EndpointOut> = self
            .endpoints
            .iter()
            .map(|e| EndpointOut {
                endpoint: e.name(),
                checks: Check::ALL
                    .iter()
                    .filter_map(|c| {
                        self.cells.get(&(*e, *c)).map(|cell| CheckOut {
                            check: *c,
                            status: match (cell.failed, cell.passed) {
                                (0, 0) => "not_run",
                                (0, _) => "pass",
                                _ => "fail",
                            },
                            passed: cell.passed,
                            failed: cell.failed,
                            failures: &cell.failures,
                            reason: self.not_run_reasons.get(c).map(String::as_str),
                        })
                    })
                    .collect(),
            })
            .collect();
        serde_json::json!({
            "target": if self.embedded { "embedded double" } else { &self.target },
            "seed": self.seed,
            "cases": self.cases,
            "passed": !self.has_failures() && self.end == RunEnd::Completed,
            "exit_code": self.exit_code(),
            "end": self.end,
            "requests": self.requests,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "checks": Check::ALL.map(Check::name),
            "endpoints": endpoints,
            "not_run": self.not_run(),
            "replay": self.replay,
        })
    }
}

impl Failure {
    /// The failure with every text scrubbed of secrets and cut to [`MAX_TEXT_CHARS`].
    fn cleaned(mut self) -> Failure {
        let clean = |s: &mut String| {
            if s.chars().count() > MAX_TEXT_CHARS || crate::redact::scrub(s) != s.as_str() {
                *s = crate::redact::clip(s, MAX_TEXT_CHARS);
            }
        };
        clean(&mut self.case);
        clean(&mut self.expected);
        clean(&mut self.got);
        for v in &mut self.violations {
            clean(&mut v.path);
            clean(&mut v.message);
        }
        // The send line is the harness's own request, which must stay whole to replay;
        // it is scrubbed, never cut.
        if let Some(c) = &mut self.send {
            *c = crate::redact::scrub(c).into_owned();
        }
        if let Some(s) = &mut self.shrunk {
            clean(s);
        }
        self
    }
}

/// Quotes a string for a POSIX shell: `'...'`, or `$'...'` when it holds bytes a
/// single-quoted word cannot show (control characters, invalid UTF-8).
pub fn shell_quote(bytes: &[u8]) -> String {
    let plain = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_control()));
    match plain {
        Some(s) => format!("'{}'", s.replace('\'', r"'\''")),
        None => {
            let mut out = String::from("$'");
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    match c {
                        '\'' => out.push_str("\\'"),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c.is_control() => {
                            let mut buf = [0u8; 4];
                            for b in c.encode_utf8(&mut buf).bytes() {
                                let _ = write!(out, "\\x{b:02x}");
                            }
                        }
                        c => out.push(c),
                    }
                }
                for b in chunk.invalid() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            out.push('\'');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(b"a'b"), r"'a'\''b'");
        assert_eq!(shell_quote(b"{\"a\":\"\xff\"}\n"), r#"$'{"a":"\xff"}\n'"#);
    }

    #[test]
    fn exit_codes() {
        let mut r = Report::new("t".into(), true, 1, 1, vec![Endpoint::Hangup]);
        assert_eq!(r.exit_code(), 0);
        r.end = RunEnd::Interrupted;
        assert_eq!(r.exit_code(), 2);
        r.fail(Failure {
            check: Check::Lifecycle,
            endpoint: Endpoint::Hangup,
            case: "x".into(),
            expected: "202".into(),
            got: "404".into(),
            violations: vec![],
            send: None,
            shrunk: None,
        });
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.failed_checks(), vec![Check::Lifecycle]);
        r.fail(Failure {
            check: Check::Lifecycle,
            endpoint: Endpoint::CreateCall,
            case: "ignored: not gated".into(),
            expected: String::new(),
            got: String::new(),
            violations: vec![],
            send: None,
            shrunk: None,
        });
        assert_eq!(r.failures().count(), 1);
    }
}
