//! Defects: the single, labelled contract violation an invalid request carries, the
//! classes of defects each endpoint has, and how one is planted into a valid body.

use crate::contract::{Endpoint, RequestBody, Rule};
use proptest::sample::Index;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// What kind of rule an invalid request breaks; with a JSON path it makes a [`Defect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefectKind {
    /// A required property is absent.
    MissingRequired,
    /// A required property is `null`.
    NullRequired,
    /// A property (required or optional) has the wrong JSON type.
    WrongType,
    /// An array that must not be empty is `[]`.
    EmptyArray,
    /// An enum array repeats an item.
    DuplicateEnumItem,
    /// A string outside its enumeration (including wrong case).
    UnknownEnumValue,
    /// A phone number that is not E.164.
    BadE164,
    /// An identifier with none of its three kinds.
    IdentifierNoKind,
    /// An identifier with two kinds.
    IdentifierTwoKinds,
    /// A relative reference where an absolute http(s) URI is required.
    RelativeUri,
    /// Something that is not an http(s) URI at all.
    NotUri,
    /// An id that must not be empty is `""`.
    EmptyString,
    /// The body is not JSON.
    NotJson,
    /// The body is a JSON array.
    NotObjectArray,
    /// The body is a JSON string.
    NotObjectString,
    /// The body is not UTF-8.
    NotUtf8,
    /// The body is sent with a `Content-Type` other than JSON, or none.
    WrongContentType,
}

impl DefectKind {
    /// Every kind, for parsing labels.
    pub const ALL: [DefectKind; 17] = [
        DefectKind::MissingRequired,
        DefectKind::NullRequired,
        DefectKind::WrongType,
        DefectKind::EmptyArray,
        DefectKind::DuplicateEnumItem,
        DefectKind::UnknownEnumValue,
        DefectKind::BadE164,
        DefectKind::IdentifierNoKind,
        DefectKind::IdentifierTwoKinds,
        DefectKind::RelativeUri,
        DefectKind::NotUri,
        DefectKind::EmptyString,
        DefectKind::NotJson,
        DefectKind::NotObjectArray,
        DefectKind::NotObjectString,
        DefectKind::NotUtf8,
        DefectKind::WrongContentType,
    ];

    /// The stable kebab-case label (`missing-required`, `bad-e164`, ...).
    pub fn label(self) -> &'static str {
        match self {
            DefectKind::MissingRequired => "missing-required",
            DefectKind::NullRequired => "null-required",
            DefectKind::WrongType => "wrong-type",
            DefectKind::EmptyArray => "empty-array",
            DefectKind::DuplicateEnumItem => "duplicate-enum-item",
            DefectKind::UnknownEnumValue => "unknown-enum-value",
            DefectKind::BadE164 => "bad-e164",
            DefectKind::IdentifierNoKind => "identifier-no-kind",
            DefectKind::IdentifierTwoKinds => "identifier-two-kinds",
            DefectKind::RelativeUri => "relative-uri",
            DefectKind::NotUri => "not-uri",
            DefectKind::EmptyString => "empty-string",
            DefectKind::NotJson => "not-json",
            DefectKind::NotObjectArray => "not-object-array",
            DefectKind::NotObjectString => "not-object-string",
            DefectKind::NotUtf8 => "not-utf8",
            DefectKind::WrongContentType => "wrong-content-type",
        }
    }

    /// The validator rule this kind of defect breaks.
    pub fn rule(self) -> Rule {
        match self {
            DefectKind::MissingRequired => Rule::Missing,
            DefectKind::NullRequired => Rule::Null,
            DefectKind::WrongType => Rule::WrongType,
            DefectKind::EmptyArray => Rule::EmptyArray,
            DefectKind::DuplicateEnumItem => Rule::DuplicateItem,
            DefectKind::UnknownEnumValue => Rule::UnknownEnumValue,
            DefectKind::BadE164 => Rule::BadE164,
            DefectKind::IdentifierNoKind | DefectKind::IdentifierTwoKinds => Rule::IdentifierKinds,
            DefectKind::RelativeUri | DefectKind::NotUri => Rule::NotAbsoluteUri,
            DefectKind::EmptyString => Rule::EmptyString,
            DefectKind::NotJson => Rule::NotJson,
            DefectKind::NotObjectArray | DefectKind::NotObjectString => Rule::NotObject,
            DefectKind::NotUtf8 => Rule::NotUtf8,
            DefectKind::WrongContentType => Rule::ContentType,
        }
    }

    /// Whether the defect concerns the body as a whole (no JSON path).
    pub fn is_body_level(self) -> bool {
        matches!(
            self,
            DefectKind::NotJson
                | DefectKind::NotObjectArray
                | DefectKind::NotObjectString
                | DefectKind::NotUtf8
                | DefectKind::WrongContentType
        )
    }
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The one violation an invalid request carries: its kind and the concrete JSON path
/// (`targets[1].phoneNumber.value`; empty for body-level defects). Displays as its
/// label, `bad-e164(targets[1].phoneNumber.value)` or `not-json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Defect {
    /// What is wrong.
    pub kind: DefectKind,
    /// Where, as the validator names it; empty for the body as a whole.
    pub path: String,
}

impl Defect {
    /// The `(rule, JSON path)` the validator must report for this defect, and nothing else.
    pub fn expected(&self) -> (Rule, String) {
        (self.kind.rule(), self.path.clone())
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(self.kind.label())
        } else {
            write!(f, "{}({})", self.kind.label(), self.path)
        }
    }
}

/// A label that is not `kind` or `kind(path)` with a known kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown violation label {0:?}")]
pub struct BadLabel(pub String);

impl FromStr for Defect {
    type Err = BadLabel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, path) = match s.split_once('(') {
            Some((label, rest)) => match rest.strip_suffix(')') {
                Some(path) if !path.is_empty() => (label, path),
                _ => return Err(BadLabel(s.to_string())),
            },
            None => (s, ""),
        };
        let kind = DefectKind::ALL
            .into_iter()
            .find(|k| k.label() == label)
            .ok_or_else(|| BadLabel(s.to_string()))?;
        if kind.is_body_level() != path.is_empty() {
            return Err(BadLabel(s.to_string()));
        }
        Ok(Defect {
            kind,
            path: path.to_string(),
        })
    }
}

/// A class of defects: a kind at a site pattern where `[*]` stands for any index
/// (`bad-e164(targets[*].phoneNumber.value)`). The gate runs every class of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefectClass {
    /// What is wrong.
    pub kind: DefectKind,
    /// Where, with `[*]` for an index chosen at generation; empty for body-level.
    pub site: String,
}

impl fmt::Display for DefectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.site.is_empty() {
            f.write_str(self.kind.label())
        } else {
            write!(f, "{}({})", self.kind.label(), self.site)
        }
    }
}

fn class(kind: DefectKind, site: impl Into<String>) -> DefectClass {
    DefectClass {
        kind,
        site: site.into(),
    }
}

const IDENTIFIER_KINDS: [&str; 3] = ["communicationUser", "phoneNumber", "microsoftTeamsUser"];
const PHONE_BODIES: [&str; 2] = ["sourceAlternateIdentity", "alternateCallerId"];

/// Required property: missing, null, wrong type.
fn required(out: &mut Vec<DefectClass>, site: &str) {
    use DefectKind::*;
    for k in [MissingRequired, NullRequired, WrongType] {
        out.push(class(k, site));
    }
}

/// Every defect of an identifier at `at` (`source`, `targets[*]`, ...).
fn identifier_classes(out: &mut Vec<DefectClass>, at: &str) {
    use DefectKind::*;
    out.push(class(WrongType, at));
    out.push(class(IdentifierNoKind, at));
    out.push(class(IdentifierTwoKinds, at));
    out.push(class(WrongType, format!("{at}.rawId")));
    out.push(class(WrongType, format!("{at}.communicationUser")));
    required(out, &format!("{at}.communicationUser.id"));
    out.push(class(EmptyString, format!("{at}.communicationUser.id")));
    phone_classes(out, &format!("{at}.phoneNumber"));
    let teams = format!("{at}.microsoftTeamsUser");
    out.push(class(WrongType, teams.clone()));
    required(out, &format!("{teams}.userId"));
    out.push(class(EmptyString, format!("{teams}.userId")));
    out.push(class(WrongType, format!("{teams}.isAnonymous")));
    out.push(class(WrongType, format!("{teams}.cloud")));
    out.push(class(UnknownEnumValue, format!("{teams}.cloud")));
}

/// Every defect of a `{ "value": E.164 }` body at `at`.
fn phone_classes(out: &mut Vec<DefectClass>, at: &str) {
    out.push(class(DefectKind::WrongType, at));
    let value = format!("{at}.value");
    required(out, &value);
    out.push(class(DefectKind::BadE164, value));
}

fn uri_classes(out: &mut Vec<DefectClass>, site: &str) {
    required(out, site);
    out.push(class(DefectKind::RelativeUri, site));
    out.push(class(DefectKind::NotUri, site));
}

fn enum_array_classes(out: &mut Vec<DefectClass>, site: &str, non_empty: bool) {
    use DefectKind::*;
    required(out, site);
    if non_empty {
        out.push(class(EmptyArray, site));
    }
    out.push(class(DuplicateEnumItem, site));
    out.push(class(UnknownEnumValue, format!("{site}[*]")));
    out.push(class(WrongType, format!("{site}[*]")));
}

fn identifier_array_classes(out: &mut Vec<DefectClass>, site: &str) {
    required(out, site);
    out.push(class(DefectKind::EmptyArray, site));
    identifier_classes(out, &format!("{site}[*]"));
}

fn body_classes(out: &mut Vec<DefectClass>) {
    use DefectKind::*;
    for k in [
        NotJson,
        NotObjectArray,
        NotObjectString,
        NotUtf8,
        WrongContentType,
    ] {
        out.push(class(k, ""));
    }
}

/// The defect classes `endpoint` has: every property-level defect its body can carry,
/// then the body-level ones. Remove participant ignores its body, so it has none.
pub fn defect_classes(endpoint: Endpoint) -> Vec<DefectClass> {
    let mut out = Vec::new();
    match endpoint {
        Endpoint::CreateCall => {
            required(&mut out, "source");
            identifier_classes(&mut out, "source");
            identifier_array_classes(&mut out, "targets");
            uri_classes(&mut out, "callbackUri");
            enum_array_classes(&mut out, "requestedModalities", true);
            enum_array_classes(&mut out, "requestedCallEvents", false);
            out.push(class(DefectKind::WrongType, "subject"));
            phone_classes(&mut out, "sourceAlternateIdentity");
        }
        Endpoint::PlayAudio => {
            uri_classes(&mut out, "audioFileUri");
            for site in ["loop", "operationContext", "resourceId"] {
                out.push(class(DefectKind::WrongType, site));
            }
        }
        Endpoint::CancelMediaProcessing => {
            out.push(class(DefectKind::WrongType, "operationContext"));
        }
        Endpoint::InviteParticipants => {
            identifier_array_classes(&mut out, "participants");
            out.push(class(DefectKind::WrongType, "operationContext"));
            phone_classes(&mut out, "alternateCallerId");
        }
        Endpoint::Hangup | Endpoint::RemoveParticipant => {}
    }
    if endpoint.request_body() != RequestBody::Ignored {
        body_classes(&mut out);
    }
    // Identifier sites repeat `WrongType` for the identifier itself; keep each once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

/// Valid pieces a defect may need where the base body has none of the right shape:
/// one identifier of each kind and a phone number body.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    pub communication_user: Value,
    pub phone_number: Value,
    pub teams_user: Value,
    pub phone_body: Value,
}

impl Fill {
    fn identifier(&self, kind: &str) -> Value {
        match kind {
            "communicationUser" => self.communication_user.clone(),
            "phoneNumber" => self.phone_number.clone(),
            _ => self.teams_user.clone(),
        }
    }
}

/// Random choices a defect is planted with, drawn by the strategy so they shrink.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picks {
    pub at: Index,
    pub item: Index,
    pub variant: Index,
}

/// The JSON type a site holds, to choose a value of another type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    String,
    Bool,
    Array,
    Object,
}

fn expected_type(site: &str) -> JsonType {
    if site.ends_with("Modalities[*]") || site.ends_with("Events[*]") {
        return JsonType::String;
    }
    if site.ends_with("[*]") {
        return JsonType::Object;
    }
    let last = site.rsplit('.').next().unwrap_or(site);
    match last {
        "targets" | "participants" | "requestedModalities" | "requestedCallEvents" => {
            JsonType::Array
        }
        "source"
        | "communicationUser"
        | "phoneNumber"
        | "microsoftTeamsUser"
        | "sourceAlternateIdentity"
        | "alternateCallerId" => JsonType::Object,
        "loop" | "isAnonymous" => JsonType::Bool,
        _ => JsonType::String,
    }
}

fn wrong_value(expected: JsonType, variant: Index) -> Value {
    let mut candidates: Vec<Value> = Vec::with_capacity(12);
    if expected != JsonType::String {
        candidates.extend(["true", "42", "", "audio"].map(|s| Value::String(s.into())));
    }
    candidates.extend([
        Value::from(0),
        Value::from(1),
        Value::from(-7),
        Value::from(1.5),
    ]);
    if expected != JsonType::Bool {
        candidates.extend([Value::Bool(true), Value::Bool(false)]);
    }
    if expected != JsonType::Array {
        candidates.push(Value::Array(vec![]));
        candidates.push(Value::Array(vec![Value::String("audio".into())]));
    }
    if expected != JsonType::Object {
        candidates.push(Value::Object(Map::new()));
        let mut m = Map::new();
        m.insert("value".into(), Value::String("+14251001000".into()));
        candidates.push(Value::Object(m));
    }
    let i = variant.index(candidates.len());
    candidates.swap_remove(i)
}

const BAD_MODALITIES: &[&str] = &[
    "Audio",
    "AUDIO",
    "Video",
    "voice",
    "screenShare",
    "audio ",
    "",
];
const BAD_EVENTS: &[&str] = &[
    "ParticipantsUpdated",
    "DtmfReceived",
    "participantsupdated",
    "toneReceived",
    "callEnded",
    "",
];
const BAD_CLOUDS: &[&str] = &["Public", "DoD", "GCCH", "gov", "china", ""];
const NOT_URIS: &[&str] = &[
    "not a uri",
    "https://",
    "https:// contoso.com/events",
    "ftp://files.contoso.com/audio/welcome.wav",
    "file:///C:/audio/welcome.wav",
    "C:\\audio\\welcome.wav",
    "mailto:ops@contoso.com",
    "urn:uuid:6f1c2a52-0f6e-4c8e-9d0e-0e2f2d9a7c11",
    "ws://contoso.com/events",
    "https://[::1/events",
    "",
];
const WRONG_CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("text/plain"),
    Some("text/plain; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("application/xml"),
    Some("text/json"),
    Some("multipart/form-data; boundary=----acs"),
    Some("application/octet-stream"),
];

fn pick<'a>(items: &[&'a str], variant: Index) -> &'a str {
    items[variant.index(items.len())]
}

/// A non-E.164 spelling of a phone number, the way people get it wrong.
fn bad_e164(old: &Value, variant: Index) -> String {
    let valid = old.as_str().unwrap_or("+14251001000");
    let digits: String = valid.chars().filter(char::is_ascii_digit).collect();
    let digits = if digits.len() < 4 {
        "14251001000".to_string()
    } else {
        digits
    };
    let (head, tail) = digits.split_at(2);
    match variant.index(11) {
        0 => digits.clone(),
        1 => format!("00{digits}"),
        2 => format!("+{head} {tail}"),
        3 => format!("+{head}-{tail}"),
        4 => format!("+0{digits}"),
        5 => format!("+{}", format!("{digits}9876543210123456").split_at(16).0),
        6 => format!("+{}", &head[..1]),
        7 => format!("tel:+{digits}"),
        8 => format!("+{digits}x12"),
        9 => format!("({head}) {tail}"),
        _ => String::new(),
    }
}

/// A relative reference derived from the valid URI it replaces.
fn relative_uri(old: &Value, variant: Index) -> String {
    let (host, rest) = match old.as_str().and_then(|s| url::Url::parse(s).ok()) {
        Some(u) => {
            let rest = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
            (u.host_str().unwrap_or("contoso.com").to_string(), rest)
        }
        None => ("contoso.com".to_string(), "/api/callbacks".to_string()),
    };
    let rest = if rest.len() > 1 {
        rest
    } else {
        "/events".to_string()
    };
    match variant.index(5) {
        0 => rest,
        1 => format!("//{host}{rest}"),
        2 => rest.trim_start_matches('/').to_string(),
        3 => format!("..{rest}"),
        _ => format!("{host}{rest}"),
    }
}

/// An identifier without any kind, as clients produce it by mistake.
fn no_kind(fill: &Fill, variant: Index) -> Value {
    let id = fill
        .communication_user
        .pointer("/communicationUser/id")
        .cloned()
        .unwrap_or_else(|| Value::String("8:acs:x".into()));
    let mut m = Map::new();
    match variant.index(5) {
        0 => {}
        1 => {
            m.insert("rawId".into(), id);
        }
        2 => {
            m.insert("id".into(), id);
        }
        3 => {
            m.insert("communicationUser".into(), Value::Null);
        }
        _ => {
            m.insert("value".into(), Value::String("+14251001000".into()));
        }
    }
    Value::Object(m)
}

/// An identifier with two kinds, each valid on its own.
fn two_kinds(fill: &Fill, variant: Index) -> Value {
    let (a, b) = match variant.index(3) {
        0 => (&fill.communication_user, &fill.phone_number),
        1 => (&fill.communication_user, &fill.teams_user),
        _ => (&fill.phone_number, &fill.teams_user),
    };
    let mut m = Map::new();
    for v in [a, b] {
        if let Value::Object(o) = v {
            for kind in IDENTIFIER_KINDS {
                if let Some(k) = o.get(kind) {
                    m.insert(kind.to_string(), k.clone());
                }
            }
            if let Some(raw) = o.get("rawId") {
                m.insert("rawId".into(), raw.clone());
            }
        }
    }
    Value::Object(m)
}

/// One step of a site pattern.
enum Seg<'a> {
    Key(&'a str),
    Any,
}

fn segments(site: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for token in site.split('.') {
        match token.strip_suffix("[*]") {
            Some(key) => {
                out.push(Seg::Key(key));
                out.push(Seg::Any);
            }
            None => out.push(Seg::Key(token)),
        }
    }
    out
}

fn as_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        // Unreachable: replaced by an object just above.
        _ => unreachable!("value was just made an object"),
    }
}

fn as_array(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("value was just made an array"),
    }
}

/// Makes sure `cur` has what the next key needs: an identifier of that kind, or a
/// phone number body, so the planted defect is the only thing wrong.
fn prepare<'a>(cur: &'a mut Value, key: &str, fill: &Fill) -> &'a mut Map<String, Value> {
    if IDENTIFIER_KINDS.contains(&key) && !cur.get(key).is_some_and(Value::is_object) {
        *cur = fill.identifier(key);
    }
    let map = as_object(cur);
    if PHONE_BODIES.contains(&key) && !map.get(key).is_some_and(Value::is_object) {
        map.insert(key.to_string(), fill.phone_body.clone());
    }
    map
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Plants a property-level defect of `class` into `root`; returns the concrete path.
pub(crate) fn plant(class: &DefectClass, root: &mut Value, fill: &Fill, picks: Picks) -> String {
    let segs = segments(&class.site);
    let Some((last, parents)) = segs.split_last() else {
        return String::new();
    };
    let mut path = String::new();
    let mut cur = root;
    for seg in parents {
        cur = match seg {
            Seg::Key(k) => {
                let map = prepare(cur, k, fill);
                push_key(&mut path, k);
                map.entry(k.to_string()).or_insert(Value::Null)
            }
            Seg::Any => {
                let arr = as_array(cur);
                if arr.is_empty() {
                    arr.push(fill.communication_user.clone());
                }
                let i = picks.at.index(arr.len());
                path.push_str(&format!("[{i}]"));
                &mut arr[i]
            }
        };
    }
    let kind = class.kind;
    let slot: &mut Value = match last {
        Seg::Key(k) => {
            let map = prepare(cur, k, fill);
            push_key(&mut path, k);
            if kind == DefectKind::MissingRequired {
                map.remove(*k);
                return path;
            }
            map.entry(k.to_string()).or_insert(Value::Null)
        }
        Seg::Any => {
            let arr = as_array(cur);
            if arr.is_empty() {
                arr.push(Value::Null);
            }
            let i = picks.item.index(arr.len());
            path.push_str(&format!("[{i}]"));
            &mut arr[i]
        }
    };
    let v = picks.variant;
    *slot = match kind {
        DefectKind::MissingRequired | DefectKind::NullRequired => Value::Null,
        DefectKind::WrongType => wrong_value(expected_type(&class.site), v),
        DefectKind::EmptyArray => Value::Array(Vec::new()),
        DefectKind::DuplicateEnumItem => {
            let arr = as_array(slot);
            if arr.is_empty() {
                let item = if class.site.ends_with("Events") {
                    "dtmfReceived"
                } else {
                    "audio"
                };
                arr.push(Value::String(item.into()));
            }
            let i = picks.item.index(arr.len());
            let at = i + 1 + v.index(arr.len() - i);
            let dup = arr[i].clone();
            arr.insert(at, dup);
            path.push_str(&format!("[{at}]"));
            return path;
        }
        DefectKind::UnknownEnumValue => {
            let pool = if class.site.ends_with("cloud") {
                BAD_CLOUDS
            } else if class.site.contains("Events") {
                BAD_EVENTS
            } else {
                BAD_MODALITIES
            };
            Value::String(pick(pool, v).into())
        }
        DefectKind::BadE164 => Value::String(bad_e164(slot, v)),
        DefectKind::IdentifierNoKind => no_kind(fill, v),
        DefectKind::IdentifierTwoKinds => two_kinds(fill, v),
        DefectKind::RelativeUri => Value::String(relative_uri(slot, v)),
        DefectKind::NotUri => Value::String(pick(NOT_URIS, v).into()),
        DefectKind::EmptyString => Value::String(String::new()),
        // Body-level kinds are planted by `body_defect`; they have no site.
        _ => slot.take(),
    };
    path
}

/// A body-level defect of `kind` built from the valid body text; returns the content
/// type and the exact body bytes.
pub(crate) fn body_defect(
    endpoint: Endpoint,
    kind: DefectKind,
    valid: &str,
    picks: Picks,
) -> (Option<String>, Vec<u8>) {
    let json = Some("application/json".to_string());
    let v = picks.variant;
    match kind {
        DefectKind::NotJson => {
            let bytes = match v.index(6) {
                0 => {
                    // A proper prefix of an object never parses; cut on a char boundary
                    // so the result stays UTF-8 and only the JSON rule is broken.
                    let mut cut = 1 + picks.item.index(valid.len().max(2) - 1);
                    while cut > 1 && !valid.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    valid.get(..cut).unwrap_or("{").to_string()
                }
                1 => match valid.strip_suffix('}') {
                    Some(head) => format!("{head},}}"),
                    None => "{,}".to_string(),
                },
                // A byte order mark, as some .NET writers emit: UTF-8, but not JSON.
                2 => format!("\u{feff}{valid}"),
                3 => format!("{valid}}}"),
                4 if valid.contains('"') => valid.replace('"', "'"),
                4 => "{'reason':'done'}".to_string(),
                // An empty body means "no body" to hang up, so send blanks instead.
                _ if endpoint.request_body() == RequestBody::EmptyOrObject => " ".to_string(),
                _ => String::new(),
            };
            (json, bytes.into_bytes())
        }
        DefectKind::NotObjectArray => {
            let text = if v.index(2) == 0 {
                format!("[{valid}]")
            } else {
                "[]".to_string()
            };
            (json, text.into_bytes())
        }
        DefectKind::NotObjectString => {
            // A double-encoded body: the object serialized once more as a string.
            let text = serde_json::to_string(&Value::String(valid.to_string()))
                .unwrap_or_else(|_| "\"\"".to_string());
            (json, text.into_bytes())
        }
        DefectKind::NotUtf8 => {
            let bad: &[u8] = match v.index(5) {
                0 => &[0xff],
                1 => &[0xc3],             // a truncated two-byte sequence
                2 => &[0xfc],             // Latin-1 `ü`
                3 => &[0xed, 0xa0, 0x80], // an encoded surrogate
                _ => &[0xc0, 0x80],       // an overlong NUL
            };
            let bytes = match valid.rfind('"') {
                Some(q) => {
                    let mut b = valid.as_bytes()[..q].to_vec();
                    b.extend_from_slice(bad);
                    b.extend_from_slice(&valid.as_bytes()[q..]);
                    b
                }
                None => {
                    let mut b = b"{\"reason\":\"".to_vec();
                    b.extend_from_slice(bad);
                    b.extend_from_slice(b"\"}");
                    b
                }
            };
            (json, bytes)
        }
        _ => {
            let ct = WRONG_CONTENT_TYPES[v.index(WRONG_CONTENT_TYPES.len())].map(str::to_string);
            (ct, valid.as_bytes().to_vec())
        }
    }
}
