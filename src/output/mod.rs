//! Renderers. Commands return data; this module turns it into text: markdown for GitHub (review
//! body, inline comments, summary comment, job summary), JSON and SARIF. Each renderer writes to
//! a `String` or `impl io::Write`; only `main.rs` and this module print to stdout (the stderr
//! log is [`crate::log`]).

pub mod json;
pub mod markdown;
pub mod sarif;

use std::io::{self, Write};

/// Writes `text` to stdout (data only; logs go to stderr through [`crate::log`]).
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}
