//! Strategies for the valid pieces of a request: identifiers, phone numbers, URIs,
//! free text and the five JSON bodies. Built from proptest combinators over fixed
//! tables (no regex strategies) so generation is fast and values shrink piecewise.

use crate::contract::schema::{CREATE_CALL, TEAMS_CLOUDS, Ty};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// A few ACS resource ids; real traffic reuses a handful of resources.
pub(super) const RESOURCES: &[&str] = &[
    "b6aada1f-0b1d-47ac-866f-91aae00a1d01",
    "0d6fe4a6-6e5e-4a0c-8e0b-3c8e0ea8a8b2",
    "5f2b1c3d-9a8e-4f7b-b6c5-d4e3f2a1b0c9",
    "e2a1b3c4-d5e6-4f70-8192-a3b4c5d6e7f8",
];

/// Phone numbers come only from ranges regulators reserve for fiction and drama, so a
/// gate or load run pointed at a real resource never rings a real person: a fixed
/// prefix (country code included) and how many free digits follow it. The `+999` rows
/// (a spare ITU code that routes nowhere) cover E.164's shortest and longest numbers.
pub(super) const PHONE_RANGES: &[(&str, u32)] = &[
    ("+142555501", 2), // US, NANP 555-0100..0199
    ("+120655501", 2), // US
    ("+121255501", 2), // US
    ("+141655501", 2), // Canada
    ("+447700900", 3), // UK mobile, Ofcom drama range
    ("+442079460", 3), // UK London, Ofcom drama range
    ("+6125550", 4),   // Australia, ACMA fiction range
    ("+3319900", 4),   // France, ARCEP fiction range
    ("+35320910", 4),  // Ireland, ComReg fiction range
    ("+467017406", 2), // Sweden, PTS fiction range
    ("+999", 1),       // shortest E.164 number: + and 4 digits
    ("+999", 12),      // longest: + and 15 digits
    ("+9991", 6),
];

/// Callback hosts, with scheme: public apps, Azure Functions, dev tunnels, IPs.
const CALLBACK_BASES: &[&str] = &[
    "https://contoso.com",
    "https://app.fabrikam.net",
    "https://func-acs-prod.azurewebsites.net",
    "https://callbacks.northwind.example.org:8443",
    "https://xn--mnchen-3ya.de",
    "https://10.20.30.40",
    "http://localhost:7071",
    "http://[::1]:5000",
    "https://a1b2c3d4.ngrok.io",
];

const CALLBACK_PATHS: &[&str] = &[
    "/api/callbacks",
    "/api/incomingCall",
    "/events",
    "/calling/events/v1",
    "/webhooks/acs",
    "/",
    "/Gr%C3%BC%C3%9Fe/callback",
];

/// Query templates, empty for none; `{id}` becomes a GUID.
const CALLBACK_QUERIES: &[&str] = &[
    "",
    "",
    "",
    "",
    "?callerId={id}",
    "?code=Zm9vYmFy{id}&tenant=contoso",
    "?context={id}&retry=1",
    "?x-ms-routing=eu%20west",
];

const AUDIO_BASES: &[&str] = &[
    "https://acsmedia.blob.core.windows.net/audio",
    "https://cdn.contoso.com/prompts/de-DE",
    "https://storage.fabrikam.net/ivr",
    "http://localhost:8080/media",
];

const AUDIO_NAMES: &[&str] = &[
    "welcome",
    "hold-music",
    "prompt_1",
    "goodbye",
    "menu/main",
    "Ansage%20Feiertag",
];

const AUDIO_QUERIES: &[&str] = &[
    "",
    "",
    "?sv=2020-08-04&sr=b&sig=abc%2Bdef%3D&se=2026-01-01T00%3A00%3A00Z",
    "?v={id}",
];

pub(super) const SUBJECTS: &[&str] = &[
    "Daily stand-up",
    "Grüße aus München",
    "Rückfrage zur Bestellung Nr.",
    "Besprechung: Quartalsabschluss (ÄÖÜ äöü ß)",
    "项目评审会议",
    "電話会議のお知らせ",
    "고객 지원",
    "📞 Support call",
    "Rückruf erbeten 🙏",
    "Escalation \"P1\" – db\\prod",
    "line one\nline two\ttab",
    "",
];

pub(super) const CONTEXT_TAGS: &[&str] = &[
    "play-welcome",
    "ivr-menu",
    "hold",
    "übergabe",
    "播放",
    "retry 🎵",
];

const RESOURCE_TAGS: &[&str] = &["welcome-prompt", "hold-music-v2", "menu-de-DE"];

/// The arrays of unique enum items a create-call body draws `field` from: `[]` when the
/// table allows an empty array, each value alone, then every ordered pair (for the
/// contract's two-value enumerations, every unique subset in every order).
fn unique_sets(
    field: &str,
    cache: &'static OnceLock<Vec<Vec<&'static str>>>,
) -> Vec<&'static [&'static str]> {
    let sets = cache.get_or_init(|| {
        let mut out: Vec<Vec<&'static str>> = Vec::new();
        let Some(Ty::Array {
            items: Ty::Enum(e),
            non_empty,
            ..
        }) = CREATE_CALL.iter().find(|f| f.name == field).map(|f| f.ty)
        else {
            return out;
        };
        if !non_empty {
            out.push(Vec::new());
        }
        out.extend(e.values.iter().map(|v| vec![*v]));
        for (i, a) in e.values.iter().enumerate() {
            for (j, b) in e.values.iter().enumerate() {
                if i != j {
                    out.push(vec![*a, *b]);
                }
            }
        }
        out
    });
    sets.iter().map(Vec::as_slice).collect()
}

fn modality_sets() -> Vec<&'static [&'static str]> {
    static SETS: OnceLock<Vec<Vec<&'static str>>> = OnceLock::new();
    unique_sets("requestedModalities", &SETS)
}

fn event_sets() -> Vec<&'static [&'static str]> {
    static SETS: OnceLock<Vec<Vec<&'static str>>> = OnceLock::new();
    unique_sets("requestedCallEvents", &SETS)
}

/// Formats a 128-bit number as a lower-case GUID.
pub(crate) fn guid(n: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (n >> 96) as u32,
        (n >> 80) as u16,
        (n >> 64) as u16,
        (n >> 48) as u16,
        n & 0xffff_ffff_ffff
    )
}

// Hot-path note: proptest's unions (`prop_oneof!`, `prop::option::of`) clone the test
// runner and seed a fresh ChaCha RNG for every option before the one picked, which
// dominated generation time. Choices are therefore drawn as small integers in tuples
// and the value built in `prop_map`; an integer still shrinks towards the first choice.

/// Raw parts of a communication user id: resource and user GUID.
type UserParts = (&'static str, u128);
/// Raw parts of a phone number: range entry and the seed of its free digits.
type PhoneParts = ((&'static str, u32), u64);
/// Raw parts of a Teams user: user GUID, `isAnonymous`, `cloud`.
type TeamsParts = (u128, Option<bool>, Option<&'static str>);

pub(super) const ANONYMOUS: &[Option<bool>] = &[None, Some(false), Some(true)];
/// `cloud` of a Teams user: absent, or one of the table's clouds.
pub(super) fn clouds() -> &'static [Option<&'static str>] {
    static CLOUDS: OnceLock<Vec<Option<&'static str>>> = OnceLock::new();
    CLOUDS.get_or_init(|| {
        std::iter::once(None)
            .chain(TEAMS_CLOUDS.values.iter().copied().map(Some))
            .collect()
    })
}

fn user_parts() -> impl Strategy<Value = UserParts> + Clone {
    (select(RESOURCES), any::<u128>())
}

fn phone_parts() -> impl Strategy<Value = PhoneParts> + Clone {
    (select(PHONE_RANGES), any::<u64>())
}

fn teams_parts() -> impl Strategy<Value = TeamsParts> + Clone {
    (any::<u128>(), select(ANONYMOUS), select(clouds()))
}

/// `8:acs:<resource>_<user>`, the id ACS identity issues.
fn user_id((resource, user): UserParts) -> String {
    format!("8:acs:{resource}_{}", guid(user))
}

/// An E.164 number from a range reserved for fiction (see [`PHONE_RANGES`]).
fn e164_of(((prefix, free), n): PhoneParts) -> String {
    let digits = n % 10u64.pow(free);
    format!("{prefix}{digits:0width$}", width = free as usize)
}

/// An E.164 number that looks real but is reserved for fiction.
pub(crate) fn e164() -> impl Strategy<Value = String> + Clone {
    phone_parts().prop_map(e164_of)
}

fn object(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub(super) fn user_value(parts: UserParts, raw: bool) -> Value {
    let id = user_id(parts);
    let mut m = Map::new();
    if raw {
        m.insert("rawId".into(), Value::String(id.clone()));
    }
    m.insert(
        "communicationUser".into(),
        object([("id", Value::String(id))]),
    );
    Value::Object(m)
}

pub(super) fn phone_value(parts: PhoneParts, raw: bool) -> Value {
    let v = e164_of(parts);
    let mut m = Map::new();
    if raw {
        m.insert("rawId".into(), Value::String(format!("4:{v}")));
    }
    m.insert("phoneNumber".into(), object([("value", Value::String(v))]));
    Value::Object(m)
}

pub(super) fn teams_value((id, anonymous, cloud): TeamsParts, raw: bool) -> Value {
    let user_id = guid(id);
    let mut teams = Map::new();
    teams.insert("userId".into(), Value::String(user_id.clone()));
    if let Some(a) = anonymous {
        teams.insert("isAnonymous".into(), Value::Bool(a));
    }
    if let Some(c) = cloud {
        teams.insert("cloud".into(), Value::String(c.into()));
    }
    let mut m = Map::new();
    m.insert("microsoftTeamsUser".into(), Value::Object(teams));
    if raw {
        // The raw id prefix follows the cloud the way the SDKs build it.
        let prefix = match (anonymous, cloud) {
            (Some(true), _) => "8:teamsvisitor:",
            (_, Some("dod")) => "8:dod:",
            (_, Some("gcch")) => "8:gcch:",
            _ => "8:orgid:",
        };
        m.insert("rawId".into(), Value::String(format!("{prefix}{user_id}")));
    }
    Value::Object(m)
}

/// A `communicationUser` identifier, sometimes with its `rawId`.
pub(crate) fn communication_user() -> impl Strategy<Value = Value> + Clone {
    (user_parts(), any::<bool>()).prop_map(|(p, raw)| user_value(p, raw))
}

/// `{ "value": E.164 }`, the phone number body.
pub(crate) fn phone_body() -> impl Strategy<Value = Value> + Clone {
    e164().prop_map(|v| object([("value", Value::String(v))]))
}

/// A `phoneNumber` identifier, sometimes with its `rawId` (`4:+...`).
pub(crate) fn phone_number() -> impl Strategy<Value = Value> + Clone {
    (phone_parts(), any::<bool>()).prop_map(|(p, raw)| phone_value(p, raw))
}

/// A `microsoftTeamsUser` identifier with or without `cloud` and `isAnonymous`.
pub(crate) fn teams_user() -> impl Strategy<Value = Value> + Clone {
    (teams_parts(), any::<bool>()).prop_map(|(p, raw)| teams_value(p, raw))
}

/// Any identifier; the kind is drawn with weights `[user, phone, teams]`.
fn identifier_weighted(weights: [u8; 3]) -> impl Strategy<Value = Value> + Clone {
    let [u, p, t] = weights;
    (
        0..u + p + t,
        user_parts(),
        phone_parts(),
        teams_parts(),
        any::<bool>(),
    )
        .prop_map(move |(k, user, phone, teams, raw)| {
            if k < u {
                user_value(user, raw)
            } else if k < u + p {
                phone_value(phone, raw)
            } else {
                teams_value(teams, raw)
            }
        })
}

/// Any identifier, weighted towards ACS users and phone numbers as in real calls.
pub(crate) fn identifier() -> impl Strategy<Value = Value> + Clone {
    identifier_weighted([3, 3, 2])
}

/// A participant id as it appears in a remove-participant path.
pub(crate) fn participant_id() -> impl Strategy<Value = String> + Clone {
    (0u8..5, user_parts(), phone_parts(), any::<u128>()).prop_map(|(k, user, phone, id)| match k {
        0 => user_id(user),
        1 => e164_of(phone),
        2 => format!("4:{}", e164_of(phone)),
        3 => guid(id),
        _ => format!("8:orgid:{}", guid(id)),
    })
}

fn fill_id(template: &str, id: u128) -> String {
    if template.contains("{id}") {
        template.replace("{id}", &guid(id))
    } else {
        template.to_string()
    }
}

/// An absolute callback URI with a path and sometimes a query.
pub(crate) fn callback_uri() -> impl Strategy<Value = String> + Clone {
    (
        select(CALLBACK_BASES),
        select(CALLBACK_PATHS),
        select(CALLBACK_QUERIES),
        any::<u128>(),
    )
        .prop_map(|(base, path, query, id)| format!("{base}{path}{}", fill_id(query, id)))
}

/// An absolute URI of a WAV file, sometimes with a SAS-like query.
pub(crate) fn audio_uri() -> impl Strategy<Value = String> + Clone {
    (
        select(AUDIO_BASES),
        select(AUDIO_NAMES),
        select(AUDIO_QUERIES),
        any::<u128>(),
    )
        .prop_map(|(base, name, query, id)| format!("{base}/{name}.wav{}", fill_id(query, id)))
}

fn subject() -> impl Strategy<Value = String> + Clone {
    (select(SUBJECTS), 0u32..20_000).prop_map(|(s, n)| {
        // Half the subjects carry a number, as generated meeting titles do.
        if n < 10_000 {
            s.to_string()
        } else {
            format!("{s} {}", n - 10_000)
        }
    })
}

fn operation_context() -> impl Strategy<Value = String> + Clone {
    (0u8..5, any::<u128>(), select(CONTEXT_TAGS), 0u32..1000).prop_map(|(k, id, tag, n)| match k {
        0 | 1 => guid(id),
        2 | 3 => format!("{tag}-{n}"),
        _ => String::new(),
    })
}

fn resource_id() -> impl Strategy<Value = String> + Clone {
    (any::<bool>(), any::<u128>(), select(RESOURCE_TAGS)).prop_map(|(named, id, tag)| {
        if named { tag.to_string() } else { guid(id) }
    })
}

/// An optional property: absent (`None`), explicitly `null` (which means absent), or a value.
fn optional<S>(s: S) -> impl Strategy<Value = Option<Value>> + Clone
where
    S: Strategy<Value = Value> + Clone,
{
    (0u8..10, s).prop_map(|(k, v)| match k {
        0..=3 => None,
        4 => Some(Value::Null),
        _ => Some(v),
    })
}

fn string_value<S: Strategy<Value = String> + Clone>(s: S) -> impl Strategy<Value = Value> + Clone {
    s.prop_map(Value::String)
}

fn string_array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String((*s).into())).collect())
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

/// A valid create-call body.
pub(crate) fn create_call() -> impl Strategy<Value = Value> + Clone {
    (
        identifier_weighted([12, 2, 1]),
        prop::collection::vec(identifier(), 1..=5),
        callback_uri(),
        select(modality_sets()),
        select(event_sets()),
        optional(string_value(subject())),
        optional(phone_body()),
    )
        .prop_map(
            |(source, targets, callback, modalities, events, subj, alt)| {
                let mut m = Map::new();
                m.insert("source".into(), source);
                m.insert("targets".into(), Value::Array(targets));
                m.insert("callbackUri".into(), Value::String(callback));
                m.insert("requestedModalities".into(), string_array(modalities));
                m.insert("requestedCallEvents".into(), string_array(events));
                put(&mut m, "subject", subj);
                put(&mut m, "sourceAlternateIdentity", alt);
                Value::Object(m)
            },
        )
}

/// A valid play-audio body.
pub(crate) fn play_audio() -> impl Strategy<Value = Value> + Clone {
    (
        audio_uri(),
        optional(any::<bool>().prop_map(Value::Bool)),
        optional(string_value(operation_context())),
        optional(string_value(resource_id())),
    )
        .prop_map(|(uri, looped, ctx, res)| {
            let mut m = Map::new();
            m.insert("audioFileUri".into(), Value::String(uri));
            put(&mut m, "loop", looped);
            put(&mut m, "operationContext", ctx);
            put(&mut m, "resourceId", res);
            Value::Object(m)
        })
}

/// A valid cancel-media-processing body (possibly `{}`).
pub(crate) fn cancel_media() -> impl Strategy<Value = Value> + Clone {
    optional(string_value(operation_context())).prop_map(|ctx| {
        let mut m = Map::new();
        put(&mut m, "operationContext", ctx);
        Value::Object(m)
    })
}

/// A valid invite-participants body.
pub(crate) fn invite() -> impl Strategy<Value = Value> + Clone {
    (
        prop::collection::vec(identifier(), 1..=4),
        optional(string_value(operation_context())),
        optional(phone_body()),
    )
        .prop_map(|(participants, ctx, alt)| {
            let mut m = Map::new();
            m.insert("participants".into(), Value::Array(participants));
            put(&mut m, "operationContext", ctx);
            put(&mut m, "alternateCallerId", alt);
            Value::Object(m)
        })
}

/// The valid hang-up object body, `{}`.
pub(crate) fn hangup() -> impl Strategy<Value = Value> + Clone {
    Just(Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::is_e164;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn unique_sets_are_every_order_of_every_subset() {
        let m: Vec<_> = modality_sets().iter().map(|s| s.join(",")).collect();
        assert_eq!(m, ["audio", "video", "audio,video", "video,audio"]);
        let e: Vec<_> = event_sets().iter().map(|s| s.join(",")).collect();
        assert_eq!(e[0], "", "requestedCallEvents may be empty");
        assert_eq!(e.len(), 5);
        assert_eq!(clouds(), [None, Some("public"), Some("dod"), Some("gcch")]);
    }

    #[test]
    fn phone_numbers_are_e164_from_fiction_ranges_of_every_length_edge() {
        let mut runner = TestRunner::deterministic();
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let n = e164().new_tree(&mut runner).unwrap().current();
            assert!(is_e164(&n), "{n}");
            assert!(PHONE_RANGES.iter().any(|(p, _)| n.starts_with(p)), "{n}");
            lengths.insert(n.len() - 1);
        }
        assert!(lengths.contains(&4) && lengths.contains(&15), "{lengths:?}");
        assert!(lengths.len() >= 5, "{lengths:?}");
    }
}
