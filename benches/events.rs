//! Event delivery of the double (behind `serve`'s hyper server) to a local receiver:
//! 1. events per second and p50/p99 delivery latency (receipt time minus `eventTime`)
//!    with EVENTS_CALLS (1,000) concurrent calls, each created, played to
//!    EVENTS_PLAYS times (one `PlayAudioResult` each) and hung up;
//!    and the same latency at a sustainable rate: EVENTS_CALLS live calls, each playing
//!    audio once a second for BENCH_SECS;
//! 2. the double's request throughput (create call, play audio, hang up; 32 clients for
//!    BENCH_SECS, 10 s) with delivery on vs off (`--no-events`);
//! 3. with BENCH_EVENTS_MEMORY=N (e.g. 1000000): the resident memory of this process
//!    (double, receiver and clients) at start, middle and end of an N-event run, bounded
//!    by BENCH_MEM_SECS (600 s).
//!
//! `cargo bench --bench events` (in debug for a smoke run: `EVENTS_CALLS=50
//! EVENTS_PLAYS=2 BENCH_SECS=1 cargo bench --bench events --profile dev`).

use acs_harness::contract::Endpoint;
use acs_harness::double::DoubleConfig;
use acs_harness::double::{RunningServer, Server};
use acs_harness::{AuthMode, Client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const CLIENTS: usize = 32;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What the receiver saw: events and their delivery latencies in microseconds.
#[derive(Default)]
struct Seen {
    events: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    keep_latencies: AtomicBool,
    // Events received per kind (`eventType` and the call state), when latencies are kept.
    kinds: Mutex<std::collections::BTreeMap<String, u64>>,
    connections: AtomicU64,
}

/// A receiver on 127.0.0.1:0 answering 200 to every event; returns its URL.
async fn receiver(seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            seen.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let received = SystemTime::now();
                            if let Ok(body) = body {
                                seen.events.fetch_add(1, Ordering::Relaxed);
                                let v = if seen.keep_latencies.load(Ordering::Relaxed) {
                                    serde_json::from_slice::<Value>(&body).ok()
                                } else {
                                    None
                                };
                                if let Some(v) = &v {
                                    let kind = format!(
                                        "{} {}",
                                        v["eventType"].as_str().unwrap_or("?"),
                                        v["data"]["CallState"].as_str().unwrap_or("")
                                    );
                                    *seen.kinds.lock().unwrap().entry(kind).or_default() += 1;
                                }
                                if let Some(sent) = v
                                    .as_ref()
                                    .and_then(|v| v["eventTime"].as_str().map(str::to_string))
                                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                                {
                                    let sent = SystemTime::from(sent);
                                    let micros = received
                                        .duration_since(sent)
                                        .unwrap_or_default()
                                        .as_micros()
                                        as u64;
                                    seen.latencies.lock().unwrap().push(micros);
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/events")
}

async fn double(events: bool) -> (RunningServer, Client) {
    let config = DoubleConfig::default()
        .answer_delay(Duration::ZERO)
        .play_duration(Duration::ZERO)
        .events_enabled(events);
    let server = Server::bind(config).await.unwrap().spawn();
    let client = Client::new(
        server.uri(),
        "",
        None,
        server.connection_string().signer(),
        Duration::from_secs(30),
    )
    .unwrap();
    (server, client)
}

fn create_body(callback: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "source": {"communicationUser": {"id": "8:acs:bench"}},
        "targets": [{"phoneNumber": {"value": "+14251001000"}}],
        "callbackUri": callback,
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["participantsUpdated", "dtmfReceived"],
    }))
    .unwrap()
}

/// One call's life: create, `plays` play audios, hang up; the requests answered 2xx.
async fn call_life(c: &Client, create: &[u8], plays: u64) -> u64 {
    let json = Some("application/json");
    let Ok(r) = c
        .send("POST", "/calls", json, Some(create), AuthMode::Signed)
        .await
    else {
        return 0;
    };
    let Some(id) = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["callLegId"].as_str().map(str::to_string))
    else {
        return 0;
    };
    let mut ok = 1;
    let play = br#"{"audioFileUri": "https://media.example.com/a.wav"}"#;
    for _ in 0..plays {
        let path = Endpoint::PlayAudio.path(&id, None);
        match c
            .send("POST", &path, json, Some(play), AuthMode::Signed)
            .await
        {
            Ok(r) if r.status == 202 => ok += 1,
            Ok(r) => eprintln!("  play audio answered {}", r.status),
            Err(e) => eprintln!("  play audio failed: {e}"),
        }
    }
    let path = Endpoint::Hangup.path(&id, None);
    if let Ok(r) = c.send("POST", &path, None, None, AuthMode::Signed).await
        && r.status == 202
    {
        ok += 1;
    }
    ok
}

/// The sum of what the tasks return (a failed task counts 0).
async fn total(mut tasks: tokio::task::JoinSet<u64>) -> u64 {
    let mut n = 0;
    while let Some(k) = tasks.join_next().await {
        n += k.unwrap_or(0);
    }
    n
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Waits until the receiver has `n` events (or 60 s of no progress).
async fn wait_events(seen: &Seen, n: u64) {
    let mut last = (seen.events.load(Ordering::Relaxed), Instant::now());
    while seen.events.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = seen.events.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            eprintln!("  (stalled at {now} of {n} events)");
            return;
        }
    }
}

async fn delivery(calls: u64, plays: u64) {
    let seen = Arc::new(Seen::default());
    seen.keep_latencies.store(true, Ordering::Relaxed);
    let url = receiver(seen.clone()).await;
    let (server, client) = double(true).await;
    let create = create_body(&url);
    // Per call: Establishing, Established, ParticipantsUpdated, the plays' results,
    // Terminating, Terminated.
    let expected = calls * (5 + plays);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let (c, create) = (client.clone(), create.clone());
        tasks.spawn(async move { call_life(&c, &create, plays).await });
    }
    while tasks.join_next().await.is_some() {}
    eprintln!(
        "  requests done after {:.2}s, {} events received",
        start.elapsed().as_secs_f64(),
        seen.events.load(Ordering::Relaxed)
    );
    wait_events(&seen, expected).await;
    let secs = start.elapsed().as_secs_f64();
    let got = seen.events.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *seen.latencies.lock().unwrap());
    lat.sort_unstable();
    println!(
        "delivery, {calls} concurrent calls x {} events: {got} of {expected} events in {secs:.2}s \
         = {:.0} events/s; latency p50 {:.2} ms, p99 {:.2} ms",
        5 + plays,
        got as f64 / secs,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    let c = server.handler().event_counters().unwrap_or_default();
    println!(
        "  engine: produced {}, delivered {}, given up {}, dropped {}",
        c.produced, c.delivered, c.given_up, c.dropped
    );
    for (kind, n) in seen.kinds.lock().unwrap().iter() {
        println!("  received {n:>7} {kind}");
    }
    let _ = server.stop().await;
}

/// Delivery latency at a rate the machine sustains: `calls` live calls at once, each
/// playing audio once a second (one `PlayAudioResult` each) for `secs`.
async fn paced(calls: u64, secs: u64) {
    let seen = Arc::new(Seen::default());
    let url = receiver(seen.clone()).await;
    let (server, client) = double(true).await;
    let create = create_body(&url);
    let json = Some("application/json");
    let mut ids = Vec::new();
    for _ in 0..calls {
        let r = client
            .send("POST", "/calls", json, Some(&create), AuthMode::Signed)
            .await;
        if let Some(id) = r
            .ok()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .and_then(|v| v["callLegId"].as_str().map(str::to_string))
        {
            ids.push(id);
        }
    }
    // Only the plays' results count, once every call is established.
    wait_events(&seen, 3 * ids.len() as u64).await;
    let before = seen.events.load(Ordering::Relaxed);
    seen.keep_latencies.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    let play = br#"{"audioFileUri": "https://media.example.com/a.wav"}"#;
    for (i, id) in ids.iter().enumerate() {
        let (c, path) = (client.clone(), Endpoint::PlayAudio.path(id, None));
        // Spread the calls' first plays over the first second.
        let offset = Duration::from_micros(i as u64 * 1_000_000 / calls.max(1));
        tasks.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut plays = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < deadline {
                tick.tick().await;
                if let Ok(r) = c
                    .send("POST", &path, json, Some(play), AuthMode::Signed)
                    .await
                    && r.status == 202
                {
                    plays += 1;
                }
            }
            plays
        });
    }
    let mut plays = 0;
    while let Some(n) = tasks.join_next().await {
        plays += n.unwrap_or(0);
    }
    wait_events(&seen, before + plays).await;
    let mut lat = std::mem::take(&mut *seen.latencies.lock().unwrap());
    lat.sort_unstable();
    println!(
        "paced, {} live calls each playing once a second for {secs}s: {} results of {plays} \
         plays; latency p50 {:.2} ms, p99 {:.2} ms",
        ids.len(),
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    let _ = server.stop().await;
}

/// What one POST of an event costs the sender alone (reqwest, as the engine sends):
/// 32 tasks posting a typical event body to the receiver for `secs` on a runtime of
/// their own, whose CPU time is divided by the POSTs made.
async fn client_cost(secs: u64) {
    let seen = Arc::new(Seen::default());
    let url = receiver(seen.clone()).await;
    let own = OwnRuntime::new();
    let body = Bytes::from(
        serde_json::to_vec(&json!({
            "id": "0c4e7d54-4a0a-4f7e-9d64-5e4b8f3b9a11", "topic": null,
            "subject": "callLeg/6a1d0f9e-7c0b-4a4e-8f0e-1b2c3d4e5f60/playAudio",
            "data": {"CallLegId": "6a1d0f9e-7c0b-4a4e-8f0e-1b2c3d4e5f60", "Status": "Completed",
                "ResultInfo": {"Code": 200, "Subcode": 0, "Message": "Audio file playback completed."}},
            "eventType": "Microsoft.Communication.PlayAudioResult",
            "eventTime": "2026-12-02T18:00:00.000000Z", "metadataVersion": null, "dataVersion": null
        }))
        .unwrap(),
    );
    let cpu_start = own.cpu_secs();
    let (url2, body2) = (url.clone(), body.clone());
    let posts = own
        .rt
        .spawn(async move {
            let (url, body) = (url2, body2);
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .unwrap();
            let url = reqwest::Url::parse(&url).unwrap();
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CLIENTS {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if let Ok(r) = client
                            .post(url.clone())
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                        {
                            let _ = r.bytes().await;
                            n += 1;
                        }
                    }
                    n
                });
            }
            total(tasks).await
        })
        .await
        .unwrap_or(0);
    let cpu = own.cpu_secs() - cpu_start;
    println!(
        "sender alone, reqwest: {posts} POSTs in {secs}s, {:.1} us of the sender's CPU per POST",
        cpu / posts.max(1) as f64 * 1e6
    );
    // The floor under any client: hyper's own connection, one per task, driven in the
    // same task as its requests (no pool, no hop to a connection task).
    let cpu_start = own.cpu_secs();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/events")
        .to_string();
    let posts = own
        .rt
        .spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CLIENTS {
                let (addr, body) = (addr.clone(), body.clone());
                tasks.spawn(async move {
                    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
                        hyper_util::rt::TokioIo::new(stream),
                    )
                    .await
                    .unwrap();
                    let mut conn = std::pin::pin!(conn);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let req = hyper::Request::post("/events")
                            .header("host", addr.as_str())
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .unwrap();
                        let exchange = async {
                            let r = send.send_request(req).await.ok()?;
                            r.into_body().collect().await.ok()
                        };
                        tokio::select! {
                            r = exchange => if r.is_some() { n += 1 } else { break },
                            _ = conn.as_mut() => break,
                        }
                    }
                    n
                });
            }
            total(tasks).await
        })
        .await
        .unwrap_or(0);
    let cpu = own.cpu_secs() - cpu_start;
    println!(
        "sender alone, hyper connection in its task: {posts} POSTs in {secs}s, {:.1} us of the \
         sender's CPU per POST",
        cpu / posts.max(1) as f64 * 1e6
    );
    own.rt.shutdown_background();
}

/// The double on a runtime of its own, whose threads are listed so that their CPU time
/// can be told apart from the clients' and the receiver's.
struct OwnRuntime {
    rt: tokio::runtime::Runtime,
    threads: Arc<Mutex<Vec<std::path::PathBuf>>>,
}

impl OwnRuntime {
    fn new() -> OwnRuntime {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let list = threads.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("double")
            .enable_all()
            .on_thread_start(move || {
                // /proc/thread-self is this thread's /proc/PID/task/TID.
                if let Ok(path) = std::fs::read_link("/proc/thread-self") {
                    list.lock()
                        .unwrap()
                        .push(std::path::Path::new("/proc").join(path));
                }
            })
            .build()
            .unwrap();
        OwnRuntime { rt, threads }
    }

    /// CPU seconds (user + system) of the runtime's threads so far.
    fn cpu_secs(&self) -> f64 {
        let ticks: u64 = self
            .threads
            .lock()
            .unwrap()
            .iter()
            .filter_map(|t| std::fs::read_to_string(t.join("stat")).ok())
            .filter_map(|stat| {
                // Fields after the command name (which may hold spaces) close with ')'.
                let rest = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        ticks as f64 / 100.0
    }
}

/// Requests per second of call lives from 32 clients for `secs`, and the CPU seconds
/// the double itself (its own runtime: server, handler, event engine) spent per request.
async fn throughput(events: bool, secs: u64) -> (f64, f64) {
    let seen = Arc::new(Seen::default());
    let url = receiver(seen.clone()).await;
    let own = OwnRuntime::new();
    let (server, client) = own.rt.spawn(double(events)).await.unwrap();
    let create = create_body(&url);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let cpu_start = own.cpu_secs();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (c, create) = (client.clone(), create.clone());
        tasks.spawn(async move {
            let mut ok = 0;
            while Instant::now() < deadline {
                ok += call_life(&c, &create, 2).await;
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(n) = tasks.join_next().await {
        ok += n.unwrap_or(0);
    }
    let cpu = own.cpu_secs() - cpu_start;
    let rate = ok as f64 / start.elapsed().as_secs_f64();
    let per_request = cpu / ok.max(1) as f64;
    println!(
        "throughput with events {}: {ok} requests, {rate:.0} req/s ({} events received \
         over {} connections); the double's own CPU {cpu:.2} s = {:.1} us per request",
        if events { "on " } else { "off" },
        seen.events.load(Ordering::Relaxed),
        seen.connections.load(Ordering::Relaxed),
        per_request * 1e6
    );
    let _ = own.rt.spawn(server.stop()).await;
    own.rt.shutdown_background();
    (rate, per_request)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

async fn memory(events: u64, max_secs: u64) {
    let seen = Arc::new(Seen::default());
    let url = receiver(seen.clone()).await;
    let (server, client) = double(true).await;
    let create = create_body(&url);
    let plays = 20;
    let per_call = 5 + plays;
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    let calls_needed = events.div_ceil(per_call);
    let next = Arc::new(AtomicU64::new(0));
    println!("memory: RSS at start {} KiB", rss_kib());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (c, create, next) = (client.clone(), create.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls_needed && Instant::now() < deadline {
                call_life(&c, &create, plays).await;
            }
        });
    }
    let mut middle_done = false;
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if !middle_done && seen.events.load(Ordering::Relaxed) >= events / 2 {
            println!(
                "memory: RSS at the middle ({} events) {} KiB",
                seen.events.load(Ordering::Relaxed),
                rss_kib()
            );
            middle_done = true;
        }
    }
    wait_events(&seen, (calls_needed * per_call).min(events)).await;
    let c = server.handler().event_counters().unwrap_or_default();
    println!(
        "memory: RSS at the end ({} events received, {} produced, {} dropped) {} KiB",
        seen.events.load(Ordering::Relaxed),
        c.produced,
        c.dropped,
        rss_kib()
    );
    let _ = server.stop().await;
}

fn main() {
    let calls = env_num("EVENTS_CALLS", 1000);
    let plays = env_num("EVENTS_PLAYS", 5);
    let secs = env_num("BENCH_SECS", 10);
    let mem_events = env_num("BENCH_EVENTS_MEMORY", 0);
    let mem_secs = env_num("BENCH_MEM_SECS", 600);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // BENCH_ONLY=delivery or =throughput runs one part alone.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "delivery" {
            delivery(calls, plays).await;
        }
        if only == "client" {
            client_cost(secs).await;
        }
        if only.is_empty() || only == "paced" {
            paced(calls, secs).await;
        }
        if only.is_empty() || only == "throughput" {
            let (off, off_cpu) = throughput(false, secs).await;
            let (on, on_cpu) = throughput(true, secs).await;
            println!(
                "delivery costs {:.1}% of request throughput, all parties on these 2 cores \
                 (goal: under 20%)",
                (1.0 - on / off.max(1.0)) * 100.0
            );
            println!(
                "delivery costs {:.1}% of the double's own request capacity (CPU per request \
                 {:.1} us off, {:.1} us on)",
                (1.0 - off_cpu / on_cpu.max(f64::MIN_POSITIVE)) * 100.0,
                off_cpu * 1e6,
                on_cpu * 1e6
            );
        }
        if mem_events > 0 {
            memory(mem_events, mem_secs).await;
        }
    });
}
