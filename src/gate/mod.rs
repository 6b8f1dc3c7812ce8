//! The contract gate: checks a target (or the embedded double) against
//! src/contract/CONTRACT.md and fails a CI step, with a replayable case, when it
//! deviates. `acs-harness contract` (src/cli/contract.rs) builds its [`GateConfig`].

pub(crate) mod cases;
pub(crate) mod checks;
pub(crate) mod config;
pub(crate) mod draw;
pub(crate) mod engine;
pub(crate) mod events;
mod junit;
mod probes;
mod progress;
mod replay;
pub(crate) mod report;
mod setup;
mod shrink;

pub use checks::Check;
pub use config::GateConfig;
pub use draw::sample_valid;
pub use engine::run_gate;
pub use report::{Cell, Failure, Report, RunEnd};

use std::time::Duration;

/// A duration as `--timeout` reads it back exactly: `10s`, `1500ms`, `250us`.
pub(crate) fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}
