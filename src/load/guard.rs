//! What keeps a load run's output trustworthy whatever happens to the process: Ctrl-C and
//! SIGTERM handled alike (CI cancels with SIGTERM), goose's own printing kept off a
//! standard output that may be closed (`| head -1`), goose's log lines scrubbed, and its
//! reports staged privately, scrubbed and published whole or not at all.

use crate::output;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The reason goose records for a run the harness stopped on a signal.
const SIGNAL_REASON: &str = "interrupted by Ctrl-C or SIGTERM";

/// Takes the process's one `ctrlc` handler slot before goose asks for it. goose's own
/// handler sees SIGINT only and exits on a second one while reports are half written;
/// with the slot taken goose's request fails (it logs that and carries on) and the
/// harness's [`Stop`] decides. Call before any tokio signal listener exists: `ctrlc`
/// replaces the SIGINT action, while tokio's listeners chain to the one they find.
pub fn claim_ctrlc() {
    let _ = ctrlc::set_handler(|| {});
}

/// Whether Ctrl-C or SIGTERM interrupted the run, and what a second one may cut short.
pub struct Stop {
    interrupted: AtomicBool,
    /// Held while a final file is written, so a second signal exits between writes.
    writing: Mutex<()>,
    /// The private folder goose writes its reports to; removed on a second signal.
    staging: Mutex<Option<PathBuf>>,
}

impl Stop {
    /// Starts watching Ctrl-C and SIGTERM. The first stops the run through goose's
    /// killswitch (the reports are still written); a second exits at once with status 2,
    /// after any file being written is whole, leaving the reports not yet published absent.
    pub fn watch() -> Arc<Stop> {
        let stop = Arc::new(Stop {
            interrupted: AtomicBool::new(false),
            writing: Mutex::new(()),
            staging: Mutex::new(None),
        });
        match Signals::new() {
            Ok(signals) => {
                tokio::spawn(watch(signals, stop.clone()));
            }
            Err(e) => output::eprintln(&format!(
                "warning: cannot watch Ctrl-C and SIGTERM ({e}); an interrupted run writes no reports"
            )),
        }
        stop
    }

    /// Whether a signal interrupted the run.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Held while a final file is written.
    pub fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_staging(&self, dir: Option<PathBuf>) {
        *self.staging.lock().unwrap_or_else(PoisonError::into_inner) = dir;
    }

    fn remove_staging(&self) {
        if let Some(dir) = self
            .staging
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn watch(mut signals: Signals, stop: Arc<Stop>) {
    signals.recv().await;
    stop.interrupted.store(true, Ordering::SeqCst);
    output::eprintln(
        "load: interrupted: stopping the users, then writing the reports (a second Ctrl-C or SIGTERM exits at once)",
    );
    goose::trigger_killswitch(SIGNAL_REASON);
    tokio::select! {
        () = signals.recv() => {}
        () = hold_killswitch() => {}
    }
    let _writing = stop.writing();
    stop.remove_staging();
    output::eprintln("load: interrupted again: exiting now; reports not yet written are absent");
    std::process::exit(i32::from(super::EXIT_INTERRUPTED));
}

/// goose clears its killswitch when it sets a run up, so a signal that came just before
/// would be lost: keep it set for the rest of the run.
async fn hold_killswitch() {
    loop {
        if !goose::is_killswitch_triggered() {
            goose::trigger_killswitch(SIGNAL_REASON);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ctrl-C and SIGTERM, registered once so that no signal between two waits is lost.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn recv(&mut self) {
        output::shutdown_signal().await;
    }
}

/// While alive, the process's standard output goes to `/dev/null`. goose prints a line
/// with `println!` during every run (which panics on a closed stdout) and its tables
/// unscrubbed; the harness prints goose's tables itself, through [`output::print`].
pub struct QuietStdout {
    #[cfg(unix)]
    saved: Option<std::os::fd::OwnedFd>,
}

impl QuietStdout {
    /// Points standard output at `/dev/null` until dropped; on any failure it is left as
    /// it is (goose then prints there, as it always did).
    pub fn begin() -> QuietStdout {
        #[cfg(unix)]
        {
            use std::io::Write;
            use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
            let _ = std::io::stdout().lock().flush();
            let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
                return QuietStdout { saved: None };
            };
            // SAFETY: dup has no memory effects; a valid result is a new descriptor this
            // process owns, handed to exactly one OwnedFd.
            let saved = unsafe { libc::dup(libc::STDOUT_FILENO) };
            if saved < 0 {
                return QuietStdout { saved: None };
            }
            // SAFETY: `saved` is a fresh descriptor owned by nothing else.
            let saved = unsafe { OwnedFd::from_raw_fd(saved) };
            // SAFETY: both descriptors are open; dup2 only redirects descriptor 1, which
            // std's stdout writes to by number and never closes.
            if unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
                return QuietStdout { saved: None };
            }
            QuietStdout { saved: Some(saved) }
        }
        #[cfg(not(unix))]
        QuietStdout {}
    }
}

impl Drop for QuietStdout {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            use std::io::Write;
            use std::os::fd::AsRawFd;
            let _ = std::io::stdout().lock().flush();
            // SAFETY: as in `begin`; puts the original standard output back on descriptor 1.
            unsafe {
                libc::dup2(saved.as_raw_fd(), libc::STDOUT_FILENO);
            }
        }
    }
}

/// Routes goose's log lines (its own logger cannot be installed once this one is)
/// through the scrubber to standard error, at warnings and errors with `--quiet`.
struct GooseLog {
    quiet: AtomicBool,
}

static GOOSE_LOG: GooseLog = GooseLog {
    quiet: AtomicBool::new(false),
};

/// Installs the logger for goose's log lines; call once, before goose runs.
pub fn install_goose_log(quiet: bool) {
    GOOSE_LOG.quiet.store(quiet, Ordering::Relaxed);
    if log::set_logger(&GOOSE_LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

impl log::Log for GooseLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        let level = if self.quiet.load(Ordering::Relaxed) {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        m.target().starts_with("goose") && m.level() <= level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        if skipped(&text) {
            return;
        }
        output::eprintln(&format!("goose {}: {text}", record.level()));
    }

    fn flush(&self) {}
}

/// goose lines the harness says better itself: thresholds in goose's syntax (the
/// harness prints its table in its own), goose's notes that its logger and Ctrl-C handler are not used, and
/// the private paths its reports are staged at (the harness names the real ones).
fn skipped(text: &str) -> bool {
    (text.starts_with("threshold ") && text.contains(" failed"))
        || text.starts_with("threshold = ")
        || text.contains(STAGING_PREFIX)
        || text.starts_with("reset ctrl-c handler")
        || text.starts_with("failed to initialize CombinedLogger")
}

/// The start of a staging folder's name.
const STAGING_PREFIX: &str = "acs-harness-load-";

/// goose's reports, written to a private folder and published through the scrubber.
pub struct Staging {
    dir: PathBuf,
    /// (final path, staged path)
    reports: Vec<(PathBuf, PathBuf)>,
}

impl Staging {
    /// Makes the private folder (mode 0700: goose's reports may hold what a target echoed
    /// before they are scrubbed) and a staged path per report, with its extension kept
    /// because goose picks the report's kind by it.
    pub fn new(finals: &[String], stop: &Stop) -> Result<Staging, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("{STAGING_PREFIX}{}-{nanos}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        stop.set_staging(Some(dir.clone()));
        let reports = finals
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let path = PathBuf::from(f);
                let name = path
                    .file_name()
                    .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
                let staged = dir.join(format!("{i}-{name}"));
                (path, staged)
            })
            .collect();
        Ok(Staging { dir, reports })
    }

    /// The paths goose writes to.
    pub fn goose_paths(&self) -> Vec<String> {
        self.reports
            .iter()
            .map(|(_, s)| s.display().to_string())
            .collect()
    }

    /// Scrubs each report goose wrote and writes it to its final path atomically; then
    /// removes the private folder. A report goose did not write stays absent.
    pub fn publish(self, stop: &Stop) {
        for (path, staged) in &self.reports {
            let bytes = match std::fs::read(staged) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    output::eprintln(&format!(
                        "warning: goose wrote no report for {}",
                        path.display()
                    ));
                    continue;
                }
                Err(e) => {
                    output::eprintln(&format!(
                        "warning: cannot read goose's report for {}: {e}",
                        path.display()
                    ));
                    continue;
                }
            };
            let clean = scrub_report(&String::from_utf8_lossy(&bytes), path);
            let _writing = stop.writing();
            if let Err(e) = output::write_atomic(path, clean.as_bytes()) {
                output::eprintln(&format!("warning: cannot write {}: {e}", path.display()));
            }
        }
        stop.set_staging(None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Removes the private folder without publishing anything.
    pub fn discard(self, stop: &Stop) {
        stop.set_staging(None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A report with every secret removed; in HTML the scrubber's `<redacted>`-style marks
/// are escaped so a browser shows them instead of taking them for tags.
pub fn scrub_report(text: &str, path: &Path) -> String {
    let clean = crate::redact::scrub(text);
    let html = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !html {
        return clean.into_owned();
    }
    let mut out = clean.into_owned();
    for mark in [crate::redact::REDACTED, "<content-hash>", "<date>"] {
        if out.contains(mark) {
            let escaped = mark.replace('<', "&lt;").replace('>', "&gt;");
            out = out.replace(mark, &escaped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_scrubbed_and_html_marks_escaped() {
        let text = "x-ms-date: Wed, 02 Dec 2026 11:08:24 GMT Signature=abcDEF123+/= done";
        let json = scrub_report(text, Path::new("r.json"));
        assert!(
            !json.contains("11:08:24") && !json.contains("abcDEF123"),
            "{json}"
        );
        let html = scrub_report(text, Path::new("r.HTML"));
        assert!(
            html.contains("&lt;date&gt;") && !html.contains("<date>"),
            "{html}"
        );
        assert!(!html.contains("abcDEF123"), "{html}");
    }

    #[test]
    fn goose_threshold_lines_are_left_to_the_harness() {
        assert!(skipped(
            "threshold p95<1ms for POST /calls failed: observed 3ms"
        ));
        assert!(skipped(
            "json report file written to: /tmp/acs-harness-load-1-2/0-r.json"
        ));
        assert!(!skipped("caught ctrl-c, stopping..."));
    }
}
