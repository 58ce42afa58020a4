//! One module per subcommand. Commands return data or an exit code; `crate::output` renders.

pub mod config;
pub mod cost;
mod errors;

use errors::delivered;
pub mod fix;
pub mod review;
pub mod route;
pub mod secrets;
pub mod token_refresh;

use crate::cli::{Cli, Command};
use crate::context::Env;
use crate::exit::{Exit, ExitError};

/// The session's share of the flags of a command that calls a model (`review`, `fix`).
fn model_run(
    event: &crate::cli::EventArgs,
    config: &Option<std::path::PathBuf>,
    provider: &crate::cli::ProviderArgs,
    dry_run: bool,
    ledger: &crate::cli::LedgerArgs,
) -> crate::session::RunArgs {
    crate::session::RunArgs {
        event_path: event.path.clone(),
        event_name: event.name.clone(),
        config: config.clone(),
        provider: provider.name.clone(),
        model: provider.model.clone(),
        dry_run,
        require_state: ledger.require_state,
        usage_out: ledger.usage_out.clone(),
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, env: &Env) -> Result<Exit, ExitError> {
    let task = match &cli.command {
        Command::Review(_) => Some("review"),
        Command::Fix(_) => Some("fix"),
        Command::Route(_) => Some("route"),
        Command::Cost(_) => Some("cost"),
        Command::TokenRefresh(_) => Some("token-refresh"),
        Command::Config(_) | Command::Secrets(_) => None,
    };
    let Some(task) = task else { return dispatch(cli, env).await };
    crate::telemetry::start(task, env);
    let result = dispatch(cli, env).await;
    // `cicd.pipeline.task.run.result`: findings at `--fail-on` fail the task, nothing to do
    // skips it, any other error is an error.
    let outcome = match &result {
        Ok(Exit::Ok) => "success",
        Ok(Exit::NothingToDo) => "skip",
        Ok(Exit::Findings(_)) => "failure",
        Ok(_) | Err(_) => "error",
    };
    crate::telemetry::finish(outcome).await;
    result
}

/// Runs the subcommand.
async fn dispatch(cli: Cli, env: &Env) -> Result<Exit, ExitError> {
    match cli.command {
        Command::Review(args) => review::run(&args, env).await,
        Command::Config(args) => config::run(&args),
        Command::Fix(args) => fix::run(&args, env).await,
        Command::Route(args) => route::run(&args, env).await,
        Command::Cost(args) => cost::run(&args, env).await,
        Command::TokenRefresh(args) => token_refresh::run(&args, env).await,
        Command::Secrets(args) => secrets::run(&args),
    }
}
