//! `acs-harness`: the command line, run by [`acs_harness::run_cli`], which parses the
//! arguments, sets up the log and maps the command's result to the exit code.

fn main() -> std::process::ExitCode {
    acs_harness::run_cli()
}
