//! The SQLite backend (bundled `rusqlite`): one file per machine, the default.
//!
//! Parallel jobs on one runner share the file, so the connection runs in WAL mode (readers do
//! not block the writer) with a busy timeout (a writer waits for another instead of failing),
//! and every read-modify-write takes the write lock up front (`BEGIN IMMEDIATE`): two processes
//! never both read the old breaker row and lose one update. SQLite docs: "Write-Ahead Logging"
//! (<https://sqlite.org/wal.html>), `PRAGMA busy_timeout`, `BEGIN IMMEDIATE`.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] runs the missing steps in
//! one transaction, and a file written by a newer agentctl is refused rather than guessed at.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sql::{self, Dialect, Param, USAGE_COLUMNS};
use super::{
    check_not_newer, Aggregated, BreakerRow, CachedAnswer, DbError, Event, StoreError, BUSY_TIMEOUT, SCHEMA_VERSION,
};
use crate::usage::report::ReportQuery;
use crate::usage::Usage;
use crate::usage::UsageRecord;

/// Schema steps; `MIGRATIONS[i]` brings the file from `user_version = i` to `i + 1`.
/// Append only: a released step is never edited, since files in the wild already ran it.
/// `super::postgres::MIGRATIONS` holds the same steps in PostgreSQL's dialect.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the usage ledger (SPEC §3.4), breaker state (SPEC §2 Resilience) and the event log.
    "CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        repo TEXT,
        workflow TEXT,
        run_id TEXT,
        job TEXT,
        pr INTEGER,
        task TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_usd REAL NULL,
        price_table TEXT,
        latency_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX usage_ts ON usage (ts);
    CREATE TABLE breaker (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        opened_at INTEGER,
        half_open_probes INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events (ts);",
    // 2: `cost report --repo/--workflow` and budgets scoped to a repo, workflow or task read a
    // time window of one value; these indices keep that a range scan on a million-row ledger.
    "CREATE INDEX usage_repo_ts ON usage (repo, ts);
    CREATE INDEX usage_workflow_ts ON usage (workflow, ts);
    CREATE INDEX usage_task_ts ON usage (task, ts);",
    // 3: a stable id per usage record, so `cost import` of the same export twice adds nothing.
    // Rows from before get a random one now; from then on the id travels with the record.
    "ALTER TABLE usage ADD COLUMN uid TEXT;
    UPDATE usage SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
    CREATE UNIQUE INDEX usage_uid ON usage (uid);",
    // 4: where a row's cost came from: `reported` by the provider (claude's `total_cost_usd`,
    // the source of truth) or `computed` from tokens × the price table. Rows from before were
    // all computed.
    "ALTER TABLE usage ADD COLUMN cost_source TEXT NOT NULL DEFAULT 'computed';",
    // 5: `cost report` over a time window reads only this covering index (no row lookups): on a
    // 1,000,000-row ledger about a third faster than `usage_ts` plus the table (benches/cost).
    "CREATE INDEX usage_report_cover ON usage (ts, input_tokens, cached_input_tokens, cache_write_tokens,
        output_tokens, reasoning_tokens, cost_usd, outcome, cost_source);",
    // 6 (issue #20): the response cache (a validated answer per hex SHA-256 key, its usage,
    // when it was stored in Unix seconds, its size in bytes), and which ledger rows were
    // answered from it (no provider call, $0).
    "CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE INDEX response_cache_created ON response_cache (created_at);
    ALTER TABLE usage ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;",
    // 7 (issue #20): 1-hour prompt-cache writes, priced apart from 5-minute ones (2× input, not
    // 1.25×); rows from before wrote only 5-minute entries. The report's covering index is
    // rebuilt to cover the new column.
    "ALTER TABLE usage ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE response_cache ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
    DROP INDEX usage_report_cover;
    CREATE INDEX usage_report_cover ON usage (ts, input_tokens, cached_input_tokens, cache_write_tokens,
        cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_usd, outcome, cost_source);",
];

/// An open SQLite database: the connection sits in a mutex, and every operation is a short
/// synchronous call (at most [`BUSY_TIMEOUT`] of waiting).
#[derive(Debug)]
pub(super) struct Sqlite {
    /// The file, as named in every error.
    name: String,
    conn: Mutex<Connection>,
}

fn is_busy(e: &StoreError) -> bool {
    let source = match e {
        StoreError::Open { source: DbError::Sqlite(source), .. }
        | StoreError::Migrate { source: DbError::Sqlite(source), .. } => source,
        _ => return false,
    };
    matches!(source.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

impl Sqlite {
    /// Opens (creating it and its folder if needed) the database at `path`, switches it to WAL
    /// with [`BUSY_TIMEOUT`] and `synchronous=NORMAL` (durable across a process crash; WAL makes
    /// that safe), and runs missing migrations.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: path.to_path_buf(), source })?;
        }
        // Two processes opening a brand-new file at once can get SQLITE_BUSY from the switch to
        // WAL or the first migration: SQLite does not call the busy handler where waiting could
        // deadlock (a reader upgrading to a writer). The whole open is retried within the busy
        // timeout instead; the loser then finds the file migrated.
        let started = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            match Self::open_once(path) {
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    attempt += 1;
                    let pause = Duration::from_millis(10 * u64::from(attempt.min(10)));
                    std::thread::sleep(pause.mul_f64(0.5 + rand::random::<f64>()));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let open_err = |source: rusqlite::Error| StoreError::Open { store: name.clone(), source: source.into() };
        let conn = Connection::open(path).map_err(open_err)?;
        // busy_timeout first: switching to WAL itself needs a lock another process may hold.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot do WAL; SQLite then keeps the rollback
            // journal, which is slower but still correct with the busy timeout.
            crate::log::debug(&format!("state store {name}: journal mode is {mode}, not WAL"));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        Self::setup(name, conn)
    }

    /// A private in-memory database. Nothing persists.
    pub(super) fn open_in_memory() -> Result<Self, StoreError> {
        let name = ":memory:".to_owned();
        let conn = Connection::open_in_memory()
            .map_err(|source| StoreError::Open { store: name.clone(), source: source.into() })?;
        Self::setup(name, conn)
    }

    fn setup(name: String, mut conn: Connection) -> Result<Self, StoreError> {
        migrate(&name, &mut conn)?;
        Ok(Self { name, conn: Mutex::new(conn) })
    }

    /// The file, as errors name it (`:memory:` for an in-memory database).
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned { store: self.name.clone() })
    }

    fn query_err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Query { store: self.name.clone(), action, source: source.into() }
    }

    pub(super) fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.query_err("read the schema version"))
    }

    /// The journal mode in force (`wal` for a file on a normal disk).
    pub(super) fn journal_mode(&self) -> Result<String, StoreError> {
        let conn = self.conn()?;
        conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).map_err(self.query_err("read the journal mode"))
    }

    /// Inserts one record under `uid`; returns its row id.
    pub(super) fn record_usage(&self, uid: &str, r: &UsageRecord) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        insert_usage(&conn, uid, r, false).map_err(self.query_err("append a usage record"))?;
        Ok(conn.last_insert_rowid())
    }

    /// All of `records` in one `BEGIN IMMEDIATE` transaction, ids already present skipped.
    /// Returns (added, already present).
    pub(super) fn import_usage_iter<S, R>(
        &self,
        records: impl IntoIterator<Item = (S, R)>,
    ) -> Result<(usize, usize), StoreError>
    where
        S: AsRef<str>,
        R: std::borrow::Borrow<UsageRecord>,
    {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.query_err("import usage records"))?;
        let (mut added, mut seen) = (0, 0);
        for (uid, r) in records {
            seen += 1;
            // Dropping `tx` on this error rolls back every record before it.
            r.borrow().check().map_err(|problem| StoreError::InvalidRecord {
                store: self.name.clone(),
                index: Some(seen),
                problem,
            })?;
            if insert_usage(&tx, uid.as_ref(), r.borrow(), true).map_err(self.query_err("import usage records"))? {
                added += 1;
            }
        }
        tx.commit().map_err(self.query_err("commit imported usage records"))?;
        Ok((added, seen - added))
    }

    pub(super) fn export_usage(
        &self,
        since_ms: i64,
        mut f: impl FnMut(&str, &UsageRecord) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        let mut io_error = None;
        let mut n = 0;
        let mut read = || -> rusqlite::Result<()> {
            let mut stmt =
                conn.prepare(&format!("SELECT uid, {USAGE_COLUMNS} FROM usage WHERE ts >= ?1 ORDER BY ts, id"))?;
            let mut rows = stmt.query([since_ms])?;
            while let Some(row) = rows.next()? {
                let uid: String = row.get(0)?;
                let r = sql::usage_from(row, 1)?;
                if let Err(e) = f(&uid, &r) {
                    io_error = Some(e);
                    break;
                }
                n += 1;
            }
            Ok(())
        };
        read().map_err(self.query_err("export usage records"))?;
        match io_error {
            Some(source) => Err(StoreError::Export { store: self.name.clone(), source }),
            None => Ok(n),
        }
    }

    /// The report's `GROUP BY` ([`sql::report_sql`]); with `per_model` also by model and source.
    pub(super) fn aggregate(&self, query: &ReportQuery, per_model: bool) -> Result<Vec<Aggregated>, StoreError> {
        let conn = self.conn()?;
        let (sql, values) = sql::report_sql(query, per_model, Dialect::Sqlite);
        let read = || -> rusqlite::Result<Vec<Aggregated>> {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values.into_iter().map(value)), |row| {
                // Token sums are TOTAL() floats: an imported record's huge count cannot overflow them.
                let group = match row.get::<_, rusqlite::types::Value>(0)? {
                    rusqlite::types::Value::Integer(day) => crate::usage::report::day_label(day),
                    rusqlite::types::Value::Text(t) => t,
                    _ => "(none)".to_owned(),
                };
                let report_row = sql::report_row_from(row, group)?;
                let by = if per_model { Some((row.get(12)?, row.get::<_, i64>(13)? != 0)) } else { None };
                Ok((report_row, by))
            })?;
            rows.collect()
        };
        read().map_err(self.query_err("aggregate usage for the report"))
    }

    pub(super) fn spent_usd(&self, query: &ReportQuery) -> Result<f64, StoreError> {
        let conn = self.conn()?;
        let (filter, values) = sql::window_filter(query, Dialect::Sqlite);
        let sql = format!("SELECT TOTAL(cost_usd) FROM usage {filter}");
        conn.query_row(&sql, rusqlite::params_from_iter(values.into_iter().map(value)), |row| row.get(0))
            .map_err(self.query_err("sum spend for a budget"))
    }

    pub(super) fn usage_since(&self, since_ms: i64) -> Result<Vec<UsageRecord>, StoreError> {
        let conn = self.conn()?;
        let read = || -> rusqlite::Result<Vec<UsageRecord>> {
            let mut stmt =
                conn.prepare(&format!("SELECT {USAGE_COLUMNS} FROM usage WHERE ts >= ?1 ORDER BY ts, id"))?;
            let rows = stmt.query_map([since_ms], |row| sql::usage_from(row, 0))?;
            rows.collect()
        };
        read().map_err(self.query_err("read usage records"))
    }

    pub(super) fn record_event(&self, ts_ms: i64, kind: &str, subject: &str, detail: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO events (ts, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
            params![ts_ms, kind, subject, detail],
        )
        .map_err(self.query_err("append an event"))?;
        Ok(())
    }

    pub(super) fn events(&self, since_ms: i64) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn()?;
        let read = || -> rusqlite::Result<Vec<Event>> {
            let mut stmt =
                conn.prepare("SELECT id, ts, kind, subject, detail FROM events WHERE ts >= ?1 ORDER BY id")?;
            let rows = stmt.query_map([since_ms], |row| {
                Ok(Event {
                    id: row.get(0)?,
                    ts_ms: row.get(1)?,
                    kind: row.get(2)?,
                    subject: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(self.query_err("read events"))
    }

    pub(super) fn breaker_state(&self, key: &str) -> Result<Option<BreakerRow>, StoreError> {
        let conn = self.conn()?;
        read_breaker(&conn, key).map_err(self.query_err("read breaker state"))
    }

    /// Read-modify-write under the database write lock (`BEGIN IMMEDIATE`).
    pub(super) fn update_breaker<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&BreakerRow>) -> (Option<BreakerRow>, T),
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.query_err("lock the breaker state"))?;
        let current = read_breaker(&tx, key).map_err(self.query_err("read breaker state"))?;
        let (new, out) = f(current.as_ref());
        if let Some(r) = new {
            tx.execute(
                "INSERT INTO breaker (key, state, consecutive_failures, opened_at, half_open_probes, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET state = ?2, consecutive_failures = ?3, opened_at = ?4,
                    half_open_probes = ?5, updated_at = ?6",
                params![key, r.state, r.consecutive_failures, r.opened_at_ms, r.half_open_probes, r.updated_at_ms],
            )
            .map_err(self.query_err("write breaker state"))?;
        }
        tx.commit().map_err(self.query_err("commit breaker state"))?;
        Ok(out)
    }

    /// The cached answer under `key` stored at or after `not_before_s` (Unix seconds).
    pub(super) fn cache_get(&self, key: &str, not_before_s: i64) -> Result<Option<CachedAnswer>, StoreError> {
        let conn = self.conn()?;
        conn.query_row(
            &format!("SELECT {} FROM response_cache WHERE key = ?1 AND created_at >= ?2", sql::CACHE_COLUMNS),
            params![key, not_before_s],
            |row| sql::cached_answer_from(row),
        )
        .optional()
        .map_err(self.query_err("read the response cache"))
    }

    /// Stores (or replaces) `key`, then in the same write transaction drops the rows stored
    /// before `expired_before_s` and the oldest past `max_bytes`.
    pub(super) fn cache_put(
        &self,
        key: &str,
        value: &str,
        usage: &Usage,
        now_s: i64,
        expired_before_s: i64,
        max_bytes: u64,
    ) -> Result<(), StoreError> {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        let err = self.query_err("write the response cache");
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM response_cache WHERE created_at < ?1", [expired_before_s])?;
            tx.execute(
                "INSERT INTO response_cache (key, value, input_tokens, cached_input_tokens, cache_write_tokens,
                    output_tokens, reasoning_tokens, created_at, size, cache_write_1h_tokens)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (key) DO UPDATE SET value = ?2, input_tokens = ?3, cached_input_tokens = ?4,
                    cache_write_tokens = ?5, output_tokens = ?6, reasoning_tokens = ?7, created_at = ?8, size = ?9,
                    cache_write_1h_tokens = ?10",
                params![
                    key,
                    value,
                    int(usage.input_tokens),
                    int(usage.cached_input_tokens),
                    int(usage.cache_write_tokens),
                    int(usage.output_tokens),
                    int(usage.reasoning_tokens),
                    now_s,
                    int((key.len() + value.len()) as u64),
                    int(usage.cache_write_1h_tokens),
                ],
            )?;
            tx.execute(&sql::cache_evict_sql(Dialect::Sqlite), [int(max_bytes)])?;
            tx.commit()
        };
        write(&mut conn).map_err(err)
    }

    /// Deletes the row under `key` (a corrupt one).
    pub(super) fn cache_delete(&self, key: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute("DELETE FROM response_cache WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(self.query_err("delete from the response cache"))
    }

    /// (review calls, of which answered from the cache) since `since_ms`.
    pub(super) fn cache_share(&self, since_ms: i64) -> Result<(u64, u64), StoreError> {
        let conn = self.conn()?;
        conn.query_row(&sql::cache_share_sql(Dialect::Sqlite), [since_ms], |row| {
            Ok((row.get::<_, f64>(0)? as u64, row.get::<_, f64>(1)? as u64))
        })
        .map_err(self.query_err("read the response cache's hit rate"))
    }

    /// The connection, for tests that look at query plans.
    #[cfg(test)]
    pub(super) fn connection(&self) -> MutexGuard<'_, Connection> {
        self.conn().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A [`Param`] as a SQLite value.
fn value(p: Param) -> rusqlite::types::Value {
    match p {
        Param::Int(i) => rusqlite::types::Value::Integer(i),
        Param::Text(t) => rusqlite::types::Value::Text(t),
    }
}

/// Inserts `r` under `uid`; with `ignore_duplicate` an id already present is skipped. Returns
/// whether a row was added.
fn insert_usage(conn: &Connection, uid: &str, r: &UsageRecord, ignore_duplicate: bool) -> rusqlite::Result<bool> {
    // u64 counts above i64::MAX cannot happen for tokens; saturate rather than fail the call.
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let verb = if ignore_duplicate { "INSERT OR IGNORE" } else { "INSERT" };
    // Cached: an import of many records prepares the statement once.
    let n = conn
        .prepare_cached(&format!(
            "{verb} INTO usage (uid, {USAGE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
        ))?
        .execute(params![
            uid,
            r.ts_ms,
            r.repo,
            r.workflow,
            r.run_id,
            r.job,
            r.pr.map(int),
            r.task,
            r.provider,
            r.model,
            int(r.usage.input_tokens),
            int(r.usage.cached_input_tokens),
            int(r.usage.cache_write_tokens),
            int(r.usage.output_tokens),
            int(r.usage.reasoning_tokens),
            r.cost_usd,
            r.price_table,
            int(r.latency_ms),
            r.outcome,
            r.cost_source.as_str(),
            i64::from(r.cached),
            int(r.usage.cache_write_1h_tokens),
        ])?;
    Ok(n > 0)
}

impl sql::Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn real(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }
    fn opt_real(&self, i: usize) -> rusqlite::Result<Option<f64>> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
}

fn read_breaker(conn: &Connection, key: &str) -> rusqlite::Result<Option<BreakerRow>> {
    conn.query_row(
        "SELECT state, consecutive_failures, opened_at, half_open_probes, updated_at FROM breaker WHERE key = ?1",
        [key],
        |row| {
            Ok(BreakerRow {
                state: row.get(0)?,
                consecutive_failures: row.get(1)?,
                opened_at_ms: row.get(2)?,
                half_open_probes: row.get(3)?,
                updated_at_ms: row.get(4)?,
            })
        },
    )
    .optional()
}

/// Brings the file up to [`SCHEMA_VERSION`]. The version is read again inside a write
/// transaction, so two processes opening a fresh file at once run each step exactly once.
fn migrate(name: &str, conn: &mut Connection) -> Result<(), StoreError> {
    let version_of = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
    };
    let open_err = |source: rusqlite::Error| StoreError::Open { store: name.to_owned(), source: source.into() };
    // Fast path without the write lock: an up-to-date file (the usual case) needs no transaction.
    let found = version_of(conn).map_err(open_err)?;
    check_not_newer(name, found)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_err)?;
    let found = version_of(&tx).map_err(open_err)?;
    check_not_newer(name, found)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = i as i64 + 1;
        let migrate_err =
            |source: rusqlite::Error| StoreError::Migrate { store: name.to_owned(), version, source: source.into() };
        tx.execute_batch(sql).map_err(migrate_err)?;
        // user_version lives in the file header and is covered by the transaction.
        tx.pragma_update(None, "user_version", version).map_err(migrate_err)?;
    }
    tx.commit().map_err(|source| StoreError::Migrate {
        store: name.to_owned(),
        version: SCHEMA_VERSION,
        source: source.into(),
    })
}
