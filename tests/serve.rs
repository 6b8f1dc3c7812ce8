//! The double behind `serve`'s hyper transport: the same answers as on wiremock, raw
//! paths as sent, bounded body reading, clean shutdown, and the `serve` binary.

mod common;

use acs_harness::contract::{Endpoint, validate_error_body};
use acs_harness::double::DoubleConfig;
use acs_harness::double::{RunningServer, Server};
use common::{Client, create_body};
use std::io::BufRead as _;
use std::time::Duration;

async fn start(config: DoubleConfig) -> (RunningServer, Client) {
    let server = Server::bind(config).await.unwrap();
    let running = server.spawn();
    let c = Client::new(running.uri(), &running.connection_string());
    (running, c)
}

#[tokio::test]
async fn lifecycle_over_hyper() {
    let (s, c) = start(DoubleConfig::default()).await;
    common::lifecycle(&c).await;
    assert_eq!(s.handler().counters().live_calls, 0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn thousand_concurrent_creates_and_interleaved_lifecycles() {
    let (s, c) = start(DoubleConfig::default()).await;
    common::concurrent_creates(&c, 1000).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.spawn(async move { common::lifecycle(&c).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let counts = s.handler().counters();
    assert_eq!(counts.live_calls, 1000);
    assert_eq!(counts.by_endpoint[&Endpoint::Hangup].success, 50);
    assert_eq!(
        counts.by_endpoint[&Endpoint::RemoveParticipant].success,
        150
    );
    assert_eq!(counts.by_status.get(&500), None);
}

#[tokio::test]
async fn raw_paths_reach_the_handler_as_sent() {
    let (s, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let addr = c.host.clone();
    // Signed correctly for the raw path: authentication passes, routing answers 404.
    for pq in [
        format!("/calls/{call}/../{call}/Hangup"),
        "/calls/../calls".to_string(),
        format!("/calls/%2E%2E/{call}/Hangup"),
        format!("/calls/{call}%2FHangup"),
        format!("/calls/{call}%2F..%2F/Hangup"),
    ] {
        let r = common::raw(&addr, &common::raw_signed(&c, "POST", &pq, b"")).await;
        assert!(!r.assert_error(404).is_empty(), "{pq}");
    }
    // The id itself, percent-encoded, is decoded before lookup.
    let encoded = call.replace('-', "%2D");
    let pq = format!("/calls/{encoded}/Hangup");
    let r = common::raw(&addr, &common::raw_signed(&c, "POST", &pq, b"")).await;
    assert_eq!(r.status, 202);
    assert!(!s.handler().has_call(&call));
}

#[tokio::test]
async fn methods_are_case_sensitive() {
    let (s, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let body = serde_json::to_vec(&create_body()).unwrap();
    // Signed for the method as sent, so only the method's case is wrong (RFC 9110 §9.1).
    for (method, pq, allow) in [
        ("post", "/calls".to_string(), "POST"),
        ("Post", Endpoint::Hangup.path(&call, None), "POST"),
        (
            "delete",
            Endpoint::RemoveParticipant.path(&call, Some("p")),
            "DELETE",
        ),
    ] {
        let r = common::raw(&c.host, &common::raw_signed(&c, method, &pq, &body)).await;
        r.assert_error(405);
        assert_eq!(r.allow.as_deref(), Some(allow), "{method} {pq}");
    }
    assert!(
        s.handler().has_call(&call),
        "`Post .../Hangup` hung nothing up"
    );
    // A lowercase `head` is not HEAD: its 405 carries the error body.
    let r = common::raw(&c.host, &common::raw_signed(&c, "head", "/calls", b"")).await;
    r.assert_error(405);
}

/// Sends `head` then a chunked body of 17 MiB of spaces, reading the answer meanwhile
/// (the server answers before the body ends); returns the status line's start.
async fn chunked_past_the_limit(addr: &str, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let write = async {
        let chunk = vec![b' '; 1024 * 1024];
        let _ = wr.write_all(head).await;
        for _ in 0..17 {
            if wr.write_all(b"100000\r\n").await.is_err()
                || wr.write_all(&chunk).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
    };
    let mut buf = Vec::new();
    let read = rd.read_to_end(&mut buf);
    let (_, _) = tokio::join!(write, read);
    String::from_utf8_lossy(&buf[..buf.len().min(12)]).to_string()
}

/// A signed request head declaring `extra` headers (a length or chunking) for a body
/// whose hash is that of the empty body: the signature holds, the body is never read.
fn signed_head(c: &Client, method: &str, pq: &str, extra: &str) -> Vec<u8> {
    let s = c
        .signer
        .sign(method, pq, &c.host, b"", std::time::SystemTime::now());
    format!(
        "{method} {pq} HTTP/1.1\r\nhost: {}\r\nx-ms-date: {}\r\nx-ms-content-sha256: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\n{extra}\r\n",
        c.host, s.date, s.content_sha256, s.authorization
    )
    .into_bytes()
}

#[tokio::test]
async fn big_bodies_are_bounded() {
    let (s, c) = start(DoubleConfig::default()).await;
    let ten_mb = vec![b' '; 10 * 1024 * 1024];
    let r = c.send("POST", "/calls", &ten_mb).await;
    r.assert_error(413);

    // Chunked beyond 16 MiB: the limit stops reading; authentication still comes first.
    let unsigned = b"POST /calls HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let status = chunked_past_the_limit(&c.host, unsigned).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    let signed = signed_head(&c, "POST", "/calls", "transfer-encoding: chunked\r\n");
    let status = chunked_past_the_limit(&c.host, &signed).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // A declared length beyond the limit is answered without reading the body: 401
    // without the key, 404 for an unknown path, 413 for one of the six.
    let huge = "content-length: 99999999999\r\nconnection: close\r\n";
    let unsigned = format!("POST /calls HTTP/1.1\r\nhost: x\r\n{huge}\r\n{{").into_bytes();
    for (request, status) in [
        (unsigned, 401),
        (signed_head(&c, "POST", "/nope", huge), 404),
        (signed_head(&c, "GET", "/calls", huge), 405),
        (signed_head(&c, "POST", "/calls", huge), 413),
    ] {
        let r = common::raw(&c.host, &request).await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&request));
        validate_error_body(r.content_type.as_deref(), &r.body).unwrap();
    }
    assert_eq!(s.handler().counters().live_calls, 0);
}

#[tokio::test]
async fn a_body_just_over_the_limit_is_read_to_its_end_and_answered_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answered before the body was read, a client still writing met a reset instead of
    // the 413 (the gate then saw no answer and reported a false violation). A small
    // send buffer keeps this client writing long after the head arrived.
    let (_s, c) = start(DoubleConfig::default()).await;
    let len = acs_harness::contract::MAX_BODY_BYTES + 16;
    let extra = format!("content-length: {len}\r\nconnection: close\r\n");
    for _ in 0..3 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        let mut stream = socket.connect(c.host.parse().unwrap()).await.unwrap();
        stream
            .write_all(&signed_head(&c, "POST", "/calls", &extra))
            .await
            .unwrap();
        stream
            .write_all(&vec![b' '; len])
            .await
            .expect("the whole body is read before the answer");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered and closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
}

#[tokio::test]
async fn hostile_bodies_over_hyper() {
    let (_s, c) = start(DoubleConfig::default()).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        Vec::new(),
        vec![0xff, 0xfe],
        deep.into_bytes(),
        br#"{"source": 1e999999}"#.to_vec(),
        br#"{"a":1,"a":2}"#.to_vec(),
    ] {
        c.send("POST", "/calls", &body).await.assert_error(400);
    }
    let r = c.send("HEAD", "/calls", b"").await;
    assert_eq!((r.status, r.allow.as_deref()), (405, Some("POST")));
    assert!(r.body.is_empty());
    // Garbage on the wire: hyper answers 400 itself or closes; the server keeps serving.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        common::raw(&c.host, b"\x00\x01\x02 nonsense\r\n\r\n"),
    )
    .await;
    c.create_call().await;
}

#[tokio::test]
async fn options_over_hyper() {
    let config = DoubleConfig::default()
        .prefix("/calling")
        .api_version("2021-04-15-preview1");
    let (_s, c) = start(config).await;
    c.post_json("/calls", &create_body())
        .await
        .assert_error(404);
    let p = c.clone().with_prefix("/calling");
    assert!(
        p.post_json("/calls", &create_body())
            .await
            .assert_error(400)
            .contains("api-version")
    );
    common::lifecycle(&p.with_query("?api-version=2021-04-15-preview1")).await;
}

#[tokio::test]
async fn stop_is_clean_and_frees_the_port() {
    let (s, c) = start(DoubleConfig::default()).await;
    c.create_call().await;
    let addr = c.host.clone();
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .unwrap()
        .unwrap();
    // Bound again rather than connected to: a connect to a closed port in the
    // ephemeral range can, rarely, connect to itself.
    assert!(std::net::TcpListener::bind(&addr).is_ok());
}

#[test]
fn serve_binary_prints_its_address_and_stops_on_sigterm() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(["serve", "--port", "0", "--prefix", "/calling"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let uri = first.strip_prefix("listening on ").unwrap().to_string();
    let port: u16 = uri.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert_eq!(
        second,
        format!(
            "connection string: endpoint={uri}/;accesskey={}",
            acs_harness::double::DEV_ACCESS_KEY
        )
    );
    let cs: acs_harness::auth::ConnectionString = second
        .strip_prefix("connection string: ")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(&uri, &cs).with_prefix("/calling");
        common::lifecycle(&c).await;
    });
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Stderr is a pipe here: plain text a log file can hold, and no line per request
    // at the default level.
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        !log.contains('\x1b'),
        "colour codes in a piped log: {log:?}"
    );
    assert!(!log.contains("double request"), "{log}");
}

#[test]
fn serve_rejects_a_bad_key_without_echoing_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(["serve", "--port", "0", "--access-key", "%%secret-ish%%"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("--access-key"), "{all}");
    assert!(!all.contains("secret-ish"), "{all}");
}

#[test]
fn serve_on_a_taken_port_says_why_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args(["serve", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

/// Reads one answer from `s` until the server closes the connection (bounded wait).
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> common::Resp {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .expect("read");
    parse_answer(&buf)
}

fn parse_answer(buf: &[u8]) -> common::Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    common::Resp {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        content_type: header("content-type"),
        allow: header("connection"),
        body: buf[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn a_stalled_body_is_closed_by_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let config = DoubleConfig::default().body_timeout(Duration::from_millis(200));
    let (s, c) = start(config).await;
    // Signed for the whole body, so the head passes; then only 10 of 100 bytes come.
    let body = vec![b' '; 100];
    let sig = c.signer.sign(
        "POST",
        "/calls",
        &c.host,
        &body,
        std::time::SystemTime::now(),
    );
    let head = format!(
        "POST /calls HTTP/1.1\r\nhost: {}\r\nx-ms-date: {}\r\nx-ms-content-sha256: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
        c.host, sig.date, sig.content_sha256, sig.authorization
    );
    let mut stream = tokio::net::TcpStream::connect(&c.host).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    // The stream stays open on our side: only the server's deadline can end this.
    let r = read_until_closed(&mut stream).await;
    assert!(r.assert_error(408).contains("--body-timeout"));
    assert_eq!(r.allow.as_deref(), Some("close"));
    let mut open = s.open_connections();
    tokio::time::timeout(Duration::from_secs(10), open.wait_for(|n| *n == 0))
        .await
        .unwrap()
        .unwrap();
    // The server serves on.
    c.create_call().await;
}

#[tokio::test]
async fn beyond_the_connection_limit_clients_are_served_once_and_idle_connections_make_room() {
    let (s, c) = start(DoubleConfig::default().max_connections(2)).await;
    let mut open = s.open_connections();
    let mut silent = Vec::new();
    // Two silent connections take both keep-alive slots.
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(&c.host).await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(10), open.wait_for(|n| *n == 2))
        .await
        .unwrap()
        .unwrap();
    let keep_alive = |c: &Client| {
        let body = serde_json::to_vec(&create_body()).unwrap();
        let request = common::raw_signed(c, "POST", "/calls", &body);
        String::from_utf8(request)
            .unwrap()
            .replace("connection: close", "connection: keep-alive")
            .into_bytes()
    };
    // A third client asks to keep its connection, is served at once from the reserve,
    // and the server closes the connection after the answer (raw reads to the end).
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        common::raw(&c.host, &keep_alive(&c)),
    )
    .await
    .expect("served beyond the limit and closed");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Eight more silent connections take the reserve (2 keep-alive + a reserve of 8).
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(&c.host).await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(10), open.wait_for(|n| *n == 10))
        .await
        .unwrap()
        .unwrap();
    // Now a client waits, but not for the 30 s keep-alive timeout: connections idle for
    // a second are closed to make room.
    let body = serde_json::to_vec(&create_body()).unwrap();
    let request = common::raw_signed(&c, "POST", "/calls", &body);
    let r = tokio::time::timeout(Duration::from_secs(10), common::raw(&c.host, &request))
        .await
        .expect("served once idle connections were closed, well before their 30 s timeout");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.handler().counters().live_calls, 2);
    drop(silent);
}

#[tokio::test]
async fn an_unsigned_declared_body_gets_401_before_a_byte_of_it_is_sent() {
    use tokio::io::AsyncWriteExt;
    let (s, c) = start(DoubleConfig::default()).await;
    let wrong = acs_harness::auth::Signer::new(
        &acs_harness::auth::AccessKey::from_base64("d3Jvbmcga2V5").unwrap(),
    );
    let sig = wrong.sign(
        "POST",
        "/calls",
        &c.host,
        b"x",
        std::time::SystemTime::now(),
    );
    let heads = [
        // No signature at all.
        "POST /calls HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 15000000\r\n\r\n".to_string(),
        // Signed with another key.
        format!(
            "POST /calls HTTP/1.1\r\nhost: {}\r\nx-ms-date: {}\r\nx-ms-content-sha256: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 900000\r\n\r\n",
            c.host, sig.date, sig.content_sha256, sig.authorization
        ),
        // Chunked, with no chunk sent.
        "POST /calls HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
    ];
    for head in heads {
        let mut stream = tokio::net::TcpStream::connect(&c.host).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // No body is ever sent: the answer can only come from the head.
        let r = read_until_closed(&mut stream).await;
        r.assert_error(401);
        assert_eq!(r.allow.as_deref(), Some("close"), "{head}");
    }
    // A signed head declaring more than 1 MiB: 413 at once, body unsent.
    let mut stream = tokio::net::TcpStream::connect(&c.host).await.unwrap();
    stream
        .write_all(&signed_head(
            &c,
            "POST",
            "/calls",
            "content-length: 2000000\r\n",
        ))
        .await
        .unwrap();
    read_until_closed(&mut stream).await.assert_error(413);
    let counts = s.handler().counters();
    assert_eq!(
        (counts.by_status.get(&401), counts.by_status.get(&413)),
        (Some(&3), Some(&1))
    );
}

#[tokio::test]
async fn a_body_that_does_not_match_its_signed_hash_gets_401() {
    let (s, c) = start(DoubleConfig::default()).await;
    let body = serde_json::to_vec(&create_body()).unwrap();
    let mut request = common::raw_signed(&c, "POST", "/calls", &body);
    // Same length, one byte changed: the head passes, the hash of what came does not.
    let last = request.len() - 2;
    request[last] = b' ';
    let r = common::raw(&c.host, &request).await;
    assert!(r.assert_error(401).contains("does not match"));
    assert_eq!(s.handler().counters().live_calls, 0);
}

#[tokio::test]
async fn hypers_own_answers_carry_the_error_body() {
    let (_s, c) = start(DoubleConfig::default()).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /calls HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    for (request, status) in [
        (b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), 400),
        (b"GET /calls HTTP/1.1\r\nho st: x\r\n\r\n".to_vec(), 400),
        (long_uri.into_bytes(), 414),
        (many_headers.into_bytes(), 431),
    ] {
        let r = common::raw(&c.host, &request).await;
        assert!(
            r.assert_error(status).contains("not authenticated"),
            "{status}"
        );
    }
    // A request without Host is not malformed to hyper: the double answers 400 itself.
    let r = common::raw(
        &c.host,
        b"POST /calls HTTP/1.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.assert_error(400).contains("Host"));
    c.create_call().await;
}

#[tokio::test]
async fn a_target_is_removed_over_hyper() {
    let (s, c) = start(DoubleConfig::default()).await;
    let call = c.create_call().await;
    let target = create_body()["targets"][0]["phoneNumber"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let path = Endpoint::RemoveParticipant.path(&call, Some(&target));
    assert_eq!(c.send("DELETE", &path, b"").await.status, 202);
    c.send("DELETE", &path, b"").await.assert_error(404);
    assert_eq!(
        s.handler().participants(&call).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn serve_rejects_absurd_latency_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
        .args([
            "serve",
            "--port",
            "0",
            "--latency",
            "5000000000000000h",
            "--latency-jitter",
            "5000000000000000h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--latency") && err.contains("1h"), "{err}");
    assert!(out.stdout.is_empty(), "it never started listening");
    for (option, value) in [
        ("--max-state-bytes", "12 parsecs"),
        ("--max-state-bytes", "100"),
        ("--max-connections", "0"),
        ("--body-timeout", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_acs-harness"))
            .args(["serve", "--port", "0", option, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{option} {value}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(option));
    }
}

/// Runs `serve` under `sh -c "ulimit -n <fds>; exec acs-harness serve ..."`; returns
/// the child, its address and connection string, and its stderr lines as they come.
fn serve_with_fd_limit(
    fds: u32,
    extra: &str,
) -> (
    std::process::Child,
    String,
    acs_harness::auth::ConnectionString,
    std::sync::mpsc::Receiver<String>,
) {
    let script = format!("ulimit -n {fds} && exec \"$0\" serve --port 0 {extra}",);
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_acs-harness")])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let uri = lines.next().unwrap().unwrap();
    let uri = uri.strip_prefix("listening on ").unwrap().to_string();
    let cs = lines.next().unwrap().unwrap();
    let cs = cs
        .strip_prefix("connection string: ")
        .unwrap()
        .parse()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, uri, cs, rx)
}

/// Waits (bounded) for a stderr line containing `needle`.
fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needle:?}: {e}"),
        }
    }
}

fn stop_child(mut child: std::process::Child) {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn out_of_descriptors_it_keeps_accepting_without_a_log_flood() {
    // 48 descriptors, a limit of 1000 connections: accepting runs out of descriptors.
    let (child, uri, cs, log) = serve_with_fd_limit(48, "--max-connections 1000");
    let addr = uri.trim_start_matches("http://").to_string();
    let holders: Vec<_> = (0..80)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let line = wait_for_line(&log, "accept failed");
    assert!(line.contains("etrying"), "{line}");
    // Once the holders go, the server serves again.
    drop(holders);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(&uri, &cs);
        tokio::time::timeout(Duration::from_secs(20), c.create_call())
            .await
            .expect("served after descriptors freed");
    });
    stop_child(child);
    let rest: Vec<String> = log.try_iter().collect();
    let failures = rest.iter().filter(|l| l.contains("accept failed")).count();
    // 80 queued connections over the whole run, at most one line per 10 s.
    assert!(failures <= 1, "{rest:#?}");
}

#[test]
fn the_connection_limit_is_logged_once_not_per_connection() {
    let (child, uri, cs, log) = serve_with_fd_limit(1024, "--max-connections 3");
    let addr = uri.trim_start_matches("http://").to_string();
    let holders: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let line = wait_for_line(&log, "connection limit reached");
    assert!(line.contains("--max-connections"), "{line}");
    drop(holders);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(&uri, &cs);
        tokio::time::timeout(Duration::from_secs(20), c.create_call())
            .await
            .expect("served once the holders closed");
    });
    stop_child(child);
    let rest: Vec<String> = log.try_iter().collect();
    let more = rest
        .iter()
        .filter(|l| l.contains("connection limit"))
        .count();
    assert!(more <= 1, "{rest:#?}");
}
