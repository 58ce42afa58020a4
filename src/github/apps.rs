//! Typed requests for GitHub App installations and self-hosted runner credentials, which
//! octocrab either lacks or models without the fields we send (its access-token parameters
//! have no `permissions`).
//!
//! Sources: "REST API endpoints for GitHub Apps"
//! (<https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app>,
//! `get-a-repository-installation-for-the-authenticated-app`, `...-organization-...`,
//! `...-user-...`), "Revoke an installation access token"
//! (<https://docs.github.com/en/rest/apps/installations#revoke-an-installation-access-token>),
//! and "Self-hosted runners" (<https://docs.github.com/en/rest/actions/self-hosted-runners>:
//! `create-a-registration-token-for-a-repository`, `...-remove-token-...`,
//! `create-configuration-for-a-just-in-time-runner-for-a-repository`, and the organization
//! variants).
//!
//! Every call goes through the client's policy ([`GitHub`]): GETs retried on 5xx, POSTs never
//! retried except after a rate limit. The token values come back as [`SecretString`], checked
//! against a plain alphabet ([`super::credential::check_minted`]: a token is
//! `[A-Za-z0-9_.-]+`, a JIT config base64; anything else is [`GitHubError::Credential`], exit
//! 4); callers register them with the redactor before anything else.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::credential::{check_minted, MintedKind};
use super::error::check;
use super::transport::{decode, MEDIA_JSON};
use super::{GitHub, GitHubError};

/// Where an installation is looked up, and where runner credentials apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A repository: `/repos/{owner}/{repo}/...`.
    Repo { owner: String, repo: String },
    /// An organization: `/orgs/{org}/...`.
    Org(String),
    /// A user account: `/users/{user}/...` (installations only; runners have no user scope).
    User(String),
}

impl Owner {
    /// The URL path of the scope, segments percent-encoded (`repos/o/r`, `orgs/o`, `users/u`).
    fn path(&self) -> String {
        let enc = |s: &str| urlencoding::encode(s).into_owned();
        match self {
            Owner::Repo { owner, repo } => format!("repos/{}/{}", enc(owner), enc(repo)),
            Owner::Org(org) => format!("orgs/{}", enc(org)),
            Owner::User(user) => format!("users/{}", enc(user)),
        }
    }

    /// `owner/repo`, `org o` or `user u`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Owner::Repo { owner, repo } => format!("{owner}/{repo}"),
            Owner::Org(org) => format!("organization {org}"),
            Owner::User(user) => format!("user {user}"),
        }
    }
}

/// The installation of the app on an account (only what we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Installation {
    /// Installation id, used in `POST /app/installations/{id}/access_tokens`.
    pub id: u64,
}

/// Body of `POST /app/installations/{id}/access_tokens`: both fields optional; absent means
/// every repository of the installation and every permission the app was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct AccessTokenRequest {
    /// Repository names (without owner), at most 500.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    /// Permission name → `read`, `write` or `admin` (e.g. `contents` → `write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<BTreeMap<String, String>>,
}

/// A minted installation access token (`201` of the access-token endpoint).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct InstallationToken {
    /// `ghs_...`; never in `Debug` (secrecy).
    #[serde(deserialize_with = "secret")]
    pub token: SecretString,
    /// RFC 3339 expiry (one hour after minting).
    pub expires_at: String,
    /// Permissions the token actually holds.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// The repositories it is limited to, when `repository_selection` is `selected`.
    #[serde(default)]
    pub repositories: Option<Vec<RepoName>>,
}

/// A repository as listed in a token response (only its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RepoName {
    /// The repository name without its owner.
    pub name: String,
}

/// A runner registration or remove token (`201` of the runner token endpoints; one hour).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RunnerToken {
    /// The token for `config.sh --token`; never in `Debug`.
    #[serde(deserialize_with = "secret")]
    pub token: SecretString,
    /// RFC 3339 expiry.
    pub expires_at: String,
}

/// Body of `POST .../actions/runners/generate-jitconfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct JitConfigRequest {
    /// The new runner's name.
    pub name: String,
    /// Runner group id (1 is the default group).
    pub runner_group_id: u64,
    /// Custom labels (GitHub requires at least one, at most 100).
    pub labels: Vec<String>,
    /// Working directory relative to the runner's install folder (default `_work`).
    pub work_folder: String,
}

/// `201` of `generate-jitconfig`: the runner record and its one-use configuration.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JitConfig {
    /// The registered runner.
    pub runner: JitRunner,
    /// Base64 configuration for `run.sh --jitconfig`; a credential, never in `Debug`.
    #[serde(deserialize_with = "secret")]
    pub encoded_jit_config: SecretString,
}

/// The runner a JIT configuration registered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct JitRunner {
    /// Runner id.
    pub id: u64,
    /// Runner name.
    pub name: String,
}

/// Reads a JSON string straight into a [`SecretString`] (secrecy has no serde feature here).
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

impl GitHub {
    /// `GET /{repos/o/r|orgs/o|users/u}/installation`, authenticated as the app (JWT).
    /// `Ok(None)` on 404 (the app is not installed there). Errors as for every call of
    /// [`GitHub`]; a refused JWT is [`GitHubError::Auth`].
    pub(crate) async fn installation(&self, owner: &Owner) -> Result<Option<Installation>, GitHubError> {
        let action = format!("find the app installation on {}", owner.describe());
        let url = format!("{}/{}/installation", self.api_base, owner.path());
        let reply = self.get(&url, MEDIA_JSON, &action).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        decode(&check(reply, &action)?.body, &action)
    }

    /// `POST /app/installations/{id}/access_tokens` with `request`, authenticated as the app.
    /// A permission the app was not granted is refused by GitHub with 422
    /// ([`GitHubError::Unprocessable`], GitHub's message kept).
    pub(crate) async fn create_installation_token(
        &self,
        installation_id: u64,
        request: &AccessTokenRequest,
    ) -> Result<InstallationToken, GitHubError> {
        let action = format!("create an access token for installation {installation_id}");
        let url = format!("{}/app/installations/{installation_id}/access_tokens", self.api_base);
        let reply = self.write(http::Method::POST, &url, request, &action).await?;
        let token: InstallationToken = decode(&check(reply, &action)?.body, &action)?;
        check_minted(token.token.expose_secret(), MintedKind::Token, &action)?;
        Ok(token)
    }

    /// `DELETE /installation/token`, authenticated with the installation token to revoke.
    /// GitHub answers 204; a token that is already expired or revoked gives 401
    /// ([`GitHubError::Auth`]).
    ///
    /// NOTE: sent without a body through the client's send path (the write path always sends
    /// JSON); one revoke per run needs no write spacing.
    pub(crate) async fn revoke_installation_token(&self) -> Result<(), GitHubError> {
        let action = "revoke the installation token";
        let url = format!("{}/installation/token", self.api_base);
        let reply = self.send(http::Method::DELETE, &url, MEDIA_JSON, None, action).await?;
        check(reply, action).map(|_| ())
    }

    /// `POST /{repos/o/r|orgs/o}/actions/runners/registration-token` (`remove` false) or
    /// `.../remove-token` (`remove` true). Needs `administration: write` (repository) or
    /// `organization_self_hosted_runners: write` (organization). Sent without a body (and
    /// without `Content-Type`): GitHub documents none for these four operations.
    pub(crate) async fn runner_token(&self, scope: &Owner, remove: bool) -> Result<RunnerToken, GitHubError> {
        let kind = if remove { "remove-token" } else { "registration-token" };
        let action = format!("create a runner {kind} for {}", scope.describe());
        let url = format!("{}/{}/actions/runners/{kind}", self.api_base, scope.path());
        let reply = self.write_without_body(http::Method::POST, &url, &action).await?;
        let token: RunnerToken = decode(&check(reply, &action)?.body, &action)?;
        check_minted(token.token.expose_secret(), MintedKind::Token, &action)?;
        Ok(token)
    }

    /// `POST /{repos/o/r|orgs/o}/actions/runners/generate-jitconfig` with `request`.
    pub(crate) async fn runner_jitconfig(
        &self,
        scope: &Owner,
        request: &JitConfigRequest,
    ) -> Result<JitConfig, GitHubError> {
        let action = format!("generate a just-in-time runner config for {}", scope.describe());
        let url = format!("{}/{}/actions/runners/generate-jitconfig", self.api_base, scope.path());
        let reply = self.write(http::Method::POST, &url, request, &action).await?;
        let jit: JitConfig = decode(&check(reply, &action)?.body, &action)?;
        check_minted(jit.encoded_jit_config.expose_secret(), MintedKind::Base64, &action)?;
        Ok(jit)
    }
}
