//! Valid bodies at the sizes the contract allows beyond everyday traffic: identifier
//! arrays of dozens, hundreds and thousands of elements, long strings, and bodies just
//! under the 1 MiB limit built from many elements.
//!
//! A strategy of its own, so the load runner and `generate` keep typical sizes while
//! the gate adds a few cases of each size. Sizes are drawn near the top of a range but
//! shrink by binary search down to one element (or an empty string), and the elements
//! are derived from one seed, so a case that fails only beyond some size shrinks to
//! that size in a few dozen attempts, not one attempt per element.

use super::values;
use crate::contract::{Endpoint, MAX_BODY_BYTES};
use proptest::num::usize::BinarySearch;
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value;
use std::fmt;

/// Room left below [`MAX_BODY_BYTES`] by the near-limit bodies.
const NEAR_LIMIT_MARGIN: usize = 256;

/// A size class of [`valid_large`](super::valid_large) bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Identifier arrays of 6 to 99 elements.
    Dozens,
    /// Identifier arrays of 100 to 999 elements.
    Hundreds,
    /// A body within a few hundred bytes of 1 MiB: thousands of identifiers, or one
    /// string where the endpoint has no array.
    NearLimit,
    /// Free-text properties (`subject`, `operationContext`, `resourceId`) of 1,000 to
    /// 64,000 characters, multi-byte ones and escapes included.
    LongText,
}

impl Size {
    /// The stable label used in case names (`dozens`, `near-limit`, …).
    pub fn label(self) -> &'static str {
        match self {
            Size::Dozens => "dozens",
            Size::Hundreds => "hundreds",
            Size::NearLimit => "near-limit",
            Size::LongText => "long-text",
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The sizes `e` has large bodies of, in the order the gate runs them; none for hang
/// up (`{}` at most) and remove participant (no body).
pub fn sizes(e: Endpoint) -> &'static [Size] {
    match e {
        Endpoint::CreateCall | Endpoint::InviteParticipants => &[
            Size::Hundreds,
            Size::NearLimit,
            Size::Dozens,
            Size::LongText,
        ],
        Endpoint::PlayAudio | Endpoint::CancelMediaProcessing => &[Size::NearLimit, Size::LongText],
        Endpoint::Hangup | Endpoint::RemoveParticipant => &[],
    }
}

/// A count drawn from `draw` that shrinks by binary search towards `lo`.
#[derive(Debug, Clone)]
struct Count {
    lo: usize,
    draw: std::ops::RangeInclusive<usize>,
}

impl Strategy for Count {
    type Tree = BinarySearch;
    type Value = usize;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let start = self.draw.clone().new_tree(runner)?.current();
        Ok(BinarySearch::new_above(self.lo, start))
    }
}

fn count(lo: usize, draw: std::ops::RangeInclusive<usize>) -> Count {
    Count { lo, draw }
}

/// splitmix64: element `i` of a seeded array, without a random draw per element.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(items: &[T], h: u64) -> T {
    items[(h % items.len() as u64) as usize]
}

/// Identifier `i` of the array seeded by `seed`: ACS users, phone numbers from the
/// fiction ranges and Teams users in the proportions of [`values::identifier`].
fn identifier(seed: u64, i: usize) -> Value {
    let h = mix(seed, i as u64);
    let (a, b) = (mix(h, 1), mix(h, 2));
    let wide = (u128::from(a) << 64) | u128::from(b);
    let raw = h & 0x100 != 0;
    match h % 8 {
        0..=2 => values::user_value((pick(values::RESOURCES, a), wide), raw),
        3..=5 => values::phone_value((pick(values::PHONE_RANGES, a), b), raw),
        _ => values::teams_value(
            (
                wide,
                pick(values::ANONYMOUS, h >> 16),
                pick(values::clouds(), h >> 24),
            ),
            raw,
        ),
    }
}

/// `n` identifiers seeded by `seed`, cut so that they serialize to at most `budget`
/// bytes (commas included).
fn identifiers(seed: u64, n: usize, budget: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n.min(budget / 32 + 1));
    let mut used = 2;
    for i in 0..n {
        let v = identifier(seed, i);
        let len = serde_json::to_string(&v).map_or(0, |s| s.len()) + 1;
        if used + len > budget {
            break;
        }
        used += len;
        out.push(v);
    }
    out
}

/// Text of `n` characters (or, with `max_bytes`, at most that many UTF-8 bytes) from
/// the everyday subjects and tags, starting at a seeded point: multi-byte characters,
/// quotes, backslashes and control characters included.
fn text(seed: u64, n: usize, max_bytes: Option<usize>) -> String {
    let max_bytes = max_bytes.unwrap_or(usize::MAX);
    let pieces: Vec<(&str, usize)> = values::SUBJECTS
        .iter()
        .chain(values::CONTEXT_TAGS)
        .filter(|p| !p.is_empty())
        .map(|p| (*p, p.chars().count()))
        .collect();
    let mut out = String::with_capacity(max_bytes.min(n.saturating_mul(4)).min(MAX_BODY_BYTES));
    let (mut chars, mut k) = (0, seed);
    loop {
        let (piece, count) = pick(&pieces, k);
        k = k.wrapping_add(1);
        // Whole pieces while they fit, then the last one character by character.
        if chars + count < n && out.len() + piece.len() < max_bytes {
            out.push_str(piece);
            out.push(' ');
            chars += count + 1;
            continue;
        }
        for c in piece.chars() {
            if chars >= n || out.len() + c.len_utf8() > max_bytes {
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
}

/// The serialized size of `v`.
fn size_of(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// A near-limit body: `set(body, n)` puts `n` of something into `base`; `n` is cut
/// until the body fits under the margin (escapes make bytes hard to predict).
fn fit(mut base: Value, n: usize, set: impl Fn(&mut Value, usize)) -> Value {
    let limit = MAX_BODY_BYTES - NEAR_LIMIT_MARGIN;
    let mut n = n;
    loop {
        set(&mut base, n);
        let size = size_of(&base);
        if size <= limit || n == 0 {
            return base;
        }
        n = n.saturating_sub((size - limit).max(1));
    }
}

fn insert(body: &mut Value, key: &str, v: Value) {
    if let Value::Object(m) = body {
        m.insert(key.to_string(), v);
    }
}

/// A typical body of `e` with its identifier array `key` replaced by one of `size`.
fn with_array(body: BoxedStrategy<Value>, key: &'static str, size: Size) -> BoxedStrategy<Value> {
    let n = match size {
        Size::Dozens => count(1, 6..=99),
        Size::Hundreds => count(1, 100..=999),
        // More than fit: `identifiers` stops at the byte budget.
        _ => count(1, 40_000..=40_000),
    };
    // The size first: proptest shrinks a tuple left to right, and the size is what
    // a failure beyond some size depends on.
    (n, body, any::<u64>())
        .prop_map(move |(n, mut v, seed)| {
            insert(&mut v, key, Value::Array(Vec::new()));
            let budget = match size {
                Size::NearLimit => MAX_BODY_BYTES - NEAR_LIMIT_MARGIN - size_of(&v),
                _ => usize::MAX,
            };
            insert(&mut v, key, Value::Array(identifiers(seed, n, budget)));
            v
        })
        .boxed()
}

/// A typical body with the free-text property `key` replaced by a long one.
fn with_text(body: BoxedStrategy<Value>, key: &'static str, size: Size) -> BoxedStrategy<Value> {
    let n = match size {
        Size::NearLimit => count(0, MAX_BODY_BYTES..=MAX_BODY_BYTES),
        _ => count(0, 1_000..=64_000),
    };
    (n, body, any::<u64>())
        .prop_map(move |(n, v, seed)| match size {
            Size::NearLimit => fit(v, n, |b, n| {
                insert(b, key, Value::String(text(seed, usize::MAX, Some(n))));
            }),
            _ => {
                let mut v = v;
                insert(&mut v, key, Value::String(text(seed, n, None)));
                v
            }
        })
        .boxed()
}

/// Valid JSON bodies of `e` at `size`; `None` where `e` has no body of that size
/// (see [`sizes`]).
pub(super) fn body(e: Endpoint, size: Size) -> Option<BoxedStrategy<Value>> {
    if !sizes(e).contains(&size) {
        return None;
    }
    let array = matches!(size, Size::Dozens | Size::Hundreds | Size::NearLimit);
    Some(match e {
        Endpoint::CreateCall if array => with_array(values::create_call().boxed(), "targets", size),
        Endpoint::CreateCall => with_text(values::create_call().boxed(), "subject", size),
        Endpoint::InviteParticipants if array => {
            with_array(values::invite().boxed(), "participants", size)
        }
        Endpoint::InviteParticipants => {
            with_text(values::invite().boxed(), "operationContext", size)
        }
        Endpoint::PlayAudio if size == Size::LongText => {
            let long = with_text(values::play_audio().boxed(), "operationContext", size);
            (long, count(0, 1_000..=64_000), any::<u64>())
                .prop_map(|(mut v, n, seed)| {
                    insert(&mut v, "resourceId", Value::String(text(seed, n, None)));
                    v
                })
                .boxed()
        }
        Endpoint::PlayAudio => with_text(values::play_audio().boxed(), "operationContext", size),
        Endpoint::CancelMediaProcessing => {
            with_text(values::cancel_media().boxed(), "operationContext", size)
        }
        Endpoint::Hangup | Endpoint::RemoveParticipant => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn text_respects_characters_and_bytes() {
        let t = text(3, 1_000, None);
        assert_eq!(t.chars().count(), 1_000);
        let t = text(3, usize::MAX, Some(10_001));
        assert!(t.len() <= 10_001 && t.len() > 9_990, "{}", t.len());
        assert!(t.chars().any(|c| c.len_utf8() > 1));
    }

    #[test]
    fn near_limit_fits_under_the_margin() {
        let v = fit(Value::Object(Map::new()), MAX_BODY_BYTES, |b, n| {
            insert(b, "s", Value::String(text(1, usize::MAX, Some(n))));
        });
        let size = size_of(&v);
        assert!(size <= MAX_BODY_BYTES - NEAR_LIMIT_MARGIN, "{size}");
        assert!(size > MAX_BODY_BYTES - 4 * NEAR_LIMIT_MARGIN, "{size}");
        let ids = identifiers(9, 100_000, 50_000);
        let size = size_of(&Value::Array(ids.clone()));
        assert!(size <= 50_000 && size > 49_000, "{size}");
        assert!(ids.len() > 100, "{}", ids.len());
    }
}
