//! Chooses the provider for a run and builds its adapter: `--provider` > `AGENTCTL_PROVIDER` >
//! config `provider` > the only `providers:` entry > `builtin` (offline rules, no model call).
//! API keys come from the environment variable the entry names, never from the command line.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{Config, ProviderConfig, ProviderKind};
use crate::context::Env;
use crate::env_vars as ev;
use crate::providers::openai::{OpenAi, OpenAiSettings};
use crate::providers::{Provider, ProviderError};
use crate::resilience::RetryPolicy;

/// OpenAI's API root, the default `base_url` of `kind: openai`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The chosen provider: `builtin` (no adapter) or a built adapter and the key it holds.
pub struct SelectedProvider {
    name: String,
    provider: Option<Arc<dyn Provider>>,
    api_key: Option<SecretString>,
}

impl SelectedProvider {
    /// `builtin` or the config entry name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The adapter; `None` for builtin.
    pub fn provider(&self) -> Option<Arc<dyn Provider>> {
        self.provider.clone()
    }

    /// The API key, for registering with the redactor and `::add-mask::`.
    pub fn api_key(&self) -> Option<&SecretString> {
        self.api_key.as_ref()
    }
}

/// Resolves and builds the provider. Errors: an unknown entry name or kind not available yet
/// ([`ProviderError::Config`]); a missing key for a hosted API ([`ProviderError::Auth`], exit 4).
pub fn select(
    config: &Config,
    flag: Option<&str>,
    model_flag: Option<&str>,
    env: &Env,
) -> Result<SelectedProvider, ProviderError> {
    let name = flag
        .map(str::to_string)
        .or_else(|| config.provider.clone())
        .or_else(|| (config.providers.len() == 1).then(|| config.providers.keys().next().cloned()).flatten());
    let Some(name) = name.filter(|n| n != "builtin") else {
        return Ok(SelectedProvider { name: "builtin".into(), provider: None, api_key: None });
    };
    let entry = config.providers.get(&name).ok_or_else(|| ProviderError::Config {
        provider: name.clone(),
        message: format!(
            "no `providers.{name}` entry in the config (known: {})",
            config.providers.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })?;
    match entry.kind {
        ProviderKind::Builtin => Ok(SelectedProvider { name, provider: None, api_key: None }),
        ProviderKind::Openai => build_openai(&name, entry, model_flag, env),
        other => Err(ProviderError::Config {
            provider: name,
            message: format!("provider kind `{}` is not available in this version yet", kind_name(other)),
        }),
    }
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::AzureOpenai => "azure-openai",
        ProviderKind::Gemini => "gemini",
        ProviderKind::Command => "command",
        ProviderKind::Builtin => "builtin",
    }
}

fn build_openai(
    name: &str,
    entry: &ProviderConfig,
    model_flag: Option<&str>,
    env: &Env,
) -> Result<SelectedProvider, ProviderError> {
    let base_url =
        entry.base_url.clone().unwrap_or_else(|| OPENAI_BASE_URL.to_string()).trim_end_matches('/').to_string();
    let api_key_env = entry.api_key_env.clone().unwrap_or_else(|| ev::OPENAI_API_KEY.to_string());
    let api_key = env.get(&api_key_env).map(|k| SecretString::from(k.to_string()));
    // Hosted OpenAI needs a key; a local OpenAI-compatible server (Ollama, vLLM) usually not.
    if api_key.is_none() && base_url == OPENAI_BASE_URL {
        return Err(ProviderError::Auth {
            provider: name.to_string(),
            status: 0,
            env: api_key_env,
            message: "the variable is not set".into(),
        });
    }
    let model =
        model_flag.map(str::to_string).or_else(|| entry.model.clone()).ok_or_else(|| ProviderError::Config {
            provider: name.to_string(),
            message: "no `model` set for this provider (config `model` or --model)".into(),
        })?;
    let retry = RetryPolicy { max_retries: entry.max_retries.unwrap_or(3), ..RetryPolicy::default() };
    let adapter = OpenAi::new(OpenAiSettings {
        name: name.to_string(),
        model,
        base_url,
        api_key: api_key.clone(),
        api_key_env,
        timeout: Duration::from_secs_f64(entry.timeout.unwrap_or(120.0)),
        retry,
    })?;
    Ok(SelectedProvider { name: name.to_string(), provider: Some(Arc::new(adapter)), api_key })
}
