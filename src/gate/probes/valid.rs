//! Valid generated cases (`positive_acceptance`): drawn on a blocking thread as they
//! are needed, each sent with the set-up it needs; the first failing one of an
//! endpoint is remembered for shrinking.

use crate::contract::Endpoint;
use crate::gate::cases::Case;
use crate::gate::checks::{Check, Expect};
use crate::gate::draw::{case_label, is_large, valid_cases};
use crate::gate::engine::{Ctx, Failed, Outcome, Req};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Valid cases drawn ahead of the ones running.
const CASE_QUEUE: usize = 64;

/// Valid-case tasks alive at once, per request allowed in flight: enough to keep the
/// semaphore busy while set-up requests wait, few enough to bound memory.
const TASKS_PER_PERMIT: usize = 4;

/// Runs every valid case of the run on `set`; returns once the last is spawned (or the
/// run stops), the caller waits for `set`.
pub(crate) async fn run_all(ctx: &Ctx, pool: &[String], set: &mut JoinSet<()>) {
    let concurrency = ctx.s.sem.available_permits().max(1);
    // Valid cases are drawn on a blocking thread and handed over through a small
    // channel, and only so many run at once: memory stays the same whatever
    // `--cases` is, and drawing never holds up the task that watches for Ctrl-C.
    let (tx, mut rx) = tokio::sync::mpsc::channel(CASE_QUEUE);
    let (endpoints, seed, cases) = (ctx.s.endpoints.clone(), ctx.s.seed, ctx.s.cases);
    let producer = tokio::task::spawn_blocking(move || {
        for item in valid_cases(&endpoints, seed, cases) {
            // The receiver is gone: the run stopped.
            if tx.blocking_send(item).is_err() {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(concurrency * TASKS_PER_PERMIT));
    // Large cases (up to 1 MiB each way) go one at a time, so they neither crowd out
    // the small requests nor multiply the memory a run needs.
    let large_lane = Arc::new(Semaphore::new(1));
    let pool: Arc<[String]> = pool.into();
    while let Some((e, i, case)) = rx.recv().await {
        if ctx.stopped() {
            break;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (ctx, pool) = (ctx.clone(), pool.clone());
        let lane = is_large(i, cases).then(|| large_lane.clone());
        set.spawn(async move {
            let _permit = permit;
            let _lane = match lane {
                Some(lane) => match lane.acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                None => None,
            };
            if let Err((_, f)) = run_valid(&ctx, &pool, i, case).await
                && f.about_the_request
                && let Ok(mut first) = ctx.s.first_valid_failure.lock()
            {
                let slot = first.entry(e).or_insert(i);
                *slot = (*slot).min(i);
            }
        });
        // Finished tasks are reaped as we go, so the set stays small too.
        while set.try_join_next().is_some() {}
    }
    drop(rx);
    // The producer only waits on the channel just closed, so this returns at once.
    let _ = producer.await;
}

/// Runs one valid case with whatever set-up it needs; records it unless shrinking.
pub(crate) async fn run_valid(
    ctx: &Ctx,
    pool: &[String],
    index: usize,
    case: Case,
) -> Result<(), (Req, Failed)> {
    let e = case.endpoint;
    let label = case_label(e, index, ctx.s.cases);
    let expect = Expect::Success(case.operation_context());
    let check = Check::PositiveAcceptance;
    let not_run = |ctx: &Ctx, outcome: Outcome| {
        let f = ctx.setup_failed(check, e, &label, &expect, &outcome);
        (Req::of(&case, "{callId}"), f)
    };
    let (call, own_call) = match e {
        Endpoint::CreateCall => (String::new(), false),
        // Generated participant ids repeat (fiction ranges are small), so each remove
        // gets a call of its own: a concurrent case cannot remove its participant first.
        Endpoint::Hangup | Endpoint::RemoveParticipant => match ctx.create_call().await {
            Ok(c) => (c, true),
            Err(outcome) => return Err(not_run(ctx, outcome)),
        },
        // Thousands of invitees would evict the participants other cases invited
        // on a shared call (a service keeps a bounded list): a call of its own.
        Endpoint::InviteParticipants if is_large(index, ctx.s.cases) => {
            match ctx.create_call().await {
                Ok(c) => (c, true),
                Err(outcome) => return Err(not_run(ctx, outcome)),
            }
        }
        _ => match ctx.pool_call(pool, index).await {
            Ok(c) => (c, pool.is_empty()),
            Err(outcome) => return Err(not_run(ctx, outcome)),
        },
    };
    if e == Endpoint::RemoveParticipant
        && let Some(pid) = &case.participant_id
        && let Err(outcome) = ctx.invite(&call, pid).await
    {
        return Err(not_run(ctx, outcome));
    }
    let req = Req::of(&case, &call);
    let result = ctx.probe(check, &label, &req, &expect).await;
    if e == Endpoint::CreateCall
        && let Ok(Some(reply)) = &result
    {
        ctx.hang_up_created(reply).await;
    }
    if own_call && e != Endpoint::Hangup {
        ctx.hang_up(&call).await;
    }
    result.map(|_| ()).map_err(|f| (req, f))
}
