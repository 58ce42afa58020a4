//! The [`ReviewReport`] of a finished review: what was found and placed, who was reviewed,
//! the verdict, and what it cost.

use crate::context::Context;
use crate::ledger::Ledger;
use crate::report::{NotReviewed, PlacedFinding, PostStatus, RenderedReview, ReviewAction, ReviewReport, Verdict};
use crate::review::ask::ModelPass;
use crate::review::ReviewRun;

/// What the review stages produced, before the report is built.
#[derive(Debug)]
pub(crate) struct Reviewed {
    /// The placed findings ([`crate::review::place::place_findings`]).
    pub(crate) findings: Vec<PlacedFinding>,
    /// Every selected line answered for.
    pub(crate) files_reviewed: Vec<String>,
    pub(crate) partly_reviewed: Vec<NotReviewed>,
    pub(crate) not_reviewed: Vec<NotReviewed>,
    /// The model stage (or the builtin rules only).
    pub(crate) asked: ModelPass,
    /// The sha an incremental review started from.
    pub(crate) incremental_from: Option<String>,
}

/// The report of `reviewed` on the run's PR (or `ctx`'s sha), not rendered yet: the verdict
/// against the run's `fail_on`, the review event against `review.request_changes_on`, the
/// status `DryRun` when `dry_run`, the price table of `ledger`.
pub(crate) fn build(
    run: &ReviewRun,
    ctx: &Context,
    dry_run: bool,
    ledger: &Ledger,
    reviewed: Reviewed,
) -> ReviewReport {
    let Reviewed { findings: placed, files_reviewed, partly_reviewed, not_reviewed, asked, incremental_from } =
        reviewed;
    let fail_verdict = run.fail_on.is_some_and(|t| placed.iter().any(|p| p.finding.severity.at_least(t)));
    let request_changes = run
        .config
        .review
        .request_changes_on
        .severity()
        .is_some_and(|t| placed.iter().any(|p| p.finding.severity.at_least(t)));
    let head_sha = run.pr.as_ref().map(|p| p.head_sha.clone()).or_else(|| ctx.sha.clone());
    for severity in crate::findings::Severity::ALL {
        let n = placed.iter().filter(|p| p.finding.severity == severity).count() as u64;
        if n > 0 {
            crate::telemetry::count_findings(severity.as_str(), n);
        }
    }
    ReviewReport {
        repository: ctx.repository.as_ref().map(|r| r.to_string()),
        pr: run.pr.as_ref().map(|p| p.number),
        head_sha: head_sha.clone(),
        base_sha: run.pr.as_ref().map(|p| p.base_sha.clone()),
        incremental_from,
        provider: run.provider.name().to_string(),
        models: asked.models.iter().cloned().collect(),
        overview: asked.overviews.join("\n\n"),
        findings: placed,
        files_reviewed,
        partly_reviewed,
        not_reviewed,
        chunks: asked.chunks,
        chunks_from_cache: asked.from_cache,
        usage: asked.usage,
        cost_usd: asked.cost_usd,
        price_table: ledger.prices().effective_date.clone(),
        review: RenderedReview {
            commit_id: head_sha.unwrap_or_default(),
            body: String::new(),
            event: if request_changes { ReviewAction::RequestChanges } else { ReviewAction::Comment },
            comments: vec![],
        },
        summary_comment: String::new(),
        review_url: None,
        status: if dry_run { PostStatus::DryRun } else { PostStatus::Posted },
        verdict: if fail_verdict { Verdict::Fail } else { Verdict::Pass },
        fail_on: run.fail_on,
        resilience: crate::resilience::counts(),
    }
}
