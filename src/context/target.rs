//! Which pull request (or issue) a run acts on, from the flags and the event (SPEC §3.1 step 1),
//! and who may trigger a paid run by comment.
//!
//! A comment is written by anyone who can comment, so a slash command counts only when it is
//! on the comment's first line, exactly `/agentctl <task>` (ASCII, so look-alikes such as
//! `／agentctl` never match), from an allowed `author_association` (default OWNER, MEMBER,
//! COLLABORATOR: GitHub docs, "author_association" in the webhook payloads), and never from a
//! bot (a loop guard: agentctl's own comments are written by a bot).

use super::{Context, Event};

/// The author associations allowed to trigger a run by comment when config names none.
pub const DEFAULT_ALLOWED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// What a run acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Pull request (or issue) number.
    Number(u64),
    /// A local run without one (a diff file, local git).
    None,
    /// The event is a comment that is not this command (or not on a pull request when one is
    /// needed): nothing to do.
    NotACommand,
}

/// The PR fields a command needs, from the payload or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrMeta {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub head_sha: String,
    pub base_sha: String,
    /// Base branch name, for messages.
    pub base_ref: String,
}

impl PrMeta {
    /// The PR carried by a `pull_request*` payload, when it is PR `number`.
    pub fn from_event(ctx: &Context, number: u64) -> Option<PrMeta> {
        let e = ctx.pull_request().filter(|e| e.number == number)?;
        Some(PrMeta {
            number,
            title: e.pull_request.title.clone(),
            body: e.pull_request.body.clone(),
            head_sha: e.pull_request.head.sha.clone(),
            base_sha: e.pull_request.base.sha.clone(),
            base_ref: e.pull_request.base.git_ref.clone(),
        })
    }

    /// The PR of any payload carrying a `pull_request` object with a number and a base sha
    /// (`pull_request*`, `pull_request_review*` events), for choosing the config: the title
    /// and body are left empty, missing refs are empty strings. `None` when either field is
    /// missing, so a caller falls back to the non-PR rule, never to the PR's own copy.
    pub fn from_payload(payload: &serde_json::Value) -> Option<PrMeta> {
        use serde_json::Value;
        let s = |ptr: &str| payload.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        Some(PrMeta {
            number: payload.pointer("/pull_request/number").and_then(Value::as_u64)?,
            title: String::new(),
            body: None,
            head_sha: s("/pull_request/head/sha").unwrap_or_default(),
            base_sha: s("/pull_request/base/sha")?,
            base_ref: s("/pull_request/base/ref").unwrap_or_default(),
        })
    }
}

/// The task a comment asks for: `Some(rest)` when the comment's first line is
/// `/agentctl <task>` followed by nothing or whitespace and arguments.
pub fn slash_command<'a>(body: &'a str, task: &str) -> Option<&'a str> {
    parse_slash_command(body).filter(|c| c.task == task).map(|c| c.args)
}

/// A `/agentctl <task> [args]` command on a comment's first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlashCommand<'a> {
    /// The first word after `/agentctl`: ASCII letters, digits, `-` and `_` only (`review`,
    /// `fix`, `cost`, `help`); the caller decides which tasks it knows.
    pub task: &'a str,
    /// The rest of the first line, trimmed (attacker-written: data, never a shell word).
    pub args: &'a str,
}

/// The command on `body`'s first line: exactly `/agentctl`, a space or tab, a task word, then
/// nothing or whitespace and arguments. Anything else — the command later in the text, inside a
/// code block (its first line is the fence), after leading spaces, or with a look-alike slash
/// such as `／` — is not a command.
pub fn parse_slash_command(body: &str) -> Option<SlashCommand<'_>> {
    let first = body.lines().next()?.trim_end();
    let rest = first.strip_prefix("/agentctl")?;
    let rest = rest.strip_prefix(|c: char| c == ' ' || c == '\t')?.trim_start();
    let end = rest.find([' ', '\t']).unwrap_or(rest.len());
    let (task, args) = rest.split_at(end);
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!task.is_empty() && task.chars().all(word)).then(|| SlashCommand { task, args: args.trim() })
}

/// Step 1 of a command: `flag` (`--pr`) wins; then the event. A comment counts only when it is
/// a new `/agentctl <task>` (on a pull request when `needs_pr`); who wrote it is checked by
/// [`trigger_refusal`] once the config (which may widen the allowed associations) is loaded.
pub fn find_target(ctx: &Context, flag: Option<u64>, task: &str, needs_pr: bool) -> Target {
    if let Some(n) = flag {
        return Target::Number(n);
    }
    match &ctx.event {
        Event::PullRequest(e) => Target::Number(e.number),
        Event::IssueComment(e) => {
            let body = e.comment.body.as_deref().unwrap_or("");
            let on_pr = e.issue.pull_request.is_some();
            if e.action != "created" || slash_command(body, task).is_none() || (needs_pr && !on_pr) {
                return Target::NotACommand;
            }
            Target::Number(e.issue.number)
        }
        Event::WorkflowDispatch(e) => e.pr_number().map(Target::Number).unwrap_or(Target::None),
        Event::Other { .. } | Event::None => Target::None,
    }
}

/// Step 1 of a task on an issue or a pull request (`fix`): `flag` (`--issue`/`--pr`) wins;
/// then a new `/agentctl <task>` comment on an issue or a PR, an `issues` event `labeled`
/// with `label` (config `fix.label`; no label configured, no trigger), or `workflow_dispatch`
/// with an `issue` input (else a PR input, see [`super::WorkflowDispatchEvent::pr_number`]).
/// Pull-request events do not trigger it.
pub fn find_issue_target(ctx: &Context, flag: Option<u64>, task: &str, label: Option<&str>) -> Target {
    if let Some(n) = flag {
        return Target::Number(n);
    }
    match &ctx.event {
        Event::IssueComment(e) => {
            let body = e.comment.body.as_deref().unwrap_or("");
            if e.action != "created" || slash_command(body, task).is_none() {
                return Target::NotACommand;
            }
            Target::Number(e.issue.number)
        }
        Event::Other { name, payload } if name == "issues" => {
            let labeled = payload.get("action").and_then(|a| a.as_str()) == Some("labeled");
            let name = payload.pointer("/label/name").and_then(|n| n.as_str());
            match (
                labeled && label.is_some() && name == label,
                payload.pointer("/issue/number").and_then(|n| n.as_u64()),
            ) {
                (true, Some(n)) => Target::Number(n),
                _ => Target::NotACommand,
            }
        }
        Event::WorkflowDispatch(e) => {
            let issue = e.inputs.as_ref().and_then(|i| i.get("issue")).and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
                _ => None,
            });
            issue.or_else(|| e.pr_number()).map(Target::Number).unwrap_or(Target::None)
        }
        Event::PullRequest(_) => Target::NotACommand,
        Event::Other { .. } | Event::None => Target::None,
    }
}

/// Who triggered the run by an action in GitHub: the comment's author on `issue_comment`, the
/// `sender` of an `issues` event; with whether the account is a bot. `None` for other events,
/// and for these two when the payload names no author (an empty login counts as none): the
/// caller must then refuse, never skip the permission check ([`needs_trigger_user`]).
pub fn trigger_user(ctx: &Context) -> Option<(String, bool)> {
    match &ctx.event {
        Event::IssueComment(e) => {
            let u = e.comment.user.as_ref().filter(|u| !u.login.trim().is_empty())?;
            Some((u.login.clone(), u.kind.eq_ignore_ascii_case("Bot")))
        }
        Event::Other { name, payload } if name == "issues" => {
            let login = payload.pointer("/sender/login")?.as_str()?.trim().to_string();
            if login.is_empty() {
                return None;
            }
            let bot =
                payload.pointer("/sender/type").and_then(|t| t.as_str()).is_some_and(|t| t.eq_ignore_ascii_case("Bot"));
            Some((login, bot))
        }
        _ => None,
    }
}

/// Whether the event is an action by someone in GitHub (`issue_comment`, `issues`), whose
/// author [`trigger_user`] must name before anything runs.
pub fn needs_trigger_user(ctx: &Context) -> bool {
    matches!(&ctx.event, Event::IssueComment(_)) || matches!(&ctx.event, Event::Other { name, .. } if name == "issues")
}

/// Why the comment that triggered this run may not trigger it, or `None` when it may (or the
/// event is not a comment): as [`command_refusal`] with the comment's author and association.
pub fn trigger_refusal(ctx: &Context, task: &str, allowed: &[String]) -> Option<String> {
    let Event::IssueComment(e) = &ctx.event else { return None };
    let author = e.comment.user.as_ref().map(|u| (u.login.as_str(), u.kind.eq_ignore_ascii_case("Bot")));
    command_refusal(task, author, e.comment.author_association.as_deref(), allowed)
}

/// Why `/agentctl {task}` in a comment or review by `author` (login, whether a bot; `None`
/// when the payload names none) with `association` (`author_association`; absent counts as
/// `NONE`) may not be obeyed, or `None` when it may: no author (fails closed), a bot, or an
/// association not in `allowed` (case-insensitive). The one rule behind `review`, `fix`'s
/// comment trigger and `route`; the sentence names the login and the association.
pub fn command_refusal(
    task: &str,
    author: Option<(&str, bool)>,
    association: Option<&str>,
    allowed: &[String],
) -> Option<String> {
    // No author is no permission: a payload without `comment.user` fails closed.
    let Some((login, bot)) = author.filter(|(l, _)| !l.trim().is_empty()) else {
        return Some(format!("`/agentctl {task}` in a comment with no author (`comment.user`) is ignored"));
    };
    if bot {
        return Some(format!("`/agentctl {task}` by the bot {login} is ignored: bots never trigger runs"));
    }
    let association = association.unwrap_or("NONE");
    (!allowed.iter().any(|a| a.eq_ignore_ascii_case(association))).then(|| {
        format!("`/agentctl {task}` by {login} ({association}) is ignored: only {} may trigger it", allowed.join(", "))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::context::Env;

    #[test]
    fn a_payload_pr_needs_its_number_and_base_sha_and_anything_else_is_no_pr() {
        let review = serde_json::json!({"action": "submitted", "review": {"id": 1}, "pull_request": {
            "number": 9, "head": {"sha": "h1"}, "base": {"sha": "b1", "ref": "main"}}});
        let pr = PrMeta::from_payload(&review).unwrap();
        assert_eq!(
            (pr.number, pr.base_sha.as_str(), pr.base_ref.as_str(), pr.head_sha.as_str()),
            (9, "b1", "main", "h1")
        );
        let no_base = serde_json::json!({"pull_request": {"number": 9, "base": {"ref": "main"}}});
        let no_number = serde_json::json!({"pull_request": {"number": "9", "base": {"sha": "b1"}}});
        let issue = serde_json::json!({"issue": {"number": 9, "pull_request": {"url": "x"}}});
        for p in [no_base, no_number, issue] {
            assert_eq!(PrMeta::from_payload(&p), None, "{p}");
        }
    }

    fn comment_ctx(body: &str, association: &str, kind: &str) -> Context {
        let payload = serde_json::json!({
            "action": "created",
            "issue": {"number": 7, "pull_request": {"url": "x"}},
            "comment": {"body": body, "author_association": association, "user": {"login": "someone", "type": kind}},
            "repository": {"full_name": "o/r"}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        Context::load(&Env::from_pairs([]), Some(&path), Some("issue_comment")).unwrap()
    }

    fn allowed() -> Vec<String> {
        DEFAULT_ALLOWED_ASSOCIATIONS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn review_comments_from_members_count_and_others_do_not() {
        let t = |body: &str, assoc: &str, kind: &str| {
            let ctx = comment_ctx(body, assoc, kind);
            (find_target(&ctx, None, "review", true), trigger_refusal(&ctx, "review", &allowed()).is_some())
        };
        assert_eq!(t("/agentctl review", "OWNER", "User"), (Target::Number(7), false));
        assert_eq!(t("/agentctl review please\nmore", "member", "User"), (Target::Number(7), false));
        assert_eq!(t("/agentctl review", "NONE", "User"), (Target::Number(7), true));
        assert_eq!(t("/agentctl review", "FIRST_TIME_CONTRIBUTOR", "User"), (Target::Number(7), true));
        assert_eq!(t("/agentctl review", "OWNER", "Bot"), (Target::Number(7), true));
        // Not a command: not at the start of the first line, a look-alike slash, another task.
        for body in [
            "please /agentctl review",
            "hi\n/agentctl review",
            "／agentctl review",
            "/agentctl reviewer",
            "/agentctlreview",
            "/agentctl fix it",
        ] {
            assert_eq!(t(body, "OWNER", "User").0, Target::NotACommand, "{body}");
        }
    }

    #[test]
    fn fix_targets_come_from_comments_on_issues_labels_and_dispatch_inputs() {
        let load = |name: &str, payload: serde_json::Value| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("event.json");
            std::fs::write(&path, payload.to_string()).unwrap();
            Context::load(&Env::from_pairs([]), Some(&path), Some(name)).unwrap()
        };
        let comment = |body: &str, on_pr: bool| {
            let mut issue = serde_json::json!({"number": 5});
            if on_pr {
                issue["pull_request"] = serde_json::json!({"url": "x"});
            }
            load(
                "issue_comment",
                serde_json::json!({"action": "created", "issue": issue,
                "comment": {"body": body, "user": {"login": "dev", "type": "User"}}, "repository": {"full_name": "o/r"}}),
            )
        };
        assert_eq!(find_issue_target(&comment("/agentctl fix the typo", false), None, "fix", None), Target::Number(5));
        assert_eq!(find_issue_target(&comment("/agentctl fix", true), None, "fix", None), Target::Number(5));
        assert_eq!(find_issue_target(&comment("/agentctl review", false), None, "fix", None), Target::NotACommand);
        assert_eq!(trigger_user(&comment("/agentctl fix", false)), Some(("dev".into(), false)));
        let labeled = |label: &str| {
            load(
                "issues",
                serde_json::json!({"action": "labeled", "label": {"name": label},
            "issue": {"number": 9}, "sender": {"login": "boss", "type": "User"}, "repository": {"full_name": "o/r"}}),
            )
        };
        assert_eq!(find_issue_target(&labeled("agentctl-fix"), None, "fix", Some("agentctl-fix")), Target::Number(9));
        assert_eq!(find_issue_target(&labeled("bug"), None, "fix", Some("agentctl-fix")), Target::NotACommand);
        assert_eq!(
            find_issue_target(&labeled("agentctl-fix"), None, "fix", None),
            Target::NotACommand,
            "no label configured"
        );
        assert_eq!(trigger_user(&labeled("x")), Some(("boss".into(), false)));
        let dispatch = load(
            "workflow_dispatch",
            serde_json::json!({"inputs": {"issue": "#12"}, "repository": {"full_name": "o/r"}}),
        );
        assert_eq!(find_issue_target(&dispatch, None, "fix", None), Target::Number(12));
        assert_eq!(find_issue_target(&dispatch, Some(3), "fix", None), Target::Number(3));
    }

    #[test]
    fn slash_command_returns_the_arguments() {
        assert_eq!(slash_command("/agentctl fix the typo  \nbody", "fix"), Some("the typo"));
        assert_eq!(slash_command("/agentctl fix", "fix"), Some(""));
        assert_eq!(slash_command("/agentctl  fix", "fix"), Some(""));
        assert_eq!(slash_command("```\n/agentctl fix\n```", "fix"), None);
    }
}
