//! The `--format json` wire shape, v1; fields are only ever added (never renamed, reordered
//! or removed). These structs are the documented shape: they are built from the domain types
//! ([`ReviewReport`] and what it holds) by the `From` impls below, so a change to a domain type
//! cannot silently change the JSON — it fails to compile here instead. Enum values are spelled
//! out here for the same reason.
//!
//! Field order is the order printed. `null` is printed for an absent optional field unless the
//! field says it is left out.

use serde::Serialize;

use crate::findings::{self, Severity, Side};
use crate::report::{self, Placement, PostStatus, ReviewAction, ReviewReport, Verdict};
use crate::resilience::ResilienceCounts;
use crate::usage;

/// `agentctl review --format json`: the review's result, what was (or would be) posted and its
/// accounting.
#[derive(Debug, Serialize)]
pub struct Review<'a> {
    /// `owner/name`.
    pub repository: Option<&'a str>,
    pub pr: Option<u64>,
    pub head_sha: Option<&'a str>,
    pub base_sha: Option<&'a str>,
    /// The previous reviewed head sha when this review is incremental.
    pub incremental_from: Option<&'a str>,
    /// `builtin` or the provider entry name.
    pub provider: &'a str,
    /// Model(s) that answered.
    pub models: &'a [String],
    pub overview: &'a str,
    pub findings: Vec<Finding<'a>>,
    /// Files whose every selected line was reviewed.
    pub files_reviewed: &'a [String],
    /// Files of which some lines were reviewed and some not, with why.
    pub partly_reviewed: Vec<NotReviewed<'a>>,
    /// Files not reviewed at all, with why.
    pub not_reviewed: Vec<NotReviewed<'a>>,
    /// Model requests.
    pub chunks: usize,
    /// Chunks of `chunks` answered from the response cache (no provider call, $0).
    pub chunks_from_cache: usize,
    pub usage: Usage,
    /// USD; `null` when a model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Effective date of the price table used (`YYYY-MM-DD`).
    pub price_table: &'a str,
    pub review: RenderedReview<'a>,
    /// The summary comment's markdown.
    pub summary_comment: &'a str,
    pub review_url: Option<&'a str>,
    /// `dry-run` or `posted`.
    pub status: &'static str,
    /// `pass`, `fail`, `skipped` or `budget-exceeded`.
    pub verdict: &'static str,
    /// The `--fail-on` severity, lowercase.
    pub fail_on: Option<&'static str>,
    pub resilience: Resilience,
}

/// One finding and where it lands.
#[derive(Debug, Serialize)]
pub struct Finding<'a> {
    pub path: &'a str,
    /// 1-based, in the new file on `RIGHT`, the old one on `LEFT`.
    pub line: u32,
    /// Left out when the finding is on one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    /// `LEFT` or `RIGHT`.
    pub side: &'static str,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: &'static str,
    pub category: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    /// Left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<&'a str>,
    /// Left out when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin<'a>>,
    /// `inline`, `file` or `body`.
    pub placement: &'static str,
}

/// Who produced a finding: `{"kind": "rule", "id"}` or `{"kind": "model", "provider", "model"}`.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin<'a> {
    Rule { id: &'a str },
    Model { provider: &'a str, model: &'a str },
}

/// A file not (fully) reviewed, and why.
#[derive(Debug, Serialize)]
pub struct NotReviewed<'a> {
    pub path: &'a str,
    pub reason: &'a str,
}

/// Tokens by class (see [`usage::Usage`]).
#[derive(Debug, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    /// Cache writes with the 5-minute lifetime.
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// Cache writes with the 1-hour lifetime (added after the others, so it prints last).
    pub cache_write_1h_tokens: u64,
}

/// The review as it is (or would be) posted.
#[derive(Debug, Serialize)]
pub struct RenderedReview<'a> {
    pub commit_id: &'a str,
    pub body: &'a str,
    /// `COMMENT` or `REQUEST_CHANGES`.
    pub event: &'static str,
    pub comments: Vec<Comment<'a>>,
}

/// One inline comment.
#[derive(Debug, Serialize)]
pub struct Comment<'a> {
    pub path: &'a str,
    pub line: u32,
    /// `LEFT` or `RIGHT`.
    pub side: &'static str,
    /// Left out on a one-line comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    /// Left out on a one-line comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_side: Option<&'static str>,
    pub body: &'a str,
}

/// Retries, circuit breaker changes and fallbacks during the run.
#[derive(Debug, Serialize)]
pub struct Resilience {
    pub retries: u64,
    pub breaker_changes: u64,
    pub fallbacks: u64,
}

/// `agentctl route --format json`: one routing decision (SPEC §3.3). Built by the `route`
/// command from its decision.
#[derive(Debug, Serialize)]
pub struct RouteDecision<'a> {
    /// `review`, `fix` or `none`.
    pub task: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub tier: &'a str,
    pub runs_on: &'a [String],
    pub reason: &'a str,
    /// The catalog name (`pr.created`, …).
    pub event: &'a str,
    /// `event_name.action` as GitHub sent it.
    pub event_raw: &'a str,
    pub command: &'a str,
    pub args: &'a str,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub rule: &'a str,
    /// Left out without `--explain`.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub explain: &'a [String],
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Left => "LEFT",
        Side::Right => "RIGHT",
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

impl<'a> From<&'a ReviewReport> for Review<'a> {
    fn from(r: &'a ReviewReport) -> Self {
        let not_reviewed = |list: &'a [report::NotReviewed]| list.iter().map(NotReviewed::from).collect();
        Review {
            repository: r.repository.as_deref(),
            pr: r.pr,
            head_sha: r.head_sha.as_deref(),
            base_sha: r.base_sha.as_deref(),
            incremental_from: r.incremental_from.as_deref(),
            provider: &r.provider,
            models: &r.models,
            overview: &r.overview,
            findings: r.findings.iter().map(Finding::from).collect(),
            files_reviewed: &r.files_reviewed,
            partly_reviewed: not_reviewed(&r.partly_reviewed),
            not_reviewed: not_reviewed(&r.not_reviewed),
            chunks: r.chunks,
            chunks_from_cache: r.chunks_from_cache,
            usage: Usage::from(&r.usage),
            cost_usd: r.cost_usd,
            price_table: &r.price_table,
            review: RenderedReview::from(&r.review),
            summary_comment: &r.summary_comment,
            review_url: r.review_url.as_deref(),
            status: match r.status {
                PostStatus::DryRun => "dry-run",
                PostStatus::Posted => "posted",
            },
            verdict: match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Skipped => "skipped",
                Verdict::BudgetExceeded => "budget-exceeded",
            },
            fail_on: r.fail_on.map(severity),
            resilience: Resilience::from(&r.resilience),
        }
    }
}

impl<'a> From<&'a report::PlacedFinding> for Finding<'a> {
    fn from(p: &'a report::PlacedFinding) -> Self {
        let findings::Finding {
            path,
            line,
            start_line,
            side: s,
            severity: sev,
            category,
            title,
            body,
            suggestion,
            origin,
        } = &p.finding;
        Finding {
            path,
            line: *line,
            start_line: *start_line,
            side: side(*s),
            severity: severity(*sev),
            category,
            title,
            body,
            suggestion: suggestion.as_deref(),
            origin: origin.as_ref().map(|o| match o {
                findings::Origin::Rule { id } => Origin::Rule { id },
                findings::Origin::Model { provider, model } => Origin::Model { provider, model },
            }),
            placement: match p.placement {
                Placement::Inline => "inline",
                Placement::File => "file",
                Placement::Body => "body",
            },
        }
    }
}

impl<'a> From<&'a report::NotReviewed> for NotReviewed<'a> {
    fn from(n: &'a report::NotReviewed) -> Self {
        NotReviewed { path: &n.path, reason: &n.reason }
    }
}

impl From<&usage::Usage> for Usage {
    fn from(u: &usage::Usage) -> Self {
        let usage::Usage {
            input_tokens,
            cached_input_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
        } = *u;
        Usage {
            input_tokens,
            cached_input_tokens,
            cache_write_tokens,
            output_tokens,
            reasoning_tokens,
            cache_write_1h_tokens,
        }
    }
}

impl From<&ResilienceCounts> for Resilience {
    fn from(c: &ResilienceCounts) -> Self {
        let ResilienceCounts { retries, breaker_changes, fallbacks } = *c;
        Resilience { retries, breaker_changes, fallbacks }
    }
}

impl<'a> From<&'a report::RenderedReview> for RenderedReview<'a> {
    fn from(r: &'a report::RenderedReview) -> Self {
        RenderedReview {
            commit_id: &r.commit_id,
            body: &r.body,
            event: match r.event {
                ReviewAction::Comment => "COMMENT",
                ReviewAction::RequestChanges => "REQUEST_CHANGES",
            },
            comments: r.comments.iter().map(Comment::from).collect(),
        }
    }
}

impl<'a> From<&'a report::RenderedComment> for Comment<'a> {
    fn from(c: &'a report::RenderedComment) -> Self {
        Comment {
            path: &c.path,
            line: c.line,
            side: side(c.side),
            start_line: c.start_line,
            start_side: c.start_side.map(side),
            body: &c.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire shape of the fields the bundled example's snapshot does not reach (a range on
    /// the old side, a suggestion, a model origin, a range comment) is the domain's own.
    #[test]
    fn optional_fields_serialize_as_the_domain_types_did() {
        let finding = |start_line, side, suggestion: Option<&str>, origin| report::PlacedFinding {
            finding: findings::Finding {
                path: "src/a.rs".into(),
                line: 9,
                start_line,
                side,
                severity: Severity::Medium,
                category: "correctness".into(),
                title: "t".into(),
                body: "b".into(),
                suggestion: suggestion.map(Into::into),
                origin,
            },
            placement: Placement::File,
        };
        let model = findings::Origin::Model { provider: "main".into(), model: "big".into() };
        for p in [finding(Some(7), Side::Left, Some("x"), Some(model)), finding(None, Side::Right, None, None)] {
            assert_eq!(serde_json::to_string(&Finding::from(&p)).unwrap(), serde_json::to_string(&p).unwrap());
        }
        let comment = |start_line, start_side| report::RenderedComment {
            path: "src/a.rs".into(),
            line: 9,
            side: Side::Left,
            start_line,
            start_side,
            body: "b".into(),
        };
        for c in [comment(Some(7), Some(Side::Left)), comment(None, None)] {
            assert_eq!(serde_json::to_string(&Comment::from(&c)).unwrap(), serde_json::to_string(&c).unwrap());
        }
        let review = report::RenderedReview {
            commit_id: "c".into(),
            body: "b".into(),
            event: ReviewAction::RequestChanges,
            comments: vec![],
        };
        assert_eq!(
            serde_json::to_string(&RenderedReview::from(&review)).unwrap(),
            serde_json::to_string(&review).unwrap()
        );
    }
}
