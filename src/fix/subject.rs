//! What a fix is about and whether it may start (SPEC §3.2): the checkout, which issue or PR,
//! who asked and whether they may write, the issue's or PR's texts, a PR's head and fork, and
//! the paths the model may not touch.

use std::path::{Path, PathBuf};

use crate::context::target::{self, Target};
use crate::context::{Context, Event};
use crate::edit::context::Subject;
use crate::edit::{self, PathPolicy};
use crate::exit::{self, Exit, ExitError};
use crate::github::git::PullHeads;
use crate::github::GitHub;
use crate::log;

/// Roles (`GET /collaborators/{user}/permission`) that may trigger a fix.
const WRITE_ROLES: [&str; 3] = ["admin", "maintain", "write"];

/// What the command line asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// `--issue`.
    pub(crate) issue: Option<u64>,
    /// `--pr`.
    pub(crate) pr: Option<u64>,
    /// `--instructions` (untrusted, like the issue).
    pub(crate) instructions: Option<String>,
    /// `--allow-dirty`.
    pub(crate) allow_dirty: bool,
}

/// Which issue or PR, and who asked.
#[derive(Debug)]
pub(crate) struct Asked<'c> {
    /// `--issue` or `--pr`, when given.
    pub(crate) flag: Option<u64>,
    /// The issue or PR to fix; `None`: from `--instructions` alone.
    pub(crate) number: Option<u64>,
    /// The commenter or labeler (login, is a bot), on an event without a flag.
    pub(crate) trigger: Option<(String, bool)>,
    /// The label of an `issues` event, checked against `fix.label` once the config is loaded.
    pub(crate) label: Option<&'c str>,
}

/// The subject's texts, and on a pull request its heads and fork.
#[derive(Debug)]
pub(crate) struct Found {
    /// What the prompt is about.
    pub(crate) subject: Subject,
    /// On a pull request: its head and base (the fix branches from its head).
    pub(crate) pr: Option<PullHeads>,
    /// On a pull request from a fork: the fork's `owner/name` (`a deleted repository` when
    /// GitHub no longer knows it). The fix is a draft into the PR's base branch.
    pub(crate) fork: Option<String>,
}

/// The root of the git checkout around the working directory, clean unless `allow_dirty`.
///
/// Errors: no checkout, uncommitted changes, a failing `git status` (exit 2).
pub(crate) fn checkout(allow_dirty: bool) -> Result<PathBuf, ExitError> {
    let cwd =
        std::env::current_dir().map_err(|e| exit::usage(anyhow::anyhow!("cannot read the working directory: {e}")))?;
    let root = edit::checkout::root(&cwd).map_err(|e| {
        exit::usage(anyhow::anyhow!(
            "`agentctl fix` edits a git checkout, and {} is not in one ({e})\nhelp: run it in a clone of the repository; in a workflow, add `actions/checkout` before it",
            cwd.display()
        ))
    })?;
    let dirty = edit::checkout::dirty(&root).map_err(|e| exit::usage(anyhow::anyhow!("git status failed: {e}")))?;
    if !dirty.is_empty() && !allow_dirty {
        return Err(exit::usage(anyhow::anyhow!(
            "the checkout has uncommitted changes ({}): a fix must start from a clean tree\nhelp: commit or stash them, or pass --allow-dirty",
            dirty.join(", ")
        )));
    }
    Ok(root)
}

/// Which issue or PR the event or the flags name, and who asked. `None` (logged): nothing to
/// do — not a fix command, no author named (fails closed), or a bot.
pub(crate) fn asked<'c>(ctx: &'c Context, req: &Request) -> Option<Asked<'c>> {
    // The label check needs the config: any `labeled` event passes here and is checked once
    // the config is loaded.
    let flag = req.issue.or(req.pr);
    let event_label = match &ctx.event {
        Event::Other { name, payload } if name == "issues" => payload.pointer("/label/name").and_then(|l| l.as_str()),
        _ => None,
    };
    let number = match target::find_issue_target(ctx, flag, "fix", event_label) {
        Target::Number(n) => Some(n),
        Target::None => None,
        Target::NotACommand => {
            log::info("the event is not an `/agentctl fix` comment or a fix label: nothing to do");
            return None;
        }
    };
    let trigger = if flag.is_none() { target::trigger_user(ctx) } else { None };
    // An event by someone whose payload names nobody fails closed: no permission check could
    // pass, so nothing starts (exit 3, no model call).
    if flag.is_none() && trigger.is_none() && target::needs_trigger_user(ctx) {
        log::warn("the event names no author (`comment.user` or `sender` is missing): no fix was started");
        return None;
    }
    if let Some((login, true)) = &trigger {
        log::info(&format!("`/agentctl fix` by the bot {login} is ignored: bots never trigger runs"));
        return None;
    }
    Some(Asked { flag, number, trigger, label: event_label })
}

/// The subject's texts from GitHub (`gh`; `None`: no token) and, on a PR, its heads: who
/// asked must have write access (else a reply, unless `dry_run`, and `None`); on a PR the
/// checkout at `root` must be at its head, and a fork's head must be readable here.
///
/// Errors: a fork's head this repository cannot read (exit 1); a checkout not at the PR's head,
/// an issue without a token, nothing to fix (exit 2); GitHub's errors.
pub(crate) async fn find(
    ctx: &Context,
    gh: Option<&GitHub>,
    asked: &Asked<'_>,
    req: &Request,
    root: &Path,
    dry_run: bool,
) -> Result<Option<Found>, ExitError> {
    let Asked { flag, number, trigger, .. } = asked;
    let flag = *flag;
    let comment = match &ctx.event {
        Event::IssueComment(e) if flag.is_none() => e.comment.body.clone(),
        _ => None,
    };
    let instructions = req.instructions.clone().or_else(|| match &ctx.event {
        Event::WorkflowDispatch(e) => {
            e.inputs.as_ref()?.get("instructions")?.as_str().map(str::to_string).filter(|s| !s.trim().is_empty())
        }
        _ => None,
    });
    let mut subject = Subject { kind: "task", comment, instructions, ..Subject::default() };
    let mut pr = None;
    let mut fork = None;
    match (*number, gh) {
        (Some(n), Some(gh)) => {
            // Who asked must be able to write: association alone is not enough.
            if let Some((login, _)) = trigger {
                let role = gh.permission(login).await?;
                if !WRITE_ROLES.contains(&role.as_str()) {
                    let why = format!(
                        "`/agentctl fix` needs write access to this repository; @{login} has `{role}`, so no fix was started."
                    );
                    log::info(&why);
                    if !dry_run {
                        gh.create_issue_comment(n, &why).await?;
                    }
                    return Ok(None);
                }
            }
            let issue = gh.issue(n).await?;
            subject.number = n;
            subject.title = issue.title;
            subject.body = issue.body.unwrap_or_default();
            subject.kind = "issue";
            if issue.pull_request.is_some() || req.pr.is_some() {
                let heads = gh.pull_heads(n).await?;
                let this_repo = ctx.repository.as_ref().map(|r| r.to_string());
                if heads.head_repo.is_none() || heads.head_repo != this_repo {
                    let from = heads.head_repo.clone().unwrap_or_else(|| "a deleted repository".into());
                    // Before any model call: the fix branch starts at the fork's head, which
                    // must be readable in this repository.
                    if !gh.commit_exists(&heads.head_sha).await? {
                        return Err(ExitError::new(
                            Exit::Failure,
                            anyhow::anyhow!(
                                "pull request #{n} comes from a fork ({from}) and its head commit {} is not reachable in {}: agentctl cannot branch from it\nhelp: ask the author to apply the fix, or run `agentctl fix --issue` on an issue instead",
                                heads.head_sha.get(..12).unwrap_or(&heads.head_sha),
                                this_repo.as_deref().unwrap_or("this repository")
                            ),
                        ));
                    }
                    fork = Some(from);
                }
                let head = edit::checkout::head(root).unwrap_or_default();
                if head != heads.head_sha {
                    return Err(exit::usage(anyhow::anyhow!(
                        "the checkout is at {} but pull request #{n}'s head is {}: the fix must be made against the PR's head\nhelp: check out `refs/pull/{n}/head` (actions/checkout with `ref`)",
                        head.get(..12).unwrap_or(&head),
                        heads.head_sha.get(..12).unwrap_or(&heads.head_sha)
                    )));
                }
                subject.kind = "pull request";
                subject.pr_diff = Some(String::from_utf8_lossy(&gh.pull_diff(n).await?).into_owned());
                pr = Some(heads);
            }
        }
        (Some(n), None) => {
            return Err(exit::usage(anyhow::anyhow!(
                "reading issue #{n} needs GITHUB_TOKEN (or GH_TOKEN) and GITHUB_REPOSITORY\nhelp: for a local try without a token, pass --instructions TEXT"
            )))
        }
        (None, _) if subject.instructions.is_some() => {}
        (None, _) => {
            return Err(exit::usage(anyhow::anyhow!(
                "nothing to fix: pass --issue N, --pr N or --instructions TEXT, or run on an issue event"
            )))
        }
    }
    Ok(Some(Found { subject, pr, fork }))
}

/// The paths no edit may touch: `fix.protected_paths` and the `--config` file when it lies in
/// the checkout at `root`.
///
/// Errors: a pattern that does not parse (exit 2).
pub(crate) fn policy(
    protected: &[String],
    explicit_config: Option<&Path>,
    root: &Path,
) -> Result<PathPolicy, ExitError> {
    let mut protected = protected.to_vec();
    if let Some(p) = explicit_config.and_then(|p| std::fs::canonicalize(p).ok()) {
        if let Ok(rel) = p.strip_prefix(std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())) {
            protected.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    PathPolicy::new(&protected).map_err(|e| exit::usage(anyhow::anyhow!("fix.protected_paths: {e}")))
}
