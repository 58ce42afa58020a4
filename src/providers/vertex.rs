//! Google Vertex AI (`kind: vertex`): Gemini models through `generateContent` and Anthropic
//! models through `rawPredict`, both under
//! `{base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}`,
//! with an OAuth 2.0 access token from [`crate::cloud::google`] (workload identity federation,
//! a service-account key, or `GOOGLE_OAUTH_ACCESS_TOKEN`) sent as `Authorization: Bearer`.
//!
//! Sources: the Vertex AI REST reference, `projects.locations.publishers.models.generateContent`
//! (<https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.publishers.models/generateContent>),
//! and "Claude on Vertex AI" (<https://docs.anthropic.com/en/api/claude-on-vertex-ai>). The
//! request and answer formats are the Gemini and Anthropic adapters' own
//! ([`crate::providers::gemini::Gemini::on_vertex`], [`crate::providers::anthropic::Anthropic::on_vertex`]).
//!
//! Decision: the publisher follows the model name: `claude-…` is Anthropic's (model ids such as
//! `claude-sonnet-4-5@20250929`), anything else Google's. The endpoint is
//! `https://aiplatform.googleapis.com` for the `global` location, else
//! `https://{location}-aiplatform.googleapis.com`; `base_url` replaces it (a Private Service
//! Connect endpoint, tests).

use std::sync::Arc;

use crate::cloud::google::GoogleTokenProvider;
use crate::providers::anthropic::Anthropic;
use crate::providers::gemini::Gemini;
use crate::providers::http::{join_url, BearerAuth, EndpointSettings, RequestAuth};
use crate::providers::{Provider, ProviderError};

/// Which API a model is served through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publisher {
    Google,
    Anthropic,
}

impl Publisher {
    /// `anthropic` for `claude-…` models, else `google`.
    pub(crate) fn of(model: &str) -> Self {
        if model.trim().to_ascii_lowercase().starts_with("claude") {
            Publisher::Anthropic
        } else {
            Publisher::Google
        }
    }
}

/// The default endpoint of `location`.
pub(crate) fn default_base_url(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".into()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// Builds the adapter for `endpoint` (its `base_url` is the API root above, its `model` the
/// publisher's model id) in `project`/`location`, authorized by `tokens`. Errors
/// ([`ProviderError::Config`]): a model id with characters other than letters, digits, `.`,
/// `_`, `-` and `@` (it is a URL path segment), a bad `base_url`.
pub(crate) fn build(
    endpoint: EndpointSettings,
    project: &str,
    location: &str,
    tokens: Arc<GoogleTokenProvider>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let model = endpoint.model.trim().to_string();
    if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
        return Err(ProviderError::Config {
            provider: endpoint.name.clone(),
            message: format!("`model` `{model}` is not a Vertex AI model id (letters, digits, `.`, `_`, `-`, `@`)"),
        });
    }
    let publisher = Publisher::of(&model);
    let (publisher_name, method) = match publisher {
        Publisher::Google => ("google", "generateContent"),
        Publisher::Anthropic => ("anthropic", "rawPredict"),
    };
    let path =
        format!("/v1/projects/{project}/locations/{location}/publishers/{publisher_name}/models/{model}:{method}");
    let url = join_url(&endpoint.name, "base_url", &endpoint.base_url, &path)?;
    let auth: Arc<dyn RequestAuth> = Arc::new(BearerAuth { tokens });
    Ok(match publisher {
        Publisher::Google => Arc::new(Gemini::on_vertex(endpoint, url, auth)?),
        Publisher::Anthropic => Arc::new(Anthropic::on_vertex(endpoint, url, auth)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_and_endpoint_follow_the_model_and_location() {
        assert_eq!(Publisher::of("claude-sonnet-4-5@20250929"), Publisher::Anthropic);
        assert_eq!(Publisher::of("gemini-2.5-flash"), Publisher::Google);
        assert_eq!(default_base_url("global"), "https://aiplatform.googleapis.com");
        assert_eq!(default_base_url("us-east5"), "https://us-east5-aiplatform.googleapis.com");
    }
}
