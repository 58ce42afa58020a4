//! AI providers behind one trait. Each adapter turns a [`CompletionRequest`] into one HTTP (or
//! process) call and returns a [`Completion`] with normalized [`Usage`]; retries and timeouts
//! come from [`crate::resilience`], JSON validation and the repair round from [`structured`].
//!
//! `builtin` is not a [`Provider`]: it needs no prompt; its rules scan the parsed diff directly
//! (see [`builtin::scan`]). Selecting `kind: builtin` in config means "no model call".

pub mod anthropic;
pub mod azure;
pub mod builtin;
pub mod command;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod process_group;
pub mod select;
pub mod structured;

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

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
}

/// Token usage of one call, normalized across providers. All counts are tokens.
///
/// `input_tokens` excludes cached reads and cache writes so that the classes add up to what
/// was billed: OpenAI's `prompt_tokens` = `input_tokens + cached_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`).
    pub cache_write_tokens: u64,
    /// Output tokens, including reasoning tokens.
    pub output_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens` where the provider reports them).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// All input classes together (tokens).
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cached_input_tokens + self.cache_write_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
    }
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
}

/// Errors of a provider call, classified for retry decisions and exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 401/403: the key was missing or refused. `env` names the variable that was read.
    #[error("{provider}: authentication failed ({status}) using the key from `{env}`: {message}\nhelp: check that `{env}` holds a valid key for this provider")]
    Auth { provider: String, status: u16, env: String, message: String },
    /// Billing or quota exhausted (OpenAI `insufficient_quota`): never retried.
    #[error("{provider}: quota or billing limit reached: {message}\nhelp: check the account's plan and billing; retrying will not help")]
    Quota { provider: String, message: String },
    /// 429 or 5xx after retries were exhausted, or a wait longer than the cap was asked.
    #[error("{provider}: rate limited or unavailable after {attempts} attempt(s) (last status {status}): {message}")]
    Unavailable { provider: String, status: u16, attempts: u32, message: String },
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
        matches!(self, ProviderError::Auth { .. })
    }
}

/// A model provider. Implementations hold their HTTP client, endpoint, model and key.
pub trait Provider: Send + Sync {
    /// The config entry name (e.g. `main`), for logs and the summary.
    fn name(&self) -> &str;
    /// The model asked for.
    fn model(&self) -> &str;
    /// One completion, with retries per the provider's policy.
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>>;
}
