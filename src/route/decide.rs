//! The decision of a route: the slash-command guards, the first matching rule, the budget,
//! provider health (open circuit breakers → the chain's next entry) and the runner.

use crate::budget::{self, GateDecision, RunScope};
use crate::config::routes::{self, RouteRule, Task};
use crate::config::Config;
use crate::context::catalog::CatalogEvent;
use crate::context::target;
use crate::context::{Context, Env};
use crate::exit::ExitError;
use crate::resilience::{Breaker, BreakerRecord, BreakerState};
use crate::{log, store};

use super::matchers::{choose_runner, rule_matches, Files, MatchInput};
use super::{Client, Decision, EventFacts};

/// Slash-command tasks `route` knows.
pub(crate) const COMMANDS: [&str; 4] = ["review", "fix", "cost", "help"];

/// Decides. `Err` only for what must stop the job: the files list needed by a rule cannot be
/// read (exit 1), or the budget ledger cannot be read while budgets are configured (exit 1).
pub(crate) async fn decide(
    config: &Config,
    ctx: &Context,
    env: &Env,
    event: &CatalogEvent,
    facts: &EventFacts,
    github: &dyn Client,
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
        let author = facts
            .commenter
            .as_ref()
            .map(|(login, kind)| (login.as_str(), kind.eq_ignore_ascii_case("Bot")))
            .filter(|(login, _)| !login.trim().is_empty());
        let body = facts.body.as_deref().unwrap_or("");
        if let Some((login, true)) = author {
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
            let association = facts.commenter_association.as_deref();
            if let Some(why) = target::command_refusal(cmd.task, author, association, allowed) {
                d.reason = why;
                return Ok(d);
            }
            let (login, association) = (author.map_or("", |a| a.0), association.unwrap_or("NONE"));
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
    let inputs = MatchInput { event, facts, command, github };
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
        None => config.provider_entry(None),
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
