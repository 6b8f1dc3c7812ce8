//! The checks of the gate and the verdicts on single responses: what a request
//! should have got, and in what way the reply differs.

use crate::client::Reply;
use crate::contract::{Endpoint, Rule, Violation, validate_error_body, validate_response};
use std::fmt;

/// One property of the contract the gate checks; every report names them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Valid requests get the documented success status and body.
    PositiveAcceptance,
    /// Labelled invalid requests (and wrong methods) get 400/413/405 with the error body.
    NegativeRejection,
    /// Unauthenticated or badly signed requests get 401, before anything else.
    AuthRequired,
    /// No request gets a 5xx.
    NotAServerError,
    /// Unknown call ids, participant ids and paths get 404.
    UnknownResource,
    /// Create, use, remove and hang up in order, with the ids the target returned.
    Lifecycle,
    /// Every 4xx/5xx carries a JSON body with non-empty `code` and `message`.
    ErrorShape,
    /// The events sent to a call's `callbackUri`: shapes, order, one result per operation.
    Events,
}

impl Check {
    /// All checks, in report order.
    pub const ALL: [Check; 8] = [
        Check::PositiveAcceptance,
        Check::NegativeRejection,
        Check::AuthRequired,
        Check::NotAServerError,
        Check::UnknownResource,
        Check::Lifecycle,
        Check::ErrorShape,
        Check::Events,
    ];

    /// The snake_case name used in every report.
    pub fn name(self) -> &'static str {
        match self {
            Check::PositiveAcceptance => "positive_acceptance",
            Check::NegativeRejection => "negative_rejection",
            Check::AuthRequired => "auth_required",
            Check::NotAServerError => "not_a_server_error",
            Check::UnknownResource => "unknown_resource",
            Check::Lifecycle => "lifecycle",
            Check::ErrorShape => "error_shape",
            Check::Events => "events",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a reply differs from what was expected: the expectation in words, what came
/// back, and the rules it broke (with JSON paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What the contract says the request gets.
    pub expected: String,
    /// What it got, in one line.
    pub got: String,
    /// The violated rules, if the status was right but the content was not.
    pub violations: Vec<Violation>,
}

/// What a request should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The endpoint's success status and a body satisfying the response rules; the
    /// string is the request's `operationContext`, which must be echoed.
    Success(Option<String>),
    /// Any 2xx: the request was authenticated (its body is judged elsewhere).
    Accepted,
    /// One of these error statuses, with the error body.
    Error(Vec<u16>),
    /// 405 with the error body (none for `HEAD`) and an `Allow` header with this method.
    MethodNotAllowed {
        /// The method the path has.
        allow: &'static str,
        /// The method sent, which the `Allow` header must not list; `HEAD` expects no body.
        sent: &'static str,
    },
}

impl Expect {
    /// The expectation in words, for reports.
    pub fn describe(&self, endpoint: Endpoint) -> String {
        match self {
            Expect::Success(ctx) => {
                let body = match endpoint.success_body() {
                    crate::contract::SuccessBody::CallLeg => {
                        "a JSON body with a non-empty callLegId"
                    }
                    crate::contract::SuccessBody::MediaOperation => {
                        "a JSON media operation body (id, status in the enum)"
                    }
                    crate::contract::SuccessBody::Empty => "no body",
                };
                let echo = match ctx {
                    Some(c) => format!(", echoing operationContext {c:?}"),
                    None => String::new(),
                };
                format!("{} with {body}{echo}", endpoint.success_status())
            }
            Expect::Accepted => {
                format!("a 2xx (authenticated), e.g. {}", endpoint.success_status())
            }
            Expect::Error(statuses) => {
                let s: Vec<String> = statuses.iter().map(u16::to_string).collect();
                format!("{} with the error body", s.join(" or "))
            }
            Expect::MethodNotAllowed { allow, sent } => format!(
                "405 with Allow: {allow}{}",
                if *sent == "HEAD" {
                    " and no body"
                } else {
                    " and the error body"
                }
            ),
        }
    }
}

/// Judges a reply of `endpoint` against `expect`.
pub fn judge(endpoint: Endpoint, expect: &Expect, reply: &Reply) -> Result<(), Mismatch> {
    let mismatch = |violations: Vec<Violation>| Mismatch {
        expected: expect.describe(endpoint),
        got: describe_reply(reply),
        violations,
    };
    let truncated = |v: &mut Vec<Violation>| {
        if reply.truncated {
            v.push(Violation {
                path: String::new(),
                rule: Rule::TooLarge,
                message: format!(
                    "response body exceeded {} bytes and was cut",
                    crate::client::MAX_RESPONSE_BYTES
                ),
            });
        }
    };
    match expect {
        Expect::Success(ctx) => {
            if reply.status != endpoint.success_status() {
                return Err(mismatch(Vec::new()));
            }
            let mut v = validate_response(
                endpoint,
                reply.status,
                reply.content_type.as_deref(),
                &reply.body,
                ctx.as_deref(),
            )
            .err()
            .unwrap_or_default();
            if endpoint == Endpoint::CreateCall
                && let Some(why) = call_leg_id(&reply.body)
                    .as_deref()
                    .and_then(unusable_call_id)
            {
                v.push(Violation {
                    path: "callLegId".into(),
                    rule: Rule::TooLarge,
                    message: why,
                });
            }
            if !reply.body.is_empty()
                && !reply
                    .content_type
                    .as_deref()
                    .is_some_and(crate::contract::is_json_content_type)
                && !v.iter().any(|x| x.rule == Rule::ContentType)
            {
                v.push(Violation {
                    path: String::new(),
                    rule: Rule::ContentType,
                    message: "a response with a body must be application/json".into(),
                });
            }
            truncated(&mut v);
            if v.is_empty() {
                Ok(())
            } else {
                Err(mismatch(v))
            }
        }
        Expect::Accepted => {
            if (200..300).contains(&reply.status) {
                Ok(())
            } else {
                Err(mismatch(Vec::new()))
            }
        }
        Expect::Error(statuses) => {
            if !statuses.contains(&reply.status) {
                return Err(mismatch(Vec::new()));
            }
            let mut v = validate_error_body(reply.content_type.as_deref(), &reply.body)
                .err()
                .unwrap_or_default();
            truncated(&mut v);
            if v.is_empty() {
                Ok(())
            } else {
                Err(mismatch(v))
            }
        }
        Expect::MethodNotAllowed { allow, sent } => {
            if reply.status != 405 {
                return Err(mismatch(Vec::new()));
            }
            let mut v = Vec::new();
            let allowed = |m: &str| {
                reply
                    .allow
                    .as_deref()
                    .is_some_and(|a| a.split(',').any(|x| x.trim().eq_ignore_ascii_case(m)))
            };
            if allowed(sent) {
                v.push(Violation {
                    path: String::new(),
                    rule: Rule::AllowHeader,
                    message: format!(
                        "the Allow header lists {sent}, which was just refused with 405"
                    ),
                });
            }
            let listed = reply
                .allow
                .as_deref()
                .is_some_and(|a| a.split(',').any(|m| m.trim().eq_ignore_ascii_case(allow)));
            if !listed {
                v.push(Violation {
                    path: String::new(),
                    rule: Rule::AllowHeader,
                    message: format!(
                        "the Allow header must list {allow}, got {}",
                        reply
                            .allow
                            .as_deref()
                            .map_or("none".to_string(), |a| format!("{a:?}"))
                    ),
                });
            }
            if *sent == "HEAD" {
                if !reply.body.is_empty() {
                    v.push(Violation {
                        path: String::new(),
                        rule: Rule::UnexpectedBody,
                        message: format!(
                            "a HEAD answer carries no body, got {} bytes",
                            reply.body.len()
                        ),
                    });
                }
            } else if let Err(e) = validate_error_body(reply.content_type.as_deref(), &reply.body) {
                v.extend(e);
            }
            if v.is_empty() {
                Ok(())
            } else {
                Err(mismatch(v))
            }
        }
    }
}

/// The longest percent-encoded `callLegId` the gate takes. The id is the `{callId}` path
/// segment of every other endpoint, and a request target must stay within what servers
/// accept (RFC 9110 §4.1 asks for at least 8000 octets), with room for a prefix, a
/// participant id and the query.
pub const MAX_CALL_ID_URL_BYTES: usize = 2048;

/// The `callLegId` string of a create-call answer, if it has one.
pub fn call_leg_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("callLegId")?
        .as_str()
        .map(str::to_string)
}

/// Why a `callLegId` cannot serve as the `{callId}` of the other endpoints, if it cannot;
/// the value itself is shown cut, with its size.
pub fn unusable_call_id(id: &str) -> Option<String> {
    let encoded = crate::contract::encode_segment(id).len();
    (encoded > MAX_CALL_ID_URL_BYTES).then(|| {
        format!(
            "callLegId {} is {encoded} bytes as a URL path segment; as the {{callId}} of every other endpoint it must fit in {MAX_CALL_ID_URL_BYTES}",
            crate::redact::clip(id, 64)
        )
    })
}

/// Whether an error `message` names the offending property of a defect: its JSON
/// `path`, or, for a rule on a whole array (empty, duplicate items), the array that
/// holds it, which src/contract/CONTRACT.md accepts too. Never satisfied by the root alone.
pub fn names_offending_property(message: &str, rule: Rule, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    if names(message, path) {
        return true;
    }
    let array = match rule {
        Rule::EmptyArray => path,
        // `requestedModalities[1]` → `requestedModalities`.
        Rule::DuplicateItem => match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
            Some((array, index)) if index.bytes().all(|b| b.is_ascii_digit()) => array,
            _ => path,
        },
        _ => return false,
    };
    !array.is_empty() && names(message, array)
}

/// Whether `message` mentions `path` as a whole name: `targets` is not named by
/// `targetsCount`, and `targets[1]` not by `targets[10]`.
fn names(message: &str, path: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    message.match_indices(path).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + path.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// The `error_shape` verdict on any reply with status ≥ 400 (not for `HEAD`).
pub fn error_shape(reply: &Reply) -> Result<(), Vec<Violation>> {
    validate_error_body(reply.content_type.as_deref(), &reply.body)
}

/// One line describing a reply: status, content type and the start of the body.
pub fn describe_reply(reply: &Reply) -> String {
    let ct = reply.content_type.as_deref().unwrap_or("no content type");
    if reply.body.is_empty() {
        return format!("{}, {ct}, no body", reply.status);
    }
    let more = if reply.truncated { "+" } else { "" };
    format!(
        "{}, {ct}, {}{more} bytes: {}",
        reply.status,
        reply.body.len(),
        snippet(&reply.body, 160)
    )
}

/// The first `max` characters of a body, lossily decoded, control characters escaped.
pub fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max * 4)]);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reply(status: u16, ct: Option<&str>, body: &str) -> Reply {
        Reply {
            status,
            content_type: ct.map(str::to_string),
            allow: None,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            truncated: false,
            elapsed: Duration::ZERO,
            date: None,
        }
    }

    #[test]
    fn judges_success_and_errors() {
        let j = |e, x: &Expect, r: &Reply| judge(e, x, r);
        assert!(
            j(
                Endpoint::Hangup,
                &Expect::Success(None),
                &reply(202, None, "")
            )
            .is_ok()
        );
        let m = j(
            Endpoint::Hangup,
            &Expect::Success(None),
            &reply(200, None, ""),
        )
        .unwrap_err();
        assert!(m.expected.starts_with("202"), "{m:?}");
        let m = j(
            Endpoint::CreateCall,
            &Expect::Success(None),
            &reply(200, Some("application/json"), r#"{"callLegId":""}"#),
        )
        .unwrap_err();
        assert_eq!(m.violations[0].path, "callLegId");
        let err = r#"{"code":"BadRequest","message":"targets"}"#;
        assert!(
            j(
                Endpoint::CreateCall,
                &Expect::Error(vec![400]),
                &reply(400, Some("application/json"), err)
            )
            .is_ok()
        );
        assert!(
            j(
                Endpoint::CreateCall,
                &Expect::Error(vec![400]),
                &reply(400, Some("text/plain"), err)
            )
            .is_err()
        );
        let not_allowed = Expect::MethodNotAllowed {
            allow: "POST",
            sent: "GET",
        };
        let with_allow = |allow: Option<&str>| {
            let mut r = reply(405, Some("application/json"), err);
            r.allow = allow.map(str::to_string);
            j(Endpoint::CreateCall, &not_allowed, &r)
        };
        assert!(with_allow(Some("POST")).is_ok());
        // The Allow header has a rule of its own, not a borrowed status rule.
        let m = with_allow(None).unwrap_err();
        assert_eq!(m.violations.len(), 1, "{m:?}");
        assert_eq!(m.violations[0].rule, Rule::AllowHeader);
        let m = with_allow(Some("GET, POST")).unwrap_err();
        assert_eq!(m.violations[0].rule, Rule::AllowHeader);
        assert!(m.violations[0].message.contains("lists GET"), "{m:?}");
    }

    #[test]
    fn array_rules_accept_the_array_or_the_item() {
        let n = names_offending_property;
        let dup = Rule::DuplicateItem;
        assert!(n(
            "requestedModalities[1]: duplicate",
            dup,
            "requestedModalities[1]"
        ));
        assert!(n(
            "requestedModalities: duplicate items",
            dup,
            "requestedModalities[1]"
        ));
        assert!(n(
            "duplicate in requestedCallEvents",
            dup,
            "requestedCallEvents[2]"
        ));
        assert!(n(
            "body.requestedModalities has duplicates",
            dup,
            "requestedModalities[1]"
        ));
        // Another array, a longer name or nothing at all is not the array.
        assert!(!n(
            "requestedCallEvents: duplicate",
            dup,
            "requestedModalities[1]"
        ));
        assert!(!n(
            "requestedModalitiesList: dup",
            dup,
            "requestedModalities[1]"
        ));
        assert!(!n("duplicate items", dup, "requestedModalities[1]"));
        assert!(n("targets must not be empty", Rule::EmptyArray, "targets"));
        assert!(!n("body is invalid", Rule::EmptyArray, "targets"));
        // Any other rule needs the exact path; the array that holds it is not enough.
        let e164 = Rule::BadE164;
        assert!(n(
            "targets[1].phoneNumber.value: not E.164",
            e164,
            "targets[1].phoneNumber.value"
        ));
        assert!(!n(
            "targets: bad phone number",
            e164,
            "targets[1].phoneNumber.value"
        ));
        assert!(!n(
            "requestedModalities: bad value",
            Rule::UnknownEnumValue,
            "requestedModalities[0]"
        ));
        assert!(!n(
            "targets[10] is wrong",
            Rule::IdentifierKinds,
            "targets[1]"
        ));
        // Body-level defects have no path to name.
        assert!(n("not JSON", Rule::NotJson, ""));
    }

    #[test]
    fn snippets_escape_and_cut() {
        assert_eq!(snippet(b"a\nb", 10), "a\\nb");
        assert_eq!(snippet(b"abcdef", 3), "abc…");
    }
}
