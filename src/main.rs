//! `acs-harness`: parses the command line, sets up the log and hands the command to
//! [`acs_harness::cli::run`], which maps its result to the exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = acs_harness::cli::Cli::parse();
    acs_harness::cli::init_tracing(&cli.command);
    acs_harness::cli::run(cli)
}
