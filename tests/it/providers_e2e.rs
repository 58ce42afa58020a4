//! `review` works unchanged with each provider kind selected in config: one end-to-end run of
//! the real binary per kind, against a loopback fake speaking that provider's wire format.

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn catch_all(server: &MockServer) {
    mount_catch_all(server, "provider").await;
}

/// Runs a dry-run review of [`ONE_FILE_DIFF`] with `config`, returning the JSON report.
fn review(config: &str, env: &[(&str, &str)]) -> Value {
    review_with_state(config, env, &unique_state_path())
}

fn review_with_state(config: &str, env: &[(&str, &str)], state: &std::path::Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config);
    let mut cmd = agentctl();
    cmd.env("AGENTCTL_STATE", state);
    cmd.args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.write_stdin(ONE_FILE_DIFF).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_model_finding(report: &Value, model: &str) {
    assert_eq!(report["models"], json!([model]), "{report}");
    let inline = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == "Division by zero")
        .unwrap_or_else(|| panic!("model finding missing: {}", report["findings"]));
    assert_eq!((inline["line"].as_u64(), inline["placement"].as_str()), (Some(3), Some("inline")));
    assert_eq!(report["review"]["comments"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_openai() {
    let server = fake_openai(division_answer(), std::time::Duration::ZERO).await;
    let state = unique_state_path();
    let report = review_with_state(
        &config_for(&server.uri(), ""),
        &[("OPENAI_API_KEY", "sk-test-key-openai-0123456789")],
        &state,
    );
    assert_model_finding(&report, "gpt-4o-mini-2024-07-18");
    assert_eq!(report["usage"]["input_tokens"], 1000);
    assert_eq!(report["usage"]["cached_input_tokens"], 200);
    // Every provider call is in the ledger, with its token classes and cost.
    let ledger = agentctl::store::Store::open(&state).unwrap().usage_since(0).unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let r = &ledger[0];
    assert_eq!(
        (r.task.as_str(), r.provider.as_str(), r.model.as_str(), r.outcome.as_str()),
        ("review", "main", "gpt-4o-mini-2024-07-18", "ok")
    );
    assert_eq!((r.usage.input_tokens, r.usage.cached_input_tokens, r.usage.output_tokens), (1000, 200, 150));
    assert!(r.cost_usd.unwrap() > 0.0 && r.price_table.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_anthropic() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "test-anthropic-key-0123456789"))
        .and(header_exists("anthropic-version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "review_output", "input": division_answer()}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 900, "output_tokens": 120, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 50}
        })))
        .expect(1)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let config = format!(
        "provider: claude\nproviders:\n  claude:\n    kind: anthropic\n    model: claude-sonnet-4-5\n    base_url: {}/v1\n",
        server.uri()
    );
    let report = review(&config, &[("ANTHROPIC_API_KEY", "test-anthropic-key-0123456789")]);
    assert_model_finding(&report, "claude-sonnet-4-5-20250929");
    assert_eq!(report["usage"]["input_tokens"], 900);
    assert_eq!(report["usage"]["cached_input_tokens"], 300);
    assert_eq!(report["usage"]["cache_write_tokens"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_azure_openai() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/review-4o/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", "azure-test-key-0123456789"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": division_answer().to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 500, "completion_tokens": 80, "total_tokens": 580}
        })))
        .expect(1)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let config = format!(
        "provider: az\nproviders:\n  az:\n    kind: azure-openai\n    model: gpt-4o\n    base_url: {}\n    deployment: review-4o\n",
        server.uri()
    );
    let report = review(&config, &[("AZURE_OPENAI_API_KEY", "azure-test-key-0123456789")]);
    assert_model_finding(&report, "gpt-4o-2024-08-06");
    assert!(server.received_requests().await.unwrap().iter().all(|r| !r.headers.contains_key("authorization")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_gemini() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(header("x-goog-api-key", "gemini-test-key-0123456789"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": division_answer().to_string()}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 700, "cachedContentTokenCount": 100, "candidatesTokenCount": 60, "totalTokenCount": 760},
            "modelVersion": "gemini-2.5-flash"
        })))
        .expect(1)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let config = format!(
        "provider: g\nproviders:\n  g:\n    kind: gemini\n    model: gemini-2.5-flash\n    base_url: {}/v1beta\n",
        server.uri()
    );
    let report = review(&config, &[("GEMINI_API_KEY", "gemini-test-key-0123456789")]);
    assert_model_finding(&report, "gemini-2.5-flash");
    assert_eq!(report["usage"]["input_tokens"], 600, "promptTokenCount includes the cached tokens");
    assert_eq!(report["usage"]["cached_input_tokens"], 100);
    let url = server.received_requests().await.unwrap()[0].url.to_string();
    assert!(!url.contains("key="), "the key must never be in the URL: {url}");
}

#[test]
fn review_with_an_agent_cli() {
    let dir = tempfile::tempdir().unwrap();
    // The fake agent reads the prompt from stdin (proving it arrives) and answers with JSON.
    let script = write(
        dir.path(),
        "fake-agent.sh",
        format!(
            "#!/bin/sh\nprompt=$(cat)\ncase \"$prompt\" in *src/lib.rs*) ;; *) echo 'no diff on stdin' >&2; exit 9;; esac\ncat <<'EOF'\n{}\nEOF\n",
            division_answer()
        ),
    );
    let config = format!(
        "provider: agent\nproviders:\n  agent:\n    kind: command\n    model: fake-agent\n    command: [/bin/sh, {}]\n",
        script.display()
    );
    let report = review(&config, &[]);
    assert_model_finding(&report, "fake-agent");
}

#[test]
fn review_with_builtin_only() {
    let report = review("provider: rules\nproviders:\n  rules:\n    kind: builtin\n", &[]);
    assert_eq!(report["provider"], "rules");
    assert_eq!(report["models"], json!([]));
    assert_eq!(report["chunks"], 0);
    assert!(report["findings"].as_array().unwrap().iter().all(|f| f["origin"]["kind"] == "rule"));
}

/// Whether `pid` runs (a zombie waiting for its new parent to reap it does not count).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// A job cancellation (SIGTERM) or Ctrl-C (SIGINT) while an agent CLI runs used to leave the
/// agent's tools running: the agent is in a process group of its own, so agentctl must kill it.
#[cfg(unix)]
#[test]
fn signal_to_agentctl_left_the_agents_grandchildren_running() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    for (signal, code) in [(rustix::process::Signal::TERM, 143), (rustix::process::Signal::INT, 130)] {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = write(
            dir.path(),
            "slow-agent.sh",
            format!("#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! > {}\ncat >/dev/null\nwait\n", pidfile.display()),
        );
        let cfg = write(
            dir.path(),
            "agentctl.yml",
            format!(
                "provider: agent\nproviders:\n  agent:\n    kind: command\n    command: [/bin/sh, {}]\n",
                script.display()
            ),
        );
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("agentctl"));
        cmd.env_clear();
        for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("AGENTCTL_STATE", unique_state_path());
        cmd.args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()]);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(ONE_FILE_DIFF.as_bytes()).unwrap();

        let deadline = Instant::now() + Duration::from_secs(20);
        let grandchild = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the agent never started");
            assert!(child.try_wait().unwrap().is_none(), "agentctl exited before the agent started");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(alive(grandchild));

        let sent = Instant::now();
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if sent.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                panic!("agentctl did not exit within 5 s of {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived {signal:?} to agentctl");
        assert_eq!(status.code(), Some(code), "{signal:?}: 128 + the signal's number");
    }
}

/// An agent CLI runs tools the model picks: inside the process boundary (issue #17) it cannot
/// read agentctl's environment or memory, runs without capabilities or new privileges, and what
/// it daemonises dies when it ends.
#[cfg(target_os = "linux")]
#[test]
fn an_agent_cli_cannot_reach_agentctls_secrets_and_its_daemons_die_with_it() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let daemon = dir.path().join("daemon");
    let script = write(
        dir.path(),
        "nosy-agent.sh",
        format!(
            "#!/bin/sh\ncat >/dev/null\n{{ cat /proc/$PPID/environ || echo 'environ denied'; grep -E '^(NoNewPrivs|CapEff):' /proc/self/status; }} > {seen} 2>&1\nsetsid sh -c 'echo $$ > {daemon}; exec sleep 302' </dev/null >/dev/null 2>&1 &\nsleep 0.2\ncat <<'EOF'\n{}\nEOF\n",
            division_answer(),
            seen = seen.display(),
            daemon = daemon.display(),
        ),
    );
    let config = format!(
        "provider: agent\nproviders:\n  agent:\n    kind: command\n    model: fake-agent\n    command: [/bin/sh, {}]\n",
        script.display()
    );
    let report = review(&config, &[("OPENAI_API_KEY", "sk-test-not-for-the-agent-0123456789")]);
    assert_model_finding(&report, "fake-agent");
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(!seen.contains("sk-test-not-for-the-agent"), "{seen}");
    assert!(seen.contains("environ denied") && seen.contains("NoNewPrivs:\t1"), "{seen}");
    assert!(seen.contains("CapEff:\t0000000000000000"), "{seen}");
    let pid: u32 = std::fs::read_to_string(&daemon).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the agent's daemon {pid} outlived it");
}
