//! The Call Automation contract as data: the six endpoints, their routes and statuses,
//! the request and response rules, and the OpenAPI document that describes them.
//!
//! Everything else in the harness (the double, the generators, the gate, the load
//! runner) asks this module what the API is, so the contract lives in one place.

pub mod events;
pub mod schema;
mod validate;

pub use schema::participant_id;
pub use validate::{
    Rule, Violation, is_e164, is_http_uri, is_utc_timestamp, validate_error_body, validate_request,
    validate_response,
};

use std::fmt;

/// The OpenAPI 3.1 document of the contract, printed by `acs-harness spec`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body the service accepts (1 MiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The statuses every endpoint documents besides its success status.
pub const ERROR_STATUSES: [u16; 6] = [400, 401, 404, 405, 413, 500];

/// One of the six operations of the Call Automation API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /calls`
    CreateCall,
    /// `POST /calls/{callId}/Hangup`
    Hangup,
    /// `POST /calls/{callId}/PlayAudio`
    PlayAudio,
    /// `POST /calls/{callId}/CancelMediaProcessing`
    CancelMediaProcessing,
    /// `POST /calls/{callId}/participants`
    InviteParticipants,
    /// `DELETE /calls/{callId}/participants/{participantId}`
    RemoveParticipant,
}

/// What a successful response carries, per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessBody {
    /// `{"callLegId": "..."}`
    CallLeg,
    /// The media operation body of play audio and cancel media processing.
    MediaOperation,
    /// No body at all.
    Empty,
}

/// How an endpoint treats a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// A JSON object is required.
    Required,
    /// No body, an empty body, or a JSON object (hang up).
    EmptyOrObject,
    /// No body is expected; whatever is sent is ignored (remove participant).
    Ignored,
}

/// Parses a command-line name (see [`Endpoint::name`]); the error lists the names.
impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        Endpoint::from_name(s.trim())
            .ok_or_else(|| format!("unknown endpoint {s:?} (one of {})", Endpoint::names()))
    }
}

impl Endpoint {
    /// All six endpoints, in the order of src/contract/CONTRACT.md.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::CreateCall,
        Endpoint::Hangup,
        Endpoint::PlayAudio,
        Endpoint::CancelMediaProcessing,
        Endpoint::InviteParticipants,
        Endpoint::RemoveParticipant,
    ];

    /// The command-line name (`create-call`, `play-audio`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CreateCall => "create-call",
            Endpoint::Hangup => "hangup",
            Endpoint::PlayAudio => "play-audio",
            Endpoint::CancelMediaProcessing => "cancel-media-processing",
            Endpoint::InviteParticipants => "invite-participants",
            Endpoint::RemoveParticipant => "remove-participant",
        }
    }

    /// Parses a command-line name; see [`Endpoint::name`].
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The names of all endpoints, comma-separated, for error messages.
    pub fn names() -> String {
        Endpoint::ALL.map(Endpoint::name).join(", ")
    }

    /// The HTTP method.
    pub fn method(self) -> &'static str {
        match self {
            Endpoint::RemoveParticipant => "DELETE",
            _ => "POST",
        }
    }

    /// The path template, with `{callId}` and `{participantId}` placeholders.
    pub fn path_template(self) -> &'static str {
        match self {
            Endpoint::CreateCall => "/calls",
            Endpoint::Hangup => "/calls/{callId}/Hangup",
            Endpoint::PlayAudio => "/calls/{callId}/PlayAudio",
            Endpoint::CancelMediaProcessing => "/calls/{callId}/CancelMediaProcessing",
            Endpoint::InviteParticipants => "/calls/{callId}/participants",
            Endpoint::RemoveParticipant => "/calls/{callId}/participants/{participantId}",
        }
    }

    /// `METHOD /path/template`, the name requests are reported under.
    pub fn request_name(self) -> String {
        format!("{} {}", self.method(), self.path_template())
    }

    /// The documented success status.
    pub fn success_status(self) -> u16 {
        match self {
            Endpoint::CreateCall => 200,
            _ => 202,
        }
    }

    /// What a success response carries.
    pub fn success_body(self) -> SuccessBody {
        match self {
            Endpoint::CreateCall => SuccessBody::CallLeg,
            Endpoint::PlayAudio | Endpoint::CancelMediaProcessing => SuccessBody::MediaOperation,
            _ => SuccessBody::Empty,
        }
    }

    /// How the endpoint treats a request body.
    pub fn request_body(self) -> RequestBody {
        match self {
            Endpoint::Hangup => RequestBody::EmptyOrObject,
            Endpoint::RemoveParticipant => RequestBody::Ignored,
            _ => RequestBody::Required,
        }
    }

    /// Whether the path names a call (`{callId}`).
    pub fn needs_call(self) -> bool {
        self != Endpoint::CreateCall
    }

    /// Whether a status is documented for this endpoint.
    pub fn documents_status(self, status: u16) -> bool {
        status == self.success_status() || ERROR_STATUSES.contains(&status)
    }

    /// Fills the path template with percent-encoded ids.
    pub fn path(self, call_id: &str, participant_id: Option<&str>) -> String {
        let call = encode_segment(call_id);
        let template = self.path_template().replace("{callId}", &call);
        match participant_id {
            Some(p) => template.replace("{participantId}", &encode_segment(p)),
            None => template,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Characters left as they are in a path segment (RFC 3986 unreserved plus `:` and `@`);
/// `+` is encoded, as the SDKs do (`+14251001000` travels as `%2B14251001000`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// Percent-encodes one path segment (a call or participant id).
pub fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// The result of routing a request path (without prefix and query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of the six operations, with its percent-decoded path parameters.
    Found {
        /// The operation.
        endpoint: Endpoint,
        /// `{callId}`, decoded; empty for create call.
        call_id: String,
        /// `{participantId}`, decoded, for remove participant.
        participant_id: Option<String>,
    },
    /// A known path with a method it does not have; `allow` is the `Allow` header.
    MethodNotAllowed {
        /// The methods the path has.
        allow: &'static str,
    },
    /// Not one of the six paths.
    NotFound,
}

/// Routes `method` and the raw (percent-encoded) `path` to an endpoint.
pub fn route(method: &str, path: &str) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (endpoint, call, participant) = match segments.as_slice() {
        ["calls"] => (Endpoint::CreateCall, None, None),
        ["calls", id, "Hangup"] => (Endpoint::Hangup, Some(*id), None),
        ["calls", id, "PlayAudio"] => (Endpoint::PlayAudio, Some(*id), None),
        ["calls", id, "CancelMediaProcessing"] => {
            (Endpoint::CancelMediaProcessing, Some(*id), None)
        }
        ["calls", id, "participants"] => (Endpoint::InviteParticipants, Some(*id), None),
        ["calls", id, "participants", p] => (Endpoint::RemoveParticipant, Some(*id), Some(*p)),
        _ => return Route::NotFound,
    };
    let decode = |s: &str| -> Option<String> {
        if s.is_empty() {
            return None;
        }
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
            .filter(|c| !c.is_empty())
    };
    let call_id = match call {
        Some(c) => match decode(c) {
            Some(c) => c,
            None => return Route::NotFound,
        },
        None => String::new(),
    };
    let participant_id = match participant {
        Some(p) => match decode(p) {
            Some(p) => Some(p),
            None => return Route::NotFound,
        },
        None => None,
    };
    // Methods are case-sensitive (RFC 9110 §9.1): `post` is not `POST`.
    if method != endpoint.method() {
        return Route::MethodNotAllowed {
            allow: endpoint.method(),
        };
    }
    Route::Found {
        endpoint,
        call_id,
        participant_id,
    }
}

/// Whether a `Content-Type` value is JSON: `application/json`, with parameters allowed
/// but a `charset` only if it is UTF-8 (JSON text is UTF-8, RFC 8259).
pub fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media_type_ok = parts
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    media_type_ok
        && parts.all(|p| match p.split_once('=') {
            Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_endpoint_and_decodes_ids() {
        for e in Endpoint::ALL {
            let path = e.path("abc def", Some("+14251001000"));
            match route(e.method(), &path) {
                Route::Found {
                    endpoint,
                    call_id,
                    participant_id,
                } => {
                    assert_eq!(endpoint, e);
                    if e.needs_call() {
                        assert_eq!(call_id, "abc def");
                    }
                    if e == Endpoint::RemoveParticipant {
                        assert_eq!(participant_id.as_deref(), Some("+14251001000"));
                        assert!(path.ends_with("%2B14251001000"));
                    }
                }
                other => panic!("{e}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_method_and_unknown_paths() {
        assert_eq!(
            route("GET", "/calls"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            route("POST", "/calls/x/participants/y"),
            Route::MethodNotAllowed { allow: "DELETE" }
        );
        assert_eq!(
            route("post", "/calls"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            route("Delete", "/calls/x/participants/y"),
            Route::MethodNotAllowed { allow: "DELETE" }
        );
        for p in [
            "/",
            "/call",
            "/calls/",
            "/calls//Hangup",
            "/calls/x/hangup",
            "/calls/x/Hangup/",
            "calls",
            "/calls/%FF/Hangup",
        ] {
            assert_eq!(route("POST", p), Route::NotFound, "{p}");
        }
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "text/json",
            "application/json-patch+json",
            "application/json; charset=iso-8859-1",
            "",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
        }
        assert_eq!(Endpoint::from_name("nope"), None);
    }
}
