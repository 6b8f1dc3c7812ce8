//! Throughput of the valid-request generators: generate, serialize and validate for
//! about a second per endpoint on one thread, and print requests per second.
//! Run with `cargo bench --bench generate`.

use acs_harness::contract::{Endpoint, validate_request};
use acs_harness::generate::{runner, valid};
use proptest::strategy::{Strategy, ValueTree};
use std::hint::black_box;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

fn main() {
    println!("{:<26} {:>12} {:>14}", "endpoint", "bodies/s", "mean bytes");
    for e in Endpoint::ALL {
        let strategy = valid(e);
        let mut runner = runner(0xACE5);
        let (mut n, mut bytes, mut rejected) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        // Check the clock every 256 requests so timing stays off the hot path.
        while start.elapsed() < WINDOW {
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
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<26} {:>12.0} {:>14.0}",
            e.name(),
            n as f64 / secs,
            bytes as f64 / n.max(1) as f64
        );
        assert_eq!(rejected, 0, "{e}: valid bodies rejected by the validator");
    }
}
