//! The config's `budgets:` entries (SPEC §3.4; schema `schemas/config.schema.json#/properties/budgets`):
//! what each counts, its period and limits. Evaluating them against the ledger is
//! [`crate::budget`]'s.

use serde::{Deserialize, Serialize};

use chrono::Datelike as _;

use crate::usage::report::{midnight_ms, utc_date};

/// The soft ratio when a budget names none: warn at 80 % of the limit.
pub(crate) const DEFAULT_SOFT_RATIO: f64 = 0.8;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every ledger row.
    All,
    /// Rows of one repository (`owner/name`).
    Repo,
    /// Rows of one workflow (`GITHUB_WORKFLOW`).
    Workflow,
    /// Rows of one task (`review`, `fix`, ...).
    Task,
}

/// The window a budget resets on, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From today's UTC midnight.
    Day,
    /// From this ISO week's Monday, UTC midnight.
    Week,
    /// From the first of this month, UTC midnight.
    Month,
}

impl Period {
    /// `day`, `week` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// Start of the period that contains `now_ms`, Unix milliseconds: today's UTC midnight,
    /// this ISO week's Monday, or the first of this month (`now_ms` itself past chrono's range).
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let Some(today) = utc_date(now_ms) else { return now_ms };
        let first = match self {
            Period::Day => Some(today),
            Period::Week => {
                today.checked_sub_days(chrono::Days::new(u64::from(today.weekday().num_days_from_monday())))
            }
            Period::Month => today.with_day(1),
        };
        first.map_or(now_ms, midnight_ms)
    }
}

fn default_soft_ratio() -> f64 {
    DEFAULT_SOFT_RATIO
}

/// One `budgets:` entry of the config (schema: `schemas/config.schema.json#/properties/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// What the budget counts.
    pub scope: Scope,
    /// The repository, workflow or task the budget is for; absent: the current run's own
    /// (`GITHUB_REPOSITORY`, `GITHUB_WORKFLOW`, the command's task). Ignored for `scope: all`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// When the budget resets.
    pub period: Period,
    /// The hard limit, USD (finite, ≥ 0).
    pub limit_usd: f64,
    /// Fraction of the limit past which runs are warned (and downgraded), in (0, 1].
    #[serde(default = "default_soft_ratio")]
    pub soft_ratio: f64,
    /// A `providers:` entry to use instead of the configured one past the soft ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade_to: Option<String>,
}

/// A budget that cannot be evaluated (the schema catches these in files; `--budget-usd` and
/// programmatic budgets are checked here).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// The limit is negative, NaN or infinite.
    #[error("budget limit {0} USD is not a finite amount of at least 0\nhelp: give the limit in US dollars, e.g. `--budget-usd 25`")]
    BadLimit(f64),
    /// The soft ratio is outside (0, 1].
    #[error("budget soft_ratio {0} is not in (0, 1]\nhelp: 0.8 warns at 80 % of the limit")]
    BadSoftRatio(f64),
}

impl BudgetConfig {
    /// An ad-hoc budget over all usage (`cost check --budget-usd X --period P`).
    pub fn all(limit_usd: f64, period: Period) -> BudgetConfig {
        BudgetConfig {
            scope: Scope::All,
            matches: None,
            period,
            limit_usd,
            soft_ratio: DEFAULT_SOFT_RATIO,
            downgrade_to: None,
        }
    }

    /// Errors: [`BudgetError`] for a limit or ratio no budget can have.
    pub fn validate(&self) -> Result<(), BudgetError> {
        if !self.limit_usd.is_finite() || self.limit_usd < 0.0 {
            return Err(BudgetError::BadLimit(self.limit_usd));
        }
        if !(self.soft_ratio > 0.0 && self.soft_ratio <= 1.0) {
            return Err(BudgetError::BadSoftRatio(self.soft_ratio));
        }
        Ok(())
    }
}
