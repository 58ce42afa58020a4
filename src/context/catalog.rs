//! The event catalog: one stable name per kind of GitHub event (SPEC §3.3), so routing rules,
//! outputs and logs say `pr.updated` instead of `pull_request` + `synchronize`.
//!
//! Source: GitHub's "Events that trigger workflows" and "Webhook events and payloads"
//! (<https://docs.github.com/en/actions/writing-workflows/choosing-when-your-workflow-runs/events-that-trigger-workflows>).
//! The name comes from `GITHUB_EVENT_NAME` and the payload's `action` (plus, where it decides,
//! `pull_request.merged`, `issue.pull_request`, `workflow_run.conclusion`,
//! `check_run.conclusion`). An event or action outside the table is [`UNKNOWN`] with its raw
//! name kept (`pull_request.assigned`), so adding a mapping is always a deliberate change.
//!
//! | catalog name | event (`action`) |
//! |---|---|
//! | `pr.created` | `pull_request`/`pull_request_target` (`opened`) |
//! | `pr.updated` | … (`synchronize`) |
//! | `pr.reopened` | … (`reopened`) |
//! | `pr.ready` | … (`ready_for_review`) |
//! | `pr.labeled` | … (`labeled`) |
//! | `pr.closed` | … (`closed`, not merged) |
//! | `pr.merged` | … (`closed`, `pull_request.merged: true`) |
//! | `pr.reviewed` | `pull_request_review` (`submitted`) |
//! | `pr.review_commented` | `pull_request_review_comment` (`created`) |
//! | `pr.commented` | `issue_comment` (`created`) on a pull request |
//! | `issue.created` | `issues` (`opened`) |
//! | `issue.labeled` | `issues` (`labeled`) |
//! | `issue.commented` | `issue_comment` (`created`) on an issue |
//! | `workflow.failed` | `workflow_run` (`completed`, conclusion `failure` or `timed_out`) |
//! | `check.failed` | `check_run`/`check_suite` (`completed`, conclusion `failure` or `timed_out`) |
//! | `push` | `push` |
//! | `schedule` | `schedule` |
//! | `dispatch` | `workflow_dispatch`, `repository_dispatch` |
//! | `runner.job_queued` | `workflow_job` (`queued`) |
//! | `unknown` | anything else |

use serde_json::Value;

/// The catalog name of an event outside the table.
pub const UNKNOWN: &str = "unknown";

/// Every catalog name, in table order (for `--explain`, the README and tests).
pub const NAMES: [&str; 20] = [
    "pr.created",
    "pr.updated",
    "pr.reopened",
    "pr.ready",
    "pr.labeled",
    "pr.closed",
    "pr.merged",
    "pr.reviewed",
    "pr.review_commented",
    "pr.commented",
    "issue.created",
    "issue.labeled",
    "issue.commented",
    "workflow.failed",
    "check.failed",
    "push",
    "schedule",
    "dispatch",
    "runner.job_queued",
    UNKNOWN,
];

/// An event named by the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEvent {
    /// One of [`NAMES`].
    pub name: &'static str,
    /// `GITHUB_EVENT_NAME`, with `.action` when the payload has one: `pull_request.synchronize`.
    /// Comes from the environment and the payload: quote it, never interpret it.
    pub raw: String,
}

/// Names `event_name` (`GITHUB_EVENT_NAME`; empty when unknown) with `payload` (`Value::Null`
/// when there is none). Never fails: a payload without the fields a mapping reads is
/// [`UNKNOWN`].
pub fn classify(event_name: &str, payload: &Value) -> CatalogEvent {
    let action = payload.get("action").and_then(Value::as_str);
    let raw = match action {
        Some(a) if !event_name.is_empty() => format!("{event_name}.{a}"),
        _ if event_name.is_empty() => "(none)".to_owned(),
        _ => event_name.to_owned(),
    };
    let failed = |obj: &str| {
        matches!(payload.pointer(&format!("/{obj}/conclusion")).and_then(Value::as_str), Some("failure" | "timed_out"))
    };
    let name = match (event_name, action.unwrap_or("")) {
        ("pull_request" | "pull_request_target", a) => match a {
            "opened" => "pr.created",
            "synchronize" => "pr.updated",
            "reopened" => "pr.reopened",
            "ready_for_review" => "pr.ready",
            "labeled" => "pr.labeled",
            "closed" if payload.pointer("/pull_request/merged") == Some(&Value::Bool(true)) => "pr.merged",
            "closed" => "pr.closed",
            _ => UNKNOWN,
        },
        ("pull_request_review", "submitted") => "pr.reviewed",
        ("pull_request_review_comment", "created") => "pr.review_commented",
        ("issue_comment", "created") => match payload.pointer("/issue/pull_request") {
            Some(v) if !v.is_null() => "pr.commented",
            _ => "issue.commented",
        },
        ("issues", "opened") => "issue.created",
        ("issues", "labeled") => "issue.labeled",
        ("workflow_run", "completed") if failed("workflow_run") => "workflow.failed",
        ("check_run", "completed") if failed("check_run") => "check.failed",
        ("check_suite", "completed") if failed("check_suite") => "check.failed",
        ("push", _) => "push",
        ("schedule", _) => "schedule",
        ("workflow_dispatch" | "repository_dispatch", _) => "dispatch",
        ("workflow_job", "queued") => "runner.job_queued",
        _ => UNKNOWN,
    };
    CatalogEvent { name, raw }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_request_actions_and_merges_have_their_names() {
        let pr = |action: &str, merged: bool| json!({"action": action, "pull_request": {"merged": merged}});
        assert_eq!(classify("pull_request", &pr("opened", false)).name, "pr.created");
        assert_eq!(classify("pull_request_target", &pr("synchronize", false)).name, "pr.updated");
        assert_eq!(classify("pull_request", &pr("closed", true)).name, "pr.merged");
        assert_eq!(classify("pull_request", &pr("closed", false)).name, "pr.closed");
        let assigned = classify("pull_request", &pr("assigned", false));
        assert_eq!((assigned.name, assigned.raw.as_str()), (UNKNOWN, "pull_request.assigned"));
    }

    #[test]
    fn comments_are_told_apart_by_where_they_are() {
        let on_pr = json!({"action": "created", "issue": {"pull_request": {"url": "u"}}});
        let on_issue = json!({"action": "created", "issue": {"pull_request": null}});
        assert_eq!(classify("issue_comment", &on_pr).name, "pr.commented");
        assert_eq!(classify("issue_comment", &on_issue).name, "issue.commented");
        assert_eq!(classify("issue_comment", &json!({"action": "edited"})).name, UNKNOWN);
    }

    #[test]
    fn only_failed_runs_are_failures_and_missing_fields_are_unknown() {
        let run = |c: &str| json!({"action": "completed", "workflow_run": {"conclusion": c}});
        assert_eq!(classify("workflow_run", &run("failure")).name, "workflow.failed");
        assert_eq!(classify("workflow_run", &run("timed_out")).name, "workflow.failed");
        assert_eq!(classify("workflow_run", &run("success")).name, UNKNOWN);
        assert_eq!(classify("workflow_run", &json!({"action": "completed"})).name, UNKNOWN);
        assert_eq!(classify("schedule", &Value::Null).name, "schedule");
        assert_eq!(classify("", &Value::Null), CatalogEvent { name: UNKNOWN, raw: "(none)".into() });
        assert!(NAMES.iter().all(|n| *n == UNKNOWN || classify_known(n)));
    }

    /// Whether some (event, action) pair in the table yields `name` (every listed name is
    /// reachable).
    fn classify_known(name: &str) -> bool {
        let samples = [
            ("pull_request", json!({"action": "opened"})),
            ("pull_request", json!({"action": "synchronize"})),
            ("pull_request", json!({"action": "reopened"})),
            ("pull_request", json!({"action": "ready_for_review"})),
            ("pull_request", json!({"action": "labeled"})),
            ("pull_request", json!({"action": "closed"})),
            ("pull_request", json!({"action": "closed", "pull_request": {"merged": true}})),
            ("pull_request_review", json!({"action": "submitted"})),
            ("pull_request_review_comment", json!({"action": "created"})),
            ("issue_comment", json!({"action": "created", "issue": {"pull_request": {}}})),
            ("issues", json!({"action": "opened"})),
            ("issues", json!({"action": "labeled"})),
            ("issue_comment", json!({"action": "created", "issue": {}})),
            ("workflow_run", json!({"action": "completed", "workflow_run": {"conclusion": "failure"}})),
            ("check_run", json!({"action": "completed", "check_run": {"conclusion": "failure"}})),
            ("push", json!({})),
            ("schedule", json!({})),
            ("workflow_dispatch", json!({})),
            ("workflow_job", json!({"action": "queued"})),
        ];
        samples.iter().any(|(e, p)| classify(e, p).name == name)
    }
}
