//! ACS access-key authentication: connection strings, HMAC-SHA256 request signing as
//! Microsoft's SDKs do it, and verification with the 15-minute clock window (for the double).
//!
//! The key never leaves this module in printable form: `Debug` and `Display` of every
//! type that holds it show `<redacted>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

type HmacSha256 = Hmac<Sha256>;

/// How far `x-ms-date` may be from the verifier's clock.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The `SignedHeaders` part every signed request carries.
pub const SIGNED_HEADERS: &str = "x-ms-date;host;x-ms-content-sha256";

/// A decoded access key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(Vec<u8>);

impl AccessKey {
    /// Decodes a base64 access key.
    /// The text is registered with the redactor first (even when it turns out not to
    /// be base64), so no output can show it from then on.
    pub fn from_base64(s: &str) -> Result<Self, ConnectionStringError> {
        crate::redact::register_secret(s);
        let bytes = B64
            .decode(s.trim())
            .map_err(|_| ConnectionStringError::KeyNotBase64)?;
        if bytes.is_empty() {
            return Err(ConnectionStringError::Empty("accesskey"));
        }
        crate::redact::register_secret(&B64.encode(&bytes));
        Ok(AccessKey(bytes))
    }

    /// The key in base64, for building a connection string to hand to a client.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.0)
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(<redacted>)")
    }
}

impl fmt::Display for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What is wrong with a connection string. Messages name the part, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// A required part is absent.
    #[error(
        "connection string has no `{0}=` part (expected `endpoint=https://<resource>/;accesskey=<base64 key>`)"
    )]
    Missing(&'static str),
    /// A part is present with an empty value.
    #[error("connection string part `{0}` is empty")]
    Empty(&'static str),
    /// A part appears twice.
    #[error("connection string part `{0}` appears more than once")]
    Duplicate(&'static str),
    /// A part is not `name=value`.
    #[error("connection string part #{0} is not of the form `name=value`")]
    Malformed(usize),
    /// The access key is not base64.
    #[error("connection string `accesskey` is not valid base64")]
    KeyNotBase64,
    /// The endpoint is not an absolute http(s) URL. The value is not echoed: in a
    /// mangled connection string (parts swapped, a `;` lost) it may hold the key.
    #[error(
        "connection string `endpoint` is not an http(s) URL (expected `https://<resource>.communication.azure.com/`)"
    )]
    BadEndpoint,
}

/// A parsed connection string: the service endpoint and its access key.
///
/// It parses from the text the Azure portal shows (`endpoint=...;accesskey=...`), and
/// prints with the key redacted: [`ConnectionString::expose`] is the only way to get
/// the key back as text.
///
/// ```
/// use acs_harness::ConnectionString;
///
/// let cs: ConnectionString =
///     "endpoint=https://res.communication.azure.com/;accesskey=c2VjcmV0".parse()?;
/// assert_eq!(cs.endpoint.as_str(), "https://res.communication.azure.com/");
/// assert_eq!(cs.to_string(), "endpoint=https://res.communication.azure.com/;accesskey=<redacted>");
/// assert!("endpoint=https://res.communication.azure.com/".parse::<ConnectionString>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The service base URL (`https://<resource>.communication.azure.com/`).
    pub endpoint: url::Url,
    /// The access key.
    pub key: AccessKey,
}

impl ConnectionString {
    /// Builds one from parts.
    pub fn new(endpoint: url::Url, key: AccessKey) -> Self {
        ConnectionString { endpoint, key }
    }

    /// The full text `endpoint=...;accesskey=...`. It contains the key: only for handing
    /// to a client the user controls (e.g. `serve` printing its development key).
    pub fn expose(&self) -> String {
        format!(
            "endpoint={};accesskey={}",
            self.endpoint,
            self.key.to_base64()
        )
    }

    /// A signer for this key.
    pub fn signer(&self) -> Signer {
        Signer::new(&self.key)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint.as_str())
            .field("key", &self.key)
            .finish()
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint={};accesskey=<redacted>", self.endpoint)
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    /// Parses `endpoint=...;accesskey=...`: names case-insensitive, any order, a
    /// trailing `;` allowed, unknown parts ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut endpoint = None;
        let mut key = None;
        for (i, part) in s.trim().split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed(i + 1))?;
            let (slot, label) = match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => (&mut endpoint, "endpoint"),
                "accesskey" => (&mut key, "accesskey"),
                _ => continue,
            };
            if slot.is_some() {
                return Err(ConnectionStringError::Duplicate(label));
            }
            let value = value.trim();
            if value.is_empty() {
                return Err(ConnectionStringError::Empty(label));
            }
            *slot = Some(value.to_string());
        }
        let endpoint = endpoint.ok_or(ConnectionStringError::Missing("endpoint"))?;
        let key = key.ok_or(ConnectionStringError::Missing("accesskey"))?;
        let url = url::Url::parse(&endpoint)
            .ok()
            .filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            })
            .ok_or(ConnectionStringError::BadEndpoint)?;
        Ok(ConnectionString {
            endpoint: url,
            key: AccessKey::from_base64(&key)?,
        })
    }
}

/// The three headers a signed request carries. `Debug` redacts the signature (a
/// report or log line that prints one would let its reader replay the request).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-ms-date`, RFC 1123.
    pub date: String,
    /// `x-ms-content-sha256`, base64 SHA-256 of the body.
    pub content_sha256: String,
    /// `Authorization`. Secret-derived: never print it.
    pub authorization: String,
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("date", &self.date)
            .field("content_sha256", &self.content_sha256)
            .field("authorization", &"HMAC-SHA256 <redacted>")
            .finish()
    }
}

/// Why a request failed verification (the double answers 401 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("the Authorization header is missing")]
    MissingAuthorization,
    /// `Authorization` is not `HMAC-SHA256 ...`.
    #[error("the Authorization scheme must be HMAC-SHA256")]
    WrongScheme,
    /// `Authorization` is HMAC-SHA256 but not `SignedHeaders=...&Signature=...`.
    #[error(
        "the Authorization header must be `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<base64>`"
    )]
    Malformed,
    /// `x-ms-date` absent.
    #[error("the x-ms-date header is missing")]
    MissingDate,
    /// `x-ms-date` not an HTTP date.
    #[error("the x-ms-date header is not an RFC 1123 date")]
    BadDate,
    /// `x-ms-date` more than 15 minutes from the server's clock.
    #[error("the x-ms-date header is more than 15 minutes from the server's clock")]
    Stale,
    /// `x-ms-content-sha256` absent.
    #[error("the x-ms-content-sha256 header is missing")]
    MissingContentHash,
    /// `x-ms-content-sha256` does not match the body.
    #[error("the x-ms-content-sha256 header does not match the body")]
    ContentHashMismatch,
    /// No `Host` header.
    #[error("the Host header is missing")]
    MissingHost,
    /// The signature does not match.
    #[error("the request signature is not valid")]
    BadSignature,
}

/// The parts of a request that verification looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path and query exactly as sent.
    pub path_and_query: &'a str,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `x-ms-date` header.
    pub date: Option<&'a str>,
    /// The `x-ms-content-sha256` header.
    pub content_sha256: Option<&'a str>,
    /// The body bytes.
    pub body: &'a [u8],
}

/// Signs and verifies requests with one access key. The HMAC key schedule is computed
/// once and cloned per request, which keeps signing cheap under load.
///
/// ```
/// use acs_harness::auth::{AccessKey, RequestParts};
/// use acs_harness::Signer;
/// use std::time::{Duration, SystemTime};
///
/// let signer = Signer::new(&AccessKey::from_base64("c2VjcmV0")?);
/// let now = SystemTime::now();
/// let body = br#"{"callbackUri":"https://app.example/events"}"#;
/// let h = signer.sign("POST", "/calls?api-version=2021-06-15-preview", "res.communication.azure.com", body, now);
/// assert!(h.authorization.starts_with("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="));
///
/// // What the service does with it: verify within the 15-minute clock window.
/// let mut req = RequestParts {
///     method: "POST",
///     path_and_query: "/calls?api-version=2021-06-15-preview",
///     host: Some("res.communication.azure.com"),
///     authorization: Some(&h.authorization),
///     date: Some(&h.date),
///     content_sha256: Some(&h.content_sha256),
///     body,
/// };
/// assert!(signer.verify(&req, now).is_ok());
/// assert!(signer.verify(&req, now + Duration::from_secs(16 * 60)).is_err());
/// req.path_and_query = "/calls"; // a replay to another path
/// assert!(signer.verify(&req, now).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// Base64 SHA-256 of `body`, the `x-ms-content-sha256` value.
pub fn content_hash(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// Formats a time as `x-ms-date` wants it (RFC 1123, GMT).
pub fn format_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

impl Signer {
    /// A signer for `key`.
    pub fn new(key: &AccessKey) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(&key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Signer { mac }
    }

    fn string_to_sign_mac(
        &self,
        method: &str,
        path_and_query: &str,
        date: &str,
        host: &str,
        hash: &str,
    ) -> HmacSha256 {
        let mut mac = self.mac.clone();
        for part in [
            method,
            "\n",
            path_and_query,
            "\n",
            date,
            ";",
            host,
            ";",
            hash,
        ] {
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The `Authorization` value for already-computed date and content hash.
    pub fn authorization(
        &self,
        method: &str,
        path_and_query: &str,
        host: &str,
        date: &str,
        hash: &str,
    ) -> String {
        let sig = self
            .string_to_sign_mac(method, path_and_query, date, host, hash)
            .finalize()
            .into_bytes();
        format!(
            "HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={}",
            B64.encode(sig)
        )
    }

    /// Signs a request sent at `now`.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        host: &str,
        body: &[u8],
        now: SystemTime,
    ) -> SignedHeaders {
        let date = format_date(now);
        let content_sha256 = content_hash(body);
        let authorization =
            self.authorization(method, path_and_query, host, &date, &content_sha256);
        SignedHeaders {
            date,
            content_sha256,
            authorization,
        }
    }

    /// Verifies a signed request against the clock reading `now`.
    pub fn verify(&self, req: &RequestParts<'_>, now: SystemTime) -> Result<(), AuthError> {
        self.verify_inner(req, now, true)
    }

    /// Verifies everything but whether `x-ms-content-sha256` matches `req.body`: for a
    /// transport that refuses to read a body too large to buffer. The signature covers
    /// the declared hash, so a client without the key still gets 401, and learns nothing
    /// about the size limit, before the transport's 413.
    pub fn verify_unread_body(
        &self,
        req: &RequestParts<'_>,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        self.verify_inner(req, now, false)
    }

    fn verify_inner(
        &self,
        req: &RequestParts<'_>,
        now: SystemTime,
        check_body: bool,
    ) -> Result<(), AuthError> {
        let auth = req
            .authorization
            .ok_or(AuthError::MissingAuthorization)?
            .trim();
        let (scheme, params) = auth.split_once(' ').unwrap_or((auth, ""));
        if !scheme.eq_ignore_ascii_case("HMAC-SHA256") {
            return Err(AuthError::WrongScheme);
        }
        let mut signed_headers = None;
        let mut signature = None;
        for part in params.trim().split('&') {
            match part.split_once('=') {
                Some(("SignedHeaders", v)) => signed_headers = Some(v),
                // base64 may end in '=': split_once takes the first '=' only.
                Some(("Signature", v)) => signature = Some(v),
                _ => return Err(AuthError::Malformed),
            }
        }
        if signed_headers
            .map(|h| !h.eq_ignore_ascii_case(SIGNED_HEADERS))
            .unwrap_or(true)
        {
            return Err(AuthError::Malformed);
        }
        let signature = B64
            .decode(signature.ok_or(AuthError::Malformed)?)
            .map_err(|_| AuthError::Malformed)?;
        let date = req.date.ok_or(AuthError::MissingDate)?;
        let sent = httpdate::parse_http_date(date).map_err(|_| AuthError::BadDate)?;
        let skew = now.duration_since(sent).unwrap_or_else(|e| e.duration());
        if skew > CLOCK_WINDOW {
            return Err(AuthError::Stale);
        }
        let hash = req.content_sha256.ok_or(AuthError::MissingContentHash)?;
        if check_body && hash != content_hash(req.body) {
            return Err(AuthError::ContentHashMismatch);
        }
        let host = req.host.ok_or(AuthError::MissingHost)?;
        self.string_to_sign_mac(req.method, req.path_and_query, date, host, hash)
            .verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "YWNzLWhhcm5lc3Mga25vd24tYW5zd2VyIGtleSAwMDAx";

    #[test]
    fn parses_connection_strings() {
        let cs: ConnectionString = format!("AccessKey={KEY};Endpoint=https://x.example/;")
            .parse()
            .unwrap();
        assert_eq!(cs.endpoint.as_str(), "https://x.example/");
        assert_eq!(cs.key.to_base64(), KEY);
        let printed = format!("{cs} {cs:?} {:?} {}", cs.signer(), cs.key);
        assert!(!printed.contains(KEY), "{printed}");
    }

    #[test]
    fn connection_string_errors_name_the_part_not_the_key() {
        let cases = [
            (format!("accesskey={KEY}"), "endpoint"),
            ("endpoint=https://x/".to_string(), "accesskey"),
            (
                "endpoint=https://x/;accesskey=%%%secret%%%".to_string(),
                "base64",
            ),
            (format!("endpoint=ftp://x/;accesskey={KEY}"), "http(s)"),
            (format!("endpoint=x.example;accesskey={KEY}"), "http(s)"),
            (format!("endpoint=https://x/;accesskey={KEY};junk"), "#3"),
            // Parts swapped: the key sits where the endpoint belongs.
            (format!("endpoint={KEY};accesskey=https://x/"), "endpoint"),
            // A lost `;` glues the key to an endpoint that is not a URL.
            (
                format!("endpoint=x.example/accesskey={KEY};accesskey={KEY}"),
                "http(s)",
            ),
            ("endpoint=https://x/;accesskey=".to_string(), "empty"),
        ];
        for (s, needle) in cases {
            let e = s.parse::<ConnectionString>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
            assert!(!e.contains(KEY) && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn verifies_its_own_signatures_and_rejects_tampering() {
        let s = Signer::new(&AccessKey::from_base64(KEY).unwrap());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let body = br#"{"a":1}"#;
        let h = s.sign("POST", "/calls", "h:1", body, now);
        let parts = RequestParts {
            method: "POST",
            path_and_query: "/calls",
            host: Some("h:1"),
            authorization: Some(&h.authorization),
            date: Some(&h.date),
            content_sha256: Some(&h.content_sha256),
            body,
        };
        assert_eq!(s.verify(&parts, now), Ok(()));
        let (_, signature) = h.authorization.split_once("Signature=").unwrap();
        let printed = format!("{h:?}");
        assert!(
            !printed.contains(&h.authorization) && !printed.contains(signature),
            "{printed}"
        );
        assert_eq!(
            s.verify(&parts, now + Duration::from_secs(16 * 60)),
            Err(AuthError::Stale)
        );
        assert_eq!(
            s.verify(&parts, now - Duration::from_secs(16 * 60)),
            Err(AuthError::Stale)
        );
        assert_eq!(
            s.verify(
                &RequestParts {
                    body: b"{}",
                    ..parts
                },
                now
            ),
            Err(AuthError::ContentHashMismatch)
        );
        // A body the verifier did not read: the signature over the declared hash decides.
        let unread = RequestParts { body: b"", ..parts };
        assert_eq!(s.verify_unread_body(&unread, now), Ok(()));
        assert_eq!(
            s.verify_unread_body(
                &RequestParts {
                    content_sha256: Some(&content_hash(b"other")),
                    ..unread
                },
                now
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            s.verify(
                &RequestParts {
                    path_and_query: "/calls?x",
                    ..parts
                },
                now
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            s.verify(
                &RequestParts {
                    authorization: None,
                    ..parts
                },
                now
            ),
            Err(AuthError::MissingAuthorization)
        );
        assert_eq!(
            s.verify(
                &RequestParts {
                    authorization: Some("Bearer x"),
                    ..parts
                },
                now
            ),
            Err(AuthError::WrongScheme)
        );
    }
}
