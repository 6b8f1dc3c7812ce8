//! How a failing request is shown: as an `acs-harness send` command line to paste,
//! with the same method, path, headers, body and authentication fault, signed afresh
//! when run (the key comes from ACS_CONNECTION_STRING, never from the line).

use super::config::GateConfig;
use super::engine::Req;
use super::report::shell_quote;
use crate::auth::content_hash;
use crate::client::AuthMode;
use std::time::Duration;

/// Bodies up to this size go into a printed `send` line; larger ones are described.
pub(crate) const MAX_INLINE_BODY: usize = 64 * 1024;

/// `acs-harness send --timeout` when not given: not repeated in a `send` line.
const SEND_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `acs-harness send` options that say where requests go: target, prefix,
/// api-version and, when not the default, the timeout.
pub(crate) fn send_options(config: &GateConfig) -> String {
    let mut s = format!(
        " --target {}",
        shell_quote(crate::redact::url(&config.target).as_bytes())
    );
    if !config.prefix.is_empty() {
        s.push_str(&format!(
            " --prefix {}",
            shell_quote(config.prefix.as_bytes())
        ));
    }
    if let Some(v) = &config.api_version {
        s.push_str(&format!(" --api-version {}", shell_quote(v.as_bytes())));
    }
    if config.timeout != SEND_DEFAULT_TIMEOUT {
        s.push_str(&format!(
            " --timeout {}",
            super::format_duration(config.timeout)
        ));
    }
    s
}

/// `req` as an `acs-harness send` command line; `options` from [`send_options`].
pub(crate) fn send_line(options: &str, req: &Req) -> String {
    let mut s = format!(
        "acs-harness send {} {}{options}",
        req.method,
        shell_quote(req.path.as_bytes())
    );
    if let Some(ct) = &req.content_type {
        s.push_str(&format!(
            " --header {}",
            shell_quote(format!("Content-Type: {ct}").as_bytes())
        ));
    }
    if req.auth != AuthMode::Signed {
        s.push_str(&format!(" --auth {}", crate::send::auth_name(req.auth)));
    }
    let body = req.body.as_deref().unwrap_or_default();
    let text = std::str::from_utf8(body)
        .ok()
        .filter(|t| !t.chars().any(char::is_control));
    match text {
        _ if body.is_empty() => {}
        Some(t) if t.len() <= MAX_INLINE_BODY => {
            s.push_str(&format!(" --body {}", shell_quote(t.as_bytes())));
        }
        None if body.len() <= MAX_INLINE_BODY / 4 * 3 => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(body);
            s.push_str(&format!(" --body-base64 {b64}"));
        }
        _ => {
            // Too long for a command line: the file to write is described instead.
            let start = &body[..body.len().min(120)];
            s.push_str(&format!(
                " --body @body.json  # {} bytes (SHA-256 {}), starting {}",
                body.len(),
                content_hash(body),
                shell_quote(start)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Endpoint;

    #[test]
    fn send_lines_carry_what_reproduces_the_request() {
        let signer =
            crate::auth::Signer::new(&crate::auth::AccessKey::from_base64("c2VjcmV0").unwrap());
        let mut config = GateConfig::new("https://u:p@x.example:8443/?sig=s", signer);
        config.prefix = "/calling".into();
        config.api_version = Some("2021-06-15-preview".into());
        config.timeout = Duration::from_millis(2500);
        let options = send_options(&config);
        let req = |body: &[u8], auth| Req {
            endpoint: Endpoint::Hangup,
            method: "POST",
            path: "/calls/it's/Hangup".into(),
            content_type: Some("application/json".into()),
            body: Some(body.to_vec()),
            auth,
        };
        let line = send_line(
            &options,
            &req(br#"{"a":"b c"}"#, AuthMode::DateOffset(-1200)),
        );
        assert_eq!(
            line,
            "acs-harness send POST '/calls/it'\\''s/Hangup' --target 'https://x.example:8443/' \
             --prefix '/calling' --api-version '2021-06-15-preview' --timeout 2500ms \
             --header 'Content-Type: application/json' --auth date-offset=-1200 --body '{\"a\":\"b c\"}'"
        );
        let line = send_line(&options, &req(b"{\xff}", AuthMode::Signed));
        assert!(line.ends_with(" --body-base64 e/99"), "{line}");
        assert!(!line.contains("--auth"), "{line}");
        let big = vec![b'a'; MAX_INLINE_BODY + 1];
        let line = send_line(&options, &req(&big, AuthMode::Signed));
        assert!(line.contains(" --body @body.json  # 65537 bytes"), "{line}");
        assert!(line.len() < 600, "{}", line.len());
    }
}
