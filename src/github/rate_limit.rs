//! The write policy and rate limits: writes serialized and, past a burst of [`WRITE_BURST`]
//! writes, spaced by `write_delay`; the primary rate limit waited out when the reset is near,
//! the secondary one honouring `retry-after` (else 60 s); the retry bounds of [`ClientPolicy`].
//!
//! Source: "Rate limits for the REST API"
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::{github_message, GitHubError};
use super::transport::{Reply, MEDIA_JSON};
use super::GitHub;

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
pub(crate) const WRITE_BURST: u64 = 10;

/// How long the next write must wait before it starts: nothing while fewer than
/// [`WRITE_BURST`] writes were made (`writes_done`), else whatever remains of `write_delay`
/// since the previous write finished (`since_last`; `None` before any write).
pub(crate) fn write_wait(writes_done: u64, since_last: Option<Duration>, write_delay: Duration) -> Duration {
    match since_last {
        Some(elapsed) if writes_done >= WRITE_BURST => write_delay.saturating_sub(elapsed),
        _ => Duration::ZERO,
    }
}

/// The write lock's state: how many writes were made and when the last one finished.
#[derive(Debug, Default)]
pub(super) struct WriteState {
    done: u64,
    last: Option<Instant>,
    /// Writes that had to wait for the spacing (observable in tests and the benchmark).
    pub(super) spaced: u64,
}

/// Retry and wait bounds of the client. The defaults suit a CI job; tests shrink them.
///
/// Source for the rate-limit rules: "Rate limits for the REST API"
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>) and
/// "Best practices for using the REST API" (wait for `retry-after`, else until
/// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0, else at least one minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientPolicy {
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
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        crate::resilience::RetryPolicy { max_retries: self.get_retries, base: self.backoff_base, cap: self.backoff_cap }
            .backoff(attempt)
    }
}

/// Why GitHub refused a request for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RateLimit {
    /// `x-ratelimit-remaining: 0`; the window resets after this long.
    Primary { reset_in: Duration },
    /// Secondary (abuse) limit, with the `retry-after` wait when given.
    Secondary { retry_after: Option<Duration> },
}

impl GitHub {
    /// Logs and counts one retry (or rate-limit wait) like every other retry in the process.
    /// `server_asked` marks a rate-limit wait (counted against `rate_limit_retries`), else a
    /// GET retry (against `get_retries`).
    pub(super) fn note_retry(&self, done: u32, status: Option<u16>, wait: Duration, server_asked: bool) {
        let allowed = if server_asked { self.policy.rate_limit_retries } else { self.policy.get_retries };
        let notice =
            crate::resilience::RetryNotice { attempt: done + 1, max_attempts: allowed + 1, status, wait, server_asked };
        crate::resilience::report_retry(&crate::resilience::LogRetries("GitHub API"), &notice);
    }

    /// Changes the spacing between consecutive writes past the burst (config
    /// `github.write_delay`).
    pub(crate) fn set_write_delay(&mut self, write_delay: Duration) {
        self.write_delay = write_delay;
    }

    /// How many writes waited for the `write_delay` spacing (see [`write_wait`]).
    #[cfg(test)]
    pub(crate) async fn spaced_write_count(&self) -> u64 {
        self.write_lock.lock().await.spaced
    }

    /// The write path of [`GitHub::write`] with the body already encoded (or none).
    pub(super) async fn write_raw(
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

    /// How long to wait after a rate-limit rejection, or the error when it is too long.
    pub(super) fn rate_limit_wait(
        &self,
        limit: RateLimit,
        reply: &Reply,
        action: &str,
    ) -> Result<Duration, GitHubError> {
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
}

/// The rate-limit reading of a 403/429, following GitHub's documented order: `retry-after`
/// first, then `x-ratelimit-remaining: 0` with `x-ratelimit-reset`, then a "secondary rate
/// limit" message without headers. `None` for any other response (a 403 is then a permission
/// refusal).
pub(super) fn rate_limit(reply: &Reply) -> Option<RateLimit> {
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
pub(super) fn parse_retry_after(headers: &http::HeaderMap) -> Duration {
    crate::resilience::server_retry_after(headers).unwrap_or(Duration::from_secs(60))
}
