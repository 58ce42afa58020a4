//! The fix pipeline (SPEC §3.2, issue #11): from an issue, a `/agentctl fix` comment, a label
//! or a dispatch to a verified draft PR. The model proposes edits; [`crate::edit`] applies them
//! safely; the repository's own verify command checks them; the result is committed through
//! the GraphQL `createCommitOnBranch` mutation onto an `agentctl/fix-…` branch and opened as a
//! draft PR. Everything shared with `review` comes from the core: PR/issue resolution and who
//! may trigger ([`crate::context::target`]), the run session ([`crate::session`]: base-branch
//! config, the redacting provider, the budget gate, the ledger with `task: fix`), markers.
//!
//! Parts: [`subject`] (the checkout, which issue or PR and who asked, the subject's texts),
//! [`rounds`] (prompt → answer → apply → verify, fed back) in a [`workspace`], then
//! [`publish`] (branch, commit, draft PR, comment). The `fix` command runs
//! them on the run's session.
//!
//! Decisions where the issue is silent:
//! - The rounds run in a scratch `git worktree` detached at HEAD, under `RUNNER_TEMP` (else the
//!   temp folder), removed at the end ([`workspace::Workspace`], issue #17): the fix travels
//!   through the API (or a commit made with plumbing), so the checkout is never written, and a
//!   dry run, SIGINT, SIGTERM or SIGKILL at any moment leaves it as it was; verify's by-products
//!   land in the scratch tree. The rounds see HEAD as committed: with `--allow-dirty` uncommitted
//!   changes are neither read nor touched (the fix is published on top of the commit anyway).
//!   `fix.workdir: in-place` edits the checkout itself (a verify that needs the checkout's
//!   caches), restored at the end of every run and on SIGINT/SIGTERM, not on SIGKILL.
//! - On a PR the checkout must be at the PR's head (the edits are made against it). On a PR from
//!   a fork (GitHub cannot open a PR into a fork's branch, and agentctl never pushes to a
//!   contributor's branch) the fix branch is made in the base repository at the PR's head
//!   commit (readable there through `refs/pull/{n}/head`) and the draft goes into the PR's
//!   base branch, saying that it carries the PR's commits. A head commit the base repository
//!   cannot read is refused before any model call; a token that cannot create the branch
//!   (403/404/422) is a clear refusal, exit 1, nothing published.
//! - A re-run finds its earlier comment on the issue (bot-written, with the `fix` marker naming
//!   the branch and PR) and adds a new commit on that branch (parent = its head, so nothing is
//!   force-pushed) and updates that PR's title and body. Files the earlier run changed and this
//!   one does not stay as the earlier run left them.
//! - Without `fix.verify` there is one round unless an edit failed to match (then its reason is
//!   fed back); with it, rounds go on while verify fails (or nothing could be applied), up to
//!   `fix.max_rounds`; a passing verify ends them.
//! - No change to publish (every edit refused, or an empty answer) is exit 1, nothing written.
//! - `--usage-out` is written however the run ends once a ledger exists (tokens spent by a run
//!   that then fails are usage too); `--require-state` as in `review`.
//! - `fix.commit: git` (only when configured): the commit is made in the checkout's repository
//!   with plumbing on a temporary index (the work tree stays restored), on top of `origin`'s
//!   branch when it exists, and pushed with `git push` without force; only `agentctl/fix-*`
//!   branches are ever written, in both modes.
//! - Who may trigger: the commenter (or the labeler) must have `admin`, `maintain` or `write`
//!   on the repository; anyone else gets a reply saying so and the run exits 3, no model call.

pub(crate) mod publish;
pub(crate) mod rounds;
pub(crate) mod subject;
pub(crate) mod workspace;

use std::path::PathBuf;

use crate::config::Config;
use crate::edit::context::Subject;
use crate::edit::PathPolicy;
use crate::github::git::PullHeads;
use crate::github::GitHub;
use crate::providers::select::SelectedProvider;
use crate::redact::Redactor;

/// Marker kind of the comment agentctl leaves on the issue (`pr`, `branch` fields).
pub(crate) const FIX_MARKER: &str = "fix";

/// One fix run, everything resolved before the first model call.
pub(crate) struct FixRun {
    /// The checkout's root.
    pub(crate) root: PathBuf,
    /// The session's redactor (clones share its secrets).
    pub(crate) redactor: Redactor,
    /// Nothing is written to GitHub.
    pub(crate) dry_run: bool,
    /// The REST client; `None` without a token.
    pub(crate) github: Option<GitHub>,
    /// A client on [`GitHub::graphql_root`] for the commit mutation.
    pub(crate) graphql: Option<GitHub>,
    /// What the prompt is about.
    pub(crate) subject: Subject,
    /// On a pull request: its head and base (the fix branches from its head).
    pub(crate) pr: Option<PullHeads>,
    /// On a pull request from a fork: the fork's `owner/name` (`a deleted repository` when
    /// GitHub no longer knows it). The fix is a draft into the PR's base branch.
    pub(crate) fork: Option<String>,
    /// The run's config (the PR's base branch on a PR).
    pub(crate) config: Config,
    /// The provider answering (replaced by a budget downgrade).
    pub(crate) provider: SelectedProvider,
    /// The paths no edit may touch.
    pub(crate) policy: PathPolicy,
    /// The checkout's tracked files (`git ls-files`).
    pub(crate) tracked: Vec<String>,
}
