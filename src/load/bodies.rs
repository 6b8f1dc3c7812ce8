//! Request bodies for the load run, prepared before any load starts: generated per user
//! from the seed, or replayed in order from a `--bodies` file. Each body carries its
//! precomputed content hash, so signing a request costs one HMAC and no hashing of the body.

use crate::auth::content_hash;
use crate::contract::{Endpoint, RequestBody};
use bytes::Bytes;
use reqwest::header::HeaderValue;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many bodies each user gets per endpoint; users cycle through their pool.
pub const BODIES_PER_USER: usize = 16;

/// A body as it comes from the generators or a `--bodies` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody {
    /// The endpoint it is for.
    pub endpoint: Endpoint,
    /// `Content-Type` to send, if any.
    pub content_type: Option<String>,
    /// The exact bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Whether the body breaks the contract on purpose (then an error status is expected).
    pub defect: bool,
}

/// A body ready to send.
#[derive(Debug, Clone)]
pub struct PreparedBody {
    /// The bytes (cheap to clone).
    pub bytes: Bytes,
    /// `Content-Type`, when the body has one.
    pub content_type: Option<HeaderValue>,
    /// `x-ms-content-sha256` of `bytes`.
    pub hash: HeaderValue,
    /// The request's `operationContext`, which a media operation response must echo.
    pub context: Option<String>,
    /// For invite participants: the participant ids the invitation creates.
    pub participants: Vec<String>,
    /// The body breaks the contract on purpose: a documented error answer is success.
    pub expect_error: bool,
    /// Where in `bytes` the [`CONTEXT_SERIAL_LEN`] hex digits of a unique context are
    /// written per request (see [`PreparedBody::with_serial`]); set on generated bodies
    /// whose result a step awaits, so each request's result event can be told apart.
    pub context_slot: Option<usize>,
    /// A `loop: true` play: its result comes only when something stops it.
    pub never_ends: bool,
}

/// Hex digits of the per-request serial in a unique `operationContext`.
pub const CONTEXT_SERIAL_LEN: usize = 16;

/// A body with its unique `operationContext` written in: what one request sends.
#[derive(Debug, Clone)]
pub struct Serialized {
    /// The bytes.
    pub bytes: Bytes,
    /// `x-ms-content-sha256` of `bytes`.
    pub hash: HeaderValue,
    /// The `operationContext` the bytes carry.
    pub context: String,
}

impl PreparedBody {
    /// Prepares a raw body: hashes it once and extracts what the responses are checked against.
    pub fn prepare(raw: RawBody) -> PreparedBody {
        let bytes = Bytes::from(raw.body.unwrap_or_default());
        let value: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let context = value
            .as_ref()
            .and_then(|v| v.get("operationContext"))
            .and_then(|c| c.as_str())
            .map(str::to_string);
        let participants = match (raw.endpoint, &value) {
            (Endpoint::InviteParticipants, Some(v)) => v
                .get("participants")
                .and_then(|p| p.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(crate::contract::participant_id)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let never_ends = raw.endpoint == Endpoint::PlayAudio
            && value.as_ref().and_then(|v| v.get("loop")) == Some(&serde_json::Value::Bool(true));
        PreparedBody {
            hash: header(&content_hash(&bytes)),
            content_type: raw.content_type.as_deref().map(header),
            bytes,
            context,
            participants,
            expect_error: raw.defect,
            context_slot: None,
            never_ends,
        }
    }

    /// This body with a request's `serial` written into its `operationContext`, when it
    /// has a slot for it: a copy of the bytes and a hash, no JSON work per request.
    pub fn with_serial(&self, serial: u64) -> Option<Serialized> {
        let at = self.context_slot?;
        let context = self.context.as_deref()?;
        let digits = format!("{serial:0width$x}", width = CONTEXT_SERIAL_LEN);
        let digits = &digits.as_bytes()[digits.len() - CONTEXT_SERIAL_LEN..];
        let mut bytes = self.bytes.to_vec();
        bytes
            .get_mut(at..at + CONTEXT_SERIAL_LEN)?
            .copy_from_slice(digits);
        let keep = context.len().checked_sub(CONTEXT_SERIAL_LEN)?;
        let context = format!("{}{}", &context[..keep], String::from_utf8_lossy(digits));
        Some(Serialized {
            hash: header(&content_hash(&bytes)),
            bytes: Bytes::from(bytes),
            context,
        })
    }

    /// The body rewritten for a run with an event receiver: a create-call body gets the
    /// receiver's `callbackUri`; with `awaited`, a play or invitation gets a slot for a
    /// unique `operationContext` (its own context, `#` and [`CONTEXT_SERIAL_LEN`] hex
    /// digits) and a play `loop: false`, since a looping play has no result to await.
    /// Bodies that break the contract on purpose, or are not JSON objects, stay as they are.
    fn for_events(&self, endpoint: Endpoint, callback_uri: &str, awaited: bool) -> PreparedBody {
        use serde_json::Value;
        let unchanged = || self.clone();
        if self.expect_error {
            return unchanged();
        }
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&self.bytes) else {
            return unchanged();
        };
        let mut slot_context = None;
        match endpoint {
            Endpoint::CreateCall => {
                map.insert("callbackUri".into(), Value::String(callback_uri.into()));
            }
            Endpoint::PlayAudio | Endpoint::InviteParticipants if awaited => {
                let own = self.context.as_deref().unwrap_or("load");
                let context = format!("{own}#{}", "0".repeat(CONTEXT_SERIAL_LEN));
                map.insert("operationContext".into(), Value::String(context.clone()));
                if endpoint == Endpoint::PlayAudio && map.contains_key("loop") {
                    map.insert("loop".into(), Value::Bool(false));
                }
                slot_context = Some(context);
            }
            _ => return unchanged(),
        }
        let Ok(bytes) = serde_json::to_vec(&Value::Object(map)) else {
            return unchanged();
        };
        let mut body = PreparedBody::prepare(RawBody {
            endpoint,
            content_type: self
                .content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: Some(bytes),
            defect: false,
        });
        if let Some(context) = slot_context {
            // The serial is the last digits of the context's JSON string, wherever the
            // serializer put the key.
            let needle = match serde_json::to_string(&context) {
                Ok(quoted) => format!("\"operationContext\":{quoted}"),
                Err(_) => return body,
            };
            body.context_slot = find(&body.bytes, needle.as_bytes())
                .map(|at| at + needle.len() - 1 - CONTEXT_SERIAL_LEN);
        }
        body
    }

    /// The body of a request that carries none.
    pub fn empty() -> PreparedBody {
        PreparedBody {
            bytes: Bytes::new(),
            content_type: None,
            hash: header(&content_hash(b"")),
            context: None,
            participants: Vec::new(),
            expect_error: false,
            context_slot: None,
            never_ends: false,
        }
    }
}

/// Where `needle` starts in `haystack`, if it is there.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header(s: &str) -> HeaderValue {
    // Content hashes are base64; content types come from our generators or a file and
    // are checked by `HeaderValue::from_str`. A value that is not a valid header is sent
    // as an empty header instead of failing the run.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The position of an endpoint in [`Endpoint::ALL`], for per-endpoint arrays.
pub fn index(e: Endpoint) -> usize {
    Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

/// What the next request of a user sends.
#[derive(Debug)]
pub enum Next<'a> {
    /// This body. `last` is true when it is the last one a `--bodies` file holds.
    Body {
        /// The body.
        body: &'a PreparedBody,
        /// Whether every replayed body has now been handed out.
        last: bool,
    },
    /// The file's bodies for this endpoint are used up: skip the step.
    Exhausted,
}

/// Where bodies come from.
#[derive(Debug)]
pub enum Bodies {
    /// Pools per user (outer) and endpoint (inner), generated from the seed.
    Generated {
        /// `pools[user][endpoint index]`; an empty pool means the request has no body.
        pools: Vec<[Arc<[PreparedBody]>; 6]>,
        /// The body sent where a pool is empty.
        empty: PreparedBody,
    },
    /// A `--bodies` file, replayed once, in order, across all users.
    Replay(Replay),
}

/// The bodies of a `--bodies` file, per endpoint, with shared cursors.
#[derive(Debug)]
pub struct Replay {
    queues: [Vec<PreparedBody>; 6],
    cursors: [AtomicUsize; 6],
    remaining: AtomicUsize,
    empty: PreparedBody,
    /// Where they came from.
    pub file: String,
}

impl Replay {
    /// How many bodies the file holds.
    pub fn len(&self) -> usize {
        self.queues.iter().map(Vec::len).sum()
    }

    /// How many bodies have not been handed to a request yet.
    pub fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }

    /// How many bodies the file holds for `e`.
    pub fn count(&self, e: Endpoint) -> usize {
        self.queues[index(e)].len()
    }
}

impl Bodies {
    /// Generates `BODIES_PER_USER` bodies per endpoint in `endpoints` for each of `users`
    /// users, deterministically from `seed`.
    pub fn generate(
        seed: u64,
        users: usize,
        endpoints: &[Endpoint],
        generator: &dyn Fn(Endpoint, u64, usize) -> Vec<RawBody>,
    ) -> Bodies {
        let pools = (0..users.max(1))
            .map(|user| {
                std::array::from_fn(|i| {
                    let e = Endpoint::ALL[i];
                    if !endpoints.contains(&e) || e.request_body() == RequestBody::Ignored {
                        return Arc::from(Vec::new());
                    }
                    let pool: Vec<PreparedBody> =
                        generator(e, user_seed(seed, user, e), BODIES_PER_USER)
                            .into_iter()
                            .map(PreparedBody::prepare)
                            .collect();
                    Arc::from(pool)
                })
            })
            .collect();
        Bodies::Generated {
            pools,
            empty: PreparedBody::empty(),
        }
    }

    /// Reads a `--bodies` file: JSON lines as `acs-harness generate` prints them.
    #[cfg(test)]
    pub fn read_file(path: &Path) -> Result<Bodies, String> {
        Bodies::read_file_slice(path, 0, 1)
    }

    /// [`Bodies::read_file`] for shard `shard` of `shards`: only request lines `i` with
    /// `i % shards == shard` (0-based, blank lines not counted).
    pub fn read_file_slice(path: &Path, shard: usize, shards: usize) -> Result<Bodies, String> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{file}: cannot read the bodies file: {e}"))?;
        let mut queues: [Vec<PreparedBody>; 6] = Default::default();
        let mut request = 0usize;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            request += 1;
            if (request - 1) % shards.max(1) != shard {
                continue;
            }
            let raw = parse_line(line).map_err(|e| format!("{file}:{}: {e}", i + 1))?;
            queues[index(raw.endpoint)].push(PreparedBody::prepare(raw));
        }
        let total = queues.iter().map(Vec::len).sum();
        if total == 0 && shards > 1 {
            return Err(format!(
                "{file}: holds no request for shard {shard}/{shards} (line i goes to shard i mod {shards})"
            ));
        }
        if total == 0 {
            return Err(format!("{file}: the bodies file holds no request"));
        }
        Ok(Bodies::Replay(Replay {
            queues,
            cursors: Default::default(),
            remaining: AtomicUsize::new(total),
            empty: PreparedBody::empty(),
            file,
        }))
    }

    /// Rewrites the bodies once, before the run, for its event receiver (see
    /// [`PreparedBody::for_events`]): every create-call body carries `callback_uri`;
    /// generated bodies of the `awaited` endpoints get a unique-context slot. A replay
    /// sends what its file says: only when the scenario awaits events do its create-call
    /// bodies get the receiver's callbackUri (its contexts stay its own).
    pub fn for_events(&mut self, callback_uri: &str, awaited: &[Endpoint]) {
        match self {
            Bodies::Generated { pools, .. } => {
                for user in pools.iter_mut() {
                    for (i, pool) in user.iter_mut().enumerate() {
                        let e = Endpoint::ALL[i];
                        let awaits = awaited.contains(&e);
                        if e != Endpoint::CreateCall && !awaits {
                            continue;
                        }
                        let rewritten: Vec<PreparedBody> = pool
                            .iter()
                            .map(|b| b.for_events(e, callback_uri, awaits))
                            .collect();
                        *pool = Arc::from(rewritten);
                    }
                }
            }
            Bodies::Replay(_) if awaited.is_empty() => {}
            Bodies::Replay(r) => {
                let e = Endpoint::CreateCall;
                for b in r.queues[index(e)].iter_mut() {
                    *b = b.for_events(e, callback_uri, false);
                }
            }
        }
    }

    /// The next body for `user`'s request to `e`; `cursor` is the user's own position.
    pub fn next(&self, user: usize, e: Endpoint, cursor: &mut usize) -> Next<'_> {
        match self {
            Bodies::Generated { pools, empty } => {
                let pool = &pools[user % pools.len().max(1)][index(e)];
                if pool.is_empty() {
                    return Next::Body {
                        body: empty,
                        last: false,
                    };
                }
                let body = &pool[*cursor % pool.len()];
                *cursor = cursor.wrapping_add(1);
                Next::Body { body, last: false }
            }
            Bodies::Replay(r) => {
                let queue = &r.queues[index(e)];
                if queue.is_empty() {
                    // The file has no body for this endpoint: only endpoints that take
                    // none get here (checked before the run), so send none.
                    return Next::Body {
                        body: &r.empty,
                        last: false,
                    };
                }
                let i = r.cursors[index(e)].fetch_add(1, Ordering::Relaxed);
                match queue.get(i) {
                    Some(body) => {
                        let last = r.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
                        Next::Body { body, last }
                    }
                    None => Next::Exhausted,
                }
            }
        }
    }
}

/// A seed per user and endpoint, so users send different bodies and the same seed
/// always gives the same ones.
pub fn user_seed(seed: u64, user: usize, e: Endpoint) -> u64 {
    let mut z = seed
        ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index(e) as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // splitmix64 finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses one line of `acs-harness generate` output.
pub fn parse_line(line: &str) -> Result<RawBody, String> {
    let g = crate::generate::GeneratedRequest::from_json_line(line).map_err(|e| e.to_string())?;
    Ok(RawBody {
        endpoint: g.endpoint,
        content_type: g.content_type,
        body: g.body,
        defect: g.defect.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_extracts_context_and_participants() {
        let b = PreparedBody::prepare(RawBody {
            endpoint: Endpoint::InviteParticipants,
            content_type: Some("application/json".into()),
            body: Some(br#"{"participants":[{"phoneNumber":{"value":"+14251001000"}},{"communicationUser":{"id":"8:acs:x"},"rawId":"r1"}],"operationContext":"ctx"}"#.to_vec()),
            defect: false,
        });
        assert_eq!(b.participants, ["+14251001000", "r1"]);
        assert_eq!(b.context.as_deref(), Some("ctx"));
        assert_eq!(b.hash.to_str().unwrap(), content_hash(&b.bytes));
    }

    fn raw(endpoint: Endpoint, body: &str) -> RawBody {
        RawBody {
            endpoint,
            content_type: Some("application/json".into()),
            body: Some(body.as_bytes().to_vec()),
            defect: false,
        }
    }

    #[test]
    fn bodies_for_events_carry_the_callback_and_a_context_slot() {
        let mut bodies = Bodies::generate(1, 2, &Endpoint::ALL, &|e, _, n| match e {
            Endpoint::CreateCall => {
                vec![
                    raw(
                        e,
                        r#"{"callbackUri":"https://app.example/cb","targets":[]}"#
                    );
                    n
                ]
            }
            Endpoint::PlayAudio => vec![
                raw(
                    e,
                    r#"{"audioFileUri":"https://a.example/x.wav","loop":true,"operationContext":"ctx \"q\""}"#,
                ),
                raw(e, r#"{"audioFileUri":"https://a.example/x.wav"}"#),
            ],
            _ => Vec::new(),
        });
        bodies.for_events("http://127.0.0.1:9/load", &[Endpoint::PlayAudio]);
        let mut c = 0;
        let Next::Body { body, .. } = bodies.next(1, Endpoint::CreateCall, &mut c) else {
            panic!("no body");
        };
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["callbackUri"], "http://127.0.0.1:9/load");
        assert_eq!(body.hash.to_str().unwrap(), content_hash(&body.bytes));
        let mut p = 0;
        for (own, loops) in [("ctx \"q\"", false), ("load", false)] {
            let Next::Body { body, .. } = bodies.next(0, Endpoint::PlayAudio, &mut p) else {
                panic!("no body");
            };
            assert!(!body.never_ends);
            let a = body.with_serial(1).unwrap();
            let b = body.with_serial(0xabc).unwrap();
            for (s, serial) in [(&a, "0000000000000001"), (&b, "0000000000000abc")] {
                let v: serde_json::Value = serde_json::from_slice(&s.bytes).unwrap();
                assert_eq!(s.context, format!("{own}#{serial}"));
                assert_eq!(v["operationContext"], s.context.as_str());
                assert_eq!(
                    v.get("loop").and_then(|l| l.as_bool()).unwrap_or(false),
                    loops
                );
                assert_eq!(s.hash.to_str().unwrap(), content_hash(&s.bytes));
            }
        }
        // Without an awaiting step, plays stay as generated.
        let mut plain = Bodies::generate(1, 1, &Endpoint::ALL, &|e, _, _| match e {
            Endpoint::PlayAudio => vec![raw(
                e,
                r#"{"audioFileUri":"https://a.example/x.wav","loop":true}"#,
            )],
            _ => Vec::new(),
        });
        plain.for_events("http://127.0.0.1:9/load", &[]);
        let Next::Body { body, .. } = plain.next(0, Endpoint::PlayAudio, &mut c) else {
            panic!("no body");
        };
        assert!(body.never_ends && body.context_slot.is_none() && body.with_serial(1).is_none());
    }

    #[test]
    fn lines_parse_and_replay_in_order_once() {
        let dir = std::env::temp_dir().join(format!("acs-bodies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"endpoint":"create-call","method":"POST","path":"/calls","params":{},"contentType":"application/json","body":"{\"a\":1}"}"#, "\n",
                "\n",
                r#"{"endpoint":"create-call","method":"POST","path":"/calls","params":{},"contentType":"application/json","bodyBase64":"eyJhIjoyfQ=="}"#, "\n",
            ),
        )
        .unwrap();
        let bodies = Bodies::read_file(&path).unwrap();
        let mut c = 0;
        let mut seen = Vec::new();
        while let Next::Body { body, last } = bodies.next(0, Endpoint::CreateCall, &mut c) {
            seen.push((body.bytes.clone(), last));
        }
        assert_eq!(
            seen,
            [
                (Bytes::from_static(b"{\"a\":1}"), false),
                (Bytes::from_static(b"{\"a\":2}"), true)
            ]
        );
        assert!(matches!(
            bodies.next(0, Endpoint::Hangup, &mut c),
            Next::Body { .. }
        ));
        assert!(parse_line(r#"{"endpoint":"nope"}"#).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
