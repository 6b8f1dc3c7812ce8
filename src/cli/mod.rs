//! The command line: `acs-harness <command>`. Each command is a variant of [`Command`]
//! with its own argument struct (in this module's files), turned here into the plain
//! configuration its domain module runs with, so gate, load and double know no clap.
//!
//! Every command ends in a [`Result`]; [`exit_code`] is the one mapping to the exit
//! codes: 0 passed, 1 a contract deviation or breached threshold, 2 anything else. A
//! closed stdout (`| head`) is not an error.

pub mod contract;
pub mod generate;
pub mod load;
pub mod send;
pub mod serve;

use crate::auth::ConnectionString;
use crate::contract::Endpoint;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable `--connection-string` falls back to.
pub const CONNECTION_STRING_ENV: &str = "ACS_CONNECTION_STRING";

/// Contract tests, a stateful double and load runs for the Azure Communication
/// Services Call Automation API (2021 preview).
#[derive(Debug, Parser)]
#[command(name = "acs-harness", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How a command reaches a service: the key and where the contract's paths go
/// (shared by `contract`, `send` and `load`, so the three spell them alike).
#[derive(Clone, Args)]
pub struct ServiceArgs {
    /// `endpoint=...;accesskey=...` of the target (falls back to ACS_CONNECTION_STRING).
    #[arg(long, value_name = "S", env = CONNECTION_STRING_ENV, hide_env_values = true)]
    pub connection_string: Option<String>,
    /// Path prefix before `/calls` (e.g. /calling).
    #[arg(long, value_name = "P", default_value = "")]
    pub prefix: String,
    /// `api-version` query parameter sent with every request.
    #[arg(long, value_name = "V")]
    pub api_version: Option<String>,
}

impl ServiceArgs {
    /// The target's connection string, parsed; `needs` starts the message when none was
    /// given (`--target needs`). The text is registered with the redactor first, so not
    /// even a string that fails to parse is ever echoed.
    pub fn connection(&self, needs: &str) -> std::result::Result<ConnectionString, Error> {
        let Some(cs) = self
            .connection_string
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Err(Error::CouldNotRun(format!(
                "{needs} the target's access key: pass --connection-string 'endpoint=...;accesskey=...' or set {CONNECTION_STRING_ENV}"
            )));
        };
        crate::redact::register_secret(cs);
        cs.parse::<ConnectionString>()
            .map_err(|e| Error::CouldNotRun(format!("bad connection string: {e}")))
    }
}

impl std::fmt::Debug for ServiceArgs {
    /// Everything but the connection string, which holds the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceArgs")
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "(hidden)"),
            )
            .field("prefix", &self.prefix)
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the OpenAPI 3.1 document of the contract.
    Spec(generate::SpecArgs),
    /// Print generated requests for one endpoint as JSON lines.
    Generate(generate::GenerateArgs),
    /// Run the double (a stateful, signature-checking fake of the service) until Ctrl-C.
    Serve(serve::ServeArgs),
    /// Gate a target (or the embedded double) against the contract; exit 0 pass, 1 fail, 2 could not run.
    Contract(contract::ContractArgs),
    /// Run a load scenario (goose) against a target, or the embedded double, and judge
    /// its thresholds: exit 0 all held, 1 one breached, 2 the run could not start.
    Load(Box<load::LoadArgs>),
    /// Sign and send one request to a target and print the answer (the gate prints
    /// each failure as a send line to paste); exit 0 an answer came, 2 none did.
    Send(send::SendArgs),
    /// Work on load reports: `report merge` combines shard reports into one and judges
    /// the thresholds on the whole run (exit 0 held, 1 breached, 2 could not merge).
    #[command(subcommand)]
    Report(ReportCommand),
}

/// The subcommands of `acs-harness report`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the JSON reports of a sharded load run into one report of the whole run.
    Merge(crate::load::merge::MergeArgs),
}

/// How a command that ran to its end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything held (exit 0).
    Passed,
    /// The target deviated from the contract, or a load threshold was breached (exit 1).
    Deviated,
}

/// Why a command could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad options, an unreachable target, a file that cannot be read or written: the
    /// message is printed, prefixed with the command.
    #[error("{0}")]
    CouldNotRun(String),
    /// The command has already said why on stderr (with its reports written).
    #[error("the command could not run")]
    Reported,
    /// Writing to standard output failed (a closed one is not an error).
    #[error("writing to stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// What a command ends in.
pub type Result = std::result::Result<Outcome, Error>;

/// A command's result from the exit status its domain module returns (0, 1 or 2, a 2
/// having been explained already).
pub fn from_status(code: u8) -> Result {
    match code {
        0 => Ok(Outcome::Passed),
        1 => Ok(Outcome::Deviated),
        _ => Err(Error::Reported),
    }
}

/// The exit code of a command's result: 0 passed, 1 deviated, 2 could not run. The
/// reason of a failure is printed (scrubbed) to stderr, prefixed with `command`; a
/// stdout closed by its reader ends the command with the code it would have had.
pub fn exit_code(command: &str, result: &Result) -> ExitCode {
    match result {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Deviated) => ExitCode::from(1),
        Err(Error::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Error::Reported) => ExitCode::from(2),
        Err(e) => {
            crate::output::eprintln(&format!("acs-harness {command}: {e}"));
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let (name, result) = match cli.command {
        Command::Spec(args) => ("spec", generate::run_spec(&args)),
        Command::Generate(args) => ("generate", generate::run_generate(&args)),
        Command::Contract(args) => ("contract", contract::run(args)),
        Command::Load(args) => ("load", from_status(crate::load::run((*args).into()))),
        Command::Report(ReportCommand::Merge(args)) => {
            ("report merge", from_status(crate::load::merge::run(args)))
        }
        Command::Send(args) => ("send", send::run(args)),
        Command::Serve(args) => ("serve", serve::run(&args)),
    };
    exit_code(name, &result)
}

/// Sets up the log on stderr for `command`: `RUST_LOG`, else `info` for `serve` (the
/// double's own log) and `warn` for the others; coloured only for a person at a
/// terminal. Called once, by `main`. It does not take the `log` crate's logger: the
/// load run routes goose's records itself.
pub fn init_tracing(command: &Command) {
    let default = match command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(io::stderr)
        .with_ansi(
            io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
        )
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// A seed for a run that was given none: different per process, short enough to type
/// back with `--seed`. The one source of random seeds (generate, contract, load).
pub fn random_seed() -> u64 {
    let n = uuid::Uuid::new_v4().as_u128();
    (n as u64) % 1_000_000_000
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> std::result::Result<(), Error> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::Stdout),
    }
}

/// Parses an endpoint name; clap lists the six names when it is not one of them.
pub fn endpoint_parser() -> impl TypedValueParser<Value = Endpoint> {
    PossibleValuesParser::new(Endpoint::ALL.map(Endpoint::name))
        .try_map(|name: String| name.parse::<Endpoint>())
}

/// Parses a per-request timeout: more than zero, at most an hour.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    crate::duration::parse_within(s, Duration::from_secs(3600))
}

/// A runtime for a command that runs async work.
pub fn runtime(multi_thread: bool) -> std::result::Result<tokio::runtime::Runtime, Error> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::CouldNotRun(format!("cannot start the async runtime: {e}")))
}

// The Kubernetes manifests parse with this CLI's own parser (a unit test: it needs
// the CLI's argument types, which are not public).
#[cfg(test)]
mod kubernetes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_onto_exit_codes() {
        let code = |r: Result| exit_code("test", &r);
        assert_eq!(code(Ok(Outcome::Passed)), ExitCode::SUCCESS);
        assert_eq!(code(Ok(Outcome::Deviated)), ExitCode::from(1));
        assert_eq!(code(Err(Error::Reported)), ExitCode::from(2));
        assert_eq!(code(Err(Error::CouldNotRun("x".into()))), ExitCode::from(2));
        let closed = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(code(Err(Error::Stdout(closed))), ExitCode::SUCCESS);
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(code(Err(Error::Stdout(full))), ExitCode::from(2));
        for (status, code) in [(0, 0), (1, 1), (2, 2)] {
            assert_eq!(
                exit_code("test", &from_status(status)),
                ExitCode::from(code)
            );
        }
    }

    #[test]
    fn random_seeds_are_short_and_differ() {
        let seeds: std::collections::HashSet<u64> = (0..8).map(|_| random_seed()).collect();
        assert!(seeds.len() > 1);
        assert!(seeds.iter().all(|s| *s < 1_000_000_000));
    }
}
