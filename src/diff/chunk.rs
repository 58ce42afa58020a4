//! Packs reviewable hunks into chunks that fit a model's context budget, biggest risk first,
//! and renders each chunk as the annotated diff the model reads line numbers from.
//!
//! Tokens are counted with `tiktoken-rs` (`o200k_base`). A hunk larger than one chunk is split
//! at line boundaries. What does not fit the total budget is reported, never dropped silently.
//!
//! Order (biggest risk first, a simple heuristic): source and configuration files, then
//! tests, then documentation; within a class, more changed (added + removed) lines first; ties
//! keep diff order.
//!
//! Token counting: the rendered text is counted one line at a time (each rendered line with
//! its `\n`), and a chunk's tokens are the sum. This is exact, not an estimate: `o200k_base`
//! pre-splits text with a regex before BPE, and no pre-token crosses the end of a rendered
//! line, because every rendered line holds a non-space character and the next one never
//! starts with `\r`, `\n` or `/` (the only characters a pre-token may continue with after a
//! `\n`). So `count_tokens(chunk.render(diff)) == chunk.tokens` (tested), each line is
//! tokenized once, and packing never needs a re-count.

use std::fmt::Write as _;
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::diff::{Diff, FileDiff, FileStatus, Hunk, Line, LineKind, SkipReason, Skipped};

/// Token limits for packing, in tokens.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    /// Largest rendered diff text per chunk (tokens), excluding the fixed prompt.
    pub max_chunk_tokens: usize,
    /// Sum over all chunks (tokens); past it, files are listed as [`crate::diff::SkipReason::OverBudget`].
    pub max_total_tokens: usize,
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
#[derive(Debug, Clone, Default)]
pub struct ChunkPlan {
    pub chunks: Vec<Chunk>,
    /// Every file not completely packed, with [`SkipReason::OverBudget`]; those of them that
    /// are partly in `chunks` are also named in [`ChunkPlan::partial`].
    pub over_budget: Vec<Skipped>,
    /// Paths (as in `over_budget`) of files of which some lines are in `chunks` and some did not
    /// fit: the summary should say "partially reviewed" for them.
    pub partial: Vec<String>,
}

impl ChunkPlan {
    /// Whether `path` was only partly packed (some of its lines are reviewed, others not).
    pub fn is_partial(&self, path: &str) -> bool {
        self.partial.iter().any(|p| p == path)
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
        let file_costs = count_files(diff, &order);
        for (&fi, fc) in order.iter().zip(&file_costs) {
            let file = &diff.files[fi];
            if stopped {
                plan.over_budget.push(Skipped { path: file.path().to_owned(), reason: SkipReason::OverBudget });
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
                let path = file.path().to_owned();
                if packed_any {
                    plan.partial.push(path.clone());
                }
                plan.over_budget.push(Skipped { path, reason: SkipReason::OverBudget });
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

fn file_costs(file: &FileDiff) -> FileCosts {
    let mut buf = String::new();
    FileCosts {
        header: count_line(&mut buf, |b| render_file_header(b, file)),
        hunks: file
            .hunks
            .iter()
            .map(|hunk| HunkCosts {
                header: count_line(&mut buf, |b| render_hunk_header(b, hunk, false)),
                continued: count_line(&mut buf, |b| render_hunk_header(b, hunk, true)),
                lines: hunk.lines_with_text().map(|(l, t)| count_line(&mut buf, |b| render_line(b, l, t))).collect(),
            })
            .collect(),
    }
}

/// Counts the files of `order` on every available core: BPE counting is nearly all of the
/// planning time on a large diff (about 0.1 s per MB on one core), and files are independent.
/// Workers take the next file from a shared index, so one huge file does not idle the others.
/// The result is in `order`'s order and identical to a sequential count.
fn count_files(diff: &Diff, order: &[usize]) -> Vec<FileCosts> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(order.len());
    // Small diffs: threads cost more than they save.
    let bytes: usize = order
        .iter()
        .map(|&i| diff.files[i].hunks.iter().flat_map(|h| &h.lines).map(|l| l.text_len() + 16).sum::<usize>())
        .sum();
    if workers <= 1 || bytes < 64 * 1024 {
        return order.iter().map(|&i| file_costs(&diff.files[i])).collect();
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
                        out.push((k, file_costs(&diff.files[fi])));
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
        return order.iter().map(|&i| file_costs(&diff.files[i])).collect();
    }
    counted.into_iter().map(|(_, c)| c).collect()
}

/// Renders one line into `buf` (cleared first) and counts its tokens.
fn count_line(buf: &mut String, render: impl FnOnce(&mut String)) -> usize {
    buf.clear();
    render(buf);
    count_tokens(buf)
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

/// Counts tokens of `text` with the `o200k_base` encoding (GPT-4o family); other models'
/// counts are close enough for budgeting.
///
/// The encoder is built once per process (about 0.1 s). If it cannot be built (the vocabulary
/// is compiled into `tiktoken-rs`, so this does not happen in practice) the byte length is
/// returned, which is an upper bound: every token covers at least one byte.
pub fn count_tokens(text: &str) -> usize {
    bpe().map_or(text.len(), |bpe| bpe.encode_ordinary(text).len())
}

/// Builds the encoder on a background thread, so its cost (about 0.1 s) overlaps network calls
/// and diff parsing instead of delaying the first count. Later calls wait for it if needed.
pub fn warm_up() {
    std::thread::spawn(|| {
        let _ = bpe();
    });
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
    /// `over_budget`; no chunk is over the limit by exact count; `tokens` is exact.
    pub(crate) fn check_plan(diff: &Diff, files: &[usize], chunker: Chunker, plan: &ChunkPlan, exact: bool) {
        let mut covered: Vec<Vec<Vec<bool>>> =
            diff.files.iter().map(|f| f.hunks.iter().map(|h| vec![false; h.lines.len()]).collect()).collect();
        for c in &plan.chunks {
            assert!(!c.slices.is_empty());
            assert!(c.tokens <= chunker.max_chunk_tokens, "chunk of {} tokens", c.tokens);
            if exact {
                assert_eq!(count_tokens(&c.render(diff)), c.tokens);
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
        for &fi in files {
            let f = &diff.files[fi];
            let over = plan.over_budget.iter().any(|s| s.path == f.path() && s.reason == SkipReason::OverBudget);
            for (h, hunk) in f.hunks.iter().enumerate() {
                for (i, l) in hunk.lines.iter().enumerate() {
                    if l.kind != LineKind::Context {
                        assert!(covered[fi][h][i] || over, "{}: hunk {h} line {i} lost", f.path());
                    }
                }
            }
            let any_covered = covered[fi].iter().flatten().any(|&c| c);
            assert_eq!(over && any_covered, plan.is_partial(f.path()), "{}: partial flag", f.path());
        }
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
        let generous = Chunker { max_chunk_tokens: 12_000, max_total_tokens: usize::MAX };
        let plan = generous.plan(&diff, &files);
        check_plan(&diff, &files, generous, &plan, false);
        assert!(plan.over_budget.is_empty() || plan.over_budget.iter().all(|s| s.reason == SkipReason::OverBudget));
        // Exact equality of the per-line sum with a whole-chunk count, on a sample.
        for c in plan.chunks.iter().take(5) {
            assert_eq!(count_tokens(&c.render(&diff)), c.tokens);
        }
        let small = Chunker { max_chunk_tokens: 300, max_total_tokens: 20_000 };
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
        let chunker = Chunker { max_chunk_tokens: 10_000, max_total_tokens: 10_000 };
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
        let chunker = Chunker { max_chunk_tokens: 500, max_total_tokens: usize::MAX };
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
        let need =
            Chunker { max_chunk_tokens: 1_000, max_total_tokens: usize::MAX }.plan(&diff, &[0, 1]).total_tokens();
        let mut saw_partial = false;
        for budget in 0..=need {
            let chunker = Chunker { max_chunk_tokens: 1_000, max_total_tokens: budget };
            let plan = chunker.plan(&diff, &[0, 1]);
            check_plan(&diff, &[0, 1], chunker, &plan, true);
            assert_eq!(plan.over_budget.is_empty(), budget == need, "budget {budget}");
            saw_partial |= plan.partial == ["src/new.rs"] && plan.over_budget.len() == 2;
        }
        assert!(saw_partial);
        // A line larger than a chunk: its file is over budget, later files still packed.
        let long = format!(
            "diff --git a/src/x.rs b/src/x.rs\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n-a\n+{}\n",
            "word ".repeat(500)
        );
        let mut d = parse(long.as_bytes());
        d.files.extend(parse(DIFF).files);
        let chunker = Chunker { max_chunk_tokens: 200, max_total_tokens: usize::MAX };
        let plan = chunker.plan(&d, &[0, 1, 2]);
        check_plan(&d, &[0, 1, 2], chunker, &plan, true);
        assert_eq!(plan.over_budget, [Skipped { path: "src/x.rs".into(), reason: SkipReason::OverBudget }]);
        assert!(plan.is_partial("src/x.rs"), "the `-a` line fit");
    }
}
