//! `agentctl token-refresh`: GitHub App installation tokens, runner registration/remove tokens
//! and just-in-time runner configs (SPEC §3.5). Orchestration only: the flags become the
//! settings of [`crate::credentials`], which checks the sinks, mints or reuses the credential
//! and delivers it; its [`TokenError`] says the exit code.

use crate::cli::{self, AppAuthArgs, AppTokenArgs, RunnerTokenArgs, SinkArgs};
use crate::cli::{TokenRefreshAction, TokenRefreshArgs};
use crate::context::Env;
use crate::credentials::{self, AppAuthSettings, AppTokenSettings, RunnerSettings, SinkSettings, TokenError};
use crate::credentials::{RunnerAction, RunnerScope};
use crate::exit::{Exit, ExitError};
use crate::log;
use crate::redact::Redactor;

/// Runs `token-refresh`.
pub async fn run(args: &TokenRefreshArgs, env: &Env) -> Result<Exit, ExitError> {
    let mut redactor = Redactor::new();
    log::set_redactor(&redactor);
    let result: Result<(), TokenError> = match &args.action {
        TokenRefreshAction::App(a) => credentials::app(&app_settings(a), env, &mut redactor).await,
        TokenRefreshAction::Runner(a) => credentials::runner(&runner_settings(a), env, &mut redactor).await,
        TokenRefreshAction::Revoke(a) => credentials::revoke(a.file.as_deref(), env, &mut redactor).await,
    };
    result.map(|()| Exit::Ok).map_err(ExitError::from)
}

/// `--app-id`, `--private-key-file`, `--private-key-keyring`, `--installation-id`.
fn auth_settings(a: &AppAuthArgs) -> AppAuthSettings {
    AppAuthSettings {
        app_id: a.app_id.clone(),
        private_key_file: a.private_key_file.clone(),
        private_key_keyring: a.private_key_keyring.clone(),
        installation_id: a.installation_id,
    }
}

/// `--output-name`, `--file`, `--keyring`, `--print`, `--force`, `--min-ttl`.
fn sink_settings(a: &SinkArgs) -> SinkSettings {
    SinkSettings {
        output_name: a.output_name.clone(),
        file: a.file.clone(),
        keyring: a.keyring.clone(),
        print: a.print,
        force: a.force,
        min_ttl: a.min_ttl,
    }
}

/// `token-refresh app`'s flags.
fn app_settings(a: &AppTokenArgs) -> AppTokenSettings {
    AppTokenSettings {
        auth: auth_settings(&a.auth),
        owner: a.owner.clone(),
        repo: a.repo.clone(),
        repositories: a.repositories.clone(),
        permission: a.permission.clone(),
        watch: a.watch,
        sinks: sink_settings(&a.sinks),
    }
}

/// `token-refresh runner`'s flags; the CLI enums become the domain's.
fn runner_settings(a: &RunnerTokenArgs) -> RunnerSettings {
    RunnerSettings {
        scope: match a.scope {
            cli::RunnerScope::Repo => RunnerScope::Repo,
            cli::RunnerScope::Org => RunnerScope::Org,
        },
        action: match a.action {
            cli::RunnerAction::Register => RunnerAction::Register,
            cli::RunnerAction::Remove => RunnerAction::Remove,
            cli::RunnerAction::Jit => RunnerAction::Jit,
        },
        owner: a.owner.clone(),
        repo: a.repo.clone(),
        name: a.name.clone(),
        labels: a.labels.clone(),
        runner_group_id: a.runner_group_id,
        work_folder: a.work_folder.clone(),
        auth: auth_settings(&a.auth),
        watch: a.watch,
        sinks: sink_settings(&a.sinks),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn runner_args(line: &str) -> RunnerSettings {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        match cli.command {
            Command::TokenRefresh(TokenRefreshArgs { action: TokenRefreshAction::Runner(r) }) => runner_settings(&r),
            other => panic!("not token-refresh runner: {other:?}"),
        }
    }

    #[test]
    fn runner_flags_become_the_domain_settings() {
        let s = runner_args("agentctl token-refresh runner --scope org --action jit --owner acme --labels a,b --print");
        assert_eq!((s.scope, s.action), (RunnerScope::Org, RunnerAction::Jit));
        assert_eq!(s.owner.as_deref(), Some("acme"));
        assert_eq!(s.labels, ["a", "b"]);
        assert!(s.sinks.print && !s.watch);
        assert_eq!((s.runner_group_id, s.work_folder.as_str(), s.sinks.min_ttl), (1, "_work", 600));
    }
}
