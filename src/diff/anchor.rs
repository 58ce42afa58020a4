//! Which lines of a diff GitHub accepts a review comment on, and where a finding lands.
//!
//! GitHub's rule (<https://docs.github.com/en/rest/pulls/comments#create-a-review-comment-for-a-pull-request>):
//! `line` must be a line shown in the diff on the chosen `side` — on `RIGHT` an added or context
//! line (new-file numbering), on `LEFT` a removed or context line (old-file numbering). A
//! multi-line comment's `start_line` must be on the same side and in the same hunk as `line`.
//! Anything else is answered with 422, so we place such findings in a file-level comment or the
//! review body instead.

use std::collections::HashMap;

use crate::diff::Diff;
use crate::findings::{Finding, Side};

/// Where a finding can be shown, by the diff alone (the review then caps inline comments:
/// `report::Placement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// An inline review comment GitHub will accept: `start_line` (if any) and `line` are
    /// commentable on `side`, in one hunk, with `start_line < line`.
    Inline { path: String, line: u32, start_line: Option<u32>, side: Side },
    /// The path is in the diff but the lines are not commentable: listed under the file in the
    /// review body.
    File { path: String },
    /// The path is not in the diff at all: listed in the review body's general section.
    Body,
}

/// Index of commentable lines per (path, side), built once per diff.
///
/// Within one hunk the lines shown on a side are consecutive numbers (context and added lines
/// on RIGHT, context and removed lines on LEFT), so each hunk contributes one inclusive range
/// per side; lookups are a binary search over a file's ranges sorted by start.
///
/// Paths: a renamed file is found by its new path on both sides and also by its old path on
/// LEFT (the old path names the base version, which is what LEFT line numbers refer to); its
/// old path on RIGHT is not commentable, since the head has no such file. Anchors always
/// carry the file's current path ([`crate::diff::FileDiff::path`]), which is what GitHub's
/// review comment API expects as `path`.
#[derive(Debug, Clone, Default)]
pub struct AnchorIndex {
    /// New path (or old path of a deleted file) → file slot.
    by_new: HashMap<String, usize>,
    /// Old path of a renamed, copied, modified or deleted file → file slot.
    by_old: HashMap<String, usize>,
    files: Vec<FileAnchors>,
}

/// One file's commentable ranges.
#[derive(Debug, Clone, Default)]
struct FileAnchors {
    /// The path placements name (the new path, or the old one for a deletion).
    path: String,
    /// `(first, last, hunk)` inclusive line ranges on LEFT, sorted by `first`.
    left: Vec<(u32, u32, usize)>,
    /// Same for RIGHT.
    right: Vec<(u32, u32, usize)>,
}

impl FileAnchors {
    fn ranges(&self, side: Side) -> &[(u32, u32, usize)] {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    fn hunk_of(&self, side: Side, line: u32) -> Option<usize> {
        let ranges = self.ranges(side);
        // Last range starting at or before `line`; ranges never overlap in a well-formed diff.
        let i = ranges.partition_point(|r| r.0 <= line).checked_sub(1)?;
        let (first, last, hunk) = ranges[i];
        (first <= line && line <= last).then_some(hunk)
    }
}

impl AnchorIndex {
    /// Builds the index from a parsed diff. Binary files and files without hunks have no
    /// commentable line.
    pub fn new(diff: &Diff) -> Self {
        let mut index = AnchorIndex::default();
        for file in &diff.files {
            let mut anchors = FileAnchors { path: file.path().to_owned(), ..FileAnchors::default() };
            if !file.is_binary {
                for (h, hunk) in file.hunks.iter().enumerate() {
                    if let Some(r) = side_range(hunk.lines.iter().filter_map(|l| l.old_line), h) {
                        anchors.left.push(r);
                    }
                    if let Some(r) = side_range(hunk.lines.iter().filter_map(|l| l.new_line), h) {
                        anchors.right.push(r);
                    }
                }
            }
            anchors.left.sort_unstable();
            anchors.right.sort_unstable();
            let slot = index.files.len();
            // First section wins on a repeated path (only in a malformed diff).
            index.by_new.entry(anchors.path.clone()).or_insert(slot);
            if let Some(old) = &file.old_path {
                index.by_old.entry(old.clone()).or_insert(slot);
            }
            index.files.push(anchors);
        }
        index
    }

    /// The file a finding on `side` of `path` refers to (see the type's doc for the rename
    /// rule): LEFT prefers the old path, since LEFT numbers are base-version numbers.
    fn file(&self, path: &str, side: Side) -> Option<&FileAnchors> {
        let slot = match side {
            Side::Right => self.by_new.get(path),
            Side::Left => self.by_old.get(path).or_else(|| self.by_new.get(path)),
        }?;
        self.files.get(*slot)
    }

    /// The hunk index (0-based, within the file) that holds `line` on `side` of `path`, if
    /// that line is commentable.
    pub fn hunk_of(&self, path: &str, side: Side, line: u32) -> Option<usize> {
        self.file(path, side)?.hunk_of(side, line)
    }

    /// Whether `path` is in the diff under its new or old name.
    pub fn has_path(&self, path: &str) -> bool {
        self.by_new.contains_key(path) || self.by_old.contains_key(path)
    }

    /// Places a finding: inline when GitHub will accept it (a `start_line` in another hunk, or
    /// not commentable, is dropped to a single-line comment on `line` when `line` itself is
    /// commentable), else [`Anchor::File`] or [`Anchor::Body`].
    ///
    /// The placement's `path` is the file's current path even when the finding named the old
    /// path of a renamed file. A `start_line` equal to `line` becomes a single-line comment.
    pub fn place(&self, finding: &Finding) -> Anchor {
        let side = finding.side;
        let Some(file) = self.file(&finding.path, side) else {
            return match self.canonical_path(&finding.path) {
                Some(path) => Anchor::File { path },
                None => Anchor::Body,
            };
        };
        let Some(hunk) = file.hunk_of(side, finding.line) else {
            return Anchor::File { path: file.path.clone() };
        };
        let start_line = finding.start_line.filter(|&s| s < finding.line && file.hunk_of(side, s) == Some(hunk));
        Anchor::Inline { path: file.path.clone(), line: finding.line, start_line, side }
    }

    /// The current path of the file known as `path` (new or old name).
    fn canonical_path(&self, path: &str) -> Option<String> {
        let slot = self.by_new.get(path).or_else(|| self.by_old.get(path))?;
        self.files.get(*slot).map(|f| f.path.clone())
    }
}

/// The inclusive range covered by a hunk's line numbers on one side (consecutive by
/// construction), tagged with the hunk index; `None` when the side shows no line.
fn side_range(mut numbers: impl Iterator<Item = u32>, hunk: usize) -> Option<(u32, u32, usize)> {
    let first = numbers.next()?;
    let last = numbers.last().unwrap_or(first);
    Some((first, last.max(first), hunk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::parse;
    use crate::findings::Severity;

    const DIFF: &[u8] = b"diff --git a/src/lib.rs b/src/lib.rs
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -10,4 +10,5 @@ fn a()
 c10
-r11
+a11
+a12
 c12
 c13
@@ -40,3 +41,2 @@
 c40
-r41
 c42
diff --git a/old name.rs b/new name.rs
similarity index 90%
rename from old name.rs
rename to new name.rs
--- a/old name.rs
+++ b/new name.rs
@@ -1,2 +1,2 @@
-x
+y
 z
diff --git a/img.png b/img.png
Binary files a/img.png and b/img.png differ
";

    fn finding(path: &str, side: Side, start_line: Option<u32>, line: u32) -> Finding {
        Finding {
            path: path.to_owned(),
            line,
            start_line,
            side,
            severity: Severity::Low,
            category: "test".into(),
            title: "t".into(),
            body: "b".into(),
            suggestion: None,
            origin: None,
        }
    }

    #[test]
    fn commentable_sets_per_side() {
        let idx = AnchorIndex::new(&parse(DIFF));
        let right: Vec<u32> = (1..60).filter(|&n| idx.hunk_of("src/lib.rs", Side::Right, n).is_some()).collect();
        assert_eq!(right, [10, 11, 12, 13, 14, 41, 42]);
        let left: Vec<u32> = (1..60).filter(|&n| idx.hunk_of("src/lib.rs", Side::Left, n).is_some()).collect();
        assert_eq!(left, [10, 11, 12, 13, 40, 41, 42]);
        assert_eq!(idx.hunk_of("src/lib.rs", Side::Right, 41), Some(1));
        assert_eq!(idx.hunk_of("src/lib.rs", Side::Left, 13), Some(0));
        assert_eq!(idx.hunk_of("img.png", Side::Right, 1), None);
        assert!(idx.has_path("img.png") && idx.has_path("old name.rs") && !idx.has_path("nope.rs"));
    }

    #[test]
    fn start_line_in_another_hunk_is_dropped() {
        let idx = AnchorIndex::new(&parse(DIFF));
        let p = |s, l| idx.place(&finding("src/lib.rs", Side::Right, s, l));
        let inline =
            |start_line, line| Anchor::Inline { path: "src/lib.rs".into(), line, start_line, side: Side::Right };
        assert_eq!(p(Some(10), 14), inline(Some(10), 14));
        assert_eq!(p(Some(12), 41), inline(None, 41));
        assert_eq!(p(Some(5), 12), inline(None, 12));
        assert_eq!(p(Some(14), 14), inline(None, 14));
        assert_eq!(p(Some(13), 11), inline(None, 11));
        assert_eq!(p(None, 30), Anchor::File { path: "src/lib.rs".into() });
        let left = idx.place(&finding("src/lib.rs", Side::Left, Some(40), 42));
        assert_eq!(
            left,
            Anchor::Inline { path: "src/lib.rs".into(), line: 42, start_line: Some(40), side: Side::Left }
        );
    }

    #[test]
    fn unknown_path_goes_to_body() {
        let idx = AnchorIndex::new(&parse(DIFF));
        assert_eq!(idx.place(&finding("src/other.rs", Side::Right, None, 1)), Anchor::Body);
        assert_eq!(idx.place(&finding("img.png", Side::Right, None, 1)), Anchor::File { path: "img.png".into() });
    }

    #[test]
    fn renamed_file_old_path_only_on_left() {
        let idx = AnchorIndex::new(&parse(DIFF));
        let new = "new name.rs".to_owned();
        assert_eq!(
            idx.place(&finding("new name.rs", Side::Right, None, 1)),
            Anchor::Inline { path: new.clone(), line: 1, start_line: None, side: Side::Right }
        );
        assert_eq!(
            idx.place(&finding("old name.rs", Side::Left, None, 1)),
            Anchor::Inline { path: new.clone(), line: 1, start_line: None, side: Side::Left }
        );
        assert_eq!(
            idx.place(&finding("new name.rs", Side::Left, None, 2)),
            Anchor::Inline { path: new.clone(), line: 2, start_line: None, side: Side::Left }
        );
        assert_eq!(idx.place(&finding("old name.rs", Side::Right, None, 1)), Anchor::File { path: new });
    }

    #[test]
    fn large_corpus_diff_every_changed_line_is_commentable() {
        let Some((_, bytes)) = crate::diff::parse::tests::corpus("03-large") else { return };
        let d = parse(&bytes);
        let idx = AnchorIndex::new(&d);
        for f in &d.files {
            for (h, hunk) in f.hunks.iter().enumerate() {
                for l in &hunk.lines {
                    if let Some(n) = l.new_line {
                        assert_eq!(idx.hunk_of(f.path(), Side::Right, n), Some(h), "{}:{n}", f.path());
                    }
                    if let Some(n) = l.old_line {
                        let old = f.old_path.as_deref().unwrap_or(f.path());
                        assert_eq!(idx.hunk_of(old, Side::Left, n), Some(h), "{old}:{n}");
                    }
                }
            }
        }
    }
}
