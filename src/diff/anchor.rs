//! Which lines of a diff GitHub accepts a review comment on, and where a finding lands.
//!
//! GitHub's rule (<https://docs.github.com/en/rest/pulls/comments#create-a-review-comment-for-a-pull-request>):
//! `line` must be a line shown in the diff on the chosen `side` — on `RIGHT` an added or context
//! line (new-file numbering), on `LEFT` a removed or context line (old-file numbering). A
//! multi-line comment's `start_line` must be on the same side and in the same hunk as `line`.
//! Anything else is answered with 422, so we place such findings in a file-level comment or the
//! review body instead.

use crate::diff::Diff;
use crate::findings::{Finding, Side};

/// Where a finding will be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
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
#[derive(Debug, Clone, Default)]
pub struct AnchorIndex {
    // private fields chosen by the implementation
}

impl AnchorIndex {
    /// Builds the index from a parsed diff. Binary files and files without hunks have no
    /// commentable line.
    pub fn new(diff: &Diff) -> Self {
        let _ = diff;
        todo!("anchor index")
    }

    /// The hunk index (0-based, within the file) that holds `line` on `side` of `path`, if
    /// that line is commentable.
    pub fn hunk_of(&self, path: &str, side: Side, line: u32) -> Option<usize> {
        let _ = (path, side, line);
        todo!()
    }

    /// Whether `path` is in the diff under its new or old name.
    pub fn has_path(&self, path: &str) -> bool {
        let _ = path;
        todo!()
    }

    /// Places a finding: inline when GitHub will accept it (a `start_line` in another hunk, or
    /// not commentable, is dropped to a single-line comment on `line` when `line` itself is
    /// commentable), else [`Placement::File`] or [`Placement::Body`].
    pub fn place(&self, finding: &Finding) -> Placement {
        let _ = finding;
        todo!()
    }
}
