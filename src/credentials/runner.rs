//! Runner credentials (`token-refresh runner`): registration and remove tokens for
//! `config.sh`, and just-in-time runner configs for `run.sh --jitconfig`, from
//! `POST /{repos/OWNER/REPO,orgs/ORG}/actions/runners/{registration-token,remove-token,generate-jitconfig}`.

use std::collections::BTreeMap;

use super::app::{AppAuth, AppAuthSettings};
use super::reuse::reusable;
use super::sinks::{deliver, Credential, SinkSettings, Sinks, TokenMeta};
use super::watch::{watch, Refresh};
use super::{authenticated_client, env_repository, register, TokenError};
use crate::actions;
use crate::context::Env;
use crate::env_vars as ev;
use crate::github::apps::{AccessTokenRequest, JitConfigRequest, Owner};
use crate::github::credential;
use crate::github::GitHubError;
use crate::log;
use crate::redact::Redactor;

/// Whose runners: a repository's or an organization's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerScope {
    /// `repos/OWNER/REPO`.
    Repo,
    /// `orgs/ORG`.
    Org,
}

/// Which runner credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerAction {
    /// Registration token for `config.sh --token` (1 hour).
    Register,
    /// Remove token for `config.sh remove --token` (1 hour).
    Remove,
    /// Just-in-time runner config for `run.sh --jitconfig` (one job, never reused).
    Jit,
}

/// A runner credential request (`token-refresh runner`), as given.
#[derive(Debug, Clone)]
pub(crate) struct RunnerSettings {
    /// Repository or organization runners.
    pub(crate) scope: RunnerScope,
    /// Which credential to create.
    pub(crate) action: RunnerAction,
    /// Organization, or the repository's owner (unset: `GITHUB_REPOSITORY`).
    pub(crate) owner: Option<String>,
    /// Repository (with [`RunnerScope::Repo`]; unset: `GITHUB_REPOSITORY`).
    pub(crate) repo: Option<String>,
    /// JIT runner name (unset: `agentctl-<random>`).
    pub(crate) name: Option<String>,
    /// JIT runner labels (none: `self-hosted`).
    pub(crate) labels: Vec<String>,
    /// JIT runner group id.
    pub(crate) runner_group_id: u64,
    /// JIT runner work folder.
    pub(crate) work_folder: String,
    /// Authenticate as a GitHub App (else `GH_TOKEN`, else `GITHUB_TOKEN`).
    pub(crate) auth: AppAuthSettings,
    /// Keep `--file` fresh until a signal (not with [`RunnerAction::Jit`]).
    pub(crate) watch: bool,
    /// Where the credential goes.
    pub(crate) sinks: SinkSettings,
}

/// Most custom labels GitHub takes for a JIT runner (`labels` `maxItems` of
/// `generate-runner-jitconfig-for-{repo,org}`).
const MAX_JIT_LABELS: usize = 100;

/// The labels of `--action jit` (trimmed, empty ones dropped; `self-hosted` when none), at
/// most [`MAX_JIT_LABELS`]; more is a usage error, checked before any request.
fn jit_labels(args: &RunnerSettings) -> Result<Vec<String>, TokenError> {
    let labels: Vec<String> = args.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.len() > MAX_JIT_LABELS {
        return Err(TokenError::Usage(format!(
            "--labels: {} labels given; GitHub takes at most {MAX_JIT_LABELS} for a just-in-time runner",
            labels.len()
        )));
    }
    Ok(if labels.is_empty() { vec!["self-hosted".into()] } else { labels })
}

/// `token-refresh runner`.
pub(crate) async fn runner(args: &RunnerSettings, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
    let sinks = Sinks::resolve(&args.sinks, env)?;
    let from_env = env_repository(env);
    let owner = args
        .owner
        .clone()
        .or_else(|| from_env.as_ref().map(|(o, _)| o.clone()))
        .ok_or_else(|| TokenError::Usage("--owner is required (or GITHUB_REPOSITORY)".into()))?;
    let scope = match args.scope {
        RunnerScope::Org => Owner::Org(owner),
        RunnerScope::Repo => {
            let repo = args
                .repo
                .clone()
                .or_else(|| from_env.as_ref().filter(|(o, _)| *o == owner).map(|(_, r)| r.clone()))
                .ok_or_else(|| TokenError::Usage("--scope repo needs --repo (or GITHUB_REPOSITORY)".into()))?;
            Owner::Repo { owner, repo }
        }
    };
    let kind = match args.action {
        RunnerAction::Register => "runner-registration",
        RunnerAction::Remove => "runner-remove",
        RunnerAction::Jit => "runner-jit",
    };
    if args.action == RunnerAction::Jit {
        jit_labels(args)?;
    }
    let mut auth = AppAuth::resolve(&args.auth, env, redactor)?;
    let fingerprint = format!("{kind} scope={scope:?} app={:?}", auth.as_ref().map(|a| a.app_id.as_str()));
    if args.watch {
        if args.action == RunnerAction::Jit {
            return Err(TokenError::Usage(
                "--watch with --action jit: a JIT config registers one runner for one job, so there is nothing to keep fresh; run it once per runner"
                    .into(),
            ));
        }
        return watch(Refresh::Runner { auth, args, scope, kind }, env, redactor, &sinks, &fingerprint).await;
    }
    if args.action != RunnerAction::Jit {
        if let Some(cred) = reusable(&sinks, kind, &fingerprint) {
            register(redactor, &cred.value);
            deliver(&sinks, &cred, true)?;
            log::info(&format!(
                "reused the {kind} token (expires at {}); no API call",
                cred.meta.expires_at.as_deref().unwrap_or("?")
            ));
            return Ok(());
        }
    }
    let cred = runner_credential(args, auth.as_mut(), env, redactor, &scope, kind, &fingerprint).await?;
    let expires = cred.meta.expires_at.clone();
    deliver(&sinks, &cred, false)?;
    log::info(&format!(
        "created a {kind} credential for {}{}",
        scope.describe(),
        expires.map(|e| format!(", expires at {e}")).unwrap_or_default()
    ));
    Ok(())
}

/// One runner credential from GitHub: authenticated as the app (an installation token minted
/// first) or with `GH_TOKEN`, else `GITHUB_TOKEN`; registered with the redactor as it arrives.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn runner_credential(
    args: &RunnerSettings,
    auth: Option<&mut AppAuth>,
    env: &Env,
    redactor: &mut Redactor,
    scope: &Owner,
    kind: &str,
    fingerprint: &str,
) -> Result<Credential, TokenError> {
    let fingerprint = fingerprint.to_string();
    let token = match auth {
        Some(app) => {
            // Runner endpoints take an installation token; mint one with the app's defaults.
            let installation_owner = match scope {
                Owner::Org(o) => Owner::Org(o.clone()),
                other => other.clone(),
            };
            let (token, _, _) = app
                .mint(
                    env,
                    redactor,
                    Some(&installation_owner),
                    args.auth.installation_id,
                    &AccessTokenRequest::default(),
                )
                .await?;
            token
        }
        None => {
            let token = credential::token_from_env(env)?.ok_or_else(|| {
                TokenError::Usage(format!(
                    "no credentials: pass --app-id and --private-key-file or --private-key-keyring (or {}), or set GH_TOKEN or GITHUB_TOKEN",
                    ev::AGENTCTL_APP_PRIVATE_KEY
                ))
            })?;
            register(redactor, &token);
            token
        }
    };
    let github = authenticated_client(env, &token)?;
    let refused = |e: GitHubError| {
        match e {
        GitHubError::Auth { action, status, message } => TokenError::Refused {
            action,
            status,
            message,
            help: "the token needs `administration: write` on the repository, or `organization_self_hosted_runners: write` on the organization".into(),
        },
        other => other.into(),
    }
    };
    Ok(match args.action {
        RunnerAction::Register | RunnerAction::Remove => {
            let t = github.runner_token(scope, args.action == RunnerAction::Remove).await.map_err(refused)?;
            register(redactor, &t.token);
            Credential {
                value: t.token,
                meta: TokenMeta {
                    kind: kind.into(),
                    request: fingerprint,
                    expires_at: Some(t.expires_at),
                    permissions: BTreeMap::new(),
                    repositories: Vec::new(),
                    installation_id: None,
                },
            }
        }
        RunnerAction::Jit => {
            let request = JitConfigRequest {
                name: args.name.clone().unwrap_or_else(|| format!("agentctl-{}", &actions::random_token()[..8])),
                runner_group_id: args.runner_group_id,
                labels: jit_labels(args)?,
                work_folder: args.work_folder.clone(),
            };
            let jit = github.runner_jitconfig(scope, &request).await.map_err(refused)?;
            register(redactor, &jit.encoded_jit_config);
            log::info(&format!("registered just-in-time runner `{}` (id {})", jit.runner.name, jit.runner.id));
            Credential {
                value: jit.encoded_jit_config,
                meta: TokenMeta {
                    kind: kind.into(),
                    request: fingerprint,
                    expires_at: None,
                    permissions: BTreeMap::new(),
                    repositories: Vec::new(),
                    installation_id: None,
                },
            }
        }
    })
}
