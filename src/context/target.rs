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

/// Why the comment that triggered this run may not trigger it, or `None` when it may (or the
/// event is not a comment): its author is a bot, or their `author_association` is not in
/// `allowed` (case-insensitive). The sentence names the login and the association.
pub fn trigger_refusal(ctx: &Context, task: &str, allowed: &[String]) -> Option<String> {
    let Event::IssueComment(e) = &ctx.event else { return None };
    let login = e.comment.user.as_ref().map_or("(unknown)", |u| u.login.as_str());
    if e.comment.user.as_ref().is_some_and(|u| u.kind.eq_ignore_ascii_case("Bot")) {
        return Some(format!("`/agentctl {task}` by the bot {login} is ignored: bots never trigger runs"));
    }
    let association = e.comment.author_association.as_deref().unwrap_or("NONE");
    (!allowed.iter().any(|a| a.eq_ignore_ascii_case(association))).then(|| {
        format!("`/agentctl {task}` by {login} ({association}) is ignored: only {} may trigger it", allowed.join(", "))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::context::Env;

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
    fn slash_command_returns_the_arguments() {
        assert_eq!(slash_command("/agentctl fix the typo  \nbody", "fix"), Some("the typo"));
        assert_eq!(slash_command("/agentctl fix", "fix"), Some(""));
        assert_eq!(slash_command("/agentctl  fix", "fix"), Some(""));
        assert_eq!(slash_command("```\n/agentctl fix\n```", "fix"), None);
    }
}
