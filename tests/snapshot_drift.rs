//! Drift is caught: a double whose answers changed shape fails the pinned snapshots,
//! the unchanged double passes them, and a missing snapshot fails instead of being
//! written. Runs with insta's updates disabled whatever the caller set (`cargo insta
//! test` asks for force-pass and new files), against a throw-away copy of `snapshots/`
//! so a failing run leaves nothing behind in the repository.

mod common;

use acs_harness::double::{Double, DoubleConfig, DoubleRequest, DoubleResponse};
use common::snapshots::{DOUBLE_SNAPSHOTS, Failure, LiveConfig, Target, suite};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fresh directory under the system temp dir holding a copy of the pinned snapshots.
struct SnapshotCopy(PathBuf);

impl SnapshotCopy {
    fn new(tag: &str, with_files: bool) -> SnapshotCopy {
        let dir = std::env::temp_dir().join(format!(
            "acs-harness-drift-{}-{tag}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if with_files {
            for entry in std::fs::read_dir(DOUBLE_SNAPSHOTS).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "snap") {
                    std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        SnapshotCopy(dir)
    }

    fn files(&self) -> Vec<String> {
        listing(&self.0)
    }
}

impl Drop for SnapshotCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether a snapshot run left insta's review files behind.
fn review_files(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| n.ends_with(".snap.new") || n.ends_with(".pending-snap"))
        .collect()
}

/// Drops `resultInfo` from every media operation body.
fn drop_result_info(_: &DoubleRequest, resp: &mut DoubleResponse) {
    if let Some(Value::Object(mut body)) = resp.body_json()
        && body.remove("resultInfo").is_some()
    {
        resp.body = serde_json::to_vec(&body).unwrap().into();
    }
}

/// Answers 200 where the double would answer 202.
fn ok_instead_of_accepted(_: &DoubleRequest, resp: &mut DoubleResponse) {
    if resp.status == 202 {
        resp.status = 200;
    }
}

/// Runs the play audio cases against `target` on a task of its own and returns the
/// panic message if a snapshot assertion failed, `None` if all passed.
async fn play_audio(target: Target) -> Option<String> {
    let target = Arc::new(target);
    let task = tokio::spawn(async move { suite::play_audio(&target).await });
    match task.await {
        Ok(Ok(())) => None,
        Ok(Err(Failure(e))) => panic!("the suite could not run: {e}"),
        Err(e) => {
            let payload = e.into_panic();
            Some(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )
        }
    }
}

/// The same double seen as a live target: only shapes are compared.
async fn as_live(double: &Double, snapshots: &Path) -> Target {
    let cfg = LiveConfig {
        target: double.uri(),
        connection: double.connection_string(),
        prefix: String::new(),
        api_version: None,
    };
    Target::live(&cfg, snapshots).unwrap()
}

// One test function: the insta switches are process environment, set here before any
// other thread of this binary exists.
#[test]
fn snapshot_drift_is_caught() {
    // SAFETY: this binary has a single test, and nothing else runs yet: no other thread
    // reads the environment while it is written.
    unsafe {
        std::env::set_var("INSTA_UPDATE", "no");
        std::env::set_var("INSTA_FORCE_PASS", "0");
    }
    let before = listing(Path::new(DOUBLE_SNAPSHOTS));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        // Unchanged behaviour passes, as a double (full bodies) and as a live target (shapes).
        let copy = SnapshotCopy::new("unchanged", true);
        let t = Target::double(DoubleConfig::default(), &copy.0)
            .await
            .unwrap();
        assert_eq!(play_audio(t).await, None);
        let double = Double::start(DoubleConfig::default()).await.unwrap();
        assert_eq!(play_audio(as_live(&double, &copy.0).await).await, None);

        // Dropping `resultInfo` fails the full snapshot and, as a live target, the shape.
        let copy = SnapshotCopy::new("no-result-info", true);
        let config = DoubleConfig::default().tamper(drop_result_info);
        let t = Target::double(config, &copy.0).await.unwrap();
        let failure = play_audio(t).await.expect("dropping resultInfo must fail");
        assert!(failure.contains("'play-audio.202'"), "{failure}");
        let double = Double::start(DoubleConfig::default().tamper(drop_result_info))
            .await
            .unwrap();
        let failure = play_audio(as_live(&double, &copy.0).await)
            .await
            .expect("dropping resultInfo must change the shape");
        assert!(failure.contains("'play-audio.202.shape'"), "{failure}");
        assert_eq!(review_files(&copy.files()), Vec::<&String>::new());

        // 200 instead of 202 changes the shape too.
        let copy = SnapshotCopy::new("200-not-202", true);
        let double = Double::start(DoubleConfig::default().tamper(ok_instead_of_accepted))
            .await
            .unwrap();
        let failure = play_audio(as_live(&double, &copy.0).await)
            .await
            .expect("200 instead of 202 must change the shape");
        assert!(failure.contains("'play-audio.202.shape'"), "{failure}");
        assert_eq!(review_files(&copy.files()), Vec::<&String>::new());

        // A missing snapshot fails and is not written.
        let empty = SnapshotCopy::new("missing", false);
        let t = Target::double(DoubleConfig::default(), &empty.0)
            .await
            .unwrap();
        let failure = play_audio(t).await.expect("a missing snapshot must fail");
        assert!(failure.contains("'play-audio.202'"), "{failure}");
        assert_eq!(empty.files(), Vec::<String>::new());
    });
    assert_eq!(
        listing(Path::new(DOUBLE_SNAPSHOTS)),
        before,
        "snapshots/ changed"
    );
}
