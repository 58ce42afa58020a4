//! Gemini API adapter: `POST {base_url}/models/{model}:generateContent` with the key in the
//! `x-goog-api-key` header (never the `?key=` query parameter: URLs end up in logs and proxies).
//!
//! Source: <https://ai.google.dev/api/generate-content> and the fixtures in the shared corpora
//! (`llm-apis/gemini/`: the Firebase AI SDKs' mock responses and the REST cookbook).
//!
//! - **Structured output**: `generationConfig.responseMimeType: application/json` with a
//!   `responseSchema`, which takes Gemini's OpenAPI 3.0 subset, not full JSON Schema; a schema
//!   keyword outside the subset is a 400 ("Unknown name"). [`to_gemini_schema`] converts.
//! - **Text**: the first candidate's `parts[].text`, without the `thought: true` parts (thought
//!   summaries of thinking models).
//! - **Usage**: `promptTokenCount` includes `cachedContentTokenCount`, so uncached input is the
//!   difference; `candidatesTokenCount` excludes `thoughtsTokenCount`, which is billed as
//!   output, so output is their sum and reasoning is the thoughts.
//! - **Safety**: `promptFeedback` with a `blockReason` (or no candidates at all), or a candidate
//!   stopped with `finishReason` `SAFETY`, `RECITATION`, `PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`
//!   or `IMAGE_SAFETY`, is a [`ProviderError::Blocked`]. A candidate stopped that way may carry
//!   the text generated before the stop; it is cut short and is not used.
//! - **Errors**: Google RPC `{"error": {code, message, status, details}}`. `RESOURCE_EXHAUSTED`
//!   with a zero quota (`limit: 0` in the message, `quota_limit_value: "0"` or a `QuotaFailure`
//!   violation with `quotaValue: "0"`: the model is not available on the plan at all) is
//!   [`ProviderError::Quota`] and never retried; other 429s are retried, honouring the
//!   `RetryInfo.retryDelay` of the body as if it were `retry-after`. An invalid key
//!   (`API_KEY_INVALID`, sent as 400 "API key not valid") is [`ProviderError::Auth`].

use futures::future::BoxFuture;
use http::HeaderValue;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::providers::http::{join_url, EndpointSettings, ErrorClass, HttpClient, KeyHeader, RawAnswer, StatusError};
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};

/// The Gemini Developer API root, the default `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The env var the key is read from unless the config names another.
/// NOTE: belongs in `crate::env_vars` once the config wiring lands.
pub const DEFAULT_API_KEY_ENV: &str = crate::env_vars::GEMINI_API_KEY;

/// `finishReason`s meaning a safety system stopped the answer.
const BLOCKING_FINISH_REASONS: &[&str] =
    &["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"];

/// Schema keywords Gemini's `responseSchema` (OpenAPI 3.0 subset) accepts and we pass on.
/// `properties`, `items`, `anyOf`, `type`, `enum` and `format` are handled apart.
const KEPT_KEYWORDS: &[&str] = &[
    "title",
    "description",
    "nullable",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
];

/// `format` values Gemini accepts; others (`uri`, `email`, ...) are dropped (we validate anyway).
const KEPT_FORMATS: &[&str] = &["date-time", "enum", "int32", "int64", "float", "double"];

/// How deep `$ref`s are inlined; a recursive schema is cut off there, as Gemini's subset has no
/// references.
const MAX_REF_DEPTH: u32 = 8;

/// Settings of one Gemini endpoint: only the shared ones. `model` is e.g. `gemini-2.5-flash`
/// (a `models/` prefix is accepted and stripped); `base_url` includes the version
/// ([`DEFAULT_BASE_URL`] by default); the key is sent as `x-goog-api-key` and read from
/// [`DEFAULT_API_KEY_ENV`] unless the config names another variable.
pub type GeminiSettings = EndpointSettings;

/// The adapter.
pub struct Gemini {
    settings: GeminiSettings,
    http: HttpClient,
    /// `gen_ai.provider.name`: `gcp.gemini`, or `gcp.vertex_ai` ([`Gemini::on_vertex`]).
    gen_ai_provider: &'static str,
    /// `{base_url}/models/{model}:generateContent`, validated at construction; holds no key.
    url: reqwest::Url,
}

impl std::fmt::Debug for Gemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemini")
            .field("name", &self.settings.name)
            .field("model", &self.settings.model)
            .field("url", &self.url.as_str())
            .field("api_key_env", &self.settings.api_key_env)
            .field("has_key", &self.settings.api_key.is_some())
            .finish()
    }
}

impl Gemini {
    /// Builds the client. Errors ([`ProviderError::Config`]): an empty model, a `base_url` that
    /// is not an http(s) URL, a key that cannot be sent as a header, or no HTTP client.
    pub fn new(settings: GeminiSettings) -> Result<Self, ProviderError> {
        let model = settings.model.trim();
        let model = model.strip_prefix("models/").unwrap_or(model);
        if model.is_empty() {
            return Err(ProviderError::Config {
                provider: settings.name.clone(),
                message: "no `model` set for this Gemini provider".to_owned(),
            });
        }
        let path = format!("/models/{}:generateContent", urlencoding::encode(model));
        let url = join_url(&settings.name, "base_url", &settings.base_url, &path)?;
        let http =
            HttpClient::new(settings.http_config(KeyHeader::Named("x-goog-api-key"), Vec::new(), classify_gemini))?;
        Ok(Self {
            settings,
            http,
            url,
            gen_ai_provider: super::gen_ai_provider_name(&crate::config::ProviderKind::Gemini),
        })
    }

    /// The same API on Vertex AI (`kind: vertex`, [`crate::providers::vertex`]): the
    /// `…/publishers/google/models/{model}:generateContent` `url`, an OAuth token from `auth`
    /// instead of a key. Errors: no HTTP client.
    pub(crate) fn on_vertex(
        settings: GeminiSettings,
        url: reqwest::Url,
        auth: std::sync::Arc<dyn crate::providers::http::RequestAuth>,
    ) -> Result<Self, ProviderError> {
        let http =
            HttpClient::new(settings.http_config(KeyHeader::Bearer, Vec::new(), classify_gemini))?.with_auth(auth);
        Ok(Self {
            settings,
            http,
            url,
            gen_ai_provider: super::gen_ai_provider_name(&crate::config::ProviderKind::Vertex),
        })
    }

    /// The `generateContent` body: `systemInstruction`, one user turn, `generationConfig`.
    fn body(&self, req: &CompletionRequest) -> Value {
        let mut config = Map::new();
        config.insert("maxOutputTokens".to_owned(), json!(req.max_output_tokens));
        if let Some(t) = req.temperature {
            config.insert("temperature".to_owned(), json!(t));
        }
        if let Some((_, schema)) = &req.json_schema {
            config.insert("responseMimeType".to_owned(), json!("application/json"));
            config.insert("responseSchema".to_owned(), to_gemini_schema(schema));
        }
        let mut body = json!({
            "contents": [{ "role": "user", "parts": [{ "text": req.prompt }] }],
            "generationConfig": config,
        });
        if !req.system.is_empty() {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("systemInstruction".to_owned(), json!({ "parts": [{ "text": req.system }] }));
            }
        }
        body
    }

    async fn complete_inner(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let body = self.body(req);
        let answer = self.http.post_json(&self.url, &body, req.max_output_tokens).await?;
        self.parse_answer(answer)
    }

    fn parse_answer(&self, answer: RawAnswer) -> Result<Completion, ProviderError> {
        let parsed: GenerateResponse = self.http.parse(&answer, "a generateContent response")?;
        let blocked = |reason: String| ProviderError::Blocked { provider: self.settings.name.clone(), reason };
        if let Some(feedback) = &parsed.prompt_feedback {
            // No candidates with prompt feedback means the prompt was blocked even when the
            // reason is missing (seen with only `blockReasonMessage`).
            if feedback.block_reason.is_some() || parsed.candidates.is_empty() {
                let reason = feedback.block_reason.as_deref().unwrap_or("no reason given");
                let message = note(feedback.block_reason_message.as_deref());
                return Err(blocked(format!("the prompt was blocked ({reason}){message}")));
            }
        }
        let candidate =
            parsed.candidates.first().ok_or_else(|| self.http.bad_answer("the response has no candidates"))?;
        let finish = candidate.finish_reason.as_deref().unwrap_or("none");
        let finish_reason = candidate.finish_reason.clone();
        if BLOCKING_FINISH_REASONS.contains(&finish) {
            let message = note(candidate.finish_message.as_deref());
            return Err(blocked(format!("the answer was stopped (finishReason: {finish}){message}")));
        }
        let text: String = candidate
            .content
            .iter()
            .flat_map(|c| c.parts.iter())
            .filter(|p| !p.thought)
            .filter_map(|p| p.text.as_deref())
            .collect();
        if text.trim().is_empty() {
            let message = note(candidate.finish_message.as_deref());
            return Err(self.http.bad_answer(format!("empty answer (finishReason: {finish}){message}")));
        }
        Ok(Completion {
            text,
            usage: parsed.usage_metadata.map(UsageMetadata::normalize).unwrap_or_default(),
            model: parsed.model_version.filter(|m| !m.is_empty()).unwrap_or_else(|| self.settings.model.clone()),
            latency: answer.latency,
            request_id: parsed.response_id.filter(|id| !id.is_empty()),
            finish_reason,
            reported_cost_usd: None,
        })
    }
}

impl Provider for Gemini {
    fn gen_ai_provider(&self) -> &'static str {
        self.gen_ai_provider
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

/// `": message"` for an optional provider message, or nothing.
fn note(message: Option<&str>) -> String {
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!(": {}", crate::providers::http::truncate(m)),
        None => String::new(),
    }
}

/// Converts a JSON Schema into Gemini's `responseSchema` subset (OpenAPI 3.0 Schema object):
/// local `$ref`s (`#/$defs/..`, `#/definitions/..`) are inlined; `type: [T, "null"]` becomes
/// `type: T, nullable: true`; `const` becomes a one-value `enum`; `oneOf` becomes `anyOf`; an
/// `enum` of strings gets `type: string` (Gemini's enums are strings only; an enum of other
/// values is dropped and left to our validator); keywords outside the subset (`$schema`, `$id`,
/// `default`, `examples`, `additionalProperties`, ...) are dropped. Property names are kept as
/// they are, even when they look like keywords (`title`).
pub fn to_gemini_schema(schema: &Value) -> Value {
    convert(schema, schema, 0)
}

fn convert(node: &Value, root: &Value, depth: u32) -> Value {
    let Some(obj) = node.as_object() else {
        // `true` / `{}`-like schemas: anything goes; Gemini needs at least a type.
        return json!({ "type": "string" });
    };
    if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
        let resolved = target.strip_prefix('#').and_then(|pointer| root.pointer(pointer));
        let mut out = match resolved {
            Some(target) if depth < MAX_REF_DEPTH => convert(target, root, depth + 1),
            _ => json!({ "type": "object" }),
        };
        // A description beside the `$ref` describes this use of the definition.
        if let (Some(map), Some(description)) = (out.as_object_mut(), obj.get("description")) {
            map.insert("description".to_owned(), description.clone());
        }
        return out;
    }
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "type" => match value {
                Value::Array(types) => {
                    let concrete: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                    if let Some(first) = concrete.first() {
                        out.insert("type".to_owned(), (*first).clone());
                    }
                    if concrete.len() < types.len() {
                        out.insert("nullable".to_owned(), json!(true));
                    }
                }
                Value::String(t) if t == "null" => {
                    out.insert("nullable".to_owned(), json!(true));
                }
                other => {
                    out.insert("type".to_owned(), other.clone());
                }
            },
            "properties" => {
                if let Some(props) = value.as_object().filter(|p| !p.is_empty()) {
                    let converted: Map<String, Value> =
                        props.iter().map(|(name, sub)| (name.clone(), convert(sub, root, depth))).collect();
                    out.insert("properties".to_owned(), Value::Object(converted));
                }
            }
            "items" => {
                // Tuple-style `items: [..]` (draft 4..2019) has no equivalent: use the first.
                let sub = match value {
                    Value::Array(list) => list.first().cloned().unwrap_or(Value::Bool(true)),
                    other => other.clone(),
                };
                out.insert("items".to_owned(), convert(&sub, root, depth));
            }
            "anyOf" | "oneOf" => {
                if let Some(list) = value.as_array() {
                    let converted: Vec<Value> = list.iter().map(|sub| convert(sub, root, depth)).collect();
                    out.insert("anyOf".to_owned(), Value::Array(converted));
                }
            }
            "enum" | "const" => {
                let values = match value {
                    Value::Array(list) => list.clone(),
                    single => vec![single.clone()],
                };
                let strings: Vec<&Value> = values.iter().filter(|v| v.is_string()).collect();
                if values.iter().any(Value::is_null) {
                    out.insert("nullable".to_owned(), json!(true));
                }
                if !strings.is_empty() && strings.len() + values.iter().filter(|v| v.is_null()).count() == values.len()
                {
                    out.insert("enum".to_owned(), json!(strings));
                }
            }
            "format" if value.as_str().is_some_and(|f| KEPT_FORMATS.contains(&f)) => {
                out.insert("format".to_owned(), value.clone());
            }
            "required" if value.as_array().is_some_and(|r| !r.is_empty()) => {
                out.insert("required".to_owned(), value.clone());
            }
            // An unsupported format or an empty `required` is dropped, never kept as is.
            "format" | "required" => {}
            k if KEPT_KEYWORDS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if out.contains_key("enum") {
        out.insert("type".to_owned(), json!("string"));
    }
    if !out.contains_key("type") && !out.contains_key("anyOf") {
        // Gemini wants a type on every schema; infer it from what the schema constrains.
        let inferred = if out.contains_key("properties") {
            "object"
        } else if out.contains_key("items") {
            "array"
        } else {
            "string"
        };
        out.insert("type".to_owned(), json!(inferred));
    }
    Value::Object(out)
}

/// Google RPC errors: an invalid key is auth whatever the status; a zero quota is quota (no
/// retry); `RetryInfo.retryDelay` becomes a `retry-after` header for the retry policy.
fn classify_gemini(err: &mut StatusError) {
    let details: Vec<Value> = err
        .json
        .as_ref()
        .and_then(|v| v.pointer("/error/details"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_reason = |reason: &str| details.iter().any(|d| d.get("reason").and_then(Value::as_str) == Some(reason));
    if has_reason("API_KEY_INVALID") || err.mentions_any(&["api key not valid", "api key expired"]) {
        err.class = ErrorClass::Auth;
        return;
    }
    let exhausted = err.status == 429 || err.kind.as_deref() == Some("RESOURCE_EXHAUSTED");
    if exhausted && (says_limit_zero(&err.raw_message) || details.iter().any(zero_quota_detail)) {
        err.class = ErrorClass::Quota;
        return;
    }
    let has_wait = err.headers.contains_key(http::header::RETRY_AFTER) || err.headers.contains_key("retry-after-ms");
    if !has_wait {
        let delay = details
            .iter()
            .filter(|d| d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))
            .find_map(|d| d.get("retryDelay").and_then(Value::as_str).and_then(parse_proto_duration));
        if let Some(seconds) = delay.and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok()) {
            err.headers.insert(http::header::RETRY_AFTER, seconds);
        }
    }
}

/// Whether a quota message names a limit of zero: "..., limit: 0, model: gemini-2.5-pro".
fn says_limit_zero(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.match_indices("limit:").any(|(i, m)| {
        let rest = lower[i + m.len()..].trim_start();
        rest.starts_with('0') && !rest[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.')
    })
}

/// An `ErrorInfo` with `metadata.quota_limit_value: "0"` or a `QuotaFailure` violation with
/// `quotaValue: "0"`.
fn zero_quota_detail(detail: &Value) -> bool {
    let is_zero = |v: Option<&Value>| v.and_then(Value::as_str).map(str::trim) == Some("0");
    if is_zero(detail.pointer("/metadata/quota_limit_value")) {
        return true;
    }
    detail
        .get("violations")
        .and_then(Value::as_array)
        .is_some_and(|violations| violations.iter().any(|v| is_zero(v.get("quotaValue"))))
}

/// A protobuf JSON `Duration` (`"29s"`, `"0.5s"`) in seconds.
fn parse_proto_duration(s: &str) -> Option<f64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// The parts of a `generateContent` response we read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    finish_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    /// `true` on thought summaries of thinking models.
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    block_reason_message: Option<String>,
}

/// Gemini's `usageMetadata` (tokens; fields are omitted when zero).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
}

impl UsageMetadata {
    /// Prompt tokens include cached ones; thoughts are output but not counted in candidates.
    fn normalize(self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let cached = self.cached_content_token_count.unwrap_or(0);
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        Usage {
            input_tokens: prompt.saturating_sub(cached),
            cached_input_tokens: cached,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: self.candidates_token_count.unwrap_or(0) + thoughts,
            reasoning_tokens: thoughts,
        }
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

    const KEY: &str = "AIzaSy-test-0123456789abcdef";

    fn settings(server: &MockServer) -> GeminiSettings {
        GeminiSettings {
            name: "gemini".to_owned(),
            model: "gemini-2.0-flash".to_owned(),
            base_url: format!("{}/v1beta", server.uri()),
            api_key: Some(SecretString::from(KEY)),
            api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy { max_retries: 3, base: Duration::from_millis(1), cap: Duration::from_secs(30) },
        }
    }

    fn generate() -> MockBuilder {
        Mock::given(method("POST")).and(path("/v1beta/models/gemini-2.0-flash:generateContent"))
    }

    fn request(schema: Option<Value>) -> CompletionRequest {
        CompletionRequest {
            system: "You answer briefly.".to_owned(),
            prompt: "Where is Google's headquarters?".to_owned(),
            json_schema: schema.map(|s| ("answer".to_owned(), s)),
            max_output_tokens: 256,
            temperature: Some(0.5),
            prompt_cache: None,
        }
    }

    /// A fixture of the Firebase AI SDKs' mock responses (`googleai/` or `vertexai/`).
    fn fixture(name: &str) -> Option<Value> {
        let dir = crate::test_support::corpora_dir()?.join("llm-apis/gemini/vertexai-sdk-test-data");
        Some(serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap())
    }

    fn body_of(req: &Request) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn review_schema() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/review-output.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn answer_with(server: &MockServer, status: u16, body: Value) -> Result<Completion, ProviderError> {
        generate().respond_with(ResponseTemplate::new(status).set_body_json(body)).expect(1).mount(server).await;
        Gemini::new(settings(server)).unwrap().complete(&request(None)).await
    }

    #[tokio::test]
    async fn basic_reply_and_the_request_shape() {
        let Some(body) = fixture("googleai/unary-success-basic-reply-short.json") else { return };
        let server = strict_server().await;
        generate()
            .and(header("x-goog-api-key", KEY))
            .and(header("content-type", "application/json"))
            .and(body_partial_json(json!({
                "systemInstruction": {"parts": [{"text": "You answer briefly."}]},
                "contents": [{"role": "user", "parts": [{"text": "Where is Google's headquarters?"}]}],
                "generationConfig": {"maxOutputTokens": 256, "temperature": 0.5},
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let c = Gemini::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap();
        assert_eq!(
            c.text,
            "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
        );
        assert_eq!(c.usage, Usage { input_tokens: 7, output_tokens: 22, ..Usage::default() });
        assert_eq!(c.model, "gemini-2.0-flash");
        let received = server.received_requests().await.unwrap();
        let url = received[0].url.as_str();
        assert!(!url.contains(KEY) && !url.contains("key="), "the key must not be in the URL: {url}");
        assert!(received[0].headers.get("authorization").is_none());
        let sent = body_of(&received[0]);
        assert!(sent["generationConfig"].get("responseMimeType").is_none(), "{sent}");
    }

    #[tokio::test]
    async fn structured_output_sends_a_converted_response_schema() {
        let server = strict_server().await;
        let schema = review_schema();
        let expected = to_gemini_schema(&schema);
        generate()
            .and(body_partial_json(json!({"generationConfig": {
                "responseMimeType": "application/json", "responseSchema": expected}})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "{\"summary\": \"ok\", \"findings\": []}"}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 9},
                "modelVersion": "gemini-2.0-flash-001", "responseId": "resp-1"})))
            .expect(1)
            .mount(&server)
            .await;
        let c = Gemini::new(settings(&server)).unwrap().complete(&request(Some(schema))).await.unwrap();
        assert_eq!(c.text, "{\"summary\": \"ok\", \"findings\": []}");
        assert_eq!(c.request_id.as_deref(), Some("resp-1"));
        assert_eq!(c.model, "gemini-2.0-flash-001");
        let sent = body_of(&server.received_requests().await.unwrap()[0]);
        let text = sent["generationConfig"]["responseSchema"].to_string();
        for dropped in ["$schema", "$id", "default", "additionalProperties"] {
            assert!(!text.contains(dropped), "{dropped} in {text}");
        }
    }

    #[test]
    fn review_schema_converts_to_the_openapi_subset() {
        let converted = to_gemini_schema(&review_schema());
        assert_eq!(converted["type"], "object");
        assert!(converted.get("$schema").is_none() && converted.get("$id").is_none());
        assert_eq!(converted["required"], json!(["summary", "findings"]));
        let finding = &converted["properties"]["findings"]["items"];
        assert_eq!(
            finding["properties"]["side"],
            json!({"type": "string", "enum": ["RIGHT", "LEFT"],
            "description": "RIGHT: new file line numbers (added or context lines). LEFT: old file line numbers (removed lines)."})
        );
        assert_eq!(
            finding["properties"]["severity"],
            json!({"type": "string", "enum": ["critical", "high", "medium", "low", "info"]})
        );
        assert_eq!(finding["properties"]["line"]["minimum"], 1);
        assert_eq!(finding["properties"]["path"]["minLength"], 1);
        // A property named like a keyword survives.
        assert_eq!(finding["properties"]["title"]["type"], "string");
    }

    #[test]
    fn schema_conversion_edge_cases() {
        let schema = json!({
            "$defs": {"Item": {"type": "object", "properties": {"n": {"type": ["integer", "null"], "examples": [1]}},
                               "additionalProperties": false}},
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "kind": {"const": "fix"},
                "level": {"type": "integer", "enum": [1, 2, 3]},
                "either": {"oneOf": [{"type": "string", "format": "uri"}, {"type": "number", "format": "double"}]},
                "self": {"$ref": "#"},
            },
        });
        let c = to_gemini_schema(&schema);
        assert!(c.get("$defs").is_none());
        assert_eq!(
            c["properties"]["items"]["items"],
            json!({"type": "object", "properties": {"n": {"type": "integer", "nullable": true}}})
        );
        assert_eq!(c["properties"]["kind"], json!({"type": "string", "enum": ["fix"]}));
        assert_eq!(c["properties"]["level"], json!({"type": "integer"}));
        assert_eq!(
            c["properties"]["either"],
            json!({"anyOf": [{"type": "string"}, {"type": "number", "format": "double"}]})
        );
        // A recursive reference is cut off instead of looping.
        assert!(c["properties"]["self"].is_object());
    }

    #[tokio::test]
    async fn thinking_parts_are_skipped_and_thoughts_count_as_output() {
        let Some(body) = fixture("googleai/unary-success-thinking-reply-thought-summary.json") else { return };
        let server = strict_server().await;
        let c = answer_with(&server, 200, body).await.unwrap();
        assert_eq!(c.text, "Mountain View");
        assert_eq!(c.usage, Usage { input_tokens: 14, output_tokens: 26, reasoning_tokens: 24, ..Usage::default() });
        assert_eq!(c.request_id.as_deref(), Some("2pmHaJqQEoqC-8YP6eStyAY"));
        assert_eq!(c.model, "gemini-2.5-flash");
    }

    #[tokio::test]
    async fn cached_tokens_are_split_from_the_prompt() {
        let Some(body) = fixture("vertexai/unary-success-implicit-caching.json") else { return };
        let server = strict_server().await;
        let c = answer_with(&server, 200, body).await.unwrap();
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 770,
                cached_input_tokens: 11243,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                output_tokens: 88,
                reasoning_tokens: 73
            }
        );
        assert_eq!(c.usage.total_input(), 12013);
    }

    #[tokio::test]
    async fn a_count_tokens_body_is_not_an_answer() {
        // `unary-success-detailed-token-response.json` is a countTokens response: no candidates.
        let Some(body) = fixture("vertexai/unary-success-detailed-token-response.json") else { return };
        let server = strict_server().await;
        match answer_with(&server, 200, body).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("no candidates"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn safety_finish_reason_is_blocked_even_with_partial_text() {
        let Some(body) = fixture("googleai/unary-failure-finish-reason-safety.json") else { return };
        let server = strict_server().await;
        let err = answer_with(&server, 200, body).await.unwrap_err();
        assert!(matches!(&err, ProviderError::Blocked { reason, .. } if reason.contains("SAFETY")), "{err:?}");
        assert!(err.to_string().contains("safety"), "{err}");
        assert!(!err.is_auth());
    }

    #[tokio::test]
    async fn prompt_feedback_without_candidates_is_blocked() {
        let Some(body) = fixture("googleai/unary-failure-only-prompt-feedback.json") else { return };
        let server = strict_server().await;
        let err = answer_with(&server, 200, body).await.unwrap_err();
        match &err {
            ProviderError::Blocked { reason, .. } => {
                assert!(reason.contains("prompt was blocked") && reason.contains("Message"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("safety"));
    }

    #[tokio::test]
    async fn prompt_block_reason_is_blocked() {
        let Some(body) = fixture("vertexai/unary-failure-prompt-blocked-safety.json") else { return };
        let server = strict_server().await;
        let err = answer_with(&server, 200, body).await.unwrap_err();
        assert!(matches!(&err, ProviderError::Blocked { reason, .. } if reason.contains("(SAFETY)")), "{err:?}");
    }

    #[tokio::test]
    async fn other_finish_without_content_is_a_bad_answer() {
        let Some(body) = fixture("googleai/unary-failure-with-message-no-content.json") else { return };
        let server = strict_server().await;
        match answer_with(&server, 200, body).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => {
                assert!(message.contains("OTHER") && message.contains("internal error"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn zero_quota_is_quota_without_retry() {
        let Some(body) = fixture("vertexai/unary-failure-quota-exceeded.json") else { return };
        let server = strict_server().await;
        let err = answer_with(&server, 429, body).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn limit_zero_in_the_message_is_quota_without_retry() {
        let server = strict_server().await;
        let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]}});
        let err = answer_with(&server, 429, body).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn plain_429_is_retried_honouring_retry_info() {
        let server = strict_server().await;
        generate()
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: gemini-2.0-flash",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}]}})))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        generate()
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]})))
            .expect(1)
            .mount(&server)
            .await;
        let provider = Gemini::new(settings(&server)).unwrap();
        let (c, retries) = recording_retries(provider.complete(&request(None))).await;
        assert_eq!(c.unwrap().text, "ok");
        assert_eq!(
            retries.iter().map(|r| (r.wait, r.server_asked)).collect::<Vec<_>>(),
            [(Duration::from_millis(50), true)]
        );
    }

    #[tokio::test]
    async fn classic_resource_exhausted_is_retried_then_unavailable() {
        let server = strict_server().await;
        generate()
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {"code": 429,
                "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}})))
            .expect(4)
            .mount(&server)
            .await;
        let err = Gemini::new(settings(&server)).unwrap().complete(&request(None)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { status: 429, attempts: 4, .. }), "{err:?}");
    }

    #[tokio::test]
    async fn invalid_api_key_is_auth_naming_the_env_var() {
        let Some(body) = fixture("googleai/unary-failure-api-key.json") else { return };
        let server = strict_server().await;
        let gemini_err = answer_with(&server, 400, body).await.unwrap_err();
        assert!(gemini_err.is_auth(), "{gemini_err:?}");
        let text = gemini_err.to_string();
        assert!(text.contains("GEMINI_API_KEY") && text.contains("400"), "{text}");
        assert!(!text.contains(KEY));
    }

    #[tokio::test]
    async fn unknown_model_is_rejected_without_retry() {
        let Some(body) = fixture("googleai/unary-failure-unknown-model.json") else { return };
        let server = strict_server().await;
        let err = answer_with(&server, 404, body).await.unwrap_err();
        assert!(matches!(err, ProviderError::Rejected { status: 404, .. }), "{err:?}");
    }

    #[test]
    fn limit_zero_detection() {
        assert!(says_limit_zero("..., limit: 0, model: gemini-2.5-pro"));
        assert!(says_limit_zero("limit:0"));
        assert!(!says_limit_zero("limit: 10, model: x"));
        assert!(!says_limit_zero("limit: 0.5"));
        assert!(!says_limit_zero("rate limit exceeded"));
        assert_eq!(parse_proto_duration("29s"), Some(29.0));
        assert_eq!(parse_proto_duration("0.5s"), Some(0.5));
        assert_eq!(parse_proto_duration("soon"), None);
    }

    #[test]
    fn model_prefix_is_stripped_and_the_key_stays_out_of_the_url() {
        let s = GeminiSettings {
            name: "gemini".to_owned(),
            model: "models/gemini-2.5-flash".to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: Some(SecretString::from(KEY)),
            api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        let gemini = Gemini::new(s.clone()).unwrap();
        assert_eq!(
            gemini.url.as_str(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert!(!format!("{gemini:?}").contains(KEY));
        assert!(matches!(
            Gemini::new(GeminiSettings { model: " ".to_owned(), ..s }),
            Err(ProviderError::Config { .. })
        ));
    }
}
