//! The `events` check: two calls run a lifecycle with a `callbackUri` that points at a
//! receiver the gate runs ([`crate::receiver`]), and the events the target sends there
//! are judged against the Events section of src/contract/CONTRACT.md: envelope and data
//! shapes, the call they name, their order per call, one result per operation, and
//! `ParticipantsUpdated`/`DtmfReceived` only when subscribed.
//!
//! Call A subscribes to `participantsUpdated`: create, loop a play and cancel it, play
//! once, invite and remove a participant, hang up. Call B subscribes to nothing: create,
//! invite, hang up. Every wait is bounded by the event timeout; a call that got no event
//! at all is judged once and not waited on further, so a target that sends nothing
//! costs one timeout, not one per step.

use super::checks::Check;
use super::report::{Failure, Report};
use crate::client::{AuthMode, Client};
use crate::contract::{Endpoint, Rule, Violation};
use crate::receiver::{Received, Receiver, ReceiverConfig};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `--event-timeout` when not given: how long the gate waits for each expected event.
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Events listed in a failure; the rest are counted.
const EVENTS_SHOWN: usize = 20;

/// The audio the probe plays (never fetched by the gate itself).
const AUDIO: &str = "https://acsmedia.blob.core.windows.net/audio/hold.wav";

/// The call's target, a phone number: its participantId is the number.
const TARGET: &str = "+14255550140";

/// Where the receiver of a run listens and which URL targets get, or why the check
/// cannot run against this target.
#[derive(Debug)]
pub enum Setup {
    /// The receiver is listening; run the probe.
    Ready(Probe),
    /// The check is reported `not run` with this reason (never failed).
    NotRun(String),
}

/// The events probe of a run: its receiver and how long each event may take.
#[derive(Debug)]
pub struct Probe {
    receiver: Receiver,
    timeout: Duration,
    /// How long to watch for anything after `Terminated`.
    settle: Duration,
}

/// The window after `Terminated` for the embedded double, which sends each event the
/// moment it happens: a remote target's window is a tenth of `--event-timeout`.
const EMBEDDED_SETTLE: Duration = Duration::from_millis(100);

/// One verdict of the check on one endpoint's cell.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A rule held.
    Pass(Endpoint),
    /// A rule was broken.
    Fail(Failure),
}

/// Whether a target URL is on this machine (the receiver can listen on loopback).
pub fn is_loopback_target(target: &str) -> bool {
    let Ok(url) = url::Url::parse(target.trim()) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Starts the receiver for a run: on 127.0.0.1 by itself for the embedded double or a
/// loopback target, on `callback_listen` with `callback_url` as its public URL when
/// given. A remote target without them gets [`Setup::NotRun`]; a receiver that cannot
/// listen is an error (the gate could not run).
pub async fn prepare(
    target: &str,
    embedded: bool,
    callback_url: Option<&url::Url>,
    callback_listen: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Setup, String> {
    let local = embedded || is_loopback_target(target);
    let mut config = ReceiverConfig::default();
    match (callback_url, callback_listen) {
        (Some(url), Some(listen)) => {
            config.public_url = Some(url.clone());
            config.listen = listen;
        }
        (None, Some(listen)) if local => config.listen = listen,
        (None, None) if local => {}
        (Some(_), None) => {
            return Err("--callback-url needs --callback-listen (the local address the tunnel or ingress forwards to)".into());
        }
        (None, _) => {
            return Ok(Setup::NotRun(
                "the target is not on this machine, so it cannot reach a receiver on loopback: pass --callback-url URL (a public URL of a tunnel or ingress) and --callback-listen ADDR (where it forwards to) to run the events check".into(),
            ));
        }
    }
    let listen = config.listen;
    match Receiver::start(config).await {
        Ok(receiver) => Ok(Setup::Ready(Probe {
            receiver,
            timeout,
            settle: if embedded {
                EMBEDDED_SETTLE
            } else {
                (timeout / 10).clamp(EMBEDDED_SETTLE, Duration::from_secs(1))
            },
        })),
        Err(e) => Err(format!("cannot listen for events on {listen}: {e}")),
    }
}

impl Probe {
    /// Runs both calls at once and judges their events; `requests` counts what was sent.
    pub async fn run(&self, client: &Client, requests: &AtomicU64) -> Vec<Verdict> {
        let a = CallRun::new(
            self,
            client,
            requests,
            "call A (participantsUpdated)",
            "gate-events-a",
        );
        let b = CallRun::new(
            self,
            client,
            requests,
            "call B (no events requested)",
            "gate-events-b",
        );
        let (a, b) = tokio::join!(a.subscribed(), b.unsubscribed());
        let mut verdicts = Vec::new();
        let mut ours = Vec::new();
        for run in [a, b] {
            ours.extend(run.id.clone());
            verdicts.extend(run.verdicts);
        }
        verdicts.push(self.strays(&ours));
        verdicts
    }

    /// Every event at this receiver belongs to one of the probe's calls: anything else
    /// names a call the gate never made, or none.
    fn strays(&self, ours: &[String]) -> Verdict {
        let foreign: Vec<String> = self
            .receiver
            .calls()
            .into_iter()
            .filter(|id| !ours.contains(id))
            .collect();
        let unattributed = self.receiver.unattributed();
        if foreign.is_empty() && unattributed.is_empty() {
            return Verdict::Pass(Endpoint::CreateCall);
        }
        let mut got = String::new();
        for id in foreign.iter().take(5) {
            let events = self.receiver.events_for(id);
            let _ = write!(
                got,
                "{} events for call {}: {}; ",
                events.len(),
                crate::redact::clip(id, 64),
                summary(&events)
            );
        }
        if !unattributed.is_empty() {
            let why = unattributed
                .iter()
                .find_map(|r| r.error.as_deref())
                .unwrap_or("unknown");
            let _ = write!(
                got,
                "{} events naming no call (first: {why}; body {})",
                unattributed.len(),
                body_text(&unattributed[0])
            );
        }
        Verdict::Fail(failure(
            Endpoint::CreateCall,
            "events: every event names a call the gate made".into(),
            format!(
                "every event at the gate's callbackUri names the call it belongs to ({})",
                ours.join(", ")
            ),
            got,
            Vec::new(),
        ))
    }
}

/// Records the verdicts in the `events` column.
pub fn record(report: &mut Report, verdicts: Vec<Verdict>) {
    for v in verdicts {
        match v {
            Verdict::Pass(e) => report.pass(e, Check::Events),
            Verdict::Fail(f) => report.fail(f),
        }
    }
}

fn failure(
    endpoint: Endpoint,
    case: String,
    expected: String,
    got: String,
    violations: Vec<Violation>,
) -> Failure {
    Failure {
        check: Check::Events,
        endpoint,
        case,
        expected,
        got,
        violations,
        send: None,
        shrunk: None,
    }
}

/// One probe call: its requests, its waits and its verdicts.
struct CallRun<'a> {
    probe: &'a Probe,
    client: &'a Client,
    requests: &'a AtomicU64,
    label: &'static str,
    tag: &'static str,
    id: Option<String>,
    verdicts: Vec<Verdict>,
}

/// What a call's events are held against at the end.
#[derive(Default)]
struct Expected {
    /// Play operation contexts, each with when its request was sent.
    plays: Vec<(String, Instant)>,
    /// Invitation operation contexts, each with when its request was sent.
    invites: Vec<(String, Instant)>,
    subscribed: bool,
}

impl<'a> CallRun<'a> {
    fn new(
        probe: &'a Probe,
        client: &'a Client,
        requests: &'a AtomicU64,
        label: &'static str,
        tag: &'static str,
    ) -> Self {
        CallRun {
            probe,
            client,
            requests,
            label,
            tag,
            id: None,
            verdicts: Vec::new(),
        }
    }

    fn rx(&self) -> &Receiver {
        &self.probe.receiver
    }

    fn events(&self) -> Vec<Received> {
        self.id
            .as_deref()
            .map(|id| dedup(self.rx().events_for(id)))
            .unwrap_or_default()
    }

    fn case(&self, what: &str) -> String {
        format!("events: {}: {what}", self.label)
    }

    fn pass(&mut self, endpoint: Endpoint) {
        self.verdicts.push(Verdict::Pass(endpoint));
    }

    /// A failure whose `got` is what the call received so far.
    fn fail(
        &mut self,
        endpoint: Endpoint,
        what: &str,
        expected: &str,
        extra: &str,
        v: Vec<Violation>,
    ) {
        let events = self.events();
        let got = format!("{extra}{}", summary(&events));
        let f = failure(endpoint, self.case(what), expected.to_string(), got, v);
        self.verdicts.push(Verdict::Fail(f));
    }

    fn check(&mut self, endpoint: Endpoint, what: &str, expected: &str, problem: Option<String>) {
        match problem {
            None => self.pass(endpoint),
            Some(p) => self.fail(endpoint, what, expected, &format!("{p}; "), Vec::new()),
        }
    }

    /// Sends a request of the probe; `Err` says why it was not accepted.
    async fn send(
        &self,
        endpoint: Endpoint,
        pid: Option<&str>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, String> {
        let path = endpoint.path(self.id.as_deref().unwrap_or(""), pid);
        let bytes = body.map(|b| b.to_string().into_bytes());
        let ct = bytes.as_ref().map(|_| "application/json");
        let result = self
            .client
            .send(
                endpoint.method(),
                &path,
                ct,
                bytes.as_deref(),
                AuthMode::Signed,
            )
            .await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(r) if (200..300).contains(&r.status) => Ok(r.body),
            Ok(r) => Err(super::checks::describe_reply(&r)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A request the events of a step depend on; a refusal is recorded as the step not
    /// run (the other checks judge the answer itself).
    async fn step(
        &mut self,
        endpoint: Endpoint,
        what: &str,
        pid: Option<&str>,
        body: Option<Value>,
    ) -> Option<Instant> {
        let at = Instant::now();
        match self.send(endpoint, pid, body).await {
            Ok(_) => Some(at),
            Err(why) => {
                self.fail(
                    endpoint,
                    what,
                    &format!("{} accepted, so its events can be judged", endpoint.name()),
                    &format!("not run: {why}; "),
                    Vec::new(),
                );
                None
            }
        }
    }

    /// Waits for an event of the call; a miss is recorded against `endpoint`.
    async fn wait(
        &mut self,
        endpoint: Endpoint,
        what: &str,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let id = self.id.clone()?;
        let deadline = tokio::time::Instant::now() + self.probe.timeout;
        let hit = self.rx().wait_for(&id, deadline, pred).await;
        if hit.is_none() {
            let timeout = self.probe.timeout;
            self.fail(
                endpoint,
                what,
                &format!(
                    "{what} within --event-timeout {}",
                    super::format_duration(timeout)
                ),
                &format!("no such event within {}; ", super::format_duration(timeout)),
                Vec::new(),
            );
        }
        hit
    }

    /// Creates the call with the receiver's callbackUri; false when it could not.
    async fn create(&mut self, events: &[&str]) -> bool {
        let body = json!({
            "source": {"communicationUser": {"id": "8:acs:b6aada1f-0b1d-47ac-866f-91aae00a1d01_00000010-aaaa-bbbb-cccc-0000000000e1"}},
            "targets": [{"phoneNumber": {"value": TARGET}}],
            "callbackUri": self.rx().callback_uri(self.tag),
            "requestedModalities": ["audio"],
            "requestedCallEvents": events,
        });
        match self.send(Endpoint::CreateCall, None, Some(body)).await {
            Ok(body) => match super::checks::call_leg_id(&body).filter(|id| !id.is_empty()) {
                Some(id) => {
                    self.id = Some(id);
                    true
                }
                None => {
                    let got = format!(
                        "not run: create call gave no callLegId: {}; ",
                        super::checks::snippet(&body, 160)
                    );
                    self.fail(
                        Endpoint::CreateCall,
                        "create call",
                        "a call to send events for",
                        &got,
                        Vec::new(),
                    );
                    false
                }
            },
            Err(why) => {
                self.fail(
                    Endpoint::CreateCall,
                    "create call",
                    "a call to send events for",
                    &format!("not run: create call failed: {why}; "),
                    Vec::new(),
                );
                false
            }
        }
    }

    /// `Establishing` then `Established`; false when the call got no event at all (the
    /// rest of its waits would only time out too).
    async fn established(&mut self) -> bool {
        let first = self
            .wait(
                Endpoint::CreateCall,
                "CallLegStateChanged Establishing after create call",
                |r| state_is(r, "Establishing"),
            )
            .await;
        if first.is_none() && self.events().is_empty() {
            return false;
        }
        self.wait(
            Endpoint::CreateCall,
            "CallLegStateChanged Established when the call connects",
            |r| state_is(r, "Established"),
        )
        .await;
        true
    }

    async fn hang_up(&mut self) -> Option<Received> {
        self.step(Endpoint::Hangup, "hang up", None, None).await?;
        self.wait(
            Endpoint::Hangup,
            "CallLegStateChanged Terminated after hang up",
            |r| state_is(r, "Terminated"),
        )
        .await
    }

    /// Waits a short while for anything after `Terminated` (which breaks the order):
    /// returns as soon as such an event arrives, else when the window ends.
    async fn settle(&self, terminated: &Received) {
        let Some(id) = self.id.as_deref() else { return };
        let after = terminated.at;
        let deadline = tokio::time::Instant::now() + self.probe.settle;
        let _ = self.rx().wait_for(id, deadline, |r| r.at > after).await;
    }

    /// Call A: subscribed to `participantsUpdated`.
    async fn subscribed(mut self) -> Self {
        let mut exp = Expected {
            subscribed: true,
            ..Expected::default()
        };
        if !self.create(&["participantsUpdated"]).await {
            return self;
        }
        if !self.established().await {
            let _ = self.send(Endpoint::Hangup, None, None).await;
            return self;
        }
        self.participants_updated(
            Endpoint::CreateCall,
            "ParticipantsUpdated when the call is established",
            |_| true,
            &[TARGET],
        )
        .await;
        // A looped play ends only when cancelled: its one result says so.
        let looped = "gate-events-loop";
        let play = json!({"audioFileUri": AUDIO, "loop": true, "operationContext": looped});
        if let Some(at) = self
            .step(Endpoint::PlayAudio, "play audio (loop)", None, Some(play))
            .await
        {
            exp.plays.push((looped.into(), at));
            if let Some(cancel_at) = self
                .step(
                    Endpoint::CancelMediaProcessing,
                    "cancel media processing",
                    None,
                    Some(json!({"operationContext": "gate-events-cancel"})),
                )
                .await
                && let Some(r) = self
                    .wait(
                        Endpoint::CancelMediaProcessing,
                        "PlayAudioResult of the cancelled looped play",
                        |r| context_is(r, "PlayAudioResult", looped),
                    )
                    .await
            {
                let problem = cancelled_problem(&r, cancel_at);
                self.check(
                    Endpoint::CancelMediaProcessing,
                    "PlayAudioResult after cancel media processing",
                    "PlayAudioResult after the cancel: Status Completed, ResultInfo Code 400, Subcode 8508, a message saying it was cancelled",
                    problem,
                );
            }
        }
        let once = "gate-events-play";
        let play = json!({"audioFileUri": AUDIO, "operationContext": once});
        if let Some(at) = self
            .step(Endpoint::PlayAudio, "play audio", None, Some(play))
            .await
        {
            exp.plays.push((once.into(), at));
            if let Some(r) = self
                .wait(Endpoint::PlayAudio, "PlayAudioResult of the play", |r| {
                    context_is(r, "PlayAudioResult", once)
                })
                .await
            {
                let problem = played_problem(&r);
                self.check(
                    Endpoint::PlayAudio,
                    "PlayAudioResult of a play",
                    "Status Completed with ResultInfo Code 200, or Failed",
                    problem,
                );
            }
        }
        if let Some((pid, at)) = self.invite(&mut exp, "gate-events-invite").await {
            let pid2 = pid.clone();
            self.participants_updated(
                Endpoint::InviteParticipants,
                "ParticipantsUpdated after the invitation",
                move |r| r.at >= at && participant_ids(r).contains(&pid2),
                &[TARGET, &pid],
            )
            .await;
            if let Some(at) = self
                .step(
                    Endpoint::RemoveParticipant,
                    "remove participant",
                    Some(&pid),
                    None,
                )
                .await
            {
                let pid2 = pid.clone();
                self.participants_updated(
                    Endpoint::RemoveParticipant,
                    "ParticipantsUpdated after the removal",
                    move |r| r.at >= at && !participant_ids(r).contains(&pid2),
                    &[TARGET],
                )
                .await;
            }
        }
        if let Some(t) = self.hang_up().await {
            self.settle(&t).await;
        }
        self.judge(&exp);
        self
    }

    /// Call B: subscribed to nothing.
    async fn unsubscribed(mut self) -> Self {
        let mut exp = Expected::default();
        if !self.create(&[]).await {
            return self;
        }
        if !self.established().await {
            let _ = self.send(Endpoint::Hangup, None, None).await;
            return self;
        }
        let _ = self.invite(&mut exp, "gate-events-invite-b").await;
        if let Some(t) = self.hang_up().await {
            self.settle(&t).await;
        }
        self.judge(&exp);
        self
    }

    /// Waits for a `ParticipantsUpdated` matching `pred` and judges that it lists
    /// exactly the participant ids `want`.
    async fn participants_updated(
        &mut self,
        endpoint: Endpoint,
        what: &str,
        pred: impl Fn(&Received) -> bool,
        want: &[&str],
    ) {
        if let Some(r) = self
            .wait(endpoint, what, move |r| is_participants(r) && pred(r))
            .await
        {
            let problem = participants_problem(&r, want);
            let expected = format!("Participants listing exactly {want:?} (targets included)");
            self.check(endpoint, what, &expected, problem);
        }
    }

    /// Invites one new participant (by a rawId) and judges its result; returns its
    /// participantId and when the request was sent, when it was accepted.
    async fn invite(&mut self, exp: &mut Expected, context: &str) -> Option<(String, Instant)> {
        let pid = format!("gate-events-{}", uuid::Uuid::new_v4().simple());
        let body = json!({"participants": [{"communicationUser": {"id": format!("8:acs:{pid}")}, "rawId": pid}], "operationContext": context});
        let at = self
            .step(
                Endpoint::InviteParticipants,
                "invite participants",
                None,
                Some(body),
            )
            .await?;
        exp.invites.push((context.into(), at));
        self.invite_result(context, &pid).await;
        Some((pid, at))
    }

    async fn invite_result(&mut self, context: &str, pid: &str) {
        let ctx = context.to_string();
        if let Some(r) = self
            .wait(
                Endpoint::InviteParticipants,
                "InviteParticipantResult of the invitation",
                move |r| context_is(r, "InviteParticipantResult", &ctx),
            )
            .await
        {
            let problem = invite_problem(&r, pid);
            self.check(
                Endpoint::InviteParticipants,
                "InviteParticipantResult of an invitation",
                "Status Completed or Failed, and the invited identifiers in Participants",
                problem,
            );
        }
    }

    /// The rules on the call's whole event list: shapes, the call named, order, counts.
    fn judge(&mut self, exp: &Expected) {
        let Some(id) = self.id.clone() else { return };
        let events = self.events();
        // Shapes and the call named, per event; one verdict per endpoint the events
        // belong to.
        let mut bad: Vec<(Endpoint, usize, Vec<Violation>)> = Vec::new();
        let mut good: BTreeSet<Endpoint> = BTreeSet::new();
        for (i, r) in events.iter().enumerate() {
            let mut v = validate_event(&r.body);
            v.extend(names_the_call(r, &id, self.tag));
            let e = endpoint_of(r);
            if v.is_empty() {
                good.insert(e);
            } else if !bad.iter().any(|(b, _, _)| *b == e) {
                bad.push((e, i, v));
            }
        }
        for (e, i, v) in bad {
            good.remove(&e);
            let what = format!(
                "event #{} ({}) shape and call",
                i + 1,
                type_name(&events[i])
            );
            let extra = format!("event #{}: {}; ", i + 1, body_text(&events[i]));
            self.fail(
                e,
                &what,
                "the envelope and data of the Events section (PascalCase data keys), naming this call in subject and data.CallLegId, sent to its callbackUri",
                &extra,
                v,
            );
        }
        for e in good {
            self.pass(e);
        }
        // Order: Establishing first, Terminated last, each state once.
        let states: Vec<&str> = events.iter().filter_map(call_state).collect();
        let problem = match events.first() {
            Some(r) if state_is(r, "Establishing") => None,
            Some(r) => Some(format!("the first event is {}", type_name(r))),
            None => Some("no event".into()),
        };
        self.check(
            Endpoint::CreateCall,
            "order: Establishing first",
            "CallLegStateChanged Establishing before any other event of the call",
            problem,
        );
        let problem = ["Establishing", "Established", "Terminating", "Terminated"]
            .iter()
            .find(|s| states.iter().filter(|x| x == s).count() > 1)
            .map(|s| {
                format!("CallState {s} was sent more than once (a retry keeps the event's id)")
            });
        self.check(
            Endpoint::CreateCall,
            "each call state once",
            "each CallState at most once per call",
            problem,
        );
        if states.contains(&"Terminated") {
            let problem = match events.last() {
                Some(r) if state_is(r, "Terminated") => None,
                Some(r) => Some(format!("{} came after Terminated", type_name(r))),
                None => None,
            };
            self.check(
                Endpoint::Hangup,
                "order: nothing after Terminated",
                "Terminated as the call's last event",
                problem,
            );
            let problem = match (
                states.iter().position(|s| *s == "Terminating"),
                states.iter().position(|s| *s == "Terminated"),
            ) {
                (Some(a), Some(b)) if a < b => None,
                (Some(_), _) => Some("Terminating came after Terminated".to_string()),
                (None, _) => Some("no Terminating before Terminated".to_string()),
            };
            self.check(
                Endpoint::Hangup,
                "Terminating then Terminated",
                "CallLegStateChanged Terminating, then Terminated, after hang up",
                problem,
            );
        }
        // Exactly one result per accepted operation, never before its request.
        for (kind, list, endpoint) in [
            ("PlayAudioResult", &exp.plays, Endpoint::PlayAudio),
            (
                "InviteParticipantResult",
                &exp.invites,
                Endpoint::InviteParticipants,
            ),
        ] {
            for (ctx, at) in list {
                let results: Vec<&Received> =
                    events.iter().filter(|r| context_is(r, kind, ctx)).collect();
                let problem = match results.as_slice() {
                    [one] if one.at >= *at => None,
                    [_] => Some(format!(
                        "the {kind} for {ctx:?} came before its request was sent"
                    )),
                    [] => Some(format!("no {kind} for {ctx:?}")),
                    more => Some(format!("{} {kind} events for {ctx:?}", more.len())),
                };
                self.check(
                    endpoint,
                    &format!("exactly one {kind} for {ctx:?}"),
                    &format!("exactly one {kind} per accepted request, with its OperationContext"),
                    problem,
                );
            }
            let known: Vec<&str> = list.iter().map(|(c, _)| c.as_str()).collect();
            let strays: Vec<String> = events
                .iter()
                .filter(|r| type_is(r, kind))
                .filter(|r| {
                    !r.body["data"]["OperationContext"]
                        .as_str()
                        .is_some_and(|c| known.contains(&c))
                })
                .map(|r| crate::redact::clip(&r.body["data"]["OperationContext"].to_string(), 64))
                .collect();
            let problem = (!strays.is_empty()).then(|| {
                format!(
                    "{kind} events with an OperationContext of no request: {}",
                    strays.join(", ")
                )
            });
            self.check(
                endpoint,
                &format!("{kind} echoes OperationContext"),
                "the OperationContext of the request in each result",
                problem,
            );
        }
        // Subscriptions: this probe never asks for DTMF; call B asks for nothing.
        let count = |kind: &str| events.iter().filter(|r| type_is(r, kind)).count();
        let dtmf = count("DtmfReceived");
        self.check(
            Endpoint::CreateCall,
            "DtmfReceived only when subscribed",
            "no DtmfReceived without dtmfReceived in requestedCallEvents",
            (dtmf > 0).then(|| format!("{dtmf} DtmfReceived events")),
        );
        if !exp.subscribed {
            let updates = count("ParticipantsUpdated");
            self.check(
                Endpoint::CreateCall,
                "ParticipantsUpdated only when subscribed",
                "no ParticipantsUpdated without participantsUpdated in requestedCallEvents",
                (updates > 0).then(|| format!("{updates} ParticipantsUpdated events")),
            );
        }
    }
}

/// Deliveries of one event (same non-null `id`, a retry) count once.
fn dedup(events: Vec<Received>) -> Vec<Received> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|r| match r.body.get("id").and_then(Value::as_str) {
            Some(id) => seen.insert(id.to_string()),
            None => true,
        })
        .collect()
}

/// The event type without its `Microsoft.Communication.` prefix.
fn short_type(r: &Received) -> Option<&str> {
    r.body
        .get("eventType")?
        .as_str()
        .map(|t| t.strip_prefix("Microsoft.Communication.").unwrap_or(t))
}

fn type_is(r: &Received, kind: &str) -> bool {
    short_type(r) == Some(kind)
}

fn type_name(r: &Received) -> String {
    let mut s = match short_type(r) {
        Some(t) => crate::redact::clip(t, 64),
        None => "an event without eventType".into(),
    };
    if let Some(state) = call_state(r) {
        let _ = write!(s, " {}", crate::redact::clip(state, 32));
    }
    s
}

fn call_state(r: &Received) -> Option<&str> {
    if !type_is(r, "CallLegStateChanged") {
        return None;
    }
    r.body["data"]["CallState"].as_str()
}

fn state_is(r: &Received, state: &str) -> bool {
    call_state(r) == Some(state)
}

fn is_participants(r: &Received) -> bool {
    type_is(r, "ParticipantsUpdated")
}

fn context_is(r: &Received, kind: &str, context: &str) -> bool {
    type_is(r, kind) && r.body["data"]["OperationContext"].as_str() == Some(context)
}

fn participant_ids(r: &Received) -> Vec<String> {
    r.body["data"]["Participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["ParticipantId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a `ParticipantsUpdated` lists exactly these participant ids.
fn participants_problem(r: &Received, expected: &[&str]) -> Option<String> {
    let got: BTreeSet<String> = participant_ids(r).into_iter().collect();
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    (got != want).then(|| {
        format!(
            "Participants lists ParticipantId {:?}, expected {:?}",
            got.iter()
                .map(|s| crate::redact::clip(s, 64))
                .collect::<Vec<_>>(),
            want
        )
    })
}

fn result_info(r: &Received) -> (Option<i64>, Option<i64>, Option<&str>) {
    let info = &r.body["data"]["ResultInfo"];
    (
        info["Code"].as_i64(),
        info["Subcode"].as_i64(),
        info["Message"].as_str(),
    )
}

fn cancelled_problem(r: &Received, cancel_at: Instant) -> Option<String> {
    let status = r.body["data"]["Status"].as_str();
    let (code, sub, message) = result_info(r);
    if r.at < cancel_at {
        return Some("the looped play's result came before cancel media processing was sent (a looped play never ends by itself)".into());
    }
    let cancelled = message.is_some_and(|m| m.to_ascii_lowercase().contains("cancel"));
    (status != Some("Completed") || code != Some(400) || sub != Some(8508) || !cancelled).then(
        || {
            format!(
                "Status {status:?}, Code {code:?}, Subcode {sub:?}, Message {:?}",
                message.map(|m| crate::redact::clip(m, 120))
            )
        },
    )
}

fn played_problem(r: &Received) -> Option<String> {
    let status = r.body["data"]["Status"].as_str();
    let (code, _, _) = result_info(r);
    match status {
        Some("Completed") if code == Some(200) => None,
        Some("Failed") => None,
        _ => Some(format!("Status {status:?} with Code {code:?}")),
    }
}

fn invite_problem(r: &Received, pid: &str) -> Option<String> {
    let status = r.body["data"]["Status"].as_str();
    if !matches!(status, Some("Completed" | "Failed")) {
        return Some(format!("Status {status:?}"));
    }
    let listed = r.body["data"]["Participants"].as_array().is_some_and(|ps| {
        ps.iter().any(|p| {
            p["RawId"].as_str() == Some(pid)
                || p["CommunicationUser"]["Id"].as_str() == Some(&format!("8:acs:{pid}"))
        })
    });
    (!listed).then(|| "Participants does not list the invited identifier".to_string())
}

/// The endpoint whose cell an event's shape verdict goes to.
fn endpoint_of(r: &Received) -> Endpoint {
    match short_type(r) {
        Some("CallLegStateChanged")
            if matches!(call_state(r), Some("Terminating" | "Terminated")) =>
        {
            Endpoint::Hangup
        }
        Some("PlayAudioResult") => Endpoint::PlayAudio,
        Some("InviteParticipantResult") => Endpoint::InviteParticipants,
        _ => Endpoint::CreateCall,
    }
}

/// The event names `call` in its subject and `data.CallLegId` and came to the call's
/// callbackUri (the receiver may have attributed it by one of them alone).
fn names_the_call(r: &Received, call: &str, tag: &str) -> Vec<Violation> {
    let mut v = Vec::new();
    let subject_call = r.body["subject"]
        .as_str()
        .and_then(|s| s.strip_prefix("callLeg/"))
        .and_then(|s| s.split('/').next());
    if subject_call.is_some_and(|s| s != call) {
        v.push(Violation {
            path: "subject".into(),
            rule: Rule::WrongType,
            message: format!(
                "names call {}, not {}",
                crate::redact::clip(subject_call.unwrap_or(""), 64),
                crate::redact::clip(call, 64)
            ),
        });
    }
    if let Some(id) = r.body["data"]["CallLegId"].as_str()
        && id != call
    {
        v.push(Violation {
            path: "data.CallLegId".into(),
            rule: Rule::WrongType,
            message: format!(
                "names call {}, not {}",
                crate::redact::clip(id, 64),
                crate::redact::clip(call, 64)
            ),
        });
    }
    let path = r.path.split('?').next().unwrap_or("");
    if path.rsplit('/').next() != Some(tag) {
        v.push(Violation {
            path: String::new(),
            rule: Rule::WrongType,
            message: "sent to another callbackUri than the call's own".into(),
        });
    }
    v
}

/// An event's body for a failure, cut (the report scrubs it again).
fn body_text(r: &Received) -> String {
    if r.body.is_null() {
        return format!("{} bytes, not JSON", r.raw_len);
    }
    crate::redact::clip(&r.body.to_string(), 400)
}

/// The events of a call in one line each: type, state, context, status, participants.
fn summary(events: &[Received]) -> String {
    if events.is_empty() {
        return "no event received for the call".into();
    }
    let mut out = format!("{} events received for the call:", events.len());
    for (i, r) in events.iter().take(EVENTS_SHOWN).enumerate() {
        let _ = write!(out, " #{} {}", i + 1, type_name(r));
        let data = &r.body["data"];
        if let Some(c) = data["OperationContext"].as_str() {
            let _ = write!(out, " {}", crate::redact::clip(c, 40));
        }
        if let Some(s) = data["Status"].as_str() {
            let _ = write!(out, " {}", crate::redact::clip(s, 20));
        }
        if let Some(code) = data["ResultInfo"]["Code"].as_i64() {
            let _ = write!(out, " {code}");
        }
        if is_participants(r) {
            let ids: Vec<String> = participant_ids(r)
                .iter()
                .map(|p| crate::redact::clip(p, 40))
                .collect();
            let _ = write!(out, " [{}]", ids.join(", "));
        }
        out.push(';');
    }
    if events.len() > EVENTS_SHOWN {
        let _ = write!(out, " … and {} more", events.len() - EVENTS_SHOWN);
    }
    out
}

/// The envelope and `data` rules of the Events section for one event body, from the
/// contract's schema table.
fn validate_event(body: &Value) -> Vec<Violation> {
    crate::contract::events::validate_event(body)
        .err()
        .unwrap_or_default()
}

/// A listen address for `--callback-listen`: `HOST:PORT` with an IP host.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 0.0.0.0:8081 or [::]:8081)"))
}

/// A `--callback-url`: an absolute http(s) URL.
pub fn parse_callback_url(s: &str) -> Result<url::Url, String> {
    let shown = crate::redact::url(s);
    match url::Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
        _ => Err(format!("{shown} is not an http(s) URL with a host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ty: &str, kind: &str, data: Value) -> Value {
        json!({
            "id": "e1", "topic": null, "subject": format!("callLeg/c1/{kind}"),
            "data": data, "eventType": format!("Microsoft.Communication.{ty}"),
            "eventTime": "2021-05-05T20:38:22.0476663Z", "metadataVersion": null, "dataVersion": null
        })
    }

    #[test]
    fn the_contract_examples_validate() {
        let examples = [
            (
                "CallLegStateChanged",
                "callState",
                json!({"CallLegId": "c1", "ConversationId": null, "CallState": "Establishing"}),
            ),
            (
                "PlayAudioResult",
                "playAudio",
                json!({"CallLegId": "c1", "OperationContext": "x", "Status": "Completed", "ResultInfo": {"Code": 200, "Subcode": 0, "Message": "ok"}}),
            ),
            (
                "ParticipantsUpdated",
                "participantsUpdated",
                json!({"CallLegId": "c1", "Participants": [
                {"Identifier": {"RawId": "4:+14251001000", "PhoneNumber": {"Value": "+14251001000"}}, "ParticipantId": "+14251001000", "IsMuted": false}]}),
            ),
            (
                "DtmfReceived",
                "dtmf",
                json!({"CallLegId": "c1", "ToneInfo": {"SequenceId": 0, "Tone": "Tone5"}}),
            ),
            (
                "InviteParticipantResult",
                "inviteParticipantResult",
                json!({"CallLegId": "c1", "OperationContext": null, "Status": "Failed", "ResultInfo": null,
                "Participants": [{"CommunicationUser": {"Id": "8:acs:x"}}]}),
            ),
        ];
        for (ty, kind, data) in examples {
            let v = validate_event(&ev(ty, kind, data));
            assert!(v.is_empty(), "{ty}: {v:?}");
        }
    }

    #[test]
    fn broken_events_name_what_is_wrong() {
        let camel = ev(
            "CallLegStateChanged",
            "callState",
            json!({"callLegId": "c1", "conversationId": null, "callState": "Establishing"}),
        );
        let v = validate_event(&camel);
        assert!(
            v.iter()
                .any(|x| x.path == "data.callLegId" && x.message.contains("PascalCase")),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|x| x.path == "data.CallLegId" && x.rule == Rule::Missing),
            "{v:?}"
        );
        let mut bad = ev(
            "PlayAudioResult",
            "dtmf",
            json!({"CallLegId": "c1", "Status": "Done", "ResultInfo": {"Code": "200"}}),
        );
        bad["eventTime"] = json!("2021-05-05T22:38:22+02:00");
        let paths: Vec<String> = validate_event(&bad).into_iter().map(|x| x.path).collect();
        for p in [
            "subject",
            "eventTime",
            "data.Status",
            "data.ResultInfo.Code",
            "data.ResultInfo.Subcode",
        ] {
            assert!(paths.contains(&p.to_string()), "{p}: {paths:?}");
        }
        assert_eq!(validate_event(&json!([1]))[0].rule, Rule::NotObject);
    }

    #[test]
    fn loopback_targets_and_flags() {
        assert!(is_loopback_target("http://127.0.0.1:8080"));
        assert!(is_loopback_target("http://[::1]:1/"));
        assert!(is_loopback_target("http://LOCALHOST"));
        assert!(!is_loopback_target("https://x.communication.azure.com"));
        assert!(parse_listen("0.0.0.0:8081").is_ok());
        assert!(parse_listen("localhost:1").is_err());
        assert!(parse_callback_url("https://t.example/hook?k=1").is_ok());
        assert!(parse_callback_url("ftp://t.example").is_err());
    }

    #[tokio::test]
    async fn a_remote_target_without_a_callback_url_is_not_run() {
        let s = prepare(
            "https://x.example",
            false,
            None,
            None,
            DEFAULT_EVENT_TIMEOUT,
        )
        .await
        .unwrap();
        assert!(
            matches!(s, Setup::NotRun(ref r) if r.contains("--callback-url")),
            "{s:?}"
        );
        let url = url::Url::parse("https://t.example/h").unwrap();
        assert!(
            prepare(
                "https://x.example",
                false,
                Some(&url),
                None,
                DEFAULT_EVENT_TIMEOUT
            )
            .await
            .is_err()
        );
        let s = prepare(
            "http://127.0.0.1:9",
            false,
            None,
            None,
            DEFAULT_EVENT_TIMEOUT,
        )
        .await
        .unwrap();
        assert!(matches!(s, Setup::Ready(_)));
    }
}
