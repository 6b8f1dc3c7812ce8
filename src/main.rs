//! `acs-harness`: parse the command line and dispatch. (Minimal dispatcher for `serve`;
//! the full command set lives in `cli.rs` once it lands.)

use clap::Parser;

/// Contract tests, a stateful double and load runs for the ACS Call Automation API.
#[derive(Debug, Parser)]
#[command(name = "acs-harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the double (a stateful fake of the service) on 127.0.0.1 until Ctrl-C.
    Serve(acs_harness::double::serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => acs_harness::double::serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
