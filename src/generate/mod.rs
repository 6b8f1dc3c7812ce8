//! Request generators: proptest strategies for valid requests to all six endpoints and
//! for invalid ones that carry exactly one labelled [`Defect`].
//!
//! The contract gate runs them against a target, the load runner sends them, and
//! `acs-harness generate` prints them as JSON lines; all three replay from a seed.

mod defect;
pub mod events;
mod large;
mod values;

pub use defect::{BadLabel, Defect, DefectClass, DefectKind, defect_classes};
pub use large::{Size, sizes};

use crate::contract::Endpoint;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use defect::{Fill, Picks, Planter};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const JSON: &str = "application/json";

/// One generated request: what to send, minus the call id and authentication, which
/// the sender supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRequest {
    /// The operation.
    pub endpoint: Endpoint,
    /// Generated path parameters other than `callId` (`participantId`), not encoded.
    pub params: BTreeMap<String, String>,
    /// The `Content-Type` header to send, if any.
    pub content_type: Option<String>,
    /// The exact body bytes; `None` sends no body.
    pub body: Option<Vec<u8>>,
    /// The one contract violation the request carries; `None` for a valid request.
    pub defect: Option<Defect>,
}

/// Why generators for an endpoint or class cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The endpoint ignores its body, so no body can be invalid.
    #[error("{0} ignores its request body, so it has no invalid requests")]
    NoInvalidBodies(Endpoint),
    /// The class is not one of the endpoint's [`defect_classes`].
    #[error("{endpoint} has no defect class {class}")]
    UnsupportedClass {
        /// The endpoint asked for.
        endpoint: Endpoint,
        /// The class asked for, as its label.
        class: String,
    },
}

/// Why a JSON line could not be read back into a [`GeneratedRequest`].
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not a JSON object of the expected shape.
    #[error("not a generated-request line: {0}")]
    Json(#[from] serde_json::Error),
    /// `endpoint` is not one of the six names.
    #[error("unknown endpoint {0:?}; expected one of {names}", names = Endpoint::names())]
    UnknownEndpoint(String),
    /// `method` or `path` does not belong to the endpoint.
    #[error("{field} {got:?} does not match endpoint {endpoint}")]
    Mismatch {
        /// The endpoint named by the line.
        endpoint: Endpoint,
        /// `method` or `path`.
        field: &'static str,
        /// The value found.
        got: String,
    },
    /// Both `body` and `bodyBase64` are present.
    #[error("a line has either body or bodyBase64, not both")]
    TwoBodies,
    /// `bodyBase64` is not base64.
    #[error("bodyBase64 is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// `violation` is not a defect label.
    #[error(transparent)]
    Label(#[from] BadLabel),
}

/// The JSON-line form; field order is the order printed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    endpoint: String,
    method: String,
    path: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    violation: Option<String>,
}

impl GeneratedRequest {
    /// One JSON object on one line (`acs-harness generate` output): the endpoint, its
    /// method and path template, params, content type, exact body and violation label.
    pub fn to_json_line(&self) -> String {
        let (body, body_base64) = match &self.body {
            None => (None, None),
            Some(b) => match std::str::from_utf8(b) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (None, Some(BASE64.encode(b))),
            },
        };
        let line = Line {
            endpoint: self.endpoint.name().to_string(),
            method: self.endpoint.method().to_string(),
            path: self.endpoint.path_template().to_string(),
            params: self.params.clone(),
            content_type: self.content_type.clone(),
            body,
            body_base64,
            violation: self.defect.as_ref().map(Defect::to_string),
        };
        // Serializing strings and maps of strings cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Reads a line written by [`GeneratedRequest::to_json_line`].
    pub fn from_json_line(line: &str) -> Result<Self, LineError> {
        let l: Line = serde_json::from_str(line)?;
        let endpoint =
            Endpoint::from_name(&l.endpoint).ok_or(LineError::UnknownEndpoint(l.endpoint))?;
        if l.method != endpoint.method() {
            return Err(LineError::Mismatch {
                endpoint,
                field: "method",
                got: l.method,
            });
        }
        if l.path != endpoint.path_template() {
            return Err(LineError::Mismatch {
                endpoint,
                field: "path",
                got: l.path,
            });
        }
        let body = match (l.body, l.body_base64) {
            (Some(_), Some(_)) => return Err(LineError::TwoBodies),
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => Some(BASE64.decode(b64)?),
            (None, None) => None,
        };
        let defect = l.violation.map(|v| v.parse()).transpose()?;
        Ok(GeneratedRequest {
            endpoint,
            params: l.params,
            content_type: l.content_type,
            body,
            defect,
        })
    }

    /// The body's `operationContext` string, which a media operation must echo.
    pub fn operation_context(&self) -> Option<String> {
        let body = self.body.as_deref()?;
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("operationContext")?.as_str().map(str::to_string)
    }

    /// The generated `participantId`, for remove participant.
    pub fn participant_id(&self) -> Option<&str> {
        self.params.get("participantId").map(String::as_str)
    }
}

/// The valid JSON body of an endpoint that takes one.
fn valid_value(e: Endpoint) -> Option<BoxedStrategy<Value>> {
    Some(match e {
        Endpoint::CreateCall => values::create_call().boxed(),
        Endpoint::Hangup => values::hangup().boxed(),
        Endpoint::PlayAudio => values::play_audio().boxed(),
        Endpoint::CancelMediaProcessing => values::cancel_media().boxed(),
        Endpoint::InviteParticipants => values::invite().boxed(),
        Endpoint::RemoveParticipant => return None,
    })
}

fn json_content_type() -> impl Strategy<Value = String> + Clone {
    // An integer draw, not `prop_oneof!`: unions are slow to generate (see values.rs).
    (0u8..10).prop_map(|k| match k {
        9 => "application/json; charset=utf-8".to_string(),
        _ => JSON.to_string(),
    })
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // A `Value` has only string keys, so serializing it cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Valid requests to `e`, as real clients send them.
///
/// Draw with a seeded [`runner`] (or [`sample`]) to get the same requests every run;
/// use the strategy in `proptest!` for property tests of a client or a server.
///
/// ```
/// use acs_harness::generate::{sample, valid};
/// use acs_harness::{Endpoint, validate_request};
///
/// for e in Endpoint::ALL {
///     for req in sample(&valid(e), 42, 5) {
///         let body = req.body.as_deref().unwrap_or_default();
///         assert!(validate_request(e, req.content_type.as_deref(), body).is_ok());
///         assert!(req.defect.is_none());
///     }
/// }
/// ```
pub fn valid(e: Endpoint) -> BoxedStrategy<GeneratedRequest> {
    let plain = move |content_type, body| GeneratedRequest {
        endpoint: e,
        params: BTreeMap::new(),
        content_type,
        body,
        defect: None,
    };
    match e {
        // The SDKs send no body; `{}` is accepted too.
        Endpoint::Hangup => (0u8..4, json_content_type())
            .prop_map(move |(k, ct)| match k {
                0..=2 => plain(None, None),
                _ => plain(Some(ct), Some(b"{}".to_vec())),
            })
            .boxed(),
        Endpoint::RemoveParticipant => values::participant_id()
            .prop_map(move |p| GeneratedRequest {
                params: BTreeMap::from([("participantId".to_string(), p)]),
                ..plain(None, None)
            })
            .boxed(),
        _ => match valid_value(e) {
            Some(body) => (body, json_content_type())
                .prop_map(move |(v, ct)| plain(Some(ct), Some(to_bytes(&v))))
                .boxed(),
            None => Just(plain(None, None)).boxed(),
        },
    }
}

/// Valid requests to `e` at one of the large [`sizes`] the contract allows (arrays of
/// dozens to thousands of identifiers, long strings, bodies just under 1 MiB); `None`
/// where `e` has no body of that size. Separate from [`valid`], whose sizes stay those
/// of everyday traffic.
pub fn valid_large(e: Endpoint, size: Size) -> Option<BoxedStrategy<GeneratedRequest>> {
    let body = large::body(e, size)?;
    Some(
        (body, json_content_type())
            .prop_map(move |(v, ct)| GeneratedRequest {
                endpoint: e,
                params: BTreeMap::new(),
                content_type: Some(ct),
                body: Some(to_bytes(&v)),
                defect: None,
            })
            .boxed(),
    )
}

fn fill() -> impl Strategy<Value = Fill> + Clone {
    (
        values::communication_user(),
        values::phone_number(),
        values::teams_user(),
        values::phone_body(),
    )
        .prop_map(
            |(communication_user, phone_number, teams_user, phone_body)| Fill {
                communication_user,
                phone_number,
                teams_user,
                phone_body,
            },
        )
}

/// Plants one defect of a class drawn from `classes` (resolved against the schema
/// table once, here, not per request) into valid bodies of `e`.
fn invalid_from(
    e: Endpoint,
    body: BoxedStrategy<Value>,
    classes: impl Strategy<Value = Arc<Planter>> + 'static,
) -> BoxedStrategy<GeneratedRequest> {
    (
        classes,
        body,
        fill(),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
    )
        .prop_map(move |(planter, mut v, fill, at, item, variant)| {
            let picks = Picks { at, item, variant };
            let class = &planter.class;
            let (content_type, bytes, path) = if class.kind.is_body_level() {
                let text = serde_json::to_string(&v).unwrap_or_default();
                let (ct, bytes) = defect::body_defect(e, class.kind, &text, picks);
                (ct, bytes, String::new())
            } else {
                let path = defect::plant(&planter, &mut v, &fill, picks);
                (Some(JSON.to_string()), to_bytes(&v), path)
            };
            GeneratedRequest {
                endpoint: e,
                params: BTreeMap::new(),
                content_type,
                body: Some(bytes),
                defect: Some(Defect {
                    kind: class.kind,
                    path,
                }),
            }
        })
        .boxed()
}

/// Invalid requests to `e`, each with exactly one defect of any of its classes.
/// Remove participant ignores its body, so asking for it is an error.
///
/// ```
/// use acs_harness::generate::{invalid, sample};
/// use acs_harness::{Endpoint, validate_request};
///
/// for req in sample(&invalid(Endpoint::PlayAudio)?, 42, 20) {
///     let defect = req.defect.as_ref().expect("every invalid request is labelled");
///     let body = req.body.as_deref().unwrap_or_default();
///     let result = validate_request(Endpoint::PlayAudio, req.content_type.as_deref(), body);
///     assert!(result.is_err(), "{defect} was accepted");
/// }
/// assert!(invalid(Endpoint::RemoveParticipant).is_err()); // its body is ignored
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn invalid(e: Endpoint) -> Result<BoxedStrategy<GeneratedRequest>, GenerateError> {
    let classes = defect_classes(e);
    match valid_value(e) {
        Some(body) if !classes.is_empty() => {
            let planters: Vec<Arc<Planter>> = classes
                .into_iter()
                .map(|c| Arc::new(Planter::for_request(e, c)))
                .collect();
            Ok(invalid_from(e, body, select(planters)))
        }
        _ => Err(GenerateError::NoInvalidBodies(e)),
    }
}

/// Invalid requests to `e` whose one defect is of `class` (see [`defect_classes`]).
pub fn invalid_of(
    e: Endpoint,
    class: &DefectClass,
) -> Result<BoxedStrategy<GeneratedRequest>, GenerateError> {
    let body = valid_value(e).ok_or(GenerateError::NoInvalidBodies(e))?;
    if !defect_classes(e).contains(class) {
        return Err(GenerateError::UnsupportedClass {
            endpoint: e,
            class: class.to_string(),
        });
    }
    let planter = Arc::new(Planter::for_request(e, class.clone()));
    Ok(invalid_from(e, body, Just(planter)))
}

/// A ChaCha RNG fixed by `seed`, for runners that replay.
pub fn seeded_rng(seed: u64) -> TestRng {
    // splitmix64 spreads the 64-bit seed over the 32 bytes ChaCha wants.
    let mut state = seed;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// A runner whose random stream is fixed by `seed`, for reproducible generation.
pub fn runner(seed: u64) -> TestRunner {
    TestRunner::new_with_rng(Config::default(), seeded_rng(seed))
}

/// An endless stream of requests drawn from `strategy`, fixed by `seed`; for runs too
/// long to collect first.
pub fn stream(
    strategy: BoxedStrategy<GeneratedRequest>,
    seed: u64,
) -> impl Iterator<Item = GeneratedRequest> {
    let mut runner = runner(seed);
    // The strategies here never reject, so every draw yields a request.
    std::iter::from_fn(move || strategy.new_tree(&mut runner).ok().map(|t| t.current()))
}

/// `count` requests drawn from `strategy`; the same seed gives the same requests.
pub fn sample(
    strategy: &BoxedStrategy<GeneratedRequest>,
    seed: u64,
    count: usize,
) -> Vec<GeneratedRequest> {
    stream(strategy.clone(), seed).take(count).collect()
}
