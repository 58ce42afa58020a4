//! Renderers. Commands return data; this module turns it into text: markdown for GitHub (review
//! body, inline comments, summary comment, job summary), JSON and SARIF. Each renderer writes to
//! a `String` or `impl io::Write`; only `main.rs` and this module print to stdout (the stderr
//! log is [`crate::log`]).

pub mod cost;
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

/// A buffered writer on stdout for data streamed line by line (`cost export`); flush it at the end.
pub fn stdout_buffered() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::new(io::stdout().lock())
}

/// Writes `bytes` to `path` atomically: into a temporary file with an unpredictable name in the
/// same folder (`tempfile`), then renamed over `path`, so a reader never sees half a file, a
/// symlink at `path` is replaced rather than followed, and nothing is left behind on failure.
///
/// Errors: the folder is missing or read-only, `path` is a directory, the disk is full.
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
