//! The one redactor every text the harness writes passes through: terminal lines, logs,
//! JUnit/JSON reports, goose's reports and replay commands.
//!
//! Two jobs, because secrets reach output two ways:
//! - [`url`] shows a user-supplied URL (or a connection string pasted where a URL
//!   belongs) as scheme, host, port and path only: never userinfo, query or fragment,
//!   never an access key.
//! - [`scrub`] cleans any text, including what a target sent back: registered secrets
//!   (the access key, in plain and percent-encoded form), every `Signature=` and
//!   `accesskey=` value, base64 SHA-256 content hashes and RFC 1123 request dates.
//!
//! [`clip`] cuts server-supplied text to a length a person can read, stating its size.

use regex::Regex;
use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

/// What replaces a secret in output.
pub const REDACTED: &str = "<redacted>";

fn secrets() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret (an access key, a connection string) so that [`scrub`] removes it
/// from every text from now on, also percent-encoded. Texts shorter than 8 characters are
/// ignored: replacing them would mangle ordinary words and they are no real key.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 8 {
        return;
    }
    let encoded = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let mut list = secrets().write().unwrap_or_else(|p| p.into_inner());
    for s in [secret.to_string(), encoded] {
        if !list.contains(&s) {
            list.push(s);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

struct Patterns {
    /// `Signature=...` and `accesskey=...` (any case), up to a delimiter.
    keyed: Regex,
    /// A base64 SHA-256 (44 characters ending in one `=`), not part of a longer token.
    hash: Regex,
    /// An RFC 1123 date as sent in `x-ms-date`.
    date: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        // The patterns are literals; a failure here is a bug caught by every test.
        keyed: Regex::new(r#"(?i)((?:signature|accesskey|access_key|sig)\s*[=:]\s*)[^\s"'&;,<>\\]+"#)
            .expect("valid pattern"),
        hash: Regex::new(r"(^|[^A-Za-z0-9+/%])[A-Za-z0-9+/]{43}=(?:[^A-Za-z0-9+/=]|$)")
            .expect("valid pattern"),
        date: Regex::new(
            r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT",
        )
        .expect("valid pattern"),
    })
}

/// The text with every secret removed (see the module doc). Borrows when there was
/// nothing to remove, so clean text costs one scan.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let p = patterns();
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    {
        let list = secrets().read().unwrap_or_else(|p| p.into_inner());
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
    }
    if p.keyed.is_match(&out) {
        out = Cow::Owned(
            p.keyed
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    format!("{}{REDACTED}", &c[1])
                })
                .into_owned(),
        );
    }
    if p.hash.is_match(&out) {
        // The match includes one delimiter on each side (the regex crate has no
        // look-around); put them back.
        out = Cow::Owned(
            p.hash
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    let m = &c[0];
                    let lead = &c[1];
                    let tail = &m[lead.len() + 44..];
                    format!("{lead}<content-hash>{tail}")
                })
                .into_owned(),
        );
        // Adjacent hashes share a delimiter, so one pass can miss every second one.
        if p.hash.is_match(&out) {
            return Cow::Owned(scrub(&out).into_owned());
        }
    }
    if p.date.is_match(&out) {
        out = Cow::Owned(p.date.replace_all(&out, "<date>").into_owned());
    }
    out
}

/// A user-supplied URL for output: scheme, host, port and path only. A connection
/// string pasted in its place is shown by its endpoint with the key withheld (and the
/// key registered with [`scrub`]); text that is no URL is not echoed at all.
pub fn url(text: &str) -> String {
    let trimmed = text.trim();
    if let Ok(u) = url::Url::parse(trimmed)
        && matches!(u.scheme(), "http" | "https")
        && u.has_host()
    {
        for (k, v) in u.query_pairs() {
            let k = k.to_ascii_lowercase();
            if ["key", "sig", "secret", "token", "password"]
                .iter()
                .any(|w| k.contains(w))
            {
                register_secret(&v);
            }
        }
        if let Some(pw) = u.password() {
            register_secret(pw);
        }
        return bare(&u);
    }
    if looks_like_connection_string(trimmed) {
        let endpoint = trimmed.split(';').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            k.trim().eq_ignore_ascii_case("endpoint").then(|| v.trim())
        });
        for part in trimmed.split(';') {
            if let Some((k, v)) = part.split_once('=')
                && k.trim().eq_ignore_ascii_case("accesskey")
            {
                register_secret(v.trim());
            }
        }
        return match endpoint.and_then(|e| url::Url::parse(e).ok()) {
            Some(u) => format!("a connection string (endpoint {}; key withheld)", bare(&u)),
            None => "a connection string (key withheld)".to_string(),
        };
    }
    match url::Url::parse(trimmed) {
        Ok(u) if u.has_host() => bare(&u),
        _ => "the given text (not a URL; not shown)".to_string(),
    }
}

/// Whether a text is a connection string (`endpoint=…;accesskey=…`, any case and order).
pub fn looks_like_connection_string(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("accesskey=") || (lower.contains("endpoint=") && lower.contains(';'))
}

fn bare(u: &url::Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    if let Some(port) = u.port() {
        s.push_str(&format!(":{port}"));
    }
    s.push_str(u.path());
    s
}

/// Server-supplied text cut to `max` characters, control characters escaped, scrubbed,
/// with its full size stated when it was cut.
pub fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut cut = false;
    for (i, c) in text.chars().enumerate() {
        if i >= max {
            cut = true;
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes in all)", text.len()));
    }
    scrub(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_scheme_host_port_path_only() {
        assert_eq!(
            url("https://user:pw@example.test:8443/calling/x?accesskey=abc#frag"),
            "https://example.test:8443/calling/x"
        );
        assert_eq!(url("http://127.0.0.1/"), "http://127.0.0.1/");
        // A secret in the query is also registered, so an echo of it is scrubbed.
        url("http://127.0.0.1:9/?sig=query-secret-value-1");
        assert_eq!(scrub("got query-secret-value-1"), "got <redacted>");
        assert_eq!(
            url("not a url sig=abc"),
            "the given text (not a URL; not shown)"
        );
    }

    #[test]
    fn connection_strings_are_named_not_echoed() {
        let key = "c2VjcmV0LWtleS1mb3ItcmVkYWN0aW9uLXRlc3Q=";
        let cs = format!("endpoint=https://res.communication.azure.com/;accesskey={key}");
        let shown = url(&cs);
        assert!(!shown.contains(key), "{shown}");
        assert!(
            shown.contains("https://res.communication.azure.com/"),
            "{shown}"
        );
        // Pasting it registered the key: it is gone from any later text.
        assert!(!scrub(&format!("echo {key} back")).contains(key));
        let swapped = format!("accesskey={key};endpoint=nonsense");
        assert!(!url(&swapped).contains(key));
    }

    #[test]
    fn scrub_removes_signatures_hashes_dates_and_keys() {
        let echoed = "bad signature: authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AbC+/dEf=; x-ms-content-sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=, x-ms-date: Mon, 23 Nov 2026 10:00:00 GMT";
        let out = scrub(echoed);
        assert!(!out.contains("AbC+/dEf"), "{out}");
        assert!(!out.contains("47DEQpj8"), "{out}");
        assert!(!out.contains("10:00:00"), "{out}");
        assert!(out.contains("Signature=<redacted>"), "{out}");
        assert!(
            out.contains("<content-hash>") && out.contains("<date>"),
            "{out}"
        );
        let twice = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(scrub(twice), "<content-hash> <content-hash>");
        let registered = "cmVnaXN0ZXJlZC1rZXktZm9yLXNjcnViLXRlc3Q=";
        register_secret(registered);
        let encoded = registered.replace('=', "%3D");
        assert_eq!(
            scrub(&format!("k {registered} / {encoded}")),
            "k <redacted> / <redacted>"
        );
    }

    #[test]
    fn clean_text_is_borrowed_and_clip_states_the_size() {
        assert!(matches!(scrub("callLegId: abc-123"), Cow::Borrowed(_)));
        let long = "x".repeat(1000);
        let c = clip(&long, 10);
        assert!(
            c.starts_with("xxxxxxxxxx…") && c.contains("1000 bytes"),
            "{c}"
        );
        assert_eq!(clip("a\nb", 10), "a\\nb");
    }
}
