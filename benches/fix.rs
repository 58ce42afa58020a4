//! Figures for `agentctl fix` (prints, never asserts):
//!
//! - apply + unified diff of 50 SEARCH/REPLACE edits across 20 files of 400 lines (plan, the
//!   all-or-nothing write, the diff): median over 30 runs (target < 20 ms);
//! - GitHub requests of one publish against the loopback fake of the end-to-end test: the comment
//!   lookup, the repository, the ref, the GraphQL commit, the PR and the comment (target ≤ 6),
//!   besides the two lookups made before any model call (permission, issue).
//!
//! Run with `cargo bench --bench fix` (or `scripts/bench`).
#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code, unreachable_pub)]

#[path = "../tests/it/common.rs"]
mod common;
#[allow(unused_imports)] // the tests, compiled out here, use more
#[path = "../tests/it/fix.rs"]
mod fix;

use std::time::Instant;

use agentctl::edit::{self, EditSet, PathPolicy, SearchReplace};

const FILES: usize = 20;
const EDITS: usize = 50;
const LINES: usize = 400;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn file_text(f: usize) -> String {
    (0..LINES).map(|l| format!("    let value_{f}_{l} = compute({l}, \"file {f}\");\n")).collect()
}

fn apply_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let originals: Vec<String> = (0..FILES).map(file_text).collect();
    let edits: Vec<SearchReplace> = (0..EDITS)
        .map(|i| {
            let (f, l) = (i % FILES, (i * 7) % LINES);
            SearchReplace {
                path: format!("src/m{f}.rs"),
                search: format!("    let value_{f}_{l} = compute({l}, \"file {f}\");\n"),
                replace: format!("    let value_{f}_{l} = compute_checked({l}, \"file {f}\")?;\n"),
            }
        })
        .collect();
    let set = EditSet { edits, ..EditSet::default() };
    let policy = PathPolicy::new(&[]).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let mut times = vec![];
    let mut diff_bytes = 0;
    for _ in 0..30 {
        for (f, text) in originals.iter().enumerate() {
            std::fs::write(dir.path().join(format!("src/m{f}.rs")), text).unwrap();
        }
        let start = Instant::now();
        let applied = edit::plan(dir.path(), &set, &policy);
        edit::write(dir.path(), &applied.changes).unwrap();
        let diff = edit::unified_diff(&applied.changes);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(applied.refused.is_empty() && applied.changes.len() == FILES);
        diff_bytes = diff.len();
    }
    let ms = median(times);
    println!(
        "fix apply + diff: {EDITS} edits across {FILES} files of {LINES} lines: {ms:.2} ms median (target < 20 ms, {:.2}x of target); diff {diff_bytes} bytes",
        ms / 20.0
    );
}

async fn publish_requests() {
    let (model, _) = fix::fake_model(
        fix::answer("Add.", "echo $(($1 - $2))", "echo $(($1 + $2))"),
        fix::answer("Add.", "echo $(($1 - $2))", "echo $(($1 + $2))"),
    )
    .await;
    let dir = fix::repo(&model.uri(), "");
    let hub = fix::fix_hub("add.sh subtracts", "write").await;
    let scratch = tempfile::tempdir().unwrap();
    let event = fix::comment_event(scratch.path());
    let start = Instant::now();
    let out = fix::fix_cmd(dir.path(), &hub, &event, &scratch.path().join("out")).output().unwrap();
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = hub.gh.requests().await;
    let before_model = requests.iter().filter(|(_, p)| p.ends_with("/permission") || p.ends_with("/issues/7")).count();
    let publish = requests.len() - before_model;
    println!(
        "fix publish: {publish} GitHub requests (target <= 6) plus {before_model} lookups before the model; whole run {wall:.0} ms (one round, verify included)"
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    apply_and_diff();
    publish_requests().await;
}
