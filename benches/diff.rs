//! Diff pipeline benchmark: parse + anchor index + filter + chunk plan on the 1.4 MB corpus
//! diff (`03-large...`) with the default estimated token count, median per stage over N runs,
//! and peak RSS (target < 30 ms); then, for reference, the chunk plan with the exact
//! `o200k_base` count (`review.token_counting: exact`). Prints figures against the targets;
//! asserts nothing (STYLE.md: benchmarks print, tests assert).
//!
//! Run: `cargo bench --bench diff` (`AGENTCTL_CORPORA` overrides the corpora folder).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentctl::diff::{parse, AnchorIndex, Chunker, FileFilter};

const RUNS: usize = 15;

fn corpus() -> Option<Vec<u8>> {
    let dir = std::env::var_os("AGENTCTL_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"))
        .join("diffs");
    let entry = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("03-large"))?;
    std::fs::read(entry.path()).ok()
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Peak resident set size (`VmHWM`) in MB, Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let Some(bytes) = corpus() else {
        println!("skipping: corpus diff 03-large not found (set AGENTCTL_CORPORA)");
        return;
    };
    let filter = FileFilter::new(&["**".to_owned()], &[]).expect("globs compile");
    let counting = agentctl::diff::TokenCounting::Estimate;
    let chunker = Chunker { max_chunk_tokens: 12_000, max_total_tokens: usize::MAX, counting };
    let (mut tp, mut ta, mut tf, mut tc, mut tt) = (vec![], vec![], vec![], vec![], vec![]);
    let mut summary = String::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let diff = parse(&bytes);
        let t1 = Instant::now();
        let index = AnchorIndex::new(&diff);
        let t2 = Instant::now();
        let files: Vec<usize> = (0..diff.files.len()).filter(|&i| filter.check(&diff.files[i]).is_none()).collect();
        let t3 = Instant::now();
        let plan = chunker.plan(&diff, &files);
        let t4 = Instant::now();
        tp.push(t1 - t0);
        ta.push(t2 - t1);
        tf.push(t3 - t2);
        tc.push(t4 - t3);
        tt.push(t4 - t0);
        summary = format!(
            "{} files, {} reviewed, {} chunks, {} tokens, {} over budget, index has src: {}",
            diff.files.len(),
            files.len(),
            plan.chunks.len(),
            plan.total_tokens(),
            plan.over_budget.len(),
            index.has_path("Cargo.toml"),
        );
    }
    println!("diff pipeline on {} bytes, median of {RUNS} runs", bytes.len());
    println!("  {summary}");
    println!("  parse:                 {:8.2} ms", median(tp));
    println!("  anchor index:          {:8.2} ms", median(ta));
    println!("  filter:                {:8.2} ms", median(tf));
    println!("  chunk plan:            {:8.2} ms", median(tc));
    let total = median(tt);
    println!("  total:                 {total:8.2} ms  (target < 30 ms: {:.2}x)", total / 30.0);
    match peak_rss_mb() {
        Some(mb) => println!("  peak RSS (VmHWM):      {mb:8.1} MB  (target < 50 MB: {:.2}x)", mb / 50.0),
        None => println!("  peak RSS: unavailable (no /proc/self/status)"),
    }

    // Reference: `token_counting: exact` (the encoder is built once, outside the timings).
    let t = Instant::now();
    let _ = agentctl::diff::chunk::count_tokens("warm up");
    let bpe_init = t.elapsed().as_secs_f64() * 1e3;
    let exact = Chunker { counting: agentctl::diff::TokenCounting::Exact, ..chunker };
    let diff = parse(&bytes);
    let files: Vec<usize> = (0..diff.files.len()).filter(|&i| filter.check(&diff.files[i]).is_none()).collect();
    let mut te = vec![];
    let mut exact_tokens = 0;
    for _ in 0..5 {
        let t = Instant::now();
        exact_tokens = exact.plan(&diff, &files).total_tokens();
        te.push(t.elapsed());
    }
    let estimated = chunker.plan(&diff, &files).total_tokens();
    println!(
        "  exact o200k, for reference: encoder init {bpe_init:.2} ms, chunk plan {:.2} ms (median of 5)",
        median(te)
    );
    println!(
        "  estimate / exact tokens: {estimated} / {exact_tokens} = {:.3}",
        estimated as f64 / exact_tokens.max(1) as f64
    );
    if let Some(mb) = peak_rss_mb() {
        println!("  peak RSS with the encoder: {mb:.1} MB");
    }
}
