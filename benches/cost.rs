//! Figures for `agentctl cost` (prints, never asserts), against issue #8's targets:
//!
//! - `cost report --group-by day` over a 1,000,000-row SQLite ledger: wall time (target < 1 s)
//!   and peak RSS (target < 100 MB, through `/usr/bin/time -f %M`);
//! - `cost check` on the same ledger (target < 50 ms);
//! - `cost estimate` of the 1.4 MB corpus diff (target < 100 ms);
//! - appending one usage record to that ledger through the library (median; target < 2 ms).
//!
//! With a PostgreSQL server (`AGENTCTL_TEST_POSTGRES_URL` and `_PASSWORD`, as
//! `scripts/pg-test-server start` prints them) the same figures for the shared store, on a
//! ledger of at most 100,000 rows in a fresh database (no target in the issue; for comparison).
//!
//! The ledger is built through the library in one transaction ([`Store::import_usage_iter`]):
//! 3 repos × 4 workflows × 3 models, spread over the last 30 days. Whole-process figures run
//! the real binary. Run with `cargo bench --bench cost` (or `scripts/bench`); set
//! `AGENTCTL_BENCH_ROWS` for a smaller ledger while trying it out.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use agentctl::store::{self, Store};
use agentctl::usage::{CostSource, Usage, UsageRecord};
use support::{median, peak_rss_mb};

const BIN: &str = env!("CARGO_BIN_EXE_agentctl");
const LARGE_DIFF: &str = "diffs/03-large.ripgrep-13.0.0..14.0.0.diff";
const DAY_MS: i64 = 86_400_000;

fn corpora() -> std::path::PathBuf {
    std::env::var_os("AGENTCTL_CORPORA")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"))
}

/// Record `i` of the benchmark ledger: within the last 30 days, one of 3 repos, 4 workflows
/// and 3 models (one unpriced), 1 in 50 failed.
fn record(i: u64, now: i64) -> UsageRecord {
    let models = ["gpt-4o", "claude-sonnet-4-5", "qwen-local"];
    let model = models[(i % 3) as usize];
    UsageRecord {
        ts_ms: now - (i as i64 * 2_591) % (30 * DAY_MS),
        repo: Some(format!("octo/r{}", i % 3)),
        workflow: Some(format!("wf{}", i % 4)),
        run_id: Some((i / 10).to_string()),
        job: Some("ai".into()),
        pr: Some(i % 500),
        task: if i % 5 == 0 { "fix" } else { "review" }.into(),
        provider: "main".into(),
        model: model.into(),
        usage: Usage {
            input_tokens: 1000 + i % 1000,
            cached_input_tokens: 200,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: 150,
            reasoning_tokens: 0,
        },
        cost_usd: (model != "qwen-local").then_some(0.004),
        cost_source: CostSource::Computed,
        price_table: Some("2026-11-01".into()),
        latency_ms: 900,
        outcome: if i % 50 == 0 { "unavailable" } else { "ok" }.into(),
        cached: false,
    }
}

fn cmd(state: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AGENTCTL_STATE", state)
        .arg("-q")
        .args(args)
        .current_dir(dir);
    c
}

/// Median wall time in ms of `runs` runs of `c` (stdout discarded); warns on a failing run.
fn wall_ms(c: &mut Command, runs: usize, ok_codes: &[i32]) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = c.output().unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        if !ok_codes.contains(&out.status.code().unwrap_or(-1)) {
            println!("  ! exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    median(samples)
}

fn main() {
    let rows: u64 = std::env::var("AGENTCTL_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let now = agentctl::clock::now_ms();

    let t = Instant::now();
    let store = Store::open(&state).unwrap();
    let (added, _) = store.import_usage_iter((0..rows).map(|i| (format!("{i:032x}"), record(i, now)))).unwrap();
    println!("ledger of {added} rows built in {:.1} s (one transaction)", t.elapsed().as_secs_f64());
    let size_mb = std::fs::metadata(&state).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
    println!("ledger file                             {size_mb:10.1} MB");

    let report = ["cost", "report", "--group-by", "day", "--format", "json"];
    let wall = wall_ms(&mut cmd(&state, dir.path(), &report), 5, &[0]);
    println!("cost report --group-by day, {rows} rows  median {wall:8.1} ms   (target < 1000 ms)");
    match peak_rss_mb(&cmd(&state, dir.path(), &report)) {
        Some(mb) => println!("cost report peak RSS                    {mb:10.1} MB   (target < 100 MB)"),
        None => println!("cost report peak RSS                    n/a (no /usr/bin/time)"),
    }

    let check = ["cost", "check", "--budget-usd", "100000", "--period", "month"];
    let wall = wall_ms(&mut cmd(&state, dir.path(), &check), 10, &[0, 5]);
    println!("cost check, {rows} rows               median {wall:8.1} ms   (target < 50 ms)");

    let diff = corpora().join(LARGE_DIFF);
    if diff.is_file() {
        let config = dir.path().join("agentctl.yml");
        std::fs::write(&config, "provider: main\nproviders:\n  main: {kind: openai, model: gpt-4o}\n").unwrap();
        let estimate = ["cost", "estimate", "--format", "json", "--config", config.to_str().unwrap(), "--diff"];
        let mut c = cmd(&state, dir.path(), &estimate);
        c.arg(&diff);
        let wall = wall_ms(&mut c, 5, &[0]);
        let mb = std::fs::metadata(&diff).unwrap().len() as f64 / 1e6;
        println!("cost estimate of the {mb:.1} MB corpus diff     median {wall:8.1} ms   (target < 100 ms)");
    } else {
        println!("cost estimate: {} not found (set AGENTCTL_CORPORA)", diff.display());
    }

    // One append, as the ledger writer does after each provider call, on the big ledger.
    let append = append_ms(&store, rows, now);
    println!("append one usage record (SQLite, WAL)   median {append:8.3} ms   (target < 2 ms)");

    postgres(rows.min(100_000), now, dir.path());
}

/// The PostgreSQL figures, when a test server is configured.
fn postgres(rows: u64, now: i64, dir: &Path) {
    let (Ok(base), Ok(password)) =
        (std::env::var("AGENTCTL_TEST_POSTGRES_URL"), std::env::var("AGENTCTL_TEST_POSTGRES_PASSWORD"))
    else {
        println!("PostgreSQL: no test server (eval \"$(scripts/pg-test-server start)\" first)");
        return;
    };
    let mut url = url::Url::parse(&base).unwrap();
    url.set_password(Some(&password)).unwrap();
    let db = format!("bench_{}", std::process::id());
    let admin = url.to_string();
    let create = format!("CREATE DATABASE {db}");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let config: tokio_postgres::Config = admin.parse().unwrap();
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(&create).await.unwrap();
        });
    })
    .join()
    .unwrap();
    url.set_path(&db);
    let state = url.to_string();
    let location =
        store::Location::parse(Path::new(&state), store::StateSource::Env, &agentctl::context::Env::from_pairs([]))
            .unwrap();

    let t = Instant::now();
    let pg = Store::open_location(&location).unwrap();
    println!("PostgreSQL: connect and migrate an empty database   {:8.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    let t = Instant::now();
    let (added, _) = pg.import_usage_iter((0..rows).map(|i| (format!("{i:032x}"), record(i, now)))).unwrap();
    println!("PostgreSQL: ledger of {added} rows built in {:.1} s (one transaction)", t.elapsed().as_secs_f64());
    let t = Instant::now();
    drop(Store::open_location(&location).unwrap());
    println!("PostgreSQL: connect to a migrated database          {:8.1} ms", t.elapsed().as_secs_f64() * 1000.0);

    let state = Path::new(&state);
    let report = ["cost", "report", "--group-by", "day", "--format", "json"];
    let wall = wall_ms(&mut cmd(state, dir, &report), 5, &[0]);
    println!("PostgreSQL: cost report --group-by day, {rows} rows  median {wall:8.1} ms");
    let check = ["cost", "check", "--budget-usd", "100000", "--period", "month"];
    let wall = wall_ms(&mut cmd(state, dir, &check), 10, &[0, 5]);
    println!("PostgreSQL: cost check, {rows} rows                median {wall:8.1} ms");
    println!("PostgreSQL: append one usage record       median {:8.3} ms", append_ms(&pg, rows, now));
}

/// Median ms of 200 appends of one record to `store` (records `rows`.. of the ledger).
fn append_ms(store: &Store, rows: u64, now: i64) -> f64 {
    let mut samples = Vec::new();
    for i in 0..200u64 {
        let r = record(rows + i, now);
        let t = Instant::now();
        store.record_usage(&r).unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    median(samples)
}
