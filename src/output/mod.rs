//! Renderers and the logger. Commands return data; this module turns it into text: markdown for
//! GitHub (review body, inline comments, summary comment, job summary), JSON, SARIF, and the
//! redacting stderr log. Each renderer writes to a `String` or `impl io::Write`; only `main.rs`
//! and this module print.

pub mod json;
pub mod log;
pub mod markdown;
pub mod sarif;

use std::io::{self, Write};

/// Writes `text` to stdout (data only; logs go to stderr through [`log`]).
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `error` and its sources on one line, joined with `: ` — for warnings and messages that have
/// no room for a multi-line chain (and for libraries whose top-level text says little, such as
/// octocrab's "Service error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
