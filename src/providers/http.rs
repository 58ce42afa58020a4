//! The HTTP layer every hosted-model adapter shares (`openai`, `azure`, `anthropic`, `gemini`):
//! one reqwest client per adapter (per-attempt timeout, rustls with the ring provider), one JSON
//! `POST` per attempt under the adapter's [`RetryPolicy`], error bodies parsed into a
//! [`StatusError`], and the mapping of the last failed attempt to a [`ProviderError`].
//!
//! What differs between APIs plugs in as a [`Classifier`]: a plain function that reads the parsed
//! error (status, headers, the provider's error object) and says what it means ([`ErrorClass`]):
//! quota versus rate limit, an invalid key sent as 400, a content filter. Everything not claimed
//! by the classifier follows the status ([`ErrorClass::ByStatus`]), as SPEC §2 Resilience says:
//! 401/403 are auth errors, 400/404/422 are never retried, 408/409/429/5xx/529 and connection
//! errors are retried with full jitter, honouring `retry-after-ms`, `retry-after` and
//! `x-should-retry` ([`crate::resilience`]).
//!
//! Decision on broken bodies: a body the transport could not read to its end (the connection
//! closed before `content-length` bytes, a chunked body cut short) is a network error and is
//! retried like a reset connection; a 2xx body that was read whole but is not the JSON the
//! adapter expects is a [`ProviderError::BadAnswer`] and is not retried (a proxy's HTML page or a
//! server that does not speak the API will not change its mind on a second try).

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::providers::ProviderError;
use crate::resilience::{retry_observed, Exhausted, Failure, GiveUpReason, LogRetries, RetryPolicy};

/// Longest error message we copy from a response body into our errors (characters).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// How the API key travels. The header is always marked sensitive, so reqwest's and http's
/// `Debug` output hide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// `authorization: Bearer <key>` (OpenAI and compatible servers).
    Bearer,
    /// The key as the whole value of this header: `api-key` (Azure), `x-api-key` (Anthropic),
    /// `x-goog-api-key` (Gemini; never the `?key=` query parameter, because URLs get logged).
    Named(&'static str),
}

/// The adapter's hook that classifies a non-2xx response. It may set [`StatusError::class`],
/// and, for APIs that put the wait in the body instead of a header (Google RPC `RetryInfo`),
/// add a `retry-after` header to [`StatusError::headers`] so [`RetryPolicy::decide`] sees it.
pub type Classifier = fn(&mut StatusError);

/// Credentials an adapter adds to each attempt when a fixed header cannot carry them: an AWS
/// Signature Version 4 over the request (Bedrock), a short-lived OAuth token (Vertex AI). Called
/// once per attempt with the request built (URL, headers, JSON body), just before it is sent.
pub trait RequestAuth: Send + Sync {
    /// Adds the credentials to `request`, marking their headers sensitive. A
    /// [`crate::cloud::CredentialError`] that is `transient` is retried like a network error;
    /// any other ends the call as [`ProviderError::Denied`].
    fn authorize<'a>(
        &'a self,
        request: &'a mut reqwest::Request,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::cloud::CredentialError>>;
    /// What to check when the provider refuses the credentials: the `help:` line of exit 4.
    fn help(&self) -> String;
}

/// `Authorization: Bearer <token>` on each attempt, the token from `tokens` (cached there or
/// refreshed): Vertex AI's Google access tokens, Azure OpenAI's Microsoft Entra tokens.
pub(crate) struct BearerAuth {
    pub tokens: std::sync::Arc<dyn crate::cloud::TokenSource>,
}

impl RequestAuth for BearerAuth {
    fn authorize<'a>(
        &'a self,
        request: &'a mut reqwest::Request,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::cloud::CredentialError>> {
        use secrecy::ExposeSecret;
        Box::pin(async move {
            let token = self.tokens.token().await?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| crate::cloud::CredentialError::fatal("the access token cannot be sent in a header"))?;
            value.set_sensitive(true);
            request.headers_mut().insert(http::header::AUTHORIZATION, value);
            Ok(())
        })
    }

    fn help(&self) -> String {
        self.tokens.help()
    }
}

/// A classifier that leaves every error to its status.
pub fn by_status(_: &mut StatusError) {}

/// What a non-2xx response means, as the adapter's [`Classifier`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Decided by the status: 401/403 auth; 400/404/422 refused at once; other statuses go to
    /// [`RetryPolicy::decide`] (408/409/429/5xx retried; `x-should-retry` can overrule it).
    ByStatus,
    /// The key was refused, whatever the status (Gemini answers an invalid key with 400).
    Auth,
    /// Quota or billing exhausted: never retried ([`ProviderError::Quota`]).
    Quota,
    /// The request was refused: never retried ([`ProviderError::Rejected`]).
    Rejected,
    /// The request was understood but no usable answer can come of it (a content filter);
    /// never retried. The string is the message for [`ProviderError::BadAnswer`].
    BadAnswer(String),
    /// Retried whatever the status (Bedrock's `ThrottlingException`, which older endpoints send
    /// as 400); exhausted it is [`ProviderError::Unavailable`].
    Transient,
    /// The request is wrong for this model or account in a way the config decides (Bedrock's
    /// `ValidationException`): never retried, [`ProviderError::Config`] (exit 2).
    Config,
}

/// What every HTTP adapter's settings hold (issue #6): the entry's name, the model, where the
/// API lives, the key and where it came from, the per-attempt timeout and the retry policy.
/// Each adapter's settings embed it and add only their own extras
/// ([`crate::providers::anthropic::AnthropicSettings::anthropic_version`], Azure's deployment
/// and `api-version`); OpenAI and Gemini have none, so theirs are this type.
///
/// `Debug` prints the key as `[REDACTED]` (`SecretString`).
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// Config entry name (`providers.<name>`), for messages and the ledger.
    pub name: String,
    /// The model asked for, e.g. `gpt-4o-mini`, `claude-sonnet-4-5`, `gemini-2.5-flash`
    /// (Azure: the model behind the deployment, for reports and prices).
    pub model: String,
    /// API root without a trailing slash: including the version for OpenAI (`.../v1`),
    /// Anthropic (`.../v1`) and Gemini (`.../v1beta`); for Azure the resource endpoint
    /// (`https://{resource}.openai.azure.com`, no `/openai` suffix).
    pub base_url: String,
    /// The API key; `None` only for compatible servers that need none (a local Ollama).
    pub api_key: Option<SecretString>,
    /// The env var the key was read from, named in auth errors (never the key itself).
    pub api_key_env: String,
    /// Per-attempt timeout (connect, send and read the whole body); the total deadline is the
    /// chain's (`total_timeout`).
    pub timeout: Duration,
    /// Retries of 429, 5xx and network errors (full jitter, see [`RetryPolicy`]).
    pub retry: RetryPolicy,
}

impl EndpointSettings {
    /// The [`HttpConfig`] for these settings, with the adapter's key header, fixed headers and
    /// error classifier.
    pub fn http_config(
        &self,
        key_header: KeyHeader,
        headers: Vec<(&'static str, String)>,
        classify: Classifier,
    ) -> HttpConfig<'_> {
        HttpConfig {
            provider: &self.name,
            api_key: self.api_key.as_ref(),
            key_header,
            api_key_env: &self.api_key_env,
            timeout: self.timeout,
            retry: self.retry,
            headers,
            classify,
        }
    }
}

/// Everything [`HttpClient::new`] needs.
#[derive(Debug, Clone)]
pub struct HttpConfig<'a> {
    /// Config entry name, for messages.
    pub provider: &'a str,
    /// `None` for servers that need no key (local Ollama).
    pub api_key: Option<&'a SecretString>,
    pub key_header: KeyHeader,
    /// The env var the key was read from, named in auth errors.
    pub api_key_env: &'a str,
    /// Per-attempt timeout (connect, send and read the whole body).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Further headers sent with every request (e.g. `anthropic-version`).
    pub headers: Vec<(&'static str, String)>,
    pub classify: Classifier,
}

/// A reqwest client bound to one adapter: its fixed headers (key included), timeout, retry
/// policy and error classifier.
pub struct HttpClient {
    provider: String,
    api_key_env: String,
    timeout: Duration,
    retry: RetryPolicy,
    client: reqwest::Client,
    /// Sent with every request; the key header in here is marked sensitive.
    headers: HeaderMap,
    classify: Classifier,
    /// Per-attempt credentials ([`HttpClient::with_auth`]).
    auth: Option<std::sync::Arc<dyn RequestAuth>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header names only: values include the key.
        let names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("api_key_env", &self.api_key_env)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("headers", &names)
            .finish()
    }
}

impl HttpClient {
    /// Builds the client. Errors ([`ProviderError::Config`]): the HTTP client cannot be built,
    /// or the key or a header value holds characters a header cannot carry (e.g. a newline
    /// pasted into the secret).
    pub fn new(config: HttpConfig<'_>) -> Result<Self, ProviderError> {
        let config_error = |message: String| ProviderError::Config { provider: config.provider.to_owned(), message };
        let mut headers = HeaderMap::new();
        if let Some(key) = config.api_key {
            let (name, value) = match config.key_header {
                KeyHeader::Bearer => (http::header::AUTHORIZATION, format!("Bearer {}", key.expose_secret())),
                KeyHeader::Named(name) => (HeaderName::from_static(name), key.expose_secret().to_owned()),
            };
            // The message must not quote the value: it is the key.
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                config_error(format!(
                    "the API key in `{}` holds characters an HTTP header cannot carry (a stray newline?)",
                    config.api_key_env
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (name, value) in &config.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| config_error(format!("invalid value for the `{name}` header: {value:?}")))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        // The process-wide TLS config (ring, system roots read once at the first handshake).
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config())
            .timeout(config.timeout)
            .user_agent(concat!("agentctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            provider: config.provider.to_owned(),
            api_key_env: config.api_key_env.to_owned(),
            timeout: config.timeout,
            retry: config.retry,
            client,
            headers,
            classify: config.classify,
            auth: None,
        })
    }

    /// The client with per-attempt credentials: `auth` signs or authorizes every request, and
    /// a refusal of them is [`ProviderError::Denied`] with its [`RequestAuth::help`].
    pub fn with_auth(mut self, auth: std::sync::Arc<dyn RequestAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The config entry name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// One attempt: `POST url` with `body` as JSON. A 2xx answer's headers, body and latency,
    /// or the classified failure. The body is read as it streams in and refused past
    /// [`response_cap`]`(max_output_tokens)` bytes ([`AttemptError::TooLarge`], not retried),
    /// so a runaway or hostile server cannot make us buffer more than a few MB.
    pub async fn send_once(
        &self,
        url: &reqwest::Url,
        body: &Value,
        max_output_tokens: u32,
    ) -> Result<RawAnswer, AttemptError> {
        let mut request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .json(body)
            .build()
            .map_err(|e| AttemptError::transport(&e, self.timeout, Some("building the request")))?;
        if let Some(auth) = &self.auth {
            auth.authorize(&mut request).await.map_err(AttemptError::Credentials)?;
        }
        let started = Instant::now();
        let response =
            self.client.execute(request).await.map_err(|e| AttemptError::transport(&e, self.timeout, None))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A body cut short fails here (hyper checks `content-length` and chunk framing): a
        // network error, so it is retried.
        let limit = response_cap(max_output_tokens);
        let mut response = response;
        let mut bytes: Vec<u8> = Vec::new();
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(AttemptError::TooLarge { limit });
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| AttemptError::transport(&e, self.timeout, Some("reading the response body")))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(AttemptError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        // Every provider answers JSON, which is UTF-8 (RFC 8259 §8.1).
        let text = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if (200..300).contains(&status) {
            return Ok(RawAnswer { headers, text, latency: started.elapsed() });
        }
        let mut err = StatusError::new(status, headers, &text);
        (self.classify)(&mut err);
        Err(AttemptError::Status(Box::new(err)))
    }

    /// `POST url` with retries per the policy. The last error comes back unmapped so that an
    /// adapter can react to it (OpenAI's step down to a more compatible request) before
    /// [`HttpClient::map_exhausted`].
    pub async fn post(
        &self,
        url: &reqwest::Url,
        body: &Value,
        max_output_tokens: u32,
    ) -> Result<RawAnswer, Exhausted<AttemptError>> {
        let observer = LogRetries(&self.provider);
        retry_observed(&self.retry, &observer, AttemptError::failure, |_attempt| {
            self.send_once(url, body, max_output_tokens)
        })
        .await
    }

    /// [`HttpClient::post`] with the error mapped to a [`ProviderError`].
    pub async fn post_json(
        &self,
        url: &reqwest::Url,
        body: &Value,
        max_output_tokens: u32,
    ) -> Result<RawAnswer, ProviderError> {
        self.post(url, body, max_output_tokens).await.map_err(|e| self.map_exhausted(e))
    }

    /// Maps the last failed attempt to the error the caller sees: transport → `Network`;
    /// the classifier's verdict; else 401/403 → `Auth` (naming the key's env var),
    /// 408/409/429/5xx → `Unavailable` (noting a server-asked wait over the cap), other → `Rejected`.
    pub fn map_exhausted(&self, exhausted: Exhausted<AttemptError>) -> ProviderError {
        let provider = self.provider.clone();
        let Exhausted { error, attempts, reason } = exhausted;
        let wait_note = match reason {
            GiveUpReason::WaitTooLong(wait) => format!(
                " (the server asked to wait {:.1} s, more than the {:.1} s cap)",
                wait.as_secs_f64(),
                self.retry.cap.as_secs_f64()
            ),
            _ => String::new(),
        };
        let err = match error {
            AttemptError::Transport { message } => return ProviderError::Network { provider, attempts, message },
            AttemptError::Credentials(e) if e.transient => {
                return ProviderError::Network { provider, attempts, message: format!("getting credentials: {e}") }
            }
            AttemptError::Credentials(e) => {
                // The error's own help knows more (no credentials at all) than the source's.
                let help = e.help.or_else(|| self.auth.as_ref().map(|a| a.help())).unwrap_or_default();
                return ProviderError::Denied { provider, status: 0, message: e.message, help };
            }
            AttemptError::TooLarge { limit } => {
                return ProviderError::BadAnswer {
                    provider,
                    message: format!(
                        "the response body is over {limit} bytes, the cap for this request's max_output_tokens; refused unread"
                    ),
                }
            }
            AttemptError::Status(err) => *err,
        };
        let message = err.message();
        let status = err.status;
        let is_auth = match &err.class {
            ErrorClass::Auth => true,
            ErrorClass::ByStatus => matches!(status, 401 | 403),
            _ => false,
        };
        if is_auth {
            if let Some(auth) = &self.auth {
                return ProviderError::Denied { provider, status, message, help: auth.help() };
            }
            return ProviderError::Auth { provider, status, env: self.api_key_env.clone(), message };
        }
        match err.class {
            ErrorClass::Quota => ProviderError::Quota { provider, message },
            ErrorClass::Config => ProviderError::Config { provider, message: format!("refused ({status}): {message}") },
            ErrorClass::Transient => {
                ProviderError::Unavailable { provider, status, attempts, message: format!("{message}{wait_note}") }
            }
            ErrorClass::BadAnswer(message) => ProviderError::BadAnswer { provider, message },
            ErrorClass::ByStatus if matches!(status, 408 | 409 | 429 | 500..=599) => {
                ProviderError::Unavailable { provider, status, attempts, message: format!("{message}{wait_note}") }
            }
            ErrorClass::Rejected | ErrorClass::ByStatus | ErrorClass::Auth => {
                ProviderError::Rejected { provider, status, message }
            }
        }
    }

    /// A [`ProviderError::BadAnswer`] of this provider.
    pub fn bad_answer(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::BadAnswer { provider: self.provider.clone(), message: message.into() }
    }

    /// The answer's text when structured output was asked for through a forced tool (Anthropic,
    /// Bedrock): the input of the call named `tool`, else of the first call (a gateway may
    /// rewrite the name), as JSON text; with no call (or no `tool` asked for), `text`, for the
    /// validator and its repair round to judge. `calls` are the answer's tool calls as
    /// `(name, input)`; `stopped` says why the model stopped, in the API's words
    /// (`stop_reason: end_turn`). Errors ([`ProviderError::BadAnswer`]): an input that cannot
    /// be serialized, an empty answer.
    pub fn forced_tool_answer(
        &self,
        calls: &[(Option<&str>, Option<&Value>)],
        tool: Option<&str>,
        text: impl FnOnce() -> String,
        stopped: &str,
    ) -> Result<String, ProviderError> {
        let input = tool.and_then(|name| {
            calls.iter().find(|(n, _)| *n == Some(name)).or_else(|| calls.first()).and_then(|(_, input)| *input)
        });
        let text = match input {
            Some(input) => serde_json::to_string(input)
                .map_err(|e| self.bad_answer(format!("cannot serialize the tool input: {e}")))?,
            None => text(),
        };
        if text.trim().is_empty() {
            return Err(self.bad_answer(format!("empty answer ({stopped})")));
        }
        Ok(text)
    }

    /// Parses a 2xx body as `T`; a body that is not `T` is a [`ProviderError::BadAnswer`]
    /// naming `what` (e.g. "a chat completion").
    pub fn parse<T: DeserializeOwned>(&self, answer: &RawAnswer, what: &str) -> Result<T, ProviderError> {
        serde_json::from_str(&answer.text).map_err(|e| self.bad_answer(format!("the response is not {what}: {e}")))
    }
}

/// A 2xx response, read whole.
#[derive(Debug)]
pub struct RawAnswer {
    pub headers: HeaderMap,
    /// The body as text (charset from `content-type`, UTF-8 by default).
    pub text: String,
    /// Wall time from sending the request to the end of the body.
    pub latency: Duration,
}

impl RawAnswer {
    /// The first of the `names` headers present and non-empty (request ids: `x-request-id`,
    /// `request-id`, `apim-request-id`).
    pub fn header(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| header_str(&self.headers, name))
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// Connection error, timeout, or a body that could not be read to its end.
    Transport { message: String },
    /// The server answered with a non-2xx status (boxed: it is large, and attempts fail often).
    Status(Box<StatusError>),
    /// The body grew past [`response_cap`] bytes (`limit`); the rest was not read.
    TooLarge { limit: usize },
    /// The adapter's [`RequestAuth`] could not get credentials; nothing was sent.
    Credentials(crate::cloud::CredentialError),
}

/// The most bytes a provider's response body may have, for a request that allows
/// `max_output_tokens` output tokens: 64 bytes a token (a token is about 4 characters; JSON
/// escaping, a tool-call wrapper, reasoning summaries and metadata fit in the rest) plus
/// 256 KiB, at most 4 MiB. A body past it is refused without being buffered whole.
pub fn response_cap(max_output_tokens: u32) -> usize {
    const FLOOR: usize = 256 * 1024;
    const CEILING: usize = 4 * 1024 * 1024;
    (max_output_tokens as usize).saturating_mul(64).saturating_add(FLOOR).min(CEILING)
}

impl AttemptError {
    /// `context` prefixes the message (e.g. "reading the response body").
    fn transport(e: &reqwest::Error, timeout: Duration, context: Option<&str>) -> Self {
        let mut message = match context {
            Some(context) => format!("{context}: "),
            None => String::new(),
        };
        if e.is_timeout() {
            message.push_str(&format!("timed out after {:.1} s", timeout.as_secs_f64()));
            return AttemptError::Transport { message };
        }
        // reqwest's top-level text is generic ("error sending request"); the cause is in the chain.
        message.push_str(&e.to_string());
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        AttemptError::Transport { message }
    }

    /// Classification for [`retry`]: whatever the classifier claimed, and the statuses the spec
    /// never retries (400, 401, 403, 404, 422), are fatal even when the server sends
    /// `x-should-retry: true`; the rest go to [`RetryPolicy::decide`].
    pub fn failure(&self) -> Failure<'_> {
        match self {
            AttemptError::Transport { .. } => Failure::Transient { status: None, headers: None },
            AttemptError::Credentials(e) if e.transient => Failure::Transient { status: None, headers: None },
            AttemptError::Status(err)
                if (err.class == ErrorClass::ByStatus && !matches!(err.status, 400 | 401 | 403 | 404 | 422))
                    || err.class == ErrorClass::Transient =>
            {
                Failure::Transient { status: Some(err.status), headers: Some(&err.headers) }
            }
            AttemptError::Status(_) | AttemptError::TooLarge { .. } | AttemptError::Credentials(_) => Failure::Fatal,
        }
    }
}

/// A non-2xx response with the provider's error object read where present. The common shape
/// is `{"error": {...}}`: OpenAI and Azure `{message, type, param, code}`, Anthropic
/// `{"type": "error", "error": {type, message}}`, Google RPC `{code, message, status, details}`;
/// Ollama may send `{"error": "text"}`.
#[derive(Debug)]
pub struct StatusError {
    pub status: u16,
    pub headers: HeaderMap,
    /// The parsed body, when it was JSON (classifiers read provider-specific details here).
    pub json: Option<Value>,
    /// `error.message`, `error` as a string, or the raw body.
    pub raw_message: String,
    /// `error.type` (OpenAI, Anthropic) or `error.status` (Google RPC, e.g. `RESOURCE_EXHAUSTED`).
    pub kind: Option<String>,
    /// `error.code` (OpenAI `insufficient_quota`, Azure `content_filter`; Google's numeric status).
    pub code: Option<String>,
    /// `error.param` (OpenAI: the request field at fault).
    pub param: Option<String>,
    /// The classifier's verdict; [`ErrorClass::ByStatus`] until it speaks.
    pub class: ErrorClass,
}

impl StatusError {
    /// Parses `body` of a response with `status` and `headers`.
    pub fn new(status: u16, headers: HeaderMap, body: &str) -> Self {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let error = json.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            error.and_then(|e| e.get(name)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let raw_message = match error {
            Some(Value::String(s)) => s.clone(),
            Some(_) => field("message").unwrap_or_else(|| body.to_owned()),
            None => body.to_owned(),
        };
        let kind = field("type").or_else(|| field("status"));
        let (code, param) = (field("code"), field("param"));
        Self { status, headers, json, raw_message, kind, code, param, class: ErrorClass::ByStatus }
    }

    /// The message for our errors: the server's text (trimmed, truncated), or the status line.
    pub fn message(&self) -> String {
        let text = truncate(&self.raw_message);
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            text
        }
    }

    /// Whether the message or `param` names any of `needles` (lowercase; compared
    /// case-insensitively).
    pub fn mentions_any(&self, needles: &[&str]) -> bool {
        let haystack = format!("{} {}", self.raw_message, self.param.as_deref().unwrap_or("")).to_ascii_lowercase();
        needles.iter().any(|n| haystack.contains(n))
    }
}

/// A header's value, trimmed; `None` when absent, empty or not visible ASCII.
pub fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// `s` trimmed and cut to [`MAX_ERROR_MESSAGE_CHARS`] characters (an ellipsis marks the cut).
pub fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A name usable as an OpenAI `json_schema.name` or an Anthropic tool name: both must match
/// `^[a-zA-Z0-9_-]{1,64}$`. Other characters become `_`; an empty name becomes `answer`.
pub fn api_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "answer".to_owned()
    } else {
        cleaned
    }
}

/// Joins `base` (an API root, trailing slashes ignored) and `path` into a URL.
/// Errors ([`ProviderError::Config`]) name the setting `what` (e.g. `base_url`).
pub fn join_url(provider: &str, what: &str, base: &str, path: &str) -> Result<reqwest::Url, ProviderError> {
    let root = base.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{root}{path}")).map_err(|e| ProviderError::Config {
        provider: provider.to_owned(),
        message: format!("invalid {what} `{base}`: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProviderError::Config {
            provider: provider.to_owned(),
            message: format!("invalid {what} `{base}`: the scheme must be http or https"),
        });
    }
    Ok(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[test]
    fn endpoint_settings_debug_never_prints_the_key() {
        let s = EndpointSettings {
            name: "main".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: Some(SecretString::from("sk-proj-do-not-print-0123456789")),
            api_key_env: "OPENAI_API_KEY".to_owned(),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        };
        let debug = format!("{s:?}");
        assert!(!debug.contains("do-not-print"), "{debug}");
        assert!(debug.contains("OPENAI_API_KEY") && debug.contains("gpt-4o-mini"), "{debug}");
        let config = s.http_config(KeyHeader::Bearer, Vec::new(), by_status);
        assert_eq!((config.provider, config.api_key_env, config.timeout), ("main", "OPENAI_API_KEY", s.timeout));
        assert!(!format!("{config:?}").contains("do-not-print"));
    }

    /// A mock server whose lowest-priority catch-all fails the test on any unexpected request.
    pub(crate) async fn strict_server() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(599))
            .with_priority(u8::MAX)
            .expect(0)
            .named("unexpected request")
            .mount(&server)
            .await;
        server
    }

    /// A raw HTTP/1.1 server that answers every request with `response` (bytes as written, so
    /// it can lie about `content-length`) and then closes the connection. Returns its base URL
    /// and the number of requests served so far.
    pub(crate) fn raw_server(response: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                // Read the request head and its content-length body, then answer.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.flush();
                // Dropping the stream closes the connection before the promised length.
            }
        });
        (format!("http://{addr}"), served)
    }

    fn client(retry: RetryPolicy) -> HttpClient {
        HttpClient::new(HttpConfig {
            provider: "main",
            api_key: None,
            key_header: KeyHeader::Bearer,
            api_key_env: "KEY_ENV",
            timeout: Duration::from_secs(5),
            retry,
            headers: Vec::new(),
            classify: by_status,
        })
        .unwrap()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy { max_retries: 2, base: Duration::from_millis(1), cap: Duration::from_secs(1) }
    }

    #[tokio::test]
    async fn body_cut_half_way_is_a_retried_network_error() {
        let (base, served) = raw_server(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n{\"id\": \"x\", \"cho",
        );
        let http = client(fast());
        let url = join_url("main", "base_url", &base, "/v1/x").unwrap();
        let err = http.post_json(&url, &serde_json::json!({}), 1024).await.unwrap_err();
        assert_eq!(served.load(Ordering::SeqCst), 3, "1 attempt + 2 retries");
        match err {
            ProviderError::Network { attempts: 3, message, .. } => {
                assert!(message.contains("reading the response body"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_unread_and_not_retried_with_or_without_a_length() {
        // Issue #17: a 150 MB answer was buffered whole (612 MB RSS).
        assert_eq!(response_cap(0), 256 * 1024);
        assert_eq!(response_cap(4096), 256 * 1024 + 4096 * 64);
        assert_eq!(response_cap(u32::MAX), 4 * 1024 * 1024, "at most 4 MiB");
        let over = response_cap(16) + 1;
        // With content-length: refused before the first byte of the body.
        let server = strict_server().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_raw("a".repeat(over), "application/json"))
            .expect(1)
            .mount(&server)
            .await;
        let http = client(fast());
        let url = join_url("main", "base_url", &server.uri(), "/v1/x").unwrap();
        match http.post_json(&url, &serde_json::json!({}), 16).await.unwrap_err() {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("over 263168 bytes"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        // Chunked (no length): refused once the chunks pass the cap; one attempt.
        let chunk = format!("10000\r\n{}\r\n", "b".repeat(0x10000));
        let raw = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{}0\r\n\r\n",
            chunk.repeat(8)
        );
        let (base, served) = raw_server(Box::leak(raw.into_boxed_str()));
        let url = join_url("main", "base_url", &base, "/v1/x").unwrap();
        let err = http.post_json(&url, &serde_json::json!({}), 16).await.unwrap_err();
        assert!(matches!(err, ProviderError::BadAnswer { .. }), "{err:?}");
        assert_eq!(served.load(Ordering::SeqCst), 1, "not retried");
        // Under the cap the same chunked body is read whole.
        let answer = http.post_json(&url, &serde_json::json!({}), 8192).await.unwrap();
        assert_eq!(answer.text.len(), 8 * 0x10000);
    }

    #[tokio::test]
    async fn malformed_json_with_200_is_a_bad_answer_without_retry() {
        let server = strict_server().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_raw("{\"id\": \"x\", \"cho", "application/json"))
            .expect(1)
            .mount(&server)
            .await;
        let http = client(fast());
        let url = join_url("main", "base_url", &server.uri(), "/v1/x").unwrap();
        let answer = http.post_json(&url, &serde_json::json!({}), 1024).await.unwrap();
        let err = http.parse::<Value>(&answer, "a chat completion").unwrap_err();
        match err {
            ProviderError::BadAnswer { message, .. } => assert!(message.contains("not a chat completion"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn status_error_reads_every_error_shape() {
        let e = StatusError::new(
            429,
            HeaderMap::new(),
            r#"{"error": {"message": "m", "type": "t", "code": "c", "param": "p"}}"#,
        );
        assert_eq!(
            (e.kind.as_deref(), e.code.as_deref(), e.param.as_deref(), e.message()),
            (Some("t"), Some("c"), Some("p"), "m".to_owned())
        );
        let e = StatusError::new(
            400,
            HeaderMap::new(),
            r#"{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}"#,
        );
        assert_eq!((e.kind.as_deref(), e.code.as_deref()), (Some("INVALID_ARGUMENT"), Some("400")));
        let e = StatusError::new(500, HeaderMap::new(), r#"{"error": "model not loaded"}"#);
        assert_eq!(e.message(), "model not loaded");
        let e = StatusError::new(502, HeaderMap::new(), "  ");
        assert_eq!(e.message(), "HTTP 502");
        let e = StatusError::new(502, HeaderMap::new(), &"x".repeat(2000));
        assert_eq!(e.message().chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
    }

    #[test]
    fn key_with_a_newline_is_a_config_error_that_hides_the_key() {
        let key = SecretString::from("sk-secret\nline");
        let err = HttpClient::new(HttpConfig {
            provider: "main",
            api_key: Some(&key),
            key_header: KeyHeader::Named("x-api-key"),
            api_key_env: "KEY_ENV",
            timeout: Duration::from_secs(1),
            retry: fast(),
            headers: Vec::new(),
            classify: by_status,
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("KEY_ENV") && !text.contains("sk-secret"), "{text}");
    }

    #[test]
    fn urls_must_be_http() {
        assert!(join_url("m", "base_url", "not a url", "/x").is_err());
        assert!(join_url("m", "base_url", "ftp://host", "/x").is_err());
        assert_eq!(join_url("m", "base_url", "https://h/v1//", "/x").unwrap().as_str(), "https://h/v1/x");
    }
}
