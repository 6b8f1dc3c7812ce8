//! `acs-harness`: parses the command line and hands it to [`acs_harness::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    acs_harness::cli::run(acs_harness::cli::Cli::parse())
}
