//! `acs-harness load`: load scenarios (TOML) run by goose against a target, or against
//! the embedded double when no target is given, judged by thresholds.
//!
//! Options map onto goose's own configuration, so every goose report and behaviour
//! (HTML/JSON/Markdown reports, baselines, test plans, coordinated-omission mitigation,
//! graceful Ctrl-C) is there; the harness adds scenario files, signed requests with
//! generated bodies, contract checks on every answer, and the threshold table.
//!
//! Everything knowable before work is checked before the double starts or a request goes
//! out; Ctrl-C and SIGTERM stop a run alike; reports are scrubbed and written whole or
//! not at all (see [`guard`]).

pub mod attack;
pub mod bodies;
pub mod events;
pub mod guard;
pub mod merge;
pub mod scenario;
pub mod shard;
pub mod threshold;

use crate::auth::{ConnectionString, Signer};
use crate::client::{AuthMode, Client, ClientError, host_port};
use crate::contract::{Endpoint, RequestBody};
use crate::output;
use bodies::{Bodies, RawBody};
use scenario::{ScenarioFile, ScenarioRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use threshold::{Rule, RunState, Unsent};

/// Exit status: every threshold held.
pub const EXIT_OK: u8 = 0;
/// Exit status: a threshold was breached, or a `--bodies` replay did not send every body
/// within its time limit.
pub const EXIT_BREACHED: u8 = 1;
/// Exit status: the run could not start (bad options or files, unreachable host).
pub const EXIT_NOT_STARTED: u8 = 2;
/// Exit status: Ctrl-C or SIGTERM stopped the run before it ended and no threshold was
/// breached (the reports are written, but a partial run must not pass a release gate).
pub const EXIT_INTERRUPTED: u8 = 2;

/// How long a `--bodies` replay may take when `--run-time` is not given: the scenario's
/// run time is for generated load, and would cut a long replay short.
pub const REPLAY_LIMIT: Duration = Duration::from_secs(600);
/// `--timeout` when not given, as in the gate.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the end of a run may take to hang up the calls it left open.
const CALLS_GRACE: Duration = Duration::from_secs(5);

/// What a load run does: `acs-harness load`'s options as given (their meaning is in
/// src/cli/load.rs); the run checks them all before anything starts.
#[derive(Clone, Default)]
pub struct LoadConfig {
    /// `--host`.
    pub host: Option<String>,
    /// `--scenario`.
    pub scenario: Option<String>,
    /// `--users`.
    pub users: Option<usize>,
    /// `--increase-rate`.
    pub increase_rate: Option<String>,
    /// `--run-time`.
    pub run_time: Option<String>,
    /// `--test-plan`.
    pub test_plan: Option<String>,
    /// `--connection-string`.
    pub connection_string: Option<String>,
    /// `--prefix`.
    pub prefix: String,
    /// `--api-version`.
    pub api_version: Option<String>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--bodies`.
    pub bodies: Option<PathBuf>,
    /// `--report-file`.
    pub report_file: Vec<String>,
    /// `--baseline-file`.
    pub baseline_file: Option<String>,
    /// `--threshold`.
    pub threshold: Vec<String>,
    /// `--threshold-abort`.
    pub threshold_abort: bool,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// `--co-mitigation`.
    pub co_mitigation: Option<String>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--shard`.
    pub shard: Option<String>,
    /// `--shards`.
    pub shards: Option<u32>,
    /// `--start-at`.
    pub start_at: Option<String>,
    /// `--callback-url`.
    pub callback_url: Option<String>,
    /// `--callback-listen`.
    pub callback_listen: Option<String>,
}

impl std::fmt::Debug for LoadConfig {
    /// Everything but the connection string's key, which is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field("host", &self.host)
            .field("scenario", &self.scenario)
            .field("users", &self.users)
            .field("increase_rate", &self.increase_rate)
            .field("run_time", &self.run_time)
            .field("test_plan", &self.test_plan)
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("api_version", &self.api_version)
            .field("seed", &self.seed)
            .field("bodies", &self.bodies)
            .field("report_file", &self.report_file)
            .field("baseline_file", &self.baseline_file)
            .field("threshold", &self.threshold)
            .field("shard", &self.shard)
            .field("shards", &self.shards)
            .field("start_at", &self.start_at)
            .field("timeout", &self.timeout)
            .field(
                "callback_url",
                &self.callback_url.as_deref().map(crate::redact::url),
            )
            .field("callback_listen", &self.callback_listen)
            .finish_non_exhaustive()
    }
}

/// Where the load goes, decided before anything starts.
enum Destination {
    /// `--host`, signed with the connection string's key.
    Host {
        url: url::Url,
        connection: ConnectionString,
    },
    /// The embedded double; `unused_connection` when a connection string was given
    /// anyway (said once the target is named).
    Double { unused_connection: bool },
}

/// What was resolved before any load starts.
struct Plan {
    file: ScenarioFile,
    rules: Vec<Rule>,
    /// What goose gets as `--run-time`: the run time, or a replay's limit.
    run_time: Option<Duration>,
    /// `--test-plan` in goose's canonical form (`users,seconds;...`).
    test_plan: Option<String>,
    replay: Option<Bodies>,
    seed: u64,
    /// This shard's users (of the whole run's, when sharded).
    users: usize,
    destination: Destination,
    /// Which part of the run this process runs.
    shard: shard::Shard,
    start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Per-request timeout.
    timeout: Duration,
    /// The event receiver's configuration (`--callback-url`, `--callback-listen`).
    receiver: crate::receiver::ReceiverConfig,
}

/// Runs `acs-harness load`; returns the exit status (0 held, 1 breached, 2 not started
/// or interrupted).
pub fn run(args: LoadConfig) -> u8 {
    let job_index = std::env::var("JOB_COMPLETION_INDEX").ok();
    let plan = match shard::Shard::resolve(
        args.shard.as_deref(),
        args.shards.map(|n| n as usize),
        job_index.as_deref(),
    )
    .and_then(|s| prepare_shard(&args, s))
    {
        Ok(p) => p,
        Err(e) => {
            output::eprintln(&format!("error: {e}"));
            return EXIT_NOT_STARTED;
        }
    };
    guard::claim_ctrlc();
    guard::install_goose_log(args.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::eprintln(&format!("error: cannot start the async runtime: {e}"));
            return EXIT_NOT_STARTED;
        }
    };
    runtime.block_on(execute(args, plan))
}

#[cfg(test)]
fn prepare(args: &LoadConfig) -> Result<Plan, String> {
    prepare_shard(args, shard::Shard::WHOLE)
}

fn prepare_shard(args: &LoadConfig, shard: shard::Shard) -> Result<Plan, String> {
    let reference = ScenarioRef::from_arg(
        args.scenario
            .as_deref()
            .unwrap_or(scenario::DEFAULT_SCENARIO),
    );
    let file = scenario::load(&reference).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for text in file.thresholds.iter().chain(args.threshold.iter()) {
        rules.push(Rule::parse(text).map_err(|e| e.to_string())?);
    }
    if args.users == Some(0) {
        return Err("--users must be at least 1".into());
    }
    if let Some(rate) = &args.increase_rate {
        check_rate(rate)?;
    }
    let test_plan = args
        .test_plan
        .as_deref()
        .map(canonical_test_plan)
        .transpose()?;
    if let Some(mode) = &args.co_mitigation {
        check_co_mitigation(mode)?;
    }
    let run_time = match &args.run_time {
        Some(t) => {
            let d = crate::duration::parse(t).map_err(|e| format!("--run-time: {e}"))?;
            if d.subsec_nanos() != 0 || d.is_zero() {
                return Err(format!(
                    "--run-time must be a whole number of seconds above 0, got {t:?}"
                ));
            }
            Some(d)
        }
        None => None,
    };
    let replay = match &args.bodies {
        Some(path) => Some(read_replay(path, &file, shard)?),
        None => None,
    };
    // A replay lasts until every body is sent; its run time is a limit, not the length.
    let run_time = if replay.is_some() {
        Some(run_time.unwrap_or(REPLAY_LIMIT))
    } else {
        run_time.or(file.run_time)
    };
    check_reports(&args.report_file)?;
    if let Some(b) = &args.baseline_file {
        let bytes =
            std::fs::read(b).map_err(|e| format!("--baseline-file {b}: cannot read it: {e}"))?;
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
            format!("--baseline-file {b}: not a JSON report of an earlier run ({e})")
        })?;
    }
    let destination = destination(args)?;
    let receiver = events::receiver_config(
        args.callback_url.as_deref(),
        args.callback_listen.as_deref(),
    )?;
    check_events_reach_us(&file, &destination, args.callback_url.is_some())?;
    let timeout = match &args.timeout {
        Some(t) => request_timeout(t)?,
        None => DEFAULT_TIMEOUT,
    };
    let seed = args.seed.unwrap_or_else(crate::cli::random_seed);
    if shard.count > 1 && args.seed.is_none() {
        return Err(format!(
            "shard {}/{} needs --seed S: all shards of a run share its seed (each derives its own from it), and report merge checks it",
            shard.index, shard.count
        ));
    }
    let whole = |part: &str| match shard.count {
        1 => String::new(),
        n => format!(" across {n} shards leaves shard {}/{n} {part}", shard.index),
    };
    let test_plan = match test_plan {
        Some((p, _)) if shard.count == 1 => Some(p),
        Some((p, _)) => {
            let part = shard.test_plan(&p)?;
            if plan_users(&part) == 0 {
                return Err(format!(
                    "--test-plan {p:?}{}",
                    whole("without users: give at least as many users as shards")
                ));
            }
            Some(part)
        }
        None => None,
    };
    let users = match (&test_plan, args.users.or(file.users)) {
        (Some(p), _) => plan_users(p),
        (None, Some(total)) => {
            let mine = shard.users(total);
            if mine == 0 {
                return Err(format!(
                    "--users {total}{}",
                    whole("without users: give at least as many users as shards")
                ));
            }
            mine
        }
        (None, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let start_at = args
        .start_at
        .as_deref()
        .map(shard::parse_start_at)
        .transpose()?;
    let plan = Plan {
        file,
        rules,
        run_time,
        test_plan,
        replay,
        seed,
        timeout,
        users,
        destination,
        shard,
        start_at,
        receiver,
    };
    // goose checks the remaining combinations itself: let it now, before anything starts.
    goose::config::GooseConfiguration::parse_args_default(&goose_args(
        args,
        &plan,
        "http://127.0.0.1",
        &args.report_file,
    ))
    .map_err(|e| goose_error(&e))?;
    Ok(plan)
}

/// The most users a canonical test plan (`users,seconds;...`) runs at once.
fn plan_users(plan: &str) -> usize {
    plan.split(';')
        .filter_map(|step| step.split(',').next()?.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

/// Reads this shard's slice of a `--bodies` file and checks it against the scenario: every body must have a
/// step that sends it (or the replay could never end), every step a body it needs.
fn read_replay(path: &Path, file: &ScenarioFile, shard: shard::Shard) -> Result<Bodies, String> {
    let bodies = Bodies::read_file_slice(path, shard.index, shard.count)?;
    if let Bodies::Replay(r) = &bodies {
        let used = file.endpoints();
        for e in Endpoint::ALL {
            let n = r.count(e);
            if used.contains(&e) {
                if e.request_body() == RequestBody::Required && n == 0 {
                    return Err(format!(
                        "{}: holds no {} body, which scenario {} needs",
                        r.file,
                        e.name(),
                        file.source
                    ));
                }
            } else if n > 0 {
                return Err(format!(
                    "{}: holds {n} {} bodies, but scenario {} never sends {}; they could never be sent",
                    r.file,
                    e.name(),
                    file.source,
                    e.request_name()
                ));
            }
        }
    }
    Ok(bodies)
}

/// A scenario that awaits events against a target off this machine needs a callbackUri
/// that target can reach: the loopback default would make every wait miss.
fn check_events_reach_us(
    file: &ScenarioFile,
    destination: &Destination,
    callback_url: bool,
) -> Result<(), String> {
    let awaited = file.awaited();
    let Destination::Host { url, .. } = destination else {
        return Ok(());
    };
    if awaited.is_empty()
        || callback_url
        || url.host().is_some_and(|h| events::is_loopback_host(&h))
    {
        return Ok(());
    }
    let names: Vec<&str> = awaited.iter().map(|k| k.name()).collect();
    Err(format!(
        "scenario {} awaits {}, but {} cannot send events to this machine's loopback: give --callback-url with a URL it reaches (and --callback-listen where the receiver listens)",
        file.source,
        names.join(", "),
        crate::redact::url(url.as_str())
    ))
}

/// The target as decided from the options alone. No `--host` means the embedded double,
/// whatever connection string is set: a user asking for the double must never load a
/// paid service by accident.
fn destination(args: &LoadConfig) -> Result<Destination, String> {
    let Some(host) = &args.host else {
        // Not used, but its key must still never be printed: parsing registers it.
        if let Some(s) = &args.connection_string {
            let _ = s.parse::<ConnectionString>();
        }
        return Ok(Destination::Double {
            unused_connection: args.connection_string.is_some(),
        });
    };
    // Userinfo, query and fragment of --host are dropped here, as for every target.
    let url = crate::client::target_url(host).map_err(|e| format!("--host: {e}"))?;
    let connection = match &args.connection_string {
        Some(s) => s
            .parse::<ConnectionString>()
            .map_err(|e| format!("--connection-string: {e}"))?,
        None => {
            return Err(
                "--host needs --connection-string (or ACS_CONNECTION_STRING) to sign requests"
                    .into(),
            );
        }
    };
    Ok(Destination::Host { url, connection })
}

fn check_rate(rate: &str) -> Result<(), String> {
    match rate.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(()),
        _ => Err(format!(
            "--increase-rate must be a number of users started per second above 0, e.g. 4 or 0.5; got {rate:?}"
        )),
    }
}

fn check_co_mitigation(mode: &str) -> Result<(), String> {
    let known = ["average", "maximum", "minimum", "disabled"];
    if known.iter().any(|k| k.eq_ignore_ascii_case(mode.trim())) {
        Ok(())
    } else {
        Err(format!(
            "--co-mitigation must be one of {}; got {mode:?}",
            known.join(", ")
        ))
    }
}

/// Checks a goose test plan (`USERS,DURATION;...`) and returns it in goose's canonical
/// form (durations in whole seconds) with its largest user count.
fn canonical_test_plan(text: &str) -> Result<(String, usize), String> {
    let fail = |step: usize, why: String| {
        format!(
            "--test-plan {text:?}: step {step}: {why} (format USERS,DURATION;USERS,DURATION..., e.g. \"10,30s;10,1m;0,10s\")"
        )
    };
    let mut steps = Vec::new();
    let mut max = 0;
    for (i, step) in text.split(';').enumerate() {
        let Some((users, duration)) = step.split_once(',') else {
            return Err(fail(
                i + 1,
                format!("{:?} is not USERS,DURATION", step.trim()),
            ));
        };
        let users: usize = users.trim().parse().map_err(|_| {
            fail(
                i + 1,
                format!("{:?} is not a number of users", users.trim()),
            )
        })?;
        let duration = duration.trim();
        let secs = if !duration.is_empty() && duration.bytes().all(|b| b.is_ascii_digit()) {
            duration
                .parse::<u64>()
                .map_err(|_| fail(i + 1, format!("{duration:?} is too long")))?
        } else {
            let d = crate::duration::parse(duration).map_err(|e| fail(i + 1, e))?;
            if d.subsec_nanos() != 0 {
                return Err(fail(
                    i + 1,
                    format!("{duration:?} is not a whole number of seconds"),
                ));
            }
            d.as_secs()
        };
        max = max.max(users);
        steps.push(format!("{users},{secs}"));
    }
    if max == 0 {
        return Err(fail(1, "no step starts a user".into()));
    }
    Ok((steps.join(";"), max))
}

/// Report kinds by extension: goose picks the kind by it and refuses others later.
const REPORT_KINDS: [&str; 4] = ["html", "htm", "json", "md"];

/// Every report (and the thresholds file beside a JSON report) can be written.
fn check_reports(reports: &[String]) -> Result<(), String> {
    for report in reports {
        let path = Path::new(report);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !ext.as_deref().is_some_and(|e| REPORT_KINDS.contains(&e)) {
            return Err(format!(
                "--report-file {report}: the extension picks the report's kind: .html, .json or .md"
            ));
        }
        output::check_writable(path).map_err(|e| format!("--report-file: {e}"))?;
        if let Some(beside) = thresholds_path(report) {
            output::check_writable(&beside).map_err(|e| format!("--report-file: {e}"))?;
        }
    }
    Ok(())
}

/// The thresholds file written beside a JSON report: `r.json` → `r.thresholds.json`.
fn thresholds_path(report: &str) -> Option<PathBuf> {
    let path = Path::new(report);
    let ext = path.extension()?.to_str()?;
    if !ext.eq_ignore_ascii_case("json") {
        return None;
    }
    let stem = path.file_stem()?.to_string_lossy();
    Some(path.with_file_name(format!("{stem}.thresholds.json")))
}

/// `--timeout`: above 0 and at most a day (goose counts it in whole milliseconds).
fn request_timeout(text: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(text).map_err(|e| format!("--timeout: {e}"))?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(86_400) {
        return Err(format!(
            "--timeout must be between 1ms and 24h, got {text:?}"
        ));
    }
    Ok(d)
}

/// The target: an explicit host or the embedded double.
struct Resolved {
    url: url::Url,
    connection: ConnectionString,
    /// Keeps the embedded double running for the length of the run.
    _double: Option<crate::double::serve::RunningServer>,
}

async fn resolve_target(args: &LoadConfig, destination: &Destination) -> Result<Resolved, String> {
    match destination {
        Destination::Host { url, connection } => {
            output::println(&format!(
                "load: target {} (--host)",
                crate::redact::url(url.as_str())
            ));
            let given = args.host.as_deref().map(|h| url::Url::parse(h.trim()));
            if given.is_some_and(|u| u.is_ok_and(|u| u.query().is_some())) {
                output::eprintln(
                    "note: the query string of --host is not sent (use --api-version for api-version)",
                );
            }
            Ok(Resolved {
                url: url.clone(),
                connection: connection.clone(),
                _double: None,
            })
        }
        Destination::Double { unused_connection } => {
            let server =
                crate::double::serve::start_embedded(&args.prefix, args.api_version.as_deref())
                    .await
                    .map_err(|e| format!("cannot start the embedded double: {e}"))?;
            let url = url::Url::parse(server.uri())
                .map_err(|e| format!("the embedded double's address: {e}"))?;
            output::println(&format!(
                "load: target {url} (the embedded double: no --host given)"
            ));
            if *unused_connection {
                output::eprintln(
                    "note: the connection string (--connection-string or ACS_CONNECTION_STRING) is not used without --host; to load its endpoint, pass that URL as --host",
                );
            }
            Ok(Resolved {
                url,
                connection: server.connection_string(),
                _double: Some(server),
            })
        }
    }
}

/// Asks the target one signed `GET /calls` (the contract answers 405, and no call is
/// made), so a host that cannot be reached (refused, DNS, TLS, no answer) or that
/// rejects the key is exit 2 with its reason, not a run full of failed requests.
async fn probe(
    url: &url::Url,
    prefix: &str,
    api_version: Option<&str>,
    signer: Signer,
) -> Result<(), String> {
    let client = Client::new(
        url.as_str(),
        prefix,
        api_version,
        signer,
        Duration::from_secs(5),
    )
    .map_err(|e| e.to_string())?;
    match client
        .send("GET", "/calls", None, None, AuthMode::Signed)
        .await
    {
        Ok(reply) if reply.status == 401 => Err(format!(
            "{} rejected a signed request with 401: check the connection string's access key (and this machine's clock)",
            host_port(url)
        )),
        Ok(_) => Ok(()),
        Err(ClientError::Connect { reason, .. }) => {
            Err(format!("cannot reach {}: {reason}", host_port(url)))
        }
        Err(e) => Err(format!("cannot reach {}: {e}", host_port(url))),
    }
}

/// The goose command line the options map to; goose parses and checks it itself.
/// `reports` are the paths goose writes its reports to.
fn goose_args(args: &LoadConfig, plan: &Plan, origin: &str, reports: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec!["--host".into(), origin.into()];
    let mut push = |flag: &str, value: &str| {
        out.push(flag.into());
        out.push(value.into());
    };
    match &plan.test_plan {
        Some(test_plan) => push("--test-plan", test_plan),
        None => {
            push("--users", &plan.users.to_string());
            if let Some(rate) = args
                .increase_rate
                .as_deref()
                .or(plan.file.increase_rate.as_deref())
            {
                push("--increase-rate", rate.trim());
            }
            if let Some(t) = plan.run_time {
                push("--run-time", &t.as_secs().to_string());
            }
        }
    }
    for report in reports {
        push("--report-file", report);
    }
    if let Some(b) = &args.baseline_file {
        push("--baseline-file", b);
    }
    for rule in &plan.rules {
        push("--threshold", &rule.goose);
    }
    if let Some(mode) = &args.co_mitigation {
        push("--co-mitigation", &mode.trim().to_ascii_lowercase());
    }
    push("--timeout", &format!("{:.3}", plan.timeout.as_secs_f64()));
    if plan.test_plan.is_none() {
        // Keep the ramp-up in the metrics: short runs would otherwise lose most samples.
        out.push("--no-reset-metrics".into());
    }
    if !args.threshold_abort && !plan.rules.is_empty() {
        out.push("--no-threshold-abort".into());
    }
    if args.quiet {
        out.push("--quiet".into());
    }
    // The harness prints goose's tables itself: scrubbed, on a stdout that may be
    // closed, with the thresholds once in its own syntax.
    out.push("--no-print-metrics".into());
    // Answers are read raw under a cap; a decompressed gzip answer could grow past it.
    out.push("--no-gzip".into());
    out.push("--no-telnet".into());
    out
}

fn goose_error(e: &goose::GooseError) -> String {
    match e {
        goose::GooseError::InvalidOption { option, detail, .. } => {
            format!("{}: {detail}", option.trim_matches('`'))
        }
        other => other.to_string(),
    }
}

/// The files a run leaves: goose's reports (staged, then published scrubbed) and the
/// thresholds file beside each JSON report.
struct Outputs {
    staging: Option<guard::Staging>,
    thresholds: Vec<PathBuf>,
}

impl Outputs {
    /// Removes what an earlier run left at the report paths (a report still there after
    /// this run is this run's) and marks each thresholds file as a running run, so a run
    /// killed outright never leaves an old `"passed": true` behind.
    fn begin(args: &LoadConfig, rules: &[Rule], stop: &guard::Stop) -> Result<Outputs, String> {
        let thresholds: Vec<PathBuf> = args
            .report_file
            .iter()
            .filter_map(|r| thresholds_path(r))
            .collect();
        let placeholder = threshold::json(rules, &[], RunState::Running, None);
        for path in &thresholds {
            output::write_atomic(path, placeholder.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        for report in &args.report_file {
            match std::fs::remove_file(report) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot replace {report}: {e}")),
            }
        }
        let staging = if args.report_file.is_empty() {
            None
        } else {
            Some(guard::Staging::new(&args.report_file, stop)?)
        };
        Ok(Outputs {
            staging,
            thresholds,
        })
    }

    /// The paths goose writes its reports to.
    fn goose_paths(&self) -> Vec<String> {
        self.staging
            .as_ref()
            .map(guard::Staging::goose_paths)
            .unwrap_or_default()
    }

    /// Publishes goose's reports (when it ran) and writes the thresholds files.
    fn finish(
        self,
        stop: &guard::Stop,
        rules: &[Rule],
        results: &[goose::threshold::ThresholdResult],
        state: RunState,
        unsent: Option<Unsent>,
        ran: bool,
    ) {
        if let Some(staging) = self.staging {
            if ran {
                staging.publish(stop);
            } else {
                staging.discard(stop);
            }
        }
        let text = threshold::json(rules, results, state, unsent);
        for path in &self.thresholds {
            let _writing = stop.writing();
            if let Err(e) = output::write_atomic(path, text.as_bytes()) {
                output::eprintln(&format!("warning: cannot write {}: {e}", path.display()));
            }
        }
    }
}

async fn execute(args: LoadConfig, plan: Plan) -> u8 {
    let stop = guard::Stop::watch();
    let outputs = match Outputs::begin(&args, &plan.rules, &stop) {
        Ok(o) => o,
        Err(e) => {
            output::eprintln(&format!("error: {e}"));
            return EXIT_NOT_STARTED;
        }
    };
    let not_started = |outputs: Outputs, e: &str| {
        output::eprintln(&format!("error: {e}"));
        outputs.finish(&stop, &plan.rules, &[], RunState::NotStarted, None, false);
        EXIT_NOT_STARTED
    };
    let resolved = match resolve_target(&args, &plan.destination).await {
        Ok(r) => r,
        Err(e) => return not_started(outputs, &e),
    };
    if let Err(e) = probe(
        &resolved.url,
        &args.prefix,
        args.api_version.as_deref(),
        resolved.connection.signer(),
    )
    .await
    {
        return not_started(outputs, &e);
    }
    let url = &resolved.url;
    let target = attack::Target::new(
        url,
        &args.prefix,
        args.api_version.as_deref(),
        resolved.connection.signer(),
    );
    let origin = target.origin.clone();
    let config = match goose::config::GooseConfiguration::parse_args_default(&goose_args(
        &args,
        &plan,
        &origin,
        &outputs.goose_paths(),
    )) {
        Ok(c) => c,
        Err(e) => return not_started(outputs, &goose_error(&e)),
    };
    let endpoints = plan.file.endpoints();
    let mut bodies = match plan.replay {
        Some(b) => b,
        None => Bodies::generate(
            plan.shard.seed(plan.seed),
            plan.users,
            &endpoints,
            &generator,
        ),
    };
    if plan.shard.count > 1 {
        output::println(&format!(
            "load: shard {}/{} with {} users, seed {} (shard seed {})",
            plan.shard.index,
            plan.shard.count,
            plan.users,
            plan.seed,
            plan.shard.seed(plan.seed)
        ));
    }
    output::println(&format!(
        "load: scenario {}{} ({}), seed {}",
        plan.file.source,
        if target.prefix.is_empty() {
            String::new()
        } else {
            format!(", path prefix {}", target.prefix)
        },
        match &bodies {
            Bodies::Replay(r) => format!(
                "replaying {} bodies from {} until all are sent, limit {}s",
                r.len(),
                r.file,
                plan.run_time.map_or(0, |t| t.as_secs())
            ),
            Bodies::Generated { .. } => "generated bodies".into(),
        },
        plan.seed
    ));
    let listen = plan.receiver.listen;
    let receiver = match crate::receiver::Receiver::start(plan.receiver).await {
        Ok(r) => r,
        Err(e) => {
            return not_started(
                outputs,
                &format!("cannot start the event receiver on {listen}: {e}"),
            );
        }
    };
    let callback_uri = receiver.callback_uri(events::CALLBACK_TAG);
    let awaited = plan.file.awaited();
    let awaited_endpoints: Vec<Endpoint> = awaited.iter().map(|k| k.endpoint()).collect();
    bodies.for_events(&callback_uri, &awaited_endpoints);
    output::println(&events::describe(&receiver, &callback_uri, &awaited));
    let ctx = Arc::new(attack::Context {
        target,
        bodies,
        all_bodies_sent: std::sync::atomic::AtomicBool::new(false),
        calls: attack::Calls::default(),
        receiver,
    });
    let mut attack = match goose::GooseAttack::initialize_with_config(config) {
        Ok(a) => a,
        Err(e) => return not_started(outputs, &goose_error(&e)),
    };
    for s in &plan.file.scenarios {
        match attack::build(&ctx, s) {
            Ok(built) => attack = attack.register_scenario(built),
            Err(e) => {
                return not_started(
                    outputs,
                    &format!("scenario {}: {}", s.name, goose_error(&e)),
                );
            }
        }
    }
    if stop.interrupted() {
        output::eprintln("interrupted before the load started (exit 2)");
        outputs.finish(&stop, &plan.rules, &[], RunState::Interrupted, None, false);
        return EXIT_INTERRUPTED;
    }
    if let Some(at) = plan.start_at
        && !shard::wait_until(at).await
    {
        output::eprintln(&format!(
            "interrupted before the start time: nothing was sent (exit {EXIT_INTERRUPTED})"
        ));
        outputs.finish(&stop, &plan.rules, &[], RunState::Interrupted, None, false);
        return EXIT_INTERRUPTED;
    }
    let executed = {
        let _quiet = guard::QuietStdout::begin();
        attack.execute().await
    };
    let (mut metrics, breached) = match executed {
        Ok(m) => (m, false),
        Err(goose::GooseError::ThresholdsFailed { metrics, .. }) => (*metrics.0, true),
        Err(e) => {
            let state = if stop.interrupted() {
                RunState::Interrupted
            } else {
                RunState::NotStarted
            };
            output::eprintln(&format!("error: {}", goose_error(&e)));
            outputs.finish(&stop, &plan.rules, &[], state, None, true);
            return EXIT_NOT_STARTED;
        }
    };
    let results = std::mem::take(&mut metrics.thresholds);
    output::print(&format!("{metrics}"));
    // Every call the run created is hung up before it ends, however it ended.
    crate::output::println(&attack::hang_up_all(&ctx, CALLS_GRACE).await.to_string());
    output::println(&events::summary(&ctx.receiver));
    ctx.receiver.shutdown();
    if !plan.rules.is_empty() {
        output::println("\nThresholds");
        output::print(&threshold::table(&plan.rules, &results));
    }
    let breached = breached || results.iter().any(|r| !r.passed);
    let interrupted = stop.interrupted();
    let unsent = match &ctx.bodies {
        Bodies::Replay(r)
            if !interrupted
                && !ctx
                    .all_bodies_sent
                    .load(std::sync::atomic::Ordering::Relaxed) =>
        {
            Some(Unsent {
                unsent: r.remaining(),
                total: r.len(),
            })
        }
        _ => None,
    };
    if let (Some(u), Bodies::Replay(r)) = (&unsent, &ctx.bodies) {
        output::eprintln(&format!(
            "load: the replay did not finish: {} of {} bodies from {} were not sent within the {}s limit; the target answered too slowly for it, or raise --run-time (exit {EXIT_BREACHED})",
            u.unsent,
            u.total,
            r.file,
            plan.run_time.map_or(0, |t| t.as_secs())
        ));
    }
    let state = if interrupted {
        RunState::Interrupted
    } else {
        RunState::Finished
    };
    outputs.finish(&stop, &plan.rules, &results, state, unsent, true);
    let tag = shard::Tag {
        index: plan.shard.index,
        count: plan.shard.count,
        seed: plan.seed,
        shard_seed: plan.shard.seed(plan.seed),
        scenario: plan.file.source.clone(),
        scenario_id: shard::scenario_id(&plan.file),
        host: crate::redact::url(&format!("{origin}{}", ctx.target.prefix)),
        users: plan.users,
        thresholds: plan.rules.iter().map(|r| r.text.clone()).collect(),
        start_at: plan.start_at.map(|t| t.to_rfc3339()),
        interrupted,
    };
    merge::finish_reports(&args.report_file, &tag);
    // A shard's slice is not the run: an rps rule fails on each of N shards, an error
    // rate can fail on one. The verdict is `report merge`'s; a shard exits 0 on a breach.
    let breached = if breached && plan.shard.count > 1 {
        output::println(&format!(
            "shard {}/{}: a threshold failed on this shard's part of the load; the run's verdict is acs-harness report merge's, on all shards' reports",
            plan.shard.index, plan.shard.count
        ));
        false
    } else {
        breached
    };
    if breached || unsent.is_some() {
        EXIT_BREACHED
    } else if interrupted {
        output::eprintln(&format!(
            "interrupted: the run did not finish; the thresholds held over the partial run, but it passes nothing (exit {EXIT_INTERRUPTED})"
        ));
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    }
}

/// Body generator for the load pools: the contract's own valid-request generators.
fn generator(e: Endpoint, seed: u64, count: usize) -> Vec<RawBody> {
    crate::generate::sample(&crate::generate::valid(e), seed, count)
        .into_iter()
        .map(|g| RawBody {
            endpoint: g.endpoint,
            content_type: g.content_type,
            body: g.body,
            defect: g.defect.is_some(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_plans_are_checked_and_made_canonical() {
        assert_eq!(
            canonical_test_plan("10,30s;25,1m;0,10").unwrap(),
            ("10,30;25,60;0,10".to_string(), 25)
        );
        for bad in [
            "garbage", "10,30s;x", "0,10s", "10,1.5s", "ten,1s", "10,soon",
        ] {
            let e = canonical_test_plan(bad).unwrap_err();
            assert!(
                e.starts_with("--test-plan") && e.contains("USERS,DURATION"),
                "{e}"
            );
        }
    }

    #[test]
    fn options_map_onto_goose_configuration() {
        let args = LoadConfig {
            baseline_file: Some("base.json".into()),
            co_mitigation: Some("Average".into()),
            increase_rate: Some("2.5".into()),
            ..Default::default()
        };
        let mut plan = prepare(&LoadConfig {
            scenario: Some("call-creation".into()),
            threshold: vec!["POST /calls:p95<300ms".into()],
            run_time: Some("7s".into()),
            ..Default::default()
        })
        .unwrap();
        plan.users = 3;
        let reports = ["r.html".to_string(), "r.json".to_string()];
        let a = goose_args(&args, &plan, "http://127.0.0.1:1", &reports);
        let c = goose::config::GooseConfiguration::parse_args_default(&a).unwrap();
        assert_eq!(c.host.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.users, Some(3));
        assert_eq!(c.increase_rate.as_deref(), Some("2.5"));
        assert_eq!(c.run_time.as_deref(), Some("7"));
        assert_eq!(c.report_file, ["r.html", "r.json"]);
        assert_eq!(c.baseline_file.as_deref(), Some("base.json"));
        assert!(c.co_mitigation.is_some());
        assert!(c.no_reset_metrics && c.no_telnet && c.no_threshold_abort);
        // Requests time out after --timeout (10 s by default), answers are not decompressed.
        assert_eq!(c.timeout.as_deref(), Some("10.000"));
        assert!(c.no_gzip);
        assert!(
            c.no_print_metrics,
            "the harness prints goose's tables itself"
        );
        assert!(
            c.threshold
                .contains(&"p95<300ms for POST /calls".to_string())
        );
        // The scenario's own thresholds come first.
        assert_eq!(c.threshold.len(), plan.file.thresholds.len() + 1);

        plan.test_plan = Some("4,2;0,1".into());
        let c = goose::config::GooseConfiguration::parse_args_default(&goose_args(
            &args,
            &plan,
            "http://x",
            &[],
        ))
        .unwrap();
        assert!(c.users.is_none() && !c.no_reset_metrics);

        // A shard runs its part of the users and of each test plan step.
        let sharded = LoadConfig {
            users: Some(5),
            seed: Some(1),
            ..Default::default()
        };
        let plan = prepare_shard(&sharded, shard::Shard::new(1, 2).unwrap()).unwrap();
        assert_eq!(plan.users, 2);
        let plan = prepare_shard(
            &LoadConfig {
                seed: Some(1),
                test_plan: Some("4,2s;0,1s".into()),
                ..Default::default()
            },
            shard::Shard::new(1, 2).unwrap(),
        )
        .unwrap();
        assert_eq!(plan.test_plan.as_deref(), Some("2,2;0,1"));
        assert!(goose_args(&sharded, &plan, "http://x", &[]).contains(&"2,2;0,1".to_string()));
    }

    #[test]
    fn a_replay_runs_until_every_body_is_sent_within_a_limit() {
        let dir = std::env::temp_dir().join(format!("acs-load-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.jsonl");
        let line = crate::generate::sample(&crate::generate::valid(Endpoint::CreateCall), 1, 1)[0]
            .to_json_line();
        std::fs::write(&path, &line).unwrap();
        let plan = prepare(&LoadConfig {
            scenario: Some("call-creation".into()),
            bodies: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        // Not the scenario's 15 s: that is for generated load.
        assert_eq!(plan.run_time, Some(REPLAY_LIMIT));
        let plan = prepare(&LoadConfig {
            scenario: Some("call-creation".into()),
            bodies: Some(path.clone()),
            run_time: Some("3s".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(plan.run_time, Some(Duration::from_secs(3)));
        // Bodies for an endpoint the scenario never calls could never be sent.
        let play = crate::generate::sample(&crate::generate::valid(Endpoint::PlayAudio), 1, 1)[0]
            .to_json_line();
        std::fs::write(&path, format!("{line}\n{play}\n")).unwrap();
        let e = prepare(&LoadConfig {
            scenario: Some("call-creation".into()),
            bodies: Some(path),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.contains("never sends"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_options_do_not_start() {
        let bad = [
            LoadConfig {
                scenario: Some("nope".into()),
                ..Default::default()
            },
            LoadConfig {
                threshold: vec!["p95<<1s".into()],
                ..Default::default()
            },
            LoadConfig {
                run_time: Some("1.5s".into()),
                ..Default::default()
            },
            LoadConfig {
                bodies: Some("/nonexistent/bodies.jsonl".into()),
                ..Default::default()
            },
            LoadConfig {
                users: Some(0),
                ..Default::default()
            },
            LoadConfig {
                increase_rate: Some("fast".into()),
                ..Default::default()
            },
            LoadConfig {
                co_mitigation: Some("bogus".into()),
                ..Default::default()
            },
            LoadConfig {
                report_file: vec!["r.pdf".into()],
                ..Default::default()
            },
            LoadConfig {
                report_file: vec!["/nonexistent/dir/r.json".into()],
                ..Default::default()
            },
            LoadConfig {
                host: Some("endpoint=https://x.example/;accesskey=c2VjcmV0a2V5MTIz".into()),
                connection_string: Some(
                    "endpoint=https://x.example/;accesskey=c2VjcmV0a2V5MTIz".into(),
                ),
                ..Default::default()
            },
        ];
        for args in bad {
            let e = prepare(&args).err().unwrap_or_else(|| panic!("{args:?}"));
            assert!(!e.contains("c2VjcmV0a2V5MTIz"), "{e}");
        }
    }

    #[test]
    fn no_host_is_the_embedded_double_whatever_the_connection_string() {
        let plan = prepare(&LoadConfig {
            connection_string: Some("endpoint=https://paid.example/;accesskey=a2V5a2V5a2V5".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            plan.destination,
            Destination::Double {
                unused_connection: true
            }
        ));
    }
}
