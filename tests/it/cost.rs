//! `agentctl cost report|check` against real SQLite ledgers written through the library's
//! store, checked against hand-computed expectations (whole cents, so no rounding is in play).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentctl::store::Store;
use agentctl::usage::{Usage, UsageRecord};
use serde_json::Value;

use crate::common::{agentctl, parse_github_output, unique_state_path, write};

/// 2026-10-01 00:00 UTC, Unix ms.
pub(crate) const OCT_1: i64 = 1_790_812_800_000;
pub(crate) const DAY: i64 = 86_400_000;
const REPOS: usize = 3;
const WORKFLOWS: usize = 4;
const DAYS: usize = 30;

pub(crate) fn record(
    ts_ms: i64,
    repo: &str,
    workflow: &str,
    model: &str,
    cost: Option<f64>,
    outcome: &str,
) -> UsageRecord {
    UsageRecord {
        ts_ms,
        repo: Some(repo.into()),
        workflow: Some(workflow.into()),
        run_id: Some("1".into()),
        job: Some("ai".into()),
        pr: Some(7),
        task: "review".into(),
        provider: "main".into(),
        model: model.into(),
        usage: Usage {
            input_tokens: 1000,
            cached_input_tokens: 10,
            cache_write_tokens: 5,
            cache_write_1h_tokens: 0,
            output_tokens: 100,
            reasoning_tokens: 3,
        },
        cost_usd: cost,
        cost_source: Default::default(),
        price_table: Some("2025-01-01".into()),
        latency_ms: 10,
        outcome: outcome.into(),
        cached: false,
    }
}

/// The cost of the call of repo `r`, workflow `w` on day `d`, in whole cents.
fn cents(r: usize, w: usize, d: usize) -> u64 {
    (r as u64 + 1) + 10 * (w as u64 + 1) + d as u64
}

/// 3 repos × 4 workflows × 30 days (Oct 1–30, 2026, at noon UTC), one priced call each, plus
/// one unpriced, failed call per repo on Oct 1 (a local model).
fn ledger() -> PathBuf {
    let path = unique_state_path();
    fill_ledger(&Store::open(&path).unwrap());
    path
}

/// Fills `store` with the [`ledger`] rows (any backend).
pub(crate) fn fill_ledger(store: &Store) {
    for d in 0..DAYS {
        let ts = OCT_1 + d as i64 * DAY + DAY / 2;
        for r in 0..REPOS {
            for w in 0..WORKFLOWS {
                let usd = cents(r, w, d) as f64 / 100.0;
                let rec = record(ts, &format!("octo/r{r}"), &format!("wf{w}"), "gpt-4o", Some(usd), "ok");
                store.record_usage(&rec).unwrap();
            }
        }
    }
    for r in 0..REPOS {
        store.record_usage(&record(OCT_1 + 1, &format!("octo/r{r}"), "wf0", "local-llm", None, "timeout")).unwrap();
    }
}

/// Hand computation: per day, Σ over r, w of (r+1) + 10(w+1) + d = 4·6 + 3·100 + 12d cents.
pub(crate) fn day_cents(d: usize) -> u64 {
    324 + 12 * d as u64
}

/// Per workflow, Σ over r, d = 30·6 + 90·10(w+1) + 3·435 cents.
pub(crate) fn workflow_cents(w: usize) -> u64 {
    1485 + 900 * (w as u64 + 1)
}

pub(crate) fn dollars(c: u64) -> String {
    format!("${}.{:02}", c / 100, c % 100)
}

pub(crate) fn report(state: &Path, group_by: &str, format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", state)
        .args(["cost", "report", "--since", "2026-10-01", "--until", "2026-10-30"])
        .args(["--group-by", group_by, "--format", format])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_hand_computed_values_are_what_the_formula_says() {
    // Guard the oracle itself with a few values worked out on paper.
    assert_eq!(dollars(day_cents(0)), "$3.24");
    assert_eq!(dollars(day_cents(29)), "$6.72");
    assert_eq!(dollars(workflow_cents(0)), "$23.85");
    assert_eq!(dollars(workflow_cents(3)), "$50.85");
    let total: u64 = (0..WORKFLOWS).map(workflow_cents).sum();
    assert_eq!(total, (0..DAYS).map(day_cents).sum::<u64>());
    assert_eq!(dollars(total), "$149.40");
}

#[test]
fn report_per_day_and_per_workflow_matches_the_hand_computed_table_in_table_format() {
    let state = ledger();
    let t = report(&state, "day", "table");
    let lines: BTreeMap<String, Vec<String>> = t
        .lines()
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (cells[0].clone(), cells)
        })
        .collect();
    for d in 0..DAYS {
        let day = format!("2026-10-{:02}", d + 1);
        let cells = &lines[&day];
        let calls = if d == 0 { "15" } else { "12" };
        // day, calls, input, cache read, cache write, cache write 1h, output, reasoning, USD [+ n unpriced],
        // failures, reported
        assert_eq!(cells[1], calls, "{day}: {t}");
        assert_eq!(cells[2], (1000 * calls.parse::<u64>().unwrap()).to_string(), "{day}");
        assert_eq!(cells[8], dollars(day_cents(d)), "{day}: {t}");
        if d == 0 {
            assert_eq!(&cells[9..], ["+", "3", "unpriced", "3", "0"], "{t}");
        } else {
            assert_eq!(cells[9], "0");
        }
    }
    assert!(t.lines().last().unwrap().starts_with("total"), "{t}");
    assert!(t.contains("$149.40 + 3 unpriced"), "{t}");

    let t = report(&state, "workflow", "table");
    for w in 0..WORKFLOWS {
        let line = t.lines().find(|l| l.starts_with(&format!("wf{w} "))).unwrap();
        assert!(line.contains(&dollars(workflow_cents(w))), "{line}");
    }
    // Filters: one repo's share, computed by hand: Σ over w, d of 1 + 10(w+1) + d = 120 + 3000 + 1740.
    let dir = tempfile::tempdir().unwrap();
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &state)
        .args(["cost", "report", "--since", "2026-10-01", "--group-by", "repo", "--repo", "octo/r0"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&dollars(120 + 3000 + 1740)), "{text}");
    assert!(!text.contains("octo/r1"), "{text}");
}

#[test]
fn report_matches_the_hand_computed_table_in_json_and_csv() {
    let state = ledger();
    let j: Value = serde_json::from_str(&report(&state, "day", "json")).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), DAYS);
    for (d, row) in rows.iter().enumerate() {
        assert_eq!(row["group"], format!("2026-10-{:02}", d + 1));
        let usd = row["cost_usd"].as_f64().unwrap();
        assert_eq!((usd * 100.0).round() as u64, day_cents(d), "{row}");
    }
    assert_eq!(rows[0]["unpriced_calls"], 3);
    assert_eq!(rows[0]["failures"], 3);
    assert_eq!(rows[0]["calls"], 15);
    assert_eq!(j["total"]["calls"], 363);
    assert_eq!(j["total"]["reasoning_tokens"], 363 * 3);
    assert_eq!((j["total"]["cost_usd"].as_f64().unwrap() * 100.0).round() as u64, 14_940);

    let csv = report(&state, "workflow", "csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "workflow");
    let cost_col = header.iter().position(|h| *h == "cost_usd").unwrap();
    let got: Vec<(String, u64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), (f[cost_col].parse::<f64>().unwrap() * 100.0).round() as u64)
        })
        .collect();
    let want: Vec<(String, u64)> = (0..WORKFLOWS).map(|w| (format!("wf{w}"), workflow_cents(w))).collect();
    assert_eq!(got, want);
}

/// Checks that `md` holds exactly one mermaid block and that it is a well-formed `xychart-beta`
/// bar chart; returns its labels and values.
pub(crate) fn mermaid_xychart(md: &str) -> (Vec<String>, Vec<f64>) {
    let blocks: Vec<&str> = md.split("```mermaid\n").skip(1).collect();
    assert_eq!(blocks.len(), 1, "{md}");
    let body = blocks[0].split("\n```").next().unwrap();
    let lines: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "xychart-beta", "{body}");
    let one = |prefix: &str| -> &str {
        let found: Vec<&&str> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "one `{prefix}` line: {body}");
        found[0].strip_prefix(prefix).unwrap().trim()
    };
    let list = |s: &str| -> Vec<String> {
        let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or_else(|| panic!("not a list: {s}"));
        inner.split(", ").map(str::to_owned).collect()
    };
    let labels: Vec<String> = list(one("x-axis "))
        .into_iter()
        .map(|l| {
            let unq = l.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or_else(|| panic!("unquoted {l}"));
            assert!(!unq.contains('"'));
            unq.to_owned()
        })
        .collect();
    let y = one("y-axis ");
    let (title, range) = y.split_once(' ').unwrap();
    assert_eq!(title, "\"USD\"");
    let (lo, hi) = range.split_once(" --> ").unwrap();
    let (lo, hi): (f64, f64) = (lo.parse().unwrap(), hi.parse().unwrap());
    let values: Vec<f64> = list(one("bar ")).iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(values.len(), labels.len(), "as many bar values as x-axis labels");
    assert!(values.iter().all(|v| *v >= lo && *v <= hi), "values within the y-axis {lo}..{hi}");
    assert!(!lines.iter().any(|l| l.starts_with("line ")), "one bar series only");
    for l in &lines[1..] {
        assert!(["title ", "x-axis ", "y-axis ", "bar "].iter().any(|p| l.starts_with(p)), "unknown line {l}");
    }
    (labels, values)
}

#[test]
fn report_markdown_has_the_table_and_a_valid_xychart() {
    let state = ledger();
    let md = report(&state, "day", "markdown");
    assert!(
        md.contains(&format!("| 2026-10-02 | 12 | 12000 | 120 | 60 | 0 | 1200 | 36 | {} | 0 |", dollars(day_cents(1)))),
        "{md}"
    );
    assert!(md.contains("| **total** | **363** |"), "{md}");
    let (labels, values) = mermaid_xychart(&md);
    assert_eq!(labels.len(), DAYS);
    assert_eq!(labels[0], "2026-10-01");
    for (d, v) in values.iter().enumerate() {
        assert_eq!((v * 100.0).round() as u64, day_cents(d));
    }
    let md = report(&state, "workflow", "markdown");
    let (labels, values) = mermaid_xychart(&md);
    assert_eq!(labels, ["wf0", "wf1", "wf2", "wf3"]);
    let cents: Vec<u64> = values.iter().map(|v| (v * 100.0).round() as u64).collect();
    assert_eq!(cents, (0..WORKFLOWS).map(workflow_cents).collect::<Vec<_>>());
}

#[test]
fn report_summary_appends_the_markdown_to_the_step_summary() {
    let state = ledger();
    let dir = tempfile::tempdir().unwrap();
    let summary = write(dir.path(), "summary.md", "earlier step\n");
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &state)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["cost", "report", "--since", "2026-10-01", "--group-by", "repo", "--summary"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("earlier step\n"), "{text}");
    assert!(text.contains("```mermaid\nxychart-beta"), "{text}");
    // stdout still carries the default table.
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("REPO "));
}

#[test]
fn empty_ledger_says_no_usage_since_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // A ledger that does not exist yet, and one that exists but has no row in the window.
    for state in [unique_state_path(), ledger()] {
        let out = agentctl()
            .current_dir(dir.path())
            .env("AGENTCTL_STATE", &state)
            .args(["cost", "report", "--since", "2026-11-15"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "no usage recorded since 2026-11-15 00:00 UTC\n");
    }
}

#[test]
fn bad_report_arguments_exit_2_and_a_corrupt_store_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--group-by", "week"][..],
        &["--since", "2026-13-01"],
        &["--since", "yesterday"],
        &["--since", "2026-11-02", "--until", "2026-11-01"],
        &["--format", "xml"],
    ] {
        let out = agentctl().current_dir(dir.path()).args(["cost", "report"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let corrupt = write(dir.path(), "state.db", b"this is not a database, just text that is long enough. ".repeat(200));
    for sub in [&["report"][..], &["check", "--budget-usd", "5"]] {
        let out =
            agentctl().current_dir(dir.path()).env("AGENTCTL_STATE", &corrupt).arg("cost").args(sub).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&corrupt.display().to_string()), "{err}");
    }
}

pub(crate) fn check(
    state: &Path,
    dir: &Path,
    config: Option<&str>,
    args: &[&str],
) -> (Option<i32>, String, BTreeMap<String, String>) {
    let outputs = dir.join(format!("out-{}", crate::common::unique_name()));
    let mut cmd = agentctl();
    cmd.current_dir(dir)
        .env("AGENTCTL_STATE", state)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_REPOSITORY", "octo/r0")
        .env("GITHUB_WORKFLOW", "wf0")
        .args(["cost", "check"])
        .args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(write(dir, "agentctl.yml", c));
    }
    let out = cmd.output().unwrap();
    let outputs = std::fs::read_to_string(&outputs).map(|t| parse_github_output(&t)).unwrap_or_default();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), outputs)
}

/// A ledger with `usd` spent today by `octo/r0` in `wf0`.
fn spent_today(usd: f64) -> PathBuf {
    let path = unique_state_path();
    let store = Store::open(&path).unwrap();
    let now = agentctl::clock::now_ms();
    store.record_usage(&record(now, "octo/r0", "wf0", "gpt-4o", Some(usd), "ok")).unwrap();
    // Another repo's spend and an older day's do not count against the repo's daily budget.
    store.record_usage(&record(now, "octo/r1", "wf0", "gpt-4o", Some(100.0), "ok")).unwrap();
    path
}

#[test]
fn check_below_soft_is_ok_with_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "budgets:\n  - {scope: repo, period: day, limit_usd: 10}\n";
    let (code, err, outputs) = check(&spent_today(5.0), dir.path(), Some(cfg), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(outputs["budget-state"], "ok");
    assert_eq!(outputs["spent-usd"], "5.00");
    assert_eq!(outputs["limit-usd"], "10.00");
    assert_eq!(outputs["remaining-usd"], "5.00");
    assert!(!err.contains("::warning"), "{err}");
}

#[test]
fn check_past_soft_ratio_warns_and_past_the_limit_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "budgets:\n  - {scope: repo, match: octo/r0, period: day, limit_usd: 10, soft_ratio: 0.5}\n";
    let (code, err, outputs) = check(&spent_today(6.0), dir.path(), Some(cfg), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(outputs["budget-state"], "soft");
    assert!(err.contains("::warning title=budget soft limit::repo octo/r0 per day spent $6.00 of $10.00"), "{err}");

    let (code, err, outputs) = check(&spent_today(10.5), dir.path(), Some(cfg), &[]);
    assert_eq!(code, Some(5), "{err}");
    assert_eq!(outputs["budget-state"], "hard");
    assert_eq!(outputs["remaining-usd"], "0.00");
    assert!(err.contains("::error title=budget exceeded::"), "{err}");

    // --budget-usd counts all usage: 100 + 5 of 200 is fine, of 100 it is not.
    let state = spent_today(5.0);
    assert_eq!(check(&state, dir.path(), None, &["--budget-usd", "200", "--period", "day"]).0, Some(0));
    let (code, _, outputs) = check(&state, dir.path(), None, &["--budget-usd", "100", "--period", "week"]);
    assert_eq!((code, outputs["spent-usd"].as_str()), (Some(5), "105.00"));
}

#[test]
fn check_refuses_negative_and_nan_budgets_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = spent_today(1.0);
    for bad in ["-1", "NaN", "inf", "ten"] {
        let (code, err, _) = check(&state, dir.path(), None, &["--budget-usd", bad]);
        assert_eq!(code, Some(2), "{bad}: {err}");
    }
    let (code, err, _) =
        check(&state, dir.path(), Some("budgets:\n  - {scope: all, period: day, limit_usd: -3}\n"), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/budgets/0/limit_usd"), "{err}");
    let (code, err, _) =
        check(&state, dir.path(), Some("budgets:\n  - {scope: team, period: day, limit_usd: 3}\n"), &[]);
    assert_eq!(code, Some(2), "{err}");
    // No budget at all: nothing to check.
    assert_eq!(check(&state, dir.path(), None, &[]).0, Some(3));
}

/// `cost estimate` of a real diff: the chunks add up, the output bound is max_output_tokens per
/// chunk, the price is the bundled gpt-4o-mini one, and the provider hears nothing.
#[tokio::test]
async fn estimate_prices_every_chunk_and_calls_no_provider() {
    let Some(corpora) = crate::common::corpora() else { return };
    let provider = crate::common::strict_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::config_for(&provider.uri(), "  max_chunk_tokens: 4000\n  max_output_tokens: 1000\n");
    let config = write(dir.path(), "agentctl.yml", cfg);
    let diff = corpora.join("diffs/02-medium.ripgrep-efd9cfb2.diff");
    let out = agentctl()
        .current_dir(dir.path())
        .env("OPENAI_API_KEY", "sk-test-not-used")
        .args(["cost", "estimate", "--format", "json", "--config"])
        .arg(&config)
        .arg("--diff")
        .arg(&diff)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let chunks = e["chunks"].as_array().unwrap();
    assert!(chunks.len() >= 2, "a 4000-token chunk limit splits the medium diff: {e}");
    assert_eq!(e["model"], "gpt-4o-mini");
    let input: u64 = chunks.iter().map(|c| c["input_tokens"].as_u64().unwrap()).sum();
    assert_eq!(e["input_tokens"].as_u64().unwrap(), input);
    assert_eq!(e["output_tokens"].as_u64().unwrap(), 1000 * chunks.len() as u64);
    for c in chunks {
        assert!(c["diff_tokens"].as_u64().unwrap() <= 4000, "{c}");
        assert!(c["input_tokens"].as_u64().unwrap() > c["diff_tokens"].as_u64().unwrap(), "prompt overhead counted");
    }
    // data/prices.json: gpt-4o-mini $0.15 / 1M input, $0.60 / 1M output.
    let want = input as f64 * 0.15e-6 + (1000 * chunks.len()) as f64 * 0.6e-6;
    assert!((e["cost_usd"].as_f64().unwrap() - want).abs() < 1e-9, "{e}");
    assert!(provider.received_requests().await.unwrap().is_empty());

    // The table form names the total; a non-diff is exit 2; no source at all is exit 2.
    let out = agentctl().current_dir(dir.path()).args(["cost", "estimate", "--diff"]).arg(&diff).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("total:"), "builtin estimate prints a total");
    let not_a_diff = write(dir.path(), "x.txt", "hello\n");
    for args in [vec!["--diff".to_owned(), not_a_diff.display().to_string()], vec![]] {
        let out = agentctl().current_dir(dir.path()).args(["cost", "estimate"]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

fn rows(state: &Path) -> usize {
    Store::open(state).unwrap().usage_since(i64::MIN).unwrap().len()
}

pub(crate) fn import(state: &Path, files: &[&Path]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", state)
        .args(["cost", "import"])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn export_then_import_twice_adds_each_record_once() {
    let source = ledger();
    let dir = tempfile::tempdir().unwrap();
    let out =
        agentctl().current_dir(dir.path()).env("AGENTCTL_STATE", &source).args(["cost", "export"]).output().unwrap();
    assert!(out.status.success());
    let jsonl = write(dir.path(), "usage.jsonl", &out.stdout);
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 363);
    let ids: std::collections::BTreeSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 363, "one distinct id per record");

    let target = unique_state_path();
    let (code, stdout, err) = import(&target, &[&jsonl]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stdout.trim(), "imported 363 usage record(s); 0 already present (skipped)");
    assert_eq!(rows(&target), 363);
    let (code, stdout, _) = import(&target, &[&jsonl, &jsonl]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), "imported 0 usage record(s); 726 already present (skipped)");
    assert_eq!(rows(&target), 363);
    // The imported ledger reports exactly what the source did.
    assert_eq!(report(&target, "workflow", "csv"), report(&source, "workflow", "csv"));
    // Importing its own export into the source adds nothing either: the ids are stable.
    assert_eq!(import(&source, &[&jsonl]).1.trim(), "imported 0 usage record(s); 363 already present (skipped)");
}

#[test]
fn import_of_a_truncated_file_names_the_line_and_imports_nothing_from_it() {
    let source = ledger();
    let dir = tempfile::tempdir().unwrap();
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &source)
        .args(["cost", "export", "--since", "2026-10-30"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 12, "Oct 30 only");
    let truncated = write(dir.path(), "cut.jsonl", &text[..text.len() - 40]);
    let target = unique_state_path();
    let (code, _, err) = import(&target, &[&truncated]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cut.jsonl:12: not a usage record"), "{err}");
    assert_eq!(rows(&target), 0, "nothing half-imported");
    // The intact file imports fine afterwards.
    let whole = write(dir.path(), "whole.jsonl", &text);
    assert_eq!(import(&target, &[&whole]).0, Some(0));
    assert_eq!(rows(&target), 12);
}

pub(crate) const REVIEW_DIFF: &str = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1111111..2222222 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,5 @@\n fn a() {}\n+fn b(x: u32) -> u32 {\n+    x / 0\n+}\n fn c() {}\n";

pub(crate) fn review_answer() -> Value {
    serde_json::json!({"summary": "Adds b().", "findings": []})
}

/// A dry-run review of [`REVIEW_DIFF`] with `config` on `state`, in Actions (annotations on).
pub(crate) fn review_run(config: &str, state: &Path, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config);
    agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", state)
        .env("OPENAI_API_KEY", "sk-test-key-openai-0123456789")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "octo/r0")
        .args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config"])
        .arg(&cfg)
        .args(extra)
        .write_stdin(REVIEW_DIFF)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_usage_out_writes_this_runs_records_with_the_ledgers_ids() {
    let server = crate::common::fake_openai(review_answer(), std::time::Duration::ZERO).await;
    let state = unique_state_path();
    let dir = tempfile::tempdir().unwrap();
    let usage_out = dir.path().join("usage.jsonl");
    let out = review_run(
        &crate::common::config_for(&server.uri(), ""),
        &state,
        &["--usage-out", usage_out.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&usage_out).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!((lines[0]["task"].as_str(), lines[0]["usage"]["output_tokens"].as_u64()), (Some("review"), Some(150)));
    // Same ids as the ledger: importing the file into it adds nothing.
    assert_eq!(import(&state, &[&usage_out]).1.trim(), "imported 0 usage record(s); 1 already present (skipped)");
}

/// A ledger with `usd` spent today (all usage).
fn spent_now(usd: f64) -> PathBuf {
    let path = unique_state_path();
    let store = Store::open(&path).unwrap();
    store.record_usage(&record(agentctl::clock::now_ms(), "octo/r0", "ci", "gpt-4o", Some(usd), "ok")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_gate_99_percent_spent_and_an_estimate_that_passes_exits_5_without_a_model_call() {
    let provider = crate::common::strict_server().await;
    let state = spent_now(0.099);
    let config =
        crate::common::config_for(&provider.uri(), "") + "budgets:\n  - {scope: all, period: day, limit_usd: 0.10}\n";
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let summary = dir.path().join("summary.md");
    let cfg = write(dir.path(), "agentctl.yml", &config);
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &state)
        .env("OPENAI_API_KEY", "sk-test-key-openai-0123456789")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config"])
        .arg(&cfg)
        .write_stdin(REVIEW_DIFF)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(provider.received_requests().await.unwrap().is_empty(), "no model call");
    assert!(err.contains("::error::budget exceeded: this review would cost about $"), "{err}");
    let outputs = parse_github_output(&std::fs::read_to_string(&outputs).unwrap());
    assert_eq!(outputs["verdict"], "budget-exceeded");
    assert_eq!(outputs["budget-state"], "hard");
    assert_eq!(outputs["spent-usd"], "0.10", "0.099 to the cent");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("budget exceeded") && summary.contains("no model was called"), "{summary}");
    assert_eq!(rows(&state), 1, "nothing recorded: nothing was spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_gate_at_85_percent_warns_and_the_review_proceeds() {
    let server = crate::common::fake_openai(review_answer(), std::time::Duration::ZERO).await;
    let state = spent_now(0.85);
    let config =
        crate::common::config_for(&server.uri(), "") + "budgets:\n  - {scope: repo, period: month, limit_usd: 1.0}\n";
    let out = review_run(&config, &state, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "::warning::budget past its soft limit: repo octo/r0 per month: $0.85 spent + $0.00 estimated of $1.00"
        ),
        "{err}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(rows(&state), 2, "the review's call is in the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_gate_past_the_soft_ratio_uses_the_downgrade_provider() {
    let main = crate::common::strict_server().await;
    let cheap = crate::common::fake_openai(review_answer(), std::time::Duration::ZERO).await;
    let state = spent_now(0.85);
    let config = format!(
        "provider: main\nproviders:\n  main:\n    kind: openai\n    model: gpt-4o\n    base_url: {}/v1\n    max_retries: 0\n  cheap:\n    kind: openai\n    model: gpt-4o-mini\n    base_url: {}/v1\n    max_retries: 0\nbudgets:\n  - {{scope: all, period: day, limit_usd: 5, soft_ratio: 0.1, downgrade_to: cheap}}\n",
        main.uri(),
        cheap.uri()
    );
    let out = review_run(&config, &state, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("using provider `cheap` (downgrade_to)"), "{err}");
    assert_eq!(cheap.received_requests().await.unwrap().len(), 1);
    assert!(main.received_requests().await.unwrap().is_empty());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["provider"], "cheap");
}

/// 32 real processes each append 100 records (100 one-record imports, so 100 write
/// transactions each) to one fresh SQLite ledger at once: exactly 3,200 rows, no error, no
/// duplicate id (WAL, busy timeout, `BEGIN IMMEDIATE`).
#[test]
fn thirty_two_processes_append_100_records_each_to_one_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared/state.db");
    append_from_32_processes(state.as_os_str());
    let conn = rusqlite::Connection::open(&state).unwrap();
    let (rows, ids): (i64, i64) =
        conn.query_row("SELECT COUNT(*), COUNT(DISTINCT uid) FROM usage", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((rows, ids), (3_200, 3_200));
}

/// Starts 32 `agentctl cost import` processes at once on the store `state` (a file or a URL),
/// each importing 100 one-record files with ids `pPP-nNNN`, and waits for all: each must exit 0.
pub(crate) fn append_from_32_processes(state: &std::ffi::OsStr) {
    const PROCESSES: usize = 32;
    const EACH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("agentctl");
    let mut children = Vec::new();
    for p in 0..PROCESSES {
        let files: Vec<PathBuf> = (0..EACH)
            .map(|n| {
                let id = format!("p{p:02}-n{n:03}");
                let r = record(OCT_1 + (p * EACH + n) as i64, "octo/r0", "wf0", "gpt-4o", Some(0.01), "ok");
                write(dir.path(), &format!("{id}.jsonl"), agentctl::usage::jsonl::to_line(&id, &r))
            })
            .collect();
        let child = std::process::Command::new(&bin)
            .env_clear()
            .env("AGENTCTL_STATE", state)
            .current_dir(dir.path())
            .args(["-q", "cost", "import"])
            .args(&files)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `claude -p --output-format json`'s result object (Agent SDK `SDKResultMessage` shape) with
/// its own `total_cost_usd`, answering `answer`.
fn claude_result(answer: &Value, total_cost_usd: f64) -> String {
    serde_json::json!({
        "type": "result", "subtype": "success", "is_error": false, "duration_ms": 8123, "num_turns": 1,
        "result": answer.to_string(), "session_id": "0e639165-79b1-4bd4-bb0f-4cb4c15115d4",
        "total_cost_usd": total_cost_usd,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 1850, "cache_read_input_tokens": 15635,
                  "output_tokens": 245, "service_tier": "standard"},
        "modelUsage": {"claude-sonnet-4-5-20250929": {"inputTokens": 12, "outputTokens": 245,
            "cacheReadInputTokens": 15635, "cacheCreationInputTokens": 1850, "costUSD": total_cost_usd}}
    })
    .to_string()
}

#[test]
fn a_claude_json_agent_run_records_its_reported_cost_and_the_report_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = write(
        dir.path(),
        "fake-claude.sh",
        format!("#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n{}\nEOF\n", claude_result(&review_answer(), 0.0379825)),
    );
    let config = format!(
        "provider: agent\nproviders:\n  agent:\n    kind: command\n    model: claude-sonnet-4-5\n    output: claude-json\n    command: [/bin/sh, {}]\n",
        script.display()
    );
    let state = unique_state_path();
    let out = review_run(&config, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = Store::open(&state).unwrap().usage_since(0).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    // The price table would say $0.0153 for these tokens; the CLI's own figure wins.
    let computed = agentctl::usage::pricing::PriceTable::bundled().cost_usd("claude-sonnet-4-5", &rows[0].usage);
    assert!((computed.unwrap() - 0.0379825).abs() > 0.01, "{computed:?}");
    assert_eq!(rows[0].cost_usd, Some(0.0379825));
    assert_eq!(rows[0].cost_source, agentctl::usage::CostSource::Reported);
    assert_eq!(rows[0].price_table, None, "no table priced it");

    // One computed row beside it: the report tells them apart in every format.
    let mut other = record(agentctl::clock::now_ms(), "octo/r0", "ci", "gpt-4o", Some(1.0), "ok");
    other.task = "fix".into();
    Store::open(&state).unwrap().record_usage(&other).unwrap();
    let run = |format: &str| {
        let out = agentctl()
            .current_dir(dir.path())
            .env("AGENTCTL_STATE", &state)
            .args(["cost", "report", "--since", "1d", "--group-by", "task", "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let j: Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(j["rows"][0]["group"], "fix");
    assert_eq!((j["rows"][0]["reported_calls"].as_u64(), j["rows"][1]["reported_calls"].as_u64()), (Some(0), Some(1)));
    assert_eq!(j["rows"][1]["cost_usd"].as_f64(), Some(0.037983));
    assert_eq!(j["total"]["reported_calls"], 1);
    let csv = run("csv");
    assert!(csv.lines().next().unwrap().ends_with(",reported_calls"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().ends_with(",0") && csv.lines().nth(2).unwrap().ends_with(",1"), "{csv}");
    let table = run("table");
    assert!(table.lines().next().unwrap().ends_with("REPORTED"), "{table}");
    assert!(table.lines().find(|l| l.starts_with("review")).unwrap().ends_with(" 1"), "{table}");
    let md = run("markdown");
    assert!(md.contains("| reported |") && md.contains("1 call(s) carry the cost their provider reported"), "{md}");
}

#[test]
fn report_reprice_uses_the_current_table_keeps_reported_costs_and_leaves_the_ledger_alone() {
    let state = unique_state_path();
    let store = Store::open(&state).unwrap();
    let now = agentctl::clock::now_ms();
    // Two gpt-4o calls priced long ago at a made-up $100 each, one claude call whose CLI reported
    // $0.50, and a local model that had no price then.
    let mut stale = record(now - 1000, "octo/r0", "ci", "gpt-4o", Some(100.0), "ok");
    stale.price_table = Some("2024-01-01".into());
    store.record_usage(&stale).unwrap();
    store.record_usage(&stale).unwrap();
    let mut reported = record(now - 1000, "octo/r0", "ci", "claude-sonnet-4-5", Some(0.5), "ok");
    reported.cost_source = agentctl::usage::CostSource::Reported;
    reported.price_table = None;
    store.record_usage(&reported).unwrap();
    store.record_usage(&record(now - 1000, "octo/r0", "ci", "my-local", None, "ok")).unwrap();
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "agentctl.yml",
        "pricing:\n  my-local: {input_cost_per_token: 0.001, output_cost_per_token: 0.002}\n",
    );
    let run = |extra: &[&str]| -> Value {
        let out = agentctl()
            .current_dir(dir.path())
            .env("AGENTCTL_STATE", &state)
            .args(["cost", "report", "--since", "1d", "--group-by", "model", "--format", "json", "--config"])
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let cost = |j: &Value, model: &str| -> Option<f64> {
        j["rows"].as_array().unwrap().iter().find(|r| r["group"] == model).unwrap()["cost_usd"].as_f64()
    };
    let repriced = run(&["--reprice"]);
    assert!(repriced["repriced_with"].is_string(), "{repriced}");
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per 1M (cache writes at the input price):
    // per call 1000 × 2.5e-6 + 10 × 1.25e-6 + 5 × 2.5e-6 + 100 × 1e-5 = $0.003525.
    assert_eq!(cost(&repriced, "gpt-4o"), Some(0.00705));
    assert_eq!(cost(&repriced, "claude-sonnet-4-5"), Some(0.5), "a reported cost is never re-priced");
    // my-local from config: (1000 + 10 + 5) × 0.001 + 100 × 0.002.
    assert_eq!(cost(&repriced, "my-local"), Some(1.215));
    assert_eq!(repriced["total"]["unpriced_calls"], 0);
    assert_eq!(repriced["total"]["reported_calls"], 1);

    // The ledger is untouched: without --reprice the recorded figures come back.
    let recorded = run(&[]);
    assert_eq!(recorded["repriced_with"], Value::Null);
    assert_eq!(cost(&recorded, "gpt-4o"), Some(200.0));
    assert_eq!(cost(&recorded, "my-local"), None);
    assert_eq!(recorded["total"]["unpriced_calls"], 1);
}

/// A one-file diff adding `n` lines (about 20 bytes each).
fn added_lines_diff(n: usize) -> String {
    let mut s = format!("diff --git a/src/gen.rs b/src/gen.rs\nnew file mode 100644\n--- /dev/null\n+++ b/src/gen.rs\n@@ -0,0 +1,{n} @@\n");
    for i in 0..n {
        s.push_str(&format!("+const L{i:04}: u32 = {i};\n"));
    }
    s
}

#[test]
fn estimate_refuses_a_diff_over_review_max_diff_bytes_with_its_size_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = added_lines_diff(100);
    let diff = write(dir.path(), "change.diff", &text);
    let size = text.len();
    assert!(size > 1024, "review.max_diff_bytes is at least 1024");
    let tight = write(dir.path(), "tight.yml", format!("review:\n  max_diff_bytes: {}\n", size - 1));
    let roomy = write(dir.path(), "roomy.yml", format!("review:\n  max_diff_bytes: {size}\n"));
    let run = |config: &Path, stdin: bool| {
        let mut cmd = agentctl();
        cmd.current_dir(dir.path()).args(["cost", "estimate", "--format", "json", "--config"]).arg(config);
        if stdin {
            cmd.args(["--diff", "-"]).write_stdin(text.clone());
        } else {
            cmd.arg("--diff").arg(&diff);
        }
        cmd.output().unwrap()
    };
    // A file: refused from its size, which the message gives exactly, with the key to raise.
    let out = run(&tight, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("is {size} bytes, over the limit of {} bytes", size - 1)), "{err}");
    assert!(err.contains("review.max_diff_bytes"), "{err}");
    assert!(out.stdout.is_empty(), "no estimate printed");
    // Stdin: read no further than the limit, so the size is "more than".
    let out = run(&tight, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("more than {} bytes", size - 1)) && err.contains("review.max_diff_bytes"), "{err}");
    // Exactly at the limit is fine, from both.
    for stdin in [false, true] {
        let out = run(&roomy, stdin);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_of_a_pr_reads_its_diff_from_github_and_applies_the_cap() {
    let text = added_lines_diff(100);
    let gh = crate::common::FakeGitHub::start("octo", "r0", 7, text.clone().into_bytes(), None).await;
    let provider = crate::common::strict_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "agentctl.yml", crate::common::config_for(&provider.uri(), ""));
    let tight = write(
        dir.path(),
        "tight.yml",
        format!("{}  max_diff_bytes: 1024\n", crate::common::config_for(&provider.uri(), "")),
    );
    let run = |config: &Path| {
        agentctl()
            .current_dir(dir.path())
            .env("GITHUB_TOKEN", "ghs_testtoken123")
            .env("GITHUB_REPOSITORY", "octo/r0")
            .env("GITHUB_API_URL", gh.api_url())
            .env("OPENAI_API_KEY", "sk-test-not-used")
            .args(["cost", "estimate", "--pr", "7", "--format", "json", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let out = run(&config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["model"], "gpt-4o-mini", "{e}");
    assert_eq!(e["chunks"].as_array().unwrap().len(), 1, "{e}");
    assert!(e["input_tokens"].as_u64().unwrap() > 0 && e["cost_usd"].as_f64().unwrap() > 0.0, "{e}");
    assert_eq!(gh.requests().await, vec![("GET".to_owned(), "/api/v3/repos/octo/r0/pulls/7".to_owned())]);
    assert!(provider.received_requests().await.unwrap().is_empty(), "an estimate calls no model");

    let out = run(&tight);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pull request #7 is {} bytes, over the limit of 1024 bytes", text.len()))
            && err.contains("review.max_diff_bytes"),
        "{err}"
    );
}

/// An artifact zip as `actions/upload-artifact` builds it: `usage.jsonl` (deflated) with
/// `records`, plus a file that is not JSONL (ignored).
fn artifact_zip(records: &[(String, UsageRecord)]) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("usage.jsonl", deflated).unwrap();
    for (id, r) in records {
        zip.write_all(agentctl::usage::jsonl::to_line(id, r).as_bytes()).unwrap();
    }
    zip.start_file("README.txt", deflated).unwrap();
    zip.write_all(b"not usage\n").unwrap();
    zip.finish().unwrap().into_inner()
}

/// Artifact `id` downloadable as GitHub serves it: `…/artifacts/{id}/zip` on `gh` redirects
/// (with `location_query` on the storage URL) to `storage`, which serves a zip of `records`.
async fn mount_artifact_download(
    gh: &wiremock::MockServer,
    storage: &wiremock::MockServer,
    id: u64,
    location_query: &str,
    records: &[(String, UsageRecord)],
) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let base = format!("{}/repos/octo/r0/actions", crate::common::API_PREFIX);
    Mock::given(method("GET"))
        .and(path(format!("{base}/artifacts/{id}/zip")))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/blob/{id}.zip{location_query}", storage.uri()).as_str()),
        )
        .mount(gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/blob/{id}.zip")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(artifact_zip(records)))
        .mount(storage)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_artifacts_adds_both_runs_rows_once_and_skips_expired_and_fork_artifacts() {
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let gh = crate::common::FakeGitHub::start("octo", "r0", 1, Vec::new(), None).await;
    let storage = MockServer::start().await;
    let base = format!("{}/repos/octo/r0/actions", crate::common::API_PREFIX);
    let now = agentctl::clock::now_ms();
    let run_records = |run: u64| -> Vec<(String, UsageRecord)> {
        (0..2)
            .map(|i| {
                let mut r = record(now - 1000, "octo/r0", "ci", "gpt-4o", Some(0.01), "ok");
                r.run_id = Some(run.to_string());
                (format!("{run:016x}{i:016x}"), r)
            })
            .collect()
    };
    let artifact_from = |id: u64, run: u64, expired: bool, head_repository_id: u64| {
        serde_json::json!({"id": id, "node_id": "MDg6QXJ0aWZhY3Qx", "name": "agentctl-usage", "size_in_bytes": 512,
            "url": "", "archive_download_url": "", "expired": expired, "created_at": "2026-11-30T06:00:00Z",
            "expires_at": "2027-02-28T06:00:00Z", "updated_at": "2026-11-30T06:00:00Z",
            "workflow_run": {"id": run, "repository_id": 1, "head_repository_id": head_repository_id, "head_branch": "main", "head_sha": "abc"}})
    };
    let artifact = |id: u64, run: u64, expired: bool| artifact_from(id, run, expired, 1);
    // Two pages: the Link header carries the second (absolute, GHES prefix kept).
    let next = format!(
        "<{}/repos/octo/r0/actions/artifacts?name=agentctl-usage&per_page=100&page=2>; rel=\"next\"",
        gh.api_url()
    );
    Mock::given(method("GET"))
        .and(path(format!("{base}/artifacts")))
        .and(query_param("name", "agentctl-usage"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .set_body_json(serde_json::json!({"total_count": 3, "artifacts": [artifact(11, 101, false)]})),
        )
        .mount(&gh.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/artifacts")))
        .and(query_param("name", "agentctl-usage"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"total_count": 4, "artifacts": [artifact(12, 102, false), artifact(13, 103, true), artifact_from(14, 104, false, 666)]}),
        ))
        .mount(&gh.server)
        .await;
    for (id, run) in [(11, 101), (12, 102)] {
        mount_artifact_download(&gh.server, &storage, id, "?sig=s3cr3t", &run_records(run)).await;
    }
    crate::common::mount_catch_all(&storage, "storage").await;

    let state = unique_state_path();
    let run = || {
        agentctl()
            .env("AGENTCTL_STATE", &state)
            .env("GITHUB_TOKEN", "ghs_testtoken123")
            .env("GITHUB_API_URL", gh.api_url())
            .args(["cost", "import", "--from-artifacts", "--repo", "octo/r0"])
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.trim(),
        "imported 4 usage record(s); 0 already present (skipped); from 2 artifact(s) named agentctl-usage; 1 expired (skipped); 1 from fork runs (skipped)"
    );
    let ledger = Store::open(&state).unwrap().usage_since(0).unwrap();
    let mut runs: Vec<_> = ledger.iter().map(|r| r.run_id.clone().unwrap()).collect();
    runs.sort();
    assert_eq!(runs, ["101", "101", "102", "102"]);

    // Again: every id is already there.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("imported 0 usage record(s); 4 already present"));
    assert_eq!(rows(&state), 4);

    // The token went to GitHub only: never to the storage host, and the expired one was never fetched.
    let to_storage = storage.received_requests().await.unwrap();
    assert_eq!(to_storage.len(), 4, "two downloads per run");
    assert!(to_storage.iter().all(|r| !r.headers.contains_key("authorization")), "token leaked to storage");
    let to_github = gh.server.received_requests().await.unwrap();
    assert!(to_github.iter().all(|r| r.headers.get("authorization").unwrap() == "Bearer ghs_testtoken123"));
    assert!(!gh.requests().await.iter().any(|(_, p)| p.contains("/13/")), "expired artifact downloaded");
    assert!(!gh.requests().await.iter().any(|(_, p)| p.contains("/14/")), "a fork run's artifact downloaded");
}

/// `--name` as a glob: names unique per run (`agentctl-usage-<run>-<attempt>`, as
/// examples/workflows/review.yml uploads them) are listed without the API's exact-name filter
/// and matched here; an artifact of another name is never downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_artifacts_with_a_glob_name_takes_every_matching_artifact_and_nothing_else() {
    use wiremock::matchers::{method, path, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let gh = crate::common::FakeGitHub::start("octo", "r0", 1, Vec::new(), None).await;
    let storage = MockServer::start().await;
    let base = format!("{}/repos/octo/r0/actions", crate::common::API_PREFIX);
    let now = agentctl::clock::now_ms();
    let artifact = |id: u64, name: &str| {
        serde_json::json!({"id": id, "name": name, "size_in_bytes": 512, "expired": false,
            "created_at": "2026-11-30T06:00:00Z", "workflow_run": {"id": id, "repository_id": 1, "head_repository_id": 1}})
    };
    Mock::given(method("GET"))
        .and(path(format!("{base}/artifacts")))
        .and(query_param_is_missing("name"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"total_count": 3, "artifacts": [
            artifact(21, "agentctl-usage-21-1"), artifact(22, "agentctl-usage-22-2"), artifact(23, "coverage-report")]})))
        .mount(&gh.server)
        .await;
    for id in [21u64, 22] {
        let records = vec![(format!("{id:032x}"), record(now - 1000, "octo/r0", "ci", "gpt-4o", Some(0.01), "ok"))];
        mount_artifact_download(&gh.server, &storage, id, "", &records).await;
    }
    crate::common::mount_catch_all(&storage, "storage").await;
    let state = unique_state_path();
    let out = agentctl()
        .env("AGENTCTL_STATE", &state)
        .env("GITHUB_TOKEN", "ghs_testtoken123")
        .env("GITHUB_API_URL", gh.api_url())
        .args(["cost", "import", "--from-artifacts", "--repo", "octo/r0", "--name", "agentctl-usage-*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(
            "imported 2 usage record(s); 0 already present (skipped); from 2 artifact(s) named agentctl-usage-*"
        ),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(rows(&state), 2);
    assert!(!gh.requests().await.iter().any(|(_, p)| p.contains("/23/")), "another artifact downloaded");
    // A glob that does not parse is a usage error before any request.
    let out = agentctl()
        .env("GITHUB_TOKEN", "ghs_testtoken123")
        .env("GITHUB_API_URL", gh.api_url())
        .args(["cost", "import", "--from-artifacts", "--repo", "octo/r0", "--name", "agentctl-usage-[*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Regression: `cost_usd: -1e9` in an imported record turned a blocked budget into "ok". Now
/// the import is exit 2 naming the line and the field, nothing from the file is imported, and
/// the budget stays blocked. Negative and absurd token counts are refused the same way.
#[test]
fn an_imported_negative_cost_or_token_count_is_exit_2_and_a_blocked_budget_stays_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "budgets:\n  - {scope: repo, period: day, limit_usd: 10}\n";
    let state = spent_today(10.5);
    assert_eq!(check(&state, dir.path(), Some(cfg), &[]).0, Some(5), "blocked before the import");
    let now = agentctl::clock::now_ms();
    let good = agentctl::usage::jsonl::to_line(
        &format!("{:032x}", 1),
        &record(now, "octo/r0", "wf0", "gpt-4o", Some(0.5), "ok"),
    );
    let negative = agentctl::usage::jsonl::to_line(
        &format!("{:032x}", 2),
        &record(now, "octo/r0", "wf0", "gpt-4o", Some(-1e9), "ok"),
    );
    let minus_tokens = good
        .replace(&format!("{:032x}", 1), &format!("{:032x}", 3))
        .replace("\"input_tokens\":1000", "\"input_tokens\":-1000");
    let mut absurd = record(now, "octo/r0", "wf0", "gpt-4o", Some(0.5), "ok");
    absurd.usage.output_tokens = 1 << 62;
    let absurd = agentctl::usage::jsonl::to_line(&format!("{:032x}", 4), &absurd);
    for (bad, field) in [
        (&negative, "`cost_usd` is negative"),
        (&minus_tokens, "`usage.input_tokens` is -1000"),
        (&absurd, "`usage.output_tokens` is 4611686018427387904"),
    ] {
        let file = write(dir.path(), "usage.jsonl", format!("{good}{bad}"));
        let (code, _, stderr) = import(&state, &[&file]);
        assert_eq!(code, Some(2), "{field}: {stderr}");
        assert!(stderr.contains(&format!("{}:2: ", file.display())) && stderr.contains(field), "{field}: {stderr}");
        assert_eq!(rows(&state), 2, "{field}: nothing imported, not even the good line");
    }
    let (code, err, outputs) = check(&state, dir.path(), Some(cfg), &[]);
    assert_eq!((code, outputs["budget-state"].as_str()), (Some(5), "hard"), "{err}");
}

/// The same refusal over `--from-artifacts`: an artifact holding a negative cost is exit 2
/// naming the artifact, its line and the field; none of its records are imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_with_a_negative_cost_is_exit_2_and_nothing_of_it_is_imported() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let gh = crate::common::FakeGitHub::start("octo", "r0", 1, Vec::new(), None).await;
    let storage = MockServer::start().await;
    let now = agentctl::clock::now_ms();
    Mock::given(method("GET"))
        .and(path(format!("{}/repos/octo/r0/actions/artifacts", crate::common::API_PREFIX)))
        .and(query_param("name", "agentctl-usage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"total_count": 1, "artifacts": [
            {"id": 31, "name": "agentctl-usage", "size_in_bytes": 512, "expired": false, "created_at": "2026-11-30T06:00:00Z",
             "workflow_run": {"id": 31, "repository_id": 1, "head_repository_id": 1}}]})))
        .mount(&gh.server)
        .await;
    let records = vec![
        (format!("{:032x}", 31), record(now, "octo/r0", "ci", "gpt-4o", Some(0.01), "ok")),
        (format!("{:032x}", 32), record(now, "octo/r0", "ci", "gpt-4o", Some(-1e9), "ok")),
    ];
    mount_artifact_download(&gh.server, &storage, 31, "", &records).await;
    let state = unique_state_path();
    let out = agentctl()
        .env("AGENTCTL_STATE", &state)
        .env("GITHUB_TOKEN", "ghs_testtoken123")
        .env("GITHUB_API_URL", gh.api_url())
        .args(["cost", "import", "--from-artifacts", "--repo", "octo/r0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("artifact 31") && stderr.contains(":2: ") && stderr.contains("`cost_usd` is negative"),
        "{stderr}"
    );
    assert_eq!(Store::open(&state).map(|s| s.usage_since(i64::MIN).unwrap().len()).unwrap_or(0), 0);
}
