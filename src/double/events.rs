//! The double's events (src/contract/CONTRACT.md, "Events"): a typed model of each
//! event body, and the engine that schedules and delivers them.
//!
//! The handler decides *which* events a request causes and tells the engine (`on_*`
//! methods); the engine schedules the timed ones (answer delay, play duration), keeps
//! one ordered queue per call with one delivery in flight, retries with growing pauses,
//! and bounds everything: queued events (count and bytes), running plays per call,
//! history kept for the control API, finished calls remembered. Events go only to
//! allowed hosts ([`CallbackHosts`]): a generated body's made-up public host is never
//! contacted.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Default pause between create call and the `Established` event.
pub const DEFAULT_ANSWER_DELAY: Duration = Duration::from_millis(200);

/// Default time a (non-looping) play audio takes until its `Completed` result.
pub const DEFAULT_PLAY_DURATION: Duration = Duration::from_secs(1);

/// The contract's deadline for one delivery attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivery attempts per event (the first and the retries) before it is given up.
pub const DEFAULT_ATTEMPTS: u32 = 4;

/// The pause before the first retry; each further retry waits twice as long.
pub const DEFAULT_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Default bound on events waiting for delivery, over all calls.
pub const DEFAULT_MAX_QUEUED: usize = 100_000;

/// Default bound on the bytes of events waiting for delivery, over all calls (64 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Events remembered per call for the control API (the most recent ones).
pub const HISTORY_PER_CALL: usize = 64;

/// Bytes of event history kept over all calls (32 MiB); the oldest entries go beyond it.
pub const MAX_HISTORY_BYTES: usize = 32 * 1024 * 1024;

/// Hung-up calls whose history is kept for the control API; the oldest go beyond it.
pub const FINISHED_CALLS_KEPT: usize = 10_000;

/// Running plays per call at most: a client starting loop plays without end cancels
/// its oldest beyond it (each gets its cancelled result).
pub const MAX_PLAYS_PER_CALL: usize = 256;

/// Deliveries in flight at once over all calls (each holds a socket).
pub const MAX_IN_FLIGHT: usize = 512;

/// Keys accepted in one simulated key press request.
pub const MAX_TONES: usize = 256;

/// Bytes of a receiver's answer read at most (the rest is dropped with the connection).
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// At most one log line per this interval about overflow or given-up events.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The hosts events may be sent to besides loopback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CallbackHosts {
    /// Loopback only: 127.0.0.0/8, ::1 and `localhost`.
    #[default]
    Loopback,
    /// Loopback and these host names or addresses (compared case-insensitively).
    Also(Vec<String>),
    /// Any host (`*`): the user asked for it explicitly.
    Any,
    /// Only these hosts, loopback names included only when listed: the embedded double
    /// of `contract` and `load` delivers to their receiver on 127.0.0.1 alone, never to
    /// the `localhost`/`[::1]` callbacks of generated bodies (a developer's own app may
    /// listen there).
    Exactly(Vec<String>),
}

impl CallbackHosts {
    /// Parses `--callback-hosts`: `*`, or hosts separated by commas (no scheme or port).
    pub fn parse(s: &str) -> Result<CallbackHosts, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(CallbackHosts::Any);
        }
        let mut hosts = Vec::new();
        for h in s.split(',').map(str::trim) {
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            if bare.is_empty() || bare.contains(['/', ' ', '@', '*']) || h.contains("://") {
                return Err(format!(
                    "{h:?} is not a host name or address (use e.g. app.test,10.0.0.5 or *)"
                ));
            }
            if bare.parse::<IpAddr>().is_err() && bare.contains(':') {
                return Err(format!("{h:?}: give the host without a port"));
            }
            hosts.push(bare.to_ascii_lowercase());
        }
        Ok(CallbackHosts::Also(hosts))
    }

    /// Whether events may be sent to `url`.
    pub fn allows(&self, url: &url::Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let host = || {
            url.host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        };
        if let CallbackHosts::Exactly(hosts) = self {
            return hosts.contains(&host());
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => return false,
        };
        if loopback {
            return true;
        }
        match self {
            CallbackHosts::Loopback => false,
            CallbackHosts::Any => true,
            CallbackHosts::Also(hosts) | CallbackHosts::Exactly(hosts) => hosts.contains(&host()),
        }
    }
}

/// How the double sends events: on or off, timing, allowed hosts, retries and bounds.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Whether events are produced and sent at all (off: the double answers requests
    /// only, e.g. to measure request throughput alone).
    pub enabled: bool,
    /// Pause between create call (`Establishing`) and `Established`.
    pub answer_delay: Duration,
    /// How long a non-looping play audio plays before its `Completed` result.
    pub play_duration: Duration,
    /// Hosts besides loopback events may go to.
    pub callback_hosts: CallbackHosts,
    /// Attempts per event before it is given up (at least 1).
    pub attempts: u32,
    /// Pause before the first retry, doubling for each further one.
    pub retry_pause: Duration,
    /// Deadline of one delivery attempt (the contract's 5 s).
    pub attempt_timeout: Duration,
    /// Events waiting for delivery at most, over all calls; beyond it new events are
    /// dropped and counted.
    pub max_queued: usize,
    /// Bytes of events waiting for delivery at most, over all calls.
    pub max_queued_bytes: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            answer_delay: DEFAULT_ANSWER_DELAY,
            play_duration: DEFAULT_PLAY_DURATION,
            callback_hosts: CallbackHosts::Loopback,
            attempts: DEFAULT_ATTEMPTS,
            retry_pause: DEFAULT_RETRY_PAUSE,
            attempt_timeout: ATTEMPT_TIMEOUT,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

/// The five event types: the contract's own (its names, `eventType`s and subjects come
/// from the schema table).
pub use crate::contract::events::EventType;

/// A call's state as `CallLegStateChanged` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Created, not yet connected.
    Establishing,
    /// Connected.
    Established,
    /// Hanging up.
    Terminating,
    /// Gone; nothing is sent after this.
    Terminated,
}

impl CallState {
    /// The contract's literal.
    pub fn name(self) -> &'static str {
        match self {
            CallState::Establishing => "Establishing",
            CallState::Established => "Established",
            CallState::Terminating => "Terminating",
            CallState::Terminated => "Terminated",
        }
    }
}

/// A key a participant can press, with the `Tone` literal it is reported as.
pub fn tone(key: char) -> Option<&'static str> {
    const DIGITS: [&str; 10] = [
        "Tone0", "Tone1", "Tone2", "Tone3", "Tone4", "Tone5", "Tone6", "Tone7", "Tone8", "Tone9",
    ];
    Some(match key {
        '0'..='9' => DIGITS[key as usize - '0' as usize],
        '*' => "Star",
        '#' => "Pound",
        'A' => "A",
        'B' => "B",
        'C' => "C",
        'D' => "D",
        _ => return None,
    })
}

/// How a play audio ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    /// The audio played to its end.
    Completed,
    /// Cancel media processing or hang up stopped it.
    Cancelled,
}

/// A participant as events list it: its id and its identifier in PascalCase.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// The `participantId`.
    pub id: Arc<str>,
    /// The CommunicationIdentifier with PascalCase keys.
    pub identifier: Arc<Value>,
}

/// What an event says, per type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// `CallLegStateChanged`.
    CallLegStateChanged {
        /// Set once established.
        conversation_id: Option<String>,
        /// The new state.
        state: CallState,
    },
    /// `ParticipantsUpdated`: the whole list after the change.
    ParticipantsUpdated {
        /// Everyone in the call.
        participants: Vec<Participant>,
    },
    /// `DtmfReceived`.
    DtmfReceived {
        /// Counts per call from 0.
        sequence_id: u64,
        /// The `Tone` literal.
        tone: &'static str,
    },
    /// `PlayAudioResult`.
    PlayAudioResult {
        /// The request's `operationContext`, when it had one.
        operation_context: Option<String>,
        /// How it ended.
        outcome: PlayOutcome,
    },
    /// `InviteParticipantResult`.
    InviteParticipantResult {
        /// The request's `operationContext` (`null` without).
        operation_context: Option<String>,
        /// The invited identifiers, PascalCase.
        participants: Vec<Arc<Value>>,
    },
}

/// One event of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique per event; the same on every retry.
    pub id: String,
    /// The call it belongs to.
    pub call_leg_id: Arc<str>,
    /// `eventTime`, RFC 3339 UTC.
    pub time: String,
    /// The payload.
    pub data: EventData,
}

impl EventData {
    /// The type of an event with this payload.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::CallLegStateChanged { .. } => EventType::CallLegStateChanged,
            EventData::ParticipantsUpdated { .. } => EventType::ParticipantsUpdated,
            EventData::DtmfReceived { .. } => EventType::DtmfReceived,
            EventData::PlayAudioResult { .. } => EventType::PlayAudioResult,
            EventData::InviteParticipantResult { .. } => EventType::InviteParticipantResult,
        }
    }
}

impl Event {
    /// A new event now, with a fresh id.
    pub fn new(call_leg_id: Arc<str>, data: EventData) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            call_leg_id,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            data,
        }
    }

    /// Its type.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The body as sent: the contract's envelope around the PascalCase `data`.
    pub fn to_json(&self) -> Value {
        let ty = self.event_type();
        let call = &*self.call_leg_id;
        let data = match &self.data {
            EventData::CallLegStateChanged {
                conversation_id,
                state,
            } => json!({
                "CallLegId": call,
                "ConversationId": conversation_id,
                "CallState": state.name(),
            }),
            EventData::ParticipantsUpdated { participants } => {
                let list: Vec<Value> = participants
                    .iter()
                    .map(|p| {
                        json!({
                            "Identifier": &*p.identifier,
                            "ParticipantId": &*p.id,
                            "IsMuted": false,
                        })
                    })
                    .collect();
                json!({ "CallLegId": call, "Participants": list })
            }
            EventData::DtmfReceived { sequence_id, tone } => json!({
                "CallLegId": call,
                "ToneInfo": { "SequenceId": sequence_id, "Tone": tone },
            }),
            EventData::PlayAudioResult {
                operation_context,
                outcome,
            } => {
                let (code, subcode, message) = match outcome {
                    PlayOutcome::Completed => (200, 0, "Audio file playback completed."),
                    PlayOutcome::Cancelled => (
                        400,
                        8508,
                        "Action failed: the play audio operation was cancelled.",
                    ),
                };
                let mut d = json!({
                    "CallLegId": call,
                    "Status": "Completed",
                    "ResultInfo": { "Code": code, "Subcode": subcode, "Message": message },
                });
                if let Some(ctx) = operation_context {
                    d["OperationContext"] = Value::String(ctx.clone());
                }
                d
            }
            EventData::InviteParticipantResult {
                operation_context,
                participants,
            } => {
                let list: Vec<&Value> = participants.iter().map(|p| &**p).collect();
                json!({
                    "CallLegId": call,
                    "OperationContext": operation_context,
                    "Status": "Completed",
                    "ResultInfo": {
                        "Code": 200, "Subcode": 0, "Message": "The participants were invited."
                    },
                    "Participants": list,
                })
            }
        };
        json!({
            "id": self.id,
            "topic": null,
            "subject": format!("callLeg/{call}/{}", ty.subject_kind()),
            "data": data,
            "eventType": ty.event_type(),
            "eventTime": self.time,
            "metadataVersion": null,
            "dataVersion": null,
        })
    }
}

/// A request's CommunicationIdentifier with the PascalCase keys events use; unknown
/// properties (ignored by the contract) are left out.
pub fn pascal_identifier(identifier: &Value) -> Value {
    const KEYS: [(&str, &str); 9] = [
        ("rawId", "RawId"),
        ("communicationUser", "CommunicationUser"),
        ("id", "Id"),
        ("phoneNumber", "PhoneNumber"),
        ("value", "Value"),
        ("microsoftTeamsUser", "MicrosoftTeamsUser"),
        ("userId", "UserId"),
        ("isAnonymous", "IsAnonymous"),
        ("cloud", "Cloud"),
    ];
    match identifier {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .filter_map(|(k, v)| {
                    let (_, pascal) = KEYS.iter().find(|(camel, _)| camel == k)?;
                    Some((pascal.to_string(), pascal_identifier(v)))
                })
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Waiting for its turn.
    Queued,
    /// Being sent (or waiting before a retry).
    Sending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; the engine went on with the next event.
    GivenUp,
    /// The callback host is not allowed (`--callback-hosts`): recorded, never sent.
    NotAllowed,
    /// The queue bound was reached: recorded, never sent.
    Dropped,
    /// The call was evicted or the double stopped before it could be sent.
    Abandoned,
}

impl Delivery {
    /// The literal the control API shows.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Queued => "queued",
            Delivery::Sending => "sending",
            Delivery::Delivered => "delivered",
            Delivery::GivenUp => "givenUp",
            Delivery::NotAllowed => "notAllowed",
            Delivery::Dropped => "dropped",
            Delivery::Abandoned => "abandoned",
        }
    }
}

/// One event in a call's history, with its delivery status.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The event's `id`.
    pub id: String,
    /// Its type.
    pub event_type: EventType,
    /// Where it stands.
    pub delivery: Delivery,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt's outcome (`200`, `503`, `timed out`, ...), if any.
    pub last_result: Option<String>,
    /// The body as sent; `None` for an event of a call whose callback host is not
    /// allowed: such events are counted and listed, never built (a generated body's
    /// thousands of targets would cost as much as the request itself).
    pub body: Option<Bytes>,
}

impl EventRecord {
    /// The control API's JSON of this record.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "eventType": self.event_type.event_type(),
            "delivery": self.delivery.name(),
            "attempts": self.attempts,
            "lastResult": self.last_result,
            "body": self
                .body
                .as_ref()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .unwrap_or(Value::Null),
        })
    }
}

/// A running play audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPlay {
    /// The media operation `id` of the 202.
    pub id: String,
    /// Its `operationContext`.
    pub operation_context: Option<String>,
    /// Whether it loops (then only cancel or hang up ends it).
    pub looped: bool,
}

/// Counters of the event engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounters {
    /// Events produced.
    pub produced: u64,
    /// Events the receiver acknowledged with 2xx.
    pub delivered: u64,
    /// Delivery attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Events given up after every attempt failed.
    pub given_up: u64,
    /// Events not sent because their host is not allowed.
    pub not_allowed: u64,
    /// Events dropped because the queue bound was reached.
    pub dropped: u64,
    /// Events waiting for delivery now.
    pub queued: u64,
    /// Bytes of events waiting for delivery now.
    pub queued_bytes: u64,
}

#[derive(Default)]
struct Stats {
    produced: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
    not_allowed: AtomicU64,
    dropped: AtomicU64,
}

/// Lets one log line through per interval and counts the rest.
struct RateLog {
    last: Mutex<Option<Instant>>,
    held: AtomicU64,
}

impl RateLog {
    fn new() -> Self {
        RateLog {
            last: Mutex::new(None),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    fn ready(&self) -> Option<u64> {
        let mut last = lock(&self.last);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics under these locks; should it, keep going with the data as is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An event waiting for delivery.
struct Pending {
    id: String,
    body: Bytes,
}

/// The engine's view of one call.
struct CallEvents {
    id: Arc<str>,
    callback: url::Url,
    allowed: bool,
    participants_updated: bool,
    dtmf: bool,
    state: CallState,
    conversation_id: Option<String>,
    participants: Vec<Participant>,
    plays: VecDeque<RunningPlay>,
    dtmf_sequence: u64,
    queue: VecDeque<Pending>,
    delivering: bool,
    history: VecDeque<EventRecord>,
}

struct EngineState {
    calls: HashMap<u128, CallEvents>,
    finished: VecDeque<u128>,
    queued: usize,
    queued_bytes: usize,
    // Calls in the order their history entries were added, to trim the oldest first.
    history_order: VecDeque<u128>,
    history_bytes: usize,
}

/// Why a simulated key press was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The double was configured without events.
    #[error("events are off (--no-events): no key presses can be simulated")]
    EventsOff,
    /// No live call has this id.
    #[error("call {0} not found (never created, hung up or evicted)")]
    UnknownCall(String),
    /// The call is not connected yet (wait for its `Established` event).
    #[error("call {0} is not established yet: wait for its Established event")]
    NotEstablished(String),
    /// The tones are not keys of a phone keypad.
    #[error("tones: {0}")]
    BadTones(String),
}

/// The event engine of one double; shared by the handler and the tasks it spawns.
pub(crate) struct Engine {
    config: EventsConfig,
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    state: Mutex<EngineState>,
    stats: Stats,
    permits: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    overflow_log: RateLog,
    given_up_log: RateLog,
}

/// What a timer does when it fires.
enum Timer {
    Establish,
    PlayDone(String),
}

impl Engine {
    /// An engine on the current tokio runtime; `None` when there is none (a handler
    /// built outside a runtime answers requests without events).
    pub(crate) fn new(config: &EventsConfig) -> Result<Option<Arc<Engine>>, String> {
        if !config.enabled {
            return Ok(None);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(None);
        };
        if config.attempts == 0 || config.max_queued == 0 || config.max_queued_bytes == 0 {
            return Err("event attempts, queue length and queue bytes must be at least 1".into());
        }
        let client = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            .connect_timeout(config.attempt_timeout)
            // A loopback receiver must not bounce events to a host nobody allowed.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            // Every delivery in flight may keep its connection: fewer means connecting anew.
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build()
            .map_err(|e| format!("cannot build the event delivery client: {e}"))?;
        Ok(Some(Arc::new(Engine {
            config: config.clone(),
            runtime,
            client,
            state: Mutex::new(EngineState {
                calls: HashMap::new(),
                finished: VecDeque::new(),
                queued: 0,
                queued_bytes: 0,
                history_order: VecDeque::new(),
                history_bytes: 0,
            }),
            stats: Stats::default(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            stop: watch::channel(false).0,
            overflow_log: RateLog::new(),
            given_up_log: RateLog::new(),
        })))
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Stops every timer and delivery; events still queued are abandoned.
    pub(crate) fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Runs `work` on the engine's runtime until it ends or the engine stops.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.stopped() {
            return;
        }
        let mut stop = self.stop.subscribe();
        // `wait_for`'s guard is dropped inside its own future: select! drops `work` (which
        // may hold the last handle on the engine, whose drop sends on `stop`) while the
        // finished branch's output still lives, and a held guard would deadlock that send.
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await.is_ok();
        };
        self.runtime.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stopped => {}
            }
        });
    }

    fn schedule(self: &Arc<Self>, key: u128, after: Duration, timer: Timer) {
        let engine = self.clone();
        self.spawn(async move {
            tokio::time::sleep(after).await;
            engine.fire(key, timer);
        });
    }

    fn fire(self: &Arc<Self>, key: u128, timer: Timer) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(call) = state.calls.get_mut(&key) else {
            return;
        };
        match timer {
            Timer::Establish => {
                if call.state != CallState::Establishing {
                    return;
                }
                call.state = CallState::Established;
                call.conversation_id = Some(uuid::Uuid::new_v4().to_string());
                let conversation_id = call.conversation_id.clone();
                self.push(
                    state,
                    key,
                    EventData::CallLegStateChanged {
                        conversation_id,
                        state: CallState::Established,
                    },
                );
                self.participants_updated(state, key);
            }
            Timer::PlayDone(op) => {
                let Some(at) = call.plays.iter().position(|p| p.id == op) else {
                    return;
                };
                if let Some(play) = call.plays.remove(at) {
                    self.push(state, key, play_result(play, PlayOutcome::Completed));
                }
            }
        }
    }

    /// A call was created: `Establishing` now, `Established` after the answer delay.
    pub(crate) fn on_create(
        self: &Arc<Self>,
        key: u128,
        call_leg_id: &str,
        body: Option<&Value>,
        participants: impl FnOnce() -> Vec<Participant>,
    ) {
        let callback = body
            .and_then(|b| b.get("callbackUri"))
            .and_then(Value::as_str)
            .and_then(|u| url::Url::parse(u).ok());
        // Validation guarantees an absolute http(s) URI; without one there is nowhere to send.
        let Some(callback) = callback else {
            return;
        };
        let subscribed = |name: &str| {
            body.and_then(|b| b.get("requestedCallEvents"))
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|e| e.as_str() == Some(name)))
        };
        let allowed = self.config.callback_hosts.allows(&callback);
        // The list only feeds events that are sent.
        let participants = if allowed { participants() } else { Vec::new() };
        let call = CallEvents {
            id: call_leg_id.into(),
            allowed,
            callback,
            participants_updated: subscribed("participantsUpdated"),
            dtmf: subscribed("dtmfReceived"),
            state: CallState::Establishing,
            conversation_id: None,
            participants,
            plays: VecDeque::new(),
            dtmf_sequence: 0,
            queue: VecDeque::new(),
            delivering: false,
            history: VecDeque::new(),
        };
        {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            state.calls.insert(key, call);
            self.push(
                state,
                key,
                EventData::CallLegStateChanged {
                    conversation_id: None,
                    state: CallState::Establishing,
                },
            );
        }
        self.schedule(key, self.config.answer_delay, Timer::Establish);
    }

    /// A play audio was accepted with operation `id`.
    pub(crate) fn on_play(
        self: &Arc<Self>,
        key: u128,
        id: &str,
        operation_context: Option<&str>,
        looped: bool,
    ) {
        {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            let Some(call) = state
                .calls
                .get_mut(&key)
                .filter(|c| c.state != CallState::Terminated)
            else {
                return;
            };
            call.plays.push_back(RunningPlay {
                id: id.to_string(),
                operation_context: operation_context.map(str::to_string),
                looped,
            });
            let excess = call.plays.len().saturating_sub(MAX_PLAYS_PER_CALL);
            let oldest: Vec<RunningPlay> = call.plays.drain(..excess).collect();
            for old in oldest {
                self.push(state, key, play_result(old, PlayOutcome::Cancelled));
            }
        }
        if !looped {
            self.schedule(
                key,
                self.config.play_duration,
                Timer::PlayDone(id.to_string()),
            );
        }
    }

    /// Cancel media processing: every running play ends with the cancelled result.
    pub(crate) fn on_cancel(self: &Arc<Self>, key: u128) {
        let mut guard = lock(&self.state);
        self.cancel_plays(&mut guard, key);
    }

    fn cancel_plays(self: &Arc<Self>, state: &mut EngineState, key: u128) {
        let plays = match state.calls.get_mut(&key) {
            Some(call) => std::mem::take(&mut call.plays),
            None => return,
        };
        for play in plays {
            self.push(state, key, play_result(play, PlayOutcome::Cancelled));
        }
    }

    /// An invitation was accepted: its result, then the new list if subscribed.
    pub(crate) fn on_invite(
        self: &Arc<Self>,
        key: u128,
        operation_context: Option<&str>,
        invited: impl FnOnce() -> Vec<Participant>,
        max_participants: usize,
    ) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(call) = state.calls.get_mut(&key) else {
            return;
        };
        let invited = if call.allowed { invited() } else { Vec::new() };
        let identifiers = invited.iter().map(|p| p.identifier.clone()).collect();
        // A set, not a scan: a 1 MiB invitation holds thousands of identifiers.
        let mut present: std::collections::HashSet<Arc<str>> =
            call.participants.iter().map(|p| p.id.clone()).collect();
        for p in invited {
            if present.insert(p.id.clone()) {
                call.participants.push(p);
            }
        }
        let excess = call
            .participants
            .len()
            .saturating_sub(max_participants.max(1));
        call.participants.drain(..excess);
        self.push(
            state,
            key,
            EventData::InviteParticipantResult {
                operation_context: operation_context.map(str::to_string),
                participants: identifiers,
            },
        );
        self.participants_updated(state, key);
    }

    /// A participant was removed: the new list if subscribed.
    pub(crate) fn on_remove(self: &Arc<Self>, key: u128, participant_id: &str) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(call) = state.calls.get_mut(&key) else {
            return;
        };
        call.participants.retain(|p| &*p.id != participant_id);
        self.participants_updated(state, key);
    }

    /// Hang up: running plays cancelled, then `Terminating`, `Terminated`, nothing after.
    pub(crate) fn on_hangup(self: &Arc<Self>, key: u128) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if !state.calls.contains_key(&key) {
            return;
        }
        self.cancel_plays(state, key);
        for s in [CallState::Terminating, CallState::Terminated] {
            let conversation_id = state
                .calls
                .get(&key)
                .and_then(|c| c.conversation_id.clone());
            self.push(
                state,
                key,
                EventData::CallLegStateChanged {
                    conversation_id,
                    state: s,
                },
            );
        }
        if let Some(call) = state.calls.get_mut(&key) {
            call.state = CallState::Terminated;
            call.participants = Vec::new();
        }
        state.finished.push_back(key);
        while state.finished.len() > FINISHED_CALLS_KEPT {
            if let Some(old) = state.finished.pop_front() {
                self.forget_locked(state, old);
            }
        }
    }

    /// The handler evicted these calls: their queued events are abandoned.
    pub(crate) fn forget(&self, keys: &[u128]) {
        if keys.is_empty() {
            return;
        }
        let mut guard = lock(&self.state);
        for key in keys {
            self.forget_locked(&mut guard, *key);
        }
    }

    fn forget_locked(&self, state: &mut EngineState, key: u128) {
        if let Some(call) = state.calls.remove(&key) {
            for p in &call.queue {
                state.queued = state.queued.saturating_sub(1);
                state.queued_bytes = state.queued_bytes.saturating_sub(p.body.len());
            }
            for r in &call.history {
                state.history_bytes = state.history_bytes.saturating_sub(record_bytes(r));
            }
        }
    }

    /// A participant pressed `tones`: one `DtmfReceived` per key when subscribed.
    /// Returns the number of events produced.
    pub(crate) fn press_keys(
        self: &Arc<Self>,
        key: u128,
        call_leg_id: &str,
        tones: &str,
    ) -> Result<usize, ControlError> {
        let count = tones.chars().count();
        if count == 0 || count > MAX_TONES {
            return Err(ControlError::BadTones(format!(
                "give 1 to {MAX_TONES} keys, got {count}"
            )));
        }
        let literals = tones
            .chars()
            .map(|c| {
                tone(c).ok_or_else(|| {
                    ControlError::BadTones(format!("{c:?} is not a key; keys are 0-9, *, #, A-D"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let unknown = || ControlError::UnknownCall(call_leg_id.to_string());
        let call = state.calls.get_mut(&key).ok_or_else(unknown)?;
        match call.state {
            CallState::Establishing => {
                return Err(ControlError::NotEstablished(call_leg_id.to_string()));
            }
            CallState::Terminating | CallState::Terminated => return Err(unknown()),
            CallState::Established => {}
        }
        if !call.dtmf {
            return Ok(0);
        }
        for t in &literals {
            let Some(call) = state.calls.get_mut(&key) else {
                break;
            };
            let sequence_id = call.dtmf_sequence;
            call.dtmf_sequence += 1;
            self.push(
                state,
                key,
                EventData::DtmfReceived {
                    sequence_id,
                    tone: t,
                },
            );
        }
        Ok(literals.len())
    }

    /// The running plays of a call (`None`: the engine does not know it).
    pub(crate) fn plays(&self, key: u128) -> Option<Vec<RunningPlay>> {
        lock(&self.state)
            .calls
            .get(&key)
            .map(|c| c.plays.iter().cloned().collect())
    }

    /// The state of a call as its events told it.
    pub(crate) fn call_state(&self, key: u128) -> Option<CallState> {
        lock(&self.state).calls.get(&key).map(|c| c.state)
    }

    /// The recent events of a call, oldest first.
    pub(crate) fn history(&self, key: u128) -> Option<Vec<EventRecord>> {
        lock(&self.state)
            .calls
            .get(&key)
            .map(|c| c.history.iter().cloned().collect())
    }

    /// The engine's counters.
    pub(crate) fn counters(&self) -> EventCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = lock(&self.state);
        EventCounters {
            produced: get(&self.stats.produced),
            delivered: get(&self.stats.delivered),
            failed_attempts: get(&self.stats.failed_attempts),
            given_up: get(&self.stats.given_up),
            not_allowed: get(&self.stats.not_allowed),
            dropped: get(&self.stats.dropped),
            queued: state.queued as u64,
            queued_bytes: state.queued_bytes as u64,
        }
    }

    /// `ParticipantsUpdated` with the whole list, when subscribed and established.
    fn participants_updated(self: &Arc<Self>, state: &mut EngineState, key: u128) {
        let Some(call) = state.calls.get(&key) else {
            return;
        };
        // Before `Established` the list goes out with it; after hang up nothing does.
        if !call.participants_updated || call.state != CallState::Established {
            return;
        }
        let participants = call.participants.clone();
        self.push(state, key, EventData::ParticipantsUpdated { participants });
    }

    /// Records an event of call `key` and queues it for delivery (if allowed and
    /// within the bounds); starts the call's delivery task when none runs.
    fn push(self: &Arc<Self>, state: &mut EngineState, key: u128, data: EventData) {
        let Some(call) = state.calls.get_mut(&key) else {
            return;
        };
        // Nothing after `Terminated`, even from a request that raced the hang up.
        if call.state == CallState::Terminated {
            return;
        }
        self.stats.produced.fetch_add(1, Ordering::Relaxed);
        if !call.allowed {
            self.stats.not_allowed.fetch_add(1, Ordering::Relaxed);
            let record = EventRecord {
                id: uuid::Uuid::new_v4().to_string(),
                event_type: data.event_type(),
                delivery: Delivery::NotAllowed,
                attempts: 0,
                last_result: None,
                body: None,
            };
            self.remember(state, key, record);
            return;
        }
        let event = Event::new(call.id.clone(), data);
        // Serialising a `Value` cannot fail (all keys are strings).
        let body = Bytes::from(serde_json::to_vec(&event.to_json()).unwrap_or_default());
        let delivery = if state.queued >= self.config.max_queued
            || state.queued_bytes + body.len() > self.config.max_queued_bytes
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(held) = self.overflow_log.ready() {
                tracing::warn!(
                    "event queue full ({} events or {} bytes waiting): events are dropped \
                     and counted; is the app's callback slow or down?{}",
                    self.config.max_queued,
                    self.config.max_queued_bytes,
                    held_note(held)
                );
            }
            Delivery::Dropped
        } else {
            Delivery::Queued
        };
        let record = EventRecord {
            id: event.id.clone(),
            event_type: event.event_type(),
            delivery,
            attempts: 0,
            last_result: None,
            body: Some(body.clone()),
        };
        let start = delivery == Delivery::Queued && !call.delivering;
        if delivery == Delivery::Queued {
            state.queued += 1;
            state.queued_bytes += body.len();
            call.queue.push_back(Pending { id: event.id, body });
            call.delivering = true;
        }
        self.remember(state, key, record);
        if start {
            let engine = self.clone();
            self.spawn(async move { engine.deliver_all(key).await });
        }
    }

    /// Adds `record` to the history of call `key`, within the history's bounds.
    fn remember(&self, state: &mut EngineState, key: u128, record: EventRecord) {
        let Some(call) = state.calls.get_mut(&key) else {
            return;
        };
        let bytes = record_bytes(&record);
        call.history.push_back(record);
        if call.history.len() > HISTORY_PER_CALL
            && let Some(old) = call.history.pop_front()
        {
            state.history_bytes = state.history_bytes.saturating_sub(record_bytes(&old));
        }
        state.history_bytes += bytes;
        state.history_order.push_back(key);
        trim_history(state);
    }

    /// Delivers the queue of call `key`, one event at a time, until it is empty.
    async fn deliver_all(self: Arc<Self>, key: u128) {
        loop {
            let (pending, url) = {
                let mut guard = lock(&self.state);
                let state = &mut *guard;
                let Some(call) = state.calls.get_mut(&key) else {
                    return;
                };
                let Some(p) = call.queue.pop_front() else {
                    call.delivering = false;
                    return;
                };
                let url = call.callback.clone();
                state.queued = state.queued.saturating_sub(1);
                state.queued_bytes = state.queued_bytes.saturating_sub(p.body.len());
                (p, url)
            };
            let delivered = self.deliver(key, &pending, url).await;
            if !delivered {
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = self.given_up_log.ready() {
                    tracing::warn!(
                        "an event was given up after {} attempts (see the control API's \
                         GET /events for the call){}",
                        self.config.attempts,
                        held_note(held)
                    );
                }
            }
        }
    }

    /// Sends one event with retries; whether the receiver acknowledged it.
    async fn deliver(&self, key: u128, pending: &Pending, url: url::Url) -> bool {
        let mut pause = self.config.retry_pause;
        for attempt in 1..=self.config.attempts {
            let result = {
                // The semaphore is never closed; without a permit, do not send at all.
                let Ok(_permit) = self.permits.acquire().await else {
                    return false;
                };
                self.attempt(&url, &pending.body).await
            };
            let ok = result.as_ref().is_ok_and(|s| (200..300).contains(s));
            let last = match &result {
                Ok(s) => s.to_string(),
                Err(e) => e.clone(),
            };
            let done = ok || attempt == self.config.attempts;
            let delivery = match (ok, done) {
                (true, _) => Delivery::Delivered,
                (false, true) => Delivery::GivenUp,
                (false, false) => Delivery::Sending,
            };
            self.update(key, &pending.id, delivery, attempt, last);
            if ok {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if done {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2);
        }
        false
    }

    /// One POST; the status, or why there was none.
    async fn attempt(&self, url: &url::Url, body: &Bytes) -> Result<u16, String> {
        let sent = self
            .client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let mut resp = sent.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
        let status = resp.status().as_u16();
        // Read a bounded part of the answer so the connection can be reused.
        let mut read = 0;
        while read < ANSWER_READ_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        Ok(status)
    }

    fn update(&self, key: u128, id: &str, delivery: Delivery, attempts: u32, last: String) {
        let mut state = lock(&self.state);
        if let Some(r) = state
            .calls
            .get_mut(&key)
            .and_then(|c| c.history.iter_mut().rev().find(|r| r.id == id))
        {
            r.delivery = delivery;
            r.attempts = attempts;
            r.last_result = Some(last);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

fn held_note(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more since the last line)")
    }
}

fn play_result(play: RunningPlay, outcome: PlayOutcome) -> EventData {
    EventData::PlayAudioResult {
        operation_context: play.operation_context,
        outcome,
    }
}

/// Estimated bytes of a history entry: its body and bookkeeping.
fn record_bytes(r: &EventRecord) -> usize {
    r.body.as_ref().map_or(0, Bytes::len) + r.id.len() + 96
}

/// Drops the oldest history entries beyond [`MAX_HISTORY_BYTES`] (and keeps the
/// order list from outgrowing the entries it describes).
fn trim_history(state: &mut EngineState) {
    let bound = HISTORY_PER_CALL * (state.calls.len() + 1);
    while state.history_bytes > MAX_HISTORY_BYTES || state.history_order.len() > bound {
        let Some(key) = state.history_order.pop_front() else {
            break;
        };
        if state.history_bytes <= MAX_HISTORY_BYTES {
            // Only the order list was long (entries already trimmed per call).
            continue;
        }
        if let Some(old) = state.calls.get_mut(&key).and_then(|c| {
            // Keep entries still waiting for delivery: their status is still news.
            match c.history.front() {
                Some(r) if !matches!(r.delivery, Delivery::Queued | Delivery::Sending) => {
                    c.history.pop_front()
                }
                _ => None,
            }
        }) {
            state.history_bytes = state.history_bytes.saturating_sub(record_bytes(&old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_hosts() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let lo = CallbackHosts::Loopback;
        for ok in [
            "http://127.0.0.1:9/x",
            "http://127.1.2.3/",
            "http://[::1]:5000/",
            "http://LOCALHOST:7071/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(lo.allows(&u(ok)), "{ok}");
        }
        for no in [
            "https://contoso.com/",
            "https://10.20.30.40/",
            "http://localhost.evil.test/",
        ] {
            assert!(!lo.allows(&u(no)), "{no}");
        }
        let also = CallbackHosts::parse("App.Test, 10.20.30.40,[fe80::1]").unwrap();
        assert!(also.allows(&u("https://app.test:8443/cb")));
        assert!(also.allows(&u("https://10.20.30.40/")));
        assert!(also.allows(&u("http://[fe80::1]/")));
        assert!(!also.allows(&u("https://contoso.com/")));
        assert_eq!(CallbackHosts::parse("*"), Ok(CallbackHosts::Any));
        // The embedded double's rule: its receiver's host alone, no other loopback name.
        let exactly = CallbackHosts::Exactly(vec!["127.0.0.1".into()]);
        assert!(exactly.allows(&u("http://127.0.0.1:41234/gate")));
        for no in [
            "http://localhost:7071/",
            "http://[::1]:5000/",
            "https://app.test/",
        ] {
            assert!(!exactly.allows(&u(no)), "{no}");
        }
        for bad in ["", "a,,b", "http://x", "x:80", "*.x"] {
            assert!(CallbackHosts::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tones_and_identifiers() {
        let keys: Vec<_> = "09*#AD".chars().map(|c| tone(c).unwrap()).collect();
        assert_eq!(keys, ["Tone0", "Tone9", "Star", "Pound", "A", "D"]);
        assert!(tone('E').is_none() && tone('a').is_none());
        let id = json!({"rawId": "r", "microsoftTeamsUser": {"userId": "u", "isAnonymous": false,
            "cloud": "public"}, "extra": 1, "phoneNumber": null});
        assert_eq!(
            pascal_identifier(&id),
            json!({"RawId": "r", "MicrosoftTeamsUser": {"UserId": "u", "IsAnonymous": false,
                "Cloud": "public"}})
        );
    }

    #[test]
    fn envelope() {
        let e = Event::new(
            "c1".into(),
            EventData::PlayAudioResult {
                operation_context: None,
                outcome: PlayOutcome::Cancelled,
            },
        );
        let v = e.to_json();
        assert_eq!(v["subject"], "callLeg/c1/playAudio");
        assert_eq!(v["eventType"], "Microsoft.Communication.PlayAudioResult");
        assert_eq!(v["data"]["ResultInfo"]["Subcode"], 8508);
        assert!(v["data"].get("OperationContext").is_none());
        assert!(v["eventTime"].as_str().unwrap().ends_with('Z'));
    }
}
