//! `agentctl review`: the main job (SPEC §3.1), orchestration only. The run session
//! ([`crate::session`]) gives the context, token, redactor, GitHub client, base-branch config,
//! store, provider, budget gate and ledger; the review's own stages live in [`crate::review`].
//!
//! Stages:
//! 1. [`prepare`]: which PR, who triggered it, the config (from the base branch), the provider
//!    chain, the state store;
//! 2. the diff, read, checked, filtered and narrowed on `synchronize` ([`crate::review::diff`]);
//! 3. builtin rules, the budget gate, then the model ([`crate::review::ask`]);
//! 4. findings placed ([`crate::review::place`]), coverage ([`crate::review::coverage`]);
//! 5. the report posted ([`crate::review::post`]), then every sink
//!    ([`crate::review::outputs`]).

use std::borrow::Cow;
use std::sync::Arc;

use crate::cli::{self, ReviewArgs};
use crate::context::target::{self, Target};
use crate::context::{Env, Event};
use crate::diff::{self, AnchorIndex};
use crate::exit::{self, Exit, ExitError};
use crate::github::publish::{self, Previous};
use crate::log;
use crate::output::markdown::short;
use crate::providers::builtin::{self, RuleOptions};
use crate::review::ask::{self, ModelPass};
use crate::review::cache::ResponseCache;
use crate::review::report::{self, Reviewed};
use crate::review::settings::{DiffSource, Format, ReviewSettings};
use crate::review::{self as domain, coverage, outputs, place, ReviewRun};
use crate::session::Session;

/// The review's inputs from its flags (flags > env, clap resolves both).
fn settings(args: &ReviewArgs) -> ReviewSettings {
    let diff_source = match (&args.diff, &args.base) {
        (Some(f), _) => DiffSource::File(f.clone()),
        (None, Some(b)) => DiffSource::Git(b.clone()),
        (None, None) => DiffSource::Api,
    };
    let format = match args.format {
        cli::Format::Text => Format::Text,
        cli::Format::Json => Format::Json,
        cli::Format::Markdown => Format::Markdown,
        cli::Format::Sarif => Format::Sarif,
    };
    ReviewSettings {
        dry_run: args.dry_run,
        pr: args.pr,
        diff_source,
        fail_on: args.fail_on,
        full: args.full,
        no_cache: args.no_cache,
        sarif: args.sarif.clone(),
        format,
    }
}

/// Runs `agentctl review`. Returns the exit code; stdout carries the dry-run rendering.
pub async fn run(args: &ReviewArgs, env: &Env) -> Result<Exit, ExitError> {
    let settings = settings(args);
    let session =
        Session::start(env, super::model_run(&args.event, &args.config, &args.provider, args.dry_run, &args.ledger))?;
    let Some(mut run) = prepare(&settings, &session).await? else {
        return Ok(Exit::NothingToDo);
    };
    let dry_run = session.dry_run();

    // What earlier runs posted: the summary to update, and whether this head is done.
    let mut previous = Previous::default();
    if let (Some(gh), Some(pr)) = (&run.github, &run.pr) {
        previous = publish::previous(gh, pr.number, &pr.head_sha, &run.config.github.identity, !dry_run).await?;
        // A re-run on a reviewed head (a re-run workflow, a second trigger) stops here: no
        // model call, no new review, the summary left as it is.
        if let Some(url) = &previous.reviewed_head {
            log::info(&format!("head {} was reviewed already ({url}): nothing new to post", short(&pr.head_sha)));
            let failures = outputs::write_skipped_outputs(env, url, &session.redactor);
            return finish(failures, Exit::Ok);
        }
    }

    // 2. Diff.
    let max_diff_bytes = run.config.review.max_diff_bytes;
    let bytes =
        domain::diff::read_diff(&settings.diff_source, run.github.as_ref(), run.pr.as_ref(), max_diff_bytes).await?;
    let head = bytes[..bytes.len().min(60)].to_vec();
    // By value: the bytes become the parsed diff's text buffer, with no copy.
    let parsed = diff::parse_owned(bytes);
    domain::diff::check_diff(&head, &parsed, &settings.diff_source)?;
    let anchors = AnchorIndex::new(&parsed);
    let (mut selected_files, mut skipped) = domain::diff::select_files(&parsed, &run.config)?;
    if selected_files.is_empty() {
        let reasons: Vec<String> = skipped.iter().take(5).map(|s| format!("{} ({})", s.path, s.reason)).collect();
        log::info(&format!(
            "nothing reviewable: every file of the diff is skipped: {}{}",
            reasons.join(", "),
            if skipped.len() > 5 { ", …" } else { "" }
        ));
        return Ok(Exit::NothingToDo);
    }
    // Narrowed (a copy) only on an incremental review; else the parsed diff itself.
    let mut review_diff = Cow::Borrowed(&parsed);
    let incremental_from = domain::diff::narrow_incremental(
        &run,
        &settings,
        &session.ctx.event,
        &previous,
        &mut review_diff,
        &mut selected_files,
        &mut skipped,
    )
    .await?;

    // 3. Builtin rules, then the model.
    let rule_opts = RuleOptions { max_added_lines: run.config.review.max_added_lines };
    let mut findings = builtin::scan(&review_diff, &selected_files, &rule_opts);
    let number = run.pr.as_ref().map(|p| p.number);
    let ledger = session.ledger(&run.config, number, "review")?;
    // The budget gate (crate::budget) before the first model call; no budgets, no estimate.
    if run.provider.chain().is_some() {
        let (pf, mf) = (session.args().provider.as_deref(), session.args().model.as_deref());
        let estimate = || crate::estimate::review(&run.config, &review_diff, &selected_files, pf, mf);
        if !session.gate(&run.config, "review", &mut run.provider, estimate)? {
            return Ok(Exit::Budget);
        }
    }
    let cache = response_cache(&settings, &session, &run)?;
    let asked = match run.provider.chain() {
        Some(chain) => {
            let asked = ask::ask_model(&chain, &run, &review_diff, &selected_files, &ledger, cache.as_ref()).await?;
            findings.extend(asked.findings.iter().cloned());
            asked
        }
        None => ModelPass::builtin_only(&review_diff, &selected_files),
    };
    if run.provider.chain().is_some() && asked.chunks > 0 && asked.failed_chunks == asked.chunks {
        // Decision: a review where every model request failed is not posted (it would claim a
        // review that did not happen); partial failures are posted with the files listed.
        return Err(ExitError::new(
            Exit::Failure,
            anyhow::anyhow!(
                "every model request failed ({} of {}); nothing was posted",
                asked.failed_chunks,
                asked.chunks
            ),
        ));
    }

    // 4–5. Place findings; who was reviewed.
    let placed = place::place_findings(findings, &anchors, run.config.review.max_inline_comments);
    let (files_reviewed, partly_reviewed, not_reviewed) =
        coverage::coverage(&review_diff, &selected_files, &skipped, &asked);
    let reviewed =
        Reviewed { findings: placed, files_reviewed, partly_reviewed, not_reviewed, asked, incremental_from };
    let mut report = report::build(&run, &session.ctx, dry_run, &ledger, reviewed);

    // 6. Post, then every sink.
    domain::post(&mut report, &run, &previous, dry_run, &session.redactor).await?;
    let mut failures = outputs::deliver(env, &settings, &report, &session.redactor);
    failures.extend(session.finish(&ledger));
    run.github.take();
    finish(failures, report.exit())
}

/// The run's response cache ([`crate::review::cache`]), or `None`: `--no-cache`, config
/// `cache: off`, `--dry-run`, or no usable state store.
fn response_cache(
    settings: &ReviewSettings,
    session: &Session<'_>,
    run: &ReviewRun,
) -> Result<Option<ResponseCache>, ExitError> {
    let config = &run.config;
    if settings.no_cache || !config.cache.enabled || settings.dry_run {
        return Ok(None);
    }
    Ok(session
        .store(config)?
        .as_ref()
        .ok()
        .map(|store| ResponseCache::new(Arc::clone(store), &config.cache, session.ctx.repository.as_ref())))
}

/// Ends the run: `exit` when every sink was written, else exit 1 naming each failed sink.
fn finish(failures: Vec<String>, exit: Exit) -> Result<Exit, ExitError> {
    if failures.is_empty() {
        return Ok(exit);
    }
    Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", failures.join("\n"))))
}

/// Stage 1 (the session has read the event and the token, and masked the secrets): which PR
/// and who asked, the GitHub client, the PR's metadata, the config (base branch), the state
/// store and the provider chain. `None` when there is nothing to do (a comment that is not our
/// command, or from someone not allowed).
async fn prepare(settings: &ReviewSettings, session: &Session<'_>) -> Result<Option<ReviewRun>, ExitError> {
    let ctx = &session.ctx;
    let number = match target::find_target(ctx, settings.pr, "review", true) {
        Target::Number(n) => Some(n),
        Target::None => None,
        Target::NotACommand => {
            log::info("the comment is not an `/agentctl review` command on a pull request: nothing to do");
            return Ok(None);
        }
    };
    // Bots are refused before anything else; the association check needs the config.
    if let Some(why) = target::trigger_refusal(ctx, "review", &[]).filter(|w| w.contains("bot")) {
        log::info(&why);
        return Ok(None);
    }
    session.note_dry_run();
    let no_token = session.token().is_none();
    if settings.diff_source == DiffSource::Api && (no_token || number.is_none() || ctx.repository.is_none()) {
        return Err(exit::usage(anyhow::anyhow!(
            "no diff to review: pass --diff FILE (or -), or --base REF in a git checkout, or run on a pull request with GITHUB_TOKEN set"
        )));
    }
    let mut github = session.github()?;
    let pr = match number {
        Some(n) => publish::resolve_pr(ctx, n, github.as_ref()).await?,
        None => None,
    };

    // The base branch's config; its write spacing applies unless the env var sets one.
    let pr_event_in_actions = ctx.in_actions && matches!(ctx.event, Event::PullRequest(_));
    let config = session.config_for_pr(pr.as_ref(), github.as_mut(), pr_event_in_actions).await?;
    if let Some(why) = target::trigger_refusal(ctx, "review", &config.review.allowed_associations) {
        log::info(&why);
        return Ok(None);
    }
    let fail_on = settings.fail_on.unwrap_or(config.review.fail_on).severity();

    // The state store (the breaker's memory and the ledger), then the provider: its keys
    // registered with the redactor and masked before any request.
    session.store(&config)?;
    let provider = session.provider(&config, None)?;
    if provider.chain().is_some() {
        crate::diff::chunk::warm_up(config.review.token_counting);
    }
    Ok(Some(ReviewRun { github, pr, config, fail_on, provider }))
}
