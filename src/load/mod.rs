//! `acs-harness load`: load scenarios (TOML) run by goose against a target, or against
//! the embedded double when no target is given, judged by thresholds.
//!
//! Options map onto goose's own configuration, so every goose report and behaviour
//! (HTML/JSON/Markdown reports, baselines, test plans, coordinated-omission mitigation,
//! graceful Ctrl-C) is there; the harness adds scenario files, signed requests with
//! generated bodies, contract checks on every answer, and the threshold table.

pub mod attack;
pub mod bodies;
pub mod scenario;
pub mod threshold;

use crate::auth::{ConnectionString, Signer};
use crate::client::{AuthMode, Client, ClientError};
use crate::contract::{Endpoint, RequestBody};
use bodies::{Bodies, RawBody};
use scenario::{ScenarioFile, ScenarioRef};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use threshold::Rule;

/// Exit status: every threshold held.
pub const EXIT_OK: u8 = 0;
/// Exit status: a threshold was breached.
pub const EXIT_BREACHED: u8 = 1;
/// Exit status: the run could not start (bad options or files, unreachable host).
pub const EXIT_NOT_STARTED: u8 = 2;
/// Exit status: Ctrl-C stopped the run before it ended and no threshold was breached
/// (the reports are written, but a partial run must not pass a release gate).
pub const EXIT_INTERRUPTED: u8 = 2;

/// `--timeout` when not given, as in the gate.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the end of a run may take to hang up the calls it left open.
const CALLS_GRACE: Duration = Duration::from_secs(5);

/// Options of `acs-harness load`.
#[derive(Clone, Default, clap::Args)]
#[command(after_help = "\
Exit code: 0 every threshold held, 1 one was breached, 2 the run could not start
(or was interrupted before a threshold failed).

Examples:
  acs-harness load
  acs-harness load --host http://127.0.0.1:8080 --connection-string \"$ACS_CONNECTION_STRING\" \\
      --scenario play-audio --users 32 --run-time 2m --report-file report.html \\
      --report-file report.json --threshold 'POST /calls:p95<300ms'
  acs-harness generate create-call --count 500 --seed 7 > bodies.jsonl
  acs-harness load --host http://127.0.0.1:8080 --connection-string \"$ACS_CONNECTION_STRING\" \\
      --scenario call-creation --bodies bodies.jsonl")]
pub struct LoadArgs {
    /// Target base URL (http://host:port). Without it, the embedded double is started
    /// on a free loopback port and a short default load runs against it.
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,
    /// A shipped scenario (call-creation, play-audio, mixed) or a scenario file (.toml).
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Concurrent users [default: the scenario's].
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Users started per second, e.g. 4 or 0.5 [default: the scenario's].
    #[arg(long, value_name = "R")]
    pub increase_rate: Option<String>,
    /// How long to run once all users started, e.g. 30s, 2m [default: the scenario's].
    #[arg(long, value_name = "DUR")]
    pub run_time: Option<String>,
    /// A goose test plan, e.g. "10,30s;10,1m;0,10s" (replaces users, rate and run time).
    #[arg(long, value_name = "PLAN")]
    pub test_plan: Option<String>,
    /// `endpoint=...;accesskey=...` of the target; its endpoint is the target when
    /// --host is not given.
    #[arg(
        long,
        value_name = "S",
        env = "ACS_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// Path prefix before /calls, e.g. /calling.
    #[arg(long, value_name = "P", default_value = "")]
    pub prefix: String,
    /// Adds `?api-version=V` to every request.
    #[arg(long, value_name = "V")]
    pub api_version: Option<String>,
    /// Seed of the generated bodies; the same seed sends the same bodies [default: random, printed].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Replay the bodies of this file (JSON lines as `acs-harness generate` prints them),
    /// each once, in order; the run ends when all are sent.
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
}

impl std::fmt::Debug for LoadArgs {
    /// Everything but the connection string's key, which is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadArgs")
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
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What was resolved before any load starts.
struct Plan {
    file: ScenarioFile,
    rules: Vec<Rule>,
    run_time: Option<Duration>,
    replay: Option<Bodies>,
    seed: u64,
    /// Per-request timeout.
    timeout: Duration,
}

/// Runs `acs-harness load`; returns the exit status (0 held, 1 breached, 2 not started
/// or interrupted).
pub fn run(args: LoadArgs) -> u8 {
    let plan = match prepare(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_NOT_STARTED;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_NOT_STARTED;
        }
    };
    runtime.block_on(execute(args, plan))
}

fn prepare(args: &LoadArgs) -> Result<Plan, String> {
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
        Some(path) => {
            let bodies = Bodies::read_file(path)?;
            if let Bodies::Replay(r) = &bodies {
                for e in file.endpoints() {
                    if e.request_body() == RequestBody::Required && r.count(e) == 0 {
                        return Err(format!(
                            "{}: holds no {} body, which scenario {} needs",
                            r.file,
                            e.name(),
                            file.source
                        ));
                    }
                }
            }
            Some(bodies)
        }
        None => None,
    };
    let timeout = match &args.timeout {
        Some(t) => request_timeout(t)?,
        None => DEFAULT_TIMEOUT,
    };
    let seed = args.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        u64::from_le_bytes(b)
    });
    Ok(Plan {
        file,
        rules,
        run_time,
        replay,
        seed,
        timeout,
    })
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

/// The target: an explicit host, the connection string's endpoint, or the embedded double.
struct Resolved {
    url: url::Url,
    connection: ConnectionString,
    /// Keeps the embedded double running for the length of the run.
    _double: Option<embedded::Running>,
}

async fn resolve_target(args: &LoadArgs) -> Result<Resolved, String> {
    let connection = match &args.connection_string {
        Some(s) => Some(
            s.parse::<ConnectionString>()
                .map_err(|e| format!("--connection-string: {e}"))?,
        ),
        None => None,
    };
    let (url, connection, double) = match (&args.host, connection) {
        (Some(host), Some(cs)) => (
            url::Url::parse(host).map_err(|e| format!("--host {host:?}: {e}"))?,
            cs,
            None,
        ),
        (Some(_), None) => {
            return Err(
                "--host needs --connection-string (or ACS_CONNECTION_STRING) to sign requests"
                    .into(),
            );
        }
        (None, Some(cs)) => (cs.endpoint.clone(), cs, None),
        (None, None) => {
            let running = embedded::start(&args.prefix, args.api_version.as_deref()).await?;
            (
                running.url.clone(),
                running.connection.clone(),
                Some(running),
            )
        }
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("the target {url} is not an http(s) URL"));
    }
    Ok(Resolved {
        url,
        connection,
        _double: double,
    })
}

/// `host[:port]` as the client sends it in the Host header (port only when not default).
fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
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

/// The largest user count of a goose test plan (`users,time;...`), for sizing body pools.
fn plan_users(plan: &str) -> usize {
    plan.split(';')
        .filter_map(|step| step.split(',').next()?.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(1)
}

/// The goose command line the options map to; goose parses and checks it itself.
fn goose_args(args: &LoadArgs, plan: &Plan, origin: &str, users: usize) -> Vec<String> {
    let mut out: Vec<String> = vec!["--host".into(), origin.into()];
    let mut push = |flag: &str, value: &str| {
        out.push(flag.into());
        out.push(value.into());
    };
    match &args.test_plan {
        Some(test_plan) => push("--test-plan", test_plan),
        None => {
            push("--users", &users.to_string());
            if let Some(rate) = args
                .increase_rate
                .as_deref()
                .or(plan.file.increase_rate.as_deref())
            {
                push("--increase-rate", rate);
            }
            if let Some(t) = plan.run_time.or(plan.file.run_time) {
                push("--run-time", &t.as_secs().to_string());
            }
        }
    }
    for report in &args.report_file {
        push("--report-file", report);
    }
    if let Some(b) = &args.baseline_file {
        push("--baseline-file", b);
    }
    for rule in &plan.rules {
        push("--threshold", &rule.goose);
    }
    if let Some(mode) = &args.co_mitigation {
        push("--co-mitigation", mode);
    }
    push("--timeout", &format!("{:.3}", plan.timeout.as_secs_f64()));
    if args.test_plan.is_none() {
        // Keep the ramp-up in the metrics: short runs would otherwise lose most samples.
        out.push("--no-reset-metrics".into());
    }
    if !args.threshold_abort && !plan.rules.is_empty() {
        out.push("--no-threshold-abort".into());
    }
    if args.quiet {
        out.push("--quiet".into());
    }
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

async fn execute(args: LoadArgs, plan: Plan) -> u8 {
    let resolved = match resolve_target(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_NOT_STARTED;
        }
    };
    if let Err(e) = probe(
        &resolved.url,
        &args.prefix,
        args.api_version.as_deref(),
        resolved.connection.signer(),
    )
    .await
    {
        eprintln!("error: {e}");
        return EXIT_NOT_STARTED;
    }
    let url = &resolved.url;
    let origin = format!("{}://{}", url.scheme(), host_port(url));
    let mut prefix = url.path().trim_end_matches('/').to_string();
    let extra = args.prefix.trim_matches('/');
    if !extra.is_empty() {
        prefix.push('/');
        prefix.push_str(extra);
    }
    let query = match &args.api_version {
        Some(v) => format!(
            "?api-version={}",
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => String::new(),
    };
    let users = match &args.test_plan {
        Some(p) => plan_users(p),
        None => args
            .users
            .or(plan.file.users)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let config = match goose::config::GooseConfiguration::parse_args_default(&goose_args(
        &args, &plan, &origin, users,
    )) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", goose_error(&e));
            return EXIT_NOT_STARTED;
        }
    };
    let endpoints = plan.file.endpoints();
    let bodies = match plan.replay {
        Some(b) => b,
        None => Bodies::generate(plan.seed, users, &endpoints, &generator),
    };
    println!(
        "load: scenario {} against {origin}{prefix} ({}), seed {}",
        plan.file.source,
        match &bodies {
            Bodies::Replay(r) => format!("replaying {} bodies from {}", r.len(), r.file),
            Bodies::Generated { .. } => "generated bodies".into(),
        },
        plan.seed
    );
    let ctx = Arc::new(attack::Context {
        target: attack::Target {
            origin: origin.clone(),
            prefix,
            query,
            host_header: host_port(url),
            signer: resolved.connection.signer(),
            parsed_origin: Default::default(),
        },
        bodies,
        all_bodies_sent: std::sync::atomic::AtomicBool::new(false),
        calls: attack::Calls::default(),
    });
    let mut attack = match goose::GooseAttack::initialize_with_config(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {}", goose_error(&e));
            return EXIT_NOT_STARTED;
        }
    };
    for s in &plan.file.scenarios {
        match attack::build(&ctx, s) {
            Ok(built) => attack = attack.register_scenario(built),
            Err(e) => {
                eprintln!("error: scenario {}: {}", s.name, goose_error(&e));
                return EXIT_NOT_STARTED;
            }
        }
    }
    let (metrics, breached) = match attack.execute().await {
        Ok(m) => (m, false),
        Err(goose::GooseError::ThresholdsFailed { metrics, .. }) => (*metrics.0, true),
        Err(e) => {
            eprintln!("error: {}", goose_error(&e));
            return EXIT_NOT_STARTED;
        }
    };
    // Every call the run created is hung up before it ends, however it ended.
    crate::output::println(&attack::hang_up_all(&ctx, CALLS_GRACE).await.to_string());
    if !plan.rules.is_empty() {
        println!("\nThresholds");
        print!("{}", threshold::table(&plan.rules, &metrics.thresholds));
    }
    let breached = breached || metrics.thresholds.iter().any(|r| !r.passed);
    // goose's Ctrl-C handler stops the run through the killswitch; so does the end of
    // a `--bodies` replay, which is a normal end.
    let interrupted = goose::is_killswitch_triggered()
        && !ctx
            .all_bodies_sent
            .load(std::sync::atomic::Ordering::Relaxed);
    for report in args.report_file.iter().filter(|r| r.ends_with(".json")) {
        let beside = format!("{}.thresholds.json", report.trim_end_matches(".json"));
        if let Err(e) = std::fs::write(
            &beside,
            threshold::json(&plan.rules, &metrics.thresholds, interrupted),
        ) {
            eprintln!("warning: cannot write {beside}: {e}");
        }
    }
    if breached {
        EXIT_BREACHED
    } else if interrupted {
        eprintln!(
            "interrupted: the run did not finish; the thresholds held over the partial run, but it passes nothing (exit {EXIT_INTERRUPTED})"
        );
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

/// The embedded double the run targets when no host is given: the hyper server of
/// `acs-harness serve`, which retains nothing per request.
mod embedded {
    use crate::auth::ConnectionString;
    use crate::double::DoubleConfig;
    use crate::double::serve::{RunningServer, Server};

    /// A running double: its URL and connection string; dropping it stops it.
    pub struct Running {
        pub url: url::Url,
        pub connection: ConnectionString,
        _server: RunningServer,
    }

    pub async fn start(prefix: &str, api_version: Option<&str>) -> Result<Running, String> {
        let mut config = DoubleConfig::default().record_requests(false);
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            config = config.prefix(format!("/{prefix}"));
        }
        if let Some(v) = api_version {
            config = config.api_version(v);
        }
        let server = Server::bind(config)
            .await
            .map_err(|e| format!("cannot start the embedded double: {e}"))?;
        let server = server.spawn();
        let url = url::Url::parse(server.uri())
            .map_err(|e| format!("the embedded double's address: {e}"))?;
        println!("load: no --host given; started the embedded double at {url}");
        Ok(Running {
            url,
            connection: server.connection_string(),
            _server: server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_plan_users() {
        assert_eq!(plan_users("10,30s;25,1m;0,10s"), 25);
        assert_eq!(plan_users("garbage"), 1);
    }

    #[test]
    fn options_map_onto_goose_configuration() {
        let args = LoadArgs {
            report_file: vec!["r.html".into(), "r.json".into()],
            baseline_file: Some("base.json".into()),
            co_mitigation: Some("average".into()),
            increase_rate: Some("2.5".into()),
            ..Default::default()
        };
        let plan = prepare(&LoadArgs {
            scenario: Some("call-creation".into()),
            threshold: vec!["POST /calls:p95<300ms".into()],
            run_time: Some("7s".into()),
            ..Default::default()
        })
        .unwrap();
        let a = goose_args(&args, &plan, "http://127.0.0.1:1", 3);
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
            c.threshold
                .contains(&"p95<300ms for POST /calls".to_string())
        );
        // The scenario's own thresholds come first.
        assert_eq!(c.threshold.len(), plan.file.thresholds.len() + 1);

        let with_plan = LoadArgs {
            test_plan: Some("4,2s;0,1s".into()),
            ..Default::default()
        };
        let c = goose::config::GooseConfiguration::parse_args_default(&goose_args(
            &with_plan, &plan, "http://x", 4,
        ))
        .unwrap();
        assert!(c.users.is_none() && !c.no_reset_metrics);
    }

    #[test]
    fn bad_options_do_not_start() {
        let bad = [
            LoadArgs {
                scenario: Some("nope".into()),
                ..Default::default()
            },
            LoadArgs {
                threshold: vec!["p95<<1s".into()],
                ..Default::default()
            },
            LoadArgs {
                run_time: Some("1.5s".into()),
                ..Default::default()
            },
            LoadArgs {
                bodies: Some("/nonexistent/bodies.jsonl".into()),
                ..Default::default()
            },
        ];
        for args in bad {
            assert!(prepare(&args).is_err());
        }
    }
}
