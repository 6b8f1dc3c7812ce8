//! The double's control API, on its own loopback port so the service surface stays
//! exactly the contract: tests and app developers simulate key presses and look at
//! calls and events.
//!
//! - `POST /calls/{callLegId}/dtmf` with `{"tones": "12#"}` → 202 `{"events": N}`
//! - `GET /calls[?limit=N]` → the live calls with participants and running plays
//! - `GET /events?callLegId=ID` → the call's recent events with their delivery status
//! - `GET /stats` → the event engine's counters
//!
//! Every answer is JSON; errors carry `{"code", "message"}` like the service's.

use super::{ControlError, DoubleError, Handler};
use crate::slots::{Slots, counted};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Largest request body the control API reads.
const BODY_LIMIT: usize = 64 * 1024;

/// How long a client may take to send a request (head, then body).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

/// Calls `GET /calls` lists by default, and at most.
const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;

/// The control API serving in the background; stops when dropped.
pub struct ControlServer {
    uri: String,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("uri", &self.uri)
            .finish()
    }
}

impl ControlServer {
    /// Binds 127.0.0.1:`port` (0: any free port) and serves `handler`'s control
    /// operations. Call inside a tokio runtime.
    pub fn spawn(port: u16, handler: Arc<Handler>) -> Result<ControlServer, DoubleError> {
        let std_listener = super::bind_loopback(port)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(run(listener, handler, rx));
        Ok(ControlServer {
            uri: format!("http://{addr}"),
            stop: Some(tx),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn run(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
    stop: oneshot::Receiver<()>,
) {
    let slots = Slots::new(MAX_CONNECTIONS);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.acquire() => match slot {
                Some(slot) => slot,
                None => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("control API: accept failed: {e}");
                    drop(slot);
                    // Out of descriptors: the next accept would fail alike at once.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let service = counted(slot.busy(), move |req| respond(handler.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .keep_alive(slot.keep_alive())
                .serve_connection(TokioIo::new(stream), service_fn(service));
            slot.drive(conn, std::future::pending()).await;
        });
    }
    connections.abort_all();
}

fn answer(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    answer(status, &json!({ "code": code, "message": message }))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn respond(
    handler: Arc<Handler>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (method.as_str(), segments.as_slice()) {
        ("POST", ["calls", call, "dtmf"]) => {
            let call = call.to_string();
            dtmf(&handler, &call, req.into_body()).await
        }
        ("GET", ["calls"]) => {
            let limit = query_param(query.as_deref(), "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(DEFAULT_LIMIT)
                .min(MAX_LIMIT);
            calls(&handler, limit)
        }
        ("GET", ["events"]) => match query_param(query.as_deref(), "callLegId") {
            Some(id) => match handler.events(&id) {
                Some(records) => answer(
                    200,
                    &json!({
                        "callLegId": id,
                        "events": records.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
                    }),
                ),
                None => error(
                    404,
                    "NotFound",
                    &format!(
                        "no events known for call {} (never created, evicted, hung up long \
                         ago, or events are off)",
                        crate::redact::clip(&id, 80)
                    ),
                ),
            },
            None => error(
                400,
                "BadRequest",
                "callLegId: the query parameter callLegId=ID is required",
            ),
        },
        ("GET", ["stats"]) => stats(&handler),
        (_, ["calls", _, "dtmf"]) => method_not_allowed("POST"),
        (_, ["calls"] | ["events"] | ["stats"]) => method_not_allowed("GET"),
        _ => error(
            404,
            "NotFound",
            "no such control operation; there are POST /calls/{callLegId}/dtmf, GET /calls, \
             GET /events?callLegId=ID and GET /stats",
        ),
    };
    Ok(resp)
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error(
        405,
        "MethodNotAllowed",
        &format!("this control path allows {allow} only"),
    );
    r.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(allow),
    );
    r
}

async fn dtmf(handler: &Handler, call: &str, body: Incoming) -> Response<Full<Bytes>> {
    let read = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, BODY_LIMIT).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return error(
                413,
                "PayloadTooLarge",
                &format!("the body must be at most {BODY_LIMIT} bytes"),
            );
        }
        Err(_) => return error(408, "RequestTimeout", "the body did not arrive in time"),
    };
    let tones = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("tones")?.as_str().map(str::to_string));
    let Some(tones) = tones else {
        return error(
            400,
            "BadRequest",
            r#"tones: send a JSON object like {"tones": "12#"}"#,
        );
    };
    match handler.press_keys(call, &tones) {
        Ok(n) => answer(202, &json!({ "events": n })),
        Err(e) => {
            let (status, code) = match e {
                ControlError::EventsOff => (409, "EventsOff"),
                ControlError::UnknownCall(_) => (404, "NotFound"),
                ControlError::NotEstablished(_) => (409, "NotEstablished"),
                ControlError::BadTones(_) => (400, "BadRequest"),
            };
            error(status, code, &crate::redact::clip(&e.to_string(), 300))
        }
    }
}

fn calls(handler: &Handler, limit: usize) -> Response<Full<Bytes>> {
    let (total, views) = handler.calls(limit);
    let calls: Vec<Value> = views
        .iter()
        .map(|c| {
            json!({
                "callLegId": c.call_leg_id,
                "state": c.state.map(|s| s.name()),
                "participants": c.participants,
                "operations": c.plays.iter().map(|p| {
                    let mut op = json!({ "id": p.id, "kind": "playAudio", "loop": p.looped });
                    if let Some(ctx) = &p.operation_context {
                        op["operationContext"] = Value::String(ctx.clone());
                    }
                    op
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    answer(
        200,
        &json!({ "total": total, "truncated": total > calls.len(), "calls": calls }),
    )
}

fn stats(handler: &Handler) -> Response<Full<Bytes>> {
    let live = handler.counters().live_calls;
    let body = match handler.event_counters() {
        Some(c) => json!({
            "events": true,
            "liveCalls": live,
            "produced": c.produced,
            "delivered": c.delivered,
            "failedAttempts": c.failed_attempts,
            "givenUp": c.given_up,
            "notAllowed": c.not_allowed,
            "dropped": c.dropped,
            "queued": c.queued,
            "queuedBytes": c.queued_bytes,
        }),
        None => json!({ "events": false, "liveCalls": live }),
    };
    answer(200, &body)
}
