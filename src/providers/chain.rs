//! The fallback chain: a [`Provider`] that tries a primary provider and then its fallbacks (from
//! config: `fallback: [name, ...]` on the primary's entry), each behind its circuit breaker,
//! within one total deadline.
//!
//! Per call, in order: a provider whose breaker refuses is skipped; otherwise it is called (its
//! own retries happen inside it) and the outcome goes to its breaker. An answer ends the call. A
//! failure that a different provider could get past — `Unavailable`, `Network` (health) or
//! `Quota` (this account is out of budget, another may not be) — moves on to the next one.
//! `Auth`, `Rejected`, `BadAnswer` and `Config` end the call at once: they point at our setup
//! or request, and another model would mostly hide the mistake or double the cost. Every skip
//! and move is a warning, an `events` row (kind `fallback`) and a count in
//! [`resilience::counts`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::log;
use crate::providers::{call_outcome, Completion, CompletionRequest, Provider, ProviderError};
use crate::redact::Redactor;
use crate::resilience::{self, Breaker};
use crate::telemetry;
use crate::usage::pricing::PriceTable;
use opentelemetry::KeyValue;

/// Which link of the chain answered a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredBy {
    /// Provider entry name.
    pub provider: String,
    /// The model the provider was asked for (the [`Completion::model`] is what it reported).
    pub model: String,
    /// Place in the chain: 0 for the primary, 1 for the first fallback, ...
    pub position: usize,
}

/// A provider with a fallback chain, circuit breakers and a total deadline. Build it from the
/// resolved config entries:
///
/// ```ignore
/// let store = store::open_configured(&env, config.state.as_deref());
/// let breaker = Arc::new(Breaker::with_store(settings, store));
/// let chain = Resilient::new(primary, fallbacks, breaker).with_total_timeout(Some(timeout));
/// let (answer, by) = chain.complete_traced(&request).await?;
/// ```
pub struct Resilient {
    /// Primary first, then the fallbacks in config order; never empty.
    chain: Vec<Arc<dyn Provider>>,
    breaker: Arc<Breaker>,
    total_timeout: Option<Duration>,
    last: Mutex<Option<AnsweredBy>>,
    /// Scrubs every request before it leaves: the one door all model traffic goes through.
    redactor: Redactor,
    /// Prices the cost on each request's telemetry span.
    prices: PriceTable,
}

impl fmt::Debug for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.chain.iter().map(|p| key_of(p.as_ref())).collect();
        f.debug_struct("Resilient")
            .field("chain", &keys)
            .field("breaker", &self.breaker)
            .field("total_timeout", &self.total_timeout)
            .finish_non_exhaustive()
    }
}

/// The breaker key of a provider: `name/model`.
fn key_of(p: &dyn Provider) -> String {
    Breaker::key(p.name(), p.model())
}

/// Whether the chain should try the next provider after `e`.
fn moves_on(e: &ProviderError) -> bool {
    e.is_health_failure() || matches!(e, ProviderError::Quota { .. })
}

impl Resilient {
    /// A chain of `primary` then `fallbacks` (in order), sharing `breaker`. No total deadline.
    pub fn new(primary: Arc<dyn Provider>, fallbacks: Vec<Arc<dyn Provider>>, breaker: Arc<Breaker>) -> Self {
        let mut chain = Vec::with_capacity(1 + fallbacks.len());
        chain.push(primary);
        chain.extend(fallbacks);
        Self {
            chain,
            breaker,
            total_timeout: None,
            last: Mutex::new(None),
            redactor: Redactor::new(),
            prices: PriceTable::bundled(),
        }
    }

    /// Sets the price table the cost on each request's span is priced by (the run's, with the
    /// config's `pricing:`); the bundled table without it.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Sets the redactor every request passes through (system and user prompt, including a
    /// repair prompt that quotes the model's previous answer). Without one, the token patterns
    /// of [`Redactor::new`] still apply.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Sets the deadline for one whole call, across retries and fallbacks. When it passes, the
    /// call in flight is dropped (its breaker counts nothing: a short deadline is ours, not the
    /// provider's fault) and the call fails with [`ProviderError::Network`].
    pub fn with_total_timeout(mut self, total_timeout: Option<Duration>) -> Self {
        self.total_timeout = total_timeout;
        self
    }

    /// The breakers (and through them, the store) this chain uses.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Who answered the most recent successful call of this chain (the last to finish, when
    /// calls run concurrently; use [`Resilient::complete_traced`] to know per call).
    pub fn last_answered_by(&self) -> Option<AnsweredBy> {
        self.last.lock().ok().and_then(|last| last.clone())
    }

    /// One completion through the chain, with the link that answered.
    ///
    /// Errors: the first error that does not move on (see the module docs); when every provider
    /// failed or was skipped, the last provider error, or a `CircuitOpen` listing the refusals
    /// when no provider could be called at all; a `Network` error when the total deadline passed.
    pub async fn complete_traced(&self, req: &CompletionRequest) -> Result<(Completion, AnsweredBy), ProviderError> {
        // Redaction happens here, not in the commands, so that no caller can skip it.
        let req = &CompletionRequest {
            system: self.redactor.redact(&req.system),
            prompt: self.redactor.redact(&req.prompt),
            // The same text redacted the same way, so it stays the prompt's prefix.
            prompt_cache: req
                .prompt_cache
                .as_ref()
                .map(|c| crate::providers::PromptCache { prefix: self.redactor.redact(&c.prefix), ..c.clone() }),
            ..req.clone()
        };
        // The key of the call in flight, so a deadline error can name it.
        let in_flight: Mutex<Option<String>> = Mutex::new(None);
        let run = self.run_chain(req, &in_flight);
        let result = match self.total_timeout {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) => Err(self.deadline_error(limit, &in_flight)),
            },
        };
        if let Ok((_, by)) = &result {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(by.clone());
            }
        }
        result
    }

    async fn run_chain(
        &self,
        req: &CompletionRequest,
        in_flight: &Mutex<Option<String>>,
    ) -> Result<(Completion, AnsweredBy), ProviderError> {
        let mut last_error = None;
        let mut refusals = Vec::new();
        for (position, provider) in self.chain.iter().enumerate() {
            let key = key_of(provider.as_ref());
            let next = self.chain.get(position + 1).map(|p| key_of(p.as_ref()));
            let permit = match self.breaker.admit(&key) {
                Ok(permit) => permit,
                Err(refused) => {
                    self.moved_on(&key, &refused.to_string(), next.as_deref());
                    refusals.push(refused.to_string());
                    continue;
                }
            };
            if let Ok(mut slot) = in_flight.lock() {
                *slot = Some(key.clone());
            }
            let (operation, gen_ai_provider) = (provider.gen_ai_operation(), provider.gen_ai_provider());
            let mut span = telemetry::model_span(operation, gen_ai_provider, provider.name(), provider.model());
            if telemetry::capture_content() {
                // `req` is already redacted; only with `telemetry.capture_content: true`.
                span.set([
                    KeyValue::new("gen_ai.system_instructions", req.system.clone()),
                    KeyValue::new("gen_ai.input.messages", req.prompt.clone()),
                ]);
            }
            let started = std::time::Instant::now();
            let (result, retries) = telemetry::observe_retries(provider.complete(req)).await;
            for (attempt, status, wait) in retries {
                let mut attributes = vec![
                    KeyValue::new("agentctl.retry.attempt", i64::from(attempt)),
                    KeyValue::new("agentctl.retry.wait_s", wait.as_secs_f64()),
                ];
                attributes.extend(status.map(|s| KeyValue::new("http.response.status_code", i64::from(s))));
                span.event("retry", attributes);
            }
            permit.finish(call_outcome(&result));
            match &result {
                Ok(c) => {
                    if telemetry::capture_content() {
                        span.set([KeyValue::new("gen_ai.output.messages", self.redactor.redact(&c.text))]);
                    }
                    self.record_answer(&mut span, provider.as_ref(), c, started.elapsed());
                }
                Err(e) if moves_on(e) && next.is_some() => {
                    span.event(
                        "fallback",
                        vec![KeyValue::new("agentctl.fallback.to", next.clone().unwrap_or_default())],
                    );
                }
                Err(_) => {}
            }
            span.end_with(result.as_ref().err().map(|e| e.class()));
            match result {
                Ok(completion) => {
                    if position > 0 {
                        log::info(&format!("answered by fallback `{key}` (model {})", completion.model));
                    }
                    let by = AnsweredBy {
                        provider: provider.name().to_owned(),
                        model: provider.model().to_owned(),
                        position,
                    };
                    return Ok((completion, by));
                }
                Err(e) if moves_on(&e) => {
                    self.moved_on(&key, &e.to_string(), next.as_deref());
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            let primary = self.chain.first().map(|p| p.name().to_owned()).unwrap_or_default();
            ProviderError::CircuitOpen { provider: primary, message: refusals.join("; ") }
        }))
    }

    /// Records a provider's answer on its telemetry span and in the metrics, priced by the
    /// run's table (or the cost the provider reported).
    fn record_answer(&self, span: &mut telemetry::Span, provider: &dyn Provider, c: &Completion, took: Duration) {
        telemetry::answered(
            span,
            &telemetry::Answer {
                operation: provider.gen_ai_operation(),
                provider: provider.gen_ai_provider(),
                request_model: provider.model(),
                response_model: &c.model,
                response_id: c.request_id.as_deref(),
                finish_reason: c.finish_reason.as_deref(),
                usage: &c.usage,
                cost_usd: c.reported_cost_usd.or_else(|| self.prices.cost_usd(&c.model, &c.usage)),
                duration: took,
            },
        );
    }

    /// Reports leaving `key` (skipped or failed with `why`) for `next`, if any. Only the first
    /// line of `why` is kept: a `help:` line is for the final error, not every hop.
    fn moved_on(&self, key: &str, why: &str, next: Option<&str>) {
        let why = why.lines().next().unwrap_or_default();
        let detail = match next {
            Some(next) => format!("{why}; falling back to `{next}`"),
            None => format!("{why}; no fallback left"),
        };
        log::warn(&format!("provider `{key}`: {detail}"));
        self.breaker.record_event("fallback", key, &detail);
        if next.is_some() {
            resilience::count_fallback();
        }
    }

    fn deadline_error(&self, limit: Duration, in_flight: &Mutex<Option<String>>) -> ProviderError {
        let key = in_flight.lock().ok().and_then(|k| k.clone());
        let primary = self.chain.first().map(|p| p.name().to_owned()).unwrap_or_default();
        let during = key.as_deref().map(|k| format!(" (waiting on `{k}`)")).unwrap_or_default();
        let message = format!("no answer within the total deadline of {}{during}", resilience::human(limit));
        log::warn(&format!("provider `{primary}`: {message}"));
        self.breaker.record_event("deadline", key.as_deref().unwrap_or(&primary), &message);
        ProviderError::Network { provider: primary, attempts: 1, message }
    }
}

impl Provider for Resilient {
    /// The primary's entry name.
    fn name(&self) -> &str {
        self.chain.first().map_or("", |p| p.name())
    }

    /// The primary's model; the [`Completion::model`] says which model really answered.
    fn model(&self) -> &str {
        self.chain.first().map_or("", |p| p.model())
    }

    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move { self.complete_traced(req).await.map(|(completion, _)| completion) })
    }
}

/// One logical request through a [`Resilient`] chain — a first call and any repair round of
/// [`super::structured::complete_json`] — keeping every answered call: which link answered
/// (a fallback when the primary was skipped or failed) and what it cost in tokens. A caller
/// records each of them in the ledger even when the request as a whole fails (a repair round
/// that still breaks the schema was billed all the same), and names the link that answered
/// last as the origin of the result; several requests may share the chain concurrently.
pub struct Traced<'a> {
    chain: &'a Resilient,
    calls: Mutex<Vec<TracedCall>>,
}

/// One answered call seen by [`Traced`].
#[derive(Debug, Clone)]
pub struct TracedCall {
    /// The link of the chain that answered.
    pub by: AnsweredBy,
    /// The model as the provider reported it ([`Completion::model`]).
    pub model: String,
    /// Tokens of the call.
    pub usage: crate::usage::Usage,
    /// Wall time of the answered attempt.
    pub latency: Duration,
    /// Cost in USD the provider reported ([`Completion::reported_cost_usd`]).
    pub reported_cost_usd: Option<f64>,
}

impl TracedCall {
    /// The ledger's view of this answered call (outcome `ok`): every answered call was billed,
    /// whatever became of the request.
    pub fn ledger_call(&self) -> crate::ledger::Call<'_> {
        crate::ledger::Call {
            provider: &self.by.provider,
            model: &self.model,
            asked_model: &self.by.model,
            usage: self.usage,
            latency: self.latency,
            outcome: "ok",
            reported_cost_usd: self.reported_cost_usd,
        }
    }
}

impl<'a> Traced<'a> {
    /// A tracer over `chain` that has seen no call yet.
    pub fn new(chain: &'a Resilient) -> Self {
        Self { chain, calls: Mutex::new(Vec::new()) }
    }

    /// Every answered call, in order; the last one's link is the result's origin.
    pub fn into_calls(self) -> Vec<TracedCall> {
        self.calls.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Provider for Traced<'_> {
    fn name(&self) -> &str {
        self.chain.name()
    }

    fn model(&self) -> &str {
        self.chain.model()
    }

    fn complete<'b>(&'b self, req: &'b CompletionRequest) -> BoxFuture<'b, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let (completion, by) = self.chain.complete_traced(req).await?;
            let call = TracedCall {
                by,
                model: completion.model.clone(),
                usage: completion.usage,
                latency: completion.latency,
                reported_cost_usd: completion.reported_cost_usd,
            };
            self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(call);
            Ok(completion)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::providers::Usage;
    use crate::resilience::{BreakerSettings, BreakerState, CallOutcome};
    use crate::store::Store;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// What a scripted call does.
    enum Step {
        Answer,
        Fail(fn(&str) -> ProviderError),
        Sleep(Duration),
    }

    /// A provider that plays a script (then answers once the script runs out) and counts calls.
    struct Fake {
        name: String,
        model: String,
        script: Mutex<VecDeque<Step>>,
        calls: AtomicU32,
    }

    impl Fake {
        fn new(name: &str, script: Vec<Step>) -> Arc<Self> {
            Arc::new(Self {
                name: name.into(),
                model: format!("{name}-model"),
                script: Mutex::new(script.into()),
                calls: AtomicU32::new(0),
            })
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Provider for Fake {
        fn name(&self) -> &str {
            &self.name
        }

        fn model(&self) -> &str {
            &self.model
        }

        fn complete<'a>(&'a self, _req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let step = self.script.lock().unwrap().pop_front().unwrap_or(Step::Answer);
            Box::pin(async move {
                match step {
                    Step::Answer => Ok(Completion {
                        text: format!("answer from {}", self.name),
                        usage: Usage::default(),
                        model: self.model.clone(),
                        latency: Duration::from_millis(1),
                        request_id: None,
                        finish_reason: None,
                        reported_cost_usd: None,
                    }),
                    Step::Fail(make) => Err(make(&self.name)),
                    Step::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        Ok(Completion {
                            text: "late".into(),
                            usage: Usage::default(),
                            model: self.model.clone(),
                            latency: d,
                            request_id: None,
                            finish_reason: None,
                            reported_cost_usd: None,
                        })
                    }
                }
            })
        }
    }

    fn unavailable(p: &str) -> ProviderError {
        ProviderError::Unavailable { provider: p.into(), status: 503, attempts: 4, message: "overloaded".into() }
    }

    fn network(p: &str) -> ProviderError {
        ProviderError::Network { provider: p.into(), attempts: 4, message: "connection reset".into() }
    }

    fn quota(p: &str) -> ProviderError {
        ProviderError::Quota { provider: p.into(), message: "insufficient_quota".into() }
    }

    fn rejected(p: &str) -> ProviderError {
        ProviderError::Rejected { provider: p.into(), status: 400, message: "bad request".into() }
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: "s".into(),
            prompt: "p".into(),
            json_schema: None,
            max_output_tokens: 10,
            temperature: None,
            prompt_cache: None,
        }
    }

    fn breaker(store: &Arc<Store>, threshold: u32) -> Arc<Breaker> {
        let settings =
            BreakerSettings { failure_threshold: threshold, open_for: Duration::from_secs(60), half_open_probes: 1 };
        Arc::new(Breaker::persistent(settings, Arc::clone(store)))
    }

    fn chain(primary: &Arc<Fake>, fallbacks: &[&Arc<Fake>], breaker: Arc<Breaker>) -> Resilient {
        let fallbacks = fallbacks.iter().map(|f| Arc::clone(*f) as Arc<dyn Provider>).collect();
        Resilient::new(Arc::clone(primary) as Arc<dyn Provider>, fallbacks, breaker)
    }

    fn kinds(store: &Store) -> Vec<(String, String)> {
        store.events(0).unwrap().into_iter().map(|e| (e.kind, e.subject)).collect()
    }

    #[tokio::test]
    async fn primary_open_skips_to_secondary_without_calling_it() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let b = breaker(&store, 1);
        b.admit("main/main-model").unwrap().finish(CallOutcome::HealthFailure);
        let main = Fake::new("main", vec![]);
        let backup = Fake::new("backup", vec![]);
        let r = chain(&main, &[&backup], b);
        let before = crate::resilience::counts().fallbacks;
        let (answer, by) = r.complete_traced(&request()).await.unwrap();
        assert_eq!(answer.text, "answer from backup");
        assert_eq!(answer.model, "backup-model");
        assert_eq!(by, AnsweredBy { provider: "backup".into(), model: "backup-model".into(), position: 1 });
        assert_eq!(r.last_answered_by(), Some(by));
        assert_eq!(main.calls(), 0);
        assert!(kinds(&store).contains(&("fallback".into(), "main/main-model".into())), "{:?}", kinds(&store));
        let fallback = store.events(0).unwrap().into_iter().find(|e| e.kind == "fallback").unwrap();
        assert!(
            fallback.detail.contains("is open") && fallback.detail.contains("`backup/backup-model`"),
            "{fallback:?}"
        );
        assert!(crate::resilience::counts().fallbacks > before);
    }

    #[tokio::test]
    async fn unavailable_primary_falls_back_and_counts_against_its_breaker() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let b = breaker(&store, 2);
        let main = Fake::new("main", vec![Step::Fail(unavailable), Step::Fail(network)]);
        let backup = Fake::new("backup", vec![]);
        let r = chain(&main, &[&backup], Arc::clone(&b));
        let answer = r.complete(&request()).await.unwrap();
        assert_eq!(answer.model, "backup-model");
        assert_eq!(b.state("main/main-model").consecutive_failures, 1);
        assert_eq!(b.state("main/main-model").state, BreakerState::Closed);
        // The second health failure reaches the threshold: open, and the next call skips main.
        r.complete(&request()).await.unwrap();
        assert_eq!(b.state("main/main-model").state, BreakerState::Open);
        r.complete(&request()).await.unwrap();
        assert_eq!((main.calls(), backup.calls()), (2, 3));
        assert!(kinds(&store).contains(&("breaker".into(), "main/main-model".into())));
        assert_eq!(
            crate::resilience::BreakerRecord::load(&store, "main/main-model").unwrap().unwrap().state,
            BreakerState::Open
        );
    }

    #[tokio::test]
    async fn quota_moves_on_but_rejected_stops_and_neither_counts() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let b = breaker(&store, 1);
        let main = Fake::new("main", vec![Step::Fail(quota), Step::Fail(rejected)]);
        let backup = Fake::new("backup", vec![]);
        let r = chain(&main, &[&backup], Arc::clone(&b));
        assert_eq!(r.complete(&request()).await.unwrap().model, "backup-model");
        let err = r.complete(&request()).await.unwrap_err();
        assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
        assert_eq!(backup.calls(), 1);
        assert_eq!(b.state("main/main-model").state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn all_failing_returns_the_last_error() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let main = Fake::new("main", vec![Step::Fail(unavailable)]);
        let backup = Fake::new("backup", vec![Step::Fail(network)]);
        let r = chain(&main, &[&backup], breaker(&store, 5));
        let err = r.complete(&request()).await.unwrap_err();
        assert!(matches!(&err, ProviderError::Network { provider, .. } if provider == "backup"), "{err:?}");
        assert_eq!(r.last_answered_by(), None);
        let fallbacks = store.events(0).unwrap().into_iter().filter(|e| e.kind == "fallback").count();
        assert_eq!(fallbacks, 2);
    }

    #[tokio::test]
    async fn a_breaker_refusal_said_last_status_503_instead_of_circuit_open() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let b = breaker(&store, 1);
        b.admit("main/main-model").unwrap().finish(CallOutcome::HealthFailure);
        b.admit("backup/backup-model").unwrap().finish(CallOutcome::HealthFailure);
        let main = Fake::new("main", vec![]);
        let backup = Fake::new("backup", vec![]);
        let err = chain(&main, &[&backup], b).complete(&request()).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProviderError::CircuitOpen { .. }), "{text}");
        assert!(text.contains("main/main-model") && text.contains("backup/backup-model"), "{text}");
        assert!(text.contains("circuit open since") && !text.contains("last status"), "{text}");
        assert_eq!(main.calls() + backup.calls(), 0);
    }

    // Paused time: the 30 s sleep and the 50 ms deadline race on the runtime's clock alone.
    #[tokio::test(start_paused = true)]
    async fn total_deadline_fires_on_a_sleeping_provider() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let b = breaker(&store, 1);
        let main = Fake::new("main", vec![Step::Sleep(Duration::from_secs(30))]);
        let r = chain(&main, &[], Arc::clone(&b)).with_total_timeout(Some(Duration::from_millis(50)));
        let started = tokio::time::Instant::now();
        let err = r.complete(&request()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(50), "the deadline, not the provider's 30 s");
        let text = err.to_string();
        assert!(matches!(err, ProviderError::Network { .. }), "{text}");
        assert!(text.contains("total deadline") && text.contains("main/main-model"), "{text}");
        // Our deadline is not the provider's fault: the breaker did not count it.
        assert_eq!(b.state("main/main-model").consecutive_failures, 0);
        assert!(kinds(&store).contains(&("deadline".into(), "main/main-model".into())));
    }

    #[tokio::test]
    async fn half_open_probe_cancelled_by_the_deadline_frees_its_slot() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let settings =
            BreakerSettings { failure_threshold: 1, open_for: Duration::from_millis(1), half_open_probes: 1 };
        let b = Arc::new(Breaker::persistent(settings, Arc::clone(&store)));
        b.admit("main/main-model").unwrap().finish(CallOutcome::HealthFailure);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let main = Fake::new("main", vec![Step::Sleep(Duration::from_secs(30))]);
        let r = chain(&main, &[], Arc::clone(&b)).with_total_timeout(Some(Duration::from_millis(20)));
        r.complete(&request()).await.unwrap_err();
        let rec = b.state("main/main-model");
        assert_eq!((rec.state, rec.half_open_probes), (BreakerState::HalfOpen, 0));
        // The next call may probe at once, and its success closes the breaker.
        assert_eq!(r.complete(&request()).await.unwrap().model, "main-model");
        assert_eq!(b.state("main/main-model").state, BreakerState::Closed);
    }
}
