//! Shrinking: the first valid case of an endpoint that failed on its request is drawn
//! again and minimised by proptest's runner against the target; the minimal case goes
//! first in its cell's failures.

use super::checks::Check;
use super::draw::{case_label, draw_large, draw_typical, is_large};
use super::engine::Ctx;
use super::probes::valid::run_valid;
use super::report::{Failure, MAX_FAILURES_PER_CELL};
use crate::contract::Endpoint;
use proptest::test_runner::{TestCaseError, TestError};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::task::JoinSet;

/// Shrinks the first failing valid case of every endpoint, at once, each on a blocking
/// thread, and puts each minimal case first in its cell.
pub(crate) async fn shrink_failures(ctx: &Ctx, pool: &[String]) {
    let failing: Vec<(Endpoint, usize)> = match ctx.s.first_valid_failure.lock() {
        Ok(f) => f.iter().map(|(e, i)| (*e, *i)).collect(),
        Err(_) => Vec::new(),
    };
    let handle = tokio::runtime::Handle::current();
    let mut shrinks = JoinSet::new();
    for (e, i) in failing {
        let (c, h, p) = (ctx.clone(), handle.clone(), pool.to_vec());
        shrinks.spawn_blocking(move || (e, shrink(&c, &h, &p, e, i)));
    }
    while let Some(done) = shrinks.join_next().await {
        if let Ok((e, Some(f))) = done {
            ctx.with_report(|r| {
                // The shrunk case goes first: it is the one worth reading.
                if let Some(cell) = r.cells.get_mut(&(e, Check::PositiveAcceptance)) {
                    cell.failures.insert(0, f);
                    cell.failures.truncate(MAX_FAILURES_PER_CELL);
                }
            });
        }
    }
}

/// Re-draws valid case `index` of `endpoint` and lets proptest's runner shrink it
/// against the target. Runs on a blocking thread; requests go through `handle`.
fn shrink(
    ctx: &Ctx,
    handle: &tokio::runtime::Handle,
    pool: &[String],
    endpoint: Endpoint,
    index: usize,
) -> Option<Failure> {
    let (seed, cases) = (ctx.s.seed, ctx.s.cases);
    let (mut runner, tree) = if is_large(index, cases) {
        draw_large(seed, endpoint, cases, index - cases as usize)?
    } else {
        draw_typical(seed, endpoint, cases, index)?
    };
    let original_len = tree.current().body.as_ref().map_or(0, Vec::len);
    let quiet = ctx.quiet();
    let attempts = AtomicUsize::new(0);
    let outcome = runner.run_one(tree, |case| {
        if quiet.stopped() {
            return Ok(());
        }
        attempts.fetch_add(1, Ordering::Relaxed);
        match handle.block_on(run_valid(&quiet, pool, index, case)) {
            Err((_, f)) if f.about_the_request => Err(TestCaseError::fail(f.mismatch.got)),
            // A failed set-up or a timeout says nothing about this body: shrinking
            // must not drift towards it.
            _ => Ok(()),
        }
    });
    let minimal = match outcome {
        Err(TestError::Fail(_, minimal)) => minimal,
        _ => return None,
    };
    // One more run of the minimal case, to report exactly what it gets.
    let (req, failed) = handle
        .block_on(run_valid(&quiet, pool, index, minimal.clone()))
        .err()?;
    let mut f = quiet.failure(
        Check::PositiveAcceptance,
        &req,
        &format!("{}, shrunk", case_label(endpoint, index, cases)),
        failed.mismatch,
    );
    f.shrunk = Some(format!(
        "{} attempts; body {} → {} bytes (replay the run with the seed to see the original)",
        attempts.load(Ordering::Relaxed),
        original_len,
        minimal.body.as_ref().map_or(0, Vec::len)
    ));
    Some(f)
}
