//! Renderers. Commands return data; this module turns it into text: markdown for GitHub (review
//! body, inline comments, summary comment, job summary), JSON and SARIF. Each renderer writes to
//! a `String` or `impl io::Write`; only `main.rs` and this module print to stdout (the stderr
//! log is [`crate::log`]). [`deliver`] is the one writer of a command's sinks (stdout, SARIF,
//! step outputs, job summary).

pub mod cost;
mod deliver;
pub mod fix;
pub mod json;
pub mod markdown;
pub mod sarif;

use std::io::{self, Write};

pub(crate) use deliver::{deliver, Delivery, SarifFile, Sink, SinkFailure, Stdout, SARIF_FILE_OUTPUT};

/// Whether stdout is read by an Actions runner (`GITHUB_ACTIONS=true`), set once by `main`.
static IN_ACTIONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records whether this run's stdout is read by an Actions runner, which interprets workflow
/// commands (`::error::…`, `##[warning]…`) in it. Call once at start.
pub fn init(in_actions: bool) {
    IN_ACTIONS.store(in_actions, std::sync::atomic::Ordering::Relaxed);
}

fn in_actions() -> bool {
    IN_ACTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes `text` to stdout (data only; logs go to stderr through [`crate::log`]). In Actions
/// it goes through the one neutralizer every printed text uses ([`crate::actions::inert`]): a
/// text that could hold a workflow command (a model name, a dispatch action, a PR title) is
/// fenced with `::stop-commands::`. For JSON use [`stdout_json`]; for a secret the caller
/// captures whole [`stdout_value`].
pub fn stdout(text: &str) -> io::Result<()> {
    if in_actions() {
        write_stdout(&crate::actions::inert(text))
    } else {
        write_stdout(text)
    }
}

/// Writes JSON to stdout; in Actions made inert without changing its value
/// ([`crate::actions::neutralize_json`]), so a consumer still parses it.
pub fn stdout_json(json: &str) -> io::Result<()> {
    write_stdout(&inert_json(json))
}

/// `json` as [`stdout_json`] prints it (for JSON lines streamed through [`stdout_buffered`]).
pub fn inert_json(json: &str) -> std::borrow::Cow<'_, str> {
    if in_actions() && json.contains("##[") {
        crate::actions::neutralize_json(json).into()
    } else {
        json.into()
    }
}

/// Writes a value the caller captures whole (`secrets get`) as is: fencing would change it.
/// Only for the user's own secret, which they stored themselves (`token-refresh --print` goes
/// through [`stdout`]: a minted token's alphabet cannot hold a command anyway).
pub fn stdout_value(value: &str) -> io::Result<()> {
    write_stdout(value)
}

fn write_stdout(text: &str) -> io::Result<()> {
    let mut out = StdoutWriter::new();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A buffered writer on stdout for data streamed line by line (`cost export`); flush it at the end.
pub fn stdout_buffered() -> io::BufWriter<StdoutWriter> {
    io::BufWriter::new(StdoutWriter::new())
}

/// Stdout for data, where a reader that went away (`agentctl … | head -1`: a broken pipe) is
/// not a failure: the write succeeds and what is left is dropped. Rust ignores `SIGPIPE`, so a
/// closed pipe shows as `EPIPE` on a write; every other write error is returned as is.
/// It holds stdout's lock while it lives.
#[derive(Debug)]
pub struct StdoutWriter {
    out: io::StdoutLock<'static>,
    /// The reader closed its end: later writes are dropped without a system call.
    reader_gone: bool,
}

impl StdoutWriter {
    fn new() -> Self {
        Self { out: io::stdout().lock(), reader_gone: false }
    }

    fn closed_is_ok<T>(&mut self, result: io::Result<T>, done: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.reader_gone {
            return Ok(buf.len());
        }
        let written = self.out.write(buf);
        self.closed_is_ok(written, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.reader_gone {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.closed_is_ok(flushed, ())
    }
}
