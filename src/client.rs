//! The signed HTTP client every part of the harness talks to a target with: base URL,
//! path prefix, `api-version`, a per-request timeout and a cap on response bodies.
//!
//! A request is prepared into a [`SignedRequest`] (signed for the path and query it goes
//! out with), may be edited after signing (the gate's deliberate faults, the tests'
//! spoiled requests), and is sent by [`Client::execute`], which reads the answer under
//! the cap and the deadline. The load runner shares the target parsing
//! ([`target_url`]), the path and query building ([`base_path`], [`api_version_query`])
//! and the `Host` value ([`host_port`]).

use crate::auth::{Signer, content_hash, format_date};
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
    /// the 8000-byte URL cap from a server-supplied id); nothing was sent.
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
    /// The body, at most 16 MiB (`MAX_RESPONSE_BYTES`).
    pub body: Vec<u8>,
    /// Whether the body was longer than what was kept.
    pub truncated: bool,
    /// Time to the complete response.
    pub elapsed: Duration,
    /// The `Date` header, if any (tells clock skew when a signature is rejected).
    pub date: Option<String>,
}

/// A signed client for one target.
///
/// Every request is signed with the current time, every answer read under a 16 MiB
/// cap (`MAX_RESPONSE_BYTES`) and the client's timeout; [`AuthMode`] sends
/// deliberately broken authentication, to check that a target refuses it.
///
/// ```
/// use acs_harness::{AuthMode, Client, Double, DoubleConfig};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let double = Double::start(DoubleConfig::default()).await?;
/// let signer = double.connection_string().signer();
/// let client = Client::new(&double.uri(), "", None, signer, Duration::from_secs(10))?;
/// let reply = client.send("POST", "/calls", None, None, AuthMode::BadSignature).await?;
/// assert_eq!(reply.status, 401);
/// // An unreachable target is an error, not a reply.
/// let signer = double.connection_string().signer();
/// let closed = Client::new("http://127.0.0.1:1", "", None, signer, Duration::from_secs(10))?;
/// assert!(closed.send("POST", "/calls", None, None, AuthMode::Signed).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
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

/// Parses a target's base URL for use: an http(s) URL with a host, with its userinfo,
/// query and fragment dropped (they are neither sent nor shown). The one place that
/// strips credentials from a given target; errors show the target redacted.
pub fn target_url(text: &str) -> Result<url::Url, ClientError> {
    let shown = redact::url(text);
    if let Err(e) = url::Url::parse(text.trim()) {
        if redact::looks_like_connection_string(text) {
            return Err(ClientError::Config(format!(
                "got {shown}; pass the service URL here and the connection string as --connection-string (or ACS_CONNECTION_STRING)"
            )));
        }
        return Err(ClientError::Config(format!("{shown} is not a URL ({e})")));
    }
    // `shown` is what the redactor keeps of it: scheme, host, port and path.
    let base = url::Url::parse(&shown)
        .map_err(|_| ClientError::Config(format!("{shown} is not a URL")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "{shown} is not an http(s) URL"
        )));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::Config(format!("{shown} has no host")));
    }
    Ok(base)
}

/// `host[:port]` as a client sends it in the `Host` header and signs it (the port only
/// when it is not the scheme's default).
pub fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The path every contract path is sent under: the base URL's own path, then the
/// prefix (`/calling`), without a trailing slash (`""` for neither).
pub fn base_path(base: &url::Url, prefix: &str) -> String {
    format!(
        "{}{}",
        base.path().trim_end_matches('/'),
        normalise_prefix(prefix)
    )
}

/// The query every request carries: `""`, or `?api-version=V` with `V` encoded as a
/// path segment is (`2021-04-15-preview1` travels as is).
pub fn api_version_query(api_version: Option<&str>) -> String {
    match api_version {
        Some(v) => format!("?api-version={}", crate::contract::encode_segment(v)),
        None => String::new(),
    }
}

/// What a signature covers besides the body: the string-to-sign's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// The method signed for.
    pub method: String,
    /// The path and query signed for.
    pub path_and_query: String,
    /// The host signed for.
    pub host: String,
    /// The `x-ms-date` signed for.
    pub date: String,
    /// The `x-ms-content-sha256` signed for.
    pub content_sha256: String,
}

/// A request signed for its target, not yet sent. Its method, URL, headers and body
/// may still change after signing: that is how deliberate faults (and tests' spoiled
/// requests) are made; [`SignedRequest::resign`] signs again for other parts.
/// `Debug` withholds the signature.
#[derive(Clone)]
pub struct SignedRequest {
    /// The method sent.
    pub method: String,
    /// The URL sent to.
    pub url: url::Url,
    /// The headers sent, in order: `x-ms-date`, `x-ms-content-sha256`, `Authorization`,
    /// then `Content-Type` and any extra ones.
    pub headers: Vec<(String, String)>,
    /// The body sent (empty: none).
    pub body: Vec<u8>,
    covered: Covered,
    signer: Signer,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("method", &self.method)
            .field("url", &redact::url(self.url.as_str()))
            .field("covered", &self.covered)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl SignedRequest {
    /// Signs `method` to `url` with `body` at time `at`, for the path and query exactly
    /// as the URL carries them on the wire.
    pub fn sign(
        signer: &Signer,
        method: &str,
        url: url::Url,
        content_type: Option<&str>,
        body: &[u8],
        at: SystemTime,
    ) -> SignedRequest {
        let covered = Covered {
            method: method.to_string(),
            path_and_query: wire_path_and_query(&url),
            host: host_port(&url),
            date: format_date(at),
            content_sha256: content_hash(body),
        };
        let authorization = authorization(signer, &covered);
        let mut headers = vec![
            ("x-ms-date".to_string(), covered.date.clone()),
            (
                "x-ms-content-sha256".to_string(),
                covered.content_sha256.clone(),
            ),
            ("Authorization".to_string(), authorization),
        ];
        if let Some(ct) = content_type {
            headers.push(("Content-Type".to_string(), ct.to_string()));
        }
        SignedRequest {
            method: method.to_string(),
            url,
            headers,
            body: body.to_vec(),
            covered,
            signer: signer.clone(),
        }
    }

    /// What the current signature covers.
    pub fn covered(&self) -> &Covered {
        &self.covered
    }

    /// The path and query as sent (what a correct signature covers).
    pub fn path_and_query(&self) -> String {
        wire_path_and_query(&self.url)
    }

    /// The value of header `name` (any case), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces header `name` (any case) with `value`, or adds it.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let mut found = false;
        self.headers.retain_mut(|(n, v)| {
            if !n.eq_ignore_ascii_case(name) {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            *v = value.to_string();
            true
        });
        if !found {
            self.headers.push((name.to_string(), value.to_string()));
        }
    }

    /// Removes header `name` (any case).
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Signs again for the parts `edit` leaves: `Authorization` is recomputed and
    /// `x-ms-date` (when still sent) follows the signed date; nothing else changes.
    pub fn resign(&mut self, edit: impl FnOnce(&mut Covered)) {
        edit(&mut self.covered);
        let authorization = authorization(&self.signer, &self.covered);
        if self.header("x-ms-date").is_some() {
            let date = self.covered.date.clone();
            self.set_header("x-ms-date", &date);
        }
        self.set_header("Authorization", &authorization);
    }

    /// `METHOD URL` with the URL redacted: what the request is, for a log line or a
    /// report (the gate's send lines add the options that rebuild it).
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, redact::url(self.url.as_str()))
    }

    /// Applies the deliberate fault `auth` to a correctly signed request (the gate's
    /// authentication checks, `acs-harness send --auth`).
    pub fn spoil(&mut self, auth: AuthMode) {
        match auth {
            AuthMode::Signed => {}
            AuthMode::Missing => self.remove_header("Authorization"),
            AuthMode::OtherScheme => {
                self.set_header("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.");
            }
            AuthMode::BadSignature => {
                let good = self.header("Authorization").unwrap_or_default();
                let wrong = format!(
                    "HMAC-SHA256 SignedHeaders={}&Signature={}",
                    crate::auth::SIGNED_HEADERS,
                    content_hash(good.as_bytes())
                );
                self.set_header("Authorization", &wrong);
            }
            AuthMode::BodyChangedAfterSigning => match self.body.last_mut() {
                Some(b) => *b = if *b == b' ' { b'\n' } else { b' ' },
                None => self.body.push(b' '),
            },
            AuthMode::DateOffset(s) => {
                let signed = httpdate::parse_http_date(&self.covered.date)
                    .unwrap_or_else(|_| SystemTime::now());
                let shifted = if s >= 0 {
                    signed + Duration::from_secs(s.unsigned_abs())
                } else {
                    signed - Duration::from_secs(s.unsigned_abs())
                };
                self.resign(|c| c.date = format_date(shifted));
            }
            AuthMode::MissingDate => self.remove_header("x-ms-date"),
            AuthMode::MissingContentHash => self.remove_header("x-ms-content-sha256"),
            AuthMode::OtherHost => self.resign(|c| c.host = "attacker.example".into()),
            AuthMode::OtherPath => {
                self.resign(|c| c.path_and_query = format!("/calls/replayed{}", c.path_and_query));
            }
            AuthMode::OtherMethod => self.resign(|c| {
                c.method = if c.method == "GET" { "POST" } else { "GET" }.into();
            }),
        }
    }
}

/// The `Authorization` value for `covered`.
fn authorization(signer: &Signer, c: &Covered) -> String {
    signer.authorization(
        &c.method,
        &c.path_and_query,
        &c.host,
        &c.date,
        &c.content_sha256,
    )
}

/// The path and query of `url` as they go on the wire (what a signature covers).
pub fn wire_path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

impl Client {
    /// A client for `base` (http or https), with an optional path prefix and api-version;
    /// the connect timeout is `timeout`, at most 5 s (`DEFAULT_CONNECT_TIMEOUT`).
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
        let base = target_url(base)?;
        let host = host_port(&base);
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
            prefix: normalise_prefix(prefix),
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

    /// The `Host` the client sends and signs (`host[:port]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path and query a contract path (`/calls/...`, already percent-encoded) is
    /// sent as, after the base URL's path: prefix, path, and the `api-version` query.
    pub fn path_and_query(&self, path: &str) -> String {
        format!(
            "{}{path}{}",
            self.prefix,
            api_version_query(self.api_version.as_deref())
        )
    }

    /// The full URL for a contract path.
    pub fn url(&self, path: &str) -> String {
        let origin = self.base.origin().ascii_serialization();
        format!(
            "{origin}{}{path}{}",
            base_path(&self.base, &self.prefix),
            api_version_query(self.api_version.as_deref())
        )
    }

    /// Signs `method` to the contract path `path` (prefix and api-version added) with
    /// an optional content type and body, now.
    pub fn prepare(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<SignedRequest, ClientError> {
        self.prepare_url(
            method,
            &self.url(path),
            content_type,
            body,
            SystemTime::now(),
        )
    }

    /// Signs `method` to `path_and_query` exactly as given (no prefix, no api-version
    /// added; after the base URL's path), at time `at`: for requests the contract
    /// paths cannot express.
    pub fn prepare_exact(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: &[u8],
        at: SystemTime,
    ) -> Result<SignedRequest, ClientError> {
        let origin = self.base.origin().ascii_serialization();
        let base = self.base.path().trim_end_matches('/');
        let url = format!("{origin}{base}{path_and_query}");
        self.prepare_url(method, &url, content_type, body, at)
    }

    fn prepare_url(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
        at: SystemTime,
    ) -> Result<SignedRequest, ClientError> {
        if url.len() > MAX_URL_BYTES {
            return Err(ClientError::Unsendable(format!(
                "the URL would be {} bytes, more than {MAX_URL_BYTES}",
                url.len()
            )));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| ClientError::Unsendable(format!("{}: {e}", redact::clip(url, 200))))?;
        Ok(SignedRequest::sign(
            &self.signer,
            method,
            parsed,
            content_type,
            body,
            at,
        ))
    }

    /// Sends `method path` with an optional body and content type, authenticated per
    /// `auth`: [`Client::prepare`], the fault `auth` names, [`Client::execute`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        auth: AuthMode,
    ) -> Result<Reply, ClientError> {
        let mut req = self.prepare(method, path, content_type, body.unwrap_or_default())?;
        req.spoil(auth);
        self.execute(req).await
    }

    /// Sends a prepared request as it is and reads the answer: the body up to
    /// 16 MiB (`MAX_RESPONSE_BYTES`), all of it within the client's timeout.
    pub async fn execute(&self, req: SignedRequest) -> Result<Reply, ClientError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ClientError::Config(format!("{:?} is not an HTTP method", req.method)))?;
        let mut builder = self.http.request(method, req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let started = Instant::now();
        let resp = builder.send().await.map_err(|e| self.classify(&e))?;
        self.read(resp, started).await
    }

    /// Reads an answer under the cap; the one reading function of the client.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        started: Instant,
    ) -> Result<Reply, ClientError> {
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

    /// Whether `req`, as it would go out, passes the double's verification.
    fn verifies(req: &SignedRequest, signer: &Signer) -> Result<(), crate::auth::AuthError> {
        let pq = req.path_and_query();
        let host = host_port(&req.url);
        signer.verify(
            &crate::auth::RequestParts {
                method: &req.method,
                path_and_query: &pq,
                host: Some(&host),
                authorization: req.header("authorization"),
                date: req.header("x-ms-date"),
                content_sha256: req.header("x-ms-content-sha256"),
                body: &req.body,
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn a_prepared_request_is_signed_for_what_it_sends_and_each_fault_breaks_it() {
        use crate::auth::AuthError;
        let c = client(
            "http://127.0.0.1:9/base/",
            "/calling",
            Some("2021-04-15-preview1"),
        );
        let req = c
            .prepare("POST", "/calls", Some("application/json"), b"{}")
            .unwrap();
        assert_eq!(
            req.url.as_str(),
            "http://127.0.0.1:9/base/calling/calls?api-version=2021-04-15-preview1"
        );
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(verifies(&req, &c.signer), Ok(()));
        assert_eq!(req.describe(), "POST http://127.0.0.1:9/base/calling/calls");
        assert!(!format!("{req:?}").contains("Signature="));
        let faults = [
            (AuthMode::Missing, AuthError::MissingAuthorization),
            (AuthMode::OtherScheme, AuthError::WrongScheme),
            (AuthMode::BadSignature, AuthError::BadSignature),
            (
                AuthMode::BodyChangedAfterSigning,
                AuthError::ContentHashMismatch,
            ),
            (AuthMode::DateOffset(-1200), AuthError::Stale),
            (AuthMode::MissingDate, AuthError::MissingDate),
            (AuthMode::MissingContentHash, AuthError::MissingContentHash),
            (AuthMode::OtherHost, AuthError::BadSignature),
            (AuthMode::OtherPath, AuthError::BadSignature),
            (AuthMode::OtherMethod, AuthError::BadSignature),
        ];
        for (mode, error) in faults {
            let mut spoiled = req.clone();
            spoiled.spoil(mode);
            assert_eq!(verifies(&spoiled, &c.signer), Err(error), "{mode:?}");
        }
        // A fault that signs other parts is consistent with them: signing the request
        // again for what it sends makes it valid.
        let mut other_host = req.clone();
        other_host.spoil(AuthMode::OtherHost);
        assert_eq!(other_host.covered().host, "attacker.example");
        other_host.resign(|c| c.host = "127.0.0.1:9".into());
        assert_eq!(verifies(&other_host, &c.signer), Ok(()));
        let mut shifted = req.clone();
        shifted.spoil(AuthMode::DateOffset(60));
        assert_eq!(
            shifted.header("x-ms-date"),
            Some(shifted.covered().date.as_str())
        );
        assert_eq!(verifies(&shifted, &c.signer), Ok(()));
    }

    #[test]
    fn headers_are_set_once_whatever_their_case() {
        let c = client("http://127.0.0.1:9", "", None);
        let mut req = c
            .prepare_exact("GET", "/calls?x=1", None, b"", SystemTime::now())
            .unwrap();
        assert_eq!(req.path_and_query(), "/calls?x=1");
        req.headers.push(("X-Extra".into(), "1".into()));
        req.headers.push(("x-extra".into(), "2".into()));
        req.set_header("X-EXTRA", "3");
        let extra: Vec<_> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-extra"))
            .collect();
        assert_eq!(extra, [&("X-Extra".to_string(), "3".to_string())]);
        req.remove_header("x-EXTRA");
        assert_eq!(req.header("x-extra"), None);
        assert_eq!(api_version_query(Some("a b")), "?api-version=a%20b");
        assert_eq!(api_version_query(None), "");
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
