//! Throughput of the valid-request generators: generate, serialize and validate for
//! about a second per endpoint on one thread, and print requests per second.
//! Run with `cargo bench --bench generate`.
//!
//! On a shared machine wall-clock rates understate the generator, so the rate per
//! second of this thread's CPU time (from /proc, Linux only) is printed beside it.

use acs_harness::contract::{Endpoint, validate_request};
use acs_harness::generate::{runner, valid};
use proptest::strategy::{Strategy, ValueTree};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// How long each endpoint runs: one second of CPU, but never more than five of wall.
const CPU_WINDOW: Duration = Duration::from_secs(1);
const WALL_LIMIT: Duration = Duration::from_secs(5);

/// This thread's user + system CPU time, if /proc tells it (clock ticks of 10 ms).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the `(comm)`; utime and stime are the 14th and 15th overall.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn main() {
    println!(
        "{:<26} {:>14} {:>14} {:>12}",
        "endpoint", "bodies/s wall", "bodies/s cpu", "mean bytes"
    );
    for e in Endpoint::ALL {
        let strategy = valid(e);
        let mut runner = runner(0xACE5);
        let (mut n, mut bytes, mut rejected) = (0u64, 0u64, 0u64);
        let cpu_start = thread_cpu();
        let start = Instant::now();
        // Check the clocks every 256 requests so timing stays off the hot path.
        loop {
            for _ in 0..256 {
                let Ok(tree) = strategy.new_tree(&mut runner) else {
                    continue;
                };
                let r = tree.current();
                let body = r.body.as_deref().unwrap_or_default();
                if validate_request(e, r.content_type.as_deref(), body).is_err() {
                    rejected += 1;
                }
                bytes += body.len() as u64;
                n += 1;
                black_box(&r);
            }
            let wall = start.elapsed();
            let cpu = match (cpu_start, thread_cpu()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => wall,
            };
            if cpu >= CPU_WINDOW || wall >= WALL_LIMIT {
                break;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (cpu_start, thread_cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => wall,
        };
        println!(
            "{:<26} {:>14.0} {:>14.0} {:>12.0}",
            e.name(),
            n as f64 / wall,
            n as f64 / cpu.max(0.01),
            bytes as f64 / n.max(1) as f64
        );
        assert_eq!(rejected, 0, "{e}: valid bodies rejected by the validator");
    }
}
