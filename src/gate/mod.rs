//! The contract gate: checks a target (or the embedded double) against
//! src/contract/CONTRACT.md and fails a CI step, with a replayable case, when it
//! deviates. `acs-harness contract` (src/cli/contract.rs) builds its [`GateConfig`].

pub(crate) mod cases;
pub(crate) mod checks;
pub(crate) mod report;
pub(crate) mod runner;

pub use checks::Check;
pub use report::{Cell, Failure, Report, RunEnd};
pub use runner::{GateConfig, run_gate, sample_valid};

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
