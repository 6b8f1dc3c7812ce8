//! The double's behaviour, free of any transport: a request in, a response out.
//!
//! Both transports (the wiremock `MockServer` of [`super::Double`] and the hyper server
//! of [`super::serve`]) call [`Handler::handle`], so they answer identically and one set
//! of tests covers both.

use super::events::{
    CallState, ControlError, Engine, EventCounters, EventRecord, Participant, RunningPlay,
};
use super::{DoubleConfig, DoubleError, Tamper};
use crate::auth::{RequestParts, Signer};
use crate::contract::{self, Endpoint, Route, Rule, Violation};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A request as the double sees it, independent of the transport.
#[derive(Debug, Clone, Default)]
pub struct DoubleRequest {
    /// The method as sent, e.g. `POST`.
    pub method: String,
    /// The path and query exactly as sent (percent-encoding kept); signatures cover it.
    pub path_and_query: String,
    /// The headers (names are lowercase by construction of `HeaderMap`).
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Bytes,
}

impl DoubleRequest {
    /// A request without headers or body.
    pub fn new(method: impl Into<String>, path_and_query: impl Into<String>) -> Self {
        DoubleRequest {
            method: method.into(),
            path_and_query: path_and_query.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header; a name or value HTTP could not carry is skipped, as no transport
    /// could deliver it either.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_ref()),
        ) {
            self.headers.append(n, v);
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A header's value when it is visible ASCII.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The double's answer; the transport writes it out after waiting `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers besides those the transport adds (`content-length`, `date`).
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Bytes,
    /// Injected latency the transport applies before answering.
    pub delay: Duration,
}

impl DoubleResponse {
    /// A response with a JSON body.
    pub fn json(status: u16, body: &Value) -> Self {
        DoubleResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            // Serialising a `Value` cannot fail (all keys are strings).
            body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            delay: Duration::ZERO,
        }
    }

    /// A response without a body.
    pub fn empty(status: u16) -> Self {
        DoubleResponse {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    /// The error body of src/contract/CONTRACT.md: `{"code": .., "message": ..}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, &json!({ "code": code, "message": message }))
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Requests and answers per status class, for one endpoint or for unrouted requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Requests seen.
    pub requests: u64,
    /// Answered 2xx.
    pub success: u64,
    /// Answered 4xx.
    pub client_error: u64,
    /// Answered 5xx.
    pub server_error: u64,
}

/// A snapshot of the double's counters, for load and gate tests to assert against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// All requests handled.
    pub total: u64,
    /// Per endpoint the request's method and path route to (whether or not it was
    /// authenticated).
    pub by_endpoint: BTreeMap<Endpoint, ClassCounts>,
    /// Requests whose path is none of the six (or lacks the prefix), or whose method
    /// the path does not have.
    pub unrouted: ClassCounts,
    /// Answers per status code.
    pub by_status: BTreeMap<u16, u64>,
    /// 500s chosen by fault injection.
    pub faults_injected: u64,
    /// Calls evicted because `max_calls` or `max_state_bytes` was reached.
    pub calls_evicted: u64,
    /// Calls currently held.
    pub live_calls: u64,
    /// Estimated bytes the held calls and participants take (bounded by `max_state_bytes`).
    pub state_bytes: u64,
}

const STATUSES: [u16; 8] = [200, 202, 400, 401, 404, 405, 413, 500];
const UNROUTED: usize = 6;

#[derive(Default)]
struct Stats {
    total: AtomicU64,
    // [requests, 2xx, 4xx, 5xx] per endpoint, index 6 for unrouted.
    classes: [[AtomicU64; 4]; 7],
    // One slot per entry of STATUSES, the last for any other status.
    statuses: [AtomicU64; STATUSES.len() + 1],
    other_statuses: Mutex<BTreeMap<u16, u64>>,
    faults: AtomicU64,
    evicted: AtomicU64,
}

impl Stats {
    fn count(&self, endpoint: Option<Endpoint>, status: u16) {
        let relaxed = Ordering::Relaxed;
        self.total.fetch_add(1, relaxed);
        let row = &self.classes[endpoint.map(endpoint_index).unwrap_or(UNROUTED)];
        row[0].fetch_add(1, relaxed);
        match status / 100 {
            2 => row[1].fetch_add(1, relaxed),
            4 => row[2].fetch_add(1, relaxed),
            5 => row[3].fetch_add(1, relaxed),
            _ => 0,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => {
                self.statuses[i].fetch_add(1, relaxed);
            }
            // Only a tamper hook produces other statuses; a lock is fine there.
            None => {
                let mut other = lock(&self.other_statuses);
                *other.entry(status).or_default() += 1;
            }
        }
    }
}

fn endpoint_index(e: Endpoint) -> usize {
    Endpoint::ALL
        .iter()
        .position(|x| *x == e)
        .unwrap_or(UNROUTED)
}

/// A map that remembers insertion order and holds at most `cap` entries, evicting the
/// oldest: it keeps the double's memory flat however long it runs.
struct Bounded<K, V> {
    map: HashMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
    next: u64,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    /// Inserts unless present (then returns false); entries evicted to make room are
    /// handed to `evicted`, oldest first.
    fn insert(&mut self, key: K, value: V, mut evicted: impl FnMut(K, V)) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_first() {
                Some((_, old)) => {
                    if let Some((_, v)) = self.map.remove(&old) {
                        evicted(old, v);
                    }
                }
                None => break,
            }
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, key.clone());
        self.map.insert(key, (seq, value));
        true
    }

    /// Removes and returns the oldest entry whose key is not `keep`.
    fn pop_oldest_except<Q: Hash + Eq + ?Sized>(&mut self, keep: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let seq = self
            .order
            .iter()
            .find(|(_, k)| (*k).borrow() != keep)
            .map(|(seq, _)| *seq)?;
        let key = self.order.remove(&seq)?;
        let (_, v) = self.map.remove::<K>(&key)?;
        Some((key, v))
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (seq, v) = self.map.remove(key)?;
        self.order.remove(&seq);
        Some(v)
    }

    fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// One live call: its participants (targets, then everyone invited since) in order,
/// and the estimated bytes it takes.
struct Call {
    participants: Participants,
    bytes: usize,
}

/// A call's participant ids in order, at most `cap`, the oldest evicted beyond it.
/// Most calls have a target or two, so the ids live in a small deque searched in
/// place; a hash index is built only once a call has many (an invitation of 1,000 ids
/// then stays linear, not quadratic). An id is shared by deque and index (`Arc`).
struct Participants {
    ids: VecDeque<Arc<str>>,
    // Boxed on purpose: 8 bytes in every call instead of a 48-byte empty set, in a
    // table of up to 100,000 calls that almost never need an index.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashSet<Arc<str>>>>,
}

/// Participants beyond which a call gets a hash index.
const INDEX_FROM: usize = 16;

impl Participants {
    fn new() -> Self {
        Participants {
            ids: VecDeque::new(),
            index: None,
        }
    }

    fn contains(&self, id: &str) -> bool {
        match &self.index {
            Some(index) => index.contains(id),
            None => self.ids.iter().any(|x| &**x == id),
        }
    }

    /// Adds `id` unless present (then returns false); ids evicted to stay within `cap`
    /// are handed to `evicted`.
    fn insert(&mut self, id: Arc<str>, cap: usize, mut evicted: impl FnMut(Arc<str>)) -> bool {
        if self.contains(&id) {
            return false;
        }
        while self.ids.len() >= cap.max(1) {
            match self.pop_oldest() {
                Some(old) => evicted(old),
                None => break,
            }
        }
        if let Some(index) = &mut self.index {
            index.insert(id.clone());
        } else if self.ids.len() >= INDEX_FROM {
            let mut index: HashSet<Arc<str>> = self.ids.iter().cloned().collect();
            index.insert(id.clone());
            self.index = Some(Box::new(index));
        }
        self.ids.push_back(id);
        true
    }

    fn remove(&mut self, id: &str) -> Option<Arc<str>> {
        let at = self.ids.iter().position(|x| &**x == id)?;
        if let Some(index) = &mut self.index {
            index.remove(id);
        }
        self.ids.remove(at)
    }

    fn pop_oldest(&mut self) -> Option<Arc<str>> {
        let old = self.ids.pop_front()?;
        if let Some(index) = &mut self.index {
            index.remove(&old);
        }
        Some(old)
    }
}

/// Estimated bytes a call takes besides its participants: its map and order slots,
/// the participant table's header and the allocator's bookkeeping. Calibrated with
/// `cargo bench --bench double` (RSS after filling the state), rounded up.
const CALL_BYTES: usize = 320;

/// Estimated bytes a participant takes besides its id's length: the `Arc` header, its
/// hash and order slots with their spare capacity, allocator bookkeeping.
const PARTICIPANT_BYTES: usize = 128;

fn participant_bytes(id: &str) -> usize {
    id.len() + PARTICIPANT_BYTES
}

/// How many evicted call ids the double remembers, to tell "evicted" from "never
/// created" in a 404 (about 3 MB when full; not counted in `max_state_bytes`).
pub const EVICTED_MEMORY: usize = 65_536;

/// The calls and the ids of the calls evicted most recently.
struct State {
    calls: Bounded<u128, Call>,
    bytes: usize,
    evicted: HashSet<u128>,
    evicted_order: VecDeque<u128>,
    // Calls evicted since the event engine was last told (drained under the same lock).
    forgotten: Vec<u128>,
}

impl State {
    fn remember_evicted(&mut self, key: u128) {
        self.forgotten.push(key);
        if self.evicted_order.len() >= EVICTED_MEMORY
            && let Some(old) = self.evicted_order.pop_front()
        {
            self.evicted.remove(&old);
        }
        if self.evicted.insert(key) {
            self.evicted_order.push_back(key);
        }
    }
}

/// The double: authentication, routing, validation, state and fault injection.
pub struct Handler {
    signer: Signer,
    prefix: String,
    api_version: Option<String>,
    fail_rate: f64,
    latency: Duration,
    latency_jitter: Duration,
    fault_rng: AtomicU64,
    jitter_rng: AtomicU64,
    // Seconds since the epoch of a fixed clock, or NO_CLOCK for the system clock.
    clock: AtomicU64,
    max_participants: usize,
    max_calls: usize,
    max_state_bytes: usize,
    // Keyed by the UUID of `callLegId`: 16 bytes a call instead of a string.
    state: Mutex<State>,
    // Seconds since the epoch of the last eviction log line (0: none yet).
    eviction_logged_at: AtomicU64,
    // Evictions counted at that line.
    eviction_logged_count: AtomicU64,
    stats: Stats,
    tamper: Option<Tamper>,
    // The event engine (None: events off, or no tokio runtime to run it on).
    events: Option<Arc<Engine>>,
}

/// A live call as the control API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// Its `callLegId`.
    pub call_leg_id: String,
    /// Its state as its events told it (`None` with events off).
    pub state: Option<CallState>,
    /// Its participant ids, oldest first.
    pub participants: Vec<String>,
    /// Its running play audio operations.
    pub plays: Vec<RunningPlay>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("prefix", &self.prefix)
            .field("api_version", &self.api_version)
            .field("fail_rate", &self.fail_rate)
            .finish_non_exhaustive()
    }
}

const NO_CLOCK: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks, but if it ever did the state is still
    // consistent enough for a test double: keep serving rather than cascade panics.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SplitMix64 step: a tiny seeded PRNG, enough for reproducible fault choices.
fn splitmix(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1).
fn unit(state: &AtomicU64) -> f64 {
    (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// Shortens client-controlled text before it goes into a message.
fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Parses a `callLegId` the double issued: a lowercase hyphenated UUID, nothing else.
fn call_key(id: &str) -> Option<u128> {
    let u = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    (&*u.hyphenated().encode_lower(&mut buf) == id).then_some(u.as_u128())
}

/// What the handler knows of a request's body.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// `req.body` is the whole body: verify its hash.
    Read,
    /// The transport did not read it (larger than this many bytes): verify the
    /// signature over the declared hash only, then answer 413.
    Unread(usize),
    /// The transport checked the head's signature and the body's hash already.
    Verified,
}

fn not_found(message: String) -> DoubleResponse {
    DoubleResponse::error(404, "NotFound", &message)
}

impl Handler {
    /// Builds a handler from a configuration (checked: `fail_rate` in [0, 1]).
    pub fn new(config: &DoubleConfig) -> Result<Handler, DoubleError> {
        if !(0.0..=1.0).contains(&config.fail_rate) {
            return Err(DoubleError::Config(format!(
                "fail rate must be between 0 and 1, got {}",
                config.fail_rate
            )));
        }
        if config.max_calls == 0 || config.max_participants == 0 {
            return Err(DoubleError::Config(
                "max calls and max participants must be at least 1".into(),
            ));
        }
        if config.max_state_bytes < super::MIN_STATE_BYTES {
            return Err(DoubleError::Config(format!(
                "max state bytes must be at least {} (one call with a few participants), got {}",
                super::MIN_STATE_BYTES,
                config.max_state_bytes
            )));
        }
        for (name, d) in [
            ("latency", config.latency),
            ("latency jitter", config.latency_jitter),
        ] {
            if d > super::MAX_LATENCY {
                return Err(DoubleError::Config(format!(
                    "{name} must be at most {}s (1h), got {}s",
                    super::MAX_LATENCY.as_secs(),
                    d.as_secs()
                )));
            }
        }
        let prefix = config.prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        let handler = Handler {
            signer: Signer::new(&config.access_key),
            prefix,
            api_version: config.api_version.clone().filter(|v| !v.is_empty()),
            fail_rate: config.fail_rate,
            latency: config.latency,
            latency_jitter: config.latency_jitter,
            fault_rng: AtomicU64::new(config.seed),
            // A different stream, so turning jitter on does not change which requests fail.
            jitter_rng: AtomicU64::new(config.seed ^ 0x5DEE_CE66_D1CE_5EED),
            clock: AtomicU64::new(NO_CLOCK),
            max_participants: config.max_participants,
            max_calls: config.max_calls,
            max_state_bytes: config.max_state_bytes,
            state: Mutex::new(State {
                calls: Bounded::new(config.max_calls),
                bytes: 0,
                evicted: HashSet::new(),
                evicted_order: VecDeque::new(),
                forgotten: Vec::new(),
            }),
            eviction_logged_at: AtomicU64::new(0),
            eviction_logged_count: AtomicU64::new(0),
            stats: Stats::default(),
            tamper: config.tamper.clone(),
            events: Engine::new(&config.events).map_err(DoubleError::Config)?,
        };
        handler.set_clock(config.clock);
        Ok(handler)
    }

    /// Fixes the clock signatures are checked against (`None`: the system clock), so
    /// tests can replay requests signed at a known date.
    pub fn set_clock(&self, clock: Option<SystemTime>) {
        let secs = clock
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs().min(NO_CLOCK - 1))
            .unwrap_or(NO_CLOCK);
        self.clock.store(secs, Ordering::Relaxed);
    }

    fn now(&self) -> SystemTime {
        match self.clock.load(Ordering::Relaxed) {
            NO_CLOCK => SystemTime::now(),
            secs => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let class = |row: &[AtomicU64; 4]| ClassCounts {
            requests: get(&row[0]),
            success: get(&row[1]),
            client_error: get(&row[2]),
            server_error: get(&row[3]),
        };
        let mut by_status: BTreeMap<u16, u64> = lock(&self.stats.other_statuses).clone();
        let state = lock(&self.state);
        for (i, s) in STATUSES.iter().enumerate() {
            let n = get(&self.stats.statuses[i]);
            if n > 0 {
                by_status.insert(*s, n);
            }
        }
        Counters {
            total: get(&self.stats.total),
            by_endpoint: Endpoint::ALL
                .iter()
                .enumerate()
                .map(|(i, e)| (*e, class(&self.stats.classes[i])))
                .collect(),
            unrouted: class(&self.stats.classes[UNROUTED]),
            by_status,
            faults_injected: get(&self.stats.faults),
            calls_evicted: get(&self.stats.evicted),
            live_calls: state.calls.len() as u64,
            state_bytes: state.bytes as u64,
        }
    }

    /// Whether a call with this `callLegId` is live.
    pub fn has_call(&self, call_leg_id: &str) -> bool {
        call_key(call_leg_id).is_some_and(|k| lock(&self.state).calls.contains(&k))
    }

    /// The participant ids of a live call: its targets, then everyone invited since, in
    /// that order (`None`: no such call).
    pub fn participants(&self, call_leg_id: &str) -> Option<Vec<String>> {
        let key = call_key(call_leg_id)?;
        let mut state = lock(&self.state);
        let call = state.calls.get_mut(&key)?;
        Some(
            call.participants
                .ids
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    /// Whether this handler produces and sends events.
    pub fn events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// Simulates a participant of a live call pressing `tones` (keys `0`-`9`, `*`,
    /// `#`, `A`-`D`): one `DtmfReceived` per key when the call subscribed to them.
    /// Returns the number of events produced (0 when not subscribed).
    pub fn press_keys(&self, call_leg_id: &str, tones: &str) -> Result<usize, ControlError> {
        let events = self.events.as_ref().ok_or(ControlError::EventsOff)?;
        let key = call_key(call_leg_id)
            .filter(|k| lock(&self.state).calls.contains(k))
            .ok_or_else(|| ControlError::UnknownCall(call_leg_id.to_string()))?;
        events.press_keys(key, call_leg_id, tones)
    }

    /// The live calls, oldest first, at most `limit`, and how many there are in all.
    pub fn calls(&self, limit: usize) -> (usize, Vec<CallView>) {
        let (total, listed) = {
            let state = lock(&self.state);
            let listed: Vec<(u128, Vec<String>)> = state
                .calls
                .order
                .values()
                .take(limit)
                .filter_map(|k| {
                    let (_, call) = state.calls.map.get(k)?;
                    Some((
                        *k,
                        call.participants
                            .ids
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                    ))
                })
                .collect();
            (state.calls.len(), listed)
        };
        let views = listed
            .into_iter()
            .map(|(key, participants)| CallView {
                call_leg_id: uuid::Uuid::from_u128(key).to_string(),
                state: self.events.as_ref().and_then(|e| e.call_state(key)),
                participants,
                plays: self
                    .events
                    .as_ref()
                    .and_then(|e| e.plays(key))
                    .unwrap_or_default(),
            })
            .collect();
        (total, views)
    }

    /// The recent events of a call (live or hung up not long ago), oldest first, with
    /// their delivery status; `None` when the engine does not know the call.
    pub fn events(&self, call_leg_id: &str) -> Option<Vec<EventRecord>> {
        self.events.as_ref()?.history(call_key(call_leg_id)?)
    }

    /// The event engine's counters (`None` with events off).
    pub fn event_counters(&self) -> Option<EventCounters> {
        self.events.as_ref().map(|e| e.counters())
    }

    /// Stops the event engine: timers and deliveries end, queued events are abandoned.
    /// The transports call it when the double stops.
    pub fn shutdown_events(&self) {
        if let Some(e) = &self.events {
            e.shutdown();
        }
    }

    /// Answers one request: authentication, routing, validation, existence, faults,
    /// then state change and success; finally the tamper hook, if configured.
    pub fn handle(&self, req: &DoubleRequest) -> DoubleResponse {
        self.handle_inner(req, Body::Read)
    }

    /// Answers a request whose body the transport refused to read because it is larger
    /// than `limit` bytes (`req.body` is ignored): authentication on the headers alone
    /// (the signature covers the declared content hash), routing, then 413. Contract
    /// order holds: a client without the key gets 401, an unknown path 404.
    pub fn handle_unread_body(&self, req: &DoubleRequest, limit: usize) -> DoubleResponse {
        self.handle_inner(req, Body::Unread(limit))
    }

    /// Checks what the headers alone can show before a transport reads the body: the
    /// `Host` header, the date window and the signature over the declared content hash.
    /// `Some` is the finished answer (400 or 401, counted like any other); `None` means
    /// the body is worth reading.
    pub fn check_head(&self, req: &DoubleRequest) -> Option<DoubleResponse> {
        let resp = self.authenticate(req, Body::Unread(0)).err()?;
        let endpoint = match self.route(req).1 {
            Some(Route::Found { endpoint, .. }) => Some(endpoint),
            _ => None,
        };
        Some(self.finish(req, endpoint, resp))
    }

    /// Answers a request whose head passed [`check_head`](Self::check_head) and whose
    /// body the transport read and found to match `x-ms-content-sha256`: everything
    /// [`handle`](Self::handle) does but authenticate again.
    pub(crate) fn handle_verified(&self, req: &DoubleRequest) -> DoubleResponse {
        self.handle_inner(req, Body::Verified)
    }

    fn handle_inner(&self, req: &DoubleRequest, body: Body) -> DoubleResponse {
        let (endpoint, resp) = self.answer(req, body);
        self.finish(req, endpoint, resp)
    }

    /// The steps every answer goes through: HEAD strip, latency, tamper hook, counters.
    fn finish(
        &self,
        req: &DoubleRequest,
        endpoint: Option<Endpoint>,
        mut resp: DoubleResponse,
    ) -> DoubleResponse {
        if req.method == "HEAD" {
            resp.body = Bytes::new();
        }
        // Latency first, so a tamper hook can change it (tests make one endpoint hang).
        resp.delay = self.delay();
        if let Some(tamper) = &self.tamper {
            tamper(req, &mut resp);
        }
        self.stats.count(endpoint, resp.status);
        tracing::debug!(
            method = %clip(&req.method),
            path = %clip(&req.path_and_query),
            status = resp.status,
            "double request"
        );
        resp
    }

    fn delay(&self) -> Duration {
        if self.latency_jitter.is_zero() {
            return self.latency;
        }
        // Both are at most MAX_LATENCY (checked in `new`); saturating all the same, so
        // no configuration can make an answer panic.
        self.latency
            .saturating_add(self.latency_jitter.mul_f64(unit(&self.jitter_rng)))
    }

    /// Whether fault injection picks this (otherwise good) request.
    fn inject_fault(&self) -> bool {
        if self.fail_rate <= 0.0 || unit(&self.fault_rng) >= self.fail_rate {
            return false;
        }
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn fault() -> DoubleResponse {
        DoubleResponse::error(
            500,
            "InternalServerError",
            "injected fault: the double was asked to fail this share of requests (--fail-rate)",
        )
    }

    /// The path (without query) and the route of a request; `None` when the path lacks
    /// the prefix.
    fn route<'r>(&self, req: &'r DoubleRequest) -> (&'r str, Option<Route>, Option<&'r str>) {
        let (path, query) = match req.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.path_and_query.as_str(), None),
        };
        let unprefixed = if self.prefix.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.prefix.as_str())
                .filter(|rest| rest.starts_with('/'))
        };
        (
            path,
            unprefixed.map(|p| contract::route(&req.method, p)),
            query,
        )
    }

    /// The `Host` header, then the signature (over the body, or over the declared hash
    /// alone when the body is unread); `Err` is the 400 or 401 to answer.
    fn authenticate(&self, req: &DoubleRequest, body: Body) -> Result<(), DoubleResponse> {
        if !req.headers.contains_key(hyper::header::HOST) {
            return Err(DoubleResponse::error(
                400,
                "BadRequest",
                "the Host header is missing: HTTP/1.1 requires it (RFC 9110 section 7.2), \
                 and the signature covers it, so authentication could not be attempted",
            ));
        }
        let parts = RequestParts {
            method: &req.method,
            path_and_query: &req.path_and_query,
            host: req.header_str("host"),
            authorization: req.header_str("authorization"),
            date: req.header_str("x-ms-date"),
            content_sha256: req.header_str("x-ms-content-sha256"),
            body: &req.body,
        };
        let verified = match body {
            Body::Read => self.signer.verify(&parts, self.now()),
            Body::Unread(_) => self.signer.verify_unread_body(&parts, self.now()),
            Body::Verified => Ok(()),
        };
        verified.map_err(|e| DoubleResponse::error(401, "Unauthorized", &e.to_string()))
    }

    fn answer(&self, req: &DoubleRequest, body: Body) -> (Option<Endpoint>, DoubleResponse) {
        let (path, route, query) = self.route(req);
        let endpoint = match &route {
            Some(Route::Found { endpoint, .. }) => Some(*endpoint),
            _ => None,
        };

        // Authentication before anything else: an unauthenticated client learns nothing.
        if let Err(resp) = self.authenticate(req, body) {
            return (endpoint, resp);
        }

        let (endpoint, call_id, participant) = match route {
            Some(Route::Found {
                endpoint,
                call_id,
                participant_id,
            }) => (endpoint, call_id, participant_id),
            Some(Route::MethodNotAllowed { allow }) => {
                let mut r = DoubleResponse::error(
                    405,
                    "MethodNotAllowed",
                    &format!(
                        "method {} is not allowed on {}; allowed: {allow}",
                        clip(&req.method),
                        clip(path)
                    ),
                );
                r.headers.push(("allow".into(), allow.into()));
                return (None, r);
            }
            Some(Route::NotFound) | None => {
                return (
                    None,
                    not_found(format!("no operation at path {}", clip(path))),
                );
            }
        };

        if let Some(resp) = self.check_api_version(query) {
            return (Some(endpoint), resp);
        }
        if let Body::Unread(limit) = body {
            return (
                Some(endpoint),
                DoubleResponse::error(
                    413,
                    "PayloadTooLarge",
                    &format!("the body exceeds the limit of {limit} bytes; it was not read"),
                ),
            );
        }

        let body =
            match contract::validate_request(endpoint, req.header_str("content-type"), &req.body) {
                Ok(body) => body,
                Err(violations) => return (Some(endpoint), bad_request(&violations)),
            };

        (
            Some(endpoint),
            self.apply(endpoint, &call_id, participant.as_deref(), body.as_ref()),
        )
    }

    fn check_api_version(&self, query: Option<&str>) -> Option<DoubleResponse> {
        let want = self.api_version.as_deref()?;
        let got = query.and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == "api-version").then(|| percent_encoding::percent_decode_str(v))
            })
        });
        match got.map(|v| v.decode_utf8_lossy()) {
            Some(v) if v == want => None,
            Some(v) => Some(DoubleResponse::error(
                400,
                "BadRequest",
                &format!(
                    "api-version: unsupported value {:?}; this service expects api-version={want}",
                    clip(&v)
                ),
            )),
            None => Some(DoubleResponse::error(
                400,
                "BadRequest",
                &format!("api-version: the query parameter api-version={want} is required"),
            )),
        }
    }

    /// Existence checks, fault injection and the state change of a valid request.
    fn apply(
        &self,
        endpoint: Endpoint,
        call_id: &str,
        participant: Option<&str>,
        body: Option<&Value>,
    ) -> DoubleResponse {
        if endpoint == Endpoint::CreateCall {
            if self.inject_fault() {
                return Self::fault();
            }
            return self.create_call(body);
        }

        let unknown_call = || not_found(format!("call {} not found", clip(call_id)));
        let Some(key) = call_key(call_id) else {
            return unknown_call();
        };
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(call) = state.calls.get_mut(&key) else {
            if state.evicted.contains(&key) {
                return not_found(format!(
                    "call {} was evicted: the double holds at most {} calls and {} bytes of \
                     call state (--max-calls, --max-state-bytes) and drops the oldest call \
                     beyond either",
                    clip(call_id),
                    self.max_calls,
                    self.max_state_bytes
                ));
            }
            return unknown_call();
        };
        match endpoint {
            Endpoint::Hangup => {
                if self.inject_fault() {
                    return Self::fault();
                }
                if let Some(call) = state.calls.remove(&key) {
                    state.bytes = state.bytes.saturating_sub(call.bytes);
                }
                drop(guard);
                if let Some(events) = &self.events {
                    events.on_hangup(key);
                }
                DoubleResponse::empty(202)
            }
            Endpoint::PlayAudio | Endpoint::CancelMediaProcessing => {
                drop(guard);
                if self.inject_fault() {
                    return Self::fault();
                }
                let id = uuid::Uuid::new_v4().to_string();
                if let Some(events) = &self.events {
                    let context = body
                        .and_then(|b| b.get("operationContext"))
                        .and_then(Value::as_str);
                    if endpoint == Endpoint::PlayAudio {
                        let looped = body
                            .and_then(|b| b.get("loop"))
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        events.on_play(key, &id, context, looped);
                    } else {
                        events.on_cancel(key);
                    }
                }
                media_operation(endpoint, body, id)
            }
            Endpoint::InviteParticipants => {
                if self.inject_fault() {
                    return Self::fault();
                }
                let list = body
                    .and_then(|b| b.get("participants"))
                    .and_then(Value::as_array);
                let (added, removed) = add_participants(call, list, self.max_participants);
                state.bytes = (state.bytes + added).saturating_sub(removed);
                let evicted = self.enforce_state_bytes(state, key);
                let forgotten = std::mem::take(&mut state.forgotten);
                drop(guard);
                self.note_evictions(evicted);
                if let Some(events) = &self.events {
                    events.forget(&forgotten);
                    let context = body
                        .and_then(|b| b.get("operationContext"))
                        .and_then(Value::as_str);
                    events.on_invite(
                        key,
                        context,
                        || event_participants(list),
                        self.max_participants,
                    );
                }
                DoubleResponse::empty(202)
            }
            Endpoint::RemoveParticipant => {
                let p = participant.unwrap_or_default();
                if !call.participants.contains(p) {
                    return not_found(format!(
                        "participant {} not found in call {}",
                        clip(p),
                        clip(call_id)
                    ));
                }
                if self.inject_fault() {
                    return Self::fault();
                }
                if call.participants.remove(p).is_some() {
                    let b = participant_bytes(p);
                    call.bytes = call.bytes.saturating_sub(b);
                    state.bytes = state.bytes.saturating_sub(b);
                }
                drop(guard);
                if let Some(events) = &self.events {
                    events.on_remove(key, p);
                }
                DoubleResponse::empty(202)
            }
            // Handled above; kept total so a new endpoint fails to compile elsewhere.
            Endpoint::CreateCall => DoubleResponse::empty(500),
        }
    }

    /// Creates a call whose participants are its targets (src/contract/CONTRACT.md), evicting the
    /// oldest calls beyond `max_calls` or `max_state_bytes`.
    fn create_call(&self, body: Option<&Value>) -> DoubleResponse {
        let id = uuid::Uuid::new_v4();
        let key = id.as_u128();
        let mut call = Call {
            participants: Participants::new(),
            bytes: CALL_BYTES,
        };
        let targets = body
            .and_then(|b| b.get("targets"))
            .and_then(Value::as_array);
        let (added, removed) = add_participants(&mut call, targets, self.max_participants);
        let bytes = call.bytes;
        debug_assert_eq!(bytes, CALL_BYTES + added - removed);
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        // At most one call is evicted by count (the bound is checked per insert); it is
        // freed after the lock is released.
        let mut by_count = None;
        state
            .calls
            .insert(key, call, |k, c| by_count = Some((k, c)));
        state.bytes += bytes;
        let mut evicted = 0;
        if let Some((k, c)) = &by_count {
            state.bytes = state.bytes.saturating_sub(c.bytes);
            state.remember_evicted(*k);
            evicted += 1;
        }
        evicted += self.enforce_state_bytes(state, key);
        let forgotten = std::mem::take(&mut state.forgotten);
        drop(guard);
        drop(by_count);
        self.note_evictions(evicted);
        let id = id.to_string();
        if let Some(events) = &self.events {
            events.forget(&forgotten);
            let participants = || {
                let all = event_participants(targets);
                let skip = all.len().saturating_sub(self.max_participants);
                all.into_iter().skip(skip).collect()
            };
            events.on_create(key, &id, body, participants);
        }
        DoubleResponse::json(200, &json!({ "callLegId": id }))
    }

    /// Evicts the oldest calls other than `keep` until the state fits `max_state_bytes`;
    /// if `keep` alone is too large, drops its oldest participants. Returns the number
    /// of calls evicted.
    fn enforce_state_bytes(&self, state: &mut State, keep: u128) -> u64 {
        let mut evicted = 0;
        while state.bytes > self.max_state_bytes {
            if let Some((k, c)) = state.calls.pop_oldest_except(&keep) {
                state.bytes = state.bytes.saturating_sub(c.bytes);
                state.remember_evicted(k);
                evicted += 1;
                continue;
            }
            let Some(call) = state.calls.get_mut(&keep) else {
                break;
            };
            let Some(id) = call.participants.pop_oldest() else {
                break;
            };
            let b = participant_bytes(&id);
            call.bytes = call.bytes.saturating_sub(b);
            state.bytes = state.bytes.saturating_sub(b);
        }
        evicted
    }

    /// Counts evictions and logs them without a flood: one info line at the first,
    /// then at most one a minute with the running count.
    fn note_evictions(&self, n: u64) {
        if n == 0 {
            return;
        }
        let total = self.stats.evicted.fetch_add(n, Ordering::Relaxed) + n;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
            .max(1);
        let last = self.eviction_logged_at.load(Ordering::Relaxed);
        if last != 0 && now < last.saturating_add(EVICTION_LOG_INTERVAL_SECS) {
            return;
        }
        // One thread wins the line; the others' evictions show in the next count.
        if self
            .eviction_logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let before = self.eviction_logged_count.swap(total, Ordering::Relaxed);
        if last == 0 {
            tracing::info!(
                "state bound reached (--max-calls {}, --max-state-bytes {}): evicting the \
                 oldest calls; requests on them get 404 saying so. Further evictions are \
                 counted here at most once a minute",
                self.max_calls,
                self.max_state_bytes
            );
        } else {
            tracing::info!(
                "{} calls evicted in all ({} since the last count)",
                total,
                total - before
            );
        }
    }
}

/// Seconds between two eviction log lines.
const EVICTION_LOG_INTERVAL_SECS: u64 = 60;

/// Adds the participant ids of `identifiers` to `call` (oldest evicted beyond the
/// per-call bound); returns the bytes added and removed.
fn add_participants(
    call: &mut Call,
    identifiers: Option<&Vec<Value>>,
    cap: usize,
) -> (usize, usize) {
    let (mut added, mut removed) = (0, 0);
    for id in identifiers
        .into_iter()
        .flatten()
        .filter_map(contract::participant_id)
    {
        let b = participant_bytes(id);
        let id: Arc<str> = id.into();
        if call
            .participants
            .insert(id, cap, |old| removed += participant_bytes(&old))
        {
            added += b;
        }
    }
    call.bytes = (call.bytes + added).saturating_sub(removed);
    (added, removed)
}

fn bad_request(violations: &[Violation]) -> DoubleResponse {
    let too_large = violations.iter().any(|v| v.rule == Rule::TooLarge);
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut body = json!({
        "code": if too_large { "PayloadTooLarge" } else { "BadRequest" },
        "message": message,
    });
    if let Some(first) = violations.first().filter(|v| !v.path.is_empty()) {
        body["target"] = Value::String(first.path.clone());
    }
    DoubleResponse::json(if too_large { 413 } else { 400 }, &body)
}

/// The participants of identifiers as events list them (each id once, first wins).
fn event_participants(identifiers: Option<&Vec<Value>>) -> Vec<Participant> {
    let mut out: Vec<Participant> = Vec::new();
    // A set, not a scan: a 1 MiB invitation holds thousands of identifiers.
    let mut seen: HashSet<&str> = HashSet::new();
    for v in identifiers.into_iter().flatten() {
        let Some(id) = contract::participant_id(v) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        out.push(Participant {
            id: id.into(),
            identifier: Arc::new(super::events::pascal_identifier(v)),
        });
    }
    out
}

fn media_operation(endpoint: Endpoint, body: Option<&Value>, id: String) -> DoubleResponse {
    let (status, message) = match endpoint {
        Endpoint::PlayAudio => ("running", "Action is accepted: the audio is playing."),
        _ => (
            "completed",
            "Action is accepted: media processing is cancelled.",
        ),
    };
    let mut op = json!({
        "id": id,
        "status": status,
        "resultInfo": { "code": 202, "subcode": 0, "message": message },
    });
    if let Some(ctx) = body
        .and_then(|b| b.get("operationContext"))
        .and_then(Value::as_str)
    {
        op["operationContext"] = Value::String(ctx.to_string());
    }
    DoubleResponse::json(202, &op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_evicts_oldest_and_forgets_removed() {
        let mut b: Bounded<u32, ()> = Bounded::new(3);
        let mut evicted = Vec::new();
        for k in 0..3 {
            assert!(b.insert(k, (), |k, ()| evicted.push(k)));
        }
        assert!(!b.insert(0, (), |k, ()| evicted.push(k)));
        b.remove(&1);
        assert!(b.insert(3, (), |k, ()| evicted.push(k)));
        assert!(evicted.is_empty());
        assert!(b.insert(4, (), |k, ()| evicted.push(k)));
        assert_eq!(evicted, [0]);
        assert_eq!(b.pop_oldest_except(&2), Some((3, ())));
        assert_eq!(b.pop_oldest_except(&4), Some((2, ())));
        assert!(!b.contains(&0) && !b.contains(&2) && b.contains(&4));
        assert_eq!(b.order.len(), b.map.len());
    }

    #[test]
    fn participants_keep_order_bound_and_index() {
        let mut p = Participants::new();
        let mut evicted = Vec::new();
        for i in 0..40 {
            assert!(p.insert(format!("id-{i}").into(), 30, |old| evicted.push(old)));
        }
        assert!(!p.insert("id-39".into(), 30, |old| evicted.push(old)));
        assert_eq!(evicted.len(), 10);
        assert_eq!(&*evicted[0], "id-0");
        assert!(p.index.is_some(), "indexed once large");
        assert_eq!(p.index.as_ref().unwrap().len(), p.ids.len());
        assert!(!p.contains("id-9") && p.contains("id-10") && p.contains("id-39"));
        assert_eq!(p.remove("id-20").as_deref(), Some("id-20"));
        assert!(!p.contains("id-20") && p.remove("id-20").is_none());
        assert_eq!(p.pop_oldest().as_deref(), Some("id-10"));
        assert!(!p.contains("id-10"));
        assert_eq!(p.index.as_ref().unwrap().len(), p.ids.len());
        let order: Vec<&str> = p.ids.iter().map(|s| &**s).collect();
        assert_eq!(order.first(), Some(&"id-11"));
        assert_eq!(order.last(), Some(&"id-39"));
        // A small set works without an index.
        let mut q = Participants::new();
        assert!(q.insert("a".into(), 2, |_| {}) && q.insert("b".into(), 2, |_| {}));
        assert!(q.insert("c".into(), 2, |_| {}));
        assert!(q.index.is_none() && !q.contains("a") && q.contains("c"));
    }

    #[test]
    fn call_keys_are_canonical_uuids_only() {
        let id = uuid::Uuid::new_v4().to_string();
        assert!(call_key(&id).is_some());
        assert!(call_key(&id.to_uppercase()).is_none());
        assert!(call_key(&id.replace('-', "")).is_none());
        assert!(call_key("abc").is_none());
    }

    #[test]
    fn splitmix_is_reproducible() {
        let a = AtomicU64::new(7);
        let b = AtomicU64::new(7);
        let xs: Vec<u64> = (0..5).map(|_| splitmix(&a)).collect();
        let ys: Vec<u64> = (0..5).map(|_| splitmix(&b)).collect();
        assert_eq!(xs, ys);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&unit(&a))));
    }
}
