//! The state store: the usage ledger, the circuit breaker's state and an event log. It outlives
//! the process on purpose: the next step of a workflow (a new process) must see a breaker that
//! this step opened, and `cost report` reads the usage that every earlier call appended.
//!
//! Two backends behind one [`Store`], with the same tables and the same versioned migrations:
//! - a SQLite file (bundled `rusqlite`; the default, needs nothing): the `sqlite` module's doc
//!   has how parallel jobs on one machine share it;
//! - a PostgreSQL server (`state: postgres://…` or `AGENTCTL_STATE` holding such a URL), for a
//!   fleet of self-hosted runners that shares one ledger, one budget and one breaker state:
//!   [`Location`] has the URL rules (passwords, TLS), `postgres`'s module doc the rest.
//!
//! Every timestamp is Unix time in **milliseconds** (integer), so `cost report` can group by
//! day and the breaker's clock works across processes.

mod location;
mod postgres;
mod sql;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::context::Env;
use crate::env_vars;
use crate::usage::report::{ModelSlice, ReportQuery, ReportRow};
use crate::usage::UsageRecord;

use crate::env_vars::{HOME, RUNNER_TOOL_CACHE, XDG_DATA_HOME};

pub use location::{
    check_url, env_secrets, is_postgres_url, Location, PgLocation, StateSource, DEFAULT_CONNECT_TIMEOUT,
};

/// How long a SQLite connection waits for another process's write lock before failing
/// (SQLITE_BUSY). Generous: a usage record is tiny, so a wait this long means something is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this build writes and understands (the number of migration steps, the
/// same for both backends).
pub const SCHEMA_VERSION: i64 = sqlite::MIGRATIONS.len() as i64;

const _: () = assert!(sqlite::MIGRATIONS.len() == postgres::MIGRATIONS.len(), "one PostgreSQL step per SQLite step");

/// A database error of either backend (or the I/O of starting PostgreSQL's connection thread).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Io(std::io::Error),
}

/// Errors of the state store. Every message names the store: the database file, or the
/// PostgreSQL URL without its password ([`PgLocation::name`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder for the database could not be created (read-only file system, permissions).
    #[error("cannot create the folder for the state store {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or the connection set up.
    #[error("cannot open the state store {store}")]
    Open {
        store: String,
        #[source]
        source: DbError,
    },
    /// The PostgreSQL server could not be reached, or turned the connection down for a reason
    /// other than credentials (TLS, no such database). `cause` is the driver's chain of errors,
    /// `help` what to check for that cause.
    #[error("cannot connect to the PostgreSQL state store {store} at {address}: {cause}\nhelp: {help}")]
    Connect { store: String, address: String, cause: String, help: String },
    /// The PostgreSQL server refused the credentials, or wanted a password and there was none.
    #[error("the PostgreSQL state store {store} refused the credentials: {cause}\nhelp: give the password in PGPASSWORD or in the URL of AGENTCTL_STATE (set from a secret), never in the config file")]
    Auth { store: String, cause: String },
    /// A PostgreSQL URL that cannot be used as written; `detail` never holds the password.
    #[error("the state store URL in {origin} cannot be used: {detail}")]
    BadUrl { origin: &'static str, detail: String },
    /// The database was migrated by a newer agentctl; we do not guess at its schema.
    #[error("the state store {store} has schema version {found}, newer than the {supported} this agentctl understands\nhelp: upgrade agentctl, or point `AGENTCTL_STATE` at another store")]
    TooNew { store: String, found: i64, supported: i64 },
    /// A schema migration step failed; the transaction was rolled back.
    #[error("cannot migrate the state store {store} to schema version {version}")]
    Migrate {
        store: String,
        version: i64,
        #[source]
        source: DbError,
    },
    /// A read or write failed (including SQLITE_BUSY after [`BUSY_TIMEOUT`]).
    #[error("state store {store}: cannot {action}")]
    Query {
        store: String,
        action: &'static str,
        #[source]
        source: DbError,
    },
    /// A row holds a value this build cannot read (e.g. an unknown breaker state).
    #[error("state store {store}: {detail}")]
    Corrupt { store: String, detail: String },
    /// No path for the database: none of `AGENTCTL_STATE`, config `state`, `RUNNER_TOOL_CACHE`,
    /// `XDG_DATA_HOME` or `HOME` is set.
    #[error("no path for the state store\nhelp: set AGENTCTL_STATE (or config `state`), XDG_DATA_HOME or HOME")]
    NoPath,
    /// `cost export` could not write a record out (a closed pipe, a full disk).
    #[error("cannot write usage exported from the state store {store}")]
    Export {
        store: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection is gone: a thread panicked while holding the SQLite connection, or the
    /// PostgreSQL connection's thread ended.
    #[error("state store {store}: the connection is unusable (a thread that held it ended)")]
    Poisoned { store: String },
    /// A usage record that fails [`UsageRecord::check`] (a negative, NaN or infinite cost, an
    /// absurd token count): refused before anything is written; an import adds none of its
    /// records. `index` is the record's 1-based position in an import (`None` for one record).
    #[error("state store {store}: refusing usage record{}: {problem}", index.map(|i| format!(" {i}")).unwrap_or_default())]
    InvalidRecord { store: String, index: Option<usize>, problem: crate::usage::RecordProblem },
}

impl StoreError {
    /// The documented exit code for this error: 4 when a server refused the credentials, 2
    /// for a URL that cannot be used as written or a usage record that is refused, else 1.
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            StoreError::Auth { .. } => crate::exit::Exit::Auth,
            StoreError::BadUrl { .. } | StoreError::InvalidRecord { .. } => crate::exit::Exit::Usage,
            _ => crate::exit::Exit::Failure,
        }
    }

    /// Whether a command must stop on this error rather than run on without a store (as it does
    /// for a SQLite file it cannot write, with a warning): a PostgreSQL store that cannot be
    /// reached or refuses the credentials, or a URL that cannot be used. Such a store is named
    /// on purpose, for a fleet's shared ledger and budget; running without it would spend
    /// outside that budget.
    pub fn ends_the_run(&self) -> bool {
        matches!(self, StoreError::Connect { .. } | StoreError::Auth { .. } | StoreError::BadUrl { .. })
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

/// One row of the response cache (`review`'s answers, issue #20), as stored: the store keeps
/// it without knowing what it means ([`crate::review::cache`] builds keys and checks values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// The validated structured answer, JSON text.
    pub value: String,
    /// The tokens the answer cost when it was asked (kept to say what a hit saved).
    pub usage: crate::usage::Usage,
    /// When it was stored, Unix **seconds**.
    pub created_at_s: i64,
}

/// One aggregated report row and, per model, its `(model, reported)` key.
type Aggregated = (ReportRow, Option<(String, bool)>);

/// An open state store. Cheap to share behind an `Arc`: every operation is a short synchronous
/// call (a SQLite statement behind a mutex, or a round trip to the PostgreSQL connection's
/// thread), usable inside or outside a tokio runtime.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// A new stable id for a usage record: 128 random bits as 32 lowercase hex digits.
pub fn new_usage_id() -> String {
    format!("{:032x}", rand::random::<u128>())
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

/// The store by precedence: `AGENTCTL_STATE` > the config's `state` > [`default_path`]. Each
/// is a file path or a PostgreSQL URL ([`Location::parse`]). `Ok(None)` when none is set.
///
/// Errors: [`StoreError::BadUrl`] for a URL that cannot be used as written.
pub fn resolve(env: &Env, config: Option<&Path>) -> Result<Option<Location>, StoreError> {
    if let Some(text) = env.get(env_vars::AGENTCTL_STATE) {
        return Location::parse(Path::new(text), StateSource::Env, env).map(Some);
    }
    if let Some(text) = config {
        return Location::parse(text, StateSource::Config, env).map(Some);
    }
    Ok(default_path(env).map(Location::File))
}

/// Opens the run's state store by [`resolve`] precedence. A command opens it once and hands
/// it to both the circuit breaker and the ledger.
///
/// Errors: [`StoreError::NoPath`] when nothing names a store, else those of [`resolve`] and
/// [`Store::open_location`].
pub fn open_configured(env: &Env, config: Option<&Path>) -> Result<Arc<Store>, StoreError> {
    let location = resolve(env, config)?.ok_or(StoreError::NoPath)?;
    Store::open_location(&location).map(Arc::new)
}

/// The store of a command with a `--state` flag: the flag (where a URL may not hold a
/// password, [`StateSource::Flag`]) > [`resolve`].
///
/// Errors: [`StoreError::NoPath`] when nothing names a store, else those of [`Location::parse`].
pub fn locate(flag: Option<&Path>, env: &Env, config: Option<&Path>) -> Result<Location, StoreError> {
    match flag {
        Some(flag) => Location::parse(flag, StateSource::Flag, env),
        None => resolve(env, config)?.ok_or(StoreError::NoPath),
    }
}

/// The ledger at `location` for a read-only command (`cost report|check|export`), or `None`
/// when its file does not exist yet: nothing was ever recorded, and reading does not create
/// it. A PostgreSQL ledger is always connected to.
///
/// Errors: those of [`Store::open_location`].
pub fn open_for_reading(location: &Location) -> Result<Option<Store>, StoreError> {
    if !location.may_hold_state() {
        crate::log::debug(&format!("state store {} does not exist: no usage recorded", location.name()));
        return Ok(None);
    }
    Ok(Some(Store::open_location(location)?))
}

fn check_not_newer(store: &str, found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { store: store.to_owned(), found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

impl Store {
    /// Opens (creating it and its folder if needed) the SQLite database at `path` in WAL mode
    /// and runs missing migrations.
    ///
    /// Errors: [`StoreError::CreateDir`] / [`StoreError::Open`] on a read-only or missing file
    /// system (callers then fall back to in-memory state, with a warning), [`StoreError::TooNew`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        sqlite::Sqlite::open(path).map(|s| Self { backend: Backend::Sqlite(s) })
    }

    /// Opens the store at `location`: a SQLite file ([`Store::open`]) or a PostgreSQL server,
    /// connected (TLS as its URL asks) and migrated.
    ///
    /// Errors: those of [`Store::open`]; for PostgreSQL [`StoreError::Connect`] (naming
    /// `host:port`), [`StoreError::Auth`], [`StoreError::BadUrl`], [`StoreError::TooNew`],
    /// [`StoreError::Migrate`].
    pub fn open_location(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::File(path) => Self::open(path),
            Location::Postgres(pg) => postgres::Postgres::connect(pg).map(|p| Self { backend: Backend::Postgres(p) }),
        }
    }

    /// A private in-memory SQLite database (tests, and `--no-state` style runs). Nothing persists.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        sqlite::Sqlite::open_in_memory().map(|s| Self { backend: Backend::Sqlite(s) })
    }

    /// What messages call the store: the SQLite file (`:memory:` for [`Store::open_in_memory`])
    /// or the PostgreSQL URL without its password.
    pub fn name(&self) -> &str {
        match &self.backend {
            Backend::Sqlite(s) => s.name(),
            Backend::Postgres(p) => p.name(),
        }
    }

    /// The schema version of the open store (SQLite's `PRAGMA user_version`, PostgreSQL's
    /// `agentctl.schema_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.schema_version(),
            Backend::Postgres(p) => p.schema_version(),
        }
    }

    /// SQLite's journal mode in force (`wal` for a file opened by [`Store::open`] on a normal
    /// disk); `None` for PostgreSQL, which has no such thing.
    pub fn journal_mode(&self) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.journal_mode().map(Some),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Appends one usage record to the ledger under a new random id ([`new_usage_id`]).
    /// Returns its row id.
    pub fn record_usage(&self, r: &UsageRecord) -> Result<i64, StoreError> {
        self.record_usage_as(&new_usage_id(), r)
    }

    /// Appends one usage record under the stable id `uid` (the ledger's own records, so a
    /// `--usage-out` file carries the same ids as the store).
    pub fn record_usage_with_id(&self, uid: &str, r: &UsageRecord) -> Result<(), StoreError> {
        self.record_usage_as(uid, r).map(|_| ())
    }

    fn record_usage_as(&self, uid: &str, r: &UsageRecord) -> Result<i64, StoreError> {
        r.check().map_err(|problem| StoreError::InvalidRecord {
            store: self.name().to_owned(),
            index: None,
            problem,
        })?;
        match &self.backend {
            Backend::Sqlite(s) => s.record_usage(uid, r),
            Backend::Postgres(p) => p.record_usage(uid, r),
        }
    }

    /// `cost import`: inserts `records` (id, record) in **one** transaction, skipping ids the
    /// ledger has already. Returns (added, already present). Either all are applied or none:
    /// a record failing [`UsageRecord::check`] is [`StoreError::InvalidRecord`] and adds nothing.
    pub fn import_usage(&self, records: &[(String, UsageRecord)]) -> Result<(usize, usize), StoreError> {
        self.import_usage_iter(records.iter().map(|(uid, r)| (uid, r)))
    }

    /// [`Store::import_usage`] over records made one at a time: still **one** transaction, all
    /// or none. SQLite never holds them all (a large import, a benchmark's big ledger);
    /// PostgreSQL collects them to hand them to its connection's thread.
    pub fn import_usage_iter<S, R>(
        &self,
        records: impl IntoIterator<Item = (S, R)>,
    ) -> Result<(usize, usize), StoreError>
    where
        S: AsRef<str>,
        R: std::borrow::Borrow<UsageRecord>,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.import_usage_iter(records),
            Backend::Postgres(p) => {
                let records: Vec<(String, UsageRecord)> =
                    records.into_iter().map(|(uid, r)| (uid.as_ref().to_owned(), r.borrow().clone())).collect();
                for (i, (_, r)) in records.iter().enumerate() {
                    r.check().map_err(|problem| StoreError::InvalidRecord {
                        store: self.name().to_owned(),
                        index: Some(i + 1),
                        problem,
                    })?;
                }
                p.import_usage(records)
            }
        }
    }

    /// `cost export`: every record with `ts >= since_ms` with its stable id, oldest first,
    /// handed to `f` one at a time (a million rows are streamed, not collected).
    pub fn export_usage(
        &self,
        since_ms: i64,
        f: impl FnMut(&str, &UsageRecord) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.export_usage(since_ms, f),
            Backend::Postgres(p) => p.export_usage(since_ms, f),
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

    fn aggregate(&self, query: &ReportQuery, per_model: bool) -> Result<Vec<Aggregated>, StoreError> {
        let mut rows = match &self.backend {
            Backend::Sqlite(s) => s.aggregate(query, per_model),
            Backend::Postgres(p) => p.aggregate(query, per_model),
        }?;
        if matches!(query.group_by, crate::usage::report::GroupBy::Pr) {
            // The key is text in SQL (`(none)` for no PR): PR 9 before PR 10, no PR last. Stable,
            // so the per-model order within a group stays.
            rows.sort_by_key(|(row, _)| row.group.parse::<u64>().map_or((1, 0), |n| (0, n)));
        }
        Ok(rows)
    }

    /// Spend in USD of the rows `query` selects (its `group_by` is ignored): the sum of the priced
    /// calls, 0 when there are none. Unpriced calls add nothing — a budget can only count what
    /// has a price.
    pub fn spent_usd(&self, query: &ReportQuery) -> Result<f64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.spent_usd(query),
            Backend::Postgres(p) => p.spent_usd(query),
        }
    }

    /// Usage records with `ts >= since_ms`, oldest first.
    pub fn usage_since(&self, since_ms: i64) -> Result<Vec<UsageRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.usage_since(since_ms),
            Backend::Postgres(p) => p.usage_since(since_ms),
        }
    }

    /// Appends one event (`kind`: `breaker`, `fallback`, ...; `subject`: what it concerns).
    pub fn record_event(&self, kind: &str, subject: &str, detail: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record_event(crate::clock::now_ms(), kind, subject, detail),
            Backend::Postgres(p) => p.record_event(crate::clock::now_ms(), kind, subject, detail),
        }
    }

    /// Events with `ts >= since_ms`, oldest first (for reports and tests).
    pub fn events(&self, since_ms: i64) -> Result<Vec<Event>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.events(since_ms),
            Backend::Postgres(p) => p.events(since_ms),
        }
    }

    /// The stored breaker row for `key` (`provider/model`), `None` when never recorded.
    pub fn breaker_state(&self, key: &str) -> Result<Option<BreakerRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.breaker_state(key),
            Backend::Postgres(p) => p.breaker_state(key),
        }
    }

    /// Read-modify-write of the breaker row for `key` under a write lock (SQLite's
    /// `BEGIN IMMEDIATE`; a PostgreSQL advisory lock on the key), so concurrent processes
    /// serialize instead of losing an update.
    ///
    /// `f` gets the current row (`None` if absent) and returns the row to store (`None` leaves
    /// it unchanged) plus a value passed back to the caller.
    pub fn update_breaker<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&BreakerRow>) -> (Option<BreakerRow>, T),
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.update_breaker(key, f),
            Backend::Postgres(p) => p.update_breaker(key, f),
        }
    }

    /// The response-cache row under `key` (a hex SHA-256) stored at or after `not_before_s`
    /// (Unix seconds: now minus the TTL); `None` when absent or older.
    pub fn cache_get(&self, key: &str, not_before_s: i64) -> Result<Option<CachedAnswer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cache_get(key, not_before_s),
            Backend::Postgres(p) => p.cache_get(key, not_before_s),
        }
    }

    /// Stores `value` (JSON text) and its `usage` under `key` at `now_s` (Unix seconds),
    /// replacing an older row, then evicts in the same transaction: rows stored before
    /// `expired_before_s`, then the oldest until the rows' sizes (key + value bytes) add up to
    /// at most `max_bytes`.
    pub fn cache_put(
        &self,
        key: &str,
        value: &str,
        usage: &crate::usage::Usage,
        now_s: i64,
        expired_before_s: i64,
        max_bytes: u64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cache_put(key, value, usage, now_s, expired_before_s, max_bytes),
            Backend::Postgres(p) => p.cache_put(key, value, usage, now_s, expired_before_s, max_bytes),
        }
    }

    /// Deletes the response-cache row under `key` (one that cannot be replayed).
    pub fn cache_delete(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cache_delete(key),
            Backend::Postgres(p) => p.cache_delete(key),
        }
    }

    /// `(calls, from cache)`: the successful `review` calls in the ledger since `since_ms` (Unix
    /// ms) and how many of them the response cache answered (`cost estimate`'s hit rate).
    pub fn cache_share(&self, since_ms: i64) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cache_share(since_ms),
            Backend::Postgres(p) => p.cache_share(since_ms),
        }
    }

    /// A [`StoreError::Corrupt`] naming this store, for a row a caller cannot read.
    pub fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { store: self.name().to_owned(), detail }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::usage::Usage;
    use rusqlite::Connection;
    use sqlite::MIGRATIONS;

    /// Set in a child test process: the database it appends to (see `child_process_appends`).
    const CHILD_DB: &str = "AGENTCTL_TEST_STORE_CHILD_DB";

    fn record(task: &str, n: u64) -> UsageRecord {
        UsageRecord {
            ts_ms: crate::clock::now_ms(),
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
                cache_write_1h_tokens: 5,
                output_tokens: 4,
                reasoning_tokens: 1,
            },
            cost_usd: Some(0.000_15),
            cost_source: crate::usage::CostSource::Computed,
            price_table: Some("2025-01-01".into()),
            latency_ms: 1234,
            outcome: "ok".into(),
            cached: false,
        }
    }

    /// Regression: a negative cost reached the ledger and turned a blocked budget into "ok".
    /// Negative, NaN and infinite costs and absurd token counts are refused at record time and
    /// at import, where the whole import adds nothing.
    #[test]
    fn negative_nan_or_infinite_costs_and_absurd_token_counts_are_refused_and_an_import_adds_nothing() {
        let store = Store::open_in_memory().unwrap();
        let mut bad = Vec::new();
        for cost in [-1e9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.01] {
            let mut r = record("review", 1);
            r.cost_usd = Some(cost);
            bad.push(r);
        }
        let mut tokens = record("review", crate::usage::MAX_TOKENS_PER_RECORD + 1);
        tokens.usage.output_tokens = 1;
        bad.push(tokens);
        for r in &bad {
            let e = store.record_usage(r).unwrap_err();
            assert!(matches!(e, StoreError::InvalidRecord { index: None, .. }), "{e}");
            assert_eq!(e.exit(), crate::exit::Exit::Usage);
            let import = vec![("ok1".to_string(), record("review", 1)), ("bad".to_string(), r.clone())];
            let e = store.import_usage(&import).unwrap_err();
            assert!(matches!(e, StoreError::InvalidRecord { index: Some(2), .. }), "{e}");
            let field = if r.cost_usd == Some(0.000_15) { "usage.input_tokens" } else { "cost_usd" };
            assert!(e.to_string().contains(&format!("record 2: `{field}`")), "{e}");
        }
        assert!(store.usage_since(0).unwrap().is_empty(), "nothing was written");
        let mut free = record("review", 1);
        free.cost_usd = Some(0.0);
        store.record_usage(&free).unwrap();
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

    fn file(location: Option<Location>) -> Option<PathBuf> {
        match location {
            Some(Location::File(p)) => Some(p),
            Some(other) => panic!("not a file: {other:?}"),
            None => None,
        }
    }

    #[test]
    fn resolve_env_beats_config_beats_default() {
        let env = Env::from_pairs([("AGENTCTL_STATE", "/e.db"), ("HOME", "/h")]);
        assert_eq!(file(resolve(&env, Some(Path::new("/c.db"))).unwrap()), Some(PathBuf::from("/e.db")));
        let env = Env::from_pairs([("HOME", "/h")]);
        assert_eq!(file(resolve(&env, Some(Path::new("/c.db"))).unwrap()), Some(PathBuf::from("/c.db")));
        assert_eq!(file(resolve(&env, None).unwrap()), Some(PathBuf::from("/h/.local/share/agentctl/state.db")));
        let env = Env::from_pairs([("AGENTCTL_STATE", "postgres://ci@db.internal/ledger?sslmode=require")]);
        let Some(Location::Postgres(pg)) = resolve(&env, Some(Path::new("/c.db"))).unwrap() else { panic!() };
        assert_eq!(pg.name(), "postgres://ci@db.internal:5432/ledger");
        let env = Env::from_pairs([("HOME", "/h")]);
        let err = resolve(&env, Some(Path::new("postgres://ci:pw@db/ledger"))).unwrap_err();
        assert_eq!(err.exit(), crate::exit::Exit::Usage, "{err}");
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
        let (sql, values) = sql::report_sql(&q, false, sql::Dialect::Sqlite);
        let Backend::Sqlite(sqlite) = &store.backend else { unreachable!() };
        let conn = sqlite.connection();
        let values: Vec<i64> =
            values.into_iter().map(|v| if let sql::Param::Int(i) = v { i } else { unreachable!() }).collect();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains("COVERING INDEX usage_report_cover")), "{plan:?}");
    }

    /// A database file stopped at schema `version` (its first `version` migrations), holding one
    /// usage row `old` at 5 ms with `cache_write` cache-write tokens.
    fn file_at_version(dir: &std::path::Path, version: usize, cache_write: i64) -> (std::path::PathBuf, Connection) {
        let path = dir.join(format!("v{version}.db"));
        let conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..version] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64).unwrap();
        conn.execute(
            "INSERT INTO usage (uid, ts, task, provider, model, input_tokens, cached_input_tokens, cache_write_tokens,
                output_tokens, reasoning_tokens, cost_usd, latency_ms, outcome)
                VALUES ('old', 5, 'review', 'main', 'm', 1, 0, ?1, 1, 0, 0.5, 1, 'ok')",
            [cache_write],
        )
        .unwrap();
        (path, conn)
    }

    /// The report grouped by task over all time.
    fn by_task() -> crate::usage::report::ReportQuery {
        use crate::usage::report::{GroupBy, ReportQuery};
        ReportQuery { since_ms: 0, until_ms: None, group_by: GroupBy::Task, repo: None, workflow: None, task: None }
    }

    #[test]
    fn a_version_3_file_marks_its_old_rows_computed_and_keeps_reported_costs() {
        use crate::usage::CostSource;
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = file_at_version(dir.path(), 3, 0);
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
        let report = store.usage_report(&by_task()).unwrap();
        assert_eq!((report[0].calls, report[0].reported_calls), (2, 1));
    }

    #[test]
    fn a_version_6_file_reads_its_old_rows_with_no_1h_cache_writes_and_keeps_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = file_at_version(dir.path(), 6, 4);
        conn.execute(
            "INSERT INTO response_cache (key, value, input_tokens, cached_input_tokens, cache_write_tokens,
                output_tokens, reasoning_tokens, created_at, size) VALUES ('k', '{}', 1, 0, 0, 1, 0, 9, 3)",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let old = &store.usage_since(0).unwrap()[0];
        assert_eq!((old.usage.cache_write_tokens, old.usage.cache_write_1h_tokens), (4, 0));
        assert_eq!(store.cache_get("k", 0).unwrap().unwrap().usage.cache_write_1h_tokens, 0);
        let mut new = record("review", 1);
        new.ts_ms = 6;
        store.record_usage(&new).unwrap();
        assert_eq!(store.usage_since(0).unwrap()[1], new, "both cache-write classes survive a round trip");
        let report = store.usage_report(&by_task()).unwrap();
        assert_eq!((report[0].cache_write_tokens, report[0].cache_write_1h_tokens), (4 + 3, 5));
        store.cache_put("k2", "{}", &new.usage, 10, 0, 1 << 20).unwrap();
        assert_eq!(store.cache_get("k2", 0).unwrap().unwrap().usage, new.usage);
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
    fn a_report_by_pr_orders_pull_requests_by_number_and_no_pr_last() {
        use crate::usage::report::{GroupBy, ReportQuery};
        let store = Store::open_in_memory().unwrap();
        for pr in [Some(10), None, Some(9), Some(100)] {
            let mut r = record("review", 1);
            r.pr = pr;
            store.record_usage(&r).unwrap();
        }
        let q =
            ReportQuery { since_ms: 0, until_ms: None, group_by: GroupBy::Pr, repo: None, workflow: None, task: None };
        let groups: Vec<String> = store.usage_report(&q).unwrap().into_iter().map(|r| r.group).collect();
        assert_eq!(groups, ["9", "10", "100", "(none)"]);
        let per_model: Vec<String> =
            store.usage_report_per_model(&q).unwrap().into_iter().map(|s| s.row.group).collect();
        assert_eq!(per_model, groups);
    }

    #[test]
    fn the_response_cache_expires_by_age_and_evicts_the_oldest_past_its_cap() {
        let store = Store::open_in_memory().unwrap();
        let usage = Usage { input_tokens: 10, output_tokens: 3, ..Usage::default() };
        let key = |n: u8| format!("{n:064x}");
        let value = "x".repeat(100);
        // Each row is 64 + 100 bytes; a cap of 400 keeps the two newest.
        for n in 0..4u8 {
            store.cache_put(&key(n), &value, &usage, 1_000 + i64::from(n), 0, 400).unwrap();
        }
        let got: Vec<bool> = (0..4u8).map(|n| store.cache_get(&key(n), 0).unwrap().is_some()).collect();
        assert_eq!(got, [false, false, true, true]);
        let hit = store.cache_get(&key(3), 0).unwrap().unwrap();
        assert_eq!((hit.value.as_str(), hit.usage, hit.created_at_s), (value.as_str(), usage, 1_003));
        // Older than the TTL: not read, and dropped by the next write.
        assert!(store.cache_get(&key(2), 1_003).unwrap().is_none());
        store.cache_put(&key(9), "{}", &usage, 2_000, 1_003, 400).unwrap();
        assert!(store.cache_get(&key(2), 0).unwrap().is_none());
        assert!(store.cache_get(&key(3), 0).unwrap().is_some());
        store.cache_delete(&key(3)).unwrap();
        assert!(store.cache_get(&key(3), 0).unwrap().is_none());
    }

    #[test]
    fn the_cache_share_counts_successful_review_calls_answered_from_the_cache() {
        let store = Store::open_in_memory().unwrap();
        for (task, outcome, cached) in [
            ("review", "ok", true),
            ("review", "ok", false),
            ("review", "ok", false),
            ("review", "network", false),
            ("fix", "ok", false),
        ] {
            let mut r = record(task, 1);
            r.outcome = outcome.into();
            r.cached = cached;
            store.record_usage(&r).unwrap();
        }
        assert_eq!(store.cache_share(0).unwrap(), (3, 1));
        assert_eq!(store.usage_since(0).unwrap().iter().filter(|r| r.cached).count(), 1, "the flag round-trips");
    }

    #[test]
    fn opens_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(store.journal_mode().unwrap().unwrap().to_ascii_lowercase(), "wal");
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
        let before = crate::clock::now_ms();
        store.record_event("breaker", "main/gpt-4o", "closed -> open").unwrap();
        store.record_event("fallback", "main/gpt-4o", "using backup/llama3").unwrap();
        let events = store.events(before).unwrap();
        let got: Vec<_> = events.iter().map(|e| (e.kind.as_str(), e.subject.as_str(), e.detail.as_str())).collect();
        assert_eq!(
            got,
            vec![("breaker", "main/gpt-4o", "closed -> open"), ("fallback", "main/gpt-4o", "using backup/llama3")]
        );
        assert!(events[0].id < events[1].id && events[0].ts_ms >= before);
        assert!(store.events(crate::clock::now_ms() + 60_000).unwrap().is_empty());
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
