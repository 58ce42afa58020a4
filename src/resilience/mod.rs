//! Retry policy for provider and GitHub calls: full-jitter exponential backoff
//! (`sleep = uniform(0, min(cap, base · 2^attempt))`, AWS Architecture Blog, "Exponential Backoff
//! And Jitter") honouring the server's `retry-after-ms`, `retry-after` (seconds or HTTP-date,
//! RFC 9110 §10.2.3) and `x-should-retry`. A server that asks for a wait longer than the cap
//! fails fast instead of holding the job.
//!
//! [`retry`] runs an async operation under a [`RetryPolicy`]; the caller's `classify` closure
//! says which errors are worth another attempt, so the same loop serves every provider adapter
//! and the GitHub client. Every retry is logged as a warning (a `::warning::` annotation in
//! Actions) through a [`RetryObserver`] and counted in [`counts`].
//!
//! The [circuit breaker](Breaker) (per provider and model, state shared between processes
//! through the [state store](crate::store)) lives in the submodule `breaker`; its items are
//! re-exported here. Nothing here knows a provider: the fallback chain that puts providers
//! behind breakers is [`crate::providers::chain`], which builds on this module.

mod breaker;

pub use breaker::{Breaker, BreakerError, BreakerRecord, BreakerSettings, BreakerState, CallOutcome, Permit};

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::log;

/// Retries decided by [`retry_observed`] in this process.
static RETRIES: AtomicU64 = AtomicU64::new(0);
/// Circuit breaker state changes made by this process.
static BREAKER_CHANGES: AtomicU64 = AtomicU64::new(0);
/// Times a [`Resilient`] chain moved past a provider (skipped or failed) to the next one.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// What the resilience layer did in this process so far, for the review summary
/// (SPEC §2: "every retry, breaker change and fallback is logged and counted").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResilienceCounts {
    /// Retries (sleeps before another attempt) in [`retry`] / [`retry_observed`].
    pub retries: u64,
    /// Circuit breaker transitions (closed → open, open → half-open, ...).
    pub breaker_changes: u64,
    /// Moves to the next provider of a fallback chain.
    pub fallbacks: u64,
}

/// Process-wide counters since start. Monotonic; tests compare deltas.
pub fn counts() -> ResilienceCounts {
    ResilienceCounts {
        retries: RETRIES.load(Ordering::Relaxed),
        breaker_changes: BREAKER_CHANGES.load(Ordering::Relaxed),
        fallbacks: FALLBACKS.load(Ordering::Relaxed),
    }
}

/// A wait for humans: `250 ms` below a second, else `1.5 s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn count_breaker_change() {
    BREAKER_CHANGES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_fallback() {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// `retry-after-ms`: OpenAI's and Anthropic's millisecond variant of `retry-after`.
const RETRY_AFTER_MS: &str = "retry-after-ms";
/// `x-should-retry`: the server's explicit verdict (`true`/`false`), sent by OpenAI and Anthropic.
const X_SHOULD_RETRY: &str = "x-should-retry";

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
        let ceiling = self.ceiling(attempt);
        // Nanosecond resolution; a ceiling beyond u64 nanoseconds (584 years) is clamped.
        let max = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=max))
    }

    /// `min(cap, base·2^attempt)`, saturating instead of overflowing for large `attempt`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Decides after attempt `attempt` (0-based) failed with HTTP `status` (None for a
    /// connection error) and response `headers`. Retryable: 408, 409, 429, 5xx, 529 and
    /// connection errors, unless `x-should-retry: false`; `x-should-retry: true` makes any
    /// status retryable. A server-asked wait wins over our backoff; over the cap → GiveUp.
    pub fn decide(&self, attempt: u32, status: Option<u16>, headers: &http::HeaderMap) -> RetryDecision {
        let retryable = should_retry_header(headers).unwrap_or_else(|| is_retryable_status(status));
        if !retryable || attempt >= self.max_retries {
            return RetryDecision::GiveUp;
        }
        match server_retry_after(headers) {
            Some(wait) if wait > self.cap => RetryDecision::GiveUp,
            Some(wait) => RetryDecision::RetryAfter(wait),
            None => RetryDecision::RetryAfter(self.backoff(attempt)),
        }
    }
}

/// Statuses worth another attempt when the server says nothing explicit: timeouts (408),
/// conflicts (409, OpenAI documents it as transient lock contention), rate limits (429),
/// server errors (5xx, including Anthropic's 529 "overloaded"), and connection errors (`None`).
fn is_retryable_status(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => matches!(s, 408 | 409 | 429) || (500..=599).contains(&s),
    }
}

/// The `x-should-retry` header as a boolean; anything but `true`/`false` is ignored.
fn should_retry_header(headers: &http::HeaderMap) -> Option<bool> {
    let value = headers.get(X_SHOULD_RETRY)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The wait a server asked for: `retry-after-ms` (milliseconds), else `retry-after` as seconds
/// or an HTTP-date (relative to now). `None` when absent or unparsable.
pub fn server_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    server_retry_after_at(headers, SystemTime::now())
}

/// [`server_retry_after`] with an explicit "now", so HTTP-date parsing is testable.
fn server_retry_after_at(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header(RETRY_AFTER_MS).and_then(parse_non_negative) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = header(http::header::RETRY_AFTER.as_str())?;
    if let Some(secs) = parse_non_negative(value) {
        // RFC 9110 says delay-seconds is an integer, but OpenAI's SDKs accept fractions, and so do we.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A finite, non-negative decimal number.
fn parse_non_negative(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// How [`retry`] should treat one failed attempt, as the caller's `classify` closure sees it.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// Never retried whatever the headers say (401, 400, `insufficient_quota`, a bad answer).
    Fatal,
    /// Possibly transient: [`RetryPolicy::decide`] rules on `status` (`None` for a connection
    /// error or timeout) and the response `headers` (`None` when there was no response).
    Transient { status: Option<u16>, headers: Option<&'a http::HeaderMap> },
}

/// Why [`retry`] stopped without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// `classify` said [`Failure::Fatal`], or the status is not retryable, or `x-should-retry: false`.
    NotRetryable,
    /// All `max_retries + 1` attempts failed.
    OutOfRetries,
    /// The server asked for this wait, which is longer than [`RetryPolicy::cap`].
    WaitTooLong(Duration),
}

/// The last error of a call that [`retry`] gave up on.
#[derive(Debug)]
pub struct Exhausted<E> {
    /// The error of the last attempt.
    pub error: E,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    pub reason: GiveUpReason,
}

/// One retry about to happen, as [`retry_observed`] reports it to its [`RetryObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryNotice {
    /// The attempt that failed, 1-based.
    pub attempt: u32,
    /// Attempts the policy allows in all (`max_retries + 1`).
    pub max_attempts: u32,
    /// HTTP status of the failed attempt; `None` for a connection error or timeout.
    pub status: Option<u16>,
    /// How long we sleep before the next attempt.
    pub wait: Duration,
    /// Whether `wait` is the server's (`retry-after-ms` / `retry-after`) rather than our backoff.
    pub server_asked: bool,
}

impl fmt::Display for RetryNotice {
    /// Provider-neutral text, e.g. `attempt 1 of 4 failed (HTTP 503); retrying in 1.2 s` (or `800 ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} of {} failed (", self.attempt, self.max_attempts)?;
        match self.status {
            Some(status) => write!(f, "HTTP {status}")?,
            None => write!(f, "connection error or timeout")?,
        }
        write!(f, "); retrying in {}", human(self.wait))?;
        if self.server_asked {
            write!(f, " as the server asked")?;
        }
        Ok(())
    }
}

/// Told about every retry [`retry_observed`] decides. The default, [`LogRetries`], writes a
/// warning; tests pass a recorder instead of reading stderr.
pub trait RetryObserver: Send + Sync {
    /// Called just before the sleep that precedes the next attempt.
    fn on_retry(&self, notice: &RetryNotice);
}

/// Logs each retry with [`log::warn`] (a `::warning::` annotation in Actions). The field is
/// the subject that prefixes the line: the provider entry name (`main`), `GitHub API`, ...
#[derive(Debug, Clone, Copy)]
pub struct LogRetries<'a>(pub &'a str);

impl LogRetries<'_> {
    /// The warning text, e.g. `main: attempt 1 of 4 failed (HTTP 503); retrying in 1.2 s`.
    pub fn message(&self, notice: &RetryNotice) -> String {
        format!("{}: {notice}", self.0)
    }
}

impl RetryObserver for LogRetries<'_> {
    fn on_retry(&self, notice: &RetryNotice) {
        log::warn(&self.message(notice));
    }
}

/// Counts a retry and tells `observer` about it. For retry loops of their own (the GitHub
/// client's, whose write and rate-limit rules differ) so that every retry in the process is
/// logged and counted the same way.
pub fn report_retry(observer: &dyn RetryObserver, notice: &RetryNotice) {
    RETRIES.fetch_add(1, Ordering::Relaxed);
    // Inside `recording_retries` only; elsewhere there is no recorder and this does nothing.
    let _ = RECORDED.try_with(|r| r.borrow_mut().push(*notice));
    crate::telemetry::note_retry(notice.attempt, notice.status, notice.wait);
    observer.on_retry(notice);
}

tokio::task_local! {
    /// The retries of the task running under [`recording_retries`].
    static RECORDED: std::cell::RefCell<Vec<RetryNotice>>;
}

/// Runs `work` and returns its output with every retry decided while it ran on this task, in
/// order: the waits the layer chose (the server's `retry-after`, or full jitter under the cap)
/// rather than the wall-clock time they took. Retries of tasks `work` spawns are not seen.
///
/// ```ignore
/// let (answer, retries) = recording_retries(provider.complete(&request)).await;
/// assert_eq!(retries[0].wait, Duration::from_secs(2));
/// ```
pub async fn recording_retries<F: Future>(work: F) -> (F::Output, Vec<RetryNotice>) {
    RECORDED
        .scope(std::cell::RefCell::new(vec![]), async move {
            let out = work.await;
            (out, RECORDED.with(|r| r.take()))
        })
        .await
}

/// Runs `op` until it succeeds or `policy` says stop, sleeping between attempts (full jitter, or
/// the server's `retry-after`). Each retry is counted and logged as a warning with the generic
/// subject `request`; callers that can name what they retry use [`retry_observed`] with
/// [`LogRetries`].
///
/// ```ignore
/// let answer = retry(&policy, |e: &MyError| e.failure(), |attempt| send(attempt)).await;
/// ```
pub async fn retry<T, E, C, F, Fut>(policy: &RetryPolicy, classify: C, op: F) -> Result<T, Exhausted<E>>
where
    C: Fn(&E) -> Failure<'_>,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_observed(policy, &LogRetries("request"), classify, op).await
}

/// [`retry`] reporting each retry to `observer` (and counting it in [`counts`]).
///
/// `op` receives the 0-based attempt number (for logs and counters). `classify` maps each error
/// to a [`Failure`]; the HTTP details it borrows from the error feed [`RetryPolicy::decide`].
/// Per-attempt timeouts belong in `op` (e.g. the HTTP client's timeout); a total deadline can
/// wrap the whole call in `tokio::time::timeout` (as [`Resilient`] does).
///
/// ```ignore
/// let answer = retry_observed(&policy, &LogRetries("main"), |e: &MyError| e.failure(), |n| send(n)).await;
/// ```
pub async fn retry_observed<T, E, C, F, Fut>(
    policy: &RetryPolicy,
    observer: &dyn RetryObserver,
    classify: C,
    mut op: F,
) -> Result<T, Exhausted<E>>
where
    C: Fn(&E) -> Failure<'_>,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let (decision, reason, status, server_asked) = match classify(&error) {
            Failure::Fatal => (RetryDecision::GiveUp, GiveUpReason::NotRetryable, None, false),
            Failure::Transient { status, headers } => {
                let empty = http::HeaderMap::new();
                let headers = headers.unwrap_or(&empty);
                let decision = policy.decide(attempt, status, headers);
                let server_asked = server_retry_after(headers).is_some();
                (decision, give_up_reason(policy, attempt, headers), status, server_asked)
            }
        };
        match decision {
            RetryDecision::RetryAfter(wait) => {
                report_retry(
                    observer,
                    &RetryNotice {
                        attempt: attempt + 1,
                        max_attempts: policy.max_retries.saturating_add(1),
                        status,
                        wait,
                        server_asked,
                    },
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            RetryDecision::GiveUp => return Err(Exhausted { error, attempts: attempt + 1, reason }),
        }
    }
}

/// Explains a `GiveUp` from [`RetryPolicy::decide`] (only read when it gave up).
fn give_up_reason(policy: &RetryPolicy, attempt: u32, headers: &http::HeaderMap) -> GiveUpReason {
    if attempt >= policy.max_retries {
        return GiveUpReason::OutOfRetries;
    }
    match server_retry_after(headers) {
        Some(wait) if wait > policy.cap => GiveUpReason::WaitTooLong(wait),
        _ => GiveUpReason::NotRetryable,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { max_retries: 3, base: Duration::from_millis(100), cap: Duration::from_secs(2) }
    }

    #[test]
    fn backoff_stays_within_full_jitter_bounds() {
        let p = policy();
        for attempt in 0..8 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt)).min(p.cap);
            let samples: Vec<Duration> = (0..500).map(|_| p.backoff(attempt)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt} exceeded {ceiling:?}");
            // Full jitter spreads over the whole range, not just near the ceiling.
            assert!(samples.iter().any(|d| *d < ceiling / 4), "attempt {attempt}: no small sample");
            assert!(samples.iter().any(|d| *d > ceiling * 3 / 4), "attempt {attempt}: no large sample");
        }
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let p = policy();
        for attempt in [10, 31, 32, 100, u32::MAX] {
            assert_eq!(p.ceiling(attempt), p.cap);
            assert!(p.backoff(attempt) <= p.cap);
        }
        let huge = RetryPolicy { max_retries: 1, base: Duration::MAX, cap: Duration::MAX };
        assert!(huge.backoff(40) <= Duration::MAX);
        let zero = RetryPolicy { max_retries: 1, base: Duration::ZERO, cap: Duration::from_secs(1) };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let h = headers(&[("retry-after-ms", "250"), ("retry-after", "7")]);
        assert_eq!(server_retry_after(&h), Some(Duration::from_millis(250)));
        let h = headers(&[("retry-after-ms", "12.5")]);
        assert_eq!(server_retry_after(&h), Some(Duration::from_micros(12_500)));
    }

    #[test]
    fn retry_after_seconds_integer_and_fractional() {
        assert_eq!(server_retry_after(&headers(&[("retry-after", "3")])), Some(Duration::from_secs(3)));
        assert_eq!(server_retry_after(&headers(&[("retry-after", "0.5")])), Some(Duration::from_millis(500)));
        assert_eq!(server_retry_after(&headers(&[("retry-after", " 2 ")])), Some(Duration::from_secs(2)));
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now_and_past_is_zero() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]);
        assert_eq!(server_retry_after_at(&h, now), Some(Duration::from_secs(10)));
        let past = headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]);
        assert_eq!(server_retry_after_at(&past, now), Some(Duration::ZERO));
        // Through the public function: a date long past is "now".
        assert_eq!(server_retry_after(&past), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_absent_or_garbage_is_none() {
        assert_eq!(server_retry_after(&HeaderMap::new()), None);
        assert_eq!(server_retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(server_retry_after(&headers(&[("retry-after", "-1")])), None);
        // A bad retry-after-ms falls through to retry-after.
        let h = headers(&[("retry-after-ms", "NaN"), ("retry-after", "1")]);
        assert_eq!(server_retry_after(&h), Some(Duration::from_secs(1)));
    }

    #[test]
    fn decide_per_status() {
        let p = policy();
        let none = HeaderMap::new();
        for status in [Some(408), Some(409), Some(429), Some(500), Some(502), Some(503), Some(529), None] {
            match p.decide(0, status, &none) {
                RetryDecision::RetryAfter(d) => assert!(d <= p.base, "{status:?}: {d:?}"),
                RetryDecision::GiveUp => panic!("{status:?} should be retried"),
            }
        }
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(p.decide(0, Some(status), &none), RetryDecision::GiveUp, "{status}");
        }
    }

    #[test]
    fn decide_gives_up_when_out_of_retries() {
        let p = policy();
        let none = HeaderMap::new();
        assert!(matches!(p.decide(2, Some(503), &none), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(3, Some(503), &none), RetryDecision::GiveUp);
        let never = RetryPolicy { max_retries: 0, ..p };
        assert_eq!(never.decide(0, Some(503), &none), RetryDecision::GiveUp);
    }

    #[test]
    fn decide_honours_x_should_retry() {
        let p = policy();
        assert_eq!(p.decide(0, Some(503), &headers(&[("x-should-retry", "false")])), RetryDecision::GiveUp);
        assert!(matches!(
            p.decide(0, Some(400), &headers(&[("x-should-retry", "true")])),
            RetryDecision::RetryAfter(_)
        ));
        // Unknown values are ignored.
        assert_eq!(p.decide(0, Some(400), &headers(&[("x-should-retry", "maybe")])), RetryDecision::GiveUp);
        // Even an explicit "true" does not buy more attempts than the policy allows.
        assert_eq!(p.decide(3, Some(400), &headers(&[("x-should-retry", "true")])), RetryDecision::GiveUp);
    }

    #[test]
    fn decide_uses_server_wait_and_fails_fast_over_cap() {
        let p = policy();
        let h = headers(&[("retry-after", "1")]);
        assert_eq!(p.decide(0, Some(429), &h), RetryDecision::RetryAfter(Duration::from_secs(1)));
        // The server's wait wins over our (smaller) backoff even on later attempts.
        assert_eq!(p.decide(2, Some(429), &h), RetryDecision::RetryAfter(Duration::from_secs(1)));
        let h = headers(&[("retry-after", "600")]);
        assert_eq!(p.decide(0, Some(429), &h), RetryDecision::GiveUp);
        assert_eq!(give_up_reason(&p, 0, &h), GiveUpReason::WaitTooLong(Duration::from_secs(600)));
    }

    #[derive(Debug)]
    struct E(Option<u16>);

    fn classify(e: &E) -> Failure<'_> {
        match e.0 {
            Some(400) => Failure::Fatal,
            status => Failure::Transient { status, headers: None },
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy { max_retries: 2, base: Duration::from_millis(1), cap: Duration::from_millis(5) }
    }

    #[tokio::test]
    async fn retry_succeeds_after_transient_failures() {
        let mut seen = Vec::new();
        let result = retry(&fast(), classify, |attempt| {
            seen.push(attempt);
            async move {
                if attempt < 2 {
                    Err(E(Some(503)))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(seen, vec![0, 1, 2]);
    }

    /// Collects what [`retry_observed`] reports, as the warning text [`LogRetries`] would log.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl RetryObserver for Recorder {
        fn on_retry(&self, notice: &RetryNotice) {
            self.0.lock().unwrap().push(LogRetries("main").message(notice));
        }
    }

    #[tokio::test]
    async fn every_retry_is_reported_with_status_attempt_and_wait() {
        let recorder = Recorder::default();
        let before = counts().retries;
        let result = retry_observed(&fast(), &recorder, classify, |attempt| async move {
            match attempt {
                0 => Err(E(Some(503))),
                1 => Err(E(None)),
                _ => Ok(()),
            }
        })
        .await;
        assert!(result.is_ok());
        let lines = recorder.0.into_inner().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("main: attempt 1 of 3 failed (HTTP 503); retrying in "), "{lines:?}");
        assert!(lines[0].ends_with(" ms"), "{lines:?}");
        assert!(lines[1].starts_with("main: attempt 2 of 3 failed (connection error or timeout); retrying in "));
        // Counted process-wide (other tests may add to it concurrently).
        assert!(counts().retries >= before + 2);
    }

    #[tokio::test]
    async fn no_retry_no_report() {
        let recorder = Recorder::default();
        let out = retry_observed(&fast(), &recorder, classify, |_| async { Err::<(), _>(E(Some(400))) }).await;
        assert_eq!(out.unwrap_err().attempts, 1);
        assert!(recorder.0.into_inner().unwrap().is_empty());
    }

    #[test]
    fn notice_says_when_the_server_chose_the_wait() {
        let notice = RetryNotice {
            attempt: 2,
            max_attempts: 4,
            status: Some(429),
            wait: Duration::from_millis(1500),
            server_asked: true,
        };
        assert_eq!(
            LogRetries("GitHub API").message(&notice),
            "GitHub API: attempt 2 of 4 failed (HTTP 429); retrying in 1.5 s as the server asked"
        );
    }

    #[tokio::test]
    async fn server_asked_wait_is_flagged() {
        #[derive(Debug)]
        struct Limited(http::HeaderMap);
        let recorder = Recorder::default();
        let mut h = http::HeaderMap::new();
        h.insert("retry-after-ms", http::HeaderValue::from_static("1"));
        let policy = fast();
        let out = retry_observed(
            &policy,
            &recorder,
            |e: &Limited| Failure::Transient { status: Some(429), headers: Some(&e.0) },
            |attempt| {
                let h = h.clone();
                async move {
                    if attempt == 0 {
                        Err(Limited(h))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert!(out.is_ok());
        let lines = recorder.0.into_inner().unwrap();
        assert_eq!(lines, vec!["main: attempt 1 of 3 failed (HTTP 429); retrying in 1 ms as the server asked"]);
    }

    #[tokio::test]
    async fn retry_reports_attempts_and_reason() {
        let out = retry(&fast(), classify, |_| async { Err::<(), _>(E(None)) }).await.unwrap_err();
        assert_eq!((out.attempts, out.reason), (3, GiveUpReason::OutOfRetries));
        let out = retry(&fast(), classify, |_| async { Err::<(), _>(E(Some(400))) }).await.unwrap_err();
        assert_eq!((out.attempts, out.reason), (1, GiveUpReason::NotRetryable));
        let out = retry(&fast(), classify, |_| async { Err::<(), _>(E(Some(404))) }).await.unwrap_err();
        assert_eq!((out.attempts, out.reason), (1, GiveUpReason::NotRetryable));
    }
}
