//! Reading a diff from a local source: a file, stdin (`-`), or `git diff REF...HEAD` in the
//! checkout. `review` and `cost estimate` both run git through [`git_diff`]; `review` reads files
//! and stdin with the `review.max_diff_bytes` cap of [`super::limit`]. The API source (a PR's
//! `.diff`) is [`crate::github`]'s.

use std::io::Read;

/// A diff that could not be read. Exit 2: the input the user named is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DiffSourceError {
    /// The file (or stdin) could not be read.
    #[error("cannot read the diff from {from}")]
    Read {
        from: String,
        #[source]
        source: std::io::Error,
    },
    /// `git diff` failed or could not be started.
    #[error("git diff {base}...HEAD failed: {message}\nhelp: run inside a git checkout that has {base} (in Actions: `fetch-depth: 0`)")]
    Git { base: String, message: String },
    /// The ref looks like an option (`--output=…`): never handed to git.
    #[error("--base `{0}` is not a git ref")]
    BadRef(String),
}

/// The bytes of `file` (`-` for stdin).
pub fn read_file(file: &str) -> Result<Vec<u8>, DiffSourceError> {
    let mut buf = Vec::new();
    let result = if file == "-" {
        std::io::stdin().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut buf)).map(|_| ())
    };
    let from = if file == "-" { "stdin".to_owned() } else { file.to_owned() };
    result.map(|()| buf).map_err(|source| DiffSourceError::Read { from, source })
}

/// `git diff --no-color --no-ext-diff -M REF...HEAD` in the current directory.
pub fn git_diff(base: &str) -> Result<Vec<u8>, DiffSourceError> {
    if base.starts_with('-') {
        return Err(DiffSourceError::BadRef(base.to_owned()));
    }
    let out = std::process::Command::new("git")
        .args(["diff", "--no-color", "--no-ext-diff", "-M", &format!("{base}...HEAD"), "--"])
        .output()
        .map_err(|e| DiffSourceError::Git { base: base.to_owned(), message: e.to_string() })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(DiffSourceError::Git { base: base.to_owned(), message });
    }
    Ok(out.stdout)
}
