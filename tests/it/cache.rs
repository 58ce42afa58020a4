//! Issue #20 "Pay once": the response cache in the state store, and provider prompt caching,
//! through the real binary against loopback provider fakes with a catch-all that fails the
//! test on any unexpected call.

use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

/// A diff of `files` files, each one hunk of one long added line (a line is never split, so
/// each file is one chunk at `max_chunk_tokens: 500`); `salt` changes the content of the files
/// whose index is in `changed`, `sha` the `index` line of every file (what a rebase changes
/// without changing content).
pub(crate) fn diff(files: usize, changed: &[usize], salt: &str, sha: &str) -> String {
    let mut out = String::new();
    for f in 0..files {
        let tag = if changed.contains(&f) { salt } else { "" };
        out.push_str(&format!(
            "diff --git a/src/f{f}.rs b/src/f{f}.rs\nindex {sha}..{sha}f 100644\n--- a/src/f{f}.rs\n+++ b/src/f{f}.rs\n@@ -1,0 +2,1 @@\n"
        ));
        let terms: Vec<String> = (0..50).map(|i| format!("a{f}_{i}{tag}")).collect();
        out.push_str(&format!("+let v = {};\n", terms.join(" + ")));
    }
    out
}

fn answer() -> Value {
    json!({"summary": "Looks fine.", "findings": []})
}

/// The config for [`fake_openai`] with small chunks (one file per chunk for [`diff`]) and
/// `extra` appended at the top level.
fn config(uri: &str, extra: &str) -> String {
    config_for(uri, "  max_chunk_tokens: 500\n") + extra
}

/// Runs `review` of `diff` (no token: nothing is posted) with `config` on the store `state`,
/// plus `args`; returns the JSON report and stderr.
pub(crate) fn run(config: &str, state: &Path, diff: &str, args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config);
    let mut cmd = agentctl();
    cmd.env("AGENTCTL_STATE", state).env("OPENAI_API_KEY", "sk-test-key-openai-0123456789");
    cmd.args(["review", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()]);
    cmd.args(args);
    let out = cmd.write_stdin(diff.to_owned()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// The re-run half of "a re-run makes 0 model calls and costs $0", on the store at `state`
/// (a SQLite file or a PostgreSQL URL).
pub(crate) async fn a_rerun_makes_no_model_call_and_costs_nothing(state: &Path) {
    let server = fake_openai(answer(), std::time::Duration::ZERO).await;
    let diff = diff(3, &[], "", "1111111");
    let (cold, _) = run(&config(&server.uri(), ""), state, &diff, &[]);
    assert_eq!(cold["chunks"], 3, "{cold}");
    assert_eq!((cold["chunks_from_cache"].as_u64(), calls(&server).await), (Some(0), 3));
    assert!(cold["cost_usd"].as_f64().unwrap() > 0.0);
    let (warm, stderr) = run(&config(&server.uri(), ""), state, &diff, &[]);
    assert_eq!(calls(&server).await, 3, "no new model call: {stderr}");
    assert_eq!((warm["chunks"].as_u64(), warm["chunks_from_cache"].as_u64()), (Some(3), Some(3)));
    assert_eq!(warm["cost_usd"].as_f64(), Some(0.0), "{warm}");
    assert_eq!(warm["usage"]["input_tokens"], 0);
    assert_eq!(warm["overview"], cold["overview"], "the same answers");
    assert!(stderr.contains("3 from cache"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_the_same_review_makes_no_model_call_and_costs_nothing_on_sqlite() {
    let state = unique_state_path();
    a_rerun_makes_no_model_call_and_costs_nothing(&state).await;
    let rows = agentctl::store::Store::open(&state).unwrap().usage_since(0).unwrap();
    let flags: Vec<(bool, Option<f64>)> = rows.iter().map(|r| (r.cached, r.cost_usd.filter(|c| *c == 0.0))).collect();
    assert_eq!(flags[3..], [(true, Some(0.0)); 3], "three cached $0 rows after three priced ones: {rows:?}");
    assert!(rows[..3].iter().all(|r| !r.cached && r.cost_usd.unwrap() > 0.0));
    // `cost estimate` reports the share of recent review chunks the cache answered: 3 of 6.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config("http://127.0.0.1:9", ""));
    let out = agentctl()
        .env("AGENTCTL_STATE", &state)
        .env("OPENAI_API_KEY", "sk-test-key-openai-0123456789")
        .args(["cost", "estimate", "--diff", "-", "--config", cfg.to_str().unwrap()])
        .write_stdin(diff(3, &[], "", "1111111"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expected response-cache hit rate: 50 %"), "{text}");
    let out = agentctl()
        .args(["cost", "estimate", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()])
        .env("AGENTCTL_STATE", &state)
        .write_stdin(diff(3, &[], "", "1111111"))
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["expected_cache_hit_rate"], 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rebase_that_keeps_the_content_only_changed_chunks_are_sent() {
    let server = fake_openai(answer(), std::time::Duration::ZERO).await;
    let state = unique_state_path();
    run(&config(&server.uri(), ""), &state, &diff(3, &[], "", "1111111"), &[]);
    assert_eq!(calls(&server).await, 3);
    // New SHAs everywhere, new content in file 1 only.
    let (report, _) = run(&config(&server.uri(), ""), &state, &diff(3, &[1], "_v2", "2222222"), &[]);
    assert_eq!(calls(&server).await, 4, "only the changed chunk is sent");
    assert_eq!(report["chunks_from_cache"], 2);
    let sent = server.received_requests().await.unwrap();
    let last: Value = serde_json::from_slice(&sent[3].body).unwrap();
    assert!(last.to_string().contains("a1_0_v2"), "the changed file was sent");
    // The chunk numbering is gone from the prompt: every chunk shares its prefix.
    assert!(!last.to_string().contains(" of 3)"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_row_is_dropped_with_a_warning_and_the_chunk_asked_again() {
    let server = fake_openai(answer(), std::time::Duration::ZERO).await;
    let state = unique_state_path();
    let diff = diff(2, &[], "", "1111111");
    run(&config(&server.uri(), ""), &state, &diff, &[]);
    let conn = rusqlite::Connection::open(&state).unwrap();
    let rows = conn.execute("UPDATE response_cache SET value = '{\"summary\": 7' WHERE rowid = 1", []).unwrap();
    let rows2 = conn.execute("UPDATE response_cache SET value = '{\"summary\": 7}' WHERE rowid = 2", []).unwrap();
    assert_eq!((rows, rows2), (1, 1));
    drop(conn);
    let (report, stderr) = run(&config(&server.uri(), ""), &state, &diff, &[]);
    assert_eq!(calls(&server).await, 4, "both chunks asked again");
    assert_eq!(report["chunks_from_cache"], 0);
    assert_eq!(stderr.matches("dropping a corrupt response-cache row").count(), 1, "one warning: {stderr}");
    // The answers asked again replaced the corrupt rows: a third run asks nothing.
    let (report, _) = run(&config(&server.uri(), ""), &state, &diff, &[]);
    assert_eq!((calls(&server).await, report["chunks_from_cache"].as_u64()), (4, Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_and_cache_off_make_the_calls_and_a_dry_run_never_touches_the_cache() {
    let server = fake_openai(answer(), std::time::Duration::ZERO).await;
    let state = unique_state_path();
    let diff = diff(1, &[], "", "1111111");
    // A dry run neither writes nor reads the cache.
    run(&config(&server.uri(), ""), &state, &diff, &["--dry-run"]);
    let count = |state: &Path| -> i64 {
        let conn = rusqlite::Connection::open(state).unwrap();
        conn.query_row("SELECT COUNT(*) FROM response_cache", [], |r| r.get(0)).unwrap()
    };
    assert_eq!((calls(&server).await, count(&state)), (1, 0));
    run(&config(&server.uri(), ""), &state, &diff, &[]);
    assert_eq!((calls(&server).await, count(&state)), (2, 1));
    let (report, _) = run(&config(&server.uri(), ""), &state, &diff, &["--dry-run"]);
    assert_eq!((calls(&server).await, report["chunks_from_cache"].as_u64()), (3, Some(0)));
    let (report, _) = run(&config(&server.uri(), ""), &state, &diff, &["--no-cache"]);
    assert_eq!((calls(&server).await, report["chunks_from_cache"].as_u64()), (4, Some(0)));
    for off in ["cache: off\n", "cache: {enabled: false}\n"] {
        let (report, _) = run(&config(&server.uri(), off), &state, &diff, &[]);
        assert_eq!(report["chunks_from_cache"], 0, "{off}");
    }
    assert_eq!(calls(&server).await, 6);
    // The cache is still there for a run that uses it.
    let (report, _) = run(&config(&server.uri(), ""), &state, &diff, &[]);
    assert_eq!((calls(&server).await, report["chunks_from_cache"].as_u64()), (6, Some(1)));
}

/// An Anthropic fake answering every review request with no finding and `usage`.
async fn fake_anthropic(usage: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "review_output", "input": answer()}],
            "stop_reason": "tool_use", "usage": usage
        })))
        .mount(&server)
        .await;
    mount_catch_all(&server, "provider").await;
    server
}

fn anthropic_config(uri: &str, model: &str, extra_review: &str) -> String {
    // Guidance long enough that tools + system prompt pass Sonnet's 1024-token minimum.
    let guidance = "Check error handling and bounds on every public function. ".repeat(30);
    format!(
        "provider: claude\nproviders:\n  claude:\n    kind: anthropic\n    model: {model}\n    base_url: {uri}/v1\n    max_retries: 0\nreview:\n  max_chunk_tokens: 500\n  instructions: \"{guidance}\"\n{extra_review}"
    )
}

fn run_anthropic(config: &str, diff: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config);
    let out = agentctl()
        .env("ANTHROPIC_API_KEY", "test-anthropic-key-0123456789")
        .args(["review", "--no-cache", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()])
        .write_stdin(diff.to_owned())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_requests_carry_breakpoints_on_the_shared_prefix_and_cache_reads_are_priced_at_the_read_price() {
    let usage = json!({"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 10000,
                       "cache_creation_input_tokens": 0});
    let server = fake_anthropic(usage).await;
    let report = run_anthropic(&anthropic_config(&server.uri(), "claude-sonnet-4-5", ""), &diff(2, &[], "", "1111111"));
    let sent: Vec<Value> =
        server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(sent.len(), 2);
    for body in &sent {
        assert_eq!(body["system"][0]["cache_control"], json!({"type": "ephemeral"}), "{body}");
        let content = &body["messages"][0]["content"];
        assert_eq!(content[0]["cache_control"], json!({"type": "ephemeral"}), "{content}");
        assert!(content[1].get("cache_control").is_none() && content[1]["text"].as_str().unwrap().contains("<diff>"));
    }
    // Byte-identical prefix (system, tools and the user prompt's first block) in every chunk.
    let prefix = |b: &Value| (b["system"].clone(), b["tools"].clone(), b["messages"][0]["content"][0].clone());
    assert_eq!(prefix(&sent[0]), prefix(&sent[1]));
    assert_ne!(sent[0]["messages"][0]["content"][1], sent[1]["messages"][0]["content"][1]);
    // claude-sonnet-4-5: $3 input, $0.30 cache read, $15 output per million tokens.
    let per_call = 100.0 * 3e-6 + 10_000.0 * 0.3e-6 + 10.0 * 15e-6;
    let cost = report["cost_usd"].as_f64().unwrap();
    assert!((cost - 2.0 * per_call).abs() < 1e-9, "{cost} vs {}", 2.0 * per_call);
    assert!(report["summary_comment"].as_str().unwrap().contains("(20000 cached)"), "{}", report["summary_comment"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_breakpoints_below_the_models_minimum_or_with_prompt_cache_off_and_1h_when_asked() {
    let usage = json!({"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": 2000});
    let server = fake_anthropic(usage).await;
    let diff = diff(1, &[], "", "1111111");
    // Haiku needs 2048 tokens; the prefix here is about 1300.
    run_anthropic(&anthropic_config(&server.uri(), "claude-haiku-4-5", ""), &diff);
    run_anthropic(&anthropic_config(&server.uri(), "claude-sonnet-4-5", "  prompt_cache: off\n"), &diff);
    let report =
        run_anthropic(&anthropic_config(&server.uri(), "claude-sonnet-4-5", "  prompt_cache_ttl: 1h\n"), &diff);
    let sent: Vec<Value> =
        server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    for body in &sent[..2] {
        assert!(body["system"].is_string() && body["messages"][0]["content"].is_string(), "{body}");
    }
    assert_eq!(sent[2]["system"][0]["cache_control"], json!({"type": "ephemeral", "ttl": "1h"}));
    let summary = report["summary_comment"].as_str().unwrap();
    assert!(summary.contains("2000 written to the prompt cache"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hour_cache_writes_are_priced_at_twice_the_input_in_the_report_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    one_hour_cache_writes_are_priced_at_twice_the_input(&dir.path().join("state.db")).await;
}

/// A review whose Anthropic answers split their cache writes by lifetime: the 1-hour ones cost
/// 2× input in the report, the ledger row (`cost export`) and `cost report`, on the store at
/// `state` (a SQLite file or a PostgreSQL URL).
pub(crate) async fn one_hour_cache_writes_are_priced_at_twice_the_input(state: &Path) {
    // The answer splits its cache writes by lifetime, as the Messages API does.
    let usage = json!({"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": 3000,
                       "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}});
    let server = fake_anthropic(usage).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "agentctl.yml",
        anthropic_config(&server.uri(), "claude-sonnet-4-5", "  prompt_cache_ttl: 1h\n"),
    );
    let out = agentctl()
        .env("ANTHROPIC_API_KEY", "test-anthropic-key-0123456789")
        .env("AGENTCTL_STATE", state)
        .args(["review", "--no-cache", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()])
        .write_stdin(diff(1, &[], "", "1111111"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // claude-sonnet-4-5: $3 input, $3.75 5-minute write, 2 × $3 = $6 1-hour write, $15 output per million.
    let expected = 100.0 * 3e-6 + 1000.0 * 3.75e-6 + 2000.0 * 6e-6 + 10.0 * 15e-6;
    let cost = report["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
    assert_eq!(report["usage"]["cache_write_tokens"], 1000);
    assert_eq!(report["usage"]["cache_write_1h_tokens"], 2000);
    let summary = report["summary_comment"].as_str().unwrap();
    assert!(summary.contains("3000 written to the prompt cache (2000 for 1 h)"), "{summary}");

    // The ledger row carries both classes and the same cost, through `cost export`.
    let out = agentctl().env("AGENTCTL_STATE", state).args(["cost", "export"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["usage"]["cache_write_tokens"], 1000);
    assert_eq!(rows[0]["usage"]["cache_write_1h_tokens"], 2000);
    assert!((rows[0]["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9, "{}", rows[0]);

    // And `cost report` shows the 1-hour writes in their own column.
    let out = agentctl()
        .env("AGENTCTL_STATE", state)
        .args(["cost", "report", "--since", "2000-01-01", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total"]["cache_write_tokens"], 1000, "{report}");
    assert_eq!(report["total"]["cache_write_1h_tokens"], 2000, "{report}");
}
