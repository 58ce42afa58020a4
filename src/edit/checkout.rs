//! The git checkout a fix edits: its root, whether it has uncommitted changes, its HEAD, the
//! scratch work tree the rounds run in ([`ScratchTree`]), and
//! the `fix.commit: git` publish path ([`commit_files`], [`remote_branch_head`],
//! [`push_branch`]). `git` runs without a shell, with fixed arguments; paths and branch names
//! come after `--` or inside a refspec, never where git reads options.

use std::path::{Path, PathBuf};

/// Runs `git -C dir ARGS` and returns stdout, or git's message.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    git_with(dir, args, &[], None)
}

/// [`git`] with extra environment variables and bytes on stdin.
fn git_with(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    stdin: Option<&[u8]>,
) -> Result<String, String> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C").arg(dir).args(args).envs(env.iter().map(|(k, v)| (*k, *v)));
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).map_err(|e| format!("cannot write to git: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("cannot run git: {e}"))?;
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

/// A scratch work tree of a checkout's repository (`git worktree add --detach`, at HEAD) in a
/// temporary folder of its own, where a fix's rounds write and verify runs, so that the user's
/// checkout is never written (issue #17). Dropping it removes the work tree and its folder
/// (`git worktree remove --force`, then `git worktree prune`); [`ScratchTree::remove`] does the
/// same and reports git's error.
///
/// A run killed with `SIGKILL` leaves the folder (under `RUNNER_TEMP` the runner deletes it
/// after the job) and its `.git/worktrees/` entry; the checkout's files, index and HEAD are
/// never touched. The next run prunes entries whose folder is gone.
#[derive(Debug)]
pub struct ScratchTree {
    repo: PathBuf,
    path: PathBuf,
    /// Owns the folder holding `path`; `None` once removed.
    dir: Option<tempfile::TempDir>,
}

impl ScratchTree {
    /// Adds a work tree of `root`'s repository detached at HEAD, in a new `agentctl-fix-*`
    /// folder under `under`. Submodules are not checked out in it.
    ///
    /// Errors: the folder cannot be made, or git's message.
    pub fn add(root: &Path, under: &Path) -> Result<Self, String> {
        // Entries whose folder is gone (a run killed with SIGKILL whose temp folder was cleaned).
        let _ = git(root, &["worktree", "prune"]);
        let dir = tempfile::Builder::new()
            .prefix("agentctl-fix-")
            .tempdir_in(under)
            .map_err(|e| format!("cannot make a scratch folder in {}: {e}", under.display()))?;
        let path = dir.path().join("tree");
        let arg = path.to_str().ok_or_else(|| format!("the scratch folder {} is not UTF-8", path.display()))?;
        git(root, &["worktree", "add", "--detach", "--quiet", arg, "HEAD"])?;
        Ok(Self { repo: root.to_path_buf(), path, dir: Some(dir) })
    }

    /// The work tree's root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the work tree, its folder and its `.git/worktrees/` entry.
    ///
    /// Errors: git's message (the folder is deleted anyway).
    pub fn remove(mut self) -> Result<(), String> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), String> {
        let Some(dir) = self.dir.take() else { return Ok(()) };
        let removed = match self.path.to_str() {
            Some(p) => git(&self.repo, &["worktree", "remove", "--force", "--force", p]).map(drop),
            None => Ok(()),
        };
        let closed = dir.close().map_err(|e| format!("cannot delete the scratch folder: {e}"));
        let _ = git(&self.repo, &["worktree", "prune"]);
        removed.and(closed)
    }
}

impl Drop for ScratchTree {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// One file of a [`commit_files`] commit: repository-relative `/`-separated path, new content
/// (`None` deletes it).
pub type NewContent<'a> = (&'a str, Option<&'a [u8]>);

/// Makes a commit in the checkout's repository whose parent is `parent` and whose tree is
/// `parent`'s with `files` changed, without touching the work tree, the index or HEAD (a
/// temporary index file; `git hash-object`, `update-index`, `write-tree`, `commit-tree`), and
/// points `refs/heads/{branch}` at it. A changed file keeps its mode in `parent`; a new one is
/// `100644`. The author and committer are git's configured user, or `agentctl
/// <agentctl@users.noreply.github.com>` when none is configured. Returns the commit's sha.
///
/// Errors: git's message (an unknown `parent`, a bad branch name, a full disk).
pub fn commit_files(
    root: &Path,
    parent: &str,
    branch: &str,
    files: &[NewContent<'_>],
    message: &str,
) -> Result<String, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a temporary index: {e}"))?;
    let index = scratch.path().join("index");
    let env = [("GIT_INDEX_FILE", index.as_os_str())];
    git_with(root, &["read-tree", parent], &env, None)?;
    for (path, content) in files {
        match content {
            Some(bytes) => {
                let blob = git_with(root, &["hash-object", "-w", "--stdin"], &[], Some(bytes))?;
                let mode = git(root, &["ls-tree", parent, "--", path])?
                    .split_whitespace()
                    .next()
                    .filter(|m| *m == "100755")
                    .unwrap_or("100644")
                    .to_string();
                let info = format!("{mode},{},{path}", blob.trim());
                git_with(root, &["update-index", "--add", "--cacheinfo", &info], &env, None)?;
            }
            None => {
                git_with(root, &["update-index", "--force-remove", "--", path], &env, None)?;
            }
        }
    }
    let tree = git_with(root, &["write-tree"], &env, None)?;
    let configured = git(root, &["config", "--get", "user.email"]).is_ok();
    let who: Vec<(&str, &std::ffi::OsStr)> = if configured {
        vec![]
    } else {
        let (name, email) =
            (std::ffi::OsStr::new("agentctl"), std::ffi::OsStr::new("agentctl@users.noreply.github.com"));
        vec![
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", name),
            ("GIT_COMMITTER_EMAIL", email),
        ]
    };
    let commit =
        git_with(root, &["commit-tree", tree.trim(), "-p", parent, "-F", "-"], &who, Some(message.as_bytes()))?;
    let commit = commit.trim().to_string();
    git(root, &["update-ref", &format!("refs/heads/{branch}"), &commit])?;
    Ok(commit)
}

/// The sha `refs/heads/{branch}` has on `remote` (`git ls-remote`), fetched into the checkout
/// so a commit can build on it; `Ok(None)` when the remote has no such branch.
///
/// Errors: git's message (the remote cannot be reached or refuses the credentials).
pub fn remote_branch_head(root: &Path, remote: &str, branch: &str) -> Result<Option<String>, String> {
    let refname = format!("refs/heads/{branch}");
    let out = git(root, &["ls-remote", "--", remote, &refname])?;
    let Some(sha) =
        out.lines().find_map(|l| l.split_once('\t').filter(|(_, r)| *r == refname).map(|(s, _)| s.to_string()))
    else {
        return Ok(None);
    };
    git(root, &["fetch", "--no-tags", "--", remote, &refname])?;
    Ok(Some(sha))
}

/// `git push --no-verify REMOTE refs/heads/{branch}:refs/heads/{branch}`: never forced (no
/// `--force`, no `+` in the refspec), so a push that is not a fast-forward is refused by git.
///
/// Errors: git's message (rejected, no credentials, unreachable).
pub fn push_branch(root: &Path, remote: &str, branch: &str) -> Result<(), String> {
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    git(root, &["push", "--no-verify", "--", remote, &spec]).map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) -> String {
        let args: Vec<&str> = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        git(dir, &args).unwrap().trim().to_string()
    }

    #[test]
    fn a_commit_leaves_the_work_tree_alone_and_a_push_that_is_not_a_fast_forward_is_refused() {
        let remote = tempfile::tempdir().unwrap();
        run(remote.path(), &["init", "-q", "--bare"]);
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
        std::fs::write(dir.path().join("gone.txt"), "x\n").unwrap();
        run(dir.path(), &["add", "-A"]);
        run(dir.path(), &["commit", "-q", "-m", "init"]);
        run(dir.path(), &["remote", "add", "origin", remote.path().to_str().unwrap()]);
        let base = head(dir.path()).unwrap();
        let files: [NewContent<'_>; 3] = [("a.txt", Some(b"b\n")), ("new/n.txt", Some(b"n\n")), ("gone.txt", None)];
        let c1 = commit_files(dir.path(), &base, "agentctl/fix-1-x", &files, "one\n\nbody\n").unwrap();
        assert_eq!(run(dir.path(), &["ls-tree", "-r", "--name-only", &c1]), "a.txt\nnew/n.txt");
        assert_eq!(run(dir.path(), &["show", &format!("{c1}:a.txt")]), "b");
        assert_eq!(head(dir.path()).unwrap(), base, "HEAD unchanged");
        assert!(dirty(dir.path()).unwrap().is_empty(), "work tree and index unchanged");
        assert_eq!(remote_branch_head(dir.path(), "origin", "agentctl/fix-1-x").unwrap(), None);
        push_branch(dir.path(), "origin", "agentctl/fix-1-x").unwrap();
        assert_eq!(remote_branch_head(dir.path(), "origin", "agentctl/fix-1-x").unwrap().as_deref(), Some(c1.as_str()));
        // A second commit on the base (not on c1) diverges: git refuses the push.
        commit_files(dir.path(), &base, "agentctl/fix-1-x", &[("a.txt", Some(b"c\n"))], "two\n").unwrap();
        let err = push_branch(dir.path(), "origin", "agentctl/fix-1-x").unwrap_err();
        assert!(err.contains("rejected") || err.contains("non-fast-forward"), "{err}");
        assert_eq!(remote_branch_head(dir.path(), "origin", "agentctl/fix-1-x").unwrap().as_deref(), Some(c1.as_str()));
    }
}
