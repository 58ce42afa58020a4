//! `agentctl route` (SPEC §3.3): one decision per event — which task, which provider and model,
//! which runner — written as step outputs for the jobs after it. Never calls a model and needs
//! no checkout.
//!
//! Stages: the event's catalog name ([`crate::context::catalog`]) and facts from the payload;
//! the config (a pull request's from its base branch, [`crate::config::load_for_pr`]); the
//! slash-command guards (bots, our own comments, authors not allowed → `none`); the first
//! `routes:` rule that matches (the changed-files list fetched at most once, and only when a
//! rule reaches its `paths` matcher); the budget (past hard → `none`, past soft →
//! `downgrade_to`); provider health (a persisted open breaker → the next entry of the chain);
//! the runner (one paginated `actions/runners` listing, falling back on any error).

use serde_json::Value;
use std::path::Path;

use crate::cli::{RouteArgs, RouteFormat};
use crate::config::{self, Config};
use crate::context::catalog;
use crate::context::target::PrMeta;
use crate::context::{Context, Env};
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
    let gh_for_config = if args.config.is_some() { None } else { github.get()? };
    let config = load_config(args.config.as_deref(), ctx, gh_for_config).await?;
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

/// The config: on an event carrying a pull request (with its base sha) the base branch's copy
/// ([`config::load_for_pr`]); otherwise [`config::load_for_ref`] at `GITHUB_SHA`.
async fn load_config(explicit: Option<&Path>, ctx: &Context, gh: Option<&GitHub>) -> Result<Config, ExitError> {
    let p = &ctx.payload;
    let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
    let pr = match (p.pointer("/pull_request/number").and_then(Value::as_u64), s("/pull_request/base/sha")) {
        (Some(number), Some(base_sha)) => Some(PrMeta {
            number,
            title: String::new(),
            body: None,
            head_sha: s("/pull_request/head/sha").unwrap_or_default(),
            base_sha,
            base_ref: s("/pull_request/base/ref").unwrap_or_default(),
        }),
        _ => None,
    };
    let (config, origin) = match &pr {
        Some(pr) => config::load_for_pr(explicit, Some(pr), gh, ctx.in_actions).await?,
        None => config::load_for_ref(explicit, gh, ctx.sha.as_deref()).await?,
    };
    log::debug(&format!("config: {origin:?}"));
    crate::telemetry::configure(&config.telemetry);
    Ok(config)
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
