//! Anthropic Messages API adapter (`POST {base_url}/messages`, headers `x-api-key` and
//! `anthropic-version`).
//!
//! Source: <https://docs.anthropic.com/en/api/messages> and the recorded real traffic in the
//! shared corpora (`llm-apis/anthropic/anthropic-sdk-python-recordings/`).
//!
//! - **Structured output** goes through tool use, the mechanism every Claude model since Claude
//!   3 supports: one tool whose `input_schema` is the wanted schema, forced with
//!   `tool_choice: {type: "tool", name}`. The answer is that `tool_use` block's `input`,
//!   serialized as JSON text, so [`crate::providers::structured::complete_json`] validates it
//!   like any other answer. Should the model answer in text anyway, the text is returned and the
//!   validator (and its repair round) decides.
//! - **Usage**: Anthropic's `input_tokens` already excludes the cache, so it maps to
//!   [`Usage::input_tokens`] as is; `cache_read_input_tokens` and `cache_creation_input_tokens`
//!   are the cached read and write classes. Thinking tokens are not reported apart (they are in
//!   `output_tokens`).
//! - **Errors**: `{"type": "error", "error": {"type", "message"}, "request_id"}`. `429
//!   rate_limit_error` and `529 overloaded_error` are retried (honouring `retry-after` and
//!   `x-should-retry`); billing errors (credit balance too low, spend or usage limit reached,
//!   `billing_error`) are [`ProviderError::Quota`] and never retried, whatever the status
//!   (Anthropic sends them as 400 `invalid_request_error` or 403); `stop_reason: "refusal"` is a
//!   [`ProviderError::BadAnswer`] saying the model refused.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::providers::http::{
    api_name, join_url, EndpointSettings, ErrorClass, HttpClient, KeyHeader, RawAnswer, StatusError,
};
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};

/// Anthropic's API root, the default `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The `anthropic-version` header value: the one stable version of the Messages API.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// The `anthropic_version` body field of Claude on Vertex AI.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The env var the key is read from unless the config names another.
/// NOTE: belongs in `crate::env_vars` once the config wiring lands.
pub const DEFAULT_API_KEY_ENV: &str = crate::env_vars::ANTHROPIC_API_KEY;

/// Phrases of Anthropic's billing errors (lowercase): "Your credit balance is too low to access
/// the Anthropic API", "You have reached your specified API usage limits", spend limits.
const BILLING_PHRASES: &[&str] =
    &["credit balance", "spend limit", "spending limit", "usage limit", "billing", "purchase credits"];

/// Settings of one Anthropic endpoint: the shared ones (`model` e.g. `claude-sonnet-4-5`;
/// `base_url` includes `/v1`, [`DEFAULT_BASE_URL`] by default; the key is sent as `x-api-key`
/// and read from [`DEFAULT_API_KEY_ENV`] by default) and the API version header.
#[derive(Debug, Clone)]
pub struct AnthropicSettings {
    /// Name, model, URL, key, timeout and retry policy.
    pub endpoint: EndpointSettings,
    /// The `anthropic-version` header ([`DEFAULT_ANTHROPIC_VERSION`] by default), see
    /// <https://docs.anthropic.com/en/api/versioning>.
    pub anthropic_version: String,
}

/// The adapter.
pub struct Anthropic {
    settings: AnthropicSettings,
    http: HttpClient,
    /// On Vertex AI ([`Anthropic::on_vertex`]): the version goes in the body, not the model.
    vertex: bool,
    /// `{base_url}/messages`, validated at construction.
    url: reqwest::Url,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("name", &self.settings.endpoint.name)
            .field("model", &self.settings.endpoint.model)
            .field("url", &self.url.as_str())
            .field("anthropic_version", &self.settings.anthropic_version)
            .field("api_key_env", &self.settings.endpoint.api_key_env)
            .field("has_key", &self.settings.endpoint.api_key.is_some())
            .finish()
    }
}

impl Anthropic {
    /// Builds the client. Errors ([`ProviderError::Config`]): `base_url` is not an http(s) URL,
    /// the key or `anthropic_version` cannot be sent as a header, or the client cannot be built.
    pub fn new(settings: AnthropicSettings) -> Result<Self, ProviderError> {
        let endpoint = &settings.endpoint;
        let url = join_url(&endpoint.name, "base_url", &endpoint.base_url, "/messages")?;
        let http = HttpClient::new(endpoint.http_config(
            KeyHeader::Named("x-api-key"),
            vec![("anthropic-version", settings.anthropic_version.clone())],
            classify_anthropic,
        ))?;
        Ok(Self { settings, http, url, vertex: false })
    }

    /// The Messages API on Vertex AI (`kind: vertex`, [`crate::providers::vertex`]): posted to
    /// the `…/publishers/anthropic/models/{model}:rawPredict` `url` with an OAuth token from
    /// `auth`; the body names no `model` and carries `anthropic_version: vertex-2023-10-16`
    /// (<https://docs.anthropic.com/en/api/claude-on-vertex-ai>). Errors: no HTTP client.
    pub(crate) fn on_vertex(
        endpoint: EndpointSettings,
        url: reqwest::Url,
        auth: std::sync::Arc<dyn crate::providers::http::RequestAuth>,
    ) -> Result<Self, ProviderError> {
        let http =
            HttpClient::new(endpoint.http_config(KeyHeader::Bearer, vec![], classify_anthropic))?.with_auth(auth);
        let settings = AnthropicSettings { endpoint, anthropic_version: VERTEX_ANTHROPIC_VERSION.to_string() };
        Ok(Self { settings, http, url, vertex: true })
    }

    /// The request body: `system`, one user message, `max_tokens` (required by the API), and
    /// for structured output the one forced tool. With [`CompletionRequest::prompt_cache`],
    /// prompt-cache breakpoints ([`cache_breakpoints`]).
    fn body(&self, req: &CompletionRequest) -> Value {
        let tools = req.json_schema.as_ref().map(|(name, schema)| {
            json!([{
                "name": api_name(name),
                "description": "Record the answer. Call this tool exactly once with the complete answer as its input.",
                "input_schema": schema,
            }])
        });
        let marks = req
            .prompt_cache
            .as_ref()
            .map(|c| cache_breakpoints(&self.settings.endpoint.model, tools.as_ref(), &req.system, &req.prompt, c))
            .unwrap_or_default();
        let content = match (&marks.prefix, &req.prompt_cache) {
            (Some(control), Some(cache)) => {
                let rest = &req.prompt[cache.prefix.len()..];
                json!([
                    { "type": "text", "text": cache.prefix, "cache_control": control },
                    { "type": "text", "text": rest },
                ])
            }
            _ => json!(req.prompt),
        };
        let mut body = json!({
            "model": self.settings.endpoint.model,
            "max_tokens": req.max_output_tokens,
            "messages": [{ "role": "user", "content": content }],
        });
        if let Some(obj) = body.as_object_mut() {
            if !req.system.is_empty() {
                let system = match &marks.system {
                    Some(control) => json!([{ "type": "text", "text": req.system, "cache_control": control }]),
                    None => json!(req.system),
                };
                obj.insert("system".to_owned(), system);
            }
            if let Some(t) = req.temperature {
                obj.insert("temperature".to_owned(), json!(t));
            }
            if let (Some(tools), Some((name, _))) = (tools, &req.json_schema) {
                obj.insert("tools".to_owned(), tools);
                obj.insert("tool_choice".to_owned(), json!({ "type": "tool", "name": api_name(name) }));
            }
            if self.vertex {
                obj.remove("model");
                obj.insert("anthropic_version".to_owned(), json!(self.settings.anthropic_version));
            }
        }
        body
    }

    async fn complete_inner(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let body = self.body(req);
        let answer = self.http.post_json(&self.url, &body, req.max_output_tokens).await?;
        let tool = req.json_schema.as_ref().map(|(name, _)| api_name(name));
        self.parse_answer(answer, tool.as_deref())
    }

    /// `tool`: the forced tool's name when structured output was asked for.
    fn parse_answer(&self, answer: RawAnswer, tool: Option<&str>) -> Result<Completion, ProviderError> {
        let parsed: MessageResponse = self.http.parse(&answer, "an Anthropic message")?;
        let stop_reason = parsed.stop_reason.as_deref().unwrap_or("none");
        if stop_reason == "refusal" {
            let said = joined_text(&parsed.content);
            let said = if said.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", crate::providers::http::truncate(&said))
            };
            return Err(self.http.bad_answer(format!("the model refused to answer (stop_reason: refusal){said}")));
        }
        let calls: Vec<(Option<&str>, Option<&Value>)> = parsed
            .content
            .iter()
            .filter(|b| b.kind == "tool_use")
            .map(|b| (b.name.as_deref(), b.input.as_ref()))
            .collect();
        let text = self.http.forced_tool_answer(
            &calls,
            tool,
            || joined_text(&parsed.content),
            &format!("stop_reason: {stop_reason}"),
        )?;
        let request_id = answer.header(&["request-id"]).or(parsed.id);
        Ok(Completion {
            text,
            usage: parsed.usage.map(ApiUsage::normalize).unwrap_or_default(),
            model: parsed.model.filter(|m| !m.is_empty()).unwrap_or_else(|| self.settings.endpoint.model.clone()),
            latency: answer.latency,
            request_id,
            finish_reason: parsed.stop_reason.clone(),
            reported_cost_usd: None,
        })
    }
}

impl Provider for Anthropic {
    fn gen_ai_provider(&self) -> &'static str {
        use crate::config::ProviderKind as K;
        super::gen_ai_provider_name(if self.vertex { &K::Vertex } else { &K::Anthropic })
    }

    fn name(&self) -> &str {
        &self.settings.endpoint.name
    }
    fn model(&self) -> &str {
        &self.settings.endpoint.model
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(self.complete_inner(req))
    }
}

/// Billing errors are quota, never retried; everything else follows the status (401/403 auth,
/// 400 refused, 429/529/5xx retried).
fn classify_anthropic(err: &mut StatusError) {
    let billing = err.kind.as_deref() == Some("billing_error") || err.mentions_any(BILLING_PHRASES);
    if billing && err.status < 500 {
        err.class = ErrorClass::Quota;
    }
}

/// The `text` blocks, joined (thinking and tool blocks are skipped).
fn joined_text(content: &[ContentBlock]) -> String {
    content.iter().filter(|b| b.kind == "text").filter_map(|b| b.text.as_deref()).collect::<Vec<_>>().join("")
}

/// The parts of a Messages API response we read.
#[derive(Debug, Deserialize)]
struct MessageResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

/// One content block: `text`, `tool_use`, `thinking`, `server_tool_use`, ...
#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// Anthropic's `usage` (all tokens; the cache fields are absent on older responses or null).
#[derive(Debug, Default, Deserialize)]
struct ApiUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    /// The cache writes by lifetime (newer answers): 5-minute and 1-hour writes are priced
    /// differently (1.25× and 2× input).
    #[serde(default)]
    cache_creation: Option<ApiCacheCreation>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// Anthropic's `usage.cache_creation`: the tokens written to the prompt cache per lifetime
/// (Messages API reference, `CacheCreation`).
#[derive(Debug, Default, Deserialize)]
struct ApiCacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

impl ApiUsage {
    /// `input_tokens` excludes cache reads and writes already: the classes add up to the bill.
    /// Cache writes are split by lifetime from `cache_creation` when the answer has it (the
    /// split is what is billed); otherwise all of `cache_creation_input_tokens` is 5-minute,
    /// the API's default. Counts are not trusted here: the ledger refuses a record with a class
    /// above [`crate::usage::MAX_TOKENS_PER_RECORD`] ([`crate::usage::UsageRecord::check`]).
    fn normalize(self) -> Usage {
        let (cache_write_tokens, cache_write_1h_tokens) = match self.cache_creation {
            Some(split) => (split.ephemeral_5m_input_tokens.unwrap_or(0), split.ephemeral_1h_input_tokens.unwrap_or(0)),
            None => (self.cache_creation_input_tokens.unwrap_or(0), 0),
        };
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            cached_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens,
            cache_write_1h_tokens,
            output_tokens: self.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        }
    }
}

/// Where a request carries `cache_control` breakpoints: on the system block, and on the user
/// prompt's shared prefix; `None` for no mark there. At most two of the API's four.
#[derive(Debug, Default)]
pub(crate) struct Breakpoints {
    pub(crate) system: Option<Value>,
    pub(crate) prefix: Option<Value>,
}

/// The smallest prefix Anthropic caches for `model`, tokens: 2048 for Haiku, 1024 for Sonnet
/// and Opus (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching>, "Cache
/// limitations").
///
/// Decision: some newer models need more (4096 for Haiku 4.5 and Opus 4.5 per later docs). A
/// breakpoint below a model's minimum is ignored by the API at no cost, while one left out
/// above it loses the cache, so the lower figures are used.
pub(crate) fn min_cacheable_tokens(model: &str) -> usize {
    if model.to_ascii_lowercase().contains("haiku") {
        2048
    } else {
        1024
    }
}

/// The breakpoints of a request: the API caches in the order tools, system, messages, and a
/// breakpoint caches everything up to it. So one goes on the system block once the tools and
/// the system prompt reach [`min_cacheable_tokens`] (they are shared by every request of
/// every PR), and one on the user prompt's shared prefix (the PR header) once everything up to
/// its end does, when the prompt starts with it. Tokens are estimated the way the chunker
/// does ([`crate::diff::chunk::estimate_tokens`]).
pub(crate) fn cache_breakpoints(
    model: &str,
    tools: Option<&Value>,
    system: &str,
    prompt: &str,
    cache: &crate::providers::PromptCache,
) -> Breakpoints {
    use crate::diff::chunk::estimate_tokens;
    let control =
        if cache.one_hour { json!({ "type": "ephemeral", "ttl": "1h" }) } else { json!({ "type": "ephemeral" }) };
    let min = min_cacheable_tokens(model);
    let upto_system = tools.map_or(0, |t| estimate_tokens(&t.to_string())) + estimate_tokens(system);
    let prefix_usable =
        !cache.prefix.is_empty() && prompt.starts_with(&cache.prefix) && cache.prefix.len() < prompt.len();
    let upto_prefix = upto_system + if prefix_usable { estimate_tokens(&cache.prefix) } else { 0 };
    Breakpoints {
        system: (!system.is_empty() && upto_system >= min).then(|| control.clone()),
        prefix: (prefix_usable && upto_prefix >= min).then_some(control),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::providers::http::tests::strict_server;
    use crate::resilience::{recording_retries, RetryPolicy};
    use secrecy::SecretString;
    use std::time::Duration;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

    const KEY: &str = "sk-ant-test-0123456789abcdef";

    fn settings(server: &MockServer) -> AnthropicSettings {
        AnthropicSettings {
            endpoint: EndpointSettings {
                name: "claude".to_owned(),
                model: "claude-sonnet-4-5".to_owned(),
                base_url: format!("{}/v1", server.uri()),
                api_key: Some(SecretString::from(KEY)),
                api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
                timeout: Duration::from_secs(5),
                retry: RetryPolicy { max_retries: 3, base: Duration::from_millis(1), cap: Duration::from_secs(30) },
            },
            anthropic_version: DEFAULT_ANTHROPIC_VERSION.to_owned(),
        }
    }

    fn messages() -> MockBuilder {
        Mock::given(method("POST")).and(path("/v1/messages"))
    }

    fn request(schema: Option<Value>) -> CompletionRequest {
        CompletionRequest {
            system: "You extract orders.".to_owned(),
            prompt: "Extract order: 2 Green Tea at $5.50 and 1 Coffee at $3.00. Total $14.".to_owned(),
            json_schema: schema.map(|s| ("order details".to_owned(), s)),
            max_output_tokens: 1024,
            temperature: None,
            prompt_cache: None,
        }
    }

    /// The exchanges of one recording: `[{request, response: {status_code, headers, body}}]`.
    fn recording(name: &str) -> Option<Vec<Value>> {
        let dir = crate::test_support::corpora_dir()?.join("llm-apis/anthropic/anthropic-sdk-python-recordings");
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        Some(serde_json::from_str(&text).unwrap())
    }

    /// A recorded response replayed with its real status, headers and body. Hop-by-hop and
    /// length headers are left to the mock server.
    fn replay(exchange: &Value) -> ResponseTemplate {
        let response = &exchange["response"];
        let mut template = ResponseTemplate::new(response["status_code"].as_u64().unwrap() as u16);
        for (name, value) in response["headers"].as_object().unwrap() {
            if !matches!(name.as_str(), "content-length" | "connection" | "content-encoding" | "transfer-encoding") {
                template = template.insert_header(name.as_str(), value.as_str().unwrap());
            }
        }
        template.set_body_json(response["body"].clone())
    }

    fn body_of(req: &Request) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_json(json!({"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_011test"}))
    }

    const RETRY_SEQUENCE: &str = "_parse__test_messages__TestAsyncParse__d743d628-16aa-4c9f-ae78-51deb578f746.json";

    /// Issue #20: the shared prefix carries `cache_control` once it is long enough for the
    /// model, and the chunk after it does not.
    #[test]
    fn breakpoints_mark_the_shared_prefix_once_it_reaches_the_models_minimum() {
        let long = "word ".repeat(1500);
        let prefix = format!("Pull request #7: t\n{long}\n");
        let cache = crate::providers::PromptCache { prefix: prefix.clone(), one_hour: false, key: "k".into() };
        let req = CompletionRequest {
            prompt: format!("{prefix}<diff>x</diff>"),
            prompt_cache: Some(cache.clone()),
            ..request(Some(json!({"type": "object"})))
        };
        let marks = cache_breakpoints("claude-sonnet-4-5", None, &req.system, &req.prompt, &cache);
        assert_eq!(marks.prefix, Some(json!({"type": "ephemeral"})));
        assert_eq!(marks.system, None, "a short system prompt alone is below the minimum");
        let marks = cache_breakpoints("claude-haiku-4-5", None, &req.system, &req.prompt, &cache);
        assert_eq!(marks.prefix, None, "Haiku needs 2048 tokens");
        let one_hour = crate::providers::PromptCache { one_hour: true, ..cache.clone() };
        let long_system = "rule ".repeat(1500);
        let marks = cache_breakpoints("claude-opus-4-1", None, &long_system, &req.prompt, &one_hour);
        assert_eq!(marks.system, Some(json!({"type": "ephemeral", "ttl": "1h"})));
        // A prompt that does not start with the prefix (changed in between) marks none of it.
        let marks = cache_breakpoints("claude-sonnet-4-5", None, &req.system, "other", &cache);
        assert_eq!(marks.prefix, None);
    }

    #[tokio::test]
    async fn recorded_429_429_200_sequence_is_retried_to_success() {
        let Some(exchanges) = recording(RETRY_SEQUENCE) else { return };
        let server = strict_server().await;
        for (i, exchange) in exchanges.iter().take(2).enumerate() {
            messages()
                .respond_with(replay(exchange))
                .up_to_n_times(1)
                .with_priority(1 + i as u8)
                .expect(1)
                .mount(&server)
                .await;
        }
        messages()
            .and(header("x-api-key", KEY))
            .and(header("anthropic-version", "2023-06-01"))
            .and(header("content-type", "application/json"))
            .respond_with(replay(&exchanges[2]).insert_header("request-id", "req_011CYK5mrecorded"))
            .with_priority(10)
            .expect(1)
            .mount(&server)
            .await;
        let c = Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap();
        assert_eq!(
            c.text,
            r#"{"items":[{"product_name":"Green Tea","price":5.50,"quantity":2},{"product_name":"Coffee","price":3.00,"quantity":1}],"total":14.0}"#
        );
        assert_eq!(c.model, "claude-sonnet-4-5-20250929");
        assert_eq!(c.request_id.as_deref(), Some("req_011CYK5mrecorded"));
        assert_eq!(c.usage, Usage { input_tokens: 406, output_tokens: 50, ..Usage::default() });
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 3);
        let sent = body_of(&received[2]);
        assert_eq!(sent["model"], "claude-sonnet-4-5");
        assert_eq!(sent["max_tokens"], 1024);
        assert_eq!(sent["system"], "You extract orders.");
        assert_eq!(sent["messages"], json!([{"role": "user", "content": request(None).prompt}]));
        assert!(sent.get("tools").is_none() && sent.get("tool_choice").is_none());
        assert!(received[2].headers.get("authorization").is_none());
    }

    #[tokio::test]
    async fn structured_output_uses_a_forced_tool_and_returns_its_input() {
        // The recorded tool_use answer of a real exchange (`get_weather`), with its request's schema.
        let Some(exchanges) =
            recording("tools__test_runners__TestSyncRunTools__f59a9391-643b-422c-96dc-1f28bc7ea4d7.json")
        else {
            return;
        };
        let schema = exchanges[0]["request"]["body"]["tools"][0]["input_schema"].clone();
        let server = strict_server().await;
        messages()
            .and(body_partial_json(json!({
                "tools": [{"name": "get_weather", "input_schema": schema}],
                "tool_choice": {"type": "tool", "name": "get_weather"},
            })))
            .respond_with(replay(&exchanges[0]))
            .expect(1)
            .mount(&server)
            .await;
        let mut req = request(Some(schema));
        req.json_schema.as_mut().unwrap().0 = "get_weather".to_owned();
        let c = Anthropic::new(settings(&server)).unwrap().complete(&req).await.unwrap();
        let answer: Value = serde_json::from_str(&c.text).unwrap();
        assert_eq!(answer, json!({"location": "San Francisco, CA", "units": "c"}));
        assert_eq!(c.usage, Usage { input_tokens: 659, output_tokens: 74, ..Usage::default() });
        assert_eq!(c.request_id.as_deref(), Some("msg_01QCEBW49MBPHFuFwMDoFtPP"));
    }

    #[tokio::test]
    async fn tool_names_are_sanitized_and_cache_usage_is_split() {
        let server = strict_server().await;
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "tool_use", "id": "toolu_1", "name": "order_details", "input": {"total": 14}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 300,
                      "output_tokens": 40}});
        messages()
            .and(body_partial_json(json!({"tool_choice": {"type": "tool", "name": "order_details"}})))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let c = Anthropic::new(settings(&server))
            .unwrap()
            .complete(&request(Some(json!({"type": "object"}))))
            .await
            .unwrap();
        assert_eq!(c.text, r#"{"total":14}"#);
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 12,
                cached_input_tokens: 2000,
                cache_write_tokens: 300,
                output_tokens: 40,
                ..Usage::default()
            }
        );
        assert_eq!(c.usage.total_input(), 2312);
    }

    #[tokio::test]
    async fn overloaded_529_is_retried() {
        let server = strict_server().await;
        messages()
            .respond_with(error(529, "overloaded_error", "Overloaded"))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        messages()
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "msg_2", "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let c = Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap();
        assert_eq!(c.text, "ok");
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let server = strict_server().await;
        messages()
            .respond_with(
                error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
                    .insert_header("retry-after", "1"),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        messages()
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"content": [{"type": "text", "text": "ok"}]})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let provider = Anthropic::new(settings(&server)).unwrap();
        let (answer, retries) = recording_retries(provider.complete(&request(None))).await;
        answer.unwrap();
        assert_eq!(
            retries.iter().map(|r| (r.wait, r.server_asked)).collect::<Vec<_>>(),
            [(Duration::from_secs(1), true)]
        );
    }

    #[tokio::test]
    async fn credit_balance_and_spend_limit_are_quota_without_retry() {
        for (status, kind, message) in [
            (400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."),
            (400, "invalid_request_error", "You have reached your specified API usage limits. You will regain access on 2025-12-01 at 00:00 UTC."),
            (403, "permission_error", "Your organization has reached its monthly spend limit."),
            (402, "billing_error", "Payment required."),
        ] {
            let server = strict_server().await;
            messages()
                .respond_with(error(status, kind, message).insert_header("x-should-retry", "true"))
                .expect(1)
                .mount(&server)
                .await;
            let err = Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap_err();
            assert!(matches!(err, ProviderError::Quota { .. }), "{status} {message}: {err:?}");
            assert!(!err.is_auth());
        }
    }

    #[tokio::test]
    async fn recorded_invalid_request_is_rejected_without_retry() {
        let Some(exchanges) =
            recording("tools__test_runners__TestSyncRunTools__f59a9391-643b-422c-96dc-1f28bc7ea4d7.json")
        else {
            return;
        };
        let server = strict_server().await;
        messages().respond_with(replay(&exchanges[1])).expect(1).mount(&server).await;
        let err = Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap_err();
        match err {
            ProviderError::Rejected { status: 400, message, .. } => {
                assert!(message.contains("unexpected `tool_use_id`"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn unauthorized_names_the_env_var_and_hides_the_key() {
        let server = strict_server().await;
        messages().respond_with(error(401, "authentication_error", "invalid x-api-key")).expect(1).mount(&server).await;
        let anthropic = Anthropic::new(settings(&server)).unwrap();
        let err = anthropic.complete(&request(None)).await.unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(text.contains("ANTHROPIC_API_KEY") && text.contains("401"), "{text}");
        assert!(!text.contains(KEY) && !format!("{err:?}").contains(KEY) && !format!("{anthropic:?}").contains(KEY));
    }

    #[tokio::test]
    async fn refusal_is_a_bad_answer() {
        let server = strict_server().await;
        messages()
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "msg_3", "content": [],
                "stop_reason": "refusal", "usage": {"input_tokens": 10, "output_tokens": 0}})))
            .expect(1)
            .mount(&server)
            .await;
        match Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("refused"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn server_errors_exhaust_retries_as_unavailable() {
        let server = strict_server().await;
        messages().respond_with(error(500, "api_error", "Internal server error")).expect(4).mount(&server).await;
        let err = Anthropic::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { status: 500, attempts: 4, .. }), "{err:?}");
    }
}
