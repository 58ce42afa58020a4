//! Unified-diff parser for `git diff` output, which is also the body GitHub returns for
//! `Accept: application/vnd.github.diff`.
//!
//! Follows git's documented format (git-diff(1), "GENERATING PATCH TEXT WITH -P" and "COMBINED
//! DIFF FORMAT" is out of scope): `diff --git` headers, extended headers (`old mode`, `new mode`,
//! `deleted file mode`, `new file mode`, `similarity index`, `rename from/to`, `copy from/to`,
//! `index`), `Binary files ... differ`, `---`/`+++`, `@@ -a,b +c,d @@ section` hunks, and
//! `\ No newline at end of file`. Quoted paths (`"a/caf\303\251"`) are unquoted.
//!
//! Memory: the parsed diff keeps the diff text once, as one shared UTF-8 buffer (the input
//! itself when it is valid UTF-8 and given by value to [`parse_owned`]), and each [`Line`]
//! holds a 32-bit range into it instead of a `String` of its own: a line costs 28 bytes plus
//! its share of the buffer, so a parsed diff takes about 1.8× the input's size (the corpus's
//! large diff averages 37 bytes a line; `scripts/bench-huge-diff` measures a whole review).
//! [`Hunk::text`] gives a line's text; cloning a [`Diff`] shares the buffer.

use std::sync::Arc;

/// A parsed diff: one entry per `diff --git` section, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub files: Vec<FileDiff>,
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileStatus {
    Added,
    Deleted,
    Modified,
    Renamed,
    Copied,
}

/// One file's section of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// Path before the change (`a/` side, prefix stripped); `None` for an added file.
    pub old_path: Option<String>,
    /// Path after the change (`b/` side, prefix stripped); `None` for a deleted file.
    pub new_path: Option<String>,
    pub status: FileStatus,
    /// `Binary files ... differ` or a `GIT binary patch`.
    pub is_binary: bool,
    /// Mode 160000 (a gitlink) on either side.
    pub is_submodule: bool,
    pub old_mode: Option<String>,
    pub new_mode: Option<String>,
    /// `similarity index N%` for renames and copies.
    pub similarity: Option<u8>,
    /// The `index OLD..NEW` line names a new blob with content (NEW is neither all zeros, a
    /// deletion, nor the empty blob `e69de29`, an empty file) that differs from OLD: the
    /// content changed, so the section must have hunks or be binary.
    pub content_changed: bool,
    pub hunks: Vec<Hunk>,
}

/// One `@@ -old_start,old_lines +new_start,new_lines @@ section` hunk.
///
/// Two hunks are equal when their headers and their lines (kinds, numbers, flags and text)
/// are, whichever buffers their texts live in.
#[derive(Clone)]
pub struct Hunk {
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    /// Text after the second `@@` (often the enclosing function), trimmed.
    pub section: String,
    /// The lines; their text is read with [`Hunk::text`].
    pub lines: Vec<Line>,
    /// The diff text the lines' ranges point into, shared by every hunk of one diff.
    buf: Arc<String>,
    /// Offset in `buf` the lines' ranges count from (the byte after the `@@` line), so a
    /// 32-bit range suffices for any hunk under 4 GiB whatever the diff's size.
    base: usize,
}

/// Kind of a hunk line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

/// One line of a hunk, with its number in the old file (context and removed lines) and in the
/// new file (context and added lines), both 1-based.
///
/// Its text is not held here but read through its hunk, [`Hunk::text`]: the line's text
/// without the leading marker and without the line end; invalid UTF-8 is replaced lossily
/// (U+FFFD); a trailing `\r` (CRLF) is kept out of it. 28 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub old_line: Option<u32>,
    pub new_line: Option<u32>,
    /// The line ended in `\r\n` in the diff.
    pub crlf: bool,
    /// Followed by `\ No newline at end of file`.
    pub no_newline_at_eof: bool,
    /// Start of the text in the hunk's buffer, from the hunk's base, bytes.
    start: u32,
    /// Length of the text, bytes.
    len: u32,
}

impl Line {
    /// Length of the line's text in bytes (UTF-8, after lossy replacement), without reading it.
    pub fn text_len(&self) -> usize {
        self.len as usize
    }
}

impl Hunk {
    /// The text of `line`, one of this hunk's lines (see [`Line`]). A line of another hunk
    /// gives its range read in this hunk's buffer, or `""` when that is out of range.
    pub fn text(&self, line: &Line) -> &str {
        let start = self.base.saturating_add(line.start as usize);
        self.buf.get(start..start.saturating_add(line.len as usize)).unwrap_or_default()
    }

    /// This hunk's lines with their text.
    pub fn lines_with_text(&self) -> impl Iterator<Item = (&Line, &str)> {
        self.lines.iter().map(move |l| (l, self.text(l)))
    }
}

impl PartialEq for Hunk {
    fn eq(&self, other: &Self) -> bool {
        let same_line = |(a, ta): (&Line, &str), (b, tb): (&Line, &str)| {
            (a.kind, a.old_line, a.new_line, a.crlf, a.no_newline_at_eof, ta)
                == (b.kind, b.old_line, b.new_line, b.crlf, b.no_newline_at_eof, tb)
        };
        (self.old_start, self.old_lines, self.new_start, self.new_lines, &self.section)
            == (other.old_start, other.old_lines, other.new_start, other.new_lines, &other.section)
            && self.lines.len() == other.lines.len()
            && self.lines_with_text().zip(other.lines_with_text()).all(|(a, b)| same_line(a, b))
    }
}

impl Eq for Hunk {}

impl std::fmt::Debug for Hunk {
    /// Lines with their text, not the whole shared buffer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hunk")
            .field("old_start", &self.old_start)
            .field("old_lines", &self.old_lines)
            .field("new_start", &self.new_start)
            .field("new_lines", &self.new_lines)
            .field("section", &self.section)
            .field("lines", &self.lines_with_text().collect::<Vec<_>>())
            .finish()
    }
}

impl FileDiff {
    /// The path a reviewer knows the file by: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path.as_deref().or(self.old_path.as_deref()).unwrap_or("")
    }

    /// Number of added lines (`+`), as `git diff --numstat` counts them.
    pub fn added(&self) -> usize {
        self.hunks.iter().flat_map(|h| &h.lines).filter(|l| l.kind == LineKind::Added).count()
    }

    /// Number of removed lines (`-`), as `git diff --numstat` counts them.
    pub fn removed(&self) -> usize {
        self.hunks.iter().flat_map(|h| &h.lines).filter(|l| l.kind == LineKind::Removed).count()
    }
}

/// Parses `git diff` output. Never panics and never fails: text that is not part of a diff
/// (a commit header, garbage) is skipped; a hunk cut short keeps the lines it has.
///
/// Hunk ends are found from the `@@` counts, as `git apply` does; a count that is too large
/// is tolerated (the hunk ends at the first line that cannot be hunk content: `diff --git`,
/// `@@`, or a line not starting with ` `, `+`, `-`, `\`), and lines after a hunk whose counts
/// are exhausted are read as headers (e.g. `--- a/file`), never as content.
///
/// Copies `input` once into the diff's text buffer; [`parse_owned`] avoids the copy.
pub fn parse(input: &[u8]) -> Diff {
    parse_text(String::from_utf8_lossy(input).into_owned())
}

/// [`parse`] taking the diff by value: valid UTF-8 becomes the diff's text buffer without a
/// copy, so peak memory is the input plus 28 bytes a line. Input with invalid UTF-8 is
/// converted lossily once (each invalid sequence becomes U+FFFD, as [`parse`] does), which
/// holds the input and its converted copy at once for a moment.
pub fn parse_owned(input: Vec<u8>) -> Diff {
    let text = match String::from_utf8(input) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    parse_text(text)
}

/// Parses valid UTF-8 text. A `\n` or a marker byte never belongs to an invalid UTF-8
/// sequence, so converting the whole input lossily first reads every line as converting each
/// line alone would.
fn parse_text(text: String) -> Diff {
    let buf = Arc::new(text);
    let mut parser = Parser::new(Arc::clone(&buf));
    for (offset, raw) in split_lines(buf.as_bytes()) {
        parser.line(offset, raw);
    }
    parser.finish()
}

/// Splits on `\n`, without the `\n`, giving each piece's offset in `input`; no empty piece
/// after a final `\n`.
fn split_lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = input.get(offset..).filter(|r| !r.is_empty())?;
        let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let start = offset;
        offset += len + 1;
        Some((start, &rest[..len]))
    })
}

/// The hunk being read: lines still expected per side, and the next line number per side
/// (`None` once it would overflow `u32`, which ends the hunk).
#[derive(Debug)]
struct OpenHunk {
    old_left: u32,
    new_left: u32,
    next_old: Option<u32>,
    next_new: Option<u32>,
}

/// Paths seen in one file section, by source, resolved in [`Parser::finish_file`] by
/// precedence: `rename/copy from/to` > `---`/`+++` > `diff --git`.
#[derive(Debug, Default)]
struct PathSources {
    git_old: Option<String>,
    git_new: Option<String>,
    /// `Some(None)` is `/dev/null`.
    minus: Option<Option<String>>,
    plus: Option<Option<String>>,
    from: Option<String>,
    to: Option<String>,
    /// `rename` (true) or `copy` (false) seen.
    renamed: bool,
    copied: bool,
    new_file: bool,
    deleted_file: bool,
}

#[derive(Debug)]
struct Parser {
    /// The whole diff text, shared with every hunk.
    buf: Arc<String>,
    files: Vec<FileDiff>,
    current: Option<(FileDiff, PathSources)>,
    hunk: Option<OpenHunk>,
    /// Inside a `GIT binary patch` body: everything up to the next `diff --git` is data.
    in_binary_patch: bool,
}

impl Parser {
    fn new(buf: Arc<String>) -> Self {
        Self { buf, files: Vec::new(), current: None, hunk: None, in_binary_patch: false }
    }

    /// Handles one line of the input, which starts at byte `offset` of the buffer.
    fn line(&mut self, offset: usize, raw: &[u8]) {
        if raw.starts_with(b"diff --git ") {
            self.finish_file();
            self.start_file(&raw[b"diff --git ".len()..]);
            return;
        }
        if self.current.is_none() || self.in_binary_patch {
            // Commit header or other text before the first section; binary patch data.
            return;
        }
        if self.hunk.is_some() && self.hunk_line(offset, raw) {
            return;
        }
        self.header_line(offset, raw);
    }

    /// Handles `raw` as hunk content if it is; returns false when the hunk has ended and the
    /// line must be read as a header.
    fn hunk_line(&mut self, offset: usize, raw: &[u8]) -> bool {
        let Some((file, _)) = self.current.as_mut() else { return false };
        let Some(open) = self.hunk.as_mut() else { return false };
        let (raw, crlf) = strip_cr(raw);
        let first = raw.first().copied();
        if first == Some(b'\\') {
            // `\ No newline at end of file` (the text is localized in old gits: match only `\`).
            if let Some(last) = file.hunks.last_mut().and_then(|h| h.lines.last_mut()) {
                last.no_newline_at_eof = true;
            }
            return true;
        }
        if open.old_left == 0 && open.new_left == 0 {
            self.hunk = None;
            return false;
        }
        // An empty line inside a hunk is an empty context line whose space was stripped
        // (mail clients, editors); `git apply` accepts it too.
        let kind = match first {
            Some(b' ') | None => LineKind::Context,
            Some(b'+') => LineKind::Added,
            Some(b'-') => LineKind::Removed,
            _ => {
                self.hunk = None;
                return false;
            }
        };
        let (old_line, new_line) = match kind {
            LineKind::Context => (open.next_old, open.next_new),
            LineKind::Added => (None, open.next_new),
            LineKind::Removed => (open.next_old, None),
        };
        if (kind != LineKind::Added && old_line.is_none()) || (kind != LineKind::Removed && new_line.is_none()) {
            // Line numbers ran past u32::MAX: bogus header; stop rather than wrap.
            self.hunk = None;
            return false;
        }
        let Some(hunk) = file.hunks.last_mut() else { return false };
        // The text after the marker, as a range from the hunk's base; a hunk over 4 GiB ends
        // where its ranges would stop fitting 32 bits.
        let len = raw.len().saturating_sub(1);
        let (Ok(start), Ok(len32)) = (u32::try_from((offset + 1).saturating_sub(hunk.base)), u32::try_from(len)) else {
            self.hunk = None;
            return false;
        };
        if start.checked_add(len32).is_none() {
            self.hunk = None;
            return false;
        }
        if kind != LineKind::Added {
            open.old_left = open.old_left.saturating_sub(1);
            open.next_old = open.next_old.and_then(|n| n.checked_add(1));
        }
        if kind != LineKind::Removed {
            open.new_left = open.new_left.saturating_sub(1);
            open.next_new = open.next_new.and_then(|n| n.checked_add(1));
        }
        hunk.lines.push(Line { kind, old_line, new_line, crlf, no_newline_at_eof: false, start, len: len32 });
        true
    }

    fn header_line(&mut self, offset: usize, raw: &[u8]) {
        let (raw, _) = strip_cr(raw);
        let Some((file, paths)) = self.current.as_mut() else { return };
        if raw.starts_with(b"@@ ") || raw == b"@@" {
            if let Some(h) = parse_hunk_header(raw, &self.buf, offset) {
                // The previous hunk is complete: give back its unused capacity.
                if let Some(prev) = file.hunks.last_mut() {
                    prev.lines.shrink_to_fit();
                }
                self.hunk = Some(OpenHunk {
                    old_left: h.old_lines,
                    new_left: h.new_lines,
                    // A side with 0 lines names the line before the hunk: the next line
                    // on it would be start+1, but no line is ever read on that side.
                    next_old: Some(h.old_start.max(1)),
                    next_new: Some(h.new_start.max(1)),
                });
                file.hunks.push(h);
            }
            return;
        }
        if !file.hunks.is_empty() {
            // After the first hunk only hunks (and `\`) may follow in a section; anything
            // else is stray text (e.g. lines past a hunk whose counts were too small).
            return;
        }
        if let Some(rest) = raw.strip_prefix(b"--- ") {
            paths.minus = Some(header_path(rest));
        } else if let Some(rest) = raw.strip_prefix(b"+++ ") {
            paths.plus = Some(header_path(rest));
        } else if let Some(rest) = raw.strip_prefix(b"old mode ") {
            file.old_mode = Some(lossy_trim(rest));
        } else if let Some(rest) = raw.strip_prefix(b"new mode ") {
            file.new_mode = Some(lossy_trim(rest));
        } else if let Some(rest) = raw.strip_prefix(b"deleted file mode ") {
            paths.deleted_file = true;
            file.old_mode = Some(lossy_trim(rest));
        } else if let Some(rest) = raw.strip_prefix(b"new file mode ") {
            paths.new_file = true;
            file.new_mode = Some(lossy_trim(rest));
        } else if let Some(rest) = raw.strip_prefix(b"similarity index ") {
            file.similarity = parse_percent(rest);
        } else if let Some(rest) = raw.strip_prefix(b"rename from ") {
            paths.renamed = true;
            paths.from = Some(unquote(rest));
        } else if let Some(rest) = raw.strip_prefix(b"rename to ") {
            paths.renamed = true;
            paths.to = Some(unquote(rest));
        } else if let Some(rest) = raw.strip_prefix(b"copy from ") {
            paths.copied = true;
            paths.from = Some(unquote(rest));
        } else if let Some(rest) = raw.strip_prefix(b"copy to ") {
            paths.copied = true;
            paths.to = Some(unquote(rest));
        } else if let Some(rest) = raw.strip_prefix(b"index ") {
            // `index abc..def 160000`: a gitlink whose commit changed.
            if rest.split(|&b| b == b' ').nth(1) == Some(b"160000") {
                file.is_submodule = true;
            }
            let ids = rest.split(|&b| b == b' ').next().unwrap_or_default();
            if let Some(at) = ids.windows(2).position(|w| w == b"..") {
                let (old, new) = (&ids[..at], &ids[at + 2..]);
                let empty =
                    new.iter().all(|&b| b == b'0') || b"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391".starts_with(new);
                file.content_changed = old != new && !new.is_empty() && !empty;
            }
        } else if raw.starts_with(b"Binary files ") {
            file.is_binary = true;
        } else if raw == b"GIT binary patch" {
            file.is_binary = true;
            self.in_binary_patch = true;
        }
    }

    fn start_file(&mut self, rest: &[u8]) {
        let (rest, _) = strip_cr(rest);
        let (git_old, git_new) = split_git_header(rest);
        let file = FileDiff {
            old_path: None,
            new_path: None,
            status: FileStatus::Modified,
            is_binary: false,
            is_submodule: false,
            old_mode: None,
            new_mode: None,
            similarity: None,
            content_changed: false,
            hunks: Vec::new(),
        };
        let paths = PathSources { git_old, git_new, ..PathSources::default() };
        self.current = Some((file, paths));
    }

    fn finish_file(&mut self) {
        self.hunk = None;
        self.in_binary_patch = false;
        let Some((mut file, p)) = self.current.take() else { return };
        if let Some(last) = file.hunks.last_mut() {
            last.lines.shrink_to_fit();
        }
        let minus_null = matches!(p.minus, Some(None));
        let plus_null = matches!(p.plus, Some(None));
        let old = p.from.clone().or_else(|| p.minus.clone().flatten()).or(p.git_old.clone());
        let new = p.to.clone().or_else(|| p.plus.clone().flatten()).or(p.git_new.clone());
        file.status = if p.new_file || (minus_null && !plus_null) {
            FileStatus::Added
        } else if p.deleted_file || (plus_null && !minus_null) {
            FileStatus::Deleted
        } else if p.renamed {
            FileStatus::Renamed
        } else if p.copied {
            FileStatus::Copied
        } else {
            FileStatus::Modified
        };
        match file.status {
            FileStatus::Added => {
                file.old_path = None;
                file.new_path = new.or(old);
            }
            FileStatus::Deleted => {
                file.old_path = old.or(new);
                file.new_path = None;
            }
            _ => {
                file.old_path = old.clone().or_else(|| new.clone());
                file.new_path = new.or(old);
            }
        }
        let gitlink = |m: &Option<String>| m.as_deref() == Some("160000");
        if gitlink(&file.old_mode) || gitlink(&file.new_mode) {
            file.is_submodule = true;
        }
        self.files.push(file);
    }

    fn finish(mut self) -> Diff {
        self.finish_file();
        mark_renamed_gitlinks(&mut self.files);
        Diff { files: self.files }
    }
}

/// A gitlink that is only renamed shows no mode at all (`similarity index 100%` plus
/// `rename from/to`), so it cannot be told from a renamed file by its own section. The same
/// diff then edits `.gitmodules` (`path = ...` lines), which names it: a hunk-less, non-binary
/// file whose old or new path is a `path =` value of `.gitmodules` is a submodule.
fn mark_renamed_gitlinks(files: &mut [FileDiff]) {
    let mut submodule_paths: Vec<String> = Vec::new();
    for f in files.iter().filter(|f| f.path() == ".gitmodules" || f.path().ends_with("/.gitmodules")) {
        for (_, text) in f.hunks.iter().flat_map(Hunk::lines_with_text) {
            let t = text.trim();
            if let Some(v) = t.strip_prefix("path") {
                if let Some(v) = v.trim_start().strip_prefix('=') {
                    submodule_paths.push(v.trim().to_owned());
                }
            }
        }
    }
    if submodule_paths.is_empty() {
        return;
    }
    let set: std::collections::HashSet<&str> = submodule_paths.iter().map(String::as_str).collect();
    for f in files.iter_mut() {
        if f.hunks.is_empty() && !f.is_binary {
            let hit = |p: &Option<String>| p.as_deref().is_some_and(|p| set.contains(p));
            if hit(&f.old_path) || hit(&f.new_path) {
                f.is_submodule = true;
            }
        }
    }
}

/// Strips one trailing `\r`; says whether there was one.
fn strip_cr(raw: &[u8]) -> (&[u8], bool) {
    match raw.strip_suffix(b"\r") {
        Some(r) => (r, true),
        None => (raw, false),
    }
}

fn lossy_trim(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).trim().to_owned()
}

/// `87%` → 87; anything unparsable or over 100 → `None`.
fn parse_percent(raw: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(raw).ok()?.trim().trim_end_matches('%');
    s.parse::<u8>().ok().filter(|&n| n <= 100)
}

/// `@@ -a[,b] +c[,d] @@[ section]`; counts default to 1 when omitted (git-diff(1)).
/// The hunk whose `@@` line is `raw`, starting at `offset` in `buf`; its lines count from the
/// byte after that line.
fn parse_hunk_header(raw: &[u8], buf: &Arc<String>, offset: usize) -> Option<Hunk> {
    let rest = raw.strip_prefix(b"@@ -")?;
    let (old_start, old_lines, rest) = parse_range(rest)?;
    let rest = rest.strip_prefix(b" +")?;
    let (new_start, new_lines, rest) = parse_range(rest)?;
    let rest = rest.strip_prefix(b" @@")?;
    Some(Hunk {
        old_start,
        old_lines,
        new_start,
        new_lines,
        section: String::from_utf8_lossy(rest).trim().to_owned(),
        lines: Vec::new(),
        buf: Arc::clone(buf),
        // The `@@` line's start: every line of the hunk starts after it.
        base: offset,
    })
}

/// `a[,b]` at the start of `raw`, then the rest.
fn parse_range(raw: &[u8]) -> Option<(u32, u32, &[u8])> {
    let (start, rest) = parse_u32(raw)?;
    match rest.strip_prefix(b",") {
        Some(r) => {
            let (count, rest) = parse_u32(r)?;
            Some((start, count, rest))
        }
        None => Some((start, 1, rest)),
    }
}

fn parse_u32(raw: &[u8]) -> Option<(u32, &[u8])> {
    let digits = raw.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u32 = 0;
    for &b in &raw[..digits] {
        n = n.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some((n, &raw[digits..]))
}

/// The path of a `---`/`+++` line: `None` for `/dev/null`; the `a/`/`b/` prefix stripped; an
/// unquoted path ends at a tab (git appends one after a path with spaces; GNU diff puts the
/// timestamp there).
fn header_path(rest: &[u8]) -> Option<String> {
    let path = if rest.first() == Some(&b'"') {
        let (p, _) = unquote_prefix(rest);
        p
    } else {
        let end = rest.iter().position(|&b| b == b'\t').unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    };
    if path == "/dev/null" {
        return None;
    }
    Some(strip_prefix_dir(&path).to_owned())
}

/// Strips git's `a/`/`b/` (or mnemonic `i/`, `w/`, `c/`, `o/`, `1/`, `2/`) prefix.
fn strip_prefix_dir(path: &str) -> &str {
    let b = path.as_bytes();
    if b.len() > 2 && b[1] == b'/' && matches!(b[0], b'a' | b'b' | b'i' | b'w' | b'c' | b'o' | b'1' | b'2') {
        &path[2..]
    } else {
        path
    }
}

/// The two paths of `diff --git <a> <b>`, prefixes stripped. Quoted halves are exact; two
/// unquoted halves are ambiguous when paths hold spaces, so the line is split where both
/// halves name the same path (the common case), else at the first ` b/`. Callers prefer the
/// `rename`/`---`/`+++` paths, which are unambiguous.
fn split_git_header(rest: &[u8]) -> (Option<String>, Option<String>) {
    if rest.first() == Some(&b'"') {
        let (old, used) = unquote_prefix(rest);
        let tail = rest.get(used..).unwrap_or_default();
        let tail = tail.strip_prefix(b" ").unwrap_or(tail);
        let new = if tail.first() == Some(&b'"') {
            unquote_prefix(tail).0
        } else {
            String::from_utf8_lossy(tail).into_owned()
        };
        return (Some(strip_prefix_dir(&old).to_owned()), Some(strip_prefix_dir(&new).to_owned()));
    }
    // `a/x "b/y"`: unquoted old, quoted new.
    if let Some(i) = find(rest, b" \"") {
        if rest.last() == Some(&b'"') {
            let old = String::from_utf8_lossy(&rest[..i]).into_owned();
            let new = unquote_prefix(&rest[i + 1..]).0;
            return (Some(strip_prefix_dir(&old).to_owned()), Some(strip_prefix_dir(&new).to_owned()));
        }
    }
    let s = String::from_utf8_lossy(rest);
    let bytes = s.as_bytes();
    // Same path on both sides: `a/P b/P` has length 2·len(P) + 5 with the space in the middle.
    if bytes.len() >= 5 && bytes.len() % 2 == 1 {
        let mid = bytes.len() / 2;
        if bytes[mid] == b' ' && s.is_char_boundary(mid) && s.is_char_boundary(mid + 1) {
            let (a, b) = (&s[..mid], &s[mid + 1..]);
            if strip_prefix_dir(a) == strip_prefix_dir(b) && a.len() > 2 {
                return (Some(strip_prefix_dir(a).to_owned()), Some(strip_prefix_dir(b).to_owned()));
            }
        }
    }
    if let Some(i) = s.find(" b/") {
        return (Some(strip_prefix_dir(&s[..i]).to_owned()), Some(s[i + 3..].to_owned()));
    }
    match s.split_once(' ') {
        Some((a, b)) => (Some(strip_prefix_dir(a).to_owned()), Some(strip_prefix_dir(b).to_owned())),
        None => (Some(s.clone().into_owned()), Some(s.into_owned())),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A path of `rename from`/`copy to` lines: C-quoted or raw, without a prefix.
fn unquote(raw: &[u8]) -> String {
    if raw.first() == Some(&b'"') {
        unquote_prefix(raw).0
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

/// Unquotes a C-style quoted string at the start of `raw` (git's `quote_c_style`: `\a \b \t
/// \n \v \f \r \" \\` and 3-digit octal bytes), returning it (lossy UTF-8) and the bytes
/// consumed. An unterminated string takes the rest of the input.
fn unquote_prefix(raw: &[u8]) -> (String, usize) {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 1; // skip the opening quote
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), i + 1),
            b'\\' if i + 1 < raw.len() => {
                let e = raw[i + 1];
                i += 2;
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'v' => out.push(11),
                    b'f' => out.push(12),
                    b'r' => out.push(b'\r'),
                    b'0'..=b'7' => {
                        let mut v: u32 = u32::from(e - b'0');
                        let mut k = 0;
                        while k < 2 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                            v = v * 8 + u32::from(raw[i] - b'0');
                            i += 1;
                            k += 1;
                        }
                        out.push((v & 0xff) as u8);
                    }
                    other => out.push(other),
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), raw.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The corpus diffs with the README's table: (file name prefix, files, added, removed).
    const TABLE: [(&str, usize, usize, usize); 8] = [
        ("01-tiny", 1, 1, 1),
        ("02-medium", 13, 449, 73),
        ("03-large", 144, 20_961, 10_390),
        ("04-renames-binary", 15, 849, 852),
        ("05-renames-spaces", 87, 66, 55),
        ("06-non-utf8", 8, 357, 49),
        ("07-crlf", 6, 247, 246),
        ("08-minified", 2, 6, 5),
    ];

    pub(crate) fn corpus(prefix: &str) -> Option<(PathBuf, Vec<u8>)> {
        let dir = crate::test_support::corpora_dir()?.join("diffs");
        let entry = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))?;
        let bytes = std::fs::read(entry.path()).expect("read corpus diff");
        Some((entry.path(), bytes))
    }

    #[test]
    fn corpus_totals_match_readme() {
        for (prefix, files, added, removed) in TABLE {
            let Some((_, bytes)) = corpus(prefix) else { return };
            let d = parse(&bytes);
            assert_eq!(d.files.len(), files, "{prefix}: files");
            assert_eq!(d.files.iter().map(FileDiff::added).sum::<usize>(), added, "{prefix}: added");
            assert_eq!(d.files.iter().map(FileDiff::removed).sum::<usize>(), removed, "{prefix}: removed");
        }
    }

    /// `git apply --numstat -z` output: (added, removed, path) per file, `None` counts for
    /// binary (`-\t-`). The rename form is `a\td\t\0old\0new\0`.
    /// One `git apply --numstat` row: added, removed (None for binary), path.
    type NumstatRow = (Option<usize>, Option<usize>, String);

    fn git_numstat(path: &std::path::Path) -> Option<Vec<NumstatRow>> {
        let out = std::process::Command::new("git").args(["apply", "--numstat", "-z"]).arg(path).output().ok()?;
        assert!(out.status.success(), "git apply failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut fields = out.stdout.split(|&b| b == 0);
        let mut rows = Vec::new();
        while let Some(f) = fields.next() {
            if f.is_empty() {
                continue;
            }
            let s = String::from_utf8_lossy(f);
            let mut parts = s.splitn(3, '\t');
            let a = parts.next().unwrap_or_default().parse().ok();
            let r = parts.next().unwrap_or_default().parse().ok();
            let mut p = parts.next().unwrap_or_default().to_owned();
            if p.is_empty() {
                let _old = fields.next();
                p = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            }
            rows.push((a, r, p));
        }
        Some(rows)
    }

    #[test]
    fn per_file_counts_match_git_numstat() {
        if std::process::Command::new("git").arg("--version").output().is_err() {
            eprintln!("skipping: git not found");
            return;
        }
        for (prefix, ..) in TABLE {
            let Some((path, bytes)) = corpus(prefix) else { return };
            let d = parse(&bytes);
            let rows = git_numstat(&path).expect("git numstat");
            assert_eq!(rows.len(), d.files.len(), "{prefix}: file count");
            for (f, (a, r, p)) in d.files.iter().zip(&rows) {
                assert_eq!(f.path(), p, "{prefix}: path");
                match (a, r) {
                    (Some(a), Some(r)) => {
                        assert_eq!((f.added(), f.removed()), (*a, *r), "{prefix}: {p}");
                        assert!(!f.is_binary, "{prefix}: {p} is not binary");
                    }
                    _ => assert!(f.is_binary, "{prefix}: {p} should be binary"),
                }
            }
        }
    }

    #[test]
    fn renames_binary_and_submodules_in_05() {
        let Some((_, bytes)) = corpus("05-renames-spaces") else { return };
        let d = parse(&bytes);
        let pure: Vec<_> = d.files.iter().filter(|f| f.status == FileStatus::Renamed && f.hunks.is_empty()).collect();
        assert_eq!(pure.len(), 80);
        assert!(pure.iter().all(|f| f.similarity == Some(100)));
        assert_eq!(d.files.iter().filter(|f| f.is_submodule).count(), 47);
        assert_eq!(d.files.iter().filter(|f| f.is_binary).count(), 1);
        let arm = d
            .files
            .iter()
            .find(|f| f.old_path.as_deref() == Some("assets/syntaxes/Assembly (ARM).sublime-syntax"))
            .expect("ARM syntax renamed");
        assert_eq!(arm.new_path.as_deref(), Some("assets/syntaxes/02_Extra/Assembly (ARM).sublime-syntax"));
        assert_eq!(arm.status, FileStatus::Renamed);
        assert!(!arm.is_submodule);
        let bin = d.files.iter().find(|f| f.is_binary).expect("binary");
        assert_eq!(bin.path(), "assets/syntaxes.bin");
        assert_eq!(bin.status, FileStatus::Modified);
    }

    #[test]
    fn renames_with_changes_and_binary_in_04() {
        let Some((_, bytes)) = corpus("04-renames-binary") else { return };
        let d = parse(&bytes);
        let renamed: Vec<_> = d.files.iter().filter(|f| f.status == FileStatus::Renamed).collect();
        assert_eq!(renamed.len(), 9);
        assert!(renamed.iter().all(|f| !f.hunks.is_empty() && f.similarity.is_some_and(|s| s < 100)));
        assert!(renamed.iter().all(|f| f.old_path != f.new_path));
        let bins: Vec<_> = d.files.iter().filter(|f| f.is_binary).map(|f| f.path()).collect();
        assert_eq!(bins, ["doc/sample_html/keybd_closed.png", "doc/sample_html/keybd_open.png"]);
    }

    #[test]
    fn crlf_in_07() {
        let Some((_, bytes)) = corpus("07-crlf") else { return };
        let d = parse(&bytes);
        let lines: Vec<(&Line, &str)> = d.files.iter().flat_map(|f| &f.hunks).flat_map(Hunk::lines_with_text).collect();
        assert!(lines.iter().all(|(_, t)| !t.contains('\r')));
        let crlf = lines.iter().filter(|(l, _)| l.crlf && l.kind == LineKind::Removed).count();
        assert_eq!(crlf, 245);
    }

    #[test]
    fn latin1_in_06_is_replaced_lossily() {
        let Some((_, bytes)) = corpus("06-non-utf8") else { return };
        let d = parse(&bytes);
        let f = d.files.iter().find(|f| f.path().ends_with("/isolatin1.py")).expect("isolatin1.py");
        assert_eq!(f.status, FileStatus::Added);
        assert!(f.hunks.iter().flat_map(Hunk::lines_with_text).any(|(_, t)| t.contains('\u{FFFD}')));
    }

    #[test]
    fn long_line_in_08_survives() {
        let Some((_, bytes)) = corpus("08-minified") else { return };
        let d = parse(&bytes);
        let longest =
            d.files.iter().flat_map(|f| &f.hunks).flat_map(Hunk::lines_with_text).map(|(_, t)| t.chars().count()).max();
        // The README's 89,412 counts the `+` marker.
        assert_eq!(longest, Some(89_411));
    }

    #[test]
    fn a_line_is_28_bytes_and_holds_no_text_of_its_own() {
        // The memory budget of a parsed diff (module doc) rests on this.
        assert!(std::mem::size_of::<Line>() <= 28, "{}", std::mem::size_of::<Line>());
    }

    #[test]
    fn parse_owned_keeps_valid_utf8_input_as_the_text_buffer() {
        let input = b"diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n-x\n+y\n+z\r\n".to_vec();
        let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
        let d = parse_owned(input);
        let h = &d.files[0].hunks[0];
        let texts: Vec<&str> = h.lines_with_text().map(|(_, t)| t).collect();
        assert_eq!(texts, ["x", "y", "z"]);
        assert!(texts.iter().all(|t| range.contains(&(t.as_ptr() as usize))), "text copied");
    }

    #[test]
    fn parse_owned_equals_parse_on_every_corpus_diff() {
        for (prefix, ..) in TABLE {
            let Some((_, bytes)) = corpus(prefix) else { return };
            assert_eq!(parse_owned(bytes.clone()), parse(&bytes), "{prefix}");
        }
        let latin1 = b"diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-\xe9t\xe9\n+caf\xc3\xa9\n".to_vec();
        let d = parse_owned(latin1.clone());
        assert_eq!(d, parse(&latin1));
        let h = &d.files[0].hunks[0];
        assert_eq!(h.text(&h.lines[0]), "\u{FFFD}t\u{FFFD}");
        assert_eq!(h.text(&h.lines[1]), "café");
    }

    #[test]
    fn header_forms() {
        let diff = b"commit 123\nAuthor: x\n\n    msg\n\ndiff --git \"a/caf\\303\\251 x\" \"b/caf\\303\\251 x\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/caf\\303\\251 x\"\n@@ -0,0 +1 @@\n+hi\n\\ No newline at end of file\ndiff --git a/m b/m\nold mode 100644\nnew mode 100755\ndiff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\ndiff --git a/s b/s\nindex 1234..5678 160000\n--- a/s\n+++ b/s\n@@ -1 +1 @@\n-Subproject commit 1234\n+Subproject commit 5678\ndiff --git a/x y b/x y\nindex 1..2 100644\n--- a/x y\t\n+++ b/x y\t\n@@ -1 +1 @@\n-a\r\n+b\r\n";
        let d = parse(diff);
        assert_eq!(d.files.len(), 5);
        let f = &d.files[0];
        assert_eq!((f.status, f.old_path.as_deref(), f.new_path.as_deref()), (FileStatus::Added, None, Some("café x")));
        assert!(f.hunks[0].lines[0].no_newline_at_eof);
        assert_eq!(f.hunks[0].lines[0].new_line, Some(1));
        let m = &d.files[1];
        assert_eq!((m.old_mode.as_deref(), m.new_mode.as_deref(), m.path()), (Some("100644"), Some("100755"), "m"));
        assert_eq!((d.files[2].status, d.files[2].path(), d.files[2].removed()), (FileStatus::Deleted, "gone", 2));
        assert!(d.files[3].is_submodule);
        let xy = &d.files[4];
        assert_eq!((xy.old_path.as_deref(), xy.new_path.as_deref()), (Some("x y"), Some("x y")));
        assert!(xy.hunks[0].lines_with_text().all(|(l, t)| l.crlf && !t.contains('\r')));
    }

    #[test]
    fn counts_end_hunks_and_missing_counts_default_to_one() {
        // The `--- a/b` after the exhausted hunk is a header of nothing, not a removed line.
        let d = parse(b"diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@ fn x\n-x\n+y\n--- a/b\n+++ b/b\n@@ -5,2 +5,3 @@\n c\n+n\n c\n");
        let f = &d.files[0];
        assert_eq!(f.hunks.len(), 2);
        assert_eq!(f.hunks[0].section, "fn x");
        assert_eq!((f.added(), f.removed()), (2, 1));
        let nums: Vec<_> = f.hunks[1].lines.iter().map(|l| (l.old_line, l.new_line)).collect();
        assert_eq!(nums, [(Some(5), Some(5)), (None, Some(6)), (Some(6), Some(7))]);
    }

    #[test]
    fn truncated_and_garbage_inputs() {
        assert_eq!(parse(b""), Diff::default());
        assert_eq!(parse(b"\xff\xfe garbage\n@@ -1 +1 @@\n+x\n").files.len(), 0);
        let d = parse(b"diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1,100 +1,100 @@\n c\n+x\n-");
        assert_eq!(d.files[0].hunks[0].lines.len(), 3);
        let d = parse(b"diff --git a/a b/a\n@@ -4294967295,5 +4294967295,5 @@\n c\n c\n c\n");
        assert_eq!(d.files[0].hunks[0].lines.len(), 1);
        let d = parse(b"diff --git a/a b/a\nGIT binary patch\nliteral 5\nMcmZ?l\n\nliteral 0\n+ not a line\n");
        assert!(d.files[0].is_binary && d.files[0].hunks.is_empty());
    }
}
