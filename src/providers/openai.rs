//! OpenAI Chat Completions adapter (`POST {base_url}/chat/completions`), which also serves any
//! OpenAI-compatible server through `base_url`: Ollama (`http://localhost:11434/v1`), vLLM,
//! llama.cpp, OpenRouter, Groq.
//!
//! Source: <https://platform.openai.com/docs/api-reference/chat/create>. Structured output uses
//! `response_format: {type: json_schema, json_schema: {name, schema, strict}}`; a server that
//! rejects it with 400 is asked again with `{type: json_object}` and then plain text.
//!
//! Compatibility decisions (each remembered per adapter once learned, so later calls skip the
//! failing first try):
//! - **Output cap field.** OpenAI deprecated `max_tokens` in favour of `max_completion_tokens`
//!   and its reasoning models (o-series, gpt-5) reject `max_tokens` outright, while Ollama and
//!   other compatible servers only know `max_tokens`. Sending both breaks the former, so we send
//!   one: `max_completion_tokens` for `api.openai.com`, `max_tokens` elsewhere
//!   ([`MaxTokensParam::for_base_url`], overridable with [`OpenAi::with_max_tokens_param`]). A
//!   400 saying the field we sent is unsupported switches to the other field, once.
//! - **Structured output.** `strict: false` because strict mode demands every property be
//!   `required` and `additionalProperties: false`, which our schemas do not promise; we validate
//!   ourselves anyway ([`crate::providers::structured`]). On 400 mentioning
//!   `response_format`/`json_schema` we step down to `json_object`, then to no `response_format`;
//!   both fallbacks put the schema into the system prompt (OpenAI's `json_object` also requires
//!   the word "JSON" in the messages).
//!
//! Transport, retries and error mapping live in [`crate::providers::http`]; this module adds the
//! Chat Completions body and answer, OpenAI's `insufficient_quota` (never retried) and the
//! step-downs above. [`crate::providers::azure`] is this adapter in its Azure flavour.

use std::sync::atomic::{AtomicU8, Ordering};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::providers::http::{
    api_name, join_url, truncate, AttemptError, Classifier, EndpointSettings, ErrorClass, HttpClient, KeyHeader,
    RawAnswer, StatusError,
};
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};

/// Settings of one OpenAI-compatible endpoint: only the shared ones (`base_url` includes
/// `/v1`; `api_key` is `None` for local servers that need no key).
pub type OpenAiSettings = EndpointSettings;

/// Which request field carries the output-token cap ([`CompletionRequest::max_output_tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensParam {
    /// `max_completion_tokens`: OpenAI's current field, required by its reasoning models.
    MaxCompletionTokens,
    /// `max_tokens`: deprecated by OpenAI, the only one Ollama and older servers know.
    MaxTokens,
}

impl MaxTokensParam {
    /// `max_completion_tokens` for `api.openai.com`, `max_tokens` for every other server.
    pub fn for_base_url(base_url: &str) -> Self {
        let host = reqwest::Url::parse(base_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        match host.as_deref() {
            Some("api.openai.com") => MaxTokensParam::MaxCompletionTokens,
            _ => MaxTokensParam::MaxTokens,
        }
    }

    /// The JSON field name.
    pub fn field(self) -> &'static str {
        match self {
            MaxTokensParam::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensParam::MaxTokens => "max_tokens",
        }
    }

    fn other(self) -> Self {
        match self {
            MaxTokensParam::MaxCompletionTokens => MaxTokensParam::MaxTokens,
            MaxTokensParam::MaxTokens => MaxTokensParam::MaxCompletionTokens,
        }
    }

    fn from_u8(v: u8) -> Self {
        if v == 0 {
            MaxTokensParam::MaxCompletionTokens
        } else {
            MaxTokensParam::MaxTokens
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            MaxTokensParam::MaxCompletionTokens => 0,
            MaxTokensParam::MaxTokens => 1,
        }
    }
}

/// How the adapter asks for JSON when [`CompletionRequest::json_schema`] is set, from best to
/// most compatible. An adapter only ever moves down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JsonMode {
    /// `response_format: {type: json_schema, ...}` (constrained decoding where supported).
    JsonSchema = 0,
    /// `response_format: {type: json_object}` plus the schema in the system prompt.
    JsonObject = 1,
    /// No `response_format`; the schema and "JSON only" are asked for in the system prompt.
    Prompt = 2,
}

impl JsonMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => JsonMode::JsonSchema,
            1 => JsonMode::JsonObject,
            _ => JsonMode::Prompt,
        }
    }

    fn next(self) -> Self {
        match self {
            JsonMode::JsonSchema => JsonMode::JsonObject,
            JsonMode::JsonObject | JsonMode::Prompt => JsonMode::Prompt,
        }
    }
}

/// Which API dialect an [`OpenAi`] adapter speaks. Azure OpenAI is the same Chat Completions
/// API behind another URL and key header ([`crate::providers::azure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// OpenAI and OpenAI-compatible servers: `authorization: Bearer`, `model` in the body.
    OpenAi,
    /// Azure OpenAI: `api-key` header, the deployment in the URL instead of `model` in the body,
    /// content-filter verdicts turned into clear errors.
    Azure,
}

impl Flavour {
    /// Headers holding the request id, most specific first.
    fn request_id_headers(self) -> &'static [&'static str] {
        match self {
            Flavour::OpenAi => &["x-request-id"],
            Flavour::Azure => &["apim-request-id", "x-request-id"],
        }
    }
}

/// The adapter.
pub struct OpenAi {
    settings: OpenAiSettings,
    http: HttpClient,
    /// `{base_url}/chat/completions` (Azure: the deployment's URL), validated at construction.
    url: reqwest::Url,
    flavour: Flavour,
    /// [`JsonMode`] as u8: shared by concurrent calls, only ever increases.
    json_mode: AtomicU8,
    /// [`MaxTokensParam`] as u8.
    max_tokens_param: AtomicU8,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `settings` is Debug-safe (SecretString prints `[REDACTED]`), but spell the fields out
        // so a future field cannot leak by accident.
        f.debug_struct("OpenAi")
            .field("name", &self.settings.name)
            .field("model", &self.settings.model)
            .field("url", &self.url.as_str())
            .field("flavour", &self.flavour)
            .field("api_key_env", &self.settings.api_key_env)
            .field("has_key", &self.settings.api_key.is_some())
            .field("json_mode", &self.json_mode())
            .field("max_tokens_param", &self.max_tokens_param())
            .finish()
    }
}

impl OpenAi {
    /// Builds the client. Fails when the HTTP client cannot be built or `base_url` is not a URL
    /// ([`ProviderError::Config`]).
    pub fn new(settings: OpenAiSettings) -> Result<Self, ProviderError> {
        let url = join_url(&settings.name, "base_url", &settings.base_url, "/chat/completions")?;
        Self::with_endpoint(settings, url, Flavour::OpenAi)
    }

    /// An adapter that posts to `url` in `flavour`'s dialect (Azure builds its deployment URL
    /// itself). `settings.base_url` is only used to guess the output-cap field.
    pub(crate) fn with_endpoint(
        settings: OpenAiSettings,
        url: reqwest::Url,
        flavour: Flavour,
    ) -> Result<Self, ProviderError> {
        let (key_header, classify): (KeyHeader, Classifier) = match flavour {
            Flavour::OpenAi => (KeyHeader::Bearer, classify_openai),
            Flavour::Azure => (KeyHeader::Named("api-key"), classify_azure),
        };
        let http = HttpClient::new(settings.http_config(key_header, Vec::new(), classify))?;
        let param = MaxTokensParam::for_base_url(&settings.base_url);
        Ok(Self {
            settings,
            http,
            url,
            flavour,
            json_mode: AtomicU8::new(JsonMode::JsonSchema as u8),
            max_tokens_param: AtomicU8::new(param.to_u8()),
        })
    }

    /// The adapter with `auth` adding credentials to each attempt (Azure's Entra tokens).
    pub(crate) fn with_auth(self, auth: std::sync::Arc<dyn crate::providers::http::RequestAuth>) -> Self {
        Self { http: self.http.with_auth(auth), ..self }
    }

    /// Forces the output-cap field instead of guessing it from the host (config override for
    /// proxies in front of OpenAI, or servers that need `max_completion_tokens`).
    pub fn with_max_tokens_param(self, param: MaxTokensParam) -> Self {
        self.max_tokens_param.store(param.to_u8(), Ordering::Relaxed);
        self
    }

    /// The structured-output mode the next call will use (after any remembered downgrade).
    pub fn json_mode(&self) -> JsonMode {
        JsonMode::from_u8(self.json_mode.load(Ordering::Relaxed))
    }

    /// The output-cap field the next call will send.
    pub fn max_tokens_param(&self) -> MaxTokensParam {
        MaxTokensParam::from_u8(self.max_tokens_param.load(Ordering::Relaxed))
    }

    /// The request body for `req` in `mode` (None: plain text wanted).
    fn body(&self, req: &CompletionRequest, mode: Option<JsonMode>, param: MaxTokensParam) -> Value {
        let mut system = req.system.clone();
        let mut response_format = None;
        if let (Some((name, schema)), Some(mode)) = (&req.json_schema, mode) {
            match mode {
                JsonMode::JsonSchema => {
                    response_format = Some(json!({
                        "type": "json_schema",
                        "json_schema": { "name": api_name(name), "schema": schema, "strict": false },
                    }));
                }
                JsonMode::JsonObject => {
                    response_format = Some(json!({ "type": "json_object" }));
                    system.push_str(&json_instructions(schema));
                }
                JsonMode::Prompt => system.push_str(&json_instructions(schema)),
            }
        }
        let mut body = json!({
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": req.prompt },
            ],
        });
        if let Some(obj) = body.as_object_mut() {
            // Azure routes by the deployment in the URL and ignores `model`.
            if self.flavour == Flavour::OpenAi {
                obj.insert("model".to_owned(), json!(self.settings.model));
            }
            obj.insert(param.field().to_owned(), json!(req.max_output_tokens));
            if let Some(t) = req.temperature {
                obj.insert("temperature".to_owned(), json!(t));
            }
            if let Some(rf) = response_format {
                obj.insert("response_format".to_owned(), rf);
            }
            // OpenAI caches a repeated prefix by itself; the key routes the requests of one
            // run to the same cache. Sent to OpenAI's own API only: an OpenAI-compatible
            // server or an older Azure API version may refuse a field it does not know.
            if let (Some(cache), true) = (&req.prompt_cache, self.sends_prompt_cache_key()) {
                obj.insert("prompt_cache_key".to_owned(), json!(cache.key));
            }
        }
        body
    }

    /// Whether requests carry `prompt_cache_key`
    /// (<https://platform.openai.com/docs/api-reference/chat/create>): OpenAI's own API
    /// (`api.openai.com`) only. Decision: Azure documents the field for its newest models only,
    /// and caches a byte-identical prefix of 1024 tokens or more without it.
    fn sends_prompt_cache_key(&self) -> bool {
        self.flavour == Flavour::OpenAi
            && reqwest::Url::parse(&self.settings.base_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .is_some_and(|h| h == "api.openai.com")
    }

    async fn complete_inner(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut swapped_param = false;
        loop {
            let mode = req.json_schema.as_ref().map(|_| self.json_mode());
            let param = self.max_tokens_param();
            let body = self.body(req, mode, param);
            let exhausted = match self.http.post(&self.url, &body, req.max_output_tokens).await {
                Ok(answer) => return self.parse_answer(answer),
                Err(exhausted) => exhausted,
            };
            if let AttemptError::Status(err) = &exhausted.error {
                if err.status == 400 && err.class == ErrorClass::ByStatus {
                    if let Some(mode) = mode.filter(|m| *m != JsonMode::Prompt) {
                        if err.mentions_any(&["response_format", "json_schema", "json_object"]) {
                            // fetch_max: a concurrent call may have stepped further down already.
                            self.json_mode.fetch_max(mode.next() as u8, Ordering::Relaxed);
                            continue;
                        }
                    }
                    if !swapped_param && says_unsupported(err, param.field()) {
                        swapped_param = true;
                        self.max_tokens_param.store(param.other().to_u8(), Ordering::Relaxed);
                        continue;
                    }
                }
            }
            return Err(self.http.map_exhausted(exhausted));
        }
    }

    fn parse_answer(&self, answer: RawAnswer) -> Result<Completion, ProviderError> {
        let parsed: ChatResponse = self.http.parse(&answer, "a chat completion")?;
        let choice = parsed.choices.first().ok_or_else(|| self.http.bad_answer("the response has no choices"))?;
        let message = choice.message.as_ref();
        if let Some(refusal) = message.and_then(|m| m.refusal.as_deref()).filter(|r| !r.trim().is_empty()) {
            return Err(self.http.bad_answer(format!("the model refused: {}", truncate(refusal))));
        }
        if self.flavour == Flavour::Azure && choice.finish_reason.as_deref() == Some("content_filter") {
            // Azure cuts the answer (or withholds it) when its content filter fires; what is left
            // is not a usable review.
            return Err(self.http.bad_answer(
                "the answer was withheld by Azure OpenAI's content filter (finish_reason: content_filter)",
            ));
        }
        let text = message.and_then(|m| m.content.clone()).unwrap_or_default();
        let finish_reason = choice.finish_reason.clone();
        if text.trim().is_empty() {
            let reason = choice.finish_reason.as_deref().unwrap_or("none");
            return Err(self.http.bad_answer(format!("empty answer (finish_reason: {reason})")));
        }
        let request_id = answer.header(self.flavour.request_id_headers()).or(parsed.id);
        Ok(Completion {
            text,
            usage: parsed.usage.map(ApiUsage::normalize).unwrap_or_default(),
            model: parsed.model.filter(|m| !m.is_empty()).unwrap_or_else(|| self.settings.model.clone()),
            latency: answer.latency,
            request_id,
            finish_reason,
            reported_cost_usd: None,
        })
    }
}

impl Provider for OpenAi {
    fn gen_ai_provider(&self) -> &'static str {
        super::gen_ai_provider_name(&crate::config::ProviderKind::Openai)
    }

    fn name(&self) -> &str {
        &self.settings.name
    }
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(self.complete_inner(req))
    }
}

/// OpenAI's `json_schema.name` must match `^[a-zA-Z0-9_-]{1,64}$`.
#[cfg(test)]
fn schema_name(name: &str) -> String {
    api_name(name)
}

/// The system-prompt addition for servers without native schema support.
fn json_instructions(schema: &Value) -> String {
    let schema = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    format!(
        "\n\nAnswer with one JSON object and nothing else: no Markdown fences, no prose before or after. \
         The JSON must be valid against this JSON Schema:\n{schema}"
    )
}

/// OpenAI's quota error: `429` with `insufficient_quota` as `code` or `type`. Never retried.
fn classify_openai(err: &mut StatusError) {
    if err.status == 429 && [&err.code, &err.kind].iter().any(|v| v.as_deref() == Some("insufficient_quota")) {
        err.class = ErrorClass::Quota;
    }
}

/// Azure adds its content filter: `400` with `code: content_filter` (the prompt tripped it),
/// documented at <https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter>;
/// the `innererror.code` is `ResponsibleAIPolicyViolation`. Sending it again will not help.
fn classify_azure(err: &mut StatusError) {
    classify_openai(err);
    let inner =
        err.json.as_ref().and_then(|v| v.pointer("/error/innererror/code")).and_then(Value::as_str).map(str::to_owned);
    if err.code.as_deref() == Some("content_filter") || inner.as_deref() == Some("ResponsibleAIPolicyViolation") {
        err.class = ErrorClass::BadAnswer(format!(
            "the request was blocked by Azure OpenAI's content filter ({}): {}",
            err.status,
            err.message()
        ));
    }
}

/// Whether the error says the request field `field` is not accepted (OpenAI: "Unsupported
/// parameter: 'max_tokens' ..."; pydantic-based servers: "extra fields not permitted").
fn says_unsupported(err: &StatusError, field: &str) -> bool {
    let text = err.raw_message.to_ascii_lowercase();
    let named = err.param.as_deref() == Some(field) || text.contains(field);
    named
        && ["unsupported", "not supported", "unrecognized", "unknown", "not permitted", "extra"]
            .iter()
            .any(|w| text.contains(w))
}

/// The parts of a chat completion we read.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// OpenAI's `usage`; compatible servers often omit the details (or send nulls).
#[derive(Debug, Default, Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl ApiUsage {
    /// `prompt_tokens` includes cached reads; we split them so the classes add up to the bill.
    fn normalize(self) -> Usage {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let cached = self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
        Usage {
            input_tokens: prompt.saturating_sub(cached),
            cached_input_tokens: cached,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: self.completion_tokens.unwrap_or(0),
            reasoning_tokens: self.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::resilience::{recording_retries, RetryPolicy};
    use secrecy::SecretString;
    use std::time::Duration;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

    const KEY: &str = "sk-test-0123456789abcdef";
    const DEFAULT_RESPONSE: &str = include_str!("../../tests/fixtures/llm/openai.default.response.json");

    use crate::providers::http::tests::strict_server as server;

    fn settings(server: &MockServer) -> OpenAiSettings {
        OpenAiSettings {
            name: "main".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            base_url: format!("{}/v1", server.uri()),
            api_key: Some(SecretString::from(KEY)),
            api_key_env: "OPENAI_API_KEY".to_owned(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy { max_retries: 3, base: Duration::from_millis(2), cap: Duration::from_secs(30) },
        }
    }

    fn request(schema: bool) -> CompletionRequest {
        CompletionRequest {
            system: "You review code.".to_owned(),
            prompt: "Review this diff.".to_owned(),
            json_schema: schema.then(|| ("review".to_owned(), json!({"type": "object", "required": ["summary"]}))),
            max_output_tokens: 256,
            temperature: None,
            prompt_cache: None,
        }
    }

    #[test]
    fn prompt_cache_key_goes_to_openai_itself_only() {
        let cache = crate::providers::PromptCache { prefix: String::new(), one_hour: false, key: "abc123".into() };
        let req = CompletionRequest { prompt_cache: Some(cache), ..request(false) };
        let with_base = |base_url: &str, flavour| {
            let s = OpenAiSettings {
                name: "main".into(),
                model: "gpt-4o".into(),
                base_url: base_url.into(),
                api_key: None,
                api_key_env: "OPENAI_API_KEY".into(),
                timeout: Duration::from_secs(5),
                retry: RetryPolicy { max_retries: 0, base: Duration::from_millis(2), cap: Duration::from_secs(1) },
            };
            let url = reqwest::Url::parse(&format!("{base_url}/chat/completions")).unwrap();
            OpenAi::with_endpoint(s, url, flavour).unwrap()
        };
        let openai = with_base("https://api.openai.com/v1", Flavour::OpenAi);
        assert_eq!(openai.body(&req, None, MaxTokensParam::MaxTokens)["prompt_cache_key"], "abc123");
        let ollama = with_base("http://localhost:11434/v1", Flavour::OpenAi);
        assert!(ollama.body(&req, None, MaxTokensParam::MaxTokens).get("prompt_cache_key").is_none());
        let azure = with_base("https://r.openai.azure.com", Flavour::Azure);
        assert!(azure.body(&req, None, MaxTokensParam::MaxTokens).get("prompt_cache_key").is_none());
        assert!(openai.body(&request(false), None, MaxTokensParam::MaxTokens).get("prompt_cache_key").is_none());
    }

    fn chat(content: &str, usage: Value) -> Value {
        json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        })
    }

    fn completions() -> MockBuilder {
        Mock::given(method("POST")).and(path("/v1/chat/completions"))
    }

    fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }

    fn body_of(req: &Request) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    #[tokio::test]
    async fn replays_openai_docs_example_with_json_schema() {
        let server = server().await;
        completions()
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_partial_json(json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You review code."},
                    {"role": "user", "content": "Review this diff."},
                ],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "review", "strict": false,
                    "schema": {"type": "object", "required": ["summary"]},
                }},
                "max_completion_tokens": 256,
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-request-id", "req_123")
                    .set_body_raw(DEFAULT_RESPONSE, "application/json"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap().with_max_tokens_param(MaxTokensParam::MaxCompletionTokens);
        let c = openai.complete(&request(true)).await.unwrap();
        assert_eq!(c.text, "Hello! How can I assist you today?");
        assert_eq!(c.model, "gpt-5.4");
        assert_eq!(c.request_id.as_deref(), Some("req_123"));
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 19,
                cached_input_tokens: 0,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                output_tokens: 10,
                reasoning_tokens: 0
            }
        );
        let sent = body_of(&server.received_requests().await.unwrap()[0]);
        assert!(sent.get("max_tokens").is_none(), "both cap fields sent: {sent}");
        assert!(sent.get("temperature").is_none());
    }

    #[tokio::test]
    async fn ollama_style_server_without_key_or_usage_details() {
        let server = server().await;
        let body = json!({
            "id": "chatcmpl-648",
            "object": "chat.completion",
            "created": 1733000000,
            "model": "llama3.2",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Looks fine."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        });
        completions()
            .and(body_partial_json(json!({"model": "llama3.2", "max_tokens": 256, "temperature": 0.0})))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let mut s = settings(&server);
        s.api_key = None;
        s.model = "llama3.2".to_owned();
        let openai = OpenAi::new(s).unwrap();
        assert_eq!(openai.max_tokens_param(), MaxTokensParam::MaxTokens);
        let mut req = request(false);
        req.temperature = Some(0.0);
        let c = openai.complete(&req).await.unwrap();
        assert_eq!(c.text, "Looks fine.");
        assert_eq!(c.request_id.as_deref(), Some("chatcmpl-648"));
        assert_eq!(c.usage, Usage { input_tokens: 42, output_tokens: 7, ..Usage::default() });
        let received = server.received_requests().await.unwrap();
        assert!(received[0].headers.get("authorization").is_none());
        let sent = body_of(&received[0]);
        assert!(sent.get("max_completion_tokens").is_none());
        assert!(sent.get("response_format").is_none());
    }

    #[test]
    fn max_tokens_field_follows_the_host() {
        assert_eq!(MaxTokensParam::for_base_url("https://api.openai.com/v1"), MaxTokensParam::MaxCompletionTokens);
        assert_eq!(MaxTokensParam::for_base_url("http://localhost:11434/v1"), MaxTokensParam::MaxTokens);
        assert_eq!(MaxTokensParam::for_base_url("https://openrouter.ai/api/v1"), MaxTokensParam::MaxTokens);
    }

    #[tokio::test]
    async fn cached_tokens_are_split_from_input() {
        let server = server().await;
        let usage = json!({
            "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
            "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
        });
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", usage)))
            .expect(1)
            .mount(&server)
            .await;
        let c = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap();
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 464,
                cached_input_tokens: 1536,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                output_tokens: 300,
                reasoning_tokens: 128
            }
        );
        assert_eq!(c.usage.total_input(), 2000);
    }

    #[tokio::test]
    async fn null_usage_details_count_as_zero() {
        let server = server().await;
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": null,
                           "completion_tokens_details": {"reasoning_tokens": null}});
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", usage)))
            .expect(1)
            .mount(&server)
            .await;
        let c = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap();
        assert_eq!(c.usage, Usage { input_tokens: 10, output_tokens: 2, ..Usage::default() });
    }

    #[tokio::test]
    async fn unsupported_json_schema_downgrades_to_json_object_and_remembers() {
        let server = server().await;
        completions()
            .and(body_partial_json(json!({"response_format": {"type": "json_schema"}})))
            .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
                "response_format json_schema is not supported by this server",
                "invalid_request_error",
                None,
            )))
            .expect(1)
            .mount(&server)
            .await;
        completions()
            .and(body_partial_json(json!({"response_format": {"type": "json_object"}})))
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("{\"summary\": \"ok\"}", json!({}))))
            .expect(2)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap();
        let c = openai.complete(&request(true)).await.unwrap();
        assert_eq!(c.text, "{\"summary\": \"ok\"}");
        assert_eq!(openai.json_mode(), JsonMode::JsonObject);
        // The second call goes straight to json_object (the json_schema mock expects 1 call).
        openai.complete(&request(true)).await.unwrap();
        let received = server.received_requests().await.unwrap();
        let system = body_of(&received[1])["messages"][0]["content"].as_str().unwrap().to_owned();
        assert!(system.contains("JSON Schema") && system.contains("\"summary\""), "{system}");
    }

    #[tokio::test]
    async fn server_without_response_format_gets_the_schema_in_the_prompt() {
        let server = server().await;
        completions()
            .and(|r: &Request| body_of(r).get("response_format").is_some())
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "unknown field response_format"})))
            .expect(2)
            .mount(&server)
            .await;
        completions()
            .and(|r: &Request| body_of(r).get("response_format").is_none())
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("{}", json!({}))))
            .expect(1)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap();
        openai.complete(&request(true)).await.unwrap();
        assert_eq!(openai.json_mode(), JsonMode::Prompt);
    }

    #[tokio::test]
    async fn unsupported_max_tokens_switches_field_once() {
        let server = server().await;
        completions()
            .and(|r: &Request| body_of(r).get("max_tokens").is_some())
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})))
            .expect(1)
            .mount(&server)
            .await;
        completions()
            .and(body_partial_json(json!({"max_completion_tokens": 256})))
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", json!({}))))
            .expect(1)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap();
        openai.complete(&request(false)).await.unwrap();
        assert_eq!(openai.max_tokens_param(), MaxTokensParam::MaxCompletionTokens);
    }

    #[tokio::test]
    async fn rate_limit_retry_after_is_honoured() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(error_body(
                "Rate limit reached",
                "requests",
                Some("rate_limit_exceeded"),
            )))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", json!({}))))
            .expect(1)
            .mount(&server)
            .await;
        let provider = OpenAi::new(settings(&server)).unwrap();
        let (answer, retries) = recording_retries(provider.complete(&request(false))).await;
        answer.unwrap();
        assert_eq!(
            retries.iter().map(|r| (r.wait, r.server_asked)).collect::<Vec<_>>(),
            [(Duration::from_secs(1), true)]
        );
    }

    #[tokio::test]
    async fn retry_after_over_the_cap_fails_fast() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600").set_body_json(error_body(
                "Rate limit reached",
                "requests",
                Some("rate_limit_exceeded"),
            )))
            .expect(1)
            .mount(&server)
            .await;
        let provider = OpenAi::new(settings(&server)).unwrap();
        let (err, retries) = recording_retries(provider.complete(&request(false))).await;
        let err = err.unwrap_err();
        assert!(retries.is_empty(), "{retries:?}");
        match &err {
            ProviderError::Unavailable { status: 429, attempts: 1, message, .. } => {
                assert!(message.contains("600.0 s") && message.contains("30.0 s cap"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_success() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(500).set_body_json(error_body("boom", "server_error", None)))
            .up_to_n_times(2)
            .with_priority(1)
            .expect(2)
            .mount(&server)
            .await;
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("ok", json!({}))))
            .expect(1)
            .mount(&server)
            .await;
        let c = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap();
        assert_eq!(c.text, "ok");
    }

    #[tokio::test]
    async fn server_errors_exhaust_retries_as_unavailable() {
        let server = server().await;
        completions().respond_with(ResponseTemplate::new(503)).expect(4).mount(&server).await;
        let err = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { status: 503, attempts: 4, .. }), "{err:?}");
    }

    #[tokio::test]
    async fn unauthorized_names_the_env_var_and_hides_the_key() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(401).set_body_json(error_body(
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            )))
            .expect(1)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap();
        let err = openai.complete(&request(false)).await.unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(text.contains("OPENAI_API_KEY") && text.contains("401"), "{text}");
        assert!(!text.contains(KEY) && !format!("{err:?}").contains(KEY));
        assert!(!format!("{openai:?}").contains(KEY));
        assert!(!format!("{:?}", settings(&server)).contains(KEY));
    }

    #[tokio::test]
    async fn insufficient_quota_is_never_retried() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(429).set_body_json(error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                Some("insufficient_quota"),
            )))
            .expect(1)
            .mount(&server)
            .await;
        let err = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn bad_request_is_rejected_without_retry() {
        let server = server().await;
        completions()
            .respond_with(ResponseTemplate::new(400).insert_header("x-should-retry", "true").set_body_json(error_body(
                "Invalid value for 'temperature'.",
                "invalid_request_error",
                None,
            )))
            .expect(1)
            .mount(&server)
            .await;
        let err = OpenAi::new(settings(&server)).unwrap().complete(&request(false)).await.unwrap_err();
        match err {
            ProviderError::Rejected { status: 400, message, .. } => assert!(message.contains("temperature")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn slow_server_times_out_per_attempt() {
        let server = server().await;
        completions()
            .respond_with(
                ResponseTemplate::new(200).set_body_json(chat("late", json!({}))).set_delay(Duration::from_secs(2)),
            )
            .expect(2)
            .mount(&server)
            .await;
        let mut s = settings(&server);
        s.timeout = Duration::from_millis(150);
        s.retry.max_retries = 1;
        let (err, retries) = recording_retries(OpenAi::new(s).unwrap().complete(&request(false))).await;
        assert_eq!(retries.iter().map(|r| r.status).collect::<Vec<_>>(), [None], "the timeout was retried once");
        match err.unwrap_err() {
            ProviderError::Network { attempts: 2, message, .. } => assert!(message.contains("timed out"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn refusal_and_empty_content_are_bad_answers() {
        let server = server().await;
        let refusal = json!({"id": "x", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]});
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(refusal))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        completions()
            .respond_with(ResponseTemplate::new(200).set_body_json(chat("  ", json!({}))))
            .expect(1)
            .mount(&server)
            .await;
        let openai = OpenAi::new(settings(&server)).unwrap();
        match openai.complete(&request(false)).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("refused"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        match openai.complete(&request(false)).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("empty"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invalid_base_url_is_a_config_error() {
        let s = OpenAiSettings {
            name: "main".to_owned(),
            model: "m".to_owned(),
            base_url: "not a url".to_owned(),
            api_key: None,
            api_key_env: "OPENAI_API_KEY".to_owned(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        assert!(matches!(OpenAi::new(s), Err(ProviderError::Config { .. })));
    }

    #[test]
    fn schema_names_are_sanitized() {
        assert_eq!(schema_name("review-output"), "review-output");
        assert_eq!(schema_name("review output.v1"), "review_output_v1");
        assert_eq!(schema_name(""), "answer");
        assert_eq!(schema_name(&"x".repeat(100)).len(), 64);
    }
}
