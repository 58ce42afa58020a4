//! Microsoft Entra ID tokens for `kind: azure-openai` without an API key (resources with
//! `disableLocalAuth`), in this order:
//!
//! 1. `AZURE_OPENAI_AD_TOKEN`, used as is (the OpenAI SDKs' variable);
//! 2. workload identity federation: the app registration `client_id` in tenant `tenant_id`
//!    (config, else `AZURE_CLIENT_ID` / `AZURE_TENANT_ID`) proves itself with a federated
//!    assertion — `AZURE_FEDERATED_TOKEN_FILE` (AKS workload identity, read at each refresh),
//!    else the job's GitHub OIDC token for audience `api://AzureADTokenExchange` — in the
//!    client credentials grant for scope `https://cognitiveservices.azure.com/.default`.
//!
//! Source: "Microsoft identity platform and the OAuth 2.0 client credentials flow", third case
//! (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#third-case-access-token-request-with-a-federated-credential>):
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with `client_id`, `scope`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion`, `grant_type=client_credentials`. The authority is
//! `https://login.microsoftonline.com`, or `AZURE_AUTHORITY_HOST` (sovereign clouds, as the Azure
//! Identity libraries read it). Tokens are cached until five minutes before they expire.
//!
//! Decision: no `azure_identity` crate — it brings `azure_core` and its own HTTP pipeline for
//! one form POST on the client already in the tree.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::oidc::OidcSource;
use super::{client, endpoint, oauth_answer, send, CredentialError};
use crate::context::Env;
use crate::env_vars as ev;
use crate::redact::Redactor;

/// The audience Microsoft Entra expects of a federated assertion.
pub(crate) const ENTRA_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The scope of Azure OpenAI (Cognitive Services) data-plane tokens.
pub(crate) const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The public cloud's authority when `AZURE_AUTHORITY_HOST` is unset.
const AUTHORITY: &str = "https://login.microsoftonline.com";
/// Tokens are asked again this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where the token comes from. `Debug` shows no token.
enum Source {
    /// `AZURE_OPENAI_AD_TOKEN`.
    Token(SecretString),
    /// The client credentials grant with a federated assertion.
    Federated { client_id: String, token_url: String, assertion: Assertion },
}

/// The federated assertion's source.
enum Assertion {
    /// The job's GitHub OIDC token.
    GitHub(OidcSource),
    /// `AZURE_FEDERATED_TOKEN_FILE`, read at each refresh.
    File(PathBuf),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Token(_) => f.write_str("Token([REDACTED])"),
            Source::Federated { client_id, token_url, assertion } => f
                .debug_struct("Federated")
                .field("client_id", client_id)
                .field("token_url", token_url)
                .field("assertion", &matches!(assertion, Assertion::File(_)).then_some("file").unwrap_or("github"))
                .finish(),
        }
    }
}

/// A Microsoft Entra token source for one provider entry, cached.
#[derive(Debug)]
pub(crate) struct EntraTokenProvider {
    source: Source,
    redactor: Redactor,
    cache: tokio::sync::Mutex<Option<(SecretString, SystemTime)>>,
}

impl EntraTokenProvider {
    /// The source the entry and the environment name (see the module docs); `None` when they
    /// name none (no token variable, no client and tenant): the entry then needs its API key.
    /// A given token is registered with `redactor` now.
    ///
    /// Errors (fatal): a client and tenant without an assertion (the job lacks
    /// `permissions: id-token: write` and there is no token file); a tenant that is not a
    /// tenant id or domain; an authority that is not https.
    pub(crate) fn resolve(
        env: &Env,
        client_id: Option<&str>,
        tenant_id: Option<&str>,
        redactor: &Redactor,
    ) -> Result<Option<Self>, CredentialError> {
        let value = |name: &str| env.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let make = |source| Some(Self { source, redactor: redactor.clone(), cache: tokio::sync::Mutex::new(None) });
        if let Some(token) = value(ev::AZURE_OPENAI_AD_TOKEN) {
            let token = SecretString::from(token);
            super::mask(redactor, &token);
            return Ok(make(Source::Token(token)));
        }
        let client_id = client_id.map(str::to_string).or_else(|| value(ev::AZURE_CLIENT_ID));
        let tenant_id = tenant_id.map(str::to_string).or_else(|| value(ev::AZURE_TENANT_ID));
        let (Some(client_id), Some(tenant_id)) = (client_id, tenant_id) else { return Ok(None) };
        if !is_tenant(&tenant_id) {
            return Err(CredentialError::fatal(
                "the tenant is not a tenant id or domain (letters, digits, `.` and `-`)".to_string(),
            ));
        }
        let no_assertion = || {
            let (url, token, file) =
                (ev::ACTIONS_ID_TOKEN_REQUEST_URL, ev::ACTIONS_ID_TOKEN_REQUEST_TOKEN, ev::AZURE_FEDERATED_TOKEN_FILE);
            CredentialError::fatal(format!(
                "workload identity federation needs an assertion: {url} / {token} (the job's OIDC token) and {file} are not set"
            ))
            .with_help("give the job `permissions: id-token: write`")
        };
        let assertion = match (value(ev::AZURE_FEDERATED_TOKEN_FILE), OidcSource::from_env(env, redactor)) {
            (Some(path), _) => Assertion::File(PathBuf::from(path)),
            (None, Some(oidc)) => Assertion::GitHub(oidc),
            (None, None) => return Err(no_assertion()),
        };
        let authority = value(ev::AZURE_AUTHORITY_HOST).unwrap_or_else(|| AUTHORITY.to_string());
        let token_url = format!("{}/{tenant_id}/oauth2/v2.0/token", authority.trim_end_matches('/'));
        endpoint(&token_url, "the Microsoft Entra token endpoint (AZURE_AUTHORITY_HOST)")?;
        Ok(make(Source::Federated { client_id, token_url, assertion }))
    }

    /// A current token: the given one, or the cached one while it has more than five minutes
    /// left, else a new client credentials grant.
    async fn current(&self) -> Result<SecretString, CredentialError> {
        let (client_id, token_url, assertion) = match &self.source {
            Source::Token(token) => return Ok(token.clone()),
            Source::Federated { client_id, token_url, assertion } => (client_id, token_url, assertion),
        };
        let mut cache = self.cache.lock().await;
        if let Some((token, _)) =
            cache.as_ref().filter(|(_, at)| at.duration_since(SystemTime::now()).is_ok_and(|l| l > REFRESH_MARGIN))
        {
            return Ok(token.clone());
        }
        let assertion = match assertion {
            Assertion::GitHub(oidc) => oidc.token(ENTRA_AUDIENCE, &self.redactor).await?,
            Assertion::File(path) => super::read_token_file(path, ev::AZURE_FEDERATED_TOKEN_FILE, &self.redactor)?,
        };
        let what = "the Microsoft Entra token request";
        let form = [
            ("client_id", client_id.as_str()),
            ("scope", COGNITIVE_SERVICES_SCOPE),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.expose_secret()),
            ("grant_type", "client_credentials"),
        ];
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = client()?
            .post(endpoint(token_url, what)?)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        let (status, text) = send(request, what).await?;
        let (token, expires_at) = oauth_answer(what, status, &text)?;
        super::mask(&self.redactor, &token);
        *cache = Some((token.clone(), expires_at));
        Ok(token)
    }

    /// What to check when Entra or Azure OpenAI refuses the token.
    fn explain(&self) -> String {
        match &self.source {
            Source::Token(_) => format!(
                "the token comes from {}: check that it is current, for the scope `{COGNITIVE_SERVICES_SCOPE}`, and that its principal has the `Cognitive Services OpenAI User` role on the resource",
                ev::AZURE_OPENAI_AD_TOKEN
            ),
            Source::Federated { client_id, assertion, .. } => {
                let proof = match assertion {
                    Assertion::GitHub(_) => format!(
                        "the job's GitHub OIDC token: check the app's federated credential (issuer `https://token.actions.githubusercontent.com`, the `sub` of this repository and ref, audience `{ENTRA_AUDIENCE}`)"
                    ),
                    Assertion::File(_) => format!(
                        "the token in {}: check the app's federated credential for that token's issuer and subject",
                        ev::AZURE_FEDERATED_TOKEN_FILE
                    ),
                };
                format!(
                    "the token is app `{client_id}`'s, proved with {proof}, and that the app has the `Cognitive Services OpenAI User` role on the resource"
                )
            }
        }
    }
}

impl super::TokenSource for EntraTokenProvider {
    fn token(&self) -> futures::future::BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(self.current())
    }

    fn help(&self) -> String {
        self.explain()
    }
}

/// A tenant id (a GUID) or a tenant domain (`contoso.onmicrosoft.com`): it goes into the token
/// URL's path.
fn is_tenant(t: &str) -> bool {
    !t.is_empty() && t.len() <= 253 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_token_variable_comes_first_then_federation_and_nothing_is_none() {
        let r = Redactor::new();
        let pick = |pairs: &[(&str, &str)], client: Option<&str>, tenant: Option<&str>| {
            EntraTokenProvider::resolve(&Env::from_pairs(pairs.iter().copied()), client, tenant, &r)
        };
        let given =
            pick(&[("AZURE_OPENAI_AD_TOKEN", "eyJ.entra-given-token.0123")], Some("c"), Some("t")).unwrap().unwrap();
        assert!(matches!(given.source, Source::Token(_)) && !format!("{given:?}").contains("entra-given"));
        assert!(!r.redact("x eyJ.entra-given-token.0123").contains("entra-given"));
        assert!(pick(&[], None, None).unwrap().is_none(), "no token, no app: the API key path");
        let oidc = [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://t.example/x?v=1"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "rt-0123"),
        ];
        let github = pick(&oidc, Some("app-1"), Some("contoso.onmicrosoft.com")).unwrap().unwrap();
        match &github.source {
            Source::Federated { client_id, token_url, assertion: Assertion::GitHub(_) } => {
                assert_eq!(client_id, "app-1");
                assert_eq!(token_url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
            }
            other => panic!("{other:?}"),
        }
        // The environment's app and tenant; the token file before GitHub's token.
        let file = [
            ("AZURE_CLIENT_ID", "app-2"),
            ("AZURE_TENANT_ID", "0000-1111"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/t"),
        ];
        let both: Vec<_> = file.iter().chain(&oidc).copied().collect();
        assert!(matches!(
            pick(&both, None, None).unwrap().unwrap().source,
            Source::Federated { assertion: Assertion::File(_), .. }
        ));
        // An app without any assertion, a tenant that would change the URL, plain http: refused.
        let none = pick(&[], Some("app"), Some("tenant")).unwrap_err();
        assert!(none.help.as_deref().is_some_and(|h| h.contains("id-token: write")), "{none:?}");
        assert!(pick(&oidc, Some("app"), Some("t/../../evil")).is_err());
        assert!(
            pick(&[oidc[0], oidc[1], ("AZURE_AUTHORITY_HOST", "http://login.example")], Some("a"), Some("t")).is_err()
        );
    }
}
