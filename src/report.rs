//! The review's result as data: what was (or would be) posted and its accounting. Commands
//! build a [`ReviewReport`]; the renderers in [`crate::output`] fill in its
//! [`RenderedReview`] and read it. Nothing here renders or talks to GitHub: the review domain
//! turns the rendered review into GitHub's request (`github::ReviewRequest`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diff::Skipped;
use crate::exit::Exit;
use crate::findings::{Finding, Severity, Side};
use crate::resilience::ResilienceCounts;
use crate::usage::Usage;

/// Where a finding is shown on GitHub (SPEC §3.1 step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// An inline review comment on its line(s): the lines are commentable on that side, within
    /// one hunk of the PR's diff.
    Inline,
    /// Listed in the review body under its file and line (the file is in the diff, the line is
    /// not commentable, or the inline cap was reached).
    File,
    /// Listed in the review body only (the path is not in the diff).
    Body,
}

/// A finding and where it lands.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    /// Where it is shown.
    pub placement: Placement,
}

/// What happened on GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostStatus {
    /// Printed only (`--dry-run` or no token).
    DryRun,
    /// Review and summary written.
    Posted,
}

/// Overall result for outputs: `fail` when a finding is at or above `--fail-on`, else `pass`;
/// `skipped` when this head sha had been reviewed already (nothing was run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skipped,
    /// The budget gate refused the run before any model call (exit 5).
    #[serde(rename = "budget-exceeded")]
    BudgetExceeded,
}

impl Verdict {
    /// Lowercase name for outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
            Verdict::BudgetExceeded => "budget-exceeded",
        }
    }
}

/// The review's result: what was (or would be) posted and its accounting.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewReport {
    pub repository: Option<String>,
    pub pr: Option<u64>,
    pub head_sha: Option<String>,
    pub base_sha: Option<String>,
    /// The previous reviewed head sha when this review is incremental.
    pub incremental_from: Option<String>,
    /// `builtin` or the provider entry name.
    pub provider: String,
    /// Model(s) that answered.
    pub models: Vec<String>,
    /// The model's overview (joined over chunks), or the builtin note.
    pub overview: String,
    pub findings: Vec<PlacedFinding>,
    /// Files whose every selected line was reviewed.
    pub files_reviewed: Vec<String>,
    /// Files of which some lines were reviewed and some not (over the token budget, a failed
    /// request), with why. Disjoint from the other two lists.
    pub partly_reviewed: Vec<NotReviewed>,
    /// Files not reviewed at all (skipped, over budget, failed), with why.
    pub not_reviewed: Vec<NotReviewed>,
    pub chunks: usize,
    /// Chunks of `chunks` answered from the response cache: no provider call, $0.
    pub chunks_from_cache: usize,
    pub usage: Usage,
    /// USD; `None` when a model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Effective date of the price table used.
    pub price_table: String,
    /// The review as rendered (empty until `output::markdown::render_review`).
    pub review: RenderedReview,
    pub summary_comment: String,
    pub review_url: Option<String>,
    pub status: PostStatus,
    pub verdict: Verdict,
    pub fail_on: Option<Severity>,
    /// Retries, circuit breaker changes and fallbacks during this run.
    pub resilience: ResilienceCounts,
}

/// What the review posts as its event: comments only, or a request for changes
/// (`fail_on` reached with `review.request_changes`). Serialized `COMMENT` / `REQUEST_CHANGES`,
/// GitHub's names for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewAction {
    Comment,
    RequestChanges,
}

/// The review as it is (or would be) posted: the body with its marker, the inline comments, all
/// redacted. In `--format json` under `review`, fields in this order (the v1 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedReview {
    /// The head sha the review is for.
    pub commit_id: String,
    /// Markdown body, ending with the review marker.
    pub body: String,
    pub event: ReviewAction,
    pub comments: Vec<RenderedComment>,
}

/// One inline comment: `line` (and `start_line` for a range) on `side` of `path`'s diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedComment {
    pub path: String,
    pub line: u32,
    pub side: Side,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_side: Option<Side>,
    /// Markdown body.
    pub body: String,
}

/// A file that was not (fully) reviewed, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotReviewed {
    pub path: String,
    pub reason: String,
}

impl From<&Skipped> for NotReviewed {
    fn from(s: &Skipped) -> Self {
        Self { path: s.path.clone(), reason: s.reason.to_string() }
    }
}

impl ReviewReport {
    /// Findings per severity, every severity present (0 when none).
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut c: BTreeMap<Severity, usize> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
        for f in &self.findings {
            *c.entry(f.finding.severity).or_default() += 1;
        }
        c
    }

    /// Exit code by `fail_on`.
    pub fn exit(&self) -> Exit {
        match self.fail_on {
            Some(t) => match self.findings.iter().map(|f| f.finding.severity).filter(|s| s.at_least(t)).min() {
                Some(worst) => Exit::Findings(worst.rank()),
                None => Exit::Ok,
            },
            None => Exit::Ok,
        }
    }
}
