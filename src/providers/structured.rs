//! Structured output: get JSON that validates against a schema out of any [`Provider`].
//!
//! The adapter asks in its native mode; we then strip code fences, parse, validate with
//! `jsonschema`, and on failure make one repair request that quotes the validation errors.
//! A second failure is a [`ProviderError::BadAnswer`] listing what was wrong.

use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};

/// The validated JSON and every completion it took (one, or two with a repair round), so the
/// caller can account all usage.
#[derive(Debug, Clone)]
pub struct StructuredAnswer {
    pub value: serde_json::Value,
    pub completions: Vec<Completion>,
}

/// Asks `provider` for JSON valid against `req.json_schema` (which must be set).
pub async fn complete_json(
    provider: &dyn Provider,
    req: &CompletionRequest,
) -> Result<StructuredAnswer, ProviderError> {
    let _ = (provider, req);
    todo!()
}

/// Strips a Markdown code fence (```json ... ```) or leading/trailing prose around one JSON
/// object, returning the JSON text.
pub fn extract_json(text: &str) -> &str {
    let _ = text;
    todo!()
}
