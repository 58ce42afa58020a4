//! `agentctl fix` (SPEC §3.2, issue #11): the command over [`crate::fix`] on the run's
//! [`Session`]. The decisions where the issue is silent are written in [`crate::fix`].
//!
//! Stages: [`prepare`] (checkout, target, trigger checks, subject, config, provider), the budget
//! gate, the rounds (prompt → answer → apply → verify, fed back), then the checkout is restored
//! and the draft published, then the dry-run print, the outputs and the job summary (through
//! [`output::deliver`]).

use crate::cli::FixArgs;
use crate::config::EditFormat;
use crate::context::target::PrMeta;
use crate::context::Env;
use crate::edit::context::TokenBudget;
use crate::edit::verify::VerifyResult;
use crate::exit::{self, Exit, ExitError};
use crate::fix::publish::{self, Published};
use crate::fix::subject::{self, Request};
use crate::fix::workspace::Workspace;
use crate::fix::{rounds, FixRun};
use crate::ledger::Ledger;
use crate::output::{self, Delivery, Stdout};
use crate::session::Session;
use crate::{edit, log};

/// Runs `agentctl fix`. Returns the exit code; stdout carries the dry-run rendering.
pub async fn run(args: &FixArgs, env: &Env) -> Result<Exit, ExitError> {
    let session =
        Session::start(env, super::model_run(&args.event, &args.config, &args.provider, args.dry_run, &args.ledger))?;
    let Some(mut run) = prepare(args, &session).await? else {
        return Ok(Exit::NothingToDo);
    };

    let ledger = session.ledger(&run.config, Some(run.subject.number).filter(|n| *n > 0), "fix")?;
    let result = fix_with_ledger(&session, &mut run, &ledger).await;
    // `--usage-out` and `--require-state` whatever the run's end: tokens spent by a run that
    // then failed are usage too.
    // Each failure is printed once: as the run's error, or beside the error the run ended with.
    let failures = session.finish(&ledger);
    match result {
        Ok(code) if failures.is_empty() => Ok(code),
        Ok(_) => Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", failures.join("\n")))),
        Err(e) => {
            failures.iter().for_each(|f| log::error(f));
            Err(e)
        }
    }
}

/// Stage 1: the checkout, which issue or PR and who asked, the subject's texts, the config
/// (the PR's base branch on a PR), the provider and the state store. `None`: nothing to do.
async fn prepare(args: &FixArgs, session: &Session<'_>) -> Result<Option<FixRun>, ExitError> {
    let req = Request {
        issue: args.issue,
        pr: args.pr,
        instructions: args.instructions.clone(),
        allow_dirty: args.allow_dirty,
    };
    let root = subject::checkout(req.allow_dirty)?;
    let Some(asked) = subject::asked(&session.ctx, &req) else {
        return Ok(None);
    };
    session.note_dry_run();
    let mut github = session.github()?;
    let graphql = session.graphql()?;
    let found = subject::find(&session.ctx, github.as_ref(), &asked, &req, &root, session.dry_run()).await?;
    let Some(found) = found else {
        return Ok(None);
    };

    // On a PR the config comes from its base branch, never from the checkout (SPEC §2).
    let on_pr_in_actions = session.ctx.in_actions && found.pr.is_some();
    let base_pr = found.pr.as_ref().map(|h| PrMeta {
        number: h.number,
        title: h.title.clone(),
        body: h.body.clone(),
        head_sha: h.head_sha.clone(),
        base_sha: h.base_sha.clone(),
        base_ref: h.base_ref.clone(),
    });
    let config = session.config_for_pr(base_pr.as_ref(), github.as_mut(), on_pr_in_actions).await?;
    if let Some(label) = asked.label {
        if config.fix.label.as_deref() != Some(label) {
            log::info(&format!("label `{label}` is not `fix.label`: nothing to do"));
            return Ok(None);
        }
    }
    let policy = subject::policy(&config.fix.protected_paths, args.config.as_deref(), &root)?;
    let tracked = edit::context::tracked_files(&root).map_err(|e| exit::usage(anyhow::anyhow!("git ls-files: {e}")))?;

    let provider = session.provider(&config, None)?;
    Ok(Some(FixRun {
        root,
        redactor: session.redactor.clone(),
        dry_run: session.dry_run(),
        github,
        graphql,
        subject: found.subject,
        pr: found.pr,
        fork: found.fork,
        config,
        provider,
        policy,
        tracked,
    }))
}

/// Stages 2 to 5 with the run's ledger: the budget gate, the rounds, the clean-up, publish (or
/// the dry-run print), then outputs and the job summary.
async fn fix_with_ledger(session: &Session<'_>, run: &mut FixRun, ledger: &Ledger) -> Result<Exit, ExitError> {
    let env = session.env();
    let whole = run.config.fix.edit_format == EditFormat::Whole;
    let system = crate::prompt::fix_system_prompt(
        whole,
        edit::Limits::from_config(&run.config.fix).whole_file_max_bytes,
        run.config.fix.instructions.as_deref(),
    );
    let budget =
        TokenBudget { max_tokens: run.config.fix.max_context_tokens, counting: run.config.review.token_counting };

    // The budget gate before the first model call, on the first round's prompt.
    let (name, model) = (session.args().provider.as_deref(), session.args().model.as_deref());
    let estimate = || {
        let first = edit::context::build(&run.root, &run.subject, &run.tracked, &[], None, budget, &run.redactor);
        let overhead = budget.counting.count(&system) + budget.counting.count(crate::prompt::FIX_SCHEMA);
        crate::estimate::fix(&run.config, first.tokens + overhead, name, model)
    };
    if !session.gate(&run.config, "fix", &mut run.provider, estimate)? {
        return Ok(Exit::Budget);
    }
    let chain = run.provider.chain().ok_or_else(|| {
        exit::usage(anyhow::anyhow!(
            "`agentctl fix` needs a model: configure a provider (`provider:` and `providers:` in the config)"
        ))
    })?;

    let spec = edit::verify::VerifySpec::from_config(&run.config.fix);
    let mut ws = Workspace::open(&run.root, run.config.fix.workdir, env)?;
    let result = rounds::rounds(run, &mut ws, &chain, &system, budget, spec.as_ref().map(|s| (s, env)), ledger).await;
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
    let (title, body) = publish::title_and_body(run, &outcome, spec.as_ref());
    let mut published = Published::default();
    let mut stdout = None;
    if run.dry_run {
        let diff = edit::unified_diff(&outcome.changes);
        stdout = Some(Stdout::Text(run.redactor.redact(&format!("{diff}\n---\n{title}\n\n{body}\n"))));
    } else if let Some(gh) = &run.github {
        published = publish::publish(gh, run, &outcome, &title, &body, verified == Some(true)).await?;
    }

    let outputs = vec![
        ("pr-url".to_string(), published.pr_url.clone()),
        ("branch".to_string(), published.branch.clone()),
        ("verified".to_string(), verified.map_or("none".into(), |v| v.to_string())),
        ("rounds".to_string(), outcome.rounds.to_string()),
        ("files-changed".to_string(), outcome.changes.len().to_string()),
        ("cost-usd".to_string(), outcome.cost_usd.map_or("unknown".into(), |c| format!("{c:.6}"))),
    ];
    let summary = format!("## {}\n\n{body}\n", output::markdown::defang(&title));
    let outputs = outputs.into_iter().map(|(k, v)| (k, run.redactor.redact(&v))).collect();
    let delivery = Delivery {
        stdout,
        outputs: Some(outputs),
        summary: Some(run.redactor.redact(&summary)),
        ..Delivery::default()
    };
    // The failures are the run's error, printed once by `main`.
    let failures: Vec<String> = output::deliver(env, delivery).iter().map(ToString::to_string).collect();
    if failures.is_empty() {
        Ok(Exit::Ok)
    } else {
        Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", failures.join("\n"))))
    }
}
