//! Amazon Bedrock adapter: the Converse API (`POST {base_url}/model/{modelId}/converse`), every
//! request signed with AWS Signature Version 4 by the `aws-sigv4` crate (the AWS SDK for Rust's
//! own signer), with credentials from [`crate::cloud::aws`] (environment keys or `role_arn:` +
//! the job's GitHub OIDC token).
//!
//! Source: the Bedrock API reference, "Converse"
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>) and
//! "Common errors"; SigV4: "Signature Version 4 for API requests"
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>), service `bedrock`.
//!
//! - **Endpoint**: `https://bedrock-runtime.{region}.amazonaws.com`, or `base_url` (a VPC
//!   endpoint), or `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` / `AWS_ENDPOINT_URL`. The model id (a
//!   model id, an inference profile such as `us.anthropic.claude-…`, or an ARN) is
//!   percent-encoded as one path segment, as the SDK does.
//! - **Structured output** through tool use, as for Anthropic: one tool whose
//!   `inputSchema.json` is the schema, forced with `toolChoice.tool`; the answer is its
//!   `toolUse.input`.
//! - **Prompt caching**: `cachePoint` blocks after the system prompt and the shared prefix for
//!   Claude models, where the Anthropic minimums are reached; `prompt_cache_ttl: 1h` sends
//!   `ttl: "1h"` on each ("CachePointBlock": `5m | 1h`; Bedrock documents the hour for Claude
//!   Haiku, Sonnet and Opus 4.5 and later, and an older model refuses it with a
//!   `ValidationException`, exit 2). Every point of a request has the same TTL, so Bedrock's
//!   rule that TTLs do not increase from tools to system to messages holds.
//! - **Usage**: `inputTokens` (without the cache), `outputTokens`, `cacheReadInputTokens`,
//!   `cacheWriteInputTokens`, split by `cacheDetails[].ttl` into five-minute and one-hour
//!   writes ("TokenUsage", "CacheDetail").
//! - **Errors** by the error type (`x-amzn-ErrorType`, or the body's `__type`):
//!   `ThrottlingException`, `ServiceUnavailableException`, `ModelNotReadyException`,
//!   `InternalServerException` and `ModelTimeoutException` are retried; `AccessDeniedException`
//!   and `UnrecognizedClientException` are [`ProviderError::Denied`] (exit 4) naming what to
//!   check; `ValidationException` (and `ResourceNotFoundException`) are config errors (exit 2);
//!   `ServiceQuotaExceededException` is a quota error. A `stopReason` of
//!   `guardrail_intervened` or `content_filtered` is [`ProviderError::Blocked`].

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cloud::aws::AwsCredentialProvider;
use crate::cloud::CredentialError;
use crate::providers::http::{
    api_name, join_url, EndpointSettings, ErrorClass, HttpClient, KeyHeader, RawAnswer, RequestAuth, StatusError,
};
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};

/// The SigV4 service name of Bedrock Runtime.
const SIGNING_NAME: &str = "bedrock";

/// The default endpoint of `region`.
pub(crate) fn default_base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The adapter.
pub(crate) struct Bedrock {
    endpoint: EndpointSettings,
    http: HttpClient,
    /// `{base_url}/model/{modelId}/converse`.
    url: reqwest::Url,
}

impl std::fmt::Debug for Bedrock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bedrock")
            .field("name", &self.endpoint.name)
            .field("model", &self.endpoint.model)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Bedrock {
    /// Builds the adapter for `endpoint` (its `api_key` is unused: requests are signed with
    /// `credentials` for `region`). Errors ([`ProviderError::Config`]): a bad `base_url`.
    pub(crate) fn new(
        endpoint: EndpointSettings,
        region: String,
        credentials: Arc<AwsCredentialProvider>,
    ) -> Result<Self, ProviderError> {
        let model = urlencoding::encode(&endpoint.model).into_owned();
        let url = join_url(&endpoint.name, "base_url", &endpoint.base_url, &format!("/model/{model}/converse"))?;
        let http = HttpClient::new(endpoint.http_config(KeyHeader::Bearer, vec![], classify_bedrock))?
            .with_auth(Arc::new(SigV4 { credentials, region }));
        Ok(Self { endpoint, http, url })
    }

    /// The Converse request body.
    fn body(&self, req: &CompletionRequest) -> Value {
        let marks = self.cache_points(req);
        let cache_point = match &req.prompt_cache {
            Some(cache) if cache.one_hour => json!({ "cachePoint": { "type": "default", "ttl": "1h" } }),
            _ => json!({ "cachePoint": { "type": "default" } }),
        };
        let content = match (&req.prompt_cache, marks.1) {
            (Some(cache), true) => json!([
                { "text": cache.prefix },
                cache_point,
                { "text": &req.prompt[cache.prefix.len()..] },
            ]),
            _ => json!([{ "text": req.prompt }]),
        };
        let mut inference = json!({ "maxTokens": req.max_output_tokens });
        if let Some(t) = req.temperature {
            inference["temperature"] = json!(t);
        }
        let mut body = json!({
            "messages": [{ "role": "user", "content": content }],
            "inferenceConfig": inference,
        });
        if !req.system.is_empty() {
            body["system"] =
                if marks.0 { json!([{ "text": req.system }, cache_point]) } else { json!([{ "text": req.system }]) };
        }
        if let Some((name, schema)) = &req.json_schema {
            let name = api_name(name);
            body["toolConfig"] = json!({
                "tools": [{ "toolSpec": {
                    "name": name,
                    "description": "Record the answer. Call this tool exactly once with the complete answer as its input.",
                    "inputSchema": { "json": schema },
                }}],
                "toolChoice": { "tool": { "name": name } },
            });
        }
        body
    }

    /// Whether to put a cache point after the system prompt and after the shared prefix: Claude
    /// models only (Bedrock refuses cache points on models without prompt caching), at the
    /// Anthropic minimums ([`crate::providers::anthropic::cache_breakpoints`]).
    fn cache_points(&self, req: &CompletionRequest) -> (bool, bool) {
        let model = self.endpoint.model.to_ascii_lowercase();
        let Some(cache) = req.prompt_cache.as_ref().filter(|_| model.contains("anthropic.claude")) else {
            return (false, false);
        };
        let tools = req.json_schema.as_ref().map(|(_, schema)| json!([{ "input_schema": schema }]));
        let marks =
            crate::providers::anthropic::cache_breakpoints(&model, tools.as_ref(), &req.system, &req.prompt, cache);
        (marks.system.is_some(), marks.prefix.is_some())
    }

    async fn complete_inner(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let body = self.body(req);
        let answer = self.http.post_json(&self.url, &body, req.max_output_tokens).await?;
        let tool = req.json_schema.as_ref().map(|(name, _)| api_name(name));
        self.parse_answer(answer, tool.as_deref())
    }

    fn parse_answer(&self, answer: RawAnswer, tool: Option<&str>) -> Result<Completion, ProviderError> {
        let parsed: ConverseResponse = self.http.parse(&answer, "a Bedrock Converse answer")?;
        let stop = parsed.stop_reason.as_deref().unwrap_or("none");
        if matches!(stop, "guardrail_intervened" | "content_filtered") {
            return Err(ProviderError::Blocked { provider: self.endpoint.name.clone(), reason: stop.to_string() });
        }
        let blocks = parsed.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default();
        let calls: Vec<(Option<&str>, Option<&Value>)> =
            blocks.iter().filter_map(|b| b.tool_use.as_ref()).map(|u| (u.name.as_deref(), u.input.as_ref())).collect();
        let text = self.http.forced_tool_answer(
            &calls,
            tool,
            || blocks.iter().filter_map(|b| b.text.as_deref()).collect::<Vec<_>>().join(""),
            &format!("stopReason: {stop}"),
        )?;
        Ok(Completion {
            text,
            usage: parsed.usage.unwrap_or_default().into_usage(),
            // Converse does not name the model that answered.
            model: self.endpoint.model.clone(),
            latency: answer.latency,
            request_id: answer.header(&["x-amzn-requestid"]),
            finish_reason: parsed.stop_reason,
            reported_cost_usd: None,
        })
    }
}

impl Provider for Bedrock {
    fn name(&self) -> &str {
        &self.endpoint.name
    }
    fn model(&self) -> &str {
        &self.endpoint.model
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(self.complete_inner(req))
    }
    fn gen_ai_provider(&self) -> &'static str {
        super::gen_ai_provider_name(&crate::config::ProviderKind::Bedrock)
    }
}

/// Signs each attempt with SigV4 (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token` for
/// temporary credentials), over the method, URL, the request's headers and its body.
struct SigV4 {
    credentials: Arc<AwsCredentialProvider>,
    region: String,
}

impl RequestAuth for SigV4 {
    fn authorize<'a>(&'a self, request: &'a mut reqwest::Request) -> BoxFuture<'a, Result<(), CredentialError>> {
        Box::pin(async move {
            let creds = self.credentials.credentials().await?;
            crate::cloud::aws::sign(request, &creds, &self.region, SIGNING_NAME, SystemTime::now())
        })
    }

    fn help(&self) -> String {
        self.credentials.help()
    }
}

/// Classifies by the Bedrock error type (see the module docs).
fn classify_bedrock(err: &mut StatusError) {
    let kind = crate::providers::http::header_str(&err.headers, "x-amzn-errortype")
        .or_else(|| err.json.as_ref().and_then(|j| j.get("__type")).and_then(Value::as_str).map(str::to_string))
        .map(|t| {
            // `ThrottlingException:http://internal.amazon.com/…` or `com.amazon…#ThrottlingException`.
            let t = t.split(':').next().unwrap_or(&t);
            t.rsplit('#').next().unwrap_or(t).to_string()
        });
    if let Some(message) =
        err.json.as_ref().and_then(|j| j.get("message").or_else(|| j.get("Message"))).and_then(Value::as_str)
    {
        err.raw_message = message.to_string();
    }
    err.class = match kind.as_deref() {
        Some(
            "ThrottlingException"
            | "ServiceUnavailableException"
            | "ModelNotReadyException"
            | "InternalServerException"
            | "ModelTimeoutException",
        ) => ErrorClass::Transient,
        Some("AccessDeniedException" | "UnrecognizedClientException" | "ExpiredTokenException") => ErrorClass::Auth,
        Some("ValidationException" | "ResourceNotFoundException") => ErrorClass::Config,
        Some("ServiceQuotaExceededException") => ErrorClass::Quota,
        _ => ErrorClass::ByStatus,
    };
    if let Some(kind) = kind {
        err.raw_message = format!("{kind}: {}", err.raw_message);
        err.kind = Some(kind);
    }
}

/// The parts of a Converse answer we read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    #[serde(default)]
    output: Option<ConverseOutput>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<ConverseUsage>,
}

#[derive(Debug, Deserialize)]
struct ConverseOutput {
    #[serde(default)]
    message: Option<ConverseMessage>,
}

#[derive(Debug, Deserialize)]
struct ConverseMessage {
    #[serde(default)]
    content: Vec<ContentBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUse>,
}

#[derive(Debug, Deserialize)]
struct ToolUse {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// Converse's `usage`, tokens (absent counts are 0).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ConverseUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_write_input_tokens: u64,
    /// Cache writes by TTL (absent when nothing was written, or on older answers).
    cache_details: Vec<CacheDetail>,
}

/// One `cacheDetails` entry: `inputTokens` written with `ttl` (`5m` or `1h`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CacheDetail {
    ttl: String,
    input_tokens: u64,
}

impl ConverseUsage {
    /// Our usage: one-hour writes are `cacheDetails`' `1h` tokens (at most the total written),
    /// five-minute writes the rest of `cacheWriteInputTokens`.
    fn into_usage(self) -> Usage {
        let one_hour: u64 = self.cache_details.iter().filter(|d| d.ttl == "1h").map(|d| d.input_tokens).sum();
        let one_hour = one_hour.min(self.cache_write_input_tokens);
        Usage {
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cache_read_input_tokens,
            cache_write_tokens: self.cache_write_input_tokens - one_hour,
            cache_write_1h_tokens: one_hour,
            output_tokens: self.output_tokens,
            ..Usage::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status_error(status: u16, kind: &str, message: &str) -> StatusError {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            http::HeaderValue::from_str(&format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
                .unwrap(),
        );
        let mut err = StatusError::new(status, headers, &json!({ "message": message }).to_string());
        classify_bedrock(&mut err);
        err
    }

    #[test]
    fn errors_are_classified_by_type() {
        assert_eq!(status_error(429, "ThrottlingException", "slow down").class, ErrorClass::Transient);
        assert_eq!(status_error(400, "ThrottlingException", "slow down").class, ErrorClass::Transient);
        assert_eq!(status_error(503, "ServiceUnavailableException", "x").class, ErrorClass::Transient);
        assert_eq!(status_error(403, "AccessDeniedException", "no").class, ErrorClass::Auth);
        assert_eq!(status_error(403, "UnrecognizedClientException", "no").class, ErrorClass::Auth);
        let v = status_error(400, "ValidationException", "The provided model identifier is invalid.");
        assert_eq!(v.class, ErrorClass::Config);
        assert_eq!(v.message(), "ValidationException: The provided model identifier is invalid.");
        assert_eq!(status_error(418, "Teapot", "x").class, ErrorClass::ByStatus);
    }

    #[test]
    fn signing_adds_the_sigv4_headers_and_hides_them() {
        let creds = crate::cloud::aws::AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string().into(),
            session_token: Some("session-token-example".to_string().into()),
            expires_at: None,
        };
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude%3A0/converse";
        let mut request = reqwest::Request::new(reqwest::Method::POST, url.parse().unwrap());
        request.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
        *request.body_mut() = Some(reqwest::Body::from(r#"{"a":1}"#));
        crate::cloud::aws::sign(
            &mut request,
            &creds,
            "us-east-1",
            SIGNING_NAME,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160),
        )
        .unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"), "{auth}");
        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
        assert!(request.headers()["authorization"].is_sensitive());
        assert!(request.headers()["x-amz-security-token"].is_sensitive());
        assert!(!format!("{request:?}").contains("session-token-example"));
    }

    fn adapter(model: &str) -> Bedrock {
        let creds = Arc::new(
            AwsCredentialProvider::resolve(
                &crate::context::Env::from_pairs([
                    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                ]),
                None,
                "us-east-1",
                &crate::redact::Redactor::new(),
            )
            .unwrap(),
        );
        let endpoint = EndpointSettings {
            name: "b".into(),
            model: model.into(),
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
            api_key: None,
            api_key_env: String::new(),
            timeout: std::time::Duration::from_secs(5),
            retry: crate::resilience::RetryPolicy::default(),
        };
        Bedrock::new(endpoint, "us-east-1".into(), creds).unwrap()
    }

    fn cached_request() -> CompletionRequest {
        let prefix = format!("PR header: {}\n", "shared context ".repeat(600));
        CompletionRequest {
            system: "You review code. ".repeat(400),
            prompt: format!("{prefix}chunk: fn b() {{}}"),
            json_schema: None,
            max_output_tokens: 256,
            temperature: Some(0.0),
            prompt_cache: Some(crate::providers::PromptCache { prefix, one_hour: false, key: "k".into() }),
        }
    }

    #[test]
    fn claude_requests_carry_cache_points_after_the_shared_prefix_and_others_none() {
        let req = cached_request();
        let body = adapter("us.anthropic.claude-sonnet-4-6").body(&req);
        assert_eq!(body["system"][1], json!({"cachePoint": {"type": "default"}}), "{body}");
        let content = body["messages"][0]["content"].as_array().unwrap();
        assert_eq!(content.len(), 3, "{body}");
        assert_eq!(content[0]["text"], json!(req.prompt_cache.as_ref().unwrap().prefix));
        assert_eq!(content[1], json!({"cachePoint": {"type": "default"}}));
        assert_eq!(content[2]["text"], "chunk: fn b() {}");
        // The text is unchanged: prefix and rest rejoin to the prompt.
        assert_eq!(
            format!("{}{}", content[0]["text"].as_str().unwrap(), content[2]["text"].as_str().unwrap()),
            req.prompt
        );
        // A model without prompt caching on Bedrock gets none (Bedrock would refuse them).
        let nova = adapter("amazon.nova-pro-v1:0").body(&req);
        assert_eq!(nova["system"].as_array().unwrap().len(), 1, "{nova}");
        assert_eq!(nova["messages"][0]["content"].as_array().unwrap().len(), 1, "{nova}");
        // And `prompt_cache: off` (no PromptCache) none either.
        let off = adapter("us.anthropic.claude-sonnet-4-6").body(&CompletionRequest { prompt_cache: None, ..req });
        assert_eq!(off["system"].as_array().unwrap().len(), 1, "{off}");
    }

    #[test]
    fn one_hour_cache_points_carry_the_ttl_and_writes_split_by_cache_details() {
        let mut req = cached_request();
        if let Some(cache) = req.prompt_cache.as_mut() {
            cache.one_hour = true;
        }
        let body = adapter("global.anthropic.claude-sonnet-4-5-20250929-v1:0").body(&req);
        let hour = json!({"cachePoint": {"type": "default", "ttl": "1h"}});
        assert_eq!((&body["system"][1], &body["messages"][0]["content"][1]), (&hour, &hour), "{body}");
        let usage = |v: Value| serde_json::from_value::<ConverseUsage>(v).unwrap().into_usage();
        let split = usage(
            json!({"inputTokens": 40, "outputTokens": 9, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 1500,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 1200}, {"ttl": "5m", "inputTokens": 300}]}),
        );
        assert_eq!((split.cache_write_1h_tokens, split.cache_write_tokens, split.input_tokens), (1200, 300, 40));
        let plain = usage(json!({"inputTokens": 40, "outputTokens": 9, "cacheWriteInputTokens": 700}));
        assert_eq!((plain.cache_write_1h_tokens, plain.cache_write_tokens), (0, 700));
        // Details over the total are capped at it, never a negative five-minute count.
        let odd = usage(json!({"cacheWriteInputTokens": 10, "cacheDetails": [{"ttl": "1h", "inputTokens": 99}]}));
        assert_eq!((odd.cache_write_1h_tokens, odd.cache_write_tokens), (10, 0));
        assert!(serde_json::from_value::<ConverseUsage>(json!({"cacheWriteInputTokens": -5})).is_err());
    }

    #[test]
    fn the_model_id_is_one_encoded_path_segment() {
        let b = adapter("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6");
        assert_eq!(
            b.url.path(),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-6/converse"
        );
    }
}
