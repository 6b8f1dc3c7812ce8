//! Writing what the harness produces: reports whole or not at all, standard output that
//! may be closed early (`| head`), and the signals that end a run (Ctrl-C and SIGTERM
//! alike, because SIGTERM is how CI systems cancel a job).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so
/// a reader (or a run killed half-way) sees the old file, the new file, or none: never a
/// truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_beside(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A hidden temporary name beside `path`, unique to this process.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Checks before any work that a report can be written to `path`: its folder exists and
/// takes a new file. The probe file is removed again; an existing report is untouched.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let tmp = temp_beside(path);
    match std::fs::File::create(&tmp) {
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
            if path.is_dir() {
                return Err(format!("{} is a folder, not a file", path.display()));
            }
            Ok(())
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to standard output found it closed; the command then ends quietly
/// with the exit code it would have had.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes text to standard output through the redactor. A closed stdout is remembered
/// (see [`stdout_closed`]) and every later write is skipped, never a panic.
pub fn print(text: &str) {
    if stdout_closed() {
        return;
    }
    let mut out = io::stdout().lock();
    let clean = crate::redact::scrub(text);
    if let Err(e) = out.write_all(clean.as_bytes()).and_then(|()| out.flush())
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// [`print`] with a newline.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// Writes a line to standard error through the redactor; errors are ignored (there is
/// nowhere left to report them).
pub fn eprintln(text: &str) {
    let clean = crate::redact::scrub(text);
    let _ = writeln!(io::stderr().lock(), "{clean}");
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temp() {
        let dir = std::env::temp_dir().join(format!("acs-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!temp_beside(&p).exists());
        assert!(check_writable(&p).is_ok());
        assert!(check_writable(&dir.join("missing/r.json")).is_err());
        assert!(check_writable(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
