//! agentctl entry point: parse arguments, run, print the error chain (redacted), and map it to
//! a documented exit code (README, "Exit codes").
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use agentctl::cli::Cli;
use agentctl::context::Env;
use agentctl::env_vars as ev;
use agentctl::exit::Exit;
use agentctl::log;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage.code() } else { Exit::Ok.code() };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let env = Env::from_process();
    let level = if cli.quiet {
        log::Level::Quiet
    } else if cli.verbose > 0 {
        log::Level::Verbose
    } else {
        log::Level::Normal
    };
    log::init(level, env.get(ev::GITHUB_ACTIONS) == Some("true"));
    // One TLS crypto provider for every client (reqwest and octocrab both use rustls + ring).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(Exit::Failure.code());
        }
    };
    match runtime.block_on(agentctl::commands::run(cli, &env)) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            log::error(&format!("{:#}", e.source));
            ExitCode::from(e.exit.code())
        }
    }
}
