//! Which files are reviewed: `include`/`exclude` globs from config plus default skips for lock
//! files, minified and generated files, binaries, submodules and pure renames. Every skipped
//! file carries a reason that the summary shows, so nothing is dropped silently.

use crate::diff::FileDiff;

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
#[derive(Debug, Clone)]
pub struct FileFilter {
    // private fields chosen by the implementation
}

impl FileFilter {
    /// Compiles the globs. Errors name the bad glob.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let _ = (include, exclude);
        todo!()
    }

    /// `None` when the file is to be reviewed, else why not.
    pub fn check(&self, file: &FileDiff) -> Option<SkipReason> {
        let _ = file;
        todo!()
    }
}
