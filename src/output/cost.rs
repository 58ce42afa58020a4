//! Renderers of `agentctl cost`: the usage report as an aligned table, JSON, CSV or markdown
//! (a GitHub table plus a mermaid `xychart-beta` bar chart of spend per group, which GitHub
//! renders in comments and job summaries: <https://mermaid.js.org/syntax/xyChart.html>), and
//! budget evaluations.
//!
//! Money: tables and markdown show USD to the cent; JSON and CSV carry 6 decimals (a
//! micro-dollar), enough to add rows up again without drift. An unpriced group is `unpriced` in
//! tables and `null` / empty in JSON / CSV — never `0`.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::actions::{Annotation, AnnotationLevel};
use crate::budget::{BudgetState, Evaluation};
use crate::estimate::Estimate;
use crate::ledger::import::{ArtifactCounts, ImportCounts};
use crate::store::{Store, StoreError};
use crate::usage::report::{format_time, Report, ReportRow};

/// The CSV columns after the group's.
const CSV_COLUMNS: &str =
    "calls,input_tokens,cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,output_tokens,reasoning_tokens,cost_usd,unpriced_calls,failures,reported_calls";

/// USD rounded to a micro-dollar, for JSON.
fn micro(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

/// The one-line answer for a window without usage: `no usage recorded since 2026-11-01 00:00 UTC`.
pub fn empty(report: &Report) -> String {
    let mut s = format!("no usage recorded since {}", format_time(report.since_ms));
    if let Some(until) = report.until_ms {
        let _ = write!(s, " (until {})", format_time(until));
    }
    s.push('\n');
    s
}

fn window(report: &Report) -> String {
    match report.until_ms {
        Some(until) => format!("{} to {}", format_time(report.since_ms), format_time(until)),
        None => format!("since {}", format_time(report.since_ms)),
    }
}

fn cells(r: &ReportRow) -> Vec<String> {
    vec![
        r.group.clone(),
        r.calls.to_string(),
        r.input_tokens.to_string(),
        r.cache_read_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.cache_write_1h_tokens.to_string(),
        r.output_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.cost_cell(),
        r.failures.to_string(),
        r.reported_calls.to_string(),
    ]
}

/// Columns of the table and markdown forms.
const COLUMNS: usize = 11;

fn headers(report: &Report) -> [String; COLUMNS] {
    [
        report.group_by.as_str().to_owned(),
        "calls".into(),
        "input".into(),
        "cache read".into(),
        "cache write".into(),
        "cache write 1h".into(),
        "output".into(),
        "reasoning".into(),
        "USD".into(),
        "failures".into(),
        "reported".into(),
    ]
}

/// An aligned plain-text table: a header, one line per group, a `total` line. Numbers are right
/// aligned; tokens are tokens, `USD` to the cent.
pub fn table(report: &Report) -> String {
    let head: Vec<String> = headers(report).into_iter().map(|h| h.to_uppercase()).collect();
    let mut lines: Vec<Vec<String>> = vec![head];
    lines.extend(report.rows.iter().map(cells));
    lines.push(cells(&report.total));
    let widths: Vec<usize> =
        (0..COLUMNS).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        if n + 1 == lines.len() {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
        let parts: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    }
    out
}

fn json_row(r: &ReportRow) -> Value {
    json!({
        "group": r.group,
        "calls": r.calls,
        "input_tokens": r.input_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "output_tokens": r.output_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "cost_usd": r.cost_usd.map(micro),
        "unpriced_calls": r.unpriced_calls,
        "failures": r.failures,
        "reported_calls": r.reported_calls,
    })
}

/// One pretty JSON object: `group_by`, `since`/`until` (Unix ms), `repriced_with` (the price
/// table's date with `--reprice`, else null), `rows` and `total`, each row
/// with the fields of [`ReportRow`] (`cost_usd` null when unpriced).
pub fn json(report: &Report) -> String {
    let v = json!({
        "group_by": report.group_by.as_str(),
        "since_ms": report.since_ms,
        "until_ms": report.until_ms,
        "repriced_with": report.repriced_with,
        "rows": report.rows.iter().map(json_row).collect::<Vec<_>>(),
        "total": json_row(&report.total),
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// RFC 4180 CSV: a header (`<group-by>,calls,…,cost_usd,unpriced_calls,failures`) and one
/// record per group; no total line (a sum of the column gives it). `cost_usd` is empty when
/// unpriced.
pub fn csv(report: &Report) -> String {
    let mut out = format!("{},{CSV_COLUMNS}\r\n", report.group_by.as_str());
    for r in &report.rows {
        let cost = r.cost_usd.map(|c| format!("{c:.6}")).unwrap_or_default();
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
            csv_field(&r.group),
            r.calls,
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cache_write_1h_tokens,
            r.output_tokens,
            r.reasoning_tokens,
            cost,
            r.unpriced_calls,
            r.failures,
            r.reported_calls
        );
    }
    out
}

/// A table cell: defanged (a model name with `<!--` must not open an HTML comment that hides
/// the rest of the summary), pipes escaped, on one line.
fn md_cell(s: &str) -> String {
    super::markdown::defang(s).replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A mermaid label: double quotes would end it, so they become single quotes.
fn mermaid_label(s: &str) -> String {
    format!("\"{}\"", super::markdown::defang(s).replace('"', "'").replace(['\n', '\r'], " "))
}

/// The mermaid `xychart-beta` bar chart of spend (USD, to the cent) per group: one x-axis
/// label per row, a `y-axis "USD" 0 --> max`, one `bar` series with as many values as labels.
/// An unpriced group is drawn as 0 (the table beside it says `unpriced`).
pub fn mermaid_chart(report: &Report) -> String {
    let labels: Vec<String> = report.rows.iter().map(|r| mermaid_label(&r.group)).collect();
    let values: Vec<f64> = report.rows.iter().map(|r| (r.cost_usd.unwrap_or(0.0) * 100.0).round() / 100.0).collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    // A little headroom; at least one cent so an all-zero chart still has an axis.
    let top = ((max * 1.1) * 100.0).ceil().max(1.0) / 100.0;
    let mut s = String::from("```mermaid\nxychart-beta\n");
    let _ = writeln!(s, "    title \"Spend per {} (USD)\"", report.group_by.as_str());
    let _ = writeln!(s, "    x-axis [{}]", labels.join(", "));
    let _ = writeln!(s, "    y-axis \"USD\" 0 --> {top}");
    let _ = writeln!(s, "    bar [{}]", values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", "));
    s.push_str("```\n");
    s
}

/// Markdown for a PR comment or the job summary: a heading with the window, a table (the total
/// in bold) and the [`mermaid_chart`].
pub fn markdown(report: &Report) -> String {
    let mut s = format!("### AI usage per {} ({})\n\n", report.group_by.as_str(), window(report));
    if let Some(date) = &report.repriced_with {
        let _ = writeln!(
            s,
            "Computed costs re-priced with the price table of {date}; provider-reported costs as reported.\n"
        );
    }
    let head = headers(report);
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(head.len() - 1));
    for r in &report.rows {
        let c: Vec<String> = cells(r).iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(s, "| {} |", c.join(" | "));
    }
    let total: Vec<String> = cells(&report.total).iter().map(|c| format!("**{}**", md_cell(c))).collect();
    let _ = writeln!(s, "| {} |", total.join(" | "));
    s.push('\n');
    s.push_str(&mermaid_chart(report));
    if report.total.unpriced_calls > 0 {
        let _ = writeln!(
            s,
            "\n{} call(s) used a model without a price: their tokens are counted, their cost is not (add it under `pricing:`).",
            report.total.unpriced_calls
        );
    }
    if report.total.reported_calls > 0 {
        let _ = writeln!(
            s,
            "\n{} call(s) carry the cost their provider reported (column `reported`); the others are tokens × the price table.",
            report.total.reported_calls
        );
    }
    s
}

/// Budget evaluations as an aligned table (`budget`, `state`, spent, estimate, limit,
/// remaining; USD to the cent).
pub fn check_table(evals: &[Evaluation]) -> String {
    let mut out = String::new();
    for e in evals {
        let _ = writeln!(
            out,
            "{:<5} {}: spent ${:.2}{} of ${:.2} since {} (remaining ${:.2})",
            e.state.as_str(),
            e.label,
            e.spent_usd,
            if e.estimate_usd > 0.0 { format!(" + estimate ${:.2}", e.estimate_usd) } else { String::new() },
            e.limit_usd,
            format_time(e.period_start_ms),
            e.remaining_usd
        );
    }
    out
}

/// One line about a budget for `cost check`'s error and annotations: `all per day spent $9.90
/// of $10.00 since 2026-11-30 00:00 UTC` (spent plus estimate, USD to the cent).
pub fn budget_line(e: &Evaluation) -> String {
    format!(
        "{} spent ${:.2} of ${:.2} since {}",
        e.label,
        e.spent_usd + e.estimate_usd,
        e.limit_usd,
        format_time(e.period_start_ms)
    )
}

/// The annotation of a budget past its soft (warning) or hard (error) limit: [`budget_line`],
/// the share of the limit spent and the soft ratio, in percent.
pub fn budget_annotation(e: &Evaluation) -> Annotation {
    let (level, title) = match e.state {
        BudgetState::Hard => (AnnotationLevel::Error, "budget exceeded"),
        _ => (AnnotationLevel::Warning, "budget soft limit"),
    };
    let message = format!(
        "{} ({:.0} % of the limit; soft ratio {:.0} %)",
        budget_line(e),
        if e.limit_usd > 0.0 { 100.0 * (e.spent_usd + e.estimate_usd) / e.limit_usd } else { 100.0 },
        100.0 * e.budget.soft_ratio
    );
    Annotation { level, title: Some(title.into()), file: None, line: None, end_line: None, message }
}

/// Budget evaluations as a pretty JSON array (amounts in USD to a micro-dollar).
pub fn check_json(evals: &[Evaluation]) -> String {
    let v: Vec<Value> = evals
        .iter()
        .map(|e| {
            json!({
                "budget": e.label,
                "scope": e.budget.scope,
                "match": e.budget.matches,
                "period": e.budget.period,
                "period_start_ms": e.period_start_ms,
                "state": e.state,
                "spent_usd": micro(e.spent_usd),
                "estimate_usd": micro(e.estimate_usd),
                "limit_usd": e.limit_usd,
                "remaining_usd": micro(e.remaining_usd),
                "soft_ratio": e.budget.soft_ratio,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// Why `cost export` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The ledger cannot be read, or a line cannot be written (the store reports it).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The last buffered lines cannot be written.
    #[error("writing to stdout")]
    Flush(#[source] std::io::Error),
}

/// `cost export`: every record of `store` since `since_ms` (Unix milliseconds) as JSON Lines
/// ([`crate::usage::jsonl`]) on stdout, streamed, each line as [`super::stdout_json`] prints it.
/// Returns the number of records.
///
/// Errors: [`ExportError`].
pub fn export(store: &Store, since_ms: i64) -> Result<usize, ExportError> {
    use std::io::Write as _;
    let mut out = super::stdout_buffered();
    let n = store.export_usage(since_ms, |id, r| {
        out.write_all(super::inert_json(&crate::usage::jsonl::to_line(id, r)).as_bytes())
    })?;
    out.flush().map_err(ExportError::Flush)?;
    Ok(n)
}

/// `cost import`'s result: records added, and those already in the ledger.
pub fn imported(c: &ImportCounts) -> String {
    format!("imported {} usage record(s); {} already present (skipped)", c.added, c.present)
}

/// `cost import --from-artifacts`' result: [`imported`], then the artifacts named `name` read,
/// expired, older than `--since` and from fork runs (the last two only when there are any).
pub fn imported_artifacts(c: &ArtifactCounts, name: &str) -> String {
    let mut line =
        format!("{}; from {} artifact(s) named {name}; {} expired (skipped)", imported(&c.records), c.read, c.expired);
    if c.older > 0 {
        let _ = write!(line, "; {} older than --since", c.older);
    }
    if c.forks > 0 {
        let _ = write!(line, "; {} from fork runs (skipped)", c.forks);
    }
    line
}

fn usd_or_unpriced(c: Option<f64>) -> String {
    c.map_or_else(|| "unpriced".to_owned(), |c| format!("${c:.4}"))
}

/// An estimate as text: one line per chunk (input tokens, output upper bound, USD to 1/100 of a
/// cent — single chunks are often below a cent), a total line, and the files over budget.
pub fn estimate_table(e: &Estimate) -> String {
    let mut out = format!(
        "estimate for a review with {} ({}):
",
        e.provider, e.model
    );
    for c in &e.chunks {
        let _ = writeln!(
            out,
            "  chunk {:>3}: {:>8} input + {:>6} output tokens (at most)  {:>10}  {}",
            c.chunk,
            c.input_tokens,
            c.output_tokens,
            usd_or_unpriced(c.cost_usd),
            c.files.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  total: {} chunk(s), {} input + {} output tokens (at most), {}",
        e.chunks.len(),
        e.input_tokens,
        e.output_tokens,
        usd_or_unpriced(e.cost_usd)
    );
    if !e.over_budget.is_empty() {
        let _ = writeln!(out, "  not reviewed (over review.max_total_tokens): {}", e.over_budget.join(", "));
    }
    if let Some(rate) = e.expected_cache_hit_rate {
        let _ = writeln!(
            out,
            "  expected response-cache hit rate: {:.0} % (review chunks answered from the cache in the last {} days; the cost above is before any hit)",
            rate * 100.0,
            crate::estimate::HIT_RATE_WINDOW_DAYS
        );
    }
    out
}

/// An estimate as pretty JSON ([`Estimate`]'s fields; `cost_usd` null when unpriced).
pub fn estimate_json(e: &Estimate) -> String {
    let mut s = serde_json::to_string_pretty(e).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::usage::report::{GroupBy, ReportQuery};

    fn report(rows: Vec<ReportRow>) -> Report {
        let q = ReportQuery {
            since_ms: 0,
            until_ms: None,
            group_by: GroupBy::Model,
            repo: None,
            workflow: None,
            task: None,
        };
        Report::new(&q, rows)
    }

    fn row(group: &str, cost: Option<f64>) -> ReportRow {
        ReportRow {
            group: group.into(),
            calls: 2,
            input_tokens: 100,
            cost_usd: cost,
            unpriced_calls: if cost.is_none() { 2 } else { 0 },
            ..ReportRow::default()
        }
    }

    #[test]
    fn unpriced_is_never_zero_in_any_format() {
        let r = report(vec![row("gpt-4o", Some(1.234_567_8)), row("my-local \"x\"|y", None)]);
        assert!(table(&r).contains("unpriced"), "{}", table(&r));
        let j: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(j["rows"][1]["cost_usd"], Value::Null);
        assert_eq!(j["rows"][0]["cost_usd"], json!(1.234568));
        assert_eq!(j["total"]["unpriced_calls"], json!(2));
        let c = csv(&r);
        let lines: Vec<&str> = c.split("\r\n").collect();
        assert_eq!(lines[0], "model,calls,input_tokens,cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,output_tokens,reasoning_tokens,cost_usd,unpriced_calls,failures,reported_calls");
        assert_eq!(lines[2], "\"my-local \"\"x\"\"|y\",2,100,0,0,0,0,0,,2,0,0");
        let md = markdown(&r);
        assert!(md.contains("| my-local \"x\"\\|y | 2 |"), "{md}");
        assert!(md.contains("x-axis [\"gpt-4o\", \"my-local 'x'|y\"]"), "{md}");
        assert!(md.contains("bar [1.23, 0.00]"), "{md}");
        assert!(md.contains("without a price"), "{md}");
        assert!(!md.contains("provider reported"), "no reported call, no note: {md}");
    }

    #[test]
    fn reported_calls_are_counted_in_every_format() {
        let mut priced = row("claude-sonnet-4-5", Some(0.04));
        priced.reported_calls = 1;
        let r = report(vec![priced, row("gpt-4o", Some(1.0))]);
        let t = table(&r);
        assert!(t.lines().next().unwrap().trim_end().ends_with("REPORTED"), "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with(" 1"), "{t}");
        assert!(t.lines().last().unwrap().ends_with(" 1"), "{t}");
        let j: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(
            (j["rows"][0]["reported_calls"].clone(), j["rows"][1]["reported_calls"].clone()),
            (json!(1), json!(0))
        );
        assert_eq!(j["total"]["reported_calls"], json!(1));
        let c = csv(&r);
        let lines: Vec<&str> = c.split("\r\n").collect();
        assert!(lines[0].ends_with(",reported_calls") && lines[1].ends_with(",1") && lines[2].ends_with(",0"), "{c}");
        let md = markdown(&r);
        assert!(md.contains("| failures | reported |"), "{md}");
        assert!(md.contains("1 call(s) carry the cost their provider reported"), "{md}");
    }

    #[test]
    fn table_aligns_and_ends_with_the_total() {
        let r = report(vec![row("a", Some(1.0)), row("bbbbbbbbbb", Some(2.5))]);
        let t = table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("MODEL "), "{t}");
        assert!(lines[3].starts_with("---"), "{t}");
        assert!(lines[4].starts_with("total") && lines[4].ends_with("$3.50         0         0"), "{t}");
        // Right-aligned numbers: every line has the same width.
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "{t}");
    }
}
