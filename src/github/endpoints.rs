//! The typed REST calls agentctl makes on a repository: pull requests and their diffs,
//! contents at a ref, issue comments, reviews.
//!
//! Sources: REST API docs for pulls (<https://docs.github.com/en/rest/pulls/pulls>), reviews
//! (<https://docs.github.com/en/rest/pulls/reviews>), issue comments
//! (<https://docs.github.com/en/rest/issues/comments>), contents
//! (<https://docs.github.com/en/rest/repos/contents>).

use serde::{Deserialize, Serialize};

use crate::findings::Side;

use super::error::{check, GitHubError};
use super::transport::{decode, encode_path, Reply, MEDIA_DIFF, MEDIA_JSON, MEDIA_RAW, PER_PAGE};
use super::GitHub;

/// The fields of a pull request agentctl uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub draft: bool,
    pub html_url: String,
    pub head_sha: String,
    pub head_ref: String,
    pub base_sha: String,
    pub base_ref: String,
}

/// The author of a comment or review.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Author {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// An issue (or PR conversation) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub user: Option<Author>,
}

impl IssueComment {
    /// Whether the account `login` (config `github.identity`) wrote it: the only bodies whose
    /// markers agentctl trusts (see [`is_by`]).
    pub(crate) fn by(&self, login: &str) -> bool {
        is_by(self.user.as_ref(), login)
    }
}

/// Whether `author` is the account `login` (GitHub logins are case-insensitive). Any other
/// account — a human, or another App's bot — may have typed a marker.
pub(crate) fn is_by(author: Option<&Author>, login: &str) -> bool {
    author.is_some_and(|a| !login.is_empty() && a.login.eq_ignore_ascii_case(login))
}

/// A submitted review (only the fields we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Review {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub user: Option<Author>,
}

impl Review {
    /// Whether the account `login` wrote it (see [`is_by`]).
    pub(crate) fn by(&self, login: &str) -> bool {
        is_by(self.user.as_ref(), login)
    }
}

/// Review event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ReviewEvent {
    Comment,
    RequestChanges,
}

/// One inline comment of a review, in the `line`/`side` form (not the deprecated `position`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReviewComment {
    pub path: String,
    pub line: u32,
    pub side: Side,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_side: Option<Side>,
    pub body: String,
}

/// Body of `POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReviewRequest {
    pub commit_id: String,
    pub body: String,
    pub event: ReviewEvent,
    pub comments: Vec<ReviewComment>,
}

impl GitHub {
    /// `GET /repos/{o}/{r}/pulls/{n}`.
    pub(crate) async fn pull(&self, number: u64) -> Result<PullRequest, GitHubError> {
        let action = format!("get pull request #{number}");
        let reply = self.get(&self.repo_url(&format!("pulls/{number}")), MEDIA_JSON, &action).await?;
        let raw: RawPull = decode(&check(reply, &action)?.body, &action)?;
        Ok(PullRequest {
            number: raw.number,
            title: raw.title,
            body: raw.body,
            draft: raw.draft.unwrap_or(false),
            html_url: raw.html_url,
            head_sha: raw.head.sha,
            head_ref: raw.head.git_ref,
            base_sha: raw.base.sha,
            base_ref: raw.base.git_ref,
        })
    }

    /// The PR's unified diff (`Accept: application/vnd.github.diff`). When GitHub refuses a
    /// large diff (406/422 "too large"), rebuilds it from the paginated
    /// `GET /pulls/{n}/files` patches (files without a `patch` appear as binary).
    ///
    /// NOTE: the files endpoint lists at most 3000 files and omits the patch of very large
    /// files; those appear as binary in the rebuilt diff.
    pub(crate) async fn pull_diff(&self, number: u64) -> Result<Vec<u8>, GitHubError> {
        let action = format!("get diff of #{number}");
        let reply = self.get(&self.repo_url(&format!("pulls/{number}")), MEDIA_DIFF, &action).await?;
        if diff_too_large(&reply) {
            let action = format!("list files of #{number}");
            let url = self.repo_url(&format!("pulls/{number}/files?per_page={PER_PAGE}"));
            let files: Vec<PullFile> = self.get_all(url, &action).await?;
            return Ok(rebuild_diff(&files));
        }
        Ok(check(reply, &action)?.body)
    }

    /// Unified diff between two commits (`GET /compare/{base}...{head}` with the diff media
    /// type). `Ok(None)` on 404 (e.g. the base was force-pushed away).
    pub(crate) async fn compare_diff(&self, base: &str, head: &str) -> Result<Option<Vec<u8>>, GitHubError> {
        let action = format!("compare {base}...{head}");
        let url = self.repo_url(&format!("compare/{}...{}", encode_path(base), encode_path(head)));
        let reply = self.get(&url, MEDIA_DIFF, &action).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        Ok(Some(check(reply, &action)?.body))
    }

    /// A file's raw bytes at `git_ref` (`GET /contents/{path}?ref=...`, raw media type);
    /// `Ok(None)` on 404.
    pub(crate) async fn file_at(&self, path: &str, git_ref: &str) -> Result<Option<Vec<u8>>, GitHubError> {
        let action = format!("get {path} at {git_ref}");
        let url = self.repo_url(&format!(
            "contents/{}?ref={}",
            encode_path(path.trim_start_matches('/')),
            urlencoding::encode(git_ref)
        ));
        let reply = self.get(&url, MEDIA_RAW, &action).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        Ok(Some(check(reply, &action)?.body))
    }

    /// All comments on the PR's conversation (paginated, 100 per page).
    pub(crate) async fn issue_comments(&self, number: u64) -> Result<Vec<IssueComment>, GitHubError> {
        let action = format!("list comments on #{number}");
        self.get_all(self.repo_url(&format!("issues/{number}/comments?per_page={PER_PAGE}")), &action).await
    }

    /// All reviews on the PR (paginated, 100 per page).
    pub(crate) async fn reviews(&self, number: u64) -> Result<Vec<Review>, GitHubError> {
        let action = format!("list reviews on #{number}");
        self.get_all(self.repo_url(&format!("pulls/{number}/reviews?per_page={PER_PAGE}")), &action).await
    }

    /// `POST /issues/{n}/comments`.
    pub(crate) async fn create_issue_comment(&self, number: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let action = format!("create comment on #{number}");
        let url = self.repo_url(&format!("issues/{number}/comments"));
        let reply = self.write(http::Method::POST, &url, &CommentBody { body }, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `PATCH /issues/comments/{id}`.
    pub(crate) async fn update_issue_comment(&self, id: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let action = format!("update comment {id}");
        let url = self.repo_url(&format!("issues/comments/{id}"));
        let reply = self.write(http::Method::PATCH, &url, &CommentBody { body }, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `POST /pulls/{n}/reviews`. A 422 comes back as [`GitHubError::Unprocessable`] so the
    /// caller can isolate the bad comment; writes are never retried automatically except on
    /// a rate limit that GitHub says was not applied.
    pub(crate) async fn create_review(&self, number: u64, review: &ReviewRequest) -> Result<Review, GitHubError> {
        let action = format!("create review on #{number}");
        let url = self.repo_url(&format!("pulls/{number}/reviews"));
        let reply = self.write(http::Method::POST, &url, review, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }
}

/// `{"body": ...}` of the issue-comment endpoints.
#[derive(Serialize)]
struct CommentBody<'a> {
    body: &'a str,
}

/// `GET /pulls/{n}` as GitHub sends it (only what [`PullRequest`] keeps).
#[derive(Deserialize)]
struct RawPull {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    html_url: String,
    head: RawRef,
    base: RawRef,
}

#[derive(Deserialize)]
struct RawRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
}

/// One entry of `GET /pulls/{n}/files`
/// (<https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files>).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PullFile {
    pub filename: String,
    /// `added`, `removed`, `modified`, `renamed`, `copied`, `changed` or `unchanged`.
    pub status: String,
    #[serde(default)]
    pub previous_filename: Option<String>,
    /// The file's hunks; absent for binary files and for very large text diffs.
    #[serde(default)]
    pub patch: Option<String>,
    /// Added plus deleted lines.
    #[serde(default)]
    pub changes: u64,
}

/// A `git diff`-style unified diff rebuilt from `/files` entries, so the diff parser reads it
/// exactly like GitHub's own diff: `diff --git`, then `new file mode`/`deleted file mode` or
/// `rename from`/`rename to`, then `---`/`+++` and the hunks, or a `Binary files ... differ`
/// line when GitHub sent no patch. File modes are not in the API; `100644` is assumed.
pub(crate) fn rebuild_diff(files: &[PullFile]) -> Vec<u8> {
    let mut out = String::new();
    for file in files {
        let new = file.filename.as_str();
        let moved = matches!(file.status.as_str(), "renamed" | "copied");
        let old = if moved { file.previous_filename.as_deref().unwrap_or(new) } else { new };
        out.push_str(&format!("diff --git a/{old} b/{new}\n"));
        let patch = file.patch.as_deref();
        match file.status.as_str() {
            "added" => out.push_str("new file mode 100644\n"),
            "removed" => out.push_str("deleted file mode 100644\n"),
            "renamed" | "copied" => {
                let verb = if file.status == "renamed" { "rename" } else { "copy" };
                if file.changes == 0 && patch.is_none_or(str::is_empty) {
                    out.push_str("similarity index 100%\n");
                }
                out.push_str(&format!("{verb} from {old}\n{verb} to {new}\n"));
            }
            _ => {}
        }
        let a = if file.status == "added" { "/dev/null".to_string() } else { format!("a/{old}") };
        let b = if file.status == "removed" { "/dev/null".to_string() } else { format!("b/{new}") };
        match patch {
            Some(p) if !p.is_empty() => {
                out.push_str(&format!("--- {a}\n+++ {b}\n"));
                out.push_str(p);
                if !p.ends_with('\n') {
                    out.push('\n');
                }
            }
            // A pure rename or copy has no content lines and no binary marker in git's output.
            _ if moved && file.changes == 0 => {}
            // An empty patch string is a change without content lines (e.g. mode only).
            Some(_) => {}
            None => out.push_str(&format!("Binary files {a} and {b} differ\n")),
        }
    }
    out.into_bytes()
}

/// Whether a diff request was refused for size: 406, or 422 saying "too large" (GitHub
/// answers `{"message": "... diff exceeded the maximum ...", "errors": [{"code": "too_large"}]}`).
pub(super) fn diff_too_large(reply: &Reply) -> bool {
    match reply.status {
        406 => true,
        422 => {
            let text = String::from_utf8_lossy(&reply.body).to_lowercase();
            text.contains("too large") || text.contains("too_large") || text.contains("exceeded the maximum")
        }
        _ => false,
    }
}
