//! The HTTP side of [`GitHub`]: octocrab (on our reqwest client and TLS config) for transport
//! and auth, with its retry and redirect layers off; requests sent with the retry policy, GET
//! redirects followed within bounds, every response body capped, `Link` pagination followed.
//!
//! Every URL is built from `GITHUB_API_URL` by appending, so a GHES path prefix
//! (`https://host/api/v3`) is kept on every request.
//!
//! Sources: "Using pagination in the REST API"
//! (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>),
//! media types (<https://docs.github.com/en/rest/using-the-rest-api/media-types>).

use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{check, github_message, GitHubError};
use super::rate_limit::{rate_limit, ClientPolicy, WriteState};

/// `X-GitHub-Api-Version` sent with every request.
pub(crate) const API_VERSION: &str = "2022-11-28";

/// `Accept` for JSON resources.
pub(super) const MEDIA_JSON: &str = "application/vnd.github+json";
/// `Accept` for a unified diff (pulls, compare). Source:
/// <https://docs.github.com/en/rest/using-the-rest-api/media-types>.
pub(super) const MEDIA_DIFF: &str = "application/vnd.github.diff";
/// `Accept` for a file's raw bytes from the contents API.
pub(super) const MEDIA_RAW: &str = "application/vnd.github.raw+json";
/// `User-Agent` (GitHub rejects requests without one).
const USER_AGENT: &str = concat!("agentctl/", env!("CARGO_PKG_VERSION"));
/// Items per page on list endpoints (GitHub's maximum).
pub(super) const PER_PAGE: u32 = 100;
/// Pages followed before giving up on a `Link: rel="next"` chain; 100 × 100 items is far above
/// anything a PR has (the files endpoint itself stops at 3000 files).
pub(super) const MAX_PAGES: usize = 100;
/// Redirects a GET follows (renamed or transferred repositories).
const MAX_REDIRECTS: u32 = 3;
/// The most bytes of one API response body read (issue #17: every body read over the network
/// has a cap). Far above any JSON page or PR diff GitHub serves (diffs past 20,000 lines are
/// refused by GitHub itself); an artifact served directly is capped at
/// [`super::artifacts::MAX_ARTIFACT_BYTES`] instead. Past it the request fails, not retried.
pub(crate) const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Transport timeouts: connecting, and each read of the response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP exchange as we saw it, whatever the status.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Vec<u8>,
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
pub(crate) struct GitHub {
    /// Transport and auth (the `Authorization` header is attached by octocrab only to the API
    /// host, so a `Link` pointing elsewhere would never receive the token).
    pub(super) crab: octocrab::Octocrab,
    /// `GITHUB_API_URL` without a trailing slash, path prefix kept (`https://host/api/v3`).
    pub(super) api_base: String,
    pub(super) owner: String,
    pub(super) repo: String,
    /// Held for the whole of each write; counts writes and holds when the last one finished.
    pub(super) write_lock: tokio::sync::Mutex<WriteState>,
    pub(super) write_delay: Duration,
    pub(super) policy: ClientPolicy,
    /// HTTP requests sent, retries included.
    pub(super) requests: AtomicU64,
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
    /// `token`. `write_delay` spaces consecutive writes past the first
    /// [`WRITE_BURST`](super::WRITE_BURST) (default 1 s; 0 in tests).
    ///
    /// Errors: [`GitHubError::Network`] when `api_url` is not an absolute `http(s)` URL or the
    /// TLS setup fails; [`GitHubError::Credential`] when `token` cannot be sent as a header
    /// (callers check every token where it enters; this keeps octocrab, which unwraps the
    /// header it builds, from ever panicking on one that slipped through).
    pub(crate) fn new(
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
    #[cfg(test)]
    pub(crate) fn with_policy(mut self, policy: ClientPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The repository owner (user or organization) this client acts for.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name this client acts on.
    pub(crate) fn repo(&self) -> &str {
        &self.repo
    }

    /// How many HTTP requests this client has sent (for the benchmark and tests).
    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
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
            match next_link(&reply.headers, &url) {
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
    /// [`WRITE_BURST`](super::WRITE_BURST) writes started no sooner than `write_delay` after the
    /// previous one finished (see [`write_wait`](super::write_wait)), and never retried except
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
            let mut span = crate::telemetry::http_span(method.as_str(), &url);
            let outcome = self.send_once(method.clone(), &url, accept, body.clone(), limit).await;
            match &outcome {
                Ok(reply) => {
                    span.set([opentelemetry::KeyValue::new("http.response.status_code", i64::from(reply.status))]);
                    // `error.type` of an HTTP failure is its status code (HTTP semantic conventions).
                    let status = reply.status.to_string();
                    span.end_with((reply.status >= 400).then_some(status.as_str()));
                }
                Err(_) => span.end_with(Some("transport")),
            }
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

/// The `rel="next"` target of a `Link` header (RFC 8288), e.g.
/// `<https://api.github.com/repositories/1/issues?page=2>; rel="next", <...>; rel="last"`,
/// parsed by `http-link` (RFC 8288 appendix B: quoted parameters, several relation types in one
/// `rel`, case-insensitive). A relative target is resolved against `current`, the page's own
/// URL; a header that does not parse counts as no next page, like one without `rel="next"`.
pub(super) fn next_link(headers: &http::HeaderMap, current: &str) -> Option<String> {
    let base = url::Url::parse(current).ok()?;
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| http_link::parse_link_header(value, &base).ok())
        .flatten()
        .find(|link| link.rel == "next")
        .map(|link| link.target.to_string())
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
