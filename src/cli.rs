//! The command line: `acs-harness <command>`. Each command is a variant of [`Command`]
//! with its own argument struct, so new commands slot in without touching the others.

use crate::contract::Endpoint;
use crate::generate::{self, GeneratedRequest};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// Contract tests, a stateful double and load runs for the Azure Communication
/// Services Call Automation API (2021 preview).
#[derive(Debug, Parser)]
#[command(name = "acs-harness", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the OpenAPI 3.1 document of the contract.
    Spec(SpecArgs),
    /// Print generated requests for one endpoint as JSON lines.
    Generate(GenerateArgs),
    /// Run the double (a stateful, signature-checking fake of the service) until Ctrl-C.
    Serve(crate::double::serve::ServeArgs),
    /// Gate a target (or the embedded double) against the contract; exit 0 pass, 1 fail, 2 could not run.
    Contract(crate::gate::ContractArgs),
    /// Run a load scenario (goose) against a target, or the embedded double, and judge
    /// its thresholds: exit 0 all held, 1 one breached, 2 the run could not start.
    Load(Box<crate::load::LoadArgs>),
    /// Sign and send one request to a target and print the answer (the gate prints
    /// each failure as a send line to paste); exit 0 an answer came, 2 none did.
    Send(crate::send::SendArgs),
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

/// Arguments of `acs-harness spec`.
#[derive(Debug, Args)]
#[command(
    about = "Print the OpenAPI 3.1 document of the contract the harness enforces",
    after_help = "Example:\n  acs-harness spec --out call-automation.openapi.json"
)]
pub struct SpecArgs {
    /// Write the document to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

const GENERATE_HELP: &str = "\
Prints one JSON object per line: endpoint, method, path template ({callId} kept as a
placeholder), params, contentType, the exact body (bodyBase64 when it is not UTF-8)
and, with --invalid, the violation label. The seed is printed to stderr; pass it back
with --seed to replay a run.

Example:
  acs-harness generate create-call --count 3 --seed 42
  acs-harness generate play-audio --invalid --count 100 --seed 7 | jq -r .violation";

/// Arguments of `acs-harness generate`.
#[derive(Debug, Args)]
#[command(
    about = "Print requests that conform to the contract (or, with --invalid, break exactly one rule) as JSON lines",
    after_help = GENERATE_HELP
)]
pub struct GenerateArgs {
    /// The endpoint to generate requests for.
    #[arg(value_parser = endpoint_parser())]
    pub endpoint: Endpoint,
    /// Generate requests that each carry exactly one labelled contract violation.
    #[arg(long)]
    pub invalid: bool,
    /// How many requests to print.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Seed of the generator; random when absent. The same seed prints the same lines.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Parses an endpoint name; clap lists the six names when it is not one of them.
fn endpoint_parser() -> impl TypedValueParser<Value = Endpoint> {
    PossibleValuesParser::new(Endpoint::ALL.map(Endpoint::name)).try_map(|name: String| {
        Endpoint::from_name(&name).ok_or_else(|| format!("unknown endpoint {name}"))
    })
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Spec(args) => run_spec(&args),
        Command::Generate(args) => run_generate(&args),
        Command::Contract(args) => crate::gate::run(args),
        Command::Load(args) => ExitCode::from(crate::load::run(*args)),
        Command::Report(ReportCommand::Merge(args)) => {
            ExitCode::from(crate::load::merge::run(args))
        }
        Command::Send(args) => crate::send::run(args),
        Command::Serve(args) => match crate::double::serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_spec(args: &SpecArgs) -> ExitCode {
    let written = match &args.out {
        Some(path) => std::fs::write(path, crate::contract::OPENAPI)
            .map_err(|e| format!("writing {}: {e}", path.display())),
        None => write_or_broken_pipe(crate::contract::OPENAPI.as_bytes())
            .map_err(|e| format!("writing to stdout: {e}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // Exit 1 means a contract deviation; a failed write is "could not run".
        Err(e) => {
            crate::output::eprintln(&format!("error: {e}"));
            ExitCode::from(2)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_or_broken_pipe(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A seed for a run that was given none, different per process.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's randomness; no extra dependency needed.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

fn run_generate(args: &GenerateArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(random_seed);
    crate::output::eprintln(&format!("seed: {seed}"));
    let strategy = if args.invalid {
        match generate::invalid(args.endpoint) {
            Ok(s) => s,
            Err(e) => {
                crate::output::eprintln(&format!("error: {e}"));
                return ExitCode::from(2);
            }
        }
    } else {
        generate::valid(args.endpoint)
    };
    match write_lines(generate::stream(strategy, seed).take(args.count)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): it has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            crate::output::eprintln(&format!("error: writing to stdout: {e}"));
            ExitCode::from(2)
        }
    }
}

fn write_lines(requests: impl Iterator<Item = GeneratedRequest>) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    for r in requests {
        out.write_all(r.to_json_line().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
