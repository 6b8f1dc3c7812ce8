//! The *shape* of a response: what stays the same between two answers of a conforming
//! service, so it can be pinned in a snapshot for any target, including a live one whose
//! ids and messages differ on every call.
//!
//! A shape keeps the HTTP status, the media type, the object keys and the literals of
//! the contract's enum-valued properties; every other JSON value becomes the name of
//! its type. Choices, and why:
//!
//! - **Content type**: the media type only, lowercased (`application/json`). The
//!   contract allows parameters such as `; charset=utf-8`, so a service adding or
//!   dropping one is not a shape change. A missing header is `null`.
//! - **Enum literals**: the media operation `status` (`notStarted`, `running`,
//!   `completed`, `failed`) is kept, because which state a service reports is
//!   behaviour a reviewer wants to see. A value outside the enum becomes
//!   `"<string, not in enum>"` so it still shows up as a change.
//! - **Error `code`**: `"<string>"`. The contract only says it is a non-empty string;
//!   its values are service-defined and differ between the double and the service.
//!   (The double's full-body snapshots pin its codes.)
//! - **Arrays**: the distinct shapes of their elements, in order of first appearance, so
//!   `details` with one or five entries of the same kind has one shape.
//! - **Numbers**: `"<integer>"` for whole JSON numbers written without a fraction or
//!   exponent, `"<number>"` otherwise.
//! - **Bodies**: empty is `null`; a body that is not JSON is `"<non-JSON body>"` (no byte
//!   count, since an HTML error page's length varies from call to call).

use crate::contract::schema::{Enumeration, response_enum};
use serde_json::{Map, Value, json};

/// What an enum-valued property outside its enum becomes.
pub const NOT_IN_ENUM: &str = "<string, not in enum>";

/// What a body that is not JSON becomes.
pub const NON_JSON_BODY: &str = "<non-JSON body>";

/// The shape of a response: `{"status", "contentType", "body"}`; see the module docs.
///
/// ```
/// use acs_harness::shape;
/// let s = shape(
///     202,
///     Some("application/json; charset=utf-8"),
///     br#"{"id":"a1","status":"running","resultInfo":{"code":202,"subcode":0,"message":"ok"}}"#,
/// );
/// assert_eq!(
///     s,
///     serde_json::json!({
///         "status": 202,
///         "contentType": "application/json",
///         "body": {
///             "id": "<string>",
///             "status": "running",
///             "resultInfo": {"code": "<integer>", "subcode": "<integer>", "message": "<string>"}
///         }
///     })
/// );
/// ```
pub fn shape(status: u16, content_type: Option<&str>, body: &[u8]) -> Value {
    json!({
        "status": status,
        "contentType": content_type.map(media_type),
        "body": body_shape(body),
    })
}

/// The media type of a `Content-Type` value: lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The shape of a body alone: `null` when empty, the typed JSON, or [`NON_JSON_BODY`].
pub fn body_shape(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    // The contract's enum-valued properties at the top of a response
                    // body (the media operation `status`), from the schema table.
                    let s = match response_enum(&k) {
                        Some(e) => enum_shape(&v, e),
                        None => value_shape(&v),
                    };
                    (k, s)
                })
                .collect(),
        ),
        Ok(other) => value_shape(&other),
        Err(_) => Value::String(NON_JSON_BODY.to_string()),
    }
}

/// A JSON value with every leaf replaced by its type name.
pub fn value_shape(v: &Value) -> Value {
    match v {
        Value::Null => Value::String("<null>".into()),
        Value::Bool(_) => Value::String("<boolean>".into()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Value::String("<integer>".into()),
        Value::Number(_) => Value::String("<number>".into()),
        Value::String(_) => Value::String("<string>".into()),
        Value::Array(items) => {
            let mut seen: Vec<Value> = Vec::new();
            for s in items.iter().map(value_shape) {
                if !seen.contains(&s) {
                    seen.push(s);
                }
            }
            Value::Array(seen)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), value_shape(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn enum_shape(v: &Value, e: &Enumeration) -> Value {
    match v {
        Value::String(s) if e.contains(s) => v.clone(),
        Value::String(_) => Value::String(NOT_IN_ENUM.into()),
        other => value_shape(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_operation_keeps_keys_and_enum_literal() {
        let body = br#"{"id":"6d1c","status":"completed","operationContext":"ctx-1",
            "resultInfo":{"code":202,"subcode":0,"message":"done"}}"#;
        assert_eq!(
            shape(202, Some("Application/JSON"), body),
            json!({
                "status": 202,
                "contentType": "application/json",
                "body": {
                    "id": "<string>",
                    "status": "completed",
                    "operationContext": "<string>",
                    "resultInfo": {
                        "code": "<integer>",
                        "subcode": "<integer>",
                        "message": "<string>"
                    }
                }
            })
        );
    }

    #[test]
    fn enum_value_outside_the_contract_is_marked() {
        let s = body_shape(br#"{"id":"x","status":"Running"}"#);
        assert_eq!(s["status"], NOT_IN_ENUM);
        let s = body_shape(br#"{"id":"x","status":3}"#);
        assert_eq!(s["status"], "<integer>");
    }

    #[test]
    fn error_code_and_message_are_types() {
        assert_eq!(
            shape(
                404,
                Some("application/json; charset=utf-8"),
                br#"{"code":"NotFound","message":"call abc not found","target":"callId"}"#
            ),
            json!({
                "status": 404,
                "contentType": "application/json",
                "body": {"code": "<string>", "message": "<string>", "target": "<string>"}
            })
        );
    }

    #[test]
    fn empty_and_non_json_bodies() {
        assert_eq!(
            shape(202, None, b""),
            json!({"status": 202, "contentType": null, "body": null})
        );
        assert_eq!(body_shape(b" \r\n"), Value::Null);
        assert_eq!(body_shape(b"<html>oops</html>"), json!(NON_JSON_BODY));
        assert_eq!(body_shape(&[0xff, 0xfe, 0x00]), json!(NON_JSON_BODY));
        // Garbage of different lengths has the same shape: a live page varies.
        assert_eq!(body_shape(b"x"), body_shape(b"xxxxxxxxxxxx"));
    }

    #[test]
    fn leaves_numbers_and_arrays() {
        assert_eq!(
            value_shape(&json!([1, 2.5, true, null, "s", 3, {"a": [1, 1]}])),
            json!([
                "<integer>",
                "<number>",
                "<boolean>",
                "<null>",
                "<string>",
                {"a": ["<integer>"]}
            ])
        );
        assert_eq!(value_shape(&json!([])), json!([]));
        assert_eq!(value_shape(&json!(-4)), json!("<integer>"));
        assert_eq!(value_shape(&json!(u64::MAX)), json!("<integer>"));
        // Enum literals are kept only at the top of a body, where the contract puts them.
        assert_eq!(
            body_shape(br#"{"resultInfo":{"status":"running"}}"#),
            json!({"resultInfo": {"status": "<string>"}})
        );
    }

    #[test]
    fn top_level_non_object_json() {
        assert_eq!(body_shape(b"[1,2]"), json!(["<integer>"]));
        assert_eq!(body_shape(b"\"ok\""), json!("<string>"));
        assert_eq!(body_shape(b"null"), json!("<null>"));
    }
}
