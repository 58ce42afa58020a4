//! Which files are reviewed: `include`/`exclude` globs from config plus default skips for lock
//! files, minified and generated files, binaries, submodules and pure renames. Every skipped
//! file carries a reason that the summary shows, so nothing is dropped silently.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::diff::{FileDiff, FileStatus, Hunk, LineKind};

/// Why a file was not reviewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Binary,
    Submodule,
    /// Renamed or copied with no content change (no hunks).
    PureRename,
    /// Deleted file: nothing on the new side to review.
    Deleted,
    LockFile,
    Minified,
    Generated,
    /// Matched an `exclude` glob (the glob is kept).
    Excluded(String),
    /// Matched no `include` glob.
    NotIncluded,
    /// Did not fit the token budget (filled in by the chunker, not the filter).
    OverBudget,
    /// The `index` line says the content changed, yet the section has no hunks (a truncated
    /// or crafted diff): nothing could be reviewed, so it is listed, never counted as reviewed.
    NoHunks,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Binary => f.write_str("binary file"),
            SkipReason::Submodule => f.write_str("submodule"),
            SkipReason::PureRename => f.write_str("renamed without changes"),
            SkipReason::Deleted => f.write_str("deleted file"),
            SkipReason::LockFile => f.write_str("lock file"),
            SkipReason::Minified => f.write_str("minified file"),
            SkipReason::Generated => f.write_str("generated file"),
            SkipReason::Excluded(glob) => write!(f, "excluded by `{glob}`"),
            SkipReason::NotIncluded => f.write_str("not matched by `include`"),
            SkipReason::OverBudget => f.write_str("over the token budget"),
            SkipReason::NoHunks => f.write_str("content changed but the diff shows no hunks"),
        }
    }
}

/// A file left out of the review, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// Compiled include/exclude globs (globset syntax, matched against the file's path).
///
/// Checks run in this order, the first hit wins: submodule, binary, pure rename, deleted
/// (nothing reviewable whatever the globs say), then `exclude` (before `include`, so an
/// exclude always wins over an include), then `include`, then the default skips for lock,
/// minified and generated files. Globs match [`FileDiff::path`] (the new path, or the old one
/// of a deleted file); `*` also crosses `/` (globset's default), so `*.lock` matches at any
/// depth. An empty include list includes everything.
#[derive(Debug, Clone)]
pub struct FileFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    /// The exclude globs as written, indexed like `exclude`, for [`SkipReason::Excluded`].
    exclude_src: Vec<String>,
}

/// Lock files by exact file name (package managers' defaults).
const LOCK_FILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Gemfile.lock",
    "go.sum",
    "composer.lock",
    "Pipfile.lock",
    "uv.lock",
    "bun.lockb",
    "bun.lock",
    "flake.lock",
    "mix.lock",
    "pubspec.lock",
    "Podfile.lock",
    "packages.lock.json",
    "gradle.lockfile",
    "Package.resolved",
];

/// A `.js`/`.css` file with an added line longer than this (characters) is taken as minified:
/// hand-written code keeps lines to a few hundred characters, and no reviewer (human or
/// model) can read a 5,000-character line.
pub const MINIFIED_LINE_CHARS: usize = 5_000;

/// File-name suffixes of generated files. Conservative on purpose: only names that tools
/// reserve for their output (protobuf, `.generated.`, source maps). `vendor/` and `dist/` are
/// NOT skipped by default — vendored code is sometimes patched on purpose; users add them to
/// `exclude` when they want.
const GENERATED_SUFFIXES: &[&str] =
    &[".pb.go", ".pb.cc", ".pb.h", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".js.map", ".css.map"];

impl FileFilter {
    /// Compiles the globs. Errors name the bad glob.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let include = if include.is_empty() { None } else { Some(build(include)?) };
        Ok(FileFilter { include, exclude: build(exclude)?, exclude_src: exclude.to_vec() })
    }

    /// `None` when the file is to be reviewed, else why not.
    pub fn check(&self, file: &FileDiff) -> Option<SkipReason> {
        if file.is_submodule {
            return Some(SkipReason::Submodule);
        }
        if file.is_binary {
            return Some(SkipReason::Binary);
        }
        if file.content_changed && file.hunks.is_empty() && file.status != FileStatus::Deleted {
            return Some(SkipReason::NoHunks);
        }
        if matches!(file.status, FileStatus::Renamed | FileStatus::Copied) && file.hunks.is_empty() {
            return Some(SkipReason::PureRename);
        }
        if file.status == FileStatus::Deleted {
            return Some(SkipReason::Deleted);
        }
        let path = file.path();
        if let Some(&i) = self.exclude.matches(path).first() {
            return Some(SkipReason::Excluded(self.exclude_src.get(i).cloned().unwrap_or_default()));
        }
        if let Some(include) = &self.include {
            if !include.is_match(path) {
                return Some(SkipReason::NotIncluded);
            }
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if is_lock_file(name) {
            return Some(SkipReason::LockFile);
        }
        if is_minified(name, file) {
            return Some(SkipReason::Minified);
        }
        if is_generated(name, file) {
            return Some(SkipReason::Generated);
        }
        None
    }
}

fn build(globs: &[String]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        set.add(Glob::new(g)?);
    }
    set.build()
}

fn is_lock_file(name: &str) -> bool {
    LOCK_FILES.contains(&name) || name.ends_with(".lock")
}

/// `*.min.js`/`*.min.css`/`*.min.mjs`, or a `.js`/`.mjs`/`.css` file with an added line
/// over [`MINIFIED_LINE_CHARS`].
fn is_minified(name: &str, file: &FileDiff) -> bool {
    if [".min.js", ".min.mjs", ".min.css"].iter().any(|s| name.ends_with(s)) {
        return true;
    }
    if ![".js", ".mjs", ".css"].iter().any(|s| name.ends_with(s)) {
        return false;
    }
    file.hunks.iter().flat_map(Hunk::lines_with_text).any(|(l, text)| {
        l.kind == LineKind::Added && text.len() > MINIFIED_LINE_CHARS && text.chars().count() > MINIFIED_LINE_CHARS
    })
}

/// A reserved generated-file name, `*.generated.*`, or the standard marker in the first five
/// lines of the new file: Go's `Code generated ... DO NOT EDIT.`
/// (<https://go.dev/s/generatedcode>) or `@generated` (used by many code generators).
fn is_generated(name: &str, file: &FileDiff) -> bool {
    if GENERATED_SUFFIXES.iter().any(|s| name.ends_with(s)) || name.contains(".generated.") {
        return true;
    }
    file.hunks
        .first()
        .filter(|h| h.new_start <= 1)
        .into_iter()
        .flat_map(Hunk::lines_with_text)
        .filter(|(l, _)| l.kind != LineKind::Removed)
        .take(5)
        .any(|(_, t)| (t.contains("Code generated") && t.contains("DO NOT EDIT")) || t.contains("@generated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::parse;

    fn file(path: &str, body: &str) -> FileDiff {
        let text = format!("diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n{body}");
        parse(text.as_bytes()).files.remove(0)
    }

    fn filter(include: &[&str], exclude: &[&str]) -> FileFilter {
        let v = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FileFilter::new(&v(include), &v(exclude)).expect("globs compile")
    }

    const HUNK: &str = "@@ -1 +1 @@\n-a\n+b\n";

    #[test]
    fn an_index_change_without_hunks_is_listed_not_reviewed() {
        // Issue #17: such a section was counted as reviewed although nothing of it was read.
        let f = filter(&[], &[]);
        let parsed = |text: &str| parse(text.as_bytes()).files.remove(0);
        let index_only = parsed("diff --git a/src/x.rs b/src/x.rs\nindex 1111111..2222222 100644\n");
        assert_eq!(f.check(&index_only), Some(SkipReason::NoHunks));
        assert_eq!(SkipReason::NoHunks.to_string(), "content changed but the diff shows no hunks");
        // Not for what legitimately has no hunks: a mode change, an empty new file, a pure
        // rename, a deletion, a binary file.
        let mode = parsed("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n");
        assert_eq!(f.check(&mode), None);
        let empty = parsed("diff --git a/e.txt b/e.txt\nnew file mode 100644\nindex 0000000..e69de29\n");
        assert_eq!(f.check(&empty), None);
        let rename = parsed("diff --git a/a.rs b/b.rs\nsimilarity index 100%\nrename from a.rs\nrename to b.rs\n");
        assert_eq!(f.check(&rename), Some(SkipReason::PureRename));
        let deleted = parsed("diff --git a/d.rs b/d.rs\ndeleted file mode 100644\nindex 3333333..0000000\n");
        assert_eq!(f.check(&deleted), Some(SkipReason::Deleted));
        let binary = parsed(
            "diff --git a/i.png b/i.png\nindex 4444444..5555555 100644\nBinary files a/i.png and b/i.png differ\n",
        );
        assert_eq!(f.check(&binary), Some(SkipReason::Binary));
        // With its hunk the same section is reviewed.
        let full = parsed("diff --git a/src/x.rs b/src/x.rs\nindex 1111111..2222222 100644\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(f.check(&full), None);
    }

    #[test]
    fn default_skips() {
        let f = filter(&["**"], &[]);
        assert_eq!(f.check(&file("src/main.rs", HUNK)), None);
        assert_eq!(f.check(&file("Cargo.lock", HUNK)), Some(SkipReason::LockFile));
        assert_eq!(f.check(&file("web/package-lock.json", HUNK)), Some(SkipReason::LockFile));
        assert_eq!(f.check(&file("go.sum", HUNK)), Some(SkipReason::LockFile));
        assert_eq!(f.check(&file("x/jquery.min.js", HUNK)), Some(SkipReason::Minified));
        assert_eq!(f.check(&file("api/v1/x.pb.go", HUNK)), Some(SkipReason::Generated));
        assert_eq!(f.check(&file("proto/x_pb2.py", HUNK)), Some(SkipReason::Generated));
        assert_eq!(
            f.check(&file("gen.go", "@@ -0,0 +1 @@\n+// Code generated by stringer. DO NOT EDIT.\n")),
            Some(SkipReason::Generated)
        );
        assert_eq!(f.check(&file("vendor/x/y.go", HUNK)), None);
        let long = format!("@@ -0,0 +1 @@\n+{}\n", "a;".repeat(3_000));
        assert_eq!(f.check(&file("app.js", &long)), Some(SkipReason::Minified));
        assert_eq!(f.check(&file("app.py", &long)), None);
    }

    #[test]
    fn exclude_before_include() {
        let f = filter(&["src/**"], &["**/*_test.rs", "docs/**"]);
        assert_eq!(f.check(&file("src/a_test.rs", HUNK)), Some(SkipReason::Excluded("**/*_test.rs".into())));
        assert_eq!(f.check(&file("docs/a.md", HUNK)), Some(SkipReason::Excluded("docs/**".into())));
        assert_eq!(f.check(&file("README.md", HUNK)), Some(SkipReason::NotIncluded));
        assert_eq!(f.check(&file("src/a.rs", HUNK)), None);
        assert!(FileFilter::new(&["a[".into()], &[]).is_err());
        assert_eq!(filter(&[], &[]).check(&file("any/where.rs", HUNK)), None);
    }

    #[test]
    fn corpus_05_and_08_skips() {
        let f = filter(&["**"], &[]);
        if let Some((_, bytes)) = crate::diff::parse::tests::corpus("05-renames-spaces") {
            let d = parse(&bytes);
            let reasons: Vec<_> = d.files.iter().filter_map(|x| f.check(x)).collect();
            let count = |r: SkipReason| reasons.iter().filter(|x| **x == r).count();
            assert_eq!(count(SkipReason::Submodule), 47);
            assert_eq!(count(SkipReason::PureRename), 33);
            assert_eq!(count(SkipReason::Binary), 1);
            assert_eq!(reasons.len(), 81);
        }
        if let Some((_, bytes)) = crate::diff::parse::tests::corpus("08-minified") {
            let d = parse(&bytes);
            let reasons: Vec<_> = d.files.iter().map(|x| (x.path(), f.check(x))).collect();
            assert_eq!(
                reasons,
                [("CHANGES.rst", None), ("coverage/htmlfiles/jquery.min.js", Some(SkipReason::Minified))]
            );
        }
    }
}
