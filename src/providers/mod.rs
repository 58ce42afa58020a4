//! AI providers behind one trait. Each adapter turns a [`CompletionRequest`] into one HTTP (or
//! process) call and returns a [`Completion`] with normalized [`Usage`]; retries and timeouts
//! come from [`crate::resilience`], JSON validation and the repair round from [`structured`].
//!
//! `builtin` is not a [`Provider`]: it needs no prompt; its rules scan the parsed diff directly
//! (see [`builtin::scan`]). Selecting `kind: builtin` in config means "no model call".

pub mod anthropic;
pub mod azure;
pub(crate) mod bedrock;
pub mod builtin;
pub mod chain;
pub mod command;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod select;
pub mod structured;
pub(crate) mod vertex;

use std::time::Duration;

use futures::future::BoxFuture;

pub use crate::usage::Usage;

use crate::resilience::CallOutcome;

/// One request to a model.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    /// System prompt (instructions we write; never untrusted text).
    pub system: String,
    /// User prompt (may hold untrusted text: the diff, PR body), already redacted.
    pub prompt: String,
    /// When set, the answer must be JSON valid against this schema; adapters ask for it in
    /// their native mode (OpenAI `response_format: json_schema`, ...). `(name, schema)`.
    pub json_schema: Option<(String, serde_json::Value)>,
    /// Cap on output tokens.
    pub max_output_tokens: u32,
    /// Sampling temperature; `None` leaves the provider default.
    pub temperature: Option<f32>,
    /// Provider prompt caching of what every request of the run shares (`review.prompt_cache:
    /// auto`); `None` sends no markers.
    pub prompt_cache: Option<PromptCache>,
}

/// What an adapter needs to mark the shared prefix of a request for the provider's prompt
/// cache (issue #20): Anthropic `cache_control` breakpoints
/// (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching>), OpenAI's
/// `prompt_cache_key` (<https://platform.openai.com/docs/guides/prompt-caching>). Adapters
/// without either ignore it; their providers cache a byte-identical prefix on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptCache {
    /// The leading part of [`CompletionRequest::prompt`] that every request of the run shares
    /// (the PR header and the instruction line); redacted with the prompt. An adapter that
    /// finds the prompt not starting with it marks the system prompt only.
    pub prefix: String,
    /// Anthropic `cache_control.ttl: "1h"` instead of the default five minutes.
    pub one_hour: bool,
    /// A stable key of the shared prefix (hex), sent as OpenAI's `prompt_cache_key`.
    pub key: String,
}

/// One model answer.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The answer's text (for JSON mode, the raw JSON text).
    pub text: String,
    pub usage: Usage,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// Wall time of the successful attempt.
    pub latency: Duration,
    /// The provider's request id (`x-request-id`, `request-id`, response `id`), for support.
    pub request_id: Option<String>,
    /// Why the model stopped, as the provider words it (OpenAI `finish_reason`, Anthropic
    /// `stop_reason`, Gemini `finishReason`); `None` when it says nothing (agent CLIs).
    pub finish_reason: Option<String>,
    /// Cost in USD as the provider itself reported it (`claude -p --output-format json`'s
    /// `total_cost_usd`); `None` when it reports none (every HTTP API). When set, the ledger
    /// records it instead of tokens × the price table.
    pub reported_cost_usd: Option<f64>,
}

/// Errors of a provider call, classified for retry decisions and exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 401/403: the key was missing or refused. `env` names the variable that was read.
    #[error("{provider}: authentication failed ({status}) using the key from `{env}`: {message}\nhelp: check that `{env}` holds a valid key for this provider")]
    Auth { provider: String, status: u16, env: String, message: String },
    /// A cloud provider refused the credentials, or they could not be obtained (`status` 0): an
    /// AWS identity without access to the model, a GitHub OIDC token the role's trust policy
    /// does not accept, a Google token exchange refused. `help` says what to check (the role,
    /// its trust policy, the credentials file), never a credential.
    #[error("{provider}: access denied{}: {message}\nhelp: {help}", status_note(*status))]
    Denied { provider: String, status: u16, message: String, help: String },
    /// Billing or quota exhausted (OpenAI `insufficient_quota`): never retried.
    #[error("{provider}: quota or billing limit reached: {message}\nhelp: check the account's plan and billing; retrying will not help")]
    Quota { provider: String, message: String },
    /// 429 or 5xx after retries were exhausted, or a wait longer than the cap was asked.
    #[error("{provider}: rate limited or unavailable after {attempts} attempt(s) (last status {status}): {message}")]
    Unavailable { provider: String, status: u16, attempts: u32, message: String },
    /// Every provider of the chain was refused by its open circuit breaker: no request was sent.
    #[error("{provider}: no request sent: {message}\nhelp: the provider failed repeatedly in earlier calls; the breaker lets a probe through when its open time is over (`breaker.open_for`)")]
    CircuitOpen { provider: String, message: String },
    /// Other 4xx: the request itself was refused (never retried).
    #[error("{provider}: request refused ({status}): {message}")]
    Rejected { provider: String, status: u16, message: String },
    /// Connection error or timeout after retries.
    #[error("{provider}: network error after {attempts} attempt(s): {message}")]
    Network { provider: String, attempts: u32, message: String },
    /// The provider's safety system blocked the prompt or the answer (Gemini `blockReason`,
    /// `finishReason: SAFETY`): never retried, since the same input trips it again. `reason` is
    /// the provider's verdict, e.g. `prompt blocked: SAFETY`.
    #[error("{provider}: blocked by the provider's safety filters: {reason}\nhelp: the prompt (diff, PR text) or the answer tripped a safety block; retrying the same input will not help")]
    Blocked { provider: String, reason: String },
    /// The answer could not be used (not JSON, schema violations after the repair round).
    #[error("{provider}: unusable answer: {message}")]
    BadAnswer { provider: String, message: String },
    /// The provider is not configured correctly (missing key variable, bad URL).
    #[error("{provider}: {message}")]
    Config { provider: String, message: String },
}

impl ProviderError {
    /// Whether the process should exit with the auth code (4).
    pub fn is_auth(&self) -> bool {
        matches!(self, ProviderError::Auth { .. } | ProviderError::Denied { .. })
    }

    /// Whether the error ends the whole run rather than one request: refused credentials and
    /// config errors (a Bedrock `ValidationException`, a missing setting) fail every request
    /// alike, so the run stops at the first with the error's own exit code.
    pub fn ends_run(&self) -> bool {
        self.is_auth() || matches!(self, ProviderError::Config { .. })
    }

    /// The exit code: a provider refusing the key [`Exit::Auth`](crate::exit::Exit::Auth) (4), a
    /// provider config error `Usage` (2), anything else `Failure` (1).
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            e if e.is_auth() => Exit::Auth,
            ProviderError::Config { .. } => Exit::Usage,
            _ => Exit::Failure,
        }
    }

    /// Whether the error counts against the provider's health for its circuit breaker:
    /// `Unavailable` and `Network` only (`Quota`, `Auth`, `Rejected`, `BadAnswer` and `Config`
    /// point at our account or request, not at the provider being down).
    pub fn is_health_failure(&self) -> bool {
        matches!(self, ProviderError::Unavailable { .. } | ProviderError::Network { .. })
    }

    /// The ledger's `outcome` for a failed call: `auth`, `quota`, `unavailable`, `rejected`,
    /// `network`, `bad-answer`, `config` or `blocked`.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::Auth { .. } | ProviderError::Denied { .. } => "auth",
            ProviderError::Quota { .. } => "quota",
            ProviderError::Unavailable { .. } => "unavailable",
            ProviderError::CircuitOpen { .. } => "circuit-open",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::Network { .. } => "network",
            ProviderError::BadAnswer { .. } => "bad-answer",
            ProviderError::Config { .. } => "config",
            ProviderError::Blocked { .. } => "blocked",
        }
    }
}

/// ` (403)` after "access denied", or nothing when no request got an answer (status 0).
fn status_note(status: u16) -> String {
    if status == 0 {
        String::new()
    } else {
        format!(" ({status})")
    }
}

/// What a provider result means for its circuit breaker.
pub fn call_outcome<T>(result: &Result<T, ProviderError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Success,
        Err(e) if e.is_health_failure() => CallOutcome::HealthFailure,
        Err(_) => CallOutcome::Neutral,
    }
}

/// `gen_ai.provider.name` of the OpenTelemetry GenAI conventions
/// (<https://opentelemetry.io/docs/specs/semconv/registry/attributes/gen-ai/>) for a
/// `providers:` kind: `openai` (any OpenAI-compatible server too), `anthropic`,
/// `azure.ai.openai`, `gcp.gemini`, `aws.bedrock`, `gcp.vertex_ai` (Gemini and Claude there
/// alike); `_OTHER` for agent CLIs and the built-in rules. The one table adapters and the
/// ledger's telemetry backfill read.
pub fn gen_ai_provider_name(kind: &crate::config::ProviderKind) -> &'static str {
    use crate::config::ProviderKind as K;
    match kind {
        K::Openai => "openai",
        K::Anthropic => "anthropic",
        K::AzureOpenai => "azure.ai.openai",
        K::Gemini => "gcp.gemini",
        K::Bedrock => "aws.bedrock",
        K::Vertex => "gcp.vertex_ai",
        K::Command | K::Builtin => "_OTHER",
    }
}

/// [`gen_ai_provider_name`] of every `providers:` entry of `config`, by entry name (what the
/// ledger records), for the telemetry backfill.
pub fn gen_ai_provider_names(config: &crate::config::Config) -> std::collections::BTreeMap<String, &'static str> {
    config.providers.iter().map(|(name, entry)| (name.clone(), gen_ai_provider_name(&entry.kind))).collect()
}

/// A model provider. Implementations hold their HTTP client, endpoint, model and key.
pub trait Provider: Send + Sync {
    /// The config entry name (e.g. `main`), for logs and the summary.
    fn name(&self) -> &str;
    /// The model asked for.
    fn model(&self) -> &str;
    /// One completion, with retries per the provider's policy.
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>>;
    /// `gen_ai.provider.name` of the OpenTelemetry GenAI conventions (`openai`, `anthropic`,
    /// `azure.ai.openai`, `gcp.gemini`); `_OTHER` when none fits.
    fn gen_ai_provider(&self) -> &'static str {
        "_OTHER"
    }
    /// `gen_ai.operation.name` of one request: `chat`, or `invoke_agent` for an agent CLI.
    fn gen_ai_operation(&self) -> &'static str {
        "chat"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use crate::resilience::{Breaker, BreakerSettings, BreakerState};
    use crate::store::Store;

    const KEY: &str = "main/gpt-4o";

    fn unavailable() -> ProviderError {
        ProviderError::Unavailable { provider: "main".into(), status: 503, attempts: 4, message: "down".into() }
    }

    /// Which provider errors count against a circuit breaker (moved from the breaker's tests,
    /// which know no provider).
    #[test]
    fn non_health_errors_do_not_count() {
        let settings =
            BreakerSettings { failure_threshold: 3, open_for: Duration::from_millis(1000), half_open_probes: 1 };
        // A hand-driven clock, as in the breaker's own tests.
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock = Arc::clone(&now);
        let b = Breaker::persistent(settings, Arc::new(Store::open_in_memory().unwrap()))
            .with_clock(move || clock.load(Ordering::SeqCst));
        let p = || "main".to_owned();
        let neutral = || {
            vec![
                ProviderError::Auth { provider: p(), status: 401, env: "K".into(), message: String::new() },
                ProviderError::Quota { provider: p(), message: String::new() },
                ProviderError::Rejected { provider: p(), status: 400, message: String::new() },
                ProviderError::BadAnswer { provider: p(), message: String::new() },
                ProviderError::Config { provider: p(), message: String::new() },
            ]
        };
        for _ in 0..5 {
            for e in neutral() {
                assert!(!e.is_health_failure(), "{e:?}");
                b.admit(KEY).unwrap().finish(call_outcome::<()>(&Err(e)));
            }
        }
        let r = b.state(KEY);
        assert_eq!((r.state, r.consecutive_failures), (BreakerState::Closed, 0));
        let network = ProviderError::Network { provider: p(), attempts: 1, message: String::new() };
        assert!(network.is_health_failure() && unavailable().is_health_failure());
        assert_eq!(call_outcome::<()>(&Err(unavailable())), CallOutcome::HealthFailure);
    }
}
