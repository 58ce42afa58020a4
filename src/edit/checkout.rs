//! The git checkout a fix edits: its root, whether it has uncommitted changes, its HEAD.
//! `git` runs without a shell, with fixed arguments.

use std::path::{Path, PathBuf};

/// Runs `git -C dir ARGS` and returns stdout, or git's message.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The root of the work tree containing `dir`.
///
/// Errors: `dir` is not inside a git work tree (git's message), or git cannot run.
pub fn root(dir: &Path) -> Result<PathBuf, String> {
    git(dir, &["rev-parse", "--show-toplevel"]).map(|s| PathBuf::from(s.trim()))
}

/// Paths with uncommitted changes or untracked files (`git status --porcelain`), at most 10.
pub fn dirty(root: &Path) -> Result<Vec<String>, String> {
    let out = git(root, &["status", "--porcelain", "--untracked-files=normal"])?;
    Ok(out.lines().take(10).map(|l| l.get(3..).unwrap_or(l).to_string()).collect())
}

/// The full sha of HEAD.
pub fn head(root: &Path) -> Result<String, String> {
    git(root, &["rev-parse", "HEAD"]).map(|s| s.trim().to_string())
}
