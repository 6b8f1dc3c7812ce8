//! Load scenario files (TOML): which goose scenarios run with which weights, their steps,
//! the default users / ramp / run time, and the thresholds the run is judged by.
//!
//! Files are checked completely before any load starts; every mistake is reported as
//! `file:line: reason` so it can be fixed without guessing.

use super::events::{self, Await, EventKind};
use crate::contract::Endpoint;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The scenario files shipped in `scenarios/`, embedded so a name works from any directory.
pub const SHIPPED: [(&str, &str); 4] = [
    (
        "call-creation",
        include_str!("../../scenarios/call-creation.toml"),
    ),
    (
        "play-audio",
        include_str!("../../scenarios/play-audio.toml"),
    ),
    (
        "play-audio-think",
        include_str!("../../scenarios/play-audio-think.toml"),
    ),
    ("mixed", include_str!("../../scenarios/mixed.toml")),
];

/// The most times one step may repeat (each repetition is a goose transaction).
pub const MAX_REPEAT: usize = 1000;

/// The scenario used when `--scenario` is not given.
pub const DEFAULT_SCENARIO: &str = "mixed";

/// A scenario file that could not be loaded: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ScenarioError {
    /// The file (or `<name>` for an embedded scenario).
    pub file: String,
    /// 1-based line of the offending value; 1 when the file as a whole is wrong.
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

/// A checked scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFile {
    /// Where it came from (a path, or `<name>` for an embedded one).
    pub source: String,
    /// Free text shown at the start of the run.
    pub description: Option<String>,
    /// Default number of users.
    pub users: Option<usize>,
    /// Default users started per second, as goose takes it (e.g. `"4"` or `"0.5"`).
    pub increase_rate: Option<String>,
    /// Default run time, whole seconds.
    pub run_time: Option<Duration>,
    /// Threshold rules in the harness syntax (see [`super::threshold`]).
    pub thresholds: Vec<String>,
    /// The goose scenarios, in file order.
    pub scenarios: Vec<Scenario>,
}

/// One goose scenario: a kind of user with a weight and its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name, as goose reports it.
    pub name: String,
    /// Relative share of users (at least 1).
    pub weight: usize,
    /// Steps each user runs once when it starts.
    pub on_start: Vec<Step>,
    /// Steps each user repeats, in order, until the run ends.
    pub steps: Vec<Step>,
    /// Steps each user runs once when the run ends.
    pub on_stop: Vec<Step>,
}

/// One step: a request to an endpoint, repeated, each followed by the wait for its
/// event (when it awaits one) and a think time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The endpoint requested.
    pub endpoint: Endpoint,
    /// How many times in a row (at least 1).
    pub repeat: usize,
    /// Pause after each request.
    pub think: Duration,
    /// The event each request awaits before the think time (`await = "PlayAudioResult"`).
    pub awaits: Option<Await>,
}

impl Scenario {
    /// Every step of the scenario, in the order a user meets them.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.on_start
            .iter()
            .chain(self.steps.iter())
            .chain(self.on_stop.iter())
    }
}

impl ScenarioFile {
    /// The endpoints any step of any scenario requests.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .scenarios
            .iter()
            .flat_map(|s| s.all_steps().map(|st| st.endpoint))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The events any step awaits; empty when no step awaits one.
    pub fn awaited(&self) -> Vec<EventKind> {
        let mut out: Vec<EventKind> = self
            .scenarios
            .iter()
            .flat_map(|s| s.all_steps().filter_map(|st| st.awaits.map(|a| a.event)))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

// ---- raw TOML shapes; unknown keys are refused ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: Option<String>,
    users: Option<Positive>,
    increase_rate: Option<Rate>,
    run_time: Option<toml::Spanned<Dur>>,
    #[serde(default)]
    thresholds: Vec<toml::Spanned<String>>,
    #[serde(default)]
    scenario: Vec<toml::Spanned<RawScenario>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: toml::Spanned<String>,
    #[serde(default = "one")]
    weight: Positive,
    #[serde(default)]
    on_start: Vec<toml::Spanned<RawStep>>,
    #[serde(default)]
    steps: Vec<toml::Spanned<RawStep>>,
    #[serde(default)]
    on_stop: Vec<toml::Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    endpoint: EndpointName,
    #[serde(default = "one")]
    repeat: Positive,
    #[serde(default)]
    think: Dur,
    #[serde(rename = "await")]
    awaits: Option<toml::Spanned<String>>,
    await_timeout: Option<toml::Spanned<Dur>>,
}

fn one() -> Positive {
    Positive(1)
}

/// An integer of at least 1 (weights, repeats, users).
#[derive(Clone, Copy)]
struct Positive(usize);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if n < 1 {
            return Err(serde::de::Error::custom(format!(
                "must be at least 1, got {n}"
            )));
        }
        usize::try_from(n)
            .map(Positive)
            .map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
    }
}

/// Users started per second: a positive number, integer or decimal.
struct Rate(String);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num {
            Int(i64),
            Float(f64),
        }
        let (value, text) = match Num::deserialize(d)? {
            Num::Int(i) => (i as f64, i.to_string()),
            Num::Float(f) => (f, f.to_string()),
        };
        if !(value.is_finite() && value > 0.0) {
            return Err(serde::de::Error::custom(format!(
                "increase_rate must be a number of users per second above 0, got {text}"
            )));
        }
        Ok(Rate(text))
    }
}

#[derive(Clone, Copy, Default)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

struct EndpointName(Endpoint);

impl<'de> Deserialize<'de> for EndpointName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Endpoint::from_name(&s).map(EndpointName).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown endpoint {s:?}; expected one of: {}",
                Endpoint::names()
            ))
        })
    }
}

/// Checks a step's `await` (and `await_timeout`): an event its endpoint causes, and a
/// timeout above 0 and at most [`events::MAX_AWAIT_TIMEOUT`]. Errors carry the offset.
fn step_await(
    endpoint: Endpoint,
    name: &toml::Spanned<String>,
    timeout: Option<toml::Spanned<Dur>>,
) -> Result<Await, (usize, String)> {
    let at = name.span().start;
    let Some(event) = EventKind::from_name(name.get_ref()) else {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        return Err((
            at,
            format!(
                "unknown event {:?}; a step can await {}",
                name.get_ref(),
                known.join(", ")
            ),
        ));
    };
    if event.endpoint() != endpoint {
        let why = match EventKind::for_endpoint(endpoint) {
            Some(own) => format!(
                "a {} step cannot await {}; it can await {}",
                endpoint.name(),
                event.name(),
                own.name()
            ),
            None => format!(
                "a {} step cannot await an event; {} is awaited by a {} step",
                endpoint.name(),
                event.name(),
                event.endpoint().name()
            ),
        };
        return Err((at, why));
    }
    let timeout = match timeout {
        None => events::DEFAULT_AWAIT_TIMEOUT,
        Some(t) => {
            let d = t.get_ref().0;
            if d.is_zero() || d > events::MAX_AWAIT_TIMEOUT {
                return Err((
                    t.span().start,
                    format!(
                        "await_timeout must be above 0 and at most {}, got {}",
                        format_duration(events::MAX_AWAIT_TIMEOUT),
                        format_duration(d)
                    ),
                ));
            }
            d
        }
    };
    Ok(Await { event, timeout })
}

/// Formats a duration the way [`crate::duration::parse`] reads it (`1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let sub = d.subsec_micros();
    if sub.is_multiple_of(1000) && sub > 0 {
        out.push_str(&format!("{}ms", sub / 1000));
    } else if sub > 0 {
        out.push_str(&format!("{sub}us"));
    }
    out
}

/// Where a `--scenario` value points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioRef {
    /// A file on disk.
    Path(PathBuf),
    /// A shipped scenario, by name.
    Name(String),
}

impl ScenarioRef {
    /// A path if the value exists, contains `/` or ends with `.toml`; else a name.
    pub fn from_arg(value: &str) -> Self {
        if Path::new(value).exists() || value.contains('/') || value.ends_with(".toml") {
            ScenarioRef::Path(PathBuf::from(value))
        } else {
            ScenarioRef::Name(value.to_string())
        }
    }
}

impl fmt::Display for ScenarioRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioRef::Path(p) => write!(f, "{}", p.display()),
            ScenarioRef::Name(n) => f.write_str(n),
        }
    }
}

/// Loads a scenario by name (shipped) or path, checking it completely.
pub fn load(reference: &ScenarioRef) -> Result<ScenarioFile, ScenarioError> {
    match reference {
        ScenarioRef::Name(name) => {
            let Some((_, text)) = SHIPPED.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
                return Err(ScenarioError {
                    file: name.clone(),
                    line: 1,
                    reason: format!(
                        "no such scenario; shipped scenarios are {} (or give a path to a .toml file)",
                        names.join(", ")
                    ),
                });
            };
            parse(&format!("scenarios/{name}.toml"), text)
        }
        ScenarioRef::Path(path) => {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
                file: file.clone(),
                line: 1,
                reason: format!("cannot read the file: {e}"),
            })?;
            parse(&file, &text)
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses and checks the text of a scenario file named `file`.
pub fn parse(file: &str, text: &str) -> Result<ScenarioFile, ScenarioError> {
    let err = |offset: usize, reason: String| ScenarioError {
        file: file.to_string(),
        line: line_of(text, offset),
        reason,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        err(offset, e.message().trim().to_string())
    })?;

    let run_time = match raw.run_time {
        Some(rt) => {
            let d = rt.get_ref().0;
            if d.subsec_nanos() != 0 || d.is_zero() {
                return Err(err(
                    rt.span().start,
                    format!(
                        "run_time must be a whole number of seconds above 0, got {}",
                        format_duration(d)
                    ),
                ));
            }
            Some(d)
        }
        None => None,
    };

    let mut thresholds = Vec::new();
    for t in raw.thresholds {
        let rule = t.get_ref().clone();
        if let Err(e) = super::threshold::Rule::parse(&rule) {
            return Err(err(t.span().start, e.to_string()));
        }
        thresholds.push(rule);
    }

    if raw.scenario.is_empty() {
        return Err(err(
            0,
            "no scenarios: add at least one [[scenario]] table with name and steps".into(),
        ));
    }
    let mut scenarios: Vec<Scenario> = Vec::new();
    for s in raw.scenario {
        let at = s.span().start;
        let s = s.into_inner();
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(err(s.name.span().start, "scenario name is empty".into()));
        }
        if scenarios.iter().any(|o| o.name == name) {
            return Err(err(
                s.name.span().start,
                format!("scenario name {name:?} is used twice"),
            ));
        }
        if s.steps.is_empty() {
            return Err(err(
                at,
                format!("scenario {name:?} has no steps; `steps` needs at least one step"),
            ));
        }
        // A step on a call needs a create-call before it; otherwise every such request
        // would be skipped and the scenario would measure nothing.
        let mut has_call = false;
        let convert = |list: Vec<toml::Spanned<RawStep>>,
                       has_call: &mut bool|
         -> Result<Vec<Step>, ScenarioError> {
            let mut out = Vec::new();
            for st in list {
                let at = st.span().start;
                let st = st.into_inner();
                let endpoint = st.endpoint.0;
                if endpoint == Endpoint::CreateCall {
                    *has_call = true;
                } else if !*has_call {
                    return Err(err(
                        at,
                        format!(
                            "step {} in scenario {name:?} needs a call, but no create-call step comes before it",
                            endpoint.name()
                        ),
                    ));
                }
                if st.repeat.0 > MAX_REPEAT {
                    return Err(err(
                        at,
                        format!("repeat is at most {MAX_REPEAT}, got {}", st.repeat.0),
                    ));
                }
                let awaits = match (st.awaits, st.await_timeout) {
                    (None, None) => None,
                    (None, Some(t)) => {
                        return Err(err(
                            t.span().start,
                            "await_timeout without await: name the event the step awaits, e.g. await = \"PlayAudioResult\"".into(),
                        ));
                    }
                    (Some(name), timeout) => Some(
                        step_await(endpoint, &name, timeout).map_err(|(at, why)| err(at, why))?,
                    ),
                };
                out.push(Step {
                    endpoint,
                    repeat: st.repeat.0,
                    think: st.think.0,
                    awaits,
                });
            }
            Ok(out)
        };
        let on_start = convert(s.on_start, &mut has_call)?;
        let steps = convert(s.steps, &mut has_call)?;
        let on_stop = convert(s.on_stop, &mut has_call)?;
        scenarios.push(Scenario {
            name,
            weight: s.weight.0,
            on_start,
            steps,
            on_stop,
        });
    }

    Ok(ScenarioFile {
        source: file.to_string(),
        description: raw.description,
        users: raw.users.map(|u| u.0),
        increase_rate: raw.increase_rate.map(|r| r.0),
        run_time,
        thresholds,
        scenarios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        for (name, _) in SHIPPED {
            let f = load(&ScenarioRef::Name(name.into())).unwrap();
            assert!(!f.scenarios.is_empty(), "{name}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_millis(90_250)), "1m30s250ms");
    }

    fn error(text: &str) -> ScenarioError {
        parse("t.toml", text).unwrap_err()
    }

    const OK_SCENARIO: &str =
        "[[scenario]]\nname = \"a\"\nsteps = [{ endpoint = \"create-call\" }]\n";

    #[test]
    fn errors_name_file_line_and_reason() {
        let e = error(&format!("users = 2\nbogus = 1\n{OK_SCENARIO}"));
        assert_eq!((e.file.as_str(), e.line), ("t.toml", 2));
        assert!(e.reason.contains("bogus"), "{e}");

        let e = error(
            "[[scenario]]\nname = \"a\"\nweight = 0\nsteps = [{ endpoint = \"create-call\" }]\n",
        );
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("at least 1"), "{e}");

        let e = error(
            "[[scenario]]\nname = \"a\"\nsteps = [\n  { endpoint = \"create-call\" },\n  { endpoint = \"play-music\" },\n]\n",
        );
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("unknown endpoint \"play-music\""), "{e}");

        let e = error(
            "[[scenario]]\nname = \"a\"\nsteps = [\n  { endpoint = \"create-call\", think = \"2 seconds\" },\n]\n",
        );
        assert_eq!(e.line, 4, "{e}");
        assert!(e.reason.contains("bad duration"), "{e}");

        let e = error(&format!("run_time = \"1500ms\"\n{OK_SCENARIO}"));
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("whole number of seconds"), "{e}");

        let e = error("[[scenario]]\nname = \"a\"\nsteps = [{ endpoint = \"hangup\" }]\n");
        assert!(e.reason.contains("needs a call"), "{e}");

        let e = error("users = 1\n");
        assert!(e.reason.contains("no scenarios"), "{e}");

        let e = error(&format!("thresholds = [\"p95<\"]\n{OK_SCENARIO}"));
        assert_eq!(e.line, 1);

        let e = error(
            "[[scenario]]\nname = \"a\"\nsteps = [{ endpoint = \"create-call\", repat = 2 }]\n",
        );
        assert!(e.reason.contains("repat"), "{e}");
        assert_eq!(e.to_string(), format!("t.toml:3: {}", e.reason));
    }

    #[test]
    fn steps_await_the_event_their_request_causes() {
        let f = parse(
            "t.toml",
            "[[scenario]]\nname = \"a\"\nsteps = [\n  { endpoint = \"create-call\", await = \"CallLegStateChanged\" },\n  { endpoint = \"play-audio\", await = \"Microsoft.Communication.PlayAudioResult\", await_timeout = \"1500ms\" },\n  { endpoint = \"invite-participants\", await = \"InviteParticipantResult\" },\n]\n",
        )
        .unwrap();
        let awaits: Vec<Option<Await>> = f.scenarios[0].steps.iter().map(|s| s.awaits).collect();
        assert_eq!(
            awaits,
            [
                Some(Await {
                    event: EventKind::CallLegStateChanged,
                    timeout: events::DEFAULT_AWAIT_TIMEOUT
                }),
                Some(Await {
                    event: EventKind::PlayAudioResult,
                    timeout: Duration::from_millis(1500)
                }),
                Some(Await {
                    event: EventKind::InviteParticipantResult,
                    timeout: events::DEFAULT_AWAIT_TIMEOUT
                }),
            ]
        );
        assert_eq!(f.awaited(), EventKind::ALL);
        let shipped = load(&ScenarioRef::Name("play-audio".into())).unwrap();
        assert_eq!(shipped.awaited(), [EventKind::PlayAudioResult]);
        let think = load(&ScenarioRef::Name("play-audio-think".into())).unwrap();
        assert!(think.awaited().is_empty());

        let step = |extra: &str| {
            error(&format!(
                "[[scenario]]\nname = \"a\"\nsteps = [\n  {{ endpoint = \"create-call\" }},\n  {{ endpoint = \"play-audio\"{extra} }},\n]\n"
            ))
        };
        for (extra, reason) in [
            (
                ", await = \"DtmfReceived\"",
                "unknown event \"DtmfReceived\"",
            ),
            (
                ", await = \"InviteParticipantResult\"",
                "a play-audio step cannot await InviteParticipantResult; it can await PlayAudioResult",
            ),
            (", await_timeout = \"1s\"", "await_timeout without await"),
            (
                ", await = \"PlayAudioResult\", await_timeout = \"0\"",
                "await_timeout must be above 0",
            ),
            (
                ", await = \"PlayAudioResult\", await_timeout = \"1h\"",
                "at most 5m",
            ),
        ] {
            let e = step(extra);
            assert_eq!(e.line, 5, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
        let e = error(
            "[[scenario]]\nname = \"a\"\nsteps = [\n  { endpoint = \"create-call\" },\n  { endpoint = \"hangup\", await = \"CallLegStateChanged\" },\n]\n",
        );
        assert!(
            e.reason
                .contains("a hangup step cannot await an event; CallLegStateChanged is awaited by a create-call step"),
            "{e}"
        );
    }

    #[test]
    fn scenario_refs() {
        assert_eq!(
            ScenarioRef::from_arg("mixed"),
            ScenarioRef::Name("mixed".into())
        );
        assert!(matches!(
            ScenarioRef::from_arg("x.toml"),
            ScenarioRef::Path(_)
        ));
        assert!(matches!(
            ScenarioRef::from_arg("./mixed"),
            ScenarioRef::Path(_)
        ));
        assert!(load(&ScenarioRef::Name("nope".into())).is_err());
    }
}
