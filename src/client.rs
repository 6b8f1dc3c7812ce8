//! The signed HTTP client the gate and the live snapshots talk to a target with: base
//! URL, path prefix, `api-version`, a per-request timeout, a cap on response bodies, and
//! deliberate signing faults for the authentication checks.

use crate::auth::{SignedHeaders, Signer, content_hash, format_date};
use std::time::{Duration, Instant, SystemTime};

/// Response bodies are read up to this many bytes; the rest is dropped and reported.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How a request is authenticated; everything but `Signed` is a deliberate fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Signed correctly with the current time.
    Signed,
    /// No `Authorization` header at all (date and content hash still sent).
    Missing,
    /// `Authorization: Bearer ...` instead of HMAC-SHA256.
    OtherScheme,
    /// A well-formed HMAC-SHA256 header with a wrong signature.
    BadSignature,
    /// Signed for the body, then one byte of the body changed before sending.
    BodyChangedAfterSigning,
    /// Signed correctly, with `x-ms-date` shifted by this many seconds.
    DateOffset(i64),
    /// Signed correctly, then the `x-ms-date` header left out.
    MissingDate,
    /// Signed correctly, then the `x-ms-content-sha256` header left out.
    MissingContentHash,
    /// Signed for another host than the one the request goes to.
    OtherHost,
    /// Signed for another path than the one the request goes to (a replayed signature).
    OtherPath,
    /// Signed for another method than the one the request uses.
    OtherMethod,
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Bad base URL or options.
    #[error("invalid target: {0}")]
    Config(String),
    /// The connection could not be made (refused, DNS, TLS).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The target URL.
        target: String,
        /// The cause chain, in words.
        reason: String,
    },
    /// No complete answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke while the response was being read.
    #[error("the response broke off: {0}")]
    Interrupted(String),
}

impl ClientError {
    /// Whether the target could not be reached at all (the gate stops with exit 2).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Config(_))
    }
}

/// A response as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Allow` header, if any.
    pub allow: Option<String>,
    /// Every response header, in order (`acs-harness send` prints them).
    pub headers: Vec<(String, String)>,
    /// The body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Vec<u8>,
    /// Whether the body was longer than what was kept.
    pub truncated: bool,
    /// Time to the complete response.
    pub elapsed: Duration,
}

/// A signed client for one target.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    host: String,
    prefix: String,
    api_version: Option<String>,
    signer: Signer,
    timeout: Duration,
}

impl Client {
    /// A client for `base` (http or https), with an optional path prefix and api-version.
    pub fn new(
        base: &str,
        prefix: &str,
        api_version: Option<&str>,
        signer: Signer,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let base = url::Url::parse(base).map_err(|e| {
            // An unparsable URL may still carry `user:password@`: never echo it then.
            let shown = if base.contains('@') {
                "the target"
            } else {
                base
            };
            ClientError::Config(format!("{shown:?} is not a URL ({e})"))
        })?;
        let base = without_credentials(base);
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!("{base} is not an http(s) URL")));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(ClientError::Config(format!("{base} has no host"))),
        };
        let prefix = normalise_prefix(prefix);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            http,
            base,
            host,
            prefix,
            api_version: api_version.map(str::to_string),
            signer,
            timeout,
        })
    }

    /// The base URL of the target.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The path and query a contract path (`/calls/...`, already percent-encoded) is
    /// sent as: prefix, path, and the `api-version` query when one is set.
    pub fn path_and_query(&self, path: &str) -> String {
        match &self.api_version {
            Some(v) => format!(
                "{}{path}?api-version={}",
                self.prefix,
                crate::contract::encode_segment(v)
            ),
            None => format!("{}{path}", self.prefix),
        }
    }

    /// The full URL for a contract path.
    pub fn url(&self, path: &str) -> String {
        let origin = self.base.origin().ascii_serialization();
        let base_path = self.base.path().trim_end_matches('/');
        format!("{origin}{base_path}{}", self.path_and_query(path))
    }

    /// The signed headers for a request, as [`AuthMode::Signed`] would send them.
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> SignedHeaders {
        self.signer
            .sign(method, path_and_query, &self.host, body, SystemTime::now())
    }

    /// Sends `method path` with an optional body and content type, authenticated per `auth`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        auth: AuthMode,
    ) -> Result<Reply, ClientError> {
        self.send_with_headers(method, path, content_type, &[], body, auth)
            .await
    }

    /// [`Client::send`] with extra request headers (`acs-harness send --header`); they
    /// go out as given, after the signing headers.
    pub async fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        auth: AuthMode,
    ) -> Result<Reply, ClientError> {
        let url = self.url(path);
        let parsed =
            url::Url::parse(&url).map_err(|e| ClientError::Config(format!("{url:?}: {e}")))?;
        // The signature covers the path and query exactly as they go on the wire.
        let signed_path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let method_v = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Config(format!("{method:?} is not an HTTP method")))?;
        let body = body.unwrap_or_default();
        let now = SystemTime::now();
        let date_time = match auth {
            AuthMode::DateOffset(s) if s >= 0 => now + Duration::from_secs(s.unsigned_abs()),
            AuthMode::DateOffset(s) => now - Duration::from_secs(s.unsigned_abs()),
            _ => now,
        };
        let date = format_date(date_time);
        let hash = content_hash(body);
        let signed_host = match auth {
            AuthMode::OtherHost => "attacker.example",
            _ => self.host.as_str(),
        };
        let (signed_method, signed_path) = match auth {
            AuthMode::OtherPath => (method, format!("/calls/replayed{signed_path}")),
            AuthMode::OtherMethod => (if method == "GET" { "POST" } else { "GET" }, signed_path),
            _ => (method, signed_path),
        };
        let authorization =
            self.signer
                .authorization(signed_method, &signed_path, signed_host, &date, &hash);
        let mut sent_body = body.to_vec();
        let authorization = match auth {
            AuthMode::Signed
            | AuthMode::DateOffset(_)
            | AuthMode::MissingDate
            | AuthMode::MissingContentHash
            | AuthMode::OtherHost
            | AuthMode::OtherPath
            | AuthMode::OtherMethod => Some(authorization),
            AuthMode::Missing => None,
            AuthMode::OtherScheme => Some("Bearer eyJhbGciOiJub25lIn0.e30.".to_string()),
            AuthMode::BadSignature => Some(format!(
                "HMAC-SHA256 SignedHeaders={}&Signature={}",
                crate::auth::SIGNED_HEADERS,
                content_hash(authorization.as_bytes())
            )),
            AuthMode::BodyChangedAfterSigning => {
                match sent_body.last_mut() {
                    Some(b) => *b = if *b == b' ' { b'\n' } else { b' ' },
                    None => sent_body.push(b' '),
                }
                Some(authorization)
            }
        };
        let mut req = self.http.request(method_v, parsed);
        if auth != AuthMode::MissingDate {
            req = req.header("x-ms-date", date);
        }
        if auth != AuthMode::MissingContentHash {
            req = req.header("x-ms-content-sha256", hash);
        }
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if !sent_body.is_empty() {
            req = req.body(sent_body);
        }
        let started = Instant::now();
        let mut resp = req.send().await.map_err(|e| self.classify(&e))?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let status = resp.status().as_u16();
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let allow = header(reqwest::header::ALLOW);
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), v)
            })
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(ClientError::Timeout(self.timeout)),
                Err(e) => return Err(ClientError::Interrupted(error_chain(&e))),
            }
        }
        Ok(Reply {
            status,
            content_type,
            allow,
            headers,
            body,
            truncated,
            elapsed: started.elapsed(),
        })
    }

    fn classify(&self, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout(self.timeout)
        } else if e.is_connect() || e.is_builder() {
            ClientError::Connect {
                target: self.base.to_string(),
                reason: error_chain(e),
            }
        } else {
            ClientError::Interrupted(error_chain(e))
        }
    }
}

/// The URL without `user:password@`, which this client never sends and never prints.
fn without_credentials(mut u: url::Url) -> url::Url {
    // Both setters only fail for URLs that cannot have credentials at all.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

/// `/calling/` → `/calling`, `calling` → `/calling`, `` → ``.
pub fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_end_matches('/');
    if p.is_empty() {
        String::new()
    } else if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// An error and its sources, joined, for one-line messages.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccessKey;

    fn client(base: &str, prefix: &str, v: Option<&str>) -> Client {
        let key = AccessKey::from_base64("a2V5").unwrap();
        Client::new(base, prefix, v, Signer::new(&key), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn builds_urls_with_prefix_and_api_version() {
        let c = client(
            "http://127.0.0.1:9/",
            "calling/",
            Some("2021-04-15-preview1"),
        );
        assert_eq!(
            c.path_and_query("/calls"),
            "/calling/calls?api-version=2021-04-15-preview1"
        );
        let c = client("https://x.example/base", "", None);
        assert_eq!(
            c.url("/calls/a/Hangup"),
            "https://x.example/base/calls/a/Hangup"
        );
        assert!(
            Client::new(
                "ftp://x",
                "",
                None,
                c.signer.clone(),
                Duration::from_secs(1)
            )
            .is_err()
        );
        assert!(Client::new("nope", "", None, c.signer.clone(), Duration::from_secs(1)).is_err());
        let c = client("https://user:hunter2@x.example/", "", None);
        assert!(!format!("{c:?} {}", c.base()).contains("hunter2"));
        let e = Client::new(
            "https://u:hunter2@[bad",
            "",
            None,
            c.signer.clone(),
            Duration::from_secs(1),
        );
        assert!(!e.unwrap_err().to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(&format!("http://{addr}"), "", None);
        let e = c
            .send("POST", "/calls", None, None, AuthMode::Signed)
            .await
            .unwrap_err();
        assert!(e.is_unreachable(), "{e}");
    }
}
