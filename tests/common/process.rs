//! What a finished run of the binary printed, for assertion messages and text checks;
//! one definition for every test file that runs `acs-harness` as a process.

use std::process::Output;

/// The exit status, standard output and standard error of a finished process, labelled,
/// in one text.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
