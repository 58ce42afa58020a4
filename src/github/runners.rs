//! Self-hosted runners and a pull request's changed files, for `agentctl route`.
//!
//! Sources: "REST API endpoints for self-hosted runners" — `GET /repos/{owner}/{repo}/actions/runners`
//! and `GET /orgs/{org}/actions/runners`, answering `{"total_count": n, "runners": [{id, name,
//! os, status: "online"|"offline", busy, labels: [{name}]}]}` — and "List pull requests files"
//! (`GET /repos/{owner}/{repo}/pulls/{n}/files`, at most 3000 files).

use serde::Deserialize;

use super::transport::PER_PAGE;
use super::{GitHub, GitHubError};

/// One self-hosted runner (fields `route` reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Runner {
    pub id: u64,
    pub name: String,
    /// `online` or `offline`.
    pub status: String,
    /// Running a job now.
    pub busy: bool,
    pub labels: Vec<RunnerLabel>,
}

/// A runner label (`self-hosted`, `linux`, `gpu`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RunnerLabel {
    pub name: String,
}

impl Runner {
    /// Online, not busy, and carrying every label of `set` (case-insensitive, as Actions
    /// matches `runs-on` labels).
    pub(crate) fn can_take(&self, set: &[String]) -> bool {
        self.status == "online"
            && !self.busy
            && set.iter().all(|want| self.labels.iter().any(|l| l.name.eq_ignore_ascii_case(want)))
    }
}

/// Whose runners to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerOwner {
    /// The client's repository.
    Repo,
    /// The repository owner's organization.
    Org,
}

#[derive(Deserialize)]
struct FileName {
    filename: String,
    #[serde(default)]
    previous_filename: Option<String>,
}

impl GitHub {
    /// Every self-hosted runner of the repository or organization (paginated, 100 per page).
    ///
    /// Errors: [`GitHubError::Status`] with 403/404 when the token cannot read them (callers
    /// fall back), else as any GET.
    pub(crate) async fn runners(&self, owner: RunnerOwner) -> Result<Vec<Runner>, GitHubError> {
        let (url, action) = match owner {
            RunnerOwner::Repo => {
                (self.repo_url(&format!("actions/runners?per_page={PER_PAGE}")), "list runners".to_owned())
            }
            RunnerOwner::Org => (
                format!(
                    "{}/orgs/{}/actions/runners?per_page={PER_PAGE}",
                    self.api_base,
                    urlencoding::encode(self.owner())
                ),
                format!("list runners of organization {}", self.owner()),
            ),
        };
        self.get_all_in(url, &action, "runners").await
    }

    /// The paths a pull request changes (renamed files: old and new path), paginated.
    pub(crate) async fn pull_file_names(&self, number: u64) -> Result<Vec<String>, GitHubError> {
        let action = format!("list files of #{number}");
        let files: Vec<FileName> =
            self.get_all(self.repo_url(&format!("pulls/{number}/files?per_page={PER_PAGE}")), &action).await?;
        Ok(files.into_iter().flat_map(|f| std::iter::once(f.filename).chain(f.previous_filename)).collect())
    }
}
