//! The load runner's request path against hostile targets (huge, endless and compressed
//! answers, no answer at all) and its clean-up: every call a run creates is hung up.
//! Hostile targets are raw sockets on 127.0.0.1:0; each run is bounded by a deadline.

use acs_harness::auth::ConnectionString;
use acs_harness::contract::Endpoint;
use acs_harness::double::DoubleConfig;
use acs_harness::double::Server;
use acs_harness::request_key;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/process.rs"]
mod process;
use process::text;

/// No run here may take longer than this: the runs are 1 s long, and a run that does
/// not end is the failure these tests look for.
const RUN_BOUND: Duration = Duration::from_secs(60);

/// How a hostile target answers `POST /calls` (a `GET` probe gets an honest 405).
#[derive(Clone, Copy)]
enum Hostile {
    /// 200 announcing a 1 GiB body, then sending it.
    Huge,
    /// 200, chunked, chunks without end (bounded to 1 GiB sent).
    Endless,
    /// 200 with `Content-Encoding: gzip`: a small body that expands to 64 MiB of JSON
    /// with a valid `callLegId`.
    GzipBomb,
    /// Reads the request and never answers.
    Hang,
}

/// A gzip member that expands to a create call answer padded past the cap.
fn gzip_bomb() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(br#"{"callLegId":"5a1f0c3e-0000-4000-8000-000000000001""#)
        .unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&spaces).unwrap();
    }
    gz.write_all(b"}").unwrap();
    gz.finish().unwrap()
}

/// Reads one request head and its body; the method, or `None` when the peer closed.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length.min(2 << 20) {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    head.split(' ').next().map(str::to_string)
}

async fn serve_hostile(mut stream: TcpStream, mode: Hostile, bomb: &[u8]) {
    while let Some(method) = read_request(&mut stream).await {
        if method == "GET" {
            let probe =
                b"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\n\r\n";
            if stream.write_all(probe).await.is_err() {
                return;
            }
            continue;
        }
        let mut sent: u64 = 0;
        let chunk = vec![b' '; 64 * 1024];
        let _ = match mode {
            Hostile::Hang => {
                // Hold the connection until the client gives up on it.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(RUN_BOUND, stream.read(&mut sink)).await;
                return;
            }
            Hostile::Huge => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while sent < 1 << 30 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len() as u64;
                }
                Ok(())
            }
            Hostile::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                while sent < 1 << 30 {
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                    sent += chunk.len() as u64;
                }
                stream.write_all(b"0\r\n\r\n").await
            }
            Hostile::GzipBomb => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                    bomb.len()
                );
                match stream.write_all(head.as_bytes()).await {
                    Ok(()) => stream.write_all(bomb).await,
                    Err(e) => Err(e),
                }
            }
        };
    }
}

/// Starts a hostile target on 127.0.0.1:0; its base URL.
async fn hostile(mode: Hostile) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bomb: std::sync::Arc<[u8]> = gzip_bomb().into();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bomb = bomb.clone();
            tokio::spawn(async move { serve_hostile(stream, mode, &bomb).await });
        }
    });
    format!("http://{addr}")
}

fn connection_string(host: &str) -> String {
    let cs: ConnectionString =
        format!("endpoint={host}/;accesskey=d3Jvbmcga2V5IGJ1dCB2YWxpZCBiYXNlNjQ=")
            .parse()
            .unwrap();
    cs.expose()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acs-load-path-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `acs-harness load` with `args`, failing the test if it does not end within
/// [`RUN_BOUND`].
async fn load(host: &str, cs: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"));
    cmd.args(["load", "--host", host, "--connection-string", cs, "--quiet"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .expect("the run ends")
        .unwrap()
}

/// `(successes, failures)` of a request in a goose JSON report, and every error text.
fn counts(report: &Path, request: &str) -> (u64, u64, String) {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).expect("the JSON report")).unwrap();
    let r = &v["raw_metrics"]["requests"][request];
    (
        r["success_count"].as_u64().unwrap_or(0),
        r["fail_count"].as_u64().unwrap_or(0),
        v["raw_metrics"]["errors"].to_string(),
    )
}

/// A short run of one user creating calls against `host`: its output and the counts of
/// `POST /calls` in its report.
async fn create_calls(host: &str, name: &str, extra: &[&str]) -> (Output, u64, u64, String) {
    let dir = scratch(name);
    let report = dir.join("report.json");
    let mut args = vec![
        "--scenario",
        "call-creation",
        "--users",
        "1",
        "--increase-rate",
        "100",
        "--run-time",
        "1s",
        "--seed",
        "7",
        "--report-file",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = load(host, &connection_string(host), &args).await;
    let (ok, failed, errors) = counts(&report, &request_key(Endpoint::CreateCall));
    let _ = std::fs::remove_dir_all(&dir);
    (out, ok, failed, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_cap_is_a_failed_request_not_read_whole() {
    for (mode, name) in [(Hostile::Huge, "huge"), (Hostile::Endless, "endless")] {
        let host = hostile(mode).await;
        let (out, ok, failed, errors) = create_calls(&host, name, &[]).await;
        assert_eq!(ok, 0, "{name}: {}", text(&out));
        assert!(failed > 0, "{name}: {}", text(&out));
        assert!(errors.contains("byte cap"), "{name}: {errors}");
        // error-rate<1% of the scenario is breached: the target is at fault.
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_a_failed_request_not_decompressed() {
    let host = hostile(Hostile::GzipBomb).await;
    let (out, ok, failed, errors) = create_calls(&host, "gzip", &[]).await;
    assert_eq!(ok, 0, "{}", text(&out));
    assert!(failed > 0, "{}", text(&out));
    assert!(errors.contains("gzip-encoded"), "{errors}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_bounds_requests_to_a_target_that_never_answers() {
    let host = hostile(Hostile::Hang).await;
    // goose's own default (60 s) would outlast RUN_BOUND; --timeout 1s ends the run.
    let (out, ok, failed, errors) = create_calls(&host, "hang", &["--timeout", "1s"]).await;
    assert_eq!(ok, 0, "{}", text(&out));
    assert!(failed > 0, "{}", text(&out));
    assert!(
        errors.contains("timed out") || errors.contains("timeout"),
        "{errors}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_timeout_does_not_start() {
    for bad in ["0s", "soon", "2d"] {
        let out = load(
            "http://127.0.0.1:9",
            &connection_string("http://127.0.0.1:9"),
            &["--timeout", bad],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(text(&out).contains("--timeout"), "{bad}: {}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_a_mixed_run_creates_is_hung_up() {
    let server = Server::bind(DoubleConfig::default())
        .await
        .expect("bind the double")
        .spawn();
    let out = load(
        server.uri(),
        &server.connection_string().expose(),
        &[
            "--scenario",
            "mixed",
            "--users",
            "6",
            "--increase-rate",
            "100",
            "--run-time",
            "1s",
            "--seed",
            "7",
        ],
    )
    .await;
    let t = text(&out);
    let c = server.handler().counters();
    let created = c.by_endpoint[&Endpoint::CreateCall].success;
    assert!(created > 0, "{t}");
    assert_eq!(c.live_calls, 0, "every call is hung up: {t}");
    assert!(
        t.contains(&format!("calls: {created} created, {created} hung up")),
        "{t}"
    );
    assert!(!t.contains("left open"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_still_hangs_up_every_call_the_run_created() {
    // The double says when the tenth call is created, so the run is well under way with
    // users between their create and their hang-up.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let creates = std::sync::atomic::AtomicU64::new(0);
    let server = Server::bind(DoubleConfig::default().tamper(move |req, resp| {
        if req.path_and_query.ends_with("/calls")
            && resp.status == 200
            && creates.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 9
        {
            let _ = tx.try_send(());
        }
    }))
    .await
    .expect("bind the double")
    .spawn();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"));
    cmd.args([
        "load",
        "--host",
        server.uri(),
        "--connection-string",
        &server.connection_string().expose(),
        "--scenario",
        "mixed",
        "--users",
        "6",
        "--increase-rate",
        "100",
        "--run-time",
        "60s",
        "--seed",
        "7",
        "--quiet",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    tokio::time::timeout(RUN_BOUND, rx.recv())
        .await
        .expect("calls are created")
        .expect("the load started");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .expect("the run stops well before its 60 s")
        .unwrap();
    let t = text(&out);
    let c = server.handler().counters();
    let created = c.by_endpoint[&Endpoint::CreateCall].success;
    assert!(created >= 10, "{t}");
    assert_eq!(c.live_calls, 0, "every call is hung up: {t}");
    assert!(
        t.contains(&format!("calls: {created} created, {created} hung up")),
        "{t}"
    );
}
