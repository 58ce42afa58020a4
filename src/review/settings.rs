//! The inputs of a review, resolved before it runs (flags > env > config > defaults): where the
//! diff comes from and what the run prints.

use std::path::PathBuf;

use crate::findings::Threshold;

/// Where the diff comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffSource {
    /// `GET /pulls/{n}` with the diff media type.
    Api,
    /// A file, or stdin for `-`.
    File(String),
    /// `git diff REF...HEAD` in the working directory.
    Git(String),
}

/// What stdout carries (`--format`): the Markdown rendering (`Text` is the same; `Markdown` is
/// printed on a dry run only), the JSON report, or SARIF 2.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
    Markdown,
    Sarif,
}

/// All inputs of a review, resolved before it runs (flags > env > config > defaults).
#[derive(Debug)]
pub(crate) struct ReviewSettings {
    pub(crate) dry_run: bool,
    pub(crate) pr: Option<u64>,
    pub(crate) diff_source: DiffSource,
    /// `--fail-on` (or `AGENTCTL_FAIL_ON`); `None` when not given (the config decides).
    pub(crate) fail_on: Option<Threshold>,
    pub(crate) full: bool,
    /// `--no-cache`: the response cache is neither read nor written.
    pub(crate) no_cache: bool,
    pub(crate) sarif: Option<PathBuf>,
    pub(crate) format: Format,
}
