//! Stage 6 of a review: the sinks after it is posted — stdout, SARIF, the step outputs and the
//! job summary (README, "Outputs").

use std::path::Path;

use crate::actions;
use crate::context::Env;
use crate::env_vars as ev;
use crate::findings::Severity;
use crate::log;
use crate::output;
use crate::redact::Redactor;
use crate::report::{PostStatus, ReviewReport, Verdict};
use crate::review::settings::{Format, ReviewSettings};

/// The sinks after the review is posted: stdout (the dry-run rendering or the chosen format),
/// SARIF, `GITHUB_OUTPUT`, the job summary. Each is tried even when one before it failed; the
/// failures come back named, so the run exits 1 only after all were tried.
pub(crate) fn deliver(env: &Env, settings: &ReviewSettings, report: &ReviewReport, redactor: &Redactor) -> Vec<String> {
    let mut failures = vec![];
    if settings.dry_run || report.status == PostStatus::DryRun || settings.format != Format::Markdown {
        // The runner reads stdout for workflow commands too, and the report holds untrusted
        // text (PR, diff, model answer): in Actions, JSON is made inert without changing its
        // value, and Markdown that could hold a command is fenced with `::stop-commands::`.
        let printed = match settings.format {
            Format::Json => output::stdout_json(&redactor.redact_json(&output::json::report(report))),
            Format::Sarif => output::stdout_json(&redactor.redact_json(&output::sarif::render(report))),
            Format::Markdown | Format::Text => output::stdout(&redactor.redact(&output::markdown::dry_run(report))),
        };
        if let Err(e) = printed {
            failures.push(format!("cannot write the review to stdout: {e}"));
        }
    }
    let mut sarif_file = String::new();
    if let Some(path) = &settings.sarif {
        let text = redactor.redact_json(&output::sarif::render(report));
        match crate::files::write_atomically(path, text.as_bytes()) {
            Ok(()) => sarif_file = path.display().to_string(),
            Err(e) => failures.push(format!("cannot write SARIF to {}: {e}", path.display())),
        }
    }
    if let Some(path) = env.get(ev::GITHUB_OUTPUT) {
        let outputs: Vec<(String, String)> =
            step_outputs(report, &sarif_file).into_iter().map(|(k, v)| (k, redactor.redact(&v))).collect();
        if let Err(e) = actions::write_outputs(Path::new(path), &outputs) {
            failures.push(format!("cannot write step outputs to GITHUB_OUTPUT ({path}): {}", log::error_chain(&e)));
        }
    }
    if let Some(path) = env.get(ev::GITHUB_STEP_SUMMARY) {
        if let Err(e) = actions::write_step_summary(Path::new(path), &report.summary_comment) {
            failures.push(format!("cannot write the job summary to GITHUB_STEP_SUMMARY ({path}): {e}"));
        }
    }
    for f in &failures {
        log::error(f);
    }
    failures
}

/// The step outputs of a finished review (README, "Outputs").
fn step_outputs(report: &ReviewReport, sarif_file: &str) -> Vec<(String, String)> {
    let counts = report.counts();
    let mut outputs: Vec<(String, String)> = vec![("findings".into(), counts.values().sum::<usize>().to_string())];
    for (sev, n) in &counts {
        outputs.push((sev.as_str().into(), n.to_string()));
    }
    outputs.extend([
        ("verdict".to_string(), report.verdict.as_str().to_string()),
        ("tokens-in".to_string(), report.usage.total_input().to_string()),
        ("tokens-out".to_string(), report.usage.output_tokens.to_string()),
        ("cost-usd".to_string(), report.cost_usd.map(|c| format!("{c:.6}")).unwrap_or_else(|| "unknown".into())),
        ("review-url".to_string(), report.review_url.clone().unwrap_or_default()),
        ("sarif-file".to_string(), sarif_file.to_string()),
    ]);
    outputs
}

/// Step outputs of a run that stopped because the head was reviewed already: `verdict` is
/// `skipped`, `review-url` the existing review; the counts are empty (nothing was reviewed now).
pub(crate) fn write_skipped_outputs(env: &Env, review_url: &str, redactor: &Redactor) -> Vec<String> {
    let Some(path) = env.get(ev::GITHUB_OUTPUT) else { return vec![] };
    let mut outputs: Vec<(String, String)> = ["findings", "tokens-in", "tokens-out", "cost-usd", "sarif-file"]
        .into_iter()
        .chain(Severity::ALL.iter().map(|s| s.as_str()))
        .map(|k| (k.to_string(), String::new()))
        .collect();
    outputs.push(("verdict".into(), Verdict::Skipped.as_str().into()));
    outputs.push(("review-url".into(), redactor.redact(review_url)));
    match actions::write_outputs(Path::new(path), &outputs) {
        Ok(()) => vec![],
        Err(e) => vec![format!("cannot write step outputs to GITHUB_OUTPUT ({path}): {}", log::error_chain(&e))],
    }
}
