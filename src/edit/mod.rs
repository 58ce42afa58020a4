//! Applying model-proposed edits to a checkout safely (issue #11, SPEC §3.2 "Apply safely").
//!
//! A model answer ([`EditSet`]) names SEARCH/REPLACE edits (`{path, search, replace}`), whole-file
//! rewrites, new files and deletions. [`plan`] turns it into file changes in memory — reading the
//! checkout, never writing it — and lists every entry it refused with a precise reason that is
//! fed back to the model in the next round and shown in the PR body; [`write`] then puts the
//! changes on disk all at once; [`unified_diff`] renders them.
//!
//! Rules (decisions where the issue is silent are marked *decision*):
//! - Paths: [`paths::PathPolicy::check`] (inside the root, no `..`, not absolute, no symbolic
//!   link on the way, no `.git/`, no protected glob). Files the model did not name are never
//!   touched.
//! - A search must match exactly once in the file. Missing or ambiguous (with the lines where
//!   it was found) refuses the edit. When the exact text is not there, a match that ignores
//!   only each line's *leading* whitespace is accepted if it is unique; the replacement is
//!   re-indented by the same difference and the match is reported in [`Applied::notes`].
//! - *Decision*: a file changes only when every edit of it applies (edits of one file often
//!   depend on each other); the other edits of that file are refused as "not applied". Other
//!   files still change: a refused protected path must not block the rest of a fix.
//! - *Decision*: a path may appear in one kind of entry only (edits, a rewrite, a new file or a
//!   deletion); a path named in two kinds is refused in all of them.
//! - Line endings and the trailing newline of an existing file are kept: a file whose every
//!   line ends in CRLF is edited as LF text and written back with CRLF; the result ends in a
//!   newline exactly when the original did. New files are written as given.
//! - Files must be UTF-8 text to be edited or rewritten (a binary file is refused).
//! - *Decision*: a whole-file rewrite of an existing file larger than
//!   [`Limits::whole_file_max_bytes`] (default 8 KiB, `fix.whole_file_max_bytes`) is refused,
//!   with a reason that asks for SEARCH/REPLACE edits (fed back, so the next round can use them):
//!   a model retyping a large file drops or alters lines it was not asked to change, and pays
//!   output tokens for every unchanged line. The size is the file's current size on disk.
//!   `fix.edit_format: whole` lifts the limit (the model is told to rewrite whole files).
//! - [`write`] is all or nothing: every new content is first written to a temporary file beside
//!   its target, then renamed over it; a failure removes the temporary files, and a failed
//!   rename restores the files already replaced, so a round never leaves half its changes.

pub mod checkout;
pub mod context;
pub mod outline;
pub mod paths;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use paths::{PathPolicy, PathRefusal, DEFAULT_PROTECTED};

/// One SEARCH/REPLACE edit: replace the one occurrence of `search` in `path` by `replace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchReplace {
    pub path: String,
    pub search: String,
    pub replace: String,
}

/// A file's whole content: a new file, or a whole-file rewrite of an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub path: String,
    pub content: String,
}

/// The edits of one model answer (`schemas/fix-output.schema.json` without `explanation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EditSet {
    pub edits: Vec<SearchReplace>,
    /// Whole-file rewrites of existing files (`fix.edit_format: whole`, or small files).
    pub rewrites: Vec<FileContent>,
    pub new_files: Vec<FileContent>,
    pub deletions: Vec<String>,
}

impl EditSet {
    /// Whether the answer proposes nothing.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.rewrites.is_empty() && self.new_files.is_empty() && self.deletions.is_empty()
    }
}

/// One file's change: `before` is `None` for a new file, `after` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Repository-relative, `/`-separated.
    pub path: String,
    pub before: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
}

/// An entry of the answer that was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// The path as the model wrote it.
    pub path: String,
    /// Which entry: `edit 3`, `rewrite`, `new file`, `deletion`.
    pub entry: String,
    /// Why, in a sentence the model can act on.
    pub reason: String,
    /// `true` for a refusal of the path itself (protected, outside the root, a symbolic
    /// link): asking again cannot help; `false` for a search that did not match.
    pub policy: bool,
}

/// What [`plan`] made of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changed files, sorted by path; files whose content would not change are left out.
    pub changes: Vec<FileChange>,
    pub refused: Vec<Refused>,
    /// Matches that needed the leading-indentation tolerance, and edits that changed nothing.
    pub notes: Vec<String>,
}

/// Why one edit of a file did not apply.
struct EditFailure(String);

/// Limits on what one answer may do besides the path rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// A `rewrites` entry of an existing file larger than this many bytes (its current size on
    /// disk) is refused with a reason asking for `edits` instead; `None`: no limit (config
    /// `fix.edit_format: whole`). Config `fix.whole_file_max_bytes`.
    pub whole_file_max_bytes: Option<u64>,
}

impl Limits {
    /// The limits `fix` sets: no rewrite limit with `edit_format: whole`.
    pub fn from_config(fix: &crate::config::FixConfig) -> Limits {
        Limits {
            whole_file_max_bytes: (fix.edit_format != crate::config::EditFormat::Whole)
                .then_some(fix.whole_file_max_bytes),
        }
    }
}

/// Plans `set` against the checkout at `root` under `policy`: every change in memory, every
/// refusal with its reason. Reads the file system, never writes it. No [`Limits`]; see
/// [`plan_with`].
pub fn plan(root: &Path, set: &EditSet, policy: &PathPolicy) -> Applied {
    plan_with(root, set, policy, Limits::default())
}

/// [`plan`] under `limits`.
pub fn plan_with(root: &Path, set: &EditSet, policy: &PathPolicy, limits: Limits) -> Applied {
    let mut out = Applied::default();
    // Path → the kinds of entries that name it, to refuse a path named twice.
    let mut kinds: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut checked: BTreeMap<&str, Result<String, PathRefusal>> = BTreeMap::new();
    let all = set
        .edits
        .iter()
        .map(|e| (e.path.as_str(), "edit"))
        .chain(set.rewrites.iter().map(|f| (f.path.as_str(), "rewrite")))
        .chain(set.new_files.iter().map(|f| (f.path.as_str(), "new file")))
        .chain(set.deletions.iter().map(|p| (p.as_str(), "deletion")));
    for (path, kind) in all {
        let result = checked.entry(path).or_insert_with(|| policy.check(root, path));
        if let Ok(normal) = result {
            kinds.entry(normal.clone()).or_default().insert(kind);
        }
    }
    // Edits may name a file many times; the other kinds once per path (counted below).
    let mut once: BTreeMap<String, usize> = BTreeMap::new();
    for p in set.rewrites.iter().map(|f| &f.path).chain(set.new_files.iter().map(|f| &f.path)).chain(&set.deletions) {
        if let Some(Ok(normal)) = checked.get(p.as_str()) {
            *once.entry(normal.clone()).or_default() += 1;
        }
    }
    let twice =
        |normal: &str| kinds.get(normal).is_some_and(|k| k.len() > 1) || once.get(normal).is_some_and(|n| *n > 1);
    let refuse = |out: &mut Applied, path: &str, entry: String, reason: String, policy: bool| {
        out.refused.push(Refused { path: path.to_string(), entry, reason, policy });
    };
    // Resolves a path, refusing it (once per entry) when the policy or a double naming says so.
    let resolve = |path: &str| -> Result<String, (String, bool)> {
        match checked.get(path) {
            Some(Ok(normal)) if twice(normal) => {
                let named: Vec<&str> = kinds[normal].iter().copied().collect();
                Err((
                    format!("`{normal}` is named more than once ({}); name each file in one entry", named.join(", ")),
                    false,
                ))
            }
            Some(Ok(normal)) => Ok(normal.clone()),
            Some(Err(why)) => Err((why.to_string(), true)),
            None => Err(("internal: path not checked".into(), true)),
        }
    };

    // Search/replace edits, grouped by file in the order given.
    let mut by_file: BTreeMap<String, Vec<(usize, &SearchReplace)>> = BTreeMap::new();
    for (i, e) in set.edits.iter().enumerate() {
        match resolve(&e.path) {
            Ok(normal) => by_file.entry(normal).or_default().push((i, e)),
            Err((why, policy)) => refuse(&mut out, &e.path, format!("edit {}", i + 1), why, policy),
        }
    }
    for (path, edits) in by_file {
        let before = match read_text(root, &path) {
            Ok(b) => b,
            Err(why) => {
                for (i, e) in &edits {
                    refuse(&mut out, &e.path, format!("edit {}", i + 1), why.clone(), false);
                }
                continue;
            }
        };
        let text = TextFile::decode(&before.1);
        let mut body = text.body.clone();
        let mut failed: Vec<(usize, String)> = vec![];
        let mut notes = vec![];
        for (i, e) in &edits {
            match apply_one(&body, &e.search, &e.replace) {
                Ok((new, note)) => {
                    if let Some(n) = note {
                        notes.push(format!("{path}: edit {}: {n}", i + 1));
                    }
                    if new == body {
                        notes.push(format!("{path}: edit {}: changes nothing", i + 1));
                    }
                    body = new;
                }
                Err(EditFailure(why)) => failed.push((*i, why)),
            }
        }
        if !failed.is_empty() {
            let failed_ids: BTreeSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            for (i, why) in failed {
                refuse(&mut out, &path, format!("edit {}", i + 1), why, false);
            }
            for (i, _) in edits.iter().filter(|(i, _)| !failed_ids.contains(i)) {
                let why = format!(
                    "not applied: another edit of `{path}` failed, and a file changes only when all its edits apply"
                );
                refuse(&mut out, &path, format!("edit {}", i + 1), why, false);
            }
            continue;
        }
        out.notes.extend(notes);
        let after = text.encode(&body);
        if after != before.1 {
            out.changes.push(FileChange { path, before: Some(before.1), after: Some(after) });
        }
    }

    for f in &set.rewrites {
        let normal = match resolve(&f.path) {
            Ok(n) => n,
            Err((why, policy)) => {
                refuse(&mut out, &f.path, "rewrite".into(), why, policy);
                continue;
            }
        };
        match read_text(root, &normal) {
            Ok((_, before)) if limits.whole_file_max_bytes.is_some_and(|max| before.len() as u64 > max) => {
                let max = limits.whole_file_max_bytes.unwrap_or_default();
                let why = format!(
                    "`{normal}` is {} bytes, over the {max}-byte limit for a whole-file rewrite \
                     (fix.whole_file_max_bytes); change it with SEARCH/REPLACE `edits` of the lines that change",
                    before.len()
                );
                refuse(&mut out, &f.path, "rewrite".into(), why, false);
            }
            Ok((_, before)) => {
                let text = TextFile::decode(&before);
                let after = text.encode(&f.content.replace("\r\n", "\n"));
                if after != before {
                    out.changes.push(FileChange { path: normal, before: Some(before), after: Some(after) });
                }
            }
            Err(why) => {
                refuse(&mut out, &f.path, "rewrite".into(), format!("{why}; use new_files for a new file"), false)
            }
        }
    }
    for f in &set.new_files {
        let normal = match resolve(&f.path) {
            Ok(n) => n,
            Err((why, policy)) => {
                refuse(&mut out, &f.path, "new file".into(), why, policy);
                continue;
            }
        };
        if std::fs::symlink_metadata(root.join(&normal)).is_ok() {
            let why = format!("`{normal}` exists already; change it with an edit (or a rewrite)");
            refuse(&mut out, &f.path, "new file".into(), why, false);
            continue;
        }
        out.changes.push(FileChange { path: normal, before: None, after: Some(f.content.clone().into_bytes()) });
    }
    for p in &set.deletions {
        let normal = match resolve(p) {
            Ok(n) => n,
            Err((why, policy)) => {
                refuse(&mut out, p, "deletion".into(), why, policy);
                continue;
            }
        };
        match std::fs::symlink_metadata(root.join(&normal)) {
            Ok(m) if m.is_file() => match std::fs::read(root.join(&normal)) {
                Ok(before) => out.changes.push(FileChange { path: normal, before: Some(before), after: None }),
                Err(e) => refuse(&mut out, p, "deletion".into(), format!("cannot read `{normal}`: {e}"), false),
            },
            Ok(_) => refuse(&mut out, p, "deletion".into(), format!("`{normal}` is not a regular file"), false),
            Err(_) => refuse(&mut out, p, "deletion".into(), format!("`{normal}` does not exist"), false),
        }
    }
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// An existing regular file's bytes, which must be UTF-8 text: `(path, bytes)`, or why not.
fn read_text(root: &Path, path: &str) -> Result<(String, Vec<u8>), String> {
    let full = root.join(path);
    match std::fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("`{path}` is not a regular file")),
        Err(_) => return Err(format!("`{path}` does not exist")),
    }
    let bytes = std::fs::read(&full).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    if std::str::from_utf8(&bytes).is_err() {
        return Err(format!("`{path}` is not UTF-8 text"));
    }
    Ok((path.to_string(), bytes))
}

/// A text file's content as LF text plus what is needed to write it back the same way.
#[derive(Debug, Clone)]
struct TextFile {
    /// Every line ended in CRLF (and there was at least one).
    crlf: bool,
    /// The content ended with a newline.
    trailing_newline: bool,
    /// The content with CRLF turned into LF when `crlf`.
    body: String,
}

impl TextFile {
    /// `bytes` must be UTF-8 (checked by [`read_text`]); invalid bytes become U+FFFD.
    fn decode(bytes: &[u8]) -> Self {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let lf = raw.matches('\n').count();
        let crlf = lf > 0 && raw.matches("\r\n").count() == lf;
        let body = if crlf { raw.replace("\r\n", "\n") } else { raw };
        Self { crlf, trailing_newline: body.ends_with('\n'), body }
    }

    /// `body` (LF text) written back with this file's line endings and trailing-newline state.
    fn encode(&self, body: &str) -> Vec<u8> {
        let mut body = body.to_string();
        if self.trailing_newline && !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        if !self.trailing_newline {
            while body.ends_with('\n') {
                body.pop();
            }
        }
        if self.crlf {
            body = body.replace('\n', "\r\n");
        }
        body.into_bytes()
    }
}

/// Applies one edit to LF text: the new text and a note when the indentation tolerance was
/// needed, or why it cannot apply.
fn apply_one(text: &str, search: &str, replace: &str) -> Result<(String, Option<String>), EditFailure> {
    let search = search.replace("\r\n", "\n");
    let replace = replace.replace("\r\n", "\n");
    if search.trim().is_empty() {
        return Err(EditFailure(
            "empty search text: quote the exact lines to replace (use new_files for a new file)".into(),
        ));
    }
    let found: Vec<usize> = text.match_indices(&search).map(|(at, _)| at).collect();
    match found.len() {
        1 => {
            let at = found[0];
            return Ok((format!("{}{}{}", &text[..at], replace, &text[at + search.len()..]), None));
        }
        0 => {}
        n => {
            let lines: Vec<String> = found.iter().take(5).map(|&at| line_of(text, at).to_string()).collect();
            return Err(EditFailure(format!(
                "ambiguous: the search text occurs {n} times (at lines {}); include more surrounding lines so it matches once",
                lines.join(", ")
            )));
        }
    }
    // Tolerant match: whole lines, equal once leading whitespace is ignored.
    let want: Vec<&str> = search.strip_suffix('\n').unwrap_or(&search).split('\n').collect();
    let starts = line_starts(text);
    let have: Vec<&str> = starts
        .iter()
        .map(|&s| {
            let end = text[s..].find('\n').map_or(text.len(), |e| s + e);
            &text[s..end]
        })
        .collect();
    let matches: Vec<usize> = (0..have.len().saturating_sub(want.len() - 1))
        .filter(|&i| want.iter().zip(&have[i..]).all(|(w, h)| w.trim_start() == h.trim_start()))
        .collect();
    match matches.len() {
        0 => {
            let first = want.iter().find(|l| !l.trim().is_empty()).map_or("", |l| l.trim());
            let hint: Vec<String> = have
                .iter()
                .enumerate()
                .filter(|(_, h)| !first.is_empty() && h.trim() == first)
                .take(3)
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(" (its first line appears at line {}, but the following lines differ)", hint.join(", "))
            };
            Err(EditFailure(format!("search text not found{hint}; copy the lines exactly as they are in the file")))
        }
        1 => {
            let i = matches[0];
            let (actual, wanted) = indent_pair(&have[i..i + want.len()], &want);
            let reindented: Vec<String> = replace
                .strip_suffix('\n')
                .unwrap_or(&replace)
                .split('\n')
                .map(|l| reindent(l, &wanted, &actual))
                .collect();
            let start = starts[i];
            let end_line = i + want.len();
            let end = starts.get(end_line).copied().unwrap_or(text.len());
            let ends_nl = text[..end].ends_with('\n');
            let mut new_block = reindented.join("\n");
            if ends_nl && !replace.is_empty() {
                new_block.push('\n');
            }
            let note =
                format!("matched at line {} ignoring leading indentation; the replacement was re-indented", i + 1);
            Ok((format!("{}{}{}", &text[..start], new_block, &text[end..]), Some(note)))
        }
        n => {
            let lines: Vec<String> = matches.iter().take(5).map(|i| (i + 1).to_string()).collect();
            Err(EditFailure(format!(
                "search text not found exactly; ignoring indentation it occurs {n} times (at lines {}); copy the lines exactly",
                lines.join(", ")
            )))
        }
    }
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// Byte offsets where each line starts (a final empty line after a trailing newline excluded).
fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1).filter(|&i| i < text.len()));
    if text.is_empty() {
        starts.clear();
    }
    starts
}

/// The leading whitespace of the first non-blank line in the file (`actual`) and in the search
/// (`wanted`).
fn indent_pair(have: &[&str], want: &[&str]) -> (String, String) {
    let lead = |l: &str| l[..l.len() - l.trim_start().len()].to_string();
    match want.iter().position(|l| !l.trim().is_empty()) {
        Some(i) => (lead(have[i]), lead(want[i])),
        None => (String::new(), String::new()),
    }
}

/// `line` re-indented by the difference between the search's indentation (`wanted`) and the
/// file's (`actual`): the file's extra leading whitespace is added to every non-blank line, or
/// the model's surplus taken off where a line starts with it; when neither indentation extends
/// the other (tabs against spaces), a line starting with `wanted` gets `actual` instead.
fn reindent(line: &str, wanted: &str, actual: &str) -> String {
    if line.trim().is_empty() {
        return line.to_string();
    }
    if let Some(extra) = actual.strip_suffix(wanted) {
        return format!("{extra}{line}");
    }
    if let Some(surplus) = wanted.strip_suffix(actual) {
        return line.strip_prefix(surplus).unwrap_or(line).to_string();
    }
    match line.strip_prefix(wanted) {
        Some(rest) => format!("{actual}{rest}"),
        None => line.to_string(),
    }
}

/// Why [`write`] failed; nothing of the round is left on disk.
#[derive(Debug, thiserror::Error)]
#[error("cannot write `{path}`: {source}")]
pub struct WriteError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Writes `changes` under `root`, all or nothing (see the module doc). New files get mode
/// 0644 (umask applies); a changed file keeps its permissions.
///
/// Errors: [`WriteError`] naming the first path that failed; every change made before it is
/// undone.
pub fn write(root: &Path, changes: &[FileChange]) -> Result<(), WriteError> {
    let err = |path: &str, source: std::io::Error| WriteError { path: path.to_string(), source };
    // Stage: every new content in a temporary file beside its target.
    let mut staged: Vec<(&FileChange, Option<tempfile::NamedTempFile>)> = vec![];
    let mut made_dirs: Vec<std::path::PathBuf> = vec![];
    let cleanup = |dirs: &[std::path::PathBuf]| {
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    };
    for c in changes {
        let target = root.join(&c.path);
        let Some(after) = &c.after else {
            staged.push((c, None));
            continue;
        };
        let parent = target.parent().unwrap_or(root).to_path_buf();
        let mut missing = vec![];
        let mut p = parent.clone();
        while !p.exists() && p.starts_with(root) && p != root {
            missing.push(p.clone());
            match p.parent() {
                Some(up) => p = up.to_path_buf(),
                None => break,
            }
        }
        for d in missing.iter().rev() {
            if let Err(e) = std::fs::create_dir(d) {
                cleanup(&made_dirs);
                return Err(err(&c.path, e));
            }
            made_dirs.push(d.clone());
        }
        let tmp = tempfile::Builder::new().prefix(".agentctl-fix-").tempfile_in(&parent).and_then(|mut t| {
            t.write_all(after)?;
            t.flush()?;
            if let Ok(meta) = std::fs::metadata(&target) {
                std::fs::set_permissions(t.path(), meta.permissions())?;
            }
            Ok(t)
        });
        match tmp {
            Ok(t) => staged.push((c, Some(t))),
            Err(e) => {
                drop(staged);
                cleanup(&made_dirs);
                return Err(err(&c.path, e));
            }
        }
    }
    // Commit: renames and removals; on a failure, put back what was done.
    let mut done: Vec<&FileChange> = vec![];
    for (c, tmp) in staged {
        let target = root.join(&c.path);
        let result = match tmp {
            Some(t) => t.persist(&target).map(|_| ()).map_err(|e| e.error),
            None => std::fs::remove_file(&target),
        };
        if let Err(e) = result {
            for d in done.iter().rev() {
                let t = root.join(&d.path);
                let _ = match &d.before {
                    Some(b) => std::fs::write(&t, b),
                    None => std::fs::remove_file(&t),
                };
            }
            cleanup(&made_dirs);
            return Err(err(&c.path, e));
        }
        done.push(c);
    }
    Ok(())
}

/// The unified diff of `changes` (`git diff` style headers, 3 lines of context, `/dev/null`
/// for created and deleted files, "\ No newline at end of file" where it applies).
pub fn unified_diff(changes: &[FileChange]) -> String {
    let mut out = String::new();
    for c in changes {
        let old = c.before.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let new = c.after.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        out.push_str(&format!("diff --git a/{0} b/{0}\n", c.path));
        let (a, b) = match (&c.before, &c.after) {
            (None, _) => {
                out.push_str("new file mode 100644\n");
                ("/dev/null".to_string(), format!("b/{}", c.path))
            }
            (_, None) => {
                out.push_str("deleted file mode 100644\n");
                (format!("a/{}", c.path), "/dev/null".to_string())
            }
            _ => (format!("a/{}", c.path), format!("b/{}", c.path)),
        };
        let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
        out.push_str(&diff.unified_diff().context_radius(3).header(&a, &b).to_string());
    }
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
