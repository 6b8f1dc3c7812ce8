//! Shared helpers for the double's tests: a signing client (the crate's `SignedRequest`), a raw-socket
//! client for paths reqwest would normalise, valid bodies, and checks shared by both
//! transports.
#![allow(dead_code)]

pub mod openapi;
pub mod snapshots;

use acs_harness::auth::{ConnectionString, Signer};
use acs_harness::contract::{Endpoint, validate_error_body, validate_response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response, read completely.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub allow: Option<String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// Asserts a 4xx/5xx with a valid error body and returns its message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        validate_error_body(self.content_type.as_deref(), &self.body).unwrap_or_else(|v| {
            panic!(
                "error body {:?}: {v:?}",
                String::from_utf8_lossy(&self.body)
            )
        });
        self.message()
    }
}

/// Signs requests for one double (or any target) through the crate's own client.
#[derive(Clone)]
pub struct Client {
    pub client: acs_harness::Client,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub host: String,
    pub signer: Signer,
    /// Prefix put before every path (e.g. `/calling`).
    pub prefix: String,
    /// Query appended to every path (e.g. `?api-version=x`), empty for none.
    pub query: String,
}

impl Client {
    pub fn new(base: &str, cs: &ConnectionString) -> Client {
        // Generous timeouts: they only tell a hang from a busy machine.
        let client = acs_harness::Client::with_timeouts(
            base,
            "",
            None,
            cs.signer(),
            Duration::from_secs(120),
            Duration::from_secs(60),
        )
        .unwrap();
        Client {
            base: base.trim_end_matches('/').to_string(),
            host: client.host().to_string(),
            client,
            signer: cs.signer(),
            prefix: String::new(),
            query: String::new(),
        }
    }

    pub fn with_prefix(mut self, p: &str) -> Self {
        self.prefix = p.to_string();
        self
    }

    pub fn with_query(mut self, q: &str) -> Self {
        self.query = q.to_string();
        self
    }

    /// Sends `method path` with `body` (JSON content type when non-empty), signed at `at`,
    /// letting `edit` change the headers or body after signing.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        at: SystemTime,
        edit: impl FnOnce(&mut Parts),
    ) -> Resp {
        let pq = format!("{}{}{}", self.prefix, path, self.query);
        let content_type = (!body.is_empty()).then_some("application/json");
        let mut req = self
            .client
            .prepare_exact(method, &pq, content_type, body, at)
            .unwrap();
        let mut parts = Parts {
            headers: std::mem::take(&mut req.headers),
            body: std::mem::take(&mut req.body),
        };
        edit(&mut parts);
        req.headers = parts.headers;
        req.body = parts.body;
        let r = self.client.execute(req).await.unwrap();
        assert!(!r.truncated, "the answer was longer than the client reads");
        Resp {
            status: r.status,
            content_type: r.content_type,
            allow: r.allow,
            body: r.body,
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.send_with(method, path, body, SystemTime::now(), |_| {})
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send("POST", path, &serde_json::to_vec(body).unwrap())
            .await
    }

    /// Creates a call and returns its `callLegId`.
    pub async fn create_call(&self) -> String {
        let r = self.post_json("/calls", &create_body()).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        validate_response(
            Endpoint::CreateCall,
            200,
            r.content_type.as_deref(),
            &r.body,
            None,
        )
        .unwrap();
        r.json()["callLegId"].as_str().unwrap().to_string()
    }
}

/// Headers and body of a request about to be sent, for tests that spoil one.
pub struct Parts {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Parts {
    /// Replaces (or adds) a header.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_string(), value.to_string()));
    }
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// A valid create-call body.
pub fn create_body() -> Value {
    json!({
        "source": {"communicationUser": {"id": "8:acs:11111111-1111-1111-1111-111111111111_22222222-2222-2222-2222-222222222222"}},
        "targets": [{"phoneNumber": {"value": "+14251001000"}}],
        "callbackUri": "https://app.example.com/events",
        "requestedModalities": ["audio"],
        "requestedCallEvents": ["participantsUpdated"],
        "subject": "Réunion d'équipe"
    })
}

pub fn play_body(ctx: Option<&str>) -> Value {
    let mut b = json!({"audioFileUri": "https://media.example.com/hello.wav", "loop": false});
    if let Some(c) = ctx {
        b["operationContext"] = json!(c);
    }
    b
}

pub fn invite_body() -> Value {
    json!({
        "participants": [
            {"phoneNumber": {"value": "+14251001000"}},
            {"communicationUser": {"id": "8:acs:abc_def"}, "rawId": "8:acs:abc_def-raw"},
            {"microsoftTeamsUser": {"userId": "teams-user-1", "cloud": "public"}}
        ],
        "operationContext": "invite-1"
    })
}

/// Sends raw bytes on a fresh connection and reads the answer (`Connection: close`).
pub async fn raw(addr: &str, request: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    Resp {
        status,
        content_type: header("content-type"),
        allow: header("allow"),
        body: buf[split + 4..].to_vec(),
    }
}

/// A signed raw HTTP/1.1 request for `path_and_query` exactly as given.
pub fn raw_signed(client: &Client, method: &str, pq: &str, body: &[u8]) -> Vec<u8> {
    let s = client
        .signer
        .sign(method, pq, &client.host, body, SystemTime::now());
    let mut r = format!(
        "{method} {pq} HTTP/1.1\r\nhost: {}\r\nx-ms-date: {}\r\nx-ms-content-sha256: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        client.host,
        s.date,
        s.content_sha256,
        s.authorization,
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The whole lifecycle of src/contract/CONTRACT.md against a double, each answer checked by the
/// contract's own response validator.
pub async fn lifecycle(c: &Client) {
    let call = c.create_call().await;
    let check = |e: Endpoint, r: &Resp, ctx: Option<&str>| {
        validate_response(e, r.status, r.content_type.as_deref(), &r.body, ctx)
            .unwrap_or_else(|v| panic!("{e}: {v:?}"));
    };

    let r = c
        .post_json(
            &Endpoint::InviteParticipants.path(&call, None),
            &invite_body(),
        )
        .await;
    assert_eq!(r.status, 202);
    check(Endpoint::InviteParticipants, &r, None);

    let r = c
        .post_json(
            &Endpoint::PlayAudio.path(&call, None),
            &play_body(Some("ctx-1")),
        )
        .await;
    assert_eq!(r.status, 202);
    check(Endpoint::PlayAudio, &r, Some("ctx-1"));
    let op = r.json();
    assert_eq!(op["status"], "running");
    assert_eq!(op["operationContext"], "ctx-1");
    assert_eq!(op["resultInfo"]["code"], 202);

    let r = c
        .post_json(&Endpoint::PlayAudio.path(&call, None), &play_body(None))
        .await;
    check(Endpoint::PlayAudio, &r, None);
    assert!(r.json().get("operationContext").is_none());
    assert_ne!(r.json()["id"], op["id"], "media operation ids are fresh");

    let r = c
        .post_json(
            &Endpoint::CancelMediaProcessing.path(&call, None),
            &json!({"operationContext": "cancel-1"}),
        )
        .await;
    assert_eq!(r.status, 202);
    check(Endpoint::CancelMediaProcessing, &r, Some("cancel-1"));
    assert_eq!(r.json()["status"], "completed");

    // Participant ids: phone value (travels as %2B...), rawId, Teams userId.
    for p in ["+14251001000", "8:acs:abc_def-raw", "teams-user-1"] {
        let path = Endpoint::RemoveParticipant.path(&call, Some(p));
        let r = c.send("DELETE", &path, b"").await;
        assert_eq!(r.status, 202, "{p}: {}", r.message());
        check(Endpoint::RemoveParticipant, &r, None);
        let again = c.send("DELETE", &path, b"").await;
        assert!(again.assert_error(404).contains("participant"));
    }
    // The communicationUser id is not the participant id when rawId is given.
    let r = c
        .send(
            "DELETE",
            &Endpoint::RemoveParticipant.path(&call, Some("8:acs:abc_def")),
            b"",
        )
        .await;
    r.assert_error(404);

    let r = c
        .send("POST", &Endpoint::Hangup.path(&call, None), b"")
        .await;
    assert_eq!(r.status, 202);
    check(Endpoint::Hangup, &r, None);
    assert!(r.body.is_empty());

    // Gone: every later request on it gets 404.
    for e in Endpoint::ALL.into_iter().filter(|e| e.needs_call()) {
        let body = match e {
            Endpoint::PlayAudio => serde_json::to_vec(&play_body(None)).unwrap(),
            Endpoint::InviteParticipants => serde_json::to_vec(&invite_body()).unwrap(),
            Endpoint::CancelMediaProcessing => b"{}".to_vec(),
            _ => Vec::new(),
        };
        let r = c
            .send(e.method(), &e.path(&call, Some("+14251001000")), &body)
            .await;
        assert!(r.assert_error(404).contains("not found"), "{e}");
    }
}

/// 1,000 concurrent creates give 1,000 distinct ids.
pub async fn concurrent_creates(c: &Client, n: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let c = c.clone();
        tasks.spawn(async move { c.create_call().await });
    }
    let mut ids = Vec::new();
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), n);
    ids
}
