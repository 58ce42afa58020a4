//! Retry policy for provider and GitHub calls: full-jitter exponential backoff
//! (`sleep = uniform(0, min(cap, base · 2^attempt))`, AWS Architecture Blog, "Exponential Backoff
//! And Jitter") honouring the server's `retry-after-ms`, `retry-after` (seconds or HTTP-date,
//! RFC 9110 §10.2.3) and `x-should-retry`. A server that asks for a wait longer than the cap
//! fails fast instead of holding the job.

use std::time::Duration;

/// Backoff parameters. Durations are wall-clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// Base delay for attempt 0.
    pub base: Duration,
    /// Largest delay we sleep; a server asking for more makes the call fail fast.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 3, base: Duration::from_millis(500), cap: Duration::from_secs(30) }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then try again.
    RetryAfter(Duration),
    /// Do not retry (not retryable, out of retries, or the asked wait exceeds the cap).
    GiveUp,
}

impl RetryPolicy {
    /// Full-jitter delay for retry number `attempt` (0-based): uniform in `[0, min(cap, base·2^attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let _ = attempt;
        todo!()
    }

    /// Decides after attempt `attempt` (0-based) failed with HTTP `status` (None for a
    /// connection error) and response `headers`. Retryable: 408, 409, 429, 5xx, 529 and
    /// connection errors, unless `x-should-retry: false`; `x-should-retry: true` makes any
    /// status retryable. A server-asked wait wins over our backoff; over the cap → GiveUp.
    pub fn decide(&self, attempt: u32, status: Option<u16>, headers: &http::HeaderMap) -> RetryDecision {
        let _ = (attempt, status, headers);
        todo!()
    }
}

/// The wait a server asked for: `retry-after-ms` (milliseconds), else `retry-after` as seconds
/// or an HTTP-date (relative to now). `None` when absent or unparsable.
pub fn server_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let _ = headers;
    todo!()
}
