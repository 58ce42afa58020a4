//! Publishing a review: rendering the report into GitHub bodies with their hidden markers,
//! posting the review once (moving comments GitHub refuses into the body), upserting the one
//! summary comment, and finding what an earlier run already posted.
//!
//! Sources: "Create a review for a pull request"
//! (<https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request>), "Update
//! an issue comment" (<https://docs.github.com/en/rest/issues/comments>).

use crate::context::target::PrMeta;
use crate::diff::{self, AnchorIndex};
use crate::log;
use crate::output::markdown;
use crate::redact::Redactor;
use crate::report::{Placement, ReviewReport};

use super::markers::Marker;
use super::{GitHub, GitHubError, PullRequest, ReviewComment};

/// Marker kind of the summary comment (`sha`, `base` fields).
pub const SUMMARY_MARKER: &str = "summary";
/// Marker kind of a posted review (`sha` field).
pub const REVIEW_MARKER: &str = "review";

impl From<PullRequest> for PrMeta {
    fn from(pr: PullRequest) -> Self {
        PrMeta {
            number: pr.number,
            title: pr.title,
            body: pr.body,
            head_sha: pr.head_sha,
            base_sha: pr.base_sha,
            base_ref: pr.base_ref,
        }
    }
}

/// PR `number`'s metadata: from the event payload when it carries that PR, else one
/// `GET /pulls/{n}` (`None` without a client).
pub async fn resolve_pr(
    ctx: &crate::context::Context,
    number: u64,
    gh: Option<&GitHub>,
) -> Result<Option<PrMeta>, GitHubError> {
    if let Some(meta) = PrMeta::from_event(ctx, number) {
        return Ok(Some(meta));
    }
    match gh {
        Some(gh) => Ok(Some(gh.pull(number).await?.into())),
        None => Ok(None),
    }
}

/// What earlier runs left on a PR: the summary comment to update, and a review already posted
/// for the current head. Markers count only on bodies our own account (config
/// `github.identity`) wrote: anyone, another App's bot included, can type a marker.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// The summary comment's id and its marker.
    pub summary: Option<(u64, Marker)>,
    /// URL of a review whose marker names `head_sha`.
    pub reviewed_head: Option<String>,
}

/// Looks up [`Previous`] on PR `number` at `head_sha`, trusting only bodies `identity` wrote;
/// `with_reviews` lists the reviews too (not needed in a dry run, which posts nothing).
pub async fn previous(
    gh: &GitHub,
    number: u64,
    head_sha: &str,
    identity: &str,
    with_reviews: bool,
) -> Result<Previous, GitHubError> {
    let mut found = Previous::default();
    for c in gh.issue_comments(number).await?.into_iter().filter(|c| c.by(identity)) {
        if let Some(m) = c.body.as_deref().and_then(|b| Marker::find(b, SUMMARY_MARKER)) {
            found.summary = Some((c.id, m));
        }
    }
    if with_reviews {
        found.reviewed_head = gh
            .reviews(number)
            .await?
            .into_iter()
            .filter(|r| r.by(identity))
            .find(|r| {
                r.body
                    .as_deref()
                    .and_then(|b| Marker::find(b, REVIEW_MARKER))
                    .is_some_and(|m| m.get("sha") == Some(head_sha))
            })
            .map(|r| r.html_url);
    }
    Ok(found)
}

/// Renders the review body, inline comments and summary comment into `report`, redacted, each
/// with its marker as the last line.
pub fn render_review(report: &mut ReviewReport, redactor: &Redactor) {
    let head = report.head_sha.as_deref().unwrap_or("none");
    let review_marker = Marker::new(REVIEW_MARKER, &[("sha", head)]);
    report.review.body = redactor.redact(&markdown::review_body(report, &review_marker.render()));
    report.review.comments = report
        .findings
        .iter()
        .filter(|p| p.placement == Placement::Inline)
        .map(|p| ReviewComment {
            path: p.finding.path.clone(),
            line: p.finding.line,
            side: p.finding.side,
            start_line: p.finding.start_line,
            start_side: p.finding.start_line.map(|_| p.finding.side),
            body: redactor.redact(&markdown::comment_body(&p.finding)),
        })
        .collect();
    let mut fields: Vec<(&str, &str)> = vec![("sha", head)];
    if let Some(b) = report.base_sha.as_deref() {
        fields.push(("base", b));
    }
    let summary_marker = Marker::new(SUMMARY_MARKER, &fields);
    report.summary_comment = redactor.redact(&markdown::summary_comment(report, &summary_marker.render()));
}

/// Posts the review once and returns its URL. On a 422 for the batch, the comments GitHub
/// refused are moved into the body and the review is posted again: a refused POST creates
/// nothing, so nothing is posted twice. Isolation: each comment is re-checked against GitHub's
/// own diff for the head (`pull_diff`, which GitHub anchors against); if the refusal persists,
/// every inline comment moves to the body, which GitHub cannot refuse for anchoring.
pub async fn post_review(
    gh: &GitHub,
    number: u64,
    report: &mut ReviewReport,
    redactor: &Redactor,
) -> Result<String, GitHubError> {
    match gh.create_review(number, &report.review).await {
        Ok(r) => return Ok(r.html_url),
        Err(GitHubError::Unprocessable { message, .. }) => {
            log::warn(&format!("GitHub refused the review's comments ({message}); isolating the bad ones"));
        }
        Err(e) => return Err(e),
    }
    let fresh = gh.pull_diff(number).await?;
    let fresh_index = AnchorIndex::new(&diff::parse(&fresh));
    let mut refused = 0;
    for p in report.findings.iter_mut().filter(|p| p.placement == Placement::Inline) {
        let f = &p.finding;
        let still = matches!(fresh_index.place(f), diff::Placement::Inline { line, start_line, side, .. }
            if line == f.line && start_line == f.start_line && side == f.side);
        if !still {
            p.placement = Placement::File;
            refused += 1;
        }
    }
    if refused > 0 {
        log::warn(&format!("{refused} comment(s) do not anchor on GitHub's diff; moved to the review body"));
        render_review(report, redactor);
        match gh.create_review(number, &report.review).await {
            Ok(r) => return Ok(r.html_url),
            Err(GitHubError::Unprocessable { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    log::warn("GitHub still refused the comments; posting every finding in the review body");
    for p in report.findings.iter_mut().filter(|p| p.placement == Placement::Inline) {
        p.placement = Placement::File;
    }
    render_review(report, redactor);
    gh.create_review(number, &report.review).await.map(|r| r.html_url)
}

/// Updates the summary comment `existing`, or creates it on PR `number`; warns when GitHub
/// says the comment's author is not `identity` ([`check_identity`]).
pub async fn upsert_summary(
    gh: &GitHub,
    number: u64,
    existing: Option<u64>,
    body: &str,
    identity: &str,
) -> Result<(), GitHubError> {
    let posted = match existing {
        Some(id) => gh.update_issue_comment(id, body).await?,
        None => gh.create_issue_comment(number, body).await?,
    };
    check_identity(&posted, identity);
    Ok(())
}

/// What GitHub reports as the author of a comment we just posted is the token's own identity:
/// when it is not `identity` (config `github.identity`), a warning says which login to set,
/// since a later run would not trust this comment's marker.
pub fn check_identity(posted: &crate::github::IssueComment, identity: &str) {
    if let Some(author) = posted.user.as_ref().filter(|_| !posted.by(identity)) {
        crate::log::warn(&format!(
            "this token posts as `{}`, but `github.identity` is `{identity}`: a re-run will not trust the marker it just wrote\nhelp: set `github: {{identity: \"{}\"}}` in the config",
            author.login, author.login
        ));
    }
}
