//! `agentctl token-refresh`: GitHub App installation tokens, runner registration/remove tokens
//! and just-in-time runner configs, delivered to sinks without ever showing in `ps`, a log or a
//! world-readable file (SPEC §3.5).
//!
//! Order of work, so that nothing leaks and a bad input costs no request: inputs and sinks are
//! checked first (a world-writable sink folder, `--print` to a terminal, a missing app id or a
//! key that cannot sign all exit 2); the private key is registered with the redactor as soon as
//! it is read, the JWT as soon as it is signed, each credential as soon as it arrives (and, in
//! Actions, masked with `::add-mask::` before any sink is written). A credential in `--file`
//! whose `PATH.meta.json` says it has more than `--min-ttl` seconds left and was made for the
//! same request is reused without any API call.
//!
//! `--keyring [SERVICE/]NAME` stores the credential in the OS keyring ([`crate::secret_store`]);
//! the backend is probed with the other sinks, before any request, and a machine without one
//! is refused (exit 1), never served by an in-memory stand-in. Reuse and `--watch` are driven
//! by `--file`'s metadata; the keyring entry is written on every delivery, reuse included.
//!
//! Every credential is checked once where it enters ([`crate::github::credential`]): the
//! token in `GH_TOKEN`/`GITHUB_TOKEN` or a `--file` (one trailing newline dropped, otherwise
//! visible ASCII only, else exit 2 naming the source), and each one GitHub mints (a plain
//! `[A-Za-z0-9_.-]` token or base64 JIT config, else exit 4), so no sink, header or `--print`
//! ever carries a line break or a workflow command. Inputs GitHub's OpenAPI description bounds
//! are checked before any request: `--permission` against the `app-permissions` schema
//! ([`crate::github::permissions`]), at most 100 `--labels` for a JIT runner.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::actions;
use crate::cli::{AppAuthArgs, AppTokenArgs, RevokeArgs, RunnerAction, RunnerScope, RunnerTokenArgs, SinkArgs};
use crate::cli::{TokenRefreshAction, TokenRefreshArgs};
use crate::clock::now_secs;
use crate::context::Env;
use crate::env_vars as ev;
use crate::exit::{Exit, ExitError};
use crate::github::apps::{AccessTokenRequest, JitConfigRequest, Owner};
use crate::github::credential::{self, CredentialError};
use crate::github::jwt::{AppKey, KeyError};
use crate::github::{GitHub, GitHubError};
use crate::log;
use crate::redact::Redactor;
use crate::secret_store::{EntryName, SecretStore, StoreError};

/// Default REST root when `GITHUB_API_URL` is unset.
const DEFAULT_API_URL: &str = "https://api.github.com";

/// Errors of `token-refresh`, each mapped to one exit code by [`From`] for [`ExitError`].
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A flag or environment value is missing or wrong (exit 2).
    #[error("token-refresh: {0}")]
    Usage(String),
    /// The private key cannot sign (exit 2).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// GitHub refused the app JWT (exit 4); names the key's source.
    #[error("github: {action}: GitHub refused the app JWT ({status}): {message}\nhelp: check that the private key from {key_source} belongs to app `{app_id}` (client id or app id) and that this machine's clock is right")]
    JwtRefused { action: String, status: u16, message: String, key_source: String, app_id: String },
    /// GitHub refused the token or a permission it was asked for (exit 4).
    #[error("github: {action}: refused ({status}): {message}\nhelp: {help}")]
    Refused { action: String, status: u16, message: String, help: String },
    /// Any other GitHub failure (exit 1; 4 when it is an auth error).
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// A sink could not be written (exit 1).
    #[error("cannot write {what} {path}")]
    Sink {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The step output could not be written (exit 1).
    #[error(transparent)]
    Output(#[from] actions::OutputError),
    /// `--keyring`: a bad name (exit 2), no usable backend or a failed write (exit 1).
    #[error("--keyring: {0}")]
    Keyring(#[from] StoreError),
    /// `--private-key-keyring`: a bad name (exit 2), no usable backend or a failed read (exit 1).
    #[error("--private-key-keyring: {0}")]
    KeyKeyring(StoreError),
}

/// Bad input: [`Exit::Usage`]; refusals: [`Exit::Auth`]; the rest: [`Exit::Failure`].
impl From<TokenError> for ExitError {
    fn from(e: TokenError) -> Self {
        let exit = match &e {
            TokenError::Usage(_)
            | TokenError::Key(_)
            | TokenError::Keyring(StoreError::BadName(_))
            | TokenError::KeyKeyring(StoreError::BadName(_)) => Exit::Usage,
            TokenError::JwtRefused { .. } | TokenError::Refused { .. } => Exit::Auth,
            TokenError::GitHub(g) if g.is_auth() => Exit::Auth,
            TokenError::GitHub(g) if g.is_usage() => Exit::Usage,
            _ => Exit::Failure,
        };
        ExitError::new(exit, e)
    }
}

/// A credential refused where it entered ([`crate::github::credential`]): exit 2 for one the
/// user gave, 4 for one GitHub minted.
impl From<CredentialError> for TokenError {
    fn from(e: CredentialError) -> Self {
        TokenError::GitHub(e.into())
    }
}

/// Runs `token-refresh`.
pub async fn run(args: &TokenRefreshArgs, env: &Env) -> Result<Exit, ExitError> {
    let mut redactor = Redactor::new();
    log::set_redactor(&redactor);
    let result = match &args.action {
        TokenRefreshAction::App(a) => app(a, env, &mut redactor).await,
        TokenRefreshAction::Runner(a) => runner(a, env, &mut redactor).await,
        TokenRefreshAction::Revoke(a) => revoke(a, env, &mut redactor).await,
    };
    result.map(|()| Exit::Ok).map_err(ExitError::from)
}

/// See [`log::register_secret`].
fn register(redactor: &mut Redactor, secret: &SecretString) {
    log::register_secret(redactor, secret);
}

/// The sinks, checked before any request.
struct Sinks {
    output_name: Option<String>,
    github_output: Option<PathBuf>,
    file: Option<PathBuf>,
    keyring: Option<(EntryName, SecretStore)>,
    print: bool,
    min_ttl: u64,
}

impl Sinks {
    /// Checks every sink: at least one; `--output-name` needs `GITHUB_OUTPUT`; `--file`'s folder
    /// exists and is not world-writable; `--print` refuses a terminal unless `--force`.
    fn resolve(args: &SinkArgs, env: &Env) -> Result<Self, TokenError> {
        if args.output_name.is_none() && args.file.is_none() && args.keyring.is_none() && !args.print {
            return Err(TokenError::Usage(
                "no sink: pass --output-name NAME, --file PATH, --keyring NAME or --print (a credential nobody keeps is wasted)"
                    .into(),
            ));
        }
        let github_output = match &args.output_name {
            Some(name) => Some(env.get(ev::GITHUB_OUTPUT).map(PathBuf::from).ok_or_else(|| {
                TokenError::Usage(format!("--output-name {name}: GITHUB_OUTPUT is not set (not a GitHub Actions step)"))
            })?),
            None => None,
        };
        if let Some(file) = &args.file {
            check_sink_dir(file)?;
        }
        if args.print && !args.force && std::io::stdout().is_terminal() {
            return Err(TokenError::Usage(
                "--print: stdout is a terminal, where the credential would stay in the scrollback; pipe it, or add --force"
                    .into(),
            ));
        }
        let keyring = match &args.keyring {
            Some(name) => Some((EntryName::parse(name)?, SecretStore::open()?)),
            None => None,
        };
        Ok(Sinks {
            output_name: args.output_name.clone(),
            github_output,
            file: args.file.clone(),
            keyring,
            print: args.print,
            min_ttl: args.min_ttl,
        })
    }
}

/// Refuses a sink folder that is missing or writable by every user: anyone could replace the
/// file between our write and a reader's read, or plant a symlink (this includes `/tmp`,
/// sticky bit or not: a sticky folder still lets others create the file name first).
fn check_sink_dir(file: &Path) -> Result<(), TokenError> {
    let dir = sink_dir(file);
    let meta = std::fs::metadata(dir).map_err(|e| {
        TokenError::Usage(format!("--file {}: folder {} is not usable: {e}", file.display(), dir.display()))
    })?;
    if !meta.is_dir() {
        return Err(TokenError::Usage(format!("--file {}: {} is not a folder", file.display(), dir.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o002 != 0 {
            return Err(TokenError::Usage(format!(
                "--file {}: folder {} is world-writable, so another user could swap or pre-create the credential file\nhelp: use a folder only you can write, e.g. `mkdir -m 700 \"$RUNNER_TEMP/agentctl\"`",
                file.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

fn sink_dir(file: &Path) -> &Path {
    file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `PATH.meta.json` beside a credential file.
fn meta_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".meta.json");
    PathBuf::from(name)
}

/// What `PATH.meta.json` records about the credential in `PATH` (never the credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    /// `installation`, `runner-registration`, `runner-remove` or `runner-jit`.
    pub kind: String,
    /// What was asked for (app, owner, repositories, permissions...); a reuse needs the same.
    pub request: String,
    /// RFC 3339 expiry; `None` for a JIT config (one use, never reused).
    pub expires_at: Option<String>,
    /// Permissions the token holds (installation tokens).
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// Repositories it is limited to (installation tokens with a selection).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The installation it belongs to.
    #[serde(default)]
    pub installation_id: Option<u64>,
}

/// A credential with what the metadata file records.
struct Credential {
    value: SecretString,
    meta: TokenMeta,
}

/// Seconds until `expires_at` (RFC 3339), negative when past; `None` when unparsable.
fn remaining_secs(expires_at: &str, now: u64) -> Option<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(expires_at).ok()?.timestamp();
    Some(at - i64::try_from(now).ok()?)
}

/// The credential in `--file` when its metadata matches `kind`/`request` and it has more than
/// `min_ttl` seconds left; any unreadable or stale state means "mint a new one".
fn reusable(sinks: &Sinks, kind: &str, request: &str) -> Option<Credential> {
    let file = sinks.file.as_ref()?;
    let meta: TokenMeta = serde_json::from_slice(&std::fs::read(meta_path(file)).ok()?).ok()?;
    if meta.kind != kind || meta.request != request {
        return None;
    }
    let left = remaining_secs(meta.expires_at.as_deref()?, now_secs())?;
    if left <= i64::try_from(sinks.min_ttl).unwrap_or(i64::MAX) {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    match credential::user_credential(&text, &format!("--file {}", file.display())) {
        Ok(value) => Some(Credential { value, meta }),
        Err(e) => {
            log::warn(&format!("{e}; minting a new credential instead of reusing it"));
            None
        }
    }
}

/// Writes `cred` to every sink: the file (then its metadata), the keyring, the step output,
/// stdout.
fn deliver(sinks: &Sinks, cred: &Credential, reused: bool) -> Result<(), TokenError> {
    if let (Some(file), false) = (&sinks.file, reused) {
        let mut text = cred.value.expose_secret().to_string();
        text.push('\n');
        write_private(file, text.as_bytes()).map_err(|source| TokenError::Sink {
            what: "credential file",
            path: file.display().to_string(),
            source,
        })?;
        let meta = serde_json::to_vec_pretty(&cred.meta).unwrap_or_default();
        let path = meta_path(file);
        write_private(&path, &meta).map_err(|source| TokenError::Sink {
            what: "metadata file",
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some((name, store)) = &sinks.keyring {
        store.set(name, &cred.value)?;
    }
    if let (Some(name), Some(path)) = (&sinks.output_name, &sinks.github_output) {
        actions::write_outputs(path, &[(name.clone(), cred.value.expose_secret().to_string())])?;
    }
    if sinks.print {
        // Minted credentials cannot hold a workflow command (their alphabet has no `:` or `#`);
        // a reused file's value is visible ASCII only, and in Actions `output::stdout` fences it
        // like all output.
        let value = cred.value.expose_secret();
        crate::output::stdout(value).map_err(|source| TokenError::Sink { what: "stdout", path: "-".into(), source })?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same folder created with mode
/// 0600 before any byte is written, synced, then renamed over `path` (a reader sees the old
/// file or the new one, never half of one; a symlink at `path` is replaced, not followed).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".agentctl-token-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(sink_dir(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

/// The app's id, signing key and the JWT, all registered with the redactor.
struct AppAuth {
    app_id: String,
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
    fn resolve(args: &AppAuthArgs, env: &Env, redactor: &mut Redactor) -> Result<Option<Self>, TokenError> {
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
            Some((jwt, _)) => Ok(GitHub::new(api_url(env), jwt, "", "", Duration::ZERO)?),
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
    async fn mint(
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

fn api_url(env: &Env) -> &str {
    env.get(ev::GITHUB_API_URL).unwrap_or(DEFAULT_API_URL)
}

/// `owner/repo` from `GITHUB_REPOSITORY`.
fn env_repository(env: &Env) -> Option<(String, String)> {
    let (o, r) = env.get(ev::GITHUB_REPOSITORY)?.split_once('/')?;
    Some((o.to_string(), r.to_string()))
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

/// Most custom labels GitHub takes for a JIT runner (`labels` `maxItems` of
/// `generate-runner-jitconfig-for-{repo,org}`).
const MAX_JIT_LABELS: usize = 100;

/// The labels of `--action jit` (trimmed, empty ones dropped; `self-hosted` when none), at
/// most [`MAX_JIT_LABELS`]; more is a usage error, checked before any request.
fn jit_labels(args: &RunnerTokenArgs) -> Result<Vec<String>, TokenError> {
    let labels: Vec<String> = args.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.len() > MAX_JIT_LABELS {
        return Err(TokenError::Usage(format!(
            "--labels: {} labels given; GitHub takes at most {MAX_JIT_LABELS} for a just-in-time runner",
            labels.len()
        )));
    }
    Ok(if labels.is_empty() { vec!["self-hosted".into()] } else { labels })
}

/// `token-refresh app`.
async fn app(args: &AppTokenArgs, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
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
        let job = Job::App { auth, owner, installation_id: args.auth.installation_id, request };
        return watch(job, env, redactor, &sinks, &fingerprint).await;
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

/// What `--watch` keeps fresh: an installation token, or a runner registration/remove token.
enum Job<'a> {
    App { auth: AppAuth, owner: Option<Owner>, installation_id: Option<u64>, request: AccessTokenRequest },
    Runner { auth: Option<AppAuth>, args: &'a RunnerTokenArgs, scope: Owner, kind: &'static str },
}

impl Job<'_> {
    /// The `kind` its metadata records.
    fn kind(&self) -> &'static str {
        match self {
            Job::App { .. } => "installation",
            Job::Runner { kind, .. } => kind,
        }
    }

    /// A new credential (a fresh JWT first when the app signs), and the log line saying so.
    async fn mint(
        &mut self,
        env: &Env,
        redactor: &mut Redactor,
        fingerprint: &str,
    ) -> Result<(Credential, String), TokenError> {
        match self {
            Job::App { auth, owner, installation_id, request } => {
                let (token, mut meta, id) = auth.mint(env, redactor, owner.as_ref(), *installation_id, request).await?;
                meta.request = fingerprint.to_string();
                let line = format!(
                    "refreshed the installation token for installation {id}, expires at {}",
                    meta.expires_at.as_deref().unwrap_or("?")
                );
                Ok((Credential { value: token, meta }, line))
            }
            Job::Runner { auth, args, scope, kind } => {
                let cred = runner_credential(args, auth.as_mut(), env, redactor, scope, kind, fingerprint).await?;
                let line = format!(
                    "refreshed the {kind} token for {}, expires at {}",
                    scope.describe(),
                    cred.meta.expires_at.as_deref().unwrap_or("?")
                );
                Ok((cred, line))
            }
        }
    }
}

/// `--watch`: keeps `--file` (and `--keyring`) fresh until SIGTERM/SIGINT. Each cycle reuses
/// the file while it has more than `--min-ttl` left, else mints and writes a new credential
/// (one log line, never the credential), then sleeps until the credential reaches `--min-ttl`.
/// A failed refresh is retried after a full-jitter backoff (1 s base, 60 s cap); bad input and
/// a key that cannot sign end the watch. A signal is only acted on between cycles, so a write
/// in flight always completes (the file is replaced by rename, never half-written); then exit 0.
async fn watch(
    mut job: Job<'_>,
    env: &Env,
    redactor: &mut Redactor,
    sinks: &Sinks,
    fingerprint: &str,
) -> Result<(), TokenError> {
    let mut stop = Box::pin(shutdown_signal()?);
    let backoff = crate::resilience::RetryPolicy {
        max_retries: u32::MAX,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };
    let kind = job.kind();
    let mut failures = 0u32;
    // On a terminal: a spinner saying when the next refresh is due.
    let spinner = crate::progress::Progress::spinner("watching the installation token");
    loop {
        let wait = match reusable(sinks, kind, fingerprint) {
            Some(cred) => {
                register(redactor, &cred.value);
                deliver(sinks, &cred, true)?;
                failures = 0;
                until_min_ttl(&cred.meta, sinks.min_ttl)
            }
            None => match job.mint(env, redactor, fingerprint).await {
                Ok((cred, line)) => {
                    let wait = until_min_ttl(&cred.meta, sinks.min_ttl);
                    deliver(sinks, &cred, false)?;
                    log::info(&line);
                    failures = 0;
                    wait
                }
                Err(
                    e
                    @ (TokenError::Usage(_) | TokenError::Key(_) | TokenError::Keyring(_) | TokenError::KeyKeyring(_)),
                ) => return Err(e),
                Err(TokenError::GitHub(g)) if g.is_usage() => return Err(TokenError::GitHub(g)),
                Err(e) => {
                    let wait = backoff.backoff(failures);
                    failures = failures.saturating_add(1);
                    log::warn(&format!(
                        "{kind} refresh failed (attempt {failures}), retrying in {} ms: {}",
                        wait.as_millis(),
                        log::error_chain(&e)
                    ));
                    wait
                }
            },
        };
        let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::zero());
        spinner.set_message(format!(
            "watching {}: next refresh at {} UTC",
            sinks.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
            next.format("%H:%M:%S")
        ));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => {
                log::info(&format!("stopping on signal; the {kind} file is complete"));
                return Ok(());
            }
        }
    }
}

/// How long until a credential described by `meta` has only `min_ttl` seconds left; at least
/// one second, so a lifetime shorter than `min_ttl` cannot spin.
fn until_min_ttl(meta: &TokenMeta, min_ttl: u64) -> Duration {
    let left = meta.expires_at.as_deref().and_then(|e| remaining_secs(e, now_secs())).unwrap_or(0);
    let secs = left - i64::try_from(min_ttl).unwrap_or(i64::MAX);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere). Handlers are installed at once, so a
/// signal during a refresh waits for the next check instead of killing the process mid-write.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, TokenError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let io = |e: std::io::Error| TokenError::Sink { what: "signal handler", path: "-".into(), source: e };
        let mut term = signal(SignalKind::terminate()).map_err(io)?;
        let mut int = signal(SignalKind::interrupt()).map_err(io)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// `token-refresh runner`.
async fn runner(args: &RunnerTokenArgs, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
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
        return watch(Job::Runner { auth, args, scope, kind }, env, redactor, &sinks, &fingerprint).await;
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
async fn runner_credential(
    args: &RunnerTokenArgs,
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
    let github = GitHub::new(api_url(env), &token, "", "", Duration::ZERO)?;
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

/// `token-refresh revoke`: `DELETE /installation/token` with the token from `--file` (then the
/// file and its metadata are removed, so no later run reuses a dead token) or from
/// `GH_TOKEN`, else `GITHUB_TOKEN`. Either is checked where it is read
/// ([`credential::user_credential`]): one trailing newline is dropped, anything else that is
/// not visible ASCII is exit 2.
async fn revoke(args: &RevokeArgs, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
    let token = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| TokenError::Usage(format!("--file {}: cannot read it: {e}", path.display())))?;
            Some(credential::user_credential(&text, &format!("--file {}", path.display()))?)
        }
        None => credential::token_from_env(env)?,
    };
    let Some(token) = token else {
        return Err(TokenError::Usage("no token to revoke: pass --file PATH or set GH_TOKEN or GITHUB_TOKEN".into()));
    };
    register(redactor, &token);
    let github = GitHub::new(api_url(env), &token, "", "", Duration::ZERO)?;
    github.revoke_installation_token().await.map_err(|e| match e {
        GitHubError::Auth { action, status, message } => TokenError::Refused {
            action,
            status,
            message,
            help: "the token is already expired or revoked, or is not an installation token".into(),
        },
        other => other.into(),
    })?;
    if let Some(path) = &args.file {
        for p in [path.clone(), meta_path(path)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn(&format!("revoked, but cannot remove {}: {e}", p.display()));
                }
            }
        }
    }
    log::info("revoked the installation token");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_life_from_rfc3339() {
        assert_eq!(remaining_secs("2020-01-22T12:13:35.123-08:00", 1_579_723_915), Some(100));
        assert_eq!(remaining_secs("2016-07-11T22:14:10Z", 1_468_275_250), Some(0));
        assert_eq!(remaining_secs("not a date", 0), None);
    }

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

    #[test]
    fn meta_file_sits_beside_the_credential() {
        assert_eq!(meta_path(Path::new("/x/token")), PathBuf::from("/x/token.meta.json"));
    }
}
