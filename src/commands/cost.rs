//! `agentctl cost report|check|estimate|export|import` (SPEC §3.4). The arguments are resolved first (bad
//! dates, budgets: exit 2 before the store is opened); the domain logic is
//! [`crate::usage::report`], [`crate::budget`] and [`crate::estimate`], rendering is
//! [`crate::output::cost`].

use std::path::Path;

use anyhow::Context as _;

use crate::actions::{self, Annotation, AnnotationLevel};
use crate::budget::{self, BudgetConfig, BudgetState, Evaluation, Period, RunScope};
use crate::cli::{
    CostAction, CostArgs, CostCheckArgs, CostCommonArgs, CostEstimateArgs, CostExportArgs, CostFormat, CostGroupBy,
    CostImportArgs, CostPeriod, CostReportArgs,
};
use crate::config::{Config, DEFAULT_PATH};
use crate::context::Env;
use crate::diff::{self, FileFilter};
use crate::env_vars as ev;
use crate::estimate;
use crate::exit::{self, Exit, ExitError};
use crate::log;
use crate::output;
use crate::store::{self, Location, Origin, Store};
use crate::usage::report::{self, GroupBy, Report, ReportQuery, DAY_MS};

/// Runs a `cost` action.
pub async fn run(args: &CostArgs, env: &Env) -> Result<Exit, ExitError> {
    match &args.action {
        CostAction::Report(a) => report(a, env),
        CostAction::Check(a) => check(a, env),
        CostAction::Estimate(a) => estimate(a, env).await,
        CostAction::Export(a) => export(a, env),
        CostAction::Import(a) => import(a, env).await,
    }
}

/// The config: `--config`/`AGENTCTL_CONFIG`, else `.github/agentctl.yml` when it exists, else
/// the defaults. `cost` reads the ledger, not a PR, so the base-branch rule of `review` has
/// nothing to protect here.
fn load_config(common: &CostCommonArgs) -> Result<Config, ExitError> {
    match &common.config {
        Some(path) => Ok(Config::from_path(path)?),
        None if Path::new(DEFAULT_PATH).is_file() => Ok(Config::from_path(Path::new(DEFAULT_PATH))?),
        None => Ok(Config::default()),
    }
}

/// The ledger's location: `--state` > `AGENTCTL_STATE` > config `state` > the default file.
/// A file path or a PostgreSQL URL; a URL given to `--state` may not hold a password.
fn ledger_location(common: &CostCommonArgs, config: &Config, env: &Env) -> Result<Location, ExitError> {
    match &common.state {
        Some(flag) => Ok(Location::parse(flag, Origin::Flag, env)?),
        None => Ok(store::resolve(env, config.state.as_deref())?.ok_or(store::StoreError::NoPath)?),
    }
}

/// The ledger to read, or `None` when its file does not exist yet (nothing was ever recorded;
/// a read-only command does not create it). A PostgreSQL ledger is always connected to.
fn open_ledger(common: &CostCommonArgs, config: &Config, env: &Env) -> Result<Option<Store>, ExitError> {
    let location = ledger_location(common, config, env)?;
    if !location.may_hold_state() {
        log::debug(&format!("state store {} does not exist: no usage recorded", location.name()));
        return Ok(None);
    }
    Ok(Some(Store::open_location(&location)?))
}

fn group_by(g: CostGroupBy) -> GroupBy {
    match g {
        CostGroupBy::Day => GroupBy::Day,
        CostGroupBy::Model => GroupBy::Model,
        CostGroupBy::Provider => GroupBy::Provider,
        CostGroupBy::Repo => GroupBy::Repo,
        CostGroupBy::Workflow => GroupBy::Workflow,
        CostGroupBy::Task => GroupBy::Task,
        CostGroupBy::Pr => GroupBy::Pr,
    }
}

/// `--since`/`--until` into the report window. A date given to `--until` includes that day.
fn report_query(a: &CostReportArgs, now_ms: i64) -> Result<ReportQuery, ExitError> {
    let since_ms =
        report::parse_time(&a.since, now_ms).map_err(|e| exit::usage(anyhow::Error::new(e).context("--since")))?;
    let until_ms = match &a.until {
        None => None,
        Some(u) => {
            let t = report::parse_time(u, now_ms).map_err(|e| exit::usage(anyhow::Error::new(e).context("--until")))?;
            Some(if report::parse_date(u.trim()).is_some() { t + DAY_MS } else { t })
        }
    };
    if let Some(until) = until_ms.filter(|u| *u <= since_ms) {
        return Err(exit::usage(anyhow::anyhow!(
            "--until ({}) is not after --since ({})",
            report::format_time(until),
            report::format_time(since_ms)
        )));
    }
    Ok(ReportQuery {
        since_ms,
        until_ms,
        group_by: group_by(a.group_by),
        repo: a.repo.clone(),
        workflow: a.workflow.clone(),
        task: None,
    })
}

/// Prints a text (fenced in Actions when it could hold a workflow command: model names come
/// from imports and providers).
fn print(text: &str) -> Result<(), ExitError> {
    output::stdout(text).context("writing to stdout").map_err(ExitError::from)
}

/// Prints `text` in `format`: JSON made inert without changing its value, the rest as [`print`].
fn print_as(format: CostFormat, text: &str) -> Result<(), ExitError> {
    match format {
        CostFormat::Json => output::stdout_json(text).context("writing to stdout").map_err(ExitError::from),
        _ => print(text),
    }
}

/// `cost report`: aggregate, render, print; with `--summary` also append the markdown to
/// `GITHUB_STEP_SUMMARY`. An empty window prints "no usage recorded since …" and exits 0.
fn report(a: &CostReportArgs, env: &Env) -> Result<Exit, ExitError> {
    let query = report_query(a, crate::clock::now_ms())?;
    let config = load_config(&a.common)?;
    let prices = a.reprice.then(|| estimate::price_table(&config));
    let rows = match (open_ledger(&a.common, &config, env)?, &prices) {
        (Some(store), None) => store.usage_report(&query)?,
        (Some(store), Some(prices)) => report::reprice(store.usage_report_per_model(&query)?, prices),
        (None, _) => Vec::new(),
    };
    let mut report = Report::new(&query, rows);
    if let Some(prices) = prices {
        log::info(&format!(
            "costs re-priced with the price table of {} (bundled + config `pricing:`); provider-reported costs kept; the ledger is unchanged",
            prices.effective_date
        ));
        report.repriced_with = Some(prices.effective_date);
    }
    if report.is_empty() {
        let line = output::cost::empty(&report);
        print(&line)?;
        if a.summary {
            write_summary(env, &line)?;
        }
        return Ok(Exit::Ok);
    }
    let text = match a.format {
        CostFormat::Table => output::cost::table(&report),
        CostFormat::Json => output::cost::json(&report),
        CostFormat::Csv => output::cost::csv(&report),
        CostFormat::Markdown => output::cost::markdown(&report),
    };
    print_as(a.format, &text)?;
    if a.summary {
        write_summary(env, &output::cost::markdown(&report))?;
    }
    Ok(Exit::Ok)
}

fn write_summary(env: &Env, markdown: &str) -> Result<(), ExitError> {
    match env.get(ev::GITHUB_STEP_SUMMARY) {
        Some(path) => actions::write_step_summary(Path::new(path), markdown)
            .with_context(|| format!("cannot write the job summary to GITHUB_STEP_SUMMARY ({path})"))
            .map_err(ExitError::from),
        None => {
            log::warn("--summary: GITHUB_STEP_SUMMARY is not set (not in GitHub Actions?); nothing appended");
            Ok(())
        }
    }
}

/// `cost check`: evaluate `--budget-usd` (over all usage) or the config's `budgets:`, print the
/// evaluations, write `budget-state`, `spent-usd`, `limit-usd`, `remaining-usd` of the worst one
/// to `GITHUB_OUTPUT`, annotate, and exit 5 past a hard limit.
fn check(a: &CostCheckArgs, env: &Env) -> Result<Exit, ExitError> {
    let budgets = match a.budget_usd {
        Some(limit) => {
            let period = match a.period {
                CostPeriod::Day => Period::Day,
                CostPeriod::Week => Period::Week,
                CostPeriod::Month => Period::Month,
            };
            let b = BudgetConfig::all(limit, period);
            b.validate().map_err(|e| exit::usage(anyhow::Error::new(e).context("--budget-usd")))?;
            (vec![b], load_config(&a.common)?)
        }
        None => {
            let config = load_config(&a.common)?;
            for (i, b) in config.budgets.iter().enumerate() {
                b.validate().map_err(|e| exit::usage(anyhow::Error::new(e).context(format!("config budgets[{i}]"))))?;
            }
            (config.budgets.clone(), config)
        }
    };
    let (budgets, config) = budgets;
    if budgets.is_empty() {
        log::info("no budget configured (config `budgets:` or --budget-usd): nothing to check");
        return Ok(Exit::NothingToDo);
    }
    let run = RunScope {
        repo: env.get(ev::GITHUB_REPOSITORY).map(str::to_owned),
        workflow: env.get(ev::GITHUB_WORKFLOW).map(str::to_owned),
        task: None,
    };
    let evals = match open_ledger(&a.common, &config, env)? {
        Some(store) => budget::evaluate(&store, &budgets, &run, false, crate::clock::now_ms(), 0.0)?,
        None => {
            let empty = Store::open_in_memory()?;
            budget::evaluate(&empty, &budgets, &run, false, crate::clock::now_ms(), 0.0)?
        }
    };
    let text = match a.format {
        CostFormat::Json => output::cost::check_json(&evals),
        _ => output::cost::check_table(&evals),
    };
    print_as(a.format, &text)?;
    let Some(worst) = budget::worst(&evals) else {
        log::info("no budget applies (scoped budgets without `match` need GITHUB_REPOSITORY / GITHUB_WORKFLOW)");
        return Ok(Exit::NothingToDo);
    };
    let in_actions = env.get(ev::GITHUB_ACTIONS) == Some("true");
    for e in evals.iter().filter(|e| e.state != BudgetState::Ok) {
        annotate(e, in_actions);
    }
    if let Some(path) = env.get(ev::GITHUB_OUTPUT) {
        actions::write_outputs(Path::new(path), &budget::outputs(worst))
            .with_context(|| format!("cannot write step outputs to GITHUB_OUTPUT ({path})"))?;
    }
    if worst.state == BudgetState::Hard {
        return Err(ExitError::new(Exit::Budget, anyhow::anyhow!("budget exceeded: {}", summary_line(worst))));
    }
    Ok(Exit::Ok)
}

fn summary_line(e: &Evaluation) -> String {
    format!(
        "{} spent ${:.2} of ${:.2} since {}",
        e.label,
        e.spent_usd + e.estimate_usd,
        e.limit_usd,
        report::format_time(e.period_start_ms)
    )
}

/// A `::warning::` (soft) or `::error::` (hard) annotation in Actions; a log line elsewhere.
fn annotate(e: &Evaluation, in_actions: bool) {
    let (level, title) = match e.state {
        BudgetState::Hard => (AnnotationLevel::Error, "budget exceeded"),
        _ => (AnnotationLevel::Warning, "budget soft limit"),
    };
    let message = format!(
        "{} ({:.0} % of the limit; soft ratio {:.0} %)",
        summary_line(e),
        if e.limit_usd > 0.0 { 100.0 * (e.spent_usd + e.estimate_usd) / e.limit_usd } else { 100.0 },
        100.0 * e.budget.soft_ratio
    );
    if in_actions {
        let a = Annotation { level, title: Some(title.into()), file: None, line: None, end_line: None, message };
        log::workflow_command(&actions::annotation_command(&a));
    } else if level == AnnotationLevel::Error {
        log::error(&format!("{title}: {message}"));
    } else {
        log::warn(&format!("{title}: {message}"));
    }
}

/// `cost estimate`: read the diff (file, stdin, git, or a PR through the API) with `review`'s
/// `review.max_diff_bytes` cap (over it: exit 2 naming the size and the key), keep the files
/// `review.include`/`exclude` keep, pack them with `review`'s chunker and price the requests
/// with the configured provider's model. No provider is contacted.
async fn estimate(a: &CostEstimateArgs, env: &Env) -> Result<Exit, ExitError> {
    let config = load_config(&a.common)?;
    // The same cap as `review` (a diff it would refuse has no cost to estimate): a file or stdin
    // is never read past it; git and API diffs are checked once in memory.
    let limit = config.review.max_diff_bytes;
    let bytes = match (&a.diff, &a.base, a.pr) {
        (Some(file), _, _) => diff::limit::read_named(file, limit).map_err(exit::usage)?,
        (None, Some(base), _) => {
            let bytes = diff::source::git_diff(base).map_err(exit::usage)?;
            diff::check_size(bytes.len() as u64, limit, &format!("git diff {base}...HEAD")).map_err(exit::usage)?;
            bytes
        }
        (None, None, Some(n)) => {
            let bytes = pr_diff(n, env).await?;
            diff::check_size(bytes.len() as u64, limit, &format!("pull request #{n}")).map_err(exit::usage)?;
            bytes
        }
        (None, None, None) => {
            return Err(exit::usage(anyhow::anyhow!(
                "no diff to estimate\nhelp: pass --diff FILE (or -), --base REF, or --pr N"
            )))
        }
    };
    let parsed = diff::parse(&bytes);
    if parsed.files.is_empty() {
        return Err(exit::usage(anyhow::anyhow!(
            "the input is not a unified diff (no file header)\nhelp: pass the output of `git diff` or a PR's `.diff`"
        )));
    }
    let filter = FileFilter::new(&config.review.include, &config.review.exclude)
        .map_err(|e| exit::usage(anyhow::anyhow!("review.include/exclude: {e}")))?;
    let selected: Vec<usize> = (0..parsed.files.len()).filter(|&i| filter.check(&parsed.files[i]).is_none()).collect();
    let e = estimate::review(&config, &parsed, &selected, a.provider.as_deref(), a.model.as_deref());
    let text = match a.format {
        CostFormat::Json => output::cost::estimate_json(&e),
        _ => output::cost::estimate_table(&e),
    };
    print_as(a.format, &text)?;
    Ok(Exit::Ok)
}

/// A PR's diff through the GitHub API (`GH_TOKEN`, else `GITHUB_TOKEN`; `GITHUB_REPOSITORY`).
async fn pr_diff(number: u64, env: &Env) -> Result<Vec<u8>, ExitError> {
    let ctx = crate::context::Context::load(env, None, None)?;
    let token = crate::github::token_from_env(env)?;
    let (Some(token), Some(repo)) = (token, ctx.repository.as_ref()) else {
        return Err(exit::usage(anyhow::anyhow!(
            "--pr needs GITHUB_TOKEN and GITHUB_REPOSITORY\nhelp: or pass --diff FILE / --base REF"
        )));
    };
    let gh =
        crate::github::GitHub::new(&ctx.api_url, &token, &repo.owner, &repo.name, std::time::Duration::from_secs(1))?;
    Ok(gh.pull_diff(number).await?)
}

/// `cost export`: every record since `--since` (default: all) as JSON Lines on stdout, streamed.
fn export(a: &CostExportArgs, env: &Env) -> Result<Exit, ExitError> {
    let since_ms = match &a.since {
        Some(s) => report::parse_time(s, crate::clock::now_ms())
            .map_err(|e| exit::usage(anyhow::Error::new(e).context("--since")))?,
        None => i64::MIN,
    };
    let config = load_config(&a.common)?;
    let Some(store) = open_ledger(&a.common, &config, env)? else {
        log::info("no usage recorded yet: nothing to export");
        return Ok(Exit::Ok);
    };
    let mut out = output::stdout_buffered();
    let n = store.export_usage(since_ms, |id, r| {
        use std::io::Write as _;
        out.write_all(output::inert_json(&crate::usage::jsonl::to_line(id, r)).as_bytes())
    })?;
    std::io::Write::flush(&mut out).context("writing to stdout")?;
    log::info(&format!("exported {n} usage record(s)"));
    Ok(Exit::Ok)
}

/// `cost import FILE…|-`: each file parsed whole first, then inserted in one transaction; ids
/// already in the ledger are counted as duplicates and skipped. A bad line stops the import at
/// that file (exit 2, its line number named); files before it stay imported.
/// `--from-artifacts` takes the files from workflow run artifacts instead ([`import_artifacts`]).
async fn import(a: &CostImportArgs, env: &Env) -> Result<Exit, ExitError> {
    let config = load_config(&a.common)?;
    let location = ledger_location(&a.common, &config, env)?;
    if a.from_artifacts {
        return import_artifacts(a, env, &location).await;
    }
    let store = Store::open_location(&location)?;
    let mut counts = ImportCounts::default();
    // On a terminal: a bar over the records, whose total grows as each file is parsed.
    let progress = crate::progress::Progress::bar(0, "importing", "records");
    for file in &a.files {
        let bytes = diff::source::read_file(file).map_err(exit::usage)?;
        let name = if file == "-" { "stdin" } else { file.as_str() };
        let text = String::from_utf8(bytes)
            .map_err(|_| exit::usage(anyhow::anyhow!("{name} is not UTF-8 text; nothing imported from it")))?;
        import_text(&store, &text, name, &mut counts, &progress)?;
    }
    drop(progress);
    print(&format!("imported {} usage record(s); {} already present (skipped)", counts.added, counts.present))?;
    Ok(Exit::Ok)
}

/// Records added and already present over an import.
#[derive(Debug, Default)]
struct ImportCounts {
    added: usize,
    present: usize,
}

/// Parses `text` (all or nothing) and imports it in one transaction, adding to `counts`.
fn import_text(
    store: &Store,
    text: &str,
    name: &str,
    counts: &mut ImportCounts,
    progress: &crate::progress::Progress,
) -> Result<(), ExitError> {
    let records = crate::usage::jsonl::parse(text, name).map_err(exit::usage)?;
    progress.inc_length(records.len() as u64);
    let (added, present) = store.import_usage(&records)?;
    progress.inc(records.len() as u64);
    progress.set_message(name.to_owned());
    log::info(&format!("{name}: {added} record(s) added, {present} already in the ledger"));
    counts.added += added;
    counts.present += present;
    Ok(())
}

/// `cost import --from-artifacts`: list the repository's artifacts named `--name` (created since
/// `--since`), download each zip (the storage URL without our token), and import every `.jsonl`
/// in it with the idempotent import — so a nightly job can re-run over the same artifacts and
/// add nothing twice. Expired artifacts, and those of runs of a fork's code (attacker-written),
/// are skipped and counted.
async fn import_artifacts(a: &CostImportArgs, env: &Env, location: &Location) -> Result<Exit, ExitError> {
    let since_ms = match &a.since {
        Some(s) => Some(
            report::parse_time(s, crate::clock::now_ms())
                .map_err(|e| exit::usage(anyhow::Error::new(e).context("--since")))?,
        ),
        None => None,
    };
    let (token, _redactor) = crate::github::token_and_redactor(env)?;
    let ctx = crate::context::Context::load(env, None, None)?;
    let repo = match &a.repo {
        Some(r) => Some(r.clone()),
        None => ctx.repository.as_ref().map(|r| r.to_string()),
    };
    let (Some(token), Some(repo)) = (token, repo) else {
        return Err(exit::usage(anyhow::anyhow!(
            "--from-artifacts needs GITHUB_TOKEN (with `actions: read`) and --repo or GITHUB_REPOSITORY"
        )));
    };
    let Some((owner, name)) = repo.split_once('/').filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(exit::usage(anyhow::anyhow!("--repo `{repo}` is not OWNER/NAME")));
    };
    let gh = crate::github::GitHub::new(&ctx.api_url, &token, owner, name, std::time::Duration::from_secs(1))?;
    let store = Store::open_location(location)?;
    // A glob (`agentctl-usage-*`, for names unique per run) lists every artifact and matches
    // here; a plain name is filtered by the API.
    let is_glob = a.name.contains(['*', '?', '[', '{']);
    let pattern = globset::Glob::new(&a.name)
        .map_err(|e| exit::usage(anyhow::anyhow!("--name `{}` is not a valid glob: {e}", a.name)))?
        .compile_matcher();
    let artifacts = gh.artifacts((!is_glob).then_some(a.name.as_str())).await?;
    let (mut counts, mut expired, mut older, mut forks, mut read) = (ImportCounts::default(), 0, 0, 0, 0);
    let progress = crate::progress::Progress::bar(0, "importing", "records");
    for art in artifacts.iter().filter(|art| if is_glob { pattern.is_match(&art.name) } else { art.name == a.name }) {
        let created_ms = art
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        if let (Some(since), Some(created)) = (since_ms, created_ms) {
            if created < since {
                older += 1;
                continue;
            }
        }
        let label = match &art.workflow_run {
            Some(run) => format!("artifact {} (run {})", art.id, run.id),
            None => format!("artifact {}", art.id),
        };
        // A fork's workflow run ran the fork's code: its "usage" is attacker-written and could
        // pre-empt real ids or trip a budget. Skipped, and said.
        if art.workflow_run.as_ref().is_some_and(|r| r.is_from_fork()) {
            forks += 1;
            log::warn(&format!("{label}: uploaded by a run of a fork's code; not imported"));
            continue;
        }
        if art.expired {
            expired += 1;
            log::info(&format!("{label}: expired, skipped"));
            continue;
        }
        let zip = match gh.download_artifact(art.id).await? {
            crate::github::artifacts::Download::Zip(bytes) => bytes,
            crate::github::artifacts::Download::Gone => {
                expired += 1;
                log::info(&format!("{label}: gone (expired), skipped"));
                continue;
            }
        };
        let files = crate::usage::jsonl::jsonl_in_zip(&zip, &label).map_err(exit::usage)?;
        for (entry, text) in files {
            import_text(&store, &text, &format!("{label}/{entry}"), &mut counts, &progress)?;
        }
        read += 1;
    }
    drop(progress);
    let mut line = format!(
        "imported {} usage record(s); {} already present (skipped); from {read} artifact(s) named {}; {expired} expired (skipped)",
        counts.added, counts.present, a.name
    );
    if older > 0 {
        line.push_str(&format!("; {older} older than --since"));
    }
    if forks > 0 {
        line.push_str(&format!("; {forks} from fork runs (skipped)"));
    }
    print(&line)?;
    Ok(Exit::Ok)
}
