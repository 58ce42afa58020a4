//! The review pipeline under `agentctl review` (SPEC §3.1): the review's own stages, each in
//! its module, on the run's [`crate::session::Session`].
//!
//! 1. [`diff`]: the diff read under its size limit, checked, filtered (each skip with its
//!    reason), and narrowed on `synchronize` (incremental review);
//! 2. builtin rules, then [`ask`]: token-budgeted chunks sent concurrently through the
//!    redacting chain, every call in the ledger;
//! 3. [`place`]: merge, de-duplicate, anchor (inline only where GitHub accepts it);
//! 4. [`coverage`]: reviewed, partly reviewed and not reviewed files, disjoint;
//! 5. [`report`]: the [`crate::report::ReviewReport`], then [`post`]: rendered, and posted as
//!    one review and one summary comment;
//! 6. [`outputs`]: stdout, SARIF, step outputs and job summary, each sink tried even when
//!    another fails.
//!
//! Decisions where the spec is silent are written next to the code that makes them.

pub(crate) mod ask;
pub(crate) mod cache;
pub(crate) mod coverage;
pub(crate) mod diff;
pub(crate) mod outputs;
pub(crate) mod place;
pub(crate) mod report;
pub(crate) mod settings;

use crate::config::Config;
use crate::context::target::PrMeta;
use crate::exit::ExitError;
use crate::findings::Severity;
use crate::github::publish::{self, Previous, Refused};
use crate::github::{GitHub, ReviewComment, ReviewEvent, ReviewRequest};
use crate::log;
use crate::output::markdown;
use crate::providers::select::SelectedProvider;
use crate::redact::Redactor;
use crate::report::{Placement, RenderedReview, ReviewAction, ReviewReport};

/// One review run, resolved before the diff is read: the GitHub client (`None`: a dry run
/// without a repository or token), the PR, its base-branch config, the severity that fails the
/// run, and the provider (replaced by a budget downgrade).
pub(crate) struct ReviewRun {
    pub(crate) github: Option<GitHub>,
    pub(crate) pr: Option<PrMeta>,
    pub(crate) config: Config,
    pub(crate) fail_on: Option<Severity>,
    pub(crate) provider: SelectedProvider,
}

/// Renders the review into `report` (body, inline comments, summary comment; redacted) and,
/// unless `dry_run`, posts it: the review once, then the summary comment, updating the one
/// `previous` runs left. The one place the review meets GitHub's rendering and posting.
///
/// Errors: a failed post (the GitHub error's exit).
pub(crate) async fn post(
    report: &mut ReviewReport,
    run: &ReviewRun,
    previous: &Previous,
    dry_run: bool,
    redactor: &Redactor,
) -> Result<(), ExitError> {
    markdown::render_review(report, redactor);
    if let (false, Some(gh), Some(pr)) = (dry_run, &run.github, &run.pr) {
        let first = request(&report.review);
        let url = publish::post_review(gh, pr.number, &first, |refused| {
            let moved = move_refused(report, refused);
            (moved > 0 || matches!(refused, Refused::All)).then(|| {
                markdown::render_review(report, redactor);
                request(&report.review)
            })
        })
        .await?;
        report.review_url = Some(url);
        let existing = previous.summary.as_ref().map(|(id, _)| *id);
        publish::upsert_summary(gh, pr.number, existing, &report.summary_comment, &run.config.github.identity).await?;
    }
    Ok(())
}

/// Moves the inline findings GitHub refused (`refused`) into the review body; returns how many
/// moved. Against GitHub's own diff, a finding stays inline only where it anchors on the same
/// lines and side it was rendered on.
fn move_refused(report: &mut ReviewReport, refused: Refused<'_>) -> usize {
    let mut moved = 0;
    for p in report.findings.iter_mut().filter(|p| p.placement == Placement::Inline) {
        let f = &p.finding;
        let anchors = match refused {
            Refused::Unanchored(index) => {
                matches!(index.place(f), crate::diff::Anchor::Inline { line, start_line, side, .. }
                if line == f.line && start_line == f.start_line && side == f.side)
            }
            Refused::All => false,
        };
        if !anchors {
            p.placement = Placement::File;
            moved += 1;
        }
    }
    if moved > 0 && matches!(refused, Refused::Unanchored(_)) {
        log::warn(&format!("{moved} comment(s) do not anchor on GitHub's diff; moved to the review body"));
    }
    moved
}

/// GitHub's request body for the rendered review
/// (<https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request>).
fn request(review: &RenderedReview) -> ReviewRequest {
    ReviewRequest {
        commit_id: review.commit_id.clone(),
        body: review.body.clone(),
        event: match review.event {
            ReviewAction::Comment => ReviewEvent::Comment,
            ReviewAction::RequestChanges => ReviewEvent::RequestChanges,
        },
        comments: review
            .comments
            .iter()
            .map(|c| ReviewComment {
                path: c.path.clone(),
                line: c.line,
                side: c.side,
                start_line: c.start_line,
                start_side: c.start_side,
                body: c.body.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// A diff with a renamed file (`old/name.rs` → `new/name.rs`) and a plain one (`src/x.rs`).
    pub(crate) const RENAMED: &str = "diff --git a/old/name.rs b/new/name.rs\nsimilarity index 90%\nrename from old/name.rs\nrename to new/name.rs\nindex 1111111..2222222 100644\n--- a/old/name.rs\n+++ b/new/name.rs\n@@ -1,3 +1,4 @@\n fn a() {}\n+fn b() {}\n fn c() {}\n fn d() {}\ndiff --git a/src/x.rs b/src/x.rs\nindex 1..2 100644\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1,2 @@\n x\n+y\n";
}
