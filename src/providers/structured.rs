//! Structured output: get JSON that validates against a schema out of any [`Provider`].
//!
//! The adapter asks in its native mode; we then strip code fences, parse, validate with
//! `jsonschema`, and on failure make one repair request that quotes the validation errors.
//! A second failure is a [`ProviderError::BadAnswer`] listing what was wrong.
//!
//! Compiling a schema (resolving references, building its regexes) costs far more than
//! validating one answer, and a review validates one answer per chunk against the same
//! schema, so compiled validators are cached process-wide ([`compiled_validator`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};

/// Most errors quoted back to the model or into a [`ProviderError::BadAnswer`]; a badly wrong
/// answer can produce hundreds, and the first ones are enough to repair it.
const MAX_LISTED_ERRORS: usize = 20;

/// Most distinct schemas kept compiled; past that the cache starts over (agentctl uses a handful,
/// so this only bounds memory against a caller that builds schemas on the fly).
const MAX_CACHED_SCHEMAS: usize = 32;

/// Compiled validators by `(name, schema text)`.
type ValidatorCache = Mutex<HashMap<(String, String), Arc<jsonschema::Validator>>>;

/// The validator for `schema`, compiled on first use and then shared (by every chunk of a
/// review, from any task).
///
/// The key is the name and the schema's JSON text, not the name alone, so two different schemas
/// that happen to share a name never validate against each other. Errors: the schema does not
/// compile (the `jsonschema` error's text); failures are not cached.
pub fn compiled_validator(name: &str, schema: &serde_json::Value) -> Result<Arc<jsonschema::Validator>, String> {
    static CACHE: OnceLock<ValidatorCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (name.to_owned(), schema.to_string());
    // A panic while holding the lock cannot leave a half-inserted Arc: keep using the map.
    if let Some(found) = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
        return Ok(Arc::clone(found));
    }
    // Compiled outside the lock; two tasks racing on a cold cache both compile, one result wins.
    let validator = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
    let mut map = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= MAX_CACHED_SCHEMAS {
        map.clear();
    }
    Ok(Arc::clone(map.entry(key).or_insert(validator)))
}

/// The validated JSON and every completion it took (one, or two with a repair round), so the
/// caller can account all usage.
#[derive(Debug, Clone)]
pub struct StructuredAnswer {
    pub value: serde_json::Value,
    pub completions: Vec<Completion>,
}

/// Asks `provider` for JSON valid against `req.json_schema` (which must be set).
///
/// Flow: one call; [`extract_json`]; parse; validate. On a parse or validation failure, one
/// repair call with the same system prompt and a user prompt that appends the previous answer
/// and the errors (`instance_path: message`, JSON Pointer paths, `(root)` for the whole
/// document); then validate again.
///
/// The schema is compiled once per process ([`compiled_validator`]), not once per call.
///
/// Errors: [`ProviderError::Config`] when `req.json_schema` is unset or is not a valid schema;
/// [`ProviderError::BadAnswer`] listing the errors when the repaired answer is still invalid;
/// any error of the provider calls themselves.
///
/// NOTE: when the repair call itself fails, the first completion's usage is not returned (the
/// error type has no room for it); callers that must account every token should record usage
/// inside the provider.
pub async fn complete_json(
    provider: &dyn Provider,
    req: &CompletionRequest,
) -> Result<StructuredAnswer, ProviderError> {
    let config_error = |message: String| ProviderError::Config { provider: provider.name().to_owned(), message };
    let (name, schema) = req
        .json_schema
        .as_ref()
        .ok_or_else(|| config_error("structured output was asked for without a JSON schema".to_owned()))?;
    let validator = compiled_validator(name, schema)
        .map_err(|e| config_error(format!("the JSON schema `{name}` is invalid: {e}")))?;

    let first = provider.complete(req).await?;
    let errors = match check(&validator, &first.text) {
        Ok(value) => return Ok(StructuredAnswer { value, completions: vec![first] }),
        Err(errors) => errors,
    };

    let repair = CompletionRequest { prompt: repair_prompt(&req.prompt, &first.text, &errors), ..req.clone() };
    let second = provider.complete(&repair).await?;
    let checked = check(&validator, &second.text);
    let completions = vec![first, second];
    match checked {
        Ok(value) => Ok(StructuredAnswer { value, completions }),
        Err(errors) => Err(ProviderError::BadAnswer {
            provider: provider.name().to_owned(),
            message: format!(
                "the answer does not match the schema `{name}` after one repair round:\n{}",
                bullet_list(&errors)
            ),
        }),
    }
}

/// Extracts, parses and validates one answer; the errors are `instance_path: message` lines.
fn check(validator: &jsonschema::Validator, text: &str) -> Result<serde_json::Value, Vec<String>> {
    let json = extract_json(text);
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| vec![format!("(root): the answer is not valid JSON: {e}")])?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| {
            let path = e.instance_path().as_str();
            format!("{}: {e}", if path.is_empty() { "(root)" } else { path })
        })
        .collect();
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

/// The user prompt of the repair round: the original task, then what went wrong.
fn repair_prompt(original: &str, previous: &str, errors: &[String]) -> String {
    format!(
        "{original}\n\n---\nYour previous answer was not usable.\n\nPrevious answer:\n{previous}\n\n\
         Errors:\n{}\n\nAnswer again with the corrected JSON object only, with no prose and no code fences.",
        bullet_list(errors)
    )
}

fn bullet_list(errors: &[String]) -> String {
    let mut lines: Vec<String> = errors.iter().take(MAX_LISTED_ERRORS).map(|e| format!("- {e}")).collect();
    if errors.len() > MAX_LISTED_ERRORS {
        lines.push(format!("- ... and {} more", errors.len() - MAX_LISTED_ERRORS));
    }
    lines.join("\n")
}

/// Strips a Markdown code fence (```json ... ```) or leading/trailing prose around one JSON
/// object, returning the JSON text.
///
/// Returns the first `{...}` span (brace-balanced, aware of strings and escapes) that parses as
/// JSON; being the first one that parses, it is the outermost object. When none parses, returns
/// the inside of the first code fence, else the text from the first `{` to the last `}`, else
/// the trimmed text, so the parse error the caller reports points at the JSON itself.
pub fn extract_json(text: &str) -> &str {
    let trimmed = text.trim();
    if serde_json::from_str::<serde_json::Value>(trimmed).map(|v| v.is_object()).unwrap_or(false) {
        return trimmed;
    }
    for (start, _) in trimmed.match_indices('{') {
        if let Some(end) = matching_brace(trimmed, start) {
            let candidate = &trimmed[start..=end];
            if serde_json::from_str::<serde_json::Value>(candidate).is_ok() {
                return candidate;
            }
        }
    }
    if let Some(inner) = fence_body(trimmed) {
        return inner;
    }
    match (trimmed.find('{'), trimmed.rfind('}')) {
        (Some(start), Some(end)) if start < end => &trimmed[start..=end],
        _ => trimmed,
    }
}

/// Index of the `}` closing the `{` at `start`, skipping braces inside JSON strings.
fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The body of the first ``` fence (any info string), trimmed; to the end when unclosed.
fn fence_body(s: &str) -> Option<&str> {
    let open = s.find("```")?;
    let after = &s[open + 3..];
    // Skip the info string (`json`) up to the end of the fence line.
    let body = &after[after.find('\n').map(|i| i + 1).unwrap_or(after.len())..];
    let body = body.find("```").map(|end| &body[..end]).unwrap_or(body);
    Some(body.trim())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::providers::openai::{OpenAi, OpenAiSettings};
    use crate::resilience::RetryPolicy;
    use serde_json::{json, Value};
    use std::time::Duration;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

    #[test]
    fn extract_plain_object() {
        assert_eq!(extract_json("  {\"a\": 1}\n"), "{\"a\": 1}");
    }

    #[test]
    fn extract_from_json_fence() {
        let text = "```json\n{\"a\": {\"b\": [1, 2]}}\n```";
        assert_eq!(extract_json(text), "{\"a\": {\"b\": [1, 2]}}");
        let text = "Here you go:\n```\n{\"a\": 1}\n```\nHope it helps.";
        assert_eq!(extract_json(text), "{\"a\": 1}");
    }

    #[test]
    fn extract_skips_prose_and_picks_the_outermost_object() {
        let text =
            "Sure! Using {braces} in prose. {\"x\": {\"y\": \"a } brace in a string\"}, \"z\": \"\\\"{\"} Thanks {bye}";
        assert_eq!(extract_json(text), "{\"x\": {\"y\": \"a } brace in a string\"}, \"z\": \"\\\"{\"}");
    }

    #[test]
    fn extract_falls_back_for_broken_json() {
        // Unparsable fenced JSON: the fence body, so the parse error points at the JSON.
        assert_eq!(extract_json("```json\n{\"a\": \n```"), "{\"a\":");
        assert_eq!(extract_json("no json here"), "no json here");
        assert_eq!(extract_json("see {\"a\": oops} ok"), "{\"a\": oops}");
    }

    fn review_schema() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/review-output.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn valid_review() -> Value {
        json!({"summary": "Adds a retry loop.", "findings": [{
            "path": "src/lib.rs", "line": 12, "severity": "medium", "category": "bug",
            "title": "Off by one", "body": "The loop runs once too often."}]})
    }

    use crate::providers::http::tests::strict_server as server;

    fn provider(server: &MockServer) -> OpenAi {
        OpenAi::new(OpenAiSettings {
            name: "main".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            base_url: format!("{}/v1", server.uri()),
            api_key: None,
            api_key_env: "OPENAI_API_KEY".to_owned(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy { max_retries: 1, base: Duration::from_millis(1), cap: Duration::from_secs(1) },
        })
        .unwrap()
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: "You review code.".to_owned(),
            prompt: "Review this diff.".to_owned(),
            json_schema: Some(("review-output".to_owned(), review_schema())),
            max_output_tokens: 1024,
            temperature: None,
            prompt_cache: None,
        }
    }

    fn answer(content: &str, prompt_tokens: u64) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 5},
        }))
    }

    fn user_prompt(req: &Request) -> String {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        body["messages"][1]["content"].as_str().unwrap_or_default().to_owned()
    }

    fn is_repair(req: &Request) -> bool {
        user_prompt(req).contains("Previous answer:")
    }

    fn chat() -> MockBuilder {
        Mock::given(method("POST")).and(path("/v1/chat/completions"))
    }

    #[tokio::test]
    async fn fenced_json_is_accepted_without_repair() {
        let server = server().await;
        let fenced = format!("```json\n{}\n```", serde_json::to_string_pretty(&valid_review()).unwrap());
        chat().respond_with(answer(&fenced, 100)).expect(1).mount(&server).await;
        let out = complete_json(&provider(&server), &request()).await.unwrap();
        assert_eq!(out.value, valid_review());
        assert_eq!(out.completions.len(), 1);
    }

    #[tokio::test]
    async fn invalid_json_gets_one_repair_round_quoting_the_error() {
        let server = server().await;
        chat()
            .and(|r: &Request| !is_repair(r))
            .respond_with(answer("{\"summary\": \"cut off", 100))
            .expect(1)
            .mount(&server)
            .await;
        chat().and(is_repair).respond_with(answer(&valid_review().to_string(), 150)).expect(1).mount(&server).await;
        let out = complete_json(&provider(&server), &request()).await.unwrap();
        assert_eq!(out.value, valid_review());
        assert_eq!(out.completions.len(), 2);
        assert_eq!(out.completions.iter().map(|c| c.usage.input_tokens).sum::<u64>(), 250);

        let received = server.received_requests().await.unwrap();
        let repair = user_prompt(&received[1]);
        assert!(repair.starts_with("Review this diff."), "{repair}");
        assert!(repair.contains("{\"summary\": \"cut off"), "{repair}");
        assert!(repair.contains("(root): the answer is not valid JSON: EOF while parsing"), "{repair}");
        let system: Value = serde_json::from_slice(&received[1].body).unwrap();
        assert_eq!(system["messages"][0]["content"], "You review code.");
    }

    #[tokio::test]
    async fn schema_violations_twice_are_a_bad_answer_listing_them() {
        let server = server().await;
        let bad = json!({"summary": 3, "findings": [{"path": "a.rs", "line": 0, "severity": "urgent",
            "category": "bug", "title": "t", "body": "b"}]});
        chat().respond_with(answer(&bad.to_string(), 100)).expect(2).mount(&server).await;
        let err = complete_json(&provider(&server), &request()).await.unwrap_err();
        let message = match err {
            ProviderError::BadAnswer { message, .. } => message,
            other => panic!("unexpected {other:?}"),
        };
        assert!(message.contains("`review-output`"), "{message}");
        assert!(message.contains("- /summary: 3 is not of type \"string\""), "{message}");
        assert!(message.contains("- /findings/0/line:"), "{message}");
        assert!(message.contains("- /findings/0/severity:"), "{message}");
        // The repair round quoted the same errors back to the model.
        let received = server.received_requests().await.unwrap();
        assert!(user_prompt(&received[1]).contains("/findings/0/line:"));
    }

    #[test]
    fn a_schema_is_compiled_once_and_shared() {
        let schema = review_schema();
        let first = compiled_validator("review", &schema).unwrap();
        let again = compiled_validator("review", &schema).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second call compiled the schema again");
        // Same name, another schema: a validator of its own, with its own rules.
        let other = json!({"type": "object", "required": ["verdict"]});
        let second = compiled_validator("review", &other).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(first.is_valid(&valid_review()) && !second.is_valid(&valid_review()));
        // An invalid schema is an error every time (not cached as a success).
        let broken = json!({"type": "no-such-type"});
        assert!(compiled_validator("broken", &broken).is_err());
        assert!(compiled_validator("broken", &broken).is_err());
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_validator_and_validate_alike() {
        let server = server().await;
        chat().respond_with(answer(&valid_review().to_string(), 10)).expect(4).mount(&server).await;
        let p = provider(&server);
        let req = request();
        let answers = futures::future::join_all((0..4).map(|_| complete_json(&p, &req))).await;
        for a in answers {
            assert_eq!(a.unwrap().value, valid_review());
        }
    }

    #[tokio::test]
    async fn invalid_schema_is_a_config_error() {
        let server = server().await;
        let mut req = request();
        req.json_schema = Some(("broken".to_owned(), json!({"type": 12})));
        let err = complete_json(&provider(&server), &req).await.unwrap_err();
        match err {
            ProviderError::Config { message, .. } => assert!(message.contains("`broken` is invalid"), "{message}"),
            other => panic!("expected Config, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_schema_is_a_config_error() {
        let server = server().await;
        let mut req = request();
        req.json_schema = None;
        let err = complete_json(&provider(&server), &req).await.unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    }
}
