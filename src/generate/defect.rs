//! Defects: the single, labelled contract violation an invalid request carries, the
//! classes of defects each endpoint has, and how one is planted into a valid body.

use crate::contract::schema::{
    self, Case, Field, IDENTIFIER_KINDS, JsonType, PHONE_BODY, RAW_ID, Step, Ty,
};
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
    /// A whole number below its minimum (event data).
    OutOfRange,
    /// A time that is not RFC 3339 in UTC (event `eventTime`).
    BadTimestamp,
    /// An event `subject` of another kind or call.
    BadSubject,
    /// An event `data` key in camelCase.
    KeyCase,
}

impl DefectKind {
    /// Every kind, for parsing labels.
    pub const ALL: [DefectKind; 21] = [
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
        DefectKind::OutOfRange,
        DefectKind::BadTimestamp,
        DefectKind::BadSubject,
        DefectKind::KeyCase,
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
            DefectKind::OutOfRange => "out-of-range",
            DefectKind::BadTimestamp => "bad-timestamp",
            DefectKind::BadSubject => "bad-subject",
            DefectKind::KeyCase => "key-case",
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
            DefectKind::OutOfRange => Rule::OutOfRange,
            DefectKind::BadTimestamp => Rule::BadTimestamp,
            DefectKind::BadSubject => Rule::BadSubject,
            DefectKind::KeyCase => Rule::KeyCase,
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

/// Required property: missing, null, wrong type.
fn required(out: &mut Vec<DefectClass>, site: &str) {
    use DefectKind::*;
    for k in [MissingRequired, NullRequired, WrongType] {
        out.push(class(k, site));
    }
}

fn join(site: &str, key: &str) -> String {
    if site.is_empty() {
        key.to_string()
    } else {
        format!("{site}.{key}")
    }
}

/// Every property-level defect of the field `f` at `site`: its presence and type,
/// then what its type's rule allows to break.
pub(crate) fn field_classes(out: &mut Vec<DefectClass>, site: &str, f: &Field, case: Case) {
    if f.required {
        required(out, site);
    } else {
        out.push(class(DefectKind::WrongType, site));
    }
    ty_classes(out, site, f.ty, case);
}

/// The defects a value of type `ty` at `site` can carry besides its JSON type.
fn ty_classes(out: &mut Vec<DefectClass>, site: &str, ty: Ty, case: Case) {
    use DefectKind::*;
    match ty {
        Ty::String { non_empty: true } => out.push(class(EmptyString, site)),
        Ty::String { .. } | Ty::Bool | Ty::Integer { min: None } => {}
        Ty::Integer { min: Some(_) } => out.push(class(OutOfRange, site)),
        Ty::Uri => {
            out.push(class(RelativeUri, site));
            out.push(class(NotUri, site));
        }
        Ty::E164 => out.push(class(BadE164, site)),
        Ty::Enum(_) => out.push(class(UnknownEnumValue, site)),
        Ty::Timestamp => out.push(class(BadTimestamp, site)),
        Ty::Object(fields) => {
            for f in fields {
                field_classes(out, &join(site, &case.key(f.name)), f, case);
            }
        }
        Ty::Identifier => {
            out.push(class(IdentifierNoKind, site));
            out.push(class(IdentifierTwoKinds, site));
            field_classes(out, &join(site, &case.key(RAW_ID.name)), &RAW_ID, case);
            for kind in &IDENTIFIER_KINDS {
                let f = kind.field();
                field_classes(out, &join(site, &case.key(f.name)), &f, case);
            }
        }
        Ty::Array {
            items,
            non_empty,
            unique,
        } => {
            if non_empty {
                out.push(class(EmptyArray, site));
            }
            if unique {
                out.push(class(DuplicateEnumItem, site));
            }
            let item = format!("{site}[*]");
            // Enum items list their value rule first: the order the gate has always
            // run (and seeds have always drawn) them in.
            if let Ty::Enum(_) = items {
                out.push(class(UnknownEnumValue, item.clone()));
                out.push(class(WrongType, item));
            } else {
                out.push(class(WrongType, item.clone()));
                ty_classes(out, &item, *items, case);
            }
        }
    }
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
    let Some(fields) = schema::request_fields(endpoint) else {
        return out;
    };
    for f in fields {
        field_classes(&mut out, f.name, f, Case::Camel);
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
/// one identifier of each kind and a phone number body (camelCase).
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    pub communication_user: Value,
    pub phone_number: Value,
    pub teams_user: Value,
    pub phone_body: Value,
}

impl Fill {
    /// An identifier of the kind `IDENTIFIER_KINDS[kind]`.
    fn identifier(&self, kind: usize) -> &Value {
        match kind {
            0 => &self.communication_user,
            1 => &self.phone_number,
            _ => &self.teams_user,
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

fn wrong_value(expected: JsonType, variant: Index) -> Value {
    let mut candidates: Vec<Value> = Vec::with_capacity(12);
    if expected != JsonType::String {
        candidates.extend(["true", "42", "", "audio"].map(|s| Value::String(s.into())));
    }
    if expected != JsonType::Integer {
        candidates.extend([Value::from(0), Value::from(1), Value::from(-7)]);
    }
    candidates.push(Value::from(1.5));
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

const BAD_TIMESTAMPS: &[&str] = &[
    "2021-05-05T22:38:22+02:00",
    "2021-05-05T20:38:22",
    "2021-05-05 20:38:22Z",
    "05/05/2021 20:38:22",
    "2021-13-05T20:38:22Z",
    "1620247102",
    "",
];
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
            for kind in &IDENTIFIER_KINDS {
                if let Some(k) = o.get(kind.name) {
                    m.insert(kind.name.to_string(), k.clone());
                }
            }
            if let Some(raw) = o.get(RAW_ID.name) {
                m.insert(RAW_ID.name.into(), raw.clone());
            }
        }
    }
    Value::Object(m)
}

/// A defect class resolved against the schema table once, so planting one per
/// request walks no site strings: the steps to its site, each with its type.
#[derive(Debug, Clone)]
pub(crate) struct Planter {
    pub class: DefectClass,
    steps: Vec<Step>,
    case: Case,
}

impl Planter {
    /// A class of a request body of `endpoint` (body-level classes have no steps).
    pub(crate) fn for_request(endpoint: Endpoint, class: DefectClass) -> Planter {
        let steps = match schema::request_fields(endpoint) {
            Some(fields) if !class.kind.is_body_level() => {
                schema::resolve(fields, &class.site, Case::Camel)
            }
            _ => None,
        };
        Planter {
            class,
            steps: steps.unwrap_or_default(),
            case: Case::Camel,
        }
    }

    /// A class whose site has been resolved by the caller, with keys in `case`.
    pub(crate) fn new(class: DefectClass, steps: Vec<Step>, case: Case) -> Planter {
        Planter { class, steps, case }
    }

    /// Whether the class's site was found in the table (body-level classes have none).
    #[cfg(test)]
    pub(crate) fn resolved(&self) -> bool {
        self.class.kind.is_body_level() || !self.steps.is_empty()
    }
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

/// A valid value of `ty` with only its required parts, for a site whose base body has
/// nothing there (an empty array, a `null` optional object).
fn example(ty: Ty, fill: &Fill, case: Case) -> Value {
    match ty {
        Ty::String { non_empty } => Value::String(if non_empty { "x" } else { "" }.into()),
        Ty::Uri => Value::String("https://contoso.com/events".into()),
        Ty::E164 => Value::String("+14255550100".into()),
        Ty::Enum(e) => Value::String(e.values.first().copied().unwrap_or_default().into()),
        Ty::Bool => Value::Bool(false),
        Ty::Integer { min } => Value::from(min.unwrap_or(0)),
        Ty::Timestamp => Value::String("2021-05-05T20:38:22.0476663Z".into()),
        Ty::Object(fields) if fields == PHONE_BODY => case.convert(fill.phone_body.clone()),
        Ty::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|f| f.required)
                .map(|f| (case.key(f.name).into_owned(), example(f.ty, fill, case)))
                .collect(),
        ),
        Ty::Identifier => case.convert(fill.communication_user.clone()),
        Ty::Array {
            items, non_empty, ..
        } => Value::Array(if non_empty {
            vec![example(*items, fill, case)]
        } else {
            Vec::new()
        }),
    }
}

/// Makes sure `cur` has what the step needs: an identifier of that kind, or an object
/// where the step enters one, so the planted defect is the only thing wrong.
fn prepare<'a>(
    cur: &'a mut Value,
    step: &Step,
    fill: &Fill,
    case: Case,
) -> &'a mut Map<String, Value> {
    let Step::Key {
        name,
        ty,
        identifier_kind,
    } = step
    else {
        return as_object(cur);
    };
    if let Some(kind) = identifier_kind
        && !cur.get(&**name).is_some_and(Value::is_object)
    {
        *cur = case.convert(fill.identifier(*kind).clone());
    }
    let map = as_object(cur);
    if let Ty::Object(_) = ty
        && !map.get(&**name).is_some_and(Value::is_object)
    {
        map.insert(name.to_string(), example(*ty, fill, case));
    }
    map
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Plants the property-level defect of `planter` into `root`; returns the concrete path.
pub(crate) fn plant(planter: &Planter, root: &mut Value, fill: &Fill, picks: Picks) -> String {
    let Some((last, parents)) = planter.steps.split_last() else {
        return String::new();
    };
    let case = planter.case;
    let mut path = String::new();
    let mut cur = root;
    for step in parents {
        cur = match step {
            Step::Key { name, .. } => {
                let map = prepare(cur, step, fill, case);
                push_key(&mut path, name);
                map.entry(name.to_string()).or_insert(Value::Null)
            }
            Step::Item { ty } => {
                let arr = as_array(cur);
                if arr.is_empty() {
                    arr.push(example(*ty, fill, case));
                }
                let i = picks.at.index(arr.len());
                path.push_str(&format!("[{i}]"));
                &mut arr[i]
            }
        };
    }
    let kind = planter.class.kind;
    let slot: &mut Value = match last {
        Step::Key { name, .. } => {
            let map = prepare(cur, last, fill, case);
            push_key(&mut path, name);
            if kind == DefectKind::MissingRequired {
                map.remove(&**name);
                return path;
            }
            map.entry(name.to_string()).or_insert(Value::Null)
        }
        Step::Item { .. } => {
            let arr = as_array(cur);
            if arr.is_empty() {
                arr.push(Value::Null);
            }
            let i = picks.item.index(arr.len());
            path.push_str(&format!("[{i}]"));
            &mut arr[i]
        }
    };
    let ty = last.ty();
    let v = picks.variant;
    *slot = match kind {
        DefectKind::MissingRequired | DefectKind::NullRequired => Value::Null,
        DefectKind::WrongType => wrong_value(ty.json_type(), v),
        DefectKind::EmptyArray => Value::Array(Vec::new()),
        DefectKind::DuplicateEnumItem => {
            let arr = as_array(slot);
            if arr.is_empty() {
                let item = match ty {
                    Ty::Array {
                        items: Ty::Enum(e), ..
                    } => e.values.last().copied().unwrap_or_default(),
                    _ => "",
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
            let pool: &[&str] = match ty {
                Ty::Enum(e) => e.near_misses,
                _ => &[""],
            };
            Value::String(pick(pool, v).into())
        }
        DefectKind::BadE164 => Value::String(bad_e164(slot, v)),
        DefectKind::IdentifierNoKind => case.convert(no_kind(fill, v)),
        DefectKind::IdentifierTwoKinds => case.convert(two_kinds(fill, v)),
        DefectKind::RelativeUri => Value::String(relative_uri(slot, v)),
        DefectKind::NotUri => Value::String(pick(NOT_URIS, v).into()),
        DefectKind::EmptyString => Value::String(String::new()),
        DefectKind::OutOfRange => {
            let min = match ty {
                Ty::Integer { min } => min.unwrap_or(0),
                _ => 0,
            };
            Value::from(min - 1 - v.index(1000) as i64)
        }
        DefectKind::BadTimestamp => Value::String(pick(BAD_TIMESTAMPS, v).into()),
        // Body-level kinds are planted by `body_defect`, and event-level ones by the
        // event generator; they have no site here.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn every_request_class_resolves_in_the_table() {
        for e in Endpoint::ALL {
            for class in defect_classes(e) {
                let label = class.to_string();
                assert!(Planter::for_request(e, class).resolved(), "{e}: {label}");
            }
        }
    }

    #[test]
    fn wrong_values_never_have_the_expected_type() {
        for (ty, same) in [
            (JsonType::String, Value::is_string as fn(&Value) -> bool),
            (JsonType::Bool, Value::is_boolean),
            (JsonType::Integer, |v: &Value| v.is_i64() || v.is_u64()),
            (JsonType::Array, Value::is_array),
            (JsonType::Object, Value::is_object),
        ] {
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            for _ in 0..200 {
                let variant = any::<Index>().new_tree(&mut runner).unwrap().current();
                let v = wrong_value(ty, variant);
                assert!(!same(&v), "{ty:?}: {v}");
            }
        }
    }
}
