//! Whole-process figures for `agentctl review` against loopback fakes (prints, never asserts):
//!
//! - `agentctl --version` start-up time (target < 5 ms);
//! - one review of the 18-file fixture PR against a GitHub fake and an OpenAI-compatible fake
//!   that answer at once, with the default write spacing (1 s past a burst of 10 writes): wall
//!   time (target < 50 ms) and peak RSS (target < 15 MB, via `/usr/bin/time`);
//! - GitHub requests per review (target ≤ 6);
//! - telemetry: the same review exporting to a live loopback OTLP receiver, wall and peak RSS
//!   against the run without (targets ≤ 5 % and ≤ 2 MB more; off costs nothing: no span is made);
//! - concurrency: 8 chunks, 2 s model latency, `max_concurrency: 4` → wall ≈ 4 s, not 16 s.
//!
//! Run with `cargo bench --bench review` (or `scripts/bench`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/it/common.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config_for, fake_openai, FakeGitHub};
use serde_json::json;
use support::{median, peak_rss_mb};

const BIN: &str = env!("CARGO_BIN_EXE_agentctl");
const EVENT: &str = "examples/events/pull_request.opened.json";
const DIFF: &str = "examples/diffs/agentctl-medium.diff";

fn review_cmd(gh: &FakeGitHub, dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_benchtoken")
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_REPOSITORY", "Codertocat/Hello-World")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", EVENT)
        .env("GITHUB_OUTPUT", dir.join("out"))
        .env("OPENAI_API_KEY", "sk-bench")
        // The default spacing: a review's two writes fall inside the burst and must not wait.
        .env("AGENTCTL_WRITE_DELAY", "1")
        .env("AGENTCTL_STATE", dir.join("state.db"))
        .args(["review", "-q"]);
    cmd
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Start-up.
    let mut times = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        let s = Command::new(BIN).arg("--version").output().unwrap();
        assert!(s.status.success());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("agentctl --version            median {:7.2} ms   (target < 5 ms)", median(times));

    // One review of a ~20-file PR, fakes answering at once.
    let diff = std::fs::read(DIFF).unwrap();
    let files = String::from_utf8_lossy(&diff).matches("\ndiff --git ").count() + 1;
    let answer = json!({"summary": "ok", "findings": [
        {"path": "src/config.rs", "line": 1, "severity": "low", "category": "docs", "title": "t", "body": "b"}
    ]});
    // One pair of fakes for all runs; the GitHub fake's comments and reviews are cleared
    // between runs so every run does the full work (no "already reviewed" shortcut).
    let openai = fake_openai(answer, Duration::ZERO).await;
    let gh = FakeGitHub::start("Codertocat", "Hello-World", 2, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    let reset = || {
        let mut s = gh.state.lock().unwrap();
        s.comments.clear();
        s.reviews.clear();
        s.review_posts.clear();
    };
    let dir = tempfile::tempdir().unwrap();
    let mut walls = vec![];
    let mut requests = 0;
    reset();
    let rss = peak_rss_mb(&review_cmd(&gh, dir.path()));
    for _ in 0..7 {
        reset();
        let before = gh.requests().await.len();
        let mut cmd = review_cmd(&gh, dir.path());
        let t = Instant::now();
        let out = cmd.output().unwrap();
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        requests = gh.requests().await.len() - before;
        assert_eq!(gh.state.lock().unwrap().reviews.len(), 1, "each run posts its review");
    }
    println!("review, {files:>2}-file PR (fakes)      median {:7.2} ms   (target < 50 ms)", median(walls));
    match rss {
        Some(mb) => println!("review peak RSS               {mb:10.1} MB   (target < 15 MB)"),
        None => println!("review peak RSS               n/a (no /usr/bin/time)"),
    }
    println!("GitHub requests per review    {requests:10}      (target <= 6)");

    // Telemetry on: the same review, exporting spans and metrics to a live receiver.
    let otlp = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&otlp)
        .await;
    let with_otel = |cmd: &mut Command| {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri()).env("GITHUB_RUN_ID", "1");
    };
    reset();
    let mut cmd = review_cmd(&gh, dir.path());
    with_otel(&mut cmd);
    let rss_otel = peak_rss_mb(&cmd);
    let mut otel_walls = vec![];
    let mut plain_walls = vec![];
    for _ in 0..7 {
        for on in [false, true] {
            reset();
            let mut cmd = review_cmd(&gh, dir.path());
            if on {
                with_otel(&mut cmd);
            }
            let t = Instant::now();
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if on {
                otel_walls.push(ms)
            } else {
                plain_walls.push(ms)
            }
        }
    }
    let (plain, otel) = (median(plain_walls), median(otel_walls));
    let exports = otlp.received_requests().await.unwrap().len();
    println!(
        "review with telemetry         median {otel:7.2} ms   ({:+.1} % vs {plain:.2} ms off; {exports} exports; target <= 5 %)",
        (otel / plain - 1.0) * 100.0
    );
    match (rss, rss_otel) {
        (Some(off), Some(on)) => {
            println!("review peak RSS, telemetry on {on:10.1} MB   ({:+.1} MB; target <= 2 MB)", on - off)
        }
        _ => println!("review peak RSS, telemetry on n/a (no /usr/bin/time)"),
    }

    // Concurrency: 2 s latency, max_concurrency 4, chunk size set so the PR splits into ~8 chunks.
    let latency = Duration::from_secs(2);
    let openai = fake_openai(json!({"summary": "ok", "findings": []}), latency).await;
    let config = config_for(&openai.uri(), "  max_chunk_tokens: 2500\n");
    let gh = FakeGitHub::start("Codertocat", "Hello-World", 2, diff.clone(), Some(config)).await;
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = review_cmd(&gh, dir.path()).output().unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chunks = openai.received_requests().await.unwrap().len();
    let ideal = (chunks as f64 / 4.0).ceil() * latency.as_secs_f64();
    println!(
        "concurrency: {chunks} chunks x 2 s at 4   wall {wall:6.2} s   (ideal {ideal:.1} s, serial {:.1} s)",
        chunks as f64 * latency.as_secs_f64()
    );
}
