use clap::Parser;
use std::process::ExitCode;

/// Contract tests, a stateful double and load runs for the ACS Call Automation API.
#[derive(Parser)]
#[command(name = "acs-harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run a load scenario against a target (or the embedded double) and judge thresholds.
    Load(acs_harness::load::LoadArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Load(args) => ExitCode::from(acs_harness::load::run(args)),
    }
}
