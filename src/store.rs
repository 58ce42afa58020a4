//! The state store: one SQLite database (bundled `rusqlite`) holding the usage ledger, the
//! circuit breaker's state and an event log. It outlives the process on purpose: the next step
//! of a workflow (a new process) must see a breaker that this step opened, and `cost report`
//! reads the usage that every earlier call appended.
//!
//! Parallel jobs on one runner share the file, so the connection runs in WAL mode (readers do
//! not block the writer) with a busy timeout (a writer waits for another instead of failing),
//! and every read-modify-write takes the write lock up front (`BEGIN IMMEDIATE`): two processes
//! never both read the old breaker row and lose one update. SQLite docs: "Write-Ahead Logging"
//! (<https://sqlite.org/wal.html>), `PRAGMA busy_timeout`, `BEGIN IMMEDIATE`.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] runs the missing steps in
//! one transaction, and a file written by a newer agentctl is refused rather than guessed at.
//!
//! Every timestamp is Unix time in **milliseconds** (`INTEGER`), so `cost report` can group with
//! `date(ts / 1000, 'unixepoch')` and the breaker's clock works across processes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::context::Env;
use crate::env_vars;
use crate::usage::report::{ModelSlice, ReportQuery, ReportRow};
use crate::usage::{Usage, UsageRecord};

use crate::env_vars::{HOME, RUNNER_TOOL_CACHE, XDG_DATA_HOME};

/// How long a connection waits for another process's write lock before failing (SQLITE_BUSY).
/// Generous: a usage record is tiny, so a wait this long means something is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps; `MIGRATIONS[i]` brings the file from `user_version = i` to `i + 1`.
/// Append only: a released step is never edited, since files in the wild already ran it.
const MIGRATIONS: &[&str] = &[
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
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Errors of the state store. Every message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder for the database could not be created (read-only file system, permissions).
    #[error("cannot create the folder for the state store {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open the file or set up the connection.
    #[error("cannot open the state store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file was migrated by a newer agentctl; we do not guess at its schema.
    #[error("the state store {path} has schema version {found}, newer than the {supported} this agentctl understands\nhelp: upgrade agentctl, or point `AGENTCTL_STATE` at another file")]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    /// A schema migration step failed; the transaction was rolled back.
    #[error("cannot migrate the state store {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    /// A read or write failed (including SQLITE_BUSY after [`BUSY_TIMEOUT`]).
    #[error("state store {path}: cannot {action}")]
    Query {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A row holds a value this build cannot read (e.g. an unknown breaker state).
    #[error("state store {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// No path for the database: none of `AGENTCTL_STATE`, config `state`, `RUNNER_TOOL_CACHE`,
    /// `XDG_DATA_HOME` or `HOME` is set.
    #[error("no path for the state store\nhelp: set AGENTCTL_STATE (or config `state`), XDG_DATA_HOME or HOME")]
    NoPath,
    /// `cost export` could not write a record out (a closed pipe, a full disk).
    #[error("cannot write usage exported from the state store {path}")]
    Export {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A thread panicked while holding the connection.
    #[error("state store {path}: connection unusable after a panic in another thread")]
    Poisoned { path: PathBuf },
}

impl StoreError {
    /// SQLITE_BUSY / SQLITE_LOCKED while opening or migrating: another process holds the lock.
    fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. } | StoreError::Migrate { source, .. } => source,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// One row of the event log: a retry, breaker change, fallback, or anything worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Row id, increasing.
    pub id: i64,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// What happened: `breaker`, `fallback`, ... (free text, lowercase by convention).
    pub kind: String,
    /// What it happened to, e.g. the breaker key `main/gpt-4o`.
    pub subject: String,
    /// Human-readable detail.
    pub detail: String,
}

/// An open state store. Cheap to share behind an `Arc`: the connection sits in a mutex, and
/// every operation is a short synchronous SQLite call (at most [`BUSY_TIMEOUT`] of waiting).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Now as Unix milliseconds (0 if the clock is before 1970; saturates far in the future).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The default database path when neither `AGENTCTL_STATE` nor config names one:
/// `$RUNNER_TOOL_CACHE/agentctl/state.db` on a runner (the tool cache survives between jobs on
/// self-hosted runners), else `$XDG_DATA_HOME/agentctl/state.db`, else
/// `$HOME/.local/share/agentctl/state.db` (the XDG default). `None` when none is set.
pub fn default_path(env: &Env) -> Option<PathBuf> {
    let under = |dir: &str| PathBuf::from(dir).join("agentctl").join("state.db");
    if let Some(dir) = env.get(RUNNER_TOOL_CACHE) {
        return Some(under(dir));
    }
    if let Some(dir) = env.get(XDG_DATA_HOME) {
        return Some(under(dir));
    }
    env.get(HOME).map(|home| PathBuf::from(home).join(".local").join("share").join("agentctl").join("state.db"))
}

/// The database path by precedence: `AGENTCTL_STATE` > the config's `state` path > [`default_path`].
pub fn resolve_path(env: &Env, config: Option<&Path>) -> Option<PathBuf> {
    env.get(env_vars::AGENTCTL_STATE)
        .map(PathBuf::from)
        .or_else(|| config.map(Path::to_path_buf))
        .or_else(|| default_path(env))
}

/// Opens the run's state store: the path by [`resolve_path`] precedence. A command opens it once
/// and hands it to both the circuit breaker and the ledger.
///
/// Errors: [`StoreError::NoPath`] when no path can be resolved, else those of [`Store::open`].
pub fn open_configured(env: &Env, config: Option<&Path>) -> Result<std::sync::Arc<Store>, StoreError> {
    let path = resolve_path(env, config).ok_or(StoreError::NoPath)?;
    Store::open(&path).map(std::sync::Arc::new)
}

impl Store {
    /// Opens (creating it and its folder if needed) the database at `path`, switches it to WAL
    /// with [`BUSY_TIMEOUT`] and `synchronous=NORMAL` (durable across a process crash; WAL makes
    /// that safe), and runs missing migrations.
    ///
    /// Errors: [`StoreError::CreateDir`] / [`StoreError::Open`] on a read-only or missing file
    /// system (callers then fall back to in-memory state, with a warning), [`StoreError::TooNew`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
                Err(e) if e.is_busy() && started.elapsed() < BUSY_TIMEOUT => {
                    attempt += 1;
                    let pause = Duration::from_millis(10 * u64::from(attempt.min(10)));
                    std::thread::sleep(pause.mul_f64(0.5 + rand::random::<f64>()));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        // busy_timeout first: switching to WAL itself needs a lock another process may hold.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot do WAL; SQLite then keeps the rollback
            // journal, which is slower but still correct with the busy timeout.
            crate::log::debug(&format!("state store {}: journal mode is {mode}, not WAL", path.display()));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        Self::setup(path.to_path_buf(), conn)
    }

    /// A private in-memory database (tests, and `--no-state` style runs). Nothing persists.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open { path: path.clone(), source })?;
        Self::setup(path, conn)
    }

    fn setup(path: PathBuf, mut conn: Connection) -> Result<Self, StoreError> {
        migrate(&path, &mut conn)?;
        Ok(Self { path, conn: Mutex::new(conn) })
    }

    /// The database file (`:memory:` for [`Store::open_in_memory`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned { path: self.path.clone() })
    }

    fn query_err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Query { path: self.path.clone(), action, source }
    }

    /// The schema version of the open file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.query_err("read the schema version"))
    }

    /// The journal mode in force (`wal` for a file opened by [`Store::open`] on a normal disk).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        let conn = self.conn()?;
        conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).map_err(self.query_err("read the journal mode"))
    }

    /// Appends one usage record to the ledger under a new random id ([`new_usage_id`]).
    /// Returns its row id.
    pub fn record_usage(&self, r: &UsageRecord) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        insert_usage(&conn, &new_usage_id(), r, false).map_err(self.query_err("append a usage record"))?;
        Ok(conn.last_insert_rowid())
    }

    /// Appends one usage record under the stable id `uid` (the ledger's own records, so a
    /// `--usage-out` file carries the same ids as the store).
    pub fn record_usage_with_id(&self, uid: &str, r: &UsageRecord) -> Result<(), StoreError> {
        let conn = self.conn()?;
        insert_usage(&conn, uid, r, false).map(|_| ()).map_err(self.query_err("append a usage record"))
    }

    /// `cost import`: inserts `records` (id, record) in **one** transaction, skipping ids the
    /// ledger has already. Returns (added, already present). Either all are applied or none.
    pub fn import_usage(&self, records: &[(String, UsageRecord)]) -> Result<(usize, usize), StoreError> {
        self.import_usage_iter(records.iter().map(|(uid, r)| (uid, r)))
    }

    /// [`Store::import_usage`] over records made one at a time (a large import, or building a
    /// big ledger for a benchmark, never holds them all): still **one** transaction, all or none.
    pub fn import_usage_iter<S, R>(
        &self,
        records: impl IntoIterator<Item = (S, R)>,
    ) -> Result<(usize, usize), StoreError>
    where
        S: AsRef<str>,
        R: std::borrow::Borrow<UsageRecord>,
    {
        let mut conn = self.conn()?;
        let err = self.query_err("import usage records");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let (mut added, mut seen) = (0, 0);
        for (uid, r) in records {
            seen += 1;
            if insert_usage(&tx, uid.as_ref(), r.borrow(), true).map_err(self.query_err("import usage records"))? {
                added += 1;
            }
        }
        tx.commit().map_err(self.query_err("commit imported usage records"))?;
        Ok((added, seen - added))
    }

    /// `cost export`: every record with `ts >= since_ms` with its stable id, oldest first,
    /// handed to `f` one at a time (a million rows are streamed, not collected).
    pub fn export_usage(
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
                let r = usage_from_row(row, 1)?;
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
            Some(source) => Err(StoreError::Export { path: self.path.clone(), source }),
            None => Ok(n),
        }
    }

    /// `cost report`: the usage rows `query` selects, aggregated per group in SQL (`GROUP BY`
    /// over the `usage_*` indices; nothing per row is loaded), ordered by group key.
    ///
    /// Unpriced calls (`cost_usd IS NULL`) add their tokens but no cost: a group whose calls are
    /// all unpriced has `cost_usd: None`.
    pub fn usage_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        Ok(self.aggregate(query, false)?.into_iter().map(|(row, _)| row).collect())
    }

    /// `cost report --reprice`: like [`Store::usage_report`] but one row per group, model and
    /// cost source (`reported` or not), so a caller can price each model's token sums with
    /// another table ([`crate::usage::report::reprice`]). Ordered by group key.
    pub fn usage_report_per_model(&self, query: &ReportQuery) -> Result<Vec<ModelSlice>, StoreError> {
        Ok(self
            .aggregate(query, true)?
            .into_iter()
            .map(|(row, by)| {
                let (model, reported) = by.unwrap_or_default();
                ModelSlice { model, reported, row }
            })
            .collect())
    }

    /// The report's `GROUP BY` in SQL; with `per_model` also by model and cost source.
    fn aggregate(&self, query: &ReportQuery, per_model: bool) -> Result<Vec<Aggregated>, StoreError> {
        let conn = self.conn()?;
        let (sql, values) = report_sql(query, per_model);
        let read = || -> rusqlite::Result<Vec<Aggregated>> {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |row| {
                // Token sums are TOTAL() floats (an imported record's huge count cannot overflow
                // them; exact below 2^53); the call counts are integers no larger than the rows.
                let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, f64>(i)?.max(0.0) as u64) };
                let report_row = ReportRow {
                    group: match row.get::<_, rusqlite::types::Value>(0)? {
                        rusqlite::types::Value::Integer(day) => crate::usage::report::day_label(day),
                        rusqlite::types::Value::Text(t) => t,
                        _ => "(none)".to_owned(),
                    },
                    calls: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    input_tokens: n(2)?,
                    cache_read_tokens: n(3)?,
                    cache_write_tokens: n(4)?,
                    output_tokens: n(5)?,
                    reasoning_tokens: n(6)?,
                    cost_usd: row.get(7)?,
                    unpriced_calls: n(8)?,
                    failures: n(9)?,
                    reported_calls: n(10)?,
                };
                let by = if per_model { Some((row.get(11)?, row.get::<_, i64>(12)? != 0)) } else { None };
                Ok((report_row, by))
            })?;
            rows.collect()
        };
        read().map_err(self.query_err("aggregate usage for the report"))
    }

    /// Spend in USD of the rows `query` selects (its `group_by` is ignored): the sum of the priced
    /// calls, 0 when there are none. Unpriced calls add nothing — a budget can only count what
    /// has a price.
    pub fn spent_usd(&self, query: &ReportQuery) -> Result<f64, StoreError> {
        let conn = self.conn()?;
        let (filter, values) = window_filter(query);
        let sql = format!("SELECT TOTAL(cost_usd) FROM usage {filter}");
        conn.query_row(&sql, rusqlite::params_from_iter(values), |row| row.get(0))
            .map_err(self.query_err("sum spend for a budget"))
    }

    /// Usage records with `ts >= since_ms`, oldest first.
    pub fn usage_since(&self, since_ms: i64) -> Result<Vec<UsageRecord>, StoreError> {
        let conn = self.conn()?;
        let read = || -> rusqlite::Result<Vec<UsageRecord>> {
            let mut stmt =
                conn.prepare(&format!("SELECT {USAGE_COLUMNS} FROM usage WHERE ts >= ?1 ORDER BY ts, id"))?;
            let rows = stmt.query_map([since_ms], |row| usage_from_row(row, 0))?;
            rows.collect()
        };
        read().map_err(self.query_err("read usage records"))
    }

    /// Appends one event (`kind`: `breaker`, `fallback`, ...; `subject`: what it concerns).
    pub fn record_event(&self, kind: &str, subject: &str, detail: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO events (ts, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms(), kind, subject, detail],
        )
        .map_err(self.query_err("append an event"))?;
        Ok(())
    }

    /// Events with `ts >= since_ms`, oldest first (for reports and tests).
    pub fn events(&self, since_ms: i64) -> Result<Vec<Event>, StoreError> {
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

    /// The stored breaker row for `key` (`provider/model`), `None` when never recorded.
    pub fn breaker_state(&self, key: &str) -> Result<Option<BreakerRow>, StoreError> {
        let conn = self.conn()?;
        read_breaker(&conn, key).map_err(self.query_err("read breaker state"))
    }

    /// Read-modify-write of the breaker row for `key` under the database write lock
    /// (`BEGIN IMMEDIATE`), so concurrent processes serialize instead of losing an update.
    ///
    /// `f` gets the current row (`None` if absent) and returns the row to store (`None` leaves
    /// it unchanged, and the transaction commits nothing) plus a value passed back to the caller.
    pub fn update_breaker<T>(
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

    /// A [`StoreError::Corrupt`] naming this database, for a row a caller cannot read.
    pub fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), detail }
    }
}

/// One aggregated report row and, per model, its `(model, reported)` key.
type Aggregated = (ReportRow, Option<(String, bool)>);

/// A new stable id for a usage record: 128 random bits as 32 lowercase hex digits.
pub fn new_usage_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The columns of a usage record, in [`usage_from_row`]'s order.
const USAGE_COLUMNS: &str = "ts, repo, workflow, run_id, job, pr, task, provider, model,
    input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
    cost_usd, price_table, latency_ms, outcome, cost_source";

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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
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
        ])?;
    Ok(n > 0)
}

/// A usage record from the [`USAGE_COLUMNS`] of `row`, starting at column `at`.
fn usage_from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UsageRecord> {
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(row.get::<_, i64>(at + i)?).unwrap_or(0)) };
    Ok(UsageRecord {
        ts_ms: row.get(at)?,
        repo: row.get(at + 1)?,
        workflow: row.get(at + 2)?,
        run_id: row.get(at + 3)?,
        job: row.get(at + 4)?,
        pr: row.get::<_, Option<i64>>(at + 5)?.map(|v| u64::try_from(v).unwrap_or(0)),
        task: row.get(at + 6)?,
        provider: row.get(at + 7)?,
        model: row.get(at + 8)?,
        usage: Usage {
            input_tokens: count(9)?,
            cached_input_tokens: count(10)?,
            cache_write_tokens: count(11)?,
            output_tokens: count(12)?,
            reasoning_tokens: count(13)?,
        },
        cost_usd: row.get(at + 14)?,
        price_table: row.get(at + 15)?,
        latency_ms: count(16)?,
        outcome: row.get(at + 17)?,
        cost_source: crate::usage::CostSource::from_column(&row.get::<_, String>(at + 18)?),
    })
}

/// The report's SQL and bound values; with `per_model` also grouped by model and cost source
/// (columns 12 and 13). Only fixed fragments are formatted into it; every value is a parameter.
fn report_sql(query: &ReportQuery, per_model: bool) -> (String, Vec<rusqlite::types::Value>) {
    let key = query.group_by.sql_key();
    let (filter, values) = window_filter(query);
    let (extra_columns, extra_group) =
        if per_model { (", model, cost_source = 'reported'", ", 12, 13") } else { ("", "") };
    let sql = format!(
        "SELECT {key} AS g, COUNT(*), TOTAL(input_tokens), TOTAL(cached_input_tokens),
            TOTAL(cache_write_tokens), TOTAL(output_tokens), TOTAL(reasoning_tokens),
            SUM(cost_usd), COUNT(*) - COUNT(cost_usd), SUM(outcome != 'ok'),
            SUM(cost_source = 'reported'){extra_columns}
         FROM usage {filter}
         GROUP BY g{extra_group} ORDER BY g{extra_group}"
    );
    (sql, values)
}

/// The `WHERE` clause of a [`ReportQuery`] and its bound values. Only the conditions in force
/// are written (fixed fragments; values are parameters), so SQLite can pick the `usage_ts` or a
/// `usage_<column>_ts` index for a range scan.
fn window_filter(q: &ReportQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clause = String::from("WHERE ts >= ?");
    let mut values = vec![Value::Integer(q.since_ms)];
    if let Some(until) = q.until_ms {
        clause.push_str(" AND ts < ?");
        values.push(Value::Integer(until));
    }
    for (column, value) in [("repo", &q.repo), ("workflow", &q.workflow), ("task", &q.task)] {
        if let Some(v) = value {
            clause.push_str(&format!(" AND {column} = ?"));
            values.push(Value::Text(v.clone()));
        }
    }
    (clause, values)
}

/// One row of the `breaker` table, as stored: the store keeps the circuit breaker's state
/// without knowing its rules ([`crate::resilience`] reads and writes these rows). Times are Unix
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRow {
    /// `closed`, `open` or `half-open`.
    pub state: String,
    /// Health failures since the last success.
    pub consecutive_failures: u32,
    /// When the breaker last opened.
    pub opened_at_ms: Option<i64>,
    /// Probe calls handed out while half-open.
    pub half_open_probes: u32,
    /// Last change.
    pub updated_at_ms: i64,
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
fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let version_of = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
    };
    let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
    // Fast path without the write lock: an up-to-date file (the usual case) needs no transaction.
    let found = version_of(conn).map_err(open_err)?;
    check_not_newer(path, found)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_err)?;
    let found = version_of(&tx).map_err(open_err)?;
    check_not_newer(path, found)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = i as i64 + 1;
        let migrate_err = |source| StoreError::Migrate { path: path.to_path_buf(), version, source };
        tx.execute_batch(sql).map_err(migrate_err)?;
        // user_version lives in the file header and is covered by the transaction.
        tx.pragma_update(None, "user_version", version).map_err(migrate_err)?;
    }
    tx.commit().map_err(|source| StoreError::Migrate { path: path.to_path_buf(), version: SCHEMA_VERSION, source })
}

fn check_not_newer(path: &Path, found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    /// Set in a child test process: the database it appends to (see `child_process_appends`).
    const CHILD_DB: &str = "AGENTCTL_TEST_STORE_CHILD_DB";

    fn record(task: &str, n: u64) -> UsageRecord {
        UsageRecord {
            ts_ms: now_ms(),
            repo: Some("octo/hello".into()),
            workflow: Some("review".into()),
            run_id: Some("42".into()),
            job: Some("ai".into()),
            pr: Some(7),
            task: task.into(),
            provider: "main".into(),
            model: "gpt-4o-mini".into(),
            usage: Usage {
                input_tokens: n,
                cached_input_tokens: 2,
                cache_write_tokens: 3,
                output_tokens: 4,
                reasoning_tokens: 1,
            },
            cost_usd: Some(0.000_15),
            cost_source: crate::usage::CostSource::Computed,
            price_table: Some("2025-01-01".into()),
            latency_ms: 1234,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn default_path_precedence() {
        let env = Env::from_pairs([("RUNNER_TOOL_CACHE", "/opt/cache"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(default_path(&env), Some(PathBuf::from("/opt/cache/agentctl/state.db")));
        let env = Env::from_pairs([("XDG_DATA_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(default_path(&env), Some(PathBuf::from("/x/agentctl/state.db")));
        let env = Env::from_pairs([("HOME", "/h"), ("XDG_DATA_HOME", "")]);
        assert_eq!(default_path(&env), Some(PathBuf::from("/h/.local/share/agentctl/state.db")));
        assert_eq!(default_path(&Env::from_pairs([])), None);
    }

    #[test]
    fn resolve_path_env_beats_config_beats_default() {
        let env = Env::from_pairs([("AGENTCTL_STATE", "/e.db"), ("HOME", "/h")]);
        assert_eq!(resolve_path(&env, Some(Path::new("/c.db"))), Some(PathBuf::from("/e.db")));
        let env = Env::from_pairs([("HOME", "/h")]);
        assert_eq!(resolve_path(&env, Some(Path::new("/c.db"))), Some(PathBuf::from("/c.db")));
        assert_eq!(resolve_path(&env, None), Some(PathBuf::from("/h/.local/share/agentctl/state.db")));
    }

    #[test]
    fn migrates_from_empty_and_reopens_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/state.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store.record_usage(&record("review", 1)).unwrap();
        drop(store);
        // Reopening runs no step twice (a second CREATE TABLE would fail) and keeps the data.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.usage_since(0).unwrap().len(), 1);
    }

    #[test]
    fn a_version_1_file_gains_indices_and_stable_ids_for_its_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO usage (ts, task, provider, model, input_tokens, cached_input_tokens, cache_write_tokens,
                output_tokens, reasoning_tokens, latency_ms, outcome) VALUES (5, 'review', 'main', 'm', 1, 0, 0, 1, 0, 1, 'ok')",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mut ids = vec![];
        store
            .export_usage(0, |id, _| {
                ids.push(id.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].len(), 32, "{ids:?}");
        // The id is stable from now on: a second export gives the same one.
        let mut again = vec![];
        store
            .export_usage(0, |id, _| {
                again.push(id.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(ids, again);
    }

    #[test]
    fn a_report_over_a_window_reads_only_the_covering_index() {
        use crate::usage::report::{GroupBy, ReportQuery};
        let store = Store::open_in_memory().unwrap();
        let q =
            ReportQuery { since_ms: 0, until_ms: None, group_by: GroupBy::Day, repo: None, workflow: None, task: None };
        let (sql, values) = report_sql(&q, false);
        let conn = store.conn().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains("COVERING INDEX usage_report_cover")), "{plan:?}");
    }

    #[test]
    fn a_version_3_file_marks_its_old_rows_computed_and_keeps_reported_costs() {
        use crate::usage::report::{GroupBy, ReportQuery};
        use crate::usage::CostSource;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO usage (uid, ts, task, provider, model, input_tokens, cached_input_tokens, cache_write_tokens,
                output_tokens, reasoning_tokens, cost_usd, latency_ms, outcome)
                VALUES ('old', 5, 'review', 'main', 'm', 1, 0, 0, 1, 0, 0.5, 1, 'ok')",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.usage_since(0).unwrap()[0].cost_source, CostSource::Computed);
        let mut reported = record("review", 1);
        reported.ts_ms = 6;
        reported.cost_source = CostSource::Reported;
        store.record_usage(&reported).unwrap();
        let rows = store.usage_since(0).unwrap();
        assert_eq!(rows[1], reported, "the source survives a round trip");
        let q = ReportQuery {
            since_ms: 0,
            until_ms: None,
            group_by: GroupBy::Task,
            repo: None,
            workflow: None,
            task: None,
        };
        let report = store.usage_report(&q).unwrap();
        assert_eq!((report[0].calls, report[0].reported_calls), (2, 1));
    }

    #[test]
    fn report_aggregates_per_group_and_keeps_unpriced_apart() {
        use crate::usage::report::{GroupBy, ReportQuery};
        let store = Store::open_in_memory().unwrap();
        let mut a = record("review", 10);
        a.ts_ms = 1_000;
        let mut b = a.clone();
        b.cost_usd = None;
        b.outcome = "timeout".into();
        let mut c = a.clone();
        c.task = "fix".into();
        c.ts_ms = 86_400_000 + 1;
        for r in [&a, &b, &c] {
            store.record_usage(r).unwrap();
        }
        let q = |group_by, task: Option<&str>| ReportQuery {
            since_ms: 0,
            until_ms: None,
            group_by,
            repo: None,
            workflow: None,
            task: task.map(str::to_owned),
        };
        let rows = store.usage_report(&q(GroupBy::Day, None)).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.group.as_str(), r.calls, r.unpriced_calls, r.failures)).collect();
        assert_eq!(got, vec![("1970-01-01", 2, 1, 1), ("1970-01-02", 1, 0, 0)]);
        assert_eq!(rows[0].input_tokens, 20);
        assert!((rows[0].cost_usd.unwrap() - 0.000_15).abs() < 1e-12);
        let rows = store.usage_report(&q(GroupBy::Task, Some("fix"))).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].group, "fix");
        let only_unpriced = Store::open_in_memory().unwrap();
        only_unpriced.record_usage(&b).unwrap();
        assert_eq!(only_unpriced.usage_report(&q(GroupBy::Model, None)).unwrap()[0].cost_usd, None);
        assert_eq!(only_unpriced.spent_usd(&q(GroupBy::Model, None)).unwrap(), 0.0);
    }

    #[test]
    fn opens_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(store.journal_mode().unwrap().to_ascii_lowercase(), "wal");
    }

    #[test]
    fn refuses_a_newer_schema_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("help:"), "{text}");
    }

    #[test]
    fn unwritable_folder_is_a_create_dir_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a folder should be: create_dir_all fails even when running as root.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("agentctl/state.db");
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("blocker"), "{err}");
    }

    #[test]
    fn usage_round_trip() {
        let store = Store::open_in_memory().unwrap();
        let mut r = record("review", 10);
        r.cost_usd = None;
        r.repo = None;
        r.pr = None;
        store.record_usage(&r).unwrap();
        assert_eq!(store.usage_since(0).unwrap(), vec![r.clone()]);
        assert!(store.usage_since(r.ts_ms + 1).unwrap().is_empty());
    }

    #[test]
    fn events_round_trip_in_order() {
        let store = Store::open_in_memory().unwrap();
        let before = now_ms();
        store.record_event("breaker", "main/gpt-4o", "closed -> open").unwrap();
        store.record_event("fallback", "main/gpt-4o", "using backup/llama3").unwrap();
        let events = store.events(before).unwrap();
        let got: Vec<_> = events.iter().map(|e| (e.kind.as_str(), e.subject.as_str(), e.detail.as_str())).collect();
        assert_eq!(
            got,
            vec![("breaker", "main/gpt-4o", "closed -> open"), ("fallback", "main/gpt-4o", "using backup/llama3")]
        );
        assert!(events[0].id < events[1].id && events[0].ts_ms >= before);
        assert!(store.events(now_ms() + 60_000).unwrap().is_empty());
    }

    #[test]
    fn update_breaker_inserts_then_updates_and_none_keeps() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.breaker_state("k").unwrap(), None);
        let rec = BreakerRow {
            state: "open".into(),
            consecutive_failures: 5,
            opened_at_ms: Some(1000),
            half_open_probes: 0,
            updated_at_ms: 1000,
        };
        let seen = store.update_breaker("k", |cur| (Some(rec.clone()), cur.is_none())).unwrap();
        assert!(seen);
        assert_eq!(store.breaker_state("k").unwrap(), Some(rec.clone()));
        store.update_breaker("k", |_| (None, ())).unwrap();
        assert_eq!(store.breaker_state("k").unwrap(), Some(rec));
    }

    const PER_WRITER: usize = 200;

    #[test]
    fn two_handles_in_two_threads_lose_no_usage_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let handles: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|task| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    for n in 0..PER_WRITER {
                        store.record_usage(&record(task, n as u64)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = Store::open(&path).unwrap().usage_since(0).unwrap();
        assert_eq!(all.iter().filter(|r| r.task == "a").count(), PER_WRITER);
        assert_eq!(all.iter().filter(|r| r.task == "b").count(), PER_WRITER);
    }

    #[test]
    fn concurrent_breaker_updates_from_two_handles_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let bump = |store: &Store| {
            store
                .update_breaker("k", |cur| {
                    let mut r = cur.cloned().unwrap_or(BreakerRow {
                        state: "closed".into(),
                        consecutive_failures: 0,
                        opened_at_ms: None,
                        half_open_probes: 0,
                        updated_at_ms: 0,
                    });
                    r.consecutive_failures += 1;
                    (Some(r), ())
                })
                .unwrap();
        };
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    for _ in 0..100 {
                        bump(&store);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let r = Store::open(&path).unwrap().breaker_state("k").unwrap().unwrap();
        assert_eq!(r.consecutive_failures, 200);
    }

    /// Not a test on its own: the body a child process runs for
    /// `child_process_and_thread_append_concurrently` (ignored unless that test starts it).
    #[test]
    #[ignore = "helper run as a child process by child_process_and_thread_append_concurrently"]
    fn child_appender() {
        let Ok(path) = std::env::var(CHILD_DB) else { return };
        let store = Store::open(Path::new(&path)).unwrap();
        for n in 0..PER_WRITER {
            store.record_usage(&record("child", n as u64)).unwrap();
        }
    }

    #[test]
    fn child_process_and_thread_append_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        // The test binary re-run with a filter on the helper: a real second process.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["store::tests::child_appender", "--exact", "--ignored", "--test-threads=1"])
            .env(CHILD_DB, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let store = Store::open(&path).unwrap();
        for n in 0..PER_WRITER {
            store.record_usage(&record("parent", n as u64)).unwrap();
        }
        assert!(child.wait().unwrap().success());
        let all = store.usage_since(0).unwrap();
        assert_eq!(all.iter().filter(|r| r.task == "parent").count(), PER_WRITER);
        assert_eq!(all.iter().filter(|r| r.task == "child").count(), PER_WRITER);
    }
}
