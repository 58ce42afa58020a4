//! The fault matrix: one test per way a provider can fail (SPEC §2 Resilience), each asserting
//! how many requests were made and how long it took. Adapter-level rows call the library API
//! against loopback fakes (wiremock, or a raw `TcpListener` for broken connections); process-level
//! rows run the real binary (`review --dry-run --diff - --format json --config FILE`), with the
//! circuit breaker's state shared between processes through one `AGENTCTL_STATE` file.
//!
//! Every fake mounts a lowest-priority catch-all that fails the test on an unexpected request.
//! Retry bases are a millisecond except where a row is about a wait the server asked for. Time
//! bounds are loose above (a loaded 2-core machine must not flake) and tight below where the
//! row is about waiting.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::common::*;
use agentctl::providers::anthropic::{Anthropic, AnthropicSettings};
use agentctl::providers::azure::{AzureOpenAi, AzureOpenAiSettings};
use agentctl::providers::chain::Resilient;
use agentctl::providers::gemini::{Gemini, GeminiSettings};
use agentctl::providers::http::EndpointSettings;
use agentctl::providers::openai::{OpenAi, OpenAiSettings};
use agentctl::providers::structured::complete_json;
use agentctl::providers::{CompletionRequest, Provider, ProviderError};
use agentctl::resilience::{
    recording_retries, Breaker, BreakerRecord, BreakerSettings, BreakerState, CallOutcome, RetryNotice, RetryPolicy,
};
use agentctl::store::Store;
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// Fakes and builders
// ---------------------------------------------------------------------------------------------

/// The env var the process-level configs read the key from (named in auth errors).
const KEY_ENV: &str = "FAULTS_OPENAI_KEY";
const KEY: &str = "sk-faults-FAKEkey0123456789abcdef";

fn chat() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

/// An OpenAI chat completion whose message content is `content`, reporting `model`.
fn chat_body(content: &str, model: &str) -> Value {
    json!({
        "id": "chatcmpl-faults",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

fn chat_ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(chat_body(content, "gpt-4o-mini-2024-07-18"))
}

/// A valid review answer (the `review-output` schema).
fn review_answer() -> String {
    json!({"summary": "Adds b().", "findings": []}).to_string()
}

fn openai_error(status: u16, kind: &str, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// Tiny backoff (1 ms base) with the default 30 s cap, so only server-asked waits take time.
/// Each recorded retry's wait and whether the server asked for it.
fn waits(retries: &[RetryNotice]) -> Vec<(Duration, bool)> {
    retries.iter().map(|r| (r.wait, r.server_asked)).collect()
}

fn fast(max_retries: u32) -> RetryPolicy {
    RetryPolicy { max_retries, base: Duration::from_millis(1), ..RetryPolicy::default() }
}

fn openai_at(base_url: String, retry: RetryPolicy, timeout: Duration) -> OpenAi {
    OpenAi::new(OpenAiSettings {
        name: "main".into(),
        model: "gpt-4o-mini".into(),
        base_url,
        api_key: Some(SecretString::from(KEY)),
        api_key_env: KEY_ENV.into(),
        timeout,
        retry,
    })
    .unwrap()
}

fn openai(server: &MockServer, retry: RetryPolicy) -> OpenAi {
    openai_at(format!("{}/v1", server.uri()), retry, Duration::from_secs(10))
}

/// A plain-text request (no schema, so no structured-output step-downs are in play).
fn request() -> CompletionRequest {
    CompletionRequest {
        system: "You review code.".into(),
        prompt: "Review: fn b() {}".into(),
        json_schema: None,
        max_output_tokens: 256,
        temperature: Some(0.0),
        prompt_cache: None,
    }
}

/// A request for JSON valid against the review output schema.
fn review_request() -> CompletionRequest {
    let schema: Value = serde_json::from_str(include_str!("../../schemas/review-output.schema.json")).unwrap();
    CompletionRequest { json_schema: Some(("review_output".into(), schema)), ..request() }
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn body_of(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// What a raw connection does, in accept order (the last one repeats).
#[derive(Debug, Clone, Copy)]
enum Conn {
    /// Wait for the request, then close without reading it: unread data makes the kernel send
    /// an RST, so the client sees "connection reset by peer".
    Reset,
    /// Read the request, answer `200` with `content-length: 1000`, send 10 bytes, close.
    Cut,
    /// Read the request and answer a valid chat completion.
    Serve,
}

/// A raw HTTP/1.1 server on loopback playing `script`, one entry per accepted connection.
/// Returns the base URL (with `/v1`) and the number of connections accepted so far.
fn raw_server(script: Vec<Conn>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    let body = chat_body("fine", "gpt-4o-mini").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let conn = script.get(n).or(script.last()).copied().unwrap_or(Conn::Serve);
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            match conn {
                Conn::Reset => {
                    let mut one = [0u8; 1];
                    let _ = stream.peek(&mut one);
                    drop(stream);
                }
                Conn::Cut => {
                    read_request(&mut stream);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n{\"id\": \"x\"",
                    );
                    let _ = stream.flush();
                    drop(stream);
                }
                Conn::Serve => {
                    read_request(&mut stream);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body.as_bytes());
                    let _ = stream.flush();
                }
            }
        }
    });
    (format!("http://{addr}/v1"), accepts)
}

/// Reads one request (head and its `content-length` body) off `stream`.
fn read_request(stream: &mut std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process-level helpers
// ---------------------------------------------------------------------------------------------

/// A one-file diff: one chunk, one model request per run.
const DIFF: &str = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1111111..2222222 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,3 @@\n fn a() {}\n+fn b() {}\n fn c() {}\n";

/// One `providers:` entry of kind openai at `uri`, keyed from [`KEY_ENV`], with `extra` lines
/// (each a `key: value` of the entry, e.g. `max_retries: 0`).
fn entry(name: &str, uri: &str, model: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "  {name}:\n    kind: openai\n    model: {model}\n    base_url: {uri}/v1\n    api_key_env: {KEY_ENV}\n"
    );
    for line in extra {
        s.push_str(&format!("    {line}\n"));
    }
    s
}

fn config(dir: &Path, primary: &str, entries: &[String]) -> PathBuf {
    write(dir, "agentctl.yml", format!("provider: {primary}\nproviders:\n{}", entries.concat()))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `agentctl review --dry-run --diff - --format json --config CONFIG` on [`DIFF`], with the
/// state store at `state` (shared between the runs of one test).
fn review(config: &Path, state: &Path) -> Run {
    let mut cmd = agentctl();
    cmd.env("AGENTCTL_STATE", state)
        .env(KEY_ENV, KEY)
        .args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config"])
        .arg(config)
        .write_stdin(DIFF)
        .timeout(Duration::from_secs(60));
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn breaker_settings(failure_threshold: u32, open_for: Duration) -> BreakerSettings {
    BreakerSettings { failure_threshold, open_for, half_open_probes: 1 }
}

// ---------------------------------------------------------------------------------------------
// Rows 1–4: waits the server asks for
// ---------------------------------------------------------------------------------------------

/// Row 1: `429` with `retry-after: 2` → one retry, after at least 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row01_429_retry_after_seconds_is_honoured_once() {
    let server = strict_server().await;
    chat()
        .respond_with(
            openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached")
                .insert_header("retry-after", "2"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    chat().respond_with(chat_ok("fine")).expect(1).mount(&server).await;

    let (answer, retries) = recording_retries(openai(&server, fast(3)).complete(&request())).await;
    assert_eq!(answer.unwrap().text, "fine");
    assert_eq!(received(&server).await.len(), 2);
    assert_eq!(waits(&retries), [(Duration::from_secs(2), true)], "one retry, after the asked 2 s");
}

/// Row 2: Azure's `retry-after-ms: 300` → honoured (not our 1 ms backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row02_azure_retry_after_ms_is_honoured() {
    let server = strict_server().await;
    let url = "/openai/deployments/review-4o/chat/completions";
    Mock::given(method("POST"))
        .and(path(url))
        .respond_with(
            openai_error(429, "requests", "429", "Requests to the deployment have exceeded the rate limit")
                .insert_header("retry-after-ms", "300"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(url)).respond_with(chat_ok("fine")).expect(1).mount(&server).await;
    let azure = AzureOpenAi::new(AzureOpenAiSettings {
        endpoint: EndpointSettings {
            name: "azure".into(),
            model: "gpt-4o".into(),
            base_url: server.uri(),
            api_key: Some(SecretString::from(KEY)),
            api_key_env: "AZURE_OPENAI_API_KEY".into(),
            timeout: Duration::from_secs(10),
            retry: fast(3),
        },
        deployment: "review-4o".into(),
        api_version: "2024-10-21".into(),
    })
    .unwrap();

    let (answer, retries) = recording_retries(azure.complete(&request())).await;
    assert_eq!(answer.unwrap().text, "fine");
    assert_eq!(received(&server).await.len(), 2);
    assert_eq!(waits(&retries), [(Duration::from_millis(300), true)], "the asked 300 ms, not our 1 ms backoff");
}

/// Row 3: `retry-after` as an HTTP-date → honoured, relative to now (1 s resolution).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row03_retry_after_http_date_is_honoured() {
    let server = strict_server().await;
    // 2.5 s ahead, truncated to the second by the format: at least 1.5 s ahead when sent.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_millis(2500));
    chat()
        .respond_with(
            openai_error(429, "requests", "rate_limit_exceeded", "slow down").insert_header("retry-after", at.as_str()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    chat().respond_with(chat_ok("fine")).expect(1).mount(&server).await;

    let (answer, retries) = recording_retries(openai(&server, fast(3)).complete(&request())).await;
    answer.unwrap();
    assert_eq!(received(&server).await.len(), 2);
    let [(wait, true)] = waits(&retries)[..] else { panic!("one retry as the server asked: {retries:?}") };
    // The date is 2.5 s ahead, truncated to its second: 1.5–2.5 s when the answer came.
    assert!(wait >= Duration::from_millis(1400) && wait <= Duration::from_millis(2500), "{wait:?}");
}

/// Row 4: `retry-after: 600` over the default 30 s cap → no retry, a quick error saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row04_retry_after_over_the_cap_fails_fast_without_retry() {
    let server = strict_server().await;
    chat()
        .respond_with(
            openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached")
                .insert_header("retry-after", "600"),
        )
        .expect(1)
        .mount(&server)
        .await;

    let policy = RetryPolicy { max_retries: 3, base: Duration::from_millis(1), ..RetryPolicy::default() };
    assert_eq!(policy.cap, Duration::from_secs(30), "the row is about the default cap");
    let (err, retries) = recording_retries(openai(&server, policy).complete(&request())).await;
    let err = err.unwrap_err();
    assert!(retries.is_empty(), "{retries:?}");
    assert_eq!(received(&server).await.len(), 1);
    match &err {
        ProviderError::Unavailable { status: 429, attempts: 1, .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("unavailable"), "{text}");
    assert!(text.contains("asked to wait 600.0 s") && text.contains("30.0 s cap"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Rows 5–9: statuses
// ---------------------------------------------------------------------------------------------

/// Row 5: 500 then 503s → `max_retries + 1` attempts with capped full-jitter sleeps. The base
/// (1 s) is far above the cap (50 ms): uncapped, the five sleeps would average 15.5 s and
/// fall under the bound below with a probability near 1e-4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row05_5xx_are_retried_with_capped_jitter() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(500, "server_error", "", "The server had an error"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    chat()
        .respond_with(openai_error(503, "server_error", "", "The engine is currently overloaded"))
        .expect(5)
        .mount(&server)
        .await;

    let policy = RetryPolicy { max_retries: 5, base: Duration::from_secs(1), cap: Duration::from_millis(50) };
    let (err, retries) = recording_retries(openai(&server, policy).complete(&request())).await;
    let err = err.unwrap_err();
    assert_eq!(received(&server).await.len(), 6);
    match &err {
        ProviderError::Unavailable { status: 503, attempts: 6, .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    // Five sleeps, each under the 50 ms cap (uncapped, a 1 s base would average 15.5 s in all).
    assert_eq!(retries.len(), 5, "{retries:?}");
    assert!(retries.iter().all(|r| r.wait <= Duration::from_millis(50) && !r.server_asked), "{retries:?}");
}

/// Row 6: Anthropic `529 overloaded_error` → retried to success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row06_anthropic_529_overloaded_is_retried() {
    let server = strict_server().await;
    let messages = || Mock::given(method("POST")).and(path("/v1/messages"));
    messages()
        .respond_with(ResponseTemplate::new(529).set_body_json(json!({
            "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_faults"
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    messages()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_faults", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 2}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let claude = Anthropic::new(AnthropicSettings {
        endpoint: EndpointSettings {
            name: "claude".into(),
            model: "claude-sonnet-4-5".into(),
            base_url: format!("{}/v1", server.uri()),
            api_key: Some(SecretString::from(KEY)),
            api_key_env: "ANTHROPIC_API_KEY".into(),
            timeout: Duration::from_secs(10),
            retry: fast(3),
        },
        anthropic_version: "2023-06-01".into(),
    })
    .unwrap();

    let (answer, retries) = recording_retries(claude.complete(&request())).await;
    assert_eq!(answer.unwrap().text, "fine");
    assert_eq!(received(&server).await.len(), 2);
    assert_eq!(retries.iter().map(|r| r.status).collect::<Vec<_>>(), [Some(529)]);
}

/// Row 7a: `401` → no retry; the error names the key's env var.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row07_401_is_not_retried_and_names_the_key_variable() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"))
        .expect(1)
        .mount(&server)
        .await;
    let (err, retries) = recording_retries(openai(&server, fast(3)).complete(&request())).await;
    let err = err.unwrap_err();
    assert!(retries.is_empty(), "{retries:?}");
    assert_eq!(received(&server).await.len(), 1);
    assert!(err.is_auth(), "{err:?}");
    assert!(err.to_string().contains(KEY_ENV), "{err}");
}

/// Row 7b: at process level a `401` exits 4 and the message names the env var.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row07_401_exits_4_naming_the_key_variable() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "main", &[entry("main", &server.uri(), "gpt-4o-mini", &["max_retries: 3"])]);
    let run = review(&cfg, &dir.path().join("state.db"));
    assert_eq!(run.code, 4, "stderr: {}", run.stderr);
    assert!(run.stderr.contains(KEY_ENV), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(received(&server).await.len(), 1);
    assert!(!run.stderr.contains("retrying in"), "{}", run.stderr);
}

/// Row 8: `400` → no retry, `Rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row08_400_is_rejected_without_retry() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(400, "invalid_request_error", "model_not_found", "The model `gpt-x` does not exist"))
        .expect(1)
        .mount(&server)
        .await;
    let (err, retries) = recording_retries(openai(&server, fast(3)).complete(&request())).await;
    assert!(retries.is_empty(), "{retries:?}");
    assert_eq!(received(&server).await.len(), 1);
    match err.unwrap_err() {
        ProviderError::Rejected { status: 400, message, .. } => {
            assert!(message.contains("does not exist"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Row 9: OpenAI `insufficient_quota` (a 429) → no retry, named as quota/billing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row09_insufficient_quota_is_not_retried_nor_called_rate_limited() {
    let server = strict_server().await;
    chat()
        .respond_with(
            openai_error(
                429,
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            )
            .insert_header("retry-after", "1"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (err, retries) = recording_retries(openai(&server, fast(3)).complete(&request())).await;
    let err = err.unwrap_err();
    assert!(retries.is_empty(), "the server's retry-after: 1 was not followed: {retries:?}");
    assert_eq!(received(&server).await.len(), 1);
    assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("quota or billing"), "{text}");
    assert!(!text.contains("rate limited"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Rows 10–12: the network
// ---------------------------------------------------------------------------------------------

/// Row 10: connections reset twice → retried, the third connection answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_connection_reset_is_retried() {
    let (base, accepts) = raw_server(vec![Conn::Reset, Conn::Reset, Conn::Serve]);
    let (answer, retries) =
        recording_retries(openai_at(base, fast(3), Duration::from_secs(10)).complete(&request())).await;
    assert_eq!(answer.unwrap().text, "fine");
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
    assert_eq!(retries.iter().map(|r| (r.attempt, r.status)).collect::<Vec<_>>(), [(1, None), (2, None)]);

    // Resets only: a network error after max_retries + 1 connections.
    let (base, accepts) = raw_server(vec![Conn::Reset]);
    let err = openai_at(base, fast(2), Duration::from_secs(10)).complete(&request()).await.unwrap_err();
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
    assert!(matches!(err, ProviderError::Network { attempts: 3, .. }), "{err:?}");
}

/// Row 11a: a server that never answers → each attempt times out, and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_per_attempt_timeout_fires_and_is_retried() {
    let server = strict_server().await;
    chat().respond_with(chat_ok("late").set_delay(Duration::from_secs(60))).expect(3).mount(&server).await;
    let provider = openai_at(format!("{}/v1", server.uri()), fast(2), Duration::from_millis(300));
    let (err, retries) = recording_retries(provider.complete(&request())).await;
    assert_eq!(received(&server).await.len(), 3);
    match err.unwrap_err() {
        ProviderError::Network { attempts: 3, message, .. } => assert!(message.contains("timed out"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    // Each timed-out attempt was retried as a connection error (no status).
    assert_eq!(retries.iter().map(|r| r.status).collect::<Vec<_>>(), [None, None]);
}

/// Row 11b: the chain's total deadline cuts retries short (library level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_total_deadline_cuts_retries_short() {
    let server = strict_server().await;
    chat().respond_with(chat_ok("late").set_delay(Duration::from_secs(60))).mount(&server).await;
    let provider: Arc<dyn Provider> =
        Arc::new(openai_at(format!("{}/v1", server.uri()), fast(5), Duration::from_millis(300)));
    let breaker = Arc::new(Breaker::persistent(
        breaker_settings(5, Duration::from_secs(60)),
        Arc::new(Store::open_in_memory().unwrap()),
    ));
    let chain = Resilient::new(provider, vec![], breaker.clone()).with_total_timeout(Some(Duration::from_secs(1)));
    let (err, retries) = recording_retries(chain.complete(&request())).await;
    match &err.unwrap_err() {
        ProviderError::Network { message, .. } => assert!(message.contains("total deadline"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    // Cut short: the policy allowed 5 retries; 1 s of 300 ms attempts leaves room for 3 at most.
    assert!((1..=3).contains(&retries.len()), "{retries:?}");
    let n = received(&server).await.len();
    assert!((3..=4).contains(&n), "1 s of 300 ms attempts with 1 ms backoff: {n} requests");
    // A short deadline is ours, not the provider's fault: the breaker counts nothing.
    assert_eq!(breaker.state("main/gpt-4o-mini").consecutive_failures, 0);
}

/// Row 11c: at process level, `timeout: 0.3, max_retries: 5, total_timeout: 1` ends well
/// under 5 s with a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_total_timeout_ends_the_process_early() {
    let server = strict_server().await;
    chat().respond_with(chat_ok("late").set_delay(Duration::from_secs(60))).mount(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "main",
        &[entry("main", &server.uri(), "gpt-4o-mini", &["timeout: 0.3", "max_retries: 5", "total_timeout: 1"])],
    );
    let run = review(&cfg, &dir.path().join("state.db"));
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("total deadline"), "{}", run.stderr);
    // Cut short of the 5 retries allowed.
    let retried = run.stderr.matches("retrying in").count();
    assert!((1..=3).contains(&retried), "{retried} retries: {}", run.stderr);
    // The per-attempt timeout fired at least once within the deadline (default 500 ms backoff).
    let n = received(&server).await.len();
    assert!((2..=4).contains(&n), "{n} requests");
}

/// Row 12: a body cut half way (`content-length: 1000`, 10 bytes, close) → a network error,
/// retried; the third connection answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row12_body_cut_short_is_retried_as_a_network_error() {
    let (base, accepts) = raw_server(vec![Conn::Cut, Conn::Cut, Conn::Serve]);
    let (answer, retries) =
        recording_retries(openai_at(base, fast(3), Duration::from_secs(10)).complete(&request())).await;
    assert_eq!(answer.unwrap().text, "fine");
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
    assert_eq!(retries.iter().map(|r| (r.attempt, r.status)).collect::<Vec<_>>(), [(1, None), (2, None)]);

    let (base, accepts) = raw_server(vec![Conn::Cut]);
    let err = openai_at(base, fast(1), Duration::from_secs(10)).complete(&request()).await.unwrap_err();
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    match err {
        ProviderError::Network { attempts: 2, message, .. } => {
            assert!(message.contains("reading the response body"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Rows 13–14: answers that are not what was asked
// ---------------------------------------------------------------------------------------------

/// Answers the scripted contents in order (the last one repeats).
struct Script(Vec<String>, AtomicUsize);

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.1.fetch_add(1, Ordering::SeqCst);
        chat_ok(self.0.get(n).or(self.0.last()).unwrap())
    }
}

fn script(contents: &[&str]) -> Script {
    Script(contents.iter().map(|s| s.to_string()).collect(), AtomicUsize::new(0))
}

fn user_prompt(req: &Request) -> String {
    body_of(req)["messages"][1]["content"].as_str().unwrap().to_owned()
}

/// Row 13: not JSON twice → exactly one repair request, then `BadAnswer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row13_malformed_json_gets_one_repair_then_bad_answer() {
    let server = strict_server().await;
    chat()
        .respond_with(script(&["Sure! Here is my review: looks good.", "Still no JSON, sorry."]))
        .expect(2)
        .mount(&server)
        .await;
    let (err, retries) = recording_retries(complete_json(&openai(&server, fast(3)), &review_request())).await;
    let err = err.unwrap_err();
    assert!(retries.is_empty(), "a repair is a new request, not a retry: {retries:?}");
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    assert!(user_prompt(&requests[1]).contains("not valid JSON"), "{}", user_prompt(&requests[1]));
    match err {
        ProviderError::BadAnswer { message, .. } => {
            assert!(message.contains("after one repair round") && message.contains("not valid JSON"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Row 14: valid JSON missing `findings` → a repair request quoting the error, then success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row14_schema_violation_is_repaired_with_the_error_quoted() {
    let server = strict_server().await;
    chat().respond_with(script(&[r#"{"summary": "Adds b()."}"#, &review_answer()])).expect(2).mount(&server).await;
    let answer = complete_json(&openai(&server, fast(3)), &review_request()).await.unwrap();
    assert_eq!(answer.value["findings"], json!([]));
    assert_eq!(answer.completions.len(), 2);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let first = user_prompt(&requests[0]);
    let repair = user_prompt(&requests[1]);
    assert!(repair.starts_with(&first), "the repair prompt keeps the task");
    assert!(repair.contains(r#""findings" is a required property"#), "{repair}");
    assert!(repair.contains(r#"{"summary": "Adds b()."}"#), "the previous answer is quoted: {repair}");
}

// ---------------------------------------------------------------------------------------------
// Rows 15–17: the circuit breaker and the fallback chain, across processes
// ---------------------------------------------------------------------------------------------

/// Row 15: five failing processes open the breaker; a sixth process sees it open and sends
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row15_five_failures_open_the_breaker_for_the_next_process() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(503, "server_error", "", "The engine is currently overloaded"))
        .expect(5)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let cfg = config(
        dir.path(),
        "main",
        &[entry(
            "main",
            &server.uri(),
            "gpt-4o-mini",
            &["max_retries: 0", "breaker: {failure_threshold: 5, open_for: 60}"],
        )],
    );
    for n in 1..=5 {
        let run = review(&cfg, &state);
        assert_eq!(run.code, 1, "run {n}: {}", run.stderr);
        assert!(run.stderr.contains("every model request failed"), "run {n}: {}", run.stderr);
        assert_eq!(received(&server).await.len(), n, "run {n}");
        if n == 4 {
            let r = BreakerRecord::load(&Store::open(&state).unwrap(), "main/gpt-4o-mini").unwrap().unwrap();
            assert_eq!((r.state, r.consecutive_failures), (BreakerState::Closed, 4));
        }
    }

    let sixth = review(&cfg, &state);
    assert_eq!(sixth.code, 1, "{}", sixth.stderr);
    assert_eq!(received(&server).await.len(), 5, "the sixth process sent a request past an open breaker");
    assert!(sixth.stderr.contains("circuit breaker for `main/gpt-4o-mini` is open"), "{}", sixth.stderr);
    assert!(!sixth.stderr.contains("retrying in"), "{}", sixth.stderr);

    let store = Store::open(&state).unwrap();
    let r = BreakerRecord::load(&store, "main/gpt-4o-mini").unwrap().unwrap();
    assert_eq!((r.state, r.consecutive_failures), (BreakerState::Open, 5));
    assert!(r.opened_at_ms.is_some());
    let events: Vec<String> =
        store.events(0).unwrap().into_iter().filter(|e| e.kind == "breaker").map(|e| e.detail).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("closed -> open"), "{events:?}");
}

/// Row 16: after `open_for`, one probe request goes out; its success closes the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row16_half_open_probe_success_closes_the_breaker() {
    let server = strict_server().await;
    chat()
        .respond_with(openai_error(503, "server_error", "", "The engine is currently overloaded"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let cfg = config(
        dir.path(),
        "main",
        &[entry(
            "main",
            &server.uri(),
            "gpt-4o-mini",
            &["max_retries: 0", "breaker: {failure_threshold: 1, open_for: 0.3}"],
        )],
    );
    let first = review(&cfg, &state);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let key = "main/gpt-4o-mini";
    assert_eq!(BreakerRecord::load(&Store::open(&state).unwrap(), key).unwrap().unwrap().state, BreakerState::Open);

    std::thread::sleep(Duration::from_millis(400));
    chat().respond_with(chat_ok(&review_answer())).with_priority(1).expect(1).mount(&server).await;
    let second = review(&cfg, &state);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(received(&server).await.len(), 2, "one failure, then exactly one probe");
    let report: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(report["models"], json!(["gpt-4o-mini-2024-07-18"]));

    let store = Store::open(&state).unwrap();
    let r = BreakerRecord::load(&store, key).unwrap().unwrap();
    assert_eq!((r.state, r.consecutive_failures, r.half_open_probes), (BreakerState::Closed, 0, 0));
    let events: Vec<String> =
        store.events(0).unwrap().into_iter().filter(|e| e.kind == "breaker").map(|e| e.detail).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[1].starts_with("open -> half-open") && events[2].starts_with("half-open -> closed"), "{events:?}");
}

/// The primary `a` (breaker open, seeded in the store) and its fallback `b`, which answers one
/// finding; the run and both fakes.
async fn fallback_run() -> (Run, MockServer, MockServer) {
    let a = strict_server().await;
    chat().respond_with(chat_ok(&review_answer())).expect(0).mount(&a).await;
    let b = strict_server().await;
    let finding = json!({"summary": "Adds b().", "findings": [{"path": "src/lib.rs", "line": 2, "severity": "low",
        "category": "style", "title": "b is unused", "body": "Nothing calls b()."}]});
    chat()
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_body(&finding.to_string(), "backup-model")))
        .expect(1)
        .mount(&b)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    {
        let settings = breaker_settings(5, Duration::from_secs(60));
        let breaker = Breaker::persistent(settings, Arc::new(Store::open(&state).unwrap()));
        for _ in 0..5 {
            breaker.admit("a/primary-model").unwrap().finish(CallOutcome::HealthFailure);
        }
        assert_eq!(breaker.state("a/primary-model").state, BreakerState::Open);
    }
    let cfg = config(
        dir.path(),
        "a",
        &[
            entry(
                "a",
                &a.uri(),
                "primary-model",
                &["max_retries: 0", "fallback: [b]", "breaker: {failure_threshold: 5, open_for: 60}"],
            ),
            entry("b", &b.uri(), "backup-model", &["max_retries: 0"]),
        ],
    );
    let run = review(&cfg, &state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (run, a, b)
}

/// Row 17: the primary's breaker is open → the fallback answers, the primary receives
/// nothing, the report names the fallback's model, and stderr warns about the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row17_open_primary_falls_back_to_the_second_provider() {
    let (run, a, b) = fallback_run().await;
    assert!(received(&a).await.is_empty());
    assert_eq!(received(&b).await.len(), 1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["provider"], "a");
    assert_eq!(report["models"], json!(["backup-model"]), "{report:#}");
    assert!(run.stderr.contains("circuit breaker for `a/primary-model` is open"), "{}", run.stderr);
    assert!(run.stderr.contains("falling back to `b/backup-model`"), "{}", run.stderr);
    assert!(!run.stderr.contains("retrying in"), "the open breaker was skipped, not retried: {}", run.stderr);
}

/// Regression (found by row 17): a finding answered by the fallback was labelled with the
/// primary's entry and model (`a` / `primary-model`), which never answered, in the report and
/// in the inline comment ("model `primary-model`").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_of_a_fallback_answer_were_attributed_to_the_skipped_primary() {
    let (run, _a, _b) = fallback_run().await;
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let model_findings: Vec<&Value> =
        report["findings"].as_array().unwrap().iter().filter(|f| f["origin"]["kind"] == "model").collect();
    assert_eq!(model_findings.len(), 1, "{report:#}");
    assert_eq!(model_findings[0]["origin"], json!({"kind": "model", "provider": "b", "model": "backup-model"}));
    let comments = report["review"]["comments"].to_string();
    assert!(comments.contains("backup-model") && !comments.contains("primary-model"), "{comments}");
}

// ---------------------------------------------------------------------------------------------
// Extra rows
// ---------------------------------------------------------------------------------------------

/// Gemini's safety block → a clear "safety" error, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_safety_block_is_a_clear_error_without_retry() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let gemini = Gemini::new(GeminiSettings {
        name: "gem".into(),
        model: "gemini-2.5-flash".into(),
        base_url: format!("{}/v1beta", server.uri()),
        api_key: Some(SecretString::from(KEY)),
        api_key_env: "GEMINI_API_KEY".into(),
        timeout: Duration::from_secs(10),
        retry: fast(3),
    })
    .unwrap();
    let err = gemini.complete(&request()).await.unwrap_err();
    assert_eq!(received(&server).await.len(), 1);
    assert!(matches!(err, ProviderError::Blocked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("safety") && text.contains("SAFETY"), "{text}");
}

/// Every chunk failing → exit 1, and nothing is posted to GitHub (no review, no summary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_chunks_failing_exits_1_and_posts_nothing() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join("diffs/02-medium.ripgrep-efd9cfb2.diff")).unwrap();
    let provider = strict_server().await;
    chat()
        .respond_with(openai_error(503, "server_error", "", "The engine is currently overloaded"))
        .mount(&provider)
        .await;
    let cfg = config_for(&provider.uri(), "  max_chunk_tokens: 1500\n");
    let gh = FakeGitHub::start("Codertocat", "Hello-World", 2, diff, Some(cfg)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = agentctl()
        .args(["review", "--format", "json"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_fakeinstallationtoken0123456789abcdefABCD")
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_REPOSITORY", "Codertocat/Hello-World")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", corpora.join("webhooks/examples/pull_request/opened.payload.json"))
        .env("GITHUB_OUTPUT", dir.path().join("output"))
        .env("GITHUB_STEP_SUMMARY", dir.path().join("summary"))
        .env("OPENAI_API_KEY", KEY)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("every model request failed"), "{stderr}");
    assert!(!stderr.contains("retrying in"), "max_retries: 0 retried: {stderr}");
    // Several chunks, each tried once (max_retries: 0) until the breaker (threshold 5) opened.
    let chunks = stderr.lines().filter(|l| l.contains("chunk ") && l.contains(" failed:")).count();
    assert!(chunks >= 2, "the row needs several chunks: {stderr}");
    let calls = received(&provider).await.len();
    assert!((1..=chunks).contains(&calls), "{calls} provider calls for {chunks} chunks");
    {
        let state = gh.state.lock().unwrap();
        assert!(state.review_posts.is_empty(), "a review was posted: {:?}", state.review_posts);
        assert_eq!((state.comment_posts, state.comment_patches), (0, 0), "a summary was written");
    }
    let requests = gh.requests().await;
    assert!(requests.iter().all(|(m, _)| m == "GET"), "{requests:?}");
}
