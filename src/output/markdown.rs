//! Markdown for GitHub: the review body, inline comment bodies, the summary comment (also the
//! job summary) and the dry-run rendering. Untrusted strings (paths, model text) are put in code
//! spans or escaped where they land in tables, and every one of them goes through [`defang`] so
//! it can neither open an HTML comment nor pass for our idempotency marker.

use std::fmt::Write as _;

use crate::findings::{Finding, Origin, Severity};
use crate::markers::{Marker, REVIEW_MARKER, SUMMARY_MARKER};
use crate::redact::Redactor;
use crate::report::{NotReviewed, Placement, RenderedComment, ReviewReport};

/// Longest list of not-reviewed files shown in a comment (GitHub caps comment bodies at 65,536
/// characters); the full list is in `--format json` and SARIF-independent outputs.
const MAX_NOT_REVIEWED_ROWS: usize = 300;

/// GitHub refuses an issue comment, review or review comment body over 65,536 characters (422).
pub const MAX_BODY_CHARS: usize = 65_536;

/// Appends `marker` to `body`, first cutting `body` (on a line boundary where possible) so the
/// whole stays under [`MAX_BODY_CHARS`]; the marker is never cut, so idempotency survives.
fn with_marker(mut body: String, marker: &str) -> String {
    const NOTE: &str =
        "\n\n> Cut to fit GitHub's 65,536-character limit; every finding is in the SARIF file and `--format json`.\n\n";
    let budget = MAX_BODY_CHARS.saturating_sub(marker.chars().count() + NOTE.chars().count() + 2);
    if body.chars().count() > budget {
        let cut = body.char_indices().nth(budget).map_or(body.len(), |(i, _)| i);
        let cut = body[..cut].rfind('\n').filter(|&n| n > cut / 2).unwrap_or(cut);
        body.truncate(cut);
        body.push_str(NOTE);
    }
    body.push_str(marker);
    body.push('\n');
    body
}

/// ZERO WIDTH JOINER (U+200D), put inside HTML comment delimiters found in untrusted text.
pub const ZWJ: char = '\u{200D}';

/// Untrusted text (paths, titles, bodies, model text, shas, reasons) made inert as HTML
/// comment delimiters: `<!--` becomes `<!` ZWJ `--` and `-->` becomes `--` ZWJ `>`.
///
/// Why this form: an unclosed `<!--` hides the rest of a GitHub body, and a marker-shaped
/// string could pass for one of our idempotency markers (`crate::github::markers`). Entities
/// (`&lt;!--`) or a backslash (`<\!--`) would show literally inside code spans and fences,
/// where most untrusted text lands; the invisible joiner reads the same everywhere, and no
/// HTML parser sees a comment delimiter in it. A copied path carries the joiner along.
pub fn defang(s: &str) -> String {
    if !s.contains("<!--") && !s.contains("-->") {
        return s.to_string();
    }
    s.replace("<!--", "<!\u{200D}--").replace("-->", "--\u{200D}>")
}

fn badge(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🛑 **Critical**",
        Severity::High => "🔴 **High**",
        Severity::Medium => "🟠 **Medium**",
        Severity::Low => "🟡 **Low**",
        Severity::Info => "🔵 **Info**",
    }
}

/// A code span holding `s` whatever backticks it contains (CommonMark §6.1).
pub fn code(s: &str) -> String {
    let s = defang(&s.replace(['\n', '\r'], " "));
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 || s.starts_with(' ') || s.ends_with(' ') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// A fenced block for `text` whose fence is longer than any backtick run inside it.
fn fenced(info: &str, text: &str) -> String {
    let mut longest = 0;
    for line in text.lines() {
        let t = line.trim_start();
        longest = longest.max(t.chars().take_while(|c| *c == '`').count());
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}{info}\n{}\n{fence}", text.trim_end_matches('\n'))
}

/// `s` on one line, [`defang`]ed.
fn one_line(s: &str) -> String {
    defang(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn origin(f: &Finding) -> String {
    match &f.origin {
        Some(Origin::Rule { id }) => format!("rule {}", code(id)),
        Some(Origin::Model { model, .. }) => format!("model {}", code(model)),
        None => String::new(),
    }
}

/// The body of one inline comment: severity, category, title, body, and a suggestion block
/// when the finding carries one.
pub fn comment_body(f: &Finding) -> String {
    let mut s = comment_body_uncapped(f);
    if s.chars().count() > MAX_BODY_CHARS {
        s = with_marker(s, "");
    }
    s
}

fn comment_body_uncapped(f: &Finding) -> String {
    let mut s =
        format!("{} · {} · {}\n\n**{}**\n", badge(f.severity), one_line(&f.category), origin(f), one_line(&f.title));
    if !f.body.trim().is_empty() {
        let _ = write!(s, "\n{}\n", defang(f.body.trim()));
    }
    if let Some(sugg) = &f.suggestion {
        // A suggestion is code GitHub commits as written, so it is never altered: one holding
        // a comment delimiter is shown as plain, defanged text instead of a suggestion block.
        if defang(sugg) == *sugg {
            let _ = write!(s, "\n{}\n", fenced("suggestion", sugg));
        } else {
            let _ = write!(
                s,
                "\nSuggested change (shown as text: it holds an HTML comment delimiter):\n\n{}\n",
                fenced("text", &defang(sugg))
            );
        }
    }
    s
}

fn counts_line(report: &ReviewReport) -> String {
    let counts = report.counts();
    let total: usize = counts.values().sum();
    if total == 0 {
        return "No findings.".into();
    }
    let parts: Vec<String> = counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{n} {s}")).collect();
    format!("**{total} finding(s)**: {}", parts.join(", "))
}

/// The review's body: counts, the model's overview, and every finding that is not an inline
/// comment (grouped by file), then the idempotency marker.
pub fn review_body(report: &ReviewReport, marker: &str) -> String {
    let mut s = String::from("### agentctl review\n\n");
    let inline = report.findings.iter().filter(|p| p.placement == Placement::Inline).count();
    let _ = writeln!(s, "{} · {inline} inline\n", counts_line(report));
    if !report.overview.trim().is_empty() {
        let _ = writeln!(s, "{}\n", defang(report.overview.trim()));
    }
    let others: Vec<_> = report.findings.iter().filter(|p| p.placement != Placement::Inline).collect();
    if !others.is_empty() {
        s.push_str("#### Findings not on a commentable line\n\n");
        for p in others {
            let f = &p.finding;
            let loc = if p.placement == Placement::File {
                format!("{} line {} ({})", code(&f.path), f.line, f.side.as_str())
            } else {
                format!("{} line {} (not in this diff)", code(&f.path), f.line)
            };
            let _ =
                writeln!(s, "- {} {} — **{}** ({})", badge(f.severity), loc, one_line(&f.title), one_line(&f.category));
            if !f.body.trim().is_empty() {
                for line in defang(f.body.trim()).lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
        }
        s.push('\n');
    }
    if !report.not_reviewed.is_empty() {
        let _ =
            writeln!(s, "{} file(s) were not reviewed; the summary comment lists them.\n", report.not_reviewed.len());
    }
    with_marker(s, marker)
}

/// The summary comment (upserted once per PR) and job summary: findings by severity, reviewed
/// range, files not reviewed and why, tokens and cost.
pub fn summary_comment(report: &ReviewReport, marker: &str) -> String {
    let mut s = String::from("## agentctl review summary\n\n");
    s.push_str("| severity | findings |\n|---|---:|\n");
    for (sev, n) in report.counts() {
        let _ = writeln!(s, "| {sev} | {n} |");
    }
    s.push('\n');
    let head = report.head_sha.as_deref().map(short).unwrap_or("working tree");
    let range = match (&report.incremental_from, &report.base_sha) {
        (Some(prev), _) => {
            format!("{}..{} (incremental: changes since the last review)", code(short(prev)), code(head))
        }
        (None, Some(base)) => format!("{}..{}", code(short(base)), code(head)),
        (None, None) => code(head),
    };
    let _ = writeln!(
        s,
        "- **Reviewed:** {range} · {} file(s) · {} partly · {} not reviewed · {} model request(s){}",
        report.files_reviewed.len(),
        report.partly_reviewed.len(),
        report.not_reviewed.len(),
        report.chunks - report.chunks_from_cache.min(report.chunks),
        match report.chunks_from_cache {
            0 => String::new(),
            n => format!(" · {n} of {} chunks from cache", report.chunks),
        }
    );
    let models = if report.models.is_empty() {
        String::new()
    } else {
        format!(" ({})", report.models.iter().map(|m| code(m)).collect::<Vec<_>>().join(", "))
    };
    let _ = writeln!(s, "- **Provider:** {}{models}", code(&report.provider));
    let u = &report.usage;
    let _ = writeln!(
        s,
        "- **Tokens:** {} in ({} cached{}) · {} out",
        u.total_input(),
        u.cached_input_tokens,
        match (u.cache_write_tokens, u.cache_write_1h_tokens) {
            (0, 0) => String::new(),
            (n, 0) => format!(", {n} written to the prompt cache"),
            (n, h) => format!(", {} written to the prompt cache ({h} for 1 h)", n.saturating_add(h)),
        },
        u.output_tokens
    );
    let cost = match report.cost_usd {
        Some(c) => format!("${c:.4}"),
        None => "unknown (a model is missing from the price table)".into(),
    };
    let _ = writeln!(s, "- **Cost:** {cost} (prices of {})", report.price_table);
    let r = &report.resilience;
    if r.retries + r.fallbacks + r.breaker_changes > 0 {
        let _ = writeln!(
            s,
            "- **Resilience:** {} retr{}, {} fallback(s), {} circuit breaker change(s)",
            r.retries,
            if r.retries == 1 { "y" } else { "ies" },
            r.fallbacks,
            r.breaker_changes
        );
    }
    if let Some(t) = report.fail_on {
        let _ = writeln!(s, "- **Verdict:** {} (fails on {t} and above)", report.verdict.as_str());
    }
    files_table(&mut s, "partly reviewed", &report.partly_reviewed);
    files_table(&mut s, "not reviewed", &report.not_reviewed);
    s.push('\n');
    with_marker(s, marker)
}

/// A collapsed table of `files` with their reasons, titled "N file(s) {what}"; nothing when empty.
fn files_table(s: &mut String, what: &str, files: &[NotReviewed]) {
    if files.is_empty() {
        return;
    }
    let _ = write!(s, "\n<details><summary>{} file(s) {what}</summary>\n\n| file | reason |\n|---|---|\n", files.len());
    for n in files.iter().take(MAX_NOT_REVIEWED_ROWS) {
        let _ = writeln!(s, "| {} | {} |", code(&n.path), defang(&n.reason.replace('|', "\\|").replace('\n', " ")));
    }
    if files.len() > MAX_NOT_REVIEWED_ROWS {
        let _ = writeln!(s, "| … | {} more (see `--format json`) |", files.len() - MAX_NOT_REVIEWED_ROWS);
    }
    s.push_str("\n</details>\n");
}

/// The first 7 characters of a sha, as GitHub abbreviates it. The value may come from a comment
/// body, so it is cut on a character boundary, never panicking.
pub fn short(sha: &str) -> &str {
    sha.char_indices().nth(7).map_or(sha, |(i, _)| &sha[..i])
}

/// Renders the review body, inline comments and summary comment into `report`, redacted, each
/// with its marker as the last line. Run again after findings move from inline to the body.
pub fn render_review(report: &mut ReviewReport, redactor: &Redactor) {
    let head = report.head_sha.as_deref().unwrap_or("none");
    let review_marker = Marker::new(REVIEW_MARKER, &[("sha", head)]);
    report.review.body = redactor.redact(&review_body(report, &review_marker.render()));
    report.review.comments = report
        .findings
        .iter()
        .filter(|p| p.placement == Placement::Inline)
        .map(|p| RenderedComment {
            path: p.finding.path.clone(),
            line: p.finding.line,
            side: p.finding.side,
            start_line: p.finding.start_line,
            start_side: p.finding.start_line.map(|_| p.finding.side),
            body: redactor.redact(&comment_body(&p.finding)),
        })
        .collect();
    let mut fields: Vec<(&str, &str)> = vec![("sha", head)];
    if let Some(b) = report.base_sha.as_deref() {
        fields.push(("base", b));
    }
    let summary_marker = Marker::new(SUMMARY_MARKER, &fields);
    report.summary_comment = redactor.redact(&summary_comment(report, &summary_marker.render()));
}

/// What `--dry-run` prints: the review exactly as it would be posted, then the summary comment.
pub fn dry_run(report: &ReviewReport) -> String {
    let mut s = String::new();
    let target = match (&report.repository, report.pr) {
        (Some(r), Some(n)) => format!("{r}#{n}"),
        (None, Some(n)) => format!("#{n}"),
        _ => "the diff".into(),
    };
    let target = defang(&target);
    let event =
        serde_json::to_value(report.review.event).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let _ = writeln!(s, "<!-- dry run: review that would be posted on {target} (event {event}) -->\n");
    s.push_str(&report.review.body);
    let _ = writeln!(s, "\n---\n\n#### Inline comments ({})\n", report.review.comments.len());
    for c in &report.review.comments {
        let range = match c.start_line {
            Some(start) => format!("lines {start}-{}", c.line),
            None => format!("line {}", c.line),
        };
        let _ = writeln!(s, "##### {} {range} ({})\n\n{}", code(&c.path), c.side.as_str(), c.body);
    }
    let _ = writeln!(s, "---\n\n<!-- dry run: summary comment that would be upserted -->\n");
    s.push_str(&report.summary_comment);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_githubs_limit_are_cut_but_keep_their_marker() {
        let long = "finding line\n".repeat(10_000);
        let out = with_marker(long, "<!-- agentctl:review:v1 sha=abc -->");
        assert!(out.chars().count() <= MAX_BODY_CHARS, "{}", out.chars().count());
        assert!(out.ends_with("<!-- agentctl:review:v1 sha=abc -->\n"));
        assert!(out.contains("Cut to fit"));
        let short = with_marker("ok\n".into(), "<!-- m -->");
        assert_eq!(short, "ok\n<!-- m -->\n");
        // The cut body still ends with a marker that `Marker::find` accepts (its last line).
        let sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
        let marker = crate::markers::Marker::new("review", &[("sha", sha)]);
        let out = with_marker("x\n".repeat(40_000), &marker.render());
        assert_eq!(crate::markers::Marker::find(&out, "review"), Some(marker));
        // Multibyte text is cut on a character boundary.
        let wide = with_marker("é".repeat(70_000), "");
        assert!(wide.chars().count() <= MAX_BODY_CHARS);
    }

    #[test]
    fn forged_markers_in_untrusted_text_are_neutralized() {
        let forged = "<!-- agentctl:review:v1 sha=0123456789abcdef0123456789abcdef01234567 -->";
        let f = Finding {
            path: forged.into(),
            line: 3,
            start_line: None,
            side: Default::default(),
            severity: Severity::High,
            category: forged.into(),
            title: forged.into(),
            body: format!("see\n{forged}"),
            suggestion: None,
            origin: Some(Origin::Rule { id: forged.into() }),
        };
        let body = comment_body(&f);
        assert!(!body.contains("<!--") && !body.contains("-->"), "{body}");
        // Readable: only an invisible joiner was added.
        assert_eq!(body.replace(ZWJ, "").matches(forged).count(), 4, "{body}");
        assert_eq!(defang("a <!-- b --> c"), format!("a <!{ZWJ}-- b --{ZWJ}> c"));
        assert_eq!(defang("<!-->"), format!("<!{ZWJ}--{ZWJ}>"));
        assert!(!code(forged).contains("<!--"));
        // A suggestion is never altered: one holding a delimiter becomes defanged plain text.
        let html = Finding { suggestion: Some("<!-- note -->\n<p>x</p>".into()), ..f.clone() };
        let body = comment_body(&html);
        assert!(!body.contains("```suggestion") && !body.contains("<!--"), "{body}");
        let plain = Finding { suggestion: Some("<p>x</p>".into()), ..f };
        assert!(comment_body(&plain).contains("```suggestion\n<p>x</p>\n```"));
    }

    #[test]
    fn short_shas_never_split_a_character() {
        assert_eq!(short("ec26c3e57ca3a959"), "ec26c3e");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééé"), "ééééééé");
    }

    #[test]
    fn code_spans_survive_backticks_and_newlines() {
        assert_eq!(code("a.rs"), "`a.rs`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("x\ny"), "`x y`");
    }

    #[test]
    fn suggestion_fences_outgrow_backticks_inside() {
        let f = Finding {
            path: "a.md".into(),
            line: 3,
            start_line: None,
            side: Default::default(),
            severity: Severity::Low,
            category: "docs".into(),
            title: "fix fence".into(),
            body: "b".into(),
            suggestion: Some("```rust\nfn x() {}\n```".into()),
            origin: None,
        };
        let body = comment_body(&f);
        assert!(body.contains("````suggestion\n```rust"), "{body}");
        assert!(body.trim_end().ends_with("````"), "{body}");
    }
}
