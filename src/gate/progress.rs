//! The progress line a run shows on a terminal's stderr: requests sent and failures
//! found so far, redrawn in place.

use super::engine::Shared;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the line is redrawn: often enough to look live, rarely enough to cost
/// nothing next to the requests.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// ANSI: back to the start of the line and erase it.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Starts redrawing the line until [`finish`].
pub(crate) fn spawn(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDRAW_EVERY);
        loop {
            tick.tick().await;
            let failed: u64 = match shared.report.lock() {
                Ok(r) => r.cells.values().map(|c| c.failed).sum(),
                Err(_) => 0,
            };
            eprint!(
                "{CLEAR_LINE}contract: {} requests, {failed} failures…",
                shared.requests.load(Ordering::Relaxed)
            );
        }
    })
}

/// Stops the line and erases it, so the report starts on a clean line.
pub(crate) fn finish(progress: JoinHandle<()>) {
    progress.abort();
    eprint!("{CLEAR_LINE}");
}
