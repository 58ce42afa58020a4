//! Whole-process figures for `agentctl route` (prints, never asserts):
//!
//! - a `pull_request` event with rules that need no API call: wall time (target < 10 ms),
//!   peak RSS (target < 15 MB), GitHub requests (target 0: a token and a strict fake are there,
//!   so any request would be counted);
//! - with runner selection against a runners fake: requests (target 1; 2 with pagination).
//!
//! Run with `cargo bench --bench route` (or `scripts/bench`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/it/common.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use support::{median, peak_rss_mb};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_agentctl");
const EVENT: &str = "examples/events/pull_request.opened.json";

const PROVIDERS: &str = "providers: {main: {kind: openai, model: gpt-4o}, local: {kind: openai, model: qwen}}\n\
tiers: {cheap: local}\nroutes:\n";

const RULES: &str = "  - {event: 'pr.*', labels: [docs], task: none}\n  - {event: [pr.created, pr.updated], diff_size: {max_changed_lines: 100}, task: review, tier: cheap}\n  - {event: 'pr.*', draft: false, base_branch: main, task: review}\n";

const RUNNERS: &str = "  - {event: 'pr.*', task: review, runs_on: [[self-hosted, gpu], [self-hosted, linux]], fallback_runs_on: [ubuntu-latest]}\n";

fn route_cmd(server: &MockServer, dir: &Path, config: &str) -> Command {
    let config_path = dir.join("agentctl.yml");
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_benchtoken")
        .env("GITHUB_API_URL", server.uri())
        .env("GITHUB_REPOSITORY", "Codertocat/Hello-World")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", std::fs::canonicalize(EVENT).unwrap())
        .env("GITHUB_OUTPUT", dir.join("out"))
        .env("AGENTCTL_STATE", dir.join("state.db"))
        .arg("route")
        .arg("-q")
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir);
    cmd
}

async fn runners_page(server: &MockServer, page: Option<u32>, next: bool, idle_gpu: bool) {
    let runner = |name: &str, busy: bool, labels: &[&str]| {
        json!({"id": 1, "name": name, "os": "linux", "status": "online", "busy": busy,
               "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()})
    };
    let runners =
        vec![runner("gpu", !idle_gpu, &["self-hosted", "gpu"]), runner("cpu", true, &["self-hosted", "linux"])];
    let mut resp = ResponseTemplate::new(200).set_body_json(json!({"total_count": 2, "runners": runners}));
    if next {
        let link = format!(
            "<{}/repos/Codertocat/Hello-World/actions/runners?per_page=100&page=2>; rel=\"next\"",
            server.uri()
        );
        resp = resp.insert_header("link", link.as_str());
    }
    let m = Mock::given(method("GET")).and(path("/repos/Codertocat/Hello-World/actions/runners"));
    match page {
        Some(p) => m.and(query_param("page", p.to_string())).respond_with(resp).with_priority(1).mount(server).await,
        None => m.respond_with(resp).with_priority(5).mount(server).await,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::builder().start().await;
    common::mount_catch_all(&server, "GitHub").await;
    let rules = format!("{PROVIDERS}{RULES}");
    let rss = peak_rss_mb(&route_cmd(&server, dir.path(), &rules));
    let mut walls = vec![];
    for _ in 0..30 {
        let mut cmd = route_cmd(&server, dir.path(), &rules);
        let t = Instant::now();
        let out = cmd.output().unwrap();
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let requests = server.received_requests().await.unwrap().len();
    println!("route, rules without API calls  median {:7.2} ms   (target < 10 ms)", median(walls));
    match rss {
        Some(mb) => println!("route peak RSS                  {mb:10.1} MB   (target < 15 MB)"),
        None => println!("route peak RSS                  n/a (no /usr/bin/time)"),
    }
    println!("route GitHub requests           {requests:10}      (target 0)");

    for (pages, want) in [(1, 1), (2, 2)] {
        let server = MockServer::builder().start().await;
        common::mount_catch_all(&server, "GitHub").await;
        runners_page(&server, None, pages == 2, pages == 1).await;
        if pages == 2 {
            runners_page(&server, Some(2), false, true).await;
        }
        let out = route_cmd(&server, dir.path(), &format!("{PROVIDERS}{RUNNERS}")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let n = server.received_requests().await.unwrap().len();
        println!("route with runner selection, {pages} page(s): {n} request(s)   (target {want})");
    }
}
