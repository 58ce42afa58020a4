//! One run session: what every command needs before its own steps, built once per run from
//! args > env > config > defaults (SPEC §2).
//!
//! A [`Session`] holds the event [`Context`], the run's GitHub token (one reader:
//! `GH_TOKEN` before `GITHUB_TOKEN`, [`crate::github::token_from_env`]) and the [`Redactor`]
//! that holds it with its `::add-mask::` already published. On top of it, each in one place:
//! - the GitHub client factory ([`Session::github`], [`Session::graphql`], [`client`]): no
//!   command builds a client itself;
//! - the config by the base-branch rule ([`Session::config_for_pr`], and for a command that
//!   acts on the event itself, [`Session::config_for_event`]);
//! - the state store, opened lazily once ([`Session::store`]);
//! - provider selection with keys registered and masked ([`Session::provider`]);
//! - the budget gate with its downgrade ([`Session::gate`]);
//! - the ledger and its end-of-run sinks ([`Session::ledger`], [`Session::finish`]).
//!
//! Telemetry, caching and new providers attach here, not to a command.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use secrecy::SecretString;

use crate::budget::{self, GateOutcome};
use crate::config::{self, Config};
use crate::context::target::PrMeta;
use crate::context::{Context, Env, Repo};
use crate::env_vars as ev;
use crate::estimate::Estimate;
use crate::exit::ExitError;
use crate::github::{GitHub, GitHubError};
use crate::ledger::{self, Ledger};
use crate::log;
use crate::providers::select::{self, SelectedProvider};
use crate::redact::Redactor;
use crate::store::{self, Store, StoreError};

/// The command-line values a run may carry; each command fills the ones it has.
#[derive(Debug, Default, Clone)]
pub(crate) struct RunArgs {
    /// `--event`: the event payload file (else `GITHUB_EVENT_PATH`).
    pub event_path: Option<PathBuf>,
    /// `--event-name` (else `GITHUB_EVENT_NAME`).
    pub event_name: Option<String>,
    /// `--config` (else `AGENTCTL_CONFIG`, then the base-branch rule).
    pub config: Option<PathBuf>,
    /// `--provider`: a `providers:` entry or tier.
    pub provider: Option<String>,
    /// `--model`: overrides the entry's model.
    pub model: Option<String>,
    /// `--dry-run`: nothing is written to GitHub.
    pub dry_run: bool,
    /// `--require-state`: an unusable state store fails the run.
    pub require_state: bool,
    /// `--usage-out`: where the run's usage records are written (JSON lines).
    pub usage_out: Option<PathBuf>,
}

/// One run of a command. See the module documentation.
pub(crate) struct Session<'e> {
    env: &'e Env,
    args: RunArgs,
    /// The event, repository and API root of the run.
    pub ctx: Context,
    /// Every secret of the run (token, store password, provider keys once selected).
    pub redactor: Redactor,
    token: Option<SecretString>,
    store: OnceLock<Result<Arc<Store>, StoreError>>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("repository", &self.ctx.repository)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("dry_run", &self.dry_run())
            .finish_non_exhaustive()
    }
}

impl<'e> Session<'e> {
    /// Reads the event (`args.event_path`/`event_name`, else the Actions variables) and the
    /// token, and publishes the masks of every secret known so far, before anything could
    /// echo one.
    ///
    /// Errors: an event payload that cannot be read (exit 2); a token that is not one line of
    /// visible ASCII (exit 2, naming the variable).
    pub(crate) fn start(env: &'e Env, args: RunArgs) -> Result<Self, ExitError> {
        let ctx = Context::load(env, args.event_path.as_deref(), args.event_name.as_deref())?;
        let (token, redactor) = crate::github::token_and_redactor(env)?;
        Ok(Self { env, args, ctx, redactor, token, store: OnceLock::new() })
    }

    /// The process environment of the run.
    pub(crate) fn env(&self) -> &'e Env {
        self.env
    }

    /// The command-line values the run started with.
    pub(crate) fn args(&self) -> &RunArgs {
        &self.args
    }

    /// The run's GitHub token, if any.
    pub(crate) fn token(&self) -> Option<&SecretString> {
        self.token.as_ref()
    }

    /// Whether nothing is written to GitHub: `--dry-run`, or no token.
    pub(crate) fn dry_run(&self) -> bool {
        self.args.dry_run || self.token.is_none()
    }

    /// Says once why a run without `--dry-run` is one anyway (no token).
    pub(crate) fn note_dry_run(&self) {
        if self.token.is_none() && !self.args.dry_run {
            log::info("no GITHUB_TOKEN: dry run, nothing is written to GitHub");
        }
    }

    /// `AGENTCTL_WRITE_DELAY`, when set.
    ///
    /// Errors: a value out of its range (exit 2).
    fn env_write_delay(&self) -> Result<Option<Duration>, ExitError> {
        Ok(self.env.get(ev::AGENTCTL_WRITE_DELAY).map(config::write_delay_from_env).transpose()?)
    }

    /// The REST client of the run's repository, when there is a token and a repository (else
    /// `None`: a dry run). Writes are spaced by `AGENTCTL_WRITE_DELAY`, else by 1 s until the
    /// config's `github.write_delay` is applied ([`Session::config_for_pr`]).
    ///
    /// Errors: a bad `AGENTCTL_WRITE_DELAY` (exit 2); a malformed API URL or TLS setup (exit 1).
    pub(crate) fn github(&self) -> Result<Option<GitHub>, ExitError> {
        Ok(crate::github::client_for_run(&self.ctx, self.token.as_ref(), self.env_write_delay()?)?)
    }

    /// The GraphQL client of the run's repository (same rules as [`Session::github`]).
    pub(crate) fn graphql(&self) -> Result<Option<GitHub>, ExitError> {
        let mut ctx = self.ctx.clone();
        ctx.api_url = GitHub::graphql_root(&self.ctx.api_url);
        Ok(crate::github::client_for_run(&ctx, self.token.as_ref(), self.env_write_delay()?)?)
    }

    /// The config of a run on pull request `pr` by the base-branch rule
    /// ([`config::load_for_pr`]: `--config`, else the base commit's file through `gh` or git,
    /// never the PR's own copy), logged with its origin; `gh`'s write spacing becomes the
    /// config's `github.write_delay` unless `AGENTCTL_WRITE_DELAY` is set.
    ///
    /// Errors: every config error (exit 2), a failed fetch (the GitHub error's exit).
    pub(crate) async fn config_for_pr(
        &self,
        pr: Option<&PrMeta>,
        gh: Option<&mut GitHub>,
        pr_event_in_actions: bool,
    ) -> Result<Config, ExitError> {
        let explicit = self.args.config.as_deref();
        let config = loaded(config::load_for_pr(explicit, pr, gh.as_deref(), pr_event_in_actions).await?);
        self.apply_write_delay(gh, &config)?;
        Ok(config)
    }

    /// The config of a run on the event itself (`route`): a payload carrying a pull request
    /// ([`PrMeta::from_payload`]) by the base-branch rule ([`config::load_for_pr`]), any other
    /// by [`config::load_for_ref`] at `GITHUB_SHA`; logged with its origin. `gh` is only read
    /// from (its write spacing is left alone), and not needed with `--config`
    /// ([`Session::config_is_explicit`]).
    ///
    /// Errors: as [`Session::config_for_pr`].
    pub(crate) async fn config_for_event(&self, gh: Option<&GitHub>) -> Result<Config, ExitError> {
        let explicit = self.args.config.as_deref();
        Ok(loaded(match PrMeta::from_payload(&self.ctx.payload) {
            Some(pr) => config::load_for_pr(explicit, Some(&pr), gh, self.ctx.in_actions).await?,
            None => config::load_for_ref(explicit, gh, self.ctx.sha.as_deref()).await?,
        }))
    }

    /// Whether the config is the `--config` file, so no client is needed to read it.
    pub(crate) fn config_is_explicit(&self) -> bool {
        self.args.config.is_some()
    }

    fn apply_write_delay(&self, gh: Option<&mut GitHub>, config: &Config) -> Result<(), ExitError> {
        if let (Some(gh), None) = (gh, self.env_write_delay()?) {
            gh.set_write_delay(config.github.write_delay());
        }
        Ok(())
    }

    /// The state store (the breaker's memory and the ledger), opened on first use at the
    /// place `config.state` and the environment name, then shared.
    ///
    /// Errors: with `--require-state`, or a store that ends the run whatever the flag (a URL
    /// that cannot be used as written, refused credentials), the store error's exit.
    pub(crate) fn store(&self, config: &Config) -> Result<&Result<Arc<Store>, StoreError>, ExitError> {
        let store = self.store.get_or_init(|| store::open_configured(self.env, config.state.as_deref()));
        ledger::require_store(store, self.args.require_state)?;
        Ok(store)
    }

    /// The provider of the run: `entry` (a downgrade), else `--provider`, else the config's
    /// choice; `--model` applies to the run's own choice only. Its keys are registered with the
    /// redactor and masked before any request.
    ///
    /// Errors: a provider that cannot be built (missing key variable: exit 2), the store's.
    pub(crate) fn provider(&self, config: &Config, entry: Option<&str>) -> Result<SelectedProvider, ExitError> {
        let store = self.store(config)?;
        let (name, model) = match entry {
            Some(e) => (Some(e), None),
            None => (self.args.provider.as_deref(), self.args.model.as_deref()),
        };
        let provider = select::select(config, name, model, self.env, &self.redactor, store)?;
        log::publish_masks(&self.redactor);
        Ok(provider)
    }

    /// The budget gate before the first model call of `task`: no budgets, no estimate and
    /// `true`; else the run's `estimate` against the ledger. A soft budget's `downgrade_to` (a
    /// tier or a `providers:` entry) replaces `provider`. `false`: refused (exit 5; the reason
    /// was written where a workflow sees it).
    ///
    /// Errors: the ledger cannot be read (exit 1: fail closed); the downgraded provider's.
    pub(crate) fn gate(
        &self,
        config: &Config,
        task: &str,
        provider: &mut SelectedProvider,
        estimate: impl FnOnce() -> Estimate,
    ) -> Result<bool, ExitError> {
        if config.budgets.is_empty() {
            return Ok(true);
        }
        let store = self.store(config)?;
        match budget::run_gate(&config.budgets, store, &self.ctx, self.env, task, &estimate())? {
            GateOutcome::Proceed => Ok(true),
            GateOutcome::Downgrade(name) => {
                // `downgrade_to` names a tier or a provider entry (checked at config load).
                let entry = config::routes::resolve_tier(config, &name).unwrap_or(&name).to_owned();
                *provider = self.provider(config, Some(&entry))?;
                Ok(true)
            }
            GateOutcome::Refused => Ok(false),
        }
    }

    /// The ledger of `task` on issue or PR `number`, priced by the bundled table with the
    /// config's `pricing` over it.
    ///
    /// Errors: as [`Session::store`].
    pub(crate) fn ledger(&self, config: &Config, number: Option<u64>, task: &str) -> Result<Ledger, ExitError> {
        let store = self.store(config)?;
        Ok(Ledger::new(store, &self.ctx, number, task, config.price_table()))
    }

    /// Ends the ledger: `--usage-out` written, lost records with `--require-state`. Each
    /// failure is one line naming its sink.
    pub(crate) fn finish(&self, ledger: &Ledger) -> Vec<String> {
        ledger.finish(self.args.usage_out.as_deref(), self.args.require_state)
    }
}

/// A loaded config, its origin logged and its telemetry settings applied.
fn loaded((config, origin): (Config, config::ConfigOrigin)) -> Config {
    log::debug(&format!("config: {origin:?}"));
    crate::telemetry::configure(&config.telemetry);
    config
}

/// A client at `api_url` authenticated by `token` (an installation token, a user token or an
/// App's JWT) on `repo` (none for App-level and organization endpoints), writes spaced by
/// `write_delay`: the one constructor every command's GitHub client comes from.
///
/// Errors: [`GitHubError::Network`] for a malformed API URL or a TLS setup failure.
pub(crate) fn client(
    api_url: &str,
    token: &SecretString,
    repo: Option<&Repo>,
    write_delay: Duration,
) -> Result<GitHub, GitHubError> {
    let (owner, name) = repo.map_or(("", ""), |r| (r.owner.as_str(), r.name.as_str()));
    GitHub::new(api_url, token, owner, name, write_delay)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_without_a_token_is_a_dry_run_and_its_debug_shows_no_secret() {
        let env = Env::from_pairs([("GITHUB_REPOSITORY", "octo/r")]);
        let s = Session::start(&env, RunArgs::default()).unwrap();
        assert!(s.dry_run() && s.token().is_none() && s.github().unwrap().is_none());

        let env = Env::from_pairs([("GITHUB_REPOSITORY", "octo/r"), ("GH_TOKEN", "ghs_sessiontoken123")]);
        let s = Session::start(&env, RunArgs::default()).unwrap();
        assert!(!s.dry_run() && s.github().unwrap().is_some());
        assert!(!format!("{s:?}").contains("ghs_sessiontoken123"));
        assert!(!s.redactor.redact("x ghs_sessiontoken123 y").contains("sessiontoken"));
    }

    #[tokio::test]
    async fn a_bad_write_delay_is_a_usage_error_when_a_client_is_built() {
        let env = Env::from_pairs([
            ("GITHUB_REPOSITORY", "octo/r"),
            ("GH_TOKEN", "ghs_sessiontoken123"),
            ("AGENTCTL_WRITE_DELAY", "-1"),
        ]);
        let s = Session::start(&env, RunArgs::default()).unwrap();
        assert_eq!(s.github().unwrap_err().exit, crate::exit::Exit::Usage);
    }
}
