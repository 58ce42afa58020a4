//! Stage 6 of a review: the sinks after it is posted — stdout, SARIF, the step outputs and the
//! job summary (README, "Outputs"), rendered here and written by [`output::deliver`].

use crate::context::Env;
use crate::findings::Severity;
use crate::output::{self, Delivery, SarifFile, Sink, Stdout};
use crate::redact::Redactor;
use crate::report::{PostStatus, ReviewReport, Verdict};
use crate::review::settings::{Format, ReviewSettings};

/// The sinks after the review is posted: stdout (the dry-run rendering or the chosen format),
/// SARIF, `GITHUB_OUTPUT`, the job summary, through [`output::deliver`]. Each is tried even when
/// one before it failed; the failures are logged and come back as lines, so the run exits 1 only
/// after all were tried.
pub(crate) fn deliver(env: &Env, settings: &ReviewSettings, report: &ReviewReport, redactor: &Redactor) -> Vec<String> {
    let mut stdout = None;
    if settings.dry_run || report.status == PostStatus::DryRun || settings.format != Format::Markdown {
        // The runner reads stdout for workflow commands too, and the report holds untrusted
        // text (PR, diff, model answer): in Actions, JSON is made inert without changing its
        // value, and Markdown that could hold a command is fenced with `::stop-commands::`.
        stdout = Some(match settings.format {
            Format::Json => Stdout::Json(redactor.redact_json(&output::json::report(report))),
            Format::Sarif => Stdout::Json(redactor.redact_json(&output::sarif::render(report))),
            Format::Markdown | Format::Text => Stdout::Text(redactor.redact(&output::markdown::dry_run(report))),
        });
    }
    let sarif = settings
        .sarif
        .as_ref()
        .map(|path| SarifFile { path: path.clone(), content: redactor.redact_json(&output::sarif::render(report)) });
    let sarif_file = settings.sarif.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let outputs = step_outputs(report, &sarif_file).into_iter().map(|(k, v)| (k, redactor.redact(&v))).collect();
    let delivery = Delivery { stdout, sarif, outputs: Some(outputs), summary: Some(report.summary_comment.clone()) };
    let failures: Vec<String> = output::deliver(env, delivery)
        .into_iter()
        .map(|f| match f.sink {
            Sink::Stdout => format!("cannot write the review to stdout: {}", f.error),
            _ => f.to_string(),
        })
        .collect();
    // The caller returns them as the run's error, which `main` prints once.
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
        (output::SARIF_FILE_OUTPUT.to_string(), sarif_file.to_string()),
    ]);
    outputs
}

/// Step outputs of a run that stopped because the head was reviewed already: `verdict` is
/// `skipped`, `review-url` the existing review; the counts are empty (nothing was reviewed now).
pub(crate) fn write_skipped_outputs(env: &Env, review_url: &str, redactor: &Redactor) -> Vec<String> {
    let mut outputs: Vec<(String, String)> = ["findings", "tokens-in", "tokens-out", "cost-usd", "sarif-file"]
        .into_iter()
        .chain(Severity::ALL.iter().map(|s| s.as_str()))
        .map(|k| (k.to_string(), String::new()))
        .collect();
    outputs.push(("verdict".into(), Verdict::Skipped.as_str().into()));
    outputs.push(("review-url".into(), redactor.redact(review_url)));
    let delivery = Delivery { outputs: Some(outputs), ..Delivery::default() };
    output::deliver(env, delivery).iter().map(ToString::to_string).collect()
}
