//! SQL text both backends share: the usage columns, a report window's `WHERE` clause and the
//! report's `GROUP BY` query, written once with the few places SQLite and PostgreSQL differ
//! ([`Dialect`]). Only fixed fragments are formatted into the text; every value is a bound
//! parameter ([`Param`]).

use crate::usage::report::{ReportQuery, ReportRow};
use crate::usage::{Usage, UsageRecord};

/// The columns of a usage record, in the order both backends read them.
pub(super) const USAGE_COLUMNS: &str = "ts, repo, workflow, run_id, job, pr, task, provider, model,
    input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
    cost_usd, price_table, latency_ms, outcome, cost_source, cached, cache_write_1h_tokens";

/// Which database the text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound value of a generated query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Param {
    Int(i64),
    Text(String),
}

impl Dialect {
    /// The `n`-th (1-based) placeholder: `?n` (SQLite) or `$n` (PostgreSQL).
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The sum of an integer column as a float, 0 over no rows, that cannot overflow: SQLite's
    /// `TOTAL()`; PostgreSQL sums `bigint` as `numeric`, cast to `float8`.
    fn total(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("TOTAL({column})"),
            Dialect::Postgres => format!("COALESCE(SUM({column}), 0)::float8"),
        }
    }

    /// The number of rows where `condition` holds, as a float (read like the token sums).
    fn count_where(self, condition: &str) -> String {
        match self {
            Dialect::Sqlite => format!("TOTAL({condition})"),
            Dialect::Postgres => format!("(COUNT(*) FILTER (WHERE {condition}))::float8"),
        }
    }
}

/// The `WHERE` clause of a [`ReportQuery`] and its bound values. Only the conditions in force
/// are written, so the planner can pick the `usage_ts` or a `usage_<column>_ts` index for a
/// range scan.
pub(super) fn window_filter(q: &ReportQuery, dialect: Dialect) -> (String, Vec<Param>) {
    let mut values = vec![Param::Int(q.since_ms)];
    let mut clause = format!("WHERE ts >= {}", dialect.placeholder(1));
    if let Some(until) = q.until_ms {
        values.push(Param::Int(until));
        clause.push_str(&format!(" AND ts < {}", dialect.placeholder(values.len())));
    }
    for (column, value) in [("repo", &q.repo), ("workflow", &q.workflow), ("task", &q.task)] {
        if let Some(v) = value {
            values.push(Param::Text(v.clone()));
            clause.push_str(&format!(" AND {column} = {}", dialect.placeholder(values.len())));
        }
    }
    (clause, values)
}

/// The report's query and bound values. Columns: 0 the group key (an integer day number for
/// `--group-by day`, else text), 1 the call count (integer), 2–7 token sums (input, cache read,
/// 5-minute and 1-hour cache writes, output, reasoning), 8 the priced cost (NULL when no call of
/// the group has a price), 9 unpriced calls, 10 failures, 11 calls with a reported cost
/// (floats); with `per_model` also 12 the model and 13 whether the cost source is `reported`.
/// Ordered by the key (and model, source).
pub(super) fn report_sql(query: &ReportQuery, per_model: bool, dialect: Dialect) -> (String, Vec<Param>) {
    let key = query.group_by.sql_key();
    let (filter, values) = window_filter(query, dialect);
    let (extra_columns, extra_group) =
        if per_model { (", model, cost_source = 'reported'", ", 13, 14") } else { ("", "") };
    let sums = [
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
    ]
    .map(|c| dialect.total(c))
    .join(", ");
    let unpriced = match dialect {
        Dialect::Sqlite => "COUNT(*) - COUNT(cost_usd)".to_owned(),
        Dialect::Postgres => "(COUNT(*) - COUNT(cost_usd))::float8".to_owned(),
    };
    let failures = dialect.count_where("outcome != 'ok'");
    let reported = dialect.count_where("cost_source = 'reported'");
    let sql = format!(
        "SELECT {key} AS g, COUNT(*), {sums}, SUM(cost_usd), {unpriced}, {failures}, {reported}{extra_columns}
         FROM usage {filter}
         GROUP BY 1{extra_group} ORDER BY 1{extra_group}"
    );
    (sql, values)
}

/// A result row's columns by index, as either driver reads them; the row builders below are
/// then written once.
pub(super) trait Columns {
    type Error;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    fn real(&self, i: usize) -> Result<f64, Self::Error>;
    fn opt_real(&self, i: usize) -> Result<Option<f64>, Self::Error>;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
}

/// A usage record from the [`USAGE_COLUMNS`] of `row`, starting at column `at`. Negative
/// counts (never written by agentctl) read as 0.
pub(super) fn usage_from<C: Columns>(row: &C, at: usize) -> Result<UsageRecord, C::Error> {
    let count = |i: usize| -> Result<u64, C::Error> { Ok(u64::try_from(row.int(at + i)?).unwrap_or(0)) };
    Ok(UsageRecord {
        ts_ms: row.int(at)?,
        repo: row.opt_text(at + 1)?,
        workflow: row.opt_text(at + 2)?,
        run_id: row.opt_text(at + 3)?,
        job: row.opt_text(at + 4)?,
        pr: row.opt_int(at + 5)?.map(|v| u64::try_from(v).unwrap_or(0)),
        task: row.text(at + 6)?,
        provider: row.text(at + 7)?,
        model: row.text(at + 8)?,
        usage: Usage {
            input_tokens: count(9)?,
            cached_input_tokens: count(10)?,
            cache_write_tokens: count(11)?,
            cache_write_1h_tokens: count(20)?,
            output_tokens: count(12)?,
            reasoning_tokens: count(13)?,
        },
        cost_usd: row.opt_real(at + 14)?,
        price_table: row.opt_text(at + 15)?,
        latency_ms: count(16)?,
        outcome: row.text(at + 17)?,
        cost_source: crate::usage::CostSource::from_column(&row.text(at + 18)?),
        cached: row.int(at + 19)? != 0,
    })
}

/// The response cache's columns, in the order both backends read them: the answer (JSON text),
/// five of its token classes, when it was stored (Unix **seconds**), then its 1-hour cache
/// writes (added later).
pub(super) const CACHE_COLUMNS: &str = "value, input_tokens, cached_input_tokens, cache_write_tokens,
    output_tokens, reasoning_tokens, created_at, cache_write_1h_tokens";

/// Reads a cached answer from the [`CACHE_COLUMNS`] of `row`.
pub(super) fn cached_answer_from<C: Columns>(row: &C) -> Result<super::CachedAnswer, C::Error> {
    let count = |i: usize| -> Result<u64, C::Error> { Ok(u64::try_from(row.int(i)?).unwrap_or(0)) };
    Ok(super::CachedAnswer {
        value: row.text(0)?,
        usage: Usage {
            input_tokens: count(1)?,
            cached_input_tokens: count(2)?,
            cache_write_tokens: count(3)?,
            cache_write_1h_tokens: count(7)?,
            output_tokens: count(4)?,
            reasoning_tokens: count(5)?,
        },
        created_at_s: row.int(6)?,
    })
}

/// The response cache's eviction past its size cap (one bound value, the cap in bytes): every
/// row beyond the newest ones whose sizes add up to the cap, so the oldest go first. One
/// statement (a window function) in both dialects.
pub(super) fn cache_evict_sql(dialect: Dialect) -> String {
    format!(
        "DELETE FROM response_cache WHERE key IN (
            SELECT key FROM (
                SELECT key, SUM(size) OVER (ORDER BY created_at DESC, key DESC) AS running FROM response_cache
            ) AS newest_first WHERE running > {}
        )",
        // PostgreSQL sums `bigint` as `numeric`, and would read the cap as one too.
        match dialect {
            Dialect::Sqlite => dialect.placeholder(1),
            Dialect::Postgres => format!("{}::bigint", dialect.placeholder(1)),
        }
    )
}

/// The review calls of the ledger since a time (one bound value, Unix ms) and how many of them
/// were answered from the response cache: columns 0 all (float), 1 cached (float).
pub(super) fn cache_share_sql(dialect: Dialect) -> String {
    format!(
        "SELECT {}, {} FROM usage WHERE task = 'review' AND outcome = 'ok' AND ts >= {}",
        dialect.count_where("1 = 1"),
        dialect.count_where("cached != 0"),
        dialect.placeholder(1)
    )
}

/// Columns 1–11 of a [`report_sql`] row as a report row for `group`. Token sums and counts
/// are floats (exact below 2^53); the call count is an integer.
pub(super) fn report_row_from<C: Columns>(row: &C, group: String) -> Result<ReportRow, C::Error> {
    let n = |i: usize| -> Result<u64, C::Error> { Ok(row.real(i)?.max(0.0) as u64) };
    Ok(ReportRow {
        group,
        calls: u64::try_from(row.int(1)?).unwrap_or(0),
        input_tokens: n(2)?,
        cache_read_tokens: n(3)?,
        cache_write_tokens: n(4)?,
        cache_write_1h_tokens: n(5)?,
        output_tokens: n(6)?,
        reasoning_tokens: n(7)?,
        cost_usd: row.opt_real(8)?,
        unpriced_calls: n(9)?,
        failures: n(10)?,
        reported_calls: n(11)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::usage::report::GroupBy;

    fn query() -> ReportQuery {
        ReportQuery {
            since_ms: 5,
            until_ms: Some(9),
            group_by: GroupBy::Day,
            repo: None,
            workflow: Some("ci".into()),
            task: Some("review".into()),
        }
    }

    #[test]
    fn placeholders_are_numbered_in_the_order_of_the_values() {
        let (sqlite, values) = window_filter(&query(), Dialect::Sqlite);
        assert_eq!(sqlite, "WHERE ts >= ?1 AND ts < ?2 AND workflow = ?3 AND task = ?4");
        let (postgres, same) = window_filter(&query(), Dialect::Postgres);
        assert_eq!(postgres, "WHERE ts >= $1 AND ts < $2 AND workflow = $3 AND task = $4");
        assert_eq!(values, same);
        assert_eq!(values, vec![Param::Int(5), Param::Int(9), Param::Text("ci".into()), Param::Text("review".into())]);
    }

    #[test]
    fn a_value_never_enters_the_text() {
        let mut q = query();
        q.repo = Some("x'); DROP TABLE usage; --".into());
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (sql, values) = report_sql(&q, true, dialect);
            assert!(!sql.contains("DROP"), "{sql}");
            assert!(values.contains(&Param::Text("x'); DROP TABLE usage; --".into())));
        }
    }
}
