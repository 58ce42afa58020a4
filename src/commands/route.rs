//! `agentctl route` (SPEC §3.3): one decision per event — which task, which provider and model,
//! which runner — written as step outputs for the jobs after it. Never calls a model and needs
//! no checkout.
//!
//! Stages: the event's catalog name ([`crate::context::catalog`]) and facts from the payload;
//! the config (a pull request's from its base branch, [`Session::config_for_event`]); the
//! slash-command guards (bots, our own comments, authors not allowed → `none`); the first
//! `routes:` rule that matches (the changed-files list fetched at most once, and only when a
//! rule reaches its `paths` matcher); the budget (past hard → `none`, past soft →
//! `downgrade_to`); provider health (a persisted open breaker → the next entry of the chain);
//! the runner (one paginated `actions/runners` listing, falling back on any error).

use crate::cli::{RouteArgs, RouteFormat};
use crate::context::catalog;
use crate::context::Env;
use crate::exit::{Exit, ExitError};
use crate::github::GitHub;
use crate::log;
use crate::output::json::v1;
use crate::output::{self, Delivery, Sink, Stdout};
use crate::route::{decide::decide, render::summary, Client, Decision, EventFacts};
use crate::session::{RunArgs, Session};

/// Runs `agentctl route`.
pub async fn run(args: &RouteArgs, env: &Env) -> Result<Exit, ExitError> {
    let run_args = RunArgs {
        event_path: args.event.path.clone(),
        event_name: args.event.name.clone(),
        config: args.config.clone(),
        ..RunArgs::default()
    };
    let session = Session::start(env, run_args)?;
    let ctx = &session.ctx;
    let github = LazyGitHub { session: &session, client: std::cell::OnceCell::new() };
    let event = catalog::classify(ctx.event_name.as_deref().unwrap_or(""), &ctx.payload);
    let facts = EventFacts::of(ctx);
    let gh_for_config = if session.config_is_explicit() { None } else { github.get()? };
    let config = session.config_for_event(gh_for_config).await?;
    let decision = decide(&config, ctx, env, &event, &facts, &github).await?;
    deliver(&decision, args, env)?;
    Ok(Exit::Ok)
}

/// The GitHub client, built at its first use: most routes make no API call, and a run that
/// needs none does not pay for the HTTP and TLS setup (it shows in peak memory).
struct LazyGitHub<'a> {
    session: &'a Session<'a>,
    client: std::cell::OnceCell<Option<GitHub>>,
}

impl Client for LazyGitHub<'_> {
    fn get(&self) -> Result<Option<&GitHub>, ExitError> {
        if let Some(c) = self.client.get() {
            return Ok(c.as_ref());
        }
        let (s, zero) = (self.session, std::time::Duration::ZERO);
        let built = match (s.token(), &s.ctx.repository) {
            (Some(t), Some(repo)) => Some(crate::session::client(&s.ctx.api_url, t, Some(repo), zero)?),
            _ => None,
        };
        Ok(self.client.get_or_init(|| built).as_ref())
    }
}

/// Prints the decision, writes the outputs and the job summary ([`output::deliver`]): a failed
/// job summary is a warning, any other failed sink exit 1.
fn deliver(d: &Decision, args: &RouteArgs, env: &Env) -> Result<(), ExitError> {
    log::info(&format!("route: {} — {}", d.task, d.reason));
    let mut shown = d.clone();
    if !args.explain {
        shown.explain.clear();
    }
    let stdout = match args.format {
        RouteFormat::Json => Stdout::Json(serde_json::to_string_pretty(&wire(&shown)).unwrap_or_default()),
        RouteFormat::Text => {
            let mut t: String = shown.outputs().iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            if args.explain {
                t.push_str("\nhow:\n");
                t.extend(shown.explain.iter().map(|l| format!("  {l}\n")));
            }
            Stdout::Text(t)
        }
    };
    let delivery =
        Delivery { stdout: Some(stdout), outputs: Some(d.outputs()), summary: Some(summary(d)), ..Delivery::default() };
    let (summary, failed): (Vec<_>, Vec<_>) =
        output::deliver(env, delivery).into_iter().partition(|f| f.sink == Sink::JobSummary);
    for f in summary {
        log::warn(&format!("cannot write the job summary ({}): {}", f.target, f.error));
    }
    super::delivered(failed)
}

/// The decision in `--format json`'s frozen shape ([`v1::RouteDecision`]).
fn wire(d: &Decision) -> v1::RouteDecision<'_> {
    v1::RouteDecision {
        task: d.task,
        provider: &d.provider,
        model: &d.model,
        tier: &d.tier,
        runs_on: &d.runs_on,
        reason: &d.reason,
        event: d.event,
        event_raw: &d.event_raw,
        command: &d.command,
        args: &d.args,
        pr: d.pr,
        issue: d.issue,
        rule: &d.rule,
        explain: &d.explain,
    }
}
