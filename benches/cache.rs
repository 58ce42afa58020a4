//! Issue #20's response-cache figure (prints, never asserts): a cold review of the largest
//! example diff (`examples/diffs/agentctl-medium.diff`) against an OpenAI-compatible fake that
//! answers after 1 s, then the same review again on the same state store (warm: every chunk
//! from the cache). Prints wall time, model calls and cost of each, and the ratios against the
//! issue's targets (warm ≥ 95 % cheaper, ≥ 5× faster at 1 s model latency).
//!
//! Then the prompt-caching figure: a review of the 1.4 MB corpus diff
//! (`../shared/corpora/diffs/03-large…`, read in place; agentctl's own history, `git diff
//! <first commit> HEAD`, without the corpora) against an Anthropic fake that simulates prompt
//! caching ([`PromptCacheFake`]), once with `review.prompt_cache: off` and once with `auto`.
//! Prints requests, input / cache-write / cache-read tokens and the billed input-token
//! equivalent (input + 1.25 × 5-minute writes + 2 × 1-hour writes + 0.1 × reads) of each, and
//! their ratio (issue target: ≤ 60 %).
//!
//! Run with `cargo bench --bench cache`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/it/common.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{config_for, fake_openai, mount_catch_all};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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
    prompt_caching_figure().await;
}

/// How long the Anthropic fake takes to answer: a cache entry becomes readable only once the
/// request that wrote it has been answered (the API: "available after the first response
/// begins"), so requests sent in parallel before that all write.
const ANTHROPIC_LATENCY: Duration = Duration::from_millis(300);

/// Smallest cacheable prefix of Sonnet, tokens (Anthropic, "Prompt caching" → limitations):
/// a shorter breakpoint is ignored.
const MIN_CACHEABLE: usize = 1024;

/// An Anthropic Messages fake that simulates prompt caching from what each request says: the
/// request is cut into blocks in the API's cache order (tools, system, messages); each block
/// with `cache_control` is a breakpoint whose prefix (everything up to and including it) is
/// hashed. The longest breakpoint prefix already written, readable and within its TTL (5 min, or
/// `ttl: 1h`) is a cache read; from there to the last breakpoint is a cache write (by the TTL of
/// the breakpoint that ends each part); the rest is uncached input. Tokens are bytes / 4.
struct PromptCacheFake {
    /// Prefix hash → (readable from, expires at).
    seen: Seen,
    /// Tokens of the last request's model, tools and system prompt (the part shared by every
    /// request of every review), for the explanation the bench prints.
    shared: Arc<Mutex<usize>>,
}

/// Written prefixes: hash → (readable from, expires at).
type Seen = Arc<Mutex<HashMap<[u8; 32], (Instant, Instant)>>>;

/// One block of a request in cache order: its canonical bytes and its breakpoint TTL, if any.
fn blocks(body: &Value) -> Vec<(String, Option<Duration>)> {
    let ttl =
        |b: &Value| {
            b.get("cache_control").map(|c| {
                if c["ttl"] == "1h" {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_secs(300)
                }
            })
        };
    let mut out: Vec<(String, Option<Duration>)> = vec![(body["model"].to_string(), None)];
    let text_blocks = |v: &Value, out: &mut Vec<(String, Option<Duration>)>| match v {
        Value::String(s) => out.push((s.clone(), None)),
        Value::Array(items) => out.extend(
            items
                .iter()
                .map(|b| (b.get("text").and_then(Value::as_str).map_or_else(|| b.to_string(), str::to_owned), ttl(b))),
        ),
        _ => {}
    };
    for tool in body["tools"].as_array().into_iter().flatten() {
        out.push((tool.to_string(), ttl(tool)));
    }
    text_blocks(&body["system"], &mut out);
    for m in body["messages"].as_array().into_iter().flatten() {
        out.push((m["role"].to_string(), None));
        text_blocks(&m["content"], &mut out);
    }
    out
}

impl Respond for PromptCacheFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let blocks = blocks(&body);
        let tokens = |bytes: usize| bytes.div_ceil(4);
        // Running hash and token count at every block end.
        let mut hasher = Sha256::new();
        let mut upto = 0;
        let mut ends = Vec::new(); // (tokens up to here, hash, ttl) for breakpoints
        let shared_blocks = blocks.len()
            - body["messages"]
                .as_array()
                .map_or(0, |m| m.iter().map(|m| 1 + m["content"].as_array().map_or(1, Vec::len)).sum::<usize>());
        *self.shared.lock().unwrap() = tokens(blocks[..shared_blocks].iter().map(|(t, _)| t.len()).sum());
        for (text, ttl) in &blocks {
            hasher.update(text.len().to_le_bytes());
            hasher.update(text.as_bytes());
            upto += text.len();
            if let Some(ttl) = ttl {
                ends.push((tokens(upto), <[u8; 32]>::from(hasher.clone().finalize()), *ttl));
            }
        }
        let total = tokens(upto);
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        let ends: Vec<_> = ends.into_iter().filter(|(t, _, _)| *t >= MIN_CACHEABLE).collect();
        let read = ends
            .iter()
            .rev()
            .find(|(_, h, _)| seen.get(h).is_some_and(|(from, until)| *from <= now && now < *until))
            .map_or(0, |(t, _, _)| *t);
        let (mut write_5m, mut write_1h, mut from) = (0, 0, read);
        for (t, h, ttl) in &ends {
            if *t > from {
                if *ttl > Duration::from_secs(300) {
                    write_1h += t - from;
                } else {
                    write_5m += t - from;
                }
                from = *t;
            }
            // Written (or refreshed) by this request, readable once it is answered.
            let readable = seen.get(h).map_or(now + ANTHROPIC_LATENCY, |(r, _)| (*r).min(now + ANTHROPIC_LATENCY));
            seen.insert(*h, (readable, now + *ttl));
        }
        let answer = json!({"summary": "ok", "findings": []});
        ResponseTemplate::new(200)
            .set_body_json(json!({
                "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "tool_use", "id": "toolu_bench", "name": "review_output", "input": answer}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": total - from, "output_tokens": 20,
                          "cache_read_input_tokens": read, "cache_creation_input_tokens": write_5m + write_1h,
                          "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h}}
            }))
            .set_delay(ANTHROPIC_LATENCY)
    }
}

/// The large diff: the corpus's 1.4 MB one read in place, else agentctl's own history written
/// to `dir` (never into the repository).
fn large_diff(dir: &Path) -> PathBuf {
    if let Some(corpora) = common::corpora() {
        let found = std::fs::read_dir(corpora.join("diffs"))
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("03-large")));
        if let Some(path) = found {
            return path;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(root).args(args).output().unwrap().stdout;
    let first = String::from_utf8(git(&["rev-list", "--max-parents=0", "HEAD"])).unwrap();
    let first = first.lines().last().unwrap().to_owned();
    let path = dir.join("history.diff");
    std::fs::write(&path, git(&["diff", &first, "HEAD"])).unwrap();
    path
}

/// Token classes of one review: (requests, input, 5-minute writes, 1-hour writes, reads).
/// `extra` is appended to the `review:` settings.
fn prompt_cache_run(uri: &str, dir: &Path, diff: &Path, name: &str, extra: &str) -> [u64; 5] {
    let config = dir.join(format!("anthropic-{name}.yml"));
    std::fs::write(
        &config,
        format!(
            "provider: claude\nproviders:\n  claude:\n    kind: anthropic\n    model: claude-sonnet-4-5\n    base_url: {uri}/v1\n    max_retries: 0\nreview:\n  max_diff_bytes: 10000000\n{extra}"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ANTHROPIC_API_KEY", "sk-ant-bench")
        .env("AGENTCTL_STATE", dir.join(format!("state-{name}.db")))
        .args(["review", "-q", "--no-cache", "--format", "json", "--diff"])
        .arg(diff)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let u = &report["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let chunks = report["chunks"].as_u64().unwrap_or(0);
    [chunks, n("input_tokens"), n("cache_write_tokens"), n("cache_write_1h_tokens"), n("cached_input_tokens")]
}

/// Billed input-token equivalent at Anthropic's price ratios.
fn billed(c: &[u64; 5]) -> f64 {
    c[1] as f64 + 1.25 * c[2] as f64 + 2.0 * c[3] as f64 + 0.1 * c[4] as f64
}

async fn prompt_caching_figure() {
    let server = MockServer::start().await;
    let shared_tokens = Arc::new(Mutex::new(0));
    let seen = Arc::new(Mutex::new(HashMap::new()));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(PromptCacheFake { seen: Arc::clone(&seen), shared: Arc::clone(&shared_tokens) })
        .mount(&server)
        .await;
    mount_catch_all(&server, "provider").await;
    let dir = tempfile::tempdir().unwrap();
    let diff = large_diff(dir.path());
    let size = std::fs::metadata(&diff).unwrap().len();
    println!("prompt caching: {} ({:.2} MB), Anthropic fake with simulated caching", diff.display(), size as f64 / 1e6);
    // The third run adds review instructions of a realistic length (a repository's guidelines,
    // ~440 tokens), which lifts the shared prefix over the 1024-token minimum.
    let guidance =
        format!("  instructions: \"{}\"\n", "Check error handling and bounds on every public function. ".repeat(30));
    let modes = [
        ("off", "  prompt_cache: off\n".to_owned()),
        ("auto", "  prompt_cache: auto\n".to_owned()),
        ("off+instructions", format!("  prompt_cache: off\n{guidance}")),
        ("auto+instructions", format!("  prompt_cache: auto\n{guidance}")),
        ("auto+instructions+1h", format!("  prompt_cache: auto\n  prompt_cache_ttl: 1h\n{guidance}")),
    ];
    let mut sent = 0;
    let mut runs = Vec::new();
    for (mode, extra) in &modes {
        // Each run starts cold, as a review in a fresh hour would.
        seen.lock().unwrap().clear();
        let c = prompt_cache_run(&server.uri(), dir.path(), &diff, &mode.replace('+', "-"), extra);
        let requests = server.received_requests().await.unwrap().len() - sent;
        sent += requests;
        let shared = *shared_tokens.lock().unwrap();
        println!(
            "prompt_cache {mode:<20}  {requests:3} request(s) ({} chunks)  shared prefix ≈{shared:>5} tokens  input {:>8}  write 5m {:>7}  write 1h {:>7}  read {:>8}  billed input-token equivalent {:>10.0}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            billed(&c)
        );
        runs.push(c);
    }
    let ratio = |a: usize, b: usize| 100.0 * billed(&runs[a]) / billed(&runs[b]);
    println!("auto vs off                               {:5.1} % of the billed input (target ≤ 60 %)", ratio(1, 0));
    println!("auto+instructions vs off+instructions     {:5.1} %", ratio(3, 2));
    println!("auto+instructions+1h vs off+instructions  {:5.1} %", ratio(4, 2));
    println!(
        "why: caching discounts only the shared prefix (tools + system prompt), ≈{} tokens of ≈{} per request; \
         the chunk itself is new in every request",
        *shared_tokens.lock().unwrap(),
        runs[2][1] / runs[2][0].max(1)
    );
}
