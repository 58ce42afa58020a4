//! `agentctl fix` (SPEC §3.2, issue #11): from an issue, a `/agentctl fix` comment, a label or a
//! dispatch to a verified draft PR. The model proposes edits; [`crate::edit`] applies them
//! safely; the repository's own verify command checks them; the result is committed through
//! the GraphQL `createCommitOnBranch` mutation onto an `agentctl/fix-…` branch and opened as a
//! draft PR. Everything shared with `review` comes from the core: PR/issue resolution and who
//! may trigger ([`crate::context::target`]), base-branch config ([`config::load_for_pr`]), the
//! redacting traced provider chain, the budget gate, the ledger (`task: fix`), markers.
//!
//! Stages: [`prepare`] (checkout, target, trigger checks, subject, config, provider), the budget
//! gate, [`rounds`] (prompt → answer → apply → verify, fed back), then the checkout is restored
//! and [`publish`] (or the dry-run print), then outputs and the job summary.
//!
//! Decisions where the issue is silent:
//! - The rounds run in a scratch `git worktree` detached at HEAD, under `RUNNER_TEMP` (else the
//!   temp folder), removed at the end ([`Workspace`], issue #17): the fix travels through the
//!   API (or a commit made with plumbing), so the checkout is never written, and a dry run,
//!   SIGINT, SIGTERM or SIGKILL at any moment leaves it as it was; verify's by-products land in
//!   the scratch tree. The rounds see HEAD as committed: with `--allow-dirty` uncommitted
//!   changes are neither read nor touched (the fix is published on top of the commit anyway).
//!   `fix.workdir: in-place` edits the checkout itself (a verify that needs the checkout's
//!   caches), restored at the end of every run and on SIGINT/SIGTERM, not on SIGKILL.
//! - On a PR the checkout must be at the PR's head (the edits are made against it). On a PR from
//!   a fork (GitHub cannot open a PR into a fork's branch, and agentctl never pushes to a
//!   contributor's branch) the fix branch is made in the base repository at the PR's head
//!   commit (readable there through `refs/pull/{n}/head`) and the draft goes into the PR's
//!   base branch, saying that it carries the PR's commits. A head commit the base repository
//!   cannot read is refused before any model call; a token that cannot create the branch
//!   (403/404/422) is a clear refusal, exit 1, nothing published.
//! - A re-run finds its earlier comment on the issue (bot-written, with the `fix` marker naming
//!   the branch and PR) and adds a new commit on that branch (parent = its head, so nothing is
//!   force-pushed) and updates that PR's title and body. Files the earlier run changed and this
//!   one does not stay as the earlier run left them.
//! - Without `fix.verify` there is one round unless an edit failed to match (then its reason is
//!   fed back); with it, rounds go on while verify fails (or nothing could be applied), up to
//!   `fix.max_rounds`; a passing verify ends them.
//! - No change to publish (every edit refused, or an empty answer) is exit 1, nothing written.
//! - `--usage-out` is written however the run ends once a ledger exists (tokens spent by a run
//!   that then fails are usage too); `--require-state` as in `review`.
//! - `fix.commit: git` (only when configured): the commit is made in the checkout's repository
//!   with plumbing on a temporary index (the work tree stays restored), on top of `origin`'s
//!   branch when it exists, and pushed with `git push` without force; only `agentctl/fix-*`
//!   branches are ever written, in both modes.
//! - Who may trigger: the commenter (or the labeler) must have `admin`, `maintain` or `write`
//!   on the repository; anyone else gets a reply saying so and the run exits 3, no model call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::FixArgs;
use crate::config::{self, CommitMethod, Config, EditFormat};
use crate::context::target::{self, PrMeta, Target};
use crate::context::{Context, Env, Event};
use crate::edit::context::{Budget, Feedback, Subject};
use crate::edit::verify::{self, VerifyResult, VerifySpec};
use crate::edit::{self, EditSet, FileChange, PathPolicy, Refused};
use crate::env_vars as ev;
use crate::exit::{self, Exit, ExitError};
use crate::github::git::{CommitFile, PullHeads};
use crate::github::markers::Marker;
use crate::github::{GitHub, GitHubError};
use crate::ledger::{Call, Ledger};
use crate::providers::chain::{Resilient, Traced};
use crate::providers::select::{self, SelectedProvider};
use crate::providers::structured::complete_json;
use crate::providers::{CompletionRequest, Provider};
use crate::redact::Redactor;
use crate::store::{self, Store, StoreError};
use crate::usage::Usage;
use crate::{actions, log, output};

/// Marker kind of the comment agentctl leaves on the issue (`pr`, `branch` fields).
pub const FIX_MARKER: &str = "fix";
/// Roles (`GET /collaborators/{user}/permission`) that may trigger a fix.
const WRITE_ROLES: [&str; 3] = ["admin", "maintain", "write"];

/// Everything resolved before the first model call.
struct Prepared {
    root: PathBuf,
    redactor: Redactor,
    dry_run: bool,
    github: Option<GitHub>,
    /// A client on [`GitHub::graphql_root`] for the commit mutation.
    graphql: Option<GitHub>,
    subject: Subject,
    /// On a pull request: its head and base (the fix branches from its head).
    pr: Option<PullHeads>,
    /// On a pull request from a fork: the fork's `owner/name` (`a deleted repository` when
    /// GitHub no longer knows it). The fix is a draft into the PR's base branch.
    fork: Option<String>,
    config: Config,
    provider: SelectedProvider,
    store: Result<Arc<Store>, StoreError>,
    policy: PathPolicy,
    tracked: Vec<String>,
}

/// What the rounds produced.
#[derive(Debug, Default)]
struct Outcome {
    explanation: String,
    /// Cumulative change against the checkout as it was.
    changes: Vec<FileChange>,
    refused: Vec<(u32, Refused)>,
    notes: Vec<String>,
    verify: Option<VerifyResult>,
    rounds: u32,
    usage: Usage,
    /// USD; `None` once any call had no known price.
    cost_usd: Option<f64>,
}

/// Runs `agentctl fix`. Returns the exit code; stdout carries the dry-run rendering.
pub async fn run(args: &FixArgs, env: &Env) -> Result<Exit, ExitError> {
    let ctx = Context::load(env, args.event.path.as_deref(), args.event.name.as_deref())?;
    let Some(mut run) = prepare(args, &ctx, env).await? else {
        return Ok(Exit::NothingToDo);
    };

    let prices = crate::estimate::price_table(&run.config);
    let ledger = Ledger::new(&run.store, &ctx, Some(run.subject.number).filter(|n| *n > 0), "fix", prices);
    let result = fix_with_ledger(args, &ctx, env, &mut run, &ledger).await;
    // `--usage-out` and `--require-state` whatever the run's end: tokens spent by a run that
    // then failed are usage too.
    let failures = ledger.finish(args.ledger.usage_out.as_deref(), args.ledger.require_state);
    for f in &failures {
        log::error(f);
    }
    match result {
        Ok(code) if failures.is_empty() => Ok(code),
        Ok(_) => Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", failures.join("\n")))),
        Err(e) => Err(e),
    }
}

/// Stages 2 to 5 with the run's ledger: the budget gate, the rounds, the clean-up, publish (or
/// the dry-run print), then outputs and the job summary.
async fn fix_with_ledger(
    args: &FixArgs,
    ctx: &Context,
    env: &Env,
    run: &mut Prepared,
    ledger: &Ledger,
) -> Result<Exit, ExitError> {
    let whole = run.config.fix.edit_format == EditFormat::Whole;
    let system = crate::prompt::fix_system_prompt(
        whole,
        run.config.fix.edit_limits().whole_file_max_bytes,
        run.config.fix.instructions.as_deref(),
    );
    let budget = Budget { max_tokens: run.config.fix.max_context_tokens, counting: run.config.review.token_counting };

    // The budget gate before the first model call, on the first round's prompt.
    if !run.config.budgets.is_empty() {
        let first = edit::context::build(&run.root, &run.subject, &run.tracked, &[], None, budget, &run.redactor);
        let overhead = budget.counting.count(&system) + budget.counting.count(crate::prompt::FIX_SCHEMA);
        let estimate = crate::estimate::fix(
            &run.config,
            first.tokens + overhead,
            args.provider.name.as_deref(),
            args.provider.model.as_deref(),
        );
        match crate::budget::run_gate(&run.config.budgets, &run.store, ctx, env, "fix", &estimate)? {
            crate::budget::GateOutcome::Proceed => {}
            crate::budget::GateOutcome::Downgrade(name) => {
                run.provider = select::select(&run.config, Some(&name), None, env, &run.redactor, &run.store)?;
                log::publish_masks(&run.redactor);
            }
            crate::budget::GateOutcome::Refused => return Ok(Exit::Budget),
        }
    }
    let chain = run.provider.chain().ok_or_else(|| {
        exit::usage(anyhow::anyhow!(
            "`agentctl fix` needs a model: configure a provider (`provider:` and `providers:` in the config)"
        ))
    })?;

    let spec = run.config.fix.verify_spec();
    let mut ws = Workspace::open(&run.root, run.config.fix.workdir, env)?;
    let result = rounds(run, &mut ws, &chain, &system, budget, spec.as_ref().map(|s| (s, env)), ledger).await;
    // The checkout ends as it started, whatever happened.
    let restored = ws.close();
    let outcome = result?;
    restored.map_err(|e| ExitError::new(Exit::Failure, anyhow::anyhow!("cannot restore the checkout: {e}")))?;
    if outcome.changes.is_empty() {
        let why: Vec<String> =
            outcome.refused.iter().map(|(r, x)| format!("round {r}: {} {}: {}", x.entry, x.path, x.reason)).collect();
        return Err(ExitError::new(
            Exit::Failure,
            anyhow::anyhow!(
                "the model's answer changes nothing that may be changed; nothing was published{}",
                if why.is_empty() { String::new() } else { format!(":\n{}", why.join("\n")) }
            ),
        ));
    }

    let verified = spec.as_ref().map(|_| outcome.verify.as_ref().is_some_and(VerifyResult::passed));
    let body = pr_body(run, &outcome, spec.as_ref(), verified);
    let title = format!("Fix #{}: {}", run.subject.number, one_line(&run.subject.title));
    let mut published = Published::default();
    if run.dry_run {
        let diff = edit::unified_diff(&outcome.changes);
        let text = run.redactor.redact(&format!("{diff}\n---\n{title}\n\n{body}\n"));
        output::stdout(&text).map_err(|e| anyhow::anyhow!("cannot write to stdout: {e}"))?;
    } else if let Some(gh) = &run.github {
        published = publish(gh, run, &outcome, &title, &body, verified == Some(true)).await?;
    }

    let mut failures = vec![];
    if let Some(path) = env.get(ev::GITHUB_OUTPUT) {
        let outputs = vec![
            ("pr-url".to_string(), published.pr_url.clone()),
            ("branch".to_string(), published.branch.clone()),
            ("verified".to_string(), verified.map_or("none".into(), |v| v.to_string())),
            ("rounds".to_string(), outcome.rounds.to_string()),
            ("files-changed".to_string(), outcome.changes.len().to_string()),
            ("cost-usd".to_string(), outcome.cost_usd.map_or("unknown".into(), |c| format!("{c:.6}"))),
        ];
        let outputs: Vec<(String, String)> = outputs.into_iter().map(|(k, v)| (k, run.redactor.redact(&v))).collect();
        if let Err(e) = actions::write_outputs(Path::new(path), &outputs) {
            failures.push(format!("cannot write step outputs to GITHUB_OUTPUT ({path}): {}", log::error_chain(&e)));
        }
    }
    if let Some(path) = env.get(ev::GITHUB_STEP_SUMMARY) {
        let summary = run.redactor.redact(&format!("## {}\n\n{body}\n", output::markdown::defang(&title)));
        if let Err(e) = actions::write_step_summary(Path::new(path), &summary) {
            failures.push(format!("cannot write the job summary to GITHUB_STEP_SUMMARY ({path}): {e}"));
        }
    }
    for f in &failures {
        log::error(f);
    }
    if failures.is_empty() {
        Ok(Exit::Ok)
    } else {
        Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", failures.join("\n"))))
    }
}

/// Stage 1: the checkout, which issue or PR and who asked, the subject's texts, the config
/// (the PR's base branch on a PR), the provider and the state store. `None`: nothing to do.
async fn prepare(args: &FixArgs, ctx: &Context, env: &Env) -> Result<Option<Prepared>, ExitError> {
    let (token, redactor) = crate::github::token_and_redactor(env)?;

    let cwd =
        std::env::current_dir().map_err(|e| exit::usage(anyhow::anyhow!("cannot read the working directory: {e}")))?;
    let root = edit::checkout::root(&cwd).map_err(|e| {
        exit::usage(anyhow::anyhow!(
            "`agentctl fix` edits a git checkout, and {} is not in one ({e})\nhelp: run it in a clone of the repository; in a workflow, add `actions/checkout` before it",
            cwd.display()
        ))
    })?;
    let dirty = edit::checkout::dirty(&root).map_err(|e| exit::usage(anyhow::anyhow!("git status failed: {e}")))?;
    if !dirty.is_empty() && !args.allow_dirty {
        return Err(exit::usage(anyhow::anyhow!(
            "the checkout has uncommitted changes ({}): a fix must start from a clean tree\nhelp: commit or stash them, or pass --allow-dirty",
            dirty.join(", ")
        )));
    }

    // Which issue or PR. The label check needs the config: any `labeled` event passes here
    // and is checked once the config is loaded.
    let flag = args.issue.or(args.pr);
    let event_label = match &ctx.event {
        Event::Other { name, payload } if name == "issues" => payload.pointer("/label/name").and_then(|l| l.as_str()),
        _ => None,
    };
    let number = match target::find_issue_target(ctx, flag, "fix", event_label) {
        Target::Number(n) => Some(n),
        Target::None => None,
        Target::NotACommand => {
            log::info("the event is not an `/agentctl fix` comment or a fix label: nothing to do");
            return Ok(None);
        }
    };
    let trigger = if flag.is_none() { target::trigger_user(ctx) } else { None };
    // An event by someone whose payload names nobody fails closed: no permission check could
    // pass, so nothing starts (exit 3, no model call).
    if flag.is_none() && trigger.is_none() && target::needs_trigger_user(ctx) {
        log::warn("the event names no author (`comment.user` or `sender` is missing): no fix was started");
        return Ok(None);
    }
    if let Some((login, true)) = &trigger {
        log::info(&format!("`/agentctl fix` by the bot {login} is ignored: bots never trigger runs"));
        return Ok(None);
    }
    let dry_run = args.dry_run || token.is_none();
    if token.is_none() && !args.dry_run {
        log::info("no GITHUB_TOKEN: dry run, nothing is written to GitHub");
    }
    let env_write_delay = env.get(ev::AGENTCTL_WRITE_DELAY).map(config::write_delay_from_env).transpose()?;
    let mut github = crate::github::client_for_run(ctx, token.as_ref(), env_write_delay)?;
    let mut graphql_ctx = ctx.clone();
    graphql_ctx.api_url = GitHub::graphql_root(&ctx.api_url);
    let graphql = crate::github::client_for_run(&graphql_ctx, token.as_ref(), env_write_delay)?;

    let comment = match &ctx.event {
        Event::IssueComment(e) if flag.is_none() => e.comment.body.clone(),
        _ => None,
    };
    let instructions = args.instructions.clone().or_else(|| match &ctx.event {
        Event::WorkflowDispatch(e) => {
            e.inputs.as_ref()?.get("instructions")?.as_str().map(str::to_string).filter(|s| !s.trim().is_empty())
        }
        _ => None,
    });
    let mut subject = Subject { kind: "task", comment, instructions, ..Subject::default() };
    let mut pr = None;
    let mut fork = None;
    match (number, &github) {
        (Some(n), Some(gh)) => {
            // Who asked must be able to write: association alone is not enough.
            if let Some((login, _)) = &trigger {
                let role = gh.permission(login).await?;
                if !WRITE_ROLES.contains(&role.as_str()) {
                    let why = format!(
                        "`/agentctl fix` needs write access to this repository; @{login} has `{role}`, so no fix was started."
                    );
                    log::info(&why);
                    if !dry_run {
                        gh.create_issue_comment(n, &why).await?;
                    }
                    return Ok(None);
                }
            }
            let issue = gh.issue(n).await?;
            subject.number = n;
            subject.title = issue.title;
            subject.body = issue.body.unwrap_or_default();
            subject.kind = "issue";
            if issue.pull_request.is_some() || args.pr.is_some() {
                let heads = gh.pull_heads(n).await?;
                let this_repo = ctx.repository.as_ref().map(|r| r.to_string());
                if heads.head_repo.is_none() || heads.head_repo != this_repo {
                    let from = heads.head_repo.clone().unwrap_or_else(|| "a deleted repository".into());
                    // Before any model call: the fix branch starts at the fork's head, which
                    // must be readable in this repository.
                    if !gh.commit_exists(&heads.head_sha).await? {
                        return Err(ExitError::new(
                            Exit::Failure,
                            anyhow::anyhow!(
                                "pull request #{n} comes from a fork ({from}) and its head commit {} is not reachable in {}: agentctl cannot branch from it\nhelp: ask the author to apply the fix, or run `agentctl fix --issue` on an issue instead",
                                heads.head_sha.get(..12).unwrap_or(&heads.head_sha),
                                this_repo.as_deref().unwrap_or("this repository")
                            ),
                        ));
                    }
                    fork = Some(from);
                }
                let head = edit::checkout::head(&root).unwrap_or_default();
                if head != heads.head_sha {
                    return Err(exit::usage(anyhow::anyhow!(
                        "the checkout is at {} but pull request #{n}'s head is {}: the fix must be made against the PR's head\nhelp: check out `refs/pull/{n}/head` (actions/checkout with `ref`)",
                        head.get(..12).unwrap_or(&head),
                        heads.head_sha.get(..12).unwrap_or(&heads.head_sha)
                    )));
                }
                subject.kind = "pull request";
                subject.pr_diff = Some(String::from_utf8_lossy(&gh.pull_diff(n).await?).into_owned());
                pr = Some(heads);
            }
        }
        (Some(n), None) => {
            return Err(exit::usage(anyhow::anyhow!(
                "reading issue #{n} needs GITHUB_TOKEN (or GH_TOKEN) and GITHUB_REPOSITORY\nhelp: for a local try without a token, pass --instructions TEXT"
            )))
        }
        (None, _) if subject.instructions.is_some() => {}
        (None, _) => {
            return Err(exit::usage(anyhow::anyhow!(
                "nothing to fix: pass --issue N, --pr N or --instructions TEXT, or run on an issue event"
            )))
        }
    }

    // On a PR the config comes from its base branch, never from the checkout (SPEC §2).
    let on_pr_in_actions = ctx.in_actions && pr.is_some();
    let base_pr = pr.as_ref().map(|h| PrMeta {
        number: h.number,
        title: h.title.clone(),
        body: h.body.clone(),
        head_sha: h.head_sha.clone(),
        base_sha: h.base_sha.clone(),
        base_ref: h.base_ref.clone(),
    });
    let (config, origin) =
        config::load_for_pr(args.config.as_deref(), base_pr.as_ref(), github.as_ref(), on_pr_in_actions).await?;
    log::debug(&format!("config: {origin:?}"));
    if let Some(label) = event_label {
        if config.fix.label.as_deref() != Some(label) {
            log::info(&format!("label `{label}` is not `fix.label`: nothing to do"));
            return Ok(None);
        }
    }
    if let (Some(gh), None) = (github.as_mut(), env_write_delay) {
        gh.set_write_delay(config.github.write_delay());
    }
    let mut protected = config.fix.protected_paths.clone();
    if let Some(p) = args.config.as_deref().and_then(|p| std::fs::canonicalize(p).ok()) {
        if let Ok(rel) = p.strip_prefix(std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone())) {
            protected.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    let policy = PathPolicy::new(&protected).map_err(|e| exit::usage(anyhow::anyhow!("fix.protected_paths: {e}")))?;
    let tracked = edit::context::tracked_files(&root).map_err(|e| exit::usage(anyhow::anyhow!("git ls-files: {e}")))?;

    let store = store::open_configured(env, config.state.as_deref());
    crate::ledger::require_store(&store, args.ledger.require_state)?;
    let provider =
        select::select(&config, args.provider.name.as_deref(), args.provider.model.as_deref(), env, &redactor, &store)?;
    log::publish_masks(&redactor);
    Ok(Some(Prepared {
        root,
        redactor,
        dry_run,
        github,
        graphql,
        subject,
        pr,
        fork,
        config,
        provider,
        store,
        policy,
        tracked,
    }))
}

/// Stage 3: up to `fix.max_rounds` rounds of prompt → answer → apply → verify, in `ws` (which
/// records each touched file's original, so the caller can restore an in-place checkout).
async fn rounds(
    run: &Prepared,
    ws: &mut Workspace,
    chain: &Arc<Resilient>,
    system: &str,
    budget: Budget,
    verify: Option<(&VerifySpec, &Env)>,
    ledger: &Ledger,
) -> Result<Outcome, ExitError> {
    let schema: serde_json::Value =
        serde_json::from_str(crate::prompt::FIX_SCHEMA).map_err(|e| anyhow::anyhow!("fix schema: {e}"))?;
    let mut out = Outcome { cost_usd: Some(0.0), ..Outcome::default() };
    let mut feedback: Option<Feedback> = None;
    let max_rounds = run.config.fix.max_rounds.max(1);
    for round in 1..=max_rounds {
        out.rounds = round;
        let edited: Vec<String> = ws.originals.keys().cloned().collect();
        let prompt = edit::context::build(
            &ws.root,
            &run.subject,
            &run.tracked,
            &edited,
            feedback.as_ref(),
            budget,
            &run.redactor,
        );
        for l in &prompt.left_out {
            log::info(&format!("not in the prompt: {l}"));
        }
        let req = CompletionRequest {
            system: system.to_string(),
            prompt: prompt.text,
            json_schema: Some(("fix_output".to_string(), schema.clone())),
            max_output_tokens: run.config.fix.max_output_tokens,
            temperature: Some(0.0),
        };
        log::info(&format!("fix round {round} of {max_rounds} with {} ({})", chain.name(), chain.model()));
        let traced = Traced::new(chain.as_ref());
        let result = complete_json(&traced, &req).await;
        let calls = traced.into_calls();
        for call in &calls {
            out.usage += call.usage;
            let cost = ledger.record(&call.ledger_call());
            out.cost_usd = match (out.cost_usd, cost) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                if calls.is_empty() {
                    ledger.record(&Call::failed(chain.name(), chain.model(), e.class()));
                }
                if round > 1 && !e.is_auth() {
                    log::warn(&format!("round {round} failed ({e}); publishing what round {} produced", round - 1));
                    out.rounds = round - 1;
                    break;
                }
                return Err(e.into());
            }
        };
        let explanation =
            answer.value.get("explanation").and_then(|e| e.as_str()).unwrap_or_default().trim().to_string();
        let set: EditSet = serde_json::from_value(answer.value).unwrap_or_default();
        let applied = edit::plan_with(&ws.root, &set, &run.policy, run.config.fix.edit_limits());
        for c in &applied.changes {
            ws.originals.entry(c.path.clone()).or_insert_with(|| c.before.clone());
        }
        edit::write(&ws.root, &applied.changes).map_err(|e| ExitError::new(Exit::Failure, e))?;
        if !explanation.is_empty() {
            out.explanation = explanation;
        }
        out.notes.extend(applied.notes.iter().cloned());
        for r in &applied.refused {
            log::warn(&format!("round {round}: {} of {} refused: {}", r.entry, r.path, r.reason));
        }
        let retry = applied.refused.iter().any(|r| !r.policy);
        out.refused.extend(applied.refused.iter().cloned().map(|r| (round, r)));
        let mut fb = Feedback {
            applied_diff: edit::unified_diff(&ws.changes()),
            refused: applied.refused.iter().map(|r| format!("{} of `{}`: {}", r.entry, r.path, r.reason)).collect(),
            verify: None,
        };
        match verify {
            Some((spec, env)) if !ws.originals.is_empty() => {
                let v = verify::run(spec, &ws.root, env).await;
                let line = v.describe(spec.timeout);
                log::info(&format!("verify `{}` {line}", spec.display));
                let passed = v.passed();
                fb.verify = Some((spec.display.clone(), line, run.redactor.redact(&v.output_tail)));
                out.verify = Some(v);
                // A passing verify ends the rounds even when some entry was refused: the
                // refusals are listed in the PR body, and another round could only undo a
                // verified state.
                if passed {
                    break;
                }
            }
            _ if !retry => break,
            _ => {}
        }
        feedback = Some(fb);
    }
    out.changes = ws.changes();
    Ok(out)
}

/// Where the rounds write the model's edits and run verify (`fix.workdir`): a scratch work
/// tree at HEAD (the default), or the checkout itself with what to put back.
///
/// Whatever ends the run — success, an error, a dropped future on SIGINT/SIGTERM (`main`
/// drops the command's future before it exits 130/143) — dropping it removes the scratch tree,
/// or writes the checkout's files back as they were; [`Workspace::close`] does the same and
/// reports an error.
struct Workspace {
    /// The root the rounds read and write.
    root: PathBuf,
    scratch: Option<edit::checkout::ScratchTree>,
    /// Each touched path's content before the first round (`None`: it did not exist).
    originals: BTreeMap<String, Option<Vec<u8>>>,
    closed: bool,
}

impl Workspace {
    /// A scratch tree of `checkout` under `RUNNER_TEMP` (else the temp folder), or the checkout
    /// itself for `fix.workdir: in-place`.
    fn open(checkout: &Path, workdir: config::Workdir, env: &Env) -> Result<Self, ExitError> {
        let scratch = match workdir {
            config::Workdir::InPlace => None,
            config::Workdir::Scratch => {
                let under = env.get(ev::RUNNER_TEMP).map_or_else(std::env::temp_dir, PathBuf::from);
                let tree = edit::checkout::ScratchTree::add(checkout, &under).map_err(|e| {
                    ExitError::new(
                        Exit::Failure,
                        anyhow::anyhow!(
                            "cannot make the scratch work tree the fix runs in: {e}\nhelp: set `fix.workdir: in-place` to edit the checkout itself"
                        ),
                    )
                })?;
                log::info(&format!("fix rounds run in a scratch work tree at HEAD: {}", tree.path().display()));
                Some(tree)
            }
        };
        let root = scratch.as_ref().map_or_else(|| checkout.to_path_buf(), |t| t.path().to_path_buf());
        Ok(Self { root, scratch, originals: BTreeMap::new(), closed: false })
    }

    /// Every touched path whose content now differs from its original.
    fn changes(&self) -> Vec<FileChange> {
        self.originals
            .iter()
            .filter_map(|(path, before)| {
                let now = std::fs::read(self.root.join(path)).ok();
                (now != *before).then(|| FileChange { path: path.clone(), before: before.clone(), after: now })
            })
            .collect()
    }

    /// Removes the scratch tree, or puts the checkout back as it was before the first round
    /// (all or nothing).
    fn close(&mut self) -> Result<(), String> {
        self.closed = true;
        if let Some(tree) = self.scratch.take() {
            return tree.remove();
        }
        let back: Vec<FileChange> =
            self.changes().into_iter().map(|c| FileChange { path: c.path, before: c.after, after: c.before }).collect();
        edit::write(&self.root, &back).map_err(|e| e.to_string())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.closed {
            // A signal or a panic: the verify command must not write after we restored.
            crate::boundary::process_group::kill_all();
            if let Err(e) = self.close() {
                log::error(&format!("cannot restore the checkout: {e}"));
            }
        }
    }
}

/// What [`publish`] made.
#[derive(Debug, Default)]
struct Published {
    pr_url: String,
    branch: String,
}

/// Stage 4: branch, commit (GraphQL), draft PR, comment on the issue — or, on a re-run, a new
/// commit on the same branch, the same PR updated, the same comment updated.
async fn publish(
    gh: &GitHub,
    run: &Prepared,
    outcome: &Outcome,
    title: &str,
    body: &str,
    verified: bool,
) -> Result<Published, ExitError> {
    let n = run.subject.number;
    if n == 0 {
        return Err(exit::usage(anyhow::anyhow!(
            "a fix from --instructions alone has no issue to link: pass --dry-run, or --issue N"
        )));
    }
    // What an earlier run left: its comment (written by our own account, `github.identity`;
    // a marker any other account typed is ignored), marker as the last line.
    let identity = run.config.github.identity.as_str();
    let earlier = gh.issue_comments(n).await?.into_iter().filter(|c| c.by(identity)).find_map(|c| {
        let m = Marker::find(c.body.as_deref()?, FIX_MARKER)?;
        Some((c.id, m))
    });
    let (base_sha, base_ref) = match &run.pr {
        // From a fork: a branch in this repository at the fork's head, into the PR's base
        // branch (a PR cannot target a fork's branch).
        Some(p) if run.fork.is_some() => (p.head_sha.clone(), p.base_ref.clone()),
        // A stacked fix: from the PR's head, into the PR's head branch.
        Some(p) => (p.head_sha.clone(), p.head_ref.clone()),
        None => {
            let head =
                edit::checkout::head(&run.root).map_err(|e| exit::usage(anyhow::anyhow!("git rev-parse HEAD: {e}")))?;
            let base = default_branch(gh).await?;
            (head, base)
        }
    };
    let by_git = run.config.fix.commit == CommitMethod::Git;
    let branch = match earlier.as_ref().and_then(|(_, m)| m.get("branch")) {
        Some(b) => b.to_string(),
        None => format!("agentctl/fix-{n}-{}", slug(&run.subject.title)),
    };
    if branch == base_ref || !branch.starts_with("agentctl/fix-") {
        return Err(ExitError::new(
            Exit::Failure,
            anyhow::anyhow!("refusing to commit to {branch}: agentctl commits only to its own agentctl/fix-* branches, never to the base branch"),
        ));
    }
    let headline = run.redactor.redact(title);
    let message = if verified { format!("Fixes #{n}") } else { format!("Refs #{n} (not verified)") };
    if by_git {
        commit_and_push(&run.root, &branch, &base_sha, &headline, &message, &outcome.changes, &run.redactor)?;
    } else {
        let reuse = earlier.as_ref().is_some_and(|(_, m)| m.get("branch").is_some());
        commit_by_api(gh, run, (&branch, reuse), &base_sha, (&headline, &message), &outcome.changes).await?;
    }
    let body = run.redactor.redact(body);
    let earlier_pr = earlier.as_ref().and_then(|(_, m)| m.get("pr")).and_then(|p| p.parse::<u64>().ok());
    let pull = match earlier_pr {
        Some(p) => gh.update_pull(p, &headline, &body).await?,
        None => gh.create_draft_pull(&headline, &branch, &base_ref, &body).await?,
    };
    let number = pull.number.to_string();
    let marker = Marker::new(FIX_MARKER, &[("pr", &number), ("branch", &branch)]).render();
    let verdict = if verified { "verified" } else { "not verified" };
    let comment = format!("agentctl opened a draft fix ({verdict}): {}\n\n{marker}\n", pull.html_url);
    let posted = match earlier {
        Some((id, _)) => gh.update_issue_comment(id, &comment).await?,
        None => gh.create_issue_comment(n, &comment).await?,
    };
    crate::github::publish::check_identity(&posted, identity);
    log::info(&format!("draft pull request: {}", pull.html_url));
    Ok(Published { pr_url: pull.html_url, branch })
}

/// `fix.commit: git`: a commit in the checkout's repository on `branch` (on top of `origin`'s
/// `branch` when it exists, else of `base_sha`), pushed to `origin` without force. The work
/// tree and HEAD are not touched (the checkout was restored already). Git's messages are
/// redacted (a remote URL may hold a token).
fn commit_and_push(
    root: &Path,
    branch: &str,
    base_sha: &str,
    headline: &str,
    message: &str,
    changes: &[FileChange],
    redactor: &Redactor,
) -> Result<(), ExitError> {
    let fail = |what: &str, e: String| {
        ExitError::new(
            Exit::Failure,
            anyhow::anyhow!(
                "fix.commit: git: {what} failed: {}\nhelp: the checkout's `origin` needs push credentials (actions/checkout with `persist-credentials: true`), or use `fix.commit: api`",
                redactor.redact(&e)
            ),
        )
    };
    let parent = edit::checkout::remote_branch_head(root, "origin", branch)
        .map_err(|e| fail(&format!("git ls-remote origin {branch}"), e))?
        .unwrap_or_else(|| base_sha.to_string());
    let files: Vec<edit::checkout::NewContent<'_>> =
        changes.iter().map(|c| (c.path.as_str(), c.after.as_deref())).collect();
    let text = format!("{headline}\n\n{message}\n");
    edit::checkout::commit_files(root, &parent, branch, &files, &text).map_err(|e| fail("git commit", e))?;
    edit::checkout::push_branch(root, "origin", branch).map_err(|e| fail(&format!("git push origin {branch}"), e))
}

/// `fix.commit: api`: the branch through the refs API (when new) and one GraphQL
/// `createCommitOnBranch` commit on it. `(branch, reuse)`: `reuse` when an earlier run made the
/// branch (its head is then the commit's parent). `(headline, message)` of the commit.
async fn commit_by_api(
    gh: &GitHub,
    run: &Prepared,
    (branch, reuse): (&str, bool),
    base_sha: &str,
    (headline, message): (&str, &str),
    changes: &[FileChange],
) -> Result<(), ExitError> {
    let n = run.subject.number;
    let mut expected_head = if reuse { gh.branch_head(branch).await? } else { None };
    if expected_head.is_none() {
        match (gh.create_branch(branch, base_sha).await, &run.fork) {
            (Ok(()), _) => {}
            (
                Err(
                    e @ (GitHubError::Auth { status: 403, .. }
                    | GitHubError::NotFound { .. }
                    | GitHubError::Unprocessable { .. }),
                ),
                Some(from),
            ) => {
                return Err(ExitError::new(
                    Exit::Failure,
                    anyhow::anyhow!(
                        "pull request #{n} comes from a fork ({from}): cannot create branch {branch} in {}/{} at its head commit {}, so nothing was published ({e})\nhelp: the token needs `contents: write` on {}/{}, and the fork's commit must still be reachable there (`refs/pull/{n}/head`); or ask the author to apply the fix",
                        gh.owner(),
                        gh.repo(),
                        base_sha.get(..12).unwrap_or(base_sha),
                        gh.owner(),
                        gh.repo()
                    ),
                ));
            }
            (Err(e), _) => return Err(e.into()),
        }
        expected_head = Some(base_sha.to_string());
    }
    let files: Vec<CommitFile> =
        changes.iter().map(|c| CommitFile { path: c.path.clone(), contents: c.after.clone() }).collect();
    let gql = run.graphql.as_ref().unwrap_or(gh);
    gql.create_commit_on_branch(
        (gh.owner(), gh.repo()),
        branch,
        expected_head.as_deref().unwrap_or(base_sha),
        headline,
        message,
        &files,
    )
    .await?;
    Ok(())
}

/// The repository's default branch (`GET /repos/{o}/{r}`).
async fn default_branch(gh: &GitHub) -> Result<String, ExitError> {
    Ok(gh.repository().await?.default_branch)
}

/// The PR body: explanation, verify result, rounds, tokens and USD, files, refused entries.
/// Untrusted text (the model's explanation, paths, reasons) is defanged.
fn pr_body(run: &Prepared, o: &Outcome, spec: Option<&VerifySpec>, verified: Option<bool>) -> String {
    use crate::output::markdown::defang;
    let n = run.subject.number;
    let mut s = String::new();
    if n > 0 {
        s.push_str(&if verified == Some(true) { format!("Fixes #{n}\n\n") } else { format!("Refs #{n}\n\n") });
    }
    if let (Some(from), Some(p)) = (&run.fork, &run.pr) {
        s.push_str(&format!(
            "This draft starts at the head of #{} from the fork `{}` ({}), so it also carries that pull request's commits; merging it supersedes #{}.\n\n",
            p.number,
            defang(&one_line(from)),
            p.head_sha.get(..12).unwrap_or(&p.head_sha),
            p.number
        ));
    }
    s.push_str("### What changed\n\n");
    s.push_str(&defang(if o.explanation.is_empty() { "(the model gave no explanation)" } else { &o.explanation }));
    s.push_str("\n\n### Verification\n\n");
    match (spec, &o.verify) {
        (Some(spec), Some(v)) => {
            s.push_str(&format!("`{}` {}.\n", defang(&spec.display), v.describe(spec.timeout)));
            if !v.passed() {
                s.push_str("\n**Not verified**: review the change carefully.\n");
            }
        }
        (Some(spec), None) => {
            s.push_str(&format!("`{}` was not run (no change was applied).\n", defang(&spec.display)))
        }
        (None, _) => s.push_str("**Unverified**: no `fix.verify` command is configured.\n"),
    }
    s.push_str(&format!(
        "\n### Run\n\n- rounds: {}\n- tokens: {} in, {} out\n- cost: {}\n- files changed: {}\n",
        o.rounds,
        o.usage.total_input(),
        o.usage.output_tokens,
        o.cost_usd.map_or("unknown (unpriced model)".into(), |c| format!("${c:.4}")),
        o.changes.len()
    ));
    for c in &o.changes {
        let what = match (&c.before, &c.after) {
            (None, _) => "added",
            (_, None) => "deleted",
            _ => "modified",
        };
        s.push_str(&format!("  - `{}` ({what})\n", defang(&c.path)));
    }
    if !o.refused.is_empty() {
        s.push_str("\n### Refused edits\n\n");
        for (round, r) in &o.refused {
            s.push_str(&format!(
                "- round {round}, {} of `{}`: {}\n",
                r.entry,
                defang(&one_line(&r.path)),
                defang(&one_line(&r.reason))
            ));
        }
    }
    if !o.notes.is_empty() {
        s.push_str("\n### Notes\n\n");
        for note in &o.notes {
            s.push_str(&format!("- {}\n", defang(&one_line(note))));
        }
    }
    s.push_str("\nThis draft was written by a model and applied by agentctl; commands in the issue or the answer were not run.\n");
    s
}

/// `s` on one line, at most 120 characters.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(120).collect()
}

/// A branch-name slug of `title`: lowercase ASCII letters and digits joined by `-`, at most 40
/// characters, `fix` when nothing is left.
fn slug(title: &str) -> String {
    let mut s = String::new();
    for word in title.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if s.len() + word.len() + 1 > 40 {
            break;
        }
        if !s.is_empty() {
            s.push('-');
        }
        s.push_str(&word.to_ascii_lowercase());
    }
    if s.is_empty() {
        "fix".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_slugs_are_safe_and_short() {
        assert_eq!(slug("Crash on `--dry-run` with CRLF!"), "crash-on-dry-run-with-crlf");
        assert_eq!(slug("../../etc/passwd; rm -rf /"), "etc-passwd-rm-rf");
        assert_eq!(slug("日本語"), "fix");
        assert!(slug(&"word ".repeat(50)).len() <= 40);
        // Every slug makes a branch the fix marker accepts.
        for t in ["a b", "日本語", "x/../y"] {
            let b = format!("agentctl/fix-3-{}", slug(t));
            let m = Marker::new(FIX_MARKER, &[("branch", &b)]).render();
            assert!(Marker::find(&m, FIX_MARKER).is_some(), "{b}");
        }
    }
}
