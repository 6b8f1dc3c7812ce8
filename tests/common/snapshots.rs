//! The snapshot suite's machinery: which target it runs against, how it sends a case
//! and how a reply is pinned. The cases themselves are in [`suite`].
//!
//! Against the double (the default) every case pins two snapshots under `snapshots/`:
//! the full response with dynamic values redacted, and its [`shape`]. Against a live
//! target (`ACS_HARNESS_TARGET` + `ACS_CONNECTION_STRING`) only the shape is pinned,
//! under `snapshots/live/`, because a real service's ids and messages vary.

pub mod events;
pub mod suite;

use acs_harness::auth::ConnectionString;
use acs_harness::double::{Double, DoubleConfig};
use acs_harness::shape;
use acs_harness::{AuthMode, Client, Reply};
use serde_json::{Value, json};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The pinned snapshots of the double, beside `Cargo.toml`.
pub const DOUBLE_SNAPSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots");

/// The pinned shapes of a live target.
pub const LIVE_SNAPSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/live");

/// Why a case could not be run: names the target and the request. Tests return it, so
/// `cargo test` prints this message rather than a backtrace out of a helper.
pub struct Failure(pub String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live target, as the environment describes it.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `ACS_HARNESS_TARGET`.
    pub target: String,
    /// `ACS_CONNECTION_STRING`; only its key is used (its Debug output hides the key).
    pub connection: ConnectionString,
    /// `ACS_HARNESS_PREFIX`, default none.
    pub prefix: String,
    /// `ACS_HARNESS_API_VERSION`, default none.
    pub api_version: Option<String>,
}

impl LiveConfig {
    /// Reads the live configuration through `var`: `Ok(None)` when `ACS_HARNESS_TARGET`
    /// is unset or empty (run against the double).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<LiveConfig>, Failure> {
        let Some(target) = var("ACS_HARNESS_TARGET").filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        let target = target.trim().to_string();
        let shown = redact_userinfo(&target);
        let connection = var("ACS_CONNECTION_STRING")
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                Failure(format!(
                    "live target {shown}: ACS_HARNESS_TARGET is set but ACS_CONNECTION_STRING \
                     is not; set it to the resource's `endpoint=...;accesskey=...`"
                ))
            })?
            .parse::<ConnectionString>()
            .map_err(|e| Failure(format!("live target {shown}: ACS_CONNECTION_STRING: {e}")))?;
        Ok(Some(LiveConfig {
            target,
            connection,
            prefix: var("ACS_HARNESS_PREFIX").unwrap_or_default(),
            api_version: var("ACS_HARNESS_API_VERSION").filter(|v| !v.trim().is_empty()),
        }))
    }
}

/// A URL for messages: without user name and password, should someone put them there.
fn redact_userinfo(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => target.to_string(),
    }
}

/// What the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The embedded double: full bodies and shapes are pinned.
    Double,
    /// A target from the environment: shapes only.
    Live,
}

/// A target, its client, and the bookkeeping that keeps snapshots stable.
pub struct Target {
    kind: Kind,
    label: String,
    client: Client,
    snapshot_dir: PathBuf,
    /// Call ids this suite created: replaced by `[callId]` in snapshots, hung up at the end.
    calls: Mutex<Vec<String>>,
    _double: Option<Double>,
}

/// Timeout per request against the double (loopback) and a live service.
const DOUBLE_TIMEOUT: Duration = Duration::from_secs(10);
const LIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Seed of the fault-injecting double, so its 500s fall on the same requests every run.
pub const FAULT_SEED: u64 = 20210415;

impl Target {
    /// The target the environment asks for: live when `ACS_HARNESS_TARGET` is set,
    /// otherwise a fresh double.
    pub async fn from_env() -> Result<Target, Failure> {
        match LiveConfig::from_vars(|k| std::env::var(k).ok())? {
            Some(cfg) => Target::live(&cfg, LIVE_SNAPSHOTS),
            None => Target::double(DoubleConfig::default(), DOUBLE_SNAPSHOTS).await,
        }
    }

    /// A fresh double with `config`, pinning into `snapshot_dir`.
    pub async fn double(
        config: DoubleConfig,
        snapshot_dir: impl Into<PathBuf>,
    ) -> Result<Target, Failure> {
        let double = Double::start(config)
            .await
            .map_err(|e| Failure(format!("double: cannot start: {e}")))?;
        let label = format!("double {}", double.uri());
        let client = Client::new(
            &double.uri(),
            "",
            None,
            double.connection_string().signer(),
            DOUBLE_TIMEOUT,
        )
        .map_err(|e| Failure(format!("{label}: {e}")))?;
        Ok(Target {
            kind: Kind::Double,
            label,
            client,
            snapshot_dir: snapshot_dir.into(),
            calls: Mutex::new(Vec::new()),
            _double: Some(double),
        })
    }

    /// A live target, pinning shapes into `snapshot_dir`.
    pub fn live(cfg: &LiveConfig, snapshot_dir: impl Into<PathBuf>) -> Result<Target, Failure> {
        let label = format!("live target {}", redact_userinfo(&cfg.target));
        let client = Client::new(
            &cfg.target,
            &cfg.prefix,
            cfg.api_version.as_deref(),
            cfg.connection.signer(),
            LIVE_TIMEOUT,
        )
        .map_err(|e| Failure(format!("{label}: {e}")))?;
        Ok(Target {
            kind: Kind::Live,
            label,
            client,
            snapshot_dir: snapshot_dir.into(),
            calls: Mutex::new(Vec::new()),
            _double: None,
        })
    }

    /// Double or live.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `double http://…` or `live target https://…`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends a request; a transport failure names the target and the request.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        auth: AuthMode,
    ) -> Result<Reply, Failure> {
        self.client
            .send(method, path, content_type, body, auth)
            .await
            .map_err(|e| Failure(format!("{}: {method} {path}: {e}", self.label)))
    }

    /// A signed JSON request.
    pub async fn json(&self, method: &str, path: &str, body: &Value) -> Result<Reply, Failure> {
        let bytes = body.to_string().into_bytes();
        self.send(
            method,
            path,
            Some("application/json"),
            Some(&bytes),
            AuthMode::Signed,
        )
        .await
    }

    /// Creates a call and returns the reply and its `callLegId`. Every later case
    /// needs one, so an answer without it stops the test here, with the answer quoted.
    /// Any 2xx is taken (a service moving from 200 to 201 is shape drift, for review).
    pub async fn create_call_reply(&self) -> Result<(Reply, String), Failure> {
        let reply = self
            .json("POST", "/calls", &suite::create_call_body())
            .await?;
        let id = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .filter(|_| (200..300).contains(&reply.status))
            .and_then(|v| v.get("callLegId")?.as_str().map(str::to_string))
            .filter(|id| !id.is_empty());
        match id {
            Some(id) => {
                self.remember_call(&id);
                Ok((reply, id))
            }
            None => Err(Failure(format!(
                "{}: POST /calls: expected 200 with {{\"callLegId\": \"…\"}} (the suite needs a \
                 call), got {}",
                self.label,
                describe(&reply)
            ))),
        }
    }

    /// Creates a call and returns its id; see [`Target::create_call_reply`].
    pub async fn create_call(&self) -> Result<String, Failure> {
        Ok(self.create_call_reply().await?.1)
    }

    /// Invites `participants` into `call`, expecting a 2xx.
    pub async fn invite(&self, call: &str, participants: Value) -> Result<(), Failure> {
        let path = acs_harness::contract::Endpoint::InviteParticipants.path(call, None);
        let reply = self
            .json("POST", &path, &json!({ "participants": participants }))
            .await?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(Failure(format!(
                "{}: POST {path}: expected 202 (the next case needs the participant), got {}",
                self.label,
                describe(&reply)
            )))
        }
    }

    /// Records a call id this suite owns (for redaction and hang-up at the end).
    pub fn remember_call(&self, id: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(id.to_string());
        }
    }

    /// Hangs up every call this suite created and still holds; failures are ignored,
    /// since the calls may be gone already and this only spares a live service.
    pub async fn hang_up_all(&self) {
        let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        for id in calls {
            let path = acs_harness::contract::Endpoint::Hangup.path(&id, None);
            let _ = self
                .client
                .send("POST", &path, None, None, AuthMode::Signed)
                .await;
        }
    }

    /// Pins a reply: against the double its full response (with `redactions`, declared
    /// by the caller beside the case) and its shape; against a live target its shape.
    /// `request` describes the case for the reviewer (it becomes the description).
    pub fn pin(&self, name: &str, request: &str, reply: &Reply, redactions: &[(&str, &str)]) {
        let mut settings = self.settings(request);
        // Call ids come back in messages ("participant … not found in call …"), not
        // only in known fields, so they are filtered out of the text as well.
        let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        for id in calls {
            settings.add_filter(&regex::escape(&id), "[callId]");
        }
        settings.bind(|| {
            if self.kind == Kind::Double {
                let mut full = settings.clone();
                for (selector, replacement) in redactions {
                    full.add_redaction(selector, *replacement);
                }
                full.bind(|| insta::assert_json_snapshot!(name, full_response(reply)));
            }
            let mut shape = shape(reply.status, reply.content_type.as_deref(), &reply.body);
            // The contract pins the `Allow` header of a 405, so its shape keeps it.
            if let Some(allow) = &reply.allow {
                shape["allow"] = Value::String(allow.clone());
            }
            insta::assert_json_snapshot!(format!("{name}.shape"), shape);
        });
    }

    /// Pins a shape computed by the caller (event bodies, which are no reply).
    pub fn pin_shape(&self, name: &str, description: &str, shape: Value) {
        self.settings(description)
            .bind(|| insta::assert_json_snapshot!(format!("{name}.shape"), shape));
    }

    /// The insta settings every pin of this target uses.
    fn settings(&self, description: &str) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&self.snapshot_dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_sort_maps(true);
        settings.set_omit_expression(true);
        settings.set_description(description);
        settings
    }

    /// Prints why a case does not run against this target (it shows with `--nocapture`
    /// and in `cargo insta test` output).
    pub fn skip(&self, name: &str, why: &str) {
        eprintln!("{name}: skipped against {}: {why}", self.label);
    }
}

/// The response as pinned for the double: status, content type, `Allow` when present,
/// and the body as JSON (a string when it is not JSON, `null` when empty).
pub fn full_response(reply: &Reply) -> Value {
    let body = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into_owned()))
    };
    let mut v = json!({
        "status": reply.status,
        "contentType": reply.content_type,
        "body": body,
    });
    if let Some(allow) = &reply.allow {
        v["allow"] = Value::String(allow.clone());
    }
    v
}

/// A reply in one line for failure messages: status, content type, a bounded body.
pub fn describe(reply: &Reply) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&reply.body);
    let mut body: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        body.push('…');
    }
    format!(
        "{} {}, {} bytes: {:?}",
        reply.status,
        reply.content_type.as_deref().unwrap_or("(no content type)"),
        reply.body.len(),
        body
    )
}
