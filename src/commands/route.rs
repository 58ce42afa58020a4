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

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;
use serde_json::Value;

use crate::budget::{self, GateDecision, RunScope};
use crate::cli::{RouteArgs, RouteFormat};
use crate::config::routes::{self, LabelsMatcher, OneOrMany, RouteRule, RunnersScope, Task};
use crate::config::{self, Config};
use crate::context::catalog::{self, CatalogEvent};
use crate::context::target::{self, PrMeta};
use crate::context::{Context, Env, Event};
use crate::env_vars as ev;
use crate::exit::{Exit, ExitError};
use crate::github::runners::RunnerOwner;
use crate::github::{GitHub, GitHubError};
use crate::resilience::{Breaker, BreakerRecord, BreakerState};
use crate::{actions, log, output, store};

/// Slash-command tasks `route` knows.
pub const COMMANDS: [&str; 4] = ["review", "fix", "cost", "help"];

/// The decision, as written to the outputs and `--format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `review`, `fix` or `none`.
    pub task: &'static str,
    /// The `providers:` entry (`builtin` for the offline rules; empty for `none`).
    pub provider: String,
    /// The entry's model (empty for builtin and `none`).
    pub model: String,
    /// The rule's tier, or the budget's `downgrade_to`; empty when neither named one.
    pub tier: String,
    /// Runner labels for `runs-on: ${{ fromJSON(needs.route.outputs.runs-on) }}`.
    pub runs_on: Vec<String>,
    /// One human sentence.
    pub reason: String,
    /// The catalog name.
    pub event: &'static str,
    /// `GITHUB_EVENT_NAME.action`, e.g. `pull_request.synchronize`.
    pub event_raw: String,
    /// The slash command's task (empty when none).
    pub command: String,
    /// The rule's `args` (written by the repository; empty when none).
    pub args: String,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    /// The rule that decided (`routes[2]` or its name); empty when none matched.
    pub rule: String,
    /// How the decision was reached, one line a step (`--explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<String>,
}

impl Decision {
    /// The step outputs: `task`, `provider`, `model`, `tier`, `runs-on` (a JSON array of
    /// strings), `reason`, `event`, `command`, `args`, `pr`, `issue` (empty when none).
    pub fn outputs(&self) -> Vec<(String, String)> {
        let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        vec![
            ("task".into(), self.task.into()),
            ("provider".into(), self.provider.clone()),
            ("model".into(), self.model.clone()),
            ("tier".into(), self.tier.clone()),
            ("runs-on".into(), serde_json::to_string(&self.runs_on).unwrap_or_else(|_| "[]".into())),
            ("reason".into(), self.reason.clone()),
            ("event".into(), self.event.into()),
            ("command".into(), self.command.clone()),
            ("args".into(), self.args.clone()),
            ("pr".into(), num(self.pr)),
            ("issue".into(), num(self.issue)),
        ]
    }
}

/// What the payload says about the event, read once. Missing fields are `None`: a matcher
/// that needs one does not match, and says so.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub labels: Option<Vec<String>>,
    pub draft: Option<bool>,
    pub base_branch: Option<String>,
    pub head_branch: Option<String>,
    /// Additions + deletions, from the payload's pull request.
    pub changed_lines: Option<u64>,
    /// `author_association` of the comment, review, pull request or issue (first present).
    pub author_association: Option<String>,
    /// `login` and `type` (`User`, `Bot`) of the comment's or review's author, for comment
    /// and review events.
    pub commenter: Option<(String, String)>,
    /// The comment's or review's body, for comment and review events.
    pub body: Option<String>,
}

impl Facts {
    /// Reads the facts of `ctx`'s payload.
    pub fn of(ctx: &Context) -> Facts {
        let p = &ctx.payload;
        let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        let n = |ptr: &str| p.pointer(ptr).and_then(Value::as_u64);
        let on_pr_issue = p.pointer("/issue/pull_request").is_some_and(|v| !v.is_null());
        let pr = n("/pull_request/number")
            .or_else(|| on_pr_issue.then(|| n("/issue/number")).flatten())
            .or_else(|| n("/workflow_run/pull_requests/0/number"))
            .or_else(|| n("/check_run/pull_requests/0/number"))
            .or_else(|| n("/check_suite/pull_requests/0/number"))
            .or_else(|| match &ctx.event {
                Event::WorkflowDispatch(e) => e.pr_number(),
                _ => None,
            });
        let issue = (!on_pr_issue).then(|| n("/issue/number")).flatten().or_else(|| {
            p.pointer("/inputs/issue").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
                _ => None,
            })
        });
        let labels = ["/pull_request/labels", "/issue/labels"].iter().find_map(|ptr| {
            p.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        });
        let draft = p
            .pointer("/pull_request/draft")
            .or_else(|| on_pr_issue.then(|| p.pointer("/issue/draft")).flatten())
            .and_then(Value::as_bool);
        let changed_lines = match (n("/pull_request/additions"), n("/pull_request/deletions")) {
            (Some(a), Some(d)) => Some(a.saturating_add(d)),
            _ => None,
        };
        let head_branch = s("/pull_request/head/ref").or_else(|| {
            (ctx.event_name.as_deref() == Some("push"))
                .then(|| s("/ref").and_then(|r| r.strip_prefix("refs/heads/").map(str::to_owned)))
                .flatten()
        });
        let author_association = ["/comment", "/review", "/pull_request", "/issue"]
            .iter()
            .find_map(|o| s(&format!("{o}/author_association")));
        let author_of = |o: &str| {
            p.pointer(&format!("/{o}/user")).map(|u| {
                let f = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                (f("login"), f("type"))
            })
        };
        let (commenter, body) = match ["comment", "review"].iter().find(|o| p.get(**o).is_some_and(Value::is_object)) {
            Some(o) => (author_of(o), s(&format!("/{o}/body"))),
            None => (None, None),
        };
        Facts {
            pr,
            issue,
            labels,
            draft,
            base_branch: s("/pull_request/base/ref"),
            head_branch,
            changed_lines,
            author_association,
            commenter,
            body,
        }
    }
}

/// The changed files of the PR, fetched at most once per run.
enum Files {
    NotFetched,
    Fetched(Vec<String>),
    Unavailable(String),
}

/// The route's inputs besides the config.
struct Inputs<'a> {
    event: &'a CatalogEvent,
    facts: &'a Facts,
    /// The slash command's task when one was given by an allowed author.
    command: Option<&'a str>,
    github: &'a LazyGitHub<'a>,
}

/// Runs `agentctl route`.
pub async fn run(args: &RouteArgs, env: &Env) -> Result<Exit, ExitError> {
    let ctx = Context::load(env, args.event.path.as_deref(), args.event.name.as_deref())?;
    let (token, _redactor) = crate::github::token_and_redactor(env)?;
    let github = LazyGitHub { ctx: &ctx, token, client: std::cell::OnceCell::new() };
    let event = catalog::classify(ctx.event_name.as_deref().unwrap_or(""), &ctx.payload);
    let facts = Facts::of(&ctx);
    let gh_for_config = if args.config.is_some() { None } else { github.get()? };
    let config = load_config(args.config.as_deref(), &ctx, gh_for_config).await?;
    let decision = decide(&config, &ctx, env, &event, &facts, &github).await?;
    deliver(&decision, args, env)?;
    Ok(Exit::Ok)
}

/// The GitHub client, built at its first use: most routes make no API call, and a run that
/// needs none does not pay for the HTTP and TLS setup (it shows in peak memory).
struct LazyGitHub<'a> {
    ctx: &'a Context,
    token: Option<secrecy::SecretString>,
    client: std::cell::OnceCell<Option<GitHub>>,
}

impl LazyGitHub<'_> {
    /// The client; `None` without a token or a repository.
    ///
    /// Errors: the client cannot be built (a malformed `GITHUB_API_URL`).
    fn get(&self) -> Result<Option<&GitHub>, ExitError> {
        if let Some(c) = self.client.get() {
            return Ok(c.as_ref());
        }
        let built = match (&self.token, &self.ctx.repository) {
            (Some(t), Some(repo)) => {
                Some(GitHub::new(&self.ctx.api_url, t, &repo.owner, &repo.name, std::time::Duration::ZERO)?)
            }
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
    Ok(config)
}

/// Decides. `Err` only for what must stop the job: the files list needed by a rule cannot be
/// read (exit 1), or the budget ledger cannot be read while budgets are configured (exit 1).
async fn decide(
    config: &Config,
    ctx: &Context,
    env: &Env,
    event: &CatalogEvent,
    facts: &Facts,
    github: &LazyGitHub<'_>,
) -> Result<Decision, ExitError> {
    let mut d = Decision {
        task: Task::None.as_str(),
        provider: String::new(),
        model: String::new(),
        tier: String::new(),
        runs_on: vec![routes::DEFAULT_RUNS_ON.to_owned()],
        reason: String::new(),
        event: event.name,
        event_raw: event.raw.clone(),
        command: String::new(),
        args: String::new(),
        pr: facts.pr,
        issue: facts.issue,
        rule: String::new(),
        explain: vec![format!("event: {} → {}", event.raw, event.name)],
    };

    // Comments and reviews: loop guard, then the slash command and who wrote it.
    let is_comment = matches!(event.name, "pr.commented" | "issue.commented" | "pr.review_commented" | "pr.reviewed");
    let mut command = None;
    if is_comment {
        let (login, kind) = facts.commenter.clone().unwrap_or_default();
        let body = facts.body.as_deref().unwrap_or("");
        if kind.eq_ignore_ascii_case("Bot") {
            d.reason = format!("written by the bot {login}: bots never trigger a run (loop guard)");
            return Ok(d);
        }
        if body.contains("<!-- agentctl:") {
            d.reason = "an agentctl comment: our own comments never trigger a run (loop guard)".into();
            return Ok(d);
        }
        if let Some(cmd) = target::parse_slash_command(body) {
            d.command = cmd.task.to_owned();
            let allowed = &config.slash_commands.allowed_associations;
            let association = facts.author_association.as_deref().unwrap_or("NONE");
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(association)) {
                d.reason = format!(
                    "`/agentctl {}` by {login} ({association}) is ignored: only {} may give commands",
                    cmd.task,
                    allowed.join(", ")
                );
                return Ok(d);
            }
            if !COMMANDS.contains(&cmd.task) {
                d.reason = format!("`/agentctl {}` is not a command (known: {})", cmd.task, COMMANDS.join(", "));
                return Ok(d);
            }
            command = Some(cmd.task);
            d.explain.push(format!("command: /agentctl {} by {login} ({association})", cmd.task));
        }
    }

    // The first rule that matches.
    let defaults;
    let rules: &[RouteRule] = if config.routes.is_empty() {
        defaults = routes::default_routes();
        d.explain.push("rules: the defaults (no `routes:` in the config)".into());
        &defaults
    } else {
        &config.routes
    };
    let inputs = Inputs { event, facts, command, github };
    let mut files = Files::NotFetched;
    let mut matched = None;
    for (i, rule) in rules.iter().enumerate() {
        let name = rule.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
        match rule_matches(rule, &inputs, &mut files).await? {
            Ok(()) => {
                d.explain.push(format!("{name}: matches → {}", rule.task.as_str()));
                matched = Some((name, rule));
                break;
            }
            Err(why) => d.explain.push(format!("{name}: no — {why}")),
        }
    }
    let Some((name, rule)) = matched else {
        d.reason = format!("no rule matches {}", event.name);
        return Ok(d);
    };
    d.rule = name.clone();
    d.args = rule.args.clone().unwrap_or_default();
    if rule.task == Task::None {
        d.reason = format!("rule {name} says none for {}", event.name);
        return Ok(d);
    }

    // Provider: the rule's tier, the budget, then health.
    let mut entry = match &rule.tier {
        Some(tier) => {
            d.tier = tier.clone();
            routes::resolve_tier(config, tier).unwrap_or("builtin").to_owned()
        }
        None => default_provider(config),
    };
    let mut notes = Vec::new();
    // The state store holds budgets' spend and breakers' state. Without budgets and without a
    // store file there is nothing to read: no file is created, nothing is opened.
    let state_exists = store::resolve(env, config.state.as_deref())?.is_some_and(|l| l.may_hold_state());
    let store =
        (state_exists || !config.budgets.is_empty()).then(|| store::open_configured(env, config.state.as_deref()));
    if let Some(opened) = store.as_ref().filter(|_| !config.budgets.is_empty()) {
        let ledger = budget::ledger(opened)?;
        let run = RunScope::of(ctx, rule.task.as_str());
        match budget::gate(ledger, &config.budgets, &run, crate::clock::now_ms(), 0.0)? {
            GateDecision::Proceed => d.explain.push("budget: within every limit".into()),
            GateDecision::Refuse(e) => {
                d.reason = format!("rule {name} matched, but the budget is exhausted: {}", budget::describe(&e));
                d.explain.push(format!("budget: hard limit reached ({})", budget::describe(&e)));
                return Ok(d);
            }
            GateDecision::Warn { evaluation, downgrade_to } => {
                d.explain.push(format!("budget: past its soft limit ({})", budget::describe(&evaluation)));
                if let Some(to) = downgrade_to {
                    entry = routes::resolve_tier(config, &to).unwrap_or("builtin").to_owned();
                    d.tier = to.clone();
                    notes.push(format!("downgraded to {to} (budget past its soft limit)"));
                }
            }
        }
    }
    match healthy_entry(config, &entry, store.as_ref().and_then(|s| s.as_deref().ok())) {
        Health::Usable { entry: chosen, skipped } => {
            if !skipped.is_empty() {
                notes.push(format!("{} skipped (circuit open)", skipped.join(", ")));
                d.explain.push(format!("health: {} open → {chosen}", skipped.join(", ")));
            }
            d.model = model_of(config, &chosen);
            d.provider = chosen;
        }
        Health::AllOpen(keys) => {
            d.reason = format!(
                "rule {name} matched, but every provider of the chain has an open circuit breaker ({})",
                keys.join(", ")
            );
            return Ok(d);
        }
    }

    // Runner.
    let (runs_on, why) = choose_runner(rule, github).await?;
    d.runs_on = runs_on;
    d.explain.push(format!("runner: {why}"));
    if why.starts_with("fallback") {
        notes.push(why);
    }
    d.task = rule.task.as_str();
    d.reason = format!("{} on {} by rule {name}", rule.task.as_str(), event.name)
        + &if d.provider == "builtin" { String::new() } else { format!(" with {} ({})", d.provider, d.model) }
        + &if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) };
    Ok(d)
}

/// The provider a run uses without a tier: config `provider`, else the only entry, else builtin
/// (as [`crate::providers::select`] chooses).
fn default_provider(config: &Config) -> String {
    config
        .provider
        .clone()
        .or_else(|| (config.providers.len() == 1).then(|| config.providers.keys().next().cloned()).flatten())
        .unwrap_or_else(|| "builtin".into())
}

/// The model an entry asks for (Azure: the deployment when no model is named).
fn model_of(config: &Config, entry: &str) -> String {
    config.providers.get(entry).and_then(|p| p.model.clone().or_else(|| p.deployment.clone())).unwrap_or_default()
}

enum Health {
    Usable { entry: String, skipped: Vec<String> },
    AllOpen(Vec<String>),
}

/// The first entry of `entry`'s chain (itself, then its `fallback:` entries) whose persisted
/// circuit breaker is not open. An open breaker whose `open_for` has passed counts as usable:
/// the next call is its half-open probe. Without a readable store every entry is usable.
fn healthy_entry(config: &Config, entry: &str, store: Option<&store::Store>) -> Health {
    let Some(p) = config.providers.get(entry) else {
        return Health::Usable { entry: entry.to_owned(), skipped: vec![] };
    };
    let now = crate::clock::now_ms();
    let mut skipped = Vec::new();
    for name in std::iter::once(entry).chain(p.fallback.iter().map(String::as_str)) {
        let Some(cfg) = config.providers.get(name) else { continue };
        let key = Breaker::key(name, &model_of(config, name));
        let record = store.and_then(|s| match BreakerRecord::load(s, &key) {
            Ok(r) => r,
            Err(e) => {
                log::warn(&format!("cannot read the circuit breaker of {key}: {}", log::error_chain(&e)));
                None
            }
        });
        let open_ms = i64::try_from(cfg.breaker.open_duration().as_millis()).unwrap_or(i64::MAX);
        let open = record.is_some_and(|r| {
            r.state == BreakerState::Open && r.opened_at_ms.is_some_and(|t| now < t.saturating_add(open_ms))
        });
        if !open {
            return Health::Usable { entry: name.to_owned(), skipped };
        }
        skipped.push(key);
    }
    Health::AllOpen(skipped)
}

/// `Ok(Ok(()))` when every matcher of `rule` holds, `Ok(Err(why))` when one does not.
async fn rule_matches(rule: &RouteRule, i: &Inputs<'_>, files: &mut Files) -> Result<Result<(), String>, ExitError> {
    let globs = |list: &OneOrMany| -> GlobSet {
        let mut b = GlobSetBuilder::new();
        for g in list.values() {
            // Checked at config load (routes::check_references); a bad one matches nothing.
            if let Ok(g) = Glob::new(g) {
                b.add(g);
            }
        }
        b.build().unwrap_or_else(|_| GlobSet::empty())
    };
    let f = i.facts;
    if let Some(ev) = &rule.event {
        if !globs(ev).is_match(i.event.name) {
            return Ok(Err(format!("event {} is not {}", i.event.name, ev.values().join(" or "))));
        }
    }
    if let Some(cmd) = &rule.command {
        match i.command {
            Some(c) if globs(cmd).is_match(c) => {}
            Some(c) => return Ok(Err(format!("command {c} is not {}", cmd.values().join(" or ")))),
            None => return Ok(Err("no /agentctl command".into())),
        }
    }
    if let Some(want) = &rule.labels {
        let Some(have) = &f.labels else { return Ok(Err("the event carries no labels".into())) };
        let has = |l: &String| have.iter().any(|h| h.eq_ignore_ascii_case(l));
        let (any, all): (&[String], &[String]) = match want {
            LabelsMatcher::Any(any) => (any, &[]),
            LabelsMatcher::Sets { any, all } => (any, all),
        };
        if !any.is_empty() && !any.iter().any(has) {
            return Ok(Err(format!("no label of {}", any.join(", "))));
        }
        if let Some(missing) = all.iter().find(|l| !has(l)) {
            return Ok(Err(format!("label {missing} is missing")));
        }
    }
    if let Some(allowed) = &rule.author_association {
        let Some(a) = &f.author_association else { return Ok(Err("the event has no author_association".into())) };
        if !allowed.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            return Ok(Err(format!("author_association {a} is not {}", allowed.join(" or "))));
        }
    }
    if let Some(want) = rule.draft {
        match f.draft {
            Some(d) if d == want => {}
            Some(d) => return Ok(Err(format!("draft is {d}"))),
            None => return Ok(Err("the event has no draft flag (not a pull request)".into())),
        }
    }
    for (key, want, have) in
        [("base_branch", &rule.base_branch, &f.base_branch), ("head_branch", &rule.head_branch, &f.head_branch)]
    {
        if let Some(want) = want {
            let Some(have) = have else { return Ok(Err(format!("the event has no {key}"))) };
            if !globs(want).is_match(have) {
                return Ok(Err(format!("{key} {have} is not {}", want.values().join(" or "))));
            }
        }
    }
    if let Some(size) = rule.diff_size {
        let Some(n) = f.changed_lines else {
            return Ok(Err("the payload has no pull_request.additions/deletions for diff_size".into()));
        };
        if size.max_changed_lines.is_some_and(|m| n > m) || size.min_changed_lines.is_some_and(|m| n < m) {
            return Ok(Err(format!("{n} changed lines are outside diff_size")));
        }
    }
    if let Some(paths) = &rule.paths {
        let set = globs(&OneOrMany::Many(paths.clone()));
        if let Files::NotFetched = files {
            *files = match (i.github.get()?, f.pr) {
                (Some(gh), Some(pr)) => match gh.pull_file_names(pr).await {
                    Ok(list) => Files::Fetched(list),
                    Err(e) => return Err(files_error(pr, e)),
                },
                (None, _) => Files::Unavailable("no GITHUB_TOKEN to list the changed files".into()),
                (_, None) => Files::Unavailable("the event has no pull request to list files of".into()),
            };
        }
        match files {
            Files::Fetched(list) if list.iter().any(|p| set.is_match(p)) => {}
            Files::Fetched(list) => return Ok(Err(format!("none of {} changed files matches paths", list.len()))),
            Files::Unavailable(why) => return Ok(Err(format!("paths cannot be checked: {why}"))),
            Files::NotFetched => return Ok(Err("paths cannot be checked".into())),
        }
    }
    Ok(Ok(()))
}

fn files_error(pr: u64, e: GitHubError) -> ExitError {
    ExitError::new(
        Exit::Failure,
        anyhow::anyhow!("a rule needs the changed files of #{pr}, and they cannot be listed: {}", log::error_chain(&e)),
    )
}

/// The runner labels: the first `runs_on` set with an online, idle runner carrying all its
/// labels (one paginated listing), else `fallback_runs_on`, else the first set (the job then
/// queues for it). A listing error (403 without permission) is a warning and the fallback; only
/// a client that cannot be built at all is an error. The second value says which and why.
async fn choose_runner(rule: &RouteRule, github: &LazyGitHub<'_>) -> Result<(Vec<String>, String), ExitError> {
    let fallback = || {
        rule.fallback_runs_on
            .clone()
            .or_else(|| rule.runs_on.first().cloned())
            .unwrap_or_else(|| vec![routes::DEFAULT_RUNS_ON.into()])
    };
    match rule.runs_on.as_slice() {
        [] => return Ok((fallback(), "the rule names no runners".into())),
        [only] if rule.fallback_runs_on.is_none() => return Ok((only.clone(), "the rule's only label set".into())),
        _ => {}
    }
    let Some(gh) = github.get()? else {
        let labels = fallback();
        log::warn("no GITHUB_TOKEN: self-hosted runners cannot be listed; using the fallback labels");
        return Ok((labels.clone(), format!("fallback {labels:?}: no token to list runners")));
    };
    let owner = match rule.runners_scope {
        RunnersScope::Repo => RunnerOwner::Repo,
        RunnersScope::Org => RunnerOwner::Org,
    };
    Ok(match gh.runners(owner).await {
        Ok(runners) => match rule.runs_on.iter().find(|set| runners.iter().any(|r| r.can_take(set))) {
            Some(set) => (set.clone(), format!("{set:?}: an online idle runner has these labels")),
            None => {
                let labels = fallback();
                (labels.clone(), format!("fallback {labels:?}: no online idle runner for any label set"))
            }
        },
        Err(e) => {
            let labels = fallback();
            log::warn(&format!(
                "cannot list self-hosted runners ({}); using the fallback labels",
                log::error_chain(&e)
            ));
            (labels.clone(), format!("fallback {labels:?}: runners cannot be listed"))
        }
    })
}

/// Writes the outputs, the job summary and stdout.
fn deliver(d: &Decision, args: &RouteArgs, env: &Env) -> Result<(), ExitError> {
    log::info(&format!("route: {} — {}", d.task, d.reason));
    if let Some(path) = env.get(ev::GITHUB_OUTPUT) {
        actions::write_outputs(Path::new(path), &d.outputs()).map_err(|e| {
            ExitError::new(Exit::Failure, anyhow::anyhow!("cannot write step outputs to GITHUB_OUTPUT ({path}): {e}"))
        })?;
    }
    if let Some(path) = env.get(ev::GITHUB_STEP_SUMMARY) {
        if let Err(e) = actions::write_step_summary(Path::new(path), &summary(d)) {
            log::warn(&format!("cannot write the job summary ({path}): {e}"));
        }
    }
    let mut shown = d.clone();
    if !args.explain {
        shown.explain.clear();
    }
    let text = match args.format {
        RouteFormat::Json => {
            let json = serde_json::to_string_pretty(&shown).unwrap_or_default();
            return output::stdout_json(&json)
                .map_err(|e| ExitError::new(Exit::Failure, anyhow::anyhow!("cannot write to stdout: {e}")));
        }
        RouteFormat::Text => {
            let mut t: String = shown.outputs().iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            if args.explain {
                t.push_str("\nhow:\n");
                t.extend(shown.explain.iter().map(|l| format!("  {l}\n")));
            }
            t
        }
    };
    output::stdout(&text).map_err(|e| ExitError::new(Exit::Failure, anyhow::anyhow!("cannot write to stdout: {e}")))
}

/// The job summary: a small table of the decision.
fn summary(d: &Decision) -> String {
    let cell = |s: &str| output::markdown::defang(s).replace('|', "\\|").replace('\n', " ");
    let mut md = String::from("### agentctl route\n\n| | |\n|---|---|\n");
    for (k, v) in d.outputs() {
        if !v.is_empty() {
            md.push_str(&format!("| {k} | {} |\n", cell(&v)));
        }
    }
    md
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn ctx(name: &str, payload: Value) -> Context {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        Context::load(&Env::from_pairs([]), Some(&path), Some(name)).unwrap()
    }

    #[test]
    fn facts_come_from_the_pull_request_and_the_comment() {
        let c = ctx(
            "pull_request",
            serde_json::json!({
                "action": "opened", "number": 3,
                "pull_request": {"number": 3, "draft": true, "additions": 5, "deletions": 2,
                    "labels": [{"name": "bug"}], "author_association": "CONTRIBUTOR",
                    "head": {"ref": "feat", "sha": "a"}, "base": {"ref": "main", "sha": "b"}},
                "repository": {"full_name": "o/r"}
            }),
        );
        let f = Facts::of(&c);
        assert_eq!(f.pr, Some(3));
        assert_eq!(f.labels, Some(vec!["bug".to_owned()]));
        assert_eq!((f.draft, f.changed_lines), (Some(true), Some(7)));
        assert_eq!((f.base_branch.as_deref(), f.head_branch.as_deref()), (Some("main"), Some("feat")));
        assert_eq!(f.author_association.as_deref(), Some("CONTRIBUTOR"));
        assert_eq!(f.commenter, None);
    }

    #[test]
    fn runs_on_output_is_a_json_array_of_strings() {
        let d = Decision {
            task: "review",
            provider: "main".into(),
            model: "m".into(),
            tier: String::new(),
            runs_on: vec!["self-hosted".into(), "gpu \"x\"".into()],
            reason: "r".into(),
            event: "pr.created",
            event_raw: "pull_request.opened".into(),
            command: String::new(),
            args: String::new(),
            pr: Some(1),
            issue: None,
            rule: String::new(),
            explain: vec![],
        };
        let out = d.outputs();
        let runs_on = &out.iter().find(|(k, _)| k == "runs-on").unwrap().1;
        let parsed: Vec<String> = serde_json::from_str(runs_on).unwrap();
        assert_eq!(parsed, d.runs_on);
        assert_eq!(out.iter().find(|(k, _)| k == "issue").unwrap().1, "");
    }
}
