//! The routing domain of `agentctl route` (SPEC §3.3): the event's facts, the rules that match
//! them ([`matchers`]), the decision ([`decide`]) and its job summary ([`render`]).

pub(crate) mod decide;
pub(crate) mod matchers;
pub(crate) mod render;

use serde::Serialize;
use serde_json::Value;

use crate::context::{Context, Event};
use crate::exit::ExitError;
use crate::github::GitHub;

/// The GitHub client of the run, built at its first use (the command's lazy client).
pub(crate) trait Client {
    /// The client; `None` without a token or a repository.
    ///
    /// Errors: the client cannot be built (a malformed `GITHUB_API_URL`).
    fn get(&self) -> Result<Option<&GitHub>, ExitError>;
}

/// The decision, as written to the outputs and `--format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Decision {
    /// `review`, `fix` or `none`.
    pub task: &'static str,
    /// The `providers:` entry (`builtin` for the offline rules; empty for `none`).
    pub provider: String,
    /// The entry's model (empty for builtin and `none`).
    pub model: String,
    /// The rule's tier, or the budget's `downgrade_to`; empty when neither named one.
    pub tier: String,
    /// Runner labels for `runs-on: ${{ fromJSON(needs.route.outputs.runs-on) }}`.
    pub runs_on: Vec<String>,
    /// One human sentence.
    pub reason: String,
    /// The catalog name.
    pub event: &'static str,
    /// `GITHUB_EVENT_NAME.action`, e.g. `pull_request.synchronize`.
    pub event_raw: String,
    /// The slash command's task (empty when none).
    pub command: String,
    /// The rule's `args` (written by the repository; empty when none).
    pub args: String,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    /// The rule that decided (`routes[2]` or its name); empty when none matched.
    pub rule: String,
    /// How the decision was reached, one line a step (`--explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<String>,
}

impl Decision {
    /// The step outputs: `task`, `provider`, `model`, `tier`, `runs-on` (a JSON array of
    /// strings), `reason`, `event`, `command`, `args`, `pr`, `issue` (empty when none).
    pub(crate) fn outputs(&self) -> Vec<(String, String)> {
        let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        vec![
            ("task".into(), self.task.into()),
            ("provider".into(), self.provider.clone()),
            ("model".into(), self.model.clone()),
            ("tier".into(), self.tier.clone()),
            ("runs-on".into(), serde_json::to_string(&self.runs_on).unwrap_or_else(|_| "[]".into())),
            ("reason".into(), self.reason.clone()),
            ("event".into(), self.event.into()),
            ("command".into(), self.command.clone()),
            ("args".into(), self.args.clone()),
            ("pr".into(), num(self.pr)),
            ("issue".into(), num(self.issue)),
        ]
    }
}

/// What the payload says about the event, read once. Missing fields are `None`: a matcher
/// that needs one does not match, and says so.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EventFacts {
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub labels: Option<Vec<String>>,
    pub draft: Option<bool>,
    pub base_branch: Option<String>,
    pub head_branch: Option<String>,
    /// Additions + deletions, from the payload's pull request.
    pub changed_lines: Option<u64>,
    /// `author_association` of the comment, review, pull request or issue (first present).
    pub author_association: Option<String>,
    /// `login` and `type` (`User`, `Bot`) of the comment's or review's author, for comment
    /// and review events.
    pub commenter: Option<(String, String)>,
    /// `author_association` of the comment or review itself (never the PR's or the issue's): a
    /// slash command is obeyed by this one only.
    pub commenter_association: Option<String>,
    /// The comment's or review's body, for comment and review events.
    pub body: Option<String>,
}

impl EventFacts {
    /// Reads the facts of `ctx`'s payload.
    pub(crate) fn of(ctx: &Context) -> EventFacts {
        let p = &ctx.payload;
        let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        let n = |ptr: &str| p.pointer(ptr).and_then(Value::as_u64);
        let on_pr_issue = p.pointer("/issue/pull_request").is_some_and(|v| !v.is_null());
        let pr = n("/pull_request/number")
            .or_else(|| on_pr_issue.then(|| n("/issue/number")).flatten())
            .or_else(|| n("/workflow_run/pull_requests/0/number"))
            .or_else(|| n("/check_run/pull_requests/0/number"))
            .or_else(|| n("/check_suite/pull_requests/0/number"))
            .or_else(|| match &ctx.event {
                Event::WorkflowDispatch(e) => e.pr_number(),
                _ => None,
            });
        let issue = (!on_pr_issue).then(|| n("/issue/number")).flatten().or_else(|| {
            p.pointer("/inputs/issue").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
                _ => None,
            })
        });
        let labels = ["/pull_request/labels", "/issue/labels"].iter().find_map(|ptr| {
            p.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        });
        let draft = p
            .pointer("/pull_request/draft")
            .or_else(|| on_pr_issue.then(|| p.pointer("/issue/draft")).flatten())
            .and_then(Value::as_bool);
        let changed_lines = match (n("/pull_request/additions"), n("/pull_request/deletions")) {
            (Some(a), Some(d)) => Some(a.saturating_add(d)),
            _ => None,
        };
        let head_branch = s("/pull_request/head/ref").or_else(|| {
            (ctx.event_name.as_deref() == Some("push"))
                .then(|| s("/ref").and_then(|r| r.strip_prefix("refs/heads/").map(str::to_owned)))
                .flatten()
        });
        let author_association = ["/comment", "/review", "/pull_request", "/issue"]
            .iter()
            .find_map(|o| s(&format!("{o}/author_association")));
        let author_of = |o: &str| {
            p.pointer(&format!("/{o}/user")).map(|u| {
                let f = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                (f("login"), f("type"))
            })
        };
        let (commenter, commenter_association, body) =
            match ["comment", "review"].iter().find(|o| p.get(**o).is_some_and(Value::is_object)) {
                Some(o) => (author_of(o), s(&format!("/{o}/author_association")), s(&format!("/{o}/body"))),
                None => (None, None, None),
            };
        EventFacts {
            pr,
            issue,
            labels,
            draft,
            base_branch: s("/pull_request/base/ref"),
            head_branch,
            changed_lines,
            author_association,
            commenter,
            commenter_association,
            body,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::context::Env;

    fn ctx(name: &str, payload: Value) -> Context {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        Context::load(&Env::from_pairs([]), Some(&path), Some(name)).unwrap()
    }

    #[test]
    fn facts_come_from_the_pull_request_and_the_comment() {
        let c = ctx(
            "pull_request",
            serde_json::json!({
                "action": "opened", "number": 3,
                "pull_request": {"number": 3, "draft": true, "additions": 5, "deletions": 2,
                    "labels": [{"name": "bug"}], "author_association": "CONTRIBUTOR",
                    "head": {"ref": "feat", "sha": "a"}, "base": {"ref": "main", "sha": "b"}},
                "repository": {"full_name": "o/r"}
            }),
        );
        let f = EventFacts::of(&c);
        assert_eq!(f.pr, Some(3));
        assert_eq!(f.labels, Some(vec!["bug".to_owned()]));
        assert_eq!((f.draft, f.changed_lines), (Some(true), Some(7)));
        assert_eq!((f.base_branch.as_deref(), f.head_branch.as_deref()), (Some("main"), Some("feat")));
        assert_eq!(f.author_association.as_deref(), Some("CONTRIBUTOR"));
        assert_eq!((f.commenter, f.commenter_association), (None, None));
    }

    #[test]
    fn runs_on_output_is_a_json_array_of_strings() {
        let d = Decision {
            task: "review",
            provider: "main".into(),
            model: "m".into(),
            tier: String::new(),
            runs_on: vec!["self-hosted".into(), "gpu \"x\"".into()],
            reason: "r".into(),
            event: "pr.created",
            event_raw: "pull_request.opened".into(),
            command: String::new(),
            args: String::new(),
            pr: Some(1),
            issue: None,
            rule: String::new(),
            explain: vec![],
        };
        let out = d.outputs();
        let runs_on = &out.iter().find(|(k, _)| k == "runs-on").unwrap().1;
        let parsed: Vec<String> = serde_json::from_str(runs_on).unwrap();
        assert_eq!(parsed, d.runs_on);
        assert_eq!(out.iter().find(|(k, _)| k == "issue").unwrap().1, "");
    }
}
