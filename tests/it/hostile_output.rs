//! Workflow-command and Markdown injection through what a run prints (issue #17): a model name
//! (from an import, or a provider's `model` field) and a `repository_dispatch` action are
//! written by a possible attacker. In Actions every printed text goes through the one
//! neutralizer `review` uses: text is fenced with `::stop-commands::`, JSON is made inert
//! without changing its value; every Markdown sink defangs HTML comments.

use serde_json::{json, Value};

use crate::common::*;
use crate::cost::record;
use agentctl::store::Store;

const HOSTILE_MODEL: &str = "gpt-x\n::error file=a.rs::pwned\n##[warning]also <!-- hide the rest";

/// Whether the runner would read a workflow command in `out`: a line that starts with `::` or
/// holds `##[` outside a `::stop-commands::TOKEN` … `::TOKEN::` fence.
fn runner_reads_a_command(out: &str) -> bool {
    let mut fence: Option<String> = None;
    for line in out.split(['\n', '\r']) {
        let t = line.trim_start();
        match &fence {
            Some(token) if t == format!("::{token}::") => fence = None,
            Some(_) => {}
            None => {
                if let Some(token) = t.strip_prefix("::stop-commands::") {
                    fence = Some(token.to_string());
                } else if t.starts_with("::") || t.contains("##[") {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn the_oracle_sees_raw_commands_and_not_fenced_ones() {
    assert!(runner_reads_a_command("a\n::error::x\n"));
    assert!(runner_reads_a_command("x ##[warning]y"));
    assert!(!runner_reads_a_command("::stop-commands::t0k\n::error::x\n::t0k::\n"));
    assert!(!runner_reads_a_command("plain text\n"));
}

fn hostile_ledger() -> std::path::PathBuf {
    let path = unique_state_path();
    let store = Store::open(&path).unwrap();
    // 2026-10-15: inside the report window below. The ledger keeps the name as given.
    store.record_usage(&record(1_792_000_000_000, "octo/r", "wf", HOSTILE_MODEL, Some(0.5), "ok")).unwrap();
    path
}

#[test]
fn a_hostile_model_name_is_inert_in_every_cost_report_format_and_defanged_in_the_summary() {
    let state = hostile_ledger();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    for format in ["table", "csv", "json", "markdown"] {
        let out = agentctl()
            .current_dir(dir.path())
            .env("AGENTCTL_STATE", &state)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args(["cost", "report", "--since", "2026-10-01", "--until", "2026-10-30", "--group-by", "model"])
            .args(["--format", format, "--summary"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("pwned"), "{format}: the row is there: {stdout}");
        assert!(!runner_reads_a_command(&stdout), "{format}: the runner would read a command:\n{stdout}");
        if format == "json" {
            let v: Value = serde_json::from_str(&stdout).unwrap();
            assert!(v.to_string().contains("##[warning]"), "JSON keeps its value");
        }
    }
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("pwned") && !md.contains("<!--"), "the job summary is defanged:\n{md}");
    // Outside Actions nothing is fenced (a terminal shows the text as is).
    let out = agentctl()
        .current_dir(dir.path())
        .env("AGENTCTL_STATE", &state)
        .args(["cost", "report", "--since", "2026-10-01", "--until", "2026-10-30", "--group-by", "model"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("::stop-commands::"));
}

#[test]
fn a_hostile_dispatch_action_is_inert_in_route_explain_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let payload = json!({"action": "go\n::error::pwned\n##[warning]x", "repository": {"full_name": "octo/hello"},
                         "sender": {"login": "dev", "type": "User"}, "client_payload": {}});
    let event = write(dir.path(), "event.json", payload.to_string());
    let config = write(dir.path(), "agentctl.yml", "provider: rules\nproviders:\n  rules:\n    kind: builtin\n");
    for format in ["text", "json"] {
        let out = agentctl()
            .current_dir(dir.path())
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "octo/hello")
            .args(["route", "--explain", "--format", format, "--event-name", "repository_dispatch", "--event"])
            .arg(&event)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("pwned"), "{format}: the action is shown: {stdout}");
        assert!(!runner_reads_a_command(&stdout), "{format}: the runner would read a command:\n{stdout}");
        if format == "json" {
            assert!(serde_json::from_str::<Value>(&stdout).is_ok(), "still JSON: {stdout}");
        }
    }
}
