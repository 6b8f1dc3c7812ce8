//! `acs-harness spec` and `acs-harness generate`: the contract as a document and as
//! generated requests.

use super::{Error, Outcome, Result};
use crate::contract::Endpoint;
use crate::generate::{self, GeneratedRequest};
use clap::Args;
use std::io::{self, BufWriter, Write};

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
    #[arg(value_parser = super::endpoint_parser())]
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

/// Runs `acs-harness spec`.
pub fn run_spec(args: &SpecArgs) -> Result {
    match &args.out {
        Some(path) => std::fs::write(path, crate::contract::OPENAPI)
            .map_err(|e| Error::CouldNotRun(format!("writing {}: {e}", path.display())))?,
        None => super::write_stdout(crate::contract::OPENAPI.as_bytes())?,
    }
    Ok(Outcome::Passed)
}

/// Runs `acs-harness generate`.
pub fn run_generate(args: &GenerateArgs) -> Result {
    let seed = args.seed.unwrap_or_else(super::random_seed);
    crate::output::eprintln(&format!("seed: {seed}"));
    let strategy = if args.invalid {
        generate::invalid(args.endpoint).map_err(|e| Error::CouldNotRun(e.to_string()))?
    } else {
        generate::valid(args.endpoint)
    };
    write_lines(generate::stream(strategy, seed).take(args.count)).map_err(Error::Stdout)?;
    Ok(Outcome::Passed)
}

fn write_lines(requests: impl Iterator<Item = GeneratedRequest>) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    for r in requests {
        out.write_all(r.to_json_line().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
