//! The PostgreSQL state store against a real server: the one `scripts/pg-test-server` starts
//! (`.ci/run` does, and exports `AGENTCTL_TEST_POSTGRES_*`). Without that server these tests
//! print why and pass, except under `CI=true`, where a missing server fails them. Each test
//! works in a database of its own, made empty, so the migrations always start from nothing.
//! Tests of what happens without a server (unreachable URL, a password where none belongs), and
//! the SQLite counterpart of the breaker race, run everywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agentctl::context::Env;
use agentctl::store::{BreakerRow, Location, StateSource, Store, StoreError};
use agentctl::usage::report::{GroupBy, ReportQuery};

use crate::common::{agentctl, unique_name, write};
use crate::cost::{fill_ledger, record, report, review_answer, review_run, OCT_1};

/// The test server as `scripts/pg-test-server` describes it.
struct Server {
    /// `postgres://agentctl@127.0.0.1:PORT/agentctl`, no password.
    url: String,
    password: String,
    /// The CA (PEM) that signed the server's certificate.
    ca: PathBuf,
}

/// The test server, or `None` (after printing why) when none is configured; under `CI=true`
/// a missing server is a failure.
fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("AGENTCTL_TEST_POSTGRES_URL"), var("AGENTCTL_TEST_POSTGRES_PASSWORD"), var("AGENTCTL_TEST_POSTGRES_CA"))
    {
        (Some(url), Some(password), Some(ca)) => Some(Server { url, password, ca: PathBuf::from(ca) }),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no PostgreSQL test server (AGENTCTL_TEST_POSTGRES_*); CI=true requires one: .ci/run starts it with scripts/pg-test-server")
        }
        _ => {
            eprintln!("skipping: no PostgreSQL test server; start one with `eval \"$(scripts/pg-test-server start)\"`");
            None
        }
    }
}

impl Server {
    /// The server's URL with `user`, `password` (when given), database `db` and `query`.
    fn url_for(&self, user: &str, password: Option<&str>, db: &str, query: &str) -> String {
        let mut url = url::Url::parse(&self.url).unwrap();
        url.set_username(user).unwrap();
        url.set_password(password).unwrap();
        url.set_path(db);
        url.set_query((!query.is_empty()).then_some(query));
        url.to_string()
    }

    /// A new empty database; returns its URL with the password (an `AGENTCTL_STATE` value).
    fn fresh_database(&self) -> String {
        let db = format!("t_{}", unique_name().replace(|c: char| !c.is_ascii_alphanumeric(), "_")).to_lowercase();
        self.admin(&format!("CREATE DATABASE {db}"));
        self.url_for("agentctl", Some(&self.password), &db, "")
    }

    /// Runs `sql` as `agentctl` in its own database (through the driver directly, not agentctl).
    fn admin(&self, sql: &str) {
        let url = self.url_for("agentctl", Some(&self.password), "agentctl", "");
        let sql = sql.to_owned();
        std::thread::spawn(move || run_sql(&url, &sql)).join().unwrap();
    }
}

/// Runs `sql` on `url` and returns the rows' first columns as text.
fn run_sql(url: &str, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, connection) =
            url.parse::<tokio_postgres::Config>().unwrap().connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows = client.simple_query(sql).await.unwrap();
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .collect()
    })
}

/// [`run_sql`] from any thread (a test inside a runtime included).
fn query(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || run_sql(&url, &sql)).join().unwrap()
}

fn open(url: &str) -> Result<Store, StoreError> {
    Store::open_location(&Location::parse(Path::new(url), StateSource::Env, &Env::from_pairs([]))?)
}

/// The stdout and stderr of a run, for "the password never appears" checks, less the
/// `::add-mask::` workflow commands: those are how a secret is handed to the runner to hide,
/// and the runner consumes them (they never reach the log).
fn all_output(out: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines().filter(|l| !l.starts_with("::add-mask::")).collect::<Vec<_>>().join("\n")
}

/// Whether the run asked the runner to mask `secret`.
fn masked(out: &std::process::Output, secret: &str) -> bool {
    String::from_utf8_lossy(&out.stderr).lines().any(|l| l == format!("::add-mask::{secret}"))
}

/// Report rows with costs rounded to a millionth of a dollar: the two databases add floats in
/// different orders, so the last bits may differ.
fn rounded<T: std::fmt::Debug>(rows: Vec<T>) -> String {
    let text = format!("{rows:?}");
    let re = regex::Regex::new(r"cost_usd: Some\(([0-9.e-]+)\)").unwrap();
    re.replace_all(&text, |c: &regex::Captures<'_>| format!("cost_usd: {:.6}", c[1].parse::<f64>().unwrap()))
        .into_owned()
}

#[test]
fn the_store_api_round_trips_on_postgres_and_reports_like_sqlite() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    let pg = open(&url).unwrap();
    assert_eq!(pg.schema_version().unwrap(), agentctl::store::SCHEMA_VERSION);
    assert_eq!(pg.journal_mode().unwrap(), None);
    let sqlite = Store::open_in_memory().unwrap();
    fill_ledger(&pg);
    fill_ledger(&sqlite);
    // Records come back as written, oldest first.
    assert_eq!(pg.usage_since(i64::MIN).unwrap(), sqlite.usage_since(i64::MIN).unwrap());
    // Every grouping, with and without filters, per model too: the same rows as SQLite's.
    for group_by in
        [GroupBy::Day, GroupBy::Model, GroupBy::Provider, GroupBy::Repo, GroupBy::Workflow, GroupBy::Task, GroupBy::Pr]
    {
        for (repo, until) in [(None, None), (Some("octo/r1".to_owned()), Some(OCT_1 + 10 * 86_400_000))] {
            let q = ReportQuery { since_ms: OCT_1, until_ms: until, group_by, repo, workflow: None, task: None };
            let rows = pg.usage_report(&q).unwrap();
            assert!(!rows.is_empty());
            assert_eq!(rounded(rows), rounded(sqlite.usage_report(&q).unwrap()), "{q:?}");
            assert_eq!(
                rounded(pg.usage_report_per_model(&q).unwrap()),
                rounded(sqlite.usage_report_per_model(&q).unwrap()),
                "{q:?}"
            );
            let (a, b) = (pg.spent_usd(&q).unwrap(), sqlite.spent_usd(&q).unwrap());
            assert!((a - b).abs() < 1e-9, "{q:?}: {a} vs {b}");
        }
    }
    // Export streams every record with its id; importing them again adds nothing.
    let mut exported = Vec::new();
    let n = pg
        .export_usage(i64::MIN, |id, r| {
            exported.push((id.to_owned(), r.clone()));
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 363);
    assert_eq!(pg.import_usage(&exported).unwrap(), (0, 363));
    let mut fresh = record(OCT_1, "octo/new", "wf0", "gpt-4o", Some(0.5), "ok");
    fresh.pr = None;
    assert_eq!(pg.import_usage(&[("new-id".to_owned(), fresh.clone()), exported[0].clone()]).unwrap(), (1, 1));
    // A large import spans several multi-row INSERTs; an id repeated in the same INSERT or in a
    // later one is counted once, like an id the ledger had.
    let mut bulk: Vec<(String, agentctl::usage::UsageRecord)> = (0..1200)
        .map(|i| (format!("bulk-{i}"), record(OCT_1 + i, "octo/bulk", "wf0", "gpt-4o", Some(0.01), "ok")))
        .collect();
    bulk.insert(6, bulk[5].clone());
    bulk.push(bulk[0].clone());
    bulk.push(exported[1].clone());
    assert_eq!(pg.import_usage(&bulk).unwrap(), (1200, 3));
    assert_eq!(pg.usage_since(i64::MIN).unwrap().len(), 363 + 1 + 1200);
    // A writer that fails stops the export with its error.
    let err = pg.export_usage(i64::MIN, |_, _| Err(std::io::Error::other("disk full"))).unwrap_err();
    assert!(matches!(err, StoreError::Export { .. }), "{err:?}");
    // Events in order; breaker rows insert, update, and `None` keeps.
    let before = agentctl::clock::now_ms();
    pg.record_event("breaker", "main/gpt-4o", "closed -> open").unwrap();
    pg.record_event("fallback", "main/gpt-4o", "using backup").unwrap();
    let events = pg.events(before).unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["breaker", "fallback"]);
    assert!(events[0].id < events[1].id);
    assert_eq!(pg.breaker_state("k").unwrap(), None);
    let row = BreakerRow {
        state: "open".into(),
        consecutive_failures: 5,
        opened_at_ms: Some(1000),
        half_open_probes: 0,
        updated_at_ms: 1000,
    };
    assert!(pg.update_breaker("k", |cur| (Some(row.clone()), cur.is_none())).unwrap());
    pg.update_breaker("k", |_| (None, ())).unwrap();
    assert_eq!(pg.breaker_state("k").unwrap(), Some(row));
    // The store's name never holds the password.
    assert!(!pg.name().contains(&server.password), "{}", pg.name());
}

#[test]
fn migrations_build_the_same_tables_as_sqlite_reopen_idempotently_and_refuse_a_newer_schema() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    drop(open(&url).unwrap());
    // Reopening runs no step twice (a second CREATE TABLE would fail).
    let store = open(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), agentctl::store::SCHEMA_VERSION);
    drop(store);
    let pg: BTreeSet<String> = query(
        &url,
        "SELECT table_name || '.' || column_name FROM information_schema.columns
         WHERE table_schema = 'agentctl' AND table_name IN ('usage', 'breaker', 'events', 'response_cache')",
    )
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.db");
    drop(Store::open(&file).unwrap());
    let conn = rusqlite::Connection::open(&file).unwrap();
    let mut sqlite = BTreeSet::new();
    for table in ["usage", "breaker", "events", "response_cache"] {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})")).unwrap();
        for name in stmt.query_map([], |r| r.get::<_, String>(1)).unwrap() {
            sqlite.insert(format!("{table}.{}", name.unwrap()));
        }
    }
    assert_eq!(pg, sqlite);
    let indexes = |sql: &str| -> BTreeSet<String> { query(&url, sql).into_iter().collect() };
    let pg_indexes =
        indexes("SELECT indexname FROM pg_indexes WHERE schemaname = 'agentctl' AND indexname NOT LIKE '%_pkey'");
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").unwrap();
    let sqlite_indexes: BTreeSet<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(pg_indexes, sqlite_indexes);
    // A newer agentctl's schema is refused, naming the store without its password.
    query(&url, "UPDATE agentctl.schema_version SET version = version + 1");
    let err = open(&url).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("postgres://agentctl@127.0.0.1:") && !text.contains(&server.password), "{text}");
}

/// 32 real processes each append 100 records (100 one-record imports each, so 100
/// transactions) to one fresh PostgreSQL ledger at once: exactly 3,200 rows, no error, no
/// duplicate id. The first connections also race to run the migrations.
#[test]
fn thirty_two_processes_append_100_records_each_to_one_postgres_ledger() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    crate::cost::append_from_32_processes(std::ffi::OsStr::new(&url));
    let counts = query(&url, "SELECT COUNT(*) || ' ' || COUNT(DISTINCT uid) FROM agentctl.usage");
    assert_eq!(counts, ["3200 3200"]);
}

/// Two threads, each with a handle of its own from `open`, add 1 to one breaker row's failure
/// count 100 times each through `update_breaker`. Returns the final count: 200 when no update
/// was lost.
fn bump_from_two_handles(open: impl Fn() -> Store + Send + Sync + 'static) -> u32 {
    let open = std::sync::Arc::new(open);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let open = open.clone();
            std::thread::spawn(move || {
                let store = open();
                for _ in 0..100 {
                    store
                        .update_breaker("main/gpt-4o", |cur| {
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
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    open().breaker_state("main/gpt-4o").unwrap().unwrap().consecutive_failures
}

#[test]
fn concurrent_breaker_updates_from_two_connections_lose_none() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    drop(open(&url).unwrap());
    assert_eq!(bump_from_two_handles(move || open(&url).unwrap()), 200);
}

/// The same on a SQLite file (`BEGIN IMMEDIATE`), which needs no server.
#[test]
fn concurrent_breaker_updates_from_two_sqlite_handles_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    assert_eq!(bump_from_two_handles(move || Store::open(&path).unwrap()), 200);
}

#[test]
fn cost_report_over_postgres_prints_what_it_prints_over_sqlite_in_every_format() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    fill_ledger(&open(&url).unwrap());
    let file = agentctl::store::Store::open(&crate::common::unique_state_path()).unwrap();
    fill_ledger(&file);
    let file_path = PathBuf::from(file.name());
    for format in ["table", "json", "csv", "markdown"] {
        for group_by in ["day", "workflow"] {
            assert_eq!(
                report(Path::new(&url), group_by, format),
                report(&file_path, group_by, format),
                "{group_by} {format}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_records_its_usage_in_postgres_and_the_fleet_budget_stops_the_next_run() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    let provider = crate::common::fake_openai(review_answer(), std::time::Duration::ZERO).await;
    let config = crate::common::config_for(&provider.uri(), "");
    let out = review_run(&config, Path::new(&url), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all_output(&out).contains(&server.password));
    assert!(masked(&out, &server.password), "in Actions the password is masked at once");
    let rows = open(&url).unwrap().usage_since(i64::MIN).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].task.as_str(), rows[0].repo.as_deref()), ("review", Some("octo/r0")));
    // Another runner's spend, recorded in the same server, exhausts the day's budget: the next
    // review anywhere in the fleet calls no model and exits 5.
    let spend = record(agentctl::clock::now_ms(), "octo/r0", "ci", "gpt-4o", Some(0.099), "ok");
    open(&url).unwrap().record_usage(&spend).unwrap();
    let strict = crate::common::strict_server().await;
    let config =
        crate::common::config_for(&strict.uri(), "") + "budgets:\n  - {scope: all, period: day, limit_usd: 0.10}\n";
    let out = review_run(&config, Path::new(&url), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(strict.received_requests().await.unwrap().is_empty(), "no model call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_exits_4_and_no_password_is_ever_printed() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    drop(open(&url).unwrap());
    let db = url.rsplit('/').next().unwrap().to_owned();
    let wrong = "wr0ng-pa55word-7f3a";
    let with_wrong = server.url_for("agentctl", Some(wrong), &db, "");
    let without = server.url_for("agentctl", None, &db, "");
    let dir = tempfile::tempdir().unwrap();
    // The wrong password in the URL, in PGPASSWORD, and none at all: exit 4 for each command.
    for (state, pgpassword) in [(&with_wrong, None), (&without, Some(wrong)), (&without, None)] {
        for args in [&["cost", "report"][..], &["cost", "check", "--budget-usd", "5"], &["cost", "export"]] {
            let mut cmd = agentctl();
            cmd.current_dir(dir.path()).env("AGENTCTL_STATE", state).args(args);
            if let Some(p) = pgpassword {
                cmd.env("PGPASSWORD", p);
            }
            let out = cmd.output().unwrap();
            let text = all_output(&out);
            assert_eq!(out.status.code(), Some(4), "{args:?} {pgpassword:?}: {text}");
            assert!(text.contains("refused the credentials"), "{text}");
            assert!(
                text.contains(&format!(
                    "postgres://agentctl@{}",
                    &server.url["postgres://agentctl@".len()..].split('/').next().unwrap()
                )),
                "{text}"
            );
            assert!(!text.contains(wrong) && !text.contains(&server.password), "{text}");
        }
    }
    // A review fails closed too: exit 4 before any model call, nothing printed of either password.
    let provider = crate::common::strict_server().await;
    let out = review_run(&crate::common::config_for(&provider.uri(), ""), Path::new(&with_wrong), &[]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(provider.received_requests().await.unwrap().is_empty(), "no model call");
    assert!(!text.contains(wrong), "{text}");
    assert!(masked(&out, wrong), "{}", String::from_utf8_lossy(&out.stderr));
    // The right password from PGPASSWORD works, and is not printed with -v either.
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &without)
        .env("PGPASSWORD", &server.password)
        .args(["-v", "cost", "report", "--since", "2026-01-01"])
        .output()
        .unwrap();
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no usage recorded since 2026-01-01"), "{text}");
    assert!(!text.contains(&server.password), "{text}");
}

#[test]
fn tls_is_used_and_verified_when_the_url_asks_for_it() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    // agentctl_tls may connect over TLS only (pg_hba `hostssl`); it needs the schema's rights.
    query(&url, &format!("GRANT CREATE ON DATABASE {db} TO agentctl_tls"));
    let ca = server.ca.display().to_string();
    let tls = |query: &str| server.url_for("agentctl_tls", Some(&server.password), &db, query);
    let dir = tempfile::tempdir().unwrap();
    let run = |state: &str| {
        agentctl()
            .current_dir(dir.path())
            .env("AGENTCTL_STATE", state)
            .args(["cost", "report", "--since", "2026-01-01"])
            .output()
            .unwrap()
    };
    for mode in ["require", "verify-full", "prefer"] {
        let out = run(&tls(&format!("sslmode={mode}&sslrootcert={ca}")));
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", all_output(&out));
    }
    // Without TLS the server turns the role away (no pg_hba entry): exit 4, the server's words.
    let out = run(&tls("sslmode=disable"));
    assert_eq!(out.status.code(), Some(4), "{}", all_output(&out));
    assert!(all_output(&out).contains("no encryption"), "{}", all_output(&out));
    // The certificate is verified: against the system's roots (which lack the test CA) the
    // handshake fails, exit 1 naming host:port. libpq's `require` would not have checked.
    let out = run(&tls("sslmode=require"));
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("127.0.0.1:") && text.contains("TLS"), "{text}");
    assert!(text.contains("help: the server's certificate must chain to a trusted root"), "{text}");
}

/// Runs everywhere: nothing listens on the port, so `cost` exits 1 with an actionable message
/// naming host:port, and the URL's password is not printed.
#[test]
fn an_unreachable_server_exits_1_naming_host_and_port() {
    // A port that was free a moment ago: bind, read the number, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secret = "s3cret-never-printed-91";
    let url = format!("postgres://ci:{secret}@127.0.0.1:{port}/ledger");
    let dir = tempfile::tempdir().unwrap();
    for args in [&["cost", "report"][..], &["cost", "check", "--budget-usd", "1"], &["cost", "import", "-"]] {
        let out =
            agentctl().current_dir(dir.path()).env("AGENTCTL_STATE", &url).args(args).write_stdin("").output().unwrap();
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains(&format!("cannot connect to the PostgreSQL state store postgres://ci@127.0.0.1:{port}/ledger at 127.0.0.1:{port}")), "{text}");
        assert!(text.contains("help: check that a server runs"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }
}

/// Runs everywhere: a password in the config file or on the command line is refused (exit 2)
/// before any connection, and not echoed.
#[test]
fn a_password_in_the_config_file_or_on_the_command_line_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "in-the-repo-91ab";
    let url = format!("postgres://ci:{secret}@db.internal/ledger?sslmode=require");
    let config = write(dir.path(), "agentctl.yml", format!("state: {url}\n"));
    let mut from_config = agentctl();
    from_config.current_dir(dir.path()).env_remove("AGENTCTL_STATE").args(["cost", "report", "--config"]).arg(&config);
    let mut from_flag = agentctl();
    from_flag.current_dir(dir.path()).args(["cost", "report", "--state", &url]);
    for (what, mut cmd) in [("config", from_config), ("flag", from_flag)] {
        let out = cmd.output().unwrap();
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        assert!(text.contains("PGPASSWORD"), "{what}: {text}");
        assert!(!text.contains(secret), "{what}: {text}");
    }
}

/// The response cache on PostgreSQL: the same TTL, eviction and hit-rate rules as SQLite's
/// (`store::tests::the_response_cache_expires_by_age_and_evicts_the_oldest_past_its_cap`).
#[test]
fn the_response_cache_expires_and_evicts_on_postgres_like_on_sqlite() {
    let Some(server) = server() else { return };
    let store = open(&server.fresh_database()).unwrap();
    let usage = agentctl::usage::Usage { input_tokens: 10, output_tokens: 3, ..Default::default() };
    let key = |n: u8| format!("{n:064x}");
    let value = "x".repeat(100);
    for n in 0..4u8 {
        store.cache_put(&key(n), &value, &usage, 1_000 + i64::from(n), 0, 400).unwrap();
    }
    let got: Vec<bool> = (0..4u8).map(|n| store.cache_get(&key(n), 0).unwrap().is_some()).collect();
    assert_eq!(got, [false, false, true, true]);
    let hit = store.cache_get(&key(3), 0).unwrap().unwrap();
    assert_eq!((hit.value.as_str(), hit.usage, hit.created_at_s), (value.as_str(), usage, 1_003));
    assert!(store.cache_get(&key(2), 1_003).unwrap().is_none());
    store.cache_put(&key(9), "{}", &usage, 2_000, 1_003, 400).unwrap();
    assert!(store.cache_get(&key(2), 0).unwrap().is_none());
    store.cache_delete(&key(3)).unwrap();
    assert!(store.cache_get(&key(3), 0).unwrap().is_none());
    let mut hit = record(agentctl::clock::now_ms(), "octo/r0", "ci", "gpt-4o", Some(0.0), "ok");
    hit.cached = true;
    store.record_usage(&hit).unwrap();
    store.record_usage(&record(agentctl::clock::now_ms(), "octo/r0", "ci", "gpt-4o", Some(0.1), "ok")).unwrap();
    assert_eq!(store.cache_share(0).unwrap(), (2, 1));
}

/// Issue #20 on a fleet's store: a re-run of the same review makes no model call and costs $0,
/// and the ledger rows of the hits say `cached`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_the_same_review_makes_no_model_call_and_costs_nothing_on_postgres() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    crate::cache::a_rerun_makes_no_model_call_and_costs_nothing(Path::new(&url)).await;
    let rows = open(&url).unwrap().usage_since(i64::MIN).unwrap();
    assert_eq!(rows.iter().filter(|r| r.cached && r.cost_usd == Some(0.0)).count(), 3, "{rows:?}");
    assert_eq!(rows.len(), 6);
}

/// Issue #20: 1-hour prompt-cache writes reach a fleet's ledger in their own column, at 2× input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hour_cache_writes_are_priced_at_twice_the_input_on_postgres() {
    let Some(server) = server() else { return };
    let url = server.fresh_database();
    crate::cache::one_hour_cache_writes_are_priced_at_twice_the_input(Path::new(&url)).await;
    let rows = open(&url).unwrap().usage_since(i64::MIN).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].usage.cache_write_tokens, rows[0].usage.cache_write_1h_tokens), (1000, 2000));
}
