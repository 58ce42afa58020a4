//! The module graph of `src/`: arrows point down (README, "Module map").
//!
//! Reads every `crate::…` path on the non-comment lines of each file under `src/`, unit tests
//! included, and fails on an import that points to a higher layer than its own module's, or on
//! a circle between top-level modules. [`LAYERS`] is the one place the order is written down; a
//! new top-level module must be placed in it (an unlisted module fails the test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, bottom layer first. A module may use its own layer and the layers below;
/// modules of one layer may use each other as long as no circle forms.
const LAYERS: &[&[&str]] = &[
    // Leaves: nothing of the crate below them.
    &["clock", "exit", "env_vars", "files", "findings", "markers", "redact", "secret_store", "tls", "usage"],
    &["actions", "context", "diff"],
    &["progress", "log"],
    // Traces and metrics of the run (OTLP), used by every service above.
    &["telemetry"],
    // The state store: the ledger's tables, the response cache, the `state` URL rules.
    &["store"],
    // Config: the model, parsing and loading from given bytes.
    &["config"],
    &["resilience"],
    // Core services.
    &["github", "boundary", "prompt", "ledger", "cloud"],
    &["providers", "edit"],
    &["estimate"],
    &["budget"],
    // Report types, then the renderers over them.
    &["report"],
    &["output"],
    // One run: context, config, token, redactor, clients, store, provider, budget gate, ledger.
    &["session"],
    // Domain pipelines.
    &["review", "fix", "route", "credentials"],
    // Orchestration.
    &["cli", "commands"],
];

/// Files that stand outside the graph: the entry points and the test harness.
const OUTSIDE: &[&str] = &["main", "lib", "test_support"];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// `src/github/client.rs` → `github`; `src/config.rs` → `config`.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.strip_suffix(".rs").map(str::to_string).unwrap_or(first)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` on the code (non-comment) lines of `text`, with its line number; in a
/// group (`use crate::{a, b::c, d as e};`, over several lines too) the first name of each item.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    // Comment lines blanked, so offsets still map to line numbers.
    let code: String =
        text.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l }).collect::<Vec<_>>().join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
    let mut refs = vec![];
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let at = from + found;
        from = at + "crate::".len();
        // `agentctl::crate::` never occurs; `$crate::` (macros) is the crate root too.
        if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[from..];
        let Some(group) = rest.strip_prefix('{') else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.push((line_of(at), name));
            }
            continue;
        };
        let (mut depth, mut item) = (0, 0);
        for (i, c) in group.char_indices() {
            let end = match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth > 0 => {
                    depth -= 1;
                    false
                }
                '}' => true,
                ',' => depth == 0,
                _ => false,
            };
            if end {
                let piece = &group[item..i];
                let lead = piece.len() - piece.trim_start().len();
                let name = ident(&piece[lead..]);
                if !name.is_empty() {
                    refs.push((line_of(from + 1 + item + lead), name));
                }
                item = i + 1;
                if c == '}' {
                    break;
                }
            }
        }
    }
    refs
}

/// (from, to) → the first `file:line` of that arrow.
fn graph() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = BTreeMap::new();
    for file in files {
        let from = top_module(&src, &file);
        if OUTSIDE.contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in crate_refs(&text) {
            if to == from || OUTSIDE.contains(&to.as_str()) {
                continue;
            }
            let at = format!("{}:{line}", file.strip_prefix(&src).unwrap().display());
            edges.entry((from.clone(), to)).or_insert(at);
        }
    }
    edges
}

#[test]
fn every_import_points_down_and_no_modules_form_a_circle() {
    let edges = graph();
    let mut problems = vec![];
    let modules: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    for m in &modules {
        if rank(m).is_none() {
            problems.push(format!("module `{m}` is in no layer of tests/it/module_graph.rs LAYERS"));
        }
    }
    for ((from, to), at) in &edges {
        if let (Some(f), Some(t)) = (rank(from), rank(to)) {
            if t > f {
                problems.push(format!("upward arrow {from} → {to} (layer {f} → {t}) at src/{at}"));
            }
        }
    }
    // A circle: depth-first search over the arrows, reporting each back edge's cycle.
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    fn visit<'a>(
        m: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| *s == m) {
            let mut cycle: Vec<&str> = stack[at..].to_vec();
            cycle.push(m);
            cycles.push(cycle.join(" → "));
            return;
        }
        stack.push(m);
        for n in next.get(m).into_iter().flatten() {
            visit(n, next, stack, done, cycles);
        }
        stack.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    let mut cycles = vec![];
    for m in next.keys() {
        visit(m, &next, &mut vec![], &mut done, &mut cycles);
    }
    problems.extend(cycles.into_iter().map(|c| format!("circle {c}")));
    assert!(problems.is_empty(), "the module graph breaks its layering:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_crate_paths_on_code_lines_only() {
    let text = "use crate::config::Config;\n// crate::commands in a comment\n/// [`crate::review`]\nlet x = crate::store::now();\nlet y = $crate::log::info;\nuse crate::{diff::{self, Hunk}, exit,\n    usage as u};\n";
    let refs = crate_refs(text);
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["config", "store", "log", "diff", "exit", "usage"]);
    let lines: Vec<usize> = refs.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [1, 4, 5, 6, 6, 7]);
}

/// Commands are orchestration only (issue #18): each `src/commands/*.rs`, unit tests included,
/// stays within 300 lines; the pipelines live in the domain modules.
#[test]
fn every_command_file_is_at_most_300_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let mut long = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines > 300 {
            long.push(format!("{} has {lines} lines", path.display()));
        }
    }
    assert!(long.is_empty(), "move pipeline code into its domain module:\n{}", long.join("\n"));
}
