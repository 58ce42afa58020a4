//! Budgets (SPEC §3.4): the config's `budgets:` entries and their evaluation against the usage
//! ledger. One module for every caller — `cost check` reports, `review` (and later `fix`) gates
//! a run on it before the first model call, and `route` downgrades past the soft ratio — so the
//! three never disagree about what "over budget" means.
//!
//! A budget sums the priced spend (USD) of the ledger rows in its scope since the start of its
//! current period (UTC day, ISO week starting Monday, calendar month). Unpriced calls add
//! nothing: a budget can only count what has a price, and `cost report` lists them as unpriced.
//!
//! Decision: "past the hard limit" means spent + estimate **above** the limit, or at it once
//! anything was spent; a zero limit thus refuses any priced call but a check with nothing spent
//! is not an error. "Past the soft ratio" means spent + estimate ≥ `soft_ratio · limit_usd`.

use serde::Serialize;

pub(crate) use crate::config::budget::{BudgetConfig, Period, Scope};
use crate::store::{Store, StoreError};
use crate::usage::report::{GroupBy, ReportQuery};

/// Which run a budget is evaluated for: the values a `scope` without `match` stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunScope {
    /// `owner/name` of the run's repository.
    pub repo: Option<String>,
    /// The run's workflow name.
    pub workflow: Option<String>,
    /// The command's task (`review`, `fix`); `None` for `cost check`.
    pub task: Option<String>,
}

/// How far a budget is used, worst last (so `max()` picks the one to act on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Below the soft ratio.
    Ok,
    /// At or past the soft ratio: warn, and downgrade when the budget says so.
    Soft,
    /// Past the hard limit: stop (exit 5).
    Hard,
}

impl BudgetState {
    /// `ok`, `soft` or `hard` (the `budget-state` step output).
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Soft => "soft",
            BudgetState::Hard => "hard",
        }
    }
}

/// One budget evaluated: amounts in USD.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The budget as configured.
    pub budget: BudgetConfig,
    /// What it was evaluated for, e.g. `repo octo/hello per month` or `all usage per day`.
    pub label: String,
    /// Start of the current period, Unix milliseconds.
    pub period_start_ms: i64,
    /// Priced spend in scope since `period_start_ms`, USD.
    pub spent_usd: f64,
    /// What the coming run is estimated to cost, USD (0 for `cost check`).
    pub estimate_usd: f64,
    /// The hard limit, USD.
    pub limit_usd: f64,
    /// `limit - spent - estimate`, USD, never below 0.
    pub remaining_usd: f64,
    /// Where `spent + estimate` stands.
    pub state: BudgetState,
}

/// The state of `spent + estimate` against `limit` with `soft_ratio` (see the module doc).
pub(crate) fn classify(spent_usd: f64, estimate_usd: f64, limit_usd: f64, soft_ratio: f64) -> BudgetState {
    let total = spent_usd + estimate_usd;
    if total > limit_usd || (total >= limit_usd && total > 0.0) {
        BudgetState::Hard
    } else if total > 0.0 && total >= soft_ratio * limit_usd {
        BudgetState::Soft
    } else {
        BudgetState::Ok
    }
}

/// Evaluates every budget that applies to `run` at `now_ms`, with `estimate_usd` (USD) about to
/// be spent. A `match` that names another repo/workflow/task than `run`'s does not apply when
/// `only_this_run` (the gate in `review`); `cost check` passes `false` and sees every budget. A
/// scoped budget without `match` on a run that has no such value (a local run has no workflow)
/// is skipped.
///
/// Errors: [`StoreError`] when the ledger cannot be read.
pub(crate) fn evaluate(
    store: &Store,
    budgets: &[BudgetConfig],
    run: &RunScope,
    only_this_run: bool,
    now_ms: i64,
    estimate_usd: f64,
) -> Result<Vec<Evaluation>, StoreError> {
    let mut out = Vec::new();
    for b in budgets {
        let own = match b.scope {
            Scope::All => None,
            Scope::Repo => run.repo.as_deref(),
            Scope::Workflow => run.workflow.as_deref(),
            Scope::Task => run.task.as_deref(),
        };
        let value = match (b.scope, b.matches.as_deref(), own) {
            (Scope::All, _, _) => None,
            (_, Some(m), Some(own)) if only_this_run && m != own => continue,
            (_, Some(m), _) => Some(m.to_owned()),
            (_, None, Some(own)) => Some(own.to_owned()),
            (_, None, None) => continue,
        };
        let period_start_ms = b.period.start_ms(now_ms);
        let mut query = ReportQuery {
            since_ms: period_start_ms,
            until_ms: None,
            group_by: GroupBy::Day,
            repo: None,
            workflow: None,
            task: None,
        };
        let label = match (b.scope, &value) {
            (Scope::Repo, Some(v)) => {
                query.repo = Some(v.clone());
                format!("repo {v}")
            }
            (Scope::Workflow, Some(v)) => {
                query.workflow = Some(v.clone());
                format!("workflow {v}")
            }
            (Scope::Task, Some(v)) => {
                query.task = Some(v.clone());
                format!("task {v}")
            }
            _ => "all usage".to_owned(),
        };
        let spent_usd = store.spent_usd(&query)?;
        let state = classify(spent_usd, estimate_usd, b.limit_usd, b.soft_ratio);
        out.push(Evaluation {
            budget: b.clone(),
            label: format!("{label} per {}", b.period.as_str()),
            period_start_ms,
            spent_usd,
            estimate_usd,
            limit_usd: b.limit_usd,
            remaining_usd: (b.limit_usd - spent_usd - estimate_usd).max(0.0),
            state,
        });
    }
    Ok(out)
}

/// The evaluation to act on: the worst state, and among equals the least remaining.
pub(crate) fn worst(evaluations: &[Evaluation]) -> Option<&Evaluation> {
    evaluations.iter().max_by(|a, b| {
        a.state
            .cmp(&b.state)
            .then_with(|| b.remaining_usd.partial_cmp(&a.remaining_usd).unwrap_or(std::cmp::Ordering::Equal))
    })
}

/// What the budget gate of `review` (and later `fix`) decides before the first model call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GateDecision {
    /// No budget applies, or every one is below its soft ratio.
    Proceed,
    /// Past a soft ratio: go on with a warning, on `downgrade_to` when a soft budget names one.
    Warn {
        /// The worst evaluation (for the warning text).
        evaluation: Evaluation,
        /// The provider entry to use instead, from the first budget past its soft ratio that
        /// names one.
        downgrade_to: Option<String>,
    },
    /// `spent + estimate` would pass a hard limit: no model call, exit 5.
    Refuse(Evaluation),
}

/// Evaluates the budgets that apply to `run` (see [`evaluate`] with `only_this_run`) with
/// `estimate_usd` about to be spent, and decides.
///
/// Errors: [`StoreError`] when the ledger cannot be read (callers fail closed: a budget that
/// cannot be checked does not let a run through).
pub(crate) fn gate(
    store: &Store,
    budgets: &[BudgetConfig],
    run: &RunScope,
    now_ms: i64,
    estimate_usd: f64,
) -> Result<GateDecision, StoreError> {
    let evals = evaluate(store, budgets, run, true, now_ms, estimate_usd)?;
    let Some(w) = worst(&evals) else { return Ok(GateDecision::Proceed) };
    Ok(match w.state {
        BudgetState::Hard => GateDecision::Refuse(w.clone()),
        BudgetState::Soft => GateDecision::Warn {
            evaluation: w.clone(),
            downgrade_to: evals
                .iter()
                .filter(|e| e.state == BudgetState::Soft)
                .find_map(|e| e.budget.downgrade_to.clone()),
        },
        BudgetState::Ok => GateDecision::Proceed,
    })
}

/// One line about `e` for logs, annotations and summaries: `repo o/r per day: $9.90 spent +
/// $0.20 estimated of $10.00 since 2026-11-30 00:00 UTC`.
pub(crate) fn describe(e: &Evaluation) -> String {
    format!(
        "{}: ${:.2} spent{} of ${:.2} since {}",
        e.label,
        e.spent_usd,
        if e.estimate_usd > 0.0 { format!(" + ${:.2} estimated", e.estimate_usd) } else { String::new() },
        e.limit_usd,
        crate::usage::report::format_time(e.period_start_ms)
    )
}

/// The step outputs of a budget evaluation: `budget-state`, `spent-usd`, `limit-usd`,
/// `remaining-usd` (USD to the cent).
pub(crate) fn outputs(e: &Evaluation) -> Vec<(String, String)> {
    vec![
        ("budget-state".into(), e.state.as_str().into()),
        ("spent-usd".into(), format!("{:.2}", e.spent_usd)),
        ("limit-usd".into(), format!("{:.2}", e.limit_usd)),
        ("remaining-usd".into(), format!("{:.2}", e.remaining_usd)),
    ]
}

impl RunScope {
    /// The scope `cost check` evaluates in: `GITHUB_REPOSITORY` and `GITHUB_WORKFLOW`, no task.
    pub(crate) fn from_env(env: &crate::context::Env) -> RunScope {
        RunScope {
            repo: env.get(crate::env_vars::GITHUB_REPOSITORY).map(str::to_owned),
            workflow: env.get(crate::env_vars::GITHUB_WORKFLOW).map(str::to_owned),
            task: None,
        }
    }

    /// The scope of a run of `task` (`review`, `fix`) in `ctx`: its repository and workflow.
    pub(crate) fn of(ctx: &crate::context::Context, task: &str) -> RunScope {
        RunScope {
            repo: ctx.repository.as_ref().map(|r| r.to_string()),
            workflow: ctx.workflow.clone(),
            task: Some(task.to_owned()),
        }
    }
}

/// The ledger budgets are evaluated against. Fail closed: a store that could not be opened is
/// exit 1 ("budgets are configured but the usage ledger cannot be read"), never a run that
/// skips its budgets.
///
/// Errors: [`crate::exit::ExitError`] with exit 1 when `store` is an error.
pub(crate) fn ledger(store: &Result<std::sync::Arc<Store>, StoreError>) -> Result<&Store, crate::exit::ExitError> {
    store.as_deref().map_err(|e| {
        crate::exit::ExitError::new(
            e.exit(),
            anyhow::anyhow!(
                "budgets are configured but the usage ledger cannot be read: {}",
                crate::log::error_chain(e)
            ),
        )
    })
}

/// What a command does after [`run_gate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GateOutcome {
    /// Go on with the configured provider.
    Proceed,
    /// Go on with this `providers:` entry instead (a soft budget's `downgrade_to`).
    Downgrade(String),
    /// Stop with exit 5: the reason was logged (`::error::` in Actions) and written to the
    /// outputs (`verdict=budget-exceeded`, the budget outputs) and the job summary.
    Refused,
}

/// The budget gate as `review` (and later `fix`) runs it before the first model call: no
/// budgets → proceed; the ledger unreadable → exit 1 (fail closed); otherwise [`gate`] with the
/// run's estimate (an unpriced estimate counts as $0: its cost is unknown, the spent part still
/// counts), then the warning or the refusal written where a workflow sees it. `task` is the
/// command (`review`).
///
/// Errors: [`crate::exit::ExitError`] with exit 1 when the ledger cannot be read.
pub(crate) fn run_gate(
    budgets: &[BudgetConfig],
    store: &Result<std::sync::Arc<Store>, StoreError>,
    ctx: &crate::context::Context,
    env: &crate::context::Env,
    task: &str,
    estimate: &crate::estimate::Estimate,
) -> Result<GateOutcome, crate::exit::ExitError> {
    use crate::{actions, env_vars as ev, log};
    if budgets.is_empty() {
        return Ok(GateOutcome::Proceed);
    }
    let store = ledger(store)?;
    let run = RunScope::of(ctx, task);
    let estimate_usd = estimate.cost_usd.unwrap_or(0.0);
    let decision = gate(store, budgets, &run, crate::clock::now_ms(), estimate_usd)?;
    let state = match &decision {
        GateDecision::Proceed => "ok",
        GateDecision::Warn { .. } => "soft",
        GateDecision::Refuse(_) => "exceeded",
    };
    crate::telemetry::count("agentctl.budget.checks", "agentctl.budget.state", state);
    match decision {
        GateDecision::Proceed => Ok(GateOutcome::Proceed),
        GateDecision::Warn { evaluation, downgrade_to } => {
            log::warn(&format!("budget past its soft limit: {}", describe(&evaluation)));
            Ok(match downgrade_to {
                Some(name) => {
                    log::info(&format!("budget past its soft limit: using provider `{name}` (downgrade_to)"));
                    GateOutcome::Downgrade(name)
                }
                None => GateOutcome::Proceed,
            })
        }
        GateDecision::Refuse(e) => {
            let reason = format!(
                "budget exceeded: this {task} would cost about ${estimate_usd:.2} ({} with {}) and {}; no model was called",
                estimate.provider,
                estimate.model,
                describe(&e)
            );
            log::error(&reason);
            if let Some(path) = env.get(ev::GITHUB_OUTPUT) {
                let mut out = vec![("verdict".to_owned(), "budget-exceeded".to_owned())];
                out.extend(outputs(&e));
                if let Err(err) = actions::write_outputs(std::path::Path::new(path), &out) {
                    log::warn(&format!(
                        "cannot write step outputs to GITHUB_OUTPUT ({path}): {}",
                        log::error_chain(&err)
                    ));
                }
            }
            if let Some(path) = env.get(ev::GITHUB_STEP_SUMMARY) {
                let md = format!("### agentctl {task}: budget exceeded\n\n{reason}.\n\n**Verdict:** budget-exceeded\n");
                if let Err(err) = actions::write_step_summary(std::path::Path::new(path), &md) {
                    log::warn(&format!("cannot write the job summary to GITHUB_STEP_SUMMARY ({path}): {err}"));
                }
            }
            Ok(GateOutcome::Refused)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::config::budget::{BudgetError, DEFAULT_SOFT_RATIO};
    use crate::usage::report::parse_date;
    use crate::usage::{Usage, UsageRecord};

    fn row(ts_ms: i64, repo: &str, workflow: &str, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            ts_ms,
            repo: Some(repo.into()),
            workflow: Some(workflow.into()),
            run_id: None,
            job: None,
            pr: None,
            task: "review".into(),
            provider: "main".into(),
            model: "gpt-4o".into(),
            usage: Usage { input_tokens: 10, ..Usage::default() },
            cost_usd: cost,
            cost_source: Default::default(),
            price_table: None,
            latency_ms: 1,
            outcome: "ok".into(),
            cached: false,
        }
    }

    #[test]
    fn periods_start_at_utc_day_monday_and_first_of_month() {
        // 2026-11-26 is a Thursday.
        let now = parse_date("2026-11-26").unwrap() + 15 * 3_600_000;
        assert_eq!(Period::Day.start_ms(now), parse_date("2026-11-26").unwrap());
        assert_eq!(Period::Week.start_ms(now), parse_date("2026-11-23").unwrap());
        assert_eq!(Period::Month.start_ms(now), parse_date("2026-11-01").unwrap());
        let monday = parse_date("2026-11-23").unwrap();
        assert_eq!(Period::Week.start_ms(monday), monday);
        assert_eq!(Period::Week.start_ms(monday - 1), parse_date("2026-11-16").unwrap());
    }

    #[test]
    fn classify_soft_and_hard_edges() {
        assert_eq!(classify(0.0, 0.0, 10.0, 0.8), BudgetState::Ok);
        assert_eq!(classify(7.99, 0.0, 10.0, 0.8), BudgetState::Ok);
        assert_eq!(classify(8.0, 0.0, 10.0, 0.8), BudgetState::Soft);
        assert_eq!(classify(9.9, 0.0, 10.0, 0.8), BudgetState::Soft);
        assert_eq!(classify(9.9, 0.2, 10.0, 0.8), BudgetState::Hard);
        assert_eq!(classify(10.0, 0.0, 10.0, 0.8), BudgetState::Hard);
        assert_eq!(classify(0.0, 0.0, 0.0, 0.8), BudgetState::Ok);
        assert_eq!(classify(0.0, 0.01, 0.0, 0.8), BudgetState::Hard);
    }

    #[test]
    fn bad_limits_and_ratios_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = BudgetConfig::all(bad, Period::Day).validate().unwrap_err();
            assert!(matches!(err, BudgetError::BadLimit(_)), "{err}");
            assert!(err.to_string().contains("help:"), "{err}");
        }
        let mut b = BudgetConfig::all(1.0, Period::Day);
        b.soft_ratio = 1.5;
        assert!(matches!(b.validate(), Err(BudgetError::BadSoftRatio(_))));
        b.soft_ratio = 1.0;
        assert!(b.validate().is_ok());
    }

    #[test]
    fn evaluation_counts_the_scope_since_the_period_start() {
        let store = Store::open_in_memory().unwrap();
        let today = parse_date("2026-11-26").unwrap();
        let now = today + 10 * 3_600_000;
        store.record_usage(&row(today - 1, "a/x", "ci", Some(100.0))).unwrap(); // yesterday
        store.record_usage(&row(today + 1, "a/x", "ci", Some(5.0))).unwrap();
        store.record_usage(&row(today + 2, "a/x", "nightly", Some(3.0))).unwrap();
        store.record_usage(&row(today + 3, "b/y", "ci", Some(1.0))).unwrap();
        store.record_usage(&row(today + 4, "a/x", "ci", None)).unwrap(); // unpriced: adds nothing
        let budgets = vec![
            BudgetConfig::all(10.0, Period::Day),
            BudgetConfig { scope: Scope::Repo, matches: None, ..BudgetConfig::all(10.0, Period::Day) },
            BudgetConfig { scope: Scope::Workflow, matches: Some("ci".into()), ..BudgetConfig::all(6.0, Period::Day) },
            BudgetConfig { scope: Scope::Repo, matches: Some("b/y".into()), ..BudgetConfig::all(10.0, Period::Day) },
        ];
        let run = RunScope { repo: Some("a/x".into()), workflow: Some("ci".into()), task: None };
        let evals = evaluate(&store, &budgets, &run, true, now, 0.0).unwrap();
        let got: Vec<_> = evals.iter().map(|e| (e.label.as_str(), e.spent_usd, e.state)).collect();
        assert_eq!(
            got,
            vec![
                ("all usage per day", 9.0, BudgetState::Soft),
                ("repo a/x per day", 8.0, BudgetState::Soft),
                ("workflow ci per day", 6.0, BudgetState::Hard),
            ]
        );
        assert_eq!(worst(&evals).unwrap().label, "workflow ci per day");
        // `cost check` sees the other repo's budget too; an estimate moves the state.
        let evals = evaluate(&store, &budgets, &run, false, now, 1.5).unwrap();
        assert_eq!(evals.len(), 4);
        assert_eq!(evals[0].state, BudgetState::Hard);
        assert_eq!(evals[3].spent_usd, 1.0);
        assert!((evals[1].remaining_usd - 0.5).abs() < 1e-9);
    }

    #[test]
    fn budgets_parse_from_config_with_defaults_and_the_schema_refuses_bad_ones() {
        let c = crate::config::Config::from_text(
            "providers: {x: {kind: openai, model: m}}\nbudgets:\n  - {scope: repo, match: o/r, period: week, limit_usd: 10, downgrade_to: x}\n  - {scope: all, period: day, limit_usd: 0}\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.budgets.len(), 2);
        assert_eq!((c.budgets[0].scope, c.budgets[0].matches.as_deref()), (Scope::Repo, Some("o/r")));
        assert_eq!((c.budgets[1].soft_ratio, c.budgets[1].downgrade_to.as_deref()), (DEFAULT_SOFT_RATIO, None));
        // The starter's commented example, uncommented, is a valid config.
        let uncommented = crate::config::STARTER.replace("# budgets:", "budgets:").replace("#   - ", "  - ");
        let c = crate::config::Config::from_text(&uncommented, "starter").unwrap();
        assert_eq!(c.budgets.len(), 2);
        for bad in [
            "budgets: [{scope: all, period: day, limit_usd: -1}]",
            "budgets: [{scope: all, period: year, limit_usd: 1}]",
            "budgets: [{scope: all, period: day, limit_usd: 1, soft_ratio: 0}]",
            "budgets: [{scope: all, period: day}]",
            "budgets: [{scope: all, period: day, limit_usd: 1, owner: me}]",
            // `downgrade_to` names no provider or tier: refused at load, not at the first review.
            "budgets: [{scope: all, period: day, limit_usd: 1, downgrade_to: nowhere}]",
        ] {
            assert!(crate::config::Config::from_text(bad, "t").is_err(), "{bad}");
        }
    }
}
