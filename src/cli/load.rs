//! `acs-harness load`: the load run's options, handed to [`crate::load`] as a
//! [`LoadConfig`].

use super::ServiceArgs;
use crate::load::LoadConfig;
use std::path::PathBuf;

/// Options of `acs-harness load`.
#[derive(Clone, clap::Args)]
#[command(after_help = "\
Without --host the load goes to the embedded double, always (a connection string in
ACS_CONNECTION_STRING is then not used); the first line printed names the target.

Exit code: 0 every threshold held, 1 one was breached (or a --bodies replay did not send
every body within its limit), 2 the run could not start or was interrupted (Ctrl-C or
SIGTERM) before a threshold failed.

Examples:
  acs-harness load
  acs-harness load --host http://127.0.0.1:8080 --connection-string \"$ACS_CONNECTION_STRING\" \\
      --scenario play-audio --users 32 --run-time 2m --report-file report.html \\
      --report-file report.json --threshold 'POST /calls:p95<300ms'
  acs-harness generate create-call --count 500 --seed 7 > bodies.jsonl
  acs-harness load --host http://127.0.0.1:8080 --connection-string \"$ACS_CONNECTION_STRING\" \\
      --scenario call-creation --bodies bodies.jsonl
  # shard 0 of 3 of one run (same --seed and --start-at on every shard), then merge:
  acs-harness load --host http://127.0.0.1:8080 --users 96 --run-time 10m --seed 42 \\
      --shard 0/3 --start-at 2026-12-02T12:00:00Z --report-file shard-0.json
  acs-harness report merge shard-0.json shard-1.json shard-2.json --report-file merged.html")]
pub struct LoadArgs {
    /// Target base URL (http://host:port). Without it, the embedded double is started
    /// on a free loopback port and a short default load runs against it, even when a
    /// connection string is set.
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,
    /// A shipped scenario (call-creation, play-audio, play-audio-think, mixed) or a
    /// scenario file (.toml).
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Concurrent users [default: the scenario's].
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Users started per second, e.g. 4 or 0.5 [default: the scenario's].
    #[arg(long, value_name = "R")]
    pub increase_rate: Option<String>,
    /// How long to run once all users started, e.g. 30s, 2m [default: the scenario's].
    /// With --bodies, the limit for sending every body [default: 10m].
    #[arg(long, value_name = "DUR")]
    pub run_time: Option<String>,
    /// A goose test plan, e.g. "10,30s;10,1m;0,10s" (replaces users, rate and run time).
    #[arg(long, value_name = "PLAN")]
    pub test_plan: Option<String>,
    /// The key, prefix and api-version requests are sent with.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Seed of the generated bodies; the same seed sends the same bodies [default: random, printed].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Replay the bodies of this file (JSON lines as `acs-harness generate` prints them),
    /// each once, in order; the run ends when all are sent. Not all sent within
    /// --run-time (default 10m) fails the run (exit 1).
    #[arg(long, value_name = "FILE")]
    pub bodies: Option<PathBuf>,
    /// Write a goose report; the extension picks the kind (.html, .json, .md). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub report_file: Vec<String>,
    /// A JSON report of an earlier run to compare against in the reports.
    #[arg(long, value_name = "FILE")]
    pub baseline_file: Option<String>,
    /// A threshold, `[REQUEST:]METRIC<VALUE`, e.g. 'POST /calls:p95<300ms', 'error-rate<1%',
    /// 'rps>=100'. Metrics: pNN, avg, max, error-rate, rps. Repeatable; adds to the scenario's.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
    /// Stop the run as soon as a threshold fails (checked every second once all users run).
    #[arg(long)]
    pub threshold_abort: bool,
    /// How long each request may take before it counts as failed, e.g. 10s, 500ms; also
    /// bounds how long the end of a run waits for requests still in flight [default: 10s].
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<String>,
    /// Coordinated-omission mitigation: average, maximum, minimum or disabled.
    #[arg(long, value_name = "MODE")]
    pub co_mitigation: Option<String>,
    /// Only warnings and errors from goose on the console.
    #[arg(long)]
    pub quiet: bool,
    /// Run shard I of N (0-based, e.g. 0/3): its share of the users, its own seed and
    /// `--bodies` lines; `acs-harness report merge` combines the shards' JSON reports and
    /// judges the thresholds (a shard exits 0 when one fails on its part alone).
    #[arg(long, value_name = "I/N", conflicts_with = "shards")]
    pub shard: Option<String>,
    /// Run one of N shards, its index read from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub shards: Option<u32>,
    /// Wait until this wall-clock time (RFC 3339, e.g. 2026-12-02T12:00:00Z) before the
    /// first request, so shards started at different moments begin together.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// The URL the target sends events to (each call's callbackUri), for a target that
    /// cannot reach this machine's loopback; pair with --callback-listen
    /// [default: the receiver's own http://127.0.0.1:PORT].
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Where the event receiver listens, e.g. 0.0.0.0:8090 [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub callback_listen: Option<String>,
}

impl std::fmt::Debug for LoadArgs {
    /// As [`LoadConfig`]'s: everything but the connection string's key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        LoadConfig::from(self.clone()).fmt(f)
    }
}

impl From<LoadArgs> for LoadConfig {
    fn from(args: LoadArgs) -> LoadConfig {
        LoadConfig {
            host: args.host,
            scenario: args.scenario,
            users: args.users,
            increase_rate: args.increase_rate,
            run_time: args.run_time,
            test_plan: args.test_plan,
            connection_string: args.service.connection_string,
            prefix: args.service.prefix,
            api_version: args.service.api_version,
            seed: args.seed,
            bodies: args.bodies,
            report_file: args.report_file,
            baseline_file: args.baseline_file,
            threshold: args.threshold,
            threshold_abort: args.threshold_abort,
            timeout: args.timeout,
            co_mitigation: args.co_mitigation,
            quiet: args.quiet,
            shard: args.shard,
            shards: args.shards,
            start_at: args.start_at,
            callback_url: args.callback_url,
            callback_listen: args.callback_listen,
        }
    }
}
