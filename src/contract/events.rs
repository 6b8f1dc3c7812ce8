//! The events the service sends to a call's `callbackUri` (src/contract/CONTRACT.md,
//! "Events"): the five event types and a validator for an event body. Their fields
//! live in the one table of [`super::schema`], beside the request bodies.

use super::Rule;
use super::schema::{self, Case, EVENT_ENVELOPE, EventSchema};
use super::validate::{Checker, Violation};
use serde_json::{Map, Value};
use std::fmt;

/// One of the five event types.
///
/// ```
/// use acs_harness::contract::events::EventType;
///
/// let t = EventType::from_event_type("Microsoft.Communication.DtmfReceived");
/// assert_eq!(t, Some(EventType::DtmfReceived));
/// assert_eq!(EventType::DtmfReceived.subject("leg-1"), "callLeg/leg-1/dtmf");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `Microsoft.Communication.CallLegStateChanged`
    CallLegStateChanged,
    /// `Microsoft.Communication.ParticipantsUpdated`
    ParticipantsUpdated,
    /// `Microsoft.Communication.DtmfReceived`
    DtmfReceived,
    /// `Microsoft.Communication.PlayAudioResult`
    PlayAudioResult,
    /// `Microsoft.Communication.InviteParticipantResult`
    InviteParticipantResult,
}

impl EventType {
    /// All five, in the order of src/contract/CONTRACT.md (and of [`schema::EVENTS`]).
    pub const ALL: [EventType; 5] = [
        EventType::CallLegStateChanged,
        EventType::ParticipantsUpdated,
        EventType::DtmfReceived,
        EventType::PlayAudioResult,
        EventType::InviteParticipantResult,
    ];

    /// The type's row of the schema table.
    pub fn schema(self) -> &'static EventSchema {
        &schema::EVENTS[self as usize]
    }

    /// The short name (`CallLegStateChanged`).
    pub fn name(self) -> &'static str {
        self.schema().name
    }

    /// The `eventType` of the envelope (`Microsoft.Communication.CallLegStateChanged`).
    pub fn event_type(self) -> &'static str {
        self.schema().event_type
    }

    /// The last segment of the envelope's `subject` (`callState`).
    pub fn subject_kind(self) -> &'static str {
        self.schema().subject_kind
    }

    /// Parses an envelope `eventType`; see [`EventType::event_type`].
    pub fn from_event_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.event_type() == s)
    }

    /// Parses a short name; see [`EventType::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The `subject` of this event type for a call: `callLeg/<callLegId>/<kind>`.
    pub fn subject(self, call_leg_id: &str) -> String {
        format!("callLeg/{call_leg_id}/{}", self.subject_kind())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Validates an event body: the envelope, the `data` of its `eventType` (PascalCase
/// keys), and a `subject` naming the event's kind and `data.CallLegId`. Returns the
/// event type, or every violation found, each at its JSON path (`data.ToneInfo.Tone`).
///
/// ```
/// use acs_harness::contract::events::{EventType, validate_event};
/// use serde_json::json;
///
/// let event = json!({
///     "id": null,
///     "topic": null,
///     "subject": "callLeg/leg-1/callState",
///     "data": {"CallLegId": "leg-1", "CallState": "Established"},
///     "eventType": "Microsoft.Communication.CallLegStateChanged",
///     "eventTime": "2026-01-02T03:04:05Z",
///     "metadataVersion": null,
///     "dataVersion": null,
/// });
/// assert_eq!(validate_event(&event), Ok(EventType::CallLegStateChanged));
///
/// let mut camel = event.clone();
/// camel["data"] = json!({"callLegId": "leg-1", "callState": "Established"});
/// let violations = validate_event(&camel).unwrap_err();
/// assert!(violations.iter().any(|v| v.path.starts_with("data.")));
/// ```
pub fn validate_event(body: &Value) -> Result<EventType, Vec<Violation>> {
    let Value::Object(obj) = body else {
        return Err(vec![Violation::new(
            "",
            Rule::NotObject,
            "an event must be a JSON object",
        )]);
    };
    let mut c = Checker::default();
    c.fields(obj, "", EVENT_ENVELOPE, Case::Camel);
    let event_type = match obj.get("eventType") {
        Some(Value::String(s)) if !s.is_empty() => {
            let t = EventType::from_event_type(s);
            if t.is_none() {
                let names: Vec<_> = EventType::ALL.map(EventType::event_type).to_vec();
                c.push(
                    "eventType",
                    Rule::UnknownEnumValue,
                    format!("{s:?} is not one of {}", names.join(", ")),
                );
            }
            t
        }
        _ => None,
    };
    if let (Some(t), Some(Value::Object(data))) = (event_type, obj.get("data")) {
        c.fields(data, "data", t.schema().data, Case::Pascal);
        pascal_keys(&mut c, data, "data");
        // An empty subject is reported by the table already.
        if let Some(Value::String(subject)) = obj.get("subject")
            && !subject.is_empty()
        {
            check_subject(&mut c, t, subject, data);
        }
    }
    c.finish()?;
    // Without a known event type the checker has reported it.
    event_type.ok_or_else(|| {
        vec![Violation::new(
            "eventType",
            Rule::UnknownEnumValue,
            "no known event type",
        )]
    })
}

/// Every key in `data`, at any depth, starts with an upper-case letter.
fn pascal_keys(c: &mut Checker, obj: &Map<String, Value>, path: &str) {
    for (k, v) in obj {
        let here = format!("{path}.{k}");
        if !k.starts_with(|ch: char| ch.is_ascii_uppercase()) {
            c.push(&here, Rule::KeyCase, "event data keys are PascalCase");
        }
        match v {
            Value::Object(m) => pascal_keys(c, m, &here),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        pascal_keys(c, m, &format!("{here}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// `subject` is `callLeg/<id>/<kind>` with the event's kind and `data.CallLegId`.
fn check_subject(c: &mut Checker, t: EventType, subject: &str, data: &Map<String, Value>) {
    let parsed = subject
        .strip_prefix("callLeg/")
        .and_then(|rest| rest.rsplit_once('/'))
        .filter(|(id, _)| !id.is_empty() && !id.contains('/'));
    // Compared only when `data.CallLegId` is itself valid (reported otherwise).
    let call_leg_id = data
        .get("CallLegId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let problem = match parsed {
        None => Some("is not callLeg/<callLegId>/<kind>".to_string()),
        Some((_, kind)) if kind != t.subject_kind() => Some(format!(
            "names the kind {kind:?}, but a {t} event is {:?}",
            t.subject_kind()
        )),
        Some((id, _)) if call_leg_id.is_some_and(|c| c != id) => {
            Some("names another call than data.CallLegId".to_string())
        }
        Some(_) => None,
    };
    if let Some(p) = problem {
        c.push("subject", Rule::BadSubject, format!("subject {p}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn play_audio_result() -> Value {
        // The envelope example of src/contract/CONTRACT.md, with its data filled in.
        json!({
            "id": "0f9c4c1e-5f43-4a8e-9b8e-2a1d3c4b5a69",
            "topic": null,
            "subject": "callLeg/511f3600-401f-4296-b6d0-b8da6f343b00/playAudio",
            "data": {
                "CallLegId": "511f3600-401f-4296-b6d0-b8da6f343b00",
                "OperationContext": "ivr-menu-1",
                "Status": "Completed",
                "ResultInfo": {"Code": 200, "Subcode": 0, "Message": "Action completed successfully."}
            },
            "eventType": "Microsoft.Communication.PlayAudioResult",
            "eventTime": "2021-05-05T20:38:22.0476663Z",
            "metadataVersion": null,
            "dataVersion": null
        })
    }

    fn errors(v: &Value) -> Vec<(String, Rule)> {
        validate_event(v)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.path, v.rule))
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(t));
            assert_eq!(EventType::from_event_type(t.event_type()), Some(t));
            assert_eq!(
                t.event_type(),
                format!("Microsoft.Communication.{}", t.name())
            );
        }
        assert_eq!(EventType::from_name("Nope"), None);
        assert_eq!(EventType::DtmfReceived.subject("abc"), "callLeg/abc/dtmf");
    }

    #[test]
    fn the_contract_example_validates() {
        assert_eq!(
            validate_event(&play_audio_result()),
            Ok(EventType::PlayAudioResult)
        );
    }

    #[test]
    fn dtmf_and_state_samples() {
        let dtmf = json!({
            "id": null,
            "subject": "callLeg/c1/dtmf",
            "data": {"CallLegId": "c1", "ToneInfo": {"SequenceId": 0, "Tone": "Pound"}},
            "eventType": "Microsoft.Communication.DtmfReceived",
            "eventTime": "2026-11-23T10:00:00+00:00"
        });
        assert_eq!(validate_event(&dtmf), Ok(EventType::DtmfReceived));
        let mut bad = dtmf.clone();
        bad["data"]["ToneInfo"]["Tone"] = json!("tone1");
        assert_eq!(
            errors(&bad),
            vec![("data.ToneInfo.Tone".into(), Rule::UnknownEnumValue)]
        );
        let mut bad = dtmf.clone();
        bad["data"]["ToneInfo"]["SequenceId"] = json!(-1);
        assert_eq!(
            errors(&bad),
            vec![("data.ToneInfo.SequenceId".into(), Rule::OutOfRange)]
        );
        let state = json!({
            "id": "e1",
            "subject": "callLeg/c1/callState",
            "data": {"CallLegId": "c1", "ConversationId": null, "CallState": "Establishing"},
            "eventType": "Microsoft.Communication.CallLegStateChanged",
            "eventTime": "2026-11-23T10:00:00Z"
        });
        assert_eq!(validate_event(&state), Ok(EventType::CallLegStateChanged));
    }

    #[test]
    fn envelope_rules() {
        let mut v = play_audio_result();
        v["eventTime"] = json!("2021-05-05T22:38:22+02:00");
        assert_eq!(errors(&v), vec![("eventTime".into(), Rule::BadTimestamp)]);
        let mut v = play_audio_result();
        v["subject"] = json!("callLeg/511f3600-401f-4296-b6d0-b8da6f343b00/dtmf");
        assert_eq!(errors(&v), vec![("subject".into(), Rule::BadSubject)]);
        let mut v = play_audio_result();
        v["subject"] = json!("callLeg/other/playAudio");
        assert_eq!(errors(&v), vec![("subject".into(), Rule::BadSubject)]);
        let mut v = play_audio_result();
        v["eventType"] = json!("Microsoft.Communication.CallEnded");
        assert_eq!(
            errors(&v),
            vec![("eventType".into(), Rule::UnknownEnumValue)]
        );
        let mut v = play_audio_result();
        v["id"] = json!(7);
        assert_eq!(errors(&v), vec![("id".into(), Rule::WrongType)]);
        let mut v = play_audio_result();
        v["data"]["callLegId"] = v["data"]["CallLegId"].clone();
        assert_eq!(errors(&v), vec![("data.callLegId".into(), Rule::KeyCase)]);
        assert_eq!(errors(&json!([])), vec![(String::new(), Rule::NotObject)]);
    }

    #[test]
    fn identifiers_in_data_are_pascal_case() {
        let v = json!({
            "subject": "callLeg/c1/participantsUpdated",
            "data": {"CallLegId": "c1", "Participants": [
                {"Identifier": {"RawId": "4:+14255550100", "PhoneNumber": {"Value": "+14255550100"}},
                 "ParticipantId": "4:+14255550100", "IsMuted": false},
                {"Identifier": {"MicrosoftTeamsUser": {"UserId": "u", "Cloud": "gov"}},
                 "ParticipantId": "u", "IsMuted": true}
            ]},
            "eventType": "Microsoft.Communication.ParticipantsUpdated",
            "eventTime": "2026-11-23T10:00:00Z"
        });
        assert_eq!(
            errors(&v),
            vec![(
                "data.Participants[1].Identifier.MicrosoftTeamsUser.Cloud".into(),
                Rule::UnknownEnumValue
            )]
        );
    }
}
