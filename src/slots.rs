//! Connection slots for the harness's HTTP servers (the double, its control API, the
//! event receiver): a bound on open keep-alive connections, a smaller reserve of
//! single-request connections beyond it, and, when both are used up, the closing of
//! connections that have sat idle for a while.
//!
//! A plain bound starves its own clients: an HTTP client running a thousand calls at
//! once opens more connections than it uses (a request waiting for a new connection
//! takes an idle one that came free instead, and the new one joins the client's pool),
//! so connections beyond the bound wait in the listen queue until a keep-alive
//! connection idles out 30 s later, with a request already written on them.
//! - Beyond the bound a connection is still accepted, answered once with
//!   `Connection: close` and closed: its client is served at once.
//! - When the reserve is used up too, connections idle for [`IDLE_BEFORE_RECLAIM`] are
//!   closed. Not the ones idle for less: a client writes its next request on a
//!   connection it just got back, and a POST that meets a closing socket is lost.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
// Tokio's clock, so that a test can pause it.
use tokio::time::Instant;

/// How long a connection must have been idle to be closed for room.
pub(crate) const IDLE_BEFORE_RECLAIM: Duration = Duration::from_secs(1);

/// While every slot is taken, idle connections are asked this often to close (one
/// idle for too short a time at one ask may qualify at the next).
const RECLAIM_INTERVAL: Duration = Duration::from_millis(100);

/// The slots of one server.
pub(crate) struct Slots {
    keep: Arc<Semaphore>,
    single: Arc<Semaphore>,
    single_max: usize,
    // Bumped to ask connections idle long enough to close.
    reclaim: watch::Sender<u64>,
    epoch: Instant,
}

impl Slots {
    /// At most `max` keep-alive connections, and a quarter as many (at least 8) more
    /// that answer a single request each.
    pub(crate) fn new(max: usize) -> Slots {
        let max = max.max(1);
        let single_max = (max / 4).max(8);
        Slots {
            keep: Arc::new(Semaphore::new(max)),
            single: Arc::new(Semaphore::new(single_max)),
            single_max,
            reclaim: watch::channel(0).0,
            epoch: Instant::now(),
        }
    }

    /// The number of single-request slots beyond the keep-alive bound.
    pub(crate) fn single(&self) -> usize {
        self.single_max
    }

    /// A free slot now, if there is one: keep-alive first.
    pub(crate) fn try_acquire(&self) -> Option<Slot> {
        if let Ok(p) = Arc::clone(&self.keep).try_acquire_owned() {
            return Some(self.slot(p, true));
        }
        let p = Arc::clone(&self.single).try_acquire_owned().ok()?;
        Some(self.slot(p, false))
    }

    /// Waits for a free slot of either kind, meanwhile asking connections idle for
    /// [`IDLE_BEFORE_RECLAIM`] to close. `None` only if the slots were closed.
    pub(crate) async fn acquire(&self) -> Option<Slot> {
        if let Some(slot) = self.try_acquire() {
            return Some(slot);
        }
        let mut keep = pin!(Arc::clone(&self.keep).acquire_owned());
        let mut single = pin!(Arc::clone(&self.single).acquire_owned());
        loop {
            self.reclaim.send_modify(|g| *g = g.wrapping_add(1));
            tokio::select! {
                p = keep.as_mut() => return p.ok().map(|p| self.slot(p, true)),
                p = single.as_mut() => return p.ok().map(|p| self.slot(p, false)),
                () = tokio::time::sleep(RECLAIM_INTERVAL) => {}
            }
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit, keep_alive: bool) -> Slot {
        let mut reclaim = self.reclaim.subscribe();
        // Asks made before this connection opened do not concern it.
        reclaim.mark_unchanged();
        let busy = Busy(Arc::new(BusyState {
            epoch: self.epoch,
            answering: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(millis_since(self.epoch)),
        }));
        Slot {
            _permit: permit,
            keep_alive,
            reclaim,
            busy,
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One open connection's slot; freed when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    keep_alive: bool,
    reclaim: watch::Receiver<u64>,
    busy: Busy,
}

impl Slot {
    /// Whether the connection may serve further requests; a reserve slot serves one.
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The connection's count of requests being answered, for its service.
    pub(crate) fn busy(&self) -> Busy {
        self.busy.clone()
    }

    /// Resolves when the server is out of slots while this connection has been idle
    /// for [`IDLE_BEFORE_RECLAIM`].
    async fn reclaimed(&mut self) {
        loop {
            if self.reclaim.changed().await.is_err() {
                // The server is gone; its own shutdown ends the connection.
                std::future::pending::<()>().await;
            }
            if self.busy.idle_for() >= IDLE_BEFORE_RECLAIM {
                return;
            }
        }
    }

    /// Serves `conn` until it ends; when `stop` resolves it is shut down gracefully (an
    /// answer being written is finished first); when the slot is reclaimed it is closed.
    pub(crate) async fn drive<I, S, B>(
        mut self,
        conn: hyper::server::conn::http1::Connection<I, S>,
        stop: impl Future<Output = ()>,
    ) where
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
        B: hyper::body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut conn = pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = stop => {}
            // Dropped, not shut down gracefully: hyper waits for a first request on a
            // connection that never sent one, and one idle this long has no answer
            // left to write.
            () = self.reclaimed() => return,
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

struct BusyState {
    epoch: Instant,
    answering: AtomicUsize,
    idle_since_ms: AtomicU64,
}

/// The requests of one connection being answered, shared with its service.
#[derive(Clone)]
pub(crate) struct Busy(Arc<BusyState>);

impl Busy {
    /// Marks a request as being answered until the guard drops.
    pub(crate) fn enter(&self) -> BusyGuard {
        self.0.answering.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// Zero while a request is being answered; else the time since the last one ended.
    fn idle_for(&self) -> Duration {
        if self.0.answering.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = self.0.idle_since_ms.load(Ordering::Acquire);
        Duration::from_millis(millis_since(self.0.epoch).saturating_sub(since))
    }
}

/// A request being answered (see [`Busy::enter`]).
pub(crate) struct BusyGuard(Busy);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let state = &self.0.0;
        state
            .idle_since_ms
            .store(millis_since(state.epoch), Ordering::Release);
        state.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wraps a service so that its connection counts as busy while a request is answered.
pub(crate) fn counted<F, R>(
    busy: Busy,
    respond: impl Fn(hyper::Request<hyper::body::Incoming>) -> F,
) -> impl Fn(hyper::Request<hyper::body::Incoming>) -> std::pin::Pin<Box<dyn Future<Output = R> + Send>>
where
    F: Future<Output = R> + Send + 'static,
{
    move |req| {
        let answering = busy.enter();
        let fut = respond(req);
        Box::pin(async move {
            let out = fut.await;
            drop(answering);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_bound_come_single_request_slots_then_waiting() {
        let slots = Slots::new(16);
        assert_eq!(slots.single(), 8);
        let keep: Vec<Slot> = (0..16).map(|_| slots.try_acquire().unwrap()).collect();
        assert!(keep.iter().all(Slot::keep_alive));
        let single: Vec<Slot> = (0..8).map(|_| slots.try_acquire().unwrap()).collect();
        assert!(single.iter().all(|s| !s.keep_alive()));
        assert!(slots.try_acquire().is_none());
        drop(single);
        let next = slots.acquire().await.unwrap();
        assert!(!next.keep_alive());
        drop(keep);
        assert!(slots.acquire().await.unwrap().keep_alive());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_server_closes_connections_idle_long_enough_and_no_others() {
        let slots = Slots::new(1);
        let mut old_idle = slots.try_acquire().unwrap();
        let mut singles: Vec<Slot> = (0..8).map(|_| slots.try_acquire().unwrap()).collect();
        assert!(slots.try_acquire().is_none());
        let busy = &mut singles[0];
        let _answering = busy.busy().enter();
        // The clock is paused: time moves only as the test says.
        tokio::time::advance(IDLE_BEFORE_RECLAIM).await;
        let waiter = async { slots.acquire().await.map(|s| s.keep_alive()) };
        let closes = async move {
            old_idle.reclaimed().await;
            drop(old_idle);
        };
        // Bounded: a fault here fails the test instead of hanging it.
        let both = tokio::time::timeout(IDLE_BEFORE_RECLAIM * 10, async {
            tokio::join!(waiter, closes)
        });
        let (got, ()) = both.await.expect("the idle connection was not reclaimed");
        assert_eq!(got, Some(true));
        let busy_closed = tokio::time::timeout(RECLAIM_INTERVAL * 3, busy.reclaimed()).await;
        assert!(busy_closed.is_err(), "a busy connection was reclaimed");
    }
}
