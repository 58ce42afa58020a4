//! `cost report`'s domain: which rows of the usage ledger to read ([`ReportQuery`]), how to
//! group them ([`GroupBy`]), and what one group adds up to ([`ReportRow`]). The aggregation
//! itself runs in SQL ([`crate::store::Store::usage_report`]) so a ledger of a million rows is
//! never loaded into memory; renderers live in [`crate::output::cost`].
//!
//! Times are Unix milliseconds, calendar days are UTC (the ledger stores UTC, and a report must
//! read the same on every runner whatever its time zone).

use serde::Serialize;

use super::pricing::PriceTable;
use super::Usage;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// What one report row stands for (SPEC §3.4 `--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// UTC calendar day, `YYYY-MM-DD`.
    Day,
    /// Model that answered.
    Model,
    /// Provider config entry name.
    Provider,
    /// `owner/name`.
    Repo,
    /// `GITHUB_WORKFLOW`.
    Workflow,
    /// `review`, `fix`, `repair`, ...
    Task,
    /// Pull request or issue number.
    Pr,
}

impl GroupBy {
    /// The flag value (`day`, `model`, ...), also the JSON/CSV column name of the group.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Repo => "repo",
            GroupBy::Workflow => "workflow",
            GroupBy::Task => "task",
            GroupBy::Pr => "pr",
        }
    }

    /// The SQL expression of the group key over the `usage` table. A fixed string per variant:
    /// nothing a user typed reaches the SQL text. Missing values group as `(none)`.
    pub fn sql_key(self) -> &'static str {
        match self {
            // An integer day number (formatted by `day_label`): much cheaper per row than
            // strftime, which matters on a million-row ledger.
            GroupBy::Day => "ts / 86400000",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Repo => "COALESCE(repo, '(none)')",
            GroupBy::Workflow => "COALESCE(workflow, '(none)')",
            GroupBy::Task => "task",
            GroupBy::Pr => "COALESCE(CAST(pr AS TEXT), '(none)')",
        }
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (the [`GroupBy::Day`] key).
pub fn day_label(day: i64) -> String {
    match day.checked_mul(DAY_MS).and_then(utc_date) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => format!("day {day}"),
    }
}

/// Which ledger rows a report (or a budget) reads. `since_ms` inclusive, `until_ms` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// First instant included, Unix milliseconds.
    pub since_ms: i64,
    /// First instant excluded, Unix milliseconds (`None`: no upper bound).
    pub until_ms: Option<i64>,
    /// How rows are grouped.
    pub group_by: GroupBy,
    /// Only this repository (`owner/name`).
    pub repo: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this task.
    pub task: Option<String>,
}

/// One group of the report: sums over its calls. Tokens are tokens, USD is US dollars.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportRow {
    /// The group's key (a day, a model, a repo, ...); `(none)` when the record had no value.
    pub group: String,
    /// Provider calls (ledger records).
    pub calls: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache with the 5-minute lifetime.
    pub cache_write_tokens: u64,
    /// Input tokens written to the prompt cache with the 1-hour lifetime.
    pub cache_write_1h_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    /// Reasoning tokens (a subset of output).
    pub reasoning_tokens: u64,
    /// Sum of the priced calls' cost in USD; `None` when no call of the group has a price
    /// ("unpriced", never a silent $0).
    pub cost_usd: Option<f64>,
    /// Calls without a price (unknown model): their tokens count, their cost is not known.
    pub unpriced_calls: u64,
    /// Calls whose outcome is not `ok`.
    pub failures: u64,
    /// Calls whose cost the provider reported itself (`cost_source: reported`); the others'
    /// cost is computed from tokens × the price table.
    pub reported_calls: u64,
}

impl ReportRow {
    /// Adds `o`'s sums into `self` (the total row); the group key is left as it is.
    pub fn add(&mut self, o: &ReportRow) {
        self.calls += o.calls;
        self.input_tokens += o.input_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.cache_write_1h_tokens += o.cache_write_1h_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_usd = match (self.cost_usd, o.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        self.unpriced_calls += o.unpriced_calls;
        self.failures += o.failures;
        self.reported_calls += o.reported_calls;
    }

    /// The cost as a report cell: `$1.23`, `unpriced`, or `$1.23 + 2 unpriced` when only some
    /// calls have a price.
    pub fn cost_cell(&self) -> String {
        match (self.cost_usd, self.unpriced_calls) {
            (None, _) => "unpriced".into(),
            (Some(c), 0) => format!("${c:.2}"),
            (Some(c), n) => format!("${c:.2} + {n} unpriced"),
        }
    }
}

/// A whole report: the query's window, its rows (ordered by group key) and their total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What rows stand for.
    pub group_by: GroupBy,
    /// Window start, Unix milliseconds (inclusive).
    pub since_ms: i64,
    /// Window end, Unix milliseconds (exclusive), when bounded.
    pub until_ms: Option<i64>,
    /// One row per group, ordered by group key.
    pub rows: Vec<ReportRow>,
    /// Sums over every row; its `group` is `total`.
    pub total: ReportRow,
    /// With `--reprice`: the effective date of the price table computed costs were re-priced
    /// with; `None` when they are the ledger's own.
    pub repriced_with: Option<String>,
}

impl Report {
    /// Builds the report from the aggregated `rows`, computing the total.
    pub fn new(query: &ReportQuery, rows: Vec<ReportRow>) -> Report {
        let mut total = ReportRow { group: "total".into(), ..ReportRow::default() };
        for r in &rows {
            total.add(r);
        }
        Report {
            group_by: query.group_by,
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            rows,
            total,
            repriced_with: None,
        }
    }

    /// No calls in the window.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One model's share of a report group, with a single cost source: what `--reprice` prices
/// again ([`reprice`]). `row.group` is the group's key; its sums cover only this model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSlice {
    /// The model that answered.
    pub model: String,
    /// Whether these calls' cost was reported by the provider (never re-priced).
    pub reported: bool,
    /// The sums, with the cost as the ledger has it.
    pub row: ReportRow,
}

/// `cost report --reprice`: the groups of `slices` (ordered by group key, as the store gives
/// them) with each computed slice's cost replaced by its token sums × `prices` — exact, since a
/// cost is linear in tokens. Reported slices keep the provider's figure; a model `prices` does
/// not know makes its calls unpriced (never $0). Only the report changes, never the ledger.
pub fn reprice(slices: Vec<ModelSlice>, prices: &PriceTable) -> Vec<ReportRow> {
    let mut out: Vec<ReportRow> = Vec::new();
    for s in slices {
        let mut row = s.row;
        if !s.reported {
            let usage = Usage {
                input_tokens: row.input_tokens,
                cached_input_tokens: row.cache_read_tokens,
                cache_write_tokens: row.cache_write_tokens,
                cache_write_1h_tokens: row.cache_write_1h_tokens,
                output_tokens: row.output_tokens,
                reasoning_tokens: row.reasoning_tokens,
            };
            row.cost_usd = prices.cost_usd(&s.model, &usage);
            row.unpriced_calls = if row.cost_usd.is_some() { 0 } else { row.calls };
        }
        match out.last_mut() {
            Some(last) if last.group == row.group => last.add(&row),
            _ => out.push(row),
        }
    }
    out
}

/// A `--since`/`--until` value that is neither a duration nor a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not a date or a duration\nhelp: use a duration such as `7d`, `12h`, `2w`, or a UTC date `YYYY-MM-DD`"
)]
pub struct TimeSpecError {
    /// The offending value.
    pub value: String,
}

/// Parses `--since`/`--until`: a duration back from `now_ms` (`30m`, `12h`, `7d`, `2w`) or a UTC
/// date `YYYY-MM-DD` (its midnight). Returns Unix milliseconds.
///
/// Errors: anything else, including a zero-padded date that does not exist (`2026-02-30`).
pub fn parse_time(value: &str, now_ms: i64) -> Result<i64, TimeSpecError> {
    let err = || TimeSpecError { value: value.to_owned() };
    let v = value.trim();
    if let Some(date) = parse_date(v) {
        return Ok(date);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().map_err(|_| err())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => return Err(err()),
    };
    n.checked_mul(unit_ms).and_then(|back| now_ms.checked_sub(back)).ok_or_else(err)
}

/// `YYYY-MM-DD` → Unix milliseconds of its UTC midnight, `None` when malformed or impossible.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, u32::try_from(m).ok()?, u32::try_from(d).ok()?)?;
    Some(midnight_ms(date))
}

/// A `--since`/`--until` pair that makes no report window ([`window`]). Displayed as the flag,
/// with the [`TimeSpecError`] as its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// `--since` is neither a duration nor a date.
    #[error("--since")]
    Since(#[source] TimeSpecError),
    /// `--until` is neither a duration nor a date.
    #[error("--until")]
    Until(#[source] TimeSpecError),
    /// `--until` is at or before `--since` (Unix milliseconds).
    #[error("--until ({}) is not after --since ({})", format_time(*until_ms), format_time(*since_ms))]
    Empty { since_ms: i64, until_ms: i64 },
}

/// The report window of `--since` and `--until` ([`parse_time`]) as Unix milliseconds, the end
/// `None` when open. A date given to `--until` includes that day.
///
/// Errors: [`WindowError`] naming the flag that is not a time, or an empty window.
pub fn window(since: &str, until: Option<&str>, now_ms: i64) -> Result<(i64, Option<i64>), WindowError> {
    let since_ms = parse_time(since, now_ms).map_err(WindowError::Since)?;
    let until_ms = match until {
        None => None,
        Some(u) => {
            let t = parse_time(u, now_ms).map_err(WindowError::Until)?;
            Some(if parse_date(u.trim()).is_some() { t + DAY_MS } else { t })
        }
    };
    if let Some(until_ms) = until_ms.filter(|u| *u <= since_ms) {
        return Err(WindowError::Empty { since_ms, until_ms });
    }
    Ok((since_ms, until_ms))
}

/// The UTC date of the instant `ms` (Unix milliseconds); `None` past chrono's range
/// (±262,000 years).
pub fn utc_date(ms: i64) -> Option<chrono::NaiveDate> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
}

/// Unix milliseconds of `date`'s UTC midnight.
pub fn midnight_ms(date: chrono::NaiveDate) -> i64 {
    date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC` (for "since …" lines).
pub fn format_time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        None => format!("{ms} ms after 1970-01-01 UTC"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    #[test]
    fn until_a_date_includes_that_day_and_must_come_after_since() {
        let day = parse_date("2026-11-02").unwrap();
        assert_eq!(window("2026-11-01", Some("2026-11-02"), day), Ok((day - DAY_MS, Some(day + DAY_MS))));
        assert_eq!(window("2d", None, day), Ok((day - 2 * DAY_MS, None)));
        assert_eq!(
            window("1d", Some("2d"), day),
            Err(WindowError::Empty { since_ms: day - DAY_MS, until_ms: day - 2 * DAY_MS })
        );
        assert!(matches!(window("soon", None, day), Err(WindowError::Since(_))));
        assert!(matches!(window("1d", Some("later"), day), Err(WindowError::Until(_))));
        assert_eq!(
            WindowError::Empty { since_ms: day, until_ms: day }.to_string(),
            format!("--until ({}) is not after --since ({})", format_time(day), format_time(day))
        );
    }

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-11-01"), Some(1_793_491_200_000));
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_date("1969-12-31"), Some(-DAY_MS));
        for bad in ["2026-02-30", "2025-02-29", "2026-13-01", "2026-1-01", "2026/11/01", "+026-11-01", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_print_as_utc_dates_and_days_as_labels() {
        assert_eq!(format_time(1_793_491_200_000 + 3_600_000 * 13 + 60_000 * 5), "2026-11-01 13:05 UTC");
        assert_eq!(format_time(-1), "1969-12-31 23:59 UTC");
        assert_eq!(day_label(20_758), "2026-11-01");
        assert_eq!(day_label(-1), "1969-12-31");
        assert_eq!(utc_date(1_709_164_800_000 + DAY_MS - 1).map(midnight_ms), Some(1_709_164_800_000));
    }

    #[test]
    fn durations_count_back_from_now() {
        let now = 10 * DAY_MS;
        assert_eq!(parse_time("7d", now), Ok(3 * DAY_MS));
        assert_eq!(parse_time("1w", now), Ok(3 * DAY_MS));
        assert_eq!(parse_time("12h", now), Ok(now - 12 * 3_600_000));
        assert_eq!(parse_time("30m", now), Ok(now - 30 * 60_000));
        for bad in ["7", "d", "7y", "-7d", "7.5d", "yesterday", "99999999999999999999d"] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.to_string().contains(bad) && e.to_string().contains("help:"), "{e}");
        }
    }

    #[test]
    fn reprice_merges_each_groups_models_and_keeps_reported_slices() {
        let slice = |group: &str, model: &str, reported: bool, cost: Option<f64>| ModelSlice {
            model: model.into(),
            reported,
            row: ReportRow {
                group: group.into(),
                calls: 1,
                input_tokens: 1_000_000,
                cost_usd: cost,
                reported_calls: u64::from(reported),
                ..ReportRow::default()
            },
        };
        let prices = PriceTable::bundled();
        let rows = reprice(
            vec![
                slice("a", "gpt-4.1", false, Some(9.0)),
                slice("a", "claude-x", true, Some(0.25)),
                slice("b", "unknown-model", false, Some(3.0)),
            ],
            &prices,
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        // gpt-4.1: $2 per 1M input tokens, plus the reported $0.25.
        assert_eq!((rows[0].group.as_str(), rows[0].calls, rows[0].cost_usd), ("a", 2, Some(2.25)));
        assert_eq!(rows[0].reported_calls, 1);
        assert_eq!((rows[1].cost_usd, rows[1].unpriced_calls), (None, 1), "unknown now: unpriced, not $0");
    }

    #[test]
    fn totals_keep_unpriced_apart_from_zero() {
        let priced = ReportRow { calls: 2, cost_usd: Some(1.5), ..ReportRow::default() };
        let unpriced = ReportRow { calls: 1, cost_usd: None, unpriced_calls: 1, ..ReportRow::default() };
        assert_eq!(unpriced.cost_cell(), "unpriced");
        assert_eq!(ReportRow { cost_usd: Some(0.0), ..ReportRow::default() }.cost_cell(), "$0.00");
        let mut total = ReportRow::default();
        total.add(&unpriced);
        assert_eq!(total.cost_usd, None);
        total.add(&priced);
        assert_eq!((total.calls, total.cost_usd, total.unpriced_calls), (3, Some(1.5), 1));
        assert_eq!(total.cost_cell(), "$1.50 + 1 unpriced");
    }
}
