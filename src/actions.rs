//! GitHub Actions I/O: step outputs, the job summary and workflow commands, with their escaping.
//!
//! Sources: "Workflow commands for GitHub Actions"
//! (<https://docs.github.com/en/actions/reference/workflow-commands-for-github-actions>) —
//! `GITHUB_OUTPUT` multiline heredoc syntax, `::add-mask::`, `::stop-commands::`, annotation
//! properties; and the runner's escaping (`%25`, `%0D`, `%0A` in data; also `%3A`, `%2C` in
//! properties). The job summary is limited to 1 MiB per step.

use std::io;
use std::path::Path;

/// Largest job summary GitHub accepts per step (bytes).
pub const STEP_SUMMARY_LIMIT: usize = 1024 * 1024;

/// Escapes a workflow-command message (data): `%` → `%25`, `\r` → `%0D`, `\n` → `%0A`.
pub fn escape_data(s: &str) -> String {
    let _ = s;
    todo!()
}

/// Escapes a workflow-command property value: as [`escape_data`] plus `:` → `%3A`, `,` → `%2C`.
pub fn escape_property(s: &str) -> String {
    let _ = s;
    todo!()
}

/// Annotation level of `::error`, `::warning`, `::notice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationLevel {
    Error,
    Warning,
    Notice,
}

/// An annotation on a file line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub level: AnnotationLevel,
    pub title: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub end_line: Option<u32>,
    pub message: String,
}

/// Renders `::warning file=...,line=...,title=...::message` with escaping.
pub fn annotation_command(a: &Annotation) -> String {
    let _ = a;
    todo!()
}

/// Renders `::add-mask::value` (value escaped as data).
pub fn add_mask_command(value: &str) -> String {
    let _ = value;
    todo!()
}

/// A random token for `::stop-commands::` and heredoc delimiters (32 hex chars).
pub fn random_token() -> String {
    todo!()
}

/// Wraps untrusted text so the runner does not interpret workflow commands inside it:
/// `::stop-commands::TOKEN`, the text, `::TOKEN::`.
pub fn stop_commands(text: &str) -> String {
    let _ = text;
    todo!()
}

/// Error writing step outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write step outputs to {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("output `{name}`: the value contains the heredoc delimiter; refusing to write it")]
    DelimiterInValue { name: String },
    #[error("output name `{name}` is not valid (letters, digits, `-`, `_` only)")]
    BadName { name: String },
}

/// Appends `outputs` to the `GITHUB_OUTPUT` file at `path` in the heredoc form
/// `name<<DELIM\nvalue\nDELIM\n`, one random delimiter per value; all are rendered before the
/// file is opened, so a refused value writes nothing.
pub fn write_outputs(path: &Path, outputs: &[(String, String)]) -> Result<(), OutputError> {
    let _ = (path, outputs);
    todo!()
}

/// Truncates `markdown` to fit [`STEP_SUMMARY_LIMIT`] (on a char boundary, with a note that it
/// was cut) and appends it to the `GITHUB_STEP_SUMMARY` file at `path`.
pub fn write_step_summary(path: &Path, markdown: &str) -> io::Result<()> {
    let _ = (path, markdown);
    todo!()
}
