//! Request and response validators: every rule of src/contract/CONTRACT.md, reported with the JSON
//! path of the offending value so a 400 message or a gate failure says exactly what.

use super::schema::{self, Case, Field, IDENTIFIER_KINDS, RAW_ID, Ty};
use super::{Endpoint, MAX_BODY_BYTES, RequestBody, SuccessBody, is_json_content_type};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Which rule of the contract a request or response broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `Content-Type` missing or not `application/json` where there is a body.
    ContentType,
    /// The body is not valid UTF-8.
    NotUtf8,
    /// The body is not JSON (or is empty where a body is required).
    NotJson,
    /// The body is JSON but not an object.
    NotObject,
    /// The body is larger than 1 MiB.
    TooLarge,
    /// A required property is absent.
    Missing,
    /// A required property is `null`.
    Null,
    /// A value has the wrong JSON type.
    WrongType,
    /// An array that must not be empty is empty.
    EmptyArray,
    /// An array that must not repeat items repeats one.
    DuplicateItem,
    /// A string outside its enumeration (values are case-sensitive).
    UnknownEnumValue,
    /// A phone number that is not E.164.
    BadE164,
    /// An identifier with zero or more than one of its kinds.
    IdentifierKinds,
    /// A value that must be an absolute http(s) URI is not.
    NotAbsoluteUri,
    /// A string that must not be empty is empty.
    EmptyString,
    /// A response status the endpoint does not document.
    UndocumentedStatus,
    /// A response body where the contract says there is none.
    UnexpectedBody,
    /// `operationContext` of the request not echoed in the media operation.
    NotEchoed,
    /// A whole number below its minimum.
    OutOfRange,
    /// A time that is not RFC 3339 in UTC.
    BadTimestamp,
    /// An event `subject` that is not `callLeg/<CallLegId>/<kind>` of its event.
    BadSubject,
    /// An event `data` key not in PascalCase.
    KeyCase,
    /// A 405 whose `Allow` header does not list the path's method, or lists the refused one.
    AllowHeader,
    /// An error message that does not name the offending property by its JSON path.
    NamesOffendingProperty,
}

impl Rule {
    /// A stable kebab-case name, used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::ContentType => "content-type",
            Rule::NotUtf8 => "not-utf8",
            Rule::NotJson => "not-json",
            Rule::NotObject => "not-object",
            Rule::TooLarge => "too-large",
            Rule::Missing => "missing",
            Rule::Null => "null",
            Rule::WrongType => "wrong-type",
            Rule::EmptyArray => "empty-array",
            Rule::DuplicateItem => "duplicate-item",
            Rule::UnknownEnumValue => "unknown-enum-value",
            Rule::BadE164 => "bad-e164",
            Rule::IdentifierKinds => "identifier-kinds",
            Rule::NotAbsoluteUri => "not-absolute-uri",
            Rule::EmptyString => "empty-string",
            Rule::UndocumentedStatus => "undocumented-status",
            Rule::UnexpectedBody => "unexpected-body",
            Rule::NotEchoed => "not-echoed",
            Rule::OutOfRange => "out-of-range",
            Rule::BadTimestamp => "bad-timestamp",
            Rule::BadSubject => "bad-subject",
            Rule::KeyCase => "key-case",
            Rule::AllowHeader => "allow-header",
            Rule::NamesOffendingProperty => "names-offending-property",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule: where (a JSON path such as `targets[1].phoneNumber.value`, empty
/// for the body as a whole), which rule, and a human reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON path of the offending value; empty for the whole body or the status.
    pub path: String,
    /// The rule broken.
    pub rule: Rule,
    /// Why, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Violation {
    pub(super) fn new(path: &str, rule: Rule, message: impl Into<String>) -> Self {
        Violation {
            path: path.to_string(),
            rule,
            message: message.into(),
        }
    }
}

/// Validates a request body for `endpoint`. On success returns the parsed body (`None`
/// when there is none); otherwise every violation found.
///
/// ```
/// use acs_harness::contract::Rule;
/// use acs_harness::{Endpoint, validate_request};
///
/// let json = Some("application/json");
/// let ok = br#"{"audioFileUri":"https://app.example/hello.wav","loop":false,"operationContext":"c1"}"#;
/// assert!(validate_request(Endpoint::PlayAudio, json, ok).is_ok());
///
/// let errors = validate_request(Endpoint::PlayAudio, json, b"[1]").unwrap_err();
/// assert_eq!(errors[0].rule, Rule::NotObject);
/// ```
pub fn validate_request(
    endpoint: Endpoint,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Value>, Vec<Violation>> {
    let mode = endpoint.request_body();
    if mode == RequestBody::Ignored {
        return Ok(None);
    }
    if body.is_empty() {
        return match mode {
            RequestBody::Required => Err(vec![Violation::new(
                "",
                Rule::NotJson,
                "request body is empty; a JSON object is required",
            )]),
            _ => Ok(None),
        };
    }
    let object = parse_object(content_type, body)?;
    let mut c = Checker::default();
    if let Some(fields) = schema::request_fields(endpoint) {
        c.fields(&object, "", fields, Case::Camel);
    }
    c.finish().map(|()| Some(Value::Object(object)))
}

/// Checks size, content type, UTF-8, JSON and object-ness of a body.
fn parse_object(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, Vec<Violation>> {
    let one = |rule, msg: String| Err(vec![Violation::new("", rule, msg)]);
    if body.len() > MAX_BODY_BYTES {
        return one(
            Rule::TooLarge,
            format!(
                "body of {} bytes exceeds the limit of {MAX_BODY_BYTES} bytes",
                body.len()
            ),
        );
    }
    match content_type {
        Some(ct) if is_json_content_type(ct) => {}
        Some(ct) => {
            return one(
                Rule::ContentType,
                format!(
                    "Content-Type must be application/json, got {:?}",
                    truncate(ct, 80)
                ),
            );
        }
        None => {
            return one(
                Rule::ContentType,
                "Content-Type application/json is missing".into(),
            );
        }
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return one(Rule::NotUtf8, format!("body is not UTF-8 ({e})")),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => one(
            Rule::NotObject,
            format!("body must be a JSON object, got {}", type_name(&other)),
        ),
        Err(e) => one(Rule::NotJson, format!("body is not JSON ({e})")),
    }
}

/// Validates a response of `endpoint`. `request_context` is the `operationContext`
/// the request carried, which a media operation must echo.
///
/// ```
/// use acs_harness::{Endpoint, validate_response};
///
/// let json = Some("application/json");
/// assert!(validate_response(Endpoint::CreateCall, 200, json, br#"{"callLegId":"leg-1"}"#, None).is_ok());
/// // An empty callLegId breaks the contract, and so does a status it does not document.
/// assert!(validate_response(Endpoint::CreateCall, 200, json, br#"{"callLegId":""}"#, None).is_err());
/// assert!(validate_response(Endpoint::Hangup, 204, None, b"", None).is_err());
/// ```
pub fn validate_response(
    endpoint: Endpoint,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    request_context: Option<&str>,
) -> Result<(), Vec<Violation>> {
    if !endpoint.documents_status(status) {
        return Err(vec![Violation::new(
            "",
            Rule::UndocumentedStatus,
            format!(
                "status {status} is not documented for {} (expected {} or an error status)",
                endpoint.request_name(),
                endpoint.success_status()
            ),
        )]);
    }
    if status >= 400 {
        return validate_error_body(content_type, body);
    }
    let object = match endpoint.success_body() {
        SuccessBody::Empty => {
            if body.is_empty() {
                return Ok(());
            }
            return Err(vec![Violation::new(
                "",
                Rule::UnexpectedBody,
                format!(
                    "a {status} of {} carries no body, got {} bytes",
                    endpoint.request_name(),
                    body.len()
                ),
            )]);
        }
        _ => parse_response_object(content_type, body)?,
    };
    let mut c = Checker::default();
    match endpoint.success_body() {
        SuccessBody::CallLeg => c.fields(&object, "", schema::CALL_LEG, Case::Camel),
        SuccessBody::MediaOperation => c.media_operation(&object, request_context),
        SuccessBody::Empty => {}
    }
    c.finish()
}

/// Validates an error body: JSON object with non-empty string `code` and `message`.
pub fn validate_error_body(content_type: Option<&str>, body: &[u8]) -> Result<(), Vec<Violation>> {
    let object = parse_response_object(content_type, body)?;
    let mut c = Checker::default();
    c.fields(&object, "", schema::ERROR_BODY, Case::Camel);
    c.finish()
}

/// Like [`parse_object`] but without the size limit, and an empty body named as missing.
fn parse_response_object(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, Vec<Violation>> {
    if body.is_empty() {
        return Err(vec![Violation::new(
            "",
            Rule::NotJson,
            "response has no body; a JSON object is required",
        )]);
    }
    parse_object(content_type, &body[..body.len().min(MAX_BODY_BYTES)]).map_err(|mut v| {
        if body.len() > MAX_BODY_BYTES {
            v.push(Violation::new(
                "",
                Rule::NotJson,
                format!(
                    "response body of {} bytes checked only in its first MiB",
                    body.len()
                ),
            ));
        }
        v
    })
}

/// Whether `s` is an E.164 number: `^\+[1-9][0-9]{1,14}$`.
pub fn is_e164(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b.len() <= 16
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// Whether `s` is an absolute `http`/`https` URI with a non-empty host, by a strict
/// RFC 3986 parser (so ASCII only, as the OpenAPI document's `format: uri` says; no
/// whitespace, no backslash).
///
/// Not a WHATWG URL parser: that one repairs `https:///x` into `https://x/` and
/// `http://a\\b` into `http://a/b`, and a contract check must judge what the client
/// wrote, not its repair.
pub fn is_http_uri(s: &str) -> bool {
    let Ok(uri) = fluent_uri::Uri::parse(s) else {
        return false;
    };
    let scheme = uri.scheme().as_str();
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && uri.authority().is_some_and(|a| !a.host().is_empty())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Where a value sits, built into a JSON path only when a violation needs it: the
/// walker checks every field of every body, and most are fine.
#[derive(Clone, Copy)]
enum At<'a> {
    /// A property `key` of the object at `parent`.
    Key(&'a str, &'a str),
    /// Item `index` of the array at `parent`.
    Item(&'a str, usize),
}

impl<'a> At<'a> {
    /// The JSON path; borrowed for a top-level property, which needs no building.
    fn path(self) -> Cow<'a, str> {
        match self {
            At::Key("", key) => Cow::Borrowed(key),
            At::Key(parent, key) => Cow::Owned(child(parent, key)),
            At::Item(parent, i) => Cow::Owned(format!("{parent}[{i}]")),
        }
    }
}

/// Walks a body against the table in [`schema`], collecting every violation.
#[derive(Default)]
pub(super) struct Checker {
    out: Vec<Violation>,
}

impl Checker {
    pub(super) fn finish(self) -> Result<(), Vec<Violation>> {
        if self.out.is_empty() {
            Ok(())
        } else {
            Err(self.out)
        }
    }

    pub(super) fn push(&mut self, path: &str, rule: Rule, message: impl Into<String>) {
        self.out.push(Violation::new(path, rule, message));
    }

    /// Checks every field of `fields` in the object `obj` at `parent`, keys in `case`.
    pub(super) fn fields(
        &mut self,
        obj: &Map<String, Value>,
        parent: &str,
        fields: &[Field],
        case: Case,
    ) {
        for f in fields {
            self.field(obj, parent, f, case);
        }
    }

    /// Checks one field: a required one must be present and not `null`; a present,
    /// non-null value must follow its type's rule.
    pub(super) fn field(&mut self, obj: &Map<String, Value>, parent: &str, f: &Field, case: Case) {
        let key = case.key(f.name);
        match obj.get(&*key) {
            Some(Value::Null) => {
                if f.required {
                    self.push(
                        &child(parent, &key),
                        Rule::Null,
                        "required property is null",
                    );
                }
            }
            Some(v) => self.value(v, At::Key(parent, &key), f.ty, case),
            None => {
                if f.required {
                    self.push(
                        &child(parent, &key),
                        Rule::Missing,
                        "required property is missing",
                    );
                }
            }
        }
    }

    fn expect_type(&mut self, at: At<'_>, v: &Value, want: &str) {
        self.push(
            &at.path(),
            Rule::WrongType,
            format!("expected {want}, got {}", type_name(v)),
        );
    }

    /// The string `v`, reporting any other JSON type.
    fn string<'v>(&mut self, v: &'v Value, at: At<'_>) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.expect_type(at, other, "string");
                None
            }
        }
    }

    fn value(&mut self, v: &Value, at: At<'_>, ty: Ty, case: Case) {
        match ty {
            Ty::String { non_empty } => {
                if let Some(s) = self.string(v, at)
                    && non_empty
                    && s.is_empty()
                {
                    self.push(&at.path(), Rule::EmptyString, "must not be empty");
                }
            }
            Ty::Uri => {
                if let Some(s) = self.string(v, at)
                    && !is_http_uri(s)
                {
                    self.push(
                        &at.path(),
                        Rule::NotAbsoluteUri,
                        "not an absolute http(s) URI",
                    );
                }
            }
            Ty::E164 => {
                if let Some(s) = self.string(v, at)
                    && !is_e164(s)
                {
                    self.push(
                        &at.path(),
                        Rule::BadE164,
                        "not E.164 (+ and 2 to 15 digits, no leading 0)",
                    );
                }
            }
            Ty::Enum(e) => {
                if let Some(s) = self.string(v, at)
                    && !e.contains(s)
                {
                    self.push(
                        &at.path(),
                        Rule::UnknownEnumValue,
                        format!(
                            "{:?} is not one of {}",
                            truncate(s, 40),
                            e.values.join(", ")
                        ),
                    );
                }
            }
            Ty::Timestamp => {
                if let Some(s) = self.string(v, at)
                    && !is_utc_timestamp(s)
                {
                    self.push(
                        &at.path(),
                        Rule::BadTimestamp,
                        format!("{:?} is not an RFC 3339 time in UTC", truncate(s, 40)),
                    );
                }
            }
            Ty::Bool => {
                if !v.is_boolean() {
                    self.expect_type(at, v, "boolean");
                }
            }
            Ty::Integer { min } => match (v.as_i64(), v.is_u64()) {
                (Some(n), _) if min.is_some_and(|m| n < m) => self.push(
                    &at.path(),
                    Rule::OutOfRange,
                    format!("{n} is below the minimum {}", min.unwrap_or_default()),
                ),
                (Some(_), _) | (None, true) => {}
                _ => self.expect_type(at, v, "integer"),
            },
            Ty::Object(fields) => match v {
                Value::Object(m) => self.fields(m, &at.path(), fields, case),
                other => self.expect_type(at, other, "object"),
            },
            Ty::Identifier => self.identifier(v, at, case),
            Ty::Array {
                items,
                non_empty,
                unique,
            } => match v {
                Value::Array(a) if non_empty && a.is_empty() => {
                    self.push(&at.path(), Rule::EmptyArray, "must not be empty");
                }
                Value::Array(a) => self.items(a, &at.path(), *items, unique, case),
                other => self.expect_type(at, other, "array"),
            },
        }
    }

    /// Checks every item; a repeated string item of a `unique` array is reported at
    /// its second appearance.
    fn items(&mut self, items: &[Value], path: &str, ty: Ty, unique: bool, case: Case) {
        let mut seen: Vec<&str> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let before = self.out.len();
            self.value(item, At::Item(path, i), ty, case);
            if !unique || self.out.len() != before {
                continue;
            }
            if let Value::String(s) = item {
                if seen.contains(&s.as_str()) {
                    self.push(
                        &format!("{path}[{i}]"),
                        Rule::DuplicateItem,
                        format!("{s:?} appears more than once"),
                    );
                } else {
                    seen.push(s);
                }
            }
        }
    }

    /// A CommunicationIdentifier: exactly one kind, each present kind and `rawId`
    /// following their rules.
    fn identifier(&mut self, v: &Value, at: At<'_>, case: Case) {
        let Value::Object(obj) = v else {
            self.expect_type(at, v, "object (a CommunicationIdentifier)");
            return;
        };
        let path = at.path();
        let present: Vec<_> = IDENTIFIER_KINDS
            .iter()
            .filter(|k| obj.get(&*case.key(k.name)).is_some_and(|v| !v.is_null()))
            .collect();
        if present.len() != 1 {
            let names: Vec<_> = IDENTIFIER_KINDS.iter().map(|k| case.key(k.name)).collect();
            let got: Vec<_> = present.iter().map(|k| case.key(k.name)).collect();
            self.push(
                &path,
                Rule::IdentifierKinds,
                format!(
                    "an identifier has exactly one of {}; got {}",
                    names.join(", "),
                    if got.is_empty() {
                        "none".to_string()
                    } else {
                        got.join(" and ")
                    }
                ),
            );
        }
        self.field(obj, &path, &RAW_ID, case);
        for kind in present {
            self.field(obj, &path, &kind.field(), case);
        }
    }

    /// The media operation body; its `operationContext` must echo the request's.
    fn media_operation(&mut self, o: &Map<String, Value>, request_context: Option<&str>) {
        // The echo is reported right after the property's own rule, as it is read.
        let fields = schema::MEDIA_OPERATION;
        let split = fields
            .iter()
            .position(|f| f.name == "operationContext")
            .map_or(fields.len(), |i| i + 1);
        let (head, tail) = fields.split_at(split);
        self.fields(o, "", head, Case::Camel);
        let echoed = o.get("operationContext").and_then(Value::as_str);
        if let Some(sent) = request_context
            && echoed != Some(sent)
        {
            let got = match o.get("operationContext") {
                None => "nothing".to_string(),
                Some(v) => truncate(&v.to_string(), 60).to_string(),
            };
            self.push(
                "operationContext",
                Rule::NotEchoed,
                format!(
                    "must echo the request's operationContext {:?}, got {got}",
                    truncate(sent, 60)
                ),
            );
        }
        self.fields(o, "", tail, Case::Camel);
    }
}

/// Whether `s` is an RFC 3339 date-time in UTC (`Z`, or the offset `+00:00`), with
/// the grammar's `T` between date and time (chrono also takes the space a note of the
/// RFC allows for reading, which the `date-time` production does not).
pub fn is_utc_timestamp(s: &str) -> bool {
    let utc = s.ends_with(['Z', 'z']) || s.ends_with("+00:00");
    let t = matches!(s.as_bytes().get(10), Some(b'T' | b't'));
    utc && t && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(e: Endpoint, body: Value) -> Result<Option<Value>, Vec<Violation>> {
        validate_request(e, Some("application/json"), body.to_string().as_bytes())
    }

    fn paths(r: Result<Option<Value>, Vec<Violation>>) -> Vec<(String, Rule)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.path, v.rule))
            .collect()
    }

    fn create() -> Value {
        json!({
            "source": {"communicationUser": {"id": "8:acs:1_2"}},
            "targets": [{"phoneNumber": {"value": "+14251001000"}}, {"microsoftTeamsUser": {"userId": "u", "cloud": "dod"}, "rawId": "8:orgid:u"}],
            "callbackUri": "https://app.example.com/events?x=1",
            "requestedModalities": ["audio", "video"],
            "requestedCallEvents": [],
            "subject": "Grüße",
            "sourceAlternateIdentity": {"value": "+4930123456"}
        })
    }

    #[test]
    fn valid_create_call_passes() {
        assert!(req(Endpoint::CreateCall, create()).is_ok());
    }

    #[test]
    fn reports_json_paths() {
        let mut b = create();
        b["targets"][1] = json!({"phoneNumber": {"value": "0049"}});
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("targets[1].phoneNumber.value".into(), Rule::BadE164)]
        );
        let mut b = create();
        b["targets"][0] =
            json!({"phoneNumber": {"value": "+1425"}, "communicationUser": {"id": "x"}});
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("targets[0]".into(), Rule::IdentifierKinds)]
        );
        let mut b = create();
        b["requestedModalities"] = json!(["audio", "Audio"]);
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("requestedModalities[1]".into(), Rule::UnknownEnumValue)]
        );
        let mut b = create();
        b["requestedCallEvents"] = json!(["dtmfReceived", "dtmfReceived"]);
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("requestedCallEvents[1]".into(), Rule::DuplicateItem)]
        );
        let mut b = create();
        b["callbackUri"] = json!("/events");
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("callbackUri".into(), Rule::NotAbsoluteUri)]
        );
        let mut b = create();
        b["source"] = Value::Null;
        assert_eq!(
            paths(req(Endpoint::CreateCall, b)),
            vec![("source".into(), Rule::Null)]
        );
        let mut b = create();
        b["subject"] = Value::Null;
        assert!(
            req(Endpoint::CreateCall, b).is_ok(),
            "null optional means absent"
        );
    }

    #[test]
    fn body_level_rules() {
        let e = Endpoint::PlayAudio;
        let rule =
            |ct: Option<&str>, body: &[u8]| validate_request(e, ct, body).unwrap_err()[0].rule;
        assert_eq!(rule(Some("text/plain"), b"{}"), Rule::ContentType);
        assert_eq!(rule(None, b"{}"), Rule::ContentType);
        assert_eq!(
            rule(Some("application/json"), b"{\"a\":\"\xff\"}"),
            Rule::NotUtf8
        );
        assert_eq!(rule(Some("application/json"), b"{"), Rule::NotJson);
        assert_eq!(rule(Some("application/json"), b""), Rule::NotJson);
        assert_eq!(rule(Some("application/json"), b"[]"), Rule::NotObject);
        let deep = "[".repeat(10_000);
        assert_eq!(
            rule(Some("application/json"), deep.as_bytes()),
            Rule::NotJson
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(rule(Some("application/json"), &big), Rule::TooLarge);
        assert!(validate_request(Endpoint::Hangup, None, b"").is_ok());
        assert!(
            validate_request(
                Endpoint::Hangup,
                Some("application/json; charset=utf-8"),
                b"{}"
            )
            .is_ok()
        );
        assert!(validate_request(Endpoint::RemoveParticipant, None, b"junk").is_ok());
    }

    #[test]
    fn responses() {
        let ok =
            |e, s, b: &str, c| validate_response(e, s, Some("application/json"), b.as_bytes(), c);
        assert!(ok(Endpoint::CreateCall, 200, r#"{"callLegId":"x"}"#, None).is_ok());
        assert_eq!(
            ok(Endpoint::CreateCall, 200, r#"{"callLegId":""}"#, None).unwrap_err()[0].rule,
            Rule::EmptyString
        );
        assert_eq!(
            ok(Endpoint::CreateCall, 201, "", None).unwrap_err()[0].rule,
            Rule::UndocumentedStatus
        );
        assert!(
            ok(
                Endpoint::PlayAudio,
                202,
                r#"{"id":"1","status":"running","operationContext":"c"}"#,
                Some("c")
            )
            .is_ok()
        );
        assert_eq!(
            ok(
                Endpoint::PlayAudio,
                202,
                r#"{"id":"1","status":"running"}"#,
                Some("c")
            )
            .unwrap_err()[0]
                .rule,
            Rule::NotEchoed
        );
        assert_eq!(
            ok(
                Endpoint::PlayAudio,
                202,
                r#"{"id":"1","status":"Running"}"#,
                None
            )
            .unwrap_err()[0]
                .rule,
            Rule::UnknownEnumValue
        );
        assert_eq!(
            ok(Endpoint::PlayAudio, 202, r#"{"id":"1","status":"running","resultInfo":{"code":1.5,"subcode":0,"message":""}}"#, None).unwrap_err()[0].path,
            "resultInfo.code"
        );
        assert_eq!(
            ok(Endpoint::Hangup, 202, "{}", None).unwrap_err()[0].rule,
            Rule::UnexpectedBody
        );
        assert!(
            ok(
                Endpoint::Hangup,
                404,
                r#"{"code":"NotFound","message":"no call"}"#,
                None
            )
            .is_ok()
        );
        assert_eq!(
            ok(Endpoint::Hangup, 404, r#"{"code":"","message":"m"}"#, None).unwrap_err()[0].path,
            "code"
        );
        assert_eq!(
            validate_response(Endpoint::Hangup, 401, Some("text/html"), b"<html>", None)
                .unwrap_err()[0]
                .rule,
            Rule::ContentType
        );
    }

    #[test]
    fn utc_timestamps() {
        for good in [
            "2021-05-05T20:38:22.0476663Z",
            "2026-11-23T10:00:00Z",
            "2026-11-23t10:00:00z",
            "2026-11-23T10:00:00+00:00",
        ] {
            assert!(is_utc_timestamp(good), "{good}");
        }
        for bad in [
            "2026-11-23T10:00:00+01:00",
            "2026-11-23 10:00:00Z",
            "2026-11-23T10:00:00",
            "2026-13-23T10:00:00Z",
            "Mon, 23 Nov 2026 10:00:00 GMT",
            "",
        ] {
            assert!(!is_utc_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn e164_and_uris() {
        for good in ["+12", "+14251001000", "+999999999999999"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "+1",
            "14251001000",
            "+04251001000",
            "+1425100100012345",
            "+1 425",
            "+",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        for good in [
            "https://a.example/x?y=1",
            "http://127.0.0.1:8080/",
            "HTTPS://A.B",
            "https://a.example/Ansage%20Feiertag",
        ] {
            assert!(is_http_uri(good), "{good}");
        }
        for bad in [
            "/x",
            "a.example/x",
            "ftp://a/x",
            "https://",
            "https:// a",
            "not a uri",
            "http:a.example",
            "",
            "https:///x",
            "http:///",
            "https://?q=1",
            "http://a\\b/",
            "https://a.example/x\\y",
            // An IRI is not a URI; judged the same whatever the scheme's length.
            "http://ü.example/",
            "https://ü.example/",
            "https://a.example/Grüße",
        ] {
            assert!(!is_http_uri(bad), "{bad}");
        }
    }
}
