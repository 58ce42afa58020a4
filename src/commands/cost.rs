//! `agentctl cost report|check|estimate|export|import` (SPEC §3.4). Arguments are resolved first (bad dates,
//! budgets: exit 2 before the store is opened); the domain logic is [`crate::usage::report`], [`crate::budget`],
//! [`crate::estimate`], [`crate::telemetry::backfill`]; rendering [`crate::output::cost`].

use crate::budget::{self, BudgetConfig, BudgetState, Period, RunScope};
use crate::cli::{
    CostAction, CostArgs, CostCheckArgs, CostCommonArgs, CostEstimateArgs, CostExportArgs, CostExportFormat,
    CostFormat, CostImportArgs, CostPeriod, CostReportArgs,
};
use crate::config::{self, Config};
use crate::context::{Context, Env, Repo};
use crate::diff;
use crate::env_vars as ev;
use crate::estimate;
use crate::exit::{self, Exit, ExitError};
use crate::ledger::import;
use crate::log;
use crate::output::{self, Delivery, Stdout};
use crate::session::client;
use crate::store::{self, Location, Store};
use crate::telemetry::backfill;
use crate::usage::report::{self, Report, ReportQuery};

/// Write spacing of `cost`'s GitHub clients, which only read (`--pr`, `--from-artifacts`).
const READS: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a `cost` action.
pub async fn run(args: &CostArgs, env: &Env) -> Result<Exit, ExitError> {
    match &args.action {
        CostAction::Report(a) => report(a, env),
        CostAction::Check(a) => check(a, env),
        CostAction::Estimate(a) => estimate(a, env).await,
        CostAction::Export(a) => export(a, env).await,
        CostAction::Import(a) => import(a, env).await,
    }
}

/// The config: `--config`/`AGENTCTL_CONFIG`, else `.github/agentctl.yml` when it exists, else
/// the defaults. `cost` reads the ledger, not a PR, so the base-branch rule of `review` has
/// nothing to protect here.
fn load_config(common: &CostCommonArgs) -> Result<Config, ExitError> {
    let (config, _) = config::load_local(common.config.as_deref())?;
    crate::telemetry::configure(&config.telemetry);
    Ok(config)
}

/// The ledger's location ([`store::locate`]): `--state` > `AGENTCTL_STATE` > config `state` >
/// the default file.
fn ledger_location(common: &CostCommonArgs, config: &Config, env: &Env) -> Result<Location, ExitError> {
    Ok(store::locate(common.state.as_deref(), env, config.state.as_deref())?)
}

/// The ledger to read ([`store::open_for_reading`]): `None` when its file does not exist yet.
fn open_ledger(common: &CostCommonArgs, config: &Config, env: &Env) -> Result<Option<Store>, ExitError> {
    Ok(store::open_for_reading(&ledger_location(common, config, env)?)?)
}

/// `--since`/`--until` into the report window ([`report::window`]; exit 2 when they make none).
fn report_query(a: &CostReportArgs, now_ms: i64) -> Result<ReportQuery, ExitError> {
    let (since_ms, until_ms) = report::window(&a.since, a.until.as_deref(), now_ms).map_err(exit::usage)?;
    Ok(ReportQuery {
        since_ms,
        until_ms,
        group_by: a.group_by.into(),
        repo: a.repo.clone(),
        workflow: a.workflow.clone(),
        task: None,
    })
}

/// `--since` of `cost export|import` as Unix milliseconds ([`report::parse_time`]; exit 2).
fn since(value: &str) -> Result<i64, ExitError> {
    report::parse_time(value, crate::clock::now_ms()).map_err(|e| exit::usage(anyhow::Error::new(e).context("--since")))
}

/// Prints `text`: JSON made inert without changing its value ([`output::stdout_json`]), the
/// rest fenced in Actions when it could hold a workflow command ([`output::stdout`]: model
/// names come from imports and providers).
fn print(text: &str, json: bool) -> Result<(), ExitError> {
    let stdout = if json { Stdout::Json(text.into()) } else { Stdout::Text(text.into()) };
    super::delivered(output::deliver(&Env::default(), Delivery { stdout: Some(stdout), ..Delivery::default() }))
}

/// `cost report`: aggregate, render, print; with `--summary` also append the markdown to
/// `GITHUB_STEP_SUMMARY`. An empty window prints "no usage recorded since …" and exits 0.
fn report(a: &CostReportArgs, env: &Env) -> Result<Exit, ExitError> {
    let query = report_query(a, crate::clock::now_ms())?;
    let config = load_config(&a.common)?;
    let prices = a.reprice.then(|| config.price_table());
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
    let text = match a.format {
        _ if report.is_empty() => output::cost::empty(&report),
        CostFormat::Table => output::cost::table(&report),
        CostFormat::Json => output::cost::json(&report),
        CostFormat::Csv => output::cost::csv(&report),
        CostFormat::Markdown => output::cost::markdown(&report),
    };
    print(&text, a.format == CostFormat::Json && !report.is_empty())?;
    if a.summary {
        let summary = if report.is_empty() { text } else { output::cost::markdown(&report) };
        write_summary(env, &summary)?;
    }
    Ok(Exit::Ok)
}

fn write_summary(env: &Env, markdown: &str) -> Result<(), ExitError> {
    if env.get(ev::GITHUB_STEP_SUMMARY).is_none() {
        log::warn("--summary: GITHUB_STEP_SUMMARY is not set (not in GitHub Actions?); nothing appended");
        return Ok(());
    }
    super::delivered(output::deliver(env, Delivery { summary: Some(markdown.into()), ..Delivery::default() }))
}

/// `cost check`: evaluate `--budget-usd` (over all usage) or the config's `budgets:`, print the
/// evaluations, write `budget-state`, `spent-usd`, `limit-usd`, `remaining-usd` of the worst one
/// to `GITHUB_OUTPUT`, annotate, and exit 5 past a hard limit.
fn check(a: &CostCheckArgs, env: &Env) -> Result<Exit, ExitError> {
    let (budgets, config) = match a.budget_usd {
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
    if budgets.is_empty() {
        log::info("no budget configured (config `budgets:` or --budget-usd): nothing to check");
        return Ok(Exit::NothingToDo);
    }
    let run = RunScope::from_env(env);
    // No ledger yet: evaluated over an empty one.
    let store = match open_ledger(&a.common, &config, env)? {
        Some(store) => store,
        None => Store::open_in_memory()?,
    };
    let evals = budget::evaluate(&store, &budgets, &run, false, crate::clock::now_ms(), 0.0)?;
    let text = match a.format {
        CostFormat::Json => output::cost::check_json(&evals),
        _ => output::cost::check_table(&evals),
    };
    print(&text, a.format == CostFormat::Json)?;
    let Some(worst) = budget::worst(&evals) else {
        log::info("no budget applies (scoped budgets without `match` need GITHUB_REPOSITORY / GITHUB_WORKFLOW)");
        return Ok(Exit::NothingToDo);
    };
    let in_actions = env.get(ev::GITHUB_ACTIONS) == Some("true");
    for e in evals.iter().filter(|e| e.state != BudgetState::Ok) {
        log::annotation(&output::cost::budget_annotation(e), in_actions);
    }
    super::delivered(output::deliver(env, Delivery { outputs: Some(budget::outputs(worst)), ..Delivery::default() }))?;
    if worst.state == BudgetState::Hard {
        return Err(ExitError::new(
            Exit::Budget,
            anyhow::anyhow!("budget exceeded: {}", output::cost::budget_line(worst)),
        ));
    }
    Ok(Exit::Ok)
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
    let (bytes, in_memory) = match (&a.diff, &a.base, a.pr) {
        (Some(file), _, _) => (diff::limit::read_named(file, limit).map_err(exit::usage)?, None),
        (None, Some(base), _) => {
            (diff::source::git_diff(base).map_err(exit::usage)?, Some(format!("git diff {base}...HEAD")))
        }
        (None, None, Some(n)) => (pr_diff(n, env).await?, Some(format!("pull request #{n}"))),
        (None, None, None) => {
            return Err(exit::usage(anyhow::anyhow!(
                "no diff to estimate\nhelp: pass --diff FILE (or -), --base REF, or --pr N"
            )))
        }
    };
    if let Some(what) = in_memory {
        diff::check_size(bytes.len() as u64, limit, &what).map_err(exit::usage)?;
    }
    let mut e = estimate::review_diff(&config, &bytes, a.provider.as_deref(), a.model.as_deref())?;
    if config.cache.enabled && e.provider != "builtin" {
        e.expected_cache_hit_rate = cache_hit_rate(&a.common, &config, env);
    }
    let text = match a.format {
        CostFormat::Json => output::cost::estimate_json(&e),
        _ => output::cost::estimate_table(&e),
    };
    print(&text, a.format == CostFormat::Json)?;
    Ok(Exit::Ok)
}

/// [`estimate::expected_hit_rate`] of the ledger; a ledger that cannot be read is a debug note,
/// not a failure: the estimate stands without it.
fn cache_hit_rate(common: &CostCommonArgs, config: &Config, env: &Env) -> Option<f64> {
    let now = crate::clock::now_ms();
    let rate = open_ledger(common, config, env).map_err(|e| e.to_string()).and_then(|store| {
        store.map_or(Ok(None), |s| estimate::expected_hit_rate(&s, now).map_err(|e| crate::log::error_chain(&e)))
    });
    rate.unwrap_or_else(|why| {
        crate::log::debug(&format!("no response-cache hit rate: {why}"));
        None
    })
}

/// A PR's diff through the GitHub API (`GH_TOKEN`, else `GITHUB_TOKEN`; `GITHUB_REPOSITORY`).
async fn pr_diff(number: u64, env: &Env) -> Result<Vec<u8>, ExitError> {
    let ctx = Context::load(env, None, None)?;
    let token = crate::github::token_from_env(env)?;
    let (Some(token), Some(repo)) = (token, ctx.repository.as_ref()) else {
        return Err(exit::usage(anyhow::anyhow!(
            "--pr needs GITHUB_TOKEN and GITHUB_REPOSITORY\nhelp: or pass --diff FILE / --base REF"
        )));
    };
    Ok(client(&ctx.api_url, &token, Some(repo), READS)?.pull_diff(number).await?)
}

/// `cost export`: records since `--since` as JSON Lines on stdout (streamed), or OTLP ([`backfill`]).
async fn export(a: &CostExportArgs, env: &Env) -> Result<Exit, ExitError> {
    let since_ms = a.since.as_deref().map(since).transpose()?.unwrap_or(i64::MIN);
    let config = load_config(&a.common)?;
    let otlp = (a.format == CostExportFormat::Otlp).then(|| backfill::settings(env, &config.telemetry)).transpose()?;
    let Some(store) = open_ledger(&a.common, &config, env)? else {
        log::info("no usage recorded yet: nothing to export");
        return Ok(Exit::Ok);
    };
    let names = crate::providers::gen_ai_provider_names(&config);
    let done = match otlp {
        Some(s) => backfill::send(&s, env, &store.usage_since(since_ms)?, &names).await?.to_string(),
        None => format!("exported {} usage record(s)", output::cost::export(&store, since_ms)?),
    };
    log::info(&done);
    Ok(Exit::Ok)
}

/// `cost import FILE…|-` ([`import::from_files`]): each file parsed whole, then inserted in one
/// transaction; ids already in the ledger are skipped. A bad line stops the import at that file
/// (exit 2, its line number named); files before it stay imported.
/// `--from-artifacts` takes the files from workflow run artifacts instead ([`import_artifacts`]).
async fn import(a: &CostImportArgs, env: &Env) -> Result<Exit, ExitError> {
    let config = load_config(&a.common)?;
    let location = ledger_location(&a.common, &config, env)?;
    if a.from_artifacts {
        return import_artifacts(a, env, &location).await;
    }
    let store = Store::open_location(&location)?;
    let counts = import::from_files(&store, &a.files)?;
    print(&output::cost::imported(&counts), false)?;
    Ok(Exit::Ok)
}

/// `cost import --from-artifacts` ([`import::from_artifacts`]): the artifacts named `--name`
/// (created since `--since`) of `--repo`, else `GITHUB_REPOSITORY`.
async fn import_artifacts(a: &CostImportArgs, env: &Env, location: &Location) -> Result<Exit, ExitError> {
    let since_ms = a.since.as_deref().map(since).transpose()?;
    let (token, _redactor) = crate::github::token_and_redactor(env)?;
    let ctx = Context::load(env, None, None)?;
    let repo = a.repo.clone().or_else(|| ctx.repository.as_ref().map(|r| r.to_string()));
    let (Some(token), Some(repo)) = (token, repo) else {
        return Err(exit::usage(anyhow::anyhow!(
            "--from-artifacts needs GITHUB_TOKEN (with `actions: read`) and --repo or GITHUB_REPOSITORY"
        )));
    };
    let Some(repo) = Repo::parse(&repo) else {
        return Err(exit::usage(anyhow::anyhow!("--repo `{repo}` is not OWNER/NAME")));
    };
    let gh = client(&ctx.api_url, &token, Some(&repo), READS)?;
    let store = Store::open_location(location)?;
    let counts = import::from_artifacts(&gh, &store, &a.name, since_ms).await?;
    print(&output::cost::imported_artifacts(&counts, &a.name), false)?;
    Ok(Exit::Ok)
}
