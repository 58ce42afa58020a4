//! Chooses the provider for a run and builds it: `--provider` > `AGENTCTL_PROVIDER` > config
//! `provider` > the only `providers:` entry > `builtin` (offline rules, no model call).
//!
//! The chosen entry and its `fallback:` entries are built into one [`Resilient`] chain behind a
//! circuit breaker whose state lives in the SQLite state store, so every adapter goes through
//! the same resilience path. API keys come from the environment variable each entry names,
//! never from the command line.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::cloud::aws::AwsCredentialProvider;
use crate::cloud::azure::EntraTokenProvider;
use crate::cloud::google::GoogleTokenProvider;
use crate::config::{CommandOutput, Config, ProviderConfig, ProviderKind};
use crate::context::Env;
use crate::env_vars as ev;
use crate::log;
use crate::providers::anthropic::{self, Anthropic, AnthropicSettings};
use crate::providers::azure::{self, AzureOpenAi, AzureOpenAiSettings};
use crate::providers::bedrock::{self, Bedrock};
use crate::providers::chain::Resilient;
use crate::providers::command::{CommandProvider, CommandSettings, OutputFormat};
use crate::providers::gemini::{self, Gemini};
use crate::providers::http::{BearerAuth, EndpointSettings, RequestAuth};
use crate::providers::openai::OpenAi;
use crate::providers::vertex;
use crate::providers::{Provider, ProviderError};
use crate::redact::Redactor;
use crate::resilience::{Breaker, BreakerSettings, RetryPolicy};
use crate::store::{Store, StoreError};

/// OpenAI's API root, the default `base_url` of `kind: openai`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Default per-attempt timeout of HTTP providers, seconds.
const DEFAULT_TIMEOUT_SECS: f64 = 120.0;

/// The chosen provider: `builtin` (no chain) or the resilient chain. The chain redacts every
/// request with the redactor given to [`select`], which also holds the chain's secrets.
pub struct SelectedProvider {
    name: String,
    chain: Option<Arc<Resilient>>,
}

impl SelectedProvider {
    /// `builtin` or the config entry name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The chain (primary, fallbacks, breaker); `None` for builtin.
    pub fn provider(&self) -> Option<Arc<dyn Provider>> {
        self.chain.clone().map(|c| c as Arc<dyn Provider>)
    }

    /// The chain itself, for callers that need to know which link answered
    /// ([`Resilient::complete_traced`]); `None` for builtin.
    pub fn chain(&self) -> Option<Arc<Resilient>> {
        self.chain.clone()
    }
}

/// Resolves and builds the provider chain. Every secret the chain holds (API keys,
/// passed-through variables) is registered with `redactor` before this returns, and the chain
/// redacts every request through it; the caller publishes `::add-mask::` lines for them.
///
/// Errors: an unknown entry name ([`ProviderError::Config`]); a missing key for a hosted API
/// ([`ProviderError::Auth`], exit 4, naming the variable). A fallback entry that cannot be built
/// is skipped with a warning, so a broken fallback never stops a working primary.
pub fn select(
    config: &Config,
    flag: Option<&str>,
    model_flag: Option<&str>,
    env: &Env,
    redactor: &Redactor,
    store: &Result<Arc<Store>, StoreError>,
) -> Result<SelectedProvider, ProviderError> {
    let name = config.provider_entry(flag);
    if name == "builtin" {
        return Ok(SelectedProvider { name, chain: None });
    }
    let entry = config.providers.get(&name).ok_or_else(|| ProviderError::Config {
        provider: name.clone(),
        message: format!(
            "no `providers.{name}` entry in the config (known: {})",
            config.providers.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })?;
    if entry.kind == ProviderKind::Builtin {
        return Ok(SelectedProvider { name, chain: None });
    }
    let mut secrets = vec![];
    let primary = build_one(&name, entry, model_flag, env, redactor, &mut secrets)?;
    let mut fallbacks = vec![];
    for fb in &entry.fallback {
        let Some(fb_entry) = config.providers.get(fb).filter(|e| e.kind != ProviderKind::Builtin) else {
            log::warn(&format!("providers.{name}.fallback: `{fb}` is not a model provider; skipped"));
            continue;
        };
        match build_one(fb, fb_entry, None, env, redactor, &mut secrets) {
            Ok(p) => fallbacks.push(p),
            Err(e) => log::warn(&format!("fallback `{fb}` is unusable and skipped: {e}")),
        }
    }
    let settings = BreakerSettings {
        failure_threshold: entry.breaker.failure_threshold,
        open_for: entry.breaker.open_duration(),
        half_open_probes: entry.breaker.half_open_probes,
    };
    let breaker = match store {
        Ok(store) => Breaker::persistent(settings, Arc::clone(store)),
        Err(e) => Breaker::in_memory(settings, &log::error_chain(e)),
    };
    let mut registry = redactor.clone();
    for secret in &secrets {
        registry.add_secret(secret);
    }
    let chain = Resilient::new(primary, fallbacks, Arc::new(breaker))
        .with_prices(config.price_table())
        .with_total_timeout(entry.total_deadline())
        .with_redactor(redactor.clone());
    Ok(SelectedProvider { name, chain: Some(Arc::new(chain)) })
}

/// The key from `entry.api_key_env` (or the kind's default variable) and that variable's name.
fn api_key(entry: &ProviderConfig, default_env: &str, env: &Env) -> (Option<SecretString>, String) {
    let var = entry.api_key_env.clone().unwrap_or_else(|| default_env.to_string());
    (env.get(&var).map(|k| SecretString::from(k.to_string())), var)
}

/// Base URL and key of an HTTP provider. The key is required when the entry talks to the
/// provider's own hosted API (`default_base`); a self-hosted compatible server may need none.
fn endpoint_and_key(
    name: &str,
    entry: &ProviderConfig,
    default_base: &str,
    default_env: &str,
    env: &Env,
    secrets: &mut Vec<SecretString>,
) -> Result<(String, Option<SecretString>, String), ProviderError> {
    let base_url = entry.base_url.as_deref().unwrap_or(default_base).trim_end_matches('/').to_string();
    let (key, var) = api_key(entry, default_env, env);
    if key.is_none() && base_url == default_base {
        return Err(missing_key(name, var));
    }
    secrets.extend(key.clone());
    Ok((base_url, key, var))
}

fn missing_key(name: &str, var: String) -> ProviderError {
    ProviderError::Auth { provider: name.to_string(), status: 0, env: var, message: "the variable is not set".into() }
}

/// A variable's value, trimmed; `None` when unset or empty.
fn env_value(env: &Env, name: &str) -> Option<String> {
    env.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A cloud setting (`region`, `project`, `location`) from the entry, else the first of `vars`
/// set. The value goes into a host name or URL path, so it must be lowercase letters, digits
/// and `-` (the config's schema says so; a variable is checked here). Errors
/// ([`ProviderError::Config`]): unset, or other characters.
fn cloud_setting(
    name: &str,
    key: &str,
    configured: Option<&str>,
    vars: &[&str],
    env: &Env,
) -> Result<String, ProviderError> {
    let config_error = |message: String| ProviderError::Config { provider: name.to_string(), message };
    let (value, source) = match configured {
        Some(v) => (v.to_string(), format!("`providers.{name}.{key}`")),
        None => vars
            .iter()
            .find_map(|var| env_value(env, var).map(|v| (v, format!("`{var}`"))))
            .ok_or_else(|| config_error(format!("no `{key}`: set `providers.{name}.{key}` or {}", vars.join(" / "))))?,
    };
    if value.is_empty()
        || value.len() > 64
        || !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(config_error(format!("{source} is not a valid {key} (lowercase letters, digits and `-`)")));
    }
    Ok(value)
}

/// A cloud provider's `base_url` must be `https` (plain http only to loopback): its requests
/// carry a session token or an OAuth token, which must not travel in clear text. Errors
/// ([`ProviderError::Config`]): another scheme or a non-loopback http host.
fn https_or_loopback(name: &str, base_url: &str) -> Result<(), ProviderError> {
    crate::cloud::endpoint(base_url, "base_url")
        .map(drop)
        .map_err(|e| ProviderError::Config { provider: name.to_string(), message: e.message })
}

/// A credential that could not be read or minted while building the chain, as exit 4 with the
/// error's own `help:` line.
fn denied(name: &str, e: crate::cloud::CredentialError) -> ProviderError {
    let help = e.help.unwrap_or_else(|| "check the credentials the entry uses".to_string());
    ProviderError::Denied { provider: name.to_string(), status: 0, message: e.message, help }
}

fn model_of(name: &str, entry: &ProviderConfig, model_flag: Option<&str>) -> Result<String, ProviderError> {
    model_flag.map(str::to_string).or_else(|| entry.model.clone()).ok_or_else(|| ProviderError::Config {
        provider: name.to_string(),
        message: "no `model` set for this provider (config `model` or --model)".into(),
    })
}

/// Builds one adapter; its secrets are appended to `secrets`. Cloud adapters register the
/// credentials they read or mint with `redactor` themselves (some are minted mid-run).
fn build_one(
    name: &str,
    entry: &ProviderConfig,
    model_flag: Option<&str>,
    env: &Env,
    redactor: &Redactor,
    secrets: &mut Vec<SecretString>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let retry = RetryPolicy { max_retries: entry.max_retries.unwrap_or(3), ..RetryPolicy::default() };
    let timeout = entry.attempt_timeout().unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS));
    let name_s = name.to_string();
    // The shared endpoint of the HTTP adapters whose key is required only on their hosted API.
    let endpoint = |default_base: &str, default_env: &str, secrets: &mut Vec<SecretString>| {
        let (base_url, api_key, api_key_env) = endpoint_and_key(name, entry, default_base, default_env, env, secrets)?;
        let model = model_of(name, entry, model_flag)?;
        Ok::<_, ProviderError>(EndpointSettings {
            name: name.to_string(),
            model,
            base_url,
            api_key,
            api_key_env,
            timeout,
            retry,
        })
    };
    let adapter: Arc<dyn Provider> = match entry.kind {
        // A local OpenAI-compatible server (Ollama, vLLM) usually needs no key.
        ProviderKind::Openai => Arc::new(OpenAi::new(endpoint(OPENAI_BASE_URL, ev::OPENAI_API_KEY, secrets)?)?),
        ProviderKind::Anthropic => Arc::new(Anthropic::new(AnthropicSettings {
            endpoint: endpoint(anthropic::DEFAULT_BASE_URL, anthropic::DEFAULT_API_KEY_ENV, secrets)?,
            anthropic_version: entry
                .anthropic_version
                .clone()
                .unwrap_or_else(|| anthropic::DEFAULT_ANTHROPIC_VERSION.to_string()),
        })?),
        ProviderKind::AzureOpenai => {
            let (key, var) = api_key(entry, azure::DEFAULT_API_KEY_ENV, env);
            // Without a key, a Microsoft Entra token when the entry or the environment names
            // one (workload identity federation); else the key is missing.
            let entra = match &key {
                Some(key) => {
                    secrets.push(key.clone());
                    None
                }
                None => {
                    let (client, tenant) = (entry.client_id.as_deref(), entry.tenant_id.as_deref());
                    let tokens =
                        EntraTokenProvider::resolve(env, client, tenant, redactor).map_err(|e| denied(name, e))?;
                    let Some(tokens) = tokens else { return Err(missing_key(name, var)) };
                    https_or_loopback(name, entry.base_url.as_deref().unwrap_or_default())?;
                    Some(Arc::new(BearerAuth { tokens: Arc::new(tokens) }) as Arc<dyn RequestAuth>)
                }
            };
            let deployment = entry.deployment.clone().unwrap_or_default();
            let settings = AzureOpenAiSettings {
                endpoint: EndpointSettings {
                    name: name_s,
                    // The deployment decides the model; `model` names it for reports and prices.
                    model: model_flag
                        .map(str::to_string)
                        .or_else(|| entry.model.clone())
                        .unwrap_or_else(|| deployment.clone()),
                    base_url: entry.base_url.as_deref().unwrap_or_default().trim_end_matches('/').to_string(),
                    api_key: key,
                    api_key_env: var,
                    timeout,
                    retry,
                },
                deployment,
                api_version: entry.api_version.clone().unwrap_or_else(|| azure::DEFAULT_API_VERSION.to_string()),
            };
            Arc::new(match entra {
                Some(auth) => AzureOpenAi::with_entra(settings, auth)?,
                None => AzureOpenAi::new(settings)?,
            })
        }
        ProviderKind::Gemini => {
            Arc::new(Gemini::new(endpoint(gemini::DEFAULT_BASE_URL, gemini::DEFAULT_API_KEY_ENV, secrets)?)?)
        }
        ProviderKind::Bedrock => {
            let region =
                cloud_setting(name, "region", entry.region.as_deref(), &[ev::AWS_REGION, ev::AWS_DEFAULT_REGION], env)?;
            let credentials = AwsCredentialProvider::resolve(env, entry.role_arn.as_deref(), &region, redactor)
                .map_err(|e| denied(name, e))?;
            let base_url = entry
                .base_url
                .clone()
                .or_else(|| env_value(env, ev::AWS_ENDPOINT_URL_BEDROCK_RUNTIME))
                .or_else(|| env_value(env, ev::AWS_ENDPOINT_URL))
                .unwrap_or_else(|| bedrock::default_base_url(&region));
            let endpoint = EndpointSettings {
                name: name_s,
                model: model_of(name, entry, model_flag)?,
                base_url: base_url.trim_end_matches('/').to_string(),
                api_key: None,
                api_key_env: String::new(),
                timeout,
                retry,
            };
            https_or_loopback(name, &endpoint.base_url)?;
            Arc::new(Bedrock::new(endpoint, region, Arc::new(credentials))?)
        }
        ProviderKind::Vertex => {
            let project = cloud_setting(
                name,
                "project",
                entry.project.as_deref(),
                &[ev::GOOGLE_CLOUD_PROJECT, ev::CLOUDSDK_CORE_PROJECT],
                env,
            )?;
            let location = match (&entry.location, env_value(env, ev::GOOGLE_CLOUD_LOCATION)) {
                (None, None) => "global".to_string(),
                (configured, _) => {
                    cloud_setting(name, "location", configured.as_deref(), &[ev::GOOGLE_CLOUD_LOCATION], env)?
                }
            };
            let tokens = GoogleTokenProvider::resolve(env, redactor).map_err(|e| denied(name, e))?;
            let endpoint = EndpointSettings {
                name: name_s,
                model: model_of(name, entry, model_flag)?,
                base_url: entry
                    .base_url
                    .clone()
                    .unwrap_or_else(|| vertex::default_base_url(&location))
                    .trim_end_matches('/')
                    .to_string(),
                api_key: None,
                api_key_env: String::new(),
                timeout,
                retry,
            };
            https_or_loopback(name, &endpoint.base_url)?;
            vertex::build(endpoint, &project, &location, Arc::new(tokens))?
        }
        ProviderKind::Command => {
            let (program, args) = entry.command.split_first().ok_or_else(|| ProviderError::Config {
                provider: name.to_string(),
                message: "`command` is empty".into(),
            })?;
            let mut settings = CommandSettings::new(name, program.clone());
            settings.args = args.to_vec();
            settings.model = model_flag.map(str::to_string).or_else(|| entry.model.clone()).unwrap_or_default();
            settings.env = entry.env.clone();
            settings.env_passthrough = entry.env_passthrough.clone();
            settings.retry = retry;
            if let Some(t) = entry.attempt_timeout() {
                settings.timeout = t;
            }
            settings.output = match entry.output {
                CommandOutput::Text => OutputFormat::Text,
                CommandOutput::ClaudeJson => OutputFormat::ClaudeJson,
                CommandOutput::CodexJsonl => OutputFormat::CodexJsonl,
            };
            let adapter = CommandProvider::new(settings, env)?;
            secrets.extend(adapter.passthrough_secrets().map(|(_, v)| v.clone()));
            Arc::new(adapter)
        }
        ProviderKind::Builtin => {
            return Err(ProviderError::Config {
                provider: name.to_string(),
                message: "`builtin` makes no model call and cannot be part of a chain".into(),
            })
        }
    };
    Ok(adapter)
}

/// Every number the schema allows is one the provider chain can be built from: the walk over
/// the config schema lives here, beside the conversions it exercises.
#[cfg(test)]
mod tests {
    /// Every numeric field of the schema: (instance path, its schema), found by walking
    /// `properties`, `additionalProperties` (a placeholder key `x`) and `$ref`s generically.
    fn numeric_fields() -> Vec<(Vec<String>, serde_json::Value)> {
        fn walk(
            root: &serde_json::Value,
            node: &serde_json::Value,
            path: Vec<String>,
            out: &mut Vec<(Vec<String>, serde_json::Value)>,
        ) {
            if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
                let target = root.pointer(r.trim_start_matches('#')).unwrap();
                return walk(root, target, path, out);
            }
            if matches!(node.get("type").and_then(|t| t.as_str()), Some("number" | "integer")) {
                out.push((path.clone(), node.clone()));
            }
            if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in props {
                    let mut p = path.clone();
                    p.push(k.clone());
                    walk(root, v, p, out);
                }
            }
            if let Some(extra) = node.get("additionalProperties").filter(|a| a.is_object()) {
                let mut p = path.clone();
                p.push("x".into());
                walk(root, extra, p, out);
            }
        }
        let schema: serde_json::Value = serde_json::from_str(crate::config::SCHEMA).unwrap();
        let mut out = vec![];
        walk(&schema, &schema, vec![], &mut out);
        out
    }

    /// A minimal valid config with `value` at `path`.
    fn config_with(path: &[String], value: serde_json::Value) -> serde_json::Value {
        let mut doc = serde_json::json!({});
        if path.first().map(String::as_str) == Some("providers") {
            doc = serde_json::json!({"provider": "x", "providers": {"x": {"kind": "openai", "model": "m"}}});
        }
        if path.first().map(String::as_str) == Some("pricing") {
            doc = serde_json::json!({"pricing": {"x": {"input_cost_per_token": 0, "output_cost_per_token": 0}}});
        }
        let mut at = &mut doc;
        for key in &path[..path.len() - 1] {
            at = at.as_object_mut().unwrap().entry(key.clone()).or_insert(serde_json::json!({}));
        }
        at[path.last().unwrap()] = value;
        doc
    }

    #[test]
    fn numeric_config_values_validation_accepts_never_panic() {
        // `timeout: 1e300` passed validation, then `Duration::from_secs_f64` aborted (exit 134).
        let fields = numeric_fields();
        assert!(fields.len() >= 15, "the walk found too few numeric fields: {fields:?}");
        let state = tempfile::tempdir().unwrap();
        let state_path = state.path().join("state.db");
        let env = crate::context::Env::from_pairs([
            ("OPENAI_API_KEY", "sk-test-walker"),
            ("AGENTCTL_STATE", state_path.to_str().unwrap()),
        ]);
        for (path, spec) in fields {
            let pointer = format!("/{}", path.join("/"));
            let max = spec.get("maximum").unwrap_or_else(|| panic!("{pointer} has no maximum"));
            let text = config_with(&path, max.clone()).to_string();
            let config =
                crate::config::Config::from_text(&text, "walk").unwrap_or_else(|e| panic!("{pointer} = {max}: {e}"));
            // Building the provider chain and the settings converts every number.
            let store = crate::store::open_configured(&env, None);
            let redactor = crate::redact::Redactor::new();
            crate::providers::select::select(&config, None, None, &env, &redactor, &store).unwrap();
            let _ = config.github.write_delay();
            let above = if spec["type"] == "integer" {
                serde_json::json!(max.as_u64().unwrap() + 1)
            } else {
                serde_json::json!(max.as_f64().unwrap() * 2.0 + 1.0)
            };
            for bad in [above, serde_json::json!(1e300)] {
                let text = config_with(&path, bad.clone()).to_string();
                match crate::config::Config::from_text(&text, "walk") {
                    Err(crate::config::ConfigError::Invalid { violations, .. }) => {
                        assert!(violations.iter().any(|v| v.pointer == pointer), "{pointer} = {bad}: {violations:?}")
                    }
                    other => panic!("{pointer} = {bad} was not refused as invalid: {other:?}"),
                }
            }
        }
    }
}
