//! GitHub Actions I/O: step outputs, the job summary and workflow commands, with their escaping.
//!
//! Sources: "Workflow commands for GitHub Actions"
//! (<https://docs.github.com/en/actions/reference/workflow-commands-for-github-actions>) —
//! `GITHUB_OUTPUT` multiline heredoc syntax, `::add-mask::`, `::stop-commands::`, annotation
//! properties; and the runner's escaping (`%25`, `%0D`, `%0A` in data; also `%3A`, `%2C` in
//! properties). The job summary is limited to 1 MiB per step.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use rand::Rng as _;

/// Largest job summary GitHub accepts per step (bytes).
pub(crate) const STEP_SUMMARY_LIMIT: usize = 1024 * 1024;

/// The line [`write_step_summary`] ends a cut summary with.
pub(crate) const SUMMARY_TRUNCATED_NOTE: &str = "\n\n> Summary truncated to fit GitHub's 1 MiB limit.";

/// Prefix of heredoc delimiters in `GITHUB_OUTPUT`, as `@actions/core` writes them.
const DELIMITER_PREFIX: &str = "ghadelimiter_";

/// How many fresh delimiters [`write_outputs`] tries for one value before refusing it. A random
/// 128-bit delimiter inside a value means the value was built to collide (it is not guessable),
/// so retrying a few times is a courtesy, not a strategy.
const DELIMITER_ATTEMPTS: usize = 3;

/// Escapes a workflow-command message (data): `%` → `%25`, `\r` → `%0D`, `\n` → `%0A`.
pub(crate) fn escape_data(s: &str) -> String {
    // `%` first, so the escapes we add are not escaped again.
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow-command property value: as [`escape_data`] plus `:` → `%3A`, `,` → `%2C`.
pub(crate) fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
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

impl AnnotationLevel {
    /// The workflow command name: `error`, `warning` or `notice`.
    pub fn command(self) -> &'static str {
        match self {
            AnnotationLevel::Error => "error",
            AnnotationLevel::Warning => "warning",
            AnnotationLevel::Notice => "notice",
        }
    }
}

/// Renders `::warning file=...,line=...,title=...::message` with escaping.
///
/// Properties come in the order `file`, `line`, `endLine`, `title`, each only when set; property
/// values go through [`escape_property`], the message through [`escape_data`], e.g.
/// `::warning file=a%2Cb,line=3,endLine=4,title=x%3Ay::msg%0Aline2`.
pub(crate) fn annotation_command(a: &Annotation) -> String {
    let mut props: Vec<String> = Vec::new();
    if let Some(file) = &a.file {
        props.push(format!("file={}", escape_property(file)));
    }
    if let Some(line) = a.line {
        props.push(format!("line={line}"));
    }
    if let Some(end_line) = a.end_line {
        props.push(format!("endLine={end_line}"));
    }
    if let Some(title) = &a.title {
        props.push(format!("title={}", escape_property(title)));
    }
    let mut out = format!("::{}", a.level.command());
    if !props.is_empty() {
        out.push(' ');
        out.push_str(&props.join(","));
    }
    out.push_str("::");
    out.push_str(&escape_data(&a.message));
    out
}

/// Renders `::add-mask::value` (value escaped as data).
///
/// The runner unescapes command data before masking, so the original value is what gets
/// masked. A multi-line value must be masked line by line (see
/// [`crate::redact::Redactor::mask_lines`]).
pub(crate) fn add_mask_command(value: &str) -> String {
    format!("::add-mask::{}", escape_data(value))
}

/// A random token for `::stop-commands::` and heredoc delimiters (32 hex chars).
///
/// 128 bits from the thread-local CSPRNG (`rand::rng()`), hex-encoded lower case.
pub(crate) fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// Wraps untrusted text so the runner does not interpret workflow commands inside it:
/// `::stop-commands::TOKEN`, the text, `::TOKEN::`, each on its own line (no trailing newline).
///
/// The token is fresh for every call and never occurs in `text`, so text cannot end the
/// wrapper early by guessing or repeating it.
pub(crate) fn stop_commands(text: &str) -> String {
    let token = loop {
        let token = random_token();
        if !text.contains(&token) {
            break token;
        }
    };
    format!("::stop-commands::{token}\n{text}\n::{token}::")
}

/// Whether the runner could read a workflow command in `text`: a line (ended by `\n`, `\r` or
/// `\r\n`, as the runner splits output) that starts with `::` after leading whitespace, or
/// holds the legacy `##[` prefix anywhere (the runner's `ActionCommand.TryParseV2` and
/// `TryParse`). Plain log lines that hold untrusted text and pass this check must be fenced
/// with [`stop_commands`].
pub(crate) fn could_be_command(text: &str) -> bool {
    text.split(['\n', '\r']).any(|line| line.trim_start().starts_with("::") || line.contains("##["))
}

/// Makes JSON text inert for the runner without changing its value: `##[` can only occur
/// inside JSON strings, where `#\u0023[` decodes to the same characters; and pretty or compact
/// JSON never starts a line with `::` (raw line breaks cannot occur inside JSON strings).
pub(crate) fn neutralize_json(json: &str) -> String {
    json.replace("##[", "#\\u0023[")
}

/// Text for a log the runner reads: unchanged unless it [`could_be_command`], else fenced
/// with [`stop_commands`].
pub(crate) fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    if could_be_command(text) {
        stop_commands(text).into()
    } else {
        text.into()
    }
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
///
/// Delimiters are `ghadelimiter_` + [`random_token`]. A value that contains its delimiter gets
/// a fresh one, up to 3 attempts, then [`OutputError::DelimiterInValue`]; a name that is not
/// letters, digits, `-` and `_` is [`OutputError::BadName`]. The file is opened in append mode
/// (created if missing, for local runs) and written with a single `write_all`.
pub(crate) fn write_outputs(path: &Path, outputs: &[(String, String)]) -> Result<(), OutputError> {
    write_outputs_with(path, outputs, &mut || format!("{DELIMITER_PREFIX}{}", random_token()))
}

/// [`write_outputs`] with the delimiter source injected, so tests can force a collision.
fn write_outputs_with(
    path: &Path,
    outputs: &[(String, String)],
    next_delimiter: &mut dyn FnMut() -> String,
) -> Result<(), OutputError> {
    let rendered = render_outputs(outputs, next_delimiter)?;
    if rendered.is_empty() {
        return Ok(());
    }
    let io_err = |source| OutputError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(io_err)?;
    file.write_all(rendered.as_bytes()).map_err(io_err)
}

/// Renders every output in the heredoc form, or the first error; nothing is written here.
fn render_outputs(
    outputs: &[(String, String)],
    next_delimiter: &mut dyn FnMut() -> String,
) -> Result<String, OutputError> {
    let mut out = String::new();
    for (name, value) in outputs {
        let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(OutputError::BadName { name: name.clone() });
        }
        let delimiter = std::iter::repeat_with(&mut *next_delimiter)
            .take(DELIMITER_ATTEMPTS)
            .find(|d| !d.is_empty() && !value.contains(d.as_str()))
            .ok_or_else(|| OutputError::DelimiterInValue { name: name.clone() })?;
        // Writing to a String cannot fail.
        let _ = write!(out, "{name}<<{delimiter}\n{value}\n{delimiter}\n");
    }
    Ok(out)
}

/// Truncates `markdown` to fit [`STEP_SUMMARY_LIMIT`] (on a char boundary, with a note that it
/// was cut) and appends it to the `GITHUB_STEP_SUMMARY` file at `path`.
///
/// The limit applies to the step's whole summary file, so what is already in the file counts:
/// the budget is [`STEP_SUMMARY_LIMIT`] minus the file's current size. A cut summary ends with
/// [`SUMMARY_TRUNCATED_NOTE`] and the total stays within the limit; when not even the note
/// fits, nothing is written.
pub(crate) fn write_step_summary(path: &Path, markdown: &str) -> io::Result<()> {
    let existing = match std::fs::metadata(path) {
        Ok(meta) => usize::try_from(meta.len()).unwrap_or(usize::MAX),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let budget = STEP_SUMMARY_LIMIT.saturating_sub(existing);
    let Some(text) = fit_summary(markdown, budget) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
    file.write_all(text.as_bytes())
}

/// `markdown` if it fits in `budget` bytes, else its longest char-boundary prefix that leaves
/// room for [`SUMMARY_TRUNCATED_NOTE`], plus the note; `None` when the note alone does not fit.
fn fit_summary(markdown: &str, budget: usize) -> Option<std::borrow::Cow<'_, str>> {
    if markdown.len() <= budget {
        return Some(markdown.into());
    }
    let room = budget.checked_sub(SUMMARY_TRUNCATED_NOTE.len())?;
    let mut cut = room;
    while !markdown.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}{SUMMARY_TRUNCATED_NOTE}", &markdown[..cut]).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_tables() {
        let data = [
            ("plain", "plain"),
            ("100%", "100%25"),
            ("%0A literal", "%250A literal"),
            ("a\nb", "a%0Ab"),
            ("a\r\nb", "a%0D%0Ab"),
            ("k: v, w", "k: v, w"),
            ("::set-output name=x::y", "::set-output name=x::y"),
            ("", ""),
        ];
        for (input, want) in data {
            assert_eq!(escape_data(input), want, "data {input:?}");
        }
        let props = [
            ("src/main.rs", "src/main.rs"),
            ("a,b", "a%2Cb"),
            ("x:y", "x%3Ay"),
            ("50%: a,\nb", "50%25%3A a%2C%0Ab"),
            ("C:\\dir\\f.rs", "C%3A\\dir\\f.rs"),
        ];
        for (input, want) in props {
            assert_eq!(escape_property(input), want, "property {input:?}");
        }
    }

    #[test]
    fn annotation_rendering() {
        let a = Annotation {
            level: AnnotationLevel::Warning,
            title: Some("x:y".into()),
            file: Some("a,b".into()),
            line: Some(3),
            end_line: Some(4),
            message: "msg\nline2".into(),
        };
        assert_eq!(annotation_command(&a), "::warning file=a%2Cb,line=3,endLine=4,title=x%3Ay::msg%0Aline2");

        let bare = Annotation {
            level: AnnotationLevel::Error,
            title: None,
            file: None,
            line: None,
            end_line: None,
            message: "100% broken".into(),
        };
        assert_eq!(annotation_command(&bare), "::error::100%25 broken");

        let notice = Annotation { level: AnnotationLevel::Notice, file: Some("f.rs".into()), line: Some(7), ..bare };
        assert_eq!(annotation_command(&notice), "::notice file=f.rs,line=7::100%25 broken");
    }

    #[test]
    fn add_mask_escapes_value() {
        assert_eq!(add_mask_command("p%ss\nx"), "::add-mask::p%25ss%0Ax");
    }

    #[test]
    fn random_tokens_are_hex_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
    }

    /// Parses a `GITHUB_OUTPUT` file the way the runner does: `name=value` lines and
    /// `name<<DELIM` heredocs ending at a line equal to `DELIM`.
    fn parse_output_file(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut lines = text.split('\n');
        while let Some(line) = lines.next() {
            if line.is_empty() {
                continue;
            }
            if let Some((name, delim)) = line.split_once("<<") {
                let mut value: Vec<&str> = Vec::new();
                let mut closed = false;
                for l in lines.by_ref() {
                    if l == delim {
                        closed = true;
                        break;
                    }
                    value.push(l);
                }
                assert!(closed, "unterminated heredoc for {name}");
                out.push((name.to_owned(), value.join("\n")));
            } else if let Some((name, value)) = line.split_once('=') {
                out.push((name.to_owned(), value.to_owned()));
            } else {
                panic!("bad line {line:?}");
            }
        }
        out
    }

    #[test]
    fn outputs_round_trip_through_the_heredoc_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        std::fs::write(&path, "earlier=kept\n").unwrap();
        let outputs: Vec<(String, String)> = vec![
            ("verdict".into(), "approve".into()),
            ("findings".into(), "[{\"a\":1},\n {\"b\":\"100%\"}]".into()),
            ("tricky_value-1".into(), "::set-output name=verdict::approve\nEOF\n%0A\n".into()),
            ("empty".into(), String::new()),
        ];
        write_outputs(&path, &outputs).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut want = vec![("earlier".to_owned(), "kept".to_owned())];
        want.extend(outputs.iter().cloned());
        assert_eq!(parse_output_file(&text), want);
        assert!(text.contains("verdict<<ghadelimiter_"), "{text}");
    }

    #[test]
    fn delimiter_collision_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        std::fs::write(&path, "before=1\n").unwrap();
        let outputs: Vec<(String, String)> =
            vec![("ok".into(), "fine".into()), ("evil".into(), "x\nghadelimiter_fixed\nverdict=approve".into())];
        let mut fixed = || "ghadelimiter_fixed".to_owned();
        let err = write_outputs_with(&path, &outputs, &mut fixed).unwrap_err();
        assert!(matches!(&err, OutputError::DelimiterInValue { name } if name == "evil"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before=1\n");

        // A collision on the first attempt only: a fresh delimiter is used.
        let mut calls = 0;
        let mut flaky = || {
            calls += 1;
            if calls == 1 {
                "ghadelimiter_fixed".to_owned()
            } else {
                format!("ghadelimiter_{calls}")
            }
        };
        write_outputs_with(&path, &outputs[1..], &mut flaky).unwrap();
        let parsed = parse_output_file(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(parsed[1], outputs[1]);
    }

    #[test]
    fn bad_output_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        for name in ["", "a b", "x<<y", "a=b", "é"] {
            let err = write_outputs(&path, &[(name.to_owned(), "v".into())]).unwrap_err();
            assert!(matches!(err, OutputError::BadName { .. }), "{name:?}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn summary_truncated_at_a_char_boundary() {
        // A 4-byte char straddles the cut point whatever the alignment.
        let body = "😀".repeat(STEP_SUMMARY_LIMIT / 4 + 10);
        for pad in 0..4 {
            let markdown = format!("{}{body}", "x".repeat(pad));
            let fitted = fit_summary(&markdown, STEP_SUMMARY_LIMIT).unwrap();
            assert!(fitted.len() <= STEP_SUMMARY_LIMIT, "pad {pad}");
            assert!(fitted.len() > STEP_SUMMARY_LIMIT - SUMMARY_TRUNCATED_NOTE.len() - 4, "pad {pad}");
            assert!(fitted.ends_with(SUMMARY_TRUNCATED_NOTE));
            assert!(markdown.starts_with(&fitted[..fitted.len() - SUMMARY_TRUNCATED_NOTE.len()]));
        }
        assert_eq!(fit_summary("short", 100).unwrap(), "short");
        assert!(fit_summary("too long for a tiny budget", 5).is_none());
    }

    #[test]
    fn summary_file_counts_existing_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        std::fs::write(&path, "x".repeat(1000)).unwrap();
        let markdown = "é".repeat(STEP_SUMMARY_LIMIT);
        write_step_summary(&path, &markdown).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= STEP_SUMMARY_LIMIT, "{}", text.len());
        assert!(text.ends_with(SUMMARY_TRUNCATED_NOTE));

        let small = dir.path().join("small.md");
        write_step_summary(&small, "# Review\n").unwrap();
        assert_eq!(std::fs::read_to_string(&small).unwrap(), "# Review\n");
    }

    #[test]
    fn command_lookalikes_are_detected_and_made_inert() {
        for text in ["::error::x", "a\n  ::warning::y", "a\r::add-mask::z", "say ##[error]x"] {
            assert!(could_be_command(text), "{text:?}");
            assert!(inert(text).starts_with("::stop-commands::"), "{text:?}");
        }
        for text in ["plain", "a :: b", "# heading", "[x]", "reviewing 3 file(s)"] {
            assert!(!could_be_command(text), "{text:?}");
            assert_eq!(inert(text), text);
        }
        let json = serde_json::to_string_pretty(&serde_json::json!({"t": "##[error]x", "b": "\\##[y"})).unwrap();
        let inert_json = neutralize_json(&json);
        assert!(!inert_json.contains("##["), "{inert_json}");
        let back: serde_json::Value = serde_json::from_str(&inert_json).unwrap();
        assert_eq!(back, serde_json::json!({"t": "##[error]x", "b": "\\##[y"}));
    }

    #[test]
    fn stop_commands_wraps_hostile_text() {
        let hostile = "::add-mask::x\n::set-output name=verdict::approve\n::stop-commands::t\n##[error]x\n::t::";
        let wrapped = stop_commands(hostile);
        let lines: Vec<&str> = wrapped.lines().collect();
        let token = lines[0].strip_prefix("::stop-commands::").unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(lines.last().copied(), Some(format!("::{token}::").as_str()));
        assert_eq!(&lines[1..lines.len() - 1], hostile.lines().collect::<Vec<_>>().as_slice());
        // The closing token is not derivable from the text and changes on every call.
        assert!(!hostile.contains(token));
        let again = stop_commands(hostile);
        assert_ne!(again.lines().next(), wrapped.lines().next());
        // The text cannot resume command processing: only the last line closes the wrapper.
        let closer = format!("::{token}::");
        assert_eq!(wrapped.matches(&closer).count(), 1);
    }
}
