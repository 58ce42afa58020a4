//! agentctl entry point: parse arguments, run, print the error chain (redacted), and map it to
//! a documented exit code (README, "Exit codes").
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use agentctl::boundary::process_group;
use agentctl::cli::Cli;
use agentctl::context::Env;
use agentctl::env_vars as ev;
use agentctl::exit::Exit;
use agentctl::log;

fn main() -> ExitCode {
    // `agentctl __confine … -- program`: the trampoline of a model-driven child (see
    // `boundary`), before anything else reads the (already cleared) environment.
    if let Some(code) = agentctl::boundary::confine_main(&std::env::args_os().collect::<Vec<_>>()) {
        return ExitCode::from(code);
    }
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
    // NOTE: Rust ignores SIGPIPE, so a reader that closed stdout shows as EPIPE on a write;
    // `output` takes it as the reader gone, not a failure (exit 0).
    agentctl::output::init(env.get(ev::GITHUB_ACTIONS) == Some("true"));
    agentctl::progress::init(&env, cli.quiet);
    // Before any secret is used and any child runs: non-dumpable, no-new-privs, subreaper.
    for failed in agentctl::boundary::harden_self() {
        log::warn(&format!("process boundary: {failed} (the kernel refused it; children are less confined)"));
    }

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(Exit::Failure.code());
        }
    };
    // SIGINT/SIGTERM (Ctrl-C, a cancelled job) drop the run and kill every agent CLI process
    // group still alive (they do not get the terminal's or the runner's signal themselves).
    // A command that stops on signals by itself (`token-refresh app --watch`, which finishes a
    // write in flight and exits 0) is left to do so.
    let outcome = runtime.block_on(async {
        if cli.handles_signals() {
            return Ok(agentctl::commands::run(cli, &env).await);
        }
        tokio::select! {
            result = agentctl::commands::run(cli, &env) => Ok(result),
            Ok(signal) = process_group::exit_signal() => Err(signal),
        }
    });
    // Nothing a child started outlives the run (adopted daemons included).
    agentctl::boundary::kill_children();
    match outcome {
        Ok(Ok(exit)) => ExitCode::from(exit.code()),
        Ok(Err(e)) => {
            log::error(&format!("{:#}", e.source));
            ExitCode::from(e.exit.code())
        }
        Err(signal) => {
            // Dropping the run killed the groups it owned; this catches any left in detached tasks.
            process_group::kill_all();
            log::warn(&format!("stopped by signal {signal}; any running agent CLI was killed with its process group"));
            // Do not wait for blocking work (a SQLite write) longer than a moment.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            // The shell convention for death by a signal: 128 + its number.
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(128))
        }
    }
}
