//! Whole-process figures for `agentctl token-refresh app` against a loopback GitHub fake
//! (prints, never asserts; issue #10's target: ≤ 2 API requests and < 30 ms wall, release):
//!
//! - a fresh token for a repository's installation: `GET /repos/{o}/{r}/installation` then
//!   `POST /app/installations/{id}/access_tokens`, to a 0600 `--file`; median wall of 15 runs
//!   (each signs its RS256 JWT; the fake answers at once) and requests per run;
//! - a re-run within `--min-ttl`: the file is reused, no request.
//!
//! Run with `cargo bench --bench tokens` (or `scripts/bench`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/it/common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{strict_server, API_PREFIX};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_agentctl");

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(Path::new("tests/fixtures/github").join(name)).unwrap()).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = strict_server().await;
    let mut installation = fixture("apps.get-repo-installation.200.default.json");
    installation["id"] = json!(42);
    Mock::given(method("GET"))
        .and(path(format!("{API_PREFIX}/repos/octo/hello/installation")))
        .respond_with(ResponseTemplate::new(200).set_body_json(installation))
        .mount(&server)
        .await;
    let mut token = fixture("apps.create-installation-access-token.201.default.json");
    token["expires_at"] = json!("2099-01-01T00:00:00Z");
    Mock::given(method("POST"))
        .and(path(format!("{API_PREFIX}/app/installations/42/access_tokens")))
        .respond_with(ResponseTemplate::new(201).set_body_json(token))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let run = || {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
            .env("AGENTCTL_APP_ID", "Iv1.benchclient")
            .args(["token-refresh", "app", "--owner", "octo", "--repo", "hello", "-q", "--private-key-file"])
            .arg("tests/fixtures/tokens/app-key.pem")
            .arg("--file")
            .arg(&file);
        let t = Instant::now();
        let out = cmd.output().unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ms
    };

    let mut walls = vec![];
    let mut requests = 0;
    for _ in 0..15 {
        std::fs::remove_file(&file).ok();
        std::fs::remove_file(dir.path().join("token.meta.json")).ok();
        let before = server.received_requests().await.unwrap().len();
        walls.push(run());
        requests = server.received_requests().await.unwrap().len() - before;
    }
    println!("token-refresh app (fake)      median {:7.2} ms   (target < 30 ms)", median(walls));
    println!("GitHub requests per token     {requests:10}      (target <= 2)");

    let mut walls = vec![];
    let before = server.received_requests().await.unwrap().len();
    for _ in 0..15 {
        walls.push(run());
    }
    let reused = server.received_requests().await.unwrap().len() - before;
    println!("token-refresh app, reused     median {:7.2} ms   ({reused} requests in 15 runs)", median(walls));
}
