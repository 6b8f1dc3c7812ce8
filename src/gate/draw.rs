//! Which valid cases a run draws, in what order, and how each is drawn again for
//! shrinking: a seeded proptest runner per endpoint (and per large size), so the same
//! seed always draws the same cases.

use super::cases::{self, Case};
use crate::contract::Endpoint;
use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sha2::{Digest, Sha256};

/// Shrinking stops after this many attempts; each attempt is one or more requests.
const MAX_SHRINK_ITERS: u32 = 2000;

/// Shrinking one endpoint's case stops after this long (proptest's `max_shrink_time`).
const MAX_SHRINK_MS: u32 = 20_000;

fn rng_seed(seed: u64, endpoint: Endpoint, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!(
        "acs-harness gate {seed} {} {purpose}",
        endpoint.name()
    ));
    h.finalize().into()
}

/// The runner valid cases of `endpoint` are drawn from: seeded as `acs-harness generate
/// --seed` seeds, so `contract --seed 7` and `generate ENDPOINT --seed 7` draw the same
/// typical requests (each endpoint draws from its own runner, so `--only` keeps them).
pub(crate) fn case_runner(seed: u64, cases: u32) -> TestRunner {
    TestRunner::new_with_rng(config(cases), crate::generate::seeded_rng(seed))
}

fn runner_for(rng_seed: [u8; 32], cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        config(cases),
        TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed),
    )
}

/// Shrinking limits of the gate's runners (drawing does not depend on them).
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: MAX_SHRINK_ITERS,
        max_shrink_time: MAX_SHRINK_MS,
        ..Config::default()
    }
}

/// Large valid cases per size of an endpoint: one per size up to 100 cases, then one
/// more per hundred, at most three (each can be a body of 1 MiB).
fn large_rounds(cases: u32) -> usize {
    if cases == 0 {
        0
    } else {
        (cases as usize / 100).clamp(1, 3)
    }
}

/// How many large valid cases `endpoint` has in a run of `cases` typical ones; they
/// are numbered after the typical ones (`cases`, `cases + 1`, …).
fn large_count(endpoint: Endpoint, cases: u32) -> usize {
    crate::generate::sizes(endpoint).len() * large_rounds(cases)
}

/// Draws large case `k` of `endpoint`: its own runner (so it is drawn alone, again,
/// for shrinking) and its value tree.
pub(crate) fn draw_large(
    seed: u64,
    endpoint: Endpoint,
    cases: u32,
    k: usize,
) -> Option<(TestRunner, Box<dyn ValueTree<Value = Case>>)> {
    let sizes = crate::generate::sizes(endpoint);
    let size = *sizes.get(k % sizes.len().max(1))?;
    let round = k / sizes.len().max(1);
    let strategy = cases::valid_large(endpoint, size)?;
    let mut runner = runner_for(
        rng_seed(seed, endpoint, &format!("large {size} {round}")),
        cases,
    );
    let tree = strategy.new_tree(&mut runner).ok()?;
    Some((runner, Box::new(tree)))
}

/// Draws typical case `index` of `endpoint` again: the runner, advanced past it, and
/// its value tree.
pub(crate) fn draw_typical(
    seed: u64,
    endpoint: Endpoint,
    cases: u32,
    index: usize,
) -> Option<(TestRunner, Box<dyn ValueTree<Value = Case>>)> {
    let strategy = cases::valid(endpoint);
    let mut runner = case_runner(seed, cases);
    let mut tree = None;
    for _ in 0..=index {
        tree = Some(strategy.new_tree(&mut runner).ok()?);
    }
    let tree: Box<dyn ValueTree<Value = Case>> = Box::new(tree?);
    Some((runner, tree))
}

/// Whether case `index` of a run of `cases` typical ones is a large one.
pub(crate) fn is_large(index: usize, cases: u32) -> bool {
    index >= cases as usize
}

/// How valid case `index` is named in reports: `valid #3`, or for a large one
/// `valid #100 (large: near-limit)`.
pub(crate) fn case_label(endpoint: Endpoint, index: usize, cases: u32) -> String {
    if !is_large(index, cases) {
        return format!("valid #{index}");
    }
    let sizes = crate::generate::sizes(endpoint);
    match sizes.get((index - cases as usize) % sizes.len().max(1)) {
        Some(size) => format!("valid #{index} (large: {size})"),
        None => format!("valid #{index} (large)"),
    }
}

/// The valid cases of `endpoints` for `seed`, drawn one at a time as they are asked
/// for, so memory does not grow with `--cases`: the few large ones of every endpoint
/// first, then the typical ones round-robin over the endpoints (an interrupted run
/// has covered each). Items are `(endpoint, case index, case)`.
pub fn valid_cases(
    endpoints: &[Endpoint],
    seed: u64,
    cases: u32,
) -> impl Iterator<Item = (Endpoint, usize, Case)> {
    let large = endpoints
        .iter()
        .copied()
        .flat_map(move |e| (0..large_count(e, cases)).map(move |k| (e, k)))
        .filter_map(move |(e, k)| {
            let (_, tree) = draw_large(seed, e, cases, k)?;
            Some((e, cases as usize + k, tree.current()))
        });
    let mut typical: Vec<(Endpoint, BoxedStrategy<Case>, TestRunner)> = endpoints
        .iter()
        .map(|&e| (e, cases::valid(e), case_runner(seed, cases)))
        .collect();
    let typical = (0..cases as usize).flat_map(move |i| {
        let drawn: Vec<(Endpoint, usize, Case)> = typical
            .iter_mut()
            .filter_map(|(e, strategy, runner)| {
                let case = strategy.new_tree(runner).ok()?.current();
                Some((*e, i, case))
            })
            .collect();
        drawn
    });
    large.chain(typical)
}

/// The `count` typical valid cases of `endpoint` for `seed`, in order.
pub fn sample_valid(endpoint: Endpoint, seed: u64, count: u32) -> Vec<Case> {
    valid_cases(&[endpoint], seed, count)
        .filter(|(_, i, _)| !is_large(*i, count))
        .map(|(_, _, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_and_generate_draw_the_same_requests_for_a_seed() {
        for e in Endpoint::ALL {
            let gate: Vec<Option<Vec<u8>>> =
                sample_valid(e, 7, 20).into_iter().map(|c| c.body).collect();
            let generated: Vec<Option<Vec<u8>>> =
                crate::generate::sample(&crate::generate::valid(e), 7, 20)
                    .into_iter()
                    .map(|r| r.body)
                    .collect();
            assert_eq!(gate, generated, "{e}");
        }
    }

    #[test]
    fn valid_cases_are_drawn_on_demand() {
        // With four billion cases per endpoint, anything that drew them all first
        // would never get here. (These two endpoints have no large cases.)
        let two = [Endpoint::Hangup, Endpoint::RemoveParticipant];
        let first: Vec<(Endpoint, usize, Case)> = valid_cases(&two, 7, u32::MAX).take(6).collect();
        // Round-robin over the endpoints, so an interrupted run has covered each.
        let order: Vec<(Endpoint, usize)> = first.iter().map(|(e, i, _)| (*e, *i)).collect();
        let expected: Vec<(Endpoint, usize)> = (0..3)
            .flat_map(|i| two.iter().map(move |e| (*e, i)))
            .collect();
        assert_eq!(order, expected);
        // The typical cases are those `sample_valid` draws, whatever the count.
        let drawn: Vec<&Case> = first
            .iter()
            .filter(|(e, _, _)| *e == Endpoint::RemoveParticipant)
            .map(|(_, _, c)| c)
            .collect();
        let sample = sample_valid(Endpoint::RemoveParticipant, 7, 3);
        assert_eq!(drawn, sample.iter().collect::<Vec<_>>());
    }

    #[test]
    fn large_cases_come_first_and_redraw_the_same_for_shrinking() {
        let cases = 8;
        let drawn: Vec<(Endpoint, usize, Case)> =
            valid_cases(&[Endpoint::CreateCall], 7, cases).collect();
        assert_eq!(drawn.len(), 4 + 8);
        for (k, (e, i, case)) in drawn[..4].iter().enumerate() {
            assert_eq!(*i, cases as usize + k);
            let (_, tree) = draw_large(7, *e, cases, k).unwrap();
            assert_eq!(&tree.current(), case);
        }
        assert!(drawn[4..].iter().all(|(_, i, _)| !is_large(*i, cases)));
        // Typical cases are drawn again the same for shrinking too.
        let (_, tree) = draw_typical(7, Endpoint::CreateCall, cases, 2).unwrap();
        assert_eq!(tree.current(), drawn[4 + 2].2);
        // Near-limit comes second (see `generate::sizes`): a body close to 1 MiB.
        let near = drawn[1].2.body.as_ref().unwrap().len();
        assert!(near > crate::contract::MAX_BODY_BYTES - 2048, "{near}");
    }

    #[test]
    fn large_cases_per_size_and_labels() {
        assert_eq!(large_count(Endpoint::CreateCall, 0), 0);
        assert_eq!(large_count(Endpoint::CreateCall, 8), 4);
        assert_eq!(large_count(Endpoint::CreateCall, 100), 4);
        assert_eq!(large_count(Endpoint::PlayAudio, 250), 4);
        assert_eq!(large_count(Endpoint::InviteParticipants, 2_000_000), 12);
        assert_eq!(large_count(Endpoint::Hangup, 100), 0);
        assert_eq!(case_label(Endpoint::CreateCall, 3, 100), "valid #3");
        assert_eq!(
            case_label(Endpoint::CreateCall, 101, 100),
            "valid #101 (large: near-limit)"
        );
    }
}
