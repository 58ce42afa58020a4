//! Packs reviewable hunks into chunks that fit a model's context budget, biggest risk first,
//! and renders each chunk as the annotated diff the model reads line numbers from.
//!
//! Tokens are counted by [`TokenCounting`]: a fast conservative estimate by default, or the
//! exact `tiktoken-rs` `o200k_base` count on request. A hunk larger than one chunk is split at
//! line boundaries. What does not fit the total budget is reported, never dropped silently.
//!
//! Order (biggest risk first, a simple heuristic): source and configuration files, then
//! tests, then documentation; within a class, more changed (added + removed) lines first; ties
//! keep diff order.
//!
//! Token counting: the rendered text is counted one line at a time (each rendered line with
//! its `\n`), and a chunk's tokens are the sum. With [`TokenCounting::Exact`] the sum is the
//! whole chunk's count: `o200k_base` pre-splits text with a regex before BPE, and no pre-token
//! crosses the end of a rendered line, because every rendered line holds a non-space character
//! and the next one never starts with `\r`, `\n` or `/` (the only characters a pre-token may
//! continue with after a `\n`). The estimate restarts at every `\n` by construction. So
//! `counting.count(chunk.render(diff)) == chunk.tokens` in both modes (tested), each line is
//! counted once, and packing never needs a re-count.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

use crate::diff::{Diff, FileDiff, FileStatus, Hunk, Line, LineKind, SkipReason, Skipped};

/// How the chunker counts tokens (config `review.token_counting`).
///
/// Why an estimate is the default: the count only decides how hunks are packed under the
/// budgets, and `o200k_base` (OpenAI's GPT-4o family encoding) is not the tokenizer of most
/// models we talk to anyway. Claude uses Anthropic's own tokenizer, which is not published and
/// yields noticeably more tokens than `o200k_base` for the same code (Anthropic points to its
/// token-counting API instead); Gemini uses a SentencePiece vocabulary; local models bring
/// their own. An "exact" `o200k_base` count is therefore exact only for OpenAI models, and
/// building its encoder costs about 45 MB and 0.1 s per process. Billing and the ledger never
/// use these counts: they use the usage each provider reports with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCounting {
    /// [`estimate_tokens`]: no tokenizer, calibrated to count at least as many tokens as
    /// `o200k_base` on real diffs (see the calibration test), at most about 25 % more on average.
    #[default]
    Estimate,
    /// [`count_tokens`]: `tiktoken-rs` `o200k_base`, the encoder built once per process.
    Exact,
}

impl TokenCounting {
    /// Tokens of `text` in this mode.
    pub fn count(self, text: &str) -> usize {
        match self {
            TokenCounting::Estimate => estimate_tokens(text),
            TokenCounting::Exact => count_tokens(text),
        }
    }
}

/// Token limits for packing, in tokens, and how tokens are counted.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    /// Largest rendered diff text per chunk (tokens), excluding the fixed prompt.
    pub max_chunk_tokens: usize,
    /// Sum over all chunks (tokens); past it, files are listed as [`crate::diff::SkipReason::OverBudget`].
    pub max_total_tokens: usize,
    /// Estimate (default) or exact `o200k_base` count.
    pub counting: TokenCounting,
}

/// One piece of a hunk inside a chunk: file index into `Diff::files`, hunk index, and the line
/// range `[start, end)` into `Hunk::lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkSlice {
    pub file: usize,
    pub hunk: usize,
    pub start: usize,
    pub end: usize,
}

/// A group of hunk slices sent in one model request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub slices: Vec<HunkSlice>,
    /// Tokens of [`Chunk::render`]'s output.
    pub tokens: usize,
}

/// The result of packing: chunks to send and files that did not fit.
///
/// Files are told apart by their index into `Diff::files`, not by path: one diff may name a
/// path twice (git writes a type change, e.g. symlink to file, as a deletion plus an addition
/// of the same path), and path-keyed bookkeeping then marked the wrong entry partial.
/// Every packed file is exactly one of: reviewed (not in `over_budget_files`), partly reviewed
/// (in both `over_budget_files` and `partial`), or not reviewed (in `over_budget_files` only).
#[derive(Debug, Clone, Default)]
pub struct ChunkPlan {
    pub chunks: Vec<Chunk>,
    /// Every file not completely packed, with [`SkipReason::OverBudget`], in the order of
    /// `over_budget_files` (same length); for the summary.
    pub over_budget: Vec<Skipped>,
    /// Indices into `Diff::files` of the files in `over_budget`.
    pub over_budget_files: Vec<usize>,
    /// Indices (a subset of `over_budget_files`) of files of which some lines are in `chunks`
    /// and some did not fit: the summary should say "partially reviewed" for them.
    pub partial: Vec<usize>,
}

impl ChunkPlan {
    /// Whether the file at index `file` of `Diff::files` was only partly packed (some of its
    /// lines are reviewed, others not).
    pub fn is_partial(&self, file: usize) -> bool {
        self.partial.contains(&file)
    }

    /// Whether the file at index `file` was not completely packed.
    pub fn is_over_budget(&self, file: usize) -> bool {
        self.over_budget_files.contains(&file)
    }

    /// Sum of the chunks' tokens.
    pub fn total_tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.tokens).sum()
    }
}

/// Why packing of a file stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// One line (with its headers) is larger than a whole chunk: the rest of this file is
    /// left out, later files are still packed.
    LineTooLarge,
    /// The total budget is used up: this file and all later ones are left out.
    TotalBudget,
}

impl Chunker {
    /// Packs the hunks of the files at `files` (indices into `diff.files`, already filtered).
    ///
    /// Indices out of range are ignored. Hunks without lines are skipped (nothing to review).
    pub fn plan(&self, diff: &Diff, files: &[usize]) -> ChunkPlan {
        let mut order: Vec<usize> = files.iter().copied().filter(|&i| i < diff.files.len()).collect();
        order.sort_by_key(|&i| {
            let f = &diff.files[i];
            (risk_class(f.path()), std::cmp::Reverse(f.added() + f.removed()), i)
        });
        // After sorting, a repeated index is adjacent (equal keys): pack each file once.
        order.dedup();

        let mut plan = ChunkPlan::default();
        let mut cur = Chunk { slices: Vec::new(), tokens: 0 };
        let mut total = 0usize;
        let mut stopped = false;
        let file_costs = count_files(diff, &order, self.counting);
        for (&fi, fc) in order.iter().zip(&file_costs) {
            let file = &diff.files[fi];
            if stopped {
                plan.over_budget.push(Skipped { path: file.path().to_owned(), reason: SkipReason::OverBudget });
                plan.over_budget_files.push(fi);
                continue;
            }
            let file_header = fc.header;
            let mut packed_any = false;
            let mut stop = None;
            'hunks: for (hi, hunk) in file.hunks.iter().enumerate() {
                if hunk.lines.is_empty() {
                    continue;
                }
                let HunkCosts { header: hunk_header, continued: cont_header, lines: costs } = &fc.hunks[hi];
                let (hunk_header, cont_header) = (*hunk_header, *cont_header);
                let mut start = 0;
                while start < costs.len() {
                    let needs_file_header = cur.slices.last().is_none_or(|s| s.file != fi);
                    let fixed = if needs_file_header { file_header } else { 0 }
                        + if start == 0 { hunk_header } else { cont_header };
                    let room_chunk = self.max_chunk_tokens.saturating_sub(cur.tokens);
                    let room_total = self.max_total_tokens.saturating_sub(total);
                    let room = room_chunk.min(room_total);
                    let mut used = fixed;
                    let mut end = start;
                    while end < costs.len() && used + costs[end] <= room {
                        used += costs[end];
                        end += 1;
                    }
                    if end == start || used > room {
                        if room_total < room_chunk || room_total == 0 {
                            // Past the total budget, not just this chunk's end.
                            stop = Some(Stop::TotalBudget);
                            break 'hunks;
                        }
                        if cur.slices.is_empty() {
                            stop = Some(Stop::LineTooLarge);
                            break 'hunks;
                        }
                        plan.chunks.push(std::mem::replace(&mut cur, Chunk { slices: Vec::new(), tokens: 0 }));
                        continue;
                    }
                    cur.slices.push(HunkSlice { file: fi, hunk: hi, start, end });
                    cur.tokens += used;
                    total += used;
                    packed_any = true;
                    start = end;
                }
            }
            if let Some(stop) = stop {
                if packed_any {
                    plan.partial.push(fi);
                }
                plan.over_budget.push(Skipped { path: file.path().to_owned(), reason: SkipReason::OverBudget });
                plan.over_budget_files.push(fi);
                stopped = stop == Stop::TotalBudget;
            }
        }
        if !cur.slices.is_empty() {
            plan.chunks.push(cur);
        }
        plan
    }
}

impl Chunk {
    /// Renders the chunk as the annotated diff shown to the model: per file a `## path` header,
    /// per hunk its `@@` header, and each line prefixed with its old and new line numbers, e.g.
    /// `   12    14 + let x = 1;` so the model can read `line` (new) or `line` (old, side LEFT).
    ///
    /// Shape, one item per line and no blank lines (see the module doc on why):
    /// ```text
    /// ## src/new.rs (renamed from src/old.rs)
    /// @@ -10,3 +10,4 @@ fn main()
    ///    10    10   unchanged
    ///    11       - removed
    ///          11 + added
    /// \ No newline at end of file
    /// ```
    /// The file header's note is `(added)`, `(deleted)`, `(renamed from X)` or `(copied from
    /// X)`; a hunk split over several slices repeats its header with ` (continued)` on the
    /// later slices. Numbers are right-aligned in 5 columns (wider when needed).
    pub fn render(&self, diff: &Diff) -> String {
        let mut out = String::new();
        let mut prev_file = None;
        for s in &self.slices {
            let Some(file) = diff.files.get(s.file) else { continue };
            let Some(hunk) = file.hunks.get(s.hunk) else { continue };
            if prev_file != Some(s.file) {
                render_file_header(&mut out, file);
                prev_file = Some(s.file);
            }
            render_hunk_header(&mut out, hunk, s.start > 0);
            for line in hunk.lines.get(s.start..s.end).unwrap_or_default() {
                render_line(&mut out, line, hunk.text(line));
            }
        }
        out
    }
}

/// Risk class for ordering: 0 source and configuration, 1 tests, 2 documentation.
fn risk_class(path: &str) -> u8 {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let dirs: Vec<&str> = lower.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];
    let is_doc = [".md", ".rst", ".txt", ".adoc", ".markdown"].iter().any(|e| name.ends_with(e))
        || ["changelog", "license", "readme", "copying", "authors"].iter().any(|p| name.starts_with(p))
        || dirs.iter().any(|d| *d == "doc" || *d == "docs");
    if is_doc {
        return 2;
    }
    let is_test = dirs.iter().any(|d| matches!(*d, "test" | "tests" | "__tests__" | "spec" | "testdata" | "fixtures"))
        || name.starts_with("test_")
        || name.contains("_test.")
        || name.contains(".test.")
        || name.contains(".spec.");
    u8::from(is_test)
}

/// Tokens of every rendered piece of one file: its header, and per hunk the header, the
/// `(continued)` header and each line.
struct FileCosts {
    header: usize,
    hunks: Vec<HunkCosts>,
}

struct HunkCosts {
    header: usize,
    continued: usize,
    lines: Vec<usize>,
}

fn file_costs(file: &FileDiff, counting: TokenCounting) -> FileCosts {
    let mut buf = String::new();
    FileCosts {
        header: count_line(&mut buf, counting, |b| render_file_header(b, file)),
        hunks: file
            .hunks
            .iter()
            .map(|hunk| HunkCosts {
                header: count_line(&mut buf, counting, |b| render_hunk_header(b, hunk, false)),
                continued: count_line(&mut buf, counting, |b| render_hunk_header(b, hunk, true)),
                lines: hunk
                    .lines_with_text()
                    .map(|(l, t)| count_line(&mut buf, counting, |b| render_line(b, l, t)))
                    .collect(),
            })
            .collect(),
    }
}

/// Counts the files of `order` on every available core: BPE counting is nearly all of the
/// planning time on a large diff (about 0.1 s per MB on one core), and files are independent.
/// Workers take the next file from a shared index, so one huge file does not idle the others.
/// The result is in `order`'s order and identical to a sequential count.
/// The estimate is about two orders of magnitude cheaper than BPE: it always runs on the
/// calling thread.
fn count_files(diff: &Diff, order: &[usize], counting: TokenCounting) -> Vec<FileCosts> {
    let sequential = || order.iter().map(|&i| file_costs(&diff.files[i], counting)).collect();
    if counting == TokenCounting::Estimate {
        return sequential();
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(order.len());
    // Small diffs: threads cost more than they save.
    let bytes: usize = order
        .iter()
        .map(|&i| diff.files[i].hunks.iter().flat_map(|h| &h.lines).map(|l| l.text_len() + 16).sum::<usize>())
        .sum();
    if workers <= 1 || bytes < 64 * 1024 {
        return sequential();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut counted: Vec<(usize, FileCosts)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = vec![];
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&fi) = order.get(k) else { break };
                        out.push((k, file_costs(&diff.files[fi], counting)));
                    }
                    out
                })
            })
            .collect();
        // A worker only panics if counting panics, which the sequential path would too.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    counted.sort_by_key(|(k, _)| *k);
    if counted.len() != order.len() {
        // A worker died: fall back to counting here rather than plan on partial costs.
        return sequential();
    }
    counted.into_iter().map(|(_, c)| c).collect()
}

/// Renders one line into `buf` (cleared first) and counts its tokens.
fn count_line(buf: &mut String, counting: TokenCounting, render: impl FnOnce(&mut String)) -> usize {
    buf.clear();
    render(buf);
    counting.count(buf)
}

fn render_file_header(out: &mut String, file: &FileDiff) {
    out.push_str("## ");
    out.push_str(file.path());
    let old = file.old_path.as_deref().unwrap_or("");
    let _ = match file.status {
        FileStatus::Added => out.write_str(" (added)"),
        FileStatus::Deleted => out.write_str(" (deleted)"),
        FileStatus::Renamed => write!(out, " (renamed from {old})"),
        FileStatus::Copied => write!(out, " (copied from {old})"),
        FileStatus::Modified => Ok(()),
    };
    out.push('\n');
}

fn render_hunk_header(out: &mut String, hunk: &Hunk, continued: bool) {
    let _ = write!(out, "@@ -{},{} +{},{} @@", hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines);
    if !hunk.section.is_empty() {
        out.push(' ');
        out.push_str(&hunk.section);
    }
    if continued {
        out.push_str(" (continued)");
    }
    out.push('\n');
}

/// `{old:>5} {new:>5} {marker} {text}\n`, plus git's `\ No newline at end of file` line.
fn render_line(out: &mut String, line: &Line, text: &str) {
    let num = |out: &mut String, n: Option<u32>| {
        let _ = match n {
            Some(n) => write!(out, "{n:>5}"),
            None => out.write_str("     "),
        };
    };
    num(out, line.old_line);
    out.push(' ');
    num(out, line.new_line);
    out.push_str(match line.kind {
        LineKind::Context => "   ",
        LineKind::Added => " + ",
        LineKind::Removed => " - ",
    });
    out.push_str(text);
    out.push('\n');
    if line.no_newline_at_eof {
        out.push_str("\\ No newline at end of file\n");
    }
}

/// Costs of the estimate, in hundredths of a token.
mod cost {
    /// Per started group of [`LETTERS_PER_TOKEN`] letters of a word piece with a lower-case letter.
    pub(super) const WORD_GROUP: usize = 100;
    /// Letters per token of a word piece with a lower-case letter.
    pub(super) const LETTERS_PER_TOKEN: usize = 4;
    /// Per started pair of letters of an all-capitals piece (`TOML` is `T`, `OM`, `L`).
    pub(super) const CAPS_PAIR: usize = 100;
    /// A punctuation character or tab joining the word after it: often a token of its own.
    pub(super) const JOINED_PREFIX: usize = 25;
    /// Per started group of three digits (`o200k_base` splits digits so).
    pub(super) const DIGIT_GROUP: usize = 100;
    /// Per started group of [`SPACES_PER_TOKEN`] blanks.
    pub(super) const BLANK_GROUP: usize = 100;
    /// Blanks per token (`o200k_base` has single tokens for long runs of spaces).
    pub(super) const SPACES_PER_TOKEN: usize = 8;
    /// Per started pair of punctuation characters.
    pub(super) const PUNCT_PAIR: usize = 100;
    /// Per started pair of bytes of a non-ASCII character.
    pub(super) const WIDE_PAIR: usize = 100;
    /// A line end (with the blanks before it).
    pub(super) const LINE_END: usize = 50;
}

/// A fast, conservative token estimate of `text` (no tokenizer, one pass over the bytes).
///
/// It mimics the pre-tokenizer of `o200k_base` (the regex that splits text before BPE): words
/// split at a lower-to-upper case change, a single blank or punctuation character joining the
/// word after it, digits in groups of three, runs of punctuation and of blanks, and a line end
/// (with the blanks before it) as one piece. Each piece costs a share of a token per character
/// by class (see `cost`), summed per line and rounded up. The figures are calibrated on the
/// corpus diffs so the estimate of a chunk is at least the exact `o200k_base` count for 99 % of
/// chunks and at most 25 % above it on average
/// (`estimate_is_conservative_and_close_on_the_corpus_diffs` prints the figures).
///
/// The sum restarts at every line end, so the estimate of several lines is the sum of theirs.
pub fn estimate_tokens(text: &str) -> usize {
    let b = text.as_bytes();
    let n = b.len();
    let is_punct = |c: u8| c.is_ascii() && !c.is_ascii_alphanumeric() && !c.is_ascii_whitespace();
    let is_blank = |c: u8| matches!(c, b' ' | b'\t' | 0x0b | 0x0c);
    let mut tokens = 0;
    // Hundredths of a token on the current line.
    let mut units = 0;
    let mut i = 0;
    while i < n {
        let c = b[i];
        let start = i;
        if c.is_ascii_alphabetic() {
            i += 1;
            while i < n && b[i].is_ascii_alphabetic() && !(b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase()) {
                i += 1;
            }
            let len = i - start;
            units += if b[start..i].iter().all(u8::is_ascii_uppercase) {
                len.div_ceil(2) * cost::CAPS_PAIR
            } else {
                len.div_ceil(cost::LETTERS_PER_TOKEN) * cost::WORD_GROUP
            };
            if start > 0 && b[start - 1] != b' ' && (is_punct(b[start - 1]) || is_blank(b[start - 1])) {
                units += cost::JOINED_PREFIX;
            }
        } else if c.is_ascii_digit() {
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
            units += (i - start).div_ceil(3) * cost::DIGIT_GROUP;
        } else if c == b'\n' || c == b'\r' {
            while i < n && (b[i] == b'\n' || b[i] == b'\r') {
                i += 1;
            }
            tokens += (units + cost::LINE_END).div_ceil(100);
            units = 0;
        } else if is_blank(c) {
            while i < n && is_blank(b[i]) {
                i += 1;
            }
            let m = i - start;
            let rest = match b.get(i) {
                // Blanks before a line end join its piece.
                Some(b'\n' | b'\r') => 0,
                // The last blank starts the next word or punctuation piece.
                Some(&next) if next.is_ascii_alphabetic() || is_punct(next) || !next.is_ascii() => m - 1,
                // Before digits (or at the end) the last blank is a piece of its own.
                _ => {
                    units += cost::BLANK_GROUP;
                    m - 1
                }
            };
            units += rest.div_ceil(cost::SPACES_PER_TOKEN) * cost::BLANK_GROUP;
        } else if is_punct(c) {
            while i < n && is_punct(b[i]) {
                i += 1;
            }
            let p = i - start;
            // One punctuation character before a word is part of that word's piece.
            let joins_word = p == 1 && b.get(i).is_some_and(u8::is_ascii_alphabetic);
            if !joins_word {
                units += p.div_ceil(2) * cost::PUNCT_PAIR;
            }
        } else {
            // Non-ASCII: `text` is a str, so this is a UTF-8 lead byte and its continuation bytes.
            i += 1;
            while i < n && (b[i] & 0xC0) == 0x80 {
                i += 1;
            }
            units += (i - start).div_ceil(2) * cost::WIDE_PAIR;
        }
    }
    tokens + units.div_ceil(100)
}

/// Counts tokens of `text` with the `o200k_base` encoding (GPT-4o family); other models'
/// counts are close enough for budgeting.
///
/// The encoder is built once per process (about 0.1 s). If it cannot be built (the vocabulary
/// is compiled into `tiktoken-rs`, so this does not happen in practice) the byte length is
/// returned, which is an upper bound: every token covers at least one byte.
pub fn count_tokens(text: &str) -> usize {
    bpe().map_or(text.len(), |bpe| bpe.encode_ordinary(text).len())
}

/// For [`TokenCounting::Exact`], builds the encoder on a background thread, so its cost (about
/// 0.1 s and 45 MB) overlaps network calls and diff parsing instead of delaying the first
/// count; later calls wait for it if needed. For [`TokenCounting::Estimate`] it does nothing:
/// the encoder is never built.
pub fn warm_up(counting: TokenCounting) {
    if counting == TokenCounting::Exact {
        std::thread::spawn(|| {
            let _ = bpe();
        });
    }
}

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diff::{parse, FileFilter};

    /// Every added/removed line of every given file lies in some slice, or its file is in
    /// `over_budget`; no chunk is over the limit; with `recount`, `tokens` equals the chunker's
    /// count of the rendered chunk. Reviewed, partly reviewed and not reviewed files are
    /// disjoint and add up to `files`.
    pub(crate) fn check_plan(diff: &Diff, files: &[usize], chunker: Chunker, plan: &ChunkPlan, recount: bool) {
        let mut covered: Vec<Vec<Vec<bool>>> =
            diff.files.iter().map(|f| f.hunks.iter().map(|h| vec![false; h.lines.len()]).collect()).collect();
        for c in &plan.chunks {
            assert!(!c.slices.is_empty());
            assert!(c.tokens <= chunker.max_chunk_tokens, "chunk of {} tokens", c.tokens);
            if recount {
                assert_eq!(chunker.counting.count(&c.render(diff)), c.tokens);
            }
            for s in &c.slices {
                assert!(s.start < s.end);
                for slot in &mut covered[s.file][s.hunk][s.start..s.end] {
                    assert!(!*slot, "line packed twice");
                    *slot = true;
                }
            }
        }
        assert!(plan.total_tokens() <= chunker.max_total_tokens);
        assert_eq!(plan.over_budget.len(), plan.over_budget_files.len());
        for (s, &fi) in plan.over_budget.iter().zip(&plan.over_budget_files) {
            assert_eq!((s.path.as_str(), &s.reason), (diff.files[fi].path(), &SkipReason::OverBudget));
            assert!(files.contains(&fi), "over budget file {fi} was not asked for");
        }
        let mut seen = plan.over_budget_files.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), plan.over_budget_files.len(), "a file listed twice as over budget");
        assert!(plan.partial.iter().all(|fi| plan.is_over_budget(*fi)), "partial but not over budget");
        let (mut reviewed, mut partly, mut not_reviewed) = (0, 0, 0);
        let mut unique = files.to_vec();
        unique.sort_unstable();
        unique.dedup();
        for &fi in &unique {
            let f = &diff.files[fi];
            let over = plan.is_over_budget(fi);
            for (h, hunk) in f.hunks.iter().enumerate() {
                for (i, l) in hunk.lines.iter().enumerate() {
                    if l.kind != LineKind::Context {
                        assert!(covered[fi][h][i] || over, "{}: hunk {h} line {i} lost", f.path());
                    }
                }
            }
            let any_covered = covered[fi].iter().flatten().any(|&c| c);
            assert_eq!(over && any_covered, plan.is_partial(fi), "{}: partial flag", f.path());
            match (over, plan.is_partial(fi)) {
                (false, _) => reviewed += 1,
                (true, true) => partly += 1,
                (true, false) => not_reviewed += 1,
            }
        }
        assert_eq!(reviewed + partly + not_reviewed, unique.len());
        assert_eq!(partly + not_reviewed, plan.over_budget_files.len());
    }

    fn large() -> Option<Diff> {
        let (_, bytes) = crate::diff::parse::tests::corpus("03-large")?;
        Some(parse(&bytes))
    }

    #[test]
    fn coverage_on_large_diff_with_small_and_generous_budgets() {
        let Some(diff) = large() else { return };
        let filter = FileFilter::new(&["**".into()], &[]).expect("globs");
        let files: Vec<usize> = (0..diff.files.len()).filter(|&i| filter.check(&diff.files[i]).is_none()).collect();
        let generous =
            Chunker { max_chunk_tokens: 12_000, max_total_tokens: usize::MAX, counting: TokenCounting::Exact };
        let plan = generous.plan(&diff, &files);
        check_plan(&diff, &files, generous, &plan, false);
        assert!(plan.over_budget.is_empty() || plan.over_budget.iter().all(|s| s.reason == SkipReason::OverBudget));
        // Exact equality of the per-line sum with a whole-chunk count, on a sample.
        for c in plan.chunks.iter().take(5) {
            assert_eq!(count_tokens(&c.render(&diff)), c.tokens);
        }
        let small = Chunker { max_chunk_tokens: 300, max_total_tokens: 20_000, counting: TokenCounting::Exact };
        let plan = small.plan(&diff, &files);
        check_plan(&diff, &files, small, &plan, false);
        assert!(!plan.over_budget.is_empty());
        assert!(plan.total_tokens() > 18_000, "budget mostly used: {}", plan.total_tokens());
    }

    const DIFF: &[u8] = b"diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1 @@
-old doc
+new doc
diff --git a/src/old.rs b/src/new.rs
similarity index 80%
rename from src/old.rs
rename to src/new.rs
--- a/src/old.rs
+++ b/src/new.rs
@@ -10,3 +10,4 @@ fn main()
 unchanged
-removed
+added one
+added two
 tail
\\ No newline at end of file
";

    #[test]
    fn render_format_and_risk_order() {
        let diff = parse(DIFF);
        let chunker = Chunker { max_chunk_tokens: 10_000, max_total_tokens: 10_000, counting: TokenCounting::Exact };
        let plan = chunker.plan(&diff, &[0, 1]);
        assert_eq!(plan.chunks.len(), 1);
        let text = plan.chunks[0].render(&diff);
        let expected = "\
## src/new.rs (renamed from src/old.rs)
@@ -10,3 +10,4 @@ fn main()
   10    10   unchanged
   11       - removed
         11 + added one
         12 + added two
   12    13   tail
\\ No newline at end of file
## README.md
@@ -1,1 +1,1 @@
    1       - old doc
          1 + new doc
";
        assert_eq!(text, expected);
        assert_eq!(plan.chunks[0].tokens, count_tokens(&text));
        check_plan(&diff, &[0, 1], chunker, &plan, true);
    }

    #[test]
    fn big_hunk_is_split_at_line_boundaries() {
        let mut text = String::from("diff --git a/src/a.rs b/src/a.rs\nnew file mode 100644\n--- /dev/null\n+++ b/src/a.rs\n@@ -0,0 +1,400 @@\n");
        for i in 0..400 {
            text.push_str(&format!("+let value_{i} = compute({i});\n"));
        }
        let diff = parse(text.as_bytes());
        let chunker = Chunker { max_chunk_tokens: 500, max_total_tokens: usize::MAX, counting: TokenCounting::Exact };
        let plan = chunker.plan(&diff, &[0]);
        assert!(plan.chunks.len() > 5);
        assert!(plan.over_budget.is_empty());
        check_plan(&diff, &[0], chunker, &plan, true);
        let second = plan.chunks[1].render(&diff);
        assert!(second.starts_with("## src/a.rs (added)\n@@ -0,0 +1,400 @@ (continued)\n"), "{second}");
        // Slices of the one hunk are contiguous.
        let mut next = 0;
        for c in &plan.chunks {
            for s in &c.slices {
                assert_eq!(s.start, next);
                next = s.end;
            }
        }
        assert_eq!(next, 400);
    }

    #[test]
    fn total_budget_and_too_large_lines_are_reported() {
        let diff = parse(DIFF);
        // Every total budget up to the full need: coverage holds; some budgets cut the
        // rename's hunk (packed first: source before docs) in the middle.
        let need = Chunker { max_chunk_tokens: 1_000, max_total_tokens: usize::MAX, counting: TokenCounting::Exact }
            .plan(&diff, &[0, 1])
            .total_tokens();
        let mut saw_partial = false;
        for budget in 0..=need {
            let chunker = Chunker { max_chunk_tokens: 1_000, max_total_tokens: budget, counting: TokenCounting::Exact };
            let plan = chunker.plan(&diff, &[0, 1]);
            check_plan(&diff, &[0, 1], chunker, &plan, true);
            assert_eq!(plan.over_budget.is_empty(), budget == need, "budget {budget}");
            saw_partial |= plan.partial == [1] && plan.over_budget.len() == 2;
        }
        assert!(saw_partial);
        // A line larger than a chunk: its file is over budget, later files still packed.
        let long = format!(
            "diff --git a/src/x.rs b/src/x.rs\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n-a\n+{}\n",
            "word ".repeat(500)
        );
        let mut d = parse(long.as_bytes());
        d.files.extend(parse(DIFF).files);
        let chunker = Chunker { max_chunk_tokens: 200, max_total_tokens: usize::MAX, counting: TokenCounting::Exact };
        let plan = chunker.plan(&d, &[0, 1, 2]);
        check_plan(&d, &[0, 1, 2], chunker, &plan, true);
        assert_eq!(plan.over_budget, [Skipped { path: "src/x.rs".into(), reason: SkipReason::OverBudget }]);
        assert!(plan.is_partial(0), "the `-a` line fit");
    }

    /// Regression: with the same path twice in one diff (git writes a type change as a
    /// deletion plus an addition of one path; the proptest duplicated a `diff --git` line), the
    /// plan kept `partial` by path, so the second, wholly unreviewed entry was reported as
    /// partly reviewed (`mutated_diffs_never_panic`: "lab/show_pyc.py: partial flag").
    #[test]
    fn same_path_twice_is_not_marked_partial_by_the_other_entry() {
        let text =
            "diff --git a/src/p.rs b/src/p.rs\n--- a/src/p.rs\n+++ b/src/p.rs\n@@ -1,2 +1,2 @@\n-a\n+b\n-c\n+d\n\
diff --git a/src/p.rs b/src/p.rs\n--- a/src/p.rs\n+++ b/src/p.rs\n@@ -9 +9 @@\n-x\n+y\n";
        let diff = parse(text.as_bytes());
        assert_eq!(diff.files.len(), 2);
        for counting in [TokenCounting::Exact, TokenCounting::Estimate] {
            let need = Chunker { max_chunk_tokens: 1_000, max_total_tokens: usize::MAX, counting }
                .plan(&diff, &[0, 1])
                .total_tokens();
            let mut saw_first_partial = false;
            for budget in 0..=need {
                let chunker = Chunker { max_chunk_tokens: 1_000, max_total_tokens: budget, counting };
                let plan = chunker.plan(&diff, &[0, 1]);
                check_plan(&diff, &[0, 1], chunker, &plan, true);
                if plan.is_partial(0) {
                    saw_first_partial = true;
                    assert!(!plan.is_partial(1) && plan.is_over_budget(1), "budget {budget}: {plan:?}");
                }
            }
            assert!(saw_first_partial, "{counting:?}: some budget cuts the first entry");
        }
    }

    /// Calibration of [`estimate_tokens`] against `o200k_base` on every corpus diff, over the
    /// chunks the chunker produces at several chunk sizes: the estimate must be at least the
    /// exact count for 99 % of chunks, and at most 25 % above it on average. Prints the figures.
    #[test]
    fn estimate_is_conservative_and_close_on_the_corpus_diffs() {
        let Some(dir) = crate::test_support::corpora_dir() else { return };
        let mut paths: Vec<_> = std::fs::read_dir(dir.join("diffs"))
            .expect("corpus diffs folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "diff"))
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no corpus diffs");
        let filter = FileFilter::new(&["**".into()], &[]).expect("globs");
        let (mut chunks, mut under, mut ratio_sum) = (0usize, 0usize, 0f64);
        let (mut min_ratio, mut max_ratio) = (f64::MAX, 0f64);
        for path in &paths {
            let diff = parse(&std::fs::read(path).expect("read corpus diff"));
            let files: Vec<usize> = (0..diff.files.len()).filter(|&i| filter.check(&diff.files[i]).is_none()).collect();
            let (mut d_chunks, mut d_est, mut d_exact) = (0usize, 0usize, 0usize);
            for size in [1_000, 4_000, 12_000] {
                let chunker =
                    Chunker { max_chunk_tokens: size, max_total_tokens: usize::MAX, counting: TokenCounting::Estimate };
                for c in chunker.plan(&diff, &files).chunks {
                    let exact = count_tokens(&c.render(&diff));
                    let ratio = c.tokens as f64 / exact.max(1) as f64;
                    chunks += 1;
                    d_chunks += 1;
                    d_est += c.tokens;
                    d_exact += exact;
                    under += usize::from(c.tokens < exact);
                    ratio_sum += ratio;
                    min_ratio = min_ratio.min(ratio);
                    max_ratio = max_ratio.max(ratio);
                }
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            eprintln!(
                "{name}: {d_chunks} chunks, estimate/exact {d_est}/{d_exact} = {:.3}",
                d_est as f64 / d_exact.max(1) as f64
            );
        }
        let conservative = 1.0 - under as f64 / chunks as f64;
        let mean_over = ratio_sum / chunks as f64 - 1.0;
        eprintln!(
            "all: {chunks} chunks, estimate >= exact for {:.1} %, mean over-estimate {:.1} %, ratio min {min_ratio:.3} max {max_ratio:.3}",
            conservative * 100.0,
            mean_over * 100.0
        );
        assert!(chunks >= 20, "too few chunks to calibrate on: {chunks}");
        assert!(conservative >= 0.99, "estimate below exact for {under} of {chunks} chunks");
        assert!(mean_over <= 0.25, "mean over-estimate {:.1} % > 25 %", mean_over * 100.0);
    }

    #[test]
    fn estimate_restarts_at_line_ends_and_the_encoder_is_not_needed() {
        let lines =
            ["   12    14 + let x = foo_bar(1234);\n", "## src/main.rs (added)\n", "caf\u{e9} \u{4e2d}\u{6587}  \n"];
        let whole: String = lines.concat();
        assert_eq!(estimate_tokens(&whole), lines.iter().map(|l| estimate_tokens(l)).sum::<usize>());
        assert_eq!(estimate_tokens(""), 0);
        assert!(estimate_tokens("word") >= 1);
        assert_eq!(TokenCounting::default(), TokenCounting::Estimate);
    }
}
