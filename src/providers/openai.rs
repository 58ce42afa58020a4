//! OpenAI Chat Completions adapter (`POST {base_url}/chat/completions`), which also serves any
//! OpenAI-compatible server through `base_url`: Ollama (`http://localhost:11434/v1`), vLLM,
//! llama.cpp, OpenRouter, Groq.
//!
//! Source: <https://platform.openai.com/docs/api-reference/chat/create>. Structured output uses
//! `response_format: {type: json_schema, json_schema: {name, schema, strict}}`; a server that
//! rejects it with 400 is asked again with `{type: json_object}` and then plain text.

use secrecy::SecretString;

use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};
use crate::resilience::RetryPolicy;
use futures::future::BoxFuture;

/// Settings of one OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// Config entry name, for messages.
    pub name: String,
    pub model: String,
    /// API root including `/v1`, without a trailing slash.
    pub base_url: String,
    /// `None` for local servers that need no key.
    pub api_key: Option<SecretString>,
    /// The env var the key was read from, named in auth errors.
    pub api_key_env: String,
    /// Per-attempt timeout.
    pub timeout: std::time::Duration,
    pub retry: RetryPolicy,
}

/// The adapter.
pub struct OpenAi {
    // private fields chosen by the implementation (settings, reqwest::Client)
}

impl OpenAi {
    /// Builds the client. Fails only when the HTTP client cannot be built.
    pub fn new(settings: OpenAiSettings) -> Result<Self, ProviderError> {
        let _ = settings;
        todo!()
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &str {
        todo!()
    }
    fn model(&self) -> &str {
        todo!()
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        let _ = req;
        todo!()
    }
}
