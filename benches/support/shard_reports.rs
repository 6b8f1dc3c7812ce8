//! Synthesizes the shard reports of a long run for `scripts/bench-merge`: takes a real
//! shard report (`acs-harness load --report-file x.json`) as the shape and writes N
//! shard reports of a run of the given length, with every response-time record scaled
//! to the run's request count and spread over many buckets, as a long run has them.
//!
//! Usage: shard_reports TEMPLATE.json OUT_DIR SHARDS SECONDS REQ_PER_SEC_PER_SHARD

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// goose 0.19's bucket of a time: exact below 128 µs, then 64 buckets per doubling.
fn bucket_floor(us: u64) -> u64 {
    if us < 128 {
        return us;
    }
    let bits = 63 - us.leading_zeros() - 6;
    (us >> bits) << bits
}

/// splitmix64: a fixed, dependency-free sequence, so every run writes the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `count` times around `median_us` with a long tail, as buckets.
fn times(rng: &mut Rng, count: u64, median_us: f64) -> (BTreeMap<u64, u64>, u64, u64, u64) {
    let mut buckets = BTreeMap::new();
    let (mut min, mut max, mut total) = (u64::MAX, 0, 0);
    // Sample a few thousand times and weight them, so a 10-minute run's counts do not
    // take minutes to draw; the bucket spread is that of the full distribution.
    let samples = count.clamp(1, 20_000);
    let weight = count / samples;
    let mut left = count;
    for i in 0..samples {
        // log-normal, sigma 0.9: from a tenth of the median to tens of times it.
        let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let us = (median_us * (0.9 * z).exp()).max(50.0) as u64;
        let n = if i + 1 == samples { left } else { weight };
        left -= n;
        *buckets.entry(bucket_floor(us)).or_default() += n;
        min = min.min(us);
        max = max.max(us);
        total += us * n;
    }
    (buckets, min, max, total)
}

/// Rewrites every timing record under `v` (an object with `times_us`) to `count` times.
fn scale(v: &mut Value, rng: &mut Rng, count: u64) {
    match v {
        Value::Object(map) => {
            if map.contains_key("times_us") {
                let old_count = map
                    .get("counter")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1);
                let old_total = map
                    .get("total_time_us")
                    .and_then(Value::as_u64)
                    .unwrap_or(2_000);
                let median = (old_total / old_count).max(200) as f64;
                let (buckets, min, max, total) = times(rng, count, median);
                let b: serde_json::Map<String, Value> = buckets
                    .into_iter()
                    .map(|(k, n)| (k.to_string(), n.into()))
                    .collect();
                map.insert("times_us".into(), Value::Object(b));
                for (k, val) in [
                    ("counter", count),
                    ("minimum_time_us", min),
                    ("min_time_us", min),
                    ("maximum_time_us", max),
                    ("max_time_us", max),
                    ("total_time_us", total),
                ] {
                    if map.contains_key(k) {
                        map.insert(k.into(), val.into());
                    }
                }
                for (k, val) in [
                    ("minimum_time", min / 1000),
                    ("min_time", min / 1000),
                    ("maximum_time", max / 1000),
                    ("max_time", max / 1000),
                    ("total_time", total / 1000),
                ] {
                    if map.contains_key(k) {
                        map.insert(k.into(), val.into());
                    }
                }
                if map.contains_key("success_count") {
                    map.insert("success_count".into(), (count - count / 200).into());
                    map.insert("fail_count".into(), (count / 200).into());
                }
                return;
            }
            for (_, child) in map.iter_mut() {
                scale(child, rng, count);
            }
        }
        Value::Array(list) => {
            for child in list {
                scale(child, rng, count);
            }
        }
        _ => {}
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, template, out, shards, seconds, rate] = args.as_slice() else {
        return Err(
            "usage: shard_reports TEMPLATE.json OUT_DIR SHARDS SECONDS REQ_PER_SEC_PER_SHARD"
                .into(),
        );
    };
    let template: Value = serde_json::from_str(&std::fs::read_to_string(template)?)?;
    let (shards, seconds, rate): (usize, u64, u64) =
        (shards.parse()?, seconds.parse()?, rate.parse()?);
    std::fs::create_dir_all(out)?;
    let names = template["raw_metrics"]["requests"]
        .as_object()
        .ok_or("the template has no requests")?
        .len()
        .max(1) as u64;
    let per_request = seconds * rate / names;
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")?;
    for index in 0..shards {
        let mut rng = Rng(index as u64 + 1);
        let mut doc = template.clone();
        let raw = &mut doc["raw_metrics"];
        if let Some(requests) = raw["requests"].as_object_mut() {
            for (_, r) in requests.iter_mut() {
                scale(&mut r["raw_data"], &mut rng, per_request);
                r["success_count"] = (per_request - per_request / 200).into();
                r["fail_count"] = (per_request / 200).into();
                let codes = r["status_code_counts"]
                    .as_object()
                    .map(|c| c.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                let mut counts = serde_json::Map::new();
                for (i, code) in codes.iter().enumerate() {
                    counts.insert(
                        code.clone(),
                        if i == 0 {
                            per_request - per_request / 200
                        } else {
                            0
                        }
                        .into(),
                    );
                }
                counts.insert("500".into(), (per_request / 200).into());
                r["status_code_counts"] = Value::Object(counts);
                if let Some(timings) = r["status_code_timings"].as_object_mut() {
                    for (_, t) in timings.iter_mut() {
                        t["count"] = (per_request - per_request / 200).into();
                    }
                }
            }
        }
        scale(&mut raw["transactions"], &mut rng, per_request / 2);
        scale(&mut raw["scenarios"], &mut rng, per_request / 4);
        let at = |s: u64| (start + chrono::Duration::seconds(s as i64)).to_rfc3339();
        raw["history"] = json!([
            {"action": "Increasing", "timestamp": at(0), "users": 0},
            {"action": "Maintaining", "timestamp": at(2), "users": 32},
            {"action": "Decreasing", "timestamp": at(seconds + 2), "users": 32},
            {"action": "Finished", "timestamp": at(seconds + 3), "users": 0}
        ]);
        raw["duration"] = (seconds + 3).into();
        doc["started"] = at(0).into();
        doc["ended"] = at(seconds + 3).into();
        let tag = &mut doc["acs_harness_shard"];
        tag["index"] = index.into();
        tag["count"] = shards.into();
        let path = std::path::Path::new(out).join(format!("shard-{index}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
