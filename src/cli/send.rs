//! `acs-harness send`: signs and sends one request to a target and prints the answer.
//! The gate prints each failure as a `send` line, so a failure is reproduced by pasting
//! it; the authentication faults the gate tries are available as `--auth` modes.
//!
//! Exit codes: 0 an HTTP answer came (whatever its status), 2 none did (bad options,
//! rejected body file, unreachable target, timeout).

use super::{Error, Outcome, ServiceArgs, parse_duration};
use crate::client::{AuthMode, Client};
use crate::send::parse_auth;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::ffi::OsString;
use std::time::Duration;

/// Body files are read up to this size: the gate's oversize bodies are just over
/// 1 MiB, and nothing larger is worth sending.
const MAX_BODY_FILE: u64 = 16 * 1024 * 1024;

/// Options of `acs-harness send`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Prints the status line, the response headers and the body (cut at 64 KiB, secrets
removed). Exit code: 0 an answer came, whatever its status; 2 none did.

The gate prints every failure as a send line to paste. The access key comes from
--connection-string or ACS_CONNECTION_STRING, as for `contract`.

Examples:
  acs-harness send POST /calls --target https://contoso.communication.azure.com \\
      --header 'Content-Type: application/json' --body @create-call.json
  acs-harness send POST /calls/$CALL/Hangup --target http://127.0.0.1:8080 --auth no-date")]
pub struct SendArgs {
    /// The HTTP method (POST, DELETE, GET, …).
    #[arg(value_name = "METHOD")]
    pub method: String,
    /// The contract path, percent-encoded, without prefix or query (e.g. /calls/ID/Hangup).
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Base URL of the service (required: one request is never sent anywhere implicit).
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// The key, prefix and api-version requests are sent with.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The body: the text itself, or `@FILE` to send a file's bytes.
    #[arg(long, value_name = "@FILE|TEXT", conflicts_with = "body_base64")]
    pub body: Option<OsString>,
    /// The body as base64, for bytes that are not text (the gate prints these).
    #[arg(long, value_name = "B64")]
    pub body_base64: Option<String>,
    /// A request header `Name: value` (repeatable); `Content-Type` is signed over like
    /// any other, the signing headers themselves are set by `--auth`.
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// How to authenticate: signed (default), none, bearer, bad-signature,
    /// body-changed, no-date, no-content-hash, other-host, other-path, other-method,
    /// or date-offset=SECONDS (x-ms-date shifted, e.g. date-offset=-1200).
    #[arg(long, value_name = "MODE", default_value = "signed", value_parser = parse_auth)]
    pub auth: AuthMode,
    /// Per-request timeout (e.g. 10s, 500ms, 1m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{name:?} is not a header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn fail2(reason: &str) -> super::Result {
    Err(Error::CouldNotRun(reason.to_string()))
}

/// The body bytes of the options: literal text, `@FILE` or base64.
fn body(args: &SendArgs) -> Result<Option<Vec<u8>>, String> {
    if let Some(b64) = &args.body_base64 {
        return BASE64
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| format!("--body-base64 is not base64: {e}"));
    }
    let Some(text) = &args.body else {
        return Ok(None);
    };
    let bytes = os_bytes(text);
    let Some(file) = bytes.strip_prefix(b"@") else {
        return Ok(Some(bytes));
    };
    let path = std::path::PathBuf::from(String::from_utf8_lossy(file).into_owned());
    let shown = path.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_BODY_FILE {
        return Err(format!(
            "{shown} has {} bytes; bodies are sent up to {MAX_BODY_FILE}",
            meta.len()
        ));
    }
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

#[cfg(unix)]
fn os_bytes(s: &OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: &OsString) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// Runs `acs-harness send`.
pub fn run(args: SendArgs) -> super::Result {
    let connection = args.service.connection("needs")?;
    let method = args.method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return fail2(&format!("{:?} is not an HTTP method", args.method));
    }
    if !args.path.starts_with('/') {
        return fail2(&format!(
            "the path must start with / (e.g. /calls), got {:?}",
            crate::redact::clip(&args.path, 200)
        ));
    }
    let body = match body(&args) {
        Ok(b) => b,
        Err(e) => return fail2(&e),
    };
    let client = match Client::new(
        &args.target,
        &args.service.prefix,
        args.service.api_version.as_deref(),
        connection.signer(),
        args.timeout,
    ) {
        Ok(c) => c,
        Err(e) => return fail2(&e.to_string()),
    };
    let (content_type, headers): (Vec<_>, Vec<_>) = args
        .headers
        .iter()
        .cloned()
        .partition(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let content_type = content_type.last().map(|(_, v)| v.clone());
    let runtime = super::runtime(false)?;
    crate::output::eprintln(&format!(
        "{method} {}",
        crate::redact::url(&client.url(&args.path))
    ));
    let mut request = match client.prepare(
        &method,
        &args.path,
        content_type.as_deref(),
        body.as_deref().unwrap_or_default(),
    ) {
        Ok(r) => r,
        Err(e) => return fail2(&e.to_string()),
    };
    request.spoil(args.auth);
    // The extra headers go out as given, after the signing headers.
    request.headers.extend(headers);
    let sent = runtime.block_on(async {
        tokio::select! {
            r = client.execute(request) => Some(r),
            _ = crate::output::shutdown_signal() => None,
        }
    });
    let reply = match sent {
        Some(Ok(r)) => r,
        Some(Err(e)) => return fail2(&e.to_string()),
        None => return fail2("interrupted"),
    };
    crate::output::print(&crate::send::render(&reply));
    Ok(Outcome::Passed)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("Content-Type: application/json"),
            Ok(("Content-Type".into(), "application/json".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("bad name: v").is_err());
    }
}
