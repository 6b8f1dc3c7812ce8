//! Shards: one `acs-harness load` process runs shard I of N of a run, so N machines (or
//! the pods of a Kubernetes Indexed Job) together run exactly the requested load, start
//! together at `--start-at`, and write reports that `acs-harness report merge` combines.
//!
//! Decisions: users are split with the first `users % N` shards taking one more; a shard
//! left without users is refused before anything starts (exit 2), since it would add
//! nothing and a merge would miss its report. Shard 0 of 1 is an ordinary run (its seed
//! is the run's seed), so every run's JSON report carries a tag and can be merged.

use super::scenario::ScenarioFile;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The key under which a shard's JSON report carries its [`Tag`], beside goose's fields.
pub const TAG_KEY: &str = "acs_harness_shard";

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0…count-1.
    pub index: usize,
    /// How many shards the run has (at least 1).
    pub count: usize,
}

impl Shard {
    /// The whole run in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N`, e.g. `0/3`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 0 <= I < N, e.g. 0/3");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|_| bad())
    }

    /// A shard, checked: `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "shard index {index} is not below the shard count {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard given by `--shard I/N`, or by `--shards N` with `JOB_COMPLETION_INDEX`
    /// (what a Kubernetes Indexed Job sets), or the whole run.
    pub fn resolve(
        shard: Option<&str>,
        shards: Option<usize>,
        job_index: Option<&str>,
    ) -> Result<Shard, String> {
        match (shard, shards) {
            (Some(_), Some(_)) => Err("give either --shard I/N or --shards N, not both".into()),
            (Some(s), None) => Shard::parse(s),
            (None, Some(n)) => {
                let Some(raw) = job_index else {
                    return Err(format!(
                        "--shards {n} needs the shard index from JOB_COMPLETION_INDEX (or give --shard I/{n})"
                    ));
                };
                let index: usize = raw.trim().parse().map_err(|_| {
                    format!("JOB_COMPLETION_INDEX={raw:?} is not a shard index (0, 1, …)")
                })?;
                Shard::new(index, n).map_err(|e| format!("JOB_COMPLETION_INDEX: {e}"))
            }
            (None, None) => Ok(Shard::WHOLE),
        }
    }

    /// This shard's part of `total` users: `total / N`, plus one for the first `total % N`.
    pub fn users(self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }

    /// This shard's part of a goose test plan (`users,time;...`): each step's users split
    /// as [`Shard::users`] does, times kept, so all shards ramp and hold together.
    pub fn test_plan(self, plan: &str) -> Result<String, String> {
        let mut steps = Vec::new();
        for step in plan.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (users, time) = step
                .split_once(',')
                .ok_or_else(|| format!("--test-plan {plan:?}: step {step:?} is not USERS,TIME"))?;
            let users: usize = users.trim().parse().map_err(|_| {
                format!(
                    "--test-plan {plan:?}: {:?} is not a number of users",
                    users.trim()
                )
            })?;
            steps.push(format!("{},{}", self.users(users), time.trim()));
        }
        Ok(steps.join(";"))
    }

    /// The seed of this shard's bodies: the run's seed itself for a whole run, otherwise
    /// a splitmix64 mix of the seed and the index, so each shard sends its own bodies
    /// and the same seed and index always send the same ones.
    pub fn seed(self, run_seed: u64) -> u64 {
        if self.count == 1 {
            return run_seed;
        }
        let mut z = run_seed ^ ((self.index as u64) + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Whether request line `line` (0-based, blank lines not counted) of a `--bodies`
    /// file is this shard's: line i goes to shard i mod N.
    #[cfg(test)]
    pub fn owns_line(self, line: usize) -> bool {
        line % self.count == self.index
    }
}

/// A fingerprint of what a scenario file makes users do (its scenarios, weights and
/// steps), so a merge can tell reports of different scenarios apart whatever path the
/// file had on each machine.
pub fn scenario_id(file: &ScenarioFile) -> String {
    let digest = Sha256::digest(format!("{:?}", file.scenarios).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a shard's JSON report says about the shard, written under [`TAG_KEY`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// Shard index (0-based).
    pub index: usize,
    /// Shard count.
    pub count: usize,
    /// The run's seed (the same on every shard).
    pub seed: u64,
    /// This shard's body seed, derived from the run's seed and the index.
    pub shard_seed: u64,
    /// The scenario as given (a shipped name's file or a path).
    pub scenario: String,
    /// [`scenario_id`] of the scenario.
    pub scenario_id: String,
    /// The target, redacted to scheme, host, port and path.
    pub host: String,
    /// Users this shard ran (largest step of a test plan).
    pub users: usize,
    /// The thresholds this shard was given, in the harness syntax.
    pub thresholds: Vec<String>,
    /// The common start time, when `--start-at` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Ctrl-C/SIGTERM stopped the shard before its end.
    pub interrupted: bool,
}

/// Adds `tag` under [`TAG_KEY`] to the goose JSON report at `path`, rewritten atomically.
pub fn tag_report(path: &std::path::Path, tag: &Tag) -> Result<(), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{shown}: not JSON: {e}"))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| format!("{shown}: not a JSON object"))?;
    obj.insert(
        TAG_KEY.into(),
        serde_json::to_value(tag).map_err(|e| e.to_string())?,
    );
    let out = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    crate::output::write_atomic(path, crate::redact::scrub(&out).as_bytes())
        .map_err(|e| format!("{shown}: {e}"))
}

/// Parses `--start-at` (RFC 3339, e.g. `2026-12-02T12:00:00Z`).
pub fn parse_start_at(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            format!("--start-at {text:?}: {e} (expected RFC 3339, e.g. 2026-12-02T12:00:00Z)")
        })
}

/// How long to wait from `now` until `at`; `None` when `at` has passed.
pub fn wait_for(
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    (at - now).to_std().ok().filter(|d| !d.is_zero())
}

/// Waits until `at`, printing the wait; a time in the past starts at once with a
/// warning. Returns `false` when Ctrl-C or SIGTERM came first (the run must not start).
pub async fn wait_until(at: chrono::DateTime<chrono::Utc>) -> bool {
    let now = chrono::Utc::now();
    match wait_for(at, now) {
        None => {
            let late = (now - at).to_std().unwrap_or_default();
            crate::output::eprintln(&format!(
                "warning: --start-at {} was {:.1}s ago; starting now",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                late.as_secs_f64()
            ));
            true
        }
        Some(d) => {
            let stop = crate::output::shutdown_signal();
            tokio::pin!(stop);
            // Poll once so the signal handlers are in place before the wait is printed:
            // a SIGTERM right after the message must end the wait, not the process.
            tokio::select! {
                biased;
                () = &mut stop => return false,
                () = std::future::ready(()) => {}
            }
            crate::output::println(&format!(
                "load: waiting {:.1}s until {} to start",
                d.as_secs_f64(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ));
            tokio::select! {
                () = tokio::time::sleep(d) => true,
                () = &mut stop => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_exactly_with_remainders_first() {
        for total in 0..40 {
            for n in 1..9 {
                let parts: Vec<usize> = (0..n)
                    .map(|i| Shard::new(i, n).unwrap().users(total))
                    .collect();
                assert_eq!(parts.iter().sum::<usize>(), total);
                let max = parts.iter().max().unwrap();
                let min = parts.iter().min().unwrap();
                assert!(max - min <= 1);
                // the larger shares come first
                assert!(parts.windows(2).all(|w| w[0] >= w[1]), "{parts:?}");
            }
        }
        assert_eq!(Shard::new(0, 3).unwrap().users(10), 4);
        assert_eq!(Shard::new(2, 3).unwrap().users(10), 3);
    }

    #[test]
    fn shard_options_parse_and_are_checked() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "0/0", "1", "a/3", "-1/3", "1/3/4"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Shard::resolve(None, Some(4), Some("2")).unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert!(Shard::resolve(None, Some(4), None).is_err());
        assert!(Shard::resolve(None, Some(4), Some("4")).is_err());
        assert!(Shard::resolve(None, Some(4), Some("x")).is_err());
        assert!(Shard::resolve(Some("0/2"), Some(2), None).is_err());
        assert_eq!(Shard::resolve(None, None, Some("3")).unwrap(), Shard::WHOLE);
    }

    #[test]
    fn test_plans_split_per_step() {
        let s = Shard::new(1, 3).unwrap();
        assert_eq!(
            s.test_plan("10,30s;4,1m;0,10s").unwrap(),
            "3,30s;1,1m;0,10s"
        );
        assert!(s.test_plan("ten,30s").is_err());
    }

    #[test]
    fn seeds_are_stable_per_shard_and_differ_across_shards() {
        assert_eq!(Shard::WHOLE.seed(7), 7);
        let seeds: Vec<u64> = (0..16)
            .map(|i| Shard::new(i, 16).unwrap().seed(7))
            .collect();
        let distinct: std::collections::HashSet<_> = seeds.iter().collect();
        assert_eq!(distinct.len(), 16);
        assert_eq!(Shard::new(3, 16).unwrap().seed(7), seeds[3]);
        assert_ne!(Shard::new(3, 16).unwrap().seed(8), seeds[3]);
    }

    #[test]
    fn body_lines_go_round_robin() {
        let owners: Vec<usize> = (0..7)
            .map(|line| {
                (0..3)
                    .filter(|&i| Shard::new(i, 3).unwrap().owns_line(line))
                    .collect::<Vec<_>>()
            })
            .map(|v| {
                assert_eq!(v.len(), 1);
                v[0]
            })
            .collect();
        assert_eq!(owners, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn start_at_parses_rfc3339_and_past_times_do_not_wait() {
        let t = parse_start_at("2026-12-02T12:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-02T11:00:00+00:00");
        assert!(parse_start_at("tomorrow").is_err());
        assert!(parse_start_at("2026-12-02 12:00").is_err());
        let now = parse_start_at("2026-12-02T11:00:00Z").unwrap();
        assert_eq!(wait_for(t, now), None);
        assert_eq!(
            wait_for(parse_start_at("2026-12-02T11:00:02.5Z").unwrap(), now),
            Some(Duration::from_millis(2500))
        );
    }
    fn bodies_of(b: &crate::load::bodies::Bodies) -> (Vec<Vec<u8>>, Vec<String>) {
        use crate::load::bodies::Bodies;
        let Bodies::Generated { pools, .. } = b else {
            panic!("generated bodies expected")
        };
        let mut bytes = Vec::new();
        let mut ids = Vec::new();
        // The bodies that carry ids: a call's targets and source, invited participants.
        let with_ids = [
            crate::load::bodies::index(crate::contract::Endpoint::CreateCall),
            crate::load::bodies::index(crate::contract::Endpoint::InviteParticipants),
        ];
        for user in pools {
            for pool in with_ids.map(|i| &user[i]) {
                for body in pool.iter() {
                    bytes.push(body.bytes.to_vec());
                    ids.extend(body.participants.iter().cloned());
                }
            }
        }
        (bytes, ids)
    }

    #[test]
    fn shards_send_their_own_bodies_and_ids() {
        use crate::contract::Endpoint;
        use crate::load::bodies::Bodies;
        use std::collections::HashSet;
        let endpoints = Endpoint::ALL.to_vec();
        let generate = |s: Shard| {
            bodies_of(&Bodies::generate(
                s.seed(7),
                4,
                &endpoints,
                &crate::load::generator,
            ))
        };
        let shards: Vec<_> = (0..3)
            .map(|i| generate(Shard::new(i, 3).unwrap()))
            .collect();
        assert_eq!(
            generate(Shard::new(1, 3).unwrap()),
            shards[1],
            "same inputs, same bodies"
        );
        let mut seen_bodies = HashSet::new();
        let mut seen_ids = HashSet::new();
        for (i, (bytes, ids)) in shards.iter().enumerate() {
            assert!(!ids.is_empty());
            for b in bytes.iter().filter(|b| !b.is_empty()) {
                assert!(
                    !(0..i).any(|j| seen_bodies.contains(&(j, b.clone()))),
                    "shard {i} repeats a body of an earlier shard: {}",
                    String::from_utf8_lossy(b)
                );
            }
            // Phone numbers come from the fictional 555-01xx range, a shared pool by
            // design that repeats across users within a shard too; identity ids
            // (8:acs:…, Teams) carry 128 random bits and must not repeat.
            for id in ids
                .iter()
                .filter(|id| !id.starts_with('+') && !id.starts_with("4:+"))
            {
                assert!(
                    !(0..i).any(|j| seen_ids.contains(&(j, id.clone()))),
                    "participant id {id} in shard {i} and an earlier shard"
                );
            }
            seen_ids.extend(ids.iter().map(|id| (i, id.clone())));
            seen_bodies.extend(bytes.iter().map(|b| (i, b.clone())));
        }
    }

    #[test]
    fn a_bodies_file_is_split_line_by_line() {
        use crate::contract::Endpoint;
        use crate::load::bodies::{Bodies, Next};
        let dir = std::env::temp_dir().join(format!("acs-shard-bodies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.jsonl");
        let line = |n: usize| {
            format!(
                r#"{{"endpoint":"create-call","method":"POST","path":"/calls","params":{{}},"contentType":"application/json","body":"{{\"n\":{n}}}"}}"#
            )
        };
        let text: Vec<String> = (0..5).map(line).collect();
        std::fs::write(
            &path,
            format!("{}\n\n{}\n", text[..2].join("\n"), text[2..].join("\n")),
        )
        .unwrap();
        let sent = |shard: usize, shards: usize| {
            let b = Bodies::read_file_slice(&path, shard, shards).unwrap();
            let mut c = 0;
            let mut out = Vec::new();
            while let Next::Body { body, .. } = b.next(0, Endpoint::CreateCall, &mut c) {
                out.push(String::from_utf8(body.bytes.to_vec()).unwrap());
            }
            out
        };
        assert_eq!(sent(0, 2), [r#"{"n":0}"#, r#"{"n":2}"#, r#"{"n":4}"#]);
        assert_eq!(sent(1, 2), [r#"{"n":1}"#, r#"{"n":3}"#]);
        assert_eq!(sent(0, 1).len(), 5);
        let e = Bodies::read_file_slice(&path, 5, 6).unwrap_err();
        assert!(e.contains("no request for shard 5/6"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
