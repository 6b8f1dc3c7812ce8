//! Throughput of the double behind `serve` (hyper) against a bare wiremock server with
//! one static mock, for signed valid create-call requests from 32 connections; then
//! the resident memory of the `serve` binary before and after N requests.
//!
//! `cargo bench --bench double` (BENCH_SECS=10, BENCH_MEM_REQUESTS=1000000 to change).

use acs_harness::auth::{ConnectionString, Signer};
use acs_harness::double::DoubleConfig;
use acs_harness::double::serve::Server;
use std::io::BufRead as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

const CONNECTIONS: usize = 32;

fn body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "source": {"communicationUser": {"id": "8:acs:11111111-1111-1111-1111-111111111111_22222222-2222-2222-2222-222222222222"}},
        "targets": [{"phoneNumber": {"value": "+14251001000"}}],
        "callbackUri": "https://app.example.com/events",
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["participantsUpdated"],
        "subject": "bench"
    }))
    .unwrap()
}

struct Load {
    url: String,
    host: String,
    signer: Signer,
    body: bytes::Bytes,
}

/// Drives `load` with 32 concurrent connections until `deadline` or `limit` requests;
/// returns (requests answered 200, elapsed).
async fn drive(load: Arc<Load>, secs: Option<u64>, limit: Option<u64>) -> (u64, Duration) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = secs.map(|s| start + Duration::from_secs(s));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, load, sent, ok) = (client.clone(), load.clone(), sent.clone(), ok.clone());
        tasks.spawn(async move {
            // Re-signed every second of wall time: the double allows 15 minutes of skew,
            // and the signature depends only on the date, so this is what a client pays.
            let mut signed_at = Instant::now() - Duration::from_secs(2);
            let mut headers = None;
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| n >= l) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if signed_at.elapsed() >= Duration::from_secs(1) {
                    headers = Some(load.signer.sign(
                        "POST",
                        "/calls",
                        &load.host,
                        &load.body,
                        SystemTime::now(),
                    ));
                    signed_at = Instant::now();
                }
                let h = headers.as_ref().unwrap();
                let r = client
                    .post(&load.url)
                    .header("content-type", "application/json")
                    .header("x-ms-date", &h.date)
                    .header("x-ms-content-sha256", &h.content_sha256)
                    .header("authorization", &h.authorization)
                    .body(load.body.clone())
                    .send()
                    .await;
                if let Ok(r) = r {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    if status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (ok.load(Ordering::Relaxed), start.elapsed())
}

fn load_for(base: &str, cs: &ConnectionString) -> Arc<Load> {
    let url = url::Url::parse(base).unwrap();
    Arc::new(Load {
        url: format!("{}/calls", base.trim_end_matches('/')),
        host: format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()),
        signer: cs.signer(),
        body: bytes::Bytes::from(body()),
    })
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mem_requests: u64 = std::env::var("BENCH_MEM_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes the harness; nothing to list.
    }

    // Servers and client on separate runtimes so neither starves the other's scheduler;
    // both still share the machine's cores, as in a real same-host run.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // (a) the double behind serve's hyper transport.
    let running =
        server_rt.block_on(async { Server::bind(DoubleConfig::default()).await.unwrap().spawn() });
    let load = load_for(running.uri(), &running.connection_string());
    let (double_ok, double_t) = client_rt.block_on(drive(load, Some(secs), None));
    let double_rps = double_ok as f64 / double_t.as_secs_f64();
    println!(
        "double (serve, hyper): {double_ok} x 200 in {:.1}s = {double_rps:.0} req/s",
        double_t.as_secs_f64()
    );
    server_rt.block_on(running.stop()).unwrap();

    // (b) bare wiremock with one static mock for POST /calls (recording off).
    let mock = server_rt.block_on(async {
        let server = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/calls"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"callLegId": "00000000-0000-4000-8000-000000000000"}),
            ))
            .mount(&server)
            .await;
        server
    });
    let cs: ConnectionString = format!(
        "endpoint={}/;accesskey={}",
        mock.uri(),
        acs_harness::double::DEV_ACCESS_KEY
    )
    .parse()
    .unwrap();
    let load = load_for(&mock.uri(), &cs);
    let (mock_ok, mock_t) = client_rt.block_on(drive(load, Some(secs), None));
    let mock_rps = mock_ok as f64 / mock_t.as_secs_f64();
    println!(
        "bare wiremock, one static mock: {mock_ok} x 200 in {:.1}s = {mock_rps:.0} req/s",
        mock_t.as_secs_f64()
    );
    println!(
        "ratio double / wiremock: {:.0}% (goal >= 50%)",
        100.0 * double_rps / mock_rps
    );
    println!(
        "bench process RSS after wiremock phase: {} MB (wiremock retains matched requests)",
        rss_kb(std::process::id()) / 1024
    );
    drop(mock);

    // Memory: the release `serve` binary as a child, RSS before and after N requests.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let uri = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let cs: ConnectionString = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("connection string: ")
        .unwrap()
        .parse()
        .unwrap();
    let pid = child.id();
    let before = rss_kb(pid);
    let load = load_for(&uri, &cs);
    let (ok, t) = client_rt.block_on(drive(load, None, Some(mem_requests)));
    let after = rss_kb(pid);
    println!(
        "serve binary: {ok} x 200 in {:.1}s ({:.0} req/s); RSS before {} kB, after {} kB, growth {:.1} MB",
        t.as_secs_f64(),
        ok as f64 / t.as_secs_f64(),
        before,
        after,
        (after as f64 - before as f64) / 1024.0
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
}
