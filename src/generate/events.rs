//! Event generators: proptest strategies for valid event bodies of each of the five
//! event types (src/contract/CONTRACT.md, "Events"), and for invalid ones that carry
//! exactly one labelled defect, derived from the same schema table as the requests.
//! For tests of event validators and receivers.

use super::defect::{self, DefectClass, DefectKind, Picks, Planter};
use super::values;
use super::{Defect, fill};
use crate::contract::events::EventType;
use crate::contract::participant_id;
use crate::contract::schema::{self, Case, EVENT_ENVELOPE, Step, Ty};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Result infos of PlayAudioResult, by status: played, cancelled, failed.
const PLAY_RESULTS: &[(&str, i64, i64, &str)] = &[
    ("Completed", 200, 0, "Action completed successfully."),
    (
        "Completed",
        400,
        8508,
        "Action falied, the operation was cancelled.",
    ),
    (
        "Failed",
        400,
        8535,
        "Action failed, file format is invalid.",
    ),
    (
        "Failed",
        404,
        8536,
        "Action failed, file could not be downloaded.",
    ),
];

/// `Code`, `Subcode` and `Message` of a result info.
type ResultInfoParts = (i64, i64, &'static str);

/// Result infos of InviteParticipantResult (`None` sends `null`).
const INVITE_RESULTS: &[(&str, Option<ResultInfoParts>)] = &[
    ("Completed", None),
    (
        "Completed",
        Some((202, 0, "Action completed successfully.")),
    ),
    (
        "Failed",
        Some((403, 10006, "Participant declined the invitation.")),
    ),
];

/// `eventType` values that are not one of the five.
const BAD_EVENT_TYPES: &[&str] = &[
    "Microsoft.Communication.CallEnded",
    "Microsoft.Communication.ToneReceived",
    "microsoft.communication.callLegStateChanged",
    "CallLegStateChanged",
];

fn guid_value(n: u128) -> Value {
    Value::String(values::guid(n))
}

/// An RFC 3339 UTC time with 7 fractional digits, as the service writes it.
fn event_time(secs: i64, nanos: u32) -> String {
    // chrono has no 7-digit fraction (100 ns ticks, as .NET writes them); add it.
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| format!("{}.{:07}Z", t.format("%Y-%m-%dT%H:%M:%S"), nanos / 100))
        .unwrap_or_else(|| "2021-05-05T20:38:22.0476663Z".to_string())
}

fn result_info(code: i64, subcode: i64, message: &str) -> Value {
    let mut m = Map::new();
    m.insert("Code".into(), Value::from(code));
    m.insert("Subcode".into(), Value::from(subcode));
    m.insert("Message".into(), Value::String(message.into()));
    Value::Object(m)
}

/// The `data` of an event of type `t` for the call `call`, PascalCase.
fn data(t: EventType) -> BoxedStrategy<Map<String, Value>> {
    let context = (0u8..3, any::<u128>()).prop_map(|(k, id)| match k {
        0 => None,
        1 => Some(Value::Null),
        _ => Some(guid_value(id)),
    });
    match t {
        EventType::CallLegStateChanged => (select(schema::CALL_STATES.values), any::<u128>())
            .prop_map(|(state, conversation)| {
                let mut m = Map::new();
                // No conversation before the call is established.
                let conversation = match state {
                    "Establishing" => Value::Null,
                    _ => guid_value(conversation),
                };
                m.insert("ConversationId".into(), conversation);
                m.insert("CallState".into(), Value::String(state.into()));
                m
            })
            .boxed(),
        EventType::ParticipantsUpdated => {
            prop::collection::vec((values::identifier(), any::<bool>()), 0..=4)
                .prop_map(|list| {
                    let participants = list
                        .into_iter()
                        .map(|(identifier, muted)| {
                            let mut p = Map::new();
                            let id = participant_id(&identifier).unwrap_or_default().to_string();
                            p.insert("Identifier".into(), Case::Pascal.convert(identifier));
                            p.insert("ParticipantId".into(), Value::String(id));
                            p.insert("IsMuted".into(), Value::Bool(muted));
                            Value::Object(p)
                        })
                        .collect();
                    let mut m = Map::new();
                    m.insert("Participants".into(), Value::Array(participants));
                    m
                })
                .boxed()
        }
        EventType::DtmfReceived => (0u32..500, select(schema::TONES.values))
            .prop_map(|(sequence, tone)| {
                let mut info = Map::new();
                info.insert("SequenceId".into(), Value::from(sequence));
                info.insert("Tone".into(), Value::String(tone.into()));
                let mut m = Map::new();
                m.insert("ToneInfo".into(), Value::Object(info));
                m
            })
            .boxed(),
        EventType::PlayAudioResult => (select(PLAY_RESULTS), context)
            .prop_map(|((status, code, subcode, message), context)| {
                let mut m = Map::new();
                if let Some(c) = context {
                    m.insert("OperationContext".into(), c);
                }
                m.insert("Status".into(), Value::String(status.into()));
                m.insert("ResultInfo".into(), result_info(code, subcode, message));
                m
            })
            .boxed(),
        EventType::InviteParticipantResult => (
            select(INVITE_RESULTS),
            context,
            prop::collection::vec(values::identifier(), 1..=3),
        )
            .prop_map(|((status, info), context, invited)| {
                let mut m = Map::new();
                if let Some(c) = context {
                    m.insert("OperationContext".into(), c);
                }
                m.insert("Status".into(), Value::String(status.into()));
                let info = match info {
                    Some((code, subcode, message)) => result_info(code, subcode, message),
                    None => Value::Null,
                };
                m.insert("ResultInfo".into(), info);
                let invited = invited.into_iter().map(|i| Case::Pascal.convert(i));
                m.insert("Participants".into(), Value::Array(invited.collect()));
                m
            })
            .boxed(),
    }
}

/// Valid event bodies of type `t`: the envelope with a `subject` naming the call and
/// the kind, an RFC 3339 UTC `eventTime`, a string or `null` `id`, and valid `data`.
///
/// ```
/// use acs_harness::contract::events::{EventType, validate_event};
/// use acs_harness::generate::events::valid_event;
/// use proptest::strategy::{Strategy, ValueTree};
///
/// let mut runner = acs_harness::generate::runner(11);
/// for t in EventType::ALL {
///     let event = valid_event(t).new_tree(&mut runner).unwrap().current();
///     assert_eq!(validate_event(&event), Ok(t));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn valid_event(t: EventType) -> impl Strategy<Value = Value> + Clone {
    (
        any::<u128>(),
        (0u8..4, any::<u128>()),
        1_600_000_000i64..1_900_000_000,
        0u32..1_000_000_000,
        data(t),
    )
        .prop_map(move |(call, (id_kind, id), secs, nanos, data)| {
            let call = values::guid(call);
            let mut data_object = Map::new();
            data_object.insert("CallLegId".into(), Value::String(call.clone()));
            data_object.extend(data);
            let id = match id_kind {
                0 => Value::Null,
                _ => guid_value(id),
            };
            let mut m = Map::new();
            m.insert("id".into(), id);
            m.insert("topic".into(), Value::Null);
            m.insert("subject".into(), Value::String(t.subject(&call)));
            m.insert("data".into(), Value::Object(data_object));
            m.insert("eventType".into(), Value::String(t.event_type().into()));
            m.insert("eventTime".into(), Value::String(event_time(secs, nanos)));
            m.insert("metadataVersion".into(), Value::Null);
            m.insert("dataVersion".into(), Value::Null);
            Value::Object(m)
        })
}

/// Every defect class of an event of type `t`: the envelope's properties, the data's
/// (at `data.…`, PascalCase), an unknown `eventType`, a wrong `subject` and a
/// camelCase data key.
pub fn event_defect_classes(t: EventType) -> Vec<DefectClass> {
    let mut out = Vec::new();
    for f in EVENT_ENVELOPE {
        defect::field_classes(&mut out, f.name, f, Case::Camel);
    }
    for f in t.schema().data {
        defect::field_classes(&mut out, &format!("data.{}", f.name), f, Case::Pascal);
    }
    for (kind, site) in [
        (DefectKind::UnknownEnumValue, "eventType"),
        (DefectKind::BadSubject, "subject"),
        (DefectKind::KeyCase, "data"),
    ] {
        out.push(DefectClass {
            kind,
            site: site.into(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

/// The planter of an event class: envelope sites in camelCase, data sites in
/// PascalCase below the envelope's `data`.
fn planter(t: EventType, class: DefectClass) -> Planter {
    let special = matches!(class.kind, DefectKind::BadSubject | DefectKind::KeyCase)
        || (class.kind == DefectKind::UnknownEnumValue && class.site == "eventType");
    if special {
        return Planter::new(class, Vec::new(), Case::Camel);
    }
    let (steps, case) = match class.site.strip_prefix("data.") {
        Some(rest) => {
            let head = Step::Key {
                name: "data".into(),
                ty: Ty::Object(&[]),
                identifier_kind: None,
            };
            let tail = schema::resolve(t.schema().data, rest, Case::Pascal).unwrap_or_default();
            (std::iter::once(head).chain(tail).collect(), Case::Pascal)
        }
        None => (
            schema::resolve(EVENT_ENVELOPE, &class.site, Case::Camel).unwrap_or_default(),
            Case::Camel,
        ),
    };
    Planter::new(class, steps, case)
}

/// A `subject` that breaks the rule for an event of type `t` on `call`.
fn bad_subject(t: EventType, call: &str, variant: Index) -> String {
    let kind = t.subject_kind();
    match variant.index(6) {
        0 => {
            // The kind of the next event type.
            let i = EventType::ALL.iter().position(|x| *x == t).unwrap_or(0);
            let other = EventType::ALL[(i + 1) % EventType::ALL.len()];
            other.subject(call)
        }
        1 => format!("callLeg/{}/{kind}", values::guid(!0)),
        2 => format!("call/{call}/{kind}"),
        3 => call.to_string(),
        4 => format!("callLeg//{kind}"),
        _ => format!("callLeg/{call}/{kind}/extra"),
    }
}

/// Invalid event bodies of type `t`, each with exactly one defect, and its label
/// (`unknown-enum-value(data.ToneInfo.Tone)`, as [`Defect`] displays it).
///
/// ```
/// use acs_harness::contract::events::{EventType, validate_event};
/// use acs_harness::generate::events::invalid_event;
/// use proptest::strategy::{Strategy, ValueTree};
///
/// let mut runner = acs_harness::generate::runner(12);
/// for _ in 0..20 {
///     let (event, label) = invalid_event(EventType::DtmfReceived).new_tree(&mut runner).unwrap().current();
///     assert!(validate_event(&event).is_err(), "{label} was accepted");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn invalid_event(t: EventType) -> impl Strategy<Value = (Value, String)> {
    let planters: Vec<Arc<Planter>> = event_defect_classes(t)
        .into_iter()
        .map(|c| Arc::new(planter(t, c)))
        .collect();
    (
        select(planters),
        valid_event(t),
        fill(),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
    )
        .prop_map(move |(planter, mut v, fill, at, item, variant)| {
            let class = &planter.class;
            let call = v
                .pointer("/data/CallLegId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let path = match class.kind {
                DefectKind::BadSubject => {
                    v["subject"] = Value::String(bad_subject(t, &call, variant));
                    "subject".to_string()
                }
                DefectKind::KeyCase => {
                    // A camelCase copy of one data key, beside the right one.
                    let fields = t.schema().data;
                    let f = fields[variant.index(fields.len())];
                    let camel = format!("{}{}", f.name[..1].to_ascii_lowercase(), &f.name[1..]);
                    let copy = v["data"].get(f.name).cloned().unwrap_or(Value::Null);
                    if let Value::Object(d) = &mut v["data"] {
                        d.insert(camel.clone(), copy);
                    }
                    format!("data.{camel}")
                }
                DefectKind::UnknownEnumValue if class.site == "eventType" => {
                    let bad = BAD_EVENT_TYPES[variant.index(BAD_EVENT_TYPES.len())];
                    v["eventType"] = Value::String(bad.into());
                    "eventType".to_string()
                }
                _ => {
                    let picks = Picks { at, item, variant };
                    let path = defect::plant(&planter, &mut v, &fill, picks);
                    // A planted object (a wrong type, an identifier) keeps the data's
                    // PascalCase, so the defect stays the only one.
                    if let Some(d) = v.get_mut("data") {
                        *d = Case::Pascal.convert(d.take());
                    }
                    path
                }
            };
            let label = Defect {
                kind: class.kind,
                path,
            }
            .to_string();
            (v, label)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::events::validate_event;
    use crate::generate::runner;
    use proptest::strategy::ValueTree;

    #[test]
    fn every_valid_event_validates() {
        for t in EventType::ALL {
            let s = valid_event(t);
            let mut r = runner(40 + t as u64);
            for _ in 0..200 {
                let v = s.new_tree(&mut r).unwrap().current();
                assert_eq!(validate_event(&v), Ok(t), "{v}");
            }
        }
    }

    #[test]
    fn every_invalid_event_is_rejected_at_its_label() {
        for t in EventType::ALL {
            let s = invalid_event(t);
            let mut r = runner(50 + t as u64);
            let mut kinds = std::collections::BTreeSet::new();
            for _ in 0..400 {
                let (v, label) = s.new_tree(&mut r).unwrap().current();
                let defect: Defect = label.parse().unwrap();
                kinds.insert(defect.kind);
                let got: Vec<_> = match validate_event(&v) {
                    Ok(_) => panic!("{label} accepted: {v}"),
                    Err(errors) => errors.into_iter().map(|e| (e.rule, e.path)).collect(),
                };
                assert_eq!(got, vec![defect.expected()], "{label}: {v}");
            }
            assert!(kinds.contains(&DefectKind::BadSubject), "{t}: {kinds:?}");
        }
    }

    #[test]
    fn every_event_class_resolves_and_plants() {
        for t in EventType::ALL {
            for class in event_defect_classes(t) {
                let label = class.to_string();
                let p = planter(t, class);
                let special = p.class.kind == DefectKind::BadSubject
                    || p.class.kind == DefectKind::KeyCase
                    || p.class.site == "eventType";
                assert!(special || p.resolved(), "{t}: {label}");
            }
        }
        let dtmf: Vec<String> = event_defect_classes(EventType::DtmfReceived)
            .iter()
            .map(ToString::to_string)
            .collect();
        for want in [
            "unknown-enum-value(data.ToneInfo.Tone)",
            "out-of-range(data.ToneInfo.SequenceId)",
            "bad-timestamp(eventTime)",
            "missing-required(data.CallLegId)",
        ] {
            assert!(dtmf.iter().any(|l| l == want), "{want}: {dtmf:?}");
        }
    }
}
