//! A minimal static target for the load benchmark: answers every request at once, with
//! no state and no checks, so the load generator is what gets measured.
//!
//! `POST /calls` gets 200 and a contract-valid `{"callLegId": ...}`; PlayAudio and
//! CancelMediaProcessing get 202 and a media operation body; everything else 202, no body.
//! Usage: `static_target [ADDR]` (default 127.0.0.1:0); prints `listening on http://ADDR`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

const CALL: &[u8] = br#"{"callLegId":"5a1f0c3e-0000-4000-8000-000000000001"}"#;
const MEDIA: &[u8] = br#"{"id":"op-1","status":"running"}"#;

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let (status, body) = if path.ends_with("/calls") {
        (StatusCode::OK, Some(Bytes::from_static(CALL)))
    } else if path.ends_with("/PlayAudio") || path.ends_with("/CancelMediaProcessing") {
        // A media operation echoes the request's operationContext.
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let context = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("operationContext").cloned());
        let body = match context {
            Some(c) => {
                serde_json::json!({"id": "op-1", "status": "running", "operationContext": c})
                    .to_string()
            }
            None => String::from_utf8_lossy(MEDIA).into_owned(),
        };
        (StatusCode::ACCEPTED, Some(Bytes::from(body)))
    } else {
        (StatusCode::ACCEPTED, None)
    };
    let mut builder = Response::builder().status(status);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = Full::new(body.unwrap_or_default());
    Ok(builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
