//! Publishing a review rendered above this module: posting it once (the caller moves the
//! comments GitHub refuses into the body), upserting the one summary comment, and finding what
//! an earlier run already posted by its hidden markers.
//!
//! Sources: "Create a review for a pull request"
//! (<https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request>), "Update
//! an issue comment" (<https://docs.github.com/en/rest/issues/comments>).

use crate::context::target::PrMeta;
use crate::diff::{self, AnchorIndex};
use crate::log;
use crate::markers::{Marker, REVIEW_MARKER, SUMMARY_MARKER};

use super::{GitHub, GitHubError, PullRequest, ReviewRequest};

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
pub(crate) async fn resolve_pr(
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
pub(crate) struct Previous {
    /// The summary comment's id and its marker.
    pub summary: Option<(u64, Marker)>,
    /// URL of a review whose marker names `head_sha`.
    pub reviewed_head: Option<String>,
}

/// Looks up [`Previous`] on PR `number` at `head_sha`, trusting only bodies `identity` wrote;
/// `with_reviews` lists the reviews too (not needed in a dry run, which posts nothing).
pub(crate) async fn previous(
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

/// Which inline comments the caller moves into the review body before [`post_review`] tries
/// again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused<'a> {
    /// The ones that do not anchor on GitHub's own diff of the head (what GitHub anchors
    /// against); the caller returns `None` when every comment still anchors.
    Unanchored(&'a AnchorIndex),
    /// Every inline comment: GitHub cannot refuse the body for anchoring.
    All,
}

/// Posts `review` once and returns its URL. On a 422 for the batch, the comments GitHub refused
/// are moved into the body by `again` (which re-renders and returns the next request) and the
/// review is posted again: a refused POST creates nothing, so nothing is posted twice.
/// Isolation: first [`Refused::Unanchored`] against `pull_diff`; if GitHub still refuses (or
/// nothing was moved), [`Refused::All`].
///
/// Errors: any [`GitHubError`] but the handled 422s; the last attempt's 422 too.
pub(crate) async fn post_review(
    gh: &GitHub,
    number: u64,
    review: &ReviewRequest,
    mut again: impl FnMut(Refused<'_>) -> Option<ReviewRequest>,
) -> Result<String, GitHubError> {
    match gh.create_review(number, review).await {
        Ok(r) => return Ok(r.html_url),
        Err(GitHubError::Unprocessable { message, .. }) => {
            log::warn(&format!("GitHub refused the review's comments ({message}); isolating the bad ones"));
        }
        Err(e) => return Err(e),
    }
    let fresh = gh.pull_diff(number).await?;
    let fresh_index = AnchorIndex::new(&diff::parse(&fresh));
    if let Some(retry) = again(Refused::Unanchored(&fresh_index)) {
        match gh.create_review(number, &retry).await {
            Ok(r) => return Ok(r.html_url),
            Err(GitHubError::Unprocessable { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    log::warn("GitHub still refused the comments; posting every finding in the review body");
    let last = again(Refused::All).unwrap_or_else(|| review.clone());
    gh.create_review(number, &last).await.map(|r| r.html_url)
}

/// Updates the summary comment `existing`, or creates it on PR `number`; warns when GitHub
/// says the comment's author is not `identity` ([`check_identity`]).
pub(crate) async fn upsert_summary(
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
pub(crate) fn check_identity(posted: &crate::github::IssueComment, identity: &str) {
    if let Some(author) = posted.user.as_ref().filter(|_| !posted.by(identity)) {
        crate::log::warn(&format!(
            "this token posts as `{}`, but `github.identity` is `{identity}`: a re-run will not trust the marker it just wrote\nhelp: set `github: {{identity: \"{}\"}}` in the config",
            author.login, author.login
        ));
    }
}
