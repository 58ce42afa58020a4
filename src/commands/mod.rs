//! One module per subcommand. Commands return data or an exit code; `crate::output` renders.

pub mod config;
pub mod cost;
mod errors;
pub mod fix;
pub mod review;
pub mod route;
pub mod secrets;
pub mod token_refresh;

use crate::cli::{Cli, Command};
use crate::context::Env;
use crate::exit::{Exit, ExitError};

/// Runs the parsed command line.
pub async fn run(cli: Cli, env: &Env) -> Result<Exit, ExitError> {
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
