//! GitHub Actions' OIDC token: a JWT GitHub signs for this job, asked for with the request URL
//! and bearer token the runner sets when the workflow has `permissions: id-token: write`.
//!
//! Source: "About security hardening with OpenID Connect"
//! (<https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect>)
//! and `@actions/core`'s `getIDToken`: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered `{"value": "<jwt>"}`.

use secrecy::{ExposeSecret, SecretString};

use super::{client, endpoint, refused, send, CredentialError};
use crate::context::Env;
use crate::env_vars as ev;
use crate::redact::Redactor;

/// Where the job's OIDC token comes from. `Debug` hides the request token.
#[derive(Clone)]
pub(crate) struct OidcSource {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (it already has a query, `?api-version=2.0`).
    url: String,
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    request_token: SecretString,
}

impl std::fmt::Debug for OidcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSource").field("url", &super::without_query(&self.url)).finish_non_exhaustive()
    }
}

impl OidcSource {
    /// The source from the runner's variables, the request token registered with `redactor`;
    /// `None` when either is unset (the workflow lacks `permissions: id-token: write`).
    pub(crate) fn from_env(env: &Env, redactor: &Redactor) -> Option<Self> {
        let url = env.get(ev::ACTIONS_ID_TOKEN_REQUEST_URL).filter(|v| !v.is_empty())?;
        let token = env.get(ev::ACTIONS_ID_TOKEN_REQUEST_TOKEN).filter(|v| !v.is_empty())?;
        let request_token = SecretString::from(token.to_string());
        super::mask(redactor, &request_token);
        Some(Self { url: url.to_string(), request_token })
    }

    /// A fresh OIDC token for `audience` (e.g. `sts.amazonaws.com`), registered with
    /// `redactor` before it is returned. Errors name the request URL without its query.
    pub(crate) async fn token(&self, audience: &str, redactor: &Redactor) -> Result<SecretString, CredentialError> {
        let what = "the GitHub OIDC token request (ACTIONS_ID_TOKEN_REQUEST_URL)";
        let mut url = endpoint(&self.url, what)?;
        url.query_pairs_mut().append_pair("audience", audience);
        let request =
            client()?.get(url).bearer_auth(self.request_token.expose_secret()).header("accept", "application/json");
        let (status, body) = send(request, what).await?;
        if !(200..300).contains(&status) {
            // GitHub's error body is a plain message; it never echoes the bearer token.
            return Err(refused(what, status, &redactor.redact(&body)));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            value: String,
        }
        let answer: Answer = serde_json::from_str(&body)
            .map_err(|_| CredentialError::fatal(format!("{what}: the answer is not `{{\"value\": \"<jwt>\"}}`")))?;
        if answer.value.trim().is_empty() {
            return Err(CredentialError::fatal(format!("{what}: the answer's `value` is empty")));
        }
        let token = SecretString::from(answer.value);
        super::mask(redactor, &token);
        Ok(token)
    }
}
