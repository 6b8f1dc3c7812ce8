//! `acs-harness serve`: the double's options, turned into a [`DoubleConfig`].

use super::{Error, Outcome};
use crate::auth::AccessKey;
use crate::double::events::CallbackHosts;
use crate::double::{
    DEFAULT_MAX_CALLS, DEFAULT_MAX_PARTICIPANTS, DEFAULT_MAX_STATE_BYTES, DoubleConfig,
    MAX_LATENCY, MIN_STATE_BYTES,
};
use std::time::Duration;

/// Options of `acs-harness serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Prints `listening on http://127.0.0.1:PORT`, `connection string: ...` and `control:
http://127.0.0.1:PORT` as soon as it accepts connections; point an app or `acs-harness
contract --target` at the first two. Events go to each call's callbackUri on loopback
hosts only unless --callback-hosts allows others; the control API simulates key presses
(POST /calls/{callLegId}/dtmf {\"tones\": \"12#\"}) and lists calls and events.

Examples:
  acs-harness serve --port 0
  acs-harness serve --port 8080 --prefix /calling --fail-rate 0.01 --seed 7 --latency 20ms")]
pub struct ServeArgs {
    /// Port on 127.0.0.1 to listen on (0: any free port; the real one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Base64 access key requests must be signed with [default: the documented
    /// development key, printed in the connection string at start].
    #[arg(long, env = "ACS_HARNESS_ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,
    /// Path prefix before `/calls`, e.g. `/calling`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Require this `api-version` query parameter on every request (400 without).
    #[arg(long)]
    pub api_version: Option<String>,
    /// Share (0..1) of otherwise-good requests answered 500 with the error body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
    /// Latency added to every answer, e.g. `20ms` (at most 1h).
    #[arg(long, default_value = "0", value_parser = parse_latency)]
    pub latency: Duration,
    /// Up to this much extra latency per answer, drawn uniformly, e.g. `10ms` (at most 1h).
    #[arg(long, default_value = "0", value_parser = parse_latency)]
    pub latency_jitter: Duration,
    /// Seed of the fault and jitter draws (the same seed fails the same requests).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Live calls held at most; creating beyond it evicts the oldest call.
    #[arg(long, default_value_t = DEFAULT_MAX_CALLS, value_parser = parse_count)]
    pub max_calls: usize,
    /// Participants (targets and invited) held per call at most; the oldest goes beyond it.
    #[arg(long, default_value_t = DEFAULT_MAX_PARTICIPANTS, value_parser = parse_count)]
    pub max_participants: usize,
    /// Estimated memory of all calls and participants held at most, e.g. `256MiB`,
    /// `64MB`, `100000`; beyond it the oldest calls are evicted (a request on one gets a
    /// 404 saying so) [default: 256MiB].
    #[arg(long, default_value_t = DEFAULT_MAX_STATE_BYTES, hide_default_value = true, value_parser = parse_bytes)]
    pub max_state_bytes: usize,
    /// How long a client may take to send a request's body once its head arrived; the
    /// connection is closed after (408).
    #[arg(long, default_value = "30s", value_parser = parse_body_timeout)]
    pub body_timeout: Duration,
    /// Keep-alive connections served at once; a quarter as many more are answered once
    /// and closed, and beyond those, connections idle for a second are closed to make
    /// room [default: 1024, or fewer when the descriptor limit (`ulimit -n`) is lower].
    #[arg(long, value_parser = parse_count)]
    pub max_connections: Option<usize>,
    /// Pause between create call's `Establishing` event and `Established`, e.g. `200ms`.
    #[arg(long, default_value = "200ms", value_parser = parse_latency)]
    pub answer_delay: Duration,
    /// How long a play audio plays before its `Completed` result (`loop: true` never
    /// ends by itself), e.g. `1s`.
    #[arg(long, default_value = "1s", value_parser = parse_latency)]
    pub play_duration: Duration,
    /// Hosts besides loopback (127.0.0.0/8, ::1, localhost) events may be sent to,
    /// comma-separated, or `*` for any; events for other hosts are recorded as not
    /// delivered (see the control API), never sent.
    #[arg(long, value_parser = CallbackHosts::parse)]
    pub callback_hosts: Option<CallbackHosts>,
    /// Send no events at all (requests are answered as usual; e.g. to measure the
    /// request throughput alone).
    #[arg(long)]
    pub no_events: bool,
    /// Port of the control API on 127.0.0.1 (0: any free port; printed at start).
    #[arg(long, default_value_t = 0)]
    pub control_port: u16,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// A count option: a whole number of at least 1.
fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// A latency option: a duration of at most [`MAX_LATENCY`].
fn parse_latency(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(s)?;
    if d > MAX_LATENCY {
        return Err(format!(
            "{s:?} is more than the longest latency, {}s (1h)",
            MAX_LATENCY.as_secs()
        ));
    }
    Ok(d)
}

fn parse_body_timeout(s: &str) -> Result<Duration, String> {
    crate::duration::parse_within(s, Duration::from_secs(24 * 3600))
}

/// A byte size: a whole number with an optional unit `B`, `KB`, `MB`, `GB` (powers of
/// 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a size (use e.g. 256MiB, 64MB, 1048576)");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(unit_bytes)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_STATE_BYTES {
        return Err(format!(
            "{s:?} is less than the smallest state, {} bytes",
            MIN_STATE_BYTES
        ));
    }
    Ok(bytes)
}

impl ServeArgs {
    /// The double configuration these options describe.
    pub fn config(&self) -> anyhow::Result<DoubleConfig> {
        let mut config = DoubleConfig::default()
            .port(self.port)
            .prefix(self.prefix.clone())
            .fail_rate(self.fail_rate)
            .latency(self.latency)
            .latency_jitter(self.latency_jitter)
            .seed(self.seed)
            .max_calls(self.max_calls)
            .max_participants(self.max_participants)
            .max_state_bytes(self.max_state_bytes)
            .body_timeout(self.body_timeout);
        config.max_connections = self.max_connections;
        config.api_version = self.api_version.clone();
        config.events.answer_delay = self.answer_delay;
        config.events.play_duration = self.play_duration;
        config.events.callback_hosts = self.callback_hosts.clone().unwrap_or_default();
        config.events.enabled = !self.no_events;
        config.control_port = Some(self.control_port);
        if let Some(key) = &self.access_key {
            // The error names the option, never echoes the value (it is a secret).
            config.access_key = AccessKey::from_base64(key)
                .map_err(|_| anyhow::anyhow!("--access-key is not a base64 access key"))?;
        }
        Ok(config)
    }
}

/// Runs `acs-harness serve` until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> super::Result {
    let config = args
        .config()
        .map_err(|e| Error::CouldNotRun(format!("{e:#}")))?;
    crate::double::serve::run(config).map_err(|e| Error::CouldNotRun(format!("{e:#}")))?;
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_latencies() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("64 MB"), Ok(64_000_000));
        assert_eq!(parse_bytes("100000"), Ok(100_000));
        for bad in [
            "",
            "x",
            "12 parsecs",
            "-5",
            "1KB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_latency("1h"), Ok(MAX_LATENCY));
        assert!(parse_latency("5000000000000000h").is_err());
        assert!(parse_latency("61m").is_err());
        assert!(parse_body_timeout("0").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err() && parse_rate("x").is_err());
    }
}
