//! One request to a target, as `acs-harness send` sends it and the gate prints it:
//! the `--auth` names of the deliberate faults and the printed answer.

use crate::client::{AuthMode, MAX_RESPONSE_BYTES, Reply};

/// Response bodies are printed up to this many characters (the size is stated).
const MAX_PRINTED_BODY: usize = 64 * 1024;

/// The `--auth` names of the authentication modes, as the gate prints them.
pub fn auth_name(mode: AuthMode) -> String {
    match mode {
        AuthMode::Signed => "signed".into(),
        AuthMode::Missing => "none".into(),
        AuthMode::OtherScheme => "bearer".into(),
        AuthMode::BadSignature => "bad-signature".into(),
        AuthMode::BodyChangedAfterSigning => "body-changed".into(),
        AuthMode::DateOffset(s) => format!("date-offset={s}"),
        AuthMode::MissingDate => "no-date".into(),
        AuthMode::MissingContentHash => "no-content-hash".into(),
        AuthMode::OtherHost => "other-host".into(),
        AuthMode::OtherPath => "other-path".into(),
        AuthMode::OtherMethod => "other-method".into(),
    }
}

/// Parses an `--auth` name (see [`auth_name`]).
pub fn parse_auth(s: &str) -> Result<AuthMode, String> {
    let fixed = [
        AuthMode::Signed,
        AuthMode::Missing,
        AuthMode::OtherScheme,
        AuthMode::BadSignature,
        AuthMode::BodyChangedAfterSigning,
        AuthMode::MissingDate,
        AuthMode::MissingContentHash,
        AuthMode::OtherHost,
        AuthMode::OtherPath,
        AuthMode::OtherMethod,
    ];
    if let Some(m) = fixed.into_iter().find(|m| auth_name(*m) == s) {
        return Ok(m);
    }
    if let Some(secs) = s.strip_prefix("date-offset=") {
        return secs
            .parse::<i64>()
            .ok()
            .filter(|s| s.unsigned_abs() <= 366 * 24 * 3600)
            .map(AuthMode::DateOffset)
            .ok_or_else(|| format!("{secs:?} is not a number of seconds within a year"));
    }
    let names: Vec<String> = fixed.into_iter().map(auth_name).collect();
    Err(format!(
        "unknown mode {s:?} (one of {}, date-offset=SECONDS)",
        names.join(", ")
    ))
}

/// An answer as `acs-harness send` prints it: status line, headers, then the body
/// (cut at 64 KiB, secrets removed).
pub fn render(reply: &Reply) -> String {
    let mut out = format!("HTTP {}\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {}\n", crate::redact::clip(value, 1024)));
    }
    out.push('\n');
    if !reply.body.is_empty() {
        let text = String::from_utf8_lossy(&reply.body);
        out.push_str(&crate::redact::clip(&text, MAX_PRINTED_BODY));
        if reply.truncated {
            out.push_str(&format!(
                "\n[the body went on beyond {MAX_RESPONSE_BYTES} bytes and was not read]"
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_names_round_trip() {
        for m in [
            AuthMode::Signed,
            AuthMode::Missing,
            AuthMode::OtherScheme,
            AuthMode::BadSignature,
            AuthMode::BodyChangedAfterSigning,
            AuthMode::DateOffset(-1200),
            AuthMode::DateOffset(600),
            AuthMode::MissingDate,
            AuthMode::MissingContentHash,
            AuthMode::OtherHost,
            AuthMode::OtherPath,
            AuthMode::OtherMethod,
        ] {
            assert_eq!(parse_auth(&auth_name(m)), Ok(m));
        }
        assert!(parse_auth("date-offset=ten").is_err());
        assert!(parse_auth("date-offset=99999999999").is_err());
        assert!(parse_auth("hmac").unwrap_err().contains("bad-signature"));
    }
}
