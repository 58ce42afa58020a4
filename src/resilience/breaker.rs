//! The circuit breaker: one per provider entry and model (key `name/model`), so a provider that
//! keeps failing is left alone for a while instead of costing every later call its full retry
//! budget. States follow the classic pattern (Nygard, "Release It!"; Fowler, "CircuitBreaker"):
//!
//! - **closed**: calls pass; consecutive health failures are counted, and at
//!   [`BreakerSettings::failure_threshold`] the breaker opens.
//! - **open**: calls are refused at once ([`BreakerError::Open`]) until
//!   [`BreakerSettings::open_for`] has passed since it opened; then it turns half-open.
//! - **half-open**: up to [`BreakerSettings::half_open_probes`] probe calls pass at a time; a
//!   probe that succeeds closes the breaker (counts reset), one that fails opens it again.
//!
//! Only failures that say something about the provider's health count
//! (`ProviderError::is_health_failure`): `Unavailable` (429/5xx after retries) and `Network`. An `Auth`,
//! `Rejected`, `BadAnswer` or `Config` error is about our request or setup, and would not get
//! better by waiting. `Quota` does not count either: an exhausted quota or spend limit is an
//! account state that lasts hours, not a transient outage; a half-open probe every minute would
//! learn nothing, and the fallback chain already moves past it (see [`super::Resilient`]).
//!
//! The state lives in the [state store](crate::store) so the next process (the next step of the
//! workflow) sees a breaker this one opened; every read-modify-write runs under the database
//! write lock. Without a store (read-only file system), or after a store error, the breaker
//! keeps its state in memory for this process and says so in a warning — never silently.
//! Clocks are wall-clock Unix milliseconds because they are compared across processes.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::log;
use crate::store::{BreakerRow, Store, StoreError};

/// Breaker tuning, per chain (config: `breaker: {failure_threshold, open_for_secs, half_open_probes}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive health failures that open a closed breaker (at least 1 is used).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting a probe through.
    pub open_for: Duration,
    /// Probe calls allowed at once while half-open (at least 1 is used).
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, open_for: Duration::from_secs(60), half_open_probes: 1 }
    }
}

/// The three breaker states. Stored as `closed`, `open`, `half-open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The stored (and logged) name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// The inverse of [`BreakerState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "closed" => Some(BreakerState::Closed),
            "open" => Some(BreakerState::Open),
            "half-open" => Some(BreakerState::HalfOpen),
            _ => None,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One breaker's state, as the `breaker` table stores it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRecord {
    pub state: BreakerState,
    /// Health failures since the last success.
    pub consecutive_failures: u32,
    /// When the breaker last opened; `None` if it never did.
    pub opened_at_ms: Option<i64>,
    /// Probe calls admitted and not yet finished while half-open.
    pub half_open_probes: u32,
    /// Last change; while half-open, when the last probe was admitted (a probe older than
    /// `open_for` is presumed lost with its process, and its slot is given to a new one).
    pub updated_at_ms: i64,
}

impl BreakerRecord {
    /// The record a stored row holds; `None` for a state name this build does not know.
    pub fn from_row(row: &BreakerRow) -> Option<Self> {
        Some(Self {
            state: BreakerState::parse(&row.state)?,
            consecutive_failures: row.consecutive_failures,
            opened_at_ms: row.opened_at_ms,
            half_open_probes: row.half_open_probes,
            updated_at_ms: row.updated_at_ms,
        })
    }

    /// The record stored for `key` in `store`, `None` when never recorded.
    ///
    /// Errors: the read fails, or the row holds a state this build does not know.
    pub fn load(store: &Store, key: &str) -> Result<Option<Self>, StoreError> {
        store
            .breaker_state(key)?
            .map(|r| Self::from_row(&r).ok_or_else(|| store.corrupt(format!("unknown breaker state `{}`", r.state))))
            .transpose()
    }

    /// The row to store for this record.
    pub fn to_row(&self) -> BreakerRow {
        BreakerRow {
            state: self.state.as_str().to_owned(),
            consecutive_failures: self.consecutive_failures,
            opened_at_ms: self.opened_at_ms,
            half_open_probes: self.half_open_probes,
            updated_at_ms: self.updated_at_ms,
        }
    }

    /// A closed breaker with no failures, as of `now_ms`.
    pub fn closed(now_ms: i64) -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at_ms: None,
            half_open_probes: 0,
            updated_at_ms: now_ms,
        }
    }
}

/// A call the breaker refused. Not a [`ProviderError`]: no request was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    /// The breaker is open; it lets a probe through in `retry_in`.
    /// `since`: how long it has been open.
    #[error("circuit breaker for `{key}` is open: circuit open since {} ago, no request sent (next probe in {})", super::human(*since), super::human(*retry_in))]
    Open { key: String, retry_in: Duration, since: Duration },
    /// Half-open with every probe slot taken; a slot is presumed lost after `retry_in`.
    #[error("circuit breaker for `{key}` is half-open and its probe call is still running (retry in {})", super::human(*retry_in))]
    ProbeInFlight { key: String, retry_in: Duration },
}

/// How a call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered: resets the failure count, closes a half-open breaker.
    Success,
    /// A failure that says the provider is unhealthy
    /// ([`ProviderError::is_health_failure`](crate::providers::ProviderError::is_health_failure)).
    HealthFailure,
    /// Anything else (bad request, bad answer, auth, quota, cancelled): counts neither way; a
    /// probe slot it held is released.
    Neutral,
}

/// Unix milliseconds source; swapped in tests.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A transition worth a warning and an `events` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    from: BreakerState,
    to: BreakerState,
    why: String,
}

/// Circuit breakers for any number of keys, backed by the state store when there is one.
pub struct Breaker {
    settings: BreakerSettings,
    store: Option<Arc<Store>>,
    /// Set after a store error: from then on this process uses `memory`.
    degraded: AtomicBool,
    memory: Mutex<HashMap<String, BreakerRecord>>,
    clock: Clock,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("settings", &self.settings)
            .field("store", &self.store.as_ref().map(|s| s.name().to_owned()))
            .field("degraded", &self.degraded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// Breakers whose state persists in `store`, shared with other processes using the file.
    pub fn persistent(settings: BreakerSettings, store: Arc<Store>) -> Self {
        Self::build(settings, Some(store))
    }

    /// Breakers kept in this process only. Warns (naming `why`) because a later workflow step
    /// will not see a breaker this one opens.
    pub fn in_memory(settings: BreakerSettings, why: &str) -> Self {
        log::warn(&format!("circuit breaker state is kept in memory only, so later steps will not see it: {why}"));
        Self::build(settings, None)
    }

    /// [`Breaker::persistent`] when the store opened, else [`Breaker::in_memory`] with the
    /// store's error as the reason. The usual way to build one:
    /// `Breaker::with_store(settings, Store::open(&path).map(Arc::new))`.
    pub fn with_store(settings: BreakerSettings, store: Result<Arc<Store>, StoreError>) -> Self {
        match store {
            Ok(store) => Self::persistent(settings, store),
            Err(e) => Self::in_memory(settings, &error_chain(&e)),
        }
    }

    fn build(settings: BreakerSettings, store: Option<Arc<Store>>) -> Self {
        Self {
            settings,
            store,
            degraded: AtomicBool::new(false),
            memory: Mutex::new(HashMap::new()),
            clock: Arc::new(crate::clock::now_ms),
        }
    }

    /// Replaces the clock (Unix milliseconds); tests drive time by hand.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// The store state is written to, unless there is none or it failed earlier in this process.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref().filter(|_| !self.degraded.load(Ordering::Relaxed))
    }

    /// The key of a provider entry and model: `name/model`.
    pub fn key(provider: &str, model: &str) -> String {
        format!("{provider}/{model}")
    }

    /// The current record for `key` (a fresh closed one if none is stored). Read-only: an open
    /// breaker whose `open_for` has passed still reads `open` until a call is admitted.
    pub fn state(&self, key: &str) -> BreakerRecord {
        let now = (self.clock)();
        self.apply(key, |cur, _| (None, cur.cloned().unwrap_or_else(|| BreakerRecord::closed(now))))
    }

    /// Asks to make a call under `key`'s breaker. `Ok` carries a [`Permit`] to report the
    /// outcome with; dropping it unreported (a cancelled call) counts as [`CallOutcome::Neutral`].
    pub fn admit(&self, key: &str) -> Result<Permit<'_>, BreakerError> {
        let settings = self.settings;
        let (admitted, change) = self.apply(key, |cur, now| admit_step(cur, &settings, now, key));
        if let Some(change) = change {
            self.report(key, &change);
        }
        admitted.map(|probe| Permit { breaker: self, key: key.to_owned(), probe, done: false })
    }

    /// Records how a call admitted under `key` ended (`probe`: whether it was admitted as a
    /// half-open probe). [`Permit::finish`] calls this; exposed for callers that do not hold one.
    pub fn record(&self, key: &str, outcome: CallOutcome, probe: bool) {
        let settings = self.settings;
        let change = self.apply(key, |cur, now| outcome_step(cur, &settings, now, outcome, probe));
        if let Some(change) = change {
            self.report(key, &change);
        }
    }

    /// Appends an `events` row when a store is in use (fallbacks and deadlines use this too).
    /// A failing store switches this process to memory with a warning.
    ///
    /// The subject and detail pass through the log's redactor first: a detail quotes provider
    /// error messages, which can echo what was sent (a key included), and the events table is
    /// an outbound channel like the log (SPEC §2, "ledger").
    pub fn record_event(&self, kind: &str, subject: &str, detail: &str) {
        if let Some(store) = self.store() {
            if let Err(e) = store.record_event(kind, &log::redact(subject), &log::redact(detail)) {
                self.degrade(&e);
            }
        }
    }

    /// Runs a pure step `f(current, now) -> (new record, output)` against the store (under its
    /// write lock) or the in-memory map. `f` may run twice: first on an unlocked read, and again
    /// under the lock only when it wants to write, so the common closed-and-healthy call takes
    /// no write lock.
    fn apply<T>(&self, key: &str, f: impl Fn(Option<&BreakerRecord>, i64) -> (Option<BreakerRecord>, T)) -> T {
        let now = (self.clock)();
        if let Some(store) = self.store() {
            let decode = |row: Option<&BreakerRow>| -> Result<Option<BreakerRecord>, StoreError> {
                row.map(|r| {
                    BreakerRecord::from_row(r)
                        .ok_or_else(|| store.corrupt(format!("unknown breaker state `{}`", r.state)))
                })
                .transpose()
            };
            let attempt = store.breaker_state(key).and_then(|row| match f(decode(row.as_ref())?.as_ref(), now) {
                (None, out) => Ok(out),
                (Some(_), _) => store
                    .update_breaker(key, |row| match decode(row) {
                        Ok(cur) => {
                            let (new, out) = f(cur.as_ref(), now);
                            (new.map(|r| r.to_row()), Ok(out))
                        }
                        Err(e) => (None, Err(e)),
                    })
                    .and_then(|out| out),
            });
            match attempt {
                Ok(out) => return out,
                Err(e) => self.degrade(&e),
            }
        }
        // A poisoned map only means another thread panicked mid-update; its data is still a
        // valid record, so carry on with it.
        let mut memory = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (new, out) = f(memory.get(key), now);
        if let Some(new) = new {
            memory.insert(key.to_owned(), new);
        }
        out
    }

    /// Switches to in-memory state after a store error, warning once.
    fn degrade(&self, e: &StoreError) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            log::warn(&format!(
                "circuit breaker state is kept in memory for the rest of this run, so later steps will not see it: {}",
                error_chain(e)
            ));
        }
    }

    /// Warns about a transition, appends an `events` row (kind `breaker`) and counts it.
    fn report(&self, key: &str, change: &Change) {
        let detail = format!("{} -> {}: {}", change.from, change.to, change.why);
        log::warn(&format!("circuit breaker `{key}`: {detail}"));
        self.record_event("breaker", key, &detail);
        super::count_breaker_change();
        crate::telemetry::run_event(
            "breaker",
            vec![
                opentelemetry::KeyValue::new("agentctl.breaker.key", key.to_owned()),
                opentelemetry::KeyValue::new("agentctl.breaker.from", change.from.to_string()),
                opentelemetry::KeyValue::new("agentctl.breaker.to", change.to.to_string()),
            ],
        );
        if change.to == BreakerState::Open {
            crate::telemetry::count("agentctl.breaker.opens", "agentctl.breaker.key", key);
        }
    }
}

/// Permission for one call, from [`Breaker::admit`]. Report the outcome with
/// [`Permit::finish`]; a permit dropped without it (the call was cancelled, e.g. by the total
/// deadline) releases its probe slot without counting either way.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    key: String,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The breaker key this permit is for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Records the call's outcome.
    pub fn finish(mut self, outcome: CallOutcome) {
        self.done = true;
        self.breaker.record(&self.key, outcome, self.probe);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // Only a probe holds anything (a slot); a closed-state call that vanished says nothing.
        if !self.done && self.probe {
            self.breaker.record(&self.key, CallOutcome::Neutral, true);
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn remaining(total: Duration, elapsed_ms: i64) -> Duration {
    total.saturating_sub(Duration::from_millis(u64::try_from(elapsed_ms).unwrap_or(0)))
}

/// The admission rule. Output: `Ok(probe?)` or the refusal, plus a transition to report.
#[allow(clippy::type_complexity)] // the (row, output) pair is Store::update_breaker's contract
fn admit_step(
    cur: Option<&BreakerRecord>,
    s: &BreakerSettings,
    now: i64,
    key: &str,
) -> (Option<BreakerRecord>, (Result<bool, BreakerError>, Option<Change>)) {
    let Some(r) = cur else { return (None, (Ok(false), None)) };
    let open_for = millis(s.open_for);
    let probes = s.half_open_probes.max(1);
    match r.state {
        BreakerState::Closed => (None, (Ok(false), None)),
        BreakerState::Open => {
            let elapsed = now.saturating_sub(r.opened_at_ms.unwrap_or(r.updated_at_ms));
            if elapsed < open_for {
                let since = Duration::from_millis(u64::try_from(elapsed).unwrap_or(0));
                let err = BreakerError::Open { key: key.to_owned(), retry_in: remaining(s.open_for, elapsed), since };
                return (None, (Err(err), None));
            }
            let new =
                BreakerRecord { state: BreakerState::HalfOpen, half_open_probes: 1, updated_at_ms: now, ..r.clone() };
            let open_for = super::human(Duration::from_millis(u64::try_from(elapsed).unwrap_or(0)));
            let why = format!("open for {open_for}; letting {probes} probe call(s) through");
            let change = Change { from: BreakerState::Open, to: BreakerState::HalfOpen, why };
            (Some(new), (Ok(true), Some(change)))
        }
        BreakerState::HalfOpen => {
            if r.half_open_probes < probes {
                let new = BreakerRecord { half_open_probes: r.half_open_probes + 1, updated_at_ms: now, ..r.clone() };
                return (Some(new), (Ok(true), None));
            }
            let since = now.saturating_sub(r.updated_at_ms);
            if since >= open_for {
                // The probes never reported back (their process died): hand out a fresh slot.
                let new = BreakerRecord { half_open_probes: 1, updated_at_ms: now, ..r.clone() };
                return (Some(new), (Ok(true), None));
            }
            let err = BreakerError::ProbeInFlight { key: key.to_owned(), retry_in: remaining(s.open_for, since) };
            (None, (Err(err), None))
        }
    }
}

/// The outcome rule: the new row (if any) and a transition to report.
fn outcome_step(
    cur: Option<&BreakerRecord>,
    s: &BreakerSettings,
    now: i64,
    outcome: CallOutcome,
    probe: bool,
) -> (Option<BreakerRecord>, Option<Change>) {
    let r = cur.cloned().unwrap_or_else(|| BreakerRecord::closed(now));
    match outcome {
        CallOutcome::Success => match r.state {
            BreakerState::Closed if r.consecutive_failures == 0 => (None, None),
            BreakerState::Closed => (Some(BreakerRecord::closed(now)), None),
            // A success is proof of health whether it was the probe or a call admitted before
            // the breaker opened that finished late.
            from => {
                let why = if probe { "a probe call succeeded" } else { "a call succeeded" };
                (Some(BreakerRecord::closed(now)), Some(Change { from, to: BreakerState::Closed, why: why.into() }))
            }
        },
        CallOutcome::HealthFailure => {
            let failures = r.consecutive_failures.saturating_add(1);
            let open = |why: String, from| {
                let new = BreakerRecord {
                    state: BreakerState::Open,
                    consecutive_failures: failures,
                    opened_at_ms: Some(now),
                    half_open_probes: 0,
                    updated_at_ms: now,
                };
                (Some(new), Some(Change { from, to: BreakerState::Open, why }))
            };
            let refuse = format!("refusing calls for {}", super::human(s.open_for));
            match r.state {
                BreakerState::Closed if failures >= s.failure_threshold.max(1) => {
                    open(format!("{failures} consecutive failure(s); {refuse}"), BreakerState::Closed)
                }
                BreakerState::Closed | BreakerState::Open => {
                    // Still counting (closed) or already open (a late failure): keep opened_at.
                    (Some(BreakerRecord { consecutive_failures: failures, updated_at_ms: now, ..r }), None)
                }
                BreakerState::HalfOpen => open(format!("the probe call failed; {refuse}"), BreakerState::HalfOpen),
            }
        }
        CallOutcome::Neutral if probe && r.state == BreakerState::HalfOpen && r.half_open_probes > 0 => {
            (Some(BreakerRecord { half_open_probes: r.half_open_probes - 1, ..r }), None)
        }
        CallOutcome::Neutral => (None, None),
    }
}

use crate::log::error_chain;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    const KEY: &str = "main/gpt-4o";

    fn settings() -> BreakerSettings {
        BreakerSettings { failure_threshold: 3, open_for: Duration::from_millis(1000), half_open_probes: 1 }
    }

    /// A breaker on `store` with a hand-driven clock starting at 1,000,000 ms.
    fn manual(store: Arc<Store>) -> (Breaker, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock = Arc::clone(&now);
        let b = Breaker::persistent(settings(), store).with_clock(move || clock.load(Ordering::SeqCst));
        (b, now)
    }

    fn fail(b: &Breaker, n: u32) {
        for _ in 0..n {
            b.admit(KEY).unwrap().finish(CallOutcome::HealthFailure);
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen] {
            assert_eq!(BreakerState::parse(s.as_str()), Some(s));
        }
        assert_eq!(BreakerState::parse("ajar"), None);
    }

    #[test]
    fn opens_at_the_threshold_and_refuses() {
        let (b, _) = manual(Arc::new(Store::open_in_memory().unwrap()));
        fail(&b, 2);
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
        assert_eq!(b.state(KEY).consecutive_failures, 2);
        fail(&b, 1);
        assert_eq!(b.state(KEY).state, BreakerState::Open);
        let err = b.admit(KEY).unwrap_err();
        assert!(
            matches!(&err, BreakerError::Open { key, retry_in, .. } if key == KEY && *retry_in == Duration::from_millis(1000))
        );
        assert!(err.to_string().contains("circuit open since"), "{err}");
        assert!(err.to_string().contains("main/gpt-4o"), "{err}");
    }

    #[test]
    fn success_resets_the_count() {
        let (b, _) = manual(Arc::new(Store::open_in_memory().unwrap()));
        fail(&b, 2);
        b.admit(KEY).unwrap().finish(CallOutcome::Success);
        fail(&b, 2);
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[test]
    fn half_open_after_open_for_allows_one_probe_and_success_closes() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let (b, now) = manual(Arc::clone(&store));
        fail(&b, 3);
        now.fetch_add(999, Ordering::SeqCst);
        assert!(
            matches!(b.admit(KEY), Err(BreakerError::Open { retry_in, .. }) if retry_in == Duration::from_millis(1))
        );
        now.fetch_add(1, Ordering::SeqCst);
        let probe = b.admit(KEY).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
        // Only one probe at a time.
        assert!(matches!(b.admit(KEY), Err(BreakerError::ProbeInFlight { .. })));
        probe.finish(CallOutcome::Success);
        let r = b.state(KEY);
        assert_eq!((r.state, r.consecutive_failures, r.half_open_probes), (BreakerState::Closed, 0, 0));
        assert!(!b.admit(KEY).unwrap().is_probe());
        let details: Vec<String> = store.events(0).unwrap().into_iter().map(|e| e.detail).collect();
        assert_eq!(details.len(), 3, "{details:?}");
        assert!(details[0].starts_with("closed -> open: 3 consecutive failure(s)"), "{details:?}");
        assert!(details[1].starts_with("open -> half-open"), "{details:?}");
        assert!(details[2].starts_with("half-open -> closed: a probe call succeeded"), "{details:?}");
    }

    #[test]
    fn probe_failure_reopens_for_another_open_for() {
        let (b, now) = manual(Arc::new(Store::open_in_memory().unwrap()));
        fail(&b, 3);
        now.fetch_add(1000, Ordering::SeqCst);
        b.admit(KEY).unwrap().finish(CallOutcome::HealthFailure);
        let r = b.state(KEY);
        assert_eq!(r.state, BreakerState::Open);
        assert_eq!(r.opened_at_ms, Some(now.load(Ordering::SeqCst)));
        assert!(matches!(b.admit(KEY), Err(BreakerError::Open { retry_in, .. }) if retry_in == Duration::from_secs(1)));
    }

    #[test]
    fn several_probes_when_configured() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let now = Arc::new(AtomicI64::new(0));
        let clock = Arc::clone(&now);
        let s = BreakerSettings { half_open_probes: 2, ..settings() };
        let b = Breaker::persistent(s, store).with_clock(move || clock.load(Ordering::SeqCst));
        fail(&b, 3);
        now.store(5000, Ordering::SeqCst);
        let p1 = b.admit(KEY).unwrap();
        let p2 = b.admit(KEY).unwrap();
        assert!(p1.is_probe() && p2.is_probe());
        assert!(b.admit(KEY).is_err());
        // A cancelled probe (dropped permit) frees its slot.
        drop(p2);
        let p3 = b.admit(KEY).unwrap();
        p1.finish(CallOutcome::Success);
        p3.finish(CallOutcome::Success);
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[test]
    fn lost_probe_slot_is_reclaimed_after_open_for() {
        let (b, now) = manual(Arc::new(Store::open_in_memory().unwrap()));
        fail(&b, 3);
        now.fetch_add(1000, Ordering::SeqCst);
        // A probe whose process died: the permit is leaked, never reported.
        std::mem::forget(b.admit(KEY).unwrap());
        assert!(matches!(b.admit(KEY), Err(BreakerError::ProbeInFlight { .. })));
        now.fetch_add(1000, Ordering::SeqCst);
        assert!(b.admit(KEY).unwrap().is_probe());
    }

    #[test]
    fn state_persists_across_two_store_handles_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // "Step 1" opens the breaker with real time.
        let first = Breaker::persistent(settings(), Arc::new(Store::open(&path).unwrap()));
        fail(&first, 3);
        drop(first);
        // "Step 2": a fresh handle on the same file is refused at once.
        let second = Breaker::persistent(settings(), Arc::new(Store::open(&path).unwrap()));
        assert!(matches!(second.admit(KEY), Err(BreakerError::Open { .. })));
        assert_eq!(second.state(KEY).state, BreakerState::Open);
        // Another key is unaffected.
        assert!(second.admit("backup/llama3").is_ok());
    }

    #[test]
    fn real_clock_half_opens_after_open_for_in_ms() {
        let s = BreakerSettings { failure_threshold: 1, open_for: Duration::from_millis(30), half_open_probes: 1 };
        let b = Breaker::persistent(s, Arc::new(Store::open_in_memory().unwrap()));
        b.admit(KEY).unwrap().finish(CallOutcome::HealthFailure);
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit(KEY).unwrap();
        assert!(probe.is_probe());
        probe.finish(CallOutcome::Success);
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[test]
    fn without_a_store_state_is_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let store = Store::open(&blocker.join("state.db")).map(Arc::new);
        let b = Breaker::with_store(settings(), store);
        assert!(b.store().is_none());
        fail(&b, 3);
        assert!(matches!(b.admit(KEY), Err(BreakerError::Open { .. })));
    }

    #[test]
    fn counts_state_changes() {
        let before = super::super::counts().breaker_changes;
        let (b, _) = manual(Arc::new(Store::open_in_memory().unwrap()));
        fail(&b, 3);
        // Other tests run in parallel and may add more; ours added at least one.
        assert!(super::super::counts().breaker_changes > before);
    }
}
