//! Which repository paths a model-proposed edit may touch (issue #11, "Apply safely").
//!
//! Every path in a model answer is attacker-influenced (the issue body may ask for anything), so
//! a path is accepted only when it is a plain relative path inside the checkout: not empty, not
//! absolute, no `..`, no `.git` component (any case), no backslash or NUL or control
//! character, not matched by a protected glob, and with no existing component below the root
//! that is a symbolic link (checked with `symlink_metadata`, which does not follow links).
//!
//! Protected globs are matched case-insensitively (`.GitHub/Workflows/x.yml` is a workflow on a
//! case-insensitive checkout, and GitHub itself treats the folder name case-insensitively on
//! some clients) with `/` as a literal separator (`*` stays inside one folder, `**` crosses).

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Globs refused by default: workflow files (a fix must never change what CI runs with which
/// token) and agentctl's own config (which decides who may trigger runs and what they cost).
pub const DEFAULT_PROTECTED: [&str; 3] = [".github/workflows/**", ".github/agentctl.yml", ".github/agentctl.yaml"];

/// Why a path is refused; the text is fed back to the model and listed in the PR body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("empty path")]
    Empty,
    #[error("absolute path (paths are relative to the repository root)")]
    Absolute,
    #[error("path leaves the repository (`..` component)")]
    Traversal,
    #[error("path inside `.git/`")]
    GitDir,
    #[error("path contains a backslash, NUL or control character")]
    BadCharacter,
    #[error("protected path (matches `{0}`)")]
    Protected(String),
    #[error("path goes through a symbolic link (`{0}`)")]
    Symlink(String),
    #[error("path goes through `{0}`, which is not a folder")]
    NotAFolder(String),
}

/// The protected globs of a run: [`DEFAULT_PROTECTED`], the config file in use when it lies in
/// the repository, and config `fix.protected_paths`.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    globs: Vec<String>,
    set: GlobSet,
}

impl PathPolicy {
    /// The default globs plus `extra` (config `fix.protected_paths`, plus the config file's
    /// repository-relative path when it is not the default one).
    ///
    /// Errors: a glob that does not parse, with the glob and globset's reason.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let globs: Vec<String> = DEFAULT_PROTECTED.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect();
        let mut builder = GlobSetBuilder::new();
        for g in &globs {
            let glob = GlobBuilder::new(g.trim_start_matches("./"))
                .case_insensitive(true)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("protected path glob `{g}`: {e}"))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| format!("protected path globs: {e}"))?;
        Ok(Self { globs, set })
    }

    /// The globs in force, defaults first.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// `path` (as the model wrote it) normalised to `a/b/c` when it may be written under
    /// `root`, else the reason. `./` components are dropped. The file system is read (never
    /// written) to refuse symbolic links on the way.
    pub fn check(&self, root: &Path, path: &str) -> Result<String, PathRefusal> {
        let normal = normalize(path)?;
        if let Some(i) = self.set.matches(&normal).first() {
            return Err(PathRefusal::Protected(self.globs[*i].clone()));
        }
        // Every existing prefix below the root, the file itself included, must be a real
        // folder (or, for the last one, anything but a symbolic link).
        let parts: Vec<&str> = normal.split('/').collect();
        let mut at = PathBuf::from(root);
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            let Ok(meta) = std::fs::symlink_metadata(&at) else { break };
            let shown = parts[..=i].join("/");
            if meta.file_type().is_symlink() {
                return Err(PathRefusal::Symlink(shown));
            }
            if i + 1 < parts.len() && !meta.is_dir() {
                return Err(PathRefusal::NotAFolder(shown));
            }
        }
        Ok(normal)
    }
}

/// `path` as `a/b/c`, or why it can never be a repository path (whatever the policy).
fn normalize(path: &str) -> Result<String, PathRefusal> {
    if path.trim().is_empty() {
        return Err(PathRefusal::Empty);
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathRefusal::BadCharacter);
    }
    let mut parts = vec![];
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str().ok_or(PathRefusal::BadCharacter)?;
                if s.eq_ignore_ascii_case(".git") {
                    return Err(PathRefusal::GitDir);
                }
                parts.push(s);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(PathRefusal::Traversal),
            Component::RootDir | Component::Prefix(_) => return Err(PathRefusal::Absolute),
        }
    }
    if parts.is_empty() {
        return Err(PathRefusal::Empty);
    }
    Ok(parts.join("/"))
}
