//! GitHub App authentication and installation tokens (`token-refresh app`): the app id and
//! private key (from a file, a keyring entry or `AGENTCTL_APP_PRIVATE_KEY`), the JWT signed
//! from them (RFC 7519, as GitHub's "Generating a JSON Web Token for a GitHub App" describes),
//! the installation lookup and `POST /app/installations/{id}/access_tokens`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::reuse::reusable;
use super::sinks::{deliver, Credential, SinkSettings, Sinks, TokenMeta};
use super::watch::{watch, Refresh};
use super::{authenticated_client, env_repository, register, TokenError};
use crate::clock::now_secs;
use crate::context::Env;
use crate::env_vars as ev;
use crate::github::apps::{AccessTokenRequest, Owner};
use crate::github::jwt::{AppKey, KeyError};
use crate::github::{GitHub, GitHubError};
use crate::log;
use crate::redact::Redactor;
use crate::secret_store::{EntryName, SecretStore};

/// How to authenticate as a GitHub App, as given (`--app-id`, `--private-key-file`,
/// `--private-key-keyring`, `--installation-id`); [`AppAuth::resolve`] reads and checks it.
#[derive(Debug, Clone)]
pub(crate) struct AppAuthSettings {
    /// The app's client id (`Iv1.…`) or numeric app id: the JWT's `iss`.
    pub(crate) app_id: Option<String>,
    /// PEM file holding the app's RSA private key.
    pub(crate) private_key_file: Option<PathBuf>,
    /// Keyring entry (`[SERVICE/]NAME`) holding the PEM.
    pub(crate) private_key_keyring: Option<String>,
    /// The installation, when not looked up from the owner.
    pub(crate) installation_id: Option<u64>,
}

/// An installation token request (`token-refresh app`), as given.
#[derive(Debug, Clone)]
pub(crate) struct AppTokenSettings {
    /// How to authenticate as the app.
    pub(crate) auth: AppAuthSettings,
    /// Account that owns the installation (with `repo`: a repository; alone: an organization,
    /// else a user); both unset: `GITHUB_REPOSITORY`.
    pub(crate) owner: Option<String>,
    /// Repository whose installation to use.
    pub(crate) repo: Option<String>,
    /// Repositories (names without owner) to limit the token to.
    pub(crate) repositories: Vec<String>,
    /// `NAME=LEVEL` permissions to limit the token to.
    pub(crate) permission: Vec<String>,
    /// Keep `--file` fresh until a signal.
    pub(crate) watch: bool,
    /// Where the token goes.
    pub(crate) sinks: SinkSettings,
}

/// The app's id, signing key and the JWT, all registered with the redactor.
pub(crate) struct AppAuth {
    pub(crate) app_id: String,
    /// Fully validated when read (`ring` checks the whole key), so a bad key is exit 2 before
    /// any request without signing anything.
    key: AppKey,
    /// Signed at the first request only (a reused `--file` costs no signature) with when it
    /// was signed (Unix seconds); valid 9 minutes, re-signed after 4 (`--watch`).
    jwt: Option<(SecretString, u64)>,
}

impl AppAuth {
    /// Reads the key from `--private-key-file`, else the keyring entry `--private-key-keyring`
    /// (`AGENTCTL_APP_PRIVATE_KEY_KEYRING`; a missing entry is exit 2, no usable keyring exit 1),
    /// else `AGENTCTL_APP_PRIVATE_KEY`; the PEM is registered with the redactor as soon as it is
    /// read. `Ok(None)` when
    /// neither an app id nor a key is given (runner commands then use `GITHUB_TOKEN`).
    pub(crate) fn resolve(
        args: &AppAuthSettings,
        env: &Env,
        redactor: &mut Redactor,
    ) -> Result<Option<Self>, TokenError> {
        let keyring = args.private_key_keyring.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let (pem, source_name) = match (&args.private_key_file, keyring) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    TokenError::Usage(format!("--private-key-file {}: cannot read it: {e}", path.display()))
                })?;
                (Some(SecretString::from(text)), format!("file {}", path.display()))
            }
            (None, Some(entry)) => {
                let name = EntryName::parse(entry).map_err(TokenError::KeyKeyring)?;
                let pem = SecretStore::open().and_then(|s| s.get(&name)).map_err(TokenError::KeyKeyring)?;
                // Registered before anything else can print it (an empty value is not a secret).
                if let Some(pem) = &pem {
                    register(redactor, pem);
                }
                let pem = pem.filter(|p| !p.expose_secret().trim().is_empty()).ok_or_else(|| {
                    TokenError::Usage(format!(
                        "--private-key-keyring {name}: no such entry in the keyring\nhelp: store the key with `agentctl secrets set {name} < app.pem`"
                    ))
                })?;
                (Some(pem), format!("keyring entry {name}"))
            }
            (None, None) => (
                env.get(ev::AGENTCTL_APP_PRIVATE_KEY).map(|t| SecretString::from(t.to_string())),
                format!("environment variable {}", ev::AGENTCTL_APP_PRIVATE_KEY),
            ),
        };
        if let Some(pem) = &pem {
            register(redactor, pem);
        }
        let app_id = args.app_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match (app_id, pem) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(TokenError::Usage(format!(
                "no app id: pass --app-id (the app's client id or numeric app id) or set {}",
                ev::AGENTCTL_APP_ID
            ))),
            (Some(_), None) => Err(TokenError::Usage(format!(
                "no private key: pass --private-key-file PATH or --private-key-keyring NAME, or set {} (PEM text); keys are never taken as flag values",
                ev::AGENTCTL_APP_PRIVATE_KEY
            ))),
            (Some(id), Some(pem)) => {
                let key = AppKey::from_pem(&pem, &source_name)?;
                Ok(Some(AppAuth { app_id: id.to_string(), key, jwt: None }))
            }
        }
    }

    /// A client authenticated as the app: signs the JWT when there is none yet or it is more
    /// than 4 minutes old (it lives 9, so a long-running `--watch` never sends an expired one),
    /// and registers it with the redactor.
    fn client(&mut self, env: &Env, redactor: &mut Redactor) -> Result<GitHub, TokenError> {
        let now = now_secs();
        let stale = self.jwt.as_ref().is_none_or(|(_, at)| now.saturating_sub(*at) >= 240);
        if stale {
            let jwt = self
                .key
                .sign(&self.app_id, now)
                .map_err(|detail| KeyError::Corrupt { source_name: self.key.source_name.clone(), detail })?;
            register(redactor, &jwt);
            self.jwt = Some((jwt, now));
        }
        match &self.jwt {
            Some((jwt, _)) => authenticated_client(env, jwt),
            None => Err(TokenError::Usage("internal: no app JWT".into())),
        }
    }

    /// Maps a GitHub error of a JWT-authenticated call: 401 names the key source.
    fn refused(&self, e: GitHubError) -> TokenError {
        match e {
            GitHubError::Auth { action, status: 401, message } => TokenError::JwtRefused {
                action,
                status: 401,
                message,
                key_source: self.key.source_name.clone(),
                app_id: self.app_id.clone(),
            },
            GitHubError::Auth { action, status, message } => TokenError::Refused {
                action,
                status,
                message,
                help: "the app lacks this permission or installation; change it in the app's settings".into(),
            },
            GitHubError::Unprocessable { action, message } => TokenError::Refused {
                action,
                status: 422,
                message,
                help: "ask only for repositories the installation can access and permissions the app was granted"
                    .into(),
            },
            other => other.into(),
        }
    }

    /// Finds the installation (by id, repository, organization, then user) and mints an
    /// installation token for `request`.
    pub(crate) async fn mint(
        &mut self,
        env: &Env,
        redactor: &mut Redactor,
        owner: Option<&Owner>,
        installation_id: Option<u64>,
        request: &AccessTokenRequest,
    ) -> Result<(SecretString, TokenMeta, u64), TokenError> {
        let github = self.client(env, redactor)?;
        let id = match (installation_id, owner) {
            (Some(id), _) => id,
            (None, Some(owner)) => {
                let mut found = github.installation(owner).await.map_err(|e| self.refused(e))?;
                // `--owner` alone names an organization or a user: try both.
                if let (None, Owner::Org(name)) = (&found, owner) {
                    found = github.installation(&Owner::User(name.clone())).await.map_err(|e| self.refused(e))?;
                }
                found
                    .ok_or_else(|| {
                        TokenError::Usage(format!(
                            "app `{}` is not installed on {} (GitHub answered 404)\nhelp: install the app there, or pass --installation-id",
                            self.app_id,
                            owner.describe()
                        ))
                    })?
                    .id
            }
            (None, None) => return Err(TokenError::Usage(
                "which installation? pass --installation-id, --owner [--repo], or run where GITHUB_REPOSITORY is set"
                    .into(),
            )),
        };
        let token = github.create_installation_token(id, request).await.map_err(|e| self.refused(e))?;
        register(redactor, &token.token);
        let meta = TokenMeta {
            kind: "installation".into(),
            request: String::new(),
            expires_at: Some(token.expires_at.clone()),
            permissions: token.permissions.clone(),
            repositories: token.repositories.iter().flatten().map(|r| r.name.clone()).collect(),
            installation_id: Some(id),
        };
        log::debug(&format!("GitHub requests: {}", github.request_count()));
        Ok((token.token, meta, id))
    }
}

/// `NAME=LEVEL` pairs into a map, each checked against GitHub's `app-permissions` schema
/// ([`crate::github::permissions`]): a malformed pair, an unknown name or a level that name
/// does not take (`workflows=read`) is a usage error naming the allowed levels. A `-` in the
/// name is read as `_` (`pull-requests` is GitHub's `pull_requests`, as
/// `actions/create-github-app-token` spells its inputs).
fn parse_permissions(pairs: &[String]) -> Result<BTreeMap<String, String>, TokenError> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((name, level)) = pair.split_once('=').map(|(n, l)| (n.trim().replace('-', "_"), l.trim())) else {
            return Err(TokenError::Usage(format!("--permission `{pair}`: expected NAME=LEVEL, e.g. contents=write")));
        };
        let Some(levels) = crate::github::permissions::levels(&name) else {
            return Err(TokenError::Usage(format!(
                "--permission `{pair}`: `{name}` is not a GitHub App permission\nhelp: the names GitHub documents (app-permissions): {}",
                crate::github::permissions::APP_PERMISSIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        };
        if !levels.contains(&level) {
            return Err(TokenError::Usage(format!(
                "--permission `{pair}`: `{name}` takes {} (GitHub's app-permissions schema), not `{level}`",
                levels.join(" or ")
            )));
        }
        out.insert(name, level.to_string());
    }
    Ok(out)
}

/// `token-refresh app`.
pub(crate) async fn app(args: &AppTokenSettings, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
    let sinks = Sinks::resolve(&args.sinks, env)?;
    let mut auth = AppAuth::resolve(&args.auth, env, redactor)?.ok_or_else(|| {
        TokenError::Usage(format!(
            "no app credentials: pass --app-id (or {}) and --private-key-file PATH, --private-key-keyring NAME (or {})",
            ev::AGENTCTL_APP_ID,
            ev::AGENTCTL_APP_PRIVATE_KEY
        ))
    })?;
    let permissions = parse_permissions(&args.permission)?;
    let repositories: Vec<String> =
        args.repositories.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
    let owner = match (&args.owner, &args.repo) {
        (Some(o), Some(r)) => Some(Owner::Repo { owner: o.clone(), repo: r.clone() }),
        (Some(o), None) => Some(Owner::Org(o.clone())),
        _ => env_repository(env).map(|(owner, repo)| Owner::Repo { owner, repo }),
    };
    let request = AccessTokenRequest {
        repositories: (!repositories.is_empty()).then_some(repositories),
        permissions: (!permissions.is_empty()).then_some(permissions),
    };
    let fingerprint = format!(
        "app={} installation={:?} owner={:?} request={}",
        auth.app_id,
        args.auth.installation_id,
        owner,
        serde_json::to_string(&request).unwrap_or_default()
    );
    if args.watch {
        let refresh = Refresh::App { auth, owner, installation_id: args.auth.installation_id, request };
        return watch(refresh, env, redactor, &sinks, &fingerprint).await;
    }
    if let Some(cred) = reusable(&sinks, "installation", &fingerprint) {
        register(redactor, &cred.value);
        deliver(&sinks, &cred, true)?;
        log::info(&format!(
            "reused the installation token in {} (expires at {}); no API call",
            sinks.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            cred.meta.expires_at.as_deref().unwrap_or("?")
        ));
        return Ok(());
    }
    let (token, mut meta, id) = auth.mint(env, redactor, owner.as_ref(), args.auth.installation_id, &request).await?;
    meta.request = fingerprint;
    let expires = meta.expires_at.clone().unwrap_or_default();
    deliver(&sinks, &Credential { value: token, meta }, false)?;
    log::info(&format!("minted an installation token for installation {id}, expires at {expires}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_name_equals_level() {
        let p = parse_permissions(&["contents=write".into(), "issues = read".into()]).unwrap();
        assert_eq!(p.get("contents").map(String::as_str), Some("write"));
        assert_eq!(p.get("issues").map(String::as_str), Some("read"));
        assert!(parse_permissions(&["contents".into()]).is_err());
        assert!(parse_permissions(&["contents=all".into()]).is_err());
    }

    #[test]
    fn permissions_take_only_the_levels_github_documents() {
        let err = |pair: &str| parse_permissions(&[pair.into()]).unwrap_err().to_string();
        assert!(err("workflows=read").contains("`workflows` takes write"), "{}", err("workflows=read"));
        assert!(err("contents=admin").contains("takes read or write"), "{}", err("contents=admin"));
        assert!(err("content=read").contains("not a GitHub App permission"), "{}", err("content=read"));
        let p = parse_permissions(&["workflows=write".into(), "repository_projects=admin".into()]).unwrap();
        assert_eq!(p.len(), 2);
        let p = parse_permissions(&["pull-requests=write".into()]).unwrap();
        assert_eq!(p.get("pull_requests").map(String::as_str), Some("write"));
    }
}
