//! Azure OpenAI Chat Completions adapter:
//! `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
//! with the key in the `api-key` header, or a Microsoft Entra token as `Authorization: Bearer`
//! ([`AzureOpenAi::with_entra`]) for resources without keys.
//!
//! Source: the `2024-10-21` GA inference spec in Azure/azure-rest-api-specs
//! (`specification/cognitiveservices/data-plane/AzureOpenAI/inference/stable/2024-10-21`), whose
//! request and response bodies are OpenAI's. So this is a thin configuration of the OpenAI
//! adapter ([`crate::providers::openai`]): same body, parsing, structured-output step-down and
//! output-cap field handling; what differs is the URL, the key header, no `model` in the body
//! (the deployment picks the model), `apim-request-id` as the request id, and the content
//! filter: a `400` with `code: content_filter` or an answer with `finish_reason:
//! content_filter` is a [`ProviderError::BadAnswer`] naming the filter, never retried.
//! Azure's `retry-after-ms` on 429 is honoured by [`crate::resilience`].

use futures::future::BoxFuture;

use crate::providers::http::{join_url, EndpointSettings};
use crate::providers::openai::{Flavour, JsonMode, MaxTokensParam, OpenAi};
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};

/// The GA API version we speak by default (it has `response_format: json_schema`).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";
/// The env var the key is read from unless the config names another.
/// NOTE: belongs in `crate::env_vars` once the config wiring lands.
pub const DEFAULT_API_KEY_ENV: &str = crate::env_vars::AZURE_OPENAI_API_KEY;

/// Settings of one Azure OpenAI deployment: the shared ones and the deployment and API version.
///
/// In [`AzureOpenAiSettings::endpoint`], `base_url` is the resource endpoint, e.g.
/// `https://my-resource.openai.azure.com` (trailing slash ignored, no `/openai` suffix);
/// `model` is the model behind the deployment (e.g. `gpt-4o`), for reports and pricing (Azure
/// itself routes by [`AzureOpenAiSettings::deployment`]), reported as [`Completion::model`]
/// when the response does not name one; the key is sent as the `api-key` header and read from
/// [`DEFAULT_API_KEY_ENV`] by default.
#[derive(Debug, Clone)]
pub struct AzureOpenAiSettings {
    /// Name, model, resource endpoint, key, timeout and retry policy.
    pub endpoint: EndpointSettings,
    /// The deployment name chosen when the model was deployed.
    pub deployment: String,
    /// The `api-version` query parameter; [`DEFAULT_API_VERSION`] by default.
    pub api_version: String,
}

/// The adapter: an [`OpenAi`] adapter in its Azure flavour.
#[derive(Debug)]
pub struct AzureOpenAi {
    inner: OpenAi,
}

impl AzureOpenAi {
    /// Builds the client. Errors ([`ProviderError::Config`]): `endpoint` is not an http(s) URL,
    /// `deployment` or `api_version` is empty, or the HTTP client cannot be built.
    pub fn new(settings: AzureOpenAiSettings) -> Result<Self, ProviderError> {
        let config_error = |message: &str| ProviderError::Config {
            provider: settings.endpoint.name.clone(),
            message: message.to_owned(),
        };
        let deployment = settings.deployment.trim();
        if deployment.is_empty() {
            return Err(config_error("no `deployment` set for this Azure OpenAI provider"));
        }
        if settings.api_version.trim().is_empty() {
            return Err(config_error("`api_version` is empty"));
        }
        let path = format!("/openai/deployments/{}/chat/completions", urlencoding::encode(deployment));
        let mut url = join_url(&settings.endpoint.name, "endpoint", &settings.endpoint.base_url, &path)?;
        url.query_pairs_mut().append_pair("api-version", settings.api_version.trim());
        Ok(Self { inner: OpenAi::with_endpoint(settings.endpoint, url, Flavour::Azure)? })
    }

    /// The same deployment authorized by `auth` (a Microsoft Entra token as `Authorization:
    /// Bearer`, [`crate::cloud::azure`]) instead of an `api-key`: `settings` then has no key.
    /// Errors: as [`AzureOpenAi::new`].
    pub(crate) fn with_entra(
        settings: AzureOpenAiSettings,
        auth: std::sync::Arc<dyn crate::providers::http::RequestAuth>,
    ) -> Result<Self, ProviderError> {
        let adapter = Self::new(settings)?;
        Ok(Self { inner: adapter.inner.with_auth(auth) })
    }

    /// Forces the output-cap field. Azure's host never looks like OpenAI's, so `max_tokens` is
    /// the default; reasoning-model deployments (o-series) want `max_completion_tokens` (a 400
    /// saying so also switches it, once).
    pub fn with_max_tokens_param(self, param: MaxTokensParam) -> Self {
        Self { inner: self.inner.with_max_tokens_param(param) }
    }

    /// The structured-output mode the next call will use.
    pub fn json_mode(&self) -> JsonMode {
        self.inner.json_mode()
    }
}

impl Provider for AzureOpenAi {
    fn gen_ai_provider(&self) -> &'static str {
        super::gen_ai_provider_name(&crate::config::ProviderKind::AzureOpenai)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        self.inner.complete(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::providers::http::tests::strict_server;
    use crate::providers::Usage;
    use crate::resilience::{recording_retries, RetryPolicy};
    use secrecy::SecretString;
    use serde_json::{json, Value};
    use std::time::Duration;
    use wiremock::matchers::{body_partial_json, header, method, path, query_param};
    use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

    const KEY: &str = "azure-test-key-0123456789";

    fn settings(server: &MockServer) -> AzureOpenAiSettings {
        AzureOpenAiSettings {
            endpoint: EndpointSettings {
                name: "azure".to_owned(),
                model: "gpt-4o".to_owned(),
                base_url: format!("{}/", server.uri()),
                api_key: Some(SecretString::from(KEY)),
                api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
                timeout: Duration::from_secs(5),
                retry: RetryPolicy { max_retries: 3, base: Duration::from_millis(1), cap: Duration::from_secs(30) },
            },
            deployment: "review-4o".to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
        }
    }

    fn completions() -> MockBuilder {
        Mock::given(method("POST"))
            .and(path("/openai/deployments/review-4o/chat/completions"))
            .and(query_param("api-version", "2024-10-21"))
    }

    fn request(schema: bool) -> CompletionRequest {
        CompletionRequest {
            system: "you are a helpful assistant that talks like a pirate".to_owned(),
            prompt: "can you tell me how to care for a parrot?".to_owned(),
            json_schema: schema.then(|| ("review".to_owned(), json!({"type": "object", "required": ["summary"]}))),
            max_output_tokens: 512,
            temperature: None,
            prompt_cache: None,
        }
    }

    /// The `x-ms-examples` body of `ChatCompletions_Create` (2024-10-21), from the corpora.
    fn example_response() -> Option<Value> {
        let dir = crate::test_support::corpora_dir()?;
        let text = std::fs::read_to_string(dir.join("llm-apis/azure-openai/chat_completions.json")).unwrap();
        let example: Value = serde_json::from_str(&text).unwrap();
        Some(example["responses"]["200"]["body"].clone())
    }

    fn chat(content: &str, finish_reason: &str) -> Value {
        json!({"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "finish_reason": finish_reason,
            "message": {"role": "assistant", "content": content}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    }

    #[tokio::test]
    async fn replays_the_azure_spec_example() {
        let Some(body) = example_response() else { return };
        let server = strict_server().await;
        completions()
            .and(header("api-key", KEY))
            .and(body_partial_json(json!({
                "messages": [
                    {"role": "system", "content": "you are a helpful assistant that talks like a pirate"},
                    {"role": "user", "content": "can you tell me how to care for a parrot?"},
                ],
                "max_tokens": 512,
            })))
            .respond_with(ResponseTemplate::new(200).insert_header("apim-request-id", "apim-123").set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let azure = AzureOpenAi::new(settings(&server)).unwrap();
        let c = azure.complete(&request(false)).await.unwrap();
        assert!(c.text.starts_with("Ahoy matey!"), "{}", c.text);
        assert_eq!(c.usage, Usage { input_tokens: 33, output_tokens: 557, ..Usage::default() });
        // The example names no model: the configured one is reported.
        assert_eq!(c.model, "gpt-4o");
        assert_eq!(c.request_id.as_deref(), Some("apim-123"));
        let received = server.received_requests().await.unwrap();
        let sent = &received[0];
        assert!(sent.headers.get("authorization").is_none(), "the key must travel as api-key only");
        assert!(!sent.url.as_str().contains(KEY));
        let sent: Value = serde_json::from_slice(&sent.body).unwrap();
        assert!(sent.get("model").is_none(), "Azure routes by deployment: {sent}");
        assert!(sent.get("max_completion_tokens").is_none());
    }

    #[tokio::test]
    async fn json_schema_is_asked_natively() {
        let server = strict_server().await;
        completions()
            .and(body_partial_json(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "review"}}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("{\"summary\": \"ok\"}", "stop")))
            .expect(1)
            .mount(&server)
            .await;
        let c = AzureOpenAi::new(settings(&server)).unwrap().complete(&request(true)).await.unwrap();
        assert_eq!(c.text, "{\"summary\": \"ok\"}");
        assert_eq!(c.request_id.as_deref(), Some("chatcmpl-1"));
    }

    #[tokio::test]
    async fn retry_after_ms_is_honoured() {
        let server = strict_server().await;
        completions()
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after-ms", "50").set_body_json(json!({
                "error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}})))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", "stop")))
            .expect(1)
            .mount(&server)
            .await;
        let provider = AzureOpenAi::new(settings(&server)).unwrap();
        let (c, retries) = recording_retries(provider.complete(&request(false))).await;
        let c = c.unwrap();
        assert_eq!(
            retries.iter().map(|r| (r.wait, r.server_asked)).collect::<Vec<_>>(),
            [(Duration::from_millis(50), true)]
        );
        assert_eq!(c.text, "ok");
    }

    #[tokio::test]
    async fn content_filter_on_the_prompt_is_a_bad_answer_without_retry() {
        let server = strict_server().await;
        completions()
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": true, "severity": "high"}}}}})))
            .expect(1)
            .mount(&server)
            .await;
        let err = AzureOpenAi::new(settings(&server)).unwrap().complete(&request(true)).await.unwrap_err();
        match err {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("content filter"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn content_filter_finish_reason_is_a_bad_answer() {
        let server = strict_server().await;
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("Here is how to", "content_filter")))
            .expect(1)
            .mount(&server)
            .await;
        let err = AzureOpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap_err();
        match err {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("content filter"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn unauthorized_names_the_env_var() {
        let server = strict_server().await;
        completions()
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint."}})))
            .expect(1)
            .mount(&server)
            .await;
        let err = AzureOpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(text.contains("AZURE_OPENAI_API_KEY") && !text.contains(KEY), "{text}");
    }

    #[test]
    fn settings_are_checked() {
        let s = AzureOpenAiSettings {
            endpoint: EndpointSettings {
                name: "azure".to_owned(),
                model: "gpt-4o".to_owned(),
                base_url: "https://res.openai.azure.com".to_owned(),
                api_key: None,
                api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
                timeout: Duration::from_secs(1),
                retry: RetryPolicy::default(),
            },
            deployment: " ".to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
        };
        assert!(matches!(AzureOpenAi::new(s.clone()), Err(ProviderError::Config { .. })));
        let mut bad_endpoint = AzureOpenAiSettings { deployment: "d".to_owned(), ..s.clone() };
        bad_endpoint.endpoint.base_url = "res.openai.azure.com".to_owned();
        assert!(matches!(AzureOpenAi::new(bad_endpoint), Err(ProviderError::Config { .. })));
        let ok = AzureOpenAiSettings { deployment: "my deployment".to_owned(), ..s };
        let azure = AzureOpenAi::new(ok).unwrap();
        let debug = format!("{azure:?}");
        assert!(
            debug.contains("/openai/deployments/my%20deployment/chat/completions?api-version=2024-10-21"),
            "{debug}"
        );
    }
}
