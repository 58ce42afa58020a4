//! Workflow run artifacts, for `agentctl cost import --from-artifacts`: list a repository's
//! artifacts of one name, and download one artifact's zip.
//!
//! Sources: "REST API endpoints for workflow artifacts"
//! (<https://docs.github.com/en/rest/actions/artifacts>): `GET /repos/{owner}/{repo}/actions/artifacts?name=…`
//! answers `{"total_count": n, "artifacts": [{id, name, size_in_bytes, expired, created_at,
//! expires_at, workflow_run: {id, …}}]}` (paginated, newest first), and `GET
//! /repos/{owner}/{repo}/actions/artifacts/{id}/zip` answers `302 Found` with a short-lived
//! `Location` on another host (blob storage) — or `410 Gone` once the artifact expired.
//!
//! Decision: the download URL is fetched by a client of its own that sends **no**
//! `Authorization` header (the URL is pre-signed; the token must never reach another host),
//! and the body is read at most [`MAX_ARTIFACT_BYTES`] bytes.

use std::time::Duration;

use serde::Deserialize;

use super::transport::{MEDIA_JSON, PER_PAGE};
use super::{GitHub, GitHubError};

/// The largest artifact zip downloaded (bytes): usage JSONL of one run is kilobytes; this only
/// stops a wrong or hostile artifact from filling memory.
pub(crate) const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

/// Redirects followed on the storage host after GitHub's own 302.
const STORAGE_REDIRECTS: usize = 3;

/// One artifact of the list (the fields `cost import` reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Artifact {
    pub id: u64,
    pub name: String,
    /// Zip size in bytes, as GitHub reports it.
    #[serde(default)]
    pub size_in_bytes: u64,
    /// Past its retention: no longer downloadable.
    #[serde(default)]
    pub expired: bool,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The run that uploaded it.
    #[serde(default)]
    pub workflow_run: Option<ArtifactRun>,
}

/// `workflow_run` of an [`Artifact`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ArtifactRun {
    pub id: u64,
    /// The repository the run belongs to.
    #[serde(default)]
    pub repository_id: Option<u64>,
    /// The repository of the run's head commit: another one for a pull request from a fork.
    #[serde(default)]
    pub head_repository_id: Option<u64>,
}

impl ArtifactRun {
    /// Whether the run built a fork's code (its head repository is not the run's repository):
    /// such a run's artifacts were written by whoever controls the fork.
    pub(crate) fn is_from_fork(&self) -> bool {
        matches!((self.repository_id, self.head_repository_id), (Some(r), Some(h)) if r != h)
    }
}

/// What downloading an artifact gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Download {
    /// The zip's bytes.
    Zip(Vec<u8>),
    /// `410 Gone`: expired (or deleted) between the list and the download.
    Gone,
}

impl GitHub {
    /// Every artifact of the repository named `name`, or every artifact with `None` (all
    /// pages, 100 per page; the API filters by exact name only).
    /// <https://docs.github.com/en/rest/actions/artifacts#list-artifacts-for-a-repository>
    ///
    /// Errors: as any GET ([`GitHubError`]); 403/401 when the token lacks `actions: read`.
    pub(crate) async fn artifacts(&self, name: Option<&str>) -> Result<Vec<Artifact>, GitHubError> {
        let (query, action) = match name {
            Some(n) => (format!("name={}&", urlencoding::encode(n)), format!("list artifacts named {n}")),
            None => (String::new(), "list artifacts".to_owned()),
        };
        let url = self.repo_url(&format!("actions/artifacts?{query}per_page={PER_PAGE}"));
        self.get_all_in(url, &action, "artifacts").await
    }

    /// The zip of artifact `id`: `GET …/artifacts/{id}/zip` without following its redirect,
    /// then the `Location` fetched with no credentials, at most [`MAX_ARTIFACT_BYTES`].
    ///
    /// Errors: a status other than 302/410 from GitHub ([`super::error::check`]'s mapping), a
    /// redirect without an absolute `Location`, a failing or oversized download
    /// ([`GitHubError::Network`] / [`GitHubError::Status`] naming the artifact, never the URL's
    /// signature).
    pub(crate) async fn download_artifact(&self, id: u64) -> Result<Download, GitHubError> {
        let action = format!("download artifact {id}");
        let url = self.repo_url(&format!("actions/artifacts/{id}/zip"));
        // Served directly (no redirect), the zip is capped like a download.
        let reply = self.send_no_redirect(&url, MEDIA_JSON, &action, MAX_ARTIFACT_BYTES).await?;
        match reply.status {
            410 => return Ok(Download::Gone),
            301 | 302 | 303 | 307 | 308 => {}
            200..=299 => return Ok(Download::Zip(reply.body)),
            status => {
                return Err(match super::error::check(reply, &action) {
                    Err(e) => e,
                    Ok(_) => GitHubError::Status { action, status, message: "unexpected status".into() },
                })
            }
        }
        let location = reply
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
            .ok_or_else(|| GitHubError::Decode {
                action: action.clone(),
                message: format!("HTTP {} without an absolute Location", reply.status),
            })?
            .to_owned();
        fetch_unauthenticated(&location, &action).await.map(Download::Zip)
    }
}

/// GETs `url` with a fresh client that carries no credentials, reading at most
/// [`MAX_ARTIFACT_BYTES`].
async fn fetch_unauthenticated(url: &str, action: &str) -> Result<Vec<u8>, GitHubError> {
    let net = |message: String| GitHubError::Network { action: action.to_owned(), message };
    // The query string is a signature: errors name the host only.
    let host = url.split('/').nth(2).unwrap_or("").to_owned();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config())
        .redirect(reqwest::redirect::Policy::limited(STORAGE_REDIRECTS))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("agentctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| net(format!("cannot set up the download client: {e}")))?;
    let mut response = client.get(url).send().await.map_err(|e| net(format!("{host}: {}", e.without_url())))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(GitHubError::Status {
            action: action.to_owned(),
            status,
            message: format!("the download host {host} refused the artifact"),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| net(format!("{host}: {}", e.without_url())))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(GitHubError::Decode {
                action: action.to_owned(),
                message: format!("the artifact is over {MAX_ARTIFACT_BYTES} bytes; not a usage artifact"),
            });
        }
    }
    Ok(body)
}
