//! Issue #20's response-cache figure (prints, never asserts): a cold review of the largest
//! example diff (`examples/diffs/agentctl-medium.diff`) against an OpenAI-compatible fake that
//! answers after 1 s, then the same review again on the same state store (warm: every chunk
//! from the cache). Prints wall time, model calls and cost of each, and the ratios against the
//! issue's targets (warm ≥ 95 % cheaper, ≥ 5× faster at 1 s model latency).
//!
//! Run with `cargo bench --bench cache`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/it/common.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{config_for, fake_openai};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_agentctl");
const DIFF: &str = "examples/diffs/agentctl-medium.diff";

/// One review of [`DIFF`] on `state`: (wall seconds, report).
fn review(config: &std::path::Path, state: &std::path::Path) -> (f64, Value) {
    let t = Instant::now();
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPENAI_API_KEY", "sk-bench")
        .env("AGENTCTL_STATE", state)
        .args(["review", "-q", "--diff", DIFF, "--format", "json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (wall, serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = fake_openai(json!({"summary": "ok", "findings": []}), Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentctl.yml");
    // Small chunks, so the diff is several requests, as a large PR is.
    std::fs::write(&config, config_for(&server.uri(), "  max_chunk_tokens: 2000\n")).unwrap();
    let state = dir.path().join("state.db");
    let (cold, cold_report) = review(&config, &state);
    let cold_calls = server.received_requests().await.unwrap().len();
    let (warm, warm_report) = review(&config, &state);
    let warm_calls = server.received_requests().await.unwrap().len() - cold_calls;
    let cost = |r: &Value| r["cost_usd"].as_f64().unwrap_or(f64::NAN);
    println!(
        "cold review   {:7.2} s  {:3} model call(s)  ${:.5}  ({} chunks)",
        cold,
        cold_calls,
        cost(&cold_report),
        cold_report["chunks"]
    );
    println!(
        "warm re-run   {:7.2} s  {:3} model call(s)  ${:.5}  ({} chunks from cache)",
        warm,
        warm_calls,
        cost(&warm_report),
        warm_report["chunks_from_cache"]
    );
    let cheaper = 100.0 * (1.0 - cost(&warm_report) / cost(&cold_report));
    println!("warm vs cold  {cheaper:5.1} % cheaper (target ≥ 95 %), {:.1}× faster (target ≥ 5×)", cold / warm);
}
