//! Typed GitHub REST calls used by agentctl, and the write policy: GETs retried on 5xx, writes
//! serialized and spaced by `write_delay`, primary rate limit waited out when the reset is
//! near, secondary rate limit honouring `retry-after` (else 60 s).
//!
//! Sources: REST API docs for pulls (<https://docs.github.com/en/rest/pulls/pulls>), reviews
//! (<https://docs.github.com/en/rest/pulls/reviews>), issue comments
//! (<https://docs.github.com/en/rest/issues/comments>), contents
//! (<https://docs.github.com/en/rest/repos/contents>), rate limits
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::findings::Side;

/// `X-GitHub-Api-Version` sent with every request.
pub const API_VERSION: &str = "2022-11-28";

/// Errors of GitHub calls, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401, or 403 that is not a rate limit.
    #[error("github: {action}: authentication or permission refused ({status}): {message}\nhelp: the token needs `pull-requests: write` and `contents: read`; for forks use a token with access to the base repository")]
    Auth { action: String, status: u16, message: String },
    /// 404.
    #[error("github: {action}: not found (404): {message}")]
    NotFound { action: String, message: String },
    /// 422 with GitHub's error list.
    #[error("github: {action}: unprocessable (422): {message}")]
    Unprocessable { action: String, message: String },
    /// Any other failing status after retries.
    #[error("github: {action}: HTTP {status}: {message}")]
    Status { action: String, status: u16, message: String },
    /// Transport error after retries.
    #[error("github: {action}: {message}")]
    Network { action: String, message: String },
    /// A response we could not decode.
    #[error("github: {action}: unexpected response: {message}")]
    Decode { action: String, message: String },
}

impl GitHubError {
    /// Whether the process should exit with the auth code (4).
    pub fn is_auth(&self) -> bool {
        matches!(self, GitHubError::Auth { .. })
    }
}

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

/// An issue (or PR conversation) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: String,
}

/// A submitted review (only the fields we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Review {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub html_url: String,
}

/// Review event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewEvent {
    Comment,
    RequestChanges,
    Approve,
}

/// One inline comment of a review, in the `line`/`side` form (not the deprecated `position`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewComment {
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
pub struct ReviewRequest {
    pub commit_id: String,
    pub body: String,
    pub event: ReviewEvent,
    pub comments: Vec<ReviewComment>,
}

/// Client for one repository.
pub struct GitHub {
    // private fields chosen by the implementation (octocrab, api base, owner, repo, write lock, write_delay)
}

impl GitHub {
    /// A client for `owner/repo` at `api_url` (kept with any path prefix), authenticated with
    /// `token`. `write_delay` spaces consecutive writes (default 1 s; 0 in tests).
    pub fn new(
        api_url: &str,
        token: &SecretString,
        owner: &str,
        repo: &str,
        write_delay: Duration,
    ) -> Result<Self, GitHubError> {
        let _ = (api_url, token, owner, repo, write_delay);
        todo!()
    }

    /// `GET /repos/{o}/{r}/pulls/{n}`.
    pub async fn pull(&self, number: u64) -> Result<PullRequest, GitHubError> {
        let _ = number;
        todo!()
    }

    /// The PR's unified diff (`Accept: application/vnd.github.diff`). When GitHub refuses a
    /// large diff (406/422 "too large"), rebuilds it from the paginated
    /// `GET /pulls/{n}/files` patches (files without a `patch` appear as binary).
    pub async fn pull_diff(&self, number: u64) -> Result<Vec<u8>, GitHubError> {
        let _ = number;
        todo!()
    }

    /// Unified diff between two commits (`GET /compare/{base}...{head}` with the diff media
    /// type). `Ok(None)` on 404 (e.g. the base was force-pushed away).
    pub async fn compare_diff(&self, base: &str, head: &str) -> Result<Option<Vec<u8>>, GitHubError> {
        let _ = (base, head);
        todo!()
    }

    /// A file's raw bytes at `git_ref` (`GET /contents/{path}?ref=...`, raw media type);
    /// `Ok(None)` on 404.
    pub async fn file_at(&self, path: &str, git_ref: &str) -> Result<Option<Vec<u8>>, GitHubError> {
        let _ = (path, git_ref);
        todo!()
    }

    /// All comments on the PR's conversation (paginated, 100 per page).
    pub async fn issue_comments(&self, number: u64) -> Result<Vec<IssueComment>, GitHubError> {
        let _ = number;
        todo!()
    }

    /// All reviews on the PR (paginated, 100 per page).
    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, GitHubError> {
        let _ = number;
        todo!()
    }

    /// `POST /issues/{n}/comments`.
    pub async fn create_issue_comment(&self, number: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let _ = (number, body);
        todo!()
    }

    /// `PATCH /issues/comments/{id}`.
    pub async fn update_issue_comment(&self, id: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let _ = (id, body);
        todo!()
    }

    /// `POST /pulls/{n}/reviews`. A 422 comes back as [`GitHubError::Unprocessable`] so the
    /// caller can isolate the bad comment; writes are never retried automatically except on
    /// a rate limit that GitHub says was not applied.
    pub async fn create_review(&self, number: u64, review: &ReviewRequest) -> Result<Review, GitHubError> {
        let _ = (number, review);
        todo!()
    }

    /// Changes the spacing between consecutive writes (config `github.write_delay`).
    pub fn set_write_delay(&mut self, write_delay: Duration) {
        let _ = write_delay;
        todo!()
    }

    /// How many HTTP requests this client has sent (for the benchmark and tests).
    pub fn request_count(&self) -> u64 {
        todo!()
    }
}
