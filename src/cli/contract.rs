//! `acs-harness contract`: the gate's options, turned into a [`GateConfig`], and the
//! run's printed report and files.
//!
//! Exit codes: 0 every check passed; 1 any violation (also when interrupted after
//! finding one); 2 the gate could not run (bad options, target unreachable, key
//! rejected, no answer, not HTTP) or was interrupted before it found anything.

use super::{CONNECTION_STRING_ENV, Error, Result, ServiceArgs, parse_duration};
use crate::contract::Endpoint;
use crate::gate::report::shell_quote;
use crate::gate::{GateConfig, RunEnd, events, format_duration, run_gate};
use crate::output;
use crate::redact;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// `--cases` when not given.
const DEFAULT_CASES: u32 = 100;

/// `--timeout` when not given (the clap default, "10s").
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--concurrency` when not given.
const DEFAULT_CONCURRENCY: u16 = 8;

/// Options of `acs-harness contract`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Exit code: 0 every check passed, 1 a violation, 2 the gate could not run.

Examples:
  acs-harness contract
  acs-harness contract --target https://contoso.communication.azure.com \\
      --connection-string \"$ACS_CONNECTION_STRING\" --junit contract.xml --json contract.json
  acs-harness contract --target http://127.0.0.1:8080 --seed 421337 --only play-audio")]
pub struct ContractArgs {
    /// Base URL of the service to gate (e.g. https://x.communication.azure.com);
    /// without it the embedded double is started and gated.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// The key, prefix and api-version requests are sent with.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Valid generated cases per endpoint; every invalid class and auth case runs once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CASES)]
    pub cases: u32,
    /// Seed of the generated cases (printed; pass it again to replay a run).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Per-request timeout (e.g. 10s, 500ms, 1m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A TCP/TLS connect that has not completed by then makes the target unreachable (exit 2).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Budget of the whole run; what has not run by then is reported as not run and the
    /// run ends as incomplete (exit 2, or 1 when a violation was found).
    #[arg(long, value_name = "DUR", default_value = "3m", value_parser = parse_duration)]
    pub max_run_time: Duration,
    /// Requests in flight at most.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Comma-separated endpoints to gate (create-call, hangup, play-audio,
    /// cancel-media-processing, invite-participants, remove-participant).
    #[arg(long, value_name = "ENDPOINTS", value_delimiter = ',', value_parser = clap::value_parser!(Endpoint))]
    pub only: Vec<Endpoint>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// How long the events check waits for each event the target should send.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub event_timeout: Duration,
    /// Public URL (tunnel or ingress) a remote target sends events to; with
    /// --callback-listen. Not needed for the embedded double or a loopback target.
    #[arg(long, value_name = "URL", value_parser = events::parse_callback_url)]
    pub callback_url: Option<url::Url>,
    /// Local address the event receiver listens on (where --callback-url forwards to).
    #[arg(long, value_name = "ADDR", value_parser = events::parse_listen)]
    pub callback_listen: Option<std::net::SocketAddr>,
}

/// Runs `acs-harness contract`: prints the report, writes the files, returns 0/1/2.
pub fn run(args: ContractArgs) -> Result {
    let runtime = super::runtime(true)?;
    let code = runtime.block_on(run_async(args));
    // A shrink still running on a blocking thread after Ctrl-C must not hold up exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// The errors that can be known before any work: a connection string given as the
/// target, a target that is no http(s) URL, report paths that cannot be written.
fn check_options(args: &ContractArgs) -> std::result::Result<(), String> {
    if let Some(t) = &args.target {
        crate::client::target_url(t).map_err(|e| format!("--target: {e}"))?;
    }
    for path in [&args.junit, &args.json].into_iter().flatten() {
        output::check_writable(path)?;
    }
    Ok(())
}

/// Makes Ctrl-C and SIGTERM no longer end the process outright: from here on they stop
/// the run, which still writes its reports (the gate listens for them while it runs).
fn take_over_signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // The listeners are dropped at once; the handlers stay installed for good.
        let _ = signal(SignalKind::interrupt());
        let _ = signal(SignalKind::terminate());
    }
}

async fn run_async(args: ContractArgs) -> Result {
    check_options(&args).map_err(Error::CouldNotRun)?;
    take_over_signals();
    let seed = args.seed.unwrap_or_else(super::random_seed);
    let endpoints = if args.only.is_empty() {
        Endpoint::ALL.to_vec()
    } else {
        let mut v = args.only.clone();
        v.sort();
        v.dedup();
        v
    };
    // The embedded double lives as long as this function.
    let mut _double = None;
    let (target, connection, embedded) = match &args.target {
        Some(t) => (t.clone(), args.service.connection("--target needs")?, false),
        None => {
            let d = crate::double::serve::start_embedded(
                &args.service.prefix,
                args.service.api_version.as_deref(),
            )
            .await
            .map_err(|e| Error::CouldNotRun(format!("cannot start the embedded double: {e}")))?;
            let found = (d.uri().to_string(), d.connection_string(), true);
            _double = Some(d);
            found
        }
    };
    let mut config = GateConfig::new(target, connection.signer());
    config.prefix = args.service.prefix.clone();
    config.api_version = args.service.api_version.clone();
    config.cases = args.cases;
    config.seed = seed;
    config.timeout = args.timeout;
    config.connect_timeout = args.connect_timeout;
    config.max_run_time = args.max_run_time;
    config.concurrency = usize::from(args.concurrency);
    config.endpoints = endpoints;
    config.embedded = embedded;
    config.replay = replay_command(&args, seed);
    config.handle_ctrl_c = true;
    config.progress = std::io::stderr().is_terminal();
    config.event_timeout = args.event_timeout;
    config.callback_url = args.callback_url.clone();
    config.callback_listen = args.callback_listen;
    let shown = if embedded {
        format!("the embedded double at {}", redact::url(&config.target))
    } else {
        redact::url(&config.target)
    };
    output::println(&format!("acs-harness contract: target {shown}"));
    let report = run_gate(config).await;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // An aborted run with nothing found has nothing to tabulate: its reason goes to
    // stderr in one line (the reports still record it as an error).
    let table_worth = !matches!(report.end, RunEnd::Aborted(_)) || report.has_failures();
    if table_worth {
        output::print(&report.render_terminal(color));
    }
    let mut code = report.exit_code();
    let mut write = |path: &PathBuf, text: String| {
        let clean = redact::scrub(&text);
        if let Err(e) = output::write_atomic(path, clean.as_bytes()) {
            output::eprintln(&format!(
                "acs-harness contract: cannot write {}: {e}",
                path.display()
            ));
            code = code.max(2);
        }
    };
    if let Some(path) = &args.junit {
        write(path, report.to_junit());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        write(path, text + "\n");
    }
    if let RunEnd::Aborted(reason) = &report.end {
        output::eprintln(&format!("acs-harness contract: {reason}"));
    }
    super::from_status(code)
}

/// The command line that replays a run: every option that changed it, the seed made
/// explicit, and the connection string by its variable, never by value.
fn replay_command(args: &ContractArgs, seed: u64) -> String {
    let mut s = String::from("acs-harness contract");
    if let Some(t) = &args.target {
        // Userinfo in the URL would be a credential: never printed.
        let t = redact::url(t);
        s.push_str(&format!(" --target {}", shell_quote(t.as_bytes())));
        s.push_str(&format!(
            " --connection-string \"${CONNECTION_STRING_ENV}\""
        ));
    }
    if !args.service.prefix.is_empty() {
        s.push_str(&format!(
            " --prefix {}",
            shell_quote(args.service.prefix.as_bytes())
        ));
    }
    if let Some(v) = &args.service.api_version {
        s.push_str(&format!(" --api-version {}", shell_quote(v.as_bytes())));
    }
    if args.cases != DEFAULT_CASES {
        s.push_str(&format!(" --cases {}", args.cases));
    }
    if args.timeout != DEFAULT_TIMEOUT {
        s.push_str(&format!(" --timeout {}", format_duration(args.timeout)));
    }
    if args.concurrency != DEFAULT_CONCURRENCY {
        s.push_str(&format!(" --concurrency {}", args.concurrency));
    }
    if !args.only.is_empty() {
        let mut only = args.only.clone();
        only.sort();
        only.dedup();
        let names: Vec<&str> = only.iter().map(|e| e.name()).collect();
        s.push_str(&format!(" --only {}", names.join(",")));
    }
    if args.event_timeout != events::DEFAULT_EVENT_TIMEOUT {
        s.push_str(&format!(
            " --event-timeout {}",
            format_duration(args.event_timeout)
        ));
    }
    // Query and userinfo of the callback URL may hold the application's secret: not shown.
    if let Some(u) = &args.callback_url {
        let u = redact::url(u.as_str());
        s.push_str(&format!(" --callback-url {}", shell_quote(u.as_bytes())));
    }
    if let Some(a) = &args.callback_listen {
        s.push_str(&format!(" --callback-listen {a}"));
    }
    s.push_str(&format!(" --seed {seed}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ContractArgs,
    }

    fn parse(words: &[&str]) -> ContractArgs {
        let argv = std::iter::once("contract").chain(words.iter().copied());
        Cmd::try_parse_from(argv).unwrap().args
    }

    /// Splits a printed command line as a POSIX shell would (quotes, `'\''`), with
    /// `$ACS_CONNECTION_STRING` expanded to `env`.
    fn shell_words(line: &str, env: &str) -> Vec<String> {
        let (mut words, mut cur, mut any) = (Vec::new(), String::new(), false);
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                ' ' if any => {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
                ' ' => {}
                '\'' => {
                    any = true;
                    for c in chars.by_ref().take_while(|c| *c != '\'') {
                        cur.push(c);
                    }
                }
                '"' => {
                    any = true;
                    let inner: String = chars.by_ref().take_while(|c| *c != '"').collect();
                    cur.push_str(&inner.replace("$ACS_CONNECTION_STRING", env));
                }
                '\\' => {
                    any = true;
                    cur.extend(chars.next());
                }
                c => {
                    any = true;
                    cur.push(c);
                }
            }
        }
        if any {
            words.push(cur);
        }
        words
    }

    #[test]
    fn the_replay_command_carries_every_option_that_changed_the_run() {
        let cs = "endpoint=https://x.example/;accesskey=c2VjcmV0c2VjcmV0";
        let args = parse(&[
            "--target",
            "https://user:pw@x.example:8443/base?sig=abc",
            "--connection-string",
            cs,
            "--prefix",
            "/it's",
            "--api-version",
            "2021-06-15-preview",
            "--cases",
            "7",
            "--timeout",
            "1500ms",
            "--concurrency",
            "3",
            "--only",
            "play-audio,create-call",
        ]);
        let line = replay_command(&args, 42);
        assert!(!line.contains("c2VjcmV0") && !line.contains("pw") && !line.contains("sig="));
        assert!(
            line.contains("--connection-string \"$ACS_CONNECTION_STRING\""),
            "{line}"
        );
        let words = shell_words(&line, cs);
        assert_eq!(&words[..2], ["acs-harness", "contract"], "{line}");
        let words: Vec<&str> = words[2..].iter().map(String::as_str).collect();
        let again = parse(&words);
        assert_eq!(again.target.as_deref(), Some("https://x.example:8443/base"));
        assert_eq!(again.service.connection_string.as_deref(), Some(cs));
        assert_eq!(again.service.prefix, args.service.prefix);
        assert_eq!(again.service.api_version, args.service.api_version);
        assert_eq!(again.cases, 7);
        assert_eq!(again.timeout, Duration::from_millis(1500));
        assert_eq!(again.concurrency, 3);
        assert_eq!(again.only, vec![Endpoint::CreateCall, Endpoint::PlayAudio]);
        assert_eq!(again.seed, Some(42));
        // Defaults stay off the line; the embedded double needs no key.
        let line = replay_command(&parse(&[]), 5);
        assert_eq!(line, "acs-harness contract --seed 5");
    }

    #[test]
    fn durations_format_as_they_parse() {
        for d in [
            Duration::from_secs(10),
            Duration::from_millis(1500),
            Duration::from_micros(2_500_001),
            Duration::from_secs(3600),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
