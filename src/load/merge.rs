//! `acs-harness report merge`: combines the JSON reports of a run's shards into one
//! report of the whole run and judges the thresholds on the merged data.
//!
//! Merging is exact: goose keeps each request's response times as buckets (bucket →
//! count, in `raw_metrics.requests[name].raw_data.times_us`), so summing the buckets of
//! every shard gives the buckets of the whole run, and a percentile of the sum is the
//! percentile of the run. Percentiles are never averaged.
//!
//! Decisions: the merged JSON keeps goose's top-level fields and `raw_metrics` (the
//! mergeable data, readable as goose's `GooseMetrics`) with an `acs_harness_merged` tag;
//! it leaves out goose's derived display tables, and merge refuses it as an input (merge
//! the shard reports instead). `rps` over a merged run is every request over the
//! combined span (earliest start to latest end, ramps included), since a shard's report
//! does not say how many requests fell in its hold phase. The reports this module and
//! `load` write reference nothing outside the file: the chart library is inlined.

use super::shard::{self, TAG_KEY, Tag};
use super::threshold::{self, Rule};
use super::{EXIT_BREACHED, EXIT_INTERRUPTED, EXIT_NOT_STARTED, EXIT_OK};
use chrono::{DateTime, Utc};
use goose::metrics::{GooseMetrics, GooseRequestMetricAggregate, GooseRequestMetricTimingData};
use goose::threshold::ThresholdResult;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The key of the tag a merged JSON report carries.
pub const MERGED_KEY: &str = "acs_harness_merged";

/// Largest shard report read (a 10-minute run's report is a few megabytes).
const MAX_REPORT_BYTES: u64 = 256 * 1024 * 1024;

/// Apache ECharts 5.2.2 (Apache-2.0), the chart library goose's HTML report loads from
/// a CDN; `assets/echarts.LICENSE`, `echarts.NOTICE` and `echarts.LICENSE-d3` keep its
/// licence texts.
const ECHARTS_JS: &str = include_str!("assets/echarts.min.js");
const ECHARTS_NOTICE: &str = include_str!("assets/echarts.NOTICE");

/// Options of `acs-harness report merge`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = "\
Exit code: 0 every threshold held, 1 one was breached, 2 the reports could not be
merged (or a shard was interrupted and no threshold failed).

Examples:
  acs-harness report merge shard-0.json shard-1.json shard-2.json \\
      --report-file merged.html --report-file merged.json
  acs-harness report merge reports/shard-*.json --threshold 'POST /calls:p95<300ms'")]
pub struct MergeArgs {
    /// The shards' JSON reports (`acs-harness load --shard I/N --report-file X.json`).
    #[arg(value_name = "SHARD.json", required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the merged report; the extension picks the kind (.html, .json, .md). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub report_file: Vec<String>,
    /// A threshold, `[REQUEST:]METRIC<VALUE`, judged on the merged data. Repeatable; adds
    /// to the scenario's.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
    /// Judge this scenario's thresholds [default: the thresholds the shards were given].
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
}

/// Why reports cannot be merged; always names the file at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct MergeError(pub String);

/// One shard's report as read.
#[derive(Debug)]
pub struct ShardReport {
    /// Where it was read from.
    pub file: String,
    /// The shard's tag.
    pub tag: Tag,
    /// goose's metrics.
    pub metrics: GooseMetrics,
    /// goose's version, as the report says.
    pub goose_version: String,
    /// First and last moment of the shard's run.
    pub span: (DateTime<Utc>, DateTime<Utc>),
    /// Whether the shard did not finish.
    pub interrupted: bool,
}

/// Reads a shard's report: a goose JSON report with the tag `load` adds.
pub fn read_shard(path: &Path) -> Result<ShardReport, MergeError> {
    let file = path.display().to_string();
    let fail = |why: String| MergeError(format!("{file}: {why}"));
    let handle = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(fail(format!(
            "larger than {} MiB, not a goose JSON report",
            MAX_REPORT_BYTES / 1024 / 1024
        )));
    }
    parse_shard(&file, &bytes)
}

/// [`read_shard`] on bytes already read; `file` names them in errors.
pub fn parse_shard(file: &str, bytes: &[u8]) -> Result<ShardReport, MergeError> {
    let fail = |why: String| MergeError(format!("{file}: {why}"));
    let not_goose = |why: String| fail(format!("not a goose JSON report ({why})"));
    let mut doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| not_goose(format!("not JSON: {e}")))?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(not_goose("not a JSON object".into()));
    };
    let goose_version = obj
        .get("goose_version")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| not_goose("no goose_version".into()))?;
    if obj.contains_key(MERGED_KEY) {
        return Err(fail(
            "is a merged report; merge the shards' own reports instead".into(),
        ));
    }
    let raw = obj
        .remove("raw_metrics")
        .ok_or_else(|| not_goose("no raw_metrics".into()))?;
    let metrics: GooseMetrics =
        serde_json::from_value(raw).map_err(|e| not_goose(format!("raw_metrics: {e}")))?;
    let tag = match obj.remove(TAG_KEY) {
        Some(t) => serde_json::from_value::<Tag>(t)
            .map_err(|e| fail(format!("its {TAG_KEY} tag is unreadable: {e}")))?,
        None => {
            return Err(fail(format!(
                "a goose JSON report without the {TAG_KEY} tag that `acs-harness load --report-file X.json` adds"
            )));
        }
    };
    let time = |key: &str| {
        obj.get(key)
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let first = metrics.history.iter().map(|h| h.timestamp).min();
    let last = metrics.history.iter().map(|h| h.timestamp).max();
    let start = first.or_else(|| time("started"));
    let end = match (last, time("ended")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (Some(start), Some(end)) = (start, end) else {
        return Err(not_goose("no start and end time".into()));
    };
    let in_progress = obj
        .get("in_progress")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(ShardReport {
        file: file.to_string(),
        interrupted: tag.interrupted || in_progress,
        tag,
        metrics,
        goose_version,
        span: (start, end.max(start)),
    })
}

/// Checks that `reports` are the shards 0…N-1 of one run, each once; returns them in
/// index order.
pub fn check_set(mut reports: Vec<ShardReport>) -> Result<Vec<ShardReport>, MergeError> {
    let Some(first) = reports.first() else {
        return Err(MergeError("no report to merge".into()));
    };
    let (count, seed, scenario_id) = (
        first.tag.count,
        first.tag.seed,
        first.tag.scenario_id.clone(),
    );
    let (first_file, first_scenario) = (first.file.clone(), first.tag.scenario.clone());
    for r in &reports {
        if r.tag.count != count {
            return Err(MergeError(format!(
                "{}: shard {}/{} of a run of {} shards, but {first_file} is of a run of {count}",
                r.file, r.tag.index, r.tag.count, r.tag.count
            )));
        }
        if r.tag.scenario_id != scenario_id {
            return Err(MergeError(format!(
                "{}: ran scenario {} ({}), but {first_file} ran {first_scenario} ({scenario_id})",
                r.file, r.tag.scenario, r.tag.scenario_id
            )));
        }
        if r.tag.seed != seed {
            return Err(MergeError(format!(
                "{}: run seed {}, but {first_file} has run seed {seed}: not the same run",
                r.file, r.tag.seed
            )));
        }
    }
    reports.sort_by_key(|r| r.tag.index);
    for pair in reports.windows(2) {
        if pair[0].tag.index == pair[1].tag.index {
            return Err(MergeError(format!(
                "{}: shard {}/{count} again (also in {})",
                pair[1].file, pair[1].tag.index, pair[0].file
            )));
        }
    }
    let have: BTreeSet<usize> = reports.iter().map(|r| r.tag.index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| !have.contains(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError(format!(
            "missing shard report{} {}: the run had {count} shards, given {}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            reports
                .iter()
                .map(|r| r.file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(reports)
}

/// Adds `b`'s times to `a`'s: buckets summed, fastest and slowest combined.
pub fn merge_times(a: &mut GooseRequestMetricTimingData, b: &GooseRequestMetricTimingData) {
    if b.counter == 0 && b.times_us.is_empty() {
        return;
    }
    let mut sum: BTreeMap<u64, usize> = a.times_us.iter().map(|(&k, &v)| (k, v)).collect();
    for (&bucket, &count) in b.times_us.iter() {
        *sum.entry(bucket).or_default() += count;
    }
    a.times_us = sum.into_iter().collect();
    if b.counter > 0 && (a.counter == 0 || b.minimum_time_us < a.minimum_time_us) {
        a.minimum_time_us = b.minimum_time_us;
    }
    a.maximum_time_us = a.maximum_time_us.max(b.maximum_time_us);
    a.total_time_us += b.total_time_us;
    a.counter += b.counter;
}

fn merge_request(a: &mut GooseRequestMetricAggregate, b: &GooseRequestMetricAggregate) {
    merge_times(&mut a.raw_data, &b.raw_data);
    match (
        &mut a.coordinated_omission_data,
        &b.coordinated_omission_data,
    ) {
        (Some(x), Some(y)) => merge_times(x, y),
        (x @ None, Some(y)) => *x = Some(y.clone()),
        _ => {}
    }
    for (code, n) in &b.status_code_counts {
        *a.status_code_counts.entry(*code).or_default() += n;
    }
    for (code, t) in &b.status_code_timings {
        let s = a.status_code_timings.entry(*code).or_default();
        if t.count > 0 && (s.count == 0 || t.min_time_us < s.min_time_us) {
            s.min_time_us = t.min_time_us;
        }
        s.max_time_us = s.max_time_us.max(t.max_time_us);
        s.count += t.count;
        s.total_time_us += t.total_time_us;
    }
    a.success_count += b.success_count;
    a.fail_count += b.fail_count;
}

/// The whole run, merged from its shards.
#[derive(Debug)]
pub struct Merged {
    /// goose's metrics of the whole run (thresholds not yet judged).
    pub metrics: GooseMetrics,
    /// The shards, in index order.
    pub shards: Vec<ShardSummary>,
    /// Earliest start and latest end.
    pub span: (DateTime<Utc>, DateTime<Utc>),
    /// A shard did not finish.
    pub interrupted: bool,
    /// The run's seed.
    pub seed: u64,
    /// The scenario as the shards name it.
    pub scenario: String,
    /// Its fingerprint.
    pub scenario_id: String,
    /// The thresholds the shards were given.
    pub shard_thresholds: Vec<String>,
    /// goose's version.
    pub goose_version: String,
}

/// What the merged report shows of each shard.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardSummary {
    /// Its report file.
    pub file: String,
    /// Index.
    pub index: usize,
    /// Users it ran.
    pub users: usize,
    /// Its body seed.
    pub shard_seed: u64,
    /// Target.
    pub host: String,
    /// Requests it made.
    pub requests: usize,
    /// Of which failed.
    pub failures: usize,
    /// Start.
    pub started: DateTime<Utc>,
    /// End.
    pub ended: DateTime<Utc>,
    /// Whether it was interrupted.
    pub interrupted: bool,
}

impl Merged {
    /// Seconds from the earliest start to the latest end.
    pub fn seconds(&self) -> f64 {
        (self.span.1 - self.span.0)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64()
    }

    /// Every request of every name together: counts, failures, times.
    pub fn totals(&self) -> (usize, usize, GooseRequestMetricTimingData) {
        let mut times = GooseRequestMetricTimingData::default();
        let (mut requests, mut failures) = (0, 0);
        for r in self.metrics.requests.values() {
            requests += r.success_count + r.fail_count;
            failures += r.fail_count;
            merge_times(&mut times, &r.raw_data);
        }
        (requests, failures, times)
    }
}

/// Merges checked shard reports (see [`check_set`]) into the whole run.
pub fn merge(reports: &[ShardReport]) -> Result<Merged, MergeError> {
    let first = reports
        .first()
        .ok_or_else(|| MergeError("no report to merge".into()))?;
    let mut m = first.metrics.clone();
    m.requests.clear();
    m.transactions.clear();
    m.transaction_errors.clear();
    m.errors.clear();
    m.hosts.clear();
    m.history.clear();
    m.thresholds.clear();
    m.coordinated_omission_metrics = None;
    m.maximum_users = 0;
    m.total_users = 0;
    for s in &mut m.scenarios {
        s.users.clear();
        s.run_times = GooseRequestMetricTimingData::default();
    }
    let mut user_offset = 0;
    let mut shards = Vec::new();
    for r in reports {
        let g = &r.metrics;
        for (name, agg) in &g.requests {
            match m.requests.get_mut(name) {
                Some(a) => merge_request(a, agg),
                None => {
                    m.requests.insert(name.clone(), agg.clone());
                }
            }
        }
        for (si, list) in g.transactions.iter().enumerate() {
            if m.transactions.len() <= si {
                m.transactions.push(Vec::new());
            }
            for (ti, t) in list.iter().enumerate() {
                match m.transactions[si].get_mut(ti) {
                    Some(a) => {
                        merge_times(&mut a.run_times, &t.run_times);
                        a.success_count += t.success_count;
                        a.fail_count += t.fail_count;
                    }
                    None => m.transactions[si].push(t.clone()),
                }
            }
        }
        for s in &g.scenarios {
            let users = s.users.iter().map(|u| u + user_offset);
            match m.scenarios.iter_mut().find(|x| x.index == s.index) {
                Some(a) => {
                    merge_times(&mut a.run_times, &s.run_times);
                    a.users.extend(users);
                }
                None => {
                    let mut c = s.clone();
                    c.users = users.collect::<HashSet<_>>();
                    m.scenarios.push(c);
                }
            }
        }
        for (k, e) in &g.errors {
            match m.errors.get_mut(k) {
                Some(a) => a.occurrences += e.occurrences,
                None => {
                    m.errors.insert(k.clone(), e.clone());
                }
            }
        }
        for (k, e) in &g.transaction_errors {
            match m.transaction_errors.get_mut(k) {
                Some(a) => a.occurrences += e.occurrences,
                None => {
                    m.transaction_errors.insert(k.clone(), e.clone());
                }
            }
        }
        m.hosts.extend(g.hosts.iter().cloned());
        m.history.extend(g.history.iter().cloned());
        m.maximum_users += g.maximum_users;
        m.total_users += g.total_users;
        if let Some(co) = &g.coordinated_omission_metrics {
            match &mut m.coordinated_omission_metrics {
                Some(a) => {
                    a.actual_requests += co.actual_requests;
                    a.synthetic_requests += co.synthetic_requests;
                    a.co_events.extend(co.co_events.iter().cloned());
                    for (k, v) in &co.severity_histogram {
                        *a.severity_histogram.entry(*k).or_default() += v;
                    }
                    let all = a.actual_requests + a.synthetic_requests;
                    a.synthetic_percentage = if all == 0 {
                        0.0
                    } else {
                        a.synthetic_requests as f32 / all as f32 * 100.0
                    };
                }
                none => *none = Some(co.clone()),
            }
        }
        user_offset += r.tag.users.max(g.maximum_users);
        let requests = g
            .requests
            .values()
            .map(|a| a.success_count + a.fail_count)
            .sum();
        let failures = g.requests.values().map(|a| a.fail_count).sum();
        shards.push(ShardSummary {
            file: r.file.clone(),
            index: r.tag.index,
            users: r.tag.users,
            shard_seed: r.tag.shard_seed,
            host: r.tag.host.clone(),
            requests,
            failures,
            started: r.span.0,
            ended: r.span.1,
            interrupted: r.interrupted,
        });
    }
    m.history.sort_by_key(|h| h.timestamp);
    let start = reports
        .iter()
        .map(|r| r.span.0)
        .min()
        .unwrap_or(first.span.0);
    let end = reports
        .iter()
        .map(|r| r.span.1)
        .max()
        .unwrap_or(first.span.1);
    m.duration = (end - start).num_seconds().max(0) as usize;
    Ok(Merged {
        metrics: m,
        shards,
        span: (start, end),
        interrupted: reports.iter().any(|r| r.interrupted),
        seed: first.tag.seed,
        scenario: first.tag.scenario.clone(),
        scenario_id: first.tag.scenario_id.clone(),
        shard_thresholds: first.tag.thresholds.clone(),
        goose_version: first.goose_version.clone(),
    })
}

/// A goose rule (`p95<300ms for POST /calls`) taken apart; goose has checked its syntax.
struct Parsed<'a> {
    metric: &'a str,
    op: &'a str,
    limit: f64,
    request: Option<&'a str>,
}

fn parse_goose_rule(rule: &str) -> Option<Parsed<'_>> {
    let at = rule.find(['<', '>', '='])?;
    let metric = rule[..at].trim();
    let rest = &rule[at..];
    let op_len = if rest.starts_with("<=") || rest.starts_with(">=") {
        2
    } else {
        1
    };
    let op = &rest[..op_len];
    let rest = rest[op_len..].trim();
    let (value, request) = match rest.split_once(" for ") {
        Some((v, r)) => (v.trim(), Some(r.trim())),
        None => (rest, None),
    };
    let number = |s: &str| s.trim().parse::<f64>().ok();
    let limit = match metric {
        "error-rate" => number(value.trim_end_matches('%'))?,
        "rps" => number(value)?,
        _ => {
            if let Some(n) = value.strip_suffix("us") {
                number(n)?
            } else if let Some(n) = value.strip_suffix("ms") {
                number(n)? * 1_000.0
            } else if let Some(n) = value.strip_suffix('s') {
                number(n)? * 1_000_000.0
            } else {
                number(value)? * 1_000.0
            }
        }
    };
    Some(Parsed {
        metric,
        op,
        limit,
        request,
    })
}

fn short(n: f64) -> String {
    let t = format!("{n:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Judges `rules` on the merged run with goose's rules (percentiles of the buckets,
/// mean, slowest, error rate, requests per second over the combined span); a rule
/// with no samples fails, as goose judges it at the end of a run.
pub fn judge(rules: &[Rule], merged: &Merged) -> Vec<ThresholdResult> {
    let seconds = merged.seconds();
    let all = merged.totals();
    rules
        .iter()
        .map(|rule| {
            let observed = parse_goose_rule(&rule.goose).and_then(|p| {
                let (requests, failures, times) = match p.request {
                    Some(name) => {
                        let a = merged.metrics.requests.get(name)?;
                        (a.success_count + a.fail_count, a.fail_count, &a.raw_data)
                    }
                    None => (all.0, all.1, &all.2),
                };
                let time = |us: f64| (us, us / 1_000.0, format!("{}ms", short(us / 1_000.0)));
                let (compared, value, shown) = match p.metric {
                    "avg" if times.counter > 0 => {
                        time(times.total_time_us as f64 / times.counter as f64)
                    }
                    "max" if times.counter > 0 => time(times.maximum_time_us as f64),
                    "error-rate" if requests > 0 => {
                        let pct = failures as f64 / requests as f64 * 100.0;
                        (pct, pct, format!("{}%", short(pct)))
                    }
                    "rps" if requests > 0 && seconds >= 1.0 => {
                        let r = requests as f64 / seconds;
                        (r, r, format!("{} over the run", short(r)))
                    }
                    m if m.starts_with('p') && times.counter > 0 => {
                        let pct: f64 = m[1..].parse().ok()?;
                        time(times.percentile_us((pct / 100.0) as f32) as f64)
                    }
                    _ => return None,
                };
                let passed = match p.op {
                    "<" => compared < p.limit,
                    "<=" => compared <= p.limit,
                    ">" => compared > p.limit,
                    _ => compared >= p.limit,
                };
                Some((value, shown, passed))
            });
            match observed {
                Some((value, shown, passed)) => ThresholdResult {
                    rule: rule.goose.clone(),
                    observed: shown,
                    value: Some(value),
                    passed,
                    aborted: false,
                },
                None => ThresholdResult {
                    rule: rule.goose.clone(),
                    observed: "no samples".into(),
                    value: None,
                    passed: false,
                    aborted: false,
                },
            }
        })
        .collect()
}

/// The kind of a report file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Html,
    Markdown,
}

fn kind_of(file: &str) -> Result<Kind, String> {
    let ext = Path::new(file)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "json" => Ok(Kind::Json),
        "html" | "htm" => Ok(Kind::Html),
        "md" => Ok(Kind::Markdown),
        _ => Err(format!(
            "--report-file {file}: the extension must be .html, .json or .md"
        )),
    }
}

/// Runs `acs-harness report merge`; returns the exit status (0 held, 1 breached, 2
/// could not merge or a shard was interrupted).
pub fn run(args: MergeArgs) -> u8 {
    match run_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            crate::output::eprintln(&format!("error: {e}"));
            EXIT_NOT_STARTED
        }
    }
}

fn run_inner(args: &MergeArgs) -> Result<u8, String> {
    let mut outputs = Vec::new();
    for f in &args.report_file {
        outputs.push((f.clone(), kind_of(f)?));
        crate::output::check_writable(Path::new(f))?;
    }
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push(read_shard(path).map_err(|e| e.0)?);
    }
    let reports = check_set(reports).map_err(|e| e.0)?;
    let mut merged = merge(&reports).map_err(|e| e.0)?;
    let mut texts: Vec<String> = match &args.scenario {
        Some(s) => {
            let file = super::scenario::load(&super::scenario::ScenarioRef::from_arg(s))
                .map_err(|e| e.to_string())?;
            let id = shard::scenario_id(&file);
            if id != merged.scenario_id {
                return Err(format!(
                    "--scenario {s}: not the scenario the shards ran ({}, {})",
                    merged.scenario, merged.scenario_id
                ));
            }
            file.thresholds
        }
        None => merged.shard_thresholds.clone(),
    };
    texts.extend(args.threshold.iter().cloned());
    let mut rules = Vec::new();
    for t in &texts {
        rules.push(Rule::parse(t).map_err(|e| e.to_string())?);
    }
    merged.metrics.thresholds = judge(&rules, &merged);
    let (requests, failures, _) = merged.totals();
    crate::output::println(&format!(
        "merged {} shards of scenario {} (seed {}): {requests} requests, {failures} failed, {:.1}s, {:.2} req/s",
        merged.shards.len(),
        merged.scenario,
        merged.seed,
        merged.seconds(),
        requests as f64 / merged.seconds().max(f64::MIN_POSITIVE)
    ));
    crate::output::print(&markdown_requests(&merged));
    if !rules.is_empty() {
        crate::output::println("\nThresholds");
        crate::output::print(&threshold::table(&rules, &merged.metrics.thresholds));
    }
    for (file, kind) in &outputs {
        let text = match kind {
            Kind::Json => json_report(&merged, &rules)?,
            Kind::Html => html_report(&merged, &rules),
            Kind::Markdown => markdown_report(&merged, &rules),
        };
        crate::output::write_atomic(Path::new(file), text.as_bytes())
            .map_err(|e| format!("{file}: {e}"))?;
        crate::output::println(&format!("wrote {file}"));
    }
    let breached = merged.metrics.thresholds.iter().any(|r| !r.passed);
    Ok(if breached {
        EXIT_BREACHED
    } else if merged.interrupted {
        let which: Vec<String> = merged
            .shards
            .iter()
            .filter(|s| s.interrupted)
            .map(|s| format!("{} ({})", s.index, s.file))
            .collect();
        crate::output::eprintln(&format!(
            "interrupted: shard {} did not finish; the thresholds held over the partial run, but it passes nothing (exit {EXIT_INTERRUPTED})",
            which.join(", ")
        ));
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// The merged JSON report: goose's top-level fields and `raw_metrics`, with the merge tag.
pub fn json_report(merged: &Merged, rules: &[Rule]) -> Result<String, String> {
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let doc = serde_json::json!({
        "goose_version": merged.goose_version,
        "test": "acs-harness",
        "started": rfc(merged.span.0),
        "ended": rfc(merged.span.1),
        "ended_by": if merged.interrupted { "canceled" } else { "completed" },
        "in_progress": false,
        "raw_metrics": serde_json::to_value(&merged.metrics).map_err(|e| e.to_string())?,
        MERGED_KEY: {
            "shards": merged.shards,
            "seed": merged.seed,
            "scenario": merged.scenario,
            "scenarioId": merged.scenario_id,
            "interrupted": merged.interrupted,
            "seconds": merged.seconds(),
            "thresholds": serde_json::from_str::<serde_json::Value>(
                &threshold::json(
                    rules,
                    &merged.metrics.thresholds,
                    if merged.interrupted {
                        threshold::RunState::Interrupted
                    } else {
                        threshold::RunState::Finished
                    },
                    None,
                )
            ).unwrap_or_default(),
        },
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    Ok(crate::redact::scrub(&text).into_owned())
}

/// One row of the per-request table.
struct Row {
    name: String,
    requests: usize,
    failures: usize,
    times: GooseRequestMetricTimingData,
    codes: String,
}

fn rows(merged: &Merged) -> Vec<Row> {
    let mut names: Vec<&String> = merged.metrics.requests.keys().collect();
    names.sort();
    let codes = |a: &GooseRequestMetricAggregate| {
        let mut c: Vec<(&u16, &usize)> = a.status_code_counts.iter().collect();
        c.sort();
        c.iter()
            .map(|(code, n)| format!("{n} [{code}]"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out: Vec<Row> = names
        .into_iter()
        .map(|n| {
            let a = &merged.metrics.requests[n];
            Row {
                name: n.clone(),
                requests: a.success_count + a.fail_count,
                failures: a.fail_count,
                times: a.raw_data.clone(),
                codes: codes(a),
            }
        })
        .collect();
    let (requests, failures, times) = merged.totals();
    let mut all: BTreeMap<u16, usize> = BTreeMap::new();
    for a in merged.metrics.requests.values() {
        for (c, n) in &a.status_code_counts {
            *all.entry(*c).or_default() += n;
        }
    }
    out.push(Row {
        name: "Aggregated".into(),
        requests,
        failures,
        times,
        codes: all
            .iter()
            .map(|(c, n)| format!("{n} [{c}]"))
            .collect::<Vec<_>>()
            .join(", "),
    });
    out
}

const PERCENTILES: [(f32, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")];

fn ms(us: u64) -> String {
    short(us as f64 / 1000.0)
}

/// The cells of a row: name, requests, fails, req/s, avg, min, max, percentiles, codes.
fn cells(r: &Row, seconds: f64) -> Vec<String> {
    let mut c = vec![
        r.name.clone(),
        r.requests.to_string(),
        r.failures.to_string(),
        short(r.requests as f64 / seconds.max(f64::MIN_POSITIVE)),
    ];
    if r.times.counter > 0 {
        c.push(short(r.times.average_ms()));
        c.push(ms(r.times.minimum_time_us));
        c.push(ms(r.times.maximum_time_us));
        for (p, _) in PERCENTILES {
            c.push(ms(r.times.percentile_us(p)));
        }
    } else {
        c.extend(std::iter::repeat_n("-".to_string(), 3 + PERCENTILES.len()));
    }
    c.push(r.codes.clone());
    c
}

fn headers() -> Vec<String> {
    let mut h: Vec<String> = [
        "request", "requests", "fails", "req/s", "avg ms", "min ms", "max ms",
    ]
    .map(String::from)
    .to_vec();
    h.extend(PERCENTILES.map(|(_, n)| format!("{n} ms")));
    h.push("status codes".into());
    h
}

fn md_table(head: &[String], body: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} |",
        head.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for row in body {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

fn markdown_requests(merged: &Merged) -> String {
    let seconds = merged.seconds();
    let body: Vec<Vec<String>> = rows(merged).iter().map(|r| cells(r, seconds)).collect();
    md_table(&headers(), &body)
}

fn shard_cells(s: &ShardSummary) -> Vec<String> {
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    vec![
        s.index.to_string(),
        s.file.clone(),
        s.users.to_string(),
        s.requests.to_string(),
        s.failures.to_string(),
        rfc(s.started),
        rfc(s.ended),
        if s.interrupted {
            "interrupted"
        } else {
            "finished"
        }
        .into(),
    ]
}

const SHARD_HEAD: [&str; 8] = [
    "shard", "report", "users", "requests", "fails", "started", "ended", "status",
];

fn threshold_cells(rules: &[Rule], results: &[ThresholdResult]) -> Vec<Vec<String>> {
    rules
        .iter()
        .zip(results)
        .map(|(r, t)| {
            vec![
                r.text.clone(),
                t.observed.clone(),
                if t.passed { "PASS" } else { "FAIL" }.into(),
            ]
        })
        .collect()
}

fn verdict(merged: &Merged) -> &'static str {
    if merged.metrics.thresholds.iter().any(|r| !r.passed) {
        "FAIL: a threshold was breached"
    } else if merged.interrupted {
        "INTERRUPTED: a shard did not finish"
    } else {
        "PASS"
    }
}

/// The merged Markdown report.
pub fn markdown_report(merged: &Merged, rules: &[Rule]) -> String {
    let mut out = String::new();
    let (requests, failures, _) = merged.totals();
    let _ = writeln!(out, "# acs-harness merged load report\n");
    let _ = writeln!(
        out,
        "Scenario {}, seed {}, {} shards, {} users, {} to {} ({:.1}s): {requests} requests, {failures} failed. Verdict: {}.\n",
        merged.scenario,
        merged.seed,
        merged.shards.len(),
        merged.metrics.maximum_users,
        merged
            .span
            .0
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        merged
            .span
            .1
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        merged.seconds(),
        verdict(merged)
    );
    let _ = writeln!(out, "## Requests\n\n{}", markdown_requests(merged));
    if !rules.is_empty() {
        let _ = writeln!(
            out,
            "## Thresholds\n\n{}",
            md_table(
                &["threshold", "measured", "result"].map(String::from),
                &threshold_cells(rules, &merged.metrics.thresholds)
            )
        );
    }
    let shards: Vec<Vec<String>> = merged.shards.iter().map(shard_cells).collect();
    let _ = writeln!(
        out,
        "## Shards\n\n{}",
        md_table(&SHARD_HEAD.map(String::from), &shards)
    );
    crate::redact::scrub(&out).into_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(head: &[String], body: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in body {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The merged HTML report: one self-contained file (the chart library inlined).
pub fn html_report(merged: &Merged, rules: &[Rule]) -> String {
    let seconds = merged.seconds();
    let (requests, failures, all) = merged.totals();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p>Scenario <b>{}</b>, seed {}, {} shards, {} users, {} to {} ({:.1}s): {requests} requests, {failures} failed, {} req/s.</p><p class=\"verdict\">Verdict: <b>{}</b></p>",
        escape(&merged.scenario),
        merged.seed,
        merged.shards.len(),
        merged.metrics.maximum_users,
        merged
            .span
            .0
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        merged
            .span
            .1
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        seconds,
        short(requests as f64 / seconds.max(f64::MIN_POSITIVE)),
        verdict(merged)
    );
    let table: Vec<Vec<String>> = rows(merged).iter().map(|r| cells(r, seconds)).collect();
    let _ = writeln!(body, "<h2>Requests</h2>{}", html_table(&headers(), &table));
    if !rules.is_empty() {
        let _ = writeln!(
            body,
            "<h2>Thresholds</h2>{}",
            html_table(
                &["threshold", "measured", "result"].map(String::from),
                &threshold_cells(rules, &merged.metrics.thresholds)
            )
        );
    }
    // The response-time distribution of the whole run, from the merged buckets.
    let points: Vec<(String, usize)> = all.times_us.iter().map(|(&b, &n)| (ms(b), n)).collect();
    let data = serde_json::to_string(&points).unwrap_or_else(|_| "[]".into());
    let _ = writeln!(
        body,
        "<h2>Response times (all requests)</h2><div id=\"times\" class=\"chart\"></div>\n<script>\n(function() {{\n  var points = {data};\n  var chart = echarts.init(document.getElementById('times'));\n  chart.setOption({{\n    tooltip: {{ trigger: 'axis' }},\n    xAxis: {{ type: 'category', name: 'ms (bucket start)', data: points.map(function(p) {{ return p[0]; }}) }},\n    yAxis: {{ type: 'value', name: 'requests' }},\n    series: [{{ type: 'bar', data: points.map(function(p) {{ return p[1]; }}) }}]\n  }});\n}})();\n</script>"
    );
    let shards: Vec<Vec<String>> = merged.shards.iter().map(shard_cells).collect();
    let _ = writeln!(
        body,
        "<h2>Shards</h2>{}",
        html_table(&SHARD_HEAD.map(String::from), &shards)
    );
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>acs-harness merged load report</title>\n<style>\nbody {{ font-family: sans-serif; margin: 2em; color: #222; }}\ntable {{ border-collapse: collapse; margin-bottom: 1.5em; }}\nth, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}\nth:first-child, td:first-child {{ text-align: left; }}\n.chart {{ width: 100%; height: 360px; }}\n</style>\n<script src=\"https://cdn.jsdelivr.net/npm/echarts@5.2.2/dist/echarts.min.js\"></script>\n</head>\n<body>\n<h1>acs-harness merged load report</h1>\n{body}</body>\n</html>\n"
    );
    offline_html(&crate::redact::scrub(&page))
}

/// `html` with goose's CDN chart library (`<script src="https://…/echarts…">`) replaced by
/// the library shipped in the binary, so the report renders without a network.
pub fn offline_html(html: &str) -> String {
    static TAG: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = TAG.get_or_init(|| {
        regex::Regex::new(r#"<script[^>]*\ssrc="https?://[^"]*echarts[^"]*"[^>]*>\s*</script>"#)
            .unwrap_or_else(|_| unreachable!("the pattern is a valid regex"))
    });
    if !re.is_match(html) {
        return html.to_string();
    }
    let inline = format!(
        "<!-- Apache ECharts 5.2.2, Apache License 2.0.\n{}-->\n<script>\n{}\n</script>",
        ECHARTS_NOTICE.replace("--", "- -"),
        ECHARTS_JS.replace("</script", "<\\/script")
    );
    re.replace_all(html, regex::NoExpand(&inline)).into_owned()
}

/// After `load` wrote its reports: tags each JSON report with the shard, and inlines the
/// chart library into each HTML report. A failure is a warning: the run itself is done.
pub fn finish_reports(files: &[String], tag: &Tag) {
    for file in files {
        let path = Path::new(file);
        let done = match kind_of(file) {
            Ok(Kind::Json) => shard::tag_report(path, tag),
            Ok(Kind::Html) => std::fs::read_to_string(path)
                .map_err(|e| format!("{file}: {e}"))
                .and_then(|html| {
                    crate::output::write_atomic(path, offline_html(&html).as_bytes())
                        .map_err(|e| format!("{file}: {e}"))
                }),
            _ => Ok(()),
        };
        if let Err(e) = done {
            crate::output::eprintln(&format!("warning: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A goose JSON report of one request name with `buckets` (µs → count), tagged as
    /// shard `index`/`count`.
    fn report(
        index: usize,
        count: usize,
        seed: u64,
        buckets: &[(u64, usize)],
    ) -> serde_json::Value {
        let counter: usize = buckets.iter().map(|b| b.1).sum();
        let total: u64 = buckets.iter().map(|(b, n)| b * *n as u64).sum();
        let min = buckets.iter().map(|b| b.0).min().unwrap_or(0);
        let max = buckets.iter().map(|b| b.0).max().unwrap_or(0);
        let times: serde_json::Map<String, serde_json::Value> = buckets
            .iter()
            .map(|(b, n)| (b.to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "goose_version": "0.19.0",
            "test": "acs-harness",
            "started": format!("2026-12-02T10:00:0{index}Z"),
            "ended": format!("2026-12-02T10:00:1{index}Z"),
            "ended_by": "completed",
            "in_progress": false,
            "raw_metrics": {
                "hash": 0,
                "history": [
                    {"action": "Increasing", "timestamp": format!("2026-12-02T10:00:0{index}Z"), "users": 0},
                    {"action": "Finished", "timestamp": format!("2026-12-02T10:00:1{index}Z"), "users": 0}
                ],
                "duration": 10, "maximum_users": 2, "total_users": 2,
                "requests": {
                    "POST /calls": {
                        "path": "/calls", "method": "Post",
                        "raw_data": {
                            "minimum_time": 0, "maximum_time": 0, "total_time": 0, "counter": counter,
                            "times_us": times, "minimum_time_us": min, "maximum_time_us": max,
                            "total_time_us": total
                        },
                        "coordinated_omission_data": null,
                        "status_code_counts": {"200": counter - 1, "500": 1},
                        "success_count": counter - 1, "fail_count": 1,
                        "load_test_hash": 0
                    }
                },
                "transactions": [], "scenarios": [], "errors": {},
                "hosts": ["http://127.0.0.1:1/"],
                "coordinated_omission_metrics": null,
                "final_metrics": true, "display_status_codes": true, "display_metrics": true
            },
            "acs_harness_shard": {
                "index": index, "count": count, "seed": seed, "shardSeed": index as u64 + 100,
                "scenario": "scenarios/call-creation.toml", "scenarioId": "abc",
                "host": "http://127.0.0.1:1/", "users": 2, "thresholds": ["error-rate<50%"],
                "interrupted": false
            }
        })
    }

    fn shard(v: &serde_json::Value, file: &str) -> ShardReport {
        parse_shard(file, v.to_string().as_bytes()).unwrap()
    }

    fn three() -> Vec<ShardReport> {
        vec![
            shard(&report(0, 3, 7, &[(1000, 2), (2048, 1)]), "a.json"),
            shard(&report(1, 3, 7, &[(1000, 1), (4096, 3)]), "b.json"),
            shard(&report(2, 3, 7, &[(512, 5)]), "c.json"),
        ]
    }

    fn refused(reports: Vec<ShardReport>) -> String {
        check_set(reports).unwrap_err().0
    }

    #[test]
    fn merged_counts_buckets_and_extremes_are_exact() {
        let m = merge(&check_set(three()).unwrap()).unwrap();
        let r = &m.metrics.requests["POST /calls"];
        assert_eq!(r.success_count + r.fail_count, 12);
        assert_eq!(r.fail_count, 3);
        assert_eq!(r.status_code_counts[&200], 9);
        let buckets: Vec<(u64, usize)> =
            r.raw_data.times_us.iter().map(|(&b, &n)| (b, n)).collect();
        assert_eq!(buckets, [(512, 5), (1000, 3), (2048, 1), (4096, 3)]);
        assert_eq!(r.raw_data.counter, 12);
        assert_eq!(
            (r.raw_data.minimum_time_us, r.raw_data.maximum_time_us),
            (512, 4096)
        );
        assert_eq!(m.metrics.maximum_users, 6);
        // Run span: earliest start (shard 0, :00) to latest end (shard 2, :12).
        assert_eq!(m.seconds(), 12.0);
        assert!(!m.interrupted);
    }

    #[test]
    fn thresholds_are_judged_on_the_merged_data() {
        let m = merge(&check_set(three()).unwrap()).unwrap();
        let rules: Vec<Rule> = [
            "error-rate<20%",
            "error-rate<30%",
            "POST /calls:max<=4096us",
            "max<4ms",
            "rps>=1",
            "POST /calls/{callId}/Hangup:p95<1s",
        ]
        .iter()
        .map(|r| Rule::parse(r).unwrap())
        .collect();
        let judged = judge(&rules, &m);
        let passed: Vec<bool> = judged.iter().map(|r| r.passed).collect();
        // 3 of 12 failed: 25%; max 4.096ms; 12 requests over 12s = 1 rps; no Hangup.
        assert_eq!(passed, [false, true, true, false, true, false]);
        assert_eq!(judged[0].observed, "25%");
        assert_eq!(judged[5].observed, "no samples");
        let p = judge(&[Rule::parse("p50<1s").unwrap()], &m);
        let mut union = GooseRequestMetricTimingData::default();
        for r in three() {
            merge_times(&mut union, &r.metrics.requests["POST /calls"].raw_data);
        }
        assert_eq!(p[0].value, Some(union.percentile_us(0.5) as f64 / 1000.0));
    }

    #[test]
    fn awaited_event_rows_merge_like_requests_and_are_judged() {
        // goose records an awaited event as a custom request: method `Custom`, key `EVENT X`.
        let with_event = |index: usize, buckets: &[(u64, usize)]| {
            let mut v = report(index, 2, 7, &[(1000, 2)]);
            let calls = v["raw_metrics"]["requests"]["POST /calls"].clone();
            let mut event =
                report(index, 2, 7, buckets)["raw_metrics"]["requests"]["POST /calls"].clone();
            event["path"] = "PlayAudioResult".into();
            event["method"] = "Custom".into();
            event["status_code_counts"] = serde_json::json!({"0": 0});
            v["raw_metrics"]["requests"] = serde_json::json!({
                "POST /calls": calls,
                "EVENT PlayAudioResult": event,
            });
            shard(&v, &format!("{index}.json"))
        };
        let m = merge(
            &check_set(vec![
                with_event(0, &[(40_000, 4), (90_000, 1)]),
                with_event(1, &[(2_000_000, 3)]),
            ])
            .unwrap(),
        )
        .unwrap();
        let e = &m.metrics.requests["EVENT PlayAudioResult"];
        assert_eq!((e.raw_data.counter, e.fail_count), (8, 2));
        assert_eq!(e.raw_data.maximum_time_us, 2_000_000);
        let rules: Vec<Rule> = [
            "EVENT PlayAudioResult:p50<100ms",
            "EVENT PlayAudioResult:max<1s",
        ]
        .iter()
        .map(|r| Rule::parse(r).unwrap())
        .collect();
        let passed: Vec<bool> = judge(&rules, &m).iter().map(|r| r.passed).collect();
        assert_eq!(passed, [true, false]);
        assert!(rows(&m).iter().any(|r| r.name == "EVENT PlayAudioResult"));
    }

    #[test]
    fn reports_of_other_runs_are_refused_naming_the_file() {
        let mut r = three();
        r[1] = shard(&report(1, 3, 8, &[(1000, 1)]), "other-seed.json");
        let e = refused(r);
        assert!(e.starts_with("other-seed.json: run seed 8"), "{e}");

        let mut other = report(1, 3, 7, &[(1000, 1)]);
        other["acs_harness_shard"]["scenarioId"] = "def".into();
        let mut r = three();
        r[1] = shard(&other, "other-scenario.json");
        let e = refused(r);
        assert!(e.starts_with("other-scenario.json: ran scenario"), "{e}");

        let mut r = three();
        r[2] = shard(&report(2, 4, 7, &[(1000, 1)]), "four.json");
        assert!(refused(r).starts_with("four.json: shard 2/4"));
    }

    #[test]
    fn gaps_and_duplicates_are_refused() {
        let mut r = three();
        r.remove(1);
        let e = refused(r);
        assert!(e.contains("missing shard report 1/3"), "{e}");
        let mut r = three();
        r[2] = shard(&report(0, 3, 7, &[(1000, 1)]), "again.json");
        let e = refused(r);
        assert!(
            e.contains("again.json") && e.contains("shard 0/3 again"),
            "{e}"
        );
        assert!(check_set(Vec::new()).is_err());
    }

    #[test]
    fn files_that_are_not_shard_reports_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not a goose JSON report"),
            (b"[1, 2]".to_vec(), "not a goose JSON report"),
            (
                b"{\"goose_version\": \"0.19.0\"}".to_vec(),
                "no raw_metrics",
            ),
            (
                br#"{"goose_version": "0.19.0", "raw_metrics": {"hash": "x"}}"#.to_vec(),
                "not a goose JSON report",
            ),
        ];
        for (bytes, why) in cases {
            let e = parse_shard("x.json", &bytes).unwrap_err().0;
            assert!(e.starts_with("x.json: ") && e.contains(why), "{e}");
        }
        let mut untagged = report(0, 1, 7, &[(1000, 1)]);
        untagged.as_object_mut().unwrap().remove(TAG_KEY);
        let e = parse_shard("plain.json", untagged.to_string().as_bytes())
            .unwrap_err()
            .0;
        assert!(e.contains("without the acs_harness_shard tag"), "{e}");
        let m = merge(&check_set(three()).unwrap()).unwrap();
        let out = json_report(&m, &[]).unwrap();
        let e = parse_shard("merged.json", out.as_bytes()).unwrap_err().0;
        assert!(e.contains("is a merged report"), "{e}");
        // The merged JSON is goose's own metrics format.
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let again: GooseMetrics = serde_json::from_value(doc["raw_metrics"].clone()).unwrap();
        assert_eq!(again.requests["POST /calls"].raw_data.counter, 12);
    }

    #[test]
    fn an_interrupted_shard_marks_the_run_interrupted_and_exit_codes_follow_load() {
        let dir = std::env::temp_dir().join(format!("acs-merge-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for i in 0..2 {
            let mut r = report(i, 2, 7, &[(1000, 4)]);
            r[TAG_KEY]["interrupted"] = (i == 1).into();
            let f = dir.join(format!("s{i}.json"));
            std::fs::write(&f, r.to_string()).unwrap();
            files.push(f);
        }
        let run_with = |threshold: &str| {
            run(MergeArgs {
                reports: files.clone(),
                report_file: vec![dir.join("m.json").display().to_string()],
                threshold: vec![threshold.into()],
                scenario: None,
            })
        };
        assert_eq!(run_with("max<1s"), EXIT_INTERRUPTED);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
        assert_eq!(doc[MERGED_KEY]["interrupted"], true);
        assert_eq!(run_with("max<1us"), EXIT_BREACHED);
        let mut r = report(1, 2, 7, &[(1000, 4)]);
        r[TAG_KEY]["interrupted"] = false.into();
        std::fs::write(&files[1], r.to_string()).unwrap();
        assert_eq!(run_with("max<1s"), EXIT_OK);
        // The shards' own thresholds (error-rate<50%) are judged too: 2 of 8 failed.
        assert_eq!(run_with("error-rate<10%"), EXIT_BREACHED);
        let bad_ext = run(MergeArgs {
            reports: files.clone(),
            report_file: vec![dir.join("m.txt").display().to_string()],
            ..Default::default()
        });
        assert_eq!(bad_ext, EXIT_NOT_STARTED);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn html_reports_inline_the_chart_library() {
        let goose = "<head><script src=\"https://cdn.jsdelivr.net/npm/echarts@5.2.2/dist/echarts.min.js\"></script></head>";
        let out = offline_html(goose);
        assert!(!out.contains("src=\"http"), "external source left");
        assert!(out.contains("Apache ECharts") && out.len() > 500_000);
        assert_eq!(offline_html("<p>no charts</p>"), "<p>no charts</p>");
        let mut m = merge(&check_set(three()).unwrap()).unwrap();
        let rules = [Rule::parse("p95<1s").unwrap()];
        m.metrics.thresholds = judge(&rules, &m);
        let html = html_report(&m, &rules);
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        assert!(html.contains("echarts.init") && html.contains("p95&lt;1s"));
        let md = markdown_report(&m, &[]);
        assert!(md.contains("| POST /calls | 12 | 3 |"), "{md}");
    }
}
