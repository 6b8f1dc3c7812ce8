//! The contract's JSON bodies as one table: every request, response and event body,
//! its fields, their JSON types, which are required, and the rule each value follows
//! (src/contract/CONTRACT.md).
//!
//! The validator walks this table, the generators derive their defect classes and
//! plant their defects from it, the shape code takes its enum literals from it, the
//! double and the load runner take the participant-id rule from it, and
//! tests/openapi.rs proves the OpenAPI document agrees with it. A rule changes here,
//! once.

use super::Endpoint;
use serde_json::Value;
use std::borrow::Cow;

/// A closed set of string values (case-sensitive), with the near misses clients
/// actually send (wrong case, older names), which invalid generators draw from.
#[derive(Debug, PartialEq, Eq)]
pub struct Enumeration {
    /// The values the contract allows.
    pub values: &'static [&'static str],
    /// Strings that look like values but are not.
    pub near_misses: &'static [&'static str],
}

impl Enumeration {
    /// Whether `s` is one of the values.
    pub fn contains(&self, s: &str) -> bool {
        self.values.contains(&s)
    }
}

/// The type and rule of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string; `non_empty` forbids `""`.
    String {
        /// Whether `""` breaks the rule.
        non_empty: bool,
    },
    /// A string holding an absolute `http`/`https` URI ([`super::is_http_uri`]).
    Uri,
    /// A string holding an E.164 phone number ([`super::is_e164`]).
    E164,
    /// A string from an enumeration.
    Enum(&'static Enumeration),
    /// `true` or `false`.
    Bool,
    /// A whole JSON number, at least `min` when given.
    Integer {
        /// The smallest value allowed.
        min: Option<i64>,
    },
    /// A string holding an RFC 3339 timestamp in UTC (`Z` or `+00:00`).
    Timestamp,
    /// A JSON object with these fields (others are ignored).
    Object(&'static [Field]),
    /// A CommunicationIdentifier: exactly one of [`IDENTIFIER_KINDS`], optionally
    /// [`RAW_ID`].
    Identifier,
    /// A JSON array.
    Array {
        /// The type of every item.
        items: &'static Ty,
        /// Whether `[]` breaks the rule.
        non_empty: bool,
        /// Whether an item may appear only once.
        unique: bool,
    },
}

/// The JSON type a [`Ty`] is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// A JSON string.
    String,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Integer,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl Ty {
    /// The JSON type values of this type have.
    pub fn json_type(self) -> JsonType {
        match self {
            Ty::String { .. } | Ty::Uri | Ty::E164 | Ty::Enum(_) | Ty::Timestamp => {
                JsonType::String
            }
            Ty::Bool => JsonType::Bool,
            Ty::Integer { .. } => JsonType::Integer,
            Ty::Object(_) | Ty::Identifier => JsonType::Object,
            Ty::Array { .. } => JsonType::Array,
        }
    }
}

/// One property of an object: its name (as the contract's camelCase spells it, or
/// PascalCase in event data), type and whether it is required (absent or `null` breaks
/// the rule; an optional one may be absent or `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The property name.
    pub name: &'static str,
    /// Its type and rule.
    pub ty: Ty,
    /// Whether absent or `null` breaks the rule.
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const STRING: Ty = Ty::String { non_empty: false };
const ID: Ty = Ty::String { non_empty: true };

/// How property names are spelled: request and response bodies and event envelopes
/// in camelCase, event data (identifiers included) in PascalCase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// As written in the table (`communicationUser`).
    Camel,
    /// First letter upper-cased (`CommunicationUser`).
    Pascal,
}

impl Case {
    /// `name` in this case; borrowed when it is already spelled so.
    pub fn key(self, name: &'static str) -> Cow<'static, str> {
        match self {
            Case::Pascal if name.starts_with(|c: char| c.is_ascii_lowercase()) => {
                let mut s = name.to_string();
                s[..1].make_ascii_uppercase();
                Cow::Owned(s)
            }
            _ => Cow::Borrowed(name),
        }
    }

    /// `v` with every object key in this case (identifiers built for requests, used
    /// in event data).
    pub fn convert(self, v: Value) -> Value {
        match (self, v) {
            (Case::Camel, v) => v,
            (Case::Pascal, Value::Object(m)) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let mut k = k;
                        if let Some(first) = k.get(..1) {
                            let upper = first.to_ascii_uppercase();
                            k.replace_range(..1, &upper);
                        }
                        (k, Case::Pascal.convert(v))
                    })
                    .collect(),
            ),
            (Case::Pascal, Value::Array(a)) => {
                Value::Array(a.into_iter().map(|v| Case::Pascal.convert(v)).collect())
            }
            (_, v) => v,
        }
    }
}

// ---- Identifiers -------------------------------------------------------------------

/// `{ "value": E.164 }`: the phone number identifier body, also used on its own
/// (`sourceAlternateIdentity`, `alternateCallerId`).
pub const PHONE_BODY: &[Field] = &[req("value", Ty::E164)];

/// The Teams clouds.
pub const TEAMS_CLOUDS: Enumeration = Enumeration {
    values: &["public", "dod", "gcch"],
    near_misses: &["Public", "DoD", "GCCH", "gov", "china", ""],
};

const COMMUNICATION_USER: &[Field] = &[req("id", ID)];
const TEAMS_USER: &[Field] = &[
    req("userId", ID),
    opt("isAnonymous", Ty::Bool),
    opt("cloud", Ty::Enum(&TEAMS_CLOUDS)),
];

/// One kind of CommunicationIdentifier: its property, and which field of it is the
/// participant id when the identifier has no `rawId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifierKind {
    /// The property (`communicationUser`), an object.
    pub name: &'static str,
    /// The fields of the object.
    pub fields: &'static [Field],
    /// The field that names the participant (`id`, `value`, `userId`).
    pub id: &'static str,
}

impl IdentifierKind {
    /// The kind's property as a field (optional: an identifier has only one kind).
    pub fn field(&self) -> Field {
        opt(self.name, Ty::Object(self.fields))
    }
}

/// The three kinds of CommunicationIdentifier, in the contract's order.
pub const IDENTIFIER_KINDS: [IdentifierKind; 3] = [
    IdentifierKind {
        name: "communicationUser",
        fields: COMMUNICATION_USER,
        id: "id",
    },
    IdentifierKind {
        name: "phoneNumber",
        fields: PHONE_BODY,
        id: "value",
    },
    IdentifierKind {
        name: "microsoftTeamsUser",
        fields: TEAMS_USER,
        id: "userId",
    },
];

/// The optional `rawId` of every identifier.
pub const RAW_ID: Field = opt("rawId", STRING);

/// The `participantId` of a (camelCase) identifier, as src/contract/CONTRACT.md
/// defines it: its `rawId` when given, otherwise its kind's id (`communicationUser.id`,
/// `phoneNumber.value`, `microsoftTeamsUser.userId`).
pub fn participant_id(identifier: &Value) -> Option<&str> {
    if let Some(raw) = identifier.get(RAW_ID.name).and_then(Value::as_str) {
        return Some(raw);
    }
    IDENTIFIER_KINDS
        .iter()
        .find_map(|k| identifier.get(k.name)?.get(k.id)?.as_str())
}

// ---- Requests ----------------------------------------------------------------------

/// `requestedModalities` items.
pub const MODALITIES: Enumeration = Enumeration {
    values: &["audio", "video"],
    near_misses: &[
        "Audio",
        "AUDIO",
        "Video",
        "voice",
        "screenShare",
        "audio ",
        "",
    ],
};

/// `requestedCallEvents` items.
pub const CALL_EVENTS: Enumeration = Enumeration {
    values: &["participantsUpdated", "dtmfReceived"],
    near_misses: &[
        "ParticipantsUpdated",
        "DtmfReceived",
        "participantsupdated",
        "toneReceived",
        "callEnded",
        "",
    ],
};

/// Create call.
pub const CREATE_CALL: &[Field] = &[
    req("source", Ty::Identifier),
    req(
        "targets",
        Ty::Array {
            items: &Ty::Identifier,
            non_empty: true,
            unique: false,
        },
    ),
    req("callbackUri", Ty::Uri),
    req(
        "requestedModalities",
        Ty::Array {
            items: &Ty::Enum(&MODALITIES),
            non_empty: true,
            unique: true,
        },
    ),
    req(
        "requestedCallEvents",
        Ty::Array {
            items: &Ty::Enum(&CALL_EVENTS),
            non_empty: false,
            unique: true,
        },
    ),
    opt("subject", STRING),
    opt("sourceAlternateIdentity", Ty::Object(PHONE_BODY)),
];

/// Hang up: an object body, when there is one, has no rules.
pub const HANGUP: &[Field] = &[];

/// Play audio.
pub const PLAY_AUDIO: &[Field] = &[
    req("audioFileUri", Ty::Uri),
    opt("loop", Ty::Bool),
    opt("operationContext", STRING),
    opt("resourceId", STRING),
];

/// Cancel media processing.
pub const CANCEL_MEDIA_PROCESSING: &[Field] = &[opt("operationContext", STRING)];

/// Invite participants.
pub const INVITE_PARTICIPANTS: &[Field] = &[
    req(
        "participants",
        Ty::Array {
            items: &Ty::Identifier,
            non_empty: true,
            unique: false,
        },
    ),
    opt("operationContext", STRING),
    opt("alternateCallerId", Ty::Object(PHONE_BODY)),
];

/// The request body fields of `e`; `None` when it ignores its body (remove participant).
pub fn request_fields(e: Endpoint) -> Option<&'static [Field]> {
    Some(match e {
        Endpoint::CreateCall => CREATE_CALL,
        Endpoint::Hangup => HANGUP,
        Endpoint::PlayAudio => PLAY_AUDIO,
        Endpoint::CancelMediaProcessing => CANCEL_MEDIA_PROCESSING,
        Endpoint::InviteParticipants => INVITE_PARTICIPANTS,
        Endpoint::RemoveParticipant => return None,
    })
}

// ---- Responses ---------------------------------------------------------------------

/// The media operation `status`.
pub const OPERATION_STATUSES: Enumeration = Enumeration {
    values: &["notStarted", "running", "completed", "failed"],
    near_misses: &["NotStarted", "Running", "Completed", "Failed", "done", ""],
};

/// `resultInfo` of a media operation.
pub const RESULT_INFO: &[Field] = &[
    req("code", Ty::Integer { min: None }),
    req("subcode", Ty::Integer { min: None }),
    req("message", STRING),
];

/// The create-call response (200).
pub const CALL_LEG: &[Field] = &[req("callLegId", ID)];

/// The media operation body of play audio and cancel media processing (202). Its
/// `operationContext` must also echo the request's, which the validator checks.
pub const MEDIA_OPERATION: &[Field] = &[
    req("id", ID),
    req("status", Ty::Enum(&OPERATION_STATUSES)),
    opt("operationContext", STRING),
    opt("resultInfo", Ty::Object(RESULT_INFO)),
];

/// The error body of every 4xx and 5xx.
pub const ERROR_BODY: &[Field] = &[req("code", ID), req("message", ID)];

/// The enumeration of a top-level property of a response body, if it has one
/// (`status` of the media operation).
pub fn response_enum(key: &str) -> Option<&'static Enumeration> {
    [CALL_LEG, MEDIA_OPERATION, ERROR_BODY]
        .into_iter()
        .flatten()
        .find_map(|f| match f.ty {
            Ty::Enum(e) if f.name == key => Some(e),
            _ => None,
        })
}

// ---- Events ------------------------------------------------------------------------

/// The envelope every event is sent in. `eventType` selects the `data` fields
/// ([`EVENTS`]); `subject` must be `callLeg/<CallLegId>/<kind>`, which the validator
/// checks beyond this table.
pub const EVENT_ENVELOPE: &[Field] = &[
    opt("id", STRING),
    opt("topic", STRING),
    req("subject", ID),
    req("data", Ty::Object(&[])),
    req("eventType", ID),
    req("eventTime", Ty::Timestamp),
    opt("metadataVersion", STRING),
    opt("dataVersion", STRING),
];

/// `CallState` of CallLegStateChanged.
pub const CALL_STATES: Enumeration = Enumeration {
    values: &["Establishing", "Established", "Terminating", "Terminated"],
    near_misses: &[
        "establishing",
        "Connected",
        "ESTABLISHED",
        "Disconnected",
        "",
    ],
};

/// `Tone` of DtmfReceived.
pub const TONES: Enumeration = Enumeration {
    values: &[
        "Tone0", "Tone1", "Tone2", "Tone3", "Tone4", "Tone5", "Tone6", "Tone7", "Tone8", "Tone9",
        "Star", "Pound", "A", "B", "C", "D", "Flash",
    ],
    near_misses: &["tone1", "1", "*", "#", "Hash", "E", "Tone10", ""],
};

/// `Status` of the result events.
pub const RESULT_STATUSES: Enumeration = Enumeration {
    values: &["Completed", "Failed"],
    near_misses: &["completed", "Running", "Succeeded", "FAILED", ""],
};

const CALL_LEG_ID: Field = req("CallLegId", ID);

const EVENT_RESULT_INFO: &[Field] = &[
    req("Code", Ty::Integer { min: None }),
    req("Subcode", Ty::Integer { min: None }),
    req("Message", STRING),
];

const PARTICIPANT: &[Field] = &[
    req("Identifier", Ty::Identifier),
    req("ParticipantId", ID),
    req("IsMuted", Ty::Bool),
];

const TONE_INFO: &[Field] = &[
    req("SequenceId", Ty::Integer { min: Some(0) }),
    req("Tone", Ty::Enum(&TONES)),
];

/// One event type: its short name, `eventType`, subject kind and `data` fields
/// (PascalCase; identifiers inside keep their shape with PascalCase keys).
#[derive(Debug, PartialEq, Eq)]
pub struct EventSchema {
    /// `CallLegStateChanged`.
    pub name: &'static str,
    /// `Microsoft.Communication.CallLegStateChanged`.
    pub event_type: &'static str,
    /// The last segment of `subject` (`callState`).
    pub subject_kind: &'static str,
    /// The fields of `data`.
    pub data: &'static [Field],
}

/// The five event types, in the order of src/contract/CONTRACT.md.
pub static EVENTS: [EventSchema; 5] = [
    EventSchema {
        name: "CallLegStateChanged",
        event_type: "Microsoft.Communication.CallLegStateChanged",
        subject_kind: "callState",
        data: &[
            CALL_LEG_ID,
            opt("ConversationId", STRING),
            req("CallState", Ty::Enum(&CALL_STATES)),
        ],
    },
    EventSchema {
        name: "ParticipantsUpdated",
        event_type: "Microsoft.Communication.ParticipantsUpdated",
        subject_kind: "participantsUpdated",
        data: &[
            CALL_LEG_ID,
            req(
                "Participants",
                Ty::Array {
                    items: &Ty::Object(PARTICIPANT),
                    non_empty: false,
                    unique: false,
                },
            ),
        ],
    },
    EventSchema {
        name: "DtmfReceived",
        event_type: "Microsoft.Communication.DtmfReceived",
        subject_kind: "dtmf",
        data: &[CALL_LEG_ID, req("ToneInfo", Ty::Object(TONE_INFO))],
    },
    EventSchema {
        name: "PlayAudioResult",
        event_type: "Microsoft.Communication.PlayAudioResult",
        subject_kind: "playAudio",
        data: &[
            CALL_LEG_ID,
            opt("OperationContext", STRING),
            req("Status", Ty::Enum(&RESULT_STATUSES)),
            req("ResultInfo", Ty::Object(EVENT_RESULT_INFO)),
        ],
    },
    EventSchema {
        name: "InviteParticipantResult",
        event_type: "Microsoft.Communication.InviteParticipantResult",
        subject_kind: "inviteParticipantResult",
        data: &[
            CALL_LEG_ID,
            opt("OperationContext", STRING),
            req("Status", Ty::Enum(&RESULT_STATUSES)),
            opt("ResultInfo", Ty::Object(EVENT_RESULT_INFO)),
            req(
                "Participants",
                Ty::Array {
                    items: &Ty::Identifier,
                    non_empty: true,
                    unique: false,
                },
            ),
        ],
    },
];

// ---- Looking up a site -------------------------------------------------------------

/// One step from an object or array to a value inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Into the property `name` (spelled in the site's case), which has type `ty`.
    Key {
        /// The property name.
        name: Cow<'static, str>,
        /// The property's type.
        ty: Ty,
        /// Which of [`IDENTIFIER_KINDS`] the property is, if it is one.
        identifier_kind: Option<usize>,
    },
    /// Into any item of an array whose items have type `ty`.
    Item {
        /// The items' type.
        ty: Ty,
    },
}

impl Step {
    /// The type of the value this step reaches.
    pub fn ty(&self) -> Ty {
        match self {
            Step::Key { ty, .. } | Step::Item { ty } => *ty,
        }
    }
}

/// Resolves a site pattern (`targets[*].phoneNumber.value`, `[*]` for any index) in
/// the object `fields` spelled in `case`: the steps to reach it, each with its type.
/// `None` when the table has no such site.
pub fn resolve(fields: &'static [Field], site: &str, case: Case) -> Option<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut cur = Ty::Object(fields);
    for token in site.split('.') {
        let (key, any) = match token.strip_suffix("[*]") {
            Some(k) => (k, true),
            None => (token, false),
        };
        let (field, identifier_kind) = lookup(cur, key, case)?;
        steps.push(Step::Key {
            name: case.key(field.name),
            ty: field.ty,
            identifier_kind,
        });
        cur = field.ty;
        if any {
            let Ty::Array { items, .. } = cur else {
                return None;
            };
            cur = *items;
            steps.push(Step::Item { ty: cur });
        }
    }
    Some(steps)
}

/// The field `key` of an object or identifier type, and which identifier kind it is.
fn lookup(ty: Ty, key: &str, case: Case) -> Option<(Field, Option<usize>)> {
    match ty {
        Ty::Object(fields) => fields
            .iter()
            .find(|f| case.key(f.name) == key)
            .map(|f| (*f, None)),
        Ty::Identifier => {
            if case.key(RAW_ID.name) == key {
                return Some((RAW_ID, None));
            }
            IDENTIFIER_KINDS
                .iter()
                .position(|k| case.key(k.name) == key)
                .map(|i| (IDENTIFIER_KINDS[i].field(), Some(i)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn participant_id_prefers_raw_id_then_the_kind_id() {
        let cases = [
            (
                json!({"rawId": "r", "communicationUser": {"id": "u"}}),
                Some("r"),
            ),
            (json!({"communicationUser": {"id": "u"}}), Some("u")),
            (json!({"phoneNumber": {"value": "+1425"}}), Some("+1425")),
            (json!({"microsoftTeamsUser": {"userId": "t"}}), Some("t")),
            (
                json!({"rawId": 3, "phoneNumber": {"value": "+1"}}),
                Some("+1"),
            ),
            (json!({"nothing": true}), None),
        ];
        for (v, want) in cases {
            assert_eq!(participant_id(&v), want, "{v}");
        }
    }

    #[test]
    fn sites_resolve_in_both_cases() {
        let steps = resolve(CREATE_CALL, "targets[*].phoneNumber.value", Case::Camel).unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[3].ty(), Ty::E164);
        assert!(matches!(
            steps[2],
            Step::Key {
                identifier_kind: Some(1),
                ..
            }
        ));
        let data = EVENTS[1].data;
        let steps = resolve(
            data,
            "Participants[*].Identifier.MicrosoftTeamsUser.Cloud",
            Case::Pascal,
        )
        .unwrap();
        assert_eq!(steps.last().unwrap().ty(), Ty::Enum(&TEAMS_CLOUDS));
        assert!(resolve(CREATE_CALL, "nope", Case::Camel).is_none());
        assert!(resolve(CREATE_CALL, "subject[*]", Case::Camel).is_none());
    }

    #[test]
    fn pascal_case_of_keys_and_values() {
        assert_eq!(Case::Pascal.key("rawId"), "RawId");
        assert_eq!(Case::Pascal.key("CallLegId"), "CallLegId");
        assert_eq!(Case::Camel.key("rawId"), "rawId");
        assert_eq!(
            Case::Pascal.convert(json!({"microsoftTeamsUser": {"userId": "u", "cloud": "dod"}})),
            json!({"MicrosoftTeamsUser": {"UserId": "u", "Cloud": "dod"}})
        );
    }

    #[test]
    fn the_response_enum_is_the_media_operation_status() {
        assert_eq!(response_enum("status"), Some(&OPERATION_STATUSES));
        assert_eq!(response_enum("code"), None);
    }
}
