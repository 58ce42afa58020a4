//! `review.max_diff_bytes`: a diff over the limit stops the review with exit 2 and a message
//! giving the size, the limit and the key to raise, whether it comes from a file or stdin.

use std::path::Path;

use crate::common::{agentctl, write};

const EVENT: &str = "examples/events/pull_request.opened.json";
const DIFF: &str = "examples/diffs/agentctl-medium.diff";

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn diff_file_over_max_diff_bytes_exits_2_naming_size_limit_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", "review:\n  max_diff_bytes: 1024\n");
    let size = std::fs::metadata(repo_file(DIFF)).unwrap().len();
    let out = agentctl()
        .current_dir(dir.path())
        .args(["review", "--dry-run", "--config", config.to_str().unwrap(), "--event"])
        .arg(repo_file(EVENT))
        .arg("--diff")
        .arg(repo_file(DIFF))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("is {size} bytes, over the limit of 1024 bytes")), "{err}");
    assert!(err.contains("review.max_diff_bytes"), "{err}");
    assert!(out.stdout.is_empty(), "nothing is printed as a review");
}

#[test]
fn stdin_diff_over_max_diff_bytes_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", "review:\n  max_diff_bytes: 1024\n");
    let out = agentctl()
        .current_dir(dir.path())
        .args(["review", "--dry-run", "--config", config.to_str().unwrap(), "--diff", "-", "--event"])
        .arg(repo_file(EVENT))
        .write_stdin(std::fs::read(repo_file(DIFF)).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("the diff from stdin is more than 1024 bytes"), "{}", stderr(&out));
}

#[test]
fn a_diff_within_max_diff_bytes_is_reviewed() {
    let dir = tempfile::tempdir().unwrap();
    let size = std::fs::metadata(repo_file(DIFF)).unwrap().len();
    let config = write(dir.path(), "c.yml", format!("review:\n  max_diff_bytes: {size}\n"));
    let out = agentctl()
        .current_dir(dir.path())
        .args(["review", "--dry-run", "--config", config.to_str().unwrap(), "--event"])
        .arg(repo_file(EVENT))
        .arg("--diff")
        .arg(repo_file(DIFF))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn schema_caps_max_diff_bytes_at_one_gib() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", "review:\n  max_diff_bytes: 1073741825\n");
    let out = agentctl().args(["config", "validate"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/review/max_diff_bytes"), "{}", stderr(&out));
}
