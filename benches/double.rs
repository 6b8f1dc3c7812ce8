//! Throughput of the double behind `serve` (hyper) against a bare wiremock server with
//! one static mock, for signed valid create-call requests from 32 connections; then
//! the resident memory of the `serve` binary before and after N requests; then its
//! memory under an attack of 50 unsigned 16 MiB bodies (idle, peak during, after);
//! then its memory with the state filled with maximal participants.
//!
//! `cargo bench --bench double` (BENCH_SECS=10, BENCH_MEM_REQUESTS=1000000,
//! BENCH_STATE_BYTES=256MiB to change; BENCH_SERVE_BIN=<path> measures the memory
//! phases on another build of `acs-harness`, e.g. main's, for a before/after;
//! BENCH_ONLY=memory skips the throughput phases).

use acs_harness::auth::{ConnectionString, Signer};
use acs_harness::double::DoubleConfig;
use acs_harness::double::Server;
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

    let only_memory = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "memory");

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

    if !only_memory {
        throughput(&server_rt, &client_rt, secs);
    }
    memory(&client_rt, mem_requests);
    attack(&client_rt);
    state_fill(&client_rt);
}

fn throughput(server_rt: &tokio::runtime::Runtime, client_rt: &tokio::runtime::Runtime, secs: u64) {
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
}

/// The `serve` binary measured: this build's, or `BENCH_SERVE_BIN`.
fn serve_bin() -> String {
    std::env::var("BENCH_SERVE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_acs-harness").into())
}

/// Starts `serve --port 0 <extra>` as a child; returns it, its URL and connection string.
fn spawn_serve(extra: &[&str]) -> (std::process::Child, String, ConnectionString) {
    let mut child = std::process::Command::new(serve_bin())
        .args(["serve", "--port", "0"])
        .args(extra)
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
    (child, uri, cs)
}

fn stop_serve(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Samples the RSS of `pid` every 10 ms until `done` is set; returns the peak (kB).
fn sample_peak(pid: u32, done: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(rss_kb(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak.max(rss_kb(pid))
    })
}

/// 50 connections each declare and send an unsigned body of 16 MiB - 1 bytes, as the
/// issue's attacker did; RSS of `serve` idle, at its peak during, and 2 s after.
fn attack(client_rt: &tokio::runtime::Runtime) {
    const CONNECTIONS: usize = 50;
    const BODY: usize = 16 * 1024 * 1024 - 1;
    let (child, uri, _cs) = spawn_serve(&[]);
    let pid = child.id();
    let addr = uri.trim_start_matches("http://").to_string();
    let idle = rss_kb(pid);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_peak(pid, done.clone());
    let t = Instant::now();
    let (answered, sent) = client_rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let addr = addr.clone();
            tasks.spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                    return (false, 0);
                };
                let head = format!(
                    "POST /calls HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {BODY}\r\n\r\n"
                );
                let (mut rd, mut wr) = s.split();
                let write = async {
                    let chunk = vec![b' '; 64 * 1024];
                    let mut sent = 0;
                    if wr.write_all(head.as_bytes()).await.is_err() {
                        return sent;
                    }
                    while sent < BODY {
                        let n = chunk.len().min(BODY - sent);
                        if wr.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                    sent
                };
                let mut answer = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(120), rd.read_to_end(&mut answer));
                let (sent, _) = tokio::join!(write, read);
                (answer.starts_with(b"HTTP/1.1 401"), sent)
            });
        }
        let (mut answered, mut sent) = (0, 0);
        while let Some(Ok((ok, n))) = tasks.join_next().await {
            answered += usize::from(ok);
            sent += n;
        }
        (answered, sent)
    });
    let elapsed = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kb(pid);
    println!(
        "unsigned-body attack ({CONNECTIONS} x {BODY} bytes declared, {:.0} MiB actually sent, \
         {answered} answered 401, {:.1}s): RSS idle {} MB, peak during {} MB, 2 s after {} MB",
        sent as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    stop_serve(child);
}

/// Fills the state with calls of 1,000 participants of 950-character ids (the most an
/// invite of 1 MiB carries) until well past `--max-state-bytes`; RSS after.
fn state_fill(client_rt: &tokio::runtime::Runtime) {
    let cap = std::env::var("BENCH_STATE_BYTES").unwrap_or_else(|_| "256MiB".into());
    if std::env::var_os("BENCH_SERVE_BIN").is_some() {
        // Another build may not know --max-state-bytes; its state is unbounded in bytes.
        println!("state fill: skipped for BENCH_SERVE_BIN");
        return;
    }
    let (child, uri, cs) = spawn_serve(&["--max-state-bytes", &cap]);
    let pid = child.id();
    let idle = rss_kb(pid);
    let host = uri.trim_start_matches("http://").to_string();
    let signer = cs.signer();
    let calls = 400;
    let (created, invited) = client_rt.block_on(async {
        let client = reqwest::Client::new();
        let send = |method: &'static str, path: String, body: Vec<u8>| {
            let h = signer.sign(method, &path, &host, &body, SystemTime::now());
            client
                .request(method.parse().unwrap(), format!("{uri}{path}"))
                .header("content-type", "application/json")
                .header("x-ms-date", h.date)
                .header("x-ms-content-sha256", h.content_sha256)
                .header("authorization", h.authorization)
                .body(body)
                .send()
        };
        let (mut created, mut invited) = (0, 0);
        for c in 0..calls {
            let Ok(r) = send("POST", "/calls".into(), body()).await else {
                continue;
            };
            let Ok(v) = r.json::<serde_json::Value>().await else {
                continue;
            };
            let Some(id) = v["callLegId"].as_str().map(str::to_string) else {
                continue;
            };
            created += 1;
            let list: Vec<serde_json::Value> = (0..1000)
                .map(|i| {
                    let prefix = format!("8:acs:{c}-{i}-");
                    serde_json::json!({"communicationUser": {"id": format!("{prefix}{}", "x".repeat(950 - prefix.len()))}})
                })
                .collect();
            let invite = serde_json::to_vec(&serde_json::json!({"participants": list})).unwrap();
            if let Ok(r) = send("POST", format!("/calls/{id}/participants"), invite).await {
                invited += usize::from(r.status().as_u16() == 202);
            }
        }
        (created, invited)
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kb(pid);
    println!(
        "state fill (--max-state-bytes {cap}; {created} calls created, {invited} invites of \
         1000 x 950-char ids = {:.0} MB of ids): RSS idle {} MB, after {} MB",
        invited as f64 * 950.0 * 1000.0 / 1e6,
        idle / 1024,
        after / 1024
    );
    stop_serve(child);
}

/// The `serve` binary's RSS before and after `mem_requests` signed creates.
fn memory(client_rt: &tokio::runtime::Runtime, mem_requests: u64) {
    let (child, uri, cs) = spawn_serve(&[]);
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
    stop_serve(child);
}
