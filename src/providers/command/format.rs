//! What goes to an agent CLI's stdin and how its stdout is read.
//!
//! Input: [`stdin_prompt`] frames the system prompt, the untrusted user prompt between two
//! nonce-carrying marker lines, and the JSON instruction.
//!
//! Output formats ([`OutputFormat`]):
//! - `Text`: stdout is the answer. Usage is reported as zero: an agent CLI's tokens and cost
//!   are not accounted unless the CLI reports them (we do not guess with a tokenizer, because
//!   agents add their own system prompts and tool turns that we cannot see).
//! - `ClaudeJson`: `claude -p --output-format json` prints one result object; the shape follows
//!   the Claude Agent SDK's `SDKResultMessage` (TypeScript reference, also the Python SDK's
//!   `ResultMessage`) and the headless-mode docs
//!   (<https://docs.anthropic.com/en/docs/claude-code/sdk/sdk-headless>): `type: "result"`,
//!   `subtype` (`success`, `error_max_turns`, `error_during_execution`, `error_max_budget_usd`,
//!   ...), `is_error`, `result`, `structured_output`, `total_cost_usd`, `usage`
//!   (`input_tokens`, `cache_creation_input_tokens`, `cache_read_input_tokens`,
//!   `output_tokens`; Anthropic's classes, which already add up without overlap) and
//!   `modelUsage` (per model name). `--output-format stream-json --verbose` works too: its
//!   last line is the same result object.
//! - `CodexJsonl`: `codex exec --json` prints JSONL thread events; the shapes follow
//!   `codex-rs/exec/src/exec_events.rs` in openai/codex: the answer is the last
//!   `item.completed` whose `item.type` is `agent_message`, usage comes from `turn.completed`
//!   (`input_tokens`, `cached_input_tokens`, `output_tokens`, where cached is a subset of
//!   input as in codex's `TokenUsage::non_cached_input`), failures are `turn.failed` and
//!   `error` events. Codex reads the prompt from stdin when no prompt argument (or `-`) is given.

use std::collections::BTreeMap;

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use super::MAX_ERROR_MESSAGE_CHARS;
use crate::providers::{CompletionRequest, Usage};

/// How the agent's stdout is read. See the module docs for the sources of each shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// stdout is the answer; usage is reported as zero (not accounted).
    #[default]
    Text,
    /// `claude -p --output-format json` (or `stream-json`): the `result` object.
    ClaudeJson,
    /// `codex exec --json`: JSONL thread events.
    CodexJsonl,
}

/// The text written to the agent's stdin: the system prompt, then the user prompt between
/// two marker lines carrying `nonce`, then (when a schema is asked for) the JSON instruction.
///
/// The nonce makes the end marker unguessable, so untrusted text cannot fake the end of the
/// input and continue with "instructions" of its own (the same idea as Actions'
/// `::stop-commands::<random>`). The JSON instruction comes last, after the untrusted text,
/// because agents follow the most recent instruction best.
pub fn stdin_prompt(req: &CompletionRequest, nonce: &str) -> String {
    let mut text = String::with_capacity(req.system.len() + req.prompt.len() + 256);
    let system = req.system.trim_end();
    if !system.is_empty() {
        text.push_str(system);
        text.push_str("\n\n");
    }
    text.push_str(&format!("===== BEGIN INPUT {nonce} =====\n"));
    text.push_str(&req.prompt);
    if !req.prompt.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("===== END INPUT {nonce} =====\n"));
    if let Some((_, schema)) = &req.json_schema {
        text.push('\n');
        text.push_str(&json_instructions(schema));
        text.push('\n');
    }
    text
}

/// A fresh random marker for [`stdin_prompt`] (16 hex digits).
pub(super) fn input_nonce() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// The instruction asking for one JSON object valid against `schema` (agent CLIs have no
/// native structured-output mode we can rely on across tools; callers validate anyway).
fn json_instructions(schema: &Value) -> String {
    let schema = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    format!(
        "Answer with one JSON object and nothing else: no Markdown fences, no prose before or after. \
         The JSON must be valid against this JSON Schema:\n{schema}"
    )
}

/// An answer read from an agent's stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAnswer {
    /// The answer's text (for JSON answers, the raw JSON text).
    pub text: String,
    /// Tokens as the CLI reported them; zero for [`OutputFormat::Text`].
    pub usage: Usage,
    /// The model the CLI reports, if any.
    pub model: Option<String>,
    /// Cost in USD as the CLI reported it (`claude`'s `total_cost_usd`).
    pub total_cost_usd: Option<f64>,
}

/// Why an agent's stdout gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentOutputError {
    /// The output is not in the expected format, or holds no answer.
    #[error("{0}")]
    Malformed(String),
    /// The CLI reported a failure in its output (`is_error`, `turn.failed`).
    #[error("{message}")]
    Failed {
        /// What the CLI said, truncated (may quote the agent's own error text).
        message: String,
        /// Whether retrying can help.
        kind: FailureKind,
    },
}

/// How a failure the CLI reported should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Possibly transient (an API error during the run): retried.
    Transient,
    /// A spend limit was hit (`error_max_budget_usd`): never retried.
    Quota,
    /// Retrying will not help (`error_max_turns`, structured-output retries exhausted).
    Fatal,
    /// The CLI's login or API key was refused ([`AUTH_FAILURE_MARKERS`]): never retried,
    /// reported as [`ProviderError::Auth`](crate::providers::ProviderError::Auth) (exit 4).
    Auth,
}

/// Lower-case fragments of the messages agent CLIs print when their credentials are refused.
/// Checked only on a failed run (non-zero exit, `is_error`, `turn.failed`), so an answer that
/// merely quotes one of them is not affected.
///
/// Sources: what Claude Code (`claude -p`) prints in `result` / on stdout for a refused login or
/// key: `Invalid API key · Please run /login`, `Invalid API key · Fix external API key`,
/// `Not logged in · Please run /login`, `Login expired · Please run /login`,
/// `OAuth token revoked · Please run /login`, `OAuth token has expired. Please obtain a new
/// token or refresh your existing token.`, and the API's own 401 passed through as
/// `API Error: 401 {"type":"error","error":{"type":"authentication_error",...}}` (Anthropic
/// error types, <https://docs.anthropic.com/en/api/errors>); codex's `unexpected status 401
/// Unauthorized: ...` (openai/codex `codex-rs/core`, `UnexpectedStatus`).
pub const AUTH_FAILURE_MARKERS: [&str; 7] = [
    "please run /login",
    "invalid api key",
    "fix external api key",
    "not logged in",
    "oauth token has expired",
    "authentication_error",
    "401 unauthorized",
];

/// Lower-case fragments of messages that mean the account is out of credit. Source: Claude
/// Code prints `Credit balance is too low` when the API account has no credit left.
pub const QUOTA_FAILURE_MARKERS: [&str; 1] = ["credit balance is too low"];

/// How a failure message the CLI printed should be treated, by [`AUTH_FAILURE_MARKERS`] and
/// [`QUOTA_FAILURE_MARKERS`]; `None` when it names neither.
pub fn classify_failure_text(text: &str) -> Option<FailureKind> {
    let lower = text.to_lowercase();
    if AUTH_FAILURE_MARKERS.iter().any(|m| lower.contains(m)) {
        Some(FailureKind::Auth)
    } else if QUOTA_FAILURE_MARKERS.iter().any(|m| lower.contains(m)) {
        Some(FailureKind::Quota)
    } else {
        None
    }
}

/// Reads `stdout` in `format`.
pub fn parse_output(format: OutputFormat, stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    match format {
        OutputFormat::Text => {
            let text = stdout.trim();
            if text.is_empty() {
                return Err(AgentOutputError::Malformed("empty answer on stdout".to_owned()));
            }
            Ok(AgentAnswer { text: text.to_owned(), usage: Usage::default(), model: None, total_cost_usd: None })
        }
        OutputFormat::ClaudeJson => parse_claude_json(stdout),
        OutputFormat::CodexJsonl => parse_codex_jsonl(stdout),
    }
}

/// `claude -p --output-format json` result object (fields per the Agent SDK's
/// `SDKResultMessage`; every field optional so that older and newer CLIs parse).
#[derive(Debug, Deserialize)]
struct ClaudeResult {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    structured_output: Option<Value>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
    #[serde(rename = "modelUsage", default)]
    model_usage: Option<BTreeMap<String, ClaudeModelUsage>>,
    /// Error results may list messages here (`errors: string[]`).
    #[serde(default)]
    errors: Option<Value>,
}

/// Anthropic usage classes: `input_tokens` excludes cache reads and writes.
#[derive(Debug, Deserialize)]
struct ClaudeUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// One `modelUsage` entry; only read to name the model that did most of the work.
#[derive(Debug, Deserialize)]
struct ClaudeModelUsage {
    #[serde(rename = "outputTokens", default)]
    output_tokens: Option<u64>,
}

/// Parses `claude`'s result object: the whole of stdout (`--output-format json`), else the
/// last line that is a `type: "result"` object (`--output-format stream-json`).
pub fn parse_claude_json(stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    let whole =
        serde_json::from_str::<ClaudeResult>(stdout.trim()).ok().filter(|r| r.kind.as_deref() == Some("result"));
    let result = whole
        .or_else(|| {
            stdout.lines().rev().filter(|l| !l.trim().is_empty()).find_map(|line| {
                serde_json::from_str::<ClaudeResult>(line.trim()).ok().filter(|r| r.kind.as_deref() == Some("result"))
            })
        })
        .ok_or_else(|| {
            AgentOutputError::Malformed(
                "no `type: \"result\"` object on stdout\nhelp: run claude with `-p --output-format json`, \
                 or set `output: text`"
                    .to_owned(),
            )
        })?;
    let subtype = result.subtype.as_deref().unwrap_or("");
    if result.is_error == Some(true) || subtype.starts_with("error") {
        let detail = result
            .result
            .as_deref()
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
            .or_else(|| error_strings(result.errors.as_ref()))
            .unwrap_or_default();
        let kind = match subtype {
            "error_max_budget_usd" => FailureKind::Quota,
            "error_max_turns" | "error_max_structured_output_retries" => FailureKind::Fatal,
            _ => classify_failure_text(&detail).unwrap_or(FailureKind::Transient),
        };
        let subtype = if subtype.is_empty() { "error" } else { subtype };
        let message = if detail.is_empty() {
            format!("claude reported {subtype}")
        } else {
            format!("claude reported {subtype}: {}", truncate(&detail))
        };
        return Err(AgentOutputError::Failed { message, kind });
    }
    // With `--json-schema` the validated answer is in `structured_output`; `result` may be prose.
    let text = match result.structured_output.filter(|v| !v.is_null()) {
        Some(value) => value.to_string(),
        None => result.result.unwrap_or_default(),
    };
    if text.trim().is_empty() {
        return Err(AgentOutputError::Malformed(format!("claude returned an empty result (subtype `{subtype}`)")));
    }
    let usage = result
        .usage
        .map(|u| Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            cached_input_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
            cache_write_1h_tokens: 0,
            output_tokens: u.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        })
        .unwrap_or_default();
    // Claude Code may call a small model for side tasks; the main model writes the most.
    let model = result
        .model_usage
        .and_then(|models| models.into_iter().max_by_key(|(_, u)| u.output_tokens.unwrap_or(0)).map(|(name, _)| name));
    Ok(AgentAnswer { text: text.trim().to_owned(), usage, model, total_cost_usd: result.total_cost_usd })
}

/// Parses `codex exec --json` events (see the module docs). Lines that are not JSON are
/// skipped; usage is summed over `turn.completed` events.
pub fn parse_codex_jsonl(stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    let mut text: Option<String> = None;
    let mut usage = Usage::default();
    let mut turn_failed: Option<String> = None;
    let mut last_error: Option<String> = None;
    let mut saw_event = false;
    for line in stdout.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { continue };
        let Some(kind) = event.get("type").and_then(Value::as_str) else { continue };
        saw_event = true;
        match kind {
            "item.completed" => {
                let item = event.get("item");
                if item.and_then(|i| i.get("type")).and_then(Value::as_str) == Some("agent_message") {
                    if let Some(t) = item.and_then(|i| i.get("text")).and_then(Value::as_str) {
                        text = Some(t.to_owned());
                    }
                }
            }
            "turn.completed" => {
                let u = event.get("usage");
                let count = |name: &str| u.and_then(|u| u.get(name)).and_then(Value::as_u64).unwrap_or(0);
                let (input, cached) = (count("input_tokens"), count("cached_input_tokens"));
                usage += Usage {
                    input_tokens: input.saturating_sub(cached),
                    cached_input_tokens: cached,
                    output_tokens: count("output_tokens"),
                    ..Usage::default()
                };
            }
            "turn.failed" => {
                let message = event.pointer("/error/message").and_then(Value::as_str).unwrap_or("turn failed");
                turn_failed = Some(message.to_owned());
            }
            "error" => {
                last_error = event.get("message").and_then(Value::as_str).map(str::to_owned);
            }
            _ => {}
        }
    }
    if let Some(message) = turn_failed {
        return Err(AgentOutputError::Failed {
            kind: classify_failure_text(&message).unwrap_or(FailureKind::Transient),
            message: format!("codex reported turn.failed: {}", truncate(&message)),
        });
    }
    match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => Ok(AgentAnswer { text: text.trim().to_owned(), usage, model: None, total_cost_usd: None }),
        None => match last_error {
            Some(message) => Err(AgentOutputError::Failed {
                kind: classify_failure_text(&message).unwrap_or(FailureKind::Transient),
                message: format!("codex reported an error: {}", truncate(&message)),
            }),
            None if saw_event => Err(AgentOutputError::Malformed("codex finished without an agent_message".to_owned())),
            None => Err(AgentOutputError::Malformed(
                "no JSONL events on stdout\nhelp: run codex as `codex exec --json`, or set `output: text`".to_owned(),
            )),
        },
    }
}

/// `errors: ["...", ...]` joined, if present.
fn error_strings(errors: Option<&Value>) -> Option<String> {
    let list: Vec<&str> = errors?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!list.is_empty()).then(|| list.join("; "))
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::super::tests::{request, CLAUDE_INVALID_KEY, CLAUDE_RESULT};
    use super::*;

    #[test]
    fn prompt_layout_separates_system_input_and_json_instruction() {
        let mut req = request("line 1\nline 2");
        req.json_schema = Some(("review".to_owned(), serde_json::json!({"type": "object", "required": ["findings"]})));
        let text = stdin_prompt(&req, "abc123");
        let begin = text.find("===== BEGIN INPUT abc123 =====\n").unwrap();
        let end = text.find("===== END INPUT abc123 =====\n").unwrap();
        let json = text.find("Answer with one JSON object").unwrap();
        assert!(text.starts_with("You review pull requests.\n\n"));
        assert!(begin < text.find("line 1\nline 2\n").unwrap() && text.find("line 2").unwrap() < end);
        assert!(end < json, "the JSON instruction comes after the untrusted input");
        assert!(text[json..].contains("\"required\""), "the schema is included");
        // Without a schema there is no JSON instruction.
        assert!(!stdin_prompt(&request("x"), "n").contains("JSON"));
        // Nonces differ between calls, so untrusted text cannot guess the end marker.
        assert_ne!(input_nonce(), input_nonce());
    }

    #[test]
    fn claude_json_gives_text_usage_model_and_cost() {
        let a = parse_claude_json(CLAUDE_RESULT).unwrap();
        assert_eq!(a.text, r#"{"findings":[]}"#);
        assert_eq!(
            a.usage,
            Usage {
                input_tokens: 12,
                cached_input_tokens: 15635,
                cache_write_tokens: 1850,
                cache_write_1h_tokens: 0,
                output_tokens: 245,
                reasoning_tokens: 0
            }
        );
        assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5-20250929"), "the model that wrote the most");
        assert_eq!(a.total_cost_usd, Some(0.0379825));
    }

    #[test]
    fn claude_stream_json_uses_the_last_result_line() {
        let stream = format!(
            "{}\n{}\n{CLAUDE_RESULT}\n",
            r#"{"type":"system","subtype":"init","session_id":"s","model":"claude-sonnet-4-5-20250929"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"thinking aloud"}]},"session_id":"s"}"#
        );
        assert_eq!(parse_claude_json(&stream).unwrap().text, r#"{"findings":[]}"#);
    }

    #[test]
    fn claude_structured_output_wins_over_result_text() {
        let mut v: Value = serde_json::from_str(CLAUDE_RESULT).unwrap();
        v["result"] = Value::from("Here is the review.");
        v["structured_output"] = serde_json::json!({"findings": [{"line": 3}]});
        let a = parse_claude_json(&v.to_string()).unwrap();
        assert_eq!(a.text, r#"{"findings":[{"line":3}]}"#);
    }

    #[test]
    fn claude_errors_are_classified() {
        let err = |subtype: &str, extra: &str| {
            let text = format!(r#"{{"type":"result","subtype":"{subtype}","is_error":true{extra},"session_id":"s"}}"#);
            match parse_claude_json(&text).unwrap_err() {
                AgentOutputError::Failed { kind, message } => (kind, message),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(err("error_max_budget_usd", "").0, FailureKind::Quota);
        assert_eq!(err("error_max_turns", "").0, FailureKind::Fatal);
        let (kind, message) = err("error_during_execution", r#","errors":["API Error: 529 overloaded"]"#);
        assert_eq!(kind, FailureKind::Transient);
        assert!(message.contains("529 overloaded"), "{message}");
        // `is_error` with subtype success (e.g. an API error turned into the result text).
        let (kind, message) = err("success", r#","result":"API Error: 500""#);
        assert_eq!((kind, message.contains("API Error: 500")), (FailureKind::Transient, true));
        assert!(matches!(parse_claude_json("not json"), Err(AgentOutputError::Malformed(_))));
        assert!(matches!(parse_claude_json(r#"{"type":"assistant"}"#), Err(AgentOutputError::Malformed(_))));
    }

    #[test]
    fn claude_auth_messages_are_auth_failures() {
        for text in [
            "Invalid API key · Please run /login",
            "Invalid API key · Fix external API key",
            "Not logged in · Please run /login",
            "Login expired · Please run /login",
            "OAuth token revoked · Please run /login",
            "OAuth token has expired. Please obtain a new token or refresh your existing token.",
            r#"API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        ] {
            assert_eq!(classify_failure_text(text), Some(FailureKind::Auth), "{text}");
        }
        assert_eq!(classify_failure_text("Credit balance is too low"), Some(FailureKind::Quota));
        for text in ["API Error: 529 overloaded", "API Error: 500", "Prompt is too long", ""] {
            assert_eq!(classify_failure_text(text), None, "{text}");
        }
        match parse_claude_json(CLAUDE_INVALID_KEY).unwrap_err() {
            AgentOutputError::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::Auth);
                assert!(message.contains("Please run /login"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// `codex exec --json` events in the shapes of openai/codex `exec_events.rs`.
    const CODEX_EVENTS: &str = r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Scanning the diff**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"src\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"{\"findings\":[]}"}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"#;

    #[test]
    fn codex_jsonl_gives_last_agent_message_and_usage() {
        let a = parse_codex_jsonl(CODEX_EVENTS).unwrap();
        assert_eq!(a.text, r#"{"findings":[]}"#);
        assert_eq!(
            a.usage,
            Usage { input_tokens: 315, cached_input_tokens: 24448, output_tokens: 122, ..Usage::default() },
            "cached tokens are a subset of input_tokens"
        );
        assert_eq!(a.model, None);
    }

    #[test]
    fn codex_failures_are_reported() {
        let failed = "{\"type\":\"turn.started\"}\n{\"type\":\"error\",\"message\":\"stream disconnected\"}\n\
                      {\"type\":\"turn.failed\",\"error\":{\"message\":\"stream disconnected before completion\"}}\n";
        match parse_codex_jsonl(failed).unwrap_err() {
            AgentOutputError::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::Transient);
                assert!(message.contains("stream disconnected before completion"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_codex_jsonl("plain text answer"), Err(AgentOutputError::Malformed(_))));
        assert!(matches!(
            parse_codex_jsonl("{\"type\":\"turn.completed\",\"usage\":{}}"),
            Err(AgentOutputError::Malformed(_))
        ));
    }
}
