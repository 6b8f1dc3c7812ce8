//! The signed HTTP client the gate and the live snapshots talk to a target with: base
//! URL, path prefix, `api-version`, a per-request timeout, a cap on response bodies, and
//! deliberate signing faults for the authentication checks.

use crate::auth::{SignedHeaders, Signer, content_hash, format_date};
use crate::redact;
use std::time::{Duration, Instant, SystemTime};

/// Response bodies are read up to this many bytes; the rest is dropped and reported.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The longest request URL the client sends. RFC 9110 §4.1 asks servers to take request
/// targets of at least 8000 octets; a longer one (built from a server-supplied id) is
/// refused here, as a request that cannot be sent, not as an unreachable target.
pub const MAX_URL_BYTES: usize = 8000;

/// The connect timeout when none is given: a connect that has not completed by then
/// (a black-holed address, a full backlog) is an unreachable target.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The connection could not be made (refused, DNS, TLS, no connect in time).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The target URL, redacted (scheme, host, port, path).
        target: String,
        /// The cause chain, in words, scrubbed.
        reason: String,
    },
    /// No complete answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke while the response was being read.
    #[error("the response broke off: {0}")]
    Interrupted(String),
    /// The peer answered with something that is not HTTP.
    #[error("the answer is not HTTP: {0}")]
    NotHttp(String),
    /// The request could not be built from its parts (e.g. a URL longer than
    /// [`MAX_URL_BYTES`] from a server-supplied id); nothing was sent.
    #[error("the request could not be sent: {0}")]
    Unsendable(String),
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
    /// The `Date` header, if any (tells clock skew when a signature is rejected).
    pub date: Option<String>,
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
    connect_timeout: Duration,
}

impl Client {
    /// A client for `base` (http or https), with an optional path prefix and api-version;
    /// the connect timeout is `timeout`, at most [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(
        base: &str,
        prefix: &str,
        api_version: Option<&str>,
        signer: Signer,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connect = timeout.min(DEFAULT_CONNECT_TIMEOUT);
        Client::with_timeouts(base, prefix, api_version, signer, timeout, connect)
    }

    /// [`Client::new`] with an explicit connect timeout.
    pub fn with_timeouts(
        base: &str,
        prefix: &str,
        api_version: Option<&str>,
        signer: Signer,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Client, ClientError> {
        let shown = redact::url(base);
        if let Err(e) = url::Url::parse(base.trim()) {
            return Err(ClientError::Config(format!("{shown} is not a URL ({e})")));
        }
        // Only what the redactor keeps (scheme, host, port, path) is ever used: userinfo,
        // query and fragment of the given URL are neither sent nor shown.
        let base = url::Url::parse(&shown)
            .map_err(|_| ClientError::Config(format!("{shown} is not a URL")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "{shown} is not an http(s) URL"
            )));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(ClientError::Config(format!("{shown} has no host"))),
        };
        let prefix = normalise_prefix(prefix);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
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
            connect_timeout,
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
        if url.len() > MAX_URL_BYTES {
            return Err(ClientError::Unsendable(format!(
                "the URL would be {} bytes, more than {MAX_URL_BYTES}",
                url.len()
            )));
        }
        let parsed = url::Url::parse(&url)
            .map_err(|e| ClientError::Unsendable(format!("{}: {e}", redact::clip(&url, 200))))?;
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
        let date = header(reqwest::header::DATE);
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
                Err(e) => return Err(ClientError::Interrupted(scrubbed_chain(&e))),
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
            date,
        })
    }

    fn classify(&self, e: &reqwest::Error) -> ClientError {
        // A connect timeout is both a connect and a timeout error: it is the former, a
        // target whose connect cannot complete is unreachable.
        if e.is_connect() {
            let reason = if e.is_timeout() {
                format!("no connection within {:?}", self.connect_timeout)
            } else {
                scrubbed_chain(e)
            };
            ClientError::Connect {
                target: redact::url(self.base.as_str()),
                reason,
            }
        } else if e.is_timeout() {
            ClientError::Timeout(self.timeout)
        } else if e.is_builder() {
            ClientError::Unsendable(scrubbed_chain(e))
        } else if is_parse_error(e) {
            ClientError::NotHttp(scrubbed_chain(e))
        } else {
            ClientError::Interrupted(scrubbed_chain(e))
        }
    }
}

/// Whether hyper could not parse the answer as HTTP (e.g. "invalid HTTP version parsed").
fn is_parse_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// [`error_chain`] with URLs replaced by their redacted form and secrets scrubbed:
/// reqwest's messages carry the full request URL.
fn scrubbed_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let text = error_chain(e);
    let urls = regex::Regex::new(r"https?://[^\s)]+");
    let text = match urls {
        Ok(re) => re
            .replace_all(&text, |c: &regex::Captures<'_>| redact::url(&c[0]))
            .into_owned(),
        Err(_) => text,
    };
    redact::clip(&text, 500)
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

    #[test]
    fn query_strings_and_connection_strings_are_never_shown() {
        let key = AccessKey::from_base64("a2V5").unwrap();
        let s = Signer::new(&key);
        let d = Duration::from_secs(1);
        let c = Client::new(
            "http://127.0.0.1:9/?accesskey=c2VjcmV0LXF1ZXJ5LWtleQ==&sig=s3cr3t-sig-value",
            "",
            None,
            s.clone(),
            d,
        )
        .unwrap();
        let shown = format!("{c:?} {}", c.base());
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        let cs = "endpoint=https://x.example/;accesskey=c2VjcmV0LWNvbm5lY3Rpb24tc3RyaW5n";
        let e = Client::new(cs, "", None, s, d).unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0LWNvbm5lY3Rpb24tc3RyaW5n"), "{e}");
    }
}
