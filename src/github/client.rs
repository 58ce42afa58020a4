//! Typed GitHub REST calls used by agentctl, and the write policy: GETs retried on 5xx, writes
//! serialized and, past a burst of [`WRITE_BURST`] writes, spaced by `write_delay`; primary
//! rate limit waited out when the reset is near, secondary rate limit honouring `retry-after`
//! (else 60 s).
//!
//! Sources: REST API docs for pulls (<https://docs.github.com/en/rest/pulls/pulls>), reviews
//! (<https://docs.github.com/en/rest/pulls/reviews>), issue comments
//! (<https://docs.github.com/en/rest/issues/comments>), contents
//! (<https://docs.github.com/en/rest/repos/contents>), rate limits
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>).

use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::findings::Side;

/// `X-GitHub-Api-Version` sent with every request.
pub const API_VERSION: &str = "2022-11-28";

/// Writes (POST/PATCH) one client makes back to back before the next ones are spaced by
/// `write_delay`.
///
/// Source: "Best practices for using the REST API"
/// (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>):
/// avoid concurrent requests, and "if you are making a large number of POST, PATCH, PUT, or
/// DELETE requests", wait at least one second between each; and "Rate limits for the REST
/// API" (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
/// no more than 80 content-generating requests per minute. A review run makes two or three
/// writes; ten unspaced serial writes stay far below 80 a minute, and every later write keeps
/// the documented one-second spacing. Writes are always serialized.
pub const WRITE_BURST: u64 = 10;

/// How long the next write must wait before it starts: nothing while fewer than
/// [`WRITE_BURST`] writes were made (`writes_done`), else whatever remains of `write_delay`
/// since the previous write finished (`since_last`; `None` before any write).
pub fn write_wait(writes_done: u64, since_last: Option<Duration>, write_delay: Duration) -> Duration {
    match since_last {
        Some(elapsed) if writes_done >= WRITE_BURST => write_delay.saturating_sub(elapsed),
        _ => Duration::ZERO,
    }
}

/// The write lock's state: how many writes were made and when the last one finished.
#[derive(Debug, Default)]
struct WriteState {
    done: u64,
    last: Option<Instant>,
    /// Writes that had to wait for the spacing (observable in tests and the benchmark).
    spaced: u64,
}

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
    /// A credential refused where it entered: a token given to the client that cannot be an
    /// `Authorization` header (exit 2), or one GitHub minted that is not a plain token (exit 4).
    /// Never holds the value ([`super::credential`]).
    #[error(transparent)]
    Credential(#[from] super::credential::CredentialError),
}

impl GitHubError {
    /// Whether the process should exit with the auth code (4).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            GitHubError::Auth { .. } | GitHubError::Credential(super::credential::CredentialError::Minted { .. })
        )
    }

    /// The exit code this error ends the process with: [`Exit::Auth`] (4) when GitHub refuses
    /// the token or a permission, or minted a credential we cannot use; [`Exit::Usage`] (2) for a
    /// user-given token that cannot be sent; else [`Exit::Failure`] (1).
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        if self.is_auth() {
            Exit::Auth
        } else if self.is_usage() {
            Exit::Usage
        } else {
            Exit::Failure
        }
    }

    /// Whether it is bad input (exit 2): a user-given token that cannot be sent.
    pub fn is_usage(&self) -> bool {
        matches!(self, GitHubError::Credential(super::credential::CredentialError::User { .. }))
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

/// The author of a comment or review.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Author {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// An issue (or PR conversation) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
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
    pub fn by(&self, login: &str) -> bool {
        is_by(self.user.as_ref(), login)
    }
}

/// Whether `author` is the account `login` (GitHub logins are case-insensitive). Any other
/// account — a human, or another App's bot — may have typed a marker.
pub fn is_by(author: Option<&Author>, login: &str) -> bool {
    author.is_some_and(|a| !login.is_empty() && a.login.eq_ignore_ascii_case(login))
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
    #[serde(default)]
    pub user: Option<Author>,
}

impl Review {
    /// Whether the account `login` wrote it (see [`is_by`]).
    pub fn by(&self, login: &str) -> bool {
        is_by(self.user.as_ref(), login)
    }
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

/// Retry and wait bounds of the client. The defaults suit a CI job; tests shrink them.
///
/// Source for the rate-limit rules: "Rate limits for the REST API"
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>) and
/// "Best practices for using the REST API" (wait for `retry-after`, else until
/// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0, else at least one minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Retries of a GET after a 5xx or a transport error (so `get_retries + 1` attempts).
    pub get_retries: u32,
    /// Full-jitter backoff base: retry `n` sleeps `uniform(0, min(backoff_cap, backoff_base·2^n))`.
    pub backoff_base: Duration,
    /// Full-jitter backoff cap.
    pub backoff_cap: Duration,
    /// How many times one request is re-sent after a rate-limit rejection (primary or
    /// secondary). Applies to writes too: a rate-limit rejection means GitHub did not apply it.
    pub rate_limit_retries: u32,
    /// Longest wait for the primary rate limit to reset (`x-ratelimit-reset`); a later reset
    /// fails the call at once with a clear error instead of holding the job.
    pub primary_max_wait: Duration,
    /// Wait after a secondary rate limit that carries no `retry-after` (GitHub: "at least one
    /// minute").
    pub secondary_default_wait: Duration,
    /// Longest `retry-after` we honour; a longer one fails the call at once.
    pub secondary_max_wait: Duration,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            get_retries: 3,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(4),
            rate_limit_retries: 2,
            primary_max_wait: Duration::from_secs(60),
            secondary_default_wait: Duration::from_secs(60),
            secondary_max_wait: Duration::from_secs(120),
        }
    }
}

impl ClientPolicy {
    /// Full-jitter delay before retry number `attempt` (0-based), by the same rule as every
    /// other retry ([`crate::resilience::RetryPolicy::backoff`]).
    fn backoff(&self, attempt: u32) -> Duration {
        crate::resilience::RetryPolicy { max_retries: self.get_retries, base: self.backoff_base, cap: self.backoff_cap }
            .backoff(attempt)
    }
}

/// `Accept` for JSON resources.
pub(super) const MEDIA_JSON: &str = "application/vnd.github+json";
/// `Accept` for a unified diff (pulls, compare). Source:
/// <https://docs.github.com/en/rest/using-the-rest-api/media-types>.
const MEDIA_DIFF: &str = "application/vnd.github.diff";
/// `Accept` for a file's raw bytes from the contents API.
const MEDIA_RAW: &str = "application/vnd.github.raw+json";
/// `User-Agent` (GitHub rejects requests without one).
const USER_AGENT: &str = concat!("agentctl/", env!("CARGO_PKG_VERSION"));
/// Items per page on list endpoints (GitHub's maximum).
pub(super) const PER_PAGE: u32 = 100;
/// Pages followed before giving up on a `Link: rel="next"` chain; 100 × 100 items is far above
/// anything a PR has (the files endpoint itself stops at 3000 files).
const MAX_PAGES: usize = 100;
/// Redirects a GET follows (renamed or transferred repositories).
const MAX_REDIRECTS: u32 = 3;
/// The most bytes of one API response body read (issue #17: every body read over the network
/// has a cap). Far above any JSON page or PR diff GitHub serves (diffs past 20,000 lines are
/// refused by GitHub itself); an artifact served directly is capped at
/// [`super::artifacts::MAX_ARTIFACT_BYTES`] instead. Past it the request fails, not retried.
pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Transport timeouts: connecting, and each read of the response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP exchange as we saw it, whatever the status.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Vec<u8>,
}

/// Why GitHub refused a request for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateLimit {
    /// `x-ratelimit-remaining: 0`; the window resets after this long.
    Primary { reset_in: Duration },
    /// Secondary (abuse) limit, with the `retry-after` wait when given.
    Secondary { retry_after: Option<Duration> },
}

/// Client for one repository.
///
/// Cheap to share behind `&`: writes take an internal lock so concurrent callers are serialized.
///
/// Errors of every call, with the action in the text (e.g. `create review on #12`) and
/// GitHub's JSON `message` (plus its `errors` list): 401 and non-rate-limit 403 →
/// [`GitHubError::Auth`]; 404 → [`GitHubError::NotFound`] (except where a method documents
/// `Ok(None)`); 422 → [`GitHubError::Unprocessable`]; other statuses, and rate limits we will
/// not wait out → [`GitHubError::Status`]; transport failures → [`GitHubError::Network`];
/// undecodable bodies → [`GitHubError::Decode`].
pub struct GitHub {
    /// Transport and auth (the `Authorization` header is attached by octocrab only to the API
    /// host, so a `Link` pointing elsewhere would never receive the token).
    crab: octocrab::Octocrab,
    /// `GITHUB_API_URL` without a trailing slash, path prefix kept (`https://host/api/v3`).
    pub(super) api_base: String,
    owner: String,
    repo: String,
    /// Held for the whole of each write; counts writes and holds when the last one finished.
    write_lock: tokio::sync::Mutex<WriteState>,
    write_delay: Duration,
    policy: ClientPolicy,
    /// HTTP requests sent, retries included.
    requests: AtomicU64,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: hand-written so the token inside octocrab can never reach a log.
        f.debug_struct("GitHub")
            .field("api_base", &self.api_base)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("write_delay", &self.write_delay)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for `owner/repo` at `api_url` (kept with any path prefix), authenticated with
    /// `token`. `write_delay` spaces consecutive writes past the first [`WRITE_BURST`] (default
    /// 1 s; 0 in tests).
    ///
    /// Errors: [`GitHubError::Network`] when `api_url` is not an absolute `http(s)` URL or the
    /// TLS setup fails; [`GitHubError::Credential`] when `token` cannot be sent as a header
    /// (callers check every token where it enters; this keeps octocrab, which unwraps the
    /// header it builds, from ever panicking on one that slipped through).
    pub fn new(
        api_url: &str,
        token: &SecretString,
        owner: &str,
        repo: &str,
        write_delay: Duration,
    ) -> Result<Self, GitHubError> {
        let action = "set up the GitHub client";
        super::credential::check_sendable(token.expose_secret(), "the GitHub token")?;
        let api_base = api_url.trim_end_matches('/').to_string();
        let uri: http::Uri = api_base.parse().map_err(|e| GitHubError::Network {
            action: action.to_string(),
            message: format!("invalid API URL `{api_base}`: {e}"),
        })?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(GitHubError::Network {
                action: action.to_string(),
                message: format!("invalid API URL `{api_base}`: expected an absolute http(s) URL"),
            });
        }
        // octocrab sends through a reqwest client on the process-wide TLS config (one root store,
        // read at the first handshake: `crate::tls`). Redirects are ours to follow (see `get`).
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| GitHubError::Network { action: action.to_string(), message: error_chain(&e) })?;
        let crab = octocrab::Octocrab::builder()
            .personal_token(token.clone())
            // The base URI decides which host gets the Authorization header; our URLs are
            // absolute and already carry its path prefix, which octocrab then keeps as is.
            .base_uri(uri)
            .and_then(|b| b.build_with_reqwest(http))
            .map_err(|e| GitHubError::Network { action: action.to_string(), message: e.to_string() })?;
        Ok(Self {
            crab,
            api_base,
            owner: owner.to_string(),
            repo: repo.to_string(),
            write_lock: tokio::sync::Mutex::new(WriteState::default()),
            write_delay,
            policy: ClientPolicy::default(),
            requests: AtomicU64::new(0),
        })
    }

    /// Replaces the retry and rate-limit bounds (tests use tiny ones).
    #[must_use]
    pub fn with_policy(mut self, policy: ClientPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The repository owner (user or organization) this client acts for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name this client acts on.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The bounds in force.
    pub fn policy(&self) -> ClientPolicy {
        self.policy
    }

    /// `GET /repos/{o}/{r}/pulls/{n}`.
    pub async fn pull(&self, number: u64) -> Result<PullRequest, GitHubError> {
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
    pub async fn pull_diff(&self, number: u64) -> Result<Vec<u8>, GitHubError> {
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
    pub async fn compare_diff(&self, base: &str, head: &str) -> Result<Option<Vec<u8>>, GitHubError> {
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
    pub async fn file_at(&self, path: &str, git_ref: &str) -> Result<Option<Vec<u8>>, GitHubError> {
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
    pub async fn issue_comments(&self, number: u64) -> Result<Vec<IssueComment>, GitHubError> {
        let action = format!("list comments on #{number}");
        self.get_all(self.repo_url(&format!("issues/{number}/comments?per_page={PER_PAGE}")), &action).await
    }

    /// All reviews on the PR (paginated, 100 per page).
    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, GitHubError> {
        let action = format!("list reviews on #{number}");
        self.get_all(self.repo_url(&format!("pulls/{number}/reviews?per_page={PER_PAGE}")), &action).await
    }

    /// `POST /issues/{n}/comments`.
    pub async fn create_issue_comment(&self, number: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let action = format!("create comment on #{number}");
        let url = self.repo_url(&format!("issues/{number}/comments"));
        let reply = self.write(http::Method::POST, &url, &CommentBody { body }, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `PATCH /issues/comments/{id}`.
    pub async fn update_issue_comment(&self, id: u64, body: &str) -> Result<IssueComment, GitHubError> {
        let action = format!("update comment {id}");
        let url = self.repo_url(&format!("issues/comments/{id}"));
        let reply = self.write(http::Method::PATCH, &url, &CommentBody { body }, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `POST /pulls/{n}/reviews`. A 422 comes back as [`GitHubError::Unprocessable`] so the
    /// caller can isolate the bad comment; writes are never retried automatically except on
    /// a rate limit that GitHub says was not applied.
    pub async fn create_review(&self, number: u64, review: &ReviewRequest) -> Result<Review, GitHubError> {
        let action = format!("create review on #{number}");
        let url = self.repo_url(&format!("pulls/{number}/reviews"));
        let reply = self.write(http::Method::POST, &url, review, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// Logs and counts one retry (or rate-limit wait) like every other retry in the process.
    /// `server_asked` marks a rate-limit wait (counted against `rate_limit_retries`), else a
    /// GET retry (against `get_retries`).
    fn note_retry(&self, done: u32, status: Option<u16>, wait: Duration, server_asked: bool) {
        let allowed = if server_asked { self.policy.rate_limit_retries } else { self.policy.get_retries };
        let notice =
            crate::resilience::RetryNotice { attempt: done + 1, max_attempts: allowed + 1, status, wait, server_asked };
        crate::resilience::report_retry(&crate::resilience::LogRetries("GitHub API"), &notice);
    }

    /// Changes the spacing between consecutive writes past the burst (config
    /// `github.write_delay`).
    pub fn set_write_delay(&mut self, write_delay: Duration) {
        self.write_delay = write_delay;
    }

    /// How many HTTP requests this client has sent (for the benchmark and tests).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many writes waited for the `write_delay` spacing (see [`write_wait`]).
    pub async fn spaced_write_count(&self) -> u64 {
        self.write_lock.lock().await.spaced
    }

    /// `{api_base}/repos/{owner}/{repo}/{tail}`; `tail` is already encoded.
    pub(super) fn repo_url(&self, tail: &str) -> String {
        format!(
            "{}/repos/{}/{}/{}",
            self.api_base,
            urlencoding::encode(&self.owner),
            urlencoding::encode(&self.repo),
            tail
        )
    }

    /// Every item of a paginated list, following `Link: <...>; rel="next"` (source: "Using
    /// pagination in the REST API"). The next link is absolute and keeps any GHES prefix.
    pub(super) async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
        action: &str,
    ) -> Result<Vec<T>, GitHubError> {
        self.get_pages(first, action, |body| decode::<Vec<T>>(body, action)).await
    }

    /// Like [`GitHub::get_all`] for lists GitHub wraps in an object (`{"total_count": n,
    /// "runners": [...]}`): `field` names the array.
    pub(super) async fn get_all_in<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
        action: &str,
        field: &str,
    ) -> Result<Vec<T>, GitHubError> {
        self.get_pages(first, action, |body| {
            let mut page: serde_json::Map<String, serde_json::Value> = decode(body, action)?;
            let list = page.remove(field).unwrap_or(serde_json::Value::Array(vec![]));
            serde_json::from_value(list)
                .map_err(|e| GitHubError::Decode { action: action.to_string(), message: format!("`{field}`: {e}") })
        })
        .await
    }

    /// Follows `Link: rel="next"` from `first`, decoding each page with `page`.
    async fn get_pages<T>(
        &self,
        first: String,
        action: &str,
        page: impl Fn(&[u8]) -> Result<Vec<T>, GitHubError>,
    ) -> Result<Vec<T>, GitHubError> {
        let mut items = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let reply = check(self.get(&url, MEDIA_JSON, action).await?, action)?;
            items.extend(page(&reply.body)?);
            match next_link(&reply.headers) {
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
        Err(GitHubError::Decode {
            action: action.to_string(),
            message: format!("more than {MAX_PAGES} pages; the `Link` header may loop"),
        })
    }

    /// A GET with the retry policy: 5xx and transport errors retried with full-jitter backoff,
    /// rate limits waited out within bounds. Returns any final status; [`check`] maps it.
    pub(super) async fn get(&self, url: &str, accept: &str, action: &str) -> Result<Reply, GitHubError> {
        self.send(http::Method::GET, url, accept, None, action).await
    }

    /// A write (POST/PATCH): serialized with every other write of this client, past the first
    /// [`WRITE_BURST`] writes started no sooner than `write_delay` after the previous one
    /// finished (see [`write_wait`]), and never retried except
    /// after a rate-limit rejection (GitHub did not apply a rejected write, so re-sending it
    /// cannot duplicate a comment; a 5xx or a dropped connection may have applied it).
    pub(super) async fn write<B: Serialize + ?Sized>(
        &self,
        method: http::Method,
        url: &str,
        body: &B,
        action: &str,
    ) -> Result<Reply, GitHubError> {
        let json = serde_json::to_string(body).map_err(|e| GitHubError::Decode {
            action: action.to_string(),
            message: format!("cannot encode the request body: {e}"),
        })?;
        self.write_raw(method, url, Some(json), action).await
    }

    /// [`GitHub::write`] for an operation GitHub documents without a request body: none is
    /// sent, and no `Content-Type` (`Content-Length: 0`).
    pub(super) async fn write_without_body(
        &self,
        method: http::Method,
        url: &str,
        action: &str,
    ) -> Result<Reply, GitHubError> {
        self.write_raw(method, url, None, action).await
    }

    /// The write path of [`GitHub::write`] with the body already encoded (or none).
    async fn write_raw(
        &self,
        method: http::Method,
        url: &str,
        json: Option<String>,
        action: &str,
    ) -> Result<Reply, GitHubError> {
        let mut state = self.write_lock.lock().await;
        let wait = write_wait(state.done, state.last.map(|t| t.elapsed()), self.write_delay);
        if !wait.is_zero() {
            state.spaced += 1;
            tokio::time::sleep(wait).await;
        }
        let result = self.send(method, url, MEDIA_JSON, json, action).await;
        state.done += 1;
        state.last = Some(Instant::now());
        result
    }

    /// Sends with the policy of the method (see [`GitHub::get`] and [`GitHub::write`]).
    pub(super) async fn send(
        &self,
        method: http::Method,
        url: &str,
        accept: &str,
        body: Option<String>,
        action: &str,
    ) -> Result<Reply, GitHubError> {
        self.send_with(method, url, accept, body, action, Reading { follow_redirects: true, limit: MAX_BODY_BYTES })
            .await
    }

    /// A GET with [`GitHub::get`]'s retries that hands a redirect back instead of following it
    /// (an artifact's `302` points to another host, which must not get the token); its body is
    /// read up to `limit` bytes.
    pub(super) async fn send_no_redirect(
        &self,
        url: &str,
        accept: &str,
        action: &str,
        limit: u64,
    ) -> Result<Reply, GitHubError> {
        self.send_with(http::Method::GET, url, accept, None, action, Reading { follow_redirects: false, limit }).await
    }

    async fn send_with(
        &self,
        method: http::Method,
        url: &str,
        accept: &str,
        body: Option<String>,
        action: &str,
        reading: Reading,
    ) -> Result<Reply, GitHubError> {
        let Reading { follow_redirects, limit } = reading;
        let is_get = method == http::Method::GET;
        let mut url = url.to_string();
        let mut retries = 0u32;
        let mut rate_limit_waits = 0u32;
        let mut redirects = 0u32;
        loop {
            let outcome = self.send_once(method.clone(), &url, accept, body.clone(), limit).await;
            let reply = match outcome {
                Ok(reply) => reply,
                Err(SendError::TooLarge) => {
                    return Err(GitHubError::Decode {
                        action: action.to_string(),
                        message: format!("the response body is over {limit} bytes; refused unread"),
                    })
                }
                Err(SendError::Transport(message)) => {
                    if is_get && retries < self.policy.get_retries {
                        let wait = self.policy.backoff(retries);
                        self.note_retry(retries, None, wait, false);
                        tokio::time::sleep(wait).await;
                        retries += 1;
                        continue;
                    }
                    return Err(GitHubError::Network { action: action.to_string(), message });
                }
            };
            if let Some(limit) = rate_limit(&reply) {
                let wait = self.rate_limit_wait(limit, &reply, action)?;
                if rate_limit_waits >= self.policy.rate_limit_retries {
                    return Err(GitHubError::Status {
                        action: action.to_string(),
                        status: reply.status,
                        message: format!(
                            "still rate limited after {} waits: {}",
                            rate_limit_waits,
                            github_message(&reply.body)
                        ),
                    });
                }
                self.note_retry(rate_limit_waits, Some(reply.status), wait, true);
                tokio::time::sleep(wait).await;
                rate_limit_waits += 1;
                continue;
            }
            // octocrab's redirect layer is off and so is reqwest's (see `new`); GitHub answers 301 for a
            // renamed repository and 307 for a transferred one. Only GETs follow, and only
            // absolute targets; octocrab attaches the token to the API host alone.
            if follow_redirects && is_get && matches!(reply.status, 301 | 302 | 307 | 308) && redirects < MAX_REDIRECTS
            {
                if let Some(location) = reply.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok()) {
                    if location.starts_with("http://") || location.starts_with("https://") {
                        url = location.to_string();
                        redirects += 1;
                        continue;
                    }
                }
            }
            if is_get && reply.status >= 500 && retries < self.policy.get_retries {
                let wait = self.policy.backoff(retries);
                self.note_retry(retries, Some(reply.status), wait, false);
                tokio::time::sleep(wait).await;
                retries += 1;
                continue;
            }
            return Ok(reply);
        }
    }

    /// How long to wait after a rate-limit rejection, or the error when it is too long.
    fn rate_limit_wait(&self, limit: RateLimit, reply: &Reply, action: &str) -> Result<Duration, GitHubError> {
        let too_long = |what: String| GitHubError::Status {
            action: action.to_string(),
            status: reply.status,
            message: format!("{what}; not waiting that long: {}", github_message(&reply.body)),
        };
        match limit {
            RateLimit::Primary { reset_in } => {
                if reset_in > self.policy.primary_max_wait {
                    return Err(too_long(format!(
                        "primary rate limit exhausted, resets in {} s (we wait at most {} s)",
                        reset_in.as_secs(),
                        self.policy.primary_max_wait.as_secs()
                    )));
                }
                // `x-ratelimit-reset` has one-second resolution: one more second avoids
                // arriving just before the window turns.
                Ok(reset_in + Duration::from_secs(1))
            }
            RateLimit::Secondary { retry_after: Some(wait) } => {
                if wait > self.policy.secondary_max_wait {
                    return Err(too_long(format!(
                        "secondary rate limit asks to retry after {} s (we wait at most {} s)",
                        wait.as_secs(),
                        self.policy.secondary_max_wait.as_secs()
                    )));
                }
                Ok(wait)
            }
            RateLimit::Secondary { retry_after: None } => Ok(self.policy.secondary_default_wait),
        }
    }

    /// One HTTP request through octocrab, counted, its body read up to `limit` bytes as it
    /// streams in. `Err` carries a transport error message (never the token: octocrab marks
    /// the Authorization header sensitive), or says the body passed `limit`.
    async fn send_once(
        &self,
        method: http::Method,
        url: &str,
        accept: &str,
        body: Option<String>,
        limit: u64,
    ) -> Result<Reply, SendError> {
        let builder = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::ACCEPT, accept)
            .header("X-GitHub-Api-Version", API_VERSION)
            .header(http::header::USER_AGENT, USER_AGENT);
        let request = match body {
            Some(json) => {
                builder.header(http::header::CONTENT_TYPE, "application/json").body(octocrab::OctoBody::from(json))
            }
            None => builder.header(http::header::CONTENT_LENGTH, "0").body(octocrab::OctoBody::empty()),
        }
        .map_err(|e| SendError::Transport(format!("cannot build request for {url}: {e}")))?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.crab.execute(request).await.map_err(|e| SendError::Transport(error_chain(&e)))?;
        let (parts, mut body) = response.into_parts();
        let declared =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(SendError::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendError::Transport(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if (bytes.len() + data.len()) as u64 > limit {
                    return Err(SendError::TooLarge);
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body: bytes })
    }
}

/// How [`GitHub::send_with`] reads: whether GETs follow redirects, and the body's cap (bytes).
#[derive(Clone, Copy)]
struct Reading {
    follow_redirects: bool,
    limit: u64,
}

/// Why [`GitHub::send_once`] got no reply.
enum SendError {
    /// Connection, TLS or framing error (retried on GETs).
    Transport(String),
    /// The body passed its cap (not retried).
    TooLarge,
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
fn diff_too_large(reply: &Reply) -> bool {
    match reply.status {
        406 => true,
        422 => {
            let text = String::from_utf8_lossy(&reply.body).to_lowercase();
            text.contains("too large") || text.contains("too_large") || text.contains("exceeded the maximum")
        }
        _ => false,
    }
}

/// The rate-limit reading of a 403/429, following GitHub's documented order: `retry-after`
/// first, then `x-ratelimit-remaining: 0` with `x-ratelimit-reset`, then a "secondary rate
/// limit" message without headers. `None` for any other response (a 403 is then a permission
/// refusal).
fn rate_limit(reply: &Reply) -> Option<RateLimit> {
    if reply.status != 403 && reply.status != 429 {
        return None;
    }
    let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if header("retry-after").is_some() {
        return Some(RateLimit::Secondary { retry_after: Some(parse_retry_after(&reply.headers)) });
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset_epoch = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let reset_in = reset_epoch.map_or(Duration::MAX, |reset| Duration::from_secs(reset.saturating_sub(now)));
        return Some(RateLimit::Primary { reset_in });
    }
    let message = github_message(&reply.body).to_lowercase();
    if message.contains("secondary rate limit") || reply.status == 429 {
        return Some(RateLimit::Secondary { retry_after: None });
    }
    None
}

/// The wait a `retry-after` header asks for, read by [`crate::resilience::server_retry_after`]
/// (delay-seconds or an HTTP-date, RFC 9110 §10.2.3); unparsable → 60 s, the wait GitHub
/// recommends when it gives none.
fn parse_retry_after(headers: &http::HeaderMap) -> Duration {
    crate::resilience::server_retry_after(headers).unwrap_or(Duration::from_secs(60))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), e.g.
/// `<https://api.github.com/repositories/1/issues?page=2>; rel="next", <...>; rel="last"`.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else { continue };
            let is_next = parts.any(|param| {
                let param = param.trim();
                param
                    .strip_prefix("rel=")
                    .map(|rel| rel.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
                    .unwrap_or(false)
            });
            if is_next {
                return Some(url.to_string());
            }
        }
    }
    None
}

/// Maps a non-2xx reply to its error; 2xx passes through.
pub(super) fn check(reply: Reply, action: &str) -> Result<Reply, GitHubError> {
    if (200..300).contains(&reply.status) {
        return Ok(reply);
    }
    let action = action.to_string();
    let message = github_message(&reply.body);
    Err(match reply.status {
        401 | 403 => GitHubError::Auth { action, status: reply.status, message },
        404 => GitHubError::NotFound { action, message },
        422 => GitHubError::Unprocessable { action, message },
        status => GitHubError::Status { action, status, message },
    })
}

/// GitHub's error text: the JSON `message`, then the `errors` list (strings, or objects with a
/// `message` or `resource`/`field`/`code`), e.g. `Unprocessable Entity: Line could not be
/// resolved`. A non-JSON body is quoted (first 200 characters).
fn github_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return if text.is_empty() { "(empty body)".to_string() } else { text.chars().take(200).collect() };
    };
    let details: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| match e {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => match o.get("message").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None => ["resource", "field", "code"]
                    .iter()
                    .filter_map(|k| o.get(*k).and_then(|v| v.as_str()))
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    let message = parsed.message.unwrap_or_else(|| "(no message)".to_string());
    if details.is_empty() {
        message
    } else {
        format!("{message}: {}", details.join("; "))
    }
}

/// Decodes a JSON body into `T`.
pub(super) fn decode<T: serde::de::DeserializeOwned>(body: &[u8], action: &str) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::Decode { action: action.to_string(), message: e.to_string() })
}

/// Percent-encodes each segment of a repository path or ref, keeping the slashes.
pub(super) fn encode_path(path: &str) -> String {
    path.split('/').map(|segment| urlencoding::encode(segment).into_owned()).collect::<Vec<_>>().join("/")
}

// octocrab's top-level text alone is often just "Service error": errors are shown with their
// sources through `crate::log::error_chain`.
use crate::log::error_chain;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
