//! Publishing a fix (SPEC §3.2): the `agentctl/fix-…` branch, its commit (GraphQL
//! `createCommitOnBranch`, or git plumbing with `fix.commit: git`), the draft PR and the comment
//! on the issue; on a re-run the same branch, PR and comment, updated.

use std::path::Path;

use crate::config::CommitMethod;
use crate::edit::verify::VerifySpec;
use crate::edit::{self, FileChange};
use crate::exit::{self, Exit, ExitError};
use crate::github::git::CommitFile;
use crate::github::{GitHub, GitHubError};
use crate::markers::Marker;
use crate::redact::Redactor;
use crate::{log, output};

use super::rounds::Outcome;
use super::{FixRun, FIX_MARKER};

/// What [`publish`] made (empty on a dry run).
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// The draft PR's `html_url`.
    pub(crate) pr_url: String,
    /// The `agentctl/fix-…` branch committed to.
    pub(crate) branch: String,
}

/// Branch, commit (GraphQL), draft PR, comment on the issue — or, on a re-run, a new commit on
/// the same branch, the same PR updated, the same comment updated. `title` and `body` are
/// redacted here.
///
/// Errors: no issue to link (exit 2); a branch that is not agentctl's own, a fork's head the
/// token cannot branch from, a failed `git push` (exit 1); GitHub's errors.
pub(crate) async fn publish(
    gh: &GitHub,
    run: &FixRun,
    outcome: &Outcome,
    title: &str,
    body: &str,
    verified: bool,
) -> Result<Published, ExitError> {
    let n = run.subject.number;
    if n == 0 {
        return Err(exit::usage(anyhow::anyhow!(
            "a fix from --instructions alone has no issue to link: pass --dry-run, or --issue N"
        )));
    }
    // What an earlier run left: its comment (written by our own account, `github.identity`;
    // a marker any other account typed is ignored), marker as the last line.
    let identity = run.config.github.identity.as_str();
    let earlier = gh.issue_comments(n).await?.into_iter().filter(|c| c.by(identity)).find_map(|c| {
        let m = Marker::find(c.body.as_deref()?, FIX_MARKER)?;
        Some((c.id, m))
    });
    let (base_sha, base_ref) = match &run.pr {
        // From a fork: a branch in this repository at the fork's head, into the PR's base
        // branch (a PR cannot target a fork's branch).
        Some(p) if run.fork.is_some() => (p.head_sha.clone(), p.base_ref.clone()),
        // A stacked fix: from the PR's head, into the PR's head branch.
        Some(p) => (p.head_sha.clone(), p.head_ref.clone()),
        None => {
            let head =
                edit::checkout::head(&run.root).map_err(|e| exit::usage(anyhow::anyhow!("git rev-parse HEAD: {e}")))?;
            let base = default_branch(gh).await?;
            (head, base)
        }
    };
    let by_git = run.config.fix.commit == CommitMethod::Git;
    let branch = match earlier.as_ref().and_then(|(_, m)| m.get("branch")) {
        Some(b) => b.to_string(),
        None => format!("agentctl/fix-{n}-{}", slug(&run.subject.title)),
    };
    if branch == base_ref || !branch.starts_with("agentctl/fix-") {
        return Err(ExitError::new(
            Exit::Failure,
            anyhow::anyhow!("refusing to commit to {branch}: agentctl commits only to its own agentctl/fix-* branches, never to the base branch"),
        ));
    }
    let headline = run.redactor.redact(title);
    let message = if verified { format!("Fixes #{n}") } else { format!("Refs #{n} (not verified)") };
    if by_git {
        commit_and_push(&run.root, &branch, &base_sha, &headline, &message, &outcome.changes, &run.redactor)?;
    } else {
        let reuse = earlier.as_ref().is_some_and(|(_, m)| m.get("branch").is_some());
        commit_by_api(gh, run, (&branch, reuse), &base_sha, (&headline, &message), &outcome.changes).await?;
    }
    let body = run.redactor.redact(body);
    let earlier_pr = earlier.as_ref().and_then(|(_, m)| m.get("pr")).and_then(|p| p.parse::<u64>().ok());
    let pull = match earlier_pr {
        Some(p) => gh.update_pull(p, &headline, &body).await?,
        None => gh.create_draft_pull(&headline, &branch, &base_ref, &body).await?,
    };
    let number = pull.number.to_string();
    let marker = Marker::new(FIX_MARKER, &[("pr", &number), ("branch", &branch)]).render();
    let verdict = if verified { "verified" } else { "not verified" };
    let comment = format!("agentctl opened a draft fix ({verdict}): {}\n\n{marker}\n", pull.html_url);
    let posted = match earlier {
        Some((id, _)) => gh.update_issue_comment(id, &comment).await?,
        None => gh.create_issue_comment(n, &comment).await?,
    };
    crate::github::publish::check_identity(&posted, identity);
    log::info(&format!("draft pull request: {}", pull.html_url));
    Ok(Published { pr_url: pull.html_url, branch })
}

/// `fix.commit: git`: a commit in the checkout's repository on `branch` (on top of `origin`'s
/// `branch` when it exists, else of `base_sha`), pushed to `origin` without force. The work
/// tree and HEAD are not touched (the checkout was restored already). Git's messages are
/// redacted (a remote URL may hold a token).
fn commit_and_push(
    root: &Path,
    branch: &str,
    base_sha: &str,
    headline: &str,
    message: &str,
    changes: &[FileChange],
    redactor: &Redactor,
) -> Result<(), ExitError> {
    let fail = |what: &str, e: String| {
        ExitError::new(
            Exit::Failure,
            anyhow::anyhow!(
                "fix.commit: git: {what} failed: {}\nhelp: the checkout's `origin` needs push credentials (actions/checkout with `persist-credentials: true`), or use `fix.commit: api`",
                redactor.redact(&e)
            ),
        )
    };
    let parent = edit::checkout::remote_branch_head(root, "origin", branch)
        .map_err(|e| fail(&format!("git ls-remote origin {branch}"), e))?
        .unwrap_or_else(|| base_sha.to_string());
    let files: Vec<edit::checkout::NewContent<'_>> =
        changes.iter().map(|c| (c.path.as_str(), c.after.as_deref())).collect();
    let text = format!("{headline}\n\n{message}\n");
    edit::checkout::commit_files(root, &parent, branch, &files, &text).map_err(|e| fail("git commit", e))?;
    edit::checkout::push_branch(root, "origin", branch).map_err(|e| fail(&format!("git push origin {branch}"), e))
}

/// `fix.commit: api`: the branch through the refs API (when new) and one GraphQL
/// `createCommitOnBranch` commit on it. `(branch, reuse)`: `reuse` when an earlier run made the
/// branch (its head is then the commit's parent). `(headline, message)` of the commit.
async fn commit_by_api(
    gh: &GitHub,
    run: &FixRun,
    (branch, reuse): (&str, bool),
    base_sha: &str,
    (headline, message): (&str, &str),
    changes: &[FileChange],
) -> Result<(), ExitError> {
    let n = run.subject.number;
    let mut expected_head = if reuse { gh.branch_head(branch).await? } else { None };
    if expected_head.is_none() {
        match (gh.create_branch(branch, base_sha).await, &run.fork) {
            (Ok(()), _) => {}
            (
                Err(
                    e @ (GitHubError::Auth { status: 403, .. }
                    | GitHubError::NotFound { .. }
                    | GitHubError::Unprocessable { .. }),
                ),
                Some(from),
            ) => {
                return Err(ExitError::new(
                    Exit::Failure,
                    anyhow::anyhow!(
                        "pull request #{n} comes from a fork ({from}): cannot create branch {branch} in {}/{} at its head commit {}, so nothing was published ({e})\nhelp: the token needs `contents: write` on {}/{}, and the fork's commit must still be reachable there (`refs/pull/{n}/head`); or ask the author to apply the fix",
                        gh.owner(),
                        gh.repo(),
                        base_sha.get(..12).unwrap_or(base_sha),
                        gh.owner(),
                        gh.repo()
                    ),
                ));
            }
            (Err(e), _) => return Err(e.into()),
        }
        expected_head = Some(base_sha.to_string());
    }
    let files: Vec<CommitFile> =
        changes.iter().map(|c| CommitFile { path: c.path.clone(), contents: c.after.clone() }).collect();
    let gql = run.graphql.as_ref().unwrap_or(gh);
    gql.create_commit_on_branch(
        (gh.owner(), gh.repo()),
        branch,
        expected_head.as_deref().unwrap_or(base_sha),
        headline,
        message,
        &files,
    )
    .await?;
    Ok(())
}

/// The repository's default branch (`GET /repos/{o}/{r}`).
async fn default_branch(gh: &GitHub) -> Result<String, ExitError> {
    Ok(gh.repository().await?.default_branch)
}

/// The draft PR's title and body for `o` ([`output::fix`] renders them), `spec` the
/// configured verify command.
pub(crate) fn title_and_body(run: &FixRun, o: &Outcome, spec: Option<&VerifySpec>) -> (String, String) {
    use output::fix::{Change, ChangeKind, ForkHead, RefusedEdit, Verification};
    let verification = match (spec, &o.verify) {
        (Some(spec), Some(v)) => {
            Verification::Ran { command: &spec.display, result: v.describe(spec.timeout), passed: v.passed() }
        }
        (Some(spec), None) => Verification::NotRun { command: &spec.display },
        (None, _) => Verification::Unconfigured,
    };
    let fork = match (&run.fork, &run.pr) {
        (Some(from), Some(p)) => Some(ForkHead { repo: from, number: p.number, head_sha: &p.head_sha }),
        _ => None,
    };
    let changes = o
        .changes
        .iter()
        .map(|c| Change {
            path: &c.path,
            kind: match (&c.before, &c.after) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Deleted,
                _ => ChangeKind::Modified,
            },
        })
        .collect();
    let refused = o
        .refused
        .iter()
        .map(|(round, r)| RefusedEdit { round: *round, entry: &r.entry, path: &r.path, reason: &r.reason })
        .collect();
    let body = output::fix::pr_body(&output::fix::PrBody {
        number: run.subject.number,
        fork,
        explanation: &o.explanation,
        verification,
        rounds: o.rounds,
        input_tokens: o.usage.total_input(),
        output_tokens: o.usage.output_tokens,
        cost_usd: o.cost_usd,
        changes,
        refused,
        notes: &o.notes,
    });
    (output::fix::title(run.subject.number, &run.subject.title), body)
}

/// A branch-name slug of `title`: lowercase ASCII letters and digits joined by `-`, at most 40
/// characters, `fix` when nothing is left.
fn slug(title: &str) -> String {
    let mut s = String::new();
    for word in title.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if s.len() + word.len() + 1 > 40 {
            break;
        }
        if !s.is_empty() {
            s.push('-');
        }
        s.push_str(&word.to_ascii_lowercase());
    }
    if s.is_empty() {
        "fix".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_slugs_are_safe_and_short() {
        assert_eq!(slug("Crash on `--dry-run` with CRLF!"), "crash-on-dry-run-with-crlf");
        assert_eq!(slug("../../etc/passwd; rm -rf /"), "etc-passwd-rm-rf");
        assert_eq!(slug("日本語"), "fix");
        assert!(slug(&"word ".repeat(50)).len() <= 40);
        // Every slug makes a branch the fix marker accepts.
        for t in ["a b", "日本語", "x/../y"] {
            let b = format!("agentctl/fix-3-{}", slug(t));
            let m = Marker::new(FIX_MARKER, &[("branch", &b)]).render();
            assert!(Marker::find(&m, FIX_MARKER).is_some(), "{b}");
        }
    }
}
